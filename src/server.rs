//! Assembles the HTTP server of the selected roles over one object store, and
//! runs it until SIGINT/SIGTERM, finishing requests in flight (and so the
//! group commits they wait for) before exiting.

use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use compactor::{Compactor, CompactorMetrics};
use ingest::series_cache::SeriesCache;
use ingest::{GroupCommitter, IngestMetrics, IngestState};
use object_store::ObjectStore;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use querier::api::{QueryConfig, QueryState};
use storage::Storage;
use storage::cached_store::{CacheMetrics, CachedStore};
use storage::instrumented_store::{InstrumentedStore, StoreMetrics};
use storage::latency_store::LatencyStore;
use storage::lease::{LeaseBackend, LeasesBackend};
use tracing::{Instrument, info, info_span};

use crate::config::StrataConfig;

#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub ingest: bool,
    pub query: bool,
    /// Run compaction passes on a timer (`compact.every`).
    pub compact: bool,
}

impl Roles {
    pub const SERVE: Self = Self {
        ingest: true,
        query: true,
        compact: true,
    };
    pub const INGEST: Self = Self {
        ingest: true,
        query: false,
        compact: false,
    };
    pub const QUERY: Self = Self {
        ingest: false,
        query: true,
        compact: false,
    };
    pub const COMPACT: Self = Self {
        ingest: false,
        query: false,
        compact: true,
    };
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

/// What [`app`] assembles.
pub struct App {
    /// The selected roles, `/metrics`, health endpoints and request spans.
    pub router: Router,
    /// The compactor to run on a timer, if that role is on.
    pub compactor: Option<Arc<Compactor>>,
    /// The rule store (`[rules]`), for the aggregation timer.
    pub rules: Arc<dyn aggregator::RuleStore>,
    /// The job leases' backend when not the object store (`[leases]`).
    pub leases: Option<Arc<dyn LeaseBackend>>,
}

/// The router of the selected roles, plus `/metrics`, health endpoints and
/// request spans; the compactor to run on a timer, if that role is on; and
/// the rule store.
pub fn app(
    config: &StrataConfig,
    roles: Roles,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<App> {
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let store_metrics = StoreMetrics::register(&mut registry);
    storage::storage::register_metrics(&mut registry);
    let raw = store;
    let raw_store = raw.clone();
    let store: Arc<dyn ObjectStore> =
        Arc::new(InstrumentedStore::new(raw.clone(), store_metrics.clone()));
    // Only a query role reuses listings (and so remembers its own writes).
    let view_max_age = if roles.query {
        config.query.view_max_age
    } else {
        std::time::Duration::ZERO
    };
    let storage = Storage::new(store.clone()).with_view_max_age(view_max_age);
    // Job leases (`[leases]`): etcd requests counted on /metrics.
    let leases = match config.leases.backend {
        LeasesBackend::Etcd => lease_backend(
            config,
            aggregator::EtcdMetrics::register_for(&mut registry, "leases"),
        )?,
        LeasesBackend::ObjectStore => None,
    };
    let compactor = (roles.compact && !config.compact.every.is_zero()).then(|| {
        let metrics = CompactorMetrics::register(&mut registry);
        let c = Compactor::new(store, config.compact.clone(), metrics);
        Arc::new(match &leases {
            Some(l) => c.with_leases(l.clone()),
            None => c,
        })
    });
    let mut app = Router::new()
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }));
    // The rule store (`[rules]`): one client for the request paths, the
    // API and the aggregation timer; etcd requests counted on /metrics.
    let etcd_metrics = match config.rules.backend {
        aggregator::RulesBackend::Etcd => aggregator::EtcdMetrics::register(&mut registry),
        aggregator::RulesBackend::ObjectStore => aggregator::EtcdMetrics::default(),
    };
    let rule_store = config
        .rules
        .build_with_metrics(raw_store, etcd_metrics)
        .context("building the rule store ([rules])")?;
    // Rule sets as the request paths read them: ingest's drop rules and the
    // querier's storage policies, re-read every `aggregate.rules_poll`.
    let polled_rules =
        aggregator::PolledRules::new(rule_store.clone(), config.aggregate.rules_poll);
    if roles.ingest {
        let metrics = IngestMetrics::register(&mut registry);
        let committer = GroupCommitter::start(
            storage.clone(),
            config.ingest.group_commit.clone(),
            metrics.clone(),
        );
        let state = IngestState {
            config: config.ingest.clone(),
            committer,
            metrics,
            series_cache: Arc::new(SeriesCache::new(config.ingest.series_cache_entries)),
            default_tenant: config.default_tenant(),
            limits: Arc::new(config.limits.ingest(
                &config.ingest,
                Arc::new(ingest::clock::SystemClock),
                ingest::limits::LimitMetrics::register(&mut registry),
            )),
        };
        let drop_rules = ingest::DropRules::new(polled_rules.clone()).register(&mut registry);
        app = app.merge(ingest::router_with_drop_rules(state, drop_rules));
    }
    if roles.query {
        let storage = query_storage(&config.query, storage, raw, store_metrics, &mut registry);
        let limits = config.limits.query(
            &config.query,
            crate::limits::QueryLimitMetrics::register(&mut registry),
        );
        let state = QueryState::new(storage, config.query.clone(), config.default_tenant())
            .with_limits(Arc::new(limits))
            .with_resolver(Arc::new(querier::resolution::Resolver {
                raw_retention: querier::resolution::RawRetention::new(
                    config.compact.retention,
                    &config.compact.tenant_retention,
                ),
                rules: polled_rules.clone(),
            }));
        app = app.merge(querier::api::router(state));
    }
    if roles.query {
        // The rules API (`/api/v1/rules/...`) rides with the query role.
        app = app.merge(aggregator::api::router(aggregator::api::RulesState {
            store: rule_store.clone(),
            default_tenant: config.default_tenant(),
        }));
    }
    let registry = Arc::new(registry);
    let auth = Arc::new(config.auth.clone());
    let router = app
        .route("/metrics", get(metrics).with_state(registry))
        .layer(middleware::from_fn_with_state(
            auth,
            crate::auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(http_metrics, trace_request));
    Ok(App {
        router,
        compactor,
        rules: rule_store,
        leases,
    })
}

