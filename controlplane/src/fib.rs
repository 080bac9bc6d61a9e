//! The forwarding information base as userspace models it: interfaces,
//! routes, next hops, ECMP groups and neighbours, with ids assigned and
//! reference counted. Every change returns the map operations that make the
//! XDP maps equal to the model, **in a safe order**: a next hop or group is
//! written before the route that uses it, and a route is removed before the
//! next hop it used is freed. `dataplane::Dataplane` applies them.
//!
//! This module never touches the kernel, so its ordering and bookkeeping
//! are unit-tested as plain data.
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
    str::FromStr,
};

use dataplane_common::{
    IFACE_F_FORWARD, IFACE_F_UP, IfaceInfo, MAX_ECMP, MAX_IFACE_SLOTS, MAX_NEIGHBOURS,
    MAX_NEXTHOPS, MAX_NH_GROUPS, MAX_ROUTES_V4, MAX_ROUTES_V6, MAX_VLANS, NH_CONNECTED,
    NH_GATEWAY_V4, NH_GATEWAY_V6, NeighKey, Neighbour, NextHop, NhGroup, ROUTE_BLACKHOLE,
    ROUTE_KERNEL, ROUTE_LOCAL, ROUTE_MULTIPATH, ROUTE_PROHIBIT, ROUTE_UNICAST, ROUTE_UNREACHABLE,
    Route, VlanKey, ipv4_mapped,
};
pub use ipnet::IpNet;

/// Most members an ECMP group can have in XDP.
pub const MAX_ECMP_MEMBERS: usize = MAX_ECMP;
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FibError {
    #[error("the IPv{family} route table is full ({max} routes)")]
    FullRoutes { family: u8, max: u32 },
    #[error("no free next-hop id ({max} in use)")]
    FullNextHops { max: u32 },
    #[error("no free ECMP group id ({max} in use)")]
    FullGroups { max: u32 },
    #[error("the neighbour table is full ({max} entries)")]
    FullNeighbours { max: u32 },
    #[error("no free interface slot ({max} interfaces)", max = MAX_IFACE_SLOTS - 1)]
    FullInterfaces,
    #[error("too many VLAN sub-interfaces ({MAX_VLANS})")]
    FullVlans,
    #[error("an ECMP group has {count} members; at most {MAX_ECMP} are supported")]
    GroupTooLarge { count: usize },
    #[error("a multipath route needs at least one next hop")]
    EmptyGroup,
    #[error("interface {0} is not managed by xdpgate")]
    UnknownInterface(u32),
    #[error("next hop {gateway} is not of the route's address family ({prefix})")]
    FamilyMismatch { prefix: IpNet, gateway: IpAddr },
    #[error("no route {0}")]
    NoSuchRoute(IpNet),
    #[error("VLAN id {0} is out of range (1..=4094)")]
    BadVlanId(u32),
    #[error("MTU {0} is out of range (68..=65536)")]
    BadMtu(u32),
}

/// Parse a prefix strictly: `198.18.0.0/15`, `2001:db8::/32`, or a bare
/// address (a host route). Host bits must be zero, as `ip route` insists.
pub fn parse_prefix(s: &str) -> Result<IpNet, PrefixError> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(if s.contains('/') {
                    PrefixError::BadLength(s.to_owned())
                } else {
                    PrefixError::BadAddress(s.to_owned())
                });
            }
        },
    };
    if net.trunc() != net {
        return Err(PrefixError::HostBits {
            given: s.to_owned(),
            network: net.trunc(),
        });
    }
    Ok(net)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("{0:?} is not an IP address or prefix")]
    BadAddress(String),
    #[error("{0:?} is not a valid prefix (address/length, length 0-32 for IPv4, 0-128 for IPv6)")]
    BadLength(String),
    #[error("{given:?} has host bits set; did you mean {network}?")]
    HostBits { given: String, network: IpNet },
}

/// Where a next hop sends packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct NextHopSpec {
    /// None: a connected route; the packet's destination is the neighbour.
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
}

impl NextHopSpec {
    fn to_map(self) -> NextHop {
        match self.gateway {
            None => NextHop {
                ifindex: self.ifindex,
                family: NH_CONNECTED,
                gateway: [0; 16],
            },
            Some(IpAddr::V4(a)) => NextHop {
                ifindex: self.ifindex,
                family: NH_GATEWAY_V4,
                gateway: ipv4_mapped(a.octets()),
            },
            Some(IpAddr::V6(a)) => NextHop {
                ifindex: self.ifindex,
                family: NH_GATEWAY_V6,
                gateway: a.octets(),
            },
        }
    }
}

