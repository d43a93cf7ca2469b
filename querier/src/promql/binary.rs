//! Binary operators: arithmetic, comparisons and set operators, with
//! Prometheus' vector matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use storage::Labels;

use super::EvalError;
use super::annotations;
use super::eval::Evaluator;
use super::native_histogram::FloatHistogram;
use super::value::{Elem, Val, match_labels, prom_string};

type H = Option<Arc<FloatHistogram>>;

/// `l op r` when at least one side is a native histogram: the float, the
/// histogram and whether to keep the element; `None` drops it (an operation
/// Prometheus does not define for histograms, or incompatible histograms).
fn histogram_apply(op: Op, lv: f64, lh: &H, rv: f64, rh: &H) -> Option<(f64, H, bool)> {
    let done = |h: FloatHistogram| Some((0.0, Some(Arc::new(h.compact())), true));
    match (lh, rh, op) {
        (None, Some(h), Op::Mul) => done(h.as_ref().clone().scale(lv)),
        (Some(h), None, Op::Mul) => done(h.as_ref().clone().scale(rv)),
        (Some(h), None, Op::Div) => done(h.as_ref().clone().divide(rv)),
        (Some(a), Some(b), Op::Add) => a.add(b).ok().and_then(done),
        (Some(a), Some(b), Op::Sub) => a.sub(b).ok().and_then(done),
        (Some(a), Some(b), Op::Eq) => Some((0.0, Some(Arc::clone(a)), a.equals(b))),
        (Some(a), Some(b), Op::Ne) => Some((0.0, Some(Arc::clone(a)), !a.equals(b))),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Self, EvalError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(EvalError::Unsupported(format!("binary operator {other}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Applies the operator to two floats. Comparisons return the left value
    /// and whether the comparison holds.
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

pub(crate) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<Val, EvalError> {
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = op.apply(l, r);
            Ok(Val::Scalar(if op.is_comparison() {
                bool_value(keep)
            } else {
                v
            }))
        }
        (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(
            ev,
            b,
            op,
            l,
            r,
            false,
            return_bool,
        ))),
        (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(
            ev,
            b,
            op,
            r,
            l,
            true,
            return_bool,
        ))),
        (Val::Vector(l), Val::Vector(r)) => {
            let m = Matching::from_expr(b);
            match op {
                Op::And | Op::Or | Op::Unless => Ok(Val::Vector(set_op(op, l, r, &m))),
                _ => vector_vector(ev, b, op, l, r, &m, return_bool).map(Val::Vector),
            }
        }
        (l, r) => Err(EvalError::Execution(format!(
            "binary operator between {} and {} is not allowed",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `vector op scalar`, or `scalar op vector` when `swapped`.
fn vector_scalar(
    ev: &Evaluator<'_>,
    b: &BinaryExpr,
    op: Op,
    vec: Vec<Elem>,
    s: f64,
    swapped: bool,
    return_bool: bool,
) -> Vec<Elem> {
    vec.into_iter()
        .filter_map(|e| {
            let (mut v, mut h, keep) = if e.h.is_some() {
                let (l, r) = if swapped {
                    ((s, None), (e.v, e.h.clone()))
                } else {
                    ((e.v, e.h.clone()), (s, None))
                };
                let Some(x) = histogram_apply(op, l.0, &l.1, r.0, &r.1) else {
                    annotations::binary_dropped(ev, b, &l.1, &r.1);
                    return None;
                };
                x
            } else {
                let (l, r) = if swapped { (s, e.v) } else { (e.v, s) };
                let (v, keep) = op.apply(l, r);
                (v, None, keep)
            };
            if op.is_comparison() {
                // A filter keeps the vector's own value, on whichever side it is.
                v = e.v;
            }
            if return_bool {
                v = bool_value(keep);
                h = None;
            } else if !keep {
                return None;
            }
            let drop_name = e.drop_name || return_bool || !op.is_comparison();
            Some(Elem {
                labels: e.labels,
                h,
                v,
                drop_name,
            })
        })
        .collect()
}

struct Matching {
    card: VectorMatchCardinality,
    on: bool,
    names: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

impl Matching {
    fn from_expr(b: &BinaryExpr) -> Self {
        let card = b
            .modifier
            .as_ref()
            .map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
        let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
            Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
            Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
            None => (false, Vec::new()),
        };
        let fill = b
            .modifier
            .as_ref()
            .map(|m| m.fill_values.clone())
            .unwrap_or_default();
        Self {
            card,
            on,
            names,
            fill_lhs: fill.lhs,
            fill_rhs: fill.rhs,
        }
    }

    fn sig(&self, l: &Labels) -> Labels {
        match_labels(l, self.on, &self.names)
    }
}

fn set_op(op: Op, lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    match op {
        Op::And => {
            let right: HashSet<Labels> = rhs.iter().map(|e| m.sig(&e.labels)).collect();
            lhs.into_iter()
                .filter(|e| right.contains(&m.sig(&e.labels)))
                .collect()
        }
        Op::Unless => {
            let right: HashSet<Labels> = rhs.iter().map(|e| m.sig(&e.labels)).collect();
            lhs.into_iter()
                .filter(|e| !right.contains(&m.sig(&e.labels)))
                .collect()
        }
        _ => {
            let left: HashSet<Labels> = lhs.iter().map(|e| m.sig(&e.labels)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|e| !left.contains(&m.sig(&e.labels))),
            );
            out
        }
    }
}

fn vector_vector(
    ev: &Evaluator<'_>,
    b: &BinaryExpr,
    op: Op,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Elem>, EvalError> {
    // Iterate over the "many" side and look up the "one" side.
    let (many, one, swapped) = match m.card {
        VectorMatchCardinality::OneToMany(_) => (rhs, lhs, true),
        _ => (lhs, rhs, false),
    };
    let include: Vec<String> = m
        .card
        .labels()
        .map(|l| l.labels.clone())
        .unwrap_or_default();
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);

    let mut one_by_sig: HashMap<Labels, &Elem> = HashMap::with_capacity(one.len());
    for r in &one {
        let sig = m.sig(&r.labels);
        if let Some(prev) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            let mut pair = [prom_string(&prev.labels), prom_string(&r.labels)];
            pair.sort();
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                prom_string(&sig),
                pair[0],
                pair[1]
            )));
        }
        one_by_sig.insert(sig, r);
    }

    // `fill` modifiers stand in for a missing partner with a constant
    // carrying the matching labels. As in Prometheus, the fill values are not
    // swapped with the sides for `group_right` (the conformance tests pin it).
    let (fill_many, fill_one) = (m.fill_lhs, m.fill_rhs);
    let mut pairs: Vec<(Elem, &Elem, Labels)> = Vec::new();
    let mut seen_one: HashSet<Labels> = HashSet::new();
    let mut synthetic_one: Vec<Elem> = Vec::new();
    let mut unmatched_many: Vec<(usize, Labels)> = Vec::new();
    for (i, l) in many.iter().enumerate() {
        let sig = m.sig(&l.labels);
        match one_by_sig.get(&sig) {
            Some(r) => {
                seen_one.insert(sig.clone());
                pairs.push((l.clone(), r, sig));
            }
            None if fill_one.is_some() => unmatched_many.push((i, sig)),
            None => {}
        }
    }
    for (_, sig) in &unmatched_many {
        let v = fill_one.unwrap_or(f64::NAN);
        synthetic_one.push(Elem {
            labels: sig.clone(),
            h: None,
            v,
            drop_name: false,
        });
    }
    for ((i, sig), r) in unmatched_many.into_iter().zip(synthetic_one.iter()) {
        if let Some(l) = many.get(i) {
            pairs.push((l.clone(), r, sig));
        }
    }
    if let Some(v) = fill_many {
        for r in &one {
            let sig = m.sig(&r.labels);
            if !seen_one.contains(&sig) {
                pairs.push((
                    Elem {
                        labels: sig.clone(),
                        h: None,
                        v,
                        drop_name: false,
                    },
                    r,
                    sig,
                ));
            }
        }
    }

    let mut matched_one: HashSet<Labels> = HashSet::new();
    let mut matched_many: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for (l, r, sig) in pairs {
        if one_to_one && !matched_one.insert(sig.clone()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let (fl, fr) = if swapped { (r.v, l.v) } else { (l.v, r.v) };
        let (mut v, mut h, keep) = if l.h.is_some() || r.h.is_some() {
            let (hl, hr) = if swapped { (&r.h, &l.h) } else { (&l.h, &r.h) };
            annotations::binary_histograms(ev, b, hl, hr);
            match histogram_apply(op, fl, hl, fr, hr) {
                Some(x) => x,
                None => {
                    annotations::binary_dropped(ev, b, hl, hr);
                    continue;
                }
            }
        } else {
            let (v, keep) = op.apply(fl, fr);
            (v, None, keep)
        };
        if return_bool {
            v = bool_value(keep);
            h = None;
        } else if !keep {
            continue;
        }
        let labels = result_labels(&l.labels, &r.labels, m, one_to_one, &include);
        if !one_to_one && !matched_many.entry(sig).or_default().insert(labels.clone()) {
            return Err(EvalError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        let drop_name = l.drop_name || return_bool || !op.is_comparison();
        out.push(Elem {
            labels,
            h,
            v,
            drop_name,
        });
    }
    Ok(out)
}

/// Labels of a result element: the "many" side's labels, reduced to the
/// matching labels for one-to-one matching, plus `group_x` labels copied
/// from the "one" side.
fn result_labels(
    many: &Labels,
    one: &Labels,
    m: &Matching,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut labels = if one_to_one {
        if m.on {
            many.retain(|n| m.names.iter().any(|x| x == n))
        } else {
            many.retain(|n| !m.names.iter().any(|x| x == n))
        }
    } else {
        many.clone()
    };
    for name in include {
        labels = match one.get(name) {
            Some(v) => labels.with(name, v),
            None => labels.without(name),
        };
    }
    labels
}
