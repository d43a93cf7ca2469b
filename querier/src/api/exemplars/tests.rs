use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value as Json, json};
use storage::sidecar::{Exemplar, ExemplarSeries, Sidecar};
use storage::tenant::TENANT_HEADER;
use storage::{Labels, Storage, TenantId};
use tower::ServiceExt;

use crate::api::{QueryConfig, QueryState, router};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

fn exemplar(trace: &str, value: f64, timestamp: i64) -> Exemplar {
    Exemplar {
        labels: if trace.is_empty() {
            Labels::empty()
        } else {
            labels(&[("trace_id", trace)])
        },
        value,
        timestamp,
    }
}

/// Tenant "default": exemplars on two series of
/// `http_request_duration_seconds_bucket` and one of `rpc_seconds_bucket`;
/// tenant "other": one of `secret_bucket`.
async fn app() -> Router {
    let storage = Storage::in_memory();
    let default = TenantId::new("default").expect("tenant");
    let sidecar = Sidecar {
        exemplars: vec![
            ExemplarSeries {
                labels: labels(&[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", "api"),
                    ("le", "0.5"),
                ]),
                exemplars: vec![
                    exemplar("abc", 0.25, 1_600_000_000_123),
                    exemplar("def", 0.375, 1_600_000_010_000),
                ],
            },
            ExemplarSeries {
                labels: labels(&[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", "db"),
                    ("le", "+Inf"),
                ]),
                exemplars: vec![exemplar("", f64::INFINITY, 1_600_000_005_500)],
            },
            ExemplarSeries {
                labels: labels(&[("__name__", "rpc_seconds_bucket"), ("job", "api")]),
                exemplars: vec![exemplar("xyz", 1.5, 1_600_000_001_000)],
            },
        ],
        ..Default::default()
    };
    storage
        .write_sidecar(&default, &sidecar)
        .await
        .expect("write");
    storage
        .write_sidecar(
            &TenantId::new("other").expect("tenant"),
            &Sidecar {
                exemplars: vec![ExemplarSeries {
                    labels: labels(&[("__name__", "secret_bucket"), ("job", "api")]),
                    exemplars: vec![exemplar("s3cr3t", 9.0, 1_600_000_000_000)],
                }],
                ..Default::default()
            },
        )
        .await
        .expect("write");
    router(QueryState::new(storage, QueryConfig::default(), default))
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Json) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

/// GET with `query` (URL-encoded here) and extra raw parameters.
async fn get(app: &Router, query: &str, rest: &str) -> (StatusCode, Json) {
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let uri = format!("/api/v1/query_exemplars?query={q}{rest}");
    call(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

/// `(job, number of exemplars)` of every series in an answer, in order.
fn series_jobs(body: &Json) -> Vec<(String, usize)> {
    body["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        format!(
                            "{}/{}",
                            s["seriesLabels"]["__name__"].as_str().unwrap_or("?"),
                            s["seriesLabels"]["job"].as_str().unwrap_or("?")
                        ),
                        s["exemplars"].as_array().map(Vec::len).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn answers_in_prometheus_shape() {
    let app = app().await;
    let (s, body) = get(
        &app,
        r#"http_request_duration_seconds_bucket{job="api"}"#,
        "&start=1600000000&end=1600000100",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": [{
            "seriesLabels": {
                "__name__": "http_request_duration_seconds_bucket",
                "job": "api",
                "le": "0.5",
            },
            "exemplars": [
                {"labels": {"trace_id": "abc"}, "value": "0.25", "timestamp": 1600000000.123},
                {"labels": {"trace_id": "def"}, "value": "0.375", "timestamp": 1600000010},
            ],
        }]})
    );
    // Values are spelled as Prometheus spells them; no labels is `{}`.
    let (_, body) = get(
        &app,
        r#"http_request_duration_seconds_bucket{job="db"}"#,
        "",
    )
    .await;
    assert_eq!(
        body["data"][0]["exemplars"],
        json!([{"labels": {}, "value": "+Inf", "timestamp": 1600000005.5}])
    );
}

