//! The only module that touches aya: it owns the loaded object, attaches the
//! XDP program to interfaces, registers them in `IFACES`, and reads counters.
use std::{collections::BTreeMap, fmt, str::FromStr, sync::atomic::Ordering};

use aya::{
    Ebpf, EbpfError,
    maps::{
        Array, DevMapHash, HashMap, MapData, MapError, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        ProgramError, Xdp, XdpMode,
        links::FdLink,
        xdp::{XdpLink, XdpLinkId},
    },
};
use dataplane_common::{
    Class, Counter, DIR24_BLOCK, Dir24Block, IfaceInfo, MAX_IFACE_SLOTS, MAX_IFACES,
    MAX_NEIGHBOURS, MAX_NEXTHOPS, MAX_NH_GROUPS, MAX_ROUTES_V4, MAX_ROUTES_V6, NeighKey, Neighbour,
    NextHop, NhGroup, Reason, Route, RouteKeyV4, RouteKeyV6, VlanKey, class_index, reason_index,
};
use ipnet::IpNet;
use serde::Serialize;

use crate::{
    dir24::{Dir24, Dir24Error, Dir24Store, Dir24Usage, RouteLookup},
    fib::{Fib, FibError, Iface, MapOp},
    ifinfo::{self, IfInfoError},
};

mod fw;
mod mmap;
pub mod pin;
mod rcu;
pub use fw::{FirewallMaps, InstallStats};
use mmap::MmapArray;
use pin::PinDir;
pub use rcu::RcuBarrier;

/// The XDP object built by `build.rs` (aya-build), embedded in the binary.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpgate"));

