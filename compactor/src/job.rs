//! One compaction pass: for every tenant, build the planned blocks (each under
//! a lease, committed by a conditional manifest update), then apply retention
//! and delete what the grace period has released.
//!
//! Crash safety follows from the order of effects: a block is written before
//! the manifest names it (a crash in between leaves an orphan that nobody
//! reads and a later pass deletes), and an object is deleted only after the
//! manifest stopped naming it for longer than the grace period (a crash in
//! between leaves an entry that the next pass deletes again).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use storage::block::{BlockOptions, BlockWriter, RAW};
use storage::instrumented_store::{InstrumentedStore, StoreMetrics};
use storage::lease::{self, LeaseBackend, ObjectStoreLeases};
use storage::manifest::{self, BlockEntry, Change, Retired, Versioned};
use storage::storage::{Snapshot, Source};
use storage::{Storage, StorageError, TenantId, paths};
use tracing::{Instrument, debug, info, info_span, warn};
use ulid::Ulid;

use crate::config::CompactorConfig;
use crate::metrics::CompactorMetrics;
use crate::plan::{self, Planner, SegmentWindows, Target};

/// Lease job name of the compactor.
const JOB: &str = "compactor";
/// A segment spanning more windows than this is read once to find the
/// windows it really has samples in (a backfill or a clock far off).
const MAX_ENUMERATED_WINDOWS: i64 = 64;
/// Manifest versions kept as history.
const MANIFEST_VERSIONS_KEPT: u64 = 16;
/// Blocks that no manifest names are deleted only after this long, so a
/// block that a running compaction has written but not yet committed is safe.
const ORPHAN_MIN_AGE_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error("compacting tenant {tenant}: {source}")]
    Tenant {
        tenant: String,
        #[source]
        source: StorageError,
    },
    #[error("listing tenants: {0}")]
    ListTenants(#[source] StorageError),
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    pub tenants: usize,
    pub blocks_written: usize,
    pub blocks_replaced: usize,
    pub segments_read: usize,
    pub samples_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub objects_deleted: usize,
    /// Sidecars merged into larger ones.
    pub sidecars_merged: usize,
    /// Targets left alone because another compactor holds their lease.
    pub lease_skips: usize,
    /// Targets abandoned because the manifest changed under them.
    pub conflicts: usize,
    pub requests: u64,
}

impl PassStats {
    /// Whether the pass changed anything (a one-shot run loops until not).
    pub fn did_work(&self) -> bool {
        self.blocks_written
            + self.blocks_replaced
            + self.segments_read
            + self.objects_deleted
            + self.sidecars_merged
            > 0
    }

    fn add(&mut self, o: &PassStats) {
        self.tenants += o.tenants;
        self.blocks_written += o.blocks_written;
        self.blocks_replaced += o.blocks_replaced;
        self.segments_read += o.segments_read;
        self.samples_written += o.samples_written;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.objects_deleted += o.objects_deleted;
        self.sidecars_merged += o.sidecars_merged;
        self.lease_skips += o.lease_skips;
        self.conflicts += o.conflicts;
        self.requests += o.requests;
    }
}

/// The compactor of one process.
pub struct Compactor {
    storage: Storage,
    /// Where leases are taken: by default the object store, as generations
    /// next to the data (`[leases]`).
    leases: Arc<dyn LeaseBackend>,
    requests: StoreMetrics,
    config: CompactorConfig,
    owner: String,
    metrics: CompactorMetrics,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Compactor {
    /// A compactor over `store`, reporting to `metrics`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: CompactorConfig,
        metrics: CompactorMetrics,
    ) -> Self {
        // Its own request counter, so each pass can report its requests.
        let requests = StoreMetrics::unregistered();
        let store: Arc<dyn ObjectStore> = Arc::new(InstrumentedStore::new(store, requests.clone()));
        Self {
            leases: Arc::new(ObjectStoreLeases::new(store.clone())),
            storage: Storage::new(store),
            requests,
            config,
            owner: format!("{}-{}", std::process::id(), Ulid::new()),
            metrics,
        }
    }

