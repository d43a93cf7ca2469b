//! Native histograms as the engine computes with them: Prometheus'
//! `FloatHistogram` semantics (schema, zero bucket, count, sum, positive and
//! negative buckets, custom bounds, counter-reset hint) over a sparse bucket
//! layout.
//!
//! Buckets are kept as `(index, count)` pairs sorted by index instead of
//! Prometheus' spans: every operation PromQL needs (adding at the coarser
//! schema, widening the zero bucket, detecting resets, iterating with bounds)
//! is a merge of sorted pairs, and results compare the way Prometheus' test
//! runner compares them (after dropping empty buckets). Spans are produced
//! only at the edges ([`FloatHistogram::to_stored`]).

use std::cmp::Ordering;

use storage::histogram::{BucketSpan, CUSTOM_BUCKETS_SCHEMA, Count, Histogram, ZeroCount};

/// Prometheus' counter-reset hint (the stored `reset_hint` numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResetHint {
    #[default]
    Unknown,
    Reset,
    NotReset,
    Gauge,
}

impl ResetHint {
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => Self::Reset,
            2 => Self::NotReset,
            3 => Self::Gauge,
            _ => Self::Unknown,
        }
    }

    pub fn as_i32(self) -> i32 {
        match self {
            Self::Unknown => 0,
            Self::Reset => 1,
            Self::NotReset => 2,
            Self::Gauge => 3,
        }
    }
}

/// Why two histograms cannot be combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incompatible {
    /// One has exponential buckets, the other custom ones.
    MixedSchemas,
}

/// A histogram with float counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FloatHistogram {
    pub hint: ResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    /// `(bucket index, count)`, ascending by index.
    pub positive: Vec<(i32, f64)>,
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of the custom buckets (schema -53), without `+Inf`.
    pub custom_values: Vec<f64>,
}

/// One bucket with its bounds, as iterated for quantiles and output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

/// Upper bound of exponential bucket `idx` at `schema`: 2^(idx * 2^-schema).
pub fn exp_bound(idx: i32, schema: i32) -> f64 {
    if schema <= 0 {
        let e = i64::from(idx) << (-schema).min(62);
        if e > 1024 {
            return f64::INFINITY;
        }
        if e == 1024 {
            // The last finite bucket ends at the largest float.
            return f64::MAX;
        }
        return 2f64.powi(e as i32);
    }
    let per = 1i32 << schema;
    let frac = idx.rem_euclid(per);
    let exp = idx.div_euclid(per);
    let b = 2f64.powf(f64::from(frac) / f64::from(per)) * 2f64.powi(exp);
    if b.is_infinite() && i64::from(exp) * i64::from(per) + i64::from(frac) == 1024 * i64::from(per)
    {
        return f64::MAX;
    }
    b
}

/// The index a bucket has after reducing the resolution by `delta` steps.
fn reduce_index(idx: i32, delta: i32) -> i32 {
    ((idx - 1) >> delta) + 1
}

/// Merges sorted `(index, count)` lists with `f(a, b)` for equal indices.
fn merge(a: &[(i32, f64)], b: &[(i32, f64)], sign: f64) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                Ordering::Less => {
                    out.push(*x);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push((y.0, sign * y.1));
                    j += 1;
                }
                Ordering::Equal => {
                    out.push((x.0, x.1 + sign * y.1));
                    i += 1;
                    j += 1;
                }
            },
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (None, Some(y)) => {
                out.push((y.0, sign * y.1));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Sums counts of equal indices in a list sorted by index.
fn coalesce(v: Vec<(i32, f64)>) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(v.len());
    for (i, c) in v {
        match out.last_mut() {
            Some(last) if last.0 == i => last.1 += c,
            _ => out.push((i, c)),
        }
    }
    out
}

/// Decodes spans plus absolute counts (or deltas) into index pairs.
fn expand(spans: &[BucketSpan], counts: &[f64], deltas: &[i64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len().max(deltas.len()));
    let mut idx: i32 = 0;
    let mut k = 0usize;
    let mut abs: i64 = 0;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            let c = if counts.is_empty() {
                abs = abs.saturating_add(deltas.get(k).copied().unwrap_or(0));
                abs as f64
            } else {
                counts.get(k).copied().unwrap_or(0.0)
            };
            out.push((idx, c));
            idx = idx.saturating_add(1);
            k += 1;
        }
    }
    out
}

/// Spans (consecutive runs of indices) and counts of index pairs.
fn to_spans(b: &[(i32, f64)]) -> (Vec<BucketSpan>, Vec<f64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut next: Option<i32> = None;
    for &(i, _) in b {
        match (next, spans.last_mut()) {
            (Some(n), Some(last)) if n == i => last.length += 1,
            (Some(n), _) => spans.push(BucketSpan {
                offset: i - n,
                length: 1,
            }),
            (None, _) => spans.push(BucketSpan {
                offset: i,
                length: 1,
            }),
        }
        next = Some(i + 1);
    }
    (spans, b.iter().map(|x| x.1).collect())
}