/// What a route does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RouteTarget {
    Unicast {
        nexthop: NextHopSpec,
    },
    Multipath {
        nexthops: Vec<NextHopSpec>,
    },
    Local,
    Blackhole,
    Unreachable,
    Prohibit,
    /// Routed by the kernel through an interface XDP does not own: punt.
    Kernel,
}

/// An interface as XDP needs to know it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Iface {
    pub ifindex: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// 0 for an untagged interface.
    pub vlan_id: u32,
    /// The port: `ifindex` itself unless this is a VLAN sub-interface.
    pub parent_ifindex: u32,
    pub up: bool,
}

/// One change to the XDP maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    SetIface(u32, IfaceInfo),
    DelIface(u32),
    /// Add a port to the redirect table.
    SetPort(u32),
    DelPort(u32),
    SetVlan(VlanKey, u32),
    DelVlan(VlanKey),
    SetNextHop(u32, NextHop),
    ClearNextHop(u32),
    SetGroup(u32, NhGroup),
    ClearGroup(u32),
    SetRoute(IpNet, Route),
    DelRoute(IpNet),
    SetNeighbour(NeighKey, Neighbour),
    DelNeighbour(NeighKey),
}

/// Ids 1..max handed out smallest-first; 0 is never used (an all-zero map
/// entry is then visibly "nothing").
#[derive(Debug, Default, Clone)]
struct IdPool {
    next: u32,
    free: Vec<u32>,
}

impl IdPool {
    fn take(&mut self, max: u32) -> Option<u32> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if self.next + 1 >= max {
            return None;
        }
        self.next += 1;
        Some(self.next)
    }
    fn give(&mut self, id: u32) {
        self.free.push(id);
    }
}

#[derive(Debug, Clone, Copy)]
struct Counted {
    id: u32,
    refs: u32,
}

/// The model. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct Fib {
    ifaces: BTreeMap<u32, (Iface, u32)>,
    slots: IdPool,
    routes: BTreeMap<IpNet, RouteTarget>,
    routes_v4: u32,
    routes_v6: u32,
    nexthops: HashMap<NextHopSpec, Counted>,
    nh_ids: IdPool,
    groups: HashMap<Vec<u32>, Counted>,
    group_ids: IdPool,
    neighbours: HashMap<NeighKey, (IpAddr, [u8; 6])>,
}

