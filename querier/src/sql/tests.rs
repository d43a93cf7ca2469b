use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
use serde_json::json;
use storage::{Labels, Sample, Series, Storage, TenantId};

use super::*;

fn tenant(t: &str) -> TenantId {
    TenantId::new(t).expect("tenant")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

/// Tenant "a": `up{job=api}` = 1 and `up{job=db}` = 0 at 0, 15 s, ... 285 s
/// (20 samples each), `temp{room=x}` = i * 0.5 plus a NaN at the end.
/// Tenant "b": `secret` = 7.
async fn storage() -> Storage {
    let s = Storage::in_memory();
    let series = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| Series {
        labels: labels(pairs),
        samples: (0..20).map(|i| Sample::new(i * 15_000, f(i))).collect(),
    };
    let mut temp = series(&[("__name__", "temp"), ("room", "x")], &|i| i as f64 * 0.5);
    temp.samples.push(Sample::new(300_000, f64::NAN));
    s.write_segment(
        &tenant("a"),
        &[
            series(&[("__name__", "up"), ("job", "api")], &|_| 1.0),
            series(&[("__name__", "up"), ("job", "db")], &|_| 0.0),
            temp,
        ],
    )
    .await
    .expect("write a");
    s.write_segment(&tenant("b"), &[series(&[("__name__", "secret")], &|_| 7.0)])
        .await
        .expect("write b");
    s
}

fn limits() -> SqlLimits {
    SqlLimits::new(&SqlConfig::default(), 1_000_000)
}

async fn run(s: &Storage, t: &str, sql: &str) -> SqlOutput {
    execute(s, &tenant(t), sql, &limits())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn one_i64(out: &SqlOutput) -> i64 {
    assert_eq!(out.rows(), 1, "{out:?}");
    out.batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0))
        .expect("a row")
}

fn concat(out: &SqlOutput) -> RecordBatch {
    arrow::compute::concat_batches(&out.schema, &out.batches).expect("concat")
}

#[tokio::test]
async fn tables_hold_the_tenants_data_only() {
    let s = storage().await;
    assert_eq!(
        one_i64(&run(&s, "a", "SELECT count(*) FROM samples").await),
        61
    );
    assert_eq!(
        one_i64(&run(&s, "a", "SELECT count(*) FROM series").await),
        3
    );
    assert_eq!(
        one_i64(&run(&s, "b", "SELECT count(*) FROM samples").await),
        20
    );
    let out = run(
        &s,
        "a",
        "SELECT DISTINCT metric_name FROM series ORDER BY 1",
    )
    .await;
    let b = concat(&out);
    let names: Vec<&str> = b.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(names, vec!["temp", "up"]);
    // A tenant without data has empty tables, not an error.
    assert_eq!(
        one_i64(&run(&s, "c", "SELECT count(*) FROM samples").await),
        0
    );
}

#[tokio::test]
async fn series_ids_labels_and_joins() {
    let s = storage().await;
    let api = labels(&[("__name__", "up"), ("job", "api")]);
    let out = run(
        &s,
        "a",
        "SELECT series_id, labels['job'] AS job FROM series WHERE metric_name = 'up' ORDER BY job",
    )
    .await;
    let b = concat(&out);
    assert_eq!(
        b.column(0).as_primitive::<UInt64Type>().value(0),
        api.series_id()
    );
    assert_eq!(b.column(1).as_string::<i32>().value(0), "api");
    assert_eq!(b.column(1).as_string::<i32>().value(1), "db");

    let out = run(
        &s,
        "a",
        "SELECT s.labels['job'] AS job, sum(v.value) AS total, count(*) AS n \
         FROM series s JOIN samples v ON s.series_id = v.series_id \
         WHERE s.metric_name = 'up' GROUP BY 1 ORDER BY 1",
    )
    .await;
    let b = concat(&out);
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.column(1).as_primitive::<Float64Type>().value(0), 20.0);
    assert_eq!(b.column(1).as_primitive::<Float64Type>().value(1), 0.0);
    assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), 20);
}

