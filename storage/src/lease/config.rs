//! The `[leases]` section: where job leases are taken (the object store,
//! the default, or etcd), and building that backend.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::info;

use super::LeaseBackend;
use super::etcd::EtcdLeases;
use crate::error::StorageError;
use crate::etcd::{EtcdMetrics, EtcdSection, Gateway};

/// Where the section keeps its records (the object store or etcd).
pub type LeasesBackend = crate::etcd::Backend;

/// The default `etcd_prefix`.
const DEFAULT_PREFIX: &str = "/strata/leases";

/// Where job leases (compactor, aggregator) are taken.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeasesConfig {
    /// `object_store` (default) or `etcd`.
    pub backend: LeasesBackend,
    /// etcd client URLs (`http://host:2379` or `https://...`), tried in
    /// turn; needed by the etcd backend.
    pub etcd_endpoints: Vec<String>,
    /// Keys are `<etcd_prefix>/<job>/<tenant>/<shard>`.
    pub etcd_prefix: String,
    /// Time to connect to an endpoint before trying the next one.
    #[serde(with = "humantime_serde")]
    pub etcd_connect_timeout: Duration,
    /// Time for one request, answer included.
    #[serde(with = "humantime_serde")]
    pub etcd_request_timeout: Duration,
}

impl Default for LeasesConfig {
    fn default() -> Self {
        Self {
            backend: LeasesBackend::ObjectStore,
            etcd_endpoints: Vec::new(),
            etcd_prefix: DEFAULT_PREFIX.into(),
            etcd_connect_timeout: Duration::from_secs(2),
            etcd_request_timeout: Duration::from_secs(5),
        }
    }
}

impl LeasesConfig {
    /// Checks the section; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        EtcdSection {
            section: "leases",
            backend: self.backend,
            endpoints: &self.etcd_endpoints,
            prefix: &self.etcd_prefix,
            example_prefix: DEFAULT_PREFIX,
            connect_timeout: self.etcd_connect_timeout,
            request_timeout: self.etcd_request_timeout,
        }
        .validate()
    }

    /// The configured lease backend when it is not the object store;
    /// `None` for the object store, where each job takes its leases on the
    /// store it works on (so its requests are counted with the job's).
    /// Builds clients only, connects to nothing.
    pub fn build(
        &self,
        metrics: EtcdMetrics,
    ) -> Result<Option<Arc<dyn LeaseBackend>>, StorageError> {
        Ok(match self.backend {
            LeasesBackend::ObjectStore => None,
            LeasesBackend::Etcd => {
                let gateway = Gateway::new(
                    &self.etcd_endpoints,
                    self.etcd_connect_timeout,
                    self.etcd_request_timeout,
                )?
                .with_metrics(metrics);
                info!(endpoints = ?self.etcd_endpoints, prefix = %self.etcd_prefix, "job leases in etcd");
                Some(Arc::new(EtcdLeases::new(gateway, &self.etcd_prefix)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        assert_eq!(LeasesConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut LeasesConfig)| {
            let mut c = LeasesConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.backend = LeasesBackend::Etcd).contains("leases.etcd_endpoints:"));
        assert!(
            bad(|c| c.etcd_endpoints = vec!["http://a:2379".into(), "a:2379".into()])
                .contains("leases.etcd_endpoints[1]")
        );
        assert!(bad(|c| c.etcd_prefix = "leases".into()).contains("leases.etcd_prefix"));
        assert!(bad(|c| c.etcd_prefix = "/".into()).contains("leases.etcd_prefix"));
        assert!(
            bad(|c| c.etcd_connect_timeout = Duration::ZERO)
                .contains("leases.etcd_connect_timeout")
        );
        assert!(
            bad(|c| c.etcd_request_timeout = Duration::ZERO)
                .contains("leases.etcd_request_timeout")
        );
        let ok = LeasesConfig {
            backend: LeasesBackend::Etcd,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into()],
            ..LeasesConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn deserializes_and_builds() {
        // TOML is parsed by the binary's config; the derive is what matters.
        let c: LeasesConfig = serde_json::from_str(
            r#"{"backend": "etcd", "etcd_endpoints": ["http://127.0.0.1:2379"], "etcd_request_timeout": "1s"}"#,
        )
        .expect("config");
        assert_eq!(c.backend, LeasesBackend::Etcd);
        assert_eq!(c.etcd_request_timeout, Duration::from_secs(1));
        assert!(c.build(EtcdMetrics::default()).expect("build").is_some());
        assert!(
            LeasesConfig::default()
                .build(EtcdMetrics::default())
                .expect("build")
                .is_none()
        );
        assert!(serde_json::from_str::<LeasesConfig>(r#"{"backend": "zookeeper"}"#).is_err());
        assert!(serde_json::from_str::<LeasesConfig>(r#"{"etcd_endpoint": []}"#).is_err());
        assert_eq!("ETCD".parse::<LeasesBackend>(), Ok(LeasesBackend::Etcd));
        assert!(
            "s3".parse::<LeasesBackend>()
                .unwrap_err()
                .contains("object_store, etcd")
        );
    }
}