impl FloatHistogram {
    /// Converts a stored histogram (integer or float counts).
    pub fn from_stored(h: &Histogram) -> Self {
        let count = match h.count {
            Some(Count::Int(n)) => n as f64,
            Some(Count::Float(f)) => f,
            None => 0.0,
        };
        let zero_count = match h.zero_count {
            Some(ZeroCount::Int(n)) => n as f64,
            Some(ZeroCount::Float(f)) => f,
            None => 0.0,
        };
        Self {
            hint: ResetHint::from_i32(h.reset_hint),
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count,
            count,
            sum: h.sum,
            positive: expand(&h.positive_spans, &h.positive_counts, &h.positive_deltas),
            negative: expand(&h.negative_spans, &h.negative_counts, &h.negative_deltas),
            custom_values: h.custom_values.clone(),
        }
    }

    /// The stored form (float counts) with timestamp `t`.
    pub fn to_stored(&self, t: i64) -> Histogram {
        let (positive_spans, positive_counts) = to_spans(&self.positive);
        let (negative_spans, negative_counts) = to_spans(&self.negative);
        Histogram {
            count: Some(Count::Float(self.count)),
            sum: self.sum,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: Some(ZeroCount::Float(self.zero_count)),
            negative_spans,
            negative_counts,
            positive_spans,
            positive_counts,
            reset_hint: self.hint.as_i32(),
            timestamp: t,
            custom_values: self.custom_values.clone(),
            ..Default::default()
        }
    }

    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Removes empty buckets (Prometheus' `Compact(0)`).
    pub fn compact(mut self) -> Self {
        self.positive.retain(|b| b.1 != 0.0);
        self.negative.retain(|b| b.1 != 0.0);
        self
    }

    /// Multiplies every count and the sum by `f`.
    pub fn scale(mut self, f: f64) -> Self {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 *= f;
        }
        self
    }

