//! Direct reads of a block's chunks, without a query plan.
//!
//! A block never changes once written, so what a reader needs to find chunks
//! is loaded once per object ([`BlockChunks::load`]) and kept by the caller:
//! the Parquet footer with its offset index (page locations, so a read
//! fetches only the pages holding the wanted rows) and a directory of every
//! chunk row (series id, first and last timestamp). A read then names the
//! rows it wants ([`BlockChunks::rows`]) and fetches, verifies and decodes
//! exactly those ([`BlockChunks::fetch`]).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use crate::block::{chunk_schema, verify_chunk};
use crate::chunk;
use crate::error::{Result, StorageError};
use crate::sample::Sample;

/// Column positions in [`chunk_schema`].
const SERIES: usize = 0;
const MIN_TIME: usize = 1;
const MAX_TIME: usize = 2;
const CHUNK: usize = 4;
const CHECKSUM: usize = 5;
/// Rows per decoded batch: chunks are large (hundreds of samples each).
const BATCH_ROWS: usize = 4096;
/// Bytes read from the end of a block for its footer in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;
/// Bytes read from the start of a block together with its footer: the
/// directory columns (series, min and max time) come first in the file and
/// are small (delta-encoded), so they are usually inside, and the
/// directory costs no second round trip after the footer.
const HEAD_PREFETCH: u64 = 64 * 1024;

/// What a reader knows about one block before reading any chunk.
#[derive(Debug)]
pub struct BlockChunks {
    key: Path,
    size: u64,
    meta: ArrowReaderMetadata,
    /// Chunk rows in file order, which is (series id, min_time) order.
    series: Vec<u64>,
    min_time: Vec<i64>,
    max_time: Vec<i64>,
}

/// A decoded chunk row of a block. A `Vec` rather than a slice so that
/// decoding writes the samples in their final place (no copy into an
/// `Arc<[_]>`).
pub type DecodedChunk = Arc<Vec<Sample>>;

impl BlockChunks {
    /// Reads the footer (with the offset index) and the directory columns
    /// of the block at `key` (`size` bytes).
    pub async fn load(store: Arc<dyn ObjectStore>, key: &Path, size: u64) -> Result<Self> {
        let name = key.as_ref();
        let options = ArrowReaderOptions::new()
            // Strata knows the schema; the embedded Arrow schema's decoder
            // panics on corrupt bytes (fuzz finding, arrow-ipc 59).
            .with_skip_arrow_metadata(true)
            .with_schema(chunk_schema())
            .with_column_index_policy(PageIndexPolicy::Skip)
            .with_offset_index_policy(PageIndexPolicy::Optional);
        let mut reader = BlockFile::new(store.clone(), key.clone(), size);
        let head_len = size.min(HEAD_PREFETCH);
        let (meta, head) = futures::join!(
            ArrowReaderMetadata::load_async(&mut reader, options),
            store.get_range(key, 0..head_len)
        );
        let meta = meta.map_err(|e| parquet_error(name, e))?;
        // A failed head read only costs the prefetch: ranges are then read
        // as asked (and fail there if the store still fails).
        reader.head = head.ok().filter(|h| h.len() as u64 == head_len);
        let mask = ProjectionMask::roots(
            meta.metadata().file_metadata().schema_descr(),
            [SERIES, MIN_TIME, MAX_TIME],
        );
        let batches: Vec<RecordBatch> =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta.clone())
                .with_projection(mask)
                .with_batch_size(64 * 1024)
                .build()
                .map_err(|e| parquet_error(name, e))?
                .try_collect()
                .await
                .map_err(|e| parquet_error(name, e))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let (mut series, mut min_time, mut max_time) = (
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
            Vec::with_capacity(rows),
        );
        for b in &batches {
            series.extend_from_slice(column::<UInt64Array>(b, 0, name)?.values());
            min_time.extend_from_slice(column::<Int64Array>(b, 1, name)?.values());
            max_time.extend_from_slice(column::<Int64Array>(b, 2, name)?.values());
        }
        // Lookups binary-search the series column: a block whose rows are
        // not in series order is corrupt (it would answer wrongly, not fail).
        if let Some(i) = series.windows(2).position(|w| w[0] > w[1]) {
            return Err(corrupt(
                name,
                format!("chunk rows not sorted by series id at row {}", i + 1),
            ));
        }
        Ok(Self {
            key: key.clone(),
            size,
            meta,
            series,
            min_time,
            max_time,
        })
    }

    /// Number of chunk rows.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Approximate memory held (for cache weights).
    pub fn weight(&self) -> usize {
        // The footer is small next to the directory; counted as a page.
        self.series.len() * 24 + 4096
    }

    /// Rows of series `id` whose samples may lie in `[start, end]`, in time order.
    pub fn rows(&self, id: u64, start: i64, end: i64) -> impl Iterator<Item = usize> + '_ {
        let from = self.series.partition_point(|&s| s < id);
        let to = from + self.series[from..].partition_point(|&s| s == id);
        (from..to).filter(move |&r| self.max_time[r] >= start && self.min_time[r] <= end)
    }

    /// Fetches `rows` (ascending, each once), checks each chunk against its
    /// checksum and decodes it. Returns the chunks in the order of `rows`.
    /// Only the pages holding those rows are read.
    pub async fn fetch(
        &self,
        store: Arc<dyn ObjectStore>,
        rows: &[usize],
    ) -> Result<Vec<DecodedChunk>> {
        let name = self.key.as_ref();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows[rows.len() - 1] >= self.len() {
            return Err(StorageError::Encode(format!(
                "block {name}: chunk rows must be ascending and below {}",
                self.len()
            )));
        }
        let selection =
            RowSelection::from_consecutive_ranges(consecutive(rows).into_iter(), self.len());
        let mask = ProjectionMask::roots(
            self.meta.metadata().file_metadata().schema_descr(),
            [CHUNK, CHECKSUM],
        );
        let reader = BlockFile::new(store, self.key.clone(), self.size);
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.meta.clone())
                .with_projection(mask)
                .with_row_selection(selection)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| parquet_error(name, e))?;
        let mut out = Vec::with_capacity(rows.len());
        // Chunks of a block mostly hold the same number of samples.
        let mut hint = 0;
        while let Some(b) = stream
            .try_next()
            .await
            .map_err(|e| parquet_error(name, e))?
        {
            let chunks = column::<BinaryArray>(&b, 0, name)?;
            let sums = column::<UInt32Array>(&b, 1, name)?;
            for i in 0..b.num_rows() {
                let row = rows.get(out.len()).copied().unwrap_or_default();
                let bytes = chunks.value(i);
                verify_chunk(bytes, sums.value(i))
                    .map_err(|r| corrupt(name, format!("row {row}: {r}")))?;
                let mut samples = Vec::with_capacity(hint);
                chunk::decode(bytes, &mut samples)
                    .map_err(|e| corrupt(name, format!("row {row}: {e}")))?;
                hint = samples.len();
                out.push(DecodedChunk::new(samples));
            }
        }
        if out.len() != rows.len() {
            return Err(corrupt(
                name,
                format!("{} chunk rows read, {} selected", out.len(), rows.len()),
            ));
        }
        Ok(out)
    }
}

