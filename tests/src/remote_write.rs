//! Prometheus remote write 1.0 requests: snappy (block format) compressed
//! `prometheus.WriteRequest` protobufs.

use std::time::{SystemTime, UNIX_EPOCH};

use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A series with labels in exactly the given order (so that tests can build
/// unsorted or duplicate label sets) and the given `(timestamp_ms, value)` samples.
pub fn series_raw(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).to_string(),
                value: (*v).to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: Vec::new(),
    }
}

/// A series with labels sorted by name, as remote write requires.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut sorted = labels.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    series_raw(&sorted, samples)
}

/// A write request holding the given series.
pub fn request(timeseries: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
}

/// Snappy-compresses (raw block format) a protobuf payload.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compression of an in-memory buffer")
}

/// Encodes a request as a remote-write body: protobuf, then snappy.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    snappy(&req.encode_to_vec())
}

/// POSTs a remote-write body and returns the status code and response body.
/// `tenant` sets `X-Scope-OrgID` (an empty string sends an empty header).
pub async fn send(
    client: &reqwest::Client,
    write_url: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut req = client
        .post(write_url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("User-Agent", "strata-tests")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}
