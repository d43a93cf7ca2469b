//! Annotations: the warnings and infos a query reports beside its result
//! (`warnings` and `infos` in the API answer), as Prometheus 3 reports them.
//!
//! The evaluator carries one [`Collector`]. Evaluation code reports an
//! annotation with the AST node it concerns; the collector keeps each message
//! once (a range query evaluates the same node at every step), warnings and
//! infos apart, in the order they were first reported.
//!
//! Every message ends with the position of its node in the query,
//! ` (line:column)`, 1-based, as Prometheus prints it. promql-parser 0.11.1
//! keeps no positions in its AST, so [`Positions`] finds them: it tokenizes
//! the query itself and walks the parsed tree in source order, consuming the
//! tokens each node is made of; a node starts at its first token. The AST
//! is the parser's, so the walk only has to know how each node is spelled
//! (parentheses, modifiers, grouping clauses). A node it cannot place gets
//! no position suffix rather than a wrong one.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorSelector,
};
use storage::{Labels, METRIC_NAME, Sample};

use super::eval::Evaluator;
use super::native_histogram::{FloatHistogram, ResetHint};
use super::value::{Elem, HPoint, RangeSeries, Val, format_float};

/// The annotations of one query, as the API reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// At most `max` of each kind (0: no limit); the rest are counted in a
    /// last line, as Prometheus' API does.
    pub fn limited(mut self, max: usize) -> Self {
        fn cut(v: &mut Vec<String>, max: usize, kind: &str) {
            if max > 0 && v.len() > max {
                let more = v.len() - max;
                v.truncate(max);
                v.push(format!("{more} more {kind} annotations omitted"));
            }
        }
        cut(&mut self.warnings, max, "warning");
        cut(&mut self.infos, max, "info");
        self
    }
}

/// How many annotations of each kind the API returns (Prometheus: 10).
pub const API_MAX_PER_KIND: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Warning,
    Info,
}

/// Collects annotations during one evaluation.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    positions: Positions,
    /// Vector selectors Prometheus reads with its stats-only decoding (see
    /// [`stats_selectors`]).
    stats: HashSet<usize>,
    seen: RefCell<HashSet<String>>,
    /// (node, check) pairs already reported for a metric name: hot paths
    /// (a range function over every series at every step) skip building
    /// the message again.
    reported: RefCell<HashMap<(usize, &'static str), HashSet<String>>>,
    out: RefCell<Annotations>,
}

impl Collector {
    pub fn new(query: &str, expr: &Expr) -> Self {
        let mut stats = HashSet::new();
        stats_selectors(expr, None, &mut stats);
        Self {
            positions: Positions::new(query, expr),
            stats,
            ..Self::default()
        }
    }

    /// Reports `msg` about `node` (an `Expr` or the struct inside one).
    pub fn add<T>(&self, kind: Kind, node: &T, msg: impl std::fmt::Display) {
        let prefix = match kind {
            Kind::Warning => "PromQL warning",
            Kind::Info => "PromQL info",
        };
        let text = match self.positions.of(node) {
            Some((line, col)) => format!("{prefix}: {msg} ({line}:{col})"),
            None => format!("{prefix}: {msg}"),
        };
        if !self.seen.borrow_mut().insert(text.clone()) {
            return;
        }
        let mut out = self.out.borrow_mut();
        match kind {
            Kind::Warning => out.warnings.push(text),
            Kind::Info => out.infos.push(text),
        }
    }

    pub fn warn<T>(&self, node: &T, msg: impl std::fmt::Display) {
        self.add(Kind::Warning, node, msg);
    }

    pub fn info<T>(&self, node: &T, msg: impl std::fmt::Display) {
        self.add(Kind::Info, node, msg);
    }

    /// Reports the message `msg()` builds about `node` and metric `name`
    /// once for each `check`.
    pub fn once<T>(
        &self,
        kind: Kind,
        node: &T,
        check: &'static str,
        name: &str,
        msg: impl FnOnce() -> String,
    ) {
        let key = (addr(node), check);
        if self
            .reported
            .borrow()
            .get(&key)
            .is_some_and(|s| s.contains(name))
        {
            return;
        }
        self.reported
            .borrow_mut()
            .entry(key)
            .or_default()
            .insert(name.to_string());
        self.add(kind, node, msg());
    }

    fn is_stats(&self, vs: &VectorSelector) -> bool {
        self.stats.contains(&addr(vs))
    }

    pub fn take(&self) -> Annotations {
        std::mem::take(&mut *self.out.borrow_mut())
    }

    /// A collector for another evaluator of the same query (later steps of
    /// a range query on another thread): same positions, nothing reported.
    pub fn fork(&self) -> Self {
        Self {
            positions: self.positions.clone(),
            stats: self.stats.clone(),
            ..Self::default()
        }
    }

