//! Remote write 2.0 (`io.prometheus.write.v2.Request`): prost decoding and
//! validation into the same [`Validated`] outcome as 1.0.
//!
//! Request-level faults (a body that does not decode, a symbols table that
//! does not start with the empty string) refuse the whole request. Faults of
//! one series reject that series only, with the valid ones stored and the
//! request answered 400 naming the first fault (the 1.0 rule): a label,
//! exemplar, help or unit reference outside the symbols table, `labels_refs`
//! of odd length, labels unsorted, duplicated, invalid or without a metric
//! name, samples and histograms in one series, samples or histograms out of
//! timestamp order, an invalid histogram or exemplar, an unknown metric type.
//!
//! Leniencies, as Prometheus' own receiver: a series with neither samples
//! nor histograms is accepted for its exemplars and metadata (Prometheus'
//! sender sends exemplars that way); labels with empty values are dropped;
//! `created_timestamp` is ignored (Prometheus ingests a zero sample at it only
//! with its `created-timestamp-zero-ingestion` feature flag).

use prost::Message;
use storage::sidecar::MetricMetadata;

use super::{SeriesData, SeriesLimits, Validated, describe, extras, labels_of};
use crate::error::IngestError;
use crate::proto::v2::{PROTO_NAME, Request, TimeSeries};
use crate::proto::{self, Histogram, Sample};
use crate::series_cache::SeriesCache;

/// Decompresses and decodes a 2.0 body; `max_decoded` bounds the decompressed
/// size before allocating.
pub fn decode(body: &[u8], max_decoded: usize) -> Result<Request, IngestError> {
    let raw = super::decompress(body, max_decoded)?;
    Request::decode(raw.as_slice()).map_err(|e| {
        IngestError::RemoteWriteV2(format!("protobuf decoding of {PROTO_NAME} failed: {e}"))
    })
}

/// [`decode`] then [`validate`].
pub fn decode_validated(
    body: &[u8],
    max_decoded: usize,
    limits: &SeriesLimits,
) -> Result<Validated, IngestError> {
    validate(decode(body, max_decoded)?, limits)
}

/// [`decode_validated`], taking the label sets of known series from `cache`
/// (what the handler runs).
pub fn decode_validated_cached(
    body: &[u8],
    max_decoded: usize,
    limits: &SeriesLimits,
    cache: &SeriesCache,
) -> Result<Validated, IngestError> {
    validate_cached(decode(body, max_decoded)?, limits, cache)
}

/// Resolves the symbol references of every series and validates it.
pub fn validate(req: Request, limits: &SeriesLimits) -> Result<Validated, IngestError> {
    validate_cached(req, limits, &SeriesCache::new(0))
}

/// [`validate`] with a series cache. Its keys for 2.0 are the resolved label
/// strings (refs differ from request to request): a 0x01 byte, then each
/// name and value followed by 0xff, a byte UTF-8 never contains, so no two
/// label lists share a key, nor a 2.0 key a 1.0 one (those start 0x0a).
pub fn validate_cached(
    req: Request,
    limits: &SeriesLimits,
    cache: &SeriesCache,
) -> Result<Validated, IngestError> {
    match req.symbols.first() {
        Some(first) if !first.is_empty() => {
            return Err(IngestError::RemoteWriteV2(format!(
                "symbols[0] must be the empty string, got {first:?}"
            )));
        }
        None if !req.timeseries.is_empty() => {
            return Err(IngestError::RemoteWriteV2(
                "the symbols table is empty (it must start with the empty string)".into(),
            ));
        }
        _ => {}
    }
    let mut out = Validated {
        total: req.timeseries.len(),
        ..Default::default()
    };
    let mut key = Vec::new();
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let (data, metadata) = series(i, ts, &req.symbols, limits, cache, &mut key);
        out.add(data);
        out.add_metadata(metadata);
    }
    Ok(out)
}

fn symbol<'a>(symbols: &'a [String], r: u32, what: &str) -> Result<&'a str, String> {
    symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
        format!(
            "{what} reference {r} is out of range (the request has {} symbols)",
            symbols.len()
        )
    })
}

