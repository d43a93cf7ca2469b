//! A fixed set of PromQL and metadata queries gives identical answers before
//! and after `strata compact` turned the segments into blocks, while the same
//! `strata serve` keeps answering (it picks up the new manifest version).
//! Once on local storage, once on SeaweedFS through the S3 API (conditional
//! PUTs for the manifest and the leases).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strata_tests::process::strata_bin;
use strata_tests::promapi::{self, api_time};
use strata_tests::remote_write::{self, now_ms};
use strata_tests::{Strata, Weed};

use crate::{Scratch, client};

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;

/// Instant queries, each evaluated at several times.
const INSTANT: &[&str] = &[
    "requests_total",
    "rate(requests_total[5m])",
    "sum by (job) (rate(requests_total[10m]))",
    "max_over_time(temperature_celsius[1h])",
    "topk(3, temperature_celsius)",
    "count(up)",
    r#"histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[15m])))"#,
];

/// (query, step) over the whole loaded range.
const RANGE: &[(&str, i64)] = &[
    ("sum(rate(requests_total[5m]))", 10 * MIN),
    ("avg by (job) (temperature_celsius)", 30 * MIN),
    ("increase(requests_total{job=\"api\"}[1h])", H),
];

fn labels<'a>(pairs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// 30 h of 30 s samples starting two days ago, in requests of 1 h each,
/// one of them sent twice (a retry) and the first hour sent last (late).
pub(crate) async fn load(strata: &Strata, start: i64) {
    let c = client();
    let mut hours: Vec<i64> = (1..30).collect();
    hours.push(0);
    hours.insert(5, 4);
    for hour in hours {
        let mut series = Vec::new();
        for i in 0..12 {
            let job = if i % 2 == 0 { "api" } else { "db" };
            let pts = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
                (0..120)
                    .map(|k| {
                        let t = start + hour * H + k * 30_000 + i;
                        (t, f((t - start) / 30_000))
                    })
                    .collect()
            };
            let base = [("job", job.to_string()), ("instance", format!("host-{i}"))];
            let with = |name: &str, extra: &[(&'static str, String)]| {
                let mut l = vec![("__name__", name.to_string())];
                l.extend(base.iter().cloned());
                l.extend(extra.iter().cloned());
                l
            };
            let reset_at = 700 + 37 * i;
            series.push(remote_write::series(
                &labels(&with("requests_total", &[])),
                &pts(&|k| {
                    if k < reset_at {
                        (k * (i + 3)) as f64
                    } else {
                        ((k - reset_at) * 2) as f64
                    }
                }),
            ));
            series.push(remote_write::series(
                &labels(&with("temperature_celsius", &[])),
                &pts(&|k| 20.0 + ((k * 7 + i * 13) % 100) as f64 / 10.0),
            ));
            series.push(remote_write::series(
                &labels(&with("up", &[])),
                &pts(&|_| 1.0),
            ));
            for (j, le) in ["0.1", "0.5", "1", "+Inf"].iter().enumerate() {
                series.push(remote_write::series(
                    &labels(&with("latency_seconds_bucket", &[("le", le.to_string())])),
                    &pts(&|k| (k * (j as i64 + 1) * (i + 1)) as f64),
                ));
            }
        }
        let body = remote_write::encode(&remote_write::request(series));
        let (status, text) = remote_write::send(&c, &strata.write_url(), body, None)
            .await
            .expect("send");
        assert_eq!(status, 204, "{text}");
    }
}

