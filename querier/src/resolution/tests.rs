use super::*;
use aggregator::rules::RuleSetSpec;
use aggregator::{AggregateConfig, Aggregator, ObjectRuleStore, RuleStore};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use std::time::Duration;

const M: i64 = 60_000;
const H: i64 = 60 * M;
const D: i64 = 24 * H;

fn agg(res: i64, ret: i64, until: i64) -> Namespace {
    Namespace {
        resolution_ms: res,
        retention_ms: Some(ret),
        until,
    }
}

#[test]
fn raw_when_its_retention_covers_else_the_finest_covering_namespace() {
    let now = 100 * D;
    let raw = Namespace::raw(Some(7 * D));
    let aggs = vec![
        agg(H, 1825 * D, 5),
        agg(M, 40 * D, 7),
        agg(10_000, 2 * D, 9),
    ];
    let pick = |lo: i64| {
        choose(raw.clone(), aggs.clone(), lo, now, &Requested::Auto)
            .expect("plan")
            .resolution_ms()
    };
    assert_eq!(pick(now - 6 * D), 0);
    assert_eq!(pick(now - 7 * D), 0);
    assert_eq!(pick(now - 8 * D), M);
    assert_eq!(pick(now - 30 * D), M);
    assert_eq!(pick(now - 41 * D), H);
    // Nothing covers 10 years: the namespace keeping data longest.
    assert_eq!(pick(now - 3650 * D), H);

    let p = choose(
        raw.clone(),
        aggs.clone(),
        now - 30 * D,
        now,
        &Requested::Auto,
    )
    .expect("plan");
    assert!(p.stitch_raw);
    let order: Vec<i64> = p.order.iter().map(|n| n.resolution_ms).collect();
    assert_eq!(order, vec![M, 0, 10_000, H]);
    let headers: Vec<(String, String)> = p
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("x-strata-resolution".into(), "1m".into()),
            (
                "x-strata-namespaces".into(),
                "1m:40d<7,raw,10s:2d,1h:5y".into()
            )
        ]
    );
    // Raw chosen: aggregated namespaces follow for series only they hold.
    let p = choose(raw.clone(), aggs.clone(), now - D, now, &Requested::Auto).expect("plan");
    assert!(!p.stitch_raw);
    assert_eq!(p.order.len(), 4);
    // Raw kept forever always covers.
    let p = choose(Namespace::raw(None), aggs.clone(), 0, now, &Requested::Auto).expect("plan");
    assert_eq!(p.resolution_ms(), 0);
}

#[test]
fn a_forced_namespace_is_read_alone_and_must_exist() {
    let now = 100 * D;
    let raw = Namespace::raw(Some(7 * D));
    let aggs = vec![agg(M, 40 * D, 7)];
    let p = choose(
        raw.clone(),
        aggs.clone(),
        now - 30 * D,
        now,
        &Requested::Raw,
    )
    .expect("plan");
    assert_eq!(p.order, vec![raw.clone()]);
    let p = choose(
        raw.clone(),
        aggs.clone(),
        now,
        now,
        &Requested::Resolution(M),
    )
    .expect("plan");
    assert_eq!(
        (p.order.len(), p.resolution_ms(), p.stitch_raw),
        (1, M, false)
    );
    let e = choose(raw.clone(), aggs, now, now, &Requested::Resolution(5 * M)).unwrap_err();
    assert!(e.contains("resolution 5m") && e.contains("1m:40d"), "{e}");
    let e = choose(raw, Vec::new(), now, now, &Requested::Resolution(M)).unwrap_err();
    assert!(e.contains("policies: none"), "{e}");
}

