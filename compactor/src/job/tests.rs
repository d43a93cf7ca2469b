//! Compaction against a real (in-memory) object store: answers before and
//! after compaction are identical, merges, late data, retention, races and
//! crashes at every step of a pass.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use storage::failing_store::{FailingStore, Faults};
use storage::sample::{STALE_NAN_BITS, Sample, Series};
use storage::{Labels, MatchOp, Matcher, Storage, TenantId};

use super::*;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

fn labels(name: &str, i: usize) -> Labels {
    Labels::from_pairs([("__name__", name.to_string()), ("i", i.to_string())]).expect("labels")
}

fn series(name: &str, i: usize, samples: impl IntoIterator<Item = (i64, f64)>) -> Series {
    Series {
        labels: labels(name, i),
        samples: samples
            .into_iter()
            .map(|(t, v)| Sample::new(t, v))
            .collect(),
    }
}

struct Env {
    faults: Arc<Faults>,
    store: Arc<dyn ObjectStore>,
    inner: Arc<InMemory>,
}

fn env() -> Env {
    let inner = Arc::new(InMemory::new());
    let (failing, faults) = FailingStore::new(inner.clone());
    Env {
        faults,
        store: Arc::new(failing),
        inner,
    }
}

fn config() -> CompactorConfig {
    CompactorConfig {
        grace: Duration::from_secs(600),
        // Small slices so that multi-slice builds are exercised.
        samples_per_slice: 20_000,
        ..CompactorConfig::default()
    }
}

fn compactor(store: &Arc<dyn ObjectStore>, config: CompactorConfig) -> Compactor {
    Compactor::new(store.clone(), config, CompactorMetrics::default())
}

/// Writes three days of data in many segments: 15 s samples of 20 series,
/// duplicates from "retries", a conflicting rewrite, a stale marker and a
/// late segment for day 0 written last.
async fn load(storage: &Storage) {
    let t = tenant();
    for day in 0..3i64 {
        for part in 0..4i64 {
            let batch: Vec<Series> = (0..20)
                .map(|i| {
                    let start = day * DAY + part * 6 * H;
                    series(
                        if i % 2 == 0 { "up" } else { "requests_total" },
                        i,
                        (0..(6 * H / 15_000))
                            .map(|k| (start + k * 15_000 + i as i64, (k as f64) * 0.25 + i as f64)),
                    )
                })
                .collect();
            storage.write_segment(&t, &batch).await.expect("write");
            // A retried request: the first series again, same values.
            storage.write_segment(&t, &batch[..1]).await.expect("retry");
        }
    }
    // Conflicting value for one sample: the newer write wins.
    storage
        .write_segment(&t, &[series("up", 0, [(DAY, 42.0)])])
        .await
        .expect("conflict");
    storage
        .write_segment(
            &t,
            &[series("up", 2, [(DAY + 7, f64::from_bits(STALE_NAN_BITS))])],
        )
        .await
        .expect("stale");
    // Late data for day 0, and a brand-new series there.
    storage
        .write_segment(
            &t,
            &[
                series("up", 4, [(3 * H + 1, -1.5)]),
                series("late", 0, [(5 * H, 7.0)]),
            ],
        )
        .await
        .expect("late");
}

fn queries() -> Vec<(Vec<Matcher>, i64, i64)> {
    vec![
        (vec![], 0, 3 * DAY),
        (vec![Matcher::eq("__name__", "up")], DAY - H, DAY + H),
        (
            vec![Matcher::new(MatchOp::Regex, "i", "1|2|3").expect("re")],
            2 * H + 1234,
            2 * DAY + 5 * H,
        ),
        (vec![Matcher::eq("__name__", "late")], 0, DAY),
        (vec![Matcher::eq("__name__", "nope")], 0, 3 * DAY),
    ]
}

async fn answers(storage: &Storage) -> Vec<Vec<Series>> {
    let mut out = Vec::new();
    for (m, s, e) in queries() {
        out.push(storage.select(&tenant(), &m, s, e).await.expect("select"));
    }
    out
}

