//! The interfaces API on the lab router: detaching eth2 hands its inbound
//! traffic to the kernel (forwarding on, as in production), attaching it
//! again takes it back.
use std::net::IpAddr;

use serde_json::json;
use xdpgate::{
    client::{self, ClientError},
    lab::H1_V4,
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
