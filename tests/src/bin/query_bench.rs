//! Query benchmark: the same generated data set in Strata and in Prometheus
//! 2.42, a fixed set of typical dashboard queries against both, warm and
//! cold, with the answers compared so that no wrong answer is timed.
//!
//! 1. Generates `--series` series (`datagen::realistic`: node_exporter-like
//!    and application targets, counters, gauges, classic histograms) over
//!    `--days` days at `--interval-ms`, ending a minute ago. Timestamps are
//!    made odd (`t | 1`) so that no sample lies exactly on a window boundary
//!    (all query times and ranges are whole seconds): Prometheus 2.42's
//!    windows are closed on the left, Strata's (Prometheus 3's) are open.
//! 2. Remote-writes it into `strata serve` and into Prometheus
//!    (`--web.enable-remote-write-receiver`) at once, in time slices of
//!    `--slice-minutes` holding every series, one slice after the other:
//!    each series stays in time order and the data moves forward together,
//!    so Prometheus' head accepts 7 days of history through remote write
//!    (no `promtool` import needed): it cuts blocks behind the newest
//!    samples as they arrive.
//! 3. Runs `strata compact` once, and waits until Prometheus has compacted
//!    its head into blocks.
//! 4. Warm: each query once to warm caches, then `--runs` timed runs each on
//!    both, medians reported. Strata runs with its default query cache and
//!    no injected latency.
//! 5. Cold: before each query, Strata is restarted (empty cache, empty
//!    footer and manifest caches) with `--latency-ms` injected before every
//!    object-store read (`[query.inject_latency]`), and Prometheus is
//!    restarted; with `--drop-caches` the OS page cache is dropped too. The
//!    first run is the cold figure; Strata's later runs are "warm with
//!    latency" (what every query costs on S3 once the cache is warm).
//!
//! Run through `scripts/bench-query.sh`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use strata_tests::Strata;
use strata_tests::datagen::{DataSpec, realistic};
use strata_tests::process::{Proc, free_port, prometheus_bin, strata_bin, wait_http_ok};
use strata_tests::promapi::{QueryResult, api_time};
use strata_tests::remote_write::{self, now_ms, snappy};
use tokio::task::JoinSet;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(Parser, Debug)]
#[command(
    about = "PromQL query benchmark: Strata vs Prometheus 2.42 on the same data, warm and cold"
)]
struct Args {
    /// The strata binary (default: $STRATA_BIN or target/debug/strata).
    #[arg(long)]
    strata_bin: Option<PathBuf>,
    /// Number of series.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Days of history.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Scrape interval of the generated data.
    #[arg(long, default_value_t = 15_000)]
    interval_ms: i64,
    /// Minutes of data per remote-write request (all series).
    #[arg(long, default_value_t = 10)]
    slice_minutes: i64,
    /// Timed warm runs per query and server (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// First-byte latency injected into Strata's object-store reads in the cold runs.
    #[arg(long, default_value_t = 30)]
    latency_ms: u64,
    /// Drop the OS page cache before each cold run (needs root; affects the whole machine).
    #[arg(long)]
    drop_caches: bool,
    /// Only queries whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Keep the working directory (data of both servers and their logs).
    #[arg(long)]
    keep: bool,
}

/// One dashboard query: an instant query at the end, or a range query over
/// the last `range_ms` with `step_ms`.
struct Query {
    name: &'static str,
    expr: &'static str,
    range_ms: i64,
    step_ms: i64,
}

const fn q(name: &'static str, expr: &'static str, range_ms: i64, step_ms: i64) -> Query {
    Query {
        name,
        expr,
        range_ms,
        step_ms,
    }
}

