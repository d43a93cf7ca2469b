//! `GET/POST /api/v1/query_exemplars`: exemplars of the request's tenant in
//! `[start, end]`, for every series that any vector selector of `query` (a
//! whole PromQL expression) matches, as Prometheus answers it:
//! `[{"seriesLabels": {...}, "exemplars": [{"labels", "value", "timestamp"}]}]`
//! with values as strings and timestamps as seconds.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use storage::sidecar::ExemplarSeries;

use super::json as api_json;
use super::metadata::within_query_limits;
use super::params::Params;
use super::{ApiError, MAX_TIME, MIN_TIME, QueryState, success};
use crate::promql;

fn exemplar_json(series: &[ExemplarSeries]) -> Value {
    let data: Vec<Value> = series
        .iter()
        .map(|s| {
            let exemplars: Vec<Value> = s
                .exemplars
                .iter()
                .map(|e| {
                    json!({
                        "labels": api_json::labels(&e.labels),
                        "value": api_json::float(e.value),
                        "timestamp": api_json::time(e.timestamp),
                    })
                })
                .collect();
            json!({"seriesLabels": api_json::labels(&s.labels), "exemplars": exemplars})
        })
        .collect();
    Value::Array(data)
}

pub(super) async fn query_exemplars(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let start = p.time("start")?.unwrap_or(MIN_TIME);
    let end = p.time("end")?.unwrap_or(MAX_TIME);
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let sets = promql::selector_matchers(p.get("query").unwrap_or_default())?;
    if sets.is_empty() {
        // A query without selectors (`1 + 1`): Prometheus answers `null`.
        return Ok(success(Value::Null));
    }
    let found = within_query_limits(
        &state,
        &tenant,
        "exemplar query",
        state
            .storage
            .select_exemplars_any(&tenant, &sets, start, end),
    )
    .await?;
    Ok(success(exemplar_json(&found)))
}

#[cfg(test)]
mod tests;
