//! Connection tracking: one LRU hash entry per connection under a canonical
//! key (both directions find it), a TCP state machine after nf_conntrack's
//! (net/netfilter/nf_conntrack_proto_tcp.c, without its sequence-window
//! checks), UDP and ICMP echo with timeouts, and ICMP errors that quote a
//! tracked connection counted as `related`.
//!
//! Writes are rare on purpose: an entry is written when it is created, when
//! its state changes, and at most once a second to refresh its last-seen
//! time; never per packet.
// Map keys and values are passed by reference on purpose: by value, the
// 40-byte key would be copied onto a stack the verifier caps at 512 bytes
// for the whole call chain.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use dataplane_common::{
    CT_F_FIN_ORIG, CT_F_FIN_REPLY, CT_F_ORIG_IS_LO, CT_F_SEEN_REPLY, CT_ICMP, CT_OTHER_REPLIED,
    CT_OTHER_UNREPLIED, CT_STATE_ESTABLISHED, CT_STATE_INVALID, CT_STATE_NEW, CT_STATE_RELATED,
    CT_STATE_UNTRACKED, CT_TCP_CLOSE, CT_TCP_CLOSE_WAIT, CT_TCP_ESTABLISHED, CT_TCP_FIN_WAIT,
    CT_TCP_LAST_ACK, CT_TCP_SYN_RECV, CT_TCP_SYN_SENT, CT_TCP_TIME_WAIT, CT_TIMEOUTS,
    CT_UDP_REPLIED, CT_UDP_UNREPLIED, Config, CtCounters, CtEntry, CtKey,
};

use crate::{
    firewall::{Scratch, View},
    headers::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr},
    maps::{CONNTRACK, CT_COUNTERS},
    parse::{Packet, ptr_at},
};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const NS_PER_SEC: u64 = 1_000_000_000;

/// What the lookup found, carried to `confirm` once the verdict is accept.
/// Lives in the firewall's per-CPU scratch entry.
pub struct Tracked {
    /// CT_STATE_* as the rules see it.
    pub state: u32,
    /// Create an entry if the packet is accepted (1) or not (0).
    pub create: u32,
    /// The packet's (source, port) is the key's `lo` side (1) or not (0).
    pub src_is_lo: u32,
    pub now: u64,
    pub key: CtKey,
}

/// Find the packet's connection and the state the rules match on (left in
/// `s.ct`). Returns the live entry, or null when there is none (or it
/// expired). The pointer cannot live in the scratch map: the verifier
/// refuses pointers stored in map values.
// A BPF-to-BPF call: its own stack frame (the 512-byte limit is per call chain).
#[inline(never)]
pub fn lookup(config: &Config, s: &mut Scratch) -> *mut CtEntry {
    let v = &s.view;
    let t = &mut s.ct;
    t.state = CT_STATE_UNTRACKED;
    t.create = 0;
    if !v.l4 {
        return core::ptr::null_mut();
    }
    // SAFETY: a helper without arguments.
    t.now = unsafe { bpf_ktime_get_coarse_ns() };
    if v.is_icmp && is_icmp_error(v) {
        // Decided by `related`, called by the firewall instead of this.
        t.state = CT_STATE_INVALID;
        return core::ptr::null_mut();
    }
    let (sport, dport) = if v.has_ports {
        (v.sport, v.dport)
    } else if v.is_icmp {
        if !is_echo(v) {
            // nf_conntrack tracks echo; other informational types are
            // invalid (nf_conntrack_proto_icmp.c icmp_new()).
            t.state = CT_STATE_INVALID;
            return core::ptr::null_mut();
        }
        (v.icmp_id, v.icmp_id)
    } else {
        (0, 0)
    };
    t.src_is_lo = canonical(&mut t.key, v.family, v.proto, &v.src, sport, &v.dst, dport) as u32;
    let entry = match CONNTRACK.get_ptr_mut(&t.key) {
        Some(e) if !expired(e, config, t.now) => e,
        _ => core::ptr::null_mut(),
    };
    // A SYN on a closed or closing connection opens a new one
    // (nf_conntrack_proto_tcp.c: TIME_WAIT/CLOSE + SYN -> new).
    let reopen = !entry.is_null()
        && v.is_tcp
        && v.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        && matches!(unsafe { (*entry).state }, CT_TCP_TIME_WAIT | CT_TCP_CLOSE);
    if entry.is_null() || reopen {
        t.state = new_state(v);
        t.create = (t.state == CT_STATE_NEW) as u32;
        return core::ptr::null_mut();
    }
    let (e_state, e_flags) = unsafe { ((*entry).state, (*entry).flags) };
    let orig = (e_flags & CT_F_ORIG_IS_LO != 0) == (t.src_is_lo != 0);
    t.state = if !orig {
        // nf: a SYN_SENT connection answered by anything but SYN-ACK or RST
        // is invalid.
        if v.is_tcp
            && e_state == CT_TCP_SYN_SENT
            && v.tcp_flags & TCP_RST == 0
            && v.tcp_flags & (TCP_SYN | TCP_ACK) != (TCP_SYN | TCP_ACK)
        {
            CT_STATE_INVALID
        } else {
            CT_STATE_ESTABLISHED
        }
    } else if e_flags & CT_F_SEEN_REPLY != 0 {
        CT_STATE_ESTABLISHED
    } else {
        CT_STATE_NEW
    };
    entry
}

