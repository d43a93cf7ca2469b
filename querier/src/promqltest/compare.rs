//! Comparison of query results with the expectations of an eval, as
//! Prometheus' promqltest runner does it.
//!
//! Float values are compared with [`almost_equal`] and a relative epsilon of
//! 1e-6 (Prometheus' `defaultEpsilon` and `util/almost.Equal`): equal when both
//! are the stale marker, or both are (other) NaNs, or they are `==` (so equal
//! infinities), or `|a-b| / (|a|+|b|) < 1e-6`; when either is zero (or both are
//! subnormal) the difference must be below `1e-6 * MIN_POSITIVE`, i.e. a zero
//! matches only (almost) exactly. Series sets must be equal with exact labels;
//! order matters only for `expect ordered` (instant vectors); matrices must be
//! sorted by labels, as Prometheus requires of range results; every point's
//! timestamp must be the expected one (`start + i*step` for the i-th expected
//! value, `_` meaning no point).

use std::collections::HashMap;

use storage::Labels;

use super::histogram_literal::text as htext;
use super::parser::{Expected, Point, SeriesDef};
use crate::promql::native_histogram::FloatHistogram;
use crate::promql::{MatrixSeries, Value, VectorSample};

/// Prometheus' relative tolerance for sample values.
pub const EPSILON: f64 = 1e-6;

fn is_stale(v: f64) -> bool {
    v.to_bits() == storage::STALE_NAN_BITS
}

/// Prometheus' `almost.Equal(a, b, epsilon)`.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if is_stale(a) || is_stale(b) {
        return is_stale(a) && is_stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus' runner comparison of histograms: both compacted (empty
/// buckets dropped), then equal schema, zero threshold, bucket indices and
/// custom bounds, and count, sum, zero count and bucket counts within
/// [`EPSILON`]. The counter-reset hint is not compared.
pub fn histograms_match(exp: &FloatHistogram, got: &FloatHistogram) -> bool {
    let (e, g) = (exp.clone().compact(), got.clone().compact());
    let buckets = |a: &[(i32, f64)], b: &[(i32, f64)]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && almost_equal(x.1, y.1, EPSILON))
    };
    e.schema == g.schema
        && almost_equal(e.count, g.count, EPSILON)
        && almost_equal(e.sum, g.sum, EPSILON)
        && (!e.uses_custom_buckets() || e.custom_values == g.custom_values)
        && e.zero_threshold == g.zero_threshold
        && almost_equal(e.zero_count, g.zero_count, EPSILON)
        && buckets(&e.negative, &g.negative)
        && buckets(&e.positive, &g.positive)
}

fn sample_text(s: &VectorSample) -> String {
    match &s.histogram {
        Some(h) => htext(h),
        None => s.sample.v.to_string(),
    }
}

/// Short text of a value for messages.
pub fn describe(v: &Value) -> String {
    const MAX: usize = 8;
    match v {
        Value::Scalar { v, .. } => format!("scalar {v}"),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(vs) => {
            let mut parts: Vec<String> = vs
                .iter()
                .take(MAX)
                .map(|s| format!("{} {}", s.labels, sample_text(s)))
                .collect();
            if vs.len() > MAX {
                parts.push(format!("... ({} more)", vs.len() - MAX));
            }
            format!("vector[{}]", parts.join(", "))
        }
        Value::Matrix(ms) => {
            let mut parts: Vec<String> = ms.iter().take(MAX).map(describe_series).collect();
            if ms.len() > MAX {
                parts.push(format!("... ({} more)", ms.len() - MAX));
            }
            format!("matrix[{}]", parts.join(", "))
        }
    }
}

fn describe_series(s: &MatrixSeries) -> String {
    const MAX: usize = 12;
    let mut pts: Vec<String> = s
        .samples
        .iter()
        .take(MAX)
        .map(|p| format!("{}@{}", p.v, p.t))
        .chain(
            s.histograms
                .iter()
                .take(MAX)
                .map(|p| format!("{}@{}", htext(&p.h), p.t)),
        )
        .collect();
    let n = s.samples.len() + s.histograms.len();
    if n > 2 * MAX {
        pts.push(format!("... ({} more)", n - 2 * MAX));
    }
    format!("{} [{}]", s.labels, pts.join(" "))
}

