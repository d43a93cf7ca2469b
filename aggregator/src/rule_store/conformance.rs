//! The rule-store conformance suite: the behaviour every [`RuleStore`]
//! backend must have, run against the object store in this crate's unit
//! tests and against a real etcd in `tests/it/rules_etcd.rs` (feature
//! `conformance`).
//!
//! `make(case)` returns a new store instance over the namespace of `case`,
//! which is empty the first time and shared by every instance made for the
//! same case: separate instances stand for separate processes.

use std::sync::Arc;

use storage::{Labels, TenantId};

use super::{RuleStore, RuleStoreError, RuleWatcher, update};
use crate::polled::PolledRules;
use crate::rules::{MappingRuleSpec, RuleSetSpec};

/// Runs every case, in turn.
pub async fn run_all(make: &dyn Fn(&str) -> Arc<dyn RuleStore>) {
    versions_chain_and_history_is_kept(make).await;
    racing_writers_one_wins_and_update_retries(make).await;
    readers_pick_up_new_versions_without_restart(make).await;
    tenants_are_separate(make).await;
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant")
}

/// One mapping rule for `<name>_*`: dropped, or kept at `1m:40d`.
pub fn spec(name: &str, drop: bool) -> RuleSetSpec {
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

/// Versions 1, 2, ... in order, all kept; stale or skipping bases are
/// conflicts naming the current version; invalid rules are refused before
/// anything is written.
pub async fn versions_chain_and_history_is_kept(make: &dyn Fn(&str) -> Arc<dyn RuleStore>) {
    let store = make("chain");
    let t = tenant("t");
    assert!(store.latest(&t).await.expect("latest").is_none());
    assert!(store.history(&t).await.expect("history").is_empty());
    assert!(store.tenants().await.expect("tenants").is_empty());
    let v1 = store.commit(&t, 0, spec("a", false), 1).await.expect("v1");
    assert_eq!(v1.version, 1);
    assert_eq!(v1.updated_at_ms, 1);
    let v2 = store.commit(&t, 1, spec("b", false), 2).await.expect("v2");
    assert_eq!(v2.version, 2);
    assert_eq!(store.history(&t).await.expect("history"), [1, 2]);
    assert_eq!(store.get(&t, 1).await.expect("get"), Some(v1.clone()));
    assert_eq!(store.get(&t, 3).await.expect("get"), None);
    assert_eq!(store.latest(&t).await.expect("latest"), Some(v2.clone()));
    assert_eq!(
        store.tenants().await.expect("tenants"),
        std::slice::from_ref(&t)
    );
    // A stale base is a conflict, as is skipping ahead, and the first
    // version again.
    for base in [0, 1, 5] {
        let e = store
            .commit(&t, base, spec("c", false), 3)
            .await
            .expect_err("a stale base commits nothing");
        assert!(
            matches!(e, RuleStoreError::Conflict { current: 2, expected, .. } if expected == base),
            "base {base}: {e}"
        );
    }
    // Invalid rules are refused before anything is written.
    let mut bad = spec("d", false);
    bad.mapping_rules[0].storage_policies = vec!["1m".into()];
    let e = store
        .commit(&t, 2, bad, 4)
        .await
        .expect_err("invalid rules are refused");
    assert!(matches!(e, RuleStoreError::Invalid(_)), "{e}");
    assert!(
        e.to_string()
            .contains("mapping_rules[0].storage_policies[0]"),
        "{e}"
    );
    assert_eq!(store.history(&t).await.expect("history"), [1, 2]);
    // Another instance (process) reads the same history.
    let other = make("chain");
    assert_eq!(other.latest(&t).await.expect("latest"), Some(v2));
    assert_eq!(other.get(&t, 1).await.expect("get"), Some(v1));
    // Deleting is committing an empty rule set: history stays.
    let v3 = other
        .commit(&t, 2, RuleSetSpec::default(), 5)
        .await
        .expect("v3");
    assert_eq!(v3.rules, RuleSetSpec::default());
    assert_eq!(store.latest(&t).await.expect("latest"), Some(v3));
    assert_eq!(store.history(&t).await.expect("history"), [1, 2, 3]);
}

/// Of eight instances committing version 1 at once exactly one wins and the
/// others get conflicts; `update` re-reads and re-applies, so eight
/// concurrent changes all land, one version each.
pub async fn racing_writers_one_wins_and_update_retries(make: &dyn Fn(&str) -> Arc<dyn RuleStore>) {
    let t = tenant("t");
    let writers: Vec<Arc<dyn RuleStore>> = (0..8).map(|_| make("race")).collect();
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
            .all(|e| matches!(e, RuleStoreError::Conflict { current: 1, .. })),
        "{results:?}"
    );
    let all = futures::future::join_all(writers.iter().enumerate().map(|(i, w)| {
        let t = t.clone();
        async move {
            update(w.as_ref(), &t, 2, |s| {
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
    let latest = make("race")
        .latest(&t)
        .await
        .expect("latest")
        .expect("some");
    assert_eq!(latest.version, 9);
    assert_eq!(latest.rules.mapping_rules.len(), 9);
    assert_eq!(
        make("race").history(&t).await.expect("history"),
        (1..=9).collect::<Vec<u64>>()
    );
}

/// A reader holding a version sees the next one a writer commits at its
/// next poll: [`RuleWatcher`] and [`PolledRules`] (past the poll interval).
pub async fn readers_pick_up_new_versions_without_restart(
    make: &dyn Fn(&str) -> Arc<dyn RuleStore>,
) {
    let t = tenant("t");
    let writer = make("watch");
    let watcher = RuleWatcher::new(make("watch"));
    let polled = PolledRules::new(make("watch"), std::time::Duration::ZERO);
    let debug = Labels::from_pairs([("__name__", "debug_x")]).expect("labels");
    watcher.refresh().await.expect("refresh");
    assert!(!watcher.drops(&t, &debug));
    assert!(polled.get_fresh(&t).await.is_none());
    writer
        .commit(&t, 0, spec("debug", true), 1)
        .await
        .expect("commit");
    watcher.refresh().await.expect("refresh");
    assert!(watcher.drops(&t, &debug));
    assert_eq!(watcher.rules(&t).map(|c| c.version), Some(1));
    let seen = polled.get_fresh(&t).await.expect("rules");
    assert_eq!(seen.version, 1);
    assert!(seen.rules.drops(&debug));
    // Deleting is committing an empty rule set.
    writer
        .commit(&t, 1, RuleSetSpec::default(), 2)
        .await
        .expect("commit");
    watcher.refresh().await.expect("refresh");
    assert!(!watcher.drops(&t, &debug));
    assert_eq!(watcher.rules(&t).map(|c| c.version), Some(2));
    let seen = polled.get_fresh(&t).await.expect("rules");
    assert_eq!(seen.version, 2);
    assert!(!seen.rules.drops(&debug));
}

/// Each tenant has its own versions; `tenants` lists those with rules.
pub async fn tenants_are_separate(make: &dyn Fn(&str) -> Arc<dyn RuleStore>) {
    let store = make("tenants");
    let (a, b, none) = (tenant("a"), tenant("b.team-2"), tenant("c"));
    store.commit(&a, 0, spec("a", false), 1).await.expect("a1");
    store.commit(&a, 1, spec("a", true), 2).await.expect("a2");
    store.commit(&b, 0, spec("b", true), 3).await.expect("b1");
    let la = store.latest(&a).await.expect("latest").expect("a");
    let lb = store.latest(&b).await.expect("latest").expect("b");
    assert_eq!((la.version, lb.version), (2, 1));
    assert_eq!(la.rules, spec("a", true));
    assert_eq!(lb.rules, spec("b", true));
    assert_eq!(store.latest(&none).await.expect("latest"), None);
    assert_eq!(store.history(&b).await.expect("history"), [1]);
    // b's base is its own version, not a's.
    let e = store
        .commit(&b, 2, spec("b", false), 4)
        .await
        .expect_err("another tenant's version is no base");
    assert!(
        matches!(e, RuleStoreError::Conflict { current: 1, .. }),
        "{e}"
    );
    let mut tenants = make("tenants").tenants().await.expect("tenants");
    tenants.sort();
    assert_eq!(tenants, [a, b]);
}
