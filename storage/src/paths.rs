//! Every object key Strata reads or writes is built here, and nowhere else.
//!
//! ```text
//! tenants/<tenant>/segments/<YYYYMMDDHH>/<ulid>.parquet   segments written by ingesters (L0)
//! tenants/<tenant>/sidecars/<YYYYMMDDHH>/<ulid>.sidecar   histograms, exemplars, metadata (sidecars)
//! tenants/<tenant>/blocks/<resolution>/<ulid>.parquet     blocks written by the compactor
//! tenants/<tenant>/manifest/<version, 20 digits>.json     manifest versions (create-if-absent)
//! _system/leases/<job>/<tenant>/<shard>/<generation>.json job leases (create-if-absent)
//! _system/rules/<tenant>/<version>.json                   rule set versions (create-if-absent)
//! _system/aggregator/<tenant>/checkpoint/<version>.json   aggregator checkpoints (create-if-absent)
//! ```
//!
//! Tenants live under `tenants/` so that no tenant id can collide with
//! `_system`. The hour is the segment's write time (from its ULID), which keeps
//! listings of recent data short.

use object_store::path::Path;
use ulid::Ulid;

use crate::tenant::TenantId;

/// Prefix of all segments of a tenant.
pub fn segments_prefix(tenant: &TenantId) -> Path {
    Path::from_iter(["tenants", tenant.as_str(), "segments"])
}

/// Key of the segment with id `ulid` of `tenant`.
pub fn segment(tenant: &TenantId, ulid: Ulid) -> Path {
    let hour = hour_bucket(ulid.timestamp_ms());
    let name = format!("{ulid}.parquet");
    Path::from_iter([
        "tenants",
        tenant.as_str(),
        "segments",
        hour.as_str(),
        name.as_str(),
    ])
}

/// The segment id in a segment key, if `path` is one.
pub fn parse_segment(path: &Path) -> Option<Ulid> {
    let name = path.filename()?;
    let id = name.strip_suffix(".parquet")?;
    Ulid::from_string(id).ok()
}

/// Prefix of all sidecars of a tenant.
pub fn sidecars_prefix(tenant: &TenantId) -> Path {
    Path::from_iter(["tenants", tenant.as_str(), "sidecars"])
}

/// Key of the sidecar with id `ulid` of `tenant` (hour of its write time, as
/// for segments).
pub fn sidecar(tenant: &TenantId, ulid: Ulid) -> Path {
    let hour = hour_bucket(ulid.timestamp_ms());
    let name = format!("{ulid}.sidecar");
    Path::from_iter([
        "tenants",
        tenant.as_str(),
        "sidecars",
        hour.as_str(),
        name.as_str(),
    ])
}

/// The sidecar id in a sidecar key, if `path` is one.
pub fn parse_sidecar(path: &Path) -> Option<Ulid> {
    let name = path.filename()?;
    let id = name.strip_suffix(".sidecar")?;
    Ulid::from_string(id).ok()
}

/// Prefix under which tenants live; its children are tenant ids.
pub fn tenants_root() -> Path {
    Path::from("tenants")
}

/// The tenant of a key directly under [`tenants_root`] (a listing's common
/// prefix), if it is a valid tenant id.
pub fn parse_tenant(prefix: &Path) -> Option<TenantId> {
    TenantId::new(prefix.filename()?).ok()
}

/// Prefix of all blocks of one resolution of a tenant (`raw` for the
/// compactor's output, e.g. `5m` for a downsampled resolution).
pub fn blocks_prefix(tenant: &TenantId, resolution: &str) -> Path {
    Path::from_iter(["tenants", tenant.as_str(), "blocks", resolution])
}

/// Key of the block with id `ulid`.
pub fn block(tenant: &TenantId, resolution: &str, ulid: Ulid) -> Path {
    let name = format!("{ulid}.parquet");
    Path::from_iter([
        "tenants",
        tenant.as_str(),
        "blocks",
        resolution,
        name.as_str(),
    ])
}

/// The block id in a block key, if `path` is one.
pub fn parse_block(path: &Path) -> Option<Ulid> {
    parse_segment(path)
}

/// Prefix of all manifest versions of a tenant.
pub fn manifest_prefix(tenant: &TenantId) -> Path {
    Path::from_iter(["tenants", tenant.as_str(), "manifest"])
}

/// Key of manifest version `version`. Zero-padded so that listing order is
/// version order.
pub fn manifest(tenant: &TenantId, version: u64) -> Path {
    let name = format!("{version:020}.json");
    Path::from_iter(["tenants", tenant.as_str(), "manifest", name.as_str()])
}

/// The version in a manifest key, if `path` is one.
pub fn parse_manifest(path: &Path) -> Option<u64> {
    let name = path.filename()?.strip_suffix(".json")?;
    if name.len() != 20 {
        return None;
    }
    name.parse().ok()
}

/// Prefix of the lease generations of one shard of a job. `shard` is built
/// by the job from numbers (for example a partition start), never from input.
pub fn lease_prefix(job: &str, tenant: &TenantId, shard: &str) -> Path {
    Path::from_iter(["_system", "leases", job, tenant.as_str(), shard])
}

