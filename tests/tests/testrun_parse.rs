//! Tier 2: the real, verified XDP program run through `BPF_PROG_TEST_RUN` on
//! crafted frames (net/bpf/test_run.c). Fixtures are data, Katran style: a
//! description, the frame, the expected verdict, reason and class. For every
//! row the test checks the verdict, that exactly that reason counter moved by
//! one frame (and its byte count by the frame length), the class counter,
//! and that the program handed the frame back byte for byte.
//!
//! Test-run frames arrive as if on ifindex 1 (loopback), so each test
//! registers that ifindex under its own slot in its own loaded program:
//! tests run in parallel without sharing counters. Needs root (CAP_BPF).
//!
//! These tests pin the parser: the port is registered without the forward
//! flag, so a clean unicast IP frame ends as `not_forwarded` and the FIB is
//! never consulted. Forwarding has tests of its own.
use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use dataplane_common::{Action, Class as C, Reason as R};
use xdpgate::{
    dataplane::{Count, Dataplane, SlotCounters},
    testrun::{self, Outcome, TEST_RUN_IFINDEX},
};
use xdpgate_tests::frames::{
    BROADCAST, ETH_HLEN, ETH_ZLEN, Frame, Ipv6Ext, Mac, ethertype, icmp, icmpv6,
    ipv4_multicast_mac, ipv6_multicast_mac, proto, solicited_node, tcp, verify_checksums,
};

/// Counter slot the tests register ifindex 1 under; any slot but 0.
const SLOT: u32 = 7;

const HOST: Mac = [0x02, 0, 0, 0, 0, 0x01];
const ROUTER: Mac = [0x02, 0, 0, 0, 0, 0xfe];
/// A neighbour on the ingress link and a host beyond the router.
const H4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const FAR4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const H6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x20);
const LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// (description, frame, verdict, reason, class counted).
type Case = (&'static str, Vec<u8>, Action, R, Option<C>);

fn eth() -> Frame {
    Frame::eth(HOST, ROUTER)
}

/// Unicast IPv4 from a host to a far network: what a router forwards.
fn ip4() -> Frame {
    eth().ipv4(H4, FAR4)
}

/// Unicast IPv6 from a host to a far network.
fn ip6() -> Frame {
    eth().ipv6(H6, FAR6)
}

/// An ICMPv6 ND message body: the 16-byte target address.
fn nd(frame: Frame, kind: u8, target: Ipv6Addr) -> Vec<u8> {
    frame
        .hop_limit(255)
        .icmpv6(kind, 0)
        .payload(&target.octets())
        .build()
}

/// The loaded program with ifindex 1 registered under [`SLOT`].
struct Harness {
    dp: Dataplane,
}

/// Counters that moved during one run, zero entries left out.
#[derive(Debug, PartialEq, Eq)]
struct Moved {
    reasons: Vec<(R, Count)>,
    classes: Vec<(C, Count)>,
}

fn diff(before: Count, after: Count) -> Option<Count> {
    (before != after).then(|| Count {
        packets: after.packets - before.packets,
        bytes: after.bytes - before.bytes,
    })
}

impl Moved {
    fn between(before: &SlotCounters, after: &SlotCounters) -> Self {
        Self {
            reasons: R::ALL
                .iter()
                .filter_map(|&r| Some((r, diff(before.reason(r), after.reason(r))?)))
                .collect(),
            classes: C::ALL
                .iter()
                .filter_map(|&c| Some((c, diff(before.class(c), after.class(c))?)))
                .collect(),
        }
    }
}

impl Harness {
    #[track_caller]
    fn new() -> Self {
        let mut dp = Dataplane::load().expect("load the XDP object (needs root or CAP_BPF)");
        dp.register(TEST_RUN_IFINDEX, SLOT)
            .expect("register the test-run ifindex");
        Self { dp }
    }

    #[track_caller]
    fn counters(&self, slot: u32) -> SlotCounters {
        self.dp.counters().slot(slot).expect("read counters")
    }

    /// Run one frame; the verdict, the frame out and the counters moved.
    #[track_caller]
    fn run(&mut self, frame: &[u8]) -> (Outcome, Moved) {
        let before = self.counters(SLOT);
        let out = testrun::run(self.dp.main_program().expect("main program"), frame)
            .expect("BPF_PROG_TEST_RUN");
        let after = self.counters(SLOT);
        (out, Moved::between(&before, &after))
    }

    /// Run one case; a description of what went wrong, if anything.
    fn check(&mut self, (desc, frame, action, reason, class): &Case) -> Option<String> {
        let (out, moved) = self.run(frame);
        let one = Count {
            packets: 1,
            bytes: frame.len() as u64,
        };
        let want = Moved {
            reasons: vec![(*reason, one)],
            classes: class.iter().map(|&c| (c, one)).collect(),
        };
        let mut problems = String::new();
        if out.action != *action {
            let _ = write!(problems, " verdict {:?} (want {action:?});", out.action);
        }
        if moved.reasons != want.reasons {
            let _ = write!(
                problems,
                " reasons moved {:?} (want {:?});",
                moved.reasons, want.reasons
            );
        }
        if moved.classes != want.classes {
            let _ = write!(
                problems,
                " classes moved {:?} (want {:?});",
                moved.classes, want.classes
            );
        }
        if out.output != *frame {
            let _ = write!(problems, " output frame differs from input;");
        }
        (!problems.is_empty()).then(|| format!("{desc} [{}]:{problems}", hex(frame)))
    }

    /// Slot 0 counts frames from unregistered interfaces: none here.
    #[track_caller]
    fn assert_slot0_untouched(&self) {
        let slot0 = self.counters(0);
        assert!(
            slot0.reasons.values().all(|c| c.packets == 0),
            "frames counted in slot 0: {:?}",
            slot0.reasons
        );
    }
}

/// `frame` with `bytes` written at `at`: for padding that looks like a header.
fn overwrite(mut frame: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    frame[at..at + bytes.len()].copy_from_slice(bytes);
    frame
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// Run every row on a fresh program and fail with every mismatch at once.
/// The fixtures must be sound frames: valid checksums wherever they have
/// them, so the program is judged on frames a real stack would send.
#[track_caller]
fn run_table(cases: Vec<Case>) {
    for (desc, frame, ..) in &cases {
        if let Err(e) = verify_checksums(frame) {
            panic!("{desc}: fixture is not a valid frame: {e}");
        }
    }
    run_raw_table(cases);
}

/// [`run_table`] for deliberately broken frames.
#[track_caller]
fn run_raw_table(cases: Vec<Case>) {
    let mut h = Harness::new();
    let failures: Vec<String> = cases.iter().filter_map(|c| h.check(c)).collect();
    h.assert_slot0_untouched();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const PASS: Action = Action::Pass;
const DROP: Action = Action::Drop;

#[test]
fn ipv4_unicast_is_not_forwarded_on_a_plain_port() {
    run_table(vec![
        (
            "IPv4 TCP SYN",
            ip4().tcp(40000, 80, tcp::SYN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 TCP with options (data offset 8) and data",
            ip4()
                .tcp(40000, 80, tcp::SYN)
                .tcp_options(&[2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2])
                .payload(b"GET / HTTP/1.1\r\n")
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 UDP",
            ip4().udp(5353, 53).payload(b"query").build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 UDP without payload",
            ip4().udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 ICMP echo request",
            ip4().icmp_echo(1, 1).payload(&[0xa5; 56]).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Icmp),
        ),
        (
            "IPv4 ICMP time exceeded",
            ip4().icmp(icmp::TIME_EXCEEDED, 0).payload(&[0; 28]).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Icmp),
        ),
        (
            "IPv4 GRE (protocol 47)",
            ip4()
                .protocol(proto::GRE)
                .payload(&[0, 0, 0x08, 0x00])
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Other),
        ),
        (
            "IPv4 ESP (protocol 50)",
            ip4().protocol(proto::ESP).payload(&[0; 16]).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Other),
        ),
        (
            "IPv4 with no payload at all (protocol 253)",
            ip4().build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Other),
        ),
        (
            "IPv4 DF set is not a fragment",
            ip4().dont_fragment().udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 TTL 1 (no TTL check on a port that does not forward)",
            ip4().ttl(1).udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 from 169.253.255.255 (just below link-local)",
            eth()
                .ipv4(Ipv4Addr::new(169, 253, 255, 255), FAR4)
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 to 169.255.0.1 (just above link-local)",
            eth()
                .ipv4(H4, Ipv4Addr::new(169, 255, 0, 1))
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 to 223.255.255.255 (just below multicast)",
            eth()
                .ipv4(H4, Ipv4Addr::new(223, 255, 255, 255))
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 to 240.0.0.1 (class E is not multicast)",
            eth()
                .ipv4(H4, Ipv4Addr::new(240, 0, 0, 1))
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 from 224.0.0.1 (only the destination decides multicast)",
            eth()
                .ipv4(Ipv4Addr::new(224, 0, 0, 1), FAR4)
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
    ]);
}

