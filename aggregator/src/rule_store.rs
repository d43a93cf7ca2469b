//! Versioned rule sets per tenant behind one trait, [`RuleStore`], and its
//! backends, chosen by `[rules] backend` ([`config`]):
//!
//! - the object store (default, [`ObjectRuleStore`]):
//!   `_system/rules/<tenant>/<version>.json`, each version created with
//!   create-if-absent (the manifest's chain of versions);
//! - etcd ([`etcd::EtcdRuleStore`]), over etcd's JSON gateway
//!   ([`storage::etcd`], shared with the job leases): a head key per tenant and a key per version,
//!   committed by compare-and-swap in one transaction.
//!
//! Every version is kept as history; deleting a rule set commits an empty
//! one. Readers ([`RuleWatcher`], [`crate::PolledRules`]) poll the newest
//! version (one small read per tenant and poll), so a new version takes
//! effect within the poll interval, without a restart. Both backends pass
//! the same suite ([`conformance`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use storage::{Labels, StorageError, TenantId, paths};
use tracing::{debug, info, warn};

use crate::chain;
use crate::rules::{RuleError, RuleSet, RuleSetSpec};

pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod etcd;

pub use config::{RulesBackend, RulesConfig};
pub use storage::etcd::{EtcdError, EtcdMetrics};

/// The format of stored rule set versions.
pub const FORMAT_VERSION: u32 = 1;

/// One version of a tenant's rule set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRuleSet {
    pub format_version: u32,
    pub version: u64,
    pub updated_at_ms: i64,
    pub rules: RuleSetSpec,
}

impl StoredRuleSet {
    /// The version after `base`, once `rules` validate (what every backend
    /// commits).
    pub fn next(base: u64, rules: RuleSetSpec, now_ms: i64) -> Result<Self, RuleStoreError> {
        RuleSet::new(rules.clone())?;
        Ok(Self {
            format_version: FORMAT_VERSION,
            version: base + 1,
            updated_at_ms: now_ms,
            rules,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleStoreError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error("rule set of tenant {tenant} is at version {current}, not {expected}")]
    Conflict {
        tenant: String,
        expected: u64,
        current: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// Where rule sets live. Implementations: [`ObjectRuleStore`],
/// [`etcd::EtcdRuleStore`].
#[async_trait]
pub trait RuleStore: Send + Sync {
    /// The newest version, `None` if the tenant never had rules.
    async fn latest(&self, tenant: &TenantId) -> Result<Option<StoredRuleSet>, RuleStoreError>;
    /// One version of the history.
    async fn get(
        &self,
        tenant: &TenantId,
        version: u64,
    ) -> Result<Option<StoredRuleSet>, RuleStoreError>;
    /// Versions kept, ascending.
    async fn history(&self, tenant: &TenantId) -> Result<Vec<u64>, RuleStoreError>;
    /// Validates `rules` and commits them as version `base + 1` (`base` 0:
    /// the first). [`RuleStoreError::Conflict`] when `base` is not the
    /// newest version any more: re-read and retry.
    async fn commit(
        &self,
        tenant: &TenantId,
        base: u64,
        rules: RuleSetSpec,
        now_ms: i64,
    ) -> Result<StoredRuleSet, RuleStoreError>;
    /// Tenants that have a rule set.
    async fn tenants(&self) -> Result<Vec<TenantId>, RuleStoreError>;
}

/// Rule sets on the object store.
pub struct ObjectRuleStore {
    store: Arc<dyn ObjectStore>,
    /// Newest version seen per tenant, so a poll is one probe, not a listing.
    known: Mutex<HashMap<TenantId, u64>>,
}

impl ObjectRuleStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            known: Mutex::default(),
        }
    }

    fn remember(&self, tenant: &TenantId, v: u64) {
        if let Ok(mut k) = self.known.lock() {
            let slot = k.entry(tenant.clone()).or_default();
            *slot = (*slot).max(v);
        }
    }
}

#[async_trait]
impl RuleStore for ObjectRuleStore {
    async fn latest(&self, tenant: &TenantId) -> Result<Option<StoredRuleSet>, RuleStoreError> {
        let known = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(tenant).copied())
            .unwrap_or(0);
        let mut newest = if known == 0 {
            let versions =
                chain::versions(self.store.as_ref(), &paths::rules_prefix(tenant)).await?;
            match versions.last() {
                Some(&v) => v,
                None => return Ok(None),
            }
        } else {
            known
        };
        let mut current = self.get(tenant, newest).await?;
        // Probe forward: versions committed since.
        while let Some(next) = self.get(tenant, newest + 1).await? {
            newest += 1;
            current = Some(next);
        }
        self.remember(tenant, newest);
        Ok(current)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        version: u64,
    ) -> Result<Option<StoredRuleSet>, RuleStoreError> {
        let key = paths::rules(tenant, version);
        let stored: Option<StoredRuleSet> = chain::read(self.store.as_ref(), &key).await?;
        if let Some(s) = &stored
            && (s.format_version != FORMAT_VERSION || s.version != version)
        {
            return Err(StorageError::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "format version {} / version {} not expected",
                    s.format_version, s.version
                ),
            }
            .into());
        }
        Ok(stored)
    }

    async fn history(&self, tenant: &TenantId) -> Result<Vec<u64>, RuleStoreError> {
        Ok(chain::versions(self.store.as_ref(), &paths::rules_prefix(tenant)).await?)
    }

    async fn commit(
        &self,
        tenant: &TenantId,
        base: u64,
        rules: RuleSetSpec,
        now_ms: i64,
    ) -> Result<StoredRuleSet, RuleStoreError> {
        let stored = StoredRuleSet::next(base, rules, now_ms)?;
        // A version must follow the newest one: refuse to skip ahead.
        let current = self.latest(tenant).await?.map_or(0, |s| s.version);
        if current != base {
            return Err(RuleStoreError::Conflict {
                tenant: tenant.to_string(),
                expected: base,
                current,
            });
        }
        let key = paths::rules(tenant, base + 1);
        if !chain::create(self.store.as_ref(), &key, &stored).await? {
            let current = self.latest(tenant).await?.map_or(0, |s| s.version);
            return Err(RuleStoreError::Conflict {
                tenant: tenant.to_string(),
                expected: base,
                current,
            });
        }
        self.remember(tenant, stored.version);
        info!(tenant = %tenant, version = stored.version, "rule set committed");
        Ok(stored)
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, RuleStoreError> {
        let root = paths::rules_root();
        let listing = self
            .store
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| StorageError::store("list", root.as_ref(), e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(paths::parse_tenant)
            .collect())
    }
}

