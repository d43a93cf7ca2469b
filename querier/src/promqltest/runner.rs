//! Runs parsed scripts against the engine, with data written through Strata's
//! storage (or, as a debug aid, an in-memory [`Queryable`]).
//!
//! * `load` = what a group commit does with one request: one
//!   [`Storage::write_segment`] call with the float samples of all its series
//!   and one [`Storage::write_sidecar`] with its native histogram samples
//!   (float histograms, as Prometheus' runner appends them); `clear` = a fresh
//!   [`Storage::in_memory`]. Every eval whose selectors match a series of a
//!   load that failed fails without running. `load_with_nhcb` writes the float
//!   series and also the native histograms with custom buckets derived from
//!   them (`foo` from `foo_bucket`/`foo_count`/`foo_sum`, see `nhcb`).
//! * Instant evals are also checked in range mode, as Prometheus' runner does: a
//!   range query from t-1m to t+1m step 1m must give the same result at t
//!   (skipped for `expect fail`, `expect string`, `expect range vector`,
//!   ordered results and queries using `start()`, `end()`, `range()`, `step()`).
//! * Annotations (`expect warn/info/no_warn/no_info`, `eval_warn`, `eval_info`)
//!   are checked on the eval's own query as Prometheus' runner checks them
//!   (see [`super::annotations`]); not on the range-mode re-check.
//! * An `expect fail` eval passes only on a real evaluation error: `Unsupported`,
//!   storage errors, panics and timeouts never count as the expected failure.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use regex::Regex;
use storage::error::panic_message;
use storage::sidecar::{HistogramSeries, Sidecar};
use storage::{Labels, METRIC_NAME, Sample, Series, Storage, TenantId};

use super::annotations::Expectations;
use super::compare::{
    assert_sorted, compare_matrix, compare_scalar, compare_vector, describe, describe_expected,
};
use super::parser::{
    Cmd, Eval, EvalKind, Expected, FailMatch, InvalidKind, Load, Point, parse_script,
};
use crate::promql::{Annotations, Engine, EvalError, Queryable, Value, VectorSample};
use crate::queryable::{MemQueryable, TenantQueryable};

/// Files of experimental features (tier 3).
pub const TIER3_FILES: [&str; 7] = [
    "duration_expression",
    "extended_vectors",
    "fill-modifier",
    "info",
    "limit",
    "start_timestamps",
    "type_and_unit",
];

/// Conformance tiers: 1 float core, 2 native histograms, 3 experimental.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    T1 = 1,
    T2 = 2,
    T3 = 3,
}

impl Tier {
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

/// Where loaded data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPath {
    /// Strata's storage on an in-memory object store (the real write path).
    Storage,
    /// A plain in-memory map (debug aid).
    Memory,
}

enum Db {
    Storage(Box<TenantQueryable>),
    Mem(MemQueryable),
}

impl Db {
    fn fresh(path: DataPath, tenant: &TenantId) -> Self {
        match path {
            DataPath::Storage => Db::Storage(Box::new(TenantQueryable {
                storage: Storage::in_memory(),
                tenant: tenant.clone(),
                warnings: Default::default(),
            })),
            DataPath::Memory => Db::Mem(MemQueryable::default()),
        }
    }

    async fn write(
        &mut self,
        series: Vec<Series>,
        histograms: Vec<HistogramSeries>,
    ) -> Result<(), String> {
        match self {
            Db::Storage(q) => {
                let q = q.clone();
                let task = tokio::spawn(async move {
                    if !series.is_empty() {
                        q.storage.write_segment(&q.tenant, &series).await?;
                    }
                    if !histograms.is_empty() {
                        let sidecar = Sidecar {
                            histograms,
                            ..Sidecar::default()
                        };
                        q.storage.write_sidecar(&q.tenant, &sidecar).await?;
                    }
                    Ok::<_, storage::StorageError>(())
                });
                match tokio::time::timeout(QUERY_TIMEOUT, task).await {
                    Err(_) => Err(format!("write_segment timed out after {QUERY_TIMEOUT:?}")),
                    Ok(Err(join)) => Err(format!("write_segment panicked: {}", panic_text(join))),
                    Ok(Ok(Err(e))) => Err(format!("write_segment: {e}")),
                    Ok(Ok(Ok(_))) => Ok(()),
                }
            }
            Db::Mem(m) => {
                m.write(&series);
                m.write_histograms(&histograms);
                Ok(())
            }
        }
    }

