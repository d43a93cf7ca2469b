//! Remote read end to end: a real Prometheus (Debian's 2.42) configured with
//! `remote_read` pointing at Strata (`read_recent: true`, a bearer token that
//! Strata's `[auth]` binds to a tenant) answers its own `/api/v1/query` and
//! `/api/v1/query_range` with the data remote-written to Strata; and
//! Strata's `STREAMED_XOR_CHUNKS` chunks are byte-for-byte the chunks
//! Prometheus' own remote read serves for the same samples.
//!
//! The tenant comes from the token because Prometheus 2.42 accepts a
//! `headers:` section under `remote_read` but does not send it (observed:
//! Strata saw no `X-Scope-OrgID`).
//!
//! Prometheus 2.42's remote-read client asks only for `SAMPLES` (streamed
//! chunks came to its client later), which the Strata log line checked
//! below records; the streamed type is covered by requests built here and
//! by comparison with a real Prometheus server's chunks.

use prost::Message;
use querier::remote_read::proto::{
    ChunkedReadResponse, LabelMatcher, MatcherType, Query, ReadRequest, ReadResponse,
};
use querier::remote_read::{frame, xor};
use storage::Sample;
use strata_tests::process::strata_bin;
use strata_tests::promapi;
use strata_tests::remote_write::{self, now_ms};
use strata_tests::{Prometheus, Strata};

use crate::{Scratch, client};

const TENANT: &str = "rr-team";
const TOKEN: &str = "rr-team-token-0123456789";
const OTHER_TOKEN: &str = "other-team-token-0123456789";
const STEP_MS: i64 = 15_000;

/// `rr_metric{job="a"}` = i, `{job="b"}` = 2i for i in 0..n, 15 s apart from `start`.
fn workload(start: i64, n: i64) -> Vec<u8> {
    let samples = |f: i64| -> Vec<(i64, f64)> {
        (0..n)
            .map(|i| (start + i * STEP_MS, (i * f) as f64))
            .collect()
    };
    remote_write::encode(&remote_write::request(vec![
        remote_write::series(&[("__name__", "rr_metric"), ("job", "a")], &samples(1)),
        remote_write::series(&[("__name__", "rr_metric"), ("job", "b")], &samples(2)),
    ]))
}

async fn write(c: &reqwest::Client, url: &str, body: Vec<u8>, token: Option<&str>) {
    let mut req = c
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("remote write");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "remote write to {url}: {status} {text}"
    );
}

fn read_request(name: &str, start: i64, end: i64, accepted: Vec<i32>) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![LabelMatcher {
                r#type: MatcherType::Eq as i32,
                name: "__name__".into(),
                value: name.into(),
            }],
            hints: None,
        }],
        accepted_response_types: accepted,
    };
    remote_write::snappy(&req.encode_to_vec())
}

