//! Functions over range vectors: `rate` and friends, the `*_over_time`
//! family, `deriv`, `predict_linear`, `changes`, `resets`.

use std::sync::Arc;

use promql_parser::parser::{Expr, MatrixSelector};
use storage::Sample;
use storage::sample::is_stale_nan;

use super::EvalError;
use super::aggregations::avg;
use super::eval::Evaluator;
use super::native_histogram::{FloatHistogram, HistogramSum, ResetHint};
use super::selectors::{duration_ms, node_id, seek};
use super::value::{Elem, HPoint, KahanSum, RangeSeries, Val, quantile};

/// A range-vector argument at one evaluation time, with its window.
pub(crate) struct Window {
    pub series: Vec<RangeSeries>,
    /// Window bounds `(start, end]` in ms, after offset and `@`.
    pub start: i64,
    pub end: i64,
}

/// Evaluates a matrix-typed argument (range selector or subquery).
pub(crate) fn window(ev: &Evaluator<'_>, expr: &Expr, ts: i64) -> Result<Window, EvalError> {
    match expr {
        Expr::Paren(p) => window(ev, &p.expr, ts),
        Expr::MatrixSelector(ms) => {
            let end = ev.ref_time(&ms.vs.at, &ms.vs.offset, ts);
            let start = end.saturating_sub(duration_ms(&ms.range));
            let series = ev.eval(expr, ts)?.into_matrix()?;
            Ok(Window { series, start, end })
        }
        Expr::Subquery(sq) => {
            let end = ev.ref_time(&sq.at, &sq.offset, ts);
            let start = end.saturating_sub(duration_ms(&sq.range));
            Ok(Window {
                series: ev.subquery(sq, ts)?,
                start,
                end,
            })
        }
        _ => Err(EvalError::Execution(
            "expected a range vector argument".into(),
        )),
    }
}

/// Returns `None` when `name` is not a range-vector function.
pub(crate) fn eval(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    ts: i64,
) -> Option<Result<Val, EvalError>> {
    let kind = match name {
        "rate" => Kind::Extrapolated {
            counter: true,
            rate: true,
        },
        "increase" => Kind::Extrapolated {
            counter: true,
            rate: false,
        },
        "delta" => Kind::Extrapolated {
            counter: false,
            rate: false,
        },
        "irate" => Kind::Instant { rate: true },
        "idelta" => Kind::Instant { rate: false },
        "deriv"
        | "predict_linear"
        | "resets"
        | "changes"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "last_over_time"
        | "first_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "quantile_over_time"
        | "present_over_time"
        | "mad_over_time"
        | "ts_of_last_over_time"
        | "ts_of_first_over_time"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time"
        | "double_exponential_smoothing" => Kind::Simple,
        _ => return None,
    };
    Some(eval_kind(ev, name, kind, args, ts))
}

#[derive(Clone, Copy)]
enum Kind {
    Extrapolated { counter: bool, rate: bool },
    Instant { rate: bool },
    Simple,
}

fn eval_kind(
    ev: &Evaluator<'_>,
    name: &str,
    kind: Kind,
    args: &[Box<Expr>],
    ts: i64,
) -> Result<Val, EvalError> {
    // quantile_over_time takes its scalar first, the others after the range.
    let (matrix_arg, scalar_args) = match name {
        "quantile_over_time" => (args.get(1), args.get(..1)),
        _ => (args.first(), args.get(1..)),
    };
    let matrix_arg =
        matrix_arg.ok_or_else(|| EvalError::Parse(format!("missing argument to {name}")))?;
    let mut params = Vec::new();
    for a in scalar_args.unwrap_or_default() {
        params.push(ev.eval(a, ts)?.into_scalar()?);
    }
    let param = params.first().copied().unwrap_or(f64::NAN);
    if name == "double_exponential_smoothing" {
        let tf = params.get(1).copied().unwrap_or(f64::NAN);
        if !(param > 0.0 && param < 1.0) {
            return Err(EvalError::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {param}"
            )));
        }
        if !(tf > 0.0 && tf < 1.0) {
            return Err(EvalError::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
            )));
        }
    }
    // Only these keep the metric name: they return a sample as it was.
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    if let Some(ms) = matrix_selector(matrix_arg)
        && let Some(m) = ev.loaded.ext.selector_mod(&ms.vs)
    {
        return super::extended_range::eval(ev, ms, m, name, ts);
    }
    if let Some(ms) = matrix_selector(matrix_arg) {
        return over_selector(ev, ms, name, kind, &params, ts, keep_name);
    }
    let w = window(ev, matrix_arg, ts)?;
    super::annotations::range_input(ev, name, matrix_arg, &w.series);
    let mut out = Vec::with_capacity(w.series.len());
    for s in &w.series {
        // Smoothing ignores histogram samples entirely.
        if !s.hists.is_empty() && name != "double_exponential_smoothing" {
            if let Some((v, h)) = with_histograms(name, kind, s, w.start, w.end, param) {
                out.push(Elem {
                    labels: s.labels.clone(),
                    v,
                    h: h.map(Arc::new),
                    drop_name: !keep_name || s.drop_name,
                });
            }
            continue;
        }
        if let Some(v) = float_value(name, kind, &s.samples, w.start, w.end, &params, ts) {
            out.push(Elem {
                labels: s.labels.clone(),
                v,
                h: None,
                drop_name: !keep_name || s.drop_name,
            });
        }
    }
    Ok(Val::Vector(out))
}

