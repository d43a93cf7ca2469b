//! Selector planning and evaluation.
//!
//! Before evaluation the AST is walked once to find every selector and the
//! widest time range it needs; each distinct selector is loaded with one
//! `Queryable::select`. During evaluation selectors only slice the loaded,
//! time-ordered samples.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Call, Expr, Offset, VectorSelector};
use storage::sample::is_stale_nan;
use storage::step_grid::StepGrid;
use storage::{Labels, METRIC_NAME, MatchOp, Matcher, Sample};

use super::native_histogram::FloatHistogram;
use super::syntax::{Extensions, Parsed};
use super::value::{Elem, HPoint, RangeSeries};
use super::{EvalError, Queryable, info};

/// A loaded series: its float samples and its native histogram samples,
/// each in time order.
#[derive(Clone, Debug, Default)]
pub(crate) struct SelSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub hists: Vec<HPoint>,
}

/// Subquery step when the query gives none (Prometheus' default global
/// evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Identity of an AST node during one query (the AST is not moved while the
/// query runs, so its address is stable).
pub(crate) fn node_id<T>(node: &T) -> usize {
    node as *const T as usize
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

/// The fixed evaluation time an `@` modifier sets, if any.
pub(crate) fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => duration_ms(&d),
            Err(e) => -duration_ms(&e.duration()),
        }),
    }
}

/// Storage matchers for a selector; the metric name becomes a `__name__` matcher.
pub(crate) fn to_storage_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, EvalError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::Unsupported("`or` inside label matchers".into()));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::eq(METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        let matcher = Matcher::new(op, m.name.clone(), m.value.clone())
            .map_err(|e| EvalError::Parse(e.to_string()))?;
        out.push(matcher);
    }
    Ok(out)
}

fn matcher_key(ms: &[Matcher]) -> String {
    let mut parts: Vec<String> = ms
        .iter()
        .map(|m| format!("{}{:?}{:?}", m.name, m.op, m.value))
        .collect();
    parts.sort();
    parts.join("\u{0}")
}

/// The evaluation times of a query: `start, start + step, ..., end` (one
/// time for an instant query), and its lookback delta.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub lookback: i64,
}

impl Times {
    pub fn instant(t: i64, lookback: i64) -> Self {
        Self {
            start: t,
            end: t,
            step: 1,
            lookback,
        }
    }
}

/// Time range (inclusive) of samples one selector needs.
struct Need {
    matchers: Vec<Matcher>,
    min: i64,
    max: i64,
    nodes: Vec<usize>,
    /// `info` calls whose info series these are.
    info_calls: Vec<usize>,
    /// Whether the samples are only read by instant selectors at the
    /// query's own times, shifted by one offset: then only what those
    /// times see is loaded ([`StepGrid`]).
    grid: GridUse,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum GridUse {
    /// Read at the query's times minus this offset, and nowhere else.
    Offset(i64),
    /// Read otherwise (ranges, subqueries, `@`, other offsets, `info`).
    Anywhere,
}

impl GridUse {
    fn and(self, other: GridUse) -> GridUse {
        if self == other {
            self
        } else {
            GridUse::Anywhere
        }
    }
}

/// Samples loaded for every selector node of a query.
#[derive(Default)]
pub(crate) struct Loaded {
    by_node: HashMap<usize, Arc<Vec<SelSeries>>>,
    /// Candidate info series of every `info` call, by call node.
    info_by_call: HashMap<usize, Arc<Vec<SelSeries>>>,
    /// What the syntax front end took out of the query.
    pub ext: Extensions,
}

impl Loaded {
    pub fn series(&self, vs: &VectorSelector) -> Result<&[SelSeries], EvalError> {
        self.by_node
            .get(&node_id(vs))
            .map(|s| s.as_slice())
            .ok_or_else(|| EvalError::Execution("selector was not loaded".into()))
    }