/// State of a packet without a connection.
#[inline(always)]
fn new_state(v: &View) -> u32 {
    if v.is_tcp && v.tcp_flags & TCP_RST != 0 {
        return CT_STATE_INVALID;
    }
    if v.is_icmp && !is_echo_request(v) {
        // An echo reply nobody asked for.
        return CT_STATE_INVALID;
    }
    CT_STATE_NEW
}

/// Record what an accepted packet of `l3_len` IP-layer bytes did to its
/// connection (`entry` is what `lookup` returned).
// A BPF-to-BPF call: its own stack frame (the 512-byte limit is per call chain).
#[inline(never)]
pub fn confirm(s: &Scratch, entry: *mut CtEntry, rule: u32, l3_len: u64) {
    let t = &s.ct;
    let v = &s.view;
    if t.create != 0 || !entry.is_null() {
        let orig = if t.create != 0 {
            true
        } else {
            // SAFETY: a looked-up map value.
            let flags = unsafe { (*entry).flags };
            (flags & CT_F_ORIG_IS_LO != 0) == (t.src_is_lo != 0)
        };
        count(&t.key, t.create != 0, !orig as usize, l3_len, v.tcp_flags);
    }
    if t.create != 0 {
        let new = CtEntry {
            state: first_state(v),
            flags: if t.src_is_lo != 0 { CT_F_ORIG_IS_LO } else { 0 },
            _pad: [0; 2],
            ifindex_orig: s.plan.in_ifindex,
            ifindex_out: s.plan.out_ifindex,
            rule,
            created_ns: t.now,
            last_seen_ns: t.now,
            #[cfg(feature = "layout-test")]
            layout_test: 0,
        };
        // Failure (the table is being flushed) only loses tracking for this
        // packet; the next one tries again.
        let _ = CONNTRACK.insert(&t.key, &new, 0);
        return;
    }
    if entry.is_null() {
        return;
    }
    // SAFETY: a looked-up map value; concurrent updates from other CPUs
    // race benignly (each writes a valid state).
    let e = unsafe { &mut *entry };
    let orig = (e.flags & CT_F_ORIG_IS_LO != 0) == (t.src_is_lo != 0);
    let (state, flags) = next(e.state, e.flags, v, orig);
    if state != e.state || flags != e.flags {
        e.state = state;
        e.flags = flags;
    }
    if t.now >= e.last_seen_ns + NS_PER_SEC {
        e.last_seen_ns = t.now;
    }
}

/// Add a packet to the connection's per-CPU counters; a new connection
/// (`fresh`, also a reopened one) starts them again.
// Its own frame: keeps the CtCounters value off confirm's stack.
#[inline(never)]
fn count(key: &CtKey, fresh: bool, dir: usize, len: u64, tcp_flags: u8) {
    let dir = dir & 1;
    if !fresh && let Some(c) = CT_COUNTERS.get_ptr_mut(key) {
        // SAFETY: this CPU's value; XDP runs with preemption disabled.
        unsafe {
            (*c).packets[dir] += 1;
            (*c).bytes[dir] += len;
            (*c).tcp_flags[dir] |= tcp_flags;
        }
        return;
    }
    let mut c = CtCounters::default();
    c.packets[dir] = 1;
    c.bytes[dir] = len;
    c.tcp_flags[dir] = tcp_flags;
    // An update from a program sets this CPU's value and zeroes the others
    // (kernel/bpf/hashtab.c pcpu_init_value): a fresh start everywhere.
    let _ = CT_COUNTERS.insert(key, &c, 0);
}

