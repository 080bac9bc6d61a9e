//! Types shared by the XDP program (`dataplane-ebpf`) and the control plane.
//!
//! Every map key and value here is `#[repr(C)]` with explicit padding fields, so
//! the layout the verifier sees is the layout userspace writes: no implicit
//! padding, no `bool`. The `user` feature adds `aya::Pod` for userspace.
#![no_std]

/// Highest interface counter slot. Slot 0 counts frames seen on an interface
/// the control plane has not registered in [`IfaceInfo`] (it should not
/// happen; a non-zero slot 0 is worth a look).
pub const MAX_IFACE_SLOTS: u32 = 64;

/// Capacity of the `IFACES` hash map (managed interfaces).
pub const MAX_IFACES: u32 = MAX_IFACE_SLOTS - 1;

/// How many 802.1Q / 802.1ad tags the parser walks before giving up.
/// Two covers Q-in-Q; a third tag is counted as [`Reason::VlanTooDeep`].
pub const MAX_VLAN_DEPTH: usize = 2;

/// What happened to a frame, and why. Every frame the program sees leaves
/// through exactly one of these; [`Reason::action`] says the XDP verdict.
///
/// Append only: the numeric values index the `REASON_COUNTERS` map, and a
/// running program and a newer control plane must agree on them.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Could not be parsed (truncated header, bad version or length): dropped.
    Malformed = 0,
    /// Parsed unicast IP the fast path does not handle (yet): the kernel routes it.
    NotForwarded = 1,
    /// ARP: the kernel answers and learns neighbours.
    Arp = 2,
    /// IPv6 neighbour discovery (ICMPv6 133..=137, RFC 4861): the kernel's.
    Ipv6Nd = 3,
    /// An EtherType the program does not parse (LLDP, MPLS, PPPoE, ...).
    UnknownEtherType = 4,
    /// Broadcast or multicast destination (L2 or L3): the kernel's.
    Multicast = 5,
    /// Link-local source or destination (169.254/16, fe80::/10): never routed.
    LinkLocal = 6,
    /// IPv4 header with options (IHL > 5): the kernel's slow path handles them.
    Ipv4Options = 7,
    /// IPv4 fragment or IPv6 Fragment header: reassembly is the kernel's.
    Fragment = 8,
    /// IPv6 extension header other than Fragment (hop-by-hop, routing, ...).
    Ipv6ExtHeader = 9,
    /// More VLAN tags than [`MAX_VLAN_DEPTH`].
    VlanTooDeep = 10,
}

impl Reason {
    /// Number of reasons: the stride of the per-interface counter block.
    pub const COUNT: u32 = 11;

    /// Every reason in numeric order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::Malformed,
        Reason::NotForwarded,
        Reason::Arp,
        Reason::Ipv6Nd,
        Reason::UnknownEtherType,
        Reason::Multicast,
        Reason::LinkLocal,
        Reason::Ipv4Options,
        Reason::Fragment,
        Reason::Ipv6ExtHeader,
        Reason::VlanTooDeep,
    ];

    /// The XDP action this reason leaves with.
    pub const fn action(self) -> Action {
        match self {
            Reason::Malformed => Action::Drop,
            _ => Action::Pass,
        }
    }

    /// Stable lower-case name used in the API, the CLI and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::NotForwarded => "not_forwarded",
            Reason::Arp => "arp",
            Reason::Ipv6Nd => "ipv6_nd",
            Reason::UnknownEtherType => "unknown_ethertype",
            Reason::Multicast => "multicast",
            Reason::LinkLocal => "link_local",
            Reason::Ipv4Options => "ipv4_options",
            Reason::Fragment => "fragment",
            Reason::Ipv6ExtHeader => "ipv6_ext_header",
            Reason::VlanTooDeep => "vlan_too_deep",
        }
    }
}

