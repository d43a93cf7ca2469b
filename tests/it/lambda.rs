//! The Lambda entry points of the real `strata` binary, each in its own
//! process as on AWS, against a local implementation of the Lambda Runtime
//! API (next invocation, response, error) and a real S3-compatible server:
//! an API Gateway v2 event carrying a remote-write body goes to the ingest
//! function, query events to the query function, a scheduled event to the
//! compaction function (and one to the aggregator's), and the data comes back
//! from SeaweedFS before and after compaction.
//!
//! Timings (cold start: process start to the first answered invocation; warm
//! invocations) are printed; run with `STRATA_BIN=target/release/strata` and
//! `--nocapture` to measure the release build.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_tests::Weed;
use strata_tests::process::{Proc, strata_bin};
use strata_tests::remote_write::{self, now_ms};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

use crate::Scratch;

const H: i64 = 3_600_000;
const API: &str = "/2018-06-01/runtime";

/// What a function answered to one invocation.
#[derive(Debug)]
enum Outcome {
    Response { id: String, body: Vec<u8> },
    Error { id: String, body: Vec<u8> },
    InitError { body: Vec<u8> },
}

struct Shared {
    events: Mutex<mpsc::UnboundedReceiver<(String, String)>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// When the function first asked for an invocation: its init is done.
    first_poll: OnceLock<Instant>,
}

/// A local Lambda Runtime API for one function (one process).
struct RuntimeApi {
    addr: String,
    events: mpsc::UnboundedSender<(String, String)>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    shared: Arc<Shared>,
    seq: usize,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let addr = listener.local_addr().expect("local address").to_string();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(events_rx),
            outcomes: outcomes_tx,
            first_poll: OnceLock::new(),
        });
        let s = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection(conn, s.clone()));
            }
        });
        Self {
            addr,
            events,
            outcomes,
            shared,
            seq: 0,
            server,
        }
    }

    /// Hands `event` to the function and waits for its answer, checking that
    /// the process stays up. Returns the time from hand-over to answer.
    async fn invoke(&mut self, proc: &mut Proc, event: &Value) -> (Duration, Outcome) {
        self.seq += 1;
        let id = format!("invocation-{}", self.seq);
        let start = Instant::now();
        self.events
            .send((id.clone(), event.to_string()))
            .expect("runtime API server is running");
        let outcome = self.wait(proc).await;
        let elapsed = start.elapsed();
        match &outcome {
            Outcome::Response { id: got, .. } | Outcome::Error { id: got, .. } => {
                assert_eq!(got, &id, "answer to the wrong invocation")
            }
            Outcome::InitError { body } => panic!(
                "{} failed to initialise: {}\n{}",
                proc.name(),
                String::from_utf8_lossy(body),
                proc.log_tail(40)
            ),
        }
        (elapsed, outcome)
    }

    async fn wait(&mut self, proc: &mut Proc) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            proc.assert_running();
            if let Ok(Some(o)) =
                tokio::time::timeout(Duration::from_millis(50), self.outcomes.recv()).await
            {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within 120 s; its log:\n{}",
                proc.name(),
                proc.log_tail(40)
            );
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One HTTP/1.1 connection from the function's runtime client (kept alive,
/// requests in sequence).
async fn serve_connection(conn: TcpStream, shared: Arc<Shared>) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    while let Ok(Some((method, path, body))) = read_request(&mut r).await {
        let (status, headers, resp) = route(&shared, &method, &path, body).await;
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", resp.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if w.write_all(head.as_bytes()).await.is_err() || w.write_all(&resp).await.is_err() {
            return;
        }
    }
}

async fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let accepted = (202, Vec::new(), b"{\"status\":\"OK\"}".to_vec());
    let Some(rest) = path.strip_prefix(API) else {
        return (404, Vec::new(), b"not found".to_vec());
    };
    match (method, rest) {
        ("GET", "/invocation/next") => {
            let _ = shared.first_poll.set(Instant::now());
            let next = shared.events.lock().await.recv().await;
            let Some((id, event)) = next else {
                return (500, Vec::new(), b"no more events".to_vec());
            };
            let deadline = (now_ms() + 900_000).to_string();
            let headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("lambda-runtime-aws-request-id".to_string(), id),
                ("lambda-runtime-deadline-ms".to_string(), deadline),
                (
                    "lambda-runtime-invoked-function-arn".to_string(),
                    "arn:aws:lambda:us-east-1:123456789012:function:strata".to_string(),
                ),
                (
                    "lambda-runtime-trace-id".to_string(),
                    "Root=1-00000000-000000000000000000000000;Sampled=0".to_string(),
                ),
            ];
            (200, headers, event.into_bytes())
        }
        ("POST", "/init/error") => {
            let _ = shared.outcomes.send(Outcome::InitError { body });
            accepted
        }
        ("POST", rest) => {
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                ["", "invocation", id, "response"] => {
                    let id = id.to_string();
                    let _ = shared.outcomes.send(Outcome::Response { id, body });
                    accepted
                }
                ["", "invocation", id, "error"] => {
                    let id = id.to_string();
                    let _ = shared.outcomes.send(Outcome::Error { id, body });
                    accepted
                }
                _ => (404, Vec::new(), b"not found".to_vec()),
            }
        }
        _ => (404, Vec::new(), b"not found".to_vec()),
    }
}

