//! Deterministic random rulesets and packets for testing the classifier:
//! the unit tests compare [`super::compile::Compiled::classify`] with
//! [`super::reference::classify`] on them, and the integration tests run
//! the same cases through the real XDP program.
//!
//! Rulesets are valid ([`Ruleset::problems`] is empty as long as no chain
//! gets more than 4,096 enabled rules) and dense in overlaps: prefixes are
//! cut around shared anchor addresses so they nest, sets overlap rule
//! prefixes and each other, ports partly come from a small vocabulary so
//! ranges share ends. Packets aim at rules: most take a random rule's
//! values at their edges (first and last address of a prefix, ends of a
//! port range), and a third of those miss the rule on exactly one field,
//! just outside it (the address before or after the prefix, the port
//! below or above the range, one flag flipped, the next ICMP code).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    reference::PacketView,
    rule::{
        AddrMatch, AddressSet, Chain, CtState, IcmpMatch, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
        PROTO_UDP, Policies, PortRange, Proto, Rule, Ruleset, TcpFlags, Verdict,
    },
};

/// The interfaces rules name, with the ifindexes [`resolver`] gives them.
pub const IFACES: [(&str, u32); 3] = [("eth1", 101), ("eth2", 102), ("eth3", 103)];

/// Resolves [`IFACES`] names.
pub fn resolver(name: &str) -> Option<u32> {
    IFACES.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
}

/// splitmix64 (Steele, Lea, Flood, "Fast Splittable Pseudorandom Number
/// Generators", OOPSLA 2014): tiny, and the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn u8(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
}

const PORTS: [u16; 12] = [0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 32768, 65534, 65535];
const ICMP4_TYPES: [u8; 5] = [0, 3, 8, 11, 5];
const ICMP6_TYPES: [u8; 6] = [1, 2, 3, 128, 129, 135];
const ICMP4_NAMES: [&str; 4] = [
    "echo-request",
    "echo-reply",
    "destination-unreachable",
    "time-exceeded",
];
const ICMP6_NAMES: [&str; 5] = [
    "echo-request",
    "echo-reply",
    "destination-unreachable",
    "time-exceeded",
    "packet-too-big",
];
const OTHER_PROTOS: [u8; 6] = [0, 47, 50, 132, 255, 41];

/// A random valid ruleset with `n_rules` rules spread over both chains
/// (about 70% forward), and a few address sets, the same for the same
/// `seed`. Keep `n_rules` <= 4,096 for a ruleset that compiles.
pub fn ruleset(seed: u64, n_rules: usize) -> Ruleset {
    let mut rng = Rng::new(seed);
    let anchors = Anchors::new(&mut rng);
    // Set members: mostly long prefixes, some short ones holding others.
    let member = |rng: &mut Rng, family: u8| {
        let narrow = rng.percent(70);
        anchors.prefix(rng, family, narrow)
    };
    let set = |name: &str, prefixes: Vec<IpNet>| AddressSet {
        name: name.into(),
        prefixes,
        comment: String::new(),
    };
    let n = 1 + rng.below(16);
    let v4 = (0..n).map(|_| member(&mut rng, 4)).collect();
    let n = 1 + rng.below(16);
    let v6 = (0..n).map(|_| member(&mut rng, 6)).collect();
    let n = rng.below(24);
    let mixed = (0..n)
        .map(|_| {
            let family = if rng.percent(50) { 4 } else { 6 };
            member(&mut rng, family)
        })
        .collect();
    let mut sets = vec![
        set("v4", v4),
        set("v6", v6),
        set("mixed", mixed),
        set("empty", Vec::new()),
    ];
    // Duplicates inside a set are allowed; make sure some exist.
    if let Some(p) = sets[0].prefixes.first().copied() {
        sets[0].prefixes.push(p);
    }
    let set_names: Vec<String> = sets.iter().map(|s| s.name.clone()).collect();
    let verdicts = [Verdict::Accept, Verdict::Drop, Verdict::Reject];
    let rules = (0..n_rules)
        .map(|i| {
            // Short rulesets mix broad rules in anywhere; long ones keep
            // them (mostly) at the end, as operators do, so that the rules
            // in the last words of the bitmaps still win packets.
            let broad_per_mille = match (n_rules < 100, i + 12 >= n_rules) {
                (true, _) => 120,
                (false, true) => 500,
                (false, false) => 1,
            };
            let mut r = random_rule(&mut rng, &anchors, &set_names, broad_per_mille);
            r.id = i as u32 + 1;
            r
        })
        .collect();
    Ruleset {
        policy: Policies {
            forward: *rng.pick(&verdicts),
            input: *rng.pick(&verdicts),
        },
        rules,
        sets,
    }
}

