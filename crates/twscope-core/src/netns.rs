//! Network namespaces: naming them, entering them, telling which one we are in.
//!
//! Ports, TIME_WAIT tables and sysctls are all per network namespace, so every
//! number twscope reports belongs to one. `--netns` accepts what `ip` and
//! `nsenter` users already type: a name from `ip netns add` (`/run/netns/NAME`),
//! a path to a namespace file, or the PID of a process inside it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files;

/// `f_type` of the namespace filesystem (`/proc/PID/ns/*` and their bind
/// mounts under `/run/netns`), from `linux/magic.h`.
const NSFS_MAGIC: u64 = 0x6e73_6673;

pub use crate::linux::NAMED_NETNS_DIR;

/// A namespace as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsSpec {
    /// `ip netns` name, resolved under `/run/netns`.
    Name(String),
    /// A namespace file such as `/proc/1234/ns/net` or a bind mount.
    Path(PathBuf),
    /// A process whose namespace to use.
    Pid(u32),
}

impl NetnsSpec {
    /// Parses `NAME`, `PATH` (contains a `/`) or `PID` (all digits).
    pub fn parse(text: &str) -> Result<NetnsSpec, NetnsError> {
        if text.is_empty() {
            return Err(NetnsError::BadSpec(text.to_string()));
        }
        if text.contains('/') {
            Ok(NetnsSpec::Path(PathBuf::from(text)))
        } else if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse()
                .map(NetnsSpec::Pid)
                .map_err(|_| NetnsError::BadSpec(text.to_string()))
        } else if text == "." || text == ".." {
            Err(NetnsError::BadSpec(text.to_string()))
        } else {
            Ok(NetnsSpec::Name(text.to_string()))
        }
    }

    /// The namespace file this names.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsSpec::Name(name) => Path::new(NAMED_NETNS_DIR).join(name),
            NetnsSpec::Path(path) => path.clone(),
            NetnsSpec::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// How to show it to the user.
    pub fn label(&self) -> String {
        match self {
            NetnsSpec::Name(name) => name.clone(),
            NetnsSpec::Path(path) => path.display().to_string(),
            NetnsSpec::Pid(pid) => format!("pid {pid}"),
        }
    }
}

/// Why a `--netns` argument could not be resolved or entered. Each message
/// names the namespace as the user gave it and says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The argument is empty, `.`/`..`, or all digits but too large for a PID.
    #[error(
        "{0:?} is not a network namespace: give a name from `ip netns list`, a path such as /proc/PID/ns/net, or a PID"
    )]
    BadSpec(String),
    /// The namespace file does not exist (no such `ip netns` name or PID).
    #[error("network namespace {label} not found: no {path} (list named ones with `ip netns list`)")]
    NotFound {
        /// The namespace as the user named it ([`NetnsSpec::label`]).
        label: String,
        /// The namespace file looked for ([`NetnsSpec::path`]).
        path: PathBuf,
    },
    /// The namespace file exists but could not be opened.
    #[error("cannot open network namespace {label} at {path}: {source}")]
    Open {
        /// The namespace as the user named it ([`NetnsSpec::label`]).
        label: String,
        /// The namespace file that could not be opened.
        path: PathBuf,
        /// The error `open(2)` returned.
        source: io::Error,
    },
    /// The file is something else: a regular file, a FIFO, a device or a
    /// namespace of another kind. It is checked before `setns`, and without
    /// blocking on a FIFO.
    #[error("{path} is {what}, not a network namespace file{hint}")]
    NotNetns {
        /// The file the user's argument resolved to.
        path: PathBuf,
        /// What it is instead: "a FIFO", "a regular file", "a mount namespace".
        what: String,
        /// More on what to do, starting with "; " (or empty).
        hint: String,
    },
    /// `setns` was refused: entering a namespace needs `CAP_SYS_ADMIN`.
    #[error("entering network namespace {label} needs CAP_SYS_ADMIN: run as root (sudo) or grant the capability")]
    Permission {
        /// The namespace as the user named it ([`NetnsSpec::label`]).
        label: String,
    },
    /// Opening another process's namespace file was refused: a ptrace read
    /// check, passed by its owner or with `CAP_SYS_PTRACE`.
    #[error(
        "opening network namespace {label} needs CAP_SYS_PTRACE (it belongs to another user's process), and entering it CAP_SYS_ADMIN: run as root (sudo) or grant both"
    )]
    OpenPermission {
        /// The namespace as the user named it ([`NetnsSpec::label`]).
        label: String,
    },
    /// `setns` failed for another reason.
    #[error("entering network namespace {label} failed: {source}")]
    Setns {
        /// The namespace as the user named it ([`NetnsSpec::label`]).
        label: String,
        /// The error `setns(2)` returned.
        source: io::Error,
    },
}

