//! `twscope status` against the kernel's own tools, in network namespaces these
//! tests create: every count must equal what `ss` prints, exactly.
//!
//! Needs root, `ip` and `ss`; without them the tests skip with a reason, unless
//! `TWSCOPE_REQUIRE_ALL=1` (CI) makes that a failure.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use twscope_lab::{churn, hold, require_root, ChurnOptions, Netns, Server};

use crate::oracle::{reported, ss_census};

use crate::util::{as_nobody, heavy, json_of, netns_with_ports, poll, refused, ss, stderr, stdout, twscope};

/// `twscope status --json --netns NS ARGS…` → (its JSON, its exit code).
fn status(ns: &Netns, args: &[&str]) -> (Value, i32) {
    json_of(&[&["status", "--json", "--netns", ns.name()][..], args].concat())
}

/// `ss`'s filter names for `state …`, paired with the kernel names.
const SS_FILTERS: [(&str, &str); 11] = [
    ("established", "ESTABLISHED"),
    ("syn-sent", "SYN_SENT"),
    ("syn-recv", "SYN_RECV"),
    ("fin-wait-1", "FIN_WAIT1"),
    ("fin-wait-2", "FIN_WAIT2"),
    ("time-wait", "TIME_WAIT"),
    ("closed", "CLOSE"),
    ("close-wait", "CLOSE_WAIT"),
    ("last-ack", "LAST_ACK"),
    ("listening", "LISTEN"),
    ("closing", "CLOSING"),
];

/// Waits until no socket of the namespace is between states (FIN_WAIT,
/// LAST_ACK, …), so two dumps taken one after the other must agree.
fn settle(ns: &Netns) {
    let transient = [
        "state",
        "syn-sent",
        "state",
        "syn-recv",
        "state",
        "fin-wait-1",
        "state",
        "fin-wait-2",
        "state",
        "last-ack",
        "state",
        "closing",
        "state",
        "close-wait",
    ];
    let mut args = vec!["-Htan"];
    args.extend(transient);
    let settled = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        ss(ns, &args).trim().is_empty().then_some(())
    });
    assert!(settled.is_some(), "sockets did not settle:\n{}", ss(ns, &args));
}

#[test]
fn status_counts_equal_ss_per_destination_and_state() {
    if !require_root("status_counts_equal_ss_per_destination_and_state") {
        return;
    }
    let _heavy = heavy();
    let ns = Netns::new("census").unwrap();
    ns.add_address("198.18.0.1/32").unwrap();
    ns.add_address("2001:2::1/128").unwrap();
    // (server address, connections to churn into TIME_WAIT, connections held open)
    let plan: [(&str, u64, usize); 5] = [
        ("127.0.0.1:7001", 1500, 0),
        ("127.0.0.1:7002", 800, 20),
        ("198.18.0.1:7003", 500, 0),
        ("[::1]:7001", 700, 0),
        ("[2001:2::1]:7004", 400, 10),
    ];
    let (servers, held) = ns
        .run(move || {
            let mut servers = Vec::new();
            let mut held = Vec::new();
            for (addr, count, keep) in plan {
                let addr: SocketAddr = addr.parse().unwrap();
                servers.push(Server::start(addr, 1).unwrap());
                let stats = churn(
                    &[addr],
                    &ChurnOptions {
                        count,
                        max_duration: Duration::from_secs(30),
                        ..ChurnOptions::default()
                    },
                );
                assert_eq!((stats.ok, stats.failed), (count, 0), "churn to {addr}");
                held.extend(hold(&[addr], keep).unwrap());
            }
            (servers, held)
        })
        .unwrap();
    settle(&ns);

    let (json, _) = status(&ns, &["--top", "0"]);

    // Per state: equal to `ss -Htan state X`, for all eleven states.
    for (filter, name) in SS_FILTERS {
        let expected = ss(&ns, &["-Htan", "state", filter]).lines().count() as u64;
        assert_eq!(json["states"][name].as_u64().unwrap(), expected, "state {name}");
    }
    assert_eq!(json["states"]["TIME_WAIT"], 3900);
    assert_eq!(json["states"]["ESTABLISHED"], 60); // 30 held, both ends

    // Per destination and per listening port: equal to ss, grouped the same way.
    let expected = ss_census(&ns.path());
    let ours = reported(&json);
    assert_eq!(ours.outbound, expected.outbound);
    assert_eq!(ours.inbound, expected.inbound);
    assert_eq!(ours.states, expected.states);
    assert_eq!(ours.outbound.len(), 5);
    assert_eq!(ours.outbound[&("127.0.0.1".parse().unwrap(), 7001)]["TIME_WAIT"], 1500);
    assert_eq!(ours.outbound[&("2001:2::1".parse().unwrap(), 7004)]["ESTABLISHED"], 10);

    // The kernel's own TIME_WAIT count agrees too.
    assert_eq!(json["counters"]["sockstat_tw"], 3900);

    // --dest narrows to one destination; IPv6 without brackets in JSON.
    let (one, _) = status(&ns, &["--dest", "[2001:2::1]:7004"]);
    let rows = one["destinations"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["addr"], "2001:2::1");
    assert_eq!(rows[0]["in_use"], 410);

    // The text report agrees with the JSON and uses separators.
    let text = stdout(&twscope(&["--netns", ns.name()]));
    assert!(text.contains("TIME_WAIT 3,900"), "{text}");
    assert!(text.contains("127.0.0.1:7001") && text.contains("[::1]:7001"), "{text}");

    drop(held);
    drop(servers);
}

