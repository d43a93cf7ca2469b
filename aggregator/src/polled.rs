//! Rule sets as the request paths see them (ingest's drop rules, the
//! querier's storage policies): kept in memory per tenant and re-read at
//! most every `poll`, without a background task.
//!
//! The first request of a tenant waits for one read of the rule store, so a
//! freshly started process applies the tenant's drop rules from its first
//! write. After that a request never waits: it takes the rules in memory,
//! and when they are older than `poll` it starts one refresh in the
//! background (one probe of `version + 1` on the object store), so a new
//! version takes effect within about `poll` plus a request, without a
//! restart. Works the same in a long-running server and in a Lambda
//! function, where background timers do not run between invocations.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use storage::TenantId;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::rule_store::{CurrentRules, RuleStore};
use crate::rules::RuleSet;

struct Slot {
    rules: Option<CurrentRules>,
    checked: Instant,
    refreshing: bool,
}

/// Per-tenant rule sets refreshed on demand.
pub struct PolledRules {
    store: Arc<dyn RuleStore>,
    poll: Duration,
    tenants: RwLock<HashMap<TenantId, Slot>>,
}

impl PolledRules {
    pub fn new(store: Arc<dyn RuleStore>, poll: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            poll,
            tenants: RwLock::default(),
        })
    }

    /// The tenant's rules (`None`: no rule set, or it could not be read
    /// yet). Waits only the first time a tenant is asked for.
    pub async fn get(self: &Arc<Self>, tenant: &TenantId) -> Option<CurrentRules> {
        let seen = self.tenants.read().ok().and_then(|m| {
            m.get(tenant)
                .map(|s| (s.rules.clone(), s.checked, s.refreshing))
        });
        let Some((rules, checked, refreshing)) = seen else {
            self.refresh(tenant).await;
            return self
                .tenants
                .read()
                .ok()
                .and_then(|m| m.get(tenant).and_then(|s| s.rules.clone()));
        };
        if !refreshing && checked.elapsed() >= self.poll && self.claim(tenant) {
            let me = self.clone();
            let tenant = tenant.clone();
            tokio::spawn(async move { me.refresh(&tenant).await });
        }
        rules
    }

    /// The tenant's rules, re-read first (one probe) when older than
    /// `poll`: for paths that may wait a request, such as queries, which
    /// then see a new version at once after the poll interval.
    pub async fn get_fresh(self: &Arc<Self>, tenant: &TenantId) -> Option<CurrentRules> {
        let fresh = self.tenants.read().ok().and_then(|m| {
            m.get(tenant)
                .filter(|s| s.checked.elapsed() < self.poll)
                .map(|s| s.rules.clone())
        });
        if let Some(rules) = fresh {
            return rules;
        }
        self.refresh(tenant).await;
        self.tenants
            .read()
            .ok()
            .and_then(|m| m.get(tenant).and_then(|s| s.rules.clone()))
    }

    /// Marks a refresh of `tenant` as started; false if one already is.
    fn claim(&self, tenant: &TenantId) -> bool {
        let Ok(mut m) = self.tenants.write() else {
            return false;
        };
        match m.get_mut(tenant) {
            Some(s) if !s.refreshing => {
                s.refreshing = true;
                true
            }
            _ => false,
        }
    }

    /// Re-reads the tenant's newest version (one probe when unchanged).
    pub async fn refresh(&self, tenant: &TenantId) {
        let known = self.tenants.read().ok().and_then(|m| {
            m.get(tenant)
                .and_then(|s| s.rules.as_ref().map(|r| r.version))
        });
        let latest = self.store.latest(tenant).await;
        let next: Result<Option<CurrentRules>, ()> = match latest {
            Ok(None) => Ok(None),
            Ok(Some(stored)) if Some(stored.version) == known => Err(()),
            Ok(Some(stored)) => match RuleSet::new(stored.rules) {
                Ok(rules) => {
                    debug!(tenant = %tenant, version = stored.version, "rule set loaded");
                    Ok(Some(CurrentRules {
                        version: stored.version,
                        rules: Arc::new(rules),
                    }))
                }
                // Validated on commit; a version written by a newer release
                // with rules this one does not know keeps the previous rules.
                Err(e) => {
                    warn!(tenant = %tenant, version = stored.version, error = %e, "ignoring an invalid rule set");
                    Err(())
                }
            },
            Err(e) => {
                warn!(tenant = %tenant, error = %e, "reading the rule set failed; keeping the rules in memory");
                Err(())
            }
        };
        if let Ok(mut m) = self.tenants.write() {
            let slot = m.entry(tenant.clone()).or_insert_with(|| Slot {
                rules: None,
                checked: Instant::now(),
                refreshing: false,
            });
            if let Ok(rules) = next {
                slot.rules = rules;
            }
            slot.checked = Instant::now();
            slot.refreshing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule_store::ObjectRuleStore;
    use crate::rules::RuleSetSpec;
    use object_store::memory::InMemory;
    use storage::Labels;

    fn spec(name: &str) -> RuleSetSpec {
        RuleSetSpec::parse(
            &format!("[[mapping_rules]]\nname = \"d\"\nfilter = {{ __name__ = \"{name}\" }}\ndrop = true\n"),
            false,
        )
        .expect("rules")
    }

    #[tokio::test]
    async fn first_read_waits_later_versions_arrive_after_the_poll_interval() {
        let store: Arc<dyn RuleStore> = Arc::new(ObjectRuleStore::new(Arc::new(InMemory::new())));
        let t = TenantId::new("t").expect("tenant");
        let other = TenantId::new("o").expect("tenant");
        store.commit(&t, 0, spec("a"), 0).await.expect("commit");
        let slow = PolledRules::new(store.clone(), Duration::from_secs(3600));
        let eager = PolledRules::new(store.clone(), Duration::ZERO);
        let a = Labels::from_pairs([("__name__", "a")]).expect("labels");
        let b = Labels::from_pairs([("__name__", "b")]).expect("labels");

        for p in [&slow, &eager] {
            let r = p.get(&t).await.expect("rules at once");
            assert_eq!(r.version, 1);
            assert!(r.rules.drops(&a));
            assert!(p.get(&other).await.is_none());
        }

        store.commit(&t, 1, spec("b"), 0).await.expect("commit");
        // Within the poll interval the rules in memory are used.
        assert_eq!(slow.get(&t).await.expect("rules").version, 1);
        assert_eq!(slow.get_fresh(&t).await.expect("rules").version, 1);
        // Past it, get_fresh reads the new version before answering.
        let fresh = PolledRules::new(store.clone(), Duration::ZERO);
        assert_eq!(fresh.get(&t).await.expect("rules").version, 2);
        store.commit(&t, 2, spec("b"), 0).await.expect("commit");
        assert_eq!(fresh.get_fresh(&t).await.expect("rules").version, 3);
        // Past it, a request starts a refresh and a later one sees it.
        let mut seen = 0;
        for _ in 0..1000 {
            seen = eager.get(&t).await.expect("rules").version;
            if seen == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(seen, 3);
        let r = eager.get(&t).await.expect("rules");
        assert!(r.rules.drops(&b) && !r.rules.drops(&a));
        // A tenant whose rules appear later is picked up too.
        store.commit(&other, 0, spec("b"), 0).await.expect("commit");
        let mut found = false;
        for _ in 0..1000 {
            if eager.get(&other).await.is_some() {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(found);
    }
}
