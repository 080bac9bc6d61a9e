use std::net::IpAddr;

use super::*;
use crate::netlink::{KNextHop, KRoute, KRouteKey, KRouteKind, KernelEvent, LinkState, NhObject};

fn link(ifindex: u32, name: &str, up: bool) -> KernelEvent {
    KernelEvent::Link(LinkState {
        ifindex,
        name: name.into(),
        mac: [2, 0, 0, 0, 0, ifindex as u8],
        mtu: 1500,
        up,
        admin_up: up,
        vlan: None,
    })
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

fn route(prefix: &str, hops: &[(&str, u32)]) -> KRoute {
    KRoute {
        key: KRouteKey {
            table: RT_TABLE_MAIN,
            prefix: net(prefix),
            metric: 0,
            oif: 0,
        },
        kind: KRouteKind::Unicast,
        nexthops: hops
            .iter()
            .map(|(g, i)| KNextHop {
                gateway: if g.is_empty() { None } else { Some(ip(g)) },
                ifindex: *i,
            })
            .collect(),
        nhid: None,
    }
}

fn hop(g: &str, i: u32) -> NextHopSpec {
    NextHopSpec {
        gateway: Some(ip(g)),
        ifindex: i,
    }
}

/// eth1 (2) and eth2 (3) managed and up, eth9 (9) not managed.
fn rec() -> Reconciler {
    let mut r = Reconciler::new(SyncConfig::default(), ["eth1".into(), "eth2".into()]);
    let changes = r.resync(vec![
        link(2, "eth1", true),
        link(3, "eth2", true),
        link(9, "eth9", true),
    ]);
    assert_eq!(changes.len(), 2, "{changes:?}");
    r
}

fn set_route(c: &[FibChange], p: &str) -> Option<RouteTarget> {
    c.iter().find_map(|c| match c {
        FibChange::SetRoute(x, t) if *x == net(p) => Some(t.clone()),
        _ => None,
    })
}

#[test]
fn unicast_route_through_a_managed_link_is_forwarded_and_its_gateway_resolved() {
    let mut r = rec();
    let c = r.process(KernelEvent::Route(route(
        "198.18.5.0/24",
        &[("198.18.2.9", 3)],
    )));
    assert_eq!(
        set_route(&c, "198.18.5.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.2.9", 3)
        })
    );
    assert!(
        c.contains(&FibChange::Resolve(3, ip("198.18.2.9"))),
        "{c:?}"
    );
    // Asked once only.
    let c = r.process(KernelEvent::Route(route(
        "198.18.6.0/24",
        &[("198.18.2.9", 3)],
    )));
    assert!(
        !c.iter().any(|c| matches!(c, FibChange::Resolve(..))),
        "{c:?}"
    );
}

#[test]
fn route_through_an_unmanaged_link_punts_to_the_kernel() {
    let mut r = rec();
    let c = r.process(KernelEvent::Route(route(
        "198.18.7.0/24",
        &[("198.18.9.1", 9)],
    )));
    assert_eq!(set_route(&c, "198.18.7.0/24"), Some(RouteTarget::Kernel));
}

#[test]
fn multipath_keeps_up_members_and_a_link_down_removes_them() {
    let mut r = rec();
    let c = r.process(KernelEvent::Route(route(
        "198.18.8.0/24",
        &[("198.18.1.9", 2), ("198.18.2.9", 3)],
    )));
    assert_eq!(
        set_route(&c, "198.18.8.0/24"),
        Some(RouteTarget::Multipath {
            nexthops: vec![hop("198.18.1.9", 2), hop("198.18.2.9", 3)]
        })
    );
    let c = r.process(link(3, "eth2", false));
    assert!(
        c.iter()
            .any(|c| matches!(c, FibChange::SetIface(i) if i.ifindex == 3 && !i.up))
    );
    assert_eq!(
        set_route(&c, "198.18.8.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.1.9", 2)
        })
    );
    let c = r.process(link(3, "eth2", true));
    assert!(matches!(
        set_route(&c, "198.18.8.0/24"),
        Some(RouteTarget::Multipath { .. })
    ));
    // Both down: the kernel's.
    r.process(link(2, "eth1", false));
    let c = r.process(link(3, "eth2", false));
    assert_eq!(set_route(&c, "198.18.8.0/24"), Some(RouteTarget::Kernel));
}

