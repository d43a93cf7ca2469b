//! The limits through the HTTP API: each refusal has Prometheus' envelope,
//! type and status, names the limit and the tenant, touches only the
//! limited tenant, and is counted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value as Json;
use storage::latency_store::{LatencyConfig, LatencyStore};
use storage::{Labels, Sample, Series, Storage};
use tower::ServiceExt;

use super::*;
use crate::api::{QueryConfig, QueryState, router};

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("tenant")
}

/// Three `up` series of 21 samples each, for tenants "small" and "big".
async fn storage() -> Storage {
    let storage = Storage::in_memory();
    fill(&storage).await;
    storage
}

async fn fill(storage: &Storage) {
    for t in ["small", "big"] {
        let series: Vec<Series> = ["a", "b", "c"]
            .iter()
            .map(|i| Series {
                labels: Labels::from_pairs([("__name__", "up"), ("instance", *i)]).expect("labels"),
                samples: (0..=20).map(|k| Sample::new(k * 15_000, 1.0)).collect(),
            })
            .collect();
        storage
            .write_segment(&tenant(t), &series)
            .await
            .expect("write");
    }
}

/// "small" has every limit set low; "big" has the defaults.
fn limits(refused: Arc<Mutex<Vec<(String, String)>>>, max_query_time: Duration) -> QueryLimits {
    let config = QueryConfig::default();
    let default = QueryLimits::from_config(&config).of(&tenant("x")).clone();
    let small = TenantQueryLimits {
        max_concurrent_queries: 1,
        max_samples: 62,
        max_query_time,
        max_result_series: 2,
        max_result_points: 10,
    };
    QueryLimits::new(
        default,
        HashMap::from([("small".to_string(), small)]),
        Arc::new(move |t: &str, l: &str| {
            refused
                .lock()
                .expect("lock")
                .push((t.to_string(), l.to_string()));
        }),
    )
}

/// `path?k=v&...`, encoded.
fn uri(path: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{query}")
}

async fn get(app: &axum::Router, uri: &str, tenant: &str) -> (StatusCode, Json) {
    let req = Request::get(uri)
        .header("X-Scope-OrgID", tenant)
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

fn assert_refused(got: &(StatusCode, Json), status: u16, kind: &str, limit: &str, tenant: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["errorType"], kind, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(limit) && msg.contains(&format!("{tenant:?}")),
        "message names {limit} and {tenant}: {msg}"
    );
}

#[tokio::test]
async fn result_size_and_sample_limits_refuse_only_the_limited_tenant() {
    let refused = Arc::new(Mutex::new(Vec::new()));
    let state = QueryState::new(storage().await, QueryConfig::default(), tenant("big"))
        .with_limits(Arc::new(limits(refused.clone(), Duration::from_secs(60))));
    let app = router(state);

    // Three series in the result (three samples loaded), two allowed.
    let instant = &uri("/api/v1/query", &[("query", "up"), ("time", "590")]);
    assert_refused(
        &get(&app, instant, "small").await,
        422,
        "execution",
        "max_result_series",
        "small",
    );
    let (s, body) = get(&app, instant, "big").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Two series of 11 points (42 samples loaded): within the series
    // limit, over the points one.
    let range = &uri(
        "/api/v1/query_range",
        &[
            ("query", "up{instance!=\"c\"}"),
            ("start", "300"),
            ("end", "450"),
            ("step", "15"),
        ],
    );
    assert_refused(
        &get(&app, range, "small").await,
        422,
        "execution",
        "max_result_points",
        "small",
    );
    assert_eq!(get(&app, range, "big").await.0, StatusCode::OK);
    // A range selector over everything loads 63 samples, 62 allowed.
    let samples = &uri(
        "/api/v1/query",
        &[("query", "count_over_time(up[10m])"), ("time", "300")],
    );
    assert_refused(
        &get(&app, samples, "small").await,
        422,
        "execution",
        "max_query_samples",
        "small",
    );
    assert_eq!(get(&app, samples, "big").await.0, StatusCode::OK);
    // The series API answers with the same series limit.
    let series = &uri("/api/v1/series", &[("match[]", "up")]);
    assert_refused(
        &get(&app, series, "small").await,
        422,
        "execution",
        "max_result_series",
        "small",
    );
    assert_eq!(get(&app, series, "big").await.0, StatusCode::OK);

    let refused = refused.lock().expect("lock").clone();
    let limits: Vec<&str> = refused.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        limits,
        [
            MAX_RESULT_SERIES,
            MAX_RESULT_POINTS,
            MAX_QUERY_SAMPLES,
            MAX_RESULT_SERIES
        ]
    );
    assert!(refused.iter().all(|(t, _)| t == "small"));
}

