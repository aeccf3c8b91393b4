//! The whole node: every network namespace, who it belongs to, and its
//! [`Status`] (`--netns all`).
//!
//! Each container and pod has its own namespace, and with it its own port
//! range, TIME_WAIT table and port budget. [`Node::collect`] finds them all
//! ([`discover()`]), skips those whose `/proc/PID/net/sockstat` shows no TCP
//! socket, and takes the census of the rest on a bounded pool of worker
//! threads: each thread `setns()`es itself into a namespace, opens its
//! netlink socket there and reads sysctls and counters through its own view
//! (`/proc/sys`, `/proc/thread-self/net`).
//!
//! What a node costs (BENCHMARKS.md): namespaces without a TCP socket cost a
//! `sockstat` read. A dump walks the kernel's established hash, which every
//! namespace shares unless `net.ipv4.tcp_child_ehash_entries` gave it its own
//! (set on the host before the pods start), so on a default kernel each
//! namespace with sockets costs about one walk over the whole node's sockets:
//! twscope makes it one walk for both families (see
//! [`crate::sockdiag::SockDiag::dump_tcp_both_families`]), and never asks for
//! `TCP_BOUND_INACTIVE`, which would add a walk of the shared bind hash.

pub mod discover;
pub mod identity;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::capacity::Severity;
use crate::netns::NetnsInfo;
use crate::status::{Status, StatusOptions};
pub use discover::{discover, Discovery, Found};
pub use identity::{Container, Identity, Pod, Process};

/// What `--netns all` collects.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The census options every namespace is judged with.
    pub status: StatusOptions,
    /// Worker threads entering namespaces (at least 1).
    pub workers: usize,
    /// Also list namespaces without a TCP socket.
    pub include_idle: bool,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            status: StatusOptions::default(),
            workers: default_workers(),
            include_idle: false,
        }
    }
}

/// Twice the CPUs, at most 16: a dump waits on the kernel as much as it computes.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2).min(16)
}

/// One namespace of the node.
#[derive(Debug, Clone)]
pub struct NamespaceStatus {
    /// Who it belongs to.
    pub identity: Identity,
    /// Its census; `None` when it has no TCP socket (not dumped) or could not
    /// be read (`error` says why).
    pub status: Option<Status>,
    /// Why it could not be read, in one line naming what is missing.
    pub error: Option<String>,
}

impl NamespaceStatus {
    /// Its verdict's severity; ok when it has no census.
    pub fn severity(&self) -> Severity {
        self.status.as_ref().map_or(Severity::Ok, |s| s.verdict.severity)
    }

