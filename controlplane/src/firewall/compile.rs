//! Ruleset -> the tables of the bit-vector classifier (pure: no maps, no
//! I/O). `install` writes the result into the inactive generation.
//!
//! The linear bit-vector search of bpf-iptables (Miano et al., "Securing
//! Linux with a Faster and Scalable Iptables", SIGCOMM CCR 2019) and
//! Polycube's pcn-firewall: for every field, each value the packet can
//! carry maps to the bitmap of the rules that accept it (the rules that do
//! not look at the field, plus those whose match on it admits the value).
//! The program ANDs one bitmap per field; the lowest set bit is the first
//! rule that matches on every field, i.e. the first match of the linear
//! semantics in [`super::reference`]. [`Compiled::classify`] replays the
//! program's lookups over the tables so the equivalence is testable here.
//!
//! Identical bitmaps are stored once across fields and chains: a field's
//! values fall into few classes (elementary intervals for ports and ICMP
//! type/code, one class per nesting of prefixes), so the pool stays small.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dataplane_common::{
    CHAIN_F_CONNTRACK, ChainInfo, FIELD_CT_STATE, FIELD_DPORT, FIELD_ICMP4, FIELD_ICMP6,
    FIELD_PROTO, FIELD_SPORT, FIELD_STRIDE, FIELD_TCP_FLAGS, FW_ACCEPT, FW_DIR_IN, FW_DIR_OUT,
    FW_MAX_PREFIXES_V4, FW_MAX_PREFIXES_V6, FW_REJECT, FW_RULE_F_LOG, FW_SIDE_DST, FW_SIDE_SRC,
    FW_WORDS, FwRule, RuleBitmap,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{
    reference::{Match, PacketView},
    rule::{
        AddrMatch, AddressSet, Chain, CtState, PROTO_ICMP, PROTO_ICMPV6, Problem, Rule, Ruleset,
        Verdict,
    },
};

#[cfg(test)]
mod tests;

/// Everything one generation of the firewall maps holds.
#[derive(Clone)]
pub struct Compiled {
    /// Id of `bitmaps[0]`: bitmap ids are `base + index`.
    pub base: u32,
    pub bitmaps: Vec<RuleBitmap>,
    /// `[forward, input]`, indexed by [`Chain::index`].
    pub chains: Vec<CompiledChain>,
}

impl std::fmt::Debug for Compiled {
    // A summary: the tables run to megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chains: Vec<_> = self.chains.iter().map(|c| (c.chain, c.info)).collect();
        f.debug_struct("Compiled")
            .field("base", &self.base)
            .field("bitmaps", &self.bitmaps.len())
            .field("chains", &chains)
            .finish_non_exhaustive()
    }
}