    fn queryable(&self) -> Arc<dyn Queryable> {
        match self {
            Db::Storage(q) => Arc::new(q.as_ref().clone()),
            Db::Mem(m) => Arc::new(m.clone()),
        }
    }
}

/// How long one query or write may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

static LAST_PANIC: LazyLock<Mutex<Option<String>>> = LazyLock::new(|| Mutex::new(None));

/// Replaces the panic hook by one that records the message and location
/// instead of printing them, so that panicking engine or storage code (e.g.
/// `todo!()`) shows up as a failed eval rather than a flood on stderr.
pub fn install_quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload()).unwrap_or("panic");
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut g) = LAST_PANIC.lock() {
            *g = Some(format!("{msg}{loc}"));
        }
    }));
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let recorded = LAST_PANIC.lock().ok().and_then(|mut g| g.take());
    if let Some(r) = recorded {
        return r;
    }
    if e.is_cancelled() {
        return "task cancelled".into();
    }
    match e.try_into_panic() {
        Ok(p) => panic_message(p.as_ref()).unwrap_or("panic").to_string(),
        Err(e) => e.to_string(),
    }
}

/// Why a query did not give a value.
#[derive(Debug)]
enum QueryFailure {
    /// An evaluation error that may satisfy `expect fail`.
    Eval(EvalError),
    /// Unsupported, storage error, panic or timeout: never an expected failure.
    Broken(String),
}

impl std::fmt::Display for QueryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryFailure::Eval(e) => write!(f, "{e}"),
            QueryFailure::Broken(s) => f.write_str(s),
        }
    }
}

async fn run_query(
    engine: &Engine,
    q: Arc<dyn Queryable>,
    expr: &str,
    range: Option<(i64, i64, i64)>,
    time_ms: i64,
) -> Result<(Value, Annotations), QueryFailure> {
    let engine = engine.clone();
    let expr = expr.to_string();
    let task = tokio::spawn(async move {
        match range {
            Some((s, e, st)) => {
                engine
                    .range_query_annotated(q.as_ref(), &expr, s, e, st)
                    .await
            }
            None => {
                engine
                    .instant_query_annotated(q.as_ref(), &expr, time_ms)
                    .await
            }
        }
    });
    match tokio::time::timeout(QUERY_TIMEOUT, task).await {
        Err(_) => Err(QueryFailure::Broken(format!(
            "query timed out after {QUERY_TIMEOUT:?}"
        ))),
        Ok(Err(join)) => Err(QueryFailure::Broken(format!(
            "engine panicked: {}",
            panic_text(join)
        ))),
        Ok(Ok(Err(e @ (EvalError::Unsupported(_) | EvalError::Storage(_))))) => {
            Err(QueryFailure::Broken(e.to_string()))
        }
        Ok(Ok(Err(e))) => Err(QueryFailure::Eval(e)),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// The result of one eval.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    pub line: usize,
    pub expr: String,
    pub tier: Tier,
    /// Why the eval has its tier.
    pub tier_reason: &'static str,
    /// `None` when the eval passed, else why it failed.
    pub failure: Option<String>,
    /// The expectation, for messages.
    pub expected: String,
    /// Annotation expectations that were not checked.
    pub unchecked: Vec<String>,
    /// How many annotation expectations were checked (they held if the eval
    /// passed).
    pub annotations_checked: usize,
}

/// The result of one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub name: String,
    pub evals: Vec<EvalOutcome>,
    /// Parse errors (`line: message`).
    pub parse_errors: Vec<String>,
    /// Failed loads (`line: message`).
    pub load_errors: Vec<String>,
    /// Other notes (ignored directives).
    pub notes: Vec<String>,
}