/// Most rules are *narrow*: at least one field is specific (a long prefix,
/// a port or a short range of them, an ICMP type) so that rules deep in a
/// long chain still win some packets. *Broad* rules (the rest, fewer in
/// longer rulesets) leave most fields open and shadow what follows.
fn random_rule(
    rng: &mut Rng,
    anchors: &Anchors,
    set_names: &[String],
    broad_per_mille: u64,
) -> Rule {
    let broad = rng.below(1000) < broad_per_mille;
    let pct = |rng: &mut Rng, if_broad: u64, if_narrow: u64| {
        rng.percent(if broad { if_broad } else { if_narrow })
    };
    let chain = if rng.percent(70) {
        Chain::Forward
    } else {
        Chain::Input
    };
    let iface = |rng: &mut Rng| {
        IFACES[rng.below(IFACES.len() as u64) as usize]
            .0
            .to_string()
    };
    let in_iface = pct(rng, 20, 15).then(|| iface(rng));
    let out_iface = (chain == Chain::Forward && pct(rng, 15, 10)).then(|| iface(rng));
    // One family for both prefixes (the rule would be refused otherwise);
    // sets can be of either or both.
    let family = if rng.percent(60) { 4 } else { 6 };
    let addr = |rng: &mut Rng| -> AddrMatch {
        if pct(rng, 30, 15) {
            AddrMatch::Set(rng.pick(set_names).clone())
        } else {
            AddrMatch::Prefix(anchors.prefix(rng, family, !broad))
        }
    };
    let src = pct(rng, 40, 35).then(|| addr(rng));
    let mut dst = pct(rng, 40, 55).then(|| addr(rng));
    let proto = pct(rng, 65, 95).then(|| match rng.below(100) {
        0..40 => PROTO_TCP,
        40..65 => PROTO_UDP,
        65..80 => PROTO_ICMP,
        80..90 => PROTO_ICMPV6,
        _ => *rng.pick(&OTHER_PROTOS),
    });
    let ported = matches!(proto, Some(PROTO_TCP | PROTO_UDP));
    let sport = (ported && pct(rng, 25, 20)).then(|| port_range(rng, !broad));
    let dport = (ported && pct(rng, 55, 75)).then(|| port_range(rng, !broad));
    let tcp_flags = (proto == Some(PROTO_TCP) && rng.percent(25)).then(|| {
        let mask = rng.u8().max(1);
        TcpFlags {
            mask,
            value: rng.u8() & mask,
        }
    });
    let icmp = match proto {
        Some(p @ (PROTO_ICMP | PROTO_ICMPV6)) if pct(rng, 60, 90) => {
            Some(icmp_match(rng, p == PROTO_ICMPV6))
        }
        _ => None,
    };
    // A narrow rule needs one specific field; a shared set is not one.
    let specific = |m: &Option<AddrMatch>| matches!(m, Some(AddrMatch::Prefix(_)));
    if !broad
        && !specific(&src)
        && !specific(&dst)
        && sport.is_none()
        && dport.is_none()
        && icmp.is_none()
    {
        dst = Some(AddrMatch::Prefix(anchors.prefix(rng, family, true)));
    }
    let state = if rng.percent(25) {
        CtState::ALL
            .into_iter()
            .filter(|_| rng.percent(40))
            .collect()
    } else {
        BTreeSet::new()
    };
    Rule {
        id: 0,
        chain,
        enabled: rng.percent(90),
        in_iface,
        out_iface,
        src,
        dst,
        proto: proto.map(Proto),
        sport,
        dport,
        icmp,
        tcp_flags,
        state,
        action: *rng.pick(&[Verdict::Accept, Verdict::Drop, Verdict::Reject]),
        log: false,
        comment: String::new(),
    }
}

