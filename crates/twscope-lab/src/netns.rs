//! Throwaway network namespaces, made and removed with iproute2's `ip netns`.
//!
//! A namespace made here is tuned so that the TIME_WAIT population it gets is
//! exactly the one its clients create (see [`Netns::new`]).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Moves the calling thread into the network namespace at `path`. Threads it
/// spawns afterwards start there too. Needs `CAP_SYS_ADMIN`.
pub fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: setns on a descriptor that stays open for the call.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs a command, turning a non-zero exit into an error carrying its stderr.
fn run(command: &mut Command) -> io::Result<()> {
    let out = command.output().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot run {:?} ({e}): is iproute2 installed?", command.get_program()))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} {:?} failed: {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A named network namespace that exists as long as this value does.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `twscope-<tag>-<pid>-<n>` with loopback up and the settings that
    /// keep a TIME_WAIT population exact:
    ///
    /// - `tcp_tw_reuse=0` — a new namespace has 2, which lets loopback
    ///   connects take over TIME_WAIT sockets after 1 s;
    /// - `tcp_max_tw_buckets=4000000` — the default cap would silently skip
    ///   TIME_WAIT past it;
    /// - `tcp_rfc1337=1` — a stray RST must not kill a TIME_WAIT socket.
    pub fn new(tag: &str) -> io::Result<Netns> {
        let name = format!("twscope-{tag}-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        ns.set_sysctl("net.ipv4.tcp_tw_reuse", "0")?;
        ns.set_sysctl("net.ipv4.tcp_max_tw_buckets", "4000000")?;
        ns.set_sysctl("net.ipv4.tcp_rfc1337", "1")?;
        Ok(ns)
    }

    /// The name `ip netns list` shows.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file (`/run/netns/NAME`).
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `program` to be run inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Adds an address (`198.18.0.1/32`, `2001:2::1/128`) to the loopback device.
    pub fn add_address(&self, cidr: &str) -> io::Result<()> {
        self.add_address_to(cidr, "lo")
    }

    /// Adds an address to `device` (IPv6 without duplicate detection, so it is
    /// usable at once).
    pub fn add_address_to(&self, cidr: &str, device: &str) -> io::Result<()> {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name, "addr", "add", cidr, "dev", device]);
        if cidr.contains(':') {
            command.arg("nodad");
        }
        run(&mut command)
    }

    /// Runs `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Writes a sysctl of this namespace (`net.ipv4.tcp_tw_reuse`, `"1"`).
    pub fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = twscope_core::tune::proc_path(key);
        let value = value.to_string();
        // /proc/sys/net resolves to the namespace of the thread that opens it.
        self.run(move || std::fs::write(&path, value))?
            .map_err(|e| io::Error::new(e.kind(), format!("cannot set {key}: {e}")))
    }

    /// Reads a sysctl of this namespace.
    pub fn sysctl(&self, key: &str) -> io::Result<String> {
        let path = twscope_core::tune::proc_path(key);
        Ok(self.run(move || std::fs::read_to_string(path))??.trim().to_string())
    }

    /// Runs `f` on a new thread inside the namespace and returns its result.
    /// Sockets `f` creates belong to the namespace, and so do threads it spawns.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = self.path();
        let thread = std::thread::spawn(move || enter_netns(&path).map(|()| f()));
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The kernel frees the namespace once its last socket is gone.
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// A veth pair joining two namespaces, each end with an address.
///
/// Removed with its namespaces (deleting either end deletes both).
pub fn link_veth(a: &Netns, a_cidr: &str, b: &Netns, b_cidr: &str) -> io::Result<()> {
    let (a_dev, b_dev) = ("veth-a", "veth-b");
    a.ip(&["link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b.name()])?;
    a.add_address_to(a_cidr, a_dev)?;
    b.add_address_to(b_cidr, b_dev)?;
    a.ip(&["link", "set", a_dev, "up"])?;
    b.ip(&["link", "set", b_dev, "up"])?;
    Ok(())
}
