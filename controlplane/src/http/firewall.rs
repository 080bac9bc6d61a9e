//! The firewall API: the active ruleset with its counters, the candidate
//! (what the next commit applies), commits and their history.
//!
//! Every write takes the firewall's lock first, so a candidate edit can
//! never slip between another request's candidate write and its commit.
use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::{
    dataplane::Count,
    firewall::{
        CommitSummary, PendingView,
        rule::{Chain, Policies, Rule, Ruleset},
        store::{self, CommitInfo},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/firewall/active", get(active))
        .route("/firewall/candidate", get(candidate).put(put_candidate))
        .route("/firewall/commit", post(commit))
        .route("/firewall/apply", post(apply))
        .route("/firewall/commits", get(commits))
        .route("/firewall/commits/{id}", get(one_commit))
}

/// Who a write is recorded as when the request does not say.
const DEFAULT_AUTHOR: &str = "api";
pub const MAX_COMMITS_LIMIT: u32 = 1000;

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    /// In its chain, from 1.
    pub position: usize,
    #[serde(flatten)]
    pub rule: Rule,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SetView {
    pub name: String,
    /// How many; the prefixes themselves are in the commit's snapshot.
    pub prefixes: usize,
    pub comment: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyCounters {
    pub forward: Count,
    pub input: Count,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveView {
    /// None before the first commit (every chain accepts).
    pub commit: Option<i64>,
    pub policy: Policies,
    pub policy_counters: PolicyCounters,
    pub rules: Vec<RuleView>,
    pub sets: Vec<SetView>,
}

/// The active ruleset with each rule's counters since the daemon started.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/active",
    operation_id = "firewallActive",
    tag = "firewall",
    responses((status = 200, description = "The active ruleset", body = ActiveView)),
)]
async fn active(State(state): State<AppState>) -> Result<Json<ActiveView>, Error> {
    let fw = state.firewall.lock().await;
    let counters = fw.counters()?;
    let policy_counters = PolicyCounters {
        forward: counters.forward_policy,
        input: counters.input_policy,
    };
    let Some(active) = fw.active() else {
        return Ok(Json(ActiveView {
            commit: None,
            policy: Policies::default(),
            policy_counters,
            rules: Vec::new(),
            sets: Vec::new(),
        }));
    };
    let mut next_position = [0usize; Chain::ALL.len()];
    let rules = active
        .ruleset
        .rules
        .iter()
        .map(|r| {
            let position = &mut next_position[r.chain.index() as usize];
            *position += 1;
            let c = counters.rules.get(&r.id).copied().unwrap_or_default();
            RuleView {
                position: *position,
                rule: r.clone(),
                packets: c.packets,
                bytes: c.bytes,
            }
        })
        .collect();
    let sets = active
        .ruleset
        .sets
        .iter()
        .map(|s| SetView {
            name: s.name.clone(),
            prefixes: s.prefixes.len(),
            comment: s.comment.clone(),
        })
        .collect();
    Ok(Json(ActiveView {
        commit: Some(active.commit),
        policy: active.ruleset.policy,
        policy_counters,
        rules,
        sets,
    }))
}

/// The candidate: what the next commit applies.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/candidate",
    operation_id = "firewallCandidate",
    tag = "firewall",
    responses((status = 200, description = "The candidate ruleset", body = Ruleset)),
)]
async fn candidate(State(state): State<AppState>) -> Result<Json<Ruleset>, Error> {
    Ok(Json(store::candidate(&state.db).await?))
}

/// Replace the candidate; a ruleset with problems is refused whole, every
/// problem listed in `error.details`.
#[utoipa::path(
    put,
    path = "/api/v1/firewall/candidate",
    operation_id = "firewallPutCandidate",
    tag = "firewall",
    request_body = Ruleset,
    responses(
        (status = 200, description = "The candidate as stored (rules with their ids)", body = Ruleset),
        (status = 400, description = "Not a ruleset, or one with problems (each in `details`)", body = ErrorBody),
    ),
)]
async fn put_candidate(
    State(state): State<AppState>,
    ApiJson(rs): ApiJson<Ruleset>,
) -> Result<Json<Ruleset>, Error> {
    refuse_problems(&rs)?;
    let _writer = state.firewall.lock().await;
    Ok(Json(store::replace_candidate(&state.db, &rs).await?))
}

fn refuse_problems(rs: &Ruleset) -> Result<(), Error> {
    let problems = rs.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::problems(&problems))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    #[serde(default)]
    pub comment: String,
    pub author: Option<String>,
}

/// What a commit did, and what changed against the commit before.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommitView {
    #[serde(flatten)]
    pub summary: CommitSummary,
    pub diff: Vec<String>,
    /// Set when the commit waits for confirmation (`confirm_within`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<PendingView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommitQuery {
    /// Roll back unless `POST /firewall/confirm` arrives within this many
    /// seconds (Junos `commit confirmed`).
    #[param(minimum = 1, maximum = 86400)]
    pub confirm_within: Option<u32>,
}

