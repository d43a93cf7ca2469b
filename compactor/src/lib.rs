//! The compactor (the background half of M3DB's role): merges the small
//! segments that ingesters write into large, sorted, deduplicated blocks per
//! time partition, merges closed partitions into larger ones, swaps them in
//! through the manifest, applies retention, and deletes what it replaced
//! after a grace period. Every pass is idempotent and safe to run from
//! several processes at once (leases per partition shard, conditional
//! manifest commits).
//!
//! - [`config`]. The `[compact]` section.
//! - [`plan`]. Which blocks to build from what (pure).
//! - [`job`]. A pass: leases, reads, block writes, manifest commits, deletion.
//! - [`metrics`]. `strata_compactor_*`.

pub mod config;
pub mod job;
pub mod metrics;
pub mod plan;

pub use config::CompactorConfig;
pub use job::{Compactor, CompactorError, PassStats};
pub use metrics::CompactorMetrics;
