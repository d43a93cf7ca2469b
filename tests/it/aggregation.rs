//! The aggregator end to end, against the real binary: rules through the
//! HTTP API, `strata aggregate` as a separate process, queries that read
//! the aggregated namespaces (`X-Strata-Resolution`), drop rules at ingest
//! picked up without a restart, two aggregators at once, and an aggregator
//! killed (SIGKILL) mid-pass whose re-run leaves identical objects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ingest::proto::TimeSeries;
use serde_json::{Value, json};
use strata_tests::process::strata_bin;
use strata_tests::promapi::{self, api_time};
use strata_tests::remote_write::{self, now_ms};
use strata_tests::{Strata, Weed};

use crate::{Scratch, client};

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;
const D: i64 = 24 * H;

/// Jobs off (they run as separate processes here), fast rule polling, and
/// raw data of tenant `long` kept 7 days (a 30-day query must read the
/// aggregated namespace); aggregation windows of `window`.
fn write_config(scratch: &Scratch, window: &str) -> PathBuf {
    let config = format!(
        r#"
[compact]
every = "0s"
tenant_retention = {{ long = "7d" }}

[aggregate]
every = "0s"
rules_poll = "1s"
lease_ttl = "2s"
max_windows_per_pass = 1000
window = "{window}"
"#
    );
    let path = scratch.path().join("strata.toml");
    std::fs::write(&path, config).expect("write the config");
    path
}

pub(crate) fn local_args(config: &Path, data: &Path) -> Vec<String> {
    [
        "--config",
        &config.display().to_string(),
        "--storage",
        "local",
        "--data-dir",
        &data.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `strata aggregate ARGS` (one pass), started in the background.
pub(crate) fn spawn_aggregate(
    args: &[String],
    envs: &[(String, String)],
    log: &Path,
) -> std::process::Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(strata_bin());
    cmd.arg("aggregate").args(args).stdout(out).stderr(err);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.spawn().expect("start strata aggregate")
}

/// Runs `strata aggregate` to completion and checks its exit status.
pub(crate) fn aggregate(args: &[String], envs: &[(String, String)], log: &Path) {
    let status = spawn_aggregate(args, envs, log)
        .wait()
        .expect("wait for strata aggregate");
    assert!(
        status.success(),
        "strata aggregate failed ({status}): {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub(crate) async fn put_rules(strata: &Strata, tenant: &str, rules: Value) {
    let resp = client()
        .put(format!("{}/api/v1/rules", strata.url))
        .header("X-Scope-OrgID", tenant)
        .header("Content-Type", "application/json")
        .body(rules.to_string())
        .send()
        .await
        .expect("PUT rules");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "PUT /api/v1/rules: {status}: {text}");
}

/// Waits until queries of `tenant` know its storage policies (the query
/// tier re-reads rule sets every `aggregate.rules_poll`).
async fn wait_policies_visible(strata: &Strata, tenant: &str) {
    let started = Instant::now();
    loop {
        let resp = client()
            .get(format!("{}/api/v1/query", strata.url))
            .query(&[("query", "vector(0)")])
            .header("X-Scope-OrgID", tenant)
            .send()
            .await
            .expect("query");
        let namespaces = resp
            .headers()
            .get("x-strata-namespaces")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if namespaces.contains("1m:40d") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "queries never saw the rules: {namespaces:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The start of a JSON body, for assertion messages.
fn short(v: &Value) -> String {
    v.to_string().chars().take(400).collect()
}

async fn write(strata: &Strata, tenant: &str, series: Vec<TimeSeries>) {
    let body = remote_write::encode(&remote_write::request(series));
    let (status, text) = remote_write::send(&client(), &strata.write_url(), body, Some(tenant))
        .await
        .expect("send");
    assert_eq!(status, 204, "{text}");
}

/// A GET of the query API: the status, the resolution header and the body.
async fn query_raw(
    strata: &Strata,
    tenant: &str,
    path: &str,
    params: &[(&str, String)],
) -> (u16, String, Value) {
    let resp = client()
        .get(format!("{}{path}", strata.url))
        .query(params)
        .header("X-Scope-OrgID", tenant)
        .send()
        .await
        .expect("query");
    let status = resp.status().as_u16();
    let resolution = resp
        .headers()
        .get("x-strata-resolution")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, resolution, body)
}

/// Values of a range query by series (labels without `__name__`) and time.
fn matrix(body: &Value) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let mut m = s["metric"].clone();
        if let Some(o) = m.as_object_mut() {
            o.remove("__name__");
        }
        let pts: Vec<(i64, f64)> = s["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let t = (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN);
                (t, v)
            })
            .collect();
        out.insert(m.to_string(), pts);
    }
    out
}

