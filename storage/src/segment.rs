//! The segment format: one immutable Parquet object per group commit.
//!
//! Rows are samples `(series_id u64, timestamp i64 ms, value f64)` sorted by
//! series then time; the label sets of the series, the time range and the
//! format version live in the Parquet footer's key-value metadata, so one
//! footer read tells a reader which series a segment holds and when, without
//! touching samples. See `docs/format/segment.md`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{Result, StorageError};
use crate::labels::{Labels, SeriesId};
use crate::sample::Series;
use crate::segment_index;

/// Value of the `strata.format` key: identifies a Strata segment.
pub const FORMAT_MAGIC: &str = "strata-segment";
/// Value of the `strata.format_version` key written by this code.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &str = "strata.format";
const KEY_VERSION: &str = "strata.format_version";
const KEY_INDEX: &str = "strata.series_index";
/// zstd level of the series index: label sets are very repetitive, and the
/// index is written once and read once per querier (then cached).
const INDEX_ZSTD_LEVEL: i32 = 3;
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
    // One row per sample, sorted by (series id, time); the sort is stable, so
    // equal timestamps keep their arrival order and "the last one written
    // wins" is well defined for readers.
    let total: usize = series.iter().map(|s| s.samples.len()).sum();
    let mut rows: Vec<(SeriesId, i64, f64)> = Vec::with_capacity(total);
    // Label sets are shared (`Labels` clones are reference counts).
    let mut labels_of: HashMap<SeriesId, &Labels> = HashMap::with_capacity(series.len());
    for s in series {
        let id = s.labels.series_id();
        labels_of.entry(id).or_insert(&s.labels);
        rows.extend(s.samples.iter().map(|x| (id, x.t, x.v)));
    }
    rows.sort_by_key(|&(id, t, _)| (id, t));

    let mut ids = Vec::with_capacity(total);
    let mut ts = Vec::with_capacity(total);
    let mut vs = Vec::with_capacity(total);
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for &(id, t, v) in &rows {
        ids.push(id);
        ts.push(t);
        vs.push(v);
        min_time = min_time.min(t);
        max_time = max_time.max(t);
    }
    if total == 0 {
        (min_time, max_time) = (0, 0);
    }
    let mut index_series: Vec<IndexedSeries> = labels_of
        .into_iter()
        .map(|(id, labels)| IndexedSeries {
            id,
            labels: labels.clone(),
        })
        .collect();
    index_series.sort_unstable_by_key(|s| s.id);
    let index = SegmentIndex {
        min_time,
        max_time,
        samples: total as u64,
        series: index_series,
    };

    let batch = RecordBatch::try_new(
        sample_schema(),
        vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(vs)),
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
        .set_key_value_metadata(Some(footer_entries(FORMAT_MAGIC, FORMAT_VERSION, &index)?))
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
    Ok((Bytes::from(buf), index))
}

/// Reads the series index from a segment's footer key-value metadata.
/// `key` is only used in error messages.
pub fn decode_index(key: &str, kv: Option<&Vec<KeyValue>>) -> Result<SegmentIndex> {
    decode_footer_index(key, kv, FORMAT_MAGIC, FORMAT_VERSION)
}

/// Checks the footer's format magic and version and decodes its series index;
/// shared by segments and blocks, which store the index the same way.
pub(crate) fn decode_footer_index(
    key: &str,
    kv: Option<&Vec<KeyValue>>,
    magic: &str,
    format_version: u32,
) -> Result<SegmentIndex> {
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
    let version = get(KEY_VERSION).unwrap_or("");
    if version != format_version.to_string() {
        return Err(corrupt(format!(
            "unsupported {magic} format version {version:?}"
        )));
    }
    let text = get(KEY_INDEX).ok_or_else(|| corrupt(format!("{KEY_INDEX} missing")))?;
    let compressed = BASE64
        .decode(text)
        .map_err(|e| corrupt(format!("series index is not base64: {e}")))?;
    let raw = zstd::bulk::decompress(&compressed, MAX_INDEX_BYTES)
        .map_err(|e| corrupt(format!("series index does not decompress: {e}")))?;
    segment_index::decode(&raw).map_err(|e| corrupt(format!("bad series index: {e}")))
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
        KeyValue::new(KEY_INDEX.to_string(), encode_index(index)?),
    ])
}

