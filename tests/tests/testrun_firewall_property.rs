//! Tier 2, firewall property: random rulesets and packets from
//! `firewall::testgen`, run through the real XDP program, must get the
//! verdict the reference classifier (`firewall::reference`) gives, and
//! move the counter of the rule it names.
//!
//! The lab router gets two more ports (veth eth3 and eth4) so that
//! testgen's interfaces eth1..eth3 are real ports and "any other" (its
//! ifindexes 104 and 7) is eth4. Rules keep testgen's connection-state
//! sets, and the connection table is flushed before every packet, so each
//! packet is the first of its flow and the state it must match on is the
//! one `first_packet_state` derives (new, invalid or untracked; `related`
//! and `established` need a flow, and `testrun_firewall.rs` walks them).
//! Each packet's destination gets a host route
//! first: local for the input chain, connected out of the port the packet
//! view names for the forward chain. Packets the parser hands to the
//! kernel before routing (multicast, link-local, neighbour discovery) are
//! left out; packets without an L4 header become non-first fragments.
//!
//! Needs root (namespaces, CAP_BPF).
use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use dataplane_common::{FW_MAX_RULES, Reason as R};
use xdpgate::{
    fib::RouteTarget,
    firewall::{
        reference::{PacketView, classify},
        rule::{Chain, CtState, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Ruleset, Verdict},
        testgen,
    },
};
use xdpgate_tests::{
    fibtest::{Router, in_router, ip_in},
    frames::{Frame, Ipv6Ext, Mac},
};

const PORTS: [&str; 4] = ["eth1", "eth2", "eth3", "eth4"];
const NEIGH_MAC: Mac = [0x02, 0, 0, 0x0f, 0, 0x01];
const HOST_MAC: Mac = [0x02, 0, 0, 0x0f, 0, 0x02];

/// testgen's ifindex -> the router port standing for it.
fn port_of(testgen_ifindex: u32) -> &'static str {
    match testgen_ifindex {
        101 => "eth1",
        102 => "eth2",
        103 => "eth3",
        _ => "eth4",
    }
}

/// The reason an accepted packet ends with, the reason a reject ends with,
/// and whether the parser takes it to the firewall at all.
struct Built {
    frame: Vec<u8>,
    /// What the program sees (the protocol of an IPv6 fragment is 44).
    view: PacketView,
    /// Parser exception that the firewall passes on (Fragment,
    /// Ipv6ExtHeader): the L4 header is not trusted.
    exception: Option<R>,
}

fn skip(pv: &PacketView) -> bool {
    let addr_skip = |a: IpAddr, is_dst: bool| match a {
        IpAddr::V4(a) => {
            let o = a.octets();
            (o[0] == 169 && o[1] == 254) || (is_dst && (o[0] & 0xf0 == 0xe0 || o == [255; 4]))
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (is_dst && o[0] == 0xff)
        }
    };
    let nd = pv.family == 6
        && pv
            .icmp
            .is_some_and(|(t, _)| (133..=137).contains(&t) && pv.proto == PROTO_ICMPV6);
    addr_skip(pv.src, false) || addr_skip(pv.dst, true) || nd
}