    /// Divides every count and the sum by `f` (so `h / 0` gives infinities
    /// and NaNs as dividing each float would).
    pub fn divide(mut self, f: f64) -> Self {
        self.count /= f;
        self.sum /= f;
        self.zero_count /= f;
        if f == 0.0 {
            // As Prometheus: division by zero leaves no buckets.
            self.positive.clear();
            self.negative.clear();
        }
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.1 /= f;
        }
        self
    }

    /// The same histogram at a lower resolution.
    pub fn to_schema(&self, target: i32) -> Self {
        if target >= self.schema || self.uses_custom_buckets() {
            return self.clone();
        }
        let delta = self.schema - target;
        let reduce = |b: &[(i32, f64)]| {
            coalesce(
                b.iter()
                    .map(|&(i, c)| (reduce_index(i, delta), c))
                    .collect(),
            )
        };
        Self {
            schema: target,
            positive: reduce(&self.positive),
            negative: reduce(&self.negative),
            ..self.clone()
        }
    }

    fn upper(&self, idx: i32) -> f64 {
        if self.uses_custom_buckets() {
            custom_bound(&self.custom_values, idx)
        } else {
            exp_bound(idx, self.schema)
        }
    }

    /// Zero count and threshold if the zero bucket were widened to at least
    /// `larger` (moved up to a bucket boundary when it falls inside a
    /// populated bucket).
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'outer: loop {
            let mut count = self.zero_count;
            for &(i, c) in &self.positive {
                let (lo, up) = (self.upper(i - 1), self.upper(i));
                if lo >= larger {
                    break;
                }
                count += c;
                if up > larger {
                    if c != 0.0 {
                        larger = up;
                    }
                    break;
                }
            }
            for &(i, c) in &self.negative {
                let (lo, up) = (-self.upper(i), -self.upper(i - 1));
                if up <= -larger {
                    break;
                }
                count += c;
                if lo < -larger {
                    if c != 0.0 {
                        larger = -lo;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, larger);
        }
    }

    /// Drops buckets that lie inside the zero bucket.
    fn trim_zero_bucket(&mut self) {
        let t = self.zero_threshold;
        let schema = self.schema;
        self.positive.retain(|&(i, _)| exp_bound(i, schema) > t);
        self.negative.retain(|&(i, _)| exp_bound(i, schema) > t);
    }

    /// Widens the narrower zero bucket of the two to the wider one; returns
    /// `other`'s zero count at the common threshold.
    fn reconcile_zero(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_count = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        while other_threshold != self.zero_threshold {
            if self.zero_threshold > other_threshold {
                (other_count, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_threshold);
                self.trim_zero_bucket();
            }
        }
        other_count
    }

    /// `self + sign * other`. Exponential histograms meet at the coarser
    /// schema and the wider zero bucket; custom-bucket histograms with
    /// different bounds meet at the bounds they share.
    pub fn add_signed(&self, other: &FloatHistogram, sign: f64) -> Result<Self, Incompatible> {
        match (self.uses_custom_buckets(), other.uses_custom_buckets()) {
            (true, true) => {
                let mut a = self.clone();
                let mut b = other.clone();
                if a.custom_values != b.custom_values {
                    let common: Vec<f64> = a
                        .custom_values
                        .iter()
                        .copied()
                        .filter(|v| b.custom_values.contains(v))
                        .collect();
                    a = a.with_custom_bounds(&common);
                    b = b.with_custom_bounds(&common);
                }
                a.count += sign * b.count;
                a.sum += sign * b.sum;
                a.positive = merge(&a.positive, &b.positive, sign);
                a.hint = combine_hints(self.hint, other.hint);
                Ok(a)
            }
            (false, false) => {
                let mut a = self.clone();
                let other_zero = a.reconcile_zero(other);
                a.zero_count += sign * other_zero;
                a.count += sign * other.count;
                a.sum += sign * other.sum;
                let schema = a.schema.min(other.schema);
                let mut a = a.to_schema(schema);
                let mut b = other.to_schema(schema);
                let t = a.zero_threshold;
                b.positive.retain(|&(i, _)| exp_bound(i, schema) > t);
                b.negative.retain(|&(i, _)| exp_bound(i, schema) > t);
                a.positive = merge(&a.positive, &b.positive, sign);
                a.negative = merge(&a.negative, &b.negative, sign);
                a.hint = combine_hints(self.hint, other.hint);
                Ok(a)
            }
            _ => Err(Incompatible::MixedSchemas),
        }
    }

    pub fn add(&self, other: &FloatHistogram) -> Result<Self, Incompatible> {
        self.add_signed(other, 1.0)
    }

    pub fn sub(&self, other: &FloatHistogram) -> Result<Self, Incompatible> {
        self.add_signed(other, -1.0)
    }

    /// Re-buckets a custom-bucket histogram onto `bounds` (a subset of its
    /// own): each bucket goes to the first new bucket whose upper bound is
    /// at or above its own.
    fn with_custom_bounds(&self, bounds: &[f64]) -> Self {
        let moved = self
            .positive
            .iter()
            .map(|&(i, c)| {
                let up = custom_bound(&self.custom_values, i);
                let j = bounds.partition_point(|b| *b < up);
                (j as i32, c)
            })
            .collect();
        Self {
            positive: coalesce(moved),
            custom_values: bounds.to_vec(),
            ..self.clone()
        }
    }

    /// Whether `self`, following `prev`, shows a counter reset (Prometheus'
    /// `DetectReset`).
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.hint {
            ResetHint::Reset => return true,
            ResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() {
            if self.custom_values != prev.custom_values {
                // Changed bounds are not a reset by themselves: compare the
                // counts at the bounds both share.
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|v| prev.custom_values.contains(v))
                    .collect();
                return bucket_reset(
                    &self.with_custom_bounds(&common).positive,
                    &prev.with_custom_bounds(&common).positive,
                );
            }
        } else if self.schema > prev.schema {
            return true;
        }
        if self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let (prev_zero, threshold) = prev.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero {
            return true;
        }
        let p = prev.to_schema(self.schema);
        let t = self.zero_threshold;
        let schema = self.schema;
        let custom = self.uses_custom_buckets();
        let outside = |v: &[(i32, f64)]| -> Vec<(i32, f64)> {
            v.iter()
                .copied()
                .filter(|&(i, _)| custom || exp_bound(i, schema) > t)
                .collect()
        };
        bucket_reset(&outside(&self.positive), &outside(&p.positive))
            || bucket_reset(&outside(&self.negative), &outside(&p.negative))
    }

    /// Every bucket from the lowest to the highest: negative buckets, the
    /// zero bucket (when populated), positive buckets.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        if self.uses_custom_buckets() {
            for &(i, c) in &self.positive {
                out.push(Bucket {
                    lower: custom_bound(&self.custom_values, i - 1),
                    upper: custom_bound(&self.custom_values, i),
                    lower_inclusive: i == 0,
                    upper_inclusive: true,
                    count: c,
                });
            }
            return out;
        }
        for &(i, c) in self.negative.iter().rev() {
            out.push(Bucket {
                lower: -exp_bound(i, self.schema),
                upper: -exp_bound(i - 1, self.schema),
                lower_inclusive: true,
                upper_inclusive: false,
                count: c,
            });
        }
        if self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for &(i, c) in &self.positive {
            out.push(Bucket {
                lower: exp_bound(i - 1, self.schema),
                upper: exp_bound(i, self.schema),
                lower_inclusive: false,
                upper_inclusive: true,
                count: c,
            });
        }
        out
    }

    /// Equality of two compacted histograms as Prometheus' `Equals` (exact).
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let a = self.clone().compact();
        let b = other.clone().compact();
        a.schema == b.schema
            && a.zero_threshold == b.zero_threshold
            && a.zero_count == b.zero_count
            && (a.count == b.count || (a.count.is_nan() && b.count.is_nan()))
            && (a.sum == b.sum || (a.sum.is_nan() && b.sum.is_nan()))
            && a.positive == b.positive
            && a.negative == b.negative
            && (!a.uses_custom_buckets() || a.custom_values == b.custom_values)
    }
}

