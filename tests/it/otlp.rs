//! OTLP metrics against the real binary: a protobuf request (every metric
//! type, a delta sum that is rejected in `partial_success`) and an OTLP/JSON
//! request, read back through `/api/v1/query` and `/api/v1/series`; the
//! native histogram from the exponential histogram is checked in the
//! sidecar objects on disk (querying native histograms is not built yet).

use std::path::{Path, PathBuf};

use ingest::otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use ingest::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use ingest::otlp::proto::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use ingest::otlp::proto::resource::v1::Resource;
use prost::Message;
use strata_tests::Strata;
use strata_tests::promapi::{self, QueryResult};
use strata_tests::remote_write::now_ms;

use crate::{Scratch, client};

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn number(t_ms: i64, v: f64, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        time_unix_nano: t_ms as u64 * 1_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: format!("{name} for the e2e test"),
        data: Some(data),
        ..Default::default()
    }
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

fn protobuf_request(t: i64) -> ExportMetricsServiceRequest {
    let ns = t as u64 * 1_000_000;
    let metrics = vec![
        metric(
            "e2e.otlp.memory",
            "By",
            Data::Gauge(Gauge {
                data_points: vec![number(t, 2048.0, &[("pool", "heap")])],
            }),
        ),
        metric(
            "e2e.otlp.requests",
            "{request}",
            Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    exemplars: vec![Exemplar {
                        time_unix_nano: ns,
                        trace_id: (1..=16).collect(),
                        span_id: (1..=8).collect(),
                        value: Some(exemplar::Value::AsDouble(1.0)),
                        ..Default::default()
                    }],
                    ..number(t, 17.0, &[("http.method", "GET")])
                }],
                aggregation_temporality: CUMULATIVE,
                is_monotonic: true,
            }),
        ),
        metric(
            "e2e.otlp.delta",
            "",
            Data::Sum(Sum {
                data_points: vec![number(t, 1.0, &[])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            }),
        ),
        metric(
            "e2e.otlp.duration",
            "s",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: ns,
                    count: 6,
                    sum: Some(4.5),
                    bucket_counts: vec![1, 2, 3],
                    explicit_bounds: vec![0.5, 1.0],
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            }),
        ),
        metric(
            "e2e.otlp.rpc",
            "ms",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: ns,
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.5,
                    }],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "e2e.otlp.size",
            "By",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    time_unix_nano: ns,
                    count: 5,
                    sum: Some(40.0),
                    scale: 10,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: 0,
                        bucket_counts: vec![1, 1, 1, 1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "pod-7"),
                    kv("k8s.cluster.name", "east"),
                ],
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

async fn query(c: &reqwest::Client, s: &Strata, expr: &str, at_ms: i64) -> QueryResult {
    promapi::query(c, &s.url, expr, at_ms, None)
        .await
        .unwrap_or_else(|e| panic!("query {expr}: {e:#}"))
}

