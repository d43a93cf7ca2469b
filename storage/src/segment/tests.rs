use super::*;
use crate::sample::STALE_NAN_BITS;

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

    assert!(verify("test", &bytes).expect("verify"));
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

/// The input frozen by the snapshot tests (both versions).
fn fixture() -> Vec<Series> {
    vec![
        series(
            &[("__name__", "up"), ("job", "api")],
            &[(1000, 1.0), (2000, 0.0), (2000, 1.0)],
        ),
        series(
            &[("__name__", "temp"), ("room", "x")],
            &[
                (1500, -0.0),
                (2500, f64::from_bits(STALE_NAN_BITS)),
                (3500, f64::NAN),
            ],
        ),
    ]
}

fn bits(series: &[Series]) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut out: Vec<_> = series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect();
    out.sort();
    out
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
        .collect()
}

#[test]
fn read_returns_what_was_encoded() {
    let input = fixture();
    let (bytes, index) = encode(&input).expect("encode");
    let (read_index, rows) = read("k", bytes).expect("read");
    assert_eq!(read_index, index);
    assert_eq!(bits(&rows), bits(&input));
}

#[test]
fn empty_segment_reads_back_empty() {
    let (bytes, index) = encode(&[]).expect("encode");
    assert_eq!(index.samples, 0);
    let (_, rows) = read("k", bytes).expect("read");
    assert!(rows.is_empty());
}

/// Frozen bytes of the version 3 encoding. If this fails, the segment bytes
/// changed: if that was meant, bump `FORMAT_VERSION` when old readers could
/// misread the new bytes, document it in `docs/format/segment.md`, and
/// regenerate with `STRATA_UPDATE_SNAPSHOTS=1 cargo test -p storage segment`.
#[test]
fn version_3_bytes_are_frozen() {
    let (bytes, _) = encode(&fixture()).expect("encode");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/segment/snapshot_v3.hex");
    if std::env::var_os("STRATA_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &hex).expect("write snapshot");
    }
    let frozen = std::fs::read_to_string(&path).expect("snapshot file");
    assert!(
        frozen.trim() == hex,
        "segment bytes changed ({} bytes now, {} frozen); see this test's doc comment",
        bytes.len(),
        frozen.trim().len() / 2
    );
    assert!(
        verify("k", &bytes).expect("verify"),
        "frozen bytes are sealed"
    );
}

/// Segments written before checksums (version 1) are still read, by the
/// whole-object reader and by footer-only readers.
#[test]
fn version_1_segments_stay_readable() {
    let v1 = unhex(include_str!("snapshot_v1.hex"));
    assert!(!verify("v1", &v1).expect("no checksum is not an error for v1"));
    let (index, rows) = read("v1", Bytes::from(v1.clone())).expect("read v1");
    assert_eq!(bits(&rows), bits(&fixture()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(v1)).expect("parquet");
    let footer = decode_index("v1", reader.metadata().file_metadata().key_value_metadata())
        .expect("v1 footer");
    assert_eq!(footer, index);
}

/// Version 2 segments (series ids in the index), as the writer produced
/// them with its last version 2 settings and with the earlier ones (series
/// index at zstd level 3; see `docs/format/segment.md`), read as before, by
/// the whole-object reader and by footer-only readers.
#[test]
fn version_2_segments_stay_readable() {
    let snapshots = [
        include_str!("snapshot_v2.hex"),
        include_str!("snapshot_v2_zstd3.hex"),
    ];
    for hex in snapshots {
        let old = unhex(hex);
        assert!(verify("old", &old).expect("sealed"));
        let (index, rows) = read("old", Bytes::from(old.clone())).expect("read old v2");
        assert_eq!(bits(&rows), bits(&fixture()));
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(old)).expect("parquet");
        let footer = decode_index(
            "old",
            reader.metadata().file_metadata().key_value_metadata(),
        )
        .expect("old footer");
        assert_eq!(footer, index);
        let (_, new_index) = encode(&fixture()).expect("encode");
        assert_eq!(index, new_index, "same index, whatever the version");
    }
}

