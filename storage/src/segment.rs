//! The segment format: one immutable Parquet object per group commit.
//!
//! Rows are samples `(series_id u64, timestamp i64 ms, value f64)` sorted by
//! series then time; the label sets of the series, the time range and the
//! format version live in the Parquet footer's key-value metadata, so one
//! footer read tells a reader which series a segment holds and when, without
//! touching samples. Since version 2 the footer also carries a checksum of
//! the whole object ([`seal`], [`verify`]), so a reader that fetched a whole
//! segment ([`read`]) refuses a corrupt one before using any of it, and the
//! series index is a zstd frame with its own content checksum, so footer-only
//! readers ([`decode_index`]) refuse a corrupt index too. Since version 3
//! the index stores each label name once and no series ids (readers derive
//! them), which halves what each put compresses. See
//! `docs/format/segment.md`.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnPath;

use crate::error::{Result, StorageError, panic_message};
use crate::labels::{Labels, SeriesId};
use crate::sample::{Sample, Series};
use crate::segment_index::{self, Layout};

/// Value of the `strata.format` key: identifies a Strata segment.
pub const FORMAT_MAGIC: &str = "strata-segment";
/// Value of the `strata.format_version` key written by this code.
/// Version 2 added the whole-object checksum and the index's zstd checksum;
/// version 3 the index's name-table layout ([`segment_index::Layout`]).
pub const FORMAT_VERSION: u32 = 3;
/// Versions this code reads: older segments stay readable until the
/// compactor has replaced them.
const READ_VERSIONS: [u32; 3] = [1, 2, 3];

const KEY_FORMAT: &str = "strata.format";
const KEY_VERSION: &str = "strata.format_version";
const KEY_INDEX: &str = "strata.series_index";
/// Footer key of the whole-object checksum (version 2): 16 lowercase hex
/// digits of xxh3-64 over the object with these digits read as `0`s.
const KEY_CHECKSUM: &str = "strata.checksum";
const CHECKSUM_PLACEHOLDER: &[u8; 16] = b"0000000000000000";
/// How the Thrift compact protocol writes the `value` field of a footer
/// `KeyValue` that follows its `key` field and holds 16 bytes: field header
/// (id delta 1, type binary) and length. Locating the checksum by bytes,
/// without parsing the footer, lets the check come before any parsing.
const THRIFT_VALUE_OF_16: [u8; 2] = [0x18, 0x10];
/// Parquet's trailer: footer length (u32 LE) and the magic.
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// zstd level of a segment's series index: label sets are very repetitive,
/// so level 1 already shrinks them about as much as 3 did, at about half the
/// CPU (every segment carries the labels of all its series, which made the
/// index the largest single cost of writing a segment).
const SEGMENT_INDEX_ZSTD_LEVEL: i32 = 1;
/// zstd level of a block's series index: a block is written once by the
/// compactor and kept for years, so its size counts more than the CPU.
const BLOCK_INDEX_ZSTD_LEVEL: i32 = 3;
/// Largest decompressed series index a reader accepts (a corrupt or hostile
/// footer must not make a reader allocate without bound).
const MAX_INDEX_BYTES: usize = 1 << 30;

pub const COL_SERIES: &str = "series_id";
pub const COL_TIMESTAMP: &str = "timestamp";
pub const COL_VALUE: &str = "value";

/// Arrow schema of a segment's sample rows.
pub fn sample_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(COL_SERIES, DataType::UInt64, false),
        Field::new(COL_TIMESTAMP, DataType::Int64, false),
        Field::new(COL_VALUE, DataType::Float64, false),
    ]))
}

/// What a segment holds, read from its footer.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentIndex {
    pub min_time: i64,
    pub max_time: i64,
    pub samples: u64,
    /// Series in id order.
    pub series: Vec<IndexedSeries>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IndexedSeries {
    pub id: SeriesId,
    pub labels: Labels,
}

impl SegmentIndex {
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.samples > 0 && self.min_time <= end_ms && self.max_time >= start_ms
    }
}

