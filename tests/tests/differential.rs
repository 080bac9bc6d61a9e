//! Differential test: the kernel's FIB is the oracle for XDP's.
//!
//! A few thousand random, overlapping routes go into the lab router's
//! kernel (`ip -batch`) and, the same, into the Fib and the XDP maps. For
//! 10,000 random destinations per family the kernel's answer
//! (`ip -j -batch` with `route get` lines) is compared with what the
//! program does to a frame for that destination in a test run: the next hop
//! is read back from the rewritten destination MAC (every gateway has its
//! own neighbour MAC), punts and drops from the reason counters. Then a
//! share of the routes, all the short ones included, is deleted from both
//! and the comparison runs again, now with plenty of destinations no prefix
//! covers. Two churn batches follow (a tenth deleted, 500 routes added or
//! replaced with `ip route replace`, per family), each compared again: the
//! IPv4 answers come from DIR-24-8, the default lookup, so its updates are
//! checked against the kernel after every batch.
//!
//! Every address stays in 198.18.0.0/15 and 2001:db8::/32. Destinations
//! inside the router's connected subnets are never drawn (the kernel would
//! answer "connected", XDP would need a neighbour per destination), and no
//! route is generated inside them.
//!
//! ECMP routes are included; the kernel and XDP hash flows differently, so
//! for those both answers must be members of the group a plain
//! longest-prefix match over the generated routes selects.
//!
//! The PRNG is seeded: `XDPGATE_DIFF_SEED=<n>` reproduces a run (the seed
//! is printed). Needs root.
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::{Command, Stdio},
    time::Instant,
};

use dataplane_common::{Action, Reason as R};
use xdpgate::{
    dataplane::SlotCounters,
    fib::{NextHopSpec, RouteTarget},
};
use xdpgate_tests::rng::Rng;
use xdpgate_tests::{
    fibtest::{Router, in_router, prefix},
    frames::{Frame, Mac, verify_checksums},
};

const DEFAULT_SEED: u64 = 0x7864_7067_6174_6501;
/// Distinct routes per family.
const ROUTES: usize = 3000;
/// Destinations per family and phase.
const DESTINATIONS: usize = 10_000;
/// New or replaced routes per family in each churn batch (besides
/// deleting a tenth of the table).
const CHURN: usize = 500;

/// One address family's space and fixtures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn width(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The project's address block for the family.
    fn block(self) -> Net {
        match self {
            Family::V4 => Net::new(
                self,
                u128::from(u32::from(Ipv4Addr::new(198, 18, 0, 0))),
                15,
            ),
            Family::V6 => Net::new(
                self,
                u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                32,
            ),
        }
    }

    /// The router's connected subnets (eth1, eth2).
    fn connected(self) -> [Net; 2] {
        match self {
            Family::V4 => [1u8, 2].map(|p| {
                Net::new(
                    self,
                    u128::from(u32::from(Ipv4Addr::new(198, 18, p, 0))),
                    24,
                )
            }),
            Family::V6 => [1u16, 2].map(|p| {
                Net::new(
                    self,
                    u128::from(Ipv6Addr::new(0x2001, 0xdb8, p, 0, 0, 0, 0, 0)),
                    64,
                )
            }),
        }
    }

    /// All ones within the family's width.
    fn full(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    fn addr(self, a: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(a as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(a)),
        }
    }

    /// Routes shorter than this are all deleted in the second phase.
    fn short(self) -> u8 {
        match self {
            Family::V4 => 24,
            Family::V6 => 48,
        }
    }
}

/// A prefix of either family, the address right-aligned in a u128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Net {
    v4: bool,
    addr: u128,
    len: u8,
}

impl Net {
    fn new(family: Family, addr: u128, len: u8) -> Net {
        let n = Net {
            v4: family == Family::V4,
            addr: 0,
            len,
        };
        Net {
            addr: addr & n.mask(),
            ..n
        }
    }

    fn family(self) -> Family {
        if self.v4 { Family::V4 } else { Family::V6 }
    }

