//! Translation rules, one test per rule, on hand-built requests.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use storage::histogram::{BucketSpan, Count, ZeroCount};
use storage::sample::is_stale_nan;

use super::*;

const T0: u64 = 1_700_000_000_000_000_000; // ns
const T0_MS: i64 = 1_700_000_000_000;

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(AnyKind::StringValue(v.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, s(v))).collect()
}

fn request(resource: &[(&str, &str)], metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(OtlpResource {
                attributes: attrs(resource),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "my.library".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    },
                ),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: format!("{name} help"),
        data: Some(data),
        ..Default::default()
    }
}

fn point(attributes: &[(&str, &str)], t_ns: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(attributes),
        time_unix_nano: t_ns,
        start_time_unix_nano: t_ns - 60_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    temporality: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: monotonic,
        }),
    )
}

fn run(req: &ExportMetricsServiceRequest) -> Translated {
    translate(req, &SeriesLimits::default())
}

/// `labels value@t` of every float sample, sorted.
fn dump(t: &Translated) -> Vec<String> {
    let mut out: Vec<String> = t
        .series
        .iter()
        .flat_map(|s| {
            s.samples.iter().map(move |x| {
                let v = if is_stale_nan(x.v) {
                    "stale".to_string()
                } else {
                    x.v.to_string()
                };
                format!("{} {v}@{}", s.labels, x.t - T0_MS)
            })
        })
        .collect();
    out.sort();
    out
}

