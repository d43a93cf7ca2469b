//! Engine tests with native histogram samples (through [`MemQueryable`]):
//! selection, range functions, aggregation, operators and result shapes.
//! The conformance scripts (`native_histograms.test` and the `{{...}}`
//! evals of the other files) cover the semantics in depth.

use storage::sample::stale_nan;
use storage::sidecar::HistogramSeries;
use storage::{Labels, Sample, Series};

use super::native_histogram::FloatHistogram;
use super::{Engine, Value};
use crate::queryable::MemQueryable;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

/// A histogram with `count` observations, all in bucket (1, 2] of schema 0.
fn h(count: f64) -> FloatHistogram {
    FloatHistogram {
        count,
        sum: 1.5 * count,
        positive: vec![(1, count)],
        ..FloatHistogram::default()
    }
}

/// `hist{job}`: histograms with the given counts, one per minute from 0.
fn hist_series(job: &str, counts: &[f64]) -> HistogramSeries {
    HistogramSeries {
        labels: labels(&[("__name__", "hist"), ("job", job)]),
        histograms: counts
            .iter()
            .enumerate()
            .map(|(i, c)| h(*c).to_stored(i as i64 * 60_000))
            .collect(),
    }
}

fn store() -> MemQueryable {
    let mut m = MemQueryable::default();
    m.write_histograms(&[
        hist_series("a", &[0.0, 60.0, 120.0, 180.0]),
        // A counter reset after the second sample.
        hist_series("b", &[0.0, 60.0, 30.0, 90.0]),
    ]);
    m.write(&[
        Series {
            labels: labels(&[("__name__", "hist"), ("job", "c")]),
            samples: vec![Sample::new(0, 5.0), Sample::new(60_000, 6.0)],
        },
        // A stale marker after the last histogram ends series `a`.
        Series {
            labels: labels(&[("__name__", "hist"), ("job", "a")]),
            samples: vec![Sample::new(240_000, stale_nan())],
        },
    ]);
    m
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn instant(q: &str, t_s: i64) -> Vec<(String, Option<FloatHistogram>, f64)> {
    let v = block_on(Engine::default().instant_query(&store(), q, t_s * 1000)).expect(q);
    let Value::Vector(v) = v else {
        panic!("{q}: expected a vector, got {v:?}")
    };
    let mut out: Vec<_> = v
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.histogram.map(|h| h.as_ref().clone()),
                s.sample.v,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn hist_of(v: &[(String, Option<FloatHistogram>, f64)], labels: &str) -> FloatHistogram {
    v.iter()
        .find(|x| x.0 == labels)
        .and_then(|x| x.1.clone())
        .unwrap_or_else(|| panic!("no histogram for {labels} in {v:?}"))
}

#[test]
fn selectors_return_the_latest_histogram_until_a_stale_marker() {
    let v = instant("hist", 150);
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(hist_of(&v, r#"hist{job="a"}"#).count, 120.0);
    // A float series next to histogram series stays a float.
    assert!(
        v.iter()
            .any(|x| x.0 == r#"hist{job="c"}"# && x.1.is_none() && x.2 == 6.0)
    );
    let after_stale = instant(r#"hist{job="a"}"#, 250);
    assert!(after_stale.is_empty(), "{after_stale:?}");
}

#[test]
fn rate_of_histograms_corrects_counter_resets() {
    let v = instant("rate(hist[3m])", 180);
    // The window (0, 3m] holds the samples at 1m, 2m, 3m; the increase is
    // extrapolated by half to the window start. a: +120; b: 60 -> 30 is a
    // reset, so 30 + 60 = +90.
    let a = hist_of(&v, r#"{job="a"}"#);
    let b = hist_of(&v, r#"{job="b"}"#);
    assert!((a.count - 120.0 * 1.5 / 180.0).abs() < 1e-9, "{a:?}");
    assert!((b.count - 90.0 * 1.5 / 180.0).abs() < 1e-9, "{b:?}");
    assert_eq!(a.positive.len(), 1);
    // The float series has too few samples in the window for a rate.
    assert_eq!(v.len(), 2, "{v:?}");
    let resets = instant(r#"resets(hist{job="b"}[5m])"#, 180);
    assert_eq!(resets[0].2, 1.0);
}

#[test]
fn aggregations_sum_histograms_and_drop_mixed_groups() {
    let s = instant(r#"sum(hist{job=~"a|b"})"#, 180);
    assert_eq!(hist_of(&s, "{}").count, 270.0);
    let avg = instant(r#"avg(hist{job=~"a|b"})"#, 180);
    assert_eq!(hist_of(&avg, "{}").count, 135.0);
    // Histograms and a float in one group: no result.
    assert!(instant("sum(hist)", 60).is_empty());
    // count and group count histograms; max ignores them.
    assert_eq!(instant("count(hist)", 60)[0].2, 3.0);
    assert_eq!(instant("max(hist)", 60)[0].2, 6.0);
}

#[test]
fn operators_scale_and_add_histograms_and_drop_undefined_ones() {
    let v = instant(r#"hist{job="a"} * 2"#, 60);
    assert_eq!(hist_of(&v, r#"{job="a"}"#).count, 120.0);
    let v = instant(r#"hist{job="a"} / 4"#, 60);
    assert_eq!(hist_of(&v, r#"{job="a"}"#).count, 15.0);
    let v = instant(r#"hist{job="a"} + ignoring(job) hist{job="b"}"#, 120);
    assert_eq!(hist_of(&v, "{}").count, 150.0);
    assert!(instant(r#"hist{job="a"} + 1"#, 60).is_empty());
    assert!(instant(r#"hist{job="a"} > 1"#, 60).is_empty());
    let eq = instant(r#"hist{job="a"} == ignoring(job) hist{job="b"}"#, 60);
    assert_eq!(eq.len(), 1, "equal histograms compare equal: {eq:?}");
    // Math functions drop histogram samples.
    assert!(instant(r#"abs(hist{job="a"})"#, 60).is_empty());
}

#[test]
fn histogram_functions_read_native_samples() {
    let v = instant(r#"histogram_count(hist{job="a"})"#, 60);
    assert_eq!(v, vec![(r#"{job="a"}"#.to_string(), None, 60.0)]);
    assert_eq!(instant(r#"histogram_sum(hist{job="a"})"#, 60)[0].2, 90.0);
    assert_eq!(instant(r#"histogram_avg(hist{job="a"})"#, 60)[0].2, 1.5);
    // All observations in (1, 2]: the median is at sqrt(2) (exponential
    // interpolation), half of them at or below it.
    let q = instant(r#"histogram_quantile(0.5, hist{job="a"})"#, 60)[0].2;
    assert!((q - std::f64::consts::SQRT_2).abs() < 1e-12, "{q}");
    let f = instant(
        r#"histogram_fraction(0, 1.4142135623730951, hist{job="a"})"#,
        60,
    )[0]
    .2;
    assert!((f - 0.5).abs() < 1e-12, "{f}");
    // Float samples are ignored.
    assert!(instant(r#"histogram_count(hist{job="c"})"#, 60).is_empty());
}

#[test]
fn range_queries_return_histogram_points_apart_from_floats() {
    let v = block_on(Engine::default().range_query(
        &store(),
        r#"hist{job=~"a|c"}"#,
        0,
        120_000,
        60_000,
    ))
    .expect("range query");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix, got {v:?}")
    };
    assert_eq!(m.len(), 2);
    let a = &m[0];
    assert!(a.samples.is_empty());
    let times: Vec<i64> = a.histograms.iter().map(|p| p.t).collect();
    assert_eq!(times, vec![0, 60_000, 120_000]);
    let c = &m[1];
    assert!(c.histograms.is_empty());
    assert_eq!(c.samples.len(), 3);
}

#[test]
fn a_reset_sample_repeated_by_a_subquery_counts_once() {
    let mut m = MemQueryable::default();
    let mut reset = h(10.0);
    reset.hint = super::native_histogram::ResetHint::Reset;
    let pts = [h(100.0), reset, h(20.0), h(30.0)];
    m.write_histograms(&[HistogramSeries {
        labels: labels(&[("__name__", "c")]),
        histograms: pts
            .iter()
            .enumerate()
            .map(|(i, x)| x.to_stored(i as i64 * 60_000))
            .collect(),
    }]);
    // Steps of 15s return the reset sample four times.
    let v =
        block_on(Engine::default().instant_query(&m, "resets(c[3m:15s])", 180_000)).expect("query");
    let Value::Vector(v) = v else { panic!("{v:?}") };
    assert_eq!(v[0].sample.v, 1.0);
}

#[test]
fn over_time_functions_handle_histograms() {
    let s = instant(r#"sum_over_time(hist{job="a"}[3m])"#, 180);
    assert_eq!(hist_of(&s, r#"{job="a"}"#).count, 360.0);
    let last = instant(r#"last_over_time(hist{job="a"}[3m])"#, 180);
    assert_eq!(hist_of(&last, r#"hist{job="a"}"#).count, 180.0);
    assert_eq!(
        instant(r#"count_over_time(hist{job="a"}[3m])"#, 180)[0].2,
        3.0
    );
    // Float-only functions ignore histogram samples.
    assert!(instant(r#"max_over_time(hist{job="a"}[3m])"#, 180).is_empty());
}
