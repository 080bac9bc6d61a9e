//! Tier 2, firewall: rulesets compiled and installed straight into the
//! maps (inactive generation, then the flip), and frames run through the
//! real XDP program with `BPF_PROG_TEST_RUN` on a lab router's ports.
//!
//! Table-driven: each case is a frame, the port it arrives on, the reason
//! it must end with, and the rule (chain, position; `None`: the policy)
//! whose `FW_COUNTERS` entry must move. Exactly that counter moves, by one
//! frame, and exactly one reason counter. Rejections are compared byte for
//! byte with a reply built independently (RFC 9293 3.10.7.1 for the RST,
//! RFC 792 / RFC 4443 3.1 for port unreachable), and their checksums are
//! verified on their own.
//!
//! Needs root (namespaces, CAP_BPF).
use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dataplane_common::{Action, FW_MAX_RULES, Reason as R};
use xdpgate::{
    dataplane::Count,
    fib::RouteTarget,
    firewall::rule::{Chain, Ruleset},
};
use xdpgate_tests::{
    fibtest::{Router, in_router},
    frames::{
        Frame, Layout, Mac, ethertype, tcp, verify_checksums, verify_ipv4_checksum,
        verify_l4_checksum,
    },
};

// --- The lab: h1 on eth1, h2 on eth2, far networks via a gateway on eth2.

const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const R1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const R2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const GW2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
/// 198.19.10.0/24 via GW2 dev eth2.
const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 5);

const fn v6(c: u16, last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, c, 0, 0, 0, 0, last)
}
const H1_6: Ipv6Addr = v6(1, 2);
const H2_6: Ipv6Addr = v6(2, 2);
const R1_6: Ipv6Addr = v6(1, 1);
const GW2_6: Ipv6Addr = v6(2, 0xfe);
const FAR_6: Ipv6Addr = v6(0x10, 5);

const H1_MAC: Mac = [0x02, 0, 0, 0x04, 0x01, 0x02];
const H2_MAC: Mac = [0x02, 0, 0, 0x04, 0x02, 0x02];
const GW2_MAC: Mac = [0x02, 0, 0, 0x04, 0x02, 0xfe];
const H1_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x01, 0x02];
const H2_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x02, 0x02];
const GW2_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x02, 0xfe];

const PORTS: [&str; 2] = ["eth1", "eth2"];

#[track_caller]
fn base_fib(r: &mut Router) {
    r.connected("198.18.1.0/24", "eth1");
    r.connected("198.18.2.0/24", "eth2");
    r.connected("2001:db8:1::/64", "eth1");
    r.connected("2001:db8:2::/64", "eth2");
    for own in [
        "198.18.1.1/32",
        "198.18.2.1/32",
        "2001:db8:1::1/128",
        "2001:db8:2::1/128",
    ] {
        r.route(own, RouteTarget::Local);
    }
    r.via("198.19.10.0/24", &GW2.to_string(), "eth2");
    r.via("2001:db8:10::/48", &GW2_6.to_string(), "eth2");
    r.neigh("eth2", &GW2.to_string(), GW2_MAC);
    r.neigh("eth2", &GW2_6.to_string(), GW2_MAC_6);
    r.neigh("eth1", &H1.to_string(), H1_MAC);
    r.neigh("eth2", &H2.to_string(), H2_MAC);
    r.neigh("eth1", &H1_6.to_string(), H1_MAC_6);
    r.neigh("eth2", &H2_6.to_string(), H2_MAC_6);
}

fn with_base<T: Send>(f: impl FnOnce(&mut Router) -> T + Send) -> T {
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            base_fib(&mut r);
            f(&mut r)
        },
    )
}

/// A ruleset from its JSON form (the API's).
#[track_caller]
fn ruleset(v: serde_json::Value) -> Ruleset {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("ruleset: {e}"))
}

/// Compile `rs` with the router's interface names, write it into the
/// inactive generation and flip to it; the generation now active.
#[track_caller]
fn install(r: &mut Router, rs: &Ruleset) -> u32 {
    r.install_ruleset(rs, &PORTS)
}

// --- Cases ------------------------------------------------------------------

struct Case {
    desc: String,
    ingress: &'static str,
    input: Vec<u8>,
    reason: R,
    /// Whose counter moves: the chain and the rule position, None for the
    /// chain's policy.
    rule: (Chain, Option<u32>),
    /// The expected output frame, when it is checked byte for byte.
    output: Option<Vec<u8>>,
    /// No rule counter moves: a chain with no rules, an accept policy
    /// and no tracking is skipped altogether (firewall::begin).
    uncounted: bool,
}

fn case(
    desc: impl Into<String>,
    ingress: &'static str,
    input: Vec<u8>,
    reason: R,
    rule: (Chain, Option<u32>),
) -> Case {
    Case {
        desc: desc.into(),
        ingress,
        input,
        reason,
        rule,
        output: None,
        uncounted: false,
    }
}

impl Case {
    fn output(mut self, output: Vec<u8>) -> Self {
        self.output = Some(output);
        self
    }

    fn uncounted(mut self) -> Self {
        self.uncounted = true;
        self
    }
}

const FWD: Chain = Chain::Forward;
const INPUT: Chain = Chain::Input;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every rule counter of both chains of `generation` for the first `rules`
/// positions, and the policies: (chain, position, packets).
fn rule_counters(r: &Router, generation: u32, rules: u32) -> Vec<(Chain, u32, u64)> {
    let fw = r.dp.firewall();
    let mut out = Vec::new();
    for chain in Chain::ALL {
        let table = generation * 2 + chain.index();
        for pos in (0..rules).chain([FW_MAX_RULES]) {
            let c: Count = fw.rule_counter(table, pos).expect("rule counter");
            out.push((chain, pos, c.packets));
        }
    }
    out
}

