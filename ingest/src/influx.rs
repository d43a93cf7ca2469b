//! InfluxDB line protocol, parsed to the line-protocol reference and mapped
//! to Prometheus series the way M3 Coordinator maps it. Pure functions: the
//! HTTP handler lives in `protocols`.
//!
//! ```text
//! <measurement>[,<tag_key>=<tag_value>...] <field_key>=<field_value>[,...] [<timestamp>]
//! ```
//!
//! Syntax (InfluxDB's line-protocol reference):
//! - one point per `\n`-terminated line (a trailing `\r` is dropped); blank
//!   lines and lines whose first non-blank character is `#` are skipped;
//!   leading and trailing spaces and tabs are ignored, and the sections may
//!   be separated by more than one space (as InfluxDB 1.x accepts);
//! - a backslash escapes, in the measurement, `,` and space; in tag keys, tag
//!   values and field keys, `,`, `=` and space; in string field values, `"`;
//!   and everywhere a second backslash. Any other backslash is literal;
//! - field values: float (`1`, `-1.5`, `1e3`), signed integer (`1i`),
//!   unsigned integer (`1u`), boolean (`t T true True TRUE f F false False
//!   FALSE`) or a double-quoted string;
//! - tag values must not be empty; a point needs at least one field;
//! - the timestamp is an integer in the request's precision (default ns);
//!   a point without one gets the time the request arrived. After
//!   precision scaling it must lie within ±9223372036854775806 ns.
//!
//! Mapping (M3 Coordinator, `src/query/api/v1/handler/influxdb`):
//! - one series per numeric field, named `<measurement>_<field_key>`: in
//!   `<measurement>_` every byte outside `[a-zA-Z0-9_:]` (and a leading
//!   digit) becomes `_`, in the field key every byte outside
//!   `[a-zA-Z0-9_:]` becomes `_`. Bytes, not characters: `é` becomes `__`;
//! - tags become labels; in tag keys every byte outside `[a-zA-Z0-9_]` (and
//!   a leading digit) becomes `_`; tag values are kept as they are. Two tags
//!   that map to the same label name (or a tag that maps to `__name__`)
//!   reject the point;
//! - booleans are stored as 1 and 0, integers as the nearest float; string
//!   fields are skipped (as M3 does, to avoid a series per string value);
//! - the timestamp is truncated to milliseconds (Strata's resolution).

use std::borrow::Cow;
use std::collections::HashMap;

use storage::{Label, Labels, METRIC_NAME, Sample, Series};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::error::IngestError;
use crate::remote_write::SeriesLimits;
use crate::series_cache::SeriesCache;

/// Timestamp unit of a request (`precision` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// InfluxDB's names: `ns` (or `n`, the default), `u` (or `us`), `ms`,
    /// `s`, `m`, `h`.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        Ok(match value.unwrap_or("") {
            "" | "n" | "ns" => Self::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            other => {
                return Err(format!(
                    "invalid precision {other:?} (expected one of ns, u, us, ms, s, m, h)"
                ));
            }
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Self::Nanoseconds => 1,
            Self::Microseconds => 1_000,
            Self::Milliseconds => 1_000_000,
            Self::Seconds => 1_000_000_000,
            Self::Minutes => 60_000_000_000,
            Self::Hours => 3_600_000_000_000,
        }
    }
}

/// The timestamp range line protocol allows, in nanoseconds.
const MIN_NANOS: i64 = -9_223_372_036_854_775_806;
const MAX_NANOS: i64 = 9_223_372_036_854_775_806;

/// The outcome of a request body: series to store and what was rejected.
/// Valid points are stored and the request is then answered 400 naming the
/// first bad line, as remote write does with invalid series.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Lines holding a point (not blank, not comments), valid or not.
    pub lines: usize,
    pub series: Vec<Series>,
    pub samples: usize,
    pub rejected: usize,
    /// Line number (from 1) and reason of the first rejected line.
    pub first_error: Option<(usize, String)>,
}

impl Parsed {
    fn reject(&mut self, line: usize, reason: String) {
        self.rejected += 1;
        self.first_error.get_or_insert((line, reason));
    }

    pub fn error(&self) -> Option<IngestError> {
        let (line, reason) = self.first_error.clone()?;
        Some(IngestError::InvalidLines {
            rejected: self.rejected,
            total: self.lines,
            line,
            reason,
        })
    }
}