/// Encodes a batch of series into segment bytes. Samples of one series may come
/// in any order and from several entries with the same labels; they are sorted
/// by time. Duplicate timestamps are kept (readers deduplicate), so a segment
/// never drops what a client sent.
pub fn encode(series: &[Series]) -> Result<(Bytes, SegmentIndex)> {
    let (rows, index) = sorted_rows(series);
    let batch = RecordBatch::try_new(
        sample_schema(),
        vec![
            Arc::new(UInt64Array::from(rows.ids)),
            Arc::new(Int64Array::from(rows.ts)),
            Arc::new(Float64Array::from(rows.vs)),
        ],
    )
    .map_err(|e| StorageError::Encode(e.to_string()))?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).map_err(|e| StorageError::Encode(e.to_string()))?,
        ))
        .set_column_encoding(
            ColumnPath::from(COL_TIMESTAMP),
            Encoding::DELTA_BINARY_PACKED,
        )
        .set_column_dictionary_enabled(ColumnPath::from(COL_TIMESTAMP), false)
        .set_column_encoding(ColumnPath::from(COL_VALUE), Encoding::BYTE_STREAM_SPLIT)
        .set_column_dictionary_enabled(ColumnPath::from(COL_VALUE), false)
        .set_key_value_metadata(Some(segment_footer(&index)?))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, sample_schema(), Some(props))
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    writer
        .write(&batch)
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    writer
        .close()
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    seal("(new segment)", &mut buf)?;
    Ok((Bytes::from(buf), index))
}

/// A batch's sample columns in row order.
struct Rows {
    ids: Vec<SeriesId>,
    ts: Vec<i64>,
    vs: Vec<f64>,
}

/// The rows of a segment, sorted by (series id, time) with equal timestamps
/// in arrival order, and its index. Equivalent to a stable sort of all rows,
/// but sorts entries, not rows: a batch holds each series' samples in a few
/// entries that are already in time order, so rows are copied once and only
/// a series whose samples arrive out of order sorts its own rows.
fn sorted_rows(series: &[Series]) -> (Rows, SegmentIndex) {
    let total: usize = series.iter().map(|s| s.samples.len()).sum();
    // (id, position): unique keys, so an unstable sort keeps entries of one
    // series in arrival order.
    let mut order: Vec<(SeriesId, usize)> = series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.samples.is_empty())
        .map(|(i, s)| (s.labels.series_id(), i))
        .collect();
    order.sort_unstable();
    let mut rows = Rows {
        ids: Vec::with_capacity(total),
        ts: Vec::with_capacity(total),
        vs: Vec::with_capacity(total),
    };
    let mut index_series = Vec::new();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut scratch: Vec<(i64, f64)> = Vec::new();
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        let (id, first) = group[0];
        // Label sets are shared (`Labels` clones are reference counts).
        index_series.push(IndexedSeries {
            id,
            labels: series[first].labels.clone(),
        });
        let start = rows.ts.len();
        for &(_, i) in group {
            for x in &series[i].samples {
                rows.ts.push(x.t);
                rows.vs.push(x.v);
            }
        }
        let (ts, vs) = (&mut rows.ts[start..], &mut rows.vs[start..]);
        if !ts.is_sorted() {
            scratch.clear();
            scratch.extend(ts.iter().copied().zip(vs.iter().copied()));
            scratch.sort_by_key(|&(t, _)| t); // stable
            for (k, &(t, v)) in scratch.iter().enumerate() {
                ts[k] = t;
                vs[k] = v;
            }
        }
        if let (Some(&lo), Some(&hi)) = (ts.first(), ts.last()) {
            min_time = min_time.min(lo);
            max_time = max_time.max(hi);
        }
        rows.ids.resize(rows.ts.len(), id);
    }
    if total == 0 {
        (min_time, max_time) = (0, 0);
    }
    let index = SegmentIndex {
        min_time,
        max_time,
        samples: total as u64,
        series: index_series,
    };
    (rows, index)
}

