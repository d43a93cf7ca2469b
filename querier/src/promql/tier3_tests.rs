//! Engine tests of Prometheus' experimental PromQL features (conformance
//! tier 3) that are not covered in `tests.rs`: `info` over histogram info
//! series, `start_timestamp`, and the experimental syntax promql-parser 0.11
//! cannot read, which must be refused as bad input.

use storage::sidecar::HistogramSeries;
use storage::{Labels, Sample, Series};

use super::native_histogram::FloatHistogram;
use super::{Engine, EvalError, Value};
use crate::queryable::MemQueryable;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A float series with one sample a minute from 0.
fn floats(pairs: &[(&str, &str)], vals: &[f64]) -> Series {
    Series {
        labels: labels(pairs),
        samples: vals
            .iter()
            .enumerate()
            .map(|(i, v)| Sample::new(i as i64 * 60_000, *v))
            .collect(),
    }
}

/// Sorted `(labels, value)` pairs of an instant vector.
fn vector(v: Value) -> Vec<(String, f64)> {
    let Value::Vector(v) = v else {
        panic!("expected a vector, got {v:?}");
    };
    let mut out: Vec<(String, f64)> = v
        .into_iter()
        .map(|s| (s.labels.to_string(), s.sample.v))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `metric` of instance a and b, a float `target_info` for a, and a
/// histogram-valued `build_info` for b.
fn info_store() -> MemQueryable {
    let mut q = MemQueryable::default();
    q.write(&[
        floats(
            &[("__name__", "metric"), ("instance", "a"), ("job", "j")],
            &[1.0, 2.0],
        ),
        floats(
            &[("__name__", "metric"), ("instance", "b"), ("job", "j")],
            &[3.0, 4.0],
        ),
        floats(
            &[
                ("__name__", "target_info"),
                ("instance", "a"),
                ("job", "j"),
                ("version", "1"),
            ],
            &[1.0, 1.0],
        ),
    ]);
    let h = FloatHistogram {
        count: 2.0,
        sum: 3.0,
        positive: vec![(1, 2.0)],
        ..FloatHistogram::default()
    };
    q.write_histograms(&[HistogramSeries {
        labels: labels(&[
            ("__name__", "build_info"),
            ("instance", "b"),
            ("job", "j"),
            ("version", "2"),
        ]),
        histograms: vec![h.to_stored(0), h.to_stored(60_000)],
    }]);
    q
}

#[test]
fn info_refuses_histogram_info_series() {
    let q = info_store();
    let e = Engine::default();
    // Float info series join as usual.
    let v = block_on(e.instant_query(&q, "info(metric)", 60_000)).expect("info");
    assert_eq!(
        vector(v),
        vec![
            (
                r#"metric{instance="a", job="j", version="1"}"#.to_string(),
                2.0
            ),
            (r#"metric{instance="b", job="j"}"#.to_string(), 4.0),
        ]
    );
    // An info series with a histogram sample that would be joined is an
    // execution error, not a silently skipped series.
    let err = block_on(e.instant_query(&q, r#"info(metric, {__name__="build_info"})"#, 60_000))
        .expect_err("histogram info series");
    assert!(matches!(err, EvalError::Execution(_)), "{err}");
    assert!(err.to_string().contains("native histogram"), "{err}");
    // It is only an error when it describes a series of the argument.
    let v = block_on(e.instant_query(
        &q,
        r#"info(metric{instance="a"}, {__name__=~"build_info|target_info"})"#,
        60_000,
    ))
    .expect("instance a has only a float info series");
    assert_eq!(
        vector(v),
        vec![(
            r#"metric{instance="a", job="j", version="1"}"#.to_string(),
            2.0
        )]
    );
}

#[test]
fn start_timestamp_is_unknown_for_stored_samples_and_lost_by_expressions() {
    let mut q = MemQueryable::default();
    q.write(&[
        floats(&[("__name__", "m"), ("case", "a")], &[10.0, 20.0]),
        floats(&[("__name__", "m"), ("case", "b")], &[5.0]),
    ]);
    let e = Engine::default();
    let at = |query: &str, t: i64| vector(block_on(e.instant_query(&q, query, t)).expect(query));
    // Strata stores no start times: every selected sample's is unknown (0),
    // the metric name goes as with timestamp().
    assert_eq!(
        at("start_timestamp(m)", 60_000),
        vec![
            (r#"{case="a"}"#.to_string(), 0.0),
            (r#"{case="b"}"#.to_string(), 0.0),
        ]
    );
    // Only series with a sample in the lookback window answer.
    assert_eq!(
        at("start_timestamp(m)", 5 * 60_000),
        vec![(r#"{case="a"}"#.to_string(), 0.0)]
    );
    assert_eq!(
        at("start_timestamp((m offset 1m))", 5 * 60_000),
        vec![
            (r#"{case="a"}"#.to_string(), 0.0),
            (r#"{case="b"}"#.to_string(), 0.0),
        ]
    );
    // An expression has lost its samples' start times: nothing.
    assert!(at("start_timestamp(m * 1)", 60_000).is_empty());
    assert!(at("start_timestamp(abs(m))", 60_000).is_empty());
    // As a range query: one point per step while the series has a sample.
    let v = block_on(e.range_query(&q, "start_timestamp(m)", 0, 60_000, 30_000)).expect("range");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix, got {v:?}");
    };
    let points: Vec<(String, usize)> = m
        .iter()
        .map(|s| (s.labels.to_string(), s.samples.len()))
        .collect();
    assert_eq!(
        points,
        vec![
            (r#"{case="a"}"#.to_string(), 3),
            (r#"{case="b"}"#.to_string(), 3),
        ]
    );
}

/// Experimental syntax promql-parser 0.11.1 does not read (`anchored` and
/// `smoothed` range selectors, duration arithmetic and `step()` in brackets
/// and offsets, an `info` selector of only empty-matching matchers) goes
/// through the syntax front end and is evaluated; malformed extended syntax
/// is bad input (400), never a panic or a server error.
#[test]
fn experimental_syntax_is_parsed_and_malformed_use_is_bad_data() {
    let q = MemQueryable::default();
    for query in [
        "increase(m[1m] anchored)",
        "rate(m[1m] smoothed)",
        "changes(m[26m+4m])",
        "m offset (2 * 2)",
        "m offset step()",
        r#"info(m, {data=~".*"})"#,
    ] {
        block_on(Engine::default().instant_query(&q, query, 0)).expect(query);
    }
    for query in [
        // step() is 0 in an instant query: an empty range.
        "count_over_time(m[step()])",
        "deriv(m[1m] smoothed)",
        "rate(m[1m]) anchored",
        "m[1m+]",
        r#"m{__strata_syntax__="smoothed"}"#,
    ] {
        let err = block_on(Engine::default().instant_query(&q, query, 0)).expect_err(query);
        assert!(matches!(err, EvalError::Parse(_)), "{query}: {err}");
    }
}
