use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn iface(ifindex: u32) -> Iface {
    Iface {
        ifindex,
        name: format!("eth{ifindex}"),
        mac: [2, 0, 0, 0, 0, ifindex as u8],
        mtu: 1500,
        vlan_id: 0,
        parent_ifindex: ifindex,
        up: true,
    }
}

fn fib() -> Fib {
    let mut f = Fib::new();
    for i in [2, 3, 4] {
        f.set_iface(iface(i)).expect("iface");
    }
    f
}

fn net(s: &str) -> IpNet {
    parse_prefix(s).expect("prefix")
}

fn via(gw: &str, ifindex: u32) -> NextHopSpec {
    NextHopSpec {
        gateway: Some(gw.parse().expect("ip")),
        ifindex,
    }
}

fn unicast(gw: &str, ifindex: u32) -> RouteTarget {
    RouteTarget::Unicast {
        nexthop: via(gw, ifindex),
    }
}

/// Position of the first op matching `pred`.
fn pos(ops: &[MapOp], pred: impl Fn(&MapOp) -> bool) -> usize {
    ops.iter().position(pred).expect("op present")
}

#[test]
fn next_hop_is_written_before_the_route_that_uses_it() {
    let mut f = fib();
    let ops = f
        .set_route(net("198.18.5.0/24"), unicast("198.18.2.2", 3))
        .expect("route");
    let nh = pos(&ops, |o| matches!(o, MapOp::SetNextHop(..)));
    let rt = pos(&ops, |o| matches!(o, MapOp::SetRoute(..)));
    assert!(nh < rt, "{ops:?}");
}

#[test]
fn shared_next_hop_is_freed_only_after_its_last_route() {
    let mut f = fib();
    f.set_route(net("198.18.5.0/24"), unicast("198.18.2.2", 3))
        .expect("a");
    let ops = f
        .set_route(net("198.18.6.0/24"), unicast("198.18.2.2", 3))
        .expect("b");
    assert!(
        !ops.iter().any(|o| matches!(o, MapOp::SetNextHop(..))),
        "second route must reuse the next hop: {ops:?}"
    );
    assert_eq!(f.nexthop_count(), 1);
    let ops = f.del_route(net("198.18.5.0/24")).expect("del a");
    assert_eq!(ops, vec![MapOp::DelRoute(net("198.18.5.0/24"))]);
    let ops = f.del_route(net("198.18.6.0/24")).expect("del b");
    assert!(matches!(ops[0], MapOp::DelRoute(_)), "{ops:?}");
    assert!(matches!(ops[1], MapOp::ClearNextHop(_)), "{ops:?}");
    assert_eq!(f.nexthop_count(), 0);
}

#[test]
fn replace_writes_new_next_hop_then_route_then_frees_old() {
    let mut f = fib();
    f.set_route(net("0.0.0.0/0"), unicast("198.18.2.2", 3))
        .expect("a");
    let ops = f
        .set_route(net("0.0.0.0/0"), unicast("198.18.1.2", 2))
        .expect("replace");
    let set_nh = pos(&ops, |o| matches!(o, MapOp::SetNextHop(..)));
    let set_rt = pos(&ops, |o| matches!(o, MapOp::SetRoute(..)));
    let clear = pos(&ops, |o| matches!(o, MapOp::ClearNextHop(..)));
    assert!(set_nh < set_rt && set_rt < clear, "{ops:?}");
    assert!(!ops.iter().any(|o| matches!(o, MapOp::DelRoute(..))));
    assert_eq!(f.route_count(), (1, 0));
}

#[test]
fn same_route_twice_is_a_no_op() {
    let mut f = fib();
    f.set_route(net("198.18.5.0/24"), unicast("198.18.2.2", 3))
        .expect("a");
    let ops = f
        .set_route(net("198.18.5.0/24"), unicast("198.18.2.2", 3))
        .expect("again");
    assert!(ops.is_empty(), "{ops:?}");
}

