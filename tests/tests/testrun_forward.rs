//! Tier 2, forwarding: the real, verified XDP program run through
//! `BPF_PROG_TEST_RUN` on frames that arrive on a real port (eth1, eth2) of
//! a lab router namespace, against a FIB each test sets up.
//!
//! Fixtures are data, Katran style: a description, the input frame, the
//! expected verdict and reason, and the expected output frame. The output
//! is built independently with the frame builder (new MACs, TTL or hop
//! limit minus one with the IPv4 header checksum computed from scratch,
//! VLAN tags as the egress needs them) and compared byte for byte; the
//! output's IPv4 header and L4 checksums are verified on their own too.
//! For every row exactly one reason counter of one slot must move, by one
//! frame of the output's length.
//!
//! Test-run mode reports `XDP_REDIRECT` without performing it
//! (net/bpf/test_run.c), so nothing leaves the namespace. VLAN
//! sub-interfaces are synthetic Fib entries ([`Router::vlan`]): this kernel
//! has no 802.1Q devices, and XDP needs only the Fib's view of them.
//!
//! Needs root (namespaces, CAP_BPF).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dataplane_common::{Action, Reason as R};
use xdpgate::{
    dataplane::{Count, DataplaneError},
    fib::{FibError, NextHopSpec, RouteTarget},
};
use xdpgate_tests::{
    fibtest::{Router, in_router, ip_in, prefix},
    frames::{
        Frame, IPV4_HLEN, IPV6_HLEN, Layout, Mac, UDP_HLEN, ethertype, tcp, verify_checksums,
        verify_ipv4_checksum, verify_l4_checksum,
    },
};

// --- Addresses: the lab's, plus far networks in 198.19/16 and 2001:db8:NN::/48.

const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const R1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const GW1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
const GW2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
/// 198.19.10.0/24 via GW2 dev eth2.
const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 5);
/// 198.19.20.0/24 via GW1 dev eth1: back out of the port it came in on.
const BACK: Ipv4Addr = Ipv4Addr::new(198, 19, 20, 5);
const NO_ROUTE: Ipv4Addr = Ipv4Addr::new(198, 19, 99, 9);
const BLACKHOLE: Ipv4Addr = Ipv4Addr::new(198, 19, 66, 6);
const UNREACHABLE: Ipv4Addr = Ipv4Addr::new(198, 19, 67, 7);
const PROHIBIT: Ipv4Addr = Ipv4Addr::new(198, 19, 68, 8);
/// 198.19.70.0/24 via 198.18.2.253 dev eth2, a gateway with no neighbour.
const NO_NEIGH: Ipv4Addr = Ipv4Addr::new(198, 19, 70, 7);
/// On the connected eth2 subnet, no neighbour entry.
const NO_NEIGH_CONNECTED: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 77);

const fn v6(a: u16, b: u16, c: u16, last: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, last)
}
const H1_6: Ipv6Addr = v6(0x2001, 0xdb8, 1, 2);
const H2_6: Ipv6Addr = v6(0x2001, 0xdb8, 2, 2);
const R1_6: Ipv6Addr = v6(0x2001, 0xdb8, 1, 1);
const GW1_6: Ipv6Addr = v6(0x2001, 0xdb8, 1, 0xfe);
const GW2_6: Ipv6Addr = v6(0x2001, 0xdb8, 2, 0xfe);
const FAR_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x10, 5);
const BACK_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x20, 5);
const NO_ROUTE_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x99, 9);
const BLACKHOLE_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x66, 6);
const UNREACHABLE_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x67, 7);
const PROHIBIT_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x68, 8);
const NO_NEIGH_6: Ipv6Addr = v6(0x2001, 0xdb8, 0x70, 7);
const NO_NEIGH_CONNECTED_6: Ipv6Addr = v6(0x2001, 0xdb8, 2, 0x77);

// --- MACs: every neighbour its own, IPv6 ones apart from IPv4 ones, so a
// wrong neighbour or a family mix-up shows in the output.

const H1_MAC: Mac = [0x02, 0, 0, 0x04, 0x01, 0x02];
const H2_MAC: Mac = [0x02, 0, 0, 0x04, 0x02, 0x02];
const GW1_MAC: Mac = [0x02, 0, 0, 0x04, 0x01, 0xfe];
const GW2_MAC: Mac = [0x02, 0, 0, 0x04, 0x02, 0xfe];
const H2_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x02, 0x02];
const GW1_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x01, 0xfe];
const GW2_MAC_6: Mac = [0x02, 0, 0, 0x06, 0x02, 0xfe];

/// The router's ports in the lab.
const PORTS: [&str; 2] = ["eth1", "eth2"];

/// The FIB most tests start from: the lab's connected subnets and own
/// addresses, far networks via a gateway on each port, the special route
/// types, and a route whose gateway has no neighbour entry.
#[track_caller]
fn base_fib(r: &mut Router) {
    r.connected("198.18.1.0/24", "eth1");
    r.connected("198.18.2.0/24", "eth2");
    r.connected("2001:db8:1::/64", "eth1");
    r.connected("2001:db8:2::/64", "eth2");
    for own in [
        "198.18.1.1/32",
        "198.18.2.1/32",
        "2001:db8:1::1/128",
        "2001:db8:2::1/128",
    ] {
        r.route(own, RouteTarget::Local);
    }
    r.via("198.19.10.0/24", &GW2.to_string(), "eth2");
    r.via("198.19.20.0/24", &GW1.to_string(), "eth1");
    r.via("198.19.70.0/24", "198.18.2.253", "eth2");
    r.via("2001:db8:10::/48", &GW2_6.to_string(), "eth2");
    r.via("2001:db8:20::/48", &GW1_6.to_string(), "eth1");
    r.via("2001:db8:70::/48", "2001:db8:2::fd", "eth2");
    for (net, target) in [
        ("198.19.66.0/24", RouteTarget::Blackhole),
        ("198.19.67.0/24", RouteTarget::Unreachable),
        ("198.19.68.0/24", RouteTarget::Prohibit),
        ("2001:db8:66::/48", RouteTarget::Blackhole),
        ("2001:db8:67::/48", RouteTarget::Unreachable),
        ("2001:db8:68::/48", RouteTarget::Prohibit),
    ] {
        r.route(net, target);
    }
    r.neigh("eth1", &GW1.to_string(), GW1_MAC);
    r.neigh("eth2", &GW2.to_string(), GW2_MAC);
    r.neigh("eth2", "198.18.2.2", H2_MAC);
    r.neigh("eth1", &GW1_6.to_string(), GW1_MAC_6);
    r.neigh("eth2", &GW2_6.to_string(), GW2_MAC_6);
    r.neigh("eth2", "2001:db8:2::2", H2_MAC_6);
}

