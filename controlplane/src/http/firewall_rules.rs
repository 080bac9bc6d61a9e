//! Rules of the candidate, one at a time:
//!
//! - `GET /firewall/rules` (`?chain=forward`): every rule with its
//!   position in its chain (from 1).
//! - `POST /firewall/rules`: a rule, appended to its chain, or inserted
//!   before the rule at `position` when the body has one.
//! - `GET/PUT/DELETE /firewall/rules/{id}`: PUT replaces the rule (same
//!   id) and moves it when the body has a `position`.
//!
//! Each edit is checked as the rule model checks a whole ruleset (the sets
//! it names must exist, fields must fit its protocol, a chain holds at most
//! `FW_MAX_RULES` enabled rules). Nothing reaches the dataplane until a
//! commit.
use std::collections::BTreeSet;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use dataplane_common::FW_MAX_RULES;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiJson, ApiPath, ApiQuery, ErrorBody},
};
use crate::firewall::{
    rule::{Chain, Rule},
    store,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/firewall/rules", get(list).post(create))
        .route("/firewall/rules/{id}", get(one).put(replace).delete(delete))
}

/// A candidate rule with its place.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleItem {
    /// In its chain, from 1.
    pub position: usize,
    #[serde(flatten)]
    pub rule: Rule,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this chain's rules.
    #[param(value_type = Option<Chain>)]
    pub chain: Option<String>,
    /// Rules per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// One page of rules in match order (forward chain first).
pub type RulesList = super::fib::Page<RuleItem>;

/// Every candidate rule with its position in its chain.
#[utoipa::path(
    get,
    path = "/api/v1/firewall/rules",
    operation_id = "listRules",
    tag = "firewall-rules",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of rules, in match order per chain", body = super::fib::Page<RuleItem>),
        (status = 400, description = "An unknown chain or query field", body = ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RulesList>, Error> {
    let chain = q
        .chain
        .as_deref()
        .map(str::parse::<Chain>)
        .transpose()
        .map_err(Error::BadRequest)?;
    let (_, rules) = store::candidate_rules(&state.db).await?;
    let items: Vec<RuleItem> = with_positions(rules)
        .into_iter()
        .filter(|i| chain.is_none_or(|c| i.rule.chain == c))
        .collect();
    Ok(Json(super::fib::page_of(
        items,
        q.limit,
        q.cursor.as_deref(),
    )?))
}

fn with_positions(rules: Vec<Rule>) -> Vec<RuleItem> {
    let mut next = [0usize; Chain::ALL.len()];
    rules
        .into_iter()
        .map(|rule| {
            let n = &mut next[rule.chain.index() as usize];
            *n += 1;
            RuleItem { position: *n, rule }
        })
        .collect()
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("/api/v1/firewall/rules/{id}"))
}

fn parse_id(id: &str) -> Result<u32, Error> {
    id.parse().map_err(|_| not_found(id))
}

#[utoipa::path(
    get,
    path = "/api/v1/firewall/rules/{id}",
    operation_id = "getRule",
    tag = "firewall-rules",
    params(("id" = u32, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "The rule", body = RuleItem),
        (status = 404, description = "No such rule in the candidate", body = ErrorBody),
    ),
)]
async fn one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuleItem>, Error> {
    let n = parse_id(&id)?;
    let (_, rules) = store::candidate_rules(&state.db).await?;
    with_positions(rules)
        .into_iter()
        .find(|i| i.rule.id == n)
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

/// A rule body's schema: the rule model's fields and an optional
/// `position` ([`rule_body`] reads it from JSON).
#[derive(ToSchema)]
#[expect(dead_code, reason = "only its schema is used")]
struct RuleBody {
    /// Insert before the rule at this position of the chain (from 1; one
    /// past the end appends). POST without it appends; PUT without it keeps
    /// the rule's place.
    #[schema(minimum = 1)]
    position: Option<usize>,
    #[serde(flatten)]
    rule: Rule,
}

/// A rule body: the rule model's fields and an optional `position`.
fn rule_body(mut body: Value) -> Result<(Rule, Option<usize>), Error> {
    let position = match body.as_object_mut().and_then(|o| o.remove("position")) {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .filter(|&p| p >= 1)
                .and_then(|p| usize::try_from(p).ok())
                .ok_or_else(|| {
                    Error::BadRequest(format!("position must be a number from 1, not {p}"))
                })?,
        ),
    };
    let rule: Rule = serde_json::from_value(body)
        .map_err(|e| Error::BadRequest(format!("not a valid rule: {e}")))?;
    Ok((rule, position))
}

/// The candidate's rules per chain, in match order.
fn by_chain(rules: Vec<Rule>) -> [Vec<Rule>; 2] {
    let mut chains: [Vec<Rule>; 2] = Default::default();
    for r in rules {
        chains[r.chain.index() as usize].push(r);
    }
    chains
}

/// Insert `rule` into its chain before `position` (from 1; None or one
/// past the end appends). Returns its index in the chain.
fn place(chains: &mut [Vec<Rule>; 2], rule: Rule, position: Option<usize>) -> Result<usize, Error> {
    let chain = &mut chains[rule.chain.index() as usize];
    let at = match position {
        None => chain.len(),
        Some(p) if p <= chain.len() + 1 => p - 1,
        Some(p) => {
            return Err(Error::BadRequest(format!(
                "position {p} is past the end of the {} chain ({} rules; {} appends)",
                rule.chain,
                chain.len(),
                chain.len() + 1
            )));
        }
    };
    chain.insert(at, rule);
    Ok(at)
}

