//! Parser of Prometheus' promqltest script language.
//!
//! A script is a sequence of commands separated by blank lines (lines are
//! trimmed, lines starting with `#` count as blank):
//!
//! * `clear` — drop all data.
//! * `load <step>` / `load_with_nhcb <step>` followed by series lines
//!   `metric{labels} <values>`; the n-th value is at `n * step` from time 0.
//!   Lines `metric{labels}@st <offsets>` (start timestamps) are parsed and ignored.
//! * `eval instant at <time> <expr>` or `eval range from <t> to <t> step <d> <expr>`
//!   (old forms `eval_fail`, `eval_warn`, `eval_info`, `eval_ordered` too),
//!   followed by `expect ...` lines and the expected result: a bare number (scalar)
//!   or series lines `metric{labels} <values>`.
//!
//! Values use the expanding notation of Prometheus' `ParseSeriesDesc`: `_`
//! (missing), `_xN` (N missing), `v` (one value), `vxN` (N+1 copies),
//! `a+bxN` / `a-bxN` (N+1 values a, a+b, ...; repeated addition as Prometheus
//! does), `stale` (stale marker), `Inf`/`-Inf`/`NaN`, hex integers, and native
//! histograms `{{...}}` (with `xN` and `{{..}}+{{..}}xN`, see `histogram_literal`).
//!
//! A malformed command never aborts the file: it becomes [`Cmd::Invalid`] and
//! parsing resumes at the next blank line.

use std::sync::LazyLock;

use regex::Regex;
use storage::{Label, Labels, METRIC_NAME};

use super::histogram_literal;
use crate::promql::native_histogram::FloatHistogram;

/// Bit pattern of Prometheus' stale marker.
pub fn stale_nan() -> f64 {
    f64::from_bits(storage::STALE_NAN_BITS)
}

/// One position of a value sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// `_`: no sample at this position.
    Missing,
    Float(f64),
    /// A native histogram value (from a `{{...}}` literal).
    Histogram(Box<FloatHistogram>),
}

/// A series line of a `load` or of an expected result.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDef {
    pub labels: Labels,
    pub points: Vec<Point>,
    /// 1-based line number in the file.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub line: usize,
    pub step_ms: i64,
    /// `load_with_nhcb`: classic histograms are also to be loaded as native
    /// histograms with custom buckets.
    pub with_nhcb: bool,
    pub series: Vec<SeriesDef>,
    /// Number of `@st` (start timestamp) lines that were ignored.
    pub ignored_st_lines: usize,
}

impl Load {
    /// Whether any loaded value is a native histogram.
    pub fn has_histograms(&self) -> bool {
        self.series
            .iter()
            .any(|s| s.points.iter().any(|p| matches!(p, Point::Histogram(_))))
    }
}

/// How an expected failure's message must look.
#[derive(Clone, Debug, PartialEq)]
pub enum FailMatch {
    Any,
    /// Exact message (trimmed).
    Message(String),
    /// Unanchored regular expression.
    Regex(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EvalKind {
    Instant {
        at_ms: i64,
    },
    Range {
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// A bare number: the query must return a scalar.
    Scalar(f64),
    /// Series (possibly none); `pos` is the 1-based position among them.
    Series(Vec<SeriesDef>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Eval {
    pub line: usize,
    pub expr: String,
    pub kind: EvalKind,
    pub fail: Option<FailMatch>,
    pub ordered: bool,
    /// `expect warn/info/no_warn/no_info` lines and `eval_warn`/`eval_info`,
    /// as written (checked by [`super::annotations`]).
    pub annotations: Vec<String>,
    /// `expect string "..."`.
    pub expect_string: Option<String>,
    /// `expect range vector from .. to .. step ..` (instant evals returning a
    /// range vector): start, end, step in ms. The eval time becomes `end`.
    pub range_vector: Option<(i64, i64, i64)>,
    pub expected: Expected,
    /// Whether an expected line holds a native histogram.
    pub expects_histogram: bool,
}

impl Eval {
    /// The instant evaluation time (for instant evals).
    pub fn eval_time_ms(&self) -> Option<i64> {
        match (self.kind, self.range_vector) {
            (EvalKind::Instant { .. }, Some((_, end, _))) => Some(end),
            (EvalKind::Instant { at_ms }, None) => Some(at_ms),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    Load,
    Eval,
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Cmd {
    Clear {
        line: usize,
    },
    Load(Load),
    Eval(Box<Eval>),
    /// A command that does not parse.
    Invalid {
        line: usize,
        kind: InvalidKind,
        /// For an invalid eval: its query text if it could be found.
        expr: String,
        /// Whether the block's text holds `{{` (tiering of an invalid eval).
        mentions_histogram: bool,
        msg: String,
    },
}

/// A parse error at a 1-based line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.msg)
    }
}

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        msg: msg.into(),
    })
}

static RE_LOAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").expect("static regex"));
static RE_EVAL_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
        .expect("static regex")
});
static RE_EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .expect("static regex")
});
static RE_EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
        .expect("static regex")
});
static RE_EXPECT_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
        .expect("static regex")
});

