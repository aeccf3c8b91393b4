//! `twscope doctor` and `twscope tune` against real namespaces: a sick one
//! gets exactly the findings it should, `tune --apply` cures the system part,
//! and a second `tune` proposes nothing; a healthy one gets a clean bill.
//!
//! Needs root and iproute2; skips with a reason otherwise, unless
//! `TWSCOPE_REQUIRE_ALL=1` (CI) makes that a failure.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use twscope_lab::{churn, hold, require_root, ChurnOptions, Netns, Server};

use crate::util::{as_nobody, heavy, json_of, netns_with_ports, refused, stdout, twscope};

/// The finding `id` of a doctor report.
fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

fn ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

const SYSTEM_IDS: [&str; 4] = [
    "port-range-narrow",
    "reserved-ports",
    "listeners-in-range",
    "tw-reuse-off",
];

#[test]
fn doctor_finds_a_sick_namespace_and_tune_cures_it() {
    if !require_root("doctor_finds_a_sick_namespace_and_tune_cures_it") {
        return;
    }
    let _heavy = heavy(); // 700 connections as fast as they go
    let ns = netns_with_ports("doctor", "40000 40999");
    ns.add_address("198.18.0.1/32").unwrap();
    ns.set_sysctl("net.ipv4.ip_local_reserved_ports", "40000-40199")
        .unwrap();
    // Netns::new leaves tcp_tw_reuse=0.
    let db: SocketAddr = "198.18.0.1:7000".parse().unwrap();
    let inside: SocketAddr = "0.0.0.0:40500".parse().unwrap();
    let servers = ns
        .run(move || {
            let servers = (Server::start(db, 1).unwrap(), Server::start(inside, 1).unwrap());
            // 700 of the 799 ports left: critical, and a pool bypass (nothing held open).
            let stats = churn(
                &[db],
                &ChurnOptions {
                    count: 700,
                    max_duration: Duration::from_secs(20),
                    ..ChurnOptions::default()
                },
            );
            assert_eq!((stats.ok, stats.failed), (700, 0));
            servers
        })
        .unwrap();

    let (report, code) = json_of(&["doctor", "--json", "--netns", ns.name()]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["worst"], "critical");
    assert_eq!(
        ids(&report),
        [
            "destination-pressure",
            "listeners-in-range",
            "pool-bypass-suspected",
            "port-range-narrow",
            "reserved-ports",
            "tw-reuse-off"
        ]
    );
    let pressure = finding(&report, "destination-pressure");
    assert_eq!(pressure["severity"], "critical");
    assert_eq!(pressure["evidence"]["in_use"], 700);
    assert_eq!(pressure["evidence"]["available"], 799); // 1,000 − 200 reserved − the listener
    let listener = finding(&report, "listeners-in-range");
    assert_eq!(listener["evidence"]["port"], 40500);

    // JSON carries every remedy, typed kinds as strings: the sysctl forms and
    // one snippet per language.
    let kinds: Vec<&str> = pressure["remedies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "java",
            "go",
            "python",
            "node",
            "rust",
            "sysctl",
            "sysctl.d",
            "kubernetes"
        ]
    );
    // tw-reuse-off names every destination its evidence counts.
    let reuse = finding(&report, "tw-reuse-off");
    assert_eq!(reuse["evidence"]["destinations_under_pressure"], 1);
    assert_eq!(
        reuse["evidence"]["destinations"],
        serde_json::json!(["198.18.0.1:7000"])
    );
    assert_eq!(
        reuse["title"],
        "tcp_tw_reuse=0 while 198.18.0.1:7000 is short of source ports"
    );
    // The range's ceiling in prose is the model's: 799 ports over the hold time.
    let narrow = finding(&report, "port-range-narrow");
    let ceiling = narrow["evidence"]["max_rate_per_s"].as_f64().unwrap();
    assert!(
        (ceiling - pressure["evidence"]["max_rate_per_s"].as_f64().unwrap()).abs() < 0.06,
        "{narrow:#} vs {pressure:#}"
    );
    assert!(
        narrow["explanation"]
            .as_str()
            .unwrap()
            .contains(&format!("at most {} new connections/s", ceiling.round())),
        "{narrow:#}"
    );

    // The text form, grouped like the TIME_WAIT checklist: findings first,
    // the application snippets behind --remedies.
    let text = stdout(&twscope(&["doctor", "--netns", ns.name()]));
    for heading in [
        "Diagnosis",
        "Application fixes",
        "System tuning",
        "Monitoring",
        "sysctl -w net.ipv4.tcp_tw_reuse=\"1\"",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(
        !text.contains("HikariConfig") && !text.contains("How to reuse connections"),
        "{text}"
    );
    assert_eq!(
        text.lines().last(),
        Some("Connection-reuse snippets for Java, Go, Python, Node.js and Rust: twscope doctor --remedies"),
        "{text}"
    );
    let full = stdout(&twscope(&["doctor", "--remedies", "--netns", ns.name()]));
    assert!(full.contains("How to reuse connections"), "{full}");
    assert!(
        full.contains("session.mount(\"https://\", adapter)") && full.contains("psycopg_pool"),
        "{full}"
    );
    assert!(!full.contains("twscope doctor --remedies"), "{full}");

    // tune proposes, changes nothing by default…
    let (proposal, _) = json_of(&["tune", "--json", "--netns", ns.name()]);
    let keys: Vec<&str> = proposal["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "net.ipv4.ip_local_reserved_ports",
            "net.ipv4.ip_local_port_range",
            "net.ipv4.tcp_tw_reuse"
        ]
    );
    assert_eq!(proposal["changes"][0]["proposed"], "7000,40000-40199,40500");
    assert_eq!(
        ns.sysctl("net.ipv4.tcp_tw_reuse").unwrap(),
        "0",
        "tune without --apply changed something"
    );

    // …--apply writes /proc/sys of the namespace (and only of it)…
    let host_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let (applied, _) = json_of(&["tune", "--json", "--apply", "--netns", ns.name()]);
    assert_eq!(applied["applied"], true);
    assert_eq!(
        ns.sysctl("net.ipv4.ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1024", "65535"]
    );
    assert_eq!(
        ns.sysctl("net.ipv4.ip_local_reserved_ports").unwrap(),
        "7000,40000-40199,40500"
    );
    assert_eq!(ns.sysctl("net.ipv4.tcp_tw_reuse").unwrap(), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap(),
        host_range
    );

    // …after which the system findings are gone and a second tune proposes nothing.
    let (report, _) = json_of(&["doctor", "--json", "--netns", ns.name()]);
    for id in SYSTEM_IDS.iter().chain(&["destination-pressure"]) {
        assert!(
            !ids(&report).contains(&id.to_string()),
            "{id} still reported: {report:#}"
        );
    }
    let (again, _) = json_of(&["tune", "--json", "--netns", ns.name()]);
    assert_eq!(again["changes"].as_array().unwrap().len(), 0, "{again:#}");
    let text = stdout(&twscope(&["tune", "--netns", ns.name()]));
    assert!(text.contains("Nothing to change"), "{text}");
    drop(servers);
}