/// Parses a line-protocol body and maps its points to series. Label sets of
/// known series come from `cache` (keyed by the raw measurement, tag set and
/// field key), so a repeated series costs no parsing of its tags.
pub fn parse(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limits: &SeriesLimits,
    cache: &SeriesCache,
) -> Parsed {
    let mut b = Builder {
        out: Parsed::default(),
        index: HashMap::with_hasher(Xxh3DefaultBuilder::new()),
        scratch: Vec::new(),
        limits,
        cache,
    };
    for (i, raw) in body.split(|&c| c == b'\n').enumerate() {
        let number = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            b.out.lines += 1;
            b.out.reject(number, "invalid UTF-8".into());
            continue;
        };
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        b.out.lines += 1;
        if let Err(reason) = parse_line(line, precision, now_ms).and_then(|p| b.add(p)) {
            b.out.reject(number, format!("{reason}: {}", excerpt(line)));
        }
    }
    b.out
}

/// A line for an error message, cut at 100 bytes.
fn excerpt(line: &str) -> String {
    if line.len() <= 100 {
        return format!("{line:?}");
    }
    let cut = (0..=100)
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0);
    format!("{:?}…", &line[..cut])
}

/// One parsed line. Keys are raw (still escaped) slices of the line.
#[derive(Debug, PartialEq)]
struct Point<'a> {
    /// Measurement and tag set, as written.
    key: &'a str,
    fields: Vec<(&'a str, Value)>,
    time_ms: i64,
}

#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    /// A string field: valid, but not stored.
    Text,
}

/// Characters a backslash escapes in each element.
const MEASUREMENT_ESCAPES: &[char] = &[',', ' ', '\\'];
const KEY_ESCAPES: &[char] = &[',', '=', ' ', '\\'];

fn parse_line(line: &str, precision: Precision, now_ms: i64) -> Result<Point<'_>, String> {
    let err = |s: &str| s.to_string();
    let bytes = line.as_bytes();
    // The measurement and tag set end at the first unescaped space.
    let mut pos = 0;
    while pos < bytes.len() && bytes[pos] != b' ' {
        pos += if bytes[pos] == b'\\' { 2 } else { 1 };
    }
    let pos_key_end = pos.min(bytes.len());
    let key = line.get(..pos_key_end).ok_or_else(|| err("invalid key"))?;
    if key.is_empty() || key.starts_with(',') {
        return Err(err("missing measurement"));
    }
    let mut pos = skip_spaces(bytes, pos_key_end);
    if pos >= bytes.len() {
        return Err(err("missing fields"));
    }
    let mut fields = Vec::new();
    loop {
        // Field key: up to the unescaped '='.
        let start = pos;
        while pos < bytes.len() && !matches!(bytes[pos], b'=' | b',' | b' ') {
            pos += if bytes[pos] == b'\\' { 2 } else { 1 };
        }
        pos = pos.min(bytes.len());
        let field_key = line
            .get(start..pos)
            .ok_or_else(|| err("invalid field key"))?;
        if field_key.is_empty() {
            return Err(err("missing field key"));
        }
        if bytes.get(pos) != Some(&b'=') {
            return Err(err("missing field value"));
        }
        pos += 1;
        // Field value.
        let value = if bytes.get(pos) == Some(&b'"') {
            pos += 1;
            loop {
                match bytes.get(pos) {
                    None => return Err(err("unterminated string field value")),
                    Some(b'\\') => pos += 2,
                    Some(b'"') => break,
                    Some(_) => pos += 1,
                }
            }
            pos += 1;
            Value::Text
        } else {
            let start = pos;
            while pos < bytes.len() && !matches!(bytes[pos], b',' | b' ') {
                pos += 1;
            }
            let raw = line
                .get(start..pos)
                .ok_or_else(|| err("invalid field value"))?;
            parse_value(raw).map_err(|e| format!("field {field_key}: {e}"))?
        };
        fields.push((field_key, value));
        match bytes.get(pos) {
            None => {
                return Ok(Point {
                    key,
                    fields,
                    time_ms: now_ms,
                });
            }
            Some(b',') => pos += 1,
            Some(b' ') => break,
            Some(_) => {
                return Err(format!(
                    "field {field_key}: unexpected characters after the closing quote"
                ));
            }
        }
    }
    let start = skip_spaces(bytes, pos);
    let mut end = start;
    while end < bytes.len() && !matches!(bytes[end], b' ' | b'\t') {
        end += 1;
    }
    let time_ms = if start == end {
        now_ms
    } else {
        let raw = line
            .get(start..end)
            .ok_or_else(|| err("invalid timestamp"))?;
        timestamp_ms(raw, precision)?
    };
    if bytes[end..].iter().any(|&c| !matches!(c, b' ' | b'\t')) {
        return Err(err("unexpected characters after the timestamp"));
    }
    Ok(Point {
        key,
        fields,
        time_ms,
    })
}

