//! Every map the program uses. Capacities live in `dataplane-common`.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{
        Array, DevMapHash, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf,
    },
};
use dataplane_common::{
    CLASS_COUNTER_ENTRIES, CT_DEFAULT_MAX, ChainInfo, Config, Counter, CtCounters, CtEntry, CtKey,
    DIR24_DEFAULT_TBL8_GROUPS, DIR24_TBL24_BLOCKS, Dir24Block, FW_DEFAULT_BITMAPS,
    FW_FIELD_ENTRIES, FW_LOG_BYTES, FW_LOG_STATS as FW_LOG_STAT_ENTRIES, FW_MAX_IFACE_KEYS,
    FW_MAX_PREFIXES_V4, FW_MAX_PREFIXES_V6, FW_MAX_RULES, FW_RULE_COUNTER_ENTRIES, FW_TABLES,
    FwIfaceKey, FwLogConfig, FwPrefixV4, FwPrefixV6, FwRule, IfaceInfo, MAX_IFACES, MAX_NEIGHBOURS,
    MAX_NEXTHOPS, MAX_NH_GROUPS, MAX_ROUTES_V4, MAX_ROUTES_V6, MAX_VLANS, NeighKey, Neighbour,
    NextHop, NhGroup, REASON_COUNTER_ENTRIES, Route, RouteKeyV4, RouteKeyV6, RuleBitmap, VlanKey,
};

/// ifindex (u32) -> IfaceInfo: every managed interface, VLAN sub-interfaces
/// included. Written by the control plane (fib).
#[map]
pub static IFACES: HashMap<u32, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);

/// (port ifindex, VLAN id) -> sub-interface ifindex. Written by the control plane.
#[map]
pub static VLANS: HashMap<VlanKey, u32> = HashMap::with_max_entries(MAX_VLANS, 0);

/// port ifindex -> port ifindex: the redirect table of `bpf_redirect_map`.
/// Written by the control plane for every managed port.
#[map]
pub static PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_IFACES, 0);

/// IPv4 destination prefix (network byte order) -> Route. Written by the
/// control plane. aya-ebpf adds BPF_F_NO_PREALLOC, which LPM tries require.
#[map]
pub static ROUTES_V4: LpmTrie<RouteKeyV4, Route> = LpmTrie::with_max_entries(MAX_ROUTES_V4, 0);

/// IPv6 destination prefix -> Route. Written by the control plane.
#[map]
pub static ROUTES_V6: LpmTrie<RouteKeyV6, Route> = LpmTrie::with_max_entries(MAX_ROUTES_V6, 0);

/// next-hop id -> NextHop (0 = unused). Written by the control plane.
#[map]
pub static NEXTHOPS: Array<NextHop> = Array::with_max_entries(MAX_NEXTHOPS, 0);

/// group id -> NhGroup (0 = unused). Written by the control plane.
#[map]
pub static NH_GROUPS: Array<NhGroup> = Array::with_max_entries(MAX_NH_GROUPS, 0);

/// (ifindex, address) -> neighbour MAC. Written by the control plane.
#[map]
pub static NEIGHBOURS: HashMap<NeighKey, Neighbour> = HashMap::with_max_entries(MAX_NEIGHBOURS, 0);

/// slot * Reason::COUNT + reason -> Counter, per CPU. Written here, read and
/// summed by the control plane.
#[map]
pub static REASON_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(REASON_COUNTER_ENTRIES, 0);

/// slot * Class::COUNT + class -> Counter, per CPU: the traffic mix.
#[map]
pub static CLASS_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(CLASS_COUNTER_ENTRIES, 0);

/// Frames and bytes `xdp_sink` dropped, per CPU (index 0). Benchmarks only.
#[map]
pub static SINK_COUNTER: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

/// Runtime switches (one entry): the active firewall generation, flags,
/// connection timeouts. Written by the control plane.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Firewall: the pool of rule bitmaps, indexed by bitmap id. Written by the
/// control plane through mmap (BPF_F_MMAPABLE), a commit being a memcpy.
/// The daemon may load it with another size (`--fw-bitmaps`).
#[map]
pub static FW_BITMAPS: Array<RuleBitmap> =
    Array::with_max_entries(FW_DEFAULT_BITMAPS, BPF_F_MMAPABLE);

