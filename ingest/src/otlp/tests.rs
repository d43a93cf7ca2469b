//! The OTLP route through the router (no socket): encodings, the OTLP/HTTP
//! response conventions, storage of float series and native histograms.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::http::Request;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point::Buckets,
    metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use storage::{MatchOp, Matcher, Storage};
use tower::ServiceExt;

use super::*;
use crate::clock::ManualClock;
use crate::group_commit::GroupCommitter;
use crate::ha::{HaTracker, HaTrackerConfig};
use crate::http::{IngestConfig, IngestState, router_with};
use crate::metrics::IngestMetrics;
use crate::series_cache::SeriesCache;

const T0_NS: u64 = 1_700_000_000_000_000_000;
const T0_MS: i64 = 1_700_000_000_000;
const PATH: &str = "/api/v1/otlp/v1/metrics";

fn app(storage: &Storage) -> (Router, IngestMetrics) {
    app_with(storage, IngestConfig::default())
}

fn app_with(storage: &Storage, config: IngestConfig) -> (Router, IngestMetrics) {
    let metrics = IngestMetrics::default();
    let clock = ManualClock::new(T0_MS);
    let committer = GroupCommitter::start(
        storage.clone(),
        config.group_commit.clone(),
        metrics.clone(),
    );
    let ha = HaTracker::new(
        storage.object_store().clone(),
        config.ha_tracker.clone(),
        clock.clone(),
        metrics.clone(),
    );
    let router = router_with(
        IngestState {
            config,
            committer,
            metrics: metrics.clone(),
            series_cache: Arc::new(SeriesCache::new(100)),
            default_tenant: TenantId::new("default").expect("tenant"),
            limits: Arc::default(),
        },
        Arc::new(ha),
        clock,
    );
    (router, metrics)
}

