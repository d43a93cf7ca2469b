//! OTLP exponential histograms as Prometheus native histograms (integer
//! counts, the prompb field layout `storage::histogram` stores).
//!
//! The two use the same bucket boundaries (base `2^(2^-scale)`) but number
//! them one apart: OTLP bucket `i` covers `(base^i, base^(i+1)]`, Prometheus
//! bucket `k` covers `(base^(k-1), base^k]`, so OTLP `i` is Prometheus
//! `i + 1`. Prometheus schemas stop at 8; a finer OTLP scale is reduced to 8
//! by merging `2^(scale-8)` neighbouring buckets (index `i >> (scale - 8)`).
//! Scales below -4 cannot be represented and are refused, as Prometheus
//! refuses them.
//!
//! The dense OTLP bucket array becomes spans and deltas the way Prometheus'
//! translator lays them out (so a histogram stores the same bytes either
//! way): a run of more than two empty buckets starts a new span, shorter
//! runs are written as zero buckets.

use opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use storage::histogram::{BucketSpan, Count, Histogram, ZeroCount};
use storage::sample::{STALE_NAN_BITS, stale_nan};

/// Prometheus' zero threshold for OTLP points that do not set one.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;
const MAX_SCHEMA: i32 = 8;
const MIN_SCHEMA: i32 = -4;

/// Converts one data point; `stale` marks it as a staleness marker (OTLP's
/// `no_recorded_value` flag). The error says why the point cannot be stored.
pub fn to_native(p: &ExponentialHistogramDataPoint, stale: bool) -> Result<Histogram, String> {
    if p.scale < MIN_SCHEMA {
        return Err(format!(
            "exponential histogram scale {} is below the smallest native histogram schema {MIN_SCHEMA}",
            p.scale
        ));
    }
    let (schema, scale_down) = if p.scale > MAX_SCHEMA {
        (MAX_SCHEMA, (p.scale - MAX_SCHEMA) as u32)
    } else {
        (p.scale, 0)
    };
    let (positive_spans, positive_deltas) = layout(p.positive.as_ref(), scale_down)?;
    let (negative_spans, negative_deltas) = layout(p.negative.as_ref(), scale_down)?;
    let zero_threshold = if p.zero_threshold > 0.0 {
        p.zero_threshold
    } else {
        DEFAULT_ZERO_THRESHOLD
    };
    let (count, sum) = if stale {
        // Prometheus' staleness marker for integer histograms.
        (STALE_NAN_BITS, stale_nan())
    } else {
        (p.count, p.sum.unwrap_or(0.0))
    };
    let h = Histogram {
        count: Some(Count::Int(count)),
        sum,
        schema,
        zero_threshold,
        zero_count: Some(ZeroCount::Int(p.zero_count)),
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        // Unknown: counter resets are found by the reader, as for Prometheus.
        reset_hint: 0,
        timestamp: super::translate::millis(p.time_unix_nano),
        ..Default::default()
    };
    h.validate()?;
    Ok(h)
}

/// Spans and deltas of one side of the histogram.
fn layout(
    buckets: Option<&Buckets>,
    scale_down: u32,
) -> Result<(Vec<BucketSpan>, Vec<i64>), String> {
    let Some(b) = buckets else {
        return Ok((Vec::new(), Vec::new()));
    };
    let counts = b
        .bucket_counts
        .iter()
        .map(|&c| i64::try_from(c).map_err(|_| format!("bucket count {c} is too large")))
        .collect::<Result<Vec<i64>, String>>()?;
    spans_and_deltas(&counts, i64::from(b.offset), scale_down)
}

