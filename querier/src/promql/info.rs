//! The experimental `info(v, {selector})` function: enriches every series of
//! `v` with the data labels of the info series (`target_info` by default)
//! that share its identifying labels (`instance`, `job`).
//!
//! Info series are not part of the query's selectors, so the planner loads
//! them separately ([`info_matchers`], [`reference_time`]) and the evaluator
//! joins them per step. The join is done as of the time the argument's data
//! is read: an `@` or `offset` on the argument (or on a subquery around it)
//! moves the info lookup with it, so `info(x offset 1h)` shows the labels the
//! series had an hour ago.

use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::parser::{Call, Expr};
use storage::{Label, Labels, METRIC_NAME, MatchOp, Matcher};

use super::EvalError;
use super::eval::Evaluator;
use super::selectors::{at_ms, offset_ms, select_instant, to_storage_matchers};
use super::value::{Elem, Val, labels_from};

/// Info metric used when the selector names none.
const DEFAULT_INFO_METRIC: &str = "target_info";

/// What info metrics are called, assumed when the selector only says which
/// names it does not want.
const INFO_METRIC_PATTERN: &str = ".+_info";

/// Labels that tie an info series to the series it describes.
const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

/// The label selector argument of an `info` call as storage matchers, if any.
fn selector_matchers(call: &Call) -> Result<Option<Vec<Matcher>>, EvalError> {
    match call.args.args.get(1).map(|a| unwrap_parens(a)) {
        None => Ok(None),
        Some(Expr::VectorSelector(vs)) => to_storage_matchers(vs).map(Some),
        Some(_) => Err(EvalError::Parse(
            "expected label selector as second argument to info()".into(),
        )),
    }
}

/// The matchers that select an `info` call's candidate info series: the
/// selector's matchers, with the metric name narrowed to `target_info` when
/// they do not constrain it, or to `.+_info` when they only exclude names
/// (otherwise every ordinary series would be a candidate). Identifying
/// labels are filtered in memory per step.
pub(crate) fn info_matchers(call: &Call) -> Result<Vec<Matcher>, EvalError> {
    let mut ms = selector_matchers(call)?.unwrap_or_default();
    let names = || ms.iter().filter(|m| m.name == METRIC_NAME);
    let positive = names().any(|m| matches!(m.op, MatchOp::Equal | MatchOp::Regex));
    if !positive {
        let implied = if names().next().is_none() {
            Matcher::eq(METRIC_NAME, DEFAULT_INFO_METRIC)
        } else {
            Matcher::new(MatchOp::Regex, METRIC_NAME, INFO_METRIC_PATTERN)
                .map_err(|e| EvalError::Execution(e.to_string()))?
        };
        ms.push(implied);
    }
    Ok(ms)
}

