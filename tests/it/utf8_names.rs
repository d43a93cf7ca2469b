//! Prometheus 3's UTF-8 metric and label names, end to end: remote write
//! accepts them, PromQL selects them with quoted names, the label APIs list
//! them (also by Prometheus' `U__` escaped form in the URL path), and a
//! query string spelling bytes that are not UTF-8 is refused as a label
//! name the way Prometheus refuses it.

use std::collections::BTreeSet;

use strata_tests::Strata;
use strata_tests::promapi;
use strata_tests::remote_write::{self, encode, now_ms, request, series};

use crate::{Scratch, client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_names_are_written_and_queried() {
    let scratch = Scratch::new("utf8-names");
    let mut strata = Strata::start_local(&scratch.sub("strata-data"), &scratch.path()).await;
    let c = client();
    let t = now_ms() - 60_000;
    let body = encode(&request(vec![
        series(
            &[
                ("__name__", "http.server.duration"),
                ("service.name", "api"),
                ("k8s-pod", "p-1"),
            ],
            &[(t, 1.5)],
        ),
        series(
            &[
                ("__name__", "http.server.duration"),
                ("service.name", "web"),
                ("k8s-pod", "p-2"),
            ],
            &[(t, 2.5)],
        ),
        series(&[("__name__", "up"), ("job", "legacy")], &[(t, 1.0)]),
    ]));
    let (status, msg) = remote_write::send(&c, &strata.write_url(), body, None)
        .await
        .expect("send");
    assert_eq!(status, 204, "UTF-8 names must be accepted: {msg}");

    let r = promapi::query(
        &c,
        &strata.url,
        r#"{"http.server.duration", "service.name"="api"}"#,
        t,
        None,
    )
    .await
    .expect("quoted-name selector");
    let got: Vec<(&str, f64)> = r.series.iter().map(|(l, p)| (l.as_str(), p[0].1)).collect();
    assert_eq!(
        got,
        vec![(
            r#"{__name__="http.server.duration", k8s-pod="p-1", service.name="api"}"#,
            1.5
        )]
    );

    let r = promapi::query(
        &c,
        &strata.url,
        r#"sum by ("service.name") ({"http.server.duration"})"#,
        t,
        None,
    )
    .await
    .expect("grouping by a quoted name");
    let got: Vec<(&str, f64)> = r.series.iter().map(|(l, p)| (l.as_str(), p[0].1)).collect();
    assert_eq!(
        got,
        vec![
            (r#"{service.name="api"}"#, 1.5),
            (r#"{service.name="web"}"#, 2.5)
        ]
    );

    let labels = promapi::get(&c, &strata.url, "/api/v1/labels", &[], None)
        .await
        .expect("labels");
    let labels: BTreeSet<&str> = labels
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        labels,
        BTreeSet::from(["__name__", "job", "k8s-pod", "service.name"])
    );
    // The name as written and in Prometheus' escaped form for URL paths.
    for path in [
        "/api/v1/label/service.name/values",
        "/api/v1/label/U__service_2e_name/values",
    ] {
        let values = promapi::get(&c, &strata.url, path, &[], None)
            .await
            .expect("label values");
        assert_eq!(values, serde_json::json!(["api", "web"]), "{path}");
    }
    let names = promapi::get(&c, &strata.url, "/api/v1/label/__name__/values", &[], None)
        .await
        .expect("metric names");
    assert_eq!(names, serde_json::json!(["http.server.duration", "up"]));

    // Non-ASCII names are valid; bytes that are not UTF-8 are not, and
    // the error quotes them as Prometheus does.
    let r = promapi::query(&c, &strata.url, r#"count_values("vé", up)"#, t, None)
        .await
        .expect("count_values with a UTF-8 label name");
    assert_eq!(r.series.keys().collect::<Vec<_>>(), vec![r#"{vé="1"}"#]);
    let err = promapi::query(&c, &strata.url, r#"count_values("a\xc5z", up)"#, t, None)
        .await
        .expect_err("a label name that is not UTF-8");
    let err = format!("{err:#}");
    assert!(
        err.contains("HTTP 422") && err.contains(r#"invalid label name \"a\\xc5z\""#),
        "{err}"
    );
    strata.proc.assert_running();
}
