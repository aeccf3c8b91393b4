//! Validated options, one function per command: the high layer of the CLI edge.
//!
//! [`crate::cli`] parses flags into clap structs, one value at a time (the low
//! layer, like ripgrep's `flags/lowargs.rs`). The functions here turn those
//! structs into the core's option types and make every check that spans
//! several options — warning ≤ critical, serve's timeouts above 0, plan's rate
//! from `--rate` or `--rps` × `--calls-per-request`, this host's settings
//! filling plan's gaps — so `main` only dispatches (ripgrep's
//! `flags/hiargs.rs`). An error names the flag, what is wrong with it and what
//! to give instead, in one sentence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use twscope_core::kernel::{PortRanges, Settings};
use twscope_core::status::{Selection, StatusOptions};
use twscope_core::tune;
use twscope_core::NetnsSpec;
use twscope_core::Thresholds;
use twscope_core::Workload;
use twscope_exporter::{Limits, WebConfig};
use twscope_lab::lab::LabOptions;

use crate::cli::{
    DoctorArgs, LabArgs, ModelArgs, NetnsChoice, PlanArgs, ServeArgs, StatusArgs, TopArgs, TraceArgs, TuneArgs,
};

/// `twscope status`, ready to run.
#[derive(Debug, Clone)]
pub struct StatusRun {
    /// What the census collects and how destinations are judged.
    pub options: StatusOptions,
    /// Which destinations the view shows (`--top`, `--dest`).
    pub selection: Selection,
    /// The namespace to read; `None` for the current one.
    pub netns: Option<NetnsSpec>,
    /// `--netns all`: every namespace of the node.
    pub all_namespaces: bool,
    /// JSON instead of text.
    pub json: bool,
    /// Also the doctor's findings, from the same census.
    pub doctor: bool,
    /// Trace connects for this long first (`--trace`).
    pub trace: Option<Duration>,
}

/// `--warning`, `--critical`, `--window` into the model's options.
fn model(args: &ModelArgs) -> Result<StatusOptions> {
    if args.warning > args.critical {
        bail!(
            "--warning {} is above --critical {}: the warning level must not exceed the critical one",
            args.warning,
            args.critical
        );
    }
    Ok(StatusOptions {
        window_s: args.window,
        thresholds: Thresholds {
            warning: args.warning / 100.0,
            critical: args.critical / 100.0,
        },
        processes: false,
    })
}

/// `twscope top`, validated.
#[derive(Debug)]
pub struct TopRun {
    /// The model's options.
    pub options: StatusOptions,
    /// The namespace to watch (`None`: the current one, or all).
    pub netns: Option<NetnsSpec>,
    /// `--netns all`.
    pub all_namespaces: bool,
    /// Between censuses.
    pub interval: Duration,
    /// Open the trace panel at start.
    pub trace: bool,
}

/// Validates `twscope top`'s flags.
pub fn top(args: &TopArgs) -> Result<TopRun> {
    Ok(TopRun {
        options: model(&args.model)?,
        netns: args.netns.spec().cloned(),
        all_namespaces: args.netns.all(),
        interval: Duration::from_secs_f64(args.interval),
        trace: args.trace,
    })
}

/// Validates `status`'s options (see [`model`]; `--dest`, `--doctor`,
/// `--trace`, `--processes` each need one namespace).
pub fn status(args: &StatusArgs) -> Result<StatusRun> {
    if args.dest.is_some() && args.netns.all() {
        bail!("--dest selects in one namespace; with --netns all give --json and filter its namespaces[].destinations");
    }
    if args.doctor && args.netns.all() {
        bail!("--doctor reads one namespace; for every namespace run `twscope doctor --netns all`");
    }
    if args.trace.is_some() && args.netns.all() {
        bail!("--trace with one namespace; for every namespace run `twscope trace --netns all`");
    }
    if args.processes && args.netns.all() {
        bail!("--processes reads one namespace: give --netns NAME|PATH|PID, or no --netns for the current one");
    }
    Ok(StatusRun {
        options: StatusOptions {
            processes: args.processes,
            ..model(&args.model)?
        },
        selection: Selection {
            top: args.top,
            dest: args.dest,
        },
        netns: args.netns.spec().cloned(),
        all_namespaces: args.netns.all(),
        json: args.json,
        doctor: args.doctor,
        trace: args.trace.map(Duration::from_secs_f64),
    })
}

