//! Throwaway network namespaces, made and removed with iproute2's `ip netns`.
//!
//! A namespace made here is tuned so that the TIME_WAIT population it gets is
//! exactly the one its clients create (see [`Netns::new`]).
//!
//! Its name says who made it: `twscope-<tag>-<pid>-<start>-<n>`, where
//! `<start>` is the owner's start time (field 22 of `/proc/<pid>/stat`, clock
//! ticks since boot). A namespace outlives its owner only when the owner dies
//! without running its drops (SIGKILL, OOM kill); [`remove_leftovers`] finds
//! such namespaces — owner gone, or its pid now reused by another process —
//! and deletes them.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where `ip netns add` puts named namespaces.
pub use twscope_core::linux::NAMED_NETNS_DIR as NETNS_DIR;
/// Every namespace made here starts with it.
pub const PREFIX: &str = "twscope-";

/// Moves the calling thread into the network namespace at `path`. Threads it
/// spawns afterwards start there too. Needs `CAP_SYS_ADMIN`.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    // The core's one way in: no FIFO hang, nsfs checked, errors that say why.
    twscope_core::netns::enter(&twscope_core::NetnsSpec::Path(path.to_path_buf()))
        .map(drop)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Runs a command, turning a non-zero exit into an error carrying its stderr.
pub(crate) fn run(command: &mut Command) -> io::Result<()> {
    let out = command.output().map_err(|e| {
        let program = command.get_program();
        let package = match program.to_str() {
            Some("ip") => "iproute2",
            Some("unshare" | "nsenter") => "util-linux",
            _ => return io::Error::new(e.kind(), format!("cannot run {program:?}: {e}")),
        };
        io::Error::new(
            e.kind(),
            format!("cannot run {program:?} ({e}): is {package} installed?"),
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} {:?} failed: {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `f` on a new thread inside the network namespace at `path` (a
/// `/proc/PID/ns/net`, a bind mount, `/run/netns/NAME`) and returns its
/// result. Sockets `f` creates belong to that namespace, and so do threads it
/// spawns.
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = path.to_path_buf();
    let thread = std::thread::spawn(move || enter_netns(&path).map(|()| f()));
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `program` to be run inside the network namespace at `path`
/// (`nsenter --net=PATH program`).
pub fn command_in(path: &Path, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command.arg(format!("--net={}", path.display())).arg(program);
    command
}

/// Writes a sysctl (`net.ipv4.tcp_tw_reuse`, `"1"`) of the network namespace
/// at `path`.
pub fn set_sysctl_in(path: &Path, key: &str, value: &str) -> io::Result<()> {
    let file = twscope_core::tune::proc_path(key);
    let value = value.to_string();
    // /proc/sys/net resolves to the namespace of the thread that opens it.
    run_in(path, move || std::fs::write(&file, value))?
        .map_err(|e| io::Error::new(e.kind(), format!("cannot set {key}: {e}")))
}

/// Sets, in the network namespace at `path`, what keeps a TIME_WAIT
/// population exactly the one its clients made:
///
/// - `tcp_tw_reuse=0` — a new namespace has 2, which lets loopback
///   connects take over TIME_WAIT sockets after 1 s;
/// - `tcp_max_tw_buckets=4000000` — the default cap would silently skip
///   TIME_WAIT past it;
/// - `tcp_rfc1337=1` — a stray RST must not kill a TIME_WAIT socket.
pub fn exact_counts(path: &Path) -> io::Result<()> {
    for (key, value) in [
        ("net.ipv4.tcp_tw_reuse", "0"),
        ("net.ipv4.tcp_max_tw_buckets", "4000000"),
        ("net.ipv4.tcp_rfc1337", "1"),
    ] {
        set_sysctl_in(path, key, value)?;
    }
    Ok(())
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, clock
/// ticks since boot), or `None` when no such process exists or it has
/// already exited (a zombie).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line, `None` for a zombie or dead task.
fn parse_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: fields 3 onwards follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if matches!(state, "Z" | "X" | "x") {
        return None;
    }
    // Field 3 was the state; field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// This process's (pid, start time), read once.
fn own_identity() -> io::Result<(u32, u64)> {
    static IDENTITY: OnceLock<Option<(u32, u64)>> = OnceLock::new();
    let pid = std::process::id();
    IDENTITY
        .get_or_init(|| process_start_ticks(pid).map(|start| (pid, start)))
        .ok_or_else(|| {
            io::Error::other("cannot read this process's start time from /proc/self/stat: is /proc mounted?")
        })
}

/// A namespace name as [`Netns::new`] makes it, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsName {
    /// What the namespace is for (`lab-client`, `census`, ...).
    pub tag: String,
    /// The process that made it …
    pub pid: u32,
    /// … and when that process started (ticks since boot), so a reused pid
    /// is not taken for the owner.
    pub start_ticks: u64,
    /// Its number among the owner's namespaces.
    pub serial: u32,
}

impl NetnsName {
    /// Parses `twscope-<tag>-<pid>-<start>-<n>`; `None` for any other name
    /// (including the `twscope-<tag>-<pid>-<n>` of older versions, whose owner
    /// cannot be told from a later process with the same pid).
    pub fn parse(name: &str) -> Option<NetnsName> {
        let rest = name.strip_prefix(PREFIX)?;
        let mut parts = rest.rsplitn(4, '-');
        let serial = parts.next().and_then(digits)?;
        let start_ticks = parts.next().and_then(digits)?;
        let pid = parts.next().and_then(digits)?;
        let tag = parts.next()?;
        let tag_ok = !tag.is_empty()
            && !tag.starts_with('-')
            && !tag.ends_with('-')
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !tag_ok {
            return None;
        }
        Some(NetnsName {
            tag: tag.to_string(),
            pid: u32::try_from(pid).ok().filter(|&p| p > 0)?,
            start_ticks,
            serial: u32::try_from(serial).ok()?,
        })
    }

    /// Whether the process that made the namespace is still running: a process
    /// with its pid exists, is not a zombie, and started when the owner did.
    pub fn owner_alive(&self) -> bool {
        process_start_ticks(self.pid) == Some(self.start_ticks)
    }
}

impl std::fmt::Display for NetnsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}-{}-{}-{}",
            self.tag, self.pid, self.start_ticks, self.serial
        )
    }
}

/// A decimal number without sign or leading zeros (so a name has one spelling).
fn digits(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// The namespaces in `/run/netns` that [`Netns::new`] made in a process that
/// is no longer running, sorted by name. Namespaces with a live owner, and
/// names that are not ours, are never listed; nor is a namespace some process
/// is still inside. An absent `/run/netns` means none.
pub fn leftovers() -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot list {NETNS_DIR}: {e}"))),
    };
    let mut dead = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        match NetnsName::parse(&name) {
            Some(parsed) if !parsed.owner_alive() => dead.push(name),
            _ => {}
        }
    }
    if !dead.is_empty() {
        // Belt and braces, for an owner in another pid namespace (a container
        // sharing /run/netns): a namespace a thread is in is in use.
        let in_use = namespaces_in_use();
        dead.retain(|name| match std::fs::metadata(Path::new(NETNS_DIR).join(name)) {
            Ok(meta) => !in_use.contains(&(meta.dev(), meta.ino())),
            Err(_) => false,
        });
    }
    dead.sort();
    Ok(dead)
}

