//! `twscope`: the command-line front end over `twscope-core`.
//!
//! Exit codes: 0 ok, 1 warning, 2 critical, 3 any error. Errors are one line
//! on stderr saying what failed, why, and what to do — never a panic.

mod cli;
mod doctor_text;
mod lab_text;
mod plan_text;
mod status_text;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cli::{Cli, Command, DoctorArgs, LabArgs, PlanArgs, ServeArgs, StatusArgs, TuneArgs};
use twscope_core::doctor;
use twscope_core::kernel::Settings;
use twscope_core::netns::{self, NetnsSpec};
use twscope_core::plan::Workload;
use twscope_core::status::{Status, StatusOptions};
use twscope_core::tune;
use twscope_lab::lab::{self, LabOptions};

/// Exit code for every error (bad option, namespace, privileges, kernel).
const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Some(Command::Status(args)) => status(&args),
        Some(Command::Doctor(args)) => run_doctor(&args),
        Some(Command::Tune(args)) => run_tune(&args),
        Some(Command::Serve(args)) => run_serve(&args),
        Some(Command::Plan(args)) => plan(&args),
        Some(Command::Lab(args)) => run_lab(&args),
        None => status(&cli.status),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("twscope: error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// clap's help and version go to stdout with exit 0; a usage error becomes one
/// line plus a pointer to `--help`, exit 3 (1 and 2 mean warning and critical).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut first = lines.next().unwrap_or("invalid arguments").to_string();
    // "the following required arguments were not provided:" names them below.
    if first.ends_with(':') {
        if let Some(next) = lines.next() {
            first = format!("{first} {next}");
        }
    }
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    eprintln!("twscope: error: {first} (see 'twscope --help')");
    ExitCode::from(EXIT_ERROR)
}

fn status(args: &StatusArgs) -> Result<u8, String> {
    let status = collect(&args.options()?, args.netns.as_ref())?;
    let text = if args.json {
        json(&status)?
    } else {
        status_text::render(&status)
    };
    write_stdout(&text)?;
    Ok(status.verdict.severity.exit_code() as u8)
}

/// Enters the namespace (on the main thread: sockets and /proc/net follow
/// it, see twscope_core::netns::enter) and takes its census.
fn collect(options: &StatusOptions, spec: Option<&NetnsSpec>) -> Result<Status, String> {
    Status::collect(options, enter(spec)?).map_err(|e| e.to_string())
}

/// Moves the main thread into the namespace `spec` names, or names the
/// current one `host`.
fn enter(spec: Option<&NetnsSpec>) -> Result<netns::NetnsInfo, String> {
    match spec {
        Some(spec) => netns::enter(spec).map_err(|e| e.to_string()),
        None => netns::current("host").map_err(|e| format!("cannot identify the network namespace: {e}")),
    }
}

/// Every destination counts for the checklist, not just the top ten.
fn full_census(spec: Option<&NetnsSpec>) -> Result<Status, String> {
    collect(&StatusOptions { top: 0, ..StatusOptions::default() }, spec)
}

fn run_doctor(args: &DoctorArgs) -> Result<u8, String> {
    let status = full_census(args.netns.as_ref())?;
    let report = doctor::diagnose(&status);
    let text = if args.json { json(&report)? } else { doctor_text::render(&status, &report) };
    write_stdout(&text)?;
    Ok(report.exit_code() as u8)
}

fn run_tune(args: &TuneArgs) -> Result<u8, String> {
    // Refuse a --persist path that is not a regular file before anything is
    // applied, and even when there is nothing to change.
    if let Some(path) = &args.persist {
        tune::persist_target(path).map_err(|e| e.to_string())?;
    }
    let status = full_census(args.netns.as_ref())?;
    let changes = tune::recommend(&status, &doctor::diagnose(&status));
    if args.apply && !changes.is_empty() {
        tune::apply(&changes).map_err(|e| e.to_string())?;
    }
    if let (Some(path), false) = (&args.persist, changes.is_empty()) {
        tune::persist(&changes, path).map_err(|e| e.to_string())?;
    }
    let text = if args.k8s {
        doctor::remedies::kubernetes(&tune::proposed(&changes))
    } else if args.json {
        json(&serde_json::json!({
            "netns": status.netns,
            "changes": changes,
            "applied": args.apply && !changes.is_empty(),
            "persisted": args.persist.as_ref().filter(|_| !changes.is_empty()),
        }))?
    } else {
        doctor_text::render_tune(&status, &changes, args.apply, args.persist.as_deref())
    };
    write_stdout(&text)?;
    Ok(0)
}

fn seconds(name: &str, value: f64) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(value).map_err(|_| format!("{name} must be a number of seconds ≥ 0, not {value}"))
}

