//! Per-tenant query limits: concurrent queries, samples loaded, query time
//! and result size. Refusals use Prometheus' error envelope with the type
//! and status Prometheus gives the same condition: too many samples and a
//! result over a size limit are `execution` (422), running out of time
//! (including while waiting for one of the tenant's query slots, as
//! Prometheus queues queries past `--query.max-concurrency`) is `timeout`
//! (503). Every message names the limit and the tenant.
//!
//! Slots are per querier process, like the ingest rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use storage::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ErrorType};
use crate::promql::Value;

/// The query limits of one tenant, resolved from defaults and overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantQueryLimits {
    /// Queries of the tenant running at once in this querier; more wait for
    /// a slot within their time limit. 0 means unlimited.
    pub max_concurrent_queries: usize,
    /// Most samples a query may load (`query.max_samples` by default).
    pub max_samples: usize,
    /// Longest a query may run, waiting for a slot included
    /// (`query.timeout` by default).
    pub max_query_time: Duration,
    /// Most series in a query result (and in a `/api/v1/series` answer);
    /// 0 means unlimited.
    pub max_result_series: usize,
    /// Most points (samples) in a query result; 0 means unlimited.
    pub max_result_points: usize,
}

pub const MAX_CONCURRENT_QUERIES: &str = "max_concurrent_queries";
pub const MAX_QUERY_SAMPLES: &str = "max_query_samples";
pub const MAX_QUERY_TIME: &str = "max_query_time";
pub const MAX_RESULT_SERIES: &str = "max_result_series";
pub const MAX_RESULT_POINTS: &str = "max_result_points";

/// Called with the tenant and the limit of every refused query; the server
/// counts them on `/metrics` (`strata_query_limited_requests_total`).
pub type RefusalHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Semaphores kept before idle ones are forgotten, so tenant ids made up by
/// clients cannot grow the map forever.
const MAX_SLOT_SETS: usize = 10_000;

/// The limits of every tenant and their query slots.
pub struct QueryLimits {
    default: TenantQueryLimits,
    tenants: HashMap<String, TenantQueryLimits>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    on_refuse: RefusalHook,
}

/// A query slot of a tenant, held until the evaluation really ends (an
/// abandoned evaluation still uses the CPU).
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl QueryLimits {
    pub fn new(
        default: TenantQueryLimits,
        tenants: HashMap<String, TenantQueryLimits>,
        on_refuse: RefusalHook,
    ) -> Self {
        Self {
            default,
            tenants,
            slots: Mutex::default(),
            on_refuse,
        }
    }

    /// Only the process-wide `[query]` settings, no per-tenant limits.
    pub fn from_config(config: &super::QueryConfig) -> Self {
        Self::new(
            TenantQueryLimits {
                max_concurrent_queries: 0,
                max_samples: config.max_samples,
                max_query_time: config.timeout,
                max_result_series: 0,
                max_result_points: 0,
            },
            HashMap::new(),
            Arc::new(|_: &str, _: &str| {}),
        )
    }

    pub fn of(&self, tenant: &TenantId) -> &TenantQueryLimits {
        self.tenants.get(tenant.as_str()).unwrap_or(&self.default)
    }

    /// Counts a refusal and builds its error.
    pub fn refuse(
        &self,
        tenant: &TenantId,
        limit: &str,
        kind: ErrorType,
        message: String,
    ) -> ApiError {
        (self.on_refuse)(tenant.as_str(), limit);
        ApiError { kind, message }
    }

    /// A query slot of `tenant`, waiting for one if all are taken. The
    /// caller bounds the wait with the query's time limit.
    pub async fn slot(&self, tenant: &TenantId) -> Slot {
        let max = self.of(tenant).max_concurrent_queries;
        if max == 0 {
            return Slot(None);
        }
        let semaphore = {
            // A poisoned lock only means a panic elsewhere mid-insert; the
            // map itself is intact.
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.len() >= MAX_SLOT_SETS && !slots.contains_key(tenant.as_str()) {
                slots.retain(|_, s| Arc::strong_count(s) > 1);
            }
            slots
                .entry(tenant.as_str().to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        // The semaphore is never closed, so acquiring only fails if it were.
        Slot(semaphore.acquire_owned().await.ok())
    }

    /// A slot of `tenant` within `limit` (the query's time limit; the
    /// caller deducts the wait from what is left for the evaluation).
    pub async fn wait_for_slot(
        &self,
        tenant: &TenantId,
        limit: Duration,
    ) -> Result<Slot, ApiError> {
        match tokio::time::timeout(limit, self.slot(tenant)).await {
            Ok(slot) => Ok(slot),
            Err(_) => {
                let max = self.of(tenant).max_concurrent_queries;
                Err(self.refuse(
                    tenant,
                    MAX_CONCURRENT_QUERIES,
                    ErrorType::Timeout,
                    format!(
                        "query timed out waiting for a query slot: tenant {:?} already runs {max} queries (max_concurrent_queries: {max}) and the query's time limit of {limit:?} passed",
                        tenant.as_str(),
                    ),
                ))
            }
        }
    }

    /// Refuses a result over the tenant's series or points limit.
    pub fn check_result(&self, tenant: &TenantId, value: &Value) -> Result<(), ApiError> {
        let limits = self.of(tenant);
        let (series, points) = match value {
            Value::Scalar { .. } | Value::String { .. } => (0, 1),
            Value::Vector(v) => (v.len(), v.len()),
            Value::Matrix(m) => (
                m.len(),
                m.iter().map(|s| s.samples.len() + s.histograms.len()).sum(),
            ),
        };
        self.check_series(tenant, series)?;
        if limits.max_result_points > 0 && points > limits.max_result_points {
            return Err(self.refuse(
                tenant,
                MAX_RESULT_POINTS,
                ErrorType::Execution,
                format!(
                    "query result has {points} points, over the limit of tenant {:?} (max_result_points: {})",
                    tenant.as_str(),
                    limits.max_result_points
                ),
            ));
        }
        Ok(())
    }

    /// Refuses an answer with more series than the tenant may get.
    pub fn check_series(&self, tenant: &TenantId, series: usize) -> Result<(), ApiError> {
        let max = self.of(tenant).max_result_series;
        if max > 0 && series > max {
            return Err(self.refuse(
                tenant,
                MAX_RESULT_SERIES,
                ErrorType::Execution,
                format!(
                    "query result has {series} series, over the limit of tenant {:?} (max_result_series: {max})",
                    tenant.as_str()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