#[test]
fn job_and_instance_come_from_the_service_attributes() {
    let req = request(
        &[
            ("service.name", "checkout"),
            ("service.namespace", "shop"),
            ("service.instance.id", "pod-1"),
        ],
        vec![gauge(
            "queue.size",
            "",
            vec![point(
                &[("job", "ignored"), ("http.method", "GET"), ("empty", "")],
                T0,
                3.0,
            )],
        )],
    );
    let t = run(&req);
    assert_eq!(
        dump(&t),
        [r#"queue_size{http_method="GET", instance="pod-1", job="shop/checkout"} 3@0"#],
        "only identifying attributes: no target_info; empty values dropped"
    );
    // Without a namespace, job is the service name alone.
    let req = request(
        &[("service.name", "checkout")],
        vec![gauge("up", "", vec![point(&[], T0, 1.0)])],
    );
    assert_eq!(dump(&run(&req)), [r#"up{job="checkout"} 1@0"#]);
}

#[test]
fn attribute_names_are_normalized_and_colliding_ones_joined() {
    let req = request(
        &[],
        vec![gauge(
            "g",
            "",
            vec![point(
                &[
                    ("a.b", "dot"),
                    ("a-b", "dash"),
                    ("0x", "digit"),
                    ("_p", "under"),
                    ("__q", "kept"),
                ],
                T0,
                1.0,
            )],
        )],
    );
    // Joined in key order: "a-b" sorts before "a.b".
    assert_eq!(
        dump(&run(&req)),
        [r#"g{__q="kept", a_b="dash;dot", key_0x="digit", key_p="under"} 1@0"#]
    );
}

#[test]
fn scope_name_and_version_are_not_labels() {
    let t = run(&request(
        &[],
        vec![gauge("g", "", vec![point(&[], T0, 1.0)])],
    ));
    assert_eq!(t.series.len(), 1);
    assert_eq!(t.series[0].labels.len(), 1, "{}", t.series[0].labels);
}

#[test]
fn target_info_carries_the_other_resource_attributes() {
    let req = request(
        &[
            ("service.name", "api"),
            ("service.instance.id", "i-1"),
            ("host.name", "box"),
            ("cloud.region", "eu"),
        ],
        vec![gauge(
            "g",
            "",
            vec![
                point(&[], T0, 1.0),
                // 6 minutes later: samples at 0, 2.5, 5 and 6 minutes.
                point(&[], T0 + 360_000_000_000, 2.0),
            ],
        )],
    );
    let t = run(&req);
    let info: Vec<String> = dump(&t)
        .into_iter()
        .filter(|l| l.starts_with("target_info"))
        .collect();
    let labels = r#"target_info{cloud_region="eu", host_name="box", instance="i-1", job="api"}"#;
    assert_eq!(
        info,
        [
            format!("{labels} 1@0"),
            format!("{labels} 1@150000"),
            format!("{labels} 1@300000"),
            format!("{labels} 1@360000"),
        ]
    );
    // A point at time 0 next to one from today: the samples stop at 2000,
    // ending at the last point.
    let old = NumberDataPoint {
        time_unix_nano: 0,
        value: Some(number_data_point::Value::AsDouble(1.0)),
        ..Default::default()
    };
    let t = run(&request(
        &[("service.name", "api"), ("host.name", "box")],
        vec![gauge("g", "", vec![old, point(&[], T0, 2.0)])],
    ));
    let info = t
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("target_info"));
    let samples = info.map(|s| s.samples.as_slice()).unwrap_or_default();
    assert_eq!(samples.len(), 2001, "2000 steps and the last point");
    assert_eq!(samples.last().map(|s| s.t), Some(T0_MS));
    // Without service.name and service.instance.id: no target_info.
    let t = run(&request(
        &[("host.name", "box")],
        vec![gauge("g", "", vec![point(&[], T0, 1.0)])],
    ));
    assert_eq!(dump(&t), [r#"g 1@0"#]);
}

#[test]
fn gauges_and_cumulative_sums_are_float_samples_with_suffixes() {
    let cum = AggregationTemporality::Cumulative;
    let req = request(
        &[],
        vec![
            gauge("memory.usage", "By", vec![point(&[], T0, 1024.0)]),
            gauge("cpu.utilization", "1", vec![point(&[], T0, 0.5)]),
            sum(
                "http.requests",
                "{request}",
                true,
                cum,
                vec![point(&[], T0, 7.0)],
            ),
            sum("cpu.time", "s", true, cum, vec![point(&[], T0, 1.5)]),
            sum("queue.depth", "", false, cum, vec![point(&[], T0, 4.0)]),
            gauge(
                "ints",
                "",
                vec![NumberDataPoint {
                    time_unix_nano: T0,
                    value: Some(number_data_point::Value::AsInt(-42)),
                    ..Default::default()
                }],
            ),
        ],
    );
    let t = run(&req);
    assert_eq!(
        dump(&t),
        [
            "cpu_time_seconds_total 1.5@0",
            "cpu_utilization_ratio 0.5@0",
            "http_requests_total 7@0",
            "ints -42@0",
            "memory_usage_bytes 1024@0",
            "queue_depth 4@0",
        ]
    );
    assert_eq!((t.points, t.rejected, t.samples), (6, 0, 6));
    // Metadata per family, with the OTLP unit and description.
    let mut meta: Vec<(String, MetricType, String, String)> = t
        .sidecar
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.clone(),
                m.metric_type,
                m.help.clone(),
                m.unit.clone(),
            )
        })
        .collect();
    meta.sort();
    assert_eq!(
        meta[0],
        (
            "cpu_time_seconds_total".into(),
            MetricType::Counter,
            "cpu.time help".into(),
            "s".into()
        )
    );
    assert_eq!(meta[4].1, MetricType::Gauge, "memory_usage_bytes");
    assert_eq!(
        meta[5],
        (
            "queue_depth".into(),
            MetricType::Gauge,
            "queue.depth help".into(),
            String::new()
        )
    );
}

#[test]
fn histograms_become_classic_buckets_sum_and_count() {
    let p = HistogramDataPoint {
        attributes: attrs(&[("route", "/a")]),
        time_unix_nano: T0,
        count: 10,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 3, 4],
        explicit_bounds: vec![0.1, 1.0, 2.5],
        exemplars: vec![exemplar_at(0.7, &[]), exemplar_at(100.0, &[])],
        ..Default::default()
    };
    let no_sum = HistogramDataPoint {
        time_unix_nano: T0,
        count: 0,
        ..Default::default()
    };
    let req = request(
        &[],
        vec![
            metric(
                "http.server.duration",
                "s",
                Data::Histogram(Histogram {
                    data_points: vec![p],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            metric(
                "empty",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![no_sum],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
        ],
    );
    let t = run(&req);
    assert_eq!(
        dump(&t),
        [
            r#"empty_bucket{le="+Inf"} 0@0"#,
            r#"empty_count 0@0"#,
            r#"http_server_duration_seconds_bucket{le="+Inf", route="/a"} 10@0"#,
            r#"http_server_duration_seconds_bucket{le="0.1", route="/a"} 1@0"#,
            r#"http_server_duration_seconds_bucket{le="1", route="/a"} 3@0"#,
            r#"http_server_duration_seconds_bucket{le="2.5", route="/a"} 6@0"#,
            r#"http_server_duration_seconds_count{route="/a"} 10@0"#,
            r#"http_server_duration_seconds_sum{route="/a"} 12.5@0"#,
        ]
    );
    // Exemplars sit on the first bucket that holds their value.
    let on: Vec<(String, f64)> = t
        .sidecar
        .exemplars
        .iter()
        .flat_map(|s| {
            s.exemplars
                .iter()
                .map(move |e| (s.labels.get("le").unwrap_or("").to_string(), e.value))
        })
        .collect();
    assert_eq!(on, [("1".to_string(), 0.7), ("+Inf".to_string(), 100.0)]);
}

#[test]
fn summaries_become_quantiles_sum_and_count() {
    let p = SummaryDataPoint {
        time_unix_nano: T0,
        count: 5,
        sum: 9.0,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 1.5,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 3.0,
            },
        ],
        ..Default::default()
    };
    let t = run(&request(
        &[],
        vec![metric(
            "rpc.latency",
            "ms",
            Data::Summary(Summary {
                data_points: vec![p],
            }),
        )],
    ));
    assert_eq!(
        dump(&t),
        [
            "rpc_latency_milliseconds_count 5@0",
            "rpc_latency_milliseconds_sum 9@0",
            r#"rpc_latency_milliseconds{quantile="0.5"} 1.5@0"#,
            r#"rpc_latency_milliseconds{quantile="0.99"} 3@0"#,
        ]
    );
    assert_eq!(t.sidecar.metadata[0].metric_type, MetricType::Summary);
}

fn exp_point(scale: i32, offset: i32, counts: Vec<u64>) -> ExponentialHistogramDataPoint {
    let total: u64 = counts.iter().sum::<u64>() + 2;
    ExponentialHistogramDataPoint {
        attributes: attrs(&[("k", "v")]),
        time_unix_nano: T0,
        count: total,
        sum: Some(42.0),
        scale,
        zero_count: 2,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts,
        }),
        negative: None,
        ..Default::default()
    }
}

fn exp_metric(
    points: Vec<ExponentialHistogramDataPoint>,
    temporality: AggregationTemporality,
) -> Metric {
    metric(
        "request.size",
        "By",
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: temporality as i32,
        }),
    )
}