/// Run one case; what went wrong, if anything.
fn check(r: &mut Router, generation: u32, rules: u32, c: &Case) -> Option<String> {
    let before = r.counters();
    let fw_before = rule_counters(r, generation, rules);
    let out = r.run(c.ingress, &c.input);
    let moved = r.counters().since(&before);
    let fw_after = rule_counters(r, generation, rules);
    let mut problems = String::new();
    let reasons: Vec<R> = moved.iter().map(|(_, reason, _)| *reason).collect();
    if reasons != [c.reason] {
        let _ = write!(
            problems,
            "\n    reasons moved {moved:?}, want {:?}",
            c.reason
        );
    }
    if out.action != c.reason.action() {
        let _ = write!(
            problems,
            "\n    verdict {:?}, want {:?}",
            out.action,
            c.reason.action()
        );
    }
    let want_pos = c.rule.1.unwrap_or(FW_MAX_RULES);
    let fw_moved: Vec<(Chain, u32, u64)> = fw_after
        .iter()
        .zip(&fw_before)
        .filter(|(a, b)| a.2 != b.2)
        .map(|(a, b)| (a.0, a.1, a.2 - b.2))
        .collect();
    let want_moved = if c.uncounted {
        Vec::new()
    } else {
        vec![(c.rule.0, want_pos, 1)]
    };
    if fw_moved != want_moved {
        let _ = write!(
            problems,
            "\n    rule counters moved {fw_moved:?} (chain, position, packets; {FW_MAX_RULES} \
             is the policy), want {want_moved:?}"
        );
    }
    if let Some(want) = &c.output
        && out.output != *want
    {
        let _ = write!(
            problems,
            "\n    output differs:\n      got  {}\n      want {}",
            hex(&out.output),
            hex(want)
        );
    }
    if matches!(out.action, Action::Tx | Action::Redirect) {
        let ipv4 = Layout::parse(&out.output).is_ok_and(|l| l.ether_type == ethertype::IPV4);
        if ipv4 && let Err(e) = verify_ipv4_checksum(&out.output) {
            let _ = write!(problems, "\n    output IPv4 header checksum: {e}");
        }
        let l4 = Layout::parse(&out.output).is_ok_and(|l| l.l4_offset.is_some());
        if l4 && let Err(e) = verify_l4_checksum(&out.output) {
            let _ = write!(problems, "\n    output L4 checksum: {e}");
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{} (in on {}: {}){problems}",
            c.desc,
            c.ingress,
            hex(&c.input)
        )
    })
}

#[track_caller]
fn run_cases(r: &mut Router, generation: u32, rs: &Ruleset, cases: &[Case]) {
    for c in cases {
        verify_checksums(&c.input)
            .unwrap_or_else(|e| panic!("{}: input fixture is not a valid frame: {e}", c.desc));
        if let Some(o) = &c.output {
            verify_checksums(o)
                .unwrap_or_else(|e| panic!("{}: expected output is not valid: {e}", c.desc));
        }
    }
    let rules = rs.rules.len() as u32;
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| check(r, generation, rules, c))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} cases passed", cases.len());
}

// --- Frames -----------------------------------------------------------------