#[test]
fn ipv6_unicast_is_not_forwarded_on_a_plain_port() {
    let pmtu = ip6()
        .icmpv6(icmpv6::PACKET_TOO_BIG, 0)
        .icmp_rest(1280u32.to_be_bytes())
        .payload(&[0; 48])
        .build();
    run_table(vec![
        (
            "IPv6 TCP SYN",
            ip6().tcp(40000, 443, tcp::SYN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Tcp),
        ),
        (
            "IPv6 TCP ACK with options and data",
            ip6()
                .tcp(40000, 443, tcp::ACK | tcp::PSH)
                .tcp_options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
                .payload(b"data")
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Tcp),
        ),
        (
            "IPv6 UDP",
            ip6().udp(546, 547).payload(b"dhcp").build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv6 ICMPv6 echo request",
            ip6().icmp_echo(9, 1).payload(b"ping").build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 ICMPv6 echo reply (129)",
            ip6().icmpv6(icmpv6::ECHO_REPLY, 0).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 ICMPv6 packet too big (2)",
            pmtu,
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 ICMPv6 type 132 (just below ND) to unicast",
            ip6().icmpv6(132, 0).payload(&[0; 16]).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 ICMPv6 type 138 (just above ND) to unicast",
            ip6().icmpv6(138, 0).payload(&[0; 16]).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 GRE (next header 47)",
            ip6()
                .protocol(proto::GRE)
                .payload(&[0, 0, 0x86, 0xdd])
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 no next header (59)",
            ip6().build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 from fec0::1 (outside fe80::/10)",
            eth()
                .ipv6("fec0::1".parse().expect("addr"), FAR6)
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv6 to fe00::1 (outside fe80::/10)",
            eth()
                .ipv6(H6, "fe00::1".parse().expect("addr"))
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv6 to fe7f::1 (outside fe80::/10)",
            eth()
                .ipv6(H6, "fe7f::1".parse().expect("addr"))
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv6 from ff02::1 (only the destination decides multicast)",
            eth().ipv6(ALL_NODES, FAR6).udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
    ]);
}