/// Name of the main program in [`OBJECT`].
pub const MAIN_PROGRAM: &str = "xdpgate";
/// Name of the pass-only program for veth peers in [`OBJECT`].
pub const PASS_PROGRAM: &str = "xdp_pass";
/// Benchmark floor: `XDP_TX` only.
pub const FLOOR_PROGRAM: &str = "xdp_tx_floor";
/// Benchmark sink: count and drop.
pub const SINK_PROGRAM: &str = "xdp_sink";

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "loading the XDP object was refused ({0}); xdpgate needs root or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
    )]
    Permission(#[source] EbpfError),
    #[error("loading the XDP object failed: {0}")]
    Load(#[source] EbpfError),
    #[error("the XDP object has no program {0:?} (built from a different source?)")]
    MissingProgram(&'static str),
    #[error("the XDP object has no map {0:?} (built from a different source?)")]
    MissingMap(&'static str),
    #[error("verifier or kernel refused program {name}: {source}")]
    ProgramLoad {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("no interface named {0:?} in this network namespace")]
    NoSuchInterface(String),
    #[error(transparent)]
    IfInfo(#[from] IfInfoError),
    #[error(transparent)]
    Fib(#[from] FibError),
    #[error(transparent)]
    Dir24(#[from] Dir24Error),
    #[error("the program was loaded with --route-lookup lpm: no DIR-24-8 tables to switch to")]
    NoDir24,
    #[error("map PORTS: {0}")]
    Port(String),
    #[error("attaching XDP to {iface} in {mode} mode failed ({reason}); try --xdp-mode {other}")]
    Attach {
        iface: String,
        mode: AttachMode,
        other: AttachMode,
        reason: String,
    },
    #[error("{iface} is already attached")]
    AlreadyAttached { iface: String },
    #[error("{iface} is not attached")]
    NotAttached { iface: String },
    #[error("more than {max} managed interfaces", max = MAX_IFACE_SLOTS - 1)]
    TooManyInterfaces,
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("mapping map {map} into memory: {source}")]
    Mmap {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the RCU barrier map: {0}")]
    Barrier(#[source] std::io::Error),
    #[error("counting CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("detaching XDP from {iface} failed: {source}")]
    Detach {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    #[error("pinning program {name}: {source}")]
    PinProgram {
        name: &'static str,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("the XDP link of {iface} is not a bpf_link (attached through netlink); cannot pin it")]
    NotALink { iface: String },
    #[error("duplicating the descriptor of {0}: {1}")]
    Dup(&'static str, #[source] std::io::Error),
}

/// How the program is attached: in the driver (native) or in the generic
/// skb path. Native is what a router wants; skb works on any device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    #[default]
    Native,
    Skb,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Skb => XdpMode::Skb,
        }
    }

    fn other(self) -> AttachMode {
        match self {
            AttachMode::Native => AttachMode::Skb,
            AttachMode::Skb => AttachMode::Native,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

impl FromStr for AttachMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" | "driver" | "drv" => Ok(AttachMode::Native),
            "skb" | "generic" => Ok(AttachMode::Skb),
            _ => Err(format!("unknown XDP mode {s:?}: expected native or skb")),
        }
    }
}

/// One managed interface.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub name: String,
    pub ifindex: u32,
    pub slot: u32,
    pub mode: AttachMode,
}

struct Attached {
    info: Attachment,
    /// The port the program runs on (the parent of a VLAN sub-interface).
    port: u32,
    /// The link, on the first attachment to `port`.
    link: Option<PortLink>,
}

/// How the program runs on a port.
enum PortLink {
    /// Attached by this process and owned by the program: detached when the
    /// process exits (tests, benchmarks: no pin directory).
    Owned(XdpLinkId),
    /// Attached and pinned (`links/PORT`): outlives the process.
    Pinned { port: String, link: FdLink },
    /// A pinned link found at start, still running the previous daemon's
    /// program until [`Dataplane::adopt_pending`] swaps it to ours.
    Pending { port: String, link: FdLink },
}

/// Flow export's own handles on the connection table and its counters.
pub struct FlowMaps {
    pub conntrack: HashMap<MapData, dataplane_common::CtKey, dataplane_common::CtEntry>,
    pub counters:
        aya::maps::PerCpuHashMap<MapData, dataplane_common::CtKey, dataplane_common::CtCounters>,
}

/// Frames and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, c: Count) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// Counters of one interface slot, summed over CPUs, keyed by stable names.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SlotCounters {
    pub actions: BTreeMap<&'static str, Count>,
    pub reasons: BTreeMap<&'static str, Count>,
    pub classes: BTreeMap<&'static str, Count>,
}

impl SlotCounters {
    fn merge(&mut self, other: &SlotCounters) {
        for (k, v) in &other.actions {
            self.actions.entry(k).or_default().add(*v);
        }
        for (k, v) in &other.reasons {
            self.reasons.entry(k).or_default().add(*v);
        }
        for (k, v) in &other.classes {
            self.classes.entry(k).or_default().add(*v);
        }
    }

    /// Frames counted under `reason`.
    pub fn reason(&self, reason: Reason) -> Count {
        self.reasons.get(reason.name()).copied().unwrap_or_default()
    }

    /// Frames counted under `class`.
    pub fn class(&self, class: Class) -> Count {
        self.classes.get(class.name()).copied().unwrap_or_default()
    }
}

/// Counters of every managed interface, slot 0 and the total.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stats {
    pub interfaces: Vec<InterfaceStats>,
    /// Frames from interfaces the control plane did not register (slot 0).
    pub unregistered: SlotCounters,
    pub total: SlotCounters,
    /// The IPv4 route lookup in use and how full its tables are.
    pub route_lookup: RouteLookupStats,
    /// How full each forwarding map is (as `xdpgate_map_entries` and
    /// `xdpgate_map_capacity` in `/metrics`).
    pub maps: Vec<MapFill>,
}

/// Entries in one forwarding map out of its capacity.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MapFill {
    /// `routes_v4`, `routes_v6`, `nexthops`, `nh_groups`, `neighbours` or
    /// `interfaces`.
    pub name: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// Which IPv4 route lookup the program uses; for DIR-24-8, how full the
/// `TBL8` group pool is (`null` with the trie alone).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RouteLookupStats {
    pub ipv4: RouteLookup,
    /// IPv6 always uses the LPM trie.
    pub ipv6: RouteLookup,
    pub dir24: Option<Dir24Usage>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InterfaceStats {
    #[serde(flatten)]
    pub attachment: Attachment,
    pub counters: SlotCounters,
}

/// Read side of the counter maps; cheap to share (`&self` reads only).
pub struct CounterMaps {
    reasons: PerCpuArray<MapData, Counter>,
    classes: PerCpuArray<MapData, Counter>,
}

impl CounterMaps {
    fn sum(map: &PerCpuArray<MapData, Counter>, index: u32) -> Result<Count, MapError> {
        let values = map.get(&index, 0)?;
        Ok(values.iter().fold(Count::default(), |mut acc, c| {
            acc.packets += c.packets;
            acc.bytes += c.bytes;
            acc
        }))
    }

    /// Counters of one slot, summed over CPUs. Zero entries are kept so the
    /// shape of the answer never depends on the traffic seen.
    pub fn slot(&self, slot: u32) -> Result<SlotCounters, DataplaneError> {
        let mut out = SlotCounters::default();
        for reason in Reason::ALL {
            let count = Self::sum(&self.reasons, reason_index(slot, reason))
                .map_err(map_err("REASON_COUNTERS"))?;
            out.reasons.insert(reason.name(), count);
            out.actions
                .entry(reason.action().name())
                .or_default()
                .add(count);
        }
        for class in Class::ALL {
            let count = Self::sum(&self.classes, class_index(slot, class))
                .map_err(map_err("CLASS_COUNTERS"))?;
            out.classes.insert(class.name(), count);
        }
        Ok(out)
    }
}

/// The XDP program's `TBL24` and `TBL8`, written through mmap.
struct MmapStore {
    tbl24: MmapArray<Dir24Block>,
    tbl8: MmapArray<Dir24Block>,
    /// Waits out lookups that may hold a freed group's pointer.
    barrier: RcuBarrier,
}

impl Dir24Store for MmapStore {
    fn tbl24(&self, i: usize) -> u32 {
        self.tbl24.words()[i].load(Ordering::Relaxed)
    }
    fn set_tbl24(&mut self, i: usize, entry: u32) {
        // Release: a group filled before is visible before the pointer.
        self.tbl24.words()[i].store(entry, Ordering::Release);
    }
    fn tbl8(&self, g: u32, j: usize) -> u32 {
        self.tbl8.words()[g as usize * DIR24_BLOCK + j].load(Ordering::Relaxed)
    }
    fn set_tbl8(&mut self, g: u32, j: usize, entry: u32) {
        self.tbl8.words()[g as usize * DIR24_BLOCK + j].store(entry, Ordering::Relaxed);
    }
    fn groups(&self) -> u32 {
        self.tbl8.entries
    }
    fn quiesce(&mut self) -> std::io::Result<()> {
        self.barrier.wait()
    }
}

/// Typed handles of the forwarding maps; only [`Dataplane::apply`] writes them.
struct FibMaps {
    ifaces: HashMap<MapData, u32, IfaceInfo>,
    vlans: HashMap<MapData, VlanKey, u32>,
    ports: DevMapHash<MapData>,
    nexthops: Array<MapData, NextHop>,
    groups: Array<MapData, NhGroup>,
    routes_v4: LpmTrie<MapData, RouteKeyV4, Route>,
    routes_v6: LpmTrie<MapData, RouteKeyV6, Route>,
    neighbours: HashMap<MapData, NeighKey, Neighbour>,
    /// IPv4 DIR-24-8, written beside `routes_v4` (the reference, and the
    /// fallback of blocks without a `TBL8` group); `None` when loaded for
    /// the trie alone.
    dir24: Option<Dir24<MmapStore>>,
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { map, source }
}

/// A hash-map delete that treats "already gone" as done.
fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

impl FibMaps {
    fn take(ebpf: &mut Ebpf, lookup: RouteLookup) -> Result<Self, DataplaneError> {
        let dir24 = match lookup {
            RouteLookup::Dir24 => {
                let store = MmapStore {
                    tbl24: MmapArray::new(ebpf, "TBL24")?,
                    tbl8: MmapArray::new(ebpf, "TBL8")?,
                    barrier: RcuBarrier::new().map_err(DataplaneError::Barrier)?,
                };
                Some(Dir24::new(store))
            }
            RouteLookup::Lpm => None,
        };
        macro_rules! typed {
            ($name:literal) => {
                take_map(ebpf, $name)?.try_into().map_err(map_err($name))?
            };
        }
        Ok(Self {
            ifaces: typed!("IFACES"),
            vlans: typed!("VLANS"),
            ports: typed!("PORTS"),
            nexthops: typed!("NEXTHOPS"),
            groups: typed!("NH_GROUPS"),
            routes_v4: typed!("ROUTES_V4"),
            routes_v6: typed!("ROUTES_V6"),
            neighbours: typed!("NEIGHBOURS"),
            dir24,
        })
    }

    /// An IPv4 route into DIR-24-8, after the trie: a block that falls back
    /// to the trie finds the route there.
    fn set_dir24(&mut self, net: &ipnet::Ipv4Net, r: &Route) -> Result<(), DataplaneError> {
        match &mut self.dir24 {
            Some(d) => Ok(d.set(*net, *r)?),
            None => Ok(()),
        }
    }

    fn apply(&mut self, op: &MapOp) -> Result<(), DataplaneError> {
        match op {
            MapOp::SetIface(i, v) => self.ifaces.insert(i, v, 0).map_err(map_err("IFACES")),
            MapOp::DelIface(i) => ignore_missing(self.ifaces.remove(i)).map_err(map_err("IFACES")),
            MapOp::SetPort(i) => self
                .ports
                .insert(*i, *i, None, 0)
                .map_err(|e| DataplaneError::Port(e.to_string())),
            MapOp::DelPort(i) => ignore_missing(self.ports.remove(*i)).map_err(map_err("PORTS")),
            MapOp::SetVlan(k, v) => self.vlans.insert(k, v, 0).map_err(map_err("VLANS")),
            MapOp::DelVlan(k) => ignore_missing(self.vlans.remove(k)).map_err(map_err("VLANS")),
            MapOp::SetNextHop(id, nh) => self.nexthops.set(*id, nh, 0).map_err(map_err("NEXTHOPS")),
            MapOp::ClearNextHop(id) => self
                .nexthops
                .set(*id, NextHop::default(), 0)
                .map_err(map_err("NEXTHOPS")),
            MapOp::SetGroup(id, g) => self.groups.set(*id, g, 0).map_err(map_err("NH_GROUPS")),
            MapOp::ClearGroup(id) => self
                .groups
                .set(*id, NhGroup::default(), 0)
                .map_err(map_err("NH_GROUPS")),
            MapOp::SetRoute(IpNet::V4(n), r) => {
                self.routes_v4
                    .insert(&Key::new(n.prefix_len().into(), n.network().octets()), r, 0)
                    .map_err(map_err("ROUTES_V4"))?;
                self.set_dir24(n, r)
            }
            MapOp::SetRoute(IpNet::V6(n), r) => self
                .routes_v6
                .insert(&Key::new(n.prefix_len().into(), n.network().octets()), r, 0)
                .map_err(map_err("ROUTES_V6")),
            MapOp::DelRoute(IpNet::V4(n)) => {
                // DIR-24-8 first (it moves to the covering route), then the
                // trie, which a fallback block may still be reading.
                if let Some(d) = &mut self.dir24 {
                    d.remove(*n);
                }
                ignore_missing(
                    self.routes_v4
                        .remove(&Key::new(n.prefix_len().into(), n.network().octets())),
                )
                .map_err(map_err("ROUTES_V4"))
            }
            MapOp::DelRoute(IpNet::V6(n)) => ignore_missing(
                self.routes_v6
                    .remove(&Key::new(n.prefix_len().into(), n.network().octets())),
            )
            .map_err(map_err("ROUTES_V6")),
            MapOp::SetNeighbour(k, v) => self
                .neighbours
                .insert(k, v, 0)
                .map_err(map_err("NEIGHBOURS")),
            MapOp::DelNeighbour(k) => {
                ignore_missing(self.neighbours.remove(k)).map_err(map_err("NEIGHBOURS"))
            }
        }
    }
}

/// The loaded XDP object, the forwarding state and everything attached.
pub struct Dataplane {
    ebpf: Ebpf,
    maps: FibMaps,
    firewall: FirewallMaps,
    fib: Fib,
    counters: CounterMaps,
    attached: Vec<Attached>,
    pins: Option<PinDir>,
    /// Start of a pinned daemon: pinned links found are adopted (swapped
    /// by [`Dataplane::adopt_pending`]) rather than replaced.
    adopting: bool,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

/// How to load the object.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Decrement TTL / hop limit when forwarding. Off only for benchmarks
    /// that replay one frame many times (`BPF_PROG_TEST_RUN` repeat reuses
    /// the buffer, so a decremented TTL would expire after 63 runs).
    pub ttl_decrement: bool,
    /// Capacity of the firewall's bitmap pool (both generations; even).
    pub fw_bitmaps: u32,
    /// Capacity of the connection table.
    pub conntrack_max: u32,
    /// The IPv4 route lookup. With `Lpm` the DIR-24-8 tables are loaded
    /// with one element each and never written.
    pub route_lookup: RouteLookup,
    /// `TBL8` groups (1 KiB each) for DIR-24-8.
    pub tbl8_groups: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ttl_decrement: true,
            fw_bitmaps: dataplane_common::FW_DEFAULT_BITMAPS,
            conntrack_max: dataplane_common::CT_DEFAULT_MAX,
            route_lookup: RouteLookup::default(),
            tbl8_groups: dataplane_common::DIR24_DEFAULT_TBL8_GROUPS,
        }
    }
}

/// The object for a helper program (lab peer, sink): no routing, so no
/// 64 MiB DIR-24-8 table.
fn load_object() -> Result<Ebpf, DataplaneError> {
    load_object_with(LoadOptions {
        route_lookup: RouteLookup::Lpm,
        ..LoadOptions::default()
    })
}

fn load_object_with(opts: LoadOptions) -> Result<Ebpf, DataplaneError> {
    let ttl_dec: u8 = opts.ttl_decrement.into();
    let (tbl24, tbl8) = match opts.route_lookup {
        RouteLookup::Dir24 => (
            dataplane_common::DIR24_TBL24_BLOCKS,
            opts.tbl8_groups.max(1),
        ),
        RouteLookup::Lpm => (1, 1),
    };
    aya::EbpfLoader::new()
        .override_global("TTL_DEC", &ttl_dec, true)
        .map_max_entries("FW_BITMAPS", opts.fw_bitmaps.max(2) & !1)
        .map_max_entries("CONNTRACK", opts.conntrack_max.max(1))
        .map_max_entries("CT_COUNTERS", opts.conntrack_max.max(1))
        .map_max_entries("TBL24", tbl24)
        .map_max_entries("TBL8", tbl8)
        .load(OBJECT)
        .map_err(|e| {
            let denied = matches!(
                &e,
                EbpfError::MapError(MapError::CreateError { io_error, .. })
                    if io_error.raw_os_error() == Some(libc::EPERM)
            );
            if denied {
                DataplaneError::Permission(e)
            } else {
                DataplaneError::Load(e)
            }
        })
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DataplaneError::ProgramLoad { name, source })
}

/// Load (verify) one program of the object.
fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), DataplaneError> {
    xdp_program(ebpf, name)?
        .load()
        .map_err(|source| match &source {
            ProgramError::SyscallError(e) if e.io_error.raw_os_error() == Some(libc::EPERM) => {
                DataplaneError::Permission(EbpfError::ProgramError(source))
            }
            _ => DataplaneError::ProgramLoad { name, source },
        })
}

