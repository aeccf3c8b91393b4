//! The census: one pass over a socket dump, aggregated into what the capacity
//! model needs, in memory that grows with the number of destinations, never
//! with the number of sockets.
//!
//! Each non-listening socket is either
//! - **inbound** — its local port is a listener's (the server side of a
//!   connection), counted per listening port; or
//! - **outbound** — a client socket, counted per *tuple* (source address,
//!   destination address, destination port): the unit `connect()` allocates
//!   source ports in, with an age histogram of its TIME_WAIT sockets.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, dual-stack sockets) are
//! counted as the IPv4 address: they share its 4-tuples and so its ports.
//!
//! ```no_run
//! let census = twscope_core::census::Census::collect()?;
//! println!("{} sockets in TIME_WAIT", census.states.get(twscope_core::TcpState::TimeWait));
//! # Ok::<(), twscope_core::sockdiag::DumpError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::ser::SerializeMap;
use serde::Serialize;

use crate::sockdiag::{DumpError, SockDiag, SocketRecord, StateSet, TcpState};

pub use crate::linux::TIME_WAIT_MS;
/// Age histogram resolution: one bucket per second of TIME_WAIT age.
pub const AGE_BUCKETS: usize = 60;

/// Socket counts by TCP state; serialises as an object with all 11 kernel
/// state names as keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts([u64; 11]);

impl StateCounts {
    /// Sockets counted in `state`.
    pub fn get(&self, state: TcpState) -> u64 {
        self.0[state.index()]
    }

    /// Counts `n` more sockets in `state`.
    pub fn add(&mut self, state: TcpState, n: u64) {
        self.0[state.index()] += n;
    }

    /// All sockets counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// (state, count) pairs in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        TcpState::ALL.iter().map(|&s| (s, self.get(s)))
    }

    fn merge(&mut self, other: &StateCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl Serialize for StateCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(11))?;
        for (state, count) in self.iter() {
            map.serialize_entry(state.name(), &count)?;
        }
        map.end()
    }
}

/// Where outbound sockets go: the unit of the port budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TupleKey {
    /// Local (source) address.
    pub src: IpAddr,
    /// Remote (destination) address.
    pub dst: IpAddr,
    /// Remote (destination) port.
    pub dst_port: u16,
}

/// Outbound sockets of one tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleStats {
    /// Sockets by state; all of them hold a source port.
    pub states: StateCounts,
    /// TIME_WAIT sockets by age in whole seconds: `[0]` closed less than 1 s
    /// ago, `[59]` about to expire. Age = 60 s − `idiag_expires`.
    pub time_wait_age: [u32; AGE_BUCKETS],
}

impl Default for TupleStats {
    fn default() -> TupleStats {
        TupleStats {
            states: StateCounts::default(),
            time_wait_age: [0; AGE_BUCKETS],
        }
    }
}

impl TupleStats {
    /// Sockets holding a source port of this tuple (every state).
    pub fn in_use(&self) -> u64 {
        self.states.total()
    }

    fn merge(&mut self, other: &TupleStats) {
        self.states.merge(&other.states);
        for (mine, theirs) in self.time_wait_age.iter_mut().zip(other.time_wait_age) {
            *mine += theirs;
        }
    }
}

/// Listening sockets: which ports take connections in, as a 64 Ki-bit set so
/// classifying a socket is one bit test.
#[derive(Clone)]
pub struct Listeners {
    ports: Box<[u64; 1024]>,
    /// Every listening socket's (address, port), sorted, for reports.
    pub sockets: Vec<(IpAddr, u16)>,
}

impl Default for Listeners {
    fn default() -> Listeners {
        Listeners {
            ports: Box::new([0; 1024]),
            sockets: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners").field("sockets", &self.sockets).finish()
    }
}

impl Listeners {
    /// Records a listening socket on `addr`:`port`. A port is a listener's
    /// whatever address it is bound to, so sockets on it count as inbound.
    pub fn insert(&mut self, addr: IpAddr, port: u16) {
        self.ports[usize::from(port >> 6)] |= 1 << (port & 63);
        self.sockets.push((addr, port));
    }