#[test]
fn vlan_tags() {
    run_table(vec![
        (
            "802.1Q IPv4 UDP",
            eth().vlan(10).ipv4(H4, FAR4).udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "802.1Q IPv4 TCP",
            eth().vlan(4094).ipv4(H4, FAR4).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Tcp),
        ),
        (
            "802.1Q IPv6 TCP",
            eth().vlan(10).ipv6(H6, FAR6).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Tcp),
        ),
        (
            "802.1Q IPv6 ICMPv6 echo",
            eth().vlan(10).ipv6(H6, FAR6).icmp_echo(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "802.1Q priority-tagged (VID 0, PCP 5) IPv4",
            eth()
                .tag(ethertype::VLAN, 5 << 13)
                .ipv4(H4, FAR4)
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "802.1ad single tag IPv4",
            eth().service_vlan(100).ipv4(H4, FAR4).udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "802.1ad single tag IPv6",
            eth().service_vlan(100).ipv6(H6, FAR6).udp(1, 2).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "802.1ad + 802.1Q IPv4 TCP",
            eth()
                .service_vlan(100)
                .vlan(10)
                .ipv4(H4, FAR4)
                .tcp(1, 2, tcp::SYN)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Tcp),
        ),
        (
            "802.1ad + 802.1Q IPv6 UDP",
            eth()
                .service_vlan(100)
                .vlan(10)
                .ipv6(H6, FAR6)
                .udp(1, 2)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "802.1Q + 802.1Q IPv4 ICMP",
            eth()
                .vlan(100)
                .vlan(10)
                .ipv4(H4, FAR4)
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Icmp),
        ),
        (
            "802.1Q + 802.1Q IPv6 ICMPv6",
            eth()
                .vlan(100)
                .vlan(10)
                .ipv6(H6, FAR6)
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Icmp),
        ),
        (
            "802.1ad + 802.1Q + 802.1Q IPv4: three tags",
            eth()
                .service_vlan(100)
                .vlan(10)
                .vlan(20)
                .ipv4(H4, FAR4)
                .udp(1, 2)
                .build(),
            PASS,
            R::VlanTooDeep,
            Some(C::Other),
        ),
        (
            "3 x 802.1Q IPv6: three tags",
            eth()
                .vlan(1)
                .vlan(2)
                .vlan(3)
                .ipv6(H6, FAR6)
                .udp(1, 2)
                .build(),
            PASS,
            R::VlanTooDeep,
            Some(C::Other),
        ),
        (
            "3 x 802.1ad ARP: three tags",
            Frame::eth(HOST, BROADCAST)
                .service_vlan(1)
                .service_vlan(2)
                .service_vlan(3)
                .arp_request(H4, FAR4)
                .build(),
            PASS,
            R::VlanTooDeep,
            Some(C::Other),
        ),
        (
            "802.1ad + 802.1Q ARP",
            Frame::eth(HOST, BROADCAST)
                .service_vlan(100)
                .vlan(10)
                .arp_request(H4, FAR4)
                .build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "802.1Q LLDP",
            eth().vlan(10).ethertype(ethertype::LLDP, &[0; 20]).build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "802.1Q IPv6 neighbour solicitation",
            nd(
                Frame::eth(HOST, ipv6_multicast_mac(solicited_node(FAR6)))
                    .vlan(10)
                    .ipv6(H6, solicited_node(FAR6)),
                icmpv6::NEIGHBOR_SOLICIT,
                FAR6,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "802.1Q + 802.1Q IPv4 to 224.0.0.5",
            Frame::eth(HOST, ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 5)))
                .vlan(1)
                .vlan(2)
                .ipv4(H4, Ipv4Addr::new(224, 0, 0, 5))
                .protocol(89)
                .payload(&[0; 24])
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Other),
        ),
    ]);
}

/// The parser stops after [`dataplane_common::MAX_VLAN_DEPTH`] tags: a
/// third TPID is enough to say "too deep", even if the tag behind it is cut
/// off, so such a frame is punted rather than dropped.
#[test]
fn vlan_depth_is_decided_before_a_third_tag_is_read() {
    run_raw_table(vec![(
        "two tags then the third tag's header is cut off: only two are read",
        eth()
            .vlan(1)
            .vlan(2)
            .ethertype(ethertype::VLAN, &[])
            .build(),
        PASS,
        R::VlanTooDeep,
        Some(C::Other),
    )]);
}