impl FileReport {
    /// `[passed, failed]` per tier.
    pub fn counts(&self) -> [[usize; 2]; 3] {
        let mut c = [[0usize; 2]; 3];
        for e in &self.evals {
            c[e.tier.index()][usize::from(e.failure.is_some())] += 1;
        }
        c
    }
}

/// A loaded (or attempted) series and whether evals may use it.
struct LoadedSeries {
    labels: Labels,
    /// Holds native histogram samples (tier 2).
    histogram: bool,
    /// A native histogram that `load_with_nhcb` would derive.
    labels_from_nhcb: bool,
    /// Why the series is not in the storage, if it is not.
    broken: Option<String>,
}

/// Data state since the last `clear`.
#[derive(Default)]
struct State {
    series: Vec<LoadedSeries>,
    /// Some loaded text held `{{` (for evals whose selectors are unknown).
    any_histogram_text: bool,
    /// A load that did not parse: its series are unknown.
    unparsed_load: Option<String>,
}

/// Label matching as the engine does it, for promql-parser's matchers.
fn selector_matches(vs: &VectorSelector, labels: &Labels) -> bool {
    if let Some(n) = &vs.name
        && labels.get(METRIC_NAME) != Some(n.as_str())
    {
        return false;
    }
    let group_ok = |g: &Vec<promql_parser::label::Matcher>| {
        g.iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    };
    let m = &vs.matchers;
    if m.or_matchers.is_empty() {
        return group_ok(&m.matchers);
    }
    (!m.matchers.is_empty() && group_ok(&m.matchers)) || m.or_matchers.iter().any(group_ok)
}

struct SelectorCollector(Vec<VectorSelector>);

impl ExprVisitor for SelectorCollector {
    type Error = ();
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
        match e {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

/// The selectors of a query, if promql-parser can parse it.
fn selectors(expr: &str) -> Option<Vec<VectorSelector>> {
    let e = promql_parser::parser::parse(expr).ok()?;
    let mut c = SelectorCollector(Vec::new());
    walk_expr(&mut c, &e).ok()?;
    Some(c.0)
}

static RE_CONTEXT_FUNCS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(start|end|range|step)\(\)").expect("static regex"));

/// Runner settings.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub data_path: DataPath,
    /// Also check instant evals in range mode (as Prometheus does).
    pub range_mode_check: bool,
    /// Check `expect warn/info/no_warn/no_info` (as Prometheus does).
    pub check_annotations: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            data_path: DataPath::Storage,
            range_mode_check: true,
            check_annotations: true,
        }
    }
}

/// The tier of a file by its name (`foo.test`).
pub fn file_tier(name: &str) -> Option<Tier> {
    let stem = name.strip_suffix(".test").unwrap_or(name);
    if TIER3_FILES.contains(&stem) {
        Some(Tier::T3)
    } else if stem == "native_histograms" {
        Some(Tier::T2)
    } else {
        None
    }
}

