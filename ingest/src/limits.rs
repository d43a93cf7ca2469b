//! Per-tenant ingest limits: the ingestion rate and burst (a token bucket
//! per tenant), series per request, series per metric, and per-tenant
//! label limits that replace `[ingest.limits]` for one tenant.
//!
//! The token buckets live in this process. Ingesters share no state, so
//! with N ingesters behind a load balancer a tenant can write up to N times
//! its rate: the limit is per ingester, like Mimir's "local" strategy.
//! Series per metric is counted the same way: the distinct series of a
//! metric this ingester accepted for the tenant within a sliding window
//! ([`series_per_metric`]); with requests spread over ingesters each one
//! sees nearly every active series, so the count approaches the global one.

mod series_per_metric;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use storage::sidecar::Sidecar;
use storage::{Series, TenantId};

use crate::clock::Clock;
use crate::error::IngestError;
use crate::remote_write::SeriesLimits;
use crate::series_cache::SeriesCache;
use series_per_metric::{SeriesTracker, Verdict};

/// The ingest limits of one tenant, resolved from defaults and overrides.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantIngestLimits {
    /// Samples per second this ingester accepts from the tenant; 0 means
    /// unlimited.
    pub ingestion_rate: f64,
    /// Samples the tenant may send at once above the rate (the bucket's
    /// size); a request with more samples than this is always refused.
    pub ingestion_burst: f64,
    /// Most series in one write request; 0 means unlimited.
    pub max_series_per_request: usize,
    /// Most distinct series per metric name this ingester accepts from the
    /// tenant within `series_per_metric_window_ms`; 0 means unlimited.
    pub max_series_per_metric: usize,
    /// How long a series counts toward `max_series_per_metric` after it
    /// was last seen.
    pub series_per_metric_window_ms: i64,
    /// Label limits replacing `[ingest.limits]` for this tenant.
    pub labels: Option<SeriesLimits>,
}

/// Limit names, as they appear in messages, config and metric labels.
pub const INGESTION_RATE: &str = "ingestion_rate";
pub const MAX_SERIES_PER_REQUEST: &str = "max_series_per_request";
pub const MAX_SERIES_PER_METRIC: &str = "max_series_per_metric";

/// `strata_ingest_limited_{requests,samples,series}_total{tenant,limit}`.
#[derive(Clone, Debug, Default)]
pub struct LimitMetrics {
    pub requests: Family<LimitLabels, Counter>,
    pub samples: Family<LimitLabels, Counter>,
    /// Series dropped by `max_series_per_metric`.
    pub series: Family<LimitLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub tenant: String,
    pub limit: String,
}

impl LimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("strata_ingest_limited");
        r.register(
            "requests",
            "Write requests refused by a per-tenant limit, by tenant and limit",
            m.requests.clone(),
        );
        r.register(
            "samples",
            "Samples of write requests refused by a per-tenant limit, by tenant and limit",
            m.samples.clone(),
        );
        r.register(
            "series",
            "Series dropped from write requests by a per-tenant limit (max_series_per_metric), by tenant and limit",
            m.series.clone(),
        );
        m
    }

    fn count(&self, tenant: &TenantId, limit: &str, samples: usize) {
        let labels = LimitLabels {
            tenant: tenant.as_str().to_string(),
            limit: limit.to_string(),
        };
        self.requests.get_or_create(&labels).inc();
        self.samples.get_or_create(&labels).inc_by(samples as u64);
    }
}

/// A token bucket: `tokens` samples may be taken now; it refills at the
/// tenant's rate up to its burst.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
    /// The tenant's rate and burst, to tell a full bucket when evicting.
    rate: f64,
    burst: f64,
}

/// Buckets kept before full ones are forgotten (a full bucket is the same
/// as none), so tenant ids made up by senders cannot grow the map forever.
const MAX_BUCKETS: usize = 10_000;

/// The limits of every tenant and the state of their token buckets.
pub struct IngestLimits {
    default: TenantIngestLimits,
    tenants: HashMap<String, TenantIngestLimits>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Decoding for tenants with their own label limits bypasses the shared
    /// series cache: a cached label set was validated under the default
    /// limits and must not skip a stricter tenant's checks.
    uncached: SeriesCache,
    /// Recent series per tenant and metric, for `max_series_per_metric`.
    series: SeriesTracker,
    clock: Arc<dyn Clock>,
    metrics: LimitMetrics,
}

