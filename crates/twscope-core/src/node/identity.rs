//! Who a network namespace belongs to, from the kernel's own files: the
//! processes in it, their container (from the cgroup path the runtime gave
//! them), the Kubernetes pod (UID and QoS class from the kubelet's cgroup
//! names, the name from the pod's UTS hostname, the namespace from its
//! service-account file) and the `ip netns` name. No API server is asked;
//! whatever cannot be read is absent, never guessed.

use std::path::Path;

use serde::Serialize;

use crate::files;

/// A process in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Its PID, as seen from the host's PID namespace.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`); empty if it exited meanwhile.
    pub comm: String,
}

/// The container a namespace's processes run in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The runtime's container id (usually 64 hex digits).
    pub id: String,
    /// `containerd`, `cri-o`, `docker` or `podman`; `None` when the cgroup
    /// path names the container but not the runtime (the kubelet's cgroupfs
    /// driver: `/kubepods/<qos>/pod<uid>/<id>`).
    pub runtime: Option<String>,
}

/// The Kubernetes pod a namespace belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// `metadata.uid`, from `kubepods…pod<uid>` in the cgroup path: what
    /// kube-state-metrics' `kube_pod_info` carries as `uid`.
    pub uid: String,
    /// `metadata.name`: the hostname of the pod's UTS namespace, which the
    /// kubelet sets to the pod name; `None` if it could not be read.
    pub name: Option<String>,
    /// `metadata.namespace`, from the mounted service-account namespace file;
    /// `None` when no service account is mounted.
    pub namespace: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`, from the cgroup path.
    pub qos: String,
}

/// Who a network namespace belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The namespace's inode (`lsns -t net`, `ip netns identify`).
    pub inode: u64,
    /// Its `ip netns` name, if a file in `/run/netns` is this namespace.
    pub name: Option<String>,
    /// Whether this is the host's (init) namespace.
    pub host: bool,
    /// The pod, when the processes' cgroups say Kubernetes.
    pub pod: Option<Pod>,
    /// The container, when a cgroup path names one.
    pub container: Option<Container>,
    /// PIDs of the processes in it, lowest first.
    pub pids: Vec<u32>,
    /// The same processes with their command names.
    pub processes: Vec<Process>,
}

impl Identity {
    /// How to call the namespace in one short label: `host`, the pod as
    /// `namespace/name`, the `ip netns` name, the container's short id, or
    /// `netns inode N`.
    pub fn label(&self) -> String {
        if self.host {
            return "host".to_string();
        }
        if let Some(pod) = &self.pod {
            if let Some(name) = &pod.name {
                return match &pod.namespace {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                };
            }
            return format!("pod {}", pod.uid);
        }
        if let Some(name) = &self.name {
            return name.clone();
        }
        if let Some(c) = &self.container {
            return format!("{} {}", c.runtime.as_deref().unwrap_or("container"), short_id(&c.id));
        }
        format!("netns inode {}", self.inode)
    }
}

/// The first 12 characters of a container id, as `docker ps` and `crictl ps`
/// show it.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// What a cgroup path says about the container and the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupFacts {
    /// The container, if a path segment names one.
    pub container: Option<Container>,
    /// Pod UID and QoS class, if the path is under `kubepods`.
    pub pod: Option<(String, String)>,
}

fn is_container_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `<prefix><id>.scope` or `<prefix><id>` → id.
fn scoped_id<'a>(segment: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = segment.strip_prefix(prefix)?;
    let id = rest.strip_suffix(".scope").unwrap_or(rest);
    is_container_id(id).then_some(id)
}

/// Reads one cgroup path as the runtimes and the kubelet write them:
///
/// - systemd driver: `/kubepods.slice/kubepods-burstable.slice/
///   kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
///   (CRI-O: `crio-<id>.scope`; Docker: `docker-<id>.scope`; Podman:
///   `libpod-<id>.scope`);
/// - cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>` (no QoS segment for
///   guaranteed pods), and Docker's `/docker/<id>`.
pub fn parse_cgroup_path(path: &str) -> CgroupFacts {
    let mut facts = CgroupFacts::default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let under_kubepods = segments.iter().any(|s| s.starts_with("kubepods"));
    for (i, segment) in segments.iter().enumerate() {
        let runtime_scoped = [
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("docker-", "docker"),
            ("libpod-", "podman"),
        ];
        for (prefix, runtime) in runtime_scoped {
            if let Some(id) = scoped_id(segment, prefix) {
                facts.container = Some(Container {
                    id: id.to_string(),
                    runtime: Some(runtime.to_string()),
                });
            }
        }
        if *segment == "docker" {
            if let Some(id) = segments.get(i + 1).filter(|s| is_container_id(s)) {
                facts.container = Some(Container {
                    id: id.to_string(),
                    runtime: Some("docker".to_string()),
                });
            }
        }
        if under_kubepods {
            // `pod<uid>` (cgroupfs) or `…-pod<uid_with_underscores>.slice`.
            let pod_part = segment.strip_suffix(".slice").unwrap_or(segment);
            let uid = pod_part
                .rsplit_once("-pod")
                .map(|(_, uid)| uid)
                .or_else(|| pod_part.strip_prefix("pod"));
            if let Some(uid) = uid.map(|u| u.replace('_', "-")).filter(|u| is_uid(u)) {
                let qos = if segments.iter().any(|s| s.contains("besteffort")) {
                    "besteffort"
                } else if segments.iter().any(|s| s.contains("burstable")) {
                    "burstable"
                } else {
                    "guaranteed"
                };
                facts.pod = Some((uid, qos.to_string()));
                // cgroupfs driver: the segment after the pod is the container.
                if facts.container.is_none() {
                    if let Some(id) = segments.get(i + 1).filter(|s| is_container_id(s)) {
                        facts.container = Some(Container {
                            id: id.to_string(),
                            runtime: None,
                        });
                    }
                }
            }
        }
    }
    facts
}