    /// Takes in what a fork reported, as if reported here after everything
    /// so far (each message once, in first-reported order).
    pub fn merge(&self, fork: Collector) {
        let more = fork.out.into_inner();
        for w in more.warnings {
            if self.seen.borrow_mut().insert(w.clone()) {
                self.out.borrow_mut().warnings.push(w);
            }
        }
        for i in more.infos {
            if self.seen.borrow_mut().insert(i.clone()) {
                self.out.borrow_mut().infos.push(i);
            }
        }
    }
}

/// Where each node of a parsed query starts, as (line, column), keyed by
/// the node's address (the `Expr` and the struct inside it).
#[derive(Clone, Debug, Default)]
pub(crate) struct Positions {
    by_node: HashMap<usize, (usize, usize)>,
}

fn addr<T>(node: &T) -> usize {
    node as *const T as *const () as usize
}

impl Positions {
    pub fn new(query: &str, expr: &Expr) -> Self {
        let toks = tokenize(query);
        let mut w = Walker {
            toks: &toks,
            i: 0,
            starts: Vec::new(),
        };
        let mut by_node = HashMap::new();
        if w.expr(expr).is_some() {
            for (a, off) in w.starts {
                by_node.insert(a, line_col(query, off));
            }
        }
        Self { by_node }
    }

    pub fn of<T>(&self, node: &T) -> Option<(usize, usize)> {
        self.by_node.get(&addr(node)).copied()
    }
}

