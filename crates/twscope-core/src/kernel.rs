//! Kernel settings and counters of the network namespace being read.
//!
//! Everything here is per network namespace: `/proc/sys/net` resolves to the
//! namespace of the thread that opens the file, `/proc/net` (a link to
//! `/proc/self/net`) to the namespace of the main thread. Enter the namespace
//! on the main thread ([`crate::netns::enter`]) before reading.
//!
//! Reads take a `proc_root` (normally `/proc`) so tests can point them at a
//! hand-built tree.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::{self, KERNEL_FILE_CAP};

/// Error reading a kernel file: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {reason}")]
pub struct ReadError {
    /// The file that could not be read or parsed.
    pub path: PathBuf,
    /// What went wrong: the I/O error, or what was expected and found.
    pub reason: String,
}

impl ReadError {
    fn new(path: &Path, reason: impl fmt::Display) -> ReadError {
        ReadError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Reads a kernel file: a regular file (never a FIFO or device a test tree
/// or a broken mount put there), at most [`KERNEL_FILE_CAP`] bytes.
fn read_text(path: &Path) -> Result<String, ReadError> {
    files::read_regular(path, KERNEL_FILE_CAP).map_err(|e| ReadError::new(path, e))
}

/// Reads a file that may be absent on this kernel (e.g. `tcp_tw_reuse_delay`
/// before 6.14, `tcp_tw_recycle` after 4.12).
fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    match files::read_regular(path, KERNEL_FILE_CAP) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReadError::new(path, e)),
    }
}

fn parse_number<T: std::str::FromStr>(path: &Path, text: &str) -> Result<T, ReadError> {
    text.trim()
        .parse()
        .map_err(|_| ReadError::new(path, format!("expected a number, found {:?}", text.trim())))
}

/// `net.ipv4.ip_local_reserved_ports`: ports `connect()` and `bind(0)` skip.
///
/// Kept as sorted, merged inclusive ranges; the kernel's format is a comma
/// separated list of ports and `low-high` ranges, e.g. `8080,9000-9100`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRanges {
    ranges: Vec<(u16, u16)>,
}