#[test]
fn arp_and_unknown_ethertypes() {
    run_table(vec![
        (
            "ARP request (broadcast)",
            Frame::eth(HOST, BROADCAST).arp_request(H4, FAR4).build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "ARP reply (unicast)",
            eth().arp_reply(H4, ROUTER, FAR4).build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "ARP request padded to 60 bytes",
            Frame::eth(HOST, BROADCAST)
                .arp_request(H4, FAR4)
                .pad_to(ETH_ZLEN)
                .build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "ARP gratuitous (sender = target)",
            Frame::eth(HOST, BROADCAST).arp_request(H4, H4).build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "LLDP to 01:80:c2:00:00:0e (L2 multicast)",
            Frame::eth(HOST, [0x01, 0x80, 0xc2, 0, 0, 0x0e])
                .ethertype(ethertype::LLDP, &[0x02, 0x07, 0x04, 0, 0, 0, 0, 0, 1])
                .build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "MPLS unicast",
            eth()
                .ethertype(ethertype::MPLS, &[0x00, 0x01, 0x01, 0x40, 0x45, 0, 0, 20])
                .build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "PPPoE session (0x8864)",
            eth()
                .ethertype(0x8864, &[0x11, 0, 0, 1, 0, 2, 0, 0x21])
                .build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "RARP (0x8035)",
            eth().ethertype(0x8035, &[0; 28]).build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "802.3 length field + LLC (STP BPDU)",
            Frame::eth(HOST, [0x01, 0x80, 0xc2, 0, 0, 0])
                .ethertype(0x0026, &[0x42, 0x42, 0x03, 0, 0, 0])
                .pad_to(ETH_ZLEN)
                .build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "bare 14-byte Ethernet header, unknown EtherType",
            eth().ethertype(ethertype::LLDP, &[]).build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
    ]);
}

#[test]
fn ipv6_neighbour_discovery() {
    let nd_mac = |dst: Ipv6Addr| Frame::eth(HOST, ipv6_multicast_mac(dst));
    let sn = solicited_node(FAR6);
    run_table(vec![
        (
            "router solicitation fe80::1 -> ff02::2",
            nd(
                nd_mac(ALL_ROUTERS).ipv6(LL6, ALL_ROUTERS),
                icmpv6::ROUTER_SOLICIT,
                Ipv6Addr::UNSPECIFIED,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "router advertisement fe80::1 -> ff02::1",
            nd(
                nd_mac(ALL_NODES).ipv6(LL6, ALL_NODES),
                icmpv6::ROUTER_ADVERT,
                Ipv6Addr::UNSPECIFIED,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour solicitation to the solicited-node group",
            nd(nd_mac(sn).ipv6(H6, sn), icmpv6::NEIGHBOR_SOLICIT, FAR6),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour solicitation for DAD (from ::)",
            nd(
                nd_mac(sn).ipv6(Ipv6Addr::UNSPECIFIED, sn),
                icmpv6::NEIGHBOR_SOLICIT,
                FAR6,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour solicitation unicast (NUD), global addresses",
            nd(ip6(), icmpv6::NEIGHBOR_SOLICIT, FAR6),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour advertisement unicast fe80:: -> fe80::",
            nd(
                eth().ipv6(LL6, "fe80::2".parse().expect("addr")),
                icmpv6::NEIGHBOR_ADVERT,
                LL6,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour advertisement unsolicited to ff02::1",
            nd(
                nd_mac(ALL_NODES).ipv6(H6, ALL_NODES),
                icmpv6::NEIGHBOR_ADVERT,
                H6,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "redirect fe80::1 -> global",
            nd(eth().ipv6(LL6, H6), icmpv6::REDIRECT, FAR6),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "neighbour solicitation to L2 broadcast",
            nd(
                Frame::eth(HOST, BROADCAST).ipv6(H6, sn),
                icmpv6::NEIGHBOR_SOLICIT,
                FAR6,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
    ]);
}

#[test]
fn multicast_and_broadcast() {
    let ospf = Ipv4Addr::new(224, 0, 0, 5);
    let group = Ipv4Addr::new(239, 1, 2, 3);
    let dhcp6 = "ff05::1:3".parse().expect("addr");
    run_table(vec![
        (
            "L2 broadcast dst, IPv4 UDP to a unicast address",
            Frame::eth(HOST, BROADCAST).ipv4(H4, FAR4).udp(1, 2).build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "L2 multicast 01:00:5e dst, IPv4 TCP to a unicast address",
            Frame::eth(HOST, ipv4_multicast_mac(group))
                .ipv4(H4, FAR4)
                .tcp(1, 2, tcp::SYN)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Tcp),
        ),
        (
            "L2 group bit only (03:00:00:00:00:01), IPv4",
            Frame::eth(HOST, [0x03, 0, 0, 0, 0, 1])
                .ipv4(H4, FAR4)
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Icmp),
        ),
        (
            "L2 multicast 33:33 dst, IPv6 UDP to a unicast address",
            Frame::eth(HOST, ipv6_multicast_mac(ALL_NODES))
                .ipv6(H6, FAR6)
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv4 OSPF hello to 224.0.0.5",
            Frame::eth(HOST, ipv4_multicast_mac(ospf))
                .ipv4(H4, ospf)
                .ttl(1)
                .protocol(89)
                .payload(&[0; 44])
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Other),
        ),
        (
            "IPv4 to 224.0.0.5 with a unicast dst MAC",
            eth().ipv4(H4, ospf).protocol(89).payload(&[0; 44]).build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Other),
        ),
        (
            "IPv4 UDP to 239.1.2.3",
            Frame::eth(HOST, ipv4_multicast_mac(group))
                .ipv4(H4, group)
                .udp(5000, 5000)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 DHCP discover 0.0.0.0 -> 255.255.255.255",
            Frame::eth(HOST, BROADCAST)
                .ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
                .udp(68, 67)
                .payload(&[0; 240])
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 to 255.255.255.255 with a unicast dst MAC",
            eth().ipv4(H4, Ipv4Addr::BROADCAST).udp(1, 2).build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv6 echo to ff02::1",
            Frame::eth(HOST, ipv6_multicast_mac(ALL_NODES))
                .ipv6(H6, ALL_NODES)
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 echo to ff02::1 with a unicast dst MAC",
            eth().ipv6(H6, ALL_NODES).icmp_echo(1, 1).build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 DHCPv6 to ff05::1:3",
            Frame::eth(HOST, ipv6_multicast_mac(dhcp6))
                .ipv6(H6, dhcp6)
                .udp(546, 547)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Udp),
        ),
    ]);
}

#[test]
fn link_local() {
    let ll4 = Ipv4Addr::new(169, 254, 1, 1);
    run_table(vec![
        (
            "IPv4 from 169.254.1.1",
            eth().ipv4(ll4, FAR4).udp(1, 2).build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 to 169.254.1.1",
            eth().ipv4(H4, ll4).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 169.254.0.0 -> 169.254.255.255",
            eth()
                .ipv4(
                    Ipv4Addr::new(169, 254, 0, 0),
                    Ipv4Addr::new(169, 254, 255, 255),
                )
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv4Icmp),
        ),
        (
            "IPv6 from fe80::1",
            eth().ipv6(LL6, FAR6).udp(1, 2).build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv6 to fe80::1",
            eth().ipv6(H6, LL6).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Tcp),
        ),
        (
            "IPv6 echo fe80::1 -> fe80::2",
            eth()
                .ipv6(LL6, "fe80::2".parse().expect("addr"))
                .icmp_echo(1, 1)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv6 to febf:ffff:: (top of fe80::/10)",
            eth()
                .ipv6(H6, "febf:ffff::1".parse().expect("addr"))
                .udp(1, 2)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Udp),
        ),
    ]);
}

