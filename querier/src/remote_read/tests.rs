use storage::Sample as StoredSample;
use storage::histogram::{BucketSpan, CUSTOM_BUCKETS_SCHEMA, Count, Histogram, ZeroCount};

use super::*;

fn series(name: &str, n: i64) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "api")]).expect("labels"),
        samples: (0..n)
            .map(|i| StoredSample::new(i * 15_000, i as f64 * 0.5))
            .collect(),
    }
}

fn request(queries: Vec<Query>, accepted: Vec<i32>) -> Vec<u8> {
    let req = ReadRequest {
        queries,
        accepted_response_types: accepted,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn query(matchers: Vec<(MatcherType, &str, &str)>, start: i64, end: i64) -> Query {
    Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: matchers
            .into_iter()
            .map(|(t, n, v)| LabelMatcher {
                r#type: t as i32,
                name: n.into(),
                value: v.into(),
            })
            .collect(),
        hints: None,
    }
}

#[test]
fn negotiates_like_prometheus() {
    assert_eq!(negotiate(&[]).expect("empty"), ResponseType::Samples);
    assert_eq!(
        negotiate(&[1, 0]).expect("streamed first"),
        ResponseType::StreamedXorChunks
    );
    assert_eq!(
        negotiate(&[0, 1]).expect("samples first"),
        ResponseType::Samples
    );
    assert_eq!(
        negotiate(&[7, 1]).expect("unknown skipped"),
        ResponseType::StreamedXorChunks
    );
    let err = negotiate(&[5, 9]).expect_err("none supported").to_string();
    assert!(err.contains("[5, 9]"), "{err}");
}

#[test]
fn decodes_and_checks_requests() {
    let body = request(
        vec![query(
            vec![
                (MatcherType::Eq, "__name__", "up"),
                (MatcherType::Re, "job", "a.*"),
            ],
            10,
            20,
        )],
        vec![1],
    );
    let req = decode_request(&body).expect("decode");
    let sel = selections(&req).expect("valid");
    assert_eq!(sel.len(), 1);
    assert_eq!((sel[0].start_ms, sel[0].end_ms), (10, 20));
    assert_eq!(sel[0].matchers.len(), 2);
    assert_eq!(sel[0].matchers[1].op, MatchOp::Regex);
}

#[test]
fn bad_requests_name_the_problem() {
    let err = |body: Vec<u8>| -> String {
        match decode_request(&body).and_then(|r| selections(&r)) {
            Err(RemoteReadError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    };
    assert!(err(b"not snappy at all".to_vec()).contains("snappy"));
    let junk = snap::raw::Encoder::new()
        .compress_vec(&[0xff, 0xff, 0xff])
        .expect("snappy");
    assert!(err(junk).contains("protobuf"));
    assert!(err(request(vec![], vec![])).contains("no queries"));
    let m = err(request(
        vec![query(vec![(MatcherType::Eq, "a", "b")], 20, 10)],
        vec![],
    ));
    assert!(m.contains("query 0") && m.contains("before start"), "{m}");
    let m = err(request(
        vec![
            query(vec![(MatcherType::Eq, "a", "b")], 0, 10),
            query(vec![(MatcherType::Re, "job", "(")], 0, 10),
        ],
        vec![],
    ));
    assert!(m.contains("query 1") && m.contains("job"), "{m}");
    let m = err(request(
        vec![query(vec![(MatcherType::Re, "job", ".*")], 0, 10)],
        vec![],
    ));
    assert!(m.contains("empty string"), "{m}");
    let mut q = query(vec![(MatcherType::Eq, "a", "b")], 0, 10);
    q.matchers[0].r#type = 9;
    assert!(err(request(vec![q], vec![])).contains("unknown type 9"));
}

#[test]
fn sample_budget_counts_across_queries() {
    let mut b = SampleBudget::new(25);
    b.take(&[series("a", 10)]).expect("10 of 25");
    b.take(&[series("b", 15)]).expect("25 of 25");
    assert!(matches!(
        b.take(&[series("c", 1)]),
        Err(RemoteReadError::TooManySamples { limit: 25 })
    ));
}

#[test]
fn samples_response_round_trips() {
    let results = vec![
        QueryData {
            floats: vec![series("a", 3), series("b", 2)],
            histograms: Vec::new(),
        },
        QueryData::default(),
    ];
    let body = samples_response(&results).expect("encode");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let resp = ReadResponse::decode(raw.as_slice()).expect("protobuf");
    assert_eq!(resp.results.len(), 2);
    assert!(resp.results[1].timeseries.is_empty());
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].labels[0].name, "__name__");
    assert_eq!(ts[0].labels[0].value, "a");
    assert_eq!(
        ts[0]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect::<Vec<_>>(),
        vec![(0, 0.0), (15_000, 0.5), (30_000, 1.0)]
    );
}

/// One decoded frame: query index, labels, samples, number of chunks.
type Decoded = (i64, Vec<(String, String)>, Vec<StoredSample>, usize);

/// Decodes a streamed answer back into its frames.
fn read_stream(stream: &[u8]) -> Vec<Decoded> {
    frame::unframe(stream, MAX_BYTES_IN_FRAME * 2)
        .expect("frames")
        .into_iter()
        .map(|m| {
            let resp = ChunkedReadResponse::decode(m).expect("protobuf");
            assert_eq!(resp.chunked_series.len(), 1, "one series per frame");
            let s = &resp.chunked_series[0];
            let mut samples = Vec::new();
            for c in &s.chunks {
                assert_eq!(c.r#type, ChunkEncoding::Xor as i32);
                let got = xor::decode(&c.data).expect("xor");
                assert_eq!(got.first().map(|p| p.t), Some(c.min_time_ms));
                assert_eq!(got.last().map(|p| p.t), Some(c.max_time_ms));
                samples.extend(got);
            }
            let labels = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            (resp.query_index, labels, samples, s.chunks.len())
        })
        .collect()
}

fn floats(series: &[&Series]) -> QueryData {
    QueryData {
        floats: series.iter().map(|s| (*s).clone()).collect(),
        histograms: Vec::new(),
    }
}

#[test]
fn streamed_frames_hold_one_series_and_split_long_ones() {
    let a = series("a", 1000); // 9 chunks
    let b = series("b", 5);
    let mut stream = Vec::new();
    for f in chunked_frames(0, &floats(&[&a, &b]), MAX_BYTES_IN_FRAME) {
        stream.extend_from_slice(&f);
    }
    for f in chunked_frames(1, &floats(&[&b]), MAX_BYTES_IN_FRAME) {
        stream.extend_from_slice(&f);
    }
    let frames = read_stream(&stream);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].0, 0);
    assert_eq!(frames[0].2, a.samples);
    assert_eq!(frames[0].3, 9);
    assert_eq!(frames[1].2, b.samples);
    assert_eq!((frames[2].0, &frames[2].2), (1, &b.samples));
    assert_eq!(frames[1].1[0], ("__name__".into(), "b".into()));

    // A small frame limit splits `a` across frames with the same labels.
    let mut stream = Vec::new();
    for f in chunked_frames(0, &floats(&[&a]), 1000) {
        stream.extend_from_slice(&f);
    }
    let frames = read_stream(&stream);
    assert!(frames.len() > 1, "{} frames", frames.len());
    assert!(frames.iter().all(|f| f.1 == frames[0].1));
    let joined: Vec<StoredSample> = frames.into_iter().flat_map(|f| f.2).collect();
    assert_eq!(joined, a.samples);
}

