//! Kernel state in, continuously: links, routes, nexthop objects and
//! neighbours from rtnetlink, reconciled into the Fib (and so the XDP maps).
//!
//! - `source`: the real rtnetlink source (subscribe first, then dump, then
//!   events; on overrun or a closed socket, resubscribe and dump again).
//!   Netlink messages become plain [`KernelEvent`]s in `convert`.
//! - `reconcile`: a pure function of events and the current view that
//!   returns [`reconcile::FibChange`]s, so tests replay event sequences as
//!   data (STYLE.md 18).
//! - `sync`: the task that applies changes to the dataplane.
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

pub mod convert;
pub mod nexthop;
pub mod reconcile;
pub mod source;
pub mod sync;

/// The kernel's main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// The kernel's local table: the box's own addresses (type `local`).
pub const RT_TABLE_LOCAL: u32 = 255;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkState {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Administratively up and with carrier (IFF_UP and IFF_RUNNING).
    pub up: bool,
    /// Administratively up (IFF_UP). Taking a link down makes the kernel
    /// flush its IPv4 routes and nexthop objects *without* announcing it
    /// (net/ipv4/fib_frontend.c fib_disable_ip), so the sync must too.
    pub admin_up: bool,
    /// (parent ifindex, VLAN id) for an 802.1Q sub-interface.
    pub vlan: Option<(u32, u32)>,
}

/// What a kernel route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KRouteKind {
    Unicast,
    Local,
    Blackhole,
    Unreachable,
    Prohibit,
    /// broadcast, anycast, multicast, throw, nat, ...: not for XDP.
    Other,
}

/// One next hop of a kernel route (or of a nexthop object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct KNextHop {
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
}

/// Identity of a kernel route: IPv4 keeps one per (table, prefix, metric)
/// (and TOS, which xdpgate ignores); IPv6 also tells routes apart by their
/// device (`fe80::/64` exists once per interface), so `oif` is part of the
/// key for IPv6 and 0 for IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KRouteKey {
    pub table: u32,
    pub prefix: IpNet,
    pub metric: u32,
    pub oif: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KRoute {
    pub key: KRouteKey,
    pub kind: KRouteKind,
    /// Inline next hops (RTA_GATEWAY/RTA_OIF or RTA_MULTIPATH).
    pub nexthops: Vec<KNextHop>,
    /// A nexthop object (RTA_NH_ID), as FRR installs them.
    pub nhid: Option<u32>,
}

/// A nexthop object (RTM_NEWNEXTHOP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NhObject {
    Single(KNextHop),
    /// Member object ids (weights are ignored: XDP spreads evenly).
    Group(Vec<u32>),
    Blackhole,
}

/// One normalised kernel fact or its withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Link(LinkState),
    LinkGone(u32),
    Route(KRoute),
    /// A route that replaces whatever the table had for the same prefix and
    /// metric (NLM_F_REPLACE; `ip -6 route replace` onto another device
    /// sends no delete for the old one).
    RouteReplace(KRoute),
    /// A deleted route, with the next hops the kernel named (an IPv6
    /// multipath member is deleted one at a time).
    RouteGone(KRoute),
    Nexthop(u32, NhObject),
    NexthopGone(u32),
    /// A neighbour in a usable state (reachable, stale, delay, probe,
    /// permanent, noarp) with its MAC.
    Neighbour {
        ifindex: u32,
        addr: IpAddr,
        mac: [u8; 6],
    },
    /// Removed, failed or incomplete: not usable.
    NeighbourGone {
        ifindex: u32,
        addr: IpAddr,
    },
}

/// What a source delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    Event(KernelEvent),
    /// A complete dump after (re)subscribing: replaces the whole view.
    Snapshot(Vec<KernelEvent>),
    /// Time passed (about once a second): ask again for next hops that are
    /// still unresolved. The source owns time so that `next()` is never
    /// cancelled half-way (a dump in progress is not cancel-safe).
    Tick,
}

/// Where kernel state comes from: rtnetlink in production, a script in tests.
pub trait Source: Send {
    /// The next event, or None when the source is finished for good.
    fn next(&mut self) -> impl std::future::Future<Output = Option<SourceEvent>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("netlink dump of {what} failed: {reason}")]
    Dump { what: &'static str, reason: String },
    #[error("netlink request failed: {0}")]
    Request(String),
}
