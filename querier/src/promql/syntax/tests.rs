use promql_parser::parser::Expr;

use super::*;

/// A range query from 50s to 60s every 5s: `step()` is 5s, `range()` 10s.
const CTX: QueryContext = QueryContext {
    start_ms: 50_000,
    end_ms: 60_000,
    step_ms: 5_000,
};

/// The rewritten text, whitespace runs collapsed.
fn rw(q: &str) -> String {
    rewrite(q, CTX)
        .map(|r| r.text.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("ERR {e}"))
}

fn err(q: &str) -> String {
    match parse(q, CTX) {
        Ok(p) => panic!("{q} parsed as {:?}", p.expr),
        Err(e) => e.to_string(),
    }
}

#[test]
fn standard_queries_pass_through_unchanged() {
    for q in [
        "rate(x[5m])",
        "sum by (job) (rate(x{a=\"[1m+1m]\"}[5m:1m] offset -5m @ start()))",
        "x offset 5m",
        "x[5m:]",
        "sum without (offset, atan2) (x)",
        "'</ >/ smoothed [1m+1m] offset step()' # comment offset (1) </",
        "x{a=`raw </ string`} atan2 y",
    ] {
        let r = rewrite(q, CTX).expect(q);
        assert_eq!(r.text, q);
        assert!(!r.extended, "{q}");
        parse(q, CTX).expect(q);
    }
    // Keywords where an operand belongs are left for promql-parser to judge.
    for q in ["smoothed + anchored", "x + on(smoothed) anchored{a=\"b\"}"] {
        assert_eq!(rw(q), q);
    }
}

#[test]
fn duration_expressions_in_ranges_and_subqueries() {
    assert_eq!(rw("changes(x[26m+4m])"), "changes(x[1800000ms])");
    assert_eq!(rw("changes(x[1800])"), "changes(x[1800000ms])");
    assert_eq!(rw("changes(x[2m*(10+5)])"), "changes(x[1800000ms])");
    assert_eq!(rw("changes(x[24m+((1.5*2m)+2m)])"), "changes(x[1740000ms])");
    assert_eq!(rw("changes(x[-5m+35m])"), "changes(x[1800000ms])");
    assert_eq!(rw("changes(x[1h30m % 1h])"), "changes(x[1800000ms])");
    // `%` binds tighter than `-`.
    assert_eq!(rw("changes(x[30m1s-30m1s % 1m])"), "changes(x[1800000ms])");
    assert_eq!(rw("s(x[29s+1s:5s+5s])"), "s(x[30000ms:10000ms])");
    assert_eq!(rw("s(x[5m:5s+5s])"), "s(x[5m:10000ms])");
    assert_eq!(rw("c(x[step()])"), "c(x[5000ms])");
    assert_eq!(rw("c(x[1+(STep()-5)*2])"), "c(x[1000ms])");
    assert_eq!(rw("c(x[max_of(min_of(step()+1,1h),1ms)])"), "c(x[6000ms])");
    assert_eq!(rw("c(x[range()])"), "c(x[10000ms])");
    // Rounded to the millisecond, not truncated.
    assert_eq!(rw("c(x[0.1*30])"), "c(x[3000ms])");
}

#[test]
fn duration_expressions_in_offsets_take_a_signed_primary() {
    assert_eq!(rw("x offset (100 + 2)"), "x offset 102000ms");
    assert_eq!(rw("x offset 100 + 2"), "x offset 100000ms + 2");
    assert_eq!(rw("x offset 2 ^ 2"), "x offset 2000ms ^ 2");
    assert_eq!(rw("x offset (-2 ^ 2)"), "x offset -4000ms");
    assert_eq!(rw("x offset -step()*2"), "x offset -5000ms*2");
    assert_eq!(
        rw("x offset -(min_of(step(), 2s)-5)+8000"),
        "x offset 3000ms+8000"
    );
    assert_eq!(rw("x offset STEP()"), "x offset 5000ms");
    // Offset zero is no offset (promql-parser refuses `offset 0ms`).
    let instant = QueryContext::instant(50_000);
    let r = rewrite("x offset range()", instant).expect("rewrite");
    assert_eq!(r.text.trim(), "x");
    parse("x offset range()", instant).expect("parse");
    parse("x offset -step()*2", CTX).expect("parse");
}

#[test]
fn malformed_duration_expressions_are_errors() {
    assert!(
        err("x[5m-10m]").contains("must be positive"),
        "{}",
        err("x[5m-10m]")
    );
    assert!(err("x[foo()]").contains("unknown function \"foo\""));
    assert!(err("x[1m+]").contains("invalid duration expression"));
    assert!(err("x[1m 2m]").contains("unexpected token"));
    assert!(err("x offset min_of(1m)").contains("expected ','"));
}

#[test]
fn modifiers_become_markers_on_their_selector() {
    assert_eq!(
        rw("rate(x[1m] anchored)"),
        "rate(x{__strata_syntax__=\"anchored\"}[1m] )"
    );
    assert_eq!(
        rw("x{a=\"b\"} smoothed"),
        "x{a=\"b\",__strata_syntax__=\"smoothed\"}"
    );
    assert_eq!(
        rw("{a=\"b\",} smoothed"),
        "{a=\"b\",__strata_syntax__=\"smoothed\"}"
    );
    assert_eq!(
        rw("x @ 100 SMOOTHED + 0"),
        "x{__strata_syntax__=\"smoothed\"} @ 100 + 0"
    );
    assert_eq!(
        rw("x offset -100 smoothed"),
        "x{__strata_syntax__=\"smoothed\"} offset -100000ms"
    );
}

