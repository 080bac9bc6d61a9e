//! Static routes configured through the API (`/api/v1/routes/static`).
//!
//! A static route is installed into the kernel's main table with rtnetlink
//! (`ip route replace` semantics), in the daemon's namespace, under
//! xdpgate's own protocol number [`RTPROT_XDPGATE`]. The kernel is the one
//! place routes meet: FRR sees it there (as a kernel route), and the
//! netlink sync carries it into the XDP maps like any other route; this
//! module never writes the maps. The route is also stored in SQLite and
//! installed again when the daemon starts ([`reinstall`]), so it survives
//! reboots the kernel does not.
//!
//! A prefix the kernel already routes by some other hand (a connected
//! route, an `ip route add`, FRR) is refused with 409: replacing it would
//! take a route away from whoever made it.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use tracing::{info, warn};

use crate::netlink::RT_TABLE_MAIN;

/// The `rtm_protocol` of xdpgate's routes (`ip route` shows `proto 205`;
/// `echo '205 xdpgate' >> /etc/iproute2/rt_protos` names it). Clear of
/// the kernel's, iproute2's and FRR's (186-199) numbers.
pub const RTPROT_XDPGATE: u8 = 205;

/// The metric the kernel gives an IPv6 route without one
/// (include/net/ip6_route.h IP6_RT_PRIO_USER).
const IP6_RT_PRIO_USER: u32 = 1024;

/// What a static route does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StaticKind {
    /// Forward via `gateway` and/or out of `dev`.
    #[default]
    Unicast,
    /// Drop silently.
    Blackhole,
    /// Drop with ICMP unreachable.
    Unreachable,
    /// Drop with ICMP administratively prohibited.
    Prohibit,
}

impl StaticKind {
    fn name(self) -> &'static str {
        match self {
            StaticKind::Unicast => "unicast",
            StaticKind::Blackhole => "blackhole",
            StaticKind::Unreachable => "unreachable",
            StaticKind::Prohibit => "prohibit",
        }
    }

    fn parse(s: &str) -> Option<StaticKind> {
        [
            StaticKind::Unicast,
            StaticKind::Blackhole,
            StaticKind::Unreachable,
            StaticKind::Prohibit,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }

    fn route_type(self) -> RouteType {
        match self {
            StaticKind::Unicast => RouteType::Unicast,
            StaticKind::Blackhole => RouteType::BlackHole,
            StaticKind::Unreachable => RouteType::Unreachable,
            StaticKind::Prohibit => RouteType::Prohibit,
        }
    }
}

/// A static route as the API takes it: text fields, validated by
/// [`StaticRouteSpec::validate`] so every mistake gets its own message.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRouteSpec {
    /// A prefix without host bits, or a bare address.
    #[schema(example = "198.18.5.0/24")]
    pub prefix: String,
    #[serde(default, rename = "type")]
    pub kind: StaticKind,
    /// An address of the prefix's family.
    #[schema(example = "198.18.2.2")]
    pub gateway: Option<String>,
    /// An interface of the daemon's namespace.
    pub dev: Option<String>,
    pub metric: Option<u32>,
    #[serde(default)]
    pub comment: String,
}

/// A validated static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StaticRoute {
    #[schema(value_type = String, example = "198.18.5.0/24")]
    pub prefix: IpNet,
    #[serde(rename = "type")]
    pub kind: StaticKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "198.18.2.2")]
    pub gateway: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StaticRouteError {
    /// Bad input, every reason listed.
    #[error("the static route was refused: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error(
        "the kernel already has a route for {prefix} (proto {protocol}) that xdpgate did not \
         create; remove it first, or change it where it was made"
    )]
    Foreign { prefix: IpNet, protocol: String },
    #[error("no static route for {0}")]
    NotFound(IpNet),
    /// The kernel refused the route (a gateway it cannot reach, ...).
    #[error("the kernel refused to {op} the route for {prefix}: {reason}")]
    Kernel {
        op: &'static str,
        prefix: IpNet,
        reason: String,
    },
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("listing the kernel's routes: {0}")]
    Dump(String),
    #[error("static route database query failed: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the database holds an unreadable static route {value:?}: {reason}")]
    Corrupt { value: String, reason: String },
}

impl StaticRoute {
    fn family_v4(&self) -> bool {
        matches!(self.prefix, IpNet::V4(_))
    }
}

