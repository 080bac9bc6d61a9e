//! The firewall stage: connection state, rule classification by bit-vector
//! search, and the verdict (accept, drop, or reject with a reply built
//! here).
//!
//! Classification is bpf-iptables' linear bit-vector search (Miano et al.,
//! SIGCOMM CCR 2019): each field's lookup yields the bitmap of the rules
//! that accept the packet's value; the AND of all of them, scanned from the
//! lowest word, gives the first matching rule. The cost is a fixed number of
//! lookups plus one AND per 64 rules, whatever the rules contain.
use aya_ebpf::{maps::lpm_trie::Key, programs::XdpContext};
use dataplane_common::{
    CFG_F_TRACK_ALL, CHAIN_F_CONNTRACK, CT_STATE_UNTRACKED, Counter, CtEntry, FIELD_CT_STATE,
    FIELD_DPORT, FIELD_ICMP4, FIELD_ICMP6, FIELD_PROTO, FIELD_SPORT, FIELD_STRIDE, FIELD_TCP_FLAGS,
    FW_ACCEPT, FW_CHAINS, FW_COUNTERS_PER_TABLE, FW_DIR_IN, FW_DIR_OUT, FW_MAX_RULES, FW_REJECT,
    FW_RULE_F_LOG, FW_SIDE_DST, FW_SIDE_SRC, FW_WORDS, FwIfaceKey, Reason, RuleBitmap,
    fw_prefix_tag,
};

use crate::{
    conntrack, fwlog,
    headers::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, be16},
    maps::{
        CONFIG, FW_BITMAPS, FW_CHAIN_INFO, FW_COUNTERS, FW_FIELDS, FW_IFACES, FW_PREFIXES_V4,
        FW_PREFIXES_V6, FW_RULES,
    },
    parse::{Packet, ptr_at},
    reject,
};

/// What the firewall looks at in a packet.
pub struct View {
    pub family: u8,
    pub proto: u8,
    /// IPv4-mapped for IPv4.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// The L4 header is there and trustworthy (no fragment, no IPv4
    /// options, no IPv6 extension header in front of it).
    pub l4: bool,
    pub has_ports: bool,
    pub sport: u16,
    pub dport: u16,
    pub is_tcp: bool,
    pub tcp_flags: u8,
    /// ICMP for IPv4, ICMPv6 for IPv6.
    pub is_icmp: bool,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Echo identifier (bytes 4..6 of the ICMP header).
    pub icmp_id: u16,
}

/// The firewall runs as three BPF functions that `decide` calls one after
/// the other, not nested: the verifier's 512-byte stack limit covers a
/// whole call chain, so siblings each get the room a nested chain would
/// have to share.
///
/// Stage one: read the packet's fields and its connection state. Returns
/// `Ok(false)` when the chain has nothing to do (no rules, accept policy,
/// no tracking), `Ok(true)` when `classify` and `verdict` must run. The
/// connection entry found (or null) comes back in `entry`.
#[inline(never)]
pub fn begin(
    ctx: &XdpContext,
    packet: &Packet,
    s: &mut Scratch,
    entry: &mut *mut CtEntry,
) -> Result<bool, Reason> {
    *entry = core::ptr::null_mut();
    // Array entries: these lookups cannot miss.
    let Some(config) = CONFIG.get(0) else {
        return Ok(false);
    };
    let table = (config.fw_generation & 1) * FW_CHAINS + s.plan.chain;
    let Some(info) = FW_CHAIN_INFO.get(table) else {
        return Ok(false);
    };
    let track = info.flags & CHAIN_F_CONNTRACK != 0 || config.flags & CFG_F_TRACK_ALL != 0;
    if info.rules == 0 && info.policy == FW_ACCEPT && !track {
        return Ok(false);
    }
    s.table = table;
    s.track = track as u32;
    fill_view(ctx, packet, &mut s.view)?;
    s.ct.state = CT_STATE_UNTRACKED;
    s.ct.create = 0;
    if !track {
        return Ok(true);
    }
    if conntrack::is_error(&s.view) {
        conntrack::related(ctx, packet, config, s);
    } else {
        *entry = conntrack::lookup(config, s);
    }
    Ok(true)
}

