//! Strata's storage layer (the M3DB role): the data model, the segment format,
//! object-store keys and the object-store boundary, and reads of stored series.

pub mod block;
pub mod cached_store;
pub mod chunk;
pub mod config;
pub mod error;
pub mod etcd;
pub mod failing_store;
pub mod histogram;
pub mod instrumented_store;
pub mod labels;
pub mod latency_store;
pub mod lease;
pub mod manifest;
pub mod matcher;
pub mod paths;
pub mod sample;
pub mod segment;
pub mod segment_index;
pub mod sidecar;
pub mod step_grid;
pub mod storage;
pub mod table;
pub mod tenant;
pub mod workload;

pub use error::{LabelError, MatcherError, StorageError, TenantError};

/// The cores this process may use, looked up once: the lookup reads cgroup
/// files, a few percent of a short warm query when done per read.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
pub use labels::{Label, Labels, METRIC_NAME, SeriesId};
pub use matcher::{MatchOp, Matcher};
pub use sample::{STALE_NAN_BITS, Sample, Series};
pub use storage::Storage;
pub use tenant::TenantId;