fn run_serve(args: &ServeArgs) -> Result<u8, String> {
    use twscope_exporter::{Exporter, Limits, SnapshotOptions, Snapshots, WebConfig};
    let web = match &args.web_config_file {
        Some(path) => Some(WebConfig::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let min_interval = seconds("--min-interval", args.min_interval)?;
    let timeout = seconds("--timeout", args.timeout)?;
    if timeout.is_zero() {
        return Err("--timeout must be above 0".to_string());
    }
    let mut limits = Limits {
        header_timeout: seconds("--web.header-timeout", args.header_timeout)?,
        idle_timeout: seconds("--web.idle-timeout", args.idle_timeout)?,
        max_connections: args.max_connections as usize,
        ..Limits::default()
    };
    if limits.header_timeout.is_zero() || limits.idle_timeout.is_zero() {
        return Err("--web.header-timeout and --web.idle-timeout must be above 0".to_string());
    }
    let fd_limit = limits.fit_descriptor_limit().map_err(|e| e.to_string())?;
    // Bind here, in the current namespace; then enter the one to export, so
    // every thread started afterwards (the dumps) runs there.
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on {}: {e} (is another exporter running? pick another --listen)", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let netns = enter(args.netns.as_ref())?;
    let scheme = if web.as_ref().is_some_and(|w| w.tls.is_some()) { "https" } else { "http" };
    eprintln!("twscope serve: listening on {scheme}://{local}/metrics, exporting netns {}", netns.name);
    eprintln!(
        "twscope serve: at most {} connections (open-file limit {fd_limit}), idle timeout {:?}, header timeout {:?}",
        limits.max_connections, limits.idle_timeout, limits.header_timeout
    );
    let snapshots = Snapshots::new(SnapshotOptions {
        min_interval,
        timeout,
        max_destinations: args.max_destinations,
        status: StatusOptions { top: 0, ..StatusOptions::default() },
        netns,
    });
    // Blocking threads run dumps (one at a time) and bcrypt checks (bounded
    // by Limits::bcrypt_workers): a handful is all they can use.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(async {
            let shutdown = async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            };
            twscope_exporter::serve(listener, Exporter::new(snapshots, web, limits), shutdown).await
        })
        .map_err(|e| format!("serving failed: {e}"))?;
    Ok(0)
}

fn plan(args: &PlanArgs) -> Result<u8, String> {
    let rate = match (args.rate, args.rps) {
        (Some(rate), _) => rate,
        (None, Some(rps)) => rps * f64::from(args.calls_per_request),
        (None, None) => return Err("give --rate, or --rps with --calls-per-request".to_string()),
    };
    // This host's settings fill in whatever was not given.
    let needs_host = args.range.is_none() || args.reserved.is_none() || args.tw_reuse.is_none() || args.reuse_delay_ms.is_none();
    let host = if needs_host {
        Some(Settings::read(Path::new("/proc")).map_err(|e| {
            format!("{e} (give --range, --reserved, --tw-reuse and --reuse-delay-ms to plan without this host)")
        })?)
    } else {
        None
    };
    let workload = Workload {
        rate_per_s: rate,
        destinations: args.destinations,
        source_ips: args.source_ips,
        range: args.range.or_else(|| host.as_ref().map(|s| (s.port_range_low, s.port_range_high))).expect("host read"),
        reserved: args.reserved.clone().or_else(|| host.as_ref().map(|s| s.reserved_ports.clone())).expect("host read"),
        // A planned destination is not loopback: tcp_tw_reuse=2 does not cover it.
        tw_reuse: args.tw_reuse.or_else(|| host.as_ref().map(|s| s.tcp_tw_reuse == 1 && s.tcp_timestamps != 0)).expect("host read"),
        reuse_delay_ms: args.reuse_delay_ms.or_else(|| host.as_ref().map(Settings::reuse_delay_ms)).expect("host read"),
        time_wait_s: args.time_wait,
        latency_ms: args.latency_ms,
    };
    workload.validate()?;
    let plan = workload.plan();
    let text = if args.json {
        json(&serde_json::json!({ "workload": plan_text::workload_json(&workload), "plan": plan }))?
    } else {
        plan_text::render(&workload, &plan)
    };
    write_stdout(&text)?;
    Ok(plan.severity.exit_code() as u8)
}

/// Set by SIGINT/SIGTERM: the lab stops its client and removes its namespaces.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

fn run_lab(args: &LabArgs) -> Result<u8, String> {
    if args.cleanup {
        let cleanup = twscope_lab::remove_leftovers().map_err(|e| e.to_string())?;
        let text = if args.json { json(&cleanup.removed)? } else { lab_text::cleanup(&cleanup) };
        write_stdout(&text)?;
        return match lab_text::cleanup_failures(&cleanup.failed) {
            Some(line) => Err(line),
            None => Ok(0),
        };
    }
    let options = LabOptions {
        mode: args.mode.into(),
        fix: args.fix,
        rate: args.rate,
        duration: std::time::Duration::from_secs(args.duration),
        ports: args.ports,
        pool_size: args.pool_size,
    };
    options.validate()?;
    // Namespaces of runs killed before they could remove them (SIGKILL), as
    // root only: without it lab::run refuses to start anyway.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        match twscope_lab::remove_leftovers() {
            Ok(cleanup) => {
                if let Some(line) = lab_text::cleanup_note(&cleanup) {
                    eprintln!("{line}");
                }
            }
            Err(e) => eprintln!("twscope lab: not looking for namespaces left by killed runs: {e}"),
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    if !args.json {
        write_stdout(&lab_text::header(&options))?;
    }
    let report = lab::run(&options, &STOP, |tick| {
        if !args.json {
            // The timeline is progress, written as it happens; a closed pipe
            // must not stop the run (its namespaces still need removing).
            let _ = write_stdout(&lab_text::tick_line(tick));
        }
    })
    .map_err(|e| e.to_string())?;
    let text = if args.json { json(&report)? } else { lab_text::summary(&report) };
    write_stdout(&text)?;
    Ok(if report.observed_onset_s.is_some() {
        2
    } else if report.requests_failed > 0 {
        1
    } else {
        0
    })
}

fn json(value: &impl serde::Serialize) -> Result<String, String> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    text.push('\n');
    Ok(text)
}

/// Writes to stdout, stripping styles where colour is off. A closed pipe
/// (`twscope | head`) is not an error worth a message.
fn write_stdout(text: &str) -> Result<(), String> {
    let mut stdout = anstream::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write the report to stdout: {e}")),
    }
}