/// Go's `%g` of a float (shortest digits; an exponent below 1e-4 and from
/// 1e21 on), as Prometheus prints histograms.
fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let e = format!("{v:e}");
        if let Some((m, x)) = e.split_once('e') {
            let (sign, digits) = match x.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', x),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
    }
    format!("{v}")
}

impl std::fmt::Display for FloatHistogram {
    /// Prometheus' `FloatHistogram.String()`:
    /// `{count:N, sum:S, [lo,hi):c, ...}` with the populated buckets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{count:{}, sum:{}", go_g(self.count), go_g(self.sum))?;
        for b in self.buckets().into_iter().filter(|b| b.count != 0.0) {
            write!(
                f,
                ", {}{},{}{}:{}",
                if b.lower_inclusive { '[' } else { '(' },
                go_g(b.lower),
                go_g(b.upper),
                if b.upper_inclusive { ']' } else { ')' },
                go_g(b.count)
            )?;
        }
        f.write_str("}")
    }
}

/// Kahan-Babuska-Neumaier step: adds `inc` to `sum` with compensation `c`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    if t.is_infinite() {
        (t, 0.0)
    } else if sum.abs() >= inc.abs() {
        (t, c + ((sum - t) + inc))
    } else {
        (t, c + ((inc - t) + sum))
    }
}

type Buckets = Vec<(i32, f64)>;

/// Compensated sum of bucket lists: returns the new sums and compensations.
fn kahan_buckets(
    sum: &[(i32, f64)],
    comp: &[(i32, f64)],
    inc: &[(i32, f64)],
) -> (Buckets, Buckets) {
    let value = |v: &[(i32, f64)], i: i32| {
        v.binary_search_by_key(&i, |x| x.0)
            .ok()
            .and_then(|k| v.get(k))
            .map_or(0.0, |x| x.1)
    };
    let mut idx: Vec<i32> = sum.iter().chain(comp).chain(inc).map(|x| x.0).collect();
    idx.sort_unstable();
    idx.dedup();
    let mut s_out = Vec::with_capacity(idx.len());
    let mut c_out = Vec::with_capacity(idx.len());
    for i in idx {
        let (s, c) = kahan_inc(value(inc, i), value(sum, i), value(comp, i));
        s_out.push((i, s));
        c_out.push((i, c));
    }
    (s_out, c_out)
}

/// A compensated running sum of histograms (Prometheus sums histograms with
/// Kahan summation too, so `1e100 + x - 1e100` keeps `x`).
#[derive(Clone, Debug, Default)]
pub struct HistogramSum {
    sum: Option<FloatHistogram>,
    comp: FloatHistogram,
}

impl HistogramSum {
    pub fn add(&mut self, h: &FloatHistogram) -> Result<(), Incompatible> {
        let Some(mut sum) = self.sum.take() else {
            self.sum = Some(h.clone());
            self.comp = FloatHistogram {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                custom_values: h.custom_values.clone(),
                ..FloatHistogram::default()
            };
            return Ok(());
        };
        let mut comp = std::mem::take(&mut self.comp);
        let mut other = h.clone();
        let other_zero;
        match (sum.uses_custom_buckets(), other.uses_custom_buckets()) {
            (true, true) => {
                if sum.custom_values != other.custom_values {
                    let common: Vec<f64> = sum
                        .custom_values
                        .iter()
                        .copied()
                        .filter(|v| other.custom_values.contains(v))
                        .collect();
                    sum = sum.with_custom_bounds(&common);
                    comp = comp.with_custom_bounds(&common);
                    other = other.with_custom_bounds(&common);
                }
                other_zero = 0.0;
            }
            (false, false) => {
                let schema = sum.schema.min(other.schema);
                sum = sum.to_schema(schema);
                comp = comp.to_schema(schema);
                other = other.to_schema(schema);
                other_zero = sum.reconcile_zero(&other);
                // The compensation follows the sum's zero bucket.
                let t = sum.zero_threshold;
                let inside = |b: &(i32, f64)| exp_bound(b.0, schema) <= t;
                comp.zero_count += comp
                    .positive
                    .iter()
                    .chain(&comp.negative)
                    .filter(|b| inside(b))
                    .map(|b| b.1)
                    .sum::<f64>();
                comp.positive.retain(|b| !inside(b));
                comp.negative.retain(|b| !inside(b));
                comp.zero_threshold = t;
                other.positive.retain(|b| !inside(b));
                other.negative.retain(|b| !inside(b));
            }
            _ => {
                self.sum = Some(sum);
                self.comp = comp;
                return Err(Incompatible::MixedSchemas);
            }
        }
        (sum.count, comp.count) = kahan_inc(other.count, sum.count, comp.count);
        (sum.sum, comp.sum) = kahan_inc(other.sum, sum.sum, comp.sum);
        (sum.zero_count, comp.zero_count) = kahan_inc(other_zero, sum.zero_count, comp.zero_count);
        (sum.positive, comp.positive) =
            kahan_buckets(&sum.positive, &comp.positive, &other.positive);
        (sum.negative, comp.negative) =
            kahan_buckets(&sum.negative, &comp.negative, &other.negative);
        sum.hint = combine_hints(sum.hint, other.hint);
        self.sum = Some(sum);
        self.comp = comp;
        Ok(())
    }

