//! The Prometheus API error envelope, and the one mapping from internal errors
//! to Prometheus' error types and HTTP status codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::promql::EvalError;

/// Prometheus' `errorType` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Internal,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::BadData,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorType::Internal,
            message: message.into(),
        }
    }
}

impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> Self {
        let kind = match &e {
            EvalError::Parse(_) => ErrorType::BadData,
            EvalError::Execution(_) | EvalError::Unsupported(_) | EvalError::TooManySamples => {
                ErrorType::Execution
            }
            EvalError::Storage(_) => ErrorType::Internal,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<crate::remote_read::RemoteReadError> for ApiError {
    fn from(e: crate::remote_read::RemoteReadError) -> Self {
        use crate::remote_read::RemoteReadError as E;
        match e {
            // Prometheus answers its remote read sample limit with 400.
            E::BadRequest(_) | E::TooManySamples { .. } => Self::bad_data(e.to_string()),
            E::Storage(e) => Self::internal(e.to_string()),
        }
    }
}

impl From<crate::sql::SqlError> for ApiError {
    fn from(e: crate::sql::SqlError) -> Self {
        use crate::sql::SqlError as E;
        let kind = match &e {
            E::BadQuery(_) => ErrorType::BadData,
            E::Execution(_) => ErrorType::Execution,
            E::Timeout(_) => ErrorType::Timeout,
            E::Internal(_) => ErrorType::Internal,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<storage::StorageError> for ApiError {
    fn from(e: storage::StorageError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<storage::TenantError> for ApiError {
    fn from(e: storage::TenantError) -> Self {
        Self::bad_data(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.kind == ErrorType::Internal {
            // Internals are logged inside the request span, not sent to clients.
            error!(error = %self.message, "query failed");
            "internal error; see the server log".to_string()
        } else {
            self.message
        };
        let body = json!({"status": "error", "errorType": self.kind.as_str(), "error": message});
        (self.kind.status(), Json(body)).into_response()
    }
}