/// Pin the main program and every map under `pins`, replacing what the
/// previous daemon pinned there (its links keep its program and maps alive
/// until they are swapped). First the previous connection table is copied
/// into ours, so tracked flows survive a restart; a table whose layout
/// changed (an upgrade) is not copied, and the new one starts empty.
fn pin_object(ebpf: &mut Ebpf, pins: &PinDir) -> Result<(), DataplaneError> {
    pins.create()?;
    carry_conntrack(ebpf, &pins.map("CONNTRACK"));
    let names: Vec<String> = ebpf.maps().map(|(n, _)| n.to_owned()).collect();
    for name in names {
        // Maps of the object's data sections (".bss", ".rodata") are not
        // state; bpffs names cannot start with a dot anyway.
        if name.starts_with('.') {
            continue;
        }
        let path = pins.map(&name);
        pin::remove_if_present(&path)?;
        if let Some(map) = ebpf.map(&name) {
            map.pin(&path).map_err(|source| pin::PinError::Pin {
                what: format!("map {name}"),
                path: path.display().to_string(),
                source,
            })?;
        }
    }
    let path = pins.program();
    pin::remove_if_present(&path)?;
    xdp_program(ebpf, MAIN_PROGRAM)?
        .pin(&path)
        .map_err(|source| DataplaneError::PinProgram {
            name: MAIN_PROGRAM,
            source,
        })
}

