//! TCP socket dumps through netlink `NETLINK_SOCK_DIAG` (`inet_diag_req_v2`).
//!
//! This is the same kernel interface `ss` uses, minus the text formatting: the
//! kernel applies the state filter itself, and every `inet_diag_msg` is decoded
//! in place from the receive buffer into a [`SocketRecord`] (a small `Copy`
//! value) that is handed to a visitor — nothing is allocated per socket.
//!
//! Why not `netlink-packet-sock-diag`: version 0.5 boxes every message and does
//! not expose the TIME_WAIT timer (`idiag_expires`), which the capacity model
//! needs; the wire format is four fixed-size structs, so a hand-written decoder
//! is short and measurably cheaper (see `BENCHMARKS.md`).
//!
//! ```no_run
//! use twscope_core::sockdiag::{Family, SockDiag, StateSet, TcpState};
//!
//! let mut diag = SockDiag::open()?;
//! let mut time_wait = 0;
//! diag.dump_tcp(Family::Inet, StateSet::only(TcpState::TimeWait), |socket| {
//!     assert_eq!(socket.state, TcpState::TimeWait);
//!     time_wait += 1;
//! })?;
//! println!("{time_wait} IPv4 sockets in TIME_WAIT");
//! # Ok::<(), twscope_core::sockdiag::DumpError>(())
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::Serialize;

/// `SOCK_DIAG_BY_FAMILY` from `<linux/sock_diag.h>`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// `TCPDIAG_GETSOCK` from `<linux/inet_diag.h>`: the original request, which
/// the kernel still serves (`inet_diag_rcv_msg_compat`) with both address
/// families in ONE walk of the socket hashes; its replies carry this type.
const TCPDIAG_GETSOCK: u16 = 18;

/// `struct inet_diag_req` (the original request): family, lengths, ext, the
/// 48-byte socket id, states, dbs.
const INET_DIAG_REQ_LEN: usize = 60;
const NLMSG_HDR_LEN: usize = 16;
/// `sizeof(struct inet_diag_msg)`.
const INET_DIAG_MSG_LEN: usize = 72;
/// `sizeof(struct inet_diag_req_v2)`.
const INET_DIAG_REQ_V2_LEN: usize = 56;
/// The kernel sends at most one ~32 KiB skb per `recvmsg` of a dump; a larger
/// buffer costs nothing and keeps us safe if that limit ever grows.
const RECV_BUF_LEN: usize = 1 << 20;
/// Socket receive buffer asked for, so the kernel never has to drop or stall.
const SO_RCVBUF_BYTES: libc::c_int = 8 << 20;

/// TCP states with the kernel's names and numbers (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[repr(u8)]
pub enum TcpState {
    /// The connection is open and carries data.
    #[serde(rename = "ESTABLISHED")]
    Established = 1,
    /// `connect()` sent a SYN and waits for the SYN-ACK; the source port is
    /// already taken.
    #[serde(rename = "SYN_SENT")]
    SynSent = 2,
    /// A server answered a SYN and waits for the final ACK (request sockets,
    /// `TCP_NEW_SYN_RECV`, included).
    #[serde(rename = "SYN_RECV")]
    SynRecv = 3,
    /// This side closed first; its FIN is not yet acknowledged.
    #[serde(rename = "FIN_WAIT1")]
    FinWait1 = 4,
    /// This side's FIN was acknowledged; waiting for the peer's FIN, at most
    /// `tcp_fin_timeout` seconds once the socket is orphaned.
    #[serde(rename = "FIN_WAIT2")]
    FinWait2 = 5,
    /// This side closed first and the close is complete; the socket keeps its
    /// 4-tuple (and so its source port) for 60 s so that late segments of the
    /// old connection cannot reach a new one. The state the port budget is
    /// about.
    #[serde(rename = "TIME_WAIT")]
    TimeWait = 6,
    /// Not connected: created or bound, or fully closed.
    #[serde(rename = "CLOSE")]
    Close = 7,
    /// The peer closed first; the application has not closed its end yet. A
    /// count that only grows is a leak in the application.
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait = 8,
    /// The peer closed first, then this side; waiting for the ACK of this
    /// side's FIN. No TIME_WAIT follows.
    #[serde(rename = "LAST_ACK")]
    LastAck = 9,
    /// A listening socket, accepting connections on its port.
    #[serde(rename = "LISTEN")]
    Listen = 10,
    /// Both sides closed at once; waiting for the ACK of this side's FIN,
    /// then TIME_WAIT.
    #[serde(rename = "CLOSING")]
    Closing = 11,
}

