//! The block format: one immutable Parquet object per (tenant, time partition,
//! resolution), written by the compactor from segments (and older blocks).
//!
//! Rows are chunks, not samples: `(series_id, min_time, max_time, samples,
//! chunk, checksum)`, sorted by series then time, where `chunk` holds one
//! series' samples over at most one chunk range (see [`crate::chunk`] for its
//! lossless encoding) and `checksum` lets every reader detect a corrupt
//! chunk before decoding it ([`verify_chunk`]). The footer carries the same series index as a segment
//! (label sets by id, time range, sample count) plus the partition and the
//! resolution, so a reader picks series by matchers and chunks by time from
//! the footer and Parquet statistics without touching samples. See
//! `docs/format/block.md`.

use std::sync::Arc;

use arrow::array::{BinaryBuilder, Int64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::chunk;
use crate::error::{Result, StorageError};
use crate::sample::Series;
use crate::segment::{self, IndexedSeries, SegmentIndex};

/// Value of the `strata.format` key: identifies a Strata block.
pub const FORMAT_MAGIC: &str = "strata-block";
/// Value of the `strata.format_version` key written by this code.
pub const FORMAT_VERSION: u32 = 1;

const KEY_PARTITION: &str = "strata.partition";
const KEY_RESOLUTION: &str = "strata.resolution";

pub const COL_SERIES: &str = "series_id";
pub const COL_MIN_TIME: &str = "min_time";
pub const COL_MAX_TIME: &str = "max_time";
pub const COL_SAMPLES: &str = "samples";
pub const COL_CHUNK: &str = "chunk";
pub const COL_CHECKSUM: &str = "checksum";

/// Resolution name of blocks holding raw (not downsampled) samples.
pub const RAW: &str = "raw";

/// Arrow schema of a block's chunk rows.
pub fn chunk_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(COL_SERIES, DataType::UInt64, false),
        Field::new(COL_MIN_TIME, DataType::Int64, false),
        Field::new(COL_MAX_TIME, DataType::Int64, false),
        Field::new(COL_SAMPLES, DataType::UInt32, false),
        Field::new(COL_CHUNK, DataType::Binary, false),
        Field::new(COL_CHECKSUM, DataType::UInt32, false),
    ]))
}

/// Checksum of a chunk's bytes: the low 32 bits of xxh3-64. Parquet (as
/// written by the parquet crate) has no page checksums, and zstd frames
/// carry none either, so without it a flipped bit could decode to a wrong
/// value instead of an error.
pub fn chunk_checksum(chunk: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(chunk) as u32
}

/// Checks a chunk against its stored checksum.
pub fn verify_chunk(chunk: &[u8], checksum: u32) -> Result<(), String> {
    let actual = chunk_checksum(chunk);
    if actual == checksum {
        Ok(())
    } else {
        Err(format!(
            "chunk checksum mismatch: stored {checksum:08x}, computed {actual:08x}"
        ))
    }
}

/// How a block is cut and compressed.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockOptions {
    /// The partition `[start, end)` the block covers; every sample lies in it.
    pub partition_start: i64,
    pub partition_end: i64,
    /// `raw`, or a downsampled resolution such as `5m`.
    pub resolution: String,
    /// Chunks of a series are cut at multiples of this (ms), so a query over
    /// part of a long block decodes only the chunks it needs.
    pub chunk_range_ms: i64,
    /// zstd level of the chunk column (blocks are written once, read often).
    pub zstd_level: i32,
}

/// What a block holds, from its footer.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockInfo {
    pub index: SegmentIndex,
    pub partition_start: i64,
    pub partition_end: i64,
    pub resolution: String,
}

/// Encodes `series` (each with samples sorted by time, one per timestamp,
/// all inside the partition; label sets distinct) as block bytes.
pub fn encode(series: &[Series], opts: &BlockOptions) -> Result<(Bytes, SegmentIndex)> {
    let mut w = BlockWriter::new(opts.clone())?;
    w.write(series)?;
    w.finish()
}

/// Writes a block a slice of series at a time, so the compactor can build a
/// large block from series-id ranges without holding all of its samples.
/// Calls to [`BlockWriter::write`] must come in increasing series-id order
/// (each call's ids above the previous call's).
pub struct BlockWriter {
    opts: BlockOptions,
    writer: ArrowWriter<Vec<u8>>,
    min_time: i64,
    max_time: i64,
    samples: u64,
    series: Vec<IndexedSeries>,
    last_id: Option<u64>,
    buf: Vec<u8>,
}

fn enc(e: impl ToString) -> StorageError {
    StorageError::Encode(e.to_string())
}