/// Parses a whole script. Never fails: malformed commands become [`Cmd::Invalid`].
pub fn parse_script(input: &str) -> Vec<Cmd> {
    let lines: Vec<&str> = input
        .split('\n')
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') { "" } else { t }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].is_empty() {
            i += 1;
            continue;
        }
        let word = lines[i]
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let line_no = i + 1;
        if word == "clear" {
            // A one-line command: the next line may start another command.
            cmds.push(Cmd::Clear { line: line_no });
            i += 1;
            continue;
        }
        // The block: this line and the following non-blank lines.
        let mut end = i + 1;
        while end < lines.len() && !lines[end].is_empty() {
            end += 1;
        }
        let block = &lines[i..end];
        if word.starts_with("load") {
            match parse_load(block, line_no) {
                Ok(l) => cmds.push(Cmd::Load(l)),
                Err(e) => cmds.push(invalid(block, e.line, InvalidKind::Load, "", e.msg)),
            }
        } else if word.starts_with("eval") {
            match parse_eval(block, line_no) {
                Ok(e) => cmds.push(Cmd::Eval(Box::new(e))),
                Err(e) => {
                    let expr = eval_expr_text(lines[i]);
                    cmds.push(invalid(block, e.line, InvalidKind::Eval, &expr, e.msg));
                }
            }
        } else {
            cmds.push(invalid(
                block,
                line_no,
                InvalidKind::Other,
                "",
                format!("invalid command {:?}", lines[i]),
            ));
        }
        i = end;
    }
    cmds
}

fn invalid(block: &[&str], line: usize, kind: InvalidKind, expr: &str, msg: String) -> Cmd {
    Cmd::Invalid {
        line,
        kind,
        expr: expr.to_string(),
        mentions_histogram: block.iter().any(|l| l.contains("{{")),
        msg,
    }
}

/// Best-effort query text of an eval line that did not parse.
fn eval_expr_text(line: &str) -> String {
    if let Some(c) = RE_EVAL_INSTANT.captures(line) {
        return c.get(3).map_or("", |m| m.as_str()).to_string();
    }
    if let Some(c) = RE_EVAL_RANGE.captures(line) {
        return c.get(5).map_or("", |m| m.as_str()).to_string();
    }
    line.to_string()
}

fn parse_load(block: &[&str], line_no: usize) -> Result<Load, ParseError> {
    let Some(c) = RE_LOAD.captures(block[0]) else {
        return err(
            line_no,
            "invalid load command (load[_with_nhcb] <step:duration>)",
        );
    };
    let with_nhcb = c.get(1).is_some();
    let step_s = c.get(2).map_or("", |m| m.as_str());
    let step_ms = parse_duration_ms(step_s).map_err(|e| ParseError {
        line: line_no,
        msg: format!("invalid step {step_s:?}: {e}"),
    })?;
    let mut load = Load {
        line: line_no,
        step_ms,
        with_nhcb,
        series: Vec::new(),
        ignored_st_lines: 0,
    };
    for (k, l) in block.iter().enumerate().skip(1) {
        let ln = line_no + k;
        if is_st_line(l) {
            load.ignored_st_lines += 1;
            continue;
        }
        let (labels, points) = parse_series_line(l).map_err(|msg| ParseError { line: ln, msg })?;
        // A later definition of the same series replaces the earlier one.
        load.series.retain(|s| s.labels != labels);
        load.series.push(SeriesDef {
            labels,
            points,
            line: ln,
        });
    }
    Ok(load)
}