/// `twscope doctor`, ready to run.
#[derive(Debug, Clone)]
pub struct DoctorRun {
    /// The namespace to examine; `None` for the current one.
    pub netns: Option<NetnsSpec>,
    /// `--netns all`: every namespace of the node.
    pub all_namespaces: bool,
    /// JSON instead of text.
    pub json: bool,
    /// Also the application-side code snippets (text only: JSON has them all).
    pub remedies: bool,
    /// Trace connects for this long first (`--trace`).
    pub trace: Option<Duration>,
}

/// `doctor`'s options; none depends on another.
pub fn doctor(args: &DoctorArgs) -> Result<DoctorRun> {
    if args.trace.is_some() && args.netns.all() {
        bail!("--trace with one namespace; for every namespace run `twscope trace --netns all`");
    }
    Ok(DoctorRun {
        netns: args.netns.spec().cloned(),
        all_namespaces: args.netns.all(),
        json: args.json,
        remedies: args.remedies,
        trace: args.trace.map(Duration::from_secs_f64),
    })
}

/// What `twscope tune` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuneOutput {
    /// current → proposed, with the reasons.
    Text,
    /// `{"changes": […], …}`.
    Json,
    /// The Kubernetes pod securityContext snippet.
    Kubernetes,
}

/// `twscope tune`, ready to run.
#[derive(Debug, Clone)]
pub struct TuneRun {
    /// The namespace to tune; `None` for the current one.
    pub netns: Option<NetnsSpec>,
    /// Write the proposed values to /proc/sys.
    pub apply: bool,
    /// The sysctl.d file to write them to, already checked to be a regular
    /// file (or absent).
    pub persist: Option<PathBuf>,
    /// What to print.
    pub output: TuneOutput,
}

/// `tune`'s options. A `--persist` path that is not a regular file is refused
/// here, before anything is applied, and even when there is nothing to change.
pub fn tune(args: &TuneArgs) -> Result<TuneRun> {
    if args.netns.all() {
        bail!(
            "tune changes one namespace at a time: give --netns NAME|PATH|PID (`twscope doctor --netns all` finds which)"
        );
    }
    if let Some(path) = &args.persist {
        tune::persist_target(path)?;
    }
    let output = if args.k8s {
        TuneOutput::Kubernetes
    } else if args.json {
        TuneOutput::Json
    } else {
        TuneOutput::Text
    };
    Ok(TuneRun {
        netns: args.netns.spec().cloned(),
        apply: args.apply,
        persist: args.persist.clone(),
        output,
    })
}

/// `twscope serve`, ready to run.
pub struct ServeRun {
    /// The address to listen on, in the current namespace.
    pub listen: SocketAddr,
    /// TLS and basic auth, loaded and checked.
    pub web: Option<WebConfig>,
    /// Serve a snapshot younger than this instead of dumping again.
    pub min_interval: Duration,
    /// Give up a scrape after this long (above 0).
    pub timeout: Duration,
    /// Destinations with their own series (per namespace with `--netns all`).
    pub max_destinations: usize,
    /// With `--netns all`: namespaces with their own series.
    pub max_namespaces: usize,
    /// Timeouts (above 0) and the connection cap, before it is fitted to the
    /// open-file limit.
    pub limits: Limits,
    /// The namespace to export; `None` for the current one.
    pub netns: Option<NetnsSpec>,
    /// `--netns all`: every namespace of the node.
    pub all_namespaces: bool,
    /// `--trace`: the tracer's series, at most this many of their own.
    pub trace: Option<twscope_exporter::TraceOptions>,
}

/// `serve`'s options: durations in range, timeouts above 0, the web config
/// loaded (an error names the file and the problem, never its content).
pub fn serve(args: &ServeArgs) -> Result<ServeRun> {
    if args.max_trace_series.is_some() && !args.trace {
        bail!("--max-trace-series bounds the series of --trace: give --trace too");
    }
    let web = match &args.web_config_file {
        Some(path) => Some(WebConfig::load(path)?),
        None => None,
    };
    Ok(ServeRun {
        listen: args.listen,
        web,
        min_interval: seconds("--min-interval", args.min_interval)?,
        timeout: positive_seconds("--timeout", args.timeout)?,
        max_destinations: args.max_destinations.unwrap_or(if args.netns.all() { 10 } else { 50 }),
        max_namespaces: args.max_namespaces,
        limits: Limits {
            header_timeout: positive_seconds("--web.header-timeout", args.header_timeout)?,
            idle_timeout: positive_seconds("--web.idle-timeout", args.idle_timeout)?,
            max_connections: args.max_connections as usize,
            ..Limits::default()
        },
        netns: args.netns.spec().cloned(),
        all_namespaces: args.netns.all(),
        trace: args.trace.then(|| twscope_exporter::TraceOptions {
            max_series: args
                .max_trace_series
                .unwrap_or(twscope_exporter::trace::DEFAULT_MAX_SERIES),
        }),
    })
}

