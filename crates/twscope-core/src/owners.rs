//! Who holds a socket (`status --processes`, as `ss -p` shows it): the
//! processes whose descriptors point at the live outbound sockets of the
//! census, found from the socket inodes in `/proc/PID/fd`.
//!
//! Only the sockets the census recorded are looked for
//! ([`crate::census::Census::collect_with_inodes`]: every state but
//! TIME_WAIT, whose sockets belong to no process any more), and only in the
//! processes of the namespace being read: a process is skipped after one
//! `stat` of `/proc/PID/ns/net` unless that is the census's namespace. `ss -p`
//! instead reads the link of every descriptor of every process on the host;
//! skipping the other namespaces' processes is what makes this cheaper.
//!
//! A process that holds a socket of this namespace from another one (it
//! created the socket, then moved with `setns`) is not found: its sockets
//! count in [`ProcessScan::sockets_without_owner`].
//!
//! Reading another user's `/proc/PID/ns/net` or `/proc/PID/fd` is a ptrace
//! read check: it needs `CAP_SYS_PTRACE` (or root). A process that cannot be
//! read is counted ([`ProcessScan::processes_unreadable`]), never an error;
//! one that exits meanwhile is skipped.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::census::TupleKey;
use crate::node::identity::{self, Identity, Pod, Process};

/// A process holding some of one destination's live sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Its PID, as seen from the host's PID namespace.
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`); empty if it exited meanwhile.
    pub comm: String,
    /// Its container, as [`Identity::label`] names one (`containerd
    /// 4f1c2ab39d0e`, or `pod <uid>` when the cgroup names only the pod);
    /// `None` for a process in no container.
    pub container: Option<String>,
    /// The destination's live sockets it holds, each counted once however
    /// many of its descriptors point at it. A socket shared by several
    /// processes (inherited across `fork`) counts for each of them.
    pub sockets: u64,
}

/// A process of the namespace holding at least one of the sockets looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its PID.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// Its container label ([`Owner::container`]).
    pub container: Option<String>,
    /// The inodes of the sockets looked for that it holds, ascending, each once.
    pub inodes: Vec<u32>,
}

/// What one pass over `/proc` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The processes holding sockets looked for, by PID.
    pub holders: Vec<Holder>,
    /// Processes of the namespace whose descriptors were read.
    pub read: usize,
    /// Processes whose namespace or descriptors could not be read.
    pub unreadable: usize,
}

/// The scan in numbers, as `status --processes` reports it (flattened into
/// the top level of `status --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessScan {
    /// Processes of the namespace whose descriptors were read.
    pub processes_scanned: usize,
    /// Processes whose namespace or descriptors could not be read (another
    /// user's, without `CAP_SYS_PTRACE`; a sandbox's PID 1 even with it):
    /// sockets they hold show no owner.
    pub processes_unreadable: usize,
    /// Live outbound sockets no process read was found holding: held by an
    /// unreadable process or from another namespace, or closed meanwhile.
    pub sockets_without_owner: u64,
    /// What is missing, in one line naming the capability, when processes
    /// could not be read for want of `CAP_SYS_PTRACE`; `None` when nothing
    /// is.
    pub processes_missing: Option<String>,
}

/// The owners of every destination's live sockets, and the scan's numbers.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    by_destination: HashMap<(IpAddr, u16), Vec<Owner>>,
    /// The scan in numbers.
    pub scan: ProcessScan,
}

impl Owners {
    /// Finds who holds the live sockets `live` lists (inode and tuple, as
    /// the census recorded them) among the processes of the namespace with
    /// inode `netns_inode` (0: the calling thread's).
    pub fn find(proc_root: &Path, netns_inode: u64, live: &[(u32, TupleKey)]) -> Owners {
        let netns_inode = match netns_inode {
            0 => own_netns_inode(proc_root).unwrap_or(0),
            n => n,
        };
        let wanted: HashSet<u32> = live.iter().map(|&(inode, _)| inode).collect();
        let scan = if wanted.is_empty() {
            Scan::default()
        } else {
            scan(proc_root, netns_inode, &wanted)
        };
        let missing = missing_privilege(scan.unreadable, has_capability(proc_root, CAP_SYS_PTRACE));
        Owners::from_scan(live, &scan, missing)
    }

