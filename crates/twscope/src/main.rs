//! `twscope`: the command-line front end over `twscope-core`.
//!
//! Exit codes: 0 ok, 1 warning, 2 critical, 3 any error. Errors are one line
//! on stderr saying what failed, why, and what to do — never a panic.
//!
//! The edge has two layers, as in ripgrep: [`cli`] parses flags (clap),
//! [`options`] validates them into the core's option types, one function per
//! command; [`run`] only dispatches to the command, which renders the result.

mod cli;
mod doctor_text;
mod generate;
mod lab_text;
mod node_text;
mod options;
mod plan_text;
mod status_text;
mod style;
mod trace_text;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use cli::{Cli, Command};
use options::{DoctorRun, LabRun, PlanRun, ServeRun, StatusRun, TopRun, TraceRun, TuneOutput, TuneRun};
use twscope_core::doctor;
use twscope_core::netns::{self, NetnsSpec};
use twscope_core::node::{Node, NodeOptions};
use twscope_core::status::{Status, StatusOptions};
use twscope_core::tune;
use twscope_lab::lab::{self, LabOptions};

/// Exit code for every error (bad option, namespace, privileges, kernel).
const EXIT_ERROR: u8 = 3;

/// Parses, runs, and turns an error into one line on stderr with exit 3.
///
/// [`run`] returns `anyhow::Result<ExitCode>`; `main` does not return it
/// itself because the standard library would print the error with `Debug`
/// and exit 1, which means "warning" here.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("twscope: error: {}", one_line(&error));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Validates the command's options ([`options`]), then runs it.
fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Status(args)) => status(&options::status(&args)?),
        None => status(&options::status(&cli.status)?),
        Some(Command::Doctor(args)) => run_doctor(&options::doctor(&args)?),
        Some(Command::Tune(args)) => run_tune(&options::tune(&args)?),
        Some(Command::Serve(args)) => run_serve(options::serve(&args)?),
        Some(Command::Trace(args)) => run_trace(&options::trace(&args)?),
        Some(Command::Top(args)) => run_top(options::top(&args)?),
        Some(Command::Plan(args)) => plan(&options::plan(&args)?),
        Some(Command::Lab(args)) => run_lab(&options::lab(&args)?),
        Some(Command::Completions(args)) => {
            write_raw(&generate::completions(args.shell))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => {
            write_raw(&generate::man_page().context("cannot render the man page")?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The error and its causes on one line, joined with ": ". A cause whose
/// text its parent already quotes (thiserror's `"…: {0}"` with `#[source]`)
/// is not repeated; line breaks inside a message become spaces.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if line.is_empty() {
        line.push_str("unknown error");
    }
    line
}

/// A core exit code (0 ok, 1 warning, 2 critical) as the process's.
fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(EXIT_ERROR))
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
    // The accepted values and clap's "did you mean" belong on the same line.
    for extra in lines.filter(|l| l.starts_with("[possible values:") || l.starts_with("tip:")) {
        first = format!("{first} {extra}");
    }
    let first = first.strip_prefix("error: ").unwrap_or(&first);
    eprintln!("twscope: error: {first} (see 'twscope --help')");
    ExitCode::from(EXIT_ERROR)
}

fn status(args: &StatusRun) -> Result<ExitCode> {
    if args.all_namespaces {
        return status_all(args);
    }
    let (status, trace) = traced(args.trace, || collect(&args.options, args.netns.as_ref()))?;
    let selection = args.selection;
    let report = status.report(&selection);
    // `--doctor`: the checklist over the same model, so one dump answers both.
    let findings = args
        .doctor
        .then(|| speaking_to_trace(doctor::diagnose(&status), trace.as_ref()));
    let text = match (&findings, args.json) {
        (None, true) => json(&report)?,
        (Some(findings), true) => json(&StatusWithDoctor {
            status: &report,
            doctor: findings,
        })?,
        (None, false) => status_text::render(&status, &selection),
        (Some(findings), false) => {
            status_text::render(&status, &selection) + "\n" + &doctor_text::render_with(&status, findings, false)
        }
    };
    write_stdout(&text)?;
    let code = report.verdict.severity.exit_code();
    Ok(exit(findings.map_or(code, |f| code.max(f.exit_code()))))
}