    /// Series loaded for all selectors (a measure of a query's work).
    pub fn series_count(&self) -> usize {
        self.by_node.values().map(|s| s.len()).sum()
    }

    pub fn info_series(&self, call: &Call) -> Result<&[SelSeries], EvalError> {
        self.info_by_call
            .get(&node_id(call))
            .map(|s| s.as_slice())
            .ok_or_else(|| EvalError::Execution("info series were not loaded".into()))
    }
}

/// Walks `expr`, evaluated at times in `[lo, hi]`, and records the sample
/// ranges its selectors need.
struct Planner {
    start: i64,
    end: i64,
    lookback: i64,
    needs: HashMap<String, Need>,
    ext: Extensions,
    /// Subqueries the walk is inside (their times are not the query's).
    subqueries: usize,
}

impl Planner {
    fn add(
        &mut self,
        vs: &VectorSelector,
        min: i64,
        max: i64,
        grid: GridUse,
    ) -> Result<(), EvalError> {
        let matchers = to_storage_matchers(vs)?;
        let (wide_min, wide_max) = self.ext.widen(vs, min, max, self.lookback);
        let grid = if (wide_min, wide_max) == (min, max) {
            grid
        } else {
            GridUse::Anywhere
        };
        self.need(matchers, wide_min, wide_max, grid)
            .nodes
            .push(node_id(vs));
        Ok(())
    }

    fn need(&mut self, matchers: Vec<Matcher>, min: i64, max: i64, grid: GridUse) -> &mut Need {
        let key = matcher_key(&matchers);
        let need = self.needs.entry(key).or_insert(Need {
            matchers,
            min,
            max,
            nodes: Vec::new(),
            info_calls: Vec::new(),
            grid,
        });
        need.min = need.min.min(min);
        need.max = need.max.max(max);
        need.grid = need.grid.and(grid);
        need
    }

    /// `info(v, {selector})`: `v` as usual, and the info series as of the
    /// times `v` reads its data; the selector is not an ordinary selector.
    fn walk_info(&mut self, c: &Call, lo: i64, hi: i64) -> Result<(), EvalError> {
        let Some(base) = c.args.args.first() else {
            return Ok(());
        };
        self.walk(base, lo, hi)?;
        let (a, b) = (
            info::reference_time(base, lo, self.start, self.end).unwrap_or(lo),
            info::reference_time(base, hi, self.start, self.end).unwrap_or(hi),
        );
        let matchers = info::info_matchers(c)?;
        let lookback = self.lookback;
        self.need(
            matchers,
            a.min(b).saturating_sub(lookback),
            a.max(b),
            GridUse::Anywhere,
        )
        .info_calls
        .push(node_id(c));
        Ok(())
    }

    fn walk(&mut self, expr: &Expr, lo: i64, hi: i64) -> Result<(), EvalError> {
        match expr {
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::VectorSelector(vs) => {
                let off = offset_ms(&vs.offset);
                let grid = if vs.at.is_none() && self.subqueries == 0 {
                    GridUse::Offset(off)
                } else {
                    GridUse::Anywhere
                };
                let (lo, hi) = at_ms(&vs.at, self.start, self.end).map_or((lo, hi), |a| (a, a));
                self.add(
                    vs,
                    lo.saturating_sub(off).saturating_sub(self.lookback),
                    hi.saturating_sub(off),
                    grid,
                )
            }
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let (lo, hi) = at_ms(&vs.at, self.start, self.end).map_or((lo, hi), |a| (a, a));
                let off = offset_ms(&vs.offset);
                let range = duration_ms(&ms.range);
                self.add(
                    vs,
                    lo.saturating_sub(off).saturating_sub(range),
                    hi.saturating_sub(off),
                    GridUse::Anywhere,
                )
            }
            Expr::Subquery(sq) => {
                let (lo, hi) = at_ms(&sq.at, self.start, self.end).map_or((lo, hi), |a| (a, a));
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                self.subqueries += 1;
                let walked = self.walk(
                    &sq.expr,
                    lo.saturating_sub(off).saturating_sub(range),
                    hi.saturating_sub(off),
                );
                self.subqueries -= 1;
                walked
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, lo, hi)?;
                }
                self.walk(&a.expr, lo, hi)
            }
            Expr::Unary(u) => self.walk(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.walk(&b.lhs, lo, hi)?;
                self.walk(&b.rhs, lo, hi)
            }
            Expr::Paren(p) => self.walk(&p.expr, lo, hi),
            Expr::Call(c) if c.func.name == "info" => self.walk_info(c, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, lo, hi)?;
                }
                Ok(())
            }
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }
}

