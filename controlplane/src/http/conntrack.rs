//! The connection table: list (paged by key, filtered) and flush.
//! Both walk the whole map under the dataplane lock, so they run on a
//! blocking thread, not on the runtime's workers.
use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiQuery, ErrorBody},
};
use crate::conntrack::{self, Filter, Page};

pub fn router() -> Router<AppState> {
    Router::new().route("/conntrack", get(list).delete(flush))
}

pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only connections from an address inside this prefix.
    #[param(min_length = 1)]
    pub src: Option<String>,
    /// Only connections to an address inside this prefix.
    #[param(min_length = 1)]
    pub dst: Option<String>,
    /// Only this protocol (name or number).
    #[param(min_length = 1)]
    pub proto: Option<String>,
    /// Only connections with this source or destination port.
    #[param(maximum = 65535)]
    pub port: Option<u16>,
    /// Only connections in this state.
    #[param(min_length = 1)]
    pub state: Option<String>,
    /// Connections per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(pattern = "^[0-9A-Fa-f]{76}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FilterQuery {
    /// Only connections from an address inside this prefix.
    #[param(min_length = 1)]
    pub src: Option<String>,
    /// Only connections to an address inside this prefix.
    #[param(min_length = 1)]
    pub dst: Option<String>,
    /// Only this protocol (name or number).
    #[param(min_length = 1)]
    pub proto: Option<String>,
    /// Only connections with this source or destination port.
    #[param(maximum = 65535)]
    pub port: Option<u16>,
    /// Only connections in this state.
    #[param(min_length = 1)]
    pub state: Option<String>,
}

fn filter(f: &FilterQuery) -> Result<Filter, Error> {
    Filter::parse(
        f.src.as_deref(),
        f.dst.as_deref(),
        f.proto.as_deref(),
        f.port,
        f.state.as_deref(),
    )
    .map_err(Error::BadRequest)
}

/// Run `f` on the dataplane on a blocking thread.
async fn with_dataplane<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&mut crate::dataplane::Dataplane) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let dp = state.dataplane.clone();
    tokio::task::spawn_blocking(move || {
        let mut dp = dp.lock().expect("dataplane lock poisoned");
        f(&mut dp)
    })
    .await
    .expect("conntrack walk panicked")
}

/// Tracked connections, paged by key, filtered.
#[utoipa::path(
    get,
    path = "/api/v1/conntrack",
    operation_id = "listConnections",
    tag = "conntrack",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of connections", body = crate::conntrack::Page),
        (status = 400, description = "A bad filter, limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page>, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be 1..={MAX_LIMIT}, not {limit}"
        )));
    }
    if let Some(c) = &q.cursor
        && (c.len() != 76 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::BadRequest(format!(
            "cursor {c:?} is not one this API gave"
        )));
    }
    let f = filter(&FilterQuery {
        src: q.src,
        dst: q.dst,
        proto: q.proto,
        port: q.port,
        state: q.state,
    })?;
    let cursor = q.cursor.map(|c| c.to_ascii_lowercase());
    let page = with_dataplane(&state, move |dp| {
        Ok(conntrack::list(
            dp.firewall(),
            &f,
            limit,
            cursor.as_deref(),
        )?)
    })
    .await?;
    Ok(Json(page))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Flushed {
    /// Connections deleted.
    pub deleted: usize,
}

/// Delete the connections matching the filter (all without one).
#[utoipa::path(
    delete,
    path = "/api/v1/conntrack",
    operation_id = "flushConnections",
    tag = "conntrack",
    params(FilterQuery),
    responses(
        (status = 200, description = "Deleted", body = Flushed),
        (status = 400, description = "A bad filter or query field", body = ErrorBody),
    ),
)]
async fn flush(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<FilterQuery>,
) -> Result<Json<Flushed>, Error> {
    let f = filter(&q)?;
    let deleted = with_dataplane(&state, move |dp| {
        Ok(conntrack::flush(dp.firewall_mut(), &f)?)
    })
    .await?;
    tracing::info!(deleted, filter = ?q, "conntrack flush");
    Ok(Json(Flushed { deleted }))
}

#[cfg(test)]
mod tests;
