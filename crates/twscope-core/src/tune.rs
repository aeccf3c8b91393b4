//! `twscope tune`: the system part of the checklist, computed from a namespace's
//! findings and applied safely.
//!
//! [`recommend`] is pure: it proposes only what the typed findings of a
//! [`Report`] call for ([`FindingId`]), so once applied a second run proposes
//! nothing. [`apply`] writes `/proc/sys` of the
//! calling thread's namespace; [`persist`] writes a sysctl.d file atomically.
//!
//! - a wider range (1024–65535) when the range is narrow or a destination is
//!   under pressure;
//! - every listening port inside the (new) range added to
//!   `ip_local_reserved_ports`, existing reservations kept;
//! - `tcp_tw_reuse=1` when reuse is off or loopback-only under pressure — only
//!   with timestamps on, which it needs;
//! - `tcp_tw_recycle=0` where it exists and is on; never anything else for it;
//! - `tcp_max_tw_buckets` raised when TIME_WAIT nears it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::doctor::{remedies, reuse_would_apply, seconds, tables, FindingId, Report};
use crate::linux::{range_size, WIDEST_PORT_RANGE};
use crate::status::Status;

/// One sysctl to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The sysctl, dotted (`net.ipv4.tcp_tw_reuse`).
    pub key: &'static str,
    /// Its value now, as `/proc/sys` shows it.
    pub current: String,
    /// The value to write.
    pub proposed: String,
    /// One line: what the change buys, with the model's numbers.
    pub why: String,
}

/// The changes `report`'s findings on `status` call for; empty when there is
/// nothing to do.
///
/// - `port-range-narrow` or `destination-pressure`: widen the range;
/// - listeners inside the range in force after that: reserve them;
/// - `tw-reuse-off` or `tw-reuse-loopback-only`: `tcp_tw_reuse=1`, only with
///   timestamps on;
/// - `tw-recycle-present` at critical (it is 1): `tcp_tw_recycle=0`;
/// - TIME_WAIT near `tcp_max_tw_buckets`: a bigger table.
pub fn recommend(status: &Status, report: &Report) -> Vec<Change> {
    let s = &status.settings;
    let mut changes = Vec::new();

    // The range: wider when narrow or under pressure, never narrower.
    let current_range = (s.port_range_low, s.port_range_high);
    let range = if report.has(FindingId::PortRangeNarrow) || report.has(FindingId::DestinationPressure) {
        (
            current_range.0.min(WIDEST_PORT_RANGE.0),
            current_range.1.max(WIDEST_PORT_RANGE.1),
        )
    } else {
        current_range
    };

    // Listeners inside the range that will be in force, reserved; the
    // reservation goes first so no port is ever unprotected.
    let mut reserved = s.reserved_ports.clone();
    let mut newly: Vec<u16> = status
        .listeners
        .iter()
        .map(|l| l.port)
        .filter(|&p| (range.0..=range.1).contains(&p) && !s.reserved_ports.contains(p))
        .collect();
    newly.sort_unstable();
    newly.dedup();
    if !newly.is_empty() {
        for &port in &newly {
            reserved.insert(port);
        }
        changes.push(Change {
            key: "net.ipv4.ip_local_reserved_ports",
            current: s.reserved_ports.to_string(),
            proposed: reserved.to_string(),
            why: format!(
                "listening port{} {} inside the ephemeral range: reserve so connect() never takes {}",
                if newly.len() == 1 { "" } else { "s" },
                newly.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
                if newly.len() == 1 { "it" } else { "them" }
            ),
        });
    }
    if range != current_range {
        changes.push(Change {
            key: "net.ipv4.ip_local_port_range",
            current: format!("{} {}", current_range.0, current_range.1),
            proposed: format!("{} {}", range.0, range.1),
            why: format!(
                "{} → {} source ports per destination",
                crate::text::thousands(u64::from(s.range_size())),
                crate::text::thousands(
                    u64::from(range_size(range)) - u64::from(reserved.count_within(range.0, range.1))
                )
            ),
        });
    }

    if (report.has(FindingId::TwReuseOff) || report.has(FindingId::TwReuseLoopbackOnly)) && reuse_would_apply(s) {
        let hold = |reuse| crate::capacity::hold_seconds(reuse, s.reuse_delay_ms(), status.time_wait_lifetime.mean_s);
        changes.push(Change {
            key: "net.ipv4.tcp_tw_reuse",
            current: s.tcp_tw_reuse.to_string(),
            proposed: "1".to_string(),
            why: format!(
                "outbound connects may take over TIME_WAIT ports after the {} reuse delay instead of {}",
                seconds(hold(true)),
                seconds(hold(false))
            ),
        });
    }
    if report
        .of(FindingId::TwRecyclePresent)
        .any(|f| f.severity == crate::doctor::Level::Critical)
    {
        changes.push(Change {
            key: "net.ipv4.tcp_tw_recycle",
            current: "1".to_string(),
            proposed: "0".to_string(),
            why: "tw_recycle drops connections from clients behind NAT".to_string(),
        });
    }
    let tw = status.counters.sockstat_tw;
    let max = s.tcp_max_tw_buckets;
    if tables::fill_level(tw as f64 / max.max(1) as f64).is_some() {
        changes.push(Change {
            key: "net.ipv4.tcp_max_tw_buckets",
            current: max.to_string(),
            proposed: tables::raised(tw, max).to_string(),
            why: format!("{tw} TIME_WAIT sockets against a cap of {max}: past it the kernel skips TIME_WAIT"),
        });
    }
    changes
}

