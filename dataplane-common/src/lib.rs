//! Types shared by the XDP program (`dataplane-ebpf`) and the control plane.
//!
//! Every map key and value here is `#[repr(C)]` with explicit padding fields, so
//! the layout the verifier sees is the layout userspace writes: no implicit
//! padding, no `bool`. The `user` feature adds `aya::Pod` for userspace.
#![no_std]

mod dir24;
mod firewall;
pub use dir24::*;
pub use firewall::*;

/// Highest interface counter slot. Slot 0 counts frames seen on an interface
/// the control plane has not registered in [`IfaceInfo`] (it should not
/// happen; a non-zero slot 0 is worth a look).
pub const MAX_IFACE_SLOTS: u32 = 256;

/// Capacity of the `IFACES` hash map (managed interfaces, VLAN
/// sub-interfaces included) and of the `DEVMAP` redirect table.
pub const MAX_IFACES: u32 = MAX_IFACE_SLOTS - 1;

/// IPv4 routes: a full Internet table (about 1M prefixes) fits.
pub const MAX_ROUTES_V4: u32 = 1 << 20;
/// IPv6 routes.
pub const MAX_ROUTES_V6: u32 = 1 << 18;
/// Next hops (gateway + interface), shared by every route that uses them.
pub const MAX_NEXTHOPS: u32 = 1 << 16;
/// ECMP groups.
pub const MAX_NH_GROUPS: u32 = 1 << 14;
/// Members of one ECMP group.
pub const MAX_ECMP: usize = 16;
/// Neighbours (IPv4 and IPv6 together).
pub const MAX_NEIGHBOURS: u32 = 1 << 17;
/// VLAN sub-interfaces.
pub const MAX_VLANS: u32 = 4096;

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
    /// Unicast IP that arrived on an interface XDP does not route for
    /// (registered without `IFACE_F_FORWARD`, or not registered at all).
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
    /// More VLAN tags than [`MAX_VLAN_DEPTH`], or two tags on a frame to be
    /// routed (Q-in-Q termination is the kernel's).
    VlanTooDeep = 10,
    /// Routed by XDP: redirected to another interface (`bpf_redirect_map`).
    Forwarded = 11,
    /// Routed by XDP back out of the port it came in on (`XDP_TX`).
    Transmitted = 12,
    /// TTL / hop limit would reach 0: the kernel sends Time Exceeded.
    TtlExceeded = 13,
    /// No route: the kernel answers (ICMP unreachable) or drops.
    NoRoute = 14,
    /// For one of the box's own addresses: the kernel delivers it.
    Local = 15,
    /// A blackhole route: dropped silently, as the kernel would.
    Blackhole = 16,
    /// An unreachable or prohibit route: the kernel sends the ICMP error.
    Unreachable = 17,
    /// No neighbour entry for the next hop yet: the kernel resolves it.
    NoNeighbour = 18,
    /// Larger than the egress MTU: the kernel fragments or sends
    /// Fragmentation Needed / Packet Too Big.
    Mtu = 19,
    /// Tagged with a VLAN id that has no managed sub-interface.
    UnknownVlan = 20,
    /// The next hop's interface is not managed by xdpgate (or is down).
    EgressUnmanaged = 21,
    /// Unicast to another host's MAC (a flooding switch, a bridge port,
    /// promiscuous mode): not ours to route; the kernel drops it as
    /// PACKET_OTHERHOST (net/ipv4/ip_input.c ip_rcv_core).
    OtherHost = 22,
    /// Dropped by a firewall rule or chain policy.
    Filtered = 23,
    /// Refused by a firewall rule or policy: a TCP RST or an ICMP / ICMPv6
    /// port unreachable went back out of the ingress port (`XDP_TX`).
    Rejected = 24,
}