/// A fresh lab router with eth1 and eth2 managed and [`base_fib`] in place.
fn with_base<T: Send>(f: impl FnOnce(&mut Router) -> T + Send) -> T {
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            base_fib(&mut r);
            f(&mut r)
        },
    )
}

// --- Frames -----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum L4 {
    Udp,
    Tcp,
    Icmp,
}

/// What a fixture carries above L2. The TTL is given when building, so the
/// same body makes the input and, independently, the expected output.
#[derive(Clone, Copy, Debug)]
struct Body {
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    sport: u16,
    /// Bytes after the L4 header.
    payload: usize,
}

impl Body {
    fn new(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, l4: L4) -> Self {
        Body {
            src: src.into(),
            dst: dst.into(),
            l4,
            sport: 40_000,
            payload: 27,
        }
    }

    fn udp(src: impl Into<IpAddr>, dst: impl Into<IpAddr>) -> Self {
        Self::new(src, dst, L4::Udp)
    }

    fn sport(mut self, sport: u16) -> Self {
        self.sport = sport;
        self
    }

    /// A UDP body whose IP packet is `len` bytes long (header included).
    #[track_caller]
    fn udp_sized(src: impl Into<IpAddr>, dst: impl Into<IpAddr>, len: usize) -> Self {
        let b = Self::udp(src, dst);
        let ip = if b.dst.is_ipv4() {
            IPV4_HLEN
        } else {
            IPV6_HLEN
        };
        Body {
            payload: len - ip - UDP_HLEN,
            ..b
        }
    }

    #[track_caller]
    fn on(self, l2: Frame, ttl: u8) -> Vec<u8> {
        let f = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => l2.ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => l2.ipv6(s, d),
            _ => panic!("mixed families in {self:?}"),
        };
        let f = match self.l4 {
            L4::Udp => f.udp(self.sport, 53),
            L4::Tcp => f.tcp(self.sport, 443, tcp::ACK | tcp::PSH),
            L4::Icmp => f.icmp_echo(0x1234, 7),
        };
        let payload: Vec<u8> = (0..self.payload).map(|i| (i * 7 + 3) as u8).collect();
        f.ttl(ttl).payload(&payload).build()
    }
}

/// An Ethernet header with 802.1Q tags given as TCIs, outermost first.
fn l2(src: Mac, dst: Mac, tcis: &[u16]) -> Frame {
    tcis.iter()
        .fold(Frame::eth(src, dst), |f, &tci| f.tag(ethertype::VLAN, tci))
}

/// A TCI from priority, drop eligible and VLAN id (IEEE 802.1Q 9.6).
const fn tci(pcp: u16, dei: bool, vid: u16) -> u16 {
    (pcp << 13) | ((dei as u16) << 12) | vid
}

// --- Fixtures ---------------------------------------------------------------

struct Case {
    desc: String,
    /// The port the frame arrives on.
    ingress: &'static str,
    input: Vec<u8>,
    action: Action,
    reason: R,
    /// The interface it is counted under: a sub-interface for a tagged
    /// frame, the port otherwise.
    counted: String,
    output: Vec<u8>,
}

impl Case {
    fn new(desc: impl Into<String>, ingress: &'static str, input: Vec<u8>) -> Self {
        Case {
            desc: desc.into(),
            ingress,
            output: input.clone(),
            input,
            action: Action::Aborted,
            reason: R::Malformed,
            counted: ingress.to_owned(),
        }
    }

    fn counted(mut self, iface: &str) -> Self {
        self.counted = iface.to_owned();
        self
    }

    /// Redirected to another port, as `output`.
    fn forwarded(self, output: Vec<u8>) -> Self {
        Case {
            action: Action::Redirect,
            reason: R::Forwarded,
            output,
            ..self
        }
    }

    /// Sent back out of the ingress port (`XDP_TX`), as `output`.
    fn transmitted(self, output: Vec<u8>) -> Self {
        Case {
            action: Action::Tx,
            reason: R::Transmitted,
            output,
            ..self
        }
    }

    /// Handed to the kernel untouched.
    fn punted(self, reason: R) -> Self {
        Case {
            action: Action::Pass,
            reason,
            ..self
        }
    }

