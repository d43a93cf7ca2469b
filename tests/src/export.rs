//! Moving one data set between formats for the storage benchmark, losslessly:
//! reading `promtool tsdb dump` output (how real data leaves a Prometheus),
//! writing OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`,
//! cutting remote-write requests for Strata, and measuring Prometheus blocks.
//!
//! Every conversion keeps timestamps to the millisecond and values to the bit
//! (except NaN payloads, which no text format carries: a stale marker read
//! from a dump is an ordinary NaN on both sides).

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::path::Path;

use anyhow::{Context, bail};
use ingest::proto::{Label as PbLabel, Sample as PbSample, TimeSeries, WriteRequest};
use storage::{Label, Labels, Sample, Series};

/// Reads `promtool tsdb dump` output (Prometheus 2.x): one sample per line,
/// `{name="value", ...} VALUE TIMESTAMP_MS`, label values quoted as Go string
/// literals and values printed with `%g` (shortest round-trip form). Returns
/// the series sorted by labels, each with its samples sorted by time and one
/// sample per timestamp (the last one read wins).
pub fn read_promtool_dump(input: impl BufRead) -> anyhow::Result<Vec<Series>> {
    let mut by_labels: BTreeMap<String, (Labels, Vec<Sample>)> = BTreeMap::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading the dump")?;
        if line.is_empty() {
            continue;
        }
        let parsed =
            parse_dump_line(&line).with_context(|| format!("dump line {}: {line:?}", n + 1))?;
        let (label_text, value, t) = parsed;
        match by_labels.get_mut(label_text) {
            Some((_, samples)) => samples.push(Sample::new(t, value)),
            None => {
                let labels = Labels::from_unsorted(parse_go_labels(label_text)?)
                    .with_context(|| format!("dump line {}: bad label set", n + 1))?;
                by_labels.insert(
                    label_text.to_string(),
                    (labels, vec![Sample::new(t, value)]),
                );
            }
        }
    }
    let mut out: Vec<Series> = by_labels
        .into_values()
        .map(|(labels, mut samples)| {
            // Stable sort, then keep the last of equal timestamps.
            samples.sort_by_key(|s| s.t);
            samples.reverse();
            samples.dedup_by_key(|s| s.t);
            samples.reverse();
            Series { labels, samples }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// Splits a dump line into its label text `{...}`, value and timestamp.
fn parse_dump_line(line: &str) -> anyhow::Result<(&str, f64, i64)> {
    let (rest, ts) = line.rsplit_once(' ').context("no timestamp")?;
    let (labels, value) = rest.rsplit_once(' ').context("no value")?;
    let t: i64 = ts
        .parse()
        .with_context(|| format!("bad timestamp {ts:?}"))?;
    let v = parse_float(value)?;
    if !(labels.starts_with('{') && labels.ends_with('}')) {
        bail!("label set is not in braces");
    }
    Ok((labels, v, t))
}

/// A float as Go and Prometheus print it (`NaN`, `+Inf`, `-Inf`, `1e+06`).
pub fn parse_float(s: &str) -> anyhow::Result<f64> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().with_context(|| format!("bad float {s:?}")),
    }
}

/// Parses Prometheus' `Labels.String()` form: `{a="x", b="y"}` with values
/// quoted by Go's `strconv.Quote`.
pub fn parse_go_labels(text: &str) -> anyhow::Result<Vec<Label>> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .context("label set is not in braces")?;
    let mut labels = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').context("label without '='")?;
        let (value, consumed) = unquote_go(after)?;
        labels.push(Label::new(name, value));
        rest = &after[consumed..];
        if !rest.is_empty() {
            rest = rest
                .strip_prefix(", ")
                .with_context(|| format!("expected ', ' between labels at {rest:?}"))?;
        }
    }
    Ok(labels)
}

