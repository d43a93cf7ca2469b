//! The direct read path of [`Storage::read`]: no query plan per read.
//!
//! Matchers are resolved against each object's series index (through its
//! cached postings, [`super::postings`]); blocks are read through their
//! cached directory ([`BlockChunks`]: only the pages of the wanted chunk
//! rows are fetched), segments whole (they are small, and their checksum
//! covers the whole object). Decoded chunks and segments are kept in the
//! storage's [`ReadCache`] when it has room for decoded samples, so a warm
//! query neither fetches nor decodes. Each object is read in its own task:
//! objects are read concurrently, and a decoder panic on corrupt bytes
//! becomes a corruption error naming the object, as it did in a
//! DataFusion scan.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{Instrument, debug_span};

use super::read_cache::{ReadCache, SegmentSamples};
use super::{Gathered, SourceKind, Storage, gathered_series};
use crate::block::reader::{BlockChunks, DecodedChunk};
use crate::error::{Result, StorageError};
use crate::labels::{Labels, SeriesId};
use crate::matcher::Matcher;
use crate::sample::{Sample, Series};
use crate::segment;

use super::Source;

/// Objects read at once by one read.
const OBJECT_CONCURRENCY: usize = 16;

/// What one object gave a read: per wanted series (in the order asked),
/// its sample runs.
enum Fetched {
    Block(Vec<Vec<DecodedChunk>>),
    Segment(Arc<SegmentSamples>),
}

impl Storage {
    /// [`Storage::read`] without DataFusion (see the module docs).
    pub(super) async fn read_direct(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
    ) -> Result<Vec<Series>> {
        let in_ids = |id: SeriesId| ids.is_none_or(|(lo, hi)| lo <= id && id <= hi);
        // Per source position: matched series (id order) and their labels.
        let matched: Vec<Vec<(SeriesId, &Labels)>> = sources
            .iter()
            .map(|src| {
                self.select_series(&src.meta.location, &src.index, matchers)
                    .into_iter()
                    .filter_map(|i| src.index.series.get(i))
                    .filter(|s| in_ids(s.id))
                    .map(|s| (s.id, &s.labels))
                    .collect()
            })
            .collect();
        if matched.iter().all(Vec::is_empty) {
            return Ok(Vec::new());
        }
        // Owned task inputs built before the stream (borrowing closures
        // would make callers' futures not `Send`).
        let tasks: Vec<_> = sources
            .iter()
            .zip(&matched)
            .enumerate()
            .filter(|(_, (_, m))| !m.is_empty())
            .map(|(pos, (src, m))| {
                let ids: Vec<SeriesId> = m.iter().map(|(id, _)| *id).collect();
                let (store, cache) = (self.store.clone(), self.read_cache.clone());
                let (key, size, kind) = (src.meta.location.clone(), src.meta.size, src.kind);
                let verified = self.verified.clone();
                let span = debug_span!("read_object", key = %key, series = ids.len());
                async move {
                    let name = key.to_string();
                    let task = tokio::spawn(
                        async move {
                            match kind {
                                SourceKind::Block => {
                                    read_block(store, &cache, &key, size, &ids, start_ms, end_ms)
                                        .await
                                        .map(Fetched::Block)
                                }
                                SourceKind::Segment => {
                                    let s = read_segment(store, &cache, &key).await?;
                                    if let Ok(mut v) = verified.lock() {
                                        v.insert(key);
                                    }
                                    Ok(Fetched::Segment(s))
                                }
                            }
                        }
                        .instrument(span),
                    );
                    let fetched = match task.await {
                        Ok(r) => r,
                        // A decoder panicked on the object's bytes.
                        Err(e) => Err(StorageError::Corrupt {
                            key: name,
                            reason: format!("reading it failed: {e}"),
                        }),
                    };
                    (pos, fetched)
                }
            })
            .collect();
        let mut fetched: Vec<(usize, Result<Fetched>)> = futures::stream::iter(tasks)
            .buffer_unordered(OBJECT_CONCURRENCY)
            .collect()
            .await;
        fetched.sort_unstable_by_key(|(pos, _)| *pos);

        // Runs gathered per series, tagged with source position and
        // arrival order, merged once at the end (as the scan path does).
        let mut slots: HashMap<&Labels, usize> = HashMap::new();
        let mut acc: Vec<(&Labels, Gathered)> = Vec::new();
        let mut seq = 0usize;
        for (pos, f) in fetched {
            let f = f?;
            let src = &sources[pos];
            for (i, &(id, labels)) in matched[pos].iter().enumerate() {
                let slot = *slots.entry(labels).or_insert_with(|| {
                    acc.push((labels, Gathered::default()));
                    acc.len() - 1
                });
                let g = &mut acc[slot].1;
                match &f {
                    Fetched::Block(chunks) => {
                        for c in chunks.get(i).map(Vec::as_slice).unwrap_or_default() {
                            seq += 1;
                            push_in_range(g, pos, seq, c, start_ms, end_ms);
                        }
                    }
                    Fetched::Segment(s) => {
                        let Some(samples) = s.get(id) else { continue };
                        seq += 1;
                        g.start_run(pos, seq);
                        let lo = samples.partition_point(|x| x.t < start_ms);
                        for x in &samples[lo..] {
                            if x.t > end_ms {
                                break;
                            }
                            if !src.skips(x.t) {
                                g.push(*x);
                            }
                        }
                    }
                }
            }
        }
        Ok(gathered_series(acc))
    }
}

