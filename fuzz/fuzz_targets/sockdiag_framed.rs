//! `sockdiag::parse_batch` on well-framed netlink batches built from fuzzed
//! parts, so the fuzzer spends its time inside messages (inet_diag_msg
//! decoding, NLMSG_DONE / NLMSG_ERROR codes, stale sequence numbers) rather
//! than on framing. A small model of the parser's contract is the oracle:
//! the sockets visited, the outcome and the byte offset of an error must match.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use twscope_core::sockdiag::{parse_batch, DumpError, Family, Progress, SocketRecord, TcpState};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the replies to the request that dumps both families in
/// one walk carry records under this type too.
const TCPDIAG_GETSOCK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_MULTI: u16 = 2;
const HEADER: usize = 16;
const DIAG_MSG: usize = 72;

#[derive(Arbitrary, Debug)]
enum FamilyByte {
    Inet,
    Inet6,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Body {
    /// An `inet_diag_msg`, possibly cut short or followed by attributes.
    Diag {
        family: FamilyByte,
        state: u8,
        timer: u8,
        local_port: u16,
        remote_port: u16,
        addrs: [u8; 32],
        expires_ms: u32,
        uid: u32,
        inode: u32,
        filler: [u8; 21],
        cut_to: Option<u8>,
        attributes: Vec<u8>,
    },
    /// `NLMSG_DONE`, with or without its error code.
    Done { code: Option<i32> },
    /// `NLMSG_ERROR`; `short` leaves out the code.
    Error { code: i32, short: bool },
    /// Any other type (NOOP, OVERRUN, unknown) with any payload.
    Other { msg_type: u16, payload: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Message {
    /// Sent with another sequence number: a stale reply, to be skipped.
    stale: bool,
    body: Body,
}

#[derive(Arbitrary, Debug)]
struct Batch {
    seq: u32,
    messages: Vec<Message>,
    /// Unframed bytes after the messages (truncated or garbage next message).
    tail: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    More,
    Done,
    Kernel(i32),
    Malformed(usize),
}

fn payload(body: &Body) -> (u16, Vec<u8>) {
    match body {
        Body::Diag {
            family,
            state,
            timer,
            local_port,
            remote_port,
            addrs,
            expires_ms,
            uid,
            inode,
            filler,
            cut_to,
            attributes,
        } => {
            let mut msg = vec![0u8; DIAG_MSG];
            msg[0] = match family {
                FamilyByte::Inet => 2,
                FamilyByte::Inet6 => 10,
                FamilyByte::Other(b) => *b,
            };
            msg[1] = *state;
            msg[2] = *timer;
            msg[3] = filler[0];
            msg[4..6].copy_from_slice(&local_port.to_be_bytes());
            msg[6..8].copy_from_slice(&remote_port.to_be_bytes());
            msg[8..40].copy_from_slice(addrs);
            msg[40..52].copy_from_slice(&filler[1..13]);
            msg[52..56].copy_from_slice(&expires_ms.to_ne_bytes());
            msg[56..64].copy_from_slice(&filler[13..21]);
            msg[64..68].copy_from_slice(&uid.to_ne_bytes());
            msg[68..72].copy_from_slice(&inode.to_ne_bytes());
            match cut_to {
                Some(len) => msg.truncate(usize::from(*len).min(DIAG_MSG)),
                None => msg.extend_from_slice(attributes),
            }
            (SOCK_DIAG_BY_FAMILY, msg)
        }
        Body::Done { code } => (NLMSG_DONE, code.map(|c| c.to_ne_bytes().to_vec()).unwrap_or_default()),
        Body::Error { code, short } => {
            (NLMSG_ERROR, if *short { code.to_ne_bytes()[..3].to_vec() } else { code.to_ne_bytes().to_vec() })
        }
        Body::Other { msg_type, payload } => (*msg_type, payload.clone()),
    }
}

/// What the parser must do with one message of the expected sequence number:
/// `Err` ends the batch with that outcome, `Ok(Some)` is a visited socket.
fn expect(msg_type: u16, payload: &[u8], offset: usize) -> Result<Option<SocketRecord>, Outcome> {
    let errno = |code: i32| match code.unsigned_abs() {
        e @ 1..=4095 => Outcome::Kernel(e as i32),
        _ => Outcome::Malformed(offset),
    };
    match msg_type {
        NLMSG_DONE => match payload.first_chunk::<4>().map(|c| i32::from_ne_bytes(*c)) {
            Some(code) if code < 0 => Err(errno(code)),
            _ => Err(Outcome::Done),
        },
        NLMSG_ERROR => match payload.first_chunk::<4>().map(|c| i32::from_ne_bytes(*c)) {
            None => Err(Outcome::Malformed(offset)),
            Some(0) => Ok(None),
            Some(code) => Err(errno(code)),
        },
        SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
            if payload.len() < DIAG_MSG {
                return Err(Outcome::Malformed(offset));
            }
            let family = match payload[0] {
                2 => Family::Inet,
                10 => Family::Inet6,
                _ => return Err(Outcome::Malformed(offset)),
            };
            let Some(state) = TcpState::from_kernel(payload[1]) else { return Ok(None) };
            let addr = |at: usize| -> IpAddr {
                match family {
                    Family::Inet => {
                        Ipv4Addr::new(payload[at], payload[at + 1], payload[at + 2], payload[at + 3]).into()
                    }
                    Family::Inet6 => Ipv6Addr::from(<[u8; 16]>::try_from(&payload[at..at + 16]).unwrap()).into(),
                }
            };
            let u32_at = |at: usize| u32::from_ne_bytes(payload[at..at + 4].try_into().unwrap());
            Ok(Some(SocketRecord {
                family,
                state,
                local_addr: addr(8),
                local_port: u16::from_be_bytes([payload[4], payload[5]]),
                remote_addr: addr(24),
                remote_port: u16::from_be_bytes([payload[6], payload[7]]),
                timer: payload[2],
                expires_ms: u32_at(52),
                uid: u32_at(64),
                inode: u32_at(68),
            }))
        }
        _ => Ok(None),
    }
}

fuzz_target!(|batch: Batch| {
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    let mut outcome = None;
    for message in &batch.messages {
        let (msg_type, body) = payload(&message.body);
        let seq = if message.stale { batch.seq.wrapping_add(1) } else { batch.seq };
        let offset = buf.len();
        let len = (HEADER + body.len()) as u32;
        buf.extend_from_slice(&len.to_ne_bytes());
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&NLM_F_MULTI.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&[0; 4]); // pid
        buf.extend_from_slice(&body);
        buf.resize(buf.len().next_multiple_of(4), 0);
        if outcome.is_none() && !message.stale {
            match expect(msg_type, &body, offset) {
                Ok(Some(record)) => expected.push(record),
                Ok(None) => {}
                Err(end) => outcome = Some(end),
            }
        }
    }
    let framed_len = buf.len();
    buf.extend_from_slice(&batch.tail);

    let mut seen = Vec::new();
    let result = parse_batch(&buf, batch.seq, |r| seen.push(*r));
    if let Err(e) = &result {
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    let actual = match &result {
        Ok(Progress::More) => Outcome::More,
        Ok(Progress::Done) => Outcome::Done,
        Err(DumpError::Kernel(e)) => Outcome::Kernel(e.raw_os_error().expect("an errno")),
        Err(DumpError::Malformed { offset, .. }) => Outcome::Malformed(*offset),
        Err(other) => panic!("parse_batch cannot fail with {other:?}"),
    };
    if buf.is_empty() {
        assert_eq!(actual, Outcome::Malformed(0));
        return;
    }
    match outcome {
        // Ended inside the framed part: the tail is never read.
        Some(end) => {
            assert_eq!(actual, end, "{result:?}");
            assert_eq!(seen, expected);
        }
        None if batch.tail.is_empty() => {
            assert_eq!(actual, Outcome::More, "{result:?}");
            assert_eq!(seen, expected);
        }
        // The tail may hold more messages or garbage: what came before it holds.
        None => {
            assert!(seen.starts_with(&expected), "{seen:?} vs {expected:?}");
            if let Outcome::Malformed(offset) = actual {
                assert!(offset >= framed_len, "error at {offset} inside the well-framed part");
            }
        }
    }
});
