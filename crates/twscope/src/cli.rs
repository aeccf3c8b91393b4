//! Command-line definitions (clap derive): the low layer of the CLI edge.
//!
//! Every option is declared and documented here; `twscope --help`, each
//! command's `--help`, the shell completions and the man page are generated
//! from it. Values are parsed one by one (a port range, a percentage, a
//! namespace); checks across options and the core's option types are built in
//! [`crate::options`], one function per command.

use clap::{Args, Parser, Subcommand, ValueEnum};
use twscope_core::kernel::PortRanges;
use twscope_core::status::DestFilter;
use twscope_core::NetnsSpec;
use twscope_lab::lab::{Fix, Mode};

const AFTER_HELP: &str = "\
Exit codes: 0 ok, 1 warning, 2 critical, 3 error (bad option, unknown namespace,
missing privileges, kernel interface unavailable).
Colour is used only on a terminal, never when NO_COLOR is set.";

/// Find, explain and prevent TCP ephemeral-port exhaustion (TIME_WAIT).
///
/// With no command, runs `twscope status`: the socket census of this network
/// namespace, every outbound destination's source-port headroom, and a verdict.
#[derive(Debug, Parser)]
#[command(name = "twscope", version, after_help = AFTER_HELP, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The command to run; none runs `status`.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Options of `status`, which runs when no command is given.
    #[command(flatten)]
    pub status: StatusArgs,
}

/// twscope's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-screen report: states, port range, tw settings, top destinations
    /// with port headroom, close rate and time to exhaustion, and a verdict.
    #[command(after_help = AFTER_HELP)]
    Status(StatusArgs),

    /// The TIME_WAIT checklist evaluated on this namespace: each finding with
    /// its evidence, why it matters and the exact fix.
    #[command(after_help = DOCTOR_AFTER_HELP)]
    Doctor(DoctorArgs),

    /// Compute the sysctls this namespace's findings call for; show current →
    /// proposed, and with --apply / --persist write them.
    #[command(after_help = TUNE_AFTER_HELP)]
    Tune(TuneArgs),

    /// Prometheus exporter: /metrics (OpenMetrics or text), / and /healthz, with
    /// TLS and basic auth from an exporter-toolkit web config.
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),

    /// Who churns connections and who gets "cannot assign requested address":
    /// per process and destination, connections opened, TIME_WAITs left,
    /// lifetimes, resets and connect failures by errno, from eBPF on
    /// tracepoints. Needs CAP_BPF and CAP_PERFMON (or root).
    #[command(after_help = TRACE_AFTER_HELP)]
    Trace(TraceArgs),

    /// Live terminal view, refreshed every --interval: per destination
    /// TIME_WAIT, ESTABLISHED and its range, utilization, close rate with a
    /// sparkline, time to exhaustion; every namespace with --netns all; who
    /// churns on `t`.
    #[command(after_help = TOP_AFTER_HELP)]
    Top(TopArgs),

    /// What-if calculator: ports a workload needs, ports it has, the max
    /// sustainable rate, time to exhaustion, and the smallest fix. Defaults to
    /// this host's settings.
    #[command(after_help = PLAN_AFTER_HELP)]
    Plan(PlanArgs),

    /// Reproduce the outage in throwaway network namespaces, watch twscope's
    /// census of it second by second, then apply a fix. Needs root.
    #[command(after_help = LAB_AFTER_HELP)]
    Lab(LabArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions(CompletionsArgs),

    /// Print the manual page (roff) of twscope and all its commands.
    #[command(after_help = MAN_AFTER_HELP)]
    Man,
}

/// The network namespace a command works in, shared by status, doctor, tune
/// and serve (`#[command(flatten)]`).
#[derive(Debug, Clone, Default, Args)]
pub struct NetnsArg {
    /// Work in this network namespace instead of the current one: a name from
    /// `ip netns list`, a path such as /proc/PID/ns/net, or a PID; or `all`
    /// for every namespace of the node (each pod and container), named by
    /// pod, container and process. Needs CAP_SYS_ADMIN (and CAP_SYS_PTRACE
    /// for other users' processes).
    #[arg(long, value_name = "NAME|PATH|PID|all", value_parser = parse_netns)]
    pub netns: Option<NetnsChoice>,
}

/// What `--netns` names: one namespace, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsChoice {
    /// One namespace.
    One(NetnsSpec),
    /// `all`: every namespace of the node.
    All,
}

