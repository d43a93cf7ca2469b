//! JSON encoding of query results exactly as Prometheus writes them: times as
//! Unix seconds (numbers), sample values as strings (`"NaN"`, `"+Inf"`).

use serde_json::{Map, Number, Value as Json, json};
use storage::Labels;

use crate::promql::{FloatHistogram, Value, format_float};

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

/// The `data` object of a query response.
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
    }
}