impl CgroupFacts {
    /// Takes from `other` what `self` lacks; true once both are known.
    fn fill_from(&mut self, other: CgroupFacts) -> bool {
        if self.container.is_none() {
            self.container = other.container;
        }
        if self.pod.is_none() {
            self.pod = other.pod;
        }
        self.container.is_some() && self.pod.is_some()
    }
}

/// A Kubernetes UID: 8-4-4-4-12 hex digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What `/proc/PID/cgroup` (v1: one line per hierarchy; v2: `0::/path`) says
/// about the process; the first line that names something wins.
pub fn parse_proc_cgroup(text: &str) -> CgroupFacts {
    let mut facts = CgroupFacts::default();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if facts.fill_from(parse_cgroup_path(path)) {
            break;
        }
    }
    facts
}

/// Small files of other processes are read with this cap.
const SMALL_FILE: u64 = 64 * 1024;

fn read_small(path: &Path) -> Option<String> {
    files::read_regular(path, SMALL_FILE).ok()
}

/// `/proc/PID/comm`, trimmed; empty if it cannot be read.
pub fn comm(proc_root: &Path, pid: u32) -> String {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default()
}

/// The cgroup facts of `pids`, preferring a process that is not the pod's
/// `pause` (sandbox) container, whose namespace the pod's containers join.
pub fn cgroup_facts(proc_root: &Path, processes: &[Process]) -> CgroupFacts {
    let mut best = CgroupFacts::default();
    let mut ordered: Vec<&Process> = processes.iter().filter(|p| p.comm != "pause").collect();
    ordered.extend(processes.iter().filter(|p| p.comm == "pause"));
    for p in ordered.into_iter().take(16) {
        let Some(text) = read_small(&proc_root.join(p.pid.to_string()).join("cgroup")) else {
            continue;
        };
        if best.fill_from(parse_proc_cgroup(&text)) {
            break;
        }
    }
    best
}

