//! Authentication and tenant isolation: with credentials configured, every
//! API needs one, a credential acts only as its own tenant, and no call of
//! tenant A reads or lists anything of tenant B.

use serde_json::Value;
use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi::api_time;
use strata_tests::remote_write::{encode, now_ms, request, series};

use crate::{Scratch, client};

const TOKEN_A: &str = "token-of-team-a-0123456789";
const TOKEN_B: &str = "token-of-team-b-0123456789";

async fn get(
    url: &str,
    path: &str,
    params: &[(&str, String)],
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    let mut req = client().get(format!("{url}{path}")).query(params);
    if let Some((k, v)) = auth {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn write(url: &str, token: Option<&str>, tenant: Option<&str>, name: &str) -> u16 {
    let body = encode(&request(vec![series(
        &[("__name__", name), ("job", "auth")],
        &[(now_ms() - 5_000, 1.0)],
    )]));
    let mut req = client()
        .post(format!("{url}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    req.send().await.expect("write").status().as_u16()
}

#[tokio::test]
async fn credentials_pin_requests_to_their_tenant() {
    let scratch = Scratch::new("auth");
    let config = scratch.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\ntoken = \"{TOKEN_A}\"\ntenant = \"team-a\"\n\
             [[auth.tokens]]\ntoken = \"{TOKEN_B}\"\ntenant = \"team-b\"\n\
             [[auth.users]]\nuser = \"grafana\"\npassword = \"grafana-pw\"\ntenant = \"team-b\"\n"
        ),
    )
    .expect("config");
    let args = vec![
        "--storage".to_string(),
        "local".to_string(),
        "--data-dir".to_string(),
        scratch.sub("data").display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let strata = Strata::start(&strata_bin(), args, Vec::new(), &scratch.path()).await;
    let url = strata.url.as_str();

    // Writes: no or wrong credentials are 401, another tenant's header 403.
    assert_eq!(write(url, None, None, "secret_a").await, 401);
    assert_eq!(
        write(url, Some("nope-nope-nope-nope"), None, "secret_a").await,
        401
    );
    assert_eq!(
        write(url, Some(TOKEN_A), Some("team-b"), "secret_a").await,
        403
    );
    assert_eq!(write(url, Some(TOKEN_A), None, "secret_a").await, 204);
    assert_eq!(
        write(url, Some(TOKEN_A), Some("team-a"), "also_a").await,
        204
    );
    assert_eq!(write(url, Some(TOKEN_B), None, "secret_b").await, 204);

    let t = now_ms();
    let range = vec![("start", api_time(t - 3_600_000)), ("end", api_time(t))];
    let bearer_a = format!("Bearer {TOKEN_A}");
    let bearer_b = format!("Bearer {TOKEN_B}");
    let basic_b = "Basic Z3JhZmFuYTpncmFmYW5hLXB3"; // grafana:grafana-pw
    let as_a = Some(("Authorization", bearer_a.as_str()));
    let as_b = Some(("Authorization", bearer_b.as_str()));

    // Every read API, as A and as B: each sees only its own names.
    let query = vec![
        ("query", "{job=\"auth\"}".to_string()),
        ("time", api_time(t)),
    ];
    let mut series_params = range.clone();
    series_params.push(("match[]", "{job=\"auth\"}".to_string()));
    let calls: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("/api/v1/query", query.clone()),
        ("/api/v1/series", series_params),
        ("/api/v1/label/__name__/values", range.clone()),
    ];
    for (path, params) in &calls {
        let (status, a) = get(url, path, params, as_a).await;
        assert_eq!(status, 200, "{path} as A: {a}");
        assert!(
            a.contains("secret_a") && a.contains("also_a") && !a.contains("secret_b"),
            "{path} as A: {a}"
        );
        let (status, b) = get(url, path, params, as_b).await;
        assert_eq!(status, 200, "{path} as B: {b}");
        assert!(
            b.contains("secret_b") && !b.contains("secret_a"),
            "{path} as B: {b}"
        );
        let (status, b) = get(url, path, params, Some(("Authorization", basic_b))).await;
        assert_eq!(status, 200, "{path} as B (basic): {b}");
        assert!(!b.contains("secret_a"), "{path} as B (basic): {b}");
        // Asking for A's data with B's credentials is refused, not emptied.
        let req = client()
            .get(format!("{url}{path}"))
            .query(params)
            .header("Authorization", &bearer_b)
            .header("X-Scope-OrgID", "team-a");
        assert_eq!(
            req.send().await.expect("request").status().as_u16(),
            403,
            "{path}"
        );
        let (status, _) = get(url, path, params, None).await;
        assert_eq!(status, 401, "{path} without credentials");
    }
    let (status, labels) = get(url, "/api/v1/labels", &range, as_b).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&labels).expect("json");
    assert!(v["data"].as_array().is_some_and(|l| !l.is_empty()));

    // Health and metrics stay open.
    assert_eq!(get(url, "/-/ready", &[], None).await.0, 200);
    assert_eq!(get(url, "/metrics", &[], None).await.0, 200);
}
