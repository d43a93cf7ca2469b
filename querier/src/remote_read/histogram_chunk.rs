//! Prometheus' native histogram chunk encodings (`HISTOGRAM` for integer
//! histograms, `FLOAT_HISTOGRAM` for float ones), which remote read's
//! `STREAMED_XOR_CHUNKS` answers carry for histogram series. The layout is
//! the one of Prometheus' `tsdb/docs/format/chunks.md`:
//!
//! ```text
//! u16 sample count, 1 flags byte (top two bits: 10 counter reset,
//!   01 no counter reset, 11 gauge histogram, 00 unknown)
//! layout, written once: zero threshold (0 -> one 0 byte; a power of two
//!   2^-243..=2^10 -> one byte 1..=254; otherwise 255 + float64), schema
//!   (varbit int), positive and negative spans (varbit uint count, then
//!   varbit uint length + varbit int offset each), and for schema -53 the
//!   custom bounds (varbit uint count; each bound x with x*1000 an integer
//!   in 0..=33554430 as varbit uint x*1000+1, else a 0 bit + float64)
//! integer samples: the first as ts (varbit int), count and zero count
//!   (varbit uint), sum (float64), bucket deltas (varbit int); later ones as
//!   deltas of deltas (varbit int) of ts, count, zero count and each bucket
//!   delta, the sum XOR-encoded against the previous sum
//! float samples: the first as ts (varbit int) and float64 count, zero
//!   count, sum and absolute bucket counts; later ones as the delta of
//!   delta of ts and every other field XOR-encoded against its previous value
//! a stale marker (sum = Prometheus' stale NaN) writes no buckets
//! ```
//!
//! A chunk holds one bucket layout. Strata cuts a new chunk where the
//! layout, the kind (integer/float, gauge/counter) or a counter reset
//! changes, after a stale marker, and at 120 samples; where Prometheus would
//! instead re-encode a chunk to widen its layout, Strata starts a new one,
//! which every reader decodes the same. Per-sample reset hints exist in the
//! format only at a chunk's start: a stored "reset" hint starts a chunk
//! flagged as a reset, later samples read back as "no reset" (or "gauge").

use storage::STALE_NAN_BITS;
use storage::histogram::{BucketSpan, CUSTOM_BUCKETS_SCHEMA, Count, Histogram, ZeroCount};

use super::bits::{BitReader, BitWriter, XorField};
use super::proto::ChunkEncoding;
use super::xor::{EncodedChunk, SAMPLES_PER_CHUNK};

const FLAG_COUNTER_RESET: u8 = 0b1000_0000;
const FLAG_NOT_COUNTER_RESET: u8 = 0b0100_0000;
const FLAG_GAUGE: u8 = 0b1100_0000;
const FLAG_MASK: u8 = 0b1100_0000;

/// Stored reset hints (`prometheus.Histogram.ResetHint`).
const HINT_UNKNOWN: i32 = 0;
const HINT_YES: i32 = 1;
const HINT_NO: i32 = 2;
const HINT_GAUGE: i32 = 3;

/// Largest custom bound times 1000 stored in the compact form.
const MAX_COMPACT_BOUND: f64 = 33_554_430.0;

/// Why a histogram chunk could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistogramChunkError {
    #[error("histogram chunk: shorter than its 3-byte header")]
    NoHeader,
    #[error("histogram chunk: ends inside sample {index} of {count}")]
    Truncated { index: usize, count: usize },
    #[error("histogram chunk: {0}")]
    Invalid(String),
}

/// What must be equal for two histograms to share a chunk.
#[derive(Clone, Debug, Default, PartialEq)]
struct Layout {
    schema: i32,
    zero_threshold: u64,
    positive: Vec<BucketSpan>,
    negative: Vec<BucketSpan>,
    custom_values: Vec<u64>,
}

impl Layout {
    fn of(h: &Histogram) -> Self {
        if is_stale(h) {
            return Self::default();
        }
        Self {
            schema: h.schema,
            zero_threshold: h.zero_threshold.to_bits(),
            positive: h.positive_spans.clone(),
            negative: h.negative_spans.clone(),
            custom_values: h.custom_values.iter().map(|v| v.to_bits()).collect(),
        }
    }

