//! The per-tenant manifest: which blocks are live, which segments (or parts
//! of segments) they already hold, and which objects wait for deletion.
//!
//! Every version is its own object, `tenants/<t>/manifest/<version>.json`,
//! written with create-if-absent: a writer that read version `n` commits by
//! creating `n + 1`, and of two writers racing for the same version exactly
//! one succeeds; the other re-reads and re-applies its change. This needs no
//! update-if-version support, which the local-filesystem store lacks, so the
//! same code runs on a laptop and on S3. A reader sees one version, hence the
//! old set of blocks or the new one, never a mix.
//!
//! A reader combines the manifest with a listing of segments: a segment that
//! the manifest does not mention is read whole; one with `done` ranges is read
//! except for those ranges (their samples are in blocks); a `replaced` one is
//! not read at all and is deleted after the grace period.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::error::{Result, StorageError};
use crate::paths;
use crate::tenant::TenantId;

/// The manifest format written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// How many times [`update`] re-reads and re-applies after losing a race.
const COMMIT_ATTEMPTS: usize = 20;

/// One version of a tenant's manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    /// Live blocks, sorted by partition; blocks of the same partition (an
    /// open window gets several) in commit order, later ones winning
    /// duplicates. Partitions of different lengths never overlap.
    pub blocks: Vec<BlockEntry>,
    /// Segments whose samples are (partly) in blocks, by segment id.
    pub segments: BTreeMap<String, SegmentEntry>,
    /// Blocks no longer live, kept until `since + grace` for queries that
    /// still read an older manifest version.
    pub retired_blocks: Vec<Retired>,
}

/// A live block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    /// Block id (ULID); the key is `paths::block(tenant, resolution, id)`.
    pub id: String,
    pub resolution: String,
    /// The partition `[start, end)` in ms.
    pub start: i64,
    pub end: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub samples: u64,
    pub series: u64,
    pub bytes: u64,
}

impl BlockEntry {
    /// Whether the block holds samples in `[start_ms, end_ms]`.
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        self.samples > 0 && self.min_time <= end_ms && self.max_time >= start_ms
    }
}

/// What the blocks already hold of one segment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// Time ranges `[start, end)` whose samples of this segment are in
    /// blocks; readers skip them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<[i64; 2]>,
    /// Set (ms) once every sample of the segment is in blocks (or past
    /// retention): readers skip the segment and the compactor deletes it
    /// after the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<i64>,
}

impl SegmentEntry {
    /// Whether the sample at `t` is already held by a block.
    pub fn is_done(&self, t: i64) -> bool {
        self.replaced_at.is_some() || self.done.iter().any(|&[s, e]| s <= t && t < e)
    }
}

/// An object waiting for deletion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retired {
    pub id: String,
    pub resolution: String,
    /// When it stopped being live (ms).
    pub since: i64,
}

impl Manifest {
    pub fn new() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            ..Self::default()
        }
    }

    pub fn segment(&self, id: &str) -> Option<&SegmentEntry> {
        self.segments.get(id)
    }

    /// Live blocks of `resolution` overlapping `[start_ms, end_ms]`.
    pub fn blocks_overlapping<'a>(
        &'a self,
        resolution: &'a str,
        start_ms: i64,
        end_ms: i64,
    ) -> impl Iterator<Item = &'a BlockEntry> + 'a {
        self.blocks
            .iter()
            .filter(move |b| b.resolution == resolution && b.overlaps(start_ms, end_ms))
    }
}

/// A manifest together with the version it was read as (0: none yet).
#[derive(Clone, Debug, Default)]
pub struct Versioned {
    pub version: u64,
    pub manifest: Arc<Manifest>,
}