/// The range selector a matrix argument is, if it is one (not a subquery).
fn matrix_selector(e: &Expr) -> Option<&MatrixSelector> {
    match e {
        Expr::Paren(p) => matrix_selector(&p.expr),
        Expr::MatrixSelector(ms) => Some(ms),
        _ => None,
    }
}

/// A range function over a range selector: each window is a slice of the
/// loaded samples, not a copy (a copy is made only of a window holding stale
/// markers, and of a series with histogram samples in the window). Same
/// result as over [`window`]'s series.
fn over_selector(
    ev: &Evaluator<'_>,
    ms: &MatrixSelector,
    name: &str,
    kind: Kind,
    params: &[f64],
    ts: i64,
    keep_name: bool,
) -> Result<Val, EvalError> {
    let end = ev.ref_time(&ms.vs.at, &ms.vs.offset, ts);
    let start = end.saturating_sub(duration_ms(&ms.range));
    let series = ev.loaded.series(&ms.vs)?;
    let param = params.first().copied().unwrap_or(f64::NAN);
    let mut out = Vec::new();
    let mut unstale: Vec<Sample> = Vec::new();
    // Window starts and ends move forward with the steps: two hints per series.
    let mut hints = ev.cursors.take(node_id(ms), 2 * series.len());
    for (s, h) in series.iter().zip(hints.chunks_exact_mut(2)) {
        let [from_hint, to_hint] = h else {
            continue;
        };
        let from = seek(&s.samples, start, from_hint);
        let to = seek(&s.samples, end, to_hint).max(from);
        let mut samples = s.samples.get(from..to).unwrap_or_default();
        if samples.iter().any(|x| is_stale_nan(x.v)) {
            unstale.clear();
            unstale.extend(samples.iter().filter(|x| !is_stale_nan(x.v)));
            samples = &unstale;
        }
        let hists = if s.hists.is_empty() {
            &[][..]
        } else {
            let from = s.hists.partition_point(|x| x.t <= start);
            let to = s.hists.partition_point(|x| x.t <= end);
            s.hists.get(from..to).unwrap_or_default()
        };
        super::annotations::range_series(ev, name, ms, &s.labels, false, samples, hists);
        if !hists.is_empty() && name != "double_exponential_smoothing" {
            let rs = RangeSeries {
                labels: s.labels.clone(),
                samples: samples.to_vec(),
                hists: hists.to_vec(),
                drop_name: false,
            };
            if let Some((v, h)) = with_histograms(name, kind, &rs, start, end, param) {
                out.push(Elem {
                    labels: rs.labels,
                    v,
                    h: h.map(Arc::new),
                    drop_name: !keep_name,
                });
            }
            continue;
        }
        if samples.is_empty() {
            continue;
        }
        if let Some(v) = float_value(name, kind, samples, start, end, params, ts) {
            out.push(Elem {
                labels: s.labels.clone(),
                v,
                h: None,
                drop_name: !keep_name,
            });
        }
    }
    ev.cursors.put(node_id(ms), hints);
    Ok(Val::Vector(out))
}

