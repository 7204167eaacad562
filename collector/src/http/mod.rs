//! The HTTP side: JSON API, health check and the page. Built by [`app`] so
//! that tests and `main` serve the same router.

mod api;
mod apps;
pub mod auth;
mod checks;
mod live;
mod page;

use std::sync::{Arc, Mutex};

use axum::{Router, routing::get};

use crate::{registry::Registry, stats::Stats, stream::Hub};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The host registry (locked briefly per request).
    pub registry: Arc<Mutex<Registry>>,
    /// The socket counters.
    pub stats: Arc<Stats>,
    /// Live events for the streams.
    pub hub: Arc<Hub>,
    /// Ends the streams on shutdown (they would hold graceful shutdown open).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Who may ask.
    pub auth: auth::HttpAuth,
    /// The history store (read off the async workers).
    pub store: Arc<dyn crate::store::Store>,
    /// Its writer's counters.
    pub store_stats: Arc<crate::store::writer::StoreStats>,
    /// Each remote-write target's counters.
    pub exports: Arc<Vec<(String, Arc<crate::export::remote_write::TargetStats>)>>,
}

/// The collector's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(api::healthz))
        .route("/api/hosts", get(api::hosts))
        .route("/api/hosts/{id}", get(api::host))
        .route("/api/hosts/{id}/history", get(live::history))
        .route("/api/hosts/{id}/samples", get(live::samples))
        .route("/api/hosts/{id}/groups", get(live::groups))
        .route("/api/hosts/{id}/stream", get(live::host_stream))
        .route("/api/hosts/{id}/checks", get(checks::of_host))
        .route("/api/hosts/{id}/checks/{name}/history", get(checks::history))
        .route("/api/checks", get(checks::list))
        .route("/api/stream/checks", get(checks::stream))
        .route("/api/stream", get(live::fleet_stream))
        .route("/api/apps", get(apps::list))
        .route("/api/stream/apps", get(apps::stream_all))
        .route("/api/apps/{app}", get(apps::one))
        .route("/api/apps/{app}/history", get(apps::history))
        .route("/api/apps/{app}/stream", get(apps::stream))
        .route("/assets/{file}", get(page::asset))
        .route("/api/stats", get(api::stats))
        .route("/metrics", get(api::metrics))
        .layer(axum::middleware::from_fn_with_state(state.auth.clone(), auth::require))
        .with_state(state)
}
