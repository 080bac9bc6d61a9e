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
    extract::State,
    http::StatusCode,
    routing::{delete, get},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiJson, ApiPath, ApiQuery, ErrorBody},
};
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

/// `GET /routes/static`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaticQuery {
    /// Routes per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(min_length = 1, pattern = "^[0-9]+$")]
    pub cursor: Option<String>,
}

/// One page of the stored routes, by prefix.
pub type StaticList = super::fib::Page<StaticRouteState>;

#[derive(Debug, Serialize, ToSchema)]
pub struct StaticRouteDeleted {
    /// The route deleted.
    pub deleted: StaticRoute,
}

/// The stored routes, each with whether the kernel has it now.
#[utoipa::path(
    get,
    path = "/api/v1/routes/static",
    operation_id = "listStaticRoutes",
    tag = "static-routes",
    params(StaticQuery),
    responses(
        (status = 200, description = "A page of the stored routes", body = super::fib::Page<StaticRouteState>),
        (status = 400, description = "A bad limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StaticQuery>,
) -> Result<Json<StaticList>, Error> {
    let items = static_routes::list(&state.db).await.map_err(api_error)?;
    Ok(Json(super::fib::page_of(
        items,
        q.limit,
        q.cursor.as_deref(),
    )?))
}

/// Add or replace the route for a prefix.
#[utoipa::path(
    post,
    path = "/api/v1/routes/static",
    operation_id = "addStaticRoute",
    tag = "static-routes",
    request_body = StaticRouteSpec,
    responses(
        (status = 201, description = "Installed and stored", body = StaticRoute),
        (status = 400, description = "Not a valid route (every problem in `details`)", body = ErrorBody),
        (status = 409, description = "The kernel has a route for the prefix that xdpgate did not make", body = ErrorBody),
        (status = 422, description = "The kernel refused the route; the message says why", body = ErrorBody),
    ),
)]
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

/// Delete the static route for a prefix, from the kernel and the store.
#[utoipa::path(
    delete,
    path = "/api/v1/routes/static/{prefix}",
    operation_id = "deleteStaticRoute",
    tag = "static-routes",
    params((
        "prefix" = String, Path,
        description = "The prefix, URL-encoded (`198.18.5.0%2F24`)",
        example = "198.18.5.0/24",
    )),
    responses(
        (status = 200, description = "Deleted", body = StaticRouteDeleted),
        (status = 400, description = "Not a prefix", body = ErrorBody),
        (status = 404, description = "No static route for the prefix", body = ErrorBody),
        (status = 409, description = "The kernel's route for the prefix is not xdpgate's", body = ErrorBody),
        (status = 422, description = "The kernel refused; the message says why", body = ErrorBody),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    ApiPath(prefix): ApiPath<String>,
) -> Result<Json<StaticRouteDeleted>, Error> {
    let net = crate::firewall::rule::parse_prefix(&prefix)
        .map_err(|e| Error::BadRequest(format!("prefix: {e}")))?;
    let route = static_routes::remove(&state.db, net)
        .await
        .map_err(api_error)?;
    Ok(Json(StaticRouteDeleted { deleted: route }))
}

#[cfg(test)]
mod tests;
