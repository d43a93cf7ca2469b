//! Encoding comparison for compacted blocks: bytes per sample and decode speed
//! of the same samples stored as
//! (a) Parquet rows (series_id, timestamp DELTA_BINARY_PACKED, value
//!     BYTE_STREAM_SPLIT) with zstd,
//! (b) Parquet rows with the value PLAIN,
//! (c) Gorilla chunks (Prometheus-style XOR, implemented below) in a binary
//!     column,
//! (d) Strata's chunk codec (`storage::chunk`) in a binary column,
//!
//! with chunks cut at block partitions of `--spans` hours. Optionally the
//! same data is imported into Prometheus' TSDB with `promtool` for reference.
//! Data: `strata_tests::datagen::realistic`, and/or `--openmetrics FILE`
//! (e.g. real data exported from a Prometheus). Prints a markdown table.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-release cargo build --release -p strata-tests --bin encoding_bench
//! /work/target-release/release/encoding_bench --series 2000 --hours 48 --prometheus
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use storage::{Label, Labels, Sample, Series, chunk};
use strata_tests::datagen::{self, DataSpec};

#[derive(Parser, Debug)]
#[command(about = "Bytes per sample and decode speed of block encodings")]
struct Args {
    /// Generated series (0 skips the generated data set).
    #[arg(long, default_value_t = 2000)]
    series: usize,
    /// Hours of generated data.
    #[arg(long, default_value_t = 48)]
    hours: i64,
    #[arg(long, default_value_t = 15_000)]
    interval_ms: i64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also measure this OpenMetrics/Prometheus text file (samples with timestamps).
    #[arg(long)]
    openmetrics: Option<PathBuf>,
    /// Chunk spans (block partitions) in hours.
    #[arg(long, value_delimiter = ',', default_value = "2,24")]
    spans: Vec<i64>,
    /// zstd levels for the chunk encodings.
    #[arg(long, value_delimiter = ',', default_value = "3,9")]
    levels: Vec<i32>,
    /// Series order inside a block: by labels (like Prometheus' index) or by series id.
    #[arg(long, value_parser = ["labels", "id"], default_value = "labels")]
    order: String,
    /// Write the generated data as OpenMetrics text to this file.
    #[arg(long)]
    write_openmetrics: Option<PathBuf>,
    /// Import the data into Prometheus' TSDB with promtool and measure it.
    #[arg(long)]
    prometheus: bool,
    /// Also print where the bytes of Strata chunks go (per metric family,
    /// timestamps vs values), each part compressed alone with zstd 3.
    #[arg(long)]
    breakdown: bool,
    /// Decode repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
}

struct Row {
    encoding: String,
    span: String,
    zstd: String,
    bytes: u64,
    samples: u64,
    encode_s: f64,
    /// Parquet read + decode to samples (or arrays), M samples/s.
    read_mps: f64,
    /// Chunk decode alone from memory, M samples/s.
    decode_mps: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sets: Vec<(String, Vec<Series>)> = Vec::new();
    if args.series > 0 {
        let spec = DataSpec {
            series: args.series,
            duration_ms: args.hours * 3_600_000,
            interval_ms: args.interval_ms,
            start_ms: 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000,
            seed: args.seed,
        };
        let t = Instant::now();
        let s = datagen::realistic(&spec);
        eprintln!(
            "generated {} series in {:.1}s",
            s.len(),
            t.elapsed().as_secs_f64()
        );
        if let Some(path) = &args.write_openmetrics {
            let mut w = BufWriter::new(std::fs::File::create(path)?);
            datagen::write_openmetrics(&s, &mut w)?;
            std::io::Write::flush(&mut w)?;
        }
        sets.push((
            format!(
                "generated ({} series, {} h at {} s)",
                args.series,
                args.hours,
                args.interval_ms / 1000
            ),
            s,
        ));
    }
    if let Some(path) = &args.openmetrics {
        let s = read_text(path)?;
        sets.push((format!("{} ({} series)", path.display(), s.len()), s));
    }
    for (name, mut series) in sets {
        match args.order.as_str() {
            "id" => series.sort_by_key(|s| s.labels.series_id()),
            _ => series.sort_by(|a, b| a.labels.cmp(&b.labels)),
        }
        let samples: u64 = series.iter().map(|s| s.samples.len() as u64).sum();
        println!("\n### {name}: {samples} samples\n");
        if args.breakdown {
            breakdown(&series, samples, args.spans[0] * 3_600_000)?;
        }
        let rows = run(&args, &series)?;
        print_table(&rows);
        if args.prometheus {
            prometheus(&series, samples)?;
        }
    }
    Ok(())
}