    /// Dropped, untouched.
    fn dropped(self, reason: R) -> Self {
        Case {
            action: Action::Drop,
            reason,
            ..self
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Where two frames differ, for a failure message.
fn frame_diff(got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "output differs from byte {first} (got {} bytes, want {}):\n      got  {}\n      want {}",
        got.len(),
        want.len(),
        hex(got),
        hex(want)
    )
}

/// Run one case; what went wrong, if anything.
fn check(r: &mut Router, c: &Case) -> Option<String> {
    let before = r.counters();
    let out = r.run(c.ingress, &c.input);
    let moved = r.counters().since(&before);
    let want_moved = vec![(
        r.slot(&c.counted),
        c.reason,
        Count {
            packets: 1,
            bytes: c.output.len() as u64,
        },
    )];
    let mut problems = String::new();
    if out.action != c.action {
        let _ = write!(
            problems,
            "\n    verdict {:?}, want {:?}",
            out.action, c.action
        );
    }
    if moved != want_moved {
        let _ = write!(
            problems,
            "\n    counters moved {moved:?}, want {want_moved:?}"
        );
    }
    if out.output != c.output {
        let _ = write!(problems, "\n    {}", frame_diff(&out.output, &c.output));
    }
    // The checksums on their own, not only through the expected frame.
    if matches!(out.action, Action::Redirect | Action::Tx) {
        let ipv4 = Layout::parse(&out.output).is_ok_and(|l| l.ether_type == ethertype::IPV4);
        if ipv4 && let Err(e) = verify_ipv4_checksum(&out.output) {
            let _ = write!(problems, "\n    output IPv4 header checksum: {e}");
        }
        if let Err(e) = verify_l4_checksum(&out.output) {
            let _ = write!(problems, "\n    output L4 checksum: {e}");
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{} (in on {}: {}){problems}",
            c.desc,
            c.ingress,
            hex(&c.input)
        )
    })
}

/// Run every case and fail with every mismatch at once. Fixtures must be
/// sound frames, expected outputs too.
#[track_caller]
fn run_cases(r: &mut Router, cases: &[Case]) {
    for c in cases {
        verify_checksums(&c.input)
            .unwrap_or_else(|e| panic!("{}: input fixture is not a valid frame: {e}", c.desc));
        verify_checksums(&c.output)
            .unwrap_or_else(|e| panic!("{}: expected output is not a valid frame: {e}", c.desc));
    }
    let failures: Vec<String> = cases.iter().filter_map(|c| check(r, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("{} cases passed", cases.len());
}

// --- Tests ------------------------------------------------------------------

#[test]
fn unicast_is_redirected_with_new_macs_and_ttl_minus_one() {
    with_base(|r| {
        let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
        let in1 = || l2(H1_MAC, eth1, &[]);
        let out2 = |to: Mac| l2(eth2, to, &[]);
        let mut cases = Vec::new();
        for (fam, src, far, gw_mac, h2, h2_mac) in [
            (
                "IPv4",
                IpAddr::V4(H1),
                IpAddr::V4(FAR),
                GW2_MAC,
                IpAddr::V4(H2),
                H2_MAC,
            ),
            (
                "IPv6",
                H1_6.into(),
                FAR_6.into(),
                GW2_MAC_6,
                H2_6.into(),
                H2_MAC_6,
            ),
        ] {
            for l4 in [L4::Udp, L4::Tcp, L4::Icmp] {
                let b = Body::new(src, far, l4);
                cases.push(
                    Case::new(
                        format!("{fam} {l4:?} via a gateway on eth2"),
                        "eth1",
                        b.on(in1(), 64),
                    )
                    .forwarded(b.on(out2(gw_mac), 63)),
                );
            }
            let b = Body::udp(src, h2);
            cases.push(
                Case::new(
                    format!("{fam} to a host on the connected eth2 subnet"),
                    "eth1",
                    b.on(in1(), 64),
                )
                .forwarded(b.on(out2(h2_mac), 63)),
            );
            let b = Body::udp(src, far);
            cases.push(
                Case::new(format!("{fam} TTL 2 leaves with 1"), "eth1", b.on(in1(), 2))
                    .forwarded(b.on(out2(gw_mac), 1)),
            );
            cases.push(
                Case::new(
                    format!("{fam} TTL 255 leaves with 254"),
                    "eth1",
                    b.on(in1(), 255),
                )
                .forwarded(b.on(out2(gw_mac), 254)),
            );
            let b = Body::new(src, far, L4::Tcp).sport(1);
            cases.push(
                Case::new(format!("{fam} TCP with 1400 bytes of payload"), "eth1", {
                    let big = Body { payload: 1400, ..b };
                    big.on(in1(), 64)
                })
                .forwarded(Body { payload: 1400, ..b }.on(out2(gw_mac), 63)),
            );
        }
        // The other direction: in on eth2, out on eth1 to h1's network.
        r.neigh("eth1", "198.18.1.2", H1_MAC);
        r.neigh("eth1", "2001:db8:1::2", [0x02, 0, 0, 0x06, 0x01, 0x02]);
        for (fam, src, dst, mac) in [
            ("IPv4", IpAddr::V4(H2), IpAddr::V4(H1), H1_MAC),
            (
                "IPv6",
                H2_6.into(),
                H1_6.into(),
                [0x02, 0, 0, 0x06, 0x01, 0x02],
            ),
        ] {
            let b = Body::udp(src, dst);
            cases.push(
                Case::new(
                    format!("{fam} from eth2 to a host on eth1"),
                    "eth2",
                    b.on(l2(H2_MAC, eth2, &[]), 64),
                )
                .forwarded(b.on(l2(eth1, mac, &[]), 63)),
            );
        }
        run_cases(r, &cases);
    });
}

#[test]
fn egress_port_equal_to_ingress_port_is_xdp_tx() {
    with_base(|r| {
        let eth1 = r.mac("eth1");
        let mut cases = Vec::new();
        for (fam, src, dst, gw_mac) in [
            ("IPv4", IpAddr::V4(H1), IpAddr::V4(BACK), GW1_MAC),
            ("IPv6", H1_6.into(), BACK_6.into(), GW1_MAC_6),
        ] {
            for l4 in [L4::Udp, L4::Tcp, L4::Icmp] {
                let b = Body::new(src, dst, l4);
                cases.push(
                    Case::new(
                        format!("{fam} {l4:?} routed back out of eth1"),
                        "eth1",
                        b.on(l2(H1_MAC, eth1, &[]), 64),
                    )
                    .transmitted(b.on(l2(eth1, gw_mac, &[]), 63)),
                );
            }
        }
        run_cases(r, &cases);
    });
}

#[test]
fn vlans_are_pushed_popped_and_rewritten() {
    // A VLAN device may carry a MAC of its own; giving each one shows the
    // source MAC is the egress sub-interface's, not the port's.
    const V100_MAC: Mac = [0x02, 0, 0, 0x0a, 0x01, 0x00];
    const V200_MAC: Mac = [0x02, 0, 0, 0x0a, 0x02, 0x00];
    const V300_MAC: Mac = [0x02, 0, 0, 0x0a, 0x03, 0x00];
    const GW100_MAC: Mac = [0x02, 0, 0, 0x0b, 0x01, 0x00];
    const GW200_MAC: Mac = [0x02, 0, 0, 0x0b, 0x02, 0x00];
    const GW300_MAC: Mac = [0x02, 0, 0, 0x0b, 0x03, 0x00];
    with_base(|r| {
        r.vlan("eth1", 100, V100_MAC);
        r.vlan("eth1", 200, V200_MAC);
        r.vlan("eth2", 300, V300_MAC);
        // 198.19.30/24: untagged eth2; .31: eth2.300; .32: eth1.200;
        // .33: eth1.100 (back where a VLAN 100 frame came from).
        r.via("198.19.30.0/24", "198.18.2.254", "eth2");
        r.via("2001:db8:30::/48", "2001:db8:2::fe", "eth2");
        for (vid, dev, mac) in [
            (100, "eth1.100", GW100_MAC),
            (200, "eth1.200", GW200_MAC),
            (300, "eth2.300", GW300_MAC),
        ] {
            let net = match vid {
                100 => 33,
                200 => 32,
                _ => 31,
            };
            let (gw4, gw6) = (
                format!("198.18.{}.254", 100 + vid / 100),
                format!("2001:db8:{vid}::fe"),
            );
            r.via(&format!("198.19.{net}.0/24"), &gw4, dev);
            r.via(&format!("2001:db8:{net}::/48"), &gw6, dev);
            r.neigh(dev, &gw4, mac);
            let mut mac6 = mac;
            mac6[3] = 0x0c;
            r.neigh(dev, &gw6, mac6);
        }
        let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
        let mut cases = Vec::new();
        for fam in ["IPv4", "IPv6"] {
            let v4 = fam == "IPv4";
            let dst = |net: u8| -> IpAddr {
                if v4 {
                    Ipv4Addr::new(198, 19, net, 5).into()
                } else {
                    v6(
                        0x2001,
                        0xdb8,
                        u16::from_str_radix(&net.to_string(), 16).expect("hex"),
                        5,
                    )
                    .into()
                }
            };
            let src: IpAddr = if v4 { H1.into() } else { H1_6.into() };
            let src2: IpAddr = if v4 { H2.into() } else { H2_6.into() };
            let m6 = |mut m: Mac| {
                if !v4 {
                    m[3] = 0x0c;
                }
                m
            };
            let gw2 = if v4 { GW2_MAC } else { GW2_MAC_6 };
            let b = Body::udp(src, dst(30));
            cases.push(
                Case::new(
                    format!("{fam} tagged 100 in, untagged out of eth2 (pop)"),
                    "eth1",
                    b.on(l2(H1_MAC, V100_MAC, &[tci(5, false, 100)]), 64),
                )
                .counted("eth1.100")
                .forwarded(b.on(l2(eth2, gw2, &[]), 63)),
            );
            let b = Body::udp(src, dst(31));
            cases.push(
                Case::new(
                    format!("{fam} tagged 100 (PCP 5, DEI) in, tagged 300 out of eth2 (rewrite)"),
                    "eth1",
                    b.on(l2(H1_MAC, V100_MAC, &[tci(5, true, 100)]), 64),
                )
                .counted("eth1.100")
                .forwarded(b.on(l2(V300_MAC, m6(GW300_MAC), &[tci(5, true, 300)]), 63)),
            );
            cases.push(
                Case::new(
                    format!("{fam} untagged in, tagged 300 out of eth2 (push, PCP 0)"),
                    "eth1",
                    b.on(l2(H1_MAC, eth1, &[]), 64),
                )
                .forwarded(b.on(l2(V300_MAC, m6(GW300_MAC), &[tci(0, false, 300)]), 63)),
            );
            let b = Body::udp(src2, dst(32));
            cases.push(
                Case::new(
                    format!("{fam} untagged in on eth2, tagged 200 out of eth1 (push)"),
                    "eth2",
                    b.on(l2(H2_MAC, eth2, &[]), 64),
                )
                .forwarded(b.on(l2(V200_MAC, m6(GW200_MAC), &[tci(0, false, 200)]), 63)),
            );
            let b = Body::new(src, dst(32), L4::Tcp);
            cases.push(
                Case::new(
                    format!(
                        "{fam} router on a stick: tagged 100 (PCP 3) in, tagged 200 out of eth1"
                    ),
                    "eth1",
                    b.on(l2(H1_MAC, V100_MAC, &[tci(3, false, 100)]), 64),
                )
                .counted("eth1.100")
                .transmitted(b.on(l2(V200_MAC, m6(GW200_MAC), &[tci(3, false, 200)]), 63)),
            );
            let b = Body::udp(src, dst(33));
            cases.push(
                Case::new(
                    format!("{fam} tagged 100 in, back out of eth1.100"),
                    "eth1",
                    b.on(l2(H1_MAC, V100_MAC, &[tci(0, false, 100)]), 64),
                )
                .counted("eth1.100")
                .transmitted(b.on(l2(V100_MAC, m6(GW100_MAC), &[tci(0, false, 100)]), 63)),
            );
            let b = Body::udp(src, dst(30));
            cases.push(
                Case::new(
                    format!("{fam} tagged with unknown VLAN 999"),
                    "eth1",
                    b.on(l2(H1_MAC, eth1, &[999]), 64),
                )
                .punted(R::UnknownVlan),
            );
            cases.push(
                Case::new(
                    format!("{fam} VLAN 300 on eth1 (it exists on eth2 only)"),
                    "eth1",
                    b.on(l2(H1_MAC, eth1, &[300]), 64),
                )
                .punted(R::UnknownVlan),
            );
            cases.push(
                Case::new(
                    format!("{fam} two 802.1Q tags (100, 7)"),
                    "eth1",
                    b.on(l2(H1_MAC, eth1, &[100, 7]), 64),
                )
                .punted(R::VlanTooDeep),
            );
            cases.push(
                Case::new(
                    format!("{fam} 802.1ad 100 + 802.1Q 7"),
                    "eth1",
                    b.on(Frame::eth(H1_MAC, eth1).service_vlan(100).vlan(7), 64),
                )
                .punted(R::VlanTooDeep),
            );
            cases.push(
                Case::new(
                    format!("{fam} three tags"),
                    "eth1",
                    b.on(l2(H1_MAC, eth1, &[100, 7, 8]), 64),
                )
                .punted(R::VlanTooDeep),
            );
            cases.push(
                Case::new(
                    format!("{fam} tagged 100 with TTL 1"),
                    "eth1",
                    b.on(l2(H1_MAC, V100_MAC, &[100]), 1),
                )
                .counted("eth1.100")
                .punted(R::TtlExceeded),
            );
        }
        run_cases(r, &cases);
    });
}

#[test]
fn punts_and_drops_leave_the_frame_untouched() {
    const PASS: Action = Action::Pass;
    const DROP: Action = Action::Drop;
    let both = |v4: Ipv4Addr, v6: Ipv6Addr| -> [IpAddr; 2] { [v4.into(), v6.into()] };
    let rows = [
        ("TTL 1, routed", both(FAR, FAR_6), 1, PASS, R::TtlExceeded),
        ("TTL 0, routed", both(FAR, FAR_6), 0, PASS, R::TtlExceeded),
        // Local before the TTL check: delivered, not expired.
        (
            "TTL 1, to the router itself",
            both(R1, R1_6),
            1,
            PASS,
            R::Local,
        ),
        ("to the router itself", both(R1, R1_6), 64, PASS, R::Local),
        ("no route", both(NO_ROUTE, NO_ROUTE_6), 64, PASS, R::NoRoute),
        (
            "TTL 1, no route",
            both(NO_ROUTE, NO_ROUTE_6),
            1,
            PASS,
            R::NoRoute,
        ),
        (
            "blackhole",
            both(BLACKHOLE, BLACKHOLE_6),
            64,
            DROP,
            R::Blackhole,
        ),
        (
            "TTL 1, blackhole",
            both(BLACKHOLE, BLACKHOLE_6),
            1,
            DROP,
            R::Blackhole,
        ),
        (
            "unreachable",
            both(UNREACHABLE, UNREACHABLE_6),
            64,
            PASS,
            R::Unreachable,
        ),
        (
            "TTL 1, unreachable",
            both(UNREACHABLE, UNREACHABLE_6),
            1,
            PASS,
            R::Unreachable,
        ),
        (
            "prohibit",
            both(PROHIBIT, PROHIBIT_6),
            64,
            PASS,
            R::Unreachable,
        ),
        (
            "gateway has no neighbour",
            both(NO_NEIGH, NO_NEIGH_6),
            64,
            PASS,
            R::NoNeighbour,
        ),
        // Expiry before neighbour resolution, as ip_forward() does.
        (
            "TTL 1, gateway has no neighbour",
            both(NO_NEIGH, NO_NEIGH_6),
            1,
            PASS,
            R::TtlExceeded,
        ),
        (
            "connected, destination has no neighbour",
            both(NO_NEIGH_CONNECTED, NO_NEIGH_CONNECTED_6),
            64,
            PASS,
            R::NoNeighbour,
        ),
    ];
    with_base(|r| {
        let eth1 = r.mac("eth1");
        let mut cases = Vec::new();
        for (what, dsts, ttl, action, reason) in rows {
            for dst in dsts {
                let (fam, src): (_, IpAddr) = match dst {
                    IpAddr::V4(_) => ("IPv4", H1.into()),
                    IpAddr::V6(_) => ("IPv6", H1_6.into()),
                };
                let input = Body::udp(src, dst).on(l2(H1_MAC, eth1, &[]), ttl);
                let c = Case::new(format!("{fam} {what}"), "eth1", input);
                cases.push(match action {
                    DROP => c.dropped(reason),
                    _ => c.punted(reason),
                });
            }
        }
        run_cases(r, &cases);
    });
}

#[test]
fn unicast_to_another_hosts_mac_is_not_routed() {
    // A flooding switch or a bridge port delivers frames for other hosts:
    // routing them would duplicate traffic. The kernel drops them as
    // PACKET_OTHERHOST; XDP leaves them to it, untouched and counted.
    with_base(|r| {
        let mut cases = Vec::new();
        for (fam, src, dst) in [
            ("IPv4", IpAddr::from(H1), IpAddr::from(FAR)),
            ("IPv6", IpAddr::from(H1_6), IpAddr::from(FAR_6)),
        ] {
            let other_host = [0x02, 0x00, 0x00, 0x77, 0x77, 0x77];
            let input = Body::udp(src, dst).on(l2(H1_MAC, other_host, &[]), 64);
            cases.push(
                Case::new(
                    format!("{fam} routable, but to another host's MAC"),
                    "eth1",
                    input,
                )
                .punted(R::OtherHost),
            );
        }
        run_cases(r, &cases);
    });
}

#[test]
fn larger_than_the_egress_mtu_is_punted() {
    in_router(
        |ns| ip_in(ns, &["link", "set", "eth2", "mtu", "1280"]),
        |_| {
            let mut r = Router::new(&PORTS);
            assert_eq!(r.iface("eth2").mtu, 1280, "ifinfo read eth2's MTU");
            assert_eq!(r.iface("eth1").mtu, 1500, "eth1 keeps its MTU");
            base_fib(&mut r);
            let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
            let mut cases = Vec::new();
            for (fam, src, far, back, gw2, gw1) in [
                (
                    "IPv4",
                    IpAddr::V4(H1),
                    IpAddr::V4(FAR),
                    IpAddr::V4(BACK),
                    GW2_MAC,
                    GW1_MAC,
                ),
                (
                    "IPv6",
                    H1_6.into(),
                    FAR_6.into(),
                    BACK_6.into(),
                    GW2_MAC_6,
                    GW1_MAC_6,
                ),
            ] {
                let sized = |dst, len| Body::udp_sized(src, dst, len);
                let b = sized(far, 1280);
                cases.push(
                    Case::new(
                        format!("{fam} 1280-byte packet, egress MTU 1280"),
                        "eth1",
                        b.on(l2(H1_MAC, eth1, &[]), 64),
                    )
                    .forwarded(b.on(l2(eth2, gw2, &[]), 63)),
                );
                for len in [1281, 1400, 1500] {
                    cases.push(
                        Case::new(
                            format!("{fam} {len}-byte packet, egress MTU 1280"),
                            "eth1",
                            sized(far, len).on(l2(H1_MAC, eth1, &[]), 64),
                        )
                        .punted(R::Mtu),
                    );
                }
                cases.push(
                    Case::new(
                        format!("{fam} 1400-byte packet with TTL 1: expiry first"),
                        "eth1",
                        sized(far, 1400).on(l2(H1_MAC, eth1, &[]), 1),
                    )
                    .punted(R::TtlExceeded),
                );
                let b = sized(back, 1500);
                cases.push(
                    Case::new(
                        format!("{fam} 1500-byte packet back out of eth1 (MTU 1500)"),
                        "eth1",
                        b.on(l2(H1_MAC, eth1, &[]), 64),
                    )
                    .transmitted(b.on(l2(eth1, gw1, &[]), 63)),
                );
            }
            // Don't Fragment changes nothing: the kernel decides between
            // fragmenting and Fragmentation Needed.
            let df = Frame::eth(H1_MAC, eth1)
                .ipv4(H1, FAR)
                .dont_fragment()
                .udp(1, 2)
                .payload(&[0; 1372])
                .build();
            cases.push(Case::new("IPv4 1400 bytes with DF", "eth1", df).punted(R::Mtu));
            run_cases(&mut r, &cases);
        },
    );
}

#[test]
fn egress_down_or_unmanaged_is_punted() {
    in_router(
        |ns| ip_in(ns, &["link", "set", "eth2", "down"]),
        |_| {
            let mut r = Router::new(&PORTS);
            assert!(!r.iface("eth2").up, "ifinfo reads eth2 as down");
            base_fib(&mut r);
            let mut v100 = r.vlan("eth1", 100, [0x02, 0, 0, 0x0a, 0x01, 0x00]);
            r.via("198.19.31.0/24", "198.18.100.254", "eth1.100");
            r.neigh("eth1.100", "198.18.100.254", [0x02, 0, 0, 0x0b, 0x01, 0x00]);
            let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
            let in1 = |dst: IpAddr| {
                let src: IpAddr = if dst.is_ipv4() {
                    H1.into()
                } else {
                    H1_6.into()
                };
                Body::udp(src, dst).on(l2(H1_MAC, eth1, &[]), 64)
            };
            let to31 = IpAddr::V4(Ipv4Addr::new(198, 19, 31, 5));
            run_cases(
                &mut r,
                &[
                    Case::new("IPv4 via eth2, which is down", "eth1", in1(FAR.into()))
                        .punted(R::EgressUnmanaged),
                    Case::new("IPv6 via eth2, which is down", "eth1", in1(FAR_6.into()))
                        .punted(R::EgressUnmanaged),
                    Case::new("IPv4 via eth1.100 while it is up", "eth1", in1(to31)).transmitted(
                        Body::udp(H1, to31)
                            .on(l2(v100.mac, [0x02, 0, 0, 0x0b, 0x01, 0x00], &[100]), 63),
                    ),
                ],
            );
            v100.up = false;
            r.manage(v100);
            let mut eth2_up = r.iface("eth2").clone();
            eth2_up.up = true;
            r.manage(eth2_up);
            run_cases(
                &mut r,
                &[
                    Case::new("IPv4 via eth1.100, now down", "eth1", in1(to31))
                        .punted(R::EgressUnmanaged),
                    Case::new("IPv4 via eth2, now managed as up", "eth1", in1(FAR.into()))
                        .forwarded(Body::udp(H1, FAR).on(l2(eth2, GW2_MAC, &[]), 63)),
                ],
            );
            // No longer managed: the route stays in the Fib (netlink would
            // withdraw it), XDP punts what still points at eth2.
            let eth2_index = r.ifindex("eth2");
            r.dp.update(|fib| fib.del_iface(eth2_index))
                .expect("unmanage eth2");
            assert!(
                r.dp.fib().route(&prefix("198.19.10.0/24")).is_some(),
                "route kept"
            );
            let b = Body::udp(H1, FAR);
            let input = b.on(l2(H1_MAC, eth1, &[]), 64);
            let before = r.counters();
            let out = r.run("eth1", &input);
            assert_eq!(out.action, Action::Pass, "via an unmanaged eth2");
            assert_eq!(out.output, input, "via an unmanaged eth2: frame untouched");
            assert_eq!(
                r.counters().since(&before),
                vec![(
                    r.slot("eth1"),
                    R::EgressUnmanaged,
                    Count {
                        packets: 1,
                        bytes: input.len() as u64
                    }
                )],
                "via an unmanaged eth2: counted once as egress_unmanaged"
            );
        },
    );
}

#[test]
fn routes_and_neighbours_via_unmanaged_interfaces_are_refused() {
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&["eth1"]);
            let eth2 =
                xdpgate::dataplane::ifindex("eth2").expect("eth2 exists in the router namespace");
            let unmanaged = |gateway: IpAddr| NextHopSpec {
                gateway: Some(gateway),
                ifindex: eth2,
            };
            let refused = |what: &str, result: Result<(), DataplaneError>| match result {
                Err(DataplaneError::Fib(FibError::UnknownInterface(i))) if i == eth2 => {}
                other => panic!("{what}: want UnknownInterface({eth2}), got {other:?}"),
            };
            refused(
                "IPv4 route via eth2",
                r.try_route(
                    prefix("198.19.10.0/24"),
                    RouteTarget::Unicast {
                        nexthop: unmanaged(GW2.into()),
                    },
                ),
            );
            refused(
                "IPv6 ECMP route with one member on eth2",
                r.try_route(
                    prefix("2001:db8:10::/48"),
                    RouteTarget::Multipath {
                        nexthops: vec![
                            r.hop(Some("2001:db8:1::fe"), "eth1"),
                            unmanaged(GW2_6.into()),
                        ],
                    },
                ),
            );
            refused(
                "connected route on eth2",
                r.try_route(
                    prefix("198.18.2.0/24"),
                    RouteTarget::Unicast {
                        nexthop: NextHopSpec {
                            gateway: None,
                            ifindex: eth2,
                        },
                    },
                ),
            );
            refused(
                "neighbour on eth2",
                r.dp.update(|fib| fib.set_neighbour(eth2, GW2.into(), GW2_MAC)),
            );
            // Nothing half-installed: no route, no next hop, no group.
            assert_eq!(r.dp.fib().route_count(), (0, 0), "routes after refusals");
            assert_eq!(r.dp.fib().nexthop_count(), 0, "next hops after refusals");
            assert_eq!(r.dp.fib().group_count(), 0, "groups after refusals");
            let eth1 = r.mac("eth1");
            run_cases(
                &mut r,
                &[
                    Case::new(
                        "IPv4 to the refused route's prefix",
                        "eth1",
                        Body::udp(H1, FAR).on(l2(H1_MAC, eth1, &[]), 64),
                    )
                    .punted(R::NoRoute),
                    Case::new(
                        "IPv6 to the refused route's prefix",
                        "eth1",
                        Body::udp(H1_6, FAR_6).on(l2(H1_MAC, eth1, &[]), 64),
                    )
                    .punted(R::NoRoute),
                ],
            );
            // A frame arriving on a port that is not managed: counted in
            // slot 0, never routed.
            let input = Body::udp(H2, H1).on(l2(H2_MAC, eth1, &[]), 64);
            let before = r.counters();
            let prog = r.dp.main_program().expect("the main program");
            let out = xdpgate::testrun::run_on(prog, &input, eth2).expect("test run on eth2");
            assert_eq!(out.action, Action::Pass, "in on unmanaged eth2");
            assert_eq!(out.output, input, "in on unmanaged eth2: untouched");
            assert_eq!(
                r.counters().since(&before),
                vec![(
                    0,
                    R::NotForwarded,
                    Count {
                        packets: 1,
                        bytes: input.len() as u64
                    }
                )],
                "in on unmanaged eth2: counted in slot 0"
            );
        },
    );
}