#[tokio::test]
async fn every_selector_of_an_expression_counts() {
    let app = app().await;
    let (s, body) = get(
        &app,
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) \
         / on() group_left() sum(rate(rpc_seconds_bucket[1m]))",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        series_jobs(&body),
        [
            ("http_request_duration_seconds_bucket/api".to_string(), 2),
            ("http_request_duration_seconds_bucket/db".to_string(), 1),
            ("rpc_seconds_bucket/api".to_string(), 1),
        ]
    );
    // Selectors in aggregation parameters, unary minus, parentheses and
    // subqueries count too.
    let (s, body) = get(
        &app,
        "topk(scalar(sum(rpc_seconds_bucket)), \
         -(max_over_time(http_request_duration_seconds_bucket{job=\"db\"}[5m:1m])))",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        series_jobs(&body),
        [
            ("http_request_duration_seconds_bucket/db".to_string(), 1),
            ("rpc_seconds_bucket/api".to_string(), 1),
        ]
    );
    // A series matched by two selectors comes back once.
    let (_, body) = get(
        &app,
        r#"rpc_seconds_bucket + rpc_seconds_bucket{job="api"} or {job="api", __name__=~"rpc.*"}"#,
        "",
    )
    .await;
    assert_eq!(
        series_jobs(&body),
        [("rpc_seconds_bucket/api".to_string(), 1)]
    );
}

#[tokio::test]
async fn start_and_end_bound_the_exemplars() {
    let app = app().await;
    let (_, body) = get(
        &app,
        "http_request_duration_seconds_bucket",
        "&start=1600000000.5&end=2020-09-13T12:26:45.500Z",
    )
    .await;
    // 1600000005.5 is 2020-09-13T12:26:45.5Z: both ends inclusive.
    assert_eq!(
        series_jobs(&body),
        [("http_request_duration_seconds_bucket/db".to_string(), 1)]
    );
    let (s, body) = get(
        &app,
        "http_request_duration_seconds_bucket",
        "&start=1700000000",
    )
    .await;
    assert_eq!((s, &body["data"]), (StatusCode::OK, &json!([])));
}

#[tokio::test]
async fn queries_without_selectors_answer_null() {
    let app = app().await;
    let (s, body) = get(&app, "1 + 2", "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "success", "data": null}));
}

#[tokio::test]
async fn bad_requests_are_bad_data() {
    let app = app().await;
    for (query, rest) in [
        ("sum(", ""),
        ("", ""),
        ("up", "&start=yesterday"),
        ("up", "&end=x"),
        ("up", "&start=20&end=10"),
    ] {
        let (s, body) = get(&app, query, rest).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query:?}{rest}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{query:?}{rest}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let (_, body) = get(&app, "up", "&start=20&end=10").await;
    assert_eq!(
        body["error"],
        "end timestamp must not be before start timestamp"
    );
    // No query parameter at all.
    let (s, _) = call(
        &app,
        Request::get("/api/v1/query_exemplars")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn form_post_and_tenants() {
    let app = app().await;
    let post = |tenant: &str, form: &str| {
        Request::post("/api/v1/query_exemplars")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header(TENANT_HEADER, tenant)
            .body(Body::from(form.to_string()))
            .expect("request")
    };
    let (s, body) = call(&app, post("default", "query=rpc_seconds_bucket")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        series_jobs(&body),
        [("rpc_seconds_bucket/api".to_string(), 1)]
    );
    // Another tenant's exemplars stay its own.
    let (_, body) = call(&app, post("default", "query=secret_bucket")).await;
    assert_eq!(body["data"], json!([]));
    let (_, body) = call(&app, post("other", "query=%7Bjob%3D%22api%22%7D")).await;
    assert_eq!(series_jobs(&body), [("secret_bucket/api".to_string(), 1)]);
    let (s, body) = call(&app, post("bad/tenant", "query=up")).await;
    assert_eq!(
        (s, body["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_data"))
    );
}