    /// Adds every listener of `other` not already here.
    fn union(&mut self, other: Listeners) {
        for (mine, theirs) in self.ports.iter_mut().zip(other.ports.iter()) {
            *mine |= theirs;
        }
        self.sockets.extend(other.sockets);
        self.sockets.sort_unstable();
        self.sockets.dedup();
    }

    /// Whether any listening socket, on any address, is bound to `port`.
    pub fn contains_port(&self, port: u16) -> bool {
        self.ports[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// Distinct listening ports, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=u16::MAX).filter(|&p| self.contains_port(p))
    }
}

/// The aggregated dump of one network namespace.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Every socket by state (listeners included), as `ss -tan` counts them.
    pub states: StateCounts,
    /// The listening sockets; their ports mark sockets as inbound, and those
    /// inside the ephemeral range are taken out of the port budget.
    pub listeners: Listeners,
    /// Client-side sockets per (source, destination, port) tuple.
    pub outbound: HashMap<TupleKey, TupleStats>,
    /// Server-side sockets per local listening port.
    pub inbound: BTreeMap<u16, StateCounts>,
    /// Sockets seen in all.
    pub sockets: u64,
    /// TIME_WAIT sockets whose nominal 60 s are over (`idiag_expires` 0) yet
    /// still in the table: the timer wheel rounds their expiry up (see
    /// [`crate::linux::TimeWaitLifetime`]).
    pub time_wait_past_nominal: u64,
    /// The inode and tuple of every live outbound socket (every state but
    /// TIME_WAIT, whose sockets belong to no process; orphaned ones, closed
    /// by their process, have inode 0 and are left out), for
    /// [`crate::owners`] to find who holds them. Recorded only by
    /// [`Census::collect_with_inodes`] (`status --processes`): empty
    /// otherwise, so the census stays as small as its destinations.
    pub live_inodes: Vec<(u32, TupleKey)>,
}

/// Whether a TIME_WAIT record carries its timer; the kernel always sets
/// `idiag_timer = 3` for TIME_WAIT, this guards against anything else.
const TIMER_TIME_WAIT: u8 = 3;

impl Census {
    /// Dumps the current network namespace and aggregates it.
    ///
    /// Listeners are dumped first (cheap: only the listening hash is walked) so
    /// that each socket of the main dump can be classified as it streams by.
    /// Both dumps take IPv4 and IPv6 in one walk
    /// ([`SockDiag::dump_tcp_both_families`]).
    pub fn collect() -> Result<Census, DumpError> {
        Census::collect_as(false)
    }

    /// [`Census::collect`], also recording the inode of every live outbound
    /// socket ([`Census::live_inodes`]) for `status --processes`.
    pub fn collect_with_inodes() -> Result<Census, DumpError> {
        Census::collect_as(true)
    }

    fn collect_as(inodes: bool) -> Result<Census, DumpError> {
        let mut diag = SockDiag::open()?;
        let mut census = Census::default();
        // Listeners first, both families in one walk of the listening hash.
        diag.dump_tcp_both_families(StateSet::only(TcpState::Listen), |s| census.add(s))?;
        // Then every other state, both families in one walk of the
        // established hash, which every namespace shares: its cost is the
        // whole host's sockets, so one walk, not one per family.
        let others = StateSet::ALL.without(TcpState::Listen);
        if inodes {
            diag.dump_tcp_both_families(others, |s| {
                census.add(s);
                census.record_inode(s);
            })?;
        } else {
            // The default census: nothing but `add` per socket.
            diag.dump_tcp_both_families(others, |s| census.add(s))?;
        }
        Ok(census)
    }