/// A UDP frame from h1 into eth1 towards `dst`, expected to leave by
/// `egress` to `gw_mac`: redirected by eth2, transmitted back by eth1.
fn via_case(r: &Router, desc: String, dst: IpAddr, egress: &str, gw_mac: Mac) -> Case {
    let src: IpAddr = if dst.is_ipv4() {
        H1.into()
    } else {
        H1_6.into()
    };
    let b = Body::udp(src, dst);
    let c = Case::new(desc, "eth1", b.on(l2(H1_MAC, r.mac("eth1"), &[]), 64));
    let out = b.on(l2(r.mac(egress), gw_mac, &[]), 63);
    if egress == "eth1" {
        c.transmitted(out)
    } else {
        c.forwarded(out)
    }
}

fn no_route_case(r: &Router, desc: String, dst: IpAddr) -> Case {
    let src: IpAddr = if dst.is_ipv4() {
        H1.into()
    } else {
        H1_6.into()
    };
    Case::new(
        desc,
        "eth1",
        Body::udp(src, dst).on(l2(H1_MAC, r.mac("eth1"), &[]), 64),
    )
    .punted(R::NoRoute)
}

#[test]
fn longest_prefix_wins_and_follows_updates() {
    // Next hops A, B, C on eth2 and D on eth1, per family.
    let hops: [(&str, &str, &str, &str, u8); 4] = [
        ("A", "198.18.2.10", "2001:db8:2::10", "eth2", 0x0a),
        ("B", "198.18.2.20", "2001:db8:2::20", "eth2", 0x0b),
        ("C", "198.18.2.30", "2001:db8:2::30", "eth2", 0x0c),
        ("D", "198.18.1.40", "2001:db8:1::40", "eth1", 0x0d),
    ];
    let mac = |fam: u8, tag: u8| -> Mac { [0x02, 0, 0, fam, 0x1f, tag] };
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            for (_, gw4, gw6, dev, tag) in hops {
                r.neigh(dev, gw4, mac(4, tag));
                r.neigh(dev, gw6, mac(6, tag));
            }
            let nets = [
                ("D", "198.18.0.0/15", "2001:db8::/32"),
                ("A", "198.19.0.0/16", "2001:db8:100::/40"),
                ("B", "198.19.5.0/24", "2001:db8:100:5::/64"),
                ("C", "198.19.5.7/32", "2001:db8:100:5::7/128"),
            ];
            let hop = |name: &str| *hops.iter().find(|h| h.0 == name).expect("hop");
            for (name, n4, n6) in nets {
                let (_, gw4, gw6, dev, _) = hop(name);
                r.via(n4, gw4, dev);
                r.via(n6, gw6, dev);
            }
            // (destination v4, destination v6, expected next hop or None).
            let table =
                |r: &Router, stage: &str, rows: &[(&str, &str, Option<&str>)]| -> Vec<Case> {
                    let mut cases = Vec::new();
                    for &(d4, d6, want) in rows {
                        for dst in [d4, d6] {
                            let dst: IpAddr = dst.parse().expect("destination");
                            let desc = format!("{stage}: {dst} -> {}", want.unwrap_or("no route"));
                            cases.push(match want {
                                Some(name) => {
                                    let (_, _, _, dev, tag) = hop(name);
                                    let m = mac(if dst.is_ipv4() { 4 } else { 6 }, tag);
                                    via_case(r, desc, dst, dev, m)
                                }
                                None => no_route_case(r, desc, dst),
                            });
                        }
                    }
                    cases
                };
            let cases = table(
                &r,
                "all four",
                &[
                    ("198.19.5.1", "2001:db8:100:5::1", Some("B")),
                    ("198.19.5.0", "2001:db8:100:5::", Some("B")),
                    (
                        "198.19.5.255",
                        "2001:db8:100:5:ffff:ffff:ffff:ffff",
                        Some("B"),
                    ),
                    ("198.19.5.6", "2001:db8:100:5::6", Some("B")),
                    ("198.19.5.7", "2001:db8:100:5::7", Some("C")),
                    ("198.19.5.8", "2001:db8:100:5::8", Some("B")),
                    (
                        "198.19.4.255",
                        "2001:db8:100:4:ffff:ffff:ffff:ffff",
                        Some("A"),
                    ),
                    ("198.19.6.0", "2001:db8:100:6::", Some("A")),
                    ("198.19.0.0", "2001:db8:100::", Some("A")),
                    (
                        "198.19.255.255",
                        "2001:db8:1ff:ffff:ffff:ffff:ffff:ffff",
                        Some("A"),
                    ),
                    ("198.18.200.1", "2001:db8:200::1", Some("D")),
                    ("198.18.0.0", "2001:db8::", Some("D")),
                    (
                        "198.18.255.255",
                        "2001:db8:ff:ffff:ffff:ffff:ffff:ffff",
                        Some("D"),
                    ),
                ],
            );
            run_cases(&mut r, &cases);

            // Replace the /24 (/64): its destinations follow at once.
            let (_, gw4, gw6, dev, _) = hop("C");
            r.via("198.19.5.0/24", gw4, dev);
            r.via("2001:db8:100:5::/64", gw6, dev);
            let cases = table(
                &r,
                "/24 and /64 now via C",
                &[
                    ("198.19.5.1", "2001:db8:100:5::1", Some("C")),
                    ("198.19.6.1", "2001:db8:100:6::1", Some("A")),
                ],
            );
            run_cases(&mut r, &cases);

            // Remove them one by one, most specific first in the middle.
            r.unroute("198.19.5.0/24");
            r.unroute("2001:db8:100:5::/64");
            let cases = table(
                &r,
                "without the /24 and /64",
                &[
                    ("198.19.5.1", "2001:db8:100:5::1", Some("A")),
                    ("198.19.5.7", "2001:db8:100:5::7", Some("C")),
                ],
            );
            run_cases(&mut r, &cases);
            r.unroute("198.19.5.7/32");
            r.unroute("2001:db8:100:5::7/128");
            r.unroute("198.19.0.0/16");
            r.unroute("2001:db8:100::/40");
            let cases = table(
                &r,
                "only the /15 and /32",
                &[("198.19.5.7", "2001:db8:100:5::7", Some("D"))],
            );
            run_cases(&mut r, &cases);
            r.unroute("198.18.0.0/15");
            r.unroute("2001:db8::/32");
            let cases = table(
                &r,
                "no routes",
                &[("198.19.5.7", "2001:db8:100:5::7", None)],
            );
            run_cases(&mut r, &cases);
            assert_eq!(r.dp.fib().nexthop_count(), 0, "every next hop freed");
        },
    );
}