    /// The sum with its compensation applied; `None` when nothing was added.
    pub fn value(self) -> Option<FloatHistogram> {
        let mut s = self.sum?;
        let c = self.comp;
        s.count += c.count;
        s.sum += c.sum;
        s.zero_count += c.zero_count;
        s.positive = merge(&s.positive, &c.positive, 1.0);
        s.negative = merge(&s.negative, &c.negative, 1.0);
        Some(s)
    }
}

/// Upper bound of custom bucket `idx`: `-Inf` below the first, `+Inf` past
/// the last.
fn custom_bound(values: &[f64], idx: i32) -> f64 {
    if idx < 0 {
        return f64::NEG_INFINITY;
    }
    values.get(idx as usize).copied().unwrap_or(f64::INFINITY)
}

fn combine_hints(a: ResetHint, b: ResetHint) -> ResetHint {
    if a == ResetHint::Gauge || b == ResetHint::Gauge {
        ResetHint::Gauge
    } else {
        ResetHint::Unknown
    }
}

/// A populated bucket of `prev` that shrank or vanished in `cur`.
fn bucket_reset(cur: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(i, c) in prev {
        while cur.get(j).is_some_and(|x| x.0 < i) {
            j += 1;
        }
        match cur.get(j) {
            Some(&(ci, cc)) if ci == i => {
                if cc < c {
                    return true;
                }
            }
            _ => {
                if c != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// `histogram_quantile` over a native histogram: exponential interpolation
/// inside exponential buckets, linear inside the zero bucket and custom
/// buckets.
pub fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let all = h.buckets();
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket = Bucket {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
    };
    let mut visit = |b: &Bucket| {
        if b.count == 0.0 {
            return false;
        }
        bucket = *b;
        count += b.count;
        count >= rank
    };
    if forward {
        for b in &all {
            if visit(b) {
                break;
            }
        }
    } else {
        for b in all.iter().rev() {
            if visit(b) {
                break;
            }
        }
    }
    let custom = h.uses_custom_buckets();
    if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative.is_empty() && !h.positive.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive.is_empty() && !h.negative.is_empty() {
            bucket.upper = 0.0;
        }
    } else if custom {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return bucket.upper;
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        // The rank lies among the NaN observations (counted, but in no
        // bucket): the quantile is NaN.
        return if h.sum.is_nan() {
            f64::NAN
        } else {
            bucket.upper
        };
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / bucket.count;
    if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return bucket.lower + (bucket.upper - bucket.lower) * fraction;
    }
    let log_lower = bucket.lower.abs().log2();
    let log_upper = bucket.upper.abs().log2();
    if bucket.lower > 0.0 {
        return (log_lower + (log_upper - log_lower) * fraction).exp2();
    }
    -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
}

/// `histogram_fraction(lower, upper, h)`: the estimated share of
/// observations in `(lower, upper]`, interpolated as [`quantile`] does.
pub fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let custom = h.uses_custom_buckets();
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for mut b in h.buckets() {
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative.is_empty() && !h.positive.is_empty() {
                b.lower = 0.0;
            } else if h.positive.is_empty() && !h.negative.is_empty() {
                b.upper = 0.0;
            }
        }
        let linear = |v: f64| {
            // Observations of an infinitely wide bucket sit at its finite
            // end: all below a value inside it (first bucket), or none
            // (last bucket).
            if b.lower == f64::NEG_INFINITY {
                rank + b.count
            } else if b.upper == f64::INFINITY {
                rank
            } else {
                rank + b.count * (v - b.lower) / (b.upper - b.lower)
            }
        };
        let exponential = |v: f64| {
            let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - ((lv - lu) / (ll - lu))
            };
            rank + b.count * f
        };
        let interpolate = |v: f64| {
            if custom || zero_bucket {
                linear(v)
            } else {
                exponential(v)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    // NaN observations are in no bucket: they are never inside the range,
    // but still count in the total.
    let all = if h.sum.is_nan() {
        rank.min(h.count)
    } else {
        h.count
    };
    if !lower_set || lower_rank > h.count {
        lower_rank = all;
    }
    if !upper_set || upper_rank > h.count {
        upper_rank = all;
    }
    (upper_rank - lower_rank) / h.count
}

/// Estimated variance of the observations (`histogram_stdvar`): each
/// bucket's observations sit at its geometric mean (arithmetic for custom
/// buckets, zero in the zero bucket).
pub fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let mut sum = super::value::KahanSum::default();
    for b in h.buckets() {
        if b.count == 0.0 {
            continue;
        }
        let v = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let g = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -g } else { g }
        };
        let d = v - mean;
        sum.add(b.count * d * d);
    }
    sum.value() / h.count
}

