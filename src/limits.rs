//! The `[limits]` section: per-tenant limits with defaults for every tenant
//! and overrides in `[limits.tenants.<id>]`, resolved here into the ingest
//! tier's and the query tier's own limit tables. Also the
//! `strata_query_limited_requests_total` counter (the ingest tier registers
//! its own).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ingest::IngestConfig;
use ingest::clock::Clock;
use ingest::limits::{IngestLimits, LimitLabels, LimitMetrics, TenantIngestLimits};
use ingest::remote_write::SeriesLimits;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use querier::api::{QueryConfig, QueryLimits, TenantQueryLimits};
use serde::Deserialize;
use storage::TenantId;

/// `[limits]`: the defaults of every tenant. A limit left unset here falls
/// back to the process-wide setting it refines (`[ingest.limits]` for label
/// limits, `query.max_samples` and `query.timeout`) or is off.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Samples per second per tenant and ingester; 0 or unset: unlimited.
    pub ingestion_rate: Option<f64>,
    /// Token-bucket size in samples; unset: one second at the rate.
    pub ingestion_burst: Option<u64>,
    pub max_series_per_request: Option<usize>,
    /// Distinct series per metric name each ingester accepts from a tenant
    /// within `series_per_metric_window`; 0 or unset: unlimited.
    pub max_series_per_metric: Option<usize>,
    /// How long a series counts toward `max_series_per_metric` after it was
    /// last written; unset: 1h.
    #[serde(with = "humantime_serde")]
    pub series_per_metric_window: Option<Duration>,
    pub max_label_name_length: Option<usize>,
    pub max_label_value_length: Option<usize>,
    pub max_label_names_per_series: Option<usize>,
    pub max_concurrent_queries: Option<usize>,
    pub max_query_samples: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub max_query_time: Option<Duration>,
    pub max_result_series: Option<usize>,
    pub max_result_points: Option<usize>,
    /// `[limits.tenants.<id>]`: any of the keys above, for one tenant.
    pub tenants: BTreeMap<String, TenantLimitsConfig>,
}

/// `[limits.tenants.<id>]`: the same keys as `[limits]`; unset ones take the
/// `[limits]` value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimitsConfig {
    pub ingestion_rate: Option<f64>,
    pub ingestion_burst: Option<u64>,
    pub max_series_per_request: Option<usize>,
    pub max_series_per_metric: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub series_per_metric_window: Option<Duration>,
    pub max_label_name_length: Option<usize>,
    pub max_label_value_length: Option<usize>,
    pub max_label_names_per_series: Option<usize>,
    pub max_concurrent_queries: Option<usize>,
    pub max_query_samples: Option<usize>,
    #[serde(with = "humantime_serde")]
    pub max_query_time: Option<Duration>,
    pub max_result_series: Option<usize>,
    pub max_result_points: Option<usize>,
}

impl LimitsConfig {
    /// The defaults, in the shape of a tenant's overrides.
    fn defaults(&self) -> TenantLimitsConfig {
        TenantLimitsConfig {
            ingestion_rate: self.ingestion_rate,
            ingestion_burst: self.ingestion_burst,
            max_series_per_request: self.max_series_per_request,
            max_series_per_metric: self.max_series_per_metric,
            series_per_metric_window: self.series_per_metric_window,
            max_label_name_length: self.max_label_name_length,
            max_label_value_length: self.max_label_value_length,
            max_label_names_per_series: self.max_label_names_per_series,
            max_concurrent_queries: self.max_concurrent_queries,
            max_query_samples: self.max_query_samples,
            max_query_time: self.max_query_time,
            max_result_series: self.max_result_series,
            max_result_points: self.max_result_points,
        }
    }

    /// Checks every value; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.defaults().validate("limits")?;
        for (id, t) in &self.tenants {
            TenantId::new(id).map_err(|e| format!("limits.tenants.{id}: {e}"))?;
            t.validate(&format!("limits.tenants.{id}"))?;
        }
        Ok(())
    }

    /// Ingest limits of every tenant, over the `[ingest.limits]` defaults.
    pub fn ingest(
        &self,
        ingest: &IngestConfig,
        clock: Arc<dyn Clock>,
        metrics: LimitMetrics,
    ) -> IngestLimits {
        let defaults = self.defaults();
        let tenants = self
            .tenants
            .iter()
            .map(|(id, t)| (id.clone(), t.or(&defaults).ingest(&ingest.limits)))
            .collect();
        IngestLimits::new(defaults.ingest(&ingest.limits), tenants, clock, metrics)
    }

    /// Query limits of every tenant, over the `[query]` defaults.
    pub fn query(&self, query: &QueryConfig, on_refuse: QueryLimitMetrics) -> QueryLimits {
        let defaults = self.defaults();
        let tenants: HashMap<String, TenantQueryLimits> = self
            .tenants
            .iter()
            .map(|(id, t)| (id.clone(), t.or(&defaults).query(query)))
            .collect();
        let family = on_refuse.requests;
        QueryLimits::new(
            defaults.query(query),
            tenants,
            Arc::new(move |tenant: &str, limit: &str| {
                family
                    .get_or_create(&LimitLabels {
                        tenant: tenant.to_string(),
                        limit: limit.to_string(),
                    })
                    .inc();
            }),
        )
    }
}