/// Typical Grafana panels: Grafana asks for about 1000 points per range.
const QUERIES: &[Query] = &[
    q("rate 1h", "rate(http_requests_total[5m])", HOUR, 15_000),
    q(
        "sum by rate 6h",
        "sum by (instance, mode) (rate(node_cpu_seconds_total[5m]))",
        6 * HOUR,
        30_000,
    ),
    q(
        "histogram_quantile 24h",
        "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        DAY,
        120_000,
    ),
    q(
        "topk 6h",
        "topk(3, rate(node_network_receive_bytes_total[5m]))",
        6 * HOUR,
        30_000,
    ),
    q(
        "instant sum by",
        "sum by (job, instance) (rate(node_disk_read_bytes_total[5m]))",
        0,
        0,
    ),
    q(
        "7d sum by rate",
        "sum by (code) (rate(http_requests_total[10m]))",
        7 * DAY,
        600_000,
    ),
    q(
        "7d histogram_quantile",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[10m])))",
        7 * DAY,
        600_000,
    ),
    // Every series and sample of the week: the storage-bound case. (A
    // range function over all of them, `sum by (job) (avg_over_time(...))`,
    // is refused by Prometheus and Strata alike: the names are dropped before
    // `sum`, and different metrics of one target then share a label set.)
    q(
        "7d all series",
        "count by (job) ({job=~\"node|api\"})",
        7 * DAY,
        600_000,
    ),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let strata_path = args.strata_bin.clone().unwrap_or_else(strata_bin);
    let work = tempfile::Builder::new()
        .prefix("strata-query-bench-")
        .tempdir()
        .context("temp dir")?;
    let dir = work.path().to_path_buf();
    println!("strata binary: {}", strata_path.display());
    println!("prometheus binary: {}", prometheus_bin().display());
    println!("working directory: {}", dir.display());

    // Whole seconds, a whole hour: query times never hit an (odd) sample time.
    let end_ms = (now_ms() - 2 * MINUTE) / HOUR * HOUR;
    let data_start = end_ms - args.days * DAY - HOUR;
    let data_end = now_ms() - MINUTE;
    let queries: Vec<&Query> = QUERIES
        .iter()
        .filter(|q| {
            args.only
                .as_ref()
                .is_none_or(|o| q.name.contains(o.as_str()))
        })
        .filter(|q| q.range_ms <= args.days * DAY)
        .collect();

    let t = Instant::now();
    let mut data = realistic(&DataSpec {
        series: args.series,
        duration_ms: data_end - data_start,
        interval_ms: args.interval_ms,
        start_ms: data_start,
        seed: 42,
    });
    for s in &mut data {
        for p in &mut s.samples {
            p.t |= 1;
        }
    }
    let samples: usize = data.iter().map(|s| s.samples.len()).sum();
    println!(
        "data: {} series, {samples} samples over {} days at {} s, generated in {:.1} s",
        data.len(),
        args.days,
        args.interval_ms / 1000,
        t.elapsed().as_secs_f64()
    );

    // Load both.
    let strata_data = dir.join("strata-data");
    let prom_data = dir.join("prometheus-data");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut strata = start_strata(&strata_path, &strata_data, &logs, None).await?;
    let mut prom = PromServer::start(&prom_data, &logs).await?;
    let t = Instant::now();
    let failures = load(&data, &args, &strata.write_url(), &prom.write_url()).await?;
    drop(data);
    println!(
        "loaded both by remote write in {:.1} s (failed requests: strata {}, prometheus {})",
        t.elapsed().as_secs_f64(),
        failures.0,
        failures.1
    );
    if failures.0 + failures.1 > 0 {
        println!("  first failures: {}", failures.2.join(" | "));
    }
    strata.proc.kill();

    let t = Instant::now();
    compact(&strata_path, &strata_data, &logs)?;
    println!(
        "strata compact: {:.1} s; strata data {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(dir_size(&strata_data))
    );
    let t = Instant::now();
    prom.wait_compacted().await;
    println!(
        "prometheus head compacted in {:.1} s more; prometheus data {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(dir_size(&prom_data))
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut rows: Vec<Row> = queries.iter().map(|q| Row::new(q)).collect();

    // Warm.
    let mut strata = start_strata(&strata_path, &strata_data, &logs, None).await?;
    for (q, row) in queries.iter().zip(&mut rows) {
        let (prom_answer, _) = run(&client, &prom.url, q, end_ms).await?;
        let strata_answer = match run(&client, &strata.url, q, end_ms).await {
            Ok((a, _)) => a,
            Err(e) => {
                println!("warm  {:<24} strata failed: {e:#}", q.name);
                row.error = Some(format!("{e:#}"));
                continue;
            }
        };
        row.series = prom_answer.series.len();
        row.points = prom_answer.series.values().map(Vec::len).sum();
        row.mismatch = strata_answer.diff(&prom_answer);
        let mut p = Vec::new();
        let mut s = Vec::new();
        for _ in 0..args.runs.max(1) {
            p.push(run(&client, &prom.url, q, end_ms).await?.1);
            s.push(run(&client, &strata.url, q, end_ms).await?.1);
        }
        row.prom_warm = median(&mut p);
        row.strata_warm = median(&mut s);
        println!(
            "warm  {:<24} prometheus {:>8.1} ms  strata {:>8.1} ms  {}",
            q.name,
            ms(row.prom_warm),
            ms(row.strata_warm),
            if row.mismatch.is_some() {
                "ANSWERS DIFFER"
            } else {
                "answers equal"
            }
        );
        if let Some(m) = &row.mismatch {
            let text: String = m.lines().take(3).collect::<Vec<_>>().join("\n        ");
            println!("        {text}");
        }
    }
    strata.proc.kill();

    // Cold.
    let cold_config = dir.join("strata-cold.toml");
    std::fs::write(
        &cold_config,
        format!("[query.inject_latency]\nread = \"{}ms\"\n", args.latency_ms),
    )?;
    for (q, row) in queries.iter().zip(&mut rows) {
        if row.error.is_some() {
            continue;
        }
        prom.restart(&logs).await?;
        drop_caches(args.drop_caches);
        row.prom_cold = run(&client, &prom.url, q, end_ms).await?.1;

        let mut strata =
            start_strata(&strata_path, &strata_data, &logs, Some(&cold_config)).await?;
        drop_caches(args.drop_caches);
        let before = StrataCounters::read(&client, &strata.url).await;
        let (answer, took) = run(&client, &strata.url, q, end_ms).await?;
        let after = StrataCounters::read(&client, &strata.url).await;
        row.strata_cold = took;
        row.cold_requests = after.requests.saturating_sub(before.requests);
        row.cold_pages = after.misses.saturating_sub(before.misses);
        row.cold_mib = mib(after.miss_bytes.saturating_sub(before.miss_bytes));
        if row.mismatch.is_none() {
            let (prom_answer, _) = run(&client, &prom.url, q, end_ms).await?;
            row.mismatch = answer.diff(&prom_answer);
        }
        let mut s = Vec::new();
        for _ in 0..args.runs.max(1) {
            s.push(run(&client, &strata.url, q, end_ms).await?.1);
        }
        row.strata_warm_latency = median(&mut s);
        println!(
            "cold  {:<24} prometheus {:>8.1} ms  strata {:>8.1} ms  ({} object-store requests, {} pages, {:.1} MiB)",
            q.name,
            ms(row.prom_cold),
            ms(row.strata_cold),
            row.cold_requests,
            row.cold_pages,
            row.cold_mib
        );
        strata.proc.kill();
    }
    prom.proc.kill();

    print_table(&rows, &args);
    if args.keep {
        let kept = work.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

/// Results of one query.
struct Row {
    name: &'static str,
    range: String,
    series: usize,
    points: usize,
    prom_warm: Duration,
    strata_warm: Duration,
    prom_cold: Duration,
    strata_cold: Duration,
    strata_warm_latency: Duration,
    cold_requests: u64,
    cold_pages: u64,
    cold_mib: f64,
    mismatch: Option<String>,
    /// Strata answered with an error.
    error: Option<String>,
}

impl Row {
    fn new(q: &Query) -> Self {
        let range = if q.range_ms == 0 {
            "instant".to_string()
        } else {
            format!("{}/{}s", human(q.range_ms), q.step_ms / 1000)
        };
        Self {
            name: q.name,
            range,
            series: 0,
            points: 0,
            prom_warm: Duration::ZERO,
            strata_warm: Duration::ZERO,
            prom_cold: Duration::ZERO,
            strata_cold: Duration::ZERO,
            strata_warm_latency: Duration::ZERO,
            cold_requests: 0,
            cold_pages: 0,
            cold_mib: 0.0,
            mismatch: None,
            error: None,
        }
    }
}

fn human(ms: i64) -> String {
    if ms % DAY == 0 {
        format!("{}d", ms / DAY)
    } else {
        format!("{}h", ms / HOUR)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn print_table(rows: &[Row], args: &Args) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nquery benchmark: {} series, {} days at {} s; warm: median of {} runs; cold: first run after a restart, strata with {} ms per object-store read{}",
        args.series,
        args.days,
        args.interval_ms / 1000,
        args.runs.max(1),
        args.latency_ms,
        if args.drop_caches {
            ", OS page cache dropped"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "| query | range/step | series | points | prom warm ms | strata warm ms | ratio | prom cold ms | strata cold ms | ratio | strata warm+{}ms ms | cold reqs | cold MiB | answers |",
        args.latency_ms
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {:.1} | {} |",
            r.name,
            r.range,
            r.series,
            r.points,
            ms(r.prom_warm),
            ms(r.strata_warm),
            ratio(r.strata_warm, r.prom_warm),
            ms(r.prom_cold),
            ms(r.strata_cold),
            ratio(r.strata_cold, r.prom_cold),
            ms(r.strata_warm_latency),
            r.cold_requests,
            r.cold_mib,
            match (&r.error, &r.mismatch) {
                (Some(_), _) => "strata error",
                (None, Some(_)) => "DIFFER",
                (None, None) => "equal",
            }
        );
    }
    let mut warm: Vec<f64> = rows
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| ratio(r.strata_warm, r.prom_warm))
        .collect();
    warm.sort_by(f64::total_cmp);
    if let Some(m) = warm.get(warm.len() / 2) {
        let _ = writeln!(
            out,
            "\nwarm: median of the per-query ratios strata/prometheus = {m:.2} (goal: at most 0.50)"
        );
    }
    if let Some(r) = rows.iter().find(|r| r.name == "7d all series") {
        let _ = writeln!(
            out,
            "cold 7-day range query over all {} series: {:.0} ms (goal: under 1000 ms)",
            args.series,
            ms(r.strata_cold)
        );
    }
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "strata failed on {:?}: {e}", r.name);
        }
        if let Some(m) = &r.mismatch {
            let text: String = m.lines().take(6).collect::<Vec<_>>().join("\n    ");
            let _ = writeln!(out, "answers differ for {:?}:\n    {text}", r.name);
        }
    }
    print!("{out}");
}