/// Reads one Go double-quoted string literal at the start of `s`; returns the
/// string and the number of bytes consumed (quotes included).
fn unquote_go(s: &str) -> anyhow::Result<(String, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        bail!("label value does not start with a quote: {s:?}");
    }
    let mut out: Vec<u8> = Vec::new();
    let mut i = 1;
    let hex = |digits: &[u8]| -> anyhow::Result<u32> {
        let text = std::str::from_utf8(digits)?;
        u32::from_str_radix(text, 16).with_context(|| format!("bad hex escape {text:?}"))
    };
    loop {
        let c = *b.get(i).context("unterminated label value")?;
        i += 1;
        match c {
            b'"' => break,
            b'\\' => {
                let e = *b.get(i).context("unterminated escape")?;
                i += 1;
                match e {
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(0x0b),
                    b'\\' | b'"' | b'\'' => out.push(e),
                    b'x' | b'u' | b'U' => {
                        let len = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let digits = b.get(i..i + len).context("short hex escape")?;
                        let n = hex(digits)?;
                        i += len;
                        if e == b'x' {
                            out.push(u8::try_from(n)?);
                        } else {
                            let ch = char::from_u32(n).context("escape is not a character")?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    other => bail!("unknown escape \\{}", other as char),
                }
            }
            _ => out.push(c),
        }
    }
    Ok((
        String::from_utf8(out).context("label value is not UTF-8")?,
        i,
    ))
}

/// Samples in `series`.
pub fn sample_count(series: &[Series]) -> u64 {
    series.iter().map(|s| s.samples.len() as u64).sum()
}

/// Writes `series` as OpenMetrics text for `promtool tsdb create-blocks-from
/// openmetrics`: one line per sample, series by series in time order (the
/// importer appends each block's samples in file order), no metadata, `# EOF`
/// last. Values use the shortest form that parses back to the same bits;
/// timestamps are seconds written so that promtool's `int64(seconds * 1000)`
/// gives back exactly the millisecond.
pub fn write_openmetrics(series: &[Series], out: &mut impl Write) -> io::Result<()> {
    let mut line = String::new();
    for s in series {
        let mut prefix = String::new();
        let name = s.labels.metric_name().unwrap_or_default();
        prefix.push_str(name);
        let mut first = true;
        for l in s.labels.iter().filter(|l| l.name != storage::METRIC_NAME) {
            prefix.push(if first { '{' } else { ',' });
            first = false;
            prefix.push_str(&l.name);
            prefix.push_str("=\"");
            escape_om(&l.value, &mut prefix);
            prefix.push('"');
        }
        if !first {
            prefix.push('}');
        }
        for x in &s.samples {
            line.clear();
            line.push_str(&prefix);
            line.push(' ');
            push_float(x.v, &mut line);
            line.push(' ');
            push_om_timestamp(x.t, &mut line);
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
    }
    out.write_all(b"# EOF\n")
}

fn escape_om(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float in a form Go's `strconv.ParseFloat` reads back to the same bits.
fn push_float(v: f64, out: &mut String) {
    use std::fmt::Write as _;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 || (1e-5..1e16).contains(&v.abs()) {
        let _ = write!(out, "{v}");
    } else {
        let _ = write!(out, "{v:e}");
    }
}

/// An OpenMetrics timestamp (seconds) for `ms`. Prometheus 2.42's parser
/// computes `int64(seconds * 1000)`, which truncates, so a plain `S.mmm` that
/// parses a hair below the millisecond would lose one; those get one more
/// digit (`S.mmm01`), which truncates and rounds to the same millisecond.
fn push_om_timestamp(ms: i64, out: &mut String) {
    use std::fmt::Write as _;
    let (s, m) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let start = out.len();
    let _ = write!(out, "{s}.{m:03}");
    let parsed: f64 = out[start..].parse().unwrap_or(f64::NAN);
    #[allow(clippy::cast_possible_truncation)]
    let back = (parsed * 1000.0) as i64;
    if back != ms {
        out.push_str("01");
    }
}

/// Cuts `series` into remote-write requests the way a live sender produces
/// them: time-major (every series' samples of one `window_ms` before any of
/// the next window), at most about `max_samples` samples per request.
pub struct RequestCutter<'a> {
    series: &'a [Series],
    pb_labels: Vec<Vec<PbLabel>>,
    /// Next sample of each series.
    cursor: Vec<usize>,
    window_ms: i64,
    window_end: i64,
    last_t: i64,
    /// Next series to look at in the current window.
    next_series: usize,
    max_samples: usize,
}

impl<'a> RequestCutter<'a> {
    pub fn new(series: &'a [Series], window_ms: i64, max_samples: usize) -> Self {
        let first_t = series
            .iter()
            .filter_map(|s| s.samples.first())
            .map(|x| x.t)
            .min()
            .unwrap_or(0);
        let last_t = series
            .iter()
            .filter_map(|s| s.samples.last())
            .map(|x| x.t)
            .max()
            .unwrap_or(0);
        let window_ms = window_ms.max(1);
        Self {
            series,
            pb_labels: series
                .iter()
                .map(|s| {
                    s.labels
                        .iter()
                        .map(|l| PbLabel {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect()
                })
                .collect(),
            cursor: vec![0; series.len()],
            window_ms,
            window_end: first_t.div_euclid(window_ms) * window_ms + window_ms,
            last_t,
            next_series: 0,
            max_samples: max_samples.max(1),
        }
    }
}

impl Iterator for RequestCutter<'_> {
    /// A request and the number of samples in it.
    type Item = (WriteRequest, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let mut timeseries = Vec::new();
        let mut n = 0;
        loop {
            if self.next_series == self.series.len() {
                if self.window_end > self.last_t {
                    break;
                }
                self.window_end += self.window_ms;
                self.next_series = 0;
                if n >= self.max_samples {
                    break;
                }
                continue;
            }
            let i = self.next_series;
            let samples = &self.series[i].samples;
            let from = self.cursor[i];
            let to = from + samples[from..].partition_point(|x| x.t < self.window_end);
            if to > from {
                timeseries.push(TimeSeries {
                    labels: self.pb_labels[i].clone(),
                    samples: samples[from..to]
                        .iter()
                        .map(|x| PbSample {
                            value: x.v,
                            timestamp: x.t,
                        })
                        .collect(),
                    exemplars: Vec::new(),
                });
                n += to - from;
                self.cursor[i] = to;
            }
            self.next_series += 1;
            if n >= self.max_samples {
                break;
            }
        }
        (n > 0).then(|| {
            (
                WriteRequest {
                    timeseries,
                    metadata: Vec::new(),
                },
                n,
            )
        })
    }
}

/// Total size of the regular files under `path` (0 if it does not exist).
pub fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Number of regular files under `path`.
pub fn file_count(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += file_count(&e.path()),
                Ok(_) => total += 1,
                Err(_) => {}
            }
        }
    }
    total
}