/// One chain's tables. Every bitmap id in here is absolute (`base + index`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledChain {
    pub chain: Chain,
    pub info: ChainInfo,
    /// Per position: action code and rule id.
    pub rules: Vec<FwRule>,
    /// Per position: index in [`Ruleset::rules`].
    pub rule_index: Vec<usize>,
    /// The dense fields, `FIELD_STRIDE` long: `fields[FIELD_<name> + value]`.
    pub fields: Vec<u32>,
    /// (FW_DIR_IN or FW_DIR_OUT, ifindex, id) for the interfaces some rule
    /// names, sorted; any other interface gets `info.any_iface_*`.
    pub ifaces: Vec<(u8, u32, u32)>,
    /// (FW_SIDE_SRC or FW_SIDE_DST, prefix, id): every distinct prefix a
    /// rule names on that side (its own or its set's members), plus
    /// 0.0.0.0/0 and ::/0 per side, so every lookup finds an entry. Sorted
    /// by side, then family, address and length.
    pub prefixes: Vec<(u8, IpNet, u32)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("invalid ruleset: {}", problems_text(.0))]
    Invalid(Vec<Problem>),
    #[error("rule {}: interface {name:?} does not exist", .rule + 1)]
    UnknownInterface { rule: usize, name: String },
    #[error(
        "the ruleset needs {needed} rule bitmaps but a generation holds {capacity}; \
         raise --fw-bitmaps (both generations together) to at least {}",
        .needed.saturating_mul(2)
    )]
    PoolFull { needed: usize, capacity: u32 },
    #[error(
        "the ruleset needs {needed} IPv{family} prefix entries (both chains and sides, \
         defaults included) but a generation holds {capacity}"
    )]
    TooManyPrefixes {
        family: u8,
        needed: usize,
        capacity: u32,
    },
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Compiles both chains of `rs`. `resolve` maps interface names to
/// ifindexes; bitmap ids are `base..base + n` and `n` may not exceed
/// `capacity` (one generation's share of the pool).
pub fn compile(
    rs: &Ruleset,
    resolve: &dyn Fn(&str) -> Option<u32>,
    base: u32,
    capacity: u32,
) -> Result<Compiled, CompileError> {
    let problems = rs.problems();
    if !problems.is_empty() {
        return Err(CompileError::Invalid(problems));
    }
    let sets: HashMap<&str, &AddressSet> = rs.sets.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut pool = Pool::new(base);
    let mut chains = Vec::with_capacity(Chain::ALL.len());
    for chain in Chain::ALL {
        debug_assert_eq!(chain.index() as usize, chains.len());
        chains.push(compile_chain(rs, &sets, chain, resolve, &mut pool)?);
    }

    for (family, capacity) in [(4, FW_MAX_PREFIXES_V4 / 2), (6, FW_MAX_PREFIXES_V6 / 2)] {
        let needed = chains
            .iter()
            .flat_map(|c| &c.prefixes)
            .filter(|(_, p, _)| family_of(p) == family)
            .count();
        if needed > capacity as usize {
            return Err(CompileError::TooManyPrefixes {
                family,
                needed,
                capacity,
            });
        }
    }
    let needed = pool.bitmaps.len();
    // Ids base..base + needed must also be u32s.
    let end = u64::from(base) + needed as u64;
    if needed > capacity as usize || end > u64::from(u32::MAX) + 1 {
        return Err(CompileError::PoolFull { needed, capacity });
    }
    Ok(Compiled {
        base,
        bitmaps: pool.bitmaps,
        chains,
    })
}

impl Compiled {
    /// Classifies `pkt` the way the XDP program does with these tables:
    /// one id per field (dense arrays, the interface hash with its
    /// fallback, longest-prefix match, the `no_*` ids for fields the packet
    /// lacks), AND over `info.words` words, lowest set bit.
    pub fn classify(&self, chain: Chain, pkt: &PacketView) -> Match {
        let policy = |cc: &CompiledChain| Match {
            position: None,
            rule_index: None,
            verdict: verdict_of(cc.info.policy),
        };
        let Some(cc) = self.chains.get(chain.index() as usize) else {
            return Match {
                position: None,
                rule_index: None,
                verdict: Verdict::Drop,
            };
        };
        let info = &cc.info;
        if info.rules == 0 {
            return policy(cc);
        }
        let field = |off: u32, value: u32| cc.fields[(off + value) as usize];
        let iface = |dir: u8, ifindex: u32, any: u32| {
            cc.ifaces
                .iter()
                .find(|(d, i, _)| *d == dir && *i == ifindex)
                .map_or(any, |(_, _, id)| *id)
        };
        let (Some(src), Some(dst)) = (cc.lpm(FW_SIDE_SRC, pkt.src), cc.lpm(FW_SIDE_DST, pkt.dst))
        else {
            // An LPM miss cannot happen with the /0 defaults in place.
            return policy(cc);
        };
        let icmp_block = if pkt.family == 6 {
            FIELD_ICMP6
        } else {
            FIELD_ICMP4
        };
        let ids = [
            iface(FW_DIR_IN, pkt.in_ifindex, info.any_iface_in),
            iface(FW_DIR_OUT, pkt.out_ifindex, info.any_iface_out),
            src,
            dst,
            field(FIELD_PROTO, pkt.proto.into()),
            pkt.sport
                .map_or(info.no_sport, |p| field(FIELD_SPORT, p.into())),
            pkt.dport
                .map_or(info.no_dport, |p| field(FIELD_DPORT, p.into())),
            pkt.tcp_flags
                .map_or(info.no_tcp_flags, |f| field(FIELD_TCP_FLAGS, f.into())),
            pkt.icmp.map_or(info.no_icmp, |(t, c)| {
                field(icmp_block, u32::from(t) << 8 | u32::from(c))
            }),
            field(FIELD_CT_STATE, pkt.state.code()),
        ];
        let bitmaps: Vec<Option<&RuleBitmap>> = ids
            .iter()
            .map(|id| {
                id.checked_sub(self.base)
                    .and_then(|i| self.bitmaps.get(i as usize))
            })
            .collect();
        for w in 0..(info.words as usize).min(FW_WORDS) {
            let word = bitmaps
                .iter()
                .fold(u64::MAX, |acc, b| acc & b.map_or(0, |b| b.words[w]));
            if word != 0 {
                let position = w * 64 + word.trailing_zeros() as usize;
                return match (cc.rules.get(position), cc.rule_index.get(position)) {
                    (Some(rule), Some(index)) => Match {
                        position: Some(position as u32),
                        rule_index: Some(*index),
                        verdict: verdict_of(rule.action),
                    },
                    _ => policy(cc),
                };
            }
        }
        policy(cc)
    }