/// Runs one script.
pub async fn run_script(name: &str, text: &str, engine: &Engine, opts: &RunOptions) -> FileReport {
    let mut report = FileReport {
        name: name.to_string(),
        ..FileReport::default()
    };
    let forced_tier = file_tier(name);
    let tenant = match TenantId::new("promqltest") {
        Ok(t) => t,
        Err(e) => {
            report.parse_errors.push(format!("0: {e}"));
            return report;
        }
    };
    let mut db = Db::fresh(opts.data_path, &tenant);
    let mut state = State::default();
    for cmd in parse_script(text) {
        match cmd {
            Cmd::Clear { .. } => {
                db = Db::fresh(opts.data_path, &tenant);
                state = State::default();
            }
            Cmd::Load(load) => run_load(&load, &mut db, &mut state, &mut report).await,
            Cmd::Eval(ev) => {
                let outcome = run_eval(&ev, engine, &db, &state, forced_tier, opts).await;
                report.evals.push(outcome);
            }
            Cmd::Invalid {
                line,
                kind,
                expr,
                mentions_histogram,
                msg,
            } => {
                report.parse_errors.push(format!("{line}: {msg}"));
                match kind {
                    InvalidKind::Eval => {
                        let tier = forced_tier.unwrap_or(
                            if mentions_histogram || state.any_histogram_text {
                                Tier::T2
                            } else {
                                Tier::T1
                            },
                        );
                        report.evals.push(EvalOutcome {
                            line,
                            expr,
                            tier,
                            tier_reason: "invalid eval",
                            failure: Some(format!("parse error: {msg}")),
                            expected: String::new(),
                            unchecked: Vec::new(),
                            annotations_checked: 0,
                        });
                    }
                    InvalidKind::Load => {
                        state.any_histogram_text |= mentions_histogram;
                        state.unparsed_load =
                            Some(format!("load at line {line} did not parse: {msg}"));
                    }
                    InvalidKind::Other => {}
                }
            }
        }
    }
    report
}

async fn run_load(load: &Load, db: &mut Db, state: &mut State, report: &mut FileReport) {
    if load.ignored_st_lines > 0 {
        report.notes.push(format!(
            "{}: {} @st (start timestamp) lines ignored",
            load.line, load.ignored_st_lines
        ));
    }
    state.any_histogram_text |= load.has_histograms();
    let mut to_write: Vec<Series> = Vec::new();
    let mut hists_to_write: Vec<HistogramSeries> = Vec::new();
    let mut entries: Vec<LoadedSeries> = Vec::new();
    for def in &load.series {
        let t = |i: usize| i as i64 * load.step_ms;
        let samples: Vec<Sample> = def
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Point::Float(v) => Some(Sample::new(t(i), *v)),
                _ => None,
            })
            .collect();
        let histograms: Vec<storage::histogram::Histogram> = def
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Point::Histogram(h) => Some(h.to_stored(t(i))),
                _ => None,
            })
            .collect();
        entries.push(LoadedSeries {
            labels: def.labels.clone(),
            histogram: !histograms.is_empty(),
            labels_from_nhcb: false,
            broken: None,
        });
        if !samples.is_empty() {
            to_write.push(Series {
                labels: def.labels.clone(),
                samples,
            });
        }
        if !histograms.is_empty() {
            hists_to_write.push(HistogramSeries {
                labels: def.labels.clone(),
                histograms,
            });
        }
    }
    if load.with_nhcb {
        for (labels, samples) in super::nhcb::convert(load) {
            entries.push(LoadedSeries {
                labels: labels.clone(),
                histogram: true,
                labels_from_nhcb: true,
                broken: None,
            });
            hists_to_write.push(HistogramSeries {
                labels,
                histograms: samples
                    .iter()
                    .map(|(i, h)| h.to_stored(*i as i64 * load.step_ms))
                    .collect(),
            });
        }
    }
    // Ingest refuses what storage would not read back; so does a load.
    let invalid = hists_to_write.iter().find_map(|s| {
        s.histograms
            .iter()
            .find_map(|h| h.validate().err())
            .map(|e| format!("series {}: {e}", s.labels))
    });
    let written = match invalid {
        Some(e) => Err(e),
        None if !to_write.is_empty() || !hists_to_write.is_empty() => {
            db.write(to_write, hists_to_write).await
        }
        None => Ok(()),
    };
    if let Err(e) = written {
        let msg = format!("load at line {} failed: {e}", load.line);
        report.load_errors.push(format!("{}: {e}", load.line));
        for en in entries.iter_mut().filter(|en| en.broken.is_none()) {
            en.broken = Some(msg.clone());
        }
    }
    state.series.extend(entries);
}

