//! Every map the program uses. Capacities live in `dataplane-common`.
use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, PerCpuArray},
};
use dataplane_common::{
    CLASS_COUNTER_ENTRIES, Counter, IfaceInfo, MAX_IFACES, MAX_NEIGHBOURS, MAX_NEXTHOPS,
    MAX_NH_GROUPS, MAX_ROUTES_V4, MAX_ROUTES_V6, MAX_VLANS, NeighKey, Neighbour, NextHop, NhGroup,
    REASON_COUNTER_ENTRIES, Route, RouteKeyV4, RouteKeyV6, VlanKey,
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
