//! JSON encoding of query results exactly as Prometheus writes them: times as
//! Unix seconds (numbers), sample values as strings (`"NaN"`, `"+Inf"`).
//!
//! Two encoders of the same bytes: [`write_query_response`] writes a query's
//! whole response body straight into a buffer (the query path: a range
//! answer can hold millions of points, and a `serde_json::Value` tree of
//! them costs an allocation per point); the tree builders ([`query_data`],
//! [`labels`], [`histogram`]) serve the other endpoints and are the
//! reference the direct encoder is tested against, byte for byte. Keys come
//! out in the tree's order (sorted, serde_json's `Map` without
//! `preserve_order`), so both encoders agree.

use std::io::Write;

#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Number, Value as Json};
use storage::{Labels, Sample};

use crate::promql::{FloatHistogram, HPoint, Value, format_float, push_float};

/// A millisecond time as Prometheus' JSON number of seconds (`1435781451.781`,
/// or `1435781451` for a whole second).
pub fn time(ms: i64) -> Json {
    if ms % 1000 == 0 {
        Json::Number(Number::from(ms / 1000))
    } else {
        Number::from_f64(ms as f64 / 1000.0)
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

/// A sample value as Prometheus spells it (`"1"`, `"NaN"`, `"+Inf"`).
pub fn float(v: f64) -> String {
    format_float(v)
}

pub fn labels(l: &Labels) -> Json {
    let mut m = Map::new();
    for label in l {
        m.insert(label.name.clone(), Json::String(label.value.clone()));
    }
    Json::Object(m)
}

/// The `data` object of a query response, as a tree: the reference
/// [`write_query_response`] is tested against.
#[cfg(test)]
pub fn query_data(v: &Value) -> Json {
    match v {
        Value::Scalar { t, v } => json!({"resultType": "scalar", "result": [time(*t), float(*v)]}),
        Value::String { t, s } => json!({"resultType": "string", "result": [time(*t), s]}),
        Value::Vector(samples) => {
            let result: Vec<Json> = samples
                .iter()
                .map(|s| match &s.histogram {
                    Some(h) => json!({"metric": labels(&s.labels), "histogram": [time(s.sample.t), histogram(h)]}),
                    None => json!({"metric": labels(&s.labels), "value": [time(s.sample.t), float(s.sample.v)]}),
                })
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let mut out = Map::new();
                    out.insert("metric".into(), labels(&s.labels));
                    if !s.samples.is_empty() {
                        let values: Vec<Json> = s
                            .samples
                            .iter()
                            .map(|p| json!([time(p.t), float(p.v)]))
                            .collect();
                        out.insert("values".into(), Json::Array(values));
                    }
                    if !s.histograms.is_empty() {
                        let values: Vec<Json> = s
                            .histograms
                            .iter()
                            .map(|p| json!([time(p.t), histogram(&p.h)]))
                            .collect();
                        out.insert("histograms".into(), Json::Array(values));
                    }
                    Json::Object(out)
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

/// A native histogram as Prometheus' JSON API writes it: count and sum as
/// strings, and every populated bucket as `[boundary_rule, lower, upper,
/// count]`, where the rule is 0 for an open-left/closed-right bucket
/// `(a,b]`, 1 for `[a,b)`, 2 for `(a,b)` and 3 for `[a,b]`.
#[cfg(test)]
pub fn histogram(h: &FloatHistogram) -> Json {
    let buckets: Vec<Json> = h
        .buckets()
        .into_iter()
        .filter(|b| b.count != 0.0)
        .map(|b| {
            let rule = match (b.lower_inclusive, b.upper_inclusive) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            json!([rule, float(b.lower), float(b.upper), float(b.count)])
        })
        .collect();
    let mut m = Map::new();
    m.insert("count".into(), Json::String(float(h.count)));
    m.insert("sum".into(), Json::String(float(h.sum)));
    if !buckets.is_empty() {
        m.insert("buckets".into(), Json::Array(buckets));
    }
    Json::Object(m)
}

/// The body of a successful query response, `{"data":...,"status":"success"}`
/// with `"warnings"` and Prometheus 3's `"infos"` when there are any (keys in
/// `serde_json`'s order): the bytes `serde_json` writes for the tree of
/// [`query_data`], without building the tree.
pub fn write_query_response(v: &Value, warnings: &[String], infos: &[String]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(estimate(v)));
    w.raw("{\"data\":");
    w.query_data(v);
    let strings = |w: &mut Writer, key: &str, list: &[String]| {
        if !list.is_empty() {
            w.raw(key);
            for (i, s) in list.iter().enumerate() {
                w.comma(i);
                w.string(s);
            }
            w.raw("]");
        }
    };
    strings(&mut w, ",\"infos\":[", infos);
    w.raw(",\"status\":\"success\"");
    strings(&mut w, ",\"warnings\":[", warnings);
    w.raw("}");
    w.0
}

/// A first guess of the body's size, so the buffer rarely grows.
fn estimate(v: &Value) -> usize {
    const POINT: usize = 32;
    let series = 128;
    match v {
        Value::Scalar { .. } | Value::String { .. } => 128,
        Value::Vector(s) => 64 + s.len() * (series + POINT),
        Value::Matrix(m) => {
            64 + m
                .iter()
                .map(|s| series + (s.samples.len() + s.histograms.len()) * POINT)
                .sum::<usize>()
        }
    }
}

/// Appends JSON to a byte buffer. Writes to a `Vec` cannot fail, so the
/// `io::Result`s of `write!` are dropped.
struct Writer(Vec<u8>);

impl Writer {
    fn raw(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    fn comma(&mut self, i: usize) {
        if i > 0 {
            self.0.push(b',');
        }
    }

    /// A JSON string with serde_json's escaping.
    fn string(&mut self, s: &str) {
        let _ = serde_json::to_writer(&mut self.0, s);
    }

    /// [`time`]'s spelling: an integer for whole seconds, else serde_json's
    /// shortest float.
    fn time(&mut self, ms: i64) {
        if ms % 1000 == 0 {
            // serde_json's integer writer: the same digits, without the
            // `core::fmt` machinery (a few percent of a short query).
            let _ = serde_json::to_writer(&mut self.0, &(ms / 1000));
        } else {
            let _ = serde_json::to_writer(&mut self.0, &(ms as f64 / 1000.0));
        }
    }

    /// [`float`]'s spelling, quoted (never needs escaping).
    fn float(&mut self, v: f64) {
        self.0.push(b'"');
        push_float(&mut self.0, v);
        self.0.push(b'"');
    }

    fn labels(&mut self, l: &Labels) {
        // A `Map` holds each name once, sorted; `Labels` are sorted and
        // unique already, so writing them in order gives the same bytes.
        self.0.push(b'{');
        for (i, label) in l.iter().enumerate() {
            self.comma(i);
            self.string(&label.name);
            self.0.push(b':');
            self.string(&label.value);
        }
        self.0.push(b'}');
    }

    fn point(&mut self, s: &Sample) {
        self.0.push(b'[');
        self.time(s.t);
        self.0.push(b',');
        self.float(s.v);
        self.0.push(b']');
    }

    fn hpoint(&mut self, t: i64, h: &FloatHistogram) {
        self.0.push(b'[');
        self.time(t);
        self.0.push(b',');
        self.histogram(h);
        self.0.push(b']');
    }

    /// [`histogram`]'s object: keys `buckets`, `count`, `sum` in that order.
    fn histogram(&mut self, h: &FloatHistogram) {
        self.0.push(b'{');
        let mut any = false;
        for b in h.buckets().into_iter().filter(|b| b.count != 0.0) {
            self.raw(if any { "," } else { "\"buckets\":[" });
            any = true;
            let rule = match (b.lower_inclusive, b.upper_inclusive) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            let _ = write!(self.0, "[{rule},");
            self.float(b.lower);
            self.0.push(b',');
            self.float(b.upper);
            self.0.push(b',');
            self.float(b.count);
            self.0.push(b']');
        }
        if any {
            self.raw("],");
        }
        self.raw("\"count\":");
        self.float(h.count);
        self.raw(",\"sum\":");
        self.float(h.sum);
        self.0.push(b'}');
    }

    /// [`query_data`]'s object: `result` before `resultType`.
    fn query_data(&mut self, v: &Value) {
        self.raw("{\"result\":");
        let kind = match v {
            Value::Scalar { t, v } => {
                self.point(&Sample::new(*t, *v));
                "scalar"
            }
            Value::String { t, s } => {
                self.0.push(b'[');
                self.time(*t);
                self.0.push(b',');
                self.string(s);
                self.0.push(b']');
                "string"
            }
            Value::Vector(samples) => {
                self.0.push(b'[');
                for (i, s) in samples.iter().enumerate() {
                    self.comma(i);
                    match &s.histogram {
                        Some(h) => {
                            self.raw("{\"histogram\":");
                            self.hpoint(s.sample.t, h);
                            self.raw(",\"metric\":");
                            self.labels(&s.labels);
                        }
                        None => {
                            self.raw("{\"metric\":");
                            self.labels(&s.labels);
                            self.raw(",\"value\":");
                            self.point(&s.sample);
                        }
                    }
                    self.0.push(b'}');
                }
                self.0.push(b']');
                "vector"
            }
            Value::Matrix(series) => {
                self.0.push(b'[');
                for (i, s) in series.iter().enumerate() {
                    self.comma(i);
                    self.0.push(b'{');
                    if !s.histograms.is_empty() {
                        self.raw("\"histograms\":");
                        self.hpoints(&s.histograms);
                        self.0.push(b',');
                    }
                    self.raw("\"metric\":");
                    self.labels(&s.labels);
                    if !s.samples.is_empty() {
                        self.raw(",\"values\":[");
                        for (j, p) in s.samples.iter().enumerate() {
                            self.comma(j);
                            self.point(p);
                        }
                        self.0.push(b']');
                    }
                    self.0.push(b'}');
                }
                self.0.push(b']');
                "matrix"
            }
        };
        let _ = write!(self.0, ",\"resultType\":\"{kind}\"}}");
    }

    fn hpoints(&mut self, points: &[HPoint]) {
        self.0.push(b'[');
        for (i, p) in points.iter().enumerate() {
            self.comma(i);
            self.hpoint(p.t, &p.h);
        }
        self.0.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_written_as_prometheus_writes_them() {
        let h = FloatHistogram {
            count: 3.0,
            sum: 4.5,
            zero_threshold: 0.001,
            zero_count: 1.0,
            positive: vec![(0, 0.0), (1, 2.0)],
            ..Default::default()
        };
        assert_eq!(
            histogram(&h),
            json!({"count": "3", "sum": "4.5", "buckets": [
                [3, "-0.001", "0.001", "1"],
                [0, "1", "2", "2"],
            ]})
        );
        let v = Value::Vector(vec![crate::promql::VectorSample {
            labels: Labels::empty(),
            sample: storage::Sample::new(1000, 0.0),
            histogram: Some(std::sync::Arc::new(h)),
        }]);
        let d = query_data(&v);
        assert_eq!(d["result"][0]["histogram"][0], json!(1));
        assert!(d["result"][0].get("value").is_none());
    }

    /// What the tree encoder (axum's `Json` of `json!`) writes for a response.
    fn tree_bytes(v: &Value, warnings: &[String]) -> Vec<u8> {
        let body = if warnings.is_empty() {
            json!({"status": "success", "data": query_data(v)})
        } else {
            json!({"status": "success", "data": query_data(v), "warnings": warnings})
        };
        serde_json::to_vec(&body).expect("encode")
    }

    fn assert_same_bytes(v: &Value, warnings: &[String]) {
        let direct = write_query_response(v, warnings, &[]);
        let tree = tree_bytes(v, warnings);
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&tree)
        );
    }

    /// Floats and times whose spellings differ between formatters.
    const VALUES: &[f64] = &[
        0.0,
        -0.0,
        1.0,
        0.1,
        1.0 / 3.0,
        -2.5e-7,
        1e21,
        1.7976931348623157e308,
        5e-324,
        123456789.123,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    const TIMES: &[i64] = &[
        0,
        1,
        -1,
        -1500,
        999,
        1_000,
        1_435_781_451_781,
        9_007_199_254_740_993,
    ];

    fn tricky_labels(i: usize) -> Labels {
        Labels::from_pairs([
            ("__name__", format!("m{i}")),
            (
                "esc",
                "quote\" backslash\\ nl\n tab\t ctl\u{1} é ☃".to_string(),
            ),
            ("z", "v".to_string()),
        ])
        .expect("labels")
    }

    fn hist(i: usize) -> FloatHistogram {
        FloatHistogram {
            count: 3.0 + i as f64,
            sum: 4.5,
            zero_threshold: 0.001,
            zero_count: 1.0,
            positive: vec![(0, 0.0), (1, 2.0)],
            ..Default::default()
        }
    }

    #[test]
    fn direct_encoder_writes_the_tree_encoders_bytes() {
        let warn = ["w \"1\"".to_string(), "w2".to_string()];
        for w in [&[][..], &warn[..]] {
            for (&t, &v) in TIMES.iter().zip(VALUES.iter().cycle()) {
                assert_same_bytes(&Value::Scalar { t, v }, w);
                assert_same_bytes(
                    &Value::String {
                        t,
                        s: "a \"b\"\n".into(),
                    },
                    w,
                );
            }
            assert_same_bytes(&Value::Vector(Vec::new()), w);
            assert_same_bytes(&Value::Matrix(Vec::new()), w);
            let vector: Vec<_> = VALUES
                .iter()
                .zip(TIMES.iter().cycle())
                .enumerate()
                .map(|(i, (&v, &t))| crate::promql::VectorSample {
                    labels: tricky_labels(i),
                    sample: storage::Sample::new(t, v),
                    histogram: (i % 3 == 0).then(|| std::sync::Arc::new(hist(i))),
                })
                .collect();
            assert_same_bytes(&Value::Vector(vector), w);
            let samples: Vec<Sample> = VALUES
                .iter()
                .zip(TIMES.iter().cycle())
                .map(|(&v, &t)| Sample::new(t, v))
                .collect();
            let hpoints: Vec<HPoint> = TIMES
                .iter()
                .enumerate()
                .map(|(i, &t)| HPoint {
                    t,
                    h: std::sync::Arc::new(hist(i)),
                })
                .collect();
            let matrix = vec![
                crate::promql::MatrixSeries {
                    labels: tricky_labels(0),
                    samples: samples.clone(),
                    histograms: Vec::new(),
                },
                crate::promql::MatrixSeries {
                    labels: Labels::empty(),
                    samples: Vec::new(),
                    histograms: hpoints.clone(),
                },
                crate::promql::MatrixSeries {
                    labels: tricky_labels(2),
                    samples,
                    histograms: hpoints,
                },
                crate::promql::MatrixSeries {
                    labels: tricky_labels(3),
                    samples: Vec::new(),
                    histograms: Vec::new(),
                },
            ];
            assert_same_bytes(&Value::Matrix(matrix), w);
        }
        // A histogram with no populated bucket has no "buckets" key.
        let empty = FloatHistogram {
            count: 0.0,
            sum: 0.0,
            ..Default::default()
        };
        assert_same_bytes(
            &Value::Vector(vec![crate::promql::VectorSample {
                labels: Labels::empty(),
                sample: Sample::new(1, 0.0),
                histogram: Some(std::sync::Arc::new(empty)),
            }]),
            &[],
        );
    }

    #[test]
    fn numbers_are_spelled_as_prometheus_spells_them() {
        assert_eq!(time(1_435_781_451_781).to_string(), "1435781451.781");
        assert_eq!(time(1_435_781_451_000).to_string(), "1435781451");
        assert_eq!(time(-1500).to_string(), "-1.5");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e6), "1000000");
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(1.0 / 3.0), "0.3333333333333333");
        // Beyond zmij's fixed-notation range: no exponent, as Go's 'f'.
        assert_eq!(float(1e21), "1000000000000000000000");
        assert_eq!(float(-2.5e-7), "-0.00000025");
        assert_eq!(float(f64::MIN_POSITIVE).len(), 2 + 307 + 17);
        assert_eq!(float(123456789012345680.0), "123456789012345680");
    }

    /// Every finite float is spelled with the shortest digits that read
    /// back as it, without an exponent: Rust's Display spelling, except
    /// for an exact tie between two shortest spellings, which Go (and so
    /// Prometheus) breaks to the even last digit and Display rounds up.
    #[test]
    fn floats_are_spelled_as_go_spells_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut ties = 0;
        let mut check = |v: f64| {
            if !v.is_finite() {
                return;
            }
            let (ours, display) = (float(v), format!("{v}"));
            assert_eq!(ours.parse::<f64>().ok(), Some(v), "{ours} reads back");
            if ours != display {
                let (a, b) = (ours.as_bytes(), display.as_bytes());
                let n = a.len();
                assert!(
                    n == b.len()
                        && a[..n - 1] == b[..n - 1]
                        && a[n - 1] + 1 == b[n - 1]
                        && a[n - 1] % 2 == 0,
                    "bits {:#x}: {ours}, Display {display}",
                    v.to_bits()
                );
                ties += 1;
            }
        };
        for _ in 0..200_000 {
            // Any bit pattern, and values as counters and rates have them.
            check(f64::from_bits(rng.random()));
            check(rng.random_range(0..1_000_000_000u64) as f64 / 1000.0);
            check(rng.random::<f64>() * 10f64.powi(rng.random_range(-12..24)));
        }
        for v in [
            0.0,
            1.0,
            1e15,
            1e16,
            1e17,
            9007199254740993.0,
            1e-5,
            1e-6,
            5e-324,
        ] {
            check(v);
            check(-v);
        }
        // Ties are rare (about one value in a thousand here).
        assert!(ties < 6_000, "{ties} ties in 600 000 values");
        // Exactly 907216792588175.25: Go writes the even digit.
        assert_eq!(
            float(f64::from_bits(0x4309_c8de_f540_7c7a)),
            "907216792588175.2"
        );
    }
}
