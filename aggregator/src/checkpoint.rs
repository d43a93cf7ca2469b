//! The aggregator's progress per tenant: for each namespace shard
//! (`<resolution>/<shard>`), the end of the contiguous run of aggregated
//! windows, and per recent window the fingerprint of the inputs it was
//! built from. A version chain under `_system/aggregator/<tenant>/checkpoint/`
//! (create-if-absent, like the manifest), advanced only after the window's
//! block is written and named in the manifest, so a crash in between
//! re-runs the window (at-least-once) and the deterministic block id makes
//! the re-run a no-op for readers (exactly-once results).

use std::collections::BTreeMap;

use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use storage::{StorageError, TenantId, paths};

use crate::chain;

pub const FORMAT_VERSION: u32 = 1;
const COMMIT_ATTEMPTS: usize = 20;
/// Versions kept as history.
const VERSIONS_KEPT: u64 = 16;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub format_version: u32,
    /// By `<resolution>/<shard>`.
    pub namespaces: BTreeMap<String, Progress>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Every window ending at or before this (ms) is aggregated.
    pub done_until: i64,
    /// Aggregated windows still checked for late data, by start (ms).
    pub windows: BTreeMap<i64, WindowDone>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDone {
    /// Fingerprint (hex) of the input objects the window was built from.
    pub inputs: String,
    /// Rule set version applied.
    pub rules_version: u64,
    /// The block written, if the window had any output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// A checkpoint and the version it was read as (0: none yet).
#[derive(Clone, Debug, Default)]
pub struct Versioned {
    pub version: u64,
    pub checkpoint: Checkpoint,
}

pub async fn load(store: &dyn ObjectStore, tenant: &TenantId) -> Result<Versioned, StorageError> {
    let versions = chain::versions(store, &paths::aggregator_checkpoint_prefix(tenant)).await?;
    let Some(&newest) = versions.last() else {
        return Ok(Versioned::default());
    };
    let mut current = Versioned {
        version: newest,
        checkpoint: read(store, tenant, newest).await?.unwrap_or_default(),
    };
    while let Some(next) = read(store, tenant, current.version + 1).await? {
        current = Versioned {
            version: current.version + 1,
            checkpoint: next,
        };
    }
    Ok(current)
}

async fn read(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    version: u64,
) -> Result<Option<Checkpoint>, StorageError> {
    let key = paths::aggregator_checkpoint(tenant, version);
    let c: Option<Checkpoint> = chain::read(store, &key).await?;
    if let Some(c) = &c
        && c.format_version != FORMAT_VERSION
    {
        return Err(StorageError::Corrupt {
            key: key.to_string(),
            reason: format!("unsupported checkpoint format {}", c.format_version),
        });
    }
    Ok(c)
}

/// Applies `change` to the newest checkpoint and commits it as the next
/// version, re-reading and re-applying after a lost race.
pub async fn update(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    mut change: impl FnMut(&mut Checkpoint),
) -> Result<Versioned, StorageError> {
    for _ in 0..COMMIT_ATTEMPTS {
        let current = load(store, tenant).await?;
        let mut next = current.checkpoint.clone();
        next.format_version = FORMAT_VERSION;
        change(&mut next);
        if next == current.checkpoint {
            return Ok(current);
        }
        let version = current.version + 1;
        if chain::create(store, &paths::aggregator_checkpoint(tenant, version), &next).await? {
            if version > VERSIONS_KEPT {
                // History beyond the newest versions is not state.
                let old = paths::aggregator_checkpoint(tenant, version - VERSIONS_KEPT);
                let _ = store.delete(&old).await;
            }
            return Ok(Versioned {
                version,
                checkpoint: next,
            });
        }
    }
    Err(StorageError::Conflict {
        key: paths::aggregator_checkpoint_prefix(tenant).to_string(),
        attempts: COMMIT_ATTEMPTS,
    })
}
