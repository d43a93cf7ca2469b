//! The state behind `max_series_per_metric`: for each tenant and metric
//! name, the distinct series this ingester accepted and when it last saw
//! each, so that a series counts while it was seen within the window.
//!
//! A series is keyed by its 64-bit series id (xxh3 of the label set); two
//! label sets sharing an id would count once, which at 64 bits is a
//! negligible under-count. The map of a metric never holds more than the
//! limit: a series beyond it is refused, not recorded.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use storage::Labels;

/// Series ids are xxh3 hashes already: hashing them again for the map is
/// wasted work on the write path, so the map uses them as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; this keeps any other input correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap = HashMap<u64, i64, BuildHasherDefault<IdHasher>>;

/// One metric's series: series id → last time seen (ms).
#[derive(Debug)]
struct MetricSeries {
    seen: IdMap,
    /// No entry was last seen before this (a lower bound: refreshing a
    /// series does not raise it), so a map with nothing stale is not
    /// walked.
    oldest: i64,
}

impl MetricSeries {
    /// Drops the series not seen within `window` of `now`.
    fn prune(&mut self, now: i64, window: i64) {
        let cutoff = now.saturating_sub(window);
        if self.oldest > cutoff {
            return;
        }
        self.seen.retain(|_, at| *at > cutoff);
        self.oldest = self.seen.values().copied().min().unwrap_or(i64::MAX);
    }
}

/// Series of every tenant's metrics seen within their window.
#[derive(Debug, Default)]
pub(crate) struct SeriesTracker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<String, HashMap<String, MetricSeries>>,
    /// When every metric was last swept (metrics no longer sent would
    /// otherwise keep their maps forever).
    swept_at: i64,
}

/// The decision on one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    /// The metric already has `limit` series within the window.
    OverLimit,
}

impl SeriesTracker {
    /// Records the series of `labels` (in request order) for `tenant` at
    /// `now` and says for each whether it is within `limit` distinct series
    /// of its metric seen in the last `window` ms. A series already counted
    /// is always accepted (and its time refreshed); a new one only while
    /// its metric has room.
    pub(crate) fn check<'a>(
        &self,
        tenant: &str,
        labels: impl Iterator<Item = &'a Labels>,
        limit: usize,
        window: i64,
        now: i64,
    ) -> Vec<Verdict> {
        // A poisoned lock only means another request panicked mid-update;
        // the maps are still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_sub(state.swept_at) >= window {
            state.sweep(now, window);
        }
        if !state.tenants.contains_key(tenant) {
            state.tenants.insert(tenant.to_string(), HashMap::new());
        }
        let Some(metrics) = state.tenants.get_mut(tenant) else {
            return Vec::new();
        };
        labels
            .map(|l| {
                let name = l.metric_name().unwrap_or("");
                let metric = match metrics.get_mut(name) {
                    Some(m) => m,
                    None => metrics.entry(name.to_string()).or_insert(MetricSeries {
                        seen: IdMap::default(),
                        oldest: i64::MAX,
                    }),
                };
                let id = l.series_id();
                if let Some(at) = metric.seen.get_mut(&id) {
                    *at = (*at).max(now);
                    return Verdict::Accepted;
                }
                // Only a full metric needs to know which of its series have
                // gone stale; that keeps the common path one map lookup.
                if metric.seen.len() >= limit {
                    metric.prune(now, window);
                }
                if metric.seen.len() < limit {
                    metric.seen.insert(id, now);
                    metric.oldest = metric.oldest.min(now);
                    Verdict::Accepted
                } else {
                    Verdict::OverLimit
                }
            })
            .collect()
    }

    /// Series counted for `tenant`'s `metric` (tests and debugging).
    #[cfg(test)]
    pub(crate) fn count(&self, tenant: &str, metric: &str) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .tenants
            .get(tenant)
            .and_then(|m| m.get(metric))
            .map_or(0, |m| m.seen.len())
    }

    /// Metrics tracked for `tenant` (tests).
    #[cfg(test)]
    pub(crate) fn metrics(&self, tenant: &str) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.tenants.get(tenant).map_or(0, |m| m.len())
    }
}

