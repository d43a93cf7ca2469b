use super::*;
use crate::matcher::MatchOp;
use crate::sample::STALE_NAN_BITS;
use object_store::PutPayload;

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs(pairs.iter().copied()).expect("labels"),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::new(s).expect("tenant")
}

fn re(name: &str, v: &str) -> Matcher {
    Matcher::new(MatchOp::Regex, name, v).expect("regex")
}

#[tokio::test]
async fn select_reads_back_what_was_written_across_segments() {
    let s = Storage::in_memory();
    let t = tenant("a");
    s.write_segment(
        &t,
        &[series(
            &[("__name__", "up"), ("job", "x")],
            &[(1000, 1.0), (2000, 2.0)],
        )],
    )
    .await
    .expect("write 1");
    s.write_segment(
        &t,
        &[
            series(&[("__name__", "up"), ("job", "x")], &[(3000, 3.0)]),
            series(
                &[("__name__", "up"), ("job", "y")],
                &[(1500, f64::from_bits(STALE_NAN_BITS))],
            ),
            series(&[("__name__", "down"), ("job", "x")], &[(1000, 9.0)]),
        ],
    )
    .await
    .expect("write 2");

    let got = s
        .select(&t, &[Matcher::eq("__name__", "up")], 0, 10_000)
        .await
        .expect("select");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].labels.get("job"), Some("x"));
    assert_eq!(
        got[0].samples,
        vec![
            Sample::new(1000, 1.0),
            Sample::new(2000, 2.0),
            Sample::new(3000, 3.0)
        ]
    );
    assert_eq!(got[1].samples.len(), 1);
    assert_eq!(
        got[1].samples[0].v.to_bits(),
        STALE_NAN_BITS,
        "stale marker kept bit for bit"
    );

    // Inclusive time range on both ends.
    let got = s
        .select(
            &t,
            &[Matcher::eq("job", "x"), re("__name__", "u.")],
            2000,
            3000,
        )
        .await
        .expect("select");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        vec![Sample::new(2000, 2.0), Sample::new(3000, 3.0)]
    );

    // A time range no segment overlaps.
    assert!(
        s.select(&t, &[re("__name__", ".+")], 5000, 6000)
            .await
            .expect("select")
            .is_empty()
    );
}

#[tokio::test]
async fn duplicates_from_retries_come_back_once_and_newest_wins() {
    let s = Storage::in_memory();
    let t = tenant("a");
    let a = series(&[("__name__", "m")], &[(1000, 1.0), (2000, 2.0)]);
    s.write_segment(&t, std::slice::from_ref(&a))
        .await
        .expect("write");
    s.write_segment(&t, std::slice::from_ref(&a))
        .await
        .expect("retry");
    s.write_segment(&t, &[series(&[("__name__", "m")], &[(2000, 5.0)])])
        .await
        .expect("overwrite");
    let got = s
        .select(&t, &[Matcher::eq("__name__", "m")], 0, 10_000)
        .await
        .expect("select");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        vec![Sample::new(1000, 1.0), Sample::new(2000, 5.0)]
    );
}

#[test]
fn segment_ids_increase_within_one_millisecond() {
    let ids: Vec<Ulid> = (0..1000).map(|_| next_segment_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn tenants_are_isolated_and_series_uses_the_index() {
    let s = Storage::in_memory();
    s.write_segment(
        &tenant("a"),
        &[series(&[("__name__", "only_a")], &[(1000, 1.0)])],
    )
    .await
    .expect("a");
    s.write_segment(
        &tenant("b"),
        &[series(
            &[("__name__", "only_b"), ("k", "v")],
            &[(1000, 1.0)],
        )],
    )
    .await
    .expect("b");
    let all = vec![vec![re("__name__", ".+")]];
    let a = s.series(&tenant("a"), &all, 0, 2000).await.expect("series");
    assert_eq!(
        a,
        vec![Labels::from_pairs([("__name__", "only_a")]).expect("labels")]
    );
    let b = s
        .select(&tenant("b"), &all[0], 0, 2000)
        .await
        .expect("select");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].labels.get("k"), Some("v"));
    assert!(
        s.series(&tenant("a"), &all, 5000, 6000)
            .await
            .expect("series")
            .is_empty()
    );
}

#[tokio::test]
async fn a_fresh_reader_reads_footers_from_the_store() {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let writer = Storage::new(store.clone());
    let t = tenant("a");
    let many: Vec<Series> = (0..3000)
        .map(|i| {
            series(
                &[("__name__", "m"), ("i", &i.to_string())],
                &[(1000, f64::from(i))],
            )
        })
        .collect();
    writer.write_segment(&t, &many).await.expect("write");
    // No shared cache: the index comes from the object's footer (larger than the prefetch).
    let reader = Storage::new(store);
    let got = reader
        .select(&t, &[Matcher::eq("i", "2999")], 0, 2000)
        .await
        .expect("select");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![Sample::new(1000, 2999.0)]);
}

#[tokio::test]
async fn a_corrupt_segment_is_an_error_not_a_panic() {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let s = Storage::new(store.clone());
    let t = tenant("a");
    let key = paths::segment(&t, Ulid::new());
    for junk in [
        &b""[..],
        b"PAR1",
        b"garbage that is not parquet at all",
        b"\xff\xff\xff\x7fPAR1",
    ] {
        store
            .put(&key, PutPayload::from(junk.to_vec()))
            .await
            .expect("put");
        let err = s
            .select(&t, &[Matcher::eq("__name__", "m")], 0, 1)
            .await
            .expect_err("corrupt");
        assert!(
            matches!(
                err,
                StorageError::Corrupt { .. } | StorageError::ObjectStore { .. }
            ),
            "{err}"
        );
    }
}
