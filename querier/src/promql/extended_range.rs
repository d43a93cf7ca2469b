//! The `anchored` and `smoothed` selector modifiers (Prometheus 3's extended
//! range selectors).
//!
//! * `anchored` (range selectors in `rate`, `increase`, `delta`, `changes`,
//!   `resets`): the window `(start, end]` also takes the anchor, the last
//!   sample at or before `start` within the lookback delta; `rate`,
//!   `increase` and `delta` are the plain difference between the first and
//!   last of those samples (counter resets corrected), never extrapolated.
//! * `smoothed` (range selectors in `rate`, `increase`, `delta`, and vector
//!   selectors): the values at `start` and `end` are interpolated linearly
//!   between the neighbouring samples (within the lookback delta; a counter
//!   that drops is taken to restart from zero), or carried from the nearest
//!   sample inside the window when there is no neighbour; the result is the
//!   difference of those two values, resets in between corrected.
//!
//! `anchored` needs at least one sample inside the window. Native histogram
//! samples follow the same rules with histogram arithmetic (a counter reset
//! detected as `rate` detects it). A window or lookback that mixes floats
//! and histograms, or exponential and custom buckets, gives nothing;
//! Prometheus also warns then, which Strata does not yet.

use std::sync::Arc;

use promql_parser::parser::{MatrixSelector, VectorSelector};
use storage::Sample;
use storage::sample::is_stale_nan;

use super::EvalError;
use super::eval::Evaluator;
use super::native_histogram::{FloatHistogram, ResetHint};
use super::range_functions::transitions;
use super::selectors::{SelSeries, duration_ms};
use super::syntax::SelectorMod;
use super::value::{Elem, HPoint, RangeSeries, Val};

/// Samples of `s` in `(from, to]`, stale markers left out.
fn between(s: &SelSeries, from: i64, to: i64) -> impl Iterator<Item = &Sample> {
    let a = s.samples.partition_point(|x| x.t <= from);
    let b = s.samples.partition_point(|x| x.t <= to);
    s.samples
        .get(a..b)
        .unwrap_or_default()
        .iter()
        .filter(|x| !is_stale_nan(x.v))
}

fn has_histograms_in(s: &SelSeries, from: i64, to: i64) -> bool {
    s.hists.iter().any(|h| h.t > from && h.t <= to)
}

/// The value at `t` on the line from `a` to `b` (`a.t <= t <= b.t`); for a
/// counter that drops, the line from zero at `a.t` to `b`.
fn interpolate(a: &Sample, b: &Sample, t: i64, counter: bool) -> f64 {
    if b.t <= a.t {
        return b.v;
    }
    let f = (t - a.t) as f64 / (b.t - a.t) as f64;
    if counter && b.v < a.v {
        b.v * f
    } else {
        a.v + (b.v - a.v) * f
    }
}

/// A range function over an anchored or smoothed range selector.
pub(crate) fn eval(
    ev: &Evaluator<'_>,
    ms: &MatrixSelector,
    m: SelectorMod,
    name: &str,
    ts: i64,
) -> Result<Val, EvalError> {
    let end = ev.ref_time(&ms.vs.at, &ms.vs.offset, ts);
    let range = duration_ms(&ms.range);
    let start = end.saturating_sub(range);
    let lookback = ev.lookback;
    let mut out = Vec::new();
    for s in ev.loaded.series(&ms.vs)? {
        let inside: Vec<Sample> = between(s, start, end).copied().collect();
        if has_histograms_in(
            s,
            start.saturating_sub(lookback),
            end.saturating_add(lookback),
        ) {
            // Annotations see the window with the sample before it, as the
            // function does.
            let mut window: Vec<HPoint> = hists_in(s, start.saturating_sub(lookback), start)
                .last()
                .cloned()
                .into_iter()
                .collect();
            window.extend_from_slice(hists_in(s, start, end));
            if m == SelectorMod::Smoothed {
                window.extend(
                    hists_in(s, end, end.saturating_add(lookback))
                        .first()
                        .cloned(),
                );
            }
            super::annotations::range_series(ev, name, ms, &s.labels, false, &inside, &window);
            let e = match m {
                SelectorMod::Smoothed if inside.is_empty() => {
                    smoothed_histograms(s, name, start, end, lookback)
                }
                // Floats and histograms mixed in a smoothed window: nothing.
                SelectorMod::Smoothed => None,
                SelectorMod::Anchored => {
                    anchored_histograms(s, name, &inside, start, end, lookback)
                }
            };
            out.extend(e);
            continue;
        }
        let before = between(s, start.saturating_sub(lookback), start).last();
        let v = match m {
            SelectorMod::Anchored => {
                if inside.is_empty() {
                    continue;
                }
                let mut pts: Vec<Sample> = before.copied().into_iter().collect();
                pts.extend_from_slice(&inside);
                anchored(name, &pts, range)
            }
            SelectorMod::Smoothed => {
                let after = between(s, end, end.saturating_add(lookback)).next();
                smoothed(name, before, &inside, after, start, end)
            }
        };
        if let Some(v) = v {
            out.push(Elem {
                labels: s.labels.clone(),
                v,
                h: None,
                drop_name: true,
            });
        }
    }
    Ok(Val::Vector(out))
}

