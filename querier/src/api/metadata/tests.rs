use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value as Json, json};
use storage::sidecar::{MetricMetadata, MetricType, Sidecar};
use storage::tenant::TENANT_HEADER;
use storage::{Storage, TenantId};
use tower::ServiceExt;

use crate::api::{QueryConfig, QueryState, router};

fn meta(family: &str, t: MetricType, help: &str, unit: &str) -> MetricMetadata {
    MetricMetadata {
        metric_family_name: family.into(),
        metric_type: t,
        help: help.into(),
        unit: unit.into(),
    }
}

/// Tenant "default": three families, `http_requests_total` with two
/// different helps (from two senders) and sent twice; tenant "other": one.
async fn app() -> Router {
    let storage = Storage::in_memory();
    let default = TenantId::new("default").expect("tenant");
    let first = Sidecar {
        metadata: vec![
            meta(
                "http_requests_total",
                MetricType::Counter,
                "Requests served.",
                "",
            ),
            meta(
                "process_cpu_seconds_total",
                MetricType::Counter,
                "CPU.",
                "seconds",
            ),
        ],
        ..Default::default()
    };
    storage
        .write_sidecar(&default, &first)
        .await
        .expect("write");
    // The same entries again (a retried request) and one new help text.
    let mut second = first.clone();
    second.metadata.push(meta(
        "http_requests_total",
        MetricType::Counter,
        "Requests served, by code.",
        "",
    ));
    second
        .metadata
        .push(meta("up", MetricType::Gauge, "Target is up.", ""));
    storage
        .write_sidecar(&default, &second)
        .await
        .expect("write");
    storage
        .write_sidecar(
            &TenantId::new("other").expect("tenant"),
            &Sidecar {
                metadata: vec![meta("secret_total", MetricType::Counter, "Secret.", "")],
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

async fn get(app: &Router, uri: &str) -> (StatusCode, Json) {
    call(app, Request::get(uri).body(Body::empty()).expect("request")).await
}

fn families(body: &Json) -> Vec<&str> {
    body["data"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn answers_every_family_in_prometheus_shape() {
    let app = app().await;
    let (s, body) = get(&app, "/api/v1/metadata").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "data": {
            "http_requests_total": [
                {"type": "counter", "help": "Requests served.", "unit": ""},
                {"type": "counter", "help": "Requests served, by code.", "unit": ""},
            ],
            "process_cpu_seconds_total": [
                {"type": "counter", "help": "CPU.", "unit": "seconds"},
            ],
            "up": [{"type": "gauge", "help": "Target is up.", "unit": ""}],
        }})
    );
}

#[tokio::test]
async fn nothing_sent_is_an_empty_object() {
    let app = router(QueryState::new(
        Storage::in_memory(),
        QueryConfig::default(),
        TenantId::new("default").expect("tenant"),
    ));
    let (s, body) = get(&app, "/api/v1/metadata").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"status": "success", "data": {}}));
}

#[tokio::test]
async fn metric_limit_and_limit_per_metric_select_as_prometheus_does() {
    let app = app().await;
    let (_, body) = get(&app, "/api/v1/metadata?metric=up").await;
    assert_eq!(
        body["data"],
        json!({"up": [{"type": "gauge", "help": "Target is up.", "unit": ""}]})
    );
    let (s, body) = get(&app, "/api/v1/metadata?metric=never_sent").await;
    assert_eq!((s, &body["data"]), (StatusCode::OK, &json!({})));
    // An empty `metric` is no filter.
    let (_, body) = get(&app, "/api/v1/metadata?metric=").await;
    assert_eq!(families(&body).len(), 3);

    let (_, body) = get(&app, "/api/v1/metadata?limit=2").await;
    assert_eq!(
        families(&body),
        ["http_requests_total", "process_cpu_seconds_total"]
    );
    // Prometheus caps at any limit >= 0: 0 is an empty answer, negative none.
    let (_, body) = get(&app, "/api/v1/metadata?limit=0").await;
    assert_eq!(body["data"], json!({}));
    let (_, body) = get(&app, "/api/v1/metadata?limit=-1").await;
    assert_eq!(families(&body).len(), 3);

    let (_, body) = get(&app, "/api/v1/metadata?limit_per_metric=1").await;
    assert_eq!(
        body["data"]["http_requests_total"],
        json!([{"type": "counter", "help": "Requests served.", "unit": ""}])
    );
    assert_eq!(families(&body).len(), 3);
    // Only a positive limit per metric caps.
    for uri in [
        "/api/v1/metadata?limit_per_metric=0",
        "/api/v1/metadata?limit_per_metric=-3",
    ] {
        let (_, body) = get(&app, uri).await;
        assert_eq!(
            body["data"]["http_requests_total"].as_array().map(Vec::len),
            Some(2),
            "{uri}"
        );
    }
    let (_, body) = get(
        &app,
        "/api/v1/metadata?metric=http_requests_total&limit_per_metric=1&limit=5",
    )
    .await;
    assert_eq!(
        body["data"],
        json!({"http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}]})
    );
}

#[tokio::test]
async fn form_post_takes_the_same_parameters() {
    let app = app().await;
    let req = Request::post("/api/v1/metadata")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from("metric=process_cpu_seconds_total"))
        .expect("request");
    let (s, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(families(&body), ["process_cpu_seconds_total"]);
}

#[tokio::test]
async fn bad_numbers_are_bad_data_naming_the_parameter() {
    let app = app().await;
    for (uri, message) in [
        ("/api/v1/metadata?limit=ten", "limit must be a number"),
        ("/api/v1/metadata?limit=1.5", "limit must be a number"),
        (
            "/api/v1/metadata?limit_per_metric=x",
            "limit_per_metric must be a number",
        ),
    ] {
        let (s, body) = get(&app, uri).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(
            body,
            json!({"status": "error", "errorType": "bad_data", "error": message}),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn each_tenant_sees_its_own_metadata() {
    let app = app().await;
    let req = |t: &str| {
        Request::get("/api/v1/metadata")
            .header(TENANT_HEADER, t)
            .body(Body::empty())
            .expect("request")
    };
    let (_, body) = call(&app, req("other")).await;
    assert_eq!(families(&body), ["secret_total"]);
    let (_, body) = call(&app, req("default")).await;
    assert!(!families(&body).contains(&"secret_total"), "{body}");
    let (_, body) = call(&app, req("nobody")).await;
    assert_eq!(body["data"], json!({}));
    let (s, body) = call(&app, req("../x")).await;
    assert_eq!(
        (s, body["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_data"))
    );
}
