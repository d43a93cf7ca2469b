//! OTLP metrics to Prometheus series, as Prometheus 3's OTLP receiver
//! translates them with its default settings. Pure: no I/O, no clock.
//!
//! - Names: `names` (`UnderscoreEscapingWithSuffixes`).
//! - Labels of a data point: its attributes (names normalized; attributes
//!   that normalize to the same name are joined with `;` in key order), then
//!   `job` = `service.namespace/service.name` (or `service.name`) and
//!   `instance` = `service.instance.id` from the resource, which win over
//!   attributes of those names. No other resource attribute and no scope
//!   name, version or attribute becomes a label (Prometheus' defaults:
//!   `promote_resource_attributes` empty, `promote_scope_metadata` off).
//!   Empty values are dropped, as Prometheus' TSDB drops them.
//! - `target_info` (gauge 1) per resource with `job` or `instance` and at
//!   least one other attribute: the other attributes as labels, a sample at
//!   the first data point's time, then every 2.5 minutes (half the default
//!   lookback delta) and at the last one, so it joins with every sample
//!   (at most 2000 samples, ending at the last point).
//! - Gauges and cumulative sums: one float sample per point (`_total` for
//!   monotonic sums, non-monotonic sums are gauges). Cumulative histograms:
//!   `_bucket{le}` (cumulative), `_sum` (when set) and `_count`. Summaries:
//!   `{quantile}`, `_sum`, `_count`. Cumulative exponential histograms:
//!   native histograms (`exponential`).
//! - Delta and unspecified temporality are refused (Prometheus 3 without its
//!   delta feature flags): the metric's points are rejected, nothing is
//!   converted.
//! - A point flagged `no_recorded_value` becomes a staleness marker in every
//!   series it produces. Start times are not stored (Prometheus' default:
//!   no `_created` series).
//! - Exemplars: of sums on the series, of histograms on the first bucket
//!   whose bound holds their value, of exponential histograms on the native
//!   histogram; gauges' and summaries' exemplars are dropped (as
//!   Prometheus). Labels `trace_id`/`span_id` (hex) and the filtered
//!   attributes, these only when everything fits in 128 characters.
//! - Metadata (type, description, unit) per metric family.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use storage::sample::stale_nan;
use storage::sidecar::{
    Exemplar, ExemplarSeries, HistogramSeries, MetricMetadata, MetricType, Sidecar,
};
use storage::{Label, Labels, METRIC_NAME, Sample, Series};

use super::exponential;
use super::names::{self, Kind};
use crate::remote_write::SeriesLimits;

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
const TARGET_INFO: &str = "target_info";
/// Half of PromQL's default lookback delta (5 m): the step of `target_info`
/// samples between a resource's first and last data point.
const TARGET_INFO_STEP_MS: i64 = 150_000;
/// Most `target_info` samples per resource and request (about 3.5 days at
/// the step above): a request mixing a point at time 0 with one from today
/// must not make millions of samples.
const MAX_TARGET_INFO_SAMPLES: i64 = 2_000;
/// Exemplar labels longer than this (in characters, names and values) lose
/// their filtered attributes (OpenMetrics' exemplar limit).
const MAX_EXEMPLAR_RUNES: usize = 128;
const NO_RECORDED_VALUE: u32 = 1;

/// The translation of one request.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: Vec<Series>,
    pub sidecar: Sidecar,
    /// Data points in the request.
    pub points: usize,
    /// Data points not stored, and why the first one was not.
    pub rejected: usize,
    pub first_error: Option<String>,
    /// Float samples in `series`.
    pub samples: usize,
}

impl Translated {
    /// Label sets produced (float and native histogram series).
    pub fn series_count(&self) -> usize {
        self.series.len() + self.sidecar.histograms.len()
    }

    fn reject(&mut self, points: usize, metric: &str, reason: String) {
        if points == 0 {
            return;
        }
        self.rejected += points;
        self.first_error
            .get_or_insert_with(|| format!("metric {metric:?}: {reason}"));
    }
}

