//! Histogram functions: over classic histograms (`le` bucket series) and
//! over native histogram samples (the math lives in `native_histogram`).
//! The native-only functions (`histogram_count`, `histogram_sum`, ...)
//! ignore float samples, as Prometheus does.

use std::collections::HashMap;
use std::sync::Arc;

use super::syntax::strings::check_label_name;
use promql_parser::parser::Expr;
use storage::Labels;

use super::EvalError;
use super::eval::Evaluator;
use super::native_histogram::{self, FloatHistogram};
use super::selectors::node_id;
use super::value::{Elem, Val, check_unique, format_float};

const BUCKET_LABEL: &str = "le";

/// Returns `None` when `name` is not a histogram function.
pub(crate) fn eval(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    ts: i64,
) -> Option<Result<Val, EvalError>> {
    match name {
        "histogram_quantile" => Some(classic(
            ev,
            args,
            ts,
            1,
            |p, b| quantile_reporting(ev, args.get(1).map(|a| a.as_ref()), p[0], b),
            |p, h| native_histogram::quantile(p[0], h),
        )),
        "histogram_quantiles" => Some(quantiles(ev, args, ts)),
        "histogram_fraction" => Some(classic(
            ev,
            args,
            ts,
            2,
            |p, b| fraction(p[0], p[1], b),
            |p, h| native_histogram::fraction(p[0], p[1], h),
        )),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => Some(args.first().map_or_else(
            || Err(EvalError::Parse(format!("missing argument to {name}"))),
            |a| {
                let f: fn(&FloatHistogram) -> f64 = match name {
                    "histogram_count" => |h| h.count,
                    "histogram_sum" => |h| h.sum,
                    "histogram_avg" => |h| h.sum / h.count,
                    "histogram_stddev" => |h| native_histogram::variance(h).sqrt(),
                    _ => native_histogram::variance,
                };
                let v = ev.eval(a, ts)?.into_vector()?;
                Ok(Val::Vector(
                    v.into_iter()
                        .filter_map(|e| {
                            let h = e.h?;
                            Some(Elem {
                                labels: e.labels,
                                v: f(&h),
                                h: None,
                                drop_name: true,
                            })
                        })
                        .collect(),
                ))
            },
        )),
        _ => None,
    }
}

