//! The remote-write endpoint (`/api/v1/write`, M3's
//! `/api/v1/prom/remote/write`): content negotiation between 1.0 and 2.0,
//! the steps after decoding (HA pairs, drop rules, limits, group commit of
//! samples and sidecar together) and 2.0's written-count response headers.
//!
//! Negotiation follows Prometheus' receiver: no `Content-Type` means 1.0; a
//! `proto=` parameter names the message (`prometheus.WriteRequest` or
//! `io.prometheus.write.v2.Request`), its absence means 1.0; any other media
//! type, message or parameter shape is 415, as is a `Content-Encoding` other
//! than snappy (none means snappy). `X-Prometheus-Remote-Write-Version` is
//! informational (logged): the Content-Type decides, as in Prometheus.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storage::sidecar::Sidecar;
use storage::tenant::{self, TENANT_HEADER};
use storage::{Labels, Series, TenantId};
use tracing::debug;

use super::{Validated, v2};
use crate::drop_rules::{self, DropRules};
use crate::error::IngestError;
use crate::ha::HaTracker;
use crate::http::{AppState, read_body};
use crate::proto::v2::PROTO_NAME as V2_PROTO;

/// The 1.0 message's `proto=` name.
pub const V1_PROTO: &str = "prometheus.WriteRequest";
pub const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
pub const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
pub const HISTOGRAMS_WRITTEN: &str = "x-prometheus-remote-write-histograms-written";
pub const EXEMPLARS_WRITTEN: &str = "x-prometheus-remote-write-exemplars-written";

/// The protobuf message of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a request stored: the 2.0 response headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub samples: usize,
    pub histograms: usize,
    pub exemplars: usize,
}

impl Written {
    fn set_headers(&self, headers: &mut HeaderMap) {
        for (name, n) in [
            (SAMPLES_WRITTEN, self.samples),
            (HISTOGRAMS_WRITTEN, self.histograms),
            (EXEMPLARS_WRITTEN, self.exemplars),
        ] {
            headers.insert(name, HeaderValue::from(n));
        }
    }
}

/// The message of a request from its `Content-Type` and `Content-Encoding`.
pub fn negotiate(headers: &HeaderMap) -> Result<Version, IngestError> {
    if let Some(v) = headers.get(header::CONTENT_ENCODING) {
        let v = v.to_str().unwrap_or("").trim();
        if !v.eq_ignore_ascii_case("snappy") {
            return Err(IngestError::UnsupportedMediaType {
                header: "Content-Encoding",
                value: v.into(),
            });
        }
    }
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Version::V1);
    };
    let value = v.to_str().unwrap_or("");
    let unsupported = || IngestError::UnsupportedMediaType {
        header: "Content-Type",
        value: value.into(),
    };
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf"))
    {
        return Err(unsupported());
    }
    for p in parts {
        let Some((name, arg)) = p.split_once('=') else {
            return Err(unsupported());
        };
        if name.trim().eq_ignore_ascii_case("proto") {
            return match arg.trim().trim_matches('"') {
                V1_PROTO => Ok(Version::V1),
                V2_PROTO => Ok(Version::V2),
                _ => Err(unsupported()),
            };
        }
    }
    Ok(Version::V1)
}

/// `POST` handler of both versions.
pub(crate) async fn remote_write(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let version = match negotiate(&headers) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (written, result) = match ingest(&app, version, &headers, body).await {
        Ok((written, None)) => (written, Ok(StatusCode::NO_CONTENT)),
        Ok((written, Some(rejected))) => (written, Err(rejected)),
        Err(e) => (Written::default(), Err(e)),
    };
    let mut resp = match result {
        Ok(status) => status.into_response(),
        Err(e) => e.into_response(),
    };
    // 2.0 senders learn from these what was stored, on success and on
    // partial writes alike; a request that failed as a whole stored nothing.
    if version == Version::V2 {
        written.set_headers(resp.headers_mut());
    }
    resp
}