impl Reason {
    /// Number of reasons: the stride of the per-interface counter block.
    pub const COUNT: u32 = 25;

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
        Reason::Forwarded,
        Reason::Transmitted,
        Reason::TtlExceeded,
        Reason::NoRoute,
        Reason::Local,
        Reason::Blackhole,
        Reason::Unreachable,
        Reason::NoNeighbour,
        Reason::Mtu,
        Reason::UnknownVlan,
        Reason::EgressUnmanaged,
        Reason::OtherHost,
        Reason::Filtered,
        Reason::Rejected,
    ];

    /// The XDP action this reason leaves with.
    pub const fn action(self) -> Action {
        match self {
            Reason::Malformed | Reason::Blackhole | Reason::Filtered => Action::Drop,
            Reason::Forwarded => Action::Redirect,
            Reason::Transmitted | Reason::Rejected => Action::Tx,
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
            Reason::Forwarded => "forwarded",
            Reason::Transmitted => "transmitted",
            Reason::TtlExceeded => "ttl_exceeded",
            Reason::NoRoute => "no_route",
            Reason::Local => "local",
            Reason::Blackhole => "blackhole",
            Reason::Unreachable => "unreachable",
            Reason::NoNeighbour => "no_neighbour",
            Reason::Mtu => "mtu",
            Reason::UnknownVlan => "unknown_vlan",
            Reason::EgressUnmanaged => "egress_unmanaged",
            Reason::OtherHost => "other_host",
            Reason::Filtered => "filtered",
            Reason::Rejected => "rejected",
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

/// Value of the `IFACES` map, keyed by ifindex (`u32`): every managed
/// interface, VLAN sub-interfaces included. Written by the control plane.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Counter block of this interface, 1..MAX_IFACE_SLOTS.
    pub counter_slot: u32,
    /// `IFACE_F_*` bits.
    pub flags: u32,
    /// L3 MTU: larger packets are punted ([`Reason::Mtu`]).
    pub mtu: u32,
    /// 802.1Q VLAN id of a sub-interface; 0 for an untagged interface.
    pub vlan_id: u32,
    /// The port frames leave by: the parent of a VLAN sub-interface, the
    /// interface itself otherwise. Key of the `DEVMAP` redirect table.
    pub parent_ifindex: u32,
    /// Source MAC of frames sent from this interface.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The interface is up and may be used as an egress.
pub const IFACE_F_UP: u32 = 1;
/// Frames arriving here are routed by XDP. Without it the interface is only
/// counted and everything goes to the kernel ([`Reason::NotForwarded`]).
pub const IFACE_F_FORWARD: u32 = 2;

/// Key of the IPv4 route table (`LPM_TRIE`): the address in network byte
/// order; the trie's `prefix_len` is beside it.
pub type RouteKeyV4 = [u8; 4];
/// Key of the IPv6 route table.
pub type RouteKeyV6 = [u8; 16];

/// `Route::kind`: forward to next hop `Route::nh`.
pub const ROUTE_UNICAST: u32 = 0;
/// Forward to a member of ECMP group `Route::nh`.
pub const ROUTE_MULTIPATH: u32 = 1;
/// One of the box's own addresses (the kernel's `local` table).
pub const ROUTE_LOCAL: u32 = 2;
pub const ROUTE_BLACKHOLE: u32 = 3;
pub const ROUTE_UNREACHABLE: u32 = 4;
pub const ROUTE_PROHIBIT: u32 = 5;
/// The kernel routes this prefix through an interface xdpgate does not
/// manage (or that is down): punt, so a covering route cannot catch it.
pub const ROUTE_KERNEL: u32 = 6;

/// Value of `ROUTES_V4` / `ROUTES_V6`. Plain integers, not a Rust enum: the
/// value comes from map memory, and an out-of-range enum would be UB.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// `ROUTE_*`.
    pub kind: u32,
    /// Next-hop id (`ROUTE_UNICAST`) or group id (`ROUTE_MULTIPATH`).
    pub nh: u32,
}

/// `NextHop::family`: a connected route; the packet's destination is the
/// neighbour.
pub const NH_CONNECTED: u32 = 0;
/// The gateway is an IPv4 address (in the mapped form, see [`NeighKey`]).
pub const NH_GATEWAY_V4: u32 = 4;
/// The gateway is an IPv6 address.
pub const NH_GATEWAY_V6: u32 = 6;

/// Value of the `NEXTHOPS` array (index: next-hop id, 0 is never used).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NextHop {
    /// Egress interface (an `IFACES` key).
    pub ifindex: u32,
    /// `NH_*`.
    pub family: u32,
    /// Gateway address, as a neighbour key address.
    pub gateway: [u8; 16],
}

