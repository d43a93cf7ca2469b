//! The Prometheus HTTP API (`/api/v1/...`) over Strata's storage: the same
//! paths, parameters, JSON shapes and error envelope as Prometheus, so
//! Grafana, promtool and other clients work unchanged.

mod error;
mod exemplars;
mod json;
pub mod limits;
mod metadata;
mod params;
mod remote_read;
mod sql;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use storage::cached_store::CacheConfig;
use storage::latency_store::LatencyConfig;
use storage::tenant::{self, TENANT_HEADER};
use storage::{Labels, Matcher, Storage, TenantId};

pub use error::{ApiError, ErrorType};
pub use limits::{QueryLimits, TenantQueryLimits};
pub use params::{parse_duration, parse_time};

use crate::promql::{self, Engine, EngineOptions};
use crate::resolution::{self, Resolver};
use params::Params;

/// The version reported by `/api/v1/status/buildinfo`: the Prometheus release
/// whose API and PromQL semantics Strata follows, so Grafana enables the
/// matching features.
pub const PROMETHEUS_COMPAT_VERSION: &str = "3.0.0";

/// Earliest and latest times, used when a request gives no start or end.
const MIN_TIME: i64 = i64::MIN / 2;
const MAX_TIME: i64 = i64::MAX / 2;

/// Longest `query.view_max_age`: far below the compactor's shortest sensible
/// grace period, so a reused listing never names a deleted object.
const MAX_VIEW_AGE: Duration = Duration::from_secs(60);

/// `[query]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Longest a query may run before it is answered with `timeout`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most samples a query may load.
    pub max_samples: usize,
    /// Most points per series a range query may return.
    pub max_points_per_series: i64,
    /// `[query.cache]`: the cache in front of object-store reads of queries.
    pub cache: CacheConfig,
    /// `[query.inject_latency]`: a delay before every object-store request
    /// of queries, to measure cold reads locally as if on S3 (off by default).
    pub inject_latency: LatencyConfig,
    /// `[query.sql]`: limits of `/api/v1/sql` and `strata sql`.
    pub sql: crate::sql::SqlConfig,
    /// How long queries reuse a tenant's manifest and segment listing before
    /// looking again (0: on every query). Writes of this process are seen at
    /// once; other ingesters' writes and compactions within this time.
    #[serde(with = "humantime_serde")]
    pub view_max_age: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            cache: CacheConfig::default(),
            inject_latency: LatencyConfig::default(),
            sql: crate::sql::SqlConfig::default(),
            view_max_age: Duration::from_secs(1),
        }
    }
}

impl QueryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.lookback_delta.is_zero() {
            return Err("query.lookback_delta: must be greater than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("query.timeout: must be greater than 0".into());
        }
        if self.max_samples == 0 {
            return Err("query.max_samples: must be greater than 0".into());
        }
        if self.max_points_per_series <= 0 {
            return Err("query.max_points_per_series: must be greater than 0".into());
        }
        if self.view_max_age > MAX_VIEW_AGE {
            return Err(format!(
                "query.view_max_age: at most {}s (replaced objects are deleted after the compactor's grace period)",
                MAX_VIEW_AGE.as_secs()
            ));
        }
        self.cache.validate()?;
        self.sql.validate()?;
        Ok(())
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            lookback_delta_ms: i64::try_from(self.lookback_delta.as_millis()).unwrap_or(i64::MAX),
            max_samples: self.max_samples,
            max_points_per_series: self.max_points_per_series,
        }
    }
}

#[derive(Clone)]
pub struct QueryState {
    pub storage: Storage,
    pub engine: Engine,
    pub config: QueryConfig,
    /// Tenant of requests without an `X-Scope-OrgID` header.
    pub default_tenant: TenantId,
    /// Per-tenant limits (`[limits]`) and query slots.
    pub limits: Arc<QueryLimits>,
    /// Chooses raw or aggregated namespaces per query; `None`: raw only.
    pub resolver: Option<Arc<Resolver>>,
}

impl QueryState {
    pub fn new(storage: Storage, config: QueryConfig, default_tenant: TenantId) -> Self {
        Self {
            engine: Engine::new(config.engine_options()),
            limits: Arc::new(QueryLimits::from_config(&config)),
            resolver: None,
            storage,
            config,
            default_tenant,
        }
    }

