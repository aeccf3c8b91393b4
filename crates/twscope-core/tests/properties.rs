//! Property tests: the model and `plan` never panic, never wrap, and move the
//! right way when an input grows; the text parsers never panic and round-trip.
//!
//! `PROPTEST_CASES=10000 cargo test -p twscope-core --test properties` for a
//! longer run.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use twscope_core::capacity::{exhaustion_eta, max_sustainable_rate};
use twscope_core::census::AGE_BUCKETS;
use twscope_core::kernel::PortRanges;
use twscope_core::plan::{Workload, MAX_LATENCY_MS, MAX_RATE_PER_S, MAX_TIME_WAIT_S, MIN_TIME_WAIT_S};
use twscope_core::sockdiag::{parse_batch, wire, Family, SocketRecord, TcpState};
use twscope_core::status::DestFilter;

// ---------------------------------------------------------------- inputs

/// Rates as they come: zero, tiny, fractional, round, up to the limit.
fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(MAX_RATE_PER_S),
        0.0..1.0f64,
        0.0..10_000.0f64,
        (0u32..=100_000_000).prop_map(f64::from),
        0.0..=MAX_RATE_PER_S,
    ]
}

fn time_wait() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(60.0),
        Just(MIN_TIME_WAIT_S),
        Just(MAX_TIME_WAIT_S),
        MIN_TIME_WAIT_S..=MAX_TIME_WAIT_S
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        Just((32768, 60999)),
        Just((1024, 65535)),
        Just((0, 65535)),
        any::<(u16, u16)>()
    ]
    .prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn reserved() -> impl Strategy<Value = PortRanges> {
    prop::collection::vec(any::<(u16, u16)>(), 0..6).prop_map(|ranges| {
        let text: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| format!("{}-{}", a.min(b), a.max(b)))
            .collect();
        PortRanges::parse(&text.join(",")).unwrap()
    })
}

prop_compose! {
    /// Any workload that passes `validate`.
    fn workload()(
        rate_per_s in rate(),
        destinations in prop_oneof![Just(1u32), 1u32..100, 1u32..=u32::MAX],
        source_ips in prop_oneof![Just(1u32), 1u32..=65_536, 1u32..=u32::MAX],
        range in port_range(),
        reserved in reserved(),
        tw_reuse in any::<bool>(),
        reuse_delay_ms in prop_oneof![Just(1000u32), 1u32..=u32::MAX],
        time_wait_s in time_wait(),
        latency_ms in prop_oneof![Just(50.0), 0.0..=MAX_LATENCY_MS],
    ) -> Workload {
        let w = Workload {
            rate_per_s, destinations, source_ips, range, reserved, tw_reuse, reuse_delay_ms, time_wait_s, latency_ms,
        };
        w.validate().unwrap_or_else(|e| panic!("generated an invalid workload {w:?}: {e}"));
        w
    }
}

/// Age histograms: empty, sparse, dense, with counts up to u32::MAX.
fn ages() -> impl Strategy<Value = [u32; AGE_BUCKETS]> {
    prop_oneof![
        Just([0u32; AGE_BUCKETS]),
        prop::collection::vec((0..AGE_BUCKETS, any::<u32>()), 0..8).prop_map(|cells| {
            let mut age = [0u32; AGE_BUCKETS];
            for (bucket, n) in cells {
                age[bucket] = n;
            }
            age
        }),
        prop::array::uniform32(0u32..2_000).prop_map(|a| {
            let mut age = [0u32; AGE_BUCKETS];
            age[..32].copy_from_slice(&a);
            age[32..].copy_from_slice(&a[..AGE_BUCKETS - 32]);
            age
        }),
    ]
}

/// Any f64 at all, the awkward ones often.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        Just(60.0),
        any::<f64>(),
        -10.0..200.0f64,
    ]
}

/// Hold times for which the forecast is exact (every second an integer in f64).
fn hold() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(60.0),
        Just(1.0),
        Just(0.001),
        1e-6..200.0f64,
        1e-6..=MAX_TIME_WAIT_S
    ]
}

