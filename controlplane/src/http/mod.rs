//! The HTTP API. `app(state)` builds the router; serving is the daemon's, so
//! tests call `app(state).oneshot(request)` with no socket.
mod auth;
mod conntrack;
mod error;
mod export;
mod fib;
mod firewall;
mod firewall_history;
mod firewall_rules;
mod firewall_sets;
mod health;
mod interfaces;
mod limit;
mod metrics;
mod openapi;
mod static_routes;
mod stats;
mod ui;

use std::sync::{Arc, Mutex};

use axum::{Router, extract::DefaultBodyLimit, middleware};
use sqlx::SqlitePool;
use tokio::sync::watch;

pub use self::error::Error;
use crate::{dataplane::Dataplane, firewall::Firewall, managed::Wanted, netlink::sync::SyncStatus};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub dataplane: Arc<Mutex<Dataplane>>,
    pub db: SqlitePool,
    /// The kernel sync's progress.
    pub sync: watch::Receiver<SyncStatus>,
    /// The firewall service (commits are serialised by its lock).
    pub firewall: Arc<tokio::sync::Mutex<Firewall>>,
    /// The interfaces XDP should run on (`--iface`, then API attach/detach).
    pub wanted: Wanted,
    /// The API listens on a loopback address: requests without a token
    /// may read, and may write until the first token exists (`http::auth`).
    pub listener_is_loopback: bool,
    /// The flow exporter (None in handler tests that do not need it).
    pub export: Option<Arc<crate::flowexport::Exporter>>,
    /// The firewall drop log's reader (None in handler tests).
    pub drop_log: Option<Arc<crate::firewall_log::DropLog>>,
}

/// Every route `app` serves, as (method, path). The OpenAPI document
/// (`http::openapi`) must describe exactly these, and the tests check that
/// the router serves exactly these: a route added without documentation
/// fails them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/routes"),
    ("GET", "/api/v1/neighbours"),
    ("GET", "/api/v1/links"),
    ("GET", "/api/v1/firewall/active"),
    ("GET", "/api/v1/firewall/candidate"),
    ("PUT", "/api/v1/firewall/candidate"),
    ("POST", "/api/v1/firewall/commit"),
    ("POST", "/api/v1/firewall/apply"),
    ("GET", "/api/v1/firewall/commits"),
    ("GET", "/api/v1/firewall/commits/{id}"),
    ("GET", "/api/v1/firewall/confirm"),
    ("POST", "/api/v1/firewall/confirm"),
    ("POST", "/api/v1/firewall/rollback/{id}"),
    ("GET", "/api/v1/firewall/diff"),
    ("GET", "/api/v1/firewall/sets"),
    ("GET", "/api/v1/firewall/sets/{name}"),
    ("PUT", "/api/v1/firewall/sets/{name}"),
    ("DELETE", "/api/v1/firewall/sets/{name}"),
    ("GET", "/api/v1/firewall/rules"),
    ("POST", "/api/v1/firewall/rules"),
    ("GET", "/api/v1/firewall/rules/{id}"),
    ("PUT", "/api/v1/firewall/rules/{id}"),
    ("DELETE", "/api/v1/firewall/rules/{id}"),
    ("GET", "/api/v1/routes/static"),
    ("POST", "/api/v1/routes/static"),
    ("DELETE", "/api/v1/routes/static/{prefix}"),
    ("GET", "/api/v1/conntrack"),
    ("DELETE", "/api/v1/conntrack"),
    ("GET", "/api/v1/interfaces"),
    ("GET", "/api/v1/interfaces/{name}"),
    ("POST", "/api/v1/interfaces/{name}/attach"),
    ("POST", "/api/v1/interfaces/{name}/detach"),
    ("GET", "/api/v1/export"),
    ("PUT", "/api/v1/export"),
];

/// The web UI's routes (`http::ui`): static files, not API operations, so
/// neither in `ROUTES` nor in the OpenAPI document; the route-list test
/// accepts exactly these besides `ROUTES`.
pub const UI_ROUTES: &[(&str, &str)] = &[("GET", "/"), ("GET", "/ui/{*file}")];

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(ui::router())
        .nest(
            "/api/v1",
            openapi::router()
                .merge(stats::router())
                .merge(fib::router())
                .merge(firewall::router())
                .merge(firewall_history::router())
                .merge(firewall_sets::router())
                .merge(firewall_rules::router())
                .merge(static_routes::router())
                .merge(conntrack::router())
                .merge(interfaces::router())
                .merge(export::router()),
        )
        .fallback(error::not_found)
        // Outermost last: authentication runs first, then the body limit.
        .layer(middleware::from_fn(limit::body_limit))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            auth::Auth::new(state.db.clone(), state.listener_is_loopback),
            auth::require,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