#[test]
fn multipath_group_follows_its_members_and_equal_sets_share_it() {
    let mut f = fib();
    let hops = vec![via("198.18.2.2", 3), via("198.18.1.2", 2)];
    let ops = f
        .set_route(
            net("198.18.8.0/24"),
            RouteTarget::Multipath {
                nexthops: hops.clone(),
            },
        )
        .expect("ecmp");
    let last_nh = ops
        .iter()
        .rposition(|o| matches!(o, MapOp::SetNextHop(..)))
        .expect("nh");
    let group = pos(&ops, |o| matches!(o, MapOp::SetGroup(..)));
    let route = pos(&ops, |o| matches!(o, MapOp::SetRoute(..)));
    assert!(last_nh < group && group < route, "{ops:?}");
    let MapOp::SetGroup(_, g) = &ops[group] else {
        unreachable!()
    };
    assert_eq!(g.count, 2);
    // Same set in another order: same group, nothing new written.
    let ops = f
        .set_route(
            net("198.18.9.0/24"),
            RouteTarget::Multipath {
                nexthops: hops.into_iter().rev().collect(),
            },
        )
        .expect("ecmp 2");
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(f.group_count(), 1);
    f.del_route(net("198.18.8.0/24")).expect("del");
    let ops = f.del_route(net("198.18.9.0/24")).expect("del");
    let del = pos(&ops, |o| matches!(o, MapOp::DelRoute(..)));
    let grp = pos(&ops, |o| matches!(o, MapOp::ClearGroup(..)));
    let nh = pos(&ops, |o| matches!(o, MapOp::ClearNextHop(..)));
    assert!(del < grp && grp < nh, "{ops:?}");
    assert_eq!((f.group_count(), f.nexthop_count()), (0, 0));
}

#[test]
fn bad_routes_are_refused_and_change_nothing() {
    let mut f = fib();
    let too_many: Vec<_> = (0..17).map(|i| via(&format!("198.18.2.{i}"), 3)).collect();
    assert_eq!(
        f.set_route(
            net("198.18.8.0/24"),
            RouteTarget::Multipath { nexthops: too_many }
        ),
        Err(FibError::GroupTooLarge { count: 17 })
    );
    assert_eq!(
        f.set_route(
            net("198.18.8.0/24"),
            RouteTarget::Multipath { nexthops: vec![] }
        ),
        Err(FibError::EmptyGroup)
    );
    assert_eq!(
        f.set_route(net("198.18.8.0/24"), unicast("198.18.2.2", 99)),
        Err(FibError::UnknownInterface(99))
    );
    assert!(matches!(
        f.set_route(net("198.18.8.0/24"), unicast("2001:db8::1", 3)),
        Err(FibError::FamilyMismatch { .. })
    ));
    assert_eq!(
        f.del_route(net("198.18.8.0/24")),
        Err(FibError::NoSuchRoute(net("198.18.8.0/24")))
    );
    assert_eq!(f.route_count(), (0, 0));
    assert_eq!(f.nexthop_count(), 0);
}

#[test]
fn next_hop_ids_run_out_with_a_clear_error_and_no_leak() {
    let mut f = fib();
    for i in 1..MAX_NEXTHOPS {
        let gw = Ipv4Addr::from(0xc612_0000 + i);
        let target = RouteTarget::Unicast {
            nexthop: NextHopSpec {
                gateway: Some(IpAddr::V4(gw)),
                ifindex: 3,
            },
        };
        f.set_route(IpNet::from(IpAddr::V4(gw)), target)
            .expect("fits");
    }
    let gw: IpAddr = "203.0.113.1".parse().expect("ip");
    let err = f
        .set_route(
            net("203.0.113.0/24"),
            RouteTarget::Unicast {
                nexthop: NextHopSpec {
                    gateway: Some(gw),
                    ifindex: 3,
                },
            },
        )
        .expect_err("full");
    assert_eq!(err, FibError::FullNextHops { max: MAX_NEXTHOPS });
    assert_eq!(f.route(&net("203.0.113.0/24")), None);
}

#[test]
fn vlan_sub_interface_needs_its_parent_and_maps_the_tag() {
    let mut f = Fib::new();
    let mut sub = iface(10);
    sub.vlan_id = 100;
    sub.parent_ifindex = 2;
    assert_eq!(f.set_iface(sub.clone()), Err(FibError::UnknownInterface(2)));
    f.set_iface(iface(2)).expect("parent");
    let ops = f.set_iface(sub).expect("sub");
    assert!(ops.contains(&MapOp::SetVlan(
        VlanKey {
            parent_ifindex: 2,
            vid: 100
        },
        10
    )));
    assert!(!ops.contains(&MapOp::SetPort(10)), "{ops:?}");
    let mut bad = iface(11);
    bad.vlan_id = 4095;
    bad.parent_ifindex = 2;
    assert_eq!(f.set_iface(bad), Err(FibError::BadVlanId(4095)));
}

#[test]
fn slots_are_reused_after_an_interface_leaves() {
    let mut f = fib();
    let slot = f.slot(3).expect("slot");
    f.del_iface(3).expect("del");
    f.set_iface(iface(9)).expect("new");
    assert_eq!(f.slot(9), Some(slot));
}