    /// Takes leases from `leases` (etcd, `[leases]`) instead of the object store.
    pub fn with_leases(mut self, leases: Arc<dyn LeaseBackend>) -> Self {
        self.leases = leases;
        self
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// One pass over every tenant at the current time.
    pub async fn run_pass(&self) -> Result<PassStats, CompactorError> {
        self.run_pass_at(now_ms()).await
    }

    /// Passes until one finds nothing to do (at most `max_passes`): what
    /// `strata compact` does, so a single run leaves fully merged blocks.
    pub async fn run_until_idle(&self, max_passes: usize) -> Result<PassStats, CompactorError> {
        let mut total = PassStats::default();
        for _ in 0..max_passes.max(1) {
            let s = self.run_pass().await?;
            let busy = s.did_work();
            total.add(&s);
            total.tenants = s.tenants;
            if !busy {
                break;
            }
        }
        Ok(total)
    }

    /// One pass as if the clock read `now`.
    pub async fn run_pass_at(&self, now: i64) -> Result<PassStats, CompactorError> {
        let started = Instant::now();
        let requests_before = self.requests.total();
        let tenants = self.tenants().await.map_err(CompactorError::ListTenants)?;
        let mut stats = PassStats {
            tenants: tenants.len(),
            ..PassStats::default()
        };
        let mut first_error = None;
        for tenant in &tenants {
            let span = info_span!("compact_tenant", tenant = %tenant);
            match self.compact_tenant(tenant, now).instrument(span).await {
                Ok(s) => stats.add(&s),
                Err(source) => {
                    // One tenant's failure does not stop the others.
                    warn!(tenant = %tenant, error = %source, "compaction of tenant failed");
                    first_error.get_or_insert(CompactorError::Tenant {
                        tenant: tenant.to_string(),
                        source,
                    });
                }
            }
        }
        stats.requests = self.requests.total() - requests_before;
        self.metrics
            .record_pass(&stats, started.elapsed(), first_error.is_none());
        info!(
            tenants = stats.tenants,
            blocks_written = stats.blocks_written,
            blocks_replaced = stats.blocks_replaced,
            segments_read = stats.segments_read,
            samples = stats.samples_written,
            bytes_in = stats.bytes_read,
            bytes_out = stats.bytes_written,
            deleted = stats.objects_deleted,
            lease_skips = stats.lease_skips,
            conflicts = stats.conflicts,
            requests = stats.requests,
            seconds = started.elapsed().as_secs_f64(),
            "compaction pass done"
        );
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, StorageError> {
        let root = paths::tenants_root();
        let listing = self
            .storage
            .object_store()
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| StorageError::store("list", root.as_ref(), e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(paths::parse_tenant)
            .collect())
    }

    async fn compact_tenant(&self, tenant: &TenantId, now: i64) -> Result<PassStats, StorageError> {
        let mut stats = PassStats::default();
        let levels = self.config.partition_ms();
        let smallest = levels[0];
        let cutoff = self.config.retention_ms(tenant.as_str()).map(|r| now - r);
        let snap = self.storage.snapshot(tenant).await?;
        let blocks: Vec<BlockEntry> = snap
            .manifest
            .manifest
            .blocks
            .iter()
            .filter(|b| b.resolution == RAW)
            .cloned()
            .collect();
        let mut segments = Vec::with_capacity(snap.segments.len());
        for (id, src) in &snap.segments {
            segments.push(SegmentWindows {
                id: id.to_string(),
                windows: self.windows_of(src, smallest).await?,
                done: src.done.clone(),
            });
        }
        let planner = Planner {
            levels: &levels,
            now_ms: now,
            settle_ms: self.config.settle.as_millis() as i64,
            retention_cutoff: cutoff,
        };
        let targets = planner.plan(&blocks, &segments);
        debug!(
            targets = targets.len(),
            segments = segments.len(),
            "planned"
        );
        for t in &targets {
            let span = info_span!("compact_block", start = t.window.start, end = t.window.end);
            self.build(tenant, &snap, &segments, t, now, cutoff, &mut stats)
                .instrument(span)
                .await?;
        }
        self.collect_garbage(tenant, &snap, now, cutoff, &mut stats)
            .await?;
        // Sidecars (histograms, exemplars, metadata) merge by write time
        // over the same window lengths.
        let sidecars = self
            .storage
            .compact_sidecars(
                tenant,
                now,
                self.config.settle.as_millis() as i64,
                &levels,
                cutoff,
            )
            .await?;
        stats.sidecars_merged += sidecars.merged;
        stats.objects_deleted += sidecars.deleted;
        stats.bytes_written += sidecars.bytes_written;
        Ok(stats)
    }

    /// Starts of the smallest windows `src` has samples in.
    async fn windows_of(&self, src: &Source, len: i64) -> Result<Vec<i64>, StorageError> {
        let (lo, hi) = (src.index.min_time, src.index.max_time);
        if src.index.samples == 0 {
            return Ok(Vec::new());
        }
        let first = plan::window_of(lo, len).start;
        let last = plan::window_of(hi, len).start;
        if (last - first) / len < MAX_ENUMERATED_WINDOWS {
            return Ok((0..=(last - first) / len)
                .map(|i| first + i * len)
                .collect());
        }
        let series = self
            .storage
            .read(std::slice::from_ref(src), &[], lo, hi, None)
            .await?;
        let set: BTreeSet<i64> = series
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| plan::window_of(x.t, len).start))
            .collect();
        Ok(set.into_iter().collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn build(
        &self,
        tenant: &TenantId,
        snap: &Snapshot,
        segments: &[SegmentWindows],
        target: &Target,
        now: i64,
        cutoff: Option<i64>,
        stats: &mut PassStats,
    ) -> Result<(), StorageError> {
        let levels = self.config.partition_ms();
        let top = levels.last().copied().unwrap_or(levels[0]);
        let shard = plan::window_of(target.window.start, top).start.to_string();
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let Some(mut lease) = self
            .leases
            .try_acquire(JOB, tenant, &shard, &self.owner, ttl, now_ms())
            .await?
        else {
            debug!(shard, "lease held by another compactor; skipping");
            stats.lease_skips += 1;
            return Ok(());
        };
        let result = self
            .build_leased(
                tenant, snap, segments, target, now, cutoff, stats, &mut lease,
            )
            .await;
        if let Err(e) = lease.release().await {
            warn!(error = %e, "releasing lease failed; it will expire");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_leased(
        &self,
        tenant: &TenantId,
        snap: &Snapshot,
        segments: &[SegmentWindows],
        target: &Target,
        now: i64,
        cutoff: Option<i64>,
        stats: &mut PassStats,
        lease: &mut lease::Lease,
    ) -> Result<(), StorageError> {
        let w = target.window;
        let mut sources: Vec<Source> = snap
            .blocks
            .iter()
            .filter(|b| {
                paths::parse_block(&b.meta.location)
                    .is_some_and(|id| target.blocks.contains(&id.to_string()))
            })
            .cloned()
            .collect();
        // Manifest order: blocks of one window in commit order (later wins).
        sources.extend(
            snap.segments
                .iter()
                .filter(|(id, _)| target.segments.contains(&id.to_string()))
                .map(|(_, s)| s.clone()),
        );
        let estimate: u64 = sources.iter().map(|s| s.index.samples).sum();
        let slices = estimate.div_ceil(self.config.samples_per_slice).max(1);
        let levels = self.config.partition_ms();
        let mut writer = BlockWriter::new(BlockOptions {
            partition_start: w.start,
            partition_end: w.end,
            resolution: RAW.to_string(),
            chunk_range_ms: levels[0],
            zstd_level: self.config.zstd_level,
        })?;
        let ttl = self.config.lease_ttl.as_millis() as i64;
        for (lo, hi) in id_slices(slices) {
            if now_ms() > lease.expires_ms() - ttl / 2 && !lease.renew(now_ms()).await? {
                warn!("lease lost while building a block; abandoning it");
                return Ok(());
            }
            let series = self
                .storage
                .read(&sources, &[], w.start, w.end - 1, Some((lo, hi)))
                .await?;
            writer.write(&series)?;
        }
        let (bytes, index) = writer.finish()?;
        let samples = index.samples;
        let size = bytes.len() as u64;
        // Named by the pass clock, so orphan age is measured on one clock.
        let block_id = Ulid::from_parts(now.max(0) as u64, Ulid::new().random());
        let key = paths::block(tenant, RAW, block_id);
        let series_count = index.series.len() as u64;
        let (min_time, max_time) = (index.min_time, index.max_time);
        if samples > 0 {
            self.storage.put_block(&key, bytes, index).await?;
        }
        if !lease.renew(now_ms()).await? {
            warn!("lease lost before commit; abandoning the block");
            self.delete_quietly(&key).await;
            return Ok(());
        }

        let entry = BlockEntry {
            id: block_id.to_string(),
            resolution: RAW.to_string(),
            start: w.start,
            end: w.end,
            min_time,
            max_time,
            samples,
            series: series_count,
            bytes: size,
        };
        let smallest = levels[0];
        let (committed, ok) = manifest::update(
            self.storage.object_store().as_ref(),
            tenant,
            snap.manifest.clone(),
            |m| {
                // The inputs must still be what the block was built from.
                let blocks_live = target
                    .blocks
                    .iter()
                    .all(|id| m.blocks.iter().any(|b| &b.id == id));
                let segments_open = target
                    .segments
                    .iter()
                    .all(|id| !plan::covers(m.segment(id), w));
                if !blocks_live || !segments_open {
                    return Ok(Change::Keep(false));
                }
                let mut n = m.clone();
                n.blocks.retain(|b| !target.blocks.contains(&b.id));
                n.retired_blocks
                    .extend(target.blocks.iter().map(|id| Retired {
                        id: id.clone(),
                        resolution: RAW.to_string(),
                        since: now,
                    }));
                if samples > 0 {
                    n.blocks.push(entry.clone());
                    n.blocks.sort_by_key(|b| (b.start, b.end));
                }
                for id in &target.segments {
                    let e = n.segments.entry(id.clone()).or_default();
                    e.done = plan::add_range(&e.done, w);
                    let windows: Vec<i64> = segments
                        .iter()
                        .find(|s| &s.id == id)
                        .map(|s| s.windows.clone())
                        .unwrap_or_default();
                    let live: Vec<i64> = windows
                        .into_iter()
                        .filter(|&s| cutoff.is_none_or(|c| s + smallest > c))
                        .collect();
                    if plan::covers_all(&e.done, &live, smallest) {
                        e.replaced_at = Some(now);
                        e.done.clear();
                    }
                }
                Ok(Change::Commit(n, true))
            },
        )
        .await?;
        self.storage.remember_manifest(tenant, &committed);
        if !ok {
            warn!("manifest changed under the block (another compactor?); abandoning it");
            stats.conflicts += 1;
            if samples > 0 {
                self.delete_quietly(&key).await;
            }
            return Ok(());
        }
        stats.blocks_written += usize::from(samples > 0);
        stats.blocks_replaced += target.blocks.len();
        stats.segments_read += target.segments.len();
        stats.samples_written += samples;
        stats.bytes_read += sources.iter().map(|s| s.meta.size).sum::<u64>();
        stats.bytes_written += if samples > 0 { size } else { 0 };
        info!(
            block = %block_id,
            samples,
            series = series_count,
            bytes = size,
            inputs_blocks = target.blocks.len(),
            inputs_segments = target.segments.len(),
            version = committed.version,
            "block committed"
        );
        Ok(())
    }

    /// Retention, deletion of what the grace period released, orphans and
    /// old manifest versions.
    async fn collect_garbage(
        &self,
        tenant: &TenantId,
        snap: &Snapshot,
        now: i64,
        cutoff: Option<i64>,
        stats: &mut PassStats,
    ) -> Result<(), StorageError> {
        let grace = self.config.grace.as_millis() as i64;
        let current = self.storage.manifest(tenant).await?;
        let m = current.manifest.clone();
        // Delete first, then drop the entries: an entry without its object is
        // harmless, an object without its entry would be read again.
        let mut gone_segments = HashSet::new();
        for (id, e) in &m.segments {
            if e.replaced_at.is_some_and(|at| at + grace <= now) {
                if let Ok(ulid) = Ulid::from_string(id)
                    && self.delete(&paths::segment(tenant, ulid)).await?
                {
                    stats.objects_deleted += 1;
                }
                gone_segments.insert(id.clone());
            }
        }
        let mut gone_blocks = HashSet::new();
        for r in &m.retired_blocks {
            if r.since + grace <= now {
                if let Ok(ulid) = Ulid::from_string(&r.id)
                    && self
                        .delete(&paths::block(tenant, &r.resolution, ulid))
                        .await?
                {
                    stats.objects_deleted += 1;
                }
                gone_blocks.insert(r.id.clone());
            }
        }
        // Retention: whole raw blocks and segments past it. Downsampled
        // blocks share the manifest but keep their own per-resolution
        // retention, applied by the aggregator.
        let expired_blocks: HashSet<String> = cutoff
            .map(|c| {
                m.blocks
                    .iter()
                    .filter(|b| b.resolution == RAW && b.max_time < c)
                    .map(|b| b.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let expired_segments: HashSet<String> = cutoff
            .map(|c| {
                snap.segments
                    .iter()
                    .filter(|(_, s)| s.index.max_time < c)
                    .map(|(id, _)| id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !(gone_segments.is_empty()
            && gone_blocks.is_empty()
            && expired_blocks.is_empty()
            && expired_segments.is_empty())
        {
            let (v, ()) =
                manifest::update(self.storage.object_store().as_ref(), tenant, current, |m| {
                    let mut n = m.clone();
                    n.segments.retain(|id, _| !gone_segments.contains(id));
                    n.retired_blocks.retain(|r| !gone_blocks.contains(&r.id));
                    for b in n.blocks.iter().filter(|b| expired_blocks.contains(&b.id)) {
                        n.retired_blocks.push(Retired {
                            id: b.id.clone(),
                            resolution: b.resolution.clone(),
                            since: now,
                        });
                    }
                    n.blocks.retain(|b| !expired_blocks.contains(&b.id));
                    for id in &expired_segments {
                        let e = n.segments.entry(id.clone()).or_default();
                        if e.replaced_at.is_none() {
                            e.replaced_at = Some(now);
                            e.done.clear();
                        }
                    }
                    Ok(if n == *m {
                        Change::Keep(())
                    } else {
                        Change::Commit(n, ())
                    })
                })
                .await?;
            self.storage.remember_manifest(tenant, &v);
        }
        stats.objects_deleted += self.delete_orphans(tenant, now).await?;
        let v = self.storage.manifest(tenant).await?;
        manifest::prune(
            self.storage.object_store().as_ref(),
            tenant,
            v.version,
            MANIFEST_VERSIONS_KEPT,
        )
        .await?;
        Ok(())
    }

    /// Blocks no manifest version names (a compaction that crashed or lost a
    /// race before its commit), once they are old enough that no running
    /// compaction can still commit them.
    async fn delete_orphans(&self, tenant: &TenantId, now: i64) -> Result<usize, StorageError> {
        let v: Versioned = self.storage.manifest(tenant).await?;
        let known: HashSet<&str> = v
            .manifest
            .blocks
            .iter()
            .map(|b| b.id.as_str())
            .chain(v.manifest.retired_blocks.iter().map(|r| r.id.as_str()))
            .collect();
        let min_age = ORPHAN_MIN_AGE_MS.max(self.config.grace.as_millis() as i64);
        let prefix = paths::blocks_prefix(tenant, RAW);
        let orphans: Vec<_> = self
            .storage
            .object_store()
            .list(Some(&prefix))
            .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
            .try_filter_map(|m| {
                let orphan = paths::parse_block(&m.location).is_some_and(|id| {
                    !known.contains(id.to_string().as_str())
                        && (id.timestamp_ms() as i64) + min_age <= now
                });
                async move { Ok(orphan.then_some(m.location)) }
            })
            .try_collect()
            .await?;
        let mut n = 0;
        for key in &orphans {
            if self.delete(key).await? {
                info!(key = %key, "deleted orphan block");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deletes `key`; `false` if it was already gone.
    async fn delete(&self, key: &object_store::path::Path) -> Result<bool, StorageError> {
        match self.storage.object_store().delete(key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StorageError::store("delete", key.as_ref(), e)),
        }
    }

    async fn delete_quietly(&self, key: &object_store::path::Path) {
        if let Err(e) = self.delete(key).await {
            warn!(key = %key, error = %e, "could not delete an abandoned block; a later pass will");
        }
    }

    /// Runs a pass every `every` until `shutdown` resolves.
    pub async fn run_every(
        &self,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_pass().await {
                        warn!(error = %e, "compaction pass failed; retrying next time");
                    }
                }
            }
        }
    }
}

/// `n` contiguous, inclusive ranges covering all series ids (ids are hashes,
/// so equal ranges hold about equal numbers of series).
fn id_slices(n: u64) -> Vec<(u64, u64)> {
    let n = u128::from(n.max(1));
    let space = 1u128 << 64;
    let bound = |i: u128| (space * i / n) as u64;
    (0..n)
        .map(|i| {
            let hi = if i + 1 == n {
                u64::MAX
            } else {
                bound(i + 1) - 1
            };
            (bound(i), hi)
        })
        .collect()
}

#[cfg(test)]
mod tests;
