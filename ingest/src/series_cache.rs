//! Label sets of recently written series, keyed by the raw protobuf bytes of
//! their labels. Remote write resends the same series in every request; a
//! hit skips decoding, validating and allocating the labels, and hands out a
//! shared [`Labels`] (a reference-count increment).
//!
//! Only label sets that passed validation are cached, so a hit needs no
//! checks. The cache is sharded to keep lock hold times short; a full shard is
//! emptied rather than tracked for recency (cheap, and a cold shard refills
//! within one scrape interval).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;
use storage::Labels;
use xxhash_rust::xxh3::xxh3_64;

const SHARDS: usize = 16;

struct Entry {
    raw: Box<[u8]>,
    labels: Labels,
}

/// Keys are xxh3 hashes already: the map uses them as they are instead of
/// hashing them again (SipHash was a visible share of a lookup).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for `u64` keys; fold anything else in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>;

pub struct SeriesCache {
    /// Each shard's lock on a cache line of its own: unpadded, neighbouring
    /// shards shared lines, so two cores locking different shards still
    /// bounced one line between them (the lock was about a third of a
    /// lookup's time in an ingest profile).
    shards: Vec<CachePadded<Mutex<Shard>>>,
    per_shard: usize,
}

impl SeriesCache {
    /// A cache of about `capacity` label sets (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, hash: u64) -> Option<&Mutex<Shard>> {
        // Middle bits: the map itself uses the low bits (bucket) and the top
        // seven (tag) of the same hash.
        self.shards
            .get(((hash >> 32) as usize) % SHARDS)
            .map(|p| &**p)
    }

    /// The label set whose labels were encoded as exactly `raw`, if cached.
    pub fn get(&self, raw: &[u8]) -> Option<Labels> {
        if self.per_shard == 0 {
            return None;
        }
        let hash = xxh3_64(raw);
        let shard = self.shard(hash)?.lock().ok()?;
        // Compare the bytes too: a hash collision must never swap series.
        shard
            .get(&hash)
            .filter(|e| *e.raw == *raw)
            .map(|e| e.labels.clone())
    }

    /// Remembers that `raw` decodes and validates to `labels`.
    pub fn insert(&self, raw: &[u8], labels: Labels) {
        if self.per_shard == 0 {
            return;
        }
        // Computed once here, the id travels with every clone a hit hands
        // out; otherwise each segment write hashed every series' labels
        // again (about 6 % of ingest CPU).
        labels.series_id();
        let hash = xxh3_64(raw);
        let Some(Ok(mut shard)) = self.shard(hash).map(|s| s.lock()) else {
            return;
        };
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(
            hash,
            Entry {
                raw: raw.into(),
                labels,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_only_on_identical_bytes_and_stays_bounded() {
        let cache = SeriesCache::new(32);
        let l = Labels::from_pairs([("__name__", "up")]).expect("labels");
        cache.insert(b"abc", l.clone());
        assert_eq!(cache.get(b"abc"), Some(l.clone()));
        assert_eq!(cache.get(b"abd"), None);
        for i in 0..10_000u32 {
            cache.insert(&i.to_le_bytes(), l.clone());
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(held <= 32 + SHARDS, "{held} entries held");
        let off = SeriesCache::new(0);
        off.insert(b"abc", l);
        assert_eq!(off.get(b"abc"), None);
    }
}