#[test]
fn exponential_histograms_become_native_histograms() {
    let mut p = exp_point(3, -2, vec![1, 0, 2, 0, 0, 0, 0, 5]);
    p.negative = Some(Buckets {
        offset: 0,
        bucket_counts: vec![4],
    });
    p.count += 4;
    p.exemplars = vec![exemplar_at(3.0, &[])];
    let t = run(&request(
        &[],
        vec![exp_metric(vec![p], AggregationTemporality::Cumulative)],
    ));
    assert!(t.series.is_empty(), "no float series: {:?}", dump(&t));
    assert_eq!(t.sidecar.histograms.len(), 1);
    let hs = &t.sidecar.histograms[0];
    assert_eq!(hs.labels.to_string(), r#"request_size_bytes{k="v"}"#);
    let h = &hs.histograms[0];
    assert_eq!(h.schema, 3);
    assert_eq!(h.timestamp, T0_MS);
    assert_eq!(h.count, Some(Count::Int(14)));
    assert_eq!(h.sum, 42.0);
    assert_eq!(h.zero_count, Some(ZeroCount::Int(2)));
    assert_eq!(h.zero_threshold, 1e-128);
    // OTLP index -2 is Prometheus index -1; buckets at -1, 1 and 6 (a gap
    // of four empty buckets starts a second span).
    assert_eq!(
        h.positive_spans,
        [
            BucketSpan {
                offset: -1,
                length: 3
            },
            BucketSpan {
                offset: 4,
                length: 1
            }
        ]
    );
    assert_eq!(h.positive_deltas, [1, -1, 2, 3]);
    assert_eq!(
        h.negative_spans,
        [BucketSpan {
            offset: 1,
            length: 1
        }]
    );
    assert_eq!(h.negative_deltas, [4]);
    assert_eq!(h.reset_hint, 0);
    assert_eq!(
        t.sidecar.exemplars[0].labels, hs.labels,
        "exemplar on the histogram series"
    );
    assert_eq!(t.sidecar.metadata[0].metric_type, MetricType::Histogram);
}

#[test]
fn scales_above_8_are_downscaled_by_merging_buckets() {
    // Scale 10 -> schema 8: four OTLP buckets merge into one. Indexes 3..=9
    // (counts 1..=7): 3 -> 0, 4..=7 -> 1, 8..=9 -> 2; plus one.
    let p = exp_point(10, 3, vec![1, 2, 3, 4, 5, 6, 7]);
    let t = run(&request(
        &[],
        vec![exp_metric(vec![p], AggregationTemporality::Cumulative)],
    ));
    let h = &t.sidecar.histograms[0].histograms[0];
    assert_eq!(h.schema, 8);
    assert_eq!(
        h.positive_spans,
        [BucketSpan {
            offset: 1,
            length: 3
        }]
    );
    // Absolute counts 1, 2+3+4+5 = 14, 6+7 = 13.
    assert_eq!(h.positive_deltas, [1, 13, -1]);
    // Negative offsets shift arithmetically: -5..=-1 at scale 9 -> -3..=-1
    // at 8 (pairs), plus one.
    let p = exp_point(9, -5, vec![1, 1, 1, 1, 1]);
    let h = &run(&request(
        &[],
        vec![exp_metric(vec![p], AggregationTemporality::Cumulative)],
    ))
    .sidecar
    .histograms[0]
        .histograms[0];
    assert_eq!(
        h.positive_spans,
        [BucketSpan {
            offset: -2,
            length: 3
        }]
    );
    assert_eq!(h.positive_deltas, [1, 1, 0]);
}

#[test]
fn scales_below_minus_4_are_rejected() {
    let t = run(&request(
        &[],
        vec![exp_metric(
            vec![exp_point(-5, 0, vec![1])],
            AggregationTemporality::Cumulative,
        )],
    ));
    assert_eq!((t.points, t.rejected), (1, 1));
    assert!(t.sidecar.histograms.is_empty());
    let msg = t.first_error.unwrap_or_default();
    assert!(msg.contains("scale -5"), "{msg}");
}

#[test]
fn delta_and_unspecified_temporality_are_rejected() {
    let delta = AggregationTemporality::Delta;
    let req = request(
        &[("service.name", "svc"), ("host.name", "h")],
        vec![
            sum(
                "requests",
                "",
                true,
                delta,
                vec![point(&[], T0, 1.0), point(&[], T0 + 1, 2.0)],
            ),
            metric(
                "latency",
                "s",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: T0,
                        count: 1,
                        ..Default::default()
                    }],
                    aggregation_temporality: delta as i32,
                }),
            ),
            exp_metric(vec![exp_point(0, 0, vec![1])], delta),
            sum(
                "unspecified",
                "",
                true,
                AggregationTemporality::Unspecified,
                vec![point(&[], T0, 1.0)],
            ),
            gauge("kept", "", vec![point(&[], T0, 5.0)]),
        ],
    );
    let t = run(&req);
    assert_eq!((t.points, t.rejected), (6, 5));
    assert!(t.sidecar.histograms.is_empty());
    let msg = t.first_error.clone().unwrap_or_default();
    assert!(
        msg.contains("\"requests\"") && msg.contains("delta temporality"),
        "{msg}"
    );
    assert_eq!(
        dump(&t),
        [
            r#"kept{job="svc"} 5@0"#,
            r#"target_info{host_name="h", job="svc"} 1@0"#,
        ]
    );
    let t = run(&request(
        &[],
        vec![sum(
            "u",
            "",
            true,
            AggregationTemporality::Unspecified,
            vec![point(&[], T0, 1.0)],
        )],
    ));
    assert!(
        t.first_error
            .unwrap_or_default()
            .contains("invalid aggregation temporality 0")
    );
}

