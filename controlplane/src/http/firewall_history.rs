//! Commit-confirm, rollback and the candidate's diff:
//!
//! - `POST /firewall/confirm`: keep the commit made with `confirm_within`
//!   (409 when none waits); `GET` shows it with the seconds left.
//! - `POST /firewall/rollback/{id}`: apply commit {id}'s ruleset as a new
//!   commit (comment "rollback to #id"); the candidate becomes it too.
//! - `GET /firewall/diff`: what committing the candidate would change.
use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiPath, ApiQuery, ErrorBody},
    firewall::{CommitView, with_diff},
};
use crate::firewall::{PendingView, store};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/firewall/confirm", get(pending).post(confirm))
        .route("/firewall/rollback/{id}", post(rollback))
        .route("/firewall/diff", get(diff))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingState {
    pub pending: bool,
    /// `serde(flatten)` of an `Option` has no `allOf` form (absent means
    /// every field absent): the schema lists the fields as optional.
    #[serde(flatten)]
    #[schema(value_type = PendingFields)]
    pub commit: Option<PendingView>,
}

/// The fields of a [`PendingView`], each absent when nothing waits.
#[derive(ToSchema)]
#[expect(dead_code, reason = "only its schema is used (`PendingState`)")]
struct PendingFields {
    commit: Option<i64>,
    /// What a rollback restores; `null`: the empty ruleset.
    previous_commit: Option<i64>,
    confirm_within: Option<u32>,
    /// UTC, RFC 3339.
    deadline: Option<String>,
    seconds_left: Option<f64>,
}

/// The commit waiting for confirmation, if any.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/confirm",
    operation_id = "firewallPending",
    tag = "firewall",
    responses((status = 200, description = "Whether a commit waits, and which", body = PendingState)),
)]
async fn pending(State(state): State<AppState>) -> Json<PendingState> {
    let commit = state.firewall.lock().await.pending();
    Json(PendingState {
        pending: commit.is_some(),
        commit,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Confirmed {
    /// The commit that now stays.
    pub confirmed: i64,
    pub seconds_left: f64,
}

/// Keep the commit made with `confirm_within`.
#[utoipa::path(
    post,
    path = "/api/v1/firewall/confirm",
    operation_id = "firewallConfirm",
    tag = "firewall",
    responses(
        (status = 200, description = "Confirmed", body = Confirmed),
        (status = 409, description = "No commit is waiting for confirmation", body = ErrorBody),
    ),
)]
async fn confirm(State(state): State<AppState>) -> Result<Json<Confirmed>, Error> {
    let view = state.firewall.lock().await.confirm().await?;
    Ok(Json(Confirmed {
        confirmed: view.commit,
        seconds_left: view.seconds_left,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RollbackQuery {
    /// Who the commit is recorded as (default `api`).
    pub author: Option<String>,
}

/// Apply commit `id`'s ruleset as a new commit; the candidate becomes it
/// too.
#[utoipa::path(
    post,
    path = "/api/v1/firewall/rollback/{id}",
    operation_id = "firewallRollback",
    tag = "firewall",
    params(("id" = i64, Path, description = "The commit to go back to"), RollbackQuery),
    responses(
        (status = 200, description = "Committed", body = CommitView),
        (status = 400, description = "A bad query, or a ruleset the firewall now refuses (problems in `details`)", body = ErrorBody),
        (status = 404, description = "No such commit", body = ErrorBody),
        (status = 409, description = "A commit is waiting for confirmation", body = ErrorBody),
    ),
)]
async fn rollback(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RollbackQuery>,
) -> Result<Json<CommitView>, Error> {
    let n: i64 = id
        .parse()
        .map_err(|_| Error::NotFound(format!("/api/v1/firewall/rollback/{id}")))?;
    let author = q.author.as_deref().unwrap_or("api");
    let summary = state.firewall.lock().await.rollback_to(n, author).await?;
    Ok(Json(with_diff(&state, summary).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiffView {
    /// The commit the candidate is compared with; None before the first.
    pub active: Option<i64>,
    /// One line per change, as in the history (`+`, `-`, `~`).
    pub lines: Vec<String>,
}

/// What committing the candidate would change.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/diff",
    operation_id = "firewallDiff",
    tag = "firewall",
    responses((status = 200, description = "The changes", body = DiffView)),
)]
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