/// Text of an expectation for messages.
pub fn describe_expected(e: &Expected) -> String {
    match e {
        Expected::Scalar(v) => format!("scalar {v}"),
        Expected::Series(s) if s.is_empty() => "no series".to_string(),
        Expected::Series(s) => s
            .iter()
            .map(|d| {
                let pts: Vec<String> = d
                    .points
                    .iter()
                    .take(12)
                    .map(|p| match p {
                        Point::Missing => "_".to_string(),
                        Point::Float(v) => v.to_string(),
                        Point::Histogram(h) => htext(h),
                    })
                    .collect();
                let more = if d.points.len() > 12 {
                    format!(" ... ({} more)", d.points.len() - 12)
                } else {
                    String::new()
                };
                format!("{} {}{more}", d.labels, pts.join(" "))
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn expected_map(exp: &[SeriesDef]) -> HashMap<&Labels, (usize, &SeriesDef)> {
    exp.iter()
        .enumerate()
        .map(|(i, d)| (&d.labels, (i + 1, d)))
        .collect()
}

/// Compares an instant vector with the expectation.
pub fn compare_vector(
    expected: &Expected,
    got: &[VectorSample],
    ordered: bool,
) -> Result<(), String> {
    let exp = match expected {
        Expected::Scalar(v) => {
            return Err(format!(
                "expected scalar {v}, but got a vector of {} series",
                got.len()
            ));
        }
        Expected::Series(s) => s,
    };
    let map = expected_map(exp);
    let mut seen = vec![false; exp.len()];
    for (pos, s) in got.iter().enumerate() {
        let Some((epos, def)) = map.get(&s.labels) else {
            return Err(format!(
                "unexpected series {} in result, with value {}",
                s.labels,
                sample_text(s)
            ));
        };
        if ordered && *epos != pos + 1 {
            return Err(format!(
                "expected series {} at position {epos} but it was at {}",
                s.labels,
                pos + 1
            ));
        }
        match (def.points.first(), &s.histogram) {
            (Some(Point::Float(v)), Some(h)) => {
                return Err(format!(
                    "expected float value {v} for {} but got histogram {}",
                    s.labels,
                    htext(h)
                ));
            }
            (Some(Point::Histogram(e)), Some(h)) => {
                if !histograms_match(e, h) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        htext(e),
                        s.labels,
                        htext(h)
                    ));
                }
            }
            (Some(Point::Float(v)), None) => {
                if !almost_equal(*v, s.sample.v, EPSILON) {
                    return Err(format!(
                        "expected {v} for {} but got {}",
                        s.labels, s.sample.v
                    ));
                }
            }
            (Some(Point::Histogram(h)), None) => {
                return Err(format!(
                    "expected histogram {} for {} but got float value {}",
                    htext(h),
                    s.labels,
                    s.sample.v
                ));
            }
            (Some(Point::Missing) | None, _) => {
                return Err(format!(
                    "series {} has no expected value (line {}) but got {}",
                    s.labels,
                    def.line,
                    sample_text(s)
                ));
            }
        }
        seen[*epos - 1] = true;
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!(
            "expected series {} not found in result",
            exp[i].labels
        ));
    }
    Ok(())
}