impl NetnsArg {
    /// The namespace given, or `None` for the current one or `all`.
    pub fn spec(&self) -> Option<&NetnsSpec> {
        match &self.netns {
            Some(NetnsChoice::One(spec)) => Some(spec),
            _ => None,
        }
    }

    /// Whether `--netns all` was given.
    pub fn all(&self) -> bool {
        self.netns == Some(NetnsChoice::All)
    }
}

const COMPLETIONS_AFTER_HELP: &str = "\
Examples:
  twscope completions bash > /usr/share/bash-completion/completions/twscope
  twscope completions zsh > /usr/local/share/zsh/site-functions/_twscope
  twscope completions fish > ~/.config/fish/completions/twscope.fish
  source <(twscope completions bash)                 this shell only
Exit codes: 0 printed, 3 error (e.g. an unknown shell).";

/// Options of `twscope completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

const MAN_AFTER_HELP: &str = "\
Examples:
  twscope man | man -l -                             read it now
  twscope man > /usr/local/share/man/man1/twscope.1  install it for `man twscope`
Exit codes: 0 printed, 3 error.";

const DOCTOR_AFTER_HELP: &str = "\
Exit codes: 0 nothing at warning or above, 1 warning, 2 critical, 3 error.
Colour is used only on a terminal, never when NO_COLOR is set.";

const TUNE_AFTER_HELP: &str = "\
By default nothing is changed. A second run after --apply proposes nothing.
Examples:
  twscope tune                                       what would change, and why
  sudo twscope tune --apply --netns NAME             write /proc/sys of that namespace
  sudo twscope tune --persist /etc/sysctl.d/90-twscope.conf
  twscope tune --k8s                                 the pod securityContext snippet
Exit codes: 0 done, 3 error (e.g. --apply without root).";

/// Options of `twscope doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print JSON: {"findings":[{id, severity, group, title, evidence, explanation, remedies}], "worst": …}.
    #[arg(long)]
    pub json: bool,

    /// Also print the application-side code snippets (Java, Go, Python, Node,
    /// Rust) under the findings they fix.
    #[arg(long)]
    pub remedies: bool,

    /// Trace connects for SECS first (eBPF, as `twscope trace`): the
    /// findings' code snippets then speak to the runtime (Java, Go, Python,
    /// Node.js, Rust) of the processes found churning or failing. Needs
    /// CAP_BPF and CAP_PERFMON (or root).
    #[arg(long, value_name = "SECS", value_parser = parse_trace_seconds)]
    pub trace: Option<f64>,

    /// `--netns`, shared with the other commands.
    #[command(flatten)]
    pub netns: NetnsArg,
}

/// Options of `twscope tune`.
#[derive(Debug, Clone, Args)]
pub struct TuneArgs {
    /// Write the proposed values to /proc/sys of the namespace (needs root).
    #[arg(long)]
    pub apply: bool,

    /// Also write them to this sysctl.d file, atomically (temporary file + rename).
    #[arg(long, value_name = "FILE")]
    pub persist: Option<std::path::PathBuf>,

    /// Print the Kubernetes pod securityContext snippet for the changes instead.
    #[arg(long, conflicts_with = "json")]
    pub k8s: bool,

    /// Print JSON: {"changes":[{key, current, proposed, why}], …}.
    #[arg(long)]
    pub json: bool,

    /// `--netns`, shared with the other commands.
    #[command(flatten)]
    pub netns: NetnsArg,
}

const SERVE_AFTER_HELP: &str = "\
To let Prometheus on another host scrape it, listen on an address it reaches
(--listen 0.0.0.0:9877) and protect it with --web.config.file (TLS, basic auth).
Concurrent scrapes share one kernel dump; --min-interval caches it.
No client can cost much: request heads are capped at 16 KiB, slow or idle
connections time out, connections are capped below the open-file limit (the
soft limit is raised to the hard one), and bcrypt checks run two at a time
with a short queue (429 beyond it); only successful credentials are cached.
With --netns the listening socket stays in the current namespace; only the
census is read in the other one.
--trace adds who connects and whose connects fail (per process, container,
namespace and destination), from eBPF on tracepoints, for the whole node.
Metrics are documented in the README.";