/// Member `i` (0-based) of the test's ECMP groups, per family.
fn ecmp_member(v4: bool, i: usize) -> (String, Mac) {
    let n = i + 11;
    if v4 {
        (format!("198.18.2.{n}"), [0x02, 0, 0, 0x0e, 0x04, n as u8])
    } else {
        (
            format!("2001:db8:2::{n}"),
            [0x02, 0, 0, 0x0e, 0x06, n as u8],
        )
    }
}

#[test]
fn ecmp_spreads_flows_and_keeps_each_flow_on_one_member() {
    const FLOWS: u16 = 1000;
    const MEMBERS: usize = 4;
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            for v4 in [true, false] {
                let members: Vec<(String, Mac)> =
                    (0..MEMBERS).map(|i| ecmp_member(v4, i)).collect();
                for (gw, mac) in &members {
                    r.neigh("eth2", gw, *mac);
                }
                let hops: Vec<(&str, &str)> =
                    members.iter().map(|(g, _)| (g.as_str(), "eth2")).collect();
                r.multipath(
                    if v4 {
                        "198.19.40.0/24"
                    } else {
                        "2001:db8:40::/48"
                    },
                    &hops,
                );
            }
            let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
            let before = r.counters();
            let (mut runs, mut bytes) = (0u64, 0u64);
            for (fam, src, dst) in [
                (
                    "IPv4",
                    IpAddr::V4(H1),
                    IpAddr::V4(Ipv4Addr::new(198, 19, 40, 7)),
                ),
                ("IPv6", H1_6.into(), v6(0x2001, 0xdb8, 0x40, 7).into()),
            ] {
                let macs: Vec<Mac> = (0..MEMBERS)
                    .map(|i| ecmp_member(dst.is_ipv4(), i).1)
                    .collect();
                for l4 in [L4::Udp, L4::Tcp] {
                    // The member a flow (by source port) takes; its output
                    // checked byte for byte against that member's frame.
                    let mut pick = |r: &mut Router, sport: u16| -> usize {
                        let b = Body::new(src, dst, l4).sport(sport);
                        let out = r.run("eth1", &b.on(l2(H1_MAC, eth1, &[]), 64));
                        runs += 1;
                        bytes += out.output.len() as u64;
                        assert_eq!(
                            out.action,
                            Action::Redirect,
                            "{fam} {l4:?} sport {sport}: verdict"
                        );
                        let m = macs
                            .iter()
                            .position(|m| out.output[..6] == m[..])
                            .unwrap_or_else(|| {
                                panic!(
                                    "{fam} {l4:?} sport {sport}: dst MAC {} is no member",
                                    hex(&out.output[..6])
                                )
                            });
                        assert_eq!(
                            out.output,
                            b.on(l2(eth2, macs[m], &[]), 63),
                            "{fam} {l4:?} sport {sport}: output via member {m}"
                        );
                        m
                    };
                    let mut hits = [0u32; MEMBERS];
                    for i in 0..FLOWS {
                        hits[pick(&mut r, 20_000 + i)] += 1;
                    }
                    println!("{fam} {l4:?}: {FLOWS} flows over {MEMBERS} members: {hits:?}");
                    for (m, &n) in hits.iter().enumerate() {
                        let share = f64::from(n) / f64::from(FLOWS);
                        assert!(
                            (0.10..=0.40).contains(&share),
                            "{fam} {l4:?}: member {m} took {n} of {FLOWS} flows ({hits:?})"
                        );
                    }
                    for sport in [20_000, 20_001, 20_500, 20_999, 443, 65_535] {
                        let first = pick(&mut r, sport);
                        for n in 1..20 {
                            let again = pick(&mut r, sport);
                            assert_eq!(
                                again, first,
                                "{fam} {l4:?} sport {sport}: run {n} took member {again}, run 0 took {first}"
                            );
                        }
                    }
                }
            }
            assert_eq!(
                r.counters().since(&before),
                vec![(
                    r.slot("eth1"),
                    R::Forwarded,
                    Count {
                        packets: runs,
                        bytes
                    }
                )],
                "every ECMP run counted once as forwarded on eth1"
            );
        },
    );
}

