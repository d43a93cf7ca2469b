//! The direct read path against the DataFusion scan (`read_scan`), and its
//! caches.

use super::*;
use crate::block::{BlockOptions, BlockWriter};
use crate::manifest::SegmentEntry;
use crate::matcher::MatchOp;
use crate::paths;
use crate::sample::STALE_NAN_BITS;
use crate::segment::SegmentIndex;
use crate::tenant::TenantId;
use object_store::{ObjectMeta, PutPayload};

const HOUR: i64 = 3_600_000;

fn series(pairs: &[(&str, &str)], samples: impl IntoIterator<Item = (i64, f64)>) -> Series {
    Series {
        labels: Labels::from_pairs(pairs.iter().copied()).expect("labels"),
        samples: samples
            .into_iter()
            .map(|(t, v)| Sample::new(t, v))
            .collect(),
    }
}

fn tenant() -> TenantId {
    TenantId::new("t").expect("tenant")
}

/// A value whose bits differ by series, time and object, with NaN payloads,
/// -0.0 and stale markers mixed in, so a sample read from the wrong place
/// shows.
fn value(series: usize, t: i64, object: u64) -> f64 {
    match (t / 1000) % 97 {
        0 => f64::from_bits(STALE_NAN_BITS),
        1 => -0.0,
        2 => f64::from_bits(0x7ff8_0000_0000_0000 | object),
        _ => series as f64 * 1000.0 + (t / 1000) as f64 * 0.25 + object as f64 * 1e-6,
    }
}

fn data(n: usize, from: i64, to: i64, step: i64, object: u64) -> Vec<Series> {
    (0..n)
        .map(|i| {
            let job = if i % 3 == 0 { "api" } else { "node" };
            let inst = format!("i{}", i % 5);
            let name = if i % 2 == 0 { "up" } else { "requests_total" };
            series(
                &[
                    ("__name__", name),
                    ("i", &i.to_string()),
                    ("instance", &inst),
                    ("job", job),
                ],
                (from..to)
                    .step_by(step as usize)
                    .map(|t| (t, value(i, t, object))),
            )
        })
        .collect()
}

async fn put_block(s: &Storage, series: &[Series], start: i64, end: i64) -> Source {
    let mut w = BlockWriter::new(BlockOptions {
        partition_start: start,
        partition_end: end,
        resolution: "raw".into(),
        chunk_range_ms: HOUR,
        zstd_level: 1,
    })
    .expect("writer");
    w.write(series).expect("write");
    let (bytes, index) = w.finish().expect("finish");
    let key = paths::block(&tenant(), "raw", super::super::next_segment_id());
    let size = bytes.len() as u64;
    s.put_block(&key, bytes, index).await.expect("put");
    Source {
        kind: SourceKind::Block,
        index: own_index(s, &key),
        meta: ObjectMeta {
            location: key,
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        },
        done: None,
    }
}

/// The index the storage cached for `key` (the one reads normally get).
fn own_index(s: &Storage, key: &Path) -> Arc<SegmentIndex> {
    s.index_cache
        .lock()
        .expect("lock")
        .get(key)
        .cloned()
        .expect("index cached by the write")
}

async fn put_segment(s: &Storage, series: &[Series], done: Option<SegmentEntry>) -> Source {
    let w = s.write_segment(&tenant(), series).await.expect("segment");
    Source {
        kind: SourceKind::Segment,
        index: own_index(s, &w.key),
        meta: ObjectMeta {
            location: w.key,
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: w.bytes as u64,
            e_tag: None,
            version: None,
        },
        done,
    }
}

/// Two overlapping blocks (the later one rewrites some values), segments
/// with duplicates of each other and of the blocks, one with a done range.
async fn sources(s: &Storage) -> Vec<Source> {
    let mut out = vec![
        put_block(s, &data(40, 1, 4 * HOUR, 15_000, 1), 0, 4 * HOUR).await,
        // Overlaps the first: every 4th sample again, other values.
        put_block(s, &data(20, 7, 3 * HOUR, 60_000, 2), 0, 4 * HOUR).await,
    ];
    out.push(put_segment(s, &data(30, 3 * HOUR, 5 * HOUR, 10_000, 3), None).await);
    let done = SegmentEntry {
        done: vec![[0, 4 * HOUR]],
        replaced_at: None,
    };
    out.push(put_segment(s, &data(45, 3 * HOUR + 5, 5 * HOUR, 20_000, 4), Some(done)).await);
    // A retried write: the same samples as the segment before, new values.
    out.push(put_segment(s, &data(10, 4 * HOUR + 5, 5 * HOUR, 20_000, 5), None).await);
    out
}

fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
    Matcher::new(op, n, v).expect("matcher")
}

fn bits(series: &[Series]) -> Vec<(String, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_direct_path_answers_as_the_scan_bit_for_bit() {
    // No decoded cache (chunks decoded while gathering), room for every
    // read (decoded in the object tasks and kept), and room for small reads
    // only (large reads mix kept chunks with ones decoded while gathering).
    for decoded in [0, 64 << 20, 8 << 10] {
        let s = Storage::in_memory().with_read_cache(ReadCache::new(1 << 20, decoded));
        let srcs = sources(&s).await;
        let selectors: Vec<Vec<Matcher>> = vec![
            vec![],
            vec![m(MatchOp::Equal, "__name__", "up")],
            vec![
                m(MatchOp::Equal, "job", "api"),
                m(MatchOp::Regex, "instance", "i[13]"),
            ],
            vec![m(MatchOp::NotEqual, "job", "api")],
            vec![m(MatchOp::Equal, "job", "nope")],
        ];
        let ranges = [
            (i64::MIN, i64::MAX),
            (0, HOUR),
            (HOUR + 1, 2 * HOUR - 1),
            (3 * HOUR - 30_000, 4 * HOUR + 30_000),
            (4 * HOUR, 4 * HOUR),
            // Both ends on samples of the first block (inclusive).
            (1 + 15_000 * 10, 1 + 15_000 * 300),
            (1 + 15_000 * 10, 1 + 15_000 * 10),
            (6 * HOUR, 7 * HOUR),
        ];
        // Twice: the second pass is answered from the caches.
        for pass in 0..2 {
            for ms in &selectors {
                for &(a, b) in &ranges {
                    for ids in [None, Some((0, u64::MAX / 2))] {
                        let want = s.read_scan(&srcs, ms, a, b, ids).await.expect("scan");
                        let got = s.read(&srcs, ms, a, b, ids).await.expect("direct");
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "pass {pass}, decoded {decoded}, {ms:?} [{a}, {b}] {ids:?}"
                        );
                    }
                }
            }
        }
        let all = s
            .read(&srcs, &[], i64::MIN, i64::MAX, None)
            .await
            .expect("read");
        assert_eq!(all.len(), 45, "every series of every source");
        let with_postings = s.postings.lock().expect("lock").len();
        assert_eq!(with_postings, srcs.len(), "postings of every object");
        // Sources whose index a caller narrowed to some series (as the
        // stitched read of resolutions does): positions differ from the
        // object's own index, which the postings were built from.
        let narrowed: Vec<Source> = srcs
            .iter()
            .map(|src| {
                let mut index = (*src.index).clone();
                index.series = index.series.into_iter().skip(1).step_by(2).collect();
                Source {
                    index: Arc::new(index),
                    ..src.clone()
                }
            })
            .collect();
        for ms in &selectors {
            let want = s
                .read_scan(&narrowed, ms, i64::MIN, i64::MAX, None)
                .await
                .expect("scan");
            let got = s
                .read(&narrowed, ms, i64::MIN, i64::MAX, None)
                .await
                .expect("direct");
            assert_eq!(bits(&got), bits(&want), "narrowed, {ms:?}");
        }
        let after = s.postings.lock().expect("lock").len();
        assert_eq!(after, with_postings, "no postings for narrowed indexes");
        assert!(
            s.read(&narrowed, &[], i64::MIN, i64::MAX, None)
                .await
                .expect("read")
                .len()
                < all.len()
        );
        let (dirs, samples) = s.read_cache.usage();
        assert!(dirs > 0, "block directories are cached");
        assert_eq!(
            samples > 0,
            decoded > 0,
            "decoded samples kept only with room"
        );
    }
}

