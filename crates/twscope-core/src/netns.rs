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

/// Where `ip netns add` puts named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

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

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{0:?} is not a network namespace: give a name from `ip netns list`, a path such as /proc/PID/ns/net, or a PID")]
    BadSpec(String),
    #[error("network namespace {label} not found: no {path} (list named ones with `ip netns list`)")]
    NotFound { label: String, path: PathBuf },
    #[error("cannot open network namespace {label} at {path}: {source}")]
    Open { label: String, path: PathBuf, source: io::Error },
    #[error("{path} is not a network namespace file")]
    NotNetns { path: PathBuf },
    #[error("entering network namespace {label} needs CAP_SYS_ADMIN: run as root (sudo) or grant the capability")]
    Permission { label: String },
    #[error("entering network namespace {label} failed: {source}")]
    Setns { label: String, source: io::Error },
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

/// Moves the calling thread into the namespace `spec` names.
///
/// Call this on the main thread before opening any socket or reading `/proc`:
/// sockets stay in the namespace they were created in, and `/proc/net` follows
/// the main thread. Needs `CAP_SYS_ADMIN`.
pub fn enter(spec: &NetnsSpec) -> Result<NetnsInfo, NetnsError> {
    let path = spec.path();
    let label = spec.label();
    let file = File::open(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            NetnsError::NotFound {
                label: label.clone(),
                path: path.clone(),
            }
        } else if source.kind() == io::ErrorKind::PermissionDenied {
            // Another user's /proc/PID/ns/net: the same privilege fixes it.
            NetnsError::Permission { label: label.clone() }
        } else {
            NetnsError::Open {
                label: label.clone(),
                path: path.clone(),
                source,
            }
        }
    })?;
    // SAFETY: setns on a descriptor we own for the duration of the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => NetnsError::Permission { label },
            // EINVAL: the file is not a network namespace (e.g. a regular file,
            // or /run/netns/NAME left behind without its bind mount).
            Some(libc::EINVAL) => NetnsError::NotNetns { path },
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
    fn a_missing_namespace_says_how_to_list_them() {
        let spec = NetnsSpec::parse("twscope-no-such-namespace").unwrap();
        let err = enter(&spec).unwrap_err();
        assert!(matches!(err, NetnsError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("ip netns list"));
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        let spec = NetnsSpec::parse("/proc/self/status").unwrap();
        // As root this is EINVAL (not a namespace); unprivileged it is EPERM.
        let err = enter(&spec).unwrap_err();
        assert!(
            matches!(err, NetnsError::NotNetns { .. } | NetnsError::Permission { .. }),
            "{err:?}"
        );
    }
}