    /// Adds one socket. Listeners must be added before the sockets they serve
    /// for those to count as inbound (see [`Census::collect`]).
    pub fn add(&mut self, socket: &SocketRecord) {
        self.sockets += 1;
        self.states.add(socket.state, 1);
        if socket.state == TcpState::TimeWait && socket.timer == TIMER_TIME_WAIT && socket.expires_ms == 0 {
            self.time_wait_past_nominal += 1;
        }
        if socket.state == TcpState::Listen {
            self.listeners
                .insert(socket.local_addr.to_canonical(), socket.local_port);
            return;
        }
        if self.listeners.contains_port(socket.local_port) {
            self.inbound.entry(socket.local_port).or_default().add(socket.state, 1);
            return;
        }
        let key = TupleKey {
            src: socket.local_addr.to_canonical(),
            dst: socket.remote_addr.to_canonical(),
            dst_port: socket.remote_port,
        };
        let tuple = self.outbound.entry(key).or_default();
        tuple.states.add(socket.state, 1);
        if socket.state == TcpState::TimeWait && socket.timer == TIMER_TIME_WAIT {
            let age_ms = TIME_WAIT_MS.saturating_sub(socket.expires_ms);
            let bucket = (age_ms / 1000).min(AGE_BUCKETS as u32 - 1) as usize;
            tuple.time_wait_age[bucket] += 1;
        }
    }

    /// Records `socket`'s inode in [`Census::live_inodes`] if it is a live
    /// outbound socket that a process may hold. Listeners must have been
    /// added first, as for [`Census::add`].
    pub fn record_inode(&mut self, socket: &SocketRecord) {
        if socket.inode == 0
            || matches!(socket.state, TcpState::Listen | TcpState::TimeWait)
            || self.listeners.contains_port(socket.local_port)
        {
            return;
        }
        let key = TupleKey {
            src: socket.local_addr.to_canonical(),
            dst: socket.remote_addr.to_canonical(),
            dst_port: socket.remote_port,
        };
        self.live_inodes.push((socket.inode, key));
    }

