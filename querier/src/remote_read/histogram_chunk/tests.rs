use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage::sample::stale_nan;

use super::*;

fn span(offset: i32, length: u32) -> BucketSpan {
    BucketSpan { offset, length }
}

/// An integer histogram with absolute positive bucket counts `abs` in one
/// span starting at index 0.
fn int_hist(t: i64, zero: u64, abs: &[i64], sum: f64) -> Histogram {
    let mut prev = 0;
    let deltas = abs
        .iter()
        .map(|a| {
            let d = a - prev;
            prev = *a;
            d
        })
        .collect();
    Histogram {
        count: Some(Count::Int(zero + abs.iter().sum::<i64>() as u64)),
        sum,
        schema: 0,
        zero_threshold: 2f64.powi(-128),
        zero_count: Some(ZeroCount::Int(zero)),
        positive_spans: vec![span(0, abs.len() as u32)],
        positive_deltas: deltas,
        timestamp: t,
        ..Default::default()
    }
}

fn float_hist(t: i64, pos: &[f64], neg: &[f64], sum: f64) -> Histogram {
    Histogram {
        count: Some(Count::Float(pos.iter().chain(neg).sum::<f64>() + 0.5)),
        sum,
        schema: 3,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::Float(0.5)),
        positive_spans: vec![span(-2, pos.len() as u32)],
        positive_counts: pos.to_vec(),
        negative_spans: vec![span(1, neg.len() as u32)],
        negative_counts: neg.to_vec(),
        timestamp: t,
        ..Default::default()
    }
}

fn stale(t: i64) -> Histogram {
    Histogram {
        sum: stale_nan(),
        timestamp: t,
        ..Default::default()
    }
}

/// Compares histograms field by field (bit patterns for floats), ignoring
/// reset hints, which the format keeps only per chunk.
fn assert_same(got: &[Histogram], want: &[Histogram]) {
    assert_eq!(got.len(), want.len(), "number of histograms");
    let (got, want) = (as_read_from_chunks(got), as_read_from_chunks(want));
    for (g, w) in got.iter().zip(&want) {
        if w.sum.to_bits() == STALE_NAN_BITS {
            assert_eq!(
                g.sum.to_bits(),
                STALE_NAN_BITS,
                "stale marker at {}",
                w.timestamp
            );
            assert_eq!(g.timestamp, w.timestamp);
            continue;
        }
        assert_eq!(
            g.to_bytes(),
            w.to_bytes(),
            "histogram at {}:\n{g:?}\n{w:?}",
            w.timestamp
        );
    }
}

fn decode_all(chunks: &[(ChunkEncoding, EncodedChunk)]) -> Vec<Histogram> {
    chunks
        .iter()
        .flat_map(|(enc, c)| {
            let got = decode_histogram_chunk(&c.data, *enc == ChunkEncoding::FloatHistogram)
                .expect("decode");
            assert_eq!(got.first().map(|h| h.timestamp), Some(c.min_time_ms));
            assert_eq!(got.last().map(|h| h.timestamp), Some(c.max_time_ms));
            got
        })
        .collect()
}

/// Worked out by hand from the format: count 1, flags 0; zero threshold 0
/// (byte 0), schema 0 ('0'), one positive span ('10001') of length 2
/// ('10010') at offset 0 ('0'), no negative spans ('0'); t = 1000 ('11110'
/// and 12 bits), count 5 ('10101'), zero count 1 ('10001'), sum 2.0 (64
/// bits), bucket deltas 2 ('10010') and 0 ('0'), padding.
#[test]
fn encodes_the_documented_bytes() {
    let h = Histogram {
        count: Some(Count::Int(5)),
        sum: 2.0,
        zero_count: Some(ZeroCount::Int(1)),
        positive_spans: vec![span(0, 2)],
        positive_deltas: vec![2, 0],
        timestamp: 1000,
        ..Default::default()
    };
    let chunks = encode_histogram_chunks(std::slice::from_ref(&h));
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].0, ChunkEncoding::Histogram);
    assert_eq!(
        chunks[0].1.data,
        vec![
            0x00, 0x01, 0x00, 0x00, 0x46, 0x47, 0x8f, 0xa2, 0xb1, 0x40, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x90
        ]
    );
    assert_same(&decode_all(&chunks), &[h]);
}

#[test]
fn varbit_boundaries_round_trip() {
    let ints = [
        0i64,
        1,
        -1,
        -3,
        4,
        5,
        -4,
        -31,
        32,
        33,
        -255,
        256,
        257,
        -2047,
        2048,
        2049,
        -131071,
        131072,
        131073,
        -16777215,
        16777216,
        16777217,
        (1 << 55) - 1,
        1 << 55,
        -(1 << 55),
        i64::MAX,
        i64::MIN,
    ];
    let uints = [
        0u64,
        1,
        7,
        8,
        63,
        64,
        511,
        512,
        4095,
        4096,
        262143,
        262144,
        1 << 25,
        u64::MAX,
    ];
    let mut w = BitWriter::default();
    for v in ints {
        w.varbit_int(v);
    }
    for v in uints {
        w.varbit_uint(v);
    }
    let mut r = BitReader::new(&w.bytes, 0);
    for v in ints {
        assert_eq!(r.varbit_int(), Some(v));
    }
    for v in uints {
        assert_eq!(r.varbit_uint(), Some(v));
    }
    // The widths: 4 takes '10' + 3 bits, -4 does not fit 3 bits.
    let mut w = BitWriter::default();
    w.varbit_int(4);
    assert_eq!(w.bytes, vec![0b1010_0000]);
    let mut w = BitWriter::default();
    w.varbit_int(-4);
    assert_eq!(w.bytes, vec![0b1101_1110, 0]);
}