/// Non-negative rates, including zero and infinity.
fn forecast_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(f64::INFINITY),
        Just(f64::MIN_POSITIVE),
        0.0..1.0f64,
        0.0..100_000.0f64,
        0.0..f64::MAX
    ]
}

// ---------------------------------------------------------------- plan

proptest! {
    #[test]
    fn plan_never_panics_nor_wraps(w in workload()) {
        let p = w.plan();
        let hold_s = p.hold_s;
        prop_assert!(hold_s > 0.0 && hold_s <= w.time_wait_s);
        // rate × hold, rounded only by the 1e-6 float-noise guard.
        let implied = w.rate_per_s / f64::from(w.destinations) * hold_s;
        prop_assert!(p.ports_needed as f64 >= implied * (1.0 - 1e-12) - 1e-6,
            "{} ports for {implied}", p.ports_needed);
        prop_assert!(p.ports_needed as f64 <= implied * (1.0 + 1e-12) + 1.0);
        // Every product is exact, none saturated.
        prop_assert_eq!(Some(p.sockets_needed_total), p.ports_needed.checked_mul(u64::from(w.destinations)));
        prop_assert_eq!(p.ports_available, u64::from(p.ports_per_source) * u64::from(w.source_ips));
        prop_assert_eq!(i128::from(p.headroom), i128::from(p.ports_available) - i128::from(p.ports_needed));
        prop_assert!(p.utilization.is_finite() && p.utilization >= 0.0);
        prop_assert!(p.max_rate_per_s.is_finite() && p.max_total_rate_per_s.is_finite());
        prop_assert!(p.pool_size >= 1);
        if p.sustainable {
            prop_assert!(p.exhaustion_s.is_none());
            prop_assert!(p.headroom >= 0);
            prop_assert!(p.remedies.is_empty());
        } else {
            prop_assert!(!p.remedies.is_empty());
        }
        if let Some(t) = p.exhaustion_s {
            prop_assert!((0.0..hold_s).contains(&t), "exhausted at {t} of {hold_s}");
        }
    }

    #[test]
    fn a_higher_rate_never_needs_fewer_ports(w in workload(), a in rate(), b in rate()) {
        let (low, high) = (a.min(b), a.max(b));
        let p_low = Workload { rate_per_s: low, ..w.clone() }.plan();
        let p_high = Workload { rate_per_s: high, ..w }.plan();
        prop_assert!(p_high.ports_needed >= p_low.ports_needed);
        prop_assert!(p_high.utilization >= p_low.utilization);
        prop_assert!(p_high.headroom <= p_low.headroom);
        prop_assert!(p_high.pool_size >= p_low.pool_size);
        prop_assert!(!p_high.sustainable || p_low.sustainable, "{high}/s sustainable but {low}/s not");
        let eta = |t: Option<f64>| t.unwrap_or(f64::INFINITY);
        prop_assert!(eta(p_high.exhaustion_s) <= eta(p_low.exhaustion_s));
    }

    #[test]
    fn more_source_addresses_never_lower_the_max_rate(w in workload(), a in 1u32..=65_536, b in 1u32..=65_536) {
        let (few, many) = (a.min(b), a.max(b));
        let p_few = Workload { source_ips: few, ..w.clone() }.plan();
        let p_many = Workload { source_ips: many, ..w }.plan();
        prop_assert!(p_many.max_rate_per_s >= p_few.max_rate_per_s);
        prop_assert!(p_many.max_total_rate_per_s >= p_few.max_total_rate_per_s);
        prop_assert!(p_many.ports_available >= p_few.ports_available);
        prop_assert!(!p_few.sustainable || p_many.sustainable);
    }

    #[test]
    fn validate_refuses_anything_out_of_bounds(
        rate_per_s in any_f64(), time_wait_s in any_f64(), latency_ms in any_f64(), range in any::<(u16, u16)>(),
    ) {
        let w = Workload { rate_per_s, time_wait_s, latency_ms, range, ..Workload::new(1.0, (1, 1), PortRanges::default()) };
        let in_bounds = (0.0..=MAX_RATE_PER_S).contains(&rate_per_s)
            && (MIN_TIME_WAIT_S..=MAX_TIME_WAIT_S).contains(&time_wait_s)
            && (0.0..=MAX_LATENCY_MS).contains(&latency_ms)
            && range.0 <= range.1;
        match w.validate() {
            Ok(()) => prop_assert!(in_bounds),
            Err(message) => {
                prop_assert!(!in_bounds);
                prop_assert_eq!(message.lines().count(), 1);
            }
        }
    }
}