#[tokio::test]
async fn a_corrupt_chunk_is_reported_naming_its_block_and_the_rest_is_read() {
    let s = Storage::in_memory().with_read_cache(ReadCache::new(1 << 20, 1 << 20));
    let mut srcs = sources(&s).await;
    // Rewrite the first block with one flipped bit inside a chunk. The
    // chunk column is stored with zstd, so flip the chunk bytes before
    // encoding: write a block whose checksum column disagrees.
    let good = put_block(&s, &data(5, 1, HOUR, 15_000, 9), 0, 4 * HOUR).await;
    let bytes = s
        .object_store()
        .get(&good.meta.location)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    // Find a byte whose flip keeps the footer readable but breaks the data:
    // anything between the magic and the footer.
    let n = bytes.len();
    let footer = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4")) as usize;
    let mut bad = bytes.to_vec();
    for b in &mut bad[4..n - 8 - footer] {
        *b = 0;
    }
    let bad_key = paths::block(&tenant(), "raw", super::super::next_segment_id());
    s.object_store()
        .put(&bad_key, PutPayload::from(bad))
        .await
        .expect("put");
    let mut bad_src = good.clone();
    bad_src.meta.location = bad_key.clone();
    srcs.push(bad_src);
    let err = s
        .read(&srcs, &[], i64::MIN, i64::MAX, None)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(&err, StorageError::Corrupt { key, .. } if key == bad_key.as_ref()),
        "{err}"
    );
    let (got, skipped) = s
        .read_reporting(&srcs, &[], i64::MIN, i64::MAX, None)
        .await
        .expect("read around");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].key, bad_key.to_string());
    srcs.pop();
    let want = s
        .read_scan(&srcs, &[], i64::MIN, i64::MAX, None)
        .await
        .expect("scan");
    assert_eq!(bits(&got), bits(&want));
}

#[tokio::test]
async fn block_directories_find_the_chunk_rows_of_a_series_and_range() {
    let s = Storage::in_memory();
    let src = put_block(&s, &data(7, 1, 4 * HOUR, 15_000, 1), 0, 4 * HOUR).await;
    let b = BlockChunks::load(s.object_store().clone(), &src.meta.location, src.meta.size)
        .await
        .expect("load");
    // One chunk per series and hour.
    assert_eq!(b.len(), 7 * 4);
    let id = src.index.series[2].id;
    let all: Vec<usize> = b.rows(id, i64::MIN, i64::MAX).collect();
    assert_eq!(all, vec![8, 9, 10, 11]);
    let second_hour: Vec<usize> = b.rows(id, HOUR, 2 * HOUR - 1).collect();
    assert_eq!(second_hour, vec![9]);
    assert_eq!(b.rows(12345, i64::MIN, i64::MAX).count(), 0);
    let chunks = b
        .fetch(s.object_store().clone(), &[9, 11])
        .await
        .expect("fetch");
    assert_eq!(chunks.len(), 2);
    assert!(chunks[0].iter().all(|x| (HOUR..2 * HOUR).contains(&x.t)));
    assert!(
        chunks[1]
            .iter()
            .all(|x| (3 * HOUR..4 * HOUR).contains(&x.t))
    );
    assert_eq!(chunks[0].len(), 240);
    // Rows out of order or past the end are refused, not read.
    assert!(b.fetch(s.object_store().clone(), &[11, 9]).await.is_err());
    assert!(b.fetch(s.object_store().clone(), &[28]).await.is_err());
}

/// Counts the round trips of reads: every read request waits until the
/// test releases the wave it arrived in; requests that arrive together
/// (issued concurrently) share a wave. Writes pass straight through.
mod round_trips {
    use std::fmt;
    use std::ops::Range;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;
    use futures::stream::{self, BoxStream};
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::manifest::{self, BlockEntry, FORMAT_VERSION, Manifest};

    #[derive(Debug)]
    struct WaveStore {
        inner: Arc<dyn ObjectStore>,
        /// Requests waiting in the current wave (op and path).
        pending: Mutex<Vec<String>>,
        released: watch::Sender<usize>,
    }

    impl WaveStore {
        fn new() -> Self {
            Self {
                inner: Arc::new(InMemory::new()),
                pending: Mutex::default(),
                released: watch::channel(0).0,
            }
        }

        async fn wait(&self, what: String) {
            let mut rx = self.released.subscribe();
            let wave = *rx.borrow();
            self.pending.lock().expect("lock").push(what);
            let _ = rx.wait_for(|&w| w > wave).await;
        }