impl Default for IngestLimits {
    /// No limits beyond `[ingest.limits]`.
    fn default() -> Self {
        Self::new(
            TenantIngestLimits::default(),
            HashMap::new(),
            Arc::new(crate::clock::SystemClock),
            LimitMetrics::default(),
        )
    }
}

impl IngestLimits {
    pub fn new(
        default: TenantIngestLimits,
        tenants: HashMap<String, TenantIngestLimits>,
        clock: Arc<dyn Clock>,
        metrics: LimitMetrics,
    ) -> Self {
        Self {
            default,
            tenants,
            buckets: Mutex::default(),
            uncached: SeriesCache::new(0),
            series: SeriesTracker::default(),
            clock,
            metrics,
        }
    }

    /// The limits of `tenant`.
    pub fn of(&self, tenant: &TenantId) -> &TenantIngestLimits {
        self.tenants.get(tenant.as_str()).unwrap_or(&self.default)
    }

    /// The label limits and series cache to decode `tenant`'s request with.
    pub fn decoding<'a>(
        &'a self,
        tenant: &TenantId,
        default: &'a SeriesLimits,
        cache: &'a SeriesCache,
    ) -> (&'a SeriesLimits, &'a SeriesCache) {
        match &self.of(tenant).labels {
            Some(own) if own != default => (own, &self.uncached),
            _ => (default, cache),
        }
    }

    /// Checks a decoded request of `total` series (valid or not) against the
    /// tenant's series-per-request and rate limits, and takes its samples
    /// from the tenant's bucket. Refused requests store nothing.
    pub fn admit(
        &self,
        tenant: &TenantId,
        total: usize,
        series: &[Series],
    ) -> Result<(), IngestError> {
        let limits = self.of(tenant);
        let samples: usize = series.iter().map(|s| s.samples.len()).sum();
        if limits.max_series_per_request > 0 && total > limits.max_series_per_request {
            self.metrics.count(tenant, MAX_SERIES_PER_REQUEST, samples);
            return Err(IngestError::TooManySeries {
                tenant: tenant.as_str().to_string(),
                series: total,
                limit: limits.max_series_per_request,
            });
        }
        if limits.ingestion_rate > 0.0 && samples > 0 && !self.take(tenant, limits, samples) {
            self.metrics.count(tenant, INGESTION_RATE, samples);
            return Err(IngestError::RateLimited {
                tenant: tenant.as_str().to_string(),
                samples,
                rate: limits.ingestion_rate,
                burst: limits.ingestion_burst,
            });
        }
        Ok(())
    }

    /// Applies `max_series_per_metric` to an admitted request: series over
    /// the limit (float series, and the native-histogram series of
    /// `sidecar` if given) are taken out and counted, the others returned
    /// for storing, with the error to answer if any was dropped. Exemplars
    /// and metadata are not series and stay. Costs nothing for a tenant
    /// without the limit.
    pub fn series_per_metric(
        &self,
        tenant: &TenantId,
        series: Vec<Series>,
        sidecar: Option<&mut Sidecar>,
    ) -> (Vec<Series>, Option<IngestError>) {
        let limits = self.of(tenant);
        let histograms = sidecar.as_ref().map_or(0, |s| s.histograms.len());
        if limits.max_series_per_metric == 0 || series.len() + histograms == 0 {
            return (series, None);
        }
        let hist_labels = sidecar
            .as_ref()
            .into_iter()
            .flat_map(|s| s.histograms.iter().map(|h| &h.labels));
        let verdicts = self.series.check(
            tenant.as_str(),
            series.iter().map(|s| &s.labels).chain(hist_labels),
            limits.max_series_per_metric,
            limits.series_per_metric_window_ms,
            self.clock.now_ms(),
        );
        if verdicts.iter().all(|v| *v == Verdict::Accepted) {
            return (series, None);
        }
        let mut dropped = Dropped::default();
        let mut verdicts = verdicts.into_iter();
        let kept = series
            .into_iter()
            .filter(|s| match verdicts.next() {
                Some(Verdict::OverLimit) => {
                    dropped.add(&s.labels, s.samples.len());
                    false
                }
                _ => true,
            })
            .collect();
        if let Some(sidecar) = sidecar {
            sidecar.histograms.retain(|h| match verdicts.next() {
                Some(Verdict::OverLimit) => {
                    dropped.add(&h.labels, h.histograms.len());
                    false
                }
                _ => true,
            });
        }
        (kept, dropped.error(self, tenant, limits))
    }

    /// Takes `n` samples from the tenant's bucket if it holds that many.
    fn take(&self, tenant: &TenantId, limits: &TenantIngestLimits, n: usize) -> bool {
        let now = self.clock.now_ms();
        let burst = limits.ingestion_burst;
        // A poisoned lock only means another request panicked mid-update;
        // the buckets are still usable numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(tenant.as_str()) {
            buckets.retain(|_, b| {
                let elapsed = now.saturating_sub(b.at_ms).max(0) as f64 / 1000.0;
                b.tokens + elapsed * b.rate < b.burst
            });
        }
        let bucket = buckets
            .entry(tenant.as_str().to_string())
            .or_insert(Bucket {
                tokens: burst,
                at_ms: now,
                rate: limits.ingestion_rate,
                burst,
            });
        // A clock that went backwards refills nothing.
        let elapsed = now.saturating_sub(bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * limits.ingestion_rate).min(burst);
        bucket.at_ms = bucket.at_ms.max(now);
        let n = n as f64;
        if n <= bucket.tokens {
            bucket.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// What `max_series_per_metric` took out of one request.
#[derive(Default)]
struct Dropped {
    first_metric: Option<String>,
    metrics: std::collections::HashSet<String>,
    series: usize,
    samples: usize,
}

impl Dropped {
    fn add(&mut self, labels: &storage::Labels, samples: usize) {
        let name = labels.metric_name().unwrap_or("");
        if self.first_metric.is_none() {
            self.first_metric = Some(name.to_string());
        }
        if !self.metrics.contains(name) {
            self.metrics.insert(name.to_string());
        }
        self.series += 1;
        self.samples += samples;
    }

    /// Counts the drop and makes the answer's error; `None` if nothing was
    /// dropped.
    fn error(
        self,
        limits: &IngestLimits,
        tenant: &TenantId,
        l: &TenantIngestLimits,
    ) -> Option<IngestError> {
        let metric = self.first_metric?;
        let labels = LimitLabels {
            tenant: tenant.as_str().to_string(),
            limit: MAX_SERIES_PER_METRIC.to_string(),
        };
        limits.metrics.requests.get_or_create(&labels).inc();
        limits
            .metrics
            .samples
            .get_or_create(&labels)
            .inc_by(self.samples as u64);
        limits
            .metrics
            .series
            .get_or_create(&labels)
            .inc_by(self.series as u64);
        Some(IngestError::SeriesPerMetric {
            tenant: tenant.as_str().to_string(),
            metric,
            limit: l.max_series_per_metric,
            window_s: l.series_per_metric_window_ms / 1000,
            dropped: self.series,
            metrics: self.metrics.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use storage::histogram::Histogram;
    use storage::sidecar::HistogramSeries;
    use storage::{Labels, Sample};

    fn series(n: usize, samples: usize) -> Vec<Series> {
        (0..n)
            .map(|i| Series {
                labels: Labels::from_pairs([
                    ("__name__".to_string(), "m".to_string()),
                    ("i".to_string(), i.to_string()),
                ])
                .expect("labels"),
                samples: (0..samples).map(|t| Sample::new(t as i64, 1.0)).collect(),
            })
            .collect()
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::new(id).expect("tenant")
    }

    fn limited(rate: f64, burst: f64) -> (IngestLimits, Arc<ManualClock>) {
        let clock = ManualClock::new(1_000_000);
        let mut tenants = HashMap::new();
        tenants.insert(
            "slow".to_string(),
            TenantIngestLimits {
                ingestion_rate: rate,
                ingestion_burst: burst,
                max_series_per_request: 3,
                labels: None,
                ..Default::default()
            },
        );
        let limits = IngestLimits::new(
            TenantIngestLimits::default(),
            tenants,
            clock.clone(),
            LimitMetrics::default(),
        );
        (limits, clock)
    }

    #[test]
    fn the_bucket_allows_the_burst_then_the_rate() {
        let (limits, clock) = limited(10.0, 20.0);
        let slow = tenant("slow");
        // The full burst at once, then nothing until time passes.
        assert!(limits.admit(&slow, 2, &series(2, 5)).is_ok());
        assert!(limits.admit(&slow, 1, &series(1, 10)).is_ok());
        let err = limits.admit(&slow, 1, &series(1, 1)).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        let msg = err.to_string();
        assert!(
            msg.contains("ingestion_rate") && msg.contains("\"slow\""),
            "{msg}"
        );
        // Half a second refills 5 samples: 5 pass, a 6th does not.
        clock.advance(500);
        assert!(limits.admit(&slow, 1, &series(1, 5)).is_ok());
        assert!(limits.admit(&slow, 1, &series(1, 1)).is_err());
        // A long pause refills to the burst, not beyond.
        clock.advance(3_600_000);
        assert!(limits.admit(&slow, 1, &series(1, 21)).is_err());
        assert!(limits.admit(&slow, 2, &series(2, 10)).is_ok());
        // A clock that goes backwards refills nothing.
        clock.advance(-10_000);
        assert!(limits.admit(&slow, 1, &series(1, 1)).is_err());
        // Other tenants have their own (here: no) limit.
        assert!(limits.admit(&tenant("other"), 1, &series(1, 1000)).is_ok());
        let refused = limits
            .metrics
            .samples
            .get_or_create(&LimitLabels {
                tenant: "slow".into(),
                limit: INGESTION_RATE.into(),
            })
            .get();
        assert_eq!(refused, 1 + 1 + 21 + 1);
    }

    #[test]
    fn full_buckets_are_forgotten_and_spent_ones_kept() {
        let clock = ManualClock::new(0);
        let limited = TenantIngestLimits {
            ingestion_rate: 1.0,
            ingestion_burst: 10.0,
            ..Default::default()
        };
        let limits = IngestLimits::new(
            limited,
            HashMap::new(),
            clock.clone(),
            LimitMetrics::default(),
        );
        for i in 1..MAX_BUCKETS {
            assert!(
                limits
                    .admit(&tenant(&format!("t{i}")), 1, &series(1, 1))
                    .is_ok()
            );
        }
        // Ten seconds refill every bucket; then one tenant spends its own.
        clock.advance(10_000);
        let spent = tenant("spent");
        assert!(limits.admit(&spent, 1, &series(1, 10)).is_ok());
        // One more tenant: the full buckets go, the spent one stays.
        assert!(limits.admit(&tenant("late"), 1, &series(1, 1)).is_ok());
        let kept = limits.buckets.lock().expect("lock").len();
        assert_eq!(kept, 2);
        assert!(limits.admit(&spent, 1, &series(1, 1)).is_err());
    }

    #[test]
    fn a_refused_request_takes_no_tokens() {
        let (limits, _clock) = limited(1.0, 10.0);
        let slow = tenant("slow");
        assert!(limits.admit(&slow, 1, &series(1, 11)).is_err());
        assert!(limits.admit(&slow, 1, &series(1, 10)).is_ok());
    }

    #[test]
    fn series_per_request_counts_every_series_of_the_request() {
        let (limits, _clock) = limited(0.0, 0.0);
        let slow = tenant("slow");
        assert!(limits.admit(&slow, 3, &series(3, 1)).is_ok());
        // Four series in the request, one of them invalid (not passed on).
        let err = limits.admit(&slow, 4, &series(3, 1)).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        let msg = err.to_string();
        assert!(
            msg.contains("max_series_per_request") && msg.contains("4") && msg.contains("3"),
            "{msg}"
        );
    }

    fn named(metric: &str, i: usize) -> Labels {
        Labels::from_pairs([
            ("__name__".to_string(), metric.to_string()),
            ("i".to_string(), i.to_string()),
        ])
        .expect("labels")
    }

    #[test]
    fn series_over_the_per_metric_limit_are_dropped_and_the_rest_kept() {
        let clock = ManualClock::new(0);
        let mut tenants = HashMap::new();
        tenants.insert(
            "capped".to_string(),
            TenantIngestLimits {
                max_series_per_metric: 2,
                series_per_metric_window_ms: 60_000,
                ..Default::default()
            },
        );
        let limits = IngestLimits::new(
            TenantIngestLimits::default(),
            tenants,
            clock.clone(),
            LimitMetrics::default(),
        );
        let capped = tenant("capped");
        let float = |metric: &str, i: usize| Series {
            labels: named(metric, i),
            samples: vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
        };
        // Three series of `a`, two of `b`: the third of `a` is dropped.
        let req = vec![
            float("a", 0),
            float("b", 0),
            float("a", 1),
            float("a", 2),
            float("b", 1),
        ];
        let (kept, err) = limits.series_per_metric(&capped, req, None);
        let kept: Vec<String> = kept.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            kept,
            [r#"a{i="0"}"#, r#"b{i="0"}"#, r#"a{i="1"}"#, r#"b{i="1"}"#]
        );
        let err = err.expect("a series was dropped");
        assert_eq!(err.status().as_u16(), 400);
        let msg = err.to_string();
        assert!(
            msg.contains("max_series_per_metric: 2")
                && msg.contains("metric \"a\"")
                && msg.contains("tenant \"capped\"")
                && msg.contains("1 new series of 1 metric"),
            "{msg}"
        );
        // Native-histogram series count toward the same metrics.
        let mut sidecar = Sidecar {
            histograms: vec![
                HistogramSeries {
                    labels: named("b", 0),
                    histograms: vec![Histogram::default()],
                },
                HistogramSeries {
                    labels: named("h", 0),
                    histograms: vec![Histogram::default()],
                },
                HistogramSeries {
                    labels: named("b", 7),
                    histograms: vec![Histogram::default(); 3],
                },
            ],
            ..Default::default()
        };
        let (kept, err) = limits.series_per_metric(
            &capped,
            vec![float("a", 1), float("a", 9)],
            Some(&mut sidecar),
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].labels, named("a", 1));
        let hist: Vec<Labels> = sidecar
            .histograms
            .iter()
            .map(|h| h.labels.clone())
            .collect();
        assert_eq!(hist, [named("b", 0), named("h", 0)]);
        let msg = err.expect("dropped").to_string();
        assert!(msg.contains("2 new series of 2 metric"), "{msg}");
        // Counted: 1 + 2 series, 2 + 2 + 3 samples, in 2 requests.
        let labels = LimitLabels {
            tenant: "capped".into(),
            limit: MAX_SERIES_PER_METRIC.into(),
        };
        let m = &limits.metrics;
        assert_eq!(m.series.get_or_create(&labels).get(), 3);
        assert_eq!(m.samples.get_or_create(&labels).get(), 7);
        assert_eq!(m.requests.get_or_create(&labels).get(), 2);
        // After the window, the series of `a` not sent since are free again.
        clock.advance(60_000);
        let (kept, err) = limits.series_per_metric(&capped, vec![float("a", 9)], None);
        assert_eq!((kept.len(), err.is_none()), (1, true));
        // Tenants without the limit are not tracked at all.
        let many: Vec<Series> = (0..100).map(|i| float("a", i)).collect();
        let (kept, err) = limits.series_per_metric(&tenant("free"), many, None);
        assert_eq!((kept.len(), err.is_none()), (100, true));
        assert_eq!(limits.series.metrics("free"), 0);
    }

    #[test]
    fn tenants_with_their_own_label_limits_bypass_the_series_cache() {
        let default = SeriesLimits::default();
        let strict = SeriesLimits {
            max_label_names_per_series: 5,
            ..SeriesLimits::default()
        };
        let mut tenants = HashMap::new();
        for (id, labels) in [("same", default.clone()), ("strict", strict.clone())] {
            tenants.insert(
                id.to_string(),
                TenantIngestLimits {
                    labels: Some(labels),
                    ..Default::default()
                },
            );
        }
        let limits = IngestLimits::new(
            TenantIngestLimits::default(),
            tenants,
            Arc::new(crate::clock::SystemClock),
            LimitMetrics::default(),
        );
        let shared = SeriesCache::new(100);
        let (l, c) = limits.decoding(&tenant("strict"), &default, &shared);
        assert_eq!(l, &strict);
        assert!(!std::ptr::eq(c, &shared));
        for id in ["same", "other"] {
            let (l, c) = limits.decoding(&tenant(id), &default, &shared);
            assert_eq!(l, &default);
            assert!(std::ptr::eq(c, &shared));
        }
    }
}
