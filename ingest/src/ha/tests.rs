use object_store::memory::InMemory;
use storage::instrumented_store::{InstrumentedStore, StoreMetrics};
use storage::{Labels, Sample};

use super::*;
use crate::clock::ManualClock;

const T0: i64 = 1_700_000_000_000;

fn enabled() -> HaTrackerConfig {
    HaTrackerConfig {
        accept_ha_samples: true,
        ..HaTrackerConfig::default()
    }
}

fn tracker(store: &Arc<dyn ObjectStore>, clock: &Arc<ManualClock>) -> HaTracker {
    HaTracker::new(
        store.clone(),
        enabled(),
        clock.clone(),
        IngestMetrics::default(),
    )
}

fn memory() -> Arc<dyn ObjectStore> {
    Arc::new(InMemory::new())
}

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

async fn check(t: &HaTracker, cluster: &str, replica: &str) -> Decision {
    t.check(&tenant(), cluster, replica).await.expect("check")
}

fn rejected_for(elected: &str) -> Decision {
    Decision::Reject {
        elected: elected.into(),
    }
}

async fn generations(store: &Arc<dyn ObjectStore>) -> Vec<u64> {
    let prefix = Path::from("_system/ha_tracker");
    let mut g: Vec<u64> = store
        .list(Some(&prefix))
        .try_filter_map(|m| async move { Ok(storage::paths::parse_lease(&m.location)) })
        .try_collect()
        .await
        .expect("list");
    g.sort_unstable();
    g
}

#[test]
fn config_defaults_and_validation() {
    let c = HaTrackerConfig::default();
    assert_eq!(
        (c.cluster_label.as_str(), c.replica_label.as_str()),
        ("cluster", "__replica__")
    );
    assert_eq!(c.failover_timeout, Duration::from_secs(30));
    assert_eq!(c.update_timeout, Duration::from_secs(15));
    assert!(!c.accept_ha_samples);
    assert!(c.validate().is_ok());
    let bad = [
        (
            HaTrackerConfig {
                failover_timeout: Duration::from_millis(15_500),
                ..HaTrackerConfig::default()
            },
            "ingest.ha_tracker.failover_timeout",
        ),
        (
            HaTrackerConfig {
                replica_label: String::new(),
                ..HaTrackerConfig::default()
            },
            "ingest.ha_tracker.replica_label",
        ),
        (
            HaTrackerConfig {
                replica_label: "cluster".into(),
                ..HaTrackerConfig::default()
            },
            "ingest.ha_tracker.replica_label",
        ),
        (
            HaTrackerConfig {
                tenant_accept_ha_samples: [("../x".to_string(), true)].into(),
                ..HaTrackerConfig::default()
            },
            "ingest.ha_tracker.tenant_accept_ha_samples",
        ),
    ];
    for (c, field) in bad {
        let e = c.validate().expect_err(field);
        assert!(e.starts_with(field), "{e}");
    }
}

#[test]
fn the_per_tenant_flag_overrides_the_default() {
    let c = HaTrackerConfig {
        tenant_accept_ha_samples: [("team-a".to_string(), true)].into(),
        ..HaTrackerConfig::default()
    };
    assert!(c.enabled_for(&TenantId::new("team-a").expect("tenant")));
    assert!(!c.enabled_for(&TenantId::new("team-b").expect("tenant")));
    let c = HaTrackerConfig {
        accept_ha_samples: true,
        tenant_accept_ha_samples: [("team-b".to_string(), false)].into(),
        ..HaTrackerConfig::default()
    };
    assert!(c.enabled_for(&TenantId::new("team-a").expect("tenant")));
    assert!(!c.enabled_for(&TenantId::new("team-b").expect("tenant")));
}

#[tokio::test]
async fn the_first_replica_is_elected_and_the_other_dropped() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let t = tracker(&store, &clock);
    assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    for _ in 0..10 {
        clock.advance(2_000);
        assert_eq!(check(&t, "prom", "b").await, rejected_for("a"));
        assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    }
    // Clusters are independent.
    assert_eq!(check(&t, "other", "b").await, Decision::Accept);
    assert_eq!(check(&t, "other", "a").await, rejected_for("b"));
}

