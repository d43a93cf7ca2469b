//! Bounded in-memory caches of the direct read path ([`crate::storage::Storage`]'s
//! `read`), for immutable objects only (blocks and segments never change
//! once written, so an entry never needs invalidating):
//!
//! - block directories ([`BlockChunks`]: footer with page locations, and
//!   every chunk row's series and time range), keyed by object path;
//! - decoded samples: a block's chunk row, or a whole segment's series,
//!   keyed by the object (a process-unique id given to each cached block
//!   directory, or the segment's path) and the row.
//!
//! Both are foyer in-memory caches weighted by approximate bytes, so their
//! memory stays below the configured bounds whatever the queries read.
//!
//! A read larger than half the decoded cache does not add to it
//! ([`ReadCache::keeps`]): such a read (a week of every series) evicts
//! what smaller dashboards keep warm and would not find itself there the
//! next time either, and keeping its chunks doubles the fresh memory a
//! cold process must fault in (the chunks, then their copies per series).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use foyer::{Cache, CacheBuilder};
use object_store::path::Path;
use prometheus_client::metrics::counter::Counter;

use crate::block::reader::{BlockChunks, DecodedChunk};
use crate::labels::SeriesId;
use crate::sample::Sample;

/// Lookups of the read caches (`/metrics`: `strata_storage_read_cache_*`).
pub(crate) static DIRECTORY_HITS: LazyLock<Counter> = LazyLock::new(Counter::default);
pub(crate) static DIRECTORY_MISSES: LazyLock<Counter> = LazyLock::new(Counter::default);
pub(crate) static DECODED_HITS: LazyLock<Counter> = LazyLock::new(Counter::default);
pub(crate) static DECODED_MISSES: LazyLock<Counter> = LazyLock::new(Counter::default);

fn count<T>(found: Option<T>, hits: &Counter, misses: &Counter) -> Option<T> {
    if found.is_some() {
        hits.inc();
    } else {
        misses.inc();
    }
    found
}

/// Fixed cost counted per entry besides its samples (keys, headers).
const ENTRY_OVERHEAD: usize = 64;
const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();

/// A block directory with the id its decoded chunks are cached under.
#[derive(Debug)]
pub struct CachedBlock {
    pub id: u64,
    pub chunks: BlockChunks,
}

/// A whole segment's samples, one entry per series in id order, samples in
/// row order (duplicates kept as written).
#[derive(Debug, Default)]
pub struct SegmentSamples {
    pub series: Vec<(SeriesId, Vec<Sample>)>,
}

impl SegmentSamples {
    /// The samples of series `id`, if the segment has it.
    pub fn get(&self, id: SeriesId) -> Option<&[Sample]> {
        self.series
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .map(|i| self.series[i].1.as_slice())
    }

    fn weight(&self) -> usize {
        self.series
            .iter()
            .map(|(_, s)| s.len() * SAMPLE_BYTES + 32)
            .sum::<usize>()
            + ENTRY_OVERHEAD
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Chunk { block: u64, row: u32 },
    Segment(Path),
}

#[derive(Clone, Debug)]
enum Decoded {
    Chunk(DecodedChunk),
    Segment(Arc<SegmentSamples>),
}

impl Decoded {
    fn weight(&self) -> usize {
        match self {
            Decoded::Chunk(c) => c.len() * SAMPLE_BYTES + ENTRY_OVERHEAD,
            Decoded::Segment(s) => s.weight(),
        }
    }
}

/// The caches of one query process. Cheap to clone (shared).
#[derive(Clone)]
pub struct ReadCache {
    blocks: Cache<Path, Arc<CachedBlock>>,
    /// None: no room for decoded samples (nothing is kept).
    decoded: Option<Cache<Key, Decoded>>,
    /// Largest read (decoded bytes) whose chunks are kept.
    keep_limit: usize,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("blocks_bytes", &self.blocks.usage())
            .field("decoded_bytes", &self.usage().1)
            .finish()
    }
}

impl ReadCache {
    /// Caches holding at most `directory_bytes` of block directories and
    /// `decoded_bytes` of decoded samples (approximately: weights are
    /// estimates of the heap memory of an entry; 0 keeps no samples).
    pub fn new(directory_bytes: usize, decoded_bytes: usize) -> Self {
        Self::with_shards(directory_bytes, decoded_bytes, 8)
    }

