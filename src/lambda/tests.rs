//! The Lambda handlers as plain functions over an in-memory store: API
//! Gateway v2 events in, responses out; a scheduled compaction in between.

use std::collections::HashMap;
use std::ffi::OsString;

use base64::Engine as _;
use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};
use lambda_runtime::Context;
use object_store::memory::InMemory;
use prost::Message;
use serde_json::{Value, json};

use super::*;
use crate::config::Overrides;

const H: i64 = 3_600_000;

fn args(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

#[test]
fn bootstrap_picks_the_entry_point_from_the_handler() {
    let boot = args(&["/var/task/bootstrap"]);
    let cmd = |h| bootstrap_args(&boot, Some(h)).map(|r| r.expect("known handler").join(" "));
    assert_eq!(
        cmd("ingest").as_deref(),
        Some("strata lambda --role ingest")
    );
    assert_eq!(cmd("query").as_deref(), Some("strata lambda --role query"));
    assert_eq!(cmd("all").as_deref(), Some("strata lambda --role all"));
    assert_eq!(cmd("http").as_deref(), Some("strata lambda --role all"));
    assert_eq!(cmd("compact").as_deref(), Some("strata lambda-job compact"));
    assert_eq!(
        cmd("aggregate").as_deref(),
        Some("strata lambda-job aggregate")
    );
    let err = bootstrap_args(&boot, Some("downsample"))
        .expect("bootstrap invocation")
        .expect_err("unknown handler");
    assert!(err.contains("Handler"), "{err}");
    assert!(bootstrap_args(&boot, None).is_some_and(|r| r.is_err()));
    // Not a bootstrap invocation: the real arguments are parsed.
    assert!(bootstrap_args(&args(&["strata"]), Some("ingest")).is_none());
    assert!(bootstrap_args(&args(&["bootstrap", "serve"]), Some("ingest")).is_none());
}

#[test]
fn lambda_needs_s3_storage() {
    let mut config = StrataConfig::default();
    let err = check_storage(&config).expect_err("local storage on Lambda");
    assert!(err.to_string().contains("STRATA_STORAGE=s3"), "{err}");
    let env: HashMap<String, String> = [("STRATA_STORAGE", "s3"), ("STRATA_S3_BUCKET", "b")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config = StrataConfig::load(&Overrides::default(), &env).expect("config");
    check_storage(&config).expect("s3 is fine");
}

#[test]
fn the_query_cache_follows_the_function_memory_unless_configured() {
    let tmp = Path::new("/tmp");
    let default = CacheConfig::default();
    let c = lambda_cache(&default, Some(2048), tmp);
    assert_eq!(c.memory_bytes, 512 * MIB);
    assert_eq!(c.disk_bytes, 384 * MIB);
    assert_eq!(c.disk_dir, tmp.join("strata-cache"));
    assert_eq!(c.page_bytes, default.page_bytes);
    c.validate().expect("valid");
    assert_eq!(
        lambda_cache(&default, Some(128), tmp).memory_bytes,
        32 * MIB
    );
    // Not on Lambda, or configured by the operator: unchanged.
    assert_eq!(lambda_cache(&default, None, tmp), default);
    let off = CacheConfig {
        memory_bytes: 0,
        ..CacheConfig::default()
    };
    assert_eq!(lambda_cache(&off, Some(2048), tmp), off);
}

/// An API Gateway HTTP API (payload 2.0) event, as a function URL sends it too.
fn apigw_event(
    method: &str,
    path: &str,
    query: &str,
    headers: Value,
    body: Option<&[u8]>,
) -> Value {
    let mut headers = headers;
    headers["host"] = json!("abc123.lambda-url.us-east-1.on.aws");
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "test"
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1735689600000i64
        },
        "body": body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "isBase64Encoded": body.is_some()
    })
}