#[test]
fn no_recorded_value_is_a_staleness_marker_and_nan_stays_nan() {
    let mut stale = point(&[], T0, 1.0);
    stale.flags = 1;
    let nan = point(&[("k", "nan")], T0, f64::NAN);
    let h = HistogramDataPoint {
        time_unix_nano: T0,
        count: 3,
        sum: Some(1.0),
        bucket_counts: vec![3, 0],
        explicit_bounds: vec![1.0],
        flags: 1,
        ..Default::default()
    };
    let mut e = exp_point(0, 0, vec![1]);
    e.flags = 1;
    let t = run(&request(
        &[],
        vec![
            gauge("g", "", vec![stale, nan]),
            metric(
                "h",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![h],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            exp_metric(vec![e], AggregationTemporality::Cumulative),
        ],
    ));
    assert_eq!(
        dump(&t),
        [
            "g stale@0",
            r#"g{k="nan"} NaN@0"#,
            r#"h_bucket{le="+Inf"} stale@0"#,
            r#"h_bucket{le="1"} stale@0"#,
            "h_count stale@0",
            "h_sum stale@0",
        ]
    );
    let nan_sample = t
        .series
        .iter()
        .find(|s| s.labels.get("k").is_some())
        .map(|s| s.samples[0].v);
    assert!(
        nan_sample.is_some_and(|v| v.is_nan() && !is_stale_nan(v)),
        "a NaN value is not a staleness marker"
    );
    let hist = &t.sidecar.histograms[0].histograms[0];
    assert!(is_stale_nan(hist.sum));
    assert_eq!(
        hist.count,
        Some(Count::Int(storage::sample::STALE_NAN_BITS))
    );
}

fn exemplar_at(v: f64, filtered: &[(&str, &str)]) -> OtlpExemplar {
    OtlpExemplar {
        filtered_attributes: attrs(filtered),
        time_unix_nano: T0 + 5_000_000,
        span_id: vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        trace_id: (0..16).collect(),
        value: Some(exemplar::Value::AsDouble(v)),
    }
}

#[test]
fn exemplars_of_sums_carry_trace_and_span_ids() {
    let mut p = point(&[], T0, 3.0);
    p.exemplars = vec![exemplar_at(1.0, &[("user.id", "42")])];
    let mut g = point(&[], T0, 3.0);
    g.exemplars = vec![exemplar_at(1.0, &[])];
    let long = "x".repeat(100);
    let mut big = point(&[("n", "2")], T0, 3.0);
    big.exemplars = vec![exemplar_at(1.0, &[("big", &long)])];
    let t = run(&request(
        &[],
        vec![
            sum(
                "c",
                "",
                true,
                AggregationTemporality::Cumulative,
                vec![p, big],
            ),
            gauge("g", "", vec![g]),
        ],
    ));
    assert_eq!(t.sidecar.exemplars.len(), 2, "gauge exemplars are dropped");
    let es = &t.sidecar.exemplars[0];
    assert_eq!(es.labels.to_string(), "c_total");
    let e = &es.exemplars[0];
    assert_eq!(
        e.labels.to_string(),
        r#"{span_id="deadbeef00010203", trace_id="000102030405060708090a0b0c0d0e0f", user_id="42"}"#
    );
    assert_eq!((e.value, e.timestamp), (1.0, T0_MS + 5));
    // Over 128 characters with the attributes: only the ids are kept.
    assert_eq!(t.sidecar.exemplars[1].exemplars[0].labels.len(), 2);
}

#[test]
fn attribute_values_are_written_as_opentelemetry_writes_them() {
    let any = |v: AnyKind| Some(AnyValue { value: Some(v) });
    let cases: Vec<(Option<AnyValue>, &str)> = vec![
        (any(AnyKind::BoolValue(true)), "true"),
        (any(AnyKind::IntValue(-7)), "-7"),
        (any(AnyKind::DoubleValue(1.5)), "1.5"),
        (any(AnyKind::DoubleValue(1e21)), "1e+21"),
        (any(AnyKind::DoubleValue(1e-7)), "1e-7"),
        (any(AnyKind::DoubleValue(100.0)), "100"),
        (any(AnyKind::BytesValue(b"hi".to_vec())), "aGk="),
        (
            any(AnyKind::ArrayValue(ArrayValue {
                values: vec![
                    s("a").unwrap_or_default(),
                    AnyValue {
                        value: Some(AnyKind::IntValue(1)),
                    },
                ],
            })),
            r#"["a",1]"#,
        ),
        (
            any(AnyKind::KvlistValue(KeyValueList {
                values: vec![kv("z", s("1")), kv("a", any(AnyKind::BoolValue(false)))],
            })),
            r#"{"a":false,"z":"1"}"#,
        ),
        (None, ""),
    ];
    for (v, want) in cases {
        assert_eq!(value_string(v.as_ref()), want);
    }
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(0.25), "0.25");
    assert_eq!(format_float(1e21), "1000000000000000000000");
}

