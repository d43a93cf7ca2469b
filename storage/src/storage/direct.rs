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
//!
//! A read too large for the decoded cache ([`ReadCache::keeps`]) fetches
//! and checks its chunks but does not decode them in the object tasks:
//! they are decoded while gathering, straight into each series' final
//! vector (sized from the chunk headers), on all cores. Decoded chunks
//! and a copy of each would be twice the memory, and fresh memory is what
//! a cold process pays most for (the kernel zeroes every page it touches
//! first: over half of a cold 7-day read of every series was that).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::{Instrument, debug_span};

use super::read_cache::{CachedBlock, ReadCache, SegmentSamples};
use super::{Gathered, SourceKind, Storage};
use crate::block::reader::{BlockChunks, DecodedChunk, EncodedChunk};
use crate::error::{Result, StorageError};
use crate::labels::{Labels, SeriesId};
use crate::manifest::Versioned;
use crate::matcher::Matcher;
use crate::sample::{Sample, Series};
use crate::segment::SegmentIndex;
use crate::step_grid::StepGrid;
use crate::tenant::TenantId;
use crate::{block, paths, segment};
use ulid::Ulid;

use super::Source;

/// Objects read at once by one read.
const OBJECT_CONCURRENCY: usize = 16;

/// What one object gave a read: per wanted series (in the order asked),
/// its sample runs.
enum Fetched {
    Block(Vec<Vec<Piece>>),
    Segment(Arc<SegmentSamples>),
}

/// A chunk of a block as a read holds it.
enum Piece {
    /// Decoded: found in the cache, or decoded to be kept there.
    Decoded(DecodedChunk),
    /// Checked but not decoded: decoded while gathering (see the module docs).
    Encoded(EncodedChunk),
}

impl Storage {
    /// Loads into the read cache the directories it lacks of the raw
    /// blocks of `manifest` overlapping `[start_ms, end_ms]`, concurrently
    /// (each in its own task). Called next to the footer reads of a query,
    /// so a cold read spends one round trip on footer and directory
    /// together ([`BlockChunks::load`] fetches the directory with the
    /// footer) instead of one after the other. Best effort: a block that
    /// fails here fails (and is reported) in the read that needs it.
    pub(super) async fn prefetch_directories(
        &self,
        tenant: &TenantId,
        manifest: &Versioned,
        start_ms: i64,
        end_ms: i64,
    ) {
        let tasks: Vec<_> = manifest
            .manifest
            .blocks_overlapping(block::RAW, start_ms, end_ms)
            .filter_map(|b| {
                let id = Ulid::from_string(&b.id).ok()?;
                let key = paths::block(tenant, &b.resolution, id);
                (!self.read_cache.has_block(&key)).then_some((key, b.bytes))
            })
            .map(|(key, size)| {
                let (store, cache) = (self.store.clone(), self.read_cache.clone());
                let span = debug_span!("prefetch_directory", key = %key);
                // A decoder panic stays inside the task (see the module docs).
                tokio::spawn(
                    async move {
                        if let Ok(chunks) = BlockChunks::load(store, &key, size).await {
                            cache.insert_block(&key, chunks);
                        }
                    }
                    .instrument(span),
                )
            })
            .collect();
        futures::stream::iter(tasks)
            .buffer_unordered(OBJECT_CONCURRENCY)
            .for_each(|_| async {})
            .await;
    }