/// Value of the `NH_GROUPS` array (index: group id, 0 is never used).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NhGroup {
    /// Members in use, 0..=MAX_ECMP; a flow takes `members[hash % count]`.
    pub count: u32,
    pub members: [u32; MAX_ECMP],
}

/// Key of the `NEIGHBOURS` hash. IPv4 addresses are stored IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2) so one map serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighKey {
    pub ifindex: u32,
    pub addr: [u8; 16],
}

/// Value of the `NEIGHBOURS` hash.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of the `VLANS` hash: a tag seen on a port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VlanKey {
    pub parent_ifindex: u32,
    pub vid: u32,
}

/// An IPv4 address in the IPv4-mapped IPv6 form used by [`NeighKey`].
pub const fn ipv4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are repr(C), contain only integers and have no implicit padding.
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::IfaceInfo {}
    unsafe impl aya::Pod for super::Route {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::NhGroup {}
    unsafe impl aya::Pod for super::NeighKey {}
    unsafe impl aya::Pod for super::Neighbour {}
    unsafe impl aya::Pod for super::VlanKey {}
    unsafe impl aya::Pod for super::RuleBitmap {}
    unsafe impl aya::Pod for super::ChainInfo {}
    unsafe impl aya::Pod for super::FwRule {}
    unsafe impl aya::Pod for super::FwIfaceKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::CtCounters {}
    unsafe impl aya::Pod for super::FwLogConfig {}
    unsafe impl aya::Pod for super::FwLogRecord {}
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
        assert_eq!(core::mem::size_of::<IfaceInfo>(), 28);
        assert_eq!(core::mem::size_of::<Route>(), 8);
        assert_eq!(core::mem::size_of::<NextHop>(), 24);
        assert_eq!(core::mem::size_of::<NhGroup>(), 4 + 4 * MAX_ECMP);
        assert_eq!(core::mem::size_of::<NeighKey>(), 20);
        assert_eq!(core::mem::size_of::<Neighbour>(), 8);
        assert_eq!(core::mem::size_of::<VlanKey>(), 8);
        assert_eq!(core::mem::size_of::<RuleBitmap>(), 8 * FW_WORDS);
        assert_eq!(core::mem::size_of::<ChainInfo>(), 40);
        assert_eq!(core::mem::size_of::<FwRule>(), 16);
        assert_eq!(core::mem::size_of::<FwIfaceKey>(), 8);
        assert_eq!(core::mem::size_of::<Config>(), 8 + 4 * CT_TIMEOUTS + 4);
        assert_eq!(core::mem::size_of::<CtKey>(), 40);
        #[cfg(not(feature = "layout-test"))]
        assert_eq!(core::mem::size_of::<CtEntry>(), 32);
        assert_eq!(core::mem::size_of::<CtCounters>(), 40);
        assert_eq!(core::mem::size_of::<FwLogConfig>(), 4);
        assert_eq!(core::mem::size_of::<FwLogRecord>(), 64);
        assert_eq!(core::mem::offset_of!(FwLogRecord, src), 20);
        assert_eq!(core::mem::offset_of!(FwLogRecord, sport), 52);
        assert_eq!(core::mem::offset_of!(FwLogRecord, _pad), 60);
    }

    #[test]
    fn counter_indices_do_not_overlap_between_slots() {
        let last_of_slot0 = reason_index(0, Reason::Rejected);
        let first_of_slot1 = reason_index(1, Reason::Malformed);
        assert_eq!(last_of_slot0 + 1, first_of_slot1);
        assert!(reason_index(MAX_IFACE_SLOTS - 1, Reason::Rejected) < REASON_COUNTER_ENTRIES);
        assert!(class_index(MAX_IFACE_SLOTS - 1, Class::Other) < CLASS_COUNTER_ENTRIES);
    }
}
