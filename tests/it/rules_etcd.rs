//! The etcd rule-store backend against a real etcd (Debian `etcd-server`):
//! the rule-store conformance suite that the object-store backend passes in
//! unit tests, and `strata serve` with `--rules-backend etcd` end to end
//! (rules API, `strata rules`, `strata aggregate`, drop rules at ingest
//! picked up without a restart, `/metrics`, etcd going away).
//!
//! Needs `etcd` (`$ETCD_BIN`, `/usr/bin/etcd` or `PATH`); a missing etcd
//! fails these tests. `scripts/install-test-deps.sh` installs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::rule_store::conformance;
use aggregator::{RuleStore, RulesBackend, RulesConfig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use object_store::memory::InMemory;
use serde_json::{Value, json};
use strata_tests::Strata;
use strata_tests::process::{Proc, free_ports, strata_bin, wait_http_ok};
use strata_tests::promapi;
use strata_tests::remote_write::{self, now_ms};
use tempfile::TempDir;

use crate::{Scratch, client};

/// etcd: `$ETCD_BIN`, `/usr/bin/etcd` or `PATH`; panics with instructions.
fn etcd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin/etcd"))
        .chain(std::env::split_paths(&path).map(|d| d.join("etcd")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd not found (set ETCD_BIN or install it): run scripts/install-test-deps.sh \
                 (Debian package `etcd-server`)"
            )
        })
}

/// A single-member etcd on free loopback ports and a temporary data directory.
pub(crate) struct Etcd {
    pub(crate) proc: Proc,
    /// `http://127.0.0.1:PORT`
    pub(crate) endpoint: String,
    _dir: TempDir,
}

impl Etcd {
    pub(crate) async fn start(log_dir: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-etcd-")
            .tempdir()
            .expect("temp dir");
        let p = free_ports(2);
        let client = format!("http://127.0.0.1:{}", p[0]);
        let peer = format!("http://127.0.0.1:{}", p[1]);
        let mut cmd = Command::new(etcd_bin());
        cmd.arg("--name=it")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg("--logger=zap")
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=it={peer}"))
            // A single member needs no elections after its first; short
            // timings bring etcd's minimum lease TTL down to 1 s (from 2 s)
            // for the lease tests.
            .arg("--heartbeat-interval=20")
            .arg("--election-timeout=200");
        let mut proc = Proc::spawn("etcd", cmd, log_dir);
        wait_http_ok(
            &mut proc,
            &format!("{client}/health"),
            Duration::from_secs(30),
        )
        .await;
        Self {
            proc,
            endpoint: client,
            _dir: dir,
        }
    }

    /// The value of `key`, read through the JSON gateway.
    pub(crate) async fn get(&self, key: &str) -> Option<String> {
        let text = client()
            .post(format!("{}/v3/kv/range", self.endpoint))
            .body(json!({"key": B64.encode(key)}).to_string())
            .send()
            .await
            .expect("etcd range")
            .text()
            .await
            .expect("etcd range answer");
        let resp: Value = serde_json::from_str(&text).expect("etcd range JSON");
        let value = resp["kvs"][0]["value"].as_str()?;
        let bytes = B64.decode(value).expect("base64 value");
        Some(String::from_utf8(bytes).expect("utf-8 value"))
    }
}