/// `metric{..}@st <offsets>` or `@st <offsets>`.
fn is_st_line(l: &str) -> bool {
    let first = l.split([' ', '\t']).next().unwrap_or("");
    first.ends_with("@st") && l.len() > first.len()
}

fn parse_eval(block: &[&str], line_no: usize) -> Result<Eval, ParseError> {
    let head = block[0];
    let (modifier, expr, kind) = if let Some(c) = RE_EVAL_INSTANT.captures(head) {
        let at = c.get(2).map_or("", |m| m.as_str());
        let at_ms = parse_duration_ms(at).map_err(|e| ParseError {
            line: line_no,
            msg: format!("invalid timestamp {at:?}: {e}"),
        })?;
        (
            c.get(1).map(|m| m.as_str()),
            c.get(3).map_or("", |m| m.as_str()),
            EvalKind::Instant { at_ms },
        )
    } else if let Some(c) = RE_EVAL_RANGE.captures(head) {
        let g = |n| c.get(n).map_or("", |m: regex::Match<'_>| m.as_str());
        let (start_ms, end_ms, step_ms) =
            parse_range(g(2), g(3), g(4)).map_err(|msg| ParseError { line: line_no, msg })?;
        (
            c.get(1).map(|m| m.as_str()),
            g(5),
            EvalKind::Range {
                start_ms,
                end_ms,
                step_ms,
            },
        )
    } else {
        return err(
            line_no,
            "invalid eval command: expected 'eval[_fail|_warn|_info|_ordered] instant [at <time>] <query>' or \
             'eval[_fail|_warn|_info] range from <t> to <t> step <d> <query>'",
        );
    };
    let mut ev = Eval {
        line: line_no,
        expr: expr.to_string(),
        kind,
        fail: None,
        ordered: false,
        annotations: Vec::new(),
        expect_string: None,
        range_vector: None,
        expected: Expected::Series(Vec::new()),
        expects_histogram: false,
    };
    match modifier {
        Some("fail") => ev.fail = Some(FailMatch::Any),
        Some("ordered") => ev.ordered = true,
        Some(m @ ("warn" | "info")) => ev.annotations.push(format!("eval_{m}")),
        _ => {}
    }
    let is_instant = matches!(kind, EvalKind::Instant { .. });
    let mut series: Vec<SeriesDef> = Vec::new();
    let mut scalar: Option<f64> = None;
    for (k, l) in block.iter().enumerate().skip(1) {
        let ln = line_no + k;
        if l.contains("{{") {
            ev.expects_histogram = true;
        }
        if scalar.is_some() {
            return err(ln, "unexpected line after a scalar result");
        }
        if let (Some(_), Some(msg)) = (&ev.fail, l.strip_prefix("expected_fail_message")) {
            ev.fail = Some(FailMatch::Message(msg.trim().to_string()));
            continue;
        }
        if let (Some(_), Some(pat)) = (&ev.fail, l.strip_prefix("expected_fail_regexp")) {
            let pat = pat.trim();
            check_regex(pat, ln)?;
            ev.fail = Some(FailMatch::Regex(pat.to_string()));
            continue;
        }
        if l.starts_with("expect range vector") {
            let Some(c) = RE_EXPECT_RANGE.captures(l) else {
                return err(ln, format!("invalid range vector definition {l:?}"));
            };
            let g = |n| c.get(n).map_or("", |m: regex::Match<'_>| m.as_str());
            ev.range_vector =
                Some(parse_range(g(1), g(2), g(3)).map_err(|msg| ParseError { line: ln, msg })?);
            continue;
        }
        if let Some(rest) = l.strip_prefix("expect string") {
            let rest = rest.trim();
            let s = unquote(rest).map_err(|e| ParseError {
                line: ln,
                msg: format!("expected string literal not valid: {e}"),
            })?;
            ev.expect_string = Some(s);
            continue;
        }
        if l.split(' ').next() == Some("expect") {
            let Some(c) = RE_EXPECT.captures(l) else {
                return err(
                    ln,
                    "invalid expect statement, must match `expect <type> [<match_type>: <string>]`",
                );
            };
            let mode = c.get(1).map_or("", |m| m.as_str());
            let fm = match (
                c.get(2).map(|m| m.as_str()),
                c.get(3).map(|m| m.as_str().trim()),
            ) {
                (Some("msg"), Some(m)) => FailMatch::Message(m.to_string()),
                (Some(_), Some(p)) => {
                    check_regex(p, ln)?;
                    FailMatch::Regex(p.to_string())
                }
                _ => FailMatch::Any,
            };
            match mode {
                "ordered" => ev.ordered = true,
                "fail" => {
                    if matches!(ev.fail, Some(FailMatch::Message(_) | FailMatch::Regex(_))) {
                        return err(ln, "multiple expect fail lines are not allowed");
                    }
                    ev.fail = Some(fm);
                }
                _ => ev.annotations.push(l.to_string()),
            }
            continue;
        }
        if let Some(v) = parse_number(l) {
            scalar = Some(v);
            continue;
        }
        let (labels, points) = parse_series_line(l).map_err(|msg| ParseError { line: ln, msg })?;
        if points.len() > 1 && is_instant && ev.range_vector.is_none() {
            return err(
                ln,
                "expecting multiple values in instant evaluation not allowed; use 'expect range vector' for a range vector result",
            );
        }
        series.retain(|s| s.labels != labels);
        series.push(SeriesDef {
            labels,
            points,
            line: ln,
        });
    }
    ev.expected = match scalar {
        Some(v) => Expected::Scalar(v),
        None => Expected::Series(series),
    };
    Ok(ev)
}

fn check_regex(p: &str, ln: usize) -> Result<(), ParseError> {
    Regex::new(p).map(|_| ()).map_err(|e| ParseError {
        line: ln,
        msg: format!("invalid regex {p:?}: {e}"),
    })
}

fn parse_range(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let f =
        parse_duration_ms(from).map_err(|e| format!("invalid start timestamp {from:?}: {e}"))?;
    let t = parse_duration_ms(to).map_err(|e| format!("invalid end timestamp {to:?}: {e}"))?;
    if t < f {
        return Err(format!(
            "end timestamp ({to}) is before start timestamp ({from})"
        ));
    }
    let s = parse_duration_ms(step).map_err(|e| format!("invalid step {step:?}: {e}"))?;
    if s <= 0 {
        return Err(format!("step {step:?} must be positive"));
    }
    Ok((f, t, s))
}

/// Prometheus duration (`1h30m`, `10s53ms`, `0`), in milliseconds. Units:
/// y, w, d, h, m, s, ms, each at most once, largest first. A plain number is
/// accepted as seconds (a leniency over Prometheus, which only accepts `0`).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
        return Ok((secs * 1000.0).round() as i64);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: i64 = s[start..i]
            .parse()
            .map_err(|_| format!("duration out of range: {s:?}"))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit {unit:?} in duration {s:?}"));
        };
        if last_unit.is_some_and(|l| l >= idx) {
            return Err(format!("units out of order in duration {s:?}"));
        }
        last_unit = Some(idx);
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// A number as Go's `strconv.ParseInt(s, 0, 64)` then `ParseFloat` accept it:
/// decimal, `0x` hex, `0o`/`0b`, exponents, `Inf`, `+Inf`, `-Inf`, `NaN`.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some(16)
    } else if lower.starts_with("0o") {
        Some(8)
    } else if lower.starts_with("0b") {
        Some(2)
    } else {
        None
    };
    if let Some(r) = radix {
        let digits = lower[2..].replace('_', "");
        let v = i64::from_str_radix(&digits, r).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    // Rust's float grammar is close to Go's; reject Rust-only spellings.
    if body.is_empty() || body.starts_with(['+', '-']) {
        return None;
    }
    let ok_word = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    if !ok_word
        && !body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = body.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// Parses `metric{a="b", ...} <values>` into labels and points.
pub fn parse_series_line(line: &str) -> Result<(Labels, Vec<Point>), String> {
    let (labels, rest) = parse_metric(line)?;
    let points = parse_values(rest)?;
    Ok((labels, points))
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses the metric part (name and/or `{...}`); returns the rest of the line.
pub fn parse_metric(line: &str) -> Result<(Labels, &str), String> {
    let s = line.trim_start();
    let name_len = if s.starts_with(is_name_start) {
        s.find(|c: char| !is_name_char(c)).unwrap_or(s.len())
    } else {
        0
    };
    let mut pairs: Vec<Label> = Vec::new();
    if name_len > 0 {
        pairs.push(Label::new(METRIC_NAME, &s[..name_len]));
    }
    let mut rest = &s[name_len..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if rest.is_empty() {
                return Err(format!("unterminated label set in {line:?}"));
            }
            // Label name: identifier or quoted string; a lone quoted string is the metric name.
            let (name, r) = if rest.starts_with(['"', '\'', '`']) {
                let (q, r) = take_quoted(rest)?;
                (q, r)
            } else {
                let n = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
                if n == 0 {
                    return Err(format!(
                        "unexpected {:?} in label set of {line:?}",
                        rest.chars().next().unwrap_or(' ')
                    ));
                }
                (rest[..n].to_string(), &rest[n..])
            };
            let r = r.trim_start();
            if let Some(r2) = r.strip_prefix('=') {
                if r2.starts_with('~') {
                    return Err(format!(
                        "only '=' matchers are allowed in series descriptions: {line:?}"
                    ));
                }
                let r2 = r2.trim_start();
                if !r2.starts_with(['"', '\'', '`']) {
                    return Err(format!(
                        "label value of {name:?} must be quoted in {line:?}"
                    ));
                }
                let (value, r3) = take_quoted(r2)?;
                pairs.push(Label::new(name, value));
                rest = r3;
            } else if r.starts_with(['!', '~']) {
                return Err(format!(
                    "only '=' matchers are allowed in series descriptions: {line:?}"
                ));
            } else {
                // Bare quoted metric name: `{"my.metric", a="b"}`.
                pairs.push(Label::new(METRIC_NAME, name));
                rest = r;
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' in label set of {line:?}"));
            }
        }
    } else if name_len == 0 {
        return Err(format!("missing metric name or label set in {line:?}"));
    }
    // Empty label values mean "no label", as in Prometheus.
    pairs.retain(|l| !l.value.is_empty());
    let labels = Labels::from_unsorted(pairs).map_err(|e| format!("{e} in {line:?}"))?;
    Ok((labels, rest))
}

/// Takes a quoted string (`"..."` or `'...'` with Go escapes, or raw `` `...` ``)
/// from the start of `s`; returns its value and the rest.
fn take_quoted(s: &str) -> Result<(String, &str), String> {
    let q = s.chars().next().ok_or("expected a quoted string")?;
    let body = &s[1..];
    let mut esc = false;
    for (i, c) in body.char_indices() {
        if q != '`' && esc {
            esc = false;
            continue;
        }
        if q != '`' && c == '\\' {
            esc = true;
            continue;
        }
        if c == q {
            let lit = &s[..i + 2];
            return Ok((unquote(lit)?, &body[i + 1..]));
        }
    }
    Err(format!("unterminated quoted string {s:?}"))
}

/// Go's `strconv.Unquote` for `"..."`, `'...'` (PromQL allows strings in single
/// quotes) and `` `...` ``. Byte escapes that are not valid UTF-8 are replaced.
pub fn unquote(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let q = chars.next().ok_or("a quoted string literal is required")?;
    if !matches!(q, '"' | '\'' | '`') || s.len() < 2 || !s.ends_with(q) {
        return Err(format!("not a quoted string: {s:?}"));
    }
    let inner = &s[1..s.len() - 1];
    if q == '`' {
        if inner.contains('`') {
            return Err(format!("not a quoted string: {s:?}"));
        }
        return Ok(inner.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut it = inner.chars().peekable();
    let hex =
        |it: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize| -> Result<u32, String> {
            let mut v = 0u32;
            for _ in 0..n {
                let d = it
                    .next()
                    .and_then(|c| c.to_digit(16))
                    .ok_or("invalid hex escape")?;
                v = v * 16 + d;
            }
            Ok(v)
        };
    while let Some(c) = it.next() {
        if c == q {
            return Err(format!("unescaped quote in {s:?}"));
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = it.next().ok_or("trailing backslash")?;
        let ch: Option<char> = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            'x' => {
                out.push(hex(&mut it, 2)? as u8);
                None
            }
            'u' => Some(char::from_u32(hex(&mut it, 4)?).ok_or("invalid \\u escape")?),
            'U' => Some(char::from_u32(hex(&mut it, 8)?).ok_or("invalid \\U escape")?),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    v = v * 8
                        + it.next()
                            .and_then(|c| c.to_digit(8))
                            .ok_or("invalid octal escape")?;
                }
                if v > 255 {
                    return Err("octal escape out of range".into());
                }
                out.push(v as u8);
                None
            }
            other => return Err(format!("unknown escape \\{other}")),
        };
        if let Some(ch) = ch {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Splits a value sequence into items: whitespace separated, with `{{...}}`
/// histogram literals (which contain spaces) kept whole.
fn split_items(s: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        loop {
            if s[i..].starts_with("{{") {
                let Some(end) = s[i..].find("}}") else {
                    return Err(format!("unterminated histogram literal in {s:?}"));
                };
                i += end + 2;
            } else if i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            } else {
                break;
            }
        }
        items.push(&s[start..i]);
    }
    Ok(items)
}

/// Parses a value sequence in expanding notation.
pub fn parse_values(s: &str) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for item in split_items(s)? {
        parse_item(item, &mut out)?;
    }
    Ok(out)
}

/// Splits a trailing `x<digits>` repeat count off an item.
fn split_times(item: &str) -> Result<(&str, Option<u64>), String> {
    if let Some(pos) = item.rfind('x') {
        let (head, count) = (&item[..pos], &item[pos + 1..]);
        // Prometheus' lexer disallows hex numbers in series descriptions, so
        // `0x10` is "0 repeated 10 times".
        if !head.is_empty() && !count.is_empty() && count.bytes().all(|c| c.is_ascii_digit()) {
            let n = count
                .parse::<u64>()
                .map_err(|_| format!("invalid repeat count in {item:?}"))?;
            if n > 10_000_000 {
                return Err(format!("repeat count too large in {item:?}"));
            }
            return Ok((head, Some(n)));
        }
    }
    Ok((item, None))
}

fn parse_item(item: &str, out: &mut Vec<Point>) -> Result<(), String> {
    if item.contains("{{") {
        return parse_histogram_item(item, out);
    }
    if item == "_" {
        out.push(Point::Missing);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: u64 = n
            .parse()
            .map_err(|_| format!("invalid repeat count in {item:?}"))?;
        if n > 10_000_000 {
            return Err(format!("repeat count too large in {item:?}"));
        }
        out.extend((0..n).map(|_| Point::Missing));
        return Ok(());
    }
    let (head, times) = split_times(item)?;
    let value = |s: &str| -> Result<f64, String> {
        if s == "stale" {
            return Ok(stale_nan());
        }
        if s.contains(['x', 'X']) {
            return Err(format!("invalid value {s:?} in {item:?}"));
        }
        parse_number(s).ok_or_else(|| format!("invalid value {s:?} in {item:?}"))
    };
    let Some(n) = times else {
        out.push(Point::Float(value(head)?));
        return Ok(());
    };
    // `a+b` / `a-b`: find the sign that starts the increment (not an exponent sign).
    let hb = head.as_bytes();
    let split =
        (1..hb.len()).find(|&k| matches!(hb[k], b'+' | b'-') && !matches!(hb[k - 1], b'e' | b'E'));
    let (mut v, inc) = match split {
        Some(k) => (
            value(&head[..k])?,
            parse_number(&head[k..]).ok_or_else(|| format!("invalid increment in {item:?}"))?,
        ),
        None => (value(head)?, 0.0),
    };
    for _ in 0..=n {
        out.push(Point::Float(v));
        v += inc;
    }
    Ok(())
}

/// `{{..}}`, `{{..}}xN`, `{{..}}+{{..}}xN`, `{{..}}-{{..}}xN`.
fn parse_histogram_item(item: &str, out: &mut Vec<Point>) -> Result<(), String> {
    if !item.starts_with("{{") {
        return Err(format!("invalid histogram item {item:?}"));
    }
    if let Some(n) = item
        .rfind("}}x")
        .and_then(|p| item[p + 3..].parse::<u64>().ok())
        && n > 10_000_000
    {
        return Err(format!("repeat count too large in {item:?}"));
    }
    out.extend(
        histogram_literal::expand(item)?
            .into_iter()
            .map(|h| Point::Histogram(Box::new(h))),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(s: &str) -> Vec<Option<f64>> {
        parse_values(s)
            .expect("values parse")
            .into_iter()
            .map(|p| match p {
                Point::Float(v) => Some(v),
                Point::Missing => None,
                Point::Histogram(_) => panic!("unexpected histogram"),
            })
            .collect()
    }

    #[test]
    fn expanding_notation() {
        assert_eq!(
            floats("0+10x3"),
            vec![Some(0.0), Some(10.0), Some(20.0), Some(30.0)]
        );
        assert_eq!(floats("5-2x2"), vec![Some(5.0), Some(3.0), Some(1.0)]);
        assert_eq!(floats("-2+1x1"), vec![Some(-2.0), Some(-1.0)]);
        assert_eq!(floats("7x2"), vec![Some(7.0); 3]);
        assert_eq!(floats("1 _ 3"), vec![Some(1.0), None, Some(3.0)]);
        assert_eq!(floats("_x3 1"), vec![None, None, None, Some(1.0)]);
        assert_eq!(
            floats("1e3 -1.5e-3+1e-3x1"),
            vec![Some(1000.0), Some(-0.0015), Some(-0.0005)]
        );
        assert_eq!(floats("0x2"), vec![Some(0.0); 3]);
        assert_eq!(floats("0+0x1"), vec![Some(0.0); 2]);
        assert_eq!(parse_number("0x10"), Some(16.0));
        assert_eq!(floats("0.5+0.25x2"), vec![Some(0.5), Some(0.75), Some(1.0)]);
        let v = floats("Inf -Inf +Inf inf NaN .5");
        assert_eq!(v[0], Some(f64::INFINITY));
        assert_eq!(v[1], Some(f64::NEG_INFINITY));
        assert_eq!(v[2], Some(f64::INFINITY));
        assert_eq!(v[3], Some(f64::INFINITY));
        assert!(v[4].is_some_and(f64::is_nan));
        assert_eq!(v[5], Some(0.5));
        let s = parse_values("1 stale").expect("parse");
        assert!(matches!(s[1], Point::Float(v) if v.to_bits() == storage::STALE_NAN_BITS));
        assert!(parse_values("abc").is_err());
        assert!(parse_values("1+x3").is_err());
    }

    #[test]
    fn histogram_items_are_counted() {
        let p = parse_values(
            "{{schema:0 sum:1 count:1 buckets:[1]}} {{sum:1 count:1}}x2 {{sum:1}}+{{sum:2}}x1 _",
        )
        .expect("parse");
        assert_eq!(p.len(), 1 + 3 + 2 + 1);
        assert!(
            matches!(&p[0], Point::Histogram(h) if h.positive == vec![(0, 1.0)] && h.sum == 1.0)
        );
        assert!(matches!(&p[5], Point::Histogram(h) if h.sum == 3.0));
        assert_eq!(p[6], Point::Missing);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("10s53ms"), Ok(10_053));
        assert_eq!(parse_duration_ms("1000"), Ok(1_000_000));
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("5x").is_err());
        assert!(parse_duration_ms("30m1h").is_err());
    }

    #[test]
    fn series_lines() {
        let (l, p) =
            parse_series_line(r#"http_requests{job="api", instance="0", group="a b"} 0+10x2"#)
                .expect("parse");
        assert_eq!(l.get("__name__"), Some("http_requests"));
        assert_eq!(l.get("group"), Some("a b"));
        assert_eq!(p.len(), 3);
        let (l, p) = parse_series_line("{} 3").expect("parse");
        assert!(l.is_empty());
        assert_eq!(p, vec![Point::Float(3.0)]);
        let (l, _) = parse_series_line(r#"{"my.metric", "a.b"="x\n", c='y'} 1"#).expect("parse");
        assert_eq!(l.get("__name__"), Some("my.metric"));
        assert_eq!(l.get("a.b"), Some("x\n"));
        assert_eq!(l.get("c"), Some("y"));
        let (l, _) = parse_series_line(r#"m{a="",} 1"#).expect("parse");
        assert_eq!(l.len(), 1);
        assert!(parse_series_line(r#"m{a="1" 1"#).is_err());
        assert!(parse_series_line(r#"m{a=~"1"} 1"#).is_err());
        assert!(parse_series_line("1 2").is_err());
    }

    #[test]
    fn script_commands() {
        let script = "\
# comment
load 5m
  m{a=\"1\"} 0+1x2
  m@st _ 1s
  n 1

eval instant at 10m m
  m{a=\"1\"} 2

eval range from 0 to 10m step 5m m
  expect ordered
  m{a=\"1\"} 0 _ 2

eval instant at 1m 1
  1

eval instant at 1m bad(
  expect fail msg: boom

eval_fail instant at 0 x
  expected_fail_regexp b.*m

eval instant at 0 \"s\"
  expect string \"s\"
  expect warn

bogus line

eval instant at 1m m
  m 1 2

clear
load 1m
  m 1
";
        let cmds = parse_script(script);
        assert_eq!(cmds.len(), 11, "{cmds:#?}");
        let Cmd::Load(l) = &cmds[0] else {
            panic!("{:?}", cmds[0])
        };
        assert_eq!(
            (l.line, l.step_ms, l.series.len(), l.ignored_st_lines),
            (2, 300_000, 2, 1)
        );
        let Cmd::Eval(e) = &cmds[1] else { panic!() };
        assert_eq!(e.kind, EvalKind::Instant { at_ms: 600_000 });
        assert_eq!(e.expr, "m");
        let Cmd::Eval(e) = &cmds[2] else { panic!() };
        assert_eq!(
            e.kind,
            EvalKind::Range {
                start_ms: 0,
                end_ms: 600_000,
                step_ms: 300_000
            }
        );
        assert!(e.ordered);
        let Expected::Series(s) = &e.expected else {
            panic!()
        };
        assert_eq!(
            s[0].points,
            vec![Point::Float(0.0), Point::Missing, Point::Float(2.0)]
        );
        let Cmd::Eval(e) = &cmds[3] else { panic!() };
        assert_eq!(e.expected, Expected::Scalar(1.0));
        let Cmd::Eval(e) = &cmds[4] else { panic!() };
        assert_eq!(e.fail, Some(FailMatch::Message("boom".into())));
        let Cmd::Eval(e) = &cmds[5] else { panic!() };
        assert_eq!(e.fail, Some(FailMatch::Regex("b.*m".into())));
        let Cmd::Eval(e) = &cmds[6] else { panic!() };
        assert_eq!(e.expect_string.as_deref(), Some("s"));
        assert_eq!(e.annotations.len(), 1);
        let lines: Vec<&str> = script.lines().collect();
        let line_of = |text: &str| lines.iter().rposition(|l| *l == text).map_or(0, |i| i + 1);
        let bogus = line_of("bogus line");
        assert!(
            matches!(&cmds[7], Cmd::Invalid { kind: InvalidKind::Other, line, .. } if *line == bogus)
        );
        let bad_eval = line_of("  m 1 2");
        assert!(
            matches!(&cmds[8], Cmd::Invalid { kind: InvalidKind::Eval, line, .. } if *line == bad_eval),
            "{:?}",
            cmds[8]
        );
        let clear = line_of("clear");
        assert!(matches!(&cmds[9], Cmd::Clear { line } if *line == clear));
        assert!(matches!(&cmds[10], Cmd::Load(l) if l.line == clear + 1));
    }

    #[test]
    fn range_vector_expectation() {
        let cmds = parse_script(
            "eval instant at 1m m[1m]\n  expect range vector from 10s to 1m step 10s\n  m 1+1x5\n",
        );
        let Cmd::Eval(e) = &cmds[0] else {
            panic!("{cmds:?}")
        };
        assert_eq!(e.range_vector, Some((10_000, 60_000, 10_000)));
        assert_eq!(e.eval_time_ms(), Some(60_000));
    }

    #[test]
    fn unquoting() {
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Ok("a\"b"));
        assert_eq!(unquote("`a\\b`").as_deref(), Ok("a\\b"));
        assert_eq!(unquote(r#""\u00e9\x41\101""#).as_deref(), Ok("éAA"));
        assert!(unquote("\"abc").is_err());
        assert!(unquote("abc").is_err());
    }
}
