use super::*;
use crate::rules::MappingRuleSpec;
use object_store::memory::InMemory;

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

fn spec(name: &str, drop: bool) -> RuleSetSpec {
    RuleSetSpec {
        mapping_rules: vec![MappingRuleSpec {
            name: name.into(),
            filter: [("__name__".to_string(), format!("{name}_*"))].into(),
            aggregations: vec![],
            storage_policies: if drop { vec![] } else { vec!["1m:40d".into()] },
            drop,
        }],
        rollup_rules: vec![],
    }
}

#[tokio::test]
async fn versions_chain_and_history_is_kept() {
    let store = ObjectRuleStore::new(Arc::new(InMemory::new()));
    let t = tenant();
    assert!(store.latest(&t).await.expect("latest").is_none());
    let v1 = store.commit(&t, 0, spec("a", false), 1).await.expect("v1");
    assert_eq!(v1.version, 1);
    let v2 = store.commit(&t, 1, spec("b", false), 2).await.expect("v2");
    assert_eq!(v2.version, 2);
    assert_eq!(store.history(&t).await.expect("history"), [1, 2]);
    assert_eq!(store.get(&t, 1).await.expect("get"), Some(v1));
    assert_eq!(store.latest(&t).await.expect("latest"), Some(v2));
    assert_eq!(
        store.tenants().await.expect("tenants"),
        std::slice::from_ref(&t)
    );
    // A stale base is a conflict, as is skipping ahead.
    for base in [1, 5] {
        let e = store
            .commit(&t, base, spec("c", false), 3)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RuleStoreError::Conflict { current: 2, .. }),
            "{e}"
        );
    }
    // Invalid rules are refused before anything is written.
    let mut bad = spec("d", false);
    bad.mapping_rules[0].storage_policies = vec!["1m".into()];
    let e = store.commit(&t, 2, bad, 4).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("mapping_rules[0].storage_policies[0]"),
        "{e}"
    );
    assert_eq!(store.history(&t).await.expect("history"), [1, 2]);
}

#[tokio::test]
async fn two_writers_racing_for_a_version_one_wins() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let t = tenant();
    // Separate store instances, like two processes.
    let writers: Vec<ObjectRuleStore> = (0..8)
        .map(|_| ObjectRuleStore::new(shared.clone()))
        .collect();
    let results = futures::future::join_all(
        writers
            .iter()
            .enumerate()
            .map(|(i, w)| w.commit(&t, 0, spec(&format!("w{i}"), false), 1)),
    )
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, RuleStoreError::Conflict { .. }))
    );
    // update() re-reads and re-applies: all eight changes land, in turn.
    let all = futures::future::join_all(writers.iter().enumerate().map(|(i, w)| {
        let t = t.clone();
        async move {
            update(w, &t, 2, |s| {
                let mut n = s.clone();
                n.mapping_rules
                    .extend(spec(&format!("u{i}"), true).mapping_rules);
                Ok(n)
            })
            .await
        }
    }))
    .await;
    assert!(all.iter().all(|r| r.is_ok()), "{all:?}");
    let latest = writers[0].latest(&t).await.expect("latest").expect("some");
    assert_eq!(latest.version, 9);
    assert_eq!(latest.rules.mapping_rules.len(), 9);
}

#[tokio::test]
async fn a_watcher_picks_up_new_versions_without_restart() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let t = tenant();
    let writer = ObjectRuleStore::new(shared.clone());
    let watcher = RuleWatcher::new(Arc::new(ObjectRuleStore::new(shared)));
    let debug = Labels::from_pairs([("__name__", "debug_x")]).expect("labels");
    watcher.refresh().await.expect("refresh");
    assert!(!watcher.drops(&t, &debug));
    writer
        .commit(&t, 0, spec("debug", true), 1)
        .await
        .expect("commit");
    watcher.refresh().await.expect("refresh");
    assert!(watcher.drops(&t, &debug));
    assert_eq!(watcher.rules(&t).map(|c| c.version), Some(1));
    // Deleting is committing an empty rule set.
    writer
        .commit(&t, 1, RuleSetSpec::default(), 2)
        .await
        .expect("commit");
    watcher.refresh().await.expect("refresh");
    assert!(!watcher.drops(&t, &debug));
    assert_eq!(watcher.rules(&t).map(|c| c.version), Some(2));
}
