//! `twscope status --netns all` on simulated pods (issue #11): processes in
//! their own network and UTS namespaces, in cgroups named as the kubelet,
//! containerd, CRI-O, Docker and Podman name them, some with a service
//! account mounted, some with a sandbox (`pause`) or a `cni-` namespace, and
//! namespaces held only by a bind mount. Every count must equal what `ss`
//! prints inside that namespace, and every identity field what was made.
//!
//! Needs root, util-linux (`unshare`, `nsenter`, `setpriv`), `ip` and `ss`;
//! without root the tests skip with a reason, unless `TWSCOPE_REQUIRE_ALL=1`
//! (CI) makes that a failure.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use twscope_lab::pods::{
    private_mounts_sh, unified_hierarchy, Driver, Load, LoadPlan, NetnsMount, Pod, PodSpec, Qos, Runtime,
};
use twscope_lab::{require_root, Netns};

use crate::oracle::{reported, ss_census};
use crate::util::{as_nobody, twscope_command};

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// Runs twscope as `command` says, returning its JSON, exit code, stderr
/// and PID.
fn run_json(mut command: Command) -> (Value, i32, String, u32) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("twscope printed no JSON ({e}): {stderr}"));
    (json, out.status.code().expect("exited"), stderr, pid)
}

/// The namespaces twscope listed, by inode.
fn by_inode(json: &Value) -> BTreeMap<u64, &Value> {
    json["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces: {json}"))
        .iter()
        .map(|n| (n["netns"]["inode"].as_u64().unwrap(), n))
        .collect()
}

/// Loads, by size.
fn tiny() -> Vec<LoadPlan> {
    // LISTEN 1, ESTABLISHED 2.
    vec![LoadPlan::new("127.0.0.1:8080", 0, 1)]
}

fn fifty() -> Vec<LoadPlan> {
    // TIME_WAIT 30, ESTABLISHED 20 (IPv6), LISTEN 1.
    vec![
        LoadPlan::new("127.0.0.1:5432", 30, 0),
        LoadPlan::new("[::1]:6379", 0, 10),
    ]
}

fn five_hundred() -> Vec<LoadPlan> {
    // TIME_WAIT 450, ESTABLISHED 50, LISTEN 2.
    vec![
        LoadPlan::new("127.0.0.1:5432", 300, 10),
        LoadPlan::new("[::1]:9200", 150, 15),
    ]
}

fn three_thousand() -> Vec<LoadPlan> {
    // TIME_WAIT 2,800, ESTABLISHED 200, LISTEN 2.
    vec![
        LoadPlan::new("127.0.0.1:5432", 1500, 50),
        LoadPlan::new("127.0.0.1:6379", 500, 0),
        LoadPlan::new("[::1]:8443", 800, 50),
    ]
}

fn idle() -> Vec<LoadPlan> {
    Vec::new()
}

/// What the plan must give: (TIME_WAIT, ESTABLISHED, LISTEN).
fn planned(plan: &[LoadPlan]) -> (u64, u64, u64) {
    plan.iter().fold((0, 0, 0), |(tw, est, listen), p| {
        (
            tw + p.time_wait,
            est + 2 * p.established as u64,
            listen + u64::from(p.established > 0),
        )
    })
}

/// A pod to make, the runtime twscope must name, and its load.
struct Case {
    spec: PodSpec,
    runtime: Option<&'static str>,
    load: Vec<LoadPlan>,
    /// Its app killed after the start (`CrashLoopBackOff`): only `pause` is
    /// left in the namespace.
    crashed: bool,
}

fn k8s(name: &str, runtime: Runtime, driver: Driver, qos: Qos, comm: &str) -> PodSpec {
    PodSpec::kubernetes(name, runtime, driver, qos).comm(comm)
}

fn plain(hostname: &str, runtime: Runtime, driver: Driver, comm: &str) -> PodSpec {
    PodSpec::container(hostname, runtime, driver).comm(comm)
}

