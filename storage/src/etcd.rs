//! A small client of etcd's v3 JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, `/v3/lease/*`): JSON over HTTP/1.1 with base64 keys and
//! values, through the `reqwest` client the object store already builds, so
//! etcd needs no gRPC stack and no `protoc`. Only what Strata's etcd
//! backends use: ranges (a key or a prefix), compare-and-swap transactions
//! (the rule store, `aggregator::rule_store::etcd`), and leases with keys
//! created under them (job leases, [`crate::lease::etcd`]).
//!
//! Endpoints are tried in turn, starting with the last one that answered;
//! an endpoint that cannot be reached, times out or answers 503 (etcd's
//! "unavailable", e.g. a member without a leader) passes the request on to
//! the next.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{Instrument, debug, debug_span, warn};

pub mod metrics;

pub use metrics::EtcdMetrics;

/// Errors talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd unavailable: {op} failed on every endpoint: {reason}")]
    Unavailable { op: &'static str, reason: String },
    #[error("etcd at {endpoint} refused {op}: HTTP {status}: {message}")]
    Refused {
        endpoint: String,
        op: &'static str,
        status: u16,
        message: String,
    },
    #[error("etcd at {endpoint}: unexpected answer to {op}: {reason}")]
    Protocol {
        endpoint: String,
        op: &'static str,
        reason: String,
    },
    #[error("etcd key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("building the etcd client: {0}")]
    Client(String),
}

/// One key-value pair of a range answer, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Kv {
    pub key: Vec<u8>,
    /// Empty for a `keys_only` range.
    pub value: Vec<u8>,
    /// The etcd lease the key is attached to; 0 for none.
    pub lease: i64,
}

/// A compare of a transaction.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key exists and holds exactly this value.
    ValueIs(Vec<u8>, Vec<u8>),
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawKv {
    key: String,
    value: String,
    #[serde(deserialize_with = "int64")]
    lease: i64,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawRange {
    kvs: Vec<RawKv>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawResponseOp {
    response_range: Option<RawRange>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawTxn {
    succeeded: bool,
    responses: Vec<RawResponseOp>,
}

/// The answer of `/v3/lease/grant`, and the `result` of a keep-alive.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawLease {
    #[serde(rename = "ID", deserialize_with = "int64")]
    id: i64,
    /// Seconds left; absent (0) when the lease does not exist any more.
    #[serde(rename = "TTL", deserialize_with = "int64")]
    ttl: i64,
    error: String,
}

/// One message of the keep-alive stream: a result or an error.
#[derive(Default, Deserialize)]
#[serde(default)]
struct RawKeepAlive {
    result: Option<RawLease>,
    error: Option<Value>,
}

/// The gateway writes int64 fields as JSON strings; numbers are accepted too.
fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        S(String),
        I(i64),
    }
    match N::deserialize(d)? {
        N::I(i) => Ok(i),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// A lease granted by etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    pub id: i64,
    /// The TTL etcd granted, in seconds (at least its minimum TTL).
    pub ttl_s: i64,
}

/// The answer of a transaction: whether the compares held, and the ranges
/// of the branch that ran (in order).
#[derive(Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    pub ranges: Vec<Vec<Kv>>,
}

/// An etcd cluster behind its JSON gateway.
pub struct Gateway {
    http: reqwest::Client,
    /// Base URLs without a trailing slash.
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    preferred: AtomicUsize,
    metrics: EtcdMetrics,
}

impl Gateway {
    pub fn new(
        endpoints: &[String],
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Client("no endpoints".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| EtcdError::Client(e.to_string()))?;
        Ok(Self {
            http,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
            metrics: EtcdMetrics::default(),
        })
    }

