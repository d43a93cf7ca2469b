//! Samples and series as stored and returned by reads.

use crate::labels::Labels;

/// Bit pattern Prometheus uses to mark a series as stale. It is a NaN, so it
/// must be compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// One float sample: millisecond timestamp and value (NaN payloads preserved).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }
}

/// Bit-exact equality, so NaN payloads compare as stored.
impl PartialEq for Sample {
    fn eq(&self, o: &Self) -> bool {
        self.t == o.t && self.v.to_bits() == o.v.to_bits()
    }
}

pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A series with its samples in time order, one sample per timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}
