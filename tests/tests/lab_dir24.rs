//! DIR-24-8 under traffic: a continuous UDP stream from h1 to addresses
//! in 198.19.0.0/16 (h2 takes the whole /16 as local) crosses the lab
//! router, whose kernel forwarding is off, while covering and covered
//! prefixes of that region are added and deleted in a loop with
//! `ip route` in the router (the daemon follows over netlink). Every route
//! points at h2, and 198.19.0.0/16 itself stays, so at every instant every
//! destination has a route: a packet lost to a hole while DIR-24-8 entries
//! are rewritten would be punted as `no_route` and dropped by the kernel.
//! Needs root.
use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xdpgate::{lab::H2_V4, netns};
use xdpgate_tests::{support::*, traffic::big_receive_buffer};

const PORT: u16 = 7913;
/// Prefixes added and deleted in the loop: covering and covered, short and
/// long (a /17 rewrites 128 TBL24 entries, a /25 needs a TBL8 group).
const CHURN: [&str; 6] = [
    "198.19.0.0/17",
    "198.19.5.0/24",
    "198.19.5.128/25",
    "198.19.5.0/30",
    "198.19.5.200/32",
    "198.19.4.0/23",
];

#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The destination of datagram `i`: mostly in the churned blocks.
fn destination(i: u32) -> Ipv4Addr {
    match i % 4 {
        0 | 1 => Ipv4Addr::new(198, 19, 5, (i / 4) as u8),
        2 => Ipv4Addr::new(198, 19, 4, (i / 4) as u8),
        _ => Ipv4Addr::new(198, 19, (i / 4 % 256) as u8, (i % 251) as u8 + 1),
    }
}

#[test]
fn no_packet_is_lost_to_a_missing_route_while_prefixes_churn() {
    let lab = lab(false);
    let l = &lab.lab;
    let (r, h1, h2) = (l.router(), l.h1(), l.h2());
    ip(&[
        "-n",
        &h2,
        "route",
        "add",
        "local",
        "198.19.0.0/16",
        "dev",
        "lo",
    ]);
    ip(&[
        "-n",
        &r,
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        H2_V4,
        "dev",
        "eth2",
    ]);
    let daemon = Daemon::start_forwarding(l, true, &["--route-lookup", "dir24"]);
    let stats = daemon.stats();
    assert_eq!(stats["route_lookup"]["ipv4"], "dir24", "{stats}");
    wait_until(Duration::from_secs(10), "the /16 synced", || {
        api_items(daemon.api, "/api/v1/routes?prefix=198.19.0.0/16")
            .iter()
            .any(|r| r["prefix"] == "198.19.0.0/16")
    });

    // Receiver in h2: every datagram to any address of the /16.
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = {
        let (h2, stop) = (h2.clone(), stop.clone());
        std::thread::spawn(move || {
            netns::in_netns(&h2, || {
                let s = UdpSocket::bind(("0.0.0.0", PORT)).expect("bind in h2");
                big_receive_buffer(&s);
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut got = 0u64;
                let mut buf = [0u8; 64];
                loop {
                    match s.recv(&mut buf) {
                        Ok(_) => got += 1,
                        Err(_) if stop.load(Ordering::Relaxed) => return got,
                        Err(_) => {}
                    }
                }
            })
            .expect("enter h2")
        })
    };
    ready_rx.recv().expect("receiver ready");

    // Churn in the router while the sender runs.
    let churner = {
        let (r, stop) = (r.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Add in one order, delete in another: covered before and
                // after their covering prefixes.
                for p in CHURN {
                    ip(&["-n", &r, "route", "replace", p, "via", H2_V4, "dev", "eth2"]);
                }
                for p in [CHURN[0], CHURN[2], CHURN[1], CHURN[4], CHURN[3], CHURN[5]] {
                    ip(&["-n", &r, "route", "del", p]);
                }
                rounds += 1;
            }
            rounds
        })
    };

    let before = daemon.stats();
    let sent = netns::in_netns(&h1, || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind in h1");
        let start = Instant::now();
        let mut i = 0u32;
        while start.elapsed() < Duration::from_secs(6) {
            s.send_to(&i.to_be_bytes(), SocketAddr::from((destination(i), PORT)))
                .expect("send");
            i += 1;
            if i.is_multiple_of(32) {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        u64::from(i)
    })
    .expect("enter h1");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().expect("churner");
    let received = receiver.join().expect("receiver");
    let after = daemon.stats();

    let moved = |name: &str| {
        counter(&after, "eth1", "reasons", name) - counter(&before, "eth1", "reasons", name)
    };
    let (forwarded, no_route) = (moved("forwarded"), moved("no_route"));
    println!(
        "{sent} datagrams sent over {rounds} churn rounds ({} route changes), {received} \
         received; eth1 forwarded {forwarded}, no_route {no_route}; {}",
        rounds as usize * 2 * CHURN.len(),
        after["route_lookup"]
    );
    assert!(rounds >= 5, "only {rounds} churn rounds ran");
    assert_eq!(no_route, 0, "packets punted for want of a route: {after}");
    assert!(forwarded >= sent, "forwarded {forwarded} of {sent}");
    assert_eq!(received, sent, "datagrams lost");
    assert_eq!(after["route_lookup"]["dir24"]["lpm_blocks"], 0, "{after}");
}
