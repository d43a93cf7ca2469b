use super::*;
use crate::sample::{STALE_NAN_BITS, stale_nan};

/// splitmix64: deterministic test randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SPECIALS: [u64; 14] = [
    STALE_NAN_BITS,
    0x7ff8_0000_0000_0000, // quiet NaN
    0x7ff8_0000_0000_0001, // NaN with payload
    0xfff8_dead_beef_0001, // negative NaN with payload
    0x7ff0_0000_0000_0001, // signalling NaN
    0x8000_0000_0000_0000, // -0.0
    0x7ff0_0000_0000_0000, // +inf
    0xfff0_0000_0000_0000, // -inf
    0x0000_0000_0000_0001, // smallest subnormal
    0x800f_ffff_ffff_ffff, // negative subnormal
    0x7fef_ffff_ffff_ffff, // f64::MAX
    0x0010_0000_0000_0000, // f64::MIN_POSITIVE
    0x4341_c379_37e0_8000, // 1e16
    0x3cd2_03af_9ee7_5616, // 1e-15
];

fn times(rng: &mut Rng, n: usize) -> Vec<i64> {
    match rng.below(6) {
        // Regular scrapes with a few ms of jitter.
        0 | 1 => {
            let start = 1_700_000_000_000 + rng.below(1 << 20) as i64;
            (0..n)
                .map(|i| start + i as i64 * 15_000 + rng.below(7) as i64 - 3)
                .collect()
        }
        // Exactly regular.
        2 => (0..n).map(|i| i as i64 * 60_000 - 3_600_000).collect(),
        // Random increasing gaps, some huge.
        3 => {
            let mut t = i64::MIN + rng.below(1000) as i64;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(t);
                let gap = if rng.chance(10) {
                    rng.below(1 << 60) as i64 + 1
                } else {
                    rng.below(100_000) as i64 + 1
                };
                match t.checked_add(gap) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            v
        }
        // Ending at i64::MAX.
        4 => (0..n as i64).rev().map(|i| i64::MAX - i * 7).collect(),
        // The two extremes and whatever fits between.
        _ => {
            let mut v: Vec<i64> = (0..n.saturating_sub(2) as i64).map(|i| i * 1000).collect();
            v.insert(0, i64::MIN);
            v.push(i64::MAX);
            v.truncate(n);
            v
        }
    }
}

fn values(rng: &mut Rng, n: usize) -> Vec<f64> {
    let kind = rng.below(12);
    let mut acc = rng.below(1_000_000) as i64;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let x = match kind {
            // Integer counter with resets.
            0 => {
                acc = if rng.chance(1) {
                    0
                } else {
                    acc + rng.below(50) as i64
                };
                acc as f64
            }
            // Two-decimal counter (cpu seconds).
            1 => {
                acc += 1400 + rng.below(200) as i64;
                acc as f64 / 100.0
            }
            // One-decimal gauge.
            2 => {
                acc += rng.below(11) as i64 - 5;
                acc as f64 / 10.0
            }
            // Nanosecond durations in seconds.
            3 => rng.below(50_000_000) as f64 / 1e9,
            // Full-precision ratios.
            4 => rng.below(1 << 53) as f64 / (1u64 << 53) as f64,
            // Random bit patterns.
            5 => f64::from_bits(rng.next()),
            // Constant.
            6 => 1.0,
            // Constant special.
            7 => f64::from_bits(SPECIALS[n % SPECIALS.len()]),
            // Memory bytes, multiples of 4096, large.
            8 => {
                acc += (rng.below(2000) as i64 - 1000) * 4096;
                (acc + (1 << 40)) as f64
            }
            // Huge and tiny decimals.
            9 => {
                if i % 2 == 0 {
                    (rng.below(1 << 62) as f64) * 1e3
                } else {
                    rng.below(1000) as f64 * 1e-18
                }
            }
            // Milliseconds times 0.001, as node_exporter computes seconds.
            10 => {
                acc += rng.below(5000) as i64;
                acc as f64 * 0.001
            }
            // Specials only.
            _ => f64::from_bits(SPECIALS[rng.below(SPECIALS.len() as u64) as usize]),
        };
        v.push(x);
    }
    // Sprinkle specials into most kinds.
    if kind != 6 && rng.chance(50) {
        for _ in 0..rng.below(4) {
            if n > 0 {
                let i = rng.below(n as u64) as usize;
                v[i] = f64::from_bits(SPECIALS[rng.below(SPECIALS.len() as u64) as usize]);
            }
        }
    }
    v
}

fn case(rng: &mut Rng) -> Vec<Sample> {
    let n = match rng.below(5) {
        0 => rng.below(3) as usize,
        1 => rng.below(20) as usize,
        2 => 120,
        3 => 480,
        _ => rng.below(3000) as usize,
    };
    let t = times(rng, n);
    let v = values(rng, t.len());
    t.into_iter()
        .zip(v)
        .map(|(t, v)| Sample::new(t, v))
        .collect()
}