    /// Groups a scan's holders by the destination of the sockets they hold
    /// (no I/O). `missing` is [`ProcessScan::processes_missing`].
    pub fn from_scan(live: &[(u32, TupleKey)], scan: &Scan, missing: Option<String>) -> Owners {
        let destination_of: HashMap<u32, (IpAddr, u16)> = live
            .iter()
            .map(|(inode, key)| (*inode, (key.dst, key.dst_port)))
            .collect();
        let mut owned: HashSet<u32> = HashSet::new();
        let mut by_destination: HashMap<(IpAddr, u16), Vec<Owner>> = HashMap::new();
        for holder in &scan.holders {
            let mut counts: HashMap<(IpAddr, u16), u64> = HashMap::new();
            for inode in &holder.inodes {
                if let Some(destination) = destination_of.get(inode) {
                    *counts.entry(*destination).or_default() += 1;
                    owned.insert(*inode);
                }
            }
            for (destination, sockets) in counts {
                by_destination.entry(destination).or_default().push(Owner {
                    pid: holder.pid,
                    comm: holder.comm.clone(),
                    container: holder.container.clone(),
                    sockets,
                });
            }
        }
        for owners in by_destination.values_mut() {
            owners.sort_by(|a, b| b.sockets.cmp(&a.sockets).then(a.pid.cmp(&b.pid)));
        }
        Owners {
            by_destination,
            scan: ProcessScan {
                processes_scanned: scan.read,
                processes_unreadable: scan.unreadable,
                sockets_without_owner: destination_of.len().saturating_sub(owned.len()) as u64,
                processes_missing: missing,
            },
        }
    }

    /// The owners of the live sockets to `addr`:`port`, most sockets first
    /// (then lowest PID); empty when none was found.
    pub fn of(&self, addr: IpAddr, port: u16) -> Vec<Owner> {
        self.by_destination.get(&(addr, port)).cloned().unwrap_or_default()
    }
}

/// Reads every process's `/proc/PID/ns/net` and, for those in the namespace
/// `netns_inode`, the links of `/proc/PID/fd/*`: who holds which of the
/// `wanted` socket inodes. The processes are shared out among
/// [`scan_workers`] threads: a link read is a system call of its own, and
/// the namespace's processes may hold hundreds of thousands of descriptors.
pub fn scan(proc_root: &Path, netns_inode: u64, wanted: &HashSet<u32>) -> Scan {
    scan_with(proc_root, netns_inode, wanted, scan_workers())
}

/// Threads [`scan`] reads `/proc` with: one per CPU, at most 4. (100k
/// sockets over 1,000 processes on 2 cores: 0.94 s on one thread, 0.54 s
/// on two, 0.68 s on four; BENCHMARKS.md.)
pub fn scan_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// What reading one process gave.
enum Outcome {
    /// In another namespace, or gone.
    Skipped,
    /// Its namespace or descriptors could not be read.
    Unreadable,
    /// Read: the wanted sockets it holds.
    Read(Vec<u32>),
}

/// [`scan`] on `workers` threads (at least 1).
pub fn scan_with(proc_root: &Path, netns_inode: u64, wanted: &HashSet<u32>, workers: usize) -> Scan {
    let pids = pids(proc_root);
    let next = AtomicUsize::new(0);
    let read_one = |pid: u32| -> Outcome {
        let dir = proc_root.join(pid.to_string());
        match std::fs::metadata(dir.join("ns/net")) {
            Ok(meta) if std::os::unix::fs::MetadataExt::ino(&meta) == netns_inode => {}
            Ok(_) => return Outcome::Skipped,
            Err(e) if denied(&e) => return Outcome::Unreadable,
            // Exited (or a zombie, which has no namespace any more).
            Err(_) => return Outcome::Skipped,
        }
        match held_sockets(&dir.join("fd"), wanted) {
            Ok(inodes) => Outcome::Read(inodes),
            Err(e) if denied(&e) => Outcome::Unreadable,
            Err(_) => Outcome::Skipped,
        }
    };
    let work = || {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = pids.get(i) else {
                return mine;
            };
            mine.push((pid, read_one(pid)));
        }
    };
    let outcomes: Vec<(u32, Outcome)> = if workers <= 1 || pids.len() < 2 {
        work()
    } else {
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..workers.min(pids.len())).map(|_| scope.spawn(work)).collect();
            threads
                .into_iter()
                // A worker cannot panic short of a bug; its processes count as unread then.
                .flat_map(|t| t.join().unwrap_or_default())
                .collect()
        })
    };
    let mut scan = Scan::default();
    for (pid, outcome) in outcomes {
        match outcome {
            Outcome::Skipped => {}
            Outcome::Unreadable => scan.unreadable += 1,
            Outcome::Read(inodes) => {
                scan.read += 1;
                if !inodes.is_empty() {
                    let process = Process {
                        pid,
                        comm: identity::comm(proc_root, pid),
                    };
                    scan.holders.push(Holder {
                        pid,
                        container: container_label(proc_root, &process),
                        comm: process.comm,
                        inodes,
                    });
                }
            }
        }
    }
    scan.holders.sort_by_key(|h| h.pid);
    scan
}

