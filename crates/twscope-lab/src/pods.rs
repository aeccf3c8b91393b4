//! Simulated Kubernetes pods and containers, made the way container runtimes
//! make them, for tests of `--netns all` on a machine without a runtime.
//!
//! A [`Pod`] is one or two processes (a `pause` sandbox and the app, or the
//! app alone) in a new network, UTS, IPC and mount namespace:
//!
//! - the UTS namespace's hostname is the pod name, as the kubelet sets it;
//! - each process sits in a cgroup named as the kubelet names it with the
//!   systemd driver (`/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`) or the
//!   cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`), or as Docker and
//!   Podman name theirs (`/docker/<id>`, `/system.slice/docker-<id>.scope`,
//!   `/machine.slice/libpod-<id>.scope`), in the v1 hierarchies `pids` and
//!   `name=systemd` (or the v2 one, see [`cgroup_hierarchies`]);
//! - optionally, a tmpfs at `/var/run/secrets/kubernetes.io/serviceaccount`
//!   in the app's own mount namespace holding the `namespace` file, as the
//!   kubelet mounts a service account;
//! - optionally, the network namespace is first made as a bind mount
//!   `/run/netns/cni-<uuid>` and the sandbox joins it, as containerd does.
//!
//! A [`NetnsMount`] is a network namespace held only by a bind mount (as
//! Docker's `/var/run/docker/netns/<id>`), with no process in it.
//!
//! [`load`] makes a static, quiescent socket population inside the calling
//! thread's namespace: TIME_WAIT sockets (the client closes first) and
//! ESTABLISHED pairs held open, on IPv4 or IPv6 loopback. [`run_in`] runs a
//! closure in any namespace file, [`command_in`] a program;
//! [`private_mounts_sh`] a script in new namespaces whose mounts never reach
//! the host.
//!
//! Everything is undone on drop, also while a test panics: processes are
//! killed by PID and reaped, the cgroup directories this process created are
//! removed deepest first, mounts unmounted, `cni-` namespaces deleted. The
//! processes also get `SIGKILL` when the thread that made them exits
//! (`PR_SET_PDEATHSIG`), and sleep for at most [`LIFETIME`] anyway, so even a
//! killed test (`SIGKILL`) leaves no process behind; it does leave its empty
//! cgroup directories, `cni-` namespaces and mounts.
//!
//! Each process is `sleep` run through a symlink named as its command
//! (`pause`, `nginx`), so `/proc/PID/comm` reads as a container's would.
//! Needs root, `unshare` and `nsenter` (util-linux), `ip` (iproute2) and
//! `sleep`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::run;
pub use crate::netns::{command_in, exact_counts, run_in};
use crate::{churn, ChurnOptions, Server};

/// How long a pod's processes live at most, whatever happens to their owner.
pub const LIFETIME: Duration = Duration::from_secs(600);

/// How long a pod's processes may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where [`NetnsMount`]s are mounted.
const MOUNT_DIR: &str = "/run/twscope-pods";

/// The container runtime a pod or container is made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// containerd's CRI plugin: `cri-containerd-<id>.scope` (systemd driver),
    /// `<id>` (cgroupfs driver).
    Containerd,
    /// CRI-O: `crio-<id>.scope` (systemd driver), `crio-<id>` (cgroupfs).
    CriO,
    /// Docker: `docker-<id>.scope` / `/docker/<id>`, or under `kubepods` as
    /// cri-dockerd places it (`<id>` with the cgroupfs driver).
    Docker,
    /// Podman: `libpod-<id>.scope` / `/libpod_parent/libpod-<id>`.
    Podman,
}

/// The cgroup driver (how the cgroup path is spelt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// systemd slices and scopes.
    Systemd,
    /// Plain directories.
    Cgroupfs,
}

/// A pod's Kubernetes QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Requests equal limits: right under `kubepods`.
    Guaranteed,
    /// Some requests: under `kubepods-burstable` / `burstable`.
    Burstable,
    /// No requests: under `kubepods-besteffort` / `besteffort`.
    BestEffort,
}

