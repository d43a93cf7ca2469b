//! Label sets: the identity of a series.
//!
//! A [`Labels`] is always sorted by name with no duplicate or empty names; the
//! constructors enforce that, so every other module can rely on it. The series
//! id is a hash of the canonical encoding and is stable across processes and
//! versions (it is stored in segments).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use crate::error::LabelError;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A sorted set of labels with unique, non-empty names. Immutable and shared:
/// a clone is a reference-count increment, so the same series can sit in
/// many requests, batches and query results without copying its strings.
///
/// The series id is computed on first use and travels with every clone made
/// after that: ingest asks for it for every series of every batch (segment
/// rows, the segment index), where hashing the strings again was a visible
/// share of CPU. It also makes `Hash` one integer and lets `==` reject
/// different sets without comparing strings. It is lazy because the query
/// engine builds many label sets (group keys, sets without the metric name)
/// that are never hashed.
#[derive(Deserialize)]
#[serde(try_from = "Vec<Label>")]
pub struct Labels {
    labels: Arc<[Label]>,
    /// The series id once computed; [`ID_UNSET`] before. (A set whose id
    /// happens to be `ID_UNSET` just hashes again on every use.)
    id: AtomicU64,
}

const ID_UNSET: SeriesId = 0;

impl Clone for Labels {
    fn clone(&self) -> Self {
        Self {
            labels: Arc::clone(&self.labels),
            id: AtomicU64::new(self.id.load(Relaxed)),
        }
    }
}

impl Default for Labels {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Labels").field(&self.labels).finish()
    }
}

/// Equal label sets have equal ids, so comparing ids (where both are known)
/// first only skips work.
impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.labels, &other.labels) {
            return true;
        }
        let (a, b) = (self.id.load(Relaxed), other.id.load(Relaxed));
        if a != ID_UNSET && b != ID_UNSET && a != b {
            return false;
        }
        self.labels == other.labels
    }
}

impl Eq for Labels {}

/// Consistent with `Eq`: equal sets have equal ids.
impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.series_id());
    }
}

/// Ordered by the labels (name, then value, label by label), not by id.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.labels.cmp(&other.labels)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Serialized as a list of labels, straight from the shared slice.
impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.labels.iter())
    }
}

/// Stable 64-bit series identifier: xxh3 of the canonical label encoding.
pub type SeriesId = u64;

impl Labels {
    /// The one constructor; the id is computed when first asked for.
    fn new(labels: Arc<[Label]>) -> Self {
        Self {
            labels,
            id: AtomicU64::new(ID_UNSET),
        }
    }

    /// The empty label set (a valid result of PromQL aggregations, never stored).
    pub fn empty() -> Self {
        Self::new(Arc::new([]))
    }

    /// Builds a label set from pairs that are already sorted by name, as remote
    /// write requires. Unsorted or duplicate names are an error, as is an empty
    /// name; label values are not checked here (see [`Labels::validate`]).
    pub fn from_sorted(labels: Vec<Label>) -> Result<Self, LabelError> {
        check_sorted(&labels)?;
        Ok(Self::new(labels.into()))
    }

    /// Builds a label set from pairs in any order; a duplicate name is an error.
    pub fn from_unsorted(mut labels: Vec<Label>) -> Result<Self, LabelError> {
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        Self::from_sorted(labels)
    }

