//! Tier 3 for the fast path: traffic really crosses the lab router.
//! With the kernel's forwarding off only XDP can carry it; with it on (as in
//! production) the kernel's own counters show it carried only the punts.
use std::{net::IpAddr, process::Command};

use xdpgate::lab::{H2_V4, H2_V6, R1_V4};
use xdpgate_tests::{
    support::*,
    traffic::{nstat, pattern, tcp_transfer, udp_burst},
};

const MB: usize = 1 << 20;

fn v4() -> IpAddr {
    H2_V4.parse().expect("static")
}
fn v6() -> IpAddr {
    H2_V6.parse().expect("static")
}

#[track_caller]
fn assert_tcp_exact(lab: &xdpgate::lab::Lab, dst: IpAddr, port: u16, len: usize) {
    let got = tcp_transfer(&lab.h1(), &lab.h2(), dst, port, len).expect("TCP transfer");
    assert_eq!(got.len(), len, "TCP to {dst}: length");
    assert!(got == pattern(len), "TCP to {dst}: bytes differ");
}

/// Run `args` in namespace `ns` and expect `expect` in its stdout.
#[track_caller]
fn assert_output_contains(ns: &str, args: &[&str], expect: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("run in netns");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(expect), "{args:?}: {text}");
}

#[test]
fn only_xdp_carries_traffic_when_kernel_forwarding_is_off() {
    let lab = lab(false);
    let l = &lab.lab;
    // Nothing crosses without the program: the kernel does not forward.
    assert!(!ping(&l.h1(), H2_V4, 1), "crossed without XDP");
    assert!(tcp_transfer(&l.h1(), &l.h2(), v4(), 7000, 1000).is_err());

    let daemon = Daemon::start_forwarding(l, true, &[]);
    assert_tcp_exact(l, v4(), 7001, 4 * MB);
    assert_tcp_exact(l, v6(), 7002, 4 * MB);
    for (dst, port) in [(v4(), 7003), (v6(), 7004)] {
        let got = udp_burst(&l.h1(), &l.h2(), dst, port, 2000, 1200).expect("UDP");
        assert_eq!(got, 2000, "UDP to {dst}: lost datagrams");
    }
    let s = daemon.stats();
    let fwd = counter(&s, "eth1", "reasons", "forwarded");
    assert!(fwd > 4 * MB as u64 / 1500, "eth1 forwarded only {fwd}: {s}");
    assert!(counter(&s, "eth2", "reasons", "forwarded") > 0, "{s}");
    assert_eq!(counter(&s, "eth1", "reasons", "malformed"), 0, "{s}");

    // And it stops again once the program is gone.
    let (status, _) = daemon.signal(SIGTERM);
    assert!(status.success());
    assert!(!ping(&l.h1(), H2_V4, 1), "crossed after detach");
}

