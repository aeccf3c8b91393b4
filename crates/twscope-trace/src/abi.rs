//! The records the kernel half writes (`bpf/tcptrace.h`), byte for byte, and
//! their translation into the core's [`Flow`] and [`Failure`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use twscope_core::trace::{Failure, Flow, FAILURE_CLASSES, LIFETIME_BUCKETS};

const AF_INET: u16 = 2;
const TASK_COMM_LEN: usize = 16;

/// `struct flow_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowKey {
    /// Process id.
    pub tgid: u32,
    /// Network namespace inode.
    pub netns: u32,
    /// Destination address (IPv4 in the first 4 bytes).
    pub daddr: [u8; 16],
    /// Destination port.
    pub dport: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    _pad: u32,
}

/// `struct flow_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowStats {
    connects: u64,
    established: u64,
    time_wait_left: u64,
    resets: u64,
    closes: u64,
    concurrent: i64,
    max_concurrent: u64,
    failures: [u64; FAILURE_CLASSES.len()],
    lifetime_log2_us: [u64; LIFETIME_BUCKETS],
    cgroup_id: u64,
    comm: [u8; TASK_COMM_LEN],
}

/// `struct failure_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FailureEvent {
    timestamp_ns: u64,
    cgroup_id: u64,
    tgid: u32,
    tid: u32,
    netns: u32,
    error: i32,
    daddr: [u8; 16],
    dport: u16,
    family: u16,
    _pad: u32,
    comm: [u8; TASK_COMM_LEN],
}

// The C side's sizes; a change on either side fails the build.
const _: () = assert!(std::mem::size_of::<FlowKey>() == 32);
const _: () = assert!(std::mem::size_of::<FlowStats>() == 400);
const _: () = assert!(std::mem::size_of::<FailureEvent>() == 72);

// SAFETY: plain `repr(C)` data without padding holes the kernel leaves
// uninitialised (every gap is an explicit field), valid for any bit pattern.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowStats {}

fn address(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

fn comm(bytes: &[u8; TASK_COMM_LEN]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The core's flow of one map entry.
pub fn flow(key: &FlowKey, stats: &FlowStats) -> Flow {
    Flow {
        pid: key.tgid,
        netns: u64::from(key.netns),
        addr: address(key.family, &key.daddr),
        port: key.dport,
        comm: comm(&stats.comm),
        cgroup_id: stats.cgroup_id,
        connects: stats.connects,
        established: stats.established,
        time_wait_left: stats.time_wait_left,
        resets: stats.resets,
        closes: stats.closes,
        concurrent: stats.concurrent,
        max_concurrent: stats.max_concurrent,
        failures: stats.failures,
        lifetime_log2_us: stats.lifetime_log2_us,
    }
}

/// The core's failure of one ring-buffer record, if it is whole.
pub fn failure(bytes: &[u8]) -> Option<Failure> {
    if bytes.len() < std::mem::size_of::<FailureEvent>() {
        return None;
    }
    // SAFETY: the length is checked; FailureEvent is valid for any bits, and
    // read_unaligned does not need the ring's alignment.
    let e: FailureEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Some(Failure {
        timestamp_ns: e.timestamp_ns,
        pid: e.tgid,
        tid: e.tid,
        comm: comm(&e.comm),
        netns: u64::from(e.netns),
        addr: address(e.family, &e.daddr),
        port: e.dport,
        errno: e.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_record_is_refused_and_a_whole_one_read() {
        assert_eq!(failure(&[0; 71]), None);
        let mut bytes = [0u8; 72];
        bytes[16..20].copy_from_slice(&4242u32.to_ne_bytes());
        bytes[28..32].copy_from_slice(&99i32.to_ne_bytes());
        bytes[32..36].copy_from_slice(&[10, 0, 0, 1]);
        bytes[48..50].copy_from_slice(&5432u16.to_ne_bytes());
        bytes[50..52].copy_from_slice(&AF_INET.to_ne_bytes());
        bytes[56..60].copy_from_slice(b"app\0");
        let f = failure(&bytes).unwrap();
        assert_eq!((f.pid, f.errno, f.port, f.comm.as_str()), (4242, 99, 5432, "app"));
        assert_eq!(f.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
