//! Intermediate values of the evaluator and label helpers shared by the
//! operator modules.
//!
//! Evaluation runs one timestamp at a time, so an instant vector is a list of
//! [`Elem`]s. Every element carries `drop_name`: Prometheus 3 removes the
//! metric name lazily (at the end of the query), so that `label_replace` can
//! still read it and aggregations may still group by it.

use std::collections::HashSet;
use std::sync::Arc;

use storage::labels::LabelsBuildHasher;
use storage::{Label, Labels, METRIC_NAME, Sample};

use super::EvalError;
use super::native_histogram::FloatHistogram;

/// A native histogram sample.
#[derive(Clone, Debug, PartialEq)]
pub struct HPoint {
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

/// One element of an instant vector at the current evaluation time.
#[derive(Clone, Debug)]
pub(crate) struct Elem {
    pub labels: Labels,
    /// The float value; meaningless when `h` is set.
    pub v: f64,
    /// The value when the sample is a native histogram.
    pub h: Option<Arc<FloatHistogram>>,
    /// The metric name is to be removed when the query finishes.
    pub drop_name: bool,
}

/// One series of a range vector (range selector or subquery window).
#[derive(Clone, Debug)]
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Histogram samples, apart from the floats so that float-only series
    /// pay nothing for them.
    pub hists: Vec<HPoint>,
    pub drop_name: bool,
}

/// The value of an expression at one evaluation time.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Vec<RangeSeries>),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }

    pub fn into_vector(self) -> Result<Vec<Elem>, EvalError> {
        match self {
            Val::Vector(v) => Ok(v),
            other => Err(type_error("instant vector", &other)),
        }
    }

    pub fn into_scalar(self) -> Result<f64, EvalError> {
        match self {
            Val::Scalar(v) => Ok(v),
            other => Err(type_error("scalar", &other)),
        }
    }

    pub fn into_string(self) -> Result<String, EvalError> {
        match self {
            Val::Str(s) => Ok(s),
            other => Err(type_error("string", &other)),
        }
    }

    pub fn into_matrix(self) -> Result<Vec<RangeSeries>, EvalError> {
        match self {
            Val::Matrix(m) => Ok(m),
            other => Err(type_error("range vector", &other)),
        }
    }
}

fn type_error(want: &str, got: &Val) -> EvalError {
    EvalError::Execution(format!("expected {want}, got {}", got.type_name()))
}

/// Labels as Prometheus prints them in error messages: `{a="b", c="d"}`,
/// metric name included as an ordinary label.
pub(crate) fn prom_string(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| format!("{}={:?}", l.name, l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Labels that describe the named metric rather than the series (Prometheus'
/// type-and-unit labels): they go when the metric name goes, since a rate of
/// a counter is no longer that counter.
pub(crate) const METRIC_TYPE: &str = "__type__";
pub(crate) const METRIC_UNIT: &str = "__unit__";

/// The labels an element will have once the query finishes.
pub(crate) fn final_labels(labels: &Labels, drop_name: bool) -> Labels {
    if drop_name {
        labels.retain(|n| n != METRIC_NAME && n != METRIC_TYPE && n != METRIC_UNIT)
    } else {
        labels.clone()
    }
}

pub(crate) fn check_unique<'a>(labels: impl Iterator<Item = &'a Labels>) -> Result<(), EvalError> {
    // Sized up front: no rehashing at every step of a range query.
    let mut seen: HashSet<&Labels, LabelsBuildHasher> =
        HashSet::with_capacity_and_hasher(labels.size_hint().0, LabelsBuildHasher::default());
    for l in labels {
        if !seen.insert(l) {
            return Err(same_labelset());
        }
    }
    Ok(())
}

pub(crate) fn same_labelset() -> EvalError {
    EvalError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Signature labels for vector matching: with `on`, only the listed labels;
/// otherwise every label except the listed ones and the metric name.
pub(crate) fn match_labels(labels: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        labels.retain(|n| names.iter().any(|x| x == n))
    } else {
        labels.retain(|n| n != METRIC_NAME && !names.iter().any(|x| x == n))
    }
}

/// Builds labels from pairs that may be unsorted; pairs with empty values
/// are dropped (an empty value means "no label").
pub(crate) fn labels_from(pairs: Vec<Label>) -> Labels {
    let mut pairs: Vec<Label> = pairs.into_iter().filter(|l| !l.value.is_empty()).collect();
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    pairs.dedup_by(|a, b| a.name == b.name);
    Labels::from_sorted(pairs).unwrap_or_default()
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: how Prometheus spells floats in
/// label values (`le`, `quantile`) and in API sample values.
pub fn format_float(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    push_float(&mut out, v);
    // Only ASCII digits, signs, dots and the special spellings are written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`format_float`]'s spelling of `v` to `out`. Writing sample
/// values is a good part of a short range query's answer, and zmij gives
/// the shortest round-trip digits a few times faster than `core::fmt`.
/// It also breaks an exact tie between two shortest spellings to the even
/// digit, as Go does (Rust's Display rounds such a tie up).
pub fn push_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if v == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        let mut buf = zmij::Buffer::new();
        let s = buf.format_finite(v);
        match s.split_once('e') {
            // zmij writes whole numbers as `12.0`; Go writes `12`.
            None => out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes()),
            Some((mantissa, exp)) => push_fixed(out, mantissa, exp),
        }
    }
}

/// Writes `mantissa`e`exp` (zmij's exponent form: `-1.234e+33`, `5e-07`)
/// without an exponent, as Go's 'f' format does.
fn push_fixed(out: &mut Vec<u8>, mantissa: &str, exp: &str) {
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let exp: i64 = exp.trim_start_matches('+').parse().unwrap_or(0);
    // Digits before the decimal point.
    let point = exp + 1;
    out.extend_from_slice(sign.as_bytes());
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(&digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}

/// Kahan-Babuska-Neumaier compensated summation, as Prometheus uses for sums.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    pub fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if t.is_infinite() {
            self.c = 0.0;
        } else if self.sum.abs() >= v.abs() {
            self.c += (self.sum - t) + v;
        } else {
            self.c += (v - t) + self.sum;
        }
        self.sum = t;
    }

    pub fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// Quantile with linear interpolation between closest ranks (Prometheus'
/// `quantile` aggregation and `quantile_over_time`). `values` need not be sorted.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    // NaNs sort last with total_cmp (positive NaN); Prometheus sorts them first.
    let nan_count = values.iter().filter(|v| v.is_nan()).count();
    values.rotate_right(nan_count);
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let lo = values.get(lower as usize).copied().unwrap_or(f64::NAN);
    let hi = values.get(upper as usize).copied().unwrap_or(f64::NAN);
    lo * (1.0 - weight) + hi * weight
}