impl BlockWriter {
    pub fn new(opts: BlockOptions) -> Result<Self> {
        if opts.chunk_range_ms <= 0 || opts.partition_end <= opts.partition_start {
            return Err(StorageError::Encode(format!(
                "bad block options: chunk range {} ms, partition [{}, {})",
                opts.chunk_range_ms, opts.partition_start, opts.partition_end
            )));
        }
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(opts.zstd_level).map_err(enc)?,
            ))
            .set_dictionary_enabled(false);
        for c in [COL_SERIES, COL_MIN_TIME, COL_MAX_TIME] {
            props = props.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
        }
        let writer =
            ArrowWriter::try_new(Vec::new(), chunk_schema(), Some(props.build())).map_err(enc)?;
        Ok(Self {
            opts,
            writer,
            min_time: i64::MAX,
            max_time: i64::MIN,
            samples: 0,
            series: Vec::new(),
            last_id: None,
            buf: Vec::new(),
        })
    }

    /// Adds `series` (any order within the call; empty ones are skipped).
    pub fn write(&mut self, series: &[Series]) -> Result<()> {
        let mut order: Vec<(u64, &Series)> = series
            .iter()
            .filter(|s| !s.samples.is_empty())
            .map(|s| (s.labels.series_id(), s))
            .collect();
        order.sort_unstable_by_key(|&(id, _)| id);
        if let (Some(last), Some(&(first, _))) = (self.last_id, order.first())
            && first <= last
        {
            return Err(StorageError::Encode(format!(
                "block series written out of order: id {first} after {last}"
            )));
        }
        let (mut ids, mut mins, mut maxs, mut counts) = (vec![], vec![], vec![], vec![]);
        let mut sums = Vec::new();
        let mut chunks = BinaryBuilder::new();
        let range = self.opts.chunk_range_ms;
        for (id, s) in &order {
            if self.last_id == Some(*id) {
                return Err(StorageError::Encode(format!(
                    "series id {id} written twice"
                )));
            }
            self.last_id = Some(*id);
            self.series.push(IndexedSeries {
                id: *id,
                labels: s.labels.clone(),
            });
            let mut rest = &s.samples[..];
            while let Some(first) = rest.first() {
                let range_end = first
                    .t
                    .div_euclid(range)
                    .saturating_add(1)
                    .saturating_mul(range);
                let n = rest.partition_point(|x| x.t < range_end).max(1);
                let (part, tail) = rest.split_at(n);
                rest = tail;
                self.buf.clear();
                chunk::encode(part, &mut self.buf);
                chunks.append_value(&self.buf);
                sums.push(chunk_checksum(&self.buf));
                let (lo, hi) = (part[0].t, part[part.len() - 1].t);
                ids.push(*id);
                mins.push(lo);
                maxs.push(hi);
                counts.push(u32::try_from(part.len()).unwrap_or(u32::MAX));
                self.min_time = self.min_time.min(lo);
                self.max_time = self.max_time.max(hi);
                self.samples += part.len() as u64;
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            chunk_schema(),
            vec![
                Arc::new(UInt64Array::from(ids)),
                Arc::new(Int64Array::from(mins)),
                Arc::new(Int64Array::from(maxs)),
                Arc::new(UInt32Array::from(counts)),
                Arc::new(chunks.finish()),
                Arc::new(UInt32Array::from(sums)),
            ],
        )
        .map_err(enc)?;
        self.writer.write(&batch).map_err(enc)
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Writes the footer and returns the block's bytes and series index.
    pub fn finish(mut self) -> Result<(Bytes, SegmentIndex)> {
        let (min_time, max_time) = if self.samples == 0 {
            (0, 0)
        } else {
            (self.min_time, self.max_time)
        };
        let index = SegmentIndex {
            min_time,
            max_time,
            samples: self.samples,
            series: std::mem::take(&mut self.series),
        };
        let mut footer = segment::footer_entries(FORMAT_MAGIC, FORMAT_VERSION, &index)?;
        footer.push(KeyValue::new(
            KEY_PARTITION.to_string(),
            format!("{},{}", self.opts.partition_start, self.opts.partition_end),
        ));
        footer.push(KeyValue::new(
            KEY_RESOLUTION.to_string(),
            self.opts.resolution.clone(),
        ));
        for kv in footer {
            self.writer.append_key_value_metadata(kv);
        }
        let out = self.writer.into_inner().map_err(enc)?;
        Ok((Bytes::from(out), index))
    }
}

/// Reads a block's footer: series index, partition and resolution. `key` is
/// only used in error messages.
pub fn decode_info(key: &str, kv: Option<&Vec<KeyValue>>) -> Result<BlockInfo> {
    let index = segment::decode_footer_index(key, kv, FORMAT_MAGIC, FORMAT_VERSION)?;
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let kv = kv.map(Vec::as_slice).unwrap_or_default();
    let partition = segment::footer_value(kv, KEY_PARTITION)
        .ok_or_else(|| corrupt(format!("{KEY_PARTITION} missing")))?;
    let (start, end) = partition
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
        .ok_or_else(|| corrupt(format!("bad {KEY_PARTITION} {partition:?}")))?;
    let resolution = segment::footer_value(kv, KEY_RESOLUTION)
        .ok_or_else(|| corrupt(format!("{KEY_RESOLUTION} missing")))?
        .to_string();
    Ok(BlockInfo {
        index,
        partition_start: start,
        partition_end: end,
        resolution,
    })
}

pub mod reader;

#[cfg(test)]
mod tests;