#[test]
fn ipv4_options_and_fragments() {
    // Router Alert (RFC 2113) and Record Route (RFC 791) with 2 slots.
    let router_alert = [0x94, 0x04, 0, 0];
    let record_route = [0x07, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    run_table(vec![
        (
            "IPv4 Router Alert option",
            ip4().options(&router_alert).udp(1, 2).build(),
            PASS,
            R::Ipv4Options,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 Record Route option",
            ip4().options(&record_route).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::Ipv4Options,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 40 bytes of options (IHL 15)",
            ip4().options(&[1; 40]).icmp_echo(1, 1).build(),
            PASS,
            R::Ipv4Options,
            Some(C::Ipv4Icmp),
        ),
        (
            "IPv4 first fragment (MF, offset 0) UDP",
            ip4()
                .id(77)
                .more_fragments()
                .udp(1, 2)
                .payload(&[0; 64])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 first fragment (MF, offset 0) TCP",
            ip4()
                .id(77)
                .more_fragments()
                .tcp(1, 2, tcp::ACK)
                .payload(&[0; 64])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 middle fragment (MF, offset 185), no L4 header",
            ip4()
                .id(77)
                .more_fragments()
                .fragment_offset(185)
                .protocol(proto::UDP)
                .payload(&[0; 64])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 last fragment (offset 8), 3 bytes: shorter than a TCP header",
            ip4()
                .id(77)
                .fragment_offset(8)
                .protocol(proto::TCP)
                .payload(&[1, 2, 3])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Tcp),
        ),
        (
            "IPv4 last fragment (offset 1), no payload, ICMP",
            ip4().fragment_offset(1).protocol(proto::ICMP).build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Icmp),
        ),
        (
            "IPv4 fragment with DF (offset 0x1fff)",
            ip4()
                .dont_fragment()
                .fragment_offset(0x1fff)
                .protocol(proto::GRE)
                .payload(&[0; 8])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv4Other),
        ),
    ]);
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    let frag = |offset, more| Ipv6Ext::fragment(offset, more, 0xdead_beef);
    let srh = Ipv6Ext::Srh {
        segments_left: 1,
        segments: vec![FAR6, "2001:db8:3::1".parse().expect("addr")],
    };
    let mut cases: Vec<Case> = vec![
        (
            "IPv6 Fragment header, first fragment with UDP",
            ip6().ext(frag(0, true)).udp(1, 2).payload(&[0; 32]).build(),
            PASS,
            R::Fragment,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 Fragment header, later fragment without L4",
            ip6()
                .ext(frag(100, false))
                .protocol(proto::TCP)
                .payload(&[0; 3])
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 atomic fragment (offset 0, M 0)",
            ip6().ext(frag(0, false)).icmp_echo(1, 1).build(),
            PASS,
            R::Fragment,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 hop-by-hop",
            ip6().ext(Ipv6Ext::hop_by_hop()).udp(1, 2).build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 hop-by-hop router alert, TCP",
            ip6()
                .ext(Ipv6Ext::HopByHop(vec![5, 2, 0, 0]))
                .tcp(1, 2, tcp::SYN)
                .build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 routing header type 2",
            ip6()
                .ext(Ipv6Ext::routing_type2(
                    "2001:db8:9::9".parse().expect("addr"),
                ))
                .udp(1, 2)
                .build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 segment routing header",
            ip6().ext(srh).tcp(1, 2, tcp::SYN).build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 destination options",
            ip6().ext(Ipv6Ext::dest_opts()).icmp_echo(1, 1).build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 hop-by-hop, routing, destination options",
            ip6()
                .ext(Ipv6Ext::hop_by_hop())
                .ext(Ipv6Ext::Routing {
                    routing_type: 0,
                    segments_left: 0,
                    data: vec![0; 4],
                })
                .ext(Ipv6Ext::dest_opts())
                .udp(1, 2)
                .build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            // Only the first next header is looked at (parse.rs: "not
            // walked yet"), so a Fragment header behind hop-by-hop counts
            // as an extension header, not as a fragment. Both punt.
            "IPv6 hop-by-hop then Fragment: first header decides",
            ip6()
                .ext(Ipv6Ext::hop_by_hop())
                .ext(frag(0, true))
                .udp(1, 2)
                .build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 Fragment then destination options: first header decides",
            ip6()
                .ext(frag(0, true))
                .ext(Ipv6Ext::dest_opts())
                .udp(1, 2)
                .build(),
            PASS,
            R::Fragment,
            Some(C::Ipv6Other),
        ),
    ];
    // The rest of the "extension header" next-header values the program
    // lists (RFC 8200 4, IANA): AH, ESP, Mobility, HIP, Shim6.
    for (desc, nh) in [
        ("IPv6 AH (51)", proto::AH),
        ("IPv6 ESP (50)", proto::ESP),
        ("IPv6 Mobility header (135)", 135),
        ("IPv6 HIP (139)", 139),
        ("IPv6 Shim6 (140)", 140),
    ] {
        cases.push((
            desc,
            ip6()
                .protocol(nh)
                .payload(&[proto::NONE, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .build(),
            PASS,
            R::Ipv6ExtHeader,
            Some(C::Ipv6Other),
        ));
    }
    run_table(cases);
}

/// "First match wins" (parse.rs): each row has two or more exceptions and
/// expects the earliest in the documented order.
#[test]
fn exception_precedence() {
    let ll4 = Ipv4Addr::new(169, 254, 7, 7);
    let ospf = Ipv4Addr::new(224, 0, 0, 5);
    let ra = [0x94, 0x04, 0, 0];
    run_table(vec![
        (
            "ARP to L2 broadcast: ARP before multicast",
            Frame::eth(HOST, BROADCAST).arp_request(H4, FAR4).build(),
            PASS,
            R::Arp,
            Some(C::Arp),
        ),
        (
            "LLDP to an L2 group: unknown EtherType before multicast",
            Frame::eth(HOST, [0x01, 0x80, 0xc2, 0, 0, 0x0e])
                .ethertype(ethertype::LLDP, &[0; 16])
                .build(),
            PASS,
            R::UnknownEtherType,
            Some(C::Other),
        ),
        (
            "three tags, L2 broadcast, IPv4 to 224.0.0.5: too deep before multicast",
            Frame::eth(HOST, BROADCAST)
                .vlan(1)
                .vlan(2)
                .vlan(3)
                .ipv4(H4, ospf)
                .udp(1, 2)
                .build(),
            PASS,
            R::VlanTooDeep,
            Some(C::Other),
        ),
        (
            "RS fe80:: -> ff02::2 on 33:33: ND before multicast and link-local",
            nd(
                Frame::eth(HOST, ipv6_multicast_mac(ALL_ROUTERS)).ipv6(LL6, ALL_ROUTERS),
                icmpv6::ROUTER_SOLICIT,
                Ipv6Addr::UNSPECIFIED,
            ),
            PASS,
            R::Ipv6Nd,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv4 169.254 -> 224.0.0.5 with options and MF: multicast first",
            Frame::eth(HOST, ipv4_multicast_mac(ospf))
                .ipv4(ll4, ospf)
                .options(&ra)
                .more_fragments()
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "L2 broadcast, IPv4 from 169.254: L2 multicast before link-local",
            Frame::eth(HOST, BROADCAST)
                .ipv4(ll4, FAR4)
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "L2 multicast, IPv4 with options: multicast before options",
            Frame::eth(HOST, BROADCAST)
                .ipv4(H4, FAR4)
                .options(&ra)
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "L2 multicast, IPv4 later fragment: multicast before fragment",
            Frame::eth(HOST, BROADCAST)
                .ipv4(H4, FAR4)
                .fragment_offset(3)
                .protocol(proto::UDP)
                .payload(&[0; 8])
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
        (
            "L2 multicast, IPv6 hop-by-hop: multicast before extension header",
            Frame::eth(HOST, ipv6_multicast_mac(ALL_NODES))
                .ipv6(H6, FAR6)
                .ext(Ipv6Ext::hop_by_hop())
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Other),
        ),
        (
            "L2 multicast, IPv6 Fragment: multicast before fragment",
            Frame::eth(HOST, ipv6_multicast_mac(ALL_NODES))
                .ipv6(H6, FAR6)
                .ext(Ipv6Ext::fragment(0, true, 1))
                .udp(1, 2)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Other),
        ),
        (
            "MLDv2 report with hop-by-hop to ff02::16: multicast before extension header",
            Frame::eth(HOST, ipv6_multicast_mac("ff02::16".parse().expect("addr")))
                .ipv6(LL6, "ff02::16".parse().expect("addr"))
                .hop_limit(1)
                .ext(Ipv6Ext::HopByHop(vec![5, 2, 0, 0]))
                .icmpv6(143, 0)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 echo fe80::1 -> ff02::1: multicast before link-local",
            eth().ipv6(LL6, ALL_NODES).icmp_echo(1, 1).build(),
            PASS,
            R::Multicast,
            Some(C::Ipv6Icmp),
        ),
        (
            "IPv4 169.254 with options and MF: link-local before options and fragment",
            eth()
                .ipv4(ll4, FAR4)
                .options(&ra)
                .more_fragments()
                .udp(1, 2)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv6 fe80:: with a Fragment header: link-local before fragment",
            eth()
                .ipv6(LL6, FAR6)
                .ext(Ipv6Ext::fragment(0, true, 1))
                .udp(1, 2)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Other),
        ),
        (
            "IPv6 to fe80:: with hop-by-hop: link-local before extension header",
            eth()
                .ipv6(H6, LL6)
                .ext(Ipv6Ext::hop_by_hop())
                .udp(1, 2)
                .build(),
            PASS,
            R::LinkLocal,
            Some(C::Ipv6Other),
        ),
        (
            "IPv4 options and MF: options before fragment",
            ip4().options(&ra).more_fragments().udp(1, 2).build(),
            PASS,
            R::Ipv4Options,
            Some(C::Ipv4Udp),
        ),
        (
            "IPv4 options on a later fragment: options before fragment",
            ip4()
                .options(&ra)
                .fragment_offset(9)
                .protocol(proto::TCP)
                .payload(&[0; 8])
                .build(),
            PASS,
            R::Ipv4Options,
            Some(C::Ipv4Tcp),
        ),
    ]);
}