/// Every namespace of the node (`--netns all`).
fn collect_node(options: &StatusOptions) -> Node {
    Node::collect(&NodeOptions {
        status: options.clone(),
        ..NodeOptions::default()
    })
}

/// The node's exit code: its worst namespace's severity, or 3 when a
/// namespace could not be read (why goes to stderr, in one line).
fn node_exit(node: &Node, worst: i32) -> ExitCode {
    let mut problems: Vec<String> = node.missing.iter().cloned().collect();
    if let Some(first) = node.namespaces.iter().find(|n| n.error.is_some()) {
        problems.push(format!(
            "{} namespaces could not be read (first: {}: {})",
            node.failed,
            first.identity.label(),
            first.error.as_deref().unwrap_or_default()
        ));
    }
    if problems.is_empty() {
        return exit(worst);
    }
    note(format_args!(
        "twscope: incomplete: {}; the others are reported",
        problems.join("; ")
    ));
    exit(i32::from(EXIT_ERROR))
}

fn status_all(args: &StatusRun) -> Result<ExitCode> {
    let node = collect_node(&args.options);
    let text = if args.json {
        json(&node_text::status_json(&node, &args.selection)?)?
    } else {
        let proc_root = std::path::Path::new("/proc");
        node_text::render_status(
            &node,
            &twscope_core::kernel::hostname(proc_root).unwrap_or_default(),
            &twscope_core::kernel::kernel_release(proc_root).unwrap_or_default(),
        )
    };
    write_stdout(&text)?;
    Ok(node_exit(&node, node.severity().exit_code()))
}

fn doctor_all(run: &DoctorRun) -> Result<ExitCode> {
    let node = collect_node(&StatusOptions::default());
    let text = if run.json {
        json(&node_text::doctor_json(&node)?)?
    } else {
        node_text::render_doctor(&node, run.remedies)
    };
    write_stdout(&text)?;
    let worst = node_text::doctor_reports(&node)
        .iter()
        .map(|(_, r)| r.exit_code())
        .max()
        .unwrap_or(0);
    Ok(node_exit(&node, worst))
}

/// `status --json --doctor`: the status report with the checklist beside it.
#[derive(serde::Serialize)]
struct StatusWithDoctor<'a> {
    #[serde(flatten)]
    status: &'a twscope_core::StatusReport<'a>,
    doctor: &'a doctor::Report,
}

/// Enters the namespace (on the main thread: sockets and /proc/net follow
/// it, see twscope_core::netns::enter) and takes its census.
fn collect(options: &StatusOptions, spec: Option<&NetnsSpec>) -> Result<Status> {
    Ok(Status::collect(options, enter(spec)?)?)
}

/// Moves the main thread into the namespace `spec` names, or names the
/// current one `host`.
fn enter(spec: Option<&NetnsSpec>) -> Result<netns::NetnsInfo> {
    match spec {
        Some(spec) => Ok(netns::enter(spec)?),
        None => netns::identify().context("cannot identify the network namespace"),
    }
}

/// `--trace SECS`: traces connects for that long (every namespace; the
/// census's is kept), then takes the census, so both describe the same
/// moment's end. Without a window, only the census.
fn traced(
    window: Option<std::time::Duration>,
    census: impl FnOnce() -> Result<Status>,
) -> Result<(Status, Option<twscope_core::trace::TraceReport>)> {
    use twscope_core::trace::{PoolBypass, TraceFilter, TraceReport};
    let Some(duration) = window else {
        return Ok((census()?, None));
    };
    stop_on_signals();
    let window = {
        let mut tracer = twscope_trace::Tracer::attach()?;
        note(format_args!("tracing connects for {:.1} s…", duration.as_secs_f64()));
        twscope_trace::window(&mut tracer, duration, &STOP)?
    };
    let status = census()?;
    let filter = TraceFilter {
        netns: vec![status.netns.inode],
        ..TraceFilter::default()
    };
    let report = TraceReport::build(&window.sample, window.identities.map(), &filter, &PoolBypass::default());
    Ok((status.with_trace(&report), Some(report)))
}