/// Loads every selector of `expr` for evaluation at `times`.
pub(crate) async fn load(
    q: &dyn Queryable,
    parsed: &Parsed,
    times: Times,
    max_samples: usize,
) -> Result<Loaded, EvalError> {
    let mut planner = Planner {
        start: times.start,
        end: times.end,
        lookback: times.lookback,
        needs: HashMap::new(),
        ext: parsed.ext.clone(),
        subqueries: 0,
    };
    planner.walk(&parsed.expr, times.start, times.end)?;
    let mut loaded = Loaded {
        ext: parsed.ext.clone(),
        ..Loaded::default()
    };
    let mut total = 0usize;
    for need in planner.needs.into_values() {
        // Windows are left-open, so the first millisecond is never needed.
        let (lo, hi) = (need.min.saturating_add(1), need.max);
        let grid = match need.grid {
            GridUse::Offset(off) => StepGrid::new(
                times.start.saturating_sub(off),
                times.end.saturating_sub(off),
                times.step,
                times.lookback,
            ),
            GridUse::Anywhere => None,
        };
        let floats = async {
            match grid {
                Some(grid) => q.select_at_steps(&need.matchers, lo, hi, grid).await,
                None => q.select(&need.matchers, lo, hi).await,
            }
        };
        let (floats, hists) = futures::join!(floats, q.select_histograms(&need.matchers, lo, hi));
        let mut series: Vec<SelSeries> = floats?
            .into_iter()
            .map(|s| SelSeries {
                labels: s.labels,
                samples: s.samples,
                hists: Vec::new(),
            })
            .collect();
        let hists = hists?;
        if !hists.is_empty() {
            let mut index: HashMap<Labels, usize> = series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.labels.clone(), i))
                .collect();
            for hs in hists {
                let points: Vec<HPoint> = hs
                    .histograms
                    .iter()
                    .map(|h| HPoint {
                        t: h.timestamp,
                        h: Arc::new(FloatHistogram::from_stored(h)),
                    })
                    .collect();
                let i = *index.entry(hs.labels.clone()).or_insert_with(|| {
                    series.push(SelSeries {
                        labels: hs.labels.clone(),
                        ..SelSeries::default()
                    });
                    series.len() - 1
                });
                if let Some(s) = series.get_mut(i) {
                    s.hists.extend(points);
                    s.hists.sort_by_key(|p| p.t);
                }
            }
        }
        // Ids are lazy and copied into later clones: computed once here,
        // not in every step's clones that are hashed.
        for s in &series {
            s.labels.series_id();
        }
        total = total.saturating_add(
            series
                .iter()
                .map(|s| s.samples.len() + s.hists.len())
                .sum::<usize>(),
        );
        if total > max_samples {
            return Err(EvalError::TooManySamples);
        }
        let series = Arc::new(series);
        for n in need.nodes {
            loaded.by_node.insert(n, Arc::clone(&series));
        }
        for n in need.info_calls {
            loaded.info_by_call.insert(n, Arc::clone(&series));
        }
    }
    Ok(loaded)
}

/// A position hint for [`seek`] that says nothing.
pub(crate) const NO_HINT: usize = usize::MAX;

