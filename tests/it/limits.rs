//! Per-tenant limits against the real binary: a tenant over its ingestion
//! rate gets 429 naming the limit and the tenant while another tenant
//! writes on; series per request and per-tenant label limits are 400;
//! series over the per-metric limit are dropped (400) and the rest stored; a
//! query result over the tenant's size limit is Prometheus' `execution`
//! error; every refusal is counted on `/metrics`.

use serde_json::Value;
use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi::api_time;
use strata_tests::remote_write::{encode, now_ms, request, series};

use crate::{Scratch, client};

/// Sends `n` series of `samples` samples each, named `name`, as `tenant`.
async fn write(
    url: &str,
    tenant: &str,
    name: &str,
    n: usize,
    samples: usize,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let t0 = now_ms() - 60_000;
    let ts: Vec<_> = (0..n)
        .map(|i| {
            let i = i.to_string();
            let mut labels = vec![("__name__", name), ("i", i.as_str())];
            labels.extend_from_slice(extra);
            let points: Vec<(i64, f64)> = (0..samples)
                .map(|k| (t0 + k as i64 * 10, k as f64))
                .collect();
            series(&labels, &points)
        })
        .collect();
    let resp = client()
        .post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Scope-OrgID", tenant)
        .body(encode(&request(ts)))
        .send()
        .await
        .expect("write");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn query(url: &str, tenant: &str, q: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", q.to_string()), ("time", api_time(now_ms()))])
        .header("X-Scope-OrgID", tenant)
        .send()
        .await
        .expect("query");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The value of one sample line of `/metrics`, 0 when absent.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn tenants_are_limited_by_their_own_limits() {
    let scratch = Scratch::new("limits");
    let config = scratch.path().join("strata.toml");
    // "slow" refills one sample a second: once its burst is spent, nothing
    // this test sends can pass, however slow the machine.
    std::fs::write(
        &config,
        r#"
[limits]
max_series_per_request = 50
[limits.tenants.slow]
ingestion_rate = 1
ingestion_burst = 100
max_series_per_request = 5
max_label_names_per_series = 3
max_result_series = 2
"#,
    )
    .expect("config");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        scratch.sub("data").display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;
    let url = strata.url.as_str();

    // Rate: the burst passes, the next request does not; "fast" (no rate
    // limit) is not held back by "slow".
    assert_eq!(write(url, "slow", "up", 4, 25, &[]).await.0, 204);
    let (status, msg) = write(url, "slow", "up", 1, 50, &[]).await;
    assert_eq!(status, 429, "{msg}");
    assert!(
        msg.contains("ingestion_rate") && msg.contains("\"slow\""),
        "{msg}"
    );
    assert_eq!(write(url, "fast", "up", 4, 1000, &[]).await.0, 204);

    // Series per request: the tenant's 5, the default 50 for others.
    let (status, msg) = write(url, "slow", "many", 6, 1, &[]).await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("max_series_per_request: 5") && msg.contains("\"slow\""),
        "{msg}"
    );
    assert_eq!(write(url, "fast", "many", 6, 1, &[]).await.0, 204);
    let (status, msg) = write(url, "fast", "many", 51, 1, &[]).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("max_series_per_request: 50"), "{msg}");

    // Label count: 4 labels pass the default limit (30) for "fast"; the same
    // series, now in the series cache, is still refused for "slow" (3).
    let extra = [("a", "1"), ("b", "2")];
    assert_eq!(write(url, "fast", "wide", 1, 1, &extra).await.0, 204);
    let (status, msg) = write(url, "slow", "wide", 1, 1, &extra).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("limit of 3 label names"), "{msg}");

    // Result size: four `up` series; "slow" may get two.
    let (status, body) = query(url, "slow", "up").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution", "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("max_result_series: 2") && msg.contains("\"slow\""),
        "{msg}"
    );
    let (status, body) = query(url, "slow", "up{i=~\"0|1\"}").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(2));
    let (status, body) = query(url, "fast", "up").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(4));

    // Every refusal is on /metrics, by tenant and limit.
    let text = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let line = |m: &str, tenant: &str, limit: &str| {
        metric(
            &text,
            &format!("{m}{{tenant=\"{tenant}\",limit=\"{limit}\"}}"),
        )
    };
    assert_eq!(
        line(
            "strata_ingest_limited_requests_total",
            "slow",
            "ingestion_rate"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        line(
            "strata_ingest_limited_samples_total",
            "slow",
            "ingestion_rate"
        ),
        50.0
    );
    assert_eq!(
        line(
            "strata_ingest_limited_requests_total",
            "slow",
            "max_series_per_request"
        ),
        1.0
    );
    assert_eq!(
        line(
            "strata_ingest_limited_requests_total",
            "fast",
            "max_series_per_request"
        ),
        1.0
    );
    assert_eq!(
        line(
            "strata_query_limited_requests_total",
            "slow",
            "max_result_series"
        ),
        1.0
    );
}

