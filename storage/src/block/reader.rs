//! Direct reads of a block's chunks, without a query plan.
//!
//! A block never changes once written, so what a reader needs to find chunks
//! is loaded once per object ([`BlockChunks::load`]) and kept by the caller:
//! the Parquet footer with its offset index (page locations, so a read
//! fetches only the pages holding the wanted rows) and a directory of every
//! chunk row (series id, first and last timestamp). A read then names the
//! rows it wants ([`BlockChunks::rows`]) and fetches, verifies and decodes
//! exactly those ([`BlockChunks::fetch`]), or fetches and verifies them
//! and leaves decoding to the caller ([`BlockChunks::fetch_encoded`]:
//! large reads decode straight into the samples they hand on).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::buffer::Buffer;
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

/// A chunk row fetched and checked against its checksum, not yet decoded.
/// Its bytes share the fetched page's buffer (no copy).
#[derive(Clone, Debug)]
pub struct EncodedChunk {
    bytes: Buffer,
    /// The row in its block (for error messages).
    pub row: usize,
    /// First and last timestamp, from the block's directory.
    pub min_time: i64,
    pub max_time: i64,
}

impl EncodedChunk {
    /// A chunk of `bytes` (unchecked: for tests of readers).
    #[cfg(test)]
    pub(crate) fn new(bytes: Vec<u8>, row: usize, min_time: i64, max_time: i64) -> Self {
        Self {
            bytes: Buffer::from_vec(bytes),
            row,
            min_time,
            max_time,
        }
    }

    /// Samples in the chunk, from its header (0 when the header is
    /// unreadable: decoding then fails and says why).
    pub fn samples(&self) -> usize {
        chunk::sample_count(&self.bytes).unwrap_or(0)
    }

    /// Appends the chunk's samples to `out` (left as it was on error).
    pub fn decode_into(&self, out: &mut Vec<Sample>) -> Result<(), chunk::ChunkError> {
        chunk::decode(&self.bytes, out)
    }

    pub fn decode(&self) -> Result<DecodedChunk, chunk::ChunkError> {
        let mut samples = Vec::with_capacity(self.samples());
        self.decode_into(&mut samples)?;
        Ok(DecodedChunk::new(samples))
    }
}

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

    /// The block's object key.
    pub fn key(&self) -> &Path {
        &self.key
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
        self.fetch_encoded(store, rows)
            .await?
            .iter()
            .map(|c| {
                c.decode()
                    .map_err(|e| corrupt(name, format!("row {}: {e}", c.row)))
            })
            .collect()
    }

    /// [`BlockChunks::fetch`] without decoding: each chunk checked against
    /// its checksum, in the order of `rows`.
    pub async fn fetch_encoded(
        &self,
        store: Arc<dyn ObjectStore>,
        rows: &[usize],
    ) -> Result<Vec<EncodedChunk>> {
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
        // Rows the reader gave (more than selected means corrupt offsets).
        let mut seen = 0usize;
        while let Some(b) = stream
            .try_next()
            .await
            .map_err(|e| parquet_error(name, e))?
        {
            let chunks = column::<BinaryArray>(&b, 0, name)?;
            let sums = column::<UInt32Array>(&b, 1, name)?;
            let (values, offsets) = (chunks.values(), chunks.value_offsets());
            seen += b.num_rows();
            for i in 0..b.num_rows() {
                let Some(&row) = rows.get(out.len()) else {
                    break; // more rows than selected: reported below
                };
                verify_chunk(chunks.value(i), sums.value(i))
                    .map_err(|r| corrupt(name, format!("row {row}: {r}")))?;
                // `value(i)` succeeded, so the offsets are valid.
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                out.push(EncodedChunk {
                    bytes: values.slice_with_length(from, to - from),
                    row,
                    min_time: self.min_time[row],
                    max_time: self.max_time[row],
                });
            }
        }
        if seen != rows.len() {
            return Err(corrupt(
                name,
                format!("{seen} chunk rows read, {} selected", rows.len()),
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
