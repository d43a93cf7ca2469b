//! Remote write 2.0 end to end against the real binary: a request built by
//! hand to the 2.0 spec (the Debian Prometheus 2.42 cannot send 2.0) with
//! floats, a native histogram, exemplars and metadata; the written-count
//! headers; the floats read back through `/api/v1/query` (the histogram too,
//! with `histogram_count` and as Prometheus' JSON), the histogram
//! through remote read (bit for bit), the exemplar through
//! `/api/v1/query_exemplars`, the metadata through `/api/v1/metadata`; a
//! partial write and the 415 cases. Remote write 1.0 from a real Prometheus
//! is covered by the `e2e` module.

use prost::Message;
use querier::remote_read::proto::{LabelMatcher, MatcherType, Query, ReadRequest, ReadResponse};
use storage::histogram::{BucketSpan, Count, Histogram, ZeroCount};
use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi;
use strata_tests::remote_write::{now_ms, snappy};

use ingest::proto::{Sample, v2};

use crate::{Scratch, client};

const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Reply {
    status: u16,
    written: [Option<u64>; 3],
    body: String,
}

async fn post(c: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let resp = c
        .post(url)
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .header("User-Agent", "strata-tests")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let written = [
        "X-Prometheus-Remote-Write-Samples-Written",
        "X-Prometheus-Remote-Write-Histograms-Written",
        "X-Prometheus-Remote-Write-Exemplars-Written",
    ]
    .map(|h| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok()?.parse().ok())
    });
    Reply {
        status,
        written,
        body: resp.text().await.unwrap_or_default(),
    }
}

