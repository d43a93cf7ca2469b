use super::*;
use object_store::memory::InMemory;

/// The conformance suite on the object-store backend: one in-memory store
/// per case, shared by the case's instances.
#[tokio::test]
async fn object_store_backend_passes_the_conformance_suite() {
    let stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>> = Mutex::default();
    let make = |case: &str| -> Arc<dyn RuleStore> {
        let mut m = stores.lock().expect("lock");
        let store = m
            .entry(case.to_string())
            .or_insert_with(|| Arc::new(InMemory::new()))
            .clone();
        Arc::new(ObjectRuleStore::new(store))
    };
    conformance::run_all(&make).await;
}

#[tokio::test]
async fn object_store_versions_are_chain_objects() {
    let shared: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = ObjectRuleStore::new(shared.clone());
    let t = TenantId::new("t").expect("tenant");
    store
        .commit(&t, 0, conformance::spec("a", false), 1)
        .await
        .expect("commit");
    let listed = chain::versions(shared.as_ref(), &paths::rules_prefix(&t))
        .await
        .expect("list");
    assert_eq!(listed, [1]);
    assert!(
        paths::rules(&t, 1).as_ref().starts_with("_system/rules/t/"),
        "{}",
        paths::rules(&t, 1)
    );
}