async fn run_eval(
    ev: &Eval,
    engine: &Engine,
    db: &Db,
    state: &State,
    forced_tier: Option<Tier>,
    opts: &RunOptions,
) -> EvalOutcome {
    let sels = selectors(&ev.expr);
    let matched: Option<Vec<&LoadedSeries>> = sels.as_ref().map(|ss| {
        state
            .series
            .iter()
            .filter(|s| ss.iter().any(|vs| selector_matches(vs, &s.labels)))
            .collect()
    });
    let uses_histograms = match &matched {
        Some(m) => m.iter().any(|s| s.histogram),
        None => state.any_histogram_text,
    };
    let tier = forced_tier.unwrap_or(if ev.expects_histogram || uses_histograms {
        Tier::T2
    } else {
        Tier::T1
    });
    let tier_reason = match (forced_tier, ev.expects_histogram, &matched) {
        (Some(_), _, _) => "file",
        (None, true, _) => "expected output holds a native histogram",
        (None, false, Some(m)) if m.iter().any(|s| s.histogram && s.labels_from_nhcb) => {
            "reads a native histogram derived by load_with_nhcb"
        }
        (None, false, Some(_)) if uses_histograms => "reads series holding native histograms",
        (None, false, None) if uses_histograms => "query not analysable, native histograms loaded",
        _ => "float data only",
    };
    let mut outcome = EvalOutcome {
        line: ev.line,
        expr: ev.expr.clone(),
        tier,
        tier_reason,
        failure: None,
        expected: expectation_text(ev),
        unchecked: if opts.check_annotations {
            Vec::new()
        } else {
            ev.annotations.clone()
        },
        annotations_checked: 0,
    };
    // Data this eval needs that could not be loaded.
    let broken = match &matched {
        Some(m) => m.iter().find_map(|s| s.broken.clone()),
        None => None,
    };
    if let Some(b) = broken.or_else(|| state.unparsed_load.clone()) {
        outcome.failure = Some(format!("not run: {b}"));
        return outcome;
    }
    outcome.failure = check_eval(ev, engine, db, opts).await.err();
    if opts.check_annotations && ev.fail.is_none() {
        outcome.annotations_checked = ev.annotations.len();
    }
    outcome
}

fn expectation_text(ev: &Eval) -> String {
    if let Some(f) = &ev.fail {
        return match f {
            FailMatch::Any => "an error".into(),
            FailMatch::Message(m) => format!("error {m:?}"),
            FailMatch::Regex(r) => format!("error matching /{r}/"),
        };
    }
    if let Some(s) = &ev.expect_string {
        return format!("string {s:?}");
    }
    describe_expected(&ev.expected)
}

fn check_fail(ev: &Eval, res: Result<(Value, Annotations), QueryFailure>) -> Result<(), String> {
    let fm = ev.fail.as_ref().ok_or("internal: not a failing eval")?;
    match res {
        Ok((v, _)) => Err(format!("expected an error but got {}", describe(&v))),
        Err(QueryFailure::Broken(e)) => Err(format!("expected an evaluation error, got: {e}")),
        Err(QueryFailure::Eval(e)) => {
            let msg = e.to_string();
            match fm {
                FailMatch::Any => Ok(()),
                FailMatch::Message(m) if *m == msg => Ok(()),
                FailMatch::Message(m) => Err(format!("expected error {m:?}, got {msg:?}")),
                FailMatch::Regex(r) => match Regex::new(r) {
                    Ok(re) if re.is_match(&msg) => Ok(()),
                    Ok(_) => Err(format!("expected error matching /{r}/, got {msg:?}")),
                    Err(e) => Err(format!("invalid regex {r:?}: {e}")),
                },
            }
        }
    }
}

