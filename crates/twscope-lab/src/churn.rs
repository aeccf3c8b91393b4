//! A bounded connection-churn client: what a service with a bypassed
//! connection pool does — connect, (send a request, read the reply,) close —
//! over and over. Each close leaves a TIME_WAIT socket behind for 60 s.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

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
    /// Source addresses to rotate over (bound with `IP_BIND_ADDRESS_NO_PORT`,
    /// so `connect()` still picks the port); empty = the kernel's choice.
    pub sources: Vec<IpAddr>,
    /// Close with `SO_LINGER` 0: a RST instead of a FIN, so no TIME_WAIT.
    pub linger_zero: bool,
    /// A plain blocking `connect()` (as most clients make) instead of a
    /// non-blocking one polled with a timeout; EADDRNOTAVAIL comes back
    /// synchronously from both.
    pub blocking: bool,
}

impl Default for ChurnOptions {
    fn default() -> ChurnOptions {
        ChurnOptions {
            count: 1000,
            rate_per_s: None,
            max_duration: Duration::from_secs(60),
            threads: 1,
            request: false,
            sources: Vec::new(),
            linger_zero: false,
            blocking: false,
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
    /// How long the churn ran, from its start to its last connection.
    pub elapsed: Duration,
}

impl ChurnStats {
    /// Connections per second achieved.
    pub fn rate(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Live counters of a running churn, for a caller sampling it meanwhile, and
/// a flag to stop it early.
#[derive(Debug, Default)]
pub struct Progress {
    /// Connections opened (and closed) successfully so far.
    pub ok: AtomicU64,
    /// Connections that failed so far.
    pub failed: AtomicU64,
    /// Of those, `connect()` failures with EADDRNOTAVAIL: no source port left.
    pub addr_not_available: AtomicU64,
    first_addr_not_available: Mutex<Option<Duration>>,
    /// Set to stop: the churn returns within one pacing interval.
    pub stop: AtomicBool,
}

impl Progress {
    /// Counts one connection or request; an EADDRNOTAVAIL (no source port
    /// left) also notes when, from `start`, the first one happened.
    pub fn record<T>(&self, result: &io::Result<T>, start: Instant) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    self.addr_not_available.fetch_add(1, Ordering::Relaxed);
                    self.first_addr_not_available
                        .lock()
                        .unwrap()
                        .get_or_insert(start.elapsed());
                }
            }
        }
    }

    /// When the first EADDRNOTAVAIL happened; `None` when none did.
    pub fn first_addr_not_available(&self) -> Option<Duration> {
        *self.first_addr_not_available.lock().unwrap()
    }
}

/// Opens and closes `options.count` connections to `targets` (round robin).
pub fn churn(targets: &[SocketAddr], options: &ChurnOptions) -> ChurnStats {
    churn_with(targets, options, &Progress::default())
}

/// [`churn`], counting into `progress` as it goes and stopping when
/// `progress.stop` is set.
pub fn churn_with(targets: &[SocketAddr], options: &ChurnOptions, progress: &Progress) -> ChurnStats {
    assert!(!targets.is_empty(), "churn needs at least one target");
    let start = Instant::now();
    let deadline = start + options.max_duration;
    let threads = options.threads.max(1) as u64;
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let first_error = &first_error;
            scope.spawn(move || {
                let mut i = thread;
                while i < options.count && !progress.stop.load(Ordering::Relaxed) {
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
                    let source = (!options.sources.is_empty())
                        .then(|| options.sources[(i % options.sources.len() as u64) as usize]);
                    let result = one_connection(target, source, options);
                    progress.record(&result, start);
                    if let Err(e) = result {
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("{target}: {e}"));
                    }
                    i += threads;
                }
            });
        }
    });
    ChurnStats {
        ok: progress.ok.load(Ordering::Relaxed),
        failed: progress.failed.load(Ordering::Relaxed),
        addr_not_available: progress.addr_not_available.load(Ordering::Relaxed),
        first_addr_not_available: progress.first_addr_not_available(),
        first_error: first_error.into_inner().unwrap(),
        elapsed: start.elapsed(),
    }
}

/// Opens a connection to `target`, from `source` when given, with the
/// options' linger; the caller's drop closes it.
pub fn connect(target: &SocketAddr, source: Option<IpAddr>, linger_zero: bool) -> io::Result<TcpStream> {
    if source.is_none() && !linger_zero {
        return TcpStream::connect_timeout(target, CONNECT_TIMEOUT);
    }
    let socket = Socket::new(Domain::for_address(*target), Type::STREAM, Some(Protocol::TCP))?;
    if linger_zero {
        socket.set_linger(Some(Duration::ZERO))?;
    }
    if let Some(source) = source {
        // Without IP_BIND_ADDRESS_NO_PORT, bind() would pick the port now,
        // exclusively for every destination, and the budget would be shared.
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect_timeout(&(*target).into(), CONNECT_TIMEOUT)?;
    Ok(socket.into())
}

/// One request on an open connection: send, and read the whole reply —
/// closing with unread data would send a RST instead of a FIN, and no
/// TIME_WAIT would follow.
pub fn request(stream: &mut TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    stream.write_all(b"GET\n")?;
    let mut reply = [0u8; crate::server::REPLY.len()];
    stream.read_exact(&mut reply)
}

fn one_connection(target: &SocketAddr, source: Option<IpAddr>, options: &ChurnOptions) -> io::Result<()> {
    let mut stream = if options.blocking && source.is_none() && !options.linger_zero {
        TcpStream::connect(target)?
    } else {
        connect(target, source, options.linger_zero)?
    };
    if options.request {
        request(&mut stream)?;
    }
    // Dropping closes: the client closes first and keeps the TIME_WAIT.
    Ok(())
}

/// Opens `count` connections over `targets` and keeps them open: a connection
/// pool, or ESTABLISHED sockets for a census to find.
pub fn hold(targets: &[SocketAddr], count: usize) -> io::Result<Vec<TcpStream>> {
    (0..count)
        .map(|i| TcpStream::connect_timeout(&targets[i % targets.len()], CONNECT_TIMEOUT))
        .collect()
}
