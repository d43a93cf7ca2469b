//! The rules API (in the spirit of M3's r2 API), per tenant
//! (`X-Scope-OrgID`, else the default tenant), JSON in and out:
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/rules` | newest rule set with its version (404: none) |
//! | `PUT /api/v1/rules[?version=N]` | replace the rule set; with `version`, only if N is the newest (409 otherwise) |
//! | `DELETE /api/v1/rules` | commit an empty rule set (history is kept) |
//! | `POST /api/v1/rules/validate` | 200 if valid, 400 naming the field |
//! | `GET /api/v1/rules/history` | versions kept |
//! | `GET /api/v1/rules/versions/{version}` | one version |
//! | `GET`/`PUT`/`DELETE /api/v1/rules/{mapping,rollup}/{name}` | one rule |
//!
//! An invalid rule set or rule is a 400 whose message names the field.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use storage::TenantId;
use storage::tenant::{TENANT_HEADER, resolve};
use tracing::error;

use crate::job::now_ms;
use crate::rule_store::{self, EtcdError, RuleStore, RuleStoreError};
use crate::rules::{MappingRuleSpec, RollupRuleSpec, RuleSet, RuleSetSpec};

#[derive(Clone)]
pub struct RulesState {
    pub store: Arc<dyn RuleStore>,
    pub default_tenant: TenantId,
}

pub fn router(state: RulesState) -> Router {
    Router::new()
        .route(
            "/api/v1/rules",
            get(get_rules).put(put_rules).delete(delete_rules),
        )
        .route("/api/v1/rules/validate", post(validate))
        .route("/api/v1/rules/history", get(history))
        .route("/api/v1/rules/versions/{version}", get(get_version))
        .route(
            "/api/v1/rules/{kind}/{name}",
            get(get_rule).put(put_rule).delete(delete_rule),
        )
        .with_state(state)
}

/// Errors of the rules API, mapped to HTTP in one place.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// The rule store cannot be reached (etcd down): retry later.
    Unavailable(String),
    Internal(String),
}

impl From<RuleStoreError> for ApiError {
    fn from(e: RuleStoreError) -> Self {
        match e {
            RuleStoreError::Invalid(e) => Self::BadRequest(e.to_string()),
            e @ RuleStoreError::Conflict { .. } => Self::Conflict(e.to_string()),
            RuleStoreError::Storage(e) => Self::Internal(e.to_string()),
            RuleStoreError::Etcd(e @ EtcdError::Unavailable { .. }) => {
                Self::Unavailable(e.to_string())
            }
            RuleStoreError::Etcd(e) => Self::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, kind, msg) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            Self::Unavailable(m) => {
                error!(error = %m, "rules API: rule store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the rule store is unavailable; retry later".to_string(),
                )
            }
            Self::Internal(m) => {
                error!(error = %m, "rules API failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (logged)".to_string(),
                )
            }
        };
        (
            code,
            Json(json!({"status": "error", "errorType": kind, "error": msg})),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn tenant(s: &RulesState, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    resolve(
        headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        &s.default_tenant,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn parse_spec(body: &str) -> Result<RuleSetSpec, ApiError> {
    let spec = RuleSetSpec::parse(body, true).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    RuleSet::new(spec.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(spec)
}

fn ok(v: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": v})).into_response()
}

async fn get_rules(State(s): State<RulesState>, headers: HeaderMap) -> ApiResult {
    let t = tenant(&s, &headers)?;
    match s.store.latest(&t).await? {
        Some(r) => Ok(ok(json!(r))),
        None => Err(ApiError::NotFound(format!("tenant {t} has no rule set"))),
    }
}

#[derive(Deserialize)]
struct Base {
    version: Option<u64>,
}

async fn put_rules(
    State(s): State<RulesState>,
    headers: HeaderMap,
    Query(base): Query<Base>,
    body: String,
) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let spec = parse_spec(&body)?;
    let stored = match base.version {
        Some(v) => s.store.commit(&t, v, spec, now_ms()).await?,
        None => rule_store::update(s.store.as_ref(), &t, now_ms(), |_| Ok(spec.clone())).await?,
    };
    Ok(ok(json!(stored)))
}

async fn delete_rules(State(s): State<RulesState>, headers: HeaderMap) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let stored = rule_store::update(s.store.as_ref(), &t, now_ms(), |_| {
        Ok(RuleSetSpec::default())
    })
    .await?;
    Ok(ok(json!(stored)))
}

async fn validate(body: String) -> ApiResult {
    parse_spec(&body)?;
    Ok(ok(json!({"valid": true})))
}

async fn history(State(s): State<RulesState>, headers: HeaderMap) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let versions = s.store.history(&t).await?;
    Ok(ok(json!({"versions": versions})))
}

async fn get_version(
    State(s): State<RulesState>,
    headers: HeaderMap,
    Path(version): Path<u64>,
) -> ApiResult {
    let t = tenant(&s, &headers)?;
    match s.store.get(&t, version).await? {
        Some(r) => Ok(ok(json!(r))),
        None => Err(ApiError::NotFound(format!(
            "tenant {t} has no rule set version {version}"
        ))),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mapping,
    Rollup,
}

fn kind(k: &str) -> Result<Kind, ApiError> {
    match k {
        "mapping" => Ok(Kind::Mapping),
        "rollup" => Ok(Kind::Rollup),
        _ => Err(ApiError::NotFound(format!(
            "no rule kind {k:?} (mapping, rollup)"
        ))),
    }
}

async fn get_rule(
    State(s): State<RulesState>,
    headers: HeaderMap,
    Path((k, name)): Path<(String, String)>,
) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let k = kind(&k)?;
    let spec = s
        .store
        .latest(&t)
        .await?
        .map(|r| r.rules)
        .unwrap_or_default();
    let found = match k {
        Kind::Mapping => spec
            .mapping_rules
            .iter()
            .find(|r| r.name == name)
            .map(|r| json!(r)),
        Kind::Rollup => spec
            .rollup_rules
            .iter()
            .find(|r| r.name == name)
            .map(|r| json!(r)),
    };
    found
        .map(ok)
        .ok_or_else(|| ApiError::NotFound(format!("no rule named {name:?}")))
}

/// Creates or replaces one rule (its name is the path's).
async fn put_rule(
    State(s): State<RulesState>,
    headers: HeaderMap,
    Path((k, name)): Path<(String, String)>,
    body: String,
) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let bad =
        |e: serde_json::Error| ApiError::BadRequest(format!("invalid rule field document: {e}"));
    let k = kind(&k)?;
    let (mapping, rollup) = match k {
        Kind::Mapping => {
            let mut r: MappingRuleSpec = serde_json::from_str(&body).map_err(bad)?;
            r.name = name.clone();
            (Some(r), None)
        }
        Kind::Rollup => {
            let mut r: RollupRuleSpec = serde_json::from_str(&body).map_err(bad)?;
            r.name = name.clone();
            (None, Some(r))
        }
    };
    let stored = rule_store::update(s.store.as_ref(), &t, now_ms(), |spec| {
        let mut n = spec.clone();
        if let Some(r) = &mapping {
            match n.mapping_rules.iter_mut().find(|x| x.name == name) {
                Some(slot) => *slot = r.clone(),
                None => n.mapping_rules.push(r.clone()),
            }
        }
        if let Some(r) = &rollup {
            match n.rollup_rules.iter_mut().find(|x| x.name == name) {
                Some(slot) => *slot = r.clone(),
                None => n.rollup_rules.push(r.clone()),
            }
        }
        Ok(n)
    })
    .await?;
    Ok(ok(json!(stored)))
}

async fn delete_rule(
    State(s): State<RulesState>,
    headers: HeaderMap,
    Path((k, name)): Path<(String, String)>,
) -> ApiResult {
    let t = tenant(&s, &headers)?;
    let k = kind(&k)?;
    let current = s
        .store
        .latest(&t)
        .await?
        .map(|r| r.rules)
        .unwrap_or_default();
    let exists = match k {
        Kind::Mapping => current.mapping_rules.iter().any(|r| r.name == name),
        Kind::Rollup => current.rollup_rules.iter().any(|r| r.name == name),
    };
    if !exists {
        return Err(ApiError::NotFound(format!("no rule named {name:?}")));
    }
    let stored = rule_store::update(s.store.as_ref(), &t, now_ms(), |spec| {
        let mut n = spec.clone();
        match k {
            Kind::Mapping => n.mapping_rules.retain(|r| r.name != name),
            Kind::Rollup => n.rollup_rules.retain(|r| r.name != name),
        }
        Ok(n)
    })
    .await?;
    Ok(ok(json!(stored)))
}

#[cfg(test)]
mod tests;
