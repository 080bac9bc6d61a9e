//! The pure core of the sync: kernel events in, Fib changes out.
//!
//! The reconciler keeps the kernel's view (links, routes by prefix, nexthop
//! objects, neighbours) and the *desired* XDP state derived from it, and
//! emits a change only where the desired state moves. A resync (after an
//! overrun) replaces the view and diffs old desired against new, so the maps
//! are corrected in place: no flush-and-refill window in which traffic
//! would fall through.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::debug;

use super::{
    KNextHop, KRoute, KRouteKind, KernelEvent, LinkState, NhObject, RT_TABLE_LOCAL, RT_TABLE_MAIN,
};
use crate::fib::{Iface, MAX_ECMP_MEMBERS, NextHopSpec, RouteTarget};

/// Ticks (seconds) before an unresolved next hop is asked for again.
pub const RESOLVE_RETRY_TICKS: u32 = 3;

/// One change to apply to the Fib (in the order given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibChange {
    SetIface(Iface),
    DelIface(u32),
    SetNeighbour(u32, IpAddr, [u8; 6]),
    DelNeighbour(u32, IpAddr),
    SetRoute(IpNet, RouteTarget),
    DelRoute(IpNet),
    /// Ask the kernel to resolve (and keep resolved) this next hop: with
    /// forwarding off it would never resolve it on its own.
    Resolve(u32, IpAddr),
}

/// Which routing tables feed XDP.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Route tables whose unicast routes XDP follows (default: main). The
    /// local table's `local` routes are always taken.
    pub tables: Vec<u32>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            tables: vec![RT_TABLE_MAIN],
        }
    }
}