async fn keys(store: &InMemory, part: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let all: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await.expect("list");
    all.into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| k.contains(part))
        .collect()
}

/// A fresh reader (another process): no caches shared with the writer.
fn reader(e: &Env) -> Storage {
    Storage::new(e.store.clone())
}

#[tokio::test]
async fn answers_are_identical_before_during_and_after_compaction() {
    let e = env();
    load(&reader(&e)).await;
    let before = answers(&reader(&e)).await;
    assert_eq!(before[0].len(), 21);
    let conflict = before[1]
        .iter()
        .find(|s| s.labels == labels("up", 0))
        .and_then(|s| s.samples.iter().find(|x| x.t == DAY))
        .expect("conflicting sample");
    assert_eq!(conflict.v, 42.0, "newest write wins");

    // Day 3, 10:00: days 0-1 are closed (24 h blocks), day 2 too (settle 1 h).
    let c = compactor(&e.store, config());
    let now = 3 * DAY + 10 * H;
    let s = c.run_pass_at(now).await.expect("pass");
    assert_eq!(s.blocks_written, 3, "{s:?}");
    assert_eq!(s.conflicts + s.lease_skips, 0);
    assert!(s.requests > 0);
    assert_eq!(answers(&reader(&e)).await, before);
    let v = reader(&e).manifest(&tenant()).await.expect("manifest");
    let spans: Vec<(i64, i64)> = v.manifest.blocks.iter().map(|b| (b.start, b.end)).collect();
    assert_eq!(spans, [(0, DAY), (DAY, 2 * DAY), (2 * DAY, 3 * DAY)]);
    assert!(
        v.manifest
            .segments
            .values()
            .all(|s| s.replaced_at.is_some())
    );

    // Nothing to do until the grace period passed; then the segments go.
    let s = c.run_pass_at(now + 1).await.expect("idle pass");
    assert!(!s.did_work(), "{s:?}");
    let segments = keys(&e.inner, "/segments/").await.len();
    assert_eq!(segments, 27);
    let s = c.run_pass_at(now + 11 * 60_000).await.expect("gc pass");
    assert_eq!(s.objects_deleted, 27);
    assert!(keys(&e.inner, "/segments/").await.is_empty());
    assert_eq!(answers(&reader(&e)).await, before);
    let v = reader(&e).manifest(&tenant()).await.expect("manifest");
    assert!(v.manifest.segments.is_empty());
}

#[tokio::test]
async fn open_windows_get_small_blocks_that_merge_when_closed_and_late_data_is_merged() {
    let e = env();
    let w = reader(&e);
    load(&w).await;
    let before = answers(&reader(&e)).await;
    let c = compactor(&e.store, config());
    // Day 2, 13:00: day 2's first 12 h window closed, the rest is open.
    let now = 2 * DAY + 13 * H;
    c.run_pass_at(now).await.expect("pass");
    assert_eq!(answers(&reader(&e)).await, before);
    let m = reader(&e)
        .manifest(&tenant())
        .await
        .expect("manifest")
        .manifest;
    let lens: Vec<i64> = m.blocks.iter().map(|b| (b.end - b.start) / H).collect();
    assert_eq!(lens, [24, 24, 12, 2, 2, 2, 2, 2, 2]);

    // A late sample for the merged day 0 and one for an open window.
    w.write_segment(
        &tenant(),
        &[
            series("up", 0, [(H, 99.0)]),
            series("up", 1, [(2 * DAY + 20 * H, 5.0)]),
        ],
    )
    .await
    .expect("late");
    let before = answers(&reader(&e)).await;
    c.run_pass_at(now + 60_000).await.expect("pass");
    assert_eq!(answers(&reader(&e)).await, before);
    // Next day: everything merges into 24 h blocks.
    c.run_pass_at(3 * DAY + 2 * H).await.expect("pass");
    assert_eq!(answers(&reader(&e)).await, before);
    let m = reader(&e)
        .manifest(&tenant())
        .await
        .expect("manifest")
        .manifest;
    let lens: Vec<i64> = m.blocks.iter().map(|b| (b.end - b.start) / H).collect();
    assert_eq!(lens, [24, 24, 24]);
    // The replaced blocks are deleted after the grace period.
    c.run_pass_at(3 * DAY + 3 * H).await.expect("pass");
    assert_eq!(keys(&e.inner, "/blocks/").await.len(), 3);
    assert_eq!(answers(&reader(&e)).await, before);
}