fn port(rng: &mut Rng, narrow: bool) -> u16 {
    if rng.percent(if narrow { 30 } else { 70 }) {
        *rng.pick(&PORTS)
    } else {
        rng.u16()
    }
}

fn port_range(rng: &mut Rng, narrow: bool) -> PortRange {
    let a = port(rng, narrow);
    match rng.below(if narrow { 2 } else { 3 }) {
        0 => PortRange { lo: a, hi: a },
        1 => PortRange {
            lo: a,
            hi: a.saturating_add(rng.below(if narrow { 16 } else { 64 }) as u16),
        },
        _ => {
            let b = port(rng, narrow);
            PortRange {
                lo: a.min(b),
                hi: a.max(b),
            }
        }
    }
}

fn icmp_match(rng: &mut Rng, v6: bool) -> IcmpMatch {
    let kind = match (rng.below(3), v6) {
        (0, false) => rng.pick(&ICMP4_NAMES).to_string(),
        (0, true) => rng.pick(&ICMP6_NAMES).to_string(),
        (1, _) => rng.u8().to_string(),
        (_, false) => rng.pick(&ICMP4_TYPES).to_string(),
        (_, true) => rng.pick(&ICMP6_TYPES).to_string(),
    };
    let text = if rng.percent(40) {
        let code = if rng.percent(70) {
            rng.below(4) as u8
        } else {
            rng.u8()
        };
        format!("{kind}/{code}")
    } else {
        kind
    };
    IcmpMatch { text }
}

/// Addresses that prefixes are cut around (32 per family), so that
/// prefixes of different lengths nest and overlap.
struct Anchors {
    v4: Vec<u128>,
    v6: Vec<u128>,
}

impl Anchors {
    fn new(rng: &mut Rng) -> Anchors {
        // Within 10.0.0.0/8 and 2001:db8::/32, so that short prefixes
        // hold many of the anchors and long ones cut around the same few.
        let v4 = (0..32)
            .map(|_| u128::from(0x0a00_0000 | (rng.next_u64() as u32 & 0x00ff_ffff)))
            .collect();
        let v6 = (0..32)
            .map(|_| {
                let low = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
                (0x2001_0db8u128 << 96) | (low & ((1u128 << 96) - 1))
            })
            .collect();
        Anchors { v4, v6 }
    }

    /// A prefix around an anchor; `narrow` ones are long.
    fn prefix(&self, rng: &mut Rng, family: u8, narrow: bool) -> IpNet {
        const V4_LENS: [u8; 10] = [8, 12, 16, 20, 24, 28, 30, 31, 32, 32];
        const V6_LENS: [u8; 10] = [32, 40, 48, 56, 64, 96, 120, 127, 128, 128];
        let (width, anchors, lens): (u8, &[u128], &[u8]) = if family == 4 {
            (32, &self.v4, &V4_LENS)
        } else {
            (128, &self.v6, &V6_LENS)
        };
        let len = match (narrow, rng.below(50)) {
            (true, _) => width - rng.below(u64::from(width) / 4 + 1) as u8,
            (false, 0) => 0,
            (false, 1..10) => rng.below(u64::from(width) + 1) as u8,
            (false, _) => *rng.pick(lens),
        };
        let mut addr = *rng.pick(anchors);
        if rng.percent(40) {
            // Move off the anchor in the low bits: a sibling or cousin.
            addr ^= u128::from(rng.u8()) << rng.below(u64::from(width) / 4);
        }
        net(family, addr, len)
    }
}

fn net(family: u8, addr: u128, len: u8) -> IpNet {
    if family == 4 {
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(addr as u32), len).trunc())
    } else {
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(addr), len).trunc())
    }
}