/// The vector selectors whose nearest enclosing histogram function is
/// `histogram_count`/`histogram_sum`/`histogram_avg` (not
/// `histogram_quantile(s)`/`histogram_fraction`). Prometheus decodes their
/// histograms without buckets and derives each sample's unknown counter
/// reset hint from the sample before it; the conflicting-reset warning of
/// an aggregation depends on those hints. A binary operator starts the
/// search afresh on each side, as in Prometheus.
fn stats_selectors(e: &Expr, mode: Option<bool>, out: &mut HashSet<usize>) {
    let mut sel = |vs: &VectorSelector| {
        if mode == Some(true) {
            out.insert(addr(vs));
        }
    };
    match e {
        Expr::VectorSelector(vs) => sel(vs),
        Expr::MatrixSelector(ms) => sel(&ms.vs),
        Expr::Paren(p) => stats_selectors(&p.expr, mode, out),
        Expr::Unary(u) => stats_selectors(&u.expr, mode, out),
        Expr::Subquery(sq) => stats_selectors(&sq.expr, mode, out),
        Expr::Aggregate(a) => {
            stats_selectors(&a.expr, mode, out);
            if let Some(p) = &a.param {
                stats_selectors(p, mode, out);
            }
        }
        Expr::Binary(b) => {
            stats_selectors(&b.lhs, None, out);
            stats_selectors(&b.rhs, None, out);
        }
        Expr::Call(c) => {
            let mode = match c.func.name {
                "histogram_count" | "histogram_sum" | "histogram_avg" => Some(true),
                "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => Some(false),
                _ => mode,
            };
            for a in &c.args.args {
                stats_selectors(a, mode, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// The counter reset hint stats-only decoding gives `h`, read after `prev`
/// (none: the first sample the read sees).
fn stats_hint(prev: Option<&FloatHistogram>, h: &FloatHistogram) -> ResetHint {
    match (h.hint, prev) {
        (ResetHint::Unknown, None) => ResetHint::Unknown,
        (ResetHint::Unknown, Some(p)) if h.count < p.count => ResetHint::Reset,
        (ResetHint::Unknown, Some(_)) => ResetHint::NotReset,
        (hint, _) => hint,
    }
}

/// Whether hints include both a counter reset and its absence.
fn conflicting(hints: impl Iterator<Item = ResetHint> + Clone) -> bool {
    hints.clone().any(|h| h == ResetHint::Reset)
        && hints.into_iter().any(|h| h == ResetHint::NotReset)
}

fn line_col(query: &str, off: usize) -> (usize, usize) {
    let before = query.get(..off).unwrap_or(query);
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(off, |nl| off - nl - 1) + 1;
    (line, col)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// Identifiers and keywords (metric and function names, `by`, `offset`,
    /// `and`, `Inf`, ...).
    Ident(String),
    /// Numbers and durations.
    Num,
    Str,
    /// Brackets, commas, `@`, operators (the trim operators `</` and `>/`
    /// as one token), by their text.
    Punct(String),
}

/// The query's tokens (the syntax front end's lexer) with their byte
/// offsets. A query the lexer cannot read gets no positions.
fn tokenize(q: &str) -> Vec<(usize, Tok)> {
    use super::syntax::lexer::{self, Kind};
    let Ok(tokens) = lexer::tokenize(q) else {
        return Vec::new();
    };
    tokens
        .into_iter()
        .map(|t| {
            let text = t.text(q).to_string();
            let tok = match t.kind {
                Kind::Ident => Tok::Ident(text),
                Kind::Number | Kind::Duration => Tok::Num,
                Kind::Str => Tok::Str,
                _ => Tok::Punct(text),
            };
            (t.start, tok)
        })
        .collect()
}

/// Walks the AST in source order over the tokens.
struct Walker<'t> {
    toks: &'t [(usize, Tok)],
    i: usize,
    starts: Vec<(usize, usize)>,
}

impl Walker<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }

    fn offset(&self) -> Option<usize> {
        self.toks.get(self.i).map(|(o, _)| *o)
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if q == p)
    }

    fn is_ident(&self, names: &[&str]) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if names.iter().any(|n| s.eq_ignore_ascii_case(n)))
    }

    fn bump(&mut self) -> Option<()> {
        (self.i < self.toks.len()).then(|| self.i += 1)
    }

    fn expect(&mut self, p: &str) -> Option<()> {
        if self.is_punct(p) { self.bump() } else { None }
    }

    /// Skips a bracketed group starting at the current `open` token.
    fn skip_group(&mut self, open: &str, close: &str) -> Option<()> {
        self.expect(open)?;
        let mut depth = 1usize;
        while depth > 0 {
            if self.is_punct(open) {
                depth += 1;
            } else if self.is_punct(close) {
                depth -= 1;
            }
            self.bump()?;
        }
        Some(())
    }

    fn mark<T>(&mut self, node: &T, off: usize) {
        self.starts.push((addr(node), off));
    }

    /// `offset` and `@` modifiers, in either order.
    fn modifiers(&mut self) -> Option<()> {
        loop {
            if self.is_ident(&["offset"]) {
                self.bump()?;
                if self.is_punct("-") || self.is_punct("+") {
                    self.bump()?;
                }
                // A duration, or a duration expression (`(1m+step())`,
                // `min_of(1m, range())`).
                if self.is_punct("(") {
                    self.skip_group("(", ")")?;
                } else {
                    self.bump()?;
                    if self.is_punct("(") {
                        self.skip_group("(", ")")?;
                    }
                }
            } else if self.is_ident(&["anchored", "smoothed"]) {
                // Extended range selector modifiers.
                self.bump()?;
            } else if self.is_punct("@") {
                self.bump()?;
                if self.is_ident(&["start", "end"]) {
                    self.bump()?;
                    self.skip_group("(", ")")?;
                } else {
                    if self.is_punct("-") || self.is_punct("+") {
                        self.bump()?;
                    }
                    self.bump()?;
                }
            } else {
                return Some(());
            }
        }
    }

    fn selector(&mut self, vs: &VectorSelector) -> Option<()> {
        let off = self.offset()?;
        self.mark(vs, off);
        if matches!(self.peek(), Some(Tok::Ident(_))) {
            self.bump()?;
        }
        if self.is_punct("{") {
            self.skip_group("{", "}")?;
        }
        Some(())
    }

    fn expr(&mut self, e: &Expr) -> Option<()> {
        let off = self.offset()?;
        self.mark(e, off);
        match e {
            Expr::Paren(p) => {
                self.mark(p, off);
                self.expect("(")?;
                self.expr(&p.expr)?;
                self.expect(")")
            }
            Expr::Unary(u) => {
                self.mark(u, off);
                self.bump()?;
                self.expr(&u.expr)
            }
            Expr::Binary(b) => {
                self.mark(b, off);
                self.expr(&b.lhs)?;
                // The operator (one token, the trim operators too).
                self.bump()?;
                loop {
                    if self.is_ident(&["bool"]) {
                        self.bump()?;
                    } else if self.is_ident(&["on", "ignoring"]) {
                        self.bump()?;
                        self.skip_group("(", ")")?;
                    } else if self.is_ident(&["group_left", "group_right"]) {
                        self.bump()?;
                        if self.is_punct("(") {
                            self.skip_group("(", ")")?;
                        }
                    } else {
                        break;
                    }
                }
                self.expr(&b.rhs)
            }
            Expr::Call(c) => {
                self.mark(c, off);
                self.bump()?; // the name
                self.expect("(")?;
                for (k, arg) in c.args.args.iter().enumerate() {
                    if k > 0 {
                        self.expect(",")?;
                    }
                    self.expr(arg)?;
                }
                self.expect(")")
            }
            Expr::Aggregate(a) => {
                self.mark(a, off);
                self.bump()?; // the operator
                if self.is_ident(&["by", "without"]) {
                    self.bump()?;
                    self.skip_group("(", ")")?;
                }
                self.expect("(")?;
                if let Some(p) = &a.param {
                    self.expr(p)?;
                    self.expect(",")?;
                }
                self.expr(&a.expr)?;
                self.expect(")")?;
                if self.is_ident(&["by", "without"]) {
                    self.bump()?;
                    self.skip_group("(", ")")?;
                }
                Some(())
            }
            Expr::VectorSelector(vs) => {
                self.selector(vs)?;
                self.modifiers()
            }
            Expr::MatrixSelector(ms) => {
                self.mark(ms, off);
                self.selector(&ms.vs)?;
                self.skip_group("[", "]")?;
                self.modifiers()
            }
            Expr::Subquery(sq) => {
                self.mark(sq, off);
                self.expr(&sq.expr)?;
                self.skip_group("[", "]")?;
                self.modifiers()
            }
            Expr::NumberLiteral(n) => {
                self.mark(n, off);
                while self.is_punct("-") || self.is_punct("+") {
                    self.bump()?;
                }
                self.bump()
            }
            Expr::StringLiteral(s) => {
                self.mark(s, off);
                self.bump()
            }
            Expr::Extension(_) => None,
        }
    }
}

