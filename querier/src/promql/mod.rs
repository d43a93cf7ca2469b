//! PromQL evaluation with Prometheus 3 semantics.
//!
//! The engine parses a query with `promql-parser`, works out which series and
//! time ranges every selector needs, loads them once through a [`Queryable`],
//! and then evaluates the expression tree in memory, step by step.

mod aggregations;
mod annotations;
mod binary;
mod eval;
mod extended_range;
mod functions;
mod histogram;
mod info;
mod memo;
pub mod native_histogram;
mod range_functions;
mod selectors;
mod start_timestamp;
mod steps;
mod syntax;
mod time_functions;
mod trim;
mod value;

#[cfg(test)]
mod histogram_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tier3_tests;

use std::sync::Arc;

use async_trait::async_trait;
use promql_parser::parser::value::ValueType;
use storage::sidecar::HistogramSeries;
use storage::step_grid::StepGrid;
use storage::{Labels, Matcher, Sample, Series};

pub use annotations::{API_MAX_PER_KIND, Annotations};
use eval::Evaluator;
pub use native_histogram::FloatHistogram;
pub use value::HPoint;
use value::{Val, check_unique, final_labels};
pub use value::{format_float, push_float};

/// Where the engine gets series from. The querier implements it over object
/// storage for one tenant; tests and the conformance runner may use others.
#[async_trait]
pub trait Queryable: Send + Sync {
    /// All series matching every matcher, with their samples whose timestamps
    /// lie in `[start_ms, end_ms]` (both inclusive), in time order. Stale
    /// markers are returned as stored; series with no sample in the range may
    /// be omitted.
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError>;

    /// [`Queryable::select`] for an instant vector selector evaluated only
    /// at the times of `grid`: a source may leave out every sample none of
    /// those times sees ([`StepGrid`]). This default returns them all.
    async fn select_at_steps(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        _grid: StepGrid,
    ) -> Result<Vec<Series>, EvalError> {
        self.select(matchers, start_ms, end_ms).await
    }

    /// Native histogram samples of matching series in `[start_ms, end_ms]`,
    /// in time order. A source without histograms returns none.
    async fn select_histograms(
        &self,
        _matchers: &[Matcher],
        _start_ms: i64,
        _end_ms: i64,
    ) -> Result<Vec<HistogramSeries>, EvalError> {
        Ok(Vec::new())
    }
}

/// Engine settings, with Prometheus' defaults.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold in memory at once (Prometheus: 50 million).
    pub max_samples: usize,
    /// Most points a range query may have per series (Prometheus: 11,000).
    pub max_points_per_series: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
        }
    }
}

/// A query result, as the Prometheus API returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        s: String,
    },
    /// Instant vector: one sample per series, all at the evaluation time.
    Vector(Vec<VectorSample>),
    /// Range vector or range-query result: series with their points.
    Matrix(Vec<MatrixSeries>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    /// The value (and time); the value is meaningless when `histogram` is set.
    pub sample: Sample,
    pub histogram: Option<Arc<FloatHistogram>>,
}

/// One series of a matrix: float points and histogram points.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<HPoint>,
}

/// Why a query failed; the HTTP layer maps each kind to Prometheus' error type.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The query text does not parse or is ill-typed (`bad_data`, 400).
    #[error("{0}")]
    Parse(String),
    /// The query is valid but cannot be evaluated (`execution`, 422), e.g.
    /// many-to-many matching or duplicate series after an operation.
    #[error("{0}")]
    Execution(String),
    /// A valid PromQL feature this engine does not implement yet (422).
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// The query would load more samples than allowed (422).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Reading storage failed (`internal`, 500).
    #[error("storage: {0}")]
    Storage(String),
}