/// A flag's number of seconds ≥ 0 as a duration.
fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow!("{flag} must be a number of seconds ≥ 0, not {value}"))
}

/// A flag's number of seconds > 0 as a duration.
fn positive_seconds(flag: &str, value: f64) -> Result<Duration> {
    let duration = seconds(flag, value)?;
    if duration.is_zero() {
        bail!("{flag} must be above 0 seconds, not {value}");
    }
    Ok(duration)
}

/// `twscope plan`, ready to run.
#[derive(Debug, Clone)]
pub struct PlanRun {
    /// The workload, complete and validated.
    pub workload: Workload,
    /// JSON instead of text.
    pub json: bool,
}

/// `plan`'s workload: the rate from `--rate`, or `--rps` × `--calls-per-request`;
/// this host's settings for whatever of range, reserved ports, tw_reuse and
/// reuse delay was not given; then the core's bounds on every number.
pub fn plan(args: &PlanArgs) -> Result<PlanRun> {
    let rate_per_s = match (args.rate, args.rps) {
        (Some(rate), _) => rate,
        (None, Some(rps)) => rps * f64::from(args.calls_per_request),
        (None, None) => bail!("give --rate, or --rps with --calls-per-request"),
    };
    let host = HostGaps::fill(args)?;
    let workload = Workload {
        rate_per_s,
        destinations: args.destinations,
        source_ips: args.source_ips,
        range: host.range,
        reserved: host.reserved,
        tw_reuse: host.tw_reuse,
        reuse_delay_ms: host.reuse_delay_ms,
        time_wait_s: args.time_wait,
        latency_ms: args.latency_ms,
    };
    workload.validate().map_err(anyhow::Error::msg)?;
    Ok(PlanRun {
        workload,
        json: args.json,
    })
}

/// The settings plan takes from this host unless given: /proc is read only
/// when one of them is missing.
struct HostGaps {
    range: (u16, u16),
    reserved: PortRanges,
    tw_reuse: bool,
    reuse_delay_ms: u32,
}

impl HostGaps {
    fn fill(args: &PlanArgs) -> Result<HostGaps> {
        if let (Some(range), Some(reserved), Some(tw_reuse), Some(reuse_delay_ms)) =
            (args.range, &args.reserved, args.tw_reuse, args.reuse_delay_ms)
        {
            return Ok(HostGaps {
                range,
                reserved: reserved.clone(),
                tw_reuse,
                reuse_delay_ms,
            });
        }
        let host = Settings::read(Path::new("/proc")).map_err(|e| {
            anyhow!("{e} (give --range, --reserved, --tw-reuse and --reuse-delay-ms to plan without this host)")
        })?;
        Ok(HostGaps {
            range: args.range.unwrap_or((host.port_range_low, host.port_range_high)),
            reserved: args.reserved.clone().unwrap_or_else(|| host.reserved_ports.clone()),
            // A planned destination is not loopback: tcp_tw_reuse=2 does not
            // cover it. Ask the core's rule about a remote address.
            tw_reuse: args.tw_reuse.unwrap_or_else(|| host.tw_reuse_applies(REMOTE, REMOTE)),
            reuse_delay_ms: args.reuse_delay_ms.unwrap_or_else(|| host.reuse_delay_ms()),
        })
    }
}

/// Any address that is not loopback (TEST-NET-1, RFC 5737).
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// What `twscope lab` does.
#[derive(Debug, Clone)]
pub enum LabRun {
    /// Remove the namespaces of killed runs, then exit.
    Cleanup {
        /// JSON instead of text.
        json: bool,
    },
    /// Reproduce the outage.
    Run {
        /// The run, within the lab's caps.
        options: LabOptions,
        /// JSON instead of the timeline.
        json: bool,
    },
}