    /// Builds a label set from `(name, value)` pairs in any order. Intended for
    /// tests and literals; panics-free, returns an error on duplicates.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, LabelError> {
        Self::from_unsorted(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Checks the rules a stored series must satisfy: metric name present and
    /// valid, label names valid, no empty values (an empty value means "absent"
    /// in Prometheus and must not be stored).
    pub fn validate(&self) -> Result<(), LabelError> {
        let name = self.get(METRIC_NAME).ok_or(LabelError::MissingMetricName)?;
        if !is_valid_metric_name(name) {
            return Err(LabelError::InvalidMetricName {
                name: name.to_string(),
            });
        }
        for l in self.labels.iter() {
            if l.name != METRIC_NAME && !is_valid_label_name(&l.name) {
                return Err(LabelError::InvalidLabelName {
                    name: l.name.clone(),
                });
            }
            if l.value.is_empty() {
                return Err(LabelError::EmptyValue {
                    name: l.name.clone(),
                });
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        // The name sorts first unless a label name starts with an
        // upper-case letter or `__a`..`__m`: one comparison instead of a
        // search in the common case (the query engine asks per series and
        // step).
        match self.labels.first() {
            Some(l) if l.name == METRIC_NAME => Some(l.value.as_str()),
            _ => self.get(METRIC_NAME),
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.labels
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.labels.to_vec()
    }

    /// Returns a copy with `name` set to `value`; an empty value removes the
    /// label, as in Prometheus.
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut v = self.labels.to_vec();
        match v.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(i, Label::new(name, value)),
        }
        Self::new(v.into())
    }

    /// Returns a copy without the named label.
    pub fn without(&self, name: &str) -> Self {
        Self::new(
            self.labels
                .iter()
                .filter(|l| l.name != name)
                .cloned()
                .collect(),
        )
    }

    /// Keeps only the labels for which `keep` returns true.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) -> Self {
        Self::new(
            self.labels
                .iter()
                .filter(|l| keep(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// The stable series id of this label set (computed on first use, then
    /// kept with this value and its later clones).
    pub fn series_id(&self) -> SeriesId {
        let id = self.id.load(Relaxed);
        if id != ID_UNSET {
            return id;
        }
        let id = hash_labels(&self.labels);
        self.id.store(id, Relaxed);
        id
    }

    /// Identity of this set's shared storage: the same for a set and its
    /// clones, different for sets built separately while both are alive.
    /// Lets the query engine memoise work per label set by address, without
    /// hashing or comparing strings; whoever keys on it must keep the set
    /// alive, or the address may be reused.
    pub fn storage_addr(&self) -> usize {
        Arc::as_ptr(&self.labels) as *const Label as usize
    }
}

/// A `Hasher` for maps and sets keyed by [`Labels`]: their `Hash` writes
/// one integer, the series id, which is already an xxh3 hash, so it is used
/// as it is instead of being hashed again (SipHash per lookup was a visible
/// share of the query engine's per-step grouping).
#[derive(Default, Clone, Copy)]
pub struct SeriesIdHasher(u64);

impl std::hash::Hasher for SeriesIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    /// Not reached for `Labels` keys; other keys still hash well enough.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// Build hasher of maps keyed by [`Labels`] ([`SeriesIdHasher`]).
pub type LabelsBuildHasher = std::hash::BuildHasherDefault<SeriesIdHasher>;

/// A map keyed by label sets, hashed by series id.
pub type LabelsMap<V> = std::collections::HashMap<Labels, V, LabelsBuildHasher>;

/// The series id of sorted labels: xxh3-64 over `name 0xFF value 0xFF ...`.
fn hash_labels(labels: &[Label]) -> SeriesId {
    // Streaming: the same bytes as hashing the concatenation, no buffer.
    let mut h = Xxh3Default::new();
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

impl TryFrom<Vec<Label>> for Labels {
    type Error = LabelError;
    fn try_from(v: Vec<Label>) -> Result<Self, Self::Error> {
        Self::from_sorted(v)
    }
}

impl From<Labels> for Vec<Label> {
    fn from(l: Labels) -> Self {
        l.labels.to_vec()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.labels.iter()
    }
}

/// Prometheus' text form: `name{a="b", c="d"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<&Label> = self
            .labels
            .iter()
            .filter(|l| l.name != METRIC_NAME)
            .collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, l) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Checks that label names are non-empty, unique and sorted, as a stored
/// label set must be; the error names the first offending label.
pub fn check_sorted(labels: &[Label]) -> Result<(), LabelError> {
    for (i, l) in labels.iter().enumerate() {
        if l.name.is_empty() {
            return Err(LabelError::EmptyName);
        }
        if i > 0 {
            let prev = &labels[i - 1].name;
            if prev == &l.name {
                return Err(LabelError::Duplicate {
                    name: l.name.clone(),
                });
            }
            if prev > &l.name {
                return Err(LabelError::Unsorted {
                    name: l.name.clone(),
                    after: prev.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Prometheus 3's metric name rule (its default, UTF-8 name validation): any
/// non-empty UTF-8 string. OpenTelemetry-style names such as
/// `http.server.request.duration` are kept as sent; PromQL selects them
/// with a quoted name (`{"http.server.request.duration"}`). A `&str` is
/// always UTF-8: the decoders reject invalid bytes before a name gets here.
pub fn is_valid_metric_name(s: &str) -> bool {
    is_valid_label_name(s)
}

/// Prometheus 3's label name rule (UTF-8 name validation): any non-empty
/// UTF-8 string, e.g. `service.name` or `k8s-namespace`.
pub fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).expect("valid labels")
    }

    #[test]
    fn metric_name_wherever_it_sorts() {
        assert_eq!(
            l(&[("__name__", "up"), ("a", "1")]).metric_name(),
            Some("up")
        );
        // Upper-case names and `__a` sort before `__name__`.
        assert_eq!(
            l(&[("A", "1"), ("__name__", "up")]).metric_name(),
            Some("up")
        );
        assert_eq!(
            l(&[("__a", "1"), ("__name__", "up")]).metric_name(),
            Some("up")
        );
        assert_eq!(l(&[("A", "1"), ("b", "2")]).metric_name(), None);
        assert_eq!(Labels::empty().metric_name(), None);
    }

    #[test]
    fn maps_by_series_id_find_equal_sets() {
        let mut m: LabelsMap<u32> = LabelsMap::default();
        m.insert(l(&[("a", "1")]), 1);
        m.insert(l(&[("a", "2")]), 2);
        // Built separately: found by content.
        assert_eq!(m.get(&l(&[("a", "1")])), Some(&1));
        assert_eq!(m.get(&l(&[("a", "2")])), Some(&2));
        assert_eq!(m.get(&l(&[("a", "3")])), None);
    }

    #[test]
    fn sorted_input_is_required_by_from_sorted() {
        let err =
            Labels::from_sorted(vec![Label::new("b", "1"), Label::new("a", "1")]).unwrap_err();
        assert!(matches!(err, LabelError::Unsorted { .. }), "{err}");
        let err =
            Labels::from_sorted(vec![Label::new("a", "1"), Label::new("a", "2")]).unwrap_err();
        assert!(matches!(err, LabelError::Duplicate { .. }), "{err}");
        let err = Labels::from_sorted(vec![Label::new("", "1")]).unwrap_err();
        assert!(matches!(err, LabelError::EmptyName), "{err}");
    }

    #[test]
    fn validation_follows_prometheus_name_rules() {
        assert!(l(&[("__name__", "up"), ("job", "x")]).validate().is_ok());
        assert!(l(&[("__name__", "a:b_c9")]).validate().is_ok());
        assert!(matches!(
            l(&[("job", "x")]).validate(),
            Err(LabelError::MissingMetricName)
        ));
        // Prometheus 3 accepts any UTF-8 name (Prometheus 2's legacy rule
        // refused all of these).
        for ok in [
            l(&[("__name__", "9up")]),
            l(&[("__name__", "http.server.duration"), ("service.name", "x")]),
            l(&[("__name__", "up"), ("a-b", "x"), ("a:b", "y"), ("ü", "z")]),
        ] {
            assert_eq!(ok.validate(), Ok(()), "{ok:?}");
        }
        assert!(matches!(
            l(&[("__name__", "")]).validate(),
            Err(LabelError::InvalidMetricName { .. })
        ));
        assert!(matches!(
            l(&[("__name__", "up"), ("a", "")]).validate(),
            Err(LabelError::EmptyValue { .. })
        ));
    }

    #[test]
    fn series_id_is_stable_and_order_independent() {
        let a = l(&[("__name__", "up"), ("job", "x")]);
        let b = l(&[("job", "x"), ("__name__", "up")]);
        assert_eq!(a.series_id(), b.series_id());
        assert_ne!(
            a.series_id(),
            l(&[("__name__", "up"), ("job", "y")]).series_id()
        );
        // The encoding separates name and value: these two must differ.
        assert_ne!(l(&[("ab", "c")]).series_id(), l(&[("a", "bc")]).series_id());
        // Frozen: a change of this value changes the on-disk meaning of series ids.
        assert_eq!(a.series_id(), 12_819_889_991_823_688_648);
    }

    #[test]
    fn equality_hash_and_order_follow_the_labels() {
        use std::collections::HashSet;
        let a = l(&[("__name__", "up"), ("job", "x")]);
        let b = l(&[("job", "x"), ("__name__", "up")]); // another allocation
        let c = l(&[("__name__", "up"), ("job", "y")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let set: HashSet<Labels> = [a.clone(), b, c.clone()].into_iter().collect();
        assert_eq!(set.len(), 2);
        // Order is by labels, whatever the ids.
        assert!(a < c);
        assert!(l(&[("a", "1")]) < l(&[("a", "1"), ("b", "1")]));
        assert_eq!(Labels::empty(), Labels::default());
        // The id survives every way of building a set.
        assert_eq!(c.with("job", "x").series_id(), a.series_id());
        assert_eq!(
            a.without("job").series_id(),
            l(&[("__name__", "up")]).series_id()
        );
        // Ids are computed lazily: a set whose id is known equals one whose
        // id is not, and differs from one with another id.
        let fresh = l(&[("__name__", "up"), ("job", "x")]);
        let _ = a.series_id();
        assert_eq!(a, fresh);
        assert_ne!(c, fresh);
        assert_eq!(fresh.clone().series_id(), a.series_id());
        // Clones share storage; separately built equal sets do not.
        assert_eq!(a.clone().storage_addr(), a.storage_addr());
        assert_ne!(fresh.storage_addr(), a.storage_addr());
        let json = serde_json::to_string(&a).expect("serialize");
        let back: Labels = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.series_id(), a.series_id());
    }

    #[test]
    fn with_and_without_keep_the_set_sorted() {
        let a = l(&[("b", "2"), ("d", "4")]);
        assert_eq!(a.with("c", "3"), l(&[("b", "2"), ("c", "3"), ("d", "4")]));
        assert_eq!(a.with("b", ""), l(&[("d", "4")]));
        assert_eq!(a.without("d"), l(&[("b", "2")]));
        assert_eq!(a.to_string(), "{b=\"2\", d=\"4\"}");
        assert_eq!(
            l(&[("__name__", "up"), ("a", "1")]).to_string(),
            "up{a=\"1\"}"
        );
    }
}
