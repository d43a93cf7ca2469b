//! The aggregator (M3 Aggregator's role): rules decide which series are
//! downsampled to which storage policies, rolled up into new series, or
//! dropped at ingest; scheduled, leased, idempotent jobs apply them to closed
//! time windows of raw data and write blocks of the target resolutions.
//!
//! - [`rules`]. The rule model: storage policies, mapping and roll-up rules.
//! - [`rule_store`]. Versioned rule sets per tenant (object store or etcd), the `[rules]` config.
//! - [`polled`]. Rule sets as request paths read them, refreshed on demand.
//! - [`compute`]. What a window's raw series become under the rules (pure).
//! - [`checkpoint`]. Which windows are aggregated, from which inputs.
//! - [`config`]. The `[aggregate]` section.
//! - [`job`]. A pass: leases, reads, block writes, manifest and checkpoint commits.
//! - [`api`]. The HTTP API of rule sets (`/api/v1/rules`).

pub mod api;
pub mod chain;
pub mod checkpoint;
pub mod cli;
pub mod compute;
pub mod config;
pub mod job;
pub mod polled;
pub mod rule_store;
pub mod rules;

pub use config::AggregateConfig;
pub use job::{Aggregator, AggregatorError, PassStats};
pub use polled::PolledRules;
pub use rule_store::{
    EtcdMetrics, ObjectRuleStore, RuleStore, RuleWatcher, RulesBackend, RulesConfig,
};
pub use rules::{RuleSet, RuleSetSpec};
