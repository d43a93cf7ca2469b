//! The compactor's own metrics, `strata_compactor_*`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::job::PassStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct CompactorMetrics {
    passes: Family<Outcome, Counter>,
    blocks_written: Counter,
    blocks_replaced: Counter,
    segments_read: Counter,
    samples_written: Counter,
    bytes_read: Counter,
    bytes_written: Counter,
    objects_deleted: Counter,
    lease_skips: Counter,
    conflicts: Counter,
    requests: Counter,
    last_pass_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl CompactorMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("strata_compactor");
        r.register("passes", "Compaction passes by outcome", m.passes.clone());
        r.register(
            "blocks_written",
            "Blocks written and committed",
            m.blocks_written.clone(),
        );
        r.register(
            "blocks_replaced",
            "Blocks replaced by merged blocks",
            m.blocks_replaced.clone(),
        );
        r.register(
            "segments_read",
            "Segment reads into committed blocks",
            m.segments_read.clone(),
        );
        r.register(
            "samples_written",
            "Samples written into committed blocks",
            m.samples_written.clone(),
        );
        r.register(
            "read_bytes",
            "Bytes of the inputs of committed blocks",
            m.bytes_read.clone(),
        );
        r.register(
            "written_bytes",
            "Bytes of committed blocks",
            m.bytes_written.clone(),
        );
        r.register(
            "objects_deleted",
            "Segments and blocks deleted after their grace period, and orphans",
            m.objects_deleted.clone(),
        );
        r.register(
            "lease_skips",
            "Blocks skipped because another compactor held the lease",
            m.lease_skips.clone(),
        );
        r.register(
            "conflicts",
            "Blocks abandoned because the manifest changed under them",
            m.conflicts.clone(),
        );
        r.register(
            "object_store_requests",
            "Object store requests made by the compactor",
            m.requests.clone(),
        );
        r.register(
            "last_pass_seconds",
            "Duration of the last compaction pass",
            m.last_pass_seconds.clone(),
        );
        m
    }

    pub(crate) fn record_pass(&self, s: &PassStats, took: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.passes.get_or_create(&Outcome { outcome }).inc();
        for (c, v) in [
            (&self.blocks_written, s.blocks_written as u64),
            (&self.blocks_replaced, s.blocks_replaced as u64),
            (&self.segments_read, s.segments_read as u64),
            (&self.samples_written, s.samples_written),
            (&self.bytes_read, s.bytes_read),
            (&self.bytes_written, s.bytes_written),
            (&self.objects_deleted, s.objects_deleted as u64),
            (&self.lease_skips, s.lease_skips as u64),
            (&self.conflicts, s.conflicts as u64),
            (&self.requests, s.requests),
        ] {
            c.inc_by(v);
        }
        self.last_pass_seconds.set(took.as_secs_f64());
    }
}