// ---- What the engine reports, by the node that reports it. ----
//
// Message texts are Prometheus 3's (`util/annotations`); which node's
// position a message carries follows Prometheus too (mostly the argument
// the problem is in).

/// The metric name of a series for messages: none once an earlier function
/// has dropped it (Prometheus removes it at once, we only mark it).
fn metric_name(labels: &Labels, dropped: bool) -> &str {
    if dropped {
        ""
    } else {
        labels.metric_name().unwrap_or("")
    }
}

fn for_metric(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" for metric name {name:?}")
    }
}

/// The value of a scalar argument at `ts` (literals without evaluating).
fn scalar_arg(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => ev.eval(e, ts).ok()?.into_scalar().ok(),
    }
}

fn check_quantile(ev: &Evaluator<'_>, e: &Expr, ts: i64) {
    if let Some(q) = scalar_arg(ev, e, ts)
        && !(0.0..=1.0).contains(&q)
    {
        ev.annotations.warn(
            e,
            format!(
                "quantile value should be between 0 and 1, got {}",
                format_float(q)
            ),
        );
    }
}

/// After a function call evaluated at `ts` gave `out`.
pub(crate) fn call(ev: &Evaluator<'_>, c: &Call, ts: i64, out: &Val) {
    let args = &c.args.args;
    match c.func.name {
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" if ev.step > 0 => {
            ev.annotations.warn(
                c,
                "sort is ineffective for range queries since results are always ordered by labels",
            );
        }
        "histogram_quantile" => {
            if let Some(q) = args.first() {
                check_quantile(ev, q, ts);
            }
        }
        "histogram_quantiles" => {
            for q in args.iter().skip(2) {
                check_quantile(ev, q, ts);
            }
        }
        "quantile_over_time" => {
            let any_float = matches!(out, Val::Vector(v) if v.iter().any(|e| e.h.is_none()));
            if let (true, Some(q)) = (any_float, args.first()) {
                check_quantile(ev, q, ts);
            }
        }
        _ => {}
    }
}

/// Float-only range functions, which ignore histograms in a range that has
/// floats too (and say so).
const FLOAT_ONLY_OVER_TIME: [&str; 9] = [
    "double_exponential_smoothing",
    "max_over_time",
    "min_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
    "mad_over_time",
    "deriv",
    "predict_linear",
];

/// The window a range function `func` sees for its argument `arg`, before
/// it computes anything.
pub(crate) fn range_input(ev: &Evaluator<'_>, func: &str, arg: &Expr, series: &[RangeSeries]) {
    for s in series {
        range_series(ev, func, arg, &s.labels, s.drop_name, &s.samples, &s.hists);
    }
}

