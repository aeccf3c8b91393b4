//! What each destination did over the last minutes, across censuses.
//!
//! One census says where a destination stands; a watch (`twscope top`) also
//! needs where it has been. The TIME_WAIT post names the sign of a bypassed
//! pool as ESTABLISHED *fluctuating* rather than stable at the pool size,
//! which no single census can show. [`History`] keeps, per (namespace,
//! destination), the ESTABLISHED count and close rate of every census within
//! a span, bounded in destinations and points, and answers with a [`Trend`]:
//! the ESTABLISHED range and the close rate binned for a sparkline.

use std::collections::{BTreeMap, VecDeque};

use crate::status::{Destination, Status};

/// A destination in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The namespace's inode.
    pub netns: u64,
    /// The destination address, as [`Destination::addr`].
    pub addr: String,
    /// The destination port.
    pub port: u16,
}

impl SeriesKey {
    /// The key of `destination` in the namespace `netns`.
    pub fn of(netns: u64, destination: &Destination) -> SeriesKey {
        SeriesKey {
            netns,
            addr: destination.addr.clone(),
            port: destination.port,
        }
    }
}

/// One census's numbers for one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    /// Seconds since the history's clock started.
    at_s: f64,
    established: u64,
    close_rate_per_s: f64,
}

/// ESTABLISHED and close rates of every destination over the last `span_s`.
#[derive(Debug, Clone)]
pub struct History {
    span_s: f64,
    max_series: usize,
    series: BTreeMap<SeriesKey, VecDeque<Point>>,
    /// When the newest census was recorded.
    latest_s: f64,
    /// When the first census was recorded.
    first_s: Option<f64>,
}

/// Destinations followed per namespace unless [`History::new`] says
/// otherwise: a screen shows fewer, and the busiest are the ones that matter.
pub const DEFAULT_MAX_SERIES: usize = 200;

impl History {
    /// A history of the last `span_s` seconds of at most `max_series`
    /// destinations per namespace (the busiest of each census).
    pub fn new(span_s: f64, max_series: usize) -> History {
        History {
            span_s,
            max_series,
            series: BTreeMap::new(),
            latest_s: 0.0,
            first_s: None,
        }
    }

    /// How far back the history reaches, in seconds.
    pub fn span_s(&self) -> f64 {
        self.span_s
    }

    /// Destinations with a series (bounded by `max_series` per namespace).
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no destination has a series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Records one census of a namespace taken at `at_s` (seconds on the
    /// caller's monotonic clock). A followed destination missing from it had
    /// no socket, so it is recorded as zero; points older than the span are
    /// dropped, and a series with nothing left in the span with them.
    pub fn record(&mut self, status: &Status, at_s: f64) {
        let netns = status.netns.inode;
        self.latest_s = self.latest_s.max(at_s);
        self.first_s.get_or_insert(at_s);
        // `Status::destinations` is busiest first: the busiest start a
        // series, and one already followed goes on while it has sockets.
        for (rank, d) in status.destinations.iter().enumerate() {
            let key = SeriesKey::of(netns, d);
            let points = match self.series.get_mut(&key) {
                Some(points) => points,
                None if rank < self.max_series => self.series.entry(key).or_default(),
                None => continue,
            };
            points.push_back(Point {
                at_s,
                established: d.established,
                close_rate_per_s: d.close_rate_per_s,
            });
        }
        let cutoff = at_s - self.span_s;
        self.series.retain(|key, points| {
            if key.netns == netns && points.back().is_some_and(|p| p.at_s < at_s) {
                points.push_back(Point {
                    at_s,
                    established: 0,
                    close_rate_per_s: 0.0,
                });
            }
            while points.front().is_some_and(|p| p.at_s < cutoff) {
                points.pop_front();
            }
            points.iter().any(|p| p.established > 0 || p.close_rate_per_s > 0.0)
        });
    }

    /// Forgets every namespace but those in `keep` (one gone from the node).
    pub fn retain_namespaces(&mut self, keep: impl Fn(u64) -> bool) {
        self.series.retain(|key, _| keep(key.netns));
    }

    /// The trend of `destination` in namespace `netns`, or `None` before its
    /// first census.
    pub fn trend(&self, netns: u64, destination: &Destination) -> Option<Trend> {
        let points = self.series.get(&SeriesKey::of(netns, destination))?;
        let first = points.front()?;
        let (min, max) = points.iter().fold((u64::MAX, 0), |(lo, hi), p| {
            (lo.min(p.established), hi.max(p.established))
        });
        Some(Trend {
            established_min: min,
            established_max: max,
            covered_s: self.latest_s - first.at_s,
            censuses: points.len(),
            close_rates: points.iter().map(|p| (p.at_s, p.close_rate_per_s)).collect(),
            span_s: self.span_s,
            latest_s: self.latest_s,
            started_s: self.first_s.unwrap_or(first.at_s),
        })
    }
}

/// One destination over the history's span.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Fewest ESTABLISHED of any census in the span.
    pub established_min: u64,
    /// Most ESTABLISHED of any census in the span.
    pub established_max: u64,
    /// Seconds between the oldest census kept and the newest.
    pub covered_s: f64,
    /// Censuses kept.
    pub censuses: usize,
    close_rates: Vec<(f64, f64)>,
    span_s: f64,
    latest_s: f64,
    started_s: f64,
}

