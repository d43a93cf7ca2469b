use super::*;
use crate::labels::Labels;
use crate::sample::{STALE_NAN_BITS, Sample};
use arrow::array::{Array, BinaryArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn series(name: &str, samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "j")]).expect("labels"),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

pub(crate) fn opts(start: i64, end: i64, chunk_range_ms: i64) -> BlockOptions {
    BlockOptions {
        partition_start: start,
        partition_end: end,
        resolution: RAW.into(),
        chunk_range_ms,
        zstd_level: 3,
    }
}

/// (series id, min, max, count, samples) per chunk row, in file order.
type ChunkRow = (u64, i64, i64, u32, Vec<Sample>);

fn read_rows(bytes: Bytes) -> (BlockInfo, Vec<ChunkRow>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    let info = decode_info(
        "test",
        reader.metadata().file_metadata().key_value_metadata(),
    )
    .expect("info");
    let mut rows = Vec::new();
    for batch in reader.build().expect("reader") {
        let b = batch.expect("batch");
        let col = |i: usize| b.column(i).clone();
        let ids = col(0);
        let ids = ids.as_any().downcast_ref::<UInt64Array>().expect("ids");
        let mins = col(1);
        let mins = mins.as_any().downcast_ref::<Int64Array>().expect("mins");
        let maxs = col(2);
        let maxs = maxs.as_any().downcast_ref::<Int64Array>().expect("maxs");
        let ns = col(3);
        let ns = ns.as_any().downcast_ref::<UInt32Array>().expect("counts");
        let chunks = col(4);
        let chunks = chunks
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("chunks");
        for i in 0..b.num_rows() {
            let mut samples = Vec::new();
            chunk::decode(chunks.value(i), &mut samples).expect("chunk");
            rows.push((
                ids.value(i),
                mins.value(i),
                maxs.value(i),
                ns.value(i),
                samples,
            ));
        }
    }
    (info, rows)
}

#[test]
fn round_trips_and_cuts_chunks_at_chunk_range_boundaries() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let a = series("a", &[(0, 1.0), (99, 2.5), (100, stale), (250, -0.0)]);
    let b = series("b", &[(150, f64::INFINITY)]);
    let (bytes, index) = encode(&[a.clone(), b.clone()], &opts(0, 300, 100)).expect("encode");
    assert_eq!((index.min_time, index.max_time, index.samples), (0, 250, 5));
    let (info, rows) = read_rows(bytes);
    assert_eq!(info.index, index);
    assert_eq!((info.partition_start, info.partition_end), (0, 300));
    assert_eq!(info.resolution, RAW);

    let (ia, ib) = (a.labels.series_id(), b.labels.series_id());
    let mut want: Vec<ChunkRow> = vec![
        (ia, 0, 99, 2, a.samples[..2].to_vec()),
        (ia, 100, 100, 1, a.samples[2..3].to_vec()),
        (ia, 250, 250, 1, a.samples[3..].to_vec()),
        (ib, 150, 150, 1, b.samples.clone()),
    ];
    want.sort_by_key(|r| (r.0, r.1));
    assert_eq!(rows, want);
}

#[test]
fn empty_series_are_left_out_and_bad_options_are_errors() {
    let (bytes, index) = encode(&[series("a", &[])], &opts(0, 10, 10)).expect("encode");
    assert_eq!((index.samples, index.series.len()), (0, 0));
    assert!(read_rows(bytes).1.is_empty());
    assert!(encode(&[], &opts(0, 10, 0)).is_err());
    assert!(encode(&[], &opts(10, 10, 5)).is_err());
}