    /// Counts requests in `metrics` (registered by the caller).
    pub fn with_metrics(mut self, metrics: EtcdMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The pairs with key `key` (`prefix` false) or starting with `key`
    /// (`prefix` true), ascending by key.
    pub async fn range(
        &self,
        key: &[u8],
        prefix: bool,
        keys_only: bool,
    ) -> Result<Vec<Kv>, EtcdError> {
        let mut body = json!({"key": B64.encode(key)});
        if prefix {
            body["range_end"] = json!(B64.encode(prefix_end(key)));
        }
        if keys_only {
            body["keys_only"] = json!(true);
        }
        let (endpoint, raw): (String, RawRange) = self.call("range", "/v3/kv/range", &body).await?;
        decode_kvs(&endpoint, "range", raw)
    }

    /// If every compare holds, the puts run; otherwise the keys of
    /// `on_failure` are read (one range each, in order).
    pub async fn txn(
        &self,
        compares: &[Compare],
        puts: &[(Vec<u8>, Vec<u8>)],
        on_failure: &[Vec<u8>],
    ) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => json!({
                    "target": "CREATE", "key": B64.encode(k),
                    "create_revision": "0", "result": "EQUAL",
                }),
                Compare::ValueIs(k, v) => json!({
                    "target": "VALUE", "key": B64.encode(k),
                    "value": B64.encode(v), "result": "EQUAL",
                }),
            })
            .collect();
        let success: Vec<Value> = puts
            .iter()
            .map(|(k, v)| json!({"request_put": {"key": B64.encode(k), "value": B64.encode(v)}}))
            .collect();
        self.txn_ops(compare, success, on_failure).await
    }

    /// Creates `key` with `value`, attached to lease `lease`, unless the key
    /// exists. `Ok(None)`: created; `Ok(Some(kv))`: the key as it was, read
    /// in the same transaction.
    pub async fn create_with_lease(
        &self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<Option<Kv>, EtcdError> {
        let compare = vec![json!({
            "target": "CREATE", "key": B64.encode(key),
            "create_revision": "0", "result": "EQUAL",
        })];
        let success = vec![json!({"request_put": {
            "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string(),
        }})];
        let r = self.txn_ops(compare, success, &[key.to_vec()]).await?;
        if r.succeeded {
            return Ok(None);
        }
        let holder = r.ranges.into_iter().flatten().next();
        // The failure branch runs only if the key exists, and reads it
        // atomically with the compare.
        holder.map(Some).ok_or_else(|| EtcdError::Protocol {
            endpoint: String::new(),
            op: "txn",
            reason: "a failed create did not return the existing key".into(),
        })
    }

    async fn txn_ops(
        &self,
        compare: Vec<Value>,
        success: Vec<Value>,
        on_failure: &[Vec<u8>],
    ) -> Result<TxnResult, EtcdError> {
        let failure: Vec<Value> = on_failure
            .iter()
            .map(|k| json!({"request_range": {"key": B64.encode(k)}}))
            .collect();
        let body = json!({"compare": compare, "success": success, "failure": failure});
        let (endpoint, raw): (String, RawTxn) = self.call("txn", "/v3/kv/txn", &body).await?;
        let mut ranges = Vec::new();
        for op in raw.responses {
            if let Some(r) = op.response_range {
                ranges.push(decode_kvs(&endpoint, "txn", r)?);
            }
        }
        Ok(TxnResult {
            succeeded: raw.succeeded,
            ranges,
        })
    }

    /// Grants a lease of `ttl_s` seconds (etcd may grant more: its minimum
    /// TTL).
    pub async fn lease_grant(&self, ttl_s: i64) -> Result<Granted, EtcdError> {
        let body = json!({"TTL": ttl_s.to_string(), "ID": "0"});
        let (endpoint, raw): (String, RawLease) =
            self.call("lease_grant", "/v3/lease/grant", &body).await?;
        if !raw.error.is_empty() || raw.id == 0 || raw.ttl <= 0 {
            return Err(EtcdError::Protocol {
                endpoint,
                op: "lease_grant",
                reason: format!(
                    "no lease granted (id {}, ttl {}): {}",
                    raw.id, raw.ttl, raw.error
                ),
            });
        }
        Ok(Granted {
            id: raw.id,
            ttl_s: raw.ttl,
        })
    }

    /// Refreshes lease `id` to its full TTL; the seconds it now has left,
    /// 0 when it does not exist any more (expired or revoked).
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        // A bidirectional stream in gRPC; through the gateway one request
        // message in the body gets one answer message back.
        let body = json!({"ID": id.to_string()});
        let (endpoint, raw): (String, RawKeepAlive) = self
            .call("lease_keepalive", "/v3/lease/keepalive", &body)
            .await?;
        match (raw.result, raw.error) {
            (Some(r), None) => Ok(r.ttl.max(0)),
            (_, e) => Err(EtcdError::Protocol {
                endpoint,
                op: "lease_keepalive",
                reason: format!("no result: {}", e.unwrap_or_default()),
            }),
        }
    }

    /// Revokes lease `id`, deleting the keys attached to it. `Ok(false)`:
    /// there was no such lease (it had expired).
    pub async fn lease_revoke(&self, id: i64) -> Result<bool, EtcdError> {
        let body = json!({"ID": id.to_string()});
        match self
            .call::<Value>("lease_revoke", "/v3/lease/revoke", &body)
            .await
        {
            Ok(_) => Ok(true),
            // etcd's NotFound ("requested lease not found").
            Err(EtcdError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// POSTs `body` to `path` on the first endpoint that answers; returns
    /// that endpoint and the decoded answer.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<(String, T), EtcdError> {
        let bytes = serde_json::to_vec(body).map_err(|e| EtcdError::Client(e.to_string()))?;
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let endpoint = &self.endpoints[idx];
            let span = debug_span!("etcd", op, endpoint = %endpoint);
            let started = Instant::now();
            let answer = async {
                let resp = self
                    .http
                    .post(format!("{endpoint}{path}"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone())
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, body))
            }
            .instrument(span)
            .await;
            let (status, body) = match answer {
                Ok(a) => a,
                Err(e) => {
                    self.metrics.observe(op, "unreachable", None);
                    warn!(op, endpoint = %endpoint, error = %e, "etcd request failed; trying the next endpoint");
                    failures.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            let seconds = Some(started.elapsed().as_secs_f64());
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                self.metrics.observe(op, "unreachable", seconds);
                let message = error_message(&body);
                warn!(op, endpoint = %endpoint, %message, "etcd unavailable; trying the next endpoint");
                failures.push(format!("{endpoint}: {message}"));
                continue;
            }
            self.preferred.store(idx, Ordering::Relaxed);
            if !status.is_success() {
                self.metrics.observe(op, "refused", seconds);
                return Err(EtcdError::Refused {
                    endpoint: endpoint.clone(),
                    op,
                    status: status.as_u16(),
                    message: error_message(&body),
                });
            }
            self.metrics.observe(op, "ok", seconds);
            debug!(op, endpoint = %endpoint, bytes = body.len(), "etcd answered");
            return serde_json::from_slice(&body)
                .map(|v| (endpoint.clone(), v))
                .map_err(|e| EtcdError::Protocol {
                    endpoint: endpoint.clone(),
                    op,
                    reason: e.to_string(),
                });
        }
        Err(EtcdError::Unavailable {
            op,
            reason: failures.join("; "),
        })
    }
}

