//! Tier 3 for the kernel sync: `ip route` and `ip link` in the router change
//! where XDP sends traffic. Kernel forwarding is off in the router, so every
//! packet that arrives was carried by XDP.
use std::time::Duration;

use xdpgate::netns;
use xdpgate_tests::{support::*, traffic::udp_burst};

const SERVICE: &str = "198.18.100.1";
const SERVICE6: &str = "2001:db8:100::1";

/// Lab (forwarding off) + h3; the service address on h2 and h3; the daemon
/// on eth1..eth3.
struct Setup {
    daemon: Daemon,
    h3: ExtraHost,
    lab: xdpgate::lab::LabGuard,
}

impl Setup {
    fn new() -> Setup {
        let lab = lab(false);
        let h3 = ExtraHost::add(&lab.lab);
        for ns in [lab.lab.h2(), h3.ns.clone()] {
            ExtraHost::add_lo_address(&ns, &format!("{SERVICE}/32"));
            ExtraHost::add_lo_address(&ns, &format!("{SERVICE6}/128"));
        }
        let daemon = Daemon::start(
            &lab.lab,
            &["--iface", "eth1", "--iface", "eth2", "--iface", "eth3"],
        );
        // h1 resolves its gateway first: a fresh host queues only ~64
        // packets per unresolved neighbour (unres_qlen_bytes) and drops the
        // rest of a burst, which has nothing to do with the router.
        assert!(ping(&lab.lab.h1(), xdpgate::lab::R1_V4, 1));
        assert!(ping(&lab.lab.h1(), xdpgate::lab::R1_V6, 1));
        Setup { daemon, h3, lab }
    }

    fn router(&self, args: &[&str]) {
        let r = self.lab.lab.router();
        let mut all = vec!["-n", r.as_str()];
        all.extend_from_slice(args);
        netns::ip(&all).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    }

    /// Wait until a probe datagram from h1 to `dst` reaches `ns`: the new
    /// path is in place end to end (route, next hop and its neighbour).
    fn wait_path(&self, dst: &str, ns: &str, port: u16) {
        let l = &self.lab.lab;
        let dst = dst.parse().expect("ip");
        wait_until(
            Duration::from_secs(5),
            &format!("a probe to {dst} at {ns}"),
            || udp_burst(&l.h1(), ns, dst, port, 1, 64).unwrap_or(0) == 1,
        );
    }

    /// Datagrams that reach (h2, h3) out of `n` sent from h1 to `dst`.
    fn deliveries(&self, dst: &str, port: u16, n: u32) -> (u32, u32) {
        let l = &self.lab.lab;
        let dst = dst.parse().expect("ip");
        let to_h2 = udp_burst(&l.h1(), &l.h2(), dst, port, n, 200).unwrap_or(0);

        let to_h3 = udp_burst(&l.h1(), &self.h3.ns, dst, port + 1, n, 200).unwrap_or(0);
        (to_h2, to_h3)
    }

