//! Group commit: concurrent write requests of a tenant join one open batch,
//! the batch is written as ONE segment object, and only after that put
//! succeeds is any request in it acknowledged. A failed put fails every
//! request of the batch.
//!
//! A tenant's batch is sealed when it reaches `batch_max_bytes`, when its
//! oldest request has waited `batch_max_age`, or as soon as fewer than
//! `puts_per_tenant` segments of that tenant are being written and no
//! request announced with [`GroupCommitter::arrive`] is still on its way
//! (classic group commit: under light load a request waits for one put,
//! under heavy load batches grow while earlier puts are in flight; and
//! concurrent senders whose requests are still being decoded are waited
//! for instead of each getting a segment of their own). One task owns all
//! open batches; puts (encoding included) run as separate tasks, so several
//! can use several cores.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use storage::sidecar::{MetricMetadata, Sidecar};
use storage::{Series, Storage, StorageError, TenantId};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, info_span, warn};

use crate::error::IngestError;
use crate::metrics::IngestMetrics;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupCommitConfig {
    /// Seal a batch once its estimated size reaches this many bytes.
    pub batch_max_bytes: usize,
    /// Longest time a request waits for its batch to be sealed.
    #[serde(with = "humantime_serde")]
    pub batch_max_age: Duration,
    /// Segment puts of one tenant in flight at once before new requests wait
    /// for one to finish (and so gather into a larger segment).
    pub puts_per_tenant: usize,
    /// Segment puts in flight at once, over all tenants.
    pub max_inflight_puts: usize,
    /// Bytes of accepted but unwritten requests before new requests wait.
    pub max_pending_bytes: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            batch_max_bytes: 4 << 20,
            batch_max_age: Duration::from_millis(200),
            puts_per_tenant: 2,
            max_inflight_puts: 16,
            max_pending_bytes: 256 << 20,
        }
    }
}

type Ack = oneshot::Sender<Result<(), Arc<StorageError>>>;

struct Request {
    tenant: TenantId,
    series: Vec<Series>,
    sidecar: Sidecar,
    bytes: usize,
    ack: Ack,
}

struct Batch {
    series: Vec<Series>,
    sidecar: Sidecar,
    bytes: usize,
    acks: Vec<Ack>,
    opened: Instant,
}

/// Handle to the group-commit task. Cloning is cheap; the task ends when the
/// last handle is dropped, after writing what it holds.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Request>,
    storage: Storage,
    arrivals: Arc<Arrivals>,
}

/// Requests announced but not yet joined to a batch (being read or decoded),
/// over all tenants. Sealing a batch while one of them is on its way would
/// give that request a segment of its own a moment later: per-segment costs
/// (the object, its footer, the label sets of its series) would be paid
/// again for the same load.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    /// Wakes the commit task when the count drops to zero.
    none_left: Notify,
}

/// A request on its way to [`GroupCommitter::commit_arrived`]; while it
/// lives, batches with a free put slot wait for it (up to `batch_max_age`).
/// Dropping it (a request refused before its commit) stops the wait.
pub struct Arrival {
    arrivals: Arc<Arrivals>,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if self.arrivals.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.arrivals.none_left.notify_one();
        }
    }
}

impl GroupCommitter {
    pub fn start(storage: Storage, cfg: GroupCommitConfig, metrics: IngestMetrics) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let ctx = Ctx {
            storage: storage.clone(),
            metrics,
            metadata: Arc::default(),
        };
        let arrivals = Arc::<Arrivals>::default();
        tokio::spawn(run(ctx, cfg, rx, arrivals.clone()));
        Self {
            tx,
            storage,
            arrivals,
        }
    }

    /// Announces a request that will commit soon (call it when its body
    /// starts to arrive, and pass the result to [`Self::commit_arrived`]).
    pub fn arrive(&self) -> Arrival {
        self.arrivals.count.fetch_add(1, Ordering::AcqRel);
        Arrival {
            arrivals: self.arrivals.clone(),
        }
    }

    /// The storage segments are written to (the HA tracker keeps its shared
    /// state in the same object store).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Stores `series` of `tenant`; returns once the segment holding them is on
    /// object storage.
    pub async fn commit(&self, tenant: TenantId, series: Vec<Series>) -> Result<(), IngestError> {
        self.commit_with_sidecar(tenant, series, Sidecar::default())
            .await
    }

    /// Stores `series` and `sidecar` (native histograms, exemplars, metadata)
    /// of `tenant`; returns once every object holding them is on object
    /// storage.
    pub async fn commit_with_sidecar(
        &self,
        tenant: TenantId,
        series: Vec<Series>,
        sidecar: Sidecar,
    ) -> Result<(), IngestError> {
        self.commit_arrived(self.arrive(), tenant, series, sidecar)
            .await
    }

    /// [`Self::commit_with_sidecar`] for a request announced by `arrival`,
    /// which ends once the request has joined a batch.
    pub async fn commit_arrived(
        &self,
        arrival: Arrival,
        tenant: TenantId,
        series: Vec<Series>,
        sidecar: Sidecar,
    ) -> Result<(), IngestError> {
        if series.is_empty() && sidecar.is_empty() {
            return Ok(());
        }
        let bytes = series.iter().map(estimate_bytes).sum::<usize>() + sidecar.estimate_bytes();
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Request {
                tenant,
                series,
                sidecar,
                bytes,
                ack,
            })
            .await
            .map_err(|_| IngestError::ShuttingDown)?;
        // Joined (the commit task has it or will take it next): no longer on
        // its way.
        drop(arrival);
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(IngestError::Store(e)),
            Err(_) => Err(IngestError::ShuttingDown),
        }
    }
}

