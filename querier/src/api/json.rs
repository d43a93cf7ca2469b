//! JSON encoding of query results exactly as Prometheus writes them: times as
//! Unix seconds (numbers), sample values as strings (`"NaN"`, `"+Inf"`).

use serde_json::{Map, Number, Value as Json, json};
use storage::Labels;

use crate::promql::{Value, format_float};

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
                .map(|s| json!({"metric": labels(&s.labels), "value": [time(s.sample.t), float(s.sample.v)]}))
                .collect();
            json!({"resultType": "vector", "result": result})
        }
        Value::Matrix(series) => {
            let result: Vec<Json> = series
                .iter()
                .map(|s| {
                    let values: Vec<Json> = s
                        .samples
                        .iter()
                        .map(|p| json!([time(p.t), float(p.v)]))
                        .collect();
                    json!({"metric": labels(&s.labels), "values": values})
                })
                .collect();
            json!({"resultType": "matrix", "result": result})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
