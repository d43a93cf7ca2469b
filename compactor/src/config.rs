//! The `[compact]` section of the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How the compactor cuts, merges, keeps and deletes.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactorConfig {
    /// How often `strata serve` runs a pass (`strata compact --every` too);
    /// 0 disables the timer.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Partition lengths by level: segments become blocks of the first;
    /// closed windows of each later one merge the blocks inside them. Each
    /// must be a multiple of the one before.
    #[serde(deserialize_with = "durations::vec")]
    pub partitions: Vec<Duration>,
    /// How long after a window ends its blocks are merged into the next
    /// level (time for late samples to arrive first).
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// How long replaced segments and blocks stay readable after the manifest
    /// stopped pointing at them; must exceed the longest query.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Lease time-to-live; a crashed compactor's shards are free after it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Default retention of all tenants; 0 keeps data forever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Per-tenant retention overrides.
    #[serde(deserialize_with = "durations::map")]
    pub tenant_retention: BTreeMap<String, Duration>,
    /// zstd level of block chunk columns.
    pub zstd_level: i32,
    /// Samples read into memory at once while building a block; larger
    /// partitions are built in series-id slices of about this size.
    pub samples_per_slice: u64,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            partitions: vec![
                Duration::from_secs(2 * 3600),
                Duration::from_secs(12 * 3600),
                Duration::from_secs(24 * 3600),
            ],
            settle: Duration::from_secs(3600),
            grace: Duration::from_secs(10 * 60),
            lease_ttl: Duration::from_secs(5 * 60),
            retention: Duration::ZERO,
            tenant_retention: BTreeMap::new(),
            zstd_level: 9,
            samples_per_slice: 20_000_000,
        }
    }
}

impl CompactorConfig {
    /// Checks the config; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let Some(first) = self.partitions.first() else {
            return Err("compact.partitions: at least one partition length is needed".into());
        };
        if first.as_millis() == 0 {
            return Err("compact.partitions: lengths must be positive".into());
        }
        for w in self.partitions.windows(2) {
            let (a, b) = (w[0].as_millis(), w[1].as_millis());
            if b <= a || b % a != 0 {
                return Err(format!(
                    "compact.partitions: {:?} is not a larger multiple of {:?}",
                    w[1], w[0]
                ));
            }
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err("compact.lease_ttl: must be at least 1s".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(format!(
                "compact.zstd_level: {} is not in 1..=22",
                self.zstd_level
            ));
        }
        if self.samples_per_slice == 0 {
            return Err("compact.samples_per_slice: must be positive".into());
        }
        for name in self.tenant_retention.keys() {
            storage::TenantId::new(name).map_err(|e| format!("compact.tenant_retention: {e}"))?;
        }
        Ok(())
    }

    /// Partition lengths in ms, smallest first.
    pub fn partition_ms(&self) -> Vec<i64> {
        self.partitions
            .iter()
            .map(|d| d.as_millis() as i64)
            .collect()
    }

    /// Retention of `tenant` in ms; `None`: keep forever.
    pub fn retention_ms(&self, tenant: &str) -> Option<i64> {
        let r = self.tenant_retention.get(tenant).unwrap_or(&self.retention);
        (!r.is_zero()).then_some(r.as_millis() as i64)
    }
}

/// Lists and maps of human-readable durations ("2h", "30d").
mod durations {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    fn parse<E: Error>(s: &str) -> Result<Duration, E> {
        humantime::parse_duration(s).map_err(|e| E::custom(format!("{s:?}: {e}")))
    }

    pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s))
            .collect()
    }

    pub fn map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, parse(&v)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        assert_eq!(CompactorConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut CompactorConfig)| {
            let mut c = CompactorConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.partitions.clear()).contains("compact.partitions"));
        assert!(
            bad(|c| c.partitions[1] = Duration::from_secs(3 * 3600 + 1))
                .contains("compact.partitions")
        );
        assert!(bad(|c| c.zstd_level = 0).contains("compact.zstd_level"));
        assert!(
            bad(|c| {
                c.tenant_retention
                    .insert("a/b".into(), Duration::from_secs(1));
            })
            .contains("compact.tenant_retention")
        );
    }

    #[test]
    fn retention_per_tenant_overrides_the_default() {
        let mut c = CompactorConfig::default();
        assert_eq!(c.retention_ms("a"), None);
        c.retention = Duration::from_secs(10);
        c.tenant_retention
            .insert("b".into(), Duration::from_secs(2));
        assert_eq!(c.retention_ms("a"), Some(10_000));
        assert_eq!(c.retention_ms("b"), Some(2_000));
    }
}
