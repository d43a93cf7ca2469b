//! SQL over a tenant's data (`POST /api/v1/sql`, `strata sql`): DataFusion
//! with exactly two tables, `series` and `samples` of the request's tenant
//! (see [`tables`] and `docs/sql.md`). Read-only: DDL, DML and statements
//! such as `SET` are refused before planning. Limits keep one query from
//! taking the process down: a time limit, a result row limit, a memory
//! limit for DataFusion's operators (no spilling to disk), and the
//! `query.max_samples` budget on samples read.

pub mod output;
pub mod tables;

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Deserialize;
use storage::{Storage, TenantId};
use tracing::debug;

use tables::{Kind, SampleBudget, TenantTable};

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 256 * 1024;
/// Most operators (`+`, `=`, `AND`, ...) in one query. A chain of binary
/// operators parses into a tree as deep as the chain is long, and walking
/// (or dropping) a tree tens of thousands deep overflows a thread's stack
/// and aborts the process: in a debug build on a 2 MiB stack (a tokio
/// worker's), `SELECT 1 + 1 + ...` overflowed at 250 terms and passed at
/// 120 (with nesting 32). Conservative for release builds.
pub const MAX_SQL_OPERATORS: usize = 120;

/// Deepest parenthesis nesting accepted: deeper nesting overflowed the
/// stack too (5,000 levels, measured), before the SQL parser's own
/// recursion limit caught it.
pub const MAX_SQL_NESTING: usize = 32;

/// Counts operator characters and `AND`/`OR` outside string literals,
/// quoted identifiers and comments (an upper bound on the depth of any
/// operator chain in the query), and the deepest parenthesis nesting.
fn operator_count(sql: &str) -> (usize, usize) {
    let b = sql.as_bytes();
    let (mut i, mut n) = (0, 0);
    let (mut depth, mut deepest) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<' | b'>' | b'|' | b'&' | b'^' => n += 1,
            b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                if word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") {
                    n += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (n, deepest)
}

/// `[query.sql]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Longest a SQL query may run, planning and reading included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most rows a result may have; a query with more fails (add `LIMIT`).
    pub max_rows: usize,
    /// Memory DataFusion's sorts, joins and aggregations of one query may
    /// use; past it the query fails instead of spilling to disk.
    pub max_memory_bytes: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_rows: 100_000,
            max_memory_bytes: 512 << 20,
        }
    }
}

impl SqlConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("query.sql.timeout: must be greater than 0".into());
        }
        if self.max_rows == 0 {
            return Err("query.sql.max_rows: must be greater than 0".into());
        }
        if self.max_memory_bytes < 1 << 20 {
            return Err("query.sql.max_memory_bytes: must be at least 1 MiB".into());
        }
        Ok(())
    }
}

/// The limits of one SQL query.
#[derive(Clone, Debug)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    pub max_memory_bytes: usize,
    /// Samples the query may read (`query.max_samples`).
    pub max_samples: usize,
}

impl SqlLimits {
    pub fn new(config: &SqlConfig, max_samples: usize) -> Self {
        Self {
            timeout: config.timeout,
            max_rows: config.max_rows,
            max_memory_bytes: config.max_memory_bytes,
            max_samples,
        }
    }
}

/// What a SQL query can fail with; `api::error` maps it to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query text is wrong or not allowed (parse, plan, DDL/DML): 400.
    #[error("{0}")]
    BadQuery(String),
    /// The query ran and failed on the data, or hit a limit: 422.
    #[error("{0}")]
    Execution(String),
    #[error("SQL query timed out after {0:?} (query.sql.timeout)")]
    Timeout(Duration),
    /// Storage or DataFusion failed: 500.
    #[error("{0}")]
    Internal(String),
}

impl SqlError {
    fn from_datafusion(e: DataFusionError) -> Self {
        // A storage error anywhere in the chain is ours, whatever wraps it.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if err.downcast_ref::<storage::StorageError>().is_some() {
                return SqlError::Internal(e.to_string());
            }
            cur = err.source();
        }
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => SqlError::BadQuery(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(_)
            | DataFusionError::Execution(_)
            | DataFusionError::ArrowError(..) => SqlError::Execution(e.strip_backtrace()),
            _ => SqlError::Internal(e.to_string()),
        }
    }
}

/// A query's answer.
#[derive(Debug)]
pub struct SqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl SqlOutput {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A session holding only `series` and `samples` of `tenant`.
pub fn session(
    storage: &Storage,
    tenant: &TenantId,
    limits: &SqlLimits,
) -> Result<SessionContext, SqlError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.max_memory_bytes, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    // Two partitions: SQL shares the process with ingest and PromQL.
    let config = SessionConfig::new().with_target_partitions(2);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let budget = Arc::new(SampleBudget::new(limits.max_samples));
    for (name, kind) in [("series", Kind::Series), ("samples", Kind::Samples)] {
        let table = TenantTable::new(kind, storage.clone(), tenant.clone(), budget.clone());
        ctx.register_table(name, Arc::new(table))
            .map_err(|e| SqlError::Internal(e.to_string()))?;
    }
    Ok(ctx)
}

/// Runs one read-only query over `tenant`'s tables within `limits`.
pub async fn execute(
    storage: &Storage,
    tenant: &TenantId,
    sql: &str,
    limits: &SqlLimits,
) -> Result<SqlOutput, SqlError> {
    if sql.trim().is_empty() {
        return Err(SqlError::BadQuery("no SQL query given".into()));
    }
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::BadQuery(format!(
            "SQL text of {} bytes exceeds {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    let (operators, nesting) = operator_count(sql);
    if operators > MAX_SQL_OPERATORS {
        return Err(SqlError::BadQuery(format!(
            "the query has {operators} operators, more than {MAX_SQL_OPERATORS}"
        )));
    }
    if nesting > MAX_SQL_NESTING {
        return Err(SqlError::BadQuery(format!(
            "the query nests parentheses {nesting} deep, more than {MAX_SQL_NESTING}"
        )));
    }
    let ctx = session(storage, tenant, limits)?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let run = async {
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(SqlError::from_datafusion)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = df
            .execute_stream()
            .await
            .map_err(SqlError::from_datafusion)?;
        let mut batches = Vec::new();
        let mut rows = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(SqlError::from_datafusion)?;
            rows += batch.num_rows();
            if rows > limits.max_rows {
                return Err(SqlError::Execution(format!(
                    "the result has more than query.sql.max_rows ({}) rows; add a LIMIT or aggregate",
                    limits.max_rows
                )));
            }
            batches.push(batch);
        }
        Ok(SqlOutput { schema, batches })
    };
    // Dropping the stream on timeout cancels DataFusion's tasks.
    let out = tokio::time::timeout(limits.timeout, run)
        .await
        .map_err(|_| SqlError::Timeout(limits.timeout))??;
    debug!(%tenant, rows = out.rows(), "sql query done");
    Ok(out)
}

#[cfg(test)]
mod tests;
