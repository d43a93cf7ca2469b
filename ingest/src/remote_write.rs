//! Prometheus remote write 1.0: decoding (snappy block format, protobuf
//! `WriteRequest`) and validation of the series in it. Pure functions: the
//! HTTP handler and the group commit live elsewhere.

use prost::Message;
use storage::{Label, Labels, Sample, Series};

use crate::error::IngestError;
use crate::proto;

/// Per-series limits checked at ingest (Mimir's defaults).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesLimits {
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_label_names_per_series: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 30,
        }
    }
}

/// Decompresses and decodes a remote-write 1.0 body. `max_decoded` bounds the
/// decompressed size, read from the snappy header before allocating.
pub fn decode(body: &[u8], max_decoded: usize) -> Result<proto::WriteRequest, IngestError> {
    let size = snap::raw::decompress_len(body).map_err(|e| IngestError::Snappy(e.to_string()))?;
    if size > max_decoded {
        return Err(IngestError::DecodedTooLarge {
            size,
            limit: max_decoded,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::Snappy(e.to_string()))?;
    proto::WriteRequest::decode(raw.as_slice()).map_err(|e| IngestError::Protobuf(e.to_string()))
}

/// The outcome of validating a request: series to store, and what was
/// rejected (reported to the client as a 400 after the valid ones are stored,
/// as Mimir does, so a sender that drops the request on 400 loses only the
/// invalid series).
#[derive(Debug, Default)]
pub struct Validated {
    pub series: Vec<Series>,
    pub samples: usize,
    pub rejected: usize,
    pub first_error: Option<(String, String)>,
}

impl Validated {
    pub fn error(&self, total: usize) -> Option<IngestError> {
        let (series, reason) = self.first_error.clone()?;
        Some(IngestError::InvalidSeries {
            rejected: self.rejected,
            total,
            series,
            reason,
        })
    }
}

/// Converts and validates every series of a request.
pub fn validate(req: proto::WriteRequest, limits: &SeriesLimits) -> Validated {
    let mut out = Validated::default();
    for ts in req.timeseries {
        match to_series(ts, limits) {
            Ok(s) if s.samples.is_empty() => {}
            Ok(s) => {
                out.samples += s.samples.len();
                out.series.push(s);
            }
            Err((series, reason)) => {
                out.rejected += 1;
                out.first_error.get_or_insert((series, reason));
            }
        }
    }
    out
}

fn to_series(ts: proto::TimeSeries, limits: &SeriesLimits) -> Result<Series, (String, String)> {
    let fail = |reason: String| {
        (
            describe(ts.labels.iter().map(|l| (&*l.name, &*l.value))),
            reason,
        )
    };
    if ts.labels.len() > limits.max_label_names_per_series {
        return Err(fail(format!(
            "{} labels exceed the limit of {} label names per series",
            ts.labels.len(),
            limits.max_label_names_per_series
        )));
    }
    for l in &ts.labels {
        if l.name.len() > limits.max_label_name_length {
            return Err(fail(format!(
                "label name longer than {} bytes",
                limits.max_label_name_length
            )));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(fail(format!(
                "value of label {} longer than {} bytes",
                l.name, limits.max_label_value_length
            )));
        }
    }
    // An empty value means "no such label" in Prometheus: drop it, as the
    // Prometheus TSDB does, rather than reject the series. The strings are
    // moved, not copied: this runs for every label of every request, and the
    // description for an error message is only built on the error path.
    let pairs: Vec<Label> = ts
        .labels
        .into_iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| Label::new(l.name, l.value))
        .collect();
    let describe_pairs = |pairs: &[Label]| describe(pairs.iter().map(|l| (&*l.name, &*l.value)));
    if let Err(e) = storage::labels::check_sorted(&pairs) {
        return Err((describe_pairs(&pairs), e.to_string()));
    }
    let labels = Labels::from_sorted(pairs).map_err(|e| (String::new(), e.to_string()))?;
    labels
        .validate()
        .map_err(|e| (describe_pairs(labels.as_slice()), e.to_string()))?;
    let samples = ts
        .samples
        .iter()
        .map(|s| Sample::new(s.timestamp, s.value))
        .collect();
    Ok(Series { labels, samples })
}

/// `{a="b", c="d"}`, cut at 200 bytes, for error messages.
fn describe<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s: String = labels
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if s.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    format!("{{{s}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> proto::Label {
        proto::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn ts(labels: Vec<proto::Label>, samples: &[(i64, f64)]) -> proto::TimeSeries {
        proto::TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            exemplars: vec![],
        }
    }

    fn encode(req: &proto::WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy")
    }

    #[test]
    fn decodes_a_valid_request() {
        let req = proto::WriteRequest {
            timeseries: vec![ts(
                vec![label("__name__", "up"), label("job", "a")],
                &[(1, 1.0), (2, f64::NAN)],
            )],
            metadata: vec![],
        };
        let got = decode(&encode(&req), 1 << 20).expect("decode");
        assert_eq!(got.encode_to_vec(), req.encode_to_vec());
        let v = validate(got, &SeriesLimits::default());
        assert_eq!((v.series.len(), v.samples, v.rejected), (1, 2, 0));
        assert!(v.series[0].samples[1].v.is_nan());
    }

    #[test]
    fn bad_bodies_are_named_errors() {
        let good = encode(&proto::WriteRequest {
            timeseries: vec![ts(vec![label("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        });
        assert!(matches!(
            decode(&good[..good.len() / 2], 1 << 20),
            Err(IngestError::Snappy(_))
        ));
        assert!(matches!(decode(b"", 1 << 20), Err(IngestError::Snappy(_))));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff not protobuf")
            .expect("snappy");
        assert!(matches!(
            decode(&garbage, 1 << 20),
            Err(IngestError::Protobuf(_))
        ));
        assert!(matches!(
            decode(&good, 3),
            Err(IngestError::DecodedTooLarge { .. })
        ));
        // A header claiming a huge size is refused before allocating.
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1 << 20),
            Err(IngestError::DecodedTooLarge { .. })
        ));
    }

    #[test]
    fn invalid_series_are_rejected_and_valid_ones_kept() {
        let limits = SeriesLimits {
            max_label_value_length: 8,
            ..Default::default()
        };
        let req = proto::WriteRequest {
            timeseries: vec![
                ts(
                    vec![label("__name__", "ok"), label("empty", "")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("job", "a"), label("__name__", "unsorted")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("__name__", "dup"), label("a", "1"), label("a", "2")],
                    &[(1, 1.0)],
                ),
                ts(vec![label("job", "no-name")], &[(1, 1.0)]),
                ts(vec![label("__name__", "bad-name")], &[(1, 1.0)]),
                ts(vec![label("__name__", "x"), label("1a", "v")], &[(1, 1.0)]),
                ts(
                    vec![label("__name__", "x"), label("a", "waytoolongvalue")],
                    &[(1, 1.0)],
                ),
            ],
            metadata: vec![],
        };
        let v = validate(req, &limits);
        assert_eq!(v.series.len(), 1);
        assert_eq!(v.series[0].labels.len(), 1, "empty-valued label dropped");
        assert_eq!(v.rejected, 6);
        let err = v.error(7).expect("error").to_string();
        assert!(
            err.contains("6 of 7 series rejected") && err.contains("not sorted"),
            "{err}"
        );
    }
}
