//! Tenant isolation: two tenants with data and rules, authenticated by
//! tokens. No API call made with tenant A's credentials returns anything of
//! tenant B (metric names, label names and values, samples, rules), whether
//! it asks for everything, names B's series outright, or tries to name B in
//! `X-Scope-OrgID`; and A cannot change B's rules.
//!
//! Every tenant-scoped route is listed here, remote read and SQL included.
//! The Prometheus endpoints Strata does not serve (metadata, exemplars) are
//! asserted to be 404, so adding one fails this test until it is checked
//! here too.

use serde_json::Value;
use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::promapi::api_time;
use strata_tests::remote_write::{encode, now_ms, request, series};

use crate::{Scratch, client};

const TOKEN_A: &str = "isolation-token-a-0123456789";
const TOKEN_B: &str = "isolation-token-b-0123456789";

/// Strings that only tenant B's data and rules contain.
const B_MARKERS: [&str; 4] = [
    "bravo_metric",
    "b_only_label",
    "b-only-value",
    "b-secret-rule",
];

async fn send(
    method: reqwest::Method,
    url: &str,
    token: &str,
    params: &[(&str, String)],
    body: Option<String>,
    tenant: Option<&str>,
) -> (u16, String) {
    let form = method == reqwest::Method::POST && body.is_none();
    let mut req = client().request(method, url).bearer_auth(token);
    // Prometheus' POST form: parameters in the body.
    req = if form {
        req.form(params)
    } else {
        req.query(params)
    };
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req.send().await.expect("request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn write(url: &str, token: &str, labels: &[(&str, &str)], t: i64) {
    let body = encode(&request(vec![series(
        labels,
        &[(t - 60_000, 1.0), (t, 2.0)],
    )]));
    let resp = client()
        .post(format!("{url}/api/v1/write"))
        .bearer_auth(token)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("write");
    assert_eq!(resp.status().as_u16(), 204);
}

fn rules(name: &str, metric: &str) -> String {
    serde_json::json!({
        "mapping_rules": [{
            "name": name,
            "filter": {"__name__": metric},
            "storage_policies": ["1m:40d"],
        }]
    })
    .to_string()
}

#[tokio::test]
async fn no_call_of_one_tenant_sees_anything_of_another() {
    let scratch = Scratch::new("isolation");
    let config = scratch.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.tokens]]\ntoken = \"{TOKEN_A}\"\ntenant = \"team-a\"\n\
             [[auth.tokens]]\ntoken = \"{TOKEN_B}\"\ntenant = \"team-b\"\n"
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

    let t = now_ms() - 10_000;
    write(
        url,
        TOKEN_A,
        &[
            ("__name__", "alpha_metric"),
            ("job", "iso"),
            ("a_only_label", "a-only-value"),
        ],
        t,
    )
    .await;
    write(
        url,
        TOKEN_B,
        &[
            ("__name__", "bravo_metric"),
            ("job", "iso"),
            ("b_only_label", "b-only-value"),
        ],
        t,
    )
    .await;
    for (token, name, metric) in [
        (TOKEN_A, "a-rule", "alpha_*"),
        (TOKEN_B, "b-secret-rule", "bravo_*"),
    ] {
        let (status, body) = send(
            reqwest::Method::PUT,
            &format!("{url}/api/v1/rules"),
            token,
            &[],
            Some(rules(name, metric)),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    let range = || {
        vec![
            ("start", api_time(t - 3_600_000)),
            ("end", api_time(t + 60_000)),
        ]
    };
    let with = |mut p: Vec<(&'static str, String)>, k: &'static str, v: &str| {
        p.push((k, v.to_string()));
        p
    };
    let at = vec![("time", api_time(t))];
    let query_range = with(range(), "step", "15");
    // (method, path, params, what A must see there: proves the call worked)
    type Call = (
        reqwest::Method,
        &'static str,
        Vec<(&'static str, String)>,
        Option<&'static str>,
    );
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let calls: Vec<Call> = vec![
        (
            get.clone(),
            "/api/v1/query",
            with(at.clone(), "query", "{job=\"iso\"}"),
            Some("alpha_metric"),
        ),
        (
            post.clone(),
            "/api/v1/query",
            with(at.clone(), "query", "{job=\"iso\"}"),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/query",
            with(at.clone(), "query", "{__name__=~\".+\"}"),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/query",
            with(at.clone(), "query", "bravo_metric"),
            None,
        ),
        (
            get.clone(),
            "/api/v1/query",
            with(at.clone(), "query", "{b_only_label=\"b-only-value\"}"),
            None,
        ),
        (
            get.clone(),
            "/api/v1/query",
            with(
                at.clone(),
                "query",
                "count by (__name__, b_only_label) ({__name__=~\".+\"})",
            ),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/query_range",
            with(query_range.clone(), "query", "{job=\"iso\"}"),
            Some("alpha_metric"),
        ),
        (
            post.clone(),
            "/api/v1/query_range",
            with(query_range.clone(), "query", "{__name__=~\".+\"}"),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/query_range",
            with(query_range.clone(), "query", "bravo_metric"),
            None,
        ),
        (
            get.clone(),
            "/api/v1/series",
            with(range(), "match[]", "{job=\"iso\"}"),
            Some("alpha_metric"),
        ),
        (
            post.clone(),
            "/api/v1/series",
            with(range(), "match[]", "{__name__=~\".+\"}"),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/series",
            with(range(), "match[]", "bravo_metric"),
            None,
        ),
        (get.clone(), "/api/v1/labels", range(), Some("a_only_label")),
        (post.clone(), "/api/v1/labels", vec![], Some("a_only_label")),
        (
            get.clone(),
            "/api/v1/labels",
            with(range(), "match[]", "bravo_metric"),
            None,
        ),
        (
            get.clone(),
            "/api/v1/label/__name__/values",
            range(),
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/label/__name__/values",
            vec![],
            Some("alpha_metric"),
        ),
        (
            get.clone(),
            "/api/v1/label/b_only_label/values",
            range(),
            None,
        ),
        (
            get.clone(),
            "/api/v1/label/job/values",
            with(range(), "match[]", "bravo_metric"),
            None,
        ),
        (get.clone(), "/api/v1/rules", vec![], Some("a-rule")),
        (
            get.clone(),
            "/api/v1/rules/history",
            vec![],
            Some("versions"),
        ),
        (
            get.clone(),
            "/api/v1/rules/versions/1",
            vec![],
            Some("a-rule"),
        ),
    ];
    for (method, path, params, a_sees) in &calls {
        let what = format!("{method} {path} {params:?}");
        let (status, body) = send(
            method.clone(),
            &format!("{url}{path}"),
            TOKEN_A,
            params,
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{what}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["status"], "success", "{what}: {body}");
        if let Some(marker) = a_sees {
            assert!(
                body.contains(marker),
                "{what}: A's own {marker} missing: {body}"
            );
        } else {
            let empty = v["data"]["result"].as_array().or(v["data"].as_array());
            assert_eq!(empty.map(Vec::len), Some(0), "{what}: {body}");
        }
        for b in B_MARKERS {
            assert!(!body.contains(b), "{what}: tenant B's {b} leaked: {body}");
        }
        // Naming B, or several tenants, with A's credentials is refused.
        for header in [
            "team-b",
            "team-a|team-b",
            "team-b|team-a",
            " team-b",
            "team-a,team-b",
        ] {
            let (status, body) = send(
                method.clone(),
                &format!("{url}{path}"),
                TOKEN_A,
                params,
                None,
                Some(header),
            )
            .await;
            assert_eq!(status, 403, "{what} as {header:?}: {body}");
            for b in B_MARKERS {
                assert!(!body.contains(b), "{what} as {header:?}: {body}");
            }
        }
    }

    // B's rule is not A's to read, change or delete.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, body) = send(
            method.clone(),
            &format!("{url}/api/v1/rules/mapping/b-secret-rule"),
            TOKEN_A,
            &[],
            None,
            None,
        )
        .await;
        assert_eq!(status, 404, "{method} B's rule as A: {body}");
    }
    let (status, _) = send(
        reqwest::Method::DELETE,
        &format!("{url}/api/v1/rules"),
        TOKEN_A,
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "A empties its own rule set");
    let (status, body) = send(
        reqwest::Method::GET,
        &format!("{url}/api/v1/rules"),
        TOKEN_B,
        &[],
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("b-secret-rule"),
        "B's rules survive A's delete: {body}"
    );
    // And B still sees its data: the checks above were not vacuous.
    let (status, body) = send(
        reqwest::Method::GET,
        &format!("{url}/api/v1/series"),
        TOKEN_B,
        &with(range(), "match[]", "{job=\"iso\"}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("bravo_metric") && !body.contains("alpha_metric"),
        "{body}"
    );

    // Remote read (both response types) and SQL: A's series only.
    let everything = ReadMatcher {
        r#type: 2, // RE
        name: "__name__".into(),
        value: ".+".into(),
    };
    let bravo = ReadMatcher {
        r#type: 0, // EQ
        name: "__name__".into(),
        value: "bravo_metric".into(),
    };
    let bodies: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "/api/v1/read",
            read_request(&everything, t, 0),
            Some("alpha_metric"),
        ),
        (
            "/api/v1/read",
            read_request(&everything, t, 1),
            Some("alpha_metric"),
        ),
        ("/api/v1/read", read_request(&bravo, t, 0), None),
        ("/api/v1/read", read_request(&bravo, t, 1), None),
        (
            "/api/v1/sql",
            b"SELECT * FROM series".to_vec(),
            Some("alpha_metric"),
        ),
        (
            "/api/v1/sql",
            b"SELECT metric_name, count(*) FROM samples GROUP BY 1".to_vec(),
            Some("alpha_metric"),
        ),
        (
            "/api/v1/sql",
            b"SELECT * FROM samples WHERE metric_name = 'bravo_metric'".to_vec(),
            None,
        ),
    ];
    for (path, body, a_sees) in &bodies {
        let what = format!("POST {path} {}", String::from_utf8_lossy(body));
        let (status, answer) = post_raw(url, path, TOKEN_A, body.clone(), None).await;
        assert_eq!(status, 200, "{what}: {answer}");
        if let Some(marker) = a_sees {
            assert!(
                answer.contains(marker),
                "{what}: A's own {marker} missing: {answer}"
            );
        }
        for b in B_MARKERS {
            assert!(
                !answer.contains(b),
                "{what}: tenant B's {b} leaked: {answer}"
            );
        }
        let (status, answer) = post_raw(url, path, TOKEN_A, body.clone(), Some("team-b")).await;
        assert_eq!(status, 403, "{what} as team-b: {answer}");
    }

    // Endpoints Strata does not serve yet: when one appears, check it above.
    // (`/api/v1/metadata` and `/api/v1/query_exemplars` are served; their
    // tenant isolation is checked in `metadata_exemplars.rs`.)
    for path in ["/api/v1/targets"] {
        let (status, body) = send(
            reqwest::Method::GET,
            &format!("{url}{path}"),
            TOKEN_A,
            &[],
            None,
            None,
        )
        .await;
        assert_eq!(
            status, 404,
            "{path} is served now: add it to the isolation checks ({body})"
        );
    }
}