fn run(args: &Args, series: &[Series]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &span_h in &args.spans {
        let span = format!("{span_h} h");
        let parts = partition(series, span_h * 3_600_000);
        for (level, value_enc) in [
            (3, Encoding::BYTE_STREAM_SPLIT),
            (9, Encoding::BYTE_STREAM_SPLIT),
            (3, Encoding::PLAIN),
        ] {
            let name = match value_enc {
                Encoding::PLAIN => "Parquet rows, value PLAIN",
                _ => "Parquet rows, value BYTE_STREAM_SPLIT",
            };
            rows.push(parquet_rows(
                name, &span, &parts, level, value_enc, args.reps,
            )?);
            eprintln!("done: {name} {span} zstd {level}");
        }
        for level in args.levels.iter().copied() {
            rows.push(parquet_chunks(
                "Gorilla chunks",
                &span,
                &parts,
                Some(level),
                args.reps,
                &Gorilla,
            )?);
            rows.push(parquet_chunks(
                "Strata chunks",
                &span,
                &parts,
                Some(level),
                args.reps,
                &Strata,
            )?);
            eprintln!("done: chunks {span} zstd {level}");
        }
        rows.push(parquet_chunks(
            "Strata chunks",
            &span,
            &parts,
            None,
            args.reps,
            &Strata,
        )?);
    }
    Ok(rows)
}

/// One block partition's slice of one series.
struct Part<'a> {
    id: u64,
    samples: &'a [Sample],
}

/// Cuts every series at multiples of `span_ms`; partitions are ordered by
/// time, and within one by the order of `series`.
fn partition(series: &[Series], span_ms: i64) -> Vec<Part<'_>> {
    let mut by_window: BTreeMap<i64, Vec<Part<'_>>> = BTreeMap::new();
    for s in series {
        let id = s.labels.series_id();
        let mut rest = &s.samples[..];
        while let Some(first) = rest.first() {
            let w = first.t.div_euclid(span_ms);
            let n = rest.partition_point(|x| x.t.div_euclid(span_ms) == w);
            by_window.entry(w).or_default().push(Part {
                id,
                samples: &rest[..n],
            });
            rest = &rest[n..];
        }
    }
    by_window.into_values().flatten().collect()
}

fn props(level: Option<i32>) -> anyhow::Result<parquet::file::properties::WriterPropertiesBuilder> {
    let compression = match level {
        Some(l) => Compression::ZSTD(ZstdLevel::try_new(l)?),
        None => Compression::UNCOMPRESSED,
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false))
}

fn parquet_rows(
    name: &str,
    span: &str,
    parts: &[Part<'_>],
    level: i32,
    value_enc: Encoding,
    reps: usize,
) -> anyhow::Result<Row> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("timestamp", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let props = props(Some(level))?
        .set_column_dictionary_enabled(ColumnPath::from("series_id"), true)
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(ColumnPath::from("value"), value_enc)
        .build();
    let samples: u64 = parts.iter().map(|p| p.samples.len() as u64).sum();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))?;
    for group in parts.chunks(4096) {
        let mut ids = Vec::new();
        let mut ts = Vec::new();
        let mut vs = Vec::new();
        for p in group {
            for s in p.samples {
                ids.push(p.id);
                ts.push(s.t);
                vs.push(s.v);
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(vs)),
        ];
        w.write(&RecordBatch::try_new(schema.clone(), cols)?)?;
    }
    w.close()?;
    let encode_s = start.elapsed().as_secs_f64();
    let file = Bytes::from(buf);
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        let mut n = 0u64;
        let mut check = 0u64;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file.clone())?.build()? {
            let batch = batch?;
            n += batch.num_rows() as u64;
            let v = batch
                .column(2)
                .as_any()
                .downcast_ref::<Float64Array>()
                .context("value column")?;
            check ^= v.value(v.len() - 1).to_bits();
        }
        best = best.min(start.elapsed().as_secs_f64());
        if n != samples || check == 1 {
            bail!("read {n} rows of {samples}");
        }
    }
    Ok(Row {
        encoding: name.into(),
        span: span.into(),
        zstd: level.to_string(),
        bytes: file.len() as u64,
        samples,
        encode_s,
        read_mps: samples as f64 / best / 1e6,
        decode_mps: None,
    })
}

trait Codec {
    fn encode(&self, samples: &[Sample], out: &mut Vec<u8>);
    fn decode(&self, bytes: &[u8], out: &mut Vec<Sample>) -> anyhow::Result<()>;
}

