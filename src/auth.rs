//! Optional authentication: bearer tokens and basic-auth users, each bound to
//! one tenant. When any credential is configured, every API request must carry
//! one; the request then acts as that credential's tenant, and naming another
//! tenant in `X-Scope-OrgID` is refused with 403. Health endpoints and
//! `/metrics` stay open (protect them at the network level if needed).
//!
//! Without credentials configured, Strata trusts `X-Scope-OrgID` as Mimir
//! does (an authenticating proxy in front sets it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use storage::TenantId;
use storage::tenant::TENANT_HEADER;

/// The `[auth]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `Authorization: Bearer <token>` credentials.
    pub tokens: Vec<TokenCredential>,
    /// `Authorization: Basic ...` credentials.
    pub users: Vec<UserCredential>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCredential {
    pub token: String,
    pub tenant: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCredential {
    pub user: String,
    pub password: String,
    pub tenant: String,
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !(self.tokens.is_empty() && self.users.is_empty())
    }

    /// Checks the config; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.len() < 16 {
                return Err(format!("auth.tokens[{i}].token: at least 16 characters"));
            }
            TenantId::new(&t.tenant).map_err(|e| format!("auth.tokens[{i}].tenant: {e}"))?;
            if self.tokens[..i].iter().any(|o| o.token == t.token) {
                return Err(format!("auth.tokens[{i}].token: duplicate"));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.user.is_empty() || u.user.contains(':') {
                return Err(format!("auth.users[{i}].user: empty or contains ':'"));
            }
            if u.password.len() < 8 {
                return Err(format!("auth.users[{i}].password: at least 8 characters"));
            }
            TenantId::new(&u.tenant).map_err(|e| format!("auth.users[{i}].tenant: {e}"))?;
            if self.users[..i].iter().any(|o| o.user == u.user) {
                return Err(format!("auth.users[{i}].user: duplicate"));
            }
        }
        Ok(())
    }

    /// The tenant bound to the credentials in an `Authorization` header value.
    fn tenant_of(&self, authorization: &[u8]) -> Option<&str> {
        let value = std::str::from_utf8(authorization).ok()?;
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            // Compare against every token so the time taken does not say
            // which (or how much of one) matched.
            let mut found = None;
            for t in &self.tokens {
                if constant_time_eq(t.token.as_bytes(), rest.as_bytes()) {
                    found = Some(t.tenant.as_str());
                }
            }
            return found;
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = BASE64.decode(rest).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            let mut found = None;
            for u in &self.users {
                let ok = constant_time_eq(u.user.as_bytes(), user.as_bytes())
                    & constant_time_eq(u.password.as_bytes(), password.as_bytes());
                if ok {
                    found = Some(u.tenant.as_str());
                }
            }
            return found;
        }
        None
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Paths that never need credentials.
fn is_open(path: &str) -> bool {
    matches!(path, "/-/healthy" | "/-/ready" | "/metrics")
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut resp = (status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"strata\", Basic realm=\"strata\""),
        );
    }
    resp
}

/// Middleware: authenticates, then pins the request to the credential's tenant.
pub async fn authenticate(
    State(config): State<Arc<AuthConfig>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !config.enabled() || is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(auth) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(StatusCode::UNAUTHORIZED, "authentication required\n".into());
    };
    let Some(tenant) = config.tenant_of(auth.as_bytes()) else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid credentials\n".into());
    };
    if let Some(asked) = req.headers().get(TENANT_HEADER)
        && asked.as_bytes() != tenant.as_bytes()
    {
        let asked = String::from_utf8_lossy(asked.as_bytes()).into_owned();
        return refuse(
            StatusCode::FORBIDDEN,
            format!("these credentials may not access tenant {asked:?}\n"),
        );
    }
    match HeaderValue::from_str(tenant) {
        Ok(v) => {
            req.headers_mut().insert(TENANT_HEADER, v);
            next.run(req).await
        }
        // Validated at start; a tenant id is always a valid header value.
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad tenant in auth config\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: vec![TokenCredential {
                token: "token-for-team-a-0123".into(),
                tenant: "team-a".into(),
            }],
            users: vec![UserCredential {
                user: "bob".into(),
                password: "secret-pw".into(),
                tenant: "team-b".into(),
            }],
        }
    }

    #[test]
    fn credentials_map_to_their_tenant() {
        let c = config();
        assert_eq!(c.tenant_of(b"Bearer token-for-team-a-0123"), Some("team-a"));
        assert_eq!(
            c.tenant_of(b"bearer  token-for-team-a-0123 "),
            Some("team-a")
        );
        assert_eq!(c.tenant_of(b"Bearer token-for-team-a-0124"), None);
        let basic = format!("Basic {}", BASE64.encode("bob:secret-pw"));
        assert_eq!(c.tenant_of(basic.as_bytes()), Some("team-b"));
        let wrong = format!("Basic {}", BASE64.encode("bob:secret-px"));
        assert_eq!(c.tenant_of(wrong.as_bytes()), None);
        for junk in [&b"Basic !!!"[..], b"Bearer", b"", b"\xff\xfe", b"Digest x"] {
            assert_eq!(c.tenant_of(junk), None);
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(config().validate(), Ok(()));
        let mut c = config();
        c.tokens[0].token = "short".into();
        assert!(c.validate().unwrap_err().contains("auth.tokens[0].token"));
        let mut c = config();
        c.users[0].tenant = "a/b".into();
        assert!(c.validate().unwrap_err().contains("auth.users[0].tenant"));
        let mut c = config();
        c.tokens.push(c.tokens[0].clone());
        assert!(c.validate().unwrap_err().contains("duplicate"));
    }
}