/// Decodes, validates and commits a request; returns what was stored and
/// the rejection of its invalid series, if any (answered 400 after the
/// valid ones are stored).
async fn ingest(
    app: &AppState,
    version: Version,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Written, Option<IngestError>), IngestError> {
    let state = &app.ingest;
    let cfg = &state.config;
    let tenant = tenant::resolve(
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        &state.default_tenant,
    )?;
    let body = read_body(cfg, headers, body).await?;
    // Announced once the body is here (a slow upload must not hold other
    // requests' batches): decoding is the short, CPU-bound part that
    // batches wait for.
    let arrival = state.committer.arrive();
    let (label_limits, cache) = state
        .limits
        .decoding(&tenant, &cfg.limits, &state.series_cache);
    let validated = match version {
        Version::V1 => super::decode_validated(&body, cfg.max_decoded_bytes, label_limits, cache)?,
        Version::V2 => {
            v2::decode_validated_cached(&body, cfg.max_decoded_bytes, label_limits, cache)?
        }
    };
    debug!(
        tenant = %tenant,
        ?version,
        sender_version = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(""),
        series = validated.series.len(),
        samples = validated.samples,
        histograms = validated.histograms(),
        exemplars = validated.exemplars(),
        metadata = validated.sidecar.metadata.len(),
        "remote write"
    );
    let rejected = validated.error();
    state
        .metrics
        .series_rejected
        .inc_by(validated.rejected as u64);
    let Validated {
        total,
        series,
        mut sidecar,
        first_labels,
        ..
    } = validated;
    let series = dedupe(&app.ha, &tenant, first_labels, series, &mut sidecar).await?;
    let series = drop_rules::apply(app.drop_rules.as_ref(), &tenant, series).await;
    let sidecar = drop_from_sidecar(app.drop_rules.as_ref(), &tenant, sidecar).await;
    if sidecar.histograms.is_empty() {
        state.limits.admit(&tenant, total, &series)?;
    } else {
        // Each histogram sample counts as one sample against the rate (as
        // for OTLP): the limiter sees one stand-in series holding them all.
        let n = series.iter().map(|s| s.samples.len()).sum::<usize>() + sidecar.histogram_count();
        let all = Series {
            labels: Labels::empty(),
            samples: vec![storage::Sample::new(0, 0.0); n],
        };
        state.limits.admit(&tenant, total, &[all])?;
    }
    // Series over max_series_per_metric are dropped and the rest stored;
    // the answer is then 400, as for a request with invalid series.
    let mut sidecar = sidecar;
    let (series, over_limit) = state
        .limits
        .series_per_metric(&tenant, series, Some(&mut sidecar));
    let rejected = rejected.or(over_limit);
    let written = Written {
        samples: series.iter().map(|s| s.samples.len()).sum(),
        histograms: sidecar.histogram_count(),
        exemplars: sidecar.exemplar_count(),
    };
    state
        .committer
        .commit_arrived(arrival, tenant, series, sidecar)
        .await?;
    Ok((written, rejected))
}

/// HA-pair deduplication of a whole request: decided on its first valid
/// series (even one that carried only histograms or exemplars, which
/// [`HaTracker::dedupe`] does not see), the replica label removed from
/// every stored label set of an accepted request.
async fn dedupe(
    ha: &HaTracker,
    tenant: &TenantId,
    first: Option<Labels>,
    mut series: Vec<Series>,
    sidecar: &mut Sidecar,
) -> Result<Vec<Series>, IngestError> {
    let cfg = ha.config();
    let Some(first) = first.filter(|_| cfg.enabled_for(tenant)) else {
        return Ok(series);
    };
    let probe = series.first().is_none_or(|s| s.labels != first);
    if probe {
        series.insert(
            0,
            Series {
                labels: first.clone(),
                samples: Vec::new(),
            },
        );
    }
    let mut series = ha.dedupe(tenant, series).await?;
    if probe {
        series.remove(0);
    }
    if first.get(&cfg.cluster_label).is_some() && first.get(&cfg.replica_label).is_some() {
        let name = cfg.replica_label.as_str();
        let strip = |l: &mut Labels| {
            if l.get(name).is_some() {
                *l = l.without(name);
            }
        };
        sidecar
            .histograms
            .iter_mut()
            .for_each(|h| strip(&mut h.labels));
        sidecar
            .exemplars
            .iter_mut()
            .for_each(|e| strip(&mut e.labels));
    }
    Ok(series)
}

/// Drop rules on histogram and exemplar series: the rules decide on labels
/// alone, so each distinct label set is asked once (as a series without
/// samples, counted by the rules' series counter) and the sidecar keeps
/// what survived.
async fn drop_from_sidecar(
    rules: Option<&DropRules>,
    tenant: &TenantId,
    mut sidecar: Sidecar,
) -> Sidecar {
    if rules.is_none() || (sidecar.histograms.is_empty() && sidecar.exemplars.is_empty()) {
        return sidecar;
    }
    let distinct: HashSet<&Labels> = sidecar
        .histograms
        .iter()
        .map(|h| &h.labels)
        .chain(sidecar.exemplars.iter().map(|e| &e.labels))
        .collect();
    let probes = distinct
        .into_iter()
        .map(|labels| Series {
            labels: labels.clone(),
            samples: Vec::new(),
        })
        .collect();
    let kept: HashSet<Labels> = drop_rules::apply(rules, tenant, probes)
        .await
        .into_iter()
        .map(|s| s.labels)
        .collect();
    sidecar.histograms.retain(|h| kept.contains(&h.labels));
    sidecar.exemplars.retain(|e| kept.contains(&e.labels));
    sidecar
}

#[cfg(test)]
mod tests;