/// Native histograms that exercise every field a lossy path could change:
/// a NaN sum with a payload (the stale marker), float counts, custom bucket
/// bounds (schema -53), negative spans and offsets, every reset hint, a
/// histogram without a zero bucket and one with an infinite sum, timestamps
/// `t0`, `t0 + 1000`, ...
pub(crate) fn tricky_histograms(t0: i64) -> Vec<Histogram> {
    let span = |offset, length| BucketSpan { offset, length };
    vec![
        Histogram {
            count: Some(Count::Int(9)),
            sum: f64::from_bits(storage::STALE_NAN_BITS),
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: Some(ZeroCount::Int(2)),
            negative_spans: vec![span(-2, 2), span(1, 1)],
            negative_deltas: vec![1, 0, 1],
            positive_spans: vec![span(0, 1)],
            positive_deltas: vec![3],
            reset_hint: 1,
            timestamp: t0,
            ..Default::default()
        },
        Histogram {
            count: Some(Count::Float(7.25)),
            sum: -0.0,
            schema: -1,
            zero_threshold: 0.001,
            zero_count: Some(ZeroCount::Float(0.5)),
            negative_spans: vec![span(-5, 1)],
            negative_counts: vec![1.75],
            positive_spans: vec![span(3, 2), span(4, 1)],
            positive_counts: vec![0.1, 2.9, 2.0],
            reset_hint: 3,
            timestamp: t0 + 1000,
            ..Default::default()
        },
        Histogram {
            count: Some(Count::Int(6)),
            sum: 12.345,
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![span(0, 2), span(1, 2)],
            positive_deltas: vec![1, 1, -1, 2],
            custom_values: vec![0.1, 0.5, 1.0, 5.0, 10.0],
            reset_hint: 2,
            timestamp: t0 + 2000,
            ..Default::default()
        },
        Histogram {
            count: Some(Count::Int(0)),
            sum: f64::INFINITY,
            schema: -4,
            timestamp: t0 + 3000,
            ..Default::default()
        },
    ]
}

/// The stored encoding of each histogram: equal encodings mean equal bits
/// in every field (`PartialEq` would call two NaN sums different).
pub(crate) fn encodings(hs: &[Histogram]) -> Vec<Vec<u8>> {
    hs.iter().map(Histogram::to_bytes).collect()
}

