//! Errors of the ingest tier and their HTTP status, mapped in one place
//! ([`IngestError::status`]) following remote write's retry contract: 4xx
//! means "do not retry", 5xx means "retry". One outcome is not a failure:
//! samples of a non-elected HA replica are dropped with 202, as Mimir does.

use std::sync::Arc;

use axum::http::StatusCode;
use storage::{StorageError, TenantError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading request body: {0}")]
    Body(String),
    #[error(
        "unsupported {header}: {value:?} (remote write accepts snappy-compressed application/x-protobuf, with proto=prometheus.WriteRequest (the default) or proto=io.prometheus.write.v2.Request)"
    )]
    UnsupportedMediaType { header: &'static str, value: String },
    #[error("unsupported Content-Encoding: {value:?} (accepted: gzip, identity)")]
    UnsupportedEncoding { value: String },
    #[error("snappy decoding failed: {0}")]
    Snappy(String),
    #[error("gzip decoding failed: {0}")]
    Gzip(String),
    #[error("decompressed body of {size} bytes is larger than the limit of {limit} bytes")]
    DecodedTooLarge { size: usize, limit: usize },
    #[error("protobuf decoding of WriteRequest failed: {0}")]
    Protobuf(String),
    /// A remote write 2.0 request that is malformed as a whole.
    #[error("remote write 2.0: {0}")]
    RemoteWriteV2(String),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Some series were invalid; the valid ones (if any) were stored.
    #[error("{rejected} of {total} series rejected; first: series {series}: {reason}")]
    InvalidSeries {
        rejected: usize,
        total: usize,
        series: String,
        reason: String,
    },
    /// Some lines of a line-protocol body were invalid; the valid points (if
    /// any) were stored.
    #[error("{rejected} of {total} lines rejected; first: line {line}: {reason}")]
    InvalidLines {
        rejected: usize,
        total: usize,
        line: usize,
        reason: String,
    },
    #[error("invalid JSON write request: {0}")]
    Json(String),
    #[error(
        "unsupported Content-Type for OTLP: {value:?} (accepted: application/x-protobuf, application/json)"
    )]
    UnsupportedOtlpContentType { value: String },
    #[error("invalid OTLP {format} request body: {reason}")]
    OtlpDecode {
        format: &'static str,
        reason: String,
    },
    /// Every data point of an OTLP request was rejected; nothing was stored.
    #[error("{rejected} of {total} data points rejected, nothing stored; first: {reason}")]
    OtlpRejected {
        rejected: usize,
        total: usize,
        reason: String,
    },
    #[error("invalid query parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    /// The request came from an HA replica that is not the elected one of
    /// its cluster: dropped on purpose, answered 2xx so the sender does not
    /// retry (Mimir's contract).
    #[error(
        "samples from replica {replica:?} of HA cluster {cluster:?} dropped: the elected replica is {elected:?}"
    )]
    ReplicaNotElected {
        cluster: String,
        replica: String,
        elected: String,
    },
    #[error("too many HA clusters for this tenant (limit: {limit})")]
    TooManyHaClusters { limit: usize },
    #[error("HA tracker: {0}")]
    HaTracker(String),
    /// Storing the batch failed; nothing of the request is acknowledged.
    #[error("storing samples failed: {0}")]
    Store(Arc<StorageError>),
    #[error("ingester is shutting down")]
    ShuttingDown,
    /// The tenant's token bucket holds fewer samples than the request
    /// (`ingestion_rate`, per ingester): 429, which senders retry with backoff.
    #[error(
        "tenant {tenant:?} exceeded its ingestion rate limit (ingestion_rate: {rate} samples/s with a burst of {burst} samples, per ingester); request of {samples} samples refused"
    )]
    RateLimited {
        tenant: String,
        samples: usize,
        rate: f64,
        burst: f64,
    },
    /// More series in one request than the tenant may send; retrying the
    /// same request can never succeed, so 400.
    #[error(
        "request of {series} series exceeds the limit of tenant {tenant:?} (max_series_per_request: {limit})"
    )]
    TooManySeries {
        tenant: String,
        series: usize,
        limit: usize,
    },
    /// New series of a metric that already has its limit of series were
    /// dropped, the rest stored; 400 as Mimir answers its per-metric series
    /// limit, since resending the same series cannot succeed sooner.
    #[error(
        "per-metric series limit exceeded for tenant {tenant:?}: metric {metric:?} already has {limit} series (max_series_per_metric: {limit}, distinct series this ingester accepted in the last {window_s}s); {dropped} new series of {metrics} metric(s) dropped, the rest of the request stored"
    )]
    SeriesPerMetric {
        tenant: String,
        /// The first metric with a dropped series.
        metric: String,
        limit: usize,
        window_s: i64,
        /// Series dropped, over all metrics of the request.
        dropped: usize,
        /// Metrics with a dropped series.
        metrics: usize,
    },
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        use IngestError::*;
        match self {
            BodyTooLarge { .. } | DecodedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType { .. }
            | UnsupportedEncoding { .. }
            | UnsupportedOtlpContentType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Body(_)
            | Snappy(_)
            | Gzip(_)
            | Protobuf(_)
            | RemoteWriteV2(_)
            | Tenant(_)
            | InvalidSeries { .. }
            | InvalidLines { .. }
            | Json(_)
            | OtlpDecode { .. }
            | OtlpRejected { .. }
            | InvalidParam { .. }
            | TooManyHaClusters { .. }
            | TooManySeries { .. }
            | SeriesPerMetric { .. } => StatusCode::BAD_REQUEST,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ReplicaNotElected { .. } => StatusCode::ACCEPTED,
            Store(_) | HaTracker(_) | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
