//! The rule model (after M3's): storage policies, mapping rules and roll-up
//! rules, as a serde document ([`RuleSetSpec`]) and as the validated, compiled
//! form the jobs and the ingest hook use ([`RuleSet`]). `docs/rules.md`
//! describes the model and its file format.
//!
//! The document keeps every value as written (strings), and
//! [`RuleSet::new`] parses and checks them, so each error names the field it
//! is about, e.g. `rollup_rules[0].targets[1].storage_policies[0]`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};
use storage::labels::{is_valid_label_name, is_valid_metric_name};
use storage::{Labels, METRIC_NAME};

/// A rule that is not valid, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rule field {field}: {reason}")]
pub struct RuleError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------
// The document.

/// A tenant's rule set as written in a rule file or sent to the API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapping_rules: Vec<MappingRuleSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollup_rules: Vec<RollupRuleSpec>,
}

/// Keeps the series a filter selects at storage policies, or drops them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRuleSpec {
    pub name: String,
    /// Label name (`__name__` included) to glob.
    pub filter: BTreeMap<String, String>,
    /// Default `["last"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_policies: Vec<String>,
    /// Drop the selected series at ingest (never stored).
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop: bool,
}

/// Rolls the series a filter selects up into new series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupRuleSpec {
    pub name: String,
    pub filter: BTreeMap<String, String>,
    pub targets: Vec<RollupTargetSpec>,
    /// Whether the selected series themselves are still downsampled by
    /// mapping rules (they always stay in the raw namespace). Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub keep_original: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupTargetSpec {
    /// Transforms, exactly one roll-up, transforms.
    pub pipeline: Vec<PipelineOpSpec>,
    pub storage_policies: Vec<String>,
}

/// One pipeline step: `{"transform": "increase"}` or `{"rollup": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PipelineOpSpec {
    Transform(String),
    Rollup(RollupOpSpec),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupOpSpec {
    pub new_name: String,
    /// Keep only these labels (and the new name). Exclusive with `exclude_by`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Keep every label but these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_by: Vec<String>,
    /// Default `["sum"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregations: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}

impl RuleSetSpec {
    /// Parses a rule file: TOML, or JSON when `json` is set.
    pub fn parse(text: &str, json: bool) -> Result<Self, RuleError> {
        if json {
            serde_json::from_str(text).map_err(|e| err("document", e.to_string()))
        } else {
            toml::from_str(text).map_err(|e| err("document", e.to_string()))
        }
    }
}

// ---------------------------------------------------------------------------
// Storage policies.

/// `resolution:retention`, e.g. `1m:40d`. Each resolution is a namespace of
/// its own: blocks `tenants/<t>/blocks/<resolution>/...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoragePolicy {
    pub resolution_ms: i64,
    pub retention_ms: i64,
}

const SECOND: i64 = 1000;
const UNITS: [(&str, i64); 6] = [
    ("y", 365 * 86_400 * SECOND),
    ("w", 7 * 86_400 * SECOND),
    ("d", 86_400 * SECOND),
    ("h", 3600 * SECOND),
    ("m", 60 * SECOND),
    ("s", SECOND),
];

/// `<integer><unit>` with unit s, m, h, d, w or y (365 days).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (s, m, h, d, w, y)"))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let ms = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, ms)| *ms)
        .ok_or_else(|| format!("{s:?}: unknown unit {unit:?} (s, m, h, d, w, y)"))?;
    n.checked_mul(ms)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?} must be positive and not overflow"))
}

/// The shortest exact spelling: `60s` is `1m`, `1440m` is `1d`.
pub fn format_duration(ms: i64) -> String {
    for (u, len) in UNITS.iter().filter(|(u, _)| *u != "w") {
        if ms % len == 0 {
            return format!("{}{u}", ms / len);
        }
    }
    format!("{ms}ms")
}