/// Stage three: count, and carry out the verdict of rule `position`
/// (`FW_MAX_RULES`: no rule matched, the policy decides). `Ok` lets the
/// packet go on; `Err` is the reason it ends with (dropped, or rejected
/// with the reply built for `XDP_TX`).
#[inline(never)]
pub fn verdict(
    ctx: &XdpContext,
    packet: &Packet,
    s: &mut Scratch,
    entry: *mut CtEntry,
    position: u32,
) -> Result<(), Reason> {
    let table = s.table;
    let (action, rule_id, counter, flags) = match rule(table, position) {
        Some((p, action, id, flags)) => (action, id, p, flags),
        None => match FW_CHAIN_INFO.get(table) {
            Some(info) => (info.policy, 0, FW_MAX_RULES, 0),
            None => (FW_ACCEPT, 0, FW_MAX_RULES, 0),
        },
    };
    count(ctx, table, counter);
    if action == FW_ACCEPT {
        if s.track != 0 {
            let l3_len = crate::parse::len(ctx).saturating_sub(packet.l3.off) as u64;
            conntrack::confirm(s, entry, rule_id, l3_len);
        }
        return Ok(());
    }
    // Before a reject turns the frame into its reply.
    if flags & FW_RULE_F_LOG != 0 {
        fwlog::record(ctx, s, action, rule_id);
    }
    if action == FW_REJECT && reject::send(ctx, packet, &s.view).is_ok() {
        return Err(Reason::Rejected);
    }
    Err(Reason::Filtered)
}

/// Per-CPU working state of one packet's trip through routing and the
/// firewall. It lives in a map, not on the stack: the verifier allows 512
/// bytes of stack for a whole call chain.
pub struct Scratch {
    pub plan: crate::forward::Plan,
    /// `generation * FW_CHAINS + chain` the packet is filtered in.
    pub table: u32,
    /// Whether connections are tracked in this chain (1) or not (0).
    pub track: u32,
    pub view: View,
    pub quoted: conntrack::Quoted,
    pub ct: conntrack::Tracked,
}

/// Position, action, database id and `FW_RULE_F_*` flags of the rule at
/// `position`.
#[inline(always)]
fn rule(table: u32, position: u32) -> Option<(u32, u32, u32, u32)> {
    if position >= FW_MAX_RULES {
        return None;
    }
    let r = FW_RULES.get(table * FW_MAX_RULES + position)?;
    Some((position, r.action, r.id, r.flags))
}

#[inline(always)]
fn count(ctx: &XdpContext, table: u32, position: u32) {
    let len = crate::parse::len(ctx) as u64;
    if let Some(cell) = FW_COUNTERS.get_ptr_mut(table * FW_COUNTERS_PER_TABLE + position) {
        let cell: *mut Counter = cell;
        // SAFETY: per-CPU; XDP runs with preemption disabled.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += len;
        }
    }
}