#[test]
fn requests_name_a_resolution_by_parameter_header_or_m3_headers() {
    let h = |pairs: &[(&'static str, &'static str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    };
    let none = HeaderMap::new();
    assert_eq!(Requested::from_request(None, &none), Ok(Requested::Auto));
    assert_eq!(
        Requested::from_request(Some("raw"), &none),
        Ok(Requested::Raw)
    );
    assert_eq!(
        Requested::from_request(Some("1m:40d"), &none),
        Ok(Requested::Resolution(M))
    );
    assert_eq!(
        Requested::from_request(None, &h(&[("x-strata-resolution", "1h")])),
        Ok(Requested::Resolution(H))
    );
    // The parameter wins over headers.
    assert_eq!(
        Requested::from_request(Some("auto"), &h(&[("x-strata-resolution", "1h")])),
        Ok(Requested::Auto)
    );
    assert_eq!(
        Requested::from_request(None, &h(&[("m3-metrics-type", "unaggregated")])),
        Ok(Requested::Raw)
    );
    assert_eq!(
        Requested::from_request(
            None,
            &h(&[
                ("m3-metrics-type", "aggregated"),
                ("m3-storage-policy", "1m:40d")
            ])
        ),
        Ok(Requested::Resolution(M))
    );
    let e = Requested::from_request(Some("fast"), &none).unwrap_err();
    assert!(e.contains("\"resolution\""), "{e}");
    let e = Requested::from_request(None, &h(&[("m3-metrics-type", "aggregated")])).unwrap_err();
    assert!(e.contains("M3-Storage-Policy"), "{e}");
    let e = Requested::from_request(None, &h(&[("m3-metrics-type", "both")])).unwrap_err();
    assert!(e.contains("M3-Metrics-Type"), "{e}");
}

// ---------------------------------------------------------------------------
// Stitched reads over a real aggregation.

/// An aligned 2 h window start.
const T0: i64 = 1_699_999_200_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).expect("labels")
}

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

/// 5 h of 10 s samples of `temp` (downsampled, with `temp:max`), `up` (no
/// rule) for two instances.
fn raw_data() -> Vec<Series> {
    let mut out = Vec::new();
    for (i, inst) in ["a", "b"].iter().enumerate() {
        let samples = |f: &dyn Fn(i64) -> f64| -> Vec<Sample> {
            (0..5 * 360)
                .map(|k| Sample::new(T0 + k * 10_000 + 1000, f(k)))
                .collect()
        };
        out.push(Series {
            labels: labels(&[("__name__", "temp"), ("instance", inst)]),
            samples: samples(&|k| ((k * 7 + i as i64 * 3) % 23) as f64),
        });
        out.push(Series {
            labels: labels(&[("__name__", "up"), ("instance", inst)]),
            samples: samples(&|_| 1.0),
        });
    }
    out
}

const RULES: &str = r#"
[[mapping_rules]]
name = "temp"
filter = { __name__ = "temp" }
aggregations = ["last", "max"]
storage_policies = ["1m:40d"]
"#;

async fn setup() -> (Storage, Arc<PolledRules>, i64) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules: Arc<dyn RuleStore> = Arc::new(ObjectRuleStore::new(store.clone()));
    rules
        .commit(
            &tenant(),
            0,
            RuleSetSpec::parse(RULES, false).expect("rules"),
            0,
        )
        .await
        .expect("commit");
    let storage = Storage::new(store.clone());
    storage
        .write_segment(&tenant(), &raw_data())
        .await
        .expect("write");
    // Windows of 2 h: [T0, T0+2h) and [T0+2h, T0+4h) are closed; the last
    // hour is not aggregated yet.
    let now = T0 + 4 * H + 11 * M;
    let job = Aggregator::new(store, rules.clone(), AggregateConfig::default());
    let stats = job.run_pass_at(now).await.expect("aggregate");
    assert_eq!(stats.windows, 2);
    (
        storage,
        PolledRules::new(rules, Duration::from_secs(5)),
        now,
    )
}

async fn query(
    resolver: &Resolver,
    storage: &Storage,
    requested: &Requested,
    lo: i64,
    now: i64,
    m: &[Matcher],
) -> (i64, Vec<Series>) {
    let r = resolve(Some(resolver), storage, &tenant(), requested, lo, now)
        .await
        .expect("resolve");
    let got = r.queryable.select(m, T0, T0 + 5 * H).await.expect("select");
    (r.resolution_ms, got)
}