/// Every byte of a segment is covered: one flipped bit anywhere is an
/// error naming the key, never a panic or a different answer.
#[test]
fn any_flipped_bit_is_a_corrupt_error_naming_the_key() {
    let (bytes, _) = encode(&fixture()).expect("encode");
    for i in 0..bytes.len() {
        let mut bad = bytes.to_vec();
        bad[i] ^= 1 << (i % 8);
        match read("tenants/t/segments/x.parquet", Bytes::from(bad)) {
            Err(StorageError::Corrupt { key, .. }) => {
                assert_eq!(key, "tenants/t/segments/x.parquet");
            }
            other => panic!("byte {i} flipped: {other:?}"),
        }
    }
}

#[test]
fn truncated_segments_are_errors() {
    let (bytes, _) = encode(&fixture()).expect("encode");
    for n in [0, 1, 4, 12, bytes.len() / 2, bytes.len() - 1] {
        let err = read("k", bytes.slice(..n)).expect_err("truncated");
        assert!(matches!(err, StorageError::Corrupt { .. }), "{n}: {err}");
    }
}

#[test]
fn checksum_mismatch_says_so() {
    let (bytes, _) = encode(&fixture()).expect("encode");
    let mut bad = bytes.to_vec();
    bad[20] ^= 0x40; // inside the first column chunk
    let err = verify("tenants/t/segments/x.parquet", &bad).expect_err("mismatch");
    let text = err.to_string();
    assert!(
        text.contains("key=tenants/t/segments/x.parquet") && text.contains("checksum mismatch"),
        "{text}"
    );
}

/// Writes sample rows with the footer of `index` and seals the result: a
/// segment whose checksum is right but whose content is inconsistent (what
/// a buggy writer could store).
/// (series id, time, value)
type Row = (u64, i64, f64);

