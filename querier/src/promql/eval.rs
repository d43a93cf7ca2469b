//! The evaluator: computes an expression's value at one timestamp.
//!
//! Range queries evaluate the tree at every step; subqueries evaluate their
//! inner expression at their own aligned steps (memoised, since neighbouring
//! outer steps share most inner steps).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use promql_parser::parser::{Expr, SubqueryExpr};
use storage::{Labels, Sample};

use super::EvalError;
use super::annotations::{self, Collector};
use super::memo::LabelMemo;
use super::native_histogram::{FloatHistogram, ResetHint};
use super::selectors::{
    Cursors, DEFAULT_SUBQUERY_STEP_MS, Loaded, at_ms, duration_ms, node_id, offset_ms,
    select_instant_hinted, select_range,
};
use super::value::{Elem, HPoint, RangeSeries, Val, check_unique, final_labels};
use super::{aggregations, binary, functions};

/// Most inner steps one subquery evaluation may take, a guard against
/// queries such as `x[100y:1ms]` that would never finish.
const MAX_SUBQUERY_STEPS: i64 = 1_000_000;

/// Inner results of subqueries by (subquery node, evaluation time).
type SubqueryCache = RefCell<HashMap<(usize, i64), Rc<Vec<Elem>>>>;

pub(crate) struct Evaluator<'a> {
    pub loaded: &'a Loaded,
    /// Query start and end, for `@ start()` / `@ end()`.
    pub start: i64,
    pub end: i64,
    /// Query step (0 for instant queries), for `step()`.
    pub step: i64,
    pub lookback: i64,
    subquery_cache: SubqueryCache,
    /// Warnings and infos the evaluation reports.
    pub annotations: Collector,
    /// Label sets derived from label sets (group keys, final labels), once
    /// per query rather than once per step.
    pub labels_memo: LabelMemo<Labels>,
    /// Classic histogram buckets: labels without `le` and the bound.
    pub buckets_memo: LabelMemo<Option<(Labels, f64)>>,
    /// Where each selector's series were read last (steps move forward).
    pub cursors: Cursors,
}

impl<'a> Evaluator<'a> {
    pub fn new(loaded: &'a Loaded, start: i64, end: i64, step: i64, lookback: i64) -> Self {
        Self {
            loaded,
            start,
            end,
            step,
            lookback,
            subquery_cache: RefCell::new(HashMap::new()),
            annotations: Collector::default(),
            labels_memo: LabelMemo::default(),
            buckets_memo: LabelMemo::default(),
            cursors: Cursors::default(),
        }
    }

    pub fn with_annotations(self, annotations: Collector) -> Self {
        Self {
            annotations,
            ..self
        }
    }

    /// The labels an element will have once the query finishes
    /// ([`final_labels`], memoised).
    pub fn final_labels(&self, labels: &Labels, drop_name: bool) -> Labels {
        if drop_name {
            // Operator 0: no AST node lives at address 0.
            self.labels_memo.get(0, labels, |l| final_labels(l, true))
        } else {
            labels.clone()
        }
    }

    /// Applies pending name removal (memoised) and rejects duplicate label
    /// sets, as Prometheus does once a query (or a step of it) is complete.
    pub fn finish_vector(&self, v: Vec<Elem>) -> Result<Vec<Elem>, EvalError> {
        let out: Vec<Elem> = v
            .into_iter()
            .map(|e| Elem {
                labels: self.final_labels(&e.labels, e.drop_name),
                v: e.v,
                h: e.h,
                drop_name: false,
            })
            .collect();
        check_unique(out.iter().map(|e| &e.labels))?;
        Ok(out)
    }