#[inline(always)]
fn first_state(v: &View) -> u8 {
    if v.is_tcp {
        if v.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            CT_TCP_SYN_SENT
        } else {
            // Picked up mid-stream (nf_conntrack_tcp_loose=1): after a
            // daemon restart without pinned maps, or a flushed table.
            CT_TCP_ESTABLISHED
        }
    } else if v.has_ports {
        CT_UDP_UNREPLIED
    } else if v.is_icmp {
        CT_ICMP
    } else {
        CT_OTHER_UNREPLIED
    }
}

/// The connection's state after a packet (`orig`: sent by the originator).
#[inline(always)]
fn next(state: u8, flags: u8, v: &View, orig: bool) -> (u8, u8) {
    let mut flags = flags;
    if !orig {
        flags |= CT_F_SEEN_REPLY;
    }
    if !v.is_tcp {
        let state = match state {
            CT_UDP_UNREPLIED if !orig => CT_UDP_REPLIED,
            CT_OTHER_UNREPLIED if !orig => CT_OTHER_REPLIED,
            s => s,
        };
        return (state, flags);
    }
    let f = v.tcp_flags;
    if f & TCP_RST != 0 {
        return (CT_TCP_CLOSE, flags);
    }
    let fin = f & TCP_FIN != 0;
    let my_fin = if orig { CT_F_FIN_ORIG } else { CT_F_FIN_REPLY };
    let their_fin = if orig { CT_F_FIN_REPLY } else { CT_F_FIN_ORIG };
    if fin {
        flags |= my_fin;
    }
    let state = match state {
        CT_TCP_SYN_SENT if !orig && f & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) => {
            CT_TCP_SYN_RECV
        }
        CT_TCP_SYN_RECV if orig && f & TCP_ACK != 0 && f & TCP_SYN == 0 => CT_TCP_ESTABLISHED,
        CT_TCP_ESTABLISHED if fin => CT_TCP_FIN_WAIT,
        // The side that did not close yet answers: its FIN makes both
        // closed; an ACK alone leaves it half-closed.
        CT_TCP_FIN_WAIT | CT_TCP_CLOSE_WAIT if flags & their_fin != 0 && fin => CT_TCP_LAST_ACK,
        CT_TCP_FIN_WAIT if flags & their_fin != 0 && f & TCP_ACK != 0 => CT_TCP_CLOSE_WAIT,
        // The last FIN acknowledged.
        CT_TCP_LAST_ACK if !fin && f & TCP_ACK != 0 => CT_TCP_TIME_WAIT,
        s => s,
    };
    (state, flags)
}

#[inline(always)]
fn expired(e: *const CtEntry, config: &Config, now: u64) -> bool {
    let (state, last) = unsafe { ((*e).state as usize, (*e).last_seen_ns) };
    if state >= CT_TIMEOUTS {
        return true;
    }
    let timeout = config.ct_timeouts[state] as u64 * NS_PER_SEC;
    now > last + timeout
}

/// Fill `key` with the canonical key: the (address, port) pair that sorts
/// lower first. Returns whether the source is that lower side.
#[inline(always)]
fn canonical(
    key: &mut CtKey,
    family: u8,
    proto: u8,
    src: &[u8; 16],
    sport: u16,
    dst: &[u8; 16],
    dport: u16,
) -> bool {
    let src_is_lo = before(src, sport, dst, dport);
    let (lo, lo_port, hi, hi_port) = if src_is_lo {
        (src, sport, dst, dport)
    } else {
        (dst, dport, src, sport)
    };
    key.addr_lo = *lo;
    key.addr_hi = *hi;
    key.port_lo = lo_port;
    key.port_hi = hi_port;
    key.proto = proto;
    key.family = family;
    key._pad = [0; 2];
    src_is_lo
}

#[inline(always)]
fn before(a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16) -> bool {
    let (a0, a1) = halves(a);
    let (b0, b1) = halves(b);
    if a0 != b0 {
        return a0 < b0;
    }
    if a1 != b1 {
        return a1 < b1;
    }
    ap <= bp
}

/// The address as two words. Any total order does for a canonical key, so
/// native byte order is fine; whole-word loads keep the 32 bytes of a pair
/// out of registers (and the stack).
#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    // SAFETY: 16 readable bytes; read_unaligned because the arrays are
    // only byte-aligned as far as the type says.
    let w = unsafe { core::ptr::read_unaligned(a.as_ptr() as *const [u64; 2]) };
    (w[0], w[1])
}

