//! An [`ObjectStore`] wrapper that injects faults, for tests.
//!
//! Puts can be held until released (to observe what happens while a put is
//! in flight), slowed down, or failed the ways S3 fails them: a 5xx
//! ([`Fault::Unavailable`]), a timeout ([`Fault::Timeout`]), a connection
//! reset ([`Fault::ConnectionReset`]), or an error returned after the inner
//! store has stored the bytes ([`Fault::AfterStore`], the response that got
//! lost). Faults apply to every put, to those whose key contains a given
//! part (say, the manifest's), or to the next `n` puts. Reads (get, head,
//! ranged gets) and listings can fail the same ways, always or every `n`th
//! call, and deletes can fail. Counters tell tests what the inner store
//! really did, so they can check that nothing is acknowledged before its
//! object is stored.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How an injected failure looks to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An immediate 5xx (S3's `503 Slow Down`); nothing stored.
    Unavailable,
    /// No answer for this long, then a timeout error; nothing stored.
    Timeout(Duration),
    /// The connection was reset mid-request; nothing stored.
    ConnectionReset,
    /// The inner store stored the bytes, then the response was lost: the
    /// caller sees an error although the object exists. For reads and
    /// listings it is the same as `ConnectionReset`.
    AfterStore,
}

impl Fault {
    fn error(self, op: &str) -> object_store::Error {
        let source: Box<dyn std::error::Error + Send + Sync> = match self {
            Self::Unavailable => format!("injected {op} failure (503 Slow Down)").into(),
            Self::Timeout(d) => Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("injected {op} timeout after {d:?}"),
            )),
            Self::ConnectionReset => Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!("injected {op} connection reset"),
            )),
            Self::AfterStore => Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!("injected {op} connection reset after the request was processed"),
            )),
        };
        object_store::Error::Generic {
            store: "FailingStore",
            source,
        }
    }

    /// Waits as the fault would before its error shows.
    async fn delay(self) {
        if let Self::Timeout(d) = self {
            tokio::time::sleep(d).await;
        }
    }
}

/// Which reads fail: always, or every `n`th read (1-based count of reads
/// since the rule was set), so a test can fail reads at every point of a
/// query in turn.
#[derive(Clone, Copy, Debug)]
struct ReadRule {
    fault: Fault,
    every: usize,
}

/// Switches shared by a [`FailingStore`] and the test that drives it.
#[derive(Debug)]
pub struct Faults {
    put_fault: Mutex<Option<Fault>>,
    fail_puts_matching: Mutex<Option<(String, Fault)>>,
    next_puts: Mutex<(usize, Option<Fault>)>,
    slow_puts: Mutex<Option<Duration>>,
    read_rule: Mutex<Option<ReadRule>>,
    reads: AtomicUsize,
    fail_lists: Mutex<Option<Fault>>,
    fail_deletes: AtomicBool,
    hold_puts: watch::Sender<bool>,
    puts_started: AtomicUsize,
    puts_completed: AtomicUsize,
    puts_stored_then_failed: AtomicUsize,
    faults_injected: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; the
    // value is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Faults {
    /// Make every following put fail (true, as a 5xx) or succeed (false).
    pub fn fail_puts(&self, on: bool) {
        self.put_fault(on.then_some(Fault::Unavailable));
    }

    /// Make every following put fail with `fault` (None: succeed).
    pub fn put_fault(&self, fault: Option<Fault>) {
        *lock(&self.put_fault) = fault;
    }

    /// Make following puts fail (as a 5xx) only if their key contains `part`
    /// (None: stop).
    pub fn fail_puts_matching(&self, part: Option<&str>) {
        self.put_fault_matching(part, Fault::Unavailable);
    }

    /// Make following puts whose key contains `part` fail with `fault`.
    pub fn put_fault_matching(&self, part: Option<&str>, fault: Fault) {
        *lock(&self.fail_puts_matching) = part.map(|p| (p.to_string(), fault));
    }