    /// The same state choosing namespaces by resolution (`resolution`).
    pub fn with_resolver(self, resolver: Arc<Resolver>) -> Self {
        Self {
            resolver: Some(resolver),
            ..self
        }
    }

    /// The same state with per-tenant limits.
    pub fn with_limits(self, limits: Arc<QueryLimits>) -> Self {
        Self { limits, ..self }
    }

    fn tenant(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        Ok(tenant::resolve(
            headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
            &self.default_tenant,
        )?)
    }
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(label_names).post(label_names))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/api/v1/metadata",
            get(metadata::metadata).post(metadata::metadata),
        )
        .route(
            "/api/v1/query_exemplars",
            get(exemplars::query_exemplars).post(exemplars::query_exemplars),
        )
        .route("/api/v1/read", axum::routing::post(remote_read::read))
        .route("/api/v1/sql", axum::routing::post(sql::query))
        .with_state(state)
}

fn success(data: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The query text, required and non-empty.
fn query_text(p: &Params) -> Result<&str, ApiError> {
    p.get("query")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": no query provided"))
}

/// What a query evaluates: an instant or a range.
enum Eval {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

/// Evaluates a query on the blocking thread pool, so CPU-heavy PromQL never
/// stalls the async workers that serve remote write, under the configured
/// (or requested, if shorter) timeout.
async fn evaluate(
    state: &QueryState,
    headers: &HeaderMap,
    p: &Params,
    eval: Eval,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(headers)?;
    let query = query_text(p)?.to_string();
    let tenant_limits = state.limits.of(&tenant).clone();
    let mut limit = tenant_limits.max_query_time;
    if let Some(ms) = p.duration("timeout")? {
        limit = limit.min(Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)));
    }
    let started = Instant::now();
    let slot = state.limits.wait_for_slot(&tenant, limit).await?;
    let mut engine = state.engine.clone();
    engine.opts.max_samples = tenant_limits.max_samples;
    // Raw or aggregated data (`resolution`): the step and lookback are
    // never finer than the resolution read.
    let first = match eval {
        Eval::Instant(t) => t,
        Eval::Range { start, .. } => start,
    };
    let resolved = resolution::for_request(
        state.resolver.as_deref(),
        &state.storage,
        &tenant,
        p.get(resolution::RESOLUTION_PARAM),
        headers,
        first.saturating_sub(engine.opts.lookback_delta_ms),
    )
    .await?;
    let eval = match eval {
        Eval::Range { start, end, step } => Eval::Range {
            start,
            end,
            step: step.max(resolved.resolution_ms),
        },
        instant => instant,
    };
    engine.opts.lookback_delta_ms = engine.opts.lookback_delta_ms.max(resolved.resolution_ms);
    let queryable = resolved.queryable.clone();
    let runtime = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        // The slot is held until the evaluation ends, even if abandoned.
        let _slot = slot;
        runtime.block_on(async {
            match eval {
                Eval::Instant(t) => {
                    engine
                        .instant_query_annotated(queryable.as_ref(), &query, t)
                        .await
                }
                Eval::Range { start, end, step } => {
                    engine
                        .range_query_annotated(queryable.as_ref(), &query, start, end, step)
                        .await
                }
            }
        })
    });
    // On timeout the evaluation is abandoned; it ends on its own. The wait
    // for a slot counted toward the limit.
    let left = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, task).await {
        Ok(Ok(Ok((value, annotations)))) => {
            state.limits.check_result(&tenant, &value)?;
            // Storage warnings (objects read around) first, then the
            // engine's; at most API_MAX_PER_KIND of each, as Prometheus.
            let mut warnings = resolved.warnings.take();
            warnings.extend(annotations.warnings);
            let annotations = crate::promql::Annotations {
                warnings,
                infos: annotations.infos,
            }
            .limited(crate::promql::API_MAX_PER_KIND);
            let body = json::write_query_response(
                &value,
                &annotations.warnings,
                &annotations.infos,
            );
            let mut response = json_body(body);
            response.headers_mut().extend(resolved.headers);
            Ok(response)
        }
        Ok(Ok(Err(crate::promql::EvalError::TooManySamples))) => Err(state.limits.refuse(
            &tenant,
            limits::MAX_QUERY_SAMPLES,
            ErrorType::Execution,
            format!(
                "{} (max_query_samples: {} for tenant {:?})",
                crate::promql::EvalError::TooManySamples,
                tenant_limits.max_samples,
                tenant.as_str()
            ),
        )),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(join)) => Err(ApiError::internal(format!(
            "query evaluation failed: {join}"
        ))),
        Err(_) => Err(state.limits.refuse(
            &tenant,
            limits::MAX_QUERY_TIME,
            ErrorType::Timeout,
            format!(
                "query timed out in expression evaluation (max_query_time: {limit:?} for tenant {:?})",
                tenant.as_str()
            ),
        )),
    }
}