/// An IP header from `src` to `dst` (same family) on `l2`.
fn ip(l2: Frame, src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Frame {
    match (src.into(), dst.into()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => l2.ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => l2.ipv6(s, d),
        (s, d) => panic!("mixed families {s} -> {d}"),
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

/// Into eth1 from h1's MAC, to the router's eth1 MAC.
fn in1(r: &Router) -> Frame {
    Frame::eth(H1_MAC, r.mac("eth1"))
}

fn in2(r: &Router) -> Frame {
    Frame::eth(H2_MAC, r.mac("eth2"))
}

fn udp(
    l2: Frame,
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    ip(l2, src, dst)
        .udp(sport, dport)
        .payload(&payload(24))
        .build()
}

fn tcp_seg(
    l2: Frame,
    src: impl Into<IpAddr>,
    dst: impl Into<IpAddr>,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    ip(l2, src, dst)
        .tcp(sport, dport, flags)
        .seq(0x0102_0304)
        .ack(if flags & tcp::ACK != 0 {
            0x0a0b_0c0d
        } else {
            0
        })
        .build()
}

fn icmp4(l2: Frame, src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8) -> Vec<u8> {
    l2.ipv4(src, dst)
        .icmp(kind, code)
        .payload(&payload(20))
        .build()
}

fn icmp6(l2: Frame, src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8) -> Vec<u8> {
    l2.ipv6(src, dst)
        .icmpv6(kind, code)
        .payload(&payload(20))
        .build()
}

fn proto_frame(l2: Frame, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, proto: u8) -> Vec<u8> {
    ip(l2, src, dst)
        .protocol(proto)
        .payload(&payload(16))
        .build()
}

fn a4(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4 address")
}

fn a6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 address")
}

// --- Tests ------------------------------------------------------------------

/// Every field type in the forward chain, at the edges of each match, for
/// both families; the first matching rule by position decides.
#[test]
fn forward_chain_matches_every_field_first_match_wins() {
    let rs = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "accept"},
        "sets": [{"name": "blocked", "prefixes": ["198.19.10.128/25", "2001:db8:10::8000/113"]}],
        "rules": [
            {"chain": "forward", "proto": "udp", "dport": "1000-2000", "action": "drop"},
            {"chain": "forward", "proto": "udp", "dport": 1500, "action": "accept"},
            {"chain": "forward", "proto": "tcp", "sport": "3000-3999", "action": "drop"},
            {"chain": "forward", "out": "eth1", "action": "drop"},
            {"chain": "forward", "in": "eth2", "action": "drop"},
            {"chain": "forward", "src": "198.18.1.64/26", "action": "drop"},
            {"chain": "forward", "dst": "@blocked", "action": "drop"},
            {"chain": "forward", "dst": "198.19.10.16/28", "action": "drop"},
            {"chain": "forward", "proto": "icmp", "icmp": "echo-request", "action": "drop"},
            {"chain": "forward", "proto": "icmp", "icmp": "3/4", "action": "drop"},
            {"chain": "forward", "proto": "tcp", "tcp_flags": "syn,!ack", "action": "drop"},
            {"chain": "forward", "proto": "gre", "action": "drop"},
            {"chain": "forward", "src": "2001:db8:1::40/122", "action": "drop"},
            {"chain": "forward", "proto": "icmpv6", "icmp": "echo-request", "action": "drop"},
            {"chain": "input", "proto": "udp", "action": "drop"},
        ]
    }));
    with_base(|r| {
        let generation = install(r, &rs);
        let hit = |pos: u32| (FWD, Some(pos));
        let policy = (FWD, None);
        let mut cases = Vec::new();
        // Ports at lo-1, lo, hi, hi+1; 1500 is matched by rules 0 and 1.
        for (dport, want) in [
            (999, policy),
            (1000, hit(0)),
            (1500, hit(0)),
            (2000, hit(0)),
            (2001, policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("udp dport {dport}"),
                "eth1",
                udp(in1(r), H1, FAR, 40000, dport),
                reason,
                want,
            ));
            cases.push(case(
                format!("udp6 dport {dport}"),
                "eth1",
                udp(in1(r), H1_6, FAR_6, 40000, dport),
                reason,
                want,
            ));
        }
        for (sport, want) in [
            (2999, policy),
            (3000, hit(2)),
            (3999, hit(2)),
            (4000, policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("tcp sport {sport}"),
                "eth1",
                tcp_seg(in1(r), H1, FAR, sport, 443, tcp::ACK),
                reason,
                want,
            ));
        }
        // Interfaces: out eth1 (back towards h1), in eth2.
        cases.push(case(
            "out eth1 (h2 -> h1)",
            "eth2",
            udp(in2(r), H2, H1, 40000, 53),
            R::Filtered,
            hit(3),
        ));
        cases.push(case(
            "in eth2 (h2 -> far, out eth2)",
            "eth2",
            udp(in2(r), H2, FAR, 40000, 53),
            R::Filtered,
            hit(4),
        ));
        // Source prefix edges.
        for (src, want) in [
            ("198.18.1.63", policy),
            ("198.18.1.64", hit(5)),
            ("198.18.1.127", hit(5)),
            ("198.18.1.128", policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("src {src}"),
                "eth1",
                udp(in1(r), a4(src), FAR, 40000, 53),
                reason,
                want,
            ));
        }
        // Destination: the set (both families) and a prefix.
        for (dst, want) in [
            ("198.19.10.15", policy),
            ("198.19.10.16", hit(7)),
            ("198.19.10.31", hit(7)),
            ("198.19.10.32", policy),
            ("198.19.10.127", policy),
            ("198.19.10.128", hit(6)),
            ("198.19.10.255", hit(6)),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("dst {dst}"),
                "eth1",
                udp(in1(r), H1, a4(dst), 40000, 53),
                reason,
                want,
            ));
        }
        for (dst, want) in [
            ("2001:db8:10::7fff", policy),
            ("2001:db8:10::8000", hit(6)),
            ("2001:db8:10::ffff", hit(6)),
            ("2001:db8:10::1:0", policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("dst {dst}"),
                "eth1",
                udp(in1(r), H1_6, a6(dst), 40000, 53),
                reason,
                want,
            ));
        }
        for (src, want) in [
            ("2001:db8:1::3f", policy),
            ("2001:db8:1::40", hit(12)),
            ("2001:db8:1::7f", hit(12)),
            ("2001:db8:1::80", policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("src {src}"),
                "eth1",
                udp(in1(r), a6(src), FAR_6, 40000, 53),
                reason,
                want,
            ));
        }
        // ICMP type and code.
        for (kind, code, want) in [
            (8, 0, hit(8)),
            (0, 0, policy),
            (3, 4, hit(9)),
            (3, 3, policy),
            (4, 4, policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("icmp {kind}/{code}"),
                "eth1",
                icmp4(in1(r), H1, FAR, kind, code),
                reason,
                want,
            ));
        }
        for (kind, want) in [(128, hit(13)), (129, policy)] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("icmpv6 {kind}/0"),
                "eth1",
                icmp6(in1(r), H1_6, FAR_6, kind, 0),
                reason,
                want,
            ));
        }
        // TCP flags: syn,!ack.
        for (flags, want) in [
            (tcp::SYN, hit(10)),
            (tcp::SYN | tcp::ACK, policy),
            (tcp::SYN | tcp::FIN, hit(10)),
            (tcp::ACK, policy),
        ] {
            let reason = if want.1.is_some() {
                R::Filtered
            } else {
                R::Forwarded
            };
            cases.push(case(
                format!("tcp flags {flags:#04x}"),
                "eth1",
                tcp_seg(in1(r), H1, FAR, 40000, 443, flags),
                reason,
                want,
            ));
            cases.push(case(
                format!("tcp6 flags {flags:#04x}"),
                "eth1",
                tcp_seg(in1(r), H1_6, FAR_6, 40000, 443, flags),
                reason,
                want,
            ));
        }
        // Protocol numbers.
        cases.push(case(
            "gre",
            "eth1",
            proto_frame(in1(r), H1, FAR, 47),
            R::Filtered,
            hit(11),
        ));
        cases.push(case(
            "esp over IPv4",
            "eth1",
            proto_frame(in1(r), H1, FAR, 50),
            R::Forwarded,
            policy,
        ));
        cases.push(case(
            "gre over IPv6",
            "eth1",
            proto_frame(in1(r), H1_6, FAR_6, 47),
            R::Filtered,
            hit(11),
        ));
        // The input chain's rule does not apply to forwarded packets, nor
        // the forward chain's to local ones.
        cases.push(case(
            "udp to the router: input chain",
            "eth1",
            udp(in1(r), H1, R1, 40000, 999),
            R::Filtered,
            (INPUT, Some(0)),
        ));
        cases.push(case(
            "tcp 3000 to the router: input policy, not forward rule 2",
            "eth1",
            tcp_seg(in1(r), H1, R1, 3000, 22, tcp::ACK),
            R::Local,
            (INPUT, None),
        ));
        run_cases(r, generation, &rs, &cases);
    });
}

