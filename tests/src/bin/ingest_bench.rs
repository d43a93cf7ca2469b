//! Ingest benchmark: the same pre-encoded remote-write requests sent to
//! `strata serve` and to Prometheus (`--web.enable-remote-write-receiver`),
//! one after the other, each on its own fresh temporary directory.
//!
//! Each of `--senders` concurrent senders owns a disjoint set of series and
//! sends them in time order (Prometheus rejects out-of-order samples), about
//! `--samples-per-request` samples per request, like Prometheus' own
//! `max_samples_per_send` (2000). Timestamps are `--interval-ms` apart and end a
//! minute ago, so the whole span (2000 points at 1 s = 33 min) stays inside the
//! window Prometheus' head accepts (1 h behind its newest sample).
//!
//! `--protocol influx` sends the same samples as InfluxDB line protocol
//! (one point per line, precision ms, to `/write`) to Strata only, and
//! reports samples/s; measurement `bench` and fields `metric_N` give the
//! same metric names (`bench_metric_N`) as the remote-write workload.
//!
//! `--protocol otlp` sends the same samples as OTLP metrics (protobuf, to
//! `/api/v1/otlp/v1/metrics`) to Strata only: one metric per series, its
//! labels as data-point attributes, counters as cumulative monotonic sums
//! (stored as `bench_metric_N_total`), gauges as gauges.
//!
//! `--protocol remote-write-v2` sends the same samples as remote write 2.0
//! (`io.prometheus.write.v2.Request`: a symbols table per request, each
//! series with its metric type and help as Prometheus' 2.0 sender attaches
//! them) to Strata only.
//!
//! `--protocol m3-json` sends the same samples as M3 Coordinator's JSON
//! write (to `/api/v1/json/write`, each request an array of
//! `{"tags", "timestamp", "value"}` objects, Strata's extension of M3's
//! one-sample body) to Strata only.
//!
//! Run through `scripts/bench-ingest.sh`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use strata_tests::process::{prometheus_bin, strata_bin};
use strata_tests::remote_write::{self, encode, now_ms, request, series};
use strata_tests::{Prometheus, Strata, promapi};

