use super::*;
use crate::histogram::{BucketSpan, Count, Histogram, ZeroCount};
use crate::matcher::Matcher;
use crate::storage::Storage;
use crate::tenant::TenantId;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn histogram(t: i64, count: u64) -> Histogram {
    Histogram {
        count: Some(Count::Int(count)),
        sum: 1.5,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: Some(ZeroCount::Int(0)),
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 1,
        }],
        positive_deltas: vec![count as i64],
        timestamp: t,
        ..Default::default()
    }
}

fn sample_sidecar() -> Sidecar {
    Sidecar {
        histograms: vec![HistogramSeries {
            labels: labels(&[("__name__", "rpc_seconds"), ("job", "api")]),
            histograms: vec![histogram(1_000, 2), histogram(2_000, 3)],
        }],
        exemplars: vec![ExemplarSeries {
            labels: labels(&[("__name__", "requests_total"), ("job", "api")]),
            exemplars: vec![Exemplar {
                labels: labels(&[("trace_id", "abc")]),
                value: 1.0,
                timestamp: 1_500,
            }],
        }],
        metadata: vec![MetricMetadata {
            metric_family_name: "requests_total".into(),
            metric_type: MetricType::Counter,
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    }
}

#[test]
fn encode_decode_round_trip() {
    let s = sample_sidecar();
    let bytes = encode(&s, 99).unwrap();
    let (header, back) = decode("k", &bytes).unwrap();
    assert_eq!(back, s);
    assert_eq!((header.min_time, header.max_time), (1_000, 2_000));
    // Metadata alone announces the write time.
    let only_meta = Sidecar {
        metadata: s.metadata.clone(),
        ..Default::default()
    };
    let (header, _) = decode("k", &encode(&only_meta, 99).unwrap()).unwrap();
    assert_eq!((header.min_time, header.max_time), (99, 99));
}

#[test]
fn every_flipped_bit_is_a_corrupt_error() {
    let bytes = encode(&sample_sidecar(), 0).unwrap().to_vec();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            match decode("tenants/t/sidecars/x.sidecar", &b) {
                Err(StorageError::Corrupt { key, .. }) => assert!(key.contains("x.sidecar")),
                Err(e) => panic!("byte {i}: unexpected error {e}"),
                // A flip in the time range that still covers every
                // timestamp (or in the min/max order) is only caught when
                // inconsistent; anything else must fail.
                Ok((h, s)) => {
                    assert!((12..28).contains(&i), "byte {i} flip went unnoticed");
                    let (lo, hi) = s.time_range().unwrap();
                    assert!(h.min_time <= lo && h.max_time >= hi);
                }
            }
        }
    }
    assert!(decode("k", &bytes[..bytes.len() - 1]).is_err());
    assert!(decode("k", &bytes[..10]).is_err());
}

#[tokio::test]
async fn storage_dedupes_histograms_exemplars_and_metadata_across_sidecars() {
    let storage = Storage::in_memory();
    let tenant = TenantId::new("t1").unwrap();
    let first = sample_sidecar();
    storage.write_sidecar(&tenant, &first).await.unwrap();
    // A retry of the same data, and a newer value for t=2000.
    storage.write_sidecar(&tenant, &first).await.unwrap();
    let mut newer = sample_sidecar();
    newer.histograms[0].histograms = vec![histogram(2_000, 7)];
    storage.write_sidecar(&tenant, &newer).await.unwrap();

    let all = storage
        .select_histograms(
            &tenant,
            &[Matcher::eq("__name__", "rpc_seconds")],
            0,
            10_000,
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let counts: Vec<_> = all[0]
        .histograms
        .iter()
        .map(|h| (h.timestamp, h.count))
        .collect();
    assert_eq!(
        counts,
        vec![(1_000, Some(Count::Int(2))), (2_000, Some(Count::Int(7)))]
    );
    // Range and matcher filters.
    let late = storage
        .select_histograms(&tenant, &[], 1_500, 10_000)
        .await
        .unwrap();
    assert_eq!(late[0].histograms.len(), 1);
    let none = storage
        .select_histograms(&tenant, &[Matcher::eq("job", "other")], 0, 10_000)
        .await
        .unwrap();
    assert!(none.is_empty());

    let ex = storage
        .select_exemplars(&tenant, &[], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].exemplars.len(), 1, "identical exemplars kept once");

    let meta = storage.metadata(&tenant).await.unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta["requests_total"].len(), 1);
    assert_eq!(meta["requests_total"][0].metric_type.as_str(), "counter");

    let other = TenantId::new("t2").unwrap();
    assert!(storage.metadata(&other).await.unwrap().is_empty());
}