impl Qos {
    /// The class as the kubelet spells it in cgroup names (and twscope in
    /// its JSON).
    pub fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

/// What makes a pod a Kubernetes pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kube {
    /// `metadata.uid` (8-4-4-4-12 lower-case hex digits).
    pub uid: String,
    /// The QoS class.
    pub qos: Qos,
    /// The Kubernetes namespace written to the mounted service-account
    /// `namespace` file; `None`: no service account mounted.
    pub namespace: Option<String>,
}

/// What pod to make. Build one with [`PodSpec::kubernetes`] or
/// [`PodSpec::container`] and the builder methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The hostname of its UTS namespace: the pod name, or for a plain
    /// container whatever its runtime set.
    pub hostname: String,
    /// The runtime whose cgroup names to use.
    pub runtime: Runtime,
    /// The cgroup driver.
    pub driver: Driver,
    /// The Kubernetes part; `None` for a plain Docker or Podman container.
    pub kube: Option<Kube>,
    /// Also a `pause` sandbox process, whose namespaces the app joins.
    pub sandbox: bool,
    /// Make the network namespace as `/run/netns/cni-<uuid>` first.
    pub cni: bool,
    /// The app's command name (`/proc/PID/comm`, at most 15 bytes).
    pub comm: String,
    /// The cgroup hierarchies (mount points) to place the processes in;
    /// empty: [`cgroup_hierarchies`].
    pub hierarchies: Vec<PathBuf>,
}

impl PodSpec {
    /// A Kubernetes pod named `name` (its hostname), with a fresh UID, no
    /// service account, no sandbox, app command `app`.
    pub fn kubernetes(name: &str, runtime: Runtime, driver: Driver, qos: Qos) -> PodSpec {
        PodSpec {
            kube: Some(Kube {
                uid: new_uid(),
                qos,
                namespace: None,
            }),
            ..PodSpec::container(name, runtime, driver)
        }
    }

    /// A plain Docker or Podman container with hostname `hostname`.
    pub fn container(hostname: &str, runtime: Runtime, driver: Driver) -> PodSpec {
        PodSpec {
            hostname: hostname.to_string(),
            runtime,
            driver,
            kube: None,
            sandbox: false,
            cni: false,
            comm: "app".to_string(),
            hierarchies: Vec::new(),
        }
    }

    /// Mounts a service account whose `namespace` file says `namespace`.
    pub fn service_account(mut self, namespace: &str) -> PodSpec {
        if let Some(kube) = &mut self.kube {
            kube.namespace = Some(namespace.to_string());
        }
        self
    }

    /// Adds a `pause` sandbox process.
    pub fn sandbox(mut self) -> PodSpec {
        self.sandbox = true;
        self
    }

    /// Makes the network namespace as `/run/netns/cni-<uuid>` first.
    pub fn cni(mut self) -> PodSpec {
        self.cni = true;
        self
    }

    /// Sets the app's command name.
    pub fn comm(mut self, comm: &str) -> PodSpec {
        self.comm = comm.to_string();
        self
    }

    /// Places the processes in these hierarchies only.
    pub fn hierarchies(mut self, hierarchies: Vec<PathBuf>) -> PodSpec {
        self.hierarchies = hierarchies;
        self
    }