fn build(pv: &PacketView, l2: Frame) -> Built {
    let mut view = pv.clone();
    view.state = CtState::Untracked;
    let f = match (pv.src, pv.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => l2.ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => l2.ipv6(s, d),
        _ => panic!("mixed families in {pv:?}"),
    };
    let v4 = pv.family == 4;
    let icmp_proto = if v4 { PROTO_ICMP } else { PROTO_ICMPV6 };
    let no_l4 = (matches!(pv.proto, PROTO_TCP | PROTO_UDP) && pv.sport.is_none())
        || (pv.proto == icmp_proto && pv.icmp.is_none());
    let body = [0x5au8; 16];
    let (frame, exception) = if no_l4 {
        if v4 {
            let f = f.protocol(pv.proto).fragment_offset(1).payload(&body);
            (f.build(), Some(R::Fragment))
        } else {
            view.proto = 44;
            let f = f
                .ext(Ipv6Ext::fragment(1, false, 7))
                .protocol(pv.proto)
                .payload(&body);
            (f.build(), Some(R::Fragment))
        }
    } else {
        match pv.proto {
            PROTO_TCP => (
                f.tcp(
                    pv.sport.expect("tcp sport"),
                    pv.dport.expect("tcp dport"),
                    pv.tcp_flags.expect("tcp flags"),
                )
                .payload(&body)
                .build(),
                None,
            ),
            PROTO_UDP => (
                f.udp(pv.sport.expect("sport"), pv.dport.expect("dport"))
                    .payload(&body)
                    .build(),
                None,
            ),
            p if p == icmp_proto => {
                let (t, c) = pv.icmp.expect("icmp");
                let f = if v4 { f.icmp(t, c) } else { f.icmpv6(t, c) };
                (f.payload(&body).build(), None)
            }
            p => {
                let ext = !v4 && matches!(p, 0 | 43 | 50 | 51 | 60 | 135 | 139 | 140);
                let exception = if !v4 && p == 44 {
                    Some(R::Fragment)
                } else if ext {
                    Some(R::Ipv6ExtHeader)
                } else {
                    None
                };
                (f.protocol(p).payload(&body).build(), exception)
            }
        }
    };
    Built {
        frame,
        view,
        exception,
    }
}

/// The state conntrack.rs gives the first packet of a flow, in a chain that
/// tracks (one with a state rule): none at all for what the parser did not
/// trust to L4 (fragments, extension headers); `invalid` for a TCP RST
/// with no connection, an echo reply nobody asked for, informational ICMP
/// that is not echo (nf_conntrack_proto_icmp.c), and an ICMP error whose
/// quote (here 16 bytes of 0x5a, not an IP header) names no connection;
/// `new` for everything else.
fn first_packet_state(b: &Built, tracked: bool) -> CtState {
    let v = &b.view;
    if !tracked || b.exception.is_some() {
        return CtState::Untracked;
    }
    let icmp_proto = if v.family == 4 {
        PROTO_ICMP
    } else {
        PROTO_ICMPV6
    };
    if v.proto == PROTO_TCP && v.tcp_flags.is_some_and(|f| f & 0x04 != 0) {
        return CtState::Invalid;
    }
    if v.proto == icmp_proto
        && let Some((t, _)) = v.icmp
    {
        let echo_request = (v.family == 4 && t == 8) || (v.family == 6 && t == 128);
        return if echo_request {
            CtState::New
        } else {
            CtState::Invalid
        };
    }
    CtState::New
}

/// What the program must answer for verdict `v`.
fn expected(b: &Built, chain: Chain, verdict: Verdict, in_port: &str, out_port: &str) -> R {
    match verdict {
        Verdict::Drop => R::Filtered,
        Verdict::Reject => {
            let v = &b.view;
            let icmp_error = v.icmp.is_some_and(|(t, _)| {
                if v.family == 4 {
                    !matches!(t, 0 | 8 | 13..=18)
                } else {
                    t < 128
                }
            });
            let rst = v.tcp_flags.is_some_and(|f| f & 0x04 != 0);
            if b.exception.is_some() || icmp_error || rst {
                R::Filtered
            } else {
                R::Rejected
            }
        }
        Verdict::Accept => match (b.exception, chain) {
            (Some(e), _) => e,
            (None, Chain::Input) => R::Local,
            (None, Chain::Forward) if in_port == out_port => R::Transmitted,
            (None, Chain::Forward) => R::Forwarded,
        },
    }
}