/// `rate`, `increase`, `delta` over a smoothed window: the values at both
/// edges interpolated from the samples around them. Nothing when the window
/// holds no sample and the data lies only on one side of it.
fn smoothed(
    name: &str,
    before: Option<&Sample>,
    inside: &[Sample],
    after: Option<&Sample>,
    start: i64,
    end: i64,
) -> Option<f64> {
    let counter = name != "delta";
    // The neighbours of each edge: the last sample at or before it and the
    // first one after it.
    let left_next = inside.first().or(after);
    let right_prev = inside.last().or(before);
    let left = match (before, left_next) {
        (Some(b), Some(n)) => interpolate(b, n, start, counter),
        (None, _) => inside.first()?.v,
        (Some(_), None) => return None,
    };
    let right = match (right_prev, after) {
        (Some(p), Some(a)) => interpolate(p, a, end, counter),
        (_, None) => inside.last()?.v,
        (None, Some(_)) => return None,
    };
    let mut pts = Vec::with_capacity(inside.len() + 2);
    pts.push(left);
    pts.extend(inside.iter().map(|x| x.v));
    pts.push(right);
    let mut d = right - left;
    if counter {
        d += corrections(&pts);
    }
    Some(if name == "rate" {
        d / ((end - start) as f64 / 1000.0)
    } else {
        d
    })
}

/// Sum of the values before each drop (what a counter lost at its resets).
fn corrections(vals: &[f64]) -> f64 {
    vals.windows(2)
        .filter_map(|w| match w {
            [a, b] if b < a => Some(*a),
            _ => None,
        })
        .sum()
}

/// `pts` is the anchor (if any) and the samples inside the window.
fn anchored(name: &str, pts: &[Sample], range: i64) -> Option<f64> {
    let (first, last) = (pts.first()?, pts.last()?);
    let vals: Vec<f64> = pts.iter().map(|x| x.v).collect();
    Some(match name {
        "changes" => vals.windows(2).filter(|w| w[0] != w[1]).count() as f64,
        "resets" => vals.windows(2).filter(|w| w[1] < w[0]).count() as f64,
        "delta" => last.v - first.v,
        "increase" => last.v - first.v + corrections(&vals),
        "rate" => (last.v - first.v + corrections(&vals)) / (range as f64 / 1000.0),
        _ => return None,
    })
}

/// An anchored window over a series holding native histograms: `changes`
/// and `resets` over the mixed samples (a change of type counts as both);
/// `rate`, `increase`, `delta` when the anchor and the window's samples are
/// all histograms (the last minus the first, counter resets corrected).
fn anchored_histograms(
    s: &SelSeries,
    name: &str,
    inside: &[Sample],
    start: i64,
    end: i64,
    lookback: i64,
) -> Option<Elem> {
    let hin = |from: i64, to: i64| {
        let a = s.hists.partition_point(|x| x.t <= from);
        let b = s.hists.partition_point(|x| x.t <= to);
        s.hists.get(a..b).unwrap_or_default()
    };
    let hists: Vec<HPoint> = hin(start, end).to_vec();
    if hists.is_empty() && inside.is_empty() {
        return None;
    }
    // The anchor: the latest sample of either kind at or before the start.
    let fa = between(s, start.saturating_sub(lookback), start)
        .last()
        .copied();
    let ha = hin(start.saturating_sub(lookback), start).last().cloned();
    let mut rs = RangeSeries {
        labels: s.labels.clone(),
        samples: inside.to_vec(),
        hists,
        drop_name: true,
    };
    match (fa, ha) {
        (Some(f), Some(h)) if f.t >= h.t => rs.samples.insert(0, f),
        (_, Some(h)) => rs.hists.insert(0, h),
        (Some(f), None) => rs.samples.insert(0, f),
        (None, None) => {}
    }
    let elem = |v: f64, h: Option<FloatHistogram>| Elem {
        labels: s.labels.clone(),
        v,
        h: h.map(Arc::new),
        drop_name: true,
    };
    match name {
        "changes" | "resets" => Some(elem(transitions(&rs, name == "resets"), None)),
        _ if !rs.samples.is_empty() => None,
        _ => {
            let (first, last) = (rs.hists.first()?, rs.hists.last()?);
            let mut h = last.h.sub(&first.h).ok()?;
            if name != "delta" {
                for w in rs.hists.windows(2) {
                    if let [a, b] = w
                        && b.h.detect_reset(&a.h)
                    {
                        h = h.add(&a.h).ok()?;
                    }
                }
            }
            h.hint = ResetHint::Gauge;
            let mut h = h.compact();
            if name == "rate" {
                h = h.divide((end - start) as f64 / 1000.0);
            }
            Some(elem(0.0, Some(h)))
        }
    }
}