impl Trend {
    /// ESTABLISHED moved by more than a fifth of its peak (and by more than
    /// one connection) within the span: what a pool does not do, and what a
    /// client per request does.
    pub fn established_fluctuates(&self) -> bool {
        let swing = self.established_max - self.established_min;
        swing > 1 && swing as f64 > 0.2 * self.established_max as f64
    }

    /// The close rate over the span in `bins` equal slices, oldest first:
    /// each slice's mean, `None` for a slice before the history began (so a
    /// sparkline grows from the right instead of showing invented zeros).
    pub fn close_rate_bins(&self, bins: usize) -> Vec<Option<f64>> {
        if bins == 0 {
            return Vec::new();
        }
        let width = self.span_s / bins as f64;
        let start = self.latest_s - self.span_s;
        let mut sums = vec![(0.0, 0u32); bins];
        for &(at, rate) in &self.close_rates {
            // The newest census sits at the right edge, in the last bin.
            let i = (((at - start) / width).ceil() as usize).clamp(1, bins) - 1;
            sums[i].0 += rate;
            sums[i].1 += 1;
        }
        // A slice with no census in it but after the history began (a
        // refresh longer than a slice) carries the one before it.
        let mut out = Vec::with_capacity(bins);
        let mut last = None;
        for (i, (sum, n)) in sums.into_iter().enumerate() {
            let slice_end = start + width * (i + 1) as f64;
            let value = if n > 0 {
                Some(sum / f64::from(n))
            } else if slice_end >= self.started_s {
                last
            } else {
                None
            };
            last = value.or(last);
            out.push(value);
        }
        out
    }

    /// The highest close rate of any census in the span.
    pub fn close_rate_peak(&self) -> f64 {
        self.close_rates.iter().map(|&(_, r)| r).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::Host;

    fn census(established: u64, time_wait: u32) -> Status {
        Host::default()
            .outbound("10.0.0.1", "10.0.0.2", 5432, time_wait, 10, established)
            .status(crate::fixtures::settings())
    }

    #[test]
    fn range_covers_the_span_only() {
        let mut h = History::new(60.0, 10);
        h.record(&census(5, 100), 0.0);
        h.record(&census(50, 100), 30.0);
        h.record(&census(20, 100), 61.0);
        let s = census(20, 100);
        let t = h.trend(1, &s.destinations[0]).unwrap();
        // The census at 0 s is older than 60 s at 61 s: 5 is gone.
        assert_eq!((t.established_min, t.established_max), (20, 50));
        assert_eq!(t.censuses, 2);
        assert!(t.established_fluctuates());
    }

    #[test]
    fn a_stable_pool_does_not_fluctuate() {
        let mut h = History::new(60.0, 10);
        for i in 0..10 {
            h.record(&census(20 + (i % 2), 10), i as f64 * 2.0);
        }
        let s = census(20, 10);
        assert!(!h.trend(1, &s.destinations[0]).unwrap().established_fluctuates());
    }

    #[test]
    fn a_destination_gone_from_the_census_counts_as_zero_then_is_dropped() {
        let mut h = History::new(10.0, 10);
        let busy = census(7, 100);
        h.record(&busy, 0.0);
        let empty = Host::default().status(crate::fixtures::settings());
        h.record(&empty, 2.0);
        let t = h.trend(1, &busy.destinations[0]).unwrap();
        assert_eq!((t.established_min, t.established_max), (0, 7));
        h.record(&empty, 20.0);
        assert!(h.trend(1, &busy.destinations[0]).is_none());
        assert!(h.is_empty());
    }

    #[test]
    fn only_the_busiest_destinations_are_followed() {
        let mut h = History::new(60.0, 1);
        let two = Host::default()
            .outbound("10.0.0.1", "10.0.0.2", 1, 10, 10, 0)
            .outbound("10.0.0.1", "10.0.0.3", 2, 500, 10, 0)
            .status(crate::fixtures::settings());
        h.record(&two, 0.0);
        assert_eq!(h.len(), 1);
        assert_eq!(two.destinations[0].port, 2);
        assert!(h.trend(1, &two.destinations[0]).is_some());
        assert!(h.trend(1, &two.destinations[1]).is_none());
    }

    #[test]
    fn bins_are_empty_before_the_history_began_and_the_newest_is_last() {
        let mut h = History::new(60.0, 10);
        h.record(&census(1, 600), 100.0);
        h.record(&census(1, 1200), 102.0);
        let s = census(1, 1200);
        let bins = h.trend(1, &s.destinations[0]).unwrap().close_rate_bins(30);
        assert_eq!(bins.len(), 30);
        assert!(bins[..28].iter().all(Option::is_none), "{bins:?}");
        let rate = s.destinations[0].close_rate_per_s;
        assert!(rate > 0.0);
        assert_eq!(bins[29], Some(rate));
        assert!(bins[28].is_some());
    }

    #[test]
    fn memory_is_bounded_by_the_span() {
        let mut h = History::new(10.0, 10);
        for i in 0..1000 {
            h.record(&census(3, 10), f64::from(i));
        }
        let s = census(3, 10);
        assert!(h.trend(1, &s.destinations[0]).unwrap().censuses <= 11);
    }
}
