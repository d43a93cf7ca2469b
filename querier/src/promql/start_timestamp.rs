//! The experimental `start_timestamp(v)` function: the start time (the time
//! a cumulative counter last started counting, or a delta's interval began)
//! of each sample a plain selector reads, in seconds.
//!
//! Start timestamps travel with samples, so only a selector argument has
//! them; any other expression (`start_timestamp(x * 1)`, a function result)
//! has lost them and gives an empty vector, as in Prometheus.
//!
//! Strata does not store start timestamps yet (neither remote write 2's
//! created timestamps nor OTLP start times reach the segments), so every
//! stored sample's start is unknown, which PromQL spells as 0. When storage
//! keeps them, this is the one place that has to read them.

use promql_parser::parser::Expr;

use super::EvalError;
use super::eval::Evaluator;
use super::selectors::select_instant;
use super::value::{Elem, Val};

/// Start time of a sample whose start is not known.
const UNKNOWN_START: f64 = 0.0;

pub(crate) fn eval(ev: &Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Val, EvalError> {
    let arg = args
        .first()
        .ok_or_else(|| EvalError::Parse("missing argument to start_timestamp".into()))?;
    let Expr::VectorSelector(vs) = unwrap_parens(arg) else {
        // Evaluated for its errors; its samples carry no start times.
        ev.eval(arg, ts)?.into_vector()?;
        return Ok(Val::Vector(Vec::new()));
    };
    let t = ev.ref_time(&vs.at, &vs.offset, ts);
    let series = ev.loaded.series(vs)?;
    Ok(Val::Vector(
        select_instant(series, t, ev.lookback)
            .into_iter()
            .map(|(e, _)| Elem {
                labels: e.labels,
                h: None,
                v: UNKNOWN_START,
                drop_name: true,
            })
            .collect(),
    ))
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}
