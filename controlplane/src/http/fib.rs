//! Read-only views of what the XDP maps hold: routes, neighbours, links.
//! Every list is paged: `limit` (1..=1000, default 100) and an opaque
//! `cursor` from the previous page's `next_cursor`.
use std::{collections::HashMap, net::IpAddr};

use axum::{Json, Router, extract::State, routing::get};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    AppState, Error,
    error::{ApiQuery, ErrorBody},
};
use crate::fib::{self, IpNet, RouteTarget};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/routes", get(routes))
        .route("/neighbours", get(neighbours))
        .route("/links", get(links))
}

pub const MAX_LIMIT: usize = 1000;

/// `GET /routes`'s query; the other lists take the same struct and refuse
/// `prefix`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Entries per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's `next_cursor`.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Routes: only prefixes inside this one.
    #[param(min_length = 1, example = "198.18.0.0/15")]
    pub prefix: Option<String>,
    /// Only entries on this interface.
    pub dev: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Entries matching the filters, over all pages (absent where counting
    /// would mean walking a large table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    pub next_cursor: Option<String>,
}

fn page<T>(all: Vec<T>, q: &ListQuery) -> Result<Page<T>, Error> {
    page_of(all, q.limit, q.cursor.as_deref())
}

/// One page of `all` (already filtered and in order): `limit` entries from
/// the offset `cursor` names. Shared by the lists kept in memory.
pub(crate) fn page_of<T>(
    all: Vec<T>,
    limit: Option<usize>,
    cursor: Option<&str>,
) -> Result<Page<T>, Error> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be 1..={MAX_LIMIT}, not {limit}"
        )));
    }
    let start = match cursor {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| Error::BadRequest(format!("cursor {c:?} is not one this API gave")))?,
    };
    let total = all.len();
    let end = start.saturating_add(limit).min(total);
    let next_cursor = (end < total).then(|| end.to_string());
    let items = all.into_iter().skip(start).take(limit).collect();
    Ok(Page {
        items,
        total: Some(total),
        next_cursor,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NextHopView {
    /// `null`: a connected route.
    #[schema(value_type = Option<String>, example = "198.18.1.1")]
    pub gateway: Option<IpAddr>,
    pub dev: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    #[schema(value_type = String, example = "198.18.0.0/15")]
    pub prefix: IpNet,
    /// `unicast`, `multipath`, `local`, `blackhole`, `unreachable`,
    /// `prohibit` or `kernel` (punted to the kernel).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub nexthops: Vec<NextHopView>,
}

fn names(fib: &fib::Fib) -> HashMap<u32, String> {
    fib.ifaces()
        .map(|(i, _)| (i.ifindex, i.name.clone()))
        .collect()
}

fn route_view(prefix: IpNet, t: &RouteTarget, names: &HashMap<u32, String>) -> RouteView {
    let hop = |n: &fib::NextHopSpec| NextHopView {
        gateway: n.gateway,
        dev: names
            .get(&n.ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex {}", n.ifindex)),
    };
    let (kind, nexthops) = match t {
        RouteTarget::Unicast { nexthop } => ("unicast", vec![hop(nexthop)]),
        RouteTarget::Multipath { nexthops } => ("multipath", nexthops.iter().map(hop).collect()),
        RouteTarget::Local => ("local", vec![]),
        RouteTarget::Blackhole => ("blackhole", vec![]),
        RouteTarget::Unreachable => ("unreachable", vec![]),
        RouteTarget::Prohibit => ("prohibit", vec![]),
        RouteTarget::Kernel => ("kernel", vec![]),
    };
    RouteView {
        prefix,
        kind,
        nexthops,
    }
}

/// Routes are paged by prefix: `next_cursor` is the last prefix returned,
/// and a page is a range scan of the sorted table (a full table holds a
/// million routes; a page must not walk them all under the lock).
#[utoipa::path(
    get,
    path = "/api/v1/routes",
    operation_id = "routes",
    tag = "forwarding",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of routes, by prefix", body = Page<RouteView>),
        (status = 400, description = "A bad limit, cursor, prefix or query field", body = ErrorBody),
    ),
)]
async fn routes(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<RouteView>>, Error> {
    let within = q
        .prefix
        .as_deref()
        .map(fib::parse_prefix)
        .transpose()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            fib::parse_prefix(c)
                .map_err(|_| Error::BadRequest(format!("cursor {c:?} is not one this API gave")))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be 1..={MAX_LIMIT}, not {limit}"
        )));
    }
    let dp = state.dataplane.lock().expect("dataplane lock poisoned");
    let names = names(dp.fib());
    let mut items: Vec<RouteView> = dp
        .fib()
        .routes_after(after, within)
        .map(|(p, t)| route_view(*p, t, &names))
        .filter(|r| {
            q.dev
                .as_ref()
                .is_none_or(|d| r.nexthops.iter().any(|n| &n.dev == d))
        })
        .take(limit + 1)
        .collect();
    let (v4, v6) = dp.fib().route_count();
    drop(dp);
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more
        .then(|| items.last().map(|r| r.prefix.to_string()))
        .flatten();
    // Counting the matches of a filter would walk the table: `total` is the
    // table size when unfiltered, and absent otherwise.
    let total = (within.is_none() && q.dev.is_none()).then_some((v4 + v6) as usize);
    Ok(Json(Page {
        items,
        total,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NeighbourView {
    #[schema(value_type = String, example = "198.18.1.2")]
    pub address: IpAddr,
    pub mac: String,
    pub dev: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/neighbours",
    operation_id = "neighbours",
    tag = "forwarding",
    params(
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9]+$", description = "The previous page's `next_cursor`"),
        ("dev" = Option<String>, Query, description = "Only entries on this interface"),
    ),
    responses(
        (status = 200, description = "A page of neighbours, by interface and address", body = Page<NeighbourView>),
        (status = 400, description = "A bad limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn neighbours(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<NeighbourView>>, Error> {
    if q.prefix.is_some() {
        return Err(Error::BadRequest("neighbours take no prefix filter".into()));
    }
    let dp = state.dataplane.lock().expect("dataplane lock poisoned");
    let names = names(dp.fib());
    let mut all: Vec<NeighbourView> = dp
        .fib()
        .neighbours()
        .map(|(i, a, m)| NeighbourView {
            address: a,
            mac: fib::fmt_mac(&m),
            dev: names
                .get(&i)
                .cloned()
                .unwrap_or_else(|| format!("ifindex {i}")),
        })
        .filter(|n| q.dev.as_ref().is_none_or(|d| &n.dev == d))
        .collect();
    drop(dp);
    all.sort_by(|a, b| (&a.dev, a.address).cmp(&(&b.dev, b.address)));
    Ok(Json(page(all, &q)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub name: String,
    pub ifindex: u32,
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    pub vlan_id: u32,
    pub parent_ifindex: u32,
    pub counter_slot: u32,
}

#[utoipa::path(
    get,
    path = "/api/v1/links",
    operation_id = "links",
    tag = "forwarding",
    params(
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^[0-9]+$", description = "The previous page's `next_cursor`"),
        ("dev" = Option<String>, Query, description = "Only this interface"),
    ),
    responses(
        (status = 200, description = "A page of the interfaces XDP forwards to", body = Page<LinkView>),
        (status = 400, description = "A bad limit, cursor or query field", body = ErrorBody),
    ),
)]
async fn links(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<LinkView>>, Error> {
    if q.prefix.is_some() {
        return Err(Error::BadRequest("links take no prefix filter".into()));
    }
    let dp = state.dataplane.lock().expect("dataplane lock poisoned");
    let all: Vec<LinkView> = dp
        .fib()
        .ifaces()
        .filter(|(i, _)| q.dev.as_ref().is_none_or(|d| &i.name == d))
        .map(|(i, slot)| LinkView {
            name: i.name.clone(),
            ifindex: i.ifindex,
            mac: fib::fmt_mac(&i.mac),
            mtu: i.mtu,
            up: i.up,
            vlan_id: i.vlan_id,
            parent_ifindex: i.parent_ifindex,
            counter_slot: slot,
        })
        .collect();
    drop(dp);
    Ok(Json(page(all, &q)?))
}