/// Which namespace a report describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetnsInfo {
    /// The name given with `--netns`, or `host` when none was.
    pub name: String,
    /// The namespace's inode (`ls -L -i /proc/self/ns/net`), as `ip netns identify`
    /// and `lsns` show it; stable while the namespace exists.
    pub inode: u64,
}

/// The namespace the calling thread is in, labelled `name`.
pub fn current(name: &str) -> io::Result<NetnsInfo> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok(NetnsInfo {
        name: name.to_string(),
        inode: meta.ino(),
    })
}

/// The namespace the calling thread is in, named as a user would: `host`
/// only when it is the init namespace (PID 1's), else its `ip netns` name
/// when one of `/run/netns/*` is the same namespace, else `netns inode N`.
/// (Inside `ip netns exec blue`, this is `blue`, not `host`.)
pub fn identify() -> io::Result<NetnsInfo> {
    let inode = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    // PID 1's namespace file may be closed to us (a sandboxed init); kthreadd,
    // PID 2 outside a PID namespace, is a kernel thread and so always in the
    // init namespace.
    let kthreadd = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd");
    let init = if std::fs::metadata("/proc/1/ns/net").is_err() && kthreadd {
        "/proc/2/ns/net"
    } else {
        "/proc/1/ns/net"
    };
    Ok(NetnsInfo {
        name: name_of(inode, Path::new(init), Path::new(NAMED_NETNS_DIR)),
        inode,
    })
}

/// The name of the namespace with `inode`: `host` if `init` (PID 1's
/// namespace file) has that inode, else the first entry of `named_dir` that
/// does, else `netns inode N`. What cannot be read is skipped, never guessed.
fn name_of(inode: u64, init: &Path, named_dir: &Path) -> String {
    if inode == crate::linux::INIT_NET_INODE || std::fs::metadata(init).is_ok_and(|m| m.ino() == inode) {
        return "host".to_string();
    }
    let mut names: Vec<String> = std::fs::read_dir(named_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| std::fs::metadata(entry.path()).is_ok_and(|m| m.ino() == inode))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("netns inode {inode}"))
}

/// Moves the calling thread into the namespace `spec` names.
///
/// Call this on the main thread before opening any socket or reading `/proc`:
/// sockets stay in the namespace they were created in, and `/proc/net` follows
/// the main thread. Needs `CAP_SYS_ADMIN`.
pub fn enter(spec: &NetnsSpec) -> Result<NetnsInfo, NetnsError> {
    let path = spec.path();
    let label = spec.label();
    // Never blocks: a FIFO named by mistake (or malice) must not hang us.
    let file = files::open_nonblocking(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::NotFound {
                label: label.clone(),
                path: path.clone(),
            }
        } else if source.kind() == io::ErrorKind::PermissionDenied {
            // Another user's /proc/PID/ns/net: a ptrace read check.
            NetnsError::OpenPermission { label: label.clone() }
        } else {
            NetnsError::Open {
                label: label.clone(),
                path: path.clone(),
                source,
            }
        }
    })?;
    if let Some(what) = not_a_netns(&file) {
        let hint = match (spec, what.as_str()) {
            // `ip netns add` leaves an empty file when the mount failed, and
            // `ip netns del` removes it.
            (NetnsSpec::Name(name), "a regular file") => {
                format!("; the namespace {name} is gone (remove the stale entry with `ip netns del {name}`)")
            }
            _ => String::new(),
        };
        return Err(NetnsError::NotNetns { path, what, hint });
    }
    // SAFETY: setns on a descriptor we own for the duration of the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => NetnsError::Permission { label },
            // EINVAL: a namespace of another type, on a kernel too old (< 4.11)
            // to say which (NS_GET_NSTYPE).
            Some(libc::EINVAL) => NetnsError::NotNetns {
                path,
                what: "another kind of namespace".to_string(),
                hint: String::new(),
            },
            _ => NetnsError::Setns { label, source: err },
        });
    }
    let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
    Ok(NetnsInfo {
        name: match spec {
            NetnsSpec::Name(name) => name.clone(),
            _ => label,
        },
        inode,
    })
}