/// One Prometheus TSDB block directory, measured.
#[derive(Clone, Debug, Default)]
pub struct PromBlock {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
    pub samples: u64,
    pub series: u64,
    pub chunks: u64,
    /// Bytes of `chunks/`.
    pub chunk_bytes: u64,
    /// Bytes of `index`.
    pub index_bytes: u64,
    /// Everything in the block directory (chunks, index, meta.json, tombstones).
    pub total_bytes: u64,
}

/// The blocks (directories with a `meta.json`) directly under `dir`, by min time.
pub fn prometheus_blocks(dir: &Path) -> anyhow::Result<Vec<PromBlock>> {
    let mut blocks = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = e?.path();
        let meta_path = path.join("meta.json");
        if !meta_path.is_file() {
            continue;
        }
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path)?)
            .with_context(|| format!("parsing {}", meta_path.display()))?;
        let stat = |k: &str| meta["stats"][k].as_u64().unwrap_or(0);
        blocks.push(PromBlock {
            ulid: meta["ulid"].as_str().unwrap_or_default().to_string(),
            min_time: meta["minTime"].as_i64().unwrap_or(0),
            max_time: meta["maxTime"].as_i64().unwrap_or(0),
            samples: stat("numSamples"),
            series: stat("numSeries"),
            chunks: stat("numChunks"),
            chunk_bytes: dir_bytes(&path.join("chunks")),
            index_bytes: std::fs::metadata(path.join("index")).map_or(0, |m| m.len()),
            total_bytes: dir_bytes(&path),
        });
    }
    blocks.sort_by_key(|b| b.min_time);
    Ok(blocks)
}