/// Read-modify-commit with retries on conflicts: `change` gets the newest
/// rule set (empty if none) and returns the next one.
pub async fn update(
    store: &dyn RuleStore,
    tenant: &TenantId,
    now_ms: i64,
    mut change: impl FnMut(&RuleSetSpec) -> Result<RuleSetSpec, RuleStoreError>,
) -> Result<StoredRuleSet, RuleStoreError> {
    let mut last = None;
    for _ in 0..10 {
        let current = store.latest(tenant).await?;
        let base = current.as_ref().map_or(0, |s| s.version);
        let spec = current.map(|s| s.rules).unwrap_or_default();
        match store.commit(tenant, base, change(&spec)?, now_ms).await {
            Err(e @ RuleStoreError::Conflict { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| RuleStoreError::Conflict {
        tenant: tenant.to_string(),
        expected: 0,
        current: 0,
    }))
}

/// A tenant's rules as a reader holds them.
#[derive(Clone, Debug)]
pub struct CurrentRules {
    pub version: u64,
    pub rules: Arc<RuleSet>,
}

/// Keeps the newest rule set of every tenant in memory, refreshed by
/// polling; the ingest hook ([`RuleWatcher::drops`]) reads it without I/O.
pub struct RuleWatcher {
    store: Arc<dyn RuleStore>,
    current: RwLock<HashMap<TenantId, CurrentRules>>,
}

impl RuleWatcher {
    pub fn new(store: Arc<dyn RuleStore>) -> Self {
        Self {
            store,
            current: RwLock::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn RuleStore> {
        &self.store
    }

    /// The rules of `tenant` as of the last refresh.
    pub fn rules(&self, tenant: &TenantId) -> Option<CurrentRules> {
        self.current.read().ok()?.get(tenant).cloned()
    }

    /// Whether a drop rule of `tenant` selects the series.
    pub fn drops(&self, tenant: &TenantId, labels: &Labels) -> bool {
        self.rules(tenant).is_some_and(|c| c.rules.drops(labels))
    }

    /// Re-reads `tenant`'s newest version (one probe when unchanged).
    pub async fn refresh_tenant(&self, tenant: &TenantId) -> Result<(), RuleStoreError> {
        let Some(stored) = self.store.latest(tenant).await? else {
            return Ok(());
        };
        if self
            .rules(tenant)
            .is_some_and(|c| c.version == stored.version)
        {
            return Ok(());
        }
        match RuleSet::new(stored.rules) {
            Ok(rules) => {
                debug!(tenant = %tenant, version = stored.version, "rule set loaded");
                if let Ok(mut m) = self.current.write() {
                    m.insert(
                        tenant.clone(),
                        CurrentRules {
                            version: stored.version,
                            rules: Arc::new(rules),
                        },
                    );
                }
            }
            // Validated on commit; a version written by a newer release
            // with rules this one does not know keeps the previous rules.
            Err(e) => {
                warn!(tenant = %tenant, version = stored.version, error = %e, "ignoring an invalid rule set")
            }
        }
        Ok(())
    }

    /// Refreshes every tenant that has rules.
    pub async fn refresh(&self) -> Result<(), RuleStoreError> {
        for t in self.store.tenants().await? {
            self.refresh_tenant(&t).await?;
        }
        Ok(())
    }

    /// Refreshes every `every` until `shutdown` resolves.
    pub async fn run(&self, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        warn!(error = %e, "polling rule sets failed; retrying next time");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
