//! Which object store to use, and building it: the one place an
//! `Arc<dyn ObjectStore>` is made from configuration.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

use crate::error::{Result, StorageError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on the local file system (`data_dir`).
    #[default]
    Local,
    /// An S3-compatible bucket (`[storage.s3]`).
    S3,
    /// Process memory; everything is lost on exit. For tests and demos.
    Memory,
}

/// `[storage]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Root directory of the local backend.
    pub data_dir: PathBuf,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            data_dir: PathBuf::from("./data"),
            s3: S3Config::default(),
        }
    }
}

/// `[storage.s3]` section. Credentials not given here come from the standard
/// AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), web identity, or the ECS/EC2 instance credentials.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// Endpoint of an S3-compatible server (MinIO, SeaweedFS); empty for AWS.
    pub endpoint: String,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible
    /// servers need.
    pub path_style: bool,
    /// Allow `http://` endpoints (local testing only).
    pub allow_http: bool,
    /// Key prefix inside the bucket, so several deployments can share one.
    pub prefix: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            path_style: false,
            allow_http: false,
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

impl StorageConfig {
    /// Cross-field checks; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(StorageError::Config {
                field,
                reason: reason.into(),
            })
        };
        match self.backend {
            Backend::Local if self.data_dir.as_os_str().is_empty() => {
                bad("storage.data_dir", "must not be empty")
            }
            Backend::S3 if self.s3.bucket.is_empty() => bad(
                "storage.s3.bucket",
                "required when storage.backend = \"s3\"",
            ),
            Backend::S3 if !self.s3.endpoint.is_empty() && !self.s3.endpoint.contains("://") => {
                bad(
                    "storage.s3.endpoint",
                    "must be a URL such as http://127.0.0.1:9000",
                )
            }
            Backend::S3
                if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() =>
            {
                bad(
                    "storage.s3.secret_access_key",
                    "access_key_id and secret_access_key go together",
                )
            }
            _ => Ok(()),
        }
    }

    /// Builds the object store. The local directory is created if missing.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        self.validate()?;
        let cfg_err = |field, e: &dyn std::fmt::Display| StorageError::Config {
            field,
            reason: e.to_string(),
        };
        match self.backend {
            Backend::Memory => Ok(Arc::new(InMemory::new())),
            Backend::Local => {
                std::fs::create_dir_all(&self.data_dir)
                    .map_err(|e| cfg_err("storage.data_dir", &e))?;
                let fs = LocalFileSystem::new_with_prefix(&self.data_dir)
                    .map_err(|e| cfg_err("storage.data_dir", &e))?;
                Ok(Arc::new(fs))
            }
            Backend::S3 => {
                let s3 = &self.s3;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_allow_http(s3.allow_http)
                    // Manifests and leases rely on If-Match / If-None-Match.
                    .with_conditional_put(S3ConditionalPut::ETagMatch);
                if !s3.endpoint.is_empty() {
                    b = b.with_endpoint(&s3.endpoint);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                }
                let store = b.build().map_err(|e| cfg_err("storage.s3", &e))?;
                let prefix = s3.prefix.trim_matches('/');
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let c = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("storage.s3.bucket"), "{err}");
        let mut c = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        c.s3.bucket = "b".into();
        c.s3.endpoint = "localhost:9000".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("storage.s3.endpoint")
        );
        c.s3.endpoint = "http://localhost:9000".into();
        c.s3.access_key_id = Some("x".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("secret_access_key")
        );
        c.s3.secret_access_key = Some("y".into());
        assert!(c.validate().is_ok());
        assert!(c.build().is_ok());
    }

    #[test]
    fn local_backend_creates_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = StorageConfig {
            data_dir: dir.path().join("nested/data"),
            ..Default::default()
        };
        c.build().expect("build");
        assert!(dir.path().join("nested/data").is_dir());
    }
}
