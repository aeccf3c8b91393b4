//! Loading, attaching and reading the kernel half.
//!
//! Every attachment is a file descriptor the [`Tracer`] owns (the programs,
//! their perf-event links, the maps): dropping it — at the end, on an error
//! half-way through attaching, on Ctrl-C, or when the process dies — detaches
//! everything. Nothing is pinned, so nothing outlives the process.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use aya::maps::{Array, HashMap, MapData, RingBuf};
use aya::programs::TracePoint;
use aya::Ebpf;
use twscope_core::trace::{Failure, Flow, Losses};

use crate::abi::{self, FlowKey, FlowStats};

/// The compiled kernel half, committed beside its source (`bpf/build.sh`).
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/tcptrace.bpf.o");

/// The program (its function name in `bpf/tcptrace.bpf.c`) and the
/// tracepoint (category, event) it attaches to.
pub const TRACEPOINTS: [(&str, &str, &str); 3] = [
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
];

/// What the privilege message names.
pub const PRIVILEGES: &str = "CAP_BPF and CAP_PERFMON (or root)";

/// Why the tracer could not start or read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Loading or attaching was refused.
    #[error("tracing needs {PRIVILEGES}: {0}")]
    Privileges(String),
    /// tracefs is not mounted and could not be.
    #[error("tracefs is not mounted and mounting it failed ({0}); mount it with `mount -t tracefs nodev /sys/kernel/tracing` (needs CAP_SYS_ADMIN)")]
    Tracefs(io::Error),
    /// The kernel refused the object or a program.
    #[error("loading the tracer: {0}")]
    Load(String),
    /// A tracepoint could not be attached (everything already attached is
    /// detached again).
    #[error("attaching to tracepoint {tracepoint}: {message}")]
    Attach {
        /// `category:event`.
        tracepoint: String,
        /// The kernel's or aya's reason.
        message: String,
    },
    /// A map could not be read.
    #[error("reading the tracer's map {map}: {message}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The reason.
        message: String,
    },
}

/// An error's whole chain in one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether an error came from EPERM or EACCES somewhere in its chain.
fn denied(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// Mounts tracefs at `/sys/kernel/tracing` unless it (or the debugfs copy) is
/// there already: attaching to a tracepoint reads its id from it.
pub fn ensure_tracefs() -> Result<(), TraceError> {
    let mounted = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"]
        .iter()
        .any(|p| Path::new(p).is_dir());
    if mounted {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: constant NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(TraceError::Tracefs(io::Error::last_os_error()))
    }
}

/// Whether this process has the capabilities to load and attach the tracer.
fn capable() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true; // let the kernel decide
    };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    let has = |bit: u32| effective & (1 << bit) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn flows_error(e: aya::maps::MapError) -> TraceError {
    TraceError::Map {
        map: "flows",
        message: chain(&e),
    }
}

fn flows_missing() -> TraceError {
    TraceError::Map {
        map: "flows",
        message: "missing from the object".into(),
    }
}