#[test]
fn a_flipped_bit_in_a_chunk_fails_its_checksum() {
    let mut buf = Vec::new();
    chunk::encode(&[Sample::new(1, 2.5), Sample::new(2, 3.5)], &mut buf);
    let sum = chunk_checksum(&buf);
    assert_eq!(verify_chunk(&buf, sum), Ok(()));
    for byte in 0..buf.len() {
        let mut bad = buf.clone();
        bad[byte] ^= 0x10;
        let err = verify_chunk(&bad, sum).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}

#[test]
fn segments_are_not_blocks() {
    let (seg, _) = crate::segment::encode(&[series("a", &[(1, 1.0)])]).expect("segment");
    let reader = ParquetRecordBatchReaderBuilder::try_new(seg).expect("parquet");
    let err = decode_info("k", reader.metadata().file_metadata().key_value_metadata())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a Strata strata-block"), "{err}");
}

/// The encoded bytes of a small block are frozen: a change to the block or
/// chunk format (or to the Parquet writer's output) must be deliberate. To
/// accept a deliberate change, run with `STRATA_UPDATE_SNAPSHOTS=1` and bump
/// the format version if old blocks can no longer be read.
#[test]
fn encoded_bytes_are_frozen() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    let input = [
        series(
            "up",
            &[(0, 1.0), (15_000, 1.0), (30_000, 1.0), (45_000, stale)],
        ),
        series(
            "requests_total",
            &[(1, 10.0), (15_002, 12.5), (30_001, 15.0), (7_200_000, 0.0)],
        ),
        series(
            "temperature",
            &[(3, 21.3), (15_004, 21.4), (30_003, f64::NAN)],
        ),
    ];
    // The series-index compressor is reused per thread, at the segment's
    // level for segments: a segment written first on this thread must not
    // change the block's bytes.
    crate::segment::encode(&input).expect("segment");
    let (bytes, _) = encode(&input, &opts(0, 4 * 3_600_000, 2 * 3_600_000)).expect("encode");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/block/snapshot_v1.hex");
    if std::env::var_os("STRATA_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &hex).expect("write snapshot");
    }
    let frozen = std::fs::read_to_string(&path).expect("snapshot file");
    assert!(
        frozen.trim() == hex,
        "block bytes changed ({} bytes now, {} frozen); see this test's doc comment",
        bytes.len(),
        frozen.trim().len() / 2
    );
    // The frozen bytes still decode to the input.
    let (_, rows) = read_rows(bytes);
    let total: usize = rows.iter().map(|r| r.4.len()).sum();
    assert_eq!(total, 11);
}

/// Fuzz finding (`fuzz/corpus/block/regression-corrupt-arrow-schema`): a
/// block whose footer carries a corrupt `ARROW:schema` entry made the
/// DataFusion scan panic inside arrow-ipc. The query path must answer an
/// error or data, never panic.
#[tokio::test]
async fn a_corrupt_embedded_arrow_schema_does_not_panic_the_query_path() {
    use crate::manifest::{self, BlockEntry, Manifest};
    use crate::{Storage, TenantId};
    use object_store::ObjectStoreExt;

    let data: &[u8] = include_bytes!("../../../fuzz/corpus/block/regression-corrupt-arrow-schema");
    let store = Arc::new(object_store::memory::InMemory::new());
    let tenant = TenantId::new("fuzz").unwrap();
    let id = ulid::Ulid::from_parts(1, 1);
    store
        .put(
            &crate::paths::block(&tenant, RAW, id),
            Bytes::copy_from_slice(data).into(),
        )
        .await
        .unwrap();
    let mut m = Manifest::new();
    m.blocks.push(BlockEntry {
        id: id.to_string(),
        resolution: RAW.to_string(),
        start: i64::MIN,
        end: i64::MAX,
        min_time: i64::MIN,
        max_time: i64::MAX,
        samples: 1,
        series: 1,
        bytes: data.len() as u64,
    });
    assert!(
        manifest::try_commit(store.as_ref(), &tenant, 0, &m)
            .await
            .unwrap()
    );
    let storage = Storage::new(store);
    // Only the embedded Arrow schema is corrupt; the chunks pass their
    // checksums, so the data reads. (Before the fix: a panic in a scan task,
    // surfacing as a DataFusion join error.)
    let series = storage
        .select(&tenant, &[], i64::MIN, i64::MAX)
        .await
        .expect("the block reads");
    assert_eq!(series[0].labels.metric_name(), Some("a"));
}
