//! Where a destination is heading, and the verdict, in the words every view uses.

use super::*;

impl Destination {
    /// `addr:port`, IPv6 bracketed as `ss` shows it.
    pub fn endpoint(&self) -> String {
        endpoint(&self.addr, self.port)
    }

    /// Whether the budget is used up now, so the close rate counts only the
    /// connects that got a port.
    pub fn exhausted(&self) -> bool {
        self.outlook == Outlook::ExhaustedNow
    }
}

/// The verdict over `destinations`: the worst one named, with its numbers,
/// where it is heading and the likely cause. `hold_s` is the TIME_WAIT
/// lifetime the model used.
pub fn verdict(destinations: &[Destination], settings: &Settings, hold_s: f64) -> Verdict {
    // The worst destination; among equals, the busiest (the first in order).
    let Some(worst) = destinations.iter().rev().max_by(|a, b| {
        (a.severity, a.utilization, a.in_use)
            .partial_cmp(&(b.severity, b.utilization, b.in_use))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) else {
        return Verdict {
            severity: Severity::Ok,
            summary: "OK: no outbound TCP connections, so no source ports in use".to_string(),
        };
    };
    let percent = (worst.utilization * 100.0).round();
    // While connects fail, only the ones that got a port close and count.
    let rate_meaning = if worst.exhausted() {
        " (connections that got a port; the application attempts more)"
    } else {
        ""
    };
    let usage = format!(
        "{} uses {percent}% of its {} ports ({} in use, {} TIME_WAIT), closing {}/s{rate_meaning} against {}/s sustainable",
        worst.endpoint(),
        thousands(u64::from(worst.available)),
        thousands(worst.in_use),
        thousands(worst.time_wait),
        rate(worst.close_rate_per_s),
        rate(worst.max_rate_per_s),
    );
    if worst.severity == Severity::Ok {
        return Verdict {
            severity: Severity::Ok,
            summary: format!("OK: no destination is short of source ports; busiest {usage}"),
        };
    }
    let outlook = match worst.outlook {
        Outlook::Never => String::new(),
        outlook => format!("; {}", outlook.phrase()),
    };
    Verdict {
        severity: worst.severity,
        summary: format!(
            "{}: {usage}{outlook}. Likely cause: {}",
            worst.severity.name().to_uppercase(),
            likely_cause(worst, settings, hold_s)
        ),
    }
}

fn likely_cause(d: &Destination, settings: &Settings, hold_s: f64) -> String {
    let close_wait = d.states.get(TcpState::CloseWait);
    let syn_sent = d.states.get(TcpState::SynSent);
    let cause = if d.time_wait * 2 >= d.in_use {
        format!(
            "short-lived connections ({} TIME_WAIT vs {} ESTABLISHED): each request opens and closes its own \
             connection, so a connection pool is bypassed or HTTP keep-alive is off; reuse connections",
            thousands(d.time_wait),
            thousands(d.established)
        )
    } else if close_wait * 2 >= d.in_use {
        format!(
            "{} sockets in CLOSE_WAIT: the peer closed but the application never calls close() (a socket leak)",
            thousands(close_wait)
        )
    } else if syn_sent * 2 >= d.in_use {
        format!(
            "{} connects still in SYN_SENT: the destination is slow or unreachable",
            thousands(syn_sent)
        )
    } else {
        format!(
            "{} concurrent ESTABLISHED connections: the pool or client opens too many connections to one destination",
            thousands(d.established)
        )
    };
    let reuse = if d.tw_reuse {
        format!(
            " (tcp_tw_reuse={} lets connect() take over TIME_WAIT ports older than {} ms here)",
            settings.tcp_tw_reuse,
            thousands(u64::from(settings.reuse_delay_ms()))
        )
    } else if d.time_wait > 0 {
        let why = linux::tw_reuse_off_reason(settings.tcp_tw_reuse, settings.tcp_timestamps)
            .unwrap_or_else(|| "tcp_tw_reuse does not apply".to_string());
        format!(" ({why}: TIME_WAIT holds each port for {hold_s:.1} s on this kernel)")
    } else {
        String::new()
    };
    cause + &reuse
}