async fn check_eval(ev: &Eval, engine: &Engine, db: &Db, opts: &RunOptions) -> Result<(), String> {
    let q = db.queryable();
    let expectations = if opts.check_annotations {
        Expectations::parse(&ev.annotations)?
    } else {
        Expectations::default()
    };
    let check_annotations = |a: &Annotations| expectations.check(a);
    match ev.kind {
        EvalKind::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let res = run_query(
                engine,
                q,
                &ev.expr,
                Some((start_ms, end_ms, step_ms)),
                start_ms,
            )
            .await;
            if ev.fail.is_some() {
                return check_fail(ev, res);
            }
            let (v, annotations) = res.map_err(|e| format!("error: {e}"))?;
            match v {
                Value::Matrix(m) => {
                    if ev.ordered {
                        return Err(
                            "expected ordered result, but a range query returns a matrix".into(),
                        );
                    }
                    compare_matrix(&ev.expected, &m, start_ms, end_ms, step_ms)?;
                    check_annotations(&annotations)
                }
                other => Err(format!(
                    "a range query must return a matrix, got {}",
                    describe(&other)
                )),
            }
        }
        EvalKind::Instant { .. } => {
            let t = ev.eval_time_ms().unwrap_or(0);
            let res = run_query(engine, q.clone(), &ev.expr, None, t).await;
            if ev.fail.is_some() {
                return check_fail(ev, res);
            }
            let (v, annotations) = res.map_err(|e| format!("error: {e}"))?;
            let is_scalar = matches!(v, Value::Scalar { .. });
            match &v {
                Value::String { s, .. } => {
                    let want = ev.expect_string.as_deref().unwrap_or("");
                    if s != want {
                        return Err(format!("expected string {want:?} but got {s:?}"));
                    }
                }
                Value::Scalar { v, .. } => compare_scalar(&ev.expected, *v)?,
                Value::Vector(vs) => compare_vector(&ev.expected, vs, ev.ordered)?,
                Value::Matrix(m) => match ev.range_vector {
                    Some((s, e, st)) => {
                        if ev.ordered {
                            return Err(
                                "expected ordered result, but the query returned a matrix".into()
                            );
                        }
                        compare_matrix(&ev.expected, m, s, e, st)?;
                    }
                    None => {
                        let no_series = matches!(&ev.expected, Expected::Series(s) if s.is_empty());
                        if !(m.is_empty() && no_series) {
                            return Err(format!(
                                "the query returned a range vector ({}); an instant eval needs 'expect range vector' for that",
                                describe(&v)
                            ));
                        }
                    }
                },
            }
            check_annotations(&annotations)?;
            if !opts.range_mode_check
                || ev.expect_string.is_some()
                || ev.range_vector.is_some()
                || RE_CONTEXT_FUNCS.is_match(&ev.expr)
            {
                return Ok(());
            }
            // Same query in range mode, checked at the middle step.
            let rv = run_query(
                engine,
                q,
                &ev.expr,
                Some((t - 60_000, t + 60_000, 60_000)),
                t,
            )
            .await
            .map_err(|e| format!("error in range mode: {e}"))?
            .0;
            if ev.ordered {
                return Ok(());
            }
            let Value::Matrix(m) = rv else {
                return Err(format!(
                    "range mode: a range query must return a matrix, got {}",
                    describe(&rv)
                ));
            };
            assert_sorted(&m).map_err(|e| format!("range mode: {e}"))?;
            let vec: Vec<VectorSample> = m
                .iter()
                .flat_map(|s| {
                    let f = s.samples.iter().find(|p| p.t == t).map(|p| VectorSample {
                        labels: s.labels.clone(),
                        sample: *p,
                        histogram: None,
                    });
                    let h = s
                        .histograms
                        .iter()
                        .find(|p| p.t == t)
                        .map(|p| VectorSample {
                            labels: s.labels.clone(),
                            sample: Sample::new(t, 0.0),
                            histogram: Some(p.h.clone()),
                        });
                    f.into_iter().chain(h)
                })
                .collect();
            if is_scalar {
                let Some(first) = vec.first() else {
                    return Err("range mode: no point at the evaluation time".into());
                };
                compare_scalar(&ev.expected, first.sample.v).map_err(|e| format!("range mode: {e}"))
            } else {
                compare_vector(&ev.expected, &vec, false).map_err(|e| format!("range mode: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_loaded_labels() {
        let l = |s: &str| {
            super::super::parser::parse_series_line(&format!("{s} 1"))
                .expect("labels")
                .0
        };
        let s = selectors(r#"sum(rate(foo{a=~"b|c"}[5m])) + bar"#).expect("parse");
        assert_eq!(s.len(), 2);
        assert!(selector_matches(&s[0], &l(r#"foo{a="b"}"#)));
        assert!(!selector_matches(&s[0], &l(r#"foo{a="d"}"#)));
        assert!(!selector_matches(&s[0], &l(r#"foo2{a="b"}"#)));
        assert!(selector_matches(&s[1], &l(r#"bar{x="y"}"#)));
        let s = selectors(r#"{__name__=~"foo|bar"}"#).expect("parse");
        assert!(selector_matches(&s[0], &l("bar")));
    }

    /// Histograms and load_with_nhcb go through the real write path
    /// (segment and sidecar) and are evaluated and compared.
    #[tokio::test]
    async fn histograms_are_loaded_through_storage() {
        let script = "load 1m\n  h {{schema:0 count:4 sum:5 buckets:[1 2 1]}}+{{count:1 sum:1 buckets:[1]}}x2\n\n\
                      eval instant at 2m h\n  h {{count:6 sum:7 buckets:[3 2 1]}}\n\n\
                      eval instant at 2m histogram_count(h)\n  {} 6\n\n\
                      eval instant at 2m histogram_count(h)\n  {} 7\n\n\
                      clear\nload_with_nhcb 1m\n  c_bucket{le=\"1\"} 1\n  c_bucket{le=\"+Inf\"} 3\n  c_count 3\n  c_sum 4\n\n\
                      eval instant at 0 histogram_fraction(-Inf, 1, c)\n  {} 0.3333333333333333\n";
        let r = run_script(
            "native_histograms.test",
            script,
            &Engine::default(),
            &RunOptions::default(),
        )
        .await;
        assert!(r.load_errors.is_empty(), "{:?}", r.load_errors);
        let failures: Vec<Option<&str>> = r.evals.iter().map(|e| e.failure.as_deref()).collect();
        assert_eq!(failures.len(), 4, "{r:?}");
        assert_eq!(failures[0], None);
        assert_eq!(failures[1], None);
        assert!(
            failures[2].is_some_and(|f| f.contains("expected 7")),
            "{failures:?}"
        );
        assert_eq!(failures[3], None);
    }

    /// An engine stub that fails everything still yields a full, counted report.
    #[tokio::test]
    async fn runs_scripts_and_counts_failures() {
        let script = "load 1m\n  m{a=\"1\"} 0+1x5\n  h {{sum:1 count:1}}x2\n\neval instant at 2m m\n  m{a=\"1\"} 2\n\n\
                      eval instant at 1m h\n  h {{sum:1 count:1}}\n\neval instant at 0 x(\n  expect fail\n\nbad block\n";
        let opts = RunOptions {
            data_path: DataPath::Memory,
            range_mode_check: true,
            check_annotations: true,
        };
        let r = run_script("operators.test", script, &Engine::default(), &opts).await;
        assert_eq!(r.evals.len(), 3, "{r:?}");
        assert_eq!(r.evals[0].tier, Tier::T1);
        assert_eq!(r.evals[1].tier, Tier::T2);
        assert_eq!(r.evals[1].failure, None, "{:?}", r.evals[1]);
        assert_eq!(r.parse_errors.len(), 1);
        let r = run_script("limit.test", script, &Engine::default(), &opts).await;
        assert!(r.evals.iter().all(|e| e.tier == Tier::T3));
    }
}