/// (device, inode) of the network namespace of every thread we can see.
fn namespaces_in_use() -> HashSet<(u64, u64)> {
    let mut in_use = HashSet::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return in_use;
    };
    for process in processes.flatten() {
        if !process
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(meta) = std::fs::metadata(task.path().join("ns/net")) {
                in_use.insert((meta.dev(), meta.ino()));
            }
        }
    }
    in_use
}

/// What [`remove_leftovers`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Namespaces deleted, sorted.
    pub removed: Vec<String>,
    /// Namespaces that could not be deleted, with why.
    pub failed: Vec<(String, String)>,
}

/// Deletes (`ip netns del`) every namespace [`leftovers`] lists: those left
/// by twscope processes that died without cleaning up. Needs root to delete
/// anything; a namespace another cleanup removed first is not a failure.
pub fn remove_leftovers() -> io::Result<Cleanup> {
    let mut cleanup = Cleanup::default();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    for name in leftovers()? {
        if !root {
            cleanup
                .failed
                .push((name, "removing a network namespace needs root".to_string()));
            continue;
        }
        match Command::new("ip").args(["netns", "del", &name]).output() {
            Ok(out) if out.status.success() => cleanup.removed.push(name),
            // Another cleanup (a lab starting at the same time) was first.
            _ if !Path::new(NETNS_DIR).join(&name).exists() => {}
            Ok(out) => {
                let why = format!("ip netns del: {}", String::from_utf8_lossy(&out.stderr).trim());
                cleanup.failed.push((name, why));
            }
            Err(e) => cleanup
                .failed
                .push((name, format!("cannot run ip ({e}): is iproute2 installed?"))),
        }
    }
    Ok(cleanup)
}

