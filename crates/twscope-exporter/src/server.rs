//! The HTTP(S) server: `/metrics`, `/` and `/healthz`, hardened for a
//! network where any client may be hostile.
//!
//! What one client can cost is bounded by properties of the server
//! ([`Limits`]), not by special cases:
//!
//! - **Time.** Headers must arrive within `header_timeout`, a TLS handshake
//!   within the same, and a connection with no bytes moving for
//!   `idle_timeout` is closed (a silent client, an idle keep-alive, a reader
//!   that stopped reading). A scrape is bounded by the snapshot timeout.
//! - **Connections.** At most `max_connections` at once, kept below the
//!   process's descriptor limit. A new connection at the cap closes the one
//!   idle the longest, connections that never completed a request first (an
//!   honest scrape always gets in, and a scraper's keep-alive survives, while attackers merely
//!   hold sockets); when every connection is busy, it is answered by a small
//!   overflow lane — `/healthz` gets its `ok`, anything else a 503 — and
//!   closed. Accept errors back off instead of spinning.
//! - **Memory.** Request heads are capped at [`MAX_REQUEST_HEAD`] bytes;
//!   the auth cache holds only successful credentials, bounded in bytes.
//! - **CPU.** bcrypt runs on at most `bcrypt_workers` threads with at most
//!   `bcrypt_queue` checks waiting; beyond that a guess gets 429 without any
//!   work, and a remembered success skips bcrypt altogether.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::snapshot::Snapshots;
use crate::web_config::{Credentials, WebConfig};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Largest request head (request line and headers) read; a larger one is
/// answered 431 and the connection closed. Prometheus sends a few hundred bytes.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Descriptors kept free of connections for the listener, the netlink
/// socket, `/proc` reads, TLS files and the runtime.
pub const RESERVED_FDS: u64 = 64;

/// What any one client, and all of them together, may cost the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Time to send the request head (and to finish a TLS handshake).
    pub header_timeout: Duration,
    /// A connection with no bytes moving this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// bcrypt checks running at once (each takes one thread).
    pub bcrypt_workers: usize,
    /// bcrypt checks waiting for a worker; past it a request gets 429.
    pub bcrypt_queue: usize,
}

impl Default for Limits {
    /// Header and handshake 10 s; idle 75 s — longer than a 60 s scrape
    /// interval, so Prometheus's keep-alive survives between scrapes, and well
    /// under the 2 minutes an idle socket could otherwise hold; 512
    /// connections; 2 bcrypt workers with 16 waiting.
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 512,
            bcrypt_workers: 2,
            bcrypt_queue: 16,
        }
    }
}

impl ServerStats {
    /// The counters as plain numbers.
    pub fn counts(&self) -> crate::metrics::ProtectionCounts {
        crate::metrics::ProtectionCounts {
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            auth_throttled: self.auth_throttled.load(Ordering::Relaxed),
        }
    }
}

impl Limits {
    /// Raises the soft descriptor limit to the hard one and lowers
    /// `max_connections` to fit under it with [`RESERVED_FDS`] to spare.
    /// Returns the descriptor limit in force; an error when it leaves room
    /// for fewer than 8 connections.
    pub fn fit_descriptor_limit(&mut self) -> io::Result<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write/read the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        let room = limit.rlim_cur.saturating_sub(RESERVED_FDS);
        if room < 8 {
            return Err(io::Error::other(format!(
                "the open-file limit is {}, too low to serve: raise it (ulimit -n, LimitNOFILE=) to at least {}",
                limit.rlim_cur,
                RESERVED_FDS + 64
            )));
        }
        self.max_connections = self.max_connections.min(usize::try_from(room).unwrap_or(usize::MAX));
        Ok(limit.rlim_cur)
    }
}