/// (name, value) pairs of `refs`.
fn pairs<'a>(
    symbols: &'a [String],
    refs: &[u32],
    what: &str,
) -> Result<Vec<(&'a str, &'a str)>, String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!(
            "{what} labels_refs has odd length {} (name and value references come in pairs)",
            refs.len()
        ));
    }
    refs.chunks_exact(2)
        .map(|p| Ok((symbol(symbols, p[0], what)?, symbol(symbols, p[1], what)?)))
        .collect()
}

/// Strictly increasing timestamps, as the spec requires of a series.
fn check_order(what: &str, times: impl Iterator<Item = i64>) -> Result<(), String> {
    let mut prev: Option<i64> = None;
    for (k, t) in times.enumerate() {
        if let Some(p) = prev
            && t <= p
        {
            return Err(format!(
                "{what} are not in timestamp order: {what} {k} at {t} follows one at {p}"
            ));
        }
        prev = Some(t);
    }
    Ok(())
}

type SeriesOutcome = (Result<SeriesData, (String, String)>, Option<MetricMetadata>);

/// One series: its data or the rejection (series description, reason), and
/// its metadata if it is valid.
fn series(
    i: usize,
    ts: TimeSeries,
    symbols: &[String],
    limits: &SeriesLimits,
    cache: &SeriesCache,
    key: &mut Vec<u8>,
) -> SeriesOutcome {
    let label_pairs = match pairs(symbols, &ts.labels_refs, "label") {
        Ok(p) => p,
        Err(reason) => return (Err((format!("timeseries[{i}]"), reason)), None),
    };
    key.clear();
    key.push(0x01);
    for (n, v) in &label_pairs {
        key.extend_from_slice(n.as_bytes());
        key.push(0xff);
        key.extend_from_slice(v.as_bytes());
        key.push(0xff);
    }
    let labels = match cache.get(key) {
        Some(l) => l,
        None => {
            let labels = label_pairs
                .into_iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect();
            match labels_of(labels, limits) {
                Ok(l) => {
                    cache.insert(key, l.clone());
                    l
                }
                Err(e) => return (Err(e), None),
            }
        }
    };
    let checked = (|| {
        if !ts.samples.is_empty() && !ts.histograms.is_empty() {
            return Err(
                "carries both samples and histograms (they must be sent as two series)".to_string(),
            );
        }
        check_order("samples", ts.samples.iter().map(|s| s.timestamp))?;
        check_order("histograms", ts.histograms.iter().map(|h| h.timestamp))?;
        extras::check_histograms(&ts.histograms)?;
        let metadata = match &ts.metadata {
            Some(m) => {
                if !(0..=7).contains(&m.r#type) {
                    return Err(format!(
                        "metadata type {} is not a known metric type",
                        m.r#type
                    ));
                }
                let help = symbol(symbols, m.help_ref, "help")?;
                let unit = symbol(symbols, m.unit_ref, "unit")?;
                extras::metadata(labels.metric_name().unwrap_or(""), m.r#type, help, unit)
            }
            None => None,
        };
        let samples: Vec<storage::Sample> = ts
            .samples
            .iter()
            .map(|s: &Sample| storage::Sample::new(s.timestamp, s.value))
            .collect();
        let histograms: Vec<Histogram> = ts.histograms;
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let l = pairs(symbols, &e.labels_refs, "exemplar label")?;
            let l = extras::exemplar_labels(
                l.into_iter().map(|(n, v)| (n.to_string(), v.to_string())),
            )?;
            exemplars.push(extras::exemplar(
                l,
                e.value,
                e.timestamp,
                &samples,
                &histograms,
            )?);
        }
        Ok((samples, histograms, exemplars, metadata))
    })();
    match checked {
        Ok((samples, histograms, exemplars, metadata)) => (
            Ok(SeriesData {
                labels,
                samples,
                histograms,
                exemplars,
            }),
            metadata,
        ),
        Err(reason) => (
            Err((
                describe(labels.iter().map(|l| (&*l.name, &*l.value))),
                reason,
            )),
            None,
        ),
    }
}

#[cfg(test)]
mod tests;
