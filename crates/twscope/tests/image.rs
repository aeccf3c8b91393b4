//! What the Kubernetes deployment runs, checked for real: the container image
//! is built with `deploy/image.sh` (podman, a static binary on `scratch`) and
//! its binary runs from the image's own filesystem with nothing else in it;
//! every Kubernetes manifest in `deploy/` passes `kubernetes-validate
//! --strict`, and its resources refer to one another correctly; the
//! DaemonSet's capabilities are exactly the two that `--netns all` needs,
//! and the kernel agrees that each one is needed.
//!
//! Needs root, `podman` (Debian package `podman`), binutils, util-linux and
//! `kubernetes-validate` (PyPI); skips with a reason otherwise, unless
//! `TWSCOPE_REQUIRE_ALL=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_yaml::Value;
use twscope_lab::testing::{require_root, require_tools};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes the test's image, also when the test fails.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether an ELF64 little-endian executable asks for a program interpreter
/// (`PT_INTERP`) or names shared libraries (`DT_NEEDED`): the two ways a
/// binary depends on files that an empty image does not have.
fn elf_dependencies(elf: &[u8]) -> (bool, usize) {
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not ELF64 little-endian");
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let (mut interp, mut needed) = (false, 0);
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        match u32_at(header) {
            3 => interp = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC: (d_tag, d_val) pairs up to DT_NULL.
                let (offset, size) = (u64_at(header + 8), u64_at(header + 32));
                for entry in (offset..offset + size).step_by(16) {
                    match u64_at(entry) {
                        0 => break,       // DT_NULL
                        1 => needed += 1, // DT_NEEDED
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (interp, needed)
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                files.insert(entry.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    files
}

#[test]
fn image_holds_one_static_binary_that_runs_alone() {
    const TEST: &str = "image_holds_one_static_binary_that_runs_alone";
    if !require_root(TEST) || !require_tools(TEST, &["podman", "readelf", "strip", "unshare"]) {
        return;
    }
    let started = Instant::now();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let image = Image(format!("localhost/twscope-test:{}-{nanos}", std::process::id()));
    let rootfs = tempfile::tempdir().unwrap();

    // The README's one command, under a unique name. Niced: the first run
    // compiles a release build, beside timing-sensitive tests.
    let out = Command::new("nice")
        .args(["-n", "19"])
        .arg(repo().join("deploy/image.sh"))
        .args(["--tag", &image.0, "--extract"])
        .arg(rootfs.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "deploy/image.sh:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().last(), Some(image.0.as_str()), "{}", text(&out));
    let built = started.elapsed();

    // The image's configuration: the binary as entry point, unprivileged by
    // default, labelled with this version (OCI annotation keys).
    let out = Command::new("podman")
        .args(["image", "inspect", &image.0])
        .output()
        .unwrap();
    assert!(out.status.success(), "podman image inspect:\n{}", text(&out));
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/bin/twscope"]),
        "{config}"
    );
    assert_eq!(config["User"], "65534:65534", "{config}");
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION"),
        "{labels}"
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0", "{labels}");

    // Its filesystem: the binary and its licence, nothing else; the binary
    // needs no interpreter and no shared library.
    assert_eq!(
        files_under(rootfs.path()),
        BTreeSet::from([
            "usr/bin/twscope".to_string(),
            "usr/share/doc/twscope/LICENSE".to_string()
        ])
    );
    let binary = std::fs::read(rootfs.path().join("usr/bin/twscope")).unwrap();
    assert_eq!(elf_dependencies(&binary), (false, 0), "not statically linked");

    // It runs inside the image's filesystem, as the image's user: the root
    // changed to it, with only a /proc mounted there (in a mount namespace of
    // its own), as a container runtime would.
    std::fs::create_dir_all(rootfs.path().join("proc")).unwrap();
    let run_in_image = |arg: &str| {
        Command::new("unshare")
            .args(["--mount", "--propagation=private", "--mount-proc"])
            .arg(format!("--root={}", rootfs.path().display()))
            .args(["--setuid=65534", "--setgid=65534", "/usr/bin/twscope", arg])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run_in_image("--version");
    assert!(out.status.success(), "twscope --version:\n{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("twscope {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = run_in_image("status");
    // 0, 1, 2: the verdict's severity; 3 would be an error.
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "twscope status:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("twscope status · "),
        "twscope status:\n{}",
        text(&out)
    );
    eprintln!(
        "{TEST}: image built in {:.1} s, checked in {:.1} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
}

/// The Kubernetes manifests in `deploy/`: (file relative to the repository, its documents).
fn manifests() -> Vec<(String, Vec<Value>)> {
    let mut found = Vec::new();
    let mut pending = vec![repo().join("deploy")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Kubernetes manifests, not Prometheus rules or their tests.
            if !text.lines().any(|l| l.starts_with("apiVersion:")) {
                continue;
            }
            let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .filter(|d: &Value| !d.is_null())
                .collect();
            let relative = path.strip_prefix(repo()).unwrap().display().to_string();
            found.push((relative, docs));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Custom resources: kubernetes-validate has no schema for them (it warns
/// and passes); `manifests_refer_to_each_other` checks what they point at.
const CUSTOM_RESOURCE_GROUPS: &[&str] = &["monitoring.coreos.com/"];

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    const TEST: &str = "manifests_pass_kubernetes_validate_strict";
    if !require_tools(TEST, &["kubernetes-validate"]) {
        return;
    }
    let manifests = manifests();
    let files: Vec<&str> = manifests.iter().map(|(file, _)| file.as_str()).collect();
    for expected in [
        "deploy/kubernetes/daemonset.yaml",
        "deploy/kubernetes/servicemonitor.yaml",
    ] {
        assert!(files.contains(&expected), "{expected} not found among {files:?}");
    }
    // The oldest Kubernetes the manifests are meant for and the newest whose
    // schemas kubernetes-validate bundles (offline). --strict rejects any
    // field the schema does not know (a typo is an error, not ignored).
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .current_dir(repo())
            .output()
            .unwrap();
        let report = text(&out);
        assert!(out.status.success(), "kubernetes-validate {version}:\n{report}");
        // A resource without a schema only warns: an apiVersion misspelt as
        // apps/v2 would pass unchecked. So every built-in resource must be
        // reported as passed, and only custom resources may lack a schema.
        for (file, docs) in &manifests {
            for doc in docs {
                let (api, kind) = (doc["apiVersion"].as_str().unwrap(), doc["kind"].as_str().unwrap());
                let name = doc["metadata"]["name"].as_str().unwrap();
                let expected = if CUSTOM_RESOURCE_GROUPS.iter().any(|g| api.starts_with(g)) {
                    format!("{file} Couldn't find schema for kind {kind} with api version {api}")
                } else {
                    format!("{file} passed for resource {}/{name}", kind.to_lowercase())
                };
                assert!(report.contains(&expected), "{version}: no '{expected}' in\n{report}");
            }
        }
        for line in report
            .lines()
            .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        {
            assert!(
                line.starts_with("WARN") && CUSTOM_RESOURCE_GROUPS.iter().any(|g| line.contains(&format!(" {g}"))),
                "{version}: {line}"
            );
        }
    }
}

/// The one resource of `kind` among all manifests.
fn resource<'a>(manifests: &'a [(String, Vec<Value>)], kind: &str) -> &'a Value {
    let mut found = manifests
        .iter()
        .flat_map(|(_, docs)| docs)
        .filter(|d| d["kind"] == kind);
    let one = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "more than one {kind}");
    one
}

/// Whether every label of `selector` is in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn manifests_refer_to_each_other() {
    let manifests = manifests();
    let daemonset = resource(&manifests, "DaemonSet");
    let service = resource(&manifests, "Service");
    let monitor = resource(&manifests, "ServiceMonitor");
    let namespace = resource(&manifests, "Namespace")["metadata"]["name"].clone();
    for r in [daemonset, service, monitor] {
        assert_eq!(r["metadata"]["namespace"], namespace, "{:?}", r["metadata"]);
    }
    let pod = &daemonset["spec"]["template"];
    assert!(selects(
        &daemonset["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    // Service → the DaemonSet's pods and their named port.
    assert!(selects(&service["spec"]["selector"], &pod["metadata"]["labels"]));
    let container_ports: Vec<&Value> = pod["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    let service_ports = service["spec"]["ports"].as_sequence().unwrap();
    for port in service_ports {
        assert!(container_ports.contains(&&port["targetPort"]), "{port:?}");
    }
    // ServiceMonitor (no schema offline) → the Service and its named port.
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    for endpoint in monitor["spec"]["endpoints"].as_sequence().unwrap() {
        assert!(
            service_ports.iter().any(|p| p["name"] == endpoint["port"]),
            "{endpoint:?}"
        );
    }
    // The image the DaemonSet runs is this version's.
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))), "{image}");
}

/// A process of another user (65534) in a network namespace of its own;
/// killed on drop.
struct Stranger(Child);

impl Stranger {
    fn start() -> Stranger {
        // unshare and setpriv exec in place: the child's PID becomes sleep's.
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ])
            .args(["sleep", "60"])
            .spawn()
            .unwrap();
        let stranger = Stranger(child);
        let pid = stranger.0.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "sleep" && status.lines().any(|l| l.starts_with("Uid:\t65534")) {
                return stranger;
            }
            assert!(Instant::now() < deadline, "pid {pid} did not become sleep as 65534");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemonset_has_exactly_the_capabilities_netns_all_needs() {
    const TEST: &str = "daemonset_has_exactly_the_capabilities_netns_all_needs";
    let manifests = manifests();
    let pod = &resource(&manifests, "DaemonSet")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--netns=all"), "{args:?}");
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        security["capabilities"]["drop"],
        serde_yaml::from_str::<Value>("[ALL]").unwrap()
    );
    let added = &security["capabilities"]["add"];
    assert_eq!(
        added,
        &serde_yaml::from_str::<Value>("[SYS_ADMIN, SYS_PTRACE]").unwrap()
    );
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/run/netns")
        .expect("/run/netns mounted");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["mountPropagation"], "HostToContainer");

    // The kernel's view: uid 0 holding only the DaemonSet's capabilities, as
    // in the pod, can read the namespace of another user's process; without
    // either of the two it cannot (SYS_PTRACE opens /proc/PID/ns/net,
    // SYS_ADMIN enters it).
    if !require_root(TEST) || !require_tools(TEST, &["setpriv", "unshare"]) {
        return;
    }
    let stranger = Stranger::start();
    let pid = stranger.0.id().to_string();
    let status_with = |caps: &str| {
        Command::new("setpriv")
            .arg(format!("--bounding-set=-all,{caps}"))
            .args(["--inh-caps=-all", "--ambient-caps=-all", "--"])
            .arg(env!("CARGO_BIN_EXE_twscope"))
            .args(["status", "--netns", &pid])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = status_with("+sys_admin,+sys_ptrace");
    assert!(
        matches!(out.status.code(), Some(0..=2)),
        "both capabilities:\n{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("netns pid {pid}")),
        "{}",
        text(&out)
    );
    for only in ["+sys_admin", "+sys_ptrace"] {
        let out = status_with(only);
        assert_eq!(
            out.status.code(),
            Some(3),
            "only {only} must not be enough:\n{}",
            text(&out)
        );
    }
}
