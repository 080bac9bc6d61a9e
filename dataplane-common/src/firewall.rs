//! Firewall and connection-tracking map layouts.
//!
//! Classification follows the linear bit-vector search of bpf-iptables
//! (Miano et al., SIGCOMM CCR 2019) and Polycube's pcn-firewall: every match
//! field maps a packet's value to a *bitmap id*; the ids index one pool of
//! [`RuleBitmap`]s (deduplicated by the compiler); the program ANDs the
//! bitmaps and the lowest set bit is the winning rule (rules are numbered in
//! position order). Cost grows with the number of 64-rule words, not rules.
//!
//! Everything the compiler writes exists twice, once per *generation*; the
//! program reads [`Config::fw_generation`] once per packet and looks up only
//! that generation, so a commit (fill the inactive generation, flip the
//! index) is atomic for every packet.

/// Rules per chain (one bit each).
pub const FW_MAX_RULES: u32 = 4096;
/// 64-bit words in a [`RuleBitmap`].
pub const FW_WORDS: usize = (FW_MAX_RULES / 64) as usize;
/// Chains: forward (routed through the box) and input (for the box itself).
pub const FW_CHAINS: u32 = 2;
pub const CHAIN_FORWARD: u32 = 0;
pub const CHAIN_INPUT: u32 = 1;
/// Rulesets held at once: the active one and the one being written.
pub const FW_GENERATIONS: u32 = 2;
/// (generation, chain) pairs: the index of [`ChainInfo`].
pub const FW_TABLES: u32 = FW_GENERATIONS * FW_CHAINS;

/// Default capacity of the bitmap pool, both generations together; the
/// daemon can load the program with another (`--fw-bitmaps`). Generation g
/// owns ids `[g * n / 2, (g + 1) * n / 2)`.
pub const FW_DEFAULT_BITMAPS: u32 = 32768;

/// Rule verdicts ([`FwRule::action`] and [`ChainInfo::policy`]).
pub const FW_ACCEPT: u32 = 0;
pub const FW_DROP: u32 = 1;
/// TCP RST, or ICMP / ICMPv6 port unreachable, sent back with `XDP_TX`.
pub const FW_REJECT: u32 = 2;

/// One bit per rule of a chain, rule `i` at word `i / 64`, bit `i % 64`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RuleBitmap {
    pub words: [u64; FW_WORDS],
}

/// What a (generation, chain) holds. Index: `generation * FW_CHAINS + chain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainInfo {
    /// Number of rules; 0 means the policy decides every packet.
    pub rules: u32,
    /// Words of the bitmaps in use: `ceil(rules / 64)`.
    pub words: u32,
    /// FW_ACCEPT, FW_DROP or FW_REJECT for packets no rule matches.
    pub policy: u32,
    /// CHAIN_F_* flags.
    pub flags: u32,
    /// Bitmap ids for packets whose ingress / egress interface no rule names.
    pub any_iface_in: u32,
    pub any_iface_out: u32,
    /// Bitmap ids for packets without the field (ports only on TCP/UDP,
    /// flags only on TCP, type/code only on ICMP): the rules that do not
    /// match on it.
    pub no_sport: u32,
    pub no_dport: u32,
    pub no_tcp_flags: u32,
    pub no_icmp: u32,
}

/// Some rule of the chain matches on connection state: the program tracks
/// connections for it.
pub const CHAIN_F_CONNTRACK: u32 = 1;

/// What the winning rule does. Index: `table * FW_MAX_RULES + position`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwRule {
    pub action: u32,
    /// The rule's id in the database, carried into connection entries.
    pub id: u32,
    /// `FW_RULE_F_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Packets the rule drops or rejects are logged ([`FwLogRecord`] into
/// `FW_LOG`, sampled by [`FwLogConfig::sample`]). Accepts are never logged.
pub const FW_RULE_F_LOG: u32 = 1;

/// Byte size of the `FW_LOG` ring buffer (a power-of-2 multiple of the page
/// size, as kernel/bpf/ringbuf.c requires): about 3,600 records (64
/// bytes each plus the kernel's 8-byte header) for the reader to catch up.
pub const FW_LOG_BYTES: u32 = 256 * 1024;

/// Value of the one-entry `FW_LOG_CONFIG` array. Written by the control
/// plane (`firewall_log`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwLogConfig {
    /// Log one packet in `sample` (chosen with `bpf_get_prandom_u32`); 0
    /// and 1 log every packet.
    pub sample: u32,
}

/// Indices of the `FW_LOG_STATS` per-CPU array (`u64` each).
/// Records written into `FW_LOG`.
pub const FW_LOG_STAT_WRITTEN: u32 = 0;
/// Records lost: the ring buffer was full (the reader is behind).
pub const FW_LOG_STAT_LOST: u32 = 1;
/// Packets of logging rules left out by sampling.
pub const FW_LOG_STAT_SAMPLED_OUT: u32 = 2;
pub const FW_LOG_STATS: u32 = 3;