/// Reads one request: method, path and body (`content-length` or chunked).
async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(String, String, Vec<u8>)>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().unwrap_or(0),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size_field = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_field, 16).unwrap_or(0);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..]).await?;
            line.clear();
            r.read_line(&mut line).await?;
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body).await?;
    }
    Ok(Some((method, path, body)))
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An API Gateway HTTP API (payload 2.0) event, as function URLs send too.
fn apigw_event(
    method: &str,
    path: &str,
    query: &str,
    headers: Value,
    body: Option<&[u8]>,
) -> Value {
    let mut headers = headers;
    headers["host"] = json!("abcdef123.execute-api.us-east-1.amazonaws.com");
    headers["user-agent"] = json!("strata-tests");
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef123",
            "domainName": "abcdef123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "strata-tests"
            },
            "requestId": format!("req-{}", now_ms()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": now_ms()
        },
        "body": body.map(base64),
        "isBase64Encoded": body.is_some()
    })
}

fn write_event(body: &[u8]) -> Value {
    apigw_event(
        "POST",
        "/api/v1/write",
        "",
        json!({
            "content-type": "application/x-protobuf",
            "content-encoding": "snappy",
            "x-prometheus-remote-write-version": "0.1.0",
            "content-length": body.len().to_string()
        }),
        Some(body),
    )
}

fn query_event(params: &[(&str, String)]) -> Value {
    let url = reqwest::Url::parse_with_params("http://x/api/v1/query", params).expect("URL");
    let qs = url.query().unwrap_or_default().to_string();
    apigw_event("GET", "/api/v1/query", &qs, json!({"accept": "*/*"}), None)
}

fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "cdc73f9d-aea9-11e3-9d5a-835b769c0d9c",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/strata-compact"],
        "detail": {}
    })
}

/// 2 h of 30 s samples of 20 series from `start`, starting at sample `from`.
fn remote_write_body(start: i64, from: i64, count: i64) -> Vec<u8> {
    let series = (0..20)
        .map(|i| {
            let instance = format!("host-{i}");
            let samples: Vec<(i64, f64)> = (from..from + count)
                .map(|k| (start + k * 30_000, (k * (i + 1)) as f64))
                .collect();
            remote_write::series(
                &[
                    ("__name__", "lambda_requests_total"),
                    ("job", "api"),
                    ("instance", &instance),
                ],
                &samples,
            )
        })
        .collect();
    remote_write::encode(&remote_write::request(series))
}

/// The API Gateway v2 response of an HTTP function: (status, body).
fn http_response(outcome: &Outcome) -> (u64, String) {
    let Outcome::Response { body, .. } = outcome else {
        panic!("expected a response, got {outcome:?}");
    };
    let v: Value = serde_json::from_slice(body).expect("a JSON API Gateway response");
    let status = v["statusCode"].as_u64().expect("statusCode");
    let body = v["body"].as_str().unwrap_or_default().to_string();
    (status, body)
}

fn single_value(body: &str) -> f64 {
    let v: Value = serde_json::from_str(body).expect("Prometheus JSON");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no single value in {body}"))
}

