//! Job leases in etcd (`[leases] backend = "etcd"`), through etcd's own
//! primitives: one key per shard, `<prefix>/<job>/<tenant>/<shard>`, holding
//! the owner's name and attached to an etcd lease with the job's TTL.
//!
//! - Take: grant an etcd lease, then one transaction that creates the key
//!   under it only if the key does not exist (`create_revision == 0`); when
//!   it exists, the same transaction reads the holder.
//! - Renew: keep the etcd lease alive, then check that the key still names
//!   this owner under this lease.
//! - Release: revoke the etcd lease, which deletes the key.
//!
//! A crashed holder stops keeping its lease alive and etcd deletes the key
//! when the TTL runs out, on etcd's clock: unlike the object-store backend,
//! contenders' clocks play no part.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, warn};

use super::{HeldLease, Lease, LeaseBackend};
use crate::error::Result;
use crate::etcd::Gateway;
use crate::tenant::TenantId;

/// Leases in etcd.
pub struct EtcdLeases {
    etcd: Arc<Gateway>,
    /// Without a trailing `/`.
    prefix: String,
}

impl EtcdLeases {
    pub fn new(etcd: Gateway, prefix: &str) -> Self {
        Self {
            etcd: Arc::new(etcd),
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The key of a shard's lease. `job` and `shard` are built by the jobs
    /// from constants and numbers, the tenant id is validated.
    pub fn key(&self, job: &str, tenant: &TenantId, shard: &str) -> String {
        format!("{}/{job}/{tenant}/{shard}", self.prefix)
    }
}

/// TTL in whole seconds (etcd's unit), rounded up.
fn ttl_seconds(ttl_ms: i64) -> i64 {
    ((ttl_ms + 999) / 1000).max(1)
}

#[async_trait]
impl LeaseBackend for EtcdLeases {
    async fn try_acquire(
        &self,
        job: &str,
        tenant: &TenantId,
        shard: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>> {
        let key = self.key(job, tenant, shard);
        let granted = self.etcd.lease_grant(ttl_seconds(ttl_ms)).await?;
        let lease = EtcdLease {
            etcd: self.etcd.clone(),
            key: key.clone(),
            owner: owner.to_string(),
            id: granted.id,
            // Granted after `now_ms`: the real expiry is later than this.
            expires_ms: now_ms + granted.ttl_s * 1000,
        };
        let holder = match self
            .etcd
            .create_with_lease(key.as_bytes(), owner.as_bytes(), granted.id)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                lease.revoke_quietly().await;
                return Err(e.into());
            }
        };
        match holder {
            None => Ok(Some(Box::new(lease))),
            // Our own create, whose first answer was lost and which the
            // next endpoint saw committed.
            Some(kv) if kv.lease == granted.id => Ok(Some(Box::new(lease))),
            Some(kv) => {
                debug!(key, holder = %String::from_utf8_lossy(&kv.value), "lease held");
                lease.revoke_quietly().await;
                Ok(None)
            }
        }
    }
}

/// A lease this process holds in etcd.
struct EtcdLease {
    etcd: Arc<Gateway>,
    key: String,
    owner: String,
    id: i64,
    expires_ms: i64,
}

impl fmt::Debug for EtcdLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLease")
            .field("key", &self.key)
            .field("owner", &self.owner)
            .field("id", &self.id)
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

impl EtcdLease {
    /// Revokes the etcd lease, logging a failure: unrevoked, it expires.
    async fn revoke_quietly(&self) {
        if let Err(e) = self.etcd.lease_revoke(self.id).await {
            warn!(key = %self.key, lease = self.id, error = %e, "revoking an etcd lease failed; it will expire");
        }
    }
}

#[async_trait]
impl HeldLease for EtcdLease {
    fn expires_ms(&self) -> i64 {
        self.expires_ms
    }

    async fn renew(&mut self, now_ms: i64) -> Result<bool> {
        let ttl_s = self.etcd.lease_keepalive(self.id).await?;
        if ttl_s == 0 {
            debug!(key = %self.key, "etcd lease expired before its renewal");
            return Ok(false);
        }
        // The lease lives; the key could still have been deleted by hand.
        let kvs = self.etcd.range(self.key.as_bytes(), false, false).await?;
        let ours = kvs
            .first()
            .is_some_and(|kv| kv.lease == self.id && kv.value == self.owner.as_bytes());
        if !ours {
            debug!(key = %self.key, "lease key gone or taken over");
            self.revoke_quietly().await;
            return Ok(false);
        }
        self.expires_ms = now_ms + ttl_s * 1000;
        Ok(true)
    }

    async fn release(self: Box<Self>) -> Result<()> {
        // Not found: it had expired, which releases it just as well.
        self.etcd.lease_revoke(self.id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ttls_round_up_to_seconds_and_keys_follow_the_layout() {
        assert_eq!(ttl_seconds(1), 1);
        assert_eq!(ttl_seconds(1000), 1);
        assert_eq!(ttl_seconds(1001), 2);
        assert_eq!(ttl_seconds(300_000), 300);
        assert_eq!(ttl_seconds(0), 1);
        let gw = Gateway::new(
            &["http://127.0.0.1:1".to_string()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client");
        let l = EtcdLeases::new(gw, "/strata/leases/");
        let t = TenantId::new("team-a").expect("tenant");
        assert_eq!(
            l.key("compactor", &t, "1700000000000"),
            "/strata/leases/compactor/team-a/1700000000000"
        );
    }

    #[tokio::test]
    async fn an_unreachable_etcd_is_an_error_not_a_panic() {
        let gw = Gateway::new(
            &["http://127.0.0.1:1".to_string()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .expect("client");
        let l = EtcdLeases::new(gw, "/x");
        let t = TenantId::new("t").expect("tenant");
        let e = l
            .try_acquire("j", &t, "s", "a", 1000, 0)
            .await
            .expect_err("no etcd");
        assert!(e.to_string().contains("etcd unavailable"), "{e}");
    }
}