/// `histogram_quantiles(v, "label", q...)`: one series per quantile, told
/// apart by `label`.
fn quantiles(ev: &Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Val, EvalError> {
    let missing = || EvalError::Parse("missing argument to histogram_quantiles".into());
    let label = ev
        .eval(args.get(1).ok_or_else(missing)?, ts)?
        .into_string()?;
    if let Err(quoted) = check_label_name(&label) {
        return Err(EvalError::Execution(format!("invalid label name {quoted}")));
    }
    let mut out = Vec::new();
    for q_expr in args.iter().skip(2) {
        let q = ev.eval(q_expr, ts)?.into_scalar()?;
        let mut text = format_float(q);
        if q.is_finite() && !text.contains('.') {
            text.push_str(".0");
        }
        let (groups, natives) = classic_groups(ev, args.get(..1).ok_or_else(missing)?, ts)?;
        for e in groups {
            let (labels, mut buckets) = e;
            out.push(Elem {
                labels: labels.with(&label, &text),
                h: None,
                v: quantile_reporting(ev, args.first().map(|a| a.as_ref()), q, &mut buckets),
                drop_name: true,
            });
        }
        for (labels, h) in natives {
            let v = native_histogram::quantile(q, &h);
            if let Some(a) = args.first() {
                super::annotations::native_nan_observations(ev, a, &labels, &h, true, v);
            }
            out.push(Elem {
                labels: labels.with(&label, &text),
                h: None,
                v,
                drop_name: true,
            });
        }
    }
    check_unique(out.iter().map(|e| &e.labels))?;
    Ok(Val::Vector(out))
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// Groups `le` series by their other labels and applies `f` to each group's
/// buckets. The first `nparams` arguments are scalars, the last the vector.
fn classic(
    ev: &Evaluator<'_>,
    args: &[Box<Expr>],
    ts: i64,
    nparams: usize,
    f: impl Fn(&[f64], &mut Vec<Bucket>) -> f64,
    native: impl Fn(&[f64], &FloatHistogram) -> f64,
) -> Result<Val, EvalError> {
    let mut params = Vec::with_capacity(nparams);
    for i in 0..nparams {
        let a = args
            .get(i)
            .ok_or_else(|| EvalError::Parse("missing histogram function argument".into()))?;
        params.push(ev.eval(a, ts)?.into_scalar()?);
    }
    let (groups, natives) = classic_groups(ev, args.get(nparams..).unwrap_or_default(), ts)?;
    let mut out: Vec<Elem> = Vec::with_capacity(groups.len() + natives.len());
    out.extend(groups.into_iter().map(|(labels, mut buckets)| Elem {
        labels,
        h: None,
        v: f(&params, &mut buckets),
        drop_name: true,
    }));
    out.extend(natives.into_iter().map(|(labels, h)| {
        let v = native(&params, &h);
        if let Some(a) = args.get(nparams) {
            super::annotations::native_nan_observations(ev, a, &labels, &h, nparams == 1, v);
        }
        Elem {
            labels,
            h: None,
            v,
            drop_name: true,
        }
    }));
    Ok(Val::Vector(out))
}

/// Classic bucket groups (labels without `le`, buckets) and native
/// histogram samples (labels, histogram) of a vector.
type Groups = (
    Vec<(Labels, Vec<Bucket>)>,
    Vec<(Labels, Arc<FloatHistogram>)>,
);

/// Evaluates the bucket vector (first of `args`) and groups its float
/// samples by the labels other than `le`; native histograms stay apart.
fn classic_groups(ev: &Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Groups, EvalError> {
    let a = args
        .first()
        .ok_or_else(|| EvalError::Parse("missing histogram function argument".into()))?;
    let input = ev.eval(a, ts)?.into_vector()?;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut natives = Vec::new();
    for e in input {
        if let Some(h) = e.h {
            natives.push((e.labels, h));
            continue;
        }
        // Series without a parsable `le` are ignored (Prometheus warns).
        // Memoised: the same buckets come back at every step.
        let Some((key, upper)) = ev.buckets_memo.get(node_id(a.as_ref()), &e.labels, |l| {
            let upper = l.get(BUCKET_LABEL).and_then(parse_go_float)?;
            Some((l.without(BUCKET_LABEL), upper))
        }) else {
            super::annotations::bad_bucket_label(ev, a, &e.labels, e.drop_name);
            continue;
        };
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        if let Some(g) = groups.get_mut(i) {
            g.1.push(Bucket { upper, count: e.v });
        }
    }
    // A series that is both a classic and a native histogram gives no
    // result (Prometheus warns about the mix).
    let clash: Vec<Labels> = natives
        .iter()
        .filter(|(l, _)| index.contains_key(l))
        .map(|(l, _)| l.clone())
        .collect();
    for l in &clash {
        super::annotations::mixed_classic_native(ev, a, l);
    }
    if !clash.is_empty() {
        groups.retain(|(l, _)| !clash.contains(l));
        natives.retain(|(l, _)| !clash.contains(l));
    }
    Ok((groups, natives))
}

fn parse_go_float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// Sorts buckets, merges equal bounds and checks for the `+Inf` bucket.
fn prepare(buckets: &mut Vec<Bucket>) -> bool {
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
    if !buckets.last().is_some_and(|b| b.upper == f64::INFINITY) {
        return false;
    }
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    *buckets = merged;
    true
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Bucket counts must not decrease; tiny float noise and real decreases are
/// both flattened, as Prometheus does. True when a real decrease was.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let Some(mut prev) = buckets.first().map(|b| b.count) else {
        return false;
    };
    let mut forced = false;
    for b in buckets.iter_mut().skip(1) {
        if b.count == prev {
            continue;
        }
        if almost_equal(prev, b.count, 1e-12) {
            b.count = prev;
            continue;
        }
        if b.count < prev {
            forced = true;
            b.count = prev;
            continue;
        }
        prev = b.count;
    }
    forced
}

/// [`quantile`], reporting buckets that had to be made monotonic.
fn quantile_reporting(
    ev: &Evaluator<'_>,
    arg: Option<&Expr>,
    q: f64,
    buckets: &mut Vec<Bucket>,
) -> f64 {
    let (v, forced) = quantile(q, buckets);
    if let (true, Some(arg)) = (forced, arg) {
        super::annotations::forced_monotonicity(ev, arg);
    }
    v
}

/// The quantile, and whether the buckets had to be made monotonic.
fn quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if !prepare(buckets) {
        return (f64::NAN, false);
    }
    let forced = ensure_monotonic(buckets);
    let n = buckets.len();
    if n < 2 {
        return (f64::NAN, forced);
    }
    let observations = buckets[n - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let b = buckets[..n - 1].partition_point(|x| x.count < rank);
    if b == n - 1 {
        return (buckets[n - 2].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

fn fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if !prepare(buckets) {
        return f64::NAN;
    }
    ensure_monotonic(buckets);
    let total = buckets.last().map_or(0.0, |b| b.count);
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    (rank_at(upper, buckets, total) - rank_at(lower, buckets, total)) / total
}

/// Estimated number of observations at or below `v`, interpolating linearly
/// inside a bucket (the first bucket starts at 0 when its bound is positive).
fn rank_at(v: f64, buckets: &[Bucket], total: f64) -> f64 {
    let mut prev_upper = f64::NEG_INFINITY;
    let mut prev_count = 0.0;
    for (i, b) in buckets.iter().enumerate() {
        let lower = if i == 0 && b.upper > 0.0 {
            0.0
        } else {
            prev_upper
        };
        if v <= lower {
            return prev_count;
        }
        if v < b.upper {
            // Observations of an infinitely wide bucket sit at its infinite end.
            if lower == f64::NEG_INFINITY {
                return b.count;
            }
            if b.upper == f64::INFINITY {
                return prev_count;
            }
            return prev_count + (b.count - prev_count) * (v - lower) / (b.upper - lower);
        }
        prev_upper = b.upper;
        prev_count = b.count;
    }
    total
}