/// What a trim keeps of one bucket: the kept count's fraction and the value
/// that stands for each kept observation (for the new sum).
struct Kept {
    frac: f64,
    rep: f64,
}

impl FloatHistogram {
    /// The trim operators: `upper` (`</ x`) keeps the observations below
    /// `x`, otherwise (`>/ x`) those above. A bucket that `x` cuts keeps the
    /// share `histogram_fraction` would give it (exponential interpolation
    /// in exponential buckets, linear in the zero bucket and custom
    /// buckets). The sum is re-estimated from the kept buckets (geometric
    /// mean of an exponential bucket's bounds, arithmetic midpoint
    /// otherwise) unless nothing is cut, when the histogram is unchanged.
    pub fn trim(&self, x: f64, upper: bool) -> FloatHistogram {
        let mut out = self.clone();
        let mut sum = 0.0;
        let mut count = 0.0;
        let mut cut = false;
        let mut apply = |c: &mut f64, k: Option<Kept>| {
            let kept = match k {
                Some(k) => k,
                None => Kept {
                    frac: 0.0,
                    rep: 0.0,
                },
            };
            if *c != 0.0 && kept.frac != 1.0 {
                cut = true;
            }
            *c *= kept.frac;
            count += *c;
            if *c != 0.0 {
                sum += *c * kept.rep;
            }
        };
        if self.uses_custom_buckets() {
            let first_upper = custom_bound(&self.custom_values, 0);
            for (i, c) in out.positive.iter_mut() {
                let lo = custom_bound(&self.custom_values, *i - 1);
                let hi = custom_bound(&self.custom_values, *i);
                apply(c, trim_custom(lo, hi, first_upper, x, upper));
            }
        } else {
            let has_pos = self.positive.iter().any(|b| b.1 != 0.0);
            let has_neg = self.negative.iter().any(|b| b.1 != 0.0);
            // The zero bucket leans to the side that has buckets.
            let zt = self.zero_threshold;
            let (zlo, zhi) = match (has_pos, has_neg) {
                (true, false) => (0.0, zt),
                (false, true) => (-zt, 0.0),
                _ => (-zt, zt),
            };
            apply(&mut out.zero_count, Some(trim_linear(zlo, zhi, x, upper)));
            for (i, c) in out.positive.iter_mut() {
                let a = exp_bound(*i - 1, self.schema);
                let b = exp_bound(*i, self.schema);
                apply(c, Some(trim_exponential(a, b, x, upper)));
            }
            for (i, c) in out.negative.iter_mut() {
                let a = exp_bound(*i - 1, self.schema);
                let b = exp_bound(*i, self.schema);
                // Values in [-b, -a): mirror the cut and keep the other side.
                let k = trim_exponential(a, b, -x, !upper);
                apply(
                    c,
                    Some(Kept {
                        frac: k.frac,
                        rep: -k.rep,
                    }),
                );
            }
        }
        if !cut {
            return self.clone();
        }
        out.count = count;
        out.sum = sum;
        out.compact()
    }
}

/// Share of the exponential bucket `(a, b]` (`0 < a < b`) below `x`
/// (`upper`) or above it.
fn trim_exponential(a: f64, b: f64, x: f64, upper: bool) -> Kept {
    let full = Kept {
        frac: 1.0,
        rep: (a * b).sqrt(),
    };
    let none = Kept {
        frac: 0.0,
        rep: 0.0,
    };
    if upper {
        if b <= x {
            full
        } else if a >= x {
            none
        } else {
            Kept {
                frac: (x / a).ln() / (b / a).ln(),
                rep: (a * x).sqrt(),
            }
        }
    } else if a >= x {
        full
    } else if b <= x {
        none
    } else {
        Kept {
            frac: (b / x).ln() / (b / a).ln(),
            rep: (x * b).sqrt(),
        }
    }
}

/// Share of `[lo, hi]` below `x` (`upper`) or above it, spread evenly.
fn trim_linear(lo: f64, hi: f64, x: f64, upper: bool) -> Kept {
    let mid = (lo + hi) / 2.0;
    let (from, to) = if upper {
        (lo, x.min(hi))
    } else {
        (x.max(lo), hi)
    };
    if to <= from {
        // Nothing kept, or a zero-width bucket that is kept whole.
        let whole = hi <= lo && if upper { lo <= x } else { hi >= x };
        return Kept {
            frac: if whole { 1.0 } else { 0.0 },
            rep: mid,
        };
    }
    if hi <= lo {
        return Kept {
            frac: 1.0,
            rep: mid,
        };
    }
    Kept {
        frac: (to - from) / (hi - lo),
        rep: (from + to) / 2.0,
    }
}