/// The footer entries of a segment written by this code: magic, version,
/// series index (a zstd frame with a content checksum) and the checksum
/// placeholder that [`seal`] fills in.
fn segment_footer(index: &SegmentIndex) -> Result<Vec<KeyValue>> {
    Ok(vec![
        KeyValue::new(KEY_FORMAT.to_string(), FORMAT_MAGIC.to_string()),
        KeyValue::new(KEY_VERSION.to_string(), FORMAT_VERSION.to_string()),
        KeyValue::new(
            KEY_INDEX.to_string(),
            encode_index(index, Layout::NameTable, true, SEGMENT_INDEX_ZSTD_LEVEL)?,
        ),
        KeyValue::new(
            KEY_CHECKSUM.to_string(),
            String::from_utf8_lossy(CHECKSUM_PLACEHOLDER).into_owned(),
        ),
    ])
}

/// Where the checksum digits of a segment (version 2 and later) are: the one place in
/// the footer where the key `strata.checksum` is followed by a 16-byte
/// value. An error says why there is no such place.
fn checksum_slot(bytes: &[u8]) -> Result<Range<usize>, String> {
    let n = bytes.len();
    if n < 12 || &bytes[..4] != PARQUET_MAGIC || &bytes[n - 4..] != PARQUET_MAGIC {
        return Err(format!("not a Parquet object ({n} bytes, magic missing)"));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[n - 8..n - 4]);
    let footer_len = u32::from_le_bytes(len) as usize;
    let footer_start = (n - 8)
        .checked_sub(footer_len)
        .filter(|&s| s >= 4)
        .ok_or_else(|| format!("footer length {footer_len} exceeds object size {n}"))?;
    let footer = &bytes[footer_start..n - 8];
    let mut pattern = KEY_CHECKSUM.as_bytes().to_vec();
    pattern.extend_from_slice(&THRIFT_VALUE_OF_16);
    // A SIMD substring search: the footer holds the whole series index, and
    // comparing at every position was a visible share of ingest CPU.
    let mut found = memchr::memmem::find_iter(footer, &pattern);
    let (Some(at), None) = (found.next(), found.next()) else {
        return Err(format!("no single {KEY_CHECKSUM} entry in the footer"));
    };
    let start = footer_start + at + pattern.len();
    let end = start + CHECKSUM_PLACEHOLDER.len();
    if end > n - 8 {
        return Err(format!("{KEY_CHECKSUM} value runs past the footer"));
    }
    Ok(start..end)
}

/// xxh3-64 of `bytes` with the checksum digits at `slot` read as `0`s.
fn object_checksum(bytes: &[u8], slot: &Range<usize>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[..slot.start]);
    h.update(CHECKSUM_PLACEHOLDER);
    h.update(&bytes[slot.end..]);
    h.digest()
}

/// Writes the checksum of a segment (version 2 and later) into its checksum slot. The
/// encoder calls it last; tests and the fuzzer call it to make a mutated
/// object look intact. `key` is only used in error messages.
pub fn seal(key: &str, bytes: &mut [u8]) -> Result<()> {
    let slot = checksum_slot(bytes).map_err(|reason| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    })?;
    let digits = format!("{:016x}", object_checksum(bytes, &slot));
    bytes[slot].copy_from_slice(digits.as_bytes());
    Ok(())
}