#[tokio::test]
async fn a_tenant_past_its_concurrent_queries_waits_then_times_out() {
    let refused = Arc::new(Mutex::new(Vec::new()));
    // Metadata calls take no timeout parameter: the tenant's 1 s applies.
    let limits = Arc::new(limits(refused.clone(), Duration::from_secs(1)));
    let state = QueryState::new(storage().await, QueryConfig::default(), tenant("big"))
        .with_limits(limits.clone());
    let app = router(state);
    let query = &uri(
        "/api/v1/query",
        &[
            ("query", "up{instance=\"a\"}"),
            ("time", "300"),
            ("timeout", "0.2"),
        ],
    );

    // The test holds the tenant's only slot: its queries wait out their
    // time limit, whatever the machine's speed.
    let held = limits.slot(&tenant("small")).await;
    assert_refused(
        &get(&app, query, "small").await,
        503,
        "timeout",
        "max_concurrent_queries",
        "small",
    );
    assert_refused(
        &get(&app, "/api/v1/labels", "small").await,
        503,
        "timeout",
        "max_concurrent_queries",
        "small",
    );
    // Other tenants are not held up.
    assert_eq!(get(&app, query, "big").await.0, StatusCode::OK);
    drop(held);
    assert_eq!(get(&app, query, "small").await.0, StatusCode::OK);
    assert_eq!(
        refused.lock().expect("lock").as_slice(),
        [
            ("small".to_string(), MAX_CONCURRENT_QUERIES.to_string()),
            ("small".to_string(), MAX_CONCURRENT_QUERIES.to_string()),
        ]
    );
}

#[tokio::test]
async fn queries_slower_than_the_tenant_time_limit_time_out() {
    // Every object-store read waits 2 s; "small" may take 100 ms.
    let inner = Storage::in_memory();
    fill(&inner).await;
    let slow: Arc<dyn object_store::ObjectStore> = Arc::new(LatencyStore::new(
        inner.object_store().clone(),
        LatencyConfig {
            read: Duration::from_secs(2),
            write: Duration::ZERO,
        },
    ));
    let mut small = limits(Arc::default(), Duration::ZERO)
        .of(&tenant("small"))
        .clone();
    small.max_query_time = Duration::from_millis(100);
    small.max_concurrent_queries = 0;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let limits = QueryLimits::new(
        QueryLimits::from_config(&QueryConfig::default())
            .of(&tenant("x"))
            .clone(),
        HashMap::from([("small".to_string(), small)]),
        Arc::new(move |_: &str, l: &str| {
            assert_eq!(l, MAX_QUERY_TIME);
            counted.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let state = QueryState::new(Storage::new(slow), QueryConfig::default(), tenant("big"))
        .with_limits(Arc::new(limits));
    let app = router(state);
    assert_refused(
        &get(
            &app,
            &uri("/api/v1/query", &[("query", "up"), ("time", "300")]),
            "small",
        )
        .await,
        503,
        "timeout",
        "max_query_time",
        "small",
    );
    assert_refused(
        &get(&app, "/api/v1/label/instance/values", "small").await,
        503,
        "timeout",
        "max_query_time",
        "small",
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
