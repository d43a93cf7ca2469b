//! Queries across resolutions: which namespace a query reads (raw data, or
//! one of the aggregated resolutions of the tenant's storage policies), and
//! a [`Queryable`] that reads it, stitched with raw data where the
//! aggregated namespace has no data yet.
//!
//! The choice, per query, over the data range `[start - lookback, end]`:
//! raw when the raw retention (`[compact] retention`/`tenant_retention`,
//! 0 = forever) covers the range's start; otherwise the finest aggregated
//! namespace whose policy retention covers it (or, if none does, the one
//! keeping data longest). A request can force one (`resolution=raw|1m|auto`,
//! the `X-Strata-Resolution` header, or M3's `M3-Metrics-Type` and
//! `M3-Storage-Policy` headers); a forced namespace is read alone.
//!
//! Stitching: an aggregated namespace holds closed windows only, so the
//! newest part of its series (from the end of its newest block, `until`) is
//! read from raw data; the two reads cover `[start, until)` and
//! `[until, end]`, so no sample is counted twice at the seam (aggregated
//! samples carry timestamps inside their window). Each series is read from
//! the first namespace in the plan's order that holds it in the range:
//! series that only exist aggregated (roll-ups, `name:max`) are found when
//! raw is chosen, and series no rule downsamples are still read from raw
//! when an aggregated namespace is chosen.
//!
//! A plain selector reads the value an aggregated namespace stores under the
//! series' own name: the rule's first aggregation (default `last`, which for
//! counters keeps the samples around resets, so `rate()`/`increase()` stay
//! correct); other aggregations are separate series named `name:agg`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use aggregator::PolledRules;
use aggregator::rules::{StoragePolicy, format_duration, parse_duration};
use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use storage::block::RAW;
use storage::matcher::matches_all;
use storage::segment::{IndexedSeries, SegmentIndex};
use storage::storage::{Snapshot, Source};
use storage::{Labels, Matcher, Sample, Series, Storage, StorageError, TenantId};
use tracing::debug;

use crate::promql::{EvalError, Queryable};
use crate::queryable::{ReadWarnings, TenantQueryable};

/// Request parameter forcing a resolution: `raw`, `auto`, a resolution
/// (`1m`) or a storage policy (`1m:40d`).
pub const RESOLUTION_PARAM: &str = "resolution";
/// Request header with the same values as [`RESOLUTION_PARAM`]; in a
/// response, the resolution the query read (`raw`, `1m`).
pub const RESOLUTION_HEADER: &str = "x-strata-resolution";
/// Response header: the namespaces read, in order of preference, with the
/// seam of a stitched read (`1m:40d<1732579200000,raw`).
pub const NAMESPACES_HEADER: &str = "x-strata-namespaces";
/// M3's request headers: `unaggregated` or `aggregated` (with a storage
/// policy).
pub const M3_METRICS_TYPE: &str = "m3-metrics-type";
pub const M3_STORAGE_POLICY: &str = "m3-storage-policy";

/// Raw data retention per tenant (the compactor's settings).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawRetention {
    /// `None` (or 0): forever.
    pub default_ms: Option<i64>,
    pub tenants: HashMap<String, i64>,
}

impl RawRetention {
    /// From the compactor's `retention` and `tenant_retention`.
    pub fn new(
        default: std::time::Duration,
        tenants: &std::collections::BTreeMap<String, std::time::Duration>,
    ) -> Self {
        let ms = |d: &std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            default_ms: Some(ms(&default)).filter(|v| *v > 0),
            tenants: tenants.iter().map(|(t, d)| (t.clone(), ms(d))).collect(),
        }
    }

    /// The tenant's raw retention, `None` for forever.
    pub fn of(&self, tenant: &str) -> Option<i64> {
        self.tenants
            .get(tenant)
            .copied()
            .or(self.default_ms)
            .filter(|ms| *ms > 0)
    }
}

/// What the query tier needs to choose a resolution.
pub struct Resolver {
    pub raw_retention: RawRetention,
    /// The tenants' rule sets (their storage policies).
    pub rules: Arc<PolledRules>,
}

/// The resolution a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Auto,
    Raw,
    /// An aggregated resolution, in ms.
    Resolution(i64),
}

