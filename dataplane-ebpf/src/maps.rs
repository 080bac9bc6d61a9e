//! Every map the program uses. Capacities live in `dataplane-common`.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use dataplane_common::{
    CLASS_COUNTER_ENTRIES, Counter, IfaceInfo, MAX_IFACES, REASON_COUNTER_ENTRIES,
};

/// ifindex (u32) -> IfaceInfo. Written by the control plane on attach.
#[map]
pub static IFACES: HashMap<u32, IfaceInfo> = HashMap::with_max_entries(MAX_IFACES, 0);

/// slot * Reason::COUNT + reason -> Counter, per CPU. Written here, read and
/// summed by the control plane.
#[map]
pub static REASON_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(REASON_COUNTER_ENTRIES, 0);

/// slot * Class::COUNT + class -> Counter, per CPU: the traffic mix.
#[map]
pub static CLASS_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(CLASS_COUNTER_ENTRIES, 0);
