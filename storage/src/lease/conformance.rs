//! The behaviour every lease backend must have, as one suite: the
//! object-store backend runs it in unit tests on a manual clock, etcd in
//! `tests/it/leases_etcd.rs` against a real etcd on real time.
//!
//! Expiry is the backend's business (etcd judges it on its own clock and
//! rounds TTLs up to whole seconds), so the suite never asserts when a
//! lease expires, only the order of events: before the holder's TTL has
//! passed a contender is refused; after the holder stopped renewing, a
//! contender eventually gets it, and then the old holder's renewal fails.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Lease, LeaseBackend};
use crate::tenant::TenantId;

/// The time a suite run sees.
#[async_trait]
pub trait SuiteClock: Send + Sync {
    fn now_ms(&self) -> i64;
    /// Lets `ms` pass.
    async fn pass(&self, ms: i64);
}

/// A clock moved only by [`SuiteClock::pass`]: no waiting.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

#[async_trait]
impl SuiteClock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    async fn pass(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// The system clock; passing time is sleeping.
#[derive(Debug, Default)]
pub struct RealClock;

#[async_trait]
impl SuiteClock for RealClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    async fn pass(&self, ms: i64) {
        tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
    }
}

/// The TTL the suite asks for; a backend may grant more (etcd's minimum).
pub const TTL_MS: i64 = 1000;
/// Steps of half the granted TTL waited for an abandoned lease to be
/// taken over before the suite gives up (etcd checks expiry every 500 ms).
const MAX_TAKEOVER_STEPS: usize = 40;

/// Every case, each on its own job name so runs do not interfere.
pub async fn run_all(backend: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    one_holder_at_a_time(backend, clock).await;
    racing_contenders_get_one_lease(backend, clock).await;
    renewal_keeps_the_lease(backend, clock).await;
    release_lets_another_take_it(backend, clock).await;
    an_expired_lease_is_taken_over(backend, clock).await;
    a_holder_that_lost_its_lease_learns_so_on_renewal(backend, clock).await;
}

fn tenant(id: &str) -> TenantId {
    TenantId::new(id).expect("tenant")
}

async fn take(
    b: &dyn LeaseBackend,
    clock: &dyn SuiteClock,
    job: &str,
    shard: &str,
    owner: &str,
) -> Option<Lease> {
    b.try_acquire(job, &tenant("t"), shard, owner, TTL_MS, clock.now_ms())
        .await
        .expect("try_acquire")
}

/// The TTL `lease` was granted, measured from `taken_at`.
fn granted(lease: &Lease, taken_at: i64) -> i64 {
    let ttl = lease.expires_ms() - taken_at;
    assert!(ttl >= TTL_MS, "granted {ttl} ms for a {TTL_MS} ms lease");
    ttl
}

/// Lets time pass until `owner` takes the abandoned lease of `shard`.
async fn take_over(
    b: &dyn LeaseBackend,
    clock: &dyn SuiteClock,
    job: &str,
    shard: &str,
    owner: &str,
    step: i64,
) -> Lease {
    for _ in 0..MAX_TAKEOVER_STEPS {
        clock.pass(step).await;
        if let Some(l) = take(b, clock, job, shard, owner).await {
            return l;
        }
    }
    panic!("{owner} never took over the abandoned lease of {job}/{shard}");
}

pub async fn one_holder_at_a_time(b: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    let job = "conf-one";
    let a = take(b, clock, job, "0", "a").await.expect("a free lease");
    assert!(take(b, clock, job, "0", "b").await.is_none(), "b refused");
    assert!(
        take(b, clock, job, "0", "a").await.is_none(),
        "a second take by the same owner is refused too"
    );
    // Other shards, tenants and jobs are independent.
    let other_shard = take(b, clock, job, "1", "b").await.expect("shard 1");
    let other_tenant = b
        .try_acquire(job, &tenant("u"), "0", "b", TTL_MS, clock.now_ms())
        .await
        .expect("try_acquire")
        .expect("tenant u");
    let other_job = take(b, clock, "conf-one-other", "0", "b")
        .await
        .expect("another job");
    for l in [a, other_shard, other_tenant, other_job] {
        l.release().await.expect("release");
    }
}

pub async fn racing_contenders_get_one_lease(b: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    let job = "conf-race";
    let tries = (0..8).map(|i| async move { take(b, clock, job, "0", &format!("w{i}")).await });
    let won: Vec<Lease> = futures::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(won.len(), 1, "exactly one of 8 racing contenders wins");
    for l in won {
        l.release().await.expect("release");
    }
}

pub async fn renewal_keeps_the_lease(b: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    let job = "conf-renew";
    let t0 = clock.now_ms();
    let mut a = take(b, clock, job, "0", "a").await.expect("a free lease");
    let ttl = granted(&a, t0);
    // Renewed every half TTL for twice the TTL: past the first expiry.
    for _ in 0..4 {
        clock.pass(ttl / 2).await;
        let now = clock.now_ms();
        assert!(a.renew(now).await.expect("renew"), "renewal keeps it");
        assert!(a.expires_ms() >= now + TTL_MS, "renewal extends it");
        assert!(take(b, clock, job, "0", "b").await.is_none(), "b refused");
    }
    a.release().await.expect("release");
}

pub async fn release_lets_another_take_it(b: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    let job = "conf-release";
    let a = take(b, clock, job, "0", "a").await.expect("a free lease");
    a.release().await.expect("release");
    // At once: no waiting for expiry.
    let b2 = take(b, clock, job, "0", "b")
        .await
        .expect("a released lease is free");
    assert!(take(b, clock, job, "0", "c").await.is_none(), "b holds it");
    b2.release().await.expect("release");
}

pub async fn an_expired_lease_is_taken_over(b: &dyn LeaseBackend, clock: &dyn SuiteClock) {
    let job = "conf-expire";
    let t0 = clock.now_ms();
    let a = take(b, clock, job, "0", "a").await.expect("a free lease");
    let ttl = granted(&a, t0);
    assert!(take(b, clock, job, "0", "b").await.is_none(), "not yet");
    // a crashes: dropped, never renewed nor released.
    drop(a);
    let b2 = take_over(b, clock, job, "0", "b", ttl / 2).await;
    assert!(take(b, clock, job, "0", "c").await.is_none(), "b holds it");
    b2.release().await.expect("release");
}

pub async fn a_holder_that_lost_its_lease_learns_so_on_renewal(
    b: &dyn LeaseBackend,
    clock: &dyn SuiteClock,
) {
    let job = "conf-lost";
    let t0 = clock.now_ms();
    let mut a = take(b, clock, job, "0", "a").await.expect("a free lease");
    let ttl = granted(&a, t0);
    // a stalls (a long pause) while b takes over.
    let b2 = take_over(b, clock, job, "0", "b", ttl / 2).await;
    assert!(!a.renew(clock.now_ms()).await.expect("renew"), "a lost it");
    // a's release of what it lost leaves b's lease alone.
    a.release().await.expect("release");
    assert!(
        take(b, clock, job, "0", "c").await.is_none(),
        "b still holds it"
    );
    let mut b2 = b2;
    assert!(b2.renew(clock.now_ms()).await.expect("renew"), "b keeps it");
    b2.release().await.expect("release");
}
