//! `twscope serve --trace` end to end: a churn in a namespace of two ports,
//! its own process (`twscope-churn --comm`), and the counters must equal what the process counted
//! itself — its connects and, exactly, its EADDRNOTAVAIL failures; many
//! short-lived processes stay within `--max-trace-series` plus
//! `comm="other"`; no series ever goes down; exited processes leave the
//! kernel's map; `promtool check metrics` is clean; the tracer is detached
//! at exit and missing privileges are named. The trace alert rules pass
//! `promtool check rules` and their unit tests.
//!
//! Needs root (CAP_BPF, CAP_PERFMON), iproute2 and `promtool`; skips with a
//! reason otherwise, unless `TWSCOPE_REQUIRE_ALL=1`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::prometheus::promtool_check_metrics;
use twscope_lab::testing::require_tools;
use twscope_lab::{require_root, Netns, Server};

use crate::util::{
    as_nobody, churn_counts, deploy, deploy_text, heavy, http_get, netns_with_ports, output_within, poll, refused,
    samples, spawn_churn, stderr, twscope_command, wait_for, Serve,
};

/// `count` connects to `target` from a `twscope-churn` process named `comm`
/// in `ns`; returns what it counted itself.
fn churn_process(ns: &Netns, comm: &str, target: SocketAddr, count: u64) -> Value {
    let target = target.to_string();
    let count = count.to_string();
    churn_counts(spawn_churn(&[
        "--netns",
        ns.name(),
        "--no-server",
        "--target",
        &target,
        "--count",
        &count,
        "--comm",
        comm,
        "--json",
        "--max-seconds",
        "30",
    ]))
}

/// The namespace's inode: its `netns` label.
fn inode(ns: &Netns) -> u64 {
    std::fs::metadata(ns.path()).unwrap().ino()
}

/// One scrape of `/metrics` (text format).
fn scrape(serve: &Serve) -> String {
    let (status, body, _) = http_get(serve.addr, "/metrics", None, Duration::from_secs(10));
    assert_eq!(status, 200, "{body}");
    body
}

/// Every trace counter sample of every scrape so far, to show none went down.
#[derive(Default)]
struct History(BTreeMap<String, f64>);

impl History {
    fn add(&mut self, body: &str) {
        for family in [
            "twscope_trace_connects_total",
            "twscope_trace_time_wait_left_total",
            "twscope_trace_connect_failures_total",
        ] {
            for (labels, value) in samples(body, family) {
                let key = format!("{family}{{{labels}}}");
                if let Some(before) = self.0.get(&key) {
                    assert!(value >= *before, "{key} went down from {before} to {value}");
                }
                self.0.insert(key, value);
            }
        }
    }
}