/// Default policies, the input chain (local routes) against the forward
/// chain, and forwarding (TTL minus one, new MACs) with a firewall in place.
#[test]
fn policies_and_input_chain() {
    let drop_forward = ruleset(serde_json::json!({
        "policy": {"forward": "drop", "input": "accept"},
        "rules": [
            {"chain": "forward", "dst": "198.19.10.5/32", "action": "accept"},
            {"chain": "forward", "dst": "2001:db8:10::5/128", "action": "accept"},
            {"chain": "input", "in": "eth1", "proto": "tcp", "dport": 22, "action": "accept"},
            {"chain": "input", "proto": "tcp", "dport": 22, "action": "drop"},
        ]
    }));
    let drop_input = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "drop"},
        "rules": [
            {"chain": "input", "proto": "icmp", "icmp": "echo-request", "action": "accept"},
            // Without a rule, an accept-policy chain is skipped and counts
            // nothing (see `empty_ruleset_is_skipped`).
            {"chain": "forward", "proto": "gre", "action": "drop"},
        ]
    }));
    with_base(|r| {
        let eth2 = r.mac("eth2");
        let fwd4 = |ttl: u8| {
            move |l2: Frame| {
                l2.ipv4(H1, FAR)
                    .ttl(ttl)
                    .udp(40000, 53)
                    .payload(&payload(24))
                    .build()
            }
        };
        let fwd6 = |hop: u8| {
            move |l2: Frame| {
                l2.ipv6(H1_6, FAR_6)
                    .hop_limit(hop)
                    .udp(40000, 53)
                    .payload(&payload(24))
                    .build()
            }
        };
        let generation = install(r, &drop_forward);
        let cases = vec![
            case(
                "to far .5: accepted by rule 0",
                "eth1",
                fwd4(64)(in1(r)),
                R::Forwarded,
                (FWD, Some(0)),
            )
            .output(fwd4(63)(Frame::eth(eth2, GW2_MAC))),
            case(
                "to far6 ::5: accepted by rule 1",
                "eth1",
                fwd6(64)(in1(r)),
                R::Forwarded,
                (FWD, Some(1)),
            )
            .output(fwd6(63)(Frame::eth(eth2, GW2_MAC_6))),
            case(
                "to far .6: forward policy drop",
                "eth1",
                udp(in1(r), H1, a4("198.19.10.6"), 40000, 53),
                R::Filtered,
                (FWD, None),
            ),
            case(
                "to far6 ::6: forward policy drop",
                "eth1",
                udp(in1(r), H1_6, v6(0x10, 6), 40000, 53),
                R::Filtered,
                (FWD, None),
            ),
            case(
                "h2 -> h1: forward policy drop",
                "eth2",
                udp(in2(r), H2, H1, 40000, 53),
                R::Filtered,
                (FWD, None),
            ),
            case(
                "ssh to r1 from eth1",
                "eth1",
                tcp_seg(in1(r), H1, R1, 40000, 22, tcp::SYN),
                R::Local,
                (INPUT, Some(0)),
            ),
            case(
                "ssh6 to r1 from eth1",
                "eth1",
                tcp_seg(in1(r), H1_6, R1_6, 40000, 22, tcp::SYN),
                R::Local,
                (INPUT, Some(0)),
            ),
            case(
                "ssh to r2 from eth2",
                "eth2",
                tcp_seg(in2(r), H2, R2, 40000, 22, tcp::SYN),
                R::Filtered,
                (INPUT, Some(1)),
            ),
            case(
                "ssh to r1 from eth2",
                "eth2",
                tcp_seg(in2(r), H2, R1, 40000, 22, tcp::SYN),
                R::Filtered,
                (INPUT, Some(1)),
            ),
            case(
                "http to r1: input policy accept",
                "eth1",
                tcp_seg(in1(r), H1, R1, 40000, 80, tcp::SYN),
                R::Local,
                (INPUT, None),
            ),
        ];
        run_cases(r, generation, &drop_forward, &cases);

        let generation = install(r, &drop_input);
        let cases = vec![
            case(
                "to far: forward policy accept",
                "eth1",
                fwd4(64)(in1(r)),
                R::Forwarded,
                (FWD, None),
            )
            .output(fwd4(63)(Frame::eth(eth2, GW2_MAC))),
            case(
                "to far6: forward policy accept",
                "eth1",
                fwd6(64)(in1(r)),
                R::Forwarded,
                (FWD, None),
            )
            .output(fwd6(63)(Frame::eth(eth2, GW2_MAC_6))),
            case(
                "ping r1",
                "eth1",
                icmp4(in1(r), H1, R1, 8, 0),
                R::Local,
                (INPUT, Some(0)),
            ),
            case(
                "udp to r1: input policy drop",
                "eth1",
                udp(in1(r), H1, R1, 40000, 53),
                R::Filtered,
                (INPUT, None),
            ),
            case(
                "udp6 to r1: input policy drop",
                "eth1",
                udp(in1(r), H1_6, R1_6, 40000, 53),
                R::Filtered,
                (INPUT, None),
            ),
            case(
                "ping6 r1: input policy drop",
                "eth1",
                icmp6(in1(r), H1_6, R1_6, 128, 0),
                R::Filtered,
                (INPUT, None),
            ),
        ];
        run_cases(r, generation, &drop_input, &cases);
    });
}

