//! The capacity model: how many source ports a destination has, how fast they
//! are being used up, and when they run out.
//!
//! The unit is a *tuple* (source address, destination address, destination
//! port): `connect()` needs a source port that makes the 4-tuple unique, so a
//! port closed towards one destination is still free towards another.
//!
//! - **available** = ports in `ip_local_port_range` − reserved ports in it −
//!   ports held by listeners in it (a bound port is skipped by `connect()`).
//! - **in use** = client sockets of the tuple, in any state.
//! - **hold time** = how long a closed connection keeps its port: 60 s of
//!   TIME_WAIT, or only the reuse delay (1 s by default) when `tcp_tw_reuse`
//!   applies to the tuple.
//! - **max sustainable close rate** = available / hold time: the TIME_WAIT post's
//!   28,231 ports / 60 s ≈ 470 connections/s.
//! - **close rate** = TIME_WAIT sockets younger than the window / window. One
//!   dump is enough because every TIME_WAIT socket carries its age.
//! - **time to exhaustion**: existing TIME_WAIT sockets expire on schedule (the
//!   age histogram says when) while new ones arrive at the close rate; the
//!   first moment the sum reaches *available* is the forecast. Exact under a
//!   constant rate; `None` when the tuple levels off below its budget.
//! - **outlook** ([`Outlook`]): the forecast in one word, stable at the edge.
//!   The close rate is an estimate (±1/√n for n sockets in the window) and a
//!   TIME_WAIT socket lives anywhere in `time_wait_s ± time_wait_spread_s`
//!   (timer-wheel rounding), so a tuple whose steady level is within that
//!   uncertainty of 100 % is [`Outlook::AtLimit`], not alternately "runs out
//!   in 0.9 s" and "levels off at 98 %" from one dump to the next.
//!
//! ```
//! use twscope_core::capacity::{max_sustainable_rate, TIME_WAIT_SECS};
//! // The TIME_WAIT post's arithmetic: 28,231 ports held 60 s each.
//! assert_eq!(max_sustainable_rate(28_231, TIME_WAIT_SECS).floor(), 470.0);
//! ```

use serde::Serialize;

use crate::census::{TupleStats, AGE_BUCKETS};
use crate::sockdiag::TcpState;

pub use crate::linux::TIME_WAIT_SECS;

/// How bad a tuple, destination or host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Utilization below the warning threshold and not on course to run out.
    Ok,
    /// Utilization at or above the warning threshold (50 % by default), or on
    /// course to run out of ports within the hold time.
    Warning,
    /// Utilization at or above the critical threshold (80 % by default).
    Critical,
}

impl Severity {
    /// The lowercase name (`ok`, `warning`, `critical`) used in the JSON
    /// output, in metric labels and in text.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The documented exit code: 0 ok, 1 warning, 2 critical.
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

/// Utilization levels (fractions of the port budget) for the severities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Utilization (0.0–1.0) from which a tuple is [`Severity::Warning`];
    /// 0.5 by default.
    pub warning: f64,
    /// Utilization (0.0–1.0) from which a tuple is [`Severity::Critical`];
    /// 0.8 by default.
    pub critical: f64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            warning: 0.5,
            critical: 0.8,
        }
    }
}

impl Thresholds {
    /// The severity of a utilization (a fraction of the port budget): critical
    /// at or above `critical`, warning at or above `warning`, else ok. The
    /// forecast is not considered here; [`assess`] raises an "ok" tuple that is
    /// on course to run out to warning.
    pub fn classify(&self, utilization: f64) -> Severity {
        if utilization >= self.critical {
            Severity::Critical
        } else if utilization >= self.warning {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }
}

/// The source ports one tuple may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortBudget {
    /// Ports in `ip_local_port_range`, inclusive.
    pub range_size: u32,
    /// `ip_local_reserved_ports` inside the range.
    pub reserved: u32,
    /// Listening ports inside the range, not already reserved.
    pub listeners: u32,
}

impl PortBudget {
    /// Ports left for `connect()` to choose from.
    pub fn available(&self) -> u32 {
        self.range_size.saturating_sub(self.reserved + self.listeners)
    }
}

/// How long, in seconds, a closed connection keeps its source port: the
/// TIME_WAIT length (60 s in Linux), or only the reuse delay when
/// `tcp_tw_reuse` applies.
pub fn hold_seconds(tw_reuse: bool, reuse_delay_ms: u32, time_wait_s: f64) -> f64 {
    if tw_reuse {
        (f64::from(reuse_delay_ms.max(1)) / 1000.0).min(time_wait_s)
    } else {
        time_wait_s
    }
}