    /// Folds another partial census (another family's dump) into this one.
    pub fn merge(&mut self, other: Census) {
        self.sockets += other.sockets;
        self.time_wait_past_nominal += other.time_wait_past_nominal;
        self.states.merge(&other.states);
        self.listeners.union(other.listeners);
        self.live_inodes.extend(other.live_inodes);
        for (key, stats) in other.outbound {
            self.outbound.entry(key).or_default().merge(&stats);
        }
        for (port, counts) in other.inbound {
            self.inbound.entry(port).or_default().merge(&counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(state: TcpState, local: (&str, u16), remote: (&str, u16), expires_ms: u32) -> SocketRecord {
        let addr = |text: &str| text.parse().unwrap();
        SocketRecord::synthetic(state, (addr(local.0), local.1), (addr(remote.0), remote.1), expires_ms)
    }

    #[test]
    fn classifies_inbound_by_listening_port_and_outbound_by_tuple() {
        let mut census = Census::default();
        census.add(&socket(TcpState::Listen, ("::", 8080), ("::", 0), 0));
        // Server side of a dual-stack listener, seen in the IPv4 dump.
        census.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 8080),
            ("198.18.0.9", 40001),
            30_000,
        ));
        census.add(&socket(
            TcpState::Established,
            ("198.18.0.1", 8080),
            ("198.18.0.9", 40002),
            0,
        ));
        // Client sides.
        census.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 40003),
            ("198.18.0.2", 5432),
            59_500,
        ));
        census.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 40004),
            ("198.18.0.2", 5432),
            100,
        ));
        census.add(&socket(
            TcpState::Established,
            ("198.18.0.1", 40005),
            ("198.18.0.2", 5432),
            0,
        ));
        // A dual-stack client to an IPv4-mapped address joins the IPv4 tuple.
        census.add(&socket(
            TcpState::TimeWait,
            ("::ffff:198.18.0.1", 40006),
            ("::ffff:198.18.0.2", 5432),
            45_000,
        ));

        assert_eq!(census.sockets, 7);
        assert_eq!(census.states.get(TcpState::TimeWait), 4);
        assert_eq!(census.states.get(TcpState::Listen), 1);
        assert_eq!(census.inbound[&8080].get(TcpState::TimeWait), 1);
        assert_eq!(census.inbound[&8080].get(TcpState::Established), 1);
        assert_eq!(census.outbound.len(), 1);
        let key = TupleKey {
            src: "198.18.0.1".parse().unwrap(),
            dst: "198.18.0.2".parse().unwrap(),
            dst_port: 5432,
        };
        let tuple = &census.outbound[&key];
        assert_eq!(tuple.in_use(), 4);
        assert_eq!(tuple.states.get(TcpState::TimeWait), 3);
        // Ages 0.5 s, 59.9 s and 15 s.
        assert_eq!(tuple.time_wait_age[0], 1);
        assert_eq!(tuple.time_wait_age[59], 1);
        assert_eq!(tuple.time_wait_age[15], 1);
    }

    #[test]
    fn merging_partial_censuses_adds_up() {
        let mut v4 = Census::default();
        v4.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 40003),
            ("198.18.0.2", 80),
            59_000,
        ));
        let mut v6 = Census::default();
        v6.add(&socket(
            TcpState::TimeWait,
            ("::ffff:198.18.0.1", 40004),
            ("::ffff:198.18.0.2", 80),
            59_000,
        ));
        v6.add(&socket(TcpState::SynSent, ("2001:2::1", 40004), ("2001:2::2", 80), 0));
        v4.merge(v6);
        assert_eq!(v4.sockets, 3);
        assert_eq!(v4.outbound.len(), 2);
        let states: serde_json::Value = serde_json::to_value(v4.states).unwrap();
        assert_eq!(states.as_object().unwrap().len(), 11);
        assert_eq!(states["TIME_WAIT"], 2);
        assert_eq!(states["SYN_SENT"], 1);
        assert_eq!(states["CLOSE"], 0);
    }

    #[test]
    fn only_live_outbound_sockets_with_an_inode_are_recorded() {
        let mut census = Census::default();
        let mut with_inode = |state, local: (&str, u16), remote: (&str, u16), inode| {
            let mut s = socket(state, local, remote, 0);
            s.inode = inode;
            census.add(&s);
            census.record_inode(&s);
        };
        with_inode(TcpState::Listen, ("0.0.0.0", 8080), ("0.0.0.0", 0), 1);
        with_inode(TcpState::Established, ("198.18.0.1", 8080), ("198.18.0.9", 40001), 2); // inbound
        with_inode(TcpState::Established, ("198.18.0.1", 40002), ("198.18.0.2", 5432), 3);
        with_inode(
            TcpState::SynSent,
            ("::ffff:198.18.0.1", 40003),
            ("::ffff:198.18.0.2", 5432),
            4,
        );
        with_inode(TcpState::CloseWait, ("198.18.0.1", 40004), ("198.18.0.3", 80), 5);
        with_inode(TcpState::FinWait2, ("198.18.0.1", 40005), ("198.18.0.3", 80), 0); // orphaned
        with_inode(TcpState::TimeWait, ("198.18.0.1", 40006), ("198.18.0.3", 80), 0);
        let key = |dst: &str, port| TupleKey {
            src: "198.18.0.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            dst_port: port,
        };
        assert_eq!(
            census.live_inodes,
            vec![
                (3, key("198.18.0.2", 5432)),
                (4, key("198.18.0.2", 5432)),
                (5, key("198.18.0.3", 80))
            ]
        );
        // The default census records none.
        let mut plain = Census::default();
        let mut s = socket(TcpState::Established, ("198.18.0.1", 40002), ("198.18.0.2", 5432), 0);
        s.inode = 3;
        plain.add(&s);
        assert!(plain.live_inodes.is_empty());
    }

    #[test]
    fn listener_port_set() {
        let mut l = Listeners::default();
        l.insert("0.0.0.0".parse().unwrap(), 0);
        l.insert("0.0.0.0".parse().unwrap(), 65535);
        l.insert("::".parse().unwrap(), 65535);
        assert!(l.contains_port(0) && l.contains_port(65535) && !l.contains_port(1));
        assert_eq!(l.ports().collect::<Vec<_>>(), vec![0, 65535]);
    }
}
