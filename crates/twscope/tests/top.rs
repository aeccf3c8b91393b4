//! `twscope top` end to end: the real binary on a real terminal (tmux, on a
//! server of the test's own), watching a namespace loaded with TIME_WAIT by
//! `twscope-churn`. The screen is read with `capture-pane` and compared with
//! `ss` run in the namespace; keys are sent as a user types them; after `q`
//! and after SIGTERM the terminal must be back as it was (no alternate
//! screen, canonical mode and echo on).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use twscope_lab::testing::require_tools;
use twscope_lab::{require_root, Netns};

use crate::trace::serve;
use crate::util::{churn_counts, heavy, netns_with_ports, spawn_churn, ss, wait_for, BIN};

/// A tmux server of the test's own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux {
            socket: format!("twscope-{tag}-{}", std::process::id()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts `twscope ARGS` in a 132×32 window; when it exits, the shell
    /// writes its exit code and `stty -a` to files and waits.
    fn start(&self, args: &str) {
        let rc = self.file("rc");
        let stty = self.file("stty");
        let script = format!(
            "{BIN} {args}; echo $? > {rc}.tmp; mv {rc}.tmp {rc}; stty -a > {stty}; sleep 600",
            rc = rc.display(),
            stty = stty.display()
        );
        let _ = std::fs::remove_file(&rc);
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "132",
            "-y",
            "32",
            "sh",
            "-c",
            &script,
        ]);
    }

    /// `twscope top --netns NS` on a terminal of its own, once it shows
    /// `dest`; with its PID.
    fn watching(tag: &str, ns: &Netns, dest: &str) -> (Tmux, u32) {
        let tmux = Tmux::new(tag);
        tmux.start(&format!("top --netns {}", ns.name()));
        tmux.wait_screen("top to draw", |s| row(s, dest).is_some());
        let pid = tmux.top_pid();
        (tmux, pid)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend(keys);
        self.run(&args);
    }

    /// Waits until the screen shows `text`; returns the screen.
    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(20), || {
            let screen = self.screen();
            check(&screen).then_some(screen)
        })
    }

    fn alternate_screen(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// Waits for `top` to exit; its exit code and the terminal's modes after.
    fn exited(&self) -> (i32, String) {
        let rc = self.file("rc");
        let code = wait_for("twscope top to exit", Duration::from_secs(10), || {
            std::fs::read_to_string(&rc).ok()?.trim().parse::<i32>().ok()
        });
        let stty = wait_for("stty -a after it", Duration::from_secs(5), || {
            std::fs::read_to_string(self.file("stty"))
                .ok()
                .filter(|s| !s.is_empty())
        });
        (code, stty)
    }

    /// The PID of `twscope top` (the child of the window's shell).
    fn top_pid(&self) -> u32 {
        let shell = self.run(&["display-message", "-p", "-t", "top", "#{pane_pid}"]);
        let out = Command::new("pgrep").args(["-P", shell.trim()]).output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// The terminal is as a shell left it: line editing and echo on.
fn assert_restored(tmux: &Tmux, stty: &str, after: &str) {
    assert!(!tmux.alternate_screen(), "still on the alternate screen after {after}");
    let modes: Vec<&str> = stty.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&mode), "{mode} is not restored after {after}: {stty}");
    }
}

/// The row of `dest` on the screen: its columns.
fn row<'a>(screen: &'a str, dest: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .find(|l| l.starts_with(dest))
        .map(|l| l.split_whitespace().collect())
}

fn number(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a count"))
}

/// TIME_WAIT sockets to `dest` in the namespace, by `ss`.
fn ss_time_wait(ns: &Netns, dest: &str) -> u64 {
    let (addr, port) = dest.rsplit_once(':').unwrap();
    let filter = format!("dst {addr} and dport = :{port}");
    ss(ns, &["-Htan", "state", "time-wait", &filter]).lines().count() as u64
}

