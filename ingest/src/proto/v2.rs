//! Remote write 2.0 messages (`io.prometheus.write.v2.Request`), field
//! numbers from Prometheus' `prompb/io/prometheus/write/v2/types.proto`.
//! Strings are interned: every label name and value, help text and unit is an
//! index into `Request::symbols`.

use super::{Histogram, Sample};

/// The `proto=` parameter of a 2.0 request's Content-Type.
pub const PROTO_NAME: &str = "io.prometheus.write.v2.Request";

/// `io.prometheus.write.v2.Request` (fields 1 to 3 are reserved so that a 1.0
/// body read as 2.0 decodes as an empty message).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// Deduplicated strings; the first must be the empty string.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Name and value references, in pairs, sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    /// Samples or histograms (not both), oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// Milliseconds; 0 means unset.
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds; 0 means unset.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    /// `MetricType`: 0 unspecified, 1 counter, 2 gauge, 3 histogram,
    /// 4 gauge histogram, 5 summary, 6 info, 7 state set.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// A sender's symbols table: interns strings, first entry the empty string.
/// Strata only receives 2.0; this builds requests for tests, the benchmark
/// and the fuzz seeds.
#[derive(Clone, Debug)]
pub struct SymbolTable {
    symbols: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Default for SymbolTable {
    fn default() -> Self {
        Self {
            symbols: vec![String::new()],
            index: [(String::new(), 0)].into_iter().collect(),
        }
    }
}

impl SymbolTable {
    /// The reference of `s`, added if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&r) = self.index.get(s) {
            return r;
        }
        let r = u32::try_from(self.symbols.len()).unwrap_or(u32::MAX);
        self.symbols.push(s.to_string());
        self.index.insert(s.to_string(), r);
        r
    }

    /// `labels_refs` of (name, value) pairs, in the given order.
    pub fn label_refs(&mut self, labels: &[(&str, &str)]) -> Vec<u32> {
        labels
            .iter()
            .flat_map(|(n, v)| [self.intern(n), self.intern(v)])
            .collect()
    }

    pub fn into_symbols(self) -> Vec<String> {
        self.symbols
    }
}
