//! HTTP routes of the ingest tier: remote write 1.0 and 2.0 at Prometheus'
//! and M3's paths (handler in `remote_write::handler`), InfluxDB line
//! protocol and M3's JSON write (handlers in `protocols`), OTLP metrics
//! (`otlp`), all with HA-pair deduplication (`ha`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use storage::TenantId;
use tracing::{debug, warn};

use crate::clock::{Clock, SystemClock};
use crate::drop_rules::DropRules;
use crate::error::IngestError;
use crate::group_commit::{GroupCommitConfig, GroupCommitter};
use crate::ha::{HaTracker, HaTrackerConfig};
use crate::limits::IngestLimits;
use crate::metrics::IngestMetrics;
use crate::otlp;
use crate::protocols;
use crate::remote_write::{self, SeriesLimits};
use crate::series_cache::SeriesCache;

/// `[ingest]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted (compressed) request body.
    pub max_request_bytes: usize,
    /// Largest accepted body after snappy decompression.
    pub max_decoded_bytes: usize,
    pub limits: SeriesLimits,
    /// Label sets of recently seen series kept decoded and validated (about
    /// 300 bytes each); 0 disables the cache.
    pub series_cache_entries: usize,
    pub group_commit: GroupCommitConfig,
    pub ha_tracker: HaTrackerConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 10 << 20,
            max_decoded_bytes: 100 << 20,
            limits: SeriesLimits::default(),
            series_cache_entries: 500_000,
            group_commit: GroupCommitConfig::default(),
            ha_tracker: HaTrackerConfig::default(),
        }
    }
}

impl IngestConfig {
    /// Checks the config; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("ingest.max_request_bytes", self.max_request_bytes),
            ("ingest.max_decoded_bytes", self.max_decoded_bytes),
            (
                "ingest.group_commit.batch_max_bytes",
                self.group_commit.batch_max_bytes,
            ),
            (
                "ingest.group_commit.puts_per_tenant",
                self.group_commit.puts_per_tenant,
            ),
            (
                "ingest.group_commit.max_inflight_puts",
                self.group_commit.max_inflight_puts,
            ),
            (
                "ingest.group_commit.max_pending_bytes",
                self.group_commit.max_pending_bytes,
            ),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("{field}: must be greater than 0"));
            }
        }
        if self.group_commit.batch_max_age.is_zero() {
            return Err("ingest.group_commit.batch_max_age: must be greater than 0".into());
        }
        self.ha_tracker.validate()
    }
}

#[derive(Clone)]
pub struct IngestState {
    pub config: IngestConfig,
    pub committer: GroupCommitter,
    pub metrics: IngestMetrics,
    pub series_cache: Arc<SeriesCache>,
    /// Tenant of requests without an `X-Scope-OrgID` header.
    pub default_tenant: TenantId,
    /// Per-tenant limits (`[limits]`) and their token buckets.
    pub limits: Arc<IngestLimits>,
}

/// What the handlers share: the ingest state, the HA tracker, the clock and
/// the tenants' drop rules.
#[derive(Clone)]
pub(crate) struct AppState {
    pub ingest: IngestState,
    pub ha: Arc<HaTracker>,
    pub clock: Arc<dyn Clock>,
    pub drop_rules: Option<DropRules>,
}

impl FromRef<AppState> for Option<DropRules> {
    fn from_ref(app: &AppState) -> Self {
        app.drop_rules.clone()
    }
}

impl FromRef<AppState> for IngestState {
    fn from_ref(app: &AppState) -> Self {
        app.ingest.clone()
    }
}

impl FromRef<AppState> for Arc<HaTracker> {
    fn from_ref(app: &AppState) -> Self {
        app.ha.clone()
    }
}

/// The ingest routes, with the HA tracker on the committer's object store
/// and the system clock.
pub fn router(state: IngestState) -> Router {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ha = HaTracker::new(
        state.committer.storage().object_store().clone(),
        state.config.ha_tracker.clone(),
        clock.clone(),
        state.metrics.clone(),
    );
    router_with(state, Arc::new(ha), clock)
}

/// [`router`], with the tenants' drop rules applied before commit.
pub fn router_with_drop_rules(state: IngestState, drop_rules: DropRules) -> Router {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ha = HaTracker::new(
        state.committer.storage().object_store().clone(),
        state.config.ha_tracker.clone(),
        clock.clone(),
        state.metrics.clone(),
    );
    routes(state, Arc::new(ha), clock, Some(drop_rules))
}

/// The ingest routes with a given HA tracker and clock (tests).
pub fn router_with(state: IngestState, ha: Arc<HaTracker>, clock: Arc<dyn Clock>) -> Router {
    routes(state, ha, clock, None)
}

fn routes(
    state: IngestState,
    ha: Arc<HaTracker>,
    clock: Arc<dyn Clock>,
    drop_rules: Option<DropRules>,
) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write::handler::remote_write))
        .route(
            "/api/v1/prom/remote/write",
            post(remote_write::handler::remote_write),
        )
        .route("/api/v1/influxdb/write", post(protocols::influx_write))
        .route("/write", post(protocols::influx_write))
        .route("/api/v1/json/write", post(protocols::json_write))
        .route("/api/v1/otlp/v1/metrics", post(otlp::otlp_metrics))
        .route("/otlp/v1/metrics", post(otlp::otlp_metrics))
        .with_state(AppState {
            ingest: state,
            ha,
            clock,
            drop_rules,
        })
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            warn!(error = %self, "write failed");
        } else {
            debug!(error = %self, "write rejected");
        }
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// Reads a request body up to `max_request_bytes`: a declared length over
/// the limit is refused before reading a byte; a chunked body is cut off by
/// the streaming limit.
pub(crate) async fn read_body(
    cfg: &IngestConfig,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_request_bytes as u64) {
        return Err(IngestError::BodyTooLarge {
            limit: cfg.max_request_bytes,
        });
    }
    axum::body::to_bytes(body, cfg.max_request_bytes)
        .await
        .map_err(|e| {
            let over_limit = std::iter::successors(std::error::Error::source(&e), |s| s.source())
                .any(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                IngestError::BodyTooLarge {
                    limit: cfg.max_request_bytes,
                }
            } else {
                IngestError::Body(e.to_string())
            }
        })
}

#[cfg(test)]
mod tests;