fn labels<'a>(pairs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `temp` gauges and `requests_total` counters (a reset every 997 samples)
/// for jobs a, b with two instances each, every `every` ms over
/// `[start, end)`; values depend on the absolute sample index, so requests
/// of any length continue each other, and are integers, so sums are exact
/// in any order.
fn dataset(start: i64, end: i64, every: i64) -> Vec<TimeSeries> {
    let mut out = Vec::new();
    for (i, (job, inst)) in [("a", "i1"), ("a", "i2"), ("b", "i1"), ("b", "i2")]
        .iter()
        .enumerate()
    {
        let i = i as i64;
        let points: Vec<(i64, i64)> = (start.div_euclid(every)..)
            .map(|k| (k, k * every + 1000 + i * 7))
            .take_while(|(_, t)| *t < end)
            .collect();
        let base = |name: &str| {
            vec![
                ("__name__", name.to_string()),
                ("job", job.to_string()),
                ("instance", inst.to_string()),
            ]
        };
        let temp: Vec<(i64, f64)> = points
            .iter()
            .map(|(k, t)| (*t, ((k * 7 + i * 11) % 31) as f64))
            .collect();
        let reqs: Vec<(i64, f64)> = points
            .iter()
            .map(|(k, t)| (*t, (((k + i * 17) % 997) * (i + 3)) as f64))
            .collect();
        out.push(remote_write::series(&labels(&base("temp")), &temp));
        out.push(remote_write::series(
            &labels(&base("requests_total")),
            &reqs,
        ));
    }
    out
}

/// Sends `dataset` in requests of at most `chunk` ms of samples.
pub(crate) async fn load(
    strata: &Strata,
    tenant: &str,
    start: i64,
    end: i64,
    every: i64,
    chunk: i64,
) {
    let mut t = start;
    while t < end {
        write(strata, tenant, dataset(t, (t + chunk).min(end), every)).await;
        t += chunk;
    }
}

pub(crate) fn rules() -> Value {
    json!({
        "mapping_rules": [
            {"name": "temp", "filter": {"__name__": "temp"}, "storage_policies": ["1m:40d"]},
            {"name": "requests", "filter": {"__name__": "requests_total"}, "storage_policies": ["1m:40d"]}
        ],
        "rollup_rules": [{
            "name": "temp-by-job",
            "filter": {"__name__": "temp"},
            "targets": [{
                "storage_policies": ["1m:40d"],
                "pipeline": [{"rollup": {"new_name": "job:temp:sum", "group_by": ["job"], "aggregations": ["sum"]}}]
            }]
        }]
    })
}

/// The first aligned 2 h window start at least 6 h before now: its data
/// and the next window's are closed for the aggregator.
pub(crate) fn closed_start() -> i64 {
    (now_ms() - 6 * H).div_euclid(2 * H) * 2 * H
}