/// Copy the pinned connection table at `old` into the object's. Best
/// effort: a missing or differently shaped table is logged and skipped.
fn carry_conntrack(ebpf: &mut Ebpf, old: &std::path::Path) {
    use dataplane_common::{CtEntry, CtKey};
    if !old.exists() {
        return;
    }
    let copied = (|| -> Result<usize, String> {
        let data = MapData::from_pin(old).map_err(|e| e.to_string())?;
        let from: HashMap<MapData, CtKey, CtEntry> =
            HashMap::try_from(aya::maps::Map::LruHashMap(data)).map_err(|e| {
                format!("its layout differs from this build's ({e}); starting empty")
            })?;
        let map = ebpf
            .map_mut("CONNTRACK")
            .ok_or_else(|| "this object has no CONNTRACK".to_owned())?;
        let mut to: HashMap<&mut MapData, CtKey, CtEntry> =
            HashMap::try_from(map).map_err(|e| e.to_string())?;
        let mut n = 0;
        for kv in from.iter() {
            let Ok((k, v)) = kv else { continue };
            if to.insert(k, v, 0).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    })();
    match copied {
        Ok(n) => tracing::info!(connections = n, "connection table carried over"),
        Err(e) => tracing::warn!("previous connection table not carried over: {e}"),
    }
}

/// Name of interface `ifindex` (pins are by name: ifindexes are reused).
fn ifname(ifindex: u32) -> Result<String, DataplaneError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(DataplaneError::NoSuchInterface(format!(
            "ifindex {ifindex}"
        )));
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// "outer: inner: innermost", for errors whose Display omits their source
/// (aya's say "`bpf_link_create` failed" and keep the errno as the source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// ifindex of `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, DataplaneError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| DataplaneError::NoSuchInterface(name.to_owned()))?;
    // SAFETY: c is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(DataplaneError::NoSuchInterface(name.to_owned())),
        i => Ok(i),
    }
}

