//! What every area of the integration tests needs, once: the real binary run
//! as a user runs it, its output as text or JSON, a `twscope serve` child and
//! HTTP against it, waiting with a deadline, and the one lock that keeps the
//! timing- and load-sensitive tests from overlapping.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use twscope_lab::Netns;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_twscope");

/// `deploy/PATH` in the workspace: what ships beside the binary.
pub fn deploy(path: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy")).join(path)
}

/// The text of `deploy/PATH`.
pub fn deploy_text(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// The timing- and load-sensitive tests (churns, above all the paced ones
/// whose onset, close rate or TIME_WAIT lifetime is measured; measured
/// timeouts; floods; a real Prometheus) hold this while they run, so that
/// one's load never skews another's clock. In one test binary they would
/// otherwise all run side by side; the light tests (help, plan, completions,
/// files, bad options) do not take it.
static HEAVY: Mutex<()> = Mutex::new(());

/// Takes the heavy-test lock; a test that panicked holding it does not stop
/// the others.
pub fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `parts` side by side, each on a thread named after it, and waits for
/// all of them; then fails, naming every part that failed and its message.
/// For paced, light scenarios (a few dozen connections a second each, in
/// namespaces of their own) that mostly wait on the kernel's clock: the test
/// that runs them holds `heavy()`, so nothing heavy runs beside them, and
/// the suite waits once instead of once per scenario.
pub fn side_by_side(parts: &[(&str, fn())]) {
    let running: Vec<_> = parts
        .iter()
        .map(|&(name, part)| {
            let thread = std::thread::Builder::new().name(name.to_string()).spawn(part).unwrap();
            (name, thread)
        })
        .collect();
    let failed: Vec<String> = running
        .into_iter()
        .filter_map(|(name, thread)| {
            let panic = thread.join().err()?;
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{name}: {message}"))
        })
        .collect();
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n"));
}

/// `twscope` as a command, with `NO_COLOR=1` so text output is plain.
pub fn twscope_command() -> Command {
    let mut command = Command::new(BIN);
    command.env("NO_COLOR", "1");
    command
}

/// Runs `twscope ARGS…` to the end.
pub fn twscope(args: &[&str]) -> Output {
    twscope_command().args(args).output().unwrap()
}

/// A run's stdout, which must be UTF-8.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// A run's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON a run printed and its exit code, which must be a verdict (0 to 2).
pub fn json_output(out: &Output) -> (Value, i32) {
    let code = out.status.code().unwrap();
    assert!(code <= 2, "twscope failed with {code}: {}", stderr(out));
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("twscope printed no JSON ({e}): {}", stderr(out)));
    (json, code)
}

/// `twscope ARGS…` → (its JSON, its exit code).
pub fn json_of(args: &[&str]) -> (Value, i32) {
    json_output(&twscope(args))
}

/// A refused run: exit 3 and exactly one line on stderr, holding every one of
/// `mentions`; returns the line.
pub fn refused(out: &Output, mentions: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(3), "exit code for {err:?}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    for m in mentions {
        assert!(err.contains(m), "{err:?} should mention {m:?}");
    }
    err
}

/// Calls `check` every `interval` until it gives a value or `timeout` has
/// passed (then `None`).
pub fn poll<T>(timeout: Duration, interval: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// [`poll`] every 250 ms: `check`'s first value; panics, naming `what`,
/// when none came within `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, Duration::from_millis(250), check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Runs `command` with stdin closed and stdout and stderr captured, killed
/// after `limit`: a regression that blocks fails the test instead of hanging
/// the suite.
pub fn output_within(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if poll(limit, Duration::from_millis(20), || child.try_wait().unwrap()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} still running after {limit:?}: it blocked");
    }
    child.wait_with_output().unwrap()
}

/// `twscope serve --listen 127.0.0.1:0 --web.config.file PATH`, for a config
/// it must refuse at start: killed after 10 s, so a hang fails the test.
pub fn serve_with_config(path: &Path) -> Output {
    let mut command = twscope_command();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--web.config.file"])
        .arg(path);
    output_within(&mut command, Duration::from_secs(10))
}

/// `setpriv` as user and group 65534 (nobody) with no groups and `options`,
/// about to run twscope: add its arguments.
pub fn as_nobody(options: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(options)
        .arg(BIN);
    command
}

/// A namespace (see `Netns::new`) whose ephemeral port range is `range`
/// (`"LOW HIGH"`).
pub fn netns_with_ports(tag: &str, range: &str) -> Netns {
    let ns = Netns::new(tag).unwrap();
    ns.set_sysctl("net.ipv4.ip_local_port_range", range).unwrap();
    ns
}

/// `ss ARGS…` inside the namespace; its stdout.
pub fn ss(ns: &Netns, args: &[&str]) -> String {
    let out = ns.command("ss").args(args).output().unwrap();
    assert!(out.status.success(), "ss {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// A child process killed (by PID) and reaped on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `twscope serve --listen 127.0.0.1:0 ARGS…` child, killed on drop, with
/// the address and the two start-up lines it printed.
pub struct Serve {
    child: Running,
    pub addr: SocketAddr,
    pub stderr: Vec<String>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Serve {
        Serve::start_limited(args, None)
    }

    /// As [`Serve::start`], with the open-file limit set to `nofile` (soft
    /// and hard) when given.
    pub fn start_limited(args: &[&str], nofile: Option<u64>) -> Serve {
        let mut command = twscope_command();
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = Running(command.spawn().unwrap());
        let mut reader = BufReader::new(child.0.stderr.take().unwrap());
        let mut stderr = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            stderr.push(line);
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = stderr[0]
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {stderr:?}"))
            .parse()
            .unwrap();
        Serve { child, addr, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }
}

/// One `GET path` on a new connection → (status, body, how long it took);
/// status 0 when no HTTP answer came within `timeout`.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
    timeout: Duration,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let attempt = || -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: twscope\r\n{auth}Connection: close\r\n\r\n"
        )?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    let (status, body) = attempt().unwrap_or((0, String::new()));
    (status, body, started.elapsed())
}

/// Samples of `name` in a text-format body, keyed by their label text (`""`
/// for an unlabelled one).
pub fn samples(body: &str, name: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series
                .split_once('{')
                .map_or((series, ""), |(m, rest)| (m, rest.trim_end_matches('}')));
            (metric == name).then(|| (labels.to_string(), value.parse().unwrap()))
        })
        .collect()
}

/// `twscope-churn`, built beside `twscope` by `cargo test --workspace` (it is
/// twscope-lab's binary, and that crate's own test makes cargo build it).
pub fn churn_bin() -> PathBuf {
    let path = std::path::Path::new(BIN).with_file_name("twscope-churn");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A `twscope-churn ARGS…` process, stdout captured (its `--json` counts).
pub fn spawn_churn(args: &[&str]) -> Child {
    Command::new(churn_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a `--json` churn counted itself: {pid, attempts, ok, failed,
/// addr_not_available, elapsed_s}.
pub fn churn_counts(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("twscope-churn printed no JSON ({e}): {}", stderr(&out)))
}
