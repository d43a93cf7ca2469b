//! Conformance of the 2.0 decoder with the Remote-Write 2.0 specification:
//! requests built by hand, field by field, and every rejection with its
//! message.

use prost::Message;
use storage::histogram::{BucketSpan, Count, ZeroCount};
use storage::sidecar::MetricType;

use super::*;
use crate::proto::v2::{Exemplar, Metadata, SymbolTable};
use crate::series_cache::SeriesCache;

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

fn histogram(t: i64) -> Histogram {
    Histogram {
        count: Some(Count::Int(4)),
        sum: 10.5,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: Some(ZeroCount::Int(1)),
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![1, 1],
        timestamp: t,
        ..Default::default()
    }
}

fn sample(t: i64, v: f64) -> Sample {
    Sample {
        value: v,
        timestamp: t,
    }
}

fn run(symbols: SymbolTable, timeseries: Vec<TimeSeries>) -> Result<Validated, IngestError> {
    let req = Request {
        symbols: symbols.into_symbols(),
        timeseries,
    };
    decode_validated(
        &snappy(&req.encode_to_vec()),
        1 << 20,
        &SeriesLimits::default(),
    )
}

#[test]
fn every_field_is_decoded() {
    let mut sy = SymbolTable::default();
    let float = TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "http_requests_total"), ("job", "api")]),
        samples: vec![sample(1_000, 1.0), sample(2_000, 3.0)],
        exemplars: vec![Exemplar {
            labels_refs: sy.label_refs(&[("trace_id", "abc123")]),
            value: 2.5,
            timestamp: 1_500,
        }],
        metadata: Some(Metadata {
            r#type: 1,
            help_ref: sy.intern("Requests served."),
            unit_ref: 0,
        }),
        created_timestamp: 500,
        ..Default::default()
    };
    let hist = TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "latency_seconds"), ("job", "api")]),
        histograms: vec![histogram(1_000), histogram(2_000)],
        metadata: Some(Metadata {
            r#type: 3,
            help_ref: sy.intern("Latency."),
            unit_ref: sy.intern("seconds"),
        }),
        ..Default::default()
    };
    let v = run(sy, vec![float, hist]).expect("valid request");
    assert_eq!((v.total, v.rejected, v.first_error.clone()), (2, 0, None));
    assert_eq!(v.series.len(), 1);
    let s = &v.series[0];
    assert_eq!(s.labels.to_string(), r#"http_requests_total{job="api"}"#);
    // The created timestamp adds no sample (Prometheus' default).
    assert_eq!(
        s.samples,
        vec![
            storage::Sample::new(1_000, 1.0),
            storage::Sample::new(2_000, 3.0)
        ]
    );
    assert_eq!(v.samples, 2);
    assert_eq!(v.sidecar.histograms.len(), 1);
    assert_eq!(
        v.sidecar.histograms[0].labels.to_string(),
        r#"latency_seconds{job="api"}"#
    );
    assert_eq!(
        v.sidecar.histograms[0].histograms,
        vec![histogram(1_000), histogram(2_000)]
    );
    assert_eq!(v.sidecar.exemplars.len(), 1);
    let e = &v.sidecar.exemplars[0];
    assert_eq!(e.labels, s.labels);
    assert_eq!(e.exemplars.len(), 1);
    assert_eq!(e.exemplars[0].labels.to_string(), r#"{trace_id="abc123"}"#);
    assert_eq!(
        (e.exemplars[0].value, e.exemplars[0].timestamp),
        (2.5, 1_500)
    );
    let meta: Vec<_> = v
        .sidecar
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.as_str(),
                m.metric_type,
                m.help.as_str(),
                m.unit.as_str(),
            )
        })
        .collect();
    assert_eq!(
        meta,
        vec![
            (
                "http_requests_total",
                MetricType::Counter,
                "Requests served.",
                ""
            ),
            (
                "latency_seconds",
                MetricType::Histogram,
                "Latency.",
                "seconds"
            ),
        ]
    );
    assert_eq!(v.first_labels, Some(s.labels.clone()));
}