/// One series' window of a range function `func` over `arg` (an `Expr` or
/// the `MatrixSelector` in one).
#[allow(clippy::too_many_arguments)]
pub(crate) fn range_series<T: 'static>(
    ev: &Evaluator<'_>,
    func: &str,
    arg: &T,
    labels: &Labels,
    dropped: bool,
    samples: &[Sample],
    hists: &[HPoint],
) {
    let ann = &ev.annotations;
    let (floats, nh) = (samples.len(), hists.len());
    // Without histograms only the counter-name check below can apply: the
    // common case returns before any lookup (this runs per series and step).
    if nh == 0 && !(floats > 1 && matches!(func, "rate" | "increase")) {
        return;
    }
    let name = metric_name(labels, dropped);
    // Over a range selector read with stats-only decoding.
    let stats_sel = match (arg as &dyn std::any::Any).downcast_ref::<MatrixSelector>() {
        Some(ms) => Some(&ms.vs),
        None => match (arg as &dyn std::any::Any).downcast_ref::<Expr>() {
            Some(Expr::MatrixSelector(ms)) => Some(&ms.vs),
            _ => None,
        },
    }
    .filter(|vs| ann.is_stats(vs));
    let mixed = |check: &'static str| {
        ann.once(Kind::Warning, arg, check, name, || {
            format!("encountered a mix of histograms and floats for metric name {name:?}")
        })
    };
    match func {
        "rate" | "increase" | "delta" => {
            if floats > 0 && nh > 0 {
                mixed("mixed");
            } else if nh > 1 {
                let hs = || hists.iter().map(|p| &*p.h);
                hint_kind(ev, arg, name, func != "delta", hs());
                // The first histogram only anchors the extrapolation; a
                // schema change right after it is a reset, not a mix.
                schema_mix(ev, arg, name, hs().skip(1));
                if let (Some(first), Some(last)) = (hists.first(), hists.last()) {
                    reconciled(ev, arg, &first.h, &last.h, "subtraction");
                }
            } else if floats > 1
                && func != "delta"
                && !name.is_empty()
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|sfx| name.ends_with(sfx))
            {
                ann.once(Kind::Info, arg, "counter", name, || {
                    format!(
                        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                    )
                });
            }
        }
        "irate" | "idelta" => {
            // Only the last two samples count.
            let mut last: Vec<(i64, Option<&FloatHistogram>)> = samples
                .iter()
                .rev()
                .take(2)
                .map(|p| (p.t, None))
                .chain(hists.iter().rev().take(2).map(|p| (p.t, Some(&*p.h))))
                .collect();
            last.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            last.truncate(2);
            match last.as_slice() {
                [(_, Some(a)), (_, Some(b))] => {
                    hint_kind(ev, arg, name, func == "irate", [*b, *a].into_iter());
                    // irate takes the last histogram as it is after a reset
                    // (a change of schema is one); idelta always subtracts.
                    if func == "idelta" || !a.detect_reset(b) {
                        schema_mix(ev, arg, name, [*b, *a].into_iter());
                        reconciled(ev, arg, b, a, "subtraction");
                    }
                }
                [(_, a), (_, b)] if a.is_some() != b.is_some() => mixed("mixed"),
                _ => {}
            }
        }
        "sum_over_time" | "avg_over_time" if floats > 0 && nh > 0 => mixed("mixed"),
        "sum_over_time" | "avg_over_time" if nh > 1 => {
            histogram_sum(ev, arg, hists.iter().map(|p| &*p.h));
            if let Some(vs) = stats_sel {
                // The sample before the window, which Prometheus' read
                // passes over on its way there.
                let before = hists.first().and_then(|first| {
                    let s = ev
                        .loaded
                        .series(vs)
                        .ok()?
                        .iter()
                        .find(|s| &s.labels == labels)?;
                    let i = s.hists.partition_point(|p| p.t < first.t);
                    s.hists.get(i.checked_sub(1)?).map(|p| &*p.h)
                });
                let hints = hists.iter().enumerate().map(|(i, p)| {
                    let prev = match i.checked_sub(1) {
                        Some(j) => hists.get(j).map(|q| &*q.h),
                        None => before,
                    };
                    stats_hint(prev, &p.h)
                });
                if conflicting(hints) {
                    ev.annotations.warn(
                        arg,
                        "conflicting counter resets during histogram aggregation",
                    );
                }
            }
        }
        f if FLOAT_ONLY_OVER_TIME.contains(&f) && floats > 0 && nh > 0 => {
            ann.once(Kind::Info, arg, "ignored", name, || {
                format!(
                    "ignored histograms in a range containing both floats and histograms for metric name {name:?}"
                )
            });
        }
        _ => {}
    }
}

/// A smoothed vector selector's point between `prev` and `next`, or next
/// to float samples (`floats`), which it cannot interpolate.
pub(crate) fn smoothed_point(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
    labels: &Labels,
    floats: bool,
    prev: Option<&FloatHistogram>,
    next: Option<&FloatHistogram>,
) {
    let name = metric_name(labels, false);
    if floats {
        ev.annotations.warn(
            vs,
            format!("encountered a mix of histograms and floats for metric name {name:?}"),
        );
    }
    if let (Some(a), Some(b)) = (prev, next) {
        schema_mix(ev, vs, name, [a, b].into_iter());
    }
}

/// Counter functions over gauge histograms and gauge functions over
/// counter histograms.
fn hint_kind<'h, T>(
    ev: &Evaluator<'_>,
    arg: &T,
    name: &str,
    counter: bool,
    mut hs: impl Iterator<Item = &'h FloatHistogram> + Clone,
) {
    if counter && hs.clone().any(|h| h.hint == ResetHint::Gauge) {
        ev.annotations.warn(
            arg,
            format!("this native histogram metric is not a counter: {name:?}"),
        );
    }
    if !counter && hs.any(|h| h.hint != ResetHint::Gauge) {
        ev.annotations.warn(
            arg,
            format!("this native histogram metric is not a gauge: {name:?}"),
        );
    }
}