    /// Network mask within the family's width.
    fn mask(self) -> u128 {
        if self.len == 0 {
            return 0;
        }
        (u128::MAX << (128 - u32::from(self.len))) >> (128 - u32::from(self.family().width()))
    }

    fn contains(self, a: u128) -> bool {
        a & self.mask() == self.addr
    }

    /// `self` equals or lies inside `other`.
    fn inside(self, other: Net) -> bool {
        self.len >= other.len && other.contains(self.addr)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.family().addr(self.addr), self.len)
    }
}

/// A gateway: address, port, and the neighbour MAC the Fib gives it.
#[derive(Clone, Debug)]
struct Gateway {
    addr: IpAddr,
    dev: &'static str,
    mac: Mac,
}

/// 198.18.P.10-250 and 2001:db8:P::a-fa on ethP.
fn gateways(family: Family) -> Vec<Gateway> {
    let mut v = Vec::new();
    for port in [1u8, 2] {
        let dev = if port == 1 { "eth1" } else { "eth2" };
        for host in 10u8..=250 {
            let (addr, fam) = match family {
                Family::V4 => (IpAddr::V4(Ipv4Addr::new(198, 18, port, host)), 4),
                Family::V6 => (
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        port.into(),
                        0,
                        0,
                        0,
                        0,
                        host.into(),
                    )),
                    6,
                ),
            };
            v.push(Gateway {
                addr,
                dev,
                mac: [0x02, fam, port, 0x00, 0x00, host],
            });
        }
    }
    v
}

#[derive(Clone, Debug)]
enum Kind {
    Via(usize),
    Multipath(Vec<usize>),
    Blackhole,
    Unreachable,
    Prohibit,
}

/// What a destination gets, in terms both sides can state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Verdict {
    Via {
        gateway: IpAddr,
        dev: String,
    },
    NoRoute,
    Blackhole,
    Unreachable,
    Prohibit,
    /// Anything else, described.
    Other(String),
}

impl Verdict {
    /// The kernel's `route get` error for a destination, by message.
    fn from_kernel_error(msg: &str) -> Verdict {
        match msg {
            "Network is unreachable" => Verdict::NoRoute,
            "Invalid argument" => Verdict::Blackhole,
            "No route to host" => Verdict::Unreachable,
            "Permission denied" => Verdict::Prohibit,
            other => Verdict::Other(format!("kernel error {other:?}")),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Verdict::Via { dev, .. } if dev == "eth1" => "via eth1",
            Verdict::Via { .. } => "via eth2",
            Verdict::NoRoute => "no route",
            Verdict::Blackhole => "blackhole",
            Verdict::Unreachable => "unreachable",
            Verdict::Prohibit => "prohibit",
            Verdict::Other(_) => "other",
        }
    }
}

/// The generated routes of one family and a reference longest-prefix match.
struct Table {
    family: Family,
    routes: BTreeMap<Net, Kind>,
}

impl Table {
    fn generate(rng: &mut Rng, family: Family, gws: &[Gateway]) -> Table {
        let mut routes = BTreeMap::new();
        while routes.len() < ROUTES {
            let (net, kind) = Table::random_route(rng, family, gws);
            routes.insert(net, kind);
        }
        Table { family, routes }
    }

    /// A random route of the family's block, never inside a connected
    /// subnet: mostly via one gateway, some ECMP, some of each reject type.
    fn random_route(rng: &mut Rng, family: Family, gws: &[Gateway]) -> (Net, Kind) {
        let block = family.block();
        let connected = family.connected();
        loop {
            let len = rng.range(u64::from(block.len), u64::from(family.width())) as u8;
            let host = rng.wide() & !block.mask() & family.full();
            let net = Net::new(family, block.addr | host, len);
            if connected.iter().any(|c| net.inside(*c)) {
                continue;
            }
            let pick = |rng: &mut Rng| rng.range(0, gws.len() as u64 - 1) as usize;
            let kind = match rng.range(0, 99) {
                0..=79 => Kind::Via(pick(rng)),
                80..=84 => {
                    let n = rng.range(2, 4) as usize;
                    let mut members = Vec::new();
                    while members.len() < n {
                        let g = pick(rng);
                        if !members.contains(&g) {
                            members.push(g);
                        }
                    }
                    Kind::Multipath(members)
                }
                85..=89 => Kind::Blackhole,
                90..=94 => Kind::Unreachable,
                _ => Kind::Prohibit,
            };
            return (net, kind);
        }
    }

