//! An [`ObjectStore`] wrapper for the query path that keeps byte ranges of
//! immutable objects in a foyer cache: memory, plus a local disk directory
//! when configured (`[query.cache]`).
//!
//! Objects are cached as fixed-size aligned pages (`page_bytes`, 1 MiB by
//! default) keyed by (path, page index). A read of any range fetches the
//! pages it touches that are not cached, each with one ranged GET, all of
//! them concurrently, and is answered from the pages; a whole-object get
//! reads page 0 first, which tells the object's size. Concurrent misses of
//! the same page make one request (foyer's fetch coalescing).
//!
//! Only objects that never change once written are cached: segments,
//! blocks and manifest versions (see [`is_immutable`]). Everything else
//! (leases, listings, heads, conditional or versioned gets, writes) passes
//! through unchanged, and so does every error: a "not found" is never
//! remembered, so a manifest version written later is seen at once. A page
//! of an object deleted after it was cached may still be served, which is
//! harmless: readers only ask for objects a listing or the manifest named.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    RecoverMode, Source,
};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::paths;

const MIB: u64 = 1024 * 1024;
/// Page fetches in flight at once for one read.
const PAGE_FETCH_CONCURRENCY: usize = 32;
/// Bookkeeping charged per cached page on top of its bytes.
const PAGE_OVERHEAD: usize = 128;
/// Smallest disk tier: foyer evicts whole blocks, so it needs a few of them.
const MIN_DISK_BLOCKS: u64 = 4;

/// `[query.cache]`: the cache in front of object-store reads of queries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory tier size in bytes; 0 turns the cache off.
    pub memory_bytes: u64,
    /// Disk tier size in bytes; 0 (the default) keeps the cache in memory only.
    pub disk_bytes: u64,
    /// Directory of the disk tier (e.g. `/tmp/strata-cache` on Lambda).
    /// Its contents are not reused across restarts.
    pub disk_dir: PathBuf,
    /// Size of the aligned pages objects are cached in.
    pub page_bytes: u64,
    /// Decoded samples of blocks and segments kept in memory (16 bytes a
    /// sample), so a warm query neither fetches nor decodes them; 0 turns
    /// it off. Independent of `memory_bytes`, which holds object bytes.
    pub decoded_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * MIB,
            disk_bytes: 0,
            disk_dir: PathBuf::new(),
            page_bytes: MIB,
            decoded_bytes: 512 * MIB,
        }
    }
}

impl CacheConfig {
    pub fn is_enabled(&self) -> bool {
        self.memory_bytes > 0
    }

    /// foyer's disk block: at least 16 MiB, and large enough for one page.
    fn disk_block_bytes(&self) -> u64 {
        (16 * MIB).max(self.page_bytes.next_multiple_of(4096) + 4096)
    }

    /// Checks cross-field rules; messages name the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(4096..=64 * MIB).contains(&self.page_bytes) {
            return Err(format!(
                "query.cache.page_bytes: {} is not between 4096 and {} (64 MiB)",
                self.page_bytes,
                64 * MIB
            ));
        }
        if self.is_enabled() && self.memory_bytes < self.page_bytes {
            return Err("query.cache.memory_bytes: smaller than one page (page_bytes)".into());
        }
        if self.disk_bytes > 0 {
            if self.disk_dir.as_os_str().is_empty() {
                return Err("query.cache.disk_dir: required when disk_bytes is set".into());
            }
            let min = MIN_DISK_BLOCKS * self.disk_block_bytes();
            if self.disk_bytes < min {
                return Err(format!(
                    "query.cache.disk_bytes: at least {min} bytes when set (4 blocks of 16 MiB)"
                ));
            }
            if !self.is_enabled() {
                return Err("query.cache.disk_bytes: needs memory_bytes > 0".into());
            }
        }
        Ok(())
    }
}

