use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use storage::{Labels, Sample, Series, Storage, TenantId};
use tower::ServiceExt;

use crate::api::{QueryConfig, QueryState, router};
use crate::remote_read::proto::{
    ChunkedReadResponse, LabelMatcher, MatcherType, Query, ReadRequest, ReadResponse,
};
use crate::remote_read::{frame, xor};

async fn app(config: QueryConfig) -> Router {
    let storage = Storage::in_memory();
    let series = |name: &str, n: i64| Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "api")]).expect("labels"),
        samples: (0..n).map(|i| Sample::new(i * 1000, i as f64)).collect(),
    };
    storage
        .write_segment(
            &TenantId::new("a").expect("t"),
            &[series("up", 300), series("other", 5)],
        )
        .await
        .expect("write");
    storage
        .write_segment(&TenantId::new("b").expect("t"), &[series("up", 3)])
        .await
        .expect("write");
    router(QueryState::new(
        storage,
        config,
        TenantId::new("a").expect("t"),
    ))
}

fn body(name: &str, start: i64, end: i64, accepted: Vec<i32>) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "__name__".into(),
                value: name.into(),
            }],
            hints: None,
        }],
        accepted_response_types: accepted,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

async fn post(app: &Router, tenant: Option<&str>, body: Vec<u8>) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::post("/api/v1/read")
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf");
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .expect("body");
    (status, ctype, bytes.to_vec())
}

fn samples_of(bytes: &[u8]) -> Vec<Vec<(i64, f64)>> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(bytes)
        .expect("snappy");
    let resp = ReadResponse::decode(raw.as_slice()).expect("protobuf");
    resp.results[0]
        .timeseries
        .iter()
        .map(|ts| ts.samples.iter().map(|s| (s.timestamp, s.value)).collect())
        .collect()
}

