//! Prometheus remote write: decoding (snappy block format, protobuf) and
//! validation of the series in a request. 1.0 (`prometheus.WriteRequest`)
//! is decoded here by a one-pass walk of the protobuf wire format (with
//! prost's decode + [`validate`] as its reference); 2.0
//! (`io.prometheus.write.v2.Request`) in [`v2`]; native histograms, exemplars
//! and metadata are checked alike for both ([`extras`]); the HTTP handler
//! (content negotiation, response headers, commit) is [`handler`].

mod extras;
pub(crate) mod handler;
pub mod v2;

use std::collections::HashSet;

use prost::Message;
use storage::histogram::Histogram;
use storage::sidecar::{Exemplar, ExemplarSeries, HistogramSeries, MetricMetadata, Sidecar};
use storage::{Label, Labels, Sample, Series};

use crate::error::IngestError;
use crate::proto;
use crate::series_cache::SeriesCache;

pub use extras::MAX_EXEMPLAR_LABEL_CHARS;

/// Per-series limits checked at ingest (Mimir's defaults).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesLimits {
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_label_names_per_series: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_label_names_per_series: 30,
        }
    }
}

/// Decompresses and decodes a remote-write 1.0 body with prost (the
/// reference for [`decode_validated`]). `max_decoded` bounds the
/// decompressed size, read from the snappy header before allocating.
pub fn decode(body: &[u8], max_decoded: usize) -> Result<proto::FullWriteRequest, IngestError> {
    let raw = decompress(body, max_decoded)?;
    proto::FullWriteRequest::decode(raw.as_slice())
        .map_err(|e| IngestError::Protobuf(e.to_string()))
}

