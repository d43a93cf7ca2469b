//! HA-pair deduplication, as Cortex and Mimir do it: two Prometheus replicas
//! of one cluster send the same series with the same `cluster` label and a
//! different `__replica__` label; one replica per (tenant, cluster) is
//! elected and only its samples are stored, without the replica label, so
//! the stored series do not change when the replicas change. Samples of the
//! other replica are dropped and the request is answered 202, so Prometheus
//! does not retry them. When the elected replica has not been heard from for
//! `failover_timeout`, the next replica that sends is elected.
//!
//! Rules taken from Mimir (`pkg/distributor/ha_tracker.go` and the
//! "Configure high-availability deduplication" guide):
//! - only the labels of the first series of a request are looked at; a
//!   request without both labels is stored as it is;
//! - the elected replica and the time it was last heard from are only
//!   written when that time is older than `update_timeout` (a heartbeat), so
//!   an ingester decides from memory for `update_timeout` after each write
//!   or read, and asks the store at most once per `update_timeout` per
//!   cluster;
//! - a different replica takes over when the stored time is older than
//!   `failover_timeout`, which must exceed `update_timeout` by at least 1 s.
//!
//! Shared state. Ingesters are stateless, so the election lives on the
//! object store, one chain of generations per (tenant, cluster):
//! `_system/ha_tracker/<tenant>/<cluster>/<generation>.json`, each holding
//! `{replica, received_at_ms, elected_at_ms}`. A change (election, heartbeat,
//! failover) creates generation `n + 1` with create-if-absent after reading
//! generation `n`; of two ingesters racing, one wins and the other re-reads
//! and decides again, so every ingester that writes agrees with the store.
//! Readers list the prefix and read the newest generation (the pattern of
//! `storage::lease`); the writer of a generation deletes those four or more
//! behind it. Like Mimir, this trusts the ingesters' clocks to be roughly in
//! sync.
//!
//! Why an ingester may decide from memory: a cached generation read at any
//! time says replica `r` was heard from at `t`. Nobody can elect another
//! replica before `t + failover_timeout`, because the newest generation's
//! time is at least `t`; the cache is used only until `t + update_timeout`,
//! which is earlier.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use storage::{Series, TenantId};
use tracing::{debug, info, warn};
use xxhash_rust::xxh3::xxh3_64;

use crate::clock::Clock;
use crate::error::IngestError;
use crate::metrics::IngestMetrics;

/// `[ingest.ha_tracker]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HaTrackerConfig {
    /// Deduplicate HA pairs for every tenant (Mimir's `accept_ha_samples`).
    pub accept_ha_samples: bool,
    /// Per-tenant override of `accept_ha_samples`, e.g. `{ team-a = true }`.
    pub tenant_accept_ha_samples: BTreeMap<String, bool>,
    /// Label naming the HA cluster (kept on stored series).
    pub cluster_label: String,
    /// Label naming the replica within its cluster (removed from stored series).
    pub replica_label: String,
    /// The elected replica's last-heard time is rewritten only when it is
    /// older than this.
    #[serde(with = "humantime_serde")]
    pub update_timeout: Duration,
    /// Another replica is elected once the elected one has not been heard
    /// from for this long.
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,
    /// Clusters per tenant an ingester keeps track of; a request for one
    /// more is rejected with 400. 0: no limit.
    pub max_clusters: usize,
}

impl Default for HaTrackerConfig {
    fn default() -> Self {
        Self {
            accept_ha_samples: false,
            tenant_accept_ha_samples: BTreeMap::new(),
            cluster_label: "cluster".into(),
            replica_label: "__replica__".into(),
            update_timeout: Duration::from_secs(15),
            failover_timeout: Duration::from_secs(30),
            max_clusters: 100,
        }
    }
}

