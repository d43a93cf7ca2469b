//! An [`ObjectStore`] wrapper that injects faults, for tests: it can hold puts
//! until released (to observe what happens while a put is in flight) and fail
//! puts (as a 5xx from S3 would), only those whose key contains a given part
//! if asked (say, the manifest's), and fail deletes. It counts puts that
//! completed, so tests can check that nothing is acknowledged before its
//! object is stored.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
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
    fail_puts_matching: Mutex<Option<String>>,
    fail_deletes: AtomicBool,
    hold_puts: watch::Sender<bool>,
    puts_started: AtomicUsize,
    puts_completed: AtomicUsize,
}

impl Faults {
    /// Make every following put fail (true) or succeed (false).
    pub fn fail_puts(&self, on: bool) {
        self.fail_puts.store(on, Ordering::SeqCst);
    }

    /// Make following puts fail only if their key contains `part` (None: stop).
    pub fn fail_puts_matching(&self, part: Option<&str>) {
        if let Ok(mut m) = self.fail_puts_matching.lock() {
            *m = part.map(str::to_string);
        }
    }

    /// Make every following delete fail (true) or succeed (false).
    pub fn fail_deletes(&self, on: bool) {
        self.fail_deletes.store(on, Ordering::SeqCst);
    }

    fn put_fails(&self, key: &Path) -> bool {
        self.fail_puts.load(Ordering::SeqCst)
            || self
                .fail_puts_matching
                .lock()
                .ok()
                .and_then(|m| m.as_ref().map(|p| key.as_ref().contains(p.as_str())))
                .unwrap_or(false)
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
            fail_puts_matching: Mutex::new(None),
            fail_deletes: AtomicBool::new(false),
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
        if self.faults.put_fails(location) {
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
        if self.faults.fail_deletes.load(Ordering::SeqCst) {
            return locations
                .map(|_| {
                    Err(object_store::Error::Generic {
                        store: "FailingStore",
                        source: "injected delete failure".into(),
                    })
                })
                .boxed();
        }
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