impl StoragePolicy {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (res, ret) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not resolution:retention, e.g. 1m:40d"))?;
        let resolution_ms = parse_duration(res)?;
        let retention_ms = parse_duration(ret)?;
        if retention_ms < resolution_ms {
            return Err(format!("{s:?}: retention is shorter than the resolution"));
        }
        Ok(Self {
            resolution_ms,
            retention_ms,
        })
    }

    /// The namespace (block resolution) name, e.g. `1m`.
    pub fn resolution(&self) -> String {
        format_duration(self.resolution_ms)
    }
}

impl fmt::Display for StoragePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            format_duration(self.resolution_ms),
            format_duration(self.retention_ms)
        )
    }
}

// ---------------------------------------------------------------------------
// Aggregations and transforms.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    Last,
    Min,
    Max,
    Sum,
    Count,
    Mean,
    /// Nearest-rank percentile, in hundredths (P99 = 9900).
    Percentile(u32),
}

impl Aggregation {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "last" => Self::Last,
            "min" => Self::Min,
            "max" => Self::Max,
            "sum" => Self::Sum,
            "count" => Self::Count,
            "mean" => Self::Mean,
            "p50" => Self::Percentile(5000),
            "p90" => Self::Percentile(9000),
            "p95" => Self::Percentile(9500),
            "p99" => Self::Percentile(9900),
            "p999" => Self::Percentile(9990),
            _ => {
                return Err(format!(
                    "unknown aggregation {s:?} (last, min, max, sum, count, mean, p50, p90, p95, p99, p999)"
                ));
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            Self::Last => "last".into(),
            Self::Min => "min".into(),
            Self::Max => "max".into(),
            Self::Sum => "sum".into(),
            Self::Count => "count".into(),
            Self::Mean => "mean".into(),
            Self::Percentile(9990) => "p999".into(),
            Self::Percentile(p) => format!("p{}", p / 100),
        }
    }

    /// Aggregates `(t, v)` points (non-empty, in time order for `last`).
    pub fn apply(&self, points: &[(i64, f64)]) -> f64 {
        let vals = points.iter().map(|p| p.1);
        match self {
            Self::Last => points
                .iter()
                .max_by_key(|p| p.0)
                .map(|p| p.1)
                .unwrap_or(f64::NAN),
            Self::Min => vals.fold(f64::INFINITY, f64::min),
            Self::Max => vals.fold(f64::NEG_INFINITY, f64::max),
            Self::Sum => vals.sum(),
            Self::Count => points.len() as f64,
            Self::Mean => vals.sum::<f64>() / points.len() as f64,
            Self::Percentile(p) => {
                let mut v: Vec<f64> = vals.collect();
                v.sort_by(f64::total_cmp);
                let rank = ((f64::from(*p) / 10_000.0) * v.len() as f64).ceil() as usize;
                v.get(rank.clamp(1, v.len()) - 1)
                    .copied()
                    .unwrap_or(f64::NAN)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// Counter increase since the previous interval (resets handled).
    Increase,
    /// Counter increase per second since the previous interval.
    PerSecond,
    /// Running sum (a cumulative counter from increases).
    Add,
    /// The value, then zero at the last millisecond of its interval.
    Reset,
}

impl Transform {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "increase" => Self::Increase,
            "per_second" | "persecond" => Self::PerSecond,
            "add" => Self::Add,
            "reset" => Self::Reset,
            _ => {
                return Err(format!(
                    "unknown transform {s:?} (increase, per_second, add, reset)"
                ));
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Filters.

/// A glob on one label value: `*` any run, `?` one character, `[abc]`/`[a-z]`
/// a class (`[!a]` negated), `{x,y}` alternatives, a leading `!` negates the
/// whole pattern. An absent label is the empty string, as in PromQL.
#[derive(Clone, Debug)]
pub struct Glob {
    negated: bool,
    re: Regex,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, String> {
        let (negated, body) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut re = String::from("^(?s:");
        let mut chars = body.chars().peekable();
        let mut braces = 0usize;
        while let Some(c) = chars.next() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                '[' => {
                    re.push('[');
                    if chars.peek() == Some(&'!') {
                        chars.next();
                        re.push('^');
                    }
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        if c == '\\' || c == '[' || c == '&' || c == '~' {
                            re.push('\\');
                        }
                        re.push(c);
                    }
                    if !closed {
                        return Err(format!("glob {pattern:?}: unclosed '['"));
                    }
                    re.push(']');
                }
                '{' => {
                    braces += 1;
                    re.push_str("(?:");
                }
                ',' if braces > 0 => re.push('|'),
                '}' if braces > 0 => {
                    braces -= 1;
                    re.push(')');
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        if braces > 0 {
            return Err(format!("glob {pattern:?}: unclosed '{{'"));
        }
        re.push_str(")$");
        let re = Regex::new(&re).map_err(|e| format!("glob {pattern:?}: {e}"))?;
        Ok(Self { negated, re })
    }

    pub fn matches(&self, value: &str) -> bool {
        self.re.is_match(value) != self.negated
    }
}

/// Globs per label; a series matches when every glob matches.
#[derive(Clone, Debug)]
pub struct Filter {
    globs: Vec<(String, Glob)>,
}

impl Filter {
    fn new(spec: &BTreeMap<String, String>, field: &str) -> Result<Self, RuleError> {
        if spec.is_empty() {
            return Err(err(field, "at least one label glob is needed"));
        }
        let mut globs = Vec::new();
        for (name, pattern) in spec {
            let f = format!("{field}.{name}");
            if name != METRIC_NAME && !is_valid_label_name(name) {
                return Err(err(f, format!("invalid label name {name:?}")));
            }
            globs.push((name.clone(), Glob::new(pattern).map_err(|e| err(f, e))?));
        }
        Ok(Self { globs })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.globs
            .iter()
            .all(|(n, g)| g.matches(labels.get(n).unwrap_or("")))
    }
}

// ---------------------------------------------------------------------------
// The compiled rule set.

#[derive(Clone, Debug)]
pub struct MappingRule {
    pub name: String,
    pub filter: Filter,
    pub aggregations: Vec<Aggregation>,
    pub policies: Vec<StoragePolicy>,
    pub drop: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Excluding(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Rollup {
    pub new_name: String,
    pub grouping: Grouping,
    pub aggregations: Vec<Aggregation>,
}

impl Rollup {
    /// The label set of the roll-up series that `labels` contributes to.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        let kept = match &self.grouping {
            Grouping::By(names) => labels.retain(|n| names.iter().any(|k| k == n)),
            Grouping::Excluding(names) => {
                labels.retain(|n| n != METRIC_NAME && !names.iter().any(|k| k == n))
            }
        };
        kept.with(METRIC_NAME, &self.new_name)
    }
}

#[derive(Clone, Debug)]
pub struct RollupTarget {
    /// Transforms applied to each source series before the roll-up.
    pub pre: Vec<Transform>,
    pub rollup: Rollup,
    /// Transforms applied to each roll-up series.
    pub post: Vec<Transform>,
    pub policies: Vec<StoragePolicy>,
}

#[derive(Clone, Debug)]
pub struct RollupRule {
    pub name: String,
    pub filter: Filter,
    pub targets: Vec<RollupTarget>,
    pub keep_original: bool,
}

/// A validated rule set, ready to apply.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    spec: RuleSetSpec,
    pub mapping: Vec<MappingRule>,
    pub rollup: Vec<RollupRule>,
}

fn check_name(field: &str, name: &str, seen: &mut BTreeSet<String>) -> Result<(), RuleError> {
    if name.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if !seen.insert(name.to_string()) {
        return Err(err(field, format!("duplicate rule name {name:?}")));
    }
    Ok(())
}

fn aggregations(
    specs: &[String],
    field: &str,
    default: Aggregation,
) -> Result<Vec<Aggregation>, RuleError> {
    if specs.is_empty() {
        return Ok(vec![default]);
    }
    let mut out: Vec<Aggregation> = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let a = Aggregation::parse(s).map_err(|e| err(&f, e))?;
        if out.contains(&a) {
            return Err(err(f, format!("duplicate aggregation {s:?}")));
        }
        out.push(a);
    }
    Ok(out)
}

impl RuleSet {
    /// Validates and compiles `spec`; the error names the first bad field.
    pub fn new(spec: RuleSetSpec) -> Result<Self, RuleError> {
        let mut names = BTreeSet::new();
        // One retention per resolution: a resolution is one namespace.
        let mut retention: HashMap<i64, (i64, String)> = HashMap::new();
        let mut policies =
            |specs: &[String], field: &str| -> Result<Vec<StoragePolicy>, RuleError> {
                if specs.is_empty() {
                    return Err(err(field, "at least one storage policy is needed"));
                }
                let mut out = Vec::new();
                for (i, s) in specs.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    let p = StoragePolicy::parse(s).map_err(|e| err(&f, e))?;
                    if let Some((r, at)) = retention.get(&p.resolution_ms)
                        && *r != p.retention_ms
                    {
                        return Err(err(
                            f,
                            format!(
                                "resolution {} already has retention {} at {at}",
                                p.resolution(),
                                format_duration(*r)
                            ),
                        ));
                    }
                    retention.insert(p.resolution_ms, (p.retention_ms, f.clone()));
                    if out.contains(&p) {
                        return Err(err(f, format!("duplicate storage policy {s:?}")));
                    }
                    out.push(p);
                }
                Ok(out)
            };
        let mut mapping = Vec::new();
        for (i, r) in spec.mapping_rules.iter().enumerate() {
            let field = format!("mapping_rules[{i}]");
            check_name(&format!("{field}.name"), &r.name, &mut names)?;
            let filter = Filter::new(&r.filter, &format!("{field}.filter"))?;
            let (aggs, pols) = if r.drop {
                if !r.aggregations.is_empty() {
                    return Err(err(
                        format!("{field}.aggregations"),
                        "a drop rule has no aggregations",
                    ));
                }
                if !r.storage_policies.is_empty() {
                    return Err(err(
                        format!("{field}.storage_policies"),
                        "a drop rule has no storage policies",
                    ));
                }
                (Vec::new(), Vec::new())
            } else {
                (
                    aggregations(
                        &r.aggregations,
                        &format!("{field}.aggregations"),
                        Aggregation::Last,
                    )?,
                    policies(&r.storage_policies, &format!("{field}.storage_policies"))?,
                )
            };
            mapping.push(MappingRule {
                name: r.name.clone(),
                filter,
                aggregations: aggs,
                policies: pols,
                drop: r.drop,
            });
        }
        let mut rollup = Vec::new();
        let mut rollup_names = BTreeSet::new();
        for (i, r) in spec.rollup_rules.iter().enumerate() {
            let field = format!("rollup_rules[{i}]");
            check_name(&format!("{field}.name"), &r.name, &mut rollup_names)?;
            let filter = Filter::new(&r.filter, &format!("{field}.filter"))?;
            if r.targets.is_empty() {
                return Err(err(
                    format!("{field}.targets"),
                    "at least one target is needed",
                ));
            }
            let mut targets = Vec::new();
            for (j, t) in r.targets.iter().enumerate() {
                let tf = format!("{field}.targets[{j}]");
                let (mut pre, mut post, mut roll) = (Vec::new(), Vec::new(), None);
                for (k, op) in t.pipeline.iter().enumerate() {
                    let of = format!("{tf}.pipeline[{k}]");
                    match op {
                        PipelineOpSpec::Transform(s) => {
                            let tr = Transform::parse(s)
                                .map_err(|e| err(format!("{of}.transform"), e))?;
                            if roll.is_none() {
                                if tr == Transform::Reset {
                                    return Err(err(
                                        format!("{of}.transform"),
                                        "reset belongs after the rollup step",
                                    ));
                                }
                                pre.push(tr);
                            } else {
                                post.push(tr);
                            }
                        }
                        PipelineOpSpec::Rollup(op) => {
                            if roll.is_some() {
                                return Err(err(of, "a pipeline has exactly one rollup"));
                            }
                            roll = Some(compile_rollup(op, &format!("{of}.rollup"))?);
                        }
                    }
                }
                let rollup = roll.ok_or_else(|| {
                    err(format!("{tf}.pipeline"), "a pipeline needs one rollup step")
                })?;
                targets.push(RollupTarget {
                    pre,
                    rollup,
                    post,
                    policies: policies(&t.storage_policies, &format!("{tf}.storage_policies"))?,
                });
            }
            rollup.push(RollupRule {
                name: r.name.clone(),
                filter,
                targets,
                keep_original: r.keep_original,
            });
        }
        Ok(Self {
            spec,
            mapping,
            rollup,
        })
    }

    pub fn spec(&self) -> &RuleSetSpec {
        &self.spec
    }

    /// Whether any mapping rule drops series (the ingest hook skips the
    /// per-series check without one).
    pub fn has_drop_rules(&self) -> bool {
        self.mapping.iter().any(|r| r.drop)
    }

    /// Whether a drop rule selects this series: the ingest tier does not
    /// store it.
    pub fn drops(&self, labels: &Labels) -> bool {
        self.mapping
            .iter()
            .any(|r| r.drop && r.filter.matches(labels))
    }

    /// Every storage policy some rule writes to, finest resolution first.
    pub fn policies(&self) -> Vec<StoragePolicy> {
        let mut all: BTreeSet<StoragePolicy> = BTreeSet::new();
        for r in &self.mapping {
            all.extend(r.policies.iter().copied());
        }
        for r in &self.rollup {
            for t in &r.targets {
                all.extend(t.policies.iter().copied());
            }
        }
        all.into_iter().collect()
    }

    /// Whether the series is downsampled as itself by mapping rules: not
    /// when a roll-up rule that selects it says `keep_original = false`.
    pub fn keeps_original(&self, labels: &Labels) -> bool {
        !self
            .rollup
            .iter()
            .any(|r| !r.keep_original && r.filter.matches(labels))
    }
}

fn compile_rollup(op: &RollupOpSpec, field: &str) -> Result<Rollup, RuleError> {
    if !is_valid_metric_name(&op.new_name) {
        return Err(err(
            format!("{field}.new_name"),
            format!("invalid metric name {:?}", op.new_name),
        ));
    }
    if !op.group_by.is_empty() && !op.exclude_by.is_empty() {
        return Err(err(
            format!("{field}.exclude_by"),
            "group_by and exclude_by are exclusive",
        ));
    }
    for (key, names) in [("group_by", &op.group_by), ("exclude_by", &op.exclude_by)] {
        for (i, n) in names.iter().enumerate() {
            if n == METRIC_NAME || !is_valid_label_name(n) {
                return Err(err(
                    format!("{field}.{key}[{i}]"),
                    format!("invalid label name {n:?}"),
                ));
            }
        }
    }
    let grouping = if op.exclude_by.is_empty() {
        Grouping::By(op.group_by.clone())
    } else {
        Grouping::Excluding(op.exclude_by.clone())
    };
    Ok(Rollup {
        new_name: op.new_name.clone(),
        grouping,
        aggregations: aggregations(
            &op.aggregations,
            &format!("{field}.aggregations"),
            Aggregation::Sum,
        )?,
    })
}

/// The metric name of aggregation `i` of a rule: the first keeps the name,
/// the others get `:<aggregation>` appended (`cpu`, `cpu:max`).
pub fn output_name(name: &str, aggs: &[Aggregation], i: usize) -> String {
    match (i, aggs.get(i)) {
        (0, _) | (_, None) => name.to_string(),
        (_, Some(a)) => format!("{name}:{}", a.name()),
    }
}

#[cfg(test)]
mod tests;