    /// The cgroup path (relative to a hierarchy's root) of the container
    /// `id`, as the runtime and the kubelet name it.
    pub fn cgroup_path(&self, id: &str) -> io::Result<String> {
        let scope_prefix = match self.runtime {
            Runtime::Containerd => "cri-containerd-",
            Runtime::CriO => "crio-",
            Runtime::Docker => "docker-",
            Runtime::Podman => "libpod-",
        };
        let Some(kube) = &self.kube else {
            return match (self.runtime, self.driver) {
                (Runtime::Docker, Driver::Systemd) => Ok(format!("/system.slice/docker-{id}.scope")),
                (Runtime::Docker, Driver::Cgroupfs) => Ok(format!("/docker/{id}")),
                (Runtime::Podman, Driver::Systemd) => Ok(format!("/machine.slice/libpod-{id}.scope")),
                (Runtime::Podman, Driver::Cgroupfs) => Ok(format!("/libpod_parent/libpod-{id}")),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a container outside Kubernetes is made as Docker or Podman only",
                )),
            };
        };
        let qos = kube.qos.name();
        Ok(match self.driver {
            Driver::Systemd => {
                let uid = kube.uid.replace('-', "_");
                let pod = match kube.qos {
                    Qos::Guaranteed => format!("/kubepods.slice/kubepods-pod{uid}.slice"),
                    _ => format!("/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice"),
                };
                format!("{pod}/{scope_prefix}{id}.scope")
            }
            Driver::Cgroupfs => {
                let pod = match kube.qos {
                    Qos::Guaranteed => format!("/kubepods/pod{}", kube.uid),
                    _ => format!("/kubepods/{qos}/pod{}", kube.uid),
                };
                match self.runtime {
                    // CRI-O's cgroupfs manager keeps its prefix.
                    Runtime::CriO => format!("{pod}/crio-{id}"),
                    _ => format!("{pod}/{id}"),
                }
            }
        })
    }
}

/// One process of a pod.
#[derive(Debug)]
struct PodProcess {
    child: Child,
    comm: String,
    /// Not killed by [`Pod::kill_app`].
    alive: bool,
    /// Its cgroup directories (one per hierarchy).
    cgroups: Vec<PathBuf>,
}

/// A simulated pod (or container): see the [module](self) documentation.
/// Killed and cleaned up on drop.
#[derive(Debug)]
pub struct Pod {
    spec: PodSpec,
    container_id: String,
    sandbox_id: Option<String>,
    /// Sandbox first, then the app.
    processes: Vec<PodProcess>,
    cni_name: Option<String>,
    /// Symlinks to `sleep` named as the processes' commands.
    bin_dir: Option<PathBuf>,
    inode: u64,
}

