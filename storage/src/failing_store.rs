//! An [`ObjectStore`] wrapper that injects faults, for tests: it can hold puts
//! until released (to observe what happens while a put is in flight) and fail
//! puts (as a 5xx from S3 would). It counts puts that completed, so tests can
//! check that nothing is acknowledged before its object is stored.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::watch;

/// Switches shared by a [`FailingStore`] and the test that drives it.
#[derive(Debug)]
pub struct Faults {
    fail_puts: AtomicBool,
    hold_puts: watch::Sender<bool>,
    puts_started: AtomicUsize,
    puts_completed: AtomicUsize,
}

impl Faults {
    /// Make every following put fail (true) or succeed (false).
    pub fn fail_puts(&self, on: bool) {
        self.fail_puts.store(on, Ordering::SeqCst);
    }

    /// Hold puts before they reach the inner store (true), or let them go.
    pub fn hold_puts(&self, on: bool) {
        self.hold_puts.send_replace(on);
    }

    pub fn puts_started(&self) -> usize {
        self.puts_started.load(Ordering::SeqCst)
    }

    /// Puts that the inner store acknowledged.
    pub fn puts_completed(&self) -> usize {
        self.puts_completed.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl FailingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> (Self, Arc<Faults>) {
        let faults = Arc::new(Faults {
            fail_puts: AtomicBool::new(false),
            hold_puts: watch::channel(false).0,
            puts_started: AtomicUsize::new(0),
            puts_completed: AtomicUsize::new(0),
        });
        (
            Self {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.puts_started.fetch_add(1, Ordering::SeqCst);
        let mut held = self.faults.hold_puts.subscribe();
        // Err means the sender is gone, which cannot happen while `faults` lives.
        let _ = held.wait_for(|on| !on).await;
        if self.faults.fail_puts.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "FailingStore",
                source: "injected put failure (503 Slow Down)".into(),
            });
        }
        let r = self.inner.put_opts(location, payload, opts).await?;
        self.faults.puts_completed.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
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

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