fn skip_spaces(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos) == Some(&b' ') {
        pos += 1;
    }
    pos
}

fn timestamp_ms(raw: &str, precision: Precision) -> Result<i64, String> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid timestamp {raw:?}"));
    }
    let ns = raw
        .parse::<i64>()
        .ok()
        .and_then(|t| t.checked_mul(precision.nanos()))
        .filter(|ns| (MIN_NANOS..=MAX_NANOS).contains(ns))
        .ok_or_else(|| format!("timestamp {raw} is out of range"))?;
    Ok(ns.div_euclid(1_000_000))
}

/// A field value that is not a string.
fn parse_value(raw: &str) -> Result<Value, String> {
    match raw {
        "" => return Err("missing field value".into()),
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Number(1.0)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Number(0.0)),
        _ => {}
    }
    let invalid = || format!("invalid field value {raw:?}");
    if let Some(int) = raw.strip_suffix('i') {
        let digits = int.strip_prefix('-').unwrap_or(int);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        let v: i64 = int
            .parse()
            .map_err(|_| format!("integer {raw} is out of range"))?;
        return Ok(Value::Number(v as f64));
    }
    if let Some(uint) = raw.strip_suffix('u') {
        if uint.is_empty() || !uint.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        let v: u64 = uint
            .parse()
            .map_err(|_| format!("unsigned integer {raw} is out of range"))?;
        return Ok(Value::Number(v as f64));
    }
    if !is_float_syntax(raw) {
        return Err(invalid());
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Number(v)),
        _ => Err(format!("float {raw} is out of range")),
    }
}

/// `-?(digits[.digits]|.digits)([eE][+-]?digits)?`: what line protocol
/// accepts as a float (no `+` sign, no `NaN` or `Inf`).
fn is_float_syntax(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Removes the backslash before each character of `escapes` (and before a
/// second backslash); other backslashes are literal.
fn unescape<'a>(raw: &'a str, escapes: &[char]) -> Cow<'a, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && escapes.contains(&next)
        {
            out.push(next);
            chars.next();
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Splits `raw` at unescaped `sep` characters (a backslash takes the next
/// character with it).
fn split_unescaped(raw: &str, sep: u8) -> Vec<&str> {
    let b = raw.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
        } else if b[i] == sep {
            parts.push(&raw[start..i]);
            i += 1;
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(raw.get(start..).unwrap_or(""));
    parts
}

/// The measurement and tags of a series key, unescaped.
type SeriesKey<'a> = (Cow<'a, str>, Vec<(Cow<'a, str>, Cow<'a, str>)>);

fn parse_series_key(key: &str) -> Result<SeriesKey<'_>, String> {
    let mut parts = split_unescaped(key, b',').into_iter();
    let measurement = parts.next().unwrap_or("");
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    for tag in parts {
        let kv = split_unescaped(tag, b'=');
        match kv.as_slice() {
            [""] => return Err("missing tag key".into()),
            [_] => return Err(format!("missing tag value in {tag:?}")),
            ["", _] => return Err(format!("missing tag key in {tag:?}")),
            [_, ""] => return Err(format!("missing tag value in {tag:?}")),
            [k, v] => tags.push((unescape(k, KEY_ESCAPES), unescape(v, KEY_ESCAPES))),
            _ => return Err(format!("unescaped '=' in tag {tag:?}")),
        }
    }
    Ok((unescape(measurement, MEASUREMENT_ESCAPES), tags))
}

/// M3's metric name: `<measurement>_<field>` with invalid bytes replaced.
pub fn metric_name(measurement: &str, field: &str) -> String {
    let mut out = String::with_capacity(measurement.len() + 1 + field.len());
    for (i, c) in measurement.bytes().chain([b'_']).enumerate() {
        let ok = c.is_ascii_alphabetic() || c == b'_' || c == b':' || (i > 0 && c.is_ascii_digit());
        out.push(if ok { char::from(c) } else { '_' });
    }
    for c in field.bytes() {
        let ok = c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        out.push(if ok { char::from(c) } else { '_' });
    }
    out
}

/// M3's label name for a tag key: bytes outside `[a-zA-Z0-9_]` (and a
/// leading digit) replaced with `_`.
pub fn label_name(tag_key: &str) -> String {
    tag_key
        .bytes()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic() || c == b'_' || (i > 0 && c.is_ascii_digit());
            if ok { char::from(c) } else { '_' }
        })
        .collect()
}