    fn write(&self, w: &mut BitWriter) {
        write_zero_threshold(w, f64::from_bits(self.zero_threshold));
        w.varbit_int(i64::from(self.schema));
        for spans in [&self.positive, &self.negative] {
            w.varbit_uint(spans.len() as u64);
            for s in spans {
                w.varbit_uint(u64::from(s.length));
                w.varbit_int(i64::from(s.offset));
            }
        }
        if self.schema == CUSTOM_BUCKETS_SCHEMA {
            w.varbit_uint(self.custom_values.len() as u64);
            for &bits in &self.custom_values {
                write_custom_bound(w, f64::from_bits(bits));
            }
        }
    }

    fn read(r: &mut BitReader<'_>) -> Option<Result<Self, String>> {
        let zero_threshold = read_zero_threshold(r)?.to_bits();
        let schema = r.varbit_int()?;
        let Ok(schema) = i32::try_from(schema) else {
            return Some(Err(format!("schema {schema} out of range")));
        };
        if !((-4..=8).contains(&schema) || schema == CUSTOM_BUCKETS_SCHEMA) {
            return Some(Err(format!("unknown schema {schema}")));
        }
        let mut sides = [Vec::new(), Vec::new()];
        for spans in &mut sides {
            let n = r.varbit_uint()?;
            for _ in 0..n {
                let length = r.varbit_uint()?;
                let offset = r.varbit_int()?;
                let (Ok(length), Ok(offset)) = (u32::try_from(length), i32::try_from(offset))
                else {
                    return Some(Err("bucket span out of range".into()));
                };
                spans.push(BucketSpan { offset, length });
            }
        }
        let mut custom_values = Vec::new();
        if schema == CUSTOM_BUCKETS_SCHEMA {
            let n = r.varbit_uint()?;
            for _ in 0..n {
                custom_values.push(read_custom_bound(r)?.to_bits());
            }
        }
        let [positive, negative] = sides;
        Some(Ok(Self {
            schema,
            zero_threshold,
            positive,
            negative,
            custom_values,
        }))
    }

    fn buckets(&self) -> (usize, usize) {
        let count = |spans: &[BucketSpan]| spans.iter().map(|s| s.length as usize).sum();
        (count(&self.positive), count(&self.negative))
    }
}