fn decode_kvs(endpoint: &str, op: &'static str, raw: RawRange) -> Result<Vec<Kv>, EtcdError> {
    let bad = |what: &str, e: base64::DecodeError| EtcdError::Protocol {
        endpoint: endpoint.to_string(),
        op,
        reason: format!("{what} is not base64: {e}"),
    };
    raw.kvs
        .into_iter()
        .map(|kv| {
            Ok(Kv {
                key: B64.decode(kv.key).map_err(|e| bad("a key", e))?,
                value: B64.decode(kv.value).map_err(|e| bad("a value", e))?,
                lease: kv.lease,
            })
        })
        .collect()
}

/// The gateway's error text (`{"error": ..., "code": ...}`), or the start
/// of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct E {
        error: String,
    }
    match serde_json::from_slice::<E>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Where a config section ([rules], [leases]) keeps its records: on the
/// configured object store (the default) or in etcd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Under `_system/` on the configured object store.
    #[default]
    ObjectStore,
    /// An etcd cluster (the section's `etcd_endpoints`).
    Etcd,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "object_store" | "object-store" => Ok(Self::ObjectStore),
            "etcd" => Ok(Self::Etcd),
            _ => Err(format!("{s:?} is not one of object_store, etcd")),
        }
    }
}

/// The etcd settings a config section carries, for [`EtcdSection::validate`].
pub struct EtcdSection<'a> {
    /// The section's name in messages (`rules`, `leases`).
    pub section: &'a str,
    pub backend: Backend,
    pub endpoints: &'a [String],
    pub prefix: &'a str,
    /// The section's default prefix, shown as an example.
    pub example_prefix: &'a str,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl EtcdSection<'_> {
    /// Checks the settings; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let s = self.section;
        if self.backend == Backend::Etcd && self.endpoints.is_empty() {
            return Err(format!(
                "{s}.etcd_endpoints: the etcd backend needs at least one endpoint, \
                 e.g. [\"http://127.0.0.1:2379\"]"
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            check_endpoint(e).map_err(|reason| format!("{s}.etcd_endpoints[{i}]: {reason}"))?;
        }
        if !self.prefix.starts_with('/') || self.prefix.trim_end_matches('/').is_empty() {
            return Err(format!(
                "{s}.etcd_prefix: {:?} must start with '/' and name something, e.g. {:?}",
                self.prefix, self.example_prefix
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(format!("{s}.etcd_connect_timeout: must be positive"));
        }
        if self.request_timeout.is_zero() {
            return Err(format!("{s}.etcd_request_timeout: must be positive"));
        }
        Ok(())
    }
}

/// Checks an etcd client URL as config gives it: `http(s)://host[:port]`
/// and nothing else (the gateway paths are added). The reason when not.
pub fn check_endpoint(e: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(e).map_err(|err| format!("{e:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{e:?}: the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{e:?} names no host"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(format!(
            "{e:?}: give only scheme, host and port (the gateway paths are added)"
        ));
    }
    Ok(())
}

/// The end of the range of keys starting with `prefix` (etcd's convention:
/// the prefix with its last byte below 0xff incremented; `\0`, meaning "to
/// the end", when there is none).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b = last + 1;
            }
            return end;
        }
        end.pop();
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn decodes_gateway_answers() {
        // As etcd 3.4's gateway writes them: int64 as strings, empty fields left out.
        let raw: RawTxn = serde_json::from_str(
            r#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},
            "kvs":[{"key":"L2EvaGVhZA==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}}]}"#,
        )
        .expect("txn");
        assert!(!raw.succeeded);
        let r = raw
            .responses
            .into_iter()
            .next()
            .and_then(|o| o.response_range);
        let kvs = decode_kvs("e", "txn", r.expect("range")).expect("kvs");
        assert_eq!(
            kvs,
            [Kv {
                key: b"/a/head".to_vec(),
                value: b"1".to_vec(),
                lease: 0,
            }]
        );
        let empty: RawRange =
            serde_json::from_str(r#"{"header":{"revision":"1"}}"#).expect("range");
        assert!(decode_kvs("e", "range", empty).expect("kvs").is_empty());
        assert_eq!(
            error_message(br#"{"error":"etcdserver: request is too large","code":3}"#),
            "etcdserver: request is too large"
        );
    }

    #[test]
    fn decodes_lease_answers() {
        // etcd 3.4: a grant, a keep-alive of a live lease, and one of a
        // lease that expired (TTL left out, as zero values are).
        let g: RawLease = serde_json::from_str(
            r#"{"header":{"revision":"1"},"ID":"1879586637533641989","TTL":"2"}"#,
        )
        .expect("grant");
        assert_eq!((g.id, g.ttl), (1879586637533641989, 2));
        let live: RawKeepAlive = serde_json::from_str(
            r#"{"result":{"header":{"revision":"2"},"ID":"1879586637533641991","TTL":"3"}}"#,
        )
        .expect("keepalive");
        assert_eq!(live.result.map(|r| r.ttl), Some(3));
        let gone: RawKeepAlive =
            serde_json::from_str(r#"{"result":{"header":{"revision":"3"},"ID":"123"}}"#)
                .expect("keepalive");
        assert_eq!(gone.result.map(|r| r.ttl), Some(0));
        let kv: RawRange = serde_json::from_str(
            r#"{"kvs":[{"key":"L2wvYQ==","create_revision":"2","value":"b3duZXIx","lease":"1879586637533641991"}]}"#,
        )
        .expect("range");
        let kvs = decode_kvs("e", "range", kv).expect("kvs");
        assert_eq!(kvs[0].lease, 1879586637533641991);
        assert_eq!(kvs[0].value, b"owner1");
        assert!(serde_json::from_str::<RawLease>(r#"{"ID":"x1"}"#).is_err());
    }

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(check_endpoint("http://127.0.0.1:2379"), Ok(()));
        assert_eq!(check_endpoint("https://etcd:2379/"), Ok(()));
        assert!(check_endpoint("etcd:2379").is_err());
        assert!(check_endpoint("http://etcd:2379/v3").is_err());
        assert!(check_endpoint("ftp://etcd").is_err());
    }
}