fn run_property(r: &mut Router, seed: u64, n_rules: usize, n_packets: usize) -> usize {
    let rs: Ruleset = testgen::ruleset(seed, n_rules);
    let ports = ["eth1", "eth2", "eth3"];
    let names: Vec<(String, u32)> = ports
        .iter()
        .map(|n| (n.to_string(), r.ifindex(n)))
        .collect();
    let resolve = |n: &str| names.iter().find(|(m, _)| m == n).map(|(_, i)| *i);
    let generation = r.install_ruleset(&rs, &ports);

    let mut tally: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for (chain, pv) in testgen::packets(&rs, seed, n_packets) {
        if skip(&pv) {
            continue;
        }
        let in_port = port_of(pv.in_ifindex);
        let out_port = port_of(pv.out_ifindex);
        let mut b = build(&pv, Frame::eth(HOST_MAC, r.mac(in_port)));
        b.view.in_ifindex = r.ifindex(in_port);
        b.view.out_ifindex = match chain {
            Chain::Input => 0,
            Chain::Forward => r.ifindex(out_port),
        };
        let host = match pv.dst {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        match chain {
            Chain::Input => r.route(&host, RouteTarget::Local),
            Chain::Forward => {
                r.connected(&host, out_port);
                r.neigh(out_port, &pv.dst.to_string(), NEIGH_MAC);
            }
        }
        let tracked = rs.enabled(chain).any(|rule| !rule.state.is_empty());
        b.view.state = first_packet_state(&b, tracked);
        *states.entry(format!("{:?}", b.view.state)).or_default() += 1;
        xdpgate::conntrack::flush(r.dp.firewall_mut(), &Default::default()).expect("flush");
        let want = classify(&rs, chain, &resolve, &b.view);
        let want_reason = expected(&b, chain, want.verdict, in_port, out_port);
        let table = generation * 2 + chain.index();
        let pos = want.position.unwrap_or(FW_MAX_RULES);
        let fw = r.dp.firewall();
        let before = fw.rule_counter(table, pos).expect("counter").packets;
        let counters = r.counters();
        r.run(in_port, &b.frame);
        let moved = r.counters().since(&counters);
        let after =
            r.dp.firewall()
                .rule_counter(table, pos)
                .expect("counter")
                .packets;
        // A chain with no rules, an accept policy and no tracking is
        // skipped and counts nothing (firewall::begin).
        let counted = rs.enabled(chain).next().is_some() || rs.policy.of(chain) != Verdict::Accept;
        if counted {
            *tally.entry((table, pos)).or_default() += 1;
        }
        ran += 1;
        let reasons: Vec<R> = moved.iter().map(|m| m.1).collect();
        if reasons != [want_reason] || after != before + u64::from(counted) {
            failures.push(format!(
                "{chain} {:?}\n    in {in_port} out {out_port}; reference: position {:?} \
                 {:?}; want {want_reason:?}, got {reasons:?}; rule counter moved by {}",
                b.view,
                want.position,
                want.verdict,
                after as i64 - before as i64
            ));
        }
    }
    println!("  seed {seed:#x}: packets by connection state {states:?}");
    // No counter moved but the reference's.
    let fw = r.dp.firewall();
    for chain in Chain::ALL {
        let table = generation * 2 + chain.index();
        let rules = rs.enabled(chain).count() as u32;
        for pos in (0..rules).chain([FW_MAX_RULES]) {
            let got = fw.rule_counter(table, pos).expect("counter").packets;
            let want = tally.get(&(table, pos)).copied().unwrap_or(0);
            if got != want {
                failures.push(format!(
                    "{chain} position {pos}: counted {got}, want {want}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}, {n_rules} rules: {} of {ran} packets failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    ran
}

#[test]
fn xdp_classifies_like_the_reference() {
    in_router(
        |ns| {
            for (a, b) in [("eth3", "peer3"), ("eth4", "peer4")] {
                ip_in(ns, &["link", "add", a, "type", "veth", "peer", "name", b]);
                ip_in(ns, &["link", "set", a, "up"]);
                ip_in(ns, &["link", "set", b, "up"]);
            }
        },
        |_| {
            let mut r = Router::new(&PORTS);
            let start = Instant::now();
            let mut total = 0;
            for (n_rules, seeds, packets) in
                [(1, 8, 200), (64, 6, 1000), (1024, 4, 1000), (4096, 3, 1000)]
            {
                for s in 0..seeds {
                    let seed = 0xf1e0_0000 + (n_rules as u64) * 100 + s;
                    let t = Instant::now();
                    let ran = run_property(&mut r, seed, n_rules, packets);
                    println!(
                        "{n_rules} rules, seed {seed:#x}: {ran} packets in {:.2} s",
                        t.elapsed().as_secs_f64()
                    );
                    total += ran;
                }
            }
            println!("{total} packets in {:.1} s", start.elapsed().as_secs_f64());
        },
    );
}
