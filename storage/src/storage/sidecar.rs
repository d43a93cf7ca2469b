//! Writing and reading sidecars (native histograms, exemplars, metadata) of a
//! tenant. Sidecars are listed like segments; reads dedupe across them, so an
//! object read twice (a retried write, a merged copy) never changes an answer.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::debug;
use ulid::Ulid;

use super::{
    RECENT_WRITES_MARGIN, Skipped, Storage, drop_old, is_not_found, next_segment_id,
    skip_if_corrupt,
};
use crate::error::{Result, StorageError};
use crate::labels::Labels;
use crate::matcher::{Matcher, matches_all};
use crate::paths;
use crate::sidecar::{self, ExemplarSeries, HistogramSeries, MetricMetadata, Sidecar};
use crate::tenant::TenantId;

/// Sidecar objects fetched at once by a read.
const SIDECAR_CONCURRENCY: usize = 16;

/// What [`Storage::compact_sidecars`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SidecarCompaction {
    /// Sidecars merged into others (and deleted).
    pub merged: usize,
    /// Merged sidecars written.
    pub written: usize,
    pub bytes_written: u64,
    /// Sidecars deleted (merged inputs and those past retention).
    pub deleted: usize,
}

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
        self.remember_sidecar(tenant, id, key.clone());
        Ok(WrittenSidecar {
            key,
            bytes: size,
            histograms: s.histogram_count(),
            exemplars: s.exemplar_count(),
            metadata: s.metadata.len(),
        })
    }

    /// Every sidecar of `tenant` (oldest first) whose time range overlaps
    /// `[start_ms, end_ms]`, from a fresh listing; any corrupt sidecar is an
    /// error. An object listed but gone when fetched was merged (see
    /// [`Storage::compact_sidecars`]) after the listing: the merged copy was
    /// written before the delete, so one fresh listing finds it.
    pub async fn sidecars(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(Ulid, Sidecar)>> {
        let read = |keys| self.read_sidecars(keys, start_ms, end_ms, false);
        let found = match read(self.list_sidecars(tenant).await?).await {
            Err(e) if is_not_found(&e) => read(self.list_sidecars(tenant).await?).await,
            other => other,
        }?;
        Ok(found.0)
    }

    /// [`Storage::sidecars`] for queries: the listing comes from the
    /// tenant's query view (reused for `view_max_age`, with this process's
    /// own writes), so a query sends no listing while the view is fresh, and
    /// corrupt sidecars are read around and reported.
    pub(super) async fn sidecars_reporting(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<(Ulid, Sidecar)>, Vec<Skipped>)> {
        let read = |keys| self.read_sidecars(keys, start_ms, end_ms, true);
        match read(self.query_sidecar_keys(tenant).await?).await {
            Err(e) if is_not_found(&e) => {
                // Merged away since the view was listed: list afresh.
                self.drop_view(tenant);
                read(self.query_sidecar_keys(tenant).await?).await
            }
            other => other,
        }
    }

    /// The sidecar keys a query reads: the view's listing plus what this
    /// process wrote since, oldest first.
    async fn query_sidecar_keys(&self, tenant: &TenantId) -> Result<Vec<(Ulid, Path)>> {
        if self.view_max_age.is_zero() {
            return self.list_sidecars(tenant).await;
        }
        let view = self.view(tenant).await?;
        let mut keys = view.sidecars.clone();
        if let Ok(m) = self.views.lock()
            && let Some(t) = m.get(tenant)
        {
            for (at, id, key) in &t.recent_sidecars {
                if *at >= view.taken && keys.binary_search_by_key(id, |(i, _)| *i).is_err() {
                    keys.push((*id, key.clone()));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Lets queries see a sidecar this process wrote before the next
    /// listing (read-your-writes, as for segments).
    fn remember_sidecar(&self, tenant: &TenantId, id: Ulid, key: Path) {
        if self.view_max_age.is_zero() {
            return;
        }
        if let Ok(mut m) = self.views.lock() {
            let t = m.entry(tenant.clone()).or_default();
            let keep = self.view_max_age + RECENT_WRITES_MARGIN;
            let now = Instant::now();
            drop_old(&mut t.recent_sidecars, |at| now.duration_since(at) >= keep);
            t.recent_sidecars.push_back((now, id, key));
        }
    }

    pub(super) async fn list_sidecars(&self, tenant: &TenantId) -> Result<Vec<(Ulid, Path)>> {
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
        Ok(keys)
    }

    async fn get_sidecar(&self, key: &Path) -> Result<(sidecar::Header, Sidecar)> {
        let bytes = self.get_sidecar_bytes(key).await?;
        sidecar::decode(key.as_ref(), &bytes)
    }

    async fn get_sidecar_bytes(&self, key: &Path) -> Result<bytes::Bytes> {
        self.store
            .get(key)
            .await
            .map_err(|e| StorageError::store("get", key.as_ref(), e))?
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", key.as_ref(), e))
    }

    /// Fetches `keys` and decodes those whose header says they overlap the
    /// range (the header is checked first: most sidecars of a long-lived
    /// tenant lie outside a query's range). With `read_around`, a corrupt
    /// sidecar is skipped and reported instead of failing the read.
    async fn read_sidecars(
        &self,
        keys: Vec<(Ulid, Path)>,
        start_ms: i64,
        end_ms: i64,
        read_around: bool,
    ) -> Result<(Vec<(Ulid, Sidecar)>, Vec<Skipped>)> {
        let reads = keys.into_iter().map(|(id, key)| async move {
            let bytes = self.get_sidecar_bytes(&key).await?;
            let decoded = sidecar::decode_header(key.as_ref(), &bytes).and_then(|header| {
                if header.overlaps(start_ms, end_ms) {
                    sidecar::decode(key.as_ref(), &bytes).map(|(_, s)| Some((id, s)))
                } else {
                    Ok(None)
                }
            });
            match decoded {
                Err(e) if read_around => Ok(Err(skip_if_corrupt(e, key.as_ref())?)),
                other => other.map(Ok),
            }
        });
        let found: Vec<std::result::Result<Option<(Ulid, Sidecar)>, Skipped>> =
            futures::stream::iter(reads)
                .buffered(SIDECAR_CONCURRENCY)
                .try_collect()
                .await?;
        let mut sidecars = Vec::new();
        let mut skipped = Vec::new();
        for f in found {
            match f {
                Ok(Some(s)) => sidecars.push(s),
                Ok(None) => {}
                Err(s) => skipped.push(s),
            }
        }
        Ok((sidecars, skipped))
    }

    /// Merges the tenant's sidecars written in the same closed window of
    /// write time (for each length of `windows_ms`, shortest first, e.g. an
    /// hour then a day) into one, and deletes what `retention_cutoff` has
    /// passed. Without it every commit's sidecar would be listed and read
    /// by every query forever.
    ///
    /// Safe without a lease or a manifest: reads dedupe (see the module
    /// doc), the merged object is written before its inputs are deleted,
    /// and readers re-list when an input vanished under them. The merged
    /// object's id is the newest input's id plus one, so it keeps the
    /// inputs' place in the newest-wins order and two compactors merging
    /// the same window write the same bytes to the same key.
    pub async fn compact_sidecars(
        &self,
        tenant: &TenantId,
        now_ms: i64,
        settle_ms: i64,
        windows_ms: &[i64],
        retention_cutoff: Option<i64>,
    ) -> Result<SidecarCompaction> {
        let mut stats = SidecarCompaction::default();
        for &len in windows_ms.iter().filter(|l| **l > 0) {
            let keys = self.list_sidecars(tenant).await?;
            let mut groups: BTreeMap<i64, Vec<(Ulid, Path)>> = BTreeMap::new();
            for (id, key) in keys {
                let written = id.timestamp_ms() as i64;
                let window = written.div_euclid(len) * len;
                if window + len + settle_ms <= now_ms {
                    groups.entry(window).or_default().push((id, key));
                }
            }
            for (_, group) in groups.into_iter().filter(|(_, g)| g.len() > 1) {
                self.merge_sidecars(tenant, &group, retention_cutoff, &mut stats)
                    .await?;
            }
        }
        if let Some(cutoff) = retention_cutoff {
            for (_, key) in self.list_sidecars(tenant).await? {
                let head = self
                    .store
                    .get_range(&key, 0..sidecar::HEADER_LEN as u64)
                    .await
                    .map_err(|e| StorageError::store("get_range", key.as_ref(), e))?;
                if sidecar::decode_header(key.as_ref(), &head)?.max_time < cutoff {
                    self.delete_sidecar(&key, &mut stats).await?;
                }
            }
        }
        Ok(stats)
    }

    async fn merge_sidecars(
        &self,
        tenant: &TenantId,
        group: &[(Ulid, Path)],
        retention_cutoff: Option<i64>,
        stats: &mut SidecarCompaction,
    ) -> Result<()> {
        let mut inputs = Vec::with_capacity(group.len());
        for (id, key) in group {
            let (_, s) = self.get_sidecar(key).await?;
            inputs.push((*id, s));
        }
        let merged = merge(inputs, retention_cutoff.unwrap_or(i64::MIN));
        let newest = group.iter().map(|(id, _)| *id).max().unwrap_or_default();
        let Some(id) = newest.increment() else {
            return Ok(()); // the id space of that millisecond is used up
        };
        if !merged.is_empty() {
            let bytes = sidecar::encode(&merged, id.timestamp_ms() as i64)?;
            let key = paths::sidecar(tenant, id);
            stats.bytes_written += bytes.len() as u64;
            self.store
                .put(&key, bytes.into())
                .await
                .map_err(|e| StorageError::store("put", key.as_ref(), e))?;
            stats.written += 1;
        }
        stats.merged += group.len();
        for (_, key) in group {
            self.delete_sidecar(key, stats).await?;
        }
        debug!(tenant = %tenant, inputs = group.len(), "sidecars merged");
        Ok(())
    }

    async fn delete_sidecar(&self, key: &Path, stats: &mut SidecarCompaction) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                stats.deleted += 1;
                Ok(())
            }
            Err(e) => Err(StorageError::store("delete", key.as_ref(), e)),
        }
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
        Ok(self
            .selected(tenant, &[matchers], start_ms, end_ms)
            .await?
            .histograms)
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
        Ok(self
            .selected(tenant, &[matchers], start_ms, end_ms)
            .await?
            .exemplars)
    }

    /// [`Storage::select_exemplars`] for series matching any of `sets`
    /// (`query_exemplars` with several selectors), reading the sidecars once.
    pub async fn select_exemplars_any(
        &self,
        tenant: &TenantId,
        sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<ExemplarSeries>> {
        let sets: Vec<&[Matcher]> = sets.iter().map(Vec::as_slice).collect();
        Ok(self
            .selected(tenant, &sets, start_ms, end_ms)
            .await?
            .exemplars)
    }

    /// Metadata of every metric family `tenant` sent, distinct entries per
    /// family in the order first written.
    pub async fn metadata(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<String, Vec<MetricMetadata>>> {
        let mut out: BTreeMap<String, Vec<MetricMetadata>> = BTreeMap::new();
        for m in self
            .selected(tenant, &[&[]], i64::MIN, i64::MAX)
            .await?
            .metadata
        {
            out.entry(m.metric_family_name.clone()).or_default().push(m);
        }
        Ok(out)
    }

    /// [`Storage::select_histograms`] for queries: the listing from the
    /// tenant's query view (no request while it is fresh) and corrupt
    /// sidecars read around, returned for the response's warnings.
    pub async fn select_histograms_reporting(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<HistogramSeries>, Vec<Skipped>)> {
        let (inputs, skipped) = self.sidecars_reporting(tenant, start_ms, end_ms).await?;
        let selected = cut(inputs, &[matchers], start_ms, end_ms);
        Ok((selected.histograms, skipped))
    }

    /// The tenant's sidecars overlapping the range, cut to series matching
    /// any of `sets` and to samples in the range, merged as reads dedupe.
    async fn selected(
        &self,
        tenant: &TenantId,
        sets: &[&[Matcher]],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Sidecar> {
        let inputs = self.sidecars(tenant, start_ms, end_ms).await?;
        Ok(cut(inputs, sets, start_ms, end_ms))
    }
}

/// `inputs` (oldest first) cut to series matching any of `sets` and to
/// samples in `[start_ms, end_ms]`, merged as reads dedupe.
fn cut(
    mut inputs: Vec<(Ulid, Sidecar)>,
    sets: &[&[Matcher]],
    start_ms: i64,
    end_ms: i64,
) -> Sidecar {
    let wanted = |l: &Labels| sets.iter().any(|m| matches_all(m, l));
    let in_range = |t: i64| (start_ms..=end_ms).contains(&t);
    for (_, s) in &mut inputs {
        s.histograms.retain(|h| wanted(&h.labels));
        for h in &mut s.histograms {
            h.histograms.retain(|x| in_range(x.timestamp));
        }
        s.exemplars.retain(|e| wanted(&e.labels));
        for e in &mut s.exemplars {
            e.exemplars.retain(|x| in_range(x.timestamp));
        }
    }
    merge(inputs, i64::MIN)
}

/// One sidecar holding what `inputs` (oldest first) hold, deduplicated as
/// reads dedupe, without histograms and exemplars older than `cutoff`.
fn merge(inputs: Vec<(Ulid, Sidecar)>, cutoff: i64) -> Sidecar {
    type ExemplarKey = (i64, u64, Labels);
    let mut histograms: BTreeMap<Labels, BTreeMap<i64, crate::histogram::Histogram>> =
        BTreeMap::new();
    let mut exemplars: BTreeMap<Labels, BTreeSet<ExemplarKey>> = BTreeMap::new();
    let mut metadata: Vec<MetricMetadata> = Vec::new();
    let mut seen: HashSet<MetricMetadata> = HashSet::new();
    for (_, s) in inputs {
        for hs in s.histograms {
            let m = histograms.entry(hs.labels).or_default();
            for h in hs.histograms.into_iter().filter(|h| h.timestamp >= cutoff) {
                m.insert(h.timestamp, h);
            }
        }
        for es in s.exemplars {
            let set = exemplars.entry(es.labels).or_default();
            for e in es.exemplars.into_iter().filter(|e| e.timestamp >= cutoff) {
                set.insert((e.timestamp, e.value.to_bits(), e.labels));
            }
        }
        for m in s.metadata {
            if seen.insert(m.clone()) {
                metadata.push(m);
            }
        }
    }
    Sidecar {
        histograms: histograms
            .into_iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(labels, m)| HistogramSeries {
                labels,
                histograms: m.into_values().collect(),
            })
            .collect(),
        exemplars: exemplars
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
            .collect(),
        metadata,
    }
}