/// The attached tracer.
pub struct Tracer {
    ebpf: Ebpf,
    failures: RingBuf<MapData>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl Tracer {
    /// Loads the kernel half and attaches it to its three tracepoints.
    pub fn attach() -> Result<Tracer, TraceError> {
        Tracer::attach_to(&TRACEPOINTS)
    }

    /// Loads the kernel half and attaches the given programs; on any error
    /// whatever was attached is detached before returning.
    pub fn attach_to(points: &[(&str, &str, &str)]) -> Result<Tracer, TraceError> {
        if !capable() {
            return Err(TraceError::Privileges(
                "this process has neither CAP_SYS_ADMIN nor both CAP_BPF and CAP_PERFMON".into(),
            ));
        }
        ensure_tracefs()?;
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| {
            if denied(&e) {
                TraceError::Privileges(chain(&e))
            } else {
                TraceError::Load(chain(&e))
            }
        })?;
        for (program, category, event) in points {
            let tracepoint = format!("{category}:{event}");
            let attach_error = |message: String| TraceError::Attach {
                tracepoint: tracepoint.clone(),
                message,
            };
            let prog: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| attach_error(format!("no program {program} in the object")))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| attach_error(chain(&e)))?;
            prog.load().map_err(|e| {
                if denied(&e) {
                    TraceError::Privileges(chain(&e))
                } else {
                    TraceError::Load(format!("{program}: {}", chain(&e)))
                }
            })?;
            prog.attach(category, event).map_err(|e| {
                if denied(&e) {
                    TraceError::Privileges(chain(&e))
                } else {
                    attach_error(chain(&e))
                }
            })?;
        }
        let failures = ebpf
            .take_map("failures")
            .ok_or_else(|| TraceError::Load("no map `failures` in the object".into()))
            .and_then(|m| {
                RingBuf::try_from(m).map_err(|e| TraceError::Map {
                    map: "failures",
                    message: chain(&e),
                })
            })?;
        Ok(Tracer { ebpf, failures })
    }

    /// Every flow counted since attach (a live view: the kernel keeps
    /// counting while this reads).
    pub fn flows(&self) -> Result<Vec<Flow>, TraceError> {
        let map = self.ebpf.map("flows").ok_or_else(flows_missing)?;
        let flows: HashMap<&MapData, FlowKey, FlowStats> = HashMap::try_from(map).map_err(flows_error)?;
        let mut out = Vec::new();
        for entry in flows.iter() {
            match entry {
                Ok((key, stats)) => out.push(abi::flow(&key, &stats)),
                // An entry removed between its key and its value: skip it.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(flows_error(e)),
            }
        }
        Ok(out)
    }

    /// The PIDs with a flow, keys only: half the syscalls of [`Tracer::flows`],
    /// for a caller that polls only to learn new processes.
    pub fn pids(&self) -> Result<BTreeSet<u32>, TraceError> {
        let map = self.ebpf.map("flows").ok_or_else(flows_missing)?;
        let flows: HashMap<&MapData, FlowKey, FlowStats> = HashMap::try_from(map).map_err(flows_error)?;
        Ok(flows.keys().filter_map(Result::ok).map(|k| k.tgid).collect())
    }

    /// Removes the flows of `pids` (processes that exited) from the kernel's
    /// map, so it never fills on a long-running host; returns how many went.
    pub fn forget(&mut self, pids: &BTreeSet<u32>) -> Result<usize, TraceError> {
        let map = self.ebpf.map_mut("flows").ok_or_else(flows_missing)?;
        let mut flows: HashMap<&mut MapData, FlowKey, FlowStats> = HashMap::try_from(map).map_err(flows_error)?;
        let doomed: Vec<FlowKey> = flows
            .keys()
            .filter_map(Result::ok)
            .filter(|k| pids.contains(&k.tgid))
            .collect();
        let mut removed = 0;
        for key in &doomed {
            if flows.remove(key).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Moves the failure events waiting in the ring buffer into `out`.
    pub fn drain_failures(&mut self, out: &mut Vec<Failure>) {
        while let Some(item) = self.failures.next() {
            if let Some(f) = abi::failure(&item) {
                out.push(f);
            }
        }
    }

    /// What the kernel half could not record.
    pub fn losses(&self) -> Losses {
        let read = || -> Option<[u64; 3]> {
            let counters: Array<&MapData, u64> = Array::try_from(self.ebpf.map("counters")?).ok()?;
            Some([0, 1, 2].map(|i| counters.get(&i, 0).unwrap_or(0)))
        };
        let [events_dropped, flows_full, sockets_full] = read().unwrap_or_default();
        Losses {
            events_dropped,
            flows_full,
            sockets_full,
        }
    }
}

/// The names of this tracer's programs the kernel has loaded now, from any
/// process: empty once every tracer has detached (a test's proof).
pub fn loaded_programs() -> Vec<String> {
    let ours: Vec<&str> = TRACEPOINTS.iter().map(|(p, _, _)| *p).collect();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| {
            let name = String::from_utf8_lossy(info.name()).into_owned();
            // The kernel keeps 15 bytes of a program's name.
            ours.iter()
                .any(|o| !name.is_empty() && o.starts_with(&name))
                .then_some(name)
        })
        .collect()
}