#[tokio::test]
async fn failover_happens_after_the_failover_timeout_and_not_before() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let t = tracker(&store, &clock);
    assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    // a goes silent; b keeps sending. Until 30 s after a was last heard
    // from, b is dropped.
    for _ in 0..29 {
        clock.advance(1_000);
        assert_eq!(check(&t, "prom", "b").await, rejected_for("a"));
    }
    clock.set(T0 + 29_999);
    assert_eq!(check(&t, "prom", "b").await, rejected_for("a"));
    clock.set(T0 + 30_000);
    assert_eq!(check(&t, "prom", "b").await, Decision::Accept);
    // a comes back: now it is the one dropped.
    clock.advance(1_000);
    assert_eq!(check(&t, "prom", "a").await, rejected_for("b"));
    assert_eq!(t.metrics.ha_elected_replica_changes.get(), 2);
}

#[tokio::test]
async fn heartbeats_keep_a_live_replica_elected_and_cost_one_write_per_update_timeout() {
    let metrics = StoreMetrics::unregistered();
    let store: Arc<dyn ObjectStore> = Arc::new(InstrumentedStore::new(memory(), metrics.clone()));
    let clock = ManualClock::new(T0);
    let t = tracker(&store, &clock);
    // Both replicas send every second for two minutes.
    for _ in 0..120 {
        assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
        assert_eq!(check(&t, "prom", "b").await, rejected_for("a"));
        clock.advance(1_000);
    }
    // One election and a heartbeat every 15 s; older generations pruned.
    let g = generations(&store).await;
    assert_eq!(g.last(), Some(&8), "{g:?}");
    assert!(g.len() <= KEEP_GENERATIONS as usize, "{g:?}");
    // 240 decisions, few requests: a list and a get before each of the 8
    // writes, plus the writes and prunes.
    assert!(metrics.total() < 40, "{} requests", metrics.total());
}

#[tokio::test]
async fn two_ingesters_sharing_a_store_agree() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let one = tracker(&store, &clock);
    let two = tracker(&store, &clock);
    // a reaches ingester one first; b, reaching ingester two, is dropped.
    assert_eq!(check(&one, "prom", "a").await, Decision::Accept);
    assert_eq!(check(&two, "prom", "b").await, rejected_for("a"));
    assert_eq!(check(&two, "prom", "a").await, Decision::Accept);
    // Replica a's requests go to ingester one only; its heartbeats keep
    // ingester two from failing over.
    for _ in 0..60 {
        clock.advance(1_000);
        assert_eq!(check(&one, "prom", "a").await, Decision::Accept);
        assert_eq!(check(&two, "prom", "b").await, rejected_for("a"));
    }
    // a dies. Ingester two fails over to b after the timeout...
    clock.advance(31_000);
    assert_eq!(check(&two, "prom", "b").await, Decision::Accept);
    // ... and ingester one, whose cache is older than the update timeout,
    // learns it from the store.
    assert_eq!(check(&one, "prom", "a").await, rejected_for("b"));
    assert_eq!(check(&one, "prom", "b").await, Decision::Accept);
}

#[tokio::test]
async fn racing_ingesters_elect_one_replica() {
    for round in 0..20 {
        let store = memory();
        let clock = ManualClock::new(T0);
        let trackers: Vec<HaTracker> = (0..4).map(|_| tracker(&store, &clock)).collect();
        let replicas = ["a", "b", "c", "d"];
        let tenant = tenant();
        let decisions = futures::future::join_all(
            trackers
                .iter()
                .zip(replicas)
                .map(|(t, r)| t.check(&tenant, "prom", r)),
        )
        .await;
        let accepted: Vec<&str> = decisions
            .iter()
            .zip(replicas)
            .filter(|(d, _)| matches!(d, Ok(Decision::Accept)))
            .map(|(_, r)| r)
            .collect();
        assert_eq!(accepted.len(), 1, "round {round}: {decisions:?}");
        // Everyone agrees afterwards.
        for t in &trackers {
            assert_eq!(check(t, "prom", accepted[0]).await, Decision::Accept);
        }
    }
}