#[tokio::test]
async fn compaction_merges_sidecars_by_write_window_without_changing_answers() {
    use object_store::ObjectStoreExt;
    use ulid::Ulid;
    let storage = Storage::in_memory();
    let tenant = TenantId::new("t1").unwrap();
    const HOUR: i64 = 3_600_000;
    let day = 24 * HOUR;
    let rpc = labels(&[("__name__", "rpc_seconds"), ("job", "api")]);
    // Written (ULID time) in two hours of one day and in the next day.
    let writes: Vec<(i64, Sidecar)> = vec![
        (day + 10, sample_sidecar()),
        (day + 20, sample_sidecar()),
        (
            day + 30,
            Sidecar {
                histograms: vec![HistogramSeries {
                    labels: rpc.clone(),
                    histograms: vec![histogram(3_000, 4)],
                }],
                ..Default::default()
            },
        ),
        (
            day + HOUR + 5,
            Sidecar {
                // Newer value for t=2000: must win after merging too.
                histograms: vec![HistogramSeries {
                    labels: rpc.clone(),
                    histograms: vec![histogram(2_000, 9)],
                }],
                ..Default::default()
            },
        ),
        (day + HOUR + 6, sample_sidecar()),
        (2 * day + 1, sample_sidecar()),
    ];
    // (`sample_sidecar` written after the t=2000 overwrite puts its value 3
    // back: write order decides, before and after merging.)
    for (i, (ms, s)) in writes.iter().enumerate() {
        let key = crate::paths::sidecar(&tenant, Ulid::from_parts(*ms as u64, i as u128));
        storage
            .object_store()
            .put(&key, encode(s, *ms).unwrap().into())
            .await
            .unwrap();
    }
    let answers = |s: Storage| {
        let tenant = tenant.clone();
        async move {
            (
                s.select_histograms(&tenant, &[], 0, 10_000).await.unwrap(),
                s.select_exemplars(&tenant, &[], 0, 10_000).await.unwrap(),
                s.metadata(&tenant).await.unwrap(),
            )
        }
    };
    let before = answers(storage.clone()).await;
    let count = |s: Storage| {
        let tenant = tenant.clone();
        async move { s.sidecars(&tenant, i64::MIN, i64::MAX).await.unwrap().len() }
    };
    assert_eq!(count(storage.clone()).await, 6);

    // Too recent to merge: nothing happens.
    let none = storage
        .compact_sidecars(&tenant, day + HOUR - 1, 0, &[HOUR, day], None)
        .await
        .unwrap();
    assert_eq!(none.merged, 0);

    let stats = storage
        .compact_sidecars(&tenant, 10 * day, 0, &[HOUR, day], None)
        .await
        .unwrap();
    // Hour 1: 3 -> 1, hour 2: 2 -> 1, then day 1: 2 -> 1; day 2 alone.
    assert_eq!((stats.merged, stats.written), (7, 3));
    assert_eq!(count(storage.clone()).await, 2);
    assert_eq!(answers(storage.clone()).await, before);
    // A second pass has nothing to do (and two compactors would write the
    // same key: the merged id is the newest input's plus one).
    let again = storage
        .compact_sidecars(&tenant, 10 * day, 0, &[HOUR, day], None)
        .await
        .unwrap();
    assert_eq!(again.merged, 0);

    // Retention is per object, as for blocks: an object whose every sample
    // is before the cutoff is deleted (day 2's, up to t=2000); the merged
    // day-1 object reaches t=3000 and stays whole until it expires.
    storage
        .compact_sidecars(&tenant, 10 * day, 0, &[HOUR, day], Some(2_500))
        .await
        .unwrap();
    assert_eq!(count(storage.clone()).await, 1);
    assert_eq!(answers(storage.clone()).await, before);
    storage
        .compact_sidecars(&tenant, 10 * day, 0, &[HOUR, day], Some(3_001))
        .await
        .unwrap();
    let (h, e, m) = answers(storage.clone()).await;
    assert!(h.is_empty() && e.is_empty() && m.is_empty());
}