impl TcpState {
    /// All eleven states, in kernel order.
    pub const ALL: [TcpState; 11] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];

    /// The state for a kernel state number. `TCP_NEW_SYN_RECV` (12, a request
    /// socket) is reported as `SYN_RECV`, as `ss` does.
    pub fn from_kernel(number: u8) -> Option<TcpState> {
        match number {
            12 => Some(TcpState::SynRecv),
            n @ 1..=11 => Some(TcpState::ALL[usize::from(n) - 1]),
            _ => None,
        }
    }

    /// The kernel's name, e.g. `TIME_WAIT`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::Closing => "CLOSING",
        }
    }

    /// Index 0..11, for arrays of per-state counters.
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

/// A set of TCP states, as the kernel's `idiag_states` bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSet(u32);

impl StateSet {
    /// Every state a connection or listener can be in: `TCP_ESTABLISHED` (1)
    /// to `TCP_NEW_SYN_RECV` (12), what `ss -a` dumps. Not `TCP_BOUND_INACTIVE`
    /// (13, Linux 6.7): asking for it makes the kernel walk the bind hash
    /// too — shared by every namespace, so each dump would cost as much as
    /// the whole node's bound sockets — for sockets that hold a port by
    /// `bind()` alone, which `ss` shows only with `--bound-inactive`.
    pub const ALL: StateSet = StateSet(0x1ffe);

    /// Just one state.
    pub fn only(state: TcpState) -> StateSet {
        StateSet::empty().with(state)
    }

    /// No state.
    pub fn empty() -> StateSet {
        StateSet(0)
    }

    /// This set plus `state` (and `TCP_NEW_SYN_RECV` along with `SYN_RECV`).
    pub fn with(self, state: TcpState) -> StateSet {
        let mut bits = self.0 | 1 << state as u32;
        if state == TcpState::SynRecv {
            bits |= 1 << 12;
        }
        StateSet(bits)
    }

    /// This set minus `state`.
    pub fn without(self, state: TcpState) -> StateSet {
        StateSet(self.0 & !(1 << state as u32))
    }

    /// The raw `idiag_states` mask.
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// An address family to dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    Inet,
    /// IPv6 (`AF_INET6`), including IPv4-mapped addresses of dual-stack sockets.
    Inet6,
}

impl Family {
    fn raw(self) -> u8 {
        match self {
            Family::Inet => libc::AF_INET as u8,
            Family::Inet6 => libc::AF_INET6 as u8,
        }
    }
}

/// One socket from a dump, decoded from an `inet_diag_msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRecord {
    /// The address family the socket was dumped under (`idiag_family`).
    pub family: Family,
    /// The TCP state (`idiag_state`).
    pub state: TcpState,
    /// Local address (`idiag_src`); for an outbound socket, the source
    /// address. IPv4-mapped IPv6 addresses are kept as the kernel gives them.
    pub local_addr: IpAddr,
    /// Local port (`idiag_sport`): the ephemeral source port of an outbound
    /// socket, the listening port of a server-side one.
    pub local_port: u16,
    /// Remote address (`idiag_dst`); unspecified for a listener.
    pub remote_addr: IpAddr,
    /// Remote port (`idiag_dport`); 0 for a listener.
    pub remote_port: u16,
    /// Which timer runs (`idiag_timer`): 0 none, 1 retransmit, 2 keepalive,
    /// 3 TIME_WAIT, 4 zero-window probe.
    pub timer: u8,
    /// Milliseconds until the timer fires (`idiag_expires`). For a TIME_WAIT
    /// socket this is its remaining lifetime out of 60 s.
    pub expires_ms: u32,
    /// User id owning the socket (`idiag_uid`); 0 for TIME_WAIT sockets,
    /// which have no owner any more.
    pub uid: u32,
    /// Socket inode (0 for TIME_WAIT and request sockets, which have no file).
    pub inode: u32,
}

