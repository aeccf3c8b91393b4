//! `twscope serve` end to end: counts equal `ss`, `promtool check metrics` is
//! clean, concurrent scrapes share one dump, TLS and basic auth hold, and a
//! real Prometheus server scrapes it, fires the pressure alert and answers
//! every query of the shipped dashboard.
//!
//! Needs root, iproute2, curl, openssl and Prometheus (`prometheus`,
//! `promtool`); skips with a reason otherwise, unless `TWSCOPE_REQUIRE_ALL=1`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use twscope_lab::testing::{require_tools, self_signed_cert};
use twscope_lab::{churn, require_root, ChurnOptions, Netns, Server};

use crate::prometheus::{self, assert_exports_rule_metrics, dashboard, rules_without_for, top_panels, Prometheus};
use crate::util::{heavy, netns_with_ports, refused, samples, serve_with_config, ss, wait_for, Serve};

/// `curl ARGS URL` → (HTTP status, body); status 0 when no HTTP answer came.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// TIME_WAIT per peer `addr:port` from `ss` (IPv6 brackets dropped).
fn ss_time_wait(ns: &Netns) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in ss(ns, &["-Htan", "state", "time-wait"]).lines() {
        let peer = line.split_whitespace().nth(3).unwrap();
        let (addr, port) = peer.rsplit_once(':').unwrap();
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches("::ffff:");
        *counts
            .entry(format!("dst=\"{addr}\",dst_port=\"{port}\""))
            .or_insert(0.0) += 1.0;
    }
    counts
}

/// A namespace with TIME_WAIT towards three destinations (two IPv4, one IPv6),
/// its range narrowed so the first one is critical.
fn loaded_namespace(tag: &str) -> Netns {
    let ns = netns_with_ports(tag, "40000 40999");
    ns.add_address("198.18.0.1/32").unwrap();
    ns.add_address("2001:2::1/128").unwrap();
    ns.run(|| {
        for (target, count) in [
            ("198.18.0.1:7000", 900u64),
            ("198.18.0.1:7001", 150),
            ("[2001:2::1]:7002", 60),
        ] {
            let target: SocketAddr = target.parse().unwrap();
            let server = Server::start(target, 1).unwrap();
            let stats = churn(
                &[target],
                &ChurnOptions {
                    count,
                    max_duration: Duration::from_secs(20),
                    ..ChurnOptions::default()
                },
            );
            assert_eq!(stats.ok, count, "{target}: {:?}", stats.first_error);
            // Let the server close its ends before it goes.
            std::thread::sleep(Duration::from_millis(100));
            drop(server);
        }
    })
    .unwrap();
    ns
}

#[test]
fn metrics_equal_ss_and_pass_promtool() {
    if !require_root("metrics_equal_ss_and_pass_promtool")
        || !require_tools("metrics_equal_ss_and_pass_promtool", &["curl", "promtool"])
    {
        return;
    }
    let _heavy = heavy(); // loaded_namespace churns 1,110 connections as fast as they go
    let ns = loaded_namespace("serve");
    let server = Serve::start(&["--netns", ns.name(), "--max-destinations", "2"]);
    let addr = server.addr;
    let url = format!("http://{addr}/metrics");
    let (code, body) = curl(&[], &url);
    assert_eq!(code, 200, "{body}");

    // TIME_WAIT per state and per destination equal ss; the third destination
    // is folded into dst="other" by --max-destinations 2.
    let expected = ss_time_wait(&ns);
    let total: f64 = expected.values().sum();
    assert_eq!(total, 1110.0);
    assert_eq!(samples(&body, "twscope_sockets")["state=\"TIME_WAIT\""], total);
    let ours = samples(&body, "twscope_destination_time_wait_sockets");
    assert_eq!(
        ours["dst=\"198.18.0.1\",dst_port=\"7000\""],
        expected["dst=\"198.18.0.1\",dst_port=\"7000\""]
    );
    assert_eq!(
        ours["dst=\"198.18.0.1\",dst_port=\"7001\""],
        expected["dst=\"198.18.0.1\",dst_port=\"7001\""]
    );
    assert_eq!(
        ours["dst=\"other\",dst_port=\"\""],
        expected["dst=\"2001:2::1\",dst_port=\"7002\""]
    );
    assert_eq!(ours.len(), 3);
    assert_eq!(samples(&body, "twscope_destinations")[""], 3.0);
    assert_eq!(
        samples(&body, "twscope_finding")["id=\"destination-pressure\",severity=\"critical\""],
        1.0
    );

    // promtool's linter is clean.
    crate::prometheus::promtool_check_metrics(&body);

    // OpenMetrics on request; both say the same.
    let (code, om) = curl(&["-H", "Accept: application/openmetrics-text; version=1.0.0"], &url);
    assert_eq!(code, 200);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("twscope_kernel_active_opens_total "), "{om}");
    let content_type = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{content_type}",
            "-H",
            "Accept: application/openmetrics-text",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&content_type.stdout).starts_with("application/openmetrics-text"));

    // Every twscope metric the shipped rules use is exported;
    // twscope_netns_info exists only with --netns all (serve_all checks it).
    assert_exports_rule_metrics(&body, &["twscope_netns_info"], "serve");

    // The landing page, health and unknown paths.
    assert!(curl(&[], &format!("http://{addr}/")).1.contains("href=\"metrics\""));
    assert_eq!(curl(&[], &format!("http://{addr}/healthz")), (200, "ok\n".to_string()));
    assert_eq!(curl(&[], &format!("http://{addr}/nope")).0, 404);
}