fn sealed_with_index(rows: &[Row], index: &SegmentIndex) -> Bytes {
    let batch = RecordBatch::try_new(
        sample_schema(),
        vec![
            Arc::new(UInt64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch");
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(segment_footer(index).expect("footer")))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, sample_schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    seal("k", &mut buf).expect("seal");
    Bytes::from(buf)
}

#[test]
fn rows_that_disagree_with_the_index_are_corrupt() {
    let s = &fixture()[0];
    let id = s.labels.series_id();
    let index = SegmentIndex {
        min_time: 1000,
        max_time: 2000,
        samples: 2,
        series: vec![IndexedSeries {
            id,
            labels: s.labels.clone(),
        }],
    };
    let ok = sealed_with_index(&[(id, 1000, 1.0), (id, 2000, 2.0)], &index);
    assert!(read("k", ok).is_ok());
    type Case<'a> = (&'a [Row], &'a str);
    let cases: [Case; 4] = [
        (&[(id, 1000, 1.0)], "sample rows"),
        (&[(id, 2000, 1.0), (id, 1000, 2.0)], "not sorted"),
        (&[(id, 1000, 1.0), (id, 3000, 2.0)], "outside"),
        (&[(id, 1000, 1.0), (id + 1, 2000, 2.0)], "not in the index"),
    ];
    for (rows, want) in cases {
        let err = read("k", sealed_with_index(rows, &index)).expect_err(want);
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    // Since version 3 the index holds no ids: rows under an id that is not
    // the hash of any indexed label set belong to no series.
    let mut wrong_id = index.clone();
    wrong_id.series[0].id = id ^ 1;
    let err = read(
        "k",
        sealed_with_index(&[(id ^ 1, 1000, 1.0), (id ^ 1, 2000, 2.0)], &wrong_id),
    )
    .expect_err("id not matching labels");
    assert!(err.to_string().contains("not in the index"), "{err}");
}

/// A version 2 footer without its checksum entry is refused by footer-only
/// readers too.
#[test]
fn version_2_footer_without_checksum_is_refused() {
    let (bytes, _) = encode(&fixture()).expect("encode");
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    let mut kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .expect("kv");
    assert!(decode_index("k", Some(&kv)).is_ok());
    kv.retain(|e| e.key != KEY_CHECKSUM);
    let err = decode_index("k", Some(&kv)).expect_err("no checksum");
    assert!(err.to_string().contains(KEY_CHECKSUM), "{err}");
}

/// Fuzz finding (`fuzz/corpus/segment/regression-corrupt-arrow-schema`): a
/// segment with a valid checksum whose footer's `ARROW:schema` entry is
/// corrupt made the whole-object reader panic inside arrow-ipc. It must
/// answer (an error or the rows), never panic.
#[test]
fn a_corrupt_embedded_arrow_schema_does_not_panic_the_reader() {
    let mut data =
        include_bytes!("../../../fuzz/corpus/segment/regression-corrupt-arrow-schema").to_vec();
    // As the fuzz target does: a valid checksum, so the reader parses on.
    seal("k", &mut data).expect("the input has a checksum slot");
    let _ = read("k", Bytes::from(data));
}

/// Fuzz finding (`fuzz/corpus/segment/regression-negative-column-offset`):
/// a footer with a negative column chunk offset made the Parquet reader
/// assert. It must be a corrupt error.
#[test]
fn a_column_chunk_outside_the_object_is_corrupt() {
    let mut data =
        include_bytes!("../../../fuzz/corpus/segment/regression-negative-column-offset").to_vec();
    seal("k", &mut data).expect("the input has a checksum slot");
    assert!(read("k", Bytes::from(data)).is_err());
}

/// Several entries of one series, out of order within and across entries,
/// with repeated timestamps: rows come out sorted by (id, time) with equal
/// timestamps in arrival order, exactly as a stable sort of all rows.
#[test]
fn entries_of_one_series_merge_in_time_then_arrival_order() {
    let a = [("__name__", "a")];
    let b = [("__name__", "b")];
    let input = vec![
        series(&a, &[(3, 1.0), (1, 2.0)]),
        series(&b, &[(5, 9.0)]),
        series(&a, &[(2, 3.0), (1, 4.0)]),
        series(&b, &[]),
        series(&a, &[(3, 5.0)]),
    ];
    let (bytes, index) = encode(&input).expect("encode");
    assert_eq!((index.min_time, index.max_time, index.samples), (1, 5, 6));
    assert_eq!(index.series.len(), 2);
    let (_, rows) = read("k", bytes).expect("read");
    let got: Vec<(String, Vec<(i64, f64)>)> = rows
        .iter()
        .map(|s| {
            let pts = s.samples.iter().map(|x| (x.t, x.v)).collect();
            (s.labels.to_string(), pts)
        })
        .collect();
    // The reference: every row, stably sorted by (series id, time).
    let mut all: Vec<(u64, i64, f64, String)> = input
        .iter()
        .flat_map(|s| {
            let (id, name) = (s.labels.series_id(), s.labels.to_string());
            s.samples.iter().map(move |x| (id, x.t, x.v, name.clone()))
        })
        .collect();
    all.sort_by_key(|r| (r.0, r.1));
    let mut want: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
    for (_, t, v, name) in all {
        match want.last_mut() {
            Some((n, pts)) if *n == name => pts.push((t, v)),
            _ => want.push((name, vec![(t, v)])),
        }
    }
    assert_eq!(got, want);
    let a_rows = &want.iter().find(|(n, _)| n == "a").expect("a").1;
    assert_eq!(a_rows, &[(1, 2.0), (1, 4.0), (2, 3.0), (3, 1.0), (3, 5.0)]);
}

/// Fuzz finding (`fuzz/corpus/segment/regression-dictionary-value-count`):
/// a dictionary page header claiming about 800 million values made the
/// Parquet decoder size its dictionary by that count, over 4 GB, before
/// reading a byte of it. It must be a corrupt error.
#[test]
fn a_dictionary_page_claiming_more_values_than_it_holds_is_corrupt() {
    let mut data =
        include_bytes!("../../../fuzz/corpus/segment/regression-dictionary-value-count").to_vec();
    seal("k", &mut data).expect("the input has a checksum slot");
    let err = read("k", Bytes::from(data)).expect_err("corrupt");
    assert!(err.to_string().contains("dictionary page"), "{err}");
}

/// Fuzz findings (`fuzz/corpus/segment/regression-data-page-missing-its-header*`):
/// a page typed as a data page without a data page header made the dictionary
/// check's header peek panic inside the Parquet crate. Corrupt, not a panic.
#[test]
fn a_data_page_without_its_header_is_corrupt() {
    for input in [
        &include_bytes!("../../../fuzz/corpus/segment/regression-data-page-missing-its-header")[..],
        &include_bytes!("../../../fuzz/corpus/segment/regression-data-page-missing-its-header-2")[..],
    ] {
        let mut data = input.to_vec();
        seal("k", &mut data).expect("the input has a checksum slot");
        let err = read("k", Bytes::from(data)).expect_err("corrupt");
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    }
    // The same on a segment of ours: the first page's type, a dictionary
    // page (zigzag 4), becomes a data page (0), keeping its dictionary header.
    let input = vec![series(&[("__name__", "a")], &[(1, 1.0), (2, 2.0)])];
    let (bytes, _) = encode(&input).expect("encode");
    let mut data = bytes.to_vec();
    assert_eq!((data[4], data[5]), (0x15, 0x04), "{:02x?}", &data[4..12]);
    data[5] = 0x00;
    seal("k", &mut data).expect("checksum slot");
    let err = read("k", Bytes::from(data)).expect_err("corrupt");
    assert!(err.to_string().contains("data page header"), "{err}");
}

/// Fuzz finding (`fuzz/corpus/segment/regression-byte-stream-split-out-of-bounds`):
/// parquet 59's byte-stream-split decoder indexes out of bounds on a page
/// holding fewer bytes than its values need. The reader catches decoder
/// panics: a corrupt error, not a panic.
#[test]
fn a_decoder_panic_is_a_corrupt_error() {
    let mut data =
        include_bytes!("../../../fuzz/corpus/segment/regression-byte-stream-split-out-of-bounds")
            .to_vec();
    seal("k", &mut data).expect("the input has a checksum slot");
    let err = read("k", Bytes::from(data)).expect_err("corrupt");
    assert!(
        matches!(&err, StorageError::Corrupt { reason, .. } if reason.contains("decoder panicked")),
        "{err}"
    );
}

/// The same check on a segment of ours: the first column's dictionary page
/// header is patched to claim more values than it holds.
#[test]
fn a_dictionary_count_over_the_page_bytes_is_corrupt() {
    let input = vec![
        series(&[("__name__", "a")], &[(1, 1.0), (2, 2.0)]),
        series(&[("__name__", "b")], &[(1, 3.0)]),
    ];
    let (bytes, _) = encode(&input).expect("encode");
    assert!(read("k", bytes.clone()).is_ok());
    let mut data = bytes.to_vec();
    // Thrift compact page header after the magic: type (field 1), the two
    // sizes (fields 2 and 3, one-byte varints here), then the dictionary
    // page header (field 7, delta 4) whose field 1 is num_values.
    let h = &data[4..];
    assert_eq!(
        (h[0], h[1], h[2], h[4]),
        (0x15, 0x04, 0x15, 0x15),
        "{h:02x?}"
    );
    assert_eq!(
        (h[6], h[7]),
        (0x4c, 0x15),
        "dictionary page header: {h:02x?}"
    );
    assert_eq!(data[12], 2 * 2, "two distinct series ids, zigzag");
    data[12] = 2 * 60; // 60 values: 480 bytes, the page holds 16
    seal("k", &mut data).expect("checksum slot");
    let err = read("k", Bytes::from(data)).expect_err("corrupt");
    assert!(
        err.to_string().contains("claims 60 values in 16 bytes"),
        "{err}"
    );
}