impl StaticRouteSpec {
    /// Check the route against itself and the interfaces of the calling
    /// thread's namespace; every problem is reported, not just the first.
    pub fn validate(&self) -> Result<StaticRoute, StaticRouteError> {
        let mut problems = Vec::new();
        let prefix = crate::firewall::rule::parse_prefix(self.prefix.trim())
            .map_err(|e| problems.push(format!("prefix: {e}")))
            .ok();
        let gateway = match &self.gateway {
            None => None,
            Some(g) => match g.trim().parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    problems.push(format!("gateway: {g:?} is not an IPv4/IPv6 address"));
                    None
                }
            },
        };
        if let (Some(p), Some(g)) = (prefix, gateway)
            && p.addr().is_ipv4() != g.is_ipv4()
        {
            problems.push(format!(
                "gateway {g} is {} but the prefix {p} is {}",
                family(g.is_ipv4()),
                family(p.addr().is_ipv4())
            ));
        }
        if let Some(dev) = &self.dev
            && crate::dataplane::ifindex(dev).is_err()
        {
            problems.push(format!("dev: interface {dev:?} does not exist"));
        }
        match self.kind {
            StaticKind::Unicast if self.gateway.is_none() && self.dev.is_none() => {
                problems.push("a unicast route needs a gateway, a dev, or both".into())
            }
            StaticKind::Unicast => {}
            other if self.gateway.is_some() || self.dev.is_some() => {
                problems.push(format!("a {} route has no gateway or dev", other.name()))
            }
            _ => {}
        }
        if self.comment.len() > 256 {
            problems.push("comment: at most 256 bytes".into());
        }
        match prefix {
            Some(prefix) if problems.is_empty() => Ok(StaticRoute {
                prefix,
                kind: self.kind,
                gateway,
                dev: self.dev.clone(),
                metric: self.metric,
                comment: self.comment.clone(),
            }),
            _ => Err(StaticRouteError::Invalid(problems)),
        }
    }
}

