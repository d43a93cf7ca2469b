//! HTTP handlers of the write protocols beside remote write: InfluxDB line
//! protocol (M3's `/api/v1/influxdb/write` and InfluxDB 1.x's `/write`) and
//! M3's JSON write (`/api/v1/json/write`). Both go through the same steps as
//! remote write: tenant, body limits, decoding, validation, HA
//! deduplication, group commit.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use storage::tenant::{self, TENANT_HEADER};
use tracing::{debug, warn};

use crate::drop_rules;
use crate::error::IngestError;
use crate::http::{AppState, read_body};
use crate::influx::{self, Precision};
use crate::json_write;

/// Query parameters of an InfluxDB 1.x write. `db`, `rp`, `u`, `p` and
/// `consistency` are accepted and ignored: the tenant comes from
/// `X-Scope-OrgID`, as on every other route.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InfluxParams {
    precision: Option<String>,
}

/// An error answered the way InfluxDB answers: `{"error": "..."}`.
pub(crate) struct InfluxError(IngestError);

impl IntoResponse for InfluxError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        log_outcome(&self.0, "line protocol write");
        let body = serde_json::json!({ "error": self.0.to_string() });
        (status, Json(body)).into_response()
    }
}

fn log_outcome(e: &IngestError, what: &str) {
    if e.status().is_server_error() {
        warn!(error = %e, "{what} failed");
    } else {
        debug!(error = %e, "{what} rejected");
    }
}

pub(crate) async fn influx_write(
    State(app): State<AppState>,
    Query(params): Query<InfluxParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, InfluxError> {
    influx_inner(app, params, headers, body)
        .await
        .map_err(InfluxError)
}

async fn influx_inner(
    app: AppState,
    params: InfluxParams,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    let state = &app.ingest;
    let cfg = &state.config;
    let tenant = tenant::resolve(
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        &state.default_tenant,
    )?;
    let precision = Precision::parse(params.precision.as_deref()).map_err(|reason| {
        IngestError::InvalidParam {
            name: "precision",
            reason,
        }
    })?;
    let raw = read_body(cfg, &headers, body).await?;
    let text = decode_content(&headers, raw, cfg.max_decoded_bytes)?;
    let (label_limits, cache) = state
        .limits
        .decoding(&tenant, &cfg.limits, &state.series_cache);
    let parsed = influx::parse(&text, precision, app.clock.now_ms(), label_limits, cache);
    debug!(tenant = %tenant, lines = parsed.lines, series = parsed.series.len(), samples = parsed.samples, "line protocol write");
    let rejected = parsed.error();
    state.metrics.lines_rejected.inc_by(parsed.rejected as u64);
    // Series of the request: the valid ones and one per rejected line.
    let total = parsed.series.len() + parsed.rejected;
    let series = app.ha.dedupe(&tenant, parsed.series).await?;
    let series = drop_rules::apply(app.drop_rules.as_ref(), &tenant, series).await;
    state.limits.admit(&tenant, total, &series)?;
    let (series, over_limit) = state.limits.series_per_metric(&tenant, series, None);
    state.committer.commit(tenant, series).await?;
    match rejected.or(over_limit) {
        Some(e) => Err(e),
        None => Ok(StatusCode::NO_CONTENT),
    }
}

/// `POST /api/v1/json/write`: 200 with an empty body on success, as M3.
pub(crate) async fn json_write(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    let state = &app.ingest;
    let cfg = &state.config;
    let tenant = tenant::resolve(
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        &state.default_tenant,
    )?;
    let raw = read_body(cfg, &headers, body).await?;
    let text = decode_content(&headers, raw, cfg.max_decoded_bytes)?;
    let (label_limits, _) = state
        .limits
        .decoding(&tenant, &cfg.limits, &state.series_cache);
    let parsed = json_write::parse(&text, label_limits)?;
    let rejected = parsed.error();
    state.metrics.series_rejected.inc_by(parsed.rejected as u64);
    let series = app.ha.dedupe(&tenant, parsed.series).await?;
    let series = drop_rules::apply(app.drop_rules.as_ref(), &tenant, series).await;
    state.limits.admit(&tenant, parsed.total, &series)?;
    let (series, over_limit) = state.limits.series_per_metric(&tenant, series, None);
    state.committer.commit(tenant, series).await?;
    match rejected.or(over_limit) {
        Some(e) => Err(e),
        None => Ok(StatusCode::OK),
    }
}

/// The body after `Content-Encoding`: none (or `identity`) or `gzip`, the
/// latter bounded by `max_decoded` bytes.
pub(crate) fn decode_content(
    headers: &HeaderMap,
    raw: Bytes,
    max_decoded: usize,
) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => {
            if raw.len() > max_decoded {
                return Err(IngestError::DecodedTooLarge {
                    size: raw.len(),
                    limit: max_decoded,
                });
            }
            Ok(raw)
        }
        Some("gzip" | "x-gzip") => gunzip(&raw, max_decoded),
        Some(other) => Err(IngestError::UnsupportedEncoding {
            value: other.to_string(),
        }),
    }
}

fn gunzip(raw: &[u8], max_decoded: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_decoded)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Gzip(e.to_string()))?;
    if out.len() > max_decoded {
        return Err(IngestError::DecodedTooLarge {
            size: out.len(),
            limit: max_decoded,
        });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests;