fn labels_for(key: &SeriesKey<'_>, field: &str, limits: &SeriesLimits) -> Result<Labels, String> {
    let (measurement, tags) = key;
    if tags.len() + 1 > limits.max_label_names_per_series {
        return Err(format!(
            "{} labels exceed the limit of {} label names per series",
            tags.len() + 1,
            limits.max_label_names_per_series
        ));
    }
    let mut labels = Vec::with_capacity(tags.len() + 1);
    labels.push(Label::new(METRIC_NAME, metric_name(measurement, field)));
    for (k, v) in tags {
        labels.push(Label::new(label_name(k), v.as_ref()));
    }
    for l in &labels {
        if l.name.len() > limits.max_label_name_length {
            return Err(format!(
                "label name {} longer than {} bytes",
                l.name, limits.max_label_name_length
            ));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(format!(
                "value of label {} longer than {} bytes",
                l.name, limits.max_label_value_length
            ));
        }
    }
    let labels = Labels::from_unsorted(labels).map_err(|e| format!("tags: {e}"))?;
    labels.validate().map_err(|e| e.to_string())?;
    Ok(labels)
}

/// Collects the series of one request. Samples of a series repeated across
/// lines go into one [`Series`], found by the raw key bytes.
struct Builder<'a, 'c> {
    out: Parsed,
    /// (raw series key, raw field key) to index in `out.series`.
    index: HashMap<(&'a str, &'a str), usize, Xxh3DefaultBuilder>,
    scratch: Vec<u8>,
    limits: &'c SeriesLimits,
    cache: &'c SeriesCache,
}

impl<'a> Builder<'a, '_> {
    /// Adds the numeric fields of a point, all or none.
    fn add(&mut self, point: Point<'a>) -> Result<(), String> {
        enum Slot<'a> {
            Known(usize),
            New(&'a str, Labels),
        }
        let mut key: Option<SeriesKey<'a>> = None;
        let mut slots = Vec::with_capacity(point.fields.len());
        for (i, &(field, ref value)) in point.fields.iter().enumerate() {
            let Value::Number(v) = *value else { continue };
            // A field repeated in one line: the last value wins.
            if point.fields[i + 1..].iter().any(|(f, _)| *f == field) {
                continue;
            }
            if let Some(&idx) = self.index.get(&(point.key, field)) {
                slots.push((Slot::Known(idx), v));
                continue;
            }
            // Cache key: a 0 byte (remote write's keys start with 0x0a), the
            // length of the series key, the series key and the field key.
            self.scratch.clear();
            self.scratch.push(0);
            self.scratch
                .extend_from_slice(&(point.key.len() as u64).to_le_bytes());
            self.scratch.extend_from_slice(point.key.as_bytes());
            self.scratch.extend_from_slice(field.as_bytes());
            if let Some(labels) = self.cache.get(&self.scratch) {
                slots.push((Slot::New(field, labels), v));
                continue;
            }
            if key.is_none() {
                key = Some(parse_series_key(point.key)?);
            }
            let Some(parsed) = &key else { continue };
            let labels = labels_for(parsed, &unescape(field, KEY_ESCAPES), self.limits)?;
            self.cache.insert(&self.scratch, labels.clone());
            slots.push((Slot::New(field, labels), v));
        }
        // A series key is checked when its series is first seen; one with
        // only string fields is checked here.
        if slots.is_empty() && key.is_none() {
            parse_series_key(point.key)?;
        }
        for (slot, v) in slots {
            let sample = Sample::new(point.time_ms, v);
            match slot {
                Slot::Known(idx) => self.out.series[idx].samples.push(sample),
                Slot::New(field, labels) => {
                    self.index.insert((point.key, field), self.out.series.len());
                    self.out.series.push(Series {
                        labels,
                        samples: vec![sample],
                    });
                }
            }
            self.out.samples += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