fn cases(unified: Option<PathBuf>) -> Vec<Case> {
    use Driver::{Cgroupfs, Systemd};
    use Qos::{BestEffort, Burstable, Guaranteed};
    use Runtime::{Containerd, CriO, Docker, Podman};
    // Some processes in the v2 hierarchy only (`0::/kubepods.slice/…`).
    let v2 = |spec: PodSpec| match &unified {
        Some(dir) => spec.hierarchies(vec![dir.clone()]),
        None => spec,
    };
    let case = |spec, runtime, load| Case {
        spec,
        runtime,
        load,
        crashed: false,
    };
    let containerd = Some("containerd");
    let crio = Some("cri-o");
    let docker = Some("docker");
    vec![
        // containerd, systemd driver.
        case(
            k8s("api-7d9f8c6b5-x2kq9", Containerd, Systemd, Burstable, "api")
                .service_account("shop")
                .sandbox(),
            containerd,
            three_thousand(),
        ),
        case(
            k8s("web-5c8d7f9b4-abcde", Containerd, Systemd, BestEffort, "nginx")
                .service_account("shop")
                .sandbox(),
            containerd,
            tiny(),
        ),
        case(
            k8s("cart-6f7d8c9b5-q8w2e", Containerd, Systemd, Guaranteed, "cart")
                .sandbox()
                .cni(),
            containerd,
            five_hundred(),
        ),
        case(
            k8s("worker-0", Containerd, Systemd, Burstable, "worker").service_account("jobs"),
            containerd,
            tiny(),
        ),
        case(
            k8s("redis-0", Containerd, Systemd, Guaranteed, "redis-server").service_account("cache"),
            containerd,
            tiny(),
        ),
        case(
            k8s("fluent-bit-7xk2p", Containerd, Systemd, BestEffort, "fluent-bit").service_account("logging"),
            containerd,
            idle(),
        ),
        case(
            k8s("coredns-5d78c9869d-6l9xw", Containerd, Systemd, Burstable, "coredns")
                .service_account("kube-system")
                .sandbox()
                .cni(),
            containerd,
            tiny(),
        ),
        case(
            k8s(
                "metrics-server-6d94bc8694-tbq6r",
                Containerd,
                Systemd,
                Burstable,
                "metrics-server",
            ),
            containerd,
            idle(),
        ),
        case(
            v2(k8s("payments-84b6c5d7f9-m3n4p", Containerd, Systemd, Guaranteed, "payments").service_account("shop")),
            containerd,
            tiny(),
        ),
        case(
            k8s("batch-28461230-8kx7z", Containerd, Systemd, BestEffort, "batch"),
            containerd,
            tiny(),
        ),
        case(
            k8s(
                "ingress-nginx-controller-7d9f8-ab1cd",
                Containerd,
                Systemd,
                Burstable,
                "nginx-ingress-c",
            )
            .service_account("ingress-nginx")
            .sandbox(),
            containerd,
            tiny(),
        ),
        case(
            k8s(
                "argocd-server-5c6d7e8f9-q1w2e",
                Containerd,
                Systemd,
                Burstable,
                "argocd-server",
            )
            .service_account("argocd"),
            containerd,
            tiny(),
        ),
        case(
            k8s("grafana-6d7e8f9a0-s3d4f", Containerd, Systemd, BestEffort, "grafana").service_account("monitoring"),
            containerd,
            idle(),
        ),
        Case {
            crashed: true,
            ..case(
                k8s("checkout-6c7d8e9f0-c4r5t", Containerd, Systemd, Burstable, "checkout")
                    .service_account("shop")
                    .sandbox(),
                containerd,
                fifty(),
            )
        },
        // CRI-O, systemd driver.
        case(
            k8s("frontend-6b9c7d8f5-h2j4k", CriO, Systemd, Burstable, "node")
                .service_account("web")
                .sandbox(),
            crio,
            fifty(),
        ),
        case(
            k8s("auth-7c8d9e6f5-p9q8r", CriO, Systemd, Guaranteed, "auth").service_account("web"),
            crio,
            tiny(),
        ),
        case(k8s("search-0", CriO, Systemd, BestEffort, "java"), crio, idle()),
        case(
            k8s("gateway-5f6d7c8b9-z1x2c", CriO, Systemd, Burstable, "envoy")
                .service_account("edge")
                .sandbox()
                .cni(),
            crio,
            tiny(),
        ),
        case(
            v2(k8s("ml-infer-7d6c5b4a3-w8e7r", CriO, Systemd, Guaranteed, "python3")),
            crio,
            tiny(),
        ),
        // The cgroupfs driver: the path names the container but not the
        // runtime, except CRI-O's (`crio-<id>`).
        case(
            k8s(
                "legacy-api-6c5b4a3d2-k7j6h",
                Containerd,
                Cgroupfs,
                Burstable,
                "legacy-api",
            )
            .service_account("legacy"),
            None,
            tiny(),
        ),
        case(
            k8s("legacy-db-0", Containerd, Cgroupfs, Guaranteed, "postgres"),
            None,
            fifty(),
        ),
        case(
            k8s("report-27d8e9f6c-b5n4m", Docker, Cgroupfs, BestEffort, "report")
                .service_account("reports")
                .sandbox(),
            None,
            tiny(),
        ),
        case(k8s("queue-0", Docker, Cgroupfs, Burstable, "beam.smp"), None, idle()),
        case(
            k8s("etl-5b6c7d8e9-r4t5y", CriO, Cgroupfs, BestEffort, "etl").service_account("data"),
            crio,
            tiny(),
        ),
        case(
            k8s("cache-6e7f8a9b0-u7i8o", CriO, Cgroupfs, Guaranteed, "memcached"),
            crio,
            tiny(),
        ),
        case(
            k8s("old-web-5a4b3c2d1-l0k9j", Containerd, Cgroupfs, Burstable, "httpd").service_account("legacy"),
            None,
            idle(),
        ),
        // Plain containers, outside Kubernetes.
        case(plain("3f4e5d6c7b8a", Docker, Cgroupfs, "postgres"), docker, tiny()),
        case(plain("9a8b7c6d5e4f", Docker, Cgroupfs, "nginx"), docker, idle()),
        case(plain("1a2b3c4d5e6f", Docker, Systemd, "mysqld"), docker, tiny()),
        case(plain("6f5e4d3c2b1a", Docker, Systemd, "haproxy"), docker, fifty()),
        case(v2(plain("0a9b8c7d6e5f", Docker, Cgroupfs, "traefik")), docker, tiny()),
        case(plain("caddy-web", Podman, Systemd, "caddy"), Some("podman"), tiny()),
        case(plain("minio-store", Podman, Cgroupfs, "minio"), Some("podman"), tiny()),
    ]
}