#[test]
fn parse_records_modifiers_and_strips_markers() {
    let p = parse("rate(x{job=\"a\"}[1m] anchored) + y smoothed", CTX).expect("parse");
    let Expr::Binary(b) = p.expr.as_ref() else {
        panic!("not a binary: {:?}", p.expr)
    };
    let Expr::Call(c) = b.lhs.as_ref() else {
        panic!("lhs: {:?}", b.lhs)
    };
    let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| a.as_ref()) else {
        panic!("arg: {:?}", c.args)
    };
    assert_eq!(p.ext.selector_mod(&ms.vs), Some(SelectorMod::Anchored));
    assert_eq!(ms.vs.matchers.matchers.len(), 1);
    assert!(ms.vs.matchers.matchers.iter().all(|m| m.name == "job"));
    let Expr::VectorSelector(vs) = b.rhs.as_ref() else {
        panic!("rhs: {:?}", b.rhs)
    };
    assert_eq!(p.ext.selector_mod(vs), Some(SelectorMod::Smoothed));
    assert!(vs.matchers.matchers.is_empty());
    // A selector without modifier has none.
    let p = parse("rate(x[1m])", CTX).expect("parse");
    let Expr::Call(c) = p.expr.as_ref() else {
        panic!()
    };
    let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| a.as_ref()) else {
        panic!()
    };
    assert_eq!(p.ext.selector_mod(&ms.vs), None);
}

#[test]
fn misplaced_modifiers_are_errors() {
    assert_eq!(
        err("deriv(foo[3m] smoothed)"),
        "smoothed modifier can only be used with: delta, increase, rate - not with deriv"
    );
    assert_eq!(
        err("max_over_time(foo[3m] anchored)"),
        "anchored modifier can only be used with: changes, delta, increase, rate, resets - not with max_over_time"
    );
    assert!(err("rate(x[1m]) smoothed").contains("must follow a vector or range selector"));
    assert!(err("rate(x[5m:1m] anchored)").contains("must follow a vector or range selector"));
    assert!(err("1 anchored").contains("must follow a vector or range selector"));
    parse("resets(foo[3m] anchored)", CTX).expect("anchored resets");
}

#[test]
fn trim_operators_are_atan2_nodes_marked_as_trims() {
    let r = rewrite("h </ 5", CTX).expect("rewrite");
    assert_eq!(rw("h </ 5"), "h atan2 5");
    assert_eq!(r.atan2, vec![Some(Trim::Upper)]);
    // A real atan2 next to a trim: the ordinal tells them apart.
    let p = parse("a atan2 b >/ c", CTX).expect("parse");
    let Expr::Binary(root) = p.expr.as_ref() else {
        panic!()
    };
    assert_eq!(p.ext.trim(root), Some(Trim::Lower));
    let Expr::Binary(inner) = root.lhs.as_ref() else {
        panic!()
    };
    assert_eq!(p.ext.trim(inner), None);
    let p = parse("a </ b atan2 c", CTX).expect("parse");
    let Expr::Binary(root) = p.expr.as_ref() else {
        panic!()
    };
    assert_eq!(p.ext.trim(root), None);
    let Expr::Binary(inner) = root.lhs.as_ref() else {
        panic!()
    };
    assert_eq!(p.ext.trim(inner), Some(Trim::Upper));
    // Same precedence as `*`: binds tighter than `+`.
    let p = parse("h_test >/ -Inf + 1", CTX).expect("parse");
    let Expr::Binary(root) = p.expr.as_ref() else {
        panic!()
    };
    assert_eq!(root.op.to_string(), "+");
}

#[test]
fn info_selectors_may_match_the_empty_string() {
    let p = parse("info(metric, {data=~\".*\"})", CTX).expect("parse");
    let Expr::Call(c) = p.expr.as_ref() else {
        panic!()
    };
    let Some(Expr::VectorSelector(vs)) = c.args.args.get(1).map(|a| a.as_ref()) else {
        panic!()
    };
    let names: Vec<&str> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["data"]);
    // Elsewhere the rule stands.
    assert!(err("abs({data=~\".*\"})").contains("at least one non-empty matcher"));
    assert!(err("{data=~\".*\"}").contains("at least one non-empty matcher"));
}

#[test]
fn the_reserved_marker_cannot_be_injected() {
    for q in [
        "x{__strata_syntax__=\"anchored\"}",
        "rate(x{__STRATA_SYNTAX__=\"smoothed\"}[1m])",
        "{\"__strata_syntax__\"=\"smoothed\", __name__=\"x\"}",
        "label_replace(x, \"__strata_syntax__\", \"anchored\", \"\", \"\")",
    ] {
        assert!(err(q).contains("is reserved"), "{q}: {}", err(q));
    }
}

#[test]
fn broken_input_is_an_error_never_a_panic() {
    for q in [
        "",
        "[",
        "x[",
        "x[1m",
        "x offset",
        "x offset (",
        "x offset -",
        "x offset min_of(",
        "info(",
        "info(x, {",
        "</",
        "x </",
        "x smoothed smoothed",
        "x[1m:step(]",
        "x[1m:]]",
        "\"unterminated",
        "x{a=\"\\",
        "x[9999999999999999999999y]",
        "x offset 1e300",
        "x[0x7fffffffffffffff]",
        "métrique[1m+1m]",
        "x{a=\"é\"}[1m+1m] smoothed",
        "x @",
        "x @ start(",
        "{} anchored",
    ] {
        let _ = parse(q, CTX);
    }
    // Non-ASCII inside strings is fine next to extended syntax.
    let p = parse("rate(x{a=\"é[1m+1m]\"}[1m+1m] anchored)", CTX).expect("parse");
    assert!(format!("{:?}", p.expr).contains("é[1m+1m]"));
}