impl Pod {
    /// Makes the pod and waits until its processes run (their hostname set,
    /// loopback up, service account mounted). Needs root.
    ///
    /// The processes die with the thread that calls this (`PR_SET_PDEATHSIG`):
    /// make pods on the thread that uses them, such as the test's own.
    pub fn new(spec: PodSpec) -> io::Result<Pod> {
        check_comm(&spec.comm)?;
        if spec.hostname.is_empty() || spec.hostname.len() > 64 || spec.hostname.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{:?} is not a hostname: 1 to 64 bytes", spec.hostname),
            ));
        }
        if spec.sandbox && spec.comm == "pause" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the app of a sandboxed pod cannot be called pause",
            ));
        }
        let hierarchies = if spec.hierarchies.is_empty() {
            cgroup_hierarchies()
        } else {
            spec.hierarchies.clone()
        };
        if hierarchies.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup hierarchy is mounted",
            ));
        }
        let container_id = new_hex(64);
        let sandbox_id = spec.sandbox.then(|| new_hex(64));
        // Validates the spec before anything is made.
        spec.cgroup_path(&container_id)?;
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let bin_dir = std::env::temp_dir().join(format!("twscope-pod-{}-{serial}", std::process::id()));
        let mut pod = Pod {
            spec,
            container_id,
            sandbox_id,
            processes: Vec::new(),
            cni_name: None,
            bin_dir: None,
            inode: 0,
        };
        // From here on, a failure drops `pod`, which undoes what was made.
        std::fs::create_dir(&bin_dir)?;
        pod.bin_dir = Some(bin_dir.clone());
        let sleep = sleep_program()?;
        let lifetime = LIFETIME.as_secs().to_string();
        let hostname = pod.spec.hostname.clone();
        let namespace = pod
            .spec
            .kube
            .as_ref()
            .and_then(|k| k.namespace.clone())
            .unwrap_or_default();

        let cni_path = if pod.spec.cni {
            let name = format!("cni-{}", new_uid());
            run(Command::new("ip").args(["netns", "add", &name]))?;
            pod.cni_name = Some(name.clone());
            Some(Path::new(crate::netns::NETNS_DIR).join(name))
        } else {
            None
        };

        // The first process makes the namespaces: the sandbox, or the app alone.
        let first_comm = if pod.spec.sandbox {
            "pause".to_string()
        } else {
            pod.spec.comm.clone()
        };
        let first_id = pod.sandbox_id.clone().unwrap_or_else(|| pod.container_id.clone());
        let exe = bin_dir.join(&first_comm);
        std::os::unix::fs::symlink(&sleep, &exe)?;
        let mut command = match &cni_path {
            Some(path) => private_mounts_sh(
                &[os(["--net=", &path.display().to_string()])],
                &["--uts", "--ipc"],
                SCRIPT,
            ),
            None => private_mounts_sh(&[], &["--net", "--uts", "--ipc"], SCRIPT),
        };
        command.arg("sh");
        // The service account goes to the app: the sandbox has none.
        let first_namespace = if pod.spec.sandbox { "" } else { namespace.as_str() };
        command.arg(&hostname).arg(first_namespace).arg(&exe).arg(&lifetime);
        let first = pod.start(command, &first_comm, &first_id, &hierarchies)?;

        if pod.spec.sandbox {
            let exe = bin_dir.join(&pod.spec.comm);
            std::os::unix::fs::symlink(&sleep, &exe)?;
            let enter = ["net", "uts", "ipc"].map(|ns| OsString::from(format!("--{ns}=/proc/{first}/ns/{ns}")));
            let mut command = private_mounts_sh(&enter, &[], SCRIPT);
            command.arg("sh").arg("").arg(&namespace).arg(&exe).arg(&lifetime);
            let comm = pod.spec.comm.clone();
            let id = pod.container_id.clone();
            pod.start(command, &comm, &id, &hierarchies)?;
        }
        pod.inode = std::fs::metadata(format!("/proc/{first}/ns/net"))?.ino();
        Ok(pod)
    }

    /// Spawns one process, moves it into its cgroups and waits until it runs
    /// `comm`. Returns its PID.
    fn start(&mut self, mut command: Command, comm: &str, id: &str, hierarchies: &[PathBuf]) -> io::Result<u32> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; nothing is allocated.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {:?}: {e}", command.get_program())))?;
        let pid = child.id();
        self.processes.push(PodProcess {
            child,
            comm: comm.to_string(),
            alive: true,
            cgroups: Vec::new(),
        });
        let relative = self.spec.cgroup_path(id)?;
        for hierarchy in hierarchies {
            let dir = create_cgroup(hierarchy, &relative)?;
            // Recorded first, so drop removes it even if the move fails.
            let process = self.processes.last_mut().expect("just pushed");
            process.cgroups.push(dir.clone());
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("cannot move {pid} into {}: {e}", dir.display())))?;
        }
        let process = self.processes.last_mut().expect("just pushed");
        wait_for_comm(&mut process.child, comm)?;
        Ok(pid)
    }

    /// The spec it was made from.
    pub fn spec(&self) -> &PodSpec {
        &self.spec
    }

    /// The app process's PID (the sandbox's once [`Pod::kill_app`] killed
    /// the app).
    pub fn pid(&self) -> u32 {
        self.processes
            .iter()
            .rev()
            .find(|p| p.alive)
            .map_or(0, |p| p.child.id())
    }

    /// The `pause` sandbox's PID, if it has one.
    pub fn sandbox_pid(&self) -> Option<u32> {
        (self.processes.len() > 1).then(|| self.processes[0].child.id())
    }

    /// Every PID of the pod, lowest first.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().into_iter().map(|(pid, _)| pid).collect()
    }

    /// `(pid, comm)` of every process, lowest PID first.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let mut processes: Vec<(u32, String)> = self
            .processes
            .iter()
            .filter(|p| p.alive)
            .map(|p| (p.child.id(), p.comm.clone()))
            .collect();
        processes.sort();
        processes
    }

    /// Kills (and reaps) the app of a sandboxed pod, as when its container
    /// crashed and waits for a restart: the `pause` process alone keeps the
    /// namespaces. Its cgroup stays until the pod is dropped.
    pub fn kill_app(&mut self) -> io::Result<()> {
        if self.processes.len() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only a sandboxed pod outlives its app",
            ));
        }
        let app = self.processes.last_mut().expect("two processes");
        if app.alive {
            app.child.kill()?;
            app.child.wait()?;
            app.alive = false;
        }
        Ok(())
    }

    /// The app container's id (64 hex digits).
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The sandbox container's id, if it has a sandbox.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.sandbox_id.as_deref()
    }

    /// The app's cgroup path (relative to a hierarchy's root).
    pub fn cgroup_path(&self) -> String {
        self.spec.cgroup_path(&self.container_id).unwrap_or_default()
    }

    /// The pod name: its UTS hostname.
    pub fn hostname(&self) -> &str {
        &self.spec.hostname
    }

    /// The Kubernetes pod UID, for a pod.
    pub fn uid(&self) -> Option<&str> {
        self.spec.kube.as_ref().map(|k| k.uid.as_str())
    }

    /// The `ip netns` name (`cni-<uuid>`), when made with [`PodSpec::cni`].
    pub fn cni_name(&self) -> Option<&str> {
        self.cni_name.as_deref()
    }

    /// Its network namespace file (`/proc/PID/ns/net` of [`Pod::pid`]).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Its network namespace's inode.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on a new thread inside the pod's network namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        run_in(&self.netns_path(), f)
    }

    /// Sets the sysctls that keep the pod's TIME_WAIT population exact (see
    /// [`exact_counts`]) and makes the load `plan` inside it.
    pub fn load(&self, plan: &[LoadPlan]) -> io::Result<Load> {
        load_in(&self.netns_path(), plan)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // The app first, then its sandbox; each killed by PID and reaped.
        for process in self.processes.iter_mut().rev() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        for process in self.processes.iter().rev() {
            for dir in &process.cgroups {
                remove_cgroup(dir);
            }
        }
        if let Some(name) = &self.cni_name {
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
        if let Some(dir) = &self.bin_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The pod's process: hostname, loopback, service account, then the program.
/// `$1` hostname (empty: keep, and leave loopback alone), `$2` service-account
/// namespace (empty: none), `$3` program, `$4` its argument.
const SCRIPT: &str = r#"set -e
if [ -n "$1" ]; then
  printf '%s' "$1" > /proc/sys/kernel/hostname
  ip link set lo up
fi
if [ -n "$2" ]; then
  # A tmpfs over /var/run of this mount namespace only: nothing is made on the host.
  mount -t tmpfs -o size=64k,mode=0755 pod-run /var/run
  mkdir -p /var/run/secrets/kubernetes.io/serviceaccount
  printf '%s' "$2" > /var/run/secrets/kubernetes.io/serviceaccount/namespace
fi
exec "$3" "$4"
"#;

/// `sh -c SCRIPT` in a new mount namespace whose propagation is private (so
/// nothing it mounts reaches the host) and the new namespaces `unshare` names
/// (`--net`, `--uts`, …), after joining the namespace files `enter` names
/// (`--net=PATH`, … as `nsenter` takes them), if any:
/// `[nsenter ENTER… --] unshare UNSHARE… --mount --propagation private -- sh -c SCRIPT`.
/// Add the script's `$0`, `$1`, … as arguments.
pub fn private_mounts_sh(enter: &[OsString], unshare: &[&str], script: &str) -> Command {
    let mut command = if enter.is_empty() {
        Command::new("unshare")
    } else {
        let mut nsenter = Command::new("nsenter");
        nsenter.args(enter).args(["--", "unshare"]);
        nsenter
    };
    command
        .args(unshare)
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", script]);
    command
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

fn os<const N: usize>(parts: [&str; N]) -> OsString {
    parts.concat().into()
}

fn check_comm(comm: &str) -> io::Result<()> {
    if comm.is_empty() || comm.len() > 15 || comm.contains('/') || comm == "." || comm == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{comm:?} is not a command name: 1 to 15 bytes, no '/'"),
        ));
    }
    Ok(())
}

