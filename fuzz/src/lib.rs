//! The fuzz targets' bodies, one function per target, shared by the
//! cargo-fuzz binaries (`fuzz_targets/*.rs`) and the stable corpus replay
//! test (`tests/it/fuzz_corpus.rs`, which includes this file by path).
//!
//! Each function takes arbitrary bytes and runs the real code on them as
//! production runs it. Returning is success; a panic (including a failed
//! `assert!` of the oracles below) is a finding. Beyond "no panic", every
//! target checks what it can check without a second implementation:
//! two decoders of the same input agree, a warm cache gives what a cold one
//! gave, what decodes re-encodes to the same bits, and a corrupt object is an
//! error rather than a different answer.
//!
//! Inputs that select a mode use their first byte for it, so corpus files
//! of `remote_write` and `influx` start with that byte (see README.md).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ingest::influx::{self, Precision};
use ingest::remote_write::{self, SeriesLimits, Validated};
use ingest::series_cache::SeriesCache;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use querier::promql::{Engine, EngineOptions};
use querier::queryable::MemQueryable;
use storage::manifest::{self, BlockEntry, Manifest};
use storage::{Labels, Sample, Series, Storage, TenantId, chunk, paths, segment};

/// Decoded-size bound passed to the remote-write decoder (the handler uses
/// `ingest.max_decoded_bytes`; a smaller bound keeps the fuzzer fast).
const MAX_DECODED: usize = 4 << 20;
/// "Now" for line protocol points without a timestamp.
const NOW_MS: i64 = 1_700_000_000_000;
/// Longest PromQL text tried: longer inputs only slow the fuzzer down.
const MAX_QUERY_LEN: usize = 2048;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for fuzz targets")
    })
}

/// A series as comparable data: labels as text, samples with value bits
/// (NaN payloads included, which `PartialEq` on f64 cannot compare).
type Flat = (String, Vec<(i64, u64)>);