/// Milliseconds of an OTLP timestamp (nanoseconds since the epoch).
pub fn millis(unix_nano: u64) -> i64 {
    (unix_nano / 1_000_000) as i64
}

/// Translates a decoded request; label sets are checked against `limits`.
pub fn translate<'a>(req: &'a ExportMetricsServiceRequest, limits: &'a SeriesLimits) -> Translated {
    let mut t = Translator {
        out: Translated::default(),
        limits,
        float_index: HashMap::new(),
        histogram_index: HashMap::new(),
        exemplar_index: HashMap::new(),
        label_names: HashMap::new(),
        metadata: HashSet::new(),
        previous: None,
    };
    for rm in &req.resource_metrics {
        let attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
        let resource = Resource::new(attrs);
        let mut times: Option<(i64, i64)> = None;
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                if let Some((lo, hi)) = t.metric(&resource, metric) {
                    times = Some(match times {
                        None => (lo, hi),
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                    });
                }
            }
        }
        if let Some((lo, hi)) = times {
            t.target_info(&resource, attrs, lo, hi);
        }
    }
    t.out
}

/// What the labels of every series of one resource share.
struct Resource {
    job: Option<String>,
    instance: Option<String>,
}

impl Resource {
    fn new(attrs: &[KeyValue]) -> Self {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_string(kv.value.as_ref()))
        };
        let job = get(SERVICE_NAME).map(|name| match get(SERVICE_NAMESPACE) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        });
        Self {
            job,
            instance: get(SERVICE_INSTANCE_ID),
        }
    }
}

struct Translator<'a> {
    out: Translated,
    limits: &'a SeriesLimits,
    float_index: HashMap<Labels, usize>,
    histogram_index: HashMap<Labels, usize>,
    exemplar_index: HashMap<Labels, usize>,
    /// Normalized attribute names of this request.
    label_names: HashMap<String, String>,
    metadata: HashSet<MetricMetadata>,
    /// Attributes and labels of the last gauge or sum point of the current
    /// metric: consecutive points of one series (a batch of several
    /// timestamps) reuse its labels instead of building them again.
    previous: Option<(&'a [KeyValue], Labels)>,
}

/// Sorted labels of a data point without the metric name.
type Base = Vec<Label>;

