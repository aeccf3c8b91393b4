//! `twscope lab` end to end: the real binary builds its namespaces, churns
//! over veth and samples its own census; the model's predicted onset must meet
//! the first EADDRNOTAVAIL the kernel really returns, and every fix must hold.
//!
//! Needs root and iproute2; skips with a reason otherwise, unless
//! `TWSCOPE_REQUIRE_ALL=1` (CI) makes that a failure.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;
use twscope_lab::netns::NETNS_DIR;
use twscope_lab::{require_root, Netns, NetnsName};

use crate::util::{heavy, json_output, poll, refused, side_by_side, stderr, stdout, twscope, twscope_command};

/// Every `twscope lab` run first removes the namespaces of killed runs, so a
/// test that kills one and looks at what it left runs alone: it takes this
/// for writing, every other run of the binary for reading. (The tests that
/// run labs also take `util::heavy()`, always before this lock.)
static KILLING: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    KILLING.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    KILLING.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `twscope lab --json ARGS…` and returns its report and exit code.
fn lab(args: &[&str]) -> (Value, i32) {
    let _running = shared();
    let (report, code) = json_output(&twscope(&[&["lab", "--json"][..], args].concat()));
    for key in [
        "mode",
        "rate",
        "ports",
        "requests_ok",
        "requests_failed",
        "predicted_onset_s",
        "observed_onset_s",
    ] {
        assert!(report.get(key).is_some(), "report lacks {key}: {report}");
    }
    (report, code)
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

/// No namespace of ours is left behind.
fn assert_cleaned_up() {
    let names = netns_list();
    // Other tests run concurrently: only a lab namespace of a finished run counts.
    assert!(
        !names.iter().any(|n| n.starts_with("twscope-lab-") && !is_running(n)),
        "left behind:\n{names:?}"
    );
}

/// Whether the process that named namespace `name`
/// (twscope-lab-ROLE-PID-START-N) runs.
fn is_running(name: &str) -> bool {
    NetnsName::parse(name).is_some_and(|n| n.owner_alive())
}

/// The names `ip netns list` shows.
fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(out.status.success(), "ip netns list: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Starts `twscope lab` (text output, discarded) and waits until both of its
/// namespaces exist; returns the process and their names.
fn start_lab(args: &[&str]) -> (Child, Vec<String>) {
    let mut child = twscope_command()
        .arg("lab")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let appeared = poll(Duration::from_secs(15), Duration::from_millis(20), || {
        let mut ours: Vec<String> = netns_list()
            .into_iter()
            .filter(|name| NetnsName::parse(name).is_some_and(|n| n.pid == child.id() && n.tag.starts_with("lab-")))
            .collect();
        if ours.len() == 2 {
            ours.sort();
            return Some(ours);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("twscope lab exited ({status}) before its namespaces appeared");
        }
        None
    });
    match appeared {
        Some(ours) => (child, ours),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "twscope lab's namespaces did not appear within 15 s: {:?}",
                netns_list()
            );
        }
    }
}

/// `kill -9 PID`, reaped: no drop runs, so the namespaces stay.
fn kill_9(mut child: Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the child is ours and unreaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {pid}");
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
}

/// A namespace the test made with a name that is not twscope's format;
/// removed on drop.
struct Foreign(String);

impl Foreign {
    fn new(name: String) -> Foreign {
        let out = Command::new("ip").args(["netns", "add", &name]).output().unwrap();
        assert!(out.status.success(), "ip netns add {name}: {}", stderr(&out));
        Foreign(name)
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Namespaces of a killed run, and two that must survive any cleanup: one of
/// ours whose owner (this test process) is alive, one whose name is not ours.
fn killed_run_and_bystanders(test: &str) -> (Vec<String>, Netns, Foreign) {
    let alive = Netns::new("bystander").unwrap();
    let foreign = Foreign::new(format!("twscope-{test}-{}", std::process::id()));
    let (child, killed) = start_lab(&["--duration", "30", "--rate", "50"]);
    kill_9(child);
    let after = netns_list();
    for name in &killed {
        assert!(after.contains(name), "{name} vanished without a cleanup: {after:?}");
    }
    let settled = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        killed.iter().all(|name| settled(name)).then_some(())
    });
    assert!(settled.is_some(), "{killed:?} still in use 10 s after the kill");
    (killed, alive, foreign)
}

/// Whether the namespace `name` is as a killed lab leaves it for good: the
/// `ip netns add` that makes it has mounted it (an nsfs file, no longer the
/// empty file it starts as) and no process is inside it. The commands a lab
/// runs (`ip netns add`, `ip -n …`) outlive a `kill -9` of the lab for a
/// moment, and a namespace a process is inside is, by design, no leftover.
fn settled(name: &str) -> bool {
    let Ok(ns) = std::fs::metadata(Path::new(NETNS_DIR).join(name)) else {
        return false;
    };
    if ns.dev() != std::fs::metadata("/proc/self/ns/net").unwrap().dev() {
        return false;
    }
    let inside =
        |task: &Path| std::fs::metadata(task.join("ns/net")).is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()));
    let tasks = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .flat_map(|p| std::fs::read_dir(p.path().join("task")).into_iter().flatten().flatten());
    !tasks.map(|t| t.path()).any(|t| inside(&t))
}