/// Histograms with exponential and custom buckets that would be combined.
fn schema_mix<'h, T>(
    ev: &Evaluator<'_>,
    arg: &T,
    name: &str,
    hs: impl Iterator<Item = &'h FloatHistogram>,
) {
    let mut custom = hs.map(FloatHistogram::uses_custom_buckets);
    if let Some(first) = custom.next()
        && custom.any(|c| c != first)
    {
        ev.annotations.warn(
            arg,
            format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
            ),
        );
    }
}

/// Two custom-bucket histograms combined by `op` whose bounds differ: the
/// engine reconciles them to the common bounds (and says so).
fn reconciled<T>(ev: &Evaluator<'_>, node: &T, a: &FloatHistogram, b: &FloatHistogram, op: &str) {
    if a.uses_custom_buckets() && b.uses_custom_buckets() && a.custom_values != b.custom_values {
        ev.annotations.info(
            node,
            format!("mismatched custom buckets were reconciled during {op}"),
        );
    }
}

/// Histograms summed (by `sum`/`avg` or `sum_over_time`/`avg_over_time`):
/// one marked as a counter reset and another as none conflict; custom
/// bounds that differ are reconciled.
fn histogram_sum<'h, T>(
    ev: &Evaluator<'_>,
    node: &T,
    hs: impl Iterator<Item = &'h FloatHistogram> + Clone,
) {
    let hint = |want: ResetHint| hs.clone().any(|h| h.hint == want);
    if hint(ResetHint::Reset) && hint(ResetHint::NotReset) {
        ev.annotations.warn(
            node,
            "conflicting counter resets during histogram aggregation",
        );
    }
    let mut custom = hs.filter(|h| h.uses_custom_buckets());
    if let Some(first) = custom.next()
        && custom.any(|h| h.custom_values != first.custom_values)
    {
        ev.annotations.info(
            node,
            "mismatched custom buckets were reconciled during aggregation",
        );
    }
}

/// An aggregation's input (and parameter) at `ts`, before it aggregates.
pub(crate) fn aggregation_input(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    op: &str,
    input: &[Elem],
    ts: i64,
) {
    if op == "quantile"
        && let Some(p) = &a.param
    {
        check_quantile(ev, p, ts);
    }
    if op == "limit_ratio"
        && let Some(p) = &a.param
        && let Some(r) = scalar_arg(ev, p, ts)
        && !(-1.0..=1.0).contains(&r)
    {
        let capped = if r < -1.0 { -1.0 } else { 1.0 };
        ev.annotations.warn(
            p.as_ref(),
            format!(
                "ratio value should be between -1 and 1, got {}, capping to {}",
                format_float(r),
                format_float(capped)
            ),
        );
    }
    if matches!(op, "sum" | "avg") && input.iter().any(|e| e.h.is_some()) {
        for members in groups(a, input) {
            let hs = || members.iter().filter_map(|e| e.h.as_deref());
            if members.iter().any(|e| e.h.is_none()) {
                ev.annotations.warn(
                    a.expr.as_ref(),
                    "encountered a mix of histograms and floats for aggregation",
                );
                continue;
            }
            let mut custom = hs().map(FloatHistogram::uses_custom_buckets);
            if let Some(first) = custom.next()
                && custom.any(|c| c != first)
            {
                ev.annotations.warn(
                    a.expr.as_ref(),
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\"",
                );
                continue;
            }
            histogram_sum(ev, a.expr.as_ref(), hs());
        }
        if let Expr::VectorSelector(vs) = a.expr.as_ref()
            && ev.annotations.is_stats(vs)
        {
            stats_aggregation(ev, a, vs, input, ts);
        }
    }
    if matches!(
        op,
        "min" | "max" | "topk" | "bottomk" | "quantile" | "stddev" | "stdvar"
    ) && input.iter().any(|e| e.h.is_some())
    {
        ev.annotations.info(
            a.expr.as_ref(),
            format!("ignored histogram in {op} aggregation"),
        );
    }
}

/// `sum`/`avg` straight over a selector read with stats-only decoding: the
/// hint of each selected histogram is derived from the sample before it in
/// the lookback window.
fn stats_aggregation(
    ev: &Evaluator<'_>,
    a: &AggregateExpr,
    vs: &VectorSelector,
    input: &[Elem],
    ts: i64,
) {
    let Ok(series) = ev.loaded.series(vs) else {
        return;
    };
    let t = ev.ref_time(&vs.at, &vs.offset, ts);
    let from = t.saturating_sub(ev.lookback);
    let mut hints: HashMap<&Labels, ResetHint> = HashMap::new();
    for s in series {
        let lo = s.hists.partition_point(|p| p.t <= from);
        let hi = s.hists.partition_point(|p| p.t <= t);
        let Some(window) = s.hists.get(lo..hi) else {
            continue;
        };
        if let Some(last) = window.last() {
            // The sample before it, in the window or not: Prometheus' read
            // passes over it on its way to the window.
            let prev = hi.checked_sub(2).and_then(|i| s.hists.get(i));
            hints.insert(&s.labels, stats_hint(prev.map(|p| &*p.h), &last.h));
        }
    }
    for members in groups(a, input) {
        let hs = members
            .iter()
            .filter(|e| e.h.is_some())
            .filter_map(|e| hints.get(&e.labels).copied());
        if conflicting(hs) {
            ev.annotations.warn(
                a.expr.as_ref(),
                "conflicting counter resets during histogram aggregation",
            );
        }
    }
}

