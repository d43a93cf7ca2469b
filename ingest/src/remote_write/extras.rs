//! What a remote-write series carries besides float samples, checked the
//! same way for 1.0 and 2.0: native histograms, exemplars and metric
//! metadata. The checks return the reason a series is rejected (a 400).

use storage::histogram::Histogram;
use storage::labels::is_valid_label_name;
use storage::sidecar::{Exemplar, MetricMetadata, MetricType};
use storage::{Label, Labels, Sample};

/// Longest exemplar label set, in characters of names and values together
/// (Prometheus' `exemplar.ExemplarMaxLabelSetLength`).
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Checks every histogram of a series (`Histogram::validate`: schema, spans
/// against bucket counts, no negative counts, integer and float not mixed).
pub(crate) fn check_histograms(hs: &[Histogram]) -> Result<(), String> {
    for (i, h) in hs.iter().enumerate() {
        h.validate().map_err(|e| format!("histogram {i}: {e}"))?;
    }
    Ok(())
}

/// An exemplar's label set from its (name, value) pairs in any order: empty
/// values dropped (as for series), names valid and unique, at most
/// [`MAX_EXEMPLAR_LABEL_CHARS`] characters. An empty set is allowed.
pub(crate) fn exemplar_labels(
    pairs: impl Iterator<Item = (String, String)>,
) -> Result<Labels, String> {
    let mut chars = 0;
    let mut labels = Vec::new();
    for (name, value) in pairs {
        chars += name.chars().count() + value.chars().count();
        if value.is_empty() {
            continue;
        }
        if !is_valid_label_name(&name) {
            return Err(format!("exemplar label name {name:?} is not valid"));
        }
        labels.push(Label::new(name, value));
    }
    if chars > MAX_EXEMPLAR_LABEL_CHARS {
        return Err(format!(
            "exemplar labels are {chars} characters long, over the limit of {MAX_EXEMPLAR_LABEL_CHARS}"
        ));
    }
    Labels::from_unsorted(labels).map_err(|e| format!("exemplar labels: {e}"))
}

/// Builds an exemplar. An unset timestamp (0) takes the series' newest sample
/// or histogram time, the sample the exemplar belongs to; a series with
/// neither cannot place it.
pub(crate) fn exemplar(
    labels: Labels,
    value: f64,
    timestamp: i64,
    samples: &[Sample],
    histograms: &[Histogram],
) -> Result<Exemplar, String> {
    let timestamp = if timestamp != 0 {
        timestamp
    } else {
        samples
            .iter()
            .map(|s| s.t)
            .chain(histograms.iter().map(|h| h.timestamp))
            .max()
            .ok_or("exemplar without a timestamp in a series without samples")?
    };
    Ok(Exemplar {
        labels,
        value,
        timestamp,
    })
}

/// Metadata worth storing: a family name and at least one of type, help and
/// unit (2.0 senders attach an all-empty `Metadata` to series they know
/// nothing about).
pub(crate) fn metadata(
    family: &str,
    metric_type: i32,
    help: &str,
    unit: &str,
) -> Option<MetricMetadata> {
    let metric_type = MetricType::from_i32(metric_type);
    if family.is_empty()
        || (metric_type == MetricType::Unknown && help.is_empty() && unit.is_empty())
    {
        return None;
    }
    Some(MetricMetadata {
        metric_family_name: family.to_string(),
        metric_type,
        help: help.to_string(),
        unit: unit.to_string(),
    })
}