#[test]
fn neighbours_need_a_managed_interface_and_unchanged_is_a_no_op() {
    let mut f = fib();
    let a: IpAddr = "198.18.2.2".parse().expect("ip");
    assert_eq!(
        f.set_neighbour(99, a, [1; 6]),
        Err(FibError::UnknownInterface(99))
    );
    assert_eq!(f.set_neighbour(3, a, [1; 6]).expect("set").len(), 1);
    assert!(f.set_neighbour(3, a, [1; 6]).expect("same").is_empty());
    assert_eq!(f.set_neighbour(3, a, [2; 6]).expect("changed").len(), 1);
    assert_eq!(f.del_neighbour(3, a).len(), 1);
    assert!(f.del_neighbour(3, a).is_empty());
}

#[test]
fn prefixes_parse_strictly() {
    assert_eq!(net("198.18.0.0/15").prefix_len(), 15);
    assert_eq!(net("198.18.1.1").prefix_len(), 32);
    assert_eq!(net("2001:db8::/32").prefix_len(), 32);
    assert!(matches!(
        parse_prefix("198.18.1.1/24"),
        Err(PrefixError::HostBits { .. })
    ));
    let msg = parse_prefix("198.18.1.1/24")
        .expect_err("host bits")
        .to_string();
    assert!(msg.contains("198.18.1.0/24"), "{msg}");
    assert!(matches!(
        parse_prefix("198.18.0.0/33"),
        Err(PrefixError::BadLength(_))
    ));
    assert!(matches!(
        parse_prefix("nonsense"),
        Err(PrefixError::BadAddress(_))
    ));
}

#[test]
fn route_flags_parse_like_ip_route() {
    let r: RouteSpec = "198.18.5.0/24 via 198.18.2.2 dev eth2"
        .parse()
        .expect("unicast");
    assert_eq!(
        r.kind,
        RouteSpecKind::Via(vec![(
            Some("198.18.2.2".parse().expect("ip")),
            "eth2".into()
        )])
    );
    let r: RouteSpec = "198.18.2.0/24 dev eth2".parse().expect("connected");
    assert_eq!(r.kind, RouteSpecKind::Via(vec![(None, "eth2".into())]));
    let r: RouteSpec = "198.18.8.0/24 via 198.18.1.2 dev eth1 via 198.18.2.2 dev eth2"
        .parse()
        .expect("ecmp");
    assert!(matches!(r.kind, RouteSpecKind::Via(ref v) if v.len() == 2));
    let r: RouteSpec = "blackhole 198.18.9.0/24".parse().expect("blackhole");
    assert_eq!(r.kind, RouteSpecKind::Blackhole);
    for bad in [
        "",
        "198.18.5.0/24",
        "198.18.5.0/24 via 198.18.2.2",
        "198.18.5.0/24 via nope dev eth2",
        "198.18.5.1/24 dev eth2",
        "blackhole 198.18.9.0/24 dev eth2",
        "198.18.5.0/24 dev",
    ] {
        assert!(bad.parse::<RouteSpec>().is_err(), "{bad:?} parsed");
    }
    let n: NeighSpec = "198.18.2.2 lladdr 02:00:00:00:00:01 dev eth2"
        .parse()
        .expect("neigh");
    assert_eq!(n.mac, [2, 0, 0, 0, 0, 1]);
    assert!(
        "198.18.2.2 lladdr 02:00 dev eth2"
            .parse::<NeighSpec>()
            .is_err()
    );
}

#[test]
fn routes_after_pages_and_filters_like_a_full_scan() {
    let mut f = fib();
    let prefixes = [
        "0.0.0.0/0",
        "198.0.0.0/8",
        "198.18.0.0/15",
        "198.18.0.0/16",
        "198.18.1.0/24",
        "198.18.1.128/25",
        "198.19.255.0/24",
        "198.20.0.0/16",
        "2001:db8::/32",
        "2001:db8:1::/48",
    ];
    for p in prefixes {
        f.set_route(net(p), RouteTarget::Blackhole).expect("route");
    }
    for w in [
        "198.18.0.0/15",
        "198.18.1.0/24",
        "0.0.0.0/0",
        "2001:db8::/32",
        "10.0.0.0/8",
    ] {
        let w = net(w);
        let fast: Vec<IpNet> = f.routes_after(None, Some(w)).map(|(p, _)| *p).collect();
        let slow: Vec<IpNet> = f
            .routes()
            .map(|(p, _)| *p)
            .filter(|p| w.contains(p))
            .collect();
        assert_eq!(fast, slow, "within {w}");
    }
    // Paging two at a time visits every route once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page: Vec<IpNet> = f
            .routes_after(after, None)
            .take(2)
            .map(|(p, _)| *p)
            .collect();
        if page.is_empty() {
            break;
        }
        after = page.last().copied();
        seen.extend(page);
    }
    let all: Vec<IpNet> = f.routes().map(|(p, _)| *p).collect();
    assert_eq!(seen, all);
}