/// Frames the kernel accepts for a test run but the program must refuse:
/// bad versions and lengths. Malformed beats every other reason.
#[test]
fn malformed_headers_are_dropped() {
    let ospf = Ipv4Addr::new(224, 0, 0, 5);
    let malformed = |desc, frame| -> Case { (desc, frame, DROP, R::Malformed, None) };
    run_raw_table(vec![
        malformed("IPv4 version 5", ip4().version(5).udp(1, 2).build()),
        malformed(
            "IPv4 version 6 in an IPv4 EtherType",
            ip4().version(6).udp(1, 2).build(),
        ),
        malformed("IPv4 version 0", ip4().version(0).udp(1, 2).build()),
        malformed("IPv4 IHL 4", ip4().ihl(4).udp(1, 2).build()),
        malformed("IPv4 IHL 0", ip4().ihl(0).udp(1, 2).build()),
        malformed(
            "IPv4 total length 19 < IHL 20",
            ip4().total_length(19).udp(1, 2).build(),
        ),
        malformed(
            "IPv4 total length 0",
            ip4().total_length(0).udp(1, 2).build(),
        ),
        malformed(
            "IPv4 total length 23 < IHL 24 (options)",
            ip4()
                .options(&[0x94, 4, 0, 0])
                .total_length(23)
                .udp(1, 2)
                .build(),
        ),
        malformed(
            "IPv4 IHL 15 but a 20-byte header and 8 bytes of UDP",
            ip4().ihl(15).total_length(60).udp(1, 2).build(),
        ),
        malformed(
            "IPv4 total length one past the frame",
            ip4().total_length(20 + 8 + 1).udp(1, 2).build(),
        ),
        malformed(
            "IPv4 TCP data offset 4",
            ip4().tcp(1, 2, tcp::SYN).data_offset(4).build(),
        ),
        malformed(
            "IPv4 TCP data offset 0",
            ip4().tcp(1, 2, tcp::SYN).data_offset(0).build(),
        ),
        malformed(
            "IPv4 TCP data offset 15 past the frame end",
            ip4()
                .tcp(1, 2, tcp::SYN)
                .data_offset(15)
                .payload(&[0; 39])
                .build(),
        ),
        malformed(
            "IPv4 first fragment whose UDP header is cut",
            ip4()
                .more_fragments()
                .protocol(proto::UDP)
                .payload(&[0; 7])
                .build(),
        ),
        malformed(
            "IPv4 first fragment whose TCP header is cut",
            ip4()
                .more_fragments()
                .protocol(proto::TCP)
                .payload(&[0; 19])
                .build(),
        ),
        malformed(
            "IPv4 ICMP with 7 bytes of header",
            ip4()
                .protocol(proto::ICMP)
                .payload(&[8, 0, 0, 0, 0, 0, 0])
                .build(),
        ),
        malformed(
            "IPv6 version 4 in an IPv6 EtherType",
            ip6().version(4).udp(1, 2).build(),
        ),
        malformed("IPv6 version 0", ip6().version(0).udp(1, 2).build()),
        malformed("IPv6 version 7", ip6().version(7).udp(1, 2).build()),
        malformed(
            "IPv6 payload length one past the frame",
            ip6().payload_length(8 + 1).udp(1, 2).build(),
        ),
        malformed(
            "IPv6 payload length 0xffff",
            ip6().payload_length(0xffff).udp(1, 2).build(),
        ),
        malformed(
            "IPv6 TCP data offset 4",
            ip6().tcp(1, 2, tcp::SYN).data_offset(4).build(),
        ),
        malformed(
            "IPv6 TCP data offset 6 past the frame end",
            ip6().tcp(1, 2, tcp::SYN).data_offset(6).build(),
        ),
        malformed(
            "IPv6 ICMPv6 with 4 bytes of header",
            ip6()
                .protocol(proto::ICMPV6)
                .payload(&[icmpv6::NEIGHBOR_SOLICIT, 0, 0, 0])
                .build(),
        ),
        malformed(
            "IPv6 UDP with 7 bytes of header",
            ip6().protocol(proto::UDP).payload(&[0; 7]).build(),
        ),
        // Malformed wins over every exception.
        malformed(
            "IPv4 to 224.0.0.5 on L2 multicast, version 5",
            Frame::eth(HOST, ipv4_multicast_mac(ospf))
                .ipv4(H4, ospf)
                .version(5)
                .udp(1, 2)
                .build(),
        ),
        malformed(
            "IPv4 169.254 with options and MF, total length past the frame",
            eth()
                .ipv4(Ipv4Addr::new(169, 254, 1, 1), FAR4)
                .options(&[1; 4])
                .more_fragments()
                .total_length(200)
                .udp(1, 2)
                .build(),
        ),
        malformed(
            "IPv6 neighbour solicitation, payload length past the frame",
            eth()
                .ipv6(H6, solicited_node(FAR6))
                .payload_length(100)
                .icmpv6(icmpv6::NEIGHBOR_SOLICIT, 0)
                .payload(&FAR6.octets())
                .build(),
        ),
        malformed(
            "IPv6 fe80:: with a Fragment header, payload length past the frame",
            eth()
                .ipv6(LL6, FAR6)
                .ext(Ipv6Ext::fragment(0, true, 1))
                .payload_length(17)
                .udp(1, 2)
                .build(),
        ),
        malformed(
            "802.1Q IPv4 TCP data offset 3",
            eth()
                .vlan(5)
                .ipv4(H4, FAR4)
                .tcp(1, 2, tcp::SYN)
                .data_offset(3)
                .build(),
        ),
    ]);
}