impl<'a> Translator<'a> {
    /// Translates one metric; returns the time range of its stored points.
    fn metric(&mut self, res: &Resource, m: &'a Metric) -> Option<(i64, i64)> {
        self.previous = None;
        let Some(data) = &m.data else {
            return None;
        };
        let (kind, temporality, points) = match data {
            Data::Gauge(g) => (Kind::Gauge, None, g.data_points.len()),
            Data::Sum(s) => (
                if s.is_monotonic {
                    Kind::MonotonicSum
                } else {
                    Kind::NonMonotonicSum
                },
                Some(s.aggregation_temporality),
                s.data_points.len(),
            ),
            Data::Histogram(h) => (
                Kind::Histogram,
                Some(h.aggregation_temporality),
                h.data_points.len(),
            ),
            Data::ExponentialHistogram(h) => (
                Kind::ExponentialHistogram,
                Some(h.aggregation_temporality),
                h.data_points.len(),
            ),
            Data::Summary(s) => (Kind::Summary, None, s.data_points.len()),
        };
        self.out.points += points;
        if let Some(temporality) = temporality
            && temporality != AggregationTemporality::Cumulative as i32
        {
            let reason = if temporality == AggregationTemporality::Delta as i32 {
                "delta temporality is not supported (send cumulative data, for example through the collector's deltatocumulative processor)".to_string()
            } else {
                format!("invalid aggregation temporality {temporality}")
            };
            self.out.reject(points, &m.name, reason);
            return None;
        }
        let name = match names::metric_name(&m.name, &m.unit, kind) {
            Ok(n) => n,
            Err(e) => {
                self.out.reject(points, &m.name, e);
                return None;
            }
        };
        let metric_type = match kind {
            Kind::Gauge | Kind::NonMonotonicSum => MetricType::Gauge,
            Kind::MonotonicSum => MetricType::Counter,
            Kind::Histogram | Kind::ExponentialHistogram => MetricType::Histogram,
            Kind::Summary => MetricType::Summary,
        };
        let meta = MetricMetadata {
            metric_family_name: name.clone(),
            metric_type,
            help: m.description.clone(),
            unit: m.unit.clone(),
        };
        if self.metadata.insert(meta.clone()) {
            self.out.sidecar.metadata.push(meta);
        }
        let mut range: Option<(i64, i64)> = None;
        let mut stored = |t: i64| {
            range = Some(range.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        };
        match data {
            Data::Gauge(g) => {
                for p in &g.data_points {
                    if self.number(res, &m.name, &name, p, false) {
                        stored(millis(p.time_unix_nano));
                    }
                }
            }
            Data::Sum(s) => {
                for p in &s.data_points {
                    if self.number(res, &m.name, &name, p, true) {
                        stored(millis(p.time_unix_nano));
                    }
                }
            }
            Data::Histogram(h) => {
                for p in &h.data_points {
                    if self.histogram(res, &m.name, &name, p) {
                        stored(millis(p.time_unix_nano));
                    }
                }
            }
            Data::ExponentialHistogram(h) => {
                for p in &h.data_points {
                    let t = millis(p.time_unix_nano);
                    let stale = p.flags & NO_RECORDED_VALUE != 0;
                    let built = exponential::to_native(p, stale).and_then(|hist| {
                        let labels = self.labels(res, &p.attributes, &name, &[])?;
                        Ok((labels, hist))
                    });
                    match built {
                        Ok((labels, hist)) => {
                            self.add_exemplars(&labels, &p.exemplars);
                            self.add_histogram(labels, hist);
                            stored(t);
                        }
                        Err(e) => self.out.reject(1, &m.name, e),
                    }
                }
            }
            Data::Summary(s) => {
                for p in &s.data_points {
                    if self.summary(res, &m.name, &name, p) {
                        stored(millis(p.time_unix_nano));
                    }
                }
            }
        }
        range
    }

    /// A gauge or sum point; sums keep their exemplars.
    fn number(
        &mut self,
        res: &Resource,
        metric: &str,
        name: &str,
        p: &'a NumberDataPoint,
        exemplars: bool,
    ) -> bool {
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None => {
                self.out
                    .reject(1, metric, "data point has no value".to_string());
                return false;
            }
        };
        let labels = match &self.previous {
            Some((attrs, labels)) if *attrs == p.attributes.as_slice() => labels.clone(),
            _ => match self.labels(res, &p.attributes, name, &[]) {
                Ok(l) => {
                    self.previous = Some((&p.attributes, l.clone()));
                    l
                }
                Err(e) => {
                    self.out.reject(1, metric, e);
                    return false;
                }
            },
        };
        let v = if p.flags & NO_RECORDED_VALUE != 0 {
            stale_nan()
        } else {
            value
        };
        if exemplars {
            self.add_exemplars(&labels, &p.exemplars);
        }
        self.add_sample(labels, millis(p.time_unix_nano), v);
        true
    }