/// The job leases' backend (`[leases]`) when it is not the object store,
/// where each job takes its leases on its own store.
pub fn lease_backend(
    config: &StrataConfig,
    metrics: aggregator::EtcdMetrics,
) -> anyhow::Result<Option<Arc<dyn LeaseBackend>>> {
    config
        .leases
        .build(metrics)
        .context("building the lease backend ([leases])")
}

/// `job` taking its leases from `leases`, if set.
pub fn aggregator_with_leases(
    job: aggregator::Aggregator,
    leases: &Option<Arc<dyn LeaseBackend>>,
) -> aggregator::Aggregator {
    match leases {
        Some(l) => job.with_leases(l.clone()),
        None => job,
    }
}

/// The configured rule store (`[rules]`: the object store `store`, or etcd).
pub fn rule_store(
    config: &StrataConfig,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<Arc<dyn aggregator::RuleStore>> {
    config
        .rules
        .build(store)
        .context("building the rule store ([rules])")
}

/// The query role's storage: reads go through the page cache (`[query.cache]`)
/// and, when configured, the injected latency (`[query.inject_latency]`);
/// ingest and the compactor keep writing to the store directly. Without
/// either, queries share `shared`, the ingest role's storage.
fn query_storage(
    config: &QueryConfig,
    shared: Storage,
    raw: Arc<dyn ObjectStore>,
    store_metrics: StoreMetrics,
    registry: &mut Registry,
) -> Storage {
    // Decoded samples of the direct read path: the query role's own.
    let decoded = usize::try_from(config.cache.decoded_bytes).unwrap_or(usize::MAX);
    let read_cache = storage::storage::ReadCache::new(64 << 20, decoded);
    if !config.cache.is_enabled() && !config.inject_latency.is_enabled() {
        return shared.with_read_cache(read_cache);
    }
    let mut store = raw;
    if config.inject_latency.is_enabled() {
        info!(latency = ?config.inject_latency, "injecting object-store latency into queries");
        store = Arc::new(LatencyStore::new(store, config.inject_latency));
    }
    store = Arc::new(InstrumentedStore::new(store, store_metrics));
    if config.cache.is_enabled() {
        let metrics = CacheMetrics::register(registry);
        store = Arc::new(CachedStore::new(store, config.cache.clone(), metrics));
    }
    // Shares the ingest role's caches, so this process's writes are seen.
    shared.with_store(store).with_read_cache(read_cache)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            e.to_string(),
        ),
    }
}

