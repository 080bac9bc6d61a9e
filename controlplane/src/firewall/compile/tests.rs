//! The compiled tables against the reference classifier: hand-written
//! cases with the expected answer spelled out, then random rulesets.
use std::net::IpAddr;

use dataplane_common::{
    CHAIN_F_CONNTRACK, FIELD_CT_STATE, FIELD_DPORT, FIELD_PROTO, FIELD_SPORT, FIELD_STRIDE,
    FW_DIR_IN, FW_MAX_PREFIXES_V6, FW_SIDE_DST, FW_SIDE_SRC,
};
use ipnet::IpNet;
use serde_json::json;

use super::*;
use crate::firewall::{
    reference::{self, PacketView},
    rule::{CtState, Policies},
    testgen,
};

const BASE: u32 = 1000;

fn rule(v: serde_json::Value) -> Rule {
    serde_json::from_value(v).expect("valid rule")
}

fn ruleset(rules: Vec<serde_json::Value>) -> Ruleset {
    Ruleset {
        rules: rules.into_iter().map(rule).collect(),
        ..Default::default()
    }
}

#[track_caller]
fn compiled(rs: &Ruleset) -> Compiled {
    compile(rs, &testgen::resolver, BASE, 1 << 20).expect("compiles")
}

/// A TCP packet over IPv4 or IPv6 (by the addresses) from eth1, to eth2.
fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> PacketView {
    let src: IpAddr = src.parse().expect("address");
    PacketView {
        family: if src.is_ipv4() { 4 } else { 6 },
        in_ifindex: 101,
        out_ifindex: 102,
        src,
        dst: dst.parse().expect("address"),
        proto: 6,
        sport: Some(sport),
        dport: Some(dport),
        tcp_flags: Some(0x10),
        icmp: None,
        state: CtState::New,
    }
}

fn tcp4(dport: u16) -> PacketView {
    tcp("198.51.100.1", "192.0.2.1", 40000, dport)
}

fn udp4(dport: u16) -> PacketView {
    PacketView {
        proto: 17,
        tcp_flags: None,
        ..tcp4(dport)
    }
}

fn icmp(src: &str, dst: &str, kind: u8, code: u8) -> PacketView {
    let p = tcp(src, dst, 0, 0);
    PacketView {
        proto: if p.family == 4 { 1 } else { 58 },
        sport: None,
        dport: None,
        tcp_flags: None,
        icmp: Some((kind, code)),
        ..p
    }
}

/// Both classifiers give `position` (None: the policy) and `verdict`.
#[track_caller]
fn expect(
    rs: &Ruleset,
    c: &Compiled,
    chain: Chain,
    pkt: &PacketView,
    position: Option<u32>,
    verdict: Verdict,
) {
    let want = |m: Match| (m.position, m.verdict);
    let r = reference::classify(rs, chain, &testgen::resolver, pkt);
    assert_eq!(want(r), (position, verdict), "reference, {pkt:?}");
    let got = c.classify(chain, pkt);
    assert_eq!(got, r, "compiled vs reference, {pkt:?}");
}

#[test]
fn first_match_by_position() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "tcp", "dport": 80, "action": "drop"}),
        json!({"chain": "forward", "proto": "tcp", "action": "reject"}),
        json!({"chain": "forward", "action": "accept"}),
        json!({"chain": "forward", "proto": "tcp", "dport": 81, "action": "drop"}),
    ]);
    let c = compiled(&rs);
    let f = Chain::Forward;
    expect(&rs, &c, f, &tcp4(80), Some(0), Verdict::Drop);
    expect(&rs, &c, f, &tcp4(81), Some(1), Verdict::Reject);
    expect(&rs, &c, f, &udp4(80), Some(2), Verdict::Accept);
    let m = c.classify(f, &tcp4(80));
    assert_eq!(m.rule_index, Some(0));
}

#[test]
fn default_policy_decides_when_nothing_matches() {
    let mut rs = ruleset(vec![
        json!({"chain": "input", "proto": "udp", "dport": 53, "action": "accept"}),
    ]);
    rs.policy = Policies {
        forward: Verdict::Reject,
        input: Verdict::Drop,
    };
    let c = compiled(&rs);
    // No forward rules: the policy decides without a lookup.
    assert_eq!(c.chains[0].info.rules, 0);
    assert_eq!(c.chains[0].info.words, 0);
    assert_eq!(c.chains[0].info.policy, Verdict::Reject.code());
    expect(&rs, &c, Chain::Forward, &udp4(53), None, Verdict::Reject);
    expect(&rs, &c, Chain::Input, &udp4(53), Some(0), Verdict::Accept);
    expect(&rs, &c, Chain::Input, &udp4(54), None, Verdict::Drop);
    expect(&rs, &c, Chain::Input, &tcp4(53), None, Verdict::Drop);
}