/// A block object as the Parquet reader's input: ranged reads through the
/// storage's object store (and so through the query cache).
struct BlockFile {
    store: Arc<dyn ObjectStore>,
    key: Path,
    size: u64,
    /// The object's first bytes, when prefetched: ranges inside are served
    /// from here.
    head: Option<Bytes>,
}

impl BlockFile {
    fn new(store: Arc<dyn ObjectStore>, key: Path, size: u64) -> Self {
        Self {
            store,
            key,
            size,
            head: None,
        }
    }

    /// `range` from the prefetched head, if it lies inside.
    fn head_range(&self, range: &Range<u64>) -> Option<Bytes> {
        let head = self.head.as_ref()?;
        let (start, end) = (
            usize::try_from(range.start).ok()?,
            usize::try_from(range.end).ok()?,
        );
        (start <= end && end <= head.len()).then(|| head.slice(start..end))
    }
}

impl AsyncFileReader for BlockFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            if let Some(b) = self.head_range(&range) {
                return Ok(b);
            }
            Ok(self.store.get_range(&self.key, range).await?)
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            let held: Option<Vec<Bytes>> = ranges.iter().map(|r| self.head_range(r)).collect();
            if let Some(held) = held {
                return Ok(held);
            }
            Ok(self.store.get_ranges(&self.key, &ranges).await?)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let mut reader = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .with_metadata_options(options.map(|o| o.metadata_options().clone()));
            if let Some(o) = options {
                reader = reader
                    .with_column_index_policy(o.column_index_policy())
                    .with_offset_index_policy(o.offset_index_policy());
            }
            let size = self.size;
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        })
    }
}

/// Ascending row numbers as ranges of consecutive rows.
fn consecutive(rows: &[usize]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some(last) if last.end == r => last.end = r + 1,
            _ => out.push(r..r + 1),
        }
    }
    out
}

/// A parquet error: the store failing (retry the query) or the bytes being
/// bad (the object is corrupt).
fn parquet_error(key: &str, e: ParquetError) -> StorageError {
    match e {
        ParquetError::External(inner) => match inner.downcast::<object_store::Error>() {
            Ok(source) => StorageError::store("get_range", key, *source),
            Err(other) => corrupt(key, other.to_string()),
        },
        other => corrupt(key, other.to_string()),
    }
}

fn corrupt(key: &str, reason: String) -> StorageError {
    StorageError::Corrupt {
        key: key.to_string(),
        reason,
    }
}

fn column<'a, T: Array + 'static>(b: &'a RecordBatch, i: usize, key: &str) -> Result<&'a T> {
    b.columns()
        .get(i)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .filter(|c| c.null_count() == 0)
        .ok_or_else(|| corrupt(key, format!("column {i} missing, mistyped or with nulls")))
}