// ---------------------------------------------------------------- capacity

proptest! {
    #[test]
    fn exhaustion_eta_never_panics(
        age in ages(), other in any::<u64>(), available in any::<u32>(), rate in any_f64(), hold_s in any_f64(),
    ) {
        if let Some(t) = exhaustion_eta(&age, other, available, rate, hold_s) {
            prop_assert!(t >= 0.0 && t < hold_s, "{t} outside [0, {hold_s})");
        }
    }

    #[test]
    fn exhaustion_eta_is_within_the_hold_time_and_falls_with_the_rate(
        age in ages(), other in 0u64..100_000, available in any::<u32>(),
        a in forecast_rate(), b in forecast_rate(), hold_s in hold(),
    ) {
        let (slow, fast) = (a.min(b), a.max(b));
        let eta_slow = exhaustion_eta(&age, other, available, slow, hold_s);
        let eta_fast = exhaustion_eta(&age, other, available, fast, hold_s);
        for t in [eta_slow, eta_fast].into_iter().flatten() {
            prop_assert!((0.0..hold_s).contains(&t), "{t} outside [0, {hold_s})");
        }
        let eta = |t: Option<f64>| t.unwrap_or(f64::INFINITY);
        prop_assert!(eta(eta_fast) <= eta(eta_slow), "{fast}/s: {eta_fast:?}, {slow}/s: {eta_slow:?}");
    }

    #[test]
    fn max_sustainable_rate_grows_with_the_ports(a in any::<u32>(), b in any::<u32>(), hold_s in hold()) {
        let (few, many) = (a.min(b), a.max(b));
        prop_assert!(max_sustainable_rate(many, hold_s) >= max_sustainable_rate(few, hold_s));
        prop_assert!(max_sustainable_rate(few, hold_s) >= 0.0);
    }
}

// ---------------------------------------------------------------- parsers

/// Text that looks like a port list: digits, commas, dashes, spaces, junk.
fn port_list_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9,\\- ]{0,40}",
        "[0-9]{1,6}(-[0-9]{1,6})?(,[ ]?[0-9]{1,6}(-[0-9]{1,6})?){0,8}",
        any::<String>(),
        "\\PC{0,30}",
    ]
}

