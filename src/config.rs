//! Strata's configuration: one typed struct with defaults, read from a TOML
//! file, then environment variables, then command-line flags (each later
//! source wins), and validated before anything starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::auth::AuthConfig;
use crate::limits::LimitsConfig;
use crate::tls::{ClientAuth, TlsConfig};
use aggregator::{AggregateConfig, RulesBackend, RulesConfig};
use compactor::CompactorConfig;
use ingest::IngestConfig;
use querier::api::QueryConfig;
use serde::Deserialize;
use storage::TenantId;
use storage::config::{Backend, StorageConfig};
use storage::lease::{LeasesBackend, LeasesConfig};

/// The whole configuration file. Every field has a default, so an empty file
/// (or none) is a working laptop setup: local storage in `./data`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrataConfig {
    /// Address of the HTTP server (all APIs, `/metrics`, health).
    pub listen: SocketAddr,
    /// Tenant of requests without an `X-Scope-OrgID` header.
    pub default_tenant: String,
    /// Log filter in `RUST_LOG` syntax.
    pub log: String,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub compact: CompactorConfig,
    pub aggregate: AggregateConfig,
    /// `[rules]`: where rule sets live (object store or etcd).
    pub rules: RulesConfig,
    /// `[leases]`: where job leases are taken (object store or etcd).
    pub leases: LeasesConfig,
    pub auth: AuthConfig,
    /// `[limits]`: per-tenant limits (`src/limits.rs`).
    pub limits: LimitsConfig,
    /// `[tls]`: HTTPS on `listen` when a certificate and key are set.
    pub tls: TlsConfig,
}

