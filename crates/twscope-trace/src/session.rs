//! One traced window: attach, wait (learning who each new process is while
//! it still runs), read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use twscope_core::trace::{ProcessIdentity, Sample};

use crate::tracer::{TraceError, Tracer};

/// How often the window looks for new processes and drains the ring buffer:
/// a process that connects and exits within this time is reported with its
/// kernel name only.
const POLL: Duration = Duration::from_millis(100);

/// Who each PID seen is, read from `/proc` the first time it appears.
#[derive(Debug, Clone, Default)]
pub struct Identities(BTreeMap<u32, ProcessIdentity>);

impl Identities {
    /// Learns the PIDs not known yet.
    pub fn learn(&mut self, pids: impl IntoIterator<Item = u32>) {
        for pid in pids {
            self.0
                .entry(pid)
                .or_insert_with(|| ProcessIdentity::read(Path::new("/proc"), pid));
        }
    }

    /// Forgets the PIDs not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.0.retain(|pid, _| keep(*pid));
    }

    /// The map the core's report takes.
    pub fn map(&self) -> &BTreeMap<u32, ProcessIdentity> {
        &self.0
    }
}

/// What one window read.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// The counts and events.
    pub sample: Sample,
    /// Who the PIDs are.
    pub identities: Identities,
    /// Whether `stop` ended it before its time.
    pub interrupted: bool,
}

/// Traces for `duration` (or until `stop` is set) on an attached tracer.
pub fn window(tracer: &mut Tracer, duration: Duration, stop: &AtomicBool) -> Result<Window, TraceError> {
    let started = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut failures = Vec::new();
    let mut identities = Identities::default();
    let mut interrupted = false;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        std::thread::sleep(POLL.min(duration - elapsed));
        tracer.drain_failures(&mut failures);
        identities.learn(tracer.pids()?);
    }
    let duration_s = started.elapsed().as_secs_f64();
    tracer.drain_failures(&mut failures);
    let flows = tracer.flows()?;
    identities.learn(flows.iter().map(|f| f.pid));
    Ok(Window {
        sample: Sample {
            flows,
            failures,
            losses: tracer.losses(),
            started_unix_s,
            duration_s,
        },
        identities,
        interrupted,
    })
}
