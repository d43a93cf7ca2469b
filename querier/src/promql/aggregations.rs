//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, ...) with
//! `by`/`without` grouping.

use std::collections::HashMap;
use std::sync::Arc;

use super::syntax::strings::check_label_name;
use promql_parser::parser::{AggregateExpr, LabelModifier};
use storage::labels::LabelsMap;
use storage::{Labels, METRIC_NAME};

use super::EvalError;
use super::eval::Evaluator;
use super::memo::LabelMemo;
use super::native_histogram::HistogramSum;
use super::selectors::node_id;
use super::value::{Elem, KahanSum, Val, format_float, quantile};

pub(crate) fn eval(ev: &Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Val, EvalError> {
    let op = a.op.to_string();
    let mut input = ev.eval(&a.expr, ts)?.into_vector()?;
    super::annotations::aggregation_input(ev, a, &op, &input, ts);
    // Only these aggregate native histograms; the others ignore them (as
    // Prometheus does, with an info annotation).
    if !matches!(
        op.as_str(),
        "sum" | "avg" | "count" | "group" | "limitk" | "limit_ratio" | "count_values"
    ) {
        input.retain(|e| e.h.is_none());
    }
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let grouping = Grouping::new(a.modifier.as_ref(), &ev.labels_memo, node_id(a));
    let out = match op.as_str() {
        "topk" | "bottomk" => {
            let k = param.ok_or_else(|| missing_param(&op))?.into_scalar()?;
            top_k(input, &grouping, k, op == "topk")?
        }
        "limitk" => {
            let k = param.ok_or_else(|| missing_param(&op))?.into_scalar()?;
            limit_k(input, &grouping, k)?
        }
        "limit_ratio" => {
            let r = param.ok_or_else(|| missing_param(&op))?.into_scalar()?;
            limit_ratio(input, r)?
        }
        "count_values" => {
            let label = param.ok_or_else(|| missing_param(&op))?.into_string()?;
            count_values(input, &grouping, &label)?
        }
        "quantile" => {
            let q = param.ok_or_else(|| missing_param(&op))?.into_scalar()?;
            simple(input, &grouping, |vals| quantile(q, &mut vals.to_vec()))
        }
        "sum" | "avg" if input.iter().any(|e| e.h.is_some()) => {
            with_histograms(input, &grouping, op == "avg")
        }
        "sum" => simple(input, &grouping, sum),
        "avg" => simple(input, &grouping, avg),
        "count" => simple(input, &grouping, |v| v.len() as f64),
        "group" => simple(input, &grouping, |_| 1.0),
        "min" => simple(input, &grouping, |v| {
            v.iter()
                .fold(f64::NAN, |m, &x| if x < m || m.is_nan() { x } else { m })
        }),
        "max" => simple(input, &grouping, |v| {
            v.iter()
                .fold(f64::NAN, |m, &x| if x > m || m.is_nan() { x } else { m })
        }),
        "stdvar" => simple(input, &grouping, variance),
        "stddev" => simple(input, &grouping, |v| variance(v).sqrt()),
        other => return Err(EvalError::Unsupported(format!("aggregation {other}"))),
    };
    Ok(Val::Vector(out))
}

fn missing_param(op: &str) -> EvalError {
    EvalError::Parse(format!("aggregation {op} requires a parameter"))
}

struct Grouping<'a> {
    by: bool,
    names: &'a [String],
    /// Group keys are memoised per input label set (for this aggregation
    /// node, `op`): the same series meet the same grouping at every step.
    memo: &'a LabelMemo<Labels>,
    op: usize,
}

impl<'a> Grouping<'a> {
    fn new(m: Option<&'a LabelModifier>, memo: &'a LabelMemo<Labels>, op: usize) -> Self {
        let (by, names): (bool, &[String]) = match m {
            Some(LabelModifier::Include(ls)) => (true, &ls.labels),
            Some(LabelModifier::Exclude(ls)) => (false, &ls.labels),
            None => (true, &[]),
        };
        Self {
            by,
            names,
            memo,
            op,
        }
    }