    /// Make the next `n` puts fail with `fault`, then succeed again.
    pub fn fail_next_puts(&self, n: usize, fault: Fault) {
        *lock(&self.next_puts) = (n, Some(fault));
    }

    /// Delay every put by `delay` before it reaches the inner store (None:
    /// no delay). The put then succeeds.
    pub fn slow_puts(&self, delay: Option<Duration>) {
        *lock(&self.slow_puts) = delay;
    }

    /// Make reads (get, head, ranged gets) fail with `fault`: every read
    /// with `every == 1`, every `every`th read otherwise (counting from
    /// now). None: reads succeed.
    pub fn fail_reads(&self, rule: Option<(Fault, usize)>) {
        self.reads.store(0, Ordering::SeqCst);
        *lock(&self.read_rule) = rule.map(|(fault, every)| ReadRule {
            fault,
            every: every.max(1),
        });
    }

    /// Make listings fail with `fault` (None: succeed).
    pub fn fail_lists(&self, fault: Option<Fault>) {
        *lock(&self.fail_lists) = fault;
    }

    /// Make every following delete fail (true) or succeed (false).
    pub fn fail_deletes(&self, on: bool) {
        self.fail_deletes.store(on, Ordering::SeqCst);
    }

    /// The fault the put of `key` gets, if any (consumes one of the "next
    /// n puts").
    fn put_fault_for(&self, key: &Path) -> Option<Fault> {
        let fault = {
            let mut next = lock(&self.next_puts);
            match next.1 {
                Some(f) if next.0 > 0 => {
                    next.0 -= 1;
                    Some(f)
                }
                _ => None,
            }
        };
        let fault = fault.or(*lock(&self.put_fault)).or_else(|| {
            lock(&self.fail_puts_matching)
                .as_ref()
                .filter(|(part, _)| key.as_ref().contains(part.as_str()))
                .map(|(_, f)| *f)
        });
        if fault.is_some() {
            self.faults_injected.fetch_add(1, Ordering::SeqCst);
        }
        fault
    }

    fn read_fault(&self) -> Option<Fault> {
        let rule = (*lock(&self.read_rule))?;
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        n.is_multiple_of(rule.every).then(|| {
            self.faults_injected.fetch_add(1, Ordering::SeqCst);
            rule.fault
        })
    }

    /// Hold puts before they reach the inner store (true), or let them go.
    pub fn hold_puts(&self, on: bool) {
        self.hold_puts.send_replace(on);
    }

    pub fn puts_started(&self) -> usize {
        self.puts_started.load(Ordering::SeqCst)
    }

    /// Puts that the inner store acknowledged (including those whose
    /// success was then hidden by [`Fault::AfterStore`]).
    pub fn puts_completed(&self) -> usize {
        self.puts_completed.load(Ordering::SeqCst)
    }

    /// Puts stored by the inner store whose caller got an error.
    pub fn puts_stored_then_failed(&self) -> usize {
        self.puts_stored_then_failed.load(Ordering::SeqCst)
    }