/// The highest close rate a budget of `available` ports sustains when each
/// closed connection holds its port for `hold_s` seconds.
pub fn max_sustainable_rate(available: u32, hold_s: f64) -> f64 {
    f64::from(available) / hold_s
}

/// Connections closed per second over the last `window_s` seconds, from the
/// TIME_WAIT age histogram.
pub fn close_rate(time_wait_age: &[u32; AGE_BUCKETS], window_s: u32) -> f64 {
    let window = (window_s as usize).clamp(1, AGE_BUCKETS);
    let recent: u64 = time_wait_age[..window].iter().map(|&n| u64::from(n)).sum();
    recent as f64 / window as f64
}

/// Seconds until the tuple has no free port, if it gets there.
///
/// `other_in_use` sockets (not TIME_WAIT) stay; TIME_WAIT sockets block their
/// port until they are `hold_s` old; new ones arrive at `rate` per second.
/// Within the next `hold_s` seconds the blocking count is a falling step
/// function (expiries) plus a rising line (arrivals); after that it is flat,
/// so if the budget is not reached by then it never is.
///
/// Second by second, the TIME_WAIT sockets still blocking during
/// `[second, second + 1)` are those of the age buckets `b` with
/// `b + second < hold_s`. While every bucket still blocks
/// (`second + AGE_BUCKETS − 1 < hold_s`) that count is constant, so that
/// segment is solved in closed form and only the last `AGE_BUCKETS` seconds
/// are stepped through: O(`AGE_BUCKETS`) whatever `hold_s` is. A hold time
/// beyond 2^52 s (or infinite) never reaches its expiries.
pub fn exhaustion_eta(
    time_wait_age: &[u32; AGE_BUCKETS],
    other_in_use: u64,
    available: u32,
    rate: f64,
    hold_s: f64,
) -> Option<f64> {
    // Up to here every second is an exact integer in f64 and in u64.
    const EXACT_SECONDS: f64 = (1u64 << 52) as f64;
    if hold_s.is_nan() || hold_s <= 0.0 {
        return None; // no second is inside the hold time
    }
    let available = f64::from(available);
    let total: u64 = time_wait_age.iter().map(|&n| u64::from(n)).sum();
    let missing_with = |blocking: u64| available - other_in_use.saturating_add(blocking) as f64;

    // Seconds 0 .. all_block: the integers s with s + AGE_BUCKETS − 1 < hold_s.
    let all_block = (hold_s.ceil() - (AGE_BUCKETS - 1) as f64).max(0.0);
    if all_block > 0.0 {
        let missing = missing_with(total);
        if missing <= 0.0 {
            return Some(0.0);
        }
        if rate > 0.0 {
            // The budget runs out at `when`, inside second floor(when), if
            // that second is still in the segment.
            let when = missing / rate;
            if when < all_block {
                return Some(when);
            }
        }
    }
    if hold_s > EXACT_SECONDS {
        return None;
    }

    // The tail: at most AGE_BUCKETS − 1 seconds in which buckets expire.
    let mut second = all_block as u64;
    let mut blocking_buckets = AGE_BUCKETS;
    let mut still_blocking = total;
    while (second as f64) < hold_s {
        while blocking_buckets > 0 && ((blocking_buckets as u64 - 1 + second) as f64) >= hold_s {
            blocking_buckets -= 1;
            still_blocking -= u64::from(time_wait_age[blocking_buckets]);
        }
        let missing = missing_with(still_blocking);
        if missing <= 0.0 {
            return Some(second as f64);
        }
        if rate > 0.0 {
            let when = missing / rate;
            let step_end = ((second + 1) as f64).min(hold_s);
            if when < step_end {
                return Some(when.max(second as f64));
            }
        }
        second += 1;
    }
    None
}

/// Where a tuple or destination is heading at its current close rate: the
/// one wording of the forecast every view uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outlook {
    /// No port left now: connect() fails with EADDRNOTAVAIL.
    ExhaustedNow,
    /// Runs out in this many seconds: the close rate exceeds what the budget
    /// sustains by more than the estimate's uncertainty.
    ExhaustedIn(f64),
    /// The close rate is, within the estimate's uncertainty, what the budget
    /// sustains (or the last free ports go before old TIME_WAIT sockets
    /// expire): connects may fail at the peaks, and a little more load runs
    /// the budget out. No time is forecast, because none would be stable.
    AtLimit,
    /// Never runs out at this rate, but levels off at this share of the
    /// budget, high enough to matter.
    LevelsOff(f64),
    /// Not on course to run out.
    Never,
}