/// Compares a matrix with expectations whose i-th value is at `start + i*step`.
pub fn compare_matrix(
    expected: &Expected,
    got: &[MatrixSeries],
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<(), String> {
    let exp = match expected {
        Expected::Scalar(v) => {
            return Err(format!(
                "expected scalar {v}, but got a matrix of {} series",
                got.len()
            ));
        }
        Expected::Series(s) => s,
    };
    assert_sorted(got)?;
    let map = expected_map(exp);
    let mut seen = vec![false; exp.len()];
    for s in got {
        let Some((epos, def)) = map.get(&s.labels) else {
            return Err(format!(
                "unexpected series in result: {}",
                describe_series(s)
            ));
        };
        seen[*epos - 1] = true;
        let mut want: Vec<(i64, f64)> = Vec::new();
        let mut want_h: Vec<(i64, &FloatHistogram)> = Vec::new();
        for (i, p) in def.points.iter().enumerate() {
            let t = start_ms + i as i64 * step_ms;
            if t > end_ms {
                return Err(format!(
                    "expected {} points for {}, but the query range cannot return this many",
                    def.points.len(),
                    def.labels
                ));
            }
            match p {
                Point::Float(v) => want.push((t, *v)),
                Point::Histogram(h) => want_h.push((t, h)),
                Point::Missing => {}
            }
        }
        if want.len() != s.samples.len() || want_h.len() != s.histograms.len() {
            return Err(format!(
                "expected {} float and {} histogram points for {}, but got {}",
                want.len(),
                want_h.len(),
                def.labels,
                describe_series(s)
            ));
        }
        for (i, ((t, h), got)) in want_h.iter().zip(&s.histograms).enumerate() {
            if *t != got.t {
                return Err(format!(
                    "expected histogram point {i} of {} at t={t}, but it is at t={} (result has {})",
                    def.labels,
                    got.t,
                    describe_series(s)
                ));
            }
            if !histograms_match(h, &got.h) {
                return Err(format!(
                    "expected histogram point {i} (t={t}) of {} to be {}, but got {}",
                    def.labels,
                    htext(h),
                    htext(&got.h)
                ));
            }
        }
        for (i, ((t, v), got)) in want.iter().zip(&s.samples).enumerate() {
            if *t != got.t {
                return Err(format!(
                    "expected point {i} of {} at t={t}, but it is at t={} (result has {})",
                    def.labels,
                    got.t,
                    describe_series(s)
                ));
            }
            if !almost_equal(*v, got.v, EPSILON) {
                return Err(format!(
                    "expected point {i} (t={t}) of {} to be {v}, but got {} (result has {})",
                    def.labels,
                    got.v,
                    describe_series(s)
                ));
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(format!(
            "expected series {} not found in result",
            exp[i].labels
        ));
    }
    Ok(())
}

/// Prometheus requires matrices to be sorted by labels.
pub fn assert_sorted(m: &[MatrixSeries]) -> Result<(), String> {
    for w in m.windows(2) {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix is not sorted by labels: {} comes before {}",
                w[0].labels, w[1].labels
            ));
        }
    }
    Ok(())
}