/// The histograms of `s` in `(from, to]`.
fn hists_in(s: &SelSeries, from: i64, to: i64) -> &[HPoint] {
    let a = s.hists.partition_point(|x| x.t <= from);
    let b = s.hists.partition_point(|x| x.t <= to);
    s.hists.get(a..b).unwrap_or_default()
}

/// The histogram at `t` between `a` and `b` (`a.t <= t <= b.t`), and whether
/// the line crossed a counter reset (then it runs from zero to `b`).
/// `None` when the two cannot be combined (exponential and custom buckets).
fn interpolate_h(a: &HPoint, b: &HPoint, t: i64, counter: bool) -> Option<(FloatHistogram, bool)> {
    if b.t <= a.t {
        return Some((b.h.as_ref().clone(), false));
    }
    if a.h.uses_custom_buckets() != b.h.uses_custom_buckets() {
        return None;
    }
    let f = (t - a.t) as f64 / (b.t - a.t) as f64;
    if counter && b.h.detect_reset(&a.h) {
        let mut h = b.h.as_ref().clone().scale(f);
        h.hint = ResetHint::Reset;
        return Some((h, true));
    }
    let mut h = a.h.add(&b.h.sub(&a.h).ok()?.scale(f)).ok()?;
    h.hint = ResetHint::NotReset;
    Some((h, false))
}

/// `rate`, `increase`, `delta` over a smoothed window of histogram samples
/// (see [`smoothed`]). A left edge interpolated across a reset already
/// starts from zero, so the step from it to the first sample is no reset;
/// with no sample inside the window there is nothing to correct.
fn smoothed_histograms(
    s: &SelSeries,
    name: &str,
    start: i64,
    end: i64,
    lookback: i64,
) -> Option<Elem> {
    let counter = name != "delta";
    let inside = hists_in(s, start, end);
    let before = hists_in(s, start.saturating_sub(lookback), start).last();
    let after = hists_in(s, end, end.saturating_add(lookback)).first();
    let left_next = inside.first().or(after);
    let right_prev = inside.last().or(before);
    let (left, left_reset) = match (before, left_next) {
        (Some(b), Some(n)) => interpolate_h(b, n, start, counter)?,
        (None, _) => (inside.first()?.h.as_ref().clone(), false),
        (Some(_), None) => return None,
    };
    let right = match (right_prev, after) {
        (Some(p), Some(a)) => interpolate_h(p, a, end, counter)?.0,
        (_, None) => inside.last()?.h.as_ref().clone(),
        (None, Some(_)) => return None,
    };
    let mut h = right.sub(&left).ok()?;
    if counter && !inside.is_empty() {
        let mut pts: Vec<&FloatHistogram> = Vec::with_capacity(inside.len() + 2);
        pts.push(&left);
        pts.extend(inside.iter().map(|p| p.h.as_ref()));
        pts.push(&right);
        for (i, w) in pts.windows(2).enumerate() {
            if i == 0 && left_reset {
                continue;
            }
            if let [a, b] = w
                && b.detect_reset(a)
            {
                h = h.add(a).ok()?;
            }
        }
    }
    h.hint = ResetHint::Gauge;
    let mut h = h.compact();
    if name == "rate" {
        h = h.divide((end - start) as f64 / 1000.0);
    }
    Some(Elem {
        labels: s.labels.clone(),
        v: 0.0,
        h: Some(Arc::new(h)),
        drop_name: true,
    })
}