/// Whether `path` names an object that never changes once written: a
/// segment, a block, a sidecar or a manifest version. Leases and anything unknown are
/// not.
pub fn is_immutable(path: &Path) -> bool {
    let parts: Vec<_> = path.parts().collect();
    let part = |i: usize| parts.get(i).map(|p| p.as_ref());
    if part(0) != Some("tenants") {
        return false;
    }
    match (part(2), parts.len()) {
        (Some("segments"), 5) => paths::parse_segment(path).is_some(),
        (Some("blocks"), 5) => paths::parse_block(path).is_some(),
        (Some("sidecars"), 5) => paths::parse_sidecar(path).is_some(),
        (Some("manifest"), 4) => paths::parse_manifest(path).is_some(),
        _ => false,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabels {
    tier: &'static str,
}

/// `strata_query_cache_*`.
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    hits: Family<TierLabels, Counter>,
    hit_bytes: Counter,
    misses: Counter,
    miss_bytes: Counter,
    bypass: Counter,
}

impl CacheMetrics {
    /// Creates the metrics and registers them under `strata_query_cache_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("strata_query_cache");
        r.register(
            "hits",
            "Pages found in the query cache, by tier (memory, disk)",
            m.hits.clone(),
        );
        r.register(
            "hit_bytes",
            "Bytes of pages found in the query cache",
            m.hit_bytes.clone(),
        );
        r.register(
            "misses",
            "Pages fetched from the object store into the query cache",
            m.misses.clone(),
        );
        r.register(
            "miss_bytes",
            "Bytes fetched from the object store into the query cache",
            m.miss_bytes.clone(),
        );
        r.register(
            "bypass",
            "Object-store requests of queries that the cache passed through (not cacheable)",
            m.bypass.clone(),
        );
        m
    }

    /// Pages found in the cache, both tiers.
    pub fn hits(&self) -> u64 {
        // One family lookup at a time: a guard held across a second lookup
        // that inserts would deadlock.
        let memory = self
            .hits
            .get_or_create(&TierLabels { tier: "memory" })
            .get();
        let disk = self.hits.get_or_create(&TierLabels { tier: "disk" }).get();
        memory + disk
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    pub fn bypassed(&self) -> u64 {
        self.bypass.get()
    }
}

/// A cached page: (object, page index).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct PageKey {
    path: Arc<str>,
    index: u64,
}

/// The bytes of one page, and what a reader needs to know of the object.
#[derive(Clone, Debug)]
struct Page {
    data: Bytes,
    object_size: u64,
    last_modified_ms: i64,
    e_tag: Option<String>,
}

fn write_all(w: &mut impl Write, b: &[u8]) -> foyer::Result<()> {
    w.write_all(b).map_err(foyer::Error::io_error)
}

fn read_u64(r: &mut impl Read) -> foyer::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(foyer::Error::io_error)?;
    Ok(u64::from_le_bytes(b))
}

fn read_bytes(r: &mut impl Read, len: u64) -> foyer::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.take(len)
        .read_to_end(&mut v)
        .map_err(foyer::Error::io_error)?;
    if v.len() as u64 != len {
        return Err(foyer::Error::io_error(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(v)
}

fn read_string(r: &mut impl Read, len: u64) -> foyer::Result<String> {
    String::from_utf8(read_bytes(r, len)?).map_err(|e| {
        foyer::Error::io_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })
}

/// Disk-tier encoding: path length, path, page index (little endian).
impl Code for PageKey {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        write_all(w, &(self.path.len() as u64).to_le_bytes())?;
        write_all(w, self.path.as_bytes())?;
        write_all(w, &self.index.to_le_bytes())
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let len = read_u64(r)?;
        let path = read_string(r, len)?;
        let index = read_u64(r)?;
        Ok(Self {
            path: path.into(),
            index,
        })
    }

    fn estimated_size(&self) -> usize {
        16 + self.path.len()
    }
}

/// Disk-tier encoding: object size, last modified (ms), e-tag length
/// (`u64::MAX` for none) and e-tag, data length and data.
impl Code for Page {
    fn encode(&self, w: &mut impl Write) -> foyer::Result<()> {
        write_all(w, &self.object_size.to_le_bytes())?;
        write_all(w, &self.last_modified_ms.to_le_bytes())?;
        match &self.e_tag {
            Some(t) => {
                write_all(w, &(t.len() as u64).to_le_bytes())?;
                write_all(w, t.as_bytes())?;
            }
            None => write_all(w, &u64::MAX.to_le_bytes())?,
        }
        write_all(w, &(self.data.len() as u64).to_le_bytes())?;
        write_all(w, &self.data)
    }

    fn decode(r: &mut impl Read) -> foyer::Result<Self> {
        let object_size = read_u64(r)?;
        let last_modified_ms = read_u64(r)? as i64;
        let e_tag = match read_u64(r)? {
            u64::MAX => None,
            len => Some(read_string(r, len)?),
        };
        let len = read_u64(r)?;
        let data = Bytes::from(read_bytes(r, len)?);
        Ok(Self {
            data,
            object_size,
            last_modified_ms,
            e_tag,
        })
    }

    fn estimated_size(&self) -> usize {
        32 + self.e_tag.as_ref().map_or(0, String::len) + self.data.len()
    }
}

type PageCache = HybridCache<PageKey, Page>;

/// Why pages could not be served: the object does not exist (answered as
/// such), or anything else (the request is passed through to the inner
/// store, which answers with its own result or error).
enum PageError {
    NotFound,
    PassThrough,
}

pub struct CachedStore {
    inner: Arc<dyn ObjectStore>,
    config: CacheConfig,
    metrics: CacheMetrics,
    /// Built on first use: foyer's builder is async, the server's assembly
    /// is not.
    cache: OnceCell<PageCache>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Display for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedStore({})", self.inner)
    }
}

