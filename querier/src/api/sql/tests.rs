use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use storage::{Labels, Sample, Series, Storage, TenantId};
use tower::ServiceExt;

use crate::api::{QueryConfig, QueryState, router};

async fn app() -> Router {
    let storage = Storage::in_memory();
    let series = |name: &str, v: f64| Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "api")]).expect("labels"),
        samples: (0..10).map(|i| Sample::new(i * 1000, v)).collect(),
    };
    storage
        .write_segment(&TenantId::new("a").expect("t"), &[series("up", 1.0)])
        .await
        .expect("write");
    storage
        .write_segment(&TenantId::new("b").expect("t"), &[series("secret", 7.0)])
        .await
        .expect("write");
    router(QueryState::new(
        storage,
        QueryConfig::default(),
        TenantId::new("a").expect("t"),
    ))
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, ctype, bytes.to_vec())
}

fn sql(text: &str, tenant: Option<&str>) -> Request<Body> {
    let mut r = Request::post("/api/v1/sql").header("Content-Type", "text/plain");
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    r.body(Body::from(text.to_string())).expect("request")
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json")
}

#[tokio::test]
async fn text_and_form_bodies_answer_json() {
    let app = app().await;
    let (status, ctype, bytes) = call(
        &app,
        sql(
            "SELECT metric_name, sum(value) AS s FROM samples GROUP BY 1",
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    assert_eq!(
        json(&bytes)["data"]["rows"],
        serde_json::json!([["up", 10.0]])
    );

    let form = Request::post("/api/v1/sql")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Scope-OrgID", "b")
        .body(Body::from("query=SELECT+metric_name+FROM+series"))
        .expect("request");
    let (status, _, bytes) = call(&app, form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json(&bytes)["data"]["rows"],
        serde_json::json!([["secret"]])
    );
}

#[tokio::test]
async fn arrow_when_asked() {
    let app = app().await;
    let req = Request::post("/api/v1/sql")
        .header("Accept", "application/vnd.apache.arrow.stream")
        .body(Body::from(
            "SELECT timestamp, value FROM samples ORDER BY timestamp",
        ))
        .expect("request");
    let (status, ctype, bytes) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/vnd.apache.arrow.stream");
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .expect("arrow stream");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 10);
}

#[tokio::test]
async fn errors_map_to_prometheus_types() {
    let app = app().await;
    for (q, status, kind) in [
        ("DROP TABLE samples", StatusCode::BAD_REQUEST, "bad_data"),
        (
            "INSERT INTO series VALUES (1, 'a', NULL)",
            StatusCode::BAD_REQUEST,
            "bad_data",
        ),
        ("SELECT * FROM nowhere", StatusCode::BAD_REQUEST, "bad_data"),
        ("", StatusCode::BAD_REQUEST, "bad_data"),
        (
            "SELECT CAST('x' AS INT) FROM samples",
            StatusCode::UNPROCESSABLE_ENTITY,
            "execution",
        ),
    ] {
        let (got, _, bytes) = call(&app, sql(q, None)).await;
        assert_eq!(got, status, "{q}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(json(&bytes)["errorType"], kind, "{q}");
    }
    let (got, _, _) = call(&app, sql("SELECT 1", Some("no/such"))).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
}