#[tokio::test]
async fn time_filters_select_the_right_samples() {
    let s = storage().await;
    // Samples at 15 s steps: 15, 30 s (45 s is excluded).
    let q = "SELECT count(*) FROM samples WHERE metric_name = 'temp' \
             AND timestamp >= to_timestamp_millis(15000) AND timestamp < to_timestamp_millis(45000)";
    assert_eq!(one_i64(&run(&s, "a", q).await), 2);
    let q = "SELECT count(*) FROM samples WHERE timestamp BETWEEN '1970-01-01T00:01:00Z' AND '1970-01-01T00:01:30Z'";
    assert_eq!(one_i64(&run(&s, "a", q).await), 9);
    let q = "SELECT max(value) FROM samples WHERE metric_name = 'temp' AND timestamp < to_timestamp_millis(300000)";
    let b = concat(&run(&s, "a", q).await);
    assert_eq!(b.column(0).as_primitive::<Float64Type>().value(0), 9.5);
}

#[tokio::test]
async fn pushdown_keeps_reads_inside_the_sample_budget() {
    let s = storage().await;
    // 61 samples in all; a budget of 25 allows any one series, not all.
    let small = SqlLimits::new(&SqlConfig::default(), 25);
    let t = tenant("a");
    let err = execute(&s, &t, "SELECT count(*) FROM samples", &small)
        .await
        .expect_err("all samples exceed the budget");
    assert!(
        matches!(&err, SqlError::Execution(m) if m.contains("max_samples")),
        "{err}"
    );
    let id = labels(&[("__name__", "up"), ("job", "api")]).series_id();
    for q in [
        format!("SELECT count(*) FROM samples WHERE series_id = {id}"),
        format!("SELECT count(*) FROM samples WHERE series_id IN ({id}, 1, 2)"),
        "SELECT count(*) FROM samples WHERE metric_name = 'temp'".to_string(),
        "SELECT count(*) FROM samples WHERE timestamp < to_timestamp_millis(100000)".to_string(),
    ] {
        let out = execute(&s, &t, &q, &small)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert!(one_i64(&out) > 0, "{q}");
    }
}

