//! Calls to the Prometheus HTTP API (against Prometheus itself or Strata) and
//! a canonical form of query results for comparing the two.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde_json::Value;

/// A time parameter in the API's format: seconds with millisecond precision.
pub fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// GETs `base + path` with query parameters (and `X-Scope-OrgID` if `tenant`);
/// returns `data` of a `"status": "success"` answer, else an error with the body.
pub async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    params: &[(&str, String)],
    tenant: Option<&str>,
) -> anyhow::Result<Value> {
    let mut req = client.get(format!("{base}{path}")).query(params);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("GET {base}{path}"))?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        bail!("GET {base}{path} {params:?}: HTTP {status}: {text}");
    }
    let v: Value = serde_json::from_slice(&body)
        .with_context(|| format!("GET {base}{path}: not JSON: {text}"))?;
    if v["status"] != "success" {
        bail!("GET {base}{path} {params:?}: status is not success: {text}");
    }
    Ok(v["data"].clone())
}

/// `/api/v1/query?query=EXPR&time=T`.
pub async fn query(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
    time_ms: i64,
    tenant: Option<&str>,
) -> anyhow::Result<QueryResult> {
    let data = get(
        client,
        base,
        "/api/v1/query",
        &[("query", expr.to_string()), ("time", api_time(time_ms))],
        tenant,
    )
    .await?;
    QueryResult::from_data(&data)
}

/// `/api/v1/query_range?query=EXPR&start=..&end=..&step=STEP_MS`.
pub async fn query_range(
    client: &reqwest::Client,
    base: &str,
    expr: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    tenant: Option<&str>,
) -> anyhow::Result<QueryResult> {
    let params = [
        ("query", expr.to_string()),
        ("start", api_time(start_ms)),
        ("end", api_time(end_ms)),
        ("step", api_time(step_ms)),
    ];
    let data = get(client, base, "/api/v1/query_range", &params, tenant).await?;
    QueryResult::from_data(&data)
}

/// `/api/v1/series?match[]=M&start=..&end=..` as a set of canonical label strings.
pub async fn series(
    client: &reqwest::Client,
    base: &str,
    matcher: &str,
    start_ms: i64,
    end_ms: i64,
    tenant: Option<&str>,
) -> anyhow::Result<BTreeSet<String>> {
    let params = [
        ("match[]", matcher.to_string()),
        ("start", api_time(start_ms)),
        ("end", api_time(end_ms)),
    ];
    let data = get(client, base, "/api/v1/series", &params, tenant).await?;
    let arr = data.as_array().context("series data is not an array")?;
    arr.iter().map(label_string).collect()
}

/// Canonical `{a="1", b="2"}` form of a JSON label object (sorted by name).
pub fn label_string(metric: &Value) -> anyhow::Result<String> {
    let obj = metric
        .as_object()
        .with_context(|| format!("labels are not an object: {metric}"))?;
    let sorted: BTreeMap<&str, &str> = obj
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("<non-string>")))
        .collect();
    let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    Ok(format!("{{{}}}", parts.join(", ")))
}

/// A query result in canonical form: result type, and per label set the
/// `(timestamp_ms, value)` points (one for vectors and scalars).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub result_type: String,
    pub series: BTreeMap<String, Vec<(i64, f64)>>,
}

fn parse_point(p: &Value) -> anyhow::Result<(i64, f64)> {
    let ts = p[0]
        .as_f64()
        .with_context(|| format!("bad timestamp in {p}"))?;
    let v = p[1]
        .as_str()
        .with_context(|| format!("value is not a string in {p}"))?;
    let value = match v {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse::<f64>()
            .with_context(|| format!("bad value {s:?}"))?,
    };
    #[allow(clippy::cast_possible_truncation)]
    Ok(((ts * 1000.0).round() as i64, value))
}

impl QueryResult {
    /// Parses the `data` member of a query or query_range answer.
    pub fn from_data(data: &Value) -> anyhow::Result<Self> {
        let result_type = data["resultType"]
            .as_str()
            .context("no resultType")?
            .to_string();
        let mut series = BTreeMap::new();
        match result_type.as_str() {
            "scalar" | "string" => {
                let (t, v) = parse_point(&data["result"]).unwrap_or((0, f64::NAN));
                series.insert(String::new(), vec![(t, v)]);
            }
            "vector" | "matrix" => {
                for s in data["result"]
                    .as_array()
                    .context("result is not an array")?
                {
                    let labels = label_string(&s["metric"])?;
                    let points = if result_type == "vector" {
                        vec![parse_point(&s["value"])?]
                    } else {
                        s["values"]
                            .as_array()
                            .context("no values")?
                            .iter()
                            .map(parse_point)
                            .collect::<Result<_, _>>()?
                    };
                    if series.insert(labels.clone(), points).is_some() {
                        bail!("duplicate series {labels} in result");
                    }
                }
            }
            other => bail!("unknown resultType {other}"),
        }
        Ok(Self {
            result_type,
            series,
        })
    }

    /// The single value of a one-element vector or a scalar.
    pub fn single_value(&self) -> Option<f64> {
        if self.series.len() != 1 {
            return None;
        }
        let points = self.series.values().next()?;
        (points.len() == 1).then(|| points[0].1)
    }

    /// Differences from `expected` (`None` when equal). Values compare equal
    /// when both are NaN or they differ by at most 1e-9 relative: both sides
    /// hold the same samples, so anything beyond float rounding is a bug.
    pub fn diff(&self, expected: &QueryResult) -> Option<String> {
        let mut out = String::new();
        if self.result_type != expected.result_type {
            let _ = writeln!(
                out,
                "result type {} (expected {})",
                self.result_type, expected.result_type
            );
        }
        for (labels, exp) in &expected.series {
            match self.series.get(labels) {
                None => {
                    let _ = writeln!(out, "missing series {labels} (expected {exp:?})");
                }
                Some(got) if !points_eq(got, exp) => {
                    let _ = writeln!(out, "series {labels}: got {got:?}, expected {exp:?}");
                }
                Some(_) => {}
            }
        }
        for (labels, got) in &self.series {
            if !expected.series.contains_key(labels) {
                let _ = writeln!(out, "unexpected series {labels} = {got:?}");
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Float equality up to rounding (NaN equals NaN).
pub fn approx_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn points_eq(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && approx_eq(x.1, y.1))
}