/// Read the fields the rules and the connection table need.
#[inline(always)]
fn fill_view(ctx: &XdpContext, packet: &Packet, v: &mut View) -> Result<(), Reason> {
    let l3 = &packet.l3;
    v.family = l3.family;
    v.proto = l3.protocol;
    v.l4 = packet.exception.is_none();
    v.has_ports = false;
    v.is_tcp = false;
    v.is_icmp = false;
    v.sport = 0;
    v.dport = 0;
    v.tcp_flags = 0;
    v.icmp_type = 0;
    v.icmp_code = 0;
    v.icmp_id = 0;
    if l3.family == 4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, l3.off)?;
        unsafe {
            conntrack::set_mapped(&mut v.src, (*ip).saddr);
            conntrack::set_mapped(&mut v.dst, (*ip).daddr);
        }
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3.off)?;
        unsafe {
            v.src = (*ip).saddr;
            v.dst = (*ip).daddr;
        }
    }
    if !v.l4 {
        return Ok(());
    }
    match l3.protocol {
        IPPROTO_TCP | IPPROTO_UDP => {
            // Ports lead both headers; the TCP flags byte is at 13
            // (RFC 9293 3.1). parse::check_l4 made sure the header is whole.
            let ports: *const [u8; 4] = ptr_at(ctx, l3.l4_off)?;
            let p = unsafe { *ports };
            v.has_ports = true;
            v.sport = u16::from_be_bytes([p[0], p[1]]);
            v.dport = u16::from_be_bytes([p[2], p[3]]);
            if l3.protocol == IPPROTO_TCP {
                let flags: *const u8 = ptr_at(ctx, l3.l4_off + 13)?;
                v.is_tcp = true;
                v.tcp_flags = unsafe { *flags };
            }
        }
        IPPROTO_ICMP if l3.family == 4 => icmp_fields(ctx, l3.l4_off, v)?,
        IPPROTO_ICMPV6 if l3.family == 6 => icmp_fields(ctx, l3.l4_off, v)?,
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn icmp_fields(ctx: &XdpContext, off: usize, v: &mut View) -> Result<(), Reason> {
    let icmp: *const [u8; 8] = ptr_at(ctx, off)?;
    let h = unsafe { *icmp };
    v.is_icmp = true;
    v.icmp_type = h[0];
    v.icmp_code = h[1];
    v.icmp_id = be16([h[4], h[5]]);
    Ok(())
}

/// Stage two: the first rule (position) whose every field accepts the
/// packet; `FW_MAX_RULES` when none does.
#[inline(never)]
pub fn classify(s: &Scratch) -> u32 {
    match first_match(s) {
        Some(p) => p,
        None => FW_MAX_RULES,
    }
}

#[inline(always)]
fn first_match(s: &Scratch) -> Option<u32> {
    let table = s.table;
    let info = FW_CHAIN_INFO.get(table)?;
    if info.rules == 0 {
        return None;
    }
    let v = &s.view;
    let base = table * FIELD_STRIDE;
    let field = |off: u32| FW_FIELDS.get(base + off).copied();
    let iface = |dir: u8, ifindex: u32, any: u32| {
        let key = FwIfaceKey {
            table: table as u8,
            dir,
            _pad: [0; 2],
            ifindex,
        };
        // SAFETY: copied out at once.
        match unsafe { FW_IFACES.get(key) } {
            Some(id) => *id,
            None => any,
        }
    };
    let sport = if v.has_ports {
        field(FIELD_SPORT + v.sport as u32)?
    } else {
        info.no_sport
    };
    let dport = if v.has_ports {
        field(FIELD_DPORT + v.dport as u32)?
    } else {
        info.no_dport
    };
    let flags = if v.is_tcp {
        field(FIELD_TCP_FLAGS + v.tcp_flags as u32)?
    } else {
        info.no_tcp_flags
    };
    let icmp = if v.is_icmp {
        let block = if v.family == 4 {
            FIELD_ICMP4
        } else {
            FIELD_ICMP6
        };
        field(block + ((v.icmp_type as u32) << 8 | v.icmp_code as u32))?
    } else {
        info.no_icmp
    };
    let b0 = bitmap(field(FIELD_PROTO + v.proto as u32)?)?;
    let b1 = bitmap(dport)?;
    let b2 = bitmap(sport)?;
    let b3 = bitmap(field(FIELD_CT_STATE + (s.ct.state & 7))?)?;
    let b4 = bitmap(flags)?;
    let b5 = bitmap(icmp)?;
    let b6 = bitmap(iface(FW_DIR_IN, s.plan.in_ifindex, info.any_iface_in))?;
    let b7 = bitmap(iface(FW_DIR_OUT, s.plan.out_ifindex, info.any_iface_out))?;
    let b8 = bitmap(prefix(table, FW_SIDE_SRC, v.family, &v.src)?)?;
    let b9 = bitmap(prefix(table, FW_SIDE_DST, v.family, &v.dst)?)?;
    let words = info.words;
    // AND the bitmaps word by word to the first word with a common bit;
    // its index comes after the loop, branch-free, so the loop's exits do
    // not multiply the verifier's paths. One loop over the words, not one
    // per field: ten loops with data-dependent exits would.
    let mut w = 0;
    let mut acc = 0;
    while w < FW_WORDS {
        if w as u32 >= words {
            return None;
        }
        acc = b0.words[w]
            & b1.words[w]
            & b2.words[w]
            & b3.words[w]
            & b4.words[w]
            & b5.words[w]
            & b6.words[w]
            & b7.words[w]
            & b8.words[w]
            & b9.words[w];
        if acc != 0 {
            break;
        }
        w += 1;
    }
    if acc == 0 {
        return None;
    }
    Some(w as u32 * 64 + lowest_bit(acc))
}

#[inline(always)]
fn bitmap(id: u32) -> Option<&'static RuleBitmap> {
    FW_BITMAPS.get(id)
}

/// Bitmap id of the longest prefix of `table`/`side` holding `addr`.
#[inline(always)]
fn prefix(table: u32, side: u8, family: u8, addr: &[u8; 16]) -> Option<u32> {
    let tag = fw_prefix_tag(table, side);
    let id = if family == 4 {
        let data = [tag, addr[12], addr[13], addr[14], addr[15], 0, 0, 0];
        FW_PREFIXES_V4.get(Key::new(8 + 32, data))?
    } else {
        let mut data = [0u8; 20];
        data[0] = tag;
        let mut i = 0;
        while i < 16 {
            data[1 + i] = addr[i];
            i += 1;
        }
        FW_PREFIXES_V6.get(Key::new(8 + 128, data))?
    };
    Some(*id)
}

/// Index of the lowest set bit of a non-zero word (BPF has no ctz): the
/// population count of the bits below it, computed branch-free (Hacker's
/// Delight 5-1) so the verifier sees one path.
#[inline(always)]
fn lowest_bit(x: u64) -> u32 {
    let below = (x & x.wrapping_neg()).wrapping_sub(1);
    let mut v = below - ((below >> 1) & 0x5555_5555_5555_5555);
    v = (v & 0x3333_3333_3333_3333) + ((v >> 2) & 0x3333_3333_3333_3333);
    v = (v + (v >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    (v.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

/// Keeps CT_STATE_UNTRACKED's value in view: the state field has 8 slots.
const _: () = assert!(CT_STATE_UNTRACKED < 8);