#[test]
fn serve_trace_counts_what_each_process_counted() {
    const TEST: &str = "serve_trace_counts_what_each_process_counted";
    if !require_root(TEST) || !require_tools(TEST, &["promtool"]) {
        return;
    }
    let _heavy = heavy();
    assert!(
        twscope_trace::loaded_programs().is_empty(),
        "a tracer is attached before the test"
    );
    // Two source ports: the churn's first two connects take them (their
    // TIME_WAITs hold them for 60 s), every later one fails with EADDRNOTAVAIL.
    let ns = netns_with_ports("serve-trace", "40000 40001");
    ns.add_address("198.18.0.1/32").unwrap();
    let target: SocketAddr = "198.18.0.1:7300".parse().unwrap();
    let _server = ns.run(move || Server::start(target, 1)).unwrap().unwrap();
    let serve = Serve::start(&["--trace", "--max-trace-series", "4", "--min-interval", "0"]);
    assert!(
        serve.stderr[0].contains("traced connects (4 series"),
        "{:?}",
        serve.stderr
    );
    let mut history = History::default();
    let body = scrape(&serve);
    history.add(&body);
    assert_eq!(samples(&body, "twscope_trace_attached")[""], 1.0, "{body}");

    let counted = churn_process(&ns, "tw-churn", target, 300);
    let (attempts, ok) = (counted["attempts"].as_u64().unwrap(), counted["ok"].as_u64().unwrap());
    let addr_not_available = counted["addr_not_available"].as_u64().unwrap();
    assert_eq!(attempts, 300, "{counted}");
    assert!(
        ok >= 1 && addr_not_available >= 250,
        "the namespace ran out of ports: {counted}"
    );

    // Its series: first at 0 (new to Prometheus), then what it counted. The
    // process did nothing else, so the counts are exact.
    let series = format!(
        "comm=\"tw-churn\",container=\"\",netns=\"{}\",dst=\"198.18.0.1\",dst_port=\"7300\"",
        inode(&ns)
    );
    let body = wait_for("the churn's counts", Duration::from_secs(20), || {
        let body = scrape(&serve);
        history.add(&body);
        let connects = samples(&body, "twscope_trace_connects_total").get(&series).copied();
        (connects == Some(attempts as f64)).then_some(body)
    });
    let failures = samples(&body, "twscope_trace_connect_failures_total");
    assert_eq!(
        failures[&format!("{series},errno=\"EADDRNOTAVAIL\"")],
        addr_not_available as f64,
        "{counted}\n{body}"
    );
    // Every failure under its errno; no other errno listed unless it happened.
    let own: Vec<(&String, &f64)> = failures.iter().filter(|(k, _)| k.starts_with(&series)).collect();
    assert_eq!(
        own.iter().map(|(_, v)| **v).sum::<f64>(),
        counted["failed"].as_f64().unwrap(),
        "{own:?}"
    );
    assert!(
        own.iter().all(|(k, v)| **v > 0.0 || k.contains("EADDRNOTAVAIL")),
        "{own:?}"
    );
    // Every connection it opened it closed first: a TIME_WAIT each.
    let time_wait_left = wait_for("the churn's TIME_WAITs", Duration::from_secs(10), || {
        let body = scrape(&serve);
        history.add(&body);
        let n = samples(&body, "twscope_trace_time_wait_left_total")
            .get(&series)
            .copied();
        (n == Some(ok as f64)).then_some(n)
    });
    assert_eq!(time_wait_left, Some(ok as f64));
    promtool_check_metrics(&body);
    // Every twscope metric the trace rules use is exported.
    let rules = deploy_text("prometheus/twscope-trace-rules.yml");
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("twscope_") && *w != "twscope_netns_info")
    {
        assert!(body.lines().any(|l| l.starts_with(name)), "the trace rules use {name}");
    }

    // Twelve short-lived processes of their own names: at most 4 series and
    // comm="other", which holds what the others counted.
    let ns2 = Netns::new("serve-trace-many").unwrap();
    ns2.add_address("198.18.0.2/32").unwrap();
    let target2: SocketAddr = "198.18.0.2:7301".parse().unwrap();
    let _server2 = ns2.run(move || Server::start(target2, 1)).unwrap().unwrap();
    let before: f64 = samples(&body, "twscope_trace_connects_total").values().sum();
    for i in 0..12 {
        let counted = churn_process(&ns2, &format!("tw-many-{i:02}"), target2, 3);
        assert_eq!(counted["ok"], 3, "{counted}");
    }
    let body = wait_for("the short-lived processes' counts", Duration::from_secs(20), || {
        let body = scrape(&serve);
        history.add(&body);
        let connects = samples(&body, "twscope_trace_connects_total");
        let total: f64 = connects.values().sum();
        (total >= before + 36.0).then_some(body)
    });
    let connects = samples(&body, "twscope_trace_connects_total");
    assert!(connects.len() <= 5, "more than 4 series and other: {connects:?}");
    assert!(
        connects.contains_key("comm=\"other\",container=\"\",netns=\"other\",dst=\"other\",dst_port=\"\""),
        "{connects:?}"
    );
    assert!(samples(&body, "twscope_trace_series")[""] >= 13.0, "{body}");
    // The failing process keeps its series (an EADDRNOTAVAIL ranks first).
    assert_eq!(connects[&series], attempts as f64);
    promtool_check_metrics(&body);

    // Exited processes leave the kernel's map (5 s after they exited); their
    // counts stay.
    wait_for("exited processes forgotten", Duration::from_secs(30), || {
        let body = scrape(&serve);
        history.add(&body);
        (samples(&body, "twscope_trace_flows_forgotten_total")[""] >= 13.0).then_some(())
    });
    let body = scrape(&serve);
    history.add(&body);
    assert_eq!(samples(&body, "twscope_trace_connects_total")[&series], attempts as f64);

    // SIGTERM: serving ends and the tracer is detached.
    let mut serve = serve;
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(serve.pid() as i32, libc::SIGTERM) };
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(50), || (!serve.alive())
            .then_some(()))
        .is_some(),
        "serve --trace did not stop on SIGTERM"
    );
    assert!(
        twscope_trace::loaded_programs().is_empty(),
        "programs left loaded: {:?}",
        twscope_trace::loaded_programs()
    );
}

#[test]
fn serve_trace_without_privileges_names_the_capabilities() {
    const TEST: &str = "serve_trace_without_privileges_names_the_capabilities";
    if !require_root(TEST) || !require_tools(TEST, &["setpriv"]) {
        return;
    }
    let _heavy = heavy();
    let mut command = as_nobody(&["--inh-caps=-all", "--bounding-set=-all"]);
    command.args(["serve", "--trace", "--listen", "127.0.0.1:0"]);
    let out = output_within(&mut command, Duration::from_secs(20));
    refused(&out, &["CAP_BPF", "CAP_PERFMON"]);
    assert!(twscope_trace::loaded_programs().is_empty());
}

#[test]
fn max_trace_series_needs_trace() {
    let mut command = twscope_command();
    command.args(["serve", "--listen", "127.0.0.1:0", "--max-trace-series", "5"]);
    let out = output_within(&mut command, Duration::from_secs(10));
    refused(&out, &["--max-trace-series", "--trace"]);
}

#[test]
fn trace_rules_pass_promtool_and_their_unit_tests() {
    const TEST: &str = "trace_rules_pass_promtool_and_their_unit_tests";
    if !require_tools(TEST, &["promtool"]) {
        return;
    }
    let dir = deploy("prometheus");
    let promtool = |args: &[&str]| {
        let out = Command::new("promtool").args(args).current_dir(&dir).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(out.status.success(), "promtool {args:?}:\n{text}");
        text
    };
    assert!(promtool(&["check", "rules", "twscope-trace-rules.yml"]).contains("SUCCESS: 2 rules found"));
    assert!(promtool(&["test", "rules", "twscope-trace-rules.test.yml"]).contains("SUCCESS"));
    let rules = deploy_text("prometheus/twscope-trace-rules.yml");
    let tests = deploy_text("prometheus/twscope-trace-rules.test.yml");
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool test"
        );
    }
}