fn one_histogram(job: &str, t: i64) -> Sidecar {
    Sidecar {
        histograms: vec![HistogramSeries {
            labels: labels(&[("__name__", "rpc_seconds"), ("job", job)]),
            histograms: vec![histogram(t, 1)],
        }],
        ..Default::default()
    }
}

async fn query_jobs(s: &Storage, tenant: &TenantId) -> (Vec<String>, usize) {
    let (series, skipped) = s
        .select_histograms_reporting(tenant, &[], 0, 10_000)
        .await
        .unwrap();
    let jobs = series
        .iter()
        .map(|h| h.labels.get("job").unwrap_or_default().to_string())
        .collect();
    (jobs, skipped.len())
}

#[tokio::test]
async fn query_reads_of_sidecars_use_the_view_and_see_own_writes_at_once() {
    use std::time::Duration;
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let tenant = TenantId::new("t1").unwrap();
    let reader = Storage::new(store.clone()).with_view_max_age(Duration::from_secs(3600));
    let other = Storage::new(store.clone());
    other
        .write_sidecar(&tenant, &one_histogram("a", 1_000))
        .await
        .unwrap();
    assert_eq!(query_jobs(&reader, &tenant).await, (vec!["a".into()], 0));
    // Another process's sidecar: not listed again while the view is fresh
    // (a query sends no listing per selector)...
    other
        .write_sidecar(&tenant, &one_histogram("b", 1_000))
        .await
        .unwrap();
    assert_eq!(query_jobs(&reader, &tenant).await, (vec!["a".into()], 0));
    // ...this process's own write is seen at once...
    reader
        .write_sidecar(&tenant, &one_histogram("c", 1_000))
        .await
        .unwrap();
    assert_eq!(
        query_jobs(&reader, &tenant).await,
        (vec!["a".into(), "c".into()], 0)
    );
    // ...and strict reads (and storages without a view) always list.
    let all = reader
        .select_histograms(&tenant, &[], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(query_jobs(&other, &tenant).await.0.len(), 3);
}

#[tokio::test]
async fn a_sidecar_merged_away_under_a_cached_view_is_found_after_a_relist() {
    use object_store::ObjectStoreExt;
    use std::time::Duration;
    use ulid::Ulid;
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let tenant = TenantId::new("t1").unwrap();
    const HOUR: i64 = 3_600_000;
    for (i, job) in ["a", "b"].iter().enumerate() {
        let key = crate::paths::sidecar(&tenant, Ulid::from_parts(HOUR as u64 + i as u64, 0));
        store
            .put(
                &key,
                encode(&one_histogram(job, 1_000), HOUR).unwrap().into(),
            )
            .await
            .unwrap();
    }
    let reader = Storage::new(store.clone()).with_view_max_age(Duration::from_secs(3600));
    let before = query_jobs(&reader, &tenant).await;
    assert_eq!(before, (vec!["a".into(), "b".into()], 0));
    // Another process merges both into one and deletes the inputs, which
    // the reader's cached view still names.
    let stats = Storage::new(store.clone())
        .compact_sidecars(&tenant, 10 * HOUR, 0, &[HOUR], None)
        .await
        .unwrap();
    assert_eq!((stats.merged, stats.written), (2, 1));
    assert_eq!(query_jobs(&reader, &tenant).await, before);
}

#[tokio::test]
async fn a_corrupt_sidecar_is_read_around_by_queries_and_fails_strict_reads() {
    use object_store::ObjectStoreExt;
    let storage = Storage::in_memory();
    let tenant = TenantId::new("t1").unwrap();
    storage
        .write_sidecar(&tenant, &one_histogram("a", 1_000))
        .await
        .unwrap();
    let bad = storage
        .write_sidecar(&tenant, &one_histogram("b", 2_000))
        .await
        .unwrap();
    let mut bytes = storage
        .object_store()
        .get(&bad.key)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    storage
        .object_store()
        .put(&bad.key, bytes.into())
        .await
        .unwrap();
    let (series, skipped) = storage
        .select_histograms_reporting(&tenant, &[], 0, 10_000)
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].labels.get("job"), Some("a"));
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].key, bad.key.to_string());
    let strict = storage.select_histograms(&tenant, &[], 0, 10_000).await;
    assert!(matches!(
        strict,
        Err(crate::error::StorageError::Corrupt { .. })
    ));
}
