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
//!   1 constant, decimal: u8 scale k, zigzag m               (v = m / 10^k)
//!   2 decimal:           u8 k, u8 order (1 delta, 2 delta-of-delta), varint gcd,
//!                        varint e, e x (varint gap, u64 LE bits),
//!                        zigzag m of the first regular value, then n-e-1 zigzag
//!                        steps of the regular values' m / gcd
//!   3 xor:               bit stream, XOR with the previous value's bits
//! ```
//!
//! A value `v` is decimal at scale `k` when `(m as f64) / 10^k` has exactly
//! the bits of `v` for an `i64` `m`: values that were decimal text (counters,
//! `float64(ticks)/100`, durations from nanoseconds) are, and since `10^k` is
//! exact and IEEE division correctly rounded, the decoder gets the same bits.
//! Values that are not (NaN payloads, the stale marker, -0.0, infinities,
//! full-precision ratios) are exceptions stored raw; when too many values are
//! exceptions the chunk falls back to XOR.

mod bits;
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
        match decimal(samples[0].v) {
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

/// `v` as `m / 10^k` with the smallest `k`, if it is exactly that.
fn decimal(v: f64) -> Option<(u8, i64)> {
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
        if from_decimal(m, k).to_bits() == bits {
            return Some((k, m));
        }
        // Past 2^50 the product can be off by one unit.
        if m.unsigned_abs() > 1 << 50 {
            for m in [m - 1, m + 1] {
                if from_decimal(m, k).to_bits() == bits {
                    return Some((k, m));
                }
            }
        }
    }
    None
}

/// The value of decimal `m` at scale `k`; encoder and decoder both use this,
/// so both get the same bits (division by `10^0 = 1` is exact).
#[inline]
fn from_decimal(m: i64, k: u8) -> f64 {
    m as f64 / POW10[k as usize]
}

/// Writes the decimal form of the values to `out` (which must be empty) and
/// returns the number of exceptions, or `None` when too many values are not
/// decimal.
fn encode_decimal(samples: &[Sample], out: &mut Vec<u8>) -> Option<usize> {
    let n = samples.len();
    let max_exceptions = n / 4;
    let mut scales = Vec::with_capacity(n);
    let mut ms = Vec::with_capacity(n);
    let mut per_scale = [0usize; MAX_SCALE as usize + 1];
    let mut not_decimal = 0;
    for s in samples {
        match decimal(s.v) {
            Some((k, m)) => {
                scales.push(k);
                ms.push(m);
                per_scale[k as usize] += 1;
            }
            None => {
                not_decimal += 1;
                if not_decimal > max_exceptions {
                    return None;
                }
                scales.push(NOT_DECIMAL);
                ms.push(0);
            }
        }
    }
    // Candidates: the smallest scale that leaves at most `max_exceptions`
    // exceptions, and the smallest that fits every decimal value.
    let mut low = None;
    let mut full = 0;
    let mut covered = 0;
    for (k, &c) in per_scale.iter().enumerate() {
        covered += c;
        if low.is_none() && covered + max_exceptions >= n {
            low = Some(k as u8);
        }
        if c > 0 {
            full = k as u8;
        }
    }
    let low = low?;
    let mut best = write_decimal(samples, &scales, &ms, low, out);
    if full != low {
        let mut other = Vec::new();
        let e = write_decimal(samples, &scales, &ms, full, &mut other);
        if other.len() < out.len() {
            *out = other;
            best = e;
        }
    }
    Some(best)
}

/// Writes the decimal form at scale `k`; values not decimal at `k` become
/// exceptions. Returns the number of exceptions.
fn write_decimal(samples: &[Sample], scales: &[u8], ms: &[i64], k: u8, out: &mut Vec<u8>) -> usize {
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
        let m = match scales[i] {
            ki if ki <= k => ms[i]
                .checked_mul(I64_POW10[(k - ki) as usize])
                .filter(|&m| from_decimal(m, k).to_bits() == s.v.to_bits()),
            _ => None,
        };
        match m {
            Some(m) => regular.push(m),
            None => exceptions.push((i, s.v.to_bits())),
        }
    }
    // Steps between regular values, divided by their common divisor.
    let mut g = 0u64;
    for w in regular.windows(2) {
        g = gcd(g, w[1].wrapping_sub(w[0]).unsigned_abs());
    }
    let g = if g == 0 || g > i64::MAX as u64 {
        1
    } else {
        g as i64
    };
    let q = |i: usize| regular[i].wrapping_sub(regular[i - 1]) / g;
    let mut cost_delta = 0;
    let mut cost_dod = 0;
    let mut prev = 0i64;
    for i in 1..regular.len() {
        let qi = q(i);
        cost_delta += varint_len(zigzag(qi));
        cost_dod += varint_len(zigzag(qi.wrapping_sub(prev)));
        prev = qi;
    }
    let order = if cost_dod < cost_delta {
        ORDER_DELTA_OF_DELTA
    } else {
        ORDER_DELTA
    };
    out.push(KIND_DECIMAL);
    out.push(k);
    out.push(order);
    put_varint(out, g as u64);
    put_varint(out, exceptions.len() as u64);
    let mut next = 0;
    for &(i, bits) in &exceptions {
        put_varint(out, (i - next) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        next = i + 1;
    }
    if let Some(&m0) = regular.first() {
        put_varint(out, zigzag(m0));
    }
    let mut prev = 0i64;
    for i in 1..regular.len() {
        let qi = q(i);
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

fn scale(k: u8) -> Result<u8, ChunkError> {
    if k > MAX_SCALE {
        return Err(ChunkError(format!("decimal scale {k} > {MAX_SCALE}")));
    }
    Ok(k)
}

fn decode_decimal(r: &mut Reader<'_>, values: &mut [Sample]) -> Result<(), ChunkError> {
    let n = values.len();
    let k = scale(r.u8()?)?;
    let order = r.u8()?;
    if order != ORDER_DELTA && order != ORDER_DELTA_OF_DELTA {
        return Err(ChunkError(format!("unknown decimal order {order}")));
    }
    let g = r.varint()?;
    if g == 0 || g > i64::MAX as u64 {
        return Err(ChunkError(format!("bad decimal step divisor {g}")));
    }
    let g = g as i64;
    let e = r.varint()?;
    if e > n as u64 {
        return Err(ChunkError(format!("{e} exceptions in {n} samples")));
    }
    // Exceptions first, at their positions; `true` marks them.
    let mut is_exception = Vec::new();
    if e > 0 {
        is_exception = vec![false; n];
        let mut next = 0u64;
        for _ in 0..e {
            let i = next.saturating_add(r.varint()?);
            if i >= n as u64 {
                return Err(ChunkError(format!("exception position {i} >= {n}")));
            }
            values[i as usize].v = f64::from_bits(r.u64_le()?);
            is_exception[i as usize] = true;
            next = i + 1;
        }
    }
    let mut m = 0i64;
    let mut q = 0i64;
    let mut first = true;
    for (i, s) in values.iter_mut().enumerate() {
        if e > 0 && is_exception[i] {
            continue;
        }
        let x = r.zigzag()?;
        if first {
            m = x;
            first = false;
        } else {
            q = if order == ORDER_DELTA {
                x
            } else {
                q.wrapping_add(x)
            };
            m = m.wrapping_add(q.wrapping_mul(g));
        }
        s.v = from_decimal(m, k);
    }
    r.expect_end()
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
