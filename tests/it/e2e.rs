//! Prometheus scrapes itself and remote-writes to Strata; the same PromQL
//! evaluated by both at the same past timestamp must give the same answer.
//! Once on local storage, once on SeaweedFS through the S3 API.

use std::process::Command;
use std::time::{Duration, Instant};

use strata_tests::process::promtool_bin;
use strata_tests::promapi::{self, QueryResult};
use strata_tests::remote_write::now_ms;
use strata_tests::{Prometheus, Strata, Weed};

use crate::{Scratch, client};

/// Instant queries compared at the fixed time T. Both servers hold the same
/// samples, so labels and values must match (up to float rounding).
///
/// The reference is Prometheus 2.42 while Strata follows Prometheus 3 semantics
/// (the conformance suite's). Expressions are chosen where the two agree:
/// - T falls between scrapes, so left-closed (2.x) and left-open (3.x) range
///   and lookback windows select the same samples;
/// - counter rates use windows shorter than the scraped history (`[5s]` after
///   at least 12 scrapes before T), because when a window starts before a series' first
///   sample, 2.x and 3.x extrapolate towards the counter's zero point in a
///   different order and give different results (measured: 46.9 vs 44.3);
///   `handler="/metrics"` exists from the first scrape on, unlike the API
///   handlers this test itself creates.
const INSTANT_EXPRS: &[&str] = &[
    "up",
    "prometheus_build_info",
    "sum by (job) (up)",
    r#"up{job="prometheus"} == 1"#,
    r#"count({__name__=~"prometheus_tsdb_.*"})"#,
    r#"count by (__name__) ({__name__=~"prometheus_http_.*"})"#,
    "prometheus_tsdb_head_samples_appended_total",
    "scrape_samples_scraped",
    "rate(prometheus_tsdb_head_samples_appended_total[5s])",
    r#"sum by (code) (rate(prometheus_http_requests_total{handler="/metrics"}[5s]))"#,
    "max_over_time(scrape_duration_seconds[8s])",
    "scrape_series_added + 0",
];

/// Range queries compared over [T-5s, T] at a 1 s step (windows stay inside
/// the scraped history, see above).
const RANGE_EXPRS: &[&str] = &[
    "up",
    "sum by (job) (up)",
    "rate(prometheus_tsdb_head_samples_appended_total[3s])",
];

/// Prometheus scraping itself every second, remote-writing to `strata_url`.
fn prometheus_config(own_port: u16, strata_url: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:{own_port}']
remote_write:
  - url: {strata_url}/api/v1/write
    remote_timeout: 10s
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    )
}

/// Runs `promtool query instant [--time T] URL EXPR`; returns (success, stdout+stderr).
fn promtool_instant(url: &str, expr: &str, time_ms: Option<i64>) -> (bool, String) {
    let mut cmd = Command::new(promtool_bin());
    cmd.args(["query", "instant"]);
    if let Some(t) = time_ms {
        cmd.arg(format!("--time={}", promapi::api_time(t)));
    }
    cmd.arg(url).arg(expr);
    match cmd.output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run promtool: {e}")),
    }
}