/// `strata_http_*`: requests by route template, method and status code.
#[derive(Clone)]
struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    seconds: Family<HttpLabels, Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    code: u16,
}

impl HttpMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        let r = registry.sub_registry_with_prefix("strata_http");
        r.register(
            "requests",
            "HTTP requests by route template, method and status code",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "HTTP request duration by route template",
            m.seconds.clone(),
        );
        m
    }
}

/// One span per request, named by the route template; metrics and a debug
/// line with the status and duration when it is answered.
async fn trace_request(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let span = info_span!("request", method = %method, route = %route);
    let start = Instant::now();
    async move {
        let resp = next.run(req).await;
        let seconds = start.elapsed().as_secs_f64();
        let labels = HttpLabels {
            route,
            method,
            code: resp.status().as_u16(),
        };
        m.requests.get_or_create(&labels).inc();
        m.seconds.get_or_create(&labels).observe(seconds);
        tracing::debug!(status = labels.code, seconds, "request done");
        resp
    }
    .instrument(span)
    .await
}

pub async fn run(config: StrataConfig, roles: Roles) -> anyhow::Result<()> {
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let store_for_jobs = store.clone();
    let App {
        router: app,
        compactor,
        rules,
        leases,
    } = app(&config, roles, store)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = compactor.map(|c| {
        let every = config.compact.every;
        let mut stop = stop_rx.clone();
        info!(every = ?every, "compactor runs on a timer");
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            c.run_every(every, stopped).await;
        })
    });
    let aggregation = (roles.compact && !config.aggregate.every.is_zero()).then(|| {
        let store = store_for_jobs.clone();
        let job = aggregator::Aggregator::new(store, rules, config.aggregate.clone());
        let job = aggregator_with_leases(job, &leases);
        let every = config.aggregate.every;
        let mut stop = stop_rx.clone();
        info!(every = ?every, "aggregator runs on a timer");
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            job.run_every(every, stopped).await;
        })
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("local address")?;
    let tls = config
        .tls
        .acceptor()
        .context("loading the TLS certificate")?;
    info!(%addr, backend = ?config.storage.backend, ingest = roles.ingest, query = roles.query, tls = tls.is_some(), "Strata listening on {addr}");
    match tls {
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor)
                .context("starting the TLS listener")?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("serving HTTPS")?
        }
        None => axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP")?,
    }
    let _ = stop_tx.send(true);
    if let Some(task) = aggregation {
        task.abort();
    }
    if let Some(task) = background {
        // A pass in progress is abandoned at its next await; its effects are
        // crash-safe by design.
        task.abort();
    }
    info!("Strata stopped");
    Ok(())
}

/// `strata compact` without `--every`: passes until nothing is left to do.
pub async fn compact_once(config: StrataConfig) -> anyhow::Result<()> {
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let compactor = Compactor::new(store, config.compact.clone(), CompactorMetrics::default());
    let compactor = match lease_backend(&config, Default::default())? {
        Some(l) => compactor.with_leases(l),
        None => compactor,
    };
    let stats = compactor
        .run_until_idle(ONE_SHOT_MAX_PASSES)
        .await
        .context("compaction")?;
    info!(?stats, "compaction finished");
    Ok(())
}

/// `strata aggregate`: one pass, or a pass every `aggregate.every`.
pub async fn aggregate(
    config: StrataConfig,
    every: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let store = config
        .storage
        .build()
        .context("building the object store")?;
    let rules = rule_store(&config, store.clone())?;
    let job = aggregator::Aggregator::new(store, rules, config.aggregate.clone());
    let job = aggregator_with_leases(job, &lease_backend(&config, Default::default())?);
    match every {
        Some(every) => job.run_every(every, shutdown_signal()).await,
        None => {
            let stats = job.run_pass().await.context("aggregation")?;
            info!(?stats, "aggregation finished");
        }
    }
    Ok(())
}

/// Passes of a one-shot `strata compact`: enough to merge fresh blocks up
/// through every level and then delete what the grace period released.
const ONE_SHOT_MAX_PASSES: usize = 8;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down: finishing requests in flight");
}