struct Strata;

impl Codec for Strata {
    fn encode(&self, samples: &[Sample], out: &mut Vec<u8>) {
        chunk::encode(samples, out);
    }
    fn decode(&self, bytes: &[u8], out: &mut Vec<Sample>) -> anyhow::Result<()> {
        Ok(chunk::decode(bytes, out)?)
    }
}

fn parquet_chunks(
    name: &str,
    span: &str,
    parts: &[Part<'_>],
    level: Option<i32>,
    reps: usize,
    codec: &dyn Codec,
) -> anyhow::Result<Row> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("chunk", DataType::Binary, false),
    ]));
    let props = props(level)?
        .set_column_statistics_enabled(ColumnPath::from("chunk"), EnabledStatistics::None)
        .build();
    let samples: u64 = parts.iter().map(|p| p.samples.len() as u64).sum();
    let start = Instant::now();
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(parts.len());
    for p in parts {
        let mut b = Vec::new();
        codec.encode(p.samples, &mut b);
        chunks.push(b);
    }
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), Some(props))?;
    for (group, cs) in parts.chunks(4096).zip(chunks.chunks(4096)) {
        let ids = UInt64Array::from(group.iter().map(|p| p.id).collect::<Vec<_>>());
        let bin = BinaryArray::from_iter_values(cs.iter());
        w.write(&RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(bin)],
        )?)?;
    }
    w.close()?;
    let encode_s = start.elapsed().as_secs_f64();

    // Verify every chunk while measuring decode alone.
    let mut out = Vec::with_capacity(100_000);
    let mut best_decode = f64::INFINITY;
    for rep in 0..reps {
        let start = Instant::now();
        for (p, c) in parts.iter().zip(&chunks) {
            out.clear();
            codec.decode(c, &mut out)?;
            if rep == 0 && out != p.samples {
                bail!("{name}: chunk of series {} does not round-trip", p.id);
            }
        }
        best_decode = best_decode.min(start.elapsed().as_secs_f64());
    }
    let file = Bytes::from(buf);
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        let mut n = 0u64;
        for batch in ParquetRecordBatchReaderBuilder::try_new(file.clone())?.build()? {
            let batch = batch?;
            let bin = batch
                .column(1)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .context("chunk column")?;
            for c in bin.iter().flatten() {
                out.clear();
                codec.decode(c, &mut out)?;
                n += out.len() as u64;
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
        if n != samples {
            bail!("read {n} samples of {samples}");
        }
    }
    Ok(Row {
        encoding: name.into(),
        span: span.into(),
        zstd: level.map_or("none".into(), |l| l.to_string()),
        bytes: file.len() as u64,
        samples,
        encode_s,
        read_mps: samples as f64 / best / 1e6,
        decode_mps: Some(samples as f64 / best_decode / 1e6),
    })
}