/// The doctor's code snippets narrowed to the runtimes a trace found.
fn speaking_to_trace(report: doctor::Report, trace: Option<&twscope_core::trace::TraceReport>) -> doctor::Report {
    match trace {
        Some(trace) => report.speaking_to(&trace.runtimes()),
        None => report,
    }
}

/// Every destination counts for the checklist, not just the top ten.
fn full_census(spec: Option<&NetnsSpec>) -> Result<Status> {
    collect(&StatusOptions::default(), spec)
}

fn run_doctor(run: &DoctorRun) -> Result<ExitCode> {
    if run.all_namespaces {
        return doctor_all(run);
    }
    let (status, trace) = traced(run.trace, || full_census(run.netns.as_ref()))?;
    let report = speaking_to_trace(doctor::diagnose(&status), trace.as_ref());
    let text = if run.json {
        json(&report)?
    } else {
        doctor_text::render_with(&status, &report, run.remedies)
    };
    write_stdout(&text)?;
    Ok(exit(report.exit_code()))
}

/// `twscope top`: the namespace is entered on the main thread before the
/// collection thread starts (it inherits it), so a bad `--netns` is an error
/// before the terminal is taken over.
fn run_top(run: TopRun) -> Result<ExitCode> {
    use twscope_tui::{Scope, TopOptions};
    let scope = if run.all_namespaces {
        Scope::All
    } else {
        Scope::One(enter(run.netns.as_ref())?)
    };
    twscope_tui::run(TopOptions {
        scope,
        interval: run.interval,
        status: run.options,
        trace: run.trace,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_tune(run: &TuneRun) -> Result<ExitCode> {
    let status = full_census(run.netns.as_ref())?;
    let changes = tune::recommend(&status, &doctor::diagnose(&status));
    if run.apply && !changes.is_empty() {
        tune::apply(&changes)?;
    }
    if let (Some(path), false) = (&run.persist, changes.is_empty()) {
        tune::persist(&changes, path)?;
    }
    let text = match run.output {
        TuneOutput::Kubernetes => doctor::remedies::kubernetes(&tune::proposed(&changes)),
        TuneOutput::Json => json(&serde_json::json!({
            "netns": status.netns,
            "changes": changes,
            "applied": run.apply && !changes.is_empty(),
            "persisted": run.persist.as_ref().filter(|_| !changes.is_empty()),
        }))?,
        TuneOutput::Text => doctor_text::render_tune(&status, &changes, run.apply, run.persist.as_deref()),
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn run_serve(run: ServeRun) -> Result<ExitCode> {
    use twscope_exporter::{Exporter, Scope, SnapshotOptions, Snapshots};
    let ServeRun {
        listen,
        web,
        min_interval,
        timeout,
        max_destinations,
        mut limits,
        max_namespaces,
        netns,
        all_namespaces,
        trace,
    } = run;
    let fd_limit = limits
        .fit_descriptor_limit()
        .context("cannot fit --web.max-connections to the open-file limit (RLIMIT_NOFILE)")?;
    // --trace: attached before anything listens, so that missing privileges
    // end the start in one line (exit 3); detached when serving ends.
    let tracing = match trace {
        Some(options) => {
            let tracer = twscope_trace::Tracer::attach().context("serve --trace")?;
            let source = Box::new(TracerSource(tracer));
            Some(twscope_exporter::Tracing::start(source, options).context("serve --trace: cannot start reading")?)
        }
        None => None,
    };
    // Bind here, in the current namespace; then enter the one to export, so
    // every thread started afterwards (the dumps) runs there.
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow!("cannot listen on {listen}: {e} (is another exporter running? pick another --listen)"))?;
    let local = listener.local_addr().context("cannot read the address listened on")?;
    // --netns all: the dumps' worker threads enter each namespace themselves.
    let scope = if all_namespaces {
        Scope::All { max_namespaces }
    } else {
        Scope::One(enter(netns.as_ref())?)
    };
    let scheme = if web.as_ref().is_some_and(|w| w.tls.is_some()) {
        "https"
    } else {
        "http"
    };
    let mut reads = match &scope {
        Scope::One(netns) => format!("netns {}", netns.name),
        Scope::All { max_namespaces } => {
            format!("every network namespace ({max_namespaces} with their own series, the rest as netns=\"other\")")
        }
    };
    if let Some(options) = trace {
        reads.push_str(&format!(
            " and the node's traced connects ({} series with their own, the rest as comm=\"other\")",
            options.max_series
        ));
    }
    note(format_args!(
        "twscope serve: listening on {scheme}://{local}/metrics, exporting {reads}"
    ));
    note(format_args!(
        "twscope serve: at most {} connections (open-file limit {fd_limit}), idle timeout {:?}, header timeout {:?}",
        limits.max_connections, limits.idle_timeout, limits.header_timeout
    ));
    let mut snapshots = Snapshots::new(SnapshotOptions {
        min_interval,
        timeout,
        max_destinations,
        status: StatusOptions::default(),
        scope,
    });
    if let Some(tracing) = &tracing {
        snapshots = snapshots.traced(tracing.reader());
    }
    // Blocking threads run dumps (one at a time) and bcrypt checks (bounded
    // by Limits::bcrypt_workers): a handful is all they can use.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
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
        .context("serving failed")?;
    if let Some(tracing) = tracing {
        tracing.stop();
    }
    Ok(ExitCode::SUCCESS)
}

/// `serve --trace`'s tracer as the exporter reads it.
struct TracerSource(twscope_trace::Tracer);

impl twscope_exporter::FlowSource for TracerSource {
    fn flows(&mut self) -> Result<Vec<twscope_core::trace::Flow>, String> {
        self.0.flows().map_err(|e| e.to_string())
    }

    fn forget(&mut self, pids: &std::collections::BTreeSet<u32>) -> Result<usize, String> {
        self.0.forget(pids).map_err(|e| e.to_string())
    }

    fn drain_events(&mut self) {
        self.0.drain_failures(&mut Vec::new());
    }

    fn losses(&self) -> twscope_core::trace::Losses {
        self.0.losses()
    }
}

fn plan(run: &PlanRun) -> Result<ExitCode> {
    let workload = &run.workload;
    let plan = workload.plan();
    let text = if run.json {
        json(&serde_json::json!({ "workload": plan_text::workload_json(workload), "plan": plan }))?
    } else {
        plan_text::render(workload, &plan)
    };
    write_stdout(&text)?;
    Ok(exit(plan.severity.exit_code()))
}

/// Set by SIGINT/SIGTERM: the lab stops its client and removes its namespaces.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set [`STOP`] instead of killing the process, so what
/// was started (namespaces, a tracer) is cleaned up and reported.
fn stop_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
}

/// The inode of the namespace `spec` names (a namespace file's own inode).
fn netns_inode(spec: &NetnsSpec) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = spec.path();
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("cannot find network namespace {} ({})", spec.label(), path.display()))?;
    Ok(meta.ino())
}

/// `twscope trace`: attach, wait for the window (or Ctrl-C), report. The
/// tracer is dropped — every program detached — before anything is written.
fn run_trace(run: &TraceRun) -> Result<ExitCode> {
    use twscope_core::trace::{PoolBypass, TraceFilter, TraceReport};
    let filter = TraceFilter {
        netns: match &run.netns {
            Some(spec) => vec![netns_inode(spec)?],
            None => Vec::new(),
        },
        pid: run.pid,
        container: run.container.clone(),
    };
    stop_on_signals();
    let window = {
        let mut tracer = twscope_trace::Tracer::attach()?;
        // On stderr, also with --json: a caller can wait for this line.
        note(format_args!(
            "tracing for {:.0} s (Ctrl-C ends it early)…",
            run.duration.as_secs_f64()
        ));
        twscope_trace::window(&mut tracer, run.duration, &STOP)?
    };
    let report = TraceReport::build(&window.sample, window.identities.map(), &filter, &PoolBypass::default());
    let scope = match &run.netns {
        Some(spec) => format!("network namespace {}", spec.label()),
        None => "every network namespace".to_string(),
    };
    let text = if run.json {
        json(&report)?
    } else {
        trace_text::render(&report, &scope)
    };
    write_stdout(&text)?;
    Ok(exit(if !report.verdict.failing.is_empty() {
        2
    } else if !report.verdict.churning.is_empty() {
        1
    } else {
        0
    }))
}

fn run_lab(run: &LabRun) -> Result<ExitCode> {
    match run {
        LabRun::Cleanup { json } => lab_cleanup(*json),
        LabRun::Run { options, json } => lab_run(options, *json),
    }
}

/// `twscope lab --cleanup`: removes the namespaces of killed runs.
fn lab_cleanup(as_json: bool) -> Result<ExitCode> {
    let cleanup = twscope_lab::remove_leftovers().context("cannot look for namespaces left by killed lab runs")?;
    let text = if as_json {
        json(&cleanup.removed)?
    } else {
        lab_text::cleanup(&cleanup)
    };
    write_stdout(&text)?;
    match lab_text::cleanup_failures(&cleanup.failed) {
        Some(line) => bail!(line),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A progress or status line on stderr. A closed stderr (a supervisor that
/// stopped reading) must not stop a server: `eprintln!` would panic.
fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `twscope lab`: the outage reproduced, second by second.
fn lab_run(options: &LabOptions, as_json: bool) -> Result<ExitCode> {
    // Namespaces of runs killed before they could remove them (SIGKILL), as
    // root only: without it lab::run refuses to start anyway.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        match twscope_lab::remove_leftovers() {
            Ok(cleanup) => {
                if let Some(line) = lab_text::cleanup_note(&cleanup) {
                    note(format_args!("{line}"));
                }
            }
            Err(e) => note(format_args!(
                "twscope lab: not looking for namespaces left by killed runs: {e}"
            )),
        }
    }
    stop_on_signals();
    if !as_json {
        write_stdout(&lab_text::header(options))?;
    }
    let report = lab::run(options, &STOP, |tick| {
        if !as_json {
            // The timeline is progress, written as it happens; a closed pipe
            // must not stop the run (its namespaces still need removing).
            let _ = write_stdout(&lab_text::tick_line(tick));
        }
    })?;
    let text = if as_json {
        json(&report)?
    } else {
        lab_text::summary(&report)
    };
    write_stdout(&text)?;
    Ok(ExitCode::from(if report.observed_onset_s.is_some() {
        2
    } else if report.requests_failed > 0 {
        1
    } else {
        0
    }))
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the report as JSON")?;
    text.push('\n');
    Ok(text)
}

/// Writes to stdout, stripping styles where colour is off. A closed pipe
/// (`twscope | head`) is not an error worth a message.
fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = anstream::stdout().lock();
    let written = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    ignore_closed_pipe(written).context("cannot write the report to stdout")
}

/// Writes bytes to stdout as they are (a completion script, a man page).
fn write_raw(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(bytes).and_then(|()| stdout.flush());
    ignore_closed_pipe(written).context("cannot write to stdout")
}

/// A closed pipe (`twscope man | head`) is not an error worth a message.
fn ignore_closed_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use anyhow::Context;

    /// Like thiserror's `#[error("cannot open: {0}")] Open(#[source] io::Error)`.
    #[derive(Debug)]
    struct Quoting(std::io::Error);

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot open the socket: {}", self.0)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let io = || std::io::Error::from_raw_os_error(libc::EACCES);
        let chained = Err::<(), _>(io()).context("cannot write the report").unwrap_err();
        assert_eq!(one_line(&chained), format!("cannot write the report: {}", io()));
        let quoting = anyhow::Error::new(Quoting(io())).context("census failed");
        assert_eq!(
            one_line(&quoting),
            format!("census failed: cannot open the socket: {}", io())
        );
        assert_eq!(one_line(&anyhow::anyhow!("two\nlines")), "two lines");
    }
}