#[test]
fn zero_thresholds_take_their_documented_forms() {
    for (t, first_byte, len) in [
        (0.0, 0u8, 1usize),
        (2f64.powi(-128), 116, 1),
        (1024.0, 254, 1),
        (2f64.powi(-243), 1, 1),
        (2048.0, 255, 9),
        (0.001, 255, 9),
    ] {
        let mut w = BitWriter::default();
        write_zero_threshold(&mut w, t);
        assert_eq!(
            (w.bytes[0], w.bytes.len()),
            (first_byte, len),
            "threshold {t}"
        );
        let mut r = BitReader::new(&w.bytes, 0);
        assert_eq!(
            read_zero_threshold(&mut r).map(f64::to_bits),
            Some(t.to_bits())
        );
    }
}

#[test]
fn integer_histograms_round_trip_with_resets_and_stale_markers() {
    let mut hs = Vec::new();
    let mut abs = vec![1i64, 4, 2];
    for i in 0..300i64 {
        let t = 1_000 + i * 15_000 + (i % 7) * 3; // jitter: non-zero dods
        if i == 50 || i == 51 {
            hs.push(stale(t));
            continue;
        }
        if i == 200 {
            abs = vec![0, 1, 0]; // a counter reset
        }
        for (k, a) in abs.iter_mut().enumerate() {
            *a += (i + k as i64) % 3;
        }
        hs.push(int_hist(t, (i / 10) as u64, &abs, i as f64 * 1.25));
    }
    let chunks = encode_histogram_chunks(&hs);
    assert!(chunks.iter().all(|(e, _)| *e == ChunkEncoding::Histogram));
    assert_same(&decode_all(&chunks), &hs);
    // The chunk starting at the reset is flagged as one; chunks cut at 120
    // samples are flagged "no reset".
    let flags: Vec<u8> = chunks.iter().map(|(_, c)| c.data[2] & FLAG_MASK).collect();
    let reset_at = chunks
        .iter()
        .position(|(_, c)| c.min_time_ms == hs[200].timestamp)
        .expect("a chunk starts at the reset");
    assert_eq!(flags[reset_at], FLAG_COUNTER_RESET);
    assert!(
        chunks
            .iter()
            .all(|(_, c)| u16::from_be_bytes([c.data[0], c.data[1]]) <= 120)
    );
    assert!(flags.contains(&FLAG_NOT_COUNTER_RESET));
    let decoded = decode_all(&chunks);
    let at_reset = decoded.iter().find(|h| h.timestamp == hs[200].timestamp);
    assert_eq!(at_reset.map(|h| h.reset_hint), Some(HINT_YES));
}

#[test]
fn float_and_gauge_histograms_round_trip() {
    let mut hs = Vec::new();
    for i in 0..130i64 {
        let f = i as f64;
        let mut h = float_hist(i * 10_000, &[f * 0.5, 1.0 + f, 3.25], &[f / 3.0], -f * 0.1);
        if i >= 100 {
            h.reset_hint = HINT_GAUGE;
            h.positive_counts[0] = 100.0 - f; // gauges go down without a reset
        }
        hs.push(h);
    }
    hs.push(stale(1_400_000));
    let chunks = encode_histogram_chunks(&hs);
    assert!(
        chunks
            .iter()
            .all(|(e, _)| *e == ChunkEncoding::FloatHistogram)
    );
    assert_same(&decode_all(&chunks), &hs);
    let gauge = chunks.iter().find(|(_, c)| c.min_time_ms == 1_000_000);
    assert_eq!(gauge.map(|(_, c)| c.data[2] & FLAG_MASK), Some(FLAG_GAUGE));
}

#[test]
fn layout_and_kind_changes_start_new_chunks() {
    let mut hs = vec![
        int_hist(1_000, 0, &[1, 2], 1.0),
        int_hist(2_000, 0, &[1, 2, 3], 2.0), // a new bucket
        float_hist(3_000, &[1.0], &[], 3.0), // float now
        int_hist(4_000, 0, &[5, 5, 5], 4.0),
    ];
    // Custom buckets, bounds in both the compact and the plain form.
    hs.push(Histogram {
        count: Some(Count::Int(6)),
        sum: 9.0,
        schema: CUSTOM_BUCKETS_SCHEMA,
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1, 0],
        custom_values: vec![0.005, 0.1, 1.5e-7, 40000.0],
        timestamp: 5_000,
        ..Default::default()
    });
    let chunks = encode_histogram_chunks(&hs);
    assert_eq!(chunks.len(), 5);
    assert_same(&decode_all(&chunks), &hs);
}

#[test]
fn malformed_chunks_are_errors_not_panics() {
    let mut rng = StdRng::seed_from_u64(7);
    let hs: Vec<Histogram> = (0..40)
        .map(|i| int_hist(i * 1000, 1, &[i, 2 * i, 1], i as f64))
        .collect();
    let chunks = encode_histogram_chunks(&hs);
    let data = &chunks[0].1.data;
    for cut in 0..data.len() {
        let _ = decode_histogram_chunk(&data[..cut], false);
        let _ = decode_histogram_chunk(&data[..cut], true);
    }
    assert!(matches!(
        decode_histogram_chunk(&data[..data.len() / 2], false),
        Err(HistogramChunkError::Truncated { .. })
    ));
    for _ in 0..2000 {
        let len = rng.random_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = decode_histogram_chunk(&bytes, rng.random());
    }
}