/// Compares a scalar result.
pub fn compare_scalar(expected: &Expected, got: f64) -> Result<(), String> {
    match expected {
        Expected::Scalar(v) if almost_equal(*v, got, EPSILON) => Ok(()),
        Expected::Scalar(v) => Err(format!("expected scalar {v} but got {got}")),
        Expected::Series(_) => Err(format!(
            "expected a vector or matrix result, but got scalar {got}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use storage::Sample;

    use super::*;
    use crate::promql::HPoint;
    use crate::promqltest::parser::parse_series_line;

    fn exp(lines: &[&str]) -> Expected {
        Expected::Series(
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let (labels, points) = parse_series_line(l).expect("series");
                    SeriesDef {
                        labels,
                        points,
                        line: i + 1,
                    }
                })
                .collect(),
        )
    }

    fn lbl(s: &str) -> Labels {
        parse_series_line(&format!("{s} 0")).expect("labels").0
    }

    fn vs(l: &str, v: f64) -> VectorSample {
        VectorSample {
            labels: lbl(l),
            sample: Sample::new(0, v),
            histogram: None,
        }
    }

    #[test]
    fn almost_equal_follows_prometheus() {
        assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
        assert!(!almost_equal(f64::NAN, 1.0, EPSILON));
        let stale = f64::from_bits(storage::STALE_NAN_BITS);
        assert!(almost_equal(stale, stale, EPSILON));
        assert!(!almost_equal(stale, f64::NAN, EPSILON));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, 1e308, EPSILON));
        assert!(almost_equal(1.0, 1.0 + 1e-7, EPSILON));
        assert!(!almost_equal(1.0, 1.0 + 1e-5, EPSILON));
        assert!(almost_equal(1e20, 1e20 * (1.0 + 1e-7), EPSILON));
        assert!(!almost_equal(0.0, 1e-300, EPSILON));
        assert!(almost_equal(0.0, -0.0, EPSILON));
    }

    #[test]
    fn vectors_compare_as_sets_unless_ordered() {
        let e = exp(&[r#"m{a="1"} 1"#, r#"m{a="2"} 2"#]);
        let got = vec![vs(r#"m{a="2"}"#, 2.0), vs(r#"m{a="1"}"#, 1.0000001)];
        assert!(compare_vector(&e, &got, false).is_ok());
        assert!(compare_vector(&e, &got, true).is_err());
        assert!(compare_vector(&e, &got[..1], false).is_err());
        let extra = vec![
            vs(r#"m{a="1"}"#, 1.0),
            vs(r#"m{a="2"}"#, 2.0),
            vs(r#"m{a="3"}"#, 3.0),
        ];
        assert!(compare_vector(&e, &extra, false).is_err());
        let wrong = vec![vs(r#"m{a="1"}"#, 1.0), vs(r#"m{a="2"}"#, 2.1)];
        assert!(compare_vector(&e, &wrong, false).is_err());
        // Labels must match exactly (the metric name too).
        let renamed = vec![vs(r#"{a="1"}"#, 1.0), vs(r#"m{a="2"}"#, 2.0)];
        assert!(compare_vector(&e, &renamed, false).is_err());
        assert!(compare_vector(&Expected::Scalar(1.0), &[], false).is_err());
        assert!(compare_vector(&exp(&[]), &[], false).is_ok());
        let h = exp(&["m {{sum:1 count:1}}"]);
        assert!(compare_vector(&h, &[vs("m", 1.0)], false).is_err());
    }

    #[test]
    fn matrices_check_timestamps_gaps_and_order() {
        let e = exp(&[r#"m{a="1"} 1 _ 3"#, r#"m{a="2"} 1+1x2"#]);
        let s1 = MatrixSeries {
            labels: lbl(r#"m{a="1"}"#),
            samples: vec![Sample::new(0, 1.0), Sample::new(20, 3.0)],
            histograms: Vec::new(),
        };
        let s2 = MatrixSeries {
            labels: lbl(r#"m{a="2"}"#),
            samples: vec![
                Sample::new(0, 1.0),
                Sample::new(10, 2.0),
                Sample::new(20, 3.0),
            ],
            histograms: Vec::new(),
        };
        assert!(compare_matrix(&e, &[s1.clone(), s2.clone()], 0, 20, 10).is_ok());
        // Unsorted.
        assert!(compare_matrix(&e, &[s2.clone(), s1.clone()], 0, 20, 10).is_err());
        // A point at the wrong time.
        let mut bad = s1.clone();
        bad.samples[1].t = 10;
        assert!(compare_matrix(&e, &[bad, s2.clone()], 0, 20, 10).is_err());
        // A missing point.
        let mut short = s2.clone();
        short.samples.pop();
        assert!(compare_matrix(&e, &[s1.clone(), short], 0, 20, 10).is_err());
        // More expected points than the range holds.
        assert!(compare_matrix(&e, &[s1, s2], 0, 10, 10).is_err());
    }

    #[test]
    fn histograms_compare_compacted_with_tolerance() {
        let e = exp(&["m {{schema:0 count:3 sum:2 buckets:[1 0 2]}}"]);
        let h = |count: f64, buckets: Vec<(i32, f64)>| {
            std::sync::Arc::new(FloatHistogram {
                count,
                sum: 2.0,
                positive: buckets,
                ..Default::default()
            })
        };
        let got = |x| VectorSample {
            labels: lbl("m"),
            sample: Sample::new(0, 0.0),
            histogram: Some(x),
        };
        // The empty middle bucket may be absent; counts within 1e-6.
        assert!(compare_vector(&e, &[got(h(3.0000001, vec![(0, 1.0), (2, 2.0)]))], false).is_ok());
        assert!(compare_vector(&e, &[got(h(3.0, vec![(0, 1.0), (1, 2.0)]))], false).is_err());
        assert!(compare_vector(&e, &[got(h(3.1, vec![(0, 1.0), (2, 2.0)]))], false).is_err());
        assert!(compare_vector(&e, &[vs("m", 3.0)], false).is_err());
        let m = MatrixSeries {
            labels: lbl("m"),
            samples: Vec::new(),
            histograms: vec![HPoint {
                t: 10,
                h: h(3.0, vec![(0, 1.0), (2, 2.0)]),
            }],
        };
        let em = exp(&["m _ {{schema:0 count:3 sum:2 buckets:[1 0 2]}}"]);
        assert!(compare_matrix(&em, std::slice::from_ref(&m), 0, 10, 10).is_ok());
        assert!(compare_matrix(&em, &[m], 0, 20, 5).is_err());
    }

    #[test]
    fn scalars() {
        assert!(compare_scalar(&Expected::Scalar(f64::NAN), f64::NAN).is_ok());
        assert!(compare_scalar(&Expected::Scalar(2.0), 2.5).is_err());
        assert!(compare_scalar(&exp(&[]), 2.0).is_err());
    }
}
