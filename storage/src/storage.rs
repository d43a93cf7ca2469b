//! The storage facade: write a batch of series as one segment, and read series
//! back by matchers and time range. Everything above the object store goes
//! through this type.
//!
//! Reads: list the tenant's segments, read each one's series index from its
//! footer (cached: segments are immutable), keep the segments that overlap the
//! time range and hold a matching series, then let DataFusion scan only those
//! files for only those series ids and timestamps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, Float64Array, Int64Array, UInt32Array, UInt64Array};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{SessionContext, col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use tracing::debug;
use ulid::Ulid;

use crate::error::{Result, StorageError};
use crate::labels::{Labels, SeriesId};
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

/// A segment that a read will look at.
struct Candidate {
    meta: ObjectMeta,
    index: Arc<SegmentIndex>,
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
    /// if the values differ, the value from the newest segment wins.
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>> {
        let candidates = self.candidates(tenant, start_ms, end_ms).await?;
        // Per file position: matched series id -> labels.
        let mut files = Vec::new();
        let mut labels_of: Vec<HashMap<SeriesId, Labels>> = Vec::new();
        let mut ids: HashSet<SeriesId> = HashSet::new();
        for c in &candidates {
            let matched: HashMap<SeriesId, Labels> = c
                .index
                .series
                .iter()
                .filter(|s| matches_all(matchers, &s.labels))
                .map(|s| (s.id, s.labels.clone()))
                .collect();
            if matched.is_empty() {
                continue;
            }
            ids.extend(matched.keys().copied());
            files.push(SegmentFile {
                key: c.meta.location.to_string(),
                size: c.meta.size,
            });
            labels_of.push(matched);
        }
        if files.is_empty() {
            return Ok(Vec::new());
        }

        let table = SegmentTable::new(self.url.clone(), files);
        let mut id_list: Vec<SeriesId> = ids.into_iter().collect();
        id_list.sort_unstable();
        let filter = col(COL_SERIES)
            .in_list(id_list.into_iter().map(lit).collect(), false)
            .and(col(COL_TIMESTAMP).between(lit(start_ms), lit(end_ms)));
        let batches = self
            .ctx
            .read_table(Arc::new(table))?
            .filter(filter)?
            .select_columns(&[COL_SERIES, COL_TIMESTAMP, COL_VALUE, COL_SEGMENT])?
            .collect()
            .await?;

        // (labels) -> (timestamp, file position, row order, value)
        let mut by_series: HashMap<&Labels, Vec<(i64, u32, usize, f64)>> = HashMap::new();
        let mut row = 0usize;
        for b in &batches {
            let corrupt = |what: &str| StorageError::Corrupt {
                key: "scan".into(),
                reason: format!("column {what} has the wrong type"),
            };
            let sid = b
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| corrupt(COL_SERIES))?;
            let ts = b
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| corrupt(COL_TIMESTAMP))?;
            let vs = b
                .column(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| corrupt(COL_VALUE))?;
            let seg = b
                .column(3)
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| corrupt(COL_SEGMENT))?;
            for i in 0..b.num_rows() {
                row += 1;
                let pos = seg.value(i);
                let Some(labels) = labels_of
                    .get(pos as usize)
                    .and_then(|m| m.get(&sid.value(i)))
                else {
                    continue; // an id that matched in another file only
                };
                by_series
                    .entry(labels)
                    .or_default()
                    .push((ts.value(i), pos, row, vs.value(i)));
            }
        }

        let mut out: Vec<Series> = by_series
            .into_iter()
            .map(|(labels, mut pts)| {
                pts.sort_unstable_by_key(|&(t, pos, row, _)| (t, pos, row));
                let mut samples: Vec<Sample> = Vec::with_capacity(pts.len());
                for (t, _, _, v) in pts {
                    match samples.last_mut() {
                        Some(last) if last.t == t => last.v = v, // newer write wins
                        _ => samples.push(Sample::new(t, v)),
                    }
                }
                Series {
                    labels: labels.clone(),
                    samples,
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of series that match any of the matcher sets (all series when
    /// `matcher_sets` is empty) in segments overlapping the range, sorted.
    /// Answered from segment indexes alone, without reading samples.
    pub async fn series(
        &self,
        tenant: &TenantId,
        matcher_sets: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>> {
        let candidates = self.candidates(tenant, start_ms, end_ms).await?;
        let mut out: HashSet<&Labels> = HashSet::new();
        for c in &candidates {
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

    /// Segments of `tenant` whose time range overlaps `[start_ms, end_ms]`,
    /// oldest first.
    async fn candidates(
        &self,
        tenant: &TenantId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Candidate>> {
        let prefix = paths::segments_prefix(tenant);
        let mut metas: Vec<(Ulid, ObjectMeta)> = self
            .store
            .list(Some(&prefix))
            .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
            .try_filter_map(
                |m| async move { Ok(paths::parse_segment(&m.location).map(|id| (id, m))) },
            )
            .try_collect()
            .await?;
        metas.sort_by_key(|(id, _)| *id);
        let indexes: Vec<Result<Candidate>> = futures::stream::iter(metas)
            .map(|(_, meta)| async move {
                let index = self.index(&meta).await?;
                Ok(Candidate { meta, index })
            })
            .buffered(FOOTER_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::new();
        for c in indexes {
            let c = c?;
            if c.index.overlaps(start_ms, end_ms) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The series index of a segment, from the cache or its footer.
    async fn index(&self, meta: &ObjectMeta) -> Result<Arc<SegmentIndex>> {
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
        let index = Arc::new(segment::decode_index(
            &key,
            md.file_metadata().key_value_metadata(),
        )?);
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

#[cfg(test)]
mod tests;