/// Neighbour key of `addr` on `ifindex`.
pub fn neigh_key(ifindex: u32, addr: IpAddr) -> NeighKey {
    NeighKey {
        ifindex,
        addr: match addr {
            IpAddr::V4(a) => ipv4_mapped(a.octets()),
            IpAddr::V6(a) => a.octets(),
        },
    }
}

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Fib {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ifaces(&self) -> impl Iterator<Item = (&Iface, u32)> {
        self.ifaces.values().map(|(i, slot)| (i, *slot))
    }

    pub fn iface(&self, ifindex: u32) -> Option<&Iface> {
        self.ifaces.get(&ifindex).map(|(i, _)| i)
    }

    pub fn routes(&self) -> impl Iterator<Item = (&IpNet, &RouteTarget)> {
        self.routes.iter()
    }

    /// Routes in prefix order, starting after `after`, limited to prefixes
    /// inside `within`. A range scan over the sorted table: a page costs
    /// O(log n + its length), not a walk of the whole table. (`IpNet`
    /// orders by family, then address, then length, so the prefixes inside
    /// `within` form one run starting at its network address.)
    pub fn routes_after(
        &self,
        after: Option<IpNet>,
        within: Option<IpNet>,
    ) -> impl Iterator<Item = (&IpNet, &RouteTarget)> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = match (after, within) {
            (Some(a), _) => Excluded(a),
            (None, Some(w)) => Included(IpNet::new(w.network(), 0).expect("length 0 is valid")),
            (None, None) => Unbounded,
        };
        self.routes
            .range((lower, Unbounded))
            .take_while(move |(p, _)| within.is_none_or(|w| p.network() <= w.broadcast()))
            .filter(move |(p, _)| within.is_none_or(|w| w.contains(*p)))
    }

    pub fn route(&self, prefix: &IpNet) -> Option<&RouteTarget> {
        self.routes.get(prefix)
    }

    pub fn neighbours(&self) -> impl Iterator<Item = (u32, IpAddr, [u8; 6])> + '_ {
        self.neighbours
            .iter()
            .map(|(k, (addr, mac))| (k.ifindex, *addr, *mac))
    }

    pub fn route_count(&self) -> (u32, u32) {
        (self.routes_v4, self.routes_v6)
    }

    pub fn nexthop_count(&self) -> usize {
        self.nexthops.len()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn info(iface: &Iface, slot: u32) -> IfaceInfo {
        IfaceInfo {
            counter_slot: slot,
            flags: IFACE_F_FORWARD | if iface.up { IFACE_F_UP } else { 0 },
            mtu: iface.mtu,
            vlan_id: iface.vlan_id,
            parent_ifindex: iface.parent_ifindex,
            mac: iface.mac,
            _pad: [0; 2],
        }
    }

    /// Add or update a managed interface. A VLAN sub-interface's parent port
    /// must be managed first.
    pub fn set_iface(&mut self, iface: Iface) -> Result<Vec<MapOp>, FibError> {
        if iface.vlan_id > 4094 {
            return Err(FibError::BadVlanId(iface.vlan_id));
        }
        if !(68..=65536).contains(&iface.mtu) {
            return Err(FibError::BadMtu(iface.mtu));
        }
        if iface.vlan_id != 0 && !self.ifaces.contains_key(&iface.parent_ifindex) {
            return Err(FibError::UnknownInterface(iface.parent_ifindex));
        }
        let mut ops = Vec::new();
        let slot = match self.ifaces.get(&iface.ifindex) {
            Some((old, slot)) => {
                if old.vlan_id != iface.vlan_id || old.parent_ifindex != iface.parent_ifindex {
                    ops.extend(self.vlan_ops_del(old));
                }
                *slot
            }
            None => {
                let vlans = self.ifaces.values().filter(|(i, _)| i.vlan_id != 0).count();
                if iface.vlan_id != 0 && vlans as u32 >= MAX_VLANS {
                    return Err(FibError::FullVlans);
                }
                self.slots
                    .take(MAX_IFACE_SLOTS)
                    .ok_or(FibError::FullInterfaces)?
            }
        };
        ops.push(MapOp::SetIface(iface.ifindex, Self::info(&iface, slot)));
        if iface.vlan_id == 0 {
            ops.push(MapOp::SetPort(iface.ifindex));
        } else {
            ops.push(MapOp::SetVlan(
                VlanKey {
                    parent_ifindex: iface.parent_ifindex,
                    vid: iface.vlan_id,
                },
                iface.ifindex,
            ));
        }
        self.ifaces.insert(iface.ifindex, (iface, slot));
        Ok(ops)
    }

    fn vlan_ops_del(&self, iface: &Iface) -> Vec<MapOp> {
        if iface.vlan_id == 0 {
            vec![MapOp::DelPort(iface.ifindex)]
        } else {
            vec![MapOp::DelVlan(VlanKey {
                parent_ifindex: iface.parent_ifindex,
                vid: iface.vlan_id,
            })]
        }
    }

    /// Counter slot of a managed interface.
    pub fn slot(&self, ifindex: u32) -> Option<u32> {
        self.ifaces.get(&ifindex).map(|(_, s)| *s)
    }

    /// Stop managing an interface: its routes' next hops through it stay in
    /// the model (the kernel withdraws those routes and netlink tells us);
    /// XDP punts what still points at it (`egress_unmanaged`).
    pub fn del_iface(&mut self, ifindex: u32) -> Result<Vec<MapOp>, FibError> {
        let (iface, slot) = self
            .ifaces
            .remove(&ifindex)
            .ok_or(FibError::UnknownInterface(ifindex))?;
        self.slots.give(slot);
        let mut ops = self.vlan_ops_del(&iface);
        ops.push(MapOp::DelIface(ifindex));
        Ok(ops)
    }

    fn check_family(prefix: &IpNet, nh: &NextHopSpec) -> Result<(), FibError> {
        match (prefix, nh.gateway) {
            (IpNet::V4(_), Some(IpAddr::V6(_))) | (IpNet::V6(_), Some(IpAddr::V4(_))) => {
                Err(FibError::FamilyMismatch {
                    prefix: *prefix,
                    gateway: nh.gateway.expect("matched Some"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Take a reference on a next hop, creating it (and its map op) if new.
    fn ref_nexthop(&mut self, spec: NextHopSpec, ops: &mut Vec<MapOp>) -> Result<u32, FibError> {
        if let Some(c) = self.nexthops.get_mut(&spec) {
            c.refs += 1;
            return Ok(c.id);
        }
        let id = self
            .nh_ids
            .take(MAX_NEXTHOPS)
            .ok_or(FibError::FullNextHops { max: MAX_NEXTHOPS })?;
        self.nexthops.insert(spec, Counted { id, refs: 1 });
        ops.push(MapOp::SetNextHop(id, spec.to_map()));
        Ok(id)
    }

    fn unref_nexthop(&mut self, spec: &NextHopSpec, ops: &mut Vec<MapOp>) {
        if let Some(c) = self.nexthops.get_mut(spec) {
            c.refs -= 1;
            if c.refs == 0 {
                let id = c.id;
                self.nexthops.remove(spec);
                self.nh_ids.give(id);
                ops.push(MapOp::ClearNextHop(id));
            }
        }
    }

    fn ref_group(&mut self, members: Vec<u32>, ops: &mut Vec<MapOp>) -> Result<u32, FibError> {
        if let Some(c) = self.groups.get_mut(&members) {
            c.refs += 1;
            return Ok(c.id);
        }
        let id = self
            .group_ids
            .take(MAX_NH_GROUPS)
            .ok_or(FibError::FullGroups { max: MAX_NH_GROUPS })?;
        let mut group = NhGroup {
            count: members.len() as u32,
            members: [0; MAX_ECMP],
        };
        group.members[..members.len()].copy_from_slice(&members);
        ops.push(MapOp::SetGroup(id, group));
        self.groups.insert(members, Counted { id, refs: 1 });
        Ok(id)
    }

    fn unref_group(&mut self, members: &[u32], ops: &mut Vec<MapOp>) {
        if let Some(c) = self.groups.get_mut(members) {
            c.refs -= 1;
            if c.refs == 0 {
                let id = c.id;
                self.groups.remove(members);
                self.group_ids.give(id);
                ops.push(MapOp::ClearGroup(id));
            }
        }
    }

    /// Sorted, deduplicated members so equal sets share one group.
    fn normalise(nexthops: &[NextHopSpec]) -> Vec<NextHopSpec> {
        let mut v = nexthops.to_vec();
        v.sort();
        v.dedup();
        v
    }

    /// Take references for `target` and return its map value. Rolls back
    /// its own references if an id pool runs dry half-way.
    fn acquire(
        &mut self,
        prefix: &IpNet,
        target: &RouteTarget,
        ops: &mut Vec<MapOp>,
    ) -> Result<Route, FibError> {
        let simple = |kind| Route { kind, nh: 0 };
        Ok(match target {
            RouteTarget::Local => simple(ROUTE_LOCAL),
            RouteTarget::Blackhole => simple(ROUTE_BLACKHOLE),
            RouteTarget::Unreachable => simple(ROUTE_UNREACHABLE),
            RouteTarget::Prohibit => simple(ROUTE_PROHIBIT),
            RouteTarget::Kernel => simple(ROUTE_KERNEL),
            RouteTarget::Unicast { nexthop } => Route {
                kind: ROUTE_UNICAST,
                nh: self.ref_nexthop(*nexthop, ops)?,
            },
            RouteTarget::Multipath { nexthops } => {
                let mut ids = Vec::with_capacity(nexthops.len());
                for nh in nexthops {
                    match self.ref_nexthop(*nh, ops) {
                        Ok(id) => ids.push(id),
                        Err(e) => {
                            for done in &nexthops[..ids.len()] {
                                self.unref_nexthop(done, ops);
                            }
                            return Err(e);
                        }
                    }
                }
                match self.ref_group(ids, ops) {
                    Ok(id) => Route {
                        kind: ROUTE_MULTIPATH,
                        nh: id,
                    },
                    Err(e) => {
                        for nh in nexthops {
                            self.unref_nexthop(nh, ops);
                        }
                        let _ = prefix;
                        return Err(e);
                    }
                }
            }
        })
    }

    fn release(&mut self, target: &RouteTarget, ops: &mut Vec<MapOp>) {
        match target {
            RouteTarget::Unicast { nexthop } => self.unref_nexthop(nexthop, ops),
            RouteTarget::Multipath { nexthops } => {
                let ids: Vec<u32> = nexthops
                    .iter()
                    .filter_map(|n| self.nexthops.get(n).map(|c| c.id))
                    .collect();
                self.unref_group(&ids, ops);
                for nh in nexthops {
                    self.unref_nexthop(nh, ops);
                }
            }
            _ => {}
        }
    }

    /// Add or replace the route for `prefix`. The new value is written over
    /// the old in one map update, so a packet sees the old route or the new.
    pub fn set_route(
        &mut self,
        prefix: IpNet,
        target: RouteTarget,
    ) -> Result<Vec<MapOp>, FibError> {
        let prefix = prefix.trunc();
        let target = match target {
            RouteTarget::Multipath { nexthops } => {
                let n = Self::normalise(&nexthops);
                match n.len() {
                    0 => return Err(FibError::EmptyGroup),
                    1 => RouteTarget::Unicast { nexthop: n[0] },
                    c if c > MAX_ECMP => return Err(FibError::GroupTooLarge { count: c }),
                    _ => RouteTarget::Multipath { nexthops: n },
                }
            }
            t => t,
        };
        let nhs: &[NextHopSpec] = match &target {
            RouteTarget::Unicast { nexthop } => std::slice::from_ref(nexthop),
            RouteTarget::Multipath { nexthops } => nexthops,
            _ => &[],
        };
        for nh in nhs {
            Self::check_family(&prefix, nh)?;
            if !self.ifaces.contains_key(&nh.ifindex) {
                return Err(FibError::UnknownInterface(nh.ifindex));
            }
        }
        if self.routes.get(&prefix) == Some(&target) {
            return Ok(Vec::new());
        }
        let is_new = !self.routes.contains_key(&prefix);
        if is_new {
            match prefix {
                IpNet::V4(_) if self.routes_v4 >= MAX_ROUTES_V4 => {
                    return Err(FibError::FullRoutes {
                        family: 4,
                        max: MAX_ROUTES_V4,
                    });
                }
                IpNet::V6(_) if self.routes_v6 >= MAX_ROUTES_V6 => {
                    return Err(FibError::FullRoutes {
                        family: 6,
                        max: MAX_ROUTES_V6,
                    });
                }
                _ => {}
            }
        }
        let mut ops = Vec::new();
        let value = self.acquire(&prefix, &target, &mut ops)?;
        ops.push(MapOp::SetRoute(prefix, value));
        if let Some(old) = self.routes.insert(prefix, target) {
            self.release(&old, &mut ops);
        } else {
            match prefix {
                IpNet::V4(_) => self.routes_v4 += 1,
                IpNet::V6(_) => self.routes_v6 += 1,
            }
        }
        Ok(ops)
    }

    /// Remove the route for `prefix`; then free what only it used.
    pub fn del_route(&mut self, prefix: IpNet) -> Result<Vec<MapOp>, FibError> {
        let prefix = prefix.trunc();
        let old = self
            .routes
            .remove(&prefix)
            .ok_or(FibError::NoSuchRoute(prefix))?;
        match prefix {
            IpNet::V4(_) => self.routes_v4 -= 1,
            IpNet::V6(_) => self.routes_v6 -= 1,
        }
        let mut ops = vec![MapOp::DelRoute(prefix)];
        self.release(&old, &mut ops);
        Ok(ops)
    }

    /// Add or update the neighbour `addr` on `ifindex`.
    pub fn set_neighbour(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        mac: [u8; 6],
    ) -> Result<Vec<MapOp>, FibError> {
        if !self.ifaces.contains_key(&ifindex) {
            return Err(FibError::UnknownInterface(ifindex));
        }
        let key = neigh_key(ifindex, addr);
        match self.neighbours.get(&key) {
            Some((_, old)) if *old == mac => return Ok(Vec::new()),
            None if self.neighbours.len() as u32 >= MAX_NEIGHBOURS => {
                return Err(FibError::FullNeighbours {
                    max: MAX_NEIGHBOURS,
                });
            }
            _ => {}
        }
        self.neighbours.insert(key, (addr, mac));
        Ok(vec![MapOp::SetNeighbour(
            key,
            Neighbour { mac, _pad: [0; 2] },
        )])
    }

    /// Forget a neighbour (no-op if unknown).
    pub fn del_neighbour(&mut self, ifindex: u32, addr: IpAddr) -> Vec<MapOp> {
        let key = neigh_key(ifindex, addr);
        match self.neighbours.remove(&key) {
            Some(_) => vec![MapOp::DelNeighbour(key)],
            None => Vec::new(),
        }
    }
}

/// A `--route` flag: `PREFIX via GATEWAY dev IF`, `PREFIX dev IF`,
/// `PREFIX via GW1 dev IF1 via GW2 dev IF2 ...` (ECMP), or
/// `blackhole|unreachable|prohibit|local PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub prefix: IpNet,
    pub kind: RouteSpecKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSpecKind {
    /// (gateway, device name) pairs; one pair is a unicast route.
    Via(Vec<(Option<IpAddr>, String)>),
    Local,
    Blackhole,
    Unreachable,
    Prohibit,
}

impl FromStr for RouteSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let usage = "expected `PREFIX [via GATEWAY] dev IF [via GATEWAY dev IF ...]` or `blackhole|unreachable|prohibit|local PREFIX`";
        let (kind_word, rest) = match words.first().copied() {
            Some(w @ ("blackhole" | "unreachable" | "prohibit" | "local")) => {
                (Some(w), &words[1..])
            }
            Some(_) => (None, &words[..]),
            None => return Err(format!("empty route; {usage}")),
        };
        let prefix_word = rest.first().ok_or_else(|| format!("no prefix; {usage}"))?;
        let prefix = parse_prefix(prefix_word).map_err(|e| e.to_string())?;
        if let Some(k) = kind_word {
            if rest.len() != 1 {
                return Err(format!("unexpected words after {k} {prefix}; {usage}"));
            }
            let kind = match k {
                "blackhole" => RouteSpecKind::Blackhole,
                "unreachable" => RouteSpecKind::Unreachable,
                "prohibit" => RouteSpecKind::Prohibit,
                _ => RouteSpecKind::Local,
            };
            return Ok(RouteSpec { prefix, kind });
        }
        let mut hops = Vec::new();
        let mut it = rest[1..].iter();
        let mut gateway = None;
        while let Some(w) = it.next() {
            match *w {
                "via" => {
                    let g = it
                        .next()
                        .ok_or_else(|| format!("`via` needs an address; {usage}"))?;
                    let g: IpAddr = g
                        .parse()
                        .map_err(|_| format!("{g:?} is not an IP address"))?;
                    gateway = Some(g);
                }
                "dev" => {
                    let d = it
                        .next()
                        .ok_or_else(|| format!("`dev` needs a name; {usage}"))?;
                    hops.push((gateway.take(), (*d).to_owned()));
                }
                other => return Err(format!("unexpected {other:?}; {usage}")),
            }
        }
        if gateway.is_some() || hops.is_empty() {
            return Err(format!("every next hop needs `dev IF`; {usage}"));
        }
        Ok(RouteSpec {
            prefix,
            kind: RouteSpecKind::Via(hops),
        })
    }
}

/// A `--neigh` flag: `ADDRESS lladdr MAC dev IF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighSpec {
    pub addr: IpAddr,
    pub mac: [u8; 6],
    pub dev: String,
}

impl FromStr for NeighSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected `ADDRESS lladdr aa:bb:cc:dd:ee:ff dev IF`";
        match s.split_whitespace().collect::<Vec<_>>()[..] {
            [addr, "lladdr", mac, "dev", dev] => Ok(NeighSpec {
                addr: addr
                    .parse()
                    .map_err(|_| format!("{addr:?} is not an IP address; {usage}"))?,
                mac: parse_mac(mac).ok_or_else(|| format!("{mac:?} is not a MAC; {usage}"))?,
                dev: dev.to_owned(),
            }),
            _ => Err(usage.to_owned()),
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hop = |f: &mut fmt::Formatter<'_>, n: &NextHopSpec| match n.gateway {
            Some(g) => write!(f, "via {g} ifindex {}", n.ifindex),
            None => write!(f, "dev ifindex {}", n.ifindex),
        };
        match self {
            RouteTarget::Unicast { nexthop } => hop(f, nexthop),
            RouteTarget::Multipath { nexthops } => {
                for (i, n) in nexthops.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str("nexthop ")?;
                    hop(f, n)?;
                }
                Ok(())
            }
            RouteTarget::Local => f.write_str("local"),
            RouteTarget::Blackhole => f.write_str("blackhole"),
            RouteTarget::Unreachable => f.write_str("unreachable"),
            RouteTarget::Prohibit => f.write_str("prohibit"),
            RouteTarget::Kernel => f.write_str("kernel"),
        }
    }
}

#[cfg(test)]
mod tests;
