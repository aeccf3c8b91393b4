//! The command line as a new user meets it: help, bad input, privileges.
//! These run the real binary against the real kernel of this host.

use std::process::{Output, Stdio};

use crate::util::{json_output, refused, stderr, stdout, twscope, twscope_command};

/// One line on stderr, exit 3, no panic or backtrace.
fn assert_clean_error(out: &Output, mentions: &str) {
    let err = refused(out, &[mentions]);
    assert!(err.starts_with("twscope: error: "), "{err:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout after an error");
}

#[test]
fn help_explains_every_status_option() {
    for args in [&["--help"][..], &["status", "--help"][..]] {
        let out = twscope(args);
        assert_eq!(out.status.code(), Some(0));
        let help = stdout(&out);
        for option in [
            "--json",
            "--top",
            "--dest",
            "--netns",
            "--warning",
            "--critical",
            "--window",
            "Exit codes",
        ] {
            assert!(help.contains(option), "{args:?} help lacks {option}:\n{help}");
        }
    }
    let out = twscope(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("twscope "));
}

#[test]
fn bad_options_give_one_line_and_exit_3() {
    assert_clean_error(&twscope(&["--bogus"]), "--bogus");
    assert_clean_error(&twscope(&["status", "--top", "many"]), "--top");
    assert_clean_error(&twscope(&["status", "--dest", "db.internal"]), "ADDR:PORT");
    assert_clean_error(&twscope(&["status", "--window", "61"]), "--window");
    assert_clean_error(&twscope(&["status", "--warning", "120"]), "percentage");
    assert_clean_error(
        &twscope(&["status", "--warning", "90", "--critical", "80"]),
        "must not exceed",
    );
    assert_clean_error(&twscope(&["frobnicate"]), "frobnicate");
}

#[test]
fn an_unknown_namespace_says_how_to_find_one() {
    assert_clean_error(&twscope(&["status", "--netns", "twscope-no-such-ns"]), "ip netns list");
    assert_clean_error(
        &twscope(&["status", "--netns", "/proc/self/status"]),
        "/proc/self/status",
    );
}