/// The identity twscope must give `pod`.
fn expected_identity(pod: &Pod, case: &Case) -> Value {
    let spec = pod.spec();
    let pod_json = spec.kube.as_ref().map(|kube| {
        json!({
            "uid": kube.uid,
            "name": spec.hostname,
            // The service account is mounted into the app, not the sandbox.
            "namespace": if case.crashed { None } else { kube.namespace.clone() },
            "qos": kube.qos.name(),
        })
    });
    // With the app gone, the sandbox's is the only container left.
    let container = if case.crashed {
        pod.sandbox_id().unwrap()
    } else {
        pod.container_id()
    };
    let processes: Vec<Value> = pod
        .processes()
        .into_iter()
        .map(|(pid, comm)| json!({"pid": pid, "comm": comm}))
        .collect();
    json!({
        "inode": inode(&pod.netns_path()),
        "name": pod.cni_name(),
        "host": false,
        "pod": pod_json,
        "container": {"id": container, "runtime": case.runtime},
        "pids": pod.pids(),
        "processes": processes,
    })
}

/// Checks one loaded namespace: listed, read, its counts equal to `ss`'s and
/// to the plan.
fn check_counts(listed: &BTreeMap<u64, &Value>, inode: u64, netns: &Path, plan: &[LoadPlan], what: &str) {
    let ns = listed
        .get(&inode)
        .unwrap_or_else(|| panic!("{what}: namespace {inode} not listed"));
    assert!(ns.get("error").is_none(), "{what}: {}", ns["error"]);
    let expected = ss_census(netns);
    let ours = reported(ns);
    assert_eq!(ours.states, expected.states, "{what}: states");
    assert_eq!(ours.outbound, expected.outbound, "{what}: destinations");
    assert_eq!(ours.inbound, expected.inbound, "{what}: inbound");
    // And `ss` saw what the load made.
    let (tw, est, listen) = planned(plan);
    let count = |state: &str| expected.states.get(state).copied().unwrap_or(0);
    assert_eq!(
        (count("TIME_WAIT"), count("ESTABLISHED"), count("LISTEN")),
        (tw, est, listen),
        "{what}: the load"
    );
    assert_eq!(ns["counters"]["sockstat_tw"].as_u64(), Some(tw), "{what}");
    assert_eq!(ns["dump"]["sockets"].as_u64(), Some(tw + est + listen), "{what}");
}

