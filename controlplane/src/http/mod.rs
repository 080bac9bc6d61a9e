//! The HTTP API. `app(state)` builds the router; serving is the daemon's, so
//! tests call `app(state).oneshot(request)` with no socket.
mod error;
mod fib;
mod firewall;
mod health;
mod stats;

use std::sync::{Arc, Mutex};

use axum::Router;
use sqlx::SqlitePool;
use tokio::sync::watch;

pub use self::error::Error;
use crate::{dataplane::Dataplane, firewall::Firewall, netlink::sync::SyncStatus};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub dataplane: Arc<Mutex<Dataplane>>,
    pub db: SqlitePool,
    /// The kernel sync's progress.
    pub sync: watch::Receiver<SyncStatus>,
    /// The firewall service (commits are serialised by its lock).
    pub firewall: Arc<tokio::sync::Mutex<Firewall>>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .nest(
            "/api/v1",
            stats::router()
                .merge(fib::router())
                .merge(firewall::router()),
        )
        .fallback(error::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests;
