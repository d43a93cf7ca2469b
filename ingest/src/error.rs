//! Errors of the ingest tier and their HTTP status, mapped in one place
//! ([`IngestError::status`]) following remote write's retry contract: 4xx
//! means "do not retry", 5xx means "retry".

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
        "unsupported {header}: {value:?} (remote write 1.0 needs snappy-compressed application/x-protobuf)"
    )]
    UnsupportedMediaType { header: &'static str, value: String },
    #[error("snappy decoding failed: {0}")]
    Snappy(String),
    #[error("decompressed body of {size} bytes is larger than the limit of {limit} bytes")]
    DecodedTooLarge { size: usize, limit: usize },
    #[error("protobuf decoding of WriteRequest failed: {0}")]
    Protobuf(String),
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
    /// Storing the batch failed; nothing of the request is acknowledged.
    #[error("storing samples failed: {0}")]
    Store(Arc<StorageError>),
    #[error("ingester is shutting down")]
    ShuttingDown,
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        use IngestError::*;
        match self {
            BodyTooLarge { .. } | DecodedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Body(_) | Snappy(_) | Protobuf(_) | Tenant(_) | InvalidSeries { .. } => {
                StatusCode::BAD_REQUEST
            }
            Store(_) | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}