/// One logged drop or reject, as the program saw the packet before the
/// verdict (a reject's reply is built afterwards).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwLogRecord {
    /// Database id of the rule.
    pub rule_id: u32,
    /// Ingress interface, and the egress one the route chose (0: the box
    /// itself, the input chain).
    pub ifindex_in: u32,
    pub ifindex_out: u32,
    /// Frame length as XDP saw it.
    pub len: u32,
    /// CHAIN_FORWARD or CHAIN_INPUT.
    pub chain: u8,
    /// FW_DROP or FW_REJECT.
    pub action: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol (the last header's for IPv6 with extension headers).
    pub proto: u8,
    /// IPv4-mapped for IPv4 (see [`crate::ipv4_mapped`]).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Valid with FW_LOG_F_PORTS.
    pub sport: u16,
    pub dport: u16,
    /// Valid with FW_LOG_F_ICMP.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Valid with FW_LOG_F_TCP.
    pub tcp_flags: u8,
    /// `FW_LOG_F_*` bits.
    pub flags: u8,
    pub _pad: [u8; 4],
}

/// [`FwLogRecord::flags`]: the packet has TCP/UDP ports.
pub const FW_LOG_F_PORTS: u8 = 1;
/// ICMP (IPv4) or ICMPv6 type and code.
pub const FW_LOG_F_ICMP: u8 = 2;
/// TCP: the flags byte.
pub const FW_LOG_F_TCP: u8 = 4;

/// Per-rule counters, per CPU: `table * FW_COUNTERS_PER_TABLE + position`,
/// with the policy at position [`FW_MAX_RULES`].
pub const FW_COUNTERS_PER_TABLE: u32 = FW_MAX_RULES + 1;
pub const FW_RULE_COUNTER_ENTRIES: u32 = FW_TABLES * FW_COUNTERS_PER_TABLE;

/// Key of the interface field: misses mean "no rule names this interface".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FwIfaceKey {
    /// `generation * FW_CHAINS + chain`.
    pub table: u8,
    /// FW_DIR_IN or FW_DIR_OUT.
    pub dir: u8,
    pub _pad: [u8; 2],
    pub ifindex: u32,
}
pub const FW_DIR_IN: u8 = 0;
pub const FW_DIR_OUT: u8 = 1;
pub const FW_MAX_IFACE_KEYS: u32 = 4096;

/// The dense fields share one array of bitmap ids, laid out per table:
/// `table * FIELD_STRIDE + FIELD_<name> + value`.
pub const FIELD_SPORT: u32 = 0;
pub const FIELD_DPORT: u32 = 1 << 16;
/// ICMP (IPv4): `type << 8 | code`.
pub const FIELD_ICMP4: u32 = 2 << 16;
/// ICMPv6: `type << 8 | code`.
pub const FIELD_ICMP6: u32 = 3 << 16;
pub const FIELD_PROTO: u32 = 4 << 16;
pub const FIELD_TCP_FLAGS: u32 = FIELD_PROTO + 256;
/// Connection state, `CT_STATE_*`.
pub const FIELD_CT_STATE: u32 = FIELD_TCP_FLAGS + 256;
pub const FIELD_STRIDE: u32 = FIELD_CT_STATE + 8;
pub const FW_FIELD_ENTRIES: u32 = FW_TABLES * FIELD_STRIDE;

/// Prefix tries: the key data starts with one byte `table * 2 + side`
/// (side 0 = source, 1 = destination), then the address, so one trie holds
/// every table and both sides; prefix length counts the leading byte. Each
/// (table, side) has a default entry of length 8 (the leading byte only).
pub const FW_SIDE_SRC: u8 = 0;
pub const FW_SIDE_DST: u8 = 1;
/// LPM key data for IPv4: tag, address, padding (zero).
pub type FwPrefixV4 = [u8; 8];
/// LPM key data for IPv6: tag, address, padding (zero).
pub type FwPrefixV6 = [u8; 20];
/// Entries: a 100k-prefix set used by a rule in both generations, with room.
pub const FW_MAX_PREFIXES_V4: u32 = 1 << 19;
pub const FW_MAX_PREFIXES_V6: u32 = 1 << 18;

#[inline(always)]
pub const fn fw_prefix_tag(table: u32, side: u8) -> u8 {
    (table * 2) as u8 + side
}

/// Connection state as the rules see it (nf_conntrack's ctstate names).
pub const CT_STATE_NEW: u32 = 0;
pub const CT_STATE_ESTABLISHED: u32 = 1;
pub const CT_STATE_RELATED: u32 = 2;
pub const CT_STATE_INVALID: u32 = 3;
/// Not tracked: fragments and packets with IPv4 options or IPv6 extension
/// headers (no reliable L4 header), and every packet of a chain whose rules
/// never look at state.
pub const CT_STATE_UNTRACKED: u32 = 4;
pub const CT_STATE_COUNT: u32 = 5;

