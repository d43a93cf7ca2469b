//! Metadata, exemplars and native histograms end to end. A real Prometheus
//! (Debian's 2.42, with `--enable-feature=exemplar-storage`) scrapes itself
//! and a small OpenMetrics target exposing exemplars, and remote-writes to
//! Strata with `metadata_config: {send: true, send_interval: 1s}` and
//! `send_exemplars: true`: Strata's `/api/v1/metadata` and
//! `/api/v1/query_exemplars` must then answer what Prometheus' own answer,
//! for the tenant that wrote and for no other. Native histograms sent by
//! remote write come back from remote read bit for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ingest::proto::{FullTimeSeries, FullWriteRequest, Label, Sample};
use prost::Message;
use querier::remote_read::proto::{
    Chunk, ChunkEncoding, ChunkedReadResponse, LabelMatcher, MatcherType, Query, ReadRequest,
    ReadResponse,
};
use querier::remote_read::{frame, histogram_chunk, xor};
use serde_json::{Value, json};
use storage::histogram::{BucketSpan, CUSTOM_BUCKETS_SCHEMA, Count, Histogram, ZeroCount};
use strata_tests::promapi::{self, api_time};
use strata_tests::remote_write::{self, now_ms};
use strata_tests::{Prometheus, Strata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{Scratch, client};

/// How long Prometheus gets to scrape, send and have Strata store.
const PATIENCE: Duration = Duration::from_secs(90);

/// The demo target's exposition: a counter and a histogram with exemplars
/// (fixed timestamps, so every scrape repeats the same exemplar and
/// Prometheus stores it once), and a unit.
fn exposition(exemplar_ms: i64) -> String {
    let t = api_time(exemplar_ms);
    let t2 = api_time(exemplar_ms + 500);
    format!(
        "# TYPE demo_requests counter\n\
         # HELP demo_requests Requests handled by the demo target.\n\
         demo_requests_total{{path=\"/api\"}} 17.0 # {{trace_id=\"abc123\"}} 0.5 {t}\n\
         # TYPE demo_latency_seconds histogram\n\
         # UNIT demo_latency_seconds seconds\n\
         # HELP demo_latency_seconds Latency of the demo target.\n\
         demo_latency_seconds_bucket{{le=\"0.1\"}} 3 # {{trace_id=\"t1\",span_id=\"s1\"}} 0.05 {t2}\n\
         demo_latency_seconds_bucket{{le=\"+Inf\"}} 5\n\
         demo_latency_seconds_sum 1.5\n\
         demo_latency_seconds_count 5\n\
         # EOF\n"
    )
}

/// Serves `body` as OpenMetrics on a free loopback port until the test's
/// runtime ends; returns the port.
async fn serve_openmetrics(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the demo target");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                // One request per connection: read its head, answer, close.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\n\
                     Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

/// A metadata answer as family -> set of entries (Prometheus' order of
/// entries within a family is a Go map's).
fn metadata_sets(data: &Value) -> BTreeMap<String, BTreeSet<String>> {
    data.as_object()
        .map(|m| {
            m.iter()
                .map(|(family, entries)| {
                    let set = entries
                        .as_array()
                        .map(|a| a.iter().map(Value::to_string).collect())
                        .unwrap_or_default();
                    (family.clone(), set)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An exemplar answer with its series sorted by labels (Prometheus' order is
/// a map's).
fn sorted_exemplars(data: &Value) -> Vec<Value> {
    let mut v = data.as_array().cloned().unwrap_or_default();
    v.sort_by_key(|s| s["seriesLabels"].to_string());
    v
}

async fn metadata(c: &reqwest::Client, base: &str, params: &[(&str, String)]) -> Value {
    promapi::get(c, base, "/api/v1/metadata", params, None)
        .await
        .expect("metadata")
}

#[tokio::test]
async fn prometheus_metadata_and_exemplars_read_back_as_prometheus_answers() {
    let scratch = Scratch::new("metadata-exemplars");
    let c = client();
    let strata = Strata::start_local(&scratch.sub("data"), &scratch.path()).await;
    let exemplar_ms = (now_ms() - 60_000) / 1000 * 1000 + 123;
    let demo_port = serve_openmetrics(exposition(exemplar_ms)).await;
    let write_url = strata.write_url();
    let prom = Prometheus::start(
        |port| {
            format!(
                r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: demo
    static_configs:
      - targets: ["127.0.0.1:{demo_port}"]
remote_write:
  - url: {write_url}
    send_exemplars: true
    metadata_config:
      send: true
      send_interval: 1s
    queue_config:
      batch_send_deadline: 1s
"#
            )
        },
        &["--enable-feature=exemplar-storage"],
        &scratch.path(),
    )
    .await;

    // Prometheus' own metadata, once it has scraped both targets.
    let started = Instant::now();
    let theirs = loop {
        let data = metadata(&c, &prom.url, &[]).await;
        let sets = metadata_sets(&data);
        if sets.contains_key("demo_latency_seconds") && sets.contains_key("go_goroutines") {
            break sets;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "Prometheus never scraped both targets: {data}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        theirs.len() > 50,
        "Prometheus has {} families",
        theirs.len()
    );
    assert_eq!(
        theirs["demo_requests"],
        BTreeSet::from([
            json!({"type": "counter", "help": "Requests handled by the demo target.", "unit": ""})
                .to_string()
        ])
    );

    // Strata: every family Prometheus had, with the same entries.
    let missing = |ours: &BTreeMap<String, BTreeSet<String>>| -> Vec<String> {
        theirs
            .iter()
            .filter(|(family, entries)| ours.get(*family) != Some(entries))
            .map(|(family, entries)| format!("{family}: {entries:?} vs {:?}", ours.get(family)))
            .collect()
    };
    let ours = loop {
        let data = metadata(&c, &strata.url, &[]).await;
        let sets = metadata_sets(&data);
        let left = missing(&sets);
        if left.is_empty() {
            break sets;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "Strata's /api/v1/metadata still lacks or differs on {} families, e.g. {:?}\n\
             Strata log:\n{}",
            left.len(),
            &left[..left.len().min(5)],
            strata.proc.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(ours.contains_key("go_goroutines"));

    // The parameters select as Prometheus' do.
    for params in [
        vec![("metric", "demo_latency_seconds".to_string())],
        vec![("metric", "go_goroutines".to_string())],
        vec![("metric", "no_such_metric".to_string())],
        vec![("limit", "0".to_string())],
        vec![
            ("metric", "demo_requests".to_string()),
            ("limit_per_metric", "1".to_string()),
        ],
    ] {
        let a = metadata(&c, &strata.url, &params).await;
        let b = metadata(&c, &prom.url, &params).await;
        assert_eq!(metadata_sets(&a), metadata_sets(&b), "{params:?}");
    }
    let three = metadata(&c, &strata.url, &[("limit", "3".to_string())]).await;
    assert_eq!(three.as_object().map(|m| m.len()), Some(3), "{three}");

    // Exemplars: the same answer as Prometheus' for an expression that
    // selects both demo series.
    let query = r#"sum(rate(demo_requests_total[1m])) / histogram_quantile(0.9, rate(demo_latency_seconds_bucket{le!=""}[1m]))"#;
    let params = [
        ("query", query.to_string()),
        ("start", api_time(exemplar_ms - 3_600_000)),
        ("end", api_time(now_ms() + 3_600_000)),
    ];
    let theirs = promapi::get(&c, &prom.url, "/api/v1/query_exemplars", &params, None)
        .await
        .expect("Prometheus' exemplars");
    let theirs = sorted_exemplars(&theirs);
    assert_eq!(theirs.len(), 2, "Prometheus' exemplars: {theirs:?}");
    let ours = loop {
        let data = promapi::get(&c, &strata.url, "/api/v1/query_exemplars", &params, None)
            .await
            .expect("Strata's exemplars");
        let sorted = sorted_exemplars(&data);
        if sorted == theirs {
            break sorted;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "Strata's exemplars {data}\ndiffer from Prometheus' {theirs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let requests = ours
        .iter()
        .find(|s| s["seriesLabels"]["__name__"] == "demo_requests_total")
        .expect("the counter's exemplars");
    assert_eq!(
        requests["exemplars"],
        json!([{"labels": {"trace_id": "abc123"}, "value": "0.5",
                "timestamp": serde_json::from_str::<Value>(&api_time(exemplar_ms)).expect("number")}]),
        "{ours:?}"
    );

    // Another tenant sees none of it.
    let other = Some("someone-else");
    let data = promapi::get(&c, &strata.url, "/api/v1/metadata", &[], other)
        .await
        .expect("metadata of another tenant");
    assert_eq!(data, json!({}));
    let data = promapi::get(&c, &strata.url, "/api/v1/query_exemplars", &params, other)
        .await
        .expect("exemplars of another tenant");
    assert_eq!(data, json!([]));
}

/// Native histograms touching every field a lossy path could change: a NaN
/// sum with a payload (the stale marker), float counts, custom bucket
/// bounds (schema -53), negative spans, every reset hint; one per second
/// from `t0`.
fn tricky_histograms(t0: i64) -> Vec<Histogram> {
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
            reset_hint: 0,
            timestamp: t0 + 3000,
            ..Default::default()
        },
    ]
}

fn encodings(hs: &[Histogram]) -> Vec<Vec<u8>> {
    hs.iter().map(Histogram::to_bytes).collect()
}

const STREAMED: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// A streamed remote-read answer per frame: metric name, float samples,
/// histograms decoded from the histogram chunks.
type Streamed = Vec<(String, Vec<(i64, f64)>, Vec<Histogram>)>;

fn decode_streamed(bytes: &[u8]) -> Streamed {
    streamed_chunks(bytes)
        .into_iter()
        .map(|(name, chunks)| {
            let (mut floats, mut hists) = (Vec::new(), Vec::new());
            for c in chunks {
                if c.r#type == ChunkEncoding::Xor as i32 {
                    let samples = xor::decode(&c.data).expect("xor chunk");
                    floats.extend(samples.iter().map(|p| (p.t, p.v)));
                } else {
                    let float = c.r#type == ChunkEncoding::FloatHistogram as i32;
                    let got = histogram_chunk::decode_histogram_chunk(&c.data, float)
                        .expect("histogram chunk");
                    hists.extend(got);
                }
            }
            (name, floats, hists)
        })
        .collect()
}

/// A streamed answer's frames: metric name and chunks.
fn streamed_chunks(bytes: &[u8]) -> Vec<(String, Vec<Chunk>)> {
    frame::unframe(bytes, 50 << 20)
        .expect("checksummed frames")
        .into_iter()
        .map(|m| {
            let resp = ChunkedReadResponse::decode(m).expect("ChunkedReadResponse");
            let s = resp
                .chunked_series
                .into_iter()
                .next()
                .expect("one series per frame");
            let name = s
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            (name, s.chunks)
        })
        .collect()
}

fn full_series(name: &str, samples: &[(i64, f64)], histograms: Vec<Histogram>) -> FullTimeSeries {
    FullTimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: name.into(),
            },
            Label {
                name: "job".into(),
                value: "hist".into(),
            },
        ],
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: Vec::new(),
        histograms,
    }
}

/// POSTs a remote-read request for `{job="hist"}`; returns status, content
/// type and body.
async fn read_hist(
    c: &reqwest::Client,
    base: &str,
    start: i64,
    end: i64,
    accepted: Vec<i32>,
) -> (u16, String, Vec<u8>) {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "job".into(),
                value: "hist".into(),
            }],
            hints: None,
        }],
        accepted_response_types: accepted,
    };
    let resp = c
        .post(format!("{base}/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(remote_write::snappy(&req.encode_to_vec()))
        .send()
        .await
        .expect("remote read");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ctype, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn remote_written_native_histograms_remote_read_bit_for_bit() {
    let scratch = Scratch::new("histograms-remote-read");
    let c = client();
    let strata = Strata::start_local(&scratch.sub("data"), &scratch.path()).await;
    let t0 = (now_ms() - 600_000) / 1000 * 1000;
    let hs = tricky_histograms(t0);
    let floats = [(t0, 1.0), (t0 + 500, 2.0)];
    // `h_mixed` carries float samples and histograms, as Prometheus allows.
    let req = FullWriteRequest {
        timeseries: vec![
            full_series("h_mixed", &floats, hs[..2].to_vec()),
            full_series("h_only", &[], hs[2..].to_vec()),
        ],
        metadata: Vec::new(),
    };
    let (status, body) = remote_write::send(
        &c,
        &strata.write_url(),
        remote_write::snappy(&req.encode_to_vec()),
        None,
    )
    .await
    .expect("remote write");
    assert_eq!(status, 204, "{body}");

    let (status, ctype, bytes) = read_hist(&c, &strata.url, t0 - 1000, t0 + 10_000, vec![0]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(ctype, "application/x-protobuf");
    let decode = |bytes: &[u8]| {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(bytes)
            .expect("snappy");
        ReadResponse::decode(raw.as_slice()).expect("ReadResponse")
    };
    let resp = decode(&bytes);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2, "{ts:?}");
    assert_eq!(ts[0].labels[0].value, "h_mixed");
    assert_eq!(
        ts[0]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect::<Vec<_>>(),
        floats
    );
    assert_eq!(encodings(&ts[0].histograms), encodings(&hs[..2]));
    assert_eq!(ts[1].labels[0].value, "h_only");
    assert!(ts[1].samples.is_empty());
    assert_eq!(encodings(&ts[1].histograms), encodings(&hs[2..]));

    // Streamed (preferred or only): the histograms as HISTOGRAM and
    // FLOAT_HISTOGRAM chunks next to the floats' XOR chunks, every field
    // back (reset hints as chunks keep them, the stale marker bare).
    for accepted in [vec![1, 0], vec![1]] {
        let (status, ctype, bytes) =
            read_hist(&c, &strata.url, t0 - 1000, t0 + 10_000, accepted).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(ctype, STREAMED);
        let got = decode_streamed(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.as_str(), got[0].1.as_slice()),
            ("h_mixed", &floats[..])
        );
        assert_eq!(got[0].2.len(), 2);
        assert_eq!(got[0].2[0].sum.to_bits(), storage::STALE_NAN_BITS);
        assert_eq!(
            encodings(&histogram_chunk::as_read_from_chunks(&got[0].2[1..])),
            encodings(&histogram_chunk::as_read_from_chunks(&hs[1..2]))
        );
        assert_eq!(got[1].0, "h_only");
        assert_eq!(
            encodings(&histogram_chunk::as_read_from_chunks(&got[1].2)),
            encodings(&histogram_chunk::as_read_from_chunks(&hs[2..]))
        );
    }
    // Another tenant reads nothing.
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t0 - 1000,
            end_timestamp_ms: t0 + 10_000,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "job".into(),
                value: "hist".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![0],
    };
    let other = c
        .post(format!("{}/api/v1/read", strata.url))
        .header("X-Scope-OrgID", "someone-else")
        .body(remote_write::snappy(&req.encode_to_vec()))
        .send()
        .await
        .expect("remote read as another tenant");
    assert_eq!(other.status().as_u16(), 200);
    let other = decode(&other.bytes().await.expect("body"));
    assert!(other.results[0].timeseries.is_empty(), "{other:?}");
}

/// Strata's histogram chunks are byte for byte the chunks a real Prometheus
/// (2.42, native histograms enabled) serves through its own streamed remote
/// read for the same remote-written integer histograms, and our decoder
/// reads Prometheus' chunks back to what was written.
#[tokio::test]
async fn streamed_histogram_chunks_are_the_chunks_prometheus_serves() {
    let scratch = Scratch::new("histogram-chunks");
    let c = client();
    let strata = Strata::start_local(&scratch.sub("data"), &scratch.path()).await;
    let prom = Prometheus::start(
        |_| "global:\n  scrape_interval: 1m\n".to_string(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
        &scratch.path(),
    )
    .await;
    // 40 histograms 15 s apart (jittered) inside one 2 h head window, one
    // bucket layout.
    let window = 2 * 3_600_000;
    let start = (now_ms() - 3_600_000) / window * window + 1000;
    let span = |offset, length| BucketSpan { offset, length };
    let hs: Vec<Histogram> = (0..40i64)
        .map(|i| {
            let abs = [1 + i, 2 * i, 3 + i / 4, i * i];
            let zero = (i / 3) as u64;
            let mut prev = 0;
            let deltas = abs
                .iter()
                .map(|a| {
                    let d = a - prev;
                    prev = *a;
                    d
                })
                .collect();
            Histogram {
                count: Some(Count::Int(zero + (abs.iter().sum::<i64>() + i % 5) as u64)),
                sum: i as f64 * 1.7,
                schema: 2,
                zero_threshold: 2f64.powi(-128),
                zero_count: Some(ZeroCount::Int(zero)),
                positive_spans: vec![span(-1, 2), span(3, 2)],
                positive_deltas: deltas,
                negative_spans: vec![span(0, 1)],
                negative_deltas: vec![i % 5],
                timestamp: start + i * 15_000 + (i % 4) * 7,
                ..Default::default()
            }
        })
        .collect();
    let req = FullWriteRequest {
        timeseries: vec![full_series("h_prom", &[], hs.clone())],
        metadata: Vec::new(),
    };
    for url in [strata.write_url(), format!("{}/api/v1/write", prom.url)] {
        let (status, body) =
            remote_write::send(&c, &url, remote_write::snappy(&req.encode_to_vec()), None)
                .await
                .expect("remote write");
        assert!((200..300).contains(&status), "{url}: {status} {body}");
    }
    let end = start + 40 * 15_000;
    let (status, ctype, ours) = read_hist(&c, &strata.url, start, end, vec![1]).await;
    assert_eq!((status, ctype.as_str()), (200, STREAMED));
    let (status, ctype, theirs) = read_hist(&c, &prom.url, start, end, vec![1]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&theirs));
    assert_eq!(ctype, STREAMED);
    let ours = streamed_chunks(&ours);
    let theirs = streamed_chunks(&theirs);
    assert_eq!(ours.len(), 1);
    assert_eq!(theirs.len(), 1);
    let (ours, theirs) = (&ours[0].1, &theirs[0].1);
    // The negative bucket drops every fifth sample: a counter reset, where
    // both cut a chunk flagged as a reset.
    assert_eq!(theirs.len(), 8, "Prometheus cuts a chunk at each reset");
    // Our decoder reads Prometheus' encoder's chunks ...
    let mut decoded = Vec::new();
    for chunk in theirs {
        assert_eq!(chunk.r#type, ChunkEncoding::Histogram as i32);
        decoded.extend(
            histogram_chunk::decode_histogram_chunk(&chunk.data, false)
                .expect("Prometheus' chunk decodes"),
        );
    }
    assert_eq!(
        encodings(&histogram_chunk::as_read_from_chunks(&decoded)),
        encodings(&histogram_chunk::as_read_from_chunks(&hs))
    );
    assert!(decoded[5..35].iter().step_by(5).all(|h| h.reset_hint == 1));
    // ... and our encoder writes the same bytes, except one bit pair:
    // Prometheus 2.42 serves its still-open head chunk (the last) with the
    // counter-reset bits unset ("unknown"); Strata flags that chunk's reset
    // as it does every other.
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            (a.min_time_ms, a.max_time_ms, a.r#type),
            (b.min_time_ms, b.max_time_ms, b.r#type)
        );
        let mut a = a.data.clone();
        if i + 1 == theirs.len() {
            assert_eq!(
                (a[2], b.data[2]),
                (0b1000_0000, 0),
                "flags of the last chunk"
            );
            a[2] = 0;
        }
        assert_eq!(a, b.data, "chunk {i}: bytes differ from Prometheus'");
    }
}
