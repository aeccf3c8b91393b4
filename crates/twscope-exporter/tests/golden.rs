//! The exporter's whole `/metrics` output from a fixed model input, compared
//! with a reviewed file (node_exporter's `collector/fixtures/e2e-output.txt`
//! approach): metric names, help, labels and values change only as a diff of
//! `tests/fixtures/metrics.txt`. Needs no root and no kernel access.
//!
//! After an intended change: `TWSCOPE_BLESS=1 cargo test -p twscope-exporter --test golden`,
//! then review the diff.

use std::path::Path;

use twscope_core::census::Census;
use twscope_core::doctor;
use twscope_core::kernel::{Counters, PortRanges, Settings};
use twscope_core::linux::TimeWaitLifetime;
use twscope_core::netns::NetnsInfo;
use twscope_core::sockdiag::SocketRecord;
use twscope_core::status::{DumpInfo, Readings, Status, StatusOptions};
use twscope_core::TcpState;
use twscope_exporter::metrics::{self, ExporterStats, ProtectionCounts};

fn socket(state: TcpState, local: (&str, u16), remote: (&str, u16), expires_ms: u32) -> SocketRecord {
    let addr = |text: &str| text.parse().unwrap();
    SocketRecord::synthetic(state, (addr(local.0), local.1), (addr(remote.0), remote.1), expires_ms)
}

/// A namespace with a narrow range: a database churned at 40/s (critical),
/// a cache with a pool, three small destinations folded into `dst="other"`,
/// a listener inside the range and some inbound TIME_WAIT.
fn status() -> Status {
    let mut census = Census::default();
    census.add(&socket(TcpState::Listen, ("0.0.0.0", 40500), ("0.0.0.0", 0), 0));
    for i in 0..800u32 {
        // 40 per second of age over the last 20 s.
        let expires = 60_000 - (i / 40) * 1000 - 500;
        census.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 40_000 + i as u16),
            ("198.18.0.100", 5432),
            expires,
        ));
    }
    for i in 0..10u16 {
        census.add(&socket(
            TcpState::Established,
            ("198.18.0.1", 40_900 + i),
            ("198.18.0.101", 6379),
            0,
        ));
    }
    for (n, dst) in [(3u16, "198.18.0.102"), (2, "198.18.0.103"), (1, "2001:2::104")] {
        let src = if dst.contains(':') { "2001:2::1" } else { "198.18.0.1" };
        for i in 0..n {
            census.add(&socket(TcpState::TimeWait, (src, 40_950 + i), (dst, 443), 30_000));
        }
    }
    for i in 0..5u16 {
        census.add(&socket(
            TcpState::TimeWait,
            ("198.18.0.1", 40500),
            ("198.18.0.200", 50_000 + i),
            20_000,
        ));
    }
    Status::build(
        Readings {
            census,
            settings: Settings {
                port_range_low: 40_000,
                port_range_high: 40_999,
                reserved_ports: PortRanges::parse("40000-40099").unwrap(),
                tcp_tw_reuse: 0,
                tcp_tw_reuse_delay_ms: Some(1000),
                tcp_timestamps: 1,
                tcp_max_tw_buckets: 262_144,
                tcp_fin_timeout: 60,
                tcp_tw_recycle: None,
            },
            counters: Counters {
                active_opens: 12_345,
                tw: 11_000,
                tw_recycled: 0,
                tw_killed: 0,
                tcp_time_wait_overflow: 0,
                sockstat_tw: 811,
            },
            conntrack: None,
            host: "golden".into(),
            kernel: "6.18.0".into(),
            netns: NetnsInfo {
                name: "golden".into(),
                inode: 4026532000,
            },
            dump: DumpInfo {
                sockets: 825,
                duration_ms: 1.0,
            },
            time_wait: TimeWaitLifetime::for_hz(250),
        },
        &StatusOptions::default(),
    )
}

/// The text with the samples of each family sorted: prometheus-client keeps
/// a family's series in a hash map, so their order varies from run to run.
fn sorted_within_families(text: &str) -> String {
    let mut out = Vec::new();
    let mut samples: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            samples.sort_unstable();
            out.append(&mut samples);
            out.push(line);
        } else {
            samples.push(line);
        }
    }
    samples.sort_unstable();
    out.append(&mut samples);
    out.join("\n") + "\n"
}