/// A range function's value over the float samples of one window.
fn float_value(
    name: &str,
    kind: Kind,
    samples: &[Sample],
    start: i64,
    end: i64,
    params: &[f64],
    ts: i64,
) -> Option<f64> {
    let param = params.first().copied().unwrap_or(f64::NAN);
    match kind {
        Kind::Extrapolated { counter, rate } => extrapolated(samples, start, end, counter, rate),
        Kind::Instant { rate } => instant_delta(samples, rate),
        Kind::Simple if name == "double_exponential_smoothing" => {
            holt(samples, param, params.get(1).copied().unwrap_or(f64::NAN))
        }
        Kind::Simple => simple(name, samples, param, ts),
    }
}

/// A range function over a series holding histogram samples (and perhaps
/// floats too). Functions that only make sense for floats ignore the
/// histograms, as Prometheus does; a mix that a function cannot combine
/// gives no result (Prometheus warns).
fn with_histograms(
    name: &str,
    kind: Kind,
    s: &RangeSeries,
    start: i64,
    end: i64,
    param: f64,
) -> Option<(f64, Option<FloatHistogram>)> {
    let mixed = !s.samples.is_empty();
    let hist = |h: FloatHistogram| Some((0.0, Some(h)));
    match kind {
        Kind::Extrapolated { counter, rate } => {
            if mixed {
                return None;
            }
            histogram_rate(&s.hists, start, end, counter, rate).and_then(hist)
        }
        Kind::Instant { rate } => {
            if mixed {
                // Only the last two samples matter; they must both be histograms.
                let last_f = s.samples.last().map(|x| x.t);
                let n = s.hists.len();
                let before_last = n.checked_sub(2).and_then(|i| s.hists.get(i)).map(|p| p.t);
                if last_f.is_some_and(|t| before_last.is_none_or(|b| t > b)) {
                    return None;
                }
            }
            histogram_instant(&s.hists, rate).and_then(hist)
        }
        Kind::Simple => match name {
            "count_over_time" => Some(((s.samples.len() + s.hists.len()) as f64, None)),
            "present_over_time" => Some((1.0, None)),
            "last_over_time" => {
                let h = s.hists.last()?;
                match s.samples.last() {
                    Some(f) if f.t > h.t => Some((f.v, None)),
                    _ => hist(h.h.as_ref().clone()),
                }
            }
            "first_over_time" => {
                let h = s.hists.first()?;
                match s.samples.first() {
                    Some(f) if f.t < h.t => Some((f.v, None)),
                    _ => hist(h.h.as_ref().clone()),
                }
            }
            "ts_of_last_over_time" => {
                let t = s
                    .hists
                    .last()?
                    .t
                    .max(s.samples.last().map_or(i64::MIN, |x| x.t));
                Some((t as f64 / 1000.0, None))
            }
            "ts_of_first_over_time" => {
                let t = s
                    .hists
                    .first()?
                    .t
                    .min(s.samples.first().map_or(i64::MAX, |x| x.t));
                Some((t as f64 / 1000.0, None))
            }
            "sum_over_time" | "avg_over_time" => {
                if mixed {
                    return None;
                }
                let n = s.hists.len() as f64;
                let mut sum = HistogramSum::default();
                for p in &s.hists {
                    let r = if name == "avg_over_time" {
                        sum.add(&p.h.as_ref().clone().divide(n))
                    } else {
                        sum.add(&p.h)
                    };
                    r.ok()?;
                }
                let mut acc = sum.value()?;
                acc.hint = ResetHint::Gauge;
                hist(acc.compact())
            }
            "changes" | "resets" => Some((transitions(s, name == "resets"), None)),
            // Float-only functions: histogram samples are ignored.
            _ => {
                if s.samples.is_empty() {
                    return None;
                }
                match name {
                    "double_exponential_smoothing" => None,
                    _ => simple(name, &s.samples, param, end).map(|v| (v, None)),
                }
            }
        },
    }
}

