//! Unit tests of the engine over a small in-memory store. The Prometheus
//! conformance scripts (see `promqltest`) are the full specification; these
//! pin down the engine's own contract: one `select` per distinct selector,
//! result shapes, and error kinds.

use std::sync::Mutex;

use async_trait::async_trait;
use storage::sample::stale_nan;
use storage::step_grid::StepGrid;
use storage::{Labels, Matcher, Sample, Series};

use super::{Engine, EvalError, Queryable, Value};
use crate::queryable::MemQueryable;

/// The shared in-memory store, recording every `select` call (and the
/// grid of each `select_at_steps`, whose answer it thins as storage does).
#[derive(Default)]
struct Recording {
    inner: MemQueryable,
    calls: Mutex<Vec<(usize, i64, i64)>>,
    grids: Mutex<Vec<StepGrid>>,
}

#[async_trait]
impl Queryable for Recording {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        self.calls
            .lock()
            .map_err(|e| EvalError::Storage(e.to_string()))?
            .push((matchers.len(), start_ms, end_ms));
        self.inner.select(matchers, start_ms, end_ms).await
    }

    async fn select_at_steps(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        grid: StepGrid,
    ) -> Result<Vec<Series>, EvalError> {
        self.grids
            .lock()
            .map_err(|e| EvalError::Storage(e.to_string()))?
            .push(grid);
        let whole = self.select(matchers, start_ms, end_ms).await?;
        Ok(whole
            .into_iter()
            .map(|s| {
                let mut samples = Vec::new();
                grid.push_seen(&s.samples, &mut samples);
                Series {
                    labels: s.labels,
                    samples,
                }
            })
            .collect())
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

/// A series with one sample every `step_s` seconds from 0, values `vals`.
fn series(pairs: &[(&str, &str)], step_s: i64, vals: &[f64]) -> Series {
    let samples = vals
        .iter()
        .enumerate()
        .map(|(i, v)| Sample::new(i as i64 * step_s * 1000, *v))
        .collect();
    Series {
        labels: labels(pairs),
        samples,
    }
}

fn store() -> Recording {
    let mut inner = MemQueryable::default();
    inner.write(&[
        series(
            &[("__name__", "req"), ("job", "a")],
            60,
            &[0.0, 60.0, 120.0, 180.0, 240.0, 300.0],
        ),
        series(
            &[("__name__", "req"), ("job", "b")],
            60,
            &[0.0, 30.0, 60.0, 10.0, 40.0, 70.0],
        ),
        series(
            &[("__name__", "up"), ("job", "a")],
            60,
            &[1.0, 1.0, 1.0, stale_nan()],
        ),
    ]);
    Recording {
        inner,
        ..Recording::default()
    }
}

fn vector(v: Value) -> Vec<(String, f64)> {
    match v {
        Value::Vector(v) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .map(|s| (s.labels.to_string(), s.sample.v))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("expected a vector, got {other:?}"),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn instant_selector_and_staleness() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.instant_query(&q, "up", 120_000)).expect("query");
    assert_eq!(vector(v), vec![("up{job=\"a\"}".to_string(), 1.0)]);
    // The stale marker at 180s ends the series at once.
    let v = block_on(e.instant_query(&q, "up", 200_000)).expect("query");
    assert!(vector(v).is_empty());
}

#[test]
fn rate_handles_counter_resets_and_drops_the_name() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.instant_query(&q, "rate(req[5m])", 300_000)).expect("query");
    let got = vector(v);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "{job=\"a\"}");
    // 240 increase over 240s sampled, extrapolated to the 300s window: 1/s.
    assert!((got[0].1 - 1.0).abs() < 1e-9, "{got:?}");
    // b from 60s: 30, 60, reset to 10 (60 kept), 40, 70: increase 100,
    // extrapolated by the same 1.25 over 300s.
    assert!((got[1].1 - 100.0 * 1.25 / 300.0).abs() < 1e-9, "{got:?}");
}

#[test]
fn aggregation_and_binary_matching() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.instant_query(&q, "sum by (job) (req) / on(job) group_left up", 120_000))
        .expect("query");
    assert_eq!(vector(v), vec![("{job=\"a\"}".to_string(), 120.0)]);
    let err = block_on(e.instant_query(&q, "req + on() up", 120_000)).expect_err("many-to-many");
    assert!(matches!(err, EvalError::Execution(_)), "{err}");
    let err = block_on(e.instant_query(&q, "sum(", 0)).expect_err("parse");
    assert!(matches!(err, EvalError::Parse(_)), "{err}");
}

#[test]
fn range_query_gives_a_matrix_and_scalars_become_one_series() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.range_query(&q, "req{job=\"a\"} * 2", 0, 120_000, 60_000)).expect("query");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].labels, labels(&[("job", "a")]));
    let vals: Vec<f64> = m[0].samples.iter().map(|s| s.v).collect();
    assert_eq!(vals, vec![0.0, 120.0, 240.0]);

    let v = block_on(e.range_query(&q, "time()", 0, 120_000, 60_000)).expect("query");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix")
    };
    assert_eq!(m.len(), 1);
    assert!(m[0].labels.is_empty());
    assert_eq!(m[0].samples.len(), 3);

    let err = block_on(e.range_query(&q, "req[5m]", 0, 120_000, 60_000)).expect_err("matrix");
    assert!(matches!(err, EvalError::Parse(_)), "{err}");
}

