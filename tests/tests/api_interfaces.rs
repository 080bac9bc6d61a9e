//! The interfaces API on the lab router: detaching eth2 hands its inbound
//! traffic to the kernel (forwarding on, as in production), attaching it
//! again takes it back.
use std::net::IpAddr;

use serde_json::json;
use xdpgate::{
    client::{self, ClientError},
    lab::H1_V4,
    netns,
};
use xdpgate_tests::{
    support::*,
    traffic::{nstat, udp_burst},
};

const BURST: u32 = 500;

/// Frames XDP saw on `iface`, from `GET /api/v1/interfaces/{iface}`.
#[track_caller]
fn xdp_received(api: std::net::SocketAddr, iface: &str) -> u64 {
    let v = client::get_json(api, &format!("/api/v1/interfaces/{iface}")).expect("GET interface");
    v["counters"]["received"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counters: {v}"))
}

fn kernel_forwarded(ns: &str) -> u64 {
    nstat(ns).get("IpForwDatagrams").copied().unwrap_or(0)
}

/// A burst from h2 to h1, entering the router on eth2: (delivered, frames
/// XDP saw on eth2, datagrams the kernel forwarded).
#[track_caller]
fn burst_from_h2(lab: &xdpgate::lab::Lab, api: std::net::SocketAddr, port: u16) -> (u32, u64, u64) {
    let dst: IpAddr = H1_V4.parse().expect("static");
    let (xdp0, k0) = (xdp_received(api, "eth2"), kernel_forwarded(&lab.router()));
    let got = udp_burst(&lab.h2(), &lab.h1(), dst, port, BURST, 600).expect("UDP burst");
    let (xdp1, k1) = (xdp_received(api, "eth2"), kernel_forwarded(&lab.router()));
    (got, xdp1 - xdp0, k1 - k0)
}

#[test]
fn detaching_eth2_falls_back_to_the_kernel_and_attaching_takes_it_back() {
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let api = daemon.api;
    client::get_json(api, "/readyz").expect("ready with both attached");

    let (got, xdp, kernel) = burst_from_h2(l, api, 7101);
    assert_eq!(got, BURST, "attached: lost datagrams");
    assert!(xdp >= u64::from(BURST), "attached: XDP saw only {xdp}");
    assert!(
        kernel < u64::from(BURST) / 10,
        "attached: the kernel forwarded {kernel}"
    );

    let v =
        client::post_json(api, "/api/v1/interfaces/eth2/detach", &json!({})).expect("detach eth2");
    assert_eq!(v["attached"], false, "{v}");
    assert_eq!(xdp_on(&l.router(), "eth2"), None, "XDP still on eth2");
    // Detached on request, eth2 is no longer wanted: still ready.
    client::get_json(api, "/readyz").expect("ready after an intended detach");
    let (got, xdp, kernel) = burst_from_h2(l, api, 7102);
    assert_eq!(got, BURST, "detached: lost datagrams");
    assert_eq!(xdp, 0, "detached: XDP still saw frames on eth2");
    assert!(
        kernel >= u64::from(BURST),
        "detached: the kernel forwarded only {kernel}"
    );
    // A second detach is a conflict, not a crash.
    match client::post_json(api, "/api/v1/interfaces/eth2/detach", &json!({})) {
        Err(ClientError::Status { status: 409, .. }) => {}
        other => panic!("second detach: {other:?}"),
    }

    let v = client::post_json(
        api,
        "/api/v1/interfaces/eth2/attach",
        &json!({ "mode": "native" }),
    )
    .expect("attach eth2");
    assert_eq!(v["attached"], true, "{v}");
    assert!(
        xdp_on(&l.router(), "eth2").is_some(),
        "XDP not back on eth2"
    );
    client::get_json(api, "/readyz").expect("ready again");
    let (got, xdp, kernel) = burst_from_h2(l, api, 7103);
    assert_eq!(got, BURST, "reattached: lost datagrams");
    assert!(xdp >= u64::from(BURST), "reattached: XDP saw only {xdp}");
    assert!(
        kernel < u64::from(BURST) / 10,
        "reattached: the kernel forwarded {kernel}"
    );
}

/// A veth pair `name`/`name`p inside the router namespace, both up.
fn router_veth(l: &xdpgate::lab::Lab, name: &str) {
    let r = l.router();
    let peer = format!("{name}p");
    for args in [
        vec!["link", "add", name, "type", "veth", "peer", "name", &peer],
        vec!["link", "set", name, "up"],
        vec!["link", "set", &peer, "up"],
    ] {
        netns::ip(["-n", r.as_str()].into_iter().chain(args)).expect("ip link");
    }
}

/// Wait until `GET /api/v1/interfaces/{name}` says `attached` is `want`;
/// returns that answer.
#[track_caller]
fn wait_attached(api: std::net::SocketAddr, name: &str, want: bool) -> serde_json::Value {
    let get = || client::get_json(api, &format!("/api/v1/interfaces/{name}")).ok();
    wait_until(
        std::time::Duration::from_secs(10),
        &format!("{name} attached: {want}"),
        || get().is_some_and(|v| v["attached"] == want),
    );
    get().expect("GET interface")
}

/// Interfaces attached through the API are saved: the next daemon, whose
/// command line names only eth1, attaches them again in the same mode (eth2
/// carries traffic through XDP again), and one that is missing at start is
/// attached by the kernel sync when it appears. Detached through the API,
/// an interface stays detached after a restart.
#[test]
fn attached_through_the_api_survives_a_restart_and_detached_stays_detached() {
    let lab = lab(true);
    let l = &lab.lab;
    let r = l.router();
    let only_eth1 = ["--iface", "eth1"];
    let extra = format!("{}sv", l.prefix);
    router_veth(l, &extra);

    let daemon = Daemon::start(l, &only_eth1);
    for (name, mode) in [("eth2", "skb"), (extra.as_str(), "skb")] {
        let v = client::post_json(
            daemon.api,
            &format!("/api/v1/interfaces/{name}/attach"),
            &json!({ "mode": mode }),
        )
        .expect("attach");
        assert_eq!(v["attached"], true, "{v}");
    }
    let (status, log) = daemon.signal_keep_db(SIGTERM);
    assert!(status.success(), "first daemon: {status}\n{log}");
    assert_eq!(xdp_on(&r, "eth2"), None, "a stopped daemon detaches");
    // Gone while no daemon runs: the next one cannot attach it at start.
    netns::ip(["-n", r.as_str(), "link", "del", &extra]).expect("ip link del");

    let daemon = Daemon::start(l, &only_eth1);
    let v = wait_attached(daemon.api, "eth2", true);
    assert_eq!(
        (&v["mode"], &v["wanted"]),
        (&json!("skb"), &json!(true)),
        "{v}"
    );
    assert!(
        xdp_on(&r, "eth2").is_some(),
        "XDP not on eth2 after the restart"
    );
    let log = daemon.log();
    assert!(
        log.contains("attached (saved by the API)") && log.contains(&extra),
        "the log does not say what it attached and what it could not:\n{log}"
    );
    let (got, xdp, _) = burst_from_h2(l, daemon.api, 7104);
    assert_eq!(got, BURST, "restarted: lost datagrams");
    assert!(
        xdp >= u64::from(BURST),
        "restarted: XDP saw only {xdp} on eth2"
    );
    // The missing one comes back and is attached by the sync.
    router_veth(l, &extra);
    let v = wait_attached(daemon.api, &extra, true);
    assert_eq!(v["mode"], "skb", "{v}");
    assert!(xdp_on(&r, &extra).is_some(), "XDP not on {extra}");

    let v = client::post_json(daemon.api, "/api/v1/interfaces/eth2/detach", &json!({}))
        .expect("detach eth2");
    assert_eq!(v["attached"], false, "{v}");
    let (status, log) = daemon.signal_keep_db(SIGTERM);
    assert!(status.success(), "second daemon: {status}\n{log}");

    let daemon = Daemon::start(l, &only_eth1);
    client::get_json(daemon.api, "/readyz").expect("ready");
    let v = client::get_json(daemon.api, "/api/v1/interfaces/eth2").expect("eth2");
    assert_eq!(v["attached"], false, "detached eth2 came back: {v}");
    assert_eq!(xdp_on(&r, "eth2"), None);
    wait_attached(daemon.api, &extra, true);
}
