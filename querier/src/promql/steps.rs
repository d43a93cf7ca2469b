//! A range query's steps: evaluated one after the other, or, when the query
//! is large enough, as consecutive runs of steps on several cores.
//!
//! Steps are independent: what an evaluator keeps between steps (label
//! memos, selector cursors, subquery results) only saves work, so each run
//! gets an evaluator of its own over the same loaded samples and AST. The
//! runs' series are joined in step order and their annotations merged as if
//! reported one run after the other, so the answer is the one a single
//! evaluator gives. Prometheus evaluates a query on one core; with two,
//! splitting halves the engine's share of a short dashboard query.

use promql_parser::parser::Expr;
use storage::labels::LabelsMap;
use storage::{Labels, Sample};

use super::EvalError;
use super::annotations::{Annotations, Collector};
use super::eval::Evaluator;
use super::selectors::Loaded;
use super::value::{self, HPoint, Val};

/// Series-steps (loaded series times steps) below which a query is
/// evaluated on one thread: starting a thread costs tens of microseconds,
/// a few hundred series-steps' work.
const SPLIT_MIN_WORK: usize = 4096;

/// Fewest steps a run on its own thread gets.
const MIN_STEPS_PER_RUN: usize = 8;

/// Points of a range query's result by label set.
pub(crate) type Points = LabelsMap<(Vec<Sample>, Vec<HPoint>)>;

/// What [`eval_range`] needs besides the loaded samples.
pub(crate) struct RangeEval<'a> {
    pub expr: &'a Expr,
    pub loaded: &'a Loaded,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub lookback: i64,
    pub max_samples: usize,
}

/// How many runs to split `steps` steps over `series` loaded series into.
pub(crate) fn runs_for(series: usize, steps: usize) -> usize {
    if series.saturating_mul(steps) < SPLIT_MIN_WORK {
        return 1;
    }
    storage::cores().min(steps / MIN_STEPS_PER_RUN).max(1)
}

/// Evaluates every step of the range query in `runs` runs of consecutive
/// steps (one per thread), and returns its series and annotations.
/// `annotations` is the query's collector; runs on other threads report
/// into forks of it.
pub(crate) fn eval_range(
    r: &RangeEval<'_>,
    annotations: Collector,
    runs: usize,
) -> Result<(Points, Annotations), EvalError> {
    let steps = usize::try_from((r.end - r.start) / r.step)
        .unwrap_or(0)
        .saturating_add(1);
    let runs = runs.clamp(1, steps);
    let per = steps.div_ceil(runs);
    // Step indexes [a, b) of each run.
    let bounds: Vec<(usize, usize)> = (0..runs)
        .map(|i| (i * per, ((i + 1) * per).min(steps)))
        .filter(|(a, b)| a < b)
        .collect();
    let first =
        Evaluator::new(r.loaded, r.start, r.end, r.step, r.lookback).with_annotations(annotations);
    let Some((&(a0, b0), rest)) = bounds.split_first() else {
        return Ok((Points::default(), first.annotations.take()));
    };
    let (head, tail) = std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .iter()
            .map(|&(a, b)| {
                let fork = first.annotations.fork();
                scope.spawn(move || {
                    let ev = Evaluator::new(r.loaded, r.start, r.end, r.step, r.lookback)
                        .with_annotations(fork);
                    let points = run(&ev, r, a, b);
                    (points, ev.annotations)
                })
            })
            .collect();
        let head = run(&first, r, a0, b0);
        let tail: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (head, tail)
    });
    // The first failing step's error, as one evaluator would report it.
    let (mut series, mut total) = head?;
    for (points, annotations) in tail {
        let (more, n) = points?;
        total = total.saturating_add(n);
        if total > r.max_samples {
            return Err(EvalError::TooManySamples);
        }
        first.annotations.merge(annotations);
        for (labels, (samples, hists)) in more {
            let entry = series.entry(labels).or_default();
            entry.0.extend(samples);
            entry.1.extend(hists);
        }
    }
    Ok((series, first.annotations.take()))
}

