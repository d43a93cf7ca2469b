//! The coordinator protocols beside remote write, against the real binary:
//! InfluxDB line protocol (M3's and InfluxDB's paths), M3's JSON write, and
//! an HA pair of Prometheus replicas over remote write, including failover
//! and two ingesters sharing one store. Everything is read back through
//! `/api/v1/query`.

use std::path::Path;
use std::time::{Duration, Instant};

use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi::{self, QueryResult};
use strata_tests::remote_write::{self, encode, now_ms, request, series};

use crate::{Scratch, client};

/// HA deduplication on for every tenant, with short timeouts so failover
/// happens within the test.
const CONFIG: &str = r#"
[ingest.ha_tracker]
accept_ha_samples = true
update_timeout = "1s"
failover_timeout = "3s"
"#;

async fn start(data: &Path, config: &Path, logs: &Path) -> Strata {
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    Strata::start(&strata_bin(), args, Vec::new(), logs).await
}

async fn post(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut req = c.post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn query(c: &reqwest::Client, s: &Strata, expr: &str, at_ms: i64) -> QueryResult {
    promapi::query(c, &s.url, expr, at_ms, None)
        .await
        .unwrap_or_else(|e| panic!("query {expr}: {e:#}"))
}

/// One remote-write request from `replica` of HA cluster `cluster`.
async fn ha_write(
    c: &reqwest::Client,
    s: &Strata,
    name: &str,
    cluster: &str,
    replica: &str,
    t: i64,
    v: f64,
) -> (u16, String) {
    let body = encode(&request(vec![series(
        &[
            ("__name__", name),
            ("cluster", cluster),
            ("__replica__", replica),
            ("job", "ha"),
        ],
        &[(t, v)],
    )]));
    remote_write::send(c, &s.write_url(), body, None)
        .await
        .expect("remote write")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols() {
    let scratch = Scratch::new("protocols");
    let config = scratch.path().join("strata.toml");
    std::fs::write(&config, CONFIG).expect("write the config");
    let data = scratch.sub("strata-data");
    let strata = start(&data, &config, &scratch.path()).await;
    let c = client();
    let t0 = now_ms() - 60_000;

    // --- InfluxDB line protocol at M3's path: nanoseconds, escapes, every
    // field type; string fields are not stored.
    let ns = t0 * 1_000_000;
    let lines = format!(
        "# weather\n\
         e2e_weather,location=us-midwest,station=a\\ b temperature=82,wind=42i,ok=true,note=\"fine, thanks\" {ns}\n\
         \n\
         e2e_weather,location=eu temperature=11.5,wind=7u {ns}\n"
    );
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/influxdb/write", strata.url),
        &[],
        lines,
    )
    .await;
    assert_eq!(status, 204, "line protocol: {body}");
    // InfluxDB's own path with a precision and the db parameter.
    let (status, body) = post(
        &c,
        &format!("{}/write?db=telegraf&precision=s", strata.url),
        &[],
        format!("e2e_cpu,host=h1 usage_idle=99.5 {}", t0 / 1000),
    )
    .await;
    assert_eq!(status, 204, "/write: {body}");
    // A bad line: the good one is stored, the answer names the bad one.
    let (status, body) = post(
        &c,
        &format!("{}/write?precision=ms", strata.url),
        &[],
        format!("e2e_partial f=1 {t0}\ne2e_partial f= {t0}\n"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).expect("InfluxDB's error shape");
    let msg = err["error"].as_str().unwrap_or_default();
    assert!(msg.contains("line 2"), "{msg}");

    let at = t0 + 1000;
    let temp = query(&c, &strata, "e2e_weather_temperature", at).await;
    let want = [
        (
            r#"{__name__="e2e_weather_temperature", location="eu"}"#,
            11.5,
        ),
        (
            r#"{__name__="e2e_weather_temperature", location="us-midwest", station="a b"}"#,
            82.0,
        ),
    ];
    assert_eq!(temp.series.len(), 2, "{temp:?}");
    for (labels, v) in want {
        assert_eq!(temp.series.get(labels), Some(&vec![(at, v)]), "{temp:?}");
    }
    let sum = |q: QueryResult| q.single_value();
    assert_eq!(
        sum(query(&c, &strata, "sum(e2e_weather_wind)", at).await),
        Some(49.0)
    );
    assert_eq!(
        sum(query(&c, &strata, "e2e_weather_ok", at).await),
        Some(1.0)
    );
    assert!(
        query(&c, &strata, "e2e_weather_note", at)
            .await
            .series
            .is_empty()
    );
    assert_eq!(
        sum(query(&c, &strata, "e2e_cpu_usage_idle", at).await),
        Some(99.5)
    );
    assert_eq!(
        sum(query(&c, &strata, "e2e_partial_f", at).await),
        Some(1.0)
    );

    // --- M3's JSON write.
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/json/write", strata.url),
        &[],
        format!(
            r#"{{"tags": {{"__name__": "e2e_third_avenue", "city": "new_york", "checkout": "1"}},
                 "timestamp": "{}", "value": 3347.26}}"#,
            t0 / 1000
        ),
    )
    .await;
    assert_eq!(status, 200, "json write: {body}");
    let (status, body) = post(
        &c,
        &format!("{}/api/v1/json/write", strata.url),
        &[],
        r#"{"tags": {"city": "no name"}, "timestamp": "1", "value": 1}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let q = query(&c, &strata, "e2e_third_avenue", at).await;
    assert_eq!(
        q.series
            .get(r#"{__name__="e2e_third_avenue", checkout="1", city="new_york"}"#),
        Some(&vec![(at, 3347.26)]),
        "{q:?}"
    );

    // --- An HA pair over remote write: replica a is elected, b's requests
    // get 202 and are dropped; the stored series has no __replica__.
    let t1 = now_ms() - 30_000;
    // Taken before the request: the server hears from a after this.
    let a_last_write = Instant::now();
    let (status, body) = ha_write(&c, &strata, "e2e_ha_up", "c1", "a", t1, 1.0).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = ha_write(&c, &strata, "e2e_ha_up", "c1", "b", t1 + 1, 2.0).await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("elected replica is \"a\""), "{body}");
    let only = r#"{__name__="e2e_ha_up", cluster="c1", job="ha"}"#;
    let q = query(&c, &strata, "e2e_ha_up", t1 + 500).await;
    assert_eq!(q.series.len(), 1, "{q:?}");
    assert_eq!(q.series.get(only), Some(&vec![(t1 + 500, 1.0)]), "{q:?}");

    // a goes silent: b is elected once a has not been heard from for the
    // failover timeout (3 s), and not before.
    let mut t = t1 + 1000;
    let failed_over = loop {
        t += 250;
        let (status, body) = ha_write(&c, &strata, "e2e_ha_up", "c1", "b", t, 3.0).await;
        match status {
            204 => break a_last_write.elapsed(),
            202 => {}
            other => panic!("HA write from b: {other}: {body}"),
        }
        assert!(
            a_last_write.elapsed() < Duration::from_secs(20),
            "no failover"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        failed_over >= Duration::from_secs(3),
        "failover after {failed_over:?}"
    );
    let (status, body) = ha_write(&c, &strata, "e2e_ha_up", "c1", "a", t + 1, 9.0).await;
    assert_eq!(status, 202, "a is no longer elected: {body}");
    let q = query(&c, &strata, "e2e_ha_up", t + 500).await;
    assert_eq!(q.series.get(only), Some(&vec![(t + 500, 3.0)]), "{q:?}");
    assert_eq!(q.series.len(), 1, "{q:?}");

    // --- Two ingesters on one store agree on the elected replica.
    let second = start(&data, &config, &scratch.path()).await;
    let t2 = now_ms() - 20_000;
    let (status, body) = ha_write(&c, &strata, "e2e_ha2_up", "c2", "x", t2, 5.0).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = ha_write(&c, &second, "e2e_ha2_up", "c2", "y", t2 + 1, 6.0).await;
    assert_eq!(
        status, 202,
        "the second ingester knows x is elected: {body}"
    );
    let (status, body) = ha_write(&c, &second, "e2e_ha2_up", "c2", "x", t2 + 2, 7.0).await;
    assert_eq!(status, 204, "{body}");
    let q = query(&c, &second, "e2e_ha2_up", t2 + 500).await;
    assert_eq!(
        q.series
            .get(r#"{__name__="e2e_ha2_up", cluster="c2", job="ha"}"#),
        Some(&vec![(t2 + 500, 7.0)]),
        "{q:?}"
    );
    assert_eq!(q.series.len(), 1, "{q:?}");
}