pub(crate) async fn answers(url: &str, start: i64, end: i64) -> Vec<Value> {
    let c = client();
    let mut out = Vec::new();
    for q in INSTANT {
        for t in [start + 3 * H + 17_000, start + 24 * H - 1, end - 2 * MIN] {
            let params = [("query", q.to_string()), ("time", api_time(t))];
            out.push(
                promapi::get(&c, url, "/api/v1/query", &params, None)
                    .await
                    .expect(q),
            );
        }
    }
    for (q, step) in RANGE {
        let params = [
            ("query", q.to_string()),
            ("start", api_time(start)),
            ("end", api_time(end)),
            ("step", api_time(*step)),
        ];
        out.push(
            promapi::get(&c, url, "/api/v1/query_range", &params, None)
                .await
                .expect(q),
        );
    }
    let range = [("start", api_time(start)), ("end", api_time(end))];
    let mut series = vec![("match[]", "{job=\"db\"}".to_string())];
    series.extend(range.iter().cloned());
    out.push(
        promapi::get(&c, url, "/api/v1/series", &series, None)
            .await
            .expect("series"),
    );
    out.push(
        promapi::get(&c, url, "/api/v1/labels", &range, None)
            .await
            .expect("labels"),
    );
    out.push(
        promapi::get(&c, url, "/api/v1/label/instance/values", &range, None)
            .await
            .expect("values"),
    );
    out
}

/// Where the objects are, to count them by key part.
enum Objects<'a> {
    Dir(&'a std::path::Path),
    Bucket(&'a Weed),
}

impl Objects<'_> {
    async fn count(&self, part: &str) -> usize {
        match self {
            Objects::Dir(d) => count_files(d, part),
            Objects::Bucket(w) => w
                .list_files()
                .await
                .expect("list the bucket")
                .iter()
                .filter(|k| k.contains(part))
                .count(),
        }
    }
}

fn count_files(dir: &std::path::Path, part: &str) -> usize {
    fn walk(d: &std::path::Path, part: &str, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, part, n);
            } else if p.to_string_lossy().contains(part) {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, part, &mut n);
    n
}

#[tokio::test]
async fn answers_are_identical_before_and_after_compaction() {
    let scratch = Scratch::new("compaction");
    let data = scratch.sub("data");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
    ];
    check(&scratch, args, Vec::new(), Objects::Dir(&data)).await;
}

#[tokio::test]
async fn answers_are_identical_before_and_after_compaction_on_s3() {
    let scratch = Scratch::new("compaction-s3");
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
    check(&scratch, args, envs, Objects::Bucket(&weed)).await;
}

async fn check(
    scratch: &Scratch,
    mut args: Vec<String>,
    envs: Vec<(String, String)>,
    objects: Objects<'_>,
) {
    let logs = scratch.sub("logs");
    // No timer in serve: compaction happens when the test says so.
    let config = scratch.path().join("strata.toml");
    std::fs::write(&config, "[compact]\nevery = \"0s\"\ngrace = \"1s\"\n").expect("config");
    args.extend(["--config".to_string(), config.display().to_string()]);
    let strata = Strata::start(&strata_bin(), args.clone(), envs.clone(), &logs).await;
    let start = (now_ms() - 2 * 24 * H) / H * H;
    let end = start + 30 * H;
    load(&strata, start).await;
    let before = answers(&strata.url, start, end).await;
    assert!(
        before[0]["result"]
            .as_array()
            .is_some_and(|r| r.len() == 12),
        "{}",
        before[0]
    );
    assert_eq!(objects.count("/blocks/").await, 0);

    let compact = || {
        let mut cmd = Command::new(strata_bin());
        cmd.arg("compact").args(&args).env("STRATA_LOG", "info");
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run strata compact")
    };
    let out = compact();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strata compact failed: {log}");
    assert!(log.contains("compaction pass done"), "{log}");
    let blocks = objects.count("/blocks/").await;
    assert!(blocks >= 2, "{blocks} blocks; {log}");
    assert!(objects.count("/manifest/").await >= 1);

    let after = answers(&strata.url, start, end).await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "answer {i} changed by compaction");
    }
    // Once the grace period passed the segments are gone (the first run may
    // already have deleted them), answers unchanged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = compact();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(objects.count("/segments/").await, 0);
    let after = answers(&strata.url, start, end).await;
    assert_eq!(before, after, "answers changed once segments were deleted");
}