#[test]
fn every_simulated_pod_is_found_named_and_counted() {
    if !require_root("every_simulated_pod_is_found_named_and_counted") {
        return;
    }
    let start = Instant::now();
    let cases = cases(unified_hierarchy());
    assert!(cases.len() >= 30);
    let mut pods: Vec<Pod> = cases.iter().map(|c| make(&c.spec)).collect();
    for (pod, case) in pods.iter_mut().zip(&cases) {
        if case.crashed {
            pod.kill_app().unwrap();
        }
    }
    // Namespaces with sockets and no process: `ip netns add`'s, and a bare
    // bind mount (as Docker's /var/run/docker/netns/<id>).
    let named = Netns::new("pods-bind").unwrap();
    let named_plan = vec![
        LoadPlan::new("127.0.0.1:9000", 200, 5),
        LoadPlan::new("[::1]:9001", 100, 0),
    ];
    let mount = NetnsMount::new().unwrap();
    let mount_plan = vec![LoadPlan::new("[::1]:7000", 250, 3)];
    let made = start.elapsed();

    // The loads, all at once; each is quiescent when it returns.
    let (loads, named_load, mount_load) = std::thread::scope(|scope| {
        let threads: Vec<_> = pods
            .iter()
            .zip(&cases)
            .map(|(pod, case)| scope.spawn(|| pod.load(&case.load)))
            .collect();
        let plan = named_plan.clone();
        let named_load = named.run(move || twscope_lab::pods::load(&plan)).unwrap().unwrap();
        let mount_load = mount.load(&mount_plan).unwrap();
        let loads: Vec<Load> = threads
            .into_iter()
            .zip(&cases)
            .map(|(t, c)| t.join().unwrap().unwrap_or_else(|e| panic!("{}: {e}", c.spec.hostname)))
            .collect();
        (loads, named_load, mount_load)
    });
    // The servers' threads are gone: no process (nor thread) is in these two.
    let loaded = start.elapsed();

    let mut command = twscope_command();
    command.args(["status", "--netns", "all", "--json", "--top", "0"]);
    let (json, code, stderr, _) = run_json(command);
    let read = start.elapsed();
    let listed = by_inode(&json);
    assert!((0..=2).contains(&code), "exit {code}: {stderr}");
    assert!(json["missing"].is_null(), "{}", json["missing"]);

    // The first TIME_WAIT sockets were made after `made`: none may expire
    // (60 s) before the last `ss` below, or the comparison would be unfair.
    assert!(
        read - made < std::time::Duration::from_secs(50),
        "too slow: loads from {made:?}, twscope done by {read:?}"
    );
    // (a) counts: each loaded namespace against ss, back to back (the loads
    // are static: nothing changes for 60 s).
    for (pod, case) in pods.iter().zip(&cases) {
        if !case.load.is_empty() {
            check_counts(&listed, pod.inode(), &pod.netns_path(), &case.load, pod.hostname());
        }
    }
    check_counts(&listed, inode(&named.path()), &named.path(), &named_plan, "ip netns");
    check_counts(&listed, mount.inode(), mount.path(), &mount_plan, "bind mount");
    let counted = start.elapsed();

    // (b) identity: every field as made.
    for (pod, case) in pods.iter().zip(&cases) {
        let what = pod.hostname();
        assert_eq!(pod.inode(), inode(&pod.netns_path()), "{what}");
        if case.load.is_empty() {
            // No TCP socket: idle, counted but not listed.
            assert!(!listed.contains_key(&pod.inode()), "{what}: idle but listed");
            continue;
        }
        let ns = listed[&pod.inode()];
        assert_eq!(ns["netns"], expected_identity(pod, case), "{what}");
        if let (Some(sandbox), false) = (pod.sandbox_pid(), case.crashed) {
            // The sandbox's own container is not the one named.
            assert!(ns["netns"]["pids"].as_array().unwrap().contains(&json!(sandbox)));
            assert_ne!(ns["netns"]["container"]["id"], json!(pod.sandbox_id()));
        }
    }
    // (c) the namespaces without a process.
    let n = listed[&inode(&named.path())];
    assert_eq!(
        n["netns"],
        json!({"inode": inode(&named.path()), "name": named.name(), "host": false, "pod": null,
               "container": null, "pids": [], "processes": []})
    );
    let m = listed[&mount.inode()];
    assert_eq!(
        m["netns"],
        json!({"inode": mount.inode(), "name": null, "host": false, "pod": null,
               "container": null, "pids": [], "processes": []})
    );

    // (d) totals: ours and the host's at least; each found one either
    // listed or idle.
    let found = json["found"].as_u64().unwrap();
    let idle = json["idle"].as_u64().unwrap();
    let created = pods.len() as u64 + 2;
    assert!(
        found > created,
        "found {found}: fewer than the {created} made and the host's"
    );
    assert_eq!(found, listed.len() as u64 + idle, "found = listed + idle");
    let idle_pods = cases.iter().filter(|c| c.load.is_empty()).count() as u64;
    assert!(idle >= idle_pods, "idle {idle} < {idle_pods}");
    let own = inode(Path::new("/proc/self/ns/net"));
    assert_eq!(listed[&own]["netns"]["host"], true);
    assert_eq!(listed.values().filter(|n| n["netns"]["host"] == true).count(), 1);

    drop((loads, named_load, mount_load));
    drop(pods);
    eprintln!(
        "pods: {} made in {made:?}, loaded by {loaded:?}, twscope done by {read:?}, ss by {counted:?}, all in {:?}",
        cases.len() + 2,
        start.elapsed()
    );
}