    fn histogram(
        &mut self,
        res: &Resource,
        metric: &str,
        name: &str,
        p: &HistogramDataPoint,
    ) -> bool {
        let base = match self.base(res, &p.attributes) {
            Ok(b) => b,
            Err(e) => {
                self.out.reject(1, metric, e);
                return false;
            }
        };
        let t = millis(p.time_unix_nano);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { stale_nan() } else { v };
        let bucket_name = format!("{name}_bucket");
        let mut out: Vec<(Labels, f64)> = Vec::with_capacity(p.explicit_bounds.len() + 3);
        // (bound, index in `out`) of each bucket, for the exemplars.
        let mut buckets: Vec<(f64, usize)> = Vec::with_capacity(p.explicit_bounds.len() + 1);
        let built = (|| {
            if let Some(sum) = p.sum {
                out.push((self.finish(&base, &format!("{name}_sum"), &[])?, value(sum)));
            }
            out.push((
                self.finish(&base, &format!("{name}_count"), &[])?,
                value(p.count as f64),
            ));
            let mut cumulative: u64 = 0;
            for (bound, count) in p.explicit_bounds.iter().zip(&p.bucket_counts) {
                cumulative = cumulative.saturating_add(*count);
                let le = format_float(*bound);
                buckets.push((*bound, out.len()));
                out.push((
                    self.finish(&base, &bucket_name, &[("le", &le)])?,
                    value(cumulative as f64),
                ));
            }
            buckets.push((f64::INFINITY, out.len()));
            out.push((
                self.finish(&base, &bucket_name, &[("le", "+Inf")])?,
                value(p.count as f64),
            ));
            Ok::<(), String>(())
        })();
        if let Err(e) = built {
            self.out.reject(1, metric, e);
            return false;
        }
        if !p.exemplars.is_empty() {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            for e in &p.exemplars {
                let Some(ex) = exemplar_of(e, &mut self.label_names) else {
                    continue;
                };
                if let Some(&(_, i)) = buckets.iter().find(|(bound, _)| ex.value <= *bound) {
                    let labels = out[i].0.clone();
                    self.push_exemplar(labels, ex);
                }
            }
        }
        for (labels, v) in out {
            self.add_sample(labels, t, v);
        }
        true
    }

    fn summary(&mut self, res: &Resource, metric: &str, name: &str, p: &SummaryDataPoint) -> bool {
        let base = match self.base(res, &p.attributes) {
            Ok(b) => b,
            Err(e) => {
                self.out.reject(1, metric, e);
                return false;
            }
        };
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { stale_nan() } else { v };
        let built = (|| {
            let mut out = vec![
                (
                    self.finish(&base, &format!("{name}_sum"), &[])?,
                    value(p.sum),
                ),
                (
                    self.finish(&base, &format!("{name}_count"), &[])?,
                    value(p.count as f64),
                ),
            ];
            for q in &p.quantile_values {
                let quantile = format_float(q.quantile);
                out.push((
                    self.finish(&base, name, &[("quantile", &quantile)])?,
                    value(q.value),
                ));
            }
            Ok::<_, String>(out)
        })();
        match built {
            Ok(out) => {
                let t = millis(p.time_unix_nano);
                for (labels, v) in out {
                    self.add_sample(labels, t, v);
                }
                true
            }
            Err(e) => {
                self.out.reject(1, metric, e);
                false
            }
        }
    }

    fn target_info(&mut self, res: &Resource, attrs: &[KeyValue], first: i64, last: i64) {
        if res.job.is_none() && res.instance.is_none() {
            return;
        }
        let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
        let others: Vec<KeyValue> = attrs
            .iter()
            .filter(|kv| !identifying.contains(&kv.key.as_str()))
            .cloned()
            .collect();
        if others.is_empty() {
            return;
        }
        // A resource attribute that makes no valid label name leaves the
        // resource without `target_info`; its data points are stored.
        let Ok(labels) = self.labels(res, &others, TARGET_INFO, &[]) else {
            return;
        };
        let mut t = first.max(last.saturating_sub(MAX_TARGET_INFO_SAMPLES * TARGET_INFO_STEP_MS));
        while t < last {
            self.add_sample(labels.clone(), t, 1.0);
            t = t.saturating_add(TARGET_INFO_STEP_MS);
        }
        self.add_sample(labels, last, 1.0);
    }