/// XDP verdicts, numerically equal to the kernel's `enum xdp_action`
/// (include/uapi/linux/bpf.h).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Action::Aborted => "aborted",
            Action::Drop => "drop",
            Action::Pass => "pass",
            Action::Tx => "tx",
            Action::Redirect => "redirect",
        }
    }

    pub const fn from_u32(v: u32) -> Option<Action> {
        match v {
            0 => Some(Action::Aborted),
            1 => Some(Action::Drop),
            2 => Some(Action::Pass),
            3 => Some(Action::Tx),
            4 => Some(Action::Redirect),
            _ => None,
        }
    }
}

/// What a parsed frame carried: the traffic mix per interface, independent of
/// the verdict. Frames that fail to parse are not classified (see
/// [`Reason::Malformed`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ipv4Tcp = 0,
    Ipv4Udp = 1,
    Ipv4Icmp = 2,
    Ipv4Other = 3,
    Ipv6Tcp = 4,
    Ipv6Udp = 5,
    Ipv6Icmp = 6,
    Ipv6Other = 7,
    Arp = 8,
    Other = 9,
}

impl Class {
    pub const COUNT: u32 = 10;

    pub const ALL: [Class; Self::COUNT as usize] = [
        Class::Ipv4Tcp,
        Class::Ipv4Udp,
        Class::Ipv4Icmp,
        Class::Ipv4Other,
        Class::Ipv6Tcp,
        Class::Ipv6Udp,
        Class::Ipv6Icmp,
        Class::Ipv6Other,
        Class::Arp,
        Class::Other,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Class::Ipv4Tcp => "ipv4_tcp",
            Class::Ipv4Udp => "ipv4_udp",
            Class::Ipv4Icmp => "ipv4_icmp",
            Class::Ipv4Other => "ipv4_other",
            Class::Ipv6Tcp => "ipv6_tcp",
            Class::Ipv6Udp => "ipv6_udp",
            Class::Ipv6Icmp => "ipv6_icmp",
            Class::Ipv6Other => "ipv6_other",
            Class::Arp => "arp",
            Class::Other => "other",
        }
    }
}

/// Index of a reason counter: `slot * Reason::COUNT + reason`.
pub const fn reason_index(slot: u32, reason: Reason) -> u32 {
    slot * Reason::COUNT + reason as u32
}

/// Index of a class counter: `slot * Class::COUNT + class`.
pub const fn class_index(slot: u32, class: Class) -> u32 {
    slot * Class::COUNT + class as u32
}

/// Entries of the `REASON_COUNTERS` per-CPU array.
pub const REASON_COUNTER_ENTRIES: u32 = MAX_IFACE_SLOTS * Reason::COUNT;
/// Entries of the `CLASS_COUNTERS` per-CPU array.
pub const CLASS_COUNTER_ENTRIES: u32 = MAX_IFACE_SLOTS * Class::COUNT;

/// One per-CPU counter cell: frames and bytes (frame length as XDP saw it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Value of the `IFACES` map, keyed by ifindex (`u32`). Written by the control
/// plane when it attaches to an interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Counter block of this interface, 1..MAX_IFACE_SLOTS.
    pub counter_slot: u32,
    /// Reserved for interface flags; zero today.
    pub flags: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are repr(C), contain only integers and have no implicit padding.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_table_is_dense_and_ordered() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} out of order");
        }
        for (i, c) in Class::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?} out of order");
        }
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(core::mem::size_of::<Counter>(), 16);
        assert_eq!(core::mem::size_of::<IfaceInfo>(), 8);
    }

    #[test]
    fn counter_indices_do_not_overlap_between_slots() {
        let last_of_slot0 = reason_index(0, Reason::VlanTooDeep);
        let first_of_slot1 = reason_index(1, Reason::Malformed);
        assert_eq!(last_of_slot0 + 1, first_of_slot1);
        assert!(reason_index(MAX_IFACE_SLOTS - 1, Reason::VlanTooDeep) < REASON_COUNTER_ENTRIES);
        assert!(class_index(MAX_IFACE_SLOTS - 1, Class::Other) < CLASS_COUNTER_ENTRIES);
    }
}