/// Options of `twscope serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9877")]
    pub listen: std::net::SocketAddr,

    /// exporter-toolkit web config: tls_server_config (cert_file, key_file) and
    /// basic_auth_users (bcrypt hashes).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Serve a snapshot younger than this many seconds instead of dumping again
    /// (0: dump for every scrape that does not overlap another).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub min_interval: f64,

    /// Give up a scrape after this many seconds (503); the dump still completes.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,

    /// Destinations with their own series, busiest first; the rest are summed
    /// into one dst="other" series. Per namespace with --netns all.
    /// [default: 50; 10 with --netns all]
    #[arg(long, value_name = "N")]
    pub max_destinations: Option<usize>,

    /// With --netns all: namespaces with their own series, most pressed
    /// first; the rest are summed into netns="other".
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_namespaces: usize,

    /// `--netns`, shared with the other commands.
    #[command(flatten)]
    pub netns: NetnsArg,

    /// Connections served at once; lowered to fit the open-file limit. At the
    /// cap a new connection closes the one idle the longest.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Close a connection that moved no bytes for this many seconds (idle
    /// keep-alive, silent or stalled clients).
    #[arg(long = "web.idle-timeout", value_name = "SECS", default_value_t = 75.0)]
    pub idle_timeout: f64,

    /// Time a client has to send its request headers, and to finish a TLS
    /// handshake, in seconds.
    #[arg(long = "web.header-timeout", value_name = "SECS", default_value_t = 10.0)]
    pub header_timeout: f64,

    /// Also trace connects with eBPF, node-wide (as `twscope trace`): per
    /// process and destination, connections opened, TIME_WAITs left and
    /// connect failures by errno, as twscope_trace_*_total counters. Needs
    /// CAP_BPF and CAP_PERFMON (or root); without them serve exits 3.
    #[arg(long)]
    pub trace: bool,

    /// With --trace: (process, destination) series with their own counters,
    /// most connects and failures first (an EADDRNOTAVAIL before any); the
    /// rest are summed into comm="other". [default: 50]
    #[arg(long, value_name = "N")]
    pub max_trace_series: Option<usize>,
}

const TRACE_AFTER_HELP: &str = "\
Examples:
  sudo twscope trace                                 10 s of every namespace
  sudo twscope trace --duration 30 --netns all --json
  sudo twscope trace --container 4f1c2ab39d0e        one container (or --container POD)
A process is flagged as a bypassed pool when it opens many short-lived
connections to a destination, few at once, and most of its closes leave a
TIME_WAIT. Connect failures are counted by errno; EADDRNOTAVAIL is the outage.
The process that fails and the one that spends the ports are often different:
the verdict says so. TIME_WAIT sockets themselves belong to no process; see
`twscope status --processes` for the owners of live sockets.
Exit codes: 0 nothing found, 1 a process churns connections, 2 a connect failed
with EADDRNOTAVAIL, 3 error (including missing privileges).";

const PLAN_AFTER_HELP: &str = "\
Examples (the numbers of the blog post \"TCP TIME_WAIT Port Exhaustion: When
Connection Pooling Isn't Enough\", Michal Drozd, 2024):
  twscope plan --rate 500 --range 32768-60999        500/s to one database: runs out in 56 s
  twscope plan --rps 1000 --calls-per-request 3      180,000 sockets needed
  twscope plan --rate 3000 --destinations 10         spread over 10 destinations
Exit codes: 0 sustainable, 1 sustainable but over half the budget, 2 not sustainable, 3 error.";

const LAB_AFTER_HELP: &str = "\
Examples:
  sudo twscope lab                                   per-request connections at 50/s into 1,000 ports
  sudo twscope lab --fix tw-reuse                    the same, fixed by tcp_tw_reuse=1
  sudo twscope lab --mode pooled                     the real fix: a connection pool
Namespaces are removed at the end, on Ctrl-C and on error; a run killed with
SIGKILL leaves them, and the next run (or `twscope lab --cleanup`) removes them.
Traffic stays on a veth pair between them (198.18.0.0/15, the benchmarking range).
Exit codes: 0 no request failed, 1 requests failed for another reason, 2 ports ran out,
3 error.";