/// `(key, proposed)` pairs, for the remedy renderers.
pub fn proposed(changes: &[Change]) -> Vec<(&'static str, String)> {
    changes.iter().map(|c| (c.key, c.proposed.clone())).collect()
}

/// The file under `/proc/sys` for a dotted sysctl name.
pub fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Why a change could not be applied or persisted.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// Writing a sysctl was refused: not root, or no `CAP_NET_ADMIN` over the namespace.
    #[error("writing {path} needs root (CAP_NET_ADMIN over the namespace): run as root or with sudo; nothing after it was changed")]
    Permission {
        /// The `/proc/sys` file.
        path: PathBuf,
    },
    /// Writing a sysctl failed for another reason (the kernel rejected the value).
    #[error("writing {value:?} to {path} failed: {source}; nothing after it was changed")]
    Write {
        /// The `/proc/sys` file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The sysctl.d file could not be written.
    #[error("cannot write {path}: {source} (nothing was written)")]
    Persist {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The sysctl.d path is not a regular file (nor a link to one).
    #[error("{path} is {what}, not a regular file: give a path under /etc/sysctl.d/, e.g. /etc/sysctl.d/90-twscope.conf (nothing was written)")]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What is there: "a character device", "a symbolic link to /dev/null, a character device".
        what: String,
    },
}

/// Writes each change to `/proc/sys` of the calling thread's namespace, in
/// order, stopping at the first failure.
pub fn apply(changes: &[Change]) -> Result<(), TuneError> {
    for change in changes {
        let path = proc_path(change.key);
        std::fs::write(&path, &change.proposed).map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => TuneError::Permission { path: path.clone() },
            _ => TuneError::Write {
                path: path.clone(),
                value: change.proposed.clone(),
                source,
            },
        })?;
    }
    Ok(())
}

/// The file [`persist`] would write for `path`, or why it will not: `path`
/// itself when it is a regular file or does not exist yet, the file it leads
/// to when it is a symbolic link to a regular file (the link is kept). A
/// device node, FIFO, socket, directory, dangling link or a link to any of
/// those is refused — as root, replacing `/dev/null` with a file would break
/// the system. Call it before changing anything else.
pub fn persist_target(path: &Path) -> Result<PathBuf, TuneError> {
    let io_error = |source| TuneError::Persist {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(io_error(e)),
    };
    if meta.file_type().is_file() {
        return Ok(path.to_path_buf());
    }
    if !meta.file_type().is_symlink() {
        return Err(TuneError::NotRegular {
            path: path.to_path_buf(),
            what: crate::files::kind_of(&meta).to_string(),
        });
    }
    let link = std::fs::read_link(path).map_err(io_error)?;
    let target = match std::fs::canonicalize(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TuneError::NotRegular {
                path: path.to_path_buf(),
                what: format!("a symbolic link to {}, which does not exist", link.display()),
            })
        }
        Err(e) => return Err(io_error(e)),
    };
    let target_meta = std::fs::metadata(&target).map_err(io_error)?;
    if target_meta.file_type().is_file() {
        Ok(target)
    } else {
        Err(TuneError::NotRegular {
            path: path.to_path_buf(),
            what: format!(
                "a symbolic link to {}, {}",
                target.display(),
                crate::files::kind_of(&target_meta)
            ),
        })
    }
}