#[tokio::test]
async fn series_over_the_per_metric_limit_are_dropped_and_the_rest_stored() {
    let scratch = Scratch::new("limits-per-metric");
    let config = scratch.path().join("strata.toml");
    std::fs::write(
        &config,
        r#"
[limits.tenants.capped]
max_series_per_metric = 3
"#,
    )
    .expect("config");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        scratch.sub("data").display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;
    let url = strata.url.as_str();

    // Five series of `cpu` in one request: three stored, two dropped, and
    // the answer is 400 (the sender must not retry) naming the limit, the
    // metric and the tenant.
    let (status, msg) = write(url, "capped", "cpu", 5, 2, &[]).await;
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.contains("max_series_per_metric: 3")
            && msg.contains("\"cpu\"")
            && msg.contains("\"capped\"")
            && msg.contains("2 new series"),
        "{msg}"
    );
    // The three accepted series are written again without complaint;
    // another metric and another tenant have their own counts.
    assert_eq!(write(url, "capped", "cpu", 3, 2, &[]).await.0, 204);
    assert_eq!(write(url, "capped", "mem", 3, 2, &[]).await.0, 204);
    assert_eq!(write(url, "free", "cpu", 5, 2, &[]).await.0, 204);

    let count = |body: &Value| {
        body["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_string)
    };
    let (status, body) = query(url, "capped", "count(cpu)").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&body).as_deref(), Some("3"), "{body}");
    let (_, body) = query(url, "capped", "cpu{i=~\"3|4\"}").await;
    assert_eq!(
        body["data"]["result"].as_array().map(Vec::len),
        Some(0),
        "{body}"
    );
    let (_, body) = query(url, "capped", "count(mem)").await;
    assert_eq!(count(&body).as_deref(), Some("3"), "{body}");
    let (_, body) = query(url, "free", "count(cpu)").await;
    assert_eq!(count(&body).as_deref(), Some("5"), "{body}");

    // The line protocol keeps the same counts: `lp_f` gets its three series
    // in one request and a fourth in the next, which alone is dropped.
    let t = now_ms() - 30_000;
    let lines: String = (0..3).map(|i| format!("lp,i={i} f=1 {t}\n")).collect();
    let lp = |body: String| {
        client()
            .post(format!("{url}/write?precision=ms"))
            .header("X-Scope-OrgID", "capped")
            .body(body)
            .send()
    };
    let resp = lp(lines).await.expect("line protocol");
    assert_eq!(resp.status().as_u16(), 204);
    let resp = lp(format!("lp,i=0 f=2 {}\nlp,i=9 f=2 {}\n", t + 1, t + 1))
        .await
        .expect("line protocol");
    assert_eq!(resp.status().as_u16(), 400);
    // InfluxDB's error shape: {"error": "..."}.
    let body: Value =
        serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains("max_series_per_metric: 3") && msg.contains("\"lp_f\""),
        "{msg}"
    );
    let (_, body) = query(url, "capped", "count(lp_f)").await;
    assert_eq!(count(&body).as_deref(), Some("3"), "{body}");

    let text = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let line = |m: &str| {
        metric(
            &text,
            &format!("{m}{{tenant=\"capped\",limit=\"max_series_per_metric\"}}"),
        )
    };
    assert_eq!(line("strata_ingest_limited_series_total"), 3.0, "{text}");
    assert_eq!(line("strata_ingest_limited_samples_total"), 5.0);
    assert_eq!(line("strata_ingest_limited_requests_total"), 2.0);
}

#[tokio::test]
async fn a_bad_limits_section_stops_the_start_naming_the_field() {
    let scratch = Scratch::new("limits-bad");
    let config = scratch.path().join("strata.toml");
    std::fs::write(&config, "[limits.tenants.slow]\ningestion_burst = 0\n").expect("config");
    let stderr = start_fails(&["--config", &config.display().to_string()]);
    assert!(
        stderr.contains("limits.tenants.slow.ingestion_burst"),
        "{stderr}"
    );
}

/// Runs `strata serve --storage memory ARGS` on a free port and returns its
/// stderr, failing the test unless it exits with an error within 30 s.
pub fn start_fails(args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(strata_bin());
    cmd.args(["serve", "--storage", "memory", "--listen"])
        .arg(format!("127.0.0.1:{}", strata_tests::process::free_port()))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // Settings of the caller's environment must not leak in (and the binary
    // refuses unknown STRATA_* variables, STRATA_BIN among them).
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("run strata");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata started with {args:?} instead of refusing the configuration");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(!status.success(), "strata exited 0 with {args:?}: {stderr}");
    stderr
}