/// For each well-formed frame, every truncation is dropped as malformed:
/// inside a header the parser reads, and past the headers too, because an IP
/// length then runs past the frame. ARP is the exception: the program reads
/// only its 8 fixed bytes, so a frame cut after them is still ARP.
#[test]
fn every_truncation_is_malformed() {
    let fixtures: Vec<(&str, Frame)> = vec![
        ("UDP/IPv4", ip4().udp(1234, 53).payload(b"abc")),
        (
            "TCP/IPv4 with options",
            ip4()
                .tcp(1, 2, tcp::SYN)
                .tcp_options(&[2, 4, 5, 0xb4])
                .payload(b"x"),
        ),
        ("ICMP/IPv4", ip4().icmp_echo(1, 1).payload(b"ping")),
        (
            "UDP/IPv4 with IP options",
            ip4().options(&[0x94, 4, 0, 0]).udp(1, 2).payload(b"y"),
        ),
        ("TCP/IPv6", ip6().tcp(1, 2, tcp::SYN).payload(b"z")),
        ("UDP/IPv6", ip6().udp(1, 2).payload(b"u")),
        ("ICMPv6 echo", ip6().icmp_echo(1, 1).payload(b"p")),
        (
            "ICMPv6 NS",
            eth()
                .ipv6(H6, solicited_node(FAR6))
                .icmpv6(icmpv6::NEIGHBOR_SOLICIT, 0)
                .payload(&FAR6.octets()),
        ),
        ("ARP", Frame::eth(HOST, BROADCAST).arp_request(H4, FAR4)),
        (
            "802.1Q UDP/IPv4",
            eth().vlan(10).ipv4(H4, FAR4).udp(1, 2).payload(b"v"),
        ),
        (
            "802.1ad + 802.1Q TCP/IPv4",
            eth()
                .service_vlan(100)
                .vlan(10)
                .ipv4(H4, FAR4)
                .tcp(1, 2, tcp::ACK)
                .payload(b"w"),
        ),
        (
            "802.1Q + 802.1Q UDP/IPv6",
            eth().vlan(1).vlan(2).ipv6(H6, FAR6).udp(1, 2).payload(b"q"),
        ),
    ];
    let mut h = Harness::new();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (name, frame) in &fixtures {
        let built = frame.assemble();
        let (bytes, layout) = (&built.bytes, &built.layout);
        // The last header the program reads ends here.
        let parsed_end = if layout.ether_type == ethertype::ARP {
            layout.l3_offset + 8
        } else {
            layout.payload_offset
        };
        assert!(
            parsed_end < bytes.len(),
            "{name}: fixture needs bytes past its headers"
        );
        // The kernel refuses a test-run frame shorter than an Ethernet
        // header (net/bpf/test_run.c bpf_test_init), so those never reach
        // the program; they must fail without counting anything.
        for len in 0..ETH_HLEN {
            let before = h.counters(SLOT);
            let result = testrun::run(h.dp.main_program().expect("main program"), &bytes[..len]);
            assert!(
                result.is_err(),
                "{name} cut to {len}: the kernel ran a frame shorter than Ethernet"
            );
            assert_eq!(
                h.counters(SLOT),
                before,
                "{name} cut to {len}: counters moved"
            );
        }
        for len in ETH_HLEN..bytes.len() {
            let cut = bytes[..len].to_vec();
            let (action, reason, class) =
                if len >= parsed_end && layout.ether_type == ethertype::ARP {
                    (PASS, R::Arp, Some(C::Arp))
                } else {
                    (DROP, R::Malformed, None)
                };
            let desc = if len < parsed_end {
                "cut inside the headers"
            } else {
                "cut inside the payload"
            };
            runs += 1;
            if let Some(f) = h.check(&(desc, cut, action, reason, class)) {
                failures.push(format!("{name} cut to {len} of {}: {f}", bytes.len()));
            }
        }
        // And whole, it is not malformed.
        let (out, _) = h.run(bytes);
        assert_eq!(out.action, PASS, "{name}: whole frame");
    }
    h.assert_slot0_untouched();
    println!("{runs} truncated frames run");
    assert!(
        failures.is_empty(),
        "{} truncations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A NIC pads short frames to 60 bytes; the IP length, not the frame
/// length, says where the packet ends (RFC 894), so padding is not an error.
#[test]
fn ethernet_padding_is_not_malformed() {
    run_table(vec![
        (
            "UDP/IPv4 (28-byte IP packet) padded to 60",
            ip4().udp(1, 2).pad_to(ETH_ZLEN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "ICMP/IPv4 padded to 60",
            ip4().icmp_echo(1, 1).pad_to(ETH_ZLEN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Icmp),
        ),
        (
            "TCP/IPv4 padded to 60",
            ip4().tcp(1, 2, tcp::RST).pad_to(ETH_ZLEN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Tcp),
        ),
        (
            "GRE/IPv4 (20-byte IP packet) padded to 60",
            ip4().protocol(proto::GRE).pad_to(ETH_ZLEN).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Other),
        ),
        (
            "802.1Q UDP/IPv4 padded to 64",
            eth().vlan(3).ipv4(H4, FAR4).udp(1, 2).pad_to(64).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "UDP/IPv4 with 100 bytes of trailer",
            ip4().udp(1, 2).pad_to(ETH_HLEN + 28 + 100).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv4Udp),
        ),
        (
            "UDP/IPv6 with 10 bytes of trailer",
            ip6().udp(1, 2).pad_to(ETH_HLEN + 48 + 10).build(),
            PASS,
            R::NotForwarded,
            Some(C::Ipv6Udp),
        ),
        (
            "IPv4 to 224.0.0.5 padded",
            eth()
                .ipv4(H4, Ipv4Addr::new(224, 0, 0, 5))
                .udp(1, 2)
                .pad_to(ETH_ZLEN)
                .build(),
            PASS,
            R::Multicast,
            Some(C::Ipv4Udp),
        ),
    ]);
}

/// Frames whose L4 header is missing from the IP packet, with the Ethernet
/// padding or trailer behind it long enough to look like one. The IP length
/// says where the packet ends, so the L4 header is cut: malformed, like the
/// same frame without the padding. (Regression: `check_l4` once bounded L4
/// headers by the frame end instead of the IP packet end.)
#[test]
fn l4_header_in_the_padding_is_malformed() {
    let malformed = |desc, frame| -> Case { (desc, frame, DROP, R::Malformed, None) };
    run_raw_table(vec![
        malformed(
            "IPv4 TCP with no TCP bytes (total length 20), padding shaped like a TCP header",
            // Data offset 5 where the TCP header would be, so the padding
            // passes the program's data offset check too.
            overwrite(
                ip4().protocol(proto::TCP).pad_to(ETH_ZLEN).build(),
                ETH_HLEN + 20 + 12,
                &[0x50],
            ),
        ),
        malformed(
            "IPv4 UDP with 4 UDP bytes (total length 24), padded to 60",
            ip4()
                .protocol(proto::UDP)
                .payload(&[0, 1, 0, 2])
                .pad_to(ETH_ZLEN)
                .build(),
        ),
        malformed(
            "IPv4 ICMP with no ICMP bytes, padded to 60",
            ip4().protocol(proto::ICMP).pad_to(ETH_ZLEN).build(),
        ),
        malformed(
            "IPv4 TCP data offset 8 with 20 TCP bytes, padded to 72",
            ip4()
                .tcp(1, 2, tcp::SYN)
                .data_offset(8)
                .pad_to(ETH_HLEN + 20 + 32 + 6)
                .build(),
        ),
        malformed(
            "IPv6 UDP with payload length 0 and an 8-byte trailer",
            ip6().protocol(proto::UDP).pad_to(ETH_HLEN + 40 + 8).build(),
        ),
        malformed(
            "IPv6 ICMPv6 with payload length 0 and a trailer shaped like an NS",
            overwrite(
                eth()
                    .ipv6(H6, solicited_node(FAR6))
                    .protocol(proto::ICMPV6)
                    .pad_to(ETH_HLEN + 40 + 24)
                    .build(),
                ETH_HLEN + 40,
                &[icmpv6::NEIGHBOR_SOLICIT],
            ),
        ),
    ]);
}

#[test]
fn run_repeat_reports_a_sane_duration() {
    let mut h = Harness::new();
    let frame = ip4().udp(1234, 53).payload(&[0; 18]).build();
    let out = testrun::run_repeat(h.dp.main_program().expect("main program"), &frame, 1000)
        .expect("BPF_PROG_TEST_RUN with repeat");
    println!(
        "xdpgate: {:?} per run over 1000 runs ({} bytes, {:?})",
        out.duration,
        frame.len(),
        out.action
    );
    assert_eq!(out.action, PASS);
    assert_eq!(out.output, frame);
    assert!(out.duration > Duration::ZERO, "duration {:?}", out.duration);
    assert!(
        out.duration < Duration::from_millis(1),
        "duration {:?}",
        out.duration
    );
    let c = h.counters(SLOT);
    assert_eq!(c.reason(R::NotForwarded).packets, 1000);
    assert_eq!(c.class(C::Ipv4Udp).packets, 1000);
}
