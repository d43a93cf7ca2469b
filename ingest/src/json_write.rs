//! M3 Coordinator's JSON write (`POST /api/v1/json/write`): one sample as
//!
//! ```json
//! {"tags": {"__name__": "third_avenue", "city": "new_york"}, "timestamp": "1534952005", "value": 3347.26}
//! ```
//!
//! as M3 accepts it (`src/query/api/v1/handler/json/write.go`): `tags` are
//! the labels as they are (including `__name__`, which is required), `value`
//! a JSON number, `timestamp` a string holding Unix seconds (fractions kept
//! to the millisecond) or an RFC 3339 time, the formats of the Prometheus
//! API's time parameters that M3 parses it with. Extensions: `timestamp` may
//! also be a JSON number of Unix seconds, and the body may be an array of
//! such objects. Unknown fields are ignored, as M3 ignores them.
//!
//! A body that is not such JSON is rejected whole; a sample with invalid
//! labels or time is rejected alone: the others are stored and the request
//! is answered 400 naming the first, as remote write does.

use std::collections::BTreeMap;

use serde::Deserialize;
use storage::{Label, Labels, Sample, Series};

use crate::error::IngestError;
use crate::remote_write::SeriesLimits;

#[derive(Debug, Deserialize)]
struct WriteQuery {
    tags: BTreeMap<String, String>,
    timestamp: Timestamp,
    value: f64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Text(String),
    Seconds(f64),
}

/// The samples of a request and what was rejected.
#[derive(Debug, Default)]
pub struct Parsed {
    pub total: usize,
    pub series: Vec<Series>,
    pub rejected: usize,
    /// Description and reason of the first rejected sample.
    pub first_error: Option<(String, String)>,
}

impl Parsed {
    pub fn error(&self) -> Option<IngestError> {
        let (series, reason) = self.first_error.clone()?;
        Some(IngestError::InvalidSeries {
            rejected: self.rejected,
            total: self.total,
            series,
            reason,
        })
    }
}

