//! `POST /api/v1/sql`: a read-only SQL query over the request's tenant (see
//! [`crate::sql`]). The body is the SQL text, or a form with `query=`.
//! Answers JSON, or an Arrow IPC stream when the request's `Accept` asks
//! for `application/vnd.apache.arrow.stream`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Json, Response};

use super::{ApiError, QueryState};
use crate::sql::{self, SqlLimits, output};

/// The SQL text of a request body.
fn sql_text(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        return form_urlencoded::parse(body)
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| ApiError::bad_data("invalid parameter \"query\": no query provided"));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_data("the SQL text is not valid UTF-8"))
}

fn wants_arrow(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(output::ARROW_STREAM))
}

pub(super) async fn query(
    State(state): State<QueryState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let text = sql_text(&headers, &body)?;
    // The tenant's sample limit and a query slot ([limits]); the time limit
    // is [query.sql]'s own.
    let tenant_limits = state.limits.of(&tenant).clone();
    let _slot = state
        .limits
        .wait_for_slot(&tenant, tenant_limits.max_query_time)
        .await?;
    let limits = SqlLimits::new(&state.config.sql, tenant_limits.max_samples);
    let out = sql::execute(&state.storage, &tenant, &text, &limits).await?;
    if wants_arrow(&headers) {
        let bytes = output::to_arrow_ipc(&out.schema, &out.batches)
            .map_err(|e| ApiError::internal(format!("arrow ipc encoding: {e}")))?;
        return Ok(([(header::CONTENT_TYPE, output::ARROW_STREAM)], bytes).into_response());
    }
    let json =
        output::to_json(&out).map_err(|e| ApiError::internal(format!("json encoding: {e}")))?;
    Ok(Json(json).into_response())
}

#[cfg(test)]
mod tests;