#[tokio::test]
async fn writes_and_statements_are_refused() {
    let s = storage().await;
    for q in [
        "CREATE TABLE t (a INT)",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
        "INSERT INTO series VALUES (1, 'x', NULL)",
        "DROP TABLE samples",
        "COPY samples TO '/tmp/strata-sql-test.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM '/etc/passwd'",
        "SELECT 1; SELECT 2",
        "SELEC 1",
        "SELECT nope FROM samples",
        "",
    ] {
        match execute(&s, &tenant("a"), q, &limits()).await {
            Err(SqlError::BadQuery(msg)) => assert!(!msg.is_empty(), "{q}"),
            other => panic!("{q}: expected a bad query, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn limits_stop_runaway_queries() {
    let s = storage().await;
    let t = tenant("a");
    let few_rows = SqlLimits {
        max_rows: 10,
        ..limits()
    };
    let err = execute(&s, &t, "SELECT * FROM samples", &few_rows)
        .await
        .expect_err("61 rows > 10");
    assert!(
        matches!(&err, SqlError::Execution(m) if m.contains("max_rows")),
        "{err}"
    );
    execute(&s, &t, "SELECT * FROM samples LIMIT 10", &few_rows)
        .await
        .expect("a LIMIT fits");

    // Hours of work against a 50 ms limit.
    let short = SqlLimits {
        timeout: Duration::from_millis(50),
        ..limits()
    };
    let err = execute(
        &s,
        &t,
        "SELECT count(*) FROM generate_series(1, 100000000000) a",
        &short,
    )
    .await
    .expect_err("times out");
    assert!(matches!(err, SqlError::Timeout(_)), "{err}");

    // A hash aggregation of millions of groups in 1 MiB, without spilling.
    let tight = SqlLimits {
        max_memory_bytes: 1 << 20,
        ..limits()
    };
    let err = execute(
        &s,
        &t,
        "SELECT count(*) FROM (SELECT value FROM generate_series(1, 5000000) t(value) GROUP BY value)",
        &tight,
    )
    .await
    .expect_err("memory limit");
    assert!(
        matches!(&err, SqlError::Execution(m) if m.contains("esources exhausted")),
        "{err}"
    );
}

#[tokio::test]
async fn json_and_arrow_answers() {
    let s = storage().await;
    let out = run(
        &s,
        "a",
        "SELECT v.series_id, v.timestamp, v.value, s.labels FROM samples v JOIN series s \
         ON s.series_id = v.series_id WHERE v.metric_name = 'temp' \
         AND v.timestamp >= to_timestamp_millis(285000) ORDER BY v.timestamp",
    )
    .await;
    let j = output::to_json(&out).expect("json");
    let id = labels(&[("__name__", "temp"), ("room", "x")]).series_id();
    assert_eq!(j["status"], "success");
    let names: Vec<&str> = j["data"]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, vec!["series_id", "timestamp", "value", "labels"]);
    assert_eq!(j["data"]["columns"][0]["type"], "UInt64");
    assert_eq!(j["data"]["columns"][2]["type"], "Float64");
    assert_eq!(
        j["data"]["rows"],
        json!([
            [id, "1970-01-01T00:04:45Z", 9.5, {"__name__": "temp", "room": "x"}],
            [id, "1970-01-01T00:05:00Z", "NaN", {"__name__": "temp", "room": "x"}],
        ])
    );
    let bytes = output::to_arrow_ipc(&out.schema, &out.batches).expect("ipc");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).expect("read");
    assert_eq!(reader.schema(), out.schema);
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
    let got = arrow::compute::concat_batches(&out.schema, &batches).expect("concat");
    assert_eq!(got, concat(&out));
    let text = output::to_text(&out.schema, &out.batches).expect("text");
    assert!(text.starts_with("series_id"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[tokio::test]
async fn pathological_sql_is_refused_or_answered_never_a_crash() {
    let s = storage().await;
    let t = tenant("a");
    let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(
        execute(&s, &t, &nested, &limits()).await,
        Err(SqlError::BadQuery(m)) if m.contains("parentheses")
    ));
    // A long flat chain parses into a tree as deep as it is long: refused
    // before parsing past the operator limit, answered below it.
    let chain = |n: usize| format!("SELECT {}1", "1 + ".repeat(n));
    match execute(&s, &t, &chain(20_000), &limits()).await {
        Err(SqlError::BadQuery(m)) => assert!(m.contains("operators"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let out = execute(&s, &t, &chain(MAX_SQL_OPERATORS), &limits())
        .await
        .expect("a chain at the limit");
    assert_eq!(out.rows(), 1);
    // Operators inside strings, quoted names and comments do not count.
    let quoted = format!(
        "SELECT '{}' AS \"{}\" -- {}\n/* {} */",
        "+".repeat(5000),
        "-".repeat(5000),
        "*".repeat(5000),
        "AND ".repeat(5000)
    );
    assert_eq!(operator_count(&quoted), (0, 0));
    assert_eq!(
        operator_count("SELECT a FROM t WHERE (x >= 1 AND (y <> 2)) or z"),
        (6, 2)
    );
    let deep = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
    let out = execute(&s, &t, &deep(MAX_SQL_NESTING), &limits())
        .await
        .expect("nesting at the limit");
    assert_eq!(out.rows(), 1);
    execute(&s, &t, &quoted, &limits())
        .await
        .expect("quoted operators");
    let huge = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
    assert!(matches!(
        execute(&s, &t, &huge, &limits()).await,
        Err(SqlError::BadQuery(m)) if m.contains("exceeds")
    ));
}