/// Parses a JSON write body.
pub fn parse(body: &[u8], limits: &SeriesLimits) -> Result<Parsed, IngestError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| IngestError::Json(e.to_string()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    let mut out = Parsed {
        total: items.len(),
        ..Parsed::default()
    };
    for (i, item) in items.into_iter().enumerate() {
        let q: WriteQuery = serde_json::from_value(item).map_err(|e| {
            let at = if out.total > 1 {
                format!("item {i}: ")
            } else {
                String::new()
            };
            IngestError::Json(format!("{at}{e}"))
        })?;
        match to_series(q, limits) {
            Ok(s) => out.series.push(s),
            Err(e) => {
                out.rejected += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    Ok(out)
}

fn to_series(q: WriteQuery, limits: &SeriesLimits) -> Result<Series, (String, String)> {
    let describe = || {
        let pairs: Vec<String> = q.tags.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", pairs.join(", "))
    };
    let fail = |reason: String| (describe(), reason);
    let t = timestamp_ms(&q.timestamp).map_err(fail)?;
    if q.tags.len() > limits.max_label_names_per_series {
        return Err(fail(format!(
            "{} labels exceed the limit of {} label names per series",
            q.tags.len(),
            limits.max_label_names_per_series
        )));
    }
    for (name, value) in &q.tags {
        if name.len() > limits.max_label_name_length {
            return Err(fail(format!(
                "label name longer than {} bytes",
                limits.max_label_name_length
            )));
        }
        if value.len() > limits.max_label_value_length {
            return Err(fail(format!(
                "value of label {name} longer than {} bytes",
                limits.max_label_value_length
            )));
        }
    }
    // An empty value means "no such label", as in remote write.
    let pairs: Vec<Label> = q
        .tags
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| Label::new(k.as_str(), v.as_str()))
        .collect();
    let labels = Labels::from_sorted(pairs).map_err(|e| fail(e.to_string()))?;
    labels.validate().map_err(|e| fail(e.to_string()))?;
    Ok(Series {
        labels,
        samples: vec![Sample::new(t, q.value)],
    })
}

/// Unix seconds (string or number) with millisecond precision, or RFC 3339.
fn timestamp_ms(t: &Timestamp) -> Result<i64, String> {
    match t {
        Timestamp::Seconds(s) => seconds_ms(*s),
        Timestamp::Text(s) => match s.trim().parse::<f64>() {
            Ok(secs) => seconds_ms(secs),
            Err(_) => chrono::DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.timestamp_millis())
                .map_err(|_| format!("cannot parse {s:?} to a valid timestamp")),
        },
    }
}

/// Seconds to milliseconds as Prometheus' API does: whole seconds, plus the
/// fraction rounded to the millisecond.
fn seconds_ms(secs: f64) -> Result<i64, String> {
    const LIMIT: f64 = 9.2e15; // ms that fit an i64 with room to spare
    if !secs.is_finite() || (secs * 1000.0).abs() > LIMIT {
        return Err(format!("timestamp {secs} is out of range"));
    }
    let whole = secs.trunc();
    let frac = ((secs - whole) * 1000.0).round();
    Ok(whole as i64 * 1000 + frac as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SeriesLimits {
        SeriesLimits::default()
    }

    #[test]
    fn m3s_documented_example_is_one_sample() {
        let body = br#"{
          "tags": {"__name__": "third_avenue", "city": "new_york", "checkout": "1"},
          "timestamp": "1534952005",
          "value": 3347.26
        }"#;
        let p = parse(body, &limits()).expect("parse");
        assert_eq!((p.total, p.rejected, p.series.len()), (1, 0, 1));
        let s = &p.series[0];
        assert_eq!(
            s.labels,
            Labels::from_pairs([
                ("__name__", "third_avenue"),
                ("checkout", "1"),
                ("city", "new_york")
            ])
            .expect("labels")
        );
        assert_eq!(s.samples, vec![Sample::new(1_534_952_005_000, 3347.26)]);
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let cases: &[(&str, i64)] = &[
            (r#""1534952005""#, 1_534_952_005_000),
            (r#""1534952005.123""#, 1_534_952_005_123),
            (r#""1534952005.1236""#, 1_534_952_005_124),
            (r#"" 1534952005 ""#, 1_534_952_005_000),
            (r#""2018-08-22T15:33:25Z""#, 1_534_952_005_000),
            (r#""2018-08-22T17:33:25.5+02:00""#, 1_534_952_005_500),
            ("1534952005", 1_534_952_005_000),
            ("1534952005.25", 1_534_952_005_250),
            (r#""-1.5""#, -1_500),
        ];
        for (ts, want) in cases {
            let body = format!(r#"{{"tags":{{"__name__":"m"}},"timestamp":{ts},"value":1}}"#);
            let p = parse(body.as_bytes(), &limits()).expect("parse");
            assert_eq!(p.rejected, 0, "{ts}: {:?}", p.first_error);
            assert_eq!(p.series[0].samples[0].t, *want, "{ts}");
        }
    }

    #[test]
    fn an_array_stores_the_valid_items_and_names_the_first_invalid() {
        let body = br#"[
          {"tags": {"__name__": "a"}, "timestamp": "1", "value": 1},
          {"tags": {"job": "no_name"}, "timestamp": "1", "value": 2},
          {"tags": {"__name__": "b"}, "timestamp": "yesterday", "value": 3},
          {"tags": {"__name__": "c", "empty": ""}, "timestamp": "2", "value": 4, "extra": true}
        ]"#;
        let p = parse(body, &limits()).expect("parse");
        assert_eq!((p.total, p.rejected, p.series.len()), (4, 2, 2));
        assert_eq!(p.series[1].labels.len(), 1, "the empty label is dropped");
        let msg = p.error().expect("error").to_string();
        assert!(msg.contains("2 of 4 series rejected"), "{msg}");
        assert!(msg.contains("job=\"no_name\""), "{msg}");
    }

    #[test]
    fn malformed_bodies_are_rejected_whole() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"tags\": {\"t", "EOF"),
            (b"not json", "expected"),
            (br#"{"timestamp": "1", "value": 1}"#, "missing field `tags`"),
            (br#"{"tags": {"__name__": "m"}, "value": 1}"#, "timestamp"),
            (
                br#"{"tags": {"__name__": "m"}, "timestamp": "1", "value": "1"}"#,
                "invalid type",
            ),
            (
                br#"{"tags": {"__name__": 1}, "timestamp": "1", "value": 1}"#,
                "invalid type",
            ),
            (
                br#"[{"tags": {"__name__": "m"}, "timestamp": "1", "value": 1}, 7]"#,
                "item 1",
            ),
        ];
        for (body, needle) in cases {
            match parse(body, &limits()) {
                Err(IngestError::Json(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn invalid_labels_and_times_are_named() {
        let cases = [
            (r#"{"__name__":"m","":"x"}"#, r#""1""#, "empty name"),
            (r#"{"__name__":"m"}"#, r#""NaN""#, "out of range"),
            (r#"{"__name__":"m"}"#, r#""1e300""#, "out of range"),
            (
                r#"{"__name__":"m"}"#,
                r#""2018-13-01T00:00:00Z""#,
                "cannot parse",
            ),
        ];
        for (tags, ts, needle) in cases {
            let body = format!(r#"{{"tags":{tags},"timestamp":{ts},"value":1}}"#);
            let p = parse(body.as_bytes(), &limits()).expect("parse");
            let msg = p.error().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(needle), "{tags} {ts}: {msg:?}");
        }
    }
}