/// `sleep`, which the pods' processes run under their own command names.
fn sleep_program() -> io::Result<PathBuf> {
    ["/bin/sleep", "/usr/bin/sleep"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no sleep program (coreutils)"))
}

/// Calls `check` every `interval` until it is done (`Ok(Ok(value))`) or
/// fails (`Err`); `Ok(Err(why))` is not yet, and at `deadline` the error
/// (`TimedOut`) is the last `why`.
fn wait_until<T>(
    deadline: Instant,
    interval: Duration,
    mut check: impl FnMut() -> io::Result<Result<T, String>>,
) -> io::Result<T> {
    loop {
        match check()? {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() >= deadline => return Err(io::Error::new(io::ErrorKind::TimedOut, why)),
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// Waits until `child` runs `comm`: its last exec, after its setup.
fn wait_for_comm(child: &mut Child, comm: &str) -> io::Result<()> {
    let path = format!("/proc/{}/comm", child.id());
    wait_until(Instant::now() + READY_TIMEOUT, Duration::from_millis(2), || {
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return Err(io::Error::other(format!(
                "the pod process {comm} exited ({status}) before it was ready: {}",
                stderr.trim()
            )));
        }
        Ok(match std::fs::read_to_string(&path) {
            Ok(c) if c.trim_end() == comm => Ok(()),
            _ => Err(format!("the pod process {comm} was not ready within {READY_TIMEOUT:?}")),
        })
    })
}

/// A pseudo-random 64-bit number: different per call, per process, per run.
fn random_u64() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed =
        STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ nanos ^ (u64::from(std::process::id()) << 32);
    // splitmix64
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `digits` lower-case hex digits, as a container id.
pub fn new_hex(digits: usize) -> String {
    let mut out = String::with_capacity(digits + 16);
    while out.len() < digits {
        out.push_str(&format!("{:016x}", random_u64()));
    }
    out.truncate(digits);
    out
}

/// A random (version 4) UUID, as Kubernetes makes pod UIDs.
pub fn new_uid() -> String {
    let hex = new_hex(32);
    let variant = ["8", "9", "a", "b"][(random_u64() % 4) as usize];
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The cgroup hierarchies pods are placed in: on cgroup v2 the unified
/// hierarchy; on v1, those of `pids` and `name=systemd` (never `memory` or
/// `cpu`, whose limits the caller may be under).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v1 = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        if fstype == "cgroup2" && mount_point == "/sys/fs/cgroup" {
            return vec![PathBuf::from(mount_point)];
        }
        if fstype == "cgroup" && options.split(',').any(|o| o == "pids" || o == "name=systemd") {
            v1.push(PathBuf::from(mount_point));
        }
    }
    v1
}

/// The cgroup v2 hierarchy: `/sys/fs/cgroup` on a v2 host, the hybrid
/// layout's `/sys/fs/cgroup/unified`, or `None`.
pub fn unified_hierarchy() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// Cgroup directories (and [`MOUNT_DIR`]) this process created and has not
/// removed yet. Its lock also orders creation against removal, so one pod
/// never removes a parent another is about to use.
static CREATED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn created() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    CREATED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `hierarchy/relative` and any missing parents, remembering which
/// it created.
fn create_cgroup(hierarchy: &Path, relative: &str) -> io::Result<PathBuf> {
    let mut created = created();
    let mut dir = hierarchy.to_path_buf();
    for segment in relative.split('/').filter(|s| !s.is_empty()) {
        dir.push(segment);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                created.insert(dir.clone());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create cgroup {}: {e}", dir.display()),
                ))
            }
        }
    }
    Ok(dir)
}

