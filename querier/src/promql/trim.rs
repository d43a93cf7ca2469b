//! The trim operators `</` and `>/` (parsed by the syntax front end as
//! `atan2` nodes it marks): `h </ x` keeps the observations of each native
//! histogram below `x`, `h >/ x` those above ([`FloatHistogram::trim`]).
//!
//! The left side is an instant vector; the right side a scalar, or an
//! instant vector matched one-to-one (`on`/`ignoring`). Float samples on
//! the left have no buckets to trim and are dropped.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::EvalError;
use super::eval::Evaluator;
use super::native_histogram::FloatHistogram;
use super::syntax::Trim;
use super::value::{Elem, Val, match_labels};

pub(crate) fn eval(ev: &Evaluator<'_>, b: &BinaryExpr, t: Trim, ts: i64) -> Result<Val, EvalError> {
    let upper = t == Trim::Upper;
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let trim = |h: &FloatHistogram, x: f64| Some(Arc::new(h.trim(x, upper)));
    match (lhs, rhs) {
        (Val::Vector(l), Val::Scalar(x)) => Ok(Val::Vector(
            l.into_iter()
                .filter_map(|e| {
                    let h = trim(e.h.as_deref()?, x);
                    Some(Elem { h, ..e })
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Vector(r)) => {
            let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                None => (false, Vec::new()),
            };
            if b.modifier
                .as_ref()
                .is_some_and(|m| !matches!(m.card, VectorMatchCardinality::OneToOne))
            {
                return Err(EvalError::Unsupported(
                    "group_left/group_right with a trim operator".into(),
                ));
            }
            let mut right: HashMap<_, f64> = HashMap::new();
            for e in r.iter().filter(|e| e.h.is_none()) {
                let key = match_labels(&e.labels, on, &names);
                if right.insert(key, e.v).is_some() {
                    return Err(EvalError::Execution(
                        "found duplicate series for the match group on the right hand-side of the operation".into(),
                    ));
                }
            }
            Ok(Val::Vector(
                l.into_iter()
                    .filter_map(|e| {
                        let x = *right.get(&match_labels(&e.labels, on, &names))?;
                        let h = trim(e.h.as_deref()?, x);
                        Some(Elem {
                            h,
                            drop_name: true,
                            ..e
                        })
                    })
                    .collect(),
            ))
        }
        (l, r) => Err(EvalError::Execution(format!(
            "a trim operator needs an instant vector of histograms on the left and a scalar or instant vector on the right, got {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::FloatHistogram;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    /// schema 0, zero bucket 1 (threshold 0.001), positive (0.5,1]:2
    /// (1,2]:4 (2,4]:8 (4,8]:16, negative [-1,-0.5):1 [-2,-1):2.
    fn exp() -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 34.0,
            sum: 123.75,
            positive: vec![(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0)],
            negative: vec![(0, 1.0), (1, 2.0)],
            ..FloatHistogram::default()
        }
    }

    fn custom(bounds: &[f64], counts: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema: -53,
            count: counts.iter().sum(),
            sum: 33.0,
            positive: counts
                .iter()
                .enumerate()
                .map(|(i, c)| (i as i32, *c))
                .collect(),
            custom_values: bounds.to_vec(),
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn exponential_buckets_cut_with_exponential_interpolation() {
        // sqrt(2) is half-way through (1,2] on a log scale.
        let h = exp().trim(2f64.sqrt(), true);
        assert!(close(h.count, 8.0), "{h:?}");
        assert_eq!(h.positive.len(), 2);
        assert!(close(h.positive[1].1, 2.0), "{h:?}");
        // Kept observations stand at their bucket's geometric mean.
        let want = -0.5f64.sqrt() - 2.0 * 2f64.sqrt() + 2.0 * 0.5f64.sqrt() + 2.0 * 2f64.powf(0.25);
        assert!(close(h.sum, want), "{} vs {want}", h.sum);
        // A cut on a bucket boundary interpolates nothing; negative side.
        let h = exp().trim(-1.0, false);
        assert_eq!(h.negative, vec![(0, 1.0)]);
        assert!(close(h.count, 32.0));
    }

    #[test]
    fn the_zero_bucket_leans_to_the_populated_side() {
        // Only positive buckets: the zero bucket is [0, 0.5].
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.5,
            zero_count: 2.0,
            count: 12.0,
            sum: 8.0,
            positive: vec![(0, 10.0)],
            ..FloatHistogram::default()
        };
        let t = h.trim(0.1, false);
        assert!(close(t.zero_count, 1.6) && close(t.count, 11.6), "{t:?}");
        assert!(close(t.sum, 10.0 * 0.5f64.sqrt() + 1.6 * 0.3));
        let t = h.trim(0.1, true);
        assert!(close(t.zero_count, 0.4) && close(t.sum, 0.02), "{t:?}");
        // Nothing cut: unchanged, the original sum included.
        assert_eq!(h.trim(0.0, false), h);
        // Both sides populated: symmetric, half below zero.
        let t = exp().trim(0.0, true);
        assert!(close(t.zero_count, 0.5) && close(t.count, 3.5), "{t:?}");
    }

    #[test]
    fn custom_buckets_cut_linearly_and_infinite_buckets_whole() {
        let h = custom(&[5.0, 10.0, 15.0, 20.0], &[1.0, 6.0, 4.0, 3.0, 1.0]);
        let t = h.trim(13.0, true);
        assert_eq!(t.positive, vec![(0, 1.0), (1, 6.0), (2, 4.0 * 0.6)]);
        assert!(close(t.sum, 2.5 + 6.0 * 7.5 + 2.4 * 11.5), "{t:?}");
        // `</` drops the +Inf bucket even when the cut is above its lower bound.
        let t = h.trim(50.0, true);
        assert!(close(t.count, 14.0), "{t:?}");
        // `>/` keeps it whole, its observations at the cut.
        let h = custom(&[-5.0], &[1.0, 100.0]);
        let t = h.trim(-2.0, false);
        assert!(close(t.count, 100.0) && close(t.sum, -200.0), "{t:?}");
        // `</` inside the first bucket (-Inf, -5] keeps it whole at the cut.
        let t = h.trim(-10.0, true);
        assert!(close(t.count, 1.0) && close(t.sum, -10.0), "{t:?}");
        // An empty histogram stays empty.
        let e = custom(&[-3.0, 2.0], &[]);
        assert_eq!(e.trim(0.0, true), e);
    }
}