fn flat(series: &[Series]) -> Vec<Flat> {
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

/// What the remote-write handler acts on: stored series, counts, the first
/// rejection, the sidecar (histograms, exemplars, metadata; as Debug text,
/// which compares NaNs as equal) and the series HA pairs decide on; or that
/// the request as a whole was refused.
type RwOutcome = Option<(
    usize,
    usize,
    usize,
    Option<(String, String)>,
    Vec<Flat>,
    String,
    Option<String>,
)>;

fn rw_outcome(r: &Result<Validated, ingest::IngestError>) -> RwOutcome {
    r.as_ref().ok().map(|v| {
        (
            v.total,
            v.samples,
            v.rejected,
            v.first_error.clone(),
            flat(&v.series),
            format!("{:?}", v.sidecar),
            v.first_labels.as_ref().map(|l| l.to_string()),
        )
    })
}

/// Invariants of any accepted request: what would be stored is valid.
fn assert_storable(v: &Validated) {
    for s in &v.series {
        assert!(
            s.labels.validate().is_ok(),
            "stored labels {} invalid",
            s.labels
        );
        assert!(!s.samples.is_empty(), "a stored series without samples");
    }
    for h in &v.sidecar.histograms {
        assert!(
            h.labels.validate().is_ok(),
            "histogram labels {} invalid",
            h.labels
        );
        for x in &h.histograms {
            assert!(x.validate().is_ok(), "stored histogram invalid: {x:?}");
        }
    }
    assert_eq!(
        v.samples,
        v.series.iter().map(|s| s.samples.len()).sum::<usize>()
    );
    assert!(v.rejected <= v.total && v.first_error.is_some() == (v.rejected > 0));
}

/// Remote write 1.0 as the HTTP handler runs it: snappy, protobuf,
/// validation. First byte even: the rest is a protobuf `WriteRequest`,
/// compressed here (so mutations reach the protobuf walk); odd: the rest is
/// the request body as sent. Oracles: the one-pass decoder with a cold and a
/// warm series cache and the prost reference decoder plus `validate` all
/// give the same outcome.
pub fn remote_write(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = if mode & 1 == 0 {
        match snap::raw::Encoder::new().compress_vec(rest) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    let limits = SeriesLimits::default();
    let cache = SeriesCache::new(64);
    let cold = remote_write::decode_validated(&body, MAX_DECODED, &limits, &cache);
    let warm = remote_write::decode_validated(&body, MAX_DECODED, &limits, &cache);
    let reference =
        remote_write::decode(&body, MAX_DECODED).map(|req| remote_write::validate(req, &limits));
    if let Ok(v) = &cold {
        assert_storable(v);
    }
    let cold = rw_outcome(&cold);
    assert_eq!(cold, rw_outcome(&warm), "cold and warm series cache differ");
    assert_eq!(
        cold,
        rw_outcome(&reference),
        "one-pass decoder and prost reference differ"
    );
}

/// Remote write 2.0 as the handler runs it (snappy, prost, symbol
/// resolution, validation). First byte as for `remote_write`. Oracles: what
/// would be stored is valid; a request that decodes re-encodes to one that
/// gives the same outcome.
pub fn remote_write_v2(data: &[u8]) {
    use prost::Message;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = if mode & 1 == 0 {
        match snap::raw::Encoder::new().compress_vec(rest) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        rest.to_vec()
    };
    let limits = SeriesLimits::default();
    let Ok(req) = remote_write::v2::decode(&body, MAX_DECODED) else {
        return;
    };
    let first = remote_write::v2::validate(req.clone(), &limits);
    if let Ok(v) = &first {
        assert_storable(v);
    }
    let again = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy of an encoded request");
    let second = remote_write::v2::decode_validated(&again, MAX_DECODED, &limits);
    assert_eq!(
        rw_outcome(&first),
        rw_outcome(&second),
        "a re-encoded request gives another outcome"
    );
}

type InfluxOutcome = (usize, usize, usize, Option<(usize, String)>, Vec<Flat>);

fn influx_outcome(p: &influx::Parsed) -> InfluxOutcome {
    (
        p.lines,
        p.samples,
        p.rejected,
        p.first_error.clone(),
        flat(&p.series),
    )
}

/// InfluxDB line protocol as the handler runs it after reading (and
/// un-gzipping) the body. First byte: the precision parameter. Oracles: a
/// warm series cache gives what a cold one gave; the counts add up.
pub fn influx(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let precision = match mode % 6 {
        0 => Precision::Nanoseconds,
        1 => Precision::Microseconds,
        2 => Precision::Milliseconds,
        3 => Precision::Seconds,
        4 => Precision::Minutes,
        _ => Precision::Hours,
    };
    let limits = SeriesLimits::default();
    let cache = SeriesCache::new(64);
    let cold = influx::parse(body, precision, NOW_MS, &limits, &cache);
    let warm = influx::parse(body, precision, NOW_MS, &limits, &cache);
    let out = influx_outcome(&cold);
    assert_eq!(
        out,
        influx_outcome(&warm),
        "cold and warm series cache differ"
    );
    let stored: usize = cold.series.iter().map(|s| s.samples.len()).sum();
    assert_eq!(cold.samples, stored, "sample count");
    assert!(
        cold.rejected <= cold.lines,
        "more rejected lines than lines"
    );
    assert_eq!(cold.first_error.is_some(), cold.rejected > 0);
}

/// Evaluation time of the PromQL target: 15 minutes into the data set.
const QUERY_T: i64 = 15 * 60 * 1000;

/// A small fixed data set covering the value kinds PromQL treats specially:
/// counters with a reset, a gauge with NaN, infinities and a stale marker,
/// classic histogram buckets, an info metric, and a series that ends early.
fn dataset() -> &'static MemQueryable {
    static DATA: OnceLock<MemQueryable> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut q = MemQueryable::default();
        let series = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> Option<f64>| {
            let labels = Labels::from_pairs(pairs.iter().copied()).expect("dataset labels");
            let samples = (0..=80)
                .filter_map(|i| f(i).map(|v| Sample::new(i * 15_000, v)))
                .collect();
            Series { labels, samples }
        };
        let stale = f64::from_bits(storage::STALE_NAN_BITS);
        let mut all = vec![
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "a")],
                &|_| Some(1.0),
            ),
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "b")],
                &|i| Some(if i % 7 == 0 { 0.0 } else { 1.0 }),
            ),
            series(
                &[("__name__", "up"), ("job", "db"), ("instance", "a")],
                &|i| (i < 40).then_some(1.0),
            ),
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("code", "200"),
                ],
                &|i| Some(((i % 50) * 10) as f64),
            ),
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("code", "500"),
                ],
                &|i| Some((i / 3) as f64),
            ),
            series(&[("__name__", "temperature"), ("room", "x")], &|i| {
                Some(match i % 11 {
                    3 => f64::NAN,
                    5 => f64::INFINITY,
                    6 => f64::NEG_INFINITY,
                    9 => stale,
                    _ => (i as f64).sin() * 20.0,
                })
            }),
            series(
                &[
                    ("__name__", "target_info"),
                    ("job", "api"),
                    ("instance", "a"),
                    ("version", "1.2"),
                ],
                &|_| Some(1.0),
            ),
        ];
        for (le, scale) in [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)] {
            all.push(series(
                &[
                    ("__name__", "latency_seconds_bucket"),
                    ("job", "api"),
                    ("le", le),
                ],
                &|i| Some(i as f64 * scale),
            ));
        }
        all.push(series(
            &[("__name__", "latency_seconds_count"), ("job", "api")],
            &|i| Some(i as f64 * 4.0),
        ));
        all.push(series(
            &[("__name__", "latency_seconds_sum"), ("job", "api")],
            &|i| Some(i as f64 * 0.7),
        ));
        q.write(&all);
        q
    })
}

