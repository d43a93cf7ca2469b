//! The ingest tier (the M3 Coordinator role): protocol receivers, validation,
//! tenant routing and group commit of segments to object storage.

pub mod error;
pub mod group_commit;
pub mod http;
pub mod metrics;
pub mod proto;
pub mod remote_write;
pub mod series_cache;

pub use error::IngestError;
pub use group_commit::{GroupCommitConfig, GroupCommitter};
pub use http::{IngestConfig, IngestState, router};
pub use metrics::IngestMetrics;
