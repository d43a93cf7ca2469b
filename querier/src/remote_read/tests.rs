use storage::Sample as StoredSample;

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
    let results = vec![vec![series("a", 3), series("b", 2)], vec![]];
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

#[test]
fn streamed_frames_hold_one_series_and_split_long_ones() {
    let a = series("a", 1000); // 9 chunks
    let b = series("b", 5);
    let mut stream = Vec::new();
    for f in chunked_frames(0, &[a.clone(), b.clone()], MAX_BYTES_IN_FRAME) {
        stream.extend_from_slice(&f);
    }
    for f in chunked_frames(1, std::slice::from_ref(&b), MAX_BYTES_IN_FRAME) {
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
    for f in chunked_frames(0, std::slice::from_ref(&a), 1000) {
        stream.extend_from_slice(&f);
    }
    let frames = read_stream(&stream);
    assert!(frames.len() > 1, "{} frames", frames.len());
    assert!(frames.iter().all(|f| f.1 == frames[0].1));
    let joined: Vec<StoredSample> = frames.into_iter().flat_map(|f| f.2).collect();
    assert_eq!(joined, a.samples);
}