/// Every PID under `proc_root`, in directory order.
fn pids(proc_root: &Path) -> Vec<u32> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// The `wanted` socket inodes the descriptors in `fd_dir` point at,
/// ascending, each once.
fn held_sockets(fd_dir: &Path, wanted: &HashSet<u32>) -> io::Result<Vec<u32>> {
    let dir = Dir::open(fd_dir)?;
    let mut inodes = Vec::new();
    let mut target = [0u8; 64];
    dir.for_each_entry(|name| {
        if name.first() == Some(&b'.') {
            return Ok(());
        }
        match dir.readlink(name, &mut target) {
            Ok(link) => {
                if let Some(inode) = socket_inode(link).filter(|i| wanted.contains(i)) {
                    inodes.push(inode);
                }
                Ok(())
            }
            // The descriptor was closed meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    })?;
    inodes.sort_unstable();
    inodes.dedup();
    Ok(inodes)
}

/// `socket:[12345]` → 12345; anything else (a file, a pipe, `anon_inode:…`) → `None`.
pub fn socket_inode(link: &[u8]) -> Option<u32> {
    let digits = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A directory open for `readlinkat` and `getdents64`.
struct Dir(OwnedFd);

impl Dir {
    fn open(path: &Path) -> io::Result<Dir> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Calls `f` with each entry's name (`.` and `..` included).
    fn for_each_entry(&self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        // Aligned for `linux_dirent64`.
        let mut buf = vec![0u64; 4096];
        loop {
            // SAFETY: getdents64 writes at most the buffer's length into it.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len() * std::mem::size_of::<u64>(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                return Ok(());
            }
            let bytes =
                // SAFETY: the kernel filled the first `n` bytes of the buffer.
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            let mut at = 0;
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            while at + 19 <= bytes.len() {
                let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
                if reclen == 0 || at + reclen > bytes.len() {
                    break;
                }
                let name = &bytes[at + 19..at + reclen];
                let name = CStr::from_bytes_until_nul(name).map_or(name, CStr::to_bytes);
                f(name)?;
                at += reclen;
            }
        }
    }

    /// The target of the link `name` in this directory, in `buf` (cut at its length).
    fn readlink<'b>(&self, name: &[u8], buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        let mut c = [0u8; 32];
        if name.len() >= c.len() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        c[..name.len()].copy_from_slice(name);
        // SAFETY: `c` is NUL-terminated; readlinkat writes at most `buf.len()` bytes.
        let n = unsafe {
            libc::readlinkat(
                self.0.as_raw_fd(),
                c.as_ptr().cast(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(&buf[..n as usize])
    }
}

/// A refusal a privilege would lift (EACCES, EPERM).
fn denied(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// The container of `process`, labelled as [`Identity::label`] does: the
/// container when its cgroup path names one, else the pod; `None` for
/// neither.
fn container_label(proc_root: &Path, process: &Process) -> Option<String> {
    let facts = identity::cgroup_facts(proc_root, std::slice::from_ref(process));
    if facts.container.is_none() && facts.pod.is_none() {
        return None;
    }
    // Which container of the pod tells processes apart: the pod only when
    // the path names no container.
    let pod = match facts.container {
        Some(_) => None,
        None => facts.pod.map(|(uid, qos)| Pod {
            uid,
            name: None,
            namespace: None,
            qos,
        }),
    };
    let identity = Identity {
        inode: 0,
        name: None,
        host: false,
        pod,
        container: facts.container,
        pids: vec![process.pid],
        processes: vec![],
    };
    Some(identity.label())
}

/// The calling thread's network namespace inode.
fn own_netns_inode(proc_root: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(proc_root.join("thread-self/ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// `CAP_SYS_PTRACE`'s bit in the capability sets (`linux/capability.h`).
const CAP_SYS_PTRACE: u32 = 19;

/// Whether this thread's effective set holds capability `bit`.
fn has_capability(proc_root: &Path, bit: u32) -> bool {
    std::fs::read_to_string(proc_root.join("thread-self/status"))
        .ok()
        .and_then(|text| {
            let hex = text.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// The one line saying which privilege `unreadable` processes were not
/// read for want of; `None` when none is missing. Processes closed even to
/// `CAP_SYS_PTRACE` (a sandbox's PID 1) are counted, but no privilege would
/// help, so they are not a missing one (as in [`crate::node`]).
fn missing_privilege(unreadable: usize, have_ptrace: bool) -> Option<String> {
    if unreadable == 0 || have_ptrace {
        return None;
    }
    let (n, verb) = match unreadable {
        1 => ("1 process".to_string(), "holds"),
        n => (format!("{n} processes"), "hold"),
    };
    Some(format!(
        "{n} could not be read (the /proc/PID/fd of other users' and more privileged processes needs CAP_SYS_PTRACE, or root): \
         sockets {} {verb} show no owner",
        if unreadable == 1 { "it" } else { "they" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dst: &str, port: u16) -> TupleKey {
        TupleKey {
            src: "198.18.0.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: port,
        }
    }

    #[test]
    fn socket_links_parse() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"socket:[4294967295]"), Some(u32::MAX));
        for other in [
            &b"socket:[]"[..],
            b"socket:[4294967296]",
            b"socket:[12a]",
            b"pipe:[12345]",
            b"/dev/null",
            b"anon_inode:[eventfd]",
            b"socket:[1",
        ] {
            assert_eq!(socket_inode(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn owners_are_grouped_by_destination_most_sockets_first() {
        let live = [
            (10, key("198.18.0.2", 5432)),
            (11, key("198.18.0.2", 5432)),
            (12, key("198.18.0.2", 5432)),
            (20, key("198.18.0.3", 443)),
            (30, key("198.18.0.2", 5432)), // held by nobody found
        ];
        let holder = |pid, comm: &str, inodes: Vec<u32>| Holder {
            pid,
            comm: comm.into(),
            container: None,
            inodes,
        };
        let scan = Scan {
            holders: vec![
                holder(7, "java", vec![10, 99]),
                // A socket inherited across fork counts for both.
                holder(8, "python3", vec![10, 11, 12, 20]),
            ],
            read: 3,
            unreadable: 2,
        };
        let owners = Owners::from_scan(&live, &scan, missing_privilege(2, false));
        let db = owners.of("198.18.0.2".parse().unwrap(), 5432);
        assert_eq!(
            db.iter().map(|o| (o.pid, o.sockets)).collect::<Vec<_>>(),
            vec![(8, 3), (7, 1)]
        );
        let web = owners.of("198.18.0.3".parse().unwrap(), 443);
        assert_eq!((web.len(), web[0].comm.as_str()), (1, "python3"));
        assert!(owners.of("198.18.0.9".parse().unwrap(), 80).is_empty());
        assert_eq!(owners.scan.sockets_without_owner, 1);
        assert_eq!(
            (owners.scan.processes_scanned, owners.scan.processes_unreadable),
            (3, 2)
        );
        assert!(owners.scan.processes_missing.unwrap().contains("CAP_SYS_PTRACE"));
        assert_eq!(missing_privilege(0, false), None);
        assert_eq!(missing_privilege(1, true), None, "no privilege would help");
        let one = missing_privilege(1, false).unwrap();
        assert!(one.starts_with("1 process could") && one.contains("it holds"), "{one}");
    }

    #[test]
    fn our_own_socket_is_found_in_our_own_namespace() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
            .unwrap()
            .ino() as u32;
        let proc_root = Path::new("/proc");
        let netns = own_netns_inode(proc_root).unwrap();
        let scan = scan(proc_root, netns, &HashSet::from([inode]));
        let me = std::process::id();
        let holder = scan
            .holders
            .iter()
            .find(|h| h.pid == me)
            .expect("this process holds it");
        assert_eq!(holder.inodes, vec![inode]);
        assert!(scan.read >= 1);
        // Another namespace's inode matches no process.
        assert!(super::scan(proc_root, 1, &HashSet::from([inode])).holders.is_empty());
    }

    #[test]
    fn a_missing_proc_is_an_empty_scan() {
        let scan = scan(Path::new("/nonexistent"), 1, &HashSet::from([1]));
        assert_eq!(scan, Scan::default());
    }
}