#[test]
fn disabled_rules_and_other_chains_take_no_position() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "enabled": false, "action": "drop"}),
        json!({"chain": "input", "action": "reject"}),
        json!({"chain": "forward", "proto": "tcp", "action": "accept", "id": 7}),
        json!({"chain": "forward", "action": "drop", "id": 8}),
    ]);
    let c = compiled(&rs);
    let fwd = &c.chains[Chain::Forward.index() as usize];
    assert_eq!(fwd.chain, Chain::Forward);
    assert_eq!(fwd.info.rules, 2);
    assert_eq!(fwd.rule_index, vec![2, 3]);
    assert_eq!(
        fwd.rules,
        vec![
            FwRule {
                action: Verdict::Accept.code(),
                id: 7,
                flags: 0,
                _pad: 0
            },
            FwRule {
                action: Verdict::Drop.code(),
                id: 8,
                flags: 0,
                _pad: 0
            }
        ]
    );
    expect(&rs, &c, Chain::Forward, &tcp4(1), Some(0), Verdict::Accept);
    expect(&rs, &c, Chain::Forward, &udp4(1), Some(1), Verdict::Drop);
    assert_eq!(c.classify(Chain::Forward, &udp4(1)).rule_index, Some(3));
    expect(&rs, &c, Chain::Input, &udp4(1), Some(0), Verdict::Reject);
}

#[test]
fn port_range_edges() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "tcp", "dport": "1000-2000", "action": "drop"}),
        json!({"chain": "forward", "proto": "tcp", "dport": "65535", "action": "reject"}),
        json!({"chain": "forward", "proto": "tcp", "sport": "0-1", "action": "reject"}),
        json!({"chain": "forward", "proto": "udp", "dport": "1500-1600", "action": "reject"}),
    ]);
    let c = compiled(&rs);
    let f = Chain::Forward;
    for (port, position) in [
        (999, None),
        (1000, Some(0)),
        (1500, Some(0)),
        (2000, Some(0)),
        (2001, None),
        (65534, None),
        (65535, Some(1)),
    ] {
        let verdict = match position {
            Some(0) => Verdict::Drop,
            Some(_) => Verdict::Reject,
            None => Verdict::Accept,
        };
        expect(&rs, &c, f, &tcp4(port), position, verdict);
    }
    expect(
        &rs,
        &c,
        f,
        &tcp("10.0.0.1", "10.0.0.2", 0, 5),
        Some(2),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        f,
        &tcp("10.0.0.1", "10.0.0.2", 1, 5),
        Some(2),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        f,
        &tcp("10.0.0.1", "10.0.0.2", 2, 5),
        None,
        Verdict::Accept,
    );
    // The UDP rule's range inside the TCP rule's: proto keeps them apart.
    expect(&rs, &c, f, &udp4(1499), None, Verdict::Accept);
    expect(&rs, &c, f, &udp4(1500), Some(3), Verdict::Reject);
    expect(&rs, &c, f, &udp4(1600), Some(3), Verdict::Reject);
    expect(&rs, &c, f, &udp4(1601), None, Verdict::Accept);
    // No L4 header: no port, so no port rule matches.
    let bare = PacketView {
        sport: None,
        dport: None,
        tcp_flags: None,
        ..tcp4(1000)
    };
    expect(&rs, &c, f, &bare, None, Verdict::Accept);
}

