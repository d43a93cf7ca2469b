//! The storage facade: write a batch of series as one segment, and read series
//! back by matchers and time range. Everything above the object store goes
//! through this type.

use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::Result;
use crate::labels::Labels;
use crate::matcher::Matcher;
use crate::sample::Series;
use crate::tenant::TenantId;

/// Reads and writes one object store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
}

impl Storage {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// A storage on a fresh in-memory object store (unit tests, conformance runner).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes `series` (samples in any order) as one immutable segment object
    /// of `tenant`. Returns only after the object store acknowledged the put.
    pub async fn write_segment(&self, tenant: &TenantId, series: &[Series]) -> Result<()> {
        let _ = (tenant, series);
        todo!("segment writer")
    }

    /// Series matching all `matchers` with their samples in `[start_ms, end_ms]`
    /// (inclusive), deduplicated by timestamp and sorted by time; series with
    /// no sample in the range are omitted.
    pub async fn select(&self, tenant: &TenantId, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<Vec<Series>> {
        let _ = (tenant, matchers, start_ms, end_ms);
        todo!("segment reader")
    }

    /// Label sets of series that match any of the matcher sets (all series when
    /// `matcher_sets` is empty) and have samples in the range.
    pub async fn series(&self, tenant: &TenantId, matcher_sets: &[Vec<Matcher>], start_ms: i64, end_ms: i64) -> Result<Vec<Labels>> {
        let _ = (tenant, matcher_sets, start_ms, end_ms);
        todo!("series index")
    }
}
