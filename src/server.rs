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
use ingest::{GroupCommitter, IngestState};
use querier::api::QueryState;
use storage::Storage;
use tracing::{Instrument, info, info_span};

use crate::config::StrataConfig;

#[derive(Clone, Copy, Debug)]
pub struct Roles {
    pub ingest: bool,
    pub query: bool,
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// The router of the selected roles, plus health endpoints and request spans.
pub fn app(config: &StrataConfig, roles: Roles, storage: Storage) -> Router {
    let mut app = Router::new()
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Strata is Ready.\n" }));
    if roles.ingest {
        let committer = GroupCommitter::start(storage.clone(), config.ingest.group_commit.clone());
        let state = IngestState { config: config.ingest.clone(), committer, default_tenant: config.default_tenant() };
        app = app.merge(ingest::router(state));
    }
    if roles.query {
        let state = QueryState::new(storage, config.query.clone(), config.default_tenant());
        app = app.merge(querier::api::router(state));
    }
    app.layer(middleware::from_fn(trace_request))
}

/// One span per request, named by the route template, and a log line with
/// the status and duration.
async fn trace_request(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let span = info_span!("request", method = %req.method(), route = %route);
    let start = Instant::now();
    async move {
        let resp = next.run(req).await;
        tracing::debug!(status = resp.status().as_u16(), seconds = start.elapsed().as_secs_f64(), "request done");
        resp
    }
    .instrument(span)
    .await
}

pub async fn run(config: StrataConfig, roles: Roles) -> anyhow::Result<()> {
    let store = config.storage.build().context("building the object store")?;
    let storage = Storage::new(store);
    let app = app(&config, roles, storage);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("local address")?;
    info!(%addr, backend = ?config.storage.backend, ingest = roles.ingest, query = roles.query, "Strata listening on {addr}");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving HTTP")?;
    info!("Strata stopped");
    Ok(())
}

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