fn bits_of(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn addr_of(family: u8, bits: u128) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn family_of(net: &IpNet) -> u8 {
    if net.addr().is_ipv4() { 4 } else { 6 }
}

/// Values packets are drawn from when they do not copy a rule's.
struct Vocabulary {
    /// Edge addresses of every prefix: first, last, and just outside.
    addrs: [Vec<u128>; 2],
    ports: Vec<u16>,
    protos: Vec<u8>,
    icmp: Vec<(u8, u8)>,
    flags: Vec<u8>,
}

impl Vocabulary {
    fn new(rs: &Ruleset) -> Vocabulary {
        let mut v = Vocabulary {
            addrs: [Vec::new(), Vec::new()],
            ports: PORTS.to_vec(),
            protos: [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6]
                .into_iter()
                .chain(OTHER_PROTOS)
                .collect(),
            icmp: Vec::new(),
            flags: vec![0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x00, 0xff],
        };
        let rule_prefixes = rs.rules.iter().flat_map(|r| [&r.src, &r.dst]).flatten();
        let set_prefixes = rs.sets.iter().flat_map(|s| &s.prefixes);
        let mut add_prefix = |p: &IpNet| {
            let family = family_of(p);
            let (first, last) = (bits_of(p.network()), bits_of(p.broadcast()));
            let max = if family == 4 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
            let list = &mut v.addrs[usize::from(family == 6)];
            list.extend([first, last]);
            list.extend(first.checked_sub(1));
            list.extend(last.checked_add(1).filter(|b| *b <= max));
        };
        for m in rule_prefixes {
            if let AddrMatch::Prefix(p) = m {
                add_prefix(p);
            }
        }
        set_prefixes.for_each(&mut add_prefix);
        for rule in &rs.rules {
            for r in [rule.sport, rule.dport].into_iter().flatten() {
                v.ports.extend([r.lo, r.hi]);
                v.ports.extend(r.lo.checked_sub(1));
                v.ports.extend(r.hi.checked_add(1));
            }
            if let Some(p) = rule.proto {
                v.protos.push(p.0);
            }
            if let Some(f) = rule.tcp_flags {
                v.flags
                    .extend([f.value, f.value ^ f.mask, !f.mask | f.value]);
            }
            if let (Some(m), Some(p)) = (&rule.icmp, rule.proto)
                && let Ok((t, c)) = m.resolve(p.0 == PROTO_ICMPV6)
            {
                let c = c.unwrap_or(0);
                v.icmp
                    .extend([(t, c), (t, c.wrapping_add(1)), (t.wrapping_add(1), c)]);
            }
        }
        v
    }

    fn addr(&self, rng: &mut Rng, family: u8) -> IpAddr {
        let list = &self.addrs[usize::from(family == 6)];
        let bits = if !list.is_empty() && rng.percent(70) {
            *rng.pick(list)
        } else if family == 4 {
            u128::from(rng.next_u64() as u32)
        } else {
            u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
        };
        addr_of(family, bits)
    }

    fn port(&self, rng: &mut Rng) -> u16 {
        if rng.percent(80) {
            *rng.pick(&self.ports)
        } else {
            rng.u16()
        }
    }

    fn icmp(&self, rng: &mut Rng) -> (u8, u8) {
        if !self.icmp.is_empty() && rng.percent(70) {
            *rng.pick(&self.icmp)
        } else {
            (rng.u8(), rng.below(4) as u8)
        }
    }

    fn flags(&self, rng: &mut Rng) -> u8 {
        if rng.percent(70) {
            *rng.pick(&self.flags)
        } else {
            rng.u8()
        }
    }
}

/// `count` packets for `rs`, each with the chain it is classified in.
/// Most aim at a random enabled rule of the chain: its values at their
/// edges, sometimes just outside them; the rest draw from the edge
/// vocabulary of the whole ruleset. Every packet is consistent (ports iff
/// TCP/UDP, flags iff TCP, ICMP only for ICMP over IPv4 or ICMPv6 over
/// IPv6, some without an L4 header; `out_ifindex` 0 in the input chain).
pub fn packets(rs: &Ruleset, seed: u64, count: usize) -> Vec<(Chain, PacketView)> {
    let mut rng = Rng::new(seed ^ 0x5eed_0f9a_c4e7_5bad);
    let vocab = Vocabulary::new(rs);
    let enabled: [Vec<&Rule>; 2] = Chain::ALL.map(|c| rs.enabled(c).collect());
    (0..count)
        .map(|_| {
            let chain = if rng.percent(70) {
                Chain::Forward
            } else {
                Chain::Input
            };
            let rules = &enabled[chain.index() as usize];
            let target = (!rules.is_empty() && rng.percent(80)).then(|| *rng.pick(rules));
            (chain, packet(&mut rng, rs, &vocab, chain, target))
        })
        .collect()
}

/// The fields a packet can miss its target rule on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Src,
    Dst,
    Proto,
    L4,
    Sport,
    Dport,
    Flags,
    Icmp,
    In,
    Out,
    State,
}

