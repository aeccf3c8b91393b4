//! `twscope status --processes` against `ss -tanp` in a network namespace
//! these tests create: for every destination, the processes holding its live
//! sockets and how many each holds must equal what `ss` prints, exactly.
//!
//! The clients are `bash` processes holding connections opened with bash's
//! `/dev/tcp` (one of them with a `sleep` child that inherited its sockets,
//! so two processes hold the same ones), beside TIME_WAIT churn that belongs
//! to no process; one client is moved into a cgroup named as Docker names a
//! container's, to be named by it. Every process is ended by PID, the
//! namespace and the cgroup removed.
//!
//! Needs root, `ip`, `ss`, `bash` and `setpriv`; without them the tests skip
//! with a reason, unless `TWSCOPE_REQUIRE_ALL=1` (CI) makes that a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use twscope_lab::testing::require_tools;
use twscope_lab::{churn, require_root, ChurnOptions, Netns, Server};

use crate::oracle::{endpoint, kernel_state};
use crate::util::{heavy, json_output, ss, stderr, stdout, twscope, Running, BIN};

/// Per destination, the sockets each PID holds.
type Owners = BTreeMap<(IpAddr, u16), BTreeMap<u32, u64>>;

const DB: &str = "198.18.0.2:5432";
const API: &str = "198.18.0.3:443";
/// Only churned: TIME_WAIT sockets, which no process holds.
const CHURNED: &str = "198.18.0.4:80";

/// A process that is not our child (a client's `sleep`), killed by PID on drop.
struct Pid(u32);

impl Drop for Pid {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions. The PID is still the
        // process's: its parent, which would reap it, is ended after it.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

/// A client: `bash` in the namespace holding `connections` (destination,
/// count), optionally with a `sleep` child that inherits them. Ended by PID
/// on drop, the child first.
struct Client {
    child: Option<Pid>,
    bash: Running,
}

impl Client {
    fn start(ns: &Netns, connections: &[(&str, usize)], with_child: bool) -> Client {
        let mut script = String::new();
        let mut fd = 3;
        for (destination, count) in connections {
            let (addr, port) = destination.split_once(':').unwrap();
            for _ in 0..*count {
                script.push_str(&format!("exec {fd}<>/dev/tcp/{addr}/{port} || exit 1\n"));
                fd += 1;
            }
        }
        // The child keeps the descriptors (no close-on-exec on them) but not
        // our pipes; `read` holds bash until its stdin closes or it is killed.
        if with_child {
            script.push_str("sleep 300 </dev/null >/dev/null 2>&1 &\necho child $!\n");
        }
        script.push_str("echo ready\nread -r _\n");
        let mut bash = Running(
            ns.command("bash")
                .args(["-c", &script])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("ip netns exec bash runs"),
        );
        let mut child = None;
        let mut lines = BufReader::new(bash.0.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the client says ready").unwrap();
            if let Some(pid) = line.strip_prefix("child ") {
                child = Some(Pid(pid.parse().unwrap()));
            } else if line == "ready" {
                break;
            }
        }
        Client { child, bash }
    }

    fn pid(&self) -> u32 {
        // `ip netns exec` execs bash in place: the child's PID is bash's.
        self.bash.0.id()
    }

    fn child_pid(&self) -> u32 {
        self.child.as_ref().unwrap().0
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.child.take(); // killed before bash, which would reap it
    }
}

/// The namespace: servers on the three destinations (inside this test
/// process), two clients holding connections, and TIME_WAIT churn to the
/// database and to [`CHURNED`].
struct Setup {
    // Dropped in this order: clients, then servers, then the namespace.
    clients: [Client; 2],
    _servers: Vec<Server>,
    ns: Netns,
}

fn setup(tag: &str) -> Setup {
    let ns = Netns::new(tag).unwrap();
    for addr in ["198.18.0.2/32", "198.18.0.3/32", "198.18.0.4/32"] {
        ns.add_address(addr).unwrap();
    }
    let servers: Vec<Server> = [DB, API, CHURNED]
        .iter()
        .map(|addr| {
            let addr: SocketAddr = addr.parse().unwrap();
            ns.run(move || Server::start(addr, 1)).unwrap().unwrap()
        })
        .collect();
    let clients = [
        Client::start(&ns, &[(DB, 3), (API, 1)], false),
        Client::start(&ns, &[(DB, 5), (API, 2)], true),
    ];
    let targets: Vec<SocketAddr> = [DB, CHURNED].iter().map(|a| a.parse().unwrap()).collect();
    let stats = ns
        .run(move || {
            churn(
                &targets,
                &ChurnOptions {
                    count: 60,
                    max_duration: Duration::from_secs(20),
                    ..ChurnOptions::default()
                },
            )
        })
        .unwrap();
    assert_eq!((stats.ok, stats.failed), (60, 0), "{:?}", stats.first_error);
    Setup {
        clients,
        _servers: servers,
        ns,
    }
}

/// What `ss -tanp` in the namespace shows: per destination of an outbound
/// socket (its local port not a listening one), the sockets each PID in its
/// `users:((…,pid=N,fd=M),…)` holds, each socket once per PID. Destinations
/// whose sockets have no user (TIME_WAIT) are listed with none.
fn ss_owners(ns: &Netns) -> Owners {
    let listening: Vec<u16> = ss(ns, &["-Htln"])
        .lines()
        .map(|l| endpoint(l.split_whitespace().nth(3).unwrap()).1)
        .collect();
    let mut owners = Owners::new();
    for line in ss(ns, &["-Htanp"]).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if kernel_state(cols[0]) == "LISTEN" || listening.contains(&endpoint(cols[3]).1) {
            continue;
        }
        let (peer, port) = endpoint(cols[4]);
        let entry = owners.entry((peer.unwrap(), port)).or_default();
        let mut pids: Vec<u32> = line
            .split("pid=")
            .skip(1)
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup(); // a socket behind several descriptors of one process
        for pid in pids {
            *entry.entry(pid).or_default() += 1;
        }
    }
    owners
}