    /// The labels of a data point's attributes and its resource.
    fn base(&mut self, res: &Resource, attrs: &[KeyValue]) -> Result<Base, String> {
        let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for kv in sorted {
            let name = match self.label_names.get(&kv.key) {
                Some(n) => n.clone(),
                None => {
                    let n = names::label_name(&kv.key)?;
                    self.label_names.insert(kv.key.clone(), n.clone());
                    n
                }
            };
            let value = value_string(kv.value.as_ref());
            match map.get_mut(&name) {
                Some(existing) => {
                    existing.push(';');
                    existing.push_str(&value);
                }
                None => {
                    map.insert(name, value);
                }
            }
        }
        if let Some(job) = &res.job {
            map.insert("job".into(), job.clone());
        }
        if let Some(instance) = &res.instance {
            map.insert("instance".into(), instance.clone());
        }
        Ok(map
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label::new(n, v))
            .collect())
    }

    fn labels(
        &mut self,
        res: &Resource,
        attrs: &[KeyValue],
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<Labels, String> {
        let base = self.base(res, attrs)?;
        self.finish(&base, name, extra)
    }

    /// `base` with the metric name and `extra` labels (which win), checked
    /// against the limits and Prometheus' label rules.
    fn finish(&self, base: &Base, name: &str, extra: &[(&str, &str)]) -> Result<Labels, String> {
        let mut v = base.clone();
        for (n, value) in extra.iter().copied().chain([(METRIC_NAME, name)]) {
            match v.binary_search_by(|l| l.name.as_str().cmp(n)) {
                Ok(i) => v[i].value = value.to_string(),
                Err(i) => v.insert(i, Label::new(n, value)),
            }
        }
        let describe = || {
            let pairs: Vec<String> = v
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        };
        let lim = self.limits;
        if v.len() > lim.max_label_names_per_series {
            return Err(format!(
                "series {}: {} labels exceed the limit of {} label names per series",
                describe(),
                v.len(),
                lim.max_label_names_per_series
            ));
        }
        for l in &v {
            if l.name.len() > lim.max_label_name_length {
                return Err(format!(
                    "series {}: label name longer than {} bytes",
                    describe(),
                    lim.max_label_name_length
                ));
            }
            if l.value.len() > lim.max_label_value_length {
                return Err(format!(
                    "series {}: value of label {} longer than {} bytes",
                    describe(),
                    l.name,
                    lim.max_label_value_length
                ));
            }
        }
        // Sorted and unique by construction; checked all the same.
        let labels = Labels::from_sorted(v).map_err(|e| format!("series {name}: {e}"))?;
        labels
            .validate()
            .map_err(|e| format!("series {labels}: {e}"))?;
        Ok(labels)
    }

    fn add_sample(&mut self, labels: Labels, t: i64, v: f64) {
        self.out.samples += 1;
        let sample = Sample::new(t, v);
        match self.float_index.get(&labels) {
            Some(&i) => self.out.series[i].samples.push(sample),
            None => {
                self.float_index
                    .insert(labels.clone(), self.out.series.len());
                self.out.series.push(Series {
                    labels,
                    samples: vec![sample],
                });
            }
        }
    }

    fn add_histogram(&mut self, labels: Labels, h: storage::histogram::Histogram) {
        let hs = &mut self.out.sidecar.histograms;
        match self.histogram_index.get(&labels) {
            Some(&i) => hs[i].histograms.push(h),
            None => {
                self.histogram_index.insert(labels.clone(), hs.len());
                hs.push(HistogramSeries {
                    labels,
                    histograms: vec![h],
                });
            }
        }
    }

    fn add_exemplars(&mut self, series: &Labels, exemplars: &[OtlpExemplar]) {
        for e in exemplars {
            if let Some(ex) = exemplar_of(e, &mut self.label_names) {
                self.push_exemplar(series.clone(), ex);
            }
        }
    }

    fn push_exemplar(&mut self, series: Labels, ex: Exemplar) {
        let es = &mut self.out.sidecar.exemplars;
        match self.exemplar_index.get(&series) {
            Some(&i) => es[i].exemplars.push(ex),
            None => {
                self.exemplar_index.insert(series.clone(), es.len());
                es.push(ExemplarSeries {
                    labels: series,
                    exemplars: vec![ex],
                });
            }
        }
    }
}

