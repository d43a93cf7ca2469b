//! The storage facade: write a batch of series as one segment, and read series
//! back by matchers and time range. Everything above the object store goes
//! through this type.
//!
//! Reads: take the tenant's manifest (its live blocks, and what of each
//! segment the blocks already hold) and list the tenant's segments; read each
//! object's series index from its footer (cached: objects are immutable); keep
//! the objects that overlap the time range and hold a matching series, then
//! let DataFusion scan only those files for only those series ids and times.
//! Block rows are chunks, decoded here; segment samples that a block already
//! holds are skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, BinaryArray, Float64Array, Int64Array, RecordBatch, UInt32Array, UInt64Array,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionContext, col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use tracing::debug;
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
use crate::table::{COL_SEGMENT, SegmentFile, SegmentTable};
use crate::tenant::TenantId;

/// How many segment indexes a process keeps in memory. Past it the cache is
/// emptied; the compactor keeps the number of live segments far below this.
const INDEX_CACHE_ENTRIES: usize = 100_000;
/// Footer reads in flight at once per query.
const FOOTER_CONCURRENCY: usize = 16;
/// Bytes fetched from the end of a segment in the first footer read; enough
/// for the footer of most segments, so one request usually suffices.
const FOOTER_PREFETCH: u64 = 256 * 1024;
/// Parquet's fixed trailer: metadata length (u32 LE) and the magic `PAR1`.
const PARQUET_TRAILER: usize = 8;

