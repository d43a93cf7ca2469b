//! The object-store backend: the shared suite on a manual clock, and the
//! cases that depend on its exact expiry rule.

use super::conformance::{self, ManualClock};
use super::*;
use object_store::memory::InMemory;

fn setup() -> (ObjectStoreLeases, Arc<dyn ObjectStore>, TenantId) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    (
        ObjectStoreLeases::new(store.clone()),
        store,
        TenantId::new("t").expect("tenant"),
    )
}

#[tokio::test]
async fn object_store_backend_passes_the_conformance_suite() {
    let (leases, _, _) = setup();
    conformance::run_all(&leases, &ManualClock::default()).await;
}

#[tokio::test]
async fn expiry_is_judged_on_the_contenders_clock() {
    let (leases, store, t) = setup();
    let b = leases
        .try_acquire("compactor", &t, "0", "b", 1000, 600)
        .await
        .expect("acquire")
        .expect("free lease");
    // b crashes (never renews): from its expiry on, c takes over.
    assert!(
        leases
            .try_acquire("compactor", &t, "0", "c", 1000, 1599)
            .await
            .expect("acquire")
            .is_none()
    );
    let c = leases
        .try_acquire("compactor", &t, "0", "c", 1000, 1600)
        .await
        .expect("acquire");
    assert!(c.is_some());
    let mut b = b;
    assert!(!b.renew(1700).await.expect("renew"));
    // The layout documented in docs/format/block.md: generation 2 is c's,
    // and generation 1 (b's) was deleted when c took over.
    let key = paths::lease("compactor", &t, "0", 2);
    let body: LeaseBody = serde_json::from_slice(
        &store
            .get(&key)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes"),
    )
    .expect("json");
    assert_eq!(body.owner, "c");
    assert_eq!(body.expires_ms, 2600);
    assert!(
        store
            .head(&paths::lease("compactor", &t, "0", 1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn renewal_extends_and_detects_a_takeover_despite_clock_skew() {
    let (leases, _, t) = setup();
    let mut a = leases
        .try_acquire("j", &t, "s", "a", 1000, 0)
        .await
        .expect("acquire")
        .expect("free");
    assert!(a.renew(900).await.expect("renew"));
    assert_eq!(a.expires_ms(), 1900);
    assert!(
        leases
            .try_acquire("j", &t, "s", "b", 1000, 1500)
            .await
            .expect("acquire")
            .is_none()
    );
    // A takeover that happened anyway (b's clock far ahead) is noticed on
    // a's renewal, although a's own clock says it still holds the lease.
    let b = leases
        .try_acquire("j", &t, "s", "b", 1000, 5000)
        .await
        .expect("acquire");
    assert!(b.is_some());
    assert!(!a.renew(1800).await.expect("renew"));
}