fn round_trip(samples: &[Sample]) -> Vec<u8> {
    let mut bytes = vec![0xaa]; // encode appends
    encode(samples, &mut bytes);
    let bytes = bytes.split_off(1);
    let mut out = vec![Sample::new(-1, 2.5)]; // decode appends
    decode(&bytes, &mut out).unwrap_or_else(|e| panic!("{e} for {samples:?}"));
    assert_eq!(out[0], Sample::new(-1, 2.5));
    assert_eq!(out.len(), samples.len() + 1);
    for (a, b) in out[1..].iter().zip(samples) {
        assert_eq!(a.t, b.t);
        assert_eq!(a.v.to_bits(), b.v.to_bits(), "value of {b:?}");
    }
    bytes
}

#[test]
fn generated_cases_round_trip_bit_exact() {
    let mut rng = Rng(42);
    for _ in 0..3000 {
        round_trip(&case(&mut rng));
    }
}

#[test]
fn edge_cases_round_trip() {
    round_trip(&[]);
    round_trip(&[Sample::new(0, 0.0)]);
    round_trip(&[Sample::new(i64::MIN, -0.0)]);
    round_trip(&[Sample::new(i64::MAX, stale_nan())]);
    round_trip(&[Sample::new(i64::MIN, 1.0), Sample::new(i64::MAX, 2.0)]);
    round_trip(&[
        Sample::new(i64::MIN, f64::MAX),
        Sample::new(0, f64::MIN),
        Sample::new(i64::MAX, f64::MIN_POSITIVE),
    ]);
    for bits in SPECIALS {
        let v = f64::from_bits(bits);
        let s: Vec<Sample> = (0..5).map(|i| Sample::new(i, v)).collect();
        round_trip(&s);
        let s: Vec<Sample> = (0..5)
            .map(|i| Sample::new(i, if i == 2 { v } else { 1.5 }))
            .collect();
        round_trip(&s);
    }
    // i64 extremes as decimal integers.
    let s: Vec<Sample> = [
        i64::MIN as f64,
        i64::MAX as f64,
        -9.2e18,
        9.2e18,
        2f64.powi(53) + 2.0,
    ]
    .iter()
    .enumerate()
    .map(|(i, &v)| Sample::new(i as i64, v))
    .collect();
    round_trip(&s);
}

#[test]
fn decimal_detection() {
    assert_eq!(decimal(0.0, 0), Some((0, 0)));
    assert_eq!(decimal(12345.0, 0), Some((0, 12345)));
    assert_eq!(decimal(0.1, 0), Some((1, 1)));
    assert_eq!(decimal(123.45, 0), Some((2, 12345)));
    assert_eq!(decimal(-0.000_012_345, 0), Some((9, -12345)));
    assert_eq!(decimal(-0.0, 0), None);
    assert_eq!(decimal(f64::NAN, 0), None);
    assert_eq!(decimal(f64::INFINITY, 0), None);
    // Any double with a short enough shortest-round-trip form is decimal.
    assert_eq!(decimal(1.0 / 3.0, 0), Some((16, 3_333_333_333_333_333)));
    assert_eq!(decimal(1e-5 / 3.0, 0), None);
    // node_exporter's float64(ms) * 0.001.
    let v = 3_002_461.0 * 0.001;
    assert_ne!(v, 3_002_461.0 / 1000.0);
    assert_eq!(decimal(v, MUL), Some((3 | MUL, 3_002_461)));
    assert_eq!(decimal(1e300, 0), None);
}

#[test]
fn compact_forms_are_chosen() {
    let regular: Vec<Sample> = (0..480).map(|i| Sample::new(i * 15_000, 1.0)).collect();
    let bytes = round_trip(&regular);
    // format, count (2), t0, first step (3), 478 zero steps, kind, scale, m
    assert_eq!(bytes.len(), 1 + 2 + 1 + 3 + 478 + 3);
    assert_eq!(bytes[bytes.len() - 3], KIND_CONST_DECIMAL);

    // One stale marker does not spoil a decimal counter.
    let mut counter: Vec<Sample> = (0..480)
        .map(|i| Sample::new(i * 15_000, (i * 7) as f64 / 100.0))
        .collect();
    counter[100].v = stale_nan();
    let bytes = round_trip(&counter);
    let values = &bytes[1 + 2 + 1 + 3 + 478..];
    assert_eq!(values[0], KIND_DECIMAL);
    assert_eq!(values[1], 2, "scale");
    // Constant step 7/100: the divisor 7 makes every step 1.
    assert_eq!(values[2], ORDER_DELTA);
    assert_eq!(values[3], 7, "gcd");
    assert_eq!(values[4], 1, "one exception");

    // Milliseconds * 0.001 use the multiplying scale.
    let ms: Vec<Sample> = (0..480)
        .map(|i| Sample::new(i * 15_000, (3_002_000 + i * i * 7) as f64 * 0.001))
        .collect();
    assert!(ms.iter().any(|s| s.v != (s.v * 1000.0).round() / 1000.0));
    let bytes = round_trip(&ms);
    assert_eq!(bytes[1 + 2 + 1 + 3 + 478..][..2], [KIND_DECIMAL, 3 | MUL]);

    // Full-precision ratios use XOR.
    let mut rng = Rng(7);
    let ratios: Vec<Sample> = (0..480)
        .map(|i| Sample::new(i * 15_000, rng.below(1 << 53) as f64 / (1u64 << 53) as f64))
        .collect();
    let bytes = round_trip(&ratios);
    assert_eq!(bytes[1 + 2 + 1 + 3 + 478], KIND_XOR);
}

