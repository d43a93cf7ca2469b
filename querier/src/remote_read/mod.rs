//! Prometheus remote read (`POST /api/v1/read`): decoding the snappy
//! protobuf `ReadRequest`, choosing the response type as Prometheus does,
//! and building the two answers: `SAMPLES` (one snappy `ReadResponse`, float
//! samples and native histograms) and `STREAMED_XOR_CHUNKS` (framed
//! `ChunkedReadResponse` messages holding XOR chunks, one series per frame).
//! The HTTP handler is `api::remote_read`.
//!
//! Native histograms go out in `SAMPLES` answers as `prometheus.Histogram`
//! messages and in streamed answers as `HISTOGRAM`/`FLOAT_HISTOGRAM` chunks
//! ([`histogram_chunk`]), a series' float and histogram chunks in one frame
//! in time order.

mod bits;
pub mod frame;
pub mod histogram_chunk;
pub mod proto;
pub mod xor;

use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;

use storage::sidecar::HistogramSeries;
use storage::{Labels, MatchOp, Matcher, Series};

use proto::{
    Chunk, ChunkEncoding, ChunkedReadResponse, ChunkedSeries, Label, LabelMatcher, MatcherType,
    Query, QueryResult, ReadRequest, ReadResponse, ResponseType, Sample, TimeSeries,
};

/// Content type of a `SAMPLES` answer (snappy-compressed).
pub const SAMPLES_CONTENT_TYPE: &str = "application/x-protobuf";
/// Content type of a `STREAMED_XOR_CHUNKS` answer.
pub const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";
/// Largest frame Strata writes before moving a series' remaining chunks to
/// the next frame (Prometheus' `--storage.remote.read-max-bytes-in-frame`).
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;
/// Largest accepted request, compressed and decompressed. A request is a
/// handful of matchers; this only stops abuse.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// What a remote read can fail with; `api::error` maps it to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum RemoteReadError {
    /// The client's fault: the message names the problem.
    #[error("{0}")]
    BadRequest(String),
    /// More samples than `query.max_samples` (Prometheus' sample limit).
    #[error("exceeded sample limit ({limit})")]
    TooManySamples { limit: usize },
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
}

fn bad(msg: impl Into<String>) -> RemoteReadError {
    RemoteReadError::BadRequest(msg.into())
}