#[test]
fn each_distinct_selector_is_loaded_once_with_the_widest_range() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.instant_query(
        &q,
        "req offset 1m + rate(req[10m]) + max_over_time(req[2m:30s])",
        600_000,
    ));
    v.expect("query");
    let calls = q.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (_, start, end) = calls[0];
    // Lookback of the offset selector reaches 600-60-300 = 240s; the range
    // 600-600 = 0s; start is exclusive so the load begins 1ms later.
    assert_eq!((start, end), (1, 600_000));
}

#[test]
fn subquery_steps_are_aligned_to_the_step() {
    let q = store();
    let e = Engine::default();
    // Inner steps at 60s..300s: values 60,120,180,240,300 of req{job="a"}.
    let v = block_on(e.instant_query(&q, "count_over_time(req{job=\"a\"}[4m:1m])", 310_000))
        .expect("query");
    assert_eq!(vector(v), vec![("{job=\"a\"}".to_string(), 4.0)]);
    let v = block_on(e.instant_query(&q, "req{job=\"a\"}[2m:1m]", 300_000)).expect("query");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix")
    };
    let ts: Vec<i64> = m[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![240_000, 300_000]);
}

#[test]
fn unsupported_features_say_so() {
    let q = store();
    let e = Engine::default();
    // Parsed by promql-parser, not evaluated yet (422, not 400 or 500).
    let err = block_on(e.instant_query(&q, r#"req{job="a" or job="b"}"#, 0)).expect_err("or");
    assert!(matches!(err, EvalError::Unsupported(_)), "{err}");
}

#[test]
fn limitk_keeps_series_unchanged_per_group() {
    let q = store();
    let e = Engine::default();
    let v = block_on(e.instant_query(&q, "limitk by (job) (1, req)", 120_000)).expect("query");
    let got = vector(v);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(l, _)| l.starts_with("req{")), "{got:?}");
    let v = block_on(e.instant_query(&q, "limitk(1, req)", 120_000)).expect("query");
    assert_eq!(vector(v).len(), 1);
    let v = block_on(e.instant_query(&q, "limitk(0, req)", 120_000)).expect("query");
    assert!(vector(v).is_empty());
    let err = block_on(e.instant_query(&q, "limitk(NaN, req)", 120_000)).expect_err("NaN");
    assert!(matches!(err, EvalError::Execution(_)), "{err}");
}

#[test]
fn limit_ratio_picks_complementary_stable_samples() {
    let q = store();
    let e = Engine::default();
    for r in [0.0, 0.3, 0.5, 0.9] {
        let all = format!("limit_ratio({r}, req) or limit_ratio({r} - 1, req)");
        let v = block_on(e.instant_query(&q, &all, 120_000)).expect("query");
        assert_eq!(vector(v).len(), 2, "{all}");
        let none = format!("limit_ratio({r}, req) and limit_ratio({r} - 1, req)");
        let v = block_on(e.instant_query(&q, &none, 120_000)).expect("query");
        assert!(vector(v).is_empty(), "{none}");
    }
    // Out-of-range ratios are capped: everything is kept.
    let v = block_on(e.instant_query(&q, "limit_ratio(1.5, req)", 120_000)).expect("query");
    assert_eq!(vector(v).len(), 2);
    let err = block_on(e.instant_query(&q, "limit_ratio(NaN, req)", 0)).expect_err("NaN");
    assert!(matches!(err, EvalError::Execution(_)), "{err}");
}

/// `metric` plus `target_info` whose `version` label changes at 120s.
fn info_store() -> MemQueryable {
    let mut q = MemQueryable::default();
    let id = [("instance", "a"), ("job", "j")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p = id.to_vec();
        p.extend_from_slice(extra);
        p
    };
    q.write(&[
        series(&with(&[("__name__", "metric")]), 60, &[1.0, 2.0, 3.0, 4.0]),
        series(
            &with(&[("__name__", "target_info"), ("version", "old")]),
            60,
            &[1.0, 1.0, stale_nan()],
        ),
        Series {
            labels: labels(&with(&[("__name__", "target_info"), ("version", "new")])),
            samples: vec![Sample::new(120_000, 1.0), Sample::new(180_000, 1.0)],
        },
        series(
            &with(&[("__name__", "build_info"), ("version", "other")]),
            60,
            &[1.0, 1.0, 1.0, 1.0],
        ),
    ]);
    q
}