proptest! {
    #[test]
    fn port_ranges_round_trip_or_error(text in port_list_text()) {
        if let Ok(ranges) = PortRanges::parse(&text) {
            // Sorted, merged: neither overlapping nor adjacent.
            for pair in ranges.ranges().windows(2) {
                prop_assert!(u32::from(pair[0].1) + 1 < u32::from(pair[1].0), "{:?}", ranges.ranges());
            }
            for &(low, high) in ranges.ranges() {
                prop_assert!(low <= high);
            }
            let written = ranges.to_string();
            let reparsed = PortRanges::parse(&written);
            prop_assert_eq!(reparsed, Ok(ranges), "{:?} → {:?}", text, written);
        }
    }

    #[test]
    fn port_ranges_hold_exactly_the_ports_listed(list in prop::collection::vec(any::<(u16, u16)>(), 0..10), probe in any::<u16>()) {
        let list: Vec<(u16, u16)> = list.into_iter().map(|(a, b)| (a.min(b), a.max(b))).collect();
        let text: Vec<String> = list.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a} - {b}") }).collect();
        let ranges = PortRanges::parse(&text.join(" ,")).unwrap();
        let listed = list.iter().any(|&(a, b)| (a..=b).contains(&probe));
        prop_assert_eq!(ranges.contains(probe), listed);
        let total: u32 = ranges.ranges().iter().map(|&(a, b)| u32::from(b - a) + 1).sum();
        prop_assert_eq!(ranges.count_within(0, 65535), total);
    }

    #[test]
    fn dest_filter_never_panics(text in prop_oneof![any::<String>(), "[\\[\\]0-9a-fA-F:.%]{0,50}"]) {
        if let Ok(filter) = text.parse::<DestFilter>() {
            // Whatever it accepts matches its own address and port.
            prop_assert!(filter.matches(filter.addr, filter.port.unwrap_or(0)));
        }
    }

    #[test]
    fn dest_filter_parses_every_address(addr in any::<IpAddr>(), port in any::<u16>()) {
        let canonical = addr.to_canonical();
        let filter: DestFilter = SocketAddr::new(addr, port).to_string().parse().unwrap();
        prop_assert_eq!((filter.addr, filter.port), (canonical, Some(port)));
        let filter: DestFilter = addr.to_string().parse().unwrap();
        prop_assert_eq!((filter.addr, filter.port), (canonical, None));
        if let IpAddr::V6(v6) = addr {
            let filter: DestFilter = format!("[{v6}]").parse().unwrap();
            prop_assert_eq!(filter.addr, IpAddr::V6(v6).to_canonical());
        }
    }
}

// ---------------------------------------------------------------- netlink

fn socket_record() -> impl Strategy<Value = SocketRecord> {
    (
        any::<bool>(),
        prop::sample::select(TcpState::ALL.to_vec()),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<(u16, u16, u8, u32, u32, u32)>(),
    )
        .prop_map(
            |(v6, state, local, remote, (local_port, remote_port, timer, expires_ms, uid, inode))| {
                let addr = |bytes: [u8; 16]| {
                    if v6 {
                        IpAddr::V6(Ipv6Addr::from(bytes))
                    } else {
                        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
                    }
                };
                SocketRecord {
                    family: if v6 { Family::Inet6 } else { Family::Inet },
                    state,
                    local_addr: addr(local),
                    local_port,
                    remote_addr: addr(remote),
                    remote_port,
                    timer,
                    expires_ms,
                    uid,
                    inode,
                }
            },
        )
}

proptest! {
    #[test]
    fn netlink_batches_round_trip(records in prop::collection::vec(socket_record(), 0..20), seq in any::<u32>(), done in any::<bool>()) {
        let mut buf = Vec::new();
        for record in &records {
            buf.extend(wire::encode_record(record, seq));
        }
        if done || buf.is_empty() {
            buf.extend(wire::encode_control(libc_nlmsg_done(), 0, seq));
        }
        let mut seen = Vec::new();
        let progress = parse_batch(&buf, seq, |r| seen.push(*r)).unwrap();
        prop_assert_eq!(progress == twscope_core::sockdiag::Progress::Done, done || records.is_empty());
        prop_assert_eq!(seen, records);
    }

    #[test]
    fn netlink_garbage_never_panics(buf in prop::collection::vec(any::<u8>(), 0..600), seq in any::<u32>()) {
        let _ = parse_batch(&buf, seq, |_| {});
    }

    #[test]
    fn netlink_error_codes_never_panic(code in prop_oneof![Just(i32::MIN), Just(i32::MAX), any::<i32>()], error in any::<bool>()) {
        let msg_type = if error { 2 } else { libc_nlmsg_done() };
        let _ = parse_batch(&wire::encode_control(msg_type, code, 1), 1, |_| {});
    }
}

/// `NLMSG_DONE`, without a libc dev-dependency.
fn libc_nlmsg_done() -> u16 {
    3
}
