use super::*;
use crate::rule_store::ObjectRuleStore;
use crate::rules::RuleSetSpec;
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use storage::{Matcher, Sample, Series};

const H: i64 = 3_600_000;
/// An aligned 2 h window start.
const T0: i64 = 1_699_999_200_000;
const END: i64 = T0 + 4 * H;

const RULES: &str = r#"
[[mapping_rules]]
name = "temp"
filter = { __name__ = "temp" }
aggregations = ["last", "min", "max"]
storage_policies = ["1m:40d"]

[[mapping_rules]]
name = "counters"
filter = { __name__ = "req_total" }
storage_policies = ["1m:40d"]

[[rollup_rules]]
name = "temp-by-job"
filter = { __name__ = "temp" }
[[rollup_rules.targets]]
storage_policies = ["1m:40d"]
pipeline = [{ rollup = { new_name = "temp_by_job", group_by = ["job"], aggregations = ["sum", "max"] } }]

[[rollup_rules]]
name = "req-by-job"
filter = { __name__ = "req_total" }
[[rollup_rules.targets]]
storage_policies = ["1m:40d"]
pipeline = [
  { transform = "increase" },
  { rollup = { new_name = "job:req:sum", group_by = ["job"] } },
  { transform = "add" },
]
"#;

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

/// A deterministic pseudo-random sequence in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 4 h of 10 s scrapes: gauges `temp` and counters `req_total` (with resets)
/// for jobs a and b, two instances each.
fn raw_data() -> Vec<Series> {
    let mut rng = Lcg(7);
    let mut out = Vec::new();
    for job in ["a", "b"] {
        for inst in ["i1", "i2"] {
            let mut temp = Vec::new();
            let mut req = Vec::new();
            let mut c = 1000.0 * rng.next();
            let mut t = T0 - 10 * 60_000;
            while t < END {
                let jitter = (rng.next() * 2000.0) as i64;
                temp.push(Sample::new(
                    t + jitter,
                    (20.0 + 10.0 * rng.next() * 100.0).round() / 100.0,
                ));
                c += (5.0 + 3.0 * rng.next()).round();
                // A reset about every 47 minutes, at odd offsets.
                if rng.next() < 10_000.0 / (47.0 * 60_000.0) {
                    c = (3.0 * rng.next()).round();
                }
                req.push(Sample::new(t + jitter, c));
                t += 10_000;
            }
            out.push(Series {
                labels: labels(&[("__name__", "temp"), ("job", job), ("instance", inst)]),
                samples: temp,
            });
            out.push(Series {
                labels: labels(&[("__name__", "req_total"), ("job", job), ("instance", inst)]),
                samples: req,
            });
        }
    }
    out
}

async fn setup(store: Arc<dyn ObjectStore>) -> Arc<dyn RuleStore> {
    let rules: Arc<dyn RuleStore> = Arc::new(ObjectRuleStore::new(store.clone()));
    let spec = RuleSetSpec::parse(RULES, false).expect("rules");
    rules
        .commit(&tenant(), 0, spec, 0)
        .await
        .expect("commit rules");
    let storage = Storage::new(store);
    // Two segments, like two ingesters.
    let data = raw_data();
    let (a, b) = data.split_at(3);
    storage.write_segment(&tenant(), a).await.expect("write");
    storage.write_segment(&tenant(), b).await.expect("write");
    rules
}

fn aggregator(store: Arc<dyn ObjectStore>, rules: Arc<dyn RuleStore>) -> Aggregator {
    Aggregator::new(store, rules, AggregateConfig::default())
}

/// Series of the `1m` namespace matching `name`.
async fn aggregated(storage: &Storage, name: &str) -> Vec<Series> {
    let snap = storage.snapshot(&tenant()).await.expect("snapshot");
    let sources: Vec<Source> = snap
        .manifest
        .manifest
        .blocks
        .iter()
        .zip(&snap.blocks)
        .filter(|(b, _)| b.resolution == "1m")
        .map(|(_, s)| s.clone())
        .collect();
    storage
        .read(
            &sources,
            &[Matcher::eq("__name__", name)],
            0,
            i64::MAX,
            None,
        )
        .await
        .expect("read")
}

