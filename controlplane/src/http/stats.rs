//! `GET /api/v1/stats`: per-interface counters by verdict, reason and
//! traffic class, summed over CPUs.
use axum::{Json, Router, extract::State, routing::get};

use super::{AppState, Error};
use crate::dataplane::Stats;

pub fn router() -> Router<AppState> {
    Router::new().route("/stats", get(stats))
}

/// Counters per interface by verdict, reason and traffic class, summed
/// over CPUs.
#[utoipa::path(
    get,
    path = "/api/v1/stats",
    operation_id = "stats",
    tag = "forwarding",
    responses((status = 200, description = "The counters", body = Stats)),
)]
async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, Error> {
    let stats = state
        .dataplane
        .lock()
        .expect("dataplane lock poisoned")
        .stats()?;
    Ok(Json(stats))
}