fn histogram(t: i64) -> Histogram {
    Histogram {
        count: Some(Count::Float(7.5)),
        sum: 42.25,
        schema: 3,
        zero_threshold: 0.0001,
        zero_count: Some(ZeroCount::Float(0.5)),
        positive_spans: vec![
            BucketSpan {
                offset: -2,
                length: 2,
            },
            BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        positive_counts: vec![1.0, 4.0, 2.0],
        reset_hint: 2,
        timestamp: t,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_2_0_request_round_trips_through_every_api() {
    let scratch = Scratch::new("rw2");
    let data = scratch.sub("data");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;
    let c = client();
    let t0 = (now_ms() - 120_000) / 1000 * 1000;

    let mut sy = v2::SymbolTable::default();
    let counter = v2::TimeSeries {
        labels_refs: sy.label_refs(&[
            ("__name__", "rw2_requests_total"),
            ("job", "rw2"),
            ("path", "/api"),
        ]),
        samples: (0..3)
            .map(|i| Sample {
                value: 10.0 * (i + 1) as f64,
                timestamp: t0 + i * 15_000,
            })
            .collect(),
        exemplars: vec![v2::Exemplar {
            labels_refs: sy.label_refs(&[("trace_id", "4bf92f3577b34da6")]),
            value: 20.0,
            timestamp: t0 + 15_000,
        }],
        metadata: Some(v2::Metadata {
            r#type: 1,
            help_ref: sy.intern("Requests served."),
            unit_ref: 0,
        }),
        created_timestamp: t0 - 60_000,
        ..Default::default()
    };
    let latency = v2::TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "rw2_latency_seconds"), ("job", "rw2")]),
        histograms: vec![histogram(t0), histogram(t0 + 15_000)],
        metadata: Some(v2::Metadata {
            r#type: 3,
            help_ref: sy.intern("Request latency."),
            unit_ref: sy.intern("seconds"),
        }),
        ..Default::default()
    };
    let req = v2::Request {
        symbols: sy.into_symbols(),
        timeseries: vec![counter, latency],
    };
    let r = post(
        &c,
        &strata.write_url(),
        V2_TYPE,
        snappy(&req.encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.written, [Some(3), Some(2), Some(1)]);

    // Floats through PromQL (the created timestamp adds no sample).
    let at = t0 + 30_000;
    let got = promapi::query(
        &c,
        &strata.url,
        "count_over_time(rw2_requests_total[5m])",
        at,
        None,
    )
    .await
    .expect("query");
    assert_eq!(got.single_value(), Some(3.0));
    let got = promapi::query(
        &c,
        &strata.url,
        r#"rw2_requests_total{path="/api"}"#,
        at,
        None,
    )
    .await
    .expect("query");
    assert_eq!(got.single_value(), Some(30.0));

    // The histogram through remote read, bit for bit.
    let read = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t0 - 1,
            end_timestamp_ms: at,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "__name__".into(),
                value: "rw2_latency_seconds".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let resp = c
        .post(format!("{}/api/v1/read", strata.url))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(snappy(&read.encode_to_vec()))
        .send()
        .await
        .expect("remote read");
    assert!(resp.status().is_success(), "remote read: {}", resp.status());
    let bytes = resp.bytes().await.expect("body");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&bytes)
        .expect("snappy response");
    let rr = ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
    let series = &rr.results[0].timeseries;
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0].histograms,
        vec![histogram(t0), histogram(t0 + 15_000)]
    );

    // The histogram through PromQL: a function of it, and the sample in
    // Prometheus' JSON (count, sum, the zero bucket and three buckets).
    let got = promapi::query(
        &c,
        &strata.url,
        "histogram_count(rw2_latency_seconds)",
        at,
        None,
    )
    .await
    .expect("query");
    assert_eq!(got.single_value(), Some(7.5));
    let params = [
        ("query", "rw2_latency_seconds".to_string()),
        ("time", promapi::api_time(at)),
    ];
    let v = promapi::get(&c, &strata.url, "/api/v1/query", &params, None)
        .await
        .expect("query");
    let h = &v["result"][0]["histogram"][1];
    assert_eq!(h["count"], "7.5", "{v}");
    assert_eq!(h["sum"], "42.25", "{v}");
    assert_eq!(
        h["buckets"][0],
        serde_json::json!([3, "-0.0001", "0.0001", "0.5"]),
        "{v}"
    );
    assert_eq!(h["buckets"].as_array().map(Vec::len), Some(4), "{v}");

    // The exemplar and the metadata through their APIs.
    let params = [
        ("query", "rw2_requests_total".to_string()),
        ("start", promapi::api_time(t0 - 1000)),
        ("end", promapi::api_time(at)),
    ];
    let ex = promapi::get(&c, &strata.url, "/api/v1/query_exemplars", &params, None)
        .await
        .expect("query_exemplars");
    let ex = ex.to_string();
    assert!(
        ex.contains(r#""trace_id":"4bf92f3577b34da6""#) && ex.contains(r#""value":"20""#),
        "{ex}"
    );
    let meta = promapi::get(&c, &strata.url, "/api/v1/metadata", &[], None)
        .await
        .expect("metadata");
    assert_eq!(meta["rw2_requests_total"][0]["type"], "counter", "{meta}");
    assert_eq!(meta["rw2_requests_total"][0]["help"], "Requests served.");
    assert_eq!(
        meta["rw2_latency_seconds"][0]["type"], "histogram",
        "{meta}"
    );
    assert_eq!(meta["rw2_latency_seconds"][0]["unit"], "seconds");

    // A partial write: 400 naming the fault, headers count what was stored.
    let mut sy = v2::SymbolTable::default();
    let ok = v2::TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "rw2_partial"), ("job", "rw2")]),
        samples: vec![Sample {
            value: 1.0,
            timestamp: t0,
        }],
        ..Default::default()
    };
    let bad = v2::TimeSeries {
        labels_refs: vec![1, 2, 3, 99],
        samples: vec![Sample {
            value: 1.0,
            timestamp: t0,
        }],
        ..Default::default()
    };
    let req = v2::Request {
        symbols: sy.into_symbols(),
        timeseries: vec![ok, bad],
    };
    let r = post(
        &c,
        &strata.write_url(),
        V2_TYPE,
        snappy(&req.encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("1 of 2 series rejected")
            && r.body.contains("label reference 99 is out of range"),
        "{}",
        r.body
    );
    assert_eq!(r.written, [Some(1), Some(0), Some(0)]);
    let got = promapi::query(&c, &strata.url, "rw2_partial", t0, None)
        .await
        .expect("query");
    assert_eq!(got.single_value(), Some(1.0));

    // Unknown message or encoding: 415, which a 2.0 sender may retry as 1.0.
    let r = post(
        &c,
        &strata.write_url(),
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        snappy(&req.encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);
    let resp = c
        .post(strata.write_url())
        .header("Content-Type", V2_TYPE)
        .header("Content-Encoding", "zstd")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 415);
}
