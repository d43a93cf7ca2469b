//! Function calls: dispatch, and the functions over instant vectors,
//! scalars and labels. Range-vector functions live in `range_functions`,
//! classic histogram functions in `histogram`.

use std::cmp::Ordering;

use super::syntax::strings::check_label_name;
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use regex::Regex;
use storage::{Label, Labels, METRIC_NAME};

use super::EvalError;
use super::eval::Evaluator;
use super::selectors::select_instant;
use super::value::{Elem, Val, check_unique, labels_from};
use super::{histogram, info, range_functions, start_timestamp, time_functions};

pub(crate) fn eval(ev: &Evaluator<'_>, call: &Call, ts: i64) -> Result<Val, EvalError> {
    let name = call.func.name;
    let args = &call.args.args;
    if name == "info" {
        return info::eval(ev, call, ts);
    }
    if name == "start_timestamp" {
        return start_timestamp::eval(ev, args, ts);
    }
    if let Some(r) = range_functions::eval(ev, name, args, ts) {
        return r;
    }
    if let Some(r) = time_functions::eval(ev, name, args, ts) {
        return r;
    }
    if let Some(r) = histogram::eval(ev, name, args, ts) {
        return r;
    }
    let arg = |i: usize| -> Result<Val, EvalError> {
        let e = args
            .get(i)
            .ok_or_else(|| EvalError::Parse(format!("missing argument {} to {name}", i + 1)))?;
        ev.eval(e, ts)
    };
    let vector = |i: usize| arg(i)?.into_vector();
    let scalar = |i: usize| arg(i)?.into_scalar();
    let string = |i: usize| arg(i)?.into_string();
    let math = |f: fn(f64) -> f64| -> Result<Val, EvalError> { Ok(map_values(vector(0)?, f)) };
    match name {
        "abs" => math(f64::abs),
        "ceil" => math(f64::ceil),
        "floor" => math(f64::floor),
        "exp" => math(f64::exp),
        "ln" => math(f64::ln),
        "log2" => math(f64::log2),
        "log10" => math(f64::log10),
        "sqrt" => math(f64::sqrt),
        "sgn" => math(|v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        "acos" => math(f64::acos),
        "acosh" => math(f64::acosh),
        "asin" => math(f64::asin),
        "asinh" => math(f64::asinh),
        "atan" => math(f64::atan),
        "atanh" => math(f64::atanh),
        "cos" => math(f64::cos),
        "cosh" => math(f64::cosh),
        "sin" => math(f64::sin),
        "sinh" => math(f64::sinh),
        "tan" => math(f64::tan),
        "tanh" => math(f64::tanh),
        "deg" => math(|v| v * 180.0 / std::f64::consts::PI),
        "rad" => math(|v| v * std::f64::consts::PI / 180.0),
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "round" => {
            let v = vector(0)?;
            let to_nearest = if args.len() > 1 { scalar(1)? } else { 1.0 };
            let inv = 1.0 / to_nearest;
            Ok(map_values(v, move |x| (x * inv + 0.5).floor() / inv))
        }
        "clamp" => {
            let v = vector(0)?;
            let (lo, hi) = (scalar(1)?, scalar(2)?);
            if hi < lo {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(map_values(v, move |x| go_max(lo, go_min(hi, x))))
        }
        "clamp_min" => {
            let v = vector(0)?;
            let lo = scalar(1)?;
            Ok(map_values(v, move |x| go_max(lo, x)))
        }
        "clamp_max" => {
            let v = vector(0)?;
            let hi = scalar(1)?;
            Ok(map_values(v, move |x| go_min(hi, x)))
        }
        "time" => Ok(Val::Scalar(ts as f64 / 1000.0)),
        "step" => Ok(Val::Scalar(ev.step as f64 / 1000.0)),
        "range" => Ok(Val::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "start" => Ok(Val::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Val::Scalar(ev.end as f64 / 1000.0)),
        "min_of" => Ok(Val::Scalar(go_min(scalar(0)?, scalar(1)?))),
        "max_of" => Ok(Val::Scalar(go_max(scalar(0)?, scalar(1)?))),
        "vector" => Ok(Val::Vector(vec![Elem {
            labels: Labels::empty(),
            h: None,
            v: scalar(0)?,
            drop_name: false,
        }])),
        "scalar" => {
            // Histogram samples do not count.
            let v: Vec<Elem> = vector(0)?.into_iter().filter(|e| e.h.is_none()).collect();
            Ok(Val::Scalar(match v.as_slice() {
                [only] => only.v,
                _ => f64::NAN,
            }))
        }
        "timestamp" => timestamp(ev, args.first().map(|a| a.as_ref()), ts),
        "absent" => {
            let v = vector(0)?;
            Ok(Val::Vector(absent(
                v.is_empty(),
                args.first().map(|a| a.as_ref()),
            )))
        }
        "absent_over_time" => {
            let arg = args.first().map(|a| a.as_ref());
            let w = range_functions::window(
                ev,
                arg.ok_or_else(|| EvalError::Parse("missing argument".into()))?,
                ts,
            )?;
            Ok(Val::Vector(absent(w.series.is_empty(), arg)))
        }
        "sort" => Ok(Val::Vector(sort_by_value(vector(0)?, false))),
        "sort_desc" => Ok(Val::Vector(sort_by_value(vector(0)?, true))),
        "sort_by_label" | "sort_by_label_desc" => {
            let v = vector(0)?;
            let names = (1..args.len()).map(string).collect::<Result<Vec<_>, _>>()?;
            Ok(Val::Vector(sort_by_label(
                v,
                &names,
                name == "sort_by_label_desc",
            )))
        }
        "label_replace" => label_replace(
            vector(0)?,
            &string(1)?,
            &string(2)?,
            &string(3)?,
            &string(4)?,
        ),
        "label_join" => {
            let v = vector(0)?;
            let (dst, sep) = (string(1)?, string(2)?);
            let srcs = (3..args.len()).map(string).collect::<Result<Vec<_>, _>>()?;
            label_join(v, &dst, &sep, &srcs)
        }
        other => Err(EvalError::Unsupported(format!("function {other}"))),
    }
}

/// Applies `f` to every float value; the result no longer is the named
/// metric. Native histogram samples are dropped (Prometheus' math functions
/// are not defined for them).
fn map_values(v: Vec<Elem>, f: impl Fn(f64) -> f64) -> Val {
    Val::Vector(
        v.into_iter()
            .filter(|e| e.h.is_none())
            .map(|e| Elem {
                labels: e.labels,
                h: None,
                v: f(e.v),
                drop_name: true,
            })
            .collect(),
    )
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// `timestamp(v)`: for a plain selector, the time of each selected sample;
/// otherwise the evaluation time.
fn timestamp(ev: &Evaluator<'_>, arg: Option<&Expr>, ts: i64) -> Result<Val, EvalError> {
    let arg = arg.ok_or_else(|| EvalError::Parse("missing argument to timestamp".into()))?;
    if let Expr::VectorSelector(vs) = unwrap_parens(arg) {
        let t = ev.ref_time(&vs.at, &vs.offset, ts);
        let series = ev.loaded.series(vs)?;
        let out = select_instant(series, t, ev.lookback)
            .into_iter()
            .map(|(e, st)| Elem {
                labels: e.labels,
                h: None,
                v: st as f64 / 1000.0,
                drop_name: true,
            })
            .collect();
        return Ok(Val::Vector(out));
    }
    let v = ev.eval(arg, ts)?.into_vector()?;
    Ok(Val::Vector(
        v.into_iter()
            .map(|e| Elem {
                labels: e.labels,
                h: None,
                v: ts as f64 / 1000.0,
                drop_name: true,
            })
            .collect(),
    ))
}

/// `absent`/`absent_over_time`: 1 with the labels the selector's equality
/// matchers pin down, when the argument is empty.
fn absent(empty: bool, arg: Option<&Expr>) -> Vec<Elem> {
    if !empty {
        return Vec::new();
    }
    let matchers = match arg.map(unwrap_parens) {
        Some(Expr::VectorSelector(vs)) => vs.matchers.matchers.as_slice(),
        Some(Expr::MatrixSelector(ms)) => ms.vs.matchers.matchers.as_slice(),
        _ => &[],
    };
    let mut set: Vec<Label> = Vec::new();
    let mut dup: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !set.iter().any(|l| l.name == m.name) {
            set.push(Label::new(m.name.clone(), m.value.clone()));
        } else {
            dup.push(&m.name);
        }
    }
    set.retain(|l| !dup.contains(&l.name.as_str()));
    vec![Elem {
        labels: labels_from(set),
        h: None,
        v: 1.0,
        drop_name: false,
    }]
}

/// `sort`/`sort_desc`: by value, NaN last either way.
fn sort_by_value(mut v: Vec<Elem>, desc: bool) -> Vec<Elem> {
    v.retain(|e| e.h.is_none());
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.v.total_cmp(&a.v),
        _ => a.v.total_cmp(&b.v),
    });
    v
}

fn sort_by_label(mut v: Vec<Elem>, names: &[String], desc: bool) -> Vec<Elem> {
    v.sort_by(|a, b| {
        let ord = names
            .iter()
            .map(|n| natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or("")))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| a.labels.cmp(&b.labels));
        if desc { ord.reverse() } else { ord }
    });
    v
}

