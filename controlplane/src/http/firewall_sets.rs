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

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    AppState, Error,
    error::{ApiJson, ApiQuery},
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SetsPage {
    pub items: Vec<SetSummary>,
    pub next_cursor: Option<String>,
}

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

async fn one(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AddressSet>, Error> {
    let set = store::set(&state.db, &name)
        .await?
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(set))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    /// Prefixes (`198.18.0.0/15`) or bare addresses; strings, so a bad
    /// one is reported by itself rather than failing the whole body.
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Serialize)]
pub struct PutResult {
    pub name: String,
    pub count: usize,
    pub comment: String,
    pub created: bool,
    /// Prefixes given more than once, stored once.
    pub duplicates_removed: usize,
}

async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
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

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    let _writer = state.firewall.lock().await;
    match store::delete_set(&state.db, &name).await? {
        SetDelete::Deleted => Ok(Json(json!({ "deleted": name }))),
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