struct Reply {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

async fn post(app: &Router, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut req = Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body")
        .to_vec();
    Reply {
        status,
        content_type,
        body,
    }
}

const PB: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn number(t_ns: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: t_ns,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![string_kv("service.name", "svc")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn sum(name: &str, temporality: AggregationTemporality, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

async fn dump(storage: &Storage, tenant: &str) -> Vec<String> {
    let all = [Matcher::new(MatchOp::Regex, "__name__", ".+").expect("matcher")];
    let mut out: Vec<String> = storage
        .select(
            &TenantId::new(tenant).expect("tenant"),
            &all,
            i64::MIN,
            i64::MAX,
        )
        .await
        .expect("select")
        .iter()
        .flat_map(|s| {
            s.samples
                .iter()
                .map(move |x| format!("{} {}@{}", s.labels, x.v, x.t - T0_MS))
        })
        .collect();
    out.sort();
    out
}

fn response(r: &Reply) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse::decode(r.body.as_slice())
        .expect("an ExportMetricsServiceResponse")
}

fn status(r: &Reply) -> Status {
    Status::decode(r.body.as_slice()).expect("a google.rpc.Status")
}

#[tokio::test]
async fn protobuf_and_json_requests_are_stored_at_both_paths() {
    let storage = Storage::in_memory();
    let (app, _) = app(&storage);
    let req = request(vec![sum(
        "requests",
        AggregationTemporality::Cumulative,
        vec![number(T0_NS, 5.0)],
    )]);
    let r = post(
        &app,
        PATH,
        &[PB, ("X-Scope-OrgID", "team")],
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "application/x-protobuf");
    assert_eq!(response(&r).partial_success, None, "everything accepted");

    let json = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"temp","unit":"Cel","gauge":{"dataPoints":[{"timeUnixNano":"1700000001000000000","asDouble":21.5}]}}
    ]}]}]}"#;
    let r = post(
        &app,
        "/otlp/v1/metrics",
        &[JSON, ("X-Scope-OrgID", "team")],
        json.to_vec(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON response");
    assert!(
        body.get("partialSuccess").is_none_or(|p| p.is_null()),
        "{body}"
    );

    assert_eq!(
        dump(&storage, "team").await,
        [r#"requests_total{job="svc"} 5@0"#, "temp_celsius 21.5@1000"]
    );
    // Metadata went to the sidecar.
    let meta = storage
        .metadata(&TenantId::new("team").expect("tenant"))
        .await
        .expect("metadata");
    assert_eq!(meta["temp_celsius"][0].unit, "Cel");
    assert_eq!(
        meta["requests_total"][0].metric_type,
        storage::sidecar::MetricType::Counter
    );
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let storage = Storage::in_memory();
    let (app, _) = app(&storage);
    let req = request(vec![gauge("g", vec![number(T0_NS, 1.0)])]);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&req.encode_to_vec()).expect("gzip");
    let body = e.finish().expect("gzip");
    let r = post(&app, PATH, &[PB, ("Content-Encoding", "gzip")], body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(dump(&storage, "default").await, [r#"g{job="svc"} 1@0"#]);
    let r = post(&app, PATH, &[PB, ("Content-Encoding", "br")], vec![1, 2]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_status_message_in_the_requests_encoding() {
    let storage = Storage::in_memory();
    let (app, _) = app(&storage);
    let r = post(&app, PATH, &[PB], b"\xff\xff\xff garbage".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type, "application/x-protobuf");
    let s = status(&r);
    assert_eq!(s.code, 3);
    assert!(
        s.message.contains("invalid OTLP protobuf request body"),
        "{}",
        s.message
    );

    let r = post(&app, PATH, &[JSON], br#"{"resourceMetrics": 7}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON status");
    assert_eq!(body["code"], 3);
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("invalid OTLP JSON request body"), "{msg}");

    let r = post(&app, PATH, &[JSON], b"{\"resourceMetrics\": [".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(dump(&storage, "default").await, Vec::<String>::new());
}

#[tokio::test]
async fn unknown_or_missing_content_types_are_415() {
    let storage = Storage::in_memory();
    let (app, _) = app(&storage);
    let body = request(vec![gauge("g", vec![number(T0_NS, 1.0)])]).encode_to_vec();
    for headers in [vec![("Content-Type", "text/plain")], vec![]] {
        let r = post(&app, PATH, &headers, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let s = status(&r);
        assert!(
            s.message
                .contains("application/x-protobuf, application/json"),
            "{}",
            s.message
        );
    }
    // Parameters do not matter.
    let r = post(
        &app,
        PATH,
        &[("Content-Type", "application/x-protobuf; charset=utf-8")],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn delta_points_are_reported_in_partial_success_or_refused_alone() {
    let storage = Storage::in_memory();
    let (app, metrics) = app(&storage);
    let mixed = request(vec![
        sum(
            "d",
            AggregationTemporality::Delta,
            vec![number(T0_NS, 1.0), number(T0_NS, 2.0)],
        ),
        gauge("g", vec![number(T0_NS, 3.0)]),
    ]);
    let r = post(&app, PATH, &[PB], mixed.encode_to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    let partial = response(&r).partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial.error_message.contains("delta temporality"),
        "{}",
        partial.error_message
    );
    assert_eq!(dump(&storage, "default").await, [r#"g{job="svc"} 3@0"#]);
    assert_eq!(metrics.otlp_points_rejected.get(), 2);

    // Nothing left to store: 400, nothing stored.
    let only_delta = request(vec![sum(
        "d",
        AggregationTemporality::Delta,
        vec![number(T0_NS + 1_000_000_000, 1.0)],
    )]);
    let r = post(
        &app,
        PATH,
        &[JSON],
        serde_json::to_vec(&only_delta).expect("json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON status");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("1 of 1 data points rejected") && msg.contains("delta"),
        "{msg}"
    );
    assert_eq!(dump(&storage, "default").await, [r#"g{job="svc"} 3@0"#]);

    // An empty request is a success with nothing to do.
    let r = post(&app, PATH, &[PB], Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn exponential_histograms_are_stored_as_native_histograms() {
    let storage = Storage::in_memory();
    let (app, _) = app(&storage);
    let p = ExponentialHistogramDataPoint {
        time_unix_nano: T0_NS,
        count: 3,
        sum: Some(7.0),
        scale: 2,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1, 2],
        }),
        ..Default::default()
    };
    let m = Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![p],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let r = post(&app, PATH, &[PB], request(vec![m]).encode_to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    let tenant = TenantId::new("default").expect("tenant");
    let hs = storage
        .select_histograms(
            &tenant,
            &[Matcher::eq("__name__", "latency_seconds")],
            i64::MIN,
            i64::MAX,
        )
        .await
        .expect("histograms");
    assert_eq!(hs.len(), 1);
    assert_eq!(hs[0].labels.get("job"), Some("svc"));
    let h = &hs[0].histograms[0];
    assert_eq!((h.schema, h.timestamp, h.sum), (2, T0_MS, 7.0));
    assert_eq!(h.positive_deltas, [1, 1]);
    assert_eq!(
        dump(&storage, "default").await,
        Vec::<String>::new(),
        "no float series"
    );
}

#[tokio::test]
async fn ha_pairs_deduplicate_float_and_histogram_series() {
    let storage = Storage::in_memory();
    let config = IngestConfig {
        ha_tracker: HaTrackerConfig {
            accept_ha_samples: true,
            ..HaTrackerConfig::default()
        },
        ..IngestConfig::default()
    };
    let (app, _) = app_with(&storage, config);
    let from = |replica: &str, v: f64| {
        let attrs = vec![
            string_kv("cluster", "c1"),
            string_kv("__replica__", replica),
        ];
        let mut p = number(T0_NS, v);
        p.attributes = attrs.clone();
        let h = ExponentialHistogramDataPoint {
            attributes: attrs,
            time_unix_nano: T0_NS,
            count: 1,
            scale: 0,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        request(vec![
            gauge("g", vec![p]),
            Metric {
                name: "h".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![h],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
        ])
        .encode_to_vec()
    };
    let r = post(&app, PATH, &[PB], from("a", 1.0)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(response(&r).partial_success, None);
    // The standby replica: 200 (OTLP has no 202), everything reported as
    // not stored, with the reason.
    let r = post(&app, PATH, &[PB], from("b", 2.0)).await;
    assert_eq!(r.status, StatusCode::OK);
    let partial = response(&r).partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial.error_message.contains("elected replica is \"a\""),
        "{}",
        partial.error_message
    );

    assert_eq!(
        dump(&storage, "default").await,
        [r#"g{cluster="c1", job="svc"} 1@0"#]
    );
    let hs = storage
        .select_histograms(
            &TenantId::new("default").expect("tenant"),
            &[Matcher::eq("__name__", "h")],
            i64::MIN,
            i64::MAX,
        )
        .await
        .expect("histograms");
    assert_eq!(hs.len(), 1);
    assert_eq!(
        hs[0].labels.to_string(),
        r#"h{cluster="c1", job="svc"}"#,
        "replica label removed"
    );
}
