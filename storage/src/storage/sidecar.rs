//! Writing and reading sidecars (native histograms, exemplars, metadata) of a
//! tenant. Sidecars are listed like segments; reads dedupe across them, so an
//! object read twice (a retried write, a merged copy) never changes an answer.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::debug;
use ulid::Ulid;

use super::{Storage, next_segment_id};
use crate::error::{Result, StorageError};
use crate::labels::Labels;
use crate::matcher::{Matcher, matches_all};
use crate::paths;
use crate::sidecar::{self, ExemplarSeries, HistogramSeries, MetricMetadata, Sidecar};
use crate::tenant::TenantId;

/// Sidecar objects fetched at once by a read.
const SIDECAR_CONCURRENCY: usize = 16;

/// What [`Storage::write_sidecar`] stored.
#[derive(Clone, Debug)]
pub struct WrittenSidecar {
    pub key: Path,
    pub bytes: usize,
    pub histograms: usize,
    pub exemplars: usize,
    pub metadata: usize,
}

impl Storage {
    /// Writes `sidecar` as one immutable object of `tenant`; returns only after
    /// the object store acknowledged the put.
    pub async fn write_sidecar(&self, tenant: &TenantId, s: &Sidecar) -> Result<WrittenSidecar> {
        let id = next_segment_id();
        let bytes = sidecar::encode(s, id.timestamp_ms() as i64)?;
        let key = paths::sidecar(tenant, id);
        let size = bytes.len();
        self.store
            .put(&key, bytes.into())
            .await
            .map_err(|e| StorageError::store("put", key.as_ref(), e))?;
        debug!(key = %key, bytes = size, "sidecar written");
        Ok(WrittenSidecar {
            key,
            bytes: size,
            histograms: s.histogram_count(),
            exemplars: s.exemplar_count(),
            metadata: s.metadata.len(),
        })
    }

    /// Every sidecar of `tenant` (oldest first) whose time range overlaps
    /// `[start_ms, end_ms]`.
    pub async fn sidecars(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(Ulid, Sidecar)>> {
        let prefix = paths::sidecars_prefix(tenant);
        let mut keys: Vec<(Ulid, Path)> = self
            .store
            .list(Some(&prefix))
            .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
            .try_filter_map(|meta| async move {
                Ok(paths::parse_sidecar(&meta.location).map(|id| (id, meta.location)))
            })
            .try_collect()
            .await?;
        keys.sort();
        let reads = keys.into_iter().map(|(id, key)| async move {
            let bytes = self
                .store
                .get(&key)
                .await
                .map_err(|e| StorageError::store("get", key.as_ref(), e))?
                .bytes()
                .await
                .map_err(|e| StorageError::store("get", key.as_ref(), e))?;
            let (header, s) = sidecar::decode(key.as_ref(), &bytes)?;
            Ok::<_, StorageError>(header.overlaps(start_ms, end_ms).then_some((id, s)))
        });
        let found: Vec<Option<(Ulid, Sidecar)>> = futures::stream::iter(reads)
            .buffered(SIDECAR_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Native histogram series matching `matchers` with samples in
    /// `[start_ms, end_ms]`, sorted by labels, samples by time. A (series,
    /// timestamp) written more than once comes back once: the newest write wins.
    pub async fn select_histograms(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<HistogramSeries>> {
        let mut by_series: BTreeMap<Labels, BTreeMap<i64, crate::histogram::Histogram>> =
            BTreeMap::new();
        for (_, s) in self.sidecars(tenant, start_ms, end_ms).await? {
            for hs in s.histograms {
                if !matches_all(matchers, &hs.labels) {
                    continue;
                }
                let samples = by_series.entry(hs.labels).or_default();
                for h in hs.histograms {
                    if (start_ms..=end_ms).contains(&h.timestamp) {
                        // Later sidecars come later: the newest write wins.
                        samples.insert(h.timestamp, h);
                    }
                }
            }
        }
        Ok(by_series
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(labels, s)| HistogramSeries {
                labels,
                histograms: s.into_values().collect(),
            })
            .collect())
    }

    /// Exemplars of series matching `matchers` in `[start_ms, end_ms]`, sorted
    /// by series labels, exemplars by time; identical exemplars come back once.
    pub async fn select_exemplars(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<ExemplarSeries>> {
        // Keyed by (time, value bits, labels) so identical ones collapse.
        type Key = (i64, u64, Labels);
        let mut by_series: BTreeMap<Labels, BTreeSet<Key>> = BTreeMap::new();
        for (_, s) in self.sidecars(tenant, start_ms, end_ms).await? {
            for es in s.exemplars {
                if !matches_all(matchers, &es.labels) {
                    continue;
                }
                let set = by_series.entry(es.labels).or_default();
                for e in es.exemplars {
                    if (start_ms..=end_ms).contains(&e.timestamp) {
                        set.insert((e.timestamp, e.value.to_bits(), e.labels));
                    }
                }
            }
        }
        Ok(by_series
            .into_iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(labels, set)| ExemplarSeries {
                labels,
                exemplars: set
                    .into_iter()
                    .map(|(timestamp, bits, labels)| sidecar::Exemplar {
                        labels,
                        value: f64::from_bits(bits),
                        timestamp,
                    })
                    .collect(),
            })
            .collect())
    }

    /// Metadata of every metric family `tenant` sent, distinct entries per
    /// family in the order first written.
    pub async fn metadata(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        let mut out: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
        let mut seen: HashSet<MetricMetadata> = HashSet::new();
        for (_, s) in self.sidecars(tenant, i64::MIN, i64::MAX).await? {
            for m in s.metadata {
                if seen.insert(m.clone()) {
                    out.entry(m.metric_family_name.clone()).or_default().push(m);
                }
            }
        }
        Ok(out)
    }
}