impl Default for StrataConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9201)),
            default_tenant: "default".into(),
            log: "info".into(),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            compact: CompactorConfig::default(),
            aggregate: AggregateConfig::default(),
            rules: RulesConfig::default(),
            leases: LeasesConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Command-line overrides (see `strata serve --help`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file [env: STRATA_CONFIG]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:9201] [env: STRATA_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the local storage backend [default: ./data] [env: STRATA_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Storage backend [default: local] [env: STRATA_STORAGE]
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub storage: Option<Backend>,
    /// S3 bucket [env: STRATA_S3_BUCKET]
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3-compatible endpoint URL, e.g. http://127.0.0.1:9000 [env: STRATA_S3_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region [default: us-east-1] [env: STRATA_S3_REGION]
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket [env: STRATA_S3_PREFIX]
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// Use path-style S3 requests (most S3-compatible servers) [env: STRATA_S3_PATH_STYLE]
    #[arg(long)]
    pub s3_path_style: bool,
    /// Allow plain-HTTP S3 endpoints [env: STRATA_S3_ALLOW_HTTP]
    #[arg(long)]
    pub s3_allow_http: bool,
    /// Tenant of requests without X-Scope-OrgID [default: default] [env: STRATA_DEFAULT_TENANT]
    #[arg(long, value_name = "TENANT")]
    pub default_tenant: Option<String>,
    /// Log filter, e.g. "info" or "strata=debug,info" [env: STRATA_LOG]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Default per-tenant ingestion rate per ingester, samples/s (limits.ingestion_rate) [env: STRATA_INGESTION_RATE]
    #[arg(long, value_name = "SAMPLES_PER_SECOND")]
    pub ingestion_rate: Option<f64>,
    /// Default per-tenant ingestion burst, samples (limits.ingestion_burst) [env: STRATA_INGESTION_BURST]
    #[arg(long, value_name = "SAMPLES")]
    pub ingestion_burst: Option<u64>,
    /// Default per-tenant concurrent queries per querier (limits.max_concurrent_queries) [env: STRATA_MAX_CONCURRENT_QUERIES]
    #[arg(long, value_name = "N")]
    pub max_concurrent_queries: Option<usize>,
    /// PEM certificate (and chain): serve HTTPS (tls.cert_file) [env: STRATA_TLS_CERT_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (tls.key_file) [env: STRATA_TLS_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates client certificates must chain to: mutual TLS (tls.client_ca_file) [env: STRATA_TLS_CLIENT_CA_FILE]
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate: required or optional (tls.client_auth) [default: required] [env: STRATA_TLS_CLIENT_AUTH]
    #[arg(long, value_name = "MODE")]
    pub tls_client_auth: Option<ClientAuth>,
    /// Where rule sets live: object_store or etcd (rules.backend) [default: object_store] [env: STRATA_RULES_BACKEND]
    #[arg(long, value_name = "BACKEND")]
    pub rules_backend: Option<RulesBackend>,
    /// etcd endpoints, comma-separated, e.g. http://127.0.0.1:2379 (rules.etcd_endpoints) [env: STRATA_RULES_ETCD_ENDPOINTS]
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub rules_etcd_endpoints: Option<Vec<String>>,
    /// Prefix of the rule keys in etcd (rules.etcd_prefix) [default: /strata/rules] [env: STRATA_RULES_ETCD_PREFIX]
    #[arg(long, value_name = "PREFIX")]
    pub rules_etcd_prefix: Option<String>,
    /// Where the compactor and aggregator take their leases: object_store or etcd (leases.backend) [default: object_store] [env: STRATA_LEASES_BACKEND]
    #[arg(long, value_name = "BACKEND")]
    pub leases_backend: Option<LeasesBackend>,
    /// etcd endpoints of the leases, comma-separated (leases.etcd_endpoints) [env: STRATA_LEASES_ETCD_ENDPOINTS]
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub leases_etcd_endpoints: Option<Vec<String>>,
    /// Prefix of the lease keys in etcd (leases.etcd_prefix) [default: /strata/leases] [env: STRATA_LEASES_ETCD_PREFIX]
    #[arg(long, value_name = "PREFIX")]
    pub leases_etcd_prefix: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_bool(field: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(invalid(field, format!("{v:?} is not a boolean"))),
    }
}

impl StrataConfig {
    /// File, then `env` (a map, so tests need no process environment), then flags.
    pub fn load(flags: &Overrides, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let file = flags
            .config
            .clone()
            .or_else(|| env.get("STRATA_CONFIG").map(PathBuf::from));
        let mut c = match &file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        c.apply_env(env)?;
        c.apply_flags(flags);
        c.validate()?;
        Ok(c)
    }

    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        for (key, v) in env {
            let s3 = &mut self.storage.s3;
            match key.as_str() {
                "STRATA_LISTEN" => {
                    self.listen = v.parse().map_err(|e| invalid("STRATA_LISTEN", e))?
                }
                "STRATA_DATA_DIR" => self.storage.data_dir = PathBuf::from(v),
                "STRATA_STORAGE" => {
                    self.storage.backend =
                        <Backend as clap::ValueEnum>::from_str(v, true).map_err(|_| {
                            invalid(
                                "STRATA_STORAGE",
                                format!("{v:?} is not one of local, s3, memory"),
                            )
                        })?
                }
                "STRATA_S3_BUCKET" => s3.bucket = v.clone(),
                "STRATA_S3_ENDPOINT" => s3.endpoint = v.clone(),
                "STRATA_S3_REGION" => s3.region = v.clone(),
                "STRATA_S3_PREFIX" => s3.prefix = v.clone(),
                "STRATA_S3_PATH_STYLE" => s3.path_style = parse_bool(key, v)?,
                "STRATA_S3_ALLOW_HTTP" => s3.allow_http = parse_bool(key, v)?,
                "STRATA_DEFAULT_TENANT" => self.default_tenant = v.clone(),
                "STRATA_LOG" => self.log = v.clone(),
                "STRATA_COMPACT_EVERY" => {
                    self.compact.every = humantime::parse_duration(v)
                        .map_err(|e| invalid("STRATA_COMPACT_EVERY", e))?
                }
                "STRATA_COMPACT_RETENTION" => {
                    self.compact.retention = humantime::parse_duration(v)
                        .map_err(|e| invalid("STRATA_COMPACT_RETENTION", e))?
                }
                "STRATA_INGESTION_RATE" => {
                    self.limits.ingestion_rate =
                        Some(v.parse().map_err(|e| invalid("STRATA_INGESTION_RATE", e))?)
                }
                "STRATA_INGESTION_BURST" => {
                    self.limits.ingestion_burst = Some(
                        v.parse()
                            .map_err(|e| invalid("STRATA_INGESTION_BURST", e))?,
                    )
                }
                "STRATA_MAX_CONCURRENT_QUERIES" => {
                    self.limits.max_concurrent_queries = Some(
                        v.parse()
                            .map_err(|e| invalid("STRATA_MAX_CONCURRENT_QUERIES", e))?,
                    )
                }
                "STRATA_TLS_CERT_FILE" => self.tls.cert_file = Some(PathBuf::from(v)),
                "STRATA_TLS_KEY_FILE" => self.tls.key_file = Some(PathBuf::from(v)),
                "STRATA_TLS_CLIENT_CA_FILE" => self.tls.client_ca_file = Some(PathBuf::from(v)),
                "STRATA_TLS_CLIENT_AUTH" => {
                    self.tls.client_auth = Some(v.parse().map_err(|e| invalid(key, e))?)
                }
                "STRATA_RULES_BACKEND" => {
                    self.rules.backend = v.parse().map_err(|e| invalid(key, e))?
                }
                "STRATA_RULES_ETCD_ENDPOINTS" => {
                    self.rules.etcd_endpoints = v
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(String::from)
                        .collect()
                }
                "STRATA_RULES_ETCD_PREFIX" => self.rules.etcd_prefix = v.clone(),
                "STRATA_RULES_ETCD_CONNECT_TIMEOUT" => {
                    self.rules.etcd_connect_timeout =
                        humantime::parse_duration(v).map_err(|e| invalid(key, e))?
                }
                "STRATA_RULES_ETCD_REQUEST_TIMEOUT" => {
                    self.rules.etcd_request_timeout =
                        humantime::parse_duration(v).map_err(|e| invalid(key, e))?
                }
                "STRATA_LEASES_BACKEND" => {
                    self.leases.backend = v.parse().map_err(|e| invalid(key, e))?
                }
                "STRATA_LEASES_ETCD_ENDPOINTS" => {
                    self.leases.etcd_endpoints = v
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(String::from)
                        .collect()
                }
                "STRATA_LEASES_ETCD_PREFIX" => self.leases.etcd_prefix = v.clone(),
                "STRATA_LEASES_ETCD_CONNECT_TIMEOUT" => {
                    self.leases.etcd_connect_timeout =
                        humantime::parse_duration(v).map_err(|e| invalid(key, e))?
                }
                "STRATA_LEASES_ETCD_REQUEST_TIMEOUT" => {
                    self.leases.etcd_request_timeout =
                        humantime::parse_duration(v).map_err(|e| invalid(key, e))?
                }
                "STRATA_CONFIG" => {}
                other if other.starts_with("STRATA_") => {
                    return Err(invalid(other, "unknown environment variable (typo?)"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn apply_flags(&mut self, f: &Overrides) {
        let s3 = &mut self.storage.s3;
        if let Some(v) = f.listen {
            self.listen = v;
        }
        if let Some(v) = &f.data_dir {
            self.storage.data_dir = v.clone();
        }
        if let Some(v) = f.storage {
            self.storage.backend = v;
        }
        for (flag, field) in [
            (&f.s3_bucket, &mut s3.bucket),
            (&f.s3_endpoint, &mut s3.endpoint),
            (&f.s3_region, &mut s3.region),
            (&f.s3_prefix, &mut s3.prefix),
        ] {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        s3.path_style |= f.s3_path_style;
        s3.allow_http |= f.s3_allow_http;
        if let Some(v) = &f.default_tenant {
            self.default_tenant = v.clone();
        }
        if let Some(v) = &f.log {
            self.log = v.clone();
        }
        if f.ingestion_rate.is_some() {
            self.limits.ingestion_rate = f.ingestion_rate;
        }
        if f.ingestion_burst.is_some() {
            self.limits.ingestion_burst = f.ingestion_burst;
        }
        if f.max_concurrent_queries.is_some() {
            self.limits.max_concurrent_queries = f.max_concurrent_queries;
        }
        if let Some(v) = &f.tls_cert_file {
            self.tls.cert_file = Some(v.clone());
        }
        if let Some(v) = &f.tls_key_file {
            self.tls.key_file = Some(v.clone());
        }
        if let Some(v) = &f.tls_client_ca_file {
            self.tls.client_ca_file = Some(v.clone());
        }
        if f.tls_client_auth.is_some() {
            self.tls.client_auth = f.tls_client_auth;
        }
        if let Some(v) = f.rules_backend {
            self.rules.backend = v;
        }
        if let Some(v) = &f.rules_etcd_endpoints {
            self.rules.etcd_endpoints = v.clone();
        }
        if let Some(v) = &f.rules_etcd_prefix {
            self.rules.etcd_prefix = v.clone();
        }
        if let Some(v) = f.leases_backend {
            self.leases.backend = v;
        }
        if let Some(v) = &f.leases_etcd_endpoints {
            self.leases.etcd_endpoints = v.clone();
        }
        if let Some(v) = &f.leases_etcd_prefix {
            self.leases.etcd_prefix = v.clone();
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        TenantId::new(&self.default_tenant).map_err(|e| invalid("default_tenant", e))?;
        self.storage.validate().map_err(|e| match e {
            storage::StorageError::Config { field, reason } => invalid(field, reason),
            other => invalid("storage", other),
        })?;
        self.ingest.validate().map_err(|e| invalid("ingest", e))?;
        self.query.validate().map_err(|e| invalid("query", e))?;
        self.compact.validate().map_err(|e| invalid("compact", e))?;
        self.aggregate
            .validate()
            .map_err(|e| invalid("aggregate", e))?;
        self.rules.validate().map_err(|e| invalid("rules", e))?;
        self.leases.validate().map_err(|e| invalid("leases", e))?;
        self.auth.validate().map_err(|e| invalid("auth", e))?;
        self.limits.validate().map_err(|e| invalid("limits", e))?;
        self.tls.validate().map_err(|e| invalid("tls", e))?;
        Ok(())
    }

    pub fn default_tenant(&self) -> TenantId {
        // Checked by validate(); fall back to a fixed valid id rather than panic.
        TenantId::new(&self.default_tenant)
            .unwrap_or_else(|_| TenantId::new("default").expect("literal tenant id is valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_a_working_laptop_setup() {
        let c = StrataConfig::load(&Overrides::default(), &HashMap::new()).expect("defaults");
        assert_eq!(c.listen.port(), 9201);
        assert_eq!(c.storage.backend, Backend::Local);
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:1000"
default_tenant = "from-file"
[storage]
backend = "s3"
[storage.s3]
bucket = "file-bucket"
endpoint = "http://127.0.0.1:9000"
path_style = true
[ingest.group_commit]
batch_max_age = "50ms"
[query]
lookback_delta = "1m"
"#,
        )
        .expect("write");
        let flags = Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:3000".parse().expect("addr")),
            ..Default::default()
        };
        let c = StrataConfig::load(
            &flags,
            &env(&[
                ("STRATA_LISTEN", "127.0.0.1:2000"),
                ("STRATA_S3_BUCKET", "env-bucket"),
            ]),
        )
        .expect("load");
        assert_eq!(c.listen.port(), 3000, "flag wins over env and file");
        assert_eq!(c.storage.s3.bucket, "env-bucket", "env wins over file");
        assert_eq!(c.default_tenant, "from-file");
        assert!(c.storage.s3.path_style);
        assert_eq!(c.ingest.group_commit.batch_max_age.as_millis(), 50);
        assert_eq!(c.query.lookback_delta.as_secs(), 60);
    }

    #[test]
    fn limits_and_tls_from_env_and_flags() {
        let flags = Overrides {
            max_concurrent_queries: Some(3),
            ingestion_rate: Some(250.0),
            tls_key_file: Some("key.pem".into()),
            ..Default::default()
        };
        let c = StrataConfig::load(
            &flags,
            &env(&[
                ("STRATA_INGESTION_RATE", "100"),
                ("STRATA_INGESTION_BURST", "400"),
                ("STRATA_TLS_CERT_FILE", "cert.pem"),
            ]),
        )
        .expect("load");
        assert_eq!(c.limits.ingestion_rate, Some(250.0), "flag wins over env");
        assert_eq!(c.limits.ingestion_burst, Some(400));
        assert_eq!(c.limits.max_concurrent_queries, Some(3));
        assert_eq!(c.tls.cert_file, Some(PathBuf::from("cert.pem")));
        assert_eq!(c.tls.key_file, Some(PathBuf::from("key.pem")));
        let err = StrataConfig::load(
            &Overrides::default(),
            &env(&[("STRATA_INGESTION_BURST", "lots")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("STRATA_INGESTION_BURST"), "{err}");
        let err = StrataConfig::load(
            &Overrides::default(),
            &env(&[("STRATA_TLS_CERT_FILE", "cert.pem")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls.key_file"), "{err}");
        let c = StrataConfig::load(
            &Overrides {
                tls_client_ca_file: Some("ca.pem".into()),
                ..Default::default()
            },
            &env(&[
                ("STRATA_TLS_CERT_FILE", "cert.pem"),
                ("STRATA_TLS_KEY_FILE", "key.pem"),
                ("STRATA_TLS_CLIENT_AUTH", "optional"),
            ]),
        )
        .expect("load");
        assert_eq!(c.tls.client_ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.tls.client_auth, Some(ClientAuth::Optional));
        let err = StrataConfig::load(
            &Overrides::default(),
            &env(&[("STRATA_TLS_CLIENT_AUTH", "sometimes")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("STRATA_TLS_CLIENT_AUTH"), "{err}");
    }

    #[test]
    fn leases_backend_from_file_env_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "[leases]\nbackend = \"etcd\"\netcd_endpoints = [\"http://file:2379\"]\netcd_request_timeout = \"1s\"\n",
        )
        .expect("write");
        let flags = Overrides {
            config: Some(path),
            leases_etcd_prefix: Some("/flag".into()),
            ..Default::default()
        };
        let c = StrataConfig::load(
            &flags,
            &env(&[
                (
                    "STRATA_LEASES_ETCD_ENDPOINTS",
                    "http://a:2379,http://b:2379",
                ),
                ("STRATA_LEASES_ETCD_PREFIX", "/env"),
                ("STRATA_LEASES_ETCD_CONNECT_TIMEOUT", "300ms"),
            ]),
        )
        .expect("load");
        assert_eq!(c.leases.backend, LeasesBackend::Etcd);
        assert_eq!(c.leases.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(c.leases.etcd_prefix, "/flag", "flag wins over env");
        assert_eq!(c.leases.etcd_connect_timeout.as_millis(), 300);
        assert_eq!(c.leases.etcd_request_timeout.as_secs(), 1);
        assert_eq!(c.rules, RulesConfig::default(), "rules are separate");
        let flags = Overrides {
            leases_backend: Some(LeasesBackend::ObjectStore),
            ..Default::default()
        };
        let c = StrataConfig::load(&flags, &env(&[("STRATA_LEASES_BACKEND", "etcd")]))
            .expect("flag wins over env: no endpoints needed");
        assert_eq!(c.leases.backend, LeasesBackend::ObjectStore);
        let err = |e: &[(&str, &str)]| {
            StrataConfig::load(&Overrides::default(), &env(e))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("STRATA_LEASES_BACKEND", "etcd")]);
        assert!(e.contains("leases.etcd_endpoints"), "{e}");
        let e = err(&[("STRATA_LEASES_BACKEND", "zookeeper")]);
        assert!(e.contains("STRATA_LEASES_BACKEND"), "{e}");
        let e = err(&[
            ("STRATA_LEASES_BACKEND", "etcd"),
            ("STRATA_LEASES_ETCD_ENDPOINTS", "etcd:2379"),
        ]);
        assert!(e.contains("leases.etcd_endpoints[0]"), "{e}");
    }

    #[test]
    fn rules_backend_from_file_env_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "[rules]\nbackend = \"etcd\"\netcd_endpoints = [\"http://file:2379\"]\netcd_request_timeout = \"1s\"\n",
        )
        .expect("write");
        let flags = Overrides {
            config: Some(path),
            rules_etcd_prefix: Some("/flag".into()),
            ..Default::default()
        };
        let c = StrataConfig::load(
            &flags,
            &env(&[
                (
                    "STRATA_RULES_ETCD_ENDPOINTS",
                    "http://a:2379, http://b:2379",
                ),
                ("STRATA_RULES_ETCD_PREFIX", "/env"),
                ("STRATA_RULES_ETCD_CONNECT_TIMEOUT", "300ms"),
            ]),
        )
        .expect("load");
        assert_eq!(c.rules.backend, RulesBackend::Etcd);
        assert_eq!(c.rules.etcd_endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(c.rules.etcd_prefix, "/flag", "flag wins over env");
        assert_eq!(c.rules.etcd_connect_timeout.as_millis(), 300);
        assert_eq!(c.rules.etcd_request_timeout.as_secs(), 1);
        let flags = Overrides {
            rules_backend: Some(RulesBackend::Etcd),
            rules_etcd_endpoints: Some(vec!["http://c:2379".into()]),
            ..Default::default()
        };
        let c = StrataConfig::load(&flags, &env(&[("STRATA_RULES_BACKEND", "object_store")]))
            .expect("load");
        assert_eq!(c.rules.backend, RulesBackend::Etcd, "flag wins over env");
        assert_eq!(c.rules.etcd_endpoints, ["http://c:2379"]);
        let err = |e: &[(&str, &str)]| {
            StrataConfig::load(&Overrides::default(), &env(e))
                .unwrap_err()
                .to_string()
        };
        let e = err(&[("STRATA_RULES_BACKEND", "etcd")]);
        assert!(e.contains("rules.etcd_endpoints"), "{e}");
        let e = err(&[("STRATA_RULES_BACKEND", "zk")]);
        assert!(e.contains("STRATA_RULES_BACKEND"), "{e}");
        let e = err(&[("STRATA_RULES_ETCD_ENDPOINTS", "127.0.0.1:2379")]);
        assert!(e.contains("rules.etcd_endpoints[0]"), "{e}");
    }

    #[test]
    fn errors_name_the_bad_field() {
        let err = |flags: Overrides, e: &[(&str, &str)]| {
            StrataConfig::load(&flags, &env(e)).unwrap_err().to_string()
        };
        assert!(
            err(Overrides::default(), &[("STRATA_STORAGE", "s3")]).contains("storage.s3.bucket")
        );
        assert!(err(Overrides::default(), &[("STRATA_LISTEN", "nope")]).contains("STRATA_LISTEN"));
        assert!(err(Overrides::default(), &[("STRATA_LISTN", "x")]).contains("STRATA_LISTN"));
        assert!(
            err(
                Overrides {
                    default_tenant: Some("a/b".into()),
                    ..Default::default()
                },
                &[]
            )
            .contains("default_tenant")
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[query]\nlookback = \"5m\"\n").expect("write");
        let msg = err(
            Overrides {
                config: Some(path.clone()),
                ..Default::default()
            },
            &[],
        );
        assert!(msg.contains("lookback"), "{msg}");
        std::fs::write(&path, "[query]\ntimeout = \"0s\"\n").expect("write");
        let msg = err(
            Overrides {
                config: Some(path),
                ..Default::default()
            },
            &[],
        );
        assert!(msg.contains("query.timeout"), "{msg}");
    }
}
