//! Address sets of the candidate, one at a time:
//!
//! - `GET /firewall/sets`: name, prefix count and comment, paged.
//! - `GET /firewall/sets/{name}`: the set with every prefix.
//! - `PUT /firewall/sets/{name}`: create or replace the set's prefixes in
//!   bulk (up to [`MAX_SET_PREFIXES`] in one request), each validated; a
//!   bad one refuses the whole request, every bad one listed.
//! - `DELETE /firewall/sets/{name}`: 409 while a candidate rule uses it.
//!
//! Like every candidate edit, nothing reaches the dataplane until a commit.
//! Bodies get the firewall's large limit (`http::limit`): 100k IPv6
//! prefixes are about 4 MB of JSON.
use std::collections::HashSet;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::firewall::{
    rule::{AddressSet, parse_prefix, validate_set_name},
    store::{self, SetDelete, SetSummary},
};

/// Prefixes one PUT may carry: a large blocklist feed in one request.
pub const MAX_SET_PREFIXES: usize = 100_000;
/// Bad prefixes listed in an error's `details`; the message counts them all.
const MAX_LISTED_PROBLEMS: usize = 100;
pub const MAX_SETS_LIMIT: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/firewall/sets", get(list))
        .route("/firewall/sets/{name}", get(one).put(put).delete(delete))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Sets per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    #[param(pattern = "^[0-9]+$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SetsPage {
    pub items: Vec<SetSummary>,
    pub next_cursor: Option<String>,
}

/// The candidate's sets: name, prefix count and comment.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/sets",
    operation_id = "listSets",
    tag = "firewall-sets",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of sets, in ruleset order", body = SetsPage),
        (status = 400, description = "A bad limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<SetsPage>, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_SETS_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be 1..={MAX_SETS_LIMIT}, not {limit}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| Error::BadRequest(format!("cursor {c:?} is not one this API gave")))
        })
        .transpose()?;
    let mut items = store::set_summaries(&state.db, limit + 1, after).await?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = more
        .then(|| items.last().map(|s| s.position.to_string()))
        .flatten();
    Ok(Json(SetsPage { items, next_cursor }))
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("/api/v1/firewall/sets/{name}"))
}

/// A set with every prefix.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/sets/{name}",
    operation_id = "getSet",
    tag = "firewall-sets",
    params(("name" = String, Path, description = "The set's name")),
    responses(
        (status = 200, description = "The set", body = AddressSet),
        (status = 404, description = "No such set in the candidate", body = ErrorBody),
    ),
)]
async fn one(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AddressSet>, Error> {
    let set = store::set(&state.db, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(set))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// Prefixes (`198.18.0.0/15`) or bare addresses; strings, so a bad
    /// one is reported by itself rather than failing the whole body.
    #[schema(max_items = 100_000)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PutResult {
    pub name: String,
    pub count: usize,
    pub comment: String,
    pub created: bool,
    /// Prefixes given more than once, stored once.
    pub duplicates_removed: usize,
}

/// Create or replace a set's prefixes in bulk.
#[utoipa::path(
    put,
    path = "/api/v1/firewall/sets/{name}",
    operation_id = "putSet",
    tag = "firewall-sets",
    params((
        "name" = String, Path,
        pattern = "^[A-Za-z0-9._-]{1,64}$",
        description = "1-64 letters, digits, `-`, `_` or `.`",
    )),
    request_body = SetBody,
    responses(
        (status = 200, description = "Replaced", body = PutResult),
        (status = 201, description = "Created", body = PutResult),
        (status = 400, description = "A bad name, too many prefixes, or bad prefixes (up to 100 in `details`)", body = ErrorBody),
    ),
)]
async fn put(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SetBody>,
) -> Result<(StatusCode, Json<PutResult>), Error> {
    validate_set_name(&name).map_err(Error::BadRequest)?;
    if body.prefixes.len() > MAX_SET_PREFIXES {
        return Err(Error::BadRequest(format!(
            "{} prefixes in one request; at most {MAX_SET_PREFIXES}",
            body.prefixes.len()
        )));
    }
    let total = body.prefixes.len();
    let mut problems = Vec::new();
    let mut bad = 0usize;
    let mut seen = HashSet::with_capacity(total);
    let mut prefixes = Vec::with_capacity(total);
    for (index, text) in body.prefixes.iter().enumerate() {
        match parse_prefix(text.trim()) {
            Ok(net) => {
                if seen.insert(net) {
                    prefixes.push(net);
                }
            }
            Err(message) => {
                bad += 1;
                if problems.len() < MAX_LISTED_PROBLEMS {
                    problems.push(json!({"index": index, "prefix": text, "message": message}));
                }
            }
        }
    }
    if bad > 0 {
        let listed = if bad > problems.len() {
            format!(" (the first {} listed)", problems.len())
        } else {
            String::new()
        };
        return Err(Error::Invalid {
            message: format!(
                "set @{name} was refused: {bad} of {total} prefixes are not valid{listed}"
            ),
            details: problems,
        });
    }
    let set = AddressSet {
        name: name.clone(),
        prefixes,
        comment: body.comment,
    };
    let _writer = state.firewall.lock().await;
    let created = store::put_set(&state.db, &set).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PutResult {
            name,
            count: set.prefixes.len(),
            comment: set.comment,
            created,
            duplicates_removed: total - set.prefixes.len(),
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SetDeleted {
    /// The name of the set deleted.
    pub deleted: String,
}

/// Delete a set no candidate rule uses.
#[utoipa::path(
    delete,
    path = "/api/v1/firewall/sets/{name}",
    operation_id = "deleteSet",
    tag = "firewall-sets",
    params(("name" = String, Path, description = "The set's name")),
    responses(
        (status = 200, description = "Deleted", body = SetDeleted),
        (status = 404, description = "No such set in the candidate", body = ErrorBody),
        (status = 409, description = "Candidate rules use it (named in the message)", body = ErrorBody),
    ),
)]
async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SetDeleted>, Error> {
    let _writer = state.firewall.lock().await;
    match store::delete_set(&state.db, &name).await? {
        SetDelete::Deleted => Ok(Json(SetDeleted { deleted: name })),
        SetDelete::NotFound => Err(not_found(&name)),
        SetDelete::InUse(rules) => {
            let named: Vec<String> = rules
                .iter()
                .map(|r| format!("{} #{} (id {})", r.chain, r.position, r.id))
                .collect();
            Err(Error::Conflict(format!(
                "set @{name} is used by candidate rule{} {}: change or delete {} first",
                if rules.len() == 1 { "" } else { "s" },
                named.join(", "),
                if rules.len() == 1 { "it" } else { "them" }
            )))
        }
    }
}

#[cfg(test)]
mod tests;