/// The TCP RST a reject sends (RFC 9293 3.10.7.1), byte for byte.
fn rst(
    l2: Frame,
    src: IpAddr,
    dst: IpAddr,
    (sport, dport): (u16, u16),
    (seq, ack): (u32, u32),
    flags: u8,
) -> Vec<u8> {
    let f = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => l2.ipv4(s, d).ttl(64).id(0).dont_fragment(),
        (IpAddr::V6(s), IpAddr::V6(d)) => l2.ipv6(s, d).hop_limit(64),
        _ => unreachable!(),
    };
    f.tcp(sport, dport, flags)
        .seq(seq)
        .ack(ack)
        .window(0)
        .build()
}

/// Rejections: TCP RSTs for an ACK segment and for a SYN, ICMP and ICMPv6
/// port unreachable quoting the packet, in both chains; and no reply to a
/// RST or an ICMP error.
#[test]
fn reject_builds_rst_and_port_unreachable() {
    let rs = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "accept"},
        "rules": [
            {"chain": "forward", "proto": "tcp", "action": "reject"},
            {"chain": "forward", "proto": "udp", "action": "reject"},
            {"chain": "forward", "proto": "icmp", "action": "reject"},
            {"chain": "input", "proto": "tcp", "dport": 23, "action": "reject"},
        ]
    }));
    with_base(|r| {
        let generation = install(r, &rs);
        let eth1 = r.mac("eth1");
        let back = || Frame::eth(eth1, H1_MAC);
        let mut cases = Vec::new();
        for (fam, src, dst) in [
            ("IPv4", IpAddr::V4(H1), IpAddr::V4(FAR)),
            ("IPv6", IpAddr::V6(H1_6), IpAddr::V6(FAR_6)),
        ] {
            // An ACK segment with 10 bytes of data: RST, seq = its ack.
            let input = ip(in1(r), src, dst)
                .tcp(40000, 443, tcp::ACK | tcp::PSH)
                .seq(0x1122_3344)
                .ack(0x5566_7788)
                .window(512)
                .payload(&payload(10))
                .build();
            let want = rst(back(), dst, src, (443, 40000), (0x5566_7788, 0), tcp::RST);
            cases.push(
                case(
                    format!("{fam} tcp ACK segment"),
                    "eth1",
                    input,
                    R::Rejected,
                    (FWD, Some(0)),
                )
                .output(want),
            );
            // A SYN: seq 0, ack = its seq + 1 (the SYN counts one).
            let input = ip(in1(r), src, dst)
                .tcp(40001, 443, tcp::SYN)
                .seq(0xffff_ffff)
                .window(512)
                .build();
            let want = rst(back(), dst, src, (443, 40001), (0, 0), tcp::RST | tcp::ACK);
            cases.push(
                case(
                    format!("{fam} tcp SYN (seq wraps)"),
                    "eth1",
                    input,
                    R::Rejected,
                    (FWD, Some(0)),
                )
                .output(want),
            );
            // A SYN with 6 bytes of data and FIN: ack = seq + 6 + 2.
            let input = ip(in1(r), src, dst)
                .tcp(40002, 443, tcp::SYN | tcp::FIN)
                .seq(1000)
                .payload(&payload(6))
                .build();
            let want = rst(
                back(),
                dst,
                src,
                (443, 40002),
                (0, 1008),
                tcp::RST | tcp::ACK,
            );
            cases.push(
                case(
                    format!("{fam} tcp SYN+FIN with data"),
                    "eth1",
                    input,
                    R::Rejected,
                    (FWD, Some(0)),
                )
                .output(want),
            );
            // No RST for a RST.
            let input = tcp_seg(in1(r), src, dst, 40003, 443, tcp::RST);
            cases.push(case(
                format!("{fam} tcp RST: dropped"),
                "eth1",
                input,
                R::Filtered,
                (FWD, Some(0)),
            ));
        }
        // ICMP port unreachable (IPv4): type 3 code 3, TOS 0xc0 (as Linux's
        // icmp_send), quoting the IP packet (52 bytes: a multiple of 4).
        let input = udp(in1(r), H1, FAR, 40000, 53);
        let quote = input[14..].to_vec();
        let want = back()
            .ipv4(FAR, H1)
            .ttl(64)
            .id(0)
            .tos(0xc0)
            .dont_fragment()
            .icmp(3, 3)
            .payload(&quote)
            .build();
        cases.push(
            case(
                "udp: ICMP port unreachable",
                "eth1",
                input,
                R::Rejected,
                (FWD, Some(1)),
            )
            .output(want),
        );
        // ICMPv6 port unreachable: type 1 code 4, quote.
        let input = udp(in1(r), H1_6, FAR_6, 40000, 53);
        let quote = input[14..].to_vec();
        let want = back()
            .ipv6(FAR_6, H1_6)
            .hop_limit(64)
            .icmpv6(1, 4)
            .payload(&quote)
            .build();
        cases.push(
            case(
                "udp6: ICMPv6 port unreachable",
                "eth1",
                input,
                R::Rejected,
                (FWD, Some(1)),
            )
            .output(want),
        );
        // An echo request is answered; an ICMP error is not.
        let input = l2_echo(in1(r));
        let quote = input[14..].to_vec();
        let want = back()
            .ipv4(FAR, H1)
            .ttl(64)
            .id(0)
            .tos(0xc0)
            .dont_fragment()
            .icmp(3, 3)
            .payload(&quote)
            .build();
        cases.push(
            case(
                "icmp echo: port unreachable",
                "eth1",
                input,
                R::Rejected,
                (FWD, Some(2)),
            )
            .output(want),
        );
        cases.push(case(
            "icmp error: dropped, not answered",
            "eth1",
            icmp4(in1(r), H1, FAR, 3, 1),
            R::Filtered,
            (FWD, Some(2)),
        ));
        // The input chain: a RST from the router's own address.
        let input = tcp_seg(in1(r), H1, R1, 40000, 23, tcp::SYN);
        let want = rst(
            back(),
            R1.into(),
            H1.into(),
            (23, 40000),
            (0, 0x0102_0305),
            tcp::RST | tcp::ACK,
        );
        cases.push(
            case(
                "telnet to r1: RST",
                "eth1",
                input,
                R::Rejected,
                (INPUT, Some(0)),
            )
            .output(want),
        );
        run_cases(r, generation, &rs, &cases);
    });
}

