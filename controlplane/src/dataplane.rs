//! The only module that touches aya: it owns the loaded object, attaches the
//! XDP program to interfaces, registers them in `IFACES`, and reads counters.
use std::{collections::BTreeMap, fmt, str::FromStr};

use aya::{
    Ebpf, EbpfError,
    maps::{HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId},
};
use dataplane_common::{
    Class, Counter, IfaceInfo, MAX_IFACE_SLOTS, Reason, class_index, reason_index,
};
use serde::Serialize;

/// The XDP object built by `build.rs` (aya-build), embedded in the binary.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdpgate"));

/// Name of the main program in [`OBJECT`].
pub const MAIN_PROGRAM: &str = "xdpgate";
/// Name of the pass-only program for veth peers in [`OBJECT`].
pub const PASS_PROGRAM: &str = "xdp_pass";

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
    link: XdpLinkId,
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
            let count = Self::sum(&self.reasons, reason_index(slot, reason)).map_err(|source| {
                DataplaneError::Map {
                    map: "REASON_COUNTERS",
                    source,
                }
            })?;
            out.reasons.insert(reason.name(), count);
            out.actions
                .entry(reason.action().name())
                .or_default()
                .add(count);
        }
        for class in Class::ALL {
            let count = Self::sum(&self.classes, class_index(slot, class)).map_err(|source| {
                DataplaneError::Map {
                    map: "CLASS_COUNTERS",
                    source,
                }
            })?;
            out.classes.insert(class.name(), count);
        }
        Ok(out)
    }
}

/// The loaded XDP object and everything attached from it.
pub struct Dataplane {
    ebpf: Ebpf,
    ifaces: HashMap<MapData, u32, IfaceInfo>,
    counters: CounterMaps,
    attached: Vec<Attached>,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

fn load_object() -> Result<Ebpf, DataplaneError> {
    Ebpf::load(OBJECT).map_err(|e| {
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
        let mut ebpf = load_object()?;
        load_program(&mut ebpf, MAIN_PROGRAM)?;
        let ifaces = HashMap::try_from(take_map(&mut ebpf, "IFACES")?).map_err(|source| {
            DataplaneError::Map {
                map: "IFACES",
                source,
            }
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
            ifaces,
            counters: CounterMaps { reasons, classes },
            attached: Vec::new(),
        })
    }

    /// The main program, for `BPF_PROG_TEST_RUN`.
    pub fn main_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        xdp_program(&mut self.ebpf, MAIN_PROGRAM)
    }

    pub fn counters(&self) -> &CounterMaps {
        &self.counters
    }

    pub fn attachments(&self) -> Vec<Attachment> {
        self.attached.iter().map(|a| a.info.clone()).collect()
    }

    fn free_slot(&self) -> Result<u32, DataplaneError> {
        (1..MAX_IFACE_SLOTS)
            .find(|s| self.attached.iter().all(|a| a.info.slot != *s))
            .ok_or(DataplaneError::TooManyInterfaces)
    }

    /// Register an interface's counter slot without attaching: used by
    /// test runs, which name an ingress ifindex but attach nothing.
    pub fn register(&mut self, ifindex: u32, slot: u32) -> Result<(), DataplaneError> {
        let info = IfaceInfo {
            counter_slot: slot,
            flags: 0,
        };
        self.ifaces
            .insert(ifindex, info, 0)
            .map_err(|source| DataplaneError::Map {
                map: "IFACES",
                source,
            })
    }

    /// Attach to `name` in the calling thread's network namespace. The
    /// interface is registered before the program goes live, so its first
    /// frame is already counted under its own slot.
    pub fn attach(&mut self, name: &str, mode: AttachMode) -> Result<Attachment, DataplaneError> {
        if self.attached.iter().any(|a| a.info.name == name) {
            return Err(DataplaneError::AlreadyAttached {
                iface: name.to_owned(),
            });
        }
        let ifindex = ifindex(name)?;
        let slot = self.free_slot()?;
        self.register(ifindex, slot)?;
        let link = xdp_program(&mut self.ebpf, MAIN_PROGRAM)?
            .attach_to_if_index(ifindex, mode.xdp_mode())
            .map_err(|source| DataplaneError::Attach {
                iface: name.to_owned(),
                mode,
                other: mode.other(),
                reason: error_chain(&source),
            });
        let link = match link {
            Ok(link) => link,
            Err(e) => {
                let _ = self.ifaces.remove(&ifindex);
                return Err(e);
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
            link,
        });
        Ok(info)
    }

    /// Detach from every interface. Keeps going past failures and returns
    /// them all, so one stuck interface does not leave the others attached.
    pub fn detach_all(&mut self) -> Vec<DataplaneError> {
        let mut errors = Vec::new();
        for a in std::mem::take(&mut self.attached) {
            let result = xdp_program(&mut self.ebpf, MAIN_PROGRAM).and_then(|p| {
                p.detach(a.link).map_err(|source| DataplaneError::Detach {
                    iface: a.info.name.clone(),
                    source,
                })
            });
            if let Err(e) = result {
                errors.push(e);
            }
            let _ = self.ifaces.remove(&a.info.ifindex);
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
        let id = prog
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_owned(),
                mode: AttachMode::Native,
                other: AttachMode::Skb,
                reason: error_chain(&source),
            })?;
        let link = prog
            .take_link(id)
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_owned(),
                mode: AttachMode::Native,
                other: AttachMode::Skb,
                reason: error_chain(&source),
            })?;
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