#[tokio::test]
async fn a_crash_before_the_manifest_commit_leaves_an_orphan_that_is_ignored_then_deleted() {
    let e = env();
    load(&reader(&e)).await;
    let before = answers(&reader(&e)).await;
    let c = compactor(&e.store, config());
    let now = 3 * DAY + 10 * H;
    e.faults.fail_puts_matching(Some("/manifest/"));
    assert!(c.run_pass_at(now).await.is_err());
    assert!(
        !keys(&e.inner, "/blocks/").await.is_empty(),
        "block written"
    );
    assert!(
        keys(&e.inner, "/manifest/").await.is_empty(),
        "never committed"
    );
    assert_eq!(answers(&reader(&e)).await, before);
    e.faults.fail_puts_matching(None);
    c.run_pass_at(now).await.expect("pass");
    assert_eq!(answers(&reader(&e)).await, before);
    assert!(
        keys(&e.inner, "/blocks/").await.len() > 3,
        "orphan still there"
    );
    // Orphans are deleted once no running compaction can commit them.
    c.run_pass_at(now + 2 * H).await.expect("pass");
    assert_eq!(keys(&e.inner, "/blocks/").await.len(), 3);
    assert_eq!(answers(&reader(&e)).await, before);
}

#[tokio::test]
async fn a_crash_between_the_commit_and_the_deletes_is_completed_by_the_next_pass() {
    let e = env();
    load(&reader(&e)).await;
    let before = answers(&reader(&e)).await;
    let c = compactor(&e.store, config());
    let now = 3 * DAY + 10 * H;
    c.run_pass_at(now).await.expect("pass");
    e.faults.fail_deletes(true);
    assert!(c.run_pass_at(now + H).await.is_err());
    assert_eq!(keys(&e.inner, "/segments/").await.len(), 27);
    assert_eq!(answers(&reader(&e)).await, before);
    e.faults.fail_deletes(false);
    c.run_pass_at(now + H).await.expect("pass");
    assert!(keys(&e.inner, "/segments/").await.is_empty());
    assert_eq!(answers(&reader(&e)).await, before);
}

#[tokio::test]
async fn concurrent_compactors_never_double_count() {
    let e = env();
    load(&reader(&e)).await;
    let before = answers(&reader(&e)).await;
    let now = 3 * DAY + 10 * H;
    let (a, b) = (compactor(&e.store, config()), compactor(&e.store, config()));
    let (ra, rb) = tokio::join!(a.run_pass_at(now), b.run_pass_at(now));
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(ra.blocks_written + rb.blocks_written, 3, "{ra:?} {rb:?}");
    assert_eq!(answers(&reader(&e)).await, before);
    // Whatever one of them abandoned is cleaned up later.
    a.run_pass_at(now + 3 * H).await.expect("pass");
    assert_eq!(keys(&e.inner, "/blocks/").await.len(), 3);
    assert_eq!(answers(&reader(&e)).await, before);
}

#[tokio::test]
async fn a_held_lease_makes_a_compactor_skip_the_partition() {
    let e = env();
    load(&reader(&e)).await;
    let now = 3 * DAY + 10 * H;
    let leases = storage::lease::ObjectStoreLeases::new(e.store.clone());
    let held = storage::lease::LeaseBackend::try_acquire(
        &leases,
        JOB,
        &tenant(),
        &DAY.to_string(),
        "other",
        3_600_000,
        now_ms(),
    )
    .await
    .expect("lease")
    .expect("free");
    let c = compactor(&e.store, config());
    let s = c.run_pass_at(now).await.expect("pass");
    assert_eq!((s.blocks_written, s.lease_skips), (2, 1));
    held.release().await.expect("release");
    let s = c.run_pass_at(now).await.expect("pass");
    assert_eq!(s.blocks_written, 1);
}

