//! Tenant ids: validated once, then safe to use in object keys.

use std::fmt;

use crate::error::TenantError;

/// The longest tenant id accepted (the same limit Cortex and Mimir use).
pub const MAX_TENANT_LEN: usize = 150;

/// A tenant id made only of letters, digits, `_`, `.` and `-`, 1 to 150
/// characters, and not `.` or `..`. Only [`TenantId::new`] makes one, so any
/// `TenantId` is safe in a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn new(id: &str) -> Result<Self, TenantError> {
        let err = |reason| {
            Err(TenantError {
                id: id.chars().take(MAX_TENANT_LEN + 10).collect(),
                reason,
            })
        };
        if id.is_empty() {
            return err("must not be empty");
        }
        if id.len() > MAX_TENANT_LEN {
            return err("longer than 150 characters");
        }
        if id == "." || id == ".." {
            return err("must not be '.' or '..'");
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return err("only letters, digits, '_', '.' and '-' are allowed");
        }
        Ok(Self(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Header that carries the tenant id, as in Cortex, Mimir and Loki.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// The tenant of a request: the header's value when present (validated), the
/// default otherwise.
pub fn resolve(header: Option<&[u8]>, default: &TenantId) -> Result<TenantId, TenantError> {
    match header {
        None => Ok(default.clone()),
        Some(v) => TenantId::new(std::str::from_utf8(v).unwrap_or("\u{fffd}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_ids_and_rejects_the_rest() {
        for ok in ["a", "team-1", "x.y_z", &"a".repeat(150), "..."] {
            assert!(TenantId::new(ok).is_ok(), "{ok}");
        }
        let d = TenantId::new("d").expect("default");
        assert_eq!(resolve(None, &d), Ok(d.clone()));
        assert_eq!(resolve(Some(b"x"), &d), Ok(TenantId::new("x").expect("x")));
        assert!(resolve(Some(b"\xff"), &d).is_err());
        assert!(resolve(Some(b"a|b"), &d).is_err());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "é",
            "a\0",
            &"a".repeat(151),
            "a%2f",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?}");
        }
    }
}
