//! The ingest tier (the M3 Coordinator role): protocol receivers, validation,
//! tenant routing and group commit of segments to object storage.

pub mod proto;