#[tokio::test]
async fn dedupe_strips_the_replica_label_and_drops_the_other_replica() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let t = tracker(&store, &clock);
    let series = |replica: &str| {
        let mut pairs = vec![("__name__", "up"), ("cluster", "prom"), ("job", "x")];
        if !replica.is_empty() {
            pairs.push(("__replica__", replica));
        }
        vec![
            Series {
                labels: Labels::from_pairs(pairs.clone()).expect("labels"),
                samples: vec![Sample::new(1, 1.0), Sample::new(2, 1.0)],
            },
            Series {
                labels: Labels::from_pairs(
                    pairs
                        .iter()
                        .map(|&(n, v)| if n == "job" { (n, "y") } else { (n, v) }),
                )
                .expect("labels"),
                samples: vec![Sample::new(1, 1.0)],
            },
        ]
    };
    let kept = t
        .dedupe(&tenant(), series("a"))
        .await
        .expect("a is elected");
    assert_eq!(kept.len(), 2);
    for s in &kept {
        assert_eq!(s.labels.get("__replica__"), None);
        assert_eq!(s.labels.get("cluster"), Some("prom"));
    }
    match t.dedupe(&tenant(), series("b")).await {
        Err(e @ IngestError::ReplicaNotElected { .. }) => {
            assert_eq!(e.status(), axum::http::StatusCode::ACCEPTED);
            let msg = e.to_string();
            assert!(msg.contains("\"b\"") && msg.contains("\"a\""), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.metrics.ha_deduplicated_samples.get(), 3);
    // Without a replica label the request is stored as it is.
    let plain = t.dedupe(&tenant(), series("")).await.expect("no replica");
    assert_eq!(plain[0].labels.get("cluster"), Some("prom"));
    // A tenant without HA deduplication keeps the replica label.
    let off = HaTracker::new(
        store.clone(),
        HaTrackerConfig::default(),
        clock.clone(),
        IngestMetrics::default(),
    );
    let kept = off.dedupe(&tenant(), series("b")).await.expect("off");
    assert_eq!(kept[0].labels.get("__replica__"), Some("b"));
}

#[tokio::test]
async fn store_failures_are_503_and_the_cache_is_used_meanwhile() {
    let (failing, faults) = storage::failing_store::FailingStore::new(memory());
    let store: Arc<dyn ObjectStore> = Arc::new(failing);
    let clock = ManualClock::new(T0);
    let t = tracker(&store, &clock);
    faults.fail_puts(true);
    match t.check(&tenant(), "prom", "a").await {
        Err(e @ IngestError::HaTracker(_)) => {
            assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        }
        other => panic!("{other:?}"),
    }
    faults.fail_puts(false);
    assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    // Within the update timeout no write is needed.
    faults.fail_puts(true);
    clock.advance(14_000);
    assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    assert_eq!(check(&t, "prom", "b").await, rejected_for("a"));
    // The heartbeat after it fails.
    clock.advance(2_000);
    assert!(t.check(&tenant(), "prom", "a").await.is_err());
}

#[tokio::test]
async fn cluster_names_of_any_shape_get_safe_keys_and_the_count_is_limited() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let t = HaTracker::new(
        store.clone(),
        HaTrackerConfig {
            accept_ha_samples: true,
            max_clusters: 3,
            ..HaTrackerConfig::default()
        },
        clock.clone(),
        IngestMetrics::default(),
    );
    for cluster in ["a/b", "_x"] {
        assert_eq!(check(&t, cluster, "r").await, Decision::Accept);
    }
    let long = "x".repeat(2000);
    assert_eq!(check(&t, &long, "r").await, Decision::Accept);
    assert!(matches!(
        t.check(&tenant(), "fourth", "r").await,
        Err(IngestError::TooManyHaClusters { limit: 3 })
    ));
    // Known clusters still work; clusters silent for 30 minutes make room.
    assert_eq!(check(&t, "a/b", "r").await, Decision::Accept);
    clock.advance(FORGET_AFTER_MS + 1);
    assert_eq!(check(&t, "fourth", "r").await, Decision::Accept);
    assert_eq!(
        cluster_prefix(&tenant(), "prom-1.eu").as_ref(),
        "_system/ha_tracker/t/prom-1.eu"
    );
    assert!(
        cluster_prefix(&tenant(), "a/b")
            .as_ref()
            .starts_with("_system/ha_tracker/t/_")
    );
}

#[tokio::test]
async fn an_unreadable_generation_is_replaced() {
    let store = memory();
    let clock = ManualClock::new(T0);
    let prefix = cluster_prefix(&tenant(), "prom");
    store
        .put(
            &generation_key(&prefix, 7),
            Bytes::from_static(b"{not json").into(),
        )
        .await
        .expect("put");
    let t = tracker(&store, &clock);
    assert_eq!(check(&t, "prom", "a").await, Decision::Accept);
    assert_eq!(generations(&store).await.last(), Some(&8));
}