/// `s.partition_point(|x| x.t <= t)`, searched forward from `hint` (the
/// answer for an earlier time, or [`NO_HINT`]) and updating it. Range-query
/// steps move forward a few samples at a time: a galloping search from the
/// last position touches a few neighbouring cache lines, where a binary
/// search over a week of samples misses the cache at nearly every probe
/// (a third of a 7-day query's CPU). A hint past `t` falls back to the
/// binary search, so any hint gives the right answer.
pub(crate) fn seek(s: &[Sample], t: i64, hint: &mut usize) -> usize {
    let h = *hint;
    let forward = h <= s.len()
        && h.checked_sub(1)
            .is_none_or(|i| s.get(i).is_some_and(|x| x.t <= t));
    let at = if forward {
        // Everything before `lo` is at or before `t`; the answer is in [lo, hi].
        let (mut lo, mut step) = (h, 1usize);
        let hi = loop {
            let probe = lo.saturating_add(step);
            match s.get(probe - 1) {
                None => break s.len(),
                Some(x) if x.t <= t => {
                    lo = probe;
                    step = step.saturating_mul(2);
                }
                Some(_) => break probe - 1,
            }
        };
        lo + s.get(lo..hi).map_or(0, |w| w.partition_point(|x| x.t <= t))
    } else {
        s.partition_point(|x| x.t <= t)
    };
    *hint = at;
    at
}

/// Per-query position hints for [`seek`], by selector node: one slot per
/// loaded series (two for range selectors: window start and end).
#[derive(Default)]
pub(crate) struct Cursors {
    by_node: RefCell<HashMap<usize, Vec<usize>>>,
}

impl Cursors {
    /// Takes the `n` hint slots of `node` out (fresh ones if it has none or
    /// another number); [`Cursors::put`] returns them. A nested use of the
    /// same node meanwhile only finds no hints.
    pub fn take(&self, node: usize, n: usize) -> Vec<usize> {
        match self.by_node.borrow_mut().remove(&node) {
            Some(slots) if slots.len() == n => slots,
            _ => vec![NO_HINT; n],
        }
    }

    pub fn put(&self, node: usize, slots: Vec<usize>) {
        self.by_node.borrow_mut().insert(node, slots);
    }

    /// Runs `f` with the `n` hint slots of `node`.
    pub fn with<R>(&self, node: usize, n: usize, f: impl FnOnce(&mut [usize]) -> R) -> R {
        let mut slots = self.take(node, n);
        let r = f(&mut slots);
        self.put(node, slots);
        r
    }
}

/// The latest sample of `s` in `(t - lookback, t]`, unless it is a stale
/// marker; `hint` as for [`seek`].
fn instant_sample(s: &[Sample], t: i64, lookback: i64, hint: &mut usize) -> Option<Sample> {
    let idx = seek(s, t, hint);
    let last = s.get(idx.checked_sub(1)?)?;
    if last.t <= t.saturating_sub(lookback) || is_stale_nan(last.v) {
        return None;
    }
    Some(*last)
}

/// The latest float or histogram sample of a series in `(t - lookback, t]`,
/// as an element, with the sample's time.
fn instant_value(s: &SelSeries, t: i64, lookback: i64, hint: &mut usize) -> Option<(Elem, i64)> {
    let h = if s.hists.is_empty() {
        None
    } else {
        let idx = s.hists.partition_point(|x| x.t <= t);
        idx.checked_sub(1)
            .and_then(|i| s.hists.get(i))
            .filter(|p| p.t > t.saturating_sub(lookback))
    };
    let f_idx = seek(&s.samples, t, hint);
    let f = f_idx.checked_sub(1).and_then(|i| s.samples.get(i));
    let elem = |v: f64, h: Option<Arc<FloatHistogram>>| Elem {
        labels: s.labels.clone(),
        v,
        h,
        drop_name: false,
    };
    match (f, h) {
        (Some(f), Some(h)) if f.t >= h.t => {
            // A stale marker after a histogram ends the series too.
            if f.t <= t.saturating_sub(lookback) || is_stale_nan(f.v) {
                None
            } else {
                Some((elem(f.v, None), f.t))
            }
        }
        (_, Some(h)) => Some((elem(0.0, Some(Arc::clone(&h.h))), h.t)),
        (Some(_), None) => {
            instant_sample(&s.samples, t, lookback, hint).map(|x| (elem(x.v, None), x.t))
        }
        (None, None) => None,
    }
}