    pub fn eval(&self, expr: &Expr, ts: i64) -> Result<Val, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => Ok(Val::Vector(
                    v.into_iter()
                        .map(|e| Elem {
                            labels: e.labels,
                            h: e.h.map(|h| Arc::new(h.as_ref().clone().scale(-1.0))),
                            v: -e.v,
                            drop_name: true,
                        })
                        .collect(),
                )),
                other => Err(EvalError::Execution(format!(
                    "unary minus on {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => {
                if self.loaded.ext.selector_mod(vs).is_some() {
                    return super::extended_range::smoothed_vector(self, vs, ts);
                }
                let t = self.ref_time(&vs.at, &vs.offset, ts);
                let series = self.loaded.series(vs)?;
                Ok(Val::Vector(self.cursors.with(
                    node_id(vs),
                    series.len(),
                    |hints| select_instant_hinted(series, t, self.lookback, hints),
                )))
            }
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let t = self.ref_time(&vs.at, &vs.offset, ts);
                let series = self.loaded.series(vs)?;
                Ok(Val::Matrix(select_range(series, t, duration_ms(&ms.range))))
            }
            Expr::Subquery(sq) => Ok(Val::Matrix(self.subquery(sq, ts)?)),
            Expr::Aggregate(a) => aggregations::eval(self, a, ts),
            Expr::Binary(b) => match self.loaded.ext.trim(b) {
                Some(t) => super::trim::eval(self, b, t, ts),
                None => binary::eval(self, b, ts),
            },
            Expr::Call(c) => {
                let out = functions::eval(self, c, ts)?;
                annotations::call(self, c, ts, &out);
                Ok(out)
            }
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }

    /// The reference time (end of the window) a selector-like node with
    /// these modifiers sees when evaluated at `ts`.
    pub fn ref_time(
        &self,
        at: &Option<promql_parser::parser::AtModifier>,
        off: &Option<promql_parser::parser::Offset>,
        ts: i64,
    ) -> i64 {
        at_ms(at, self.start, self.end)
            .unwrap_or(ts)
            .saturating_sub(offset_ms(off))
    }

    /// Evaluates a subquery at `ts`: the inner expression at every multiple of
    /// the step inside the left-open window.
    pub fn subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<Vec<RangeSeries>, EvalError> {
        let t = self.ref_time(&sq.at, &sq.offset, ts);
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        if step <= 0 {
            return Err(EvalError::Parse("subquery step must be positive".into()));
        }
        let range = duration_ms(&sq.range);
        let mint = t.saturating_sub(range);
        let mut first = mint.div_euclid(step).saturating_mul(step);
        if first <= mint {
            first = first.saturating_add(step);
        }
        if t.saturating_sub(first) / step > MAX_SUBQUERY_STEPS {
            return Err(EvalError::TooManySamples);
        }
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<RangeSeries> = Vec::new();
        // The histogram each series' last step returned, as evaluated.
        let mut last_hist: Vec<Option<Arc<FloatHistogram>>> = Vec::new();
        let mut it = first;
        while it <= t {
            let vec = self.subquery_step(sq, it)?;
            for e in vec.iter() {
                let i = *index.entry(e.labels.clone()).or_insert_with(|| {
                    out.push(RangeSeries {
                        labels: e.labels.clone(),
                        samples: Vec::new(),
                        hists: Vec::new(),
                        drop_name: false,
                    });
                    last_hist.push(None);
                    out.len() - 1
                });
                let prev = last_hist.get_mut(i).and_then(Option::take);
                if let Some(rs) = out.get_mut(i) {
                    match &e.h {
                        Some(h) => {
                            // The same stored sample seen again at a later
                            // step is no new counter reset.
                            let repeated = prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, h));
                            if let Some(slot) = last_hist.get_mut(i) {
                                *slot = Some(Arc::clone(h));
                            }
                            let h = if repeated && h.hint == ResetHint::Reset {
                                let mut c = h.as_ref().clone();
                                c.hint = ResetHint::NotReset;
                                Arc::new(c)
                            } else {
                                Arc::clone(h)
                            };
                            rs.hists.push(HPoint { t: it, h });
                        }
                        None => rs.samples.push(Sample::new(it, e.v)),
                    }
                    rs.drop_name |= e.drop_name;
                }
            }
            let Some(next) = it.checked_add(step) else {
                break;
            };
            it = next;
        }
        Ok(out)
    }

    fn subquery_step(&self, sq: &SubqueryExpr, it: i64) -> Result<Rc<Vec<Elem>>, EvalError> {
        let key = (node_id(sq), it);
        if let Some(v) = self.subquery_cache.borrow().get(&key) {
            return Ok(Rc::clone(v));
        }
        let v = match self.eval(&sq.expr, it)? {
            Val::Vector(v) => v,
            Val::Scalar(v) => vec![Elem {
                labels: Labels::empty(),
                h: None,
                v,
                drop_name: false,
            }],
            other => {
                return Err(EvalError::Execution(format!(
                    "subquery over {}",
                    other.type_name()
                )));
            }
        };
        let v = Rc::new(v);
        self.subquery_cache.borrow_mut().insert(key, Rc::clone(&v));
        Ok(v)
    }
}