impl HaTrackerConfig {
    /// Checks the config; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (field, name) in [
            ("cluster_label", &self.cluster_label),
            ("replica_label", &self.replica_label),
        ] {
            if !storage::labels::is_valid_label_name(name) {
                return Err(format!(
                    "ingest.ha_tracker.{field}: {name:?} is not a valid label name"
                ));
            }
        }
        if self.cluster_label == self.replica_label {
            return Err("ingest.ha_tracker.replica_label: must differ from cluster_label".into());
        }
        if self.update_timeout.is_zero() {
            return Err("ingest.ha_tracker.update_timeout: must be greater than 0".into());
        }
        if self.failover_timeout < self.update_timeout + Duration::from_secs(1) {
            return Err(format!(
                "ingest.ha_tracker.failover_timeout: {:?} must be at least 1s longer than update_timeout ({:?})",
                self.failover_timeout, self.update_timeout
            ));
        }
        for tenant in self.tenant_accept_ha_samples.keys() {
            TenantId::new(tenant)
                .map_err(|e| format!("ingest.ha_tracker.tenant_accept_ha_samples: {e}"))?;
        }
        Ok(())
    }

    pub fn enabled_for(&self, tenant: &TenantId) -> bool {
        self.tenant_accept_ha_samples
            .get(tenant.as_str())
            .copied()
            .unwrap_or(self.accept_ha_samples)
    }
}

/// What is stored in each generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct ReplicaDesc {
    /// The cluster name in full (the key may hold a hash of it).
    cluster: String,
    replica: String,
    /// When the replica was last heard from, as far as the store knows.
    received_at_ms: i64,
    /// When it was elected.
    elected_at_ms: i64,
}

/// Per (tenant, cluster): the newest generation this ingester has read or
/// written, and a lock so that one request at a time asks the store.
#[derive(Default)]
struct ClusterState {
    cached: Mutex<Option<ReplicaDesc>>,
    check: tokio::sync::Mutex<()>,
}

/// Generations kept behind the newest one (history, and slack for readers
/// that listed just before a prune).
const KEEP_GENERATIONS: u64 = 4;
/// Re-reads after losing a race before giving up with a 503.
const ATTEMPTS: usize = 5;
/// A cluster not heard from for this long no longer counts against
/// `max_clusters` (Mimir's deletion timeout).
const FORGET_AFTER_MS: i64 = 30 * 60 * 1000;

/// The decision for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request is from the elected replica: store it, without the
    /// replica label.
    Accept,
    /// Another replica is elected: drop the request.
    Reject { elected: String },
}

pub struct HaTracker {
    store: Arc<dyn ObjectStore>,
    config: HaTrackerConfig,
    clock: Arc<dyn Clock>,
    metrics: IngestMetrics,
    clusters: Mutex<HashMap<TenantId, HashMap<String, Arc<ClusterState>>>>,
}