/// Share of the custom bucket `(lo, hi]`. The first bucket reaches down to
/// -Inf; when its upper bound is positive it counts as starting at 0, as in
/// `histogram_fraction`. A bucket with an infinite bound that `x` cuts is
/// kept whole or dropped whole (its observations stand at `x`), as
/// Prometheus does.
fn trim_custom(lo: f64, hi: f64, first_upper: f64, x: f64, upper: bool) -> Option<Kept> {
    let zero_based = lo == f64::NEG_INFINITY && hi == first_upper && hi.is_finite() && hi > 0.0;
    let rep_full = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (lo + hi) / 2.0,
        (false, true) if zero_based => hi / 2.0,
        (false, true) => hi,
        (true, false) => lo,
        (false, false) => 0.0,
    };
    let full = Some(Kept {
        frac: 1.0,
        rep: rep_full,
    });
    if upper {
        if hi <= x {
            return full;
        }
        if lo >= x || hi == f64::INFINITY {
            return None;
        }
        if lo == f64::NEG_INFINITY {
            if zero_based {
                return (x > 0.0).then(|| trim_linear(0.0, hi, x, true));
            }
            return Some(Kept { frac: 1.0, rep: x });
        }
        Some(trim_linear(lo, hi, x, true))
    } else {
        if lo >= x {
            return full;
        }
        if hi <= x || lo == f64::NEG_INFINITY && !(zero_based && x >= 0.0) {
            return None;
        }
        if lo == f64::NEG_INFINITY {
            return Some(trim_linear(0.0, hi, x, false));
        }
        if hi == f64::INFINITY {
            return Some(Kept { frac: 1.0, rep: x });
        }
        Some(trim_linear(lo, hi, x, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, count: f64, sum: f64, pos: &[(i32, f64)]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count,
            sum,
            positive: pos.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bounds_follow_the_schema() {
        assert_eq!(exp_bound(0, 0), 1.0);
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(-1, 0), 0.5);
        assert_eq!(exp_bound(1, -1), 4.0);
        assert!((exp_bound(1, 1) - std::f64::consts::SQRT_2).abs() < 1e-15);
        assert_eq!(exp_bound(2, 1), 2.0);
    }

    #[test]
    fn stored_round_trip_keeps_buckets() {
        let stored = Histogram {
            count: Some(Count::Int(6)),
            sum: 12.5,
            schema: 1,
            zero_count: Some(ZeroCount::Int(1)),
            positive_spans: vec![
                BucketSpan {
                    offset: -1,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, -1, 0],
            ..Default::default()
        };
        let f = FloatHistogram::from_stored(&stored);
        assert_eq!(f.positive, vec![(-1, 2.0), (0, 1.0), (4, 1.0)]);
        assert_eq!(f.count, 6.0);
        let back = FloatHistogram::from_stored(&f.to_stored(5));
        assert_eq!(back, f);
    }

    #[test]
    fn add_reduces_to_the_coarser_schema() {
        // Schema 0 buckets (1,2] and (2,4] fall into schema -1's (1,4].
        let a = h(-1, 1.0, 4.0, &[(1, 1.0)]);
        let b = h(0, 4.0, 4.0, &[(1, 2.0), (2, 2.0)]);
        let s = a.add(&b).expect("compatible");
        assert_eq!(s.schema, -1);
        assert_eq!(s.positive, vec![(1, 5.0)]);
        assert_eq!((s.count, s.sum), (5.0, 8.0));
        let d = s.sub(&a).expect("compatible");
        assert_eq!(d.positive, vec![(1, 4.0)]);
    }

    #[test]
    fn add_widens_the_zero_bucket() {
        let mut a = h(0, 2.0, 1.0, &[(-1, 1.0), (1, 1.0)]);
        a.zero_threshold = 0.001;
        let mut b = h(0, 1.0, 0.1, &[]);
        b.zero_threshold = 0.5;
        b.zero_count = 1.0;
        let s = a.add(&b).expect("compatible");
        // a's (0.25, 0.5] bucket is inside the wider zero bucket now.
        assert_eq!(s.zero_threshold, 0.5);
        assert_eq!(s.zero_count, 2.0);
        assert_eq!(s.positive, vec![(1, 1.0)]);
    }

    #[test]
    fn mixed_schemas_do_not_add() {
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, &[(0, 1.0)]);
        c.custom_values = vec![1.0];
        assert_eq!(c.add(&h(0, 1.0, 1.0, &[])), Err(Incompatible::MixedSchemas));
    }

    #[test]
    fn custom_bounds_are_reconciled_to_the_common_ones() {
        let mut a = h(
            CUSTOM_BUCKETS_SCHEMA,
            3.0,
            3.0,
            &[(0, 1.0), (1, 1.0), (2, 1.0)],
        );
        a.custom_values = vec![1.0, 2.0];
        let mut b = h(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, &[(0, 1.0)]);
        b.custom_values = vec![2.0];
        let s = a.add(&b).expect("compatible");
        assert_eq!(s.custom_values, vec![2.0]);
        assert_eq!(s.positive, vec![(0, 3.0), (1, 1.0)]);
    }

    #[test]
    fn resets_are_detected_per_bucket_and_count() {
        let a = h(0, 4.0, 4.0, &[(0, 1.0), (1, 3.0)]);
        let grown = h(0, 5.0, 5.0, &[(0, 2.0), (1, 3.0)]);
        assert!(!grown.detect_reset(&a));
        let shrunk = h(0, 5.0, 5.0, &[(0, 0.5), (1, 4.5)]);
        assert!(shrunk.detect_reset(&a));
        assert!(h(0, 3.0, 3.0, &[]).detect_reset(&a));
        let finer = h(1, 5.0, 5.0, &[]);
        assert!(finer.detect_reset(&a));
        // New custom bounds: compared where both have a bound.
        let mut c1 = h(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, &[(0, 1.0)]);
        c1.custom_values = vec![5.0];
        let mut c2 = c1.clone();
        c2.custom_values = vec![5.0, 10.0];
        assert!(!c2.detect_reset(&c1));
        let mut c3 = c2.clone();
        c3.positive = vec![(1, 1.0)];
        assert!(c3.detect_reset(&c1));
    }

    #[test]
    fn display_is_prometheus_string_form() {
        let mut x = h(0, 20.0, 10.0, &[(0, 1.0), (1, 2.0)]);
        x.negative = vec![(0, 1.0), (1, 2.0), (2, 0.0)];
        x.zero_count = 2.0;
        x.zero_threshold = 0.001;
        assert_eq!(
            x.to_string(),
            "{count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}"
        );
        assert_eq!(go_g(1e-5), "1e-05");
        assert_eq!(go_g(1e21), "1e+21");
    }

    #[test]
    fn sums_are_compensated() {
        let mut s = HistogramSum::default();
        for (sum, b) in [
            (3.1f64, 1.0f64),
            (1e100, 1e100),
            (-1e100, -1e100),
            (1.3, 2.0),
        ] {
            let mut x = h(0, 1.0, sum, &[(0, b.abs())]);
            x.positive[0].1 = b;
            s.add(&x).expect("compatible");
        }
        let v = s.value().expect("sum");
        assert!((v.sum - 4.4).abs() < 1e-12, "{}", v.sum);
        assert_eq!(v.count, 4.0);
        assert_eq!(v.positive, vec![(0, 3.0)]);
        let mut mixed = HistogramSum::default();
        mixed.add(&h(0, 1.0, 1.0, &[])).expect("first");
        let mut c = h(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, &[]);
        c.custom_values = vec![1.0];
        assert!(mixed.add(&c).is_err());
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        let x = h(0, 4.0, 5.0, &[(0, 1.0), (1, 2.0), (2, 1.0)]);
        assert!((quantile(0.5, &x) - std::f64::consts::SQRT_2).abs() < 1e-12);
        assert_eq!(quantile(1.5, &x), f64::INFINITY);
        assert!((fraction(1.0, 2.0, &x) - 0.5).abs() < 1e-12);
        assert_eq!(fraction(0.0, 8.0, &x), 1.0);
        assert!(quantile(0.5, &h(0, 0.0, 0.0, &[])).is_nan());
    }

    #[test]
    fn division_by_zero_and_infinite_custom_buckets() {
        let x = h(0, 2.0, 3.0, &[(1, 2.0)]).divide(0.0);
        assert_eq!((x.count, x.sum), (f64::INFINITY, f64::INFINITY));
        assert!(x.positive.is_empty());
        // (-Inf, -3]: 10, (-3, -2]: 2, (-2, +Inf]: 88.
        let mut c = h(
            CUSTOM_BUCKETS_SCHEMA,
            100.0,
            0.0,
            &[(0, 10.0), (1, 2.0), (2, 88.0)],
        );
        c.custom_values = vec![-3.0, -2.0];
        assert!((fraction(-4.0, -2.0, &c) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn variance_uses_bucket_means() {
        let x = h(0, 2.0, 3.0, &[(1, 2.0)]);
        // Both observations at sqrt(2), mean 1.5.
        let want = (std::f64::consts::SQRT_2 - 1.5).powi(2);
        assert!((variance(&x) - want).abs() < 1e-12);
    }

    #[test]
    fn compaction_drops_empty_buckets_and_equality_ignores_them() {
        let a = h(0, 1.0, 1.0, &[(0, 0.0), (1, 1.0)]);
        let b = h(0, 1.0, 1.0, &[(1, 1.0)]);
        assert!(a.equals(&b));
        assert_eq!(a.clone().compact().positive, vec![(1, 1.0)]);
        assert_eq!(a.scale(2.0).positive, vec![(0, 0.0), (1, 2.0)]);
    }
}