/// `None` when `file` is a network namespace (or may be one: the kernel is
/// too old to say); otherwise what it is, for the error message.
fn not_a_netns(file: &File) -> Option<String> {
    let fd = file.as_raw_fd();
    // SAFETY: an all-zero statfs is a valid value of a plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs fills `fs` from a descriptor we own.
    if unsafe { libc::fstatfs(fd, &mut fs) } != 0 {
        return None; // setns will tell
    }
    if fs.f_type as u64 != NSFS_MAGIC {
        return Some(match file.metadata() {
            Ok(meta) => files::kind_of(&meta).to_string(),
            Err(_) => "not a namespace".to_string(),
        });
    }
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value.
    let kind = unsafe { libc::ioctl(fd, libc::NS_GET_NSTYPE) };
    let what = match kind {
        // Unknown (ENOTTY before 4.11) or the right one: setns decides.
        -1 => return None,
        k if k == libc::CLONE_NEWNET => return None,
        k if k == libc::CLONE_NEWNS => "a mount namespace",
        k if k == libc::CLONE_NEWUTS => "a UTS namespace",
        k if k == libc::CLONE_NEWIPC => "an IPC namespace",
        k if k == libc::CLONE_NEWUSER => "a user namespace",
        k if k == libc::CLONE_NEWPID => "a PID namespace",
        k if k == libc::CLONE_NEWCGROUP => "a cgroup namespace",
        // CLONE_NEWTIME (Linux 5.6), not in every libc.
        0x80 => "a time namespace",
        _ => "another kind of namespace",
    };
    Some(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_like_ip_and_nsenter() {
        assert_eq!(NetnsSpec::parse("blue").unwrap(), NetnsSpec::Name("blue".into()));
        assert_eq!(NetnsSpec::parse("1234").unwrap(), NetnsSpec::Pid(1234));
        assert_eq!(
            NetnsSpec::parse("/proc/1/ns/net").unwrap(),
            NetnsSpec::Path("/proc/1/ns/net".into())
        );
        assert_eq!(NetnsSpec::Name("blue".into()).path(), PathBuf::from("/run/netns/blue"));
        assert_eq!(NetnsSpec::Pid(7).path(), PathBuf::from("/proc/7/ns/net"));
        assert!(NetnsSpec::parse("").is_err());
        assert!(NetnsSpec::parse("..").is_err());
        assert!(NetnsSpec::parse("99999999999999999999").is_err());
    }

    #[test]
    fn namespaces_are_named_host_only_when_they_are_the_init_one() {
        let me = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let dir = tempfile::tempdir().unwrap();
        // Our own namespace file stands in for PID 1's.
        assert_eq!(name_of(me, Path::new("/proc/thread-self/ns/net"), dir.path()), "host");
        // The init namespace's inode is fixed: the host even with /proc/1 closed.
        assert_eq!(
            name_of(crate::linux::INIT_NET_INODE, Path::new("/nonexistent"), dir.path()),
            "host"
        );
        if me == crate::linux::INIT_NET_INODE {
            return; // the rest needs a namespace that is not the host's
        }
        let not_init = Path::new("/nonexistent");
        assert_eq!(name_of(me, not_init, dir.path()), format!("netns inode {me}"));
        // A named entry with the same inode gives its name.
        std::os::unix::fs::symlink("/proc/thread-self/ns/net", dir.path().join("blue")).unwrap();
        assert_eq!(name_of(me, not_init, dir.path()), "blue");
    }

    #[test]
    fn a_missing_namespace_says_how_to_list_them() {
        let spec = NetnsSpec::parse("twscope-no-such-namespace").unwrap();
        let err = enter(&spec).unwrap_err();
        assert!(matches!(err, NetnsError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("ip netns list"));
    }

    fn refusal(path: &Path) -> String {
        let err = enter(&NetnsSpec::Path(path.to_path_buf())).unwrap_err();
        assert!(
            matches!(err, NetnsError::NotNetns { .. }),
            "{}: {err:?}",
            path.display()
        );
        err.to_string()
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        // Refused before setns, so with or without privileges.
        let err = refusal(Path::new("/proc/self/status"));
        assert_eq!(err, "/proc/self/status is a regular file, not a network namespace file");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO with no writer: File::open would wait forever.
        let err = refusal(&fifo);
        assert!(err.ends_with("fifo is a FIFO, not a network namespace file"), "{err}");
        assert!(refusal(Path::new("/dev/zero")).contains("is a character device, not"));
        assert!(refusal(dir.path()).contains("is a directory, not"));
        // A namespace file, but of another namespace type.
        assert!(refusal(Path::new("/proc/self/ns/mnt")).contains("is a mount namespace, not"));
    }
}