    /// The route a plain longest-prefix match selects.
    fn lookup(&self, a: u128) -> Option<(Net, &Kind)> {
        let block = self.family.block();
        (block.len..=self.family.width())
            .rev()
            .map(|len| Net::new(self.family, a, len))
            .find_map(|n| self.routes.get(&n).map(|k| (n, k)))
    }

    /// A destination: most inside a random route (the overlaps are where
    /// the longest match matters), the rest anywhere in the block; never in
    /// a connected subnet.
    fn destination(&self, rng: &mut Rng) -> u128 {
        let block = self.family.block();
        let nets: Vec<&Net> = self.routes.keys().collect();
        loop {
            let random = rng.wide() & self.family.full();
            let a = if rng.percent(60) && !nets.is_empty() {
                let n = nets[rng.range(0, nets.len() as u64 - 1) as usize];
                n.addr | (random & !n.mask())
            } else {
                block.addr | (random & !block.mask())
            };
            if !self.family.connected().iter().any(|c| c.contains(a)) {
                return a;
            }
        }
    }
}

fn kernel_route(net: Net, kind: &Kind, gws: &[Gateway], verb: &str) -> String {
    match kind {
        Kind::Via(g) => format!(
            "route {verb} {net} via {} dev {}",
            gws[*g].addr, gws[*g].dev
        ),
        Kind::Multipath(ms) => {
            let hops: Vec<String> = ms
                .iter()
                .map(|g| format!("nexthop via {} dev {}", gws[*g].addr, gws[*g].dev))
                .collect();
            format!("route {verb} {net} {}", hops.join(" "))
        }
        Kind::Blackhole => format!("route {verb} blackhole {net}"),
        Kind::Unreachable => format!("route {verb} unreachable {net}"),
        Kind::Prohibit => format!("route {verb} prohibit {net}"),
    }
}

fn fib_target(r: &Router, kind: &Kind, gws: &[Gateway]) -> RouteTarget {
    let hop = |g: usize| NextHopSpec {
        gateway: Some(gws[g].addr),
        ifindex: r.ifindex(gws[g].dev),
    };
    match kind {
        Kind::Via(g) => RouteTarget::Unicast { nexthop: hop(*g) },
        Kind::Multipath(ms) => RouteTarget::Multipath {
            nexthops: ms.iter().map(|g| hop(*g)).collect(),
        },
        Kind::Blackhole => RouteTarget::Blackhole,
        Kind::Unreachable => RouteTarget::Unreachable,
        Kind::Prohibit => RouteTarget::Prohibit,
    }
}