/// Runs `q` once; the time is from sending the request to the last byte
/// of the answer (parsing is not timed).
async fn run(
    client: &reqwest::Client,
    base: &str,
    q: &Query,
    end_ms: i64,
) -> anyhow::Result<(QueryResult, Duration)> {
    let (path, params) = if q.range_ms == 0 {
        (
            "/api/v1/query",
            vec![("query", q.expr.to_string()), ("time", api_time(end_ms))],
        )
    } else {
        (
            "/api/v1/query_range",
            vec![
                ("query", q.expr.to_string()),
                ("start", api_time(end_ms - q.range_ms)),
                ("end", api_time(end_ms)),
                ("step", api_time(q.step_ms)),
            ],
        )
    };
    let t = Instant::now();
    let resp = client
        .get(format!("{base}{path}"))
        .query(&params)
        .send()
        .await
        .with_context(|| format!("{base}: {}", q.expr))?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let took = t.elapsed();
    if !status.is_success() {
        bail!(
            "{base}: {}: HTTP {status}: {}",
            q.expr,
            String::from_utf8_lossy(&body)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok((QueryResult::from_data(&v["data"])?, took))
}

/// Sends the data as time slices of every series to both servers.
/// Returns failed request counts and the first failure messages.
async fn load(
    data: &[storage::Series],
    args: &Args,
    strata_url: &str,
    prom_url: &str,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    // One slice at a time (the next one is encoded meanwhile): Prometheus
    // rejects a sample older than the newest one of its series, so a slice
    // must not overtake the one before it.
    const IN_FLIGHT: usize = 1;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let labels: Vec<Vec<Label>> = data
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| Label {
                    name: l.name.clone(),
                    value: l.value.clone(),
                })
                .collect()
        })
        .collect();
    let first = data
        .iter()
        .filter_map(|s| s.samples.first())
        .map(|p| p.t)
        .min()
        .unwrap_or(0);
    let last = data
        .iter()
        .filter_map(|s| s.samples.last())
        .map(|p| p.t)
        .max()
        .unwrap_or(0);
    let slice = args.slice_minutes.max(1) * MINUTE;
    let mut cursor = vec![0usize; data.len()];
    let mut tasks: JoinSet<[Option<String>; 2]> = JoinSet::new();
    let (mut strata_failed, mut prom_failed, mut messages) = (0, 0, Vec::new());
    let targets: Arc<[String; 2]> = Arc::new([strata_url.to_string(), prom_url.to_string()]);
    let mut slice_end = first - first.rem_euclid(slice) + slice;
    while slice_end <= last + slice {
        let mut req = WriteRequest {
            timeseries: Vec::with_capacity(data.len()),
            metadata: Vec::new(),
        };
        for (i, s) in data.iter().enumerate() {
            let from = cursor[i];
            let n = s.samples[from..].partition_point(|p| p.t < slice_end);
            cursor[i] = from + n;
            if n == 0 {
                continue;
            }
            req.timeseries.push(TimeSeries {
                labels: labels[i].clone(),
                samples: s.samples[from..from + n]
                    .iter()
                    .map(|p| Sample {
                        value: p.v,
                        timestamp: p.t,
                    })
                    .collect(),
                exemplars: Vec::new(),
            });
        }
        slice_end += slice;
        if req.timeseries.is_empty() {
            continue;
        }
        let body = snappy(&req.encode_to_vec());
        while tasks.len() >= IN_FLIGHT {
            if let Some(r) = tasks.join_next().await {
                count(r?, &mut strata_failed, &mut prom_failed, &mut messages);
            }
        }
        let (client, targets) = (client.clone(), targets.clone());
        tasks.spawn(async move {
            let send = |url: String, body: Vec<u8>| {
                let client = client.clone();
                async move {
                    match remote_write::send(&client, &url, body, None).await {
                        Ok((s, _)) if (200..300).contains(&s) => None,
                        Ok((s, text)) => Some(format!("{url}: HTTP {s}: {}", text.trim())),
                        Err(e) => Some(format!("{url}: {e:#}")),
                    }
                }
            };
            let (a, b) = tokio::join!(
                send(targets[0].clone(), body.clone()),
                send(targets[1].clone(), body)
            );
            [a, b]
        });
    }
    while let Some(r) = tasks.join_next().await {
        count(r?, &mut strata_failed, &mut prom_failed, &mut messages);
    }
    Ok((strata_failed, prom_failed, messages))
}