#[tokio::test]
async fn stitches_aggregated_and_raw_data_without_overlap() {
    let (storage, rules, now) = setup().await;
    let resolver = Resolver {
        raw_retention: RawRetention {
            default_ms: Some(H),
            tenants: HashMap::new(),
        },
        rules,
    };
    let temp = [Matcher::eq("__name__", "temp")];
    // The range starts 4 h back, raw keeps 1 h: the 1m namespace is chosen.
    let (res, stitched) = query(&resolver, &storage, &Requested::Auto, T0, now, &temp).await;
    assert_eq!(res, M);
    let (_, agg) = query(
        &resolver,
        &storage,
        &Requested::Resolution(M),
        T0,
        now,
        &temp,
    )
    .await;
    let (_, raw) = query(&resolver, &storage, &Requested::Raw, T0, now, &temp).await;
    assert_eq!(stitched.len(), 2);
    let seam = T0 + 4 * H;
    for ((s, a), r) in stitched.iter().zip(&agg).zip(&raw) {
        assert_eq!(s.labels, a.labels);
        // Before the seam: exactly the aggregated samples (one per minute);
        // from it on: exactly the raw ones.
        let (before, after): (Vec<Sample>, Vec<Sample>) =
            s.samples.iter().partition(|x| x.t < seam);
        assert_eq!(before, a.samples);
        assert_eq!(before.len(), 4 * 60);
        let raw_after: Vec<Sample> = r.samples.iter().copied().filter(|x| x.t >= seam).collect();
        assert_eq!(after, raw_after);
        assert_eq!(after.len(), 360);
        assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
    }
    // A series no rule downsamples is read from raw over the whole range.
    let up = [Matcher::eq("__name__", "up")];
    let (_, got) = query(&resolver, &storage, &Requested::Auto, T0, now, &up).await;
    let (_, raw_up) = query(&resolver, &storage, &Requested::Raw, T0, now, &up).await;
    assert_eq!(got, raw_up);
    assert_eq!(got[0].samples.len(), 5 * 360);
}

#[tokio::test]
async fn series_only_aggregated_are_found_when_raw_is_chosen() {
    let (storage, rules, now) = setup().await;
    let resolver = Resolver {
        raw_retention: RawRetention::default(),
        rules,
    };
    let max = [Matcher::eq("__name__", "temp:max")];
    let (res, got) = query(&resolver, &storage, &Requested::Auto, T0, now, &max).await;
    assert_eq!(res, 0);
    assert_eq!(got.len(), 2);
    // One sample per minute of the aggregated windows, each the minute's max
    // of the raw samples.
    let temp = [Matcher::eq("__name__", "temp")];
    let (_, raw) = query(&resolver, &storage, &Requested::Raw, T0, now, &temp).await;
    for (g, r) in got.iter().zip(&raw) {
        assert_eq!(g.samples.len(), 4 * 60);
        for x in &g.samples {
            let minute = x.t.div_euclid(M) * M;
            let want = r
                .samples
                .iter()
                .filter(|y| y.t.div_euclid(M) * M == minute)
                .map(|y| y.v)
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(x.v, want, "at {}", x.t);
        }
    }
    // With raw chosen the raw series themselves still come from raw.
    let (_, got) = query(&resolver, &storage, &Requested::Auto, T0, now, &temp).await;
    assert_eq!(got, raw);
}

#[tokio::test]
async fn without_policies_a_forced_resolution_is_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rules: Arc<dyn RuleStore> = Arc::new(ObjectRuleStore::new(store.clone()));
    let resolver = Resolver {
        raw_retention: RawRetention::default(),
        rules: PolledRules::new(rules, Duration::from_secs(5)),
    };
    let storage = Storage::new(store);
    let r = resolve(Some(&resolver), &storage, &tenant(), &Requested::Auto, 0, 1)
        .await
        .expect("auto");
    assert_eq!(r.resolution_ms, 0);
    let e = resolve(
        Some(&resolver),
        &storage,
        &tenant(),
        &Requested::Resolution(M),
        0,
        1,
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(e, ResolveError::Invalid(_)), "{e}");
}