#[test]
fn nested_prefixes_take_the_first_rule_not_the_longest() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "src": "10.0.0.0/8", "dst": "192.0.2.0/24", "action": "reject"}),
        json!({"chain": "forward", "src": "10.1.2.0/24", "action": "drop"}),
        json!({"chain": "forward", "src": "10.1.0.0/16", "action": "reject"}),
        json!({"chain": "forward", "src": "10.0.0.0/8", "action": "accept"}),
        json!({"chain": "forward", "src": "0.0.0.0/0", "proto": "udp", "action": "reject"}),
        json!({"chain": "forward", "action": "drop"}),
    ]);
    let c = compiled(&rs);
    let f = Chain::Forward;
    let pkt = |src: &str, dst: &str| tcp(src, dst, 1, 1);
    // The /8 rule comes first even though /24 is the longest match.
    expect(
        &rs,
        &c,
        f,
        &pkt("10.1.2.5", "192.0.2.9"),
        Some(0),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("10.1.2.0", "198.51.100.1"),
        Some(1),
        Verdict::Drop,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("10.1.2.255", "198.51.100.1"),
        Some(1),
        Verdict::Drop,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("10.1.3.0", "198.51.100.1"),
        Some(2),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("10.1.1.255", "198.51.100.1"),
        Some(2),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("10.2.0.0", "198.51.100.1"),
        Some(3),
        Verdict::Accept,
    );
    expect(
        &rs,
        &c,
        f,
        &pkt("9.255.255.255", "192.0.2.9"),
        Some(5),
        Verdict::Drop,
    );
    expect(&rs, &c, f, &udp4(1), Some(4), Verdict::Reject);
    // The /0 rule is IPv4 only.
    let v6 = PacketView {
        proto: 17,
        tcp_flags: None,
        ..tcp("2001:db8::1", "2001:db8::2", 1, 1)
    };
    expect(&rs, &c, f, &v6, Some(5), Verdict::Drop);
    let fwd = &c.chains[0];
    let srcs: Vec<String> = fwd
        .prefixes
        .iter()
        .filter(|(s, _, _)| *s == FW_SIDE_SRC)
        .map(|(_, p, _)| p.to_string())
        .collect();
    // The rule's 0.0.0.0/0 and the default are one entry.
    assert_eq!(
        srcs,
        [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "::/0"
        ]
    );
    let dsts: Vec<String> = fwd
        .prefixes
        .iter()
        .filter(|(s, _, _)| *s == FW_SIDE_DST)
        .map(|(_, p, _)| p.to_string())
        .collect();
    assert_eq!(dsts, ["0.0.0.0/0", "192.0.2.0/24", "::/0"]);
}

#[test]
fn sets_nested_in_rule_prefixes_and_across_families() {
    let mut rs = ruleset(vec![
        json!({"chain": "forward", "dst": "10.1.0.0/16", "proto": "udp", "action": "drop"}),
        json!({"chain": "forward", "dst": "@inner", "action": "accept"}),
        json!({"chain": "forward", "src": "@inner", "dst": "@none", "action": "drop"}),
        json!({"chain": "forward", "dst": "10.0.0.0/8", "action": "reject"}),
        json!({"chain": "input", "src": "@inner", "action": "reject"}),
    ]);
    rs.sets = vec![
        AddressSet {
            name: "inner".into(),
            prefixes: [
                "10.1.2.0/24",
                "10.1.2.128/25",
                "192.0.2.7/32",
                "2001:db8::/32",
            ]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect(),
            comment: String::new(),
        },
        AddressSet {
            name: "none".into(),
            prefixes: Vec::new(),
            comment: String::new(),
        },
    ];
    rs.policy.forward = Verdict::Drop;
    let c = compiled(&rs);
    let f = Chain::Forward;
    let t = |dst: &str| {
        tcp(
            if dst.contains(':') {
                "2001:db8:1::1"
            } else {
                "198.51.100.7"
            },
            dst,
            1,
            1,
        )
    };
    let u = |dst: &str| PacketView {
        proto: 17,
        tcp_flags: None,
        ..t(dst)
    };
    expect(&rs, &c, f, &u("10.1.2.200"), Some(0), Verdict::Drop);
    expect(&rs, &c, f, &t("10.1.2.200"), Some(1), Verdict::Accept);
    expect(&rs, &c, f, &t("10.1.2.0"), Some(1), Verdict::Accept);
    expect(&rs, &c, f, &t("10.1.2.255"), Some(1), Verdict::Accept);
    expect(&rs, &c, f, &t("10.1.3.0"), Some(3), Verdict::Reject);
    expect(&rs, &c, f, &t("10.1.1.255"), Some(3), Verdict::Reject);
    expect(&rs, &c, f, &t("192.0.2.7"), Some(1), Verdict::Accept);
    expect(&rs, &c, f, &t("192.0.2.6"), None, Verdict::Drop);
    expect(&rs, &c, f, &t("192.0.2.8"), None, Verdict::Drop);
    expect(&rs, &c, f, &t("2001:db8:ffff::1"), Some(1), Verdict::Accept);
    expect(&rs, &c, f, &t("2001:db9::"), None, Verdict::Drop);
    // An empty set matches nothing.
    expect(
        &rs,
        &c,
        f,
        &tcp("10.1.2.1", "203.0.113.1", 1, 1),
        None,
        Verdict::Drop,
    );
    expect(
        &rs,
        &c,
        Chain::Input,
        &tcp("2001:db8::5", "2001:db8::6", 1, 1),
        Some(0),
        Verdict::Reject,
    );
    expect(
        &rs,
        &c,
        Chain::Input,
        &tcp("2001:db7::5", "2001:db8::6", 1, 1),
        None,
        Verdict::Accept,
    );
}