/// Run `ip -n NS [-j] -force -batch -` on `lines`; stdout and stderr.
#[track_caller]
fn ip_batch(ns: &str, json: bool, force: bool, lines: &[String]) -> (Vec<u8>, String, bool) {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", ns]);
    if json {
        cmd.arg("-j");
    }
    if force {
        cmd.arg("-force");
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip -batch");
    let mut stdin = child.stdin.take().expect("ip's stdin");
    let input = lines.join("\n") + "\n";
    // Written from a thread: ip answers while it reads, and a full stdout
    // pipe would otherwise stall both sides.
    let out = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(input.as_bytes()).expect("feed ip -batch"));
        child.wait_with_output().expect("wait for ip -batch")
    });
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// The kernel's answer for each destination, in order, from one
/// `ip -j -force -batch` of `route get` lines. Failed lines are reported on
/// stderr as the error message followed by `Command failed -:LINE`;
/// successful ones print one JSON array each, in order.
#[track_caller]
fn kernel_answers(ns: &str, dests: &[IpAddr]) -> Vec<Verdict> {
    let lines: Vec<String> = dests.iter().map(|d| format!("route get {d}")).collect();
    let (stdout, stderr, _) = ip_batch(ns, true, true, &lines);
    let mut failed: HashMap<usize, String> = HashMap::new();
    let mut message = String::new();
    for line in stderr.lines() {
        if let Some(n) = line.strip_prefix("Command failed -:") {
            let n: usize = n
                .trim()
                .parse()
                .expect("line number after `Command failed -:`");
            failed.insert(n - 1, std::mem::take(&mut message));
        } else {
            message = line
                .strip_prefix("RTNETLINK answers: ")
                .unwrap_or(line)
                .to_owned();
        }
    }
    let mut answers =
        serde_json::Deserializer::from_slice(&stdout).into_iter::<serde_json::Value>();
    dests
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if let Some(msg) = failed.get(&i) {
                return Verdict::from_kernel_error(msg);
            }
            let v = answers
                .next()
                .unwrap_or_else(|| {
                    panic!("ip printed no answer for line {} (route get {d})", i + 1)
                })
                .expect("JSON from ip -j route get");
            let r = &v[0];
            let dst: IpAddr = r["dst"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("dst in the answer");
            assert_eq!(dst, *d, "ip's answers are out of step at line {}", i + 1);
            match (r["gateway"].as_str(), r["dev"].as_str(), r["type"].as_str()) {
                (Some(gw), Some(dev), None | Some("unicast")) => Verdict::Via {
                    gateway: gw.parse().expect("gateway address"),
                    dev: dev.to_owned(),
                },
                _ => Verdict::Other(format!("kernel answered {r}")),
            }
        })
        .collect()
}

/// Reasons that moved in `slot` between two readings, forwarding left out
/// (it is read from the verdict).
fn punt_reasons(before: &SlotCounters, after: &SlotCounters) -> Vec<(R, u64)> {
    R::ALL
        .iter()
        .filter(|r| !matches!(r, R::Forwarded | R::Transmitted))
        .filter_map(|&r| {
            let d = after.reason(r).packets - before.reason(r).packets;
            (d != 0).then_some((r, d))
        })
        .collect()
}

/// What XDP does with a frame to `dst` arriving on eth1.
struct Xdp<'a> {
    r: &'a mut Router,
    by_mac: HashMap<Mac, Gateway>,
    slot: u32,
    last: SlotCounters,
}

impl Xdp<'_> {
    #[track_caller]
    fn verdict(&mut self, dst: IpAddr) -> Verdict {
        let eth1 = self.r.mac("eth1");
        let l2 = Frame::eth([0x02, 0, 0, 0x04, 0x01, 0x02], eth1);
        let l3 = match dst {
            IpAddr::V4(d) => l2.ipv4(Ipv4Addr::new(198, 18, 1, 2), d),
            IpAddr::V6(d) => l2.ipv6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2), d),
        };
        let frame = l3.udp(33_000, 53).payload(b"differential").build();
        let out = self.r.run("eth1", &frame);
        match out.action {
            Action::Redirect | Action::Tx => {
                let dst_mac: Mac = out.output[..6].try_into().expect("6 bytes");
                let Some(gw) = self.by_mac.get(&dst_mac) else {
                    return Verdict::Other(format!(
                        "{:?} to unknown MAC {dst_mac:02x?}",
                        out.action
                    ));
                };
                let port_ok = (out.action == Action::Tx) == (gw.dev == "eth1");
                let src_ok = out.output[6..12] == self.r.mac(gw.dev)[..];
                let ttl_off = if dst.is_ipv4() { 14 + 8 } else { 14 + 7 };
                let ttl_ok = out.output[ttl_off] == 63;
                if !(port_ok && src_ok && ttl_ok) || verify_checksums(&out.output).is_err() {
                    return Verdict::Other(format!(
                        "{:?} via {} dev {} with a bad rewrite: {:02x?}",
                        out.action, gw.addr, gw.dev, out.output
                    ));
                }
                Verdict::Via {
                    gateway: gw.addr,
                    dev: gw.dev.to_owned(),
                }
            }
            action => {
                let now = self.r.dp.counters().slot(self.slot).expect("read counters");
                let moved = punt_reasons(&self.last, &now);
                self.last = now;
                if out.output != frame {
                    return Verdict::Other(format!("{action:?} but the frame was changed"));
                }
                match (action, moved.as_slice()) {
                    (Action::Pass, [(R::NoRoute, 1)]) => Verdict::NoRoute,
                    (Action::Pass, [(R::Unreachable, 1)]) => Verdict::Unreachable,
                    (Action::Drop, [(R::Blackhole, 1)]) => Verdict::Blackhole,
                    _ => Verdict::Other(format!("{action:?} with counters {moved:?}")),
                }
            }
        }
    }
}