#[test]
fn top_on_a_real_terminal_matches_ss_and_restores_it() {
    if !require_root("top_on_a_real_terminal_matches_ss_and_restores_it")
        || !require_tools(
            "top_on_a_real_terminal_matches_ss_and_restores_it",
            &["tmux", "ss", "pgrep"],
        )
    {
        return;
    }
    let _heavy = heavy();
    let ns = netns_with_ports("top-e2e", "32768 60999");
    ns.add_address("198.18.0.1/32").unwrap();
    let _server = serve(&ns, &["198.18.0.1:7100", "198.18.0.1:7200"]);
    // 3,000 connections to one service and 800 to another, each closed by
    // the client: 3,800 TIME_WAIT sockets for the next 60 s.
    for (target, count) in [("198.18.0.1:7100", "3000"), ("198.18.0.1:7200", "800")] {
        let counts = churn_counts(spawn_churn(&[
            "--netns",
            ns.name(),
            "--no-server",
            "--target",
            target,
            "--count",
            count,
            "--json",
            "--max-seconds",
            "20",
        ]));
        assert_eq!(
            counts["ok"].as_u64().unwrap(),
            count.parse::<u64>().unwrap(),
            "{counts}"
        );
    }

    let tmux = Tmux::new("top");
    tmux.start(&format!("top --netns {} --interval 1", ns.name()));
    let busiest = "198.18.0.1:7100";
    let screen = tmux.wait_screen("top to show the busiest destination", |s| row(s, busiest).is_some());
    assert!(tmux.alternate_screen(), "top draws on the alternate screen");
    // The busiest destination is the first row (sorted by risk), and its
    // TIME_WAIT is what `ss` counts.
    let first = screen
        .lines()
        .skip_while(|l| !l.starts_with("DESTINATION"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.starts_with(busiest), "first row is not {busiest}:\n{screen}");
    let shown = number(row(&screen, busiest).unwrap()[1]);
    let by_ss = ss_time_wait(&ns, busiest);
    assert!(
        shown.abs_diff(by_ss) * 100 <= 3 * by_ss && by_ss >= 2_900,
        "top shows {shown} TIME_WAIT to {busiest}, ss counts {by_ss}:\n{screen}"
    );
    let other = number(row(&screen, "198.18.0.1:7200").unwrap()[1]);
    assert!(other.abs_diff(ss_time_wait(&ns, "198.18.0.1:7200")) <= 24, "{screen}");

    // s: the next order is named in the header.
    tmux.keys(&["s"]);
    tmux.wait_screen("s to sort by TIME_WAIT", |s| s.contains("sort: TIME_WAIT"));
    // / filters: only the other destination is left.
    tmux.keys(&["/", "7200", "Enter"]);
    let filtered = tmux.wait_screen("the filter to apply", |s| s.contains("1 of 2 match /7200"));
    assert!(row(&filtered, busiest).is_none(), "{filtered}");
    assert!(row(&filtered, "198.18.0.1:7200").is_some(), "{filtered}");
    tmux.keys(&["Escape"]);
    tmux.wait_screen("Esc to clear the filter", |s| row(s, busiest).is_some());
    // p pauses (and says so), p resumes.
    tmux.keys(&["p"]);
    tmux.wait_screen("p to pause", |s| s.contains("PAUSED"));
    tmux.keys(&["p"]);
    tmux.wait_screen("p to resume", |s| !s.contains("PAUSED") && s.contains("every 1 s"));
    // q quits with 0 and gives the terminal back.
    tmux.keys(&["q"]);
    let (code, stty) = tmux.exited();
    assert_eq!(code, 0, "exit code after q");
    assert_restored(&tmux, &stty, "q");
    drop(tmux);

    // SIGTERM (a pod's stop, `kill`): the same.
    let (tmux, pid) = Tmux::watching("term", &ns, busiest);
    // SAFETY: a signal to the child we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let (code, stty) = tmux.exited();
    assert_eq!(code, 0, "exit code after SIGTERM");
    assert_restored(&tmux, &stty, "SIGTERM");
    drop(tmux);

    // The terminal goes away (ssh drops, the window is killed): top ends
    // instead of spinning on a closed terminal.
    let (tmux, pid) = Tmux::watching("hangup", &ns, busiest);
    tmux.run(&["kill-session", "-t", "top"]);
    wait_for("top to exit when its terminal is gone", Duration::from_secs(10), || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
}

#[test]
fn top_without_a_terminal_says_what_to_use_instead() {
    let out = Command::new(BIN)
        .arg("top")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("twscope status"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_trace_panel_names_the_process_failing_now_and_detaches_when_closed() {
    const TEST: &str = "the_trace_panel_names_the_process_failing_now_and_detaches_when_closed";
    if !require_root(TEST) || !require_tools(TEST, &["tmux", "ss", "pgrep"]) {
        return;
    }
    let _heavy = heavy();
    assert!(
        twscope_trace::loaded_programs().is_empty(),
        "a tracer is attached before the test"
    );
    // 10 ports: a client opening a connection per request runs out within
    // its first connects, and every connect after fails.
    let ns = netns_with_ports("top-trace", "40000 40009");
    ns.add_address("198.18.0.1/32").unwrap();
    let _server = serve(&ns, &["198.18.0.1:7101"]);
    let tmux = Tmux::new("trace");
    tmux.start(&format!("top --netns {} --interval 1", ns.name()));
    tmux.wait_screen("top to draw", |s| s.contains("Destinations ("));
    tmux.keys(&["t"]);
    tmux.wait_screen("the trace panel to open", |s| {
        s.contains("Processes opening connections") && !s.contains("attaching the tracer")
    });
    assert!(!twscope_trace::loaded_programs().is_empty(), "t attached no tracer");

    let churn = spawn_churn(&[
        "--netns",
        ns.name(),
        "--no-server",
        "--target",
        "198.18.0.1:7101",
        "--rate",
        "100",
        "--count",
        "800",
        "--request",
        "--comm",
        "checkout",
        "--json",
        "--max-seconds",
        "15",
    ]);
    let pid = churn.id().to_string();
    let screen = tmux.wait_screen("the panel to name the failing process", |s| {
        s.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // PID PROCESS OPENED/s TW LEFT/s FAILED/s EADDRNOTAVAIL [POOL]
            cols.first() == Some(&pid.as_str())
                && cols.get(1) == Some(&"checkout")
                && cols.get(5).is_some_and(|n| number(n) > 0)
        }) && s.contains(&format!("pid {pid} (checkout) → 198.18.0.1:7101"))
    });
    assert!(screen.contains("last EADDRNOTAVAIL:"), "{screen}");
    let counts = churn_counts(churn);
    assert!(counts["addr_not_available"].as_u64().unwrap() > 0, "{counts}");

    // t again closes the panel and detaches the tracer.
    tmux.keys(&["t"]);
    wait_for("the tracer to detach", Duration::from_secs(10), || {
        twscope_trace::loaded_programs().is_empty().then_some(())
    });
    tmux.wait_screen("the panel to close", |s| !s.contains("Processes opening connections"));
    tmux.keys(&["q"]);
    let (code, stty) = tmux.exited();
    assert_eq!(code, 0);
    assert_restored(&tmux, &stty, "q");
}