/// Whether promql-parser panics on `query`. The engine contains such panics
/// (`querier::promql` parses under `catch_unwind` and answers a parse error;
/// tested by `a_parser_panic_is_a_parse_error`), but libFuzzer's panic hook
/// aborts before any unwinding, so the engine first runs here, on no data,
/// under a silent hook; an input the parser panics on stops the target, and
/// any other panic is re-raised as a finding.
fn parser_panics(query: &str) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let empty = MemQueryable::default();
    let outcome = std::panic::catch_unwind(|| {
        runtime().block_on(Engine::default().instant_query(&empty, query, QUERY_T))
    });
    std::panic::set_hook(hook);
    match outcome {
        Ok(Err(querier::promql::EvalError::Parse(m))) => {
            m == "invalid query: the PromQL parser failed on it"
        }
        Ok(_) => false,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// PromQL: parse arbitrary text and evaluate it with the querier's engine
/// against [`dataset`], as an instant query and as a short range query.
/// Errors are fine; a panic is not.
pub fn promql(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if query.len() > MAX_QUERY_LEN {
        return;
    }
    if parser_panics(query) {
        return;
    }
    let engine = Engine::new(EngineOptions {
        // Small enough that a query over the whole data set cannot make a
        // fuzz iteration slow, large enough that ordinary queries run.
        max_samples: 200_000,
        ..EngineOptions::default()
    });
    let data = dataset();
    runtime().block_on(async {
        let _ = engine.instant_query(data, query, QUERY_T).await;
        let _ = engine
            .range_query(data, query, QUERY_T - 10 * 60 * 1000, QUERY_T, 60_000)
            .await;
    });
}

fn tenant() -> TenantId {
    TenantId::new("fuzz").expect("tenant id")
}

/// A fixed segment or block id, so a failure reproduces exactly.
fn object_id() -> ulid::Ulid {
    ulid::Ulid::from_parts(1_700_000_000_000, 42)
}

/// `segment::read`, whose decoder panics (see [`with_decoder_panics_contained`])
/// must come back as a corrupt error.
fn read_segment(
    key: &str,
    bytes: Bytes,
) -> storage::error::Result<(segment::SegmentIndex, Vec<Series>)> {
    let (result, contained) = with_decoder_panics_contained(|| segment::read(key, bytes));
    assert!(
        !(contained && result.is_ok()),
        "a decoder panicked in segment::read, yet it answered data"
    );
    result
}

/// The query path over one object: `Storage::select` of every series at
/// every time, as a querier runs it (footer read, series index, DataFusion
/// scan, chunk checks and decoding).
fn select_all(store: Arc<InMemory>) -> storage::error::Result<Vec<Series>> {
    let storage = Storage::new(store);
    let (result, contained) = with_decoder_panics_contained(|| {
        runtime().block_on(storage.select(&tenant(), &[], i64::MIN, i64::MAX))
    });
    assert!(
        !(contained && result.is_ok()),
        "a decoder panicked in the scan, yet the query answered data"
    );
    result
}

static CONTAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static DECODER_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `f` (a query-path read) so that panics raised inside the Parquet and
/// Arrow readers on corrupt bytes (parquet 59 panics on purpose, e.g. on an
/// over-long VLQ integer, and slices out of bounds on a corrupt page length)
/// are not findings: they happen inside scan tasks (DataFusion's, or the
/// direct read path's one task per object), which contain them (the task's
/// panic becomes a query error, and queries read around such an object,
/// `Storage::read_reporting`), or inside the whole-object segment reader,
/// which catches them and answers a corrupt error. But libFuzzer's panic
/// hook aborts before any unwinding, so while `f` runs a hook passes over
/// panics whose stack is in such a task or reader and in parquet/arrow code;
/// any other panic still aborts (and one passed over that nothing catches
/// still ends the run at libFuzzer's own `catch_unwind`). Returns `f`'s
/// result and whether a decoder panic was contained.
fn with_decoder_panics_contained<T>(f: impl FnOnce() -> T) -> (T, bool) {
    use std::sync::atomic::Ordering;
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Inside a scan task (a DataFusion file scan, or the direct read
            // path's per-object task, which turns the panic into a corrupt
            // error), in the parquet/arrow readers (the panic's location may
            // be a crate they call, e.g. `bytes`).
            let in_decoder = CONTAINING.load(Ordering::SeqCst) && {
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                (trace.contains("datafusion_datasource")
                    || trace.contains("storage::storage::direct")
                    || trace.contains("storage/src/segment.rs"))
                    && (trace.contains("parquet::") || trace.contains("arrow_"))
            };
            if in_decoder {
                DECODER_PANICS.fetch_add(1, Ordering::SeqCst);
                return;
            }
            fuzzer_hook(info)
        }));
    });
    let before = DECODER_PANICS.load(Ordering::SeqCst);
    CONTAINING.store(true, Ordering::SeqCst);
    let out = f();
    CONTAINING.store(false, Ordering::SeqCst);
    (out, DECODER_PANICS.load(Ordering::SeqCst) != before)
}