    /// Bitmaps in the pool (ids `base..base + bitmap_count()`).
    pub fn bitmap_count(&self) -> usize {
        self.bitmaps.len()
    }
}

impl CompiledChain {
    /// Longest prefix of `side` containing `addr`.
    fn lpm(&self, side: u8, addr: IpAddr) -> Option<u32> {
        self.prefixes
            .iter()
            .filter(|(s, p, _)| *s == side && p.contains(&addr))
            .max_by_key(|(_, p, _)| p.prefix_len())
            .map(|(_, _, id)| *id)
    }
}

fn verdict_of(code: u32) -> Verdict {
    match code {
        FW_ACCEPT => Verdict::Accept,
        FW_REJECT => Verdict::Reject,
        _ => Verdict::Drop,
    }
}

/// The deduplicated bitmap pool shared by both chains.
struct Pool {
    base: u32,
    bitmaps: Vec<RuleBitmap>,
    /// Words with trailing zero words trimmed, so chains of different
    /// widths share equal bitmaps.
    ids: HashMap<Vec<u64>, u32>,
}

impl Pool {
    fn new(base: u32) -> Pool {
        Pool {
            base,
            bitmaps: Vec::new(),
            ids: HashMap::new(),
        }
    }

    /// The id of the bitmap holding `words` (then zeros), added if new.
    /// Ids may wrap past u32::MAX here; `compile` refuses such pools.
    fn intern(&mut self, words: &[u64]) -> u32 {
        let used = words.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1);
        let key = &words[..used];
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = self.base.wrapping_add(self.bitmaps.len() as u32);
        let mut bitmap = RuleBitmap {
            words: [0; FW_WORDS],
        };
        bitmap.words[..used].copy_from_slice(key);
        self.bitmaps.push(bitmap);
        self.ids.insert(key.to_vec(), id);
        id
    }
}

/// A chain-wide bitmap under construction (`words` = ceil(rules / 64)).
#[derive(Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, position: usize) {
        self.0[position / 64] |= 1 << (position % 64);
    }

    fn clear(&mut self, position: usize) {
        self.0[position / 64] &= !(1 << (position % 64));
    }
}

/// The enabled rules of one chain, position = index in `rules`.
struct ChainRules<'a> {
    rules: Vec<(usize, &'a Rule)>,
    words: usize,
}

impl ChainRules<'_> {
    /// The rules for which `looks` is false: they accept any value of the
    /// field.
    fn wildcard(&self, looks: impl Fn(&Rule) -> bool) -> Bits {
        let mut bits = Bits(vec![0; self.words]);
        for (position, (_, rule)) in self.rules.iter().enumerate() {
            if !looks(rule) {
                bits.set(position);
            }
        }
        bits
    }
}

