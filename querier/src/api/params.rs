//! Request parameters as Prometheus reads them: from the query string and,
//! for POST, from a form-encoded body; times as RFC 3339 or Unix seconds,
//! durations as PromQL durations or seconds.

use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};

use super::error::ApiError;

/// Largest form body accepted (long queries and many `match[]` fit easily).
const MAX_FORM_BYTES: usize = 8 << 20;

/// All parameters of a request, in order, repeated keys kept.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_time(s)
                    .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{key}\": {e}")))
            })
            .transpose()
    }

    pub fn duration(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_duration(s)
                    .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{key}\": {e}")))
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|e| ApiError::bad_data(format!("reading form body: {e}")))?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(Params(pairs))
    }
}

/// Prometheus' time parameter: Unix seconds with up to millisecond precision,
/// or RFC 3339. Returns milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (secs * 1000.0).round();
        // Clamp to what fits; Prometheus does the same with its min/max times.
        return Ok(ms.clamp(i64::MIN as f64, i64::MAX as f64) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A duration as a PromQL duration (`5m`, `1h30m`) or float seconds. Returns
/// milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() >= i64::MAX as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms.round() as i64);
    }
    promql_parser::util::parse_duration(s)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// A label name from a URL path (`/api/v1/label/<name>/values`) as
/// Prometheus 3 reads it: a name with characters outside `[a-zA-Z0-9_]` may
/// come escaped as `U__` followed by the name with `_` written `__` and any
/// other such character written `_<hex code point>_` (so `service.name` is
/// `U__service_2e_name`). A name without the prefix, or one whose escapes
/// do not decode, is taken as written, as Prometheus does.
pub fn unescape_label_name(s: &str) -> String {
    let Some(rest) = s.strip_prefix("U__") else {
        return s.to_string();
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take_while(|&c| c != '_').collect();
        if hex.is_empty() {
            // `__` is an escaped `_`.
            out.push('_');
            continue;
        }
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(c) => out.push(c),
            None => return s.to_string(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse_as_prometheus_does() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn escaped_label_names_decode_as_in_prometheus() {
        for (raw, want) in [
            ("job", "job"),
            ("service.name", "service.name"),
            ("U__service_2e_name", "service.name"),
            ("U__a__b", "a_b"),
            ("U__k8s_2d_pod_2e_name", "k8s-pod.name"),
            ("U___1f600_", "\u{1f600}"),
            ("U__", ""),
            // Not decodable: taken as written.
            ("U__a_zz_", "U__a_zz_"),
            ("U__a_d800_", "U__a_d800_"),
        ] {
            assert_eq!(unescape_label_name(raw), want, "{raw}");
        }
    }
}