impl SocketRecord {
    /// A record as a dump reports one `state` socket from `local` to
    /// `remote`: the family from the local address, the TIME_WAIT timer on a
    /// TIME_WAIT socket with `expires_ms` left, no owner, no inode. Synthetic
    /// census input for tests and fixtures.
    pub fn synthetic(state: TcpState, local: (IpAddr, u16), remote: (IpAddr, u16), expires_ms: u32) -> SocketRecord {
        SocketRecord {
            family: if local.0.is_ipv4() { Family::Inet } else { Family::Inet6 },
            state,
            local_addr: local.0,
            local_port: local.1,
            remote_addr: remote.0,
            remote_port: remote.1,
            timer: if state == TcpState::TimeWait { 3 } else { 0 },
            expires_ms,
            uid: 0,
            inode: 0,
        }
    }
}

/// What can go wrong in a dump. Malformed input is an error, never a panic.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// `socket(AF_NETLINK, …, NETLINK_SOCK_DIAG)` failed: no sock_diag support
    /// in this kernel, or no netlink at all in a sandbox.
    #[error(
        "cannot open a NETLINK_SOCK_DIAG socket: {0} (the kernel may lack CONFIG_INET_DIAG / the tcp_diag module)"
    )]
    Open(#[source] io::Error),
    /// Sending the `inet_diag_req_v2` request failed.
    #[error("sending the sock_diag request failed: {0}")]
    Send(#[source] io::Error),
    /// `recvmsg` failed while the dump was streaming in.
    #[error("receiving the sock_diag dump failed: {0}")]
    Recv(#[source] io::Error),
    /// The kernel answered with an errno (`NLMSG_ERROR`, or a failure code in
    /// `NLMSG_DONE`), e.g. EPERM or ENOENT when `tcp_diag` is missing.
    #[error("the kernel refused the sock_diag request: {0}")]
    Kernel(#[source] io::Error),
    /// A message in the received data was truncated or inconsistent.
    #[error("malformed netlink message at byte {offset}: {what}")]
    Malformed {
        /// Byte offset of the offending message within one `recvmsg` batch.
        offset: usize,
        /// Which check failed.
        what: &'static str,
    },
}

/// Totals of one dump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Sockets handed to the visitor.
    pub sockets: u64,
    /// `recvmsg` calls made.
    pub batches: u64,
}

/// A `NETLINK_SOCK_DIAG` socket and its receive buffer.
///
/// The socket belongs to the network namespace of the thread that opened it,
/// which is how `--netns` works: enter the namespace, then open.
pub struct SockDiag {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    /// Opens a sock_diag socket in the current thread's network namespace.
    pub fn open() -> Result<SockDiag, DumpError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(DumpError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A big receive buffer lets the kernel queue the next batch while we
        // parse the current one. SO_RCVBUFFORCE (root) lifts the rmem_max cap;
        // without privileges fall back to the capped SO_RCVBUF. Best effort.
        for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a pointer to a live c_int of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&SO_RCVBUF_BYTES as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
        Ok(SockDiag {
            fd,
            buf: vec![0; RECV_BUF_LEN],
            seq: 0,
        })
    }

    /// Dumps the TCP sockets of `family` whose state is in `states`, calling
    /// `visit` for each. The state filter runs in the kernel.
    pub fn dump_tcp(
        &mut self,
        family: Family,
        states: StateSet,
        mut visit: impl FnMut(&SocketRecord),
    ) -> Result<DumpStats, DumpError> {
        self.seq = self.seq.wrapping_add(1);
        self.send_request(family, states)?;
        self.receive(|socket| visit(socket))
    }

    /// Reads the replies to the request just sent, to `NLMSG_DONE`.
    fn receive(&mut self, mut visit: impl FnMut(&SocketRecord)) -> Result<DumpStats, DumpError> {
        let mut stats = DumpStats::default();
        loop {
            let len = self.recv()?;
            stats.batches += 1;
            let progress = parse_batch(&self.buf[..len], self.seq, |socket| {
                stats.sockets += 1;
                visit(socket)
            })?;
            if progress == Progress::Done {
                return Ok(stats);
            }
        }
    }

    /// Dumps the TCP sockets of BOTH families whose state is in `states`, in
    /// one walk of the kernel's hashes (`TCPDIAG_GETSOCK`). Every namespace
    /// shares the established hash, so each walk costs as much as the whole
    /// host's sockets: one walk instead of one per family halves the cost of
    /// a dump, which `--netns all` pays once per namespace.
    pub fn dump_tcp_both_families(
        &mut self,
        states: StateSet,
        mut visit: impl FnMut(&SocketRecord),
    ) -> Result<DumpStats, DumpError> {
        self.seq = self.seq.wrapping_add(1);
        self.send(&encode_compat_request(states, self.seq))?;
        self.receive(|socket| visit(socket))
    }

    fn send_request(&self, family: Family, states: StateSet) -> Result<(), DumpError> {
        self.send(&encode_request(family, states, self.seq))
    }

    fn send(&self, request: &[u8]) -> Result<(), DumpError> {
        // SAFETY: zeroed sockaddr_nl is a valid value (pid 0 = the kernel).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and address pointers are valid for their lengths.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(DumpError::Send(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<usize, DumpError> {
        loop {
            // SAFETY: recv into our own buffer, bounded by its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(DumpError::Recv(err));
            }
        }
    }
}

/// A dump request of `N` bytes: the `nlmsghdr` (its length, `kind`,
/// REQUEST|DUMP, `seq`; pid 0, the kernel fills in our port id), the body zero.
fn dump_request<const N: usize>(kind: u16, seq: u32) -> [u8; N] {
    let mut req = [0u8; N];
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[0..4].copy_from_slice(&(N as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req
}

/// Builds the `nlmsghdr` + `inet_diag_req_v2` request for a TCP dump.
fn encode_request(family: Family, states: StateSet, seq: u32) -> [u8; NLMSG_HDR_LEN + INET_DIAG_REQ_V2_LEN] {
    let mut req = dump_request(SOCK_DIAG_BY_FAMILY, seq);
    let body = &mut req[NLMSG_HDR_LEN..];
    body[0] = family.raw();
    body[1] = libc::IPPROTO_TCP as u8;
    // body[2] idiag_ext = 0: no extensions, so every reply is a bare 72-byte msg.
    body[4..8].copy_from_slice(&states.bits().to_ne_bytes());
    // The socket id stays zero: no address filter; cookie 0 = any socket.
    req
}

/// Builds the `nlmsghdr` + `inet_diag_req` request of `TCPDIAG_GETSOCK`:
/// TCP sockets of every family in `states`.
fn encode_compat_request(states: StateSet, seq: u32) -> [u8; NLMSG_HDR_LEN + INET_DIAG_REQ_LEN] {
    let mut req = dump_request(TCPDIAG_GETSOCK, seq);
    // idiag_family: ignored by the kernel here (it dumps both); idiag_ext 0;
    // the socket id zero (no filter); then idiag_states at offset 52.
    let body = &mut req[NLMSG_HDR_LEN..];
    body[0] = libc::AF_INET as u8;
    body[52..56].copy_from_slice(&states.bits().to_ne_bytes());
    req
}

/// Where a batch left the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More batches follow.
    More,
    /// `NLMSG_DONE` seen: the dump is complete.
    Done,
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

/// Decodes one `recvmsg` worth of netlink messages, calling `visit` for every
/// socket. Messages of another sequence number (stale replies) are skipped.
///
/// Every length is checked before it is used: a truncated or inconsistent
/// buffer yields [`DumpError::Malformed`], a kernel error [`DumpError::Kernel`].
pub fn parse_batch(buf: &[u8], seq: u32, mut visit: impl FnMut(&SocketRecord)) -> Result<Progress, DumpError> {
    let mut offset = 0;
    if buf.is_empty() {
        return Err(DumpError::Malformed {
            offset,
            what: "empty read: the dump ended without NLMSG_DONE",
        });
    }
    while offset < buf.len() {
        let rest = &buf[offset..];
        if rest.len() < NLMSG_HDR_LEN {
            return Err(DumpError::Malformed {
                offset,
                what: "truncated netlink header",
            });
        }
        let msg_len = read_u32(rest, 0) as usize;
        let msg_type = read_u16(rest, 4);
        let msg_seq = read_u32(rest, 8);
        if msg_len < NLMSG_HDR_LEN {
            return Err(DumpError::Malformed {
                offset,
                what: "netlink message length shorter than its header",
            });
        }
        if msg_len > rest.len() {
            return Err(DumpError::Malformed {
                offset,
                what: "netlink message length runs past the received data",
            });
        }
        let payload = &rest[NLMSG_HDR_LEN..msg_len];
        if msg_seq == seq {
            match msg_type {
                t if t == libc::NLMSG_DONE as u16 => {
                    // A dump may report a failure in NLMSG_DONE's payload.
                    if payload.len() >= 4 {
                        let code = read_u32(payload, 0) as i32;
                        if code < 0 {
                            return Err(kernel_error(code, offset));
                        }
                    }
                    return Ok(Progress::Done);
                }
                t if t == libc::NLMSG_ERROR as u16 => {
                    if payload.len() < 4 {
                        return Err(DumpError::Malformed {
                            offset,
                            what: "NLMSG_ERROR without an error code",
                        });
                    }
                    let code = read_u32(payload, 0) as i32;
                    if code != 0 {
                        return Err(kernel_error(code, offset));
                    }
                    // code 0 is an ACK: nothing to report.
                }
                SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                    let record = decode_inet_diag_msg(payload).ok_or(DumpError::Malformed {
                        offset,
                        what: "inet_diag_msg shorter than 72 bytes or with an unknown family",
                    })?;
                    if let Some(record) = record {
                        visit(&record);
                    }
                }
                // NLMSG_NOOP, NLMSG_OVERRUN and anything new: nothing to decode.
                _ => {}
            }
        }
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        offset += (msg_len + 3) & !3;
    }
    Ok(Progress::More)
}

/// Highest errno the kernel can report (`MAX_ERRNO` in `<linux/err.h>`).
const MAX_ERRNO: u32 = 4095;

/// The error an `NLMSG_ERROR` or `NLMSG_DONE` code stands for. The kernel
/// sends a negated errno (`-EPERM`); a positive one is tolerated. A code whose
/// magnitude is not a real errno (0, or above 4095, e.g. `i32::MIN`) is a
/// malformed message — never an overflow.
fn kernel_error(code: i32, offset: usize) -> DumpError {
    match code.unsigned_abs() {
        errno @ 1..=MAX_ERRNO => DumpError::Kernel(io::Error::from_raw_os_error(errno as i32)),
        _ => DumpError::Malformed {
            offset,
            what: "netlink error code outside the errno range 1-4095",
        },
    }
}

/// Decodes an `inet_diag_msg`. `None` = malformed; `Some(None)` = a state
/// number this version does not know (skipped, as `ss` would print it as
/// UNKNOWN); `Some(Some(record))` otherwise.
fn decode_inet_diag_msg(msg: &[u8]) -> Option<Option<SocketRecord>> {
    if msg.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let family = match i32::from(msg[0]) {
        libc::AF_INET => Family::Inet,
        libc::AF_INET6 => Family::Inet6,
        _ => return None,
    };
    let Some(state) = TcpState::from_kernel(msg[1]) else {
        return Some(None);
    };
    // inet_diag_sockid: ports are big-endian; addresses are network order bytes.
    let local_port = u16::from_be_bytes([msg[4], msg[5]]);
    let remote_port = u16::from_be_bytes([msg[6], msg[7]]);
    let (local_addr, remote_addr) = match family {
        Family::Inet => (
            IpAddr::V4(Ipv4Addr::new(msg[8], msg[9], msg[10], msg[11])),
            IpAddr::V4(Ipv4Addr::new(msg[24], msg[25], msg[26], msg[27])),
        ),
        Family::Inet6 => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&msg[8..24]);
            dst.copy_from_slice(&msg[24..40]);
            (IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)))
        }
    };
    Some(Some(SocketRecord {
        family,
        state,
        local_addr,
        local_port,
        remote_addr,
        remote_port,
        timer: msg[2],
        expires_ms: read_u32(msg, 52),
        uid: read_u32(msg, 64),
        inode: read_u32(msg, 68),
    }))
}

