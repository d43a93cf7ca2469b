//! Job leases in etcd (`[leases] backend = "etcd"`) against a real etcd
//! (Debian `etcd-server`, started as in `rules_etcd`): the lease
//! conformance suite that the object-store backend passes in unit tests,
//! etcd's side of it (keys, revocation, a key deleted by hand), and
//! `strata aggregate` processes taking their leases in etcd: two at once
//! never aggregate the same window twice and leave exactly the blocks one
//! aggregator alone leaves; a lease held in etcd makes them skip its shard;
//! two `strata compact` and then `strata serve`'s compaction timer on etcd
//! leases leave every query answer as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use storage::TenantId;
use storage::etcd::{EtcdMetrics, Gateway};
use storage::lease::conformance::{self, RealClock};
use storage::lease::{LeaseBackend, LeasesBackend, LeasesConfig};
use strata_tests::Strata;
use strata_tests::process::strata_bin;

use crate::Scratch;
use crate::aggregation::{
    aggregate, closed_start, copy_dir, live_blocks, load, local_args, put_rules, rules,
    spawn_aggregate,
};
use crate::compaction;
use crate::rules_etcd::Etcd;

const H: i64 = 3_600_000;

fn leases(endpoint: &str, prefix: &str) -> Arc<dyn LeaseBackend> {
    LeasesConfig {
        backend: LeasesBackend::Etcd,
        etcd_endpoints: vec![endpoint.to_string()],
        etcd_prefix: prefix.to_string(),
        ..LeasesConfig::default()
    }
    .build(EtcdMetrics::default())
    .expect("etcd lease backend")
    .expect("not the object store")
}