/// What `Storage::select` returns for these rows of one object: per label
/// set, samples by time, the later row winning a duplicate timestamp.
fn as_selected(series: &[Series]) -> Vec<Flat> {
    let mut by_labels: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
    for s in series {
        let pts = by_labels.entry(s.labels.clone()).or_default();
        for x in &s.samples {
            pts.insert(x.t, x.v.to_bits());
        }
    }
    by_labels
        .into_iter()
        .filter(|(_, pts)| !pts.is_empty())
        .map(|(l, pts)| (l.to_string(), pts.into_iter().collect()))
        .collect()
}

/// A segment object. Three readers see the bytes: the whole-object reader
/// (`segment::read`, which checks the checksum first) on the bytes as given
/// and, re-sealed with a valid checksum, on the bytes as a buggy writer
/// could have stored them; and the query path (`Storage::select`). When the
/// whole-object reader accepts the object, the query path must return the
/// same samples or an error, never something else.
pub fn segment(data: &[u8]) {
    let key = "fuzz/segment";
    let as_given = read_segment(key, Bytes::copy_from_slice(data));
    let mut sealed = data.to_vec();
    let resealed = segment::seal(key, &mut sealed).is_ok();
    let read = if resealed {
        read_segment(key, Bytes::from(sealed.clone()))
    } else {
        // No checksum slot: the reader must have refused it (or it is a
        // version 1 segment, which has none).
        as_given
    };
    let store = Arc::new(InMemory::new());
    let path = paths::segment(&tenant(), object_id());
    let bytes = if resealed { sealed } else { data.to_vec() };
    if runtime()
        .block_on(store.put(&path, Bytes::from(bytes).into()))
        .is_err()
    {
        return;
    }
    let selected = select_all(store);
    if let (Ok((_, rows)), Ok(selected)) = (&read, &selected) {
        assert_eq!(
            as_selected(rows),
            flat(selected),
            "query path and whole-object reader disagree"
        );
    }
}

