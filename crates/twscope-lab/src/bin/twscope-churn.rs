//! `twscope-churn`: a client workload inside a network namespace, for tests
//! and benchmarks. By default it starts a server on every target, churns
//! `--count` connections over them (bounded by `--max-seconds`), and exits;
//! the client TIME_WAIT sockets stay behind in the namespace for 60 s.
//!
//! The tracer's tests run it as the applications of an incident: a service
//! that opens a connection per request (`--request`), a pooled one at the
//! same request rate (`--pool N`), a server other clients share (`--serve`),
//! blocking or non-blocking connects (`--blocking`), and it counts what it
//! did itself (`--json`, `--progress FILE`) for the tracer to be checked
//! against.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use twscope_lab::{churn_with, hold, ChurnOptions, ChurnStats, Progress, Server};

#[derive(Debug, Parser)]
#[command(name = "twscope-churn")]
struct Args {
    /// Enter this network namespace first (name, path or PID).
    #[arg(long)]
    netns: Option<String>,
    /// Where to connect (round robin).
    #[arg(long = "target", required = true)]
    targets: Vec<SocketAddr>,
    /// Connections (or, with --pool, requests) in all.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Paced to this many per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Hard stop.
    #[arg(long, default_value_t = 55, value_parser = clap::value_parser!(u64).range(1..=600))]
    max_seconds: u64,
    /// Send a request and read the reply on each connection.
    #[arg(long)]
    request: bool,
    /// Plain blocking connect() instead of a non-blocking one with a timeout.
    #[arg(long)]
    blocking: bool,
    /// A connection pool: open N connections once and send the requests over
    /// them.
    #[arg(long, value_name = "N")]
    pool: Option<usize>,
    /// Only serve the targets until --max-seconds (or SIGTERM): the server
    /// other clients share.
    #[arg(long, conflicts_with_all = ["pool", "no_server"])]
    serve: bool,
    /// The targets are served by another process.
    #[arg(long)]
    no_server: bool,
    /// Print what this process counted as JSON on stdout at the end.
    #[arg(long)]
    json: bool,
    /// The process's name (`comm`, as `ps` and the tracer show it), so that
    /// the applications of a test or a demo can be told apart.
    #[arg(long, value_name = "NAME")]
    comm: Option<String>,
    /// Append `unix_seconds attempts failed addr_not_available` to FILE every
    /// 100 ms, for rates over any window.
    #[arg(long, value_name = "FILE")]
    progress: Option<std::path::PathBuf>,
}

static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_signal: libc::c_int) {
    TERMINATED.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(name) = &args.comm {
        // Before any thread starts: PR_SET_NAME names the calling thread, and
        // the main thread's name is the process's.
        let name = std::ffi::CString::new(name.as_bytes()).unwrap_or_default();
        // SAFETY: a NUL-terminated string the kernel copies (up to 15 bytes).
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
    if let Some(ns) = &args.netns {
        let entered = twscope_core::netns::NetnsSpec::parse(ns).and_then(|spec| twscope_core::netns::enter(&spec));
        if let Err(e) = entered {
            eprintln!("twscope-churn: {e}");
            return ExitCode::from(3);
        }
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
    let mut servers = Vec::new();
    if !args.no_server {
        for target in &args.targets {
            match Server::start(*target, 1) {
                Ok(server) => servers.push(server),
                Err(e) => {
                    eprintln!("twscope-churn: cannot listen on {target}: {e}");
                    return ExitCode::from(3);
                }
            }
        }
    }
    if args.serve {
        let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
        while Instant::now() < deadline && !TERMINATED.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return ExitCode::SUCCESS;
    }
    let progress = Progress::default();
    let done = AtomicBool::new(false);
    let stats = std::thread::scope(|scope| {
        if let Some(path) = &args.progress {
            let (progress, done) = (&progress, &done);
            scope.spawn(move || write_progress(path, progress, done));
        }
        let stop = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if TERMINATED.load(Ordering::Relaxed) {
                    progress.stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let stats = match args.pool {
            Some(size) => pooled(&args, size, &progress),
            None => churn_with(
                &args.targets,
                &ChurnOptions {
                    count: args.count,
                    rate_per_s: args.rate,
                    max_duration: Duration::from_secs(args.max_seconds),
                    threads: args.threads,
                    request: args.request,
                    blocking: args.blocking,
                    ..ChurnOptions::default()
                },
                &progress,
            ),
        };
        done.store(true, Ordering::Relaxed);
        let _ = stop.join();
        stats
    });
    // Let the servers see the last FINs and close their ends.
    std::thread::sleep(Duration::from_millis(200));
    drop(servers);
    if args.json {
        println!(
            "{{\"pid\": {}, \"attempts\": {}, \"ok\": {}, \"failed\": {}, \"addr_not_available\": {}, \"elapsed_s\": {:.3}}}",
            std::process::id(),
            stats.ok + stats.failed,
            stats.ok,
            stats.failed,
            stats.addr_not_available,
            stats.elapsed.as_secs_f64()
        );
    }
    eprintln!(
        "twscope-churn: {} ok, {} failed ({} EADDRNOTAVAIL) in {:.1} s ({:.0}/s){}",
        stats.ok,
        stats.failed,
        stats.addr_not_available,
        stats.elapsed.as_secs_f64(),
        stats.rate(),
        stats
            .first_error
            .as_ref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    if stats.failed > 0 || stats.ok < args.count {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A pool of `size` connections, opened once; `--count` requests at
/// `--rate` over them, round robin.
fn pooled(args: &Args, size: usize, progress: &Progress) -> ChurnStats {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.max_seconds);
    let mut pool = match hold(&args.targets, size) {
        Ok(pool) => pool,
        Err(e) => {
            return ChurnStats {
                failed: 1,
                first_error: Some(format!("opening the pool: {e}")),
                elapsed: start.elapsed(),
                ..ChurnStats::default()
            }
        }
    };
    let mut first_error = None;
    for i in 0..args.count {
        if progress.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if let Some(rate) = args.rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let stream = &mut pool[(i as usize) % size];
        let result = twscope_lab::churn::request(stream);
        progress.record(&result, start);
        if let Err(e) = result {
            first_error.get_or_insert_with(|| e.to_string());
        }
    }
    ChurnStats {
        ok: progress.ok.load(Ordering::Relaxed),
        failed: progress.failed.load(Ordering::Relaxed),
        addr_not_available: progress.addr_not_available.load(Ordering::Relaxed),
        first_addr_not_available: progress.first_addr_not_available(),
        first_error,
        elapsed: start.elapsed(),
    }
}

fn write_progress(path: &std::path::Path, progress: &Progress, done: &AtomicBool) {
    let Ok(mut file) = std::fs::File::create(path) else {
        eprintln!("twscope-churn: cannot write {}", path.display());
        return;
    };
    loop {
        let finished = done.load(Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let ok = progress.ok.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        let _ = writeln!(
            file,
            "{:.3} {} {} {}",
            now.as_secs_f64(),
            ok + failed,
            failed,
            progress.addr_not_available.load(Ordering::Relaxed)
        );
        if finished {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
