//! `twscope serve --netns all` end to end, with pods simulated as the kubelet
//! and containerd leave them on a node: each a process in its own network,
//! UTS (hostname = the pod name) and mount namespace, in a cgroup named
//! `kubepods…pod<uid>…/cri-containerd-<id>.scope`, one with a service-account
//! namespace file mounted where Kubernetes mounts it. One pod is driven into
//! port pressure. A real Prometheus scrapes the exporter with the shipped rules
//! and must fire the per-pod alert naming that pod (and its namespace), none
//! for the other pods and no generic alert beside it; every query of the
//! shipped dashboard, its variables set to that pod, must return data.
//!
//! Needs root, util-linux (`unshare`, `nsenter`), iproute2, curl and
//! Prometheus (`prometheus`, `promtool`); skips with a reason otherwise,
//! unless `TWSCOPE_REQUIRE_ALL=1`. Bounded: under a minute in the worst case
//! (every wait has its limit; about 10 s when all goes well), the pods live
//! 120 s at most, and everything is killed by PID and removed on drop, also
//! when an assertion fails.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use twscope_lab::testing::{require_root, require_tools};
use twscope_lab::{churn, enter_netns, ChurnOptions, Server};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The destination every pod talks to: an address on its own loopback
/// device, outside 127/8 so that `tcp_tw_reuse=2` (loopback only) does not apply.
const SERVICE: &str = "198.18.0.10:5432";