/// Do the two answers agree? XDP has one reason for unreachable and
/// prohibit routes (the kernel tells them apart only in the ICMP code it
/// sends); an ECMP route's answers must each be one of its members.
fn agree(
    table: &Table,
    gws: &[Gateway],
    a: u128,
    kernel: &Verdict,
    xdp: &Verdict,
) -> Result<(), String> {
    let reference = table.lookup(a);
    if let Some((net, Kind::Multipath(ms))) = reference {
        let member = |v: &Verdict| {
            ms.iter().any(|g| {
                matches!(v, Verdict::Via { gateway, dev } if *gateway == gws[*g].addr && dev == gws[*g].dev)
            })
        };
        return if member(kernel) && member(xdp) {
            Ok(())
        } else {
            Err(format!("ECMP route {net}: kernel {kernel:?}, XDP {xdp:?}"))
        };
    }
    let xdp_as_kernel = match (kernel, xdp) {
        (Verdict::Prohibit, Verdict::Unreachable) => &Verdict::Prohibit,
        _ => xdp,
    };
    if kernel != xdp_as_kernel {
        let reference = match reference {
            Some((net, kind)) => format!("{net} {kind:?}"),
            None => "no route".to_owned(),
        };
        return Err(format!(
            "kernel {kernel:?}, XDP {xdp:?} (reference match: {reference})"
        ));
    }
    // The reference match must agree with the kernel too, or this test's
    // own model is off.
    let expected = match reference {
        None => Verdict::NoRoute,
        Some((_, Kind::Via(g))) => Verdict::Via {
            gateway: gws[*g].addr,
            dev: gws[*g].dev.to_owned(),
        },
        Some((_, Kind::Blackhole)) => Verdict::Blackhole,
        Some((_, Kind::Unreachable)) => Verdict::Unreachable,
        Some((_, Kind::Prohibit)) => Verdict::Prohibit,
        Some((_, Kind::Multipath(_))) => unreachable!("handled above"),
    };
    if *kernel != expected {
        return Err(format!(
            "kernel {kernel:?}, but the reference match says {expected:?}"
        ));
    }
    Ok(())
}

/// One family, one phase: destinations drawn, both asked, compared.
struct Outcome {
    total: usize,
    agreed: usize,
    by_kind: BTreeMap<&'static str, usize>,
    ecmp: usize,
    failures: Vec<String>,
}

#[track_caller]
fn compare(ns: &str, xdp: &mut Xdp<'_>, table: &Table, gws: &[Gateway], rng: &mut Rng) -> Outcome {
    let addrs: Vec<u128> = (0..DESTINATIONS).map(|_| table.destination(rng)).collect();
    let dests: Vec<IpAddr> = addrs.iter().map(|a| table.family.addr(*a)).collect();
    let kernel = kernel_answers(ns, &dests);
    let mut out = Outcome {
        total: dests.len(),
        agreed: 0,
        by_kind: BTreeMap::new(),
        ecmp: 0,
        failures: Vec::new(),
    };
    for ((a, d), k) in addrs.iter().zip(&dests).zip(&kernel) {
        let x = xdp.verdict(*d);
        *out.by_kind.entry(k.label()).or_default() += 1;
        if matches!(table.lookup(*a), Some((_, Kind::Multipath(_)))) {
            out.ecmp += 1;
        }
        match agree(table, gws, *a, k, &x) {
            Ok(()) => out.agreed += 1,
            Err(e) => out.failures.push(format!("{d}: {e}")),
        }
    }
    out
}

