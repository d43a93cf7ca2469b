//! Job leases on the object store: a compactor (or aggregator) takes a lease
//! per shard of work before it touches that shard, so two copies of a job
//! never work on the same shard at once, and a crashed holder's lease simply
//! expires.
//!
//! A shard's lease is a sequence of generations,
//! `_system/leases/<job>/<tenant>/<shard>/<generation>.json`, each holding
//! `{owner, expires_ms}`. Taking the lease means creating the next generation
//! with create-if-absent, which only one contender can win, and only once the
//! newest generation has expired or been released. The holder renews by
//! rewriting its own generation before it expires and then checking that no
//! newer generation exists. Like every lease this relies on clocks being
//! roughly in sync; the manifest's conditional commit, not the lease, is what
//! keeps results correct if that ever fails.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::debug;

use crate::error::{Result, StorageError};
use crate::paths;
use crate::tenant::TenantId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    expires_ms: i64,
}

/// A lease this process holds.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    key: Path,
    generation: u64,
    owner: String,
    expires_ms: i64,
    ttl_ms: i64,
}

/// Takes the lease of `shard` for `owner` unless someone else holds it.
/// `Ok(None)`: held by another owner (or lost a race to take it).
pub async fn try_acquire(
    store: Arc<dyn ObjectStore>,
    job: &str,
    tenant: &TenantId,
    shard: &str,
    owner: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<Option<Lease>> {
    let prefix = paths::lease_prefix(job, tenant, shard);
    let mut generations: Vec<(u64, Path)> = store
        .list(Some(&prefix))
        .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
        .try_filter_map(
            |m| async move { Ok(paths::parse_lease(&m.location).map(|g| (g, m.location))) },
        )
        .try_collect()
        .await?;
    generations.sort_unstable_by_key(|(g, _)| *g);
    let newest = generations.last().map(|(g, _)| *g).unwrap_or(0);
    if newest > 0 {
        let key = paths::lease(job, tenant, shard, newest);
        if let Some(body) = read(store.as_ref(), &key).await?
            && body.expires_ms > now_ms
        {
            debug!(shard, holder = %body.owner, "lease held");
            return Ok(None);
        }
    }
    let generation = newest + 1;
    let key = paths::lease(job, tenant, shard, generation);
    let body = LeaseBody {
        owner: owner.to_string(),
        expires_ms: now_ms + ttl_ms,
    };
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(&key, encode(&body)?, opts).await {
        Ok(_) => {}
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {
            return Ok(None);
        }
        Err(e) => return Err(StorageError::store("put", key.as_ref(), e)),
    }
    // Older generations are history; removing them keeps listings short.
    for (_, old) in &generations {
        let _ = store.delete(old).await;
    }
    Ok(Some(Lease {
        store,
        prefix,
        key,
        generation,
        owner: owner.to_string(),
        expires_ms: body.expires_ms,
        ttl_ms,
    }))
}

impl Lease {
    pub fn expires_ms(&self) -> i64 {
        self.expires_ms
    }

    /// Extends the lease by its ttl from `now_ms`. `Ok(false)`: the lease is
    /// lost (it expired before the renewal, or someone took a newer
    /// generation); the holder must stop working on the shard.
    pub async fn renew(&mut self, now_ms: i64) -> Result<bool> {
        if now_ms >= self.expires_ms {
            return Ok(false);
        }
        let body = LeaseBody {
            owner: self.owner.clone(),
            expires_ms: now_ms + self.ttl_ms,
        };
        self.store
            .put(&self.key, encode(&body)?)
            .await
            .map_err(|e| StorageError::store("put", self.key.as_ref(), e))?;
        let next = self
            .prefix
            .clone()
            .join(format!("{:020}.json", self.generation + 1));
        match self.store.head(&next).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::store("head", next.as_ref(), e)),
        }
        self.expires_ms = body.expires_ms;
        Ok(true)
    }

    /// Gives the lease up so the next contender need not wait for expiry.
    pub async fn release(self) -> Result<()> {
        let body = LeaseBody {
            owner: self.owner.clone(),
            expires_ms: 0,
        };
        self.store
            .put(&self.key, encode(&body)?)
            .await
            .map_err(|e| StorageError::store("put", self.key.as_ref(), e))?;
        Ok(())
    }
}

fn encode(body: &LeaseBody) -> Result<object_store::PutPayload> {
    let v = serde_json::to_vec(body).map_err(|e| StorageError::Encode(e.to_string()))?;
    Ok(Bytes::from(v).into())
}

async fn read(store: &dyn ObjectStore, key: &Path) -> Result<Option<LeaseBody>> {
    let bytes = match store.get(key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", key.as_ref(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(StorageError::store("get", key.as_ref(), e)),
    };
    // An unreadable lease is treated as expired: the worst case is two
    // workers on one shard, which the manifest's conditional commit absorbs.
    Ok(serde_json::from_slice(&bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn setup() -> (Arc<dyn ObjectStore>, TenantId) {
        (
            Arc::new(InMemory::new()),
            TenantId::new("t").expect("tenant"),
        )
    }

    #[tokio::test]
    async fn only_one_holder_until_release_or_expiry() {
        let (store, t) = setup();
        let a = try_acquire(store.clone(), "compactor", &t, "0", "a", 1000, 0)
            .await
            .expect("acquire")
            .expect("free lease");
        assert!(
            try_acquire(store.clone(), "compactor", &t, "0", "b", 1000, 500)
                .await
                .expect("acquire")
                .is_none()
        );
        // Another shard is independent.
        assert!(
            try_acquire(store.clone(), "compactor", &t, "1", "b", 1000, 500)
                .await
                .expect("acquire")
                .is_some()
        );
        a.release().await.expect("release");
        let b = try_acquire(store.clone(), "compactor", &t, "0", "b", 1000, 600)
            .await
            .expect("acquire")
            .expect("released lease is free");
        // b crashes (never renews): after expiry c takes over.
        assert!(
            try_acquire(store.clone(), "compactor", &t, "0", "c", 1000, 1599)
                .await
                .expect("acquire")
                .is_none()
        );
        let c = try_acquire(store.clone(), "compactor", &t, "0", "c", 1000, 1600)
            .await
            .expect("acquire");
        assert!(c.is_some());
        // b wakes up: its renewal fails, so it stops.
        let mut b = b;
        assert!(!b.renew(1700).await.expect("renew"));
    }

    #[tokio::test]
    async fn renewal_extends_and_detects_a_takeover() {
        let (store, t) = setup();
        let mut a = try_acquire(store.clone(), "j", &t, "s", "a", 1000, 0)
            .await
            .expect("acquire")
            .expect("free");
        assert!(a.renew(900).await.expect("renew"));
        assert_eq!(a.expires_ms(), 1900);
        assert!(
            try_acquire(store.clone(), "j", &t, "s", "b", 1000, 1500)
                .await
                .expect("acquire")
                .is_none()
        );
        // A takeover that happened anyway (clock skew) is noticed on renewal.
        let b = try_acquire(store.clone(), "j", &t, "s", "b", 1000, 5000)
            .await
            .expect("acquire");
        assert!(b.is_some());
        assert!(!a.renew(1800).await.expect("renew"));
    }

    #[tokio::test]
    async fn racing_contenders_get_one_lease() {
        let (store, t) = setup();
        let tries = (0..8).map(|i| {
            let store = store.clone();
            let t = t.clone();
            async move {
                try_acquire(store, "j", &t, "s", &format!("w{i}"), 1000, 0)
                    .await
                    .expect("acquire")
                    .is_some()
            }
        });
        let won = futures::future::join_all(tries).await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1);
    }
}
