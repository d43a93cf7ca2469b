//! Object-store faults (issue 8, "Store faults"): 5xx, timeouts, connection
//! resets, slow writes and failures after the bytes were stored, injected by
//! `storage::failing_store::FailingStore` under ingest (group commit), queries
//! and compaction, in process over an in-memory store; and one end-to-end
//! test that kills and restarts the real SeaweedFS server under a
//! remote-write load (`seaweedfs_restart_under_load`).
//!
//! What must hold: a sender gets a 5xx only when its samples may not be
//! stored, and an acknowledgement only once they are; a retry after a lost
//! response never shows duplicates to queries; a query under read faults
//! fails or answers exactly as without faults; a compaction pass that
//! failed is resumed by the next one without losing or duplicating samples.

use std::sync::Arc;
use std::time::Duration;

use compactor::{Compactor, CompactorConfig, CompactorMetrics};
use ingest::{GroupCommitConfig, GroupCommitter, IngestMetrics};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use querier::promql::{Engine, Value};
use querier::queryable::TenantQueryable;
use storage::failing_store::{FailingStore, Fault, Faults};
use storage::{Labels, Sample, Series, Storage, TenantId, paths};

const H: i64 = 3_600_000;

fn tenant() -> TenantId {
    TenantId::new("faults").expect("tenant")
}

/// Request `k` of a sender: 5 series with 10 samples each, distinct times
/// per request.
fn request(k: i64) -> Vec<Series> {
    (0..5)
        .map(|s| Series {
            labels: Labels::from_pairs([("__name__", "m"), ("s", &s.to_string())]).expect("labels"),
            samples: (0..10)
                .map(|j| {
                    let t = k * 10 + j;
                    Sample::new(t * 15_000, (s * 1000 + t) as f64)
                })
                .collect(),
        })
        .collect()
}

/// Series as comparable data (value bits, so NaN compares).
fn flat(series: &[Series]) -> Vec<(String, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

/// What queries must see after `requests` were each stored once or more.
fn expected(requests: &[Vec<Series>]) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut all: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
    for r in requests {
        for s in r {
            all.entry(s.labels.clone())
                .or_default()
                .extend(s.samples.iter().copied());
        }
    }
    let series: Vec<Series> = all
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|x| x.t);
            samples.dedup_by_key(|x| x.t);
            Series { labels, samples }
        })
        .collect();
    flat(&series)
}

/// Everything a fresh reader (no caches) sees on `store`.
async fn read_all(store: Arc<dyn ObjectStore>) -> storage::error::Result<Vec<Series>> {
    Storage::new(store)
        .select(&tenant(), &[], i64::MIN, i64::MAX)
        .await
}

async fn segments(store: &InMemory) -> usize {
    use futures::TryStreamExt;
    let listed: Vec<_> = store
        .list(Some(&paths::segments_prefix(&tenant())))
        .try_collect()
        .await
        .expect("list");
    listed.len()
}

struct Ingest {
    inner: Arc<InMemory>,
    faults: Arc<Faults>,
    committer: GroupCommitter,
}

fn ingest() -> Ingest {
    let inner = Arc::new(InMemory::new());
    let (store, faults) = FailingStore::new(inner.clone());
    let committer = GroupCommitter::start(
        Storage::new(Arc::new(store)),
        GroupCommitConfig::default(),
        IngestMetrics::default(),
    );
    Ingest {
        inner,
        faults,
        committer,
    }
}

/// A put that fails without storing (5xx, timeout, connection reset) fails
/// the request with 503 and stores nothing; the sender's retry is stored
/// once. A slow put is acknowledged only after the object exists.
#[tokio::test]
async fn ingest_answers_503_only_when_nothing_was_stored() {
    for fault in [
        Fault::Unavailable,
        Fault::Timeout(Duration::from_millis(50)),
        Fault::ConnectionReset,
    ] {
        let ing = ingest();
        ing.faults.fail_next_puts(1, fault);
        let err = ing
            .committer
            .commit(tenant(), request(0))
            .await
            .expect_err("the put failed, so must the request");
        assert_eq!(err.status().as_u16(), 503, "{fault:?}: {err}");
        assert_eq!(segments(&ing.inner).await, 0, "{fault:?} stored something");
        assert!(read_all(ing.inner.clone()).await.expect("read").is_empty());

        ing.committer
            .commit(tenant(), request(0))
            .await
            .expect("the sender's retry");
        let got = read_all(ing.inner.clone()).await.expect("read");
        assert_eq!(flat(&got), expected(&[request(0)]), "{fault:?}");
    }

    let ing = ingest();
    ing.faults.slow_puts(Some(Duration::from_millis(200)));
    let inner = ing.inner.clone();
    let probe = tokio::spawn(async move {
        // While the put is delayed, nothing is stored (and nothing acked).
        tokio::time::sleep(Duration::from_millis(50)).await;
        segments(&inner).await
    });
    ing.committer
        .commit(tenant(), request(1))
        .await
        .expect("a slow put succeeds");
    assert_eq!(
        probe.await.expect("probe"),
        0,
        "stored before the put ended"
    );
    assert_eq!(segments(&ing.inner).await, 1);
}