#[derive(Debug, Default, Clone)]
struct View {
    links: HashMap<u32, LinkState>,
    /// prefix -> its routes, one per (table, metric, oif). Almost always a
    /// single route: a short Vec costs far less than a map per prefix at a
    /// million prefixes.
    routes: HashMap<IpNet, Vec<KRoute>>,
    nexthops: HashMap<u32, NhObject>,
    neighbours: HashMap<(u32, IpAddr), [u8; 6]>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Desired {
    ifaces: BTreeMap<u32, Iface>,
    routes: HashMap<IpNet, RouteTarget>,
    neighbours: HashMap<(u32, IpAddr), [u8; 6]>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Reconciler {
    cfg: SyncConfig,
    /// Interfaces XDP runs on or routes for (names, as configured).
    managed: BTreeSet<String>,
    view: View,
    desired: Desired,
    /// Next hops handed to the kernel for resolution, with the ticks since
    /// the last request.
    resolving: HashMap<(u32, IpAddr), u32>,
}

impl Reconciler {
    pub fn new(cfg: SyncConfig, managed: impl IntoIterator<Item = String>) -> Self {
        Self {
            cfg,
            managed: managed.into_iter().collect(),
            view: View::default(),
            desired: Desired::default(),
            resolving: HashMap::new(),
        }
    }

    /// Desired routes (what XDP should hold).
    pub fn routes(&self) -> impl Iterator<Item = (&IpNet, &RouteTarget)> {
        self.desired.routes.iter()
    }

    pub fn route_count(&self) -> usize {
        self.desired.routes.len()
    }

    pub fn neighbour_count(&self) -> usize {
        self.desired.neighbours.len()
    }

    /// Call once per tick: next hops asked for resolution that are still
    /// unresolved after [`RESOLVE_RETRY_TICKS`] ticks, to be asked again.
    /// Waiting matters: asking again while the answer is still queued would
    /// reset a just-resolved entry and punt packets meanwhile.
    pub fn due_for_resolution(&mut self) -> Vec<(u32, IpAddr)> {
        let mut due = Vec::new();
        let neighbours = &self.view.neighbours;
        for (key, age) in self.resolving.iter_mut() {
            if neighbours.contains_key(key) {
                continue;
            }
            *age += 1;
            if *age >= RESOLVE_RETRY_TICKS {
                *age = 0;
                due.push(*key);
            }
        }
        due.retain(|k| self.link_usable(k.0));
        due
    }

    pub fn links(&self) -> impl Iterator<Item = &LinkState> {
        self.view.links.values()
    }

    fn is_managed(&self, ifindex: u32) -> bool {
        self.desired.ifaces.contains_key(&ifindex)
    }

    fn iface_of(&self, link: &LinkState) -> Option<Iface> {
        if !self.managed.contains(&link.name) {
            return None;
        }
        let (vlan_id, parent_ifindex) = link.vlan.map_or((0, link.ifindex), |(p, v)| (v, p));
        Some(Iface {
            ifindex: link.ifindex,
            name: link.name.clone(),
            mac: link.mac,
            mtu: link.mtu,
            vlan_id,
            parent_ifindex,
            up: link.up,
        })
    }

    /// Apply one event; returns the changes it causes.
    pub fn process(&mut self, ev: KernelEvent) -> Vec<FibChange> {
        let mut out = Vec::new();
        match ev {
            KernelEvent::Link(link) => self.process_link(link, &mut out),
            KernelEvent::LinkGone(ifindex) => self.process_link_gone(ifindex, &mut out),
            KernelEvent::Route(route) => self.process_route(route, &mut out),
            KernelEvent::RouteReplace(route) => {
                if let Some(m) = self.view.routes.get_mut(&route.key.prefix) {
                    m.retain(|r| {
                        (r.key.table, r.key.metric) != (route.key.table, route.key.metric)
                    });
                }
                self.process_route(route, &mut out)
            }
            KernelEvent::RouteGone(route) => self.process_route_gone(route, &mut out),
            KernelEvent::Nexthop(id, obj) => self.process_nexthop(id, Some(obj), &mut out),
            KernelEvent::NexthopGone(id) => self.process_nexthop(id, None, &mut out),
            KernelEvent::Neighbour { ifindex, addr, mac } => {
                self.view.neighbours.insert((ifindex, addr), mac);
                self.resolving.remove(&(ifindex, addr));
                self.refresh_neighbour(ifindex, addr, &mut out);
            }
            KernelEvent::NeighbourGone { ifindex, addr } => {
                self.view.neighbours.remove(&(ifindex, addr));
                self.refresh_neighbour(ifindex, addr, &mut out);
            }
        }
        order(out)
    }

    /// Replace the whole view with a fresh dump; returns the changes that
    /// take the maps from the old desired state to the new one.
    pub fn resync(&mut self, snapshot: Vec<KernelEvent>) -> Vec<FibChange> {
        let old = std::mem::take(&mut self.desired);
        self.view = View::default();
        self.resolving.clear();
        for ev in snapshot {
            match ev {
                KernelEvent::Link(l) => {
                    self.view.links.insert(l.ifindex, l);
                }
                KernelEvent::Route(r) | KernelEvent::RouteReplace(r) => {
                    insert_route(&mut self.view.routes, r);
                }
                KernelEvent::Nexthop(id, o) => {
                    self.view.nexthops.insert(id, o);
                }
                KernelEvent::Neighbour { ifindex, addr, mac } => {
                    self.view.neighbours.insert((ifindex, addr), mac);
                }
                // A dump holds no withdrawals.
                _ => {}
            }
        }
        let mut new = Desired::default();
        for link in self.view.links.values() {
            if let Some(i) = self.iface_of(link) {
                new.ifaces.insert(i.ifindex, i);
            }
        }
        self.desired.ifaces = new.ifaces.clone();
        for (&(ifindex, addr), &mac) in &self.view.neighbours {
            if new.ifaces.contains_key(&ifindex) {
                new.neighbours.insert((ifindex, addr), mac);
            }
        }
        let prefixes: Vec<IpNet> = self.view.routes.keys().copied().collect();
        for p in prefixes {
            if let Some(t) = self.target(&p) {
                new.routes.insert(p, t);
            }
        }
        let mut out = Vec::new();
        for (i, iface) in &new.ifaces {
            if old.ifaces.get(i) != Some(iface) {
                out.push(FibChange::SetIface(iface.clone()));
            }
        }
        for i in old.ifaces.keys() {
            if !new.ifaces.contains_key(i) {
                out.push(FibChange::DelIface(*i));
            }
        }
        for (&(i, a), &mac) in &new.neighbours {
            if old.neighbours.get(&(i, a)) != Some(&mac) {
                out.push(FibChange::SetNeighbour(i, a, mac));
            }
        }
        for &(i, a) in old.neighbours.keys() {
            if !new.neighbours.contains_key(&(i, a)) {
                out.push(FibChange::DelNeighbour(i, a));
            }
        }
        for (p, t) in &new.routes {
            if old.routes.get(p) != Some(t) {
                out.push(FibChange::SetRoute(*p, t.clone()));
            }
        }
        for p in old.routes.keys() {
            if !new.routes.contains_key(p) {
                out.push(FibChange::DelRoute(*p));
            }
        }
        self.desired = new;
        let targets: Vec<RouteTarget> = self.desired.routes.values().cloned().collect();
        for t in &targets {
            self.want_resolution(t, &mut out);
        }
        order(out)
    }

    fn process_link(&mut self, link: LinkState, out: &mut Vec<FibChange>) {
        let ifindex = link.ifindex;
        let before = self.view.links.insert(ifindex, link.clone());
        let went_admin_down = before.as_ref().is_some_and(|b| b.admin_up) && !link.admin_up;
        if went_admin_down {
            // Remember which prefixes the flush touches, to refresh them.
            let touched: Vec<IpNet> = self.view.routes.keys().copied().collect();
            self.flush_link(ifindex);
            for p in touched {
                self.refresh_route(p, out);
            }
        }
        let iface = self.iface_of(&link);
        let was = self.desired.ifaces.get(&ifindex).cloned();
        match (&iface, &was) {
            (Some(new), old) if old.as_ref() != Some(new) => {
                self.desired.ifaces.insert(ifindex, new.clone());
                out.push(FibChange::SetIface(new.clone()));
            }
            (None, Some(_)) => {
                self.desired.ifaces.remove(&ifindex);
                out.push(FibChange::DelIface(ifindex));
            }
            _ => {}
        }
        // Reachability through this link changed: routes may gain or lose
        // next hops. (Appearing managed links also pick up neighbours.)
        // Only managed links change targets: a route through any other link
        // is a `kernel` route whatever that link's state, so a flapping link
        // xdpgate does not manage costs no walk over the table.
        let managed = iface.is_some() || was.is_some();
        let up_changed =
            before.as_ref().map(|b| b.up) != Some(link.up) || was.is_none() != iface.is_none();
        if managed && up_changed {
            if iface.is_some() && was.is_none() {
                for (i, a) in self.neighbours_on(ifindex) {
                    self.refresh_neighbour(i, a, out);
                }
            }
            self.refresh_routes(|r| route_uses(r, ifindex), out);
        }
    }

    /// Keys of the kernel's neighbours on `ifindex`.
    fn neighbours_on(&self, ifindex: u32) -> Vec<(u32, IpAddr)> {
        self.view
            .neighbours
            .keys()
            .filter(|(i, _)| *i == ifindex)
            .copied()
            .collect()
    }

    fn process_link_gone(&mut self, ifindex: u32, out: &mut Vec<FibChange>) {
        self.view.links.remove(&ifindex);
        // The kernel removes neighbours of a vanished link; drop ours now.
        for (i, a) in self.neighbours_on(ifindex) {
            self.view.neighbours.remove(&(i, a));
            self.refresh_neighbour(i, a, out);
        }
        self.refresh_routes(|r| route_uses(r, ifindex), out);
        if self.desired.ifaces.remove(&ifindex).is_some() {
            out.push(FibChange::DelIface(ifindex));
        }
    }

    fn process_route(&mut self, route: KRoute, out: &mut Vec<FibChange>) {
        let prefix = route.key.prefix;
        insert_route(&mut self.view.routes, route);
        self.refresh_route(prefix, out);
    }

    fn process_route_gone(&mut self, gone: KRoute, out: &mut Vec<FibChange>) {
        let key = gone.key;
        if let Some(m) = self.view.routes.get_mut(&key.prefix) {
            if m.iter().any(|r| r.key == key) {
                m.retain(|r| r.key != key);
            } else if key.prefix.addr().is_ipv6() {
                // `ip -6 route del P via G dev D` on a multipath route: the
                // kernel announces only the member it removed.
                remove_ipv6_members(m, &gone);
            }
            if m.is_empty() {
                self.view.routes.remove(&key.prefix);
            }
        }
        self.refresh_route(key.prefix, out);
    }

    /// The link went administratively down: the kernel has flushed its
    /// IPv4 routes whose next hops are all on it and its nexthop objects
    /// (and the routes using them), and said nothing. Do the same.
    fn flush_link(&mut self, ifindex: u32) {
        let dead: HashSet<u32> = self
            .view
            .nexthops
            .iter()
            .filter(|(_, o)| matches!(o, NhObject::Single(h) if h.ifindex == ifindex))
            .map(|(id, _)| *id)
            .collect();
        self.view.nexthops.retain(|id, _| !dead.contains(id));
        let mut emptied = HashSet::new();
        for (id, o) in self.view.nexthops.iter_mut() {
            if let NhObject::Group(members) = o {
                members.retain(|m| !dead.contains(m));
                if members.is_empty() {
                    emptied.insert(*id);
                }
            }
        }
        self.view.nexthops.retain(|id, _| !emptied.contains(id));
        for routes in self.view.routes.values_mut() {
            routes.retain(|r| {
                let via_dead_object = r
                    .nhid
                    .is_some_and(|n| dead.contains(&n) || emptied.contains(&n));
                let all_on_link = r.key.prefix.addr().is_ipv4()
                    && r.nhid.is_none()
                    && !r.nexthops.is_empty()
                    && r.nexthops.iter().all(|h| h.ifindex == ifindex);
                !(via_dead_object || all_on_link)
            });
        }
        self.view.routes.retain(|_, v| !v.is_empty());
    }

    fn process_nexthop(&mut self, id: u32, obj: Option<NhObject>, out: &mut Vec<FibChange>) {
        match obj {
            Some(o) => self.view.nexthops.insert(id, o),
            None => self.view.nexthops.remove(&id),
        };
        // Routes using it directly or through a group.
        let groups: HashSet<u32> = self
            .view
            .nexthops
            .iter()
            .filter(|(_, o)| matches!(o, NhObject::Group(m) if m.contains(&id)))
            .map(|(g, _)| *g)
            .collect();
        self.refresh_routes(
            |r| r.nhid.is_some_and(|n| n == id || groups.contains(&n)),
            out,
        );
    }

    fn refresh_routes(&mut self, uses: impl Fn(&KRoute) -> bool, out: &mut Vec<FibChange>) {
        let prefixes: Vec<IpNet> = self
            .view
            .routes
            .iter()
            .filter(|(_, m)| m.iter().any(&uses))
            .map(|(p, _)| *p)
            .collect();
        for p in prefixes {
            self.refresh_route(p, out);
        }
    }

    fn refresh_route(&mut self, prefix: IpNet, out: &mut Vec<FibChange>) {
        let new = self.target(&prefix);
        let old = self.desired.routes.get(&prefix);
        if new.as_ref() == old {
            return;
        }
        match new {
            Some(t) => {
                debug!(%prefix, target = %t, "route");
                self.want_resolution(&t, out);
                self.desired.routes.insert(prefix, t.clone());
                out.push(FibChange::SetRoute(prefix, t));
            }
            None => {
                debug!(%prefix, "route withdrawn");
                self.desired.routes.remove(&prefix);
                out.push(FibChange::DelRoute(prefix));
            }
        }
    }

    fn refresh_neighbour(&mut self, ifindex: u32, addr: IpAddr, out: &mut Vec<FibChange>) {
        let new = if self.is_managed(ifindex) {
            self.view.neighbours.get(&(ifindex, addr)).copied()
        } else {
            None
        };
        let old = self.desired.neighbours.get(&(ifindex, addr)).copied();
        if new == old {
            return;
        }
        match new {
            Some(mac) => {
                self.desired.neighbours.insert((ifindex, addr), mac);
                out.push(FibChange::SetNeighbour(ifindex, addr, mac));
            }
            None => {
                self.desired.neighbours.remove(&(ifindex, addr));
                out.push(FibChange::DelNeighbour(ifindex, addr));
            }
        }
    }

    /// Gateways of `t` with no neighbour entry get one resolution request.
    fn want_resolution(&mut self, t: &RouteTarget, out: &mut Vec<FibChange>) {
        let hops: &[NextHopSpec] = match t {
            RouteTarget::Unicast { nexthop } => std::slice::from_ref(nexthop),
            RouteTarget::Multipath { nexthops } => nexthops,
            _ => &[],
        };
        for h in hops {
            if let Some(gw) = h.gateway {
                let key = (h.ifindex, gw);
                if !self.view.neighbours.contains_key(&key) && !self.resolving.contains_key(&key) {
                    self.resolving.insert(key, 0);
                    out.push(FibChange::Resolve(h.ifindex, gw));
                }
            }
        }
    }

    /// What XDP should do for `prefix`, from the kernel's routes for it.
    fn target(&self, prefix: &IpNet) -> Option<RouteTarget> {
        let routes = self.view.routes.get(prefix)?;
        // The local table is consulted first by the kernel (fib_lookup with
        // the default rules): an own address wins.
        if routes.iter().any(|r| {
            r.kind == KRouteKind::Local && matches!(r.key.table, RT_TABLE_LOCAL | RT_TABLE_MAIN)
        }) {
            return Some(RouteTarget::Local);
        }
        // Then the configured tables in order, lowest metric first.
        let best = self.cfg.tables.iter().find_map(|t| {
            routes
                .iter()
                .filter(|r| r.key.table == *t && r.kind != KRouteKind::Local)
                // The device breaks ties (IPv6 keeps one fe80::/64 per
                // interface), so events and snapshots agree.
                .min_by_key(|r| (r.key.metric, r.key.oif))
        })?;
        Some(match best.kind {
            KRouteKind::Blackhole => RouteTarget::Blackhole,
            KRouteKind::Unreachable => RouteTarget::Unreachable,
            KRouteKind::Prohibit => RouteTarget::Prohibit,
            KRouteKind::Other | KRouteKind::Local => RouteTarget::Kernel,
            KRouteKind::Unicast => self.unicast_target(best),
        })
    }

    fn unicast_target(&self, r: &KRoute) -> RouteTarget {
        let hops = match r.nhid {
            Some(id) => match self.expand_nexthop(id) {
                Ok(h) => h,
                Err(t) => return t,
            },
            None => r.nexthops.clone(),
        };
        let usable: Vec<NextHopSpec> = hops
            .iter()
            .filter(|h| self.link_usable(h.ifindex))
            .map(|h| NextHopSpec {
                gateway: h.gateway,
                ifindex: h.ifindex,
            })
            .collect();
        match usable.len() {
            // Through unmanaged or down links only: the kernel's business.
            0 => RouteTarget::Kernel,
            1 => RouteTarget::Unicast { nexthop: usable[0] },
            n if n > MAX_ECMP_MEMBERS => RouteTarget::Kernel,
            _ => RouteTarget::Multipath { nexthops: usable },
        }
    }

    /// Members of nexthop object `id`, or the target to use instead.
    fn expand_nexthop(&self, id: u32) -> Result<Vec<KNextHop>, RouteTarget> {
        match self.view.nexthops.get(&id) {
            Some(NhObject::Single(h)) => Ok(vec![*h]),
            Some(NhObject::Blackhole) => Err(RouteTarget::Blackhole),
            Some(NhObject::Group(members)) => Ok(members
                .iter()
                .filter_map(|m| match self.view.nexthops.get(m) {
                    Some(NhObject::Single(h)) => Some(*h),
                    _ => None,
                })
                .collect()),
            // Not known (yet): the kernel knows better.
            None => Err(RouteTarget::Kernel),
        }
    }

    fn link_usable(&self, ifindex: u32) -> bool {
        self.is_managed(ifindex) && self.view.links.get(&ifindex).is_some_and(|l| l.up)
    }
}

/// Remove the members of `gone` from the IPv6 multipath routes of the same
/// table and metric; a route left with one member becomes a plain route
/// through it (as the kernel then reports it).
fn remove_ipv6_members(routes: &mut Vec<KRoute>, gone: &KRoute) {
    for r in routes.iter_mut() {
        if (r.key.table, r.key.metric) != (gone.key.table, gone.key.metric) || r.nexthops.len() < 2
        {
            continue;
        }
        r.nexthops.retain(|h| !gone.nexthops.contains(h));
        if r.nexthops.len() == 1 {
            r.key.oif = r.nexthops[0].ifindex;
        }
    }
    routes.retain(|r| !r.nexthops.is_empty() || r.nhid.is_some() || r.kind != KRouteKind::Unicast);
}

/// Insert or replace (same key) a route of the view.
fn insert_route(routes: &mut HashMap<IpNet, Vec<KRoute>>, route: KRoute) {
    let list = routes.entry(route.key.prefix).or_default();
    match list.iter_mut().find(|r| r.key == route.key) {
        Some(slot) => *slot = route,
        None => list.push(route),
    }
}

fn route_uses(r: &KRoute, ifindex: u32) -> bool {
    r.nhid.is_some() || r.nexthops.iter().any(|h| h.ifindex == ifindex)
}

/// Interfaces first, then neighbours, then routes (the Fib refuses a route
/// through an interface it does not know), interface removals last.
fn order(mut changes: Vec<FibChange>) -> Vec<FibChange> {
    changes.sort_by_key(|c| match c {
        FibChange::SetIface(_) => 0,
        FibChange::SetNeighbour(..) | FibChange::DelNeighbour(..) => 1,
        FibChange::SetRoute(..) | FibChange::DelRoute(..) => 2,
        FibChange::Resolve(..) => 3,
        FibChange::DelIface(_) => 4,
    });
    changes
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
