//! Decoding and validating a remote-write 1.0 request, the ingest path's
//! per-request kernel: a request shaped like the ingest benchmark's
//! (`ingest_bench` defaults: 625 series of five labels, 3 samples each),
//! with the series cache warm as it is in steady state (every series seen
//! before) and cold (none seen).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};
use ingest::remote_write::{SeriesLimits, decode_validated};
use ingest::series_cache::SeriesCache;
use prost::Message;

fn body(series: usize, per_series: usize) -> Vec<u8> {
    let timeseries = (0..series)
        .map(|i| {
            let labels = storage::workload::benchmark_labels(i)
                .into_iter()
                .map(|(name, value)| Label {
                    name: name.to_string(),
                    value,
                })
                .collect();
            let samples = (0..per_series)
                .map(|j| Sample {
                    value: ((i * 31 + j * 17) % 1000) as f64 / 10.0,
                    timestamp: 1_700_000_000_000 + j as i64 * 1000,
                })
                .collect();
            TimeSeries {
                labels,
                samples,
                exemplars: Vec::new(),
            }
        })
        .collect();
    let req = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

fn decode(c: &mut Criterion) {
    let (series, per_series) = (625, 3);
    let body = body(series, per_series);
    let limits = SeriesLimits::default();
    let max = 64 << 20;
    let mut group = c.benchmark_group("remote_write_decode");
    group.throughput(Throughput::Elements((series * per_series) as u64));
    let warm = SeriesCache::new(100_000);
    decode_validated(&body, max, &limits, &warm).expect("valid request");
    group.bench_function("warm_cache", |b| {
        b.iter(|| decode_validated(&body, max, &limits, &warm).expect("valid request"))
    });
    let off = SeriesCache::new(0);
    group.bench_function("no_cache", |b| {
        b.iter(|| decode_validated(&body, max, &limits, &off).expect("valid request"))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