async fn query(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let time = p.time("time")?.unwrap_or_else(now_ms);
    evaluate(&state, &headers, &p, Eval::Instant(time)).await
}

async fn query_range(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    query_text(&p)?;
    let start = p
        .time("start")?
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": missing"))?;
    let end = p
        .time("end")?
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": missing"))?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = p
        .duration("step")?
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"step\": missing"))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > state.config.max_points_per_series {
        return Err(ApiError::bad_data(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            state.config.max_points_per_series
        )));
    }
    evaluate(&state, &headers, &p, Eval::Range { start, end, step }).await
}

/// `match[]` selectors parsed into matcher sets.
fn match_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    p.all("match[]")
        .into_iter()
        .map(|s| {
            promql::parse_selector(s)
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))
        })
        .collect()
}

/// Series of the request's tenant, range and `match[]` (all when none given).
async fn matching_series(
    state: &QueryState,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Vec<Labels>, ApiError> {
    let tenant = state.tenant(headers)?;
    let sets = match_sets(p)?;
    let start = p.time("start")?.unwrap_or(MIN_TIME);
    let end = p.time("end")?.unwrap_or(MAX_TIME);
    // Metadata lookups take a query slot and run under the query time
    // limit too: they read the same indexes.
    let limit = state.limits.of(&tenant).max_query_time;
    let started = Instant::now();
    let _slot = state.limits.wait_for_slot(&tenant, limit).await?;
    let left = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, state.storage.series(&tenant, &sets, start, end)).await {
        Ok(found) => Ok(found?),
        Err(_) => Err(state.limits.refuse(
            &tenant,
            limits::MAX_QUERY_TIME,
            ErrorType::Timeout,
            format!(
                "series lookup timed out (max_query_time: {limit:?} for tenant {:?})",
                tenant.as_str()
            ),
        )),
    }
}

/// Applies Prometheus' `limit` parameter, with its warning when it cut.
fn limited<T>(p: &Params, mut items: Vec<T>) -> Result<(Vec<T>, Vec<String>), ApiError> {
    let limit = match p.get("limit").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::bad_data("invalid parameter \"limit\": must be a non-negative integer")
        })?,
    };
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        return Ok((items, vec!["results truncated due to limit".to_string()]));
    }
    Ok((items, Vec::new()))
}

/// A response of JSON bytes encoded already.
fn json_body(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn success_with_warnings(data: serde_json::Value, warnings: Vec<String>) -> Response {
    if warnings.is_empty() {
        return success(data);
    }
    Json(json!({"status": "success", "data": data, "warnings": warnings})).into_response()
}

async fn series(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let found = matching_series(&state, &headers, &p).await?;
    let (found, warnings) = limited(&p, found)?;
    state
        .limits
        .check_series(&state.tenant(&headers)?, found.len())?;
    let data: Vec<serde_json::Value> = found.iter().map(json::labels).collect();
    Ok(success_with_warnings(json!(data), warnings))
}

async fn label_names(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let found = matching_series(&state, &headers, &p).await?;
    let names: BTreeSet<&str> = found
        .iter()
        .flat_map(|l| l.iter().map(|l| l.name.as_str()))
        .collect();
    let (names, warnings) = limited(&p, names.into_iter().collect())?;
    Ok(success_with_warnings(json!(names), warnings))
}

async fn label_values(
    State(state): State<QueryState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let name = params::unescape_label_name(&name);
    if !storage::labels::is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let found = matching_series(&state, &headers, &p).await?;
    let values: BTreeSet<&str> = found.iter().filter_map(|l| l.get(&name)).collect();
    let (values, warnings) = limited(&p, values.into_iter().collect())?;
    Ok(success_with_warnings(json!(values), warnings))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_COMPAT_VERSION,
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "strata",
        "buildUser": "strata",
        "buildDate": "",
        "goVersion": "n/a (Strata, Rust)",
    }))
}

#[cfg(test)]
mod tests;
