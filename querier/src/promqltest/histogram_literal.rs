//! The native histogram notation of promqltest scripts:
//! `{{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 1]
//! offset:0 n_buckets:[..] n_offset:0 custom_values:[..]
//! counter_reset_hint:gauge}}`, every field optional, and its text form
//! for messages.

use crate::promql::native_histogram::{FloatHistogram, ResetHint};

use super::parser::parse_number;

/// Parses one `{{...}}` literal.
pub fn parse(text: &str) -> Result<FloatHistogram, String> {
    let inner = text
        .trim()
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .ok_or_else(|| format!("not a histogram literal: {text:?}"))?;
    let mut h = FloatHistogram::default();
    let (mut buckets, mut n_buckets) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("expected key:value in {text:?}"))?;
        let key = rest[..colon].trim();
        let after = rest[colon + 1..].trim_start();
        let (value, next) = if after.starts_with('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unterminated list in {text:?}"))?;
            (&after[..=end], &after[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        rest = next.trim_start();
        let num = || parse_number(value).ok_or_else(|| format!("invalid {key} {value:?}"));
        let int = || -> Result<i32, String> {
            let v = num()?;
            if v.fract() != 0.0 || v.abs() > f64::from(i32::MAX) {
                return Err(format!("{key} must be an integer, got {value:?}"));
            }
            Ok(v as i32)
        };
        let list = || -> Result<Vec<f64>, String> {
            value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split_whitespace()
                .map(|x| parse_number(x).ok_or_else(|| format!("invalid {key} value {x:?}")))
                .collect()
        };
        match key {
            "schema" => h.schema = int()?,
            "sum" => h.sum = num()?,
            "count" => h.count = num()?,
            "z_bucket" => h.zero_count = num()?,
            "z_bucket_w" => h.zero_threshold = num()?,
            "buckets" => buckets = list()?,
            "n_buckets" => n_buckets = list()?,
            "offset" => offset = int()?,
            "n_offset" => n_offset = int()?,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                h.hint = match value {
                    "unknown" => ResetHint::Unknown,
                    "reset" => ResetHint::Reset,
                    "not_reset" => ResetHint::NotReset,
                    "gauge" => ResetHint::Gauge,
                    other => return Err(format!("unknown counter_reset_hint {other:?}")),
                }
            }
            other => return Err(format!("unknown histogram field {other:?} in {text:?}")),
        }
    }
    h.positive = index(offset, &buckets);
    h.negative = index(n_offset, &n_buckets);
    Ok(h)
}

fn index(offset: i32, counts: &[f64]) -> Vec<(i32, f64)> {
    counts
        .iter()
        .enumerate()
        .map(|(i, c)| (offset.saturating_add(i as i32), *c))
        .collect()
}

/// The values of a histogram item: `{{a}}` (one), `{{a}}xN` (N+1 copies),
/// `{{a}}+{{b}}xN` / `{{a}}-{{b}}xN` (a, a±b, a±2b, ...).
pub fn expand(item: &str) -> Result<Vec<FloatHistogram>, String> {
    let end = item
        .find("}}")
        .ok_or_else(|| format!("unterminated histogram literal {item:?}"))?;
    let first = parse(&item[..end + 2])?;
    let rest = &item[end + 2..];
    if rest.is_empty() {
        return Ok(vec![first]);
    }
    let times = |s: &str| -> Result<usize, String> {
        s.strip_prefix('x')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| format!("invalid histogram item {item:?}"))
    };
    let Some(sign) = rest.chars().next().filter(|c| matches!(c, '+' | '-')) else {
        let n = times(rest)?;
        return Ok(vec![first; n + 1]);
    };
    let r = &rest[1..];
    let e2 = r
        .find("}}")
        .ok_or_else(|| format!("unterminated histogram literal {item:?}"))?;
    let inc = parse(&r[..e2 + 2])?;
    let n = times(&r[e2 + 2..])?;
    let mut out = Vec::with_capacity(n + 1);
    let mut cur = first;
    out.push(cur.clone());
    for _ in 0..n {
        if cur.schema > inc.schema {
            return Err(format!(
                "error combining histograms: cannot merge from schema {} to {}",
                inc.schema, cur.schema
            ));
        }
        cur = if sign == '+' {
            cur.add(&inc)
        } else {
            cur.sub(&inc)
        }
        .map_err(|_| format!("incompatible histograms in {item:?}"))?;
        out.push(cur.clone());
    }
    Ok(out)
}