impl PortRanges {
    /// Parses `8080,9000-9100` (spaces and an empty list allowed).
    pub fn parse(text: &str) -> Result<PortRanges, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (low, high) = match item.split_once('-') {
                Some((low, high)) => (parse_port(low)?, parse_port(high)?),
                None => {
                    let port = parse_port(item)?;
                    (port, port)
                }
            };
            if low > high {
                return Err(format!("range {item:?} runs backwards"));
            }
            ranges.push((low, high));
        }
        Ok(PortRanges::merged(ranges))
    }

    /// Sorts and merges overlapping or adjacent ranges.
    fn merged(mut ranges: Vec<(u16, u16)>) -> PortRanges {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(low) <= u32::from(last.1) + 1 => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        PortRanges { ranges: merged }
    }

    /// Adds one port.
    pub fn insert(&mut self, port: u16) {
        let mut ranges = std::mem::take(&mut self.ranges);
        ranges.push((port, port));
        *self = PortRanges::merged(ranges);
    }

    /// The merged ranges, sorted.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    /// Whether `port` is one of these ports (a binary search of the ranges).
    pub fn contains(&self, port: u16) -> bool {
        self.ranges
            .binary_search_by(|&(low, high)| {
                if high < port {
                    std::cmp::Ordering::Less
                } else if low > port {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    /// How many of these ports lie within `low..=high`.
    pub fn count_within(&self, low: u16, high: u16) -> u32 {
        self.ranges
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (a.max(low), b.min(high));
                if a <= b {
                    u32::from(b - a) + 1
                } else {
                    0
                }
            })
            .sum()
    }

    /// Whether no port is listed (the kernel's default: nothing reserved).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

impl fmt::Display for PortRanges {
    /// The kernel's own format, so it can be written back to the sysctl.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(low, high)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if low == high {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{:?} is not a port number (0-65535)", text.trim()))
}

/// The sysctls that decide how many ports a destination has and how long they
/// stay taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// First port of `net.ipv4.ip_local_port_range`, inclusive (the range is
    /// also used for IPv6). 32768 by default.
    pub port_range_low: u16,
    /// Last port of `net.ipv4.ip_local_port_range`, inclusive. 60999 by
    /// default.
    pub port_range_high: u16,
    /// `net.ipv4.ip_local_reserved_ports`.
    #[serde(serialize_with = "serialize_display")]
    pub reserved_ports: PortRanges,
    /// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (the default).
    pub tcp_tw_reuse: u8,
    /// `net.ipv4.tcp_tw_reuse_delay` in ms (Linux 6.14+); before it, 1 s.
    pub tcp_tw_reuse_delay_ms: Option<u32>,
    /// `net.ipv4.tcp_timestamps`: 0 off, 1 on (random offsets), 2 on.
    pub tcp_timestamps: u8,
    /// `net.ipv4.tcp_max_tw_buckets`: the TIME_WAIT cap of the namespace.
    pub tcp_max_tw_buckets: u64,
    /// `net.ipv4.tcp_fin_timeout` in s: FIN_WAIT2 only, never TIME_WAIT.
    pub tcp_fin_timeout: u32,
    /// `net.ipv4.tcp_tw_recycle`, present only before Linux 4.12.
    pub tcp_tw_recycle: Option<u8>,
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub use crate::linux::DEFAULT_TW_REUSE_DELAY_MS;

impl Settings {
    /// Reads the settings from `<proc_root>/sys/net/ipv4/`.
    pub fn read(proc_root: &Path) -> Result<Settings, ReadError> {
        let dir = proc_root.join("sys/net/ipv4");
        let path = |name: &str| dir.join(name);
        let number = |name: &str| -> Result<u64, ReadError> {
            let p = path(name);
            parse_number(&p, &read_text(&p)?)
        };
        let optional = |name: &str| -> Result<Option<u64>, ReadError> {
            let p = path(name);
            read_optional(&p)?.map(|t| parse_number(&p, &t)).transpose()
        };

        let range_path = path("ip_local_port_range");
        let range_text = read_text(&range_path)?;
        let mut bounds = range_text
            .split_whitespace()
            .map(|t| parse_number::<u16>(&range_path, t));
        let (low, high) = match (bounds.next(), bounds.next()) {
            (Some(low), Some(high)) => (low?, high?),
            _ => return Err(ReadError::new(&range_path, "expected two numbers")),
        };

        let reserved_path = path("ip_local_reserved_ports");
        let reserved = match read_optional(&reserved_path)? {
            Some(text) => PortRanges::parse(&text).map_err(|e| ReadError::new(&reserved_path, e))?,
            None => PortRanges::default(),
        };

        Ok(Settings {
            port_range_low: low,
            port_range_high: high,
            reserved_ports: reserved,
            tcp_tw_reuse: number("tcp_tw_reuse")? as u8,
            tcp_tw_reuse_delay_ms: optional("tcp_tw_reuse_delay")?.map(|v| v as u32),
            tcp_timestamps: number("tcp_timestamps")? as u8,
            tcp_max_tw_buckets: number("tcp_max_tw_buckets")?,
            tcp_fin_timeout: number("tcp_fin_timeout")? as u32,
            tcp_tw_recycle: optional("tcp_tw_recycle")?.map(|v| v as u8),
        })
    }

    /// Ports in the ephemeral range (inclusive: 32768–60999 is 28,232).
    pub fn range_size(&self) -> u32 {
        if self.port_range_high < self.port_range_low {
            return 0;
        }
        u32::from(self.port_range_high - self.port_range_low) + 1
    }

    /// Reserved ports that fall inside the ephemeral range.
    pub fn reserved_in_range(&self) -> u32 {
        self.reserved_ports
            .count_within(self.port_range_low, self.port_range_high)
    }

    /// Whether `port` lies in the ephemeral range (`low..=high`), i.e. whether
    /// a listener on it takes a port from every destination's budget.
    pub fn in_range(&self, port: u16) -> bool {
        (self.port_range_low..=self.port_range_high).contains(&port)
    }

    /// The TIME_WAIT reuse delay in force, in ms.
    pub fn reuse_delay_ms(&self) -> u32 {
        self.tcp_tw_reuse_delay_ms.unwrap_or(DEFAULT_TW_REUSE_DELAY_MS)
    }

    /// Whether `connect()` from `src` to `dst` may take over a TIME_WAIT
    /// 4-tuple: `tcp_tw_reuse` 1, or 2 with a loopback source or destination
    /// (the kernel's own test in `tcp_twsk_unique`), and timestamps on.
    pub fn tw_reuse_applies(&self, src: std::net::IpAddr, dst: std::net::IpAddr) -> bool {
        crate::linux::tw_reuse_applies(self.tcp_tw_reuse, self.tcp_timestamps, src, dst)
    }
}

/// Kernel counters that tell TIME_WAIT's story over time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Tcp `ActiveOpens` (/proc/net/snmp): outbound connects since boot.
    pub active_opens: u64,
    /// TcpExt `TW`: sockets that entered TIME_WAIT with the full 60 s timer
    /// (counted when the timer is armed, so `rate()` of it is the close rate).
    pub tw: u64,
    /// TcpExt `TWRecycled`: TIME_WAIT 4-tuples taken over by tw_reuse.
    pub tw_recycled: u64,
    /// TcpExt `TWKilled`: sockets given a short TIME_WAIT (≤ 4 s) instead.
    pub tw_killed: u64,
    /// TcpExt `TCPTimeWaitOverflow`: TIME_WAIT skipped at tcp_max_tw_buckets.
    pub tcp_time_wait_overflow: u64,
    /// `/proc/net/sockstat` TCP `tw`: TIME_WAIT sockets now.
    pub sockstat_tw: u64,
}

impl Counters {
    /// Reads `<proc_root>/net/{snmp,netstat,sockstat}`.
    pub fn read(proc_root: &Path) -> Result<Counters, ReadError> {
        let snmp_path = proc_root.join("net/snmp");
        let snmp_text = read_text(&snmp_path)?;
        let snmp: procfs::net::Snmp =
            procfs::FromRead::from_read(snmp_text.as_bytes()).map_err(|e| ReadError::new(&snmp_path, e))?;

        let netstat_path = proc_root.join("net/netstat");
        let netstat = read_text(&netstat_path)?;
        let tcp_ext = |field: &str| -> Result<u64, ReadError> {
            paired_line_value(&netstat, "TcpExt", field)
                .ok_or_else(|| ReadError::new(&netstat_path, format!("no TcpExt field {field}")))
        };

        let sockstat_path = proc_root.join("net/sockstat");
        let sockstat = read_text(&sockstat_path)?;
        let sockstat_tw =
            sockstat_value(&sockstat, "TCP:", "tw").ok_or_else(|| ReadError::new(&sockstat_path, "no TCP tw field"))?;

        Ok(Counters {
            active_opens: snmp.tcp_active_opens,
            tw: tcp_ext("TW")?,
            tw_recycled: tcp_ext("TWRecycled")?,
            tw_killed: tcp_ext("TWKilled")?,
            tcp_time_wait_overflow: tcp_ext("TCPTimeWaitOverflow")?,
            sockstat_tw,
        })
    }
}

/// A field of the `Prefix: names…` / `Prefix: values…` line pairs of
/// `/proc/net/netstat` (procfs parses only `/proc/net/snmp`).
fn paired_line_value(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let tag = format!("{prefix}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let position = names.split_whitespace().skip(1).position(|n| n == field);
        if let Some(i) = position {
            return values.split_whitespace().nth(i + 1)?.parse().ok();
        }
    }
    None
}

/// A `key value` pair on the `prefix` line of `/proc/net/sockstat`.
fn sockstat_value(text: &str, prefix: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let mut words = line.split_whitespace().skip(1);
    while let (Some(k), Some(v)) = (words.next(), words.next()) {
        if k == key {
            return v.parse().ok();
        }
    }
    None
}

/// Conntrack fill where netfilter conntrack is loaded in this namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Conntrack {
    /// `net.netfilter.nf_conntrack_count`: connections tracked now, TIME_WAIT
    /// ones included.
    pub count: u64,
    /// `net.netfilter.nf_conntrack_max`: the table's limit; new connections
    /// are dropped once `count` reaches it.
    pub max: u64,
}

