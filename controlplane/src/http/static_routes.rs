//! Static routes (`static_routes`): installed into the kernel, from where
//! the netlink sync carries them into XDP (`GET /routes` shows them there).
//!
//! - `GET /routes/static`: the stored routes, each with `installed` (the
//!   kernel has it now).
//! - `POST /routes/static`: add or replace the route for a prefix.
//! - `DELETE /routes/static/{prefix}`: the prefix URL-encoded
//!   (`198.18.5.0%2F24`).
use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{delete, get},
};
use serde::Serialize;
use serde_json::json;

use super::{AppState, Error, error::ApiJson};
use crate::static_routes::{
    self, StaticRoute, StaticRouteError, StaticRouteSpec, StaticRouteState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/routes/static", get(list).post(add))
        .route("/routes/static/{prefix}", delete(remove))
}

/// The operator's mistakes get their status; the box's own failures stay
/// internal (500, logged).
fn api_error(e: StaticRouteError) -> Error {
    match e {
        StaticRouteError::Invalid(problems) => Error::Invalid {
            message: format!(
                "the static route was refused: {} problem{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            ),
            details: problems
                .into_iter()
                .map(|m| json!({ "message": m }))
                .collect(),
        },
        e @ StaticRouteError::Foreign { .. } => Error::Conflict(e.to_string()),
        StaticRouteError::NotFound(p) => Error::NotFound(format!("/api/v1/routes/static/{p}")),
        e @ StaticRouteError::Kernel { .. } => Error::Unprocessable(e.to_string()),
        e => Error::StaticRoute(e),
    }
}

#[derive(Debug, Serialize)]
pub struct StaticList {
    pub items: Vec<StaticRouteState>,
}

async fn list(State(state): State<AppState>) -> Result<Json<StaticList>, Error> {
    let items = static_routes::list(&state.db).await.map_err(api_error)?;
    Ok(Json(StaticList { items }))
}

async fn add(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<StaticRouteSpec>,
) -> Result<(StatusCode, Json<StaticRoute>), Error> {
    let route = spec.validate().map_err(api_error)?;
    static_routes::add(&state.db, &route)
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(route)))
}

async fn remove(
    State(state): State<AppState>,
    Path(prefix): Path<String>,
) -> Result<Json<serde_json::Value>, Error> {
    let net = crate::firewall::rule::parse_prefix(&prefix)
        .map_err(|e| Error::BadRequest(format!("prefix: {e}")))?;
    let route = static_routes::remove(&state.db, net)
        .await
        .map_err(api_error)?;
    Ok(Json(json!({ "deleted": route })))
}

#[cfg(test)]
mod tests;