fn count(r: [Option<String>; 2], strata: &mut usize, prom: &mut usize, messages: &mut Vec<String>) {
    let [a, b] = r;
    for (failure, n) in [(a, strata), (b, prom)] {
        if let Some(m) = failure {
            *n += 1;
            if messages.len() < 4 {
                messages.push(m);
            }
        }
    }
}

/// `strata serve` on `data_dir` without the compaction timer, with an
/// optional config file.
async fn start_strata(
    bin: &Path,
    data_dir: &Path,
    logs: &Path,
    config: Option<&Path>,
) -> anyhow::Result<Strata> {
    let mut args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    if let Some(c) = config {
        args.push("--config".into());
        args.push(c.display().to_string());
    }
    let envs = vec![
        ("STRATA_COMPACT_EVERY".to_string(), "0s".to_string()),
        ("STRATA_LOG".to_string(), "warn".to_string()),
    ];
    Ok(Strata::start(bin, args, envs, logs).await)
}

/// `strata compact` once (passes until idle) on `data_dir`.
fn compact(bin: &Path, data_dir: &Path, logs: &Path) -> anyhow::Result<()> {
    let log = std::fs::File::create(logs.join("strata-compact.log"))?;
    let mut cmd = Command::new(bin);
    cmd.args(["compact", "--storage", "local", "--data-dir"])
        .arg(data_dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().context("running strata compact")?;
    if !status.success() {
        bail!(
            "strata compact failed ({status}); see {}",
            logs.join("strata-compact.log").display()
        );
    }
    Ok(())
}

fn drop_caches(enabled: bool) {
    if enabled {
        let _ = Command::new("sync").status();
        if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
            eprintln!("cannot drop the page cache: {e}");
        }
    }
}

