//! Prometheus remote write protobuf messages, declared with prost derives so
//! no protoc is needed: 1.0 (`prometheus.WriteRequest`, here; field numbers
//! from prometheus/prompb `types.proto` and `remote.proto`) and 2.0
//! (`io.prometheus.write.v2.Request`, in [`v2`]). Native histograms have the
//! same layout in both: `storage::histogram::Histogram`.

pub mod v2;

pub use storage::histogram::Histogram;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries` without its native histograms (tag 4, skipped by
/// prost as an unknown field): the short form that float-only senders and
/// tests build. [`FullTimeSeries`] has every field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.WriteRequest` with every field 1.0 ingest reads: what the
/// reference decoder ([`crate::remote_write::decode`]) returns.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FullWriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<FullTimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries` with native histograms.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FullTimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

impl From<WriteRequest> for FullWriteRequest {
    fn from(r: WriteRequest) -> Self {
        Self {
            timeseries: r
                .timeseries
                .into_iter()
                .map(|t| FullTimeSeries {
                    labels: t.labels,
                    samples: t.samples,
                    exemplars: t.exemplars,
                    histograms: Vec::new(),
                })
                .collect(),
            metadata: r.metadata,
        }
    }
}