#[test]
fn ipv4_and_ipv6_prefixes_do_not_cross() {
    let rs = ruleset(vec![
        json!({"chain": "input", "src": "2001:db8::/32", "action": "drop"}),
        json!({"chain": "input", "src": "::/0", "dst": "::/0", "action": "reject"}),
        json!({"chain": "input", "src": "::ffff:0:0/96", "action": "drop"}),
        json!({"chain": "input", "proto": "tcp", "action": "accept"}),
    ]);
    let c = compiled(&rs);
    let i = Chain::Input;
    let mut rs_drop = rs.clone();
    rs_drop.policy.input = Verdict::Drop;
    let c_drop = compiled(&rs_drop);
    expect(
        &rs,
        &c,
        i,
        &tcp("2001:db8::1", "2001:db8::2", 1, 1),
        Some(0),
        Verdict::Drop,
    );
    expect(
        &rs,
        &c,
        i,
        &tcp("2001:db9::1", "::1", 1, 1),
        Some(1),
        Verdict::Reject,
    );
    // IPv4 never matches an IPv6 prefix, not even ::/0 or the mapped range.
    expect(
        &rs,
        &c,
        i,
        &tcp("10.0.0.1", "10.0.0.2", 1, 1),
        Some(3),
        Verdict::Accept,
    );
    expect(&rs_drop, &c_drop, i, &udp4(1), None, Verdict::Drop);
}

#[test]
fn interfaces_match_by_ifindex() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "in": "eth1", "out": "eth3", "action": "drop"}),
        json!({"chain": "forward", "in": "eth2", "action": "reject"}),
        json!({"chain": "forward", "out": "eth2", "action": "drop"}),
        json!({"chain": "input", "in": "eth3", "action": "drop"}),
    ]);
    let c = compiled(&rs);
    let f = Chain::Forward;
    let p = |i: u32, o: u32| PacketView {
        in_ifindex: i,
        out_ifindex: o,
        ..tcp4(1)
    };
    expect(&rs, &c, f, &p(101, 103), Some(0), Verdict::Drop);
    expect(&rs, &c, f, &p(101, 101), None, Verdict::Accept);
    expect(&rs, &c, f, &p(102, 103), Some(1), Verdict::Reject);
    expect(&rs, &c, f, &p(101, 102), Some(2), Verdict::Drop);
    expect(&rs, &c, f, &p(7, 7), None, Verdict::Accept);
    expect(&rs, &c, Chain::Input, &p(103, 0), Some(0), Verdict::Drop);
    expect(&rs, &c, Chain::Input, &p(101, 0), None, Verdict::Accept);
    assert_eq!(
        c.chains[0]
            .ifaces
            .iter()
            .map(|(d, i, _)| (*d, *i))
            .collect::<Vec<_>>(),
        [(FW_DIR_IN, 101), (FW_DIR_IN, 102), (1, 102), (1, 103)]
    );
}

#[test]
fn proto_and_tcp_flags() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "gre", "action": "reject"}),
        json!({"chain": "forward", "proto": "tcp", "tcp_flags": "syn,!ack", "action": "drop"}),
        json!({"chain": "forward", "proto": "tcp", "tcp_flags": "fin", "action": "reject"}),
    ]);
    let c = compiled(&rs);
    let f = Chain::Forward;
    let flags = |b: Option<u8>| PacketView {
        tcp_flags: b,
        ..tcp4(1)
    };
    expect(&rs, &c, f, &flags(Some(0x02)), Some(1), Verdict::Drop);
    expect(&rs, &c, f, &flags(Some(0x03)), Some(1), Verdict::Drop);
    expect(&rs, &c, f, &flags(Some(0x12)), None, Verdict::Accept);
    expect(&rs, &c, f, &flags(Some(0x11)), Some(2), Verdict::Reject);
    expect(&rs, &c, f, &flags(None), None, Verdict::Accept);
    let gre = PacketView {
        proto: 47,
        sport: None,
        dport: None,
        tcp_flags: None,
        ..tcp4(1)
    };
    expect(&rs, &c, f, &gre, Some(0), Verdict::Reject);
    // Proto 47 has a class of its own; UDP is in the no-match class.
    let fwd = &c.chains[0];
    assert_ne!(
        fwd.fields[(FIELD_PROTO + 47) as usize],
        fwd.fields[(FIELD_PROTO + 17) as usize]
    );
}

