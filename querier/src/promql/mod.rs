//! PromQL evaluation with Prometheus 3 semantics.
//!
//! The engine parses a query with `promql-parser`, works out which series and
//! time ranges every selector needs, loads them once through a [`Queryable`],
//! and then evaluates the expression tree in memory, step by step.

use async_trait::async_trait;
use storage::{Labels, Matcher, Sample, Series};

/// Where the engine gets series from. The querier implements it over object
/// storage for one tenant; tests and the conformance runner may use others.
#[async_trait]
pub trait Queryable: Send + Sync {
    /// All series matching every matcher, with their samples whose timestamps
    /// lie in `[start_ms, end_ms]` (both inclusive), in time order. Stale
    /// markers are returned as stored; series with no sample in the range may
    /// be omitted.
    async fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>, EvalError>;
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
        Self { lookback_delta_ms: 5 * 60 * 1000, max_samples: 50_000_000, max_points_per_series: 11_000 }
    }
}

/// A query result, as the Prometheus API returns it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    /// Instant vector: one sample per series, all at the evaluation time.
    Vector(Vec<VectorSample>),
    /// Range vector or range-query result: series with their points.
    Matrix(Vec<Series>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    pub labels: Labels,
    pub sample: Sample,
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
    pub async fn instant_query(&self, q: &dyn Queryable, query: &str, time_ms: i64) -> Result<Value, EvalError> {
        let _ = (q, query, time_ms);
        Err(EvalError::Unsupported("engine under construction".into()))
    }

    /// Evaluates `query` at every step from start to end inclusive
    /// (`/api/v1/query_range`); the result is a matrix (or a scalar/string
    /// error as Prometheus gives for those types).
    pub async fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, EvalError> {
        let _ = (q, query, start_ms, end_ms, step_ms);
        Err(EvalError::Unsupported("engine under construction".into()))
    }
}
