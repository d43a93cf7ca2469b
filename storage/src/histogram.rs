//! Native histograms as Strata stores them: exactly the fields Prometheus'
//! `prometheus.Histogram` message carries (remote write 1.0 and 2.0 use the
//! same field numbers), so a histogram written by any protocol round-trips
//! bit for bit, and its stored encoding is that protobuf message.
//!
//! PromQL converts them to its float histogram
//! (`querier::promql::native_histogram`); remote read returns them as stored.

use prost::Message;

/// One native histogram sample (integer or float counts), with its
/// millisecond timestamp in `timestamp`.
#[derive(Clone, PartialEq, Message)]
pub struct Histogram {
    #[prost(oneof = "Count", tags = "1, 2")]
    pub count: Option<Count>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Bucket resolution: -4..=8 for exponential buckets, -53 for custom
    /// bucket boundaries (`custom_values`).
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "ZeroCount", tags = "6, 7")]
    pub zero_count: Option<ZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Integer histograms: bucket counts as deltas to the previous bucket.
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Float histograms: absolute bucket counts.
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 yes, 2 no, 3 gauge (kept as sent).
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum Count {
    #[prost(uint64, tag = "1")]
    Int(u64),
    #[prost(double, tag = "2")]
    Float(f64),
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum ZeroCount {
    #[prost(uint64, tag = "6")]
    Int(u64),
    #[prost(double, tag = "7")]
    Float(f64),
}

#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the start index for the first span).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// Schema of histograms with custom bucket boundaries (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

impl Histogram {
    /// A float histogram has float counts; an integer one integer counts.
    pub fn is_float(&self) -> bool {
        matches!(self.count, Some(Count::Float(_)))
    }

    /// Checks the structure Prometheus checks on ingest; the error names the
    /// problem (for a 400 answer).
    pub fn validate(&self) -> Result<(), String> {
        let schema = self.schema;
        if !((-4..=8).contains(&schema) || schema == CUSTOM_BUCKETS_SCHEMA) {
            return Err(format!(
                "histogram schema {schema} is not in -4..=8 or {CUSTOM_BUCKETS_SCHEMA}"
            ));
        }
        if schema == CUSTOM_BUCKETS_SCHEMA {
            if !self.negative_spans.is_empty() {
                return Err("custom-bucket histogram has negative buckets".into());
            }
            if self.custom_values.windows(2).any(|w| w[0] >= w[1])
                || self.custom_values.iter().any(|v| v.is_nan())
            {
                return Err("custom bucket bounds are not strictly increasing".into());
            }
        } else if !self.custom_values.is_empty() {
            return Err(format!(
                "custom bucket bounds given with exponential schema {schema}"
            ));
        }
        if self.zero_threshold < 0.0 || self.zero_threshold.is_nan() {
            return Err(format!(
                "zero threshold {} is negative or NaN",
                self.zero_threshold
            ));
        }
        let float = match (self.count, self.zero_count) {
            (None, _) => return Err("histogram has no count".into()),
            (Some(Count::Int(_)), None | Some(ZeroCount::Int(_))) => false,
            (Some(Count::Float(_)), None | Some(ZeroCount::Float(_))) => true,
            _ => return Err("histogram mixes integer and float counts".into()),
        };
        for (side, spans, deltas, counts) in [
            (
                "negative",
                &self.negative_spans,
                &self.negative_deltas,
                &self.negative_counts,
            ),
            (
                "positive",
                &self.positive_spans,
                &self.positive_deltas,
                &self.positive_counts,
            ),
        ] {
            let buckets: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
            let (given, other) = if float {
                (counts.len(), deltas.len())
            } else {
                (deltas.len(), counts.len())
            };
            if other != 0 {
                let kind = if float { "float" } else { "integer" };
                return Err(format!(
                    "{kind} histogram carries {side} bucket values of the other kind"
                ));
            }
            if buckets != given as u64 {
                return Err(format!(
                    "{side} spans describe {buckets} buckets but {given} bucket values are given"
                ));
            }
            if spans.iter().skip(1).any(|s| s.offset < 0) {
                return Err(format!("{side} span has a negative offset"));
            }
            if float {
                if counts.iter().any(|c| *c < 0.0) {
                    return Err(format!("{side} bucket has a negative count"));
                }
            } else {
                let mut abs: i64 = 0;
                for d in deltas {
                    abs = abs.checked_add(*d).ok_or("bucket count overflows")?;
                    if abs < 0 {
                        return Err(format!("{side} bucket has a negative count"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The stored encoding (the protobuf message).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_histogram() -> Histogram {
        Histogram {
            count: Some(Count::Int(6)),
            sum: 12.5,
            schema: 1,
            zero_threshold: 1e-128,
            zero_count: Some(ZeroCount::Int(1)),
            positive_spans: vec![
                BucketSpan {
                    offset: -1,
                    length: 2,
                },
                BucketSpan {
                    offset: 3,
                    length: 1,
                },
            ],
            positive_deltas: vec![2, -1, 0],
            timestamp: 1_000,
            ..Default::default()
        }
    }

    #[test]
    fn encoding_round_trips_bit_for_bit() {
        let mut h = int_histogram();
        h.sum = f64::from_bits(0x7ff0_0000_0000_0002);
        let bytes = h.to_bytes();
        let back = Histogram::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.sum.to_bits(), h.sum.to_bits());
        assert_eq!(back.positive_spans, h.positive_spans);
        assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn valid_histograms_pass() {
        int_histogram().validate().unwrap();
        let f = Histogram {
            count: Some(Count::Float(3.5)),
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_counts: vec![1.5, 2.0],
            custom_values: vec![0.5, 1.0],
            ..Default::default()
        };
        f.validate().unwrap();
        assert!(f.is_float());
    }

    #[test]
    fn broken_histograms_are_named() {
        type Break = Box<dyn Fn(&mut Histogram)>;
        let cases: Vec<(Break, &str)> = vec![
            (Box::new(|h| h.schema = 9), "schema 9"),
            (Box::new(|h| h.positive_deltas.push(1)), "3 buckets but 4"),
            (
                Box::new(|h| h.positive_deltas = vec![1, -2, 0]),
                "negative count",
            ),
            (
                Box::new(|h| h.zero_count = Some(ZeroCount::Float(1.0))),
                "mixes integer and float",
            ),
            (Box::new(|h| h.count = None), "no count"),
            (Box::new(|h| h.positive_counts.push(1.0)), "other kind"),
            (
                Box::new(|h| h.custom_values.push(1.0)),
                "custom bucket bounds",
            ),
            (Box::new(|h| h.zero_threshold = -1.0), "zero threshold"),
        ];
        for (breaks, expect) in cases {
            let mut h = int_histogram();
            breaks(&mut h);
            let err = h.validate().unwrap_err();
            assert!(err.contains(expect), "{err:?} should mention {expect:?}");
        }
    }
}
