use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use storage::failing_store::FailingStore;
use storage::tenant::TENANT_HEADER;
use storage::{Matcher, Storage};
use tower::ServiceExt;

use super::*;
use crate::metrics::IngestMetrics;
use crate::proto;
use crate::series_cache::SeriesCache;

fn app(storage: &Storage, config: IngestConfig) -> Router {
    let committer = GroupCommitter::start(
        storage.clone(),
        config.group_commit.clone(),
        IngestMetrics::default(),
    );
    router(IngestState {
        config,
        committer,
        metrics: IngestMetrics::default(),
        series_cache: Arc::new(SeriesCache::new(1000)),
        default_tenant: TenantId::new("default").expect("tenant"),
        limits: Arc::default(),
    })
}

/// A series for [`body`]: label pairs, one sample's timestamp and value.
type TestSeries<'a> = (&'a [(&'a str, &'a str)], i64, f64);

/// A bad-input case: name, tenant header, body, expected status, message part.
type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);

fn body(series: &[TestSeries]) -> Vec<u8> {
    let req = proto::WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, t, v)| proto::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| proto::Label {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                samples: vec![proto::Sample {
                    value: *v,
                    timestamp: *t,
                }],
                exemplars: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

async fn post(
    app: &Router,
    path: &str,
    tenant: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = Request::post(path)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy");
    if let Some(t) = tenant {
        req = req.header(TENANT_HEADER, t);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn count(storage: &Storage, tenant: &str) -> usize {
    let all = [Matcher::new(storage::MatchOp::Regex, "__name__", ".+").expect("matcher")];
    storage
        .select(
            &TenantId::new(tenant).expect("tenant"),
            &all,
            i64::MIN,
            i64::MAX,
        )
        .await
        .expect("select")
        .len()
}

#[tokio::test]
async fn remote_write_stores_per_tenant_and_answers_204() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let (s, _) = post(
        &app,
        "/api/v1/write",
        None,
        body(&[(&[("__name__", "up"), ("job", "a")], 1000, 1.0)]),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = post(
        &app,
        "/api/v1/prom/remote/write",
        Some("team-b"),
        body(&[(&[("__name__", "up")], 1000, 1.0)]),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(count(&storage, "default").await, 1);
    assert_eq!(count(&storage, "team-b").await, 1);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_message_and_keeps_earlier_data() {
    let storage = Storage::in_memory();
    let config = IngestConfig {
        max_request_bytes: 4096,
        ..Default::default()
    };
    let app = app(&storage, config);
    let good = body(&[(&[("__name__", "up")], 1000, 1.0)]);
    assert_eq!(
        post(&app, "/api/v1/write", None, good.clone()).await.0,
        StatusCode::NO_CONTENT
    );

    let garbage_proto = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
        .expect("snappy");
    let cases: Vec<Case> = vec![
        (
            "truncated snappy",
            None,
            good[..good.len() - 3].to_vec(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            "not snappy",
            None,
            b"hello world, not snappy".to_vec(),
            StatusCode::BAD_REQUEST,
            "snappy",
        ),
        (
            "garbage protobuf",
            None,
            garbage_proto,
            StatusCode::BAD_REQUEST,
            "protobuf",
        ),
        (
            "too large",
            None,
            vec![0u8; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "bad tenant",
            Some("../etc"),
            good.clone(),
            StatusCode::BAD_REQUEST,
            "tenant",
        ),
        (
            "empty tenant",
            Some(""),
            good.clone(),
            StatusCode::BAD_REQUEST,
            "tenant",
        ),
        (
            "unsorted labels",
            None,
            body(&[(&[("job", "a"), ("__name__", "x")], 1, 1.0)]),
            StatusCode::BAD_REQUEST,
            "not sorted",
        ),
        (
            "duplicate labels",
            None,
            body(&[(&[("__name__", "x"), ("a", "1"), ("a", "2")], 1, 1.0)]),
            StatusCode::BAD_REQUEST,
            "duplicate",
        ),
        (
            "empty label name",
            None,
            body(&[(&[("", "1"), ("__name__", "x")], 1, 1.0)]),
            StatusCode::BAD_REQUEST,
            "empty name",
        ),
    ];
    for (what, tenant, b, want, needle) in cases {
        let (status, msg) = post(&app, "/api/v1/write", tenant, b).await;
        assert_eq!(status, want, "{what}: {msg}");
        assert!(
            msg.contains(needle),
            "{what}: message {msg:?} should mention {needle:?}"
        );
    }
    // Nothing bad was stored, nothing good was lost.
    assert_eq!(count(&storage, "default").await, 1);
}

#[tokio::test]
async fn valid_series_of_a_partly_invalid_request_are_stored() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let b = body(&[
        (&[("__name__", "good")], 1, 1.0),
        (&[("no_name", "x")], 1, 1.0),
    ]);
    let (s, msg) = post(&app, "/api/v1/write", None, b).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(msg.contains("1 of 2 series rejected"), "{msg}");
    assert_eq!(count(&storage, "default").await, 1);
}

#[tokio::test]
async fn unknown_media_types_are_415() {
    let storage = Storage::in_memory();
    let app = app(&storage, IngestConfig::default());
    let req = Request::post("/api/v1/write")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        )
        .header("Content-Encoding", "snappy")
        .body(Body::from(body(&[(&[("__name__", "up")], 1, 1.0)])))
        .expect("request");
    assert_eq!(
        app.clone().oneshot(req).await.expect("resp").status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let req = Request::post("/api/v1/write")
        .header("Content-Encoding", "gzip")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.oneshot(req).await.expect("resp").status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn a_store_failure_is_a_503_and_nothing_is_acknowledged() {
    let (store, faults) = FailingStore::new(Arc::new(object_store::memory::InMemory::new()));
    let storage = Storage::new(Arc::new(store));
    let app = app(&storage, IngestConfig::default());
    faults.fail_puts(true);
    let (s, msg) = post(
        &app,
        "/api/v1/write",
        None,
        body(&[(&[("__name__", "up")], 1, 1.0)]),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert_eq!(count(&storage, "default").await, 0);
}

#[test]
fn config_validation_names_the_field() {
    assert!(IngestConfig::default().validate().is_ok());
    let mut c = IngestConfig::default();
    c.group_commit.batch_max_bytes = 0;
    assert!(
        c.validate()
            .unwrap_err()
            .starts_with("ingest.group_commit.batch_max_bytes")
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_reading() {
    let storage = Storage::in_memory();
    let app = app(
        &storage,
        IngestConfig {
            max_request_bytes: 1000,
            ..Default::default()
        },
    );
    let req = Request::post("/api/v1/write")
        .header("Content-Encoding", "snappy")
        .header("Content-Length", "1001")
        .body(Body::from(vec![0u8; 10]))
        .expect("request");
    let resp = app.oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}