/// Refuse `rule` (at `index` of its chain in `chains`) if the rule model
/// would refuse the ruleset for it.
async fn check(state: &AppState, chains: &[Vec<Rule>; 2], rule: &Rule) -> Result<(), Error> {
    let names = store::set_names(&state.db).await?;
    let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut problems = rule.problems(&names);
    let enabled = chains[rule.chain.index() as usize]
        .iter()
        .filter(|r| r.enabled)
        .count();
    if enabled > FW_MAX_RULES as usize {
        problems.push(format!(
            "the {} chain would have {enabled} enabled rules; at most {FW_MAX_RULES} fit",
            rule.chain
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid {
        message: format!(
            "the rule was refused: {} problem{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
        details: problems
            .into_iter()
            .map(|m| json!({ "message": m }))
            .collect(),
    })
}

/// Store `chains` as the candidate's rules; returns the rule at `index`
/// of `chain` as stored.
async fn save(
    state: &AppState,
    chains: [Vec<Rule>; 2],
    chain: Chain,
    index: usize,
) -> Result<RuleItem, Error> {
    let rules: Vec<Rule> = chains.into_iter().flatten().collect();
    let stored = store::replace_candidate_rules(&state.db, &rules).await?;
    with_positions(stored)
        .into_iter()
        .filter(|i| i.rule.chain == chain)
        .nth(index)
        .ok_or_else(|| Error::NotFound("the rule just stored".into()))
}

/// Add a rule to the candidate (`id` 0 or absent: the store assigns one).
#[utoipa::path(
    post,
    path = "/api/v1/firewall/rules",
    operation_id = "createRule",
    tag = "firewall-rules",
    request_body = RuleBody,
    responses(
        (status = 201, description = "Stored", body = RuleItem),
        (status = 400, description = "Not a valid rule, a position past the end, or problems (each in `details`)", body = ErrorBody),
    ),
)]
async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<RuleItem>), Error> {
    let (rule, position) = rule_body(body)?;
    if rule.id != 0 {
        return Err(Error::BadRequest(
            "a new rule has no id: the store assigns one".into(),
        ));
    }
    let _writer = state.firewall.lock().await;
    let (_, rules) = store::candidate_rules(&state.db).await?;
    let mut chains = by_chain(rules);
    let chain = rule.chain;
    let index = place(&mut chains, rule.clone(), position)?;
    check(&state, &chains, &rule).await?;
    let item = save(&state, chains, chain, index).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Replace a rule (same id), moving it when the body has a `position`.
#[utoipa::path(
    put,
    path = "/api/v1/firewall/rules/{id}",
    operation_id = "replaceRule",
    tag = "firewall-rules",
    params(("id" = u32, Path, description = "The rule's id")),
    request_body = RuleBody,
    responses(
        (status = 200, description = "Stored", body = RuleItem),
        (status = 400, description = "Not a valid rule, another id, a position past the end, or problems (each in `details`)", body = ErrorBody),
        (status = 404, description = "No such rule in the candidate", body = ErrorBody),
    ),
)]
async fn replace(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<RuleItem>, Error> {
    let n = parse_id(&id)?;
    let (mut rule, position) = rule_body(body)?;
    if rule.id != 0 && rule.id != n {
        return Err(Error::BadRequest(format!(
            "the body's id {} is not the path's {n}",
            rule.id
        )));
    }
    rule.id = n;
    let _writer = state.firewall.lock().await;
    let (_, rules) = store::candidate_rules(&state.db).await?;
    let mut chains = by_chain(rules);
    let (old_chain, old_index) = chains
        .iter()
        .enumerate()
        .find_map(|(c, rs)| rs.iter().position(|r| r.id == n).map(|i| (c, i)))
        .ok_or_else(|| not_found(&id))?;
    chains[old_chain].remove(old_index);
    // Without a position the rule stays where it was (in its chain).
    let position =
        position.or_else(|| (rule.chain.index() as usize == old_chain).then_some(old_index + 1));
    let chain = rule.chain;
    let index = place(&mut chains, rule.clone(), position)?;
    check(&state, &chains, &rule).await?;
    Ok(Json(save(&state, chains, chain, index).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDeleted {
    /// The id of the rule deleted.
    pub deleted: u32,
}

#[utoipa::path(
    delete,
    path = "/api/v1/firewall/rules/{id}",
    operation_id = "deleteRule",
    tag = "firewall-rules",
    params(("id" = u32, Path, description = "The rule's id")),
    responses(
        (status = 200, description = "Deleted", body = RuleDeleted),
        (status = 404, description = "No such rule in the candidate", body = ErrorBody),
    ),
)]
async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RuleDeleted>, Error> {
    let n = parse_id(&id)?;
    let _writer = state.firewall.lock().await;
    let (_, rules) = store::candidate_rules(&state.db).await?;
    if !rules.iter().any(|r| r.id == n) {
        return Err(not_found(&id));
    }
    let kept: Vec<Rule> = rules.into_iter().filter(|r| r.id != n).collect();
    store::replace_candidate_rules(&state.db, &kept).await?;
    Ok(Json(RuleDeleted { deleted: n }))
}

#[cfg(test)]
mod tests;
