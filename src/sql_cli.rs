//! `strata sql "..."`: a read-only SQL query over one tenant's `series` and
//! `samples` tables (see `docs/sql.md`), run in this process directly
//! against the configured object store, as `strata rules` does: no server
//! needed, and the operator's storage credentials are the access control.
//! Limits are the `[query.sql]` ones and `query.max_samples`.

use std::io::Write;

use anyhow::Context;
use storage::{Storage, TenantId};

use crate::config::{Overrides, StrataConfig};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The SQL query, e.g. "SELECT metric_name, count(*) FROM series GROUP BY 1".
    pub query: String,
    /// Tenant whose tables to query [default: the default tenant]
    #[arg(long)]
    pub tenant: Option<String>,
    /// Output: an aligned text table, the JSON of /api/v1/sql, or an Arrow
    /// IPC stream (binary, for piping into other tools).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Arrow,
}

pub async fn run(config: StrataConfig, args: SqlArgs) -> anyhow::Result<()> {
    let tenant = match &args.tenant {
        Some(t) => TenantId::new(t).context("--tenant")?,
        None => config.default_tenant(),
    };
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let storage = Storage::new(store);
    let limits = querier::sql::SqlLimits::new(&config.query.sql, config.query.max_samples);
    let out = querier::sql::execute(&storage, &tenant, &args.query, &limits).await?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Table => {
            let text = querier::sql::output::to_text(&out.schema, &out.batches)?;
            stdout.write_all(text.as_bytes())?;
        }
        Format::Json => {
            let json = querier::sql::output::to_json(&out)?;
            writeln!(stdout, "{json}")?;
        }
        Format::Arrow => {
            let bytes = querier::sql::output::to_arrow_ipc(&out.schema, &out.batches)?;
            stdout.write_all(&bytes)?;
        }
    }
    stdout.flush()?;
    Ok(())
}
