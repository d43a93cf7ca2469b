//! OTLP metrics over HTTP (`POST /api/v1/otlp/v1/metrics`, Mimir's path, and
//! `/otlp/v1/metrics`): decoding, the response conventions of OTLP/HTTP, and
//! the path to group commit. The translation to Prometheus series is
//! `translate` (names in `names`, exponential histograms in `exponential`);
//! `docs/protocols.md` lists the rules and where they differ from Prometheus.
//!
//! OTLP/HTTP, as the specification sets it:
//! - bodies are `application/x-protobuf` or `application/json` (OTLP/JSON:
//!   camelCase names, 64-bit integers as strings or numbers, hex trace and
//!   span ids), optionally `Content-Encoding: gzip`; other types are 415;
//! - success is 200 with an `ExportMetricsServiceResponse` in the request's
//!   encoding; when some data points were not stored, its `partial_success`
//!   says how many and why (the sender must not retry);
//! - a body that does not decode, or whose data points were all rejected,
//!   is 400; failures are a `google.rpc.Status` message (code and message)
//!   in the request's encoding; 429 (rate limit) and 503 (storage) are the
//!   retryable ones.

mod exponential;
mod names;
mod translate;

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use storage::sidecar::Sidecar;
use storage::tenant::{self, TENANT_HEADER};
use storage::{Labels, Sample, Series, TenantId};
use tracing::{debug, warn};

use crate::drop_rules;
use crate::error::IngestError;
use crate::http::{AppState, read_body};
use crate::protocols::decode_content;

pub use opentelemetry_proto::tonic as proto;
pub use translate::{Translated, translate};

/// The two OTLP/HTTP encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From `Content-Type` (parameters such as `charset` ignored).
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, IngestError> {
        let raw = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("<not ASCII>"))
            .unwrap_or("");
        let mime = raw.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Self::Protobuf)
        } else if mime.eq_ignore_ascii_case("application/json") {
            Ok(Self::Json)
        } else {
            Err(IngestError::UnsupportedOtlpContentType {
                value: raw.to_string(),
            })
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }
}

/// Decodes an (uncompressed) request body.
pub fn decode(body: &[u8], format: Format) -> Result<ExportMetricsServiceRequest, IngestError> {
    match format {
        Format::Protobuf => {
            ExportMetricsServiceRequest::decode(body).map_err(|e| IngestError::OtlpDecode {
                format: "protobuf",
                reason: e.to_string(),
            })
        }
        Format::Json => serde_json::from_slice(body).map_err(|e| IngestError::OtlpDecode {
            format: "JSON",
            reason: e.to_string(),
        }),
    }
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses (details are
/// never sent).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answered the OTLP way: its status code with a `Status` body.
pub(crate) struct OtlpError {
    error: IngestError,
    format: Format,
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        if status.is_server_error() {
            warn!(error = %self.error, "OTLP write failed");
        } else {
            debug!(error = %self.error, "OTLP write rejected");
        }
        // gRPC codes matching the HTTP status, as gRPC-gateway maps them.
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            s if s.is_server_error() => 13,
            _ => 3,
        };
        let body = Status {
            code,
            message: self.error.to_string(),
        };
        encoded(status, self.format, &body)
    }
}

fn encoded<M: Message + serde::Serialize>(status: StatusCode, format: Format, msg: &M) -> Response {
    let bytes = match format {
        Format::Protobuf => msg.encode_to_vec(),
        // Serializing these messages cannot fail (no maps with non-string
        // keys); an empty object is still a valid answer.
        Format::Json => serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec()),
    };
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
}

/// `POST /api/v1/otlp/v1/metrics`.
pub(crate) async fn otlp_metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match Format::from_headers(&headers) {
        Ok(f) => f,
        // No encoding to answer in: protobuf, the OTLP default.
        Err(error) => {
            return OtlpError {
                error,
                format: Format::Protobuf,
            }
            .into_response();
        }
    };
    match write(app, headers, body, format).await {
        Ok(partial) => encoded(
            StatusCode::OK,
            format,
            &ExportMetricsServiceResponse {
                partial_success: partial,
            },
        ),
        Err(error) => OtlpError { error, format }.into_response(),
    }
}

