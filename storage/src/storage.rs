//! The storage facade: write a batch of series as one segment, and read series
//! back by matchers and time range. Everything above the object store goes
//! through this type.
//!
//! Reads: take the tenant's manifest (its live blocks, and what of each
//! segment the blocks already hold) and list the tenant's segments; read each
//! object's series index from its footer (cached: objects are immutable); keep
//! the objects that overlap the time range and hold a matching series, then
//! read only those series and times from them directly (`direct`: block
//! directories, postings and decoded samples cached in `read_cache`).
//! Block rows are chunks, decoded here; segment samples that a block already
//! holds are skipped. `read_scan` does the same through a DataFusion scan.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{
    Array, BinaryArray, Float64Array, Int64Array, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionContext, col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing::{debug, warn};
use ulid::Ulid;

use crate::block::{self, COL_CHECKSUM, COL_CHUNK, COL_MAX_TIME, COL_MIN_TIME};
use crate::chunk;
use crate::error::{Result, StorageError};
use crate::labels::{Labels, SeriesId};
use crate::manifest::{self, SegmentEntry, Versioned};
use crate::matcher::{Matcher, matches_all};
use crate::paths;
use crate::sample::{Sample, Series};
use crate::segment::{self, COL_SERIES, COL_TIMESTAMP, COL_VALUE, SegmentIndex};
use crate::step_grid::StepGrid;
use crate::table::{COL_SEGMENT, SegmentFile, SegmentTable};
use crate::tenant::TenantId;
use postings::Postings;

/// How many segment indexes a process keeps in memory. Past it the cache is
/// emptied; the compactor keeps the number of live segments far below this.
const INDEX_CACHE_ENTRIES: usize = 100_000;
/// Footer reads in flight at once per query.
const FOOTER_CONCURRENCY: usize = 16;
/// Bytes fetched from the end of a segment in the first footer read; enough
/// for the footer of most segments, so one request usually suffices.
const FOOTER_PREFETCH: u64 = 256 * 1024;
/// How much longer than `view_max_age` this process remembers its own
/// segment writes for queries (covers a view whose refresh was slow).
const RECENT_WRITES_MARGIN: Duration = Duration::from_secs(60);
/// Parquet's fixed trailer: metadata length (u32 LE) and the magic `PAR1`.
const PARQUET_TRAILER: usize = 8;
/// Block directories a storage keeps by default (see [`ReadCache`]).
const DIRECTORY_CACHE_BYTES: usize = 64 << 20;

/// Reads and writes one object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The DataFusion session scans run in, built on first use: an
    /// ingest-only process (a Lambda cold start) never pays for it.
    ctx: Arc<OnceLock<SessionContext>>,
    url: ObjectStoreUrl,
    index_cache: Arc<Mutex<HashMap<Path, Arc<SegmentIndex>>>>,
    manifests: Arc<Mutex<HashMap<TenantId, Versioned>>>,
    views: Arc<Mutex<HashMap<TenantId, TenantViews>>>,
    /// Segments whose whole-object checksum this process has verified (or
    /// which it wrote itself); pruned to the live listing on each refresh.
    verified: Arc<Mutex<HashSet<Path>>>,
    /// How long a query may reuse a tenant's manifest and segment listing
    /// (zero: every read probes the manifest and lists segments).
    view_max_age: Duration,
    /// Block directories and decoded samples of the direct read path.
    read_cache: ReadCache,
    /// Postings of series indexes, by object (bounded like `index_cache`),
    /// with the index they were built from: callers may pass a source with
    /// another index of the same object (narrowed to some series).
    postings: Arc<Mutex<HashMap<Path, PostingsOf>>>,
}

/// What queries of one tenant read: a manifest and the segment listing taken
/// right after it, reused for up to `view_max_age`, plus the segments this
/// process wrote since the listing began (so its own acknowledged writes are
/// visible at once).
#[derive(Default)]
struct TenantViews {
    view: Option<Arc<View>>,
    /// When a read last found an object of the view gone: a view whose
    /// listing began earlier may list it still, and is not kept.
    stale_before: Option<Instant>,
    /// Segments written by this process, with when their put completed.
    recent: VecDeque<(Instant, Ulid, Source)>,
    /// Sidecars written by this process, likewise.
    recent_sidecars: VecDeque<(Instant, Ulid, Path)>,
}

/// Drops the entries `old` names from the front of a recent-writes queue.
/// Entries are pushed under the views lock with the time of the push, so
/// they are in time order and the old ones are a prefix: pruning costs what
/// it drops, not a pass over every write of the last minute (at a steady
/// write rate that pass was a visible share of each put).
fn drop_old<T>(q: &mut VecDeque<(Instant, Ulid, T)>, old: impl Fn(Instant) -> bool) {
    while q.front().is_some_and(|(at, _, _)| old(*at)) {
        q.pop_front();
    }
}

struct View {
    /// When the manifest read (and then the listing) began: every segment
    /// whose put completed earlier is in `segments`.
    taken: Instant,
    manifest: Versioned,
    /// Live segments, oldest first.
    segments: Vec<(Ulid, Source)>,
    /// Segments whose index did not decode (left out of `segments`).
    corrupt: Vec<Skipped>,
    /// The tenant's sidecars, oldest first, listed with the segments.
    sidecars: Vec<(Ulid, Path)>,
}

/// Segment ids of this process, strictly increasing even within one
/// millisecond: readers resolve conflicting duplicates by id order ("newest
/// wins"), so a random ULID within the same millisecond would make that
/// order arbitrary.
static SEGMENT_IDS: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

fn next_segment_id() -> Ulid {
    // Overflow within one millisecond (2^80 ids) cannot happen in practice;
    // a poisoned lock only means another writer panicked. Both fall back to a
    // fresh ULID, which is still unique.
    // (`Ulid::default()` is the nil id, so no `unwrap_or_default` here.)
    match SEGMENT_IDS.lock().ok().and_then(|mut g| g.generate().ok()) {
        Some(id) => id,
        None => Ulid::new(),
    }
}