impl HaTracker {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: HaTrackerConfig,
        clock: Arc<dyn Clock>,
        metrics: IngestMetrics,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            metrics,
            clusters: Mutex::default(),
        }
    }

    pub fn config(&self) -> &HaTrackerConfig {
        &self.config
    }

    /// Applies deduplication to the series of one request of `tenant`: the
    /// series to store (replica label removed when the request is from the
    /// elected replica), or [`IngestError::ReplicaNotElected`] when it is to
    /// be dropped.
    pub async fn dedupe(
        &self,
        tenant: &TenantId,
        mut series: Vec<Series>,
    ) -> Result<Vec<Series>, IngestError> {
        if !self.config.enabled_for(tenant) {
            return Ok(series);
        }
        let Some(first) = series.first() else {
            return Ok(series);
        };
        let (Some(cluster), Some(replica)) = (
            first.labels.get(&self.config.cluster_label),
            first.labels.get(&self.config.replica_label),
        ) else {
            return Ok(series);
        };
        let (cluster, replica) = (cluster.to_string(), replica.to_string());
        match self.check(tenant, &cluster, &replica).await? {
            Decision::Accept => {
                let name = self.config.replica_label.as_str();
                for s in &mut series {
                    if s.labels.get(name).is_some() {
                        s.labels = s.labels.without(name);
                    }
                }
                Ok(series)
            }
            Decision::Reject { elected } => {
                let samples: usize = series.iter().map(|s| s.samples.len()).sum();
                self.metrics.ha_deduplicated_samples.inc_by(samples as u64);
                Err(IngestError::ReplicaNotElected {
                    cluster,
                    replica,
                    elected,
                })
            }
        }
    }

    /// Whether samples of `replica` of `cluster` are to be stored now.
    pub async fn check(
        &self,
        tenant: &TenantId,
        cluster: &str,
        replica: &str,
    ) -> Result<Decision, IngestError> {
        let state = self.cluster_state(tenant, cluster)?;
        if let Some(d) = self.cached_decision(&state, replica) {
            return Ok(d);
        }
        // One request per cluster asks the store; the others then find the
        // fresh answer in the cache.
        let _one = state.check.lock().await;
        if let Some(d) = self.cached_decision(&state, replica) {
            return Ok(d);
        }
        let prefix = cluster_prefix(tenant, cluster);
        for _ in 0..ATTEMPTS {
            let now = self.clock.now_ms();
            let (newest, desc, listed) = self.read_newest(&prefix).await?;
            let update = self.config.update_timeout.as_millis() as i64;
            let failover = self.config.failover_timeout.as_millis() as i64;
            let (next, election) = match desc {
                Some(d) if d.replica == replica && now - d.received_at_ms < update => {
                    remember(&state, d);
                    return Ok(Decision::Accept);
                }
                Some(d) if d.replica != replica && now - d.received_at_ms < failover => {
                    let elected = d.replica.clone();
                    remember(&state, d);
                    return Ok(Decision::Reject { elected });
                }
                // Heartbeat of the elected replica.
                Some(d) if d.replica == replica => (
                    ReplicaDesc {
                        received_at_ms: now,
                        ..d
                    },
                    false,
                ),
                // First election, or failover.
                _ => (
                    ReplicaDesc {
                        cluster: cluster.to_string(),
                        replica: replica.to_string(),
                        received_at_ms: now,
                        elected_at_ms: now,
                    },
                    true,
                ),
            };
            let generation = newest + 1;
            if self.try_create(&prefix, generation, &next).await? {
                if election {
                    self.metrics.ha_elected_replica_changes.inc();
                    info!(tenant = %tenant, cluster, replica, generation, "HA replica elected");
                } else {
                    debug!(tenant = %tenant, cluster, replica, generation, "HA replica heartbeat");
                }
                self.prune(&listed, generation).await;
                remember(&state, next);
                return Ok(Decision::Accept);
            }
            debug!(tenant = %tenant, cluster, generation, "HA tracker lost a race; re-reading");
        }
        Err(IngestError::HaTracker(format!(
            "cluster {cluster:?}: gave up after {ATTEMPTS} conflicting updates"
        )))
    }

    /// The decision the cache allows without asking the store, if any.
    fn cached_decision(&self, state: &ClusterState, replica: &str) -> Option<Decision> {
        let cached = state.cached.lock().ok()?.clone()?;
        let age = self.clock.now_ms() - cached.received_at_ms;
        if age >= self.config.update_timeout.as_millis() as i64 {
            return None;
        }
        Some(if cached.replica == replica {
            Decision::Accept
        } else {
            Decision::Reject {
                elected: cached.replica,
            }
        })
    }

    fn cluster_state(
        &self,
        tenant: &TenantId,
        cluster: &str,
    ) -> Result<Arc<ClusterState>, IngestError> {
        let mut all = self
            .clusters
            .lock()
            .map_err(|_| IngestError::HaTracker("state lock poisoned".into()))?;
        let clusters = all.entry(tenant.clone()).or_default();
        if let Some(s) = clusters.get(cluster) {
            return Ok(s.clone());
        }
        let limit = self.config.max_clusters;
        if limit > 0 && clusters.len() >= limit {
            let now = self.clock.now_ms();
            clusters.retain(|_, s| {
                let last = s
                    .cached
                    .lock()
                    .ok()
                    .and_then(|c| c.as_ref().map(|d| d.received_at_ms));
                // Keep clusters heard from lately, and those being checked.
                last.is_some_and(|t| now - t < FORGET_AFTER_MS) || s.check.try_lock().is_err()
            });
            if clusters.len() >= limit {
                return Err(IngestError::TooManyHaClusters { limit });
            }
        }
        let s = Arc::new(ClusterState::default());
        clusters.insert(cluster.to_string(), s.clone());
        Ok(s)
    }

    /// The newest generation number (0: none), its content (`None` if there
    /// is none or it is unreadable), and every generation listed.
    async fn read_newest(
        &self,
        prefix: &Path,
    ) -> Result<(u64, Option<ReplicaDesc>, Vec<(u64, Path)>), IngestError> {
        for _ in 0..ATTEMPTS {
            let listed: Vec<(u64, Path)> = self
                .store
                .list(Some(prefix))
                .try_filter_map(|m| async move {
                    Ok(storage::paths::parse_lease(&m.location).map(|g| (g, m.location)))
                })
                .try_collect()
                .await
                .map_err(|e| store_error("list", prefix, e))?;
            let Some((newest, key)) = listed.iter().max_by_key(|(g, _)| *g).cloned() else {
                return Ok((0, None, listed));
            };
            let bytes = match self.store.get(&key).await {
                Ok(r) => r.bytes().await.map_err(|e| store_error("get", &key, e))?,
                // Pruned between the listing and the read: a newer one exists.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(store_error("get", &key, e)),
            };
            // Unreadable content counts as "nobody elected": the next writer
            // replaces it with a new generation.
            let desc = serde_json::from_slice(&bytes)
                .map_err(|e| warn!(key = %key, error = %e, "unreadable HA tracker object"))
                .ok();
            return Ok((newest, desc, listed));
        }
        Err(IngestError::HaTracker(format!(
            "{prefix}: generations kept disappearing while reading"
        )))
    }

    /// Creates generation `generation`; `Ok(false)` when it already exists.
    async fn try_create(
        &self,
        prefix: &Path,
        generation: u64,
        desc: &ReplicaDesc,
    ) -> Result<bool, IngestError> {
        let key = generation_key(prefix, generation);
        let body = serde_json::to_vec(desc).map_err(|e| IngestError::HaTracker(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&key, Bytes::from(body).into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(store_error("put", &key, e)),
        }
    }

    /// Deletes listed generations `KEEP_GENERATIONS` or more behind `newest`.
    async fn prune(&self, listed: &[(u64, Path)], newest: u64) {
        for (g, key) in listed {
            if g + KEEP_GENERATIONS <= newest
                && let Err(e) = self.store.delete(key).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                debug!(key = %key, error = %e, "deleting an old HA tracker generation failed");
            }
        }
    }
}