/// Decodes a snappy (block format) protobuf `ReadRequest`.
pub fn decode_request(body: &[u8]) -> Result<ReadRequest, RemoteReadError> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad(format!(
            "request body of {} bytes exceeds {MAX_REQUEST_BYTES}",
            body.len()
        )));
    }
    let len = snap::raw::decompress_len(body)
        .map_err(|e| bad(format!("snappy decoding of the request: {e}")))?;
    if len > MAX_REQUEST_BYTES {
        return Err(bad(format!(
            "decoded request of {len} bytes exceeds {MAX_REQUEST_BYTES}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| bad(format!("snappy decoding of the request: {e}")))?;
    ReadRequest::decode(raw.as_slice())
        .map_err(|e| bad(format!("protobuf decoding of the ReadRequest: {e}")))
}

/// The first accepted type Strata supports, `SAMPLES` when none is given
/// (Prometheus' `NegotiateResponseType`).
pub fn negotiate(accepted: &[i32]) -> Result<ResponseType, RemoteReadError> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    accepted
        .iter()
        .find_map(|&t| ResponseType::try_from(t).ok())
        .ok_or_else(|| {
            bad(format!(
                "server does not support any of the requested response types: {accepted:?}; \
                 supported: SAMPLES (0), STREAMED_XOR_CHUNKS (1)"
            ))
        })
}

/// A query's matchers and time range, checked.
#[derive(Clone, Debug)]
pub struct Selection {
    pub matchers: Vec<Matcher>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Checks every query of a request before any data is read.
pub fn selections(req: &ReadRequest) -> Result<Vec<Selection>, RemoteReadError> {
    if req.queries.is_empty() {
        return Err(bad("the read request has no queries"));
    }
    req.queries
        .iter()
        .enumerate()
        .map(|(i, q)| selection(q).map_err(|e| bad(format!("query {i}: {e}"))))
        .collect()
}

fn selection(q: &Query) -> Result<Selection, RemoteReadError> {
    if q.end_timestamp_ms < q.start_timestamp_ms {
        return Err(bad(format!(
            "end {} is before start {}",
            q.end_timestamp_ms, q.start_timestamp_ms
        )));
    }
    let matchers = q
        .matchers
        .iter()
        .map(matcher)
        .collect::<Result<Vec<_>, _>>()?;
    // As for PromQL selectors: a query that matches every series is refused.
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(bad(
            "at least one matcher must not match the empty string (a selector of all series)",
        ));
    }
    Ok(Selection {
        matchers,
        start_ms: q.start_timestamp_ms,
        end_ms: q.end_timestamp_ms,
    })
}

fn matcher(m: &LabelMatcher) -> Result<Matcher, RemoteReadError> {
    let op = match MatcherType::try_from(m.r#type) {
        Ok(MatcherType::Eq) => MatchOp::Equal,
        Ok(MatcherType::Neq) => MatchOp::NotEqual,
        Ok(MatcherType::Re) => MatchOp::Regex,
        Ok(MatcherType::Nre) => MatchOp::NotRegex,
        Err(_) => {
            return Err(bad(format!(
                "matcher on {:?}: unknown type {}",
                m.name, m.r#type
            )));
        }
    };
    if m.name.is_empty() {
        return Err(bad("matcher with an empty label name"));
    }
    Matcher::new(op, &m.name, &m.value).map_err(|e| bad(e.to_string()))
}

/// Counts samples against the request's limit.
#[derive(Debug)]
pub struct SampleBudget {
    left: usize,
    limit: usize,
}

impl SampleBudget {
    pub fn new(limit: usize) -> Self {
        Self { left: limit, limit }
    }

    pub fn take(&mut self, series: &[Series]) -> Result<(), RemoteReadError> {
        self.spend(series.iter().map(|s| s.samples.len()).sum())
    }

    /// Native histogram samples count like float samples.
    pub fn take_histograms(&mut self, series: &[HistogramSeries]) -> Result<(), RemoteReadError> {
        self.spend(series.iter().map(|s| s.histograms.len()).sum())
    }

    fn spend(&mut self, n: usize) -> Result<(), RemoteReadError> {
        self.left = self
            .left
            .checked_sub(n)
            .ok_or(RemoteReadError::TooManySamples { limit: self.limit })?;
        Ok(())
    }
}

fn proto_labels(labels: &Labels) -> Vec<Label> {
    labels
        .iter()
        .map(|l| Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// What one query of a remote read found: float series and native
/// histogram series, each sorted by labels; a series may be in both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryData {
    pub floats: Vec<Series>,
    pub histograms: Vec<HistogramSeries>,
}

/// One query's series as `TimeSeries`, sorted by labels, a series' float
/// samples and histograms in one message.
fn time_series(data: &QueryData) -> Vec<TimeSeries> {
    let mut by_labels: BTreeMap<&Labels, TimeSeries> = BTreeMap::new();
    for s in &data.floats {
        by_labels
            .entry(&s.labels)
            .or_insert_with(|| TimeSeries {
                labels: proto_labels(&s.labels),
                ..Default::default()
            })
            .samples
            .extend(s.samples.iter().map(|p| Sample {
                value: p.v,
                timestamp: p.t,
            }));
    }
    for s in &data.histograms {
        by_labels
            .entry(&s.labels)
            .or_insert_with(|| TimeSeries {
                labels: proto_labels(&s.labels),
                ..Default::default()
            })
            .histograms
            .extend(s.histograms.iter().cloned());
    }
    by_labels.into_values().collect()
}

/// A `SAMPLES` answer: the protobuf `ReadResponse`, snappy-compressed.
pub fn samples_response(results: &[QueryData]) -> Result<Vec<u8>, RemoteReadError> {
    let resp = ReadResponse {
        results: results
            .iter()
            .map(|data| QueryResult {
                timeseries: time_series(data),
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&resp.encode_to_vec())
        .map_err(|e| bad(format!("response too large to compress: {e}")))
}

/// The frames answering query `query_index` in a `STREAMED_XOR_CHUNKS`
/// answer: one series per frame (its float and histogram chunks together,
/// in time order), series sorted by labels, a series whose chunks pass
/// `max_frame_bytes` continued in further frames with the same labels, as
/// Prometheus' own server writes them.
pub fn chunked_frames(query_index: usize, data: &QueryData, max_frame_bytes: usize) -> Vec<Bytes> {
    let mut by_labels: BTreeMap<&Labels, Vec<Chunk>> = BTreeMap::new();
    for s in &data.floats {
        let chunks = by_labels.entry(&s.labels).or_default();
        chunks.extend(xor::encode_chunks(&s.samples).into_iter().map(|c| Chunk {
            min_time_ms: c.min_time_ms,
            max_time_ms: c.max_time_ms,
            r#type: ChunkEncoding::Xor as i32,
            data: c.data,
        }));
    }
    for s in &data.histograms {
        let chunks = by_labels.entry(&s.labels).or_default();
        let encoded = histogram_chunk::encode_histogram_chunks(&s.histograms);
        chunks.extend(encoded.into_iter().map(|(encoding, c)| Chunk {
            min_time_ms: c.min_time_ms,
            max_time_ms: c.max_time_ms,
            r#type: encoding as i32,
            data: c.data,
        }));
    }
    let mut frames = Vec::new();
    for (labels, mut all) in by_labels {
        all.sort_by_key(|c| c.min_time_ms);
        let labels = proto_labels(labels);
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut bytes = 0usize;
        let mut flush = |chunks: &mut Vec<Chunk>| {
            let msg = ChunkedReadResponse {
                chunked_series: vec![ChunkedSeries {
                    labels: labels.clone(),
                    chunks: std::mem::take(chunks),
                }],
                query_index: i64::try_from(query_index).unwrap_or(i64::MAX),
            };
            frames.push(frame::frame(&msg.encode_to_vec()));
        };
        for c in all {
            bytes += c.data.len();
            chunks.push(c);
            if bytes >= max_frame_bytes {
                flush(&mut chunks);
                bytes = 0;
            }
        }
        if !chunks.is_empty() {
            flush(&mut chunks);
        }
    }
    frames
}

#[cfg(test)]
pub(crate) mod tests;
