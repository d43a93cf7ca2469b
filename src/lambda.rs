//! AWS Lambda entry points of the one `strata` binary.
//!
//! - `strata lambda --role all|ingest|query`: the same axum router as
//!   `strata serve`, served from API Gateway HTTP API (payload 2.0) and
//!   function URL events through `lambda_http`.
//! - `strata lambda-job compact|aggregate`: one compaction or aggregation
//!   pass per EventBridge scheduled event, through `lambda_runtime`.
//!
//! Deployed as a zip whose `bootstrap` is the `strata` binary, the function's
//! `Handler` setting (`_HANDLER`) names the entry point: see [`bootstrap_args`].
//!
//! The configuration, the object store, the router (with its group committer)
//! and the compactor or aggregator are built once per cold start; each
//! invocation is a plain async function of the event and that context
//! ([`handle_http`], [`handle_job`]).
//!
//! Durability: an ingest invocation answers only after the group commit has
//! put the segment holding its samples (the same rule as the server: puts run
//! as tasks, but the request waits for its own), so nothing is left to run
//! after the response and a frozen or recycled instance loses nothing.

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use aggregator::Aggregator;
use anyhow::Context as _;
use axum::Router;
use axum::response::Response;
use compactor::{Compactor, CompactorMetrics};
use lambda_http::tower::ServiceExt;
use lambda_runtime::LambdaEvent;
use object_store::ObjectStore;
use serde::Deserialize;
use serde_json::{Value, json};
use storage::cached_store::CacheConfig;
use storage::config::Backend;
use tracing::info;

use crate::config::StrataConfig;
use crate::server::{self, Roles};

/// Which HTTP API a `strata lambda` function serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HttpRole {
    /// Remote write and queries in one function.
    All,
    /// Remote write only.
    Ingest,
    /// The Prometheus query API only.
    Query,
}

impl HttpRole {
    fn roles(self) -> Roles {
        match self {
            HttpRole::All => Roles {
                ingest: true,
                query: true,
                compact: false,
            },
            HttpRole::Ingest => Roles::INGEST,
            HttpRole::Query => Roles::QUERY,
        }
    }
}

/// Scheduled jobs of `strata lambda-job`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Job {
    /// One compaction pass per invocation.
    Compact,
    /// One aggregation (roll-up rules) pass per invocation.
    Aggregate,
}

/// The command line a function deployed as `bootstrap` stands for: when the
/// binary is invoked as `bootstrap` without arguments (as Lambda's
/// `provided.al2023` runtime does), its `Handler` setting (`_HANDLER`) picks
/// the entry point: `all` (or `http`), `ingest`, `query`, `compact`,
/// `aggregate`.
/// `None` means: not a bootstrap invocation, parse the real arguments.
pub fn bootstrap_args(
    args: &[OsString],
    handler: Option<&str>,
) -> Option<Result<Vec<String>, String>> {
    let [argv0] = args else {
        return None;
    };
    if Path::new(argv0).file_name() != Some("bootstrap".as_ref()) {
        return None;
    }
    let rest: &[&str] = match handler.map(str::trim) {
        Some("all" | "http") => &["lambda", "--role", "all"],
        Some("ingest") => &["lambda", "--role", "ingest"],
        Some("query") => &["lambda", "--role", "query"],
        Some("compact") => &["lambda-job", "compact"],
        Some("aggregate") => &["lambda-job", "aggregate"],
        other => {
            return Some(Err(format!(
                "started as bootstrap with Handler {other:?}: set the function's Handler to \
                 one of all, ingest, query, compact, aggregate"
            )));
        }
    };
    let mut out = vec!["strata".to_string()];
    out.extend(rest.iter().map(|s| s.to_string()));
    Some(Ok(out))
}

/// On Lambda only object storage is shared and durable: the local disk is a
/// per-instance `/tmp`, and memory goes with the instance.
pub fn check_storage(config: &StrataConfig) -> anyhow::Result<()> {
    match config.storage.backend {
        Backend::S3 => Ok(()),
        other => anyhow::bail!(
            "storage backend {other:?} cannot be used on Lambda (instance disks and memory are \
             not shared and not kept): set STRATA_STORAGE=s3 and STRATA_S3_BUCKET"
        ),
    }
}

/// Bytes in a MiB.
const MIB: u64 = 1024 * 1024;
/// The disk tier on the instance's `/tmp` (512 MB unless the function's
/// ephemeral storage is raised): most of it, leaving room for anything else.
const LAMBDA_DISK_CACHE_BYTES: u64 = 384 * MIB;

/// The query cache of a Lambda instance: unless `[query.cache]` was set
/// explicitly (anything but the defaults), a quarter of the function's
/// memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, in MB) in memory and 384 MiB on
/// the instance's temporary directory (`tmp`, normally `/tmp`), which live as
/// long as the instance.
pub fn lambda_cache(configured: &CacheConfig, memory_mb: Option<u64>, tmp: &Path) -> CacheConfig {
    let Some(memory_mb) = memory_mb else {
        return configured.clone();
    };
    if *configured != CacheConfig::default() {
        return configured.clone();
    }
    CacheConfig {
        memory_bytes: (memory_mb * MIB / 4).max(16 * MIB),
        disk_bytes: LAMBDA_DISK_CACHE_BYTES,
        disk_dir: tmp.join("strata-cache"),
        ..configured.clone()
    }
}

