//! The chunk codec of blocks: one series' samples over a time span, encoded
//! losslessly into the bytes of a block's binary `chunk` column. The block's
//! Parquet writer compresses that column with zstd on top, so the encoding is
//! byte-aligned wherever it can be: zstd finds repeats in whole bytes (such as
//! the identical timestamp sections of series scraped from one target).
//!
//! Format version 1 (specified with diagrams in `docs/format/encodings.md`):
//!
//! ```text
//! u8 format (= 1) | varint n | timestamps | values
//! timestamps: zigzag t0, then n-1 zigzag delta-of-deltas (previous delta starts at 0)
//! values, by kind byte:
//!   0 constant, raw:     u64 LE bits
//!   1 constant, decimal: u8 scale, zigzag m  (scale k: v = m / 10^k; k | 0x80: v = m * 10^-k)
//!   2 decimal:           u8 scale, u8 order, varint divisor g, varint e,
//!                        e x (varint gap, u64 LE bits), then for the n-e regular
//!                        values, zigzag varints: order 0: m / g each;
//!                        order 1: m0, then (m[i] - m[i-1]) / g;
//!                        order 2: m0, then delta-of-delta of (m[i] - m[i-1]) / g
//!   3 xor:               bit stream, XOR with the previous value's bits
//! ```
//!
//! A value `v` is decimal at scale `k` when `(m as f64) / 10^k` has exactly
//! the bits of `v` for an `i64` `m`: values that were decimal text (counters,
//! `float64(ticks)/100`, durations from nanoseconds) are, and since `10^k` is
//! exact and IEEE division correctly rounded, the decoder gets the same bits.
//! Some exporters multiply instead (`float64(ms) * 0.001`); a scale byte with
//! bit 7 set means `(m as f64) * 10^-k`, with `10^-k` the nearest f64.
//! Values that are not (NaN payloads, the stale marker, -0.0, infinities,
//! full-precision ratios) are exceptions stored raw; when too many values are
//! exceptions the chunk falls back to XOR.

pub(crate) mod bits;
#[cfg(test)]
mod tests;

use bits::{BitReader, BitWriter, Reader, put_varint, varint_len, zigzag};

use crate::sample::Sample;

/// A chunk that cannot be decoded (corrupt or truncated bytes).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub String);

/// The first byte of every chunk.
pub const FORMAT_V1: u8 = 1;

const KIND_CONST_RAW: u8 = 0;
const KIND_CONST_DECIMAL: u8 = 1;
const KIND_DECIMAL: u8 = 2;
const KIND_XOR: u8 = 3;

const ORDER_VALUE: u8 = 0;
const ORDER_DELTA: u8 = 1;
const ORDER_DELTA_OF_DELTA: u8 = 2;

/// Largest decimal scale tried: `10^18` is exact in f64 and `m` stays in i64.
const MAX_SCALE: u8 = 18;
const POW10: [f64; MAX_SCALE as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];
const NOT_DECIMAL: u8 = u8::MAX;

/// Appends the encoding of `samples` (sorted by time, one sample per
/// timestamp) to `out`. Every value comes back bit for bit.
pub fn encode(samples: &[Sample], out: &mut Vec<u8>) {
    debug_assert!(
        samples.windows(2).all(|w| w[0].t < w[1].t),
        "chunk samples must be sorted by time with unique timestamps"
    );
    out.push(FORMAT_V1);
    put_varint(out, samples.len() as u64);
    if samples.is_empty() {
        return;
    }
    encode_times(samples, out);
    encode_values(samples, out);
}

