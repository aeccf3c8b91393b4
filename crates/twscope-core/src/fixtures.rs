//! Hand-built statuses: a census described tuple by tuple, built into a
//! [`Status`] by the real model ([`Status::build`]), for unit tests here and
//! for the views' snapshot tests (`twscope-tui`), which enable the
//! `fixtures` feature.

use crate::census::{Census, TupleKey, TupleStats};
use crate::kernel::{Counters, PortRanges, Settings};
use crate::linux::TimeWaitLifetime;
use crate::netns::NetnsInfo;
use crate::sockdiag::TcpState;
use crate::status::{DumpInfo, Readings, Status, StatusOptions};

/// A Debian host's defaults: range 32768–60999, tw_reuse 2 (loopback), a
/// 1 s reuse delay, timestamps on.
pub fn settings() -> Settings {
    Settings {
        port_range_low: 32768,
        port_range_high: 60999,
        reserved_ports: PortRanges::default(),
        tcp_tw_reuse: 2,
        tcp_tw_reuse_delay_ms: Some(1000),
        tcp_timestamps: 1,
        tcp_max_tw_buckets: 262_144,
        tcp_fin_timeout: 60,
        tcp_tw_recycle: None,
    }
}

/// TIME_WAIT held exactly its nominal 60 s, so expected numbers are
/// round; [`Host::time_wait`] overrides it.
pub const NOMINAL: TimeWaitLifetime = TimeWaitLifetime {
    hz: 1000,
    granularity_s: 0.0,
};

/// A census builder: outbound tuples with TIME_WAIT spread evenly over
/// `seconds` of age, ESTABLISHED, listeners, inbound TIME_WAIT.
#[derive(Default)]
pub struct Host {
    /// The census so far.
    pub census: Census,
    /// The kernel's counters (`sockstat_tw` is set from the census).
    pub counters: Counters,
    /// The conntrack table, if any.
    pub conntrack: Option<crate::kernel::Conntrack>,
    /// The kernel's TIME_WAIT lifetime; [`NOMINAL`] when unset.
    pub time_wait: Option<TimeWaitLifetime>,
}

impl Host {
    /// Adds a tuple `src` → `dst`:`port` with `time_wait` TIME_WAIT sockets
    /// spread evenly over the last `seconds` and `established` ESTABLISHED.
    /// Panics on an unparsable address: fixtures are the test's own text.
    pub fn outbound(mut self, src: &str, dst: &str, port: u16, time_wait: u32, seconds: u32, established: u64) -> Host {
        let key = TupleKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: port,
        };
        let stats: &mut TupleStats = self.census.outbound.entry(key).or_default();
        for i in 0..time_wait {
            stats.time_wait_age[(i % seconds.max(1)) as usize] += 1;
        }
        stats.states.add(TcpState::TimeWait, u64::from(time_wait));
        stats.states.add(TcpState::Established, established);
        self.census.states.add(TcpState::TimeWait, u64::from(time_wait));
        self.census.states.add(TcpState::Established, established);
        self
    }

    /// Adds a listening socket.
    pub fn listener(mut self, addr: &str, port: u16) -> Host {
        self.census.listeners.insert(addr.parse().unwrap(), port);
        self.census.states.add(TcpState::Listen, 1);
        self
    }

    /// Adds `n` TIME_WAIT sockets of inbound connections to `port`.
    pub fn inbound_time_wait(mut self, port: u16, n: u64) -> Host {
        self.census.inbound.entry(port).or_default().add(TcpState::TimeWait, n);
        self.census.states.add(TcpState::TimeWait, n);
        self
    }

    /// The status the real model builds from this census, in a namespace
    /// `test` (inode 1) of host `test`.
    pub fn status(&self, settings: Settings) -> Status {
        self.status_in(settings, "test", 1)
    }

    /// The same, in the namespace `name` with `inode`.
    pub fn status_in(&self, settings: Settings, name: &str, inode: u64) -> Status {
        let mut counters = self.counters.clone();
        counters.sockstat_tw = self.census.states.get(TcpState::TimeWait);
        Status::build(
            Readings {
                census: self.census.clone(),
                settings,
                counters,
                conntrack: self.conntrack,
                host: "test".into(),
                kernel: "6.18.0".into(),
                netns: NetnsInfo {
                    name: name.into(),
                    inode,
                },
                dump: DumpInfo {
                    // A census built tuple by tuple counts no dumped socket.
                    sockets: self.census.sockets.max(self.census.states.total()),
                    duration_ms: 0.0,
                },
                time_wait: self.time_wait.unwrap_or(NOMINAL),
            },
            &StatusOptions::default(),
        )
    }
}