/// Counters of the protections at work, exported as the
/// `twscope_exporter_*_total` metrics.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections closed to make room for a new one at the cap.
    pub evicted: AtomicU64,
    /// Connections refused at the cap (every connection busy).
    pub refused: AtomicU64,
    /// Connections closed for idleness or a slow head/handshake.
    pub timed_out: AtomicU64,
    /// Requests answered 429 because the bcrypt queue was full.
    pub auth_throttled: AtomicU64,
}

/// Everything a request needs.
pub struct Exporter {
    /// The shared kernel dump.
    pub snapshots: Snapshots,
    /// TLS and basic auth, when `--web.config.file` was given.
    pub web: Option<WebConfig>,
    /// What a client may cost.
    pub limits: Limits,
    /// The protections' counters (shared with the snapshots, which export them).
    pub stats: Arc<ServerStats>,
    bcrypt: Semaphore,
    bcrypt_waiting: AtomicUsize,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    overflow: Arc<Semaphore>,
    epoch: Instant,
}

/// Requests answered at once by the overflow lane at the connection cap.
const OVERFLOW_LANE: usize = 16;

impl Exporter {
    /// An exporter serving `snapshots`, protected by `web`, within `limits`.
    pub fn new(snapshots: Snapshots, web: Option<WebConfig>, limits: Limits) -> Exporter {
        Exporter {
            stats: snapshots.server_stats(),
            snapshots,
            web,
            bcrypt: Semaphore::new(limits.bcrypt_workers.max(1)),
            bcrypt_waiting: AtomicUsize::new(0),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            overflow: Arc::new(Semaphore::new(OVERFLOW_LANE)),
            epoch: Instant::now(),
            limits,
        }
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new connection's slot, closing the longest-idle one when at the
    /// cap; `None` when every connection is busy.
    fn admit(&self) -> Option<Arc<Connection>> {
        let mut table = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= self.limits.max_connections {
            let victim = table
                .values()
                .filter(|c| !c.busy.load(Ordering::Relaxed))
                // Never-answered connections (silent, slow or hostile) go
                // first, the longest idle of them; then answered ones.
                .min_by_key(|c| {
                    (
                        c.served.load(Ordering::Relaxed),
                        c.last_active_ms.load(Ordering::Relaxed),
                    )
                })
                .map(|c| c.id)?;
            if let Some(victim) = table.remove(&victim) {
                victim.evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let connection = Arc::new(Connection::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.now_ms(),
        ));
        table.insert(connection.id, connection.clone());
        Some(connection)
    }

    fn release(&self, id: u64) {
        self.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// One connection's state, shared by its task, its I/O and the table.
#[derive(Debug)]
struct Connection {
    id: u64,
    /// A request is being handled: not idle, not to be evicted.
    busy: AtomicBool,
    /// It has been answered at least once: an honest keep-alive scraper,
    /// evicted only after every connection that never sent a whole request.
    served: AtomicBool,
    /// Milliseconds since the exporter's epoch of the last byte moved.
    last_active_ms: AtomicU64,
    /// Closes the connection (eviction at the cap).
    evict: Notify,
}

impl Connection {
    fn new(id: u64, now_ms: u64) -> Connection {
        Connection {
            id,
            busy: AtomicBool::new(false),
            served: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(now_ms),
            evict: Notify::new(),
        }
    }
}

/// I/O that records when bytes last moved.
struct Tracked<T> {
    inner: T,
    connection: Arc<Connection>,
    exporter: Arc<Exporter>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        self.connection
            .last_active_ms
            .store(self.exporter.now_ms(), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once the connection has moved no bytes for `idle` while not busy.
async fn idle_expiry(exporter: &Exporter, connection: &Connection, idle: Duration) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let last = connection.last_active_ms.load(Ordering::Relaxed);
        let now = exporter.now_ms();
        if !connection.busy.load(Ordering::Relaxed) && now.saturating_sub(last) >= idle_ms {
            return;
        }
        let wait = (last + idle_ms).saturating_sub(now).max(100);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// OpenMetrics when the scraper asks for it (Prometheus does, first), else
/// the classic text format — what curl and older scrapers get.
fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"))
}

const LANDING: &str = "<!doctype html><html><head><title>twscope</title></head><body>\
<h1>twscope</h1><p>TCP ephemeral-port exhaustion exporter: TIME_WAIT, per-destination source-port \
headroom, close rates and time to exhaustion.</p>\
<ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"healthz\">healthz</a></li></ul></body></html>\n";

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = response(StatusCode::UNAUTHORIZED, "text/plain", "Unauthorized\n");
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"twscope\""));
    r
}

/// Whether the request may proceed: `Err` carries the answer to send instead.
async fn authorize(exporter: &Arc<Exporter>, req: &Request<Incoming>) -> Result<(), Response<Full<Bytes>>> {
    let Some(web) = &exporter.web else { return Ok(()) };
    let (header, user, password) = match web.check(req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes)) {
        Credentials::Accepted => return Ok(()),
        Credentials::Malformed => return Err(unauthorized()),
        Credentials::Unverified { header, user, password } => (header, user, password),
    };
    // Bounded queue: a flood of guesses waits in line up to bcrypt_queue
    // deep, and the rest are turned away at no cost.
    if exporter.bcrypt_waiting.fetch_add(1, Ordering::AcqRel) >= exporter.limits.bcrypt_queue {
        exporter.bcrypt_waiting.fetch_sub(1, Ordering::AcqRel);
        exporter.stats.auth_throttled.fetch_add(1, Ordering::Relaxed);
        let mut r = response(
            StatusCode::TOO_MANY_REQUESTS,
            "text/plain",
            "too many authentication attempts; retry\n",
        );
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    }
    let permit = exporter.bcrypt.acquire().await;
    exporter.bcrypt_waiting.fetch_sub(1, Ordering::AcqRel);
    let Ok(_permit) = permit else {
        return Err(unauthorized());
    };
    let owner = exporter.clone();
    // bcrypt is deliberately slow: keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || {
        owner
            .web
            .as_ref()
            .is_some_and(|web| web.verify(&header, &user, &password))
    })
    .await
    .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