    /// [`Storage::read`] without DataFusion (see the module docs).
    pub(super) async fn read_direct(
        &self,
        sources: &[Source],
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        ids: Option<(SeriesId, SeriesId)>,
        grid: Option<StepGrid>,
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
        let estimate: f64 = sources
            .iter()
            .zip(&matched)
            .filter(|(src, _)| src.kind == SourceKind::Block)
            .map(|(src, m)| estimated_samples(&src.index, m.len(), start_ms, end_ms))
            .sum();
        let keep = self
            .read_cache
            .keeps((estimate * SAMPLE_BYTES as f64) as usize);
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
                                SourceKind::Block => read_block(
                                    store, &cache, &key, size, &ids, start_ms, end_ms, keep,
                                )
                                .await
                                .map(Fetched::Block),
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
        // First only the runs are noted (cheap); the samples are then
        // copied or decoded once, into vectors of their final size, series
        // spread over the cores when there are many samples.
        let mut slots: HashMap<&Labels, usize> = HashMap::new();
        let mut plans: Vec<(&Labels, Vec<Run<'_>>)> = Vec::new();
        let fetched: Vec<(usize, Fetched)> = fetched
            .into_iter()
            .map(|(pos, f)| f.map(|f| (pos, f)))
            .collect::<Result<_>>()?;
        let mut seq = 0usize;
        for (pos, f) in &fetched {
            let (pos, src) = (*pos, &sources[*pos]);
            for (i, &(id, labels)) in matched[pos].iter().enumerate() {
                let slot = *slots.entry(labels).or_insert_with(|| {
                    plans.push((labels, Vec::new()));
                    plans.len() - 1
                });
                let runs = &mut plans[slot].1;
                match f {
                    Fetched::Block(chunks) => {
                        for c in chunks.get(i).map(Vec::as_slice).unwrap_or_default() {
                            seq += 1;
                            let part = match c {
                                Piece::Decoded(c) => Part::Slice {
                                    samples: in_range(c, start_ms, end_ms),
                                    skip: None,
                                },
                                Piece::Encoded(c) => Part::Chunk {
                                    chunk: c,
                                    key: &src.meta.location,
                                },
                            };
                            runs.push(Run { pos, seq, part });
                        }
                    }
                    Fetched::Segment(s) => {
                        let Some(samples) = s.get(id) else { continue };
                        seq += 1;
                        runs.push(Run {
                            pos,
                            seq,
                            part: Part::Slice {
                                samples: in_range(samples, start_ms, end_ms),
                                skip: src.done.is_some().then_some(src),
                            },
                        });
                    }
                }
            }
        }
        gather(plans, start_ms, end_ms, grid)
    }
}

const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();

/// Samples a read of `matched` of the series of an object with `index` in
/// `[start, end]` holds, estimated from the index alone (its sample count
/// spread evenly over its series and time range).
fn estimated_samples(index: &SegmentIndex, matched: usize, start: i64, end: i64) -> f64 {
    if index.series.is_empty() || !index.overlaps(start, end) {
        return 0.0;
    }
    let (lo, hi) = (start.max(index.min_time), end.min(index.max_time));
    let time =
        (hi as f64 - lo as f64 + 1.0) / (index.max_time as f64 - index.min_time as f64 + 1.0);
    index.samples as f64 * (matched as f64 / index.series.len() as f64) * time.min(1.0)
}

/// One run of samples for a series, tagged with its source position and
/// arrival order.
struct Run<'a> {
    pos: usize,
    seq: usize,
    part: Part<'a>,
}

enum Part<'a> {
    /// Decoded samples, inside the read's range.
    Slice {
        samples: &'a [Sample],
        /// A segment whose samples in ranges the manifest marks done are
        /// read from blocks instead (skipped here).
        skip: Option<&'a Source>,
    },
    /// A block's chunk, decoded into the series' vector and clipped there.
    Chunk {
        chunk: &'a EncodedChunk,
        /// Its block (for errors).
        key: &'a Path,
    },
}

impl Run<'_> {
    /// Samples the run adds at most.
    fn len(&self) -> usize {
        match &self.part {
            Part::Slice { samples, .. } => samples.len(),
            Part::Chunk { chunk, .. } => chunk.samples(),
        }
    }
}

/// Samples gathered by one thread before the work is split.
const GATHER_SPLIT_SAMPLES: usize = 1 << 20;