/// What [`Storage::write_segment`] stored.
#[derive(Clone, Debug)]
pub struct WrittenSegment {
    pub key: Path,
    pub bytes: usize,
    pub samples: u64,
    pub series: usize,
}

/// A corrupt object a query read around (reported as a warning, logged and
/// counted in `strata_storage_corrupt_objects_skipped_total`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped corrupt object {}: {} (its data is missing from this result)",
            self.key, self.reason
        )
    }
}

static CORRUPT_SKIPPED: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// Registers the storage layer's process-wide metrics under `strata_storage_*`.
pub fn register_metrics(registry: &mut Registry) {
    registry
        .sub_registry_with_prefix("strata_storage")
        .register(
            "corrupt_objects_skipped",
            "Corrupt objects (failed checksum or structure) that queries read around",
            CORRUPT_SKIPPED.clone(),
        );
    let sub = registry.sub_registry_with_prefix("strata_storage_read_cache");
    sub.register(
        "directory_hits",
        "Block directory lookups of the direct read path found in memory",
        read_cache::DIRECTORY_HITS.clone(),
    );
    sub.register(
        "directory_misses",
        "Block directory lookups that loaded the footer and directory columns",
        read_cache::DIRECTORY_MISSES.clone(),
    );
    sub.register(
        "decoded_hits",
        "Chunk and segment lookups answered from decoded samples in memory",
        read_cache::DECODED_HITS.clone(),
    );
    sub.register(
        "decoded_misses",
        "Chunk and segment lookups that fetched and decoded the object's bytes",
        read_cache::DECODED_MISSES.clone(),
    );
}

/// Turns a corrupt-object error into a [`Skipped`]; any other error (the
/// store failing, a bug) is returned: only corruption is read around.
fn skip_if_corrupt(e: StorageError, key: &str) -> Result<Skipped> {
    if !is_corruption(&e) {
        return Err(e);
    }
    let (key, reason) = match e {
        StorageError::Corrupt { key, reason } => (key, reason),
        other => (key.to_string(), other.to_string()),
    };
    warn!(key = %key, reason = %reason, "corrupt object skipped by a query");
    CORRUPT_SKIPPED.inc();
    Ok(Skipped { key, reason })
}

/// Whether `e` says an object was not found (directly or inside a
/// DataFusion error).
fn is_not_found(e: &StorageError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if matches!(
            err.downcast_ref::<object_store::Error>(),
            Some(object_store::Error::NotFound { .. })
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether `e` says an object's bytes are bad (as opposed to the store
/// failing to deliver them, which must fail the query so it is retried).
fn is_corruption(e: &StorageError) -> bool {
    match e {
        StorageError::Corrupt { .. } => true,
        StorageError::DataFusion(df) => {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(df);
            while let Some(err) = cur {
                if err.is::<object_store::Error>()
                    || matches!(
                        err.downcast_ref::<datafusion::error::DataFusionError>(),
                        Some(datafusion::error::DataFusionError::ObjectStore(_))
                            | Some(datafusion::error::DataFusionError::ResourcesExhausted(_))
                    )
                {
                    return false;
                }
                cur = err.source();
            }
            true
        }
        _ => false,
    }
}

/// Whether an object holds sample rows (segment) or chunk rows (block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Segment,
    Block,
}

/// An object a read looks at: a live block, or a segment together with what
/// of it the blocks already hold.
#[derive(Clone, Debug)]
pub struct Source {
    pub kind: SourceKind,
    pub meta: ObjectMeta,
    pub index: Arc<SegmentIndex>,
    /// Segments only: samples of these ranges are read from blocks instead.
    pub done: Option<SegmentEntry>,
}

impl Source {
    fn skips(&self, t: i64) -> bool {
        self.done.as_ref().is_some_and(|d| d.is_done(t))
    }
}

/// A tenant's readable objects at one manifest version.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub manifest: Versioned,
    /// Live blocks (any resolution), in manifest order.
    pub blocks: Vec<Source>,
    /// Segments not fully replaced by blocks, oldest first, with their ids.
    pub segments: Vec<(Ulid, Source)>,
}