#[test]
fn symbols_may_come_in_any_order_and_be_shared() {
    // Hand-made table: refs point anywhere, one symbol serves as name and value.
    let symbols: Vec<String> = ["", "job", "__name__", "up", "x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let req = Request {
        symbols,
        timeseries: vec![TimeSeries {
            labels_refs: vec![2, 3, 1, 1, 4, 3],
            samples: vec![sample(7, 1.0)],
            ..Default::default()
        }],
    };
    let v = validate(req, &SeriesLimits::default()).expect("valid");
    assert_eq!(v.series[0].labels.to_string(), r#"up{job="job", x="up"}"#);
}

#[test]
fn request_level_faults_refuse_the_whole_request() {
    let ts = |sy: &mut SymbolTable| TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "up")]),
        samples: vec![sample(1, 1.0)],
        ..Default::default()
    };
    let mut sy = SymbolTable::default();
    let t = ts(&mut sy);
    let mut symbols = sy.into_symbols();
    symbols[0] = "oops".into();
    let err = validate(
        Request {
            symbols,
            timeseries: vec![t.clone()],
        },
        &SeriesLimits::default(),
    )
    .expect_err("first symbol not empty");
    assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    assert!(
        err.to_string()
            .contains(r#"symbols[0] must be the empty string, got "oops""#),
        "{err}"
    );
    let err = validate(
        Request {
            symbols: vec![],
            timeseries: vec![t],
        },
        &SeriesLimits::default(),
    )
    .expect_err("no symbols");
    assert!(err.to_string().contains("symbols table is empty"), "{err}");
    // Not protobuf: 400 naming the message.
    let err = decode_validated(
        &snappy(b"\xff\xff\xff\xff garbage"),
        1 << 20,
        &SeriesLimits::default(),
    )
    .expect_err("garbage");
    assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    assert!(
        err.to_string()
            .contains("protobuf decoding of io.prometheus.write.v2.Request failed"),
        "{err}"
    );
    // Not snappy.
    let err = decode_validated(b"\x05not snappy", 1 << 20, &SeriesLimits::default())
        .expect_err("not snappy");
    assert!(matches!(err, IngestError::Snappy(_)), "{err}");
    // A symbol that is not UTF-8 is malformed protobuf (a proto3 string).
    let err = decode_validated(
        &snappy(&[0x22, 0x01, 0xff]),
        1 << 20,
        &SeriesLimits::default(),
    )
    .expect_err("not UTF-8");
    assert!(err.to_string().contains("v2.Request failed"), "{err}");
    // An empty request is valid and writes nothing.
    let v = run(SymbolTable::default(), vec![]).expect("empty");
    assert_eq!(
        (v.total, v.series.len(), v.sidecar.is_empty()),
        (0, 0, true)
    );
}

type Break = fn(&mut SymbolTable, &mut TimeSeries);