/// Firewall: what each (generation, chain) holds.
#[map]
pub static FW_CHAIN_INFO: Array<ChainInfo> = Array::with_max_entries(FW_TABLES, 0);

/// Firewall: action and database id of the rule at each position.
#[map]
pub static FW_RULES: Array<FwRule> =
    Array::with_max_entries(FW_TABLES * FW_MAX_RULES, BPF_F_MMAPABLE);

/// Firewall: bitmap ids of the dense fields (ports, ICMP type/code,
/// protocol, TCP flags, connection state); layout in dataplane-common.
#[map]
pub static FW_FIELDS: Array<u32> = Array::with_max_entries(FW_FIELD_ENTRIES, BPF_F_MMAPABLE);

/// Firewall: bitmap ids of the interfaces rules name.
#[map]
pub static FW_IFACES: HashMap<FwIfaceKey, u32> = HashMap::with_max_entries(FW_MAX_IFACE_KEYS, 0);

/// Firewall: bitmap ids of source / destination prefixes (set members
/// included), per table and side.
#[map]
pub static FW_PREFIXES_V4: LpmTrie<FwPrefixV4, u32> =
    LpmTrie::with_max_entries(FW_MAX_PREFIXES_V4, 0);
#[map]
pub static FW_PREFIXES_V6: LpmTrie<FwPrefixV6, u32> =
    LpmTrie::with_max_entries(FW_MAX_PREFIXES_V6, 0);

/// Firewall: packets and bytes per rule position and chain policy, per CPU.
#[map]
pub static FW_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(FW_RULE_COUNTER_ENTRIES, 0);

/// Firewall drop log: FwLogRecord of each sampled drop or reject by a rule
/// with FW_RULE_F_LOG. Written here, read by the control plane
/// (`firewall_log`).
#[map]
pub static FW_LOG: RingBuf = RingBuf::with_byte_size(FW_LOG_BYTES, 0);

/// Drop log sampling (one entry). Written by the control plane.
#[map]
pub static FW_LOG_CONFIG: Array<FwLogConfig> = Array::with_max_entries(1, 0);

/// Drop log counters (`FW_LOG_STAT_*` -> u64), per CPU: records written,
/// lost to a full ring buffer, left out by sampling. Read by the control
/// plane.
#[map]
pub static FW_LOG_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FW_LOG_STAT_ENTRIES, 0);

/// Connection tracking: canonical 5-tuple -> state. LRU, so a full table
/// evicts the least recently used flow rather than refusing new ones. The
/// daemon may load it with another size (`--conntrack-max`).
#[map]
pub static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::with_max_entries(CT_DEFAULT_MAX, 0);

/// Packets, bytes and TCP flags of each tracked connection, per CPU (a
/// per-packet write to a shared entry would bounce its cache line between
/// CPUs). Same key and size as `CONNTRACK`; read by flow export.
#[map]
pub static CT_COUNTERS: LruPerCpuHashMap<CtKey, CtCounters> =
    LruPerCpuHashMap::with_max_entries(CT_DEFAULT_MAX, 0);

/// Per-CPU working space of the firewall stage (one entry). Not shared
/// with userspace.
#[map]
pub static SCRATCH: PerCpuArray<crate::firewall::Scratch> = PerCpuArray::with_max_entries(1, 0);

/// IPv4 DIR-24-8, first level: element `a >> 16` holds the entries of the
/// 256 /24 blocks of that /16 (encoding in dataplane-common `dir24.rs`).
/// Written by the control plane through mmap (BPF_F_MMAPABLE), one 32-bit
/// store per entry. Loaded with one element when the trie is the backend.
#[map]
pub static TBL24: Array<Dir24Block> = Array::with_max_entries(DIR24_TBL24_BLOCKS, BPF_F_MMAPABLE);

/// IPv4 DIR-24-8, second level: group id -> the entries of the 256
/// addresses of one /24 block holding prefixes longer than /24. Written by
/// the control plane through mmap; the daemon may load it with another
/// number of groups (`--tbl8-groups`).
#[map]
pub static TBL8: Array<Dir24Block> =
    Array::with_max_entries(DIR24_DEFAULT_TBL8_GROUPS, BPF_F_MMAPABLE);
