//! Chains of versioned JSON objects, `<prefix>/<version, 20 digits>.json`,
//! each created with create-if-absent: the pattern of the manifest
//! (`storage::manifest`), reused for rule sets and checkpoints. A writer that
//! read version `n` commits by creating `n + 1`; of two racing writers one
//! wins and the other re-reads. Works on every store, including the local
//! filesystem, which has no update-if-version.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::{StorageError, paths};

/// Every version under `prefix`, ascending.
pub async fn versions(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<u64>, StorageError> {
    let mut v: Vec<u64> = store
        .list(Some(prefix))
        .map_err(|e| StorageError::store("list", prefix.as_ref(), e))
        .try_filter_map(|m| async move { Ok(paths::parse_manifest(&m.location)) })
        .try_collect()
        .await?;
    v.sort_unstable();
    Ok(v)
}

/// The object at `key`, or `None` if it does not exist.
pub async fn read<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Option<T>, StorageError> {
    let bytes = match store.get(key).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| StorageError::store("get", key.as_ref(), e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(StorageError::store("get", key.as_ref(), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StorageError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

/// Creates `key` unless it exists. `Ok(false)`: another writer was first.
pub async fn create<T: Serialize>(
    store: &dyn ObjectStore,
    key: &Path,
    value: &T,
) -> Result<bool, StorageError> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| StorageError::Encode(e.to_string()))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store.put_opts(key, Bytes::from(body).into(), opts).await {
        Ok(_) => Ok(true),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(false),
        Err(e) => Err(StorageError::store("put", key.as_ref(), e)),
    }
}
