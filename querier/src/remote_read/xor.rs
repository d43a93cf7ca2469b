//! Prometheus' XOR chunk encoding (the Gorilla float format of
//! `tsdb/chunkenc`), which remote read's `STREAMED_XOR_CHUNKS` answers carry.
//!
//! Layout, big-endian bit stream written most significant bit first:
//!
//! ```text
//! u16 sample count
//! sample 0: varint (zig-zag) timestamp, 64-bit float bits
//! sample 1: uvarint timestamp delta, value XOR-encoded against sample 0
//! sample n: delta-of-delta of the timestamp, value XOR-encoded
//!   delta of delta  0          -> '0'
//!                   in ±2^13   -> '10'   + 14 bits
//!                   in ±2^16   -> '110'  + 17 bits
//!                   in ±2^19   -> '1110' + 20 bits
//!                   otherwise  -> '1111' + 64 bits
//!   (a range n bits wide holds -(2^(n-1)-1) ..= 2^(n-1))
//!   value XOR with the previous value:
//!                   zero       -> '0'
//!                   fits the previous leading/trailing zero window
//!                              -> '10' + the window's bits
//!                   otherwise  -> '11' + 5 bits leading zeros (at most 31)
//!                                 + 6 bits significant bits (64 written as 0)
//!                                 + the significant bits
//! ```
//!
//! The last byte is padded with zero bits. Prometheus cuts chunks at 120
//! samples; [`encode_chunks`] does the same, so chunks of the same samples
//! are byte-for-byte what Prometheus writes.

use storage::Sample;

/// Samples per chunk, as Prometheus' head cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Appends bits, most significant first, to a byte vector.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Unused low bits of the last byte.
    free: u8,
}

impl BitWriter {
    fn bit(&mut self, one: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if one && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// The low `n` bits of `value` (n <= 64).
    fn bits(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }

    fn uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.byte(x as u8);
    }

    fn varint(&mut self, x: i64) {
        self.uvarint(((x << 1) ^ (x >> 63)) as u64);
    }
}

/// Builds one XOR chunk sample by sample.
#[derive(Clone, Debug)]
pub struct XorEncoder {
    w: BitWriter,
    count: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    /// Leading zeros of the current XOR window; 0xff before the first.
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        let mut w = BitWriter::default();
        w.bits(0, 16); // the sample count, filled in by `bytes`
        Self {
            w,
            count: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xff,
            trailing: 0,
        }
    }
}

impl XorEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a sample; timestamps must not decrease. At most `u16::MAX`
    /// samples fit the count; callers cut far earlier ([`SAMPLES_PER_CHUNK`]).
    pub fn append(&mut self, t: i64, v: f64) {
        let v = v.to_bits();
        match self.count {
            0 => {
                self.w.varint(t);
                self.w.bits(v, 64);
            }
            1 => {
                self.t_delta = t.wrapping_sub(self.t) as u64;
                self.w.uvarint(self.t_delta);
                self.write_value(v);
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.bit(false);
                } else if fits(dod, 14) {
                    self.w.bits(0b10, 2);
                    self.w.bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    self.w.bits(0b110, 3);
                    self.w.bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    self.w.bits(0b1110, 4);
                    self.w.bits(dod as u64, 20);
                } else {
                    self.w.bits(0b1111, 4);
                    self.w.bits(dod as u64, 64);
                }
                self.t_delta = t_delta;
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.count = self.count.saturating_add(1);
    }

    fn write_value(&mut self, v: u64) {
        let delta = v ^ self.v;
        if delta == 0 {
            self.w.bit(false);
            return;
        }
        self.w.bit(true);
        // At most 31 so the count fits 5 bits.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.w.bits(delta >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.w.bit(true);
        self.w.bits(u64::from(leading), 5);
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        // 64 significant bits do not fit 6 bits; 0 never occurs otherwise
        // (a zero XOR takes the branch above), so 0 stands for 64.
        self.w.bits(u64::from(sig) & 0x3f, 6);
        self.w.bits(delta >> trailing, sig);
    }

    /// The chunk as it stands: count header and bit stream.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.w.bytes.clone();
        out[..2].copy_from_slice(&self.count.to_be_bytes());
        out
    }
}

/// Whether `x` fits the `n`-bit delta-of-delta range.
fn fits(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// One encoded chunk with its time range.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedChunk {
    pub min_time_ms: i64,
    pub max_time_ms: i64,
    pub data: Vec<u8>,
}

/// Cuts time-ordered samples into chunks of at most [`SAMPLES_PER_CHUNK`].
pub fn encode_chunks(samples: &[Sample]) -> Vec<EncodedChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .filter_map(|part| {
            let (first, last) = (part.first()?, part.last()?);
            let mut e = XorEncoder::new();
            for s in part {
                e.append(s.t, s.v);
            }
            Some(EncodedChunk {
                min_time_ms: first.t,
                max_time_ms: last.t,
                data: e.bytes(),
            })
        })
        .collect()
}

/// Why a chunk could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XorError {
    #[error("xor chunk: shorter than its 2-byte header")]
    NoHeader,
    #[error("xor chunk: ends inside sample {index} of {count}")]
    Truncated { index: usize, count: usize },
    #[error("xor chunk: sample {index}: {reason}")]
    Invalid { index: usize, reason: &'static str },
}

/// Reads bits, most significant first.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            x |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Decodes a whole chunk. Never panics on malformed input.
pub fn decode(data: &[u8]) -> Result<Vec<Sample>, XorError> {
    let header = data.get(..2).ok_or(XorError::NoHeader)?;
    let count = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let mut r = BitReader { data, pos: 16 };
    let mut out = Vec::with_capacity(count);
    let (mut t, mut t_delta, mut v) = (0i64, 0u64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    let mut window = false;
    for index in 0..count {
        let truncated = XorError::Truncated { index, count };
        let invalid = |reason| XorError::Invalid { index, reason };
        match index {
            0 => {
                t = r.varint().ok_or(truncated.clone())?;
                v = r.bits(64).ok_or(truncated)?;
            }
            _ => {
                if index == 1 {
                    t_delta = r.uvarint().ok_or(truncated.clone())?;
                } else {
                    let mut ones = 0;
                    while ones < 4 && r.bit().ok_or(truncated.clone())? {
                        ones += 1;
                    }
                    let size = [0, 14, 17, 20, 64][ones];
                    let mut dod = r.bits(size).ok_or(truncated.clone())?;
                    if size != 64 && size != 0 && dod > 1 << (size - 1) {
                        dod = dod.wrapping_sub(1 << size);
                    }
                    t_delta = t_delta.wrapping_add(dod);
                }
                t = t.wrapping_add(t_delta as i64);
                if r.bit().ok_or(truncated.clone())? {
                    if r.bit().ok_or(truncated.clone())? {
                        leading = r.bits(5).ok_or(truncated.clone())? as u32;
                        let mut sig = r.bits(6).ok_or(truncated.clone())? as u32;
                        if sig == 0 {
                            sig = 64;
                        }
                        if leading + sig > 64 {
                            return Err(invalid("more than 64 significant bits"));
                        }
                        trailing = 64 - leading - sig;
                        window = true;
                    } else if !window {
                        return Err(invalid("reuses a window before one was set"));
                    }
                    let bits = r.bits(64 - leading - trailing).ok_or(truncated)?;
                    v ^= bits << trailing;
                }
            }
        }
        out.push(Sample::new(t, f64::from_bits(v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