    /// Labels of the group an element belongs to; `without` always drops the
    /// metric name.
    fn key(&self, l: &Labels) -> Labels {
        self.memo.get(self.op, l, |l| {
            if self.by {
                l.retain(|n| self.names.iter().any(|x| x == n))
            } else {
                l.retain(|n| n != METRIC_NAME && !self.names.iter().any(|x| x == n))
            }
        })
    }
}

/// Groups elements, keeping groups in order of first appearance.
fn group<'e>(input: &'e [Elem], g: &Grouping) -> Vec<(Labels, Vec<&'e Elem>)> {
    let mut index: LabelsMap<usize> = LabelsMap::default();
    let mut groups: Vec<(Labels, Vec<&Elem>)> = Vec::new();
    for e in input {
        let key = g.key(&e.labels);
        match index.get(&key) {
            Some(&i) => {
                if let Some(gr) = groups.get_mut(i) {
                    gr.1.push(e);
                }
            }
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![e]));
            }
        }
    }
    groups
}

/// Aggregations producing one value per group from the group's values.
fn simple(input: Vec<Elem>, g: &Grouping, f: impl Fn(&[f64]) -> f64) -> Vec<Elem> {
    group(&input, g)
        .into_iter()
        .map(|(labels, members)| {
            let vals: Vec<f64> = members.iter().map(|e| e.v).collect();
            let drop_name = members.iter().any(|e| e.drop_name);
            Elem {
                labels,
                h: None,
                v: f(&vals),
                drop_name,
            }
        })
        .collect()
}

/// `sum`/`avg` when some inputs are native histograms: a group of only
/// histograms gives their sum (or mean), a group of only floats the usual
/// float, and a mixed group nothing (Prometheus warns).
fn with_histograms(input: Vec<Elem>, g: &Grouping, mean: bool) -> Vec<Elem> {
    let mut out = Vec::new();
    for (labels, members) in group(&input, g) {
        let drop_name = members.iter().any(|e| e.drop_name);
        let hists: Vec<&Arc<super::native_histogram::FloatHistogram>> =
            members.iter().filter_map(|e| e.h.as_ref()).collect();
        if hists.is_empty() {
            let vals: Vec<f64> = members.iter().map(|e| e.v).collect();
            out.push(Elem {
                labels,
                h: None,
                v: if mean { avg(&vals) } else { sum(&vals) },
                drop_name,
            });
            continue;
        }
        if hists.len() != members.len() {
            continue;
        }
        // The mean sums the scaled inputs: no overflow for huge values.
        let n = hists.len() as f64;
        let mut acc = HistogramSum::default();
        let ok = hists.iter().all(|h| {
            if mean {
                acc.add(&h.as_ref().clone().divide(n)).is_ok()
            } else {
                acc.add(h).is_ok()
            }
        });
        let Some(acc) = acc.value().filter(|_| ok) else {
            continue;
        };
        out.push(Elem {
            labels,
            h: Some(Arc::new(acc.compact())),
            v: 0.0,
            drop_name,
        });
    }
    out
}

pub(crate) fn sum(v: &[f64]) -> f64 {
    let mut s = KahanSum::default();
    v.iter().for_each(|&x| s.add(x));
    s.value()
}

/// Mean that survives overflow of the plain sum and treats infinities as
/// Prometheus does (a mix of +Inf and -Inf is NaN).
pub(crate) fn avg(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let s = sum(v);
    if s.is_finite() || s.is_nan() {
        return s / n;
    }
    let pos_inf = v.contains(&f64::INFINITY);
    let neg_inf = v.contains(&f64::NEG_INFINITY);
    match (pos_inf, neg_inf) {
        (true, true) => f64::NAN,
        (true, false) => f64::INFINITY,
        (false, true) => f64::NEG_INFINITY,
        (false, false) => {
            // Finite values whose sum overflows: average the scaled values.
            let mut m = KahanSum::default();
            v.iter().for_each(|&x| m.add(x / n));
            m.value()
        }
    }
}

