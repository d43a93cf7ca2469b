//! Rule sets in etcd (`[rules] backend = "etcd"`), the same semantics as
//! the object-store backend through the same trait. Keys under the
//! configured prefix (default `/strata/rules`):
//!
//! - `<prefix>/heads/<tenant>`: the newest version, in decimal;
//! - `<prefix>/versions/<tenant>/<version, 20 digits>`: one version, a
//!   [`StoredRuleSet`] as compact JSON. Every version is kept as history.
//!
//! A commit is one transaction: if the head is `base` (absent when `base`
//! is 0), write the head `base + 1` and the new version; otherwise read the
//! head, whose value is the conflict's current version. Readers poll the
//! head (a few bytes) and fetch a version only when it changed.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use storage::TenantId;
use tracing::{info, warn};

use super::{FORMAT_VERSION, RuleStore, RuleStoreError, StoredRuleSet};
use crate::rules::{RuleError, RuleSetSpec};
use storage::etcd::{Compare, EtcdError, Gateway};

/// The largest rule set version stored, as JSON: etcd refuses requests
/// over 1.5 MiB by default (`--max-request-bytes`), and a commit carries a
/// version and the head.
pub const MAX_RULE_SET_BYTES: usize = 1024 * 1024;

/// Rule sets in etcd.
pub struct EtcdRuleStore {
    etcd: Gateway,
    /// Without a trailing `/`.
    prefix: String,
    /// The newest version read per tenant: an unchanged poll reads only the head.
    cache: Mutex<HashMap<TenantId, StoredRuleSet>>,
}

impl EtcdRuleStore {
    pub fn new(etcd: Gateway, prefix: &str) -> Self {
        Self {
            etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
            cache: Mutex::default(),
        }
    }

    fn heads_prefix(&self) -> String {
        format!("{}/heads/", self.prefix)
    }

    fn head_key(&self, tenant: &TenantId) -> String {
        format!("{}{tenant}", self.heads_prefix())
    }

    fn versions_prefix(&self, tenant: &TenantId) -> String {
        format!("{}/versions/{tenant}/", self.prefix)
    }

    fn version_key(&self, tenant: &TenantId, version: u64) -> String {
        format!("{}{version:020}", self.versions_prefix(tenant))
    }

    /// The head's version, `None` when the tenant never had rules.
    async fn head(&self, tenant: &TenantId) -> Result<Option<u64>, RuleStoreError> {
        let key = self.head_key(tenant);
        let kvs = self.etcd.range(key.as_bytes(), false, false).await?;
        match kvs.first() {
            None => Ok(None),
            Some(kv) => parse_version(&key, &kv.value).map(Some),
        }
    }

    fn cached(&self, tenant: &TenantId) -> Option<StoredRuleSet> {
        self.cache.lock().ok()?.get(tenant).cloned()
    }

    fn remember(&self, tenant: &TenantId, stored: &StoredRuleSet) {
        if let Ok(mut c) = self.cache.lock() {
            let newer = c.get(tenant).is_none_or(|s| s.version < stored.version);
            if newer {
                c.insert(tenant.clone(), stored.clone());
            }
        }
    }
}

fn parse_version(key: &str, value: &[u8]) -> Result<u64, RuleStoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            EtcdError::Corrupt {
                key: key.to_string(),
                reason: format!(
                    "{:?} is not a version number",
                    String::from_utf8_lossy(value)
                ),
            }
            .into()
        })
}