/// Snappy block decompression, refusing before allocating when the header
/// announces more than `max_decoded` bytes.
pub(crate) fn decompress(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, IngestError> {
    let size = snap::raw::decompress_len(body).map_err(|e| IngestError::Snappy(e.to_string()))?;
    if size > max_decoded {
        return Err(IngestError::DecodedTooLarge {
            size,
            limit: max_decoded,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| IngestError::Snappy(e.to_string()))
}

/// The outcome of validating a request: series to store, and what was
/// rejected (reported to the client as a 400 after the valid ones are stored,
/// as Mimir does, so a sender that drops the request on 400 loses only the
/// invalid series).
#[derive(Debug, Default)]
pub struct Validated {
    /// Series in the request, valid or not.
    pub total: usize,
    pub series: Vec<Series>,
    pub samples: usize,
    pub rejected: usize,
    pub first_error: Option<(String, String)>,
    /// Native histograms, exemplars and metadata of the valid series.
    pub sidecar: Sidecar,
    /// Labels of the first valid series in request order (HA pairs are
    /// decided on it), whether it carried floats or not.
    pub first_labels: Option<Labels>,
    /// Metadata already in `sidecar` (senders repeat it per series).
    seen_metadata: HashSet<MetricMetadata>,
}

/// One series of a request that passed validation.
pub(crate) struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<Histogram>,
    pub exemplars: Vec<Exemplar>,
}

impl Validated {
    /// Takes one series' outcome: stored if it carries anything, counted if
    /// invalid.
    pub(crate) fn add(&mut self, series: Result<SeriesData, (String, String)>) {
        match series {
            Ok(d) => {
                if self.first_labels.is_none() {
                    self.first_labels = Some(d.labels.clone());
                }
                if !d.histograms.is_empty() {
                    self.sidecar.histograms.push(HistogramSeries {
                        labels: d.labels.clone(),
                        histograms: d.histograms,
                    });
                }
                if !d.exemplars.is_empty() {
                    self.sidecar.exemplars.push(ExemplarSeries {
                        labels: d.labels.clone(),
                        exemplars: d.exemplars,
                    });
                }
                if !d.samples.is_empty() {
                    self.samples += d.samples.len();
                    self.series.push(Series {
                        labels: d.labels,
                        samples: d.samples,
                    });
                }
            }
            Err(e) => {
                self.rejected += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// Adds metadata once per request.
    pub(crate) fn add_metadata(&mut self, m: Option<MetricMetadata>) {
        if let Some(m) = m
            && !self.seen_metadata.contains(&m)
        {
            self.seen_metadata.insert(m.clone());
            self.sidecar.metadata.push(m);
        }
    }

    pub fn histograms(&self) -> usize {
        self.sidecar.histogram_count()
    }

    pub fn exemplars(&self) -> usize {
        self.sidecar.exemplar_count()
    }

    pub fn error(&self) -> Option<IngestError> {
        let (series, reason) = self.first_error.clone()?;
        Some(IngestError::InvalidSeries {
            rejected: self.rejected,
            total: self.total,
            series,
            reason,
        })
    }
}

/// The histograms and exemplars of a series whose labels passed: checked,
/// then joined with the samples (the error is the series' rejection reason).
fn series_data(
    labels: Labels,
    samples: Vec<Sample>,
    histograms: Vec<Histogram>,
    exemplars: Vec<proto::Exemplar>,
) -> Result<SeriesData, String> {
    extras::check_histograms(&histograms)?;
    let mut out = Vec::with_capacity(exemplars.len());
    for e in exemplars {
        let l = extras::exemplar_labels(e.labels.into_iter().map(|l| (l.name, l.value)))?;
        out.push(extras::exemplar(
            l,
            e.value,
            e.timestamp,
            &samples,
            &histograms,
        )?);
    }
    Ok(SeriesData {
        labels,
        samples,
        histograms,
        exemplars: out,
    })
}

/// 1.0 metadata as stored.
fn metadata_of(m: &proto::MetricMetadata) -> Option<MetricMetadata> {
    extras::metadata(&m.metric_family_name, m.r#type, &m.help, &m.unit)
}

/// Decompresses, decodes and validates a remote-write 1.0 body in one pass,
/// taking the label sets of known series from `cache` (see
/// [`SeriesCache`]). Equivalent to [`decode`] then [`validate`], which stay as
/// the reference (and the test oracle) for this path.
pub fn decode_validated(
    body: &[u8],
    max_decoded: usize,
    limits: &SeriesLimits,
    cache: &SeriesCache,
) -> Result<Validated, IngestError> {
    let raw = decompress(body, max_decoded)?;
    let mut out = Validated::default();
    let mut scratch = Scratch::default();
    let mut w = Wire::new(&raw);
    while !w.done() {
        let (field, wire) = w.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                let ts = w.bytes()?;
                out.total += 1;
                out.add(time_series(ts, limits, cache, &mut scratch)?);
            }
            // Metadata is rare (Prometheus sends it once a minute, apart
            // from samples): prost decodes it, refusing what prost refuses.
            (3, WIRE_LEN) => {
                let m = <proto::MetricMetadata as prost::Message>::decode(w.bytes()?)
                    .map_err(|e| Wire::err(&format!("metadata: {e}")))?;
                out.add_metadata(metadata_of(&m));
            }
            (1 | 3, other) => {
                return Err(Wire::err(&format!(
                    "field {field} has wire type {other}, expected length-delimited"
                )));
            }
            _ => w.skip(field, wire, RECURSION_LIMIT)?,
        }
    }
    Ok(out)
}

/// Buffers reused from series to series of a request (this runs for every
/// series of every request: no allocation but the samples').
#[derive(Default)]
struct Scratch {
    /// Byte ranges of a series' label fields (key, length and payload).
    label_fields: Vec<(usize, usize)>,
    /// The label fields' bytes, when they are not contiguous.
    raw: Vec<u8>,
}

/// One `TimeSeries` message: the outer error is a malformed message (the
/// whole request is bad), the inner one an invalid series. Floats take the
/// fast path; exemplars and histograms (rare) are decoded by prost once the
/// series' labels are known.
fn time_series(
    ts: &[u8],
    limits: &SeriesLimits,
    cache: &SeriesCache,
    scratch: &mut Scratch,
) -> Result<Result<SeriesData, (String, String)>, IngestError> {
    let Scratch { label_fields, raw } = scratch;
    label_fields.clear();
    let mut samples = Vec::new();
    let mut exemplars: Vec<&[u8]> = Vec::new();
    let mut histograms: Vec<&[u8]> = Vec::new();
    let mut w = Wire::new(ts);
    while !w.done() {
        let start = w.pos;
        let (field, wire) = w.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => {
                w.bytes()?;
                label_fields.push((start, w.pos));
            }
            (2, WIRE_LEN) => samples.push(sample(w.bytes()?)?),
            (3, WIRE_LEN) => exemplars.push(w.bytes()?),
            (4, WIRE_LEN) => histograms.push(w.bytes()?),
            (1..=4, other) => {
                return Err(Wire::err(&format!(
                    "TimeSeries field {field} has wire type {other}, expected length-delimited"
                )));
            }
            _ => w.skip(field, wire, RECURSION_LIMIT - 1)?,
        }
    }
    // The cache key: the label fields' bytes, one slice when contiguous (as
    // every sender writes them).
    let contiguous = label_fields.windows(2).all(|p| p[0].1 == p[1].0);
    let raw: &[u8] = match (label_fields.first(), label_fields.last()) {
        (Some(first), Some(last)) if contiguous => &ts[first.0..last.1],
        _ => {
            raw.clear();
            for &(a, b) in label_fields.iter() {
                raw.extend_from_slice(&ts[a..b]);
            }
            raw
        }
    };
    let labels = match cache.get(raw) {
        Some(labels) => Ok(labels),
        None => {
            let mut pairs = Vec::with_capacity(label_fields.len());
            for &(a, b) in label_fields.iter() {
                let mut w = Wire::new(&ts[a..b]);
                w.key()?;
                pairs.push(label(w.bytes()?)?);
            }
            labels_of(pairs, limits).inspect(|labels| cache.insert(raw, labels.clone()))
        }
    };
    if exemplars.is_empty() && histograms.is_empty() {
        // Floats only, as most series are.
        return Ok(labels.map(|labels| SeriesData {
            labels,
            samples,
            histograms: Vec::new(),
            exemplars: Vec::new(),
        }));
    }
    // Malformed exemplars or histograms make the whole request malformed (as
    // a full decode would), even in an invalid series: decode them first.
    let exemplars = exemplars
        .into_iter()
        .map(|b| proto::Exemplar::decode(b).map_err(|e| Wire::err(&format!("exemplar: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let histograms = histograms
        .into_iter()
        .map(|b| Histogram::decode(b).map_err(|e| Wire::err(&format!("histogram: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(labels.and_then(|labels| {
        let describe = describe(labels.iter().map(|l| (&*l.name, &*l.value)));
        series_data(labels, samples, histograms, exemplars).map_err(|reason| (describe, reason))
    }))
}

fn label(msg: &[u8]) -> Result<proto::Label, IngestError> {
    let mut l = proto::Label::default();
    let mut w = Wire::new(msg);
    while !w.done() {
        let (field, wire) = w.key()?;
        match (field, wire) {
            (1, WIRE_LEN) => l.name = utf8(w.bytes()?)?,
            (2, WIRE_LEN) => l.value = utf8(w.bytes()?)?,
            (1 | 2, other) => {
                return Err(Wire::err(&format!(
                    "Label field {field} has wire type {other}"
                )));
            }
            _ => w.skip(field, wire, RECURSION_LIMIT - 2)?,
        }
    }
    Ok(l)
}

fn utf8(b: &[u8]) -> Result<String, IngestError> {
    std::str::from_utf8(b).map(str::to_owned).map_err(|_| {
        IngestError::Protobuf("invalid string value: data is not UTF-8 encoded".into())
    })
}

fn sample(msg: &[u8]) -> Result<Sample, IngestError> {
    // What senders write: the value (field 1, fixed64), then the timestamp
    // (field 2, varint), nothing else. Anything else, or a bad varint, takes
    // the general walk below, which also gives the errors.
    if let [0x09, b0, b1, b2, b3, b4, b5, b6, b7, 0x10, rest @ ..] = msg {
        let mut w = Wire::new(rest);
        if let Ok(t) = w.varint()
            && w.done()
        {
            let v = f64::from_bits(u64::from_le_bytes([*b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7]));
            return Ok(Sample::new(t as i64, v));
        }
    }
    let mut s = Sample::new(0, 0.0);
    let mut w = Wire::new(msg);
    while !w.done() {
        let (field, wire) = w.key()?;
        match (field, wire) {
            (1, WIRE_FIXED64) => s.v = f64::from_bits(w.fixed64()?),
            (2, WIRE_VARINT) => s.t = w.varint()? as i64, // int64: two's complement
            (1 | 2, other) => {
                return Err(Wire::err(&format!(
                    "Sample field {field} has wire type {other}"
                )));
            }
            _ => w.skip(field, wire, RECURSION_LIMIT - 2)?,
        }
    }
    Ok(s)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;
/// prost's recursion limit (`prost::RECURSION_LIMIT`, not exported).
const RECURSION_LIMIT: u32 = 100;

/// A cursor over protobuf wire format that never reads past its buffer.
struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(what: &str) -> IngestError {
        IngestError::Protobuf(format!("malformed WriteRequest: {what}"))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, IngestError> {
        // Keys and short lengths: most varints of a request are one byte,
        // and this runs several times per sample.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, IngestError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| Self::err("truncated varint"))?;
            self.pos += 1;
            // The tenth byte holds bit 63 only: anything more overflows
            // 64 bits, which prost refuses (found by fuzzing).
            if i == 9 && b > 1 {
                return Err(Self::err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Self::err("varint longer than 10 bytes"))
    }

    #[inline]
    fn key(&mut self) -> Result<(u64, u8), IngestError> {
        let k = self.varint()?;
        // Protobuf keys are 32-bit: field numbers 1..=2^29-1 (prost refuses
        // the rest as an invalid key, and so must this decoder).
        if k > u64::from(u32::MAX) {
            return Err(Self::err("key does not fit 32 bits"));
        }
        let field = k >> 3;
        if field == 0 {
            return Err(Self::err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], IngestError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Self::err("truncated field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], IngestError> {
        let n = usize::try_from(self.varint()?).map_err(|_| Self::err("length overflow"))?;
        self.take(n)
    }

    fn fixed64(&mut self) -> Result<u64, IngestError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Skips an unknown field as prost does, groups included (a legal if
    /// deprecated encoding no sender uses; found by fuzzing). `budget` is
    /// what is left of prost's recursion limit at this message depth
    /// (`RECURSION_LIMIT` minus the depth), so both refuse the same nesting.
    fn skip(&mut self, field: u64, wire: u8, budget: u32) -> Result<(), IngestError> {
        if budget == 0 {
            return Err(Self::err("recursion limit reached"));
        }
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            WIRE_START_GROUP => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == WIRE_END_GROUP {
                    if inner != field {
                        return Err(Self::err("unexpected end group tag"));
                    }
                    return Ok(());
                }
                self.skip(inner, inner_wire, budget - 1)?;
            },
            WIRE_END_GROUP => Err(Self::err("unexpected end group tag")),
            other => Err(Self::err(&format!("unsupported wire type {other}"))),
        }
    }
}

/// Converts and validates every series of a request (the reference for
/// [`decode_validated`]).
pub fn validate(req: impl Into<proto::FullWriteRequest>, limits: &SeriesLimits) -> Validated {
    let req: proto::FullWriteRequest = req.into();
    let mut out = Validated {
        total: req.timeseries.len(),
        ..Default::default()
    };
    for ts in req.timeseries {
        out.add(to_series(ts, limits));
    }
    for m in &req.metadata {
        out.add_metadata(metadata_of(m));
    }
    out
}

fn to_series(
    ts: proto::FullTimeSeries,
    limits: &SeriesLimits,
) -> Result<SeriesData, (String, String)> {
    let labels = labels_of(ts.labels, limits)?;
    let samples = ts
        .samples
        .iter()
        .map(|s| Sample::new(s.timestamp, s.value))
        .collect();
    let describe = describe(labels.iter().map(|l| (&*l.name, &*l.value)));
    series_data(labels, samples, ts.histograms, ts.exemplars).map_err(|reason| (describe, reason))
}

/// Checks a series' labels (limits, names, order, metric name) and builds its
/// label set; the error is (series description, reason).
fn labels_of(labels: Vec<proto::Label>, limits: &SeriesLimits) -> Result<Labels, (String, String)> {
    let ts = proto::TimeSeries {
        labels,
        samples: Vec::new(),
        exemplars: Vec::new(),
    };
    let fail = |reason: String| {
        (
            describe(ts.labels.iter().map(|l| (&*l.name, &*l.value))),
            reason,
        )
    };
    if ts.labels.len() > limits.max_label_names_per_series {
        return Err(fail(format!(
            "{} labels exceed the limit of {} label names per series",
            ts.labels.len(),
            limits.max_label_names_per_series
        )));
    }
    for l in &ts.labels {
        if l.name.len() > limits.max_label_name_length {
            return Err(fail(format!(
                "label name longer than {} bytes",
                limits.max_label_name_length
            )));
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(fail(format!(
                "value of label {} longer than {} bytes",
                l.name, limits.max_label_value_length
            )));
        }
    }
    // An empty value means "no such label" in Prometheus: drop it, as the
    // Prometheus TSDB does, rather than reject the series. The strings are
    // moved, not copied: this runs for every label of every request, and the
    // description for an error message is only built on the error path.
    let pairs: Vec<Label> = ts
        .labels
        .into_iter()
        .filter(|l| !l.value.is_empty())
        .map(|l| Label::new(l.name, l.value))
        .collect();
    let describe_pairs = |pairs: &[Label]| describe(pairs.iter().map(|l| (&*l.name, &*l.value)));
    if let Err(e) = storage::labels::check_sorted(&pairs) {
        return Err((describe_pairs(&pairs), e.to_string()));
    }
    let labels = Labels::from_sorted(pairs).map_err(|e| (String::new(), e.to_string()))?;
    labels
        .validate()
        .map_err(|e| (describe_pairs(labels.as_slice()), e.to_string()))?;
    Ok(labels)
}

/// `{a="b", c="d"}`, cut at 200 bytes, for error messages.
fn describe<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s: String = labels
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if s.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    format!("{{{s}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> proto::Label {
        proto::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn ts(labels: Vec<proto::Label>, samples: &[(i64, f64)]) -> proto::TimeSeries {
        proto::TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            exemplars: vec![],
        }
    }

    fn encode(req: &proto::WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy")
    }

    #[test]
    fn decodes_a_valid_request() {
        let req = proto::WriteRequest {
            timeseries: vec![ts(
                vec![label("__name__", "up"), label("job", "a")],
                &[(1, 1.0), (2, f64::NAN)],
            )],
            metadata: vec![],
        };
        let got = decode(&encode(&req), 1 << 20).expect("decode");
        assert_eq!(got.encode_to_vec(), req.encode_to_vec());
        let v = validate(got, &SeriesLimits::default());
        assert_eq!((v.series.len(), v.samples, v.rejected), (1, 2, 0));
        assert!(v.series[0].samples[1].v.is_nan());
    }

    #[test]
    fn bad_bodies_are_named_errors() {
        let good = encode(&proto::WriteRequest {
            timeseries: vec![ts(vec![label("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        });
        assert!(matches!(
            decode(&good[..good.len() / 2], 1 << 20),
            Err(IngestError::Snappy(_))
        ));
        assert!(matches!(decode(b"", 1 << 20), Err(IngestError::Snappy(_))));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff\xff not protobuf")
            .expect("snappy");
        assert!(matches!(
            decode(&garbage, 1 << 20),
            Err(IngestError::Protobuf(_))
        ));
        assert!(matches!(
            decode(&good, 3),
            Err(IngestError::DecodedTooLarge { .. })
        ));
        // A header claiming a huge size is refused before allocating.
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0x0f], 1 << 20),
            Err(IngestError::DecodedTooLarge { .. })
        ));
    }

    #[test]
    fn invalid_series_are_rejected_and_valid_ones_kept() {
        let limits = SeriesLimits {
            max_label_value_length: 8,
            ..Default::default()
        };
        let req = proto::WriteRequest {
            timeseries: vec![
                ts(
                    vec![label("__name__", "ok"), label("empty", "")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("job", "a"), label("__name__", "unsorted")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("__name__", "dup"), label("a", "1"), label("a", "2")],
                    &[(1, 1.0)],
                ),
                ts(vec![label("job", "no-name")], &[(1, 1.0)]),
                ts(vec![label("", "v"), label("__name__", "e")], &[(1, 1.0)]),
                // Prometheus 3 accepts any UTF-8 name.
                ts(
                    vec![label("1a", "v"), label("__name__", "a.b")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("__name__", "x"), label("a", "waytoolongvalue")],
                    &[(1, 1.0)],
                ),
            ],
            metadata: vec![],
        };
        let v = validate(req, &limits);
        assert_eq!(v.series.len(), 2, "{:?}", v.error());
        assert_eq!(v.series[0].labels.len(), 1, "empty-valued label dropped");
        assert_eq!(v.series[1].labels.get("__name__"), Some("a.b"));
        assert_eq!(v.series[1].labels.get("1a"), Some("v"));
        assert_eq!(v.rejected, 5);
        let err = v.error().expect("error").to_string();
        assert!(
            err.contains("5 of 7 series rejected") && err.contains("not sorted"),
            "{err}"
        );
    }

    /// Both paths must agree: same series (labels and samples bit for bit),
    /// same counts, same first error.
    fn assert_same(req: &impl Message, cache: &SeriesCache) {
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy");
        let limits = SeriesLimits {
            max_label_value_length: 8,
            ..Default::default()
        };
        let want = validate(decode(&body, 1 << 20).expect("decode"), &limits);
        let got = decode_validated(&body, 1 << 20, &limits, cache).expect("decode_validated");
        assert_eq!(
            (got.total, got.samples, got.rejected),
            (want.total, want.samples, want.rejected)
        );
        assert_eq!(got.first_error, want.first_error);
        assert_eq!(got.first_labels, want.first_labels);
        // Debug text: compares NaN sums as equal, which `PartialEq` cannot.
        assert_eq!(format!("{:?}", got.sidecar), format!("{:?}", want.sidecar));
        assert_eq!(got.series.len(), want.series.len());
        for (g, w) in got.series.iter().zip(&want.series) {
            assert_eq!(g.labels, w.labels);
            let bits = |s: &Series| {
                s.samples
                    .iter()
                    .map(|x| (x.t, x.v.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(g), bits(w));
        }
    }

    fn mixed_request() -> proto::WriteRequest {
        proto::WriteRequest {
            timeseries: vec![
                ts(
                    vec![
                        label("__name__", "ok"),
                        label("empty", ""),
                        label("job", "a"),
                    ],
                    &[(1, 1.0), (-5, f64::NAN)],
                ),
                ts(
                    vec![label("job", "a"), label("__name__", "unsorted")],
                    &[(1, 1.0)],
                ),
                ts(vec![label("__name__", "no_samples")], &[]),
                ts(
                    vec![label("__name__", "x"), label("a", "waytoolongvalue")],
                    &[(1, 1.0)],
                ),
                ts(
                    vec![label("__name__", "ok"), label("job", "b")],
                    &[(i64::MAX, f64::INFINITY), (i64::MIN, -0.0)],
                ),
                ts(vec![], &[(1, 1.0)]),
            ],
            metadata: vec![proto::MetricMetadata {
                r#type: 1,
                metric_family_name: "ok".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn the_cached_path_matches_the_reference_decoder() {
        let cache = SeriesCache::new(1000);
        let req = mixed_request();
        assert_same(&req, &cache); // cold cache
        assert_same(&req, &cache); // warm cache: the valid series hit
        assert_same(&req, &SeriesCache::new(0)); // no cache
        // Only valid label sets are cached.
        let raw = |labels: Vec<proto::Label>| {
            labels
                .iter()
                .flat_map(|l| {
                    let mut b = vec![0x0a];
                    let body = l.encode_to_vec();
                    b.push(body.len() as u8);
                    b.extend(body);
                    b
                })
                .collect::<Vec<u8>>()
        };
        assert!(
            cache
                .get(&raw(vec![label("__name__", "ok"), label("job", "b")]))
                .is_some()
        );
        assert!(
            cache
                .get(&raw(vec![label("job", "a"), label("__name__", "unsorted")]))
                .is_none()
        );
    }

    /// 1.0's histograms (field 4), exemplars and metadata: kept by both
    /// decoders alike, invalid ones rejecting their series.
    #[test]
    fn histograms_exemplars_and_metadata_match_the_reference_decoder() {
        use storage::histogram::{BucketSpan, Count};
        let h = |t: i64, schema: i32| Histogram {
            count: Some(Count::Int(2)),
            sum: f64::NAN,
            schema,
            positive_spans: vec![BucketSpan {
                offset: 0,
                length: 1,
            }],
            positive_deltas: vec![2],
            timestamp: t,
            ..Default::default()
        };
        let ex = |labels: Vec<proto::Label>, t: i64| proto::Exemplar {
            labels,
            value: 0.5,
            timestamp: t,
        };
        let full = |labels, samples: &[(i64, f64)], histograms, exemplars| {
            let s = ts(labels, samples);
            proto::FullTimeSeries {
                labels: s.labels,
                samples: s.samples,
                exemplars,
                histograms,
            }
        };
        let meta = |name: &str, t: i32, help: &str| proto::MetricMetadata {
            r#type: t,
            metric_family_name: name.into(),
            help: help.into(),
            unit: String::new(),
        };
        let req = proto::FullWriteRequest {
            timeseries: vec![
                full(
                    vec![label("__name__", "h")],
                    &[],
                    vec![h(5, 0), h(3, 1)],
                    vec![],
                ),
                full(
                    vec![label("__name__", "f"), label("job", "a")],
                    &[(10, 1.0), (20, 2.0)],
                    vec![],
                    // Unsorted exemplar labels are sorted; no time: the
                    // newest sample's.
                    vec![
                        ex(vec![label("z", "1"), label("a", "2")], 0),
                        ex(vec![], 15),
                    ],
                ),
                full(
                    vec![label("__name__", "bad_h")],
                    &[],
                    vec![h(1, 11)],
                    vec![],
                ),
                full(
                    vec![label("__name__", "bad_e")],
                    &[(1, 1.0)],
                    vec![],
                    vec![ex(vec![label("", "x")], 1)],
                ),
                full(
                    vec![label("__name__", "lonely")],
                    &[],
                    vec![],
                    vec![ex(vec![], 0)],
                ),
            ],
            metadata: vec![
                meta("f", 1, "F."),
                meta("f", 1, "F."),
                meta("", 2, "no name"),
                meta("nothing", 0, ""),
                meta("g", 99, "unknown type number"),
            ],
        };
        let cache = SeriesCache::new(100);
        assert_same(&req, &cache);
        assert_same(&req, &cache);
        let got = decode_validated(
            &snap::raw::Encoder::new()
                .compress_vec(&req.encode_to_vec())
                .expect("snappy"),
            1 << 20,
            &SeriesLimits::default(),
            &cache,
        )
        .expect("decode");
        assert_eq!((got.total, got.rejected), (5, 3));
        assert_eq!(got.histograms(), 2);
        assert_eq!(got.exemplars(), 2);
        let e = &got.sidecar.exemplars[0].exemplars;
        assert_eq!(e[0].labels.to_string(), r#"{a="2", z="1"}"#);
        assert_eq!((e[0].timestamp, e[1].timestamp), (20, 15));
        let names: Vec<_> = got
            .sidecar
            .metadata
            .iter()
            .map(|m| (m.metric_family_name.as_str(), m.metric_type.as_str()))
            .collect();
        assert_eq!(names, vec![("f", "counter"), ("g", "unknown")]);
        let err = got.error().expect("rejections").to_string();
        assert!(err.contains("histogram 0: histogram schema 11"), "{err}");
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields_are_handled() {
        // TimeSeries with samples before labels, labels split around a sample,
        // and an unknown field (99, varint) in between.
        let l1 = proto::Label {
            name: "__name__".into(),
            value: "m".into(),
        }
        .encode_to_vec();
        let l2 = proto::Label {
            name: "z".into(),
            value: "1".into(),
        }
        .encode_to_vec();
        let s1 = proto::Sample {
            value: 2.5,
            timestamp: 7,
        }
        .encode_to_vec();
        let mut ts = Vec::new();
        for (tag, body) in [(0x12u8, &s1), (0x0a, &l1), (0x12, &s1), (0x0a, &l2)] {
            ts.push(tag);
            ts.push(body.len() as u8);
            ts.extend_from_slice(body);
        }
        ts.extend_from_slice(&[0x98, 0x06, 0x01]); // field 99, varint 1
        let mut req = vec![0x0a, ts.len() as u8];
        req.extend(ts);
        let body = snap::raw::Encoder::new()
            .compress_vec(&req)
            .expect("snappy");
        let limits = SeriesLimits::default();
        let reference = validate(decode(&body, 1 << 20).expect("decode"), &limits);
        let cache = SeriesCache::new(10);
        for _ in 0..2 {
            let got = decode_validated(&body, 1 << 20, &limits, &cache).expect("decode");
            assert_eq!(got.series.len(), 1);
            assert_eq!(got.series[0].labels, reference.series[0].labels);
            assert_eq!(
                got.series[0].samples,
                vec![Sample::new(7, 2.5), Sample::new(7, 2.5)]
            );
        }
    }

    #[test]
    fn malformed_messages_are_protobuf_errors() {
        let cache = SeriesCache::new(10);
        let limits = SeriesLimits::default();
        let bodies: [&[u8]; 6] = [
            &[0x0a, 0x05, 0x0a], // length past the end
            &[0x0a],             // truncated length
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // 11-byte varint
            &[0x0b, 0x00],       // start-group wire type
            &[0x00, 0x00],       // field number 0
            &[0x0a, 0x04, 0x0a, 0x02, 0x0a, 0xff], // label name not UTF-8
        ];
        for b in bodies {
            let body = snap::raw::Encoder::new().compress_vec(b).expect("snappy");
            let got = decode_validated(&body, 1 << 20, &limits, &cache);
            assert!(
                matches!(got, Err(IngestError::Protobuf(_))),
                "{b:?}: {:?}",
                got.map(|v| v.series.len())
            );
        }
    }

    /// Both decoders on a snappy-compressed `raw` protobuf: prost's
    /// reference decode and the one-pass path the handler runs.
    fn decode_both(raw: &[u8]) -> (bool, Result<Validated, IngestError>) {
        let body = snap::raw::Encoder::new().compress_vec(raw).expect("snappy");
        let reference = decode(&body, 1 << 20).is_ok();
        let one_pass = decode_validated(
            &body,
            1 << 20,
            &SeriesLimits::default(),
            &SeriesCache::new(8),
        );
        (reference, one_pass)
    }

    fn assert_malformed_for_both(raw: &[u8]) {
        let (reference, got) = decode_both(raw);
        assert!(!reference, "prost refuses {raw:?}");
        assert!(
            matches!(got, Err(IngestError::Protobuf(_))),
            "{raw:?}: {:?}",
            got.map(|v| v.total)
        );
    }

    /// Found by fuzzing (`fuzz/corpus/remote_write/regression-key-over-32-bits`):
    /// a key varint past 32 bits was read as a huge field number and skipped,
    /// where prost (and the protobuf spec) refuse it.
    #[test]
    fn a_key_over_32_bits_is_malformed_as_prost_says() {
        assert_malformed_for_both(&[
            0xe2, 0xe2, 0xe2, 0xe2, 0xe2, 0x00, 0x0a, 0x2f, 0x0a, 0x0e, 0x0a, 0x08, 0x5f, 0xe2,
            0xe2, 0xe2, 0xe2, 0x28, 0x5f,
        ]);
    }

    /// Found by fuzzing (`fuzz/corpus/remote_write/regression-malformed-metadata`).
    #[test]
    fn malformed_metadata_and_wrong_wire_types_are_malformed_as_prost_says() {
        // field 3 (metadata) holding a truncated varint field; field 1 (a
        // series) as a varint; field 3 as a fixed32
        for raw in [&[0x1a, 0x01, 0x08][..], &[0x08, 0x01], &[0x1d, 0, 0, 0, 0]] {
            assert_malformed_for_both(raw);
        }
        // Well-formed metadata is accepted (and not stored).
        let (reference, got) = decode_both(&[0x1a, 0x02, 0x08, 0x01]);
        assert!(reference);
        assert_eq!(got.expect("valid").total, 0);
    }

    /// Found by fuzzing (`fuzz/corpus/remote_write/regression-varint-overflow`):
    /// a ten-byte varint whose last byte carries more than bit 63 was read
    /// (overflowing silently), where prost refuses it.
    #[test]
    fn a_varint_over_64_bits_is_malformed_as_prost_says() {
        let over = [
            0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ];
        assert_malformed_for_both(&over);
        // Exactly 64 bits is fine for both.
        let max = [
            0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let (reference, got) = decode_both(&max);
        assert!(reference && got.is_ok());
    }

    /// Samples in the shape senders write take a fast path; every other
    /// encoding of a sample (fields swapped, repeated, extra, missing, a
    /// long or broken timestamp) must still decode as prost decodes it.
    #[test]
    fn every_sample_encoding_decodes_as_prost_decodes_it() {
        let v = |x: f64| {
            let mut b = vec![0x09];
            b.extend(x.to_bits().to_le_bytes());
            b
        };
        let cat = |parts: &[&[u8]]| parts.concat();
        let samples: Vec<Vec<u8>> = vec![
            cat(&[&v(1.5), &[0x10, 0x07]]), // the usual shape
            cat(&[&v(-2.0), &[0x10, 0xe8, 0x9f, 0xd5, 0x8c, 0xc6, 0x31]]), // a ms timestamp
            cat(&[&[0x10, 0x07], &v(1.5)]), // swapped
            cat(&[&v(1.0), &[0x10, 0x07], &v(2.0)]), // value repeated: last wins
            cat(&[&v(1.0), &[0x10, 0x07, 0x10, 0x08]]), // timestamp repeated
            cat(&[&v(1.0), &[0x10, 0x07, 0x18, 0x01]]), // an unknown field after
            cat(&[&v(1.0)]),                // no timestamp
            cat(&[&v(1.0), &[0x10]]),       // truncated timestamp
            cat(&[&v(1.0), &[0x10, 0x87]]), // timestamp varint cut short
            cat(&[&v(1.0), &[0x10, 0x87, 0x00]]), // non-minimal varint
            cat(&[&v(1.0), &[0x10], &[0xff; 9], &[0x01]]), // -1 as int64
            cat(&[&v(1.0), &[0x10], &[0xff; 9], &[0x02]]), // over 64 bits
            cat(&[&v(f64::NAN)[..5]]),      // value cut short
        ];
        // A series `{__name__="m"}` holding one of them.
        let label = cat(&[&[0x0a, 0x08], b"__name__", &[0x12, 0x01], b"m"]);
        let mut decoded = 0;
        for sample in &samples {
            let mut series = vec![0x0a, label.len() as u8];
            series.extend(&label);
            series.extend([0x12, sample.len() as u8]);
            series.extend(sample);
            let mut raw = vec![0x0a, series.len() as u8];
            raw.extend(&series);
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy");
            let reference = decode(&body, 1 << 20).map(|r| validate(r, &SeriesLimits::default()));
            let got = decode_validated(
                &body,
                1 << 20,
                &SeriesLimits::default(),
                &SeriesCache::new(8),
            );
            match (reference, got) {
                (Ok(want), Ok(got)) => {
                    let bits = |v: &Validated| {
                        v.series
                            .iter()
                            .flat_map(|s| s.samples.iter().map(|x| (x.t, x.v.to_bits())))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(bits(&got), bits(&want), "{sample:02x?}");
                    assert_eq!(got.samples, 1, "{sample:02x?}");
                    decoded += 1;
                }
                (Err(_), Err(IngestError::Protobuf(_))) => {}
                (want, got) => panic!(
                    "{sample:02x?}: prost {:?}, one pass {:?}",
                    want.map(|v| v.samples),
                    got.map(|v| v.samples)
                ),
            }
        }
        // All but the four broken ones (truncated or cut-short timestamps,
        // one over 64 bits, a cut-short value).
        assert_eq!(decoded, samples.len() - 4);
    }

    /// Found by fuzzing (`fuzz/corpus/remote_write/regression-unknown-group`):
    /// an unknown field encoded as a group (wire types 3 and 4) is skipped by
    /// prost and was refused by the one-pass decoder.
    #[test]
    fn unknown_groups_are_skipped_as_prost_skips_them() {
        // field 6 as an empty group, at the request and the series level;
        // a group holding a varint and a nested group
        for raw in [
            &[0x33, 0x34][..],
            &[0x0a, 0x02, 0x33, 0x34],
            &[0x33, 0x08, 0x01, 0x3b, 0x3c, 0x34],
        ] {
            let (reference, got) = decode_both(raw);
            assert!(reference, "prost accepts {raw:?}");
            assert!(got.is_ok(), "{raw:?}: {:?}", got.map(|v| v.total));
        }
        // An end without its start, a mismatched end, an unterminated group,
        // and groups nested past prost's recursion limit.
        let deep: Vec<u8> = std::iter::repeat_n(0x33, 101)
            .chain(std::iter::repeat_n(0x34, 101))
            .collect();
        for raw in [&[0x34][..], &[0x33, 0x3c], &[0x33, 0x08, 0x01], &deep] {
            assert_malformed_for_both(raw);
        }
        // Just inside the limit is fine for both.
        let inside: Vec<u8> = std::iter::repeat_n(0x33, 100)
            .chain(std::iter::repeat_n(0x34, 100))
            .collect();
        let (reference, got) = decode_both(&inside);
        assert!(reference && got.is_ok());
    }
}