#[derive(Parser, Debug)]
#[command(about = "Remote-write ingest benchmark: Strata vs Prometheus on the same requests")]
struct Args {
    /// The strata binary (default: $STRATA_BIN or target/debug/strata).
    #[arg(long)]
    strata_bin: Option<PathBuf>,
    /// Number of series.
    #[arg(long, default_value_t = 5000)]
    series: usize,
    /// Samples per series (total samples = series x this).
    #[arg(long, default_value_t = 2000)]
    samples_per_series: usize,
    /// Concurrent senders, each owning series/senders series.
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Target samples per request (Prometheus' default max_samples_per_send is 2000).
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// Milliseconds between consecutive samples of a series.
    #[arg(long, default_value_t = 1000)]
    interval_ms: i64,
    /// Which servers to benchmark.
    #[arg(long, value_parser = ["both", "strata", "prometheus"], default_value = "both")]
    target: String,
    /// Write protocol: Prometheus remote write 1.0 (Strata and Prometheus),
    /// InfluxDB line protocol or OTLP metrics (Strata only).
    #[arg(long, value_enum, default_value_t = Protocol::RemoteWrite)]
    protocol: Protocol,
    /// A TOML configuration file for `strata serve` (its `--config`), e.g.
    /// to try other `[ingest.group_commit]` settings.
    #[arg(long)]
    strata_config: Option<PathBuf>,
    /// Skip the count check after sending.
    #[arg(long)]
    no_verify: bool,
    /// Rounds per target; rounds alternate which target goes first, and the
    /// ratio is taken between median rates (this machine's run-to-run noise
    /// is large, so one run of each is not enough).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Protocol {
    RemoteWrite,
    Influx,
    Otlp,
    RemoteWriteV2,
    /// M3 Coordinator's JSON write, as arrays of samples (Strata's extension
    /// of M3's one-sample body).
    M3Json,
}

/// Pre-encoded requests, one list per sender.
struct Workload {
    per_sender: Vec<Vec<Vec<u8>>>,
    samples: usize,
    requests: usize,
    bytes: usize,
    end_ms: i64,
}

/// A small deterministic PRNG (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn build(args: &Args) -> Workload {
    let senders = args.senders.max(1);
    let points = args.samples_per_series;
    let end_ms = (now_ms() - 60_000) / 1000 * 1000;
    let start_ms = end_ms - (points as i64 - 1) * args.interval_ms;
    let mut per_sender = Vec::with_capacity(senders);
    let (mut samples, mut requests, mut bytes) = (0, 0, 0);
    for s in 0..senders {
        // Series i belongs to sender i % senders.
        let ids: Vec<usize> = (s..args.series).step_by(senders).collect();
        let labels: Vec<Vec<(String, String)>> = ids
            .iter()
            .map(|&i| {
                storage::workload::benchmark_labels(i)
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value))
                    .collect()
            })
            .collect();
        // Each request carries `steps` consecutive points of every series of this sender.
        let steps = (args.samples_per_request / ids.len().max(1)).max(1);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (s as u64 + 1));
        let mut values: Vec<f64> = ids.iter().map(|&i| (i % 100) as f64).collect();
        let mut bodies = Vec::new();
        let mut p = 0;
        while p < points && !ids.is_empty() {
            let n = steps.min(points - p);
            let mut ts = Vec::with_capacity(ids.len());
            let mut lines = String::new();
            let mut metrics = Vec::new();
            let mut v2 = rw2::Builder::default();
            let mut json: Vec<serde_json::Value> = Vec::new();
            for (k, l) in labels.iter().enumerate() {
                let pts: Vec<(i64, f64)> = (p..p + n)
                    .map(|j| {
                        // Half counters, half gauges.
                        if k % 2 == 0 {
                            values[k] += (rng.next_f64() * 10.0).floor();
                        } else {
                            values[k] = (rng.next_f64() * 1000.0).round() / 10.0;
                        }
                        (start_ms + j as i64 * args.interval_ms, values[k])
                    })
                    .collect();
                match args.protocol {
                    Protocol::RemoteWrite => {
                        let lref: Vec<(&str, &str)> =
                            l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                        ts.push(series(&lref, &pts));
                    }
                    Protocol::Influx => push_lines(&mut lines, l, &pts),
                    Protocol::Otlp => metrics.push(otlp_metric(l, &pts, k % 2 == 0)),
                    Protocol::RemoteWriteV2 => v2.push(l, &pts, k % 2 == 0),
                    Protocol::M3Json => push_json(&mut json, l, &pts),
                }
                samples += n;
            }
            let body = match args.protocol {
                Protocol::RemoteWrite => encode(&request(ts)),
                Protocol::Influx => lines.into_bytes(),
                Protocol::Otlp => otlp_request(metrics),
                Protocol::RemoteWriteV2 => v2.encode(),
                Protocol::M3Json => serde_json::to_vec(&json).expect("JSON body"),
            };
            bytes += body.len();
            requests += 1;
            bodies.push(body);
            p += n;
        }
        per_sender.push(bodies);
    }
    Workload {
        per_sender,
        samples,
        requests,
        bytes,
        end_ms,
    }
}

/// M3 JSON write items for one series: tags are the labels, the timestamp
/// Unix seconds with milliseconds (a string, as M3 documents it).
fn push_json(out: &mut Vec<serde_json::Value>, labels: &[(String, String)], pts: &[(i64, f64)]) {
    let tags: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    for &(t, v) in pts {
        out.push(serde_json::json!({
            "tags": tags,
            "timestamp": format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000)),
            "value": v,
        }));
    }
}

/// Line protocol for one series: measurement `bench`, the rest of the
/// metric name as the field, the other labels as tags (none of the values
/// needs escaping), timestamps in ms.
fn push_lines(out: &mut String, labels: &[(String, String)], pts: &[(i64, f64)]) {
    use std::fmt::Write as _;
    let mut key = String::from("bench");
    let mut field = "";
    for (n, v) in labels {
        if n == "__name__" {
            field = v.strip_prefix("bench_").unwrap_or(v);
        } else {
            let _ = write!(key, ",{n}={v}");
        }
    }
    for (t, v) in pts {
        let _ = writeln!(out, "{key} {field}={v} {t}");
    }
}