/// Keys under `prefix`.
async fn keys_under(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<object_store::path::Path> {
    use futures::TryStreamExt;
    store
        .list(Some(&object_store::path::Path::from(prefix)))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .expect("list")
}

#[tokio::test]
async fn corrupt_objects_are_read_around_with_a_warning() {
    use object_store::ObjectStoreExt;
    let (storage, rules, now) = setup().await;
    let store = storage.object_store().clone();
    // A segment that is not one, next to the real one.
    let segments = keys_under(&store, "tenants/t/segments").await;
    let real = storage::paths::parse_segment(&segments[0]).expect("segment id");
    let bad_segment = storage::paths::segment(&tenant(), real.increment().expect("next id"));
    store
        .put(&bad_segment, b"not a segment".to_vec().into())
        .await
        .expect("put");
    // The first window's 1m block overwritten with garbage.
    let bad_block = keys_under(&store, "tenants/t/blocks/1m")
        .await
        .into_iter()
        .find(|k| storage::paths::parse_block(k).is_some_and(|id| id.timestamp_ms() as i64 == T0))
        .expect("the first window's block");
    store
        .put(&bad_block, b"not a block".to_vec().into())
        .await
        .expect("put");

    let fresh = Storage::new(store.clone());
    let resolver = Resolver {
        raw_retention: RawRetention {
            default_ms: Some(H),
            tenants: HashMap::new(),
        },
        rules,
    };
    let r = resolve(
        Some(&resolver),
        &fresh,
        &tenant(),
        &Requested::Auto,
        T0,
        now,
    )
    .await
    .expect("a corrupt object does not fail the query");
    assert_eq!(r.resolution_ms, M);
    let temp = [Matcher::eq("__name__", "temp")];
    let got = r
        .queryable
        .select(&temp, T0, T0 + 5 * H)
        .await
        .expect("select");
    assert_eq!(got.len(), 2);
    for s in &got {
        let count = |lo: i64, hi: i64| s.samples.iter().filter(|x| lo <= x.t && x.t < hi).count();
        // The corrupt window is missing, the other aggregated window and
        // the raw hour after the seam are there.
        assert_eq!(count(T0, T0 + 2 * H), 0);
        assert_eq!(count(T0 + 2 * H, T0 + 4 * H), 2 * 60);
        assert_eq!(count(T0 + 4 * H, T0 + 5 * H), 360);
    }
    let warnings = r.warnings.take();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for key in [bad_segment.as_ref(), bad_block.as_ref()] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(key) && w.contains("skipped corrupt object")),
            "{key} not in {warnings:?}"
        );
    }
}

#[tokio::test]
async fn a_fresh_query_view_is_reused_by_the_resolution_path() {
    let (storage, rules, now) = setup().await;
    let requests = storage::instrumented_store::StoreMetrics::unregistered();
    let counted: Arc<dyn ObjectStore> =
        Arc::new(storage::instrumented_store::InstrumentedStore::new(
            storage.object_store().clone(),
            requests.clone(),
        ));
    let querier = Storage::new(counted).with_view_max_age(Duration::from_secs(3600));
    let resolver = Resolver {
        raw_retention: RawRetention {
            default_ms: Some(H),
            tenants: HashMap::new(),
        },
        rules,
    };
    let temp = [Matcher::eq("__name__", "temp")];
    let first = query(&resolver, &querier, &Requested::Auto, T0, now, &temp).await;
    assert!(requests.total() > 0, "the first query reads the store");
    let before = requests.total();
    // The second query's namespaces come from the same view: no manifest
    // read, no listing, no footer read.
    let r = resolve(
        Some(&resolver),
        &querier,
        &tenant(),
        &Requested::Auto,
        T0,
        now,
    )
    .await
    .expect("resolve");
    assert_eq!(requests.total(), before, "resolving sent requests");
    let got = r
        .queryable
        .select(&temp, T0, T0 + 5 * H)
        .await
        .expect("select");
    assert_eq!((r.resolution_ms, got), first);
}