/// Churns at `rate`/s into `target` for up to `seconds` s on a thread inside
/// the namespace; returns the thread so the caller can sample meanwhile.
fn churn_in_background(ns: &Netns, target: SocketAddr, rate: f64, seconds: u64) -> std::thread::JoinHandle<(u64, u64)> {
    let path = ns.path();
    std::thread::spawn(move || {
        twscope_lab::enter_netns(&path).unwrap();
        let stats = churn(
            &[target],
            &ChurnOptions {
                count: (rate * seconds as f64) as u64,
                rate_per_s: Some(rate),
                max_duration: Duration::from_secs(seconds + 5),
                ..ChurnOptions::default()
            },
        );
        (stats.ok, stats.failed)
    })
}

#[test]
fn close_rate_from_one_dump_matches_a_known_churn() {
    if !require_root("close_rate_from_one_dump_matches_a_known_churn") {
        return;
    }
    let _heavy = heavy();
    let ns = Netns::new("rate").unwrap();
    let target: SocketAddr = "127.0.0.1:7100".parse().unwrap();
    let server = ns.run(move || Server::start(target, 1).unwrap()).unwrap();
    let churner = churn_in_background(&ns, target, 200.0, 16);
    // Sample mid-churn, once the 10 s window is full of it.
    std::thread::sleep(Duration::from_secs(12));
    let (json, _) = status(&ns, &["--dest", "127.0.0.1:7100"]);
    let (ok, failed) = churner.join().unwrap();
    assert_eq!((ok, failed), (3200, 0));
    let d = &json["destinations"][0];
    let rate = d["close_rate_per_s"].as_f64().unwrap();
    assert!((rate - 200.0).abs() <= 20.0, "close rate {rate}/s, churned at 200/s");
    // 200/s × ~61 s ≈ 12,200 of 28,232 ports: sustainable, not on course.
    assert!(d["exhaustion_eta_s"].is_null(), "{d}");
    assert_eq!(d["severity"], "ok");
    // The budget over the kernel's real TIME_WAIT lifetime (timer-wheel rounding).
    let hold_s = json["time_wait_lifetime"]["mean_s"].as_f64().unwrap();
    assert!((60.0..63.0).contains(&hold_s), "{hold_s}");
    assert!((d["max_rate_per_s"].as_f64().unwrap() - 28_232.0 / hold_s).abs() < 0.01);
    drop(server);
}

#[test]
fn time_to_exhaustion_is_forecast_on_a_narrow_range() {
    if !require_root("time_to_exhaustion_is_forecast_on_a_narrow_range") {
        return;
    }
    let _heavy = heavy();
    let ns = netns_with_ports("eta", "40000 40999");
    let target: SocketAddr = "198.18.0.1:7200".parse().unwrap();
    ns.add_address("198.18.0.1/32").unwrap();
    let server = ns.run(move || Server::start(target, 1).unwrap()).unwrap();
    // 50/s into 1,000 ports: empty to full in 20 s. Sample after ~8 s.
    let churner = churn_in_background(&ns, target, 50.0, 10);
    std::thread::sleep(Duration::from_secs(8));
    let (json, code) = status(&ns, &["--window", "5"]);
    let (ok, failed) = churner.join().unwrap();
    assert_eq!((ok, failed), (500, 0));
    let d = &json["destinations"][0];
    assert_eq!(d["available"], 1000);
    let in_use = d["in_use"].as_f64().unwrap();
    let eta = d["exhaustion_eta_s"].as_f64().expect("on course to exhaust");
    // Whatever the exact sample moment: the remaining ports at 50/s.
    let expected = (1000.0 - in_use) / 50.0;
    assert!(
        (eta - expected).abs() <= expected * 0.1 + 0.5,
        "eta {eta} s, expected ~{expected} s (in use {in_use})"
    );
    assert_eq!(d["severity"], "warning", "{d}");
    assert_eq!(code, 1);
    drop(server);
}

#[test]
fn entering_a_namespace_without_privileges_names_the_capability() {
    if !require_root("entering_a_namespace_without_privileges_names_the_capability") {
        return;
    }
    let ns = Netns::new("priv").unwrap();
    let nobody = |args: &[&str]| as_nobody(&[]).args(args).output().expect("setpriv (util-linux) runs");
    refused(&nobody(&["status", "--netns", ns.name()]), &["CAP_SYS_ADMIN"]);
    // The host's own namespace needs no privilege at all.
    let out = nobody(&["status", "--json"]);
    assert!(out.status.code().unwrap() <= 2, "{}", stderr(&out));
}
