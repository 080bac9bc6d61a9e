//! Commit-confirm, rollback and the candidate's diff:
//!
//! - `POST /firewall/confirm`: keep the commit made with `confirm_within`
//!   (409 when none waits); `GET` shows it with the seconds left.
//! - `POST /firewall/rollback/{id}`: apply commit {id}'s ruleset as a new
//!   commit (comment "rollback to #id"); the candidate becomes it too.
//! - `GET /firewall/diff`: what committing the candidate would change.
use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use super::{
    AppState, Error,
    error::ApiQuery,
    firewall::{CommitView, with_diff},
};
use crate::firewall::{PendingView, store};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/firewall/confirm", get(pending).post(confirm))
        .route("/firewall/rollback/{id}", post(rollback))
        .route("/firewall/diff", get(diff))
}

#[derive(Debug, Serialize)]
pub struct PendingState {
    pub pending: bool,
    #[serde(flatten)]
    pub commit: Option<PendingView>,
}

async fn pending(State(state): State<AppState>) -> Json<PendingState> {
    let commit = state.firewall.lock().await.pending();
    Json(PendingState {
        pending: commit.is_some(),
        commit,
    })
}

#[derive(Debug, Serialize)]
pub struct Confirmed {
    /// The commit that now stays.
    pub confirmed: i64,
    pub seconds_left: f64,
}

async fn confirm(State(state): State<AppState>) -> Result<Json<Confirmed>, Error> {
    let view = state.firewall.lock().await.confirm().await?;
    Ok(Json(Confirmed {
        confirmed: view.commit,
        seconds_left: view.seconds_left,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackQuery {
    pub author: Option<String>,
}

async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RollbackQuery>,
) -> Result<Json<CommitView>, Error> {
    let n: i64 = id
        .parse()
        .map_err(|_| Error::NotFound(format!("/api/v1/firewall/rollback/{id}")))?;
    let author = q.author.as_deref().unwrap_or("api");
    let summary = state.firewall.lock().await.rollback_to(n, author).await?;
    Ok(Json(with_diff(&state, summary).await?))
}

#[derive(Debug, Serialize)]
pub struct DiffView {
    /// The commit the candidate is compared with; None before the first.
    pub active: Option<i64>,
    /// One line per change, as in the history (`+`, `-`, `~`).
    pub lines: Vec<String>,
}

async fn diff(State(state): State<AppState>) -> Result<Json<DiffView>, Error> {
    let candidate = store::candidate(&state.db).await?;
    let (active, ruleset) = match store::active(&state.db).await? {
        Some((id, rs)) => (Some(id), rs),
        None => (None, Default::default()),
    };
    Ok(Json(DiffView {
        active,
        lines: store::diff(&ruleset, &candidate),
    }))
}

#[cfg(test)]
mod tests;
