//! Decoding cost per socket: twscope's in-place `inet_diag_msg` decoder against
//! `netlink-packet-sock-diag` 0.5, on the same kernel-format buffers (32 KiB
//! batches, as the kernel sends them), 1,000,000 TIME_WAIT sockets.
//!
//! `cargo bench -p twscope-core --bench parse` — results in BENCHMARKS.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_sock_diag::SockDiagMessage;
use twscope_core::census::Census;
use twscope_core::sockdiag::{parse_batch, wire, Family, SocketRecord, TcpState};

const SOCKETS: u32 = 1_000_000;
const BATCH: usize = 32 * 1024;

fn batches() -> Vec<Vec<u8>> {
    let mut batches = vec![Vec::with_capacity(BATCH)];
    for i in 0..SOCKETS {
        let record = SocketRecord {
            family: Family::Inet,
            state: TcpState::TimeWait,
            local_addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            local_port: 1024 + (i % 64_000) as u16,
            remote_addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, (i % 16) as u8)),
            remote_port: 5432,
            timer: 3,
            expires_ms: 60_000 - (i % 60_000),
            uid: 0,
            inode: 0,
        };
        let msg = wire::encode_record(&record, 1);
        if batches.last().unwrap().len() + msg.len() > BATCH {
            batches.push(Vec::with_capacity(BATCH));
        }
        batches.last_mut().unwrap().extend(msg);
    }
    batches
}

fn time(label: &str, runs: usize, mut f: impl FnMut() -> u64) {
    let mut best = f64::MAX;
    let mut seen = 0;
    for _ in 0..runs {
        let start = Instant::now();
        seen = f();
        best = best.min(start.elapsed().as_secs_f64());
    }
    assert_eq!(seen, u64::from(SOCKETS), "{label} decoded every socket");
    println!(
        "{label:<48} {:>7.1} ns/socket  ({:.1} ms per 1M, best of {runs})",
        best * 1e9 / f64::from(SOCKETS),
        best * 1e3
    );
}

fn main() {
    let batches = batches();
    time("twscope parse_batch (decode only)", 10, || {
        let mut n = 0u64;
        for b in &batches {
            parse_batch(b, 1, |s| {
                black_box(s);
                n += 1;
            })
            .unwrap();
        }
        n
    });
    time("twscope parse_batch + census aggregation", 10, || {
        let mut census = Census::default();
        for b in &batches {
            parse_batch(b, 1, |s| census.add(s)).unwrap();
        }
        census.sockets
    });
    time("netlink-packet-sock-diag 0.5 (decode only)", 10, || {
        let mut n = 0u64;
        for b in &batches {
            let mut offset = 0;
            while offset < b.len() {
                let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&b[offset..]).unwrap();
                if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) = &msg.payload {
                    black_box(r);
                    n += 1;
                }
                offset += msg.header.length as usize;
            }
        }
        n
    });
}
