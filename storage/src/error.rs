//! Errors of the storage crate, with the context needed to act on them.

use thiserror::Error;

/// A label set that breaks Prometheus' rules. Always the client's fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LabelError {
    #[error("label with empty name")]
    EmptyName,
    #[error("duplicate label name={name}")]
    Duplicate { name: String },
    #[error("labels not sorted: name={name} comes after {after}")]
    Unsorted { name: String, after: String },
    #[error("series has no metric name (__name__ label)")]
    MissingMetricName,
    #[error("invalid metric name={name:?}")]
    InvalidMetricName { name: String },
    #[error("invalid label name={name:?}")]
    InvalidLabelName { name: String },
    #[error("empty value for label name={name}")]
    EmptyValue { name: String },
}

/// A tenant id that may not be used in object keys. Always the client's fault.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid tenant id {id:?}: {reason}")]
pub struct TenantError {
    pub id: String,
    pub reason: &'static str,
}

/// A matcher that cannot be compiled (bad regular expression).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid regular expression in matcher {name}=~{pattern:?}: {reason}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    pub reason: String,
}

/// Errors of reading and writing stored objects.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("object store {op} key={key}: {source}")]
    ObjectStore {
        op: &'static str,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("corrupt object key={key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("encoding segment: {0}")]
    Encode(String),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("conditional write key={key}: still conflicting after {attempts} attempts")]
    Conflict { key: String, attempts: usize },
    #[error("invalid storage config field {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// etcd, when it keeps the job leases (`[leases] backend = "etcd"`).
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
}

impl StorageError {
    pub fn store(op: &'static str, key: impl Into<String>, source: object_store::Error) -> Self {
        Self::ObjectStore {
            op,
            key: key.into(),
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The message of a caught panic's payload, when it carries one (a `&str`
/// or a `String`, as `panic!` makes).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