/// The encoding of a small chunk is frozen: a change here is a format change
/// and needs a new format version.
#[test]
fn frozen_bytes() {
    let samples = [
        Sample::new(1_700_000_000_000, 10.5),
        Sample::new(1_700_000_015_001, 11.0),
        Sample::new(1_700_000_030_000, stale_nan()),
        Sample::new(1_700_000_045_002, 12.25),
    ];
    let mut bytes = Vec::new();
    encode(&samples, &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "0104\
         80a0abfef962b2ea010306\
         0202001901\
         02020000000000f07f\
         545862"
    );
    round_trip(&samples);
}

/// Every prefix, every single-byte corruption and random garbage decode to an
/// error or to samples, never a panic; errors leave `out` untouched.
#[test]
fn corrupt_input_never_panics() {
    let mut rng = Rng(99);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for _ in 0..150 {
        let mut s = case(&mut rng);
        s.truncate(40);
        let mut b = Vec::new();
        encode(&s, &mut b);
        cases.push(b);
    }
    let mut out = vec![Sample::new(5, 5.0)];
    let mut errors = 0usize;
    for full in &cases {
        for len in 0..full.len() {
            if decode(&full[..len], &mut out).is_err() {
                errors += 1;
            }
            out.truncate(1);
        }
        for i in 0..full.len() {
            for flip in [0x01u8, 0x80, 0xff, 0x55] {
                let mut b = full.clone();
                b[i] ^= flip;
                if decode(&b, &mut out).is_err() {
                    assert_eq!(out, vec![Sample::new(5, 5.0)]);
                }
                out.truncate(1);
            }
        }
    }
    assert!(errors > 0);
    for _ in 0..20_000 {
        let len = rng.below(64) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if !b.is_empty() && rng.chance(80) {
            b[0] = FORMAT_V1;
        }
        let _ = decode(&b, &mut out);
        out.truncate(1);
    }
}

#[test]
fn prefixes_are_errors() {
    let samples: Vec<Sample> = (0..50)
        .map(|i| Sample::new(i * 15_000 + i % 3, i as f64 * 0.5))
        .collect();
    let mut full = Vec::new();
    encode(&samples, &mut full);
    let mut out = Vec::new();
    for len in 0..full.len() {
        assert!(decode(&full[..len], &mut out).is_err(), "prefix {len}");
        assert!(out.is_empty());
    }
}

/// The header's count is what decoding gives, for every kind of chunk;
/// a count the bytes cannot hold is an error, as in `decode`.
#[test]
fn sample_count_reads_the_header() {
    let mut rng = Rng(7);
    for _ in 0..500 {
        let s = case(&mut rng);
        let mut b = Vec::new();
        encode(&s, &mut b);
        assert_eq!(sample_count(&b), Ok(s.len()));
    }
    let mut b = vec![FORMAT_V1];
    put_varint(&mut b, 1 << 40);
    assert!(sample_count(&b).is_err());
    assert!(sample_count(&[]).is_err());
    assert!(sample_count(&[FORMAT_V1 + 1, 0]).is_err());
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut b = vec![FORMAT_V1];
    put_varint(&mut b, u64::MAX);
    b.extend_from_slice(&[0; 16]);
    assert!(decode(&b, &mut Vec::new()).is_err());
    let mut b = vec![FORMAT_V1];
    put_varint(&mut b, 1 << 40);
    assert!(decode(&b, &mut Vec::new()).is_err());
}

#[test]
fn varints() {
    for x in [0u64, 1, 127, 128, 16383, 16384, u64::MAX >> 1, u64::MAX] {
        let mut b = Vec::new();
        put_varint(&mut b, x);
        assert_eq!(b.len(), varint_len(x), "{x}");
        let mut r = Reader::new(&b);
        assert_eq!(r.varint().unwrap(), x);
        assert!(r.expect_end().is_ok());
    }
    for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
        assert_eq!(bits::unzigzag(zigzag(x)), x);
    }
    // 11 bytes, or a 10th byte with more than one bit, are refused.
    let mut r = Reader::new(&[0xff; 11]);
    assert!(r.varint().is_err());
    let mut b = vec![0xff; 9];
    b.push(0x02);
    assert!(Reader::new(&b).varint().is_err());
}