/// A containerd pod (systemd cgroup driver) named `name`.
fn containerd(name: &str, qos: Qos) -> PodSpec {
    PodSpec::kubernetes(name, Runtime::Containerd, Driver::Systemd, qos)
}

/// Makes the pod `spec` says (panics, naming it, if it cannot).
fn make(spec: &PodSpec) -> Pod {
    Pod::new(spec.clone()).unwrap_or_else(|e| panic!("{}: {e}", spec.hostname))
}

/// The binary as nobody, without any capability.
fn nobody_json(args: &[&str]) -> (Value, i32, String, u32) {
    let mut command = as_nobody(&["--inh-caps=-all", "--bounding-set=-all"]);
    command.args(args);
    run_json(command)
}

#[test]
fn without_privileges_all_names_the_missing_capabilities() {
    if !require_root("without_privileges_all_names_the_missing_capabilities") {
        return;
    }
    // A root process's namespace (needs CAP_SYS_PTRACE to be seen) and a
    // namespace file anyone can open (needs CAP_SYS_ADMIN to enter).
    let pod = make(&containerd("api-7d9f8c6b5-p0d1x", Qos::Burstable).service_account("shop"));
    let _pod_load = pod.load(&tiny()).unwrap();
    let mount = NetnsMount::new().unwrap();
    let _mount_load = mount.load(&tiny()).unwrap();

    let (json, code, stderr, pid) = nobody_json(&["status", "--netns", "all", "--json", "--top", "0"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("CAP_SYS_PTRACE") && stderr.contains("CAP_SYS_ADMIN"),
        "{stderr}"
    );
    let missing = json["missing"].as_str().unwrap_or_default();
    assert!(
        missing.contains("CAP_SYS_PTRACE") && missing.contains("CAP_SYS_ADMIN"),
        "{json}"
    );
    assert!(json["unreadable_processes"].as_u64().unwrap() > 0);

    let listed = by_inode(&json);
    // Its own namespace needs no privilege: read, with itself in it.
    let own = listed
        .get(&inode(Path::new("/proc/self/ns/net")))
        .unwrap_or_else(|| panic!("own namespace not listed: {json}"));
    assert!(own.get("error").is_none(), "{}", own["error"]);
    assert!(own["states"].is_object(), "{own}");
    assert!(
        own["netns"]["processes"]
            .as_array()
            .unwrap()
            .contains(&json!({"pid": pid, "comm": "twscope"})),
        "{}",
        own["netns"]
    );
    // The pod's process cannot be seen, so neither can its namespace.
    assert!(!listed.contains_key(&pod.inode()));
    // The bind mount is found, and says what entering it needs.
    let m = listed
        .get(&mount.inode())
        .unwrap_or_else(|| panic!("bind mount not listed: {json}"));
    let error = m["error"].as_str().unwrap_or_default();
    assert!(error.contains("CAP_SYS_ADMIN"), "{m}");
    assert!(m.get("states").is_none(), "{m}");
}

#[test]
fn without_privileges_the_host_namespace_is_still_the_host() {
    if !require_root("without_privileges_the_host_namespace_is_still_the_host") {
        return;
    }
    let (json, _, stderr, _) = nobody_json(&["status", "--netns", "all", "--json", "--top", "0"]);
    let own_inode = inode(Path::new("/proc/self/ns/net"));
    // PID 1's (kthreadd's when PID 1's is closed even to root, in a sandbox).
    let host = std::fs::metadata("/proc/1/ns/net")
        .or_else(|_| std::fs::metadata("/proc/2/ns/net"))
        .unwrap()
        .ino();
    if own_inode != host {
        return; // the tests themselves run in a container
    }
    let listed = by_inode(&json);
    let own = listed.get(&own_inode).unwrap_or_else(|| panic!("{stderr}"));
    // PID 1's and kthreadd's namespace links are closed to nobody, but that
    // does not make the host's namespace someone else's: `true`, or at worst
    // unknown (null), never `false`.
    assert_ne!(own["netns"]["host"], false, "{}", own["netns"]);
}

/// Removes `/run/secrets` on drop if this test made it.
struct MadeDir(Option<PathBuf>);

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn a_pods_service_account_is_read_inside_the_pods_root() {
    if !require_root("a_pods_service_account_is_read_inside_the_pods_root") {
        return;
    }
    // The pods share the host's root directory, where /var/run is the usual
    // absolute symlink to /run (as in Debian, Ubuntu and Alpine images).
    if std::fs::read_link("/var/run").ok() != Some(PathBuf::from("/run")) {
        eprintln!("skipped: /var/run is not a symlink to /run here");
        return;
    }
    let with_sa = make(&containerd("api-7d9f8c6b5-s4k2m", Qos::Burstable).service_account("shop"));
    let without_sa = make(&containerd("web-5c8d7f9b4-n0s4x", Qos::BestEffort));
    let _loads = (with_sa.load(&tiny()).unwrap(), without_sa.load(&tiny()).unwrap());
    // twscope as a DaemonSet runs it: in its own mount namespace, with its
    // own service account (namespace "monitoring") at /run/secrets/….
    // /run/secrets is made (empty) on the host only if missing, for the mount.
    let secrets = Path::new("/run/secrets");
    let _made = MadeDir(std::fs::create_dir(secrets).ok().map(|()| secrets.to_path_buf()));
    let script = "mount -t tmpfs -o size=64k twscope-sa /run/secrets \
        && mkdir -p /run/secrets/kubernetes.io/serviceaccount \
        && printf monitoring > /run/secrets/kubernetes.io/serviceaccount/namespace \
        && exec \"$0\" status --netns all --json --top 0";
    let mut command = private_mounts_sh(&[], &[], script);
    command.arg(crate::util::BIN);
    let (json, code, stderr, _) = run_json(command);
    assert!((0..=2).contains(&code), "exit {code}: {stderr}");
    let listed = by_inode(&json);
    let namespace = |pod: &Pod| {
        let ns = listed
            .get(&pod.inode())
            .unwrap_or_else(|| panic!("{} not listed", pod.hostname()));
        ns["netns"]["pod"]["namespace"].clone()
    };
    // Each pod's own file, read in the pod's root: never the reader's own
    // service account, reached through the pod's absolute /var/run symlink.
    assert_eq!(namespace(&with_sa), json!("shop"));
    assert_eq!(namespace(&without_sa), Value::Null);
}
