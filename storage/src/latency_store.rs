//! An [`ObjectStore`] wrapper that delays every request before it reaches the
//! inner store, so a local directory behaves like a remote bucket: cold-cache
//! query latency can be measured on a laptop as if on S3 (where the first
//! byte of a GET typically arrives 20-50 ms after the request).
//!
//! Reads (get, head, ranged gets, listings) wait `read` and writes (put,
//! multipart put, delete, copy) wait `write` before the inner call starts.
//! `get_ranges` waits once: object stores fetch the ranges of one call
//! concurrently, so their first bytes arrive after about one round trip. A
//! listing waits once, before its first page. Transfer time is not modelled.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use serde::Deserialize;

/// Injected first-byte delays (`[query.inject_latency]`). Zero disables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Before every get, head, ranged get and listing.
    #[serde(with = "humantime_serde")]
    pub read: Duration,
    /// Before every put, multipart put, delete and copy.
    #[serde(with = "humantime_serde")]
    pub write: Duration,
}

impl LatencyConfig {
    /// Whether any delay is configured.
    pub fn is_enabled(&self) -> bool {
        !self.read.is_zero() || !self.write.is_zero()
    }
}

#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    config: LatencyConfig,
}

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, config: LatencyConfig) -> Self {
        Self { inner, config }
    }

    async fn before_read(&self) {
        wait(self.config.read).await;
    }

    async fn before_write(&self) {
        wait(self.config.write).await;
    }
}

async fn wait(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LatencyStore(read={:?}, write={:?}, {})",
            self.config.read, self.config.write, self.inner
        )
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.before_write().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.before_write().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.before_read().await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.before_read().await;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let delay = self.config.write;
        let delayed = locations
            .then(move |l| async move {
                wait(delay).await;
                l
            })
            .boxed();
        self.inner.delete_stream(delayed)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, delay) = (self.inner.list(prefix), self.config.read);
        stream::once(async move {
            wait(delay).await;
            inner
        })
        .flatten()
        .boxed()
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let (inner, delay) = (
            self.inner.list_with_offset(prefix, offset),
            self.config.read,
        );
        stream::once(async move {
            wait(delay).await;
            inner
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.before_read().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.before_write().await;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    const DELAY: Duration = Duration::from_millis(40);

    fn store(read: Duration, write: Duration) -> LatencyStore {
        LatencyStore::new(Arc::new(InMemory::new()), LatencyConfig { read, write })
    }

    /// Runs `f` and asserts it took at least `min` (timers never fire early;
    /// an upper bound would depend on the machine's load).
    async fn at_least<T>(min: Duration, what: &str, f: impl Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        let took = t.elapsed();
        assert!(
            took >= min,
            "{what} took {took:?}, expected at least {min:?}"
        );
        out
    }

    #[tokio::test]
    async fn reads_wait_the_read_delay() {
        let s = store(DELAY, Duration::ZERO);
        let key = Path::from("a/b");
        s.put(&key, PutPayload::from_static(b"hello"))
            .await
            .expect("put");
        let got = at_least(DELAY, "get", async {
            s.get(&key)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes")
        })
        .await;
        assert_eq!(got.as_ref(), b"hello");
        let r = at_least(DELAY, "get_range", s.get_range(&key, 1..3)).await;
        assert_eq!(r.expect("range").as_ref(), b"el");
        let r = at_least(DELAY, "get_ranges", s.get_ranges(&key, &[0..1, 4..5])).await;
        assert_eq!(r.expect("ranges"), vec![Bytes::from("h"), Bytes::from("o")]);
        let m = at_least(DELAY, "head", s.head(&key)).await;
        assert_eq!(m.expect("head").size, 5);
        let listed: Vec<ObjectMeta> = at_least(DELAY, "list", s.list(None).try_collect())
            .await
            .expect("list");
        assert_eq!(listed.len(), 1);
        let l = at_least(DELAY, "list_with_delimiter", s.list_with_delimiter(None)).await;
        assert_eq!(l.expect("list").common_prefixes, vec![Path::from("a")]);
        // Errors are delayed too, and keep their kind.
        let missing = at_least(DELAY, "missing get", s.get(&Path::from("nope"))).await;
        assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn writes_wait_the_write_delay() {
        let s = store(Duration::ZERO, DELAY);
        let key = Path::from("k");
        at_least(DELAY, "put", s.put(&key, PutPayload::from_static(b"x")))
            .await
            .expect("put");
        at_least(DELAY, "copy", s.copy(&key, &Path::from("k2")))
            .await
            .expect("copy");
        at_least(DELAY, "delete", s.delete(&key))
            .await
            .expect("delete");
        // Reads are not delayed by the write setting; this only checks they work.
        assert!(s.get(&key).await.is_err());
        assert!(s.get(&Path::from("k2")).await.is_ok());
    }

    #[test]
    fn config_reads_human_durations() {
        let c: LatencyConfig = serde_json::from_str(r#"{"read": "30ms"}"#).expect("parse");
        assert_eq!(c.read, Duration::from_millis(30));
        assert_eq!(c.write, Duration::ZERO);
        assert!(c.is_enabled());
        assert!(!LatencyConfig::default().is_enabled());
        assert!(serde_json::from_str::<LatencyConfig>(r#"{"reed": "30ms"}"#).is_err());
    }
}