#[test]
fn samples_response_carries_histograms_bit_for_bit() {
    let hs = tricky_histograms(100_000);
    for h in &hs {
        h.validate().expect("test histograms are valid");
    }
    let mixed = series("mixed", 3);
    let only = Labels::from_pairs([("__name__", "a_hist"), ("job", "api")]).expect("labels");
    let results = vec![QueryData {
        floats: vec![mixed.clone(), series("z_floats", 1)],
        histograms: vec![
            HistogramSeries {
                labels: only.clone(),
                histograms: hs[2..].to_vec(),
            },
            HistogramSeries {
                labels: mixed.labels.clone(),
                histograms: hs[..2].to_vec(),
            },
        ],
    }];
    let body = samples_response(&results).expect("encode");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let resp = ReadResponse::decode(raw.as_slice()).expect("protobuf");
    let ts = &resp.results[0].timeseries;
    let names: Vec<&str> = ts.iter().map(|t| t.labels[0].value.as_str()).collect();
    // Sorted by labels; the series with both kinds is one message.
    assert_eq!(names, ["a_hist", "mixed", "z_floats"]);
    assert!(ts[0].samples.is_empty());
    assert_eq!(encodings(&ts[0].histograms), encodings(&hs[2..]));
    assert_eq!(ts[1].samples.len(), 3);
    assert_eq!(encodings(&ts[1].histograms), encodings(&hs[..2]));
    assert_eq!(
        ts[1].histograms[0].sum.to_bits(),
        storage::STALE_NAN_BITS,
        "the NaN payload survives"
    );
    assert!(ts[2].histograms.is_empty());
}

#[test]
fn sample_budget_counts_histograms() {
    let mut b = SampleBudget::new(5);
    let hs = HistogramSeries {
        labels: Labels::from_pairs([("__name__", "h")]).expect("labels"),
        histograms: tricky_histograms(0),
    };
    b.take_histograms(std::slice::from_ref(&hs))
        .expect("4 of 5");
    b.take(&[series("a", 1)]).expect("5 of 5");
    assert!(matches!(
        b.take_histograms(std::slice::from_ref(&hs)),
        Err(RemoteReadError::TooManySamples { limit: 5 })
    ));
}

/// A streamed answer carries histogram series as `HISTOGRAM` and
/// `FLOAT_HISTOGRAM` chunks, a series with both kinds in one frame with its
/// XOR chunks, chunks in time order, every field back bit for bit (reset
/// hints as the chunk format keeps them).
#[test]
fn streamed_frames_carry_histogram_chunks() {
    let hs = tricky_histograms(100_000);
    let mixed = series("mixed", 3);
    let only = Labels::from_pairs([("__name__", "a_hist")]).expect("labels");
    let data = QueryData {
        floats: vec![mixed.clone()],
        histograms: vec![
            HistogramSeries {
                labels: only.clone(),
                histograms: hs.clone(),
            },
            HistogramSeries {
                labels: mixed.labels.clone(),
                histograms: hs[2..].to_vec(),
            },
        ],
    };
    let mut stream = Vec::new();
    for f in chunked_frames(0, &data, MAX_BYTES_IN_FRAME) {
        stream.extend_from_slice(&f);
    }
    let frames = frame::unframe(&stream, MAX_BYTES_IN_FRAME * 2).expect("frames");
    let decoded: Vec<ChunkedReadResponse> = frames
        .into_iter()
        .map(|m| ChunkedReadResponse::decode(m).expect("protobuf"))
        .collect();
    let names: Vec<&str> = decoded
        .iter()
        .map(|r| r.chunked_series[0].labels[0].value.as_str())
        .collect();
    assert_eq!(names, ["a_hist", "mixed"]);
    let read = |s: &ChunkedSeries| {
        let (mut floats, mut hists) = (Vec::new(), Vec::new());
        let mut last_min = i64::MIN;
        for c in &s.chunks {
            assert!(c.min_time_ms >= last_min, "chunks in time order");
            last_min = c.min_time_ms;
            match c.r#type {
                t if t == ChunkEncoding::Xor as i32 => {
                    floats.extend(xor::decode(&c.data).expect("xor"))
                }
                t if t == ChunkEncoding::Histogram as i32 => hists.extend(
                    histogram_chunk::decode_histogram_chunk(&c.data, false).expect("histogram"),
                ),
                t if t == ChunkEncoding::FloatHistogram as i32 => hists.extend(
                    histogram_chunk::decode_histogram_chunk(&c.data, true)
                        .expect("float histogram"),
                ),
                t => panic!("unexpected chunk encoding {t}"),
            }
        }
        (floats, hists)
    };
    let no_hints = |hs: &[Histogram]| encodings(&histogram_chunk::as_read_from_chunks(hs));
    let (floats, hists) = read(&decoded[0].chunked_series[0]);
    assert!(floats.is_empty());
    // The stale marker comes back as a bare stale marker.
    assert_eq!(hists[0].sum.to_bits(), storage::STALE_NAN_BITS);
    assert_eq!(hists[0].timestamp, hs[0].timestamp);
    assert_eq!(no_hints(&hists[1..]), no_hints(&hs[1..]));
    // A gauge hint survives (its chunk is flagged gauge).
    assert_eq!(hists[1].reset_hint, 3);
    let (floats, hists) = read(&decoded[1].chunked_series[0]);
    assert_eq!(floats, mixed.samples);
    assert_eq!(no_hints(&hists), no_hints(&hs[2..]));
}