fn l2_echo(l2: Frame) -> Vec<u8> {
    l2.ipv4(H1, FAR)
        .icmp_echo(0x1234, 7)
        .payload(&payload(20))
        .build()
}

/// Connection state: a SYN one way is new, the SYN-ACK back established.
#[test]
fn state_new_then_established() {
    let rs = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "accept"},
        "rules": [
            {"chain": "forward", "state": ["established"], "action": "accept"},
            {"chain": "forward", "in": "eth1", "proto": "tcp", "state": ["new"], "action": "accept"},
            {"chain": "forward", "action": "drop"},
        ]
    }));
    with_base(|r| {
        let generation = install(r, &rs);
        let mut cases = Vec::new();
        for (fam, h1, h2) in [
            ("IPv4", IpAddr::V4(H1), IpAddr::V4(H2)),
            ("IPv6", IpAddr::V6(H1_6), IpAddr::V6(H2_6)),
        ] {
            let syn = ip(in1(r), h1, h2).tcp(40000, 80, tcp::SYN).seq(100).build();
            let syn_ack = ip(in2(r), h2, h1)
                .tcp(80, 40000, tcp::SYN | tcp::ACK)
                .seq(500)
                .ack(101)
                .build();
            let ack = ip(in1(r), h1, h2)
                .tcp(40000, 80, tcp::ACK)
                .seq(101)
                .ack(501)
                .build();
            let other = ip(in2(r), h2, h1).tcp(80, 40001, tcp::SYN).seq(7).build();
            cases.push(case(
                format!("{fam} SYN h1 -> h2: new"),
                "eth1",
                syn,
                R::Forwarded,
                (FWD, Some(1)),
            ));
            cases.push(case(
                format!("{fam} SYN-ACK h2 -> h1: established"),
                "eth2",
                syn_ack,
                R::Forwarded,
                (FWD, Some(0)),
            ));
            cases.push(case(
                format!("{fam} ACK h1 -> h2: established"),
                "eth1",
                ack,
                R::Forwarded,
                (FWD, Some(0)),
            ));
            cases.push(case(
                format!("{fam} SYN h2 -> h1, other flow: new from eth2"),
                "eth2",
                other,
                R::Filtered,
                (FWD, Some(2)),
            ));
            cases.push(case(
                format!("{fam} udp h1 -> h2: new, not tcp"),
                "eth1",
                udp(in1(r), h1, h2, 40000, 53),
                R::Filtered,
                (FWD, Some(2)),
            ));
        }
        run_cases(r, generation, &rs, &cases);
    });
}

#[test]
fn empty_ruleset_is_skipped() {
    let block = ruleset(serde_json::json!({
        "rules": [{"chain": "forward", "proto": "udp", "dport": 53, "action": "drop"}]
    }));
    let empty = Ruleset::default();
    with_base(|r| {
        let frame = udp(in1(r), H1, FAR, 40000, 53);
        let generation = install(r, &block);
        run_cases(
            r,
            generation,
            &block,
            &[case(
                "blocked",
                "eth1",
                frame.clone(),
                R::Filtered,
                (FWD, Some(0)),
            )],
        );
        let generation = install(r, &empty);
        run_cases(
            r,
            generation,
            &empty,
            &[case(
                "empty ruleset",
                "eth1",
                frame.clone(),
                R::Forwarded,
                (FWD, None),
            )
            .uncounted()],
        );
        let generation = install(r, &block);
        run_cases(
            r,
            generation,
            &block,
            &[case(
                "blocked again",
                "eth1",
                frame,
                R::Filtered,
                (FWD, Some(0)),
            )],
        );
    });
}

// --- Connection tracking beyond new/established ------------------------------

/// The state of the tracked connection whose original source port is
/// `sport` (for ICMP echo, the identifier), as `xdpgate conntrack` names it.
fn ct_state(r: &Router, family: u8, proto: &str, sport: u16) -> Option<&'static str> {
    let page = xdpgate::conntrack::list(
        r.dp.firewall(),
        &xdpgate::conntrack::Filter::default(),
        10_000,
        None,
    )
    .expect("list conntrack");
    page.items
        .into_iter()
        .find(|c| c.family == family && c.proto == proto && c.sport == sport)
        .map(|c| c.state)
}

/// The raw entry (key and value) of that connection, for the last-seen test.
fn ct_entry(
    r: &Router,
    proto: u8,
    port: u16,
) -> (dataplane_common::CtKey, dataplane_common::CtEntry) {
    r.dp.firewall()
        .conntrack()
        .iter()
        .map(|kv| kv.expect("read conntrack"))
        .find(|(k, _)| k.proto == proto && (k.port_lo == port || k.port_hi == port))
        .unwrap_or_else(|| panic!("no entry for proto {proto} port {port}"))
}

/// What an ICMP error quotes (RFC 792, RFC 4443 2.4(c)): the offending
/// packet's IP header and at least the first 8 bytes of its L4 header.
fn quote(frame: &[u8], ip_header: usize) -> Vec<u8> {
    let l3 = Layout::parse(frame).expect("a frame to quote").l3_offset;
    frame[l3..l3 + ip_header + 8].to_vec()
}