fn family(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

// ---- the database --------------------------------------------------------

/// Every stored static route, by prefix text.
pub async fn stored(db: &SqlitePool) -> Result<Vec<StaticRoute>, StaticRouteError> {
    let rows: Vec<Row> = sqlx::query_as(
        "select prefix, kind, gateway, dev, metric, comment from static_route order by prefix",
    )
    .fetch_all(db)
    .await?;
    rows.into_iter().map(Row::parse).collect()
}

async fn stored_one(
    db: &SqlitePool,
    prefix: IpNet,
) -> Result<Option<StaticRoute>, StaticRouteError> {
    let row: Option<Row> = sqlx::query_as(
        "select prefix, kind, gateway, dev, metric, comment from static_route where prefix = ?1",
    )
    .bind(prefix.to_string())
    .fetch_optional(db)
    .await?;
    row.map(Row::parse).transpose()
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
);

trait ParseRow {
    fn parse(self) -> Result<StaticRoute, StaticRouteError>;
}

impl ParseRow for Row {
    fn parse(self) -> Result<StaticRoute, StaticRouteError> {
        let (prefix, kind, gateway, dev, metric, comment) = self;
        let corrupt = |value: &str, reason: &str| StaticRouteError::Corrupt {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(StaticRoute {
            prefix: prefix
                .parse()
                .map_err(|_| corrupt(&prefix, "not a prefix"))?,
            kind: StaticKind::parse(&kind).ok_or_else(|| corrupt(&kind, "not a route type"))?,
            gateway: gateway
                .map(|g| g.parse().map_err(|_| corrupt(&g, "not an address")))
                .transpose()?,
            dev,
            metric: metric
                .map(|m| u32::try_from(m).map_err(|_| corrupt(&m.to_string(), "not a metric")))
                .transpose()?,
            comment,
        })
    }
}

async fn store(db: &SqlitePool, r: &StaticRoute) -> Result<(), StaticRouteError> {
    sqlx::query(
        "insert into static_route (prefix, kind, gateway, dev, metric, comment)
         values (?1, ?2, ?3, ?4, ?5, ?6)
         on conflict (prefix) do update set kind = excluded.kind, gateway = excluded.gateway,
           dev = excluded.dev, metric = excluded.metric, comment = excluded.comment,
           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(r.prefix.to_string())
    .bind(r.kind.name())
    .bind(r.gateway.map(|g| g.to_string()))
    .bind(r.dev.as_deref())
    .bind(r.metric.map(i64::from))
    .bind(&r.comment)
    .execute(db)
    .await?;
    Ok(())
}

// ---- the kernel ----------------------------------------------------------

/// A route of the kernel's main table for one prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelRoute {
    pub protocol: u8,
    pub metric: u32,
}

fn connect() -> Result<rtnetlink::Handle, StaticRouteError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(StaticRouteError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The main table's routes for exactly `prefix`. A dump of the family:
/// the kernel's dump filter (strict checking) cannot select a prefix.
async fn kernel_routes(
    handle: &rtnetlink::Handle,
    prefix: IpNet,
) -> Result<Vec<KernelRoute>, StaticRouteError> {
    let query = match prefix {
        IpNet::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpNet::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    let mut dump = handle.route().get(query).execute();
    let mut out = Vec::new();
    while let Some(m) = dump
        .try_next()
        .await
        .map_err(|e| StaticRouteError::Dump(e.to_string()))?
    {
        if let Some(r) = matching(&m, prefix) {
            out.push(r);
        }
    }
    Ok(out)
}

fn matching(m: &RouteMessage, prefix: IpNet) -> Option<KernelRoute> {
    let h = &m.header;
    if h.destination_prefix_length != prefix.prefix_len() {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = None;
    let mut metric = 0;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some(IpAddr::V6(*a)),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    let dst = dst.unwrap_or(match prefix {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    (table == RT_TABLE_MAIN && dst == prefix.addr()).then(|| KernelRoute {
        protocol: u8::from(h.protocol),
        metric,
    })
}

/// The route message for `r`, as `ip route` builds it: link scope for a
/// unicast route without a gateway, universe otherwise.
fn message(r: &StaticRoute) -> Result<RouteMessage, StaticRouteError> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.prefix.addr(), r.prefix.prefix_len())
        .map_err(invalid)?
        .table_id(RT_TABLE_MAIN)
        .protocol(RouteProtocol::from(RTPROT_XDPGATE))
        .kind(r.kind.route_type());
    if let Some(g) = r.gateway {
        b = b.gateway(g).map_err(invalid)?;
    }
    if let Some(dev) = &r.dev {
        let ifindex = crate::dataplane::ifindex(dev).map_err(|_| {
            StaticRouteError::Invalid(vec![format!("dev: interface {dev:?} does not exist")])
        })?;
        b = b.output_interface(ifindex);
    }
    if let Some(m) = r.metric {
        b = b.priority(m);
    }
    let scope = if r.kind == StaticKind::Unicast && r.gateway.is_none() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    Ok(b.scope(scope).build())
}

/// The route builder's refusal (validation normally catches it first).
fn invalid(e: impl std::fmt::Display) -> StaticRouteError {
    StaticRouteError::Invalid(vec![e.to_string()])
}

fn kernel_error(op: &'static str, prefix: IpNet, e: rtnetlink::Error) -> StaticRouteError {
    let reason = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    StaticRouteError::Kernel { op, prefix, reason }
}

/// Refuse when the kernel has a route for the prefix that is not ours.
async fn refuse_foreign(
    handle: &rtnetlink::Handle,
    prefix: IpNet,
) -> Result<Vec<KernelRoute>, StaticRouteError> {
    let routes = kernel_routes(handle, prefix).await?;
    if let Some(r) = routes.iter().find(|r| r.protocol != RTPROT_XDPGATE) {
        return Err(StaticRouteError::Foreign {
            prefix,
            protocol: protocol_name(r.protocol),
        });
    }
    Ok(routes)
}

fn protocol_name(p: u8) -> String {
    // include/uapi/linux/rtnetlink.h RTPROT_*, and FRR's zebra numbers.
    let name = match p {
        2 => "kernel",
        3 => "boot",
        4 => "static",
        16 => "dhcp",
        186 => "bgp",
        187 => "isis",
        188 => "ospf",
        189 => "rip",
        196 => "zebra static",
        _ => return p.to_string(),
    };
    name.to_owned()
}

/// Delete our route(s) for `prefix` from the kernel; gone already is fine.
async fn uninstall(handle: &rtnetlink::Handle, r: &StaticRoute) -> Result<(), StaticRouteError> {
    for k in kernel_routes(handle, r.prefix).await? {
        if k.protocol != RTPROT_XDPGATE {
            continue;
        }
        let mut m = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(r.prefix.addr(), r.prefix.prefix_len())
            .map_err(invalid)?
            .table_id(RT_TABLE_MAIN)
            .protocol(RouteProtocol::from(RTPROT_XDPGATE))
            .priority(k.metric)
            .build();
        // Any type: a route that changed type is still ours to delete.
        m.header.kind = RouteType::Unspec;
        match handle.route().del(m).execute().await {
            Ok(()) => {}
            // ESRCH: deleted meanwhile.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => {}
            Err(e) => return Err(kernel_error("delete", r.prefix, e)),
        }
    }
    Ok(())
}

/// Install `r` (replacing our own route for the prefix, whatever its
/// metric or type; refusing when another owns the prefix) and store it.
pub async fn add(db: &SqlitePool, r: &StaticRoute) -> Result<(), StaticRouteError> {
    let handle = connect()?;
    let ours = refuse_foreign(&handle, r.prefix).await?;
    // `replace` only replaces the route of the same metric: one of ours
    // with another goes first, so a prefix has one xdpgate route. The
    // kernel's default metric is 0 for IPv4 and 1024 for IPv6.
    let metric = r
        .metric
        .unwrap_or(if r.family_v4() { 0 } else { IP6_RT_PRIO_USER });
    if ours.iter().any(|k| k.metric != metric) {
        uninstall(&handle, r).await?;
    }
    handle
        .route()
        .add(message(r)?)
        .replace()
        .execute()
        .await
        .map_err(|e| kernel_error("install", r.prefix, e))?;
    if let Err(e) = store(db, r).await {
        // Not stored means not ours after a restart: take it back out.
        let _ = uninstall(&handle, r).await;
        return Err(e);
    }
    info!(prefix = %r.prefix, kind = r.kind.name(), "static route installed");
    Ok(())
}

/// Remove the static route for `prefix` from the kernel and the database.
pub async fn remove(db: &SqlitePool, prefix: IpNet) -> Result<StaticRoute, StaticRouteError> {
    let r = stored_one(db, prefix)
        .await?
        .ok_or(StaticRouteError::NotFound(prefix))?;
    let handle = connect()?;
    uninstall(&handle, &r).await?;
    sqlx::query("delete from static_route where prefix = ?1")
        .bind(prefix.to_string())
        .execute(db)
        .await?;
    info!(prefix = %prefix, "static route removed");
    Ok(r)
}

/// A stored route and whether the kernel has it now.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StaticRouteState {
    #[serde(flatten)]
    pub route: StaticRoute,
    pub installed: bool,
}

/// Every stored route, each with whether the kernel has it.
pub async fn list(db: &SqlitePool) -> Result<Vec<StaticRouteState>, StaticRouteError> {
    let routes = stored(db).await?;
    if routes.is_empty() {
        return Ok(Vec::new());
    }
    let handle = connect()?;
    let mut out = Vec::with_capacity(routes.len());
    for route in routes {
        let installed = kernel_routes(&handle, route.prefix)
            .await?
            .iter()
            .any(|k| k.protocol == RTPROT_XDPGATE);
        out.push(StaticRouteState { route, installed });
    }
    Ok(out)
}

/// Daemon start: install every stored route again (in the namespace the
/// daemon runs in). A route that cannot be installed (its interface is
/// gone, another owner took the prefix) is logged and skipped; the daemon
/// starts anyway. Returns how many were installed and what failed.
pub async fn reinstall(db: &SqlitePool) -> Result<(usize, Vec<String>), StaticRouteError> {
    let routes = stored(db).await?;
    if routes.is_empty() {
        return Ok((0, Vec::new()));
    }
    let handle = connect()?;
    let mut installed = 0;
    let mut failed = Vec::new();
    for r in routes {
        let done = async {
            refuse_foreign(&handle, r.prefix).await?;
            handle
                .route()
                .add(message(&r)?)
                .replace()
                .execute()
                .await
                .map_err(|e| kernel_error("install", r.prefix, e))
        }
        .await;
        match done {
            Ok(()) => installed += 1,
            Err(e) => {
                warn!(prefix = %r.prefix, "static route not installed at start: {e}");
                failed.push(e.to_string());
            }
        }
    }
    Ok((installed, failed))
}