#[test]
fn icmp_type_and_code_per_family() {
    let rs = ruleset(vec![
        json!({"chain": "input", "proto": "icmp", "icmp": "echo-request", "action": "accept"}),
        json!({"chain": "input", "proto": "icmp", "icmp": "3/4", "action": "reject"}),
        json!({"chain": "input", "proto": "icmpv6", "icmp": "echo-request", "action": "reject"}),
        json!({"chain": "input", "proto": "icmp", "icmp": "128", "action": "reject"}),
        json!({"chain": "input", "proto": "icmpv6", "icmp": "packet-too-big/0", "action": "accept"}),
        json!({"chain": "input", "action": "drop"}),
    ]);
    let c = compiled(&rs);
    let i = Chain::Input;
    let v4 = |t, code| icmp("192.0.2.1", "192.0.2.2", t, code);
    let v6 = |t, code| icmp("2001:db8::1", "2001:db8::2", t, code);
    expect(&rs, &c, i, &v4(8, 0), Some(0), Verdict::Accept);
    expect(&rs, &c, i, &v4(8, 255), Some(0), Verdict::Accept);
    expect(&rs, &c, i, &v4(7, 255), Some(5), Verdict::Drop);
    expect(&rs, &c, i, &v4(9, 0), Some(5), Verdict::Drop);
    expect(&rs, &c, i, &v4(3, 4), Some(1), Verdict::Reject);
    expect(&rs, &c, i, &v4(3, 3), Some(5), Verdict::Drop);
    expect(&rs, &c, i, &v4(3, 5), Some(5), Verdict::Drop);
    expect(&rs, &c, i, &v4(128, 0), Some(3), Verdict::Reject);
    expect(&rs, &c, i, &v6(128, 0), Some(2), Verdict::Reject);
    expect(&rs, &c, i, &v6(8, 0), Some(5), Verdict::Drop);
    expect(&rs, &c, i, &v6(2, 0), Some(4), Verdict::Accept);
    expect(&rs, &c, i, &v6(2, 1), Some(5), Verdict::Drop);
    // No ICMP header: no type, no match on it.
    let bare = PacketView {
        icmp: None,
        ..v4(8, 0)
    };
    expect(&rs, &c, i, &bare, Some(5), Verdict::Drop);
}

#[test]
fn connection_state_sets_the_conntrack_flag() {
    let rs = ruleset(vec![
        json!({"chain": "input", "state": ["established", "related"], "action": "accept"}),
        json!({"chain": "input", "state": ["invalid"], "action": "drop"}),
        json!({"chain": "input", "proto": "tcp", "action": "reject"}),
        json!({"chain": "forward", "proto": "tcp", "action": "reject"}),
    ]);
    let c = compiled(&rs);
    assert_eq!(
        c.chains[1].info.flags & CHAIN_F_CONNTRACK,
        CHAIN_F_CONNTRACK
    );
    assert_eq!(c.chains[0].info.flags, 0);
    let s = |state| PacketView { state, ..tcp4(1) };
    let i = Chain::Input;
    expect(
        &rs,
        &c,
        i,
        &s(CtState::Established),
        Some(0),
        Verdict::Accept,
    );
    expect(&rs, &c, i, &s(CtState::Related), Some(0), Verdict::Accept);
    expect(&rs, &c, i, &s(CtState::Invalid), Some(1), Verdict::Drop);
    expect(&rs, &c, i, &s(CtState::New), Some(2), Verdict::Reject);
    expect(&rs, &c, i, &s(CtState::Untracked), Some(2), Verdict::Reject);
    // The block's unused tail points at an all-zero bitmap.
    for cc in &c.chains {
        for value in CtState::ALL.len() as u32..FIELD_STRIDE - FIELD_CT_STATE {
            let id = cc.fields[(FIELD_CT_STATE + value) as usize];
            assert!(
                c.bitmaps[(id - BASE) as usize]
                    .words
                    .iter()
                    .all(|w| *w == 0)
            );
        }
    }
}