/// POSTs a read request; returns the content type and body.
async fn remote_read(
    c: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> (String, Vec<u8>) {
    let mut req = c
        .post(format!("{base}/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req.send().await.expect("remote read request");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.bytes().await.expect("remote read body").to_vec();
    assert!(
        status.is_success(),
        "remote read at {base}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    (ctype, bytes)
}

/// Per series (labels as `name=value` pairs), its chunks' bytes.
fn streamed_chunks(bytes: &[u8]) -> Vec<(Vec<String>, Vec<Vec<u8>>)> {
    frame::unframe(bytes, 50 << 20)
        .expect("checksummed frames")
        .into_iter()
        .map(|m| {
            let resp = ChunkedReadResponse::decode(m).expect("ChunkedReadResponse");
            assert_eq!(resp.query_index, 0);
            assert_eq!(resp.chunked_series.len(), 1);
            let s = &resp.chunked_series[0];
            let labels = s
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            (labels, s.chunks.iter().map(|c| c.data.clone()).collect())
        })
        .collect()
}

#[tokio::test]
async fn prometheus_queries_strata_through_remote_read() {
    let scratch = Scratch::new("remote-read");
    let c = client();
    let config = scratch.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\ntoken = \"{TOKEN}\"\ntenant = \"{TENANT}\"\n\n\
             [[auth.tokens]]\ntoken = \"{OTHER_TOKEN}\"\ntenant = \"someone-else\"\n"
        ),
    )
    .expect("write strata.toml");
    let args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        scratch.sub("data").display().to_string(),
        "--log".to_string(),
        "querier=debug,info".to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;

    let n = 40;
    let start = (now_ms() - 30 * 60_000) / 1000 * 1000;
    write(&c, &strata.write_url(), workload(start, n), Some(TOKEN)).await;
    // Another tenant's series of the same name must not leak into the answer.
    let other = remote_write::encode(&remote_write::request(vec![remote_write::series(
        &[("__name__", "rr_metric"), ("job", "secret")],
        &[(start, 99.0)],
    )]));
    write(&c, &strata.write_url(), other, Some(OTHER_TOKEN)).await;

    let strata_url = strata.url.clone();
    let prom = Prometheus::start(
        |_| {
            format!(
                r#"global:
  scrape_interval: 1m
remote_read:
  - url: {strata_url}/api/v1/read
    read_recent: true
    remote_timeout: 10s
    authorization:
      credentials: {TOKEN}
"#
            )
        },
        &[],
        &scratch.path(),
    )
    .await;

    let last = start + (n - 1) * STEP_MS;
    let got = promapi::query(&c, &prom.url, "rr_metric", last, None)
        .await
        .expect("instant query through Prometheus");
    let want = |a: f64, b: f64| {
        [
            (r#"{__name__="rr_metric", job="a"}"#.to_string(), a),
            (r#"{__name__="rr_metric", job="b"}"#.to_string(), b),
        ]
    };
    assert_eq!(got.series.len(), 2, "{got:?}");
    for (labels, v) in want((n - 1) as f64, (2 * (n - 1)) as f64) {
        assert_eq!(got.series.get(&labels), Some(&vec![(last, v)]), "{got:?}");
    }
    let sum = promapi::query(&c, &prom.url, "sum(rr_metric)", last, None)
        .await
        .expect("sum");
    assert_eq!(sum.single_value(), Some((3 * (n - 1)) as f64));

    // Every raw sample, through a range query at the samples' own step.
    let range = promapi::query_range(
        &c,
        &prom.url,
        r#"rr_metric{job="b"}"#,
        start,
        last,
        STEP_MS,
        None,
    )
    .await
    .expect("range query through Prometheus");
    let points: Vec<(i64, f64)> = (0..n)
        .map(|i| (start + i * STEP_MS, (2 * i) as f64))
        .collect();
    assert_eq!(
        range.series.get(r#"{__name__="rr_metric", job="b"}"#),
        Some(&points),
        "{range:?}"
    );
    let secret = promapi::query(&c, &prom.url, r#"rr_metric{job="secret"}"#, last, None)
        .await
        .expect("other tenant's series");
    assert!(secret.series.is_empty(), "{secret:?}");

    // Which response type Prometheus asked for (Strata logs it per request).
    let log = std::fs::read_to_string(strata.proc.log_path()).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("remote read") && l.contains(TENANT))
        .unwrap_or_else(|| panic!("no remote read request logged:\n{log}"));
    eprintln!("Prometheus' remote read request: {line}");
    assert!(line.contains("response_type="), "{line}");
}

#[tokio::test]
async fn streamed_chunks_are_the_chunks_prometheus_serves() {
    let scratch = Scratch::new("remote-read-chunks");
    let c = client();
    let strata = Strata::start_local(&scratch.sub("data"), &scratch.path()).await;
    let prom = Prometheus::start(
        |_| "global:\n  scrape_interval: 1m\n".to_string(),
        &["--web.enable-remote-write-receiver"],
        &scratch.path(),
    )
    .await;

    // 60 samples, 15 s apart, inside one 2 h window: Prometheus holds them
    // in one head chunk (it cuts at 120 samples or a window end), Strata
    // cuts at 120 too.
    let window = 2 * 3_600_000;
    let start = (now_ms() - 3_600_000) / window * window + 1000;
    let n = 60;
    write(&c, &strata.write_url(), workload(start, n), None).await;
    write(
        &c,
        &format!("{}/api/v1/write", prom.url),
        workload(start, n),
        None,
    )
    .await;

    let end = start + n * STEP_MS;
    let (ctype, from_strata) = remote_read(
        &c,
        &strata.url,
        read_request("rr_metric", start, end, vec![1]),
        None,
    )
    .await;
    assert_eq!(
        ctype,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let (_, from_prom) = remote_read(
        &c,
        &prom.url,
        read_request("rr_metric", start, end, vec![1]),
        None,
    )
    .await;
    let ours = streamed_chunks(&from_strata);
    let theirs = streamed_chunks(&from_prom);
    assert_eq!(ours.len(), 2, "two series");
    assert_eq!(
        ours.iter().map(|s| &s.0).collect::<Vec<_>>(),
        theirs.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for ((labels, a), (_, b)) in ours.iter().zip(&theirs) {
        // Our decoder reads Prometheus' encoder's chunks ...
        let decoded: Vec<Sample> = b
            .iter()
            .flat_map(|c| xor::decode(c).expect("decode"))
            .collect();
        let f = if labels.iter().any(|l| l == "job=b") {
            2
        } else {
            1
        };
        let want: Vec<Sample> = (0..n)
            .map(|i| Sample::new(start + i * STEP_MS, (i * f) as f64))
            .collect();
        assert_eq!(decoded, want, "{labels:?}: Prometheus' chunks");
        // ... and our encoder writes the same bytes.
        assert_eq!(a, b, "{labels:?}: chunk bytes differ from Prometheus'");
    }

    // SAMPLES, asked for explicitly, from both servers: the same series.
    let decode_samples = |bytes: &[u8]| -> Vec<Vec<(i64, f64)>> {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(bytes)
            .expect("snappy");
        let resp = ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
        resp.results[0]
            .timeseries
            .iter()
            .map(|t| t.samples.iter().map(|s| (s.timestamp, s.value)).collect())
            .collect()
    };
    let (ctype, a) = remote_read(
        &c,
        &strata.url,
        read_request("rr_metric", start, end, vec![0, 1]),
        None,
    )
    .await;
    assert_eq!(ctype, "application/x-protobuf");
    let (_, b) = remote_read(
        &c,
        &prom.url,
        read_request("rr_metric", start, end, vec![0, 1]),
        None,
    )
    .await;
    assert_eq!(decode_samples(&a), decode_samples(&b));
    assert_eq!(decode_samples(&a).len(), 2);

    // Bad requests are 400 with a message.
    let resp = c
        .post(format!("{}/api/v1/read", strata.url))
        .body("not snappy")
        .send()
        .await
        .expect("bad request");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap_or_default().contains("snappy"));
}