/// A child process killed (SIGKILL, by PID) and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cgroup subtree made for this test (a unique directory under a cgroup
/// hierarchy); on drop every process in it is killed and every directory
/// removed, deepest first.
struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// Under the v1 `pids` hierarchy where there is one, else under the v2 root.
    fn new() -> Option<CgroupTree> {
        let base = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|b| b.join("cgroup.procs").is_file())?;
        let root = base.join(format!("twscope-serve-all-{}", std::process::id()));
        std::fs::create_dir(&root).ok()?;
        Some(CgroupTree { root })
    }

    /// Every directory of the tree, deepest first.
    fn dirs_deepest_first(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
            out.push(dir.to_path_buf());
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in self.dirs_deepest_first() {
            // Only processes this test started are in its cgroups.
            loop {
                let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `words` × 64 random bits as hex (std's hasher keys are random).
fn random_hex(words: usize) -> String {
    (0..words)
        .map(|i| {
            format!(
                "{:016x}",
                RandomState::new().hash_one((i, std::process::id(), Instant::now()))
            )
        })
        .collect()
}

/// How the kubelet names a pod's cgroup for a QoS class (systemd driver).
fn pod_slice(qos: &str, uid: &str) -> String {
    let uid = uid.replace('-', "_");
    match qos {
        "guaranteed" => format!("kubepods.slice/kubepods-pod{uid}.slice"),
        _ => format!("kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice"),
    }
}

/// A simulated pod: `unshare --net --uts --mount` running `sleep`, its
/// hostname the pod name, in a containerd-style cgroup, loopback up with
/// `SERVICE`'s address; optionally a service-account namespace file.
struct Pod {
    name: String,
    namespace: Option<String>,
    uid: String,
    container_id: String,
    /// Its one process (`sh` → `unshare` → `sh` → `sleep`), in the pod's
    /// namespaces and cgroup.
    process: Killed,
}

impl Pod {
    fn start(cgroups: &CgroupTree, dir: &Path, name: &str, namespace: Option<&str>, qos: &str) -> Pod {
        let hex = random_hex(6);
        let uid = format!(
            "{}-{}-4{}-8{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..15],
            &hex[15..18],
            &hex[18..30]
        );
        let container_id = random_hex(4);
        let cgroup = cgroups
            .root
            .join(pod_slice(qos, &uid))
            .join(format!("cri-containerd-{container_id}.scope"));
        std::fs::create_dir_all(&cgroup).unwrap();
        let ready = dir.join(format!("{name}.ready"));
        // Within the pod's own mount namespace (private propagation), a tmpfs
        // on /run, so nothing is created on the host's, and the
        // service-account volume where the kubelet mounts it
        // (/var/run is /run).
        let service_account = namespace.map_or(String::new(), |ns| {
            format!(
                "mount -t tmpfs -o size=64k,mode=0755 tmpfs /run\n\
                 mkdir -p /run/secrets/kubernetes.io/serviceaccount\n\
                 mount -t tmpfs -o size=64k tmpfs /run/secrets/kubernetes.io/serviceaccount\n\
                 printf %s {ns} > /run/secrets/kubernetes.io/serviceaccount/namespace\n"
            )
        });
        let (ip, _) = SERVICE.split_once(':').unwrap();
        let script = format!(
            "hostname {name}\n{service_account}ip link set lo up\nip addr add {ip}/32 dev lo\n\
             touch '{}'\nexec sleep 120\n",
            ready.display()
        );
        // The shell moves itself into the cgroup, then becomes unshare, which
        // becomes the script, which becomes sleep: one process, this test's
        // child (killed and reaped by PID), in the pod's cgroup and namespaces.
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > '{}' && exec unshare --net --uts --mount --propagation private sh -ec \"$0\"",
                cgroup.join("cgroup.procs").display()
            ))
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pod = Pod {
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
            uid,
            container_id,
            process: Killed(child),
        };
        wait_for(&format!("pod {name} to start"), Duration::from_secs(2), || {
            ready.exists().then_some(())
        });
        pod
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// The `netns` label the exporter gives it: its namespace's inode.
    fn netns(&self) -> String {
        std::fs::metadata(self.netns_path()).unwrap().ino().to_string()
    }

    /// Runs `f` on a thread inside the pod's network namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.netns_path();
        std::thread::spawn(move || {
            enter_netns(&path).unwrap();
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// `count` connections to `SERVICE` opened and closed by the client, so
    /// `count` TIME_WAIT sockets hold source ports of the pod's range.
    fn churn(&self, count: u64) {
        self.run(move || {
            let target: SocketAddr = SERVICE.parse().unwrap();
            let server = Server::start(target, 1).unwrap();
            let stats = churn(
                &[target],
                &ChurnOptions {
                    count,
                    max_duration: Duration::from_secs(5),
                    ..ChurnOptions::default()
                },
            );
            assert_eq!(stats.ok, count, "{:?}", stats.first_error);
            // Every connection accepted before the server goes: one still in
            // its accept queue would be reset, and leave no TIME_WAIT.
            wait_for("the server to accept every connection", Duration::from_secs(3), || {
                (server.stats().accepted.load(Ordering::Relaxed) >= count).then_some(())
            });
            std::thread::sleep(Duration::from_millis(100)); // the server closes its ends
            drop(server);
        });
    }
}

/// `twscope serve ARGS --listen 127.0.0.1:0`, and the address it printed; the
/// rest of its stderr is drained so it never blocks on a full pipe.
fn serve_all(args: &[&str]) -> (Killed, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twscope"))
        .args(["serve", "--netns", "all", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let running = Killed(child);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr.into_inner(), &mut std::io::sink()));
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    (running, addr)
}

fn curl_get(url: &str, query: Option<&str>) -> Value {
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "5"]);
    if let Some(q) = query {
        command.args(["-G", "--data-urlencode"]).arg(format!("query={q}"));
    }
    let out = command.arg(url).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// An instant query's result (panics on a query error).
fn query(port: u16, promql: &str) -> Vec<Value> {
    let json = curl_get(&format!("http://127.0.0.1:{port}/api/v1/query"), Some(promql));
    assert_ne!(json["status"], "error", "{promql}: {json}");
    json["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Prometheus' active alerts (pending and firing).
fn alerts(port: u16) -> Vec<Value> {
    curl_get(&format!("http://127.0.0.1:{port}/api/v1/alerts"), None)["data"]["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    try_for(timeout, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// `check`'s first `Some`, tried every 250 ms for `timeout`.
fn try_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["labels"][name]
        .as_str()
        .or_else(|| series["metric"][name].as_str())
        .unwrap_or("")
}

/// The shipped rules with every `for:` cut to 0s, so alerts fire within the
/// test; nothing else changed.
fn rules_without_for() -> String {
    let rules = std::fs::read_to_string(Path::new(WORKSPACE).join("deploy/prometheus/twscope-rules.yml")).unwrap();
    let mut out: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Every panel of the dashboard, those inside collapsed rows included.
fn dashboard_panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        out.extend(panel["panels"].as_array().into_iter().flatten().cloned());
        out.push(panel.clone());
    }
    out
}

#[test]
fn pods_alert_by_name_and_feed_the_drill_down() {
    let test = "pods_alert_by_name_and_feed_the_drill_down";
    if !require_root(test) || !require_tools(test, &["prometheus", "promtool", "curl", "unshare", "nsenter"]) {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("twscope-serve-all-").tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let Some(cgroups) = CgroupTree::new() else {
        twscope_lab::testing::skip(test, "a writable cgroup hierarchy under /sys/fs/cgroup");
        return;
    };

    // Three pods: checkout (namespace shop, from its service account) under
    // pressure, cart and search lightly loaded (no service account).
    let checkout = Pod::start(
        &cgroups,
        dir.path(),
        "checkout-7d9f8c6b5-x2k4q",
        Some("shop"),
        "burstable",
    );
    let cart = Pod::start(&cgroups, dir.path(), "cart-5c4b7d8f9-q8w7e", None, "besteffort");
    let search = Pod::start(&cgroups, dir.path(), "search-6f5e4d3c2-zyxwv", None, "guaranteed");
    let out = Command::new("nsenter")
        .arg(format!("--net={}", checkout.netns_path().display()))
        .args(["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40099"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 90 of checkout's 100 ports in TIME_WAIT (critical from 80%); the others
    // use 20 of 28,232.
    std::thread::scope(|s| {
        s.spawn(|| checkout.churn(90));
        s.spawn(|| cart.churn(20));
        s.spawn(|| search.churn(20));
    });
    let pods = [&checkout, &cart, &search];

    // One snapshot serves the whole test (the pods' TIME_WAIT lasts 60 s):
    // Prometheus' 1 s scrapes never wait on a dump of the node, which takes
    // longer while other tests fill it with namespaces. Those may also be
    // more pressed than cart and search: no cut, so every pod is listed.
    let (_serve, addr) = serve_all(&["--min-interval", "60", "--timeout", "15", "--max-namespaces", "5000"]);
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = try_for(Duration::from_secs(20), || {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            .max(1.0);
        let out = Command::new("curl")
            .args(["-s", "--max-time", &format!("{left:.1}")])
            .arg(format!("http://{addr}/metrics"))
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        pods.iter()
            .all(|p| last.contains(&format!("twscope_netns_info{{netns=\"{}\"", p.netns())))
            .then(|| last.clone())
    })
    .unwrap_or_else(|| {
        let namespaces = Command::new("lsns")
            .args(["-n", "-t", "net"])
            .output()
            .map(|o| o.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());
        panic!(
            "the exporter did not list the pods within 20 s ({namespaces:?} network namespaces on the node); \
             it answered: {:?}",
            last.chars().take(300).collect::<String>()
        )
    });
    // Every twscope metric the shipped rules use is exported by --netns all.
    let rules = rules_without_for();
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("twscope_"))
    {
        assert!(
            body.lines().any(|l| l.starts_with(name)),
            "the rules use {name}, which serve --netns all does not export"
        );
    }

    std::fs::write(dir.path().join("rules.yml"), &rules).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: twscope\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Each pod's identity as Prometheus stores it: pod name from its
    // hostname, UID and container from its cgroup, namespace from the
    // service account where one is mounted.
    let info = wait_for("twscope_netns_info of the pods", Duration::from_secs(10), || {
        let r = query(port, "twscope_netns_info");
        let by_netns: BTreeMap<String, Value> = r.into_iter().map(|s| (label(&s, "netns").to_string(), s)).collect();
        pods.iter()
            .all(|p| by_netns.contains_key(&p.netns()))
            .then_some(by_netns)
    });
    for pod in pods {
        let s = &info[&pod.netns()];
        assert_eq!(label(s, "pod"), pod.name, "{s}");
        assert_eq!(label(s, "namespace"), pod.namespace.as_deref().unwrap_or(""), "{s}");
        assert_eq!(label(s, "pod_uid"), pod.uid, "{s}");
        assert_eq!(label(s, "container_id"), pod.container_id, "{s}");
        assert_eq!(label(s, "runtime"), "containerd", "{s}");
    }

    // The per-pod alert fires for checkout's destination, naming the pod.
    let is_pod_alert = |a: &Value| label(a, "alertname").starts_with("TwscopePod");
    let checkout_netns = checkout.netns();
    let firing = try_for(Duration::from_secs(10), || {
        let all = alerts(port);
        all.iter()
            .any(|a| {
                label(a, "alertname") == "TwscopePodEphemeralPortsLow"
                    && label(a, "netns") == checkout_netns
                    && a["state"] == "firing"
            })
            .then_some(all)
    })
    .unwrap_or_else(|| {
        let utilization = query(
            port,
            &format!("twscope_destination_utilization_ratio{{netns=\"{checkout_netns}\"}}"),
        );
        let about_checkout: Vec<Value> = alerts(port)
            .into_iter()
            .filter(|a| label(a, "netns") == checkout_netns)
            .collect();
        panic!(
            "TwscopePodEphemeralPortsLow did not fire for checkout (netns {checkout_netns}) within 10 s; \
             its utilization: {utilization:?}; its alerts: {about_checkout:#?}"
        )
    });
    let ours: Vec<&Value> = firing
        .iter()
        .filter(|a| pods.iter().any(|p| label(a, "netns") == p.netns()))
        .collect();
    let ports_low: Vec<&&Value> = ours
        .iter()
        .filter(|a| label(a, "alertname") == "TwscopePodEphemeralPortsLow")
        .collect();
    assert_eq!(ports_low.len(), 1, "{ports_low:#?}");
    let alert = ports_low[0];
    assert_eq!(alert["state"], "firing");
    assert_eq!(label(alert, "netns"), checkout.netns());
    assert_eq!(label(alert, "pod"), checkout.name);
    assert_eq!(label(alert, "namespace"), "shop");
    assert_eq!(label(alert, "pod_uid"), checkout.uid);
    assert_eq!(label(alert, "container_id"), checkout.container_id);
    assert_eq!(label(alert, "severity"), "critical");
    let (dst, dst_port) = SERVICE.split_once(':').unwrap();
    assert_eq!((label(alert, "dst"), label(alert, "dst_port")), (dst, dst_port));
    // 90 of 100 ports: a dump of a namespace walks the kernel's hash of
    // every namespace's sockets, and may miss one that other tests' churn
    // moves in the same bucket meanwhile.
    let value: f64 = alert["value"].as_str().unwrap().parse().unwrap();
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        (0.8..=0.9).contains(&value)
            && summary
                == format!(
                    "pod shop/{} on {addr}: {}% of its source ports to {SERVICE} are taken",
                    checkout.name,
                    (value * 100.0).round()
                ),
        "{value}: {summary}; checkout's destination series: {:#?}",
        query(
            port,
            &format!("{{__name__=~\"twscope_destination_.*\",netns=\"{checkout_netns}\"}}")
        )
    );
    // Every alert about our pods is a pod alert (no generic one beside it)
    // and about checkout: none for the lightly loaded pods.
    for a in &ours {
        assert!(is_pod_alert(a), "a generic alert fired for a pod: {a:#}");
        assert_eq!(label(a, "pod"), checkout.name, "{a:#}");
    }
    // netns="other" (if any) never names a pod.
    assert!(firing
        .iter()
        .filter(|a| label(a, "netns") == "other")
        .all(|a| !is_pod_alert(a) && label(a, "pod").is_empty()));

    // Every query of the dashboard returns data, its variables set to checkout.
    std::thread::sleep(Duration::from_secs(2)); // samples for rate()
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(WORKSPACE).join("deploy/grafana/twscope-dashboard.json")).unwrap(),
    )
    .unwrap();
    let netns = checkout.netns();
    let instance = addr.to_string();
    let values = [
        ("$instance", instance.as_str()),
        ("$namespace", "shop"),
        ("$pod", checkout.name.as_str()),
        ("$netns", netns.as_str()),
        ("$__rate_interval", "10s"),
    ];
    let fill = |expr: &str| values.iter().fold(expr.to_string(), |e, (var, v)| e.replace(var, v));
    // The variables: label_values(SELECTOR, LABEL) offers the pod's values.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(definition) = var["definition"].as_str() else {
            continue;
        };
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap();
        let (selector, wanted) = inner.rsplit_once(',').unwrap();
        let wanted = wanted.trim();
        let offered: Vec<String> = query(port, &fill(selector))
            .iter()
            .map(|s| label(s, wanted).to_string())
            .collect();
        let expected = values
            .iter()
            .find(|(v, _)| v.trim_start_matches('$') == wanted)
            .map(|(_, v)| v.to_string())
            .unwrap();
        assert!(
            offered.contains(&expected),
            "variable {wanted}: {definition} offers {offered:?}, not {expected}"
        );
    }
    let mut queries = 0;
    for panel in dashboard_panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = fill(target["expr"].as_str().unwrap());
            assert!(!expr.contains('$'), "unfilled variable in {expr}");
            let result = query(port, &expr);
            assert!(
                !result.is_empty(),
                "panel {:?}: {expr} returned nothing",
                panel["title"]
            );
            // The pod panels name the pod.
            if expr.contains("twscope_netns_info") && expr.contains("group_left") {
                assert!(
                    result.iter().all(|s| label(s, "pod") == checkout.name),
                    "panel {:?}: {result:?}",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 20, "{queries} queries");
    eprintln!("{test}: {queries} dashboard queries, {:?}", started.elapsed());
}