#[tokio::test]
async fn samples_by_tenant_and_range() {
    let app = app(QueryConfig::default()).await;
    let (status, ctype, bytes) = post(&app, None, body("up", 10_000, 12_000, vec![])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/x-protobuf");
    assert_eq!(
        samples_of(&bytes),
        vec![vec![(10_000, 10.0), (11_000, 11.0), (12_000, 12.0)]]
    );
    let (_, _, bytes) = post(&app, Some("b"), body("up", 0, i64::MAX, vec![0, 1])).await;
    assert_eq!(
        samples_of(&bytes),
        vec![vec![(0, 0.0), (1000, 1.0), (2000, 2.0)]]
    );
    let (_, _, bytes) = post(&app, Some("c"), body("up", 0, i64::MAX, vec![])).await;
    assert!(samples_of(&bytes).is_empty());
}

#[tokio::test]
async fn streamed_chunks_decode_to_the_samples() {
    let app = app(QueryConfig::default()).await;
    let (status, ctype, bytes) = post(&app, None, body("up", 0, i64::MAX, vec![1, 0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ctype,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let frames = frame::unframe(&bytes, 1 << 20).expect("frames");
    assert_eq!(frames.len(), 1);
    let resp = ChunkedReadResponse::decode(frames[0]).expect("protobuf");
    assert_eq!(resp.query_index, 0);
    let s = &resp.chunked_series[0];
    assert_eq!(s.chunks.len(), 3); // 300 samples, 120 per chunk
    let got: Vec<(i64, f64)> = s
        .chunks
        .iter()
        .flat_map(|c| xor::decode(&c.data).expect("xor"))
        .map(|p| (p.t, p.v))
        .collect();
    let want: Vec<(i64, f64)> = (0..300).map(|i| (i * 1000, i as f64)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn bad_requests_and_limits_are_400() {
    let app = app(QueryConfig {
        max_samples: 100,
        ..QueryConfig::default()
    })
    .await;
    let (status, _, bytes) = post(&app, None, b"junk".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let msg = String::from_utf8_lossy(&bytes);
    assert!(msg.contains("snappy"), "{msg}");
    let (status, _, bytes) = post(&app, None, body("up", 0, i64::MAX, vec![])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("exceeded sample limit (100)"));
    let (status, _, _) = post(&app, None, body("up", 0, i64::MAX, vec![1])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, bytes) = post(&app, None, body("up", 0, 10, vec![3])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("response types"));
    let (status, _, _) = post(&app, Some("bad/tenant"), body("up", 0, 10, vec![])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Under the limit it works.
    let (status, _, _) = post(&app, None, body("up", 0, 50_000, vec![])).await;
    assert_eq!(status, StatusCode::OK);
}

/// Tenant "a": `mixed` with float samples and native histograms, `hist_only`
/// with histograms (written in two sidecars, the second rewriting one
/// timestamp), `floats` with float samples only.
async fn histogram_app(config: QueryConfig) -> (Router, Vec<storage::histogram::Histogram>) {
    use storage::sidecar::{HistogramSeries, Sidecar};
    let storage = Storage::in_memory();
    let tenant = TenantId::new("a").expect("t");
    let labels = |name: &str| Labels::from_pairs([("__name__", name), ("job", "api")]).expect("l");
    let floats = |name: &str| Series {
        labels: labels(name),
        samples: (0..4).map(|i| Sample::new(i * 1000, i as f64)).collect(),
    };
    storage
        .write_segment(&tenant, &[floats("mixed"), floats("floats")])
        .await
        .expect("write");
    let hs = crate::remote_read::tests::tricky_histograms(0);
    let mut stale = hs[3].clone();
    stale.sum = 1.0; // replaced by the second sidecar's write of t=3000
    storage
        .write_sidecar(
            &tenant,
            &Sidecar {
                histograms: vec![
                    HistogramSeries {
                        labels: labels("mixed"),
                        histograms: hs[..2].to_vec(),
                    },
                    HistogramSeries {
                        labels: labels("hist_only"),
                        histograms: vec![hs[2].clone(), stale],
                    },
                ],
                ..Default::default()
            },
        )
        .await
        .expect("sidecar");
    storage
        .write_sidecar(
            &tenant,
            &Sidecar {
                histograms: vec![HistogramSeries {
                    labels: labels("hist_only"),
                    histograms: vec![hs[3].clone()],
                }],
                ..Default::default()
            },
        )
        .await
        .expect("sidecar");
    let app = router(QueryState::new(storage, config, tenant));
    (app, hs)
}

fn regex_body(pattern: &str, start: i64, end: i64, accepted: Vec<i32>) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Re as i32,
                name: "__name__".into(),
                value: pattern.into(),
            }],
            hints: None,
        }],
        accepted_response_types: accepted,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// Per series: metric name, float samples, histogram encodings.
type Decoded = Vec<(String, Vec<(i64, f64)>, Vec<Vec<u8>>)>;

fn decode_all(bytes: &[u8]) -> Decoded {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(bytes)
        .expect("snappy");
    let resp = ReadResponse::decode(raw.as_slice()).expect("protobuf");
    resp.results[0]
        .timeseries
        .iter()
        .map(|ts| {
            (
                ts.labels[0].value.clone(),
                ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                crate::remote_read::tests::encodings(&ts.histograms),
            )
        })
        .collect()
}

#[tokio::test]
async fn samples_return_histograms_as_written() {
    let (app, hs) = histogram_app(QueryConfig::default()).await;
    let enc = crate::remote_read::tests::encodings(&hs);
    let (status, ctype, bytes) = post(&app, None, regex_body(".+", 0, 10_000, vec![0])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(ctype, "application/x-protobuf");
    let floats: Vec<(i64, f64)> = (0..4).map(|i| (i * 1000, i as f64)).collect();
    assert_eq!(
        decode_all(&bytes),
        vec![
            ("floats".to_string(), floats.clone(), vec![]),
            ("hist_only".to_string(), vec![], enc[2..].to_vec()),
            ("mixed".to_string(), floats, enc[..2].to_vec()),
        ]
    );
    // The time range applies to histograms too.
    let (_, _, bytes) = post(&app, None, regex_body("hist.*|mixed", 1000, 2000, vec![])).await;
    assert_eq!(
        decode_all(&bytes),
        vec![
            ("hist_only".to_string(), vec![], vec![enc[2].clone()]),
            (
                "mixed".to_string(),
                vec![(1000, 1.0), (2000, 2.0)],
                vec![enc[1].clone()]
            ),
        ]
    );
}

/// Decodes a streamed answer: per frame the metric name, float samples and
/// histogram encodings (reset hints cleared: chunks keep them per chunk).
fn decode_stream(bytes: &[u8]) -> Decoded {
    use crate::remote_read::proto::{ChunkEncoding, ChunkedReadResponse};
    use crate::remote_read::{histogram_chunk, xor};
    frame::unframe(bytes, 1 << 20)
        .expect("frames")
        .into_iter()
        .map(|m| {
            let resp = ChunkedReadResponse::decode(m).expect("protobuf");
            let s = &resp.chunked_series[0];
            let (mut floats, mut hists) = (Vec::new(), Vec::new());
            for c in &s.chunks {
                if c.r#type == ChunkEncoding::Xor as i32 {
                    floats.extend(
                        xor::decode(&c.data)
                            .expect("xor")
                            .iter()
                            .map(|p| (p.t, p.v)),
                    );
                } else {
                    let float = c.r#type == ChunkEncoding::FloatHistogram as i32;
                    hists.extend(
                        histogram_chunk::decode_histogram_chunk(&c.data, float).expect("chunk"),
                    );
                }
            }
            let hists = crate::remote_read::histogram_chunk::as_read_from_chunks(&hists);
            (
                s.labels[0].value.clone(),
                floats,
                crate::remote_read::tests::encodings(&hists),
            )
        })
        .collect()
}

#[tokio::test]
async fn streamed_requests_carry_histogram_chunks() {
    let (app, hs) = histogram_app(QueryConfig::default()).await;
    let enc = crate::remote_read::tests::encodings(
        &crate::remote_read::histogram_chunk::as_read_from_chunks(&hs),
    );
    // Only streamed accepted: histograms come as chunks, a series' floats
    // and histograms in one frame.
    let (status, ctype, bytes) = post(&app, None, body("mixed", 0, 10_000, vec![1])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ctype,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let got = decode_stream(&bytes);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "mixed");
    assert_eq!(
        got[0].1,
        vec![(0, 0.0), (1000, 1.0), (2000, 2.0), (3000, 3.0)]
    );
    // hs[0] is a stale marker: it reads back as a bare one.
    assert_eq!(got[0].2.len(), 2);
    assert_eq!(got[0].2[1], enc[1]);
    let (status, _, bytes) = post(&app, None, body("hist_only", 0, 10_000, vec![1, 0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        decode_stream(&bytes),
        vec![("hist_only".to_string(), vec![], enc[2..].to_vec())]
    );
}

#[tokio::test]
async fn histograms_count_against_the_sample_limit() {
    // `mixed`: 4 float samples and 2 histograms.
    let (app, _) = histogram_app(QueryConfig {
        max_samples: 5,
        ..QueryConfig::default()
    })
    .await;
    let (status, _, bytes) = post(&app, None, body("mixed", 0, 10_000, vec![])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&bytes).contains("exceeded sample limit (5)"));
    let (status, _, _) = post(&app, None, body("mixed", 0, 2000, vec![])).await;
    assert_eq!(status, StatusCode::OK, "3 floats and 2 histograms fit");
}
