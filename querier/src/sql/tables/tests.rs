use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};

use super::*;

fn ts(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

#[test]
fn time_bounds_from_comparisons_and_between() {
    let p = Pushdown::from_filters(&[
        col(COL_TIMESTAMP).gt_eq(ts(1000)),
        col(COL_TIMESTAMP).lt(ts(5000)),
    ]);
    assert_eq!((p.start_ms, p.end_ms), (1000, 4999));
    let p = Pushdown::from_filters(&[ts(1000)
        .lt(col(COL_TIMESTAMP))
        .and(col(COL_TIMESTAMP).lt_eq(ts(9000)))]);
    assert_eq!((p.start_ms, p.end_ms), (1001, 9000));
    let p = Pushdown::from_filters(&[col(COL_TIMESTAMP).between(ts(10), ts(20))]);
    assert_eq!((p.start_ms, p.end_ms), (10, 20));
    let p = Pushdown::from_filters(&[col(COL_TIMESTAMP).eq(ts(7))]);
    assert_eq!((p.start_ms, p.end_ms), (7, 7));
    // Other units are widened, never narrowed: 1.5 ms..2.5 ms -> 1..3.
    let us = |x| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(x),
            Some("UTC".into()),
        ))
    };
    let p = Pushdown::from_filters(&[
        col(COL_TIMESTAMP).gt_eq(us(1500)),
        col(COL_TIMESTAMP).lt_eq(us(2500)),
    ]);
    assert_eq!((p.start_ms, p.end_ms), (1, 3));
    // A column cast to seconds: `<= 5 s` holds up to 5999 ms.
    let secs = |x| lit(ScalarValue::TimestampSecond(Some(x), None));
    let cast = |e: Expr| {
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(e),
            arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Second, None),
        ))
    };
    let p = Pushdown::from_filters(&[cast(col(COL_TIMESTAMP)).lt_eq(secs(5))]);
    assert_eq!(p.end_ms, 5999);
    // Mixed literal types make DataFusion cast the column to a decimal.
    let dec = |x| lit(ScalarValue::Decimal128(Some(x), 20, 0));
    let as_dec = Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(col(COL_SERIES_ID)),
        arrow::datatypes::DataType::Decimal128(20, 0),
    ));
    let p = Pushdown::from_filters(&[as_dec.in_list(vec![dec(u64::MAX as i128), dec(1)], false)]);
    assert_eq!(p.ids, Some(BTreeSet::from([u64::MAX, 1])));
    // OR, NOT BETWEEN and other columns push nothing.
    for f in [
        col(COL_TIMESTAMP).gt(ts(5)).or(col(COL_VALUE).gt(lit(1.0))),
        col(COL_TIMESTAMP).not_between(ts(1), ts(2)),
        col(COL_VALUE).gt(lit(3.0)),
    ] {
        assert_eq!(Pushdown::from_filters(&[f]), Pushdown::default());
    }
}

#[test]
fn ids_and_names_intersect() {
    let p = Pushdown::from_filters(&[
        col(COL_SERIES_ID).in_list(vec![lit(1u64), lit(2u64), lit(3u64)], false),
        col(COL_SERIES_ID).eq(lit(2u64)),
        col(COL_METRIC_NAME).in_list(vec![lit("up"), lit("a.b")], false),
    ]);
    assert_eq!(p.ids, Some(BTreeSet::from([2])));
    assert_eq!(
        p.names,
        Some(BTreeSet::from(["up".to_string(), "a.b".to_string()]))
    );
    assert!(!p.is_empty());
    // Regex special characters in names are escaped.
    let m = p.matchers();
    assert_eq!(m.len(), 1);
    let l = |n: &str| Labels::from_pairs([("__name__", n)]).expect("labels");
    assert!(m[0].matches(&l("a.b")) && m[0].matches(&l("up")) && !m[0].matches(&l("axb")));

    let p = Pushdown::from_filters(&[
        col(COL_METRIC_NAME).eq(lit("a")),
        col(COL_METRIC_NAME).eq(lit("b")),
    ]);
    assert!(p.is_empty());
    // OR chains (short IN lists) unite; an OR with anything else pushes nothing.
    let p = Pushdown::from_filters(&[col(COL_SERIES_ID)
        .eq(lit(5u64))
        .or(col(COL_SERIES_ID).eq(lit(6u64)))
        .or(col(COL_SERIES_ID).eq(lit(7u64)))]);
    assert_eq!(p.ids, Some(BTreeSet::from([5, 6, 7])));
    let p = Pushdown::from_filters(&[col(COL_SERIES_ID)
        .eq(lit(5u64))
        .or(col(COL_METRIC_NAME).eq(lit("x")))]);
    assert_eq!(p, Pushdown::default());
    let p = Pushdown::from_filters(&[col(COL_SERIES_ID).in_list(vec![lit(1u64)], true)]);
    assert_eq!(p.ids, None);
    assert!(
        Pushdown::from_filters(&[col(COL_TIMESTAMP).gt(ts(5)), col(COL_TIMESTAMP).lt(ts(5))])
            .is_empty()
    );
}