/// Prometheus' extrapolated `increase` over `(start, end]`.
fn increase(samples: &[Sample], start: i64, end: i64) -> f64 {
    let s: Vec<&Sample> = samples
        .iter()
        .filter(|x| x.t > start && x.t <= end)
        .collect();
    if s.len() < 2 {
        return f64::NAN;
    }
    let mut inc = s[s.len() - 1].v - s[0].v;
    for w in s.windows(2) {
        if w[1].v < w[0].v {
            inc += w[0].v;
        }
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let sampled = (last.t - first.t) as f64;
    let avg = sampled / (s.len() - 1) as f64;
    let mut to_start = (first.t - start) as f64;
    let mut to_end = (end - last.t) as f64;
    let zero = sampled * (first.v / inc.max(f64::MIN_POSITIVE));
    if inc > 0.0 && first.v >= 0.0 && zero < to_start {
        to_start = zero;
    }
    let limit = avg * 1.1;
    if to_start >= limit {
        to_start = avg / 2.0;
    }
    if to_end >= limit {
        to_end = avg / 2.0;
    }
    inc * (sampled + to_start + to_end) / sampled
}

fn in_interval(s: &Series, k: i64) -> Vec<Sample> {
    s.samples
        .iter()
        .copied()
        .filter(|x| x.t.div_euclid(60_000) == k)
        .collect()
}

#[tokio::test]
async fn mapping_and_rollups_match_raw_data() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules = setup(store.clone()).await;
    let agg = aggregator(store.clone(), rules);
    let stats = agg.run_pass_at(END + H).await.expect("pass");
    assert_eq!(stats.windows, 3, "{stats:?}"); // the lookback reaches into one more window
    let raw = raw_data();
    let storage = Storage::new(store);

    // min/max per interval exact; last is the raw last sample.
    let mins = aggregated(&storage, "temp:min").await;
    let maxs = aggregated(&storage, "temp:max").await;
    let lasts = aggregated(&storage, "temp").await;
    assert_eq!(mins.len(), 4);
    for s in raw
        .iter()
        .filter(|s| s.labels.metric_name() == Some("temp"))
    {
        let find = |v: &[Series], name: &str| -> Series {
            let want = s.labels.with("__name__", name);
            v.iter()
                .find(|x| x.labels == want)
                .cloned()
                .expect("series")
        };
        let (mn, mx, ls) = (
            find(&mins, "temp:min"),
            find(&maxs, "temp:max"),
            find(&lasts, "temp"),
        );
        for (i, x) in mn.samples.iter().enumerate() {
            let k = x.t.div_euclid(60_000);
            let vals = in_interval(s, k);
            assert_eq!(x.v, vals.iter().map(|v| v.v).fold(f64::INFINITY, f64::min));
            assert_eq!(
                mx.samples[i].v,
                vals.iter().map(|v| v.v).fold(f64::NEG_INFINITY, f64::max)
            );
            assert_eq!(ls.samples[i], *vals.last().expect("last"));
        }
    }

    // A sum roll-up equals the sum of its raw series (their last values).
    for (job, out) in aggregated(&storage, "temp_by_job")
        .await
        .iter()
        .map(|s| (s.labels.get("job").unwrap_or("").to_string(), s))
    {
        let members: Vec<&Series> = raw
            .iter()
            .filter(|s| s.labels.metric_name() == Some("temp") && s.labels.get("job") == Some(&job))
            .collect();
        assert_eq!(out.samples.len(), 250); // 4 h plus the 10 min before T0
        for x in &out.samples {
            let k = x.t.div_euclid(60_000);
            let want: f64 = members
                .iter()
                .filter_map(|m| in_interval(m, k).last().map(|v| v.v))
                .sum();
            assert!(
                (x.v - want).abs() < 1e-9,
                "{job} at {}: {} vs {want}",
                x.t,
                x.v
            );
        }
    }

    // increase() over the downsampled counters matches raw within 1%,
    // resets included; the roll-up counter matches the sum of raw increases.
    let down = aggregated(&storage, "req_total").await;
    let sums = aggregated(&storage, "job:req:sum").await;
    let mut worst: f64 = 0.0;
    let mut resets = 0;
    for s in raw
        .iter()
        .filter(|s| s.labels.metric_name() == Some("req_total"))
    {
        resets += s
            .samples
            .windows(2)
            .filter(|w| w[1].v < w[0].v && w[0].t >= T0)
            .count();
        let d = down
            .iter()
            .find(|x| x.labels == s.labels)
            .expect("downsampled");
        for start in (T0..END - 30 * 60_000).step_by(15 * 60_000) {
            let (r, a) = (
                increase(&s.samples, start, start + 30 * 60_000),
                increase(&d.samples, start, start + 30 * 60_000),
            );
            worst = worst.max((r - a).abs() / r);
        }
    }
    assert!(resets >= 4, "test data should have resets: {resets}");
    assert!(
        worst < 0.01,
        "increase over downsampled counters off by {worst}"
    );
    for out in &sums {
        let job = out.labels.get("job").unwrap_or("");
        for start in (T0 + 15 * 60_000..END - H).step_by(30 * 60_000) {
            let end = start + H;
            let want: f64 = raw
                .iter()
                .filter(|s| {
                    s.labels.metric_name() == Some("req_total") && s.labels.get("job") == Some(job)
                })
                .map(|s| increase(&s.samples, start, end))
                .sum();
            let got = increase(&out.samples, start, end);
            assert!(
                (got - want).abs() / want < 0.01,
                "{job} [{start},{end}]: {got} vs {want}"
            );
        }
    }
    eprintln!(
        "worst relative error of increase() over 30m, downsampled vs raw: {worst:.5} ({resets} resets)"
    );
}