impl Dataplane {
    /// Load the object and verify the main program; nothing is attached yet.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(LoadOptions::default())
    }

    /// [`Dataplane::load`] with options (benchmarks).
    pub fn load_with(opts: LoadOptions) -> Result<Self, DataplaneError> {
        Self::load_inner(opts, None)
    }

    /// Load, pin the program and every map under `pins`, carrying the
    /// connection table of the previous daemon over when its layout is the
    /// same, and attach by pinned links (see [`pin`]).
    pub fn load_pinned(opts: LoadOptions, pins: PinDir) -> Result<Self, DataplaneError> {
        Self::load_inner(opts, Some(pins))
    }

    fn load_inner(opts: LoadOptions, pins: Option<PinDir>) -> Result<Self, DataplaneError> {
        let mut ebpf = load_object_with(opts)?;
        load_program(&mut ebpf, MAIN_PROGRAM)?;
        if let Some(p) = &pins {
            pin_object(&mut ebpf, p)?;
        }
        let maps = FibMaps::take(&mut ebpf, opts.route_lookup)?;
        let mut firewall = FirewallMaps::take(&mut ebpf)?;
        // Timeouts must be set before the first tracked packet: an all-zero
        // CONFIG would expire every connection at once.
        firewall.set_config(&dataplane_common::Config {
            route_lookup: opts.route_lookup.config_value(),
            ..Default::default()
        })?;
        let reasons =
            PerCpuArray::try_from(take_map(&mut ebpf, "REASON_COUNTERS")?).map_err(|source| {
                DataplaneError::Map {
                    map: "REASON_COUNTERS",
                    source,
                }
            })?;
        let classes =
            PerCpuArray::try_from(take_map(&mut ebpf, "CLASS_COUNTERS")?).map_err(|source| {
                DataplaneError::Map {
                    map: "CLASS_COUNTERS",
                    source,
                }
            })?;
        Ok(Self {
            ebpf,
            maps,
            firewall,
            fib: Fib::new(),
            counters: CounterMaps { reasons, classes },
            attached: Vec::new(),
            adopting: pins.is_some(),
            pins,
        })
    }

    /// The main program, for `BPF_PROG_TEST_RUN`.
    pub fn main_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf, MAIN_PROGRAM)
    }

    /// The benchmark floor program (`XDP_TX` and nothing else), loaded on
    /// first use, for `BPF_PROG_TEST_RUN` comparisons in the same run.
    pub fn floor_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        let prog = xdp_program(&mut self.ebpf, FLOOR_PROGRAM)?;
        if prog.fd().is_err() {
            load_program(&mut self.ebpf, FLOOR_PROGRAM)?;
        }
        xdp_program(&mut self.ebpf, FLOOR_PROGRAM)
    }

    /// Take map `name` out of the object, for a module that owns it from
    /// then on (`firewall_log`'s ring buffer). Each map can be taken once.
    pub fn take_map(&mut self, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
        take_map(&mut self.ebpf, name)
    }

    pub fn counters(&self) -> &CounterMaps {
        &self.counters
    }

    /// The firewall and connection-tracking maps.
    pub fn firewall(&self) -> &FirewallMaps {
        &self.firewall
    }

    pub fn firewall_mut(&mut self) -> &mut FirewallMaps {
        &mut self.firewall
    }

    /// Handles of their own on the connection table and its per-CPU
    /// counters, for flow export.
    pub fn flow_maps(&self) -> Result<FlowMaps, DataplaneError> {
        let name = "CT_COUNTERS";
        let data = match self.ebpf.map(name) {
            Some(aya::maps::Map::PerCpuLruHashMap(d)) => d,
            _ => return Err(DataplaneError::MissingMap(name)),
        };
        let data = MapData::from_fd(fw::dup_fd(data)?).map_err(map_err(name))?;
        Ok(FlowMaps {
            conntrack: self.firewall.conntrack_reader()?,
            counters: aya::maps::Map::PerCpuLruHashMap(data)
                .try_into()
                .map_err(map_err(name))?,
        })
    }

    /// Track every connection (flow export), or only those of chains that
    /// match on connection state.
    pub fn set_track_all(&mut self, on: bool) -> Result<(), DataplaneError> {
        let mut config = self.firewall.config()?;
        if on {
            config.flags |= dataplane_common::CFG_F_TRACK_ALL;
        } else {
            config.flags &= !dataplane_common::CFG_F_TRACK_ALL;
        }
        self.firewall.set_config(&config)
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        self.attached.iter().map(|a| a.info.clone()).collect()
    }

    /// The forwarding model the maps mirror.
    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    /// Apply map operations in order (the Fib orders them safely). A
    /// DIR-24-8 error (no free `TBL8` group: the route is served by the
    /// trie) does not stop the rest; it is returned at the end.
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        let mut deferred = None;
        for op in ops {
            match self.maps.apply(op) {
                Err(DataplaneError::Dir24(e)) => deferred = deferred.or(Some(e)),
                other => other?,
            }
        }
        match deferred {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// The IPv4 route lookup packets use now (CONFIG), and the DIR-24-8
    /// tables' fill.
    pub fn route_lookup(&self) -> Result<RouteLookupStats, DataplaneError> {
        let config = self.firewall.config()?;
        let ipv4 = if config.route_lookup == RouteLookup::Dir24.config_value() {
            RouteLookup::Dir24
        } else {
            RouteLookup::Lpm
        };
        Ok(RouteLookupStats {
            ipv4,
            ipv6: RouteLookup::Lpm,
            dir24: self.maps.dir24.as_ref().map(Dir24::usage),
        })
    }

    /// Switch the IPv4 route lookup of the running program (one CONFIG
    /// write; the next packet uses it). Both backends hold every route when
    /// the program was loaded for DIR-24-8; switching to it is refused
    /// otherwise.
    pub fn set_route_lookup(&mut self, lookup: RouteLookup) -> Result<(), DataplaneError> {
        if lookup == RouteLookup::Dir24 && self.maps.dir24.is_none() {
            return Err(DataplaneError::NoDir24);
        }
        let mut config = self.firewall.config()?;
        config.route_lookup = lookup.config_value();
        self.firewall.set_config(&config)
    }

    /// What DIR-24-8 answers for `addr`, read from the program's tables
    /// (`None` when loaded for the trie alone).
    pub fn dir24_lookup(&self, addr: std::net::Ipv4Addr) -> Option<crate::dir24::Answer> {
        self.maps.dir24.as_ref().map(|d| d.lookup(addr))
    }

    /// Change the model with `f` and write the resulting operations.
    pub fn update<F>(&mut self, f: F) -> Result<(), DataplaneError>
    where
        F: FnOnce(&mut Fib) -> Result<Vec<MapOp>, FibError>,
    {
        let ops = f(&mut self.fib)?;
        self.apply(&ops)
    }

    /// Count frames arriving on `ifindex` under `slot` without routing them
    /// (no `IFACE_F_FORWARD`): a hook for test runs, which name an ingress
    /// ifindex but attach nothing. Use a slot the Fib does not hand out
    /// (high numbers; the Fib assigns from 1 up).
    pub fn register(&mut self, ifindex: u32, slot: u32) -> Result<(), DataplaneError> {
        let info = IfaceInfo {
            counter_slot: slot,
            ..Default::default()
        };
        self.maps.apply(&MapOp::SetIface(ifindex, info))
    }

    /// Manage `iface` (an interface of the calling thread's namespace) for
    /// forwarding without attaching: test runs and VLAN sub-interfaces.
    pub fn manage(&mut self, iface: Iface) -> Result<u32, DataplaneError> {
        let ifindex = iface.ifindex;
        self.update(|fib| fib.set_iface(iface))?;
        Ok(self.fib.slot(ifindex).expect("just managed"))
    }

    /// Attach to `name` in the calling thread's network namespace. The
    /// interface is registered before the program goes live, so its first
    /// frame is already counted under its own slot. A VLAN sub-interface
    /// attaches the program to its parent port (once) and registers both.
    pub fn attach(&mut self, name: &str, mode: AttachMode) -> Result<Attachment, DataplaneError> {
        if self.attached.iter().any(|a| a.info.name == name) {
            return Err(DataplaneError::AlreadyAttached {
                iface: name.to_owned(),
            });
        }
        let iface = ifinfo::read(name).map_err(|e| match e {
            IfInfoError::NoSuchInterface(n) => DataplaneError::NoSuchInterface(n),
            e => e.into(),
        })?;
        let ifindex = iface.ifindex;
        let port = iface.parent_ifindex;
        if port != ifindex && self.fib.iface(port).is_none() {
            let parent = ifinfo::read_index(port)?;
            self.manage(parent)?;
        }
        let slot = self.manage(iface)?;
        let port_attached = self.attached.iter().any(|a| a.port == port);
        let link = if port_attached {
            None
        } else {
            match self.attach_port(name, port, mode) {
                Ok(link) => Some(link),
                Err(e) => {
                    if let Ok(ops) = self.fib.del_iface(ifindex) {
                        let _ = self.apply(&ops);
                    }
                    return Err(e);
                }
            }
        };
        let info = Attachment {
            name: name.to_owned(),
            ifindex,
            slot,
            mode,
        };
        self.attached.push(Attached {
            info: info.clone(),
            port,
            link,
        });
        Ok(info)
    }

    /// Run the program on `port`: adopt the link a previous daemon pinned
    /// there (swapped later, by [`Dataplane::adopt_pending`]), or attach and
    /// pin a new one; without a pin directory, an owned link.
    fn attach_port(
        &mut self,
        name: &str,
        port: u32,
        mode: AttachMode,
    ) -> Result<PortLink, DataplaneError> {
        let attach_err = |source: ProgramError| DataplaneError::Attach {
            iface: name.to_owned(),
            mode,
            other: mode.other(),
            reason: error_chain(&source),
        };
        let Some(pins) = self.pins.clone() else {
            let id = xdp_program(&mut self.ebpf, MAIN_PROGRAM)?
                .attach_to_if_index(port, mode.xdp_mode())
                .map_err(attach_err)?;
            return Ok(PortLink::Owned(id));
        };
        let port_name = ifname(port)?;
        if self.adopting
            && let Some(link) = pins.open_link(&port_name)
        {
            return Ok(PortLink::Pending {
                port: port_name,
                link,
            });
        }
        let prog = xdp_program(&mut self.ebpf, MAIN_PROGRAM)?;
        let id = prog
            .attach_to_if_index(port, mode.xdp_mode())
            .map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let link: FdLink = link.try_into().map_err(|_| DataplaneError::NotALink {
            iface: name.to_owned(),
        })?;
        let link = pins.pin_link(&port_name, link)?;
        Ok(PortLink::Pinned {
            port: port_name,
            link,
        })
    }

    /// Swap every adopted link to this daemon's program (`BPF_LINK_UPDATE`,
    /// atomic per port), once its maps hold the kernel's state. A link that
    /// died meanwhile (its device went away and came back) is replaced by a
    /// new attachment. Returns the ports swapped.
    pub fn adopt_pending(&mut self) -> Result<Vec<String>, DataplaneError> {
        self.adopting = false;
        let mut swapped = Vec::new();
        for i in 0..self.attached.len() {
            let Some(PortLink::Pending { .. }) = &self.attached[i].link else {
                continue;
            };
            let Some(PortLink::Pending { port, link }) = self.attached[i].link.take() else {
                unreachable!()
            };
            let a = &self.attached[i];
            let (name, port_ifindex, mode) = (a.info.name.clone(), a.port, a.info.mode);
            let update = XdpLink::try_from(link)
                .map_err(|e| e.to_string())
                .and_then(|link| {
                    let prog =
                        xdp_program(&mut self.ebpf, MAIN_PROGRAM).map_err(|e| e.to_string())?;
                    let id = prog.attach_to_link(link).map_err(|e| error_chain(&e))?;
                    let link = prog.take_link(id).map_err(|e| error_chain(&e))?;
                    FdLink::try_from(link).map_err(|e| e.to_string())
                });
            let link = match update {
                Ok(link) => {
                    swapped.push(port.clone());
                    PortLink::Pinned { port, link }
                }
                Err(why) => {
                    tracing::warn!(port = %port, "pinned link not adoptable ({why}); attaching anew");
                    if let Some(p) = &self.pins {
                        p.unpin_link(&port)?;
                    }
                    self.attach_port(&name, port_ifindex, mode)?
                }
            };
            self.attached[i].link = Some(link);
        }
        Ok(swapped)
    }

    /// Stop managing without detaching: pinned links keep the program and
    /// its maps forwarding on the last state after this process exits.
    pub fn keep_attached(&mut self) -> usize {
        let n = self
            .attached
            .iter()
            .filter(|a| {
                matches!(
                    a.link,
                    Some(PortLink::Pinned { .. } | PortLink::Pending { .. })
                )
            })
            .count();
        self.attached.clear();
        n
    }

    /// Remove everything pinned (after [`Dataplane::detach_all`] on a clean
    /// stop): the program and its maps go once this process lets go.
    pub fn unpin_all(&mut self) -> Result<(), DataplaneError> {
        if let Some(p) = &self.pins {
            p.remove_all()?;
        }
        Ok(())
    }

    /// Release one port's link: pinned links are unpinned first so they
    /// detach when the fd closes.
    fn release(&mut self, iface: &str, link: PortLink) -> Result<(), DataplaneError> {
        match link {
            PortLink::Owned(id) => xdp_program(&mut self.ebpf, MAIN_PROGRAM)?
                .detach(id)
                .map_err(|source| DataplaneError::Detach {
                    iface: iface.to_owned(),
                    source,
                }),
            PortLink::Pinned { port, link } | PortLink::Pending { port, link } => {
                if let Some(p) = &self.pins {
                    p.unpin_link(&port)?;
                }
                drop(link);
                Ok(())
            }
        }
    }

    /// A configured interface that went away (its XDP link went with it):
    /// forget the attachment so the interface can be attached again if it
    /// returns. Returns its name if it was attached.
    pub fn forget(&mut self, ifindex: u32) -> Option<String> {
        let pos = self
            .attached
            .iter()
            .position(|a| a.info.ifindex == ifindex)?;
        let a = self.attached.remove(pos);
        if let Some(link) = a.link {
            // The kernel already dropped the link with the device; this only
            // releases our handle (and a pin that now names a dead link).
            let _ = self.release(&a.info.name, link);
        }
        Some(a.info.name)
    }

    /// Detach XDP from `name` on request: its frames go to the kernel
    /// again. The interface stays in the forwarding model (XDP still
    /// forwards out of it, and the kernel sync's view of it stays whole);
    /// attaching again reuses its counter slot.
    pub fn detach(&mut self, name: &str) -> Result<Attachment, DataplaneError> {
        let pos = self
            .attached
            .iter()
            .position(|a| a.info.name == name)
            .ok_or_else(|| DataplaneError::NotAttached {
                iface: name.to_owned(),
            })?;
        let a = self.attached.remove(pos);
        if let Some(link) = a.link {
            // A VLAN sub-interface on the same port still needs the program.
            match self.attached.iter_mut().find(|o| o.port == a.port) {
                Some(other) => other.link = Some(link),
                None => self.release(&a.info.name, link)?,
            }
        }
        Ok(a.info)
    }

    /// Whether an attachment named `name` exists.
    pub fn is_attached(&self, name: &str) -> bool {
        self.attached.iter().any(|a| a.info.name == name)
    }

    /// Detach from every interface. Keeps going past failures and returns
    /// them all, so one stuck interface does not leave the others attached.
    pub fn detach_all(&mut self) -> Vec<DataplaneError> {
        let mut errors = Vec::new();
        for a in std::mem::take(&mut self.attached) {
            let Some(link) = a.link else { continue };
            if let Err(e) = self.release(&a.info.name, link) {
                errors.push(e);
            }
        }
        // Sub-interfaces first: a VLAN's parent must outlive it in the Fib.
        let mut managed: Vec<(u32, u32)> = self
            .fib
            .ifaces()
            .map(|(i, _)| (i.vlan_id, i.ifindex))
            .collect();
        managed.sort_by_key(|m| std::cmp::Reverse(m.0));
        for (_, ifindex) in managed {
            if let Err(e) = self.update(|fib| fib.del_iface(ifindex)) {
                errors.push(e);
            }
        }
        errors
    }

    /// Counters of every managed interface, slot 0 and the sum of all.
    pub fn stats(&self) -> Result<Stats, DataplaneError> {
        let mut total = SlotCounters::default();
        let mut interfaces = Vec::new();
        for a in &self.attached {
            let counters = self.counters.slot(a.info.slot)?;
            total.merge(&counters);
            interfaces.push(InterfaceStats {
                attachment: a.info.clone(),
                counters,
            });
        }
        let unregistered = self.counters.slot(0)?;
        total.merge(&unregistered);
        Ok(Stats {
            interfaces,
            unregistered,
            total,
            route_lookup: self.route_lookup()?,
            maps: self.map_fill(),
        })
    }

    /// How full each forwarding map is, from the Fib's view of them (what
    /// it wrote), so no map is walked.
    pub fn map_fill(&self) -> Vec<MapFill> {
        let fib = &self.fib;
        let (v4, v6) = fib.route_count();
        [
            ("routes_v4", v4.into(), MAX_ROUTES_V4.into()),
            ("routes_v6", v6.into(), MAX_ROUTES_V6.into()),
            ("nexthops", fib.nexthop_count() as u64, MAX_NEXTHOPS.into()),
            ("nh_groups", fib.group_count() as u64, MAX_NH_GROUPS.into()),
            (
                "neighbours",
                fib.neighbours().count() as u64,
                MAX_NEIGHBOURS.into(),
            ),
            ("interfaces", fib.ifaces().count() as u64, MAX_IFACES.into()),
        ]
        .into_iter()
        .map(|(name, entries, capacity)| MapFill {
            name,
            entries,
            capacity,
        })
        .collect()
    }
}