/// The series of `plans`, each with its runs merged ([`Gathered::finish`]),
/// sorted by labels, samples inside `[start, end]` (only those `grid` sees,
/// when given). Large reads are copied (and decoded) on all cores.
fn gather(
    plans: Vec<(&Labels, Vec<Run<'_>>)>,
    start: i64,
    end: i64,
    grid: Option<StepGrid>,
) -> Result<Vec<Series>> {
    gather_split(
        plans,
        crate::cores(),
        GATHER_SPLIT_SAMPLES,
        start,
        end,
        grid,
    )
}

/// [`gather`] on up to `threads` threads, one per `split` samples.
fn gather_split(
    plans: Vec<(&Labels, Vec<Run<'_>>)>,
    threads: usize,
    split: usize,
    start: i64,
    end: i64,
    grid: Option<StepGrid>,
) -> Result<Vec<Series>> {
    let total: usize = plans
        .iter()
        .flat_map(|(_, runs)| runs.iter().map(Run::len))
        .sum();
    let parts = threads.min(total / split.max(1)).max(1);
    let some = |plans: Vec<(&Labels, Vec<Run<'_>>)>| -> Result<Vec<Series>> {
        let mut out = Vec::with_capacity(plans.len());
        for plan in plans {
            if let Some(s) = gather_one(plan, start, end, grid.as_ref())? {
                out.push(s);
            }
        }
        Ok(out)
    };
    let mut out = if parts == 1 {
        some(plans)?
    } else {
        let per = plans.len().div_ceil(parts);
        let mut plans = plans;
        let mut chunks = Vec::with_capacity(parts);
        while plans.len() > per {
            let rest = plans.split_off(per);
            chunks.push(std::mem::replace(&mut plans, rest));
        }
        chunks.push(plans);
        let some = &some;
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| scope.spawn(move || some(c)))
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?);
            }
            Ok::<_, StorageError>(out)
        })?
    };
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// One series' runs copied or decoded into one vector of the final size,
/// then merged if they overlap ([`Gathered::finish`]); `None` if no sample
/// is left. With a `grid`, each run is thinned to what the grid's times see
/// as soon as it is in the vector, so the vector never holds more than the
/// thinned runs and one whole run.
fn gather_one(
    (labels, runs): (&Labels, Vec<Run<'_>>),
    start: i64,
    end: i64,
    grid: Option<&StepGrid>,
) -> Result<Option<Series>> {
    let len: usize = runs.iter().map(Run::len).sum();
    let room = match grid {
        None => len,
        // Mostly one sample per step, one more where runs meet, and room
        // to decode a run before it is thinned (a hint: the vector grows
        // if it must). Untouched room would cost nothing, but a large
        // allocation comes as fresh pages the kernel zeroes.
        Some(g) => {
            let longest = runs.iter().map(Run::len).max().unwrap_or(0);
            len.min(g.steps().saturating_add(runs.len()).saturating_add(longest))
        }
    };
    let mut g = Gathered::with_capacity(room, runs.len());
    // Whether the samples so far are sorted with unique timestamps (then
    // nothing needs merging, and no second pass is made over them).
    let mut ordered = true;
    for r in runs {
        let from = g.samples.len();
        // Plain slices are thinned as they are copied, the rest in place.
        let thin_in_place = !matches!(r.part, Part::Slice { skip: None, .. });
        match r.part {
            Part::Slice {
                samples,
                skip: None,
            } => {
                match grid {
                    None => g.push_slice(r.pos, r.seq, samples),
                    Some(grid) => {
                        g.start_run(r.pos, r.seq);
                        grid.push_seen(samples, &mut g.samples);
                    }
                }
                ordered = ordered && samples.windows(2).all(|w| w[0].t < w[1].t);
            }
            Part::Slice {
                samples,
                skip: Some(src),
            } => {
                g.start_run(r.pos, r.seq);
                for x in samples {
                    if !src.skips(x.t) {
                        g.push(*x);
                    }
                }
                ordered = ordered && g.samples[from..].windows(2).all(|w| w[0].t < w[1].t);
            }
            Part::Chunk { chunk, key } => {
                g.start_run(r.pos, r.seq);
                chunk
                    .decode_into(&mut g.samples)
                    .map_err(|e| StorageError::Corrupt {
                        key: key.to_string(),
                        reason: format!("row {}: {e}", chunk.row),
                    })?;
                // Decoded timestamps increase (the decoder checks), so
                // clipping to the range cuts at most both ends.
                let run = &g.samples[from..];
                let lo = run.partition_point(|x| x.t < start);
                let hi = run.partition_point(|x| x.t <= end).max(lo);
                if hi < run.len() {
                    g.samples.truncate(from + hi);
                }
                if lo > 0 {
                    g.samples.drain(from..from + lo);
                }
            }
        }
        if let Some(grid) = grid
            && thin_in_place
        {
            grid.retain_seen(&mut g.samples, from);
        }
        if from > 0 && g.samples.len() > from && g.samples[from - 1].t >= g.samples[from].t {
            ordered = false;
        }
    }
    let mut samples = if ordered { g.samples } else { g.finish() };
    if let Some(grid) = grid {
        // Runs thinned one by one may keep samples another run's hide.
        grid.retain_seen(&mut samples, 0);
    }
    Ok((!samples.is_empty()).then(|| Series {
        labels: labels.clone(),
        samples,
    }))
}

/// The samples of a time-sorted `run` inside `[start, end]`.
fn in_range(run: &[Sample], start: i64, end: i64) -> &[Sample] {
    let lo = run.partition_point(|x| x.t < start);
    let hi = run.partition_point(|x| x.t <= end);
    &run[lo..hi.max(lo)]
}

/// The chunks of series `ids` (ascending) overlapping `[start, end]` in the
/// block at `key`: from the decoded cache, the rest fetched in one read
/// (decoded and kept when `keep`).
#[allow(clippy::too_many_arguments)]
async fn read_block(
    store: Arc<dyn ObjectStore>,
    cache: &ReadCache,
    key: &Path,
    size: u64,
    ids: &[SeriesId],
    start: i64,
    end: i64,
    keep: bool,
) -> Result<Vec<Vec<Piece>>> {
    let block = match cache.block(key) {
        Some(b) => b,
        None => {
            let chunks = BlockChunks::load(store.clone(), key, size).await?;
            cache.insert_block(key, chunks)
        }
    };
    read_rows(store, cache, &block, ids, start, end, keep).await
}

/// The chunks of series `ids` (ascending) overlapping `[start, end]` in a
/// block whose directory is loaded.
async fn read_rows(
    store: Arc<dyn ObjectStore>,
    cache: &ReadCache,
    block: &CachedBlock,
    ids: &[SeriesId],
    start: i64,
    end: i64,
    keep: bool,
) -> Result<Vec<Vec<Piece>>> {
    let mut out: Vec<Vec<Option<Piece>>> = Vec::with_capacity(ids.len());
    // Rows come out ascending: the directory is in series order and `ids` is.
    let (mut missing, mut at) = (Vec::new(), Vec::new());
    for (i, &id) in ids.iter().enumerate() {
        let mut runs = Vec::new();
        for row in block.chunks.rows(id, start, end) {
            let hit = cache.chunk(block.id, row).map(Piece::Decoded);
            if hit.is_none() {
                missing.push(row);
                at.push((i, runs.len()));
            }
            runs.push(hit);
        }
        out.push(runs);
    }
    if !missing.is_empty() {
        let fetched = block.chunks.fetch_encoded(store, &missing).await?;
        for ((row, (i, j)), c) in missing.iter().zip(at).zip(fetched) {
            out[i][j] = Some(if keep {
                let d = c.decode().map_err(|e| StorageError::Corrupt {
                    key: block.chunks.key().to_string(),
                    reason: format!("row {row}: {e}"),
                })?;
                cache.insert_chunk(block.id, *row, d.clone());
                Piece::Decoded(d)
            } else {
                Piece::Encoded(c)
            });
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