/// Appends the samples of a chunk to `out`. Corrupt input is an error, never a
/// panic or an unbounded allocation; on error `out` is left as it was.
pub fn decode(bytes: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let start = out.len();
    let result = decode_into(bytes, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The number of samples a chunk holds, from its header alone (so a reader
/// can size the vector it decodes several chunks into before decoding).
/// Bounded as [`decode`] bounds it: never more than the chunk has bytes.
pub fn sample_count(bytes: &[u8]) -> Result<usize, ChunkError> {
    let mut r = Reader::new(bytes);
    let format = r.u8()?;
    if format != FORMAT_V1 {
        return Err(ChunkError(format!("unknown format {format}")));
    }
    let n = r.varint()?;
    if n > r.remaining() as u64 {
        return Err(ChunkError(format!(
            "{n} samples cannot fit in {} bytes",
            bytes.len()
        )));
    }
    Ok(n as usize)
}

fn encode_times(samples: &[Sample], out: &mut Vec<u8>) {
    let mut prev_t = samples[0].t;
    put_varint(out, zigzag(prev_t));
    let mut prev_d = 0i64;
    for s in &samples[1..] {
        let d = s.t.wrapping_sub(prev_t);
        put_varint(out, zigzag(d.wrapping_sub(prev_d)));
        prev_t = s.t;
        prev_d = d;
    }
}

fn encode_values(samples: &[Sample], out: &mut Vec<u8>) {
    let first = samples[0].v.to_bits();
    if samples.iter().all(|s| s.v.to_bits() == first) {
        match decimal(samples[0].v, 0).or_else(|| decimal(samples[0].v, MUL)) {
            Some((k, m)) => {
                out.push(KIND_CONST_DECIMAL);
                out.push(k);
                put_varint(out, zigzag(m));
            }
            None => {
                out.push(KIND_CONST_RAW);
                out.extend_from_slice(&first.to_le_bytes());
            }
        }
        return;
    }
    let mut dec = Vec::new();
    let Some(exceptions) = encode_decimal(samples, &mut dec) else {
        encode_xor(samples, out);
        return;
    };
    // Values with many digits (full-precision floats are decimal at scale
    // 16 or 17) may be smaller as XOR.
    if exceptions > 0 || dec.len() > 2 * samples.len() {
        let start = out.len();
        encode_xor(samples, out);
        if out.len() - start < dec.len() {
            return;
        }
        out.truncate(start);
    }
    out.extend_from_slice(&dec);
}

/// Bit 7 of a scale byte: the value is `m * 10^-k` (`10^-k` as the nearest
/// f64, the way `float64(ms) * 0.001` computes it) instead of `m / 10^k`.
const MUL: u8 = 0x80;
const NEG_POW10: [f64; MAX_SCALE as usize + 1] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18,
];

/// `v` as decimal `m` at the smallest scale `k` (`mode` is 0 or [`MUL`]),
/// if it is exactly that. Returns the scale byte (`k | mode`) and `m`.
fn decimal(v: f64, mode: u8) -> Option<(u8, i64)> {
    if !v.is_finite() {
        return None;
    }
    let bits = v.to_bits();
    for k in 0..=MAX_SCALE {
        let x = v * POW10[k as usize];
        // Larger scales only grow |x|; past 2^63 no i64 holds it.
        if x.abs() >= 9.2e18 {
            return None;
        }
        let m = x.round() as i64;
        let scale = k | mode;
        if from_decimal(m, scale).to_bits() == bits {
            return Some((scale, m));
        }
        // Past 2^50 the product can be off by one unit.
        if m.unsigned_abs() > 1 << 50 {
            for m in [m - 1, m + 1] {
                if from_decimal(m, scale).to_bits() == bits {
                    return Some((scale, m));
                }
            }
        }
    }
    None
}

/// The value of decimal `m` at `scale`; encoder and decoder both use this,
/// so both get the same bits (division by `10^0 = 1` is exact).
#[inline]
fn from_decimal(m: i64, scale: u8) -> f64 {
    let k = (scale & !MUL) as usize;
    if scale & MUL != 0 {
        m as f64 * NEG_POW10[k]
    } else {
        m as f64 / POW10[k]
    }
}

/// Per value: the smallest scale (or [`NOT_DECIMAL`]) and `m` in `mode`,
/// how many values each scale covers and how many are not decimal; `None`
/// once more than `max_not_decimal` are not.
struct Scales {
    scales: Vec<u8>,
    ms: Vec<i64>,
    per_scale: [usize; MAX_SCALE as usize + 1],
    not_decimal: usize,
}

fn scales(samples: &[Sample], mode: u8, max_not_decimal: usize) -> Option<Scales> {
    let n = samples.len();
    let mut r = Scales {
        scales: Vec::with_capacity(n),
        ms: Vec::with_capacity(n),
        per_scale: [0; MAX_SCALE as usize + 1],
        not_decimal: 0,
    };
    for s in samples {
        match decimal(s.v, mode) {
            Some((scale, m)) => {
                let k = scale & !MUL;
                r.scales.push(k);
                r.ms.push(m);
                r.per_scale[k as usize] += 1;
            }
            None => {
                r.not_decimal += 1;
                if r.not_decimal > max_not_decimal {
                    return None;
                }
                r.scales.push(NOT_DECIMAL);
                r.ms.push(0);
            }
        }
    }
    Some(r)
}

/// Writes the decimal form of the values to `out` (which must be empty) and
/// returns the number of exceptions, or `None` when too many values are not
/// decimal.
fn encode_decimal(samples: &[Sample], out: &mut Vec<u8>) -> Option<usize> {
    let n = samples.len();
    // Exceptions cost 9 bytes each; allowing up to half of the values
    // measured no smaller than a quarter.
    let max_exceptions = n / 4;
    let mut best: Option<usize> = None;
    // Division first (values parsed from decimal text); multiplication
    // (`float64(ms) * 0.001`) unless division fitted every value at a small
    // scale.
    for mode in [0, MUL] {
        let Some(sc) = scales(samples, mode, max_exceptions) else {
            continue;
        };
        // Candidates: the smallest scale that leaves at most `max_exceptions`
        // exceptions, and the smallest that fits every decimal value.
        let mut low = None;
        let mut full = 0;
        let mut covered = 0;
        for (k, &c) in sc.per_scale.iter().enumerate() {
            covered += c;
            if low.is_none() && covered + max_exceptions >= n {
                low = Some(k as u8);
            }
            if c > 0 {
                full = k as u8;
            }
        }
        let Some(low) = low else {
            continue;
        };
        let candidates = if low == full {
            &[low][..]
        } else {
            &[low, full][..]
        };
        for &k in candidates {
            let mut candidate = Vec::new();
            let e = write_decimal(samples, &sc, k | mode, &mut candidate);
            if best.is_none() || candidate.len() < out.len() {
                *out = candidate;
                best = Some(e);
            }
        }
        if mode == 0 && sc.not_decimal == 0 && full <= 9 {
            break;
        }
    }
    best
}

/// Writes the decimal form at `scale`; values not decimal at that scale
/// become exceptions. Returns the number of exceptions.
fn write_decimal(samples: &[Sample], sc: &Scales, scale: u8, out: &mut Vec<u8>) -> usize {
    let k = scale & !MUL;
    const I64_POW10: [i64; MAX_SCALE as usize + 1] = {
        let mut t = [1i64; MAX_SCALE as usize + 1];
        let mut i = 1;
        while i < t.len() {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    let mut regular = Vec::with_capacity(samples.len());
    let mut exceptions = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let m = match sc.scales[i] {
            ki if ki <= k => sc.ms[i]
                .checked_mul(I64_POW10[(k - ki) as usize])
                .filter(|&m| from_decimal(m, scale).to_bits() == s.v.to_bits()),
            _ => None,
        };
        match m {
            Some(m) => regular.push(m),
            None => exceptions.push((i, s.v.to_bits())),
        }
    }
    // Steps between regular values, divided by their common divisor; or the
    // values themselves, when they do not follow each other (durations).
    let divisor = |it: &mut dyn Iterator<Item = u64>| {
        let g = it.fold(0, gcd);
        if g == 0 || g > i64::MAX as u64 {
            1
        } else {
            g as i64
        }
    };
    let g_step = divisor(
        &mut regular
            .windows(2)
            .map(|w| w[1].wrapping_sub(w[0]).unsigned_abs()),
    );
    let g_value = divisor(&mut regular.iter().map(|m| m.unsigned_abs()));
    let steps = || regular.windows(2).map(|w| w[1].wrapping_sub(w[0]) / g_step);
    let mut cost_value = regular
        .first()
        .map_or(0, |&m| varint_len(zigzag(m / g_value)));
    let mut cost_delta = 0;
    let mut cost_dod = 0;
    let mut prev = 0i64;
    for (qi, &m) in steps().zip(&regular[1..]) {
        cost_value += varint_len(zigzag(m / g_value));
        cost_delta += varint_len(zigzag(qi));
        cost_dod += varint_len(zigzag(qi.wrapping_sub(prev)));
        prev = qi;
    }
    // Raw sizes stand in for sizes after zstd. Repeating steps compress
    // better than distinct values of the same length, so ties go to deltas.
    let first = regular.first().map_or(0, |&m| varint_len(zigzag(m)));
    let (cost_delta, cost_dod) = (cost_delta + first, cost_dod + first);
    let (order, g) = if cost_value < cost_delta.min(cost_dod) {
        (ORDER_VALUE, g_value)
    } else if cost_delta <= cost_dod {
        (ORDER_DELTA, g_step)
    } else {
        (ORDER_DELTA_OF_DELTA, g_step)
    };
    out.push(KIND_DECIMAL);
    out.push(scale);
    out.push(order);
    put_varint(out, g as u64);
    put_varint(out, exceptions.len() as u64);
    let mut next = 0;
    for &(i, bits) in &exceptions {
        put_varint(out, (i - next) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        next = i + 1;
    }
    if order == ORDER_VALUE {
        for &m in &regular {
            put_varint(out, zigzag(m / g));
        }
        return exceptions.len();
    }
    if let Some(&m0) = regular.first() {
        put_varint(out, zigzag(m0));
    }
    let mut prev = 0i64;
    for qi in steps() {
        let x = if order == ORDER_DELTA {
            qi
        } else {
            qi.wrapping_sub(prev)
        };
        put_varint(out, zigzag(x));
        prev = qi;
    }
    exceptions.len()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Gorilla-style: the first value raw, then per value `0` (same bits), `10`
/// and the XOR's bits inside the previous window, or `11`, 6 bits of leading
/// zeros, 6 bits of (significant bits - 1) and the significant bits.
fn encode_xor(samples: &[Sample], out: &mut Vec<u8>) {
    out.push(KIND_XOR);
    let mut w = BitWriter::new(out);
    let mut prev = samples[0].v.to_bits();
    w.write(prev, 64);
    let mut window: Option<(u32, u32)> = None;
    for s in &samples[1..] {
        let b = s.v.to_bits();
        let x = b ^ prev;
        prev = b;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let lead = x.leading_zeros();
        let trail = x.trailing_zeros();
        let sig = 64 - lead - trail;
        match window {
            // Reuse the window unless a new one is cheaper.
            Some((pl, pt)) if lead >= pl && trail >= pt && 64 - pl - pt <= sig + 12 => {
                w.write(0b10, 2);
                w.write(x >> pt, 64 - pl - pt);
            }
            _ => {
                w.write(0b11, 2);
                w.write(u64::from(lead), 6);
                w.write(u64::from(sig - 1), 6);
                w.write(x >> trail, sig);
                window = Some((lead, trail));
            }
        }
    }
    w.finish();
}

fn decode_into(bytes: &[u8], out: &mut Vec<Sample>, start: usize) -> Result<(), ChunkError> {
    let mut r = Reader::new(bytes);
    let format = r.u8()?;
    if format != FORMAT_V1 {
        return Err(ChunkError(format!("unknown format {format}")));
    }
    let n = r.varint()?;
    if n == 0 {
        return r.expect_end();
    }
    // Every timestamp takes at least one byte, which bounds the allocation.
    if n > r.remaining() as u64 {
        return Err(ChunkError(format!(
            "{n} samples cannot fit in {} bytes",
            bytes.len()
        )));
    }
    let n = n as usize;
    out.reserve(n);
    let mut t = r.zigzag()?;
    out.push(Sample::new(t, 0.0));
    let mut d = 0i64;
    for _ in 1..n {
        d = d.wrapping_add(r.zigzag()?);
        let next = t.wrapping_add(d);
        if next <= t {
            return Err(ChunkError("timestamps not increasing".into()));
        }
        t = next;
        out.push(Sample::new(t, 0.0));
    }
    let values = &mut out[start..];
    match r.u8()? {
        KIND_CONST_RAW => {
            let v = f64::from_bits(r.u64_le()?);
            values.iter_mut().for_each(|s| s.v = v);
            r.expect_end()
        }
        KIND_CONST_DECIMAL => {
            let k = scale(r.u8()?)?;
            let v = from_decimal(r.zigzag()?, k);
            values.iter_mut().for_each(|s| s.v = v);
            r.expect_end()
        }
        KIND_DECIMAL => decode_decimal(&mut r, values),
        KIND_XOR => decode_xor(r.rest(), values),
        kind => Err(ChunkError(format!("unknown value kind {kind}"))),
    }
}

fn scale(scale: u8) -> Result<u8, ChunkError> {
    if scale & !MUL > MAX_SCALE {
        return Err(ChunkError(format!("decimal scale {scale:#x}")));
    }
    Ok(scale)
}

fn decode_decimal(r: &mut Reader<'_>, values: &mut [Sample]) -> Result<(), ChunkError> {
    let n = values.len();
    let scale = scale(r.u8()?)?;
    let order = r.u8()?;
    let g = r.varint()?;
    if g == 0 || g > i64::MAX as u64 {
        return Err(ChunkError(format!("bad decimal divisor {g}")));
    }
    let g = g as i64;
    let e = r.varint()?;
    if e > n as u64 {
        return Err(ChunkError(format!("{e} exceptions in {n} samples")));
    }
    // Exceptions first, at their positions; `true` marks them.
    let mut is_exception = None;
    if e > 0 {
        let marks = is_exception.insert(vec![false; n]);
        let mut next = 0u64;
        for _ in 0..e {
            let i = next.saturating_add(r.varint()?);
            if i >= n as u64 {
                return Err(ChunkError(format!("exception position {i} >= {n}")));
            }
            values[i as usize].v = f64::from_bits(r.u64_le()?);
            marks[i as usize] = true;
            next = i + 1;
        }
    }
    let marks = is_exception.as_deref();
    let (mut m, mut q, mut first) = (0i64, 0i64, true);
    match order {
        ORDER_VALUE => fill(r, values, marks, scale, |x| x.wrapping_mul(g))?,
        ORDER_DELTA => fill(r, values, marks, scale, |x| {
            if first {
                first = false;
                m = x;
            } else {
                m = m.wrapping_add(x.wrapping_mul(g));
            }
            m
        })?,
        ORDER_DELTA_OF_DELTA => fill(r, values, marks, scale, |x| {
            if first {
                first = false;
                m = x;
            } else {
                q = q.wrapping_add(x);
                m = m.wrapping_add(q.wrapping_mul(g));
            }
            m
        })?,
        _ => return Err(ChunkError(format!("unknown decimal order {order}"))),
    }
    r.expect_end()
}

/// Sets every value not marked as an exception from the next varint, mapped
/// to the decimal integer by `next_m`.
#[inline(always)]
fn fill(
    r: &mut Reader<'_>,
    values: &mut [Sample],
    exceptions: Option<&[bool]>,
    scale: u8,
    mut next_m: impl FnMut(i64) -> i64,
) -> Result<(), ChunkError> {
    match exceptions {
        None => {
            for s in values.iter_mut() {
                s.v = from_decimal(next_m(r.zigzag()?), scale);
            }
        }
        Some(marks) => {
            for (s, &exception) in values.iter_mut().zip(marks) {
                if !exception {
                    s.v = from_decimal(next_m(r.zigzag()?), scale);
                }
            }
        }
    }
    Ok(())
}

fn decode_xor(bytes: &[u8], values: &mut [Sample]) -> Result<(), ChunkError> {
    let mut r = BitReader::new(bytes);
    let mut bits = r.read(64)?;
    values[0].v = f64::from_bits(bits);
    let mut window: Option<(u32, u32)> = None;
    for s in &mut values[1..] {
        if r.bit()? {
            if r.bit()? {
                let lead = r.read(6)? as u32;
                let sig = r.read(6)? as u32 + 1;
                if lead + sig > 64 {
                    return Err(ChunkError(format!("xor window {lead}+{sig} > 64 bits")));
                }
                window = Some((lead, sig));
            }
            let Some((lead, sig)) = window else {
                return Err(ChunkError("xor window reused before it was set".into()));
            };
            bits ^= r.read(sig)? << (64 - lead - sig);
        }
        s.v = f64::from_bits(bits);
    }
    r.expect_end()
}