/// Checks a whole segment object against its checksum, before any of it is
/// parsed. `Ok(true)`: the checksum matched; `Ok(false)`: the object has no
/// checksum slot, which only a version 1 segment may lack ([`read`] checks
/// the version afterwards). A mismatch is a `Corrupt` error naming `key`.
pub fn verify(key: &str, bytes: &[u8]) -> Result<bool> {
    let Ok(slot) = checksum_slot(bytes) else {
        return Ok(false);
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let digits = &bytes[slot.clone()];
    let stored = std::str::from_utf8(digits)
        .ok()
        .filter(|d| {
            d.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .ok_or_else(|| corrupt(format!("{KEY_CHECKSUM} is not 16 hex digits")))?;
    let actual = object_checksum(bytes, &slot);
    if stored != actual {
        return Err(corrupt(format!(
            "segment checksum mismatch: stored {stored:016x}, computed {actual:016x}"
        )));
    }
    Ok(true)
}

/// Reads a whole segment object: verifies its checksum ([`verify`]) before
/// parsing anything, then decodes the footer and every sample row and checks
/// the rows against the index (count, order, series ids, time range).
/// Returns the index and one entry per series in id order, samples in row
/// order (by time; duplicates kept as written). Any inconsistency is a
/// `Corrupt` error naming `key`; no input makes it panic.
pub fn read(key: &str, bytes: Bytes) -> Result<(SegmentIndex, Vec<Series>)> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let sealed = verify(key, &bytes)?;
    // The embedded Arrow schema is not decoded (arrow-ipc panics on corrupt
    // bytes; fuzz finding): the Parquet schema says all we check below.
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let size = bytes.len() as u64;
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options)
        .map_err(|e| corrupt(format!("parquet: {e}")))?;
    // The Parquet reader asserts (panics) on negative column chunk offsets
    // or sizes (fuzz finding): every chunk must lie inside the object.
    for rg in builder.metadata().row_groups() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(a, b)| a.checked_add(b));
            if end.is_none_or(|e| e > size) {
                return Err(corrupt(format!(
                    "column chunk at {start} of {len} bytes lies outside the object"
                )));
            }
        }
    }
    let (version, index) = check_footer(
        key,
        builder.metadata().file_metadata().key_value_metadata(),
        FORMAT_MAGIC,
        &READ_VERSIONS,
    )?;
    if version >= 2 && !sealed {
        return Err(corrupt(format!("{KEY_CHECKSUM} missing")));
    }
    if builder.schema().fields() != sample_schema().fields() {
        return Err(corrupt(format!(
            "sample columns are {:?}",
            builder.schema().fields()
        )));
    }
    if index.series.windows(2).any(|w| w[0].id >= w[1].id) {
        return Err(corrupt("series index not in id order".into()));
    }
    if let Some(s) = index.series.iter().find(|s| s.labels.series_id() != s.id) {
        return Err(corrupt(format!(
            "series id {} does not match its labels {}",
            s.id, s.labels
        )));
    }
    // The index's sample count is covered by its own zstd checksum, unlike
    // the footer's row counts: bound what decoding may produce by it.
    let footer_rows: i64 = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows())
        .sum();
    if u64::try_from(footer_rows).ok() != Some(index.samples) {
        return Err(corrupt(format!(
            "{footer_rows} sample rows in the row groups, the index says {}",
            index.samples
        )));
    }
    // The Parquet decoders still panic on some corrupt pages (slicing out
    // of bounds; fuzz findings): such a panic is this object's corruption,
    // whoever reads it.
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
        decode_rows(bytes, builder, &index, &corrupt)
    }))
    .unwrap_or_else(|panic| {
        Err(corrupt(format!(
            "parquet decoder panicked: {}",
            panic_message(panic.as_ref()).unwrap_or("no message")
        )))
    })?;
    Ok((index, out))
}

/// Decodes every sample row of a segment whose footer [`read`] has checked,
/// checking the rows against its index.
fn decode_rows(
    bytes: Bytes,
    builder: ParquetRecordBatchReaderBuilder<Bytes>,
    index: &SegmentIndex,
    corrupt: &dyn Fn(String) -> StorageError,
) -> Result<Vec<Series>> {
    check_dictionary_pages(bytes, builder.metadata()).map_err(corrupt)?;
    let reader = builder
        .build()
        .map_err(|e| corrupt(format!("parquet: {e}")))?;
    let mut out: Vec<Series> = Vec::new();
    let mut pos = 0usize; // position in index.series of the current series
    let mut last: Option<(SeriesId, i64)> = None;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(format!("parquet: {e}")))?;
        let col = |i: usize| batch.columns().get(i).map(|c| c.as_any());
        let (Some(ids), Some(ts), Some(vs)) = (
            col(0).and_then(|c| c.downcast_ref::<UInt64Array>()),
            col(1).and_then(|c| c.downcast_ref::<Int64Array>()),
            col(2).and_then(|c| c.downcast_ref::<Float64Array>()),
        ) else {
            return Err(corrupt("sample columns have the wrong types".into()));
        };
        for i in 0..batch.num_rows() {
            let (id, t, v) = (ids.value(i), ts.value(i), vs.value(i));
            if last.is_some_and(|l| l > (id, t)) {
                return Err(corrupt(format!("rows not sorted at series {id} time {t}")));
            }
            if t < index.min_time || t > index.max_time {
                return Err(corrupt(format!(
                    "sample time {t} outside the index's [{}, {}]",
                    index.min_time, index.max_time
                )));
            }
            if last.is_none_or(|(l, _)| l != id) {
                // Rows are sorted, so the series comes at or after `pos`.
                let Some(off) = index.series[pos..].iter().position(|s| s.id == id) else {
                    return Err(corrupt(format!("series id {id} not in the index")));
                };
                pos += off;
                out.push(Series {
                    labels: index.series[pos].labels.clone(),
                    samples: Vec::new(),
                });
            }
            if let Some(s) = out.last_mut() {
                s.samples.push(Sample::new(t, v));
            }
            last = Some((id, t));
            rows += 1;
            if rows > index.samples {
                return Err(corrupt(format!(
                    "more sample rows than the index's {}",
                    index.samples
                )));
            }
        }
    }
    if rows != index.samples {
        return Err(corrupt(format!(
            "{rows} sample rows, the index says {}",
            index.samples
        )));
    }
    Ok(out)
}