#[test]
fn concurrent_scrapes_share_one_dump() {
    if !require_root("concurrent_scrapes_share_one_dump")
        || !require_tools("concurrent_scrapes_share_one_dump", &["curl"])
    {
        return;
    }
    let _heavy = heavy();
    let ns = loaded_namespace("shared");
    let server = Serve::start(&["--netns", ns.name(), "--min-interval", "30"]);
    let addr = server.addr;
    let url = format!("http://{addr}/metrics");
    let bodies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20).map(|_| s.spawn(|| curl(&[], &url))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .map(|(code, body)| {
                assert_eq!(code, 200);
                body
            })
            .collect()
    });
    for body in &bodies {
        assert_eq!(
            samples(body, "twscope_dumps_total")[""],
            1.0,
            "20 concurrent scrapes, one dump"
        );
    }
}

#[test]
fn tls_and_basic_auth() {
    if !require_tools("tls_and_basic_auth", &["curl", "openssl"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("twscope-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, _) = self_signed_cert(&dir);
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: '{hash}'\n")).unwrap();
    let server = Serve::start(&["--web.config.file", web.to_str().unwrap()]);
    let addr = server.addr;
    let url = format!("https://{addr}/metrics");
    let ca = ["--cacert", cert.to_str().unwrap()];
    let (code, body) = curl(&[&ca[..], &["-u", "prometheus:s3cret"]].concat(), &url);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("twscope_sockets{state=\"TIME_WAIT\"}"));
    assert_eq!(
        curl(&[&ca[..], &["-u", "prometheus:wrong"]].concat(), &url).0,
        401,
        "wrong password"
    );
    assert_eq!(
        curl(&[&ca[..], &["-u", "mallory:s3cret"]].concat(), &url).0,
        401,
        "unknown user"
    );
    assert_eq!(curl(&ca, &url).0, 401, "no credentials");
    let (code, _) = curl(&ca, &format!("https://{addr}/healthz"));
    assert_eq!(code, 200, "health needs no credentials");
    // Plain HTTP to the TLS port gets no HTTP answer; an untrusted cert is refused.
    assert_eq!(
        curl(&["-u", "prometheus:s3cret"], &format!("http://{addr}/metrics")).0,
        0
    );
    assert_eq!(
        curl(&["-u", "prometheus:s3cret"], &url).0,
        0,
        "curl must refuse the self-signed cert without --cacert"
    );

    // A broken config stops the start with one clear line.
    for (text, mentions) in [
        ("tls_server_config:\n  cert_file: tls.crt\n  key_file: missing.key\n", "missing.key"),
        ("basic_auth_users:\n  prometheus: plaintext\n", "not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: RequireAndVerifyClientCert\n", "client_auth_type"),
    ] {
        std::fs::write(dir.join("bad.yml"), text).unwrap();
        refused(&serve_with_config(&dir.join("bad.yml")), &[mentions]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_real_prometheus_scrapes_alerts_and_feeds_the_dashboard() {
    let test = "a_real_prometheus_scrapes_alerts_and_feeds_the_dashboard";
    if !require_root(test) || !prometheus::available(test) {
        return;
    }
    let _heavy = heavy();
    let ns = loaded_namespace("prom");
    let server = Serve::start(&["--netns", ns.name(), "--min-interval", "0.5"]);
    // The shipped rules, with every `for:` cut to 0s so alerts fire within the test.
    let prometheus = Prometheus::start(&[server.addr], &[&rules_without_for()]);

    // The per-destination series arrive and equal ss.
    let series = wait_for("twscope series in Prometheus", Duration::from_secs(60), || {
        let r = prometheus.query("twscope_destination_time_wait_sockets");
        (r.len() == 3).then_some(r)
    });
    let expected = ss_time_wait(&ns);
    for s in &series {
        let key = format!(
            "dst=\"{}\",dst_port=\"{}\"",
            s["metric"]["dst"].as_str().unwrap(),
            s["metric"]["dst_port"].as_str().unwrap()
        );
        let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert_eq!(Some(&value), expected.get(&key), "{key}");
    }

    // The pressure alert fires for the 90% destination, and only for it.
    let alerts = wait_for("TwscopeEphemeralPortsLow to fire", Duration::from_secs(30), || {
        let r = prometheus.query("ALERTS{alertname=\"TwscopeEphemeralPortsLow\",alertstate=\"firing\"}");
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["metric"]["dst"], "198.18.0.1");
    assert_eq!(alerts[0]["metric"]["dst_port"], "7000");

    // Every query of the dashboard returns data (its variables filled in).
    std::thread::sleep(Duration::from_secs(3)); // a few samples for rate()
    let values = [("$instance", ".*"), ("$__rate_interval", "10s")];
    let queries = prometheus.check_panel_queries(&top_panels(&dashboard()), &values, |_, _, _| {});
    assert!(queries >= 10);
}