    /// Faults injected so far (any operation).
    pub fn faults_injected(&self) -> usize {
        self.faults_injected.load(Ordering::SeqCst)
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
            put_fault: Mutex::new(None),
            fail_puts_matching: Mutex::new(None),
            next_puts: Mutex::new((0, None)),
            slow_puts: Mutex::new(None),
            read_rule: Mutex::new(None),
            reads: AtomicUsize::new(0),
            fail_lists: Mutex::new(None),
            fail_deletes: AtomicBool::new(false),
            hold_puts: watch::channel(false).0,
            puts_started: AtomicUsize::new(0),
            puts_completed: AtomicUsize::new(0),
            puts_stored_then_failed: AtomicUsize::new(0),
            faults_injected: AtomicUsize::new(0),
        });
        (
            Self {
                inner,
                faults: faults.clone(),
            },
            faults,
        )
    }

    async fn before_read(&self, op: &str) -> Result<()> {
        match self.faults.read_fault() {
            Some(f) => {
                f.delay().await;
                Err(f.error(op))
            }
            None => Ok(()),
        }
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
        let slow = *lock(&self.faults.slow_puts);
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        match self.faults.put_fault_for(location) {
            Some(Fault::AfterStore) => {
                self.inner.put_opts(location, payload, opts).await?;
                self.faults.puts_completed.fetch_add(1, Ordering::SeqCst);
                self.faults
                    .puts_stored_then_failed
                    .fetch_add(1, Ordering::SeqCst);
                Err(Fault::AfterStore.error("put"))
            }
            Some(f) => {
                f.delay().await;
                Err(f.error("put"))
            }
            None => {
                let r = self.inner.put_opts(location, payload, opts).await?;
                self.faults.puts_completed.fetch_add(1, Ordering::SeqCst);
                Ok(r)
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.before_read("get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.before_read("get_ranges").await?;
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
        let fault = *lock(&self.faults.fail_lists);
        if let Some(f) = fault {
            self.faults.faults_injected.fetch_add(1, Ordering::SeqCst);
            return futures::stream::once(async move {
                f.delay().await;
                Err(f.error("list"))
            })
            .boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let fault = *lock(&self.faults.fail_lists);
        if let Some(f) = fault {
            self.faults.faults_injected.fetch_add(1, Ordering::SeqCst);
            f.delay().await;
            return Err(f.error("list"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    fn store() -> (FailingStore, Arc<Faults>, Arc<InMemory>) {
        let inner = Arc::new(InMemory::new());
        let (s, f) = FailingStore::new(inner.clone());
        (s, f, inner)
    }

    #[tokio::test]
    async fn put_faults_store_nothing_except_after_store() {
        let (s, f, inner) = store();
        let key = Path::from("a");
        for fault in [
            Fault::Unavailable,
            Fault::Timeout(Duration::from_millis(1)),
            Fault::ConnectionReset,
        ] {
            f.put_fault(Some(fault));
            assert!(s.put(&key, Bytes::from("x").into()).await.is_err());
            assert!(
                inner.head(&key).await.is_err(),
                "{fault:?} stored the object"
            );
        }
        f.put_fault(Some(Fault::AfterStore));
        assert!(s.put(&key, Bytes::from("x").into()).await.is_err());
        assert!(
            inner.head(&key).await.is_ok(),
            "AfterStore stores the object"
        );
        assert_eq!((f.puts_completed(), f.puts_stored_then_failed()), (1, 1));
        f.put_fault(None);
        assert!(s.put(&key, Bytes::from("y").into()).await.is_ok());
        assert_eq!(f.faults_injected(), 4);
    }

    #[tokio::test]
    async fn next_puts_and_matching_puts_fail_then_recover() {
        let (s, f, _) = store();
        f.fail_next_puts(2, Fault::Unavailable);
        let put = |k: &'static str| {
            let s = &s;
            async move { s.put(&Path::from(k), Bytes::from("x").into()).await }
        };
        assert!(put("a").await.is_err());
        assert!(put("b").await.is_err());
        assert!(put("c").await.is_ok());
        f.put_fault_matching(Some("/manifest/"), Fault::ConnectionReset);
        assert!(put("t/manifest/1").await.is_err());
        assert!(put("t/segments/1").await.is_ok());
    }

    #[tokio::test]
    async fn every_nth_read_fails() {
        let (s, f, _) = store();
        let key = Path::from("a");
        s.put(&key, Bytes::from("hello").into()).await.expect("put");
        f.fail_reads(Some((Fault::ConnectionReset, 3)));
        let mut outcomes = Vec::new();
        for _ in 0..6 {
            outcomes.push(s.get_range(&key, 0..2).await.is_ok());
        }
        assert_eq!(outcomes, [true, true, false, true, true, false]);
        f.fail_lists(Some(Fault::Unavailable));
        assert!(s.list(None).next().await.is_some_and(|r| r.is_err()));
        f.fail_reads(None);
        assert!(s.get(&key).await.is_ok());
    }
}