/// Instant selector at reference time `t` (offset and `@` already applied);
/// returns elements with the samples' own timestamps alongside.
pub(crate) fn select_instant(series: &[SelSeries], t: i64, lookback: i64) -> Vec<(Elem, i64)> {
    series
        .iter()
        .filter_map(|s| {
            let mut hint = NO_HINT;
            instant_value(s, t, lookback, &mut hint)
        })
        .collect()
}

/// [`select_instant`] with position hints, one per series (see [`Cursors`]).
pub(crate) fn select_instant_hinted(
    series: &[SelSeries],
    t: i64,
    lookback: i64,
    hints: &mut [usize],
) -> Vec<Elem> {
    series
        .iter()
        .zip(hints.iter_mut())
        .filter_map(|(s, h)| instant_value(s, t, lookback, h).map(|(e, _)| e))
        .collect()
}

/// Range selector: samples in `(t - range, t]` without stale markers; series
/// with no sample there are left out.
pub(crate) fn select_range(series: &[SelSeries], t: i64, range: i64) -> Vec<RangeSeries> {
    let from_t = t.saturating_sub(range);
    series
        .iter()
        .filter_map(|s| {
            let from = s.samples.partition_point(|x| x.t <= from_t);
            let to = s.samples.partition_point(|x| x.t <= t);
            let samples: Vec<Sample> = s
                .samples
                .get(from..to)?
                .iter()
                .filter(|x| !is_stale_nan(x.v))
                .copied()
                .collect();
            let hists: Vec<HPoint> = if s.hists.is_empty() {
                Vec::new()
            } else {
                let from = s.hists.partition_point(|x| x.t <= from_t);
                let to = s.hists.partition_point(|x| x.t <= t);
                s.hists.get(from..to)?.to_vec()
            };
            if samples.is_empty() && hists.is_empty() {
                return None;
            }
            Some(RangeSeries {
                labels: s.labels.clone(),
                samples,
                hists,
                drop_name: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod seek_tests {
    use super::*;

    #[test]
    fn seek_agrees_with_a_binary_search_from_any_hint() {
        // Irregular times with duplicates, and times before, between, on and
        // after the samples; every hint, good or stale, and none.
        let ts = [10, 20, 20, 35, 50, 51, 52, 80, 120, 121, 300];
        let s: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, 1.0)).collect();
        let mut hints: Vec<usize> = (0..=s.len() + 2).collect();
        hints.push(NO_HINT);
        for t in [-5, 10, 15, 20, 21, 50, 79, 80, 119, 200, 300, 301] {
            let want = s.partition_point(|x| x.t <= t);
            for &h in &hints {
                let mut hint = h;
                assert_eq!(seek(&s, t, &mut hint), want, "t={t} hint={h}");
                assert_eq!(hint, want, "the hint follows the answer");
            }
        }
        assert_eq!(seek(&[], 5, &mut 3), 0);
    }

    #[test]
    fn cursors_keep_hints_per_node_and_reset_on_another_length() {
        let c = Cursors::default();
        c.with(1, 2, |h| h.copy_from_slice(&[4, 5]));
        assert_eq!(c.with(1, 2, |h| h.to_vec()), vec![4, 5]);
        assert_eq!(c.with(2, 2, |h| h.to_vec()), vec![NO_HINT; 2]);
        assert_eq!(c.with(1, 3, |h| h.to_vec()), vec![NO_HINT; 3]);
    }
}