/// `lab`'s options, within the lab's caps (rate, duration, ports, pool size,
/// at least one request).
pub fn lab(args: &LabArgs) -> Result<LabRun> {
    if args.cleanup {
        return Ok(LabRun::Cleanup { json: args.json });
    }
    let options = LabOptions {
        mode: args.mode.into(),
        fix: args.fix,
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        ports: args.ports,
        pool_size: args.pool_size,
    };
    options.validate().map_err(anyhow::Error::msg)?;
    Ok(LabRun::Run {
        options,
        json: args.json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn command(args: &[&str]) -> Command {
        let cli = Cli::try_parse_from(std::iter::once("twscope").chain(args.iter().copied())).unwrap();
        cli.command.unwrap()
    }

    fn one_line(e: anyhow::Error) -> String {
        format!("{e:#}")
    }

    #[test]
    fn warning_above_critical_is_refused() {
        let Command::Status(args) = command(&["status", "--warning", "90", "--critical", "80"]) else {
            unreachable!()
        };
        assert!(one_line(status(&args).unwrap_err()).contains("must not exceed"));
        let Command::Status(args) = command(&["status", "--warning", "80", "--critical", "80", "--netns", "1"]) else {
            unreachable!()
        };
        let run = status(&args).unwrap();
        assert_eq!(run.options.thresholds.warning, 0.8);
        assert!(run.netns.is_some());
    }

    #[test]
    fn processes_take_one_namespace() {
        let Command::Status(args) = command(&["status", "-p", "--netns", "blue"]) else {
            unreachable!()
        };
        assert!(status(&args).unwrap().options.processes);
        let Command::Status(args) = command(&["status", "--processes", "--netns", "all"]) else {
            unreachable!()
        };
        assert!(one_line(status(&args).unwrap_err()).contains("--processes reads one namespace"));
    }

    #[test]
    fn serve_timeouts_must_be_above_zero() {
        for flag in ["--timeout", "--web.header-timeout", "--web.idle-timeout"] {
            let Command::Serve(args) = command(&["serve", flag, "0"]) else {
                unreachable!()
            };
            let message = one_line(serve(&args).err().unwrap());
            assert!(message.contains(flag) && message.contains("above 0"), "{message}");
        }
        let Command::Serve(args) = command(&["serve", "--min-interval", "0"]) else {
            unreachable!()
        };
        let run = serve(&args).unwrap();
        assert!(run.min_interval.is_zero());
        assert_eq!(run.timeout, Duration::from_secs(10));
    }

    #[test]
    fn plan_takes_the_rate_from_rps_and_needs_no_host_when_all_is_given() {
        let given = [
            "--range",
            "32768-60999",
            "--reserved",
            "",
            "--tw-reuse",
            "off",
            "--reuse-delay-ms",
            "1000",
        ];
        let args: Vec<&str> = ["plan", "--rps", "1000", "--calls-per-request", "3"]
            .into_iter()
            .chain(given)
            .collect();
        let Command::Plan(args) = command(&args) else {
            unreachable!()
        };
        let run = plan(&args).unwrap();
        assert_eq!(run.workload.rate_per_s, 3000.0);
        assert_eq!(run.workload.range, (32768, 60999));
        assert!(!run.workload.tw_reuse);
    }

    #[test]
    fn tune_output_is_one_choice() {
        let Command::Tune(args) = command(&["tune", "--k8s"]) else {
            unreachable!()
        };
        assert_eq!(tune(&args).unwrap().output, TuneOutput::Kubernetes);
        let Command::Tune(args) = command(&["tune", "--json"]) else {
            unreachable!()
        };
        assert_eq!(tune(&args).unwrap().output, TuneOutput::Json);
    }

    #[test]
    fn the_netns_flag_is_shared() {
        for name in ["status", "doctor", "tune", "serve"] {
            let cli = Cli::try_parse_from(["twscope", name, "--netns", "/proc/1/ns/net"]);
            assert!(cli.is_ok(), "{name}: {:?}", cli.err());
        }
    }
}

/// `twscope trace`, ready to run.
#[derive(Debug, Clone)]
pub struct TraceRun {
    /// How long to trace.
    pub duration: Duration,
    /// JSON instead of text.
    pub json: bool,
    /// Only this namespace; `None` for every one.
    pub netns: Option<NetnsSpec>,
    /// Only this process.
    pub pid: Option<u32>,
    /// Only this container or pod.
    pub container: Option<String>,
}

/// `trace`'s options: the namespace is every one unless one is named.
pub fn trace(args: &TraceArgs) -> Result<TraceRun> {
    if args.container.as_deref().is_some_and(str::is_empty) {
        bail!("--container needs a container id (or its prefix) or a pod name");
    }
    Ok(TraceRun {
        duration: Duration::from_secs_f64(args.duration),
        json: args.json,
        netns: match &args.netns {
            Some(NetnsChoice::One(spec)) => Some(spec.clone()),
            Some(NetnsChoice::All) | None => None,
        },
        pid: args.pid,
        container: args.container.clone(),
    })
}