fn assert_bystanders_untouched(alive: &Netns, foreign: &Foreign) {
    let after = netns_list();
    assert!(
        after.iter().any(|n| n == alive.name()),
        "{} (live owner) was removed: {after:?}",
        alive.name()
    );
    assert!(
        after.contains(&foreign.0),
        "{} (not our name) was removed: {after:?}",
        foreign.0
    );
}

#[test]
fn cleanup_removes_what_a_killed_lab_left_and_nothing_else() {
    if !require_root("cleanup_removes_what_a_killed_lab_left_and_nothing_else") {
        return;
    }
    let _heavy = heavy();
    let _alone = exclusive();
    let (killed, alive, foreign) = killed_run_and_bystanders("cleanup");

    let out = twscope(&["lab", "--cleanup", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let removed: Vec<String> = serde_json::from_slice(&out.stdout).expect("a JSON list of names");
    for name in &killed {
        assert!(removed.contains(name), "{name} not in {removed:?}");
    }
    assert!(
        !removed.iter().any(|n| n == alive.name() || *n == foreign.0),
        "{removed:?}"
    );
    let after = netns_list();
    assert!(!killed.iter().any(|n| after.contains(n)), "still there: {after:?}");
    assert_bystanders_untouched(&alive, &foreign);

    // Nothing left: said in words, exit 0.
    let out = twscope(&["lab", "--cleanup"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "nothing to clean up\n");
    assert_bystanders_untouched(&alive, &foreign);
}

#[test]
fn a_new_lab_removes_what_a_killed_one_left() {
    if !require_root("a_new_lab_removes_what_a_killed_one_left") {
        return;
    }
    let _heavy = heavy();
    let _alone = exclusive();
    let (killed, alive, foreign) = killed_run_and_bystanders("next-run");

    let out = twscope(&["lab", "--json", "--duration", "1", "--rate", "20"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let (report, _) = json_output(&out);
    assert_eq!(report["requests_ok"], 20, "{report}");
    // One line on stderr says what was removed.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("twscope lab: removed "), "{err}");
    for name in &killed {
        assert!(err.contains(name.as_str()), "{err} does not name {name}");
    }
    let after = netns_list();
    assert!(!killed.iter().any(|n| after.contains(n)), "still there: {after:?}");
    assert_bystanders_untouched(&alive, &foreign);
}

/// Every lab run of this module, each a 50/s client in a pair of namespaces
/// of its own, side by side under one `heavy()`: the suite waits for the
/// longest (45 s) instead of the sum of them (2 minutes). Each part asserts
/// on its own run's report, as a test of its own would.
#[test]
fn the_lab_reproduces_the_outage_and_every_fix_holds() {
    if !require_root("the_lab_reproduces_the_outage_and_every_fix_holds") {
        return;
    }
    let _heavy = heavy();
    side_by_side(&[
        ("source-ips=2", two_source_addresses_run_out_twice_as_late),
        ("per-request", per_request_runs_out_when_the_model_says),
        ("tw-reuse", tw_reuse_fixes_the_outage),
        ("pooled", a_pool_never_runs_out),
        ("wide-range", a_wide_range_fixes_the_outage),
        ("linger0", linger0_leaves_no_time_wait_but_resets_the_server),
    ]);
}

fn per_request_runs_out_when_the_model_says() {
    // 50/s into 1,000 ports: the model says 20 s.
    let (r, code) = lab(&[
        "--mode",
        "per-request",
        "--rate",
        "50",
        "--ports",
        "1000",
        "--duration",
        "25",
    ]);
    assert_eq!(r["mode"], "per-request");
    assert_eq!(r["ports"], 1000);
    assert_eq!(f64_of(&r["predicted_onset_s"]), 20.0);
    let observed = f64_of(&r["observed_onset_s"]);
    assert!(
        (observed - 20.0).abs() <= 2.0,
        "first EADDRNOTAVAIL at {observed} s, predicted 20 s"
    );
    assert_eq!(code, 2);
    // Every port was used exactly once before the first failure.
    let ok = u64_of(&r["requests_ok"]);
    assert!((995..=1000).contains(&ok), "{ok} requests succeeded");
    assert!(u64_of(&r["addr_not_available"]) > 100);
    // The census's close rate, mid-churn with a full 10 s window, is the churn's.
    let tick = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["t_s"] == 15)
        .expect("a tick at 15 s");
    let rate = f64_of(&tick["close_rate_per_s"]);
    assert!(
        (rate - 50.0).abs() <= 5.0,
        "census close rate {rate}/s during a 50/s churn"
    );
    let tw = u64_of(&tick["time_wait"]);
    assert!((740..=760).contains(&tw), "{tw} TIME_WAIT at 15 s");
    // … and it forecast the exhaustion: ~5 s left at 15 s.
    let eta = f64_of(&tick["exhaustion_eta_s"]);
    assert!((eta - 5.0).abs() <= 1.0, "eta {eta} s at 15 s");
    // While connects fail, the timeline says what the client attempted
    // (~50/s) beside the census's close rate, which counts only the
    // connections that got a port.
    let failing = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["t_s"] == 23)
        .expect("a tick at 23 s, after the onset");
    assert!(u64_of(&failing["requests_failed"]) > 0, "{failing}");
    let attempts = f64_of(&failing["attempts_per_s"]);
    assert!((attempts - 50.0).abs() <= 5.0, "attempts {attempts}/s at 23 s");
    assert!(f64_of(&failing["close_rate_per_s"]) < attempts, "{failing}");
    assert!(r["verdict"].as_str().unwrap().starts_with("OUTAGE REPRODUCED"));
    assert_cleaned_up();
}

fn a_pool_never_runs_out() {
    let (r, code) = lab(&[
        "--mode",
        "pooled",
        "--rate",
        "50",
        "--duration",
        "12",
        "--pool-size",
        "10",
    ]);
    assert_eq!(r["mode"], "pooled");
    assert_eq!((u64_of(&r["requests_failed"]), code), (0, 0));
    assert!(u64_of(&r["requests_ok"]) >= 590, "{r}");
    assert!(r["predicted_onset_s"].is_null() && r["observed_onset_s"].is_null());
    // TIME_WAIT stays near zero: only the pool's own ten, closed at the end.
    assert!(u64_of(&r["max_time_wait"]) <= 10, "{}", r["max_time_wait"]);
    assert_cleaned_up();
}

fn tw_reuse_fixes_the_outage() {
    // Past the 20 s mark, where per-request fails without the fix.
    let (r, code) = lab(&["--fix", "tw-reuse", "--rate", "50", "--duration", "25"]);
    assert_eq!(r["fix"], "tw-reuse");
    assert_eq!((u64_of(&r["requests_failed"]), code), (0, 0), "{}", r["verdict"]);
    assert!(u64_of(&r["requests_ok"]) >= 1240);
    assert!(r["predicted_onset_s"].is_null());
    assert_cleaned_up();
}

fn a_wide_range_fixes_the_outage() {
    let (r, code) = lab(&["--fix", "wide-range", "--rate", "50", "--duration", "8"]);
    assert_eq!(r["ports"], 64_512);
    assert_eq!((u64_of(&r["requests_failed"]), code), (0, 0));
    assert_cleaned_up();
}

fn two_source_addresses_run_out_twice_as_late() {
    let (r, code) = lab(&["--fix", "source-ips=2", "--rate", "50", "--duration", "45"]);
    assert_eq!(r["source_ips"], 2);
    assert_eq!(f64_of(&r["predicted_onset_s"]), 40.0);
    let observed = f64_of(&r["observed_onset_s"]);
    assert!(
        (observed - 40.0).abs() <= 4.0,
        "first EADDRNOTAVAIL at {observed} s, predicted 40 s"
    );
    assert_eq!(code, 2);
    // Both addresses' budgets were used in full.
    let ok = u64_of(&r["requests_ok"]);
    assert!((1990..=2000).contains(&ok), "{ok} requests succeeded");
    assert_cleaned_up();
}

fn linger0_leaves_no_time_wait_but_resets_the_server() {
    let (r, code) = lab(&["--fix", "linger0", "--rate", "50", "--duration", "8"]);
    assert_eq!((u64_of(&r["requests_failed"]), code), (0, 0));
    assert_eq!(u64_of(&r["max_time_wait"]), 0);
    let ok = u64_of(&r["requests_ok"]);
    let resets = u64_of(&r["server_resets"]);
    assert!(resets * 10 >= ok * 9, "server saw {resets} resets for {ok} requests");
    assert!(r["verdict"].as_str().unwrap().contains("resets"), "{}", r["verdict"]);
    assert_cleaned_up();
}

/// `twscope lab ARGS…` refused: exit 3, one line mentioning `mentions`.
fn lab_refused(args: &[&str], mentions: &str) -> Output {
    let out = twscope(&[&["lab"][..], args].concat());
    refused(&out, &[mentions]);
    out
}

#[test]
fn lab_options_are_checked_before_anything_is_created() {
    for (args, mentions) in [
        (&["--rate", "100000"][..], "--rate"),
        (&["--fix", "magic"][..], "not a fix"),
        (&["--duration", "3600"][..], "--duration"),
        (&["--ports", "3"][..], "--ports"),
    ] {
        lab_refused(args, mentions);
    }
}

#[test]
fn a_lab_that_makes_no_request_is_refused() {
    for (args, mentions) in [
        (&["--rate", "1e-300"][..], "makes no request"),
        (&["--rate", "0.01", "--duration", "10"][..], "makes no request"),
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "NaN"][..], "--rate"),
        (&["--mode", "pooled", "--pool-size", "0"][..], "--pool-size"),
        (&["--ports", "0"][..], "--ports"),
        (&["--duration", "0"][..], "--duration"),
    ] {
        let out = lab_refused(args, mentions);
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
    }
}
