//! The query tier (the M3 Query role): the Prometheus HTTP API and PromQL over
//! data read from object storage.

pub mod api;
pub mod promql;
pub mod promqltest;
pub mod queryable;
pub mod remote_read;
pub mod resolution;
pub mod sql;
