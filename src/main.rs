//! The `strata` binary: runs any role of Strata, or all of them at once.

mod auth;
mod config;
mod lambda;
mod limits;
mod server;
mod sql_cli;
mod tls;

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{Overrides, StrataConfig};

/// mimalloc instead of glibc's malloc: ingest allocates and frees small
/// buffers for every series of every request (see README "Ingest benchmark").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Strata: a Prometheus-compatible metrics store on object storage.
///
/// Prometheus remote-writes to Strata; Strata keeps the samples as immutable
/// segments on a local directory or an S3-compatible bucket and answers PromQL
/// over the Prometheus HTTP API, so Grafana and promtool work unchanged.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Run ingest and query in one process on one port (the laptop setup).
    ///
    /// Remote write: POST /api/v1/write (and /api/v1/prom/remote/write).
    /// Queries: /api/v1/query, /query_range, /series, /labels, /label/NAME/values.
    /// Also /metrics, /-/healthy and /-/ready.
    Serve(Overrides),
    /// Run only the ingest tier (remote write), e.g. behind a load balancer.
    Ingest(Overrides),
    /// Run only the query tier (Prometheus HTTP API).
    Query(Overrides),
    /// Compact segments into blocks, apply retention and delete what was
    /// replaced: passes until there is nothing left to do, then exit (for
    /// cron, a scheduled task or a Lambda); with --every, a pass every
    /// interval until stopped, serving /metrics.
    Compact(CompactArgs),
    /// Apply the tenants' mapping and roll-up rules to closed windows of raw
    /// data, writing blocks of the rules' resolutions: one pass, or with
    /// --every a pass every interval until stopped.
    Aggregate(CompactArgs),
    /// Manage rule sets: apply -f FILE, get, validate -f FILE (TOML, or
    /// JSON for a *.json file).
    Rules(RulesArgs),
    /// Run a read-only SQL query over a tenant's `series` and `samples`
    /// tables, directly against the configured storage (docs/sql.md).
    Sql(sql_cli::SqlArgs),
    /// Run as an AWS Lambda function serving the HTTP API (API Gateway HTTP
    /// API or function URL events). Needs S3 storage. A binary named
    /// `bootstrap` started without arguments picks its role from the
    /// function's Handler setting instead (all, ingest, query, compact,
    /// aggregate).
    Lambda(LambdaArgs),
    /// Run as an AWS Lambda function for a scheduled job (EventBridge
    /// scheduled events): `compact` or `aggregate`, one pass per invocation.
    LambdaJob(LambdaJobArgs),
}

#[derive(clap::Args, Debug)]
struct LambdaArgs {
    #[command(flatten)]
    overrides: Overrides,
    /// Which HTTP API this function serves.
    #[arg(long, value_enum, default_value = "all")]
    role: lambda::HttpRole,
}

#[derive(clap::Args, Debug)]
struct LambdaJobArgs {
    /// The job to run on each invocation.
    #[arg(value_enum)]
    job: lambda::Job,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(clap::Args, Debug)]
struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
    #[command(flatten)]
    overrides: Overrides,
    /// Tenant whose rule set to apply or get [default: the default tenant]
    #[arg(long, global = true)]
    tenant: Option<String>,
}

#[derive(Subcommand, Debug)]
enum RulesCommand {
    /// Commit a rule file as the tenant's next rule set version.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
    },
    /// Print the tenant's newest rule set (or --version N) as JSON.
    Get {
        #[arg(long)]
        version: Option<u64>,
    },
    /// Check a rule file; errors name the field.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct CompactArgs {
    #[command(flatten)]
    overrides: Overrides,
    /// Run a pass every interval (e.g. "5m") instead of once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    every: Option<std::time::Duration>,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let handler = std::env::var("_HANDLER").ok();
    let cli = match lambda::bootstrap_args(&args, handler.as_deref()) {
        None => Cli::parse(),
        Some(Ok(args)) => Cli::parse_from(args),
        Some(Err(e)) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    let (roles, flags) = match &cli.role {
        Role::Serve(f) => (server::Roles::SERVE, f),
        Role::Ingest(f) => (server::Roles::INGEST, f),
        Role::Query(f) => (server::Roles::QUERY, f),
        Role::Compact(a) | Role::Aggregate(a) => (server::Roles::COMPACT, &a.overrides),
        Role::Rules(a) => (server::Roles::COMPACT, &a.overrides),
        Role::Sql(a) => (server::Roles::QUERY, &a.overrides),
        // Not used: the Lambda entry points choose their own roles.
        Role::Lambda(a) => (server::Roles::SERVE, &a.overrides),
        Role::LambdaJob(a) => (server::Roles::COMPACT, &a.overrides),
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match StrataConfig::load(flags, &env) {
        Ok(mut c) => {
            if let Role::Compact(a) = &cli.role {
                c.compact.every = a.every.unwrap_or_default();
            }
            c
        }
        Err(e) => {
            eprintln!("strata: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    server::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        match cli.role {
            Role::Compact(_) if config.compact.every.is_zero() => {
                server::compact_once(config).await
            }
            Role::Aggregate(a) => server::aggregate(config, a.every).await,
            Role::Rules(a) => rules_command(config, a).await,
            Role::Sql(a) => sql_cli::run(config, a).await,
            Role::Lambda(a) => lambda::run_http(config, a.role).await,
            Role::LambdaJob(a) => lambda::run_job(config, a.job).await,
            _ => server::run(config, roles).await,
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata stopped");
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `strata rules ...`: against the configured rule store (`[rules]`).
async fn rules_command(config: StrataConfig, args: RulesArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    if let RulesCommand::Validate { file } = &args.command {
        aggregator::cli::read_file(file).map_err(anyhow::Error::msg)?;
        println!("{}: valid", file.display());
        return Ok(());
    }
    let tenant = match &args.tenant {
        Some(t) => storage::TenantId::new(t).context("--tenant")?,
        None => config.default_tenant(),
    };
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let store = server::rule_store(&config, store)?;
    match &args.command {
        RulesCommand::Apply { file } => {
            let v = aggregator::cli::apply(store, &tenant, file)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("tenant {tenant}: rule set version {v}");
        }
        RulesCommand::Get { version } => {
            let text = aggregator::cli::get(store, &tenant, *version)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("{text}");
        }
        RulesCommand::Validate { .. } => {}
    }
    Ok(())
}