/// Removes `dir` and then its parents, deepest first, as long as this
/// process created them and they are empty (a parent another pod still uses
/// stays, and goes with that pod).
fn remove_cgroup(dir: &Path) {
    let mut created = created();
    let mut dir = dir.to_path_buf();
    while created.contains(&dir) {
        // A killed process leaves its cgroup a moment after it is reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    // Busy with a child cgroup (another pod's): leave it to that pod.
                    if has_subdirectory(&dir) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        created.remove(&dir);
        if !dir.pop() {
            return;
        }
    }
}

fn has_subdirectory(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
}

/// [`exact_counts`], then [`load`] on a thread inside the namespace at `path`.
pub fn load_in(path: &Path, plan: &[LoadPlan]) -> io::Result<Load> {
    exact_counts(path)?;
    let plan = plan.to_vec();
    run_in(path, move || load(&plan))?
}

/// One part of a [`load`]: sockets towards one server address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadPlan {
    /// The server's address (loopback, or one the namespace has), port below
    /// the ephemeral range.
    pub target: SocketAddr,
    /// Connections opened and closed by the client first: each leaves one
    /// client-side TIME_WAIT socket towards `target`.
    pub time_wait: u64,
    /// Connections held open: each is two ESTABLISHED sockets (the client's,
    /// towards `target`, and the server's, accepted on its port), and the
    /// server keeps listening on `target`.
    pub established: usize,
}

