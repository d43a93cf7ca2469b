use std::time::Duration;

use storage::failing_store::{FailingStore, Faults};
use storage::{Labels, Matcher, Sample};

use super::*;

fn setup(cfg: GroupCommitConfig) -> (GroupCommitter, Storage, Arc<Faults>) {
    let (store, faults) = FailingStore::new(Arc::new(object_store::memory::InMemory::new()));
    let storage = Storage::new(Arc::new(store));
    (
        GroupCommitter::start(storage.clone(), cfg, IngestMetrics::default()),
        storage,
        faults,
    )
}

fn one(name: &str, t: i64) -> Vec<Series> {
    vec![Series {
        labels: Labels::from_pairs([("__name__", name)]).expect("labels"),
        samples: vec![Sample::new(t, 1.0)],
    }]
}

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn stored(storage: &Storage) -> usize {
    let all = [Matcher::new(storage::MatchOp::Regex, "__name__", ".+").expect("matcher")];
    storage
        .select(&tenant(), &all, i64::MIN, i64::MAX)
        .await
        .expect("select")
        .len()
}

/// One put per tenant at a time, and no sealing by age: the classic group
/// commit contract, observable step by step.
fn slow_age() -> GroupCommitConfig {
    GroupCommitConfig {
        batch_max_age: Duration::from_secs(3600),
        puts_per_tenant: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn nothing_is_acknowledged_before_its_put_completes() {
    let (gc, storage, faults) = setup(slow_age());
    faults.hold_puts(true);
    let req = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("a", 1)).await }
    });
    eventually("the put to start", || faults.puts_started() == 1).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !req.is_finished(),
        "acknowledged while its put is still held"
    );
    assert_eq!(faults.puts_completed(), 0);
    faults.hold_puts(false);
    req.await.expect("join").expect("commit");
    assert_eq!(faults.puts_completed(), 1);
    assert_eq!(stored(&storage).await, 1);
}

#[tokio::test]
async fn requests_arriving_during_a_put_share_the_next_segment() {
    let (gc, storage, faults) = setup(slow_age());
    faults.hold_puts(true);
    let first = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("first", 1)).await }
    });
    eventually("the first put to start", || faults.puts_started() == 1).await;
    let rest: Vec<_> = (0..5)
        .map(|i| {
            let gc = gc.clone();
            tokio::spawn(async move { gc.commit(tenant(), one(&format!("m{i}"), 1)).await })
        })
        .collect();
    // The five wait in one open batch behind the held put.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(faults.puts_started(), 1);
    faults.hold_puts(false);
    first.await.expect("join").expect("first");
    for r in rest {
        r.await.expect("join").expect("rest");
    }
    assert_eq!(
        faults.puts_completed(),
        2,
        "one segment for the first request, one for the other five"
    );
    assert_eq!(stored(&storage).await, 6);
}

#[tokio::test]
async fn a_failed_put_fails_every_request_of_its_batch() {
    let (gc, storage, faults) = setup(slow_age());
    faults.fail_puts(true);
    faults.hold_puts(true);
    let first = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("first", 1)).await }
    });
    eventually("the first put to start", || faults.puts_started() == 1).await;
    let batch: Vec<_> = (0..3)
        .map(|i| {
            let gc = gc.clone();
            tokio::spawn(async move { gc.commit(tenant(), one(&format!("m{i}"), 1)).await })
        })
        .collect();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    faults.hold_puts(false);
    let err = first.await.expect("join").expect_err("put failed");
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    for r in batch {
        assert!(matches!(r.await.expect("join"), Err(IngestError::Store(_))));
    }
    assert_eq!(faults.puts_completed(), 0);
    assert_eq!(stored(&storage).await, 0);

    // The store recovers: the next request is stored and acknowledged.
    faults.fail_puts(false);
    gc.commit(tenant(), one("later", 1))
        .await
        .expect("commit after recovery");
    assert_eq!(stored(&storage).await, 1);
}

#[tokio::test]
async fn batches_are_sealed_by_size_and_by_age_while_a_put_is_in_flight() {
    // By size: every request exceeds the byte limit, so each is sealed at once.
    let (gc, _, faults) = setup(GroupCommitConfig {
        batch_max_bytes: 1,
        ..slow_age()
    });
    faults.hold_puts(true);
    let reqs: Vec<_> = (0..3)
        .map(|i| {
            let gc = gc.clone();
            tokio::spawn(async move { gc.commit(tenant(), one(&format!("m{i}"), 1)).await })
        })
        .collect();
    eventually("three puts in flight", || faults.puts_started() == 3).await;
    faults.hold_puts(false);
    for r in reqs {
        r.await.expect("join").expect("commit");
    }

    // By age: a request behind a held put is sealed once batch_max_age passes.
    let (gc, _, faults) = setup(GroupCommitConfig {
        batch_max_age: Duration::from_millis(20),
        ..Default::default()
    });
    faults.hold_puts(true);
    let a = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("a", 1)).await }
    });
    eventually("the first put", || faults.puts_started() == 1).await;
    let b = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("b", 1)).await }
    });
    eventually("the second put, sealed by age", || {
        faults.puts_started() == 2
    })
    .await;
    faults.hold_puts(false);
    a.await.expect("join").expect("a");
    b.await.expect("join").expect("b");
}

