//! Snapshots for queries (the querier's resolution path, which reads
//! several namespaces from one consistent set of objects): built from the
//! tenant's query view, so they are reused for `query.view_max_age` like the
//! raw path's reads, and reading around corrupt objects like it.

use std::sync::Arc;

use ulid::Ulid;

use super::{Skipped, Snapshot, Source, Storage, skip_if_corrupt};
use crate::error::{Result, StorageError};
use crate::manifest::{Manifest, Versioned};
use crate::tenant::TenantId;

impl Storage {
    /// [`Storage::snapshot`] for queries: from the tenant's query view
    /// (a manifest and segment listing reused for `view_max_age`, with the
    /// segments this process wrote since added; block footers come from the
    /// index cache), so a query sends no request for it while the view is
    /// fresh. Blocks and segments whose index does not decode are left out
    /// and reported; a left-out block is left out of the returned manifest
    /// too, which stays aligned with `blocks`. The same bounded staleness as
    /// [`Storage::select_reporting`]: the view is never older than
    /// `view_max_age`, which is far below the compactor's grace period, so
    /// nothing it names has been deleted.
    pub async fn snapshot_reporting(&self, tenant: &TenantId) -> Result<(Snapshot, Vec<Skipped>)> {
        let view = self.view(tenant).await?;
        let mut skipped = view.corrupt.clone();
        let entries = &view.manifest.manifest.blocks;
        let results = self
            .block_sources(tenant, &view.manifest, entries.iter())
            .await;
        let mut kept_entries = Vec::with_capacity(entries.len());
        let mut blocks: Vec<Source> = Vec::with_capacity(entries.len());
        for (entry, result) in entries.iter().zip(results) {
            match result {
                Ok(src) => {
                    kept_entries.push(entry.clone());
                    blocks.push(src);
                }
                Err(e) => {
                    let key = match &e {
                        StorageError::Corrupt { key, .. } => key.clone(),
                        _ => String::new(),
                    };
                    skipped.push(skip_if_corrupt(e, &key)?);
                }
            }
        }
        let manifest = if kept_entries.len() == entries.len() {
            view.manifest.clone()
        } else {
            Versioned {
                version: view.manifest.version,
                manifest: Arc::new(Manifest {
                    blocks: kept_entries,
                    ..(*view.manifest.manifest).clone()
                }),
            }
        };
        let recent = self.recent_writes(tenant, &view);
        let mut segments: Vec<(Ulid, Source)> =
            view.segments.iter().cloned().chain(recent).collect();
        segments.sort_by_key(|(id, _)| *id);
        Ok((
            Snapshot {
                manifest,
                blocks,
                segments,
            },
            skipped,
        ))
    }
}
