//! SQL end to end: series remote-written to a running `strata serve` come
//! back through `POST /api/v1/sql` (JSON and Arrow IPC) and `strata sql`
//! with the written values, only to their own tenant; writes are refused.

use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, TimestampMillisecondType};
use serde_json::{Value, json};
use strata_tests::Strata;
use strata_tests::process::strata_bin;
use strata_tests::remote_write::{self, now_ms};

use crate::{Scratch, client};

const TENANT: &str = "sql-team";

async fn sql(
    c: &reqwest::Client,
    strata: &Strata,
    query: &str,
    tenant: &str,
    accept: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut req = c
        .post(format!("{}/api/v1/sql", strata.url))
        .header("X-Scope-OrgID", tenant)
        .body(query.to_string());
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let resp = req.send().await.expect("sql request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("sql body").to_vec())
}

#[tokio::test]
async fn sql_returns_remote_written_samples() {
    let scratch = Scratch::new("sql");
    let c = client();
    let data = scratch.sub("data");
    let strata = Strata::start_local(&data, &scratch.path()).await;

    // sql_metric{job="a"} = 1.5 i, {job="b"} = -i, 10 samples each, plus
    // another tenant's series.
    let start = (now_ms() - 600_000) / 1000 * 1000;
    let points = |f: f64| -> Vec<(i64, f64)> {
        (0..10)
            .map(|i| (start + i * 15_000, i as f64 * f))
            .collect()
    };
    let body = remote_write::encode(&remote_write::request(vec![
        remote_write::series(&[("__name__", "sql_metric"), ("job", "a")], &points(1.5)),
        remote_write::series(&[("__name__", "sql_metric"), ("job", "b")], &points(-1.0)),
    ]));
    let (status, text) = remote_write::send(&c, &strata.write_url(), body, Some(TENANT))
        .await
        .expect("write");
    assert_eq!(status, 204, "{text}");
    let other = remote_write::encode(&remote_write::request(vec![remote_write::series(
        &[("__name__", "hidden"), ("job", "a")],
        &[(start, 42.0)],
    )]));
    let (status, _) = remote_write::send(&c, &strata.write_url(), other, Some("other"))
        .await
        .expect("write other");
    assert_eq!(status, 204);

    let query = "SELECT s.labels['job'] AS job, v.timestamp, v.value \
                 FROM series s JOIN samples v ON s.series_id = v.series_id \
                 WHERE s.metric_name = 'sql_metric' ORDER BY job, v.timestamp";
    let (status, bytes) = sql(&c, &strata, query, TENANT, None).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    let rows = v["data"]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 20, "{text}");
    for (job, f, part) in [("a", 1.5, &rows[..10]), ("b", -1.0, &rows[10..])] {
        for (i, row) in part.iter().enumerate() {
            assert_eq!(row[0], json!(job));
            assert_eq!(row[2], json!(i as f64 * f), "{row}");
        }
    }
    assert!(
        rows[0][1].as_str().is_some_and(|t| t.ends_with('Z')),
        "{}",
        rows[0]
    );

    // The same query as Arrow IPC: exact timestamps and values.
    let (status, bytes) = sql(
        &c,
        &strata,
        query,
        TENANT,
        Some("application/vnd.apache.arrow.stream"),
    )
    .await;
    assert_eq!(status, 200);
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .expect("arrow stream");
    let mut got = Vec::new();
    for batch in reader {
        let b = batch.expect("batch");
        let jobs = b.column(0).as_string::<i32>();
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        let vs = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            got.push((jobs.value(i).to_string(), ts.value(i), vs.value(i)));
        }
    }
    let mut want = Vec::new();
    for (job, f) in [("a", 1.5), ("b", -1.0)] {
        for (t, v) in points(f) {
            want.push((job.to_string(), t, v));
        }
    }
    assert_eq!(got, want);

    // Aggregation with a pushed-down time range.
    let q = format!(
        "SELECT count(*) AS n, sum(value) AS s FROM samples \
         WHERE metric_name = 'sql_metric' AND timestamp >= to_timestamp_millis({})",
        start + 5 * 15_000
    );
    let (status, bytes) = sql(&c, &strata, &q, TENANT, None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    // i = 5..9: 1.5 * 35 - 35
    assert_eq!(v["data"]["rows"], json!([[10, 17.5]]));

    // Tenants see only their own tables.
    let (_, bytes) = sql(&c, &strata, "SELECT metric_name FROM series", "other", None).await;
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["data"]["rows"], json!([["hidden"]]));
    let (_, bytes) = sql(
        &c,
        &strata,
        "SELECT count(*) FROM samples WHERE metric_name = 'hidden'",
        TENANT,
        None,
    )
    .await;
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["data"]["rows"], json!([[0]]));

    // Read-only.
    for q in [
        "DROP TABLE samples",
        "CREATE TABLE t AS SELECT 1",
        "COPY samples TO '/tmp/x.csv'",
    ] {
        let (status, bytes) = sql(&c, &strata, q, TENANT, None).await;
        assert_eq!(status, 400, "{q}: {}", String::from_utf8_lossy(&bytes));
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["errorType"], "bad_data");
    }

    // `strata sql` reads the same storage directly.
    let out = Command::new(strata_bin())
        .args(["sql", "--storage", "local", "--data-dir"])
        .arg(&data)
        .args([
            "--tenant",
            TENANT,
            "SELECT metric_name, count(*) AS n, max(value) AS top FROM samples GROUP BY 1",
        ])
        .env_remove("STRATA_CONFIG")
        .output()
        .expect("run strata sql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["metric_name", "n", "top"],
            vec!["sql_metric", "20", "13.5"]
        ]
    );
    let out = Command::new(strata_bin())
        .args(["sql", "--storage", "local", "--data-dir"])
        .arg(&data)
        .args([
            "--tenant",
            TENANT,
            "--format",
            "json",
            "DELETE FROM samples",
        ])
        .output()
        .expect("run strata sql");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DML"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