fn etcd_config(endpoint: &str, prefix: &str) -> RulesConfig {
    RulesConfig {
        backend: RulesBackend::Etcd,
        etcd_endpoints: vec![endpoint.to_string()],
        etcd_prefix: prefix.to_string(),
        ..RulesConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_passes_the_conformance_suite() {
    let scratch = Scratch::new("rules-etcd-conformance");
    let etcd = Etcd::start(&scratch.path()).await;
    // Each case under its own prefix; instances of a case share it.
    let make = |case: &str| -> Arc<dyn RuleStore> {
        etcd_config(&etcd.endpoint, &format!("/conformance/{case}"))
            .build(Arc::new(InMemory::new()))
            .expect("etcd rule store")
    };
    conformance::run_all(&make).await;
    // The layout documented in docs/rules.md.
    assert_eq!(
        etcd.get("/conformance/tenants/heads/b.team-2").await,
        Some("1".into())
    );
    let v = etcd
        .get("/conformance/chain/versions/t/00000000000000000002")
        .await
        .expect("version 2 of tenant t");
    let v: Value = serde_json::from_str(&v).expect("JSON version");
    assert_eq!(v["version"], 2);
}

/// `strata ARGS...` to completion: (success, stdout, stderr).
fn run_cli(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(strata_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run strata");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn api(
    method: reqwest::Method,
    strata: &Strata,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, format!("{}{path}", strata.url));
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("rules API");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

async fn write_one(strata: &Strata, name: &str, seq: &str, t: i64) {
    let body = remote_write::encode(&remote_write::request(vec![remote_write::series(
        &[("__name__", name), ("seq", seq)],
        &[(t, 1.0)],
    )]));
    let (status, text) = remote_write::send(&client(), &strata.write_url(), body, None)
        .await
        .expect("send");
    assert_eq!(status, 204, "{text}");
}

async fn stored(strata: &Strata, name: &str, seq: &str, t: i64) -> bool {
    promapi::query(
        &client(),
        &strata.url,
        &format!("{name}{{seq=\"{seq}\"}}"),
        t,
        None,
    )
    .await
    .expect("query")
    .single_value()
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_rules_in_etcd() {
    let scratch = Scratch::new("rules-etcd-serve");
    let mut etcd = Etcd::start(&scratch.path()).await;
    let data = scratch.sub("data");
    let config = scratch.path().join("strata.toml");
    std::fs::write(
        &config,
        "[compact]\nevery = \"0s\"\n[aggregate]\nevery = \"0s\"\nrules_poll = \"500ms\"\n",
    )
    .expect("write the config");
    let endpoint = etcd.endpoint.clone();
    let rule_args = [
        "--rules-backend",
        "etcd",
        "--rules-etcd-endpoints",
        &endpoint,
        "--rules-etcd-prefix",
        "/e2e/rules",
    ];
    let (config_arg, data_arg) = (config.display().to_string(), data.display().to_string());
    let mut args = vec![
        "--config".to_string(),
        config_arg.clone(),
        "--storage".into(),
        "local".into(),
        "--data-dir".into(),
        data_arg.clone(),
    ];
    args.extend(rule_args.iter().map(|s| s.to_string()));
    let strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &scratch.path()).await;

    // A drop rule through the API: stored in etcd, not on the object store.
    let drop_debug = json!({"mapping_rules": [
        {"name": "no-debug", "filter": {"__name__": "debug_*"}, "drop": true}
    ]});
    let (status, body) = api(
        reqwest::Method::PUT,
        &strata,
        "/api/v1/rules",
        Some(drop_debug.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 1, "{body}");
    let (status, body) = api(reqwest::Method::GET, &strata, "/api/v1/rules", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["version"], 1);
    assert_eq!(
        body["data"]["rules"]["mapping_rules"][0]["name"], "no-debug",
        "{body}"
    );
    assert_eq!(etcd.get("/e2e/rules/heads/default").await, Some("1".into()));
    assert!(
        !data.join("_system/rules").exists(),
        "rules went to the object store"
    );
    // An invalid rule is a 400 naming the field, and writes nothing.
    let (status, body) = api(
        reqwest::Method::PUT,
        &strata,
        "/api/v1/rules",
        Some(json!({"mapping_rules": [{"name": "x", "filter": {"__name__": "x"}, "storage_policies": ["1m"]}]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("mapping_rules[0].storage_policies[0]")),
        "{body}"
    );

    // Ingest applies it from the first write of the tenant.
    let t = now_ms();
    write_one(&strata, "debug_x", "0", t).await;
    write_one(&strata, "kept_x", "0", t).await;
    assert!(stored(&strata, "kept_x", "0", t).await);
    assert!(!stored(&strata, "debug_x", "0", t).await);

    // `strata rules apply` (another process) commits version 2 without the
    // drop rule; `strata rules get` reads it back.
    let file = scratch.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[mapping_rules]]\nname = \"cpu\"\nfilter = { __name__ = \"cpu_*\" }\nstorage_policies = [\"1m:40d\"]\n",
    )
    .expect("write the rule file");
    let file = file.display().to_string();
    // Config flags go before the subcommand (`strata rules FLAGS apply`).
    let mut apply = vec!["rules"];
    apply.extend(rule_args);
    apply.extend(["apply", "-f", &file]);
    let (ok, out, err) = run_cli(&apply);
    assert!(ok, "strata rules apply: {out}{err}");
    assert!(out.contains("rule set version 2"), "{out}");
    let mut get = vec!["rules"];
    get.extend(rule_args);
    get.push("get");
    let (ok, out, err) = run_cli(&get);
    assert!(ok, "strata rules get: {out}{err}");
    let got: Value = serde_json::from_str(&out).expect("rules get prints JSON");
    assert_eq!(got["version"], 2);
    assert_eq!(got["rules"]["mapping_rules"][0]["name"], "cpu");
    let (status, body) = api(reqwest::Method::GET, &strata, "/api/v1/rules/history", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["versions"], json!([1, 2]));
    // `strata aggregate` reads its rules from etcd too: a closed window of
    // cpu_x is aggregated to 1m by version 2's rule, which the object
    // store (the default backend) does not have.
    let start = (now_ms() - 6 * 3_600_000).div_euclid(7_200_000) * 7_200_000;
    let samples: Vec<(i64, f64)> = (0..120).map(|i| (start + i * 60_000, i as f64)).collect();
    let body = remote_write::encode(&remote_write::request(vec![remote_write::series(
        &[("__name__", "cpu_x")],
        &samples,
    )]));
    let (status, text) = remote_write::send(&client(), &strata.write_url(), body, None)
        .await
        .expect("send");
    assert_eq!(status, 204, "{text}");
    let local = [
        "--config",
        &config_arg,
        "--storage",
        "local",
        "--data-dir",
        &data_arg,
    ];
    let (ok, out, err) = run_cli(&[&["aggregate"][..], &local].concat());
    assert!(ok, "strata aggregate: {out}{err}");
    assert_eq!(aggregated_blocks(&data), 0, "the object store has no rules");
    let (ok, out, err) = run_cli(&[&["aggregate"][..], &local, &rule_args].concat());
    assert!(ok, "strata aggregate with etcd rules: {out}{err}");
    assert!(aggregated_blocks(&data) > 0, "{err}");

    // A write based on version 1 is a conflict now.
    let (status, body) = api(
        reqwest::Method::PUT,
        &strata,
        "/api/v1/rules?version=1",
        Some(drop_debug),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    // The running server picks up version 2 without a restart: debug
    // series are stored again once its poll has seen it.
    let started = Instant::now();
    let mut seq = 0;
    loop {
        seq += 1;
        let s = seq.to_string();
        let t = now_ms();
        write_one(&strata, "debug_probe", &s, t).await;
        if stored(&strata, "debug_probe", &s, t).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the new rule set version never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The etcd requests are on /metrics.
    let metrics = metrics_text(&strata).await;
    assert!(
        counter(
            &metrics,
            r#"strata_rules_etcd_requests_total{op="txn",outcome="ok"}"#
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            r#"strata_rules_etcd_requests_total{op="range",outcome="ok"}"#
        ) >= 1.0,
        "{metrics}"
    );

    // etcd gone: the rules API answers 503 (not 500, no panic); ingest
    // keeps the rules it holds and still accepts writes.
    etcd.proc.kill();
    let (status, body) = api(reqwest::Method::GET, &strata, "/api/v1/rules", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "unavailable", "{body}");
    let t = now_ms();
    write_one(&strata, "kept_x", "1", t).await;
    assert!(stored(&strata, "kept_x", "1", t).await);
    let (ok, out, err) = run_cli(&get);
    assert!(!ok, "strata rules get without etcd: {out}");
    assert!(err.contains("etcd unavailable"), "{err}");
    let metrics = metrics_text(&strata).await;
    assert!(
        counter(
            &metrics,
            r#"strata_rules_etcd_requests_total{op="range",outcome="unreachable"}"#
        ) >= 1.0,
        "{metrics}"
    );
}

/// Blocks of the `1m` resolution of the default tenant on the local store.
fn aggregated_blocks(data: &Path) -> usize {
    std::fs::read_dir(data.join("tenants/default/blocks/1m"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn metrics_text(strata: &Strata) -> String {
    client()
        .get(format!("{}/metrics", strata.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the sample `name{labels}` (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_etcd_backend_without_endpoints_is_refused_at_start() {
    let (ok, out, err) = run_cli(&["rules", "--rules-backend", "etcd", "get"]);
    assert!(!ok, "{out}");
    assert!(err.contains("rules.etcd_endpoints"), "{err}");
}
