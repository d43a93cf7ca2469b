//! The trim operators `</` and `>/` (parsed by the syntax front end as
//! `atan2` nodes it marks): `h </ x` keeps the observations of each native
//! histogram below `x`, `h >/ x` those above.

use promql_parser::parser::BinaryExpr;

use super::EvalError;
use super::eval::Evaluator;
use super::syntax::Trim;
use super::value::Val;

pub(crate) fn eval(
    _ev: &Evaluator<'_>,
    _b: &BinaryExpr,
    t: Trim,
    _ts: i64,
) -> Result<Val, EvalError> {
    Err(EvalError::Unsupported(format!(
        "the trim operator {} on native histograms",
        match t {
            Trim::Upper => "</",
            Trim::Lower => ">/",
        }
    )))
}