impl State {
    /// Drops stale series everywhere and forgets empty metrics and tenants.
    /// Runs at most once per window, so its cost is spread over a window's
    /// requests.
    fn sweep(&mut self, now: i64, window: i64) {
        for metrics in self.tenants.values_mut() {
            metrics.retain(|_, m| {
                m.prune(now, window);
                !m.seen.is_empty()
            });
        }
        self.tenants.retain(|_, m| !m.is_empty());
        self.swept_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(metric: &str, i: usize) -> Labels {
        Labels::from_pairs([
            ("__name__".to_string(), metric.to_string()),
            ("i".to_string(), i.to_string()),
        ])
        .expect("labels")
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn counts_distinct_series_per_metric_and_refuses_new_ones_beyond_the_limit() {
        let t = SeriesTracker::default();
        let ls: Vec<Labels> = (0..5).map(|i| labels("up", i)).collect();
        let v = t.check("a", ls.iter(), 3, HOUR, 1_000);
        use Verdict::*;
        assert_eq!(v, [Accepted, Accepted, Accepted, OverLimit, OverLimit]);
        assert_eq!(t.count("a", "up"), 3);
        // Known series keep passing, also repeated in one request.
        let again = [ls[0].clone(), ls[2].clone(), ls[0].clone(), ls[4].clone()];
        let v = t.check("a", again.iter(), 3, HOUR, 2_000);
        assert_eq!(v, [Accepted, Accepted, Accepted, OverLimit]);
        // Another metric and another tenant have their own counts.
        let other: Vec<Labels> = (0..3).map(|i| labels("other", i)).collect();
        assert!(
            t.check("a", other.iter(), 3, HOUR, 2_000)
                .iter()
                .all(|v| *v == Accepted)
        );
        assert!(
            t.check("b", ls.iter().take(3), 3, HOUR, 2_000)
                .iter()
                .all(|v| *v == Accepted)
        );
        assert_eq!(t.count("a", "up"), 3);
        assert_eq!(t.count("b", "up"), 3);
    }

    #[test]
    fn series_leave_the_count_once_unseen_for_the_window() {
        let t = SeriesTracker::default();
        let ls: Vec<Labels> = (0..4).map(|i| labels("up", i)).collect();
        use Verdict::*;
        // Series 0 and 1 at t=0, series 2 at t=30 min: the metric is full.
        assert_eq!(t.check("a", ls[..2].iter(), 3, HOUR, 0), [Accepted; 2]);
        assert_eq!(t.check("a", ls[2..3].iter(), 3, HOUR, HOUR / 2), [Accepted]);
        // Series 0 refreshed at 50 min.
        assert_eq!(
            t.check("a", ls[..1].iter(), 3, HOUR, HOUR * 5 / 6),
            [Accepted]
        );
        // Exactly one window after t=0, series 1 (last seen at 0) is out of
        // the window: series 3 takes its place.
        assert_eq!(
            t.check("a", ls[3..4].iter(), 3, HOUR, HOUR - 1),
            [OverLimit]
        );
        assert_eq!(t.check("a", ls[3..4].iter(), 3, HOUR, HOUR), [Accepted]);
        assert_eq!(t.count("a", "up"), 3);
        // Series 1 is new again and the metric full (0 at 50 min, 2 at
        // 30 min and 3 at 60 min are all within the window).
        assert_eq!(t.check("a", ls[1..2].iter(), 3, HOUR, HOUR), [OverLimit]);
        // After 30 more minutes series 2 has gone stale.
        assert_eq!(
            t.check("a", ls[1..2].iter(), 3, HOUR, HOUR * 3 / 2),
            [Accepted]
        );
    }

    #[test]
    fn metrics_no_longer_sent_are_forgotten() {
        let t = SeriesTracker::default();
        let old: Vec<Labels> = (0..10).map(|i| labels("gone", i)).collect();
        t.check("a", old.iter(), 100, HOUR, 0);
        t.check("b", old.iter(), 100, HOUR, 0);
        assert_eq!(t.metrics("a"), 1);
        let now: Vec<Labels> = (0..2).map(|i| labels("kept", i)).collect();
        t.check("a", now.iter(), 100, HOUR, HOUR / 2);
        // One window later the sweep drops the metric (and tenant b) not
        // seen since; the one seen half a window ago stays.
        t.check("a", std::iter::empty(), 100, HOUR, HOUR + 1);
        assert_eq!(t.count("a", "gone"), 0);
        assert_eq!(t.count("a", "kept"), 2);
        assert_eq!(t.metrics("a"), 1);
        assert_eq!(t.metrics("b"), 0);
    }

    #[test]
    fn series_without_a_name_share_one_count() {
        let t = SeriesTracker::default();
        let nameless: Vec<Labels> = (0..3)
            .map(|i| Labels::from_pairs([("i".to_string(), i.to_string())]).expect("labels"))
            .collect();
        let v = t.check("a", nameless.iter(), 2, HOUR, 0);
        assert_eq!(
            v,
            [Verdict::Accepted, Verdict::Accepted, Verdict::OverLimit]
        );
    }
}
