//! `POST /api/v1/read`: Prometheus remote read over the request's tenant.
//! The protocol work is in [`crate::remote_read`]; this is the HTTP side:
//! tenant, limits, timeouts and the two kinds of response body (native
//! histograms in both: messages in `SAMPLES`, chunks in streamed answers).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use storage::sidecar::HistogramSeries;
use storage::{Series, Storage, TenantId};
use tracing::{debug, error};

use super::{ApiError, ErrorType, QueryState};
use crate::remote_read::proto::ResponseType;
use crate::remote_read::{
    self, MAX_BYTES_IN_FRAME, QueryData, RemoteReadError, SAMPLES_CONTENT_TYPE,
    STREAMED_CONTENT_TYPE, SampleBudget, Selection,
};

fn timed_out() -> ApiError {
    ApiError {
        kind: ErrorType::Timeout,
        message: "remote read timed out".into(),
    }
}

/// One query's series, under the query timeout.
async fn select(
    storage: &Storage,
    tenant: &TenantId,
    sel: &Selection,
    limit: Duration,
    budget: &mut SampleBudget,
) -> Result<Vec<Series>, ApiError> {
    let found = tokio::time::timeout(
        limit,
        storage.select(tenant, &sel.matchers, sel.start_ms, sel.end_ms),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(RemoteReadError::from)?;
    budget.take(&found)?;
    Ok(found)
}

/// One query's native histogram series, under the query timeout.
async fn select_histograms(
    storage: &Storage,
    tenant: &TenantId,
    sel: &Selection,
    limit: Duration,
    budget: &mut SampleBudget,
) -> Result<Vec<HistogramSeries>, ApiError> {
    let found = tokio::time::timeout(
        limit,
        storage.select_histograms(tenant, &sel.matchers, sel.start_ms, sel.end_ms),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(RemoteReadError::from)?;
    budget.take_histograms(&found)?;
    Ok(found)
}

pub(super) async fn read(
    State(state): State<QueryState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&headers)?;
    let req = remote_read::decode_request(&body)?;
    let kind = remote_read::negotiate(&req.accepted_response_types)?;
    let selections = remote_read::selections(&req)?;
    debug!(
        %tenant,
        queries = selections.len(),
        accepted = ?req.accepted_response_types,
        response_type = ?kind,
        "remote read"
    );
    // The tenant's limits ([limits]): time per query, samples, and a query
    // slot held until the answer (or its stream) is done.
    let tenant_limits = state.limits.of(&tenant).clone();
    let limit = tenant_limits.max_query_time;
    let slot = state.limits.wait_for_slot(&tenant, limit).await?;
    let mut budget = SampleBudget::new(tenant_limits.max_samples);
    let mut histograms = Vec::with_capacity(selections.len());
    for sel in &selections {
        histograms.push(select_histograms(&state.storage, &tenant, sel, limit, &mut budget).await?);
    }
    match kind {
        ResponseType::Samples => {
            let mut results = Vec::with_capacity(selections.len());
            for (sel, histograms) in selections.iter().zip(histograms) {
                let floats = select(&state.storage, &tenant, sel, limit, &mut budget).await?;
                results.push(QueryData { floats, histograms });
            }
            let body = remote_read::samples_response(&results)?;
            Ok((
                [
                    (header::CONTENT_TYPE, SAMPLES_CONTENT_TYPE),
                    (header::CONTENT_ENCODING, "snappy"),
                ],
                body,
            )
                .into_response())
        }
        ResponseType::StreamedXorChunks => {
            // The first query is read before answering, so its errors (the
            // common single-query case) still get a status code; later
            // ones can only cut the stream short, which the client sees.
            let mut pending = selections.into_iter().zip(histograms).enumerate();
            let head = match pending.next() {
                Some((_, (sel, histograms))) => {
                    let floats = select(&state.storage, &tenant, &sel, limit, &mut budget).await?;
                    let first = QueryData { floats, histograms };
                    remote_read::chunked_frames(0, &first, MAX_BYTES_IN_FRAME)
                }
                None => Vec::new(),
            };
            let storage = state.storage.clone();
            let tail = futures::stream::unfold(
                Some((budget, pending, storage, tenant)),
                move |st| {
                    let _held = &slot;
                    async move {
                        let (mut budget, mut pending, storage, tenant) = st?;
                        let (i, (sel, histograms)) = pending.next()?;
                        match select(&storage, &tenant, &sel, limit, &mut budget).await {
                            Ok(floats) => Some((
                                Ok(remote_read::chunked_frames(
                                    i,
                                    &QueryData { floats, histograms },
                                    MAX_BYTES_IN_FRAME,
                                )),
                                Some((budget, pending, storage, tenant)),
                            )),
                            Err(e) => {
                                error!(query = i, error = %e.message, "remote read stream cut short");
                                Some((Err(std::io::Error::other(e.message)), None))
                            }
                        }
                    }
                },
            )
            .map_ok(|frames| futures::stream::iter(frames.into_iter().map(Ok)))
            .try_flatten();
            let stream =
                futures::stream::iter(head.into_iter().map(Ok::<_, std::io::Error>)).chain(tail);
            Ok((
                [(header::CONTENT_TYPE, STREAMED_CONTENT_TYPE)],
                Body::from_stream(stream),
            )
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests;