/// Steps `a..b` (indexes) of the query on one evaluator: the series and
/// the number of points.
fn run(
    ev: &Evaluator<'_>,
    r: &RangeEval<'_>,
    a: usize,
    b: usize,
) -> Result<(Points, usize), EvalError> {
    let mut series = Points::default();
    let mut points = 0usize;
    for i in a..b {
        // In range: `i` is at most (end - start) / step.
        let ts = r.start + i as i64 * r.step;
        let elems = match ev.eval(r.expr, ts)? {
            Val::Scalar(v) => vec![value::Elem {
                labels: Labels::empty(),
                h: None,
                v,
                drop_name: false,
            }],
            Val::Vector(v) => ev.finish_vector(v)?,
            other => {
                return Err(EvalError::Execution(format!(
                    "range query step evaluated to {}",
                    other.type_name()
                )));
            }
        };
        points += elems.len();
        if points > r.max_samples {
            return Err(EvalError::TooManySamples);
        }
        for e in elems {
            let entry = series.entry(e.labels).or_default();
            match e.h {
                Some(h) => entry.1.push(HPoint { t: ts, h }),
                None => entry.0.push(Sample::new(ts, e.v)),
            }
        }
    }
    Ok((series, points))
}

#[cfg(test)]
mod tests {
    use storage::sample::stale_nan;
    use storage::sidecar::HistogramSeries;
    use storage::{Labels, Sample, Series};

    use super::super::{Engine, EngineOptions, EvalError, FloatHistogram, Value};
    use crate::queryable::MemQueryable;