fn icmp_error(l2: Frame, src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Vec<u8> {
    match (src, dst) {
        // Destination unreachable, port unreachable (RFC 792).
        (IpAddr::V4(s), IpAddr::V4(d)) => l2.ipv4(s, d).icmp(3, 3).payload(quoted).build(),
        // Destination unreachable, port unreachable (RFC 4443 3.1).
        (IpAddr::V6(s), IpAddr::V6(d)) => l2.ipv6(s, d).icmpv6(1, 4).payload(quoted).build(),
        (s, d) => panic!("mixed families {s} -> {d}"),
    }
}

fn echo_reply(l2: Frame, src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(t)) => l2.ipv4(s, t).icmp(0, 0).icmp_rest([a, b, c, d]),
        (IpAddr::V6(s), IpAddr::V6(t)) => l2.ipv6(s, t).icmpv6(129, 0).icmp_rest([a, b, c, d]),
        (s, t) => panic!("mixed families {s} -> {t}"),
    }
    .payload(&payload(16))
    .build()
}

/// Each step is a case, then the state its connection must be left in
/// (`None`: the packet made no connection).
struct Step {
    case: Case,
    conn: Option<(&'static str, u16, &'static str)>,
}

fn step(case: Case, conn: Option<(&'static str, u16, &'static str)>) -> Step {
    Step { case, conn }
}