/// An OTLP exemplar with Prometheus' labels; `None` without a value.
fn exemplar_of(e: &OtlpExemplar, names_cache: &mut HashMap<String, String>) -> Option<Exemplar> {
    let value = match e.value? {
        exemplar::Value::AsDouble(v) => v,
        exemplar::Value::AsInt(v) => v as f64,
    };
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut runes = 0;
    for (name, id) in [("trace_id", &e.trace_id), ("span_id", &e.span_id)] {
        if !id.is_empty() {
            let hex = hex(id);
            runes += name.len() + hex.len();
            labels.insert(name.to_string(), hex);
        }
    }
    let mut filtered = Vec::with_capacity(e.filtered_attributes.len());
    for kv in &e.filtered_attributes {
        let value = value_string(kv.value.as_ref());
        runes += kv.key.chars().count() + value.chars().count();
        // Names are normalized like label names (Prometheus keeps them raw;
        // a stored label set must hold valid names); invalid ones are skipped.
        let name = match names_cache.get(&kv.key) {
            Some(n) => n.clone(),
            None => match names::label_name(&kv.key) {
                Ok(n) => {
                    names_cache.insert(kv.key.clone(), n.clone());
                    n
                }
                Err(_) => continue,
            },
        };
        filtered.push((name, value));
    }
    if runes <= MAX_EXEMPLAR_RUNES {
        for (n, v) in filtered {
            if !v.is_empty() {
                labels.entry(n).or_insert(v);
            }
        }
    }
    let labels =
        Labels::from_sorted(labels.into_iter().map(|(n, v)| Label::new(n, v)).collect()).ok()?;
    Some(Exemplar {
        labels,
        value,
        timestamp: millis(e.time_unix_nano),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An attribute value as a label value, as OpenTelemetry's `AsString`:
/// strings as they are, numbers and booleans in their usual text, bytes in
/// base64, arrays and maps as JSON.
pub fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(AnyKind::StringValue(s)) => s.clone(),
        Some(AnyKind::BoolValue(b)) => b.to_string(),
        Some(AnyKind::IntValue(i)) => i.to_string(),
        Some(AnyKind::DoubleValue(d)) => json_number(*d),
        Some(AnyKind::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(other @ (AnyKind::ArrayValue(_) | AnyKind::KvlistValue(_))) => {
            json_value(Some(other)).to_string()
        }
        // Indexes into a profiles dictionary: meaningless for metrics.
        Some(AnyKind::StringValueStrindex(_)) => String::new(),
    }
}

fn json_value(v: Option<&AnyKind>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None | Some(AnyKind::StringValueStrindex(_)) => J::Null,
        Some(AnyKind::StringValue(s)) => J::String(s.clone()),
        Some(AnyKind::BoolValue(b)) => J::Bool(*b),
        Some(AnyKind::IntValue(i)) => J::from(*i),
        Some(AnyKind::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(json_number(*d))),
        Some(AnyKind::BytesValue(b)) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(AnyKind::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|v| json_value(v.value.as_ref()))
                .collect(),
        ),
        Some(AnyKind::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json_value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

/// A double as JavaScript prints it (what OpenTelemetry's `AsString` does):
/// plain digits between 1e-6 and 1e21, exponent form outside.
fn json_number(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        // Rust writes `1e21` and `1e-7`; JavaScript `1e+21` and `1e-7`.
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        };
    }
    format!("{d}")
}

/// A bucket bound or quantile as Prometheus formats it (shortest form, no
/// exponent; `+Inf`, `-Inf`, `NaN`).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