const FIELDS: [Field; 11] = [
    Field::Src,
    Field::Dst,
    Field::Proto,
    Field::L4,
    Field::Sport,
    Field::Dport,
    Field::Flags,
    Field::Icmp,
    Field::In,
    Field::Out,
    Field::State,
];

/// A packet for `target` (if any): every field the rule sets is met, at an
/// edge where there is one, except for at most one field (a third of the
/// time) that is just missed. Fields the rule leaves open come from the
/// vocabulary.
fn packet(
    rng: &mut Rng,
    rs: &Ruleset,
    vocab: &Vocabulary,
    chain: Chain,
    target: Option<&Rule>,
) -> PacketView {
    let miss = (target.is_some() && rng.percent(35)).then(|| *rng.pick(&FIELDS));
    let hit = |f: Field| miss != Some(f);
    // A prefix the target names on each side, if any.
    let mut side = |m: Option<&AddrMatch>| -> Option<IpNet> {
        match m? {
            AddrMatch::Prefix(p) => Some(*p),
            AddrMatch::Set(name) => {
                let set = rs.set(name)?;
                (!set.prefixes.is_empty()).then(|| *rng.pick(&set.prefixes))
            }
        }
    };
    let src_net = side(target.and_then(|t| t.src.as_ref()));
    let dst_net = side(target.and_then(|t| t.dst.as_ref()));
    let family = match src_net.or(dst_net) {
        Some(n) => family_of(&n),
        None if rng.percent(55) => 4,
        None => 6,
    };
    let mut addr = |net: Option<IpNet>, inside: bool| match net.filter(|n| family_of(n) == family) {
        Some(n) => near_prefix(rng, &n, inside),
        None => vocab.addr(rng, family),
    };
    let src = addr(src_net, hit(Field::Src));
    let dst = addr(dst_net, hit(Field::Dst));

    let t_proto = target.and_then(|t| t.proto).map(|p| p.0);
    let proto = match t_proto {
        Some(p) if hit(Field::Proto) => p,
        _ => loop {
            let p = match rng.below(10) {
                0..4 => PROTO_TCP,
                4..6 => PROTO_UDP,
                6..8 if family == 4 => PROTO_ICMP,
                6..8 => PROTO_ICMPV6,
                _ => *rng.pick(&vocab.protos),
            };
            if Some(p) != t_proto {
                break p;
            }
        },
    };
    let l4 = if target.is_some() {
        hit(Field::L4)
    } else {
        rng.percent(93)
    };
    let ported = l4 && matches!(proto, PROTO_TCP | PROTO_UDP);
    let mut port = |range: Option<PortRange>, inside: bool| {
        ported.then(|| match range {
            Some(r) => near_range(rng, r, inside),
            None => vocab.port(rng),
        })
    };
    let sport = port(target.and_then(|t| t.sport), hit(Field::Sport));
    let dport = port(target.and_then(|t| t.dport), hit(Field::Dport));
    let tcp_flags = (l4 && proto == PROTO_TCP).then(|| match target.and_then(|t| t.tcp_flags) {
        Some(f) => {
            let flags = f.value | (rng.u8() & !f.mask);
            if hit(Field::Flags) {
                flags
            } else {
                // Flip one of the bits the rule looks at.
                let bits: Vec<u8> = (0..8).map(|b| 1 << b).filter(|b| f.mask & b != 0).collect();
                flags ^ rng.pick(&bits)
            }
        }
        None => vocab.flags(rng),
    });
    let has_icmp = l4 && matches!((family, proto), (4, PROTO_ICMP) | (6, PROTO_ICMPV6));
    let icmp = has_icmp.then(|| {
        let wanted = target.and_then(|t| {
            let m = t.icmp.as_ref()?;
            m.resolve(t.proto.map(|p| p.0) == Some(PROTO_ICMPV6)).ok()
        });
        match wanted {
            Some((kind, code)) => {
                let any_code = if rng.percent(50) { 0 } else { rng.u8() };
                match (hit(Field::Icmp), code) {
                    (true, code) => (kind, code.unwrap_or(any_code)),
                    (false, Some(c)) if rng.percent(50) => (kind, c.wrapping_add(1)),
                    (false, code) => (kind.wrapping_add(1), code.unwrap_or(any_code)),
                }
            }
            None => vocab.icmp(rng),
        }
    });

    let mut iface = |name: Option<&str>, inside: bool| match name.and_then(resolver) {
        Some(i) if inside => i,
        Some(i) => *rng.pick(&[101, 102, 103, 104, 7].map(|o| if o == i { 104 } else { o })),
        None => *rng.pick(&[101, 102, 103, 104, 7]),
    };
    let in_ifindex = iface(target.and_then(|t| t.in_iface.as_deref()), hit(Field::In));
    let out_ifindex = match chain {
        Chain::Input => 0,
        Chain::Forward => iface(target.and_then(|t| t.out_iface.as_deref()), hit(Field::Out)),
    };
    let wanted: Vec<CtState> = target
        .map(|t| t.state.iter().copied().collect())
        .unwrap_or_default();
    let others: Vec<CtState> = CtState::ALL
        .into_iter()
        .filter(|s| !wanted.contains(s))
        .collect();
    let state = match (wanted.is_empty(), hit(Field::State)) {
        (false, true) => *rng.pick(&wanted),
        (false, false) if !others.is_empty() => *rng.pick(&others),
        _ => *rng.pick(&CtState::ALL),
    };
    PacketView {
        family,
        in_ifindex,
        out_ifindex,
        src,
        dst,
        proto,
        sport,
        dport,
        tcp_flags,
        icmp,
        state,
    }
}