impl TenantLimitsConfig {
    /// These overrides, with `base` for what they leave unset.
    fn or(&self, base: &TenantLimitsConfig) -> TenantLimitsConfig {
        TenantLimitsConfig {
            ingestion_rate: self.ingestion_rate.or(base.ingestion_rate),
            ingestion_burst: self.ingestion_burst.or(base.ingestion_burst),
            max_series_per_request: self.max_series_per_request.or(base.max_series_per_request),
            max_series_per_metric: self.max_series_per_metric.or(base.max_series_per_metric),
            series_per_metric_window: self
                .series_per_metric_window
                .or(base.series_per_metric_window),
            max_label_name_length: self.max_label_name_length.or(base.max_label_name_length),
            max_label_value_length: self.max_label_value_length.or(base.max_label_value_length),
            max_label_names_per_series: self
                .max_label_names_per_series
                .or(base.max_label_names_per_series),
            max_concurrent_queries: self.max_concurrent_queries.or(base.max_concurrent_queries),
            max_query_samples: self.max_query_samples.or(base.max_query_samples),
            max_query_time: self.max_query_time.or(base.max_query_time),
            max_result_series: self.max_result_series.or(base.max_result_series),
            max_result_points: self.max_result_points.or(base.max_result_points),
        }
    }

    fn validate(&self, section: &str) -> Result<(), String> {
        if let Some(rate) = self.ingestion_rate
            && !(rate.is_finite() && rate >= 0.0)
        {
            return Err(format!(
                "{section}.ingestion_rate: must be a number of samples per second, 0 or more"
            ));
        }
        if self.ingestion_burst == Some(0) {
            return Err(format!(
                "{section}.ingestion_burst: must be greater than 0 (leave it unset for one second at the rate)"
            ));
        }
        let positive = [
            ("max_label_name_length", self.max_label_name_length),
            ("max_label_value_length", self.max_label_value_length),
            (
                "max_label_names_per_series",
                self.max_label_names_per_series,
            ),
            ("max_query_samples", self.max_query_samples),
        ];
        for (field, v) in positive {
            if v == Some(0) {
                return Err(format!("{section}.{field}: must be greater than 0"));
            }
        }
        if self
            .series_per_metric_window
            .is_some_and(|d| d.as_millis() == 0 || d.as_millis() > i64::MAX as u128)
        {
            return Err(format!(
                "{section}.series_per_metric_window: must be at least 1ms"
            ));
        }
        if self.max_query_time.is_some_and(|d| d.is_zero()) {
            return Err(format!("{section}.max_query_time: must be greater than 0"));
        }
        Ok(())
    }

    fn ingest(&self, process: &SeriesLimits) -> TenantIngestLimits {
        let rate = self.ingestion_rate.unwrap_or(0.0);
        let labels = SeriesLimits {
            max_label_name_length: self
                .max_label_name_length
                .unwrap_or(process.max_label_name_length),
            max_label_value_length: self
                .max_label_value_length
                .unwrap_or(process.max_label_value_length),
            max_label_names_per_series: self
                .max_label_names_per_series
                .unwrap_or(process.max_label_names_per_series),
        };
        TenantIngestLimits {
            ingestion_rate: rate,
            // One second's worth by default, and never less than one sample.
            ingestion_burst: self
                .ingestion_burst
                .map(|b| b as f64)
                .unwrap_or(rate.ceil())
                .max(1.0),
            max_series_per_request: self.max_series_per_request.unwrap_or(0),
            max_series_per_metric: self.max_series_per_metric.unwrap_or(0),
            series_per_metric_window_ms: self
                .series_per_metric_window
                .map_or(DEFAULT_SERIES_PER_METRIC_WINDOW_MS, |d| {
                    d.as_millis() as i64
                }),
            labels: (labels != *process).then_some(labels),
        }
    }