fn seed() -> u64 {
    match std::env::var("XDPGATE_DIFF_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("XDPGATE_DIFF_SEED={s:?}: {e}"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

#[test]
fn xdp_picks_the_next_hop_the_kernel_picks() {
    let seed = seed();
    println!("differential: seed {seed:#x} (XDPGATE_DIFF_SEED to repeat)");
    let started = Instant::now();
    in_router(
        |_| {},
        |ns| {
            let mut rng = Rng(seed);
            let mut r = Router::new(&["eth1", "eth2"]);
            // The kernel's connected routes, mirrored (no destination is
            // drawn inside them, but the Fib should look like the kernel).
            r.connected("198.18.1.0/24", "eth1");
            r.connected("198.18.2.0/24", "eth2");
            r.connected("2001:db8:1::/64", "eth1");
            r.connected("2001:db8:2::/64", "eth2");
            let families = [Family::V4, Family::V6];
            let gws: Vec<Vec<Gateway>> = families.iter().map(|f| gateways(*f)).collect();
            for g in gws.iter().flatten() {
                r.neigh(g.dev, &g.addr.to_string(), g.mac);
            }
            let mut tables: Vec<Table> = families
                .iter()
                .zip(&gws)
                .map(|(f, g)| Table::generate(&mut rng, *f, g))
                .collect();
            let install = |r: &mut Router, table: &Table, gws: &[Gateway]| {
                let lines: Vec<String> = table
                    .routes
                    .iter()
                    .map(|(n, k)| kernel_route(*n, k, gws, "add"))
                    .collect();
                let (_, stderr, ok) = ip_batch(ns, false, false, &lines);
                assert!(ok, "ip -batch route add: {stderr}");
                for (n, k) in &table.routes {
                    let target = fib_target(r, k, gws);
                    r.try_route(prefix(&n.to_string()), target.clone())
                        .unwrap_or_else(|e| panic!("Fib route {n} {target}: {e}"));
                }
            };
            for (t, g) in tables.iter().zip(&gws) {
                install(&mut r, t, g);
            }
            let installed: Vec<usize> = tables.iter().map(|t| t.routes.len()).collect();
            println!(
                "routes installed: IPv4 {}, IPv6 {} ({:.1?})",
                installed[0],
                installed[1],
                started.elapsed()
            );

            let slot = r.slot("eth1");
            let last = r.dp.counters().slot(slot).expect("read counters");
            let by_mac = gws.iter().flatten().map(|g| (g.mac, g.clone())).collect();
            let mut xdp = Xdp {
                r: &mut r,
                by_mac,
                slot,
                last,
            };
            let mut results = Vec::new();
            for phase in [
                "all routes",
                "after deletions",
                "after churn 1",
                "after churn 2",
            ] {
                if phase.starts_with("after churn") {
                    // A batch of changes as a routing daemon makes them:
                    // new routes (some covering or covered by old ones),
                    // replaced targets, and deletions, on both sides.
                    for (t, g) in tables.iter_mut().zip(&gws) {
                        let mut lines = Vec::new();
                        let mut changes: Vec<(Net, Option<Kind>)> = Vec::new();
                        let doomed: Vec<Net> = t
                            .routes
                            .keys()
                            .filter(|_| rng.percent(10))
                            .copied()
                            .collect();
                        for n in doomed {
                            lines.push(kernel_route(n, &t.routes[&n], g, "del"));
                            t.routes.remove(&n);
                            changes.push((n, None));
                        }
                        for _ in 0..CHURN {
                            let (n, k) = Table::random_route(&mut rng, t.family, g);
                            if changes.iter().any(|(c, _)| *c == n) {
                                continue; // one change per prefix and batch
                            }
                            lines.push(kernel_route(n, &k, g, "replace"));
                            t.routes.insert(n, k.clone());
                            changes.push((n, Some(k)));
                        }
                        let (_, stderr, ok) = ip_batch(ns, false, false, &lines);
                        assert!(ok, "ip -batch churn: {stderr}");
                        for (n, k) in &changes {
                            let p = prefix(&n.to_string());
                            match k {
                                Some(k) => {
                                    let target = fib_target(xdp.r, k, g);
                                    xdp.r
                                        .try_route(p, target.clone())
                                        .unwrap_or_else(|e| panic!("Fib route {n} {target}: {e}"));
                                }
                                None => xdp
                                    .r
                                    .dp
                                    .update(|fib| fib.del_route(p))
                                    .unwrap_or_else(|e| panic!("Fib delete {n}: {e}")),
                            }
                        }
                    }
                }
                if phase == "after deletions" {
                    // Every short route and a quarter of the rest go, from
                    // both sides: holes appear, and deletion is compared too.
                    for (t, g) in tables.iter_mut().zip(&gws) {
                        let doomed: Vec<Net> = t
                            .routes
                            .keys()
                            .filter(|n| n.len < t.family.short() || rng.percent(25))
                            .copied()
                            .collect();
                        let lines: Vec<String> = doomed
                            .iter()
                            .map(|n| kernel_route(*n, &t.routes[n], g, "del"))
                            .collect();
                        let (_, stderr, ok) = ip_batch(ns, false, false, &lines);
                        assert!(ok, "ip -batch route del: {stderr}");
                        for n in &doomed {
                            xdp.r
                                .dp
                                .update(|fib| fib.del_route(prefix(&n.to_string())))
                                .unwrap_or_else(|e| panic!("Fib delete {n}: {e}"));
                            t.routes.remove(n);
                        }
                    }
                }
                for (t, g) in tables.iter().zip(&gws) {
                    let o = compare(ns, &mut xdp, t, g, &mut rng);
                    println!(
                        "{:?} {phase}: {} routes, {}/{} agree, kernel verdicts {:?}, {} via ECMP routes ({:.1?})",
                        t.family,
                        t.routes.len(),
                        o.agreed,
                        o.total,
                        o.by_kind,
                        o.ecmp,
                        started.elapsed()
                    );
                    results.push((t.family, phase, t.routes.len(), o));
                }
            }

            let mut failures = Vec::new();
            for (family, phase, _, o) in &results {
                for f in o.failures.iter().take(20) {
                    failures.push(format!("{family:?} {phase}: {f}"));
                }
            }
            let total: usize = results.iter().map(|r| r.3.total).sum();
            let agreed: usize = results.iter().map(|r| r.3.agreed).sum();
            println!(
                "differential summary: seed {seed:#x}; routes IPv4 {} -> {}, IPv6 {} -> {}; {total} destinations; agreement {agreed}/{total} ({:.2}%); {:.1?}",
                installed[0],
                tables[0].routes.len(),
                installed[1],
                tables[1].routes.len(),
                100.0 * agreed as f64 / total as f64,
                started.elapsed()
            );
            assert!(
                failures.is_empty(),
                "{} of {total} destinations disagree (seed {seed:#x}); first ones:\n{}",
                total - agreed,
                failures.join("\n")
            );
            // Not vacuous: every kind of answer occurred in every family.
            for family in families {
                let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
                let mut ecmp = 0;
                for (_, _, _, o) in results.iter().filter(|r| r.0 == family) {
                    for (k, n) in &o.by_kind {
                        *seen.entry(k).or_default() += n;
                    }
                    ecmp += o.ecmp;
                }
                for kind in [
                    "via eth1",
                    "via eth2",
                    "no route",
                    "blackhole",
                    "unreachable",
                    "prohibit",
                ] {
                    assert!(
                        seen.get(kind).copied().unwrap_or(0) >= 10,
                        "{family:?}: only {:?} destinations answered {kind:?}: {seen:?}",
                        seen.get(kind)
                    );
                }
                assert!(
                    ecmp >= 10,
                    "{family:?}: only {ecmp} destinations hit ECMP routes"
                );
            }
        },
    );
}