async fn handle(exporter: Arc<Exporter>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    // Liveness probes carry no credentials and learn nothing from the answer.
    if req.uri().path() == "/healthz" {
        return response(StatusCode::OK, "text/plain", "ok\n");
    }
    if let Err(answer) = authorize(&exporter, &req).await {
        return answer;
    }
    match req.uri().path() {
        "/" => response(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        "/metrics" => match exporter.snapshots.get().await {
            Ok(snapshot) if wants_openmetrics(&req) => {
                response(StatusCode::OK, OPENMETRICS, snapshot.openmetrics.clone())
            }
            Ok(snapshot) => response(
                StatusCode::OK,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                snapshot.text.clone(),
            ),
            Err(e) => response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{e}\n")),
        },
        _ => response(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n"),
    }
}

/// Serves HTTP/1.1 on `io` (plain, or already through TLS) until the client
/// closes, a limit closes it, or the exporter evicts it.
async fn serve_http<IO>(io: IO, exporter: Arc<Exporter>, connection: Arc<Connection>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (exporter, connection) = (exporter.clone(), connection.clone());
        service_fn(move |req| {
            let (exporter, connection) = (exporter.clone(), connection.clone());
            async move {
                connection.busy.store(true, Ordering::Relaxed);
                let answer = handle(exporter.clone(), req).await;
                connection.last_active_ms.store(exporter.now_ms(), Ordering::Relaxed);
                connection.busy.store(false, Ordering::Relaxed);
                connection.served.store(true, Ordering::Relaxed);
                Ok::<_, Infallible>(answer)
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // half_close: a client that sends its request and then shuts down its
    // write side (printf … | nc -N) still gets the answer.
    http.timer(TokioTimer::new())
        .header_read_timeout(exporter.limits.header_timeout)
        .max_buf_size(MAX_REQUEST_HEAD)
        .half_close(true);
    if let Err(e) = http.serve_connection(TokioIo::new(io), service).await {
        if e.is_timeout() {
            exporter.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves one connection with every per-connection limit (head timeout,
/// idle timeout, head size, auth bounds), outside the connection table.
/// The server uses the same path; this entry point is for fuzzing and tests
/// over in-memory I/O.
pub async fn serve_connection<IO>(io: IO, exporter: Arc<Exporter>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = Arc::new(Connection::new(u64::MAX, exporter.now_ms()));
    let io = Tracked {
        inner: io,
        connection: connection.clone(),
        exporter: exporter.clone(),
    };
    let idle = exporter.limits.idle_timeout;
    tokio::select! {
        () = serve_http(io, exporter.clone(), connection.clone()) => {}
        () = idle_expiry(&exporter, &connection, idle) => {}
    }
}

/// One admitted TCP connection: TLS within the head timeout, then HTTP,
/// until done, idle or evicted. Removes itself from the table at the end.
async fn connection_task(
    stream: TcpStream,
    exporter: Arc<Exporter>,
    connection: Arc<Connection>,
    tls: Option<TlsAcceptor>,
) {
    struct Release(Arc<Exporter>, u64);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.release(self.1);
        }
    }
    let _release = Release(exporter.clone(), connection.id);
    let io = Tracked {
        inner: stream,
        connection: connection.clone(),
        exporter: exporter.clone(),
    };
    let limits = exporter.limits.clone();
    let serve = async {
        match tls {
            Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => serve_http(stream, exporter.clone(), connection.clone()).await,
                // A failed handshake (plain HTTP to a TLS port, wrong CA) ends this connection only.
                Ok(Err(_)) => {}
                Err(_) => {
                    exporter.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            },
            None => serve_http(io, exporter.clone(), connection.clone()).await,
        }
    };
    tokio::select! {
        () = serve => {}
        () = connection.evict.notified() => {}
        () = idle_expiry(&exporter, &connection, limits.idle_timeout) => {
            exporter.stats.timed_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// At the cap with every connection busy: read the request line briefly,
/// answer `/healthz` with ok and anything else with 503, then close. Plain
/// HTTP only; a TLS client is closed (no handshake is spent on it).
async fn overflow_answer(mut stream: TcpStream, tls: bool) {
    if tls {
        return;
    }
    let mut head = [0u8; 256];
    let n = match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut head)).await {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let answer: &[u8] = if head[..n].starts_with(b"GET /healthz ") || head[..n].starts_with(b"HEAD /healthz ") {
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n"
    } else {
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\ncontent-length: 21\r\n\
          connection: close\r\n\r\ntoo many connections\n"
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
}

/// Whether an accept error concerns only the connection being accepted (try
/// the next at once) rather than the process (back off).
fn affects_one_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EAGAIN | libc::EINTR)
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    exporter: Exporter,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let tls = exporter.web.as_ref().and_then(|w| w.tls.clone()).map(TlsAcceptor::from);
    let exporter = Arc::new(exporter);
    let mut backoff = Duration::ZERO;
    let mut last_report: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) if affects_one_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: retrying at once would spin.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if last_report.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    // Not eprintln!: a closed stderr must not panic the server.
                    let _ = writeln!(
                        std::io::stderr(),
                        "twscope serve: accepting connections failed: {e}; retrying (raise the open-file limit?)"
                    );
                    last_report = Some(Instant::now());
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => return Ok(()),
                }
            }
        };
        let _ = stream.set_nodelay(true);
        match exporter.admit() {
            Some(connection) => {
                tokio::spawn(connection_task(stream, exporter.clone(), connection, tls.clone()));
            }
            None => {
                exporter.stats.refused.fetch_add(1, Ordering::Relaxed);
                if let Ok(permit) = exporter.overflow.clone().try_acquire_owned() {
                    let tls = tls.is_some();
                    tokio::spawn(async move {
                        overflow_answer(stream, tls).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}