/// The Kubernetes namespace of a pod, from the service-account file mounted
/// into one of its processes' root.
pub fn service_account_namespace(proc_root: &Path, pids: &[u32]) -> Option<String> {
    const FILES: [&str; 2] = [
        "var/run/secrets/kubernetes.io/serviceaccount/namespace",
        "run/secrets/kubernetes.io/serviceaccount/namespace",
    ];
    pids.iter().take(16).find_map(|pid| {
        let root = proc_root.join(pid.to_string()).join("root");
        FILES.iter().find_map(|file| {
            // Inside the pod's root: `/var/run` is often a link to `/run`.
            let text = files::read_in_root(&root, Path::new(file), SMALL_FILE).ok()?;
            let ns = text.trim();
            // A DNS label (RFC 1123), as Kubernetes requires of namespaces.
            let valid = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            valid.then(|| ns.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2ab39d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";
    const UID: &str = "0d3f9b7c-1a2b-4c5d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn containerd_with_the_systemd_driver() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let f = parse_cgroup_path(&path);
        assert_eq!(
            f.container,
            Some(Container {
                id: ID.into(),
                runtime: Some("containerd".into())
            })
        );
        assert_eq!(f.pod, Some((UID.into(), "burstable".into())));
    }

    #[test]
    fn crio_docker_and_podman_scopes() {
        let crio = parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/crio-{ID}.scope",
            UID.replace('-', "_")
        ));
        assert_eq!(crio.container.unwrap().runtime.as_deref(), Some("cri-o"));
        assert_eq!(crio.pod, Some((UID.into(), "besteffort".into())));
        let docker = parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(docker.container.unwrap().runtime.as_deref(), Some("docker"));
        assert_eq!(docker.pod, None);
        let docker_v1 = parse_cgroup_path(&format!("/docker/{ID}"));
        assert_eq!(docker_v1.container.unwrap().id, ID);
        let podman = parse_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope/container"));
        assert_eq!(podman.container.unwrap().runtime.as_deref(), Some("podman"));
        // conmon's scope is not the container.
        assert_eq!(
            parse_cgroup_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")).container,
            None
        );
    }

    #[test]
    fn the_cgroupfs_driver_names_pod_and_container_but_not_the_runtime() {
        let f = parse_cgroup_path(&format!("/kubepods/besteffort/pod{UID}/{ID}"));
        assert_eq!(f.pod, Some((UID.into(), "besteffort".into())));
        assert_eq!(
            f.container,
            Some(Container {
                id: ID.into(),
                runtime: None
            })
        );
        // Guaranteed pods sit right under kubepods.
        let g = parse_cgroup_path(&format!("/kubepods/pod{UID}/{ID}"));
        assert_eq!(g.pod, Some((UID.into(), "guaranteed".into())));
    }

    #[test]
    fn v1_and_v2_files_and_nothing_guessed() {
        let v1 = format!("12:pids:/\n5:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/\n");
        let f = parse_proc_cgroup(&v1);
        assert_eq!(f.pod.unwrap().1, "burstable");
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            parse_proc_cgroup(&v2).container.unwrap().runtime.as_deref(),
            Some("docker")
        );
        // A host process, a user session, a malformed line: nothing.
        for text in [
            "0::/user.slice/user-1000.slice/session-2.scope\n",
            "0::/init.scope\n",
            "garbage",
            "",
            "0::/kubepods/podnot-a-uid/abc\n",
        ] {
            assert_eq!(parse_proc_cgroup(text), CgroupFacts::default(), "{text:?}");
        }
    }

    #[test]
    fn labels_say_who() {
        let mut id = Identity {
            inode: 4026532247,
            name: None,
            host: false,
            pod: None,
            container: None,
            pids: vec![],
            processes: vec![],
        };
        assert_eq!(id.label(), "netns inode 4026532247");
        id.container = Some(Container {
            id: ID.into(),
            runtime: Some("docker".into()),
        });
        assert_eq!(id.label(), "docker 4f1c2ab39d0e");
        id.name = Some("blue".into());
        assert_eq!(id.label(), "blue");
        id.pod = Some(Pod {
            uid: UID.into(),
            name: Some("api-7d9f".into()),
            namespace: Some("shop".into()),
            qos: "burstable".into(),
        });
        assert_eq!(id.label(), "shop/api-7d9f");
    }
}