/// Rough in-memory size of a series, for batch sealing and back-pressure.
fn estimate_bytes(s: &Series) -> usize {
    s.labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 16)
        .sum::<usize>()
        + s.samples.len() * 16
        + 32
}

/// What every segment put needs.
#[derive(Clone)]
struct Ctx {
    storage: Storage,
    metrics: IngestMetrics,
    metadata: Arc<MetadataSeen>,
}

/// How long metadata this process stored is not stored again. Senders
/// repeat it: remote write 2.0 with every series of every request, 1.0 once
/// a minute; without this each commit would write a sidecar for it.
const METADATA_REFRESH: Duration = Duration::from_secs(3600);

/// Metadata entries this process stored lately, per tenant.
#[derive(Default)]
struct MetadataSeen(std::sync::Mutex<HashMap<TenantId, HashMap<MetricMetadata, Instant>>>);

impl MetadataSeen {
    /// Leaves in `metadata` the entries not stored within the refresh time,
    /// each once. Runs in the group-commit task: lookups borrow, nothing is
    /// cloned for entries already known.
    fn keep_new(&self, tenant: &TenantId, metadata: &mut Vec<MetricMetadata>) {
        if metadata.is_empty() {
            return;
        }
        let Ok(seen) = self.0.lock() else {
            return; // poisoned: store it again, which is harmless
        };
        let known = seen.get(tenant);
        let fresh = |m: &MetricMetadata| {
            known
                .and_then(|k| k.get(m))
                .is_some_and(|at| at.elapsed() < METADATA_REFRESH)
        };
        // Only new entries (rare after the first commit of an hour) are
        // cloned, to drop repeats within the batch.
        let mut new = std::collections::HashSet::new();
        metadata.retain(|m| !fresh(m) && new.insert(m.clone()));
    }