impl Storage {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        let url = ObjectStoreUrl::parse("strata://store/")
            .unwrap_or_else(|_| ObjectStoreUrl::local_filesystem());
        Self {
            store,
            ctx: Arc::default(),
            url,
            index_cache: Arc::default(),
            manifests: Arc::default(),
            views: Arc::default(),
            verified: Arc::default(),
            view_max_age: Duration::ZERO,
            read_cache: ReadCache::new(DIRECTORY_CACHE_BYTES, 0),
            postings: Arc::default(),
        }
    }

    /// A storage reading through `store` (for example a cached or
    /// latency-injecting wrapper of this storage's store) that shares this
    /// one's caches: series indexes, manifests, query views, and the
    /// segments written through either.
    pub fn with_store(&self, store: Arc<dyn ObjectStore>) -> Self {
        let mut s = Self::new(store);
        s.index_cache = self.index_cache.clone();
        s.manifests = self.manifests.clone();
        s.views = self.views.clone();
        s.verified = self.verified.clone();
        s.view_max_age = self.view_max_age;
        s.read_cache = self.read_cache.clone();
        s.postings = self.postings.clone();
        s
    }

    /// Reads with `cache` (block directories and decoded samples) instead
    /// of the default one, which keeps block directories only. The query
    /// role gives itself one with room for decoded samples
    /// (`[query.cache] decoded_bytes`); the compactor reads each chunk once
    /// and has no use for one.
    pub fn with_read_cache(mut self, cache: ReadCache) -> Self {
        self.read_cache = cache;
        self
    }

    /// Lets queries reuse a tenant's manifest and segment listing for up to
    /// `max_age` instead of probing the manifest and listing segments on
    /// every read. Segments written through this storage (or one sharing its
    /// caches) are visible at once; other writers' segments and other
    /// compactors' commits within `max_age`. Must stay well below the
    /// compactor's grace period, after which replaced objects are deleted.
    pub fn with_view_max_age(mut self, max_age: Duration) -> Self {
        self.view_max_age = max_age;
        self
    }

    /// A storage on a fresh in-memory object store (unit tests, conformance runner).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The scan session. Only what the read path uses: no function
    /// registry, catalogs or file formats (`SessionContext::new` registers
    /// hundreds of functions, a visible share of a cold start).
    fn ctx(&self) -> &SessionContext {
        self.ctx.get_or_init(|| {
            let ctx = SessionContext::new_with_state(SessionStateBuilder::new().build());
            ctx.runtime_env()
                .register_object_store(self.url.as_ref(), self.store.clone());
            ctx
        })
    }

    /// Writes `series` (samples in any order) as one immutable segment object
    /// of `tenant`. Returns only after the object store acknowledged the put.
    pub async fn write_segment(
        &self,
        tenant: &TenantId,
        series: &[Series],
    ) -> Result<WrittenSegment> {
        let (bytes, index) = segment::encode(series)?;
        let id = next_segment_id();
        let key = paths::segment(tenant, id);
        let size = bytes.len();
        self.store
            .put(&key, bytes.into())
            .await
            .map_err(|e| StorageError::store("put", key.as_ref(), e))?;
        let written = WrittenSegment {
            key: key.clone(),
            bytes: size,
            samples: index.samples,
            series: index.series.len(),
        };
        debug!(key = %key, bytes = size, samples = written.samples, series = written.series, "segment written");
        // It is what we encoded: nothing to verify when reading it back.
        if let Ok(mut v) = self.verified.lock() {
            v.insert(key.clone());
        }
        // Cheap: the index shares the label sets of the batch.
        let index = Arc::new(index);
        self.cache_index(&key, index.clone());
        if !self.view_max_age.is_zero() {
            self.remember_write(tenant, id, key, size as u64, index);
        }
        Ok(written)
    }

    /// Series matching all `matchers` with their samples in `[start_ms, end_ms]`
    /// (inclusive), sorted by labels, samples sorted by time. A (series,
    /// timestamp) written more than once (a retried request) comes back once;
    /// if the values differ, the newest write wins: segments in id order, and
    /// any segment over a block.
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>> {
        let once = || async {
            let sources = self.sources(tenant, start_ms, end_ms).await?;
            self.read(&sources, matchers, start_ms, end_ms, None).await
        };
        match once().await {
            Err(e) if self.relist_after(tenant, &e) => once().await,
            other => other,
        }
    }

    /// Whether a read that failed with `e` should be repeated on a fresh
    /// listing: an object a reused query view named is gone (its deletion
    /// grace period ended while the view was cached, or a sidecar was
    /// merged). Drops the view if so.
    fn relist_after(&self, tenant: &TenantId, e: &StorageError) -> bool {
        if self.view_max_age.is_zero() || !is_not_found(e) {
            return false;
        }
        self.drop_view(tenant);
        true
    }

    /// Forgets the tenant's cached query view: the next read lists afresh.
    fn drop_view(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.views.lock()
            && let Some(t) = m.get_mut(tenant)
        {
            t.view = None;
            t.stale_before = Some(Instant::now());
        }
    }

    /// Raw-resolution blocks then segments overlapping `[start_ms, end_ms]`,
    /// in the order in which later ones win duplicates. Only the footers of
    /// blocks overlapping the range are read (the manifest has their times).
    /// A corrupt object fails the call (see [`Storage::sources_reporting`]).
    pub async fn sources(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Source>> {
        let (sources, skipped) = self.sources_reporting(tenant, start_ms, end_ms).await?;
        match skipped.into_iter().next() {
            Some(Skipped { key, reason }) => Err(StorageError::Corrupt { key, reason }),
            None => Ok(sources),
        }
    }

    /// [`Storage::sources`], leaving out objects whose index does not decode
    /// and reporting them. (A corrupt segment cannot say which time range it
    /// covers, so it is reported for every range.)
    pub async fn sources_reporting(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<Source>, Vec<Skipped>)> {
        let view = self.view_for(tenant, Some((start_ms, end_ms))).await?;
        self.sources_in(tenant, &view, start_ms, end_ms).await
    }

    /// [`Storage::sources_reporting`] from one view.
    async fn sources_in(
        &self,
        tenant: &TenantId,
        view: &View,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<Source>, Vec<Skipped>)> {
        let manifest = &view.manifest;
        // Directories are loaded next to the footers (no extra round trip
        // before the read); both are cache hits when the view prefetched.
        let (blocks, ()) = futures::join!(
            self.block_sources(
                tenant,
                manifest,
                manifest
                    .manifest
                    .blocks_overlapping(block::RAW, start_ms, end_ms),
            ),
            self.prefetch_directories(tenant, manifest, start_ms, end_ms)
        );
        let mut out = Vec::with_capacity(blocks.len() + view.segments.len());
        let mut skipped = view.corrupt.clone();
        for b in blocks {
            match b {
                Ok(b) => out.push(b),
                Err(e) => {
                    let key = match &e {
                        StorageError::Corrupt { key, .. } => key.clone(),
                        _ => String::new(),
                    };
                    skipped.push(skip_if_corrupt(e, &key)?);
                }
            }
        }
        let recent = self.recent_writes(tenant, view);
        let mut segments: Vec<&(Ulid, Source)> = view.segments.iter().chain(&recent).collect();
        segments.sort_by_key(|(id, _)| *id);
        out.extend(
            segments
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.index.overlaps(start_ms, end_ms))
                .cloned(),
        );
        Ok((out, skipped))
    }

    /// [`Storage::select`] that reads around corrupt objects: the series of
    /// every readable object, and what was skipped (for the query's warnings).
    pub async fn select_reporting(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(Vec<Series>, Vec<Skipped>)> {
        self.select_reporting_at_steps(tenant, matchers, start_ms, end_ms, None)
            .await
    }

    /// [`Storage::select_reporting`] for a selector evaluated only at the
    /// times of `grid` (when given): each series keeps only the samples
    /// those times see ([`StepGrid`]).
    pub async fn select_reporting_at_steps(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        grid: Option<StepGrid>,
    ) -> Result<(Vec<Series>, Vec<Skipped>)> {
        let once = || async {
            let (sources, mut skipped) = self.sources_reporting(tenant, start_ms, end_ms).await?;
            let (series, more) = self
                .read_reporting_at_steps(&sources, matchers, start_ms, end_ms, None, grid)
                .await?;
            skipped.extend(more);
            Ok((series, skipped))
        };
        match once().await {
            Err(e) if self.relist_after(tenant, &e) => once().await,
            other => other,
        }
    }

    /// [`Storage::read`] that reads around corrupt objects. The fast path is
    /// one read; only when it fails with corruption is each source read
    /// alone to find the bad ones, and the read repeated without them.
    pub async fn read_reporting(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
    ) -> Result<(Vec<Series>, Vec<Skipped>)> {
        self.read_reporting_at_steps(sources, matchers, start_ms, end_ms, ids, None)
            .await
    }

    /// [`Storage::read_reporting`], thinned to what `grid` sees (when given).
    async fn read_reporting_at_steps(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
        grid: Option<StepGrid>,
    ) -> Result<(Vec<Series>, Vec<Skipped>)> {
        let first = match self
            .read_direct(sources, matchers, start_ms, end_ms, ids, grid)
            .await
        {
            Ok(series) => return Ok((series, Vec::new())),
            Err(e) if is_corruption(&e) => e,
            Err(e) => return Err(e),
        };
        let mut good = Vec::with_capacity(sources.len());
        let mut skipped = Vec::new();
        for src in sources {
            let alone = std::slice::from_ref(src);
            match self
                .read_direct(alone, matchers, start_ms, end_ms, ids, grid)
                .await
            {
                Ok(_) => good.push(src.clone()),
                Err(e) => skipped.push(skip_if_corrupt(e, src.meta.location.as_ref())?),
            }
        }
        if skipped.is_empty() {
            // Not attributable to one object: report what happened.
            return Err(first);
        }
        let series = self
            .read_direct(&good, matchers, start_ms, end_ms, ids, grid)
            .await?;
        Ok((series, skipped))
    }

    /// The tenant's query view: cached if younger than `view_max_age`.
    async fn view(&self, tenant: &TenantId) -> Result<Arc<View>> {
        self.view_for(tenant, None).await
    }

    /// [`Storage::view`] for a read of `range`: a fresh view also loads the
    /// footers and directories of the raw blocks overlapping it while the
    /// segment footers are read, so the read that follows finds them cached.
    async fn view_for(&self, tenant: &TenantId, range: Option<(i64, i64)>) -> Result<Arc<View>> {
        if !self.view_max_age.is_zero()
            && let Some(v) = self
                .views
                .lock()
                .ok()
                .and_then(|m| m.get(tenant).and_then(|t| t.view.clone()))
            && v.taken.elapsed() < self.view_max_age
        {
            return Ok(v);
        }
        let taken = Instant::now();
        // Sidecar reads use the listing only from a reused view; without
        // one they list for themselves (see `query_sidecar_keys`).
        let sidecars = async {
            if self.view_max_age.is_zero() {
                Ok(Vec::new())
            } else {
                self.list_sidecars(tenant).await
            }
        };
        // The segment listing does not depend on the manifest, so the two
        // are read at once (one round trip fewer on every fresh view). A
        // listing older than the manifest is as safe as a newer one: a
        // segment the manifest replaces is dropped, and replaced segments
        // are deleted only after a grace period far longer than both reads.
        let (manifest, listing, sidecars) =
            futures::try_join!(self.manifest(tenant), self.list_segments(tenant), sidecars)?;
        let blocks = async {
            if let Some((start, end)) = range {
                let entries = manifest.manifest.blocks_overlapping(block::RAW, start, end);
                // Results are cached (or fail again, and are reported, in
                // the read).
                futures::join!(
                    self.block_sources(tenant, &manifest, entries),
                    self.prefetch_directories(tenant, &manifest, start, end)
                );
            }
        };
        let ((segments, corrupt), ()) =
            futures::try_join!(self.live_segments_of(listing, &manifest, true), async {
                blocks.await;
                Ok(())
            })?;
        if let Ok(mut v) = self.verified.lock() {
            let prefix = paths::segments_prefix(tenant);
            let live: HashSet<&Path> = segments.iter().map(|(_, s)| &s.meta.location).collect();
            v.retain(|k| !k.prefix_matches(&prefix) || live.contains(k));
        }
        let view = Arc::new(View {
            taken,
            manifest,
            segments,
            corrupt,
            sidecars,
        });
        self.keep_view(tenant, &view);
        Ok(view)
    }

    /// Keeps `view` for the next reads, unless a newer one is kept or a
    /// read has found an object gone since its listing began (a concurrent
    /// read's listing would otherwise give the retry that object again).
    fn keep_view(&self, tenant: &TenantId, view: &Arc<View>) {
        if self.view_max_age.is_zero() {
            return;
        }
        let Ok(mut m) = self.views.lock() else {
            return;
        };
        let t = m.entry(tenant.clone()).or_default();
        let taken = view.taken;
        if t.view.as_ref().is_none_or(|old| old.taken <= taken)
            && t.stale_before.is_none_or(|stale| stale <= taken)
        {
            t.view = Some(view.clone());
            // Writes before the listing began are in it.
            drop_old(&mut t.recent, |at| at < taken);
            drop_old(&mut t.recent_sidecars, |at| at < taken);
        }
    }

    /// Segments this process wrote that `view`'s listing may have missed.
    fn recent_writes(&self, tenant: &TenantId, view: &View) -> Vec<(Ulid, Source)> {
        let Ok(m) = self.views.lock() else {
            return Vec::new();
        };
        let Some(t) = m.get(tenant) else {
            return Vec::new();
        };
        t.recent
            .iter()
            .filter(|(at, id, _)| {
                *at >= view.taken
                    && view.manifest.manifest.segment(&id.to_string()).is_none()
                    && view.segments.binary_search_by_key(id, |(i, _)| *i).is_err()
            })
            .map(|(_, id, src)| (*id, src.clone()))
            .collect()
    }

    fn remember_write(
        &self,
        tenant: &TenantId,
        id: Ulid,
        key: Path,
        size: u64,
        index: Arc<SegmentIndex>,
    ) {
        let src = Source {
            kind: SourceKind::Segment,
            meta: ObjectMeta {
                location: key,
                last_modified: chrono::Utc::now(),
                size,
                e_tag: None,
                version: None,
            },
            index,
            done: None,
        };
        if let Ok(mut m) = self.views.lock() {
            let t = m.entry(tenant.clone()).or_default();
            // No view older than this is used again (a slow refresh aside,
            // hence the margin), so older writes are in every future listing.
            let keep = self.view_max_age + RECENT_WRITES_MARGIN;
            let now = Instant::now();
            drop_old(&mut t.recent, |at| now.duration_since(at) >= keep);
            t.recent.push_back((now, id, src));
        }
    }

    /// Live blocks as read sources, in order, their footers read
    /// concurrently.
    async fn block_sources<'a>(
        &self,
        tenant: &TenantId,
        manifest: &Versioned,
        entries: impl Iterator<Item = &'a manifest::BlockEntry>,
    ) -> Vec<Result<Source>> {
        // Futures built before the stream: a closure over borrowed entries
        // inside it would make the returned future not `Send` for callers.
        let reads: Vec<_> = entries
            .map(|b| self.block_source(tenant, manifest.version, b))
            .collect();
        futures::stream::iter(reads)
            .buffered(FOOTER_CONCURRENCY)
            .collect()
            .await
    }

    /// A live block as a read source (its index from the cache or footer).
    async fn block_source(
        &self,
        tenant: &TenantId,
        version: u64,
        b: &manifest::BlockEntry,
    ) -> Result<Source> {
        let id = Ulid::from_string(&b.id).map_err(|e| StorageError::Corrupt {
            key: paths::manifest(tenant, version).to_string(),
            reason: format!("block id {:?}: {e}", b.id),
        })?;
        let meta = ObjectMeta {
            location: paths::block(tenant, &b.resolution, id),
            last_modified: chrono_epoch(),
            size: b.bytes,
            e_tag: None,
            version: None,
        };
        let index = self.index(&meta, SourceKind::Block).await?;
        Ok(Source {
            kind: SourceKind::Block,
            meta,
            index,
            done: None,
        })
    }

    /// Reads `sources` (later ones win duplicates) for series matching
    /// `matchers` (all series when empty) whose id lies in `ids` (when given),
    /// with samples in `[start_ms, end_ms]`. Reads objects directly, with
    /// no query plan (`storage/direct.rs`); [`Storage::read_scan`] gives
    /// the same answer through a DataFusion scan.
    pub async fn read(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
    ) -> Result<Vec<Series>> {
        self.read_direct(sources, matchers, start_ms, end_ms, ids, None)
            .await
    }

    /// [`Storage::read`] through a DataFusion scan of the objects (one plan
    /// per call, ids and times pushed into the Parquet reader). Kept as the
    /// reference the direct path is tested against.
    pub async fn read_scan(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
    ) -> Result<Vec<Series>> {
        let in_ids = |id: SeriesId| ids.is_none_or(|(lo, hi)| lo <= id && id <= hi);
        // Per source position: matched series id -> labels.
        let mut labels_of: Vec<HashMap<SeriesId, Labels>> = Vec::with_capacity(sources.len());
        let mut wanted: HashSet<SeriesId> = HashSet::new();
        let (mut seg_files, mut seg_pos) = (Vec::new(), Vec::new());
        let (mut block_files, mut block_pos) = (Vec::new(), Vec::new());
        for (pos, src) in sources.iter().enumerate() {
            let matched: HashMap<SeriesId, Labels> = src
                .index
                .series
                .iter()
                .filter(|s| in_ids(s.id) && matches_all(matchers, &s.labels))
                .map(|s| (s.id, s.labels.clone()))
                .collect();
            if !matched.is_empty() {
                wanted.extend(matched.keys().copied());
                let file = SegmentFile {
                    key: src.meta.location.to_string(),
                    size: src.meta.size,
                };
                match src.kind {
                    SourceKind::Segment => {
                        seg_files.push(file);
                        seg_pos.push(pos);
                    }
                    SourceKind::Block => {
                        block_files.push(file);
                        block_pos.push(pos);
                    }
                }
            }
            labels_of.push(matched);
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut id_list: Vec<SeriesId> = wanted.into_iter().collect();
        id_list.sort_unstable();
        let id_filter =
            || col(COL_SERIES).in_list(id_list.iter().map(|&i| lit(i)).collect(), false);

        // Samples gathered per series, in runs tagged with their source
        // position and arrival order, merged once at the end.
        let mut slots: HashMap<&Labels, usize> = HashMap::new();
        let mut acc: Vec<(&Labels, Gathered)> = Vec::new();
        let mut seq = 0usize;
        let labels_for = |pos: usize, id: SeriesId| labels_of.get(pos).and_then(|m| m.get(&id));

        if !block_files.is_empty() {
            let table = SegmentTable::with_file_schema(
                self.url.clone(),
                block::chunk_schema(),
                block_files,
            );
            let filter = id_filter()
                .and(col(COL_MAX_TIME).gt_eq(lit(start_ms)))
                .and(col(COL_MIN_TIME).lt_eq(lit(end_ms)));
            let batches = self
                .ctx()
                .read_table(Arc::new(table))?
                .filter(filter)?
                .select_columns(&[COL_SERIES, COL_CHUNK, COL_CHECKSUM, COL_SEGMENT])?
                .collect()
                .await?;
            let mut decoded = Vec::new();
            for b in &batches {
                let sid = column::<UInt64Array>(b, 0, COL_SERIES)?;
                let chunks = column::<BinaryArray>(b, 1, COL_CHUNK)?;
                let sums = column::<UInt32Array>(b, 2, COL_CHECKSUM)?;
                let file = column::<UInt32Array>(b, 3, COL_SEGMENT)?;
                for i in 0..b.num_rows() {
                    let Some(&pos) = block_pos.get(file.value(i) as usize) else {
                        continue;
                    };
                    let Some(labels) = labels_for(pos, sid.value(i)) else {
                        continue; // an id that matched in another file only
                    };
                    let corrupt = |reason: String| StorageError::Corrupt {
                        key: sources[pos].meta.location.to_string(),
                        reason,
                    };
                    decoded.clear();
                    block::verify_chunk(chunks.value(i), sums.value(i)).map_err(corrupt)?;
                    chunk::decode(chunks.value(i), &mut decoded)
                        .map_err(|e| corrupt(e.to_string()))?;
                    let slot = *slots.entry(labels).or_insert_with(|| {
                        acc.push((labels, Gathered::default()));
                        acc.len() - 1
                    });
                    seq += 1;
                    acc[slot].1.push_run(
                        pos,
                        seq,
                        decoded
                            .iter()
                            .filter(|x| start_ms <= x.t && x.t <= end_ms)
                            .copied(),
                    );
                }
            }
        }

        if !seg_files.is_empty() {
            self.verify_segments(seg_pos.iter().map(|&p| &sources[p]))
                .await?;
            let table = SegmentTable::new(self.url.clone(), seg_files);
            let filter = id_filter().and(col(COL_TIMESTAMP).between(lit(start_ms), lit(end_ms)));
            let batches = self
                .ctx()
                .read_table(Arc::new(table))?
                .filter(filter)?
                .select_columns(&[COL_SERIES, COL_TIMESTAMP, COL_VALUE, COL_SEGMENT])?
                .collect()
                .await?;
            for b in &batches {
                let sid = column::<UInt64Array>(b, 0, COL_SERIES)?;
                let ts = column::<Int64Array>(b, 1, COL_TIMESTAMP)?;
                let vs = column::<Float64Array>(b, 2, COL_VALUE)?;
                let file = column::<UInt32Array>(b, 3, COL_SEGMENT)?;
                // Rows of one series in one file are contiguous: look its
                // slot up once per run, not once per sample.
                let mut current: Option<(u32, SeriesId, Option<SlotAt>)> = None;
                for i in 0..b.num_rows() {
                    let (f, id) = (file.value(i), sid.value(i));
                    let slot = match current {
                        Some((cf, cid, slot)) if cf == f && cid == id => slot,
                        _ => {
                            let slot = seg_pos.get(f as usize).and_then(|&pos| {
                                let labels = labels_for(pos, id)?;
                                let slot = *slots.entry(labels).or_insert_with(|| {
                                    acc.push((labels, Gathered::default()));
                                    acc.len() - 1
                                });
                                seq += 1;
                                acc[slot].1.start_run(pos, seq);
                                Some((slot, pos))
                            });
                            current = Some((f, id, slot));
                            slot
                        }
                    };
                    let Some((slot, pos)) = slot else { continue };
                    let t = ts.value(i);
                    if sources[pos].skips(t) {
                        continue; // a block holds it
                    }
                    acc[slot].1.push(Sample::new(t, vs.value(i)));
                }
            }
        }

        Ok(gathered_series(acc))
    }

    /// Verifies the whole-object checksum of each segment not verified yet
    /// (one GET of the object; through the query cache its pages then serve
    /// the scan). A footer-only read cannot: a flipped bit in a data page
    /// would otherwise be read as a wrong value. Blocks carry per-chunk
    /// checksums, checked as chunks are decoded.
    async fn verify_segments(&self, sources: impl Iterator<Item = &Source>) -> Result<()> {
        // Owned keys and futures built before the stream: a closure over
        // borrowed ones would make callers' futures not `Send`.
        let todo: Vec<Path> = {
            // A poisoned lock only means: verify again.
            let done = self.verified.lock().ok();
            sources
                .map(|s| &s.meta.location)
                .filter(|k| done.as_ref().is_none_or(|d| !d.contains(*k)))
                .cloned()
                .collect()
        };
        let store = &self.store;
        let checks: Vec<_> = todo
            .into_iter()
            .map(|key| async move {
                let bytes = store
                    .get(&key)
                    .await
                    .map_err(|e| StorageError::store("get", key.as_ref(), e))?
                    .bytes()
                    .await
                    .map_err(|e| StorageError::store("get", key.as_ref(), e))?;
                // A version 1 segment has no checksum to verify.
                segment::verify(key.as_ref(), &bytes)?;
                Ok::<_, StorageError>(key)
            })
            .collect();
        let checked: Vec<Path> = futures::stream::iter(checks)
            .buffer_unordered(FOOTER_CONCURRENCY)
            .try_collect()
            .await?;
        if let Ok(mut v) = self.verified.lock() {
            v.extend(checked);
        }
        Ok(())
    }

    /// Label sets of series that match any of the matcher sets (all series when
    /// `matcher_sets` is empty) in blocks of every resolution and segments
    /// overlapping the range, sorted. Answered from series indexes alone,
    /// without reading samples. Downsampled blocks count: a series a
    /// roll-up rule created, or one whose raw data retention removed, is
    /// still a series of the range (as `/api/v1/series` and label lookups
    /// over a long range must show it).
    pub async fn series(
        &self,
        tenant: &TenantId,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>> {
        let view = self.view(tenant).await?;
        let (mut sources, skipped) = self.sources_in(tenant, &view, start_ms, end_ms).await?;
        if let Some(Skipped { key, reason }) = skipped.into_iter().next() {
            return Err(StorageError::Corrupt { key, reason });
        }
        let m = &view.manifest.manifest;
        let downsampled = m
            .blocks
            .iter()
            .filter(|b| b.resolution != block::RAW && b.overlaps(start_ms, end_ms));
        for b in self
            .block_sources(tenant, &view.manifest, downsampled)
            .await
        {
            sources.push(b?);
        }
        let mut out: HashSet<&Labels> = HashSet::new();
        for c in &sources {
            for s in &c.index.series {
                if matcher_sets.is_empty() || matcher_sets.iter().any(|m| matches_all(m, &s.labels))
                {
                    out.insert(&s.labels);
                }
            }
        }
        let mut out: Vec<Labels> = out.into_iter().cloned().collect();
        out.sort();
        Ok(out)
    }

    /// The tenant's newest manifest (cached; one probe request when unchanged).
    pub async fn manifest(&self, tenant: &TenantId) -> Result<Versioned> {
        let known = self
            .manifests
            .lock()
            .ok()
            .and_then(|m| m.get(tenant).cloned())
            .unwrap_or_default();
        let current = manifest::advance(self.store.as_ref(), tenant, known).await?;
        self.remember_manifest(tenant, &current);
        Ok(current)
    }

    /// Records a manifest version this process read or committed.
    pub fn remember_manifest(&self, tenant: &TenantId, v: &Versioned) {
        let mut newer = false;
        if let Ok(mut m) = self.manifests.lock() {
            let slot = m.entry(tenant.clone()).or_default();
            if v.version >= slot.version {
                newer = v.version > slot.version;
                *slot = v.clone();
            }
        }
        // A commit of this process (a compaction, an aggregation) is seen by
        // the next query here rather than after `view_max_age`.
        if newer
            && let Ok(mut views) = self.views.lock()
            && let Some(t) = views.get_mut(tenant)
            && t.view
                .as_ref()
                .is_some_and(|view| view.manifest.version < v.version)
        {
            t.view = None;
        }
    }

    /// The tenant's live blocks and not fully replaced segments at the newest
    /// manifest version (always fresh: compaction and aggregation plan on it).
    pub async fn snapshot(&self, tenant: &TenantId) -> Result<Snapshot> {
        let manifest = self.manifest(tenant).await?;
        let blocks = self
            .block_sources(tenant, &manifest, manifest.manifest.blocks.iter())
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let (segments, _) = self.live_segments(tenant, &manifest, false).await?;
        Ok(Snapshot {
            manifest,
            blocks,
            segments,
        })
    }

    /// Lists the tenant's segments and keeps those `manifest` does not mark
    /// replaced, oldest first, with their indexes. With `skip_corrupt`, a
    /// segment whose index does not decode is left out and reported instead
    /// of failing the listing (queries); without, it fails (compaction).
    async fn live_segments(
        &self,
        tenant: &TenantId,
        manifest: &Versioned,
        skip_corrupt: bool,
    ) -> Result<(Vec<(Ulid, Source)>, Vec<Skipped>)> {
        let listing = self.list_segments(tenant).await?;
        self.live_segments_of(listing, manifest, skip_corrupt).await
    }

    /// The tenant's segment objects (id, listing metadata), any order.
    async fn list_segments(&self, tenant: &TenantId) -> Result<Vec<(Ulid, ObjectMeta)>> {
        let prefix = paths::segments_prefix(tenant);
        self.store
            .list(Some(&prefix))
            .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
            .try_filter_map(|m| {
                let entry = paths::parse_segment(&m.location).map(|id| (id, m));
                async move { Ok(entry) }
            })
            .try_collect()
            .await
    }

    /// [`Storage::live_segments`] from a listing taken already.
    async fn live_segments_of(
        &self,
        listing: Vec<(Ulid, ObjectMeta)>,
        manifest: &Versioned,
        skip_corrupt: bool,
    ) -> Result<(Vec<(Ulid, Source)>, Vec<Skipped>)> {
        let mut metas: Vec<(Ulid, ObjectMeta, Option<SegmentEntry>)> = listing
            .into_iter()
            .map(|(id, m)| {
                let entry = manifest.manifest.segment(&id.to_string()).cloned();
                (id, m, entry)
            })
            .collect();
        metas.retain(|(_, _, e)| e.as_ref().is_none_or(|e| e.replaced_at.is_none()));
        metas.sort_by_key(|(id, _, _)| *id);
        let results: Vec<(Path, Result<(Ulid, Source)>)> = futures::stream::iter(metas)
            .map(|(id, meta, done)| async move {
                let key = meta.location.clone();
                let source = self.index(&meta, SourceKind::Segment).await.map(|index| {
                    (
                        id,
                        Source {
                            kind: SourceKind::Segment,
                            meta,
                            index,
                            done,
                        },
                    )
                });
                (key, source)
            })
            .buffered(FOOTER_CONCURRENCY)
            .collect()
            .await;
        let (mut segments, mut skipped) = (Vec::with_capacity(results.len()), Vec::new());
        for (key, r) in results {
            match r {
                Ok(s) => segments.push(s),
                Err(e) if skip_corrupt => skipped.push(skip_if_corrupt(e, key.as_ref())?),
                Err(e) => return Err(e),
            }
        }
        Ok((segments, skipped))
    }

    /// Writes a block built by [`block::BlockWriter`] and caches its index.
    pub async fn put_block(
        &self,
        key: &Path,
        bytes: bytes::Bytes,
        index: SegmentIndex,
    ) -> Result<()> {
        self.store
            .put(key, bytes.into())
            .await
            .map_err(|e| StorageError::store("put", key.as_ref(), e))?;
        self.cache_index(key, Arc::new(index));
        Ok(())
    }

    /// The series index of a segment or block, from the cache or its footer.
    async fn index(&self, meta: &ObjectMeta, kind: SourceKind) -> Result<Arc<SegmentIndex>> {
        if let Some(i) = self
            .index_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&meta.location).cloned())
        {
            return Ok(i);
        }
        let key = meta.location.to_string();
        let corrupt = |reason: String| StorageError::Corrupt {
            key: key.clone(),
            reason,
        };
        let size = meta.size;
        let tail_start = size.saturating_sub(FOOTER_PREFETCH);
        let get = |range: std::ops::Range<u64>| async move {
            self.store
                .get_range(&meta.location, range)
                .await
                .map_err(|e| StorageError::store("get_range", meta.location.as_ref(), e))
        };
        let mut buf = get(tail_start..size).await?;
        let trailer: &[u8] = buf
            .get(buf.len().saturating_sub(PARQUET_TRAILER)..)
            .unwrap_or_default();
        let tail = FooterTail::try_from(trailer).map_err(|e| corrupt(format!("footer: {e}")))?;
        let needed = (tail.metadata_length() + PARQUET_TRAILER) as u64;
        if needed > size {
            return Err(corrupt(format!(
                "footer length {needed} exceeds object size {size}"
            )));
        }
        if needed > buf.len() as u64 {
            buf = get(size - needed..size).await?;
        }
        let start = buf.len() - needed as usize;
        let md = ParquetMetaDataReader::decode_metadata(&buf[start..buf.len() - PARQUET_TRAILER])
            .map_err(|e| corrupt(format!("footer: {e}")))?;
        let kv = md.file_metadata().key_value_metadata();
        let index = Arc::new(match kind {
            SourceKind::Segment => segment::decode_index(&key, kv)?,
            SourceKind::Block => block::decode_info(&key, kv)?.index,
        });
        self.cache_index(&meta.location, index.clone());
        Ok(index)
    }

    /// Positions in `index` of the series matching `matchers`: through the
    /// postings of the object's index (built on first use and cached), or,
    /// for an index the caller built (narrowed to some series, so positions
    /// differ from the object's own index), by testing each series.
    fn select_series(
        &self,
        key: &Path,
        index: &Arc<SegmentIndex>,
        matchers: &[Matcher],
    ) -> Vec<usize> {
        let cached = self.postings.lock().ok().and_then(|c| c.get(key).cloned());
        let postings = match cached {
            Some((built_from, p)) if Arc::ptr_eq(&built_from, index) => p,
            // Built only for the object's own (cached) index.
            None if self
                .index_cache
                .lock()
                .ok()
                .and_then(|c| c.get(key).cloned())
                .is_some_and(|own| Arc::ptr_eq(&own, index)) =>
            {
                let p = Arc::new(Postings::new(index));
                if let Ok(mut cache) = self.postings.lock() {
                    if cache.len() >= INDEX_CACHE_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(key.clone(), (index.clone(), p.clone()));
                }
                p
            }
            _ => {
                return (0..index.series.len())
                    .filter(|&i| matches_all(matchers, &index.series[i].labels))
                    .collect();
            }
        };
        postings.select(index, matchers)
    }

    fn cache_index(&self, key: &Path, index: Arc<SegmentIndex>) {
        if let Ok(mut cache) = self.index_cache.lock() {
            if cache.len() >= INDEX_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key.clone(), index);
        }
    }
}