/// One OTLP metric for one series: the metric name as its name, the other
/// labels as attributes; a cumulative monotonic sum or a gauge.
fn otlp_metric(labels: &[(String, String)], pts: &[(i64, f64)], counter: bool) -> otlp::Metric {
    let mut name = String::new();
    let mut attributes = Vec::new();
    for (n, v) in labels {
        if n == "__name__" {
            name.clone_from(v);
        } else {
            attributes.push(otlp::KeyValue {
                key: n.clone(),
                value: Some(otlp::AnyValue {
                    value: Some(otlp::any_value::Value::StringValue(v.clone())),
                }),
                ..Default::default()
            });
        }
    }
    let data_points = pts
        .iter()
        .map(|&(t, v)| otlp::NumberDataPoint {
            attributes: attributes.clone(),
            time_unix_nano: t as u64 * 1_000_000,
            value: Some(otlp::number_data_point::Value::AsDouble(v)),
            ..Default::default()
        })
        .collect();
    let data = if counter {
        otlp::Data::Sum(otlp::Sum {
            data_points,
            aggregation_temporality: otlp::AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })
    } else {
        otlp::Data::Gauge(otlp::Gauge { data_points })
    };
    otlp::Metric {
        name,
        data: Some(data),
        ..Default::default()
    }
}