/// A smoothed vector selector at `ts`: each series' value interpolated
/// between its last sample at or before the reference time and the next one.
pub(crate) fn smoothed_vector(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
    ts: i64,
) -> Result<Val, EvalError> {
    let t = ev.ref_time(&vs.at, &vs.offset, ts);
    let lookback = ev.lookback;
    let mut out = Vec::new();
    for s in ev.loaded.series(vs)? {
        if has_histograms_in(s, t.saturating_sub(lookback), t.saturating_add(lookback)) {
            // Floats next to the histograms: nothing to interpolate.
            if between(s, t.saturating_sub(lookback), t.saturating_add(lookback))
                .next()
                .is_some()
            {
                super::annotations::smoothed_point(ev, vs, &s.labels, true, None, None);
                continue;
            }
            let Some(prev) = hists_in(s, t.saturating_sub(lookback), t).last() else {
                continue;
            };
            let h = match hists_in(s, t, t.saturating_add(lookback)).first() {
                Some(next) => {
                    super::annotations::smoothed_point(
                        ev,
                        vs,
                        &s.labels,
                        false,
                        Some(&prev.h),
                        Some(&next.h),
                    );
                    let counter = prev.h.hint != ResetHint::Gauge;
                    match interpolate_h(prev, next, t, counter) {
                        Some((h, _)) => Arc::new(h),
                        None => continue,
                    }
                }
                None => Arc::clone(&prev.h),
            };
            out.push(Elem {
                labels: s.labels.clone(),
                v: 0.0,
                h: Some(h),
                drop_name: false,
            });
            continue;
        }
        // A stale marker as the latest sample ends the series.
        let a = s
            .samples
            .partition_point(|x| x.t <= t.saturating_sub(lookback));
        let b = s.samples.partition_point(|x| x.t <= t);
        let Some(prev) = s.samples.get(a..b).and_then(|w| w.last()) else {
            continue;
        };
        if is_stale_nan(prev.v) {
            continue;
        }
        let next = between(s, t, t.saturating_add(lookback)).next();
        let v = match next {
            Some(n) => interpolate(prev, n, t, false),
            None => prev.v,
        };
        out.push(Elem {
            labels: s.labels.clone(),
            v,
            h: None,
            drop_name: false,
        });
    }
    Ok(Val::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, v: f64) -> Sample {
        Sample::new(t, v)
    }

    #[test]
    fn anchored_is_the_plain_difference_with_resets_corrected() {
        // Anchor 3 at t=0, then 2 (a reset) at 60s, window (30s, 90s].
        let pts = [s(0, 3.0), s(60_000, 2.0)];
        assert_eq!(anchored("increase", &pts, 60_000), Some(2.0));
        assert_eq!(anchored("delta", &pts, 60_000), Some(-1.0));
        assert_eq!(anchored("rate", &pts, 60_000), Some(2.0 / 60.0));
        assert_eq!(anchored("resets", &pts, 60_000), Some(1.0));
        assert_eq!(anchored("changes", &pts, 60_000), Some(1.0));
        // One sample: no change.
        assert_eq!(anchored("increase", &pts[..1], 60_000), Some(0.0));
    }

    #[test]
    fn smoothed_interpolates_the_edges() {
        // 15s samples 1, 2, 3, ...; window (-55s, 5s]: left is the first
        // sample (nothing before), right is a third of the way to 2.
        let inside = [s(0, 1.0)];
        let after = s(15_000, 2.0);
        let v = smoothed("increase", None, &inside, Some(&after), -55_000, 5_000);
        assert!((v.unwrap_or(f64::NAN) - 1.0 / 3.0).abs() < 1e-12);
        // No sample inside, data on both sides across a counter reset:
        // the counter restarts from zero at the earlier sample.
        let (b, a) = (s(0, 100.0), s(15_000, 10.0));
        let v = smoothed("rate", Some(&b), &[], Some(&a), 2_000, 12_000);
        assert!((v.unwrap_or(f64::NAN) - (8.0 - 10.0 * 2.0 / 15.0) / 10.0).abs() < 1e-12);
        // Data only before (or only after) the window: nothing.
        assert_eq!(smoothed("rate", Some(&b), &[], None, 2_000, 12_000), None);
        assert_eq!(smoothed("rate", None, &[], Some(&a), 2_000, 12_000), None);
        // delta interpolates straight through a drop.
        let v = smoothed("delta", Some(&b), &[], Some(&a), 0, 7_500);
        assert!((v.unwrap_or(f64::NAN) - (55.0 - 100.0)).abs() < 1e-12);
    }

    #[test]
    fn interpolation_across_a_reset_starts_from_zero() {
        assert_eq!(interpolate(&s(0, 10.0), &s(10, 4.0), 5, true), 2.0);
        assert_eq!(interpolate(&s(0, 10.0), &s(10, 4.0), 5, false), 7.0);
    }
}