/// Commit the candidate.
#[utoipa::path(
    post,
    path = "/api/v1/firewall/commit",
    operation_id = "firewallCommit",
    tag = "firewall",
    params(CommitQuery),
    request_body = CommitBody,
    responses(
        (status = 200, description = "Committed", body = CommitView),
        (status = 400, description = "A bad query or body, or a candidate the firewall refuses (problems in `details`)", body = ErrorBody),
        (status = 409, description = "A commit is waiting for confirmation", body = ErrorBody),
    ),
)]
async fn commit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CommitQuery>,
    ApiJson(body): ApiJson<CommitBody>,
) -> Result<Json<CommitView>, Error> {
    let mut fw = state.firewall.lock().await;
    fw.refuse_if_pending()?;
    let rs = store::candidate(&state.db).await?;
    // Stored candidates were checked when written; a database edited by
    // hand was not.
    refuse_problems(&rs)?;
    let author = body.author.as_deref().unwrap_or(DEFAULT_AUTHOR);
    let summary = match q.confirm_within {
        Some(n) => {
            fw.commit_confirmed(&state.firewall, rs, author, &body.comment, n)
                .await?
        }
        None => fw.commit(rs, author, &body.comment).await?,
    };
    let confirm = fw.pending();
    drop(fw);
    let mut view = with_diff(&state, summary).await?;
    view.confirm = confirm;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    #[serde(default)]
    pub comment: String,
    /// Who the commit is recorded as (default `api`).
    pub author: Option<String>,
    /// As for `/firewall/commit`.
    #[param(minimum = 1, maximum = 86400)]
    pub confirm_within: Option<u32>,
}

/// Replace the candidate with the body and commit it (`xdpgate acl
/// apply`). A ruleset with problems touches nothing. One the dataplane
/// refuses (an interface that does not exist) stays in the candidate, as
/// a failed commit of an edited candidate would, while the active ruleset
/// is unchanged.
#[utoipa::path(
    post,
    path = "/api/v1/firewall/apply",
    operation_id = "firewallApply",
    tag = "firewall",
    params(ApplyQuery),
    request_body = Ruleset,
    responses(
        (status = 200, description = "Committed", body = CommitView),
        (status = 400, description = "A bad query or body, or a ruleset with problems (each in `details`)", body = ErrorBody),
        (status = 409, description = "A commit is waiting for confirmation", body = ErrorBody),
    ),
)]
async fn apply(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ApplyQuery>,
    ApiJson(rs): ApiJson<Ruleset>,
) -> Result<Json<CommitView>, Error> {
    refuse_problems(&rs)?;
    let mut fw = state.firewall.lock().await;
    // Before the candidate is touched: a refused apply changes nothing.
    fw.refuse_if_pending()?;
    let stored = store::replace_candidate(&state.db, &rs).await?;
    let author = q.author.as_deref().unwrap_or(DEFAULT_AUTHOR);
    let summary = match q.confirm_within {
        Some(n) => {
            fw.commit_confirmed(&state.firewall, stored, author, &q.comment, n)
                .await?
        }
        None => fw.commit(stored, author, &q.comment).await?,
    };
    let confirm = fw.pending();
    drop(fw);
    let mut view = with_diff(&state, summary).await?;
    view.confirm = confirm;
    Ok(Json(view))
}

pub(super) async fn with_diff(
    state: &AppState,
    summary: CommitSummary,
) -> Result<CommitView, Error> {
    let diff = store::commits(&state.db, 1, Some(summary.commit + 1))
        .await?
        .into_iter()
        .find(|c| c.id == summary.commit)
        .map(|c| c.diff)
        .unwrap_or_default();
    Ok(CommitView {
        summary,
        diff,
        confirm: None,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CommitsQuery {
    /// Commits per page (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`: the commits older than it.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitsPage {
    pub items: Vec<CommitInfo>,
    /// Pass as `cursor` for the next page; None on the last.
    pub next_cursor: Option<String>,
}

/// History, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/commits",
    operation_id = "firewallCommits",
    tag = "firewall",
    params(CommitsQuery),
    responses(
        (status = 200, description = "A page of commits, newest first", body = CommitsPage),
        (status = 400, description = "A bad limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn commits(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CommitsQuery>,
) -> Result<Json<CommitsPage>, Error> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_COMMITS_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be 1..={MAX_COMMITS_LIMIT}, not {limit}"
        )));
    }
    // The cursor is the id of the last commit of the previous page.
    let before =
        q.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                    Error::BadRequest(format!("cursor {c:?} is not one this API gave"))
                })
            })
            .transpose()?;
    // One more than asked tells whether there is a next page.
    let mut items = store::commits(&state.db, limit + 1, before).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(Json(CommitsPage { items, next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommitDetail {
    #[serde(flatten)]
    pub info: CommitInfo,
    pub ruleset: Ruleset,
}

/// One commit with its full ruleset (`xdpgate acl export`).
#[utoipa::path(
    get,
    path = "/api/v1/firewall/commits/{id}",
    operation_id = "firewallGetCommit",
    tag = "firewall",
    params(("id" = i64, Path, description = "The commit's id")),
    responses(
        (status = 200, description = "The commit and its ruleset", body = CommitDetail),
        (status = 404, description = "No such commit", body = ErrorBody),
    ),
)]
async fn one_commit(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CommitDetail>, Error> {
    let not_found = || Error::NotFound(format!("/api/v1/firewall/commits/{id}"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    let (info, ruleset) = store::commit(&state.db, n).await?.ok_or_else(not_found)?;
    Ok(Json(CommitDetail { info, ruleset }))
}

#[cfg(test)]
mod tests;
