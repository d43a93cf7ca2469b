//! Crash test: several senders write steadily while Strata (with compaction
//! running every second) is killed with SIGKILL at pseudo-random moments
//! (fixed seed) and restarted on the same data directory. Every acknowledged
//! sample must be queryable after each restart; after the senders re-send
//! what was not acknowledged, every sample is there exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi;
use strata_tests::remote_write::{self, encode, now_ms, request, series};
use tokio::sync::{Mutex, RwLock};

use crate::{Scratch, client};

const SENDERS: usize = 4;
const SERIES_PER_SENDER: usize = 10;
const SAMPLES_PER_SERIES: usize = 20;
const KILLS: usize = 4;
const SEED: u64 = 0x5eed_2026;
/// Spacing of samples within one series (ms).
const STEP_MS: i64 = 50;

/// A small deterministic generator (xorshift), so kill points repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The samples of request `k` of `sender`, per series label string.
fn request_points(t0: i64, sender: usize, k: usize) -> Vec<(String, Vec<(i64, f64)>)> {
    (0..SERIES_PER_SENDER)
        .map(|s| {
            let pts = (0..SAMPLES_PER_SERIES)
                .map(|j| {
                    let i = (k * SAMPLES_PER_SERIES + j) as i64;
                    (
                        t0 + i * STEP_MS,
                        (sender * 1_000_000 + s * 10_000) as f64 + i as f64 * 0.5,
                    )
                })
                .collect();
            (format!("{sender}-{s}"), pts)
        })
        .collect()
}

fn body(t0: i64, sender: usize, k: usize) -> Vec<u8> {
    let ts = request_points(t0, sender, k)
        .into_iter()
        .map(|(id, pts)| series(&[("__name__", "crash_test"), ("series", &id)], &pts))
        .collect();
    encode(&request(ts))
}

fn label_key(id: &str) -> String {
    format!(r#"{{__name__="crash_test", series="{id}"}}"#)
}

/// Expected samples of the given (sender, request) pairs.
fn expected(t0: i64, requests: &BTreeSet<(usize, usize)>) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for &(sender, k) in requests {
        for (id, pts) in request_points(t0, sender, k) {
            out.entry(label_key(&id)).or_default().extend(pts);
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    out
}

/// Every sample of `want` is in Strata's answer (extra samples allowed).
fn contains_all(
    got: &promapi::QueryResult,
    want: &BTreeMap<String, Vec<(i64, f64)>>,
) -> Result<(), String> {
    for (labels, pts) in want {
        let have: BTreeMap<i64, f64> = got
            .series
            .get(labels)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        for (t, v) in pts {
            match have.get(t) {
                Some(h) if promapi::approx_eq(*h, *v) => {}
                other => return Err(format!("{labels} at {t}: expected {v}, got {other:?}")),
            }
        }
    }
    Ok(())
}

async fn query_all(url: &str, at: i64) -> promapi::QueryResult {
    promapi::query(&client(), url, "crash_test[30m]", at, None)
        .await
        .unwrap_or_else(|e| panic!("query after restart: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_sigkill_under_load() {
    let scratch = Scratch::new("crash");
    let data = scratch.sub("data");
    // Compaction every second with a short grace period, so kills also land
    // in the middle of compaction passes.
    let config = scratch.path().join("strata.toml");
    std::fs::write(&config, "[compact]\nevery = \"1s\"\ngrace = \"2s\"\n").expect("config");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        data.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;
    let url = Arc::new(RwLock::new(strata.write_url()));
    let t0 = now_ms() - 20 * 60_000;
    let acked: Arc<Mutex<BTreeSet<(usize, usize)>>> = Arc::default();
    let unacked: Arc<Mutex<BTreeSet<(usize, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    let mut senders = Vec::new();
    for sender in 0..SENDERS {
        let (url, acked, unacked, stop) =
            (url.clone(), acked.clone(), unacked.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let c = client();
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                let target = url.read().await.clone();
                let ok = matches!(
                    remote_write::send(&c, &target, body(t0, sender, k), None).await,
                    Ok((204, _))
                );
                if ok { &acked } else { &unacked }
                    .lock()
                    .await
                    .insert((sender, k));
                k += 1;
                tokio::time::sleep(Duration::from_millis(if ok { 10 } else { 50 })).await;
            }
        }));
    }

    let mut strata = strata;
    let mut rng = Rng(SEED);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rng.next() % 1200)).await;
        // Hold the URL while restarting: senders wait instead of spinning.
        let mut u = url.write().await;
        let before_kill: BTreeSet<(usize, usize)> = acked.lock().await.clone();
        strata.kill9_and_restart().await;
        *u = strata.write_url();
        drop(u);
        let got = query_all(&strata.url, now_ms()).await;
        if let Err(e) = contains_all(&got, &expected(t0, &before_kill)) {
            panic!("after kill {kill}: an acknowledged sample is missing: {e}");
        }
    }
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.expect("sender");
    }

    // Re-send what was not acknowledged, as Prometheus would.
    let c = client();
    let resend: Vec<(usize, usize)> = unacked.lock().await.iter().copied().collect();
    for &(sender, k) in &resend {
        let (status, text) = remote_write::send(&c, &strata.write_url(), body(t0, sender, k), None)
            .await
            .expect("re-send");
        assert_eq!(status, 204, "re-send: {text}");
    }
    let all: BTreeSet<(usize, usize)> = acked
        .lock()
        .await
        .union(&*unacked.lock().await)
        .copied()
        .collect();
    assert!(acked.lock().await.len() > 20, "the senders barely wrote");
    assert!(
        !resend.is_empty() || KILLS == 0,
        "no request was ever refused: kills missed"
    );

    // Every sample exactly once: the answer equals the expectation.
    let got = query_all(&strata.url, now_ms()).await;
    let want = promapi::QueryResult {
        result_type: "matrix".to_string(),
        series: expected(t0, &all),
    };
    if let Some(d) = got.diff(&want) {
        panic!("after re-sending, samples are missing or duplicated:\n{d}");
    }
}