/// The TCP teardown (FIN both ways, RST), a SYN that reopens a closed
/// connection, replies that nf_conntrack calls invalid, ICMP errors that
/// quote a tracked connection (related) or an unknown one (invalid), UDP
/// and ICMP echo replies, over IPv4 and IPv6. After every packet, both the
/// rule that matched and the state left in CONNTRACK are checked
/// (nf_conntrack_proto_tcp.c's table, without its window checks).
#[test]
fn conntrack_teardown_related_invalid_udp_and_echo() {
    let rs = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "accept"},
        "rules": [
            {"chain": "forward", "state": ["established"], "action": "accept"},
            {"chain": "forward", "state": ["related"], "action": "accept"},
            {"chain": "forward", "state": ["invalid"], "action": "drop"},
            {"chain": "forward", "in": "eth1", "state": ["new"], "action": "accept"},
            {"chain": "forward", "action": "drop"},
        ]
    }));
    with_base(|r| {
        let generation = install(r, &rs);
        let rules = rs.rules.len() as u32;
        let mut failures = Vec::new();
        let mut steps = 0;
        for (fam, h1, h2, ip_header) in [
            (4u8, IpAddr::V4(H1), IpAddr::V4(H2), 20),
            (6u8, IpAddr::V6(H1_6), IpAddr::V6(H2_6), 40),
        ] {
            let icmp = if fam == 4 { "icmp" } else { "icmpv6" };
            let syn = tcp_seg(in1(r), h1, h2, 41000, 80, tcp::SYN);
            let fwd = |desc: &str, port, input, rule| {
                case(
                    format!("IPv{fam} {desc}"),
                    port,
                    input,
                    R::Forwarded,
                    (FWD, Some(rule)),
                )
            };
            let filtered = |desc: &str, port, input, rule| {
                case(
                    format!("IPv{fam} {desc}"),
                    port,
                    input,
                    R::Filtered,
                    (FWD, Some(rule)),
                )
            };
            let plan = vec![
                step(
                    fwd("SYN: new", "eth1", syn.clone(), 3),
                    Some(("tcp", 41000, "SYN_SENT")),
                ),
                step(
                    filtered(
                        "a bare ACK answering a SYN: invalid",
                        "eth2",
                        tcp_seg(in2(r), h2, h1, 80, 41000, tcp::ACK),
                        2,
                    ),
                    Some(("tcp", 41000, "SYN_SENT")),
                ),
                step(
                    fwd(
                        "an ICMP error quoting the SYN: related",
                        "eth2",
                        icmp_error(in2(r), h2, h1, &quote(&syn, ip_header)),
                        1,
                    ),
                    Some(("tcp", 41000, "SYN_SENT")),
                ),
                step(
                    filtered(
                        "an ICMP error quoting an unknown flow: invalid",
                        "eth2",
                        icmp_error(
                            in2(r),
                            h2,
                            h1,
                            &quote(&tcp_seg(in1(r), h1, h2, 41999, 80, tcp::SYN), ip_header),
                        ),
                        2,
                    ),
                    None,
                ),
                step(
                    fwd(
                        "SYN-ACK",
                        "eth2",
                        tcp_seg(in2(r), h2, h1, 80, 41000, tcp::SYN | tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "SYN_RECV")),
                ),
                step(
                    fwd(
                        "ACK",
                        "eth1",
                        tcp_seg(in1(r), h1, h2, 41000, 80, tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "ESTABLISHED")),
                ),
                step(
                    fwd(
                        "FIN from h1",
                        "eth1",
                        tcp_seg(in1(r), h1, h2, 41000, 80, tcp::FIN | tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "FIN_WAIT")),
                ),
                step(
                    fwd(
                        "ACK of it from h2: half closed",
                        "eth2",
                        tcp_seg(in2(r), h2, h1, 80, 41000, tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "CLOSE_WAIT")),
                ),
                step(
                    fwd(
                        "FIN from h2",
                        "eth2",
                        tcp_seg(in2(r), h2, h1, 80, 41000, tcp::FIN | tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "LAST_ACK")),
                ),
                step(
                    fwd(
                        "the last ACK",
                        "eth1",
                        tcp_seg(in1(r), h1, h2, 41000, 80, tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "TIME_WAIT")),
                ),
                step(
                    fwd(
                        "a SYN on the closed connection opens it again: new",
                        "eth1",
                        syn.clone(),
                        3,
                    ),
                    Some(("tcp", 41000, "SYN_SENT")),
                ),
                step(
                    fwd(
                        "RST from h2",
                        "eth2",
                        tcp_seg(in2(r), h2, h1, 80, 41000, tcp::RST | tcp::ACK),
                        0,
                    ),
                    Some(("tcp", 41000, "CLOSE")),
                ),
                step(
                    filtered(
                        "a RST with no connection: invalid",
                        "eth1",
                        tcp_seg(in1(r), h1, h2, 41001, 80, tcp::RST),
                        2,
                    ),
                    None,
                ),
                step(
                    fwd("UDP: new", "eth1", udp(in1(r), h1, h2, 41002, 53), 3),
                    Some(("udp", 41002, "UNREPLIED")),
                ),
                step(
                    fwd(
                        "UDP reply: established",
                        "eth2",
                        udp(in2(r), h2, h1, 53, 41002),
                        0,
                    ),
                    Some(("udp", 41002, "REPLIED")),
                ),
                step(
                    filtered(
                        "UDP from h2 to another port: new from outside",
                        "eth2",
                        udp(in2(r), h2, h1, 53, 41003),
                        4,
                    ),
                    None,
                ),
                step(
                    fwd(
                        "echo request: new",
                        "eth1",
                        ip(in1(r), h1, h2)
                            .icmp_echo(0x4242, 1)
                            .payload(&payload(16))
                            .build(),
                        3,
                    ),
                    Some((icmp, 0x4242, "ECHO")),
                ),
                step(
                    fwd(
                        "echo reply: established",
                        "eth2",
                        echo_reply(in2(r), h2, h1, 0x4242, 1),
                        0,
                    ),
                    Some((icmp, 0x4242, "ECHO")),
                ),
                step(
                    filtered(
                        "an echo reply nobody asked for: invalid",
                        "eth2",
                        echo_reply(in2(r), h2, h1, 0x4343, 1),
                        2,
                    ),
                    None,
                ),
            ];
            for s in &plan {
                steps += 1;
                verify_checksums(&s.case.input)
                    .unwrap_or_else(|e| panic!("{}: bad fixture: {e}", s.case.desc));
                if let Some(p) = check(r, generation, rules, &s.case) {
                    failures.push(p);
                }
                match s.conn {
                    Some((proto, sport, want)) => {
                        let got = ct_state(r, fam, proto, sport);
                        if got != Some(want) {
                            failures.push(format!(
                                "{}: connection {proto} :{sport} is {got:?}, want {want}",
                                s.case.desc
                            ));
                        }
                    }
                    None => {
                        let page = xdpgate::conntrack::list(
                            r.dp.firewall(),
                            &xdpgate::conntrack::Filter::default(),
                            10_000,
                            None,
                        )
                        .expect("list");
                        let made = page.items.iter().any(|c| {
                            c.family == fam && [41001, 41003, 41999, 0x4343].contains(&c.sport)
                        });
                        if made {
                            failures.push(format!("{}: made a connection", s.case.desc));
                        }
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {steps} steps failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        println!("{steps} steps passed");
    });
}

/// A packet refreshes its connection's last-seen time only when the stored
/// one is at least a second old: no map write per packet (conntrack.rs
/// `confirm`).
#[test]
fn conntrack_last_seen_is_written_at_most_once_a_second() {
    let rs = ruleset(serde_json::json!({
        "policy": {"forward": "accept", "input": "accept"},
        "rules": [
            {"chain": "forward", "state": ["established", "new"], "action": "accept"},
        ]
    }));
    with_base(|r| {
        let generation = install(r, &rs);
        let rules = rs.rules.len() as u32;
        let out = udp(in1(r), H1, H2, 42000, 53);
        let back = udp(in2(r), H2, H1, 53, 42000);
        let fwd = |desc: &str, port, input: &Vec<u8>| {
            case(desc, port, input.clone(), R::Forwarded, (FWD, Some(0)))
        };
        let c = fwd("first datagram", "eth1", &out);
        assert_eq!(check(r, generation, rules, &c), None);
        let c = fwd("reply", "eth2", &back);
        assert_eq!(check(r, generation, rules, &c), None);
        let set_last_seen = |r: &mut Router, ago_ns: u64| -> u64 {
            let (k, mut e) = ct_entry(r, 17, 42000);
            e.last_seen_ns = xdpgate::conntrack::now_ns() - ago_ns;
            r.dp.firewall_mut()
                .conntrack_mut()
                .insert(k, e, 0)
                .expect("write last seen");
            e.last_seen_ns
        };
        // 300 ms ago: packets within the second leave it alone.
        let stored = set_last_seen(r, 300_000_000);
        for i in 0..20 {
            let (port, frame) = if i % 2 == 0 {
                ("eth1", &out)
            } else {
                ("eth2", &back)
            };
            assert_eq!(
                check(r, generation, rules, &fwd("within the second", port, frame)),
                None
            );
        }
        let (_, e) = ct_entry(r, 17, 42000);
        assert_eq!(
            e.last_seen_ns, stored,
            "20 packets within a second of the last write rewrote last-seen"
        );
        assert_eq!(e.state, dataplane_common::CT_UDP_REPLIED);
        // 1.5 s ago: the next packet refreshes it, to the program's clock.
        let stored = set_last_seen(r, 1_500_000_000);
        let before = xdpgate::conntrack::now_ns();
        assert_eq!(
            check(r, generation, rules, &fwd("after a second", "eth1", &out)),
            None
        );
        let (_, e) = ct_entry(r, 17, 42000);
        assert!(
            e.last_seen_ns > stored + 1_000_000_000,
            "a packet 1.5 s after the last write left last-seen at {} (was {stored})",
            e.last_seen_ns
        );
        // CLOCK_MONOTONIC_COARSE ticks once a jiffy (at most 10 ms).
        assert!(e.last_seen_ns + 20_000_000 >= before);
        println!("last-seen: unchanged over 20 packets within 1 s, refreshed after 1.5 s");
    });
}