#[test]
fn metrics_output_matches_the_reviewed_fixture() {
    let status = status();
    let report = doctor::diagnose(&status);
    let stats = ExporterStats {
        dumps: 7,
        errors: 1,
        duration_s: 0.0125,
        protections: ProtectionCounts {
            evicted: 2,
            refused: 0,
            timed_out: 3,
            auth_throttled: 4,
        },
    };
    let (_, text) = metrics::encode(&metrics::registry(&status, &report, 3, stats)).unwrap();
    let text = sorted_within_families(&text.replace(env!("CARGO_PKG_VERSION"), "VERSION"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics.txt");
    if std::env::var("TWSCOPE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&fixture, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&fixture).expect("fixture missing: run with TWSCOPE_BLESS=1 and review it");
    assert_eq!(
        text, expected,
        "/metrics differs from tests/fixtures/metrics.txt; if intended, bless it (TWSCOPE_BLESS=1) and review the diff"
    );
    // The fixture says what the model says: the critical database and the folded tail.
    let db = &status.destinations[0];
    assert_eq!((db.addr.as_str(), db.port), ("198.18.0.100", 5432));
    assert!(expected.contains(&format!(
        "twscope_destination_time_wait_sockets{{dst=\"198.18.0.100\",dst_port=\"5432\"}} {}.0",
        db.time_wait
    )));
    assert!(expected.contains("twscope_destination_in_use_sockets{dst=\"other\",dst_port=\"\"} 3.0"));
    assert!(expected.contains(&format!(
        "twscope_destination_utilization_ratio{{dst=\"198.18.0.100\",dst_port=\"5432\"}} {}",
        db.utilization
    )));
}

/// `serve --trace` adds its families and changes nothing else: the traced
/// output without them is the plain output, and they are compared with their
/// own reviewed file (`tests/fixtures/trace-metrics.txt`).
#[test]
fn traced_output_adds_only_the_reviewed_trace_families() {
    use twscope_core::trace::Losses;
    use twscope_exporter::trace::{Counts, TraceRow, TraceView};

    let status = status();
    let report = doctor::diagnose(&status);
    let stats = ExporterStats {
        dumps: 7,
        ..ExporterStats::default()
    };
    let row = |comm: &str, container: &str, netns: &str, dst: &str, port: &str, counts: Counts| TraceRow {
        comm: comm.into(),
        container: container.into(),
        netns: netns.into(),
        dst: dst.into(),
        dst_port: port.into(),
        counts,
    };
    let mut failing = Counts {
        connects: 1200,
        time_wait_left: 1150,
        failures: [0; 8],
    };
    failing.failures[0] = 48; // EADDRNOTAVAIL
    failing.failures[2] = 2; // ECONNREFUSED
    let view = TraceView {
        attached: true,
        rows: vec![
            row(
                "java",
                "pod checkout-7d9f",
                "4026532383",
                "198.18.0.100",
                "5432",
                failing,
            ),
            row(
                "curl",
                "",
                "4026531840",
                "2001:2::104",
                "443",
                Counts {
                    connects: 3,
                    time_wait_left: 3,
                    failures: [0; 8],
                },
            ),
            row(
                "other",
                "",
                "other",
                "other",
                "",
                Counts {
                    connects: 40,
                    time_wait_left: 38,
                    failures: [0; 8],
                },
            ),
        ],
        series: 9,
        flows: 12,
        forgotten: 30,
        read_errors: 0,
        losses: Losses {
            events_dropped: 1,
            flows_full: 0,
            sockets_full: 0,
        },
    };
    let (_, plain) = metrics::encode(&metrics::registry(&status, &report, 3, stats)).unwrap();
    let (_, traced) = metrics::encode(&metrics::traced_registry(&status, &report, 3, stats, &view)).unwrap();
    let is_trace = |l: &&str| l.contains("twscope_trace_");
    let rest: Vec<&str> = traced.lines().filter(|l| !is_trace(l)).collect();
    assert_eq!(
        sorted_within_families(&rest.join("\n")),
        sorted_within_families(&plain),
        "--trace changed the other families"
    );
    let ours: Vec<&str> = traced.lines().filter(is_trace).collect();
    let text = sorted_within_families(&ours.join("\n"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trace-metrics.txt");
    if std::env::var("TWSCOPE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&fixture, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&fixture).expect("fixture missing: run with TWSCOPE_BLESS=1 and review it");
    assert_eq!(
        text, expected,
        "the trace families differ from tests/fixtures/trace-metrics.txt; if intended, bless it (TWSCOPE_BLESS=1) and review the diff"
    );
    // EADDRNOTAVAIL is listed for every series, 0 or not; other classes only
    // once they happened.
    assert!(expected.contains("twscope_trace_connect_failures_total{comm=\"curl\",container=\"\",netns=\"4026531840\",dst=\"2001:2::104\",dst_port=\"443\",errno=\"EADDRNOTAVAIL\"} 0"));
    assert!(!expected.contains(
        "comm=\"curl\",container=\"\",netns=\"4026531840\",dst=\"2001:2::104\",dst_port=\"443\",errno=\"ECONNREFUSED\""
    ));
    assert!(expected.contains("errno=\"ECONNREFUSED\"} 2"));
}