/// The input of an aggregation by group (only used when histograms are
/// involved, where the checks need each group's members).
fn groups<'e>(a: &AggregateExpr, input: &'e [Elem]) -> Vec<Vec<&'e Elem>> {
    let key = |l: &Labels| -> Labels {
        match &a.modifier {
            Some(LabelModifier::Include(ls)) => l.retain(|n| ls.labels.iter().any(|x| x == n)),
            Some(LabelModifier::Exclude(ls)) => {
                l.retain(|n| n != METRIC_NAME && !ls.labels.iter().any(|x| x == n))
            }
            None => Labels::empty(),
        }
    };
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Vec<&Elem>> = Vec::new();
    for e in input {
        let i = *index.entry(key(&e.labels)).or_insert_with(|| {
            out.push(Vec::new());
            out.len() - 1
        });
        if let Some(g) = out.get_mut(i) {
            g.push(e);
        }
    }
    out
}

/// `+`/`-` of two histograms with different custom bounds.
pub(crate) fn binary_histograms(
    ev: &Evaluator<'_>,
    b: &BinaryExpr,
    l: &Option<std::sync::Arc<FloatHistogram>>,
    r: &Option<std::sync::Arc<FloatHistogram>>,
) {
    let op = match b.op.to_string().as_str() {
        "+" => "addition",
        "-" => "subtraction",
        _ => return,
    };
    if let (Some(l), Some(r)) = (l, r) {
        reconciled(ev, b, l, r, op);
    }
}

/// A native histogram's NaN observations (sum NaN, count above the bucket
/// counts) in `histogram_quantile` (`quantile`: true; the result `v` says
/// which) or `histogram_fraction`.
pub(crate) fn native_nan_observations(
    ev: &Evaluator<'_>,
    arg: &Expr,
    labels: &Labels,
    h: &FloatHistogram,
    quantile: bool,
    v: f64,
) {
    if !h.sum.is_nan() || h.uses_custom_buckets() {
        return;
    }
    let bucketed: f64 = h.zero_count
        + h.positive.iter().map(|b| b.1).sum::<f64>()
        + h.negative.iter().map(|b| b.1).sum::<f64>();
    if h.count <= bucketed {
        return;
    }
    let what = match (quantile, v.is_nan()) {
        (true, true) => "input to histogram_quantile has NaN observations, result is NaN",
        (true, false) => {
            "input to histogram_quantile has NaN observations, result is skewed higher"
        }
        (false, _) => {
            "input to histogram_fraction has NaN observations, which are excluded from all fractions"
        }
    };
    ev.annotations.info(
        arg,
        format!(
            "{what}{}",
            for_metric(labels.get(METRIC_NAME).unwrap_or(""))
        ),
    );
}

/// A binary operation dropped a pair with a histogram: the operation is not
/// defined for these sample types (info), or two histograms' bucket layouts
/// do not combine (warning).
pub(crate) fn binary_dropped(
    ev: &Evaluator<'_>,
    b: &BinaryExpr,
    l: &Option<std::sync::Arc<FloatHistogram>>,
    r: &Option<std::sync::Arc<FloatHistogram>>,
) {
    let op = b.op.to_string();
    let kind = |h: &Option<_>| if h.is_some() { "histogram" } else { "float" };
    if l.is_some() && r.is_some() && matches!(op.as_str(), "+" | "-") {
        ev.annotations.warn(
            b,
            format!("incompatible bucket layout encountered for binary operator {op}"),
        );
    } else {
        ev.annotations.info(
            b,
            format!(
                "incompatible sample types encountered for binary operator {op:?}: {} {op} {}",
                kind(l),
                kind(r)
            ),
        );
    }
}

/// Classic histogram input of `histogram_quantile`/`histogram_fraction`:
/// a series whose `le` does not parse.
pub(crate) fn bad_bucket_label(ev: &Evaluator<'_>, arg: &Expr, labels: &Labels, dropped: bool) {
    let le = labels.get("le").unwrap_or("");
    ev.annotations.warn(
        arg,
        format!(
            "bucket label \"le\" is missing or has a malformed value of {le:?}{}",
            for_metric(metric_name(labels, dropped))
        ),
    );
}