/// Compressed bytes per sample of Strata chunks by metric family, and of the
/// timestamps alone (the same chunks with every value 0).
fn breakdown(series: &[Series], samples: u64, span_ms: i64) -> anyhow::Result<()> {
    let parts = partition(series, span_ms);
    let names: BTreeMap<u64, String> = series
        .iter()
        .map(|s| {
            (
                s.labels.series_id(),
                s.labels.metric_name().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut families: BTreeMap<&str, (Vec<u8>, u64)> = BTreeMap::new();
    let mut all = Vec::new();
    let mut times_only = Vec::new();
    for p in &parts {
        let e = families.entry(names[&p.id].as_str()).or_default();
        chunk::encode(p.samples, &mut e.0);
        e.1 += p.samples.len() as u64;
        chunk::encode(p.samples, &mut all);
        let zeroed: Vec<Sample> = p.samples.iter().map(|s| Sample::new(s.t, 0.0)).collect();
        chunk::encode(&zeroed, &mut times_only);
    }
    let z = |b: &[u8]| zstd::bulk::compress(b, 3).map(|c| c.len() as f64);
    println!(
        "all chunks: {:.3} B/sample raw, {:.3} zstd 3; timestamps alone: {:.3} raw, {:.3} zstd 3\n",
        all.len() as f64 / samples as f64,
        z(&all)? / samples as f64,
        times_only.len() as f64 / samples as f64,
        z(&times_only)? / samples as f64,
    );
    let mut rows: Vec<(f64, &str, u64, f64)> = Vec::new();
    for (name, (bytes, n)) in &families {
        let c = z(bytes)?;
        rows.push((c, name, *n, bytes.len() as f64));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("| family | samples | raw B/sample | zstd B/sample | share of all zstd bytes |");
    println!("|---|---:|---:|---:|---:|");
    let total: f64 = rows.iter().map(|r| r.0).sum();
    for (c, name, n, raw) in rows.iter().take(25) {
        println!(
            "| {name} | {n} | {:.2} | {:.3} | {:.1}% |",
            raw / *n as f64,
            c / *n as f64,
            100.0 * c / total
        );
    }
    println!();
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!(
        "| encoding | chunk span | zstd | bytes | bytes/sample | encode s | read+decode M samples/s | chunk decode M samples/s |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.1} | {:.0} | {} |",
            r.encoding,
            r.span,
            r.zstd,
            r.bytes,
            r.bytes as f64 / r.samples as f64,
            r.encode_s,
            r.read_mps,
            r.decode_mps.map_or("".into(), |d| format!("{d:.0}")),
        );
    }
}

/// Imports the series into a Prometheus TSDB with promtool and prints its
/// sizes: chunk files alone, and whole blocks (chunks, index, meta).
fn prometheus(series: &[Series], samples: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let om = dir.path().join("data.om");
    {
        let mut w = BufWriter::new(std::fs::File::create(&om)?);
        datagen::write_openmetrics(series, &mut w)?;
        std::io::Write::flush(&mut w)?;
    }
    let out = dir.path().join("tsdb");
    let start = Instant::now();
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running promtool")?;
    if !status.success() {
        bail!("promtool failed: {status}");
    }
    let (mut chunks, mut total) = (0u64, 0u64);
    for block in std::fs::read_dir(&out)? {
        let block = block?.path();
        if !block.is_dir() {
            continue;
        }
        chunks += dir_bytes(&block.join("chunks"))?;
        total += dir_bytes(&block)?;
    }
    println!(
        "\nPrometheus 2.42 TSDB (promtool import, {:.0} s): chunk files {chunks} bytes = {:.3} bytes/sample; whole blocks {total} bytes = {:.3} bytes/sample",
        start.elapsed().as_secs_f64(),
        chunks as f64 / samples as f64,
        total as f64 / samples as f64
    );
    Ok(())
}

fn dir_bytes(p: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}

/// Reads OpenMetrics or Prometheus text with timestamps (`name{l="v"} value
/// seconds`; a timestamp without a dot is taken as seconds too); `#` lines
/// are skipped. Samples of one series are sorted, the last of a timestamp wins.
fn read_text(path: &Path) -> anyhow::Result<Vec<Series>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut by_series: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('}') {
            Some(end) if line[..end].contains('{') => (&line[..=end], line[end + 1..].trim()),
            _ => line.split_once(' ').context("no value")?,
        };
        let mut it = rest.split_whitespace();
        let v = parse_go_float(it.next().context("no value")?)
            .with_context(|| format!("line {}", i + 1))?;
        let ts: f64 = it
            .next()
            .with_context(|| format!("line {}: no timestamp", i + 1))?
            .parse()?;
        let t = (ts * 1000.0).round() as i64;
        by_series
            .entry(series.to_string())
            .or_default()
            .push(Sample::new(t, v));
    }
    let mut out = Vec::with_capacity(by_series.len());
    for (text, mut samples) in by_series {
        samples.sort_by_key(|s| s.t);
        samples.reverse();
        samples.dedup_by_key(|s| s.t);
        samples.reverse();
        out.push(Series {
            labels: parse_labels(&text)?,
            samples,
        });
    }
    Ok(out)
}

fn parse_go_float(s: &str) -> anyhow::Result<f64> {
    Ok(match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().with_context(|| format!("bad value {s:?}"))?,
    })
}

fn parse_labels(text: &str) -> anyhow::Result<Labels> {
    let (name, rest) = match text.split_once('{') {
        Some((n, r)) => (n, r.strip_suffix('}').context("unclosed labels")?),
        None => (text, ""),
    };
    let mut labels = vec![Label::new(storage::METRIC_NAME, name.trim())];
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let n: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if chars.next() != Some('"') {
            bail!("label {n:?} without a quoted value in {text:?}");
        }
        let mut v = String::new();
        loop {
            match chars.next().context("unterminated label value")? {
                '"' => break,
                '\\' => match chars.next().context("bad escape")? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                c => v.push(c),
            }
        }
        if !v.is_empty() {
            labels.push(Label::new(n.trim(), v));
        }
    }
    Ok(Labels::from_unsorted(labels)?)
}