#[test]
fn a_healthy_namespace_gets_a_clean_bill() {
    if !require_root("a_healthy_namespace_gets_a_clean_bill") {
        return;
    }
    let ns = Netns::new("healthy").unwrap();
    ns.set_sysctl("net.ipv4.tcp_tw_reuse", "2").unwrap(); // the kernel default
    let api: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    // A service using a pool: a few connections held open, a little churn.
    let kept = ns
        .run(move || {
            let server = Server::start(api, 1).unwrap();
            let pool = hold(&[api], 10).unwrap();
            churn(
                &[api],
                &ChurnOptions {
                    count: 20,
                    ..ChurnOptions::default()
                },
            );
            (server, pool)
        })
        .unwrap();
    let (report, code) = json_of(&["doctor", "--json", "--netns", ns.name()]);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["severity"] == "info"),
        "{report:#}"
    );
    let (tune, _) = json_of(&["tune", "--json", "--netns", ns.name()]);
    assert_eq!(tune["changes"].as_array().unwrap().len(), 0);
    drop(kept);
}

#[test]
fn tune_persists_atomically_and_needs_root_to_apply() {
    if !require_root("tune_persists_atomically_and_needs_root_to_apply") {
        return;
    }
    let ns = netns_with_ports("persist", "40000 40999");
    let dir = std::env::temp_dir().join(format!("twscope-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("90-twscope.conf");
    let (out, _) = json_of(&[
        "tune",
        "--json",
        "--persist",
        file.to_str().unwrap(),
        "--netns",
        ns.name(),
    ]);
    assert_eq!(out["applied"], false);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("net.ipv4.ip_local_port_range = 1024 65535\n"), "{text}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "a temporary file was left behind"
    );
    // The same in Kubernetes terms.
    let k8s = stdout(&twscope(&["tune", "--k8s", "--netns", ns.name()]));
    assert!(
        k8s.contains("- name: net.ipv4.ip_local_port_range\n      value: \"1024 65535\""),
        "{k8s}"
    );
    // A directory that does not exist: one clear line, exit 3, nothing written.
    refused(
        &twscope(&["tune", "--persist", "/nonexistent/dir/x.conf", "--netns", ns.name()]),
        &["/nonexistent/dir/x.conf"],
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // --apply without CAP_NET_ADMIN: a non-root user who may enter the
    // namespace (CAP_SYS_ADMIN) but not write its sysctls gets one clear line.
    let out = as_nobody(&["--inh-caps=+sys_admin", "--ambient-caps=+sys_admin"])
        .args(["tune", "--apply", "--netns", ns.name()])
        .output()
        .unwrap();
    refused(&out, &["needs root (CAP_NET_ADMIN"]);
    assert_eq!(
        ns.sysctl("net.ipv4.ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["40000", "40999"]
    );
}
