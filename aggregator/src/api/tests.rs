use super::*;
use crate::rule_store::ObjectRuleStore;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use object_store::memory::InMemory;
use tower::ServiceExt;

fn app() -> Router {
    router(RulesState {
        store: Arc::new(ObjectRuleStore::new(Arc::new(InMemory::new()))),
        default_tenant: TenantId::new("default").expect("tenant"),
    })
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(TENANT_HEADER, "team-a")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

const RULES: &str = r#"{"mapping_rules":[{"name":"cpu","filter":{"__name__":"cpu_*"},"storage_policies":["1m:40d"]}]}"#;

#[tokio::test]
async fn crud_with_validation_and_history() {
    let app = app();
    assert_eq!(
        call(&app, "GET", "/api/v1/rules", "").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, v) = call(&app, "PUT", "/api/v1/rules", RULES).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["version"], 1);
    // Optimistic concurrency: a stale base version is a conflict.
    let (s, _) = call(&app, "PUT", "/api/v1/rules?version=0", RULES).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // An invalid rule is a 400 naming the field.
    let bad = RULES.replace("1m:40d", "1m");
    let (s, v) = call(&app, "PUT", "/api/v1/rules", &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("mapping_rules[0].storage_policies[0]"),
        "{v}"
    );
    let (s, _) = call(&app, "POST", "/api/v1/rules/validate", &bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&app, "POST", "/api/v1/rules/validate", RULES).await.0,
        StatusCode::OK
    );
    // One rule at a time.
    let roll = r#"{"name":"ignored","filter":{"__name__":"req_total"},"targets":[{"pipeline":[{"rollup":{"new_name":"req_by_job","group_by":["job"]}}],"storage_policies":["1m:40d"]}]}"#;
    let (s, v) = call(&app, "PUT", "/api/v1/rules/rollup/by-job", roll).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&app, "GET", "/api/v1/rules/rollup/by-job", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["name"], "by-job");
    let (s, _) = call(&app, "DELETE", "/api/v1/rules/mapping/cpu", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        call(&app, "DELETE", "/api/v1/rules/mapping/cpu", "")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, v) = call(&app, "GET", "/api/v1/rules", "").await;
    assert_eq!(v["data"]["version"], 3);
    assert!(v["data"]["rules"]["mapping_rules"].is_null());
    assert_eq!(
        call(&app, "DELETE", "/api/v1/rules", "").await.0,
        StatusCode::OK
    );
    let (_, v) = call(&app, "GET", "/api/v1/rules/history", "").await;
    assert_eq!(v["data"]["versions"], json!([1, 2, 3, 4]));
    let (s, v) = call(&app, "GET", "/api/v1/rules/versions/1", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["rules"]["mapping_rules"][0]["name"], "cpu");
}

#[tokio::test]
async fn an_unreachable_rule_store_is_503_and_hides_the_endpoints() {
    let config = crate::rule_store::RulesConfig {
        backend: crate::rule_store::RulesBackend::Etcd,
        // Port 1 on loopback: connection refused at once.
        etcd_endpoints: vec!["http://127.0.0.1:1".into()],
        ..Default::default()
    };
    let app = router(RulesState {
        store: config.build(Arc::new(InMemory::new())).expect("store"),
        default_tenant: TenantId::new("default").expect("tenant"),
    });
    for (method, uri, body) in [
        ("GET", "/api/v1/rules", ""),
        ("PUT", "/api/v1/rules", RULES),
        ("GET", "/api/v1/rules/history", ""),
    ] {
        let (s, v) = call(&app, method, uri, body).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}: {v}");
        assert_eq!(v["errorType"], "unavailable");
        assert!(!v.to_string().contains("127.0.0.1"), "{v}");
    }
    // Validation needs no store: an invalid rule set is still a 400.
    let (s, _) = call(&app, "PUT", "/api/v1/rules", "{\"mapping_rules\": 1}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