fn sidecar_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            sidecar_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "sidecar") {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_protobuf_and_json() {
    let scratch = Scratch::new("otlp");
    let data = scratch.sub("strata-data");
    let strata = Strata::start_local(&data, &scratch.path()).await;
    let c = client();
    let t = now_ms() - 60_000;
    let url = format!("{}/api/v1/otlp/v1/metrics", strata.url);

    // --- Protobuf: every point but the delta one is stored.
    let resp = c
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .body(protobuf_request(t).encode_to_vec())
        .send()
        .await
        .expect("POST protobuf");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().await.expect("body");
    let partial = ExportMetricsServiceResponse::decode(body.as_ref())
        .expect("ExportMetricsServiceResponse")
        .partial_success
        .expect("partial_success for the delta sum");
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("e2e.otlp.delta"),
        "{}",
        partial.error_message
    );

    // --- OTLP/JSON, the other path.
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"js"}}}}]}},
           "scopeMetrics":[{{"metrics":[{{"name":"e2e.otlp.json.temp","unit":"Cel",
             "gauge":{{"dataPoints":[{{"timeUnixNano":"{}","asDouble":21.5,
               "attributes":[{{"key":"room","value":{{"stringValue":"lab"}}}}]}}]}}}}]}}]}}]}}"#,
        t as u64 * 1_000_000
    );
    let resp = c
        .post(format!("{}/otlp/v1/metrics", strata.url))
        .header("Content-Type", "application/json")
        .body(json)
        .send()
        .await
        .expect("POST JSON");
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON response");
    assert!(
        body.get("partialSuccess").is_none_or(|p| p.is_null()),
        "{body}"
    );

    // --- Bad input.
    let resp = c
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .expect("POST garbage");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .post(&url)
        .header("Content-Type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("POST text");
    assert_eq!(resp.status().as_u16(), 415);

    // --- Read back.
    let at = t + 1000;
    let job = r#"instance="pod-7", job="shop/checkout""#;
    let cases = [
        (
            "e2e_otlp_memory_bytes",
            format!(r#"{{__name__="e2e_otlp_memory_bytes", {job}, pool="heap"}}"#),
            2048.0,
        ),
        (
            "e2e_otlp_requests_total",
            format!(r#"{{__name__="e2e_otlp_requests_total", http_method="GET", {job}}}"#),
            17.0,
        ),
        (
            r#"e2e_otlp_duration_seconds_bucket{le="1"}"#,
            format!(r#"{{__name__="e2e_otlp_duration_seconds_bucket", {job}, le="1"}}"#),
            3.0,
        ),
        (
            r#"e2e_otlp_duration_seconds_bucket{le="+Inf"}"#,
            format!(r#"{{__name__="e2e_otlp_duration_seconds_bucket", {job}, le="+Inf"}}"#),
            6.0,
        ),
        (
            "e2e_otlp_duration_seconds_sum",
            format!(r#"{{__name__="e2e_otlp_duration_seconds_sum", {job}}}"#),
            4.5,
        ),
        (
            "e2e_otlp_rpc_milliseconds",
            format!(r#"{{__name__="e2e_otlp_rpc_milliseconds", {job}, quantile="0.5"}}"#),
            2.5,
        ),
        (
            "e2e_otlp_rpc_milliseconds_count",
            format!(r#"{{__name__="e2e_otlp_rpc_milliseconds_count", {job}}}"#),
            4.0,
        ),
        (
            "target_info",
            format!(r#"{{__name__="target_info", {job}, k8s_cluster_name="east"}}"#),
            1.0,
        ),
        (
            "e2e_otlp_json_temp_celsius",
            r#"{__name__="e2e_otlp_json_temp_celsius", job="js", room="lab"}"#.to_string(),
            21.5,
        ),
    ];
    for (expr, labels, v) in cases {
        let q = query(&c, &strata, expr, at).await;
        assert_eq!(q.series.len(), 1, "{expr}: {q:?}");
        assert_eq!(q.series.get(&labels), Some(&vec![(at, v)]), "{expr}: {q:?}");
    }
    let delta = query(&c, &strata, r#"{__name__=~"e2e_otlp_delta.*"}"#, at).await;
    assert!(
        delta.series.is_empty(),
        "the delta sum is not stored: {delta:?}"
    );
    let names = promapi::series(
        &c,
        &strata.url,
        r#"{job="shop/checkout"}"#,
        t - 1000,
        t + 1000,
        None,
    )
    .await
    .expect("series");
    assert_eq!(names.len(), 11, "{names:?}");

    // --- Metadata and exemplars, served from the sidecar.
    let meta = promapi::get(
        &c,
        &strata.url,
        "/api/v1/metadata",
        &[("metric", "e2e_otlp_requests_total".to_string())],
        None,
    )
    .await
    .expect("metadata");
    assert_eq!(
        meta["e2e_otlp_requests_total"][0],
        serde_json::json!({"type": "counter", "help": "e2e.otlp.requests for the e2e test", "unit": "{request}"}),
        "{meta}"
    );
    let ex = promapi::get(
        &c,
        &strata.url,
        "/api/v1/query_exemplars",
        &[("query", "e2e_otlp_requests_total".to_string())],
        None,
    )
    .await
    .expect("exemplars");
    assert_eq!(
        ex[0]["exemplars"][0]["labels"],
        serde_json::json!({"trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "0102030405060708"}),
        "{ex}"
    );
    assert_eq!(ex[0]["seriesLabels"]["job"], "shop/checkout", "{ex}");

    // --- The exponential histogram is a native histogram in a sidecar:
    // scale 10 downscaled to schema 8, four buckets merged into one.
    let mut files = Vec::new();
    sidecar_files(&data, &mut files);
    let mut found = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).expect("read sidecar");
        let (_, sc) =
            storage::sidecar::decode(&f.display().to_string(), &bytes).expect("decode sidecar");
        found.extend(
            sc.histograms
                .into_iter()
                .filter(|h| h.labels.metric_name() == Some("e2e_otlp_size_bytes")),
        );
    }
    assert_eq!(found.len(), 1, "sidecars: {files:?}");
    assert_eq!(found[0].labels.get("job"), Some("shop/checkout"));
    let h = &found[0].histograms[0];
    assert_eq!((h.schema, h.timestamp, h.sum), (8, t, 40.0));
    assert_eq!(h.positive_deltas, [4]);
    assert_eq!(h.count, Some(storage::histogram::Count::Int(5)));
}