impl LoadPlan {
    /// `time_wait` TIME_WAIT and `established` held connections to `target`.
    pub fn new(target: &str, time_wait: u64, established: usize) -> LoadPlan {
        LoadPlan {
            target: target.parse().expect("a socket address"),
            time_wait,
            established,
        }
    }
}

/// The sockets a [`load`] keeps: listeners and both ends of the held
/// connections. Dropping it closes them (the TIME_WAIT sockets stay their
/// 60 s).
#[derive(Debug, Default)]
pub struct Load {
    /// Listening sockets, one per plan with held connections.
    pub listeners: Vec<TcpListener>,
    /// Both ends of every held connection.
    pub streams: Vec<TcpStream>,
}

/// How long a load may take in all.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes `plan` in the calling thread's namespace and returns once it is
/// quiescent: every churned connection is in TIME_WAIT on the client side and
/// gone on the server side, every held one ESTABLISHED at both ends, no
/// thread left serving. Until the TIME_WAIT sockets expire (60 s), the
/// namespace's sockets do not change.
pub fn load(plan: &[LoadPlan]) -> io::Result<Load> {
    let deadline = Instant::now() + LOAD_TIMEOUT;
    let mut kept = Load::default();
    for part in plan {
        if part.time_wait > 0 {
            let server = Server::start(part.target, 1)?;
            let stats = churn(
                &[part.target],
                &ChurnOptions {
                    count: part.time_wait,
                    max_duration: LOAD_TIMEOUT,
                    ..ChurnOptions::default()
                },
            );
            if stats.ok != part.time_wait {
                return Err(io::Error::other(format!(
                    "churn to {}: {} of {} connections ({:?})",
                    part.target, stats.ok, part.time_wait, stats.first_error
                )));
            }
            // A connection still in the accept queue when the listener closes
            // would be reset, and leave no TIME_WAIT: wait for all.
            wait_until(deadline, Duration::from_millis(2), || {
                let all = server.stats().accepted.load(Ordering::Relaxed) >= part.time_wait;
                Ok(all
                    .then_some(())
                    .ok_or_else(|| "the server did not accept all".to_string()))
            })?;
            drop(server);
        }
        if part.established > 0 {
            let socket = Socket::new(Domain::for_address(part.target), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            if part.target.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.bind(&part.target.into())?;
            socket.listen(1024)?;
            let listener: TcpListener = socket.into();
            for _ in 0..part.established {
                let client = TcpStream::connect_timeout(&part.target, Duration::from_secs(3))?;
                let (server, _) = listener.accept()?;
                kept.streams.push(client);
                kept.streams.push(server);
            }
            kept.listeners.push(listener);
        }
    }
    settle(deadline)?;
    Ok(kept)
}

/// Waits until no TCP socket of the calling thread's namespace is between
/// states (`/proc/thread-self/net/tcp{,6}`: only ESTABLISHED, TIME_WAIT and
/// LISTEN left).
fn settle(deadline: Instant) -> io::Result<()> {
    wait_until(deadline, Duration::from_millis(5), || {
        let mut transient = 0;
        for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            transient += text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(3))
                .filter(|state| !matches!(*state, "01" | "06" | "0A"))
                .count();
        }
        Ok((transient == 0)
            .then_some(())
            .ok_or_else(|| format!("{transient} sockets still between states")))
    })
}

/// A network namespace held only by a bind mount under `/run/twscope-pods`
/// (as Docker's `/var/run/docker/netns/<id>`), with loopback up and no
/// process in it. Unmounted (and so freed, once its sockets are gone) on drop.
#[derive(Debug)]
pub struct NetnsMount {
    path: PathBuf,
    mounted: bool,
    inode: u64,
}

