//! Sidecars: the immutable object an ingester writes, next to a segment, for
//! what a commit carries besides float samples: native histogram samples,
//! exemplars and metric metadata. The format is `docs/format/sidecar.md`.
//!
//! Reads dedupe across sidecars the way segments do (a histogram at the same
//! (series, timestamp) in a newer sidecar wins; identical exemplars and
//! metadata entries are kept once), so writing one twice, or reading an
//! object and its merged copy, never changes an answer.

use bytes::Bytes;
use prost::Message;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::StorageError;
use crate::histogram::Histogram;
use crate::labels::{Label, Labels};

type Result<T> = std::result::Result<T, StorageError>;

/// First bytes of every sidecar object.
pub const MAGIC: &[u8; 8] = b"STRATASC";
pub const VERSION: u32 = 1;
/// Magic, version, min and max time, checksum, payload length.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 8;
/// Decompressed payloads above this are refused (a corrupt or hostile object).
const MAX_PAYLOAD: usize = 1 << 30;

/// Native histogram samples of one series, in the order received.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSeries {
    pub labels: Labels,
    /// Each with its millisecond timestamp in `timestamp`.
    pub histograms: Vec<Histogram>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// For example `trace_id`; may be empty.
    pub labels: Labels,
    pub value: f64,
    pub timestamp: i64,
}

/// Exemplars attached to one series.
#[derive(Clone, Debug, PartialEq)]
pub struct ExemplarSeries {
    pub labels: Labels,
    pub exemplars: Vec<Exemplar>,
}

/// Prometheus' metric types, numbered as in remote write 1.0 and 2.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    StateSet = 7,
}

impl MetricType {
    /// The wire number; unknown numbers are `Unknown`.
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    /// The name `/api/v1/metadata` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
        }
    }
}

/// Metadata of one metric family.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricMetadata {
    pub metric_family_name: String,
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// Everything of one commit that is not a float sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sidecar {
    pub histograms: Vec<HistogramSeries>,
    pub exemplars: Vec<ExemplarSeries>,
    pub metadata: Vec<MetricMetadata>,
}

impl Sidecar {
    pub fn is_empty(&self) -> bool {
        self.histograms.is_empty() && self.exemplars.is_empty() && self.metadata.is_empty()
    }

    pub fn histogram_count(&self) -> usize {
        self.histograms.iter().map(|s| s.histograms.len()).sum()
    }

    pub fn exemplar_count(&self) -> usize {
        self.exemplars.iter().map(|s| s.exemplars.len()).sum()
    }

    /// Appends `other` (group commit joins requests this way).
    pub fn extend(&mut self, other: Sidecar) {
        self.histograms.extend(other.histograms);
        self.exemplars.extend(other.exemplars);
        self.metadata.extend(other.metadata);
    }

    /// Smallest and largest histogram or exemplar timestamp, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let times = self
            .histograms
            .iter()
            .flat_map(|s| s.histograms.iter().map(|h| h.timestamp))
            .chain(
                self.exemplars
                    .iter()
                    .flat_map(|s| s.exemplars.iter().map(|e| e.timestamp)),
            );
        times.fold(None, |acc, t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((lo.min(t), hi.max(t))),
        })
    }

    /// Rough in-memory size, for batch sealing and back-pressure.
    pub fn estimate_bytes(&self) -> usize {
        let labels = |l: &Labels| {
            l.iter()
                .map(|l| l.name.len() + l.value.len() + 16)
                .sum::<usize>()
        };
        self.histograms
            .iter()
            .map(|s| {
                labels(&s.labels)
                    + s.histograms
                        .iter()
                        .map(|h| 64 + h.encoded_len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + self
                .exemplars
                .iter()
                .map(|s| {
                    labels(&s.labels)
                        + s.exemplars
                            .iter()
                            .map(|e| 24 + labels(&e.labels))
                            .sum::<usize>()
                })
                .sum::<usize>()
            + self
                .metadata
                .iter()
                .map(|m| 32 + m.metric_family_name.len() + m.help.len() + m.unit.len())
                .sum::<usize>()
    }
}

/// Time range a sidecar header announces (without reading the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub min_time: i64,
    pub max_time: i64,
    pub checksum: u64,
    pub payload_len: u64,
}

impl Header {
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.min_time <= end_ms && self.max_time >= start_ms
    }
}

/// Encodes `sidecar`; `written_ms` is the time range announced when it holds
/// only metadata (no sample time of its own).
pub fn encode(sidecar: &Sidecar, written_ms: i64) -> Result<Bytes> {
    let (min_time, max_time) = sidecar.time_range().unwrap_or((written_ms, written_ms));
    let proto = wire::Payload::from_sidecar(sidecar);
    let payload = zstd::bulk::compress(&proto.encode_to_vec(), 3)
        .map_err(|e| StorageError::Encode(format!("sidecar: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&min_time.to_le_bytes());
    out.extend_from_slice(&max_time.to_le_bytes());
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(Bytes::from(out))
}

/// Reads the fixed header (the first `HEADER_LEN` bytes of the object).
pub fn decode_header(key: &str, bytes: &[u8]) -> Result<Header> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes, shorter than the sidecar header",
            bytes.len()
        )));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not a Strata sidecar (bad magic)".into()));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != VERSION {
        return Err(corrupt(format!(
            "sidecar format version {version} is not supported"
        )));
    }
    let header = Header {
        min_time: u64_at(12) as i64,
        max_time: u64_at(20) as i64,
        checksum: u64_at(28),
        payload_len: u64_at(36),
    };
    if header.min_time > header.max_time {
        return Err(corrupt("min time after max time".into()));
    }
    Ok(header)
}

