//! Encoding a segment, the ingest path's largest single kernel: one group
//! commit's batch shaped like the ingest benchmark's (`ingest_bench`
//! defaults: 8 senders of 625 series, 3 samples per series per request, about
//! 2.6 requests per segment), so a change here can be judged without the
//! noise of a whole server run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storage::{Labels, Sample, Series, segment, workload};

/// `series` series of the benchmark's labels, `per_series` samples each.
fn batch(series: usize, per_series: usize) -> Vec<Series> {
    (0..series)
        .map(|i| {
            let labels = Labels::from_pairs(workload::benchmark_labels(i)).expect("valid labels");
            let samples = (0..per_series)
                .map(|j| Sample {
                    t: 1_700_000_000_000 + j as i64 * 1000,
                    // Half counters, half gauges, as in the benchmark.
                    v: if i % 2 == 0 {
                        (i * 7 + j * 3) as f64
                    } else {
                        ((i * 31 + j * 17) % 1000) as f64 / 10.0
                    },
                })
                .collect();
            Series { labels, samples }
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment_encode");
    for (series, per_series) in [(1600, 3), (5000, 12)] {
        let input = batch(series, per_series);
        // Series ids are computed once per label set (the series cache
        // hands out sets whose id is known), not per segment.
        for s in &input {
            s.labels.series_id();
        }
        let (bytes, _) = segment::encode(&input).expect("encode");
        eprintln!(
            "segment_encode/{series}x{per_series}: {} bytes ({:.1} per sample)",
            bytes.len(),
            bytes.len() as f64 / (series * per_series) as f64
        );
        group.throughput(Throughput::Elements((series * per_series) as u64));
        group.bench_function(format!("{series}x{per_series}"), |b| {
            b.iter(|| segment::encode(&input).expect("encode"))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