/// Key of lease generation `generation`.
pub fn lease(job: &str, tenant: &TenantId, shard: &str, generation: u64) -> Path {
    let name = format!("{generation:020}.json");
    Path::from_iter([
        "_system",
        "leases",
        job,
        tenant.as_str(),
        shard,
        name.as_str(),
    ])
}

/// The generation in a lease key, if `path` is one.
pub fn parse_lease(path: &Path) -> Option<u64> {
    parse_manifest(path)
}

/// Prefix under which rule sets live; its children are tenant ids.
pub fn rules_root() -> Path {
    Path::from_iter(["_system", "rules"])
}

/// Prefix of all rule set versions of a tenant.
pub fn rules_prefix(tenant: &TenantId) -> Path {
    Path::from_iter(["_system", "rules", tenant.as_str()])
}

/// Key of rule set version `version` of a tenant (zero-padded like manifests).
pub fn rules(tenant: &TenantId, version: u64) -> Path {
    let name = format!("{version:020}.json");
    Path::from_iter(["_system", "rules", tenant.as_str(), name.as_str()])
}

/// The version in a rule set key, if `path` is one.
pub fn parse_rules(path: &Path) -> Option<u64> {
    parse_manifest(path)
}

/// Prefix of the aggregator's checkpoint versions of a tenant.
pub fn aggregator_checkpoint_prefix(tenant: &TenantId) -> Path {
    Path::from_iter(["_system", "aggregator", tenant.as_str(), "checkpoint"])
}

/// Key of aggregator checkpoint version `version` of a tenant.
pub fn aggregator_checkpoint(tenant: &TenantId, version: u64) -> Path {
    let name = format!("{version:020}.json");
    Path::from_iter([
        "_system",
        "aggregator",
        tenant.as_str(),
        "checkpoint",
        name.as_str(),
    ])
}

/// `YYYYMMDDHH` (UTC) of a millisecond Unix time.
fn hour_bucket(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}{hour:02}")
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// well-known algorithm), to avoid a date-time dependency for one key part.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip_and_stay_under_the_tenant() {
        let t = TenantId::new("team-a").expect("tenant");
        // 2024-02-29T13:05:00Z
        let id = Ulid::from_parts(1_709_211_900_000, 42);
        let p = segment(&t, id);
        assert_eq!(
            p.as_ref(),
            format!("tenants/team-a/segments/2024022913/{id}.parquet")
        );
        assert_eq!(parse_segment(&p), Some(id));
        assert!(p.as_ref().starts_with(segments_prefix(&t).as_ref()));
        assert_eq!(
            parse_segment(&Path::from("tenants/a/segments/x/notes.txt")),
            None
        );
    }

    #[test]
    fn block_manifest_and_lease_keys_round_trip() {
        let t = TenantId::new("team-a").expect("tenant");
        let id = Ulid::from_parts(1_709_211_900_000, 7);
        let b = block(&t, "raw", id);
        assert_eq!(
            b.as_ref(),
            format!("tenants/team-a/blocks/raw/{id}.parquet")
        );
        assert_eq!(parse_block(&b), Some(id));
        assert!(b.as_ref().starts_with(blocks_prefix(&t, "raw").as_ref()));
        let m = manifest(&t, 42);
        assert_eq!(
            m.as_ref(),
            "tenants/team-a/manifest/00000000000000000042.json"
        );
        assert_eq!(parse_manifest(&m), Some(42));
        assert_eq!(
            parse_manifest(&Path::from("tenants/a/manifest/42.json")),
            None
        );
        let l = lease("compactor", &t, "1700000000000", 3);
        assert_eq!(
            l.as_ref(),
            "_system/leases/compactor/team-a/1700000000000/00000000000000000003.json"
        );
        assert_eq!(parse_lease(&l), Some(3));
        assert_eq!(
            parse_tenant(&Path::from("tenants/team-a")).map(|t| t.to_string()),
            Some("team-a".to_string())
        );
        assert!(parse_tenant(&Path::from("tenants/..")).is_none());
    }

    #[test]
    fn rules_and_checkpoint_keys_round_trip() {
        let t = TenantId::new("team-a").expect("tenant");
        let r = rules(&t, 3);
        assert_eq!(r.as_ref(), "_system/rules/team-a/00000000000000000003.json");
        assert_eq!(parse_rules(&r), Some(3));
        assert!(r.as_ref().starts_with(rules_prefix(&t).as_ref()));
        assert!(r.as_ref().starts_with(rules_root().as_ref()));
        let c = aggregator_checkpoint(&t, 7);
        assert_eq!(
            c.as_ref(),
            "_system/aggregator/team-a/checkpoint/00000000000000000007.json"
        );
        assert!(
            c.as_ref()
                .starts_with(aggregator_checkpoint_prefix(&t).as_ref())
        );
    }

    #[test]
    fn hour_buckets_follow_the_calendar() {
        assert_eq!(hour_bucket(0), "1970010100");
        assert_eq!(hour_bucket(951_782_400_000), "2000022900"); // leap day of a 400-year leap year
        assert_eq!(hour_bucket(4_102_444_799_000), "2099123123");
    }
}