#[derive(Clone, Debug, Default)]
pub struct Engine {
    pub opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// Evaluates `query` at one instant (`/api/v1/query`).
    pub async fn instant_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        time_ms: i64,
    ) -> Result<Value, EvalError> {
        Ok(self.instant_query_annotated(q, query, time_ms).await?.0)
    }

    /// [`Self::instant_query`], with the warnings and infos it reports.
    pub async fn instant_query_annotated(
        &self,
        q: &dyn Queryable,
        query: &str,
        time_ms: i64,
    ) -> Result<(Value, Annotations), EvalError> {
        let expr = parse(query, syntax::QueryContext::instant(time_ms))?;
        let lookback = self.opts.lookback_delta_ms;
        let loaded = selectors::load(
            q,
            &expr,
            selectors::Times::instant(time_ms, lookback),
            self.opts.max_samples,
        )
        .await?;
        let ev = Evaluator::new(&loaded, time_ms, time_ms, 0, lookback)
            .with_annotations(annotations::Collector::new(query, &expr));
        let value = match ev.eval(&expr, time_ms)? {
            Val::Scalar(v) => Value::Scalar { t: time_ms, v },
            Val::Str(s) => Value::String { t: time_ms, s },
            Val::Vector(v) => Value::Vector(
                ev.finish_vector(v)?
                    .into_iter()
                    .map(|e| VectorSample {
                        labels: e.labels,
                        sample: Sample::new(time_ms, e.v),
                        histogram: e.h,
                    })
                    .collect(),
            ),
            Val::Matrix(m) => {
                let out: Vec<MatrixSeries> = m
                    .into_iter()
                    .map(|s| MatrixSeries {
                        labels: final_labels(&s.labels, s.drop_name),
                        samples: s.samples,
                        histograms: s.hists,
                    })
                    .collect();
                check_unique(out.iter().map(|s| &s.labels))?;
                Value::Matrix(out)
            }
        };
        Ok((value, ev.annotations.take()))
    }

    /// Evaluates `query` at every step from start to end inclusive
    /// (`/api/v1/query_range`); the result is a matrix, one series per label
    /// set, sorted by labels.
    pub async fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, EvalError> {
        Ok(self
            .range_query_annotated(q, query, start_ms, end_ms, step_ms)
            .await?
            .0)
    }

    /// [`Self::range_query`], with the warnings and infos it reports.
    pub async fn range_query_annotated(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(Value, Annotations), EvalError> {
        self.range_query_runs(q, query, start_ms, end_ms, step_ms, None)
            .await
    }

    /// [`Self::range_query_annotated`] with its steps evaluated in `runs`
    /// runs on as many threads (by the query's size when `None`; see
    /// [`steps`]); tests compare split and unsplit answers.
    pub(crate) async fn range_query_runs(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        runs: Option<usize>,
    ) -> Result<(Value, Annotations), EvalError> {
        if step_ms <= 0 {
            return Err(EvalError::Parse(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(EvalError::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        if end_ms.saturating_sub(start_ms) / step_ms > self.opts.max_points_per_series {
            return Err(EvalError::Parse(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let expr = parse(
            query,
            syntax::QueryContext::range(start_ms, end_ms, step_ms),
        )?;
        let vt = expr.value_type();
        if vt != ValueType::Scalar && vt != ValueType::Vector {
            let name = if vt == ValueType::Matrix {
                "range vector"
            } else {
                "string"
            };
            return Err(EvalError::Parse(format!(
                "invalid expression type \"{name}\" for range query, must be Scalar or instant Vector"
            )));
        }
        let lookback = self.opts.lookback_delta_ms;
        let loaded = selectors::load(
            q,
            &expr,
            selectors::Times {
                start: start_ms,
                end: end_ms,
                step: step_ms,
                lookback,
            },
            self.opts.max_samples,
        )
        .await?;
        let r = steps::RangeEval {
            expr: &expr,
            loaded: &loaded,
            start: start_ms,
            end: end_ms,
            step: step_ms,
            lookback,
            max_samples: self.opts.max_samples,
        };
        let n_steps = usize::try_from((end_ms - start_ms) / step_ms).unwrap_or(usize::MAX);
        let runs = runs.unwrap_or_else(|| steps::runs_for(loaded.series_count(), n_steps));
        let (series, annotations) =
            steps::eval_range(&r, annotations::Collector::new(query, &expr), runs)?;
        let mut out: Vec<MatrixSeries> = series
            .into_iter()
            .map(|(labels, (samples, histograms))| MatrixSeries {
                labels,
                samples,
                histograms,
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((Value::Matrix(out), annotations))
    }
}

/// Parses a query, extended syntax included ([`syntax`]).
fn parse(query: &str, ctx: syntax::QueryContext) -> Result<syntax::Parsed, EvalError> {
    syntax::parse(query, ctx)
}

/// Parses a series selector such as `up{job="api"}` (the `match[]` parameter
/// of the series and label APIs) into storage matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, EvalError> {
    match promql_parser::parser::parse(s).map_err(EvalError::Parse)? {
        promql_parser::parser::Expr::VectorSelector(vs) => selectors::to_storage_matchers(&vs),
        _ => Err(EvalError::Parse(format!("{s:?} is not a series selector"))),
    }
}

/// The matchers of every vector selector in `query`, in the order they
/// appear (plain, inside range selectors, subqueries, function arguments and
/// aggregation parameters), as Prometheus' `parser.ExtractSelectors` gives
/// them to the exemplar API. Literals give none.
pub fn selector_matchers(query: &str) -> Result<Vec<Vec<Matcher>>, EvalError> {
    fn walk(e: &promql_parser::parser::Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), EvalError> {
        use promql_parser::parser::Expr;
        match e {
            Expr::VectorSelector(vs) => out.push(selectors::to_storage_matchers(vs)?),
            Expr::MatrixSelector(ms) => out.push(selectors::to_storage_matchers(&ms.vs)?),
            Expr::Aggregate(a) => {
                walk(&a.expr, out)?;
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
            }
            Expr::Unary(u) => walk(&u.expr, out)?,
            Expr::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)?;
            }
            Expr::Paren(p) => walk(&p.expr, out)?,
            Expr::Subquery(sq) => walk(&sq.expr, out)?,
            Expr::Call(c) => {
                for arg in &c.args.args {
                    walk(arg, out)?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
            Expr::Extension(_) => {
                return Err(EvalError::Unsupported("extension expressions".into()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(
        &parse(query, syntax::QueryContext::default())?.expr,
        &mut out,
    )?;
    Ok(out)
}
