//! Command-line definitions (clap derive). Every option is documented here;
//! `twscope --help` and `twscope status --help` are generated from it.

use clap::{Args, Parser, Subcommand};
use twscope_core::capacity::Thresholds;
use twscope_core::netns::NetnsSpec;
use twscope_core::status::{DestFilter, StatusOptions};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 warning, 2 critical, 3 error (bad option, unknown namespace, \
missing privileges, kernel interface unavailable).
Colour is used only on a terminal, never when NO_COLOR is set.";

/// Find, explain and prevent TCP ephemeral-port exhaustion (TIME_WAIT).
///
/// With no command, runs `twscope status`: the socket census of this network
/// namespace, every outbound destination's source-port headroom, and a verdict.
#[derive(Debug, Parser)]
#[command(name = "twscope", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `status`, which runs when no command is given.
    #[command(flatten)]
    pub status: StatusArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-screen report: states, port range, tw settings, top destinations
    /// with port headroom, close rate and time to exhaustion, and a verdict.
    #[command(after_help = AFTER_HELP)]
    Status(StatusArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON (the schema is documented in the README) instead of text.
    #[arg(long)]
    pub json: bool,

    /// How many destinations to list, busiest first; 0 lists all of them.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Only destinations with this address, and port if given
    /// (198.18.0.2, 198.18.0.2:5432, 2001:db8::1, [2001:db8::1]:443).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub dest: Option<DestFilter>,

    /// Read this network namespace instead of the current one: a name from
    /// `ip netns list`, a path such as /proc/PID/ns/net, or a PID. Needs
    /// CAP_SYS_ADMIN.
    #[arg(long, value_name = "NAME|PATH|PID", value_parser = parse_netns)]
    pub netns: Option<NetnsSpec>,

    /// Port-budget utilization (%) from which a destination is a warning.
    #[arg(long, value_name = "PCT", default_value_t = 50.0, value_parser = parse_percent)]
    pub warning: f64,

    /// Port-budget utilization (%) from which a destination is critical.
    #[arg(long, value_name = "PCT", default_value_t = 80.0, value_parser = parse_percent)]
    pub critical: f64,

    /// Close-rate window in seconds: the rate is the TIME_WAIT sockets younger
    /// than this divided by it, so it shows the current rate, not the minute's.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub window: u32,
}

impl StatusArgs {
    /// The core library's options, after cross-option checks.
    pub fn options(&self) -> Result<StatusOptions, String> {
        if self.warning > self.critical {
            return Err(format!(
                "--warning {} is above --critical {}: the warning level must not exceed the critical one",
                self.warning, self.critical
            ));
        }
        Ok(StatusOptions {
            window_s: self.window,
            thresholds: Thresholds {
                warning: self.warning / 100.0,
                critical: self.critical / 100.0,
            },
            top: self.top,
            dest: self.dest,
        })
    }
}

fn parse_netns(text: &str) -> Result<NetnsSpec, String> {
    NetnsSpec::parse(text).map_err(|e| e.to_string())
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage between 0 and 100")),
    }
}
