//! Per-tenant ingest limits: the ingestion rate and burst (a token bucket
//! per tenant), series per request, and per-tenant label limits that
//! replace `[ingest.limits]` for one tenant.
//!
//! The token buckets live in this process. Ingesters share no state, so
//! with N ingesters behind a load balancer a tenant can write up to N times
//! its rate: the limit is per ingester, like Mimir's "local" strategy.
//! Series per metric is not limited: it needs a count of a tenant's series
//! across every ingester and the store, which a stateless ingester does not
//! have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use storage::{Series, TenantId};

use crate::clock::Clock;
use crate::error::IngestError;
use crate::remote_write::SeriesLimits;
use crate::series_cache::SeriesCache;

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
    /// Label limits replacing `[ingest.limits]` for this tenant.
    pub labels: Option<SeriesLimits>,
}

/// Limit names, as they appear in messages, config and metric labels.
pub const INGESTION_RATE: &str = "ingestion_rate";
pub const MAX_SERIES_PER_REQUEST: &str = "max_series_per_request";

/// `strata_ingest_limited_{requests,samples}_total{tenant,limit}`.
#[derive(Clone, Debug, Default)]
pub struct LimitMetrics {
    pub requests: Family<LimitLabels, Counter>,
    pub samples: Family<LimitLabels, Counter>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
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
