//! The only module that touches aya: it owns the loaded object, attaches the
//! XDP program to interfaces, registers them in `IFACES`, and reads counters.
use std::{collections::BTreeMap, fmt, str::FromStr};

use aya::{
    Ebpf, EbpfError,
    maps::{
        Array, DevMapHash, HashMap, MapData, MapError, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use dataplane_common::{
    Class, Counter, IfaceInfo, MAX_IFACE_SLOTS, NeighKey, Neighbour, NextHop, NhGroup, Reason,
    Route, RouteKeyV4, RouteKeyV6, VlanKey, class_index, reason_index,
};
use ipnet::IpNet;
use serde::Serialize;

use crate::{
    fib::{Fib, FibError, Iface, MapOp},
    ifinfo::{self, IfInfoError},
};

mod fw;
pub use fw::{FirewallMaps, InstallStats};

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
    #[error("counting CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("detaching XDP from {iface} failed: {source}")]
    Detach {
        iface: String,
        #[source]
        source: ProgramError,
    },
}

/// How the program is attached: in the driver (native) or in the generic
/// skb path. Native is what a router wants; skb works on any device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
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
#[derive(Debug, Clone, Serialize)]
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
    link: Option<XdpLinkId>,
}

/// Frames and bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub interfaces: Vec<InterfaceStats>,
    /// Frames from interfaces the control plane did not register (slot 0).
    pub unregistered: SlotCounters,
    pub total: SlotCounters,
}

#[derive(Debug, Clone, Serialize)]
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
    fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
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
        })
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
            MapOp::SetRoute(IpNet::V4(n), r) => self
                .routes_v4
                .insert(&Key::new(n.prefix_len().into(), n.network().octets()), r, 0)
                .map_err(map_err("ROUTES_V4")),
            MapOp::SetRoute(IpNet::V6(n), r) => self
                .routes_v6
                .insert(&Key::new(n.prefix_len().into(), n.network().octets()), r, 0)
                .map_err(map_err("ROUTES_V6")),
            MapOp::DelRoute(IpNet::V4(n)) => ignore_missing(
                self.routes_v4
                    .remove(&Key::new(n.prefix_len().into(), n.network().octets())),
            )
            .map_err(map_err("ROUTES_V4")),
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
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ttl_decrement: true,
            fw_bitmaps: dataplane_common::FW_DEFAULT_BITMAPS,
            conntrack_max: dataplane_common::CT_DEFAULT_MAX,
        }
    }
}

fn load_object() -> Result<Ebpf, DataplaneError> {
    load_object_with(LoadOptions::default())
}

fn load_object_with(opts: LoadOptions) -> Result<Ebpf, DataplaneError> {
    let ttl_dec: u8 = opts.ttl_decrement.into();
    aya::EbpfLoader::new()
        .override_global("TTL_DEC", &ttl_dec, true)
        .map_max_entries("FW_BITMAPS", opts.fw_bitmaps.max(2) & !1)
        .map_max_entries("CONNTRACK", opts.conntrack_max.max(1))
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
        let mut ebpf = load_object_with(opts)?;
        load_program(&mut ebpf, MAIN_PROGRAM)?;
        let maps = FibMaps::take(&mut ebpf)?;
        let mut firewall = FirewallMaps::take(&mut ebpf)?;
        // Timeouts must be set before the first tracked packet: an all-zero
        // CONFIG would expire every connection at once.
        firewall.set_config(&dataplane_common::Config::default())?;
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

    pub fn attachments(&self) -> Vec<Attachment> {
        self.attached.iter().map(|a| a.info.clone()).collect()
    }

    /// The forwarding model the maps mirror.
    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    /// Apply map operations in order (the Fib orders them safely).
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), DataplaneError> {
        for op in ops {
            self.maps.apply(op)?;
        }
        Ok(())
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
            let attached = xdp_program(&mut self.ebpf, MAIN_PROGRAM)?
                .attach_to_if_index(port, mode.xdp_mode())
                .map_err(|source| DataplaneError::Attach {
                    iface: name.to_owned(),
                    mode,
                    other: mode.other(),
                    reason: error_chain(&source),
                });
            match attached {
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

    /// A configured interface that went away (its XDP link went with it):
    /// forget the attachment so the interface can be attached again if it
    /// returns. Returns its name if it was attached.
    pub fn forget(&mut self, ifindex: u32) -> Option<String> {
        let pos = self
            .attached
            .iter()
            .position(|a| a.info.ifindex == ifindex)?;
        let a = self.attached.remove(pos);
        if let Some(link) = a.link
            && let Ok(p) = xdp_program(&mut self.ebpf, MAIN_PROGRAM)
        {
            // The kernel already dropped the link with the device; this only
            // releases our handle.
            let _ = p.detach(link);
        }
        Some(a.info.name)
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
            let result = xdp_program(&mut self.ebpf, MAIN_PROGRAM).and_then(|p| {
                p.detach(link).map_err(|source| DataplaneError::Detach {
                    iface: a.info.name.clone(),
                    source,
                })
            });
            if let Err(e) = result {
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
        })
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
