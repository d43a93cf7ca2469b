//! `load_with_nhcb`: the native histograms with custom buckets (NHCB) that
//! Prometheus derives from classic histogram series (`foo_bucket{le=..}`,
//! `foo_count`, `foo_sum` become `foo`), point by point.

use std::collections::BTreeMap;

use storage::histogram::CUSTOM_BUCKETS_SCHEMA;
use storage::{Labels, METRIC_NAME};

use super::parser::{Load, Point, parse_number};
use crate::promql::native_histogram::FloatHistogram;

/// One classic histogram being gathered: cumulative bucket series by upper
/// bound, and the count and sum series.
#[derive(Default)]
struct Classic<'a> {
    buckets: Vec<(f64, &'a [Point])>,
    count: Option<&'a [Point]>,
    sum: Option<&'a [Point]>,
}

/// The labels of the NHCB a classic series belongs to, and what it is.
fn classify(l: &Labels) -> Option<(Labels, &'static str)> {
    let name = l.metric_name()?;
    let (base, kind) = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s).map(|b| (b, *s)))?;
    if kind == "_bucket" && l.get("le").is_none() {
        return None;
    }
    Some((l.without("le").with(METRIC_NAME, base), kind))
}

fn float_at(points: &[Point], i: usize) -> Option<f64> {
    match points.get(i) {
        Some(Point::Float(v)) if !storage::sample::is_stale_nan(*v) => Some(*v),
        _ => None,
    }
}

/// The NHCB series a `load_with_nhcb` adds, with their samples as
/// (position, histogram); positions count load steps.
pub fn convert(load: &Load) -> Vec<(Labels, Vec<(usize, FloatHistogram)>)> {
    let mut groups: BTreeMap<Labels, Classic<'_>> = BTreeMap::new();
    for def in &load.series {
        let Some((key, kind)) = classify(&def.labels) else {
            continue;
        };
        let g = groups.entry(key).or_default();
        match kind {
            "_bucket" => {
                let le = def.labels.get("le").and_then(parse_number);
                if let Some(le) = le {
                    g.buckets.push((le, &def.points));
                }
            }
            "_count" => g.count = Some(&def.points),
            _ => g.sum = Some(&def.points),
        }
    }
    let mut out = Vec::new();
    for (labels, mut g) in groups {
        if g.buckets.is_empty() {
            continue;
        }
        // Stable: of two spellings of one bound (`1` and `1.0`) the first
        // defined stays.
        g.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        g.buckets.dedup_by(|b, a| a.0 == b.0);
        let len = g.buckets.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let mut samples = Vec::new();
        for i in 0..len {
            let present: Vec<(f64, f64)> = g
                .buckets
                .iter()
                .filter_map(|(le, pts)| float_at(pts, i).map(|v| (*le, v)))
                .collect();
            if present.is_empty() {
                continue;
            }
            let custom_values: Vec<f64> = present
                .iter()
                .map(|b| b.0)
                .filter(|le| le.is_finite())
                .collect();
            let count = g.count.and_then(|c| float_at(c, i));
            let inf = present
                .iter()
                .find(|b| b.0 == f64::INFINITY)
                .map(|b| b.1)
                .or(count)
                .unwrap_or_else(|| present.last().map_or(0.0, |b| b.1));
            let mut positive = Vec::with_capacity(present.len() + 1);
            let mut prev = 0.0;
            let mut idx = 0i32;
            for (le, cum) in &present {
                if le.is_infinite() {
                    continue;
                }
                positive.push((idx, cum - prev));
                prev = *cum;
                idx += 1;
            }
            positive.push((idx, inf - prev));
            samples.push((
                i,
                FloatHistogram {
                    schema: CUSTOM_BUCKETS_SCHEMA,
                    count: count.unwrap_or(inf),
                    sum: g.sum.and_then(|s| float_at(s, i)).unwrap_or(0.0),
                    positive,
                    custom_values,
                    ..FloatHistogram::default()
                },
            ));
        }
        if !samples.is_empty() {
            out.push((labels, samples));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promqltest::parser::{Cmd, parse_script};

    #[test]
    fn classic_series_become_custom_bucket_histograms() {
        let cmds = parse_script(
            "load_with_nhcb 5m\n  h_bucket{le=\"1\", a=\"x\"} 1 2\n  h_bucket{le=\"+Inf\", a=\"x\"} 3 5\n  h_bucket{le=\"0.5\", a=\"x\"} 0 1\n  h_count{a=\"x\"} 3 5\n  h_sum{a=\"x\"} 4 7\n  other 1\n",
        );
        let Some(Cmd::Load(load)) = cmds.first() else {
            panic!("{cmds:?}")
        };
        let got = convert(load);
        assert_eq!(got.len(), 1);
        let (labels, samples) = &got[0];
        assert_eq!(labels.metric_name(), Some("h"));
        assert_eq!(labels.get("a"), Some("x"));
        assert_eq!(samples.len(), 2);
        let h = &samples[1].1;
        assert_eq!(h.custom_values, vec![0.5, 1.0]);
        assert_eq!(h.positive, vec![(0, 1.0), (1, 1.0), (2, 3.0)]);
        assert_eq!((h.count, h.sum), (5.0, 7.0));
    }
}