impl Requested {
    /// From the parameter, else the header, else M3's headers; the error
    /// names the parameter or header.
    pub fn from_request(param: Option<&str>, headers: &HeaderMap) -> Result<Self, String> {
        let header = |name: &str| -> Result<Option<&str>, String> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::trim)
                        .map_err(|_| format!("invalid header {name:?}: not ASCII"))
                })
                .transpose()
        };
        if let Some(v) = param.filter(|v| !v.is_empty()) {
            return Self::parse(v)
                .map_err(|e| format!("invalid parameter \"{RESOLUTION_PARAM}\": {e}"));
        }
        if let Some(v) = header(RESOLUTION_HEADER)?.filter(|v| !v.is_empty()) {
            return Self::parse(v)
                .map_err(|e| format!("invalid header \"X-Strata-Resolution\": {e}"));
        }
        match header(M3_METRICS_TYPE)?
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") => Ok(Self::Auto),
            Some("unaggregated") => Ok(Self::Raw),
            Some("aggregated") => {
                let policy = header(M3_STORAGE_POLICY)?.ok_or_else(|| {
                    "header \"M3-Metrics-Type: aggregated\" needs \"M3-Storage-Policy\"".to_string()
                })?;
                StoragePolicy::parse(policy)
                    .map(|p| Self::Resolution(p.resolution_ms))
                    .map_err(|e| format!("invalid header \"M3-Storage-Policy\": {e}"))
            }
            Some(other) => Err(format!(
                "invalid header \"M3-Metrics-Type\": {other:?} is not unaggregated or aggregated"
            )),
        }
    }

    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "auto" => Ok(Self::Auto),
            "raw" => Ok(Self::Raw),
            _ => {
                let res = v.split_once(':').map_or(v, |(r, _)| r);
                parse_duration(res).map(Self::Resolution).map_err(|e| {
                    format!(
                        "{e}; expected raw, auto, a resolution (1m) or a storage policy (1m:40d)"
                    )
                })
            }
        }
    }
}

/// One namespace as the choice sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// 0 for raw data.
    pub resolution_ms: i64,
    /// How far back it keeps data; `None`: forever.
    pub retention_ms: Option<i64>,
    /// Aggregated: the end of its newest block (its data is complete before
    /// it); raw: `i64::MAX`.
    pub until: i64,
}

impl Namespace {
    pub fn raw(retention_ms: Option<i64>) -> Self {
        Self {
            resolution_ms: 0,
            retention_ms,
            until: i64::MAX,
        }
    }

    /// `raw` or the resolution (`1m`), as block paths and headers spell it.
    pub fn name(&self) -> String {
        if self.resolution_ms == 0 {
            RAW.to_string()
        } else {
            format_duration(self.resolution_ms)
        }
    }

    fn covers(&self, lo: i64, now: i64) -> bool {
        self.retention_ms
            .is_none_or(|r| now.saturating_sub(r) <= lo)
    }

    fn describe(&self) -> String {
        match (self.resolution_ms, self.retention_ms) {
            (0, _) => RAW.to_string(),
            (_, Some(r)) => format!("{}:{}", self.name(), format_duration(r)),
            (_, None) => self.name(),
        }
    }
}

/// What a query reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// In order of preference; a series is read from the first that holds
    /// it. The first is the chosen one.
    pub order: Vec<Namespace>,
    /// Where the chosen (aggregated) namespace ends (`until`), its series
    /// continue from raw data.
    pub stitch_raw: bool,
}

impl Plan {
    fn chosen(&self) -> &Namespace {
        &self.order[0]
    }

    /// The resolution read, 0 for raw.
    pub fn resolution_ms(&self) -> i64 {
        self.chosen().resolution_ms
    }

    /// The response headers that show the choice.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let describe: Vec<String> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 && self.stitch_raw {
                    format!("{}<{}", n.describe(), n.until)
                } else {
                    n.describe()
                }
            })
            .collect();
        let mut out = Vec::new();
        for (name, value) in [
            (RESOLUTION_HEADER, self.chosen().name()),
            (NAMESPACES_HEADER, describe.join(",")),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push((HeaderName::from_static(name), v));
            }
        }
        out
    }
}