/// Refuses dictionary pages that claim more values than their bytes hold.
/// The Parquet decoder sizes a dictionary by the page header's count before
/// reading it, so a corrupt count of hundreds of millions allocated gigabytes
/// (fuzz finding). Every sample column is 8 bytes wide in its plain
/// dictionary; only dictionary pages are decompressed for the check.
fn check_dictionary_pages(
    bytes: Bytes,
    metadata: &ParquetMetaData,
) -> std::result::Result<(), String> {
    const WIDTH: usize = 8;
    let reader = Arc::new(bytes);
    for rg in metadata.row_groups() {
        let rows = usize::try_from(rg.num_rows()).map_err(|e| format!("row count: {e}"))?;
        for column in rg.columns() {
            // The first page's type, learnt without decompressing a data
            // page: the same chunk described as uncompressed hands back the
            // page's stored bytes. (`peek_next_page` would read only the
            // header, but panics on a data page header missing its body.)
            let stored = column
                .clone()
                .into_builder()
                .set_compression(Compression::UNCOMPRESSED)
                .build()
                .map_err(|e| format!("parquet: {e}"))?;
            let first = SerializedPageReader::new(reader.clone(), &stored, rows, None)
                .and_then(|mut pages| pages.get_next_page())
                .map_err(|e| format!("parquet: {e}"))?;
            if !first.is_some_and(|p| p.is_dictionary_page()) {
                continue;
            }
            let mut pages = SerializedPageReader::new(reader.clone(), column, rows, None)
                .map_err(|e| format!("parquet: {e}"))?;
            if let Some(Page::DictionaryPage {
                buf, num_values, ..
            }) = pages.get_next_page().map_err(|e| format!("parquet: {e}"))?
                && usize::try_from(num_values)
                    .ok()
                    .and_then(|n| n.checked_mul(WIDTH))
                    .is_none_or(|need| need > buf.len())
            {
                return Err(format!(
                    "dictionary page of column {} claims {num_values} values in {} bytes",
                    column.column_path(),
                    buf.len()
                ));
            }
        }
    }
    Ok(())
}

/// Reads the series index from a segment's footer key-value metadata.
/// `key` is only used in error messages.
/// Footer-only readers cannot check the whole-object checksum, but a
/// version 2 index is a zstd frame with a content checksum, which
/// decompression verifies.
pub fn decode_index(key: &str, kv: Option<&Vec<KeyValue>>) -> Result<SegmentIndex> {
    let (version, index) = check_footer(key, kv, FORMAT_MAGIC, &READ_VERSIONS)?;
    if version >= 2 && kv.and_then(|kv| footer_value(kv, KEY_CHECKSUM)).is_none() {
        return Err(StorageError::Corrupt {
            key: key.to_string(),
            reason: format!("{KEY_CHECKSUM} missing"),
        });
    }
    Ok(index)
}

/// Checks the footer's format magic and version and decodes its series index;
/// shared by segments and blocks, which store the index the same way.
pub(crate) fn decode_footer_index(
    key: &str,
    kv: Option<&Vec<KeyValue>>,
    magic: &str,
    format_version: u32,
) -> Result<SegmentIndex> {
    check_footer(key, kv, magic, &[format_version]).map(|(_, index)| index)
}