#[tokio::test]
async fn puts_per_tenant_bounds_concurrent_segments_of_a_tenant() {
    let (gc, storage, faults) = setup(GroupCommitConfig {
        puts_per_tenant: 2,
        ..slow_age()
    });
    faults.hold_puts(true);
    let spawn = |name: &'static str| {
        let gc = gc.clone();
        tokio::spawn(async move { gc.commit(tenant(), one(name, 1)).await })
    };
    let a = spawn("a");
    eventually("the first put", || faults.puts_started() == 1).await;
    let b = spawn("b");
    eventually("a second put beside the first", || {
        faults.puts_started() == 2
    })
    .await;
    let c = spawn("c");
    let d = spawn("d");
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        faults.puts_started(),
        2,
        "both slots busy: c and d wait together"
    );
    faults.hold_puts(false);
    for r in [a, b, c, d] {
        r.await.expect("join").expect("commit");
    }
    assert_eq!(faults.puts_completed(), 3);
    assert_eq!(stored(&storage).await, 4);
}

fn metadata(name: &str) -> Sidecar {
    Sidecar {
        metadata: vec![storage::sidecar::MetricMetadata {
            metric_family_name: name.into(),
            metric_type: storage::sidecar::MetricType::Gauge,
            help: "h".into(),
            unit: String::new(),
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_sidecar_is_written_with_its_batch_and_a_failed_one_fails_the_batch() {
    let (gc, storage, faults) = setup(slow_age());
    // Floats and metadata together: two objects, one acknowledgement.
    gc.commit_with_sidecar(tenant(), one("a", 1), metadata("a"))
        .await
        .expect("commit");
    assert_eq!(faults.puts_completed(), 2);
    assert_eq!(stored(&storage).await, 1);
    assert_eq!(
        storage.metadata(&tenant()).await.expect("metadata").len(),
        1
    );
    // Metadata this process stored lately is not stored again: senders
    // repeat it with every request (2.0) or every minute (1.0).
    gc.commit_with_sidecar(tenant(), one("a", 2), metadata("a"))
        .await
        .expect("commit");
    assert_eq!(faults.puts_completed(), 3, "a segment, no second sidecar");
    // Metadata alone writes no segment.
    gc.commit_with_sidecar(tenant(), Vec::new(), metadata("b"))
        .await
        .expect("commit");
    assert_eq!(faults.puts_completed(), 4);
    assert_eq!(
        storage.metadata(&tenant()).await.expect("metadata").len(),
        2
    );

    // The segment is stored but the sidecar put fails: the request is not
    // acknowledged (the client retries; reads dedupe the retry).
    faults.fail_puts_matching(Some("/sidecars/"));
    let err = gc
        .commit_with_sidecar(tenant(), one("c", 1), metadata("c"))
        .await
        .expect_err("sidecar put failed");
    assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !storage
            .metadata(&tenant())
            .await
            .expect("metadata")
            .contains_key("c")
    );
}

/// A batch with a free put slot waits for requests still on their way
/// (announced with `arrive`), so concurrent senders share one segment; it
/// is still acknowledged only after that segment's put completes, and a
/// failed put fails all of them.
#[tokio::test]
async fn a_free_slot_waits_for_requests_still_arriving() {
    let (gc, storage, faults) = setup(slow_age());
    let decoding = gc.arrive();
    let early = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("early", 1)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        faults.puts_started(),
        0,
        "sealed while a request was still arriving"
    );
    assert!(!early.is_finished());
    faults.hold_puts(true);
    let late = tokio::spawn({
        let gc = gc.clone();
        async move {
            gc.commit_arrived(decoding, tenant(), one("late", 1), Sidecar::default())
                .await
        }
    });
    eventually("the shared put to start", || faults.puts_started() == 1).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !early.is_finished() && !late.is_finished(),
        "acknowledged while their put is still held"
    );
    faults.hold_puts(false);
    early.await.expect("join").expect("early");
    late.await.expect("join").expect("late");
    assert_eq!(faults.puts_completed(), 1, "one segment for both requests");
    assert_eq!(stored(&storage).await, 2);

    // The same wait, then a failed put: both requests fail.
    faults.fail_puts(true);
    let decoding = gc.arrive();
    let early = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("early2", 1)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        faults.puts_started(),
        1,
        "no put while a request is arriving"
    );
    let late = gc
        .commit_arrived(decoding, tenant(), one("late2", 1), Sidecar::default())
        .await;
    assert!(matches!(late, Err(IngestError::Store(_))));
    assert!(matches!(
        early.await.expect("join"),
        Err(IngestError::Store(_))
    ));
    assert_eq!(faults.puts_started(), 2, "one failed put for both");
    assert_eq!(stored(&storage).await, 2);
}

/// A request announced and then refused (dropped before its commit) stops
/// the wait: the batch is sealed at once, not after `batch_max_age`.
#[tokio::test]
async fn a_refused_arrival_releases_the_waiting_batch() {
    let (gc, storage, faults) = setup(slow_age());
    let refused = gc.arrive();
    let waiting = tokio::spawn({
        let gc = gc.clone();
        async move { gc.commit(tenant(), one("waiting", 1)).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(faults.puts_started(), 0);
    drop(refused);
    waiting.await.expect("join").expect("commit");
    assert_eq!(faults.puts_completed(), 1);
    assert_eq!(stored(&storage).await, 1);
}