/// A block object, listed in the tenant's manifest and read by the query
/// path (`Storage::select`): footer, series index, chunk checksums, chunk
/// decoding. Errors are fine; a panic is not.
pub fn block(data: &[u8]) {
    let store = Arc::new(InMemory::new());
    let tenant = tenant();
    let id = object_id();
    let path = paths::block(&tenant, storage::block::RAW, id);
    let mut m = Manifest::new();
    m.blocks.push(BlockEntry {
        id: id.to_string(),
        resolution: storage::block::RAW.to_string(),
        start: i64::MIN,
        end: i64::MAX,
        min_time: i64::MIN,
        max_time: i64::MAX,
        samples: 1,
        series: 1,
        bytes: data.len() as u64,
    });
    let stored = runtime().block_on(async {
        store
            .put(&path, Bytes::copy_from_slice(data).into())
            .await
            .ok()?;
        manifest::try_commit(store.as_ref() as &dyn ObjectStore, &tenant, 0, &m)
            .await
            .ok()
    });
    if stored != Some(true) {
        return;
    }
    let _ = select_all(store);
}

/// The block chunk decoder. Oracles: on error the output is left as it was;
/// what decodes (with times in order) re-encodes and decodes to the same
/// bits.
pub fn chunk(data: &[u8]) {
    let before = Sample::new(-1, 0.5);
    let mut out = vec![before];
    match chunk::decode(data, &mut out) {
        Err(_) => assert_eq!(out.len(), 1, "failed decode left samples behind"),
        Ok(()) => {
            let decoded = &out[1..];
            if decoded.windows(2).all(|w| w[0].t < w[1].t) {
                let mut bytes = Vec::new();
                chunk::encode(decoded, &mut bytes);
                let mut again = Vec::new();
                chunk::decode(&bytes, &mut again).expect("a re-encoded chunk decodes");
                let bits = |s: &[Sample]| -> Vec<(i64, u64)> {
                    s.iter().map(|x| (x.t, x.v.to_bits())).collect()
                };
                assert_eq!(bits(decoded), bits(&again), "chunk round trip");
            }
        }
    }
}

/// A fuzz target: its name (as `cargo fuzz` and the corpus directories name
/// it) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target.
pub const TARGETS: [Target; 7] = [
    ("remote_write", remote_write),
    ("remote_write_v2", remote_write_v2),
    ("influx", influx),
    ("promql", promql),
    ("segment", segment),
    ("block", block),
    ("chunk", chunk),
];

