//! One aggregation pass: for every tenant with rules, every storage policy
//! of its rules and every shard, under a lease per (tenant, resolution,
//! shard): aggregate the closed windows not yet done and the recent windows
//! whose inputs changed (late data), each into one block of the policy's
//! resolution, named in the manifest, then recorded in the checkpoint.
//!
//! Exactly-once results from at-least-once execution: a window's block id is
//! derived from (window start, shard, a hash of tenant, resolution, rule set
//! version and the window's input objects), so a re-run over the same inputs
//! writes the same key with the same bytes, and the manifest commit replaces
//! whatever block held that (resolution, window, shard) before: readers
//! never see two blocks for one window and shard.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use storage::block::{BlockOptions, BlockWriter, RAW};
use storage::lease::{self, LeaseBackend, ObjectStoreLeases};
use storage::manifest::{self, BlockEntry, Change, Retired, SegmentEntry};
use storage::storage::{Snapshot, Source};
use storage::{Labels, Storage, StorageError, TenantId, paths};
use tracing::{Instrument, debug, info, info_span, warn};
use ulid::Ulid;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

use crate::checkpoint::{self, WindowDone};
use crate::compute::{self, Window};
use crate::config::AggregateConfig;
use crate::rule_store::{RuleStore, RuleStoreError};
use crate::rules::{RuleSet, StoragePolicy};