/// What `status --processes --json` reports, grouped as [`ss_owners`].
fn reported_owners(json: &Value) -> Owners {
    json["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations: {json}"))
        .iter()
        .map(|d| {
            let key = (
                d["addr"].as_str().unwrap().parse().unwrap(),
                d["port"].as_u64().unwrap() as u16,
            );
            let processes = d["processes"].as_array().unwrap_or_else(|| panic!("no processes: {d}"));
            let mut sockets = Vec::new();
            let owners = processes
                .iter()
                .map(|p| {
                    assert!(p["comm"].is_string() && p.get("container").is_some(), "{p}");
                    sockets.push(p["sockets"].as_u64().unwrap());
                    (p["pid"].as_u64().unwrap() as u32, p["sockets"].as_u64().unwrap())
                })
                .collect();
            assert!(sockets.windows(2).all(|w| w[0] >= w[1]), "most sockets first: {d}");
            (key, owners)
        })
        .collect()
}

fn destination(text: &str) -> (IpAddr, u16) {
    let addr: SocketAddr = text.parse().unwrap();
    (addr.ip(), addr.port())
}

#[test]
fn owners_per_destination_equal_ss() {
    const TEST: &str = "owners_per_destination_equal_ss";
    if !require_root(TEST) || !require_tools(TEST, &["bash"]) {
        return;
    }
    let _heavy = heavy();
    let setup = setup("procs");
    let (ns, [one, two]) = (&setup.ns, &setup.clients);

    let out = twscope(&["status", "--netns", ns.name(), "--processes", "--json", "--top", "0"]);
    let (json, _) = json_output(&out);
    let reported = reported_owners(&json);
    let oracle = ss_owners(ns);
    assert_eq!(reported, oracle, "twscope (left) and ss -tanp (right) disagree");

    // And what the test made, independently of ss.
    let expected: Owners = [
        (
            destination(DB),
            BTreeMap::from([(one.pid(), 3), (two.pid(), 5), (two.child_pid(), 5)]),
        ),
        (
            destination(API),
            BTreeMap::from([(one.pid(), 1), (two.pid(), 2), (two.child_pid(), 2)]),
        ),
        (destination(CHURNED), BTreeMap::new()),
    ]
    .into();
    assert_eq!(reported, expected);
    let comms: Vec<&str> = json["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["processes"].as_array().unwrap())
        .map(|p| p["comm"].as_str().unwrap())
        .collect();
    assert!(comms.iter().all(|c| ["bash", "sleep"].contains(c)), "{comms:?}");
    assert_eq!(json["sockets_without_owner"], 0, "{json}");
    assert!(json["processes_scanned"].as_u64().unwrap() >= 3, "{json}");
    assert!(json["processes_unreadable"].is_u64(), "{json}");
    assert!(json["processes_missing"].is_null(), "root misses nothing: {json}");

    // The text view: one `held by:` line under each destination row.
    let out = twscope(&["status", "--netns", ns.name(), "-p", "--top", "0"]);
    let text = stdout(&out);
    assert!(out.status.code().unwrap() <= 2, "{}", stderr(&out));
    let db_row = text
        .lines()
        .position(|l| l.starts_with(DB))
        .unwrap_or_else(|| panic!("{text}"));
    let held = text.lines().nth(db_row + 1).unwrap();
    assert!(
        held.starts_with("  held by: ")
            && held.contains(&format!("bash (pid {}, ", two.pid()))
            && held.contains(&format!("bash (pid {}, 3)", one.pid())),
        "{held}"
    );
    let churned = text.lines().position(|l| l.starts_with(CHURNED)).unwrap();
    assert_eq!(
        text.lines().nth(churned + 1).unwrap(),
        "  held by: no process (TIME_WAIT sockets belong to none)"
    );

    // Without the flag, the schema is unchanged: no processes anywhere.
    let (plain, _) = json_output(&twscope(&["status", "--netns", ns.name(), "--json", "--top", "0"]));
    assert!(plain.get("processes_unreadable").is_none(), "{plain}");
    assert!(plain.get("processes_scanned").is_none(), "{plain}");
    for d in plain["destinations"].as_array().unwrap() {
        assert!(d.get("processes").is_none(), "{d}");
    }
    let text = stdout(&twscope(&["status", "--netns", ns.name(), "--top", "0"]));
    assert!(!text.contains("held by:"), "{text}");
}

#[test]
fn without_cap_sys_ptrace_the_owners_are_missing_and_said_so() {
    const TEST: &str = "without_cap_sys_ptrace_the_owners_are_missing_and_said_so";
    if !require_root(TEST) || !require_tools(TEST, &["bash", "setpriv"]) {
        return;
    }
    let setup = setup("procs-priv");
    let ns = &setup.ns;
    // uid 0 with CAP_SYS_ADMIN only: it may enter the namespace, but the
    // clients (root with every capability) are more privileged than it, so
    // their /proc/PID/ns/net and /proc/PID/fd are closed to it.
    let run = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--bounding-set=-all,+sys_admin",
                "--inh-caps=-all",
                "--ambient-caps=-all",
                "--",
            ])
            .arg(BIN)
            .args(["status", "--netns", ns.name(), "--processes", "--top", "0"])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&["--json"]);
    let (json, _) = json_output(&out);
    let unreadable = json["processes_unreadable"].as_u64().unwrap();
    assert!(unreadable >= 3, "the two clients and the child at least: {json}");
    let missing = json["processes_missing"].as_str().unwrap_or_else(|| panic!("{json}"));
    assert!(
        missing.contains("CAP_SYS_PTRACE") && missing.contains(&unreadable.to_string()),
        "{missing}"
    );
    // 8 to the database and 3 to the API, no owner found for any.
    assert_eq!(json["sockets_without_owner"], 11, "{json}");
    for d in json["destinations"].as_array().unwrap() {
        assert_eq!(d["processes"], serde_json::json!([]), "{d}");
    }

    let out = run(&[]);
    assert!(
        out.status.code().unwrap() <= 2,
        "a degraded report, not a failure: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("CAP_SYS_PTRACE"), "{text}");
    assert!(
        text.contains("held by: no process found for its 8 live sockets"),
        "{text}"
    );
}