/// Seed inputs per target: (target, file name, bytes). Written to
/// `fuzz/corpus/<target>/seed-<name>` by the ignored test
/// `fuzz_corpus::write_seed_corpora`; small valid (and a few invalid)
/// examples from which the fuzzer mutates.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use ingest::proto;
    use prost::Message;

    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();

    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let ts = |labels: Vec<proto::Label>, samples: &[(i64, f64)]| proto::TimeSeries {
        labels,
        samples: samples
            .iter()
            .map(|&(timestamp, value)| proto::Sample { value, timestamp })
            .collect(),
        exemplars: Vec::new(),
    };
    let requests = [
        (
            "valid",
            vec![
                ts(
                    vec![label("__name__", "up"), label("job", "api")],
                    &[(1000, 1.0), (2000, 0.0)],
                ),
                ts(
                    vec![label("__name__", "temp"), label("room", "x")],
                    &[
                        (1000, f64::NAN),
                        (1500, f64::from_bits(storage::STALE_NAN_BITS)),
                    ],
                ),
            ],
        ),
        (
            "invalid-series",
            vec![
                ts(
                    vec![label("job", "api"), label("__name__", "up")],
                    &[(1, 1.0)],
                ),
                ts(vec![label("__name__", "a"), label("", "x")], &[(1, 1.0)]),
                ts(
                    vec![label("__name__", "a"), label("a", "1"), label("a", "2")],
                    &[(1, 1.0)],
                ),
                ts(vec![label("job", "no-name")], &[(1, 1.0)]),
                ts(vec![label("__name__", "9bad")], &[(1, 1.0)]),
                ts(
                    vec![label("__name__", "ok"), label("empty", "")],
                    &[(1, 1.0)],
                ),
            ],
        ),
    ];
    for (name, timeseries) in requests {
        let raw = proto::WriteRequest {
            timeseries,
            metadata: Vec::new(),
        }
        .encode_to_vec();
        let mut plain = vec![0u8];
        plain.extend_from_slice(&raw);
        out.push(("remote_write", format!("{name}-proto"), plain));
        let mut body = vec![1u8];
        body.extend(
            snap::raw::Encoder::new()
                .compress_vec(&raw)
                .unwrap_or_default(),
        );
        out.push(("remote_write", format!("{name}-snappy"), body));
    }
    for (name, raw) in [
        ("extras", rw1_extras_seed()),
        ("v2-valid", rw2_seed(false)),
        ("v2-invalid-series", rw2_seed(true)),
    ] {
        let target = if name.starts_with("v2") {
            "remote_write_v2"
        } else {
            "remote_write"
        };
        let mut plain = vec![0u8];
        plain.extend_from_slice(&raw);
        out.push((target, format!("{name}-proto"), plain));
    }

    let lines: [(&str, u8, &str); 4] = [
        (
            "types",
            0,
            "cpu,host=a,region=eu usage=0.5,idle=99i,count=3u,up=true,name=\"x\" 1700000000000000000\n",
        ),
        (
            "escapes",
            3,
            "# comment\nweird\\ name,tag\\,k=v\\ 1,t=\\=x f\\=1=2.5e3 1700000000\n\nm f=-1\n",
        ),
        (
            "bad-lines",
            2,
            "m\nm f=\nm,t f=1 notatime\nm f=1 1 extra\n,t=1 f=1\n",
        ),
        (
            "many-fields",
            1,
            "m,a=1,b=2 f1=1,f2=2,f3=3,f4=4i,f5=F 1700000000000000\n",
        ),
    ];
    for (name, precision, text) in lines {
        let mut v = vec![precision];
        v.extend_from_slice(text.as_bytes());
        out.push(("influx", name.to_string(), v));
    }

    let queries = [
        "up",
        "up{job=~\"a.*\",instance!=\"b\"} offset 1m",
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(latency_seconds_bucket[5m])))",
        "max_over_time(temperature[10m:1m])",
        "up @ 300 + on(job, instance) group_left(version) target_info",
        "topk(2, http_requests_total) or absent(nope)",
        "label_replace(up, \"x\", \"$1\", \"job\", \"(.*)\")",
        "count_values(\"v\", up) / scalar(sum(up))",
        "predict_linear(temperature[5m], 60) > bool 1",
        "quantile_over_time(0.5, temperature[5m]) unless up",
        "-(1 + 2 * 3 ^ 2 % 5) atan2 time()",
        "sort_desc(increase(http_requests_total[1m] offset -1m))",
        "\"a string\"",
        "sum(",
    ];
    for (i, q) in queries.iter().enumerate() {
        out.push(("promql", format!("q{i:02}"), q.as_bytes().to_vec()));
    }

    let series = |name: &str, samples: Vec<(i64, f64)>| Series {
        labels: Labels::from_pairs([("__name__", name), ("job", "j")]).expect("seed labels"),
        samples: samples
            .into_iter()
            .map(|(t, v)| Sample::new(t, v))
            .collect(),
    };
    let data = vec![
        series("a", (0..20).map(|i| (i * 15_000, i as f64)).collect()),
        series(
            "b",
            (0..20).map(|i| (i * 15_000 + 7, 0.1 * i as f64)).collect(),
        ),
        series("c", vec![(5, f64::NAN), (6, f64::INFINITY), (9, -0.0)]),
    ];
    if let Ok((bytes, _)) = segment::encode(&data) {
        out.push(("segment", "three-series".into(), bytes.to_vec()));
    }
    if let Ok((bytes, _)) = segment::encode(&[]) {
        out.push(("segment", "empty".into(), bytes.to_vec()));
    }
    let opts = storage::block::BlockOptions {
        partition_start: 0,
        partition_end: 3_600_000,
        resolution: storage::block::RAW.into(),
        chunk_range_ms: 120_000,
        zstd_level: 3,
    };
    if let Ok((bytes, _)) = storage::block::encode(&data, &opts) {
        out.push(("block", "three-series".into(), bytes.to_vec()));
    }

    let chunks: [(&str, Vec<(i64, f64)>); 5] = [
        ("constant", (0..30).map(|i| (i * 15_000, 1.0)).collect()),
        (
            "decimal",
            (0..30).map(|i| (i * 15_000, i as f64 * 0.25)).collect(),
        ),
        (
            "xor",
            (0..30)
                .map(|i| (i * 15_000 + i % 3, (i as f64).sqrt()))
                .collect(),
        ),
        (
            "special",
            vec![(-5, f64::NAN), (0, -0.0), (i64::MAX, f64::MAX)],
        ),
        ("empty", Vec::new()),
    ];
    for (name, pts) in chunks {
        let samples: Vec<Sample> = pts.into_iter().map(|(t, v)| Sample::new(t, v)).collect();
        let mut bytes = Vec::new();
        chunk::encode(&samples, &mut bytes);
        out.push(("chunk", name.to_string(), bytes));
    }
    out
}

