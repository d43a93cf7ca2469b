//! `strata rules apply|get|validate`: rule files (TOML, or JSON when the
//! file name ends in `.json`) against the configured rule store (`[rules]`).

use std::path::Path;
use std::sync::Arc;

use storage::TenantId;

use crate::job::now_ms;
use crate::rule_store::{self, RuleStore};
use crate::rules::{RuleSet, RuleSetSpec};

/// Reads and validates a rule file.
pub fn read_file(path: &Path) -> Result<RuleSetSpec, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let spec = RuleSetSpec::parse(&text, json).map_err(|e| format!("{}: {e}", path.display()))?;
    RuleSet::new(spec.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(spec)
}

/// Commits the rule file as the tenant's next version; returns it.
pub async fn apply(
    rules: Arc<dyn RuleStore>,
    tenant: &TenantId,
    path: &Path,
) -> Result<u64, String> {
    let spec = read_file(path)?;
    let stored = rule_store::update(rules.as_ref(), tenant, now_ms(), |_| Ok(spec.clone()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(stored.version)
}

/// The tenant's newest rule set (or `version`) as pretty JSON.
pub async fn get(
    rules: Arc<dyn RuleStore>,
    tenant: &TenantId,
    version: Option<u64>,
) -> Result<String, String> {
    let stored = match version {
        Some(v) => rules.get(tenant, v).await,
        None => rules.latest(tenant).await,
    }
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("tenant {tenant} has no such rule set"))?;
    serde_json::to_string_pretty(&stored).map_err(|e| e.to_string())
}
