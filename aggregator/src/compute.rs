//! What one window of raw series becomes under a rule set at one storage
//! policy: a pure function, tested without a store.
//!
//! Time is cut into intervals of the policy's resolution, aligned to the
//! epoch. Each output sample carries the timestamp of the newest raw sample
//! of its interval, so outputs stay inside the window and `rate()` sees real
//! sample spacing.
//!
//! - Mapping rules keep a series (its labels unchanged; the 2nd, 3rd...
//!   aggregation as `name:agg`) with one sample per interval. `last` of a
//!   counter (a name ending `_total`, `_count`, `_sum` or `_bucket`) also
//!   keeps the two samples around every reset, so `increase()` and `rate()`
//!   over the downsampled series add up exactly as over the raw one.
//! - Roll-up rules reduce each source series to one value per interval
//!   (`last`, or the counter-aware `increase`/`per_second` of its raw
//!   samples when the pipeline starts with one), apply the pre-rollup
//!   transforms, combine the series of each group per interval with each
//!   aggregation, then apply the post-rollup transforms (`add` continues from
//!   `carry`, the group's last value in the previous window).
//!
//! Samples before the window (the caller reads `lookback` more) only serve as
//! the previous value of the first interval.

use std::collections::{BTreeMap, HashMap};

use storage::sample::is_stale_nan;
use storage::{Labels, METRIC_NAME, Sample, Series};

use crate::rules::{Aggregation, RuleSet, StoragePolicy, Transform, output_name};

/// A time window `[start, end)` in ms, a multiple of the resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The aligned window of length `len` holding `t`.
    pub fn of(t: i64, len: i64) -> Self {
        let start = t.div_euclid(len) * len;
        Self {
            start,
            end: start + len,
        }
    }
}

/// A point of an interval series: interval index, timestamp, value.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    k: i64,
    t: i64,
    v: f64,
}

/// Whether `last` treats the series as a counter (keeps reset samples).
pub fn is_counter(labels: &Labels) -> bool {
    labels.metric_name().is_some_and(|n| {
        ["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|s| n.ends_with(s))
    })
}

/// Whether any roll-up at `policy` continues a running sum across windows.
pub fn needs_carry(rules: &RuleSet, policy: &StoragePolicy) -> bool {
    rules.rollup.iter().any(|r| {
        r.targets
            .iter()
            .any(|t| t.policies.contains(policy) && t.post.contains(&Transform::Add))
    })
}

/// The output series of `rules` at `policy` for window `w`.
pub fn aggregate(
    rules: &RuleSet,
    policy: &StoragePolicy,
    w: Window,
    series: &[Series],
    carry: &HashMap<Labels, f64>,
) -> Vec<Series> {
    let res = policy.resolution_ms;
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    // Mapping rules, in order; the first rule producing a series wins.
    for s in series {
        if !rules.keeps_original(&s.labels) {
            continue;
        }
        let clean: Vec<Sample> = s
            .samples
            .iter()
            .copied()
            .filter(|x| !is_stale_nan(x.v))
            .collect();
        for r in rules
            .mapping
            .iter()
            .filter(|r| !r.drop && r.policies.contains(policy))
        {
            if !r.filter.matches(&s.labels) {
                continue;
            }
            let name = s.labels.metric_name().unwrap_or_default();
            for (i, agg) in r.aggregations.iter().enumerate() {
                let labels = s
                    .labels
                    .with(METRIC_NAME, &output_name(name, &r.aggregations, i));
                if out.contains_key(&labels) {
                    continue;
                }
                let samples = downsample(&clean, *agg, res, w, is_counter(&s.labels));
                if !samples.is_empty() {
                    out.insert(labels, samples);
                }
            }
        }
    }
    // Roll-up rules.
    for r in &rules.rollup {
        let members: Vec<&Series> = series
            .iter()
            .filter(|s| r.filter.matches(&s.labels))
            .collect();
        if members.is_empty() {
            continue;
        }
        for t in r.targets.iter().filter(|t| t.policies.contains(policy)) {
            // group labels -> interval -> (t, v) of each member
            let mut groups: BTreeMap<Labels, BTreeMap<i64, Vec<(i64, f64)>>> = BTreeMap::new();
            for s in &members {
                let clean: Vec<Sample> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|x| !is_stale_nan(x.v))
                    .collect();
                let pts = stage(&clean, res, &t.pre);
                let g = groups.entry(t.rollup.group_labels(&s.labels)).or_default();
                for p in pts.into_iter().filter(|p| in_window(p.k, res, w)) {
                    g.entry(p.k).or_default().push((p.t, p.v));
                }
            }
            for (group, intervals) in groups {
                let aggs = &t.rollup.aggregations;
                for (i, agg) in aggs.iter().enumerate() {
                    let labels = group.with(METRIC_NAME, &output_name(&t.rollup.new_name, aggs, i));
                    if out.contains_key(&labels) {
                        continue;
                    }
                    let mut pts: Vec<Point> = intervals
                        .iter()
                        .map(|(&k, vals)| Point {
                            k,
                            t: vals.iter().map(|p| p.0).max().unwrap_or(k * res),
                            v: agg.apply(vals),
                        })
                        .collect();
                    for tr in &t.post {
                        pts = transform(*tr, &pts, res, carry.get(&labels).copied());
                    }
                    let samples: Vec<Sample> = pts
                        .iter()
                        .filter(|p| in_window(p.k, res, w))
                        .map(|p| Sample::new(p.t, p.v))
                        .collect();
                    if !samples.is_empty() {
                        out.insert(labels, samples);
                    }
                }
            }
        }
    }
    out.into_iter()
        .map(|(labels, samples)| Series { labels, samples })
        .collect()
}