/// The series index as stored in the footer: base64(zstd(binary index), see
/// [`segment_index`]). Parquet key-value values are strings, hence base64;
/// zstd shrinks the label text about tenfold, which matters because every
/// segment carries one.
fn encode_index(index: &SegmentIndex) -> Result<String> {
    let raw = segment_index::encode(index);
    let compressed = zstd::bulk::compress(&raw, INDEX_ZSTD_LEVEL)
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    Ok(BASE64.encode(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{STALE_NAN_BITS, Sample};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()).expect("labels"),
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    #[test]
    fn round_trips_samples_bit_for_bit_with_index() {
        let weird_nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let stale = f64::from_bits(STALE_NAN_BITS);
        let input = vec![
            series(&[("__name__", "b"), ("x", "1")], &[(30, 3.0), (10, 1.0)]),
            series(
                &[("__name__", "a")],
                &[(5, weird_nan), (6, stale), (7, -0.0)],
            ),
            // Same labels again (another request in the same batch).
            series(&[("__name__", "b"), ("x", "1")], &[(20, 2.0)]),
        ];
        let (bytes, index) = encode(&input).expect("encode");
        assert_eq!((index.min_time, index.max_time, index.samples), (5, 30, 6));

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
        let decoded = decode_index(
            "test",
            reader.metadata().file_metadata().key_value_metadata(),
        )
        .expect("index");
        let mut series: Vec<IndexedSeries> = [&input[0], &input[1]]
            .iter()
            .map(|s| IndexedSeries {
                id: s.labels.series_id(),
                labels: s.labels.clone(),
            })
            .collect();
        series.sort_by_key(|s| s.id);
        assert_eq!(
            decoded,
            SegmentIndex {
                min_time: 5,
                max_time: 30,
                samples: 6,
                series
            }
        );
        let mut rows = Vec::new();
        for batch in reader.build().expect("reader") {
            let batch = batch.expect("batch");
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("ids");
            let ts = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("ts");
            let vs = batch
                .column(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("vs");
            for i in 0..batch.num_rows() {
                rows.push((ids.value(i), ts.value(i), vs.value(i).to_bits()));
            }
        }
        let a = input[1].labels.series_id();
        let b = input[0].labels.series_id();
        let mut want = vec![
            (a, 5, weird_nan.to_bits()),
            (a, 6, STALE_NAN_BITS),
            (a, 7, (-0.0f64).to_bits()),
            (b, 10, 1.0f64.to_bits()),
            (b, 20, 2.0f64.to_bits()),
            (b, 30, 3.0f64.to_bits()),
        ];
        want.sort_by_key(|&(id, t, _)| (id, t));
        assert_eq!(rows, want);
    }

    #[test]
    fn rejects_foreign_parquet_and_future_versions() {
        let kv = vec![KeyValue::new(KEY_FORMAT.to_string(), "other".to_string())];
        assert!(decode_index("k", Some(&kv)).is_err());
        let kv = vec![
            KeyValue::new(KEY_FORMAT.to_string(), FORMAT_MAGIC.to_string()),
            KeyValue::new(KEY_VERSION.to_string(), "99".to_string()),
        ];
        let err = decode_index("k", Some(&kv)).unwrap_err().to_string();
        assert!(err.contains("version"), "{err}");
        assert!(decode_index("k", None).is_err());
        let bad_index = |v: &str| {
            vec![
                KeyValue::new(KEY_FORMAT.to_string(), FORMAT_MAGIC.to_string()),
                KeyValue::new(KEY_VERSION.to_string(), FORMAT_VERSION.to_string()),
                KeyValue::new(KEY_INDEX.to_string(), v.to_string()),
            ]
        };
        for v in ["not base64!", "aGVsbG8=", ""] {
            let err = decode_index("k", Some(&bad_index(v))).unwrap_err();
            assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        }
    }
}