/// Starts one function process: `bootstrap` (a link to the strata binary,
/// the role from `_HANDLER`, as deployed) or `strata ARGS`.
fn start_function(
    name: &str,
    how: Start<'_>,
    runtime: &RuntimeApi,
    weed: &Weed,
    logs: &Path,
) -> (Proc, Instant) {
    let mut cmd = match how {
        Start::Bootstrap { dir, handler } => {
            let link = dir.join("bootstrap");
            if !link.exists() {
                std::os::unix::fs::symlink(strata_bin(), &link).expect("link bootstrap");
            }
            let mut cmd = Command::new(link);
            cmd.env_clear().env("_HANDLER", handler);
            cmd
        }
        Start::Args(args) => {
            let mut cmd = Command::new(strata_bin());
            cmd.env_clear().args(args);
            cmd
        }
    };
    cmd.envs([
        ("AWS_LAMBDA_RUNTIME_API", runtime.addr.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/strata"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test"),
        ("AWS_REGION", Weed::REGION),
        ("AWS_ACCESS_KEY_ID", Weed::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", Weed::SECRET_KEY),
        ("STRATA_STORAGE", "s3"),
        ("STRATA_S3_BUCKET", weed.bucket.as_str()),
        ("STRATA_S3_ENDPOINT", weed.endpoint.as_str()),
        ("STRATA_S3_REGION", Weed::REGION),
        ("STRATA_S3_PATH_STYLE", "true"),
        ("STRATA_S3_ALLOW_HTTP", "true"),
        ("STRATA_LOG", "info"),
        ("RUST_BACKTRACE", "1"),
    ]);
    // The query cache's disk tier goes to the instance's temporary
    // directory: the test's, so it is removed with it.
    let tmp = logs.parent().unwrap_or(logs).join(format!("tmp-{name}"));
    std::fs::create_dir_all(&tmp).expect("temporary directory");
    cmd.env("TMPDIR", &tmp);
    let started = Instant::now();
    (Proc::spawn(name, cmd, logs), started)
}

enum Start<'a> {
    Bootstrap { dir: &'a Path, handler: &'a str },
    Args(&'a [&'a str]),
}