/// Options of `twscope plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// New connections per second to the destination(s), all together.
    #[arg(
        long,
        value_name = "PER_S",
        required_unless_present = "rps",
        conflicts_with = "rps",
        allow_negative_numbers = true
    )]
    pub rate: Option<f64>,

    /// Requests per second; with --calls-per-request gives the rate.
    #[arg(long, value_name = "PER_S")]
    pub rps: Option<f64>,

    /// Outbound connections each request opens.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "rps",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub calls_per_request: u32,

    /// Destinations the connections spread over evenly (each has its own ports).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub destinations: u32,

    /// Ephemeral port range, inclusive [default: this host's ip_local_port_range].
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_range)]
    pub range: Option<(u16, u16)>,

    /// Reserved ports, kernel format such as 8080,9000-9100 [default: this
    /// host's ip_local_reserved_ports]; "" for none.
    #[arg(long, value_name = "LIST", value_parser = parse_reserved)]
    pub reserved: Option<PortRanges>,

    /// Source addresses the client rotates over.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub source_ips: u32,

    /// Whether tcp_tw_reuse applies [default: this host's, for a non-loopback
    /// destination: on only with tcp_tw_reuse=1 and timestamps on].
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub tw_reuse: Option<bool>,

    /// TIME_WAIT reuse delay in ms [default: this host's tcp_tw_reuse_delay, or 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..))]
    pub reuse_delay_ms: Option<u32>,

    /// TIME_WAIT length in seconds. Fixed at 60 in Linux; for other stacks only.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub time_wait: f64,

    /// How long one request holds a connection, for sizing a pool (Little's law).
    #[arg(long, value_name = "MS", default_value_t = 50.0)]
    pub latency_ms: f64,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `twscope lab --mode`: how the lab's client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LabMode {
    /// The bypassed pool: connect, request, close for every request.
    PerRequest,
    /// A fixed pool of persistent connections.
    Pooled,
}

impl From<LabMode> for Mode {
    fn from(mode: LabMode) -> Mode {
        match mode {
            LabMode::PerRequest => Mode::PerRequest,
            LabMode::Pooled => Mode::Pooled,
        }
    }
}

/// Options of `twscope lab`.
#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    /// How the client uses connections.
    #[arg(long, value_enum, default_value_t = LabMode::PerRequest)]
    pub mode: LabMode,

    /// A fix to apply to the client: tw-reuse (tcp_tw_reuse=1), wide-range
    /// (ip_local_port_range 1024-65535), source-ips=N (rotate N source addresses
    /// with IP_BIND_ADDRESS_NO_PORT), linger0 (SO_LINGER 0: RST, no TIME_WAIT).
    #[arg(long, value_name = "FIX")]
    pub fix: Option<Fix>,

    /// Requests per second (at most 5,000).
    #[arg(long, value_name = "PER_S", default_value_t = 50.0)]
    pub rate: f64,

    /// How long to run, in seconds (at most 120).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub duration: u64,

    /// Size of the client's narrowed port range (the default range has 28,232).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub ports: u16,

    /// Connections in the pool (--mode pooled).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub pool_size: usize,

    /// Only remove the namespaces of lab runs that were killed (SIGKILL) before
    /// they could clean up — their owner process is gone — then exit. Every
    /// run does this first anyway. Namespaces of running labs are never touched.
    #[arg(long, conflicts_with_all = ["mode", "fix", "rate", "duration", "ports", "pool_size"])]
    pub cleanup: bool,

    /// Print one JSON object for the whole run instead of the timeline (with
    /// --cleanup: the list of namespaces removed).
    #[arg(long)]
    pub json: bool,
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range: give LOW-HIGH, e.g. 32768-60999");
    let (low, high) = text.split_once(['-', ' ', '\t']).ok_or_else(bad)?;
    let (low, high): (u16, u16) = (
        low.trim().parse().map_err(|_| bad())?,
        high.trim().parse().map_err(|_| bad())?,
    );
    if low > high || low == 0 {
        return Err(bad());
    }
    Ok((low, high))
}

fn parse_reserved(text: &str) -> Result<PortRanges, String> {
    PortRanges::parse(text)
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "1" | "yes" | "true" => Ok(true),
        "off" | "0" | "no" | "false" => Ok(false),
        _ => Err(format!("{text:?}: use on or off")),
    }
}

