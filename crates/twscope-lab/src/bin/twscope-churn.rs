//! `twscope-churn`: builds a TIME_WAIT population inside a network namespace,
//! for benchmarks. It starts a server on every target, churns `--count`
//! connections over them (bounded by `--max-seconds`), and exits; the client
//! TIME_WAIT sockets stay behind in the namespace for 60 s.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use twscope_lab::{churn, ChurnOptions, Server};

/// Churn TCP connections into client-side TIME_WAIT, bounded in count and time.
#[derive(Debug, Parser)]
#[command(name = "twscope-churn")]
struct Args {
    /// Network namespace to work in: a name from `ip netns list` or a path.
    #[arg(long)]
    netns: Option<String>,
    /// Server address to churn against (repeatable); a server is started on it.
    #[arg(long = "target", required = true)]
    targets: Vec<SocketAddr>,
    /// Connections in all.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Connections per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Client threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop after this many seconds whatever is left.
    #[arg(long, default_value_t = 55, value_parser = clap::value_parser!(u64).range(1..=600))]
    max_seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(ns) = &args.netns {
        let entered = twscope_core::netns::NetnsSpec::parse(ns).and_then(|spec| twscope_core::netns::enter(&spec));
        if let Err(e) = entered {
            eprintln!("twscope-churn: {e}");
            return ExitCode::from(3);
        }
    }
    let mut servers = Vec::new();
    for target in &args.targets {
        match Server::start(*target, 1) {
            Ok(server) => servers.push(server),
            Err(e) => {
                eprintln!("twscope-churn: cannot listen on {target}: {e}");
                return ExitCode::from(3);
            }
        }
    }
    let stats = churn(
        &args.targets,
        &ChurnOptions {
            count: args.count,
            rate_per_s: args.rate,
            max_duration: Duration::from_secs(args.max_seconds),
            threads: args.threads,
            ..ChurnOptions::default()
        },
    );
    // Let the servers see the last FINs and close their ends.
    std::thread::sleep(Duration::from_millis(200));
    drop(servers);
    eprintln!(
        "twscope-churn: {} ok, {} failed in {:.1} s ({:.0}/s){}",
        stats.ok,
        stats.failed,
        stats.elapsed.as_secs_f64(),
        stats.rate(),
        stats
            .first_error
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    if stats.failed > 0 || stats.ok < args.count {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