/// Every series-level fault: the series is rejected with a message naming
/// the fault, the valid series of the request is kept.
#[test]
fn series_level_faults_reject_the_series_only() {
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "odd labels_refs",
            |_, ts| {
                ts.labels_refs.pop();
            },
            "label labels_refs has odd length 3",
        ),
        (
            "label ref out of range",
            |_, ts| ts.labels_refs[3] = 999,
            "label reference 999 is out of range",
        ),
        (
            "unsorted labels",
            |sy, ts| ts.labels_refs = sy.label_refs(&[("job", "a"), ("__name__", "m")]),
            "not sorted",
        ),
        (
            "duplicate label names",
            |sy, ts| ts.labels_refs = sy.label_refs(&[("__name__", "m"), ("a", "1"), ("a", "2")]),
            "duplicate",
        ),
        (
            "empty label name",
            |sy, ts| ts.labels_refs = sy.label_refs(&[("", "v"), ("__name__", "m")]),
            "empty name",
        ),
        (
            "no metric name",
            |sy, ts| ts.labels_refs = sy.label_refs(&[("job", "a")]),
            "metric name",
        ),
        (
            "samples and histograms",
            |_, ts| ts.histograms = vec![histogram(5)],
            "carries both samples and histograms",
        ),
        (
            "samples out of order",
            |_, ts| ts.samples = vec![sample(2, 1.0), sample(1, 1.0)],
            "samples are not in timestamp order: samples 1 at 1 follows one at 2",
        ),
        (
            "two samples at one timestamp",
            |_, ts| ts.samples = vec![sample(2, 1.0), sample(2, 2.0)],
            "samples are not in timestamp order",
        ),
        (
            "histograms out of order",
            |_, ts| {
                ts.samples.clear();
                ts.histograms = vec![histogram(9), histogram(3)];
            },
            "histograms are not in timestamp order",
        ),
        (
            "invalid histogram",
            |_, ts| {
                ts.samples.clear();
                let mut h = histogram(1);
                h.schema = 9;
                ts.histograms = vec![h];
            },
            "histogram 0: histogram schema 9",
        ),
        (
            "histogram without count",
            |_, ts| {
                ts.samples.clear();
                let mut h = histogram(1);
                h.count = None;
                ts.histograms = vec![h];
            },
            "histogram has no count",
        ),
        (
            "exemplar ref out of range",
            |_, ts| {
                ts.exemplars = vec![Exemplar {
                    labels_refs: vec![1, 77],
                    value: 1.0,
                    timestamp: 1,
                }]
            },
            "exemplar label reference 77 is out of range",
        ),
        (
            "exemplar odd refs",
            |_, ts| {
                ts.exemplars = vec![Exemplar {
                    labels_refs: vec![1],
                    value: 1.0,
                    timestamp: 1,
                }]
            },
            "exemplar label labels_refs has odd length 1",
        ),
        (
            "exemplar label name invalid",
            |sy, ts| {
                ts.exemplars = vec![Exemplar {
                    labels_refs: sy.label_refs(&[("", "x")]),
                    value: 1.0,
                    timestamp: 1,
                }]
            },
            r#"exemplar label name "" is not valid"#,
        ),
        (
            "exemplar labels too long",
            |sy, ts| {
                ts.exemplars = vec![Exemplar {
                    labels_refs: sy.label_refs(&[("trace_id", &"x".repeat(121))]),
                    value: 1.0,
                    timestamp: 1,
                }]
            },
            "exemplar labels are 129 characters long, over the limit of 128",
        ),
        (
            "exemplar without time or sample",
            |sy, ts| {
                ts.samples.clear();
                ts.exemplars = vec![Exemplar {
                    labels_refs: sy.label_refs(&[("trace_id", "x")]),
                    value: 1.0,
                    timestamp: 0,
                }]
            },
            "exemplar without a timestamp in a series without samples",
        ),
        (
            "unknown metric type",
            |_, ts| {
                ts.metadata = Some(Metadata {
                    r#type: 8,
                    help_ref: 0,
                    unit_ref: 0,
                })
            },
            "metadata type 8 is not a known metric type",
        ),
        (
            "help ref out of range",
            |_, ts| {
                ts.metadata = Some(Metadata {
                    r#type: 1,
                    help_ref: 500,
                    unit_ref: 0,
                })
            },
            "help reference 500 is out of range",
        ),
        (
            "unit ref out of range",
            |_, ts| {
                ts.metadata = Some(Metadata {
                    r#type: 1,
                    help_ref: 0,
                    unit_ref: 501,
                })
            },
            "unit reference 501 is out of range",
        ),
    ];
    for (name, breaks, reason) in cases {
        let mut sy = SymbolTable::default();
        let good = TimeSeries {
            labels_refs: sy.label_refs(&[("__name__", "good")]),
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        };
        let mut bad = TimeSeries {
            labels_refs: sy.label_refs(&[("__name__", "bad"), ("job", "a")]),
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        };
        breaks(&mut sy, &mut bad);
        let v = run(sy, vec![good, bad]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((v.total, v.rejected), (2, 1), "{name}");
        assert_eq!(v.series.len(), 1, "{name}: the valid series is kept");
        assert_eq!(v.series[0].labels.metric_name(), Some("good"), "{name}");
        assert!(
            v.sidecar.is_empty(),
            "{name}: nothing of the bad series kept"
        );
        let err = v.error().expect("error").to_string();
        assert!(err.contains("1 of 2 series rejected"), "{name}: {err}");
        assert!(
            err.contains(reason),
            "{name}: {err:?} should contain {reason:?}"
        );
    }
}