fn in_window(k: i64, res: i64, w: Window) -> bool {
    let t = k * res;
    w.start <= t && t < w.end
}

/// Samples (time order) split by interval: `(k, samples of interval k)`.
fn intervals(samples: &[Sample], res: i64) -> Vec<(i64, &[Sample])> {
    let mut out = Vec::new();
    let mut rest = samples;
    while let Some(first) = rest.first() {
        let k = first.t.div_euclid(res);
        let n = rest.partition_point(|x| x.t.div_euclid(res) == k);
        let (head, tail) = rest.split_at(n);
        out.push((k, head));
        rest = tail;
    }
    out
}

/// One series downsampled with `agg` inside `w`.
fn downsample(
    samples: &[Sample],
    agg: Aggregation,
    res: i64,
    w: Window,
    counter: bool,
) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let push = |s: Sample, out: &mut Vec<Sample>| {
        if out.last().is_none_or(|l| l.t < s.t) {
            out.push(s);
        }
    };
    let mut prev: Option<Sample> = None;
    for (k, group) in intervals(samples, res) {
        let Some(&last) = group.last() else { continue };
        if in_window(k, res, w) {
            match agg {
                Aggregation::Last if counter => {
                    let mut before = prev;
                    for &s in group {
                        if let Some(b) = before
                            && s.v < b.v
                        {
                            if b.t >= k * res {
                                push(b, &mut out);
                            }
                            push(s, &mut out);
                        }
                        before = Some(s);
                    }
                    push(last, &mut out);
                }
                Aggregation::Last => push(last, &mut out),
                a => {
                    let pts: Vec<(i64, f64)> = group.iter().map(|s| (s.t, s.v)).collect();
                    push(Sample::new(last.t, a.apply(&pts)), &mut out);
                }
            }
        }
        prev = Some(last);
    }
    out
}

/// A source series as one point per interval after the pre-rollup transforms.
fn stage(samples: &[Sample], res: i64, pre: &[Transform]) -> Vec<Point> {
    let (mut pts, rest) = match pre.split_first() {
        Some((tr @ (Transform::Increase | Transform::PerSecond), rest)) => (
            counter_intervals(samples, res, *tr == Transform::PerSecond),
            rest,
        ),
        _ => (
            intervals(samples, res)
                .into_iter()
                .filter_map(|(k, g)| g.last().map(|s| Point { k, t: s.t, v: s.v }))
                .collect(),
            pre,
        ),
    };
    for tr in rest {
        pts = transform(*tr, &pts, res, None);
    }
    pts
}

/// Per interval, the counter increase over its raw samples since the last
/// sample before it (a drop is a reset: the new value counts from zero), or
/// that increase per second.
fn counter_intervals(samples: &[Sample], res: i64, per_second: bool) -> Vec<Point> {
    let mut out = Vec::new();
    let mut prev: Option<Sample> = None;
    for (k, group) in intervals(samples, res) {
        let Some(&last) = group.last() else { continue };
        let anchor = prev.unwrap_or(group[0]);
        let mut before = prev;
        let mut inc = 0.0;
        for &s in group {
            if let Some(b) = before {
                inc += if s.v >= b.v { s.v - b.v } else { s.v };
            }
            before = Some(s);
        }
        prev = Some(last);
        if last.t == anchor.t {
            continue; // a series' very first sample: no increase known yet
        }
        let v = if per_second {
            inc / ((last.t - anchor.t) as f64 / 1000.0)
        } else {
            inc
        };
        out.push(Point { k, t: last.t, v });
    }
    out
}

/// A transform over interval points. `carry`: where `add` starts.
fn transform(tr: Transform, pts: &[Point], res: i64, carry: Option<f64>) -> Vec<Point> {
    let mut out = Vec::with_capacity(pts.len());
    match tr {
        Transform::Increase | Transform::PerSecond => {
            for w in pts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let inc = if b.v >= a.v { b.v - a.v } else { b.v };
                let v = if tr == Transform::PerSecond {
                    if b.t <= a.t {
                        continue;
                    }
                    inc / ((b.t - a.t) as f64 / 1000.0)
                } else {
                    inc
                };
                out.push(Point { v, ..b });
            }
        }
        Transform::Add => {
            let mut sum = carry.unwrap_or(0.0);
            for p in pts {
                sum += p.v;
                out.push(Point { v: sum, ..*p });
            }
        }
        Transform::Reset => {
            for p in pts {
                out.push(*p);
                let zero_at = (p.k + 1) * res - 1;
                if p.t < zero_at {
                    out.push(Point {
                        k: p.k,
                        t: zero_at,
                        v: 0.0,
                    });
                }
            }
        }
    }
    out
}