/// A named network namespace that exists as long as this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `twscope-<tag>-<pid>-<start>-<n>` (see [`NetnsName`]; `tag` is
    /// lower-case letters, digits and inner dashes) with loopback up and the
    /// settings that keep a TIME_WAIT population exact ([`exact_counts`]).
    pub fn new(tag: &str) -> io::Result<Netns> {
        let (pid, start_ticks) = own_identity()?;
        let name = NetnsName {
            tag: tag.to_string(),
            pid,
            start_ticks,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        };
        let name = name.to_string();
        if NetnsName::parse(&name).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{tag:?} is not a namespace tag: use lower-case letters, digits and inner dashes"),
            ));
        }
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        exact_counts(&ns.path())?;
        Ok(ns)
    }

    /// The name `ip netns list` shows.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file (`/run/netns/NAME`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `program` to be run inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Adds an address (`198.18.0.1/32`, `2001:2::1/128`) to the loopback device.
    pub fn add_address(&self, cidr: &str) -> io::Result<()> {
        self.add_address_to(cidr, "lo")
    }

    /// Adds an address to `device` (IPv6 without duplicate detection, so it is
    /// usable at once).
    pub fn add_address_to(&self, cidr: &str, device: &str) -> io::Result<()> {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name, "addr", "add", cidr, "dev", device]);
        if cidr.contains(':') {
            command.arg("nodad");
        }
        run(&mut command)
    }

    /// Runs `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Writes a sysctl of this namespace (`net.ipv4.tcp_tw_reuse`, `"1"`).
    pub fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        set_sysctl_in(&self.path(), key, value)
    }

    /// Reads a sysctl of this namespace.
    pub fn sysctl(&self, key: &str) -> io::Result<String> {
        let path = twscope_core::tune::proc_path(key);
        Ok(self.run(move || std::fs::read_to_string(path))??.trim().to_string())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    /// Sockets `f` creates belong to the namespace, and so do threads it spawns.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        run_in(&self.path(), f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The kernel frees the namespace once its last socket is gone.
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// A veth pair joining two namespaces, each end with an address.
///
/// Removed with its namespaces (deleting either end deletes both).
pub fn link_veth(a: &Netns, a_cidr: &str, b: &Netns, b_cidr: &str) -> io::Result<()> {
    let (a_dev, b_dev) = ("veth-a", "veth-b");
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ])?;
    a.add_address_to(a_cidr, a_dev)?;
    b.add_address_to(b_cidr, b_dev)?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_owner_and_parse_back() {
        let name = NetnsName {
            tag: "lab-client".into(),
            pid: 4321,
            start_ticks: 98_765,
            serial: 1,
        };
        assert_eq!(name.to_string(), "twscope-lab-client-4321-98765-1");
        assert_eq!(NetnsName::parse("twscope-lab-client-4321-98765-1"), Some(name));
        assert_eq!(NetnsName::parse("twscope-census-7-0-0").unwrap().tag, "census");
        for other in [
            "twscope-lab-client-4321-1", // the old format: pid and serial only
            "twscope-demo",
            "twscope--4321-98765-1",
            "twscope-x-0-98765-1",
            "twscope-x-01-98765-1",
            "twscope-Lab-1-2-3",
            "twscope-x-1-2-3-",
            "twscope-x-99999999999-2-3",
            "netns-x-1-2-3",
            "twscope-x-+1-2-3",
            "",
        ] {
            assert_eq!(NetnsName::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn stat_field_22_is_the_start_time() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 777 1000 200";
        assert_eq!(parse_stat(line), Some(777));
        assert_eq!(parse_stat(&line.replace(") S ", ") Z ")), None);
        assert_eq!(parse_stat("1234 (x) S 1 2"), None);
        // This process is alive, and a reused pid (another start time) is not it.
        let (pid, start) = own_identity().unwrap();
        assert!(NetnsName {
            tag: "t".into(),
            pid,
            start_ticks: start,
            serial: 0
        }
        .owner_alive());
        assert!(!NetnsName {
            tag: "t".into(),
            pid,
            start_ticks: start + 1,
            serial: 0
        }
        .owner_alive());
        assert!(!NetnsName {
            tag: "t".into(),
            pid: u32::MAX,
            start_ticks: start,
            serial: 0
        }
        .owner_alive());
    }
}