#[test]
fn words_follow_the_rule_count() {
    for (n, words) in [
        (1, 1),
        (63, 1),
        (64, 1),
        (65, 2),
        (128, 2),
        (130, 3),
        (4096, 64),
    ] {
        let rules = (0..n)
            .map(|i| json!({"chain": "forward", "proto": "udp", "dport": i, "action": "drop"}))
            .collect();
        let rs = ruleset(rules);
        let c = compiled(&rs);
        assert_eq!(c.chains[0].info.rules, n);
        assert_eq!(c.chains[0].info.words, words, "{n} rules");
        // The last rule alone decides its port: the bit is in the last word.
        let last = n as u16 - 1;
        expect(
            &rs,
            &c,
            Chain::Forward,
            &udp4(last),
            Some(n - 1),
            Verdict::Drop,
        );
        expect(
            &rs,
            &c,
            Chain::Forward,
            &udp4(last + 1),
            None,
            Verdict::Accept,
        );
    }
}

#[test]
fn identical_bitmaps_share_ids() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "tcp", "dport": "80-90", "action": "accept"}),
        json!({"chain": "input", "proto": "tcp", "dport": "80-90", "action": "accept"}),
    ]);
    let c = compiled(&rs);
    // One rule per chain: its bitmap is {0} or empty, whatever the field.
    assert_eq!(c.bitmap_count(), 2);
    let (fwd, inp) = (&c.chains[0], &c.chains[1]);
    assert_eq!(fwd.fields, inp.fields);
    assert_eq!(fwd.info.no_sport, inp.info.no_sport);
    let dport = |port: u32| fwd.fields[(FIELD_DPORT + port) as usize];
    assert_eq!(dport(80), dport(90));
    assert_eq!(dport(79), dport(91));
    assert_eq!(dport(79), dport(65535));
    assert_ne!(dport(79), dport(80));
    // A field it does not look at: every value is the all-rules bitmap.
    assert_eq!(fwd.fields[FIELD_SPORT as usize], dport(85));
    assert_eq!(fwd.info.no_sport, dport(85));
    assert_eq!(fwd.info.no_dport, dport(79));
    for id in fwd.fields.iter().chain(&inp.fields) {
        assert!((BASE..BASE + 2).contains(id), "id {id}");
    }
}

#[test]
fn pool_capacity_is_enforced() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "tcp", "dport": 80, "action": "accept"}),
        json!({"chain": "forward", "proto": "tcp", "dport": 443, "action": "accept"}),
    ]);
    // {}, {0}, {1}, {0, 1}.
    assert_eq!(compiled(&rs).bitmap_count(), 4);
    assert!(compile(&rs, &testgen::resolver, 0, 4).is_ok());
    let err = compile(&rs, &testgen::resolver, 0, 3).unwrap_err();
    assert!(
        matches!(
            err,
            CompileError::PoolFull {
                needed: 4,
                capacity: 3
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--fw-bitmaps"), "{err}");
    // Ids must fit in u32 too.
    assert!(compile(&rs, &testgen::resolver, u32::MAX - 3, 100).is_ok());
    assert!(compile(&rs, &testgen::resolver, u32::MAX - 2, 100).is_err());
}

#[test]
fn unknown_interfaces_are_refused() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "in": "eth1", "action": "accept"}),
        json!({"chain": "forward", "enabled": false, "in": "eth8", "action": "accept"}),
        json!({"chain": "input", "in": "eth9", "action": "accept"}),
    ]);
    let err = compile(&rs, &testgen::resolver, 0, 100).unwrap_err();
    match &err {
        CompileError::UnknownInterface { rule, name } => {
            assert_eq!((*rule, name.as_str()), (2, "eth9"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().starts_with("rule 3: interface \"eth9\""),
        "{err}"
    );
    // The reference: an unknown name never matches.
    let pkt = PacketView {
        in_ifindex: 0,
        ..tcp4(1)
    };
    let m = reference::classify(&rs, Chain::Input, &testgen::resolver, &pkt);
    assert_eq!(m.position, None);
    // Disabled rules are not compiled, so their names need not resolve.
    let mut rs = rs;
    rs.rules.pop();
    assert!(compile(&rs, &testgen::resolver, 0, 100).is_ok());
}

#[test]
fn invalid_rulesets_are_refused_with_their_problems() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "action": "accept"}),
        json!({"chain": "forward", "dport": 22, "action": "accept"}),
    ]);
    let err = compile(&rs, &testgen::resolver, 0, 100).unwrap_err();
    let CompileError::Invalid(problems) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].rule, Some(1));
    assert!(
        err.to_string().contains("rule 2: sport/dport need"),
        "{err}"
    );
}