#[tokio::test]
async fn rollups_match_raw_data_and_rule_changes_apply_without_restart() {
    let scratch = Scratch::new("aggregation");
    let config = write_config(&scratch, "2h");
    let data = scratch.sub("data");
    let args = local_args(&config, &data);
    let strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &scratch.path()).await;
    let t0 = closed_start();
    load(&strata, "team", t0, t0 + 4 * H, 15_000, H).await;
    put_rules(&strata, "team", rules()).await;
    aggregate(&args, &[], &scratch.path().join("aggregate.log"));
    wait_policies_visible(&strata, "team").await;

    // The roll-up against the same aggregation computed on raw data: per
    // minute, the sum per job of each series' last sample of the minute.
    let range = |q: &str, resolution: &str| {
        vec![
            ("query", q.to_string()),
            ("start", api_time(t0 + MIN - 1)),
            ("end", api_time(t0 + 4 * H - 1)),
            ("step", "60".to_string()),
            ("resolution", resolution.to_string()),
        ]
    };
    let (status, res, rolled) = query_raw(
        &strata,
        "team",
        "/api/v1/query_range",
        &range("job:temp:sum", "auto"),
    )
    .await;
    assert_eq!(status, 200, "{}", short(&rolled));
    // Raw data covers the range (kept forever): raw is chosen, and the
    // roll-up series, which only exists aggregated, is found there.
    assert_eq!(res, "raw");
    let (_, _, from_raw) = query_raw(
        &strata,
        "team",
        "/api/v1/query_range",
        &range("sum by (job) (last_over_time(temp[1m]))", "raw"),
    )
    .await;
    let (rolled, from_raw) = (matrix(&rolled), matrix(&from_raw));
    assert_eq!(rolled.len(), 2, "{rolled:?}");
    assert_eq!(rolled, from_raw);
    assert_eq!(rolled.values().map(Vec::len).sum::<usize>(), 2 * 4 * 60);

    // Forced to the 1m namespace: the downsampled counters give the same
    // increase() as raw data, within 1 %, resets included.
    let inc = |resolution: &str| {
        vec![
            (
                "query",
                "sum by (job) (increase(requests_total[30m]))".to_string(),
            ),
            ("start", api_time(t0 + 30 * MIN)),
            ("end", api_time(t0 + 4 * H - MIN)),
            ("step", "600".to_string()),
            ("resolution", resolution.to_string()),
        ]
    };
    let (status, res, agg) = query_raw(&strata, "team", "/api/v1/query_range", &inc("1m")).await;
    assert_eq!((status, res.as_str()), (200, "1m"), "{}", short(&agg));
    let (_, _, raw) = query_raw(&strata, "team", "/api/v1/query_range", &inc("raw")).await;
    let (agg, raw) = (matrix(&agg), matrix(&raw));
    assert_eq!(agg.len(), 2);
    for (k, pts) in &raw {
        let got = &agg[k];
        assert_eq!(got.len(), pts.len());
        for ((t1, a), (t2, r)) in got.iter().zip(pts) {
            assert_eq!(t1, t2);
            assert!(
                (a - r).abs() <= 0.01 * r.abs(),
                "{k} at {t1}: {a} vs raw {r}"
            );
        }
    }
    // A resolution the tenant has no policy for is a 400 naming it.
    let (status, _, body) = query_raw(&strata, "team", "/api/v1/query_range", &inc("5m")).await;
    assert_eq!(status, 400, "{}", short(&body));
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("resolution 5m"),
        "{}",
        short(&body)
    );

    // A drop rule added through the API applies at ingest within the poll
    // interval, without a restart: written series stop being stored.
    let mut with_drop = rules();
    with_drop["mapping_rules"]
        .as_array_mut()
        .expect("array")
        .push(json!({"name": "no-debug", "filter": {"__name__": "debug_*"}, "drop": true}));
    put_rules(&strata, "team", with_drop).await;
    let started = Instant::now();
    let mut seq = 0;
    loop {
        seq += 1;
        let t = now_ms();
        let s = seq.to_string();
        write(
            &strata,
            "team",
            vec![remote_write::series(
                &[("__name__", "debug_probe"), ("seq", &s)],
                &[(t, 1.0)],
            )],
        )
        .await;
        let q = promapi::query(
            &client(),
            &strata.url,
            &format!("debug_probe{{seq=\"{s}\"}}"),
            t,
            Some("team"),
        )
        .await
        .expect("query");
        if q.single_value().is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drop rule never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = now_ms();
    write(
        &strata,
        "team",
        vec![
            remote_write::series(&[("__name__", "debug_x"), ("job", "a")], &[(t, 1.0)]),
            remote_write::series(&[("__name__", "kept_x"), ("job", "a")], &[(t, 2.0)]),
        ],
    )
    .await;
    let c = client();
    let kept = promapi::query(&c, &strata.url, "kept_x", t, Some("team"))
        .await
        .expect("query");
    assert_eq!(kept.single_value(), Some(2.0));
    let dropped = promapi::query(&c, &strata.url, "debug_x", t, Some("team"))
        .await
        .expect("query");
    assert_eq!(dropped.single_value(), None);
    let metrics = c
        .get(format!("{}/metrics", strata.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let dropped_series: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_ingest_dropped_series_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(dropped_series >= 2.0, "{metrics}");
}

/// The live blocks of a resolution (manifest) with their bytes.
pub(crate) fn live_blocks(
    data: &Path,
    tenant: &str,
    resolution: &str,
) -> BTreeMap<String, Vec<u8>> {
    let dir = data.join("tenants").join(tenant).join("manifest");
    // No manifest yet: killed before its first commit.
    let Some(newest) = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .max()
    else {
        return BTreeMap::new();
    };
    let m: Value =
        serde_json::from_slice(&std::fs::read(&newest).expect("manifest")).expect("json");
    m["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["resolution"] == resolution)
        .map(|b| {
            let id = b["id"].as_str().unwrap_or_default().to_string();
            let path = data
                .join("tenants")
                .join(tenant)
                .join("blocks")
                .join(resolution)
                .join(format!("{id}.parquet"));
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (id, bytes)
        })
        .collect()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let target = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn concurrent_and_killed_aggregators_leave_identical_blocks() {
    let scratch = Scratch::new("aggregation-concurrent");
    let config = write_config(&scratch, "2h");
    let data = scratch.sub("data");
    let args = local_args(&config, &data);
    let mut strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &scratch.path()).await;
    let t0 = closed_start() - 12 * H;
    load(&strata, "team", t0, t0 + 16 * H, 15_000, 2 * H).await;
    put_rules(&strata, "team", rules()).await;
    strata.proc.kill();
    // Three copies of the same raw data and rules.
    let dirs: Vec<PathBuf> = ["reference", "two", "killed"]
        .iter()
        .map(|n| {
            let d = scratch.path().join(n);
            copy_dir(&data, &d);
            d
        })
        .collect();
    let argv = |d: &Path| local_args(&config, d);
    let log = |n: &str| scratch.path().join(format!("{n}.log"));

    // Reference: one aggregator alone.
    aggregate(&argv(&dirs[0]), &[], &log("reference"));
    let reference = live_blocks(&dirs[0], "team", "1m");
    assert_eq!(reference.len(), 8, "one block per 2 h window");

    // Two at once: the lease keeps them apart, or they write the same
    // block ids; either way one block per window, the same bytes.
    let mut a = spawn_aggregate(&argv(&dirs[1]), &[], &log("two-a"));
    let mut b = spawn_aggregate(&argv(&dirs[1]), &[], &log("two-b"));
    assert!(a.wait().expect("wait").success());
    assert!(b.wait().expect("wait").success());
    // One of them may have skipped the leased namespace: finish the work.
    for _ in 0..10 {
        if live_blocks(&dirs[1], "team", "1m").len() == reference.len() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        aggregate(&argv(&dirs[1]), &[], &log("two-again"));
    }
    assert_eq!(live_blocks(&dirs[1], "team", "1m"), reference);

    // Killed mid-pass (as soon as its first block exists), then run again
    // until done (the dead one's lease expires after lease_ttl).
    let mut victim = spawn_aggregate(&argv(&dirs[2]), &[], &log("killed"));
    let blocks_dir = dirs[2].join("tenants/team/blocks/1m");
    let started = Instant::now();
    while std::fs::read_dir(&blocks_dir).map_or(0, |d| d.count()) == 0
        && victim.try_wait().expect("try_wait").is_none()
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = victim.kill();
    let _ = victim.wait();
    let at_kill = std::fs::read_dir(&blocks_dir).map_or(0, |d| d.count());
    eprintln!(
        "aggregator killed with {at_kill} of {} blocks written",
        reference.len()
    );
    for i in 0..10 {
        if live_blocks(&dirs[2], "team", "1m").len() == reference.len() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
        aggregate(&argv(&dirs[2]), &[], &log(&format!("rerun-{i}")));
    }
    assert_eq!(live_blocks(&dirs[2], "team", "1m"), reference);
}

#[tokio::test]
async fn a_thirty_day_query_reads_the_aggregated_namespace() {
    let scratch = Scratch::new("aggregation-30d");
    let config = write_config(&scratch, "1d");
    let data = scratch.sub("data");
    let args = local_args(&config, &data);
    let strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &scratch.path()).await;
    let now = now_ms();
    let t0 = (now - 32 * D).div_euclid(D) * D;
    // 5-minute samples: at 1m, `last` keeps every raw sample as it is.
    load(&strata, "long", t0, now - 3 * H, 5 * MIN, 4 * D).await;
    put_rules(
        &strata,
        "long",
        json!({"mapping_rules": [{"name": "all", "filter": {"__name__": "*"}, "storage_policies": ["1m:40d"]}]}),
    )
    .await;
    aggregate(&args, &[], &scratch.path().join("aggregate.log"));
    wait_policies_visible(&strata, "long").await;

    let range = |start: i64, end: i64, step: &str, resolution: &str| {
        vec![
            ("query", "sum by (job) (temp)".to_string()),
            ("start", api_time(start)),
            ("end", api_time(end)),
            ("step", step.to_string()),
            ("resolution", resolution.to_string()),
        ]
    };
    // 30 days back, raw data kept 7: the 1m namespace, stitched with raw
    // data after its newest block.
    let q = range(now - 30 * D, now, "3600", "auto");
    let (status, res, agg) = query_raw(&strata, "long", "/api/v1/query_range", &q).await;
    assert_eq!((status, res.as_str()), (200, "1m"), "{}", short(&agg));
    let resp = client()
        .get(format!("{}/api/v1/query_range", strata.url))
        .query(&q)
        .header("X-Scope-OrgID", "long")
        .send()
        .await
        .expect("query");
    let namespaces = resp
        .headers()
        .get("x-strata-namespaces")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        namespaces.starts_with("1m:40d<") && namespaces.contains(",raw"),
        "{namespaces}"
    );
    // The same answer as raw data (raw is not deleted here: the compactor
    // does not run), so the stitched read neither loses nor doubles samples.
    let (_, _, raw) = query_raw(
        &strata,
        "long",
        "/api/v1/query_range",
        &range(now - 30 * D, now, "3600", "raw"),
    )
    .await;
    let (agg, raw) = (matrix(&agg), matrix(&raw));
    assert_eq!(agg.len(), 2);
    assert_eq!(agg, raw);
    // The M3 header forces raw data as well.
    let resp = client()
        .get(format!("{}/api/v1/query", strata.url))
        .query(&[
            ("query", "count(temp)".to_string()),
            ("time", api_time(now - 20 * D)),
        ])
        .header("X-Scope-OrgID", "long")
        .header("M3-Metrics-Type", "unaggregated")
        .send()
        .await
        .expect("query");
    assert_eq!(resp.headers()["x-strata-resolution"], "raw");
    // A recent hour: raw.
    let (_, res, _) = query_raw(
        &strata,
        "long",
        "/api/v1/query_range",
        &range(now - H, now, "15", "auto"),
    )
    .await;
    assert_eq!(res, "raw");
    // Never a step finer than the resolution read: 15 s becomes 60 s.
    let (status, res, body) = query_raw(
        &strata,
        "long",
        "/api/v1/query_range",
        &range(now - 20 * D, now - 20 * D + 2 * H, "15", "auto"),
    )
    .await;
    assert_eq!((status, res.as_str()), (200, "1m"), "{}", short(&body));
    for pts in matrix(&body).values() {
        assert_eq!(pts.len(), 121);
        assert!(pts.windows(2).all(|w| w[1].0 - w[0].0 == MIN));
    }
}

#[tokio::test]
async fn aggregated_queries_on_s3() {
    let scratch = Scratch::new("aggregation-s3");
    let weed = Weed::start("strata", &scratch.path()).await;
    let config = write_config(&scratch, "2h");
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--storage",
        "s3",
        "--s3-bucket",
        &weed.bucket,
        "--s3-endpoint",
        &weed.endpoint,
        "--s3-region",
        Weed::REGION,
        "--s3-allow-http",
        "--s3-path-style",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
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
    let strata = Strata::start(&strata_bin(), args.clone(), envs.clone(), &scratch.path()).await;
    let t0 = closed_start();
    load(&strata, "team", t0, t0 + 4 * H, 15_000, 2 * H).await;
    put_rules(&strata, "team", rules()).await;
    aggregate(&args, &envs, &scratch.path().join("aggregate.log"));
    wait_policies_visible(&strata, "team").await;
    let q = |query: &str, resolution: &str| {
        vec![
            ("query", query.to_string()),
            ("start", api_time(t0 + MIN - 1)),
            ("end", api_time(t0 + 4 * H - 1)),
            ("step", "60".to_string()),
            ("resolution", resolution.to_string()),
        ]
    };
    let (status, res, rolled) = query_raw(
        &strata,
        "team",
        "/api/v1/query_range",
        &q("job:temp:sum", "1m"),
    )
    .await;
    assert_eq!((status, res.as_str()), (200, "1m"), "{}", short(&rolled));
    let (_, _, from_raw) = query_raw(
        &strata,
        "team",
        "/api/v1/query_range",
        &q("sum by (job) (last_over_time(temp[1m]))", "raw"),
    )
    .await;
    let rolled = matrix(&rolled);
    assert_eq!(rolled.len(), 2);
    assert_eq!(rolled, matrix(&from_raw));
}