/// Options of `twscope status` (and of `twscope` with no command).
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON (the schema is documented in the README) instead of text.
    #[arg(long)]
    pub json: bool,

    /// How many destinations to list, busiest first; 0 lists all of them.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Only destinations with this address, and port if given
    /// (198.18.0.2, 198.18.0.2:5432, 2001:db8::1, `[2001:db8::1]:443`).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub dest: Option<DestFilter>,

    /// Also run the doctor's TIME_WAIT checklist on the same census: one
    /// dump, so the two never disagree. JSON gains "doctor": {findings, worst};
    /// the exit code is the worse of the verdict and the checklist.
    #[arg(long)]
    pub doctor: bool,

    /// Also show the processes holding each destination's live sockets (as
    /// `ss -p`): PID, command and container, from the socket inodes in
    /// /proc/PID/fd of the namespace's processes. Other users' processes
    /// need CAP_SYS_PTRACE (or root); those not readable are counted. JSON
    /// gains destinations[].processes and processes_unreadable.
    #[arg(short = 'p', long)]
    pub processes: bool,

    /// Trace connects for SECS first (eBPF, as `twscope trace`): under each
    /// destination the processes opening connections to it, their attempts
    /// and failures per second and the errno — is it failing right now, and
    /// who. Needs CAP_BPF and CAP_PERFMON (or root). JSON gains
    /// destinations[].connecting and "trace".
    #[arg(long, value_name = "SECS", value_parser = parse_trace_seconds)]
    pub trace: Option<f64>,

    /// `--netns`, shared with the other commands.
    #[command(flatten)]
    pub netns: NetnsArg,

    /// The model's knobs, shared with `top`.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The capacity model's knobs (`status`, `top`).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
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

const TOP_AFTER_HELP: &str = "\
Keys: q quit · s sort · / filter · p pause · n next namespace · Enter open ·
Esc back · t trace panel · ? help.
Examples:
  twscope top                          this namespace, every 2 s
  twscope top --netns all              every pod and container; Enter drills in
  twscope top --netns blue --interval 5
  twscope top --trace                  with the trace panel open (root)
Honours NO_COLOR. Needs a terminal of at least 80×16; for text use
`twscope status`. Exit codes: 0 quit, 3 error (no terminal, bad option,
unknown namespace, missing privileges).";

/// Options of `twscope top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Seconds between censuses (0.5 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_interval)]
    pub interval: f64,

    /// Open the trace panel at start: who opens connections and who gets
    /// EADDRNOTAVAIL (eBPF; needs CAP_BPF and CAP_PERFMON, or root). `t`
    /// toggles it.
    #[arg(long)]
    pub trace: bool,

    /// `--netns`, shared with the other commands.
    #[command(flatten)]
    pub netns: NetnsArg,

    /// The model's knobs, as for `status`.
    #[command(flatten)]
    pub model: ModelArgs,
}

fn parse_interval(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('s').parse::<f64>() {
        Ok(s) if (0.5..=3600.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not an interval in seconds between 0.5 and 3600")),
    }
}

/// `twscope trace`'s flags.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// How long to trace, in seconds; Ctrl-C ends it early and still reports.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_duration)]
    pub duration: f64,

    /// Print JSON (the schema is documented in the README) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Only connections made in this network namespace (a name from `ip
    /// netns list`, a path such as /proc/PID/ns/net, or a PID); `all`, the
    /// default, keeps every namespace: the tracer sees the whole node.
    #[arg(long, value_name = "NAME|PATH|PID|all", value_parser = parse_netns)]
    pub netns: Option<NetnsChoice>,

    /// Only this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only processes in this container (an id or its prefix, as `crictl ps`
    /// shows it) or pod (its name).
    #[arg(long, value_name = "ID|POD")]
    pub container: Option<String>,
}

fn parse_trace_seconds(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('s').parse::<f64>() {
        Ok(s) if (0.1..=300.0).contains(&s) => Ok(s),
        _ => Err(format!("{text:?} is not a trace window in seconds between 0.1 and 300")),
    }
}

fn parse_duration(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('s').parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(s),
        _ => Err(format!("{text:?} is not a duration in seconds between 0 and 86400")),
    }
}

fn parse_netns(text: &str) -> Result<NetnsChoice, String> {
    if text == "all" {
        // `ip -all netns exec` reserves the word too: `./all` names a file.
        return Ok(NetnsChoice::All);
    }
    NetnsSpec::parse(text).map(NetnsChoice::One).map_err(|e| e.to_string())
}

fn parse_percent(text: &str) -> Result<f64, String> {
    match text.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage between 0 and 100")),
    }
}