fn compile_chain(
    rs: &Ruleset,
    sets: &HashMap<&str, &AddressSet>,
    chain: Chain,
    resolve: &dyn Fn(&str) -> Option<u32>,
    pool: &mut Pool,
) -> Result<CompiledChain, CompileError> {
    let rules: Vec<(usize, &Rule)> = rs
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.chain == chain && r.enabled)
        .collect();
    let cr = ChainRules {
        words: rules.len().div_ceil(64),
        rules,
    };
    let zero = pool.intern(&[]);
    let mut fields = vec![zero; FIELD_STRIDE as usize];
    // Ports: elementary intervals of the rules' ranges.
    let no_sport = cr.wildcard(|r| r.sport.is_some());
    let no_dport = cr.wildcard(|r| r.dport.is_some());
    let sport: Vec<(usize, u32, u32)> =
        ranges(&cr, |r| r.sport.map(|p| (p.lo.into(), p.hi.into())));
    let dport: Vec<(usize, u32, u32)> =
        ranges(&cr, |r| r.dport.map(|p| (p.lo.into(), p.hi.into())));
    fill_ranges(pool, &mut fields, FIELD_SPORT, &no_sport, &sport);
    fill_ranges(pool, &mut fields, FIELD_DPORT, &no_dport, &dport);

    // ICMP type << 8 | code: a rule without a code is the range of its
    // type's 256 codes. A rule fills only the block of its own protocol.
    let no_icmp = cr.wildcard(|r| r.icmp.is_some());
    for (block, proto) in [(FIELD_ICMP4, PROTO_ICMP), (FIELD_ICMP6, PROTO_ICMPV6)] {
        let icmp = ranges(&cr, |r| {
            let m = r.icmp.as_ref()?;
            if r.proto.map(|p| p.0) != Some(proto) {
                return None;
            }
            let (kind, code) = m.resolve(proto == PROTO_ICMPV6).ok()?;
            let kind = u32::from(kind) << 8;
            Some(match code {
                Some(c) => (kind | u32::from(c), kind | u32::from(c)),
                None => (kind, kind | 0xff),
            })
        });
        fill_ranges(pool, &mut fields, block, &no_icmp, &icmp);
    }

    // Protocol.
    let any_proto = cr.wildcard(|r| r.proto.is_some());
    let mut by_proto: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (position, (_, rule)) in cr.rules.iter().enumerate() {
        if let Some(p) = rule.proto {
            by_proto[usize::from(p.0)].push(position);
        }
    }
    for (proto, positions) in by_proto.iter().enumerate() {
        let mut bits = any_proto.clone();
        positions.iter().for_each(|p| bits.set(*p));
        fields[FIELD_PROTO as usize + proto] = pool.intern(&bits.0);
    }

    // TCP flags.
    let no_tcp_flags = cr.wildcard(|r| r.tcp_flags.is_some());
    let flag_rules: Vec<(usize, u8, u8)> = cr
        .rules
        .iter()
        .enumerate()
        .filter_map(|(pos, (_, r))| r.tcp_flags.map(|f| (pos, f.mask, f.value)))
        .collect();
    for flags in 0..=u8::MAX {
        let mut bits = no_tcp_flags.clone();
        for (position, mask, value) in &flag_rules {
            if flags & mask == *value {
                bits.set(*position);
            }
        }
        fields[(FIELD_TCP_FLAGS + u32::from(flags)) as usize] = pool.intern(&bits.0);
    }

    // Connection state; the block's unused tail stays on the zero bitmap.
    let any_state = cr.wildcard(|r| !r.state.is_empty());
    for state in CtState::ALL {
        let mut bits = any_state.clone();
        for (position, (_, rule)) in cr.rules.iter().enumerate() {
            if rule.state.contains(&state) {
                bits.set(position);
            }
        }
        fields[(FIELD_CT_STATE + state.code()) as usize] = pool.intern(&bits.0);
    }

    // Interfaces.
    let mut ifaces = Vec::new();
    let any_iface_in = iface_field(
        &cr,
        FW_DIR_IN,
        |r| r.in_iface.as_deref(),
        resolve,
        pool,
        &mut ifaces,
    )?;
    let any_iface_out = iface_field(
        &cr,
        FW_DIR_OUT,
        |r| r.out_iface.as_deref(),
        resolve,
        pool,
        &mut ifaces,
    )?;

    // Prefixes.
    let mut prefixes = Vec::new();
    prefix_field(
        &cr,
        sets,
        FW_SIDE_SRC,
        |r| r.src.as_ref(),
        pool,
        &mut prefixes,
    );
    prefix_field(
        &cr,
        sets,
        FW_SIDE_DST,
        |r| r.dst.as_ref(),
        pool,
        &mut prefixes,
    );

    let conntrack = cr.rules.iter().any(|(_, r)| !r.state.is_empty());
    let info = ChainInfo {
        rules: cr.rules.len() as u32,
        words: cr.words as u32,
        policy: rs.policy.of(chain).code(),
        flags: if conntrack { CHAIN_F_CONNTRACK } else { 0 },
        any_iface_in,
        any_iface_out,
        no_sport: pool.intern(&no_sport.0),
        no_dport: pool.intern(&no_dport.0),
        no_tcp_flags: pool.intern(&no_tcp_flags.0),
        no_icmp: pool.intern(&no_icmp.0),
    };
    Ok(CompiledChain {
        chain,
        info,
        rules: cr
            .rules
            .iter()
            .map(|(_, r)| FwRule {
                action: r.action.code(),
                id: r.id,
                // Accepted packets are never logged: only drops and rejects.
                flags: if r.log && r.action != Verdict::Accept {
                    FW_RULE_F_LOG
                } else {
                    0
                },
                _pad: 0,
            })
            .collect(),
        rule_index: cr.rules.iter().map(|(i, _)| *i).collect(),
        fields,
        ifaces,
        prefixes,
    })
}