/// The time at which `expr`, evaluated at `t`, reads its data: the `@` and
/// `offset` modifiers on the path to its first selector applied in turn.
/// `None` when `expr` holds no selector.
pub(crate) fn reference_time(expr: &Expr, t: i64, start: i64, end: i64) -> Option<i64> {
    let shift = |at, off, t: i64| {
        at_ms(at, start, end)
            .unwrap_or(t)
            .saturating_sub(offset_ms(off))
    };
    match expr {
        Expr::VectorSelector(vs) => Some(shift(&vs.at, &vs.offset, t)),
        Expr::MatrixSelector(ms) => Some(shift(&ms.vs.at, &ms.vs.offset, t)),
        Expr::Subquery(sq) => {
            let t = shift(&sq.at, &sq.offset, t);
            Some(reference_time(&sq.expr, t, start, end).unwrap_or(t))
        }
        Expr::Paren(p) => reference_time(&p.expr, t, start, end),
        Expr::Unary(u) => reference_time(&u.expr, t, start, end),
        Expr::Aggregate(a) => reference_time(&a.expr, t, start, end).or_else(|| {
            a.param
                .as_ref()
                .and_then(|p| reference_time(p, t, start, end))
        }),
        Expr::Binary(b) => {
            reference_time(&b.lhs, t, start, end).or_else(|| reference_time(&b.rhs, t, start, end))
        }
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .find_map(|a| reference_time(a, t, start, end)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => None,
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// The join key of a series towards one info metric: that metric's name and
/// the series' identifying labels, those it has.
type Signature<'a> = (&'a str, [Option<&'a str>; 2]);

fn identifying(l: &Labels) -> [Option<&str>; 2] {
    IDENTIFYING_LABELS.map(|n| l.get(n))
}

pub(crate) fn eval(ev: &Evaluator<'_>, call: &Call, ts: i64) -> Result<Val, EvalError> {
    let base_expr = call
        .args
        .args
        .first()
        .ok_or_else(|| EvalError::Parse("missing argument to info".into()))?;
    let base = ev.eval(base_expr, ts)?.into_vector()?;
    if base.is_empty() {
        return Ok(Val::Vector(base));
    }
    // Series of the info metrics themselves are passed through unenriched;
    // data label matchers say which labels to add (without any, all).
    let (name_matchers, data_matchers): (Vec<Matcher>, Vec<Matcher>) = info_matchers(call)?
        .into_iter()
        .partition(|m| m.name == METRIC_NAME);
    let is_info = |e: &Elem| {
        let name = e.labels.get(METRIC_NAME).unwrap_or("");
        name_matchers.iter().all(|m| m.matches_value(name))
    };

    // Identifying label values in use; an info series lacking one of these
    // labels, or with another value, describes none of the series.
    let mut wanted: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in base.iter().filter(|e| !is_info(e)) {
        for n in IDENTIFYING_LABELS {
            if let Some(v) = e.labels.get(n) {
                wanted.entry(n).or_default().insert(v);
            }
        }
    }
    let t = reference_time(base_expr, ts, ev.start, ev.end).unwrap_or(ts);
    // The latest sample per signature wins; two at the same time conflict.
    let mut infos: HashMap<Signature<'_>, (&Labels, i64)> = HashMap::new();
    let info_series = if wanted.is_empty() {
        &[]
    } else {
        ev.loaded.info_series(call)?
    };
    for s in info_series {
        let relevant = wanted
            .iter()
            .all(|(n, vals)| s.labels.get(n).is_some_and(|v| vals.contains(v)));
        if !relevant {
            continue;
        }
        let Some((latest, sample_t)) =
            select_instant(std::slice::from_ref(s), t, ev.lookback).pop()
        else {
            continue;
        };
        // Info metrics carry their data in labels; a histogram there is a
        // mistake in the selector, not something to join (Prometheus fails too).
        if latest.h.is_some() {
            return Err(EvalError::Execution(format!(
                "info series {} has a native histogram sample at {sample_t}; info series must be floats",
                s.labels
            )));
        }
        let name = s.labels.get(METRIC_NAME).unwrap_or("");
        let sig = (name, identifying(&s.labels));
        match infos.get(&sig) {
            Some((_, prev)) if *prev > sample_t => {}
            Some((prev, pt)) if *pt == sample_t => {
                return Err(EvalError::Execution(format!(
                    "found duplicate series for info metric: existing {prev} @ {pt}, new {} @ {}",
                    s.labels, sample_t
                )));
            }
            _ => {
                infos.insert(sig, (&s.labels, sample_t));
            }
        }
    }
    let mut names: Vec<&str> = infos.keys().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();

    let mut out = Vec::with_capacity(base.len());
    for e in base {
        if is_info(&e) {
            out.push(e);
            continue;
        }
        let mut added: BTreeMap<&str, &str> = BTreeMap::new();
        let mut matched = false;
        for name in &names {
            let Some((info, _)) = infos.get(&(*name, identifying(&e.labels))) else {
                continue;
            };
            matched = true;
            for l in info.iter() {
                if l.name == METRIC_NAME
                    || (!data_matchers.is_empty()
                        && !data_matchers.iter().any(|m| m.name == l.name))
                {
                    continue;
                }
                if added.get(l.name.as_str()).is_some_and(|v| *v != l.value) {
                    return Err(EvalError::Execution(format!(
                        "conflicting label: {}",
                        l.name
                    )));
                }
                if e.labels.get(&l.name).is_none() {
                    added.insert(&l.name, &l.value);
                }
            }
        }
        if !matched && !data_matchers.iter().all(|m| m.matches_empty()) {
            // The selector asks for a data label no info series provides.
            continue;
        }
        let labels = if added.is_empty() {
            e.labels
        } else {
            let mut pairs: Vec<Label> = e.labels.iter().cloned().collect();
            pairs.extend(added.into_iter().map(|(n, v)| Label::new(n, v)));
            labels_from(pairs)
        };
        out.push(Elem {
            labels,
            h: e.h,
            v: e.v,
            drop_name: e.drop_name,
        });
    }
    Ok(Val::Vector(out))
}