/// Appends the samples of `chunk` inside `[start, end]` as one run.
fn push_in_range(g: &mut Gathered, pos: usize, seq: usize, chunk: &[Sample], start: i64, end: i64) {
    let lo = chunk.partition_point(|x| x.t < start);
    let hi = chunk.partition_point(|x| x.t <= end);
    g.push_run(pos, seq, chunk[lo..hi.max(lo)].iter().copied());
}

/// The chunks of series `ids` (ascending) overlapping `[start, end]` in the
/// block at `key`: from the decoded cache, the rest fetched in one read.
async fn read_block(
    store: Arc<dyn ObjectStore>,
    cache: &ReadCache,
    key: &Path,
    size: u64,
    ids: &[SeriesId],
    start: i64,
    end: i64,
) -> Result<Vec<Vec<DecodedChunk>>> {
    let block = match cache.block(key) {
        Some(b) => b,
        None => {
            let chunks = BlockChunks::load(store.clone(), key, size).await?;
            cache.insert_block(key, chunks)
        }
    };
    let mut out: Vec<Vec<Option<DecodedChunk>>> = Vec::with_capacity(ids.len());
    // Rows come out ascending: the directory is in series order and `ids` is.
    let (mut missing, mut at) = (Vec::new(), Vec::new());
    for (i, &id) in ids.iter().enumerate() {
        let mut runs = Vec::new();
        for row in block.chunks.rows(id, start, end) {
            let hit = cache.chunk(block.id, row);
            if hit.is_none() {
                missing.push(row);
                at.push((i, runs.len()));
            }
            runs.push(hit);
        }
        out.push(runs);
    }
    if !missing.is_empty() {
        let fetched = block.chunks.fetch(store, &missing).await?;
        for ((row, (i, j)), c) in missing.iter().zip(at).zip(fetched) {
            cache.insert_chunk(block.id, *row, c.clone());
            out[i][j] = Some(c);
        }
    }
    Ok(out
        .into_iter()
        .map(|runs| runs.into_iter().flatten().collect())
        .collect())
}

/// A whole segment's samples: from the decoded cache, or one GET of the
/// object, checked against its checksum and decoded.
async fn read_segment(
    store: Arc<dyn ObjectStore>,
    cache: &ReadCache,
    key: &Path,
) -> Result<Arc<SegmentSamples>> {
    if let Some(s) = cache.segment(key) {
        return Ok(s);
    }
    let bytes = store
        .get(key)
        .await
        .map_err(|e| StorageError::store("get", key.as_ref(), e))?
        .bytes()
        .await
        .map_err(|e| StorageError::store("get", key.as_ref(), e))?;
    let (_, series) = segment::read(key.as_ref(), bytes)?;
    let samples = Arc::new(SegmentSamples {
        series: series
            .into_iter()
            .map(|s| (s.labels.series_id(), s.samples))
            .collect(),
    });
    cache.insert_segment(key, samples.clone());
    Ok(samples)
}

#[cfg(test)]
mod tests;