/// Chooses what a query whose data starts at `lo` reads. `aggregated`: the
/// tenant's policies with the end of their data.
pub fn choose(
    raw: Namespace,
    mut aggregated: Vec<Namespace>,
    lo: i64,
    now: i64,
    requested: &Requested,
) -> Result<Plan, String> {
    aggregated.sort_by_key(|n| n.resolution_ms);
    match requested {
        Requested::Raw => Ok(Plan {
            order: vec![raw],
            stitch_raw: false,
        }),
        Requested::Resolution(ms) => {
            let found = aggregated.iter().find(|n| n.resolution_ms == *ms);
            match found {
                Some(n) => Ok(Plan {
                    order: vec![n.clone()],
                    stitch_raw: false,
                }),
                None => {
                    let have: Vec<String> = aggregated.iter().map(Namespace::describe).collect();
                    Err(format!(
                        "resolution {} is not a storage policy of the tenant's rules (policies: {})",
                        format_duration(*ms),
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ))
                }
            }
        }
        Requested::Auto => {
            if aggregated.is_empty() || raw.covers(lo, now) {
                let mut order = vec![raw];
                order.extend(aggregated);
                return Ok(Plan {
                    order,
                    stitch_raw: false,
                });
            }
            let pick = aggregated
                .iter()
                .position(|n| n.covers(lo, now))
                .or_else(|| {
                    // None covers: the one keeping data longest.
                    aggregated
                        .iter()
                        .enumerate()
                        .max_by_key(|(_, n)| (n.retention_ms.unwrap_or(i64::MAX), -n.resolution_ms))
                        .map(|(i, _)| i)
                })
                .unwrap_or(0);
            let chosen = aggregated.remove(pick);
            let mut order = vec![chosen, raw];
            order.extend(aggregated);
            Ok(Plan {
                order,
                stitch_raw: true,
            })
        }
    }
}

/// A query's namespaces, chosen and ready to read.
pub struct Resolved {
    pub queryable: Arc<dyn Queryable>,
    /// Corrupt objects the queryable's reads skipped (response warnings).
    pub warnings: ReadWarnings,
    /// Aggregated resolution read (0: raw): the step and the lookback are
    /// raised to it.
    pub resolution_ms: i64,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The request asked for a resolution the tenant does not have (400).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ResolveError> for crate::api::ApiError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Invalid(m) => Self::bad_data(m),
            ResolveError::Storage(e) => e.into(),
        }
    }
}