impl CachedStore {
    /// A cache over `inner` sized by `config` (which must be valid and enabled).
    pub fn new(inner: Arc<dyn ObjectStore>, config: CacheConfig, metrics: CacheMetrics) -> Self {
        Self {
            inner,
            config,
            metrics,
            cache: OnceCell::new(),
        }
    }

    async fn cache(&self) -> Result<&PageCache> {
        self.cache
            .get_or_try_init(|| build_cache(&self.config))
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "CachedStore",
                source: Box::new(e),
            })
    }

    /// The pages `indices` of `location`, from the cache or the inner store.
    async fn pages(
        &self,
        location: &Path,
        indices: &[u64],
    ) -> Result<HashMap<u64, Page>, PageError> {
        let cache = self.cache().await.map_err(|_| PageError::PassThrough)?;
        let path: Arc<str> = location.as_ref().into();
        let page_bytes = self.config.page_bytes;
        stream::iter(indices.iter().copied())
            .map(|index| {
                let key = PageKey {
                    path: path.clone(),
                    index,
                };
                let inner = self.inner.clone();
                let location = location.clone();
                let metrics = self.metrics.clone();
                async move {
                    let start = index * page_bytes;
                    let fetch = move || async move {
                        let options = GetOptions {
                            range: Some(GetRange::Bounded(start..start + page_bytes)),
                            ..Default::default()
                        };
                        let r = inner.get_opts(&location, options).await?;
                        let meta = r.meta.clone();
                        let data = r.bytes().await?;
                        metrics.miss_bytes.inc_by(data.len() as u64);
                        Ok::<_, object_store::Error>(Page {
                            data,
                            object_size: meta.size,
                            last_modified_ms: meta.last_modified.timestamp_millis(),
                            e_tag: meta.e_tag,
                        })
                    };
                    match cache.get_or_fetch(&key, fetch).await {
                        Ok(entry) => {
                            let page = entry.value().clone();
                            let tier = match entry.source() {
                                Source::Outer => None,
                                Source::Memory => Some("memory"),
                                Source::Disk => Some("disk"),
                            };
                            match tier {
                                None => {
                                    self.metrics.misses.inc();
                                }
                                Some(tier) => {
                                    self.metrics.hits.get_or_create(&TierLabels { tier }).inc();
                                    self.metrics.hit_bytes.inc_by(page.data.len() as u64);
                                }
                            }
                            Ok((index, page))
                        }
                        Err(e) => match e.downcast_ref::<object_store::Error>() {
                            Some(object_store::Error::NotFound { .. }) => Err(PageError::NotFound),
                            _ => Err(PageError::PassThrough),
                        },
                    }
                }
            })
            .buffer_unordered(PAGE_FETCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Page 0 of `location`: its bytes and the object's size and metadata.
    async fn first_page(&self, location: &Path) -> Result<Page, PageError> {
        let mut pages = self.pages(location, &[0]).await?;
        pages.remove(&0).ok_or(PageError::PassThrough)
    }

    /// The bytes of each range (each within `0..size`) from cached pages.
    async fn read_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> Result<(Vec<Bytes>, Page), PageError> {
        let p = self.config.page_bytes;
        let mut indices: Vec<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end)
            .flat_map(|r| r.start / p..=(r.end - 1) / p)
            .collect();
        indices.sort_unstable();
        indices.dedup();
        if indices.is_empty() {
            indices.push(0); // for the object's metadata
        }
        let pages = self.pages(location, &indices).await?;
        let any = pages
            .values()
            .next()
            .cloned()
            .ok_or(PageError::PassThrough)?;
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            out.push(assemble(&pages, p, r.clone()).ok_or(PageError::PassThrough)?);
        }
        Ok((out, any))
    }

    fn not_found(location: &Path) -> object_store::Error {
        object_store::Error::NotFound {
            path: location.to_string(),
            source: "object not found (read through the query cache)".into(),
        }
    }

    async fn cached_get(
        &self,
        location: &Path,
        options: &GetOptions,
    ) -> Result<GetResult, PageError> {
        let range = match &options.range {
            Some(GetRange::Bounded(r)) if r.start < r.end => r.clone(),
            Some(GetRange::Bounded(_)) => return Err(PageError::PassThrough),
            other => {
                let first = self.first_page(location).await?;
                let size = first.object_size;
                match other {
                    None => 0..size,
                    Some(GetRange::Offset(o)) if *o < size => *o..size,
                    Some(GetRange::Suffix(n)) => size.saturating_sub(*n)..size,
                    _ => return Err(PageError::PassThrough),
                }
            }
        };
        if range.is_empty() {
            // An empty object: the inner store knows how to answer.
            return Err(PageError::PassThrough);
        }
        let (mut bytes, page) = self
            .read_ranges(location, std::slice::from_ref(&range))
            .await?;
        let data = bytes.pop().ok_or(PageError::PassThrough)?;
        // A range reaching past the end is clamped, as object stores do.
        let range = range.start..range.start + data.len() as u64;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: DateTime::<Utc>::from_timestamp_millis(page.last_modified_ms)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            size: page.object_size,
            e_tag: page.e_tag,
            version: None,
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async move { Ok(data) }).boxed()),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }
}