/// Lease job name of the aggregator.
pub const JOB: &str = "aggregator";

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error("aggregating tenant {tenant}: {source}")]
    Tenant {
        tenant: String,
        #[source]
        source: StorageError,
    },
    #[error("reading rules: {0}")]
    Rules(#[from] RuleStoreError),
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassStats {
    pub tenants: usize,
    /// Windows aggregated (new, or again because their inputs changed).
    pub windows: usize,
    /// Of those, windows aggregated again because of late data.
    pub reaggregated: usize,
    pub blocks_written: usize,
    pub samples_read: u64,
    pub samples_written: u64,
    pub series_written: u64,
    pub lease_skips: usize,
    pub blocks_retired: usize,
}

impl PassStats {
    fn add(&mut self, o: &PassStats) {
        self.windows += o.windows;
        self.reaggregated += o.reaggregated;
        self.blocks_written += o.blocks_written;
        self.samples_read += o.samples_read;
        self.samples_written += o.samples_written;
        self.series_written += o.series_written;
        self.lease_skips += o.lease_skips;
        self.blocks_retired += o.blocks_retired;
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The aggregator of one process.
pub struct Aggregator {
    storage: Storage,
    /// Where leases are taken: by default the object store (`[leases]`).
    leases: Arc<dyn LeaseBackend>,
    rules: Arc<dyn RuleStore>,
    config: AggregateConfig,
    owner: String,
}

/// The block id of (window, shard, content hash): time part the window
/// start, random part the shard (top 16 bits) and the hash.
pub fn block_id(window_start: i64, shard: u16, hash: u64) -> Ulid {
    Ulid::from_parts(
        window_start.max(0) as u64,
        (u128::from(shard) << 64) | u128::from(hash),
    )
}

fn shard_of(id: &str) -> Option<u16> {
    Ulid::from_string(id)
        .ok()
        .map(|u| (u.random() >> 64) as u16)
}

/// Whether the `done` ranges of a segment cover `[lo, hi)`.
fn covered(done: &Option<SegmentEntry>, lo: i64, hi: i64) -> bool {
    let Some(d) = done else { return false };
    if d.replaced_at.is_some() {
        return true;
    }
    let mut ranges = d.done.clone();
    ranges.sort_unstable();
    let mut at = lo;
    for [s, e] in ranges {
        if s <= at && e > at {
            at = e;
        }
    }
    at >= hi
}

impl Aggregator {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        rules: Arc<dyn RuleStore>,
        config: AggregateConfig,
    ) -> Self {
        Self {
            leases: Arc::new(ObjectStoreLeases::new(store.clone())),
            storage: Storage::new(store),
            rules,
            config,
            owner: format!("{}-{}", std::process::id(), Ulid::new()),
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

    pub async fn run_pass(&self) -> Result<PassStats, AggregatorError> {
        self.run_pass_at(now_ms()).await
    }

    /// One pass as if the clock read `now`.
    pub async fn run_pass_at(&self, now: i64) -> Result<PassStats, AggregatorError> {
        let tenants = self.rules.tenants().await?;
        let mut stats = PassStats {
            tenants: tenants.len(),
            ..PassStats::default()
        };
        let mut first_error = None;
        for tenant in &tenants {
            let Some(stored) = self.rules.latest(tenant).await? else {
                continue;
            };
            let rules = match RuleSet::new(stored.rules) {
                Ok(r) => r,
                Err(e) => {
                    warn!(tenant = %tenant, error = %e, "skipping an invalid rule set");
                    continue;
                }
            };
            let span = info_span!("aggregate_tenant", tenant = %tenant);
            match self
                .aggregate_tenant(tenant, &rules, stored.version, now)
                .instrument(span)
                .await
            {
                Ok(s) => stats.add(&s),
                Err(source) => {
                    warn!(tenant = %tenant, error = %source, "aggregation of tenant failed");
                    first_error.get_or_insert(AggregatorError::Tenant {
                        tenant: tenant.to_string(),
                        source,
                    });
                }
            }
        }
        info!(
            tenants = stats.tenants,
            windows = stats.windows,
            reaggregated = stats.reaggregated,
            blocks = stats.blocks_written,
            samples_in = stats.samples_read,
            samples_out = stats.samples_written,
            lease_skips = stats.lease_skips,
            "aggregation pass done"
        );
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    async fn aggregate_tenant(
        &self,
        tenant: &TenantId,
        rules: &RuleSet,
        rules_version: u64,
        now: i64,
    ) -> Result<PassStats, StorageError> {
        let mut stats = PassStats::default();
        for policy in rules.policies() {
            for shard in 0..self.config.shards {
                self.namespace_shard(
                    tenant,
                    rules,
                    rules_version,
                    &policy,
                    shard,
                    now,
                    &mut stats,
                )
                .await?;
            }
            stats.blocks_retired += self.apply_retention(tenant, &policy, now).await?;
        }
        Ok(stats)
    }

    #[allow(clippy::too_many_arguments)]
    async fn namespace_shard(
        &self,
        tenant: &TenantId,
        rules: &RuleSet,
        rules_version: u64,
        policy: &StoragePolicy,
        shard: u16,
        now: i64,
        stats: &mut PassStats,
    ) -> Result<(), StorageError> {
        let res = policy.resolution();
        let wlen = self.config.window_ms(policy.resolution_ms);
        let ttl = self.config.lease_ttl.as_millis() as i64;
        let lease_shard = format!("{res}-{shard}");
        let Some(mut lease) = self
            .leases
            .try_acquire(JOB, tenant, &lease_shard, &self.owner, ttl, now_ms())
            .await?
        else {
            debug!(
                shard = lease_shard,
                "lease held by another aggregator; skipping"
            );
            stats.lease_skips += 1;
            return Ok(());
        };
        let result = self
            .namespace_leased(
                tenant,
                rules,
                rules_version,
                policy,
                shard,
                wlen,
                now,
                stats,
                &mut lease,
            )
            .await;
        if let Err(e) = lease.release().await {
            warn!(error = %e, "releasing lease failed; it will expire");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn namespace_leased(
        &self,
        tenant: &TenantId,
        rules: &RuleSet,
        rules_version: u64,
        policy: &StoragePolicy,
        shard: u16,
        wlen: i64,
        now: i64,
        stats: &mut PassStats,
        lease: &mut lease::Lease,
    ) -> Result<(), StorageError> {
        let store = self.storage.object_store().clone();
        let key = format!("{}/{shard}", policy.resolution());
        let cp = checkpoint::load(store.as_ref(), tenant).await?;
        let progress = cp
            .checkpoint
            .namespaces
            .get(&key)
            .cloned()
            .unwrap_or_default();
        let snap = self.storage.snapshot(tenant).await?;
        let closed_until =
            (now - self.config.allowed_lateness.as_millis() as i64).div_euclid(wlen) * wlen;
        // Windows never aggregated: from the checkpoint (or the oldest raw
        // data) up to the last closed window.
        let mut todo: BTreeSet<Window> = BTreeSet::new();
        let first = if progress.done_until > 0 {
            Some(progress.done_until)
        } else {
            raw_sources(&snap)
                .iter()
                .map(|(_, s)| s.index.min_time)
                .min()
                .map(|t| Window::of(t, wlen).start)
        };
        if let Some(mut start) = first {
            while start + wlen <= closed_until && todo.len() < self.config.max_windows_per_pass {
                todo.insert(Window {
                    start,
                    end: start + wlen,
                });
                start += wlen;
            }
        }
        // Windows already aggregated whose inputs changed since (late data).
        let recheck_from = now - self.config.recheck.as_millis() as i64;
        let carry = compute::needs_carry(rules, policy);
        for (&start, done) in progress.windows.range(recheck_from..) {
            let w = Window {
                start,
                end: start + wlen,
            };
            let (_, hash) = self.inputs(&snap, policy, shard, w, carry);
            if format!("{hash:016x}") != done.inputs {
                todo.insert(w);
            }
        }
        for w in todo {
            if now_ms() > lease.expires_ms() - lease_ttl_half(&self.config)
                && !lease.renew(now_ms()).await?
            {
                warn!("lease lost; stopping this namespace shard");
                return Ok(());
            }
            let recorded = progress.windows.get(&w.start);
            if let Some(done) = self
                .aggregate_window(
                    tenant,
                    rules,
                    rules_version,
                    policy,
                    shard,
                    w,
                    recorded,
                    now,
                    stats,
                )
                .await?
            {
                checkpoint::update(store.as_ref(), tenant, |c| {
                    let p = c.namespaces.entry(key.clone()).or_default();
                    p.windows.insert(w.start, done.clone());
                    if p.done_until == 0 || p.done_until == w.start {
                        p.done_until = w.end;
                    }
                    p.windows = p.windows.split_off(&recheck_from.min(w.start));
                })
                .await?;
            }
        }
        Ok(())
    }

    /// The raw objects a window reads (with the lookback before it), and the
    /// fingerprint of those and, if `carry`, of the previous window's block.
    fn inputs(
        &self,
        snap: &Snapshot,
        policy: &StoragePolicy,
        shard: u16,
        w: Window,
        carry: bool,
    ) -> (Vec<Source>, u64) {
        let lo = w.start - self.lookback_ms(policy);
        let mut ids: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        for (id, s) in raw_sources(snap) {
            if s.index.overlaps(lo, w.end - 1) && !covered(&s.done, lo, w.end) {
                ids.push(id);
                sources.push(s.clone());
            }
        }
        if carry {
            ids.extend(
                prev_blocks(snap, policy, shard, w)
                    .into_iter()
                    .map(|(b, _)| b.id.clone()),
            );
        }
        let mut h = Xxh3Default::new();
        for id in &ids {
            h.update(id.as_bytes());
            h.update(&[0xff]);
        }
        (sources, h.digest())
    }

    fn lookback_ms(&self, policy: &StoragePolicy) -> i64 {
        (self.config.lookback.as_millis() as i64).max(policy.resolution_ms)
    }

    /// Aggregates one window; `None` if its recorded inputs are unchanged.
    #[allow(clippy::too_many_arguments)]
    async fn aggregate_window(
        &self,
        tenant: &TenantId,
        rules: &RuleSet,
        rules_version: u64,
        policy: &StoragePolicy,
        shard: u16,
        w: Window,
        recorded: Option<&WindowDone>,
        now: i64,
        stats: &mut PassStats,
    ) -> Result<Option<WindowDone>, StorageError> {
        let res = policy.resolution();
        // Fresh: the previous window may have been committed just now.
        let snap = self.storage.snapshot(tenant).await?;
        let carry_needed = compute::needs_carry(rules, policy);
        let (sources, hash) = self.inputs(&snap, policy, shard, w, carry_needed);
        let inputs = format!("{hash:016x}");
        if recorded.is_some_and(|r| r.inputs == inputs) {
            return Ok(None);
        }
        let lo = w.start - self.lookback_ms(policy);
        let series = self
            .storage
            .read(&sources, &[], lo, w.end - 1, None)
            .await?;
        stats.samples_read += series.iter().map(|s| s.samples.len() as u64).sum::<u64>();
        let carry = if carry_needed {
            self.carry(&snap, policy, shard, w).await?
        } else {
            HashMap::new()
        };
        let shards = u64::from(self.config.shards);
        let out: Vec<_> = compute::aggregate(rules, policy, w, &series, &carry)
            .into_iter()
            .filter(|s| s.labels.series_id() % shards == u64::from(shard))
            .collect();
        let content =
            xxh3_64(format!("{tenant}\u{0}{res}\u{0}{rules_version}\u{0}{inputs}").as_bytes());
        let id = block_id(w.start, shard, content);
        let mut entry = None;
        if !out.is_empty() {
            let mut writer = BlockWriter::new(BlockOptions {
                partition_start: w.start,
                partition_end: w.end,
                resolution: res.clone(),
                chunk_range_ms: w.end - w.start,
                zstd_level: self.config.zstd_level,
            })?;
            writer.write(&out)?;
            let (bytes, index) = writer.finish()?;
            entry = Some(BlockEntry {
                id: id.to_string(),
                resolution: res.clone(),
                start: w.start,
                end: w.end,
                min_time: index.min_time,
                max_time: index.max_time,
                samples: index.samples,
                series: index.series.len() as u64,
                bytes: bytes.len() as u64,
            });
            // Same inputs, same key, same bytes: rewriting is harmless.
            self.storage
                .put_block(&paths::block(tenant, &res, id), bytes, index)
                .await?;
        }
        let id_str = id.to_string();
        let (committed, retired) = manifest::update(
            self.storage.object_store().as_ref(),
            tenant,
            snap.manifest.clone(),
            |m| {
                let old: Vec<&BlockEntry> = m
                    .blocks
                    .iter()
                    .filter(|b| {
                        b.resolution == res
                            && b.start == w.start
                            && b.end == w.end
                            && shard_of(&b.id) == Some(shard)
                            && b.id != id_str
                    })
                    .collect();
                let present = m.blocks.iter().any(|b| b.id == id_str);
                if old.is_empty() && (present || entry.is_none()) {
                    return Ok(Change::Keep(0));
                }
                let old_ids: Vec<String> = old.iter().map(|b| b.id.clone()).collect();
                let mut n = m.clone();
                n.blocks.retain(|b| !old_ids.contains(&b.id));
                n.retired_blocks.extend(old_ids.iter().map(|id| Retired {
                    id: id.clone(),
                    resolution: res.clone(),
                    since: now,
                }));
                if let Some(e) = &entry
                    && !present
                {
                    n.blocks.push(e.clone());
                    n.blocks.sort_by_key(|b| (b.start, b.end));
                }
                Ok(Change::Commit(n, old_ids.len()))
            },
        )
        .await?;
        self.storage.remember_manifest(tenant, &committed);
        stats.windows += 1;
        stats.reaggregated += usize::from(recorded.is_some());
        stats.blocks_retired += retired;
        if let Some(e) = &entry {
            stats.blocks_written += 1;
            stats.samples_written += e.samples;
            stats.series_written += e.series;
        }
        debug!(resolution = %res, shard, start = w.start, series = out.len(), "window aggregated");
        Ok(Some(WindowDone {
            inputs,
            rules_version,
            block: entry.map(|e| e.id),
        }))
    }

    /// The last value of every output series in the previous window.
    async fn carry(
        &self,
        snap: &Snapshot,
        policy: &StoragePolicy,
        shard: u16,
        w: Window,
    ) -> Result<HashMap<Labels, f64>, StorageError> {
        let prev: Vec<Source> = prev_blocks(snap, policy, shard, w)
            .into_iter()
            .map(|(_, s)| s.clone())
            .collect();
        if prev.is_empty() {
            return Ok(HashMap::new());
        }
        let len = w.end - w.start;
        let series = self
            .storage
            .read(&prev, &[], w.start - len, w.start - 1, None)
            .await?;
        Ok(series
            .into_iter()
            .filter_map(|s| s.samples.last().map(|x| (s.labels.clone(), x.v)))
            .collect())
    }

    /// Retires blocks of the policy's resolution older than its retention.
    async fn apply_retention(
        &self,
        tenant: &TenantId,
        policy: &StoragePolicy,
        now: i64,
    ) -> Result<usize, StorageError> {
        let res = policy.resolution();
        let cutoff = now - policy.retention_ms;
        let known = self.storage.manifest(tenant).await?;
        if !known
            .manifest
            .blocks
            .iter()
            .any(|b| b.resolution == res && b.max_time < cutoff)
        {
            return Ok(0);
        }
        let (v, n) = manifest::update(self.storage.object_store().as_ref(), tenant, known, |m| {
            let expired: Vec<String> = m
                .blocks
                .iter()
                .filter(|b| b.resolution == res && b.max_time < cutoff)
                .map(|b| b.id.clone())
                .collect();
            if expired.is_empty() {
                return Ok(Change::Keep(0));
            }
            let mut n = m.clone();
            n.blocks.retain(|b| !expired.contains(&b.id));
            n.retired_blocks.extend(expired.iter().map(|id| Retired {
                id: id.clone(),
                resolution: res.clone(),
                since: now,
            }));
            Ok(Change::Commit(n, expired.len()))
        })
        .await?;
        self.storage.remember_manifest(tenant, &v);
        Ok(n)
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
                        warn!(error = %e, "aggregation pass failed; retrying next time");
                    }
                }
            }
        }
    }
}

fn lease_ttl_half(c: &AggregateConfig) -> i64 {
    c.lease_ttl.as_millis() as i64 / 2
}

/// Raw blocks then segments of a snapshot, with their ids.
fn raw_sources(snap: &Snapshot) -> Vec<(String, &Source)> {
    let mut out: Vec<(String, &Source)> = snap
        .manifest
        .manifest
        .blocks
        .iter()
        .zip(&snap.blocks)
        .filter(|(b, _)| b.resolution == RAW)
        .map(|(b, s)| (b.id.clone(), s))
        .collect();
    out.extend(snap.segments.iter().map(|(id, s)| (id.to_string(), s)));
    out
}

/// Live blocks of the window before `w` in the policy's namespace and shard.
fn prev_blocks<'a>(
    snap: &'a Snapshot,
    policy: &StoragePolicy,
    shard: u16,
    w: Window,
) -> Vec<(&'a BlockEntry, &'a Source)> {
    let res = policy.resolution();
    snap.manifest
        .manifest
        .blocks
        .iter()
        .zip(&snap.blocks)
        .filter(|(b, _)| b.resolution == res && b.end == w.start && shard_of(&b.id) == Some(shard))
        .collect()
}

#[cfg(test)]
mod tests;