/// Test support: encodes netlink messages the way the kernel does, so parser
/// tests and benchmarks can build buffers without a kernel.
#[doc(hidden)]
pub mod wire {
    use super::*;

    /// One `SOCK_DIAG_BY_FAMILY` message carrying `record`.
    pub fn encode_record(record: &SocketRecord, seq: u32) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDR_LEN + INET_DIAG_MSG_LEN];
        header(&mut msg, SOCK_DIAG_BY_FAMILY, seq);
        let body = &mut msg[NLMSG_HDR_LEN..];
        body[0] = record.family.raw();
        body[1] = record.state as u8;
        body[2] = record.timer;
        body[4..6].copy_from_slice(&record.local_port.to_be_bytes());
        body[6..8].copy_from_slice(&record.remote_port.to_be_bytes());
        put_addr(&mut body[8..24], record.local_addr);
        put_addr(&mut body[24..40], record.remote_addr);
        body[52..56].copy_from_slice(&record.expires_ms.to_ne_bytes());
        body[64..68].copy_from_slice(&record.uid.to_ne_bytes());
        body[68..72].copy_from_slice(&record.inode.to_ne_bytes());
        msg
    }

    /// `NLMSG_DONE` (with `code` as its payload) or `NLMSG_ERROR`.
    pub fn encode_control(msg_type: u16, code: i32, seq: u32) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDR_LEN + 4];
        header(&mut msg, msg_type, seq);
        msg[NLMSG_HDR_LEN..].copy_from_slice(&code.to_ne_bytes());
        msg
    }

    fn header(msg: &mut [u8], msg_type: u16, seq: u32) {
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&msg_type.to_ne_bytes());
        msg[6..8].copy_from_slice(&(libc::NLM_F_MULTI as u16).to_ne_bytes());
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    }

    fn put_addr(out: &mut [u8], addr: IpAddr) {
        match addr {
            IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;

    fn record(state: TcpState, remote: &str, remote_port: u16, expires_ms: u32) -> SocketRecord {
        let remote_addr: IpAddr = remote.parse().unwrap();
        let local_addr = match remote_addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V6(_) => IpAddr::V6("2001:2::1".parse().unwrap()),
        };
        SocketRecord {
            family: if remote_addr.is_ipv4() {
                Family::Inet
            } else {
                Family::Inet6
            },
            state,
            local_addr,
            local_port: 40_000,
            remote_addr,
            remote_port,
            timer: if state == TcpState::TimeWait { 3 } else { 0 },
            expires_ms,
            uid: 1000,
            inode: 0,
        }
    }

    fn collect(buf: &[u8], seq: u32) -> (Result<Progress, DumpError>, Vec<SocketRecord>) {
        let mut seen = Vec::new();
        let result = parse_batch(buf, seq, |r| seen.push(*r));
        (result, seen)
    }

    #[test]
    fn round_trips_ipv4_and_ipv6_records_then_done() {
        let a = record(TcpState::TimeWait, "198.18.0.100", 5432, 59_000);
        let b = record(TcpState::Established, "2001:2::100", 443, 0);
        let mut buf = encode_record(&a, 7);
        buf.extend(encode_record(&b, 7));
        assert_eq!(collect(&buf, 7).0.unwrap(), Progress::More);
        assert_eq!(collect(&buf, 7).1, vec![a, b]);
        buf.extend(encode_control(libc::NLMSG_DONE as u16, 0, 7));
        let (result, seen) = collect(&buf, 7);
        assert_eq!(result.unwrap(), Progress::Done);
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn new_syn_recv_is_reported_as_syn_recv() {
        let mut buf = encode_record(&record(TcpState::SynRecv, "198.18.0.9", 80, 0), 1);
        buf[NLMSG_HDR_LEN + 1] = 12; // TCP_NEW_SYN_RECV
        let (_, seen) = collect(&buf, 1);
        assert_eq!(seen[0].state, TcpState::SynRecv);
        assert_eq!(StateSet::only(TcpState::SynRecv).bits(), (1 << 3) | (1 << 12));
    }

    #[test]
    fn messages_of_another_sequence_are_skipped() {
        let mut buf = encode_record(&record(TcpState::TimeWait, "198.18.0.1", 80, 1), 99);
        buf.extend(encode_control(libc::NLMSG_DONE as u16, 0, 99));
        let (result, seen) = collect(&buf, 5);
        assert_eq!(result.unwrap(), Progress::More);
        assert!(seen.is_empty());
    }

    #[test]
    fn kernel_errors_are_reported_with_their_errno() {
        let buf = encode_control(libc::NLMSG_ERROR as u16, -libc::EPERM, 3);
        match collect(&buf, 3).0 {
            Err(DumpError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
            other => panic!("expected a kernel error, got {other:?}"),
        }
        let buf = encode_control(libc::NLMSG_DONE as u16, -libc::ENOENT, 3);
        match collect(&buf, 3).0 {
            Err(DumpError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT)),
            other => panic!("expected a kernel error, got {other:?}"),
        }
        // An ACK (error 0) is not an error.
        let buf = encode_control(libc::NLMSG_ERROR as u16, 0, 3);
        assert_eq!(collect(&buf, 3).0.unwrap(), Progress::More);
    }

    #[test]
    fn error_codes_outside_the_errno_range_are_malformed_not_a_panic() {
        for msg_type in [libc::NLMSG_DONE as u16, libc::NLMSG_ERROR as u16] {
            for code in [i32::MIN, i32::MIN + 1, -4096, -100_000] {
                let buf = encode_control(msg_type, code, 3);
                match collect(&buf, 3).0 {
                    Err(DumpError::Malformed { offset: 0, what }) => assert!(what.contains("errno range"), "{what}"),
                    other => panic!("type {msg_type} code {code}: expected Malformed, got {other:?}"),
                }
            }
            // The edge of the range is still a kernel error.
            let buf = encode_control(msg_type, -4095, 3);
            match collect(&buf, 3).0 {
                Err(DumpError::Kernel(e)) => assert_eq!(e.raw_os_error(), Some(4095)),
                other => panic!("type {msg_type}: expected a kernel error, got {other:?}"),
            }
        }
        // NLMSG_ERROR: a positive errno is tolerated, a huge positive one is not.
        let buf = encode_control(libc::NLMSG_ERROR as u16, libc::EPERM, 3);
        assert!(matches!(collect(&buf, 3).0, Err(DumpError::Kernel(e)) if e.raw_os_error() == Some(libc::EPERM)));
        let buf = encode_control(libc::NLMSG_ERROR as u16, i32::MAX, 3);
        assert!(matches!(collect(&buf, 3).0, Err(DumpError::Malformed { .. })));
        // NLMSG_DONE with a non-negative payload ends the dump as before.
        let buf = encode_control(libc::NLMSG_DONE as u16, i32::MAX, 3);
        assert_eq!(collect(&buf, 3).0.unwrap(), Progress::Done);
    }

    #[test]
    fn truncated_and_inconsistent_buffers_are_errors() {
        let good = encode_record(&record(TcpState::TimeWait, "198.18.0.1", 80, 1), 1);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty read"),
            (good[..10].to_vec(), "truncated netlink header"),
            (good[..good.len() - 1].to_vec(), "runs past"),
            (
                {
                    let mut b = good.clone();
                    b[0..4].copy_from_slice(&8u32.to_ne_bytes());
                    b
                },
                "shorter than its header",
            ),
            (
                {
                    // A message whose payload is too short for inet_diag_msg.
                    let mut b = good[..NLMSG_HDR_LEN + 40].to_vec();
                    b[0..4].copy_from_slice(&((NLMSG_HDR_LEN + 40) as u32).to_ne_bytes());
                    b
                },
                "shorter than 72 bytes",
            ),
            (
                {
                    let mut b = good.clone();
                    b[NLMSG_HDR_LEN] = 42; // unknown address family
                    b
                },
                "unknown family",
            ),
            (
                encode_control(libc::NLMSG_ERROR as u16, 0, 1)[..NLMSG_HDR_LEN]
                    .to_vec()
                    .into_iter()
                    .enumerate()
                    .map(|(i, byte)| if i == 0 { NLMSG_HDR_LEN as u8 } else { byte })
                    .collect(),
                "without an error code",
            ),
        ];
        for (buf, expected) in cases {
            match collect(&buf, 1).0 {
                Err(DumpError::Malformed { what, .. }) => {
                    assert!(what.contains(expected), "{what:?} should mention {expected:?}")
                }
                other => panic!("buffer for {expected:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        // xorshift: deterministic, no dev-dependency needed.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let template = encode_record(&record(TcpState::TimeWait, "198.18.0.1", 80, 1), 1);
        for _ in 0..20_000 {
            let mut buf = template.clone();
            buf.extend(encode_control(libc::NLMSG_DONE as u16, 0, 1));
            // Flip a few bytes, then cut at a random length.
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % buf.len();
                buf[at] = next() as u8;
            }
            let cut = (next() as usize) % (buf.len() + 1);
            let _ = parse_batch(&buf[..cut], 1, |_| {});
        }
    }

    #[test]
    fn the_compat_request_asks_for_both_families_in_one_walk() {
        let req = encode_compat_request(StateSet::ALL.without(TcpState::Listen), 9);
        assert_eq!(read_u32(&req, 0) as usize, req.len());
        assert_eq!(req.len(), 16 + 60);
        assert_eq!(read_u16(&req, 4), TCPDIAG_GETSOCK);
        assert_eq!(read_u32(&req, 8), 9);
        // idiag_states after family, lengths, ext and the 48-byte socket id:
        // states 1–12 but LISTEN, never TCP_BOUND_INACTIVE (13).
        assert_eq!(read_u32(&req, 16 + 52), 0x1ffe & !(1 << 10));
    }

    #[test]
    fn request_is_a_tcp_dump_with_the_state_filter() {
        let req = encode_request(Family::Inet6, StateSet::only(TcpState::TimeWait), 9);
        assert_eq!(read_u32(&req, 0) as usize, req.len());
        assert_eq!(read_u16(&req, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(read_u32(&req, 8), 9);
        assert_eq!(req[NLMSG_HDR_LEN], libc::AF_INET6 as u8);
        assert_eq!(req[NLMSG_HDR_LEN + 1], libc::IPPROTO_TCP as u8);
        assert_eq!(read_u32(&req, NLMSG_HDR_LEN + 4), 1 << 6);
    }
}
