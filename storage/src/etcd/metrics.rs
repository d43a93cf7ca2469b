//! Metrics of an etcd client ([`super::Gateway`]), `strata_<user>_etcd_*`
//! (`strata_rules_etcd_*` for the rule store, `strata_leases_etcd_*` for
//! job leases): requests by operation and outcome, and their duration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    op: &'static str,
    /// `ok`; `refused` (etcd answered with an error); `unreachable` (no
    /// answer, a timeout or a 503: the next endpoint is tried).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

/// Counters shared by every clone; unregistered until [`EtcdMetrics::register`].
#[derive(Clone, Debug)]
pub struct EtcdMetrics {
    requests: Family<Request, Counter>,
    seconds: Family<Op, Histogram>,
}

impl Default for EtcdMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
        }
    }
}

impl EtcdMetrics {
    /// The rule store's client: `strata_rules_etcd_*`.
    pub fn register(registry: &mut Registry) -> Self {
        Self::register_for(registry, "rules")
    }

    /// The client of `user` (`rules`, `leases`): `strata_<user>_etcd_*`.
    pub fn register_for(registry: &mut Registry, user: &str) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix(format!("strata_{user}_etcd"));
        r.register(
            "requests",
            format!("Requests of the etcd client of {user} by operation and outcome"),
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            format!("Duration of the answered requests of the etcd client of {user}"),
            m.seconds.clone(),
        );
        m
    }

    pub(crate) fn observe(&self, op: &'static str, outcome: &'static str, seconds: Option<f64>) {
        self.requests.get_or_create(&Request { op, outcome }).inc();
        if let Some(s) = seconds {
            self.seconds.get_or_create(&Op { op }).observe(s);
        }
    }

    /// Requests of `op` with `outcome` so far.
    pub fn requests(&self, op: &'static str, outcome: &'static str) -> u64 {
        self.requests.get_or_create(&Request { op, outcome }).get()
    }
}