#[test]
fn ecmp_members_on_both_ports_redirect_or_transmit() {
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            base_fib(&mut r);
            r.multipath(
                "198.19.41.0/24",
                &[("198.18.1.254", "eth1"), ("198.18.2.254", "eth2")],
            );
            let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
            let dst = Ipv4Addr::new(198, 19, 41, 9);
            let mut seen = BTreeMap::new();
            for sport in 30_000..30_200 {
                let b = Body::udp(H1, dst).sport(sport);
                let out = r.run("eth1", &b.on(l2(H1_MAC, eth1, &[]), 64));
                let want = match out.action {
                    Action::Tx => b.on(l2(eth1, GW1_MAC, &[]), 63),
                    Action::Redirect => b.on(l2(eth2, GW2_MAC, &[]), 63),
                    other => panic!("sport {sport}: verdict {other:?}"),
                };
                assert_eq!(
                    out.output, want,
                    "sport {sport}: output for {:?}",
                    out.action
                );
                *seen.entry(format!("{:?}", out.action)).or_insert(0) += 1;
            }
            println!("200 flows over a member on each port: {seen:?}");
            assert_eq!(seen.len(), 2, "both members used: {seen:?}");
        },
    );
}

#[test]
fn ttl_decrement_checksum_equals_a_full_recompute() {
    with_base(|r| {
        let (eth1, eth2) = (r.mac("eth1"), r.mac("eth2"));
        let ip = |src: Mac, dst: Mac, id: u16, tos: u8, ttl: u8| {
            Frame::eth(src, dst)
                .ipv4(H1, FAR)
                .id(id)
                .tos(tos)
                .ttl(ttl)
                .udp(7, 9)
                .payload(b"checksum")
                .build()
        };
        let mut failures = Vec::new();
        let mut sums = std::collections::HashSet::new();
        let mut runs = 0;
        // Every IPv4 ID at TTL 64: the header checksum takes every value,
        // the RFC 1624 corners (a result of 0x0000) included; then every
        // TTL the program forwards.
        let combos = (0..=u16::MAX).map(|id| (id, 0u8, 64u8)).chain(
            (2..=255).flat_map(|ttl| [(0, 0, ttl), (0xffff, 0xfc, ttl), (0x8000, 0x02, ttl)]),
        );
        for (id, tos, ttl) in combos {
            let out = r.run("eth1", &ip(H1_MAC, eth1, id, tos, ttl));
            runs += 1;
            let want = ip(eth2, GW2_MAC, id, tos, ttl - 1);
            sums.insert(u16::from_be_bytes([out.output[24], out.output[25]]));
            if out.action != Action::Redirect || out.output != want {
                failures.push(format!(
                    "id {id:#06x} tos {tos:#04x} ttl {ttl}: {:?}, {}",
                    out.action,
                    frame_diff(&out.output, &want)
                ));
            }
        }
        println!(
            "{runs} TTL decrements checked, {} distinct output checksums",
            sums.len()
        );
        assert!(
            failures.is_empty(),
            "{} of {runs} decrements differ from a recompute; first ones:\n{}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n")
        );
        assert!(
            sums.contains(&0x0000),
            "the sweep never produced checksum 0x0000"
        );
        assert!(
            sums.len() >= 0xffff,
            "the sweep covered only {} checksums",
            sums.len()
        );
    });
}