/// The sparse layout of dense `counts` whose first bucket has OTLP index
/// `offset`, after merging `2^scale_down` buckets into one.
pub fn spans_and_deltas(
    counts: &[i64],
    offset: i64,
    scale_down: u32,
) -> Result<(Vec<BucketSpan>, Vec<i64>), String> {
    if counts.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let index = |i: i64| (i >> scale_down) + 1;
    let to_i32 = |v: i64| i32::try_from(v).map_err(|_| format!("bucket index {v} is out of range"));
    let mut out = Layout {
        spans: vec![BucketSpan {
            offset: to_i32(index(offset))?,
            length: 0,
        }],
        deltas: Vec::with_capacity(counts.len()),
        previous: 0,
    };
    // The bucket whose count is being gathered, and that count. While it is
    // zero, the next non-empty bucket takes its place without moving
    // `current` (so the gap below counts from the last bucket written).
    let mut current = index(offset);
    let mut pending: i64 = 0;
    for (i, &c) in counts.iter().enumerate() {
        let next = index(offset + i as i64);
        if next == current {
            pending = pending.checked_add(c).ok_or("bucket count overflows")?;
            continue;
        }
        if pending == 0 {
            pending = c;
            continue;
        }
        out.gap(to_i32(next - current - 1)?);
        out.append(pending);
        pending = c;
        current = next;
    }
    let last = index(offset + counts.len() as i64 - 1);
    out.gap(to_i32(last - current)?);
    out.append(pending);
    Ok((out.spans, out.deltas))
}

struct Layout {
    spans: Vec<BucketSpan>,
    deltas: Vec<i64>,
    previous: i64,
}

impl Layout {
    /// `empty` buckets before the next one: a new span past two, zeros else.
    fn gap(&mut self, empty: i32) {
        if empty > 2 {
            self.spans.push(BucketSpan {
                offset: empty,
                length: 0,
            });
        } else {
            for _ in 0..empty {
                self.append(0);
            }
        }
    }

    fn append(&mut self, count: i64) {
        if let Some(span) = self.spans.last_mut() {
            span.length += 1;
        }
        self.deltas.push(count - self.previous);
        self.previous = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    #[test]
    fn dense_buckets_become_spans_and_deltas() {
        type Case = (&'static [i64], i64, u32, Vec<BucketSpan>, Vec<i64>);
        let cases: Vec<Case> = vec![
            // Contiguous: OTLP index 0 is Prometheus index 1.
            (&[1, 2, 3], 0, 0, vec![span(1, 3)], vec![1, 1, 1]),
            // Up to two empty buckets are written as zeros.
            (&[1, 0, 0, 4], 0, 0, vec![span(1, 4)], vec![1, -1, 0, 4]),
            // Three or more start a new span.
            (
                &[1, 0, 0, 0, 4],
                0,
                0,
                vec![span(1, 1), span(3, 1)],
                vec![1, 3],
            ),
            // Leading empty buckets stay in the first span (as Prometheus).
            (&[0, 0, 5], -3, 0, vec![span(-2, 3)], vec![0, 0, 5]),
            (
                &[0, 0, 0, 0, 7],
                0,
                0,
                vec![span(1, 0), span(4, 1)],
                vec![7],
            ),
            // Merging pairs: OTLP 1 -> 0, 2 and 3 -> 1, 4 -> 2 (plus one).
            (&[1, 1, 1, 1], 1, 1, vec![span(1, 3)], vec![1, 1, -1]),
            (&[], 5, 0, vec![], vec![]),
        ];
        for (counts, offset, down, spans, deltas) in cases {
            let got = spans_and_deltas(counts, offset, down).expect("layout");
            assert_eq!(
                got,
                (spans, deltas),
                "{counts:?} offset {offset} down {down}"
            );
        }
    }

    #[test]
    fn counts_past_i64_are_refused() {
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![u64::MAX],
            }),
            ..Default::default()
        };
        let err = to_native(&p, false).expect_err("too large");
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn the_points_zero_threshold_is_kept_when_set() {
        let mut p = ExponentialHistogramDataPoint {
            scale: 1,
            zero_threshold: 0.001,
            ..Default::default()
        };
        assert_eq!(to_native(&p, false).expect("ok").zero_threshold, 0.001);
        p.zero_threshold = 0.0;
        assert_eq!(
            to_native(&p, false).expect("ok").zero_threshold,
            DEFAULT_ZERO_THRESHOLD
        );
    }
}