    fn query(&self, process: &QueryConfig) -> TenantQueryLimits {
        TenantQueryLimits {
            max_concurrent_queries: self.max_concurrent_queries.unwrap_or(0),
            max_samples: self.max_query_samples.unwrap_or(process.max_samples),
            max_query_time: self.max_query_time.unwrap_or(process.timeout),
            max_result_series: self.max_result_series.unwrap_or(0),
            max_result_points: self.max_result_points.unwrap_or(0),
        }
    }
}

/// `series_per_metric_window` when unset: an hour, well above any scrape
/// or send interval, so a series still being written always counts.
const DEFAULT_SERIES_PER_METRIC_WINDOW_MS: i64 = 3_600_000;

/// `strata_query_limited_requests_total{tenant,limit}`.
#[derive(Clone, Debug, Default)]
pub struct QueryLimitMetrics {
    pub requests: Family<LimitLabels, Counter>,
}

impl QueryLimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry
            .sub_registry_with_prefix("strata_query_limited")
            .register(
                "requests",
                "Queries refused by a per-tenant limit, by tenant and limit",
                m.requests.clone(),
            );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LimitsConfig, String> {
        #[derive(Deserialize)]
        struct File {
            limits: LimitsConfig,
        }
        let c: File = toml::from_str(text).map_err(|e| e.to_string())?;
        c.limits.validate()?;
        Ok(c.limits)
    }

    #[test]
    fn tenants_override_defaults_which_override_the_process_settings() {
        let c = parse(
            r#"
[limits]
ingestion_rate = 1000
max_concurrent_queries = 4
max_series_per_metric = 500
[limits.tenants.team-a]
ingestion_rate = 10
max_series_per_metric = 20
series_per_metric_window = "10m"
ingestion_burst = 50
max_label_names_per_series = 5
max_query_samples = 100
max_query_time = "5s"
[limits.tenants."team.b"]
max_result_series = 7
"#,
        )
        .expect("valid");
        let ingest = c.ingest(
            &IngestConfig::default(),
            Arc::new(ingest::clock::SystemClock),
            LimitMetrics::default(),
        );
        let tenant = |id: &str| TenantId::new(id).expect("tenant");
        let a = ingest.of(&tenant("team-a"));
        assert_eq!((a.ingestion_rate, a.ingestion_burst), (10.0, 50.0));
        assert_eq!(
            a.labels.as_ref().map(|l| l.max_label_names_per_series),
            Some(5)
        );
        assert_eq!(
            (a.max_series_per_metric, a.series_per_metric_window_ms),
            (20, 600_000)
        );
        let b = ingest.of(&tenant("team.b"));
        assert_eq!(
            (b.max_series_per_metric, b.series_per_metric_window_ms),
            (500, 3_600_000)
        );
        assert_eq!((b.ingestion_rate, b.ingestion_burst), (1000.0, 1000.0));
        assert_eq!(b.labels, None, "same label limits as [ingest.limits]");
        let other = ingest.of(&tenant("other"));
        assert_eq!(other.ingestion_rate, 1000.0);

        let query = QueryConfig::default();
        let q = c.query(&query, QueryLimitMetrics::default());
        let a = q.of(&tenant("team-a"));
        assert_eq!(a.max_samples, 100);
        assert_eq!(a.max_query_time, Duration::from_secs(5));
        assert_eq!(a.max_concurrent_queries, 4);
        let b = q.of(&tenant("team.b"));
        assert_eq!(b.max_result_series, 7);
        assert_eq!(b.max_samples, query.max_samples);
        assert_eq!(b.max_query_time, query.timeout);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[limits]\ningestion_rate = -1\n", "limits.ingestion_rate"),
            (
                "[limits.tenants.a]\ningestion_burst = 0\n",
                "limits.tenants.a.ingestion_burst",
            ),
            (
                "[limits.tenants.a]\nmax_query_time = \"0s\"\n",
                "limits.tenants.a.max_query_time",
            ),
            (
                "[limits.tenants.\"a/b\"]\nmax_result_series = 1\n",
                "limits.tenants.a/b",
            ),
            ("[limits.tenants.a]\ningestion_rat = 1\n", "ingestion_rat"),
            (
                "[limits]\nmax_label_names_per_series = 0\n",
                "limits.max_label_names_per_series",
            ),
            (
                "[limits.tenants.a]\nseries_per_metric_window = \"0s\"\n",
                "limits.tenants.a.series_per_metric_window",
            ),
        ];
        for (text, field) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(field), "{text}: {err}");
        }
    }
}