    /// Its worst destination: the highest severity, then utilization.
    pub fn worst_destination(&self) -> Option<&crate::status::Destination> {
        let status = self.status.as_ref()?;
        status.destinations.iter().max_by(|a, b| {
            (a.severity, a.utilization)
                .partial_cmp(&(b.severity, b.utilization))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    }

    /// How it ranks on the node: severity, then its worst destination's
    /// utilization, then its sockets.
    fn pressure(&self) -> (Severity, f64, u64) {
        let utilization = self.worst_destination().map_or(0.0, |d| d.utilization);
        let sockets = self.status.as_ref().map_or(0, |s| s.dump.sockets);
        (self.severity(), utilization, sockets)
    }
}

/// Every namespace of the node, most pressed first.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// The namespaces listed: those with a TCP socket (all with
    /// [`NodeOptions::include_idle`]) and those that could not be read.
    #[serde(skip)]
    pub namespaces: Vec<NamespaceStatus>,
    /// Namespaces found on the node.
    pub found: usize,
    /// Of them, without any TCP socket (not dumped).
    pub idle: usize,
    /// Processes whose namespace could not be read (needs `CAP_SYS_PTRACE`):
    /// namespaces only they are in were not found.
    pub unreadable_processes: usize,
    /// Namespaces that could not be entered or read (each one's `error`
    /// says why).
    pub failed: usize,
    /// Namespaces found that were gone by the time they were read (not
    /// listed, not a failure).
    pub gone: usize,
    /// What privilege is missing, in one line, when a namespace or process
    /// was not read for want of it.
    pub missing: Option<String>,
}

impl Node {
    /// Discovers and reads every namespace. The caller's own namespace needs
    /// no privilege; the others need `CAP_SYS_ADMIN` (setns) and, for other
    /// users' processes, `CAP_SYS_PTRACE`.
    pub fn collect(options: &NodeOptions) -> Node {
        let proc_root = Path::new("/proc");
        let discovery = discover(proc_root);
        let host_inode = host_inode(proc_root);
        let named = named_namespaces();
        let found = discovery.namespaces.len();

        // Skip, without entering, what sockstat shows has no TCP socket.
        let mut idle = 0;
        let mut jobs = Vec::new();
        for f in discovery.namespaces {
            let has_tcp = f
                .pids
                .first()
                .map_or(Some(true), |&pid| tcp_sockets(proc_root, pid).map(|n| n > 0));
            if has_tcp == Some(false) {
                idle += 1;
                if !options.include_idle {
                    continue;
                }
            }
            jobs.push((f, has_tcp != Some(false)));
        }

        let next = AtomicUsize::new(0);
        let open_denied = AtomicUsize::new(0);
        let gone = AtomicUsize::new(0);
        let enter_denied = AtomicUsize::new(0);
        let idle_entered = AtomicUsize::new(0);
        let results: Mutex<Vec<NamespaceStatus>> = Mutex::new(Vec::with_capacity(jobs.len()));
        let own_uts = File::open("/proc/thread-self/ns/uts").ok();
        std::thread::scope(|scope| {
            for _ in 0..options.workers.clamp(1, jobs.len().max(1)) {
                scope.spawn(|| loop {
                    if UTS_LOST.with(|lost| lost.get()) {
                        break; // the other workers take the rest
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((f, dump)) = jobs.get(i) else {
                        break;
                    };
                    let identity = identify(proc_root, f, host_inode, &named, own_uts.as_ref());
                    let (status, error) = if *dump {
                        match read_namespace(proc_root, f, &identity, options) {
                            Ok(Some(status)) => (Some(status), None),
                            // Entered (a namespace held only by a mount) and found idle.
                            Ok(None) => {
                                idle_entered.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Err(Failure { needs, message }) => {
                                match needs {
                                    Some(Needs::Ptrace) => open_denied.fetch_add(1, Ordering::Relaxed),
                                    Some(Needs::Admin) => enter_denied.fetch_add(1, Ordering::Relaxed),
                                    Some(Needs::Gone) => {
                                        gone.fetch_add(1, Ordering::Relaxed);
                                        continue;
                                    }
                                    None => 0,
                                };
                                (None, Some(message))
                            }
                        }
                    } else {
                        (None, None)
                    };
                    let entry = NamespaceStatus {
                        identity,
                        status,
                        error,
                    };
                    results.lock().unwrap_or_else(|e| e.into_inner()).push(entry);
                });
            }
        });
        let mut namespaces = results.into_inner().unwrap_or_else(|e| e.into_inner());
        // A namespace that was dumped and turned out empty is idle too.
        let mut emptied = 0;
        namespaces.retain(|n| {
            let empty = n.status.as_ref().is_some_and(|s| s.dump.sockets == 0);
            emptied += usize::from(empty);
            options.include_idle || !empty
        });
        idle += emptied + idle_entered.into_inner();
        namespaces.sort_by(|a, b| {
            b.pressure()
                .partial_cmp(&a.pressure())
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.identity.inode.cmp(&b.identity.inode))
        });
        let failed = namespaces.iter().filter(|n| n.error.is_some()).count();
        // Processes closed even to CAP_SYS_PTRACE (a sandbox's PID 1) are
        // counted, but no privilege would help.
        let unreadable = if has_capability(CAP_SYS_PTRACE) {
            0
        } else {
            discovery.unreadable
        };
        let missing = missing_privileges(unreadable + open_denied.into_inner(), enter_denied.into_inner());
        Node {
            namespaces,
            found,
            idle,
            unreadable_processes: discovery.unreadable,
            failed,
            gone: gone.into_inner(),
            missing,
        }
    }

    /// The worst severity of any namespace.
    pub fn severity(&self) -> Severity {
        self.namespaces
            .iter()
            .map(NamespaceStatus::severity)
            .max()
            .unwrap_or(Severity::Ok)
    }
}

/// `CAP_SYS_PTRACE`'s bit in the capability sets (`linux/capability.h`).
const CAP_SYS_PTRACE: u32 = 19;

/// Whether this thread's effective set holds capability `bit`
/// (`/proc/thread-self/status`, `CapEff`).
fn has_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|text| {
            let hex = text.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

fn missing_privileges(unreadable: usize, denied: usize) -> Option<String> {
    let mut parts = Vec::new();
    if unreadable > 0 {
        parts.push(format!(
            "{unreadable} processes' namespaces could not be read (needs CAP_SYS_PTRACE, or root)"
        ));
    }
    if denied > 0 {
        parts.push(format!(
            "{denied} namespaces could not be entered (needs CAP_SYS_ADMIN, or root)"
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// TCP sockets of the namespace `pid` is in, from `/proc/PID/net/sockstat`
/// (`TCP: inuse N … tw N`): sockets in a hash table plus TIME_WAIT. `None`
/// when it cannot be read.
pub fn tcp_sockets(proc_root: &Path, pid: u32) -> Option<u64> {
    tcp_sockets_in(&proc_root.join(pid.to_string()).join("net"))
}

/// [`tcp_sockets`] of a `/proc/…/net` directory (`/proc/thread-self/net`
/// for the namespace this thread entered).
fn tcp_sockets_in(net_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(net_dir.join("sockstat")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("TCP: "))?;
    let mut fields = line.split_whitespace();
    let mut total = 0;
    while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
        if key == "inuse" || key == "tw" {
            total += value.parse::<u64>().ok()?;
        }
    }
    // `inuse` counts IPv4 sockets only (`tw` both families): IPv6 ones, dual
    // stack included, are `TCP6: inuse` of sockstat6 (absent without IPv6).
    let v6 = std::fs::read_to_string(net_dir.join("sockstat6"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("TCP6: inuse ")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    Some(total + v6)
}

/// The init namespace's inode: PID 1's, or the kernel's fixed one when PID
/// 1's is closed to us ([`crate::linux::INIT_NET_INODE`]).
fn host_inode(proc_root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(proc_root.join("1/ns/net")).map_or(crate::linux::INIT_NET_INODE, |m| m.ino())
}

/// `ip netns` names by inode.
fn named_namespaces() -> Vec<(u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let mut named: Vec<(u64, String)> = std::fs::read_dir(crate::linux::NAMED_NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            Some((
                std::fs::metadata(e.path()).ok()?.ino(),
                e.file_name().into_string().ok()?,
            ))
        })
        .collect();
    named.sort();
    named
}

/// Who `f` belongs to. Entering the pod's UTS namespace (to read its
/// hostname) happens on this worker thread, which goes back to `own_uts`.
fn identify(proc_root: &Path, f: &Found, host: u64, named: &[(u64, String)], own_uts: Option<&File>) -> Identity {
    let processes: Vec<Process> = f
        .pids
        .iter()
        .map(|&pid| Process {
            pid,
            comm: identity::comm(proc_root, pid),
        })
        .collect();
    let facts = identity::cgroup_facts(proc_root, &processes);
    let pod = facts.pod.map(|(uid, qos)| {
        let member = processes.iter().find(|p| p.comm != "pause").or(processes.first());
        Pod {
            uid,
            name: member.and_then(|p| pod_hostname(proc_root, p.pid, own_uts)),
            namespace: identity::service_account_namespace(proc_root, &f.pids),
            qos,
        }
    });
    Identity {
        inode: f.inode,
        name: named
            .iter()
            .find(|(inode, _)| *inode == f.inode)
            .map(|(_, n)| n.clone()),
        host: host == f.inode,
        pod,
        container: facts.container,
        pids: f.pids.clone(),
        processes,
    }
}

/// The hostname of `pid`'s UTS namespace (the pod name, in a pod), or `None`
/// when it shares ours or cannot be entered. A thread of its own enters the
/// namespace, so no caller's thread ever changes UTS namespace.
pub fn uts_hostname(pid: u32) -> Option<String> {
    std::thread::spawn(move || {
        let own_uts = File::open("/proc/thread-self/ns/uts").ok();
        pod_hostname(Path::new("/proc"), pid, own_uts.as_ref())
    })
    .join()
    .ok()
    .flatten()
}

/// The hostname of `pid`'s UTS namespace, which the kubelet sets to the pod
/// name; `None` when it is the host's own UTS namespace (a `hostNetwork`
/// pod's hostname is the node's) or cannot be entered.
fn pod_hostname(proc_root: &Path, pid: u32, own_uts: Option<&File>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let own_uts = own_uts?;
    let theirs = File::open(proc_root.join(pid.to_string()).join("ns/uts")).ok()?;
    if theirs.metadata().ok()?.ino() == own_uts.metadata().ok()?.ino() {
        return None;
    }
    setns(&theirs, libc::CLONE_NEWUTS).ok()?;
    let name = crate::kernel::hostname(proc_root).ok();
    // Back, so the next namespace on this thread reads its own hostname.
    if setns(own_uts, libc::CLONE_NEWUTS).is_err() {
        UTS_LOST.with(|lost| lost.set(true));
    }
    name.filter(|n| !n.is_empty())
}

thread_local! {
    /// Set when a worker could not return to its own UTS namespace: it must
    /// take no further job, or it would report a pod's hostname as the host's.
    static UTS_LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn setns(file: &File, nstype: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setns on a descriptor we own for the duration of the call.
    if unsafe { libc::setns(file.as_raw_fd(), nstype) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The privilege a failure was for want of, or that there was nothing left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Opening another user's namespace file (a ptrace read check).
    Ptrace,
    /// `setns()`.
    Admin,
    /// Nothing: the namespace is gone (its processes exited, its mounts were
    /// removed) since discovery — on a busy node, a normal event.
    Gone,
}

/// `setns()` into the namespace file at `path`.
fn enter_path(path: &Path) -> Result<(), Failure> {
    let file = crate::files::open_nonblocking(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Failure {
            needs: Some(Needs::Ptrace),
            message: format!("cannot open {}: needs CAP_SYS_PTRACE (or root)", path.display()),
        },
        std::io::ErrorKind::NotFound => Failure {
            needs: Some(Needs::Gone),
            message: format!("{} is gone", path.display()),
        },
        _ => Failure::other(format_args!("cannot open {}: {e}", path.display())),
    })?;
    setns(&file, libc::CLONE_NEWNET).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) => Failure {
            needs: Some(Needs::Admin),
            message: "cannot enter the namespace: needs CAP_SYS_ADMIN (or root)".to_string(),
        },
        _ => Failure::other(format_args!("cannot enter the namespace: {e}")),
    })
}

/// Why a namespace was not read.
struct Failure {
    /// The privilege missing, if that was why.
    needs: Option<Needs>,
    /// One line saying what failed and what is missing.
    message: String,
}

impl Failure {
    fn other(message: impl std::fmt::Display) -> Failure {
        Failure {
            needs: None,
            message: message.to_string(),
        }
    }
}

/// Enters `f` on this thread (unless it is there already) and takes its
/// census; `None` when it has no TCP socket and idle ones are not listed.
fn read_namespace(
    proc_root: &Path,
    f: &Found,
    identity: &Identity,
    options: &NodeOptions,
) -> Result<Option<Status>, Failure> {
    // A worker may still be in the namespace of its previous job.
    use std::os::unix::fs::MetadataExt;
    let here = || std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino());
    if here().map_err(Failure::other)? != f.inode {
        // Any of its processes or mounts will do: the first may have exited
        // (its PID even reused) since discovery.
        let mut last = Failure {
            needs: Some(Needs::Gone),
            message: "the namespace went away while it was being read".to_string(),
        };
        let entered = f.paths(proc_root).into_iter().any(|path| match enter_path(&path) {
            Ok(()) => here().is_ok_and(|now| now == f.inode),
            Err(e) => {
                last = e;
                false
            }
        });
        if !entered {
            return Err(last);
        }
    }
    // Held only by a mount, it was not checked before: check now, cheaply.
    if !options.include_idle && tcp_sockets_in(Path::new("/proc/thread-self/net")) == Some(0) {
        return Ok(None);
    }
    let info = NetnsInfo {
        name: identity.label(),
        inode: f.inode,
    };
    Status::collect(&options.status, info).map(Some).map_err(Failure::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_counts_hashed_and_time_wait_sockets() {
        let me = std::process::id();
        // Our own namespace: whatever it holds, the file parses.
        assert!(tcp_sockets(Path::new("/proc"), me).is_some());
        assert_eq!(tcp_sockets(Path::new("/nonexistent"), me), None);
        // IPv6 sockets count too: sockstat's `inuse` is IPv4 only.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sockstat"),
            "TCP: inuse 2 orphan 0 tw 3 alloc 9 mem 1\n",
        )
        .unwrap();
        assert_eq!(tcp_sockets_in(dir.path()), Some(5));
        std::fs::write(dir.path().join("sockstat6"), "TCP6: inuse 7\nUDP6: inuse 1\n").unwrap();
        assert_eq!(tcp_sockets_in(dir.path()), Some(12));
    }

    #[test]
    fn privileges_are_named_only_when_missing() {
        assert_eq!(missing_privileges(0, 0), None);
        let both = missing_privileges(3, 2).unwrap();
        assert!(
            both.contains("CAP_SYS_PTRACE") && both.contains("CAP_SYS_ADMIN"),
            "{both}"
        );
    }
}
