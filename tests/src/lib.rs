//! Test harness for Strata's end-to-end tests and the ingest benchmark.
//!
//! Everything here drives real processes: the `strata` binary, Prometheus and
//! SeaweedFS (`weed mini`), each on free loopback ports with its own temporary
//! directory, killed when its handle is dropped. Nothing is mocked.
//!
//! - [`process`]: start/stop child processes, find binaries, free ports.
//! - [`remote_write`]: build, encode and send Prometheus remote-write requests.
//! - [`promapi`]: call the Prometheus HTTP API and compare query results.

pub mod datagen;
pub mod export;
pub mod process;
pub mod promapi;
pub mod remote_write;

pub use process::{Prometheus, Strata, Weed};