/// A native histogram for the remote-write seeds.
fn seed_histogram(t: i64) -> storage::histogram::Histogram {
    use storage::histogram::{BucketSpan, Count, Histogram, ZeroCount};
    Histogram {
        count: Some(Count::Int(5)),
        sum: 7.5,
        schema: 1,
        zero_threshold: 1e-128,
        zero_count: Some(ZeroCount::Int(1)),
        negative_spans: vec![BucketSpan {
            offset: -2,
            length: 1,
        }],
        negative_deltas: vec![1],
        positive_spans: vec![
            BucketSpan {
                offset: 0,
                length: 2,
            },
            BucketSpan {
                offset: 1,
                length: 1,
            },
        ],
        positive_deltas: vec![1, 0, 0],
        timestamp: t,
        ..Default::default()
    }
}

/// A 1.0 request with a native histogram, exemplars and metadata.
fn rw1_extras_seed() -> Vec<u8> {
    use ingest::proto;
    use prost::Message;
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    proto::FullWriteRequest {
        timeseries: vec![
            proto::FullTimeSeries {
                labels: vec![label("__name__", "rpc_seconds"), label("job", "api")],
                histograms: vec![seed_histogram(1000), seed_histogram(2000)],
                exemplars: vec![proto::Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 0.25,
                    timestamp: 1500,
                }],
                ..Default::default()
            },
            proto::FullTimeSeries {
                labels: vec![label("__name__", "up"), label("job", "api")],
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![proto::MetricMetadata {
            r#type: 3,
            metric_family_name: "rpc_seconds".into(),
            help: "RPC latency.".into(),
            unit: "seconds".into(),
        }],
    }
    .encode_to_vec()
}

/// A 2.0 request with every field; `broken`: series with the faults the
/// validator rejects (bad references, odd refs, samples out of order,
/// samples and histograms together).
fn rw2_seed(broken: bool) -> Vec<u8> {
    use ingest::proto::{self, v2};
    use prost::Message;
    let mut sy = v2::SymbolTable::default();
    let sample = |timestamp: i64, value: f64| proto::Sample { value, timestamp };
    let mut timeseries = vec![
        v2::TimeSeries {
            labels_refs: sy.label_refs(&[("__name__", "reqs_total"), ("job", "api")]),
            samples: vec![sample(1000, 1.0), sample(2000, 2.0)],
            exemplars: vec![v2::Exemplar {
                labels_refs: sy.label_refs(&[("trace_id", "abc")]),
                value: 1.0,
                timestamp: 1000,
            }],
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref: sy.intern("Requests."),
                unit_ref: 0,
            }),
            created_timestamp: 500,
            ..Default::default()
        },
        v2::TimeSeries {
            labels_refs: sy.label_refs(&[("__name__", "rpc_seconds"), ("job", "api")]),
            histograms: vec![seed_histogram(1000)],
            metadata: Some(v2::Metadata {
                r#type: 3,
                help_ref: sy.intern("RPC latency."),
                unit_ref: sy.intern("seconds"),
            }),
            ..Default::default()
        },
    ];
    if broken {
        timeseries[0].samples.reverse();
        timeseries[1].samples.push(sample(1, 1.0));
        timeseries.push(v2::TimeSeries {
            labels_refs: vec![1, 2, 900],
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        });
        timeseries.push(v2::TimeSeries {
            labels_refs: sy.label_refs(&[("job", "x"), ("__name__", "unsorted")]),
            samples: vec![sample(1, 1.0)],
            ..Default::default()
        });
    }
    v2::Request {
        symbols: sy.into_symbols(),
        timeseries,
    }
    .encode_to_vec()
}
