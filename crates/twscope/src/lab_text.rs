//! The text rendering of `twscope lab`: a timeline in the seed post's style,
//! one line a second, then the prediction against what happened.

use twscope_core::text::{rate, thousands};
use twscope_lab::lab::{LabOptions, LabReport, Mode, Tick, SERVER};

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
    let eta = match t.exhaustion_eta_s {
        None => "never".to_string(),
        Some(s) if s <= 0.0 => "now".to_string(),
        Some(s) => format!("{s:.0} s"),
    };
    let alarm = if t.requests_failed > 0 { "  ← cannot assign requested address" } else { "" };
    format!(
        "T+{}:{:02}  ok {:>6}  failed {:>5} · TIME_WAIT {:>6} · in use {:>6} of {:<6} ({:>3.0}%) · closing {:>5}/s · exhausted in {:<5} {}{alarm}\n",
        t.t_s / 60,
        t.t_s % 60,
        thousands(t.requests_ok),
        thousands(t.requests_failed),
        thousands(t.time_wait),
        thousands(t.in_use),
        thousands(u64::from(t.available)),
        t.utilization * 100.0,
        rate(t.close_rate_per_s),
        eta,
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