/// The put stored the segment but its response was lost: the sender gets a
/// 503 and re-sends; the samples are then stored twice, and queries (raw
/// reads, PromQL, and reads after compaction) show each sample once.
#[tokio::test]
async fn a_lost_put_response_and_the_retry_show_no_duplicates() {
    let ing = ingest();
    ing.committer
        .commit(tenant(), request(0))
        .await
        .expect("first request");
    ing.faults.fail_next_puts(1, Fault::AfterStore);
    let err = ing
        .committer
        .commit(tenant(), request(1))
        .await
        .expect_err("the response was lost");
    assert_eq!(err.status().as_u16(), 503);
    assert_eq!(ing.faults.puts_stored_then_failed(), 1);
    ing.committer
        .commit(tenant(), request(1))
        .await
        .expect("the sender's retry");
    assert_eq!(segments(&ing.inner).await, 3, "request 1 is stored twice");

    let want = expected(&[request(0), request(1)]);
    let got = read_all(ing.inner.clone()).await.expect("read");
    assert_eq!(flat(&got), want);

    let q = TenantQueryable {
        storage: Storage::new(ing.inner.clone()),
        tenant: tenant(),
        warnings: Default::default(),
    };
    let Value::Vector(v) = Engine::default()
        .instant_query(&q, "sum(count_over_time(m[1h]))", 20 * 15_000)
        .await
        .expect("query")
    else {
        panic!("not a vector");
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].sample.v, 100.0, "5 series x 20 distinct samples");

    let c = Compactor::new(
        ing.inner.clone(),
        CompactorConfig::default(),
        CompactorMetrics::default(),
    );
    c.run_pass_at(10 * H).await.expect("compaction");
    let got = read_all(ing.inner.clone()).await.expect("read");
    assert_eq!(flat(&got), want, "after compaction");
}

/// Writes `n` requests straight to `store`, each as its own segment.
async fn load(store: Arc<dyn ObjectStore>, n: i64) -> Vec<Vec<Series>> {
    let storage = Storage::new(store);
    let mut out = Vec::new();
    for k in 0..n {
        let r = request(k);
        storage.write_segment(&tenant(), &r).await.expect("write");
        out.push(r);
    }
    out
}

/// Reads fail at every position of a query in turn (every `n`th object-store
/// read, for each kind of fault), over segments and over compacted blocks:
/// each query either fails or returns exactly the fault-free answer.
#[tokio::test]
async fn queries_under_read_faults_fail_or_answer_right() {
    let inner = Arc::new(InMemory::new());
    let requests = load(inner.clone(), 6).await;
    let want = expected(&requests);
    let engine = Engine::default();
    let promql = "sum by (s) (count_over_time(m[1h]))";
    let fault_free = |store: Arc<dyn ObjectStore>| {
        let engine = engine.clone();
        async move {
            let q = TenantQueryable {
                storage: Storage::new(store),
                tenant: tenant(),
                warnings: Default::default(),
            };
            engine.instant_query(&q, promql, 60 * 15_000).await
        }
    };
    let want_promql = fault_free(inner.clone()).await.expect("query");

    for stage in ["segments", "blocks and segments"] {
        if stage != "segments" {
            // Compact the first hours into blocks, then add fresh segments.
            let c = Compactor::new(
                inner.clone(),
                CompactorConfig::default(),
                CompactorMetrics::default(),
            );
            c.run_pass_at(10 * H).await.expect("compaction");
        }
        let (mut failed, mut answered) = (0, 0);
        for fault in [
            Fault::Unavailable,
            Fault::ConnectionReset,
            Fault::Timeout(Duration::from_millis(5)),
        ] {
            // From every read to (past) the last read of a query.
            for every in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 1000] {
                let (store, faults) = FailingStore::new(inner.clone());
                faults.fail_reads(Some((fault, every)));
                let store: Arc<dyn ObjectStore> = Arc::new(store);
                match read_all(store.clone()).await {
                    Ok(got) => {
                        assert_eq!(flat(&got), want, "{stage}: {fault:?} every {every}");
                        answered += 1;
                    }
                    Err(e) => {
                        assert!(faults.faults_injected() > 0, "error without a fault: {e}");
                        failed += 1;
                    }
                }
                faults.fail_reads(Some((fault, every)));
                match fault_free(store).await {
                    Ok(v) => assert_eq!(v, want_promql, "{stage}: PromQL, {fault:?} every {every}"),
                    Err(e) => assert!(
                        matches!(e, querier::promql::EvalError::Storage(_)),
                        "a store fault is a storage error, got {e}"
                    ),
                }
            }
        }
        // The faults did bite, and some reads got through them.
        assert!(
            failed > 0 && answered > 0,
            "{stage}: {failed} failed, {answered} answered"
        );

        let (store, faults) = FailingStore::new(inner.clone());
        faults.fail_lists(Some(Fault::Unavailable));
        assert!(read_all(Arc::new(store)).await.is_err(), "a failed listing");
    }
}