/// (position, lo, hi) of the rules `range` gives an inclusive range for.
fn ranges(cr: &ChainRules, range: impl Fn(&Rule) -> Option<(u32, u32)>) -> Vec<(usize, u32, u32)> {
    cr.rules
        .iter()
        .enumerate()
        .filter_map(|(pos, (_, r))| range(r).map(|(lo, hi)| (pos, lo, hi)))
        .collect()
}

/// Fills the 65,536 entries at `off` by sweeping over the range
/// boundaries: between two consecutive boundaries the set of rules whose
/// range covers the value does not change, so each elementary interval
/// costs one bitmap, not one per value. `wildcard` must not hold the
/// ranged rules.
fn fill_ranges(
    pool: &mut Pool,
    fields: &mut [u32],
    off: u32,
    wildcard: &Bits,
    ranges: &[(usize, u32, u32)],
) {
    const END: u32 = 1 << 16;
    // (boundary, position, starts): a rule enters at lo, leaves at hi + 1.
    let mut events: Vec<(u32, usize, bool)> = ranges
        .iter()
        .flat_map(|&(pos, lo, hi)| [(lo, pos, true), (hi + 1, pos, false)])
        .collect();
    events.sort_unstable();
    let mut current = wildcard.clone();
    let mut next = 0;
    let mut start = 0;
    while start < END {
        while let Some(&(at, pos, starts)) = events.get(next)
            && at == start
        {
            if starts {
                current.set(pos);
            } else {
                current.clear(pos);
            }
            next += 1;
        }
        let end = events.get(next).map_or(END, |e| e.0.min(END));
        let id = pool.intern(&current.0);
        fields[(off + start) as usize..(off + end) as usize].fill(id);
        start = end;
    }
}

/// Adds the (dir, ifindex, id) entries of the interfaces the chain's rules
/// name and returns the id for every other interface.
fn iface_field(
    cr: &ChainRules,
    dir: u8,
    name: impl Fn(&Rule) -> Option<&str>,
    resolve: &dyn Fn(&str) -> Option<u32>,
    pool: &mut Pool,
    out: &mut Vec<(u8, u32, u32)>,
) -> Result<u32, CompileError> {
    let any = cr.wildcard(|r| name(r).is_some());
    let mut by_ifindex: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (position, (index, rule)) in cr.rules.iter().enumerate() {
        if let Some(n) = name(rule) {
            let ifindex = resolve(n).ok_or_else(|| CompileError::UnknownInterface {
                rule: *index,
                name: n.to_string(),
            })?;
            by_ifindex.entry(ifindex).or_default().push(position);
        }
    }
    for (ifindex, positions) in by_ifindex {
        let mut bits = any.clone();
        positions.iter().for_each(|p| bits.set(*p));
        out.push((dir, ifindex, pool.intern(&bits.0)));
    }
    Ok(pool.intern(&any.0))
}

/// A prefix as (family, address bits, length), the address in the low 32
/// bits for IPv4, host bits cleared. Sorted, a prefix comes right before
/// the prefixes it contains (depth-first order of the prefix tree).
type PrefixKey = (u8, u128, u8);