/// Postings and the series index they were built from.
type PostingsOf = (Arc<SegmentIndex>, Arc<Postings>);

/// A series' slot in the gathered output and the source position of its run.
type SlotAt = (usize, usize);

/// The series of a read from what it gathered per label set: merged
/// (see [`Gathered::finish`]), empty ones left out, sorted by labels.
fn gathered_series(acc: Vec<(&Labels, Gathered)>) -> Vec<Series> {
    let mut out: Vec<Series> = acc
        .into_iter()
        .filter_map(|(labels, g)| {
            let samples = g.finish();
            (!samples.is_empty()).then(|| Series {
                labels: labels.clone(),
                samples,
            })
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// One series' samples as read, in runs (a block chunk, or a segment's rows of
/// the series) tagged with their source position and arrival order.
#[derive(Default)]
struct Gathered {
    samples: Vec<Sample>,
    /// (source position, arrival order, first index into `samples`).
    runs: Vec<(usize, usize, usize)>,
}

impl Gathered {
    /// Room for `samples` in `runs` runs.
    fn with_capacity(samples: usize, runs: usize) -> Self {
        Self {
            samples: Vec::with_capacity(samples),
            runs: Vec::with_capacity(runs),
        }
    }

    fn push_slice(&mut self, pos: usize, seq: usize, samples: &[Sample]) {
        self.start_run(pos, seq);
        self.samples.extend_from_slice(samples);
    }

    fn start_run(&mut self, pos: usize, seq: usize) {
        self.runs.push((pos, seq, self.samples.len()));
    }

    fn push(&mut self, s: Sample) {
        self.samples.push(s);
    }

    fn push_run(&mut self, pos: usize, seq: usize, samples: impl Iterator<Item = Sample>) {
        self.start_run(pos, seq);
        self.samples.extend(samples);
    }

    /// Samples sorted by time, each timestamp once: where several runs hold
    /// one timestamp, the run of the later source wins (then the later
    /// arrival). Usually the runs are already in time order without
    /// repeats, and nothing is moved.
    fn finish(self) -> Vec<Sample> {
        let Gathered { samples, runs } = self;
        if samples.windows(2).all(|w| w[0].t < w[1].t) {
            return samples;
        }
        let mut spans: Vec<(usize, usize, usize, usize)> = runs
            .iter()
            .enumerate()
            .map(|(i, &(pos, seq, from))| {
                let to = runs.get(i + 1).map_or(samples.len(), |n| n.2);
                (pos, seq, from, to)
            })
            .collect();
        spans.sort_unstable_by_key(|&(pos, seq, _, _)| (pos, seq));
        let mut ordered = Vec::with_capacity(samples.len());
        for (_, _, from, to) in spans {
            ordered.extend_from_slice(&samples[from..to]);
        }
        // Stable: among equal timestamps the later run stays later.
        ordered.sort_by_key(|x| x.t);
        let mut out: Vec<Sample> = Vec::with_capacity(ordered.len());
        for x in ordered {
            match out.last_mut() {
                Some(last) if last.t == x.t => *last = x, // newer write wins
                _ => out.push(x),
            }
        }
        out
    }
}

/// A typed column of a scan result, or a corruption error naming it.
fn column<'a, T: 'static>(b: &'a RecordBatch, i: usize, name: &str) -> Result<&'a T> {
    b.column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| StorageError::Corrupt {
            key: "scan".into(),
            reason: format!("column {name} has the wrong type"),
        })
}

/// Listing metadata is not needed for blocks (the manifest has their size).
fn chrono_epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
}

mod direct;
mod postings;
mod query_snapshot;
pub mod read_cache;
mod sidecar;
pub use read_cache::ReadCache;
pub use sidecar::{SidecarCompaction, WrittenSidecar};

#[cfg(test)]
mod tests;
