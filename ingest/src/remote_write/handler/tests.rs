//! The remote-write endpoint over HTTP (router, no socket): content
//! negotiation, 2.0's written-count headers, what lands in storage for both
//! versions, HA pairs on requests without floats.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use prost::Message;
use storage::histogram::{BucketSpan, Count, Histogram};
use storage::sidecar::MetricType;
use storage::{Matcher, Storage, TenantId};
use tower::ServiceExt;

use super::*;
use crate::http::{IngestConfig, IngestState, router};
use crate::metrics::IngestMetrics;
use crate::proto::{self, v2};
use crate::series_cache::SeriesCache;
use crate::{GroupCommitter, HaTrackerConfig};

const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn app(storage: &Storage, config: IngestConfig) -> Router {
    let committer = GroupCommitter::start(
        storage.clone(),
        config.group_commit.clone(),
        IngestMetrics::default(),
    );
    router(IngestState {
        config,
        committer,
        metrics: IngestMetrics::default(),
        series_cache: Arc::new(SeriesCache::new(1000)),
        default_tenant: TenantId::new("default").expect("tenant"),
        limits: Arc::default(),
    })
}

fn tenant() -> TenantId {
    TenantId::new("default").expect("tenant")
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    /// The three written counts, `None` where a header is missing.
    fn written(&self) -> [Option<usize>; 3] {
        [SAMPLES_WRITTEN, HISTOGRAMS_WRITTEN, EXEMPLARS_WRITTEN].map(|h| {
            self.headers
                .get(h)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        })
    }
}