/// A series that is a classic and a native histogram at once.
pub(crate) fn mixed_classic_native(ev: &Evaluator<'_>, arg: &Expr, labels: &Labels) {
    ev.annotations.warn(
        arg,
        format!(
            "vector contains a mix of classic and native histograms{}",
            for_metric(labels.get(METRIC_NAME).unwrap_or(""))
        ),
    );
}

/// Classic buckets that had to be made monotonic for a quantile.
pub(crate) fn forced_monotonicity(ev: &Evaluator<'_>, arg: &Expr) {
    ev.annotations.info(
        arg,
        "input to histogram_quantile needed to be fixed for monotonicity \
         (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::parse;

    fn pos_of_call_arg(q: &str, arg: usize) -> Option<(usize, usize)> {
        // Through the front end, so that extended syntax parses too.
        let parsed = super::super::syntax::parse(q, Default::default()).expect("parse");
        let e: &Expr = &parsed.expr;
        let p = Positions::new(q, e);
        fn find(e: &Expr) -> Option<&promql_parser::parser::Call> {
            match e {
                Expr::Call(c) => Some(c),
                Expr::Aggregate(a) => find(&a.expr),
                Expr::Paren(p) => find(&p.expr),
                Expr::Binary(b) => find(&b.lhs).or_else(|| find(&b.rhs)),
                _ => None,
            }
        }
        let c = find(e)?;
        p.of(c.args.args.get(arg)?.as_ref())
    }

    #[test]
    fn positions_of_nodes() {
        // (query, argument index, text the argument starts with)
        let mut cases = vec![
            ("histogram_quantile(0.8, series)", 1, "series"),
            ("histogram_fraction(-Inf, 1, series)", 2, "series"),
            (r#"irate(h{path="/e"}[20m] offset 1m @ start())"#, 0, "h{"),
            (
                "sum by (a) (z + on(b) group_left (c) x) + rate(y[5m:1m])",
                0,
                "y[",
            ),
            (
                r#"-(1e-3 * -foo) and label_replace(x, "a", "b", "c", "d")"#,
                4,
                r#""d""#,
            ),
            (
                r#"sum without (a) (label_join((x), "d", ",", "a"))"#,
                0,
                "(x)",
            ),
        ];
        cases.extend([
            ("rate(x[5m] anchored)", 0, "x["),
            ("rate(x[5m] offset (1m + 2m)) + rate(y[1m])", 0, "x["),
            ("count_over_time(x[5m] offset min_of(1m, 2m))", 0, "x["),
        ]);
        for (q, arg, text) in cases {
            let col = q.find(text).expect("text") + 1;
            assert_eq!(pos_of_call_arg(q, arg), Some((1, col)), "{q}");
        }
        let q = "sum(\n  label_replace(\n   x  # comment (\n , \"a\", \"b\", \"c\", \"d\"))";
        assert_eq!(pos_of_call_arg(q, 1), Some((4, 4)));
        assert_eq!(pos_of_call_arg(q, 0), Some((3, 4)));
    }

    #[test]
    fn stats_decoding_is_decided_by_the_nearest_histogram_function() {
        let count = |q: &str| {
            let e = parse(q).expect("parse");
            let mut out = HashSet::new();
            stats_selectors(&e, None, &mut out);
            out.len()
        };
        assert_eq!(count("histogram_count(sum(a))"), 1);
        assert_eq!(
            count("histogram_sum(sum_over_time(a[5m])) + histogram_avg(b)"),
            2
        );
        // A binary operator starts afresh on each side.
        assert_eq!(count("histogram_sum(a + b)"), 0);
        assert_eq!(count("histogram_count(histogram_quantile(0.5, a))"), 0);
        assert_eq!(count("histogram_quantile(0.5, histogram_count(a))"), 1);
        assert_eq!(count("sum(a)"), 0);
    }

    #[test]
    fn collector_dedups_and_keeps_order() {
        let q = "sort(x) + rate(y[1m])";
        let e = parse(q).expect("parse");
        let c = Collector::new(q, &e);
        let Expr::Binary(b) = &e else { panic!() };
        c.info(b.rhs.as_ref(), "second");
        c.warn(b.lhs.as_ref(), "first");
        c.info(b.rhs.as_ref(), "second");
        c.info(b.lhs.as_ref(), "third");
        let a = c.take();
        assert_eq!(a.warnings, vec!["PromQL warning: first (1:1)"]);
        assert_eq!(
            a.infos,
            vec!["PromQL info: second (1:11)", "PromQL info: third (1:1)"]
        );
        let many = Annotations {
            warnings: (0..12).map(|i| i.to_string()).collect(),
            infos: vec!["i".into()],
        }
        .limited(API_MAX_PER_KIND);
        assert_eq!(many.warnings.len(), 11);
        assert_eq!(many.warnings[10], "2 more warning annotations omitted");
        assert_eq!(many.infos, vec!["i"]);
    }
}
