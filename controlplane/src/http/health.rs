//! Liveness (`/healthz`): the process answers, the database answers, how
//! many interfaces are attached, and how the kernel sync is doing.
//! Readiness (`/readyz`): 200 only when XDP runs on every wanted interface,
//! the kernel sync (if enabled) has a complete snapshot and the database
//! answers; otherwise 503 with every reason.
use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{AppState, Error, error::ErrorBody};
use crate::netlink::sync::SyncStatus;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` (the process and the database answer).
    pub status: &'static str,
    pub db: &'static str,
    pub attached_interfaces: usize,
    pub kernel_sync: SyncStatus,
}

/// Liveness: the process and its database answer.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health)),
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, Error> {
    crate::db::ping(&state.db).await?;
    let attached = state
        .dataplane
        .lock()
        .expect("dataplane lock poisoned")
        .attachments()
        .len();
    let sync = state.sync.borrow().clone();
    Ok(Json(Health {
        status: "ok",
        db: "ok",
        attached_interfaces: attached,
        kernel_sync: sync,
    }))
}

/// Why the daemon is not ready; empty when it is.
pub(super) async fn not_ready(state: &AppState) -> Vec<String> {
    let mut reasons = Vec::new();
    let wanted = state.wanted.all();
    {
        let dp = state.dataplane.lock().expect("dataplane lock poisoned");
        for (name, _) in &wanted {
            if !dp.is_attached(name) {
                reasons.push(format!("{name} is not attached"));
            }
        }
    }
    let sync = state.sync.borrow().clone();
    if sync.enabled && !sync.in_sync {
        reasons.push("the kernel sync has no complete snapshot yet".to_owned());
    }
    if let Err(e) = crate::db::ping(&state.db).await {
        // The cause goes to the log, like any internal error.
        tracing::warn!("readiness: the database does not answer: {e}");
        reasons.push("the database does not answer".to_owned());
    }
    reasons
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: &'static str,
}

/// Readiness: XDP runs on every wanted interface, the kernel sync (if on)
/// has a complete snapshot, the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready; every reason in `details`", body = ErrorBody),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, Error> {
    let reasons = not_ready(&state).await;
    if !reasons.is_empty() {
        return Err(Error::Unavailable {
            message: format!("not ready: {}", reasons.join("; ")),
            details: reasons.into_iter().map(Value::from).collect(),
        });
    }
    Ok(Json(Ready { status: "ready" }))
}