/// A compaction pass under put faults (block puts, manifest commits, a lost
/// manifest response) and read faults fails or finishes; queries meanwhile
/// see every sample once; the next pass without faults finishes the work.
#[tokio::test]
async fn compaction_resumes_after_store_faults() {
    let inner = Arc::new(InMemory::new());
    let requests = load(inner.clone(), 8).await;
    let want = expected(&requests);
    let (store, faults) = FailingStore::new(inner.clone());
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    let config = CompactorConfig {
        grace: Duration::from_secs(60),
        ..CompactorConfig::default()
    };
    let c = Compactor::new(store.clone(), config, CompactorMetrics::default());
    let mut now = 10 * H;
    let mut failed_passes = 0;
    type Arm = Box<dyn Fn(&Faults)>;
    let arms: Vec<(&str, Arm)> = vec![
        (
            "block put 5xx",
            Box::new(|f| f.put_fault_matching(Some("/blocks/"), Fault::Unavailable)),
        ),
        (
            "block put lost response",
            Box::new(|f| f.put_fault_matching(Some("/blocks/"), Fault::AfterStore)),
        ),
        (
            "manifest put reset",
            Box::new(|f| f.put_fault_matching(Some("/manifest/"), Fault::ConnectionReset)),
        ),
        (
            "manifest put lost response",
            Box::new(|f| f.put_fault_matching(Some("/manifest/"), Fault::AfterStore)),
        ),
        (
            "reads reset",
            Box::new(|f| f.fail_reads(Some((Fault::ConnectionReset, 2)))),
        ),
    ];
    for (what, arm) in &arms {
        arm(&faults);
        if c.run_pass_at(now).await.is_err() {
            failed_passes += 1;
        }
        faults.put_fault_matching(None, Fault::Unavailable);
        faults.fail_reads(None);
        let got = read_all(inner.clone()).await.expect("read");
        assert_eq!(flat(&got), want, "after a pass with {what}");
        // Past the lease TTL, so a lease left by the failed pass is free.
        now += 10 * 60_000;
    }
    assert!(failed_passes > 0, "no fault made a pass fail");
    for _ in 0..3 {
        c.run_pass_at(now).await.expect("a pass without faults");
        now += 10 * 60_000;
    }
    let got = read_all(inner.clone()).await.expect("read");
    assert_eq!(flat(&got), want, "after the faults are gone");
    let manifest = Storage::new(inner.clone())
        .manifest(&tenant())
        .await
        .expect("manifest");
    assert!(
        !manifest.manifest.blocks.is_empty(),
        "the resumed passes committed blocks"
    );
    // The segments are replaced: a reader finds every sample in blocks.
    let snap = Storage::new(inner.clone())
        .snapshot(&tenant())
        .await
        .expect("snapshot");
    assert!(
        snap.segments.is_empty(),
        "segments left: {}",
        snap.segments.len()
    );
}

mod seaweedfs {
    //! The real S3-compatible server dies (SIGKILL) and comes back on the
    //! same data directory and ports while senders write through Strata.

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use strata_tests::process::strata_bin;
    use strata_tests::remote_write::{self, encode, now_ms, request, series};
    use strata_tests::{Strata, Weed, promapi};