#[test]
fn leniencies_of_prometheus_receiver() {
    let mut sy = SymbolTable::default();
    // Exemplar-only series (Prometheus' sender sends them so); an unset
    // exemplar time takes the newest sample's.
    let exemplar_only = TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "m")]),
        exemplars: vec![Exemplar {
            labels_refs: sy.label_refs(&[("trace_id", "t1")]),
            value: 4.0,
            timestamp: 10,
        }],
        ..Default::default()
    };
    let untimed = TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "n"), ("empty", "")]),
        samples: vec![sample(5, 1.0), sample(8, 2.0)],
        exemplars: vec![Exemplar {
            labels_refs: vec![],
            value: 1.5,
            timestamp: 0,
        }],
        // All-empty metadata is not stored.
        metadata: Some(Metadata::default()),
        ..Default::default()
    };
    // The same family's metadata from several series is stored once.
    let meta = |sy: &mut SymbolTable, job: &str| TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "g"), ("job", job)]),
        samples: vec![sample(1, 1.0)],
        metadata: Some(Metadata {
            r#type: 2,
            help_ref: sy.intern("A gauge."),
            unit_ref: 0,
        }),
        ..Default::default()
    };
    let (a, b) = (meta(&mut sy, "a"), meta(&mut sy, "b"));
    let v = run(sy, vec![exemplar_only, untimed, a, b]).expect("valid");
    assert_eq!((v.total, v.rejected), (4, 0), "{:?}", v.first_error);
    assert_eq!(v.series.len(), 3);
    assert_eq!(
        v.series[0].labels.to_string(),
        "n",
        "empty-valued label dropped"
    );
    let ex: Vec<_> = v
        .sidecar
        .exemplars
        .iter()
        .map(|s| (s.labels.to_string(), s.exemplars[0].timestamp))
        .collect();
    assert_eq!(ex, vec![("m".to_string(), 10), ("n".to_string(), 8)]);
    assert_eq!(v.sidecar.metadata.len(), 1);
    assert_eq!(v.sidecar.metadata[0].metric_family_name, "g");
    assert_eq!(v.first_labels.map(|l| l.to_string()).as_deref(), Some("m"));
}

#[test]
fn a_1_0_body_read_as_2_0_is_an_empty_request() {
    // Fields 1 to 3 are reserved in 2.0 so that a 1.0 WriteRequest sent with
    // the 2.0 content type decodes as an empty message, not garbage.
    let v1 = crate::proto::WriteRequest {
        timeseries: vec![crate::proto::TimeSeries {
            labels: vec![crate::proto::Label {
                name: "__name__".into(),
                value: "up".into(),
            }],
            samples: vec![sample(1, 1.0)],
            exemplars: vec![],
        }],
        metadata: vec![],
    };
    let v = decode_validated(
        &snappy(&v1.encode_to_vec()),
        1 << 20,
        &SeriesLimits::default(),
    )
    .expect("decodes");
    assert_eq!((v.total, v.series.len()), (0, 0));
}

#[test]
fn label_limits_apply() {
    let limits = SeriesLimits {
        max_label_names_per_series: 2,
        ..Default::default()
    };
    let mut sy = SymbolTable::default();
    let ts = TimeSeries {
        labels_refs: sy.label_refs(&[("__name__", "m"), ("a", "1"), ("b", "2")]),
        samples: vec![sample(1, 1.0)],
        ..Default::default()
    };
    let v = validate(
        Request {
            symbols: sy.into_symbols(),
            timeseries: vec![ts],
        },
        &limits,
    )
    .expect("decodes");
    let err = v.error().expect("rejected").to_string();
    assert!(err.contains("exceed the limit of 2 label names"), "{err}");
}

#[test]
fn the_series_cache_gives_what_validation_gives() {
    let cache = SeriesCache::new(100);
    let build = || {
        let mut sy = SymbolTable::default();
        // Different symbol order per request: refs differ, labels do not.
        sy.intern("zzz");
        let a = TimeSeries {
            labels_refs: sy.label_refs(&[("__name__", "a"), ("empty", ""), ("job", "x")]),
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        };
        let bad = TimeSeries {
            labels_refs: sy.label_refs(&[("job", "x"), ("__name__", "a")]),
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        };
        Request {
            symbols: sy.into_symbols(),
            timeseries: vec![a, bad],
        }
    };
    let limits = SeriesLimits::default();
    let plain = validate(build(), &limits).expect("valid");
    for _ in 0..2 {
        let cached = validate_cached(build(), &limits, &cache).expect("valid");
        assert_eq!(cached.series.len(), 1);
        assert_eq!(cached.series[0].labels, plain.series[0].labels);
        assert_eq!(
            cached.first_error, plain.first_error,
            "invalid ones never cached"
        );
    }
    // Series of the two versions never share a key.
    let mut v1_key = vec![0x0a];
    v1_key.extend_from_slice(b"anything");
    assert!(cache.get(&v1_key).is_none());
}