/// Keys under `prefix` in etcd.
async fn keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let gw = Gateway::new(
        &[endpoint.to_string()],
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .expect("client");
    gw.range(prefix.as_bytes(), true, true)
        .await
        .expect("range")
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_passes_the_lease_conformance_suite() {
    let scratch = Scratch::new("leases-etcd-conformance");
    let etcd = Etcd::start(&scratch.path()).await;
    let backend = leases(&etcd.endpoint, "/conformance/leases");
    conformance::run_all(backend.as_ref(), &RealClock).await;
    // Every case released what it held: revoking deleted the keys.
    assert_eq!(
        keys(&etcd.endpoint, "/conformance/leases/").await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leases_are_keys_under_etcd_leases() {
    let scratch = Scratch::new("leases-etcd-keys");
    let mut etcd = Etcd::start(&scratch.path()).await;
    let backend = leases(&etcd.endpoint, "/strata/leases/");
    let t = TenantId::new("team").expect("tenant");
    let now = conformance::SuiteClock::now_ms(&RealClock);
    // The layout documented in docs/operations.md.
    let mut held = backend
        .try_acquire("compactor", &t, "1700000000000", "owner-1", 60_000, now)
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(
        etcd.get("/strata/leases/compactor/team/1700000000000")
            .await,
        Some("owner-1".into())
    );
    assert!(held.renew(now).await.expect("renew"));
    // Someone deletes the key by hand (etcdctl del): the holder learns on
    // its next renewal that it does not hold the lease any more, although
    // its etcd lease is alive.
    let gw = Gateway::new(
        &[etcd.endpoint.clone()],
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .expect("client");
    let deleted = crate::client()
        .post(format!("{}/v3/kv/deleterange", etcd.endpoint))
        .body(format!(
            r#"{{"key":"{}"}}"#,
            B64.encode("/strata/leases/compactor/team/1700000000000")
        ))
        .send()
        .await
        .expect("deleterange");
    assert!(deleted.status().is_success());
    assert!(
        gw.range(b"/strata/leases/compactor/team/1700000000000", false, false)
            .await
            .expect("range")
            .is_empty()
    );
    assert!(!held.renew(now).await.expect("renew"), "the key is gone");
    held.release().await.expect("release");
    // Another owner takes it, then etcd goes away: an error, not a panic,
    // and no lease.
    let other = backend
        .try_acquire("compactor", &t, "1700000000000", "owner-2", 60_000, now)
        .await
        .expect("acquire")
        .expect("free again");
    drop(other);
    etcd.proc.kill();
    let e = backend
        .try_acquire("compactor", &t, "1", "owner-3", 60_000, now)
        .await
        .expect_err("etcd is down");
    assert!(e.to_string().contains("etcd unavailable"), "{e}");
}

/// Jobs off (they run as separate processes), fast rule polling, a short
/// lease TTL (a held lease in etcd is seen, a crashed one frees quickly),
/// and four shards so that two aggregators have leases to share.
fn write_config(scratch: &Scratch) -> std::path::PathBuf {
    let path = scratch.path().join("strata.toml");
    std::fs::write(
        &path,
        r#"
[compact]
every = "0s"

[aggregate]
every = "0s"
rules_poll = "1s"
lease_ttl = "2s"
max_windows_per_pass = 1000
window = "2h"
shards = 4
"#,
    )
    .expect("write the config");
    path
}

/// The figures of the `aggregation pass done` line of a log.
fn pass_figures(log: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(log).expect("log");
    let line = text
        .lines()
        .find(|l| l.contains("aggregation pass done"))
        .unwrap_or_else(|| panic!("no pass in {}:\n{text}", log.display()));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregators_with_etcd_leases_never_share_a_shard() {
    let scratch = Scratch::new("leases-etcd-aggregators");
    let etcd = Etcd::start(&scratch.path()).await;
    let config = write_config(&scratch);
    let data = scratch.sub("data");
    let args = local_args(&config, &data);
    let mut strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &scratch.path()).await;
    let t0 = closed_start() - 12 * H;
    load(&strata, "team", t0, t0 + 16 * H, 15_000, 2 * H).await;
    put_rules(&strata, "team", rules()).await;
    strata.proc.kill();
    let dirs: Vec<std::path::PathBuf> = ["reference", "two", "held"]
        .iter()
        .map(|n| {
            let d = scratch.path().join(n);
            copy_dir(&data, &d);
            d
        })
        .collect();
    let prefix = "/e2e/leases";
    let with_etcd = |d: &Path| {
        let mut a = local_args(&config, d);
        a.extend(
            [
                "--leases-backend",
                "etcd",
                "--leases-etcd-endpoints",
                &etcd.endpoint,
                "--leases-etcd-prefix",
                prefix,
            ]
            .map(String::from),
        );
        a
    };
    let log = |n: &str| scratch.path().join(format!("{n}.log"));

    // Reference: one aggregator alone, leases on the object store.
    aggregate(&local_args(&config, &dirs[0]), &[], &log("reference"));
    let reference = live_blocks(&dirs[0], "team", "1m");
    let ref_windows = pass_figures(&log("reference"))["windows"];
    assert!(ref_windows >= 8 && !reference.is_empty(), "{ref_windows}");

    // Two at once with etcd leases: each shard's lease is held by one of
    // them at a time, and whoever takes it after the other finds that
    // one's checkpoint, so between them every window is aggregated exactly
    // once. A shard one of them skipped (held by the other) is left for a
    // later run.
    let mut a = spawn_aggregate(&with_etcd(&dirs[1]), &[], &log("two-a"));
    let mut b = spawn_aggregate(&with_etcd(&dirs[1]), &[], &log("two-b"));
    assert!(a.wait().expect("wait").success());
    assert!(b.wait().expect("wait").success());
    let mut runs = vec![pass_figures(&log("two-a")), pass_figures(&log("two-b"))];
    for i in 0..10 {
        if live_blocks(&dirs[1], "team", "1m").len() == reference.len() {
            break;
        }
        let n = format!("two-again-{i}");
        aggregate(&with_etcd(&dirs[1]), &[], &log(&n));
        runs.push(pass_figures(&log(&n)));
    }
    eprintln!("passes: {runs:?}");
    let windows: u64 = runs.iter().map(|f| f["windows"]).sum();
    assert_eq!(windows, ref_windows, "each window exactly once: {runs:?}");
    assert_eq!(live_blocks(&dirs[1], "team", "1m"), reference);
    assert!(
        !dirs[1].join("_system/leases").exists(),
        "leases went to the object store"
    );
    assert_eq!(
        keys(&etcd.endpoint, prefix).await,
        Vec::<String>::new(),
        "released leases leave no keys"
    );

    // A lease held in etcd (another aggregator, as far as they know) makes
    // the aggregator leave that shard alone; released, the next run does it.
    let backend = leases(&etcd.endpoint, prefix);
    let team = TenantId::new("team").expect("tenant");
    let now = conformance::SuiteClock::now_ms(&RealClock);
    let held = backend
        .try_acquire("aggregator", &team, "1m-2", "someone-else", 600_000, now)
        .await
        .expect("acquire")
        .expect("free");
    aggregate(&with_etcd(&dirs[2]), &[], &log("held"));
    let f = pass_figures(&log("held"));
    assert_eq!(f["lease_skips"], 1, "{f:?}");
    assert!(f["windows"] < ref_windows, "{f:?}");
    assert!(live_blocks(&dirs[2], "team", "1m").len() < reference.len());
    held.release().await.expect("release");
    aggregate(&with_etcd(&dirs[2]), &[], &log("released"));
    let g = pass_figures(&log("released"));
    assert_eq!(g["lease_skips"], 0, "{g:?}");
    assert_eq!(f["windows"] + g["windows"], ref_windows, "{f:?} {g:?}");
    assert_eq!(live_blocks(&dirs[2], "team", "1m"), reference);
}

/// The value of the sample `series` in a `/metrics` text (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactors_with_etcd_leases_keep_every_answer() {
    let scratch = Scratch::new("leases-etcd-compactors");
    let etcd = Etcd::start(&scratch.path()).await;
    let data = scratch.sub("data");
    let logs = scratch.sub("logs");
    let config = scratch.path().join("strata.toml");
    std::fs::write(&config, "[compact]\nevery = \"0s\"\ngrace = \"1h\"\n").expect("config");
    let prefix = "/e2e/compactor-leases";
    let args: Vec<String> = [
        "--storage",
        "local",
        "--data-dir",
        &data.display().to_string(),
        "--config",
        &config.display().to_string(),
        "--leases-backend",
        "etcd",
        "--leases-etcd-endpoints",
        &etcd.endpoint,
        "--leases-etcd-prefix",
        prefix,
    ]
    .map(String::from)
    .to_vec();
    let mut strata = Strata::start(&strata_bin(), args.clone(), Vec::new(), &logs).await;
    let start = (strata_tests::remote_write::now_ms() - 2 * 24 * H) / H * H;
    let end = start + 30 * H;
    compaction::load(&strata, start).await;
    let before = compaction::answers(&strata.url, start, end).await;

    // Two one-shot compactors at once, leases in etcd.
    let spawn = |n: &str| {
        let log = std::fs::File::create(logs.join(format!("{n}.log"))).expect("log");
        let mut cmd = std::process::Command::new(strata_bin());
        cmd.arg("compact")
            .args(&args)
            .stderr(log.try_clone().expect("log"))
            .stdout(log);
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATA_") {
                cmd.env_remove(k);
            }
        }
        cmd.spawn().expect("strata compact")
    };
    let (mut a, mut b) = (spawn("compact-a"), spawn("compact-b"));
    assert!(a.wait().expect("wait").success(), "compactor a failed");
    assert!(b.wait().expect("wait").success(), "compactor b failed");
    let passes = |n: &str| {
        std::fs::read_to_string(logs.join(format!("{n}.log")))
            .expect("log")
            .lines()
            .filter(|l| l.contains("compaction pass done"))
            .count()
    };
    assert!(passes("compact-a") >= 1 && passes("compact-b") >= 1);
    assert!(
        std::fs::read_dir(data.join("tenants/default/blocks/raw")).map_or(0, |d| d.count()) >= 2,
        "the compactors built blocks"
    );
    assert_eq!(
        compaction::answers(&strata.url, start, end).await,
        before,
        "answers changed by two compactors at once"
    );
    assert!(
        !data.join("_system/leases").exists(),
        "leases went to the object store"
    );
    assert_eq!(keys(&etcd.endpoint, prefix).await, Vec::<String>::new());

    // (A grace period of an hour: nothing is deleted under a query whose
    // reused listing, `query.view_max_age`, predates a compaction.)
    // Older data, then serve's own compaction timer, on etcd leases too:
    // its etcd requests are on /metrics, the answers stay.
    let older = start - 3 * 24 * H;
    compaction::load(&strata, older).await;
    let before_old = compaction::answers(&strata.url, older, older + 30 * H).await;
    std::fs::write(&config, "[compact]\nevery = \"1s\"\ngrace = \"1h\"\n").expect("config");
    strata.kill9_and_restart().await;
    let started = std::time::Instant::now();
    loop {
        let metrics = crate::client()
            .get(format!("{}/metrics", strata.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let granted = sample(
            &metrics,
            r#"strata_leases_etcd_requests_total{op="lease_grant",outcome="ok"}"#,
        );
        let revoked = sample(
            &metrics,
            r#"strata_leases_etcd_requests_total{op="lease_revoke",outcome="ok"}"#,
        );
        let blocks = sample(&metrics, "strata_compactor_blocks_written_total");
        if granted >= 1.0 && revoked >= 1.0 && blocks >= 1.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve's compactor never took an etcd lease: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        compaction::answers(&strata.url, older, older + 30 * H).await,
        before_old
    );
    let after = compaction::answers(&strata.url, start, end).await;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "answer {i} changed after serve's compaction");
    }
}