        /// Releases the waiting requests; returns them.
        fn release(&self) -> Vec<String> {
            let wave = std::mem::take(&mut *self.pending.lock().expect("lock"));
            self.released.send_modify(|w| *w += 1);
            wave
        }
    }

    impl fmt::Display for WaveStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "WaveStore")
        }
    }

    /// Where a path points, for messages: its last component's kind.
    fn kind(p: &Path) -> &'static str {
        let s = p.as_ref();
        if s.contains("manifest") {
            "manifest"
        } else if s.contains("/blocks/") {
            "block"
        } else if s.contains("/segments") {
            "segment"
        } else {
            "other"
        }
    }

    #[async_trait]
    impl ObjectStore for WaveStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.wait(format!("get {}", kind(location))).await;
            self.inner.get_opts(location, options).await
        }

        async fn get_ranges(
            &self,
            location: &Path,
            ranges: &[Range<u64>],
        ) -> object_store::Result<Vec<Bytes>> {
            self.wait(format!("get_ranges {}", kind(location))).await;
            self.inner.get_ranges(location, ranges).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            let what = format!("list {}", prefix.map_or("other", kind));
            let inner = self.inner.list(prefix);
            let mut rx = self.released.subscribe();
            let wave = *rx.borrow();
            self.pending.lock().expect("lock").push(what);
            stream::once(async move {
                let _ = rx.wait_for(|&w| w > wave).await;
                inner
            })
            .flatten()
            .boxed()
        }

        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.wait(format!(
                "list_with_delimiter {}",
                prefix.map_or("other", kind)
            ))
            .await;
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A cold select of a tenant with a block and a segment takes four
    /// round trips: the manifest listing with the segment listing, the
    /// manifest, every footer with the block's directory, then the chunks
    /// with the segment. (It took eight when each step waited for the one
    /// before.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_cold_select_takes_four_round_trips() {
        let gate = Arc::new(WaveStore::new());
        let writer = Storage::new(gate.inner.clone());
        let block = put_block(&writer, &data(12, 1, 2 * HOUR, 15_000, 1), 0, 2 * HOUR).await;
        put_segment(&writer, &data(12, 2 * HOUR, 3 * HOUR, 15_000, 2), None).await;
        let id = block
            .meta
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".parquet"))
            .expect("block file name")
            .to_string();
        let entry = BlockEntry {
            id,
            resolution: "raw".into(),
            start: 0,
            end: 2 * HOUR,
            min_time: 1,
            max_time: 2 * HOUR,
            samples: 12 * 480,
            series: 12,
            bytes: block.meta.size,
        };
        let committed = manifest::try_commit(
            gate.inner.as_ref(),
            &tenant(),
            0,
            &Manifest {
                format_version: FORMAT_VERSION,
                blocks: vec![entry],
                ..Manifest::default()
            },
        )
        .await
        .expect("commit");
        assert!(committed);

        let reader = Storage::new(gate.clone() as Arc<dyn ObjectStore>);
        let matchers = [m(MatchOp::Equal, "job", "api")];
        let read = tokio::spawn(async move {
            reader
                .select_reporting(&tenant(), &matchers, 0, 3 * HOUR)
                .await
        });
        let mut waves: Vec<Vec<String>> = Vec::new();
        while !read.is_finished() {
            // Lets every task run until it waits for the store (one thread).
            for _ in 0..10_000 {
                tokio::task::yield_now().await;
            }
            if read.is_finished() {
                break;
            }
            let wave = gate.release();
            assert!(!wave.is_empty(), "the read waits for nothing: {waves:?}");
            waves.push(wave);
        }
        let (series, skipped) = read.await.expect("task").expect("select");
        assert!(skipped.is_empty());
        assert_eq!(series.len(), 4, "series of job=api");
        assert!(
            series
                .iter()
                .all(|s| s.samples.first().is_some_and(|x| x.t < HOUR)
                    && s.samples.last().is_some_and(|x| x.t > 2 * HOUR)),
            "samples come from the block and the segment: {:?}",
            series
                .iter()
                .map(|s| (
                    s.samples.len(),
                    s.samples.first().map(|x| x.t),
                    s.samples.last().map(|x| x.t)
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(waves.len(), 4, "round trips: {waves:#?}");
    }
}

/// Gathering split over threads gives what one thread gives: runs of
/// several sources per series, overlapping (later source wins), a segment
/// with a done range, series in label order.
#[test]
fn gathering_on_several_threads_equals_one_thread() {
    let labels: Vec<Labels> = (0..7)
        .map(|i| Labels::from_pairs([("__name__", "m"), ("i", &*i.to_string())]).expect("labels"))
        .collect();
    let run = |from: i64, n: i64, v: f64| -> Vec<Sample> {
        (0..n)
            .map(|k| Sample::new(from + k * 10, v + k as f64))
            .collect()
    };
    let a: Vec<Vec<Sample>> = (0..7).map(|i| run(i, 50, 1.0)).collect();
    let b: Vec<Vec<Sample>> = (0..7).map(|i| run(i + 200, 50, 100.0)).collect();
    let done = Source {
        kind: SourceKind::Segment,
        meta: ObjectMeta {
            location: Path::from("s"),
            last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            size: 0,
            e_tag: None,
            version: None,
        },
        index: Arc::new(SegmentIndex {
            min_time: 0,
            max_time: 0,
            samples: 0,
            series: Vec::new(),
        }),
        done: Some(SegmentEntry {
            done: vec![[0, 250]],
            replaced_at: None,
        }),
    };
    let plans = || -> Vec<(&Labels, Vec<Run<'_>>)> {
        labels
            .iter()
            .enumerate()
            .rev()
            .map(|(i, l)| {
                let slice = |samples, skip| Part::Slice { samples, skip };
                let runs = vec![
                    Run {
                        pos: 0,
                        seq: 1,
                        part: slice(&a[i], None),
                    },
                    Run {
                        pos: 1,
                        seq: 2,
                        part: slice(&b[i], Some(&done)),
                    },
                    // Rewrites part of the first run.
                    Run {
                        pos: 2,
                        seq: 3,
                        part: slice(&b[i][..10], None),
                    },
                ];
                (l, runs)
            })
            .collect()
    };
    let one = gather_split(plans(), 1, usize::MAX, i64::MIN, i64::MAX, None).expect("gather");
    assert_eq!(one.len(), 7);
    assert!(one.windows(2).all(|w| w[0].labels < w[1].labels));
    assert!(one[0].samples.windows(2).all(|w| w[0].t < w[1].t));
    // The done range of the segment is skipped, its rewrite is not.
    assert!(one[0].samples.iter().any(|x| x.t == 200 && x.v == 100.0));
    // Timestamps 0..=690 once each: the first run, its rewrite, and the
    // segment past its done range.
    assert_eq!(one[0].samples.len(), 70);
    for threads in [2, 3, 7, 16] {
        let many = gather_split(plans(), threads, 1, i64::MIN, i64::MAX, None).expect("gather");
        assert_eq!(bits(&many), bits(&one), "{threads} threads");
    }
}

/// Chunks decoded while gathering are clipped to the range, mixed with
/// decoded runs, merged when they overlap, and a chunk that does not
/// decode is a corruption error naming its block and row.
#[test]
fn chunks_decoded_while_gathering_are_clipped_merged_and_checked() {
    let labels = Labels::from_pairs([("__name__", "m")]).expect("labels");
    let key = Path::from("tenants/t/blocks/raw/b.parquet");
    let run = |from: i64, n: i64, v: f64| -> Vec<Sample> {
        (0..n)
            .map(|k| Sample::new(from + k * 10, v + k as f64))
            .collect()
    };
    let encoded = |samples: &[Sample], row| {
        let mut b = Vec::new();
        crate::chunk::encode(samples, &mut b);
        EncodedChunk::new(b, row, samples[0].t, samples[samples.len() - 1].t)
    };
    let (a, b, c) = (run(0, 50, 1.0), run(500, 50, 2.0), run(1000, 50, 3.0));
    let (ea, ec) = (encoded(&a, 0), encoded(&c, 2));
    // Rewrites the end of `a` (a later source).
    let late = run(480, 3, 9.0);
    let part = |chunk| Part::Chunk { chunk, key: &key };
    let plan = |start, end| {
        let runs = vec![
            Run {
                pos: 0,
                seq: 1,
                part: part(&ea),
            },
            Run {
                pos: 0,
                seq: 2,
                part: Part::Slice {
                    samples: in_range(&b, start, end),
                    skip: None,
                },
            },
            Run {
                pos: 0,
                seq: 3,
                part: part(&ec),
            },
            Run {
                pos: 1,
                seq: 4,
                part: Part::Slice {
                    samples: in_range(&late, start, end),
                    skip: None,
                },
            },
        ];
        vec![(&labels, runs)]
    };
    for (start, end) in [(i64::MIN, i64::MAX), (15, 1015), (495, 505), (1490, 2000)] {
        let got = gather_split(plan(start, end), 1, usize::MAX, start, end, None).expect("gather");
        let mut want: Vec<Sample> = a.iter().chain(&b).chain(&c).copied().collect();
        for x in &late {
            if let Some(w) = want.iter_mut().find(|w| w.t == x.t) {
                *w = *x;
            }
        }
        want.retain(|x| start <= x.t && x.t <= end);
        assert_eq!(got.len(), 1, "[{start}, {end}]");
        assert_eq!(got[0].samples, want, "[{start}, {end}]");
    }
    assert!(
        gather_split(plan(5000, 6000), 1, usize::MAX, 5000, 6000, None)
            .expect("gather")
            .is_empty()
    );

    let mut bytes = Vec::new();
    crate::chunk::encode(&a, &mut bytes);
    bytes.truncate(bytes.len() - 3);
    let broken = EncodedChunk::new(bytes, 7, 0, 490);
    let runs = vec![Run {
        pos: 0,
        seq: 1,
        part: part(&broken),
    }];
    let err = gather_split(vec![(&labels, runs)], 2, 1, i64::MIN, i64::MAX, None)
        .expect_err("corrupt chunk");
    assert!(
        matches!(&err, StorageError::Corrupt { key: k, reason } if k == key.as_ref() && reason.contains("row 7")),
        "{err}"
    );
}

/// A read for a selector evaluated at a grid of times keeps only what
/// those times see, and every time sees the same sample (bit for bit) as
/// in the whole read: over overlapping blocks, segments with a done range
/// and rewrites, with chunks decoded in the object tasks or while
/// gathering.
#[tokio::test]
async fn a_read_at_steps_answers_every_step_as_the_whole_read() {
    let at = |series: &[Series], t: i64, lookback: i64| -> Vec<(String, i64, u64)> {
        series
            .iter()
            .filter_map(|s| {
                let x = s.samples.iter().rev().find(|x| x.t <= t)?;
                (x.t > t - lookback).then(|| (s.labels.to_string(), x.t, x.v.to_bits()))
            })
            .collect()
    };
    for decoded in [0, 64 << 20, 8 << 10] {
        let s = Storage::in_memory().with_read_cache(ReadCache::new(1 << 20, decoded));
        let srcs = sources(&s).await;
        let all = [m(MatchOp::Regex, "job", ".+")];
        // (start, end, step, lookback): steps wider and narrower than the
        // lookback, times between samples and on them.
        for (start, end, step, lookback) in [
            (0, 5 * HOUR, 600_000, 300_000),
            (HOUR / 3, 5 * HOUR, 7_000, 300_000),
            (2 * HOUR + 1, 4 * HOUR + 30_000, 1_800_000, 25_000),
        ] {
            let grid = StepGrid::new(start, end, step, lookback).expect("grid");
            let (lo, hi) = (start - lookback + 1, end);
            let whole = s
                .read_direct(&srcs, &all, lo, hi, None, None)
                .await
                .expect("read");
            let thin = s
                .read_direct(&srcs, &all, lo, hi, None, Some(grid))
                .await
                .expect("read at steps");
            let mut t = start;
            while t <= end {
                assert_eq!(at(&thin, t, lookback), at(&whole, t, lookback), "{t}");
                t += step;
            }
            let count = |x: &[Series]| x.iter().map(|s| s.samples.len()).sum::<usize>();
            assert!(count(&thin) <= grid.steps() * thin.len(), "{grid:?}");
            if step > 20_000 {
                assert!(count(&thin) * 4 < count(&whole), "{grid:?} thins");
            }
        }
    }
}