/// Decodes a whole sidecar object, verifying its checksum and every label set
/// and histogram in it.
pub fn decode(key: &str, bytes: &[u8]) -> Result<(Header, Sidecar)> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let header = decode_header(key, bytes)?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != header.payload_len {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {}",
            payload.len(),
            header.payload_len
        )));
    }
    if xxh3_64(payload) != header.checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let raw = zstd::bulk::decompress(payload, MAX_PAYLOAD)
        .map_err(|e| corrupt(format!("payload does not decompress: {e}")))?;
    let proto = wire::Payload::decode(raw.as_slice())
        .map_err(|e| corrupt(format!("payload does not decode: {e}")))?;
    let sidecar = proto.into_sidecar().map_err(corrupt)?;
    if let Some((lo, hi)) = sidecar.time_range()
        && (lo < header.min_time || hi > header.max_time)
    {
        return Err(corrupt(
            "a timestamp lies outside the header's time range".into(),
        ));
    }
    Ok((header, sidecar))
}

/// The protobuf messages of the payload (field numbers are the format).
mod wire {
    use super::*;

    #[derive(Clone, PartialEq, Message)]
    pub struct Payload {
        #[prost(message, repeated, tag = "1")]
        pub histograms: Vec<HistogramSeries>,
        #[prost(message, repeated, tag = "2")]
        pub exemplars: Vec<ExemplarSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<Metadata>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct HistogramSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        #[prost(message, repeated, tag = "2")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct ExemplarSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        #[prost(message, repeated, tag = "2")]
        pub exemplars: Vec<Exemplar>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<LabelPair>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct Metadata {
        #[prost(string, tag = "1")]
        pub metric_family_name: String,
        #[prost(int32, tag = "2")]
        pub metric_type: i32,
        #[prost(string, tag = "3")]
        pub help: String,
        #[prost(string, tag = "4")]
        pub unit: String,
    }

    fn pairs(labels: &Labels) -> Vec<LabelPair> {
        labels
            .iter()
            .map(|l| LabelPair {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect()
    }

    fn labels(pairs: Vec<LabelPair>, empty_ok: bool) -> std::result::Result<Labels, String> {
        if pairs.is_empty() && empty_ok {
            return Ok(Labels::empty());
        }
        let v: Vec<Label> = pairs
            .into_iter()
            .map(|p| Label::new(p.name, p.value))
            .collect();
        Labels::from_sorted(v).map_err(|e| format!("label set: {e}"))
    }

    impl Payload {
        pub fn from_sidecar(s: &super::Sidecar) -> Self {
            Self {
                histograms: s
                    .histograms
                    .iter()
                    .map(|h| HistogramSeries {
                        labels: pairs(&h.labels),
                        histograms: h.histograms.clone(),
                    })
                    .collect(),
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| ExemplarSeries {
                        labels: pairs(&e.labels),
                        exemplars: e
                            .exemplars
                            .iter()
                            .map(|x| Exemplar {
                                labels: pairs(&x.labels),
                                value: x.value,
                                timestamp: x.timestamp,
                            })
                            .collect(),
                    })
                    .collect(),
                metadata: s
                    .metadata
                    .iter()
                    .map(|m| Metadata {
                        metric_family_name: m.metric_family_name.clone(),
                        metric_type: m.metric_type as i32,
                        help: m.help.clone(),
                        unit: m.unit.clone(),
                    })
                    .collect(),
            }
        }

        pub fn into_sidecar(self) -> std::result::Result<super::Sidecar, String> {
            let mut histograms = Vec::with_capacity(self.histograms.len());
            for h in self.histograms {
                for x in &h.histograms {
                    x.validate().map_err(|e| format!("histogram: {e}"))?;
                }
                histograms.push(super::HistogramSeries {
                    labels: labels(h.labels, false)?,
                    histograms: h.histograms,
                });
            }
            let mut exemplars = Vec::with_capacity(self.exemplars.len());
            for e in self.exemplars {
                let mut xs = Vec::with_capacity(e.exemplars.len());
                for x in e.exemplars {
                    xs.push(super::Exemplar {
                        labels: labels(x.labels, true)?,
                        value: x.value,
                        timestamp: x.timestamp,
                    });
                }
                exemplars.push(super::ExemplarSeries {
                    labels: labels(e.labels, false)?,
                    exemplars: xs,
                });
            }
            let metadata = self
                .metadata
                .into_iter()
                .map(|m| MetricMetadata {
                    metric_family_name: m.metric_family_name,
                    metric_type: MetricType::from_i32(m.metric_type),
                    help: m.help,
                    unit: m.unit,
                })
                .collect();
            Ok(super::Sidecar {
                histograms,
                exemplars,
                metadata,
            })
        }
    }
}

#[cfg(test)]
mod tests;
