//! The HTTP API. `app(state)` builds the router; serving is the daemon's, so
//! tests call `app(state).oneshot(request)` with no socket.
mod conntrack;
mod error;
mod fib;
mod firewall;
mod health;
mod interfaces;
mod metrics;
mod stats;

use std::sync::{Arc, Mutex};

use axum::Router;
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
                .merge(conntrack::router())
                .merge(interfaces::router()),
        )
        .fallback(error::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests;
