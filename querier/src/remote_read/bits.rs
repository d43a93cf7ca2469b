//! Bit streams of Prometheus' chunk encodings (`tsdb/chunkenc`): bits are
//! written and read most significant first, the last byte padded with
//! zeros. Shared by the XOR chunk ([`super::xor`]) and the native histogram
//! chunks ([`super::histogram_chunk`]), with the variable-width integers of
//! the histogram chunks:
//!
//! ```text
//! varbit int / uint     0                    -> '0'
//!   (int: value range   -3..=4,  uint: <= 7) -> '10'       + 3 bits
//!                       -31..=32,      <= 63 -> '110'      + 6 bits
//!                       -255..=256             '1110'     + 9 bits
//!                       -2047..=2048           '11110'    + 12 bits
//!                       -131071..=131072       '111110'   + 18 bits
//!                       -16777215..=16777216   '1111110'  + 25 bits
//!                       56-bit range           '11111110' + 56 bits
//!                       otherwise              '11111111' + 64 bits
//! ```
//!
//! A signed range `n` bits wide holds `-(2^(n-1)-1) ..= 2^(n-1)`; a read
//! value above `2^(n-1)` is negative (two's complement in `n` bits).

/// Payload widths of the varbit classes after their '1…10' prefixes.
const VARBIT_WIDTHS: [u32; 8] = [3, 6, 9, 12, 18, 25, 56, 64];

/// Appends bits, most significant first, to a byte vector.
#[derive(Clone, Debug, Default)]
pub(super) struct BitWriter {
    pub bytes: Vec<u8>,
    /// Unused low bits of the last byte.
    free: u8,
}

impl BitWriter {
    /// Bits written so far.
    #[cfg(test)]
    pub fn bit_len(&self) -> usize {
        self.bytes.len() * 8 - usize::from(self.free)
    }

    pub fn bit(&mut self, one: bool) {
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
    pub fn bits(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.bit((value >> i) & 1 == 1);
        }
    }

    pub fn byte(&mut self, b: u8) {
        self.bits(u64::from(b), 8);
    }

    pub fn uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.byte(x as u8);
    }

    pub fn varint(&mut self, x: i64) {
        self.uvarint(((x << 1) ^ (x >> 63)) as u64);
    }

    /// The prefix of varbit class `class` (0-based: `class + 1` ones, then a
    /// zero unless it is the last class).
    fn varbit_prefix(&mut self, class: usize) {
        for _ in 0..=class {
            self.bit(true);
        }
        if class + 1 < VARBIT_WIDTHS.len() {
            self.bit(false);
        }
    }

    pub fn varbit_int(&mut self, v: i64) {
        if v == 0 {
            self.bit(false);
            return;
        }
        let class = VARBIT_WIDTHS
            .iter()
            .position(|&n| n == 64 || fits_signed(v, n))
            .unwrap_or(VARBIT_WIDTHS.len() - 1);
        self.varbit_prefix(class);
        self.bits(v as u64, VARBIT_WIDTHS[class]);
    }

    pub fn varbit_uint(&mut self, v: u64) {
        if v == 0 {
            self.bit(false);
            return;
        }
        let class = VARBIT_WIDTHS
            .iter()
            .position(|&n| n == 64 || v >> n == 0)
            .unwrap_or(VARBIT_WIDTHS.len() - 1);
        self.varbit_prefix(class);
        self.bits(v, VARBIT_WIDTHS[class]);
    }
}

/// Whether `x` fits the signed `n`-bit range `-(2^(n-1)-1) ..= 2^(n-1)`.
pub(super) fn fits_signed(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// Reads bits, most significant first.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader starting `skip_bytes` into `data`.
    pub fn new(data: &'a [u8], skip_bytes: usize) -> Self {
        Self {
            data,
            pos: skip_bytes * 8,
        }
    }

    pub fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    pub fn peek_bit(&self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        Some((byte >> (7 - self.pos % 8)) & 1 == 1)
    }

    pub fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }

    pub fn uvarint(&mut self) -> Option<u64> {
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

    pub fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// The class of a varbit value (`None` for zero) from its prefix.
    fn varbit_class(&mut self) -> Option<Option<usize>> {
        let mut ones = 0;
        while ones < VARBIT_WIDTHS.len() && self.bit()? {
            ones += 1;
        }
        Some(ones.checked_sub(1))
    }

    pub fn varbit_int(&mut self) -> Option<i64> {
        let Some(class) = self.varbit_class()? else {
            return Some(0);
        };
        let n = VARBIT_WIDTHS[class];
        let raw = self.bits(n)?;
        if n == 64 {
            return Some(raw as i64);
        }
        // Values above the range's top are negative in n-bit two's complement.
        Some(if raw > 1 << (n - 1) {
            raw as i64 - (1i64 << n)
        } else {
            raw as i64
        })
    }

    pub fn varbit_uint(&mut self) -> Option<u64> {
        match self.varbit_class()? {
            None => Some(0),
            Some(class) => self.bits(VARBIT_WIDTHS[class]),
        }
    }
}

/// The Gorilla XOR value encoding with its leading/trailing-zero window, as
/// the XOR chunk encodes values and the histogram chunks encode sums (and
/// every field of float histograms), each field with its own window.
#[derive(Clone, Copy, Debug)]
pub(super) struct XorField {
    pub value: u64,
    /// Leading zeros of the current window; 0xff before the first.
    leading: u8,
    trailing: u8,
}

impl XorField {
    pub fn new(value: u64) -> Self {
        Self {
            value,
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn write(&mut self, w: &mut BitWriter, v: u64) {
        let delta = v ^ self.value;
        self.value = v;
        if delta == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        // At most 31 so the count fits 5 bits.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            w.bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.bits(delta >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        w.bit(true);
        w.bits(u64::from(leading), 5);
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        // 64 significant bits do not fit 6 bits; 0 never occurs otherwise
        // (a zero XOR takes the branch above), so 0 stands for 64.
        w.bits(u64::from(sig) & 0x3f, 6);
        w.bits(delta >> trailing, sig);
    }

    /// Reads the next value; `Err` names what was wrong, `Ok(None)` means
    /// the data ended.
    pub fn read(&mut self, r: &mut BitReader<'_>) -> Result<Option<u64>, &'static str> {
        let Some(changed) = r.bit() else {
            return Ok(None);
        };
        if changed {
            let Some(new_window) = r.bit() else {
                return Ok(None);
            };
            if new_window {
                let (Some(leading), Some(sig)) = (r.bits(5), r.bits(6)) else {
                    return Ok(None);
                };
                let sig = if sig == 0 { 64 } else { sig as u32 };
                if leading as u32 + sig > 64 {
                    return Err("more than 64 significant bits");
                }
                self.leading = leading as u8;
                self.trailing = (64 - leading as u32 - sig) as u8;
            } else if self.leading == 0xff {
                return Err("reuses a window before one was set");
            }
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            let Some(bits) = r.bits(sig) else {
                return Ok(None);
            };
            self.value ^= bits << self.trailing;
        }
        Ok(Some(self.value))
    }
}