/// Waits until Strata answers `up` for Prometheus' own target, using promtool as the client.
async fn wait_for_up_via_promtool(strata: &mut Strata) -> String {
    let start = Instant::now();
    loop {
        strata.proc.assert_running();
        let (ok, out) = promtool_instant(&strata.url, "up", None);
        if ok && out.contains(r#"job="prometheus""#) {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "after 60 s, `promtool query instant {} up` still does not show Prometheus' up series; last output:\n{out}",
            strata.url
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Picks T: 2.5 s before the latest scrape once Prometheus holds at least 15
/// scrapes. Scrapes are 1 s apart, so T and T-1m etc. fall between samples and
/// range boundaries never coincide with a sample (Prometheus 2 closes the
/// range on the left, Prometheus 3 opens it; T is chosen so it doesn't matter).
async fn pick_time(prom: &Prometheus) -> i64 {
    let c = client();
    let start = Instant::now();
    loop {
        let now = now_ms();
        let count = promapi::query(
            &c,
            &prom.url,
            r#"count_over_time(up{job="prometheus"}[1m])"#,
            now,
            None,
        )
        .await
        .ok()
        .and_then(|r| r.single_value())
        .unwrap_or(0.0);
        if count >= 15.0 {
            let r = promapi::query(
                &c,
                &prom.url,
                r#"timestamp(up{job="prometheus"})"#,
                now,
                None,
            )
            .await
            .expect("timestamp(up) from Prometheus");
            let last_scrape_s = r.single_value().expect("one timestamp(up) value");
            #[allow(clippy::cast_possible_truncation)]
            let last_scrape_ms = (last_scrape_s * 1000.0).round() as i64;
            return last_scrape_ms - 2500;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus did not scrape itself 15 times within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One comparison round: the list of mismatches (empty when everything matches).
async fn compare_once(strata: &Strata, prom: &Prometheus, t: i64) -> Vec<String> {
    let c = client();
    let mut problems = Vec::new();
    for expr in INSTANT_EXPRS {
        let expected = match promapi::query(&c, &prom.url, expr, t, None).await {
            Ok(r) => r,
            Err(e) => panic!("Prometheus failed on its own query {expr}: {e:#}"),
        };
        assert!(
            !expected.series.is_empty(),
            "Prometheus returned nothing for {expr} at {t}: the test would prove nothing"
        );
        match promapi::query(&c, &strata.url, expr, t, None).await {
            Ok(got) => {
                if let Some(d) = got.diff(&expected) {
                    problems.push(format!(
                        "instant query {expr} at {}:\n{d}",
                        promapi::api_time(t)
                    ));
                }
            }
            Err(e) => problems.push(format!("instant query {expr}: Strata error: {e:#}")),
        }
    }
    let (start, end) = (t - 5_000, t);
    for expr in RANGE_EXPRS {
        let expected: QueryResult =
            promapi::query_range(&c, &prom.url, expr, start, end, 1000, None)
                .await
                .unwrap_or_else(|e| {
                    panic!("Prometheus failed on its own range query {expr}: {e:#}")
                });
        match promapi::query_range(&c, &strata.url, expr, start, end, 1000, None).await {
            Ok(got) => {
                if let Some(d) = got.diff(&expected) {
                    problems.push(format!("range query {expr}:\n{d}"));
                }
            }
            Err(e) => problems.push(format!("range query {expr}: Strata error: {e:#}")),
        }
    }
    let expected = promapi::series(&c, &prom.url, "up", start, end, None)
        .await
        .expect("Prometheus /api/v1/series");
    match promapi::series(&c, &strata.url, "up", start, end, None).await {
        Ok(got) if got == expected => {}
        Ok(got) => problems.push(format!(
            "/api/v1/series match[]=up: got {got:?}, expected {expected:?}"
        )),
        Err(e) => problems.push(format!("/api/v1/series: Strata error: {e:#}")),
    }
    match promapi::get(&c, &strata.url, "/api/v1/label/job/values", &[], None).await {
        Ok(v)
            if v.as_array()
                .is_some_and(|a| a.iter().any(|x| x == "prometheus")) => {}
        Ok(v) => problems.push(format!(
            "/api/v1/label/job/values lacks \"prometheus\": {v}"
        )),
        Err(e) => problems.push(format!("/api/v1/label/job/values: Strata error: {e:#}")),
    }
    match promapi::get(&c, &strata.url, "/api/v1/labels", &[], None).await {
        Ok(v)
            if v.as_array().is_some_and(|a| {
                a.iter().any(|x| x == "__name__") && a.iter().any(|x| x == "job")
            }) => {}
        Ok(v) => problems.push(format!("/api/v1/labels lacks __name__ or job: {v}")),
        Err(e) => problems.push(format!("/api/v1/labels: Strata error: {e:#}")),
    }
    problems
}

/// Compares until everything matches (remote write delivers with a delay) or 45 s pass.
async fn compare_until_equal(strata: &mut Strata, prom: &Prometheus, t: i64) {
    let start = Instant::now();
    loop {
        strata.proc.assert_running();
        let problems = compare_once(strata, prom, t).await;
        if problems.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "Strata and Prometheus still disagree after 45 s ({} problems):\n{}",
            problems.len(),
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The whole flow against a running Strata; returns Prometheus (still running) and T.
async fn run_against(strata: &mut Strata, scratch: &Scratch) -> (Prometheus, i64) {
    let logs = scratch.path();
    let strata_url = strata.url.clone();
    let prom = Prometheus::start(|port| prometheus_config(port, &strata_url), &[], &logs).await;

    let out = wait_for_up_via_promtool(strata).await;
    assert!(
        out.contains("=> 1 @["),
        "promtool output for up should show value 1: {out}"
    );

    let t = pick_time(&prom).await;
    compare_until_equal(strata, &prom, t).await;

    // promtool as the query client, at T, with an aggregation.
    let (ok, out) = promtool_instant(&strata.url, "sum by (job) (up)", Some(t));
    assert!(ok, "promtool query instant against Strata failed: {out}");
    assert!(
        out.contains(r#"{job="prometheus"} => 1 @["#),
        "unexpected promtool output for sum by (job) (up): {out}"
    );
    (prom, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_local() {
    let scratch = Scratch::new("e2e-local");
    let mut strata = Strata::start_local(&scratch.sub("strata-data"), &scratch.path()).await;
    let (_prom, _t) = run_against(&mut strata, &scratch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_s3() {
    let scratch = Scratch::new("e2e-s3");
    let weed = Weed::start("strata", &scratch.path()).await;
    let args = vec![
        "--storage".to_string(),
        "s3".to_string(),
        "--s3-bucket".to_string(),
        weed.bucket.clone(),
        "--s3-endpoint".to_string(),
        weed.endpoint.clone(),
        "--s3-region".to_string(),
        Weed::REGION.to_string(),
        "--s3-allow-http".to_string(),
        "--s3-path-style".to_string(),
        "--data-dir".to_string(),
        scratch.sub("strata-data").display().to_string(),
    ];
    let envs = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            Weed::ACCESS_KEY.to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            Weed::SECRET_KEY.to_string(),
        ),
    ];
    let bin = strata_tests::process::strata_bin();
    let mut strata = Strata::start(&bin, args, envs, &scratch.path()).await;
    let (prom, t) = run_against(&mut strata, &scratch).await;

    // The samples really are in the bucket.
    let files = weed
        .list_files()
        .await
        .expect("list the bucket through the filer");
    assert!(
        !files.is_empty(),
        "Strata answered queries but the bucket {} is empty",
        weed.bucket
    );

    // A new Strata process on the same bucket (kill -9 the old one) answers the same.
    strata.kill9_and_restart().await;
    let c = client();
    for expr in [
        "up",
        "sum by (job) (up)",
        "rate(prometheus_tsdb_head_samples_appended_total[5s])",
    ] {
        let expected = promapi::query(&c, &prom.url, expr, t, None)
            .await
            .expect("Prometheus query");
        let got = promapi::query(&c, &strata.url, expr, t, None)
            .await
            .unwrap_or_else(|e| panic!("after restart, Strata failed on {expr}: {e:#}"));
        if let Some(d) = got.diff(&expected) {
            panic!("after restart on the same bucket, {expr} differs:\n{d}");
        }
    }
}