#[test]
fn local_wins_and_lowest_metric_of_main_is_used() {
    let mut r = rec();
    let mut a = route("198.18.9.0/24", &[("198.18.1.9", 2)]);
    a.key.metric = 100;
    let mut b = route("198.18.9.0/24", &[("198.18.2.9", 3)]);
    b.key.metric = 10;
    r.process(KernelEvent::Route(a.clone()));
    let c = r.process(KernelEvent::Route(b.clone()));
    assert_eq!(
        set_route(&c, "198.18.9.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.2.9", 3)
        })
    );
    let c = r.process(KernelEvent::RouteGone(b.clone()));
    assert_eq!(
        set_route(&c, "198.18.9.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.1.9", 2)
        })
    );
    let local = KRoute {
        key: KRouteKey {
            table: RT_TABLE_LOCAL,
            prefix: net("198.18.1.1/32"),
            metric: 0,
            oif: 0,
        },
        kind: KRouteKind::Local,
        nexthops: vec![],
        nhid: None,
    };
    let c = r.process(KernelEvent::Route(local));
    assert_eq!(set_route(&c, "198.18.1.1/32"), Some(RouteTarget::Local));
    let c = r.process(KernelEvent::RouteGone(a.clone()));
    assert_eq!(c, vec![FibChange::DelRoute(net("198.18.9.0/24"))]);
}

#[test]
fn routes_of_other_tables_are_ignored_unless_configured() {
    let mut r = rec();
    let mut t = route("198.18.10.0/24", &[("198.18.2.9", 3)]);
    t.key.table = 100;
    assert!(r.process(KernelEvent::Route(t.clone())).is_empty());
    let mut r = Reconciler::new(SyncConfig { tables: vec![100] }, ["eth2".into()]);
    r.resync(vec![link(3, "eth2", true)]);
    assert!(set_route(&r.process(KernelEvent::Route(t)), "198.18.10.0/24").is_some());
}

#[test]
fn nexthop_objects_resolve_and_follow_their_changes() {
    let mut r = rec();
    let single = |g: &str, i| {
        NhObject::Single(KNextHop {
            gateway: Some(ip(g)),
            ifindex: i,
        })
    };
    r.process(KernelEvent::Nexthop(1, single("198.18.1.9", 2)));
    r.process(KernelEvent::Nexthop(2, single("198.18.2.9", 3)));
    r.process(KernelEvent::Nexthop(3, NhObject::Group(vec![1, 2])));
    let mut rt = route("198.18.11.0/24", &[]);
    rt.nhid = Some(3);
    let c = r.process(KernelEvent::Route(rt));
    assert!(matches!(
        set_route(&c, "198.18.11.0/24"),
        Some(RouteTarget::Multipath { ref nexthops }) if nexthops.len() == 2
    ));
    // The group shrinks: the route follows without a route event.
    let c = r.process(KernelEvent::Nexthop(3, NhObject::Group(vec![2])));
    assert_eq!(
        set_route(&c, "198.18.11.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.2.9", 3)
        })
    );
    // A member object changes its gateway.
    let c = r.process(KernelEvent::Nexthop(2, single("198.18.2.10", 3)));
    assert_eq!(
        set_route(&c, "198.18.11.0/24"),
        Some(RouteTarget::Unicast {
            nexthop: hop("198.18.2.10", 3)
        })
    );
    let c = r.process(KernelEvent::Nexthop(3, NhObject::Blackhole));
    assert_eq!(
        set_route(&c, "198.18.11.0/24"),
        Some(RouteTarget::Blackhole)
    );
}

