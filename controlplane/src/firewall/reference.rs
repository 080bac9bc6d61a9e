//! The reference classifier: the rule semantics of [`super::rule`] executed
//! one rule at a time, in order. Slow and obviously correct; the bitmap
//! tables of [`super::compile`] (and the XDP program reading them) are
//! tested against it.
use std::net::IpAddr;

use super::rule::{AddrMatch, Chain, CtState, PROTO_ICMPV6, PortRange, Rule, Ruleset, Verdict};

/// What the XDP program knows about a packet when it classifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketView {
    /// 4 or 6.
    pub family: u8,
    /// Logical ingress interface (the VLAN sub-interface for tagged frames).
    pub in_ifindex: u32,
    /// Egress interface; 0 in the input chain.
    pub out_ifindex: u32,
    /// Addresses, both of `family`.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Some iff the protocol is TCP or UDP and the L4 header is available.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// Byte 13 of the TCP header; Some iff TCP with the L4 header available.
    pub tcp_flags: Option<u8>,
    /// (type, code); Some iff ICMP over IPv4 or ICMPv6 over IPv6, with the
    /// L4 header available.
    pub icmp: Option<(u8, u8)>,
    pub state: CtState,
}

/// The rule that decides a packet, or the chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// Index among the chain's enabled rules (the bit number in the
    /// bitmaps); None when the policy decides.
    pub position: Option<u32>,
    /// Index in [`Ruleset::rules`].
    pub rule_index: Option<usize>,
    pub verdict: Verdict,
}

/// First enabled rule of `chain` that matches `pkt`, else the policy.
/// `resolve` maps interface names to ifindexes; a name it does not know
/// never matches.
pub fn classify(
    rs: &Ruleset,
    chain: Chain,
    resolve: &dyn Fn(&str) -> Option<u32>,
    pkt: &PacketView,
) -> Match {
    let found = rs
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.chain == chain && r.enabled)
        .enumerate()
        .find(|(_, (_, rule))| rule_matches(rs, rule, resolve, pkt));
    match found {
        Some((position, (rule_index, rule))) => Match {
            position: Some(position as u32),
            rule_index: Some(rule_index),
            verdict: rule.action,
        },
        None => Match {
            position: None,
            rule_index: None,
            verdict: rs.policy.of(chain),
        },
    }
}

/// Whether every field `rule` sets matches `pkt` (chain and `enabled` are
/// the caller's business).
pub fn rule_matches(
    rs: &Ruleset,
    rule: &Rule,
    resolve: &dyn Fn(&str) -> Option<u32>,
    pkt: &PacketView,
) -> bool {
    iface_matches(rule.in_iface.as_deref(), pkt.in_ifindex, resolve)
        && iface_matches(rule.out_iface.as_deref(), pkt.out_ifindex, resolve)
        && addr_matches(rs, rule.src.as_ref(), pkt.src)
        && addr_matches(rs, rule.dst.as_ref(), pkt.dst)
        && rule.proto.is_none_or(|p| p.0 == pkt.proto)
        && port_matches(rule.sport, pkt.sport)
        && port_matches(rule.dport, pkt.dport)
        && rule
            .tcp_flags
            .is_none_or(|f| pkt.tcp_flags.is_some_and(|b| f.matches(b)))
        && icmp_matches(rule, pkt.icmp)
        && (rule.state.is_empty() || rule.state.contains(&pkt.state))
}

fn iface_matches(name: Option<&str>, ifindex: u32, resolve: &dyn Fn(&str) -> Option<u32>) -> bool {
    name.is_none_or(|n| resolve(n) == Some(ifindex))
}

fn addr_matches(rs: &Ruleset, m: Option<&AddrMatch>, addr: IpAddr) -> bool {
    match m {
        None => true,
        // IpNet::contains is false across families.
        Some(AddrMatch::Prefix(p)) => p.contains(&addr),
        Some(AddrMatch::Set(name)) => rs
            .set(name)
            .is_some_and(|s| s.prefixes.iter().any(|p| p.contains(&addr))),
    }
}

fn port_matches(range: Option<PortRange>, port: Option<u16>) -> bool {
    range.is_none_or(|r| port.is_some_and(|p| r.contains(p)))
}

fn icmp_matches(rule: &Rule, icmp: Option<(u8, u8)>) -> bool {
    let Some(m) = &rule.icmp else {
        return true;
    };
    let v6 = rule.proto.is_some_and(|p| p.0 == PROTO_ICMPV6);
    match (m.resolve(v6), icmp) {
        (Ok((kind, code)), Some((pkt_kind, pkt_code))) => {
            kind == pkt_kind && code.is_none_or(|c| c == pkt_code)
        }
        _ => false,
    }
}