    /// Wait until the daemon's route for `prefix` has `want` next hops
    /// through gateways containing `gw` (or is gone if `want` is 0), and
    /// every gateway of it has a neighbour entry (the daemon asks the kernel
    /// to resolve new gateways; until then XDP punts).
    fn wait_route(&self, prefix: &str, want: usize, gw: &str) {
        let api = self.daemon.api;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v = xdpgate::client::get_json(api, &format!("/api/v1/routes?prefix={prefix}"))
                .expect("routes");
            let neighbours = xdpgate::client::get_json(api, "/api/v1/neighbours?limit=1000")
                .expect("neighbours");
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let route = items.iter().find(|r| r["prefix"] == prefix);
            let known = |g: &serde_json::Value| {
                neighbours["items"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["address"] == *g))
            };
            let done = match (route, want) {
                (None, 0) => true,
                (Some(r), n) if n > 0 => {
                    let hops = r["nexthops"].as_array().cloned().unwrap_or_default();
                    hops.len() == n
                        && hops
                            .iter()
                            .any(|h| h["gateway"].as_str().is_some_and(|g| g.contains(gw)))
                        && hops.iter().all(|h| known(&h["gateway"]))
                }
                _ => false,
            };
            if done {
                return;
            }
            if std::time::Instant::now() > deadline {
                let kernel = netns::ip(["-n", self.lab.lab.router().as_str(), "neigh", "show"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let kernel6 =
                    netns::ip(["-n", self.lab.lab.router().as_str(), "-6", "neigh", "show"])
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                panic!(
                    "route {prefix} not as wanted ({want} hops via {gw}) after 5 s\nroutes: {v}\nneighbours: {neighbours}\nkernel:\n{kernel}{kernel6}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn ip_route_add_replace_del_moves_the_traffic() {
    let s = Setup::new();
    // No route yet: with forwarding off nothing arrives anywhere.
    assert_eq!(s.deliveries(SERVICE, 8000, 20), (0, 0));

    s.router(&["route", "add", "198.18.100.0/24", "via", "198.18.2.2"]);
    s.wait_route("198.18.100.0/24", 1, "198.18.2.2");
    s.wait_path(SERVICE, &s.lab.lab.h2(), 8009);
    assert_eq!(s.deliveries(SERVICE, 8010, 200), (200, 0), "via h2");

    s.router(&["route", "replace", "198.18.100.0/24", "via", H3_V4]);
    s.wait_route("198.18.100.0/24", 1, H3_V4);
    s.wait_path(SERVICE, &s.h3.ns, 8019);
    assert_eq!(s.deliveries(SERVICE, 8020, 200), (0, 200), "via h3");

    s.router(&["route", "del", "198.18.100.0/24"]);
    s.wait_route("198.18.100.0/24", 0, "");
    assert_eq!(s.deliveries(SERVICE, 8030, 20), (0, 0), "withdrawn");

    // IPv6 the same way.
    s.router(&[
        "-6",
        "route",
        "add",
        "2001:db8:100::/48",
        "via",
        "2001:db8:2::2",
    ]);
    s.wait_route("2001:db8:100::/48", 1, "2001:db8:2::2");
    s.wait_path(SERVICE6, &s.lab.lab.h2(), 8039);
    assert_eq!(s.deliveries(SERVICE6, 8040, 200), (200, 0), "v6 via h2");
    s.router(&["-6", "route", "replace", "2001:db8:100::/48", "via", H3_V6]);
    s.wait_route("2001:db8:100::/48", 1, H3_V6);
    s.wait_path(SERVICE6, &s.h3.ns, 8049);
    assert_eq!(s.deliveries(SERVICE6, 8050, 200), (0, 200), "v6 via h3");
}

/// Send one datagram per source port from h1 and count where they land.
fn spread(s: &Setup, dst: &str, flows: u16) -> (u32, u32) {
    use std::net::{SocketAddr, UdpSocket};
    let l = &s.lab.lab;
    let dst: std::net::IpAddr = dst.parse().expect("ip");
    let count = |ns: &str, port: u16| {
        let ns = ns.to_owned();
        std::thread::spawn(move || {
            netns::in_netns(&ns, || {
                let sock = UdpSocket::bind(SocketAddr::new(dst, port)).expect("bind");
                sock.set_read_timeout(Some(Duration::from_millis(700)))
                    .expect("timeout");
                let mut n = 0u32;
                let mut buf = [0u8; 64];
                while sock.recv(&mut buf).is_ok() {
                    n += 1;
                }
                n
            })
            .expect("netns")
        })
    };
    let a = count(&l.h2(), 9000);
    let b = count(&s.h3.ns, 9000);
    std::thread::sleep(Duration::from_millis(100));
    netns::in_netns(&l.h1(), || {
        for p in 0..flows {
            let sock = UdpSocket::bind(SocketAddr::new("0.0.0.0".parse().expect("ip"), 20000 + p))
                .expect("bind");
            sock.send_to(b"flow", SocketAddr::new(dst, 9000))
                .expect("send");
        }
    })
    .expect("netns");
    (a.join().expect("h2"), b.join().expect("h3"))
}

#[test]
fn multipath_spreads_flows_and_a_link_down_moves_them() {
    let s = Setup::new();
    s.router(&[
        "route",
        "add",
        "198.18.100.0/24",
        "nexthop",
        "via",
        "198.18.2.2",
        "nexthop",
        "via",
        H3_V4,
    ]);
    s.wait_route("198.18.100.0/24", 2, H3_V4);
    let (h2, h3) = spread(&s, SERVICE, 200);
    eprintln!("ECMP: {h2} flows to h2, {h3} to h3");
    assert_eq!(h2 + h3, 200, "flows lost");
    assert!(h2 >= 40 && h3 >= 40, "uneven spread: h2 {h2}, h3 {h3}");

    // eth3 down: every flow goes through h2.
    s.router(&["link", "set", "eth3", "down"]);
    s.wait_route("198.18.100.0/24", 1, "198.18.2.2");
    let (h2, h3) = spread(&s, SERVICE, 100);
    assert_eq!((h2, h3), (100, 0), "after eth3 went down");

    // And back.
    s.router(&["link", "set", "eth3", "up"]);
    s.wait_route("198.18.100.0/24", 2, H3_V4);
    let (h2, h3) = spread(&s, SERVICE, 200);
    assert!(
        h2 >= 40 && h3 >= 40,
        "after eth3 came back: h2 {h2}, h3 {h3}"
    );
}

#[test]
fn a_never_seen_next_hop_is_resolved_without_help() {
    // Forwarding is off: the kernel would never resolve 198.18.3.2 by
    // itself. The daemon asks for a managed neighbour entry.
    let s = Setup::new();
    let r = s.lab.lab.router();
    let before = netns::ip(["-n", r.as_str(), "neigh", "show", "dev", "eth3"]).expect("neigh");
    assert!(
        !String::from_utf8_lossy(&before.stdout).contains(H3_V4),
        "h3 already known"
    );
    s.router(&["route", "add", "198.18.100.0/24", "via", H3_V4]);
    wait_until(Duration::from_secs(5), "h3 in the neighbour map", || {
        let v = xdpgate::client::get_json(s.daemon.api, "/api/v1/neighbours?dev=eth3")
            .expect("neighbours");
        v["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["address"] == H3_V4))
    });
    assert_eq!(s.deliveries(SERVICE, 8100, 100), (0, 100));
    let after = netns::ip(["-n", r.as_str(), "neigh", "show", "dev", "eth3"]).expect("neigh");
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("managed"),
        "no managed entry"
    );
}

#[test]
fn routes_through_unmanaged_interfaces_punt_instead_of_falling_through() {
    // eth3 exists but the daemon does not manage it: a /24 through it must
    // not fall through to a covering route that XDP would forward.
    let lab = lab(true);
    let h3 = ExtraHost::add(&lab.lab);
    ExtraHost::add_lo_address(&h3.ns, &format!("{SERVICE}/32"));
    let daemon = Daemon::start(&lab.lab, &[]);
    let r = lab.lab.router();
    netns::ip([
        "-n",
        r.as_str(),
        "route",
        "add",
        "198.18.0.0/16",
        "via",
        "198.18.2.2",
    ])
    .expect("cover");
    netns::ip([
        "-n",
        r.as_str(),
        "route",
        "add",
        "198.18.100.0/24",
        "via",
        H3_V4,
    ])
    .expect("specific");
    wait_until(Duration::from_secs(5), "kernel route", || {
        let v = xdpgate::client::get_json(daemon.api, "/api/v1/routes?prefix=198.18.100.0/24")
            .expect("routes");
        v["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["type"] == "kernel"))
    });
    // The kernel (forwarding on) carries it to h3.
    let got = udp_burst(
        &lab.lab.h1(),
        &h3.ns,
        SERVICE.parse().expect("ip"),
        8200,
        50,
        100,
    )
    .expect("udp");
    assert_eq!(got, 50);
    let s = daemon.stats();
    assert!(
        counter(&s, "eth1", "reasons", "egress_unmanaged") >= 50,
        "{s}"
    );
}

#[test]
fn a_managed_interface_that_vanishes_is_dropped_and_reattached_when_it_returns() {
    let lab = lab(false);
    let h3 = ExtraHost::add(&lab.lab);
    let daemon = Daemon::start(
        &lab.lab,
        &["--iface", "eth1", "--iface", "eth2", "--iface", "eth3"],
    );
    let r = lab.lab.router();
    assert!(xdp_on(&r, "eth3").is_some());
    drop(h3);
    wait_until(
        Duration::from_secs(5),
        "eth3 to leave the links view",
        || {
            let v = xdpgate::client::get_json(daemon.api, "/api/v1/links").expect("links");
            !v["items"]
                .as_array()
                .is_some_and(|a| a.iter().any(|l| l["name"] == "eth3"))
        },
    );
    assert!(
        ping(&lab.lab.h1(), xdpgate::lab::R1_V4, 1),
        "daemon path broken"
    );

    let h3 = ExtraHost::add(&lab.lab);
    ExtraHost::add_lo_address(&h3.ns, &format!("{SERVICE}/32"));
    wait_until(Duration::from_secs(5), "XDP on the new eth3", || {
        xdp_on(&r, "eth3").is_some()
    });
    netns::ip([
        "-n",
        r.as_str(),
        "route",
        "add",
        "198.18.100.0/24",
        "via",
        H3_V4,
    ])
    .expect("route");
    assert!(ping(&lab.lab.h1(), xdpgate::lab::R1_V4, 1));
    wait_until(
        Duration::from_secs(5),
        "traffic through the new eth3",
        || {
            udp_burst(
                &lab.lab.h1(),
                &h3.ns,
                SERVICE.parse().expect("ip"),
                8300,
                1,
                64,
            )
            .unwrap_or(0)
                == 1
        },
    );
    let s = daemon.stats();
    assert!(counter(&s, "eth1", "reasons", "forwarded") >= 1, "{s}");
    let (status, stderr) = daemon.signal(SIGTERM);
    assert!(status.success(), "{stderr}");
    assert_eq!(xdp_on(&r, "eth3"), None, "left XDP on the re-attached eth3");
}