#[test]
fn info_adds_data_labels_as_of_the_argument_time() {
    let q = info_store();
    let e = Engine::default();
    let at = |query: &str, t: i64| vector(block_on(e.instant_query(&q, query, t)).expect(query));
    let row = |version: &str, v: f64| {
        (
            format!("metric{{instance=\"a\", job=\"j\", version=\"{version}\"}}"),
            v,
        )
    };
    assert_eq!(at("info(metric)", 60_000), vec![row("old", 2.0)]);
    assert_eq!(at("info(metric)", 180_000), vec![row("new", 4.0)]);
    // The offset moves the info lookup too.
    assert_eq!(at("info(metric offset 2m)", 180_000), vec![row("old", 2.0)]);
    assert_eq!(at("info(metric @ 60)", 180_000), vec![row("old", 2.0)]);
    // A data label matcher no info series satisfies drops the series.
    assert!(at(r#"info(metric, {missing=~".+"})"#, 60_000).is_empty());
    // Labels from two info metrics that disagree are an error.
    let err = block_on(e.instant_query(&q, r#"info(metric, {__name__=~".+_info"})"#, 60_000))
        .expect_err("conflict");
    assert!(err.to_string().contains("conflicting label"), "{err}");
    // The name stays dropped after enrichment.
    assert_eq!(
        at("info(-metric)", 60_000),
        vec![(
            "{instance=\"a\", job=\"j\", version=\"old\"}".to_string(),
            -2.0
        )]
    );
}

#[test]
fn type_and_unit_labels_go_with_the_metric_name() {
    let mut q = MemQueryable::default();
    q.write(&[series(
        &[
            ("__name__", "c_total"),
            ("__type__", "counter"),
            ("__unit__", "s"),
            ("job", "a"),
        ],
        60,
        &[1.0, 2.0],
    )]);
    let e = Engine::default();
    let v = block_on(e.instant_query(&q, "c_total * 2", 60_000)).expect("query");
    assert_eq!(vector(v), vec![("{job=\"a\"}".to_string(), 4.0)]);
    let v = block_on(e.instant_query(&q, "c_total", 60_000)).expect("query");
    assert_eq!(
        vector(v),
        vec![(
            "c_total{__type__=\"counter\", __unit__=\"s\", job=\"a\"}".to_string(),
            2.0
        )]
    );
}

/// Found by fuzzing (`fuzz/corpus/promql/regression-huge-number-duration`):
/// promql-parser panics converting a huge number of seconds to a duration;
/// the engine answers a parse error (400) instead.
#[tokio::test]
async fn a_parser_panic_is_a_parse_error() {
    let q = MemQueryable::default();
    for query in [
        "ins2ture[20333333333333333333333333333333333333:3333m3133m]",
        "x[1e30]",
    ] {
        let err = Engine::default()
            .instant_query(&q, query, 0)
            .await
            .expect_err(query);
        assert!(matches!(err, EvalError::Parse(_)), "{query}: {err}");
    }
}

/// A subquery whose range is near `i64::MAX` milliseconds parses, and must be
/// answered (empty here, or an error) without overflowing the step grid.
#[tokio::test]
async fn a_huge_subquery_range_does_not_overflow() {
    let q = MemQueryable::default();
    for query in [
        "ins2tureO[00000003849717358454461782:33333133m]",
        "rate(x[3849717358454461782s:1m])",
        "x[1m:3849717358454461782s]",
    ] {
        // Refusals: too many subquery steps, or a range vector asked for
        // as a range query's result.
        let ok = |r: &Result<_, EvalError>| {
            matches!(
                r,
                Ok(_) | Err(EvalError::TooManySamples) | Err(EvalError::Parse(_))
            )
        };
        let r = Engine::default().instant_query(&q, query, 0).await;
        assert!(ok(&r), "{query}: {:?}", r.err());
        let r = Engine::default()
            .range_query(&q, query, 0, 60_000, 15_000)
            .await;
        assert!(ok(&r), "{query}: {:?}", r.err());
    }
}

/// Plain selectors evaluated at the query's own times are read thinned to
/// what those times see, and the answers stay those of whole reads;
/// selectors read at other times (ranges, subqueries, `@`, two offsets of
/// one selector) are read whole.
#[test]
fn selectors_at_the_query_steps_are_read_thinned_and_answer_the_same() {
    let e = Engine::default();
    let cases: [(&str, usize); 9] = [
        ("up", 1),
        ("sum by (job) (req)", 1),
        ("req offset 1m * 2", 1),
        ("timestamp(req)", 1),
        ("req + up", 2),
        ("rate(req[2m])", 0),
        ("max_over_time(req[3m:1m])", 0),
        ("req @ 120", 0),
        ("req - req offset 1m", 0),
    ];
    for (query, thinned) in cases {
        for (start, end, step) in [(0, 300_000, 60_000), (30_000, 290_000, 100_000)] {
            let q = store();
            let got = block_on(e.range_query(&q, query, start, end, step)).expect(query);
            let want = block_on(e.range_query(&q.inner, query, start, end, step)).expect(query);
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{query}");
            let grids = q.grids.lock().expect("lock").len();
            assert_eq!(grids, thinned, "{query} at {start}..{end}/{step}");
        }
    }
    // An instant query sees one time.
    let q = store();
    block_on(e.instant_query(&q, "up", 120_000)).expect("instant");
    let grids = q.grids.lock().expect("lock").clone();
    assert_eq!(grids.iter().map(StepGrid::steps).collect::<Vec<_>>(), [1]);
}