#[test]
fn prefix_capacity_is_per_generation() {
    // Half of the IPv6 trie, plus the ::/0 defaults, does not fit.
    let half = FW_MAX_PREFIXES_V6 / 2;
    let mut rs = ruleset(vec![
        json!({"chain": "input", "src": "@big", "action": "drop"}),
    ]);
    rs.sets = vec![AddressSet {
        name: "big".into(),
        prefixes: (0..half)
            .map(|i| {
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | u128::from(i),
                )))
            })
            .collect(),
        comment: String::new(),
    }];
    let err = compile(&rs, &testgen::resolver, 0, 100).unwrap_err();
    assert!(
        matches!(
            err,
            CompileError::TooManyPrefixes {
                family: 6,
                needed,
                capacity
            } if needed == half as usize + 4 && capacity == half
        ),
        "{err:?}"
    );
    rs.sets[0].prefixes.truncate(half as usize - 4);
    let c = compile(&rs, &testgen::resolver, 0, 100).expect("fits exactly");
    // A set used by one rule: its members all share one bitmap.
    assert_eq!(c.bitmap_count(), 2);
}

/// Random rulesets: the tables must agree with the reference on every
/// packet. Returns (packets, packets a rule decided, highest position).
#[track_caller]
fn agree(seed: u64, n_rules: usize, n_packets: usize) -> (usize, usize, u32) {
    let rs = testgen::ruleset(seed, n_rules);
    assert_eq!(rs.problems(), Vec::new(), "seed {seed}");
    let c = compile(&rs, &testgen::resolver, BASE, u32::MAX - BASE).expect("compiles");
    let mut decided = 0;
    let mut highest = 0;
    for (k, (chain, pkt)) in testgen::packets(&rs, seed, n_packets).iter().enumerate() {
        let want = reference::classify(&rs, *chain, &testgen::resolver, pkt);
        let got = c.classify(*chain, pkt);
        assert_eq!(
            got,
            want,
            "seed {seed}, {n_rules} rules, packet {k} in {chain}: {pkt:?}\nexpected rule {:?}\ngot rule {:?}",
            want.rule_index.map(|i| &rs.rules[i]),
            got.rule_index.map(|i| &rs.rules[i]),
        );
        if let Some(p) = want.position {
            decided += 1;
            highest = highest.max(p);
        }
    }
    (n_packets, decided, highest)
}

#[test]
fn matches_the_reference_on_small_random_rulesets() {
    let mut total = 0;
    let mut decided = 0;
    for seed in 0..600u64 {
        let n_rules = [0, 1, 2, 3, 5, 8, 13, 21, 40, 63, 64, 65, 100, 129][seed as usize % 14];
        let (t, d, _) = agree(seed, n_rules, 400);
        total += t;
        decided += d;
    }
    // The packets must exercise the rules, not the policies.
    assert!(
        decided * 2 > total,
        "{decided} of {total} decided by a rule"
    );
}

/// Random rulesets of `sizes` (seed, rules, packets): agreement, and the
/// packets reach rules deep in the chain (beyond the first words).
#[track_caller]
fn agree_deep(sizes: &[(u64, usize, usize)]) {
    for &(seed, n_rules, n_packets) in sizes {
        let (total, decided, highest) = agree(seed, n_rules, n_packets);
        assert!(decided * 2 > total, "{decided} of {total}");
        assert!(
            highest as usize > n_rules / 3,
            "highest position {highest} of {n_rules}"
        );
    }
}

#[test]
fn matches_the_reference_on_large_random_rulesets() {
    agree_deep(&[
        (1000, 257, 4000),
        (1001, 500, 4000),
        (1002, 1000, 4000),
        (1003, 1500, 3000),
    ]);
}

#[test]
fn matches_the_reference_on_2000_to_3000_rule_rulesets() {
    agree_deep(&[(1004, 2000, 3000), (1005, 3000, 3000)]);
}

#[test]
fn matches_the_reference_on_4096_rule_rulesets() {
    agree_deep(&[(1006, 4096, 4000), (1007, 4096, 4000)]);
}