/// Reads and writes one object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    ctx: SessionContext,
    url: ObjectStoreUrl,
    index_cache: Arc<Mutex<HashMap<Path, Arc<SegmentIndex>>>>,
    manifests: Arc<Mutex<HashMap<TenantId, Versioned>>>,
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
        let ctx = SessionContext::new();
        let url = ObjectStoreUrl::parse("strata://store/")
            .unwrap_or_else(|_| ObjectStoreUrl::local_filesystem());
        ctx.runtime_env()
            .register_object_store(url.as_ref(), store.clone());
        Self {
            store,
            ctx,
            url,
            index_cache: Arc::default(),
            manifests: Arc::default(),
        }
    }

    /// A storage on a fresh in-memory object store (unit tests, conformance runner).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes `series` (samples in any order) as one immutable segment object
    /// of `tenant`. Returns only after the object store acknowledged the put.
    pub async fn write_segment(
        &self,
        tenant: &TenantId,
        series: &[Series],
    ) -> Result<WrittenSegment> {
        let (bytes, index) = segment::encode(series)?;
        let key = paths::segment(tenant, next_segment_id());
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
        // Cheap: the index shares the label sets of the batch.
        self.cache_index(&key, Arc::new(index));
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
        let sources = self.sources(tenant, start_ms, end_ms).await?;
        self.read(&sources, matchers, start_ms, end_ms, None).await
    }

    /// Raw-resolution blocks then segments overlapping `[start_ms, end_ms]`,
    /// in the order in which later ones win duplicates.
    pub async fn sources(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Source>> {
        let snap = self.snapshot(tenant).await?;
        let mut out: Vec<Source> = snap
            .blocks
            .into_iter()
            .filter(|b| {
                b.index.overlaps(start_ms, end_ms)
                    && b.meta
                        .location
                        .as_ref()
                        .contains(&format!("/blocks/{}/", block::RAW))
            })
            .collect();
        out.extend(
            snap.segments
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.index.overlaps(start_ms, end_ms)),
        );
        Ok(out)
    }

    /// Reads `sources` (later ones win duplicates) for series matching
    /// `matchers` (all series when empty) whose id lies in `ids` (when given),
    /// with samples in `[start_ms, end_ms]`.
    pub async fn read(
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

        // (labels) -> (timestamp, source position, row order, value)
        let mut by_series: HashMap<&Labels, Vec<(i64, usize, usize, f64)>> = HashMap::new();
        let mut row = 0usize;
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
                .ctx
                .read_table(Arc::new(table))?
                .filter(filter)?
                .select_columns(&[COL_SERIES, COL_CHUNK, COL_CHECKSUM, COL_SEGMENT])?
                .collect()
                .await?;
            let mut samples = Vec::new();
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
                    samples.clear();
                    block::verify_chunk(chunks.value(i), sums.value(i)).map_err(corrupt)?;
                    chunk::decode(chunks.value(i), &mut samples)
                        .map_err(|e| corrupt(e.to_string()))?;
                    let entry = by_series.entry(labels).or_default();
                    for x in samples.iter().filter(|x| start_ms <= x.t && x.t <= end_ms) {
                        row += 1;
                        entry.push((x.t, pos, row, x.v));
                    }
                }
            }
        }

        if !seg_files.is_empty() {
            let table = SegmentTable::new(self.url.clone(), seg_files);
            let filter = id_filter().and(col(COL_TIMESTAMP).between(lit(start_ms), lit(end_ms)));
            let batches = self
                .ctx
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
                for i in 0..b.num_rows() {
                    row += 1;
                    let Some(&pos) = seg_pos.get(file.value(i) as usize) else {
                        continue;
                    };
                    let t = ts.value(i);
                    if sources[pos].skips(t) {
                        continue; // a block holds it
                    }
                    let Some(labels) = labels_for(pos, sid.value(i)) else {
                        continue;
                    };
                    by_series
                        .entry(labels)
                        .or_default()
                        .push((t, pos, row, vs.value(i)));
                }
            }
        }

        let mut out: Vec<Series> = by_series
            .into_iter()
            .filter_map(|(labels, mut pts)| {
                pts.sort_unstable_by_key(|&(t, pos, row, _)| (t, pos, row));
                let mut samples: Vec<Sample> = Vec::with_capacity(pts.len());
                for (t, _, _, v) in pts {
                    match samples.last_mut() {
                        Some(last) if last.t == t => last.v = v, // newer write wins
                        _ => samples.push(Sample::new(t, v)),
                    }
                }
                (!samples.is_empty()).then(|| Series {
                    labels: labels.clone(),
                    samples,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of series that match any of the matcher sets (all series when
    /// `matcher_sets` is empty) in blocks and segments overlapping the range,
    /// sorted. Answered from series indexes alone, without reading samples.
    pub async fn series(
        &self,
        tenant: &TenantId,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>> {
        let sources = self.sources(tenant, start_ms, end_ms).await?;
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
        if let Ok(mut m) = self.manifests.lock() {
            let slot = m.entry(tenant.clone()).or_default();
            if v.version >= slot.version {
                *slot = v.clone();
            }
        }
    }

    /// The tenant's live blocks and not fully replaced segments at the newest
    /// manifest version.
    pub async fn snapshot(&self, tenant: &TenantId) -> Result<Snapshot> {
        let manifest = self.manifest(tenant).await?;
        let blocks: Vec<Result<Source>> = futures::stream::iter(manifest.manifest.blocks.clone())
            .map(|b| async move {
                let id = Ulid::from_string(&b.id).map_err(|e| StorageError::Corrupt {
                    key: paths::manifest(tenant, manifest.version).to_string(),
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
            })
            .buffered(FOOTER_CONCURRENCY)
            .collect()
            .await;
        let blocks = blocks.into_iter().collect::<Result<Vec<_>>>()?;

        let prefix = paths::segments_prefix(tenant);
        let mut metas: Vec<(Ulid, ObjectMeta, Option<SegmentEntry>)> = self
            .store
            .list(Some(&prefix))
            .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
            .try_filter_map(|m| {
                let entry = paths::parse_segment(&m.location)
                    .map(|id| (id, manifest.manifest.segment(&id.to_string()).cloned()));
                async move { Ok(entry.map(|(id, e)| (id, m, e))) }
            })
            .try_collect()
            .await?;
        metas.retain(|(_, _, e)| e.as_ref().is_none_or(|e| e.replaced_at.is_none()));
        metas.sort_by_key(|(id, _, _)| *id);
        let segments: Vec<Result<(Ulid, Source)>> = futures::stream::iter(metas)
            .map(|(id, meta, done)| async move {
                let index = self.index(&meta, SourceKind::Segment).await?;
                Ok((
                    id,
                    Source {
                        kind: SourceKind::Segment,
                        meta,
                        index,
                        done,
                    },
                ))
            })
            .buffered(FOOTER_CONCURRENCY)
            .collect()
            .await;
        let segments = segments.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Snapshot {
            manifest,
            blocks,
            segments,
        })
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

    fn cache_index(&self, key: &Path, index: Arc<SegmentIndex>) {
        if let Ok(mut cache) = self.index_cache.lock() {
            if cache.len() >= INDEX_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key.clone(), index);
        }
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

#[cfg(test)]
mod tests;