fn write_zero_threshold(w: &mut BitWriter, t: f64) {
    if t == 0.0 {
        w.byte(0);
        return;
    }
    // A positive normal power of two 0.5 * 2^exp with exp in -242..=11 is
    // stored as the byte exp + 243.
    let bits = t.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i64;
    let exp = biased - 1022;
    if bits >> 63 == 0 && bits & ((1 << 52) - 1) == 0 && biased != 0 && (-242..=11).contains(&exp) {
        w.byte((exp + 243) as u8);
    } else {
        w.byte(255);
        w.bits(bits, 64);
    }
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> Option<f64> {
    match r.bits(8)? {
        0 => Some(0.0),
        255 => Some(f64::from_bits(r.bits(64)?)),
        // 0.5 * 2^(b - 243), a normal number for every b in 1..=254.
        b => Some(f64::from_bits(((b + 1023 - 244) & 0x7ff) << 52)),
    }
}

fn write_custom_bound(w: &mut BitWriter, x: f64) {
    let y = x * 1000.0;
    // Only where it reads back exactly.
    if (0.0..=MAX_COMPACT_BOUND).contains(&y) && y.fract() == 0.0 && y / 1000.0 == x {
        w.varbit_uint(y as u64 + 1);
    } else {
        w.bit(false);
        w.bits(x.to_bits(), 64);
    }
}

fn read_custom_bound(r: &mut BitReader<'_>) -> Option<f64> {
    // The compact form is a varbit uint of at least 1, so it starts with a 1.
    if r.peek_bit()? {
        let v = r.varbit_uint()?;
        Some(v.saturating_sub(1) as f64 / 1000.0)
    } else {
        r.bit()?;
        Some(f64::from_bits(r.bits(64)?))
    }
}

fn is_stale(h: &Histogram) -> bool {
    h.sum.to_bits() == STALE_NAN_BITS
}

fn int_count(c: Option<Count>) -> u64 {
    match c {
        Some(Count::Int(v)) => v,
        Some(Count::Float(v)) => v as u64,
        None => 0,
    }
}

fn int_zero_count(c: Option<ZeroCount>) -> u64 {
    match c {
        Some(ZeroCount::Int(v)) => v,
        Some(ZeroCount::Float(v)) => v as u64,
        None => 0,
    }
}

fn float_count(c: Option<Count>) -> f64 {
    match c {
        Some(Count::Float(v)) => v,
        Some(Count::Int(v)) => v as f64,
        None => 0.0,
    }
}

fn float_zero_count(c: Option<ZeroCount>) -> f64 {
    match c {
        Some(ZeroCount::Float(v)) => v,
        Some(ZeroCount::Int(v)) => v as f64,
        None => 0.0,
    }
}

/// Absolute counts of a histogram, for counter-reset detection.
fn absolute(h: &Histogram) -> (f64, f64, Vec<f64>) {
    let mut buckets = Vec::new();
    if h.is_float() {
        buckets.extend(&h.positive_counts);
        buckets.extend(&h.negative_counts);
    } else {
        for deltas in [&h.positive_deltas, &h.negative_deltas] {
            let mut v = 0i64;
            for d in deltas {
                v = v.wrapping_add(*d);
                buckets.push(v as f64);
            }
        }
    }
    (
        float_count(h.count),
        float_zero_count(h.zero_count),
        buckets,
    )
}

/// Whether `h` resets the counter histogram `prev` of the same layout.
fn is_reset(prev: &Histogram, h: &Histogram) -> bool {
    let (pc, pz, pb) = absolute(prev);
    let (c, z, b) = absolute(h);
    c < pc || z < pz || pb.iter().zip(&b).any(|(p, n)| n < p)
}

/// Per-field state of an integer histogram chunk.
#[derive(Default)]
struct IntState {
    count: u64,
    zero_count: u64,
    count_delta: i64,
    zero_count_delta: i64,
    buckets: Vec<i64>,
    bucket_deltas: Vec<i64>,
}

/// Per-field state of a float histogram chunk.
#[derive(Default)]
struct FloatState {
    count: Option<XorField>,
    zero_count: Option<XorField>,
    buckets: Vec<XorField>,
}

/// Builds one histogram chunk sample by sample.
struct ChunkEncoder {
    w: BitWriter,
    count: u16,
    float: bool,
    gauge: bool,
    layout: Layout,
    t: i64,
    t_delta: i64,
    sum: XorField,
    ints: IntState,
    floats: FloatState,
    last: Option<Histogram>,
    min_t: i64,
}

impl ChunkEncoder {
    fn new(first: &Histogram, flags: u8) -> Self {
        let mut w = BitWriter::default();
        w.bits(0, 16); // the sample count, filled in by `finish`
        w.byte(flags);
        let layout = Layout::of(first);
        layout.write(&mut w);
        Self {
            w,
            count: 0,
            float: first.is_float(),
            gauge: first.reset_hint == HINT_GAUGE,
            layout,
            t: 0,
            t_delta: 0,
            sum: XorField::new(0),
            ints: IntState::default(),
            floats: FloatState::default(),
            last: None,
            min_t: first.timestamp,
        }
    }

    /// Whether `h` may follow in this chunk; if not, the flags byte of the
    /// chunk that `h` starts.
    fn accepts(&self, h: &Histogram) -> Result<(), u8> {
        let gauge = h.reset_hint == HINT_GAUGE;
        let Some(last) = &self.last else {
            return Ok(());
        };
        if is_stale(h) {
            return if usize::from(self.count) < SAMPLES_PER_CHUNK {
                Ok(())
            } else {
                Err(0)
            };
        }
        if h.is_float() != self.float || gauge != self.gauge || is_stale(last) {
            return Err(if gauge { FLAG_GAUGE } else { 0 });
        }
        if gauge {
            let fits = Layout::of(h) == self.layout && usize::from(self.count) < SAMPLES_PER_CHUNK;
            return if fits { Ok(()) } else { Err(FLAG_GAUGE) };
        }
        if h.reset_hint == HINT_YES {
            return Err(FLAG_COUNTER_RESET);
        }
        if Layout::of(h) != self.layout {
            // Across layouts only the totals are comparable.
            let (pc, ..) = absolute(last);
            let (c, ..) = absolute(h);
            return Err(if c < pc { FLAG_COUNTER_RESET } else { 0 });
        }
        if is_reset(last, h) {
            return Err(FLAG_COUNTER_RESET);
        }
        if usize::from(self.count) >= SAMPLES_PER_CHUNK {
            return Err(FLAG_NOT_COUNTER_RESET);
        }
        Ok(())
    }

    fn append(&mut self, h: &Histogram) {
        let t = h.timestamp;
        let stale = is_stale(h);
        if self.count == 0 {
            self.w.varbit_int(t);
            self.sum = XorField::new(h.sum.to_bits());
            if self.float {
                let count = XorField::new(if stale {
                    0
                } else {
                    float_count(h.count).to_bits()
                });
                let zero = if stale {
                    0
                } else {
                    float_zero_count(h.zero_count).to_bits()
                };
                self.w.bits(count.value, 64);
                self.w.bits(zero, 64);
                self.w.bits(self.sum.value, 64);
                self.floats.count = Some(count);
                self.floats.zero_count = Some(XorField::new(zero));
                if !stale {
                    for v in h.positive_counts.iter().chain(&h.negative_counts) {
                        self.w.bits(v.to_bits(), 64);
                        self.floats.buckets.push(XorField::new(v.to_bits()));
                    }
                }
            } else {
                let (count, zero) = if stale {
                    (0, 0)
                } else {
                    (int_count(h.count), int_zero_count(h.zero_count))
                };
                self.w.varbit_uint(count);
                self.w.varbit_uint(zero);
                self.w.bits(self.sum.value, 64);
                self.ints.count = count;
                self.ints.zero_count = zero;
                if !stale {
                    for d in h.positive_deltas.iter().chain(&h.negative_deltas) {
                        self.w.varbit_int(*d);
                    }
                    self.ints.buckets = h
                        .positive_deltas
                        .iter()
                        .chain(&h.negative_deltas)
                        .copied()
                        .collect();
                    self.ints.bucket_deltas = vec![0; self.ints.buckets.len()];
                }
            }
        } else {
            let t_delta = t.wrapping_sub(self.t);
            self.w.varbit_int(t_delta.wrapping_sub(self.t_delta));
            self.t_delta = t_delta;
            if self.float {
                let (count, zero) = if stale {
                    (0.0, 0.0)
                } else {
                    (float_count(h.count), float_zero_count(h.zero_count))
                };
                if let Some(f) = &mut self.floats.count {
                    f.write(&mut self.w, count.to_bits());
                }
                if let Some(f) = &mut self.floats.zero_count {
                    f.write(&mut self.w, zero.to_bits());
                }
                self.sum.write(&mut self.w, h.sum.to_bits());
                if !stale {
                    let values = h.positive_counts.iter().chain(&h.negative_counts);
                    for (f, v) in self.floats.buckets.iter_mut().zip(values) {
                        f.write(&mut self.w, v.to_bits());
                    }
                }
            } else {
                let (count, zero) = if stale {
                    (0, 0)
                } else {
                    (int_count(h.count), int_zero_count(h.zero_count))
                };
                let count_delta = (count as i64).wrapping_sub(self.ints.count as i64);
                let zero_delta = (zero as i64).wrapping_sub(self.ints.zero_count as i64);
                // A stale marker keeps the count fields' deltas (it carries
                // none of its own), as Prometheus writes it.
                let (count_dod, zero_dod) = if stale {
                    (0, 0)
                } else {
                    (
                        count_delta.wrapping_sub(self.ints.count_delta),
                        zero_delta.wrapping_sub(self.ints.zero_count_delta),
                    )
                };
                self.w.varbit_int(count_dod);
                self.w.varbit_int(zero_dod);
                self.sum.write(&mut self.w, h.sum.to_bits());
                if !stale {
                    let values = h.positive_deltas.iter().chain(&h.negative_deltas);
                    for (i, b) in values.enumerate() {
                        let delta = b.wrapping_sub(self.ints.buckets[i]);
                        self.w
                            .varbit_int(delta.wrapping_sub(self.ints.bucket_deltas[i]));
                        self.ints.bucket_deltas[i] = delta;
                        self.ints.buckets[i] = *b;
                    }
                }
                self.ints.count = count;
                self.ints.zero_count = zero;
                self.ints.count_delta = count_delta;
                self.ints.zero_count_delta = zero_delta;
            }
        }
        self.t = t;
        self.count += 1;
        self.last = Some(h.clone());
    }

    fn finish(self) -> (ChunkEncoding, EncodedChunk) {
        let mut data = self.w.bytes;
        data[..2].copy_from_slice(&self.count.to_be_bytes());
        let encoding = if self.float {
            ChunkEncoding::FloatHistogram
        } else {
            ChunkEncoding::Histogram
        };
        (
            encoding,
            EncodedChunk {
                min_time_ms: self.min_t,
                max_time_ms: self.t,
                data,
            },
        )
    }
}

/// What chunks keep of `hs`, for comparing histograms with what a chunk
/// gives back: reset hints cleared (chunks keep one per chunk) and an
/// absent zero count made an explicit zero.
pub fn as_read_from_chunks(hs: &[Histogram]) -> Vec<Histogram> {
    let mut hs = hs.to_vec();
    for h in &mut hs {
        h.reset_hint = HINT_UNKNOWN;
        if h.zero_count.is_none() {
            h.zero_count = Some(if h.is_float() {
                ZeroCount::Float(0.0)
            } else {
                ZeroCount::Int(0)
            });
        }
    }
    hs
}

/// Whether `h` can be written as a chunk at all: its bucket arrays must
/// match its spans (storage validates this on ingest).
fn well_formed(h: &Histogram) -> bool {
    if is_stale(h) {
        return true;
    }
    let (n_pos, n_neg) = Layout::of(h).buckets();
    if h.is_float() {
        h.positive_counts.len() == n_pos && h.negative_counts.len() == n_neg
    } else {
        h.positive_deltas.len() == n_pos && h.negative_deltas.len() == n_neg
    }
}

/// Encodes one series' time-ordered histograms as chunks. Histograms whose
/// bucket arrays do not match their spans (never stored: ingest validates
/// them) are skipped rather than written as chunks no reader could decode.
pub fn encode_histogram_chunks(histograms: &[Histogram]) -> Vec<(ChunkEncoding, EncodedChunk)> {
    let mut out = Vec::new();
    let mut current: Option<ChunkEncoder> = None;
    for h in histograms.iter().filter(|h| well_formed(h)) {
        let flags = match &current {
            None => match h.reset_hint {
                HINT_GAUGE => Some(FLAG_GAUGE),
                HINT_YES => Some(FLAG_COUNTER_RESET),
                _ => Some(0),
            },
            Some(enc) => enc.accepts(h).err(),
        };
        if let Some(flags) = flags {
            if let Some(done) = current.take() {
                out.push(done.finish());
            }
            current = Some(ChunkEncoder::new(h, flags));
        }
        if let Some(enc) = &mut current {
            enc.append(h);
        }
    }
    if let Some(done) = current {
        out.push(done.finish());
    }
    out
}

/// Decodes a whole histogram chunk (`float` for `FLOAT_HISTOGRAM`). Reset
/// hints come back as the format keeps them: the first sample's from the
/// chunk's flags, later ones "no reset" (or "gauge"). Never panics on
/// malformed input.
pub fn decode_histogram_chunk(
    data: &[u8],
    float: bool,
) -> Result<Vec<Histogram>, HistogramChunkError> {
    let header = data.get(..3).ok_or(HistogramChunkError::NoHeader)?;
    let count = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let flags = header[2] & FLAG_MASK;
    let first_hint = match flags {
        FLAG_COUNTER_RESET => HINT_YES,
        FLAG_NOT_COUNTER_RESET => HINT_NO,
        FLAG_GAUGE => HINT_GAUGE,
        _ => HINT_UNKNOWN,
    };
    let later_hint = if flags == FLAG_GAUGE {
        HINT_GAUGE
    } else {
        HINT_NO
    };
    let mut r = BitReader::new(data, 3);
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return Ok(out);
    }
    let truncated = |index| HistogramChunkError::Truncated { index, count };
    let layout = Layout::read(&mut r)
        .ok_or(truncated(0))?
        .map_err(HistogramChunkError::Invalid)?;
    let (n_pos, n_neg) = layout.buckets();
    let n = n_pos + n_neg;
    let (mut t, mut t_delta) = (0i64, 0i64);
    let mut sum = XorField::new(0);
    let (mut count_f, mut zero_f) = (XorField::new(0), XorField::new(0));
    let mut bucket_f: Vec<XorField> = Vec::new();
    let (mut cnt, mut zcnt, mut cnt_delta, mut zcnt_delta) = (0u64, 0u64, 0i64, 0i64);
    let mut buckets = vec![0i64; n];
    let mut bucket_deltas = vec![0i64; n];
    for index in 0..count {
        let tr = || truncated(index);
        let bad = |reason: &str| HistogramChunkError::Invalid(format!("sample {index}: {reason}"));
        let stale;
        if index == 0 {
            t = r.varbit_int().ok_or_else(tr)?;
            if float {
                count_f = XorField::new(r.bits(64).ok_or_else(tr)?);
                zero_f = XorField::new(r.bits(64).ok_or_else(tr)?);
                sum = XorField::new(r.bits(64).ok_or_else(tr)?);
                stale = sum.value == STALE_NAN_BITS;
                if !stale {
                    for _ in 0..n {
                        bucket_f.push(XorField::new(r.bits(64).ok_or_else(tr)?));
                    }
                }
            } else {
                cnt = r.varbit_uint().ok_or_else(tr)?;
                zcnt = r.varbit_uint().ok_or_else(tr)?;
                sum = XorField::new(r.bits(64).ok_or_else(tr)?);
                stale = sum.value == STALE_NAN_BITS;
                if !stale {
                    for b in &mut buckets {
                        *b = r.varbit_int().ok_or_else(tr)?;
                    }
                }
            }
        } else {
            t_delta = t_delta.wrapping_add(r.varbit_int().ok_or_else(tr)?);
            t = t.wrapping_add(t_delta);
            if float {
                count_f.read(&mut r).map_err(bad)?.ok_or_else(tr)?;
                zero_f.read(&mut r).map_err(bad)?.ok_or_else(tr)?;
                sum.read(&mut r).map_err(bad)?.ok_or_else(tr)?;
                stale = sum.value == STALE_NAN_BITS;
                if !stale {
                    if bucket_f.len() != n {
                        return Err(bad("buckets after a stale first sample"));
                    }
                    for f in &mut bucket_f {
                        f.read(&mut r).map_err(bad)?.ok_or_else(tr)?;
                    }
                }
            } else {
                cnt_delta = cnt_delta.wrapping_add(r.varbit_int().ok_or_else(tr)?);
                cnt = (cnt as i64).wrapping_add(cnt_delta) as u64;
                zcnt_delta = zcnt_delta.wrapping_add(r.varbit_int().ok_or_else(tr)?);
                zcnt = (zcnt as i64).wrapping_add(zcnt_delta) as u64;
                sum.read(&mut r).map_err(bad)?.ok_or_else(tr)?;
                stale = sum.value == STALE_NAN_BITS;
                if !stale {
                    for (b, d) in buckets.iter_mut().zip(&mut bucket_deltas) {
                        *d = d.wrapping_add(r.varbit_int().ok_or_else(tr)?);
                        *b = b.wrapping_add(*d);
                    }
                }
            }
        }
        let mut h = Histogram {
            sum: f64::from_bits(sum.value),
            timestamp: t,
            ..Default::default()
        };
        if !stale {
            h.schema = layout.schema;
            h.zero_threshold = f64::from_bits(layout.zero_threshold);
            h.positive_spans = layout.positive.clone();
            h.negative_spans = layout.negative.clone();
            h.custom_values = layout
                .custom_values
                .iter()
                .map(|b| f64::from_bits(*b))
                .collect();
            h.reset_hint = if index == 0 { first_hint } else { later_hint };
            if float {
                h.count = Some(Count::Float(f64::from_bits(count_f.value)));
                h.zero_count = Some(ZeroCount::Float(f64::from_bits(zero_f.value)));
                let values: Vec<f64> = bucket_f.iter().map(|f| f64::from_bits(f.value)).collect();
                h.positive_counts = values[..n_pos].to_vec();
                h.negative_counts = values[n_pos..].to_vec();
            } else {
                h.count = Some(Count::Int(cnt));
                h.zero_count = Some(ZeroCount::Int(zcnt));
                h.positive_deltas = buckets[..n_pos].to_vec();
                h.negative_deltas = buckets[n_pos..].to_vec();
            }
        }
        out.push(h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
