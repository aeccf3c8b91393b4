//! `twscope`: the command-line front end over `twscope-core`.
//!
//! Exit codes: 0 ok, 1 warning, 2 critical, 3 any error. Errors are one line
//! on stderr saying what failed, why, and what to do — never a panic.

mod cli;
mod status_text;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, StatusArgs};
use twscope_core::netns;
use twscope_core::status::Status;

/// Exit code for every error (bad option, namespace, privileges, kernel).
const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Some(Command::Status(args)) => status(&args),
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
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("twscope: error: {first} (see 'twscope --help')");
    ExitCode::from(EXIT_ERROR)
}

fn status(args: &StatusArgs) -> Result<u8, String> {
    let options = args.options()?;
    // Enter the namespace first, on the main thread: sockets and /proc/net
    // follow it (see twscope_core::netns::enter).
    let netns = match &args.netns {
        Some(spec) => netns::enter(spec).map_err(|e| e.to_string())?,
        None => netns::current("host").map_err(|e| format!("cannot identify the network namespace: {e}"))?,
    };
    let status = Status::collect(&options, netns).map_err(|e| e.to_string())?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&status).map_err(|e| e.to_string())?;
        json.push('\n');
        json
    } else {
        status_text::render(&status)
    };
    write_stdout(&text)?;
    Ok(status.verdict.severity.exit_code() as u8)
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
