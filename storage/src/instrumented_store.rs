//! An [`ObjectStore`] wrapper that counts requests and their latency by
//! operation (`strata_object_store_requests_total{op,outcome}`), so operators
//! see what Strata asks of S3 and what it costs.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug)]
pub struct StoreMetrics {
    requests: Family<OpLabels, Counter>,
    seconds: Family<OpLabels, Histogram>,
    /// All requests, for callers that report their own request counts (a
    /// compaction pass logs how many requests it made).
    total: Arc<AtomicU64>,
}

impl StoreMetrics {
    /// Creates the metrics and registers them under `strata_object_store_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("strata_object_store");
        r.register(
            "requests",
            "Object store requests by operation and outcome",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "Object store request latency by operation and outcome",
            m.seconds.clone(),
        );
        m
    }

    /// Metrics that are not exported; only [`StoreMetrics::total`] is read.
    pub fn unregistered() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            total: Arc::default(),
        }
    }

    /// Requests observed so far (all operations and outcomes).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn observe<T>(&self, op: &'static str, started: Instant, r: &Result<T>) {
        let outcome = match r {
            Ok(_) => "ok",
            Err(object_store::Error::NotFound { .. }) => "not_found",
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => "conflict",
            Err(_) => "error",
        };
        self.total.fetch_add(1, Ordering::Relaxed);
        let labels = OpLabels { op, outcome };
        self.requests.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    metrics: StoreMetrics,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: StoreMetrics) -> Self {
        Self { inner, metrics }
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let t = Instant::now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.metrics.observe("put", t, &r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let t = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.metrics.observe("put_multipart", t, &r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let t = Instant::now();
        let op = if options.head { "head" } else { "get" };
        let r = self.inner.get_opts(location, options).await;
        self.metrics.observe(op, t, &r);
        r
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let t = Instant::now();
        let r = self.inner.get_ranges(location, ranges).await;
        self.metrics.observe("get_ranges", t, &r);
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let metrics = self.metrics.clone();
        self.inner
            .delete_stream(locations)
            .map(move |r| {
                metrics.observe("delete", Instant::now(), &r);
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        // One count per listing (S3 bills LIST per page, roughly per call here).
        self.metrics.observe::<()>("list", Instant::now(), &Ok(()));
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.metrics.observe("list", t, &r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.metrics.observe("copy", t, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn counts_requests_by_operation_and_outcome() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::register(&mut registry);
        let store =
            InstrumentedStore::new(Arc::new(object_store::memory::InMemory::new()), metrics);
        store
            .put(&Path::from("a"), PutPayload::from_static(b"x"))
            .await
            .expect("put");
        store.get(&Path::from("a")).await.expect("get");
        assert!(store.get(&Path::from("missing")).await.is_err());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"strata_object_store_requests_total{op="put",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_object_store_requests_total{op="get",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_object_store_requests_total{op="get",outcome="not_found"} 1"#),
            "{text}"
        );
    }
}