impl NetnsMount {
    /// Makes the namespace (`unshare --net=FILE`), with its file readable by
    /// all (so that an unprivileged reader fails at `setns`, not `open`).
    pub fn new() -> io::Result<NetnsMount> {
        let dir = Path::new(MOUNT_DIR);
        let path = dir.join(new_hex(12));
        {
            let mut created = created();
            if !dir.exists() {
                std::fs::create_dir(dir)?;
                created.insert(dir.to_path_buf());
            }
            std::fs::write(&path, "")?;
        }
        let mut ns = NetnsMount {
            path,
            mounted: false,
            inode: 0,
        };
        std::fs::set_permissions(&ns.path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        run(Command::new("unshare")
            .arg(os(["--net=", &ns.path.display().to_string()]))
            .arg("true"))?;
        ns.mounted = true;
        ns.inode = std::fs::metadata(&ns.path)?.ino();
        run(command_in(&ns.path, "ip").args(["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// The mount point (the namespace file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace's inode.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Runs `f` on a new thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        run_in(&self.path, f)
    }

    /// [`load_in`] this namespace.
    pub fn load(&self, plan: &[LoadPlan]) -> io::Result<Load> {
        load_in(&self.path, plan)
    }
}

impl Drop for NetnsMount {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(c) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let mut created = created();
        let _ = std::fs::remove_file(&self.path);
        let dir = Path::new(MOUNT_DIR);
        if created.contains(dir) && std::fs::remove_dir(dir).is_ok() {
            created.remove(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0d3f9b7c-1a2b-4c5d-8e9f-0a1b2c3d4e5f";

    fn spec(runtime: Runtime, driver: Driver, qos: Qos) -> PodSpec {
        let mut spec = PodSpec::kubernetes("api-7d9f8-x2kq", runtime, driver, qos);
        spec.kube.as_mut().unwrap().uid = UID.to_string();
        spec
    }

    #[test]
    fn cgroup_paths_are_spelt_as_the_kubelet_and_the_runtimes_spell_them() {
        let id = "ab".repeat(32);
        let path = |s: PodSpec| s.cgroup_path(&id).unwrap();
        assert_eq!(
            path(spec(Runtime::Containerd, Driver::Systemd, Qos::Burstable)),
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d3f9b7c_1a2b_4c5d_8e9f_0a1b2c3d4e5f.slice/cri-containerd-{id}.scope"
            )
        );
        assert_eq!(
            path(spec(Runtime::CriO, Driver::Systemd, Qos::Guaranteed)),
            format!("/kubepods.slice/kubepods-pod0d3f9b7c_1a2b_4c5d_8e9f_0a1b2c3d4e5f.slice/crio-{id}.scope")
        );
        assert_eq!(
            path(spec(Runtime::Containerd, Driver::Cgroupfs, Qos::BestEffort)),
            format!("/kubepods/besteffort/pod{UID}/{id}")
        );
        assert_eq!(
            path(spec(Runtime::CriO, Driver::Cgroupfs, Qos::Guaranteed)),
            format!("/kubepods/pod{UID}/crio-{id}")
        );
        let docker = |d| PodSpec::container("c", Runtime::Docker, d).cgroup_path(&id).unwrap();
        assert_eq!(docker(Driver::Cgroupfs), format!("/docker/{id}"));
        assert_eq!(docker(Driver::Systemd), format!("/system.slice/docker-{id}.scope"));
        assert!(PodSpec::container("c", Runtime::CriO, Driver::Systemd)
            .cgroup_path(&id)
            .is_err());
    }

    #[test]
    fn ids_look_like_the_runtimes_and_the_api_servers() {
        let id = new_hex(64);
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, new_hex(64));
        let uid = new_uid();
        let groups: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
        assert_eq!(&uid[14..15], "4");
        assert!(check_comm("nginx").is_ok());
        assert!(check_comm("a-name-too-long-for-comm").is_err());
        assert!(check_comm("a/b").is_err());
    }
}