    const MIN: i64 = 60_000;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).expect("labels")
    }

    /// Counters, gauges, classic buckets, a series with a gap and a stale
    /// marker, one that starts late, a gauge without a counter-like name
    /// (rate of it is annotated) and native histograms, over 2 hours.
    fn store() -> MemQueryable {
        let mut m = MemQueryable::default();
        let mut series = Vec::new();
        for i in 0..6 {
            let inst = format!("i{i}");
            let samples = (0..120)
                .filter(|t| !(i == 1 && (40..55).contains(t)))
                .map(|t| {
                    let v = if i == 2 && t == 70 {
                        stale_nan()
                    } else {
                        (t * (i + 1)) as f64 + if t > 80 { 0.0 } else { 1000.0 }
                    };
                    Sample::new(t * MIN + 7, v)
                })
                .collect();
            series.push(Series {
                labels: labels(&[("__name__", "req_total"), ("inst", &inst), ("job", "a")]),
                samples,
            });
            let start = if i == 3 { 90 } else { 0 };
            series.push(Series {
                labels: labels(&[("__name__", "temp"), ("inst", &inst)]),
                samples: (start..120)
                    .map(|t| Sample::new(t * MIN + 11, ((t * 7 + i * 13) % 17) as f64))
                    .collect(),
            });
            for (le, f) in [("0.1", 1), ("1", 3), ("+Inf", 4)] {
                series.push(Series {
                    labels: labels(&[("__name__", "lat_bucket"), ("inst", &inst), ("le", le)]),
                    samples: (0..120)
                        .map(|t| {
                            // Non-monotonic buckets late in the range: annotated.
                            let f = if t > 100 && le == "1" { 9 } else { f };
                            Sample::new(t * MIN + 3, (t * f * (i + 1)) as f64)
                        })
                        .collect(),
                });
            }
        }
        // Equal to temp{inst="i4"} once the names are dropped, from minute 100.
        series.push(Series {
            labels: labels(&[("__name__", "hum"), ("inst", "i4")]),
            samples: (100..120).map(|t| Sample::new(t * MIN + 1, 50.0)).collect(),
        });
        m.write(&series);
        let h = FloatHistogram {
            count: 3.0,
            sum: 4.0,
            positive: vec![(0, 3.0)],
            ..FloatHistogram::default()
        };
        m.write_histograms(&[HistogramSeries {
            labels: labels(&[("__name__", "nh"), ("inst", "i0")]),
            histograms: (60..120)
                .map(|t| h.clone().scale(t as f64).to_stored(t * MIN + 5))
                .collect(),
        }]);
        m
    }

    const QUERIES: &[&str] = &[
        "rate(req_total[5m])",
        "sum by (job) (rate(req_total[5m]))",
        "topk(2, rate(req_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[10m])))",
        "rate(temp[5m])",
        "temp",
        "req_total",
        "max_over_time(temp[10m:1m])",
        "temp > 8",
        "temp + on(inst) group_left rate(req_total[5m])",
        "label_replace(temp, \"x\", \"$1\", \"inst\", \"i(.)\")",
        "absent(temp{inst=\"i3\"})",
        "count_values(\"v\", temp)",
        "scalar(sum(temp))",
        "time()",
        "rate(nh[5m])",
        "sum(histogram_count(rate(nh[5m]))) + sum(rate(req_total[5m]))",
        "sum(temp) or sum(nh)",
    ];

    /// Every query gives the same answer and annotations evaluated in one
    /// run as in 2, 3 and 7 runs (threads), with steps that do not divide
    /// evenly and ranges where series start, stop and go stale.
    #[tokio::test]
    async fn split_runs_answer_as_one_run() {
        let q = store();
        let engine = Engine::default();
        for query in QUERIES {
            for (start, end, step) in [(0, 119 * MIN, MIN), (5 * MIN, 110 * MIN, 7 * MIN / 2)] {
                let one = engine
                    .range_query_runs(&q, query, start, end, step, Some(1))
                    .await
                    .unwrap_or_else(|e| panic!("{query}: {e}"));
                if let Value::Matrix(m) = &one.0 {
                    assert!(!m.is_empty(), "{query}: an empty answer compares nothing");
                }
                for runs in [2, 3, 7] {
                    let split = engine
                        .range_query_runs(&q, query, start, end, step, Some(runs))
                        .await
                        .unwrap_or_else(|e| panic!("{query}: {e}"));
                    assert_eq!(split, one, "{query} in {runs} runs, step {step}");
                }
            }
        }
    }

    /// The annotations of later runs come after those of earlier ones, each
    /// once, as one evaluator reports them; the data has some of both.
    #[tokio::test]
    async fn split_runs_merge_annotations_in_step_order() {
        let q = store();
        let engine = Engine::default();
        let query = "histogram_quantile(0.9, rate(lat_bucket[5m])) + rate(temp[5m])";
        let one = engine
            .range_query_runs(&q, query, 0, 119 * MIN, MIN, Some(1))
            .await
            .expect("one run");
        assert!(one.1.infos.len() + one.1.warnings.len() >= 2, "{:?}", one.1);
        for runs in [2, 4] {
            let split = engine
                .range_query_runs(&q, query, 0, 119 * MIN, MIN, Some(runs))
                .await
                .expect("split");
            assert_eq!(split.1, one.1, "{runs} runs");
        }
    }

    /// A failing step fails the query however it is split; a result over
    /// the sample limit too.
    #[tokio::test]
    async fn split_runs_fail_as_one_run() {
        let q = store();
        // Without their names, hum and temp of inst i4 are one label set
        // from minute 100 on: only the last steps fail.
        let engine = Engine::default();
        let query = "ln({__name__=~\"temp|hum\"})";
        for runs in [1, 2, 5] {
            let got = engine
                .range_query_runs(&q, query, 0, 119 * MIN, MIN, Some(runs))
                .await;
            assert!(
                matches!(&got, Err(EvalError::Execution(m)) if m.contains("same labelset")),
                "{runs} runs: {got:?}"
            );
        }
        let before = engine
            .range_query_runs(&q, query, 0, 95 * MIN, MIN, Some(2))
            .await;
        assert!(before.is_ok(), "{before:?}");
        let small = Engine::new(EngineOptions {
            max_samples: 500,
            ..EngineOptions::default()
        });
        for runs in [1, 2, 3] {
            let got = small
                .range_query_runs(&q, "temp", 0, 119 * MIN, MIN, Some(runs))
                .await;
            assert!(
                matches!(got, Err(EvalError::TooManySamples)),
                "{runs} runs: {got:?}"
            );
        }
    }

    #[test]
    fn small_queries_run_on_one_thread() {
        assert_eq!(super::runs_for(10, 100), 1);
        assert_eq!(super::runs_for(1000, 1), 1);
        assert!(super::runs_for(1000, 1000) >= 1);
    }
}