/// Runtime switches, one entry, read once per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The generation packets are classified with (0 or 1).
    pub fw_generation: u32,
    /// CFG_F_* flags.
    pub flags: u32,
    /// Idle timeout per `CT_*` protocol state, seconds.
    pub ct_timeouts: [u32; CT_TIMEOUTS],
    /// IPv4 route lookup backend: `ROUTE_LOOKUP_LPM` or
    /// `ROUTE_LOOKUP_DIR24` (see `dir24.rs`).
    pub route_lookup: u32,
}

/// Track every connection, not only those of chains that match on state
/// (flow export needs them all).
pub const CFG_F_TRACK_ALL: u32 = 1;

/// Canonical connection key: the (address, port) pair that sorts lower comes
/// first, so both directions of a connection find one entry. IPv4 addresses
/// are IPv4-mapped. ICMP echo uses the identifier as both ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub addr_lo: [u8; 16],
    pub addr_hi: [u8; 16],
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// A tracked connection. Written when created and on state changes; the
/// last-seen time at most once a second per flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// `CT_*` protocol state.
    pub state: u8,
    /// `CT_F_*` flags.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Where the first packet came in and went out (0: the box itself).
    pub ifindex_orig: u32,
    pub ifindex_out: u32,
    /// Database id of the rule that accepted the first packet (0: policy).
    pub rule: u32,
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) of the first and
    /// latest packet.
    pub created_ns: u64,
    pub last_seen_ns: u64,
    /// Only in the upgrade test's second build (feature `layout-test`).
    #[cfg(feature = "layout-test")]
    pub layout_test: u64,
}

/// Per-connection traffic, per CPU (`CT_COUNTERS`, an LRU per-CPU hash under
/// the same key as `CONNTRACK`): index 0 is the originator's direction, 1
/// the responder's. Written on every accepted tracked packet, which is why
/// it is per CPU and apart from the shared entry. Flow export sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCounters {
    pub packets: [u64; 2],
    /// IP-layer bytes (IPFIX octetDeltaCount: from the IP header on).
    pub bytes: [u64; 2],
    /// TCP flags seen, OR-ed (IPFIX tcpControlBits).
    pub tcp_flags: [u8; 2],
    pub _pad: [u8; 6],
}

/// The originator is the `lo` side of the key.
pub const CT_F_ORIG_IS_LO: u8 = 1;
/// A packet went in the reply direction.
pub const CT_F_SEEN_REPLY: u8 = 2;
/// The originator / responder sent a FIN.
pub const CT_F_FIN_ORIG: u8 = 4;
pub const CT_F_FIN_REPLY: u8 = 8;

/// Protocol states (the nf_conntrack TCP states, and UDP/ICMP/other).
pub const CT_TCP_SYN_SENT: u8 = 0;
pub const CT_TCP_SYN_RECV: u8 = 1;
pub const CT_TCP_ESTABLISHED: u8 = 2;
pub const CT_TCP_FIN_WAIT: u8 = 3;
pub const CT_TCP_CLOSE_WAIT: u8 = 4;
pub const CT_TCP_LAST_ACK: u8 = 5;
pub const CT_TCP_TIME_WAIT: u8 = 6;
pub const CT_TCP_CLOSE: u8 = 7;
pub const CT_UDP_UNREPLIED: u8 = 8;
pub const CT_UDP_REPLIED: u8 = 9;
pub const CT_ICMP: u8 = 10;
pub const CT_OTHER_UNREPLIED: u8 = 11;
pub const CT_OTHER_REPLIED: u8 = 12;
pub const CT_TIMEOUTS: usize = 13;

/// Names of the protocol states, as `conntrack -L` prints them.
pub const CT_STATE_NAMES: [&str; CT_TIMEOUTS] = [
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "UNREPLIED",
    "REPLIED",
    "ECHO",
    "UNREPLIED",
    "REPLIED",
];

/// nf_conntrack's default timeouts, seconds (net/netfilter/
/// nf_conntrack_proto_tcp.c tcp_timeouts[], nf_conntrack_proto_udp.c,
/// nf_conntrack_proto_icmp.c, nf_conntrack_proto_generic.c).
pub const CT_DEFAULT_TIMEOUTS: [u32; CT_TIMEOUTS] = [
    120,     // SYN_SENT
    60,      // SYN_RECV
    432_000, // ESTABLISHED (5 days)
    120,     // FIN_WAIT
    60,      // CLOSE_WAIT
    30,      // LAST_ACK
    120,     // TIME_WAIT
    10,      // CLOSE
    30,      // UDP unreplied (nf_conntrack_udp_timeout)
    120,     // UDP replied (nf_conntrack_udp_timeout_stream)
    30,      // ICMP (nf_conntrack_icmp_timeout)
    600,     // other protocols (nf_conntrack_generic_timeout)
    600,
];

/// Default capacity of the connection table (nf_conntrack_max's order on
/// a small box); the daemon can load the program with another.
pub const CT_DEFAULT_MAX: u32 = 262_144;

impl Default for Config {
    fn default() -> Self {
        Config {
            fw_generation: 0,
            flags: 0,
            ct_timeouts: CT_DEFAULT_TIMEOUTS,
            route_lookup: crate::ROUTE_LOOKUP_LPM,
        }
    }
}
