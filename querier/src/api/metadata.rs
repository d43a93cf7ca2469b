//! `GET/POST /api/v1/metadata`: the metric metadata (type, help, unit per
//! metric family) the request's tenant sent through remote write or OTLP,
//! answered as Prometheus answers it from its scrape targets:
//! `{"<family>": [{"type", "help", "unit"}, ...]}`, with `limit`,
//! `limit_per_metric` and `metric`.

use std::future::Future;
use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};
use storage::TenantId;
use storage::sidecar::MetricMetadata;

use super::params::Params;
use super::{ApiError, ErrorType, QueryState, limits, success};

/// Runs a read for `tenant` holding one of its query slots and under its
/// query time limit: metadata and exemplar reads load the same objects
/// queries do, so they count against the same limits.
pub(super) async fn within_query_limits<T>(
    state: &QueryState,
    tenant: &TenantId,
    what: &str,
    read: impl Future<Output = Result<T, storage::StorageError>>,
) -> Result<T, ApiError> {
    let limit = state.limits.of(tenant).max_query_time;
    let started = Instant::now();
    let _slot = state.limits.wait_for_slot(tenant, limit).await?;
    let left = limit.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, read).await {
        Ok(found) => Ok(found?),
        Err(_) => Err(state.limits.refuse(
            tenant,
            limits::MAX_QUERY_TIME,
            ErrorType::Timeout,
            format!(
                "{what} timed out (max_query_time: {limit:?} for tenant {:?})",
                tenant.as_str()
            ),
        )),
    }
}

/// An integer parameter as Go's `strconv.Atoi` reads it; `None` when absent
/// or empty. The error is Prometheus' own message.
fn int_param(p: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match p.get(key).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_data(format!("{key} must be a number"))),
    }
}

/// What the request asks for: Prometheus' parameters with its semantics.
#[derive(Debug, Default, PartialEq)]
struct Selection {
    /// Only this metric family (`metric`; empty: all).
    metric: Option<String>,
    /// Most families (`limit`); Prometheus caps whenever it is `>= 0`, so
    /// `limit=0` answers `{}`, and a negative value means no limit.
    limit: Option<usize>,
    /// Most entries per family (`limit_per_metric`); only a positive value
    /// caps, as in Prometheus.
    per_metric: Option<usize>,
}

impl Selection {
    fn from_params(p: &Params) -> Result<Self, ApiError> {
        let limit = int_param(p, "limit")?.and_then(|n| usize::try_from(n).ok());
        let per_metric = int_param(p, "limit_per_metric")?
            .filter(|n| *n > 0)
            .and_then(|n| usize::try_from(n).ok());
        let metric = p
            .get("metric")
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(Self {
            metric,
            limit,
            per_metric,
        })
    }

    /// The `data` object for the tenant's metadata (families sorted by
    /// name, so a `limit` cuts the same families every time).
    fn answer(
        &self,
        all: impl IntoIterator<Item = (String, Vec<MetricMetadata>)>,
    ) -> Map<String, Value> {
        let mut data = Map::new();
        for (family, entries) in all {
            if self.limit.is_some_and(|l| data.len() >= l) {
                break;
            }
            if self.metric.as_ref().is_some_and(|m| *m != family) {
                continue;
            }
            let take = self.per_metric.unwrap_or(usize::MAX);
            let entries: Vec<Value> = entries
                .iter()
                .take(take)
                .map(|m| json!({"type": m.metric_type.as_str(), "help": m.help, "unit": m.unit}))
                .collect();
            data.insert(family, Value::Array(entries));
        }
        data
    }
}

pub(super) async fn metadata(
    State(state): State<QueryState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let selection = Selection::from_params(&p)?;
    let all = within_query_limits(
        &state,
        &tenant,
        "metadata lookup",
        state.storage.metadata(&tenant),
    )
    .await?;
    Ok(success(Value::Object(selection.answer(all))))
}

#[cfg(test)]
mod tests;
