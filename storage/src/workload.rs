//! The series of the ingest benchmark (`tests/src/bin/ingest_bench.rs`), in
//! one place so that the criterion benches of the ingest path
//! (`storage/benches/segment.rs`, `ingest/benches/remote_write.rs`) measure
//! the same label sets as the benchmark they stand in for.

/// Labels of series `i`, sorted by name: 50 metric names, 100 instances of
/// 50 series each, 3 regions, one job, and a label unique per series (so
/// that `count_over_time`, which drops the metric name, still gives
/// distinct series).
pub fn benchmark_labels(i: usize) -> [(&'static str, String); 5] {
    [
        ("__name__", format!("bench_metric_{}", i % 50)),
        ("instance", format!("host-{:04}.example.com:9100", i / 50)),
        ("job", "bench".to_string()),
        ("region", format!("region-{}", i % 3)),
        ("series", i.to_string()),
    ]
}