/// Natural order: runs of digits compare by numeric value.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.chars().next(), y.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let xe = x.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(x.len());
                let ye = y.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(y.len());
                let (xn, yn) = (
                    x[..xe].trim_start_matches('0'),
                    y[..ye].trim_start_matches('0'),
                );
                let ord = xn.len().cmp(&yn.len()).then_with(|| xn.cmp(yn));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[xe..];
                y = &y[ye..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(&d);
                }
                x = &x[c.len_utf8()..];
                y = &y[d.len_utf8()..];
            }
        }
    }
}

fn check_dst(dst: &str, func: &str) -> Result<(), EvalError> {
    check_label_name(dst).map_err(|quoted| {
        EvalError::Execution(format!(
            "invalid destination label name in {func}(): {quoted}"
        ))
    })
}

fn label_replace(
    v: Vec<Elem>,
    dst: &str,
    repl: &str,
    src: &str,
    re: &str,
) -> Result<Val, EvalError> {
    let regex = Regex::new(&format!("^(?s:{re})$")).map_err(|_| {
        EvalError::Execution(format!(
            "invalid regular expression in label_replace(): {re}"
        ))
    })?;
    check_dst(dst, "label_replace")?;
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let value = e.labels.get(src).unwrap_or("");
        if let Some(caps) = regex.captures(value) {
            let mut res = String::new();
            caps.expand(repl, &mut res);
            e.labels = e.labels.with(dst, &res);
            if dst == METRIC_NAME {
                e.drop_name = false;
            }
        }
        out.push(e);
    }
    check_unique(out.iter().map(|e| &e.labels))?;
    Ok(Val::Vector(out))
}

fn label_join(v: Vec<Elem>, dst: &str, sep: &str, srcs: &[String]) -> Result<Val, EvalError> {
    check_dst(dst, "label_join")?;
    for s in srcs {
        if let Err(quoted) = check_label_name(s) {
            return Err(EvalError::Execution(format!(
                "invalid source label name in label_join(): {quoted}"
            )));
        }
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
        e.labels = e.labels.with(dst, &joined.join(sep));
        if dst == METRIC_NAME {
            e.drop_name = false;
        }
        out.push(e);
    }
    check_unique(out.iter().map(|e| &e.labels))?;
    Ok(Val::Vector(out))
}