#[inline(always)]
fn is_echo_request(v: &View) -> bool {
    (v.family == 4 && v.icmp_type == 8) || (v.family == 6 && v.icmp_type == 128)
}

#[inline(always)]
fn is_echo(v: &View) -> bool {
    is_echo_request(v)
        || (v.family == 4 && v.icmp_type == 0)
        || (v.family == 6 && v.icmp_type == 129)
}

/// Error messages that quote the packet that caused them: ICMP destination
/// unreachable, source quench, time exceeded, parameter problem (RFC 792);
/// ICMPv6 types 1-4 (RFC 4443 2.1).
#[inline(always)]
fn is_icmp_error(v: &View) -> bool {
    if v.family == 4 {
        matches!(v.icmp_type, 3 | 4 | 11 | 12)
    } else {
        v.icmp_type >= 1 && v.icmp_type <= 4
    }
}

/// Whether the packet is an ICMP error (the firewall then asks `related`
/// instead of `lookup`).
#[inline(always)]
pub fn is_error(v: &View) -> bool {
    v.l4 && v.is_icmp && is_icmp_error(v)
}

/// The state of an ICMP error: `related` when the packet it quotes (its
/// header plus at least 8 bytes of L4, which RFC 792 and RFC 4443
/// guarantee) belongs to a live connection, `invalid` otherwise.
// A BPF-to-BPF call: its own stack frame (the 512-byte limit is per call chain).
#[inline(never)]
pub fn related(ctx: &XdpContext, packet: &Packet, config: &Config, s: &mut Scratch) {
    s.ct.state = CT_STATE_INVALID;
    s.ct.create = 0;
    // SAFETY: a helper without arguments.
    s.ct.now = unsafe { bpf_ktime_get_coarse_ns() };
    if quoted(ctx, packet, s).is_none() {
        return;
    }
    let q = &s.quoted;
    let (sport, dport) = match q.proto {
        IPPROTO_TCP | IPPROTO_UDP => (q.sport, q.dport),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => (q.id, q.id),
        _ => (0, 0),
    };
    canonical(
        &mut s.ct.key,
        s.view.family,
        q.proto,
        &q.src,
        sport,
        &q.dst,
        dport,
    );
    if let Some(e) = CONNTRACK.get_ptr(&s.ct.key)
        && !expired(e, config, s.ct.now)
    {
        s.ct.state = CT_STATE_RELATED;
    }
}

/// The quoted packet's addresses, protocol and ports, read into the scratch
/// entry.
#[inline(always)]
fn quoted(ctx: &XdpContext, packet: &Packet, s: &mut Scratch) -> Option<()> {
    let inner = packet.l3.l4_off + 8;
    let q = &mut s.quoted;
    let l4 = if s.view.family == 4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, inner).ok()?;
        let vihl = unsafe { (*ip).version_ihl };
        let ihl = ((vihl & 0x0f) as usize) * 4;
        if vihl >> 4 != 4 || ihl < 20 {
            return None;
        }
        unsafe {
            q.proto = (*ip).protocol;
            set_mapped(&mut q.src, (*ip).saddr);
            set_mapped(&mut q.dst, (*ip).daddr);
        }
        inner + ihl
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, inner).ok()?;
        unsafe {
            q.proto = (*ip).nexthdr;
            q.src = (*ip).saddr;
            q.dst = (*ip).daddr;
        }
        inner + 40
    };
    let l4: *const [u8; 8] = ptr_at(ctx, l4).ok()?;
    let h = unsafe { *l4 };
    q.sport = u16::from_be_bytes([h[0], h[1]]);
    q.dport = u16::from_be_bytes([h[2], h[3]]);
    q.id = u16::from_be_bytes([h[4], h[5]]);
    Some(())
}

/// Write the IPv4-mapped form of `a` (RFC 4291 2.5.5.2) into `out`.
#[inline(always)]
pub fn set_mapped(out: &mut [u8; 16], a: [u8; 4]) {
    let mut i = 0;
    while i < 10 {
        out[i] = 0;
        i += 1;
    }
    out[10] = 0xff;
    out[11] = 0xff;
    out[12] = a[0];
    out[13] = a[1];
    out[14] = a[2];
    out[15] = a[3];
}

/// What an ICMP error quotes.
pub struct Quoted {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Echo identifier, for a quoted echo request.
    pub id: u16,
}