/// The newest version of the tenant's manifest, found by listing.
pub async fn load_latest(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Versioned> {
    let prefix = paths::manifest_prefix(tenant);
    let newest = store
        .list(Some(&prefix))
        .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
        .try_fold(None::<u64>, |acc, m| async move {
            Ok(match paths::parse_manifest(&m.location) {
                Some(v) => Some(acc.map_or(v, |a: u64| a.max(v))),
                None => acc,
            })
        })
        .await?;
    let Some(version) = newest else {
        return Ok(Versioned {
            version: 0,
            manifest: Arc::new(Manifest::new()),
        });
    };
    match read_version(store, tenant, version).await? {
        Some(m) => Ok(m),
        // Listed but gone: pruned between list and get, so a newer one exists.
        None => advance(store, tenant, Versioned::default()).await,
    }
}

/// `known`, or a newer version if one exists: probes `version + 1`, `+ 2`, ...
/// (one request when nothing changed), so a reader with a cached manifest
/// needs no listing.
pub async fn advance(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    known: Versioned,
) -> Result<Versioned> {
    if known.version == 0 {
        // Nothing known: probing from 1 could walk a long, pruned history.
        return Box::pin(load_latest(store, tenant)).await;
    }
    let mut current = known;
    while let Some(next) = read_version(store, tenant, current.version + 1).await? {
        current = next;
    }
    Ok(current)
}

async fn read_version(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    version: u64,
) -> Result<Option<Versioned>> {
    let key = paths::manifest(tenant, version);
    let bytes = match store.get(&key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", key.as_ref(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(StorageError::store("get", key.as_ref(), e)),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
        key: key.to_string(),
        reason: format!("manifest: {e}"),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(StorageError::Corrupt {
            key: key.to_string(),
            reason: format!(
                "unsupported manifest format version {}",
                manifest.format_version
            ),
        });
    }
    Ok(Some(Versioned {
        version,
        manifest: Arc::new(manifest),
    }))
}

/// Creates version `base + 1` if nobody else did. `Ok(false)`: lost the race.
pub async fn try_commit(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    base: u64,
    manifest: &Manifest,
) -> Result<bool> {
    let key = paths::manifest(tenant, base + 1);
    let body = serde_json::to_vec(manifest).map_err(|e| StorageError::Encode(e.to_string()))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(&key, Bytes::from(body).into(), opts).await {
        Ok(_) => Ok(true),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(false),
        Err(e) => Err(StorageError::store("put", key.as_ref(), e)),
    }
}

/// What an [`update`] closure decides for the manifest it was given.
pub enum Change<T> {
    /// Commit this manifest as the next version, then return `T`.
    Commit(Manifest, T),
    /// Leave the manifest as it is and return `T`.
    Keep(T),
}

/// Read-modify-write with retries: `change` is applied to the newest version
/// and its result committed as the next one; when another writer committed
/// first, `change` runs again on the fresh version. Returns the version the
/// result is in and `change`'s value.
pub async fn update<T>(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    mut known: Versioned,
    mut change: impl FnMut(&Manifest) -> Result<Change<T>>,
) -> Result<(Versioned, T)> {
    for attempt in 0..COMMIT_ATTEMPTS {
        known = advance(store, tenant, known).await?;
        match change(&known.manifest)? {
            Change::Keep(t) => return Ok((known, t)),
            Change::Commit(next, t) => {
                if try_commit(store, tenant, known.version, &next).await? {
                    let version = known.version + 1;
                    debug!(tenant = %tenant, version, "manifest committed");
                    return Ok((
                        Versioned {
                            version,
                            manifest: Arc::new(next),
                        },
                        t,
                    ));
                }
                debug!(tenant = %tenant, attempt, "manifest commit lost a race; retrying");
            }
        }
    }
    Err(StorageError::Conflict {
        key: paths::manifest_prefix(tenant).to_string(),
        attempts: COMMIT_ATTEMPTS,
    })
}

/// Deletes manifest versions older than the newest `keep`, oldest first.
/// Readers only ever probe forward from the version they hold, so old
/// versions are history, not state.
pub async fn prune(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    current: u64,
    keep: u64,
) -> Result<usize> {
    let prefix = paths::manifest_prefix(tenant);
    let old: Vec<_> = store
        .list(Some(&prefix))
        .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
        .try_filter_map(|m| async move {
            Ok(paths::parse_manifest(&m.location)
                .filter(|&v| v + keep <= current)
                .map(|_| m.location))
        })
        .try_collect()
        .await?;
    for key in &old {
        match store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(StorageError::store("delete", key.as_ref(), e)),
        }
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn tenant() -> TenantId {
        TenantId::new("t").expect("tenant")
    }

    fn block(id: &str, start: i64) -> BlockEntry {
        BlockEntry {
            id: id.into(),
            resolution: "raw".into(),
            start,
            end: start + 10,
            min_time: start,
            max_time: start + 9,
            samples: 1,
            series: 1,
            bytes: 1,
        }
    }

    #[tokio::test]
    async fn starts_empty_and_commits_versions_in_order() {
        let store = InMemory::new();
        let t = tenant();
        let v0 = load_latest(&store, &t).await.expect("load");
        assert_eq!(v0.version, 0);
        assert_eq!(*v0.manifest, Manifest::new());
        let (v1, ()) = update(&store, &t, v0.clone(), |m| {
            let mut n = m.clone();
            n.blocks.push(block("a", 0));
            Ok(Change::Commit(n, ()))
        })
        .await
        .expect("update");
        assert_eq!(v1.version, 1);
        let latest = load_latest(&store, &t).await.expect("load");
        assert_eq!(latest.version, 1);
        assert_eq!(latest.manifest.blocks, vec![block("a", 0)]);
        // A reader holding version 0 catches up by probing.
        let caught_up = advance(&store, &t, v0).await.expect("advance");
        assert_eq!(caught_up.version, 1);
    }

    #[tokio::test]
    async fn a_racing_writer_reapplies_its_change_on_the_fresh_version() {
        let store = InMemory::new();
        let t = tenant();
        let base = load_latest(&store, &t).await.expect("load");
        // Writer A commits version 1 behind B's back.
        let mut a = Manifest::new();
        a.blocks.push(block("a", 0));
        assert!(try_commit(&store, &t, 0, &a).await.expect("commit"));
        // B also read version 0; its first attempt must see A's block.
        let mut seen = Vec::new();
        let (v, ()) = update(&store, &t, base.clone(), |m| {
            seen.push(m.blocks.len());
            let mut n = m.clone();
            n.blocks.push(block("b", 10));
            Ok(Change::Commit(n, ()))
        })
        .await
        .expect("update");
        assert_eq!(seen, vec![1]);
        assert_eq!(v.version, 2);
        let ids: Vec<_> = v.manifest.blocks.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        // A stale writer's direct commit of version 1 fails.
        assert!(
            !try_commit(&store, &t, 0, &Manifest::new())
                .await
                .expect("commit")
        );
    }

    #[tokio::test]
    async fn prune_keeps_the_newest_versions_and_readers_still_load() {
        let store = InMemory::new();
        let t = tenant();
        let mut v = load_latest(&store, &t).await.expect("load");
        for i in 0..5 {
            (v, ()) = update(&store, &t, v, |m| {
                let mut n = m.clone();
                n.blocks.push(block(&i.to_string(), i * 10));
                Ok(Change::Commit(n, ()))
            })
            .await
            .expect("update");
        }
        assert_eq!(prune(&store, &t, v.version, 2).await.expect("prune"), 3);
        let latest = load_latest(&store, &t).await.expect("load");
        assert_eq!(latest.version, 5);
        assert_eq!(latest.manifest.blocks.len(), 5);
        assert_eq!(
            advance(&store, &t, Versioned::default())
                .await
                .expect("advance")
                .version,
            5
        );
    }

    #[tokio::test]
    async fn corrupt_or_future_manifests_are_errors() {
        let store = InMemory::new();
        let t = tenant();
        store
            .put(
                &paths::manifest(&t, 1),
                Bytes::from_static(b"{not json").into(),
            )
            .await
            .expect("put");
        let err = load_latest(&store, &t).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        let future = br#"{"format_version":9,"blocks":[],"segments":{},"retired_blocks":[]}"#;
        store
            .put(&paths::manifest(&t, 2), Bytes::from_static(future).into())
            .await
            .expect("put");
        let err = load_latest(&store, &t).await.unwrap_err().to_string();
        assert!(err.contains("format version 9"), "{err}");
    }

    #[test]
    fn segment_entries_say_which_samples_are_done() {
        let e = SegmentEntry {
            done: vec![[0, 10], [20, 30]],
            replaced_at: None,
        };
        assert!(e.is_done(0) && e.is_done(9) && e.is_done(25));
        assert!(!e.is_done(10) && !e.is_done(19) && !e.is_done(30));
        let r = SegmentEntry {
            done: vec![],
            replaced_at: Some(1),
        };
        assert!(r.is_done(12345));
    }
}