/// The notation of a histogram (for messages).
pub fn text(h: &FloatHistogram) -> String {
    let list = |b: &[(i32, f64)]| {
        let v: Vec<String> = b.iter().map(|x| x.1.to_string()).collect();
        format!("[{}]", v.join(" "))
    };
    let mut parts = vec![
        format!("schema:{}", h.schema),
        format!("count:{}", h.count),
        format!("sum:{}", h.sum),
    ];
    if h.zero_count != 0.0 || h.zero_threshold != 0.0 {
        parts.push(format!("z_bucket:{}", h.zero_count));
        parts.push(format!("z_bucket_w:{}", h.zero_threshold));
    }
    // Bucket lists are shown densely from the first bucket.
    let dense = |b: &[(i32, f64)]| -> Option<(i32, Vec<(i32, f64)>)> {
        let first = b.first()?.0;
        let last = b.last()?.0;
        let mut out: Vec<(i32, f64)> = (first..=last).map(|i| (i, 0.0)).collect();
        for &(i, c) in b {
            if let Some(x) = out.get_mut((i - first) as usize) {
                x.1 += c;
            }
        }
        Some((first, out))
    };
    if let Some((o, d)) = dense(&h.positive) {
        parts.push(format!("offset:{o}"));
        parts.push(format!("buckets:{}", list(&d)));
    }
    if let Some((o, d)) = dense(&h.negative) {
        parts.push(format!("n_offset:{o}"));
        parts.push(format!("n_buckets:{}", list(&d)));
    }
    if !h.custom_values.is_empty() {
        let v: Vec<String> = h.custom_values.iter().map(|x| x.to_string()).collect();
        parts.push(format!("custom_values:[{}]", v.join(" ")));
    }
    format!("{{{{{}}}}}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_fields() {
        let h = parse("{{schema:1 count:12 sum:18.4 z_bucket:2 z_bucket_w:0.001 buckets:[1 2 0] offset:-1 n_buckets:[3] counter_reset_hint:gauge}}")
            .expect("parse");
        assert_eq!(h.schema, 1);
        assert_eq!(
            (h.count, h.sum, h.zero_count, h.zero_threshold),
            (12.0, 18.4, 2.0, 0.001)
        );
        assert_eq!(h.positive, vec![(-1, 1.0), (0, 2.0), (1, 0.0)]);
        assert_eq!(h.negative, vec![(0, 3.0)]);
        assert_eq!(h.hint, ResetHint::Gauge);
        assert_eq!(parse("{{}}").expect("empty"), FloatHistogram::default());
        let c = parse("{{schema:-53 custom_values:[-2 3] buckets:[1 ]}}").expect("custom");
        assert_eq!(c.custom_values, vec![-2.0, 3.0]);
        assert!(parse("{{bogus:1}}").is_err());
        assert!(parse("{{schema:1.5}}").is_err());
    }

    #[test]
    fn series_items_accumulate() {
        let v = expand(
            "{{schema:0 sum:4 count:4 buckets:[1 2 1]}}+{{sum:2 count:1 buckets:[1] offset:1}}x2",
        )
        .expect("expand");
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].count, 6.0);
        assert_eq!(v[2].positive, vec![(0, 1.0), (1, 4.0), (2, 1.0)]);
        assert_eq!(expand("{{sum:1}}x2").expect("copies").len(), 3);
        let d = expand("{{count:5}}-{{count:1}}x1").expect("sub");
        assert_eq!(d[1].count, 4.0);
        // The increment may not have a coarser schema than the base.
        assert!(expand("{{schema:1}}+{{schema:0}}x1").is_err());
    }
}
