//! `GET /api/v1/stats`: per-interface counters by verdict, reason and
//! traffic class, summed over CPUs.
use axum::{Json, Router, extract::State, routing::get};

use super::{AppState, Error};
use crate::dataplane::Stats;

pub fn router() -> Router<AppState> {
    Router::new().route("/stats", get(stats))
}

async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, Error> {
    let stats = state
        .dataplane
        .lock()
        .expect("dataplane lock poisoned")
        .stats()?;
    Ok(Json(stats))
}
