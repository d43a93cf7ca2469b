//! Calendar functions (`year`, `month`, `day_of_week`, ...), in UTC.

use promql_parser::parser::Expr;
use storage::Labels;

use super::EvalError;
use super::eval::Evaluator;
use super::value::{Elem, Val};

/// Returns `None` when `name` is not a calendar function.
pub(crate) fn eval(
    ev: &Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    ts: i64,
) -> Option<Result<Val, EvalError>> {
    let f: fn(&Civil) -> f64 = match name {
        "year" => |c| c.year as f64,
        "month" => |c| c.month as f64,
        "day_of_month" => |c| c.day as f64,
        "day_of_year" => |c| c.day_of_year as f64,
        "day_of_week" => |c| c.weekday as f64,
        "days_in_month" => |c| days_in_month(c.year, c.month) as f64,
        "hour" => |c| c.hour as f64,
        "minute" => |c| c.minute as f64,
        _ => return None,
    };
    Some(apply(ev, f, args, ts))
}

fn apply(
    ev: &Evaluator<'_>,
    f: fn(&Civil) -> f64,
    args: &[Box<Expr>],
    ts: i64,
) -> Result<Val, EvalError> {
    let Some(arg) = args.first() else {
        // No argument means `vector(time())`.
        let v = f(&Civil::from_unix(ts.div_euclid(1000)));
        return Ok(Val::Vector(vec![Elem {
            labels: Labels::empty(),
            h: None,
            v,
            drop_name: false,
        }]));
    };
    let v = ev.eval(arg, ts)?.into_vector()?;
    Ok(Val::Vector(
        v.into_iter()
            // Histogram samples are not timestamps.
            .filter(|e| e.h.is_none())
            .map(|e| {
                let v = if e.v.is_finite() {
                    f(&Civil::from_unix(e.v.trunc() as i64))
                } else {
                    f64::NAN
                };
                Elem {
                    labels: e.labels,
                    h: None,
                    v,
                    drop_name: true,
                }
            })
            .collect(),
    ))
}

struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    weekday: i64,
    day_of_year: i64,
}

impl Civil {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let jan1 = days_from_civil(year, 1, 1);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: (rem % 3600) / 60,
            // 1970-01-01 was a Thursday (4).
            weekday: (days + 4).rem_euclid(7),
            day_of_year: days - jan1 + 1,
        }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let c = Civil::from_unix(0);
        assert_eq!(
            (c.year, c.month, c.day, c.weekday, c.day_of_year),
            (1970, 1, 1, 4, 1)
        );
        // 2024-02-29T13:45:00Z
        let c = Civil::from_unix(1_709_214_300);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (2024, 2, 29, 13, 45)
        );
        assert_eq!(c.day_of_year, 60);
        assert_eq!(days_in_month(2024, 2), 29);
        let c = Civil::from_unix(-1);
        assert_eq!((c.year, c.month, c.day, c.hour), (1969, 12, 31, 23));
    }
}