#[test]
fn points_over_the_label_limits_are_rejected_alone() {
    let limits = SeriesLimits {
        max_label_names_per_series: 2,
        ..SeriesLimits::default()
    };
    let t = translate(
        &request(
            &[],
            vec![gauge(
                "g",
                "",
                vec![
                    point(&[("a", "1")], T0, 1.0),
                    point(&[("a", "1"), ("b", "2")], T0, 1.0),
                ],
            )],
        ),
        &limits,
    );
    assert_eq!((t.points, t.rejected, t.series.len()), (2, 1, 1));
    let msg = t.first_error.unwrap_or_default();
    assert!(msg.contains("3 labels exceed the limit of 2"), "{msg}");
}

#[test]
fn invalid_names_and_values_reject_their_points() {
    let mut no_value = point(&[], T0, 1.0);
    no_value.value = None;
    let t = run(&request(
        &[],
        vec![
            gauge("...", "", vec![point(&[], T0, 1.0)]),
            gauge(
                "ok",
                "",
                vec![
                    point(&[("..", "x")], T0, 1.0),
                    no_value,
                    point(&[], T0, 2.0),
                ],
            ),
        ],
    ));
    assert_eq!((t.points, t.rejected), (4, 3));
    assert_eq!(dump(&t), ["ok 2@0"]);
}