#[async_trait]
impl RuleStore for EtcdRuleStore {
    async fn latest(&self, tenant: &TenantId) -> Result<Option<StoredRuleSet>, RuleStoreError> {
        let Some(version) = self.head(tenant).await? else {
            return Ok(None);
        };
        if let Some(c) = self.cached(tenant).filter(|c| c.version == version) {
            return Ok(Some(c));
        }
        // Written in the same transaction as the head, so it exists.
        match self.get(tenant, version).await? {
            Some(stored) => {
                self.remember(tenant, &stored);
                Ok(Some(stored))
            }
            None => Err(EtcdError::Corrupt {
                key: self.head_key(tenant),
                reason: format!("names version {version}, which does not exist"),
            }
            .into()),
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        version: u64,
    ) -> Result<Option<StoredRuleSet>, RuleStoreError> {
        let key = self.version_key(tenant, version);
        let kvs = self.etcd.range(key.as_bytes(), false, false).await?;
        let Some(kv) = kvs.first() else {
            return Ok(None);
        };
        let stored: StoredRuleSet =
            serde_json::from_slice(&kv.value).map_err(|e| EtcdError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        if stored.format_version != FORMAT_VERSION || stored.version != version {
            return Err(EtcdError::Corrupt {
                key,
                reason: format!(
                    "format version {} / version {} not expected",
                    stored.format_version, stored.version
                ),
            }
            .into());
        }
        Ok(Some(stored))
    }

    async fn history(&self, tenant: &TenantId) -> Result<Vec<u64>, RuleStoreError> {
        let prefix = self.versions_prefix(tenant);
        let kvs = self.etcd.range(prefix.as_bytes(), true, true).await?;
        let mut versions = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let digits = key.strip_prefix(&prefix).unwrap_or_default();
            versions.push(parse_version(&key, digits.as_bytes())?);
        }
        versions.sort_unstable();
        Ok(versions)
    }

    async fn commit(
        &self,
        tenant: &TenantId,
        base: u64,
        rules: RuleSetSpec,
        now_ms: i64,
    ) -> Result<StoredRuleSet, RuleStoreError> {
        let stored = StoredRuleSet::next(base, rules, now_ms)?;
        let body = serde_json::to_vec(&stored).map_err(|e| EtcdError::Client(e.to_string()))?;
        if body.len() > MAX_RULE_SET_BYTES {
            return Err(RuleError {
                field: "document".into(),
                reason: format!(
                    "the rule set is {} bytes as JSON; the etcd backend stores at most {MAX_RULE_SET_BYTES}",
                    body.len()
                ),
            }
            .into());
        }
        let head = self.head_key(tenant).into_bytes();
        let expect = if base == 0 {
            Compare::Absent(head.clone())
        } else {
            Compare::ValueIs(head.clone(), base.to_string().into_bytes())
        };
        let puts = [
            (head.clone(), stored.version.to_string().into_bytes()),
            (self.version_key(tenant, stored.version).into_bytes(), body),
        ];
        let result = self
            .etcd
            .txn(&[expect], &puts, std::slice::from_ref(&head))
            .await?;
        if !result.succeeded {
            let key = self.head_key(tenant);
            let current = match result.ranges.first().and_then(|r| r.first()) {
                Some(kv) => parse_version(&key, &kv.value)?,
                None => 0,
            };
            return Err(RuleStoreError::Conflict {
                tenant: tenant.to_string(),
                expected: base,
                current,
            });
        }
        self.remember(tenant, &stored);
        info!(tenant = %tenant, version = stored.version, "rule set committed to etcd");
        Ok(stored)
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, RuleStoreError> {
        let prefix = self.heads_prefix();
        let kvs = self.etcd.range(prefix.as_bytes(), true, true).await?;
        let mut tenants = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let name = key.strip_prefix(&prefix).unwrap_or_default();
            match TenantId::new(name) {
                Ok(t) => tenants.push(t),
                // Not written by Strata (tenant ids are checked on commit).
                Err(e) => {
                    warn!(key = %key, error = %e, "ignoring an etcd key that names no tenant")
                }
            }
        }
        Ok(tenants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_under_the_prefix() {
        let gw = Gateway::new(
            &["http://127.0.0.1:1".to_string()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client");
        let s = EtcdRuleStore::new(gw, "/strata/rules/");
        let t = TenantId::new("team-a").expect("tenant");
        assert_eq!(s.head_key(&t), "/strata/rules/heads/team-a");
        assert_eq!(
            s.version_key(&t, 7),
            "/strata/rules/versions/team-a/00000000000000000007"
        );
        assert_eq!(
            parse_version("k", b"12").expect("version"),
            12,
            "heads are decimal"
        );
        assert!(parse_version("k", b"x1").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_unavailable_not_a_panic() {
        // Port 1 on loopback: connection refused at once.
        let metrics = crate::rule_store::EtcdMetrics::default();
        let gw = Gateway::new(
            &[
                "http://127.0.0.1:1".to_string(),
                "http://127.0.0.1:1/".into(),
            ],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client")
        .with_metrics(metrics.clone());
        let s = EtcdRuleStore::new(gw, "/x");
        let t = TenantId::new("t").expect("tenant");
        let e = s.latest(&t).await.unwrap_err();
        assert!(
            matches!(
                e,
                RuleStoreError::Etcd(EtcdError::Unavailable { op: "range", .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        // Both endpoints were tried.
        assert_eq!(metrics.requests("range", "unreachable"), 2);
        assert_eq!(metrics.requests("range", "ok"), 0);
    }
}
