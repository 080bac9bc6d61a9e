//! The HTTP API. `app(state)` builds the router; serving is the daemon's, so
//! tests call `app(state).oneshot(request)` with no socket.
mod error;
mod health;
mod stats;

use std::sync::{Arc, Mutex};

use axum::Router;
use sqlx::SqlitePool;

pub use self::error::Error;
use crate::dataplane::Dataplane;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub dataplane: Arc<Mutex<Dataplane>>,
    pub db: SqlitePool,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .nest("/api/v1", stats::router())
        .fallback(error::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests;