/// An address of `net`'s family: `inside`, its first, last or a random
/// address of it; otherwise just before or after it (when there is such an
/// address; /0 has none).
fn near_prefix(rng: &mut Rng, net: &IpNet, inside: bool) -> IpAddr {
    let family = family_of(net);
    let (first, last) = (bits_of(net.network()), bits_of(net.broadcast()));
    let max = if family == 4 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    let before = first.checked_sub(1);
    let after = last.checked_add(1).filter(|b| *b <= max);
    let bits = match (inside, rng.below(10)) {
        (false, 0..5) if before.is_some() => before.unwrap_or(first),
        (false, _) if after.is_some() => after.unwrap_or(last),
        (false, _) => before.unwrap_or(first),
        (true, 0..4) => first,
        (true, 4..8) => last,
        (true, _) => first + (u128::from(rng.next_u64()) % (last - first).saturating_add(1).max(1)),
    };
    addr_of(family, bits)
}

/// A port of `r` (an end, or inside it) if `inside`; otherwise one off
/// an end (wrapping at 0 and 65535).
fn near_range(rng: &mut Rng, r: PortRange, inside: bool) -> u16 {
    match (inside, rng.below(10)) {
        (false, 0..5) => r.lo.wrapping_sub(1),
        (false, _) => r.hi.wrapping_add(1),
        (true, 0..4) => r.lo,
        (true, 4..8) => r.hi,
        (true, _) => r.lo + (rng.below(u64::from(r.hi - r.lo) + 1) as u16),
    }
}