fn key_of(net: &IpNet) -> PrefixKey {
    match net.trunc() {
        IpNet::V4(n) => (4, u32::from(n.addr()).into(), n.prefix_len()),
        IpNet::V6(n) => (6, u128::from(n.addr()), n.prefix_len()),
    }
}

fn net_of((family, bits, len): PrefixKey) -> IpNet {
    // Keys come from valid prefixes, so the lengths are in range.
    if family == 4 {
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(bits as u32), len))
    } else {
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), len))
    }
}

/// Whether prefix `outer` contains prefix `inner` (or is it).
fn contains(outer: PrefixKey, inner: PrefixKey) -> bool {
    let (family, bits, len) = outer;
    let width = if family == 4 { 32 } else { 128 };
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (width - len)
    };
    family == inner.0 && len <= inner.2 && inner.1 & mask == bits
}

fn family_of(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// Adds the source or destination prefix entries of a chain. The bitmap of
/// a prefix P is the wildcard rules plus every rule with a prefix that
/// contains P: a packet's longest match P then selects exactly the rules
/// with a prefix containing the address (any prefix containing the
/// address is in the table, so it is P or contains P).
///
/// Walking the prefixes in depth-first order with a stack of the enclosing
/// ones, bitmap(P) = bitmap(parent of P) + the rules naming P itself, so
/// each prefix costs one step, however many ancestors it has.
fn prefix_field(
    cr: &ChainRules,
    sets: &HashMap<&str, &AddressSet>,
    side: u8,
    get: impl Fn(&Rule) -> Option<&AddrMatch>,
    pool: &mut Pool,
    out: &mut Vec<(u8, IpNet, u32)>,
) {
    let wildcard = cr.wildcard(|r| get(r).is_some());
    // (prefix, position) for every prefix a rule names, plus the /0
    // defaults (position None), sorted: each distinct prefix is one run.
    let mut named: Vec<(PrefixKey, Option<usize>)> = vec![((4, 0, 0), None), ((6, 0, 0), None)];
    for (position, (_, rule)) in cr.rules.iter().enumerate() {
        match get(rule) {
            None => {}
            Some(AddrMatch::Prefix(p)) => named.push((key_of(p), Some(position))),
            Some(AddrMatch::Set(name)) => {
                // Validation guarantees the set exists.
                if let Some(set) = sets.get(name.as_str()) {
                    named.extend(set.prefixes.iter().map(|p| (key_of(p), Some(position))));
                }
            }
        }
    }
    named.sort_unstable();
    named.dedup();

    // Rules naming a prefix, as a group id: a 100k-prefix set used by one
    // rule is one group, and (parent bitmap, group) pairs repeat.
    let mut group_ids: HashMap<Vec<usize>, u32> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut memo: HashMap<(u32, u32), u32> = HashMap::new();
    let wildcard_id = pool.intern(&wildcard.0);
    // The enclosing prefixes of the current one, outermost first.
    let mut stack: Vec<(PrefixKey, u32)> = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    for chunk in named.chunk_by(|a, b| a.0 == b.0) {
        let key = chunk[0].0;
        run.clear();
        run.extend(chunk.iter().filter_map(|(_, pos)| *pos));
        let group = match group_ids.get(&run) {
            Some(g) => *g,
            None => {
                let g = groups.len() as u32;
                groups.push(run.clone());
                group_ids.insert(run.clone(), g);
                g
            }
        };
        while stack
            .last()
            .is_some_and(|(outer, _)| !contains(*outer, key))
        {
            stack.pop();
        }
        let parent = stack.last().map_or(wildcard_id, |(_, id)| *id);
        let id = match memo.get(&(parent, group)) {
            Some(id) => *id,
            None => {
                let id = if run.is_empty() {
                    parent
                } else {
                    let words = &pool.bitmaps[parent.wrapping_sub(pool.base) as usize].words;
                    let mut bits = Bits(words[..cr.words].to_vec());
                    run.iter().for_each(|p| bits.set(*p));
                    pool.intern(&bits.0)
                };
                memo.insert((parent, group), id);
                id
            }
        };
        stack.push((key, id));
        out.push((side, net_of(key), id));
    }
}