/// Checks the footer's magic and that its version is one of `versions`;
/// returns the version and the decoded series index.
fn check_footer(
    key: &str,
    kv: Option<&Vec<KeyValue>>,
    magic: &str,
    versions: &[u32],
) -> Result<(u32, SegmentIndex)> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let kv = kv.ok_or_else(|| corrupt("no key-value metadata".into()))?;
    let get = |k: &str| footer_value(kv, k);
    if get(KEY_FORMAT) != Some(magic) {
        return Err(corrupt(format!(
            "not a Strata {magic} ({KEY_FORMAT} missing or wrong)"
        )));
    }
    let text = get(KEY_VERSION).unwrap_or("");
    let Some(version) = versions.iter().copied().find(|v| text == v.to_string()) else {
        return Err(corrupt(format!(
            "unsupported {magic} format version {text:?}"
        )));
    };
    let text = get(KEY_INDEX).ok_or_else(|| corrupt(format!("{KEY_INDEX} missing")))?;
    let compressed = BASE64
        .decode(text)
        .map_err(|e| corrupt(format!("series index is not base64: {e}")))?;
    let raw = zstd::bulk::decompress(&compressed, MAX_INDEX_BYTES)
        .map_err(|e| corrupt(format!("series index does not decompress: {e}")))?;
    let index = segment_index::decode(&raw, index_layout(magic, version))
        .map_err(|e| corrupt(format!("bad series index: {e}")))?;
    Ok((version, index))
}

/// The series index layout of a Strata Parquet object: the name table for
/// segments since version 3, ids and names in full before and in blocks.
fn index_layout(magic: &str, version: u32) -> Layout {
    if magic == FORMAT_MAGIC && version >= 3 {
        Layout::NameTable
    } else {
        Layout::WithIds
    }
}

/// The value of footer key `k`, if present.
pub(crate) fn footer_value<'a>(kv: &'a [KeyValue], k: &str) -> Option<&'a str> {
    kv.iter()
        .find(|e| e.key == k)
        .and_then(|e| e.value.as_deref())
}

/// The footer entries every Strata Parquet object starts with: format magic,
/// version and series index.
pub(crate) fn footer_entries(
    magic: &str,
    format_version: u32,
    index: &SegmentIndex,
) -> Result<Vec<KeyValue>> {
    Ok(vec![
        KeyValue::new(KEY_FORMAT.to_string(), magic.to_string()),
        KeyValue::new(KEY_VERSION.to_string(), format_version.to_string()),
        KeyValue::new(
            KEY_INDEX.to_string(),
            encode_index(index, Layout::WithIds, false, BLOCK_INDEX_ZSTD_LEVEL)?,
        ),
    ])
}

/// The series index as stored in the footer: base64(zstd(binary index), see
/// [`segment_index`]). Parquet key-value values are strings, hence base64;
/// zstd shrinks the label text about tenfold, which matters because every
/// segment carries one. `layout`: see [`index_layout`]. `checksum`: the
/// zstd frame carries a content checksum (segments since version 2; blocks
/// do not, yet). `level`: the zstd level (segments and blocks differ; any
/// level decodes).
fn encode_index(
    index: &SegmentIndex,
    layout: Layout,
    checksum: bool,
    level: i32,
) -> Result<String> {
    let enc = |e: std::io::Error| StorageError::Encode(e.to_string());
    let raw = segment_index::encode(index, layout);
    let compressed = INDEX_COMPRESSOR.with(|cell| {
        // Nothing inside can call back into this function: the borrow is
        // never taken twice.
        let mut slot = cell.borrow_mut();
        let zstd = match &mut *slot {
            Some(z) => z,
            None => slot.insert(zstd::bulk::Compressor::new(level)?),
        };
        // Parameters are sticky: both are set for every index.
        zstd.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))?;
        zstd.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(checksum))?;
        zstd.compress(&raw)
    });
    Ok(BASE64.encode(compressed.map_err(enc)?))
}

thread_local! {
    /// One zstd context per thread, reused for every index: creating one per
    /// segment (and sizing its tables anew) was a measurable share of ingest
    /// CPU. Parameters are sticky; level and checksum flag are set per call.
    static INDEX_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests;
