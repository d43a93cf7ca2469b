//! The ingest tier (the M3 Coordinator role): protocol receivers, validation,
//! tenant routing and group commit of segments to object storage.

pub mod clock;
pub mod drop_rules;
pub mod error;
pub mod group_commit;
pub mod ha;
pub mod http;
pub mod influx;
pub mod json_write;
pub mod limits;
pub mod metrics;
pub mod otlp;
pub mod proto;
mod protocols;
pub mod remote_write;
pub mod series_cache;

pub use drop_rules::DropRules;
pub use error::IngestError;
pub use group_commit::{GroupCommitConfig, GroupCommitter};
pub use ha::{HaTracker, HaTrackerConfig};
pub use http::{IngestConfig, IngestState, router, router_with, router_with_drop_rules};
pub use limits::{IngestLimits, TenantIngestLimits};
pub use metrics::IngestMetrics;