fn median_ms(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

#[tokio::test]
async fn lambda_functions_write_query_and_compact_on_s3() {
    let scratch = Scratch::new("lambda");
    let logs = scratch.sub("logs");
    let weed = Weed::start("strata", &scratch.path()).await;

    // SeaweedFS allocates a bucket's first volume on its first write; do
    // that now, so that the cold start below measures Strata, not weed.
    let warm = reqwest::Client::new()
        .put(format!(
            "{}/buckets/{}/warm-up",
            weed.filer_url, weed.bucket
        ))
        .body("x")
        .send()
        .await
        .expect("warm-up write to the filer");
    assert!(warm.status().is_success(), "warm-up: {}", warm.status());

    // Ingest, deployed as `bootstrap` with Handler `ingest`.
    let mut ingest_api = RuntimeApi::start().await;
    let boot_dir = scratch.sub("task");
    let (mut ingest, started) = start_function(
        "strata-ingest",
        Start::Bootstrap {
            dir: &boot_dir,
            handler: "ingest",
        },
        &ingest_api,
        &weed,
        &logs,
    );
    let start = (now_ms() - 2 * 24 * H) / H * H;
    // The first event is queued at once: process start to first answer is
    // the cold start as a client sees it.
    let (_, outcome) = ingest_api
        .invoke(&mut ingest, &write_event(&remote_write_body(start, 0, 120)))
        .await;
    let cold_write = started.elapsed();
    let init_write = ingest_api
        .shared
        .first_poll
        .get()
        .map(|t| t.duration_since(started));
    let (status, body) = http_response(&outcome);
    assert_eq!(status, 204, "{body}");

    // Warm writes: the next 2 h in 20 requests of 6 minutes each.
    let mut warm_writes = Vec::new();
    for r in 0..20 {
        let body = remote_write_body(start, 120 + r * 12, 12);
        let (took, outcome) = ingest_api.invoke(&mut ingest, &write_event(&body)).await;
        let (status, text) = http_response(&outcome);
        assert_eq!(status, 204, "{text}");
        warm_writes.push(took);
    }
    // Invalid input is an HTTP answer (400), not a function error.
    let (_, outcome) = ingest_api
        .invoke(&mut ingest, &write_event(b"not snappy"))
        .await;
    assert_eq!(http_response(&outcome).0, 400);

    // Query, started as `strata lambda --role query`.
    let mut query_api = RuntimeApi::start().await;
    let (mut query, started) = start_function(
        "strata-query",
        Start::Args(&["lambda", "--role", "query"]),
        &query_api,
        &weed,
        &logs,
    );
    let at = start + 3 * H - 30_000;
    let q = |expr: &str| {
        query_event(&[
            ("query", expr.to_string()),
            ("time", format!("{}", at / 1000)),
        ])
    };
    let (_, outcome) = query_api
        .invoke(&mut query, &q("sum(lambda_requests_total)"))
        .await;
    let cold_query = started.elapsed();
    let init_query = query_api
        .shared
        .first_poll
        .get()
        .map(|t| t.duration_since(started));
    let (status, body) = http_response(&outcome);
    assert_eq!(status, 200, "{body}");
    // Sample 359 of series i is 359 * (i + 1); the sum over i < 20 is 359 * 210.
    let expected = 359.0 * 210.0;
    assert_eq!(single_value(&body), expected, "{body}");
    let mut warm_queries = Vec::new();
    for _ in 0..20 {
        let (took, outcome) = query_api
            .invoke(&mut query, &q("sum(rate(lambda_requests_total[5m]))"))
            .await;
        let (status, body) = http_response(&outcome);
        assert_eq!(status, 200, "{body}");
        warm_queries.push(took);
    }
    let (_, outcome) = query_api
        .invoke(&mut query, &q("count(lambda_requests_total)"))
        .await;
    assert_eq!(single_value(&http_response(&outcome).1), 20.0);

    // Compaction, deployed as `bootstrap` with Handler `compact`: an event it
    // cannot read goes to the error endpoint, a scheduled event runs a pass.
    let mut compact_api = RuntimeApi::start().await;
    let (mut compact, _) = start_function(
        "strata-compact",
        Start::Bootstrap {
            dir: &boot_dir,
            handler: "compact",
        },
        &compact_api,
        &weed,
        &logs,
    );
    let (_, outcome) = compact_api
        .invoke(&mut compact, &json!("not a scheduled event"))
        .await;
    let Outcome::Error { body, .. } = &outcome else {
        panic!("expected an invocation error, got {outcome:?}");
    };
    let error: Value = serde_json::from_slice(body).expect("a JSON error report");
    assert!(error["errorMessage"].is_string(), "{error}");
    let (compact_took, outcome) = compact_api.invoke(&mut compact, &scheduled_event()).await;
    let Outcome::Response { body, .. } = &outcome else {
        panic!("compaction failed: {outcome:?}\n{}", compact.log_tail(40));
    };
    let stats: Value = serde_json::from_slice(body).expect("compaction output");
    assert!(stats["blocks_written"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["samples_written"].as_u64(), Some(20 * 360), "{stats}");
    let files = weed.list_files().await.expect("list the bucket");
    assert!(
        files.iter().any(|f| f.contains("/blocks/")),
        "no block in {files:?}"
    );

    // The same answers from the block.
    let (_, outcome) = query_api
        .invoke(&mut query, &q("sum(lambda_requests_total)"))
        .await;
    assert_eq!(single_value(&http_response(&outcome).1), expected);
    let (_, outcome) = query_api
        .invoke(&mut query, &q("count(lambda_requests_total)"))
        .await;
    assert_eq!(single_value(&http_response(&outcome).1), 20.0);

    // The aggregator's function: without rules a pass has nothing to do.
    let mut aggregate_api = RuntimeApi::start().await;
    let (mut aggregate, _) = start_function(
        "strata-aggregate",
        Start::Bootstrap {
            dir: &boot_dir,
            handler: "aggregate",
        },
        &aggregate_api,
        &weed,
        &logs,
    );
    let (_, outcome) = aggregate_api
        .invoke(&mut aggregate, &scheduled_event())
        .await;
    let Outcome::Response { body, .. } = &outcome else {
        panic!(
            "aggregation failed: {outcome:?}\n{}",
            aggregate.log_tail(40)
        );
    };
    let stats: Value = serde_json::from_slice(body).expect("aggregation output");
    assert_eq!(stats["job"], "aggregate", "{stats}");
    assert_eq!(stats["blocks_written"], 0, "{stats}");

    // The aggregator's function: without rules a pass has nothing to do.
    let mut aggregate_api = RuntimeApi::start().await;
    let (mut aggregate, _) = start_function(
        "strata-aggregate",
        Start::Bootstrap {
            dir: &boot_dir,
            handler: "aggregate",
        },
        &aggregate_api,
        &weed,
        &logs,
    );
    let (_, outcome) = aggregate_api
        .invoke(&mut aggregate, &scheduled_event())
        .await;
    let Outcome::Response { body, .. } = &outcome else {
        panic!(
            "aggregation failed: {outcome:?}\n{}",
            aggregate.log_tail(40)
        );
    };
    let stats: Value = serde_json::from_slice(body).expect("aggregation output");
    assert_eq!(stats["job"], "aggregate", "{stats}");
    assert_eq!(stats["blocks_written"], 0, "{stats}");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (w50, w90) = median_ms(warm_writes);
    let (q50, q90) = median_ms(warm_queries);
    eprintln!(
        "lambda timings ({}):\n  ingest: init {:.1} ms, cold start to first answered write {:.1} ms; \
         warm write median {w50:.1} ms, p90 {w90:.1} ms (20 series x 12 samples)\n  \
         query: init {:.1} ms, cold start to first answered query {:.1} ms; \
         warm query median {q50:.1} ms, p90 {q90:.1} ms\n  compaction pass {:.1} ms",
        strata_bin().display(),
        init_write.map(ms).unwrap_or(f64::NAN),
        ms(cold_write),
        init_query.map(ms).unwrap_or(f64::NAN),
        ms(cold_query),
        ms(compact_took),
    );
    ingest.kill();
    query.kill();
    compact.kill();
    aggregate.kill();
}