impl Outlook {
    /// The JSON and metric form: `exhausted_now`, `exhausted_in`, `at_limit`,
    /// `levels_off`, `never`.
    pub fn name(&self) -> &'static str {
        match self {
            Outlook::ExhaustedNow => "exhausted_now",
            Outlook::ExhaustedIn(_) => "exhausted_in",
            Outlook::AtLimit => "at_limit",
            Outlook::LevelsOff(_) => "levels_off",
            Outlook::Never => "never",
        }
    }

    /// A column-sized form: `now`, `12 s`, `limit`, `lvl 82%`, `never`.
    pub fn short(&self) -> String {
        match self {
            Outlook::ExhaustedNow => "now".to_string(),
            Outlook::ExhaustedIn(s) if *s < 10.0 => format!("{s:.1} s"),
            Outlook::ExhaustedIn(s) => format!("{s:.0} s"),
            Outlook::AtLimit => "limit".to_string(),
            Outlook::LevelsOff(u) => format!("lvl {:.0}%", u * 100.0),
            Outlook::Never => "never".to_string(),
        }
    }

    /// A clause for prose: `ports exhausted now…`, `exhausted in 12 s at
    /// this rate`, `levels off at 82% of the budget at this rate`.
    pub fn phrase(&self) -> String {
        match self {
            Outlook::ExhaustedNow => "ports exhausted now: connect() fails with EADDRNOTAVAIL".to_string(),
            Outlook::ExhaustedIn(s) if *s < 10.0 => format!("exhausted in {s:.1} s at this rate"),
            Outlook::ExhaustedIn(s) => format!("exhausted in {s:.0} s at this rate"),
            Outlook::AtLimit => {
                "at the limit: closing about as fast as the budget sustains, so connects may fail at any moment"
                    .to_string()
            }
            Outlook::LevelsOff(u) => format!("levels off at {:.0}% of the budget at this rate", u * 100.0),
            Outlook::Never => "not on course to run out".to_string(),
        }
    }

    /// Whether `self` is more urgent than `other`: exhausted now, then the
    /// soonest run-out, at the limit, the highest level, never.
    pub fn more_urgent_than(&self, other: &Outlook) -> bool {
        fn rank(o: &Outlook) -> (u8, f64) {
            match *o {
                Outlook::ExhaustedNow => (4, 0.0),
                Outlook::ExhaustedIn(s) => (3, -s),
                Outlook::AtLimit => (2, 0.0),
                Outlook::LevelsOff(u) => (1, u),
                Outlook::Never => (0, 0.0),
            }
        }
        rank(self) > rank(other)
    }

    /// Seconds to exhaustion: 0 when exhausted now, the forecast when on
    /// course to run out, else `None`.
    pub fn eta_s(&self) -> Option<f64> {
        match *self {
            Outlook::ExhaustedNow => Some(0.0),
            Outlook::ExhaustedIn(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for Outlook {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The model's numbers for one tuple.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// Client sockets of this tuple in any state; each holds a source port.
    pub in_use: u64,
    /// Of `in_use`, the sockets in TIME_WAIT.
    pub time_wait: u64,
    /// Of `in_use`, the sockets in ESTABLISHED.
    pub established: u64,
    /// Source ports `connect()` may choose from for this tuple
    /// ([`PortBudget::available`]).
    pub available: u32,
    /// Sockets holding a source port of this tuple ÷ available: what `ss`
    /// suggests, TIME_WAIT sockets `tcp_tw_reuse` may take over included.
    pub in_use_ratio: f64,
    /// Whether `tcp_tw_reuse` lets `connect()` take over this tuple's TIME_WAIT
    /// ports once they are older than the reuse delay.
    pub tw_reuse: bool,
    /// Sockets that really block a port: all of them without tw_reuse; with it,
    /// TIME_WAIT sockets younger than the reuse delay plus all other states.
    pub blocking: u64,
    /// Sockets that block a port ÷ available (1.0 when no port is available
    /// at all): the share of the budget `connect()` cannot use. Severity, the
    /// verdict, the UTIL column and `twscope_destination_utilization_ratio`
    /// all show this number. Equal to `in_use_ratio` without tw_reuse.
    pub utilization: f64,
    /// Connections closed per second over the close-rate window: TIME_WAIT
    /// sockets younger than the window ÷ the window ([`close_rate`]). It counts
    /// only connections that were opened and closed; while `connect()` fails
    /// with EADDRNOTAVAIL the application attempts more than this.
    pub close_rate_per_s: f64,
    /// The highest close rate, in connections per second, the budget sustains:
    /// `available` ÷ hold time (the TIME_WAIT lifetime, or the reuse delay when
    /// `tw_reuse` applies).
    pub max_rate_per_s: f64,
    /// Seconds to exhaustion at the current close rate ([`Outlook::eta_s`]);
    /// `None` = not on course, or [`Outlook::AtLimit`].
    pub exhaustion_eta_s: Option<f64>,
    /// Where it is heading, in one word ([`Outlook`]).
    pub outlook: Outlook,
    /// The utilization this tuple levels off at if the close rate holds:
    /// (other sockets + rate × hold time) ÷ available (Little's law). Above 1
    /// it does not level off but runs out.
    pub steady_utilization: f64,
    /// Ok, warning or critical.
    pub severity: Severity,
}

/// Model inputs that are not per tuple.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelParams {
    /// Window of the close-rate estimate, in seconds (1–60).
    pub window_s: u32,
    /// Utilization levels at which a tuple becomes warning and critical.
    pub thresholds: Thresholds,
    /// The TIME_WAIT reuse delay in force (ms).
    pub reuse_delay_ms: u32,
    /// How long a TIME_WAIT socket holds its port without reuse, in seconds:
    /// the kernel's real mean lifetime ([`crate::linux::TimeWaitLifetime`]).
    pub time_wait_s: f64,
    /// How far one socket's lifetime may stray from `time_wait_s`, either
    /// way ([`crate::linux::TimeWaitLifetime::spread_s`]); 0 for a what-if.
    pub time_wait_spread_s: f64,
}

fn ratio(part: u64, whole: u32) -> f64 {
    if whole == 0 {
        if part == 0 {
            0.0
        } else {
            1.0
        }
    } else {
        part as f64 / f64::from(whole)
    }
}

/// Assesses one tuple with `available` ports; `tw_reuse` says whether reuse
/// applies to it (see [`crate::kernel::Settings::tw_reuse_applies`]).
pub fn assess(stats: &TupleStats, available: u32, tw_reuse: bool, params: &ModelParams) -> Assessment {
    let in_use = stats.in_use();
    let time_wait = stats.states.get(TcpState::TimeWait);
    let other_in_use = in_use - time_wait;
    let hold_s = hold_seconds(tw_reuse, params.reuse_delay_ms, params.time_wait_s);
    let blocking_time_wait: u64 = stats
        .time_wait_age
        .iter()
        .enumerate()
        .take_while(|(bucket, _)| (*bucket as f64) < hold_s)
        .map(|(_, &n)| u64::from(n))
        .sum();
    let blocking = other_in_use + blocking_time_wait;
    let close_rate_per_s = close_rate(&stats.time_wait_age, params.window_s);
    let exhaustion_eta_s = exhaustion_eta(&stats.time_wait_age, other_in_use, available, close_rate_per_s, hold_s);
    let utilization = ratio(blocking, available);
    let steady_utilization = if available == 0 {
        1.0
    } else {
        (other_in_use as f64 + close_rate_per_s * hold_s) / f64::from(available)
    };
    let mut severity = params.thresholds.classify(utilization);
    let outlook = outlook(
        stats,
        available,
        close_rate_per_s,
        hold_s,
        tw_reuse,
        params,
        exhaustion_eta_s,
    );
    match outlook {
        // On course to run out, or at the limit: never merely "ok".
        Outlook::ExhaustedIn(_) | Outlook::AtLimit => severity = severity.max(Severity::Warning),
        Outlook::ExhaustedNow => severity = Severity::Critical,
        Outlook::LevelsOff(_) | Outlook::Never => {}
    }
    let outlook = match outlook {
        Outlook::Never if severity > Severity::Ok && close_rate_per_s > 0.0 => {
            Outlook::LevelsOff(steady_utilization.min(1.0))
        }
        outlook => outlook,
    };
    Assessment {
        in_use,
        time_wait,
        established: stats.states.get(TcpState::Established),
        available,
        in_use_ratio: ratio(in_use, available),
        tw_reuse,
        blocking,
        utilization,
        close_rate_per_s,
        max_rate_per_s: max_sustainable_rate(available, hold_s),
        exhaustion_eta_s: outlook.eta_s(),
        outlook,
        steady_utilization,
        severity,
    }
}

/// The forecast in one word. The point forecast (`eta`, at the measured
/// rate and the mean lifetime) is trusted only when the steady level is
/// beyond 100 % even at the low end of its uncertainty: the rate less one
/// standard error (1/√n of the n sockets in the window, as for a count of
/// independent arrivals) and the lifetime less its spread — or when even the
/// high end stays below 100 % (a backlog runs the budget out before it
/// expires). When the band straddles 100 %, the tuple is at the limit. `Never` is refined into
/// `LevelsOff` by the caller, which knows the severity.
fn outlook(
    stats: &TupleStats,
    available: u32,
    rate: f64,
    hold_s: f64,
    tw_reuse: bool,
    params: &ModelParams,
    eta: Option<f64>,
) -> Outlook {
    if eta.is_some_and(|t| t <= 0.0) {
        return Outlook::ExhaustedNow;
    }
    let window = (params.window_s as usize).clamp(1, AGE_BUCKETS);
    let counted: u64 = stats.time_wait_age[..window].iter().map(|&n| u64::from(n)).sum();
    let rate_error = if counted == 0 {
        0.0
    } else {
        1.0 / (counted as f64).sqrt()
    };
    // With tw_reuse the hold time is the reuse delay, not the timer's.
    let spread = if tw_reuse { 0.0 } else { params.time_wait_spread_s };
    let other = (stats.in_use() - stats.states.get(TcpState::TimeWait)) as f64;
    let level = |rate: f64, hold: f64| (other + rate * hold.max(0.0)) / f64::from(available.max(1));
    let low = level(rate * (1.0 - rate_error), hold_s - spread);
    let high = level(rate * (1.0 + rate_error), hold_s + spread);
    match eta {
        // Beyond the budget even at the low end, or a backlog (a burst's
        // TIME_WAIT sockets) that fills it before it expires while the rate
        // itself is clearly sustainable: a run-out either way.
        Some(t) if low >= 1.0 || high < 1.0 => Outlook::ExhaustedIn(t),
        Some(_) => Outlook::AtLimit,
        None if high >= 1.0 && rate > 0.0 => Outlook::AtLimit,
        None => Outlook::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: ModelParams = ModelParams {
        window_s: 10,
        thresholds: Thresholds {
            warning: 0.5,
            critical: 0.8,
        },
        reuse_delay_ms: 1000,
        time_wait_s: TIME_WAIT_SECS,
        time_wait_spread_s: 0.0,
    };

    /// A tuple that has been closing `rate` connections a second, evenly, for
    /// `seconds` seconds, plus `established` open ones.
    fn churned(rate: u32, seconds: usize, established: u64) -> TupleStats {
        let mut stats = TupleStats::default();
        for bucket in stats.time_wait_age.iter_mut().take(seconds.min(AGE_BUCKETS)) {
            *bucket = rate;
        }
        let time_wait: u32 = stats.time_wait_age.iter().sum();
        stats.states.add(TcpState::TimeWait, u64::from(time_wait));
        stats.states.add(TcpState::Established, established);
        stats
    }

    #[test]
    fn the_posts_arithmetic() {
        // "Max new connections/sec: 28,231 / 60 = 470/sec per destination".
        assert_eq!(max_sustainable_rate(28_231, TIME_WAIT_SECS) as u32, 470);
        // The default range really holds 28,232 ports (inclusive).
        let budget = PortBudget {
            range_size: 60_999 - 32_768 + 1,
            reserved: 0,
            listeners: 0,
        };
        assert_eq!(budget.available(), 28_232);
        // "500 × 60 = 30,000 sockets needed … 30,000 > 28,231 → EXHAUSTION"
        let a = assess(&churned(500, 60, 0), 28_231, false, &PARAMS);
        assert_eq!(a.in_use, 30_000);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.exhaustion_eta_s, Some(0.0));
        assert_eq!(a.close_rate_per_s, 500.0);
    }

    #[test]
    fn budget_subtracts_reserved_ports_and_listeners() {
        let budget = PortBudget {
            range_size: 1000,
            reserved: 100,
            listeners: 2,
        };
        assert_eq!(budget.available(), 898);
        let all_gone = PortBudget {
            range_size: 10,
            reserved: 10,
            listeners: 5,
        };
        assert_eq!(all_gone.available(), 0);
        let a = assess(&churned(1, 1, 0), 0, false, &PARAMS);
        assert_eq!((a.utilization, a.severity), (1.0, Severity::Critical));
    }

    #[test]
    fn close_rate_reflects_the_window_not_the_minute() {
        // 30 s at 100/s, then the last 10 s at 300/s.
        let mut stats = churned(100, 30, 0);
        for bucket in &mut stats.time_wait_age[..10] {
            *bucket = 300;
        }
        assert_eq!(close_rate(&stats.time_wait_age, 10), 300.0);
        assert_eq!(close_rate(&stats.time_wait_age, 30), (3000.0 + 2000.0) / 30.0);
    }

    #[test]
    fn steady_state_below_budget_never_exhausts() {
        // 400/s for a full minute: 24,000 of 28,232 ports, levelled off.
        let a = assess(&churned(400, 60, 0), 28_232, false, &PARAMS);
        assert_eq!(a.exhaustion_eta_s, None);
        assert_eq!(a.severity, Severity::Critical); // 85%
        let a = assess(&churned(200, 60, 0), 28_232, false, &PARAMS);
        assert_eq!((a.exhaustion_eta_s, a.severity), (None, Severity::Ok));
    }

    #[test]
    fn a_ramp_towards_the_budget_is_forecast() {
        // 50/s for 10 s into 1,000 ports: 500 used, 500 missing, nothing expires
        // for 50 s, so exhaustion in 500 / 50 = 10 s.
        let a = assess(&churned(50, 10, 0), 1000, false, &PARAMS);
        assert_eq!(a.exhaustion_eta_s, Some(10.0));
        assert_eq!(a.severity, Severity::Warning); // 50%
                                                   // From empty at 50/s: 1,000 / 50 = 20 s (the lab's prediction).
        let fresh = assess(&churned(50, 1, 0), 1000, false, &ModelParams { window_s: 1, ..PARAMS });
        let eta = fresh.exhaustion_eta_s.unwrap();
        assert!((eta - 19.0).abs() < 1e-9, "{eta}");
    }

    #[test]
    fn expiries_are_counted_in_the_forecast() {
        // 1,000 ports; 900 TIME_WAIT all about to expire (age 59 s), new closes
        // at 10/s (600 at steady state): the old ones leave within a second, so
        // no exhaustion although 91% are in use now.
        let mut stats = TupleStats::default();
        stats.time_wait_age[59] = 900;
        stats.time_wait_age[0] = 10;
        stats.states.add(TcpState::TimeWait, 910);
        let a = assess(&stats, 1000, false, &ModelParams { window_s: 1, ..PARAMS });
        assert_eq!(a.close_rate_per_s, 10.0);
        assert_eq!(a.exhaustion_eta_s, None);
        // At 80/s the last 20 free ports go in 0.25 s, before the old expire.
        stats.time_wait_age[0] = 80;
        let a = assess(&stats, 1000, false, &ModelParams { window_s: 1, ..PARAMS });
        assert_eq!(a.exhaustion_eta_s, Some(0.25));
        // 10 s at 20/s (1,200 at steady state) beside 700 about to expire: it
        // runs out once the old ones are gone: 200 + 20/s × t = 1,000 at 40 s.
        let mut stats = churned(20, 10, 0);
        stats.time_wait_age[59] = 700;
        stats.states.add(TcpState::TimeWait, 700);
        let a = assess(&stats, 1000, false, &PARAMS);
        assert_eq!(a.outlook, Outlook::ExhaustedIn(40.0));
        assert_eq!(a.exhaustion_eta_s, Some(40.0));
    }

    /// A churn at the rate the budget sustains: the point forecast flips
    /// between "runs out in a second" and "levels off at 98 %" with every
    /// socket more or less in the window, and with the timer wheel's batches
    /// of expiries. The outlook stays "at the limit" through all of them;
    /// beyond the uncertainty it is a run-out or a level again.
    #[test]
    fn the_outlook_is_stable_at_the_edge() {
        let params = ModelParams {
            time_wait_s: 61.024,
            time_wait_spread_s: 1.028,
            ..PARAMS
        };
        // `rate` per second for a minute, the window's count off by a few
        // sockets, the oldest second thinned or thickened as a batch of
        // expiries leaves or is due. Returns the outlook and whether the point
        // forecast alone would say "runs out".
        let at = |rate: f64, jitter: usize| {
            let mut stats = TupleStats::default();
            let whole = rate.floor() as u32;
            for (age, bucket) in stats.time_wait_age.iter_mut().enumerate() {
                *bucket = whole + u32::from(age % 3 == 0);
            }
            stats.time_wait_age[0] = whole + 3 * (jitter % 5) as u32 - 8;
            let (older, oldest) = [(0, 0), (whole, 0), (whole, whole), (whole, 2 * whole)][jitter % 4];
            stats.time_wait_age[58] = older;
            stats.time_wait_age[59] = oldest;
            let time_wait: u32 = stats.time_wait_age.iter().sum();
            stats.states.add(TcpState::TimeWait, u64::from(time_wait));
            let a = assess(&stats, 1000, false, &params);
            let point = exhaustion_eta(&stats.time_wait_age, 0, 1000, a.close_rate_per_s, params.time_wait_s);
            (a, point.is_some())
        };
        let sustainable = 1000.0 / 61.024;
        let mut contradictions = 0;
        for jitter in 0..20 {
            let (a, runs_out) = at(sustainable, jitter);
            assert_eq!(a.outlook, Outlook::AtLimit, "jitter {jitter}: {a:?}");
            assert_eq!(a.exhaustion_eta_s, None);
            assert!(a.severity >= Severity::Warning);
            contradictions += usize::from(runs_out && a.steady_utilization < 1.0);
        }
        // Alone, the point forecast says "runs out in a second" where the
        // steady level says "levels off below 100 %".
        assert!(contradictions >= 5, "{contradictions}");
        // Well beyond the uncertainty the forecast is a number again…
        let (above, _) = at(2.0 * sustainable, 1);
        assert!(
            matches!(above.outlook, Outlook::ExhaustedNow | Outlook::ExhaustedIn(_)),
            "{above:?}"
        );
        // …or a level.
        let (below, _) = at(0.6 * sustainable, 1);
        assert!(
            matches!(below.outlook, Outlook::LevelsOff(u) if (0.5..0.7).contains(&u)),
            "{below:?}"
        );
        // A burst's backlog that fills the budget before it expires, at a
        // rate clearly sustainable: a run-out with its time, not "at the limit".
        let mut burst = TupleStats::default();
        burst.time_wait_age[30] = 990;
        burst.time_wait_age[0] = 5;
        burst.states.add(TcpState::TimeWait, 995);
        let a = assess(&burst, 1000, false, &ModelParams { window_s: 1, ..params });
        assert_eq!(a.outlook, Outlook::ExhaustedIn(1.0), "{a:?}");
    }

    #[test]
    fn tw_reuse_bounds_the_hold_time_by_the_reuse_delay() {
        // 600/s into 28,232 ports: unsustainable without reuse…
        let stats = churned(600, 60, 5);
        let off = assess(&stats, 28_232, false, &PARAMS);
        assert_eq!(off.severity, Severity::Critical);
        assert!((off.max_rate_per_s - 470.53).abs() < 0.01);
        // …but with reuse only the last second's 600 TIME_WAITs block a port.
        let on = assess(&stats, 28_232, true, &PARAMS);
        assert_eq!(on.blocking, 605);
        assert_eq!(on.max_rate_per_s, 28_232.0);
        assert_eq!(on.exhaustion_eta_s, None);
        assert_eq!(on.severity, Severity::Ok);
        // The in-use ratio still reports what holds a 4-tuple in the socket
        // table (what ss shows); utilization only what blocks a port.
        assert_eq!(on.in_use_ratio, off.in_use_ratio);
        assert_eq!(off.in_use_ratio, off.utilization);
        assert!((on.utilization - 605.0 / 28_232.0).abs() < 1e-12);
    }

    /// The forecast as it was first written: one step per second of `hold_s`.
    /// Kept as the reference the closed form must agree with.
    fn exhaustion_eta_stepwise(
        time_wait_age: &[u32; AGE_BUCKETS],
        other_in_use: u64,
        available: u32,
        rate: f64,
        hold_s: f64,
    ) -> Option<f64> {
        let available = available as f64;
        let mut second = 0usize;
        while (second as f64) < hold_s {
            let still_blocking: u64 = time_wait_age
                .iter()
                .enumerate()
                .take_while(|(bucket, _)| ((bucket + second) as f64) < hold_s)
                .map(|(_, &n)| u64::from(n))
                .sum();
            let missing = available - (other_in_use + still_blocking) as f64;
            if missing <= 0.0 {
                return Some(second as f64);
            }
            if rate > 0.0 {
                let when = missing / rate;
                let step_end = ((second + 1) as f64).min(hold_s);
                if when < step_end {
                    return Some(when.max(second as f64));
                }
            }
            second += 1;
        }
        None
    }

    #[test]
    fn the_closed_form_forecast_equals_the_stepwise_one() {
        // xorshift: deterministic, no dev-dependency needed.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let holds = [
            0.0,
            -1.0,
            f64::NAN,
            1e-9,
            0.001,
            0.5,
            1.0,
            1.5,
            2.0,
            30.0,
            58.0,
            58.5,
            59.0,
            59.000_001,
            59.5,
            60.0,
            60.25,
            61.0,
            118.9,
            119.0,
            120.0,
            121.5,
            300.0,
            3600.0,
        ];
        let rates = [
            0.0,
            -5.0,
            f64::NAN,
            1e-300,
            0.01,
            1.0,
            3.0,
            49.999,
            50.0,
            333.3,
            1e4,
            1e9,
            f64::INFINITY,
        ];
        let mut compared = 0;
        for case in 0..60_000u32 {
            let mut age = [0u32; AGE_BUCKETS];
            // Empty, sparse, ramps and dense histograms, small and huge counts.
            let shape = next() % 4;
            for (i, bucket) in age.iter_mut().enumerate() {
                *bucket = match shape {
                    0 => 0,
                    1 if next() % 8 == 0 => (next() % 2000) as u32,
                    1 => 0,
                    2 => (i as u32 * 7) % 101,
                    _ => (next() % 500) as u32,
                };
            }
            if next() % 50 == 0 {
                age[(next() as usize) % AGE_BUCKETS] = u32::MAX;
            }
            let other = if next() % 3 == 0 { 0 } else { next() % 5_000 };
            let available = match next() % 5 {
                0 => 0,
                1 => (next() % 100) as u32,
                2 => 28_232,
                3 => u32::MAX,
                _ => (next() % 70_000) as u32,
            };
            let hold = if case % 2 == 0 {
                holds[(next() as usize) % holds.len()]
            } else {
                (next() % 200_000) as f64 / 1000.0 // 0–200 s, fractional
            };
            let rate = if case % 3 == 0 {
                rates[(next() as usize) % rates.len()]
            } else {
                (next() % 10_000_000) as f64 / 1000.0
            };
            let fast = exhaustion_eta(&age, other, available, rate, hold);
            let slow = exhaustion_eta_stepwise(&age, other, available, rate, hold);
            assert_eq!(
                fast.map(f64::to_bits),
                slow.map(f64::to_bits),
                "age {age:?} other {other} available {available} rate {rate} hold {hold}: {fast:?} vs {slow:?}"
            );
            compared += 1;
        }
        assert_eq!(compared, 60_000);
    }

    #[test]
    fn huge_hold_times_finish_at_once() {
        let mut age = [0u32; AGE_BUCKETS];
        age[0] = 10;
        // `plan --time-wait 1e12` looped for hours; now it is a division.
        assert_eq!(exhaustion_eta(&age, 0, 1000, 1.0, 1e12), Some(990.0));
        assert_eq!(exhaustion_eta(&age, 0, 1000, 0.0, 1e12), None);
        assert_eq!(exhaustion_eta(&age, 0, 1000, 1e-12, 1e12), None); // 9.9e14 s > 1e12 s
        assert_eq!(exhaustion_eta(&age, 0, 1000, 1.0, f64::INFINITY), Some(990.0));
        assert_eq!(exhaustion_eta(&age, 0, 1000, 0.0, f64::INFINITY), None);
        assert_eq!(exhaustion_eta(&age, 0, 1000, 1.0, f64::MAX), Some(990.0));
        assert_eq!(exhaustion_eta(&age, 0, 5, 1.0, 1e300), Some(0.0));
        // Just below the exact-integer limit the tail is still stepped through.
        let hold = (1u64 << 52) as f64;
        assert_eq!(exhaustion_eta(&age, 0, 1000, 1e-30, hold), None);
        // No overflow with counts at their limits.
        assert_eq!(
            exhaustion_eta(&[u32::MAX; AGE_BUCKETS], u64::MAX, u32::MAX, 1.0, 60.0),
            Some(0.0)
        );
    }

    #[test]
    fn thresholds_are_overridable() {
        let strict = Thresholds {
            warning: 0.1,
            critical: 0.2,
        };
        assert_eq!(strict.classify(0.15), Severity::Warning);
        assert_eq!(strict.classify(0.2), Severity::Critical);
        assert_eq!(Thresholds::default().classify(0.49), Severity::Ok);
    }
}