/// Object-store requests and cache misses so far, from Strata's `/metrics`.
#[derive(Default)]
struct StrataCounters {
    requests: u64,
    misses: u64,
    miss_bytes: u64,
}

impl StrataCounters {
    async fn read(client: &reqwest::Client, base: &str) -> Self {
        let text = match client.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return Self::default(),
        };
        let mut c = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: u64 = value.parse::<f64>().map_or(0, |v| v as u64);
            if name.starts_with("strata_object_store_requests_total") {
                c.requests += v;
            } else if name == "strata_query_cache_misses_total" {
                c.misses += v;
            } else if name == "strata_query_cache_miss_bytes_total" {
                c.miss_bytes += v;
            }
        }
        c
    }
}

/// Prometheus as a remote-write receiver on a data directory that outlives
/// restarts.
struct PromServer {
    proc: Proc,
    url: String,
    data: PathBuf,
    config: PathBuf,
}

impl PromServer {
    async fn start(data: &Path, logs: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data)?;
        let config = data.parent().unwrap_or(data).join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n")?;
        let (proc, url) = Self::spawn(data, &config, logs).await;
        Ok(Self {
            proc,
            url,
            data: data.to_path_buf(),
            config,
        })
    }

    async fn spawn(data: &Path, config: &Path, logs: &Path) -> (Proc, String) {
        let port = free_port();
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=30d",
                "--log.level=warn",
            ]);
        let mut proc = Proc::spawn("prometheus", cmd, logs);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &mut proc,
            &format!("{url}/-/ready"),
            Duration::from_secs(300),
        )
        .await;
        (proc, url)
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// Kill, then start again on the same data (the WAL is replayed).
    async fn restart(&mut self, logs: &Path) -> anyhow::Result<()> {
        self.proc.kill();
        let (proc, url) = Self::spawn(&self.data, &self.config, logs).await;
        self.proc = proc;
        self.url = url;
        Ok(())
    }

    /// Waits (at most 10 minutes) until the head spans at most 3 h, i.e.
    /// Prometheus has cut everything older into blocks, and no compaction
    /// ran for 20 s.
    async fn wait_compacted(&self) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let mut last_compactions = -1.0;
        let mut quiet_since = Instant::now();
        while start.elapsed() < Duration::from_secs(600) {
            let text = match client.get(format!("{}/metrics", self.url)).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let metric = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                    .and_then(|l| l.rsplit_once(' '))
                    .and_then(|(_, v)| v.parse::<f64>().ok())
            };
            let span = match (
                metric("prometheus_tsdb_head_min_time"),
                metric("prometheus_tsdb_head_max_time"),
            ) {
                (Some(a), Some(b)) => b - a,
                _ => f64::MAX,
            };
            let compactions = metric("prometheus_tsdb_compactions_total").unwrap_or(0.0);
            if compactions != last_compactions {
                last_compactions = compactions;
                quiet_since = Instant::now();
            }
            if span <= (3 * HOUR) as f64 && quiet_since.elapsed() > Duration::from_secs(20) {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!("  (prometheus was still compacting after 10 minutes; going on)");
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
