//! The HTTP API. `app(state)` builds the router; serving is the daemon's, so
//! tests call `app(state).oneshot(request)` with no socket.
mod auth;
mod conntrack;
mod error;
mod fib;
mod firewall;
mod firewall_history;
mod firewall_rules;
mod firewall_sets;
mod health;
mod interfaces;
mod limit;
mod metrics;
mod static_routes;
mod stats;

use std::sync::{Arc, Mutex};

use axum::{Router, extract::DefaultBodyLimit, middleware};
use sqlx::SqlitePool;
use tokio::sync::watch;

pub use self::error::Error;
use crate::{
    dataplane::Dataplane, firewall::Firewall, managed::Wanted, netlink::sync::SyncStatus,
};

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
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .nest(
            "/api/v1",
            stats::router()
                .merge(fib::router())
                .merge(firewall::router())
                .merge(firewall_history::router())
                .merge(firewall_sets::router())
                .merge(firewall_rules::router())
                .merge(static_routes::router())
                .merge(conntrack::router())
                .merge(interfaces::router()),
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
