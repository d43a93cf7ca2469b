//! The `[rules]` section: where rule sets live (the object store, the
//! default, or etcd), and building that backend.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use serde::Deserialize;
use tracing::info;

use storage::etcd::{EtcdMetrics, EtcdSection, Gateway};

use super::etcd::EtcdRuleStore;
use super::{ObjectRuleStore, RuleStore, RuleStoreError};

/// Where the section keeps its records (the object store or etcd).
pub type RulesBackend = storage::etcd::Backend;

/// The default `etcd_prefix`.
const DEFAULT_PREFIX: &str = "/strata/rules";

/// Where rule sets live.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// `object_store` (default) or `etcd`.
    pub backend: RulesBackend,
    /// etcd client URLs (`http://host:2379` or `https://...`), tried in
    /// turn; needed by the etcd backend.
    pub etcd_endpoints: Vec<String>,
    /// Keys are `<etcd_prefix>/heads/<tenant>` and
    /// `<etcd_prefix>/versions/<tenant>/<version>`.
    pub etcd_prefix: String,
    /// Time to connect to an endpoint before trying the next one.
    #[serde(with = "humantime_serde")]
    pub etcd_connect_timeout: Duration,
    /// Time for one request, answer included.
    #[serde(with = "humantime_serde")]
    pub etcd_request_timeout: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            backend: RulesBackend::ObjectStore,
            etcd_endpoints: Vec::new(),
            etcd_prefix: DEFAULT_PREFIX.into(),
            etcd_connect_timeout: Duration::from_secs(2),
            etcd_request_timeout: Duration::from_secs(5),
        }
    }
}

impl RulesConfig {
    /// Checks the section; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        EtcdSection {
            section: "rules",
            backend: self.backend,
            endpoints: &self.etcd_endpoints,
            prefix: &self.etcd_prefix,
            example_prefix: DEFAULT_PREFIX,
            connect_timeout: self.etcd_connect_timeout,
            request_timeout: self.etcd_request_timeout,
        }
        .validate()
    }

    /// The configured rule store; `store` is used by the object-store
    /// backend. Builds clients only, connects to nothing.
    pub fn build(&self, store: Arc<dyn ObjectStore>) -> Result<Arc<dyn RuleStore>, RuleStoreError> {
        self.build_with_metrics(store, EtcdMetrics::default())
    }

    /// [`RulesConfig::build`], counting etcd requests in `metrics`.
    pub fn build_with_metrics(
        &self,
        store: Arc<dyn ObjectStore>,
        metrics: EtcdMetrics,
    ) -> Result<Arc<dyn RuleStore>, RuleStoreError> {
        Ok(match self.backend {
            RulesBackend::ObjectStore => Arc::new(ObjectRuleStore::new(store)),
            RulesBackend::Etcd => {
                let gateway = Gateway::new(
                    &self.etcd_endpoints,
                    self.etcd_connect_timeout,
                    self.etcd_request_timeout,
                )?
                .with_metrics(metrics);
                info!(endpoints = ?self.etcd_endpoints, prefix = %self.etcd_prefix, "rule sets in etcd");
                Arc::new(EtcdRuleStore::new(gateway, &self.etcd_prefix))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        assert_eq!(RulesConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut RulesConfig)| {
            let mut c = RulesConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.backend = RulesBackend::Etcd).contains("rules.etcd_endpoints:"));
        assert!(
            bad(|c| c.etcd_endpoints = vec!["http://a:2379".into(), "a:2379".into()])
                .contains("rules.etcd_endpoints[1]")
        );
        assert!(
            bad(|c| c.etcd_endpoints = vec!["http://a:2379/v3".into()])
                .contains("rules.etcd_endpoints[0]")
        );
        assert!(bad(|c| c.etcd_prefix = "strata".into()).contains("rules.etcd_prefix"));
        assert!(bad(|c| c.etcd_prefix = "/".into()).contains("rules.etcd_prefix"));
        assert!(
            bad(|c| c.etcd_request_timeout = Duration::ZERO).contains("rules.etcd_request_timeout")
        );
        let mut ok = RulesConfig {
            backend: RulesBackend::Etcd,
            etcd_endpoints: vec!["http://127.0.0.1:2379".into(), "https://etcd:2379/".into()],
            ..RulesConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        ok.etcd_prefix = "/a/b/".into();
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn parses_toml_and_names() {
        let c: RulesConfig = toml::from_str(
            "backend = \"etcd\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\netcd_request_timeout = \"1s\"",
        )
        .expect("toml");
        assert_eq!(c.backend, RulesBackend::Etcd);
        assert_eq!(c.etcd_request_timeout, Duration::from_secs(1));
        assert!(toml::from_str::<RulesConfig>("backend = \"zookeeper\"").is_err());
        assert!(toml::from_str::<RulesConfig>("etcd_endpoint = []").is_err());
        assert_eq!("ETCD".parse::<RulesBackend>(), Ok(RulesBackend::Etcd));
        assert_eq!(
            "object-store".parse::<RulesBackend>(),
            Ok(RulesBackend::ObjectStore)
        );
        assert!(
            "s3".parse::<RulesBackend>()
                .unwrap_err()
                .contains("object_store, etcd")
        );
    }
}