/// A cgroup named as Docker names a container's (`docker-<id>.scope`), in
/// the first writable hierarchy (cgroup v1's `pids`, or v2's root); removed
/// on drop, once the processes moved into it have ended.
struct FakeContainer {
    dir: std::path::PathBuf,
    made_parent: bool,
}

impl FakeContainer {
    fn create(id: &str) -> Option<FakeContainer> {
        let root = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
            .iter()
            .map(std::path::Path::new)
            .find(|r| r.join("cgroup.procs").exists())?;
        let parent = root.join("system.slice");
        let made_parent = !parent.exists();
        let dir = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&dir).ok()?;
        Some(FakeContainer { dir, made_parent })
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // A cgroup can be removed once its last process has been reaped.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.made_parent {
            let _ = std::fs::remove_dir(self.dir.parent().unwrap());
        }
    }
}

#[test]
fn a_process_in_a_container_is_named_by_it() {
    const TEST: &str = "a_process_in_a_container_is_named_by_it";
    if !require_root(TEST) || !require_tools(TEST, &["bash"]) {
        return;
    }
    // A container id of our own: 64 hex digits from our PID and the time.
    let seed = format!(
        "{:016x}{:016x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    );
    let id = seed.repeat(2);
    let Some(container) = FakeContainer::create(&id) else {
        twscope_lab::testing::skip(TEST, "a writable cgroup hierarchy (/sys/fs/cgroup)");
        return;
    };
    let ns = Netns::new("procs-ctr").unwrap();
    ns.add_address("198.18.0.2/32").unwrap();
    let addr: SocketAddr = DB.parse().unwrap();
    let server = ns.run(move || Server::start(addr, 1)).unwrap().unwrap();
    let inside = Client::start(&ns, &[(DB, 2)], false);
    let outside = Client::start(&ns, &[(DB, 1)], false);
    container.add(inside.pid());

    let (json, _) = json_output(&twscope(&["status", "--netns", ns.name(), "-p", "--json"]));
    let owners = json["destinations"][0]["processes"].as_array().unwrap();
    let label = format!("docker {}", &id[..12]);
    assert_eq!(
        owners,
        &vec![
            serde_json::json!({"pid": inside.pid(), "comm": "bash", "container": label, "sockets": 2}),
            serde_json::json!({"pid": outside.pid(), "comm": "bash", "container": null, "sockets": 1}),
        ]
    );
    let text = stdout(&twscope(&["status", "--netns", ns.name(), "-p"]));
    assert!(
        text.contains(&format!(
            "held by: bash (pid {}, {label}, 2 sockets), bash (pid {}, 1)",
            inside.pid(),
            outside.pid()
        )),
        "{text}"
    );
    // Processes first, then the server, the namespace, and the cgroup last.
    drop((inside, outside, server, ns));
    drop(container);
}