/// An 802.1ad (S-tag, TPID 0x88a8) VLAN 100 is not 802.1Q VLAN 100: the
/// kernel delivers it to an 802.1Q device only if one was created with
/// `protocol 802.1ad` (net/8021q/vlan_core.c vlan_do_receive() looks the
/// device up by TPID and VID), so with only 802.1Q sub-interfaces XDP
/// should punt it as an unknown VLAN.
#[test]
fn a_lone_8021ad_tag_is_not_an_8021q_vlan() {
    with_base(|r| {
        r.vlan("eth1", 100, [0x02, 0, 0, 0x0a, 0x01, 0x00]);
        r.vlan("eth2", 300, [0x02, 0, 0, 0x0a, 0x03, 0x00]);
        r.via("198.19.31.0/24", "198.18.103.254", "eth2.300");
        r.neigh("eth2.300", "198.18.103.254", [0x02, 0, 0, 0x0b, 0x03, 0x00]);
        let eth1 = r.mac("eth1");
        let s_tagged = || Frame::eth(H1_MAC, eth1).service_vlan(100);
        let cases = [FAR, Ipv4Addr::new(198, 19, 31, 5)].map(|dst| {
            Case::new(
                format!("802.1ad 100 to {dst}"),
                "eth1",
                Body::udp(H1, dst).on(s_tagged(), 64),
            )
            .punted(R::UnknownVlan)
        });
        run_cases(r, &cases);
    });
}
