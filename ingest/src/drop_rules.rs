//! Drop rules at ingest: series that a tenant's mapping rules mark `drop`
//! are removed after decoding and HA deduplication, before group commit, so
//! they are never stored (M3's drop policies in the coordinator).
//!
//! Cheap on the hot path: per request one read of the tenant's rules in
//! memory (`aggregator::PolledRules`; the first request of a tenant waits
//! for one read of the rule store, later ones never wait and pick up a new
//! rule-set version within `aggregate.rules_poll`), and nothing per series
//! unless the tenant has a drop rule; then one glob match per series and
//! rule.

use std::sync::Arc;

use aggregator::PolledRules;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use storage::{Series, TenantId};
use tracing::debug;

/// The ingest tier's view of drop rules.
#[derive(Clone)]
pub struct DropRules {
    rules: Arc<PolledRules>,
    dropped_series: Counter,
    dropped_samples: Counter,
}

impl DropRules {
    /// Drop rules from `rules`, with unregistered counters.
    pub fn new(rules: Arc<PolledRules>) -> Self {
        Self {
            rules,
            dropped_series: Counter::default(),
            dropped_samples: Counter::default(),
        }
    }

    /// Registers `strata_ingest_dropped_{series,samples}_total`.
    pub fn register(self, registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("strata_ingest");
        r.register(
            "dropped_series",
            "Series of write requests not stored because a drop rule selects them",
            self.dropped_series.clone(),
        );
        r.register(
            "dropped_samples",
            "Samples not stored because a drop rule selects their series",
            self.dropped_samples.clone(),
        );
        self
    }

    /// `series` without those the tenant's drop rules select.
    pub async fn apply(&self, tenant: &TenantId, mut series: Vec<Series>) -> Vec<Series> {
        let Some(current) = self.rules.get(tenant).await else {
            return series;
        };
        if !current.rules.has_drop_rules() {
            return series;
        }
        let before = series.len();
        let mut samples = 0u64;
        series.retain(|s| {
            let drop = current.rules.drops(&s.labels);
            if drop {
                samples += s.samples.len() as u64;
            }
            !drop
        });
        let dropped = before - series.len();
        if dropped > 0 {
            self.dropped_series.inc_by(dropped as u64);
            self.dropped_samples.inc_by(samples);
            debug!(tenant = %tenant, series = dropped, samples, version = current.version, "series dropped by rules");
        }
        series
    }
}

/// Applies `rules` when configured.
pub(crate) async fn apply(
    rules: Option<&DropRules>,
    tenant: &TenantId,
    series: Vec<Series>,
) -> Vec<Series> {
    match rules {
        Some(r) => r.apply(tenant, series).await,
        None => series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregator::rules::RuleSetSpec;
    use aggregator::{ObjectRuleStore, RuleStore};
    use object_store::memory::InMemory;
    use std::time::Duration;
    use storage::{Labels, Sample};

    fn series(name: &str, job: &str) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", job)]).expect("labels"),
            samples: vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
        }
    }

    #[tokio::test]
    async fn drops_selected_series_only_for_their_tenant() {
        let store: Arc<dyn RuleStore> = Arc::new(ObjectRuleStore::new(Arc::new(InMemory::new())));
        let t = TenantId::new("t").expect("tenant");
        let other = TenantId::new("o").expect("tenant");
        let spec = RuleSetSpec::parse(
            r#"
[[mapping_rules]]
name = "no-debug"
filter = { __name__ = "debug_*", job = "!keep" }
drop = true
[[mapping_rules]]
name = "keep-cpu"
filter = { __name__ = "cpu" }
storage_policies = ["1m:40d"]
"#,
            false,
        )
        .expect("rules");
        store.commit(&t, 0, spec, 0).await.expect("commit");
        let rules = DropRules::new(PolledRules::new(store, Duration::from_secs(5)));
        let input = vec![
            series("debug_x", "a"),
            series("debug_y", "keep"),
            series("cpu", "a"),
            series("debug_z", "b"),
        ];
        let kept = rules.apply(&t, input.clone()).await;
        let names: Vec<_> = kept
            .iter()
            .map(|s| (s.labels.metric_name().unwrap_or(""), s.labels.get("job")))
            .collect();
        assert_eq!(names, vec![("debug_y", Some("keep")), ("cpu", Some("a"))]);
        assert_eq!(rules.dropped_series.get(), 2);
        assert_eq!(rules.dropped_samples.get(), 4);
        // Another tenant without rules keeps everything.
        assert_eq!(rules.apply(&other, input.clone()).await, input);
        assert_eq!(apply(None, &t, input.clone()).await, input);
    }
}