async fn post(app: &Router, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = Request::post("/api/v1/write").header("Content-Encoding", "snappy");
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn histogram(t: i64) -> Histogram {
    Histogram {
        count: Some(Count::Int(3)),
        sum: 6.0,
        schema: 2,
        zero_threshold: 0.001,
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_deltas: vec![2, -1],
        timestamp: t,
        ..Default::default()
    }
}

/// A 2.0 request: a counter with an exemplar, a native histogram, both with
/// metadata.
fn full_v2(extra: &[(&str, &str)]) -> v2::Request {
    let mut sy = v2::SymbolTable::default();
    let with = |base: &[(&'static str, &'static str)]| {
        let mut l: Vec<(&str, &str)> = base.to_vec();
        l.extend_from_slice(extra);
        l.sort();
        l
    };
    let counter = v2::TimeSeries {
        labels_refs: sy.label_refs(&with(&[("__name__", "reqs_total"), ("job", "api")])),
        samples: vec![
            proto::Sample {
                value: 1.0,
                timestamp: 1_000,
            },
            proto::Sample {
                value: 2.0,
                timestamp: 2_000,
            },
        ],
        exemplars: vec![v2::Exemplar {
            labels_refs: sy.label_refs(&[("trace_id", "t-1")]),
            value: 1.0,
            timestamp: 1_000,
        }],
        metadata: Some(v2::Metadata {
            r#type: 1,
            help_ref: sy.intern("Requests."),
            unit_ref: 0,
        }),
        ..Default::default()
    };
    let hist = v2::TimeSeries {
        labels_refs: sy.label_refs(&with(&[("__name__", "latency_seconds"), ("job", "api")])),
        histograms: vec![histogram(1_500)],
        metadata: Some(v2::Metadata {
            r#type: 3,
            help_ref: sy.intern("Latency."),
            unit_ref: sy.intern("seconds"),
        }),
        ..Default::default()
    };
    v2::Request {
        symbols: sy.into_symbols(),
        timeseries: vec![counter, hist],
    }
}

#[test]
fn content_negotiation_follows_prometheus() {
    let cases: [(Option<&str>, Option<&str>, Option<Version>); 14] = [
        (None, None, Some(Version::V1)),
        (Some("application/x-protobuf"), None, Some(Version::V1)),
        (
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("snappy"),
            Some(Version::V1),
        ),
        (Some(V2_TYPE), Some("snappy"), Some(Version::V2)),
        (
            Some("application/x-protobuf; proto=io.prometheus.write.v2.Request"),
            Some("SNAPPY"),
            Some(Version::V2),
        ),
        (
            Some("application/x-protobuf;charset=utf-8;proto=io.prometheus.write.v2.Request"),
            None,
            Some(Version::V2),
        ),
        (
            Some("application/x-protobuf;charset=utf-8"),
            None,
            Some(Version::V1),
        ),
        (Some(V2_TYPE), Some("gzip"), None),
        (Some("application/x-protobuf"), Some("zstd"), None),
        (
            Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
            None,
            None,
        ),
        (Some("application/x-protobuf;proto"), None, None),
        (Some("application/json"), None, None),
        (Some("text/plain;proto=prometheus.WriteRequest"), None, None),
        (Some(""), None, None),
    ];
    for (ct, enc, want) in cases {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert("content-type", HeaderValue::from_str(ct).expect("header"));
        }
        if let Some(enc) = enc {
            h.insert(
                "content-encoding",
                HeaderValue::from_str(enc).expect("header"),
            );
        }
        match (negotiate(&h), want) {
            (Ok(got), Some(want)) => assert_eq!(got, want, "{ct:?} {enc:?}"),
            (Err(e), None) => {
                assert_eq!(
                    e.status(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "{ct:?} {enc:?}"
                );
                assert!(
                    e.to_string().contains("io.prometheus.write.v2.Request"),
                    "{e}"
                );
            }
            (got, want) => panic!("{ct:?} {enc:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn a_2_0_request_stores_every_part_and_reports_what_it_wrote() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let r = post(&app, Some(V2_TYPE), snappy(&full_v2(&[]).encode_to_vec())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.written(), [Some(2), Some(1), Some(1)]);

    let all = [Matcher::new(storage::MatchOp::Equal, "job", "api").expect("matcher")];
    let floats = storage
        .select(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("select");
    assert_eq!(floats.len(), 1);
    assert_eq!(floats[0].labels.metric_name(), Some("reqs_total"));
    assert_eq!(floats[0].samples.len(), 2);
    let hs = storage
        .select_histograms(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("histograms");
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].labels.metric_name(), Some("latency_seconds"));
    assert_eq!(
        hs[0].histograms,
        vec![histogram(1_500)],
        "stored losslessly"
    );
    let ex = storage
        .select_exemplars(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("exemplars");
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].exemplars[0].labels.get("trace_id"), Some("t-1"));
    let meta = storage.metadata(&tenant()).await.expect("metadata");
    assert_eq!(meta["reqs_total"][0].metric_type, MetricType::Counter);
    assert_eq!(meta["reqs_total"][0].help, "Requests.");
    assert_eq!(
        meta["latency_seconds"][0].metric_type,
        MetricType::Histogram
    );
    assert_eq!(meta["latency_seconds"][0].unit, "seconds");
}

#[tokio::test]
async fn a_partial_2_0_write_is_400_with_the_counts_of_what_was_stored() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let mut req = full_v2(&[]);
    // The histogram series also carries a sample: invalid, rejected alone.
    req.timeseries[1].samples.push(proto::Sample {
        value: 1.0,
        timestamp: 1,
    });
    let r = post(&app, Some(V2_TYPE), snappy(&req.encode_to_vec())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body
            .contains(r#"1 of 2 series rejected; first: series {__name__="latency_seconds", job="api"}: carries both samples and histograms"#),
        "{}",
        r.body
    );
    assert_eq!(r.written(), [Some(2), Some(0), Some(1)]);
    // Malformed as a whole: nothing written, and the headers say so.
    let r = post(&app, Some(V2_TYPE), snappy(b"\x22\x01\xff")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("remote write 2.0: protobuf decoding"),
        "{}",
        r.body
    );
    assert_eq!(r.written(), [Some(0), Some(0), Some(0)]);
    let r = post(&app, Some(V2_TYPE), b"not snappy".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.written(), [Some(0), Some(0), Some(0)]);
}

#[tokio::test]
async fn unsupported_content_is_415_and_1_0_answers_without_written_headers() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let r = post(
        &app,
        Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
        snappy(&full_v2(&[]).encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.body.contains("write.v3.Request"), "{}", r.body);
    assert_eq!(r.written(), [None, None, None]);

    // 1.0 with every extra field: histograms, exemplars, metadata stored.
    let v1 = proto::FullWriteRequest {
        timeseries: vec![proto::FullTimeSeries {
            labels: vec![proto::Label {
                name: "__name__".into(),
                value: "rpc_seconds".into(),
            }],
            samples: vec![],
            exemplars: vec![proto::Exemplar {
                labels: vec![proto::Label {
                    name: "trace_id".into(),
                    value: "z".into(),
                }],
                value: 0.2,
                timestamp: 0,
            }],
            histograms: vec![histogram(3_000)],
        }],
        metadata: vec![proto::MetricMetadata {
            r#type: 3,
            metric_family_name: "rpc_seconds".into(),
            help: "RPC latency.".into(),
            unit: "seconds".into(),
        }],
    };
    let r = post(
        &app,
        Some("application/x-protobuf"),
        snappy(&v1.encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.written(),
        [None, None, None],
        "1.0 answers as Prometheus does"
    );
    let all = [Matcher::new(storage::MatchOp::Equal, "__name__", "rpc_seconds").expect("m")];
    let hs = storage
        .select_histograms(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("histograms");
    assert_eq!(hs[0].histograms, vec![histogram(3_000)]);
    let ex = storage
        .select_exemplars(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("exemplars");
    // An exemplar without a time takes its series' newest (histogram) sample's.
    assert_eq!(ex[0].exemplars[0].timestamp, 3_000);
    let meta = storage.metadata(&tenant()).await.expect("metadata");
    assert_eq!(meta["rpc_seconds"][0].help, "RPC latency.");
}

#[tokio::test]
async fn ha_pairs_decide_on_requests_without_floats() {
    let storage = Storage::in_memory();
    let config = IngestConfig {
        ha_tracker: HaTrackerConfig {
            accept_ha_samples: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = app(&storage, config);
    let only_histograms = |replica: &'static str| {
        let mut req = full_v2(&[("cluster", "c1"), ("__replica__", replica)]);
        req.timeseries.remove(0);
        snappy(&req.encode_to_vec())
    };
    let r = post(&app, Some(V2_TYPE), only_histograms("a")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.written(), [Some(0), Some(1), Some(0)]);
    // The other replica of the cluster is not elected: 202, nothing stored.
    let r = post(&app, Some(V2_TYPE), only_histograms("b")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.written(), [Some(0), Some(0), Some(0)]);
    let all = [Matcher::new(storage::MatchOp::Equal, "cluster", "c1").expect("m")];
    let hs = storage
        .select_histograms(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("histograms");
    assert_eq!(hs.len(), 1);
    assert_eq!(
        hs[0].labels.get("__replica__"),
        None,
        "replica label removed"
    );
}

#[tokio::test]
async fn histogram_samples_count_against_the_ingestion_rate() {
    use crate::clock::SystemClock;
    use crate::limits::{IngestLimits, LimitMetrics, TenantIngestLimits};
    let storage = Storage::in_memory();
    let config = IngestConfig::default();
    let committer = GroupCommitter::start(
        storage.clone(),
        config.group_commit.clone(),
        IngestMetrics::default(),
    );
    // A burst of 2 samples, refilled at 1 per 1000 s: a request with one
    // float sample and two histogram samples needs 3.
    let limits = IngestLimits::new(
        TenantIngestLimits {
            ingestion_rate: 0.001,
            ingestion_burst: 2.0,
            ..Default::default()
        },
        Default::default(),
        Arc::new(SystemClock),
        LimitMetrics::default(),
    );
    let app = router(IngestState {
        config,
        committer,
        metrics: IngestMetrics::default(),
        series_cache: Arc::new(SeriesCache::new(10)),
        default_tenant: tenant(),
        limits: Arc::new(limits),
    });
    let mut sy = v2::SymbolTable::default();
    let req = v2::Request {
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: sy.label_refs(&[("__name__", "f")]),
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: sy.label_refs(&[("__name__", "h")]),
                histograms: vec![histogram(1), histogram(2)],
                ..Default::default()
            },
        ],
        symbols: sy.into_symbols(),
    };
    let r = post(&app, Some(V2_TYPE), snappy(&req.encode_to_vec())).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(
        r.body.contains("request of 3 samples refused"),
        "{}",
        r.body
    );
    assert_eq!(r.written(), [Some(0), Some(0), Some(0)]);
}
