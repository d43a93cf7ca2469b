//! Job leases: a compactor (or aggregator) takes a lease per shard of work
//! before it touches that shard, so two copies of a job never work on the
//! same shard at once, and a crashed holder's lease simply expires. The
//! manifest's conditional commit, not the lease, is what keeps results
//! correct if a lease ever fails (clock skew, a paused holder).
//!
//! One trait, [`LeaseBackend`], with two backends chosen by `[leases]`
//! ([`config`]), both passing the same suite ([`conformance`]):
//!
//! - the object store ([`ObjectStoreLeases`], the default). A shard's lease
//!   is a sequence of generations,
//!   `_system/leases/<job>/<tenant>/<shard>/<generation>.json`, each holding
//!   `{owner, expires_ms}`. Taking the lease means creating the next
//!   generation with create-if-absent, which only one contender can win, and
//!   only once the newest generation has expired or been released. The
//!   holder renews by rewriting its own generation before it expires and
//!   then checking that no newer generation exists. Expiry is judged on the
//!   contenders' clocks, so this relies on them being roughly in sync.
//! - etcd ([`etcd::EtcdLeases`]): a key per shard created under an etcd
//!   lease with a TTL, renewed by keep-alive, released by revoking; expiry
//!   is judged by etcd's clock alone.

use async_trait::async_trait;
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

pub mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod etcd;

pub use config::{LeasesBackend, LeasesConfig};

/// Where leases are taken.
#[async_trait]
pub trait LeaseBackend: Send + Sync {
    /// Takes the lease of (`job`, `tenant`, `shard`) for `owner` for
    /// `ttl_ms` unless someone else holds it. `Ok(None)`: held by another
    /// owner (or lost a race to take it). `now_ms` is the caller's clock.
    async fn try_acquire(
        &self,
        job: &str,
        tenant: &TenantId,
        shard: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>>;
}

/// A lease this process holds.
pub type Lease = Box<dyn HeldLease>;

/// A lease this process holds, of either backend.
#[async_trait]
pub trait HeldLease: Send + Sync + std::fmt::Debug {
    /// When the lease runs out unless renewed, on the caller's clock (for
    /// etcd an estimate that errs early).
    fn expires_ms(&self) -> i64;

    /// Extends the lease by its ttl from `now_ms`. `Ok(false)`: the lease is
    /// lost (it expired before the renewal, or someone else took it); the
    /// holder must stop working on the shard.
    async fn renew(&mut self, now_ms: i64) -> Result<bool>;

    /// Gives the lease up so the next contender need not wait for expiry.
    async fn release(self: Box<Self>) -> Result<()>;
}

/// Leases as generations of objects on `store` (see the module docs).
#[derive(Clone, Debug)]
pub struct ObjectStoreLeases {
    store: Arc<dyn ObjectStore>,
}

impl ObjectStoreLeases {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl LeaseBackend for ObjectStoreLeases {
    async fn try_acquire(
        &self,
        job: &str,
        tenant: &TenantId,
        shard: &str,
        owner: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Lease>> {
        let lease = try_acquire(
            self.store.clone(),
            job,
            tenant,
            shard,
            owner,
            ttl_ms,
            now_ms,
        )
        .await?;
        Ok(lease.map(|l| Box::new(l) as Lease))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    expires_ms: i64,
}

/// A lease on the object store.
#[derive(Debug)]
struct ObjectLease {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    key: Path,
    generation: u64,
    owner: String,
    expires_ms: i64,
    ttl_ms: i64,
}

async fn try_acquire(
    store: Arc<dyn ObjectStore>,
    job: &str,
    tenant: &TenantId,
    shard: &str,
    owner: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<Option<ObjectLease>> {
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
    Ok(Some(ObjectLease {
        store,
        prefix,
        key,
        generation,
        owner: owner.to_string(),
        expires_ms: body.expires_ms,
        ttl_ms,
    }))
}

#[async_trait]
impl HeldLease for ObjectLease {
    fn expires_ms(&self) -> i64 {
        self.expires_ms
    }

    async fn renew(&mut self, now_ms: i64) -> Result<bool> {
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

    async fn release(self: Box<Self>) -> Result<()> {
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
mod tests;
