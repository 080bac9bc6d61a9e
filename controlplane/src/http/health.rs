//! Liveness: the process answers, the database answers, how many
//! interfaces are attached, and how the kernel sync is doing.
use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use super::{AppState, Error};

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    crate::db::ping(&state.db).await?;
    let attached = state
        .dataplane
        .lock()
        .expect("dataplane lock poisoned")
        .attachments()
        .len();
    let sync = state.sync.borrow().clone();
    Ok(Json(json!({
        "status": "ok",
        "db": "ok",
        "attached_interfaces": attached,
        "kernel_sync": sync,
    })))
}
