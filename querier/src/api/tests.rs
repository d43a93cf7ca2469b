use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value as Json, json};
use storage::{Sample, Series};
use tower::ServiceExt;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

/// A router over a storage holding two `up` series and one counter of tenant
/// "default", and one series of tenant "other".
async fn app() -> Router {
    let storage = Storage::in_memory();
    let default = TenantId::new("default").expect("tenant");
    let series = |pairs: &[(&str, &str)], f: fn(i64) -> f64| Series {
        labels: labels(pairs),
        samples: (0..=20).map(|i| Sample::new(i * 15_000, f(i))).collect(),
    };
    storage
        .write_segment(
            &default,
            &[
                series(
                    &[("__name__", "up"), ("job", "api"), ("instance", "a")],
                    |_| 1.0,
                ),
                series(
                    &[("__name__", "up"), ("job", "db"), ("instance", "b")],
                    |_| 0.0,
                ),
                series(&[("__name__", "requests_total"), ("job", "api")], |i| {
                    (i * 30) as f64
                }),
            ],
        )
        .await
        .expect("write");
    storage
        .write_segment(
            &TenantId::new("other").expect("tenant"),
            &[series(&[("__name__", "secret")], |_| 7.0)],
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

#[tokio::test]
async fn instant_query_by_get_and_by_form_post() {
    let app = app().await;
    let (s, body) = get(&app, "/api/v1/query?query=up&time=300").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["resultType"], "vector");
    let result = body["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 2);
    assert!(result.contains(
        &json!({"metric": {"__name__": "up", "job": "api", "instance": "a"}, "value": [300, "1"]})
    ));

    let req = Request::post("/api/v1/query")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from("query=sum+by+(job)+(up)&time=300.5"))
        .expect("request");
    let (s, body) = call(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let result = body["data"]["result"].as_array().expect("result");
    assert!(
        result.contains(&json!({"metric": {"job": "db"}, "value": [300.5, "0"]})),
        "{body}"
    );
}

#[tokio::test]
async fn range_query_returns_a_matrix() {
    let app = app().await;
    let (s, body) = get(
        &app,
        "/api/v1/query_range?query=requests_total*2&start=60&end=120&step=30",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    assert_eq!(
        body["data"]["result"],
        json!([{"metric": {"job": "api"}, "values": [[60, "240"], [90, "360"], [120, "480"]]}])
    );
}

#[tokio::test]
async fn errors_use_prometheus_types_and_status_codes() {
    let app = app().await;
    let cases = [
        (
            "/api/v1/query?query=sum(",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        ("/api/v1/query", StatusCode::BAD_REQUEST, "bad_data"),
        (
            "/api/v1/query?query=up&time=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=0&step=1",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=10&step=0",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        ("/api/v1/series", StatusCode::BAD_REQUEST, "bad_data"),
        (
            "/api/v1/series?match[]=up%7B",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        (
            "/api/v1/label/U__/values",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
    ];
    for (uri, status, kind) in cases {
        let (s, body) = get(&app, uri).await;
        assert_eq!(s, status, "{uri}: {body}");
        assert_eq!(body["status"], "error", "{uri}");
        assert_eq!(body["errorType"], kind, "{uri}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}"
        );
    }
    // Many-to-many matching is an execution error (422).
    let (s, body) = get(&app, "/api/v1/query?query=up+%2B+on()+up&time=300").await;
    assert_eq!(
        (s, body["errorType"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("execution")),
        "{body}"
    );
}

#[tokio::test]
async fn series_labels_and_values_use_match_and_tenant() {
    let app = app().await;
    let (s, body) = get(
        &app,
        "/api/v1/series?match[]=up&match[]=requests_total&start=0&end=300",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    let (_, body) = get(&app, "/api/v1/labels").await;
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    let (_, body) = get(&app, "/api/v1/labels?match[]=requests_total").await;
    assert_eq!(body["data"], json!(["__name__", "job"]));
    let (_, body) = get(&app, "/api/v1/label/__name__/values").await;
    assert_eq!(body["data"], json!(["requests_total", "up"]));
    let (_, body) = get(
        &app,
        "/api/v1/label/job/values?match[]=up%7Binstance%3D%22b%22%7D",
    )
    .await;
    assert_eq!(body["data"], json!(["db"]));
    let (_, body) = get(&app, "/api/v1/label/job/values?limit=1").await;
    assert_eq!(body["data"], json!(["api"]));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
    // Outside the stored time range: nothing.
    let (_, body) = get(&app, "/api/v1/series?match[]=up&start=100000&end=200000").await;
    assert_eq!(body["data"], json!([]));

    // Another tenant sees only its own data; a bad tenant id is bad_data.
    let req = |uri: &str, t: &str| {
        Request::get(uri)
            .header(TENANT_HEADER, t)
            .body(Body::empty())
            .expect("request")
    };
    let (_, body) = call(&app, req("/api/v1/label/__name__/values", "other")).await;
    assert_eq!(body["data"], json!(["secret"]));
    let (_, body) = call(&app, req("/api/v1/query?query=secret&time=300", "default")).await;
    assert_eq!(body["data"]["result"], json!([]));
    let (s, body) = call(&app, req("/api/v1/labels", "../x")).await;
    assert_eq!(
        (s, body["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_data"))
    );
}

#[tokio::test]
async fn buildinfo_looks_like_prometheus() {
    let (s, body) = get(&app().await, "/api/v1/status/buildinfo").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["data"]["version"], PROMETHEUS_COMPAT_VERSION);
}

/// A tenant with `up` = 1 at 0 and a corrupt segment object; the router
/// and the corrupt object's path.
async fn app_with_a_corrupt_segment() -> (Router, object_store::path::Path) {
    use object_store::ObjectStoreExt;
    let storage = Storage::in_memory();
    let tenant = TenantId::new("default").expect("tenant");
    storage
        .write_segment(
            &tenant,
            &[Series {
                labels: labels(&[("__name__", "up")]),
                samples: vec![Sample::new(0, 1.0)],
            }],
        )
        .await
        .expect("write");
    let bad = object_store::path::Path::from(format!(
        "{}/2016073017/01ARZ3NDEKTSV4RRFFQ69G5FAV.parquet",
        storage::paths::segments_prefix(&tenant)
    ));
    storage
        .object_store()
        .put(&bad, object_store::PutPayload::from(&b"garbage"[..]))
        .await
        .expect("put");
    (
        router(QueryState::new(storage, QueryConfig::default(), tenant)),
        bad,
    )
}

#[tokio::test]
async fn a_corrupt_object_is_read_around_with_a_warning() {
    let (app, bad) = app_with_a_corrupt_segment().await;
    let (s, body) = get(&app, "/api/v1/query?query=up&time=10").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["result"][0]["value"], json!([10, "1"]));
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{body}");
    let w = warnings[0].as_str().expect("string");
    assert!(
        w.contains("skipped corrupt object") && w.contains(bad.as_ref()),
        "{w}"
    );
}

/// Engine annotations come back as Prometheus 3 sends them: `infos` and
/// `warnings` arrays, each omitted when empty, with the position of the
/// node that caused them.
#[tokio::test]
async fn query_answers_carry_warnings_and_infos() {
    let app = app().await;
    let (s, body) = get(&app, "/api/v1/query?query=rate(up%5B5m%5D)&time=300").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["infos"],
        json!([
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\" (1:6)"
        ]),
        "{body}"
    );
    assert!(body.get("warnings").is_none(), "{body}");

    let (s, body) = get(
        &app,
        "/api/v1/query_range?query=sort(up)&start=0&end=300&step=60",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["warnings"],
        json!([
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"
        ]),
        "{body}"
    );
    assert!(body.get("infos").is_none(), "{body}");

    // A counter by its name, and sort in an instant query: nothing to say.
    for uri in [
        "/api/v1/query?query=rate(requests_total%5B5m%5D)&time=300",
        "/api/v1/query?query=sort(up)&time=300",
    ] {
        let (s, body) = get(&app, uri).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(
            body.get("warnings").is_none() && body.get("infos").is_none(),
            "{uri}: {body}"
        );
    }
}

/// Storage warnings and engine warnings share the `warnings` array.
#[tokio::test]
async fn storage_and_engine_warnings_are_merged() {
    let (app, _) = app_with_a_corrupt_segment().await;
    let (s, body) = get(
        &app,
        "/api/v1/query_range?query=sort_desc(up)&start=0&end=60&step=15",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let warnings = body["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 2, "{body}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.contains("skipped corrupt object")),
        "{body}"
    );
    assert_eq!(
        warnings[1],
        "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"
    );
}

/// The syntax front end serves the HTTP API: extended syntax is evaluated,
/// malformed extended syntax and the reserved marker label are `bad_data`.
#[tokio::test]
async fn extended_promql_syntax_through_the_api() {
    let app = app().await;
    // requests_total is 30 per 15s sample; the anchor at 240s is 480.
    let (s, body) = get(
        &app,
        "/api/v1/query?query=increase(requests_total%5B1m%5D%20anchored)&time=300",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["result"],
        json!([{"metric": {"job": "api"}, "value": [300, "120"]}])
    );
    // step() is the range query's step: a 4 x 15s = 1m window holds four
    // samples, three changes.
    let (s, body) = get(
        &app,
        "/api/v1/query_range?query=changes(requests_total%5Bstep()*4%5D)&start=120&end=150&step=15",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["result"],
        json!([{"metric": {"job": "api"}, "values": [[120, "3"], [135, "3"], [150, "3"]]}])
    );
    for (q, want) in [
        ("up%5B5m-10m%5D", "must be positive"),
        ("up%7B__strata_syntax__%3D%22anchored%22%7D", "is reserved"),
        (
            "deriv(up%5B1m%5D%20smoothed)",
            "smoothed modifier can only be used with",
        ),
    ] {
        let (s, body) = get(&app, &format!("/api/v1/query?query={q}&time=300")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{q}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(want),
            "{q}: {body}"
        );
    }
}
