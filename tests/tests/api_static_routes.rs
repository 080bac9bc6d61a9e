//! Tier 3 for static routes: a route added through the API lands in the
//! router namespace's kernel table, reaches XDP through the netlink sync,
//! carries traffic (kernel forwarding is off), goes away on DELETE, and is
//! installed again when the daemon restarts on the same database.
use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use xdpgate::{client, lab::ROUTER_IFACES, netns};
use xdpgate_tests::support::*;

const PREFIX: &str = "198.18.9.0/24";
const SERVICE: &str = "198.18.9.1";

fn kernel(router: &str) -> String {
    let out = netns::ip(["-n", router, "route", "show", "exact", PREFIX]).expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The XDP FIB's route for PREFIX, as (type, {(gateway, dev)}).
fn xdp_route(api: SocketAddr) -> Option<(String, std::collections::BTreeSet<(String, String)>)> {
    api_items(api, &format!("/api/v1/routes?prefix={PREFIX}"))
        .iter()
        .find(|r| r["prefix"] == PREFIX)
        .map(route_of)
}

fn via_h2() -> Option<(String, std::collections::BTreeSet<(String, String)>)> {
    Some((
        "unicast".to_owned(),
        [("198.18.2.2".to_owned(), "eth2".to_owned())].into(),
    ))
}

#[test]
fn a_static_route_reaches_kernel_and_xdp_and_survives_a_restart() {
    let lab = lab(false);
    let l = &lab.lab;
    let r = l.router();
    ExtraHost::add_lo_address(&l.h2(), &format!("{SERVICE}/32"));
    let daemon = Daemon::start(l, &[]);
    let api = daemon.api;
    let body = json!({"prefix": PREFIX, "gateway": "198.18.2.2", "dev": ROUTER_IFACES[1],
                      "comment": "service on h2"});
    client::post_json(api, "/api/v1/routes/static", &body).expect("add the route");
    let k = kernel(&r);
    assert!(k.contains("via 198.18.2.2 dev eth2 proto 205"), "{k}");
    wait_until(Duration::from_secs(5), "the route in the XDP FIB", || {
        xdp_route(api) == via_h2()
    });
    wait_until(
        Duration::from_secs(10),
        "ping over the static route",
        || ping(&l.h1(), SERVICE, 1),
    );
    let list = client::get_json(api, "/api/v1/routes/static").expect("list");
    assert_eq!(list["items"][0]["installed"], true, "{list}");

    // A second add of the same prefix by hand is not ours: 409.
    let err = client::post_json(
        api,
        "/api/v1/routes/static",
        &json!({"prefix": "198.18.1.0/24", "type": "blackhole"}),
    )
    .expect_err("the connected route is not ours to replace");
    assert!(err.to_string().contains("409"), "{err}");

    client::delete_json(api, "/api/v1/routes/static/198.18.9.0%2F24").expect("delete");
    assert_eq!(kernel(&r), "");
    wait_until(Duration::from_secs(5), "the route gone from XDP", || {
        xdp_route(api).is_none()
    });

    // Stored routes come back with the daemon, even if the kernel lost them.
    client::post_json(api, "/api/v1/routes/static", &body).expect("add again");
    let (status, log) = daemon.signal_keep_db(SIGTERM);
    assert!(status.success(), "{log}");
    netns::ip(["-n", &r, "route", "del", PREFIX]).expect("ip route del");
    assert_eq!(kernel(&r), "");
    let daemon = Daemon::start(l, &[]);
    assert!(
        kernel(&r).contains("proto 205"),
        "not reinstalled:\n{}",
        daemon.log()
    );
    wait_until(
        Duration::from_secs(5),
        "the reinstalled route in XDP",
        || xdp_route(daemon.api) == via_h2(),
    );
    wait_until(Duration::from_secs(10), "ping after the restart", || {
        ping(&l.h1(), SERVICE, 1)
    });
}