    /// As [`ReadCache::new`] with `shards` lock shards (each holds an equal
    /// part of the capacity; tests use one for exact bounds).
    pub fn with_shards(directory_bytes: usize, decoded_bytes: usize, shards: usize) -> Self {
        let blocks = CacheBuilder::new(directory_bytes.max(1))
            .with_shards(shards.max(1))
            .with_weighter(|_: &Path, b: &Arc<CachedBlock>| b.chunks.weight())
            .build();
        let decoded = (decoded_bytes > 0).then(|| {
            CacheBuilder::new(decoded_bytes)
                .with_shards(shards.max(1))
                .with_weighter(|_: &Key, d: &Decoded| d.weight())
                .build()
        });
        Self {
            blocks,
            decoded,
            keep_limit: decoded_bytes / 2,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Whether a read of about `bytes` of decoded samples should keep the
    /// chunks it decodes (see the module docs): only with a decoded cache,
    /// and only when the read is at most half its size.
    pub fn keeps(&self, bytes: usize) -> bool {
        self.decoded.is_some() && bytes <= self.keep_limit
    }

    pub fn block(&self, key: &Path) -> Option<Arc<CachedBlock>> {
        let found = self.blocks.get(key).map(|e| e.value().clone());
        count(found, &DIRECTORY_HITS, &DIRECTORY_MISSES)
    }

    /// Whether the directory of the block at `key` is cached (not counted
    /// as a lookup: prefetches ask before the read that uses it).
    pub fn has_block(&self, key: &Path) -> bool {
        self.blocks.contains(key)
    }

    /// Caches a block directory under a fresh id (decoded chunks of an
    /// evicted and reloaded directory are not found again; they age out).
    pub fn insert_block(&self, key: &Path, chunks: BlockChunks) -> Arc<CachedBlock> {
        let block = Arc::new(CachedBlock {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            chunks,
        });
        self.blocks.insert(key.clone(), block.clone());
        block
    }

    pub fn chunk(&self, block: u64, row: usize) -> Option<DecodedChunk> {
        let row = u32::try_from(row).ok()?;
        let found = match self.decoded.as_ref()?.get(&Key::Chunk { block, row }) {
            Some(e) => match e.value() {
                Decoded::Chunk(c) => Some(c.clone()),
                Decoded::Segment(_) => None,
            },
            None => None,
        };
        count(found, &DECODED_HITS, &DECODED_MISSES)
    }

    pub fn insert_chunk(&self, block: u64, row: usize, chunk: DecodedChunk) {
        if let (Some(d), Ok(row)) = (&self.decoded, u32::try_from(row)) {
            d.insert(Key::Chunk { block, row }, Decoded::Chunk(chunk));
        }
    }

    pub fn segment(&self, key: &Path) -> Option<Arc<SegmentSamples>> {
        let found = match self.decoded.as_ref()?.get(&Key::Segment(key.clone())) {
            Some(e) => match e.value() {
                Decoded::Segment(s) => Some(s.clone()),
                Decoded::Chunk(_) => None,
            },
            None => None,
        };
        count(found, &DECODED_HITS, &DECODED_MISSES)
    }

    pub fn insert_segment(&self, key: &Path, samples: Arc<SegmentSamples>) {
        if let Some(d) = &self.decoded {
            d.insert(Key::Segment(key.clone()), Decoded::Segment(samples));
        }
    }

    /// Bytes (by the weights) held by block directories and by decoded samples.
    pub fn usage(&self) -> (usize, usize) {
        (
            self.blocks.usage(),
            self.decoded.as_ref().map_or(0, |d| d.usage()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, base: i64) -> DecodedChunk {
        (0..n as i64)
            .map(|i| Sample::new(base + i, i as f64))
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn decoded_samples_stay_within_their_bound_and_old_ones_are_evicted() {
        let per_entry = 100 * SAMPLE_BYTES + ENTRY_OVERHEAD;
        let cap = 10 * per_entry;
        let c = ReadCache::with_shards(1 << 20, cap, 1);
        for row in 0..100 {
            c.insert_chunk(7, row, chunk(100, row as i64 * 1000));
            assert!(c.usage().1 <= cap, "usage {} > {cap}", c.usage().1);
        }
        assert!(c.usage().1 >= cap - per_entry, "the cache is used");
        assert!(c.chunk(7, 0).is_none(), "the oldest entry was evicted");
        let last = c.chunk(7, 99).expect("the newest entry is kept");
        assert_eq!(&last[..], &chunk(100, 99_000)[..]);
        // Another object's row is another entry.
        assert!(c.chunk(8, 99).is_none());

        let key = Path::from("tenants/t/segments/2026010100/x.parquet");
        let seg = Arc::new(SegmentSamples {
            series: vec![
                (1, vec![Sample::new(1, 1.0)]),
                (5, vec![Sample::new(2, 2.0)]),
            ],
        });
        c.insert_segment(&key, seg);
        let got = c.segment(&key).expect("cached segment");
        assert_eq!(got.get(5), Some(&[Sample::new(2, 2.0)][..]));
        assert_eq!(got.get(2), None);
        assert!(c.usage().1 <= cap);
    }

    #[test]
    fn lookups_are_counted_for_metrics() {
        // Process-wide counters, shared with tests running at the same
        // time: each must have moved by at least what this test did.
        let (hits, misses) = (DECODED_HITS.get(), DECODED_MISSES.get());
        let c = ReadCache::new(1 << 20, 1 << 20);
        assert!(c.chunk(3, 1).is_none());
        c.insert_chunk(3, 1, chunk(4, 0));
        assert!(c.chunk(3, 1).is_some());
        assert!(c.chunk(3, 1).is_some());
        assert!(DECODED_HITS.get() >= hits + 2);
        assert!(DECODED_MISSES.get() > misses);
        let dir_misses = DIRECTORY_MISSES.get();
        assert!(c.block(&Path::from("nope")).is_none());
        assert!(DIRECTORY_MISSES.get() > dir_misses);
    }

    #[test]
    fn reads_larger_than_half_the_decoded_cache_are_not_kept() {
        let c = ReadCache::new(1 << 20, 1000);
        assert!(c.keeps(0));
        assert!(c.keeps(500));
        assert!(!c.keeps(501));
        assert!(!ReadCache::new(1 << 20, 0).keeps(0), "no decoded cache");
    }

    #[test]
    fn without_room_for_samples_nothing_is_kept() {
        let c = ReadCache::new(1 << 20, 0);
        c.insert_chunk(1, 0, chunk(10, 0));
        assert!(c.chunk(1, 0).is_none());
        let key = Path::from("k");
        c.insert_segment(&key, Arc::new(SegmentSamples::default()));
        assert!(c.segment(&key).is_none());
        assert_eq!(c.usage().1, 0);
    }

    #[tokio::test]
    async fn block_directories_are_bounded_and_get_fresh_ids() {
        use crate::block::{BlockOptions, encode};
        use crate::labels::Labels;
        use crate::sample::Series;
        use object_store::{ObjectStore, ObjectStoreExt};
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let series: Vec<Series> = (0..50)
            .map(|i| Series {
                labels: Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())])
                    .expect("labels"),
                samples: vec![Sample::new(1, 1.0), Sample::new(4_000_000, 2.0)],
            })
            .collect();
        let (bytes, _) = encode(
            &series,
            &BlockOptions {
                partition_start: 0,
                partition_end: 7_200_000,
                resolution: "raw".into(),
                chunk_range_ms: 3_600_000,
                zstd_level: 1,
            },
        )
        .expect("block");
        let size = bytes.len() as u64;
        let (a, b) = (Path::from("a"), Path::from("b"));
        store.put(&a, bytes.clone().into()).await.expect("put");
        store.put(&b, bytes.into()).await.expect("put");
        let load = |k: Path| {
            let store = store.clone();
            async move { BlockChunks::load(store, &k, size).await.expect("load") }
        };
        let one = load(a.clone()).await;
        assert_eq!(one.len(), 100);
        // Room for one directory only.
        let c = ReadCache::with_shards(one.weight() + one.weight() / 2, 0, 1);
        let first = c.insert_block(&a, one);
        assert_eq!(c.block(&a).map(|x| x.id), Some(first.id));
        let second = c.insert_block(&b, load(b.clone()).await);
        assert_ne!(first.id, second.id);
        assert!(c.block(&a).is_none(), "evicted past the bound");
        assert!(c.block(&b).is_some());
        assert!(c.usage().0 <= second.chunks.weight());
    }
}
