//! The `[aggregate]` section of the configuration.

use std::time::Duration;

use serde::Deserialize;

/// When and how the aggregation jobs run.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    /// How often `strata serve` runs a pass (`strata aggregate --every`
    /// too); 0 disables the timer.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Length of the windows aggregated at once (aligned to the epoch); a
    /// policy whose resolution does not divide it uses the next multiple.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A window is aggregated once its end is this far in the past.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// How much raw data before a window is read for the previous value of
    /// its first interval (at least the scrape interval).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Aggregated windows this recent are re-aggregated when late data
    /// arrives; older late data is not aggregated.
    #[serde(with = "humantime_serde")]
    pub recheck: Duration,
    /// Lease time-to-live; a crashed job's shards are free after it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Output series are split into this many shards, each its own lease
    /// and block per window.
    pub shards: u16,
    /// Windows one pass aggregates per namespace shard (catching up on
    /// history takes several passes).
    pub max_windows_per_pass: usize,
    /// How often readers (ingest's drop rules) poll for new rule versions.
    #[serde(with = "humantime_serde")]
    pub rules_poll: Duration,
    /// zstd level of the chunk column of aggregated blocks.
    pub zstd_level: i32,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            window: Duration::from_secs(2 * 3600),
            allowed_lateness: Duration::from_secs(10 * 60),
            lookback: Duration::from_secs(5 * 60),
            recheck: Duration::from_secs(7 * 86_400),
            lease_ttl: Duration::from_secs(5 * 60),
            shards: 1,
            max_windows_per_pass: 48,
            rules_poll: Duration::from_secs(5),
            zstd_level: 9,
        }
    }
}

impl AggregateConfig {
    /// Checks the config; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.window < Duration::from_secs(1) {
            return Err("aggregate.window: must be at least 1s".into());
        }
        if !self.window.as_millis().is_multiple_of(1000) {
            return Err("aggregate.window: must be whole seconds".into());
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err("aggregate.lease_ttl: must be at least 1s".into());
        }
        if self.shards == 0 {
            return Err("aggregate.shards: must be at least 1".into());
        }
        if self.max_windows_per_pass == 0 {
            return Err("aggregate.max_windows_per_pass: must be at least 1".into());
        }
        if self.rules_poll.is_zero() {
            return Err("aggregate.rules_poll: must be positive".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(format!(
                "aggregate.zstd_level: {} is not in 1..=22",
                self.zstd_level
            ));
        }
        Ok(())
    }

    /// Window length (ms) for a resolution: the configured window, rounded
    /// up to a multiple of the resolution.
    pub fn window_ms(&self, resolution_ms: i64) -> i64 {
        let w = self.window.as_millis() as i64;
        ((w + resolution_ms - 1) / resolution_ms).max(1) * resolution_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_fields_are_named() {
        assert_eq!(AggregateConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut AggregateConfig)| {
            let mut c = AggregateConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.shards = 0).contains("aggregate.shards"));
        assert!(bad(|c| c.window = Duration::ZERO).contains("aggregate.window"));
        assert!(bad(|c| c.zstd_level = 0).contains("aggregate.zstd_level"));
        let c = AggregateConfig::default();
        assert_eq!(c.window_ms(60_000), 7_200_000);
        assert_eq!(c.window_ms(86_400_000), 86_400_000);
        assert_eq!(c.window_ms(7 * 60_000), 7_560_000);
    }

    #[test]
    fn parses_toml() {
        let c: AggregateConfig =
            toml::from_str("every = \"30s\"\nallowed_lateness = \"1h\"\nshards = 4").expect("toml");
        assert_eq!(c.every, Duration::from_secs(30));
        assert_eq!(c.shards, 4);
        assert!(toml::from_str::<AggregateConfig>("evry = \"1s\"").is_err());
    }
}