async fn block_bytes(store: &Arc<dyn ObjectStore>) -> Vec<(String, bytes::Bytes)> {
    let m = manifest::load_latest(store.as_ref(), &tenant())
        .await
        .expect("manifest");
    let mut out = Vec::new();
    for b in m.manifest.blocks.iter().filter(|b| b.resolution == "1m") {
        let id = Ulid::from_string(&b.id).expect("id");
        let bytes = store
            .get(&paths::block(&tenant(), "1m", id))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        out.push((b.id.clone(), bytes));
    }
    out
}

#[tokio::test]
async fn a_rerun_rewrites_identical_bytes_and_late_data_reaggregates() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules = setup(store.clone()).await;
    aggregator(store.clone(), rules.clone())
        .run_pass_at(END + H)
        .await
        .expect("pass");
    let before = block_bytes(&store).await;
    assert_eq!(before.len(), 3);
    // Nothing new: nothing to do.
    let s = aggregator(store.clone(), rules.clone())
        .run_pass_at(END + H)
        .await
        .expect("pass");
    assert_eq!(s.windows, 0, "{s:?}");
    // A crash before the checkpoint commit: the checkpoint is lost, the
    // re-run writes the same blocks, byte for byte, and the manifest is unchanged.
    let prefix = paths::aggregator_checkpoint_prefix(&tenant());
    for v in crate::chain::versions(store.as_ref(), &prefix)
        .await
        .expect("versions")
    {
        store
            .delete(&paths::aggregator_checkpoint(&tenant(), v))
            .await
            .expect("delete");
    }
    let s = aggregator(store.clone(), rules.clone())
        .run_pass_at(END + H)
        .await
        .expect("pass");
    assert_eq!(s.windows, 3);
    assert_eq!(block_bytes(&store).await, before);

    // Late data for the second window: re-aggregated, its block replaced.
    let storage = Storage::new(store.clone());
    let late = Series {
        labels: labels(&[("__name__", "temp"), ("job", "a"), ("instance", "late")]),
        samples: vec![Sample::new(T0 + 3 * H, 1000.0)],
    };
    storage
        .write_segment(&tenant(), &[late])
        .await
        .expect("write");
    let s = aggregator(store.clone(), rules)
        .run_pass_at(END + H)
        .await
        .expect("pass");
    assert_eq!(s.reaggregated, 1, "{s:?}");
    assert_eq!(s.blocks_retired, 1);
    let after = block_bytes(&store).await;
    assert_eq!(after.len(), 3, "one block per window");
    let maxs = aggregated(&storage, "temp_by_job:max").await;
    let a = maxs
        .iter()
        .find(|s| s.labels.get("job") == Some("a"))
        .expect("job a");
    assert!(a.samples.iter().any(|x| x.v == 1000.0));
}

#[tokio::test]
async fn two_aggregators_at_once_do_not_double_count() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules = setup(store.clone()).await;
    let (a, b) = (
        aggregator(store.clone(), rules.clone()),
        aggregator(store.clone(), rules.clone()),
    );
    let (ra, rb) = tokio::join!(a.run_pass_at(END + H), b.run_pass_at(END + H));
    ra.expect("a");
    rb.expect("b");
    // And once more without leases in the way: a pass that ignores them
    // (an expired lease) recomputes the same ids.
    let m = manifest::load_latest(store.as_ref(), &tenant())
        .await
        .expect("manifest");
    let ours: Vec<&BlockEntry> = m
        .manifest
        .blocks
        .iter()
        .filter(|b| b.resolution == "1m")
        .collect();
    let windows: BTreeSet<i64> = ours.iter().map(|b| b.start).collect();
    assert_eq!(ours.len(), windows.len(), "one block per window: {ours:?}");
    // The sum roll-up equals a single aggregator's.
    let single: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules1 = setup(single.clone()).await;
    aggregator(single.clone(), rules1)
        .run_pass_at(END + H)
        .await
        .expect("pass");
    let x = aggregated(&Storage::new(store), "temp_by_job").await;
    let y = aggregated(&Storage::new(single), "temp_by_job").await;
    assert_eq!(x, y);
}

#[tokio::test]
async fn open_windows_wait_and_a_rule_change_applies_to_new_windows() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules = setup(store.clone()).await;
    // At END + 5 min the last window is not past the allowed lateness.
    let s = aggregator(store.clone(), rules.clone())
        .run_pass_at(END + 5 * 60_000)
        .await
        .expect("pass");
    assert_eq!(s.windows, 2, "{s:?}");
    // A new rule version: the next window uses it, without restart.
    let mut spec = RuleSetSpec::parse(RULES, false).expect("rules");
    spec.mapping_rules[0].aggregations = vec!["last".into(), "mean".into()];
    rules.commit(&tenant(), 1, spec, 1).await.expect("commit");
    let s = aggregator(store.clone(), rules)
        .run_pass_at(END + H)
        .await
        .expect("pass");
    assert_eq!(s.windows, 1, "{s:?}");
    let means = aggregated(&Storage::new(store), "temp:mean").await;
    assert!(!means.is_empty());
    assert!(
        means
            .iter()
            .all(|s| s.samples.iter().all(|x| x.t >= T0 + 2 * H))
    );
}
