//! The text rendering of `twscope lab`: a timeline in the TIME_WAIT post's style,
//! one line a second, then the prediction against what happened.

use twscope_core::text::{rate, thousands};
use twscope_lab::lab::{LabOptions, LabReport, Mode, Tick, SERVER};
use twscope_lab::Cleanup;

pub fn header(o: &LabOptions) -> String {
    let mode = match o.mode {
        Mode::PerRequest => "per-request (connect, request, close: the bypassed pool)".to_string(),
        Mode::Pooled => format!("pooled ({} persistent connections)", o.pool_size),
    };
    let fix = o.fix.map_or("none".to_string(), |f| f.to_string());
    let predicted = match o.predicted_onset_s() {
        Some(s) => format!("the model predicts the first failure at {s:.1} s"),
        None => "the model predicts no failure".to_string(),
    };
    format!(
        "twscope lab · client → {SERVER} over veth · {} requests/s for {} s · mode {mode} · fix {fix}\n\
         {}\n\
         {predicted}\n\n",
        rate(o.rate),
        o.duration.as_secs(),
        o.scale_note(),
    )
}

pub fn tick_line(t: &Tick) -> String {
    let alarm = if t.requests_failed > 0 {
        "  ← cannot assign requested address"
    } else {
        ""
    };
    // Once connects fail, the census's close rate counts only the ones that
    // got a port: show what the client attempted beside it.
    let closing = if t.requests_failed > 0 {
        format!(
            "closing {:>5}/s of {} attempted",
            rate(t.close_rate_per_s),
            rate(t.attempts_per_s)
        )
    } else {
        format!("closing {:>5}/s", rate(t.close_rate_per_s))
    };
    format!(
        "T+{}:{:02}  ok {:>6}  failed {:>5} · TIME_WAIT {:>6} · in use {:>6} of {:<6} ({:>3.0}%) · {closing} · runs out {:<7} {}{alarm}\n",
        t.t_s / 60,
        t.t_s % 60,
        thousands(t.requests_ok),
        thousands(t.requests_failed),
        thousands(t.time_wait),
        thousands(t.in_use),
        thousands(u64::from(t.available)),
        t.in_use_ratio * 100.0,
        t.outlook,
        t.severity.name(),
    )
}

pub fn summary(r: &LabReport) -> String {
    let predicted = r.predicted_onset_s.map_or("none".to_string(), |s| format!("{s:.1} s"));
    let observed = r.observed_onset_s.map_or("none".to_string(), |s| format!("{s:.1} s"));
    let mut text = format!(
        "\nrequests {} ok, {} failed ({} cannot assign requested address) · TIME_WAIT peak {} · server saw {} resets\n\
         first failure: predicted {predicted}, observed {observed}\n{}\n",
        thousands(r.requests_ok),
        thousands(r.requests_failed),
        thousands(r.addr_not_available),
        thousands(r.max_time_wait),
        thousands(r.server_resets),
        r.verdict,
    );
    if r.interrupted {
        text.push_str("(interrupted: stopped early; namespaces removed)\n");
    }
    text
}

/// `twscope lab --cleanup`: one line per namespace removed ("nothing to clean
/// up" when there was nothing to remove, and nothing failed).
pub fn cleanup(cleanup: &Cleanup) -> String {
    if cleanup.removed.is_empty() && cleanup.failed.is_empty() {
        return "nothing to clean up\n".to_string();
    }
    cleanup.removed.iter().map(|name| format!("removed {name}\n")).collect()
}

/// One line for stderr when a run starts and removed leftovers; `None` when
/// there was nothing to remove.
pub fn cleanup_note(cleanup: &Cleanup) -> Option<String> {
    let mut parts = Vec::new();
    if !cleanup.removed.is_empty() {
        parts.push(format!(
            "removed {} left by killed runs: {}",
            namespaces(cleanup.removed.len()),
            cleanup.removed.join(", ")
        ));
    }
    if let Some(failures) = cleanup_failures(&cleanup.failed) {
        parts.push(failures);
    }
    (!parts.is_empty()).then(|| format!("twscope lab: {}", parts.join("; ")))
}

/// One line naming the leftovers that could not be removed, and why.
pub fn cleanup_failures(failed: &[(String, String)]) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let names: Vec<&str> = failed.iter().map(|(name, _)| name.as_str()).collect();
    let mut reasons: Vec<String> = failed.iter().map(|(_, why)| why.replace('\n', " ")).collect();
    reasons.dedup();
    Some(format!(
        "cannot remove {} left by killed runs ({}): {}",
        namespaces(failed.len()),
        names.join(", "),
        reasons.join("; ")
    ))
}

fn namespaces(n: usize) -> String {
    if n == 1 {
        "1 namespace".to_string()
    } else {
        format!("{n} namespaces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_reports() {
        let none = Cleanup::default();
        assert_eq!(cleanup(&none), "nothing to clean up\n");
        assert_eq!(cleanup_note(&none), None);
        let done = Cleanup {
            removed: vec!["twscope-lab-server-7-9-0".into(), "twscope-lab-client-7-9-1".into()],
            failed: vec![],
        };
        assert_eq!(
            cleanup(&done),
            "removed twscope-lab-server-7-9-0\nremoved twscope-lab-client-7-9-1\n"
        );
        assert_eq!(
            cleanup_note(&done).unwrap(),
            "twscope lab: removed 2 namespaces left by killed runs: twscope-lab-server-7-9-0, twscope-lab-client-7-9-1"
        );
        let why = "removing a network namespace needs root".to_string();
        let failed = Cleanup {
            removed: vec![],
            failed: vec![("a".into(), why.clone()), ("b".into(), why)],
        };
        assert_eq!(cleanup(&failed), "");
        assert_eq!(
            cleanup_failures(&failed.failed).unwrap(),
            "cannot remove 2 namespaces left by killed runs (a, b): removing a network namespace needs root"
        );
    }
}