async fn write(
    app: AppState,
    headers: HeaderMap,
    body: Body,
    format: Format,
) -> Result<Option<ExportMetricsPartialSuccess>, IngestError> {
    let state = &app.ingest;
    let cfg = &state.config;
    let tenant = tenant::resolve(
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        &state.default_tenant,
    )?;
    let raw = read_body(cfg, &headers, body).await?;
    let bytes = decode_content(&headers, raw, cfg.max_decoded_bytes)?;
    let req = decode(&bytes, format)?;
    let (label_limits, _) = state
        .limits
        .decoding(&tenant, &cfg.limits, &state.series_cache);
    let t = translate(&req, label_limits);
    debug!(tenant = %tenant, points = t.points, rejected = t.rejected, series = t.series.len(), histograms = t.sidecar.histograms.len(), samples = t.samples, "OTLP write");
    state.metrics.otlp_points_rejected.inc_by(t.rejected as u64);
    let accepted = t.points - t.rejected;
    if accepted == 0 && t.rejected > 0 {
        return Err(IngestError::OtlpRejected {
            rejected: t.rejected,
            total: t.points,
            reason: t.first_error.unwrap_or_default(),
        });
    }
    let mut partial = (t.rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: t.rejected as i64,
        error_message: t.first_error.clone().unwrap_or_default(),
    });
    let total_series = t.series_count();
    let (series, sidecar) = match filter(&app, &tenant, t.series, t.sidecar).await {
        Ok(kept) => kept,
        // Dropped on purpose (a standby HA replica): a success for OTLP,
        // which knows no 202, with the reason in `partial_success`.
        Err(e @ IngestError::ReplicaNotElected { .. }) => {
            debug!(error = %e, "OTLP write from a non-elected HA replica dropped");
            return Ok(Some(ExportMetricsPartialSuccess {
                rejected_data_points: accepted as i64 + t.rejected as i64,
                error_message: e.to_string(),
            }));
        }
        Err(e) => return Err(e),
    };
    if sidecar.histograms.is_empty() {
        state.limits.admit(&tenant, total_series, &series)?;
    } else {
        state
            .limits
            .admit(&tenant, total_series, &[admission_view(&series, &sidecar)])?;
    }
    // Series over max_series_per_metric are dropped; their points are
    // reported in partial_success like any rejected point.
    let mut sidecar = sidecar;
    let points = |s: &[Series], c: &Sidecar| {
        s.iter().map(|s| s.samples.len()).sum::<usize>() + c.histogram_count()
    };
    let before = points(&series, &sidecar);
    let (series, over_limit) = state
        .limits
        .series_per_metric(&tenant, series, Some(&mut sidecar));
    if let Some(e) = over_limit {
        let left = points(&series, &sidecar);
        if left == 0 {
            return Err(e);
        }
        let p = partial.get_or_insert_with(|| ExportMetricsPartialSuccess {
            rejected_data_points: 0,
            error_message: String::new(),
        });
        p.rejected_data_points += (before - left) as i64;
        if p.error_message.is_empty() {
            p.error_message = e.to_string();
        }
    }
    state
        .committer
        .commit_with_sidecar(tenant, series, sidecar)
        .await?;
    if let Some(p) = &mut partial
        && p.error_message.is_empty()
    {
        p.error_message = "some data points were rejected".into();
    }
    Ok(partial)
}

/// HA deduplication and drop rules, which work on float series, applied to
/// native histogram series too (by their labels) and to exemplars (kept
/// when their series is kept).
async fn filter(
    app: &AppState,
    tenant: &TenantId,
    series: Vec<Series>,
    mut sidecar: Sidecar,
) -> Result<(Vec<Series>, Sidecar), IngestError> {
    let floats = series.len();
    let mut all = series;
    all.extend(sidecar.histograms.iter().map(|h| placeholder(&h.labels)));
    all.extend(sidecar.exemplars.iter().map(|e| placeholder(&e.labels)));
    let mut all = app.ha.dedupe(tenant, all).await?;
    // Dedupe keeps order and length; it may remove the replica label.
    let exemplar_labels = all.split_off(floats + sidecar.histograms.len());
    let hist_labels = all.split_off(floats);
    for (h, p) in sidecar.histograms.iter_mut().zip(hist_labels) {
        h.labels = p.labels;
    }
    for (e, p) in sidecar.exemplars.iter_mut().zip(exemplar_labels) {
        e.labels = p.labels;
    }
    let series = drop_rules::apply(app.drop_rules.as_ref(), tenant, all).await;
    if app.drop_rules.is_some() && !sidecar.histograms.is_empty() {
        let probes = sidecar
            .histograms
            .iter()
            .map(|h| placeholder(&h.labels))
            .collect();
        let kept: HashSet<Labels> = drop_rules::apply(app.drop_rules.as_ref(), tenant, probes)
            .await
            .into_iter()
            .map(|s| s.labels)
            .collect();
        sidecar.histograms.retain(|h| kept.contains(&h.labels));
    }
    if app.drop_rules.is_some() && !sidecar.exemplars.is_empty() {
        let kept: HashSet<&Labels> = series
            .iter()
            .map(|s| &s.labels)
            .chain(sidecar.histograms.iter().map(|h| &h.labels))
            .collect();
        sidecar.exemplars.retain(|e| kept.contains(&e.labels));
    }
    Ok((series, sidecar))
}

fn placeholder(labels: &Labels) -> Series {
    Series {
        labels: labels.clone(),
        samples: Vec::new(),
    }
}

/// What the rate limit counts: float samples and native histogram samples,
/// one each. The limits count the samples of float series, so the request
/// stands in as one series with that many (empty) samples.
fn admission_view(series: &[Series], sidecar: &Sidecar) -> Series {
    let samples = series.iter().map(|s| s.samples.len()).sum::<usize>() + sidecar.histogram_count();
    Series {
        labels: Labels::empty(),
        samples: vec![Sample::new(0, 0.0); samples],
    }
}

#[cfg(test)]
mod tests;
