//! Byte and bit primitives of the chunk codec: LEB128 varints, zigzag, a
//! bounds-checked byte reader and an MSB-first bit writer/reader.

use super::ChunkError;

fn truncated() -> ChunkError {
    ChunkError("truncated".into())
}

/// Maps signed to unsigned so small magnitudes of either sign are small.
#[inline]
pub(super) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

#[inline]
pub(super) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `x` as a LEB128 varint (also the series index's, see
/// `segment_index`).
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Bytes `put_varint` writes for `x`.
#[inline]
pub(super) fn varint_len(x: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (x | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a LEB128 varint of at most 10 bytes whose value fits in 64 bits
/// from `buf` at `*pos` and moves `*pos` past it (also the series index's,
/// see `segment_index`).
#[inline]
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, &'static str> {
    // Fast path: one byte.
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u64::from(b));
    }
    let mut x = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or("truncated")?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err("varint overflows 64 bits");
        }
        x |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(x);
        }
        shift += 7;
        if shift > 63 {
            return Err("varint longer than 10 bytes");
        }
    }
}

/// A cursor over the chunk bytes; every read is bounds-checked.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(super) fn u8(&mut self) -> Result<u8, ChunkError> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn u64_le(&mut self) -> Result<u64, ChunkError> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or_else(truncated)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        self.pos += 8;
        Ok(u64::from_le_bytes(a))
    }

    /// A LEB128 varint of at most 10 bytes whose value fits in 64 bits.
    #[inline]
    pub(super) fn varint(&mut self) -> Result<u64, ChunkError> {
        read_varint(self.buf, &mut self.pos).map_err(|e| ChunkError(e.into()))
    }

    #[inline]
    pub(super) fn zigzag(&mut self) -> Result<i64, ChunkError> {
        Ok(unzigzag(self.varint()?))
    }

    pub(super) fn expect_end(&self) -> Result<(), ChunkError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(ChunkError(format!("{n} trailing bytes"))),
        }
    }
}

/// Appends bits most-significant first; the last byte is padded with zeros.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in the low end of `acc` (always < 8 between calls).
    n: u32,
}

impl<'a> BitWriter<'a> {
    pub(super) fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, acc: 0, n: 0 }
    }

    /// Writes the low `bits` bits of `v`, `bits <= 64`.
    #[inline]
    pub(super) fn write(&mut self, v: u64, bits: u32) {
        if bits > 32 {
            self.write_small(v >> 32, bits - 32);
            self.write_small(v & 0xffff_ffff, 32);
        } else {
            self.write_small(v, bits);
        }
    }

    #[inline]
    fn write_small(&mut self, v: u64, bits: u32) {
        debug_assert!(bits <= 32);
        if bits == 0 {
            return;
        }
        let v = v & ((1u64 << bits) - 1);
        self.acc = (self.acc << bits) | v;
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    pub(super) fn finish(self) {
        if self.n > 0 {
            self.out.push((self.acc << (8 - self.n)) as u8);
        }
    }
}

/// Reads what [`BitWriter`] wrote.
pub(super) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Valid bits are the top `n` bits of `acc`; the rest are zero.
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        if self.n == 0 {
            // Whole-word fast path.
            if let Some(b) = self.buf.get(self.pos..self.pos + 8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.acc = u64::from_be_bytes(a);
                self.pos += 8;
                self.n = 64;
                return;
            }
        }
        while self.n <= 56 {
            let Some(&b) = self.buf.get(self.pos) else {
                return;
            };
            self.acc |= u64::from(b) << (56 - self.n);
            self.n += 8;
            self.pos += 1;
        }
    }

    /// Reads `bits <= 32` bits.
    #[inline]
    fn read_small(&mut self, bits: u32) -> Result<u64, ChunkError> {
        if bits == 0 {
            return Ok(0);
        }
        if self.n < bits {
            self.refill();
            if self.n < bits {
                return Err(truncated());
            }
        }
        let v = self.acc >> (64 - bits);
        self.acc <<= bits;
        self.n -= bits;
        Ok(v)
    }

    /// Reads `bits <= 64` bits.
    #[inline]
    pub(super) fn read(&mut self, bits: u32) -> Result<u64, ChunkError> {
        if bits > 32 {
            let hi = self.read_small(bits - 32)?;
            let lo = self.read_small(32)?;
            Ok((hi << 32) | lo)
        } else {
            self.read_small(bits)
        }
    }

    #[inline]
    pub(super) fn bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.read_small(1)? == 1)
    }

    /// Succeeds when only zero padding of the last byte is left.
    pub(super) fn expect_end(&self) -> Result<(), ChunkError> {
        if self.pos != self.buf.len() || self.n >= 8 || self.acc != 0 {
            return Err(ChunkError("trailing bits after the values".into()));
        }
        Ok(())
    }
}