#[tokio::test]
async fn retention_drops_whole_blocks_and_segments_past_it() {
    let e = env();
    load(&reader(&e)).await;
    let mut cfg = config();
    cfg.tenant_retention
        .insert("t".into(), Duration::from_secs(2 * 24 * 3600));
    let c = compactor(&e.store, cfg);
    // Day 3, 10:00 with 2 d retention: day 0 (and day 1 before 10:00, but
    // its block is not entirely past) is out.
    let now = 3 * DAY + 10 * H;
    c.run_pass_at(now).await.expect("pass");
    let got = reader(&e)
        .select(&tenant(), &[], 0, 3 * DAY)
        .await
        .expect("select");
    assert!(got.iter().all(|s| s.samples.iter().all(|x| x.t >= DAY)));
    assert!(!got.is_empty());
    c.run_pass_at(now + H).await.expect("pass");
    let m = reader(&e)
        .manifest(&tenant())
        .await
        .expect("manifest")
        .manifest;
    assert!(m.blocks.iter().all(|b| b.start >= DAY));
    assert!(keys(&e.inner, "/segments/").await.is_empty());
}

#[test]
fn id_slices_cover_everything_once() {
    for n in [1u64, 2, 3, 7] {
        let s = id_slices(n);
        assert_eq!(s.len() as u64, n);
        assert_eq!(s[0].0, 0);
        assert_eq!(s[s.len() - 1].1, u64::MAX);
        for w in s.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "{s:?}");
        }
    }
}

#[tokio::test]
async fn raw_retention_leaves_downsampled_blocks_to_their_own_retention() {
    let e = env();
    load(&reader(&e)).await;
    let c = compactor(&e.store, config());
    let now = 3 * DAY + 10 * H;
    c.run_pass_at(now).await.expect("pass");
    // A downsampled block of day 0, as the aggregator would commit it; its
    // retention is the aggregator's business, not the raw retention's.
    let current = reader(&e).manifest(&tenant()).await.expect("manifest");
    let rolled_up = Ulid::new();
    let rolled_up_id = rolled_up.to_string();
    let day0 = current
        .manifest
        .blocks
        .iter()
        .find(|b| b.start == 0)
        .expect("a day-0 raw block")
        .id
        .clone();
    let day0 = Ulid::from_string(&day0).expect("ulid");
    e.store
        .copy(
            &paths::block(&tenant(), RAW, day0),
            &paths::block(&tenant(), "1h", rolled_up),
        )
        .await
        .expect("copy");
    manifest::update(e.store.as_ref(), &tenant(), current, |m| {
        let mut n = m.clone();
        let mut entry = n
            .blocks
            .iter()
            .find(|b| b.id == day0.to_string())
            .expect("the day-0 raw block")
            .clone();
        entry.id = rolled_up_id.clone();
        entry.resolution = "1h".into();
        n.blocks.push(entry);
        Ok(manifest::Change::Commit(n, ()))
    })
    .await
    .expect("commit");

    let mut cfg = config();
    cfg.tenant_retention
        .insert("t".into(), Duration::from_secs(2 * 24 * 3600));
    let c = compactor(&e.store, cfg);
    c.run_pass_at(now + H).await.expect("pass");
    let m = reader(&e)
        .manifest(&tenant())
        .await
        .expect("manifest")
        .manifest;
    assert!(
        m.blocks
            .iter()
            .filter(|b| b.resolution == RAW)
            .all(|b| b.start >= DAY),
        "raw day 0 is past retention"
    );
    assert!(
        m.blocks.iter().any(|b| b.id == rolled_up_id),
        "the 1h block stays: {:?}",
        m.blocks
    );
}