#[test]
fn neighbours_of_managed_links_only_and_gone_ones_removed() {
    let mut r = rec();
    let n = |i, a: &str| KernelEvent::Neighbour {
        ifindex: i,
        addr: ip(a),
        mac: [1; 6],
    };
    assert_eq!(
        r.process(n(3, "198.18.2.2")),
        vec![FibChange::SetNeighbour(3, ip("198.18.2.2"), [1; 6])]
    );
    assert!(r.process(n(9, "198.18.9.2")).is_empty());
    assert!(r.process(n(3, "198.18.2.2")).is_empty(), "unchanged");
    assert_eq!(
        r.process(KernelEvent::NeighbourGone {
            ifindex: 3,
            addr: ip("198.18.2.2")
        }),
        vec![FibChange::DelNeighbour(3, ip("198.18.2.2"))]
    );
}

#[test]
fn a_vanished_link_withdraws_its_routes_before_the_interface() {
    let mut r = rec();
    r.process(KernelEvent::Route(route(
        "198.18.5.0/24",
        &[("198.18.2.9", 3)],
    )));
    r.process(KernelEvent::Neighbour {
        ifindex: 3,
        addr: ip("198.18.2.9"),
        mac: [1; 6],
    });
    let c = r.process(KernelEvent::LinkGone(3));
    let route_at = c
        .iter()
        .position(|c| matches!(c, FibChange::SetRoute(..)))
        .expect("route");
    let neigh_at = c
        .iter()
        .position(|c| matches!(c, FibChange::DelNeighbour(..)))
        .expect("neigh");
    let iface_at = c
        .iter()
        .position(|c| matches!(c, FibChange::DelIface(3)))
        .expect("iface");
    assert!(route_at < iface_at && neigh_at < iface_at, "{c:?}");
    assert_eq!(set_route(&c, "198.18.5.0/24"), Some(RouteTarget::Kernel));
}

#[test]
fn resync_diffs_instead_of_flushing() {
    let mut r = rec();
    r.process(KernelEvent::Route(route(
        "198.18.5.0/24",
        &[("198.18.2.9", 3)],
    )));
    r.process(KernelEvent::Route(route(
        "198.18.6.0/24",
        &[("198.18.2.9", 3)],
    )));
    // Events were lost: 198.18.6.0/24 was deleted and 198.18.7.0/24 added.
    let c = r.resync(vec![
        link(2, "eth1", true),
        link(3, "eth2", true),
        KernelEvent::Route(route("198.18.5.0/24", &[("198.18.2.9", 3)])),
        KernelEvent::Route(route("198.18.7.0/24", &[("198.18.1.9", 2)])),
    ]);
    // Unchanged things are not rewritten: no flush-and-refill window.
    assert!(
        !c.iter().any(|c| matches!(c, FibChange::SetIface(_))),
        "{c:?}"
    );
    assert!(set_route(&c, "198.18.5.0/24").is_none(), "{c:?}");
    assert!(
        c.contains(&FibChange::DelRoute(net("198.18.6.0/24"))),
        "{c:?}"
    );
    assert!(set_route(&c, "198.18.7.0/24").is_some(), "{c:?}");
    assert!(
        !c.iter()
            .any(|c| matches!(c, FibChange::DelRoute(p) if *p == net("198.18.5.0/24")))
    );
}

#[test]
fn replaying_events_equals_a_snapshot_of_the_result() {
    // Any order of the same final facts gives the same desired state as
    // one snapshot of them.
    let facts = vec![
        link(2, "eth1", true),
        link(3, "eth2", true),
        KernelEvent::Route(route("198.18.5.0/24", &[("198.18.2.9", 3)])),
        KernelEvent::Route(route(
            "198.18.8.0/24",
            &[("198.18.1.9", 2), ("198.18.2.9", 3)],
        )),
        KernelEvent::Neighbour {
            ifindex: 3,
            addr: ip("198.18.2.9"),
            mac: [7; 6],
        },
    ];
    let mut a = Reconciler::new(SyncConfig::default(), ["eth1".into(), "eth2".into()]);
    a.resync(vec![]);
    for f in facts.iter().rev() {
        a.process(f.clone());
    }
    let mut b = Reconciler::new(SyncConfig::default(), ["eth1".into(), "eth2".into()]);
    b.resync(facts);
    assert_eq!(a.desired, b.desired);
}