/// [`resolve`] for an HTTP request: the resolution asked for by `param`
/// (the `resolution` parameter) or the headers, for data from `lo`.
pub async fn for_request(
    resolver: Option<&Resolver>,
    storage: &Storage,
    tenant: &TenantId,
    param: Option<&str>,
    headers: &HeaderMap,
    lo: i64,
) -> Result<Resolved, ResolveError> {
    let requested = Requested::from_request(param, headers).map_err(ResolveError::Invalid)?;
    resolve(resolver, storage, tenant, &requested, lo, now_ms()).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Chooses the namespaces of one query of `tenant` whose data starts at
/// `lo`. Without a resolver, or for a tenant without storage policies, the
/// query reads raw data exactly as before (no extra reads).
pub async fn resolve(
    resolver: Option<&Resolver>,
    storage: &Storage,
    tenant: &TenantId,
    requested: &Requested,
    lo: i64,
    now: i64,
) -> Result<Resolved, ResolveError> {
    let policies = match resolver {
        Some(r) => r
            .rules
            .get_fresh(tenant)
            .await
            .map(|c| c.rules.policies())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let raw_retention = resolver.and_then(|r| r.raw_retention.of(tenant.as_str()));
    let raw = Namespace::raw(raw_retention);
    if policies.is_empty() || *requested == Requested::Raw {
        // A forced resolution the tenant does not have is refused here.
        let plan = choose(raw, Vec::new(), lo, now, requested).map_err(ResolveError::Invalid)?;
        let warnings = ReadWarnings::default();
        return Ok(Resolved {
            queryable: Arc::new(TenantQueryable {
                storage: storage.clone(),
                tenant: tenant.clone(),
                warnings: warnings.clone(),
            }),
            warnings,
            resolution_ms: 0,
            headers: plan.headers(),
        });
    }
    // One snapshot for every namespace the query reads, from the query
    // view (reused for `view_max_age`, as the raw path's reads are), with
    // corrupt objects left out and reported like the raw path does.
    let warnings = ReadWarnings::default();
    let (snapshot, skipped) = storage.snapshot_reporting(tenant).await?;
    warnings.add(skipped);
    let aggregated: Vec<Namespace> = policies
        .iter()
        .map(|p| {
            let name = p.resolution();
            let until = snapshot
                .manifest
                .manifest
                .blocks
                .iter()
                .filter(|b| b.resolution == name)
                .map(|b| b.end)
                .max()
                .unwrap_or(i64::MIN);
            Namespace {
                resolution_ms: p.resolution_ms,
                retention_ms: Some(p.retention_ms),
                until,
            }
        })
        .collect();
    let plan = choose(raw, aggregated, lo, now, requested).map_err(ResolveError::Invalid)?;
    debug!(tenant = %tenant, plan = ?plan, "namespaces chosen");
    Ok(Resolved {
        resolution_ms: plan.resolution_ms(),
        headers: plan.headers(),
        queryable: Arc::new(StitchedQueryable::new(
            storage.clone(),
            snapshot,
            plan,
            warnings.clone(),
        )),
        warnings,
    })
}

/// Reads the namespaces of a [`Plan`] from one snapshot of the tenant.
pub struct StitchedQueryable {
    storage: Storage,
    plan: Plan,
    /// Sources per resolution (0: raw blocks, then segments), in the order
    /// in which later ones win duplicates.
    sources: HashMap<i64, Vec<Source>>,
    warnings: ReadWarnings,
}

impl StitchedQueryable {
    pub fn new(storage: Storage, snapshot: Snapshot, plan: Plan, warnings: ReadWarnings) -> Self {
        let wanted: HashSet<i64> = plan.order.iter().map(|n| n.resolution_ms).collect();
        let mut sources: HashMap<i64, Vec<Source>> = HashMap::new();
        for (entry, src) in snapshot
            .manifest
            .manifest
            .blocks
            .iter()
            .zip(snapshot.blocks)
        {
            let res = if entry.resolution == RAW {
                Some(0)
            } else {
                parse_duration(&entry.resolution).ok()
            };
            if let Some(res) = res.filter(|r| wanted.contains(r)) {
                sources.entry(res).or_default().push(src);
            }
        }
        if wanted.contains(&0) {
            sources
                .entry(0)
                .or_default()
                .extend(snapshot.segments.into_iter().map(|(_, s)| s));
        }
        Self {
            storage,
            plan,
            sources,
            warnings,
        }
    }

    /// Series of `wanted` from the namespace's objects, samples in `[lo, hi]`.
    async fn read(
        &self,
        resolution_ms: i64,
        wanted: &HashSet<&Labels>,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<Series>, StorageError> {
        if wanted.is_empty() || lo > hi {
            return Ok(Vec::new());
        }
        // Each object narrowed to the wanted series, so the scan fetches
        // only those: series homed in another namespace are not read here.
        let narrowed: Vec<Source> = self
            .sources
            .get(&resolution_ms)
            .into_iter()
            .flatten()
            .filter(|s| s.index.overlaps(lo, hi))
            .filter_map(|s| {
                let series: Vec<IndexedSeries> = s
                    .index
                    .series
                    .iter()
                    .filter(|x| wanted.contains(&x.labels))
                    .cloned()
                    .collect();
                (!series.is_empty()).then(|| Source {
                    kind: s.kind,
                    meta: s.meta.clone(),
                    index: Arc::new(SegmentIndex {
                        min_time: s.index.min_time,
                        max_time: s.index.max_time,
                        samples: s.index.samples,
                        series,
                    }),
                    done: s.done.clone(),
                })
            })
            .collect();
        let (series, skipped) = self
            .storage
            .read_reporting(&narrowed, &[], lo, hi, None)
            .await?;
        self.warnings.add(skipped);
        Ok(series)
    }
}

#[async_trait]
impl Queryable for StitchedQueryable {
    async fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Series>, EvalError> {
        // Home of each matching series: the first namespace holding it.
        let mut home: HashMap<&Labels, usize> = HashMap::new();
        for (i, ns) in self.plan.order.iter().enumerate() {
            for src in self.sources.get(&ns.resolution_ms).into_iter().flatten() {
                if !src.index.overlaps(start_ms, end_ms) {
                    continue;
                }
                for s in &src.index.series {
                    if !home.contains_key(&s.labels) && matches_all(matchers, &s.labels) {
                        home.insert(&s.labels, i);
                    }
                }
            }
        }
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let storage_err = |e: StorageError| EvalError::Storage(e.to_string());
        for (i, ns) in self.plan.order.iter().enumerate() {
            let wanted: HashSet<&Labels> = home
                .iter()
                .filter(|(_, h)| **h == i)
                .map(|(l, _)| *l)
                .collect();
            let mut reads = Vec::new();
            if i == 0 && self.plan.stitch_raw {
                let seam = ns.until;
                reads.push((
                    ns.resolution_ms,
                    start_ms,
                    end_ms.min(seam.saturating_sub(1)),
                ));
                reads.push((0, start_ms.max(seam), end_ms));
            } else {
                reads.push((ns.resolution_ms, start_ms, end_ms));
            }
            for (res, lo, hi) in reads {
                for s in self.read(res, &wanted, lo, hi).await.map_err(storage_err)? {
                    merged.entry(s.labels).or_default().extend(s.samples);
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, mut samples)| {
                // The reads of a series cover disjoint ranges; sorting keeps
                // the trait's time order.
                samples.sort_by_key(|x| x.t);
                samples.dedup_by_key(|x| x.t);
                Series { labels, samples }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