/// Prometheus remote read's `LabelMatcher` (type: 0 EQ, 1 NEQ, 2 RE, 3 NRE).
#[derive(Clone, PartialEq, prost::Message)]
struct ReadMatcher {
    #[prost(int32, tag = "1")]
    r#type: i32,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadQuery {
    #[prost(int64, tag = "1")]
    start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    matchers: Vec<ReadMatcher>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    queries: Vec<ReadQuery>,
    #[prost(int32, repeated, tag = "2")]
    accepted_response_types: Vec<i32>,
}

/// A snappy remote-read request for the hour up to `t`; `response_type` 0
/// is SAMPLES, 1 STREAMED_XOR_CHUNKS.
fn read_request(matcher: &ReadMatcher, t: i64, response_type: i32) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![ReadQuery {
            start_timestamp_ms: t - 3_600_000,
            end_timestamp_ms: t + 60_000,
            matchers: vec![matcher.clone()],
        }],
        accepted_response_types: vec![response_type],
    };
    snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&req))
        .expect("snappy")
}

/// POSTs `body` to `path` (remote read when the path says so, else SQL
/// text) and returns the status and the answer as text: SAMPLES answers
/// are snappy-decoded first, so label strings appear verbatim either way.
async fn post_raw(
    url: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
    tenant: Option<&str>,
) -> (u16, String) {
    let mut req = client()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .body(body);
    if path.ends_with("/read") {
        req = req
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0");
    }
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let snappy = resp
        .headers()
        .get("Content-Encoding")
        .is_some_and(|v| v.as_bytes() == b"snappy");
    let bytes = resp.bytes().await.unwrap_or_default();
    let bytes = if snappy {
        snap::raw::Decoder::new()
            .decompress_vec(&bytes)
            .expect("snappy answer")
    } else {
        bytes.to_vec()
    };
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