#[test]
fn an_ipv6_replace_onto_another_device_drops_the_old_route() {
    let mut r = rec();
    let mut a = route("2001:db8:100::/48", &[("2001:db8:2::2", 3)]);
    a.key.oif = 3;
    r.process(KernelEvent::Route(a));
    let mut b = route("2001:db8:100::/48", &[("2001:db8:1::2", 2)]);
    b.key.oif = 2;
    let c = r.process(KernelEvent::RouteReplace(b));
    assert_eq!(
        set_route(&c, "2001:db8:100::/48"),
        Some(RouteTarget::Unicast {
            nexthop: hop("2001:db8:1::2", 2)
        })
    );
}

#[test]
fn admin_down_flushes_ipv4_routes_the_kernel_flushes_silently() {
    let mut r = rec();
    r.process(KernelEvent::Route(route(
        "198.18.200.0/24",
        &[("198.18.3.2", 3)],
    )));
    // eth2 administratively down: the kernel deletes the route without a
    // message; it must not come back when the link does.
    let c = r.process(link(3, "eth2", false));
    assert!(
        c.contains(&FibChange::DelRoute(net("198.18.200.0/24"))),
        "{c:?}"
    );
    let c = r.process(link(3, "eth2", true));
    assert!(set_route(&c, "198.18.200.0/24").is_none(), "{c:?}");
    assert!(!r.routes().any(|(p, _)| *p == net("198.18.200.0/24")));
}

#[test]
fn carrier_loss_keeps_routes_and_they_return_with_the_carrier() {
    let mut r = rec();
    r.process(KernelEvent::Route(route(
        "198.18.201.0/24",
        &[("198.18.2.9", 3)],
    )));
    let mut no_carrier = LinkState {
        ifindex: 3,
        name: "eth2".into(),
        mac: [2, 0, 0, 0, 0, 3],
        mtu: 1500,
        up: false,
        admin_up: true,
        vlan: None,
    };
    let c = r.process(KernelEvent::Link(no_carrier.clone()));
    assert_eq!(set_route(&c, "198.18.201.0/24"), Some(RouteTarget::Kernel));
    no_carrier.up = true;
    let c = r.process(KernelEvent::Link(no_carrier));
    assert!(matches!(
        set_route(&c, "198.18.201.0/24"),
        Some(RouteTarget::Unicast { .. })
    ));
}

#[test]
fn an_ipv6_multipath_member_deleted_alone_leaves_the_rest() {
    let mut r = rec();
    let mp = route(
        "2001:db8:8300::/48",
        &[("2001:db8:1::2", 2), ("2001:db8:2::2", 3)],
    );
    r.process(KernelEvent::Route(mp));
    let mut member = route("2001:db8:8300::/48", &[("2001:db8:2::2", 3)]);
    member.key.oif = 3;
    let c = r.process(KernelEvent::RouteGone(member));
    assert_eq!(
        set_route(&c, "2001:db8:8300::/48"),
        Some(RouteTarget::Unicast {
            nexthop: hop("2001:db8:1::2", 2)
        })
    );
    let mut last = route("2001:db8:8300::/48", &[("2001:db8:1::2", 2)]);
    last.key.oif = 2;
    let c = r.process(KernelEvent::RouteGone(last));
    assert_eq!(c, vec![FibChange::DelRoute(net("2001:db8:8300::/48"))]);
}

#[test]
fn an_unmanaged_link_flapping_changes_nothing() {
    let mut r = rec();
    r.process(KernelEvent::Route(route(
        "198.18.7.0/24",
        &[("198.18.9.1", 9)],
    )));
    // Carrier lost and back (admin still up): the kernel keeps the route.
    let mut eth9 = LinkState {
        ifindex: 9,
        name: "eth9".into(),
        mac: [2, 0, 0, 0, 0, 9],
        mtu: 1500,
        up: false,
        admin_up: true,
        vlan: None,
    };
    assert!(r.process(KernelEvent::Link(eth9.clone())).is_empty());
    eth9.up = true;
    assert!(r.process(KernelEvent::Link(eth9)).is_empty());
    assert!(
        r.routes()
            .any(|(p, t)| *p == net("198.18.7.0/24") && *t == RouteTarget::Kernel)
    );
}