/// A copy of bitmap `id` with the bits of `positions` cleared, added to
/// the pool; returns its id.
fn without(c: &mut Compiled, id: u32, positions: &[usize]) -> u32 {
    let mut b = c.bitmaps[(id - c.base) as usize];
    for p in positions {
        b.words[p / 64] &= !(1 << (p % 64));
    }
    c.bitmaps.push(b);
    c.base + c.bitmaps.len() as u32 - 1
}

/// Packets on which `c` and the reference disagree.
fn disagreements(rs: &Ruleset, c: &Compiled, packets: &[(Chain, PacketView)]) -> usize {
    packets
        .iter()
        .filter(|(chain, pkt)| {
            c.classify(*chain, pkt) != reference::classify(rs, *chain, &testgen::resolver, pkt)
        })
        .count()
}

// The random comparison must be able to fail: plant the classic compiler
// bugs in correct tables and check that the packets expose them.

#[test]
fn the_comparison_catches_an_exclusive_range_end() {
    for seed in [7, 8, 9] {
        let rs = testgen::ruleset(seed, 200);
        let packets = testgen::packets(&rs, seed, 2000);
        let mut c = compiled(&rs);
        assert_eq!(disagreements(&rs, &c, &packets), 0);
        // Ranges as [lo, hi): the rule's bit is missing at hi.
        for chain in Chain::ALL {
            for (position, rule) in rs.enabled(chain).enumerate() {
                if let Some(r) = rule.dport {
                    let at = (FIELD_DPORT + u32::from(r.hi)) as usize;
                    let id = c.chains[chain.index() as usize].fields[at];
                    let id = without(&mut c, id, &[position]);
                    c.chains[chain.index() as usize].fields[at] = id;
                }
            }
        }
        assert!(disagreements(&rs, &c, &packets) > 0, "seed {seed}");
    }
}

#[test]
fn the_comparison_catches_prefixes_without_their_ancestors() {
    for seed in [7, 8, 9] {
        let rs = testgen::ruleset(seed, 200);
        let packets = testgen::packets(&rs, seed, 2000);
        let mut c = compiled(&rs);
        // Each prefix entry gets only the rules naming exactly it (and the
        // wildcards), not those with a prefix that contains it.
        for chain in Chain::ALL {
            let rules: Vec<&Rule> = rs.enabled(chain).collect();
            let cc = &mut c.chains[chain.index() as usize];
            let mut prefixes = std::mem::take(&mut cc.prefixes);
            for (side, net, id) in &mut prefixes {
                let ancestors_only: Vec<usize> = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        let m = if *side == FW_SIDE_SRC { &r.src } else { &r.dst };
                        let list: Vec<IpNet> = match m {
                            None => return false,
                            Some(AddrMatch::Prefix(p)) => vec![*p],
                            Some(AddrMatch::Set(n)) => rs.set(n).unwrap().prefixes.clone(),
                        };
                        !list.contains(net) && list.iter().any(|p| p.contains(&*net))
                    })
                    .map(|(pos, _)| pos)
                    .collect();
                *id = without(&mut c, *id, &ancestors_only);
            }
            c.chains[chain.index() as usize].prefixes = prefixes;
        }
        assert!(disagreements(&rs, &c, &packets) > 0, "seed {seed}");
    }
}

#[test]
fn testgen_is_deterministic() {
    assert_eq!(testgen::ruleset(5, 50), testgen::ruleset(5, 50));
    assert_ne!(testgen::ruleset(5, 50), testgen::ruleset(6, 50));
    let rs = testgen::ruleset(5, 50);
    assert_eq!(testgen::packets(&rs, 1, 100), testgen::packets(&rs, 1, 100));
}

#[test]
fn the_log_flag_is_compiled_for_drops_and_rejects_only() {
    let rs = ruleset(vec![
        json!({"chain": "forward", "proto": "tcp", "action": "drop", "log": true, "id": 1}),
        json!({"chain": "forward", "proto": "udp", "action": "reject", "log": true, "id": 2}),
        json!({"chain": "forward", "proto": "icmp", "action": "accept", "log": true, "id": 3}),
        json!({"chain": "forward", "action": "drop", "id": 4}),
    ]);
    let c = compiled(&rs);
    let flags: Vec<(u32, u32)> = c.chains[Chain::Forward.index() as usize]
        .rules
        .iter()
        .map(|r| (r.id, r.flags))
        .collect();
    assert_eq!(
        flags,
        [
            (1, dataplane_common::FW_RULE_F_LOG),
            (2, dataplane_common::FW_RULE_F_LOG),
            (3, 0),
            (4, 0)
        ]
    );
}