/// What an HTTP function builds once per cold start.
pub struct HttpContext {
    router: Router,
}

impl HttpContext {
    pub fn new(
        config: &StrataConfig,
        role: HttpRole,
        store: Arc<dyn ObjectStore>,
    ) -> anyhow::Result<Self> {
        // Compaction never runs inside an HTTP function: it is its own
        // scheduled function, so `app` gets no compact role.
        let router = server::app(config, role.roles(), store)?.router;
        Ok(Self { router })
    }
}

/// One HTTP invocation: the request decoded from an API Gateway v2 or function
/// URL event, answered by the router.
pub async fn handle_http(
    ctx: &HttpContext,
    req: lambda_http::Request,
) -> Result<Response, Infallible> {
    ctx.router
        .clone()
        .oneshot(req.map(axum::body::Body::new))
        .await
}

/// `strata lambda`: serves HTTP invocations until the runtime stops the process.
pub async fn run_http(mut config: StrataConfig, role: HttpRole) -> anyhow::Result<()> {
    check_storage(&config)?;
    let memory_mb = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|m| m.parse().ok());
    config.query.cache = lambda_cache(&config.query.cache, memory_mb, &std::env::temp_dir());
    config
        .query
        .cache
        .validate()
        .map_err(|e| anyhow::anyhow!("query cache for Lambda: {e}"))?;
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let ctx = Arc::new(HttpContext::new(&config, role, store)?);
    let cache = &config.query.cache;
    info!(?role, bucket = %config.storage.s3.bucket, cache_memory_bytes = cache.memory_bytes,
        cache_disk_bytes = cache.disk_bytes, "Strata Lambda HTTP function ready");
    lambda_http::run(lambda_http::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { handle_http(&ctx, req).await }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

/// An EventBridge scheduled event (`detail-type: Scheduled Event`). Only what
/// is logged is read; a manual test invocation with `{}` works as well.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ScheduledEvent {
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub time: String,
    pub resources: Vec<String>,
}

/// What a job function builds once per cold start.
pub enum JobContext {
    Compact(Compactor),
    Aggregate(Aggregator),
}

impl JobContext {
    pub fn new(
        config: &StrataConfig,
        job: Job,
        store: Arc<dyn ObjectStore>,
    ) -> anyhow::Result<Self> {
        Ok(match job {
            Job::Compact => {
                let c = Compactor::new(store, config.compact.clone(), CompactorMetrics::default());
                JobContext::Compact(match server::lease_backend(config, Default::default())? {
                    Some(l) => c.with_leases(l),
                    None => c,
                })
            }
            Job::Aggregate => {
                let rules = server::rule_store(config, store.clone())?;
                let job = Aggregator::new(store, rules, config.aggregate.clone());
                let leases = server::lease_backend(config, Default::default())?;
                JobContext::Aggregate(server::aggregator_with_leases(job, &leases))
            }
        })
    }
}

/// One scheduled invocation: one pass of the job over every tenant; the
/// result (the pass' figures) is the function's response. A failed pass
/// fails the invocation (reported to the runtime's error endpoint); passes
/// are crash-safe and the next schedule retries.
pub async fn handle_job(
    ctx: &JobContext,
    event: LambdaEvent<ScheduledEvent>,
) -> Result<Value, lambda_runtime::Error> {
    let request_id = event.context.request_id;
    let ev = event.payload;
    let out = match ctx {
        JobContext::Compact(c) => {
            info!(%request_id, event_id = %ev.id, scheduled = %ev.time, "compaction invocation");
            let s = c.run_pass().await?;
            json!({
                "job": "compact",
                "tenants": s.tenants,
                "blocks_written": s.blocks_written,
                "blocks_replaced": s.blocks_replaced,
                "segments_read": s.segments_read,
                "samples_written": s.samples_written,
                "bytes_written": s.bytes_written,
                "objects_deleted": s.objects_deleted,
                "lease_skips": s.lease_skips,
                "conflicts": s.conflicts,
                "requests": s.requests,
            })
        }
        JobContext::Aggregate(a) => {
            info!(%request_id, event_id = %ev.id, scheduled = %ev.time, "aggregation invocation");
            let s = a.run_pass().await?;
            json!({
                "job": "aggregate",
                "tenants": s.tenants,
                "windows": s.windows,
                "reaggregated": s.reaggregated,
                "blocks_written": s.blocks_written,
                "samples_read": s.samples_read,
                "samples_written": s.samples_written,
                "series_written": s.series_written,
                "lease_skips": s.lease_skips,
                "blocks_retired": s.blocks_retired,
            })
        }
    };
    info!(result = %out, "invocation done");
    Ok(out)
}

/// `strata lambda-job JOB`: serves scheduled invocations until stopped.
pub async fn run_job(config: StrataConfig, job: Job) -> anyhow::Result<()> {
    check_storage(&config)?;
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let ctx = Arc::new(JobContext::new(&config, job, store)?);
    info!(?job, bucket = %config.storage.s3.bucket, "Strata Lambda job function ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<ScheduledEvent>| {
            let ctx = ctx.clone();
            async move { handle_job(&ctx, event).await }
        },
    ))
    .await
    .map_err(|e| anyhow::anyhow!("Lambda runtime: {e}"))
}

#[cfg(test)]
mod tests;