impl Conntrack {
    /// `None` when conntrack is not loaded.
    pub fn read(proc_root: &Path) -> Result<Option<Conntrack>, ReadError> {
        let dir = proc_root.join("sys/net/netfilter");
        let count_path = dir.join("nf_conntrack_count");
        let max_path = dir.join("nf_conntrack_max");
        match (read_optional(&count_path)?, read_optional(&max_path)?) {
            (Some(count), Some(max)) => Ok(Some(Conntrack {
                count: parse_number(&count_path, &count)?,
                max: parse_number(&max_path, &max)?,
            })),
            _ => Ok(None),
        }
    }
}

/// The kernel release (`uname -r`).
pub fn kernel_release(proc_root: &Path) -> Result<String, ReadError> {
    Ok(read_text(&proc_root.join("sys/kernel/osrelease"))?.trim().to_string())
}

/// The host name of the current UTS namespace.
pub fn hostname(proc_root: &Path) -> Result<String, ReadError> {
    Ok(read_text(&proc_root.join("sys/kernel/hostname"))?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reserved_ports_parse_merge_and_count() {
        let r = PortRanges::parse("9000-9100, 8080,9050-9200,9201").unwrap();
        assert_eq!(r.ranges(), &[(8080, 8080), (9000, 9201)]);
        assert_eq!(r.to_string(), "8080,9000-9201");
        assert!(r.contains(8080) && r.contains(9000) && r.contains(9201));
        assert!(!r.contains(8081) && !r.contains(8999) && !r.contains(9202));
        // Only the part inside the range counts.
        assert_eq!(r.count_within(9100, 65535), 102);
        assert_eq!(r.count_within(1, 8080), 1);
        assert_eq!(r.count_within(10000, 20000), 0);
        assert!(PortRanges::parse("").unwrap().is_empty());
        assert!(PortRanges::parse("\n").unwrap().is_empty());
        assert_eq!(PortRanges::parse("0-65535").unwrap().count_within(32768, 60999), 28_232);
        let mut r = PortRanges::parse("40000,40002").unwrap();
        r.insert(40001);
        r.insert(7000);
        assert_eq!(r.to_string(), "7000,40000-40002");
    }

    #[test]
    fn reserved_ports_reject_nonsense() {
        assert!(PortRanges::parse("9100-9000").unwrap_err().contains("backwards"));
        assert!(PortRanges::parse("70000").unwrap_err().contains("not a port"));
        assert!(PortRanges::parse("80-x").unwrap_err().contains("not a port"));
    }

    fn fake_proc(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, text).unwrap();
        }
        dir
    }

    const BASE: &[(&str, &str)] = &[
        ("sys/net/ipv4/ip_local_port_range", "32768\t60999\n"),
        ("sys/net/ipv4/ip_local_reserved_ports", "40000-40009\n"),
        ("sys/net/ipv4/tcp_tw_reuse", "2\n"),
        ("sys/net/ipv4/tcp_timestamps", "1\n"),
        ("sys/net/ipv4/tcp_max_tw_buckets", "262144\n"),
        ("sys/net/ipv4/tcp_fin_timeout", "60\n"),
    ];

    #[test]
    fn settings_of_an_old_kernel_with_recycle_and_no_reuse_delay() {
        let mut files = BASE.to_vec();
        files.push(("sys/net/ipv4/tcp_tw_recycle", "1\n"));
        let proc = fake_proc(&files);
        let s = Settings::read(proc.path()).unwrap();
        assert_eq!((s.port_range_low, s.port_range_high), (32768, 60999));
        assert_eq!(s.range_size(), 28_232);
        assert_eq!(s.reserved_in_range(), 10);
        assert_eq!(s.tcp_tw_reuse_delay_ms, None);
        assert_eq!(s.reuse_delay_ms(), 1000);
        assert_eq!(s.tcp_tw_recycle, Some(1));
        let lo = "127.0.0.1".parse().unwrap();
        let remote = "198.18.0.2".parse().unwrap();
        assert!(s.tw_reuse_applies(lo, lo));
        assert!(!s.tw_reuse_applies(remote, remote));
    }

    #[test]
    fn settings_of_a_new_kernel() {
        let mut files = BASE.to_vec();
        files.push(("sys/net/ipv4/tcp_tw_reuse_delay", "250\n"));
        let proc = fake_proc(&files);
        let s = Settings::read(proc.path()).unwrap();
        assert_eq!(s.tcp_tw_reuse_delay_ms, Some(250));
        assert_eq!(s.tcp_tw_recycle, None);
    }

    #[test]
    fn a_broken_settings_file_names_the_file() {
        let mut files = BASE.to_vec();
        files[0] = ("sys/net/ipv4/ip_local_port_range", "32768\n");
        let proc = fake_proc(&files);
        let err = Settings::read(proc.path()).unwrap_err();
        assert!(err.to_string().contains("ip_local_port_range"), "{err}");
        let err = Settings::read(Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sys/net/ipv4"), "{err}");
    }

    #[test]
    fn kernel_files_must_be_regular_and_small() {
        // A FIFO where a sysctl should be: refused at once, never a hang.
        let proc = fake_proc(BASE);
        let reuse = proc.path().join("sys/net/ipv4/tcp_tw_reuse");
        fs::remove_file(&reuse).unwrap();
        let c = std::ffi::CString::new(reuse.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = Settings::read(proc.path()).unwrap_err();
        assert!(
            err.to_string().contains("tcp_tw_reuse") && err.to_string().contains("FIFO"),
            "{err}"
        );

        // An optional file that is there but is not a file is an error, not "absent".
        let mut files = BASE.to_vec();
        files.push(("sys/net/ipv4/tcp_tw_reuse_delay/x", "1\n"));
        let proc = fake_proc(&files);
        let err = Settings::read(proc.path()).unwrap_err();
        assert!(err.to_string().contains("tcp_tw_reuse_delay"), "{err}");

        // Past the cap: refused, not read into memory.
        let big = "1".repeat(KERNEL_FILE_CAP as usize + 1);
        let mut files = BASE.to_vec();
        files[3] = ("sys/net/ipv4/tcp_timestamps", big.as_str());
        let proc = fake_proc(&files);
        let err = Settings::read(proc.path()).unwrap_err();
        assert!(
            err.to_string().contains("tcp_timestamps") && err.to_string().contains("larger than"),
            "{err}"
        );

        // Absent optional files are still just absent (conntrack not loaded).
        assert_eq!(Conntrack::read(proc.path()).unwrap(), None);
    }

    #[test]
    fn netstat_and_sockstat_fields() {
        let netstat = "TcpExt: SyncookiesSent TW TWRecycled TWKilled TCPTimeWaitOverflow\n\
                       TcpExt: 0 1234 56 7 8\n\
                       IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(paired_line_value(netstat, "TcpExt", "TW"), Some(1234));
        assert_eq!(paired_line_value(netstat, "TcpExt", "TCPTimeWaitOverflow"), Some(8));
        assert_eq!(paired_line_value(netstat, "TcpExt", "Missing"), None);
        let sockstat = "sockets: used 5\nTCP: inuse 3 orphan 0 tw 27000 alloc 4 mem 1\n";
        assert_eq!(sockstat_value(sockstat, "TCP:", "tw"), Some(27000));
        assert_eq!(sockstat_value(sockstat, "TCP:", "nope"), None);
    }

    #[test]
    fn live_settings_equal_proc_sys() {
        let s = Settings::read(Path::new("/proc")).unwrap();
        let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let expected: Vec<u16> = text.split_whitespace().map(|t| t.parse().unwrap()).collect();
        assert_eq!(vec![s.port_range_low, s.port_range_high], expected);
        let reuse: u8 = fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(s.tcp_tw_reuse, reuse);
        Counters::read(Path::new("/proc")).unwrap();
    }
}