fn request(event: &Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

async fn call(ctx: &HttpContext, event: &Value) -> (u16, String) {
    let resp = handle_http(ctx, request(event)).await.expect("infallible");
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("response body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A remote-write body: one series per `i`, samples every 30 s from `start` for 2 h.
fn remote_write_body(start: i64, n: usize) -> Vec<u8> {
    let timeseries = (0..n)
        .map(|i| TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "lambda_test_total".into(),
                },
                Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
            ],
            samples: (0..240)
                .map(|k| Sample {
                    timestamp: start + k * 30_000,
                    value: (k * (i as i64 + 1)) as f64,
                })
                .collect(),
            exemplars: Vec::new(),
        })
        .collect();
    let raw = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy")
}

fn write_event(body: &[u8]) -> Value {
    apigw_event(
        "POST",
        "/api/v1/write",
        "",
        json!({
            "content-type": "application/x-protobuf",
            "content-encoding": "snappy",
            "x-prometheus-remote-write-version": "0.1.0",
            "content-length": body.len().to_string()
        }),
        Some(body),
    )
}

fn query_event(query: &str, time_ms: i64) -> Value {
    let qs = format!(
        "query={}&time={}",
        query.replace('(', "%28").replace(')', "%29"),
        time_ms / 1000
    );
    apigw_event("GET", "/api/v1/query", &qs, json!({"accept": "*/*"}), None)
}

fn sum_of(body: &str) -> f64 {
    let v: Value = serde_json::from_str(body).expect("JSON");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no single value in {body}"))
}

#[tokio::test]
async fn write_compact_and_query_through_the_handlers() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = StrataConfig::default();
    let ingest = HttpContext::new(&config, HttpRole::Ingest, store.clone()).expect("context");
    let query = HttpContext::new(&config, HttpRole::Query, store.clone()).expect("context");
    let jobs = JobContext::new(&config, Job::Compact, store.clone()).expect("context");
    let aggregate = JobContext::new(&config, Job::Aggregate, store.clone()).expect("context");

    let start = (compactor::job::now_ms() - 2 * 24 * H) / H * H;
    let (status, text) = call(&ingest, &write_event(&remote_write_body(start, 3))).await;
    assert_eq!(status, 204, "{text}");
    // The ingest function has no query API, and the reverse.
    let at = start + H;
    assert_eq!(call(&ingest, &query_event("up", at)).await.0, 404);
    assert_eq!(call(&query, &write_event(b"x")).await.0, 404);

    // Returned means stored: a fresh query context sees the samples at once.
    let (status, body) = call(&query, &query_event("sum(lambda_test_total)", at)).await;
    assert_eq!(status, 200, "{body}");
    // k = 120 at start + 1 h: 120 * (1 + 2 + 3).
    assert_eq!(sum_of(&body), 720.0);

    let event = LambdaEvent::new(
        serde_json::from_value(json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2025-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/strata-compact"],
            "detail": {}
        }))
        .expect("scheduled event"),
        Context::default(),
    );
    let out = handle_job(&jobs, event).await.expect("compaction");
    assert_eq!(out["job"], "compact", "{out}");
    assert_eq!(out["tenants"], 1, "{out}");
    assert!(out["blocks_written"].as_u64() >= Some(1), "{out}");
    assert_eq!(out["samples_written"], 3 * 240, "{out}");

    let (status, body) = call(&query, &query_event("sum(lambda_test_total)", at)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sum_of(&body), 720.0, "same answer from the block");

    // An empty test invocation (`{}`) is a valid scheduled event too.
    let empty: ScheduledEvent = serde_json::from_value(json!({})).expect("empty event");
    let out = handle_job(&jobs, LambdaEvent::new(empty.clone(), Context::default()))
        .await
        .expect("second pass");
    assert_eq!(out["blocks_written"], 0, "nothing new to compact: {out}");

    // Without rules the aggregator has nothing to do, and says so.
    let out = handle_job(&aggregate, LambdaEvent::new(empty, Context::default()))
        .await
        .expect("aggregation pass");
    assert_eq!(out["job"], "aggregate", "{out}");
    assert_eq!(out["blocks_written"], 0, "{out}");
}