#[test]
fn with_kernel_forwarding_on_the_kernel_carries_only_punts() {
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    // Warm up: address resolution on the hosts goes through the kernel.
    assert!(ping(&l.h1(), H2_V4, 1));
    assert!(ping(&l.h1(), H2_V6, 1));
    let before = nstat(&l.router());
    assert_tcp_exact(l, v4(), 7101, 2 * MB);
    assert_tcp_exact(l, v6(), 7102, 2 * MB);
    let got = udp_burst(&l.h1(), &l.h2(), v4(), 7103, 1000, 1000).expect("UDP");
    assert_eq!(got, 1000);
    let after = nstat(&l.router());
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    let s = daemon.stats();
    let xdp: u64 = ["eth1", "eth2"]
        .iter()
        .map(|d| counter(&s, d, "reasons", "forwarded"))
        .sum();
    let kernel4 = delta("IpForwDatagrams");
    let kernel6 = delta("Ip6OutForwDatagrams");
    eprintln!(
        "XDP forwarded {xdp} frames; kernel forwarded {kernel4} IPv4 and {kernel6} IPv6 datagrams"
    );
    assert!(xdp > 2000, "XDP forwarded only {xdp}: {s}");
    // Every data packet took the fast path: the kernel forwarded none.
    assert_eq!(kernel4, 0, "kernel forwarded IPv4 datagrams: {s}");
    assert_eq!(kernel6, 0, "kernel forwarded IPv6 datagrams: {s}");
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_kernel() {
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    for (args, expect) in [
        (
            vec!["ping", "-c", "1", "-W", "2", "-t", "1", H2_V4],
            "Time to live exceeded",
        ),
        (
            vec!["ping", "-6", "-c", "1", "-W", "2", "-t", "1", H2_V6],
            "Time exceeded: Hop limit",
        ),
    ] {
        assert_output_contains(&l.h1(), &args, expect);
    }
    let s = daemon.stats();
    assert!(counter(&s, "eth1", "reasons", "ttl_exceeded") >= 2, "{s}");
    // And a ping to the router itself with TTL 1 is delivered, not expired.
    assert!(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &l.h1(),
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "-t",
                "1",
                R1_V4
            ])
            .output()
            .expect("ping")
            .status
            .success(),
        "TTL-1 ping to the router's own address failed"
    );
    assert!(counter(&daemon.stats(), "eth1", "reasons", "local") >= 1);
}

#[test]
fn too_big_with_df_gets_fragmentation_needed_and_packet_too_big() {
    let lab = lab(true);
    let l = &lab.lab;
    xdpgate::netns::ip(["-n", &l.router(), "link", "set", "eth2", "mtu", "1280"]).expect("mtu");
    let daemon = Daemon::start_forwarding(l, true, &[]);
    for (args, expect) in [
        (
            vec![
                "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", H2_V4,
            ],
            "mtu = 1280",
        ),
        (
            vec!["ping", "-6", "-c", "1", "-W", "2", "-s", "1400", H2_V6],
            "mtu=1280",
        ),
    ] {
        assert_output_contains(&l.h1(), &args, expect);
    }
    let s = daemon.stats();
    assert!(counter(&s, "eth1", "reasons", "mtu") >= 2, "{s}");
    // Small packets still take the fast path.
    assert!(ping(&l.h1(), H2_V4, 1));
    assert!(counter(&daemon.stats(), "eth1", "reasons", "forwarded") >= 1);
}

#[test]
fn a_missing_neighbour_goes_through_the_kernel_until_the_map_has_it() {
    // Kernel forwarding on, neighbours learned only from the kernel (no
    // --neigh flags): the first packets are punted as no_neighbour and the
    // kernel forwards them (and resolves the host); the neighbour then
    // reaches the map over netlink and the next packets take the XDP path.
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start(l, &[]);
    let before = nstat(&l.router());
    assert!(ping(&l.h1(), H2_V4, 1), "first ping failed");
    let first = daemon.stats();
    let kernel = nstat(&l.router())["IpForwDatagrams"] - before["IpForwDatagrams"];
    assert!(
        counter(&first, "eth1", "reasons", "no_neighbour") >= 1,
        "{first}"
    );
    assert!(kernel >= 1, "the kernel forwarded nothing");
    // Wait until the sync has put h2 into the map.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n = xdpgate::client::get_json(daemon.api, "/api/v1/neighbours?dev=eth2")
            .expect("neighbours");
        if n["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["address"] == H2_V4))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "h2 never reached the neighbour map: {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let before = nstat(&l.router());
    assert!(ping(&l.h1(), H2_V4, 3));
    let after = nstat(&l.router());
    let s = daemon.stats();
    let fwd = counter(&s, "eth1", "reasons", "forwarded")
        - counter(&first, "eth1", "reasons", "forwarded");
    assert!(fwd >= 3, "only {fwd} of 3 requests took the XDP path: {s}");
    assert_eq!(
        after["IpForwDatagrams"] - before["IpForwDatagrams"],
        0,
        "kernel still forwarding"
    );
}
