//! `twscope trace` against real processes in network namespaces: the
//! applications of an incident are `twscope-churn` processes (a connection
//! per request, a pool at the same request rate, a client that fails), and
//! what each counted itself is the oracle for what the tracer reports.
//!
//! Needs root (CAP_BPF, CAP_PERFMON), tracefs and the tracepoints; every test
//! holds `heavy()`, so one tracer at a time is attached and "no program of
//! ours is loaded" is a real check.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use twscope_lab::{require_root, Netns};

use crate::util::{
    as_nobody, churn_bin, churn_counts, heavy, netns_with_ports, refused, spawn_churn, twscope_command, wait_for,
    Running,
};

/// The server the clients share, in `ns`, until dropped.
pub fn serve(ns: &Netns, targets: &[&str]) -> Running {
    let mut args = vec!["--netns", ns.name(), "--serve", "--max-seconds", "120"];
    for t in targets {
        args.extend(["--target", t]);
    }
    let server = Running(
        Command::new(churn_bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for t in targets {
        let port = t.rsplit(':').next().unwrap();
        wait_for(&format!("the server on {t}"), Duration::from_secs(10), || {
            let out = ns
                .command("ss")
                .args(["-Htln", "sport", &format!("= :{port}")])
                .output()
                .unwrap();
            (!out.stdout.is_empty()).then_some(())
        });
    }
    server
}

/// A namespace whose ephemeral range is `range`, with 198.18.0.1 on its
/// loopback and the shared server on `targets`.
fn namespace_serving(tag: &str, range: &str, targets: &[&str]) -> (Netns, Running) {
    let ns = netns_with_ports(tag, range);
    ns.add_address("198.18.0.1/32").unwrap();
    let server = serve(&ns, targets);
    (ns, server)
}

/// A running `twscope trace --json ARGS…`, attached once it said so.
pub struct Tracing {
    child: Option<Child>,
    stderr: mpsc::Receiver<String>,
}

impl Tracing {
    pub fn start(args: &[&str]) -> Tracing {
        let mut child = twscope_command()
            .arg("trace")
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("twscope trace said nothing within 20 s");
        assert!(
            first.starts_with("tracing for"),
            "twscope trace did not attach: {first}"
        );
        Tracing {
            child: Some(child),
            stderr: rx,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the end: (its JSON, its exit code).
    pub fn finish(mut self) -> (Value, i32) {
        let child = self.child.take().unwrap();
        let out = child.wait_with_output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let rest: Vec<String> = self.stderr.try_iter().collect();
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("twscope trace printed no JSON ({e}), exit {code}: {rest:?}"));
        (json, code)
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The report's process `pid`.
pub fn process(report: &Value, pid: u64) -> Option<&Value> {
    report["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid)
}

/// Sum of `field` over `pid`'s destinations with this port.
fn sum(report: &Value, pid: u64, port: u64, field: &str) -> u64 {
    process(report, pid).map_or(0, |p| {
        p["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["port"] == port)
            .map(|d| d[field].as_u64().unwrap_or(0))
            .sum()
    })
}

fn failures(report: &Value, pid: u64, port: u64, errno: &str) -> u64 {
    process(report, pid).map_or(0, |p| {
        p["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["port"] == port)
            .map(|d| d["failures"][errno].as_u64().unwrap_or(0))
            .sum()
    })
}

/// The tracer's programs the kernel holds now, from any process.
fn ours_loaded() -> Vec<String> {
    twscope_trace::loaded_programs()
}

#[test]
fn the_churner_is_named_and_the_pool_beside_it_is_not() {
    if !require_root("the_churner_is_named_and_the_pool_beside_it_is_not") {
        return;
    }
    let _heavy = heavy();
    // The kernel's default range: nothing runs out.
    let (ns, _server) = namespace_serving("trace-pool", "32768 60999", &["198.18.0.1:7100"]);
    let tracing = Tracing::start(&["--netns", ns.name(), "--duration", "8"]);
    // The same request rate, 150/s for 4 s: one opens a connection per
    // request, the other sends them over a pool of 4.
    let target = ["--netns", ns.name(), "--no-server", "--target", "198.18.0.1:7100"];
    let common = [
        "--rate",
        "150",
        "--count",
        "600",
        "--request",
        "--json",
        "--max-seconds",
        "20",
    ];
    let churner = spawn_churn(&[&target[..], &common[..]].concat());
    let pooled = spawn_churn(&[&target[..], &common[..], &["--pool", "4"]].concat());
    let churner = churn_counts(churner);
    let pooled = churn_counts(pooled);
    let (report, code) = tracing.finish();
    assert_eq!(churner["ok"], 600, "the churn itself: {churner}");
    assert_eq!(pooled["ok"], 600, "the pool itself: {pooled}");

    let churner_pid = churner["pid"].as_u64().unwrap();
    let pooled_pid = pooled["pid"].as_u64().unwrap();
    let p = process(&report, churner_pid).unwrap_or_else(|| panic!("churner {churner_pid} not reported: {report}"));
    assert_eq!(p["comm"], "twscope-churn");
    let connects = sum(&report, churner_pid, 7100, "connects");
    assert!(
        connects as f64 >= 0.99 * 600.0 && connects <= 600,
        "{connects} of the churner's 600 connects attributed to it"
    );
    assert!(
        p["pool_bypass"].as_bool().unwrap(),
        "the churner is a bypassed pool: {p}"
    );
    let d = &p["destinations"][0];
    assert_eq!(d["addr"], "198.18.0.1");
    let p50 = d["lifetime_ms"]["p50"].as_f64().unwrap();
    let p99 = d["lifetime_ms"]["p99"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 100.0 && p99 >= p50, "lifetimes {p50} / {p99} ms");
    assert!(d["time_wait_left"].as_u64().unwrap() as f64 >= 0.99 * 600.0, "{d}");
    assert!(d["max_concurrent"].as_u64().unwrap() <= 3, "{d}");

    // The pool opened its 4 connections once and kept them.
    assert_eq!(sum(&report, pooled_pid, 7100, "connects"), 4, "{report}");
    let flagged: Vec<u64> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pool_bypass"] == true)
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(flagged, vec![churner_pid], "only the churner is flagged");
    assert_eq!(code, 1, "a churning process is a warning");
    assert!(report["duration_s"].as_f64().unwrap() >= 7.9);
    assert!(ours_loaded().is_empty(), "programs left loaded: {:?}", ours_loaded());
}

#[test]
fn failed_connects_are_counted_as_the_failing_process_counted_them() {
    if !require_root("failed_connects_are_counted_as_the_failing_process_counted_them") {
        return;
    }
    let _heavy = heavy();
    // 10 ports: the churner's TIME_WAITs use them up within its first
    // connects, then every connect to that destination fails.
    let (ns, _server) = namespace_serving("trace-fail", "40000 40009", &["198.18.0.1:7101", "198.18.0.1:7102"]);
    let tracing = Tracing::start(&["--netns", ns.name(), "--duration", "7"]);
    let client = |port: &str, more: &[&str]| {
        let target = format!("198.18.0.1:{port}");
        spawn_churn(&[&["--netns", ns.name(), "--no-server", "--target", &target], more].concat())
    };
    // Non-blocking connects (socket2's connect with a timeout) at 200/s.
    let a = client("7101", &["--rate", "200", "--count", "600", "--request", "--json"]);
    // An innocent client of the same destination: 5 blocking connects/s.
    let b = client(
        "7101",
        &["--rate", "5", "--count", "15", "--request", "--blocking", "--json"],
    );
    // A blocking churner of its own destination.
    let c = client(
        "7102",
        &["--rate", "200", "--count", "600", "--request", "--blocking", "--json"],
    );
    let (a, b, c) = (churn_counts(a), churn_counts(b), churn_counts(c));
    let (report, code) = tracing.finish();

    for (who, counts, port) in [
        ("non-blocking", &a, 7101),
        ("innocent", &b, 7101),
        ("blocking", &c, 7102),
    ] {
        let pid = counts["pid"].as_u64().unwrap();
        let own = counts["addr_not_available"].as_u64().unwrap();
        assert!(own > 0, "the {who} client never ran out of ports: {counts}");
        assert_eq!(
            failures(&report, pid, port, "EADDRNOTAVAIL"),
            own,
            "{who} client (pid {pid}) counted {own} EADDRNOTAVAIL: {report}"
        );
        // Every attempt reached port selection, the failed ones too.
        assert_eq!(
            sum(&report, pid, port, "connects"),
            counts["attempts"].as_u64().unwrap(),
            "{who}"
        );
    }
    let innocent_pid = b["pid"].as_u64().unwrap();
    assert!(!process(&report, innocent_pid).unwrap()["pool_bypass"]
        .as_bool()
        .unwrap());
    let failing: Vec<u64> = report["verdict"]["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(failing.contains(&innocent_pid), "{failing:?}");
    // The innocent fails, but the ports went to the churners beside it.
    let evidence = report["verdict"]["evidence"].to_string();
    assert!(
        evidence.contains(&format!("(pid {innocent_pid}) fails, but the ports are spent by")),
        "{evidence}"
    );
    assert_eq!(code, 2, "EADDRNOTAVAIL is critical");
}

#[test]
fn a_process_in_a_pod_is_named_by_its_container_and_pod() {
    use twscope_lab::pods::{Driver, Pod, PodSpec, Qos, Runtime};
    if !require_root("a_process_in_a_pod_is_named_by_its_container_and_pod") {
        return;
    }
    let _heavy = heavy();
    let pod = Pod::new(PodSpec::kubernetes(
        "checkout-7d9f",
        Runtime::Containerd,
        Driver::Systemd,
        Qos::Burstable,
    ))
    .unwrap();
    // The app's process joins the pod as a runtime starts one: its network
    // and UTS namespaces, and its container's cgroup in every hierarchy.
    let cgroup = pod.cgroup_path();
    let mut join = String::new();
    for h in twscope_lab::pods::cgroup_hierarchies() {
        join.push_str(&format!(
            "echo $$ > '{}/{}/cgroup.procs' && ",
            h.display(),
            cgroup.trim_start_matches('/')
        ));
    }
    let tracing = Tracing::start(&["--container", "checkout-7d9f", "--duration", "5"]);
    let script = format!(
        "{join}exec nsenter -t {} -n -u {} --target 127.0.0.1:7200 --rate 100 --count 200 --request --json",
        pod.pid(),
        churn_bin().display()
    );
    let app = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let counts = churn_counts(app);
    let (report, _) = tracing.finish();
    assert_eq!(counts["ok"], 200, "{counts}");
    let pid = counts["pid"].as_u64().unwrap();
    let p = process(&report, pid).unwrap_or_else(|| panic!("pid {pid} not found by its pod name: {report}"));
    assert_eq!(p["netns"], pod.inode());
    assert_eq!(p["identity"]["pod_name"], "checkout-7d9f");
    assert_eq!(p["identity"]["pod_uid"], pod.uid().unwrap());
    assert_eq!(p["identity"]["container"]["id"], pod.container_id());
    assert_eq!(p["identity"]["container"]["runtime"], "containerd");
    assert_eq!(p["container"], "pod checkout-7d9f");
    assert_eq!(sum(&report, pid, 7200, "connects"), 200);
    // Only the pod's processes were kept.
    assert!(report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["identity"]["pod_name"] == "checkout-7d9f"));
}

#[test]
fn the_tracer_detaches_at_the_end_on_ctrl_c_and_on_error() {
    if !require_root("the_tracer_detaches_at_the_end_on_ctrl_c_and_on_error") {
        return;
    }
    let _heavy = heavy();
    assert!(
        ours_loaded().is_empty(),
        "a tracer is attached before the test: {:?}",
        ours_loaded()
    );
    // At --duration.
    let t = Tracing::start(&["--duration", "1"]);
    let (report, _) = t.finish();
    assert!(report["duration_s"].as_f64().unwrap() >= 0.99);
    assert!(ours_loaded().is_empty(), "left after --duration: {:?}", ours_loaded());

    // On Ctrl-C: the report of the time so far, then nothing attached.
    let t = Tracing::start(&["--duration", "600"]);
    assert_eq!(ours_loaded().len(), 3, "attached while running: {:?}", ours_loaded());
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(t.pid() as i32, libc::SIGINT) };
    let (report, _) = t.finish();
    assert!(report["duration_s"].as_f64().unwrap() < 60.0);
    assert!(ours_loaded().is_empty(), "left after SIGINT: {:?}", ours_loaded());

    // On an error half-way through attaching (a tracepoint this kernel lacks):
    // what was attached is detached before the error returns.
    let points = [
        ("inet_sock_set_state", "sock", "inet_sock_set_state"),
        ("sys_enter_connect", "syscalls", "sys_enter_connect"),
        ("sys_exit_connect", "syscalls", "no_such_tracepoint"),
    ];
    let error = twscope_trace::Tracer::attach_to(&points).unwrap_err();
    assert!(error.to_string().contains("syscalls:no_such_tracepoint"), "{error}");
    assert!(ours_loaded().is_empty(), "left after an error: {:?}", ours_loaded());
}

#[test]
fn without_privileges_trace_names_the_capabilities() {
    if !require_root("without_privileges_trace_names_the_capabilities") {
        return;
    }
    let _heavy = heavy();
    let out = as_nobody(&["--inh-caps=-all", "--bounding-set=-all"])
        .args(["trace", "--duration", "1"])
        .output()
        .unwrap();
    refused(&out, &["CAP_BPF", "CAP_PERFMON"]);
    assert!(ours_loaded().is_empty());
}

/// `unix_seconds attempts failed addr_not_available` lines of a churn's
/// `--progress` file.
fn progress(path: &std::path::Path) -> Vec<(f64, f64, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<f64> = l.split(' ').filter_map(|x| x.parse().ok()).collect();
            (f.len() == 4).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

/// The process's own attempts and failures per second between two wall
/// times, interpolated between its progress lines (100 ms apart).
fn own_rates(lines: &[(f64, f64, f64)], from: f64, to: f64) -> (f64, f64) {
    let at = |t: f64| -> (f64, f64) {
        let i = lines
            .iter()
            .position(|l| l.0 >= t)
            .unwrap_or_else(|| panic!("no progress after {t}"));
        assert!(i > 0, "no progress before {t}");
        let (a, b) = (lines[i - 1], lines[i]);
        let f = (t - a.0) / (b.0 - a.0).max(1e-9);
        (a.1 + f * (b.1 - a.1), a.2 + f * (b.2 - a.2))
    };
    let (a, b) = (at(from), at(to));
    ((b.0 - a.0) / (to - from), (b.1 - a.1) / (to - from))
}

#[test]
fn status_trace_shows_who_fails_right_now_at_the_rate_the_process_counted() {
    if !require_root("status_trace_shows_who_fails_right_now_at_the_rate_the_process_counted") {
        return;
    }
    let _heavy = heavy();
    // 200 ports at 100 connects/s: exhausted after 2 s, then nearly every
    // connect fails (3.3 ports/s come back as TIME_WAITs expire).
    let (ns, _server) = namespace_serving("trace-status", "40000 40199", &["198.18.0.1:7300"]);
    let dir = tempfile::tempdir().unwrap();
    let progress_file = dir.path().join("progress");
    let app = spawn_churn(&[
        "--netns",
        ns.name(),
        "--no-server",
        "--target",
        "198.18.0.1:7300",
        "--rate",
        "100",
        "--count",
        "3000",
        "--request",
        "--comm",
        "orders-api",
        "--max-seconds",
        "25",
        "--progress",
        progress_file.to_str().unwrap(),
    ]);
    let app_pid = u64::from(app.id());
    let _app = Running(app);
    wait_for("the outage", Duration::from_secs(15), || {
        progress(&progress_file).last().filter(|l| l.2 > 100.0).map(|_| ())
    });
    let out = twscope_command()
        .args(["status", "--json", "--netns", ns.name(), "--trace", "2"])
        .output()
        .unwrap();
    // The process goes on counting past the window's end.
    std::thread::sleep(Duration::from_millis(300));
    let (report, code) = crate::util::json_output(&out);
    assert_eq!(code, 2, "exhausted: critical");
    let dest = report["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["port"] == 7300)
        .unwrap_or_else(|| panic!("no destination :7300: {report}"));
    let who = dest["connecting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pid"] == app_pid)
        .unwrap_or_else(|| panic!("pid {app_pid} not among those connecting: {dest}"));
    assert_eq!(who["comm"], "orders-api");
    // Over the trace's own window, as the report dates it.
    let from = report["trace"]["started_unix_s"].as_f64().unwrap();
    let to = from + report["trace"]["duration_s"].as_f64().unwrap();
    let (attempts, failures) = own_rates(&progress(&progress_file), from, to);
    let ours = (
        who["connects_per_s"].as_f64().unwrap(),
        who["failures_per_s"].as_f64().unwrap(),
    );
    for (what, reported, counted) in [("attempts", ours.0, attempts), ("failures", ours.1, failures)] {
        assert!(
            (reported - counted).abs() <= 0.10 * counted,
            "{what}/s: status --trace says {reported:.1}, the process counted {counted:.1}"
        );
    }
    assert!(who["failures"]["EADDRNOTAVAIL"].as_u64().unwrap() > 0, "{who}");
    assert!(report["trace"]["verdict"]["failing"]
        .as_array()
        .unwrap()
        .contains(&app_pid.into()));
    assert!(report["trace"]["duration_s"].as_f64().unwrap() >= 1.99);

    // The doctor's snippets speak to the runtime of the process found (a
    // Rust binary), not to every language.
    let out = twscope_command()
        .args(["doctor", "--json", "--netns", ns.name(), "--trace", "1"])
        .output()
        .unwrap();
    let (doctor, _) = crate::util::json_output(&out);
    let kinds: std::collections::BTreeSet<String> = doctor["findings"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["remedies"].as_array().unwrap().iter())
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains("rust"), "{kinds:?}");
    for other in ["java", "go", "python", "node"] {
        assert!(
            !kinds.contains(other),
            "{other} snippet offered for a Rust process: {kinds:?}"
        );
    }
}

#[test]
fn refused_connects_are_counted_whether_blocking_or_not() {
    if !require_root("refused_connects_are_counted_whether_blocking_or_not") {
        return;
    }
    let _heavy = heavy();
    // Nothing listens: on loopback the RST arrives inside connect(), which a
    // non-blocking caller still sees return EINPROGRESS.
    let ns = Netns::new("trace-refused").unwrap();
    let tracing = Tracing::start(&["--netns", ns.name(), "--duration", "3"]);
    let client = |more: &[&str]| {
        spawn_churn(
            &[
                &[
                    "--netns",
                    ns.name(),
                    "--no-server",
                    "--target",
                    "127.0.0.1:7400",
                    "--count",
                    "20",
                    "--json",
                ],
                more,
            ]
            .concat(),
        )
    };
    let nonblocking = churn_counts(client(&[]));
    let blocking = churn_counts(client(&["--blocking"]));
    let (report, _) = tracing.finish();
    for counts in [&nonblocking, &blocking] {
        let pid = counts["pid"].as_u64().unwrap();
        assert_eq!(counts["failed"], 20, "{counts}");
        assert_eq!(failures(&report, pid, 7400, "ECONNREFUSED"), 20, "{counts} {report}");
        assert_eq!(sum(&report, pid, 7400, "connects"), 20);
    }
}
