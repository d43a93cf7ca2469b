//! The write routes end to end through the router (no socket): line
//! protocol, JSON write, and HA deduplication on every protocol.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::http::Request;
use prost::Message;
use storage::{Matcher, Series, Storage, TenantId};
use tower::ServiceExt;

use super::*;
use crate::clock::ManualClock;
use crate::group_commit::GroupCommitter;
use crate::ha::{HaTracker, HaTrackerConfig};
use crate::http::{IngestConfig, IngestState, router_with};
use crate::metrics::IngestMetrics;
use crate::proto;
use crate::series_cache::SeriesCache;

const NOW_MS: i64 = 1_700_000_000_000;

struct Setup {
    app: Router,
    storage: Storage,
    clock: Arc<ManualClock>,
}

fn setup(config: IngestConfig) -> Setup {
    setup_on(Storage::in_memory(), config)
}

fn setup_on(storage: Storage, config: IngestConfig) -> Setup {
    let clock = ManualClock::new(NOW_MS);
    let metrics = IngestMetrics::default();
    let committer = GroupCommitter::start(
        storage.clone(),
        config.group_commit.clone(),
        metrics.clone(),
    );
    let ha = HaTracker::new(
        storage.object_store().clone(),
        config.ha_tracker.clone(),
        clock.clone(),
        metrics.clone(),
    );
    let app = router_with(
        IngestState {
            config,
            committer,
            metrics,
            series_cache: Arc::new(SeriesCache::new(1000)),
            default_tenant: TenantId::new("default").expect("tenant"),
            limits: Arc::default(),
        },
        Arc::new(ha),
        clock.clone(),
    );
    Setup {
        app,
        storage,
        clock,
    }
}

fn ha_enabled() -> IngestConfig {
    IngestConfig {
        ha_tracker: HaTrackerConfig {
            accept_ha_samples: true,
            ..HaTrackerConfig::default()
        },
        ..IngestConfig::default()
    }
}

async fn send(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String, Option<String>) {
    let mut req = Request::post(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned(), ctype)
}

async fn stored(storage: &Storage, tenant: &str) -> Vec<Series> {
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
}