fn remember(state: &ClusterState, desc: ReplicaDesc) {
    if let Ok(mut c) = state.cached.lock() {
        *c = Some(desc);
    }
}

fn store_error(op: &str, key: &Path, e: object_store::Error) -> IngestError {
    IngestError::HaTracker(format!("object store {op} {key}: {e}"))
}

/// Prefix of one cluster's generations. The cluster name is used as it is
/// when it is a short, plain name (starting with a letter or digit), and as
/// `_` and a hash otherwise (a label value may hold anything, including `/`). The object layout lives here,
/// not in `storage::paths`, because only the ingest tier reads it.
fn cluster_prefix(tenant: &TenantId, cluster: &str) -> Path {
    let plain = cluster.len() <= 64
        && cluster.starts_with(|c: char| c.is_ascii_alphanumeric())
        && cluster
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    let part = if plain {
        cluster.to_string()
    } else {
        format!("_{:016x}", xxh3_64(cluster.as_bytes()))
    };
    Path::from_iter(["_system", "ha_tracker", tenant.as_str(), part.as_str()])
}

/// Key of one generation: 20 digits, so listing order is generation order.
fn generation_key(prefix: &Path, generation: u64) -> Path {
    prefix.clone().join(format!("{generation:020}.json"))
}

#[cfg(test)]
mod tests;
