//! Metrics of the ingest tier, registered in the process registry and served
//! on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug)]
pub struct IngestMetrics {
    pub samples_received: Counter,
    pub series_rejected: Counter,
    pub segments_written: Counter,
    pub segment_bytes: Counter,
    pub sidecars_written: Counter,
    pub sidecar_bytes: Counter,
    pub histograms_received: Counter,
    pub exemplars_received: Counter,
    pub segment_put_failures: Counter,
    pub segment_put_seconds: Histogram,
    pub batch_requests: Histogram,
    pub lines_rejected: Counter,
    pub otlp_points_rejected: Counter,
    pub ha_deduplicated_samples: Counter,
    pub ha_elected_replica_changes: Counter,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            samples_received: Counter::default(),
            series_rejected: Counter::default(),
            segments_written: Counter::default(),
            segment_bytes: Counter::default(),
            sidecars_written: Counter::default(),
            sidecar_bytes: Counter::default(),
            histograms_received: Counter::default(),
            exemplars_received: Counter::default(),
            segment_put_failures: Counter::default(),
            segment_put_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            batch_requests: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            lines_rejected: Counter::default(),
            otlp_points_rejected: Counter::default(),
            ha_deduplicated_samples: Counter::default(),
            ha_elected_replica_changes: Counter::default(),
        }
    }
}

impl IngestMetrics {
    /// Creates the metrics and registers them under `strata_ingest_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("strata_ingest");
        r.register(
            "samples_received",
            "Samples accepted for storage",
            m.samples_received.clone(),
        );
        r.register(
            "series_rejected",
            "Series rejected by validation",
            m.series_rejected.clone(),
        );
        r.register(
            "segments_written",
            "Segments written to object storage",
            m.segments_written.clone(),
        );
        r.register(
            "segment_written_bytes",
            "Bytes of segments written to object storage",
            m.segment_bytes.clone(),
        );
        r.register(
            "sidecars_written",
            "Sidecars (histograms, exemplars, metadata) written to object storage",
            m.sidecars_written.clone(),
        );
        r.register(
            "sidecar_written_bytes",
            "Bytes of sidecars written to object storage",
            m.sidecar_bytes.clone(),
        );
        r.register(
            "histograms_received",
            "Native histogram samples accepted for storage",
            m.histograms_received.clone(),
        );
        r.register(
            "exemplars_received",
            "Exemplars accepted for storage",
            m.exemplars_received.clone(),
        );
        r.register(
            "segment_put_failures",
            "Segment or sidecar puts that failed (their requests got 5xx)",
            m.segment_put_failures.clone(),
        );
        r.register(
            "segment_put_seconds",
            "Time to encode and put one segment",
            m.segment_put_seconds.clone(),
        );
        r.register(
            "batch_requests",
            "Write requests committed together in one segment",
            m.batch_requests.clone(),
        );
        r.register(
            "lines_rejected",
            "InfluxDB line-protocol lines rejected as invalid",
            m.lines_rejected.clone(),
        );
        r.register(
            "otlp_points_rejected",
            "OTLP data points rejected (delta temporality, invalid names or values, limits)",
            m.otlp_points_rejected.clone(),
        );
        r.register(
            "ha_deduplicated_samples",
            "Samples dropped because they came from a non-elected HA replica",
            m.ha_deduplicated_samples.clone(),
        );
        r.register(
            "ha_elected_replica_changes",
            "HA replica elections (first elections and failovers) written by this ingester",
            m.ha_elected_replica_changes.clone(),
        );
        m
    }
}