/// `name{labels} t=v ...` lines of everything stored, sorted.
async fn dump(storage: &Storage, tenant: &str) -> Vec<String> {
    let mut out: Vec<String> = stored(storage, tenant)
        .await
        .iter()
        .flat_map(|s| {
            s.samples
                .iter()
                .map(move |x| format!("{} {}@{}", s.labels, x.v, x.t))
        })
        .collect();
    out.sort();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

#[tokio::test]
async fn line_protocol_is_stored_at_m3s_path_and_influxdbs() {
    let s = setup(IngestConfig::default());
    let (status, body, _) = send(
        &s.app,
        "/api/v1/influxdb/write",
        &[],
        b"weather,location=us-midwest temperature=82,wind=42 1556813561098000000".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body, _) = send(
        &s.app,
        "/write?db=telegraf&rp=autogen&precision=s&u=x&p=y&consistency=one",
        &[("X-Scope-OrgID", "team-a")],
        b"cpu,host=a usage_idle=99.5,up=true 1556813561\ncpu,host=a msg=\"ok\" 1556813562".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        dump(&s.storage, "default").await,
        vec![
            r#"weather_temperature{location="us-midwest"} 82@1556813561098"#,
            r#"weather_wind{location="us-midwest"} 42@1556813561098"#,
        ]
    );
    assert_eq!(
        dump(&s.storage, "team-a").await,
        vec![
            r#"cpu_up{host="a"} 1@1556813561000"#,
            r#"cpu_usage_idle{host="a"} 99.5@1556813561000"#,
        ]
    );
}

#[tokio::test]
async fn points_without_a_timestamp_get_the_request_time() {
    let s = setup(IngestConfig::default());
    let (status, _, _) = send(&s.app, "/write", &[], b"m f=1".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.clock.advance(5_000);
    let (status, _, _) = send(&s.app, "/write", &[], b"m f=2\n".to_vec()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        dump(&s.storage, "default").await,
        vec![
            format!("m_f 1@{NOW_MS}"),
            format!("m_f 2@{}", NOW_MS + 5_000)
        ]
    );
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_bounded() {
    let s = setup(IngestConfig {
        max_decoded_bytes: 1000,
        ..IngestConfig::default()
    });
    let (status, body, _) = send(
        &s.app,
        "/api/v1/influxdb/write?precision=ms",
        &[("Content-Encoding", "gzip")],
        gzip(b"m f=1 1000\nm f=2 2000\n"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body, _) = send(
        &s.app,
        "/api/v1/json/write",
        &[("Content-Encoding", "gzip")],
        gzip(br#"{"tags":{"__name__":"j"},"timestamp":"3","value":3}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        dump(&s.storage, "default").await,
        vec!["j 3@3000", "m_f 1@1000", "m_f 2@2000"]
    );
    // A gzip bomb stops at the limit; garbage is a 400; other encodings 415.
    let big = "m f=1 1\n".repeat(1000);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "gzip",
            gzip(big.as_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit",
        ),
        (
            "gzip",
            b"not gzip at all".to_vec(),
            StatusCode::BAD_REQUEST,
            "gzip",
        ),
        (
            "snappy",
            b"m f=1".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "snappy",
        ),
        (
            "br",
            b"m f=1".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "br",
        ),
    ];
    for (encoding, body, want, needle) in cases {
        for uri in ["/write", "/api/v1/json/write"] {
            let (status, msg, _) =
                send(&s.app, uri, &[("Content-Encoding", encoding)], body.clone()).await;
            assert_eq!(status, want, "{uri} {encoding}: {msg}");
            assert!(msg.contains(needle), "{uri} {encoding}: {msg}");
        }
    }
    assert_eq!(dump(&s.storage, "default").await.len(), 3);
}

#[tokio::test]
async fn bad_lines_are_a_400_in_influxdbs_json_shape_after_the_good_ones_are_stored() {
    let s = setup(IngestConfig::default());
    let (status, body, ctype) = send(
        &s.app,
        "/api/v1/influxdb/write?precision=s",
        &[],
        b"m f=1 1\nm,t=a f=2 1\nm f=oops 2\nm f=3 3\n".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ctype.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let msg = v["error"].as_str().expect("error string");
    assert!(
        msg.starts_with("1 of 4 lines rejected; first: line 3: field f: invalid field value"),
        "{msg}"
    );
    assert_eq!(dump(&s.storage, "default").await.len(), 3);
    // Whole-request errors have the same shape.
    let cases = [
        ("/write?precision=d", None, "precision"),
        ("/write", Some("../x"), "tenant"),
    ];
    for (uri, tenant, needle) in cases {
        let headers: Vec<(&str, &str)> = tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect();
        let (status, body, _) = send(&s.app, uri, &headers, b"m f=1".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(needle)),
            "{uri}: {body}"
        );
    }
    // An empty body is nothing to do.
    let (status, _, _) = send(&s.app, "/write", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let s = setup(IngestConfig {
        max_request_bytes: 100,
        ..IngestConfig::default()
    });
    for uri in ["/write", "/api/v1/json/write"] {
        let (status, body, _) = send(&s.app, uri, &[], vec![b'x'; 101]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}: {body}");
    }
}

#[tokio::test]
async fn json_write_stores_m3s_body_and_rejects_bad_ones() {
    let s = setup(IngestConfig::default());
    let (status, body, _) = send(
        &s.app,
        "/api/v1/json/write",
        &[("X-Scope-OrgID", "team-a")],
        br#"{"tags": {"__name__": "third_avenue", "city": "new_york", "checkout": "1"},
             "timestamp": "1534952005", "value": 3347.26}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_empty());
    assert_eq!(
        dump(&s.storage, "team-a").await,
        vec![r#"third_avenue{checkout="1", city="new_york"} 3347.26@1534952005000"#]
    );
    let cases: &[(&[u8], &str)] = &[
        (b"{", "invalid JSON write request"),
        (
            br#"{"tags": {}, "timestamp": "1", "value": 1}"#,
            "metric name",
        ),
        (
            br#"{"tags": {"__name__": "m"}, "timestamp": "later", "value": 1}"#,
            "timestamp",
        ),
    ];
    for (body, needle) in cases {
        let (status, msg, _) = send(&s.app, "/api/v1/json/write", &[], body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(dump(&s.storage, "default").await.is_empty());
}

fn remote_write_body(cluster: &str, replica: &str, t: i64) -> Vec<u8> {
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let req = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![
                label("__name__", "up"),
                label("__replica__", replica),
                label("cluster", cluster),
                label("job", "node"),
            ],
            samples: vec![proto::Sample {
                value: 1.0,
                timestamp: t,
            }],
            exemplars: vec![],
        }],
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

async fn remote_write(s: &Setup, cluster: &str, replica: &str, t: i64) -> (StatusCode, String) {
    let (status, body, _) = send(
        &s.app,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        remote_write_body(cluster, replica, t),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn an_ha_pair_over_remote_write_stores_one_replica_and_fails_over() {
    let s = setup(ha_enabled());
    // Both replicas scrape every 10 s; a is elected, b's requests get 202.
    for i in 0..6 {
        let t = NOW_MS + i * 10_000;
        s.clock.set(t);
        assert_eq!(
            remote_write(&s, "prom", "a", t).await.0,
            StatusCode::NO_CONTENT
        );
        let (status, msg) = remote_write(&s, "prom", "b", t + 1).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{msg}");
        assert!(msg.contains("elected replica is \"a\""), "{msg}");
    }
    // a dies after its sample at +50 s; b takes over 30 s after a was last
    // recorded (its heartbeat at +40 s: heartbeats are written when the
    // stored time is 15 s old).
    let mut failed_over_at = None;
    for i in 6..12 {
        let t = NOW_MS + i * 10_000;
        s.clock.set(t);
        let (status, _) = remote_write(&s, "prom", "b", t + 1).await;
        if status == StatusCode::NO_CONTENT {
            failed_over_at.get_or_insert(t);
        } else {
            assert_eq!(status, StatusCode::ACCEPTED);
            assert!(failed_over_at.is_none(), "no flapping back");
        }
    }
    assert_eq!(failed_over_at, Some(NOW_MS + 70_000));
    let stored = dump(&s.storage, "default").await;
    // One series, without __replica__: a's samples, then b's.
    assert!(
        stored
            .iter()
            .all(|l| l.starts_with(r#"up{cluster="prom", job="node"}"#)),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 6 + 5, "{stored:?}");
}

#[tokio::test]
async fn an_ha_pair_over_line_protocol_and_json_is_deduplicated_too() {
    let s = setup(ha_enabled());
    let (status, _, _) = send(
        &s.app,
        "/write?precision=ms",
        &[],
        b"cpu,cluster=prom,__replica__=a,host=h usage=1 1000".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = send(
        &s.app,
        "/write?precision=ms",
        &[],
        b"cpu,cluster=prom,__replica__=b,host=h usage=2 1000".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _, _) = send(
        &s.app,
        "/api/v1/json/write",
        &[],
        br#"{"tags":{"__name__":"j","cluster":"prom","__replica__":"b"},"timestamp":"1","value":1}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, _) = send(
        &s.app,
        "/api/v1/json/write",
        &[],
        br#"{"tags":{"__name__":"j","cluster":"prom","__replica__":"a"},"timestamp":"1","value":1}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        dump(&s.storage, "default").await,
        vec![
            r#"cpu_usage{cluster="prom", host="h"} 1@1000"#,
            r#"j{cluster="prom"} 1@1000"#,
        ]
    );
}

#[tokio::test]
async fn two_ingesters_on_one_store_agree_on_the_elected_replica() {
    let storage = Storage::in_memory();
    let one = setup_on(storage.clone(), ha_enabled());
    let two = setup_on(storage.clone(), ha_enabled());
    assert_eq!(
        remote_write(&one, "prom", "b", 1).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remote_write(&two, "prom", "a", 1).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        remote_write(&two, "prom", "b", 2).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dump(&storage, "default").await,
        vec![
            r#"up{cluster="prom", job="node"} 1@1"#,
            r#"up{cluster="prom", job="node"} 1@2"#,
        ]
    );
}