/// An OTLP request of `metrics` under one resource without attributes (so
/// no `target_info` series joins the workload's series).
fn otlp_request(metrics: Vec<otlp::Metric>) -> Vec<u8> {
    use prost::Message;
    otlp::ExportMetricsServiceRequest {
        resource_metrics: vec![otlp::ResourceMetrics {
            scope_metrics: vec![otlp::ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Remote write 2.0 requests.
mod rw2 {
    use ingest::proto::{Sample, v2};
    use prost::Message;

    pub const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

    #[derive(Default)]
    pub struct Builder {
        symbols: v2::SymbolTable,
        timeseries: Vec<v2::TimeSeries>,
    }

    impl Builder {
        /// One series (labels sorted by name) with its points and metadata.
        pub fn push(&mut self, labels: &[(String, String)], pts: &[(i64, f64)], counter: bool) {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let help = if counter { "A counter." } else { "A gauge." };
            self.timeseries.push(v2::TimeSeries {
                labels_refs: self.symbols.label_refs(&pairs),
                samples: pts
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                metadata: Some(v2::Metadata {
                    r#type: if counter { 1 } else { 2 },
                    help_ref: self.symbols.intern(help),
                    unit_ref: 0,
                }),
                ..Default::default()
            });
        }

        /// The request, snappy-compressed.
        pub fn encode(self) -> Vec<u8> {
            let req = v2::Request {
                symbols: self.symbols.into_symbols(),
                timeseries: self.timeseries,
            };
            strata_tests::remote_write::snappy(&req.encode_to_vec())
        }
    }

    /// POSTs one 2.0 body; returns the status and response body.
    pub async fn send(
        client: &reqwest::Client,
        url: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, String)> {
        let resp = client
            .post(url)
            .header("Content-Type", CONTENT_TYPE)
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "2.0.0")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }
}

/// The OTLP messages the benchmark builds.
mod otlp {
    pub use ingest::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    pub use ingest::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
    pub use ingest::otlp::proto::metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point,
    };
}

struct RunResult {
    elapsed: Duration,
    failures: usize,
    first_failure: Option<String>,
}

/// One run's figures: wall-clock rate, and the CPU time the server and this
/// sender used during the send (user + system, all threads).
struct Measured {
    rate: f64,
    server_cpu: Option<f64>,
    sender_cpu: Option<f64>,
}

/// The pid of the process whose command line contains `needle` (a listen
/// address, unique per run), from `/proc`.
fn find_pid(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        text.contains(needle).then_some(pid)
    })
}

/// CPU seconds (user + system, every thread) a process has used so far, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces), from field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Sends the workload and measures the CPU `server_pid` and this process
/// used meanwhile.
async fn send_measured(
    server_pid: Option<u32>,
    write_url: &str,
    w: &Arc<Workload>,
    protocol: Protocol,
) -> (RunResult, Option<f64>, Option<f64>) {
    let server_before = server_pid.and_then(|p| cpu_seconds(Some(p)));
    let sender_before = cpu_seconds(None);
    let r = send_all(write_url, w, protocol).await;
    let server = server_pid
        .and_then(|p| cpu_seconds(Some(p)))
        .zip(server_before)
        .map(|(a, b)| a - b);
    let sender = cpu_seconds(None).zip(sender_before).map(|(a, b)| a - b);
    (r, server, sender)
}

/// POSTs one line-protocol or OTLP body; returns the status and response
/// body.
async fn send_body(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, String)> {
    let resp = client
        .post(url)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

async fn send_all(write_url: &str, w: &Arc<Workload>, protocol: Protocol) -> RunResult {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..w.per_sender.len() {
        let (client, w, url) = (client.clone(), Arc::clone(w), write_url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0;
            let mut first = None;
            for body in &w.per_sender[s] {
                let sent = match protocol {
                    Protocol::RemoteWrite => {
                        remote_write::send(&client, &url, body.clone(), None).await
                    }
                    Protocol::Influx => {
                        send_body(&client, &url, "text/plain; charset=utf-8", body.clone()).await
                    }
                    Protocol::Otlp => {
                        send_body(&client, &url, "application/x-protobuf", body.clone()).await
                    }
                    Protocol::RemoteWriteV2 => rw2::send(&client, &url, body.clone()).await,
                    Protocol::M3Json => {
                        send_body(&client, &url, "application/json", body.clone()).await
                    }
                };
                match sent {
                    Ok((status, _)) if (200..300).contains(&status) => {}
                    Ok((status, msg)) => {
                        failures += 1;
                        first.get_or_insert_with(|| format!("HTTP {status}: {}", msg.trim()));
                    }
                    Err(e) => {
                        failures += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (failures, first)
        }));
    }
    let mut failures = 0;
    let mut first_failure = None;
    for t in tasks {
        let (f, first) = t.await.expect("sender task");
        failures += f;
        if first_failure.is_none() {
            first_failure = first;
        }
    }
    RunResult {
        elapsed: start.elapsed(),
        failures,
        first_failure,
    }
}

/// Best-effort check that everything arrived: series count and sample count at the end time.
async fn verify(name: &str, url: &str, w: &Workload, args: &Args) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client");
    let span_s = (args.samples_per_series as i64 * args.interval_ms) / 1000 + 60;
    let checks = [
        (
            "series",
            r#"count({job="bench"})"#.to_string(),
            args.series as f64,
        ),
        (
            "samples",
            format!(r#"sum(count_over_time({{job="bench"}}[{span_s}s]))"#),
            w.samples as f64,
        ),
    ];
    for (what, expr, want) in checks {
        let started = Instant::now();
        match promapi::query(&client, url, &expr, w.end_ms, None).await {
            Ok(r) => {
                let got = r.single_value().unwrap_or(f64::NAN);
                let verdict = if got == want { "ok" } else { "MISMATCH" };
                println!(
                    "  {name}: {what}: {got} (expected {want}) {verdict} [{:.1}s]",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => println!("  {name}: {what}: query failed: {e:#}"),
        }
    }
}

/// Segments the run wrote and how many requests each held, from Strata's
/// `/metrics`: what group commit made of the load (per-segment costs are
/// paid once per segment, so fewer, larger segments are cheaper).
/// Then the mean latency of a write request, of the segment put that
/// answered it and of the object-store put alone.
async fn print_segments(url: &str) {
    let Ok(resp) = reqwest::get(format!("{url}/metrics")).await else {
        return;
    };
    let text = resp.text().await.unwrap_or_default();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    if let (Some(segments), Some(bytes), Some(requests)) = (
        value("strata_ingest_segments_written_total"),
        value("strata_ingest_segment_written_bytes_total"),
        value("strata_ingest_batch_requests_sum"),
    ) && segments > 0.0
    {
        println!(
            "  strata segments: {segments:.0} ({:.1} requests, {:.0} KiB each)",
            requests / segments,
            bytes / segments / 1024.0
        );
    }
    // Where a request's time goes: with a fixed number of senders, each
    // waiting for its answer, samples/s follow the latency of a request.
    let mean = |prefix: &str, label: &str| {
        let sum_of = |suffix: &str| -> f64 {
            let name = format!("{prefix}_{suffix}");
            text.lines()
                .filter(|l| l.starts_with(&name) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let (sum, count) = (sum_of("sum"), sum_of("count"));
        (count > 0.0).then(|| sum / count * 1e3)
    };
    if let (Some(request), Some(put), Some(store)) = (
        mean("strata_http_request_seconds", "route=\"/api/v1/write\""),
        mean("strata_ingest_segment_put_seconds", ""),
        mean("strata_object_store_request_seconds", "op=\"put\""),
    ) {
        println!(
            "  strata mean ms: write request {request:.2}, segment put {put:.2} (object store put {store:.2})"
        );
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
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

fn report(
    name: &str,
    w: &Workload,
    r: &RunResult,
    server_cpu: Option<f64>,
    sender_cpu: Option<f64>,
) -> Measured {
    let rate = w.samples as f64 / r.elapsed.as_secs_f64();
    println!(
        "{name}: {} samples in {:.2} s = {:.0} samples/s ({:.0} requests/s), non-2xx/failed requests: {}",
        w.samples,
        r.elapsed.as_secs_f64(),
        rate,
        w.requests as f64 / r.elapsed.as_secs_f64(),
        r.failures
    );
    let per_m = |cpu: f64| cpu / (w.samples as f64 / 1e6);
    if let (Some(server), Some(sender)) = (server_cpu, sender_cpu) {
        println!(
            "  CPU: {name} {server:.2} s ({:.3} s per million samples), sender {sender:.2} s; load average {}",
            per_m(server),
            load_average()
        );
    }
    if let Some(f) = &r.first_failure {
        println!("  first failure: {f}");
    }
    Measured {
        rate,
        server_cpu: server_cpu.map(per_m),
        sender_cpu,
    }
}

/// The 1-minute load average, to judge how shared the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let work = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir()
        .expect("temp dir");
    let logs = work.path().to_path_buf();

    if args.protocol != Protocol::RemoteWrite && args.target == "prometheus" {
        eprintln!(
            "--protocol influx|otlp|remote-write-v2|m3-json benchmarks Strata only (use --target strata or both)"
        );
        std::process::exit(2);
    }
    let t = Instant::now();
    let w = Arc::new(build(&args));
    let encoding = match args.protocol {
        Protocol::RemoteWrite => "snappy protobuf",
        Protocol::Influx => "line protocol",
        Protocol::Otlp => "OTLP protobuf",
        Protocol::RemoteWriteV2 => "snappy protobuf (remote write 2.0)",
        Protocol::M3Json => "M3 JSON",
    };
    println!(
        "workload: {} series, {} samples, {} requests (~{} samples each), {} senders, {:.1} MiB {encoding}; encoded in {:.1} s",
        args.series,
        w.samples,
        w.requests,
        w.samples / w.requests.max(1),
        w.per_sender.len(),
        w.bytes as f64 / (1024.0 * 1024.0),
        t.elapsed().as_secs_f64()
    );

    let mut strata_runs: Vec<Measured> = Vec::new();
    let mut prom_runs: Vec<Measured> = Vec::new();
    let mut stopped_prometheus = Vec::new();
    let strata_path = args.strata_bin.clone().unwrap_or_else(strata_bin);
    println!("strata binary: {}", strata_path.display());
    if args.protocol == Protocol::RemoteWrite {
        println!("prometheus binary: {}", prometheus_bin().display());
    }
    for round in 0..args.rounds.max(1) {
        // Verify the stored data once, in the first round.
        let verify_now = round == 0 && !args.no_verify;
        let strata_first = round % 2 == 0;
        for run_strata in [strata_first, !strata_first] {
            // Flush the previous run's dirty pages so writeback does not land
            // on the next run.
            let _ = std::process::Command::new("sync").status();
            // Data directories are kept until the end (the temporary
            // directory goes then): deleting thousands of segment files just
            // before the next run makes that run's file creation slower on
            // ext4 without a journal (its inode allocator skips recently
            // deleted inodes one by one), which measured the file system's
            // state rather than the server.
            if run_strata && args.target != "prometheus" {
                let data = work.path().join(format!("strata-data-{round}"));
                strata_runs
                    .push(bench_strata(&strata_path, &data, &logs, &w, &args, verify_now).await);
            }
            if !run_strata && args.target != "strata" && args.protocol == Protocol::RemoteWrite {
                let (m, stopped) = bench_prometheus(&logs, &w, &args, verify_now).await;
                prom_runs.push(m);
                stopped_prometheus.push(stopped);
            }
        }
    }
    drop(stopped_prometheus);
    let mut strata_rates: Vec<f64> = strata_runs.iter().map(|m| m.rate).collect();
    let mut prom_rates: Vec<f64> = prom_runs.iter().map(|m| m.rate).collect();
    let (s, p) = (median(&mut strata_rates), median(&mut prom_rates));
    if let Some(s) = s {
        let protocol = match args.protocol {
            Protocol::RemoteWrite => "remote write",
            Protocol::Influx => "line protocol",
            Protocol::Otlp => "OTLP",
            Protocol::RemoteWriteV2 => "remote write 2.0",
            Protocol::M3Json => "M3 JSON write",
        };
        println!(
            "strata median ({protocol}): {s:.0} samples/s over {} rounds",
            strata_rates.len()
        );
    }
    if let Some(p) = p {
        println!(
            "prometheus median: {p:.0} samples/s over {} rounds",
            prom_rates.len()
        );
    }
    if let (Some(s), Some(p)) = (s, p) {
        println!("ratio strata/prometheus (medians): {:.2}", s / p);
    }
    // CPU per sample does not depend on what else shares the machine as
    // much as wall-clock rates do: the second figure to read.
    let cpu = |runs: &[Measured]| {
        let mut v: Vec<f64> = runs.iter().filter_map(|m| m.server_cpu).collect();
        median(&mut v)
    };
    let (sc, pc) = (cpu(&strata_runs), cpu(&prom_runs));
    if let Some(sc) = sc {
        println!("strata median CPU: {sc:.3} s per million samples");
    }
    if let Some(pc) = pc {
        println!("prometheus median CPU: {pc:.3} s per million samples");
    }
    if let (Some(sc), Some(pc)) = (sc, pc) {
        println!(
            "CPU per sample ratio prometheus/strata (medians): {:.2}",
            pc / sc
        );
    }
    let mut sender: Vec<f64> = strata_runs
        .iter()
        .chain(&prom_runs)
        .filter_map(|m| m.sender_cpu)
        .collect();
    if let Some(c) = median(&mut sender) {
        println!("sender median CPU per run: {c:.2} s");
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

async fn bench_strata(
    bin: &std::path::Path,
    data: &std::path::Path,
    logs: &std::path::Path,
    w: &Arc<Workload>,
    args: &Args,
    verify_now: bool,
) -> Measured {
    std::fs::create_dir_all(data).expect("create strata data dir");
    let mut strata_args = vec![
        "--storage".into(),
        "local".into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    if let Some(config) = &args.strata_config {
        strata_args.extend(["--config".into(), config.display().to_string()]);
    }
    let mut strata = Strata::start(bin, strata_args, Vec::new(), logs).await;
    let (url, name) = match args.protocol {
        Protocol::RemoteWrite => (strata.write_url(), "strata"),
        Protocol::Influx => (
            format!("{}/write?precision=ms", strata.url),
            "strata (line protocol)",
        ),
        Protocol::Otlp => (
            format!("{}/api/v1/otlp/v1/metrics", strata.url),
            "strata (OTLP)",
        ),
        Protocol::RemoteWriteV2 => (strata.write_url(), "strata (remote write 2.0)"),
        Protocol::M3Json => (
            format!("{}/api/v1/json/write", strata.url),
            "strata (M3 JSON write)",
        ),
    };
    let pid = find_pid(&format!("--listen 127.0.0.1:{}", strata.port));
    let (r, server_cpu, sender_cpu) = send_measured(pid, &url, w, args.protocol).await;
    let measured = report(name, w, &r, server_cpu, sender_cpu);
    println!(
        "  strata data dir: {:.1} MiB",
        dir_size(data) as f64 / (1024.0 * 1024.0)
    );
    print_segments(&strata.url).await;
    if verify_now {
        verify("strata", &strata.url, w, args).await;
    }
    if r.failures > 0 {
        println!(
            "  strata log: {}\n{}",
            strata.proc.log_path().display(),
            strata.proc.log_tail(20)
        );
    }
    strata.proc.kill();
    measured
}

/// Also returns the stopped Prometheus, whose temporary data directory is
/// deleted when it is dropped: the caller keeps it until the end.
async fn bench_prometheus(
    logs: &std::path::Path,
    w: &Arc<Workload>,
    args: &Args,
    verify_now: bool,
) -> (Measured, Prometheus) {
    let mut prom = Prometheus::start(
        |_| "global:\n  scrape_interval: 1m\n".to_string(),
        &["--web.enable-remote-write-receiver", "--log.level=warn"],
        logs,
    )
    .await;
    let data = prom.data_dir();
    let pid = find_pid(&format!("--web.listen-address=127.0.0.1:{}", prom.port));
    let (r, server_cpu, sender_cpu) = send_measured(
        pid,
        &format!("{}/api/v1/write", prom.url),
        w,
        Protocol::RemoteWrite,
    )
    .await;
    let measured = report("prometheus", w, &r, server_cpu, sender_cpu);
    println!(
        "  prometheus data dir: {:.1} MiB (WAL, not yet compacted)",
        dir_size(&data) as f64 / (1024.0 * 1024.0)
    );
    if verify_now {
        verify("prometheus", &prom.url, w, args).await;
    }
    if r.failures > 0 {
        println!(
            "  prometheus log: {}\n{}",
            prom.proc.log_path().display(),
            prom.proc.log_tail(20)
        );
    }
    prom.proc.kill();
    (measured, prom)
}