#[test]
fn the_default_command_is_status_and_exit_code_follows_the_verdict() {
    let (json, code) = json_output(&twscope(&["--json", "--top", "0"]));
    let expected = match json["verdict"]["severity"].as_str().unwrap() {
        "ok" => 0,
        "warning" => 1,
        "critical" => 2,
        other => panic!("unknown severity {other}"),
    };
    assert_eq!(code, expected);
    assert_eq!(json["states"].as_object().unwrap().len(), 11);
    let text = stdout(&twscope(&[]));
    assert!(text.starts_with("twscope status · host "), "{text}");
    assert!(!text.contains('\x1b'), "NO_COLOR must give plain text");
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut child = twscope_command()
        .args(["--json", "--top", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, like `| head -0`
    let out = child.wait_with_output().unwrap();
    assert!(out.status.code().unwrap() <= 2, "{:?}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

/// `twscope plan` with every host setting given, so the answer depends on
/// nothing but the arguments.
fn plan(args: &[&str]) -> (serde_json::Value, i32) {
    let out = twscope(
        &[
            &[
                "plan",
                "--json",
                "--reserved",
                "",
                "--tw-reuse",
                "off",
                "--reuse-delay-ms",
                "1000",
            ][..],
            args,
        ]
        .concat(),
    );
    json_output(&out)
}

#[test]
fn plan_gives_the_posts_numbers() {
    // "500 connections per second … 30,000 sockets needed > 28,231 → EXHAUSTION"
    let (json, code) = plan(&["--rate", "500", "--range", "32768-60999"]);
    let p = &json["plan"];
    assert_eq!(
        (p["ports_needed"].as_u64(), p["ports_available"].as_u64()),
        (Some(30_000), Some(28_232))
    );
    assert!((p["max_rate_per_s"].as_f64().unwrap() - 470.53).abs() < 0.01);
    assert!((p["exhaustion_s"].as_f64().unwrap() - 56.464).abs() < 0.001);
    assert_eq!(code, 2);
    // "1000 req/sec × 3 outbound calls = 3000 connections/sec … 180,000 sockets needed"
    let (json, _) = plan(&["--rps", "1000", "--calls-per-request", "3", "--range", "32768-60999"]);
    assert_eq!(json["plan"]["ports_needed"], 180_000);
    assert_eq!(json["workload"]["rate_per_s"], 3000.0);
    // Sustainable: exit 0, no remedies, no exhaustion.
    let (json, code) = plan(&["--rate", "100", "--range", "32768-60999"]);
    assert_eq!(code, 0);
    assert!(json["plan"]["exhaustion_s"].is_null());
    assert_eq!(json["plan"]["remedies"].as_array().unwrap().len(), 0);
    // Two source addresses double the budget and the time to exhaustion.
    let (json, _) = plan(&["--rate", "50", "--range", "40000-40999", "--source-ips", "2"]);
    assert_eq!(json["plan"]["exhaustion_s"], 40.0);
}

#[test]
fn plan_refuses_absurd_numbers_in_one_line() {
    // These used to overflow (a panic in debug, a wrapped answer in release)
    // or, for --time-wait 1e12, loop for hours.
    assert_clean_error(
        &twscope(&["plan", "--rate", "1e18", "--destinations", "2"]),
        "100,000,000",
    );
    assert_clean_error(&twscope(&["plan", "--rate", "1e300"]), "100,000,000");
    assert_clean_error(
        &twscope(&["plan", "--rps", "1e300", "--calls-per-request", "1000"]),
        "rate",
    );
    assert_clean_error(
        &twscope(&["plan", "--rate", "500", "--time-wait", "1e12"]),
        "--time-wait",
    );
    assert_clean_error(
        &twscope(&["plan", "--rate", "500", "--time-wait", "inf"]),
        "--time-wait",
    );
    assert_clean_error(
        &twscope(&["plan", "--rate", "500", "--latency-ms", "1e300"]),
        "--latency-ms",
    );
    // The limits themselves still plan, with exact numbers.
    let (json, code) = plan(&[
        "--rate",
        "1e8",
        "--time-wait",
        "3600",
        "--latency-ms",
        "3600000",
        "--range",
        "32768-60999",
    ]);
    assert_eq!(code, 2);
    assert_eq!(json["plan"]["ports_needed"], 360_000_000_000u64);
    assert_eq!(json["plan"]["headroom"], 28_232 - 360_000_000_000i64);
}

#[test]
fn plan_text_and_errors() {
    let text = stdout(&twscope(&[
        "plan",
        "--rate",
        "500",
        "--range",
        "32768-60999",
        "--reserved",
        "",
        "--tw-reuse",
        "off",
    ]));
    assert!(
        text.contains("30,000") && text.contains("28,232") && text.contains("56 s"),
        "{text}"
    );
    assert!(text.contains("CRITICAL: not sustainable"), "{text}");
    assert!(text.contains("net.ipv4.tcp_tw_reuse = 1"), "{text}");
    assert_clean_error(&twscope(&["plan"]), "--rate");
    assert_clean_error(&twscope(&["plan", "--rate", "5", "--range", "9000-8000"]), "LOW-HIGH");
    assert_clean_error(&twscope(&["plan", "--rate", "-5"]), "rate");
    assert_clean_error(&twscope(&["plan", "--rate", "5", "--reserved", "80-x"]), "not a port");
    let help = stdout(&twscope(&["plan", "--help"]));
    for option in [
        "--rate",
        "--rps",
        "--calls-per-request",
        "--destinations",
        "--range",
        "--reserved",
        "--source-ips",
        "--tw-reuse",
        "--reuse-delay-ms",
        "--time-wait",
        "--latency-ms",
        "--json",
    ] {
        assert!(help.contains(option), "plan help lacks {option}");
    }
    let help = stdout(&twscope(&["lab", "--help"]));
    for option in [
        "--mode",
        "--fix",
        "--rate",
        "--duration",
        "--ports",
        "--pool-size",
        "--json",
        "per-request",
        "pooled",
    ] {
        assert!(help.contains(option), "lab help lacks {option}");
    }
}