/// The bytes of `range` from `pages` (of `page_bytes` each), clamped to the
/// object's end; `None` if a page is missing or the range starts past the end.
fn assemble(pages: &HashMap<u64, Page>, page_bytes: u64, range: Range<u64>) -> Option<Bytes> {
    if range.is_empty() {
        return Some(Bytes::new());
    }
    let size = pages.values().next()?.object_size;
    if range.start >= size {
        return None;
    }
    let range = range.start..range.end.min(size);
    let (first, last) = (range.start / page_bytes, (range.end - 1) / page_bytes);
    let slice = |i: u64| -> Option<Bytes> {
        let page = pages.get(&i)?;
        let base = i * page_bytes;
        let from = usize::try_from(range.start.max(base) - base).ok()?;
        let to = usize::try_from(range.end.min(base + page_bytes) - base).ok()?;
        (to <= page.data.len()).then(|| page.data.slice(from..to))
    };
    if first == last {
        return slice(first);
    }
    let mut out = BytesMut::with_capacity(usize::try_from(range.end - range.start).ok()?);
    for i in first..=last {
        out.extend_from_slice(&slice(i)?);
    }
    Some(out.freeze())
}

async fn build_cache(config: &CacheConfig) -> foyer::Result<PageCache> {
    let memory = usize::try_from(config.memory_bytes).unwrap_or(usize::MAX);
    let builder = HybridCacheBuilder::new()
        .with_name("strata-query-cache")
        .memory(memory)
        .with_weighter(|k: &PageKey, v: &Page| k.path.len() + v.data.len() + PAGE_OVERHEAD)
        .storage();
    if config.disk_bytes == 0 {
        return builder.build().await;
    }
    std::fs::create_dir_all(&config.disk_dir).map_err(foyer::Error::io_error)?;
    let device = FsDeviceBuilder::new(&config.disk_dir)
        .with_capacity(usize::try_from(config.disk_bytes).unwrap_or(usize::MAX))
        .build()?;
    let block = usize::try_from(config.disk_block_bytes()).unwrap_or(usize::MAX);
    builder
        .with_engine_config(BlockEngineConfig::new(device).with_block_size(block))
        .with_recover_mode(RecoverMode::None)
        .build()
        .await
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let plain = !options.head
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none();
        if plain && is_immutable(location) {
            match self.cached_get(location, &options).await {
                Ok(r) => return Ok(r),
                Err(PageError::NotFound) => return Err(Self::not_found(location)),
                Err(PageError::PassThrough) => {}
            }
        }
        self.metrics.bypass.inc();
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if is_immutable(location) {
            match self.read_ranges(location, ranges).await {
                Ok((bytes, _)) => return Ok(bytes),
                Err(PageError::NotFound) => return Err(Self::not_found(location)),
                Err(PageError::PassThrough) => {}
            }
        }
        self.metrics.bypass.inc();
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use ulid::Ulid;

    use super::*;
    use crate::instrumented_store::{InstrumentedStore, StoreMetrics};
    use crate::tenant::TenantId;

    const PAGE: u64 = 4096;
    /// Two and a half pages.
    const SIZE: usize = 10_000;

    struct Fixture {
        /// The store under the cache, counting requests.
        raw: Arc<dyn ObjectStore>,
        requests: StoreMetrics,
        cached: CachedStore,
        metrics: CacheMetrics,
    }

    fn fixture(config: CacheConfig) -> Fixture {
        let requests = StoreMetrics::unregistered();
        let raw: Arc<dyn ObjectStore> = Arc::new(InstrumentedStore::new(
            Arc::new(InMemory::new()),
            requests.clone(),
        ));
        let metrics = CacheMetrics::default();
        let cached = CachedStore::new(raw.clone(), config, metrics.clone());
        Fixture {
            raw,
            requests,
            cached,
            metrics,
        }
    }

    fn small_pages() -> CacheConfig {
        CacheConfig {
            memory_bytes: 64 * MIB,
            page_bytes: PAGE,
            ..CacheConfig::default()
        }
    }

    fn tenant() -> TenantId {
        TenantId::new("t1").expect("tenant")
    }

    fn block_key() -> Path {
        paths::block(&tenant(), "raw", Ulid::from_parts(1, 2))
    }

    /// Deterministic bytes that differ at every offset of interest.
    fn content(n: usize, seed: u64) -> Bytes {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>()
            .into()
    }

    async fn put(f: &Fixture, key: &Path, data: &Bytes) {
        f.raw.put(key, data.clone().into()).await.expect("put");
    }

    #[test]
    fn only_segments_blocks_and_manifest_versions_are_immutable() {
        let t = tenant();
        assert!(is_immutable(&paths::segment(&t, Ulid::new())));
        assert!(is_immutable(&paths::block(&t, "raw", Ulid::new())));
        assert!(is_immutable(&paths::manifest(&t, 7)));
        assert!(is_immutable(&paths::sidecar(&t, Ulid::new())));
        assert!(!is_immutable(&paths::lease("compact", &t, "0", 3)));
        assert!(!is_immutable(&paths::segments_prefix(&t)));
        assert!(!is_immutable(&paths::manifest_prefix(&t)));
        assert!(!is_immutable(&Path::from(
            "tenants/t1/manifest/latest.json"
        )));
        assert!(!is_immutable(&Path::from(
            "tenants/t1/blocks/raw/x/y.parquet"
        )));
        assert!(!is_immutable(&Path::from(
            "other/t1/blocks/raw/01ARZ3NDEKTSV4RRFFQ69G5FAV.parquet"
        )));
    }

    #[test]
    fn config_rules_name_the_field() {
        assert!(CacheConfig::default().validate().is_ok());
        let bad = |c: CacheConfig, field: &str| {
            let e = c.validate().expect_err("invalid");
            assert!(e.contains(field), "{e}");
        };
        bad(
            CacheConfig {
                page_bytes: 100,
                ..CacheConfig::default()
            },
            "query.cache.page_bytes",
        );
        bad(
            CacheConfig {
                disk_bytes: 1 << 30,
                ..CacheConfig::default()
            },
            "query.cache.disk_dir",
        );
        bad(
            CacheConfig {
                disk_bytes: 1 << 20,
                disk_dir: "/tmp/x".into(),
                ..CacheConfig::default()
            },
            "query.cache.disk_bytes",
        );
        let off = CacheConfig {
            memory_bytes: 0,
            ..CacheConfig::default()
        };
        assert!(!off.is_enabled());
        assert!(off.validate().is_ok());
    }

    #[tokio::test]
    async fn second_read_of_a_page_is_a_hit() {
        let f = fixture(small_pages());
        let key = block_key();
        let data = content(SIZE, 1);
        put(&f, &key, &data).await;
        let before = f.requests.total();

        let got = f.cached.get_range(&key, 100..200).await.expect("range");
        assert_eq!(got, data.slice(100..200));
        assert_eq!(f.requests.total() - before, 1, "one page fetched");
        assert_eq!((f.metrics.hits(), f.metrics.misses()), (0, 1));

        let got = f.cached.get_range(&key, 0..4096).await.expect("range");
        assert_eq!(got, data.slice(0..4096));
        assert_eq!(f.requests.total() - before, 1, "served from the cache");
        assert_eq!((f.metrics.hits(), f.metrics.misses()), (1, 1));
    }

    #[tokio::test]
    async fn ranges_spanning_pages_and_the_last_partial_page() {
        let f = fixture(small_pages());
        let key = block_key();
        let data = content(SIZE, 2);
        put(&f, &key, &data).await;

        // Pages 0, 1 and 2 (the last one holds 10000 - 8192 = 1808 bytes).
        let got = f.cached.get_range(&key, 4000..9000).await.expect("range");
        assert_eq!(got, data.slice(4000..9000));
        assert_eq!(f.metrics.misses(), 3);
        let got = f
            .cached
            .get_range(&key, 8192..10_000)
            .await
            .expect("last page");
        assert_eq!(got, data.slice(8192..10_000));
        assert_eq!(f.metrics.misses(), 3, "the last page was already cached");

        // A range past the end is clamped, like the inner store does.
        let opts = |range: GetRange| GetOptions {
            range: Some(range),
            ..GetOptions::default()
        };
        let r = f
            .cached
            .get_opts(&key, opts(GetRange::Bounded(9000..20_000)))
            .await
            .expect("clamped");
        assert_eq!((r.range.clone(), r.meta.size), (9000..10_000, SIZE as u64));
        assert_eq!(r.bytes().await.expect("bytes"), data.slice(9000..));
        let inner = f
            .raw
            .get_opts(&key, opts(GetRange::Bounded(9000..20_000)))
            .await
            .expect("inner");
        assert_eq!(inner.range, 9000..10_000);

        // Starting past the end is the inner store's error.
        assert!(f.cached.get_range(&key, 10_000..10_001).await.is_err());
        assert!(f.raw.get_range(&key, 10_000..10_001).await.is_err());
    }

    #[tokio::test]
    async fn whole_object_offset_and_suffix_gets() {
        let f = fixture(small_pages());
        let key = paths::manifest(&tenant(), 3);
        let data = content(SIZE, 3);
        put(&f, &key, &data).await;
        let whole = f.cached.get(&key).await.expect("get");
        assert_eq!(whole.meta.size, SIZE as u64);
        assert_eq!(whole.bytes().await.expect("bytes"), data);
        for range in [
            GetRange::Offset(5000),
            GetRange::Suffix(3000),
            GetRange::Suffix(20_000),
        ] {
            let opts = GetOptions {
                range: Some(range.clone()),
                ..GetOptions::default()
            };
            let want = f.raw.get_opts(&key, opts.clone()).await.expect("inner");
            let got = f.cached.get_opts(&key, opts).await.expect("cached");
            assert_eq!(got.range, want.range, "{range}");
            assert_eq!(
                got.bytes().await.expect("bytes"),
                want.bytes().await.expect("bytes"),
                "{range}"
            );
        }
        assert_eq!(f.metrics.misses(), 3, "each page fetched once");
        assert_eq!(f.metrics.bypassed(), 0);
    }

    #[tokio::test]
    async fn objects_that_are_not_cacheable_pass_through() {
        let f = fixture(small_pages());
        let lease = paths::lease("compact", &tenant(), "0", 1);
        put(&f, &lease, &Bytes::from_static(b"lease v1")).await;
        let before = f.requests.total();
        for _ in 0..2 {
            let got = f.cached.get(&lease).await.expect("get");
            assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"lease v1");
        }
        assert_eq!(
            f.requests.total() - before,
            2,
            "every read reaches the store"
        );
        // A changed lease is seen at once.
        put(&f, &lease, &Bytes::from_static(b"lease v2")).await;
        let got = f.cached.get(&lease).await.expect("get");
        assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"lease v2");
        // Heads and conditional gets of cacheable objects pass through too.
        let key = block_key();
        put(&f, &key, &content(100, 4)).await;
        assert_eq!(f.cached.head(&key).await.expect("head").size, 100);
        let cond = GetOptions {
            if_none_match: Some("*".into()),
            ..GetOptions::default()
        };
        assert!(f.cached.get_opts(&key, cond).await.is_err());
        assert_eq!(f.metrics.misses(), 0);
        assert_eq!(f.metrics.bypassed(), 5);
    }

    #[tokio::test]
    async fn not_found_is_answered_and_never_remembered() {
        let f = fixture(small_pages());
        let key = paths::manifest(&tenant(), 2);
        let err = f.cached.get(&key).await.expect_err("missing");
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        let err = f.cached.get_range(&key, 0..10).await.expect_err("missing");
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        put(&f, &key, &Bytes::from_static(b"{\"v\":2}")).await;
        let got = f.cached.get(&key).await.expect("now present");
        assert_eq!(got.bytes().await.expect("bytes").as_ref(), b"{\"v\":2}");
    }

    /// A deterministic generator for the random-range test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    async fn agrees_with_inner_on_random_ranges(f: &Fixture, seed: u64) {
        let mut rng = Rng(seed);
        let mut objects = Vec::new();
        for i in 0..4u64 {
            let key = paths::segment(&tenant(), Ulid::from_parts(i + 1, u128::from(i)));
            let size = 1 + rng.below(5 * PAGE) as usize;
            let data = content(size, seed + i);
            put(f, &key, &data).await;
            objects.push((key, size as u64));
        }
        for _ in 0..300 {
            let (key, size) = &objects[rng.below(objects.len() as u64) as usize];
            let start = rng.below(*size);
            let end = start + 1 + rng.below(*size - start);
            let want = f.raw.get_range(key, start..end).await.expect("inner");
            let got = f.cached.get_range(key, start..end).await.expect("cached");
            assert_eq!(got, want, "{key} {start}..{end}");
            let ranges: Vec<Range<u64>> = (0..1 + rng.below(4))
                .map(|_| {
                    let s = rng.below(*size);
                    s..s + 1 + rng.below(*size - s)
                })
                .collect();
            let want = f.raw.get_ranges(key, &ranges).await.expect("inner");
            let got = f.cached.get_ranges(key, &ranges).await.expect("cached");
            assert_eq!(got, want, "{key} {ranges:?}");
        }
    }

    #[tokio::test]
    async fn random_ranges_match_the_inner_store() {
        let f = fixture(small_pages());
        agrees_with_inner_on_random_ranges(&f, 0x5eed).await;
        assert!(f.metrics.hits() > f.metrics.misses());
    }

    #[tokio::test]
    async fn a_small_memory_tier_evicts_and_stays_correct() {
        // Room for about two pages: most reads miss, all must be right.
        let f = fixture(CacheConfig {
            memory_bytes: 2 * (PAGE + 300),
            ..small_pages()
        });
        agrees_with_inner_on_random_ranges(&f, 0xabc).await;
    }

    #[tokio::test]
    async fn the_disk_tier_stays_correct() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = fixture(CacheConfig {
            memory_bytes: 2 * (PAGE + 300),
            disk_bytes: 80 * MIB,
            disk_dir: dir.path().join("cache"),
            page_bytes: PAGE,
            ..CacheConfig::default()
        });
        assert!(f.cached.config.validate().is_ok());
        agrees_with_inner_on_random_ranges(&f, 0xd15c).await;
        assert!(dir.path().join("cache").is_dir());
    }
}
