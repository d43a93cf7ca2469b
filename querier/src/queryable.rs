//! The engine's view of stored data: one tenant of a [`Storage`].

use async_trait::async_trait;
use storage::{Matcher, Series, Storage, TenantId};

use crate::promql::{EvalError, Queryable};

pub struct TenantQueryable {
    pub storage: Storage,
    pub tenant: TenantId,
}

#[async_trait]
impl Queryable for TenantQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        self.storage
            .select(&self.tenant, matchers, start_ms, end_ms)
            .await
            .map_err(|e| EvalError::Storage(e.to_string()))
    }
}