/// Population variance (Welford's online algorithm, as Prometheus).
pub(crate) fn variance(v: &[f64]) -> f64 {
    let mut count = 0.0;
    let mut mean = 0.0;
    let mut m2 = 0.0;
    for &x in v {
        count += 1.0;
        let delta = x - mean;
        mean += delta / count;
        m2 += delta * (x - mean);
    }
    m2 / count
}

fn top_k(input: Vec<Elem>, g: &Grouping, k: f64, top: bool) -> Result<Vec<Elem>, EvalError> {
    if k.is_nan() {
        return Err(EvalError::Execution("Parameter value is NaN".into()));
    }
    if k < 1.0 {
        return Ok(Vec::new());
    }
    let k = if k >= input.len() as f64 {
        input.len()
    } else {
        k as usize
    };
    let mut out = Vec::new();
    for (_, mut members) in group(&input, g) {
        // NaN always sorts last: it is neither the top nor the bottom.
        members.sort_by(|a, b| {
            let (x, y) = (a.v, b.v);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if top => y.total_cmp(&x),
                _ => x.total_cmp(&y),
            }
        });
        out.extend(members.into_iter().take(k).cloned());
    }
    Ok(out)
}

/// `limitk`: the first `k` series of every group, in input order, unchanged.
/// Unlike `topk` it does not look at values, so it is a cheap way to sample
/// a few series of each group.
fn limit_k(input: Vec<Elem>, g: &Grouping, k: f64) -> Result<Vec<Elem>, EvalError> {
    if k.is_nan() {
        return Err(EvalError::Execution("Parameter value is NaN".into()));
    }
    if k < 1.0 {
        return Ok(Vec::new());
    }
    let k = if k >= input.len() as f64 {
        input.len()
    } else {
        k as usize
    };
    let mut taken: HashMap<Labels, usize> = HashMap::new();
    Ok(input
        .into_iter()
        .filter(|e| {
            let n = taken.entry(g.key(&e.labels)).or_insert(0);
            *n += 1;
            *n <= k
        })
        .collect())
}

/// `limit_ratio`: a deterministic sample of about `|r|` of the series, chosen
/// by the hash of their labels so that the same series are picked at every
/// step. A positive ratio keeps series whose hash falls in `[0, r)` of the
/// hash space, a negative one those in `[1 + r, 1)`, so `limit_ratio(r, v)`
/// and `limit_ratio(r - 1, v)` are complements. Ratios outside `[-1, 1]` are
/// capped (Prometheus warns about it).
fn limit_ratio(input: Vec<Elem>, r: f64) -> Result<Vec<Elem>, EvalError> {
    if r.is_nan() {
        return Err(EvalError::Execution("Ratio value is NaN".into()));
    }
    let r = r.clamp(-1.0, 1.0);
    Ok(input
        .into_iter()
        .filter(|e| {
            let at = e.labels.series_id() as f64 / u64::MAX as f64;
            if r >= 0.0 { at < r } else { at >= 1.0 + r }
        })
        .collect())
}

fn count_values(input: Vec<Elem>, g: &Grouping, label: &str) -> Result<Vec<Elem>, EvalError> {
    if let Err(quoted) = check_label_name(label) {
        return Err(EvalError::Execution(format!("invalid label name {quoted}")));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Elem> = Vec::new();
    for e in &input {
        // A histogram counts by its string form, as in Prometheus.
        let value = match &e.h {
            Some(h) => h.to_string(),
            None => format_float(e.v),
        };
        let key = g.key(&e.labels).with(label, &value);
        match index.get(&key) {
            Some(&i) => {
                if let Some(o) = out.get_mut(i) {
                    o.v += 1.0;
                }
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push(Elem {
                    labels: key,
                    h: None,
                    v: 1.0,
                    drop_name: false,
                });
            }
        }
    }
    Ok(out)
}
