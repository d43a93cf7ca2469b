use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage::sample::stale_nan;

use super::*;

fn roundtrip(samples: &[Sample]) {
    for chunk in encode_chunks(samples) {
        let got = decode(&chunk.data).expect("decode");
        let want: Vec<Sample> = samples
            .iter()
            .filter(|s| chunk.min_time_ms <= s.t && s.t <= chunk.max_time_ms)
            .copied()
            .collect();
        assert_eq!(got, want);
    }
    let all: Vec<Sample> = encode_chunks(samples)
        .iter()
        .flat_map(|c| decode(&c.data).expect("decode"))
        .collect();
    assert_eq!(all, samples);
}

/// Worked out by hand from the format: header 3, varint 1000 (zig-zag 2000),
/// 1.0, uvarint 1000 and an unchanged value ('0'), then dod 0 ('0') and 2.0:
/// XOR 0x7ff0.. gives '11', 5 bits leading (1), 6 bits sig (11), 11 ones.
#[test]
fn encodes_the_documented_bytes() {
    let mut e = XorEncoder::new();
    e.append(1000, 1.0);
    e.append(2000, 1.0);
    e.append(3000, 2.0);
    assert_eq!(
        e.bytes(),
        vec![
            0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x30, 0x97, 0xff,
            0xc0
        ]
    );
    assert_eq!(
        decode(&e.bytes()).expect("decode"),
        vec![
            Sample::new(1000, 1.0),
            Sample::new(2000, 1.0),
            Sample::new(3000, 2.0)
        ]
    );
}

#[test]
fn reuses_the_xor_window_when_it_fits() {
    // 2.0 -> 3.0 XOR 0x0008.. sets a window; 3.0 -> 2.0 is the same XOR and
    // reuses it: '10' plus the window's bits instead of '11' plus 11 bits of header.
    let mut reuse = XorEncoder::new();
    for (t, v) in [(0, 2.0), (1, 3.0), (2, 2.0)] {
        reuse.append(t, v);
    }
    let mut fresh = XorEncoder::new();
    for (t, v) in [(0, 2.0), (1, 3.0)] {
        fresh.append(t, v);
    }
    // Third sample costs dod '0' + '10' + 1 significant bit = 4 bits.
    let bits_of = |e: &XorEncoder| e.w.bit_len();
    assert_eq!(bits_of(&reuse) - bits_of(&fresh), 4);
    roundtrip(&[
        Sample::new(0, 2.0),
        Sample::new(1, 3.0),
        Sample::new(2, 2.0),
    ]);
}

#[test]
fn every_delta_of_delta_width_round_trips() {
    // Boundaries of each width: ±(2^(n-1)-1) and 2^(n-1), and one past.
    let mut dods = vec![0i64, 1, -1];
    for n in [14u32, 17, 20] {
        let half = 1i64 << (n - 1);
        dods.extend([half, half + 1, -(half - 1), -half]);
    }
    dods.push(1 << 40);
    let mut t = 1_700_000_000_000i64;
    let mut delta = 15_000i64;
    let mut samples = vec![Sample::new(t, 0.0)];
    t += delta;
    samples.push(Sample::new(t, 1.0));
    for dod in dods {
        delta += dod;
        if delta < 0 {
            delta = 1;
        }
        t += delta;
        samples.push(Sample::new(t, samples.len() as f64));
    }
    roundtrip(&samples);
}

#[test]
fn special_values_round_trip_bit_exact() {
    let values = [
        0.0,
        -0.0,
        f64::NAN,
        stale_nan(),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::from_bits(1),
        1.5,
        1.5,
    ];
    let samples: Vec<Sample> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Sample::new(-5000 + i as i64 * 1000, v))
        .collect();
    roundtrip(&samples);
}

#[test]
fn random_series_round_trip_and_cut_at_120() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let n: usize = rng.random_range(1..400);
        let mut t: i64 = rng.random_range(-1_000_000..2_000_000_000_000);
        let mut v: f64 = rng.random_range(-1e6..1e6);
        let mut samples = Vec::new();
        for _ in 0..n {
            samples.push(Sample::new(t, v));
            t += match rng.random_range(0..4) {
                0 => 15_000,
                1 => rng.random_range(1..100_000),
                2 => rng.random_range(1..10_000_000_000),
                _ => 15_000 + rng.random_range(-3..3),
            };
            v = match rng.random_range(0..4) {
                0 => v,
                1 => v + 1.0,
                2 => rng.random_range(-1e300..1e300),
                _ => f64::from_bits(rng.random()),
            };
        }
        let chunks = encode_chunks(&samples);
        assert_eq!(chunks.len(), n.div_ceil(SAMPLES_PER_CHUNK));
        assert!(
            chunks
                .iter()
                .all(|c| decode(&c.data).expect("decode").len() <= SAMPLES_PER_CHUNK)
        );
        roundtrip(&samples);
    }
}

#[test]
fn malformed_chunks_are_errors_not_panics() {
    assert_eq!(decode(&[]), Err(XorError::NoHeader));
    assert_eq!(decode(&[0]), Err(XorError::NoHeader));
    assert_eq!(decode(&[0, 0]), Ok(Vec::new()));
    assert!(matches!(
        decode(&[0, 5, 0x02]),
        Err(XorError::Truncated { index: 0, count: 5 })
    ));
    let mut e = XorEncoder::new();
    for i in 0..50 {
        e.append(i * 1000, (i * i) as f64);
    }
    let bytes = e.bytes();
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Random bytes: any result, but no panic.
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..2000 {
        let len = rng.random_range(0..64);
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = decode(&junk);
    }
}