/// A PromQL selector matching exactly the names and values of `labels` (it
/// also matches series with more labels; callers filter on the label set).
pub fn selector(labels: &Labels) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| {
            let mut v = String::new();
            escape_om(&l.value, &mut v);
            format!("{}=\"{v}\"", l.name)
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// The first difference between `expected` and `got`, comparing timestamps
/// exactly and values bit for bit (any NaN equals any NaN: text formats do not
/// carry NaN payloads). `None` when equal.
pub fn first_difference(expected: &[Sample], got: &[Sample]) -> Option<String> {
    for (i, (e, g)) in expected.iter().zip(got).enumerate() {
        let same_value = e.v.to_bits() == g.v.to_bits() || (e.v.is_nan() && g.v.is_nan());
        if e.t != g.t || !same_value {
            return Some(format!(
                "sample {i}: expected ({}, {:?} = {:#018x}), got ({}, {:?} = {:#018x})",
                e.t,
                e.v,
                e.v.to_bits(),
                g.t,
                g.v,
                g.v.to_bits()
            ));
        }
    }
    (expected.len() != got.len()).then(|| {
        format!(
            "{} samples expected, {} returned",
            expected.len(),
            got.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_round_trip_to_openmetrics() {
        let dump = concat!(
            "{__name__=\"up\", instance=\"a:1\", job=\"x\"} 1 1795632973086\n",
            "{__name__=\"up\", instance=\"a:1\", job=\"x\"} 0 1795632988086\n",
            "{__name__=\"m\", path=\"C:\\\\x \\\"q\\\"\\n\\u00e9\\t\"} 7.5282e-05 1000\n",
            "{__name__=\"m\", path=\"b\"} NaN 1000\n",
            "{__name__=\"m\", path=\"b\"} -Inf 2000\n",
        );
        let series = read_promtool_dump(dump.as_bytes()).expect("parse");
        assert_eq!(series.len(), 3);
        assert_eq!(sample_count(&series), 5);
        let odd = series
            .iter()
            .find(|s| s.labels.get("path").is_some_and(|p| p.starts_with("C:")))
            .expect("escaped series");
        assert_eq!(odd.labels.get("path"), Some("C:\\x \"q\"\n\u{e9}\t"));
        assert_eq!(odd.samples[0].v.to_bits(), 7.5282e-05f64.to_bits());

        let mut om = Vec::new();
        write_openmetrics(&series, &mut om).expect("write");
        let text = String::from_utf8(om).expect("utf8");
        assert!(text.contains("m{path=\"C:\\\\x \\\"q\\\"\\n\u{e9}\t\"} 0.000075282 1.000\n"));
        assert!(text.contains("up{instance=\"a:1\",job=\"x\"} 1 1795632973.086\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn openmetrics_values_and_timestamps_parse_back_exactly() {
        for v in [
            0.1,
            -0.0,
            1e300,
            5e-324,
            123_456_789.123_456_79,
            1e16,
            9.99e15,
        ] {
            let mut s = String::new();
            push_float(v, &mut s);
            assert_eq!(
                s.parse::<f64>().expect("float").to_bits(),
                v.to_bits(),
                "{s}"
            );
        }
        // Every millisecond of a few seconds at a realistic epoch survives
        // truncation the way Prometheus' parser does it.
        for ms in 1_795_632_973_000..1_795_632_976_000 {
            let mut s = String::new();
            push_om_timestamp(ms, &mut s);
            let secs: f64 = s.parse().expect("timestamp");
            #[allow(clippy::cast_possible_truncation)]
            let (trunc, round) = ((secs * 1000.0) as i64, (secs * 1000.0).round() as i64);
            assert_eq!((trunc, round), (ms, ms), "{s}");
        }
    }

    #[test]
    fn requests_are_time_major_and_complete() {
        let mk = |name: &str, n: i64| Series {
            labels: Labels::from_pairs([("__name__", name)]).expect("labels"),
            samples: (0..n).map(|i| Sample::new(i * 15_000, i as f64)).collect(),
        };
        let series = vec![mk("a", 100), mk("b", 40), mk("c", 100)];
        let reqs: Vec<(WriteRequest, usize)> = RequestCutter::new(&series, 60_000, 7).collect();
        let total: usize = reqs.iter().map(|r| r.1).sum();
        assert_eq!(total as u64, sample_count(&series));
        // Per series, timestamps across requests are increasing.
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let mut prev_window = 0;
        for (r, n) in &reqs {
            assert!(
                *n <= 7 + 4,
                "at most one window of one series past the limit"
            );
            for ts in &r.timeseries {
                let key = ts.labels[0].value.clone();
                for s in &ts.samples {
                    let l = last.entry(key.clone()).or_insert(i64::MIN);
                    assert!(s.timestamp > *l);
                    *l = s.timestamp;
                }
            }
            let min = r
                .timeseries
                .iter()
                .flat_map(|t| t.samples.iter().map(|s| s.timestamp))
                .min()
                .expect("non-empty");
            // Requests never go back to an earlier window.
            assert!(min / 60_000 >= prev_window);
            prev_window = min / 60_000;
        }
    }
}