/// Writes a sysctl.d file with the changes atomically: a temporary file in the
/// same directory, synced, then renamed over `path` — never a half-written file.
/// When `path` is a symbolic link to a regular file, the file it leads to is
/// replaced that way and the link stays; anything else that is not a regular
/// file is refused ([`persist_target`]).
pub fn persist(changes: &[Change], path: &Path) -> Result<(), TuneError> {
    let target = persist_target(path)?;
    let error = |source| TuneError::Persist {
        path: target.clone(),
        source,
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // sysctl.d files are world-readable configuration; a file already there
    // keeps its own permissions.
    let mode = std::fs::metadata(&target).map_or(0o644, |m| {
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
    });
    let mut file = tempfile::Builder::new()
        .prefix(".twscope-")
        .tempfile_in(dir)
        .map_err(error)?;
    file.write_all(remedies::sysctl_d(&proposed(changes)).as_bytes())
        .map_err(error)?;
    file.as_file().sync_all().map_err(error)?;
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(error)?;
    // What we checked may have been swapped meanwhile: look again just before
    // the rename (the temporary file is removed on the way out).
    match std::fs::symlink_metadata(&target) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(TuneError::NotRegular {
                path: target.clone(),
                what: crate::files::kind_of(&meta).to_string(),
            })
        }
        _ => {}
    }
    file.persist(&target).map_err(|e| error(e.error))?;
    // The rename itself is durable once the directory is synced.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::diagnose;
    use crate::doctor::test_support::*;
    use crate::kernel::PortRanges;

    fn changes(host: &Host, settings: crate::kernel::Settings) -> Vec<Change> {
        let status = host.status(settings);
        recommend(&status, &diagnose(&status))
    }

    #[test]
    fn a_narrow_busy_host_gets_range_reservations_and_reuse() {
        let mut s = settings();
        s.port_range_low = 40000;
        s.port_range_high = 40999;
        s.reserved_ports = PortRanges::parse("40000-40199").unwrap();
        s.tcp_tw_reuse = 0;
        let host = Host::default()
            .listener("0.0.0.0", 40500)
            .listener("0.0.0.0", 7000)
            .listener("0.0.0.0", 22)
            .outbound("198.18.0.1", "198.18.0.9", 5432, 700, 10, 0);
        let c = changes(&host, s.clone());
        let keys: Vec<&str> = c.iter().map(|c| c.key).collect();
        assert_eq!(
            keys,
            [
                "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.tcp_tw_reuse"
            ]
        );
        // Existing reservations kept; 7000 joins because the new range holds it; 22 stays outside.
        assert_eq!(c[0].proposed, "7000,40000-40199,40500");
        assert_eq!(
            (c[1].current.as_str(), c[1].proposed.as_str()),
            ("40000 40999", "1024 65535")
        );
        assert_eq!(c[2].proposed, "1");
        assert_eq!(
            c[2].why,
            "outbound connects may take over TIME_WAIT ports after the 1 s reuse delay instead of 60 s"
        );

        // Applied, the same host asks for nothing more: idempotent.
        s.port_range_low = 1024;
        s.port_range_high = 65535;
        s.reserved_ports = PortRanges::parse(&c[0].proposed).unwrap();
        s.tcp_tw_reuse = 1;
        assert_eq!(changes(&host, s), vec![]);
    }

    #[test]
    fn never_reuse_without_timestamps_and_recycle_only_off() {
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        s.tcp_timestamps = 0;
        s.tcp_tw_recycle = Some(1);
        let host = Host::default().outbound("198.18.0.1", "198.18.0.9", 5432, 24_000, 60, 0);
        let c = changes(&host, s);
        assert!(!c.iter().any(|c| c.key == "net.ipv4.tcp_tw_reuse"), "{c:?}");
        let recycle = c.iter().find(|c| c.key == "net.ipv4.tcp_tw_recycle").unwrap();
        assert_eq!(recycle.proposed, "0");
    }

    #[test]
    fn a_healthy_host_needs_nothing() {
        let host = Host::default()
            .listener("0.0.0.0", 8080)
            .outbound("198.18.0.1", "198.18.0.9", 5432, 50, 60, 10);
        assert_eq!(changes(&host, settings()), vec![]);
    }

    #[test]
    fn buckets_get_headroom() {
        let mut s = settings();
        s.tcp_max_tw_buckets = 1000;
        let host = Host::default().outbound("198.18.0.1", "198.18.0.9", 80, 900, 60, 0);
        let c = changes(&host, s);
        let buckets = c.iter().find(|c| c.key == "net.ipv4.tcp_max_tw_buckets").unwrap();
        assert_eq!((buckets.current.as_str(), buckets.proposed.as_str()), ("1000", "2048"));
    }

    #[test]
    fn persist_is_atomic_and_leaves_nothing_behind_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("90-twscope.conf");
        std::fs::write(&path, "old\n").unwrap();
        let change = Change {
            key: "net.ipv4.tcp_tw_reuse",
            current: "0".into(),
            proposed: "1".into(),
            why: String::new(),
        };
        persist(std::slice::from_ref(&change), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("net.ipv4.tcp_tw_reuse = 1\n"), "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        // A directory that does not exist: an error naming the file, nothing written.
        let missing = dir.path().join("no/such/dir/x.conf");
        let err = persist(std::slice::from_ref(&change), &missing).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/x.conf"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A new file is created, world-readable; an existing one keeps its mode.
        let new = dir.path().join("91-new.conf");
        persist(std::slice::from_ref(&change), &new).unwrap();
        let mode =
            |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
        assert_eq!(mode(&new), 0o644);
        std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        persist(&[change], &new).unwrap();
        assert_eq!(mode(&new), 0o640);
    }

    fn tw_reuse() -> Vec<Change> {
        vec![Change {
            key: "net.ipv4.tcp_tw_reuse",
            current: "0".into(),
            proposed: "1".into(),
            why: String::new(),
        }]
    }

    #[test]
    fn persist_refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.conf");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = persist(&tw_reuse(), &fifo).unwrap_err().to_string();
        assert!(
            err.contains("fifo.conf is a FIFO, not a regular file: give a path under /etc/sysctl.d/"),
            "{err}"
        );
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &std::fs::symlink_metadata(&fifo).unwrap().file_type()
        ));

        let err = persist(&tw_reuse(), dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory, not a regular file"), "{err}");

        // Links: to a device, and to nothing.
        let to_null = dir.path().join("null.conf");
        std::os::unix::fs::symlink("/dev/null", &to_null).unwrap();
        let err = persist(&tw_reuse(), &to_null).unwrap_err().to_string();
        assert!(
            err.contains("is a symbolic link to /dev/null, a character device, not a regular file"),
            "{err}"
        );
        let dangling = dir.path().join("dangling.conf");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let err = persist(&tw_reuse(), &dangling).unwrap_err().to_string();
        assert!(err.contains("which does not exist"), "{err}");
        assert!(!dir.path().join("nowhere").exists());
        // Nothing else was left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn persist_writes_through_a_link_to_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/90-twscope.conf");
        std::fs::write(&target, "old\n").unwrap();
        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink("real/90-twscope.conf", &link).unwrap();
        persist(&tw_reuse(), &link).unwrap();
        assert!(
            std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "the link was replaced"
        );
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real/90-twscope.conf"));
        assert!(std::fs::read_to_string(&target)
            .unwrap()
            .ends_with("net.ipv4.tcp_tw_reuse = 1\n"));
        // The temporary file went to the target's directory, and is gone.
        assert_eq!(std::fs::read_dir(dir.path().join("real")).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