#[test]
fn samples_of_one_series_share_a_series() {
    let t = run(&request(
        &[],
        vec![gauge(
            "g",
            "",
            vec![point(&[], T0, 1.0), point(&[], T0 + 1_000_000_000, 2.0)],
        )],
    ));
    assert_eq!(t.series.len(), 1);
    assert_eq!(t.series[0].samples.len(), 2);
    // Labels are reused only for identical attributes.
    let t = run(&request(
        &[],
        vec![gauge(
            "g",
            "",
            vec![
                point(&[("a", "1")], T0, 1.0),
                point(&[("a", "2")], T0, 2.0),
                point(&[("a", "1")], T0 + 1_000_000, 3.0),
            ],
        )],
    ));
    assert_eq!(
        dump(&t),
        [r#"g{a="1"} 1@0"#, r#"g{a="1"} 3@1"#, r#"g{a="2"} 2@0"#]
    );
}

#[test]
fn otlp_json_follows_the_protobuf_json_mapping() {
    // OTLP/JSON: camelCase, 64-bit integers as strings, hex ids, enums as
    // numbers, unknown fields ignored.
    let body = br#"{
      "resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
        "scopeMetrics": [{
          "scope": {"name": "lib"},
          "unknownField": 1,
          "metrics": [
            {"name": "requests", "unit": "1",
             "sum": {"aggregationTemporality": 2, "isMonotonic": true,
               "dataPoints": [{"timeUnixNano": "1700000000000000000", "asInt": "12",
                 "attributes": [{"key": "code", "value": {"intValue": "200"}}],
                 "exemplars": [{"timeUnixNano": "1700000000000000000", "asDouble": 1.0,
                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}]}]}},
            {"name": "temp", "gauge": {"dataPoints": [{"timeUnixNano": 1700000000000000000, "asDouble": 21.5}]}}
          ]
        }]
      }]
    }"#;
    let req: ExportMetricsServiceRequest = serde_json::from_slice(body).expect("OTLP/JSON");
    let t = run(&req);
    assert_eq!(
        dump(&t),
        [
            r#"requests_total{code="200", job="js"} 12@0"#,
            r#"temp{job="js"} 21.5@0"#
        ]
    );
    let e = &t.sidecar.exemplars[0].exemplars[0];
    assert_eq!(
        e.labels.get("trace_id"),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(e.labels.get("span_id"), Some("eee19b7ec3c1b174"));
}
