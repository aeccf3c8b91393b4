//! Tuples into a destination (its worst source decides), and destinations
//! into one sum (the exporter's `dst="other"`).

use super::*;

pub(super) fn destination(
    addr: IpAddr,
    port: u16,
    tuples: &[(&TupleKey, &TupleStats)],
    per_source: u32,
    settings: &Settings,
    params: &ModelParams,
) -> Destination {
    let mut states = StateCounts::default();
    let mut sources = Vec::with_capacity(tuples.len());
    let mut worst: Option<Assessment> = None;
    let mut close_rate = 0.0;
    let mut max_rate = 0.0;
    let mut outlook = Outlook::Never;
    for (key, stats) in tuples {
        for (state, n) in stats.states.iter() {
            states.add(state, n);
        }
        let a = capacity::assess(stats, per_source, settings.tw_reuse_applies(key.src, key.dst), params);
        close_rate += a.close_rate_per_s;
        max_rate += a.max_rate_per_s;
        if a.outlook.more_urgent_than(&outlook) {
            outlook = a.outlook;
        }
        sources.push(SourceUse {
            addr: key.src.to_string(),
            in_use: a.in_use,
            time_wait: a.time_wait,
            utilization: a.utilization,
            in_use_ratio: a.in_use_ratio,
        });
        let worse = match &worst {
            None => true,
            Some(w) => (a.severity, a.utilization) > (w.severity, w.utilization),
        };
        if worse {
            worst = Some(a);
        }
    }
    sources.sort_by(|a, b| b.in_use.cmp(&a.in_use).then_with(|| a.addr.cmp(&b.addr)));
    let worst = worst.expect("a destination has at least one tuple");
    Destination {
        addr: addr.to_string(),
        port,
        time_wait: states.get(TcpState::TimeWait),
        established: states.get(TcpState::Established),
        in_use: states.total(),
        available: per_source.saturating_mul(tuples.len() as u32),
        utilization: worst.utilization,
        in_use_ratio: sources.iter().map(|s| s.in_use_ratio).fold(0.0, f64::max),
        tw_reuse: worst.tw_reuse,
        close_rate_per_s: close_rate,
        max_rate_per_s: max_rate,
        exhaustion_eta_s: outlook.eta_s(),
        outlook,
        steady_utilization: worst.steady_utilization,
        severity: worst.severity,
        states,
        sources,
        processes: None,
        connecting: None,
    }
}

/// Destinations summed into one (the exporter's `dst="other"` series):
/// counts, budgets and rates add up, utilization is the worst of them, time
/// to exhaustion the soonest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DestinationSum {
    /// How many destinations were summed.
    pub destinations: usize,
    /// Their TIME_WAIT sockets.
    pub time_wait: u64,
    /// Their ESTABLISHED sockets.
    pub established: u64,
    /// Their sockets in any state.
    pub in_use: u64,
    /// Their budgets added up.
    pub available: u64,
    /// The worst utilization among them.
    pub utilization: f64,
    /// Their close rates added up.
    pub close_rate_per_s: f64,
    /// Their sustainable rates added up.
    pub max_rate_per_s: f64,
    /// The soonest exhaustion among them.
    pub exhaustion_eta_s: Option<f64>,
}

impl DestinationSum {
    /// The sum of `destinations`.
    pub fn of<'a>(destinations: impl IntoIterator<Item = &'a Destination>) -> DestinationSum {
        let mut sum = DestinationSum::default();
        for d in destinations {
            sum.destinations += 1;
            sum.time_wait += d.time_wait;
            sum.established += d.established;
            sum.in_use += d.in_use;
            sum.available += u64::from(d.available);
            sum.utilization = sum.utilization.max(d.utilization);
            sum.close_rate_per_s += d.close_rate_per_s;
            sum.max_rate_per_s += d.max_rate_per_s;
            if let Some(t) = d.exhaustion_eta_s {
                sum.exhaustion_eta_s = Some(sum.exhaustion_eta_s.map_or(t, |e: f64| e.min(t)));
            }
        }
        sum
    }
}

impl Status {
    /// The `keep` busiest destinations, and the rest summed (`None` when
    /// nothing is left over): bounded label cardinality for the exporter.
    pub fn busiest_and_rest(&self, keep: usize) -> (&[Destination], Option<DestinationSum>) {
        let (top, rest) = self.destinations.split_at(self.destinations.len().min(keep));
        (top, (!rest.is_empty()).then(|| DestinationSum::of(rest)))
    }
}