/// `changes` or `resets` over a series mixing floats and histograms: a
/// change of sample type counts as both.
pub(crate) fn transitions(s: &RangeSeries, resets: bool) -> f64 {
    enum P<'a> {
        F(f64),
        H(&'a FloatHistogram),
    }
    let mut all: Vec<(i64, P<'_>)> = s
        .samples
        .iter()
        .map(|x| (x.t, P::F(x.v)))
        .chain(s.hists.iter().map(|p| (p.t, P::H(&p.h))))
        .collect();
    all.sort_by_key(|x| x.0);
    let mut n = 0.0;
    for w in all.windows(2) {
        let hit = match (&w[0].1, &w[1].1) {
            (P::F(a), P::F(b)) => {
                if resets {
                    b < a
                } else {
                    b != a && !(a.is_nan() && b.is_nan())
                }
            }
            (P::H(a), P::H(b)) => {
                if resets {
                    b.detect_reset(a)
                } else {
                    !b.equals(a)
                }
            }
            _ => true,
        };
        if hit {
            n += 1.0;
        }
    }
    n
}

/// `rate`, `increase`, `delta` over histogram samples.
fn histogram_rate(
    pts: &[HPoint],
    start: i64,
    end: i64,
    counter: bool,
    rate: bool,
) -> Option<FloatHistogram> {
    if pts.len() < 2 {
        return None;
    }
    let first = pts.first()?;
    let last = pts.last()?;
    let mut prev: FloatHistogram = first.h.as_ref().clone();
    if counter && let Some(second) = pts.get(1) {
        // A reset right after the first sample makes the first irrelevant,
        // whatever its layout.
        if second.h.detect_reset(&prev) {
            prev = FloatHistogram {
                schema: second.h.schema,
                custom_values: second.h.custom_values.clone(),
                ..FloatHistogram::default()
            };
        }
    }
    let custom = prev.uses_custom_buckets();
    if last.h.uses_custom_buckets() != custom {
        return None;
    }
    let mut min_schema = last.h.schema.min(prev.schema);
    if counter {
        for p in &pts[1..pts.len() - 1] {
            min_schema = min_schema.min(p.h.schema);
            if p.h.uses_custom_buckets() != custom {
                return None;
            }
        }
    }
    let mut h = last.h.to_schema(min_schema).sub(&prev).ok()?;
    if counter {
        let mut before: &FloatHistogram = &prev;
        for p in &pts[1..] {
            if p.h.detect_reset(before) {
                h = h.add(before).ok()?;
            }
            before = &p.h;
        }
    }
    h.hint = ResetHint::Gauge;
    let h = h.compact();
    let factor = extrapolation_factor(
        first.t,
        last.t,
        pts.len(),
        start,
        end,
        counter.then_some((first.h.count, h.count)),
        rate,
    );
    Some(h.scale(factor))
}

/// `irate`, `idelta` over the last two histogram samples.
fn histogram_instant(pts: &[HPoint], rate: bool) -> Option<FloatHistogram> {
    let n = pts.len();
    if n < 2 {
        return None;
    }
    let (prev, last) = (pts.get(n - 2)?, pts.get(n - 1)?);
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    let mut h = last.h.as_ref().clone();
    if !rate || !last.h.detect_reset(&prev.h) {
        h = h.sub(&prev.h).ok()?;
    }
    h.hint = ResetHint::Gauge;
    let h = h.compact();
    Some(if rate {
        h.divide(dt as f64 / 1000.0)
    } else {
        h
    })
}

/// Prometheus' extrapolation of a change measured between the first and
/// last sample to the window edges; `counter` carries the first value and
/// the change, to stop extrapolating where a counter would reach zero.
fn extrapolation_factor(
    first_t: i64,
    last_t: i64,
    n: usize,
    start: i64,
    end: i64,
    counter: Option<(f64, f64)>,
    rate: bool,
) -> f64 {
    let mut to_start = (first_t as f64 - start as f64) / 1000.0;
    let mut to_end = (end as f64 - last_t as f64) / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_step = sampled / (n - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if let Some((first, result)) = counter
        && result > 0.0
        && first >= 0.0
    {
        let to_zero = sampled * (first / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= (end as f64 - start as f64) / 1000.0;
    }
    factor
}

/// `rate`, `increase`, `delta`: the change over the window, extrapolated
/// towards the window edges when samples stop short of them.
fn extrapolated(s: &[Sample], start: i64, end: i64, counter: bool, rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let first = s.first()?;
    let last = s.last()?;
    let mut result = last.v - first.v;
    if counter {
        let mut prev = first.v;
        for x in s.iter().skip(1) {
            if x.v < prev {
                result += prev;
            }
            prev = x.v;
        }
    }
    let mut to_start = (first.t as f64 - start as f64) / 1000.0;
    let mut to_end = (end as f64 - last.t as f64) / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        // A counter cannot have been below zero: don't extrapolate past it.
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if rate {
        factor /= (end as f64 - start as f64) / 1000.0;
    }
    Some(result * factor)
}

/// `irate`, `idelta`: from the last two samples.
fn instant_delta(s: &[Sample], rate: bool) -> Option<f64> {
    let n = s.len();
    if n < 2 {
        return None;
    }
    let last = s.get(n - 1)?;
    let prev = s.get(n - 2)?;
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    let mut v = if rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    if rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

fn simple(name: &str, s: &[Sample], param: f64, ts: i64) -> Option<f64> {
    let first = s.first()?;
    let vals = || s.iter().map(|x| x.v);
    Some(match name {
        "deriv" => {
            if s.len() < 2 {
                return None;
            }
            linear_regression(s, first.t).0
        }
        "predict_linear" => {
            if s.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(s, ts);
            slope * param + intercept
        }
        "resets" => s
            .windows(2)
            .filter(|w| matches!(w, [a, b] if b.v < a.v))
            .count() as f64,
        "changes" => s
            .windows(2)
            .filter(|w| matches!(w, [a, b] if b.v != a.v && !(a.v.is_nan() && b.v.is_nan())))
            .count() as f64,
        "avg_over_time" => avg(&vals().collect::<Vec<_>>()),
        "min_over_time" => vals().fold(f64::NAN, |m, x| if x < m || m.is_nan() { x } else { m }),
        "max_over_time" => vals().fold(f64::NAN, |m, x| if x > m || m.is_nan() { x } else { m }),
        "sum_over_time" => {
            let mut k = KahanSum::default();
            vals().for_each(|x| k.add(x));
            k.value()
        }
        "count_over_time" => s.len() as f64,
        "last_over_time" => s.last()?.v,
        "first_over_time" => first.v,
        "ts_of_last_over_time" => s.last()?.t as f64 / 1000.0,
        "ts_of_first_over_time" => first.t as f64 / 1000.0,
        "ts_of_min_over_time" => extreme_time(s, |x, m| x < m),
        "ts_of_max_over_time" => extreme_time(s, |x, m| x > m),
        "present_over_time" => 1.0,
        "stdvar_over_time" => variance_kahan(vals()),
        "stddev_over_time" => variance_kahan(vals()).sqrt(),
        "quantile_over_time" => quantile(param, &mut vals().collect::<Vec<_>>()),
        "mad_over_time" => {
            let mut v: Vec<f64> = vals().collect();
            if v.iter().any(|x| x.is_nan()) {
                return Some(f64::NAN);
            }
            let median = quantile(0.5, &mut v);
            let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
            quantile(0.5, &mut dev)
        }
        _ => return None,
    })
}

/// Time (seconds) of the first sample that is the extreme by `better`.
fn extreme_time(s: &[Sample], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best: Option<Sample> = None;
    for x in s {
        match best {
            Some(b) if !(better(x.v, b.v) || b.v.is_nan()) => {}
            _ => best = Some(*x),
        }
    }
    best.map_or(f64::NAN, |b| b.t as f64 / 1000.0)
}

/// `double_exponential_smoothing` (Holt's linear method) with smoothing
/// factor `sf` and trend factor `tf`.
fn holt(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    let (first, second) = (s.first()?, s.get(1)?);
    let mut s0 = 0.0;
    let mut s1 = first.v;
    let mut b = second.v - first.v;
    for (i, x) in s.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x.v + (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = next;
    }
    Some(s1)
}

/// Population variance with compensated sums (Welford's method).
fn variance_kahan(vals: impl Iterator<Item = f64>) -> f64 {
    let mut count = 0.0;
    let mut mean = KahanSum::default();
    let mut aux = KahanSum::default();
    for x in vals {
        count += 1.0;
        let delta = x - mean.value();
        mean.add(delta / count);
        aux.add(delta * (x - mean.value()));
    }
    aux.value() / count
}

/// Least-squares fit of value over time (seconds relative to
/// `intercept_time`); returns (slope, intercept).
pub(crate) fn linear_regression(s: &[Sample], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sx, mut sy, mut sxy, mut sx2) = (
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
        KahanSum::default(),
    );
    let init_y = s.first().map_or(f64::NAN, |x| x.v);
    let mut const_y = true;
    for x in s {
        if const_y && x.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let t = (x.t - intercept_time) as f64 / 1000.0;
        sx.add(t);
        sy.add(x.v);
        sxy.add(t * x.v);
        sx2.add(t * t);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx.value(), sy.value(), sxy.value(), sx2.value());
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}
