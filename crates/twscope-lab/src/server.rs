//! A small TCP server that behaves like a database or API the client talks to:
//! it accepts, answers every request with a short reply, and closes only after
//! the client has closed — so TIME_WAIT lands on the client, where it costs
//! ephemeral ports.
//!
//! One `epoll` loop per thread (through `mio`) serves any mix of short-lived
//! and held connections without a thread per connection.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

/// The reply to every request.
pub const REPLY: &[u8] = b"OK\n";
/// Pending connections the kernel may queue: enough for a burst of churn.
const BACKLOG: i32 = 4096;
const LISTENER: Token = Token(usize::MAX);
/// How often a poll loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// What a server has seen.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections the client reset (RST, e.g. `SO_LINGER` 0) instead of closing.
    pub resets: AtomicU64,
}

/// A running server; stops and closes its connections on drop.
pub struct Server {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (port 0 picks one) with `threads` poll loops. The
    /// listening socket belongs to the calling thread's network namespace.
    pub fn start(addr: SocketAddr, threads: usize) -> io::Result<Server> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();
        let addr = listener.local_addr()?;
        let stats = Arc::new(ServerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..threads.max(1) {
            let listener = TcpListener::from_std(listener.try_clone()?);
            let (stats, stop) = (stats.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                if let Err(e) = serve(listener, &stats, &stop) {
                    eprintln!("twscope-lab server on {addr}: {e}");
                }
            }));
        }
        Ok(Server {
            addr,
            stats,
            stop,
            threads: handles,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has seen so far: connections accepted, requests answered,
    /// resets.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(mut listener: TcpListener, stats: &ServerStats, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut connections: HashMap<usize, TcpStream> = HashMap::new();
    let mut next_token = 0usize;
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            let token = next_token;
                            next_token = next_token.wrapping_add(1) % (usize::MAX - 1);
                            // Edge-triggered: read whatever came with the
                            // handshake now; keep the connection only if open.
                            if answer(&mut stream, stats) {
                                poll.registry()
                                    .register(&mut stream, Token(token), Interest::READABLE)?;
                                // Anything that arrived before registration.
                                if answer(&mut stream, stats) {
                                    connections.insert(token, stream);
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Out of descriptors or an aborted handshake: try again
                        // on the next event rather than spin.
                        Err(_) => break,
                    }
                }
            } else if let Some(stream) = connections.get_mut(&event.token().0) {
                if !answer(stream, stats) {
                    if let Some(mut stream) = connections.remove(&event.token().0) {
                        let _ = poll.registry().deregister(&mut stream);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Reads everything available, replying to each request. Returns whether the
/// connection is still open (false after the client closed or reset it).
fn answer(stream: &mut TcpStream, stats: &ServerStats) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                // A 3-byte reply always fits an empty send buffer.
                if stream.write(REPLY).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if e.kind() == io::ErrorKind::ConnectionReset {
                    stats.resets.fetch_add(1, Ordering::Relaxed);
                }
                return false;
            }
        }
    }
}