/// A Gorilla-style chunk like Prometheus' XOR chunk: timestamps as
/// delta-of-delta in prefix-coded buckets, values XOR'd with the previous.
struct Gorilla;

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, v: u64, bits: u32) {
        for i in (0..bits).rev() {
            self.acc = (self.acc << 1) | ((v >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }
}

struct BitsIn<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl BitsIn<'_> {
    #[inline]
    fn get(&mut self, bits: u32) -> anyhow::Result<u64> {
        if bits == 0 {
            return Ok(0);
        }
        if self.pos + bits as usize > self.buf.len() * 8 {
            bail!("truncated gorilla chunk");
        }
        let i = self.pos / 8;
        let end = (i + 16).min(self.buf.len());
        let mut w = [0u8; 16];
        w[..end - i].copy_from_slice(&self.buf[i..end]);
        let x = u128::from_be_bytes(w) << (self.pos % 8);
        self.pos += bits as usize;
        Ok((x >> (128 - bits)) as u64)
    }
}

const DOD_BUCKETS: [(u64, u32, u32); 4] = [
    (0b10, 2, 14),
    (0b110, 3, 17),
    (0b1110, 4, 20),
    (0b1111, 4, 64),
];

impl Codec for Gorilla {
    fn encode(&self, samples: &[Sample], out: &mut Vec<u8>) {
        let mut b = Bits {
            out: std::mem::take(out),
            acc: 0,
            n: 0,
        };
        b.put(samples.len() as u64, 16);
        let (mut pt, mut pd, mut pv) = (0i64, 0i64, 0u64);
        let (mut lead, mut trail) = (u32::MAX, 0u32);
        for (i, s) in samples.iter().enumerate() {
            let v = s.v.to_bits();
            if i == 0 {
                b.put(s.t as u64, 64);
                b.put(v, 64);
            } else {
                let d = s.t.wrapping_sub(pt);
                let dod = d.wrapping_sub(pd);
                if i == 1 {
                    b.put(d as u64, 64);
                } else if dod == 0 {
                    b.put(0, 1);
                } else {
                    for (prefix, plen, bits) in DOD_BUCKETS {
                        if bits == 64 || (-(1i64 << (bits - 1))..1i64 << (bits - 1)).contains(&dod)
                        {
                            b.put(prefix, plen);
                            b.put(dod as u64, bits);
                            break;
                        }
                    }
                }
                pd = d;
                let x = v ^ pv;
                if x == 0 {
                    b.put(0, 1);
                } else {
                    let l = x.leading_zeros().min(31);
                    let t = x.trailing_zeros();
                    if lead != u32::MAX && l >= lead && t >= trail {
                        b.put(0b10, 2);
                        b.put(x >> trail, 64 - lead - trail);
                    } else {
                        lead = l;
                        trail = t;
                        let sig = 64 - l - t;
                        b.put(0b11, 2);
                        b.put(u64::from(l), 5);
                        b.put(u64::from(sig & 63), 6);
                        b.put(x >> t, sig);
                    }
                }
            }
            pt = s.t;
            pv = v;
        }
        if b.n > 0 {
            b.out.push((b.acc << (8 - b.n)) as u8);
        }
        *out = b.out;
    }

    fn decode(&self, bytes: &[u8], out: &mut Vec<Sample>) -> anyhow::Result<()> {
        let mut r = BitsIn { buf: bytes, pos: 0 };
        let n = r.get(16)? as usize;
        let (mut t, mut d, mut v) = (0i64, 0i64, 0u64);
        let (mut lead, mut sig) = (0u32, 0u32);
        for i in 0..n {
            if i == 0 {
                t = r.get(64)? as i64;
                v = r.get(64)?;
            } else {
                if i == 1 {
                    d = r.get(64)? as i64;
                } else if r.get(1)? == 1 {
                    let mut dod = 0i64;
                    for (k, (_, _, bits)) in DOD_BUCKETS.iter().enumerate() {
                        if k == 3 || r.get(1)? == 0 {
                            let raw = r.get(*bits)?;
                            // Sign-extend.
                            dod = if *bits == 64 {
                                raw as i64
                            } else {
                                ((raw << (64 - bits)) as i64) >> (64 - bits)
                            };
                            break;
                        }
                    }
                    d = d.wrapping_add(dod);
                }
                t = t.wrapping_add(d);
                if r.get(1)? == 1 {
                    if r.get(1)? == 1 {
                        lead = r.get(5)? as u32;
                        sig = r.get(6)? as u32;
                        if sig == 0 {
                            sig = 64;
                        }
                    }
                    v ^= r.get(sig)? << (64 - lead - sig);
                }
            }
            out.push(Sample::new(t, f64::from_bits(v)));
        }
        Ok(())
    }
}
