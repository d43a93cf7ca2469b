//! A 204 means durable: after `kill -9` and a restart on the same data
//! directory, every acknowledged sample is queryable.

use std::collections::BTreeMap;

use strata_tests::Strata;
use strata_tests::promapi;
use strata_tests::remote_write::{self, encode, now_ms, request, series};

use crate::{Scratch, client};

const SERIES: usize = 50;
const REQUESTS: usize = 20;
const SAMPLES_PER_REQUEST: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_durability() {
    let scratch = Scratch::new("durability");
    let mut strata = Strata::start_local(&scratch.sub("strata-data"), &scratch.path()).await;
    let c = client();
    let url = strata.write_url();

    // 20 requests, each with 5 new samples (1 s apart) for each of 50 series:
    // 100 samples per series over 100 s, ending 10 s ago.
    let total_points = REQUESTS * SAMPLES_PER_REQUEST;
    let t_last = now_ms() - 10_000;
    let t_first = t_last - (total_points as i64 - 1) * 1000;
    let mut expected: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in 0..REQUESTS {
        let mut ts = Vec::new();
        for s in 0..SERIES {
            let id = format!("{s:03}");
            let points: Vec<(i64, f64)> = (0..SAMPLES_PER_REQUEST)
                .map(|k| {
                    let i = r * SAMPLES_PER_REQUEST + k;
                    (t_first + i as i64 * 1000, (s * 1000 + i) as f64 + 0.25)
                })
                .collect();
            expected
                .entry(format!(
                    r#"{{__name__="durability_test", job="durability", series="{id}"}}"#
                ))
                .or_default()
                .extend(&points);
            ts.push(series(
                &[
                    ("__name__", "durability_test"),
                    ("job", "durability"),
                    ("series", &id),
                ],
                &points,
            ));
        }
        let (status, body) = remote_write::send(&c, &url, encode(&request(ts)), None)
            .await
            .expect("send a remote-write request");
        assert_eq!(
            status, 204,
            "write {r} must be acknowledged with 204, got {status}: {body}"
        );
    }

    // No grace period: acknowledged means durable.
    strata.kill9_and_restart().await;

    // Every acknowledged sample is back, with its exact timestamp and value.
    let expr = "durability_test[5m]";
    let got = promapi::query(&c, &strata.url, expr, t_last, None)
        .await
        .unwrap_or_else(|e| panic!("query {expr} after restart: {e:#}"));
    let expected = promapi::QueryResult {
        result_type: "matrix".to_string(),
        series: expected,
    };
    if let Some(d) = got.diff(&expected) {
        panic!("after kill -9 and restart, {expr} differs from what was acknowledged:\n{d}");
    }
    let count = promapi::query(&c, &strata.url, "count(durability_test)", t_last, None)
        .await
        .expect("count after restart")
        .single_value();
    assert_eq!(
        count,
        Some(SERIES as f64),
        "count(durability_test) after restart"
    );

    // And the restarted server still takes writes.
    let more = encode(&request(vec![series(
        &[
            ("__name__", "durability_test"),
            ("job", "durability"),
            ("series", "after"),
        ],
        &[(now_ms(), 1.0)],
    )]));
    let (status, body) = remote_write::send(&c, &strata.write_url(), more, None)
        .await
        .expect("write after restart");
    assert_eq!(status, 204, "write after restart: {status}: {body}");
}
