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

use super::bits::{BitReader, BitWriter, XorField, fits_signed};

/// Samples per chunk, as Prometheus' head cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Builds one XOR chunk sample by sample.
#[derive(Clone, Debug)]
pub struct XorEncoder {
    w: BitWriter,
    count: u16,
    t: i64,
    t_delta: u64,
    v: XorField,
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
            v: XorField::new(0),
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
                self.v = XorField::new(v);
            }
            1 => {
                self.t_delta = t.wrapping_sub(self.t) as u64;
                self.w.uvarint(self.t_delta);
                self.v.write(&mut self.w, v);
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.bit(false);
                } else if fits_signed(dod, 14) {
                    self.w.bits(0b10, 2);
                    self.w.bits(dod as u64, 14);
                } else if fits_signed(dod, 17) {
                    self.w.bits(0b110, 3);
                    self.w.bits(dod as u64, 17);
                } else if fits_signed(dod, 20) {
                    self.w.bits(0b1110, 4);
                    self.w.bits(dod as u64, 20);
                } else {
                    self.w.bits(0b1111, 4);
                    self.w.bits(dod as u64, 64);
                }
                self.t_delta = t_delta;
                self.v.write(&mut self.w, v);
            }
        }
        self.t = t;
        self.count = self.count.saturating_add(1);
    }

    /// The chunk as it stands: count header and bit stream.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.w.bytes.clone();
        out[..2].copy_from_slice(&self.count.to_be_bytes());
        out
    }
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

/// Decodes a whole chunk. Never panics on malformed input.
pub fn decode(data: &[u8]) -> Result<Vec<Sample>, XorError> {
    let header = data.get(..2).ok_or(XorError::NoHeader)?;
    let count = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let mut r = BitReader::new(data, 2);
    let mut out = Vec::with_capacity(count);
    let (mut t, mut t_delta) = (0i64, 0u64);
    let mut v = XorField::new(0);
    for index in 0..count {
        let truncated = XorError::Truncated { index, count };
        match index {
            0 => {
                t = r.varint().ok_or(truncated.clone())?;
                v = XorField::new(r.bits(64).ok_or(truncated)?);
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
                v.read(&mut r)
                    .map_err(|reason| XorError::Invalid { index, reason })?
                    .ok_or(truncated)?;
            }
        }
        out.push(Sample::new(t, f64::from_bits(v.value)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