    /// Records entries as stored (after their sidecar put succeeded).
    fn stored(&self, tenant: &TenantId, metadata: &[MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let Ok(mut seen) = self.0.lock() else {
            return;
        };
        let known = seen.entry(tenant.clone()).or_default();
        if known.len() > 100_000 {
            known.retain(|_, at| at.elapsed() < METADATA_REFRESH);
        }
        let now = Instant::now();
        for m in metadata {
            known.insert(m.clone(), now);
        }
    }
}

async fn run(
    ctx: Ctx,
    cfg: GroupCommitConfig,
    mut rx: mpsc::Receiver<Request>,
    arrivals: Arc<Arrivals>,
) {
    let mut open: HashMap<TenantId, Batch> = HashMap::new();
    let mut inflight: HashMap<TenantId, usize> = HashMap::new();
    let mut puts: JoinSet<(TenantId, usize)> = JoinSet::new();
    let mut pending_bytes = 0usize;
    let mut closed = false;

    loop {
        let deadline = open.values().map(|b| b.opened + cfg.batch_max_age).min();
        let total_inflight = puts.len();
        let can_accept = !closed && pending_bytes < cfg.max_pending_bytes;
        tokio::select! {
            // In order: a request sent before its arrival ended must join
            // before `none_left` seals without it. The loop's work per
            // branch is tiny, so the later branches are not starved.
            biased;
            req = rx.recv(), if can_accept => match req {
                Some(req) => {
                    pending_bytes += req.bytes;
                    let tenant = req.tenant.clone();
                    let batch = open.entry(req.tenant).or_insert_with(|| Batch {
                        series: Vec::new(), sidecar: Sidecar::default(), bytes: 0, acks: Vec::new(), opened: Instant::now(),
                    });
                    batch.series.extend(req.series);
                    batch.sidecar.extend(req.sidecar);
                    batch.bytes += req.bytes;
                    batch.acks.push(req.ack);
                    let has_slot = inflight.get(&tenant).copied().unwrap_or(0) < cfg.puts_per_tenant;
                    // A request still on its way joins this batch if it
                    // waits; `none_left` seals it once none is.
                    let all_here = arrivals.count.load(Ordering::Acquire) == 0;
                    if batch.bytes >= cfg.batch_max_bytes
                        || (has_slot && all_here && total_inflight < cfg.max_inflight_puts)
                    {
                        seal(&ctx, &mut open, &mut inflight, &mut puts, &tenant);
                    }
                }
                None => closed = true,
            },
            _ = arrivals.none_left.notified(), if !open.is_empty() => {
                // Every announced request has joined (or was refused): seal
                // what has a free slot, as a request arriving then would.
                let ready: Vec<TenantId> = open
                    .keys()
                    .filter(|t| inflight.get(*t).copied().unwrap_or(0) < cfg.puts_per_tenant)
                    .cloned()
                    .collect();
                for t in ready {
                    if puts.len() >= cfg.max_inflight_puts || arrivals.count.load(Ordering::Acquire) > 0 {
                        break;
                    }
                    seal(&ctx, &mut open, &mut inflight, &mut puts, &t);
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() && total_inflight < cfg.max_inflight_puts => {
                let now = Instant::now();
                let due: Vec<TenantId> = open
                    .iter()
                    .filter(|(_, b)| b.opened + cfg.batch_max_age <= now)
                    .map(|(t, _)| t.clone())
                    .collect();
                for t in due {
                    seal(&ctx, &mut open, &mut inflight, &mut puts, &t);
                }
            },
            Some(done) = puts.join_next(), if !puts.is_empty() => {
                match done {
                    Ok((tenant, bytes)) => {
                        pending_bytes = pending_bytes.saturating_sub(bytes);
                        if let Some(n) = inflight.get_mut(&tenant) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                inflight.remove(&tenant);
                            }
                        }
                        // A slot came free: what gathered meanwhile goes
                        // now, unless requests still on their way would
                        // join it (`none_left` seals it then).
                        if open.contains_key(&tenant) && arrivals.count.load(Ordering::Acquire) == 0 {
                            seal(&ctx, &mut open, &mut inflight, &mut puts, &tenant);
                        }
                    }
                    // A put task cannot panic by design; if one did, its acks were
                    // dropped and its requests answered 503 by `commit`.
                    Err(e) => warn!(error = %e, "segment put task failed"),
                }
            },
            // Every branch is off only when the channel is closed and nothing
            // is open or in flight: all requests have been answered.
            else => return,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn seal(
    ctx: &Ctx,
    open: &mut HashMap<TenantId, Batch>,
    inflight: &mut HashMap<TenantId, usize>,
    puts: &mut JoinSet<(TenantId, usize)>,
    tenant: &TenantId,
) {
    let Some(mut batch) = open.remove(tenant) else {
        return;
    };
    ctx.metadata.keep_new(tenant, &mut batch.sidecar.metadata);
    *inflight.entry(tenant.clone()).or_default() += 1;
    let ctx = ctx.clone();
    let tenant = tenant.clone();
    let span = info_span!("segment_put", tenant = %tenant, requests = batch.acks.len(), bytes = batch.bytes);
    puts.spawn(
        async move {
            let started = Instant::now();
            // Both objects of the batch are written at once; a request is
            // acknowledged only when every one holding its data is stored.
            let segment = async {
                if batch.series.is_empty() {
                    return Ok(None);
                }
                ctx.storage.write_segment(&tenant, &batch.series).await.map(Some)
            };
            let sidecar = async {
                if batch.sidecar.is_empty() {
                    return Ok(None);
                }
                ctx.storage.write_sidecar(&tenant, &batch.sidecar).await.map(Some)
            };
            let (segment, sidecar) = tokio::join!(segment, sidecar);
            let m = &ctx.metrics;
            m.segment_put_seconds
                .observe(started.elapsed().as_secs_f64());
            m.batch_requests.observe(batch.acks.len() as f64);
            let result = match (segment, sidecar) {
                (Ok(segment), Ok(sidecar)) => {
                    if let Some(written) = segment {
                        m.segments_written.inc();
                        m.segment_bytes.inc_by(written.bytes as u64);
                        m.samples_received.inc_by(written.samples);
                    }
                    if let Some(written) = sidecar {
                        ctx.metadata.stored(&tenant, &batch.sidecar.metadata);
                        m.sidecars_written.inc();
                        m.sidecar_bytes.inc_by(written.bytes as u64);
                        m.histograms_received.inc_by(written.histograms as u64);
                        m.exemplars_received.inc_by(written.exemplars as u64);
                    }
                    Ok(())
                }
                (Err(e), _) | (_, Err(e)) => {
                    m.segment_put_failures.inc();
                    warn!(error = %e, "segment or sidecar put failed; failing every request of the batch");
                    Err(Arc::new(e))
                }
            };
            for ack in batch.acks {
                // A request whose client went away no longer waits: nothing to do.
                let _ = ack.send(result.clone());
            }
            (tenant, batch.bytes)
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests;
