//! Tier 3 with real routing daemons in the lab router: BIRD installs plain
//! RTA_GATEWAY routes, FRR installs every route through nexthop objects
//! (RTA_NH_ID, NOTES.md pitfall 11). The router's kernel forwarding is off
//! and the service address 198.18.100.1 / 2001:db8:100::1 sits on both h2's
//! and h3's loopback, so a datagram from h1 arrives where xdpgate's maps,
//! following the kernel over netlink, send it, and nowhere else.
//!
//! Needs `bird2` and `frr` (apt, `--no-install-recommends`).
use std::{
    collections::{BTreeSet, HashMap},
    fs::{self, File},
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use xdpgate::{
    lab::{H2_V4, H2_V6, LabGuard},
    netns,
};
use xdpgate_tests::support::{api_items, route_of};
use xdpgate_tests::traffic::big_receive_buffer;
use xdpgate_tests::{support::*, traffic::udp_burst};

const SVC_V4: &str = "198.18.100.1";
const SVC_V6: &str = "2001:db8:100::1";
const NET_V4: &str = "198.18.100.0/24";
const NET_V6: &str = "2001:db8:100::/48";
/// How long the kernel -> netlink -> maps path may take (and neighbour
/// resolution of a new gateway with it).
const CONVERGE: Duration = Duration::from_secs(15);
const BURST: u32 = 200;

/// The lab with h3, the service address on h2 and h3, and xdpgate on all
/// three router interfaces. Fields drop in order: daemon, h3, lab.
struct Setup {
    daemon: Daemon,
    h3: ExtraHost,
    lab: LabGuard,
}

impl Setup {
    #[track_caller]
    fn new() -> Setup {
        let lab = lab(false);
        let h3 = ExtraHost::add(&lab.lab);
        for ns in [lab.lab.h2(), h3.ns.clone()] {
            ExtraHost::add_lo_address(&ns, &format!("{SVC_V4}/32"));
            ExtraHost::add_lo_address(&ns, &format!("{SVC_V6}/128"));
        }
        let daemon = Daemon::start(
            &lab.lab,
            &["--iface", "eth1", "--iface", "eth2", "--iface", "eth3"],
        );
        Setup { daemon, h3, lab }
    }

    fn router(&self) -> String {
        self.lab.lab.router()
    }

    fn h2(&self) -> String {
        self.lab.lab.h2()
    }

    /// The kernel must not forward: only XDP may carry the traffic (a
    /// routing daemon that switched forwarding on would void the test).
    #[track_caller]
    fn assert_kernel_forwarding_off(&self) {
        let r = self.router();
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            let v = netns::read_sysctl(&r, key).expect("read forwarding sysctl");
            assert_eq!(v, "0", "{key} is on in the router");
        }
    }

    /// `ip -n ROUTER [-6] route show PREFIX`, as text.
    #[track_caller]
    fn kernel_route(&self, prefix: &str) -> String {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        let out = netns::ip(["-n", &self.router(), family, "route", "show", prefix])
            .expect("ip route show");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// One next hop as the API shows it: (gateway, dev).
type Hop = (String, String);

/// The daemon's route for exactly `prefix`: (type, next hops), if any.
#[track_caller]
fn api_route(api: SocketAddr, prefix: &str) -> Option<(String, BTreeSet<Hop>)> {
    api_items(api, &format!("/api/v1/routes?prefix={prefix}"))
        .into_iter()
        .find(|r| r["prefix"] == prefix)
        .map(|r| route_of(&r))
}

#[track_caller]
fn api_has_neighbour(api: SocketAddr, addr: &str, dev: &str) -> bool {
    api_items(api, &format!("/api/v1/neighbours?dev={dev}"))
        .iter()
        .any(|n| n["address"] == addr && n["mac"].is_string())
}

/// Wait until the daemon routes `prefix` through exactly `hops` (unicast
/// for one, multipath for more) and knows every gateway's MAC, so XDP can
/// forward without a punt.
#[track_caller]
fn wait_routed(s: &Setup, prefix: &str, hops: &[(&str, &str)]) {
    let kind = if hops.len() == 1 {
        "unicast"
    } else {
        "multipath"
    };
    let want: BTreeSet<Hop> = hops
        .iter()
        .map(|(g, d)| (g.to_string(), d.to_string()))
        .collect();
    let want = Some((kind.to_owned(), want));
    let api = s.daemon.api;
    // Bounded; on timeout, say what the daemon and the kernel hold.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = api_route(api, prefix);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {CONVERGE:?} the daemon routes {prefix} as {got:?}, not {want:?}; \
             the kernel: {:?}",
            s.kernel_route(prefix)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (gw, dev) in hops {
        wait_until(
            CONVERGE,
            &format!("neighbour {gw} on {dev} in /api/v1/neighbours"),
            || api_has_neighbour(api, gw, dev),
        );
    }
}

#[track_caller]
fn wait_withdrawn(s: &Setup, prefix: &str) {
    let api = s.daemon.api;
    let deadline = Instant::now() + CONVERGE;
    while let Some(got) = api_route(api, prefix) {
        assert!(
            Instant::now() < deadline,
            "after {CONVERGE:?} the daemon still routes {prefix} as {got:?}; the kernel: {:?}",
            s.kernel_route(prefix)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn svc(v6: bool) -> IpAddr {
    if v6 { SVC_V6 } else { SVC_V4 }.parse().expect("static")
}

/// A burst from h1 to the service address (both families) arrives whole at
/// `host`.
#[track_caller]
fn assert_arrives(s: &Setup, host: &str, port: u16) {
    for (v6, port) in [(false, port), (true, port + 1)] {
        let dst = svc(v6);
        let got = udp_burst(&s.lab.lab.h1(), host, dst, port, BURST, 600)
            .unwrap_or_else(|e| panic!("UDP to {dst} at {host}: {e}"));
        assert_eq!(
            got, BURST,
            "UDP to {dst}: only {got} of {BURST} reached {host}"
        );
    }
}

/// A burst from h1 to the service address (both families) does not reach
/// `host`.
#[track_caller]
fn assert_nothing_arrives(s: &Setup, host: &str, port: u16) {
    for (v6, port) in [(false, port), (true, port + 1)] {
        let dst = svc(v6);
        let got = udp_burst(&s.lab.lab.h1(), host, dst, port, BURST, 600)
            .unwrap_or_else(|e| panic!("UDP to {dst} at {host}: {e}"));
        assert_eq!(got, 0, "UDP to {dst}: {got} datagrams reached {host}");
    }
}

/// Routing daemons a test started in the router namespace, each a child
/// process in the foreground (so its pid file names the child), all state in
/// one temp dir. On drop, also while a test panics: SIGTERM by pid file
/// (SIGKILL after 5 s), then the temp dir and FRR's per-process dirs go.
struct RoutingDaemons {
    dir: PathBuf,
    router: String,
    procs: Vec<(String, Child, PathBuf)>,
    /// Paths the daemons create outside `dir` (FRR: /var/tmp/frr/NAME.PID).
    leftovers: Vec<PathBuf>,
}

impl RoutingDaemons {
    #[track_caller]
    fn new(router: &str, what: &str) -> RoutingDaemons {
        let dir = std::env::temp_dir().join(format!("xdpgate-{what}-{router}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the routing daemons' temp dir");
        RoutingDaemons {
            dir,
            router: router.to_owned(),
            procs: Vec::new(),
            leftovers: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// Start `args` in the router namespace; output goes to `NAME.log`.
    #[track_caller]
    fn spawn(&mut self, name: &str, args: &[String]) -> u32 {
        let log = File::create(self.path(&format!("{name}.log"))).expect("create log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({args:?}): {e}"));
        let pid = child.id();
        self.procs
            .push((name.to_owned(), child, self.path(&format!("{name}.pid"))));
        pid
    }

    /// Wait until `ready` holds; panic with the log if a daemon died.
    #[track_caller]
    fn wait_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready() {
            for (name, child, _) in &mut self.procs {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let log = fs::read_to_string(self.dir.join(format!("{name}.log")))
                        .unwrap_or_default();
                    panic!("{name} exited with {status} while waiting for {what}:\n{log}");
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run a control command (birdc, vtysh); panic on failure.
    #[track_caller]
    fn ctl(&self, args: &[String]) -> String {
        let out = Command::new(&args[0])
            .args(&args[1..])
            .output()
            .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?} failed: {text}");
        text
    }
}

impl Drop for RoutingDaemons {
    fn drop(&mut self) {
        for (name, child, pid_file) in self.procs.iter_mut().rev() {
            // The pid file names the child (foreground mode); fall back to
            // the child's own pid if the daemon never wrote one.
            if !matches!(child.try_wait(), Ok(None)) {
                // Already reaped: its pid may belong to someone else now.
                continue;
            }
            let pid = fs::read_to_string(&*pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|p| *p == child.id())
                .unwrap_or(child.id());
            // SAFETY: a signal to our own child process, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("{name} ignored SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        for p in &self.leftovers {
            let _ = fs::remove_dir_all(p);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// BIRD 2 with one kernel protocol per family and static routes for the
/// service prefixes (plain next hops: RTA_GATEWAY/RTA_OIF).
struct Bird {
    d: RoutingDaemons,
}

impl Bird {
    #[track_caller]
    fn start(router: &str, gw4: Option<&str>, gw6: Option<&str>) -> Bird {
        let mut d = RoutingDaemons::new(router, "bird");
        fs::write(d.path("bird.conf"), Self::conf(gw4, gw6)).expect("write bird.conf");
        let args: Vec<String> = [
            "bird".to_owned(),
            "-f".to_owned(),
            "-c".to_owned(),
            d.arg("bird.conf"),
            "-s".to_owned(),
            d.arg("bird.ctl"),
            "-P".to_owned(),
            d.arg("bird.pid"),
        ]
        .into();
        d.spawn("bird", &args);
        let ctl = d.arg("bird.ctl");
        d.wait_ready("bird's control socket", || {
            Command::new("birdc")
                .args(["-s", &ctl, "show", "status"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        Bird { d }
    }

    fn conf(gw4: Option<&str>, gw6: Option<&str>) -> String {
        let r4 = gw4.map_or(String::new(), |g| format!("route {NET_V4} via {g};"));
        let r6 = gw6.map_or(String::new(), |g| format!("route {NET_V6} via {g};"));
        format!(
            "router id 198.18.1.1;\n\
             protocol device {{ }}\n\
             protocol kernel k4 {{ ipv4 {{ export all; }}; }}\n\
             protocol kernel k6 {{ ipv6 {{ export all; }}; }}\n\
             protocol static s4 {{ ipv4; {r4} }}\n\
             protocol static s6 {{ ipv6; {r6} }}\n"
        )
    }

    /// Rewrite the config and have the running BIRD load it.
    #[track_caller]
    fn configure(&self, gw4: Option<&str>, gw6: Option<&str>) {
        fs::write(self.d.path("bird.conf"), Self::conf(gw4, gw6)).expect("write bird.conf");
        let out = self.d.ctl(&[
            "birdc".to_owned(),
            "-s".to_owned(),
            self.d.arg("bird.ctl"),
            "configure".to_owned(),
        ]);
        assert!(out.contains("Reconfigured"), "birdc configure: {out}");
    }
}

#[test]
fn bird_routes_steer_xdp_traffic_and_withdrawal_stops_it() {
    let s = Setup::new();
    let r = s.router();
    let h2 = s.h2();
    let h3 = s.h3.ns.clone();
    let bird = Bird::start(&r, Some(H2_V4), Some(H2_V6));
    s.assert_kernel_forwarding_off();

    // Plain gateway routes (no nexthop object) reach the maps.
    wait_routed(&s, NET_V4, &[(H2_V4, "eth2")]);
    wait_routed(&s, NET_V6, &[(H2_V6, "eth2")]);
    for (prefix, gw) in [(NET_V4, H2_V4), (NET_V6, H2_V6)] {
        let k = s.kernel_route(prefix);
        assert!(
            k.contains("proto bird") && k.contains(&format!("via {gw}")) && !k.contains("nhid"),
            "kernel route for {prefix}: {k}"
        );
    }
    assert_arrives(&s, &h2, 7200);
    assert_nothing_arrives(&s, &h3, 7202);

    // BIRD moves the routes to h3: the traffic follows.
    bird.configure(Some(H3_V4), Some(H3_V6));
    wait_routed(&s, NET_V4, &[(H3_V4, "eth3")]);
    wait_routed(&s, NET_V6, &[(H3_V6, "eth3")]);
    assert_arrives(&s, &h3, 7210);
    assert_nothing_arrives(&s, &h2, 7212);

    // BIRD withdraws them: nothing arrives anywhere.
    bird.configure(None, None);
    wait_withdrawn(&s, NET_V4);
    wait_withdrawn(&s, NET_V6);
    assert_eq!(
        s.kernel_route(NET_V4),
        "",
        "the kernel still routes {NET_V4}"
    );
    assert_nothing_arrives(&s, &h2, 7220);
    assert_nothing_arrives(&s, &h3, 7222);
}

/// FRR's zebra and staticd, started by hand (no init scripts, no
/// /etc/frr): routes are configured over vtysh and installed by zebra with
/// nexthop objects.
struct Frr {
    d: RoutingDaemons,
}

/// Where FRR keeps per-process crash-log dirs (`NAME.PID`); removed on a
/// clean exit, by the guard after a SIGKILL.
const FRR_TMP: &str = "/var/tmp/frr";

impl Frr {
    #[track_caller]
    fn start(router: &str) -> Frr {
        let mut d = RoutingDaemons::new(router, "frr");
        // The daemons drop to the `frr` user (root would have to be in the
        // `frrvty` group for `-u root`): they must own their state dir.
        let st = Command::new("chown")
            .args(["frr:frr", &d.dir_arg()])
            .status()
            .expect("chown");
        assert!(st.success(), "chown frr:frr {}", d.dir.display());
        for name in ["zebra", "staticd"] {
            let args: Vec<String> = [
                format!("/usr/lib/frr/{name}"),
                "-i".to_owned(),
                d.arg(&format!("{name}.pid")),
                "-z".to_owned(),
                d.arg("zserv.api"),
                "--vty_socket".to_owned(),
                d.dir_arg(),
                "-f".to_owned(),
                "/dev/null".to_owned(),
            ]
            .into();
            let pid = d.spawn(name, &args);
            d.leftovers
                .push(Path::new(FRR_TMP).join(format!("{name}.{pid}")));
            let vty = d.path(&format!("{name}.vty"));
            d.wait_ready(&format!("{name}'s vty socket"), || vty.exists());
        }
        Frr { d }
    }

    #[track_caller]
    fn conf(&self, lines: &[&str]) {
        let mut args = vec![
            "vtysh".to_owned(),
            "--vty_socket".to_owned(),
            self.d.dir_arg(),
            "-c".to_owned(),
            "conf t".to_owned(),
        ];
        for l in lines {
            args.push("-c".to_owned());
            args.push((*l).to_owned());
        }
        self.d.ctl(&args);
    }
}

#[track_caller]
fn assert_uses_nexthop_objects(s: &Setup, prefix: &str) {
    let k = s.kernel_route(prefix);
    assert!(
        k.contains("nhid") && k.contains("proto static"),
        "FRR did not install {prefix} with a nexthop object: {k:?}"
    );
}

#[test]
fn frr_nexthop_object_routes_steer_xdp_traffic_and_withdrawal_stops_it() {
    let s = Setup::new();
    let h2 = s.h2();
    let h3 = s.h3.ns.clone();
    let frr = Frr::start(&s.router());
    frr.conf(&[
        &format!("ip route {NET_V4} {H2_V4}"),
        &format!("ipv6 route {NET_V6} {H2_V6}"),
    ]);
    s.assert_kernel_forwarding_off();
    wait_routed(&s, NET_V4, &[(H2_V4, "eth2")]);
    wait_routed(&s, NET_V6, &[(H2_V6, "eth2")]);
    assert_uses_nexthop_objects(&s, NET_V4);
    assert_uses_nexthop_objects(&s, NET_V6);
    assert_arrives(&s, &h2, 7300);
    assert_nothing_arrives(&s, &h3, 7302);

    // Same prefixes, next hop moved to h3 (zebra swaps the nexthop object).
    frr.conf(&[
        &format!("ip route {NET_V4} {H3_V4}"),
        &format!("no ip route {NET_V4} {H2_V4}"),
        &format!("ipv6 route {NET_V6} {H3_V6}"),
        &format!("no ipv6 route {NET_V6} {H2_V6}"),
    ]);
    wait_routed(&s, NET_V4, &[(H3_V4, "eth3")]);
    wait_routed(&s, NET_V6, &[(H3_V6, "eth3")]);
    assert_uses_nexthop_objects(&s, NET_V4);
    assert_arrives(&s, &h3, 7310);
    assert_nothing_arrives(&s, &h2, 7312);

    frr.conf(&[
        &format!("no ip route {NET_V4} {H3_V4}"),
        &format!("no ipv6 route {NET_V6} {H3_V6}"),
    ]);
    wait_withdrawn(&s, NET_V4);
    wait_withdrawn(&s, NET_V6);
    assert_eq!(
        s.kernel_route(NET_V4),
        "",
        "the kernel still routes {NET_V4}"
    );
    assert_nothing_arrives(&s, &h2, 7320);
    assert_nothing_arrives(&s, &h3, 7322);
}

const FLOW_MAGIC: &[u8; 8] = b"xdpgECMP";

/// `flows` UDP flows (one source port each, `per_flow` datagrams each) from
/// `src` to `dst:port`, with a receiver in every namespace of `sinks` (each
/// holds `dst`). Returns, per sink, datagrams counted by source port. Every
/// receiver stops after 500 ms without traffic.
#[track_caller]
fn udp_flows(
    src: &str,
    sinks: &[String],
    dst: IpAddr,
    port: u16,
    flows: usize,
    per_flow: u32,
) -> Vec<HashMap<u16, u32>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let receivers: Vec<_> = sinks
        .iter()
        .map(|ns| {
            let ns = ns.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                netns::in_netns(&ns, || {
                    let s = UdpSocket::bind(SocketAddr::new(dst, port))
                        .unwrap_or_else(|e| panic!("bind {dst}:{port} in {ns}: {e}"));
                    big_receive_buffer(&s);
                    s.set_read_timeout(Some(Duration::from_millis(500)))
                        .expect("read timeout");
                    ready.send(()).expect("ready");
                    let mut seen: HashMap<u16, u32> = HashMap::new();
                    let mut buf = [0u8; 256];
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < deadline {
                        match s.recv_from(&mut buf) {
                            Ok((n, from)) if n == 16 && &buf[..8] == FLOW_MAGIC => {
                                *seen.entry(from.port()).or_default() += 1;
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                    seen
                })
                .expect("receiver namespace")
            })
        })
        .collect();
    for _ in sinks {
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("receivers ready");
    }
    netns::in_netns(src, || {
        let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .expect("static");
        // All sockets open at once: each gets its own ephemeral port.
        let socks: Vec<UdpSocket> = (0..flows)
            .map(|_| UdpSocket::bind(bind).expect("bind sender"))
            .collect();
        let mut sent = 0u32;
        for seq in 0..per_flow {
            for (i, s) in socks.iter().enumerate() {
                let mut p = [0u8; 16];
                p[..8].copy_from_slice(FLOW_MAGIC);
                p[8..12].copy_from_slice(&(i as u32).to_be_bytes());
                p[12..].copy_from_slice(&seq.to_be_bytes());
                s.send_to(&p, SocketAddr::new(dst, port)).expect("send");
                sent += 1;
                // Pace lightly: this checks delivery, not throughput.
                if sent.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    })
    .expect("sender namespace");
    receivers
        .into_iter()
        .map(|r| r.join().expect("receiver panicked"))
        .collect()
}

#[test]
fn frr_ecmp_group_spreads_flows_over_both_hosts_and_keeps_each_flow_on_one() {
    const FLOWS: usize = 64;
    const PER_FLOW: u32 = 20;
    let s = Setup::new();
    let h2 = s.h2();
    let h3 = s.h3.ns.clone();
    let frr = Frr::start(&s.router());
    frr.conf(&[
        &format!("ip route {NET_V4} {H2_V4}"),
        &format!("ip route {NET_V4} {H3_V4}"),
        &format!("ipv6 route {NET_V6} {H2_V6}"),
        &format!("ipv6 route {NET_V6} {H3_V6}"),
    ]);
    s.assert_kernel_forwarding_off();
    wait_routed(&s, NET_V4, &[(H2_V4, "eth2"), (H3_V4, "eth3")]);
    wait_routed(&s, NET_V6, &[(H2_V6, "eth2"), (H3_V6, "eth3")]);
    for prefix in [NET_V4, NET_V6] {
        // One group object over two member objects.
        let k = s.kernel_route(prefix);
        assert!(
            k.contains("nhid") && k.matches("nexthop via").count() == 2,
            "FRR did not install {prefix} as a nexthop group: {k:?}"
        );
    }

    let sinks = [h2.clone(), h3.clone()];
    for (v6, port) in [(false, 7400), (true, 7401)] {
        let dst = svc(v6);
        let got = udp_flows(&s.lab.lab.h1(), &sinks, dst, port, FLOWS, PER_FLOW);
        let per_host: Vec<u32> = got.iter().map(|m| m.values().sum()).collect();
        let flows_per_host: Vec<usize> = got.iter().map(HashMap::len).collect();
        eprintln!(
            "ECMP to {dst}: {FLOWS} flows x {PER_FLOW}: h2 got {} datagrams in {} flows, \
             h3 {} in {}",
            per_host[0], flows_per_host[0], per_host[1], flows_per_host[1]
        );
        let total: u32 = per_host.iter().sum();
        assert_eq!(
            total,
            FLOWS as u32 * PER_FLOW,
            "to {dst}: datagrams lost ({per_host:?})"
        );
        assert!(
            per_host.iter().all(|n| *n > 0),
            "to {dst}: one host got nothing: {per_host:?}"
        );
        // The hash is per flow: a flow never splits across the two paths.
        let split: Vec<u16> = got[0]
            .keys()
            .filter(|p| got[1].contains_key(p))
            .copied()
            .collect();
        assert!(
            split.is_empty(),
            "to {dst}: flows split over both hosts: {split:?}"
        );
        assert!(
            got.iter().flat_map(|m| m.values()).all(|n| *n == PER_FLOW),
            "to {dst}: a flow lost datagrams: {got:?}"
        );
    }

    // One member withdrawn: the group shrinks, every flow goes to h2.
    frr.conf(&[
        &format!("no ip route {NET_V4} {H3_V4}"),
        &format!("no ipv6 route {NET_V6} {H3_V6}"),
    ]);
    wait_routed(&s, NET_V4, &[(H2_V4, "eth2")]);
    wait_routed(&s, NET_V6, &[(H2_V6, "eth2")]);
    for (v6, port) in [(false, 7410), (true, 7411)] {
        let dst = svc(v6);
        let got = udp_flows(&s.lab.lab.h1(), &sinks, dst, port, FLOWS, PER_FLOW);
        let per_host: Vec<u32> = got.iter().map(|m| m.values().sum()).collect();
        assert_eq!(
            per_host,
            vec![FLOWS as u32 * PER_FLOW, 0],
            "to {dst} after the withdrawal of h3's member"
        );
    }
}