    use crate::{Scratch, client};

    const SENDERS: usize = 3;
    const SERIES: usize = 4;
    const SAMPLES: usize = 10;
    const STEP_MS: i64 = 100;

    fn points(t0: i64, sender: usize, k: usize) -> Vec<(String, Vec<(i64, f64)>)> {
        (0..SERIES)
            .map(|s| {
                let pts = (0..SAMPLES)
                    .map(|j| {
                        let i = (k * SAMPLES + j) as i64;
                        (
                            t0 + i * STEP_MS,
                            (sender * 100_000 + s * 1000) as f64 + i as f64,
                        )
                    })
                    .collect();
                (format!("{sender}-{s}"), pts)
            })
            .collect()
    }

    fn body(t0: i64, sender: usize, k: usize) -> Vec<u8> {
        let ts = points(t0, sender, k)
            .into_iter()
            .map(|(id, pts)| series(&[("__name__", "s3_restart"), ("series", &id)], &pts))
            .collect();
        encode(&request(ts))
    }

    fn expected(t0: i64, reqs: &BTreeSet<(usize, usize)>) -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
        for &(sender, k) in reqs {
            for (id, pts) in points(t0, sender, k) {
                out.entry(format!(r#"{{__name__="s3_restart", series="{id}"}}"#))
                    .or_default()
                    .extend(pts);
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|p| p.0);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_samples_survive_an_s3_server_restart_under_load() {
        let scratch = Scratch::new("s3-restart");
        let logs = scratch.sub("logs");
        let mut weed = Weed::start("strata", &logs).await;
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
        let strata = Strata::start(&strata_bin(), args, envs, &logs).await;
        let t0 = now_ms() - 30 * 60_000;
        let write_url = strata.write_url();

        // Senders write request after request; each remembers what was
        // acknowledged (204) and what was not (error, 5xx or timeout).
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let unacked = Arc::new(Mutex::new(BTreeSet::new()));
        let mut tasks = Vec::new();
        for sender in 0..SENDERS {
            let (stop, acked, unacked, url) = (
                stop.clone(),
                acked.clone(),
                unacked.clone(),
                write_url.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    let ok = matches!(
                        remote_write::send(&http, &url, body(t0, sender, k), None).await,
                        Ok((204, _))
                    );
                    let set = if ok { &acked } else { &unacked };
                    set.lock().expect("lock").insert((sender, k));
                    k += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        let count = |s: &Arc<Mutex<BTreeSet<(usize, usize)>>>| s.lock().expect("lock").len();
        let wait_acked = |n: usize| {
            let acked = acked.clone();
            async move {
                for _ in 0..600 {
                    if acked.lock().expect("lock").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("fewer than {n} requests acknowledged within 30 s");
            }
        };
        wait_acked(20).await;
        let before = count(&acked);
        weed.kill_and_restart().await;
        // Writes succeed again after the restart.
        wait_acked(before + 20).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.expect("sender");
        }
        let acked = acked.lock().expect("lock").clone();
        let unacked = unacked.lock().expect("lock").clone();
        eprintln!(
            "{} requests acknowledged, {} not",
            acked.len(),
            unacked.len()
        );

        let http = client();
        let query = |at: i64| {
            let http = http.clone();
            let url = strata.url.clone();
            async move {
                promapi::query(&http, &url, "s3_restart[1h]", at, None)
                    .await
                    .unwrap_or_else(|e| panic!("query after the restart: {e:#}"))
            }
        };
        let got = query(now_ms()).await;
        for (labels, pts) in expected(t0, &acked) {
            let have: BTreeMap<i64, f64> = got
                .series
                .get(&labels)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            for (t, v) in pts {
                assert!(
                    have.get(&t).is_some_and(|h| promapi::approx_eq(*h, v)),
                    "acknowledged sample lost: {labels} at {t} (expected {v}, got {:?})",
                    have.get(&t)
                );
            }
        }

        // The senders re-send what was not acknowledged: then every sample
        // is there exactly once.
        for &(sender, k) in &unacked {
            let (code, text) = remote_write::send(&http, &write_url, body(t0, sender, k), None)
                .await
                .expect("re-send");
            assert_eq!(code, 204, "re-send of ({sender}, {k}): {text}");
        }
        let all: BTreeSet<_> = acked.union(&unacked).copied().collect();
        let got = query(now_ms()).await;
        assert_eq!(got.series, expected(t0, &all), "every sample exactly once");
    }
}