fn native_attach_error(iface: &str, source: &ProgramError) -> DataplaneError {
    DataplaneError::Attach {
        iface: iface.to_owned(),
        mode: AttachMode::Native,
        other: AttachMode::Skb,
        reason: error_chain(source),
    }
}

/// Attach a helper program (lab peer, benchmark sink) in native mode.
fn attach_native(prog: &mut Xdp, iface: &str, ifindex: u32) -> Result<XdpLinkId, DataplaneError> {
    prog.attach_to_if_index(ifindex, XdpMode::Driver)
        .map_err(|source| native_attach_error(iface, &source))
}

/// A loaded pass-only program, for the far end of veths the lab redirects
/// into. Its links are pinned by the caller so they outlive the process.
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    pub fn load() -> Result<Self, DataplaneError> {
        let mut ebpf = load_object()?;
        load_program(&mut ebpf, PASS_PROGRAM)?;
        Ok(Self { ebpf })
    }

    /// Attach to `ifindex` and pin the link at `pin`, so it stays after this
    /// process exits; removing the pin (or the interface) detaches it.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        ifindex: u32,
        pin: &std::path::Path,
    ) -> Result<(), PassAttachError> {
        let prog = xdp_program(&mut self.ebpf, PASS_PROGRAM)?;
        let id = attach_native(prog, iface, ifindex)?;
        let link = prog
            .take_link(id)
            .map_err(|source| native_attach_error(iface, &source))?;
        let fd_link: aya::programs::links::FdLink = link
            .try_into()
            .map_err(|_| PassAttachError::NotALink(iface.to_owned()))?;
        fd_link.pin(pin).map_err(|source| PassAttachError::Pin {
            path: pin.display().to_string(),
            source,
        })?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PassAttachError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("the kernel attached {0} through netlink, not a bpf_link; cannot pin it")]
    NotALink(String),
    #[error("pinning the link at {path} failed (is bpffs mounted at /sys/fs/bpf?): {source}")]
    Pin {
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
}

/// A counting, dropping receiver for benchmarks, attached (not pinned) to an
/// interface of the calling thread's namespace; detached on drop.
pub struct Sink {
    ebpf: Ebpf,
    counter: PerCpuArray<MapData, Counter>,
}

impl Sink {
    /// Load the sink and attach it natively to `ifindex`.
    pub fn attach(iface: &str, ifindex: u32) -> Result<Self, DataplaneError> {
        let mut ebpf = load_object()?;
        load_program(&mut ebpf, SINK_PROGRAM)?;
        attach_native(xdp_program(&mut ebpf, SINK_PROGRAM)?, iface, ifindex)?;
        let counter = PerCpuArray::try_from(take_map(&mut ebpf, "SINK_COUNTER")?)
            .map_err(map_err("SINK_COUNTER"))?;
        Ok(Self { ebpf, counter })
    }

    /// Frames and bytes dropped so far, summed over CPUs.
    pub fn count(&self) -> Result<Count, DataplaneError> {
        CounterMaps::sum(&self.counter, 0).map_err(map_err("SINK_COUNTER"))
    }

    /// The loaded object (keeps the link alive while `self` lives).
    pub fn object(&self) -> &Ebpf {
        &self.ebpf
    }
}
