//! A bounded connection-churn client: what a service with a bypassed
//! connection pool does — connect, (send a request, read the reply,) close —
//! over and over. Each close leaves a TIME_WAIT socket behind for 60 s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What to churn.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnOptions {
    /// Connections to open and close, in all.
    pub count: u64,
    /// Paced to this many connections per second; `None` = as fast as possible.
    pub rate_per_s: Option<f64>,
    /// Hard stop, whatever is left of `count`.
    pub max_duration: Duration,
    /// Client threads.
    pub threads: usize,
    /// Send a request and wait for the reply before closing (as a real client
    /// does); without it the client closes right after the handshake.
    pub request: bool,
}

impl Default for ChurnOptions {
    fn default() -> ChurnOptions {
        ChurnOptions {
            count: 1000,
            rate_per_s: None,
            max_duration: Duration::from_secs(60),
            threads: 1,
            request: false,
        }
    }
}

/// What a churn achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChurnStats {
    /// Connections opened (and closed) successfully.
    pub ok: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Of those, `connect()` failures with EADDRNOTAVAIL: no source port left.
    pub addr_not_available: u64,
    /// When the first EADDRNOTAVAIL happened, from the start.
    pub first_addr_not_available: Option<Duration>,
    /// The first failure's error text, for reports.
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl ChurnStats {
    /// Connections per second achieved.
    pub fn rate(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Opens and closes `options.count` connections to `targets` (round robin).
pub fn churn(targets: &[SocketAddr], options: &ChurnOptions) -> ChurnStats {
    assert!(!targets.is_empty(), "churn needs at least one target");
    let start = Instant::now();
    let deadline = start + options.max_duration;
    let threads = options.threads.max(1) as u64;
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let not_available = AtomicU64::new(0);
    let first_not_available: Mutex<Option<Duration>> = Mutex::new(None);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (ok, failed, not_available) = (&ok, &failed, &not_available);
            let (first_not_available, first_error) = (&first_not_available, &first_error);
            scope.spawn(move || {
                let mut i = thread;
                while i < options.count {
                    if let Some(rate) = options.rate_per_s {
                        // Connection i is due at start + i / rate.
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    let target = &targets[(i % targets.len() as u64) as usize];
                    match one_connection(target, options.request) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                                not_available.fetch_add(1, Ordering::Relaxed);
                                first_not_available.lock().unwrap().get_or_insert(start.elapsed());
                            }
                            first_error.lock().unwrap().get_or_insert_with(|| format!("{target}: {e}"));
                        }
                    }
                    i += threads;
                }
            });
        }
    });
    ChurnStats {
        ok: ok.into_inner(),
        failed: failed.into_inner(),
        addr_not_available: not_available.into_inner(),
        first_addr_not_available: first_not_available.into_inner().unwrap(),
        first_error: first_error.into_inner().unwrap(),
        elapsed: start.elapsed(),
    }
}

fn one_connection(target: &SocketAddr, request: bool) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(target, CONNECT_TIMEOUT)?;
    if request {
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        stream.write_all(b"GET\n")?;
        // Read the whole reply: closing with unread data would send a RST
        // instead of a FIN, and no TIME_WAIT would follow.
        let mut reply = [0u8; crate::server::REPLY.len()];
        stream.read_exact(&mut reply)?;
    }
    // Dropping closes: the client closes first and keeps the TIME_WAIT.
    Ok(())
}

/// Opens `count` connections over `targets` and keeps them open: a connection
/// pool, or ESTABLISHED sockets for a census to find.
pub fn hold(targets: &[SocketAddr], count: usize) -> io::Result<Vec<TcpStream>> {
    (0..count).map(|i| TcpStream::connect_timeout(&targets[i % targets.len()], CONNECT_TIMEOUT)).collect()
}
