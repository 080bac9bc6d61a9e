//! The connection table through the API: connections XDP tracked while
//! forwarding through the lab router are listed in their original
//! direction, filters narrow the list, pages cover it, DELETE flushes it,
//! `xdpgate conntrack` (table, JSON, flush) shows the same, and the sweeper deletes what outlived its timeout.
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::{Value, json};
use xdpgate::{
    client,
    lab::{H1_V4, H2_V4},
    netns,
};
use xdpgate_tests::{
    support::*,
    traffic::{tcp_transfer, udp_burst},
};

fn h2() -> IpAddr {
    H2_V4.parse().expect("static")
}

#[track_caller]
fn get(api: SocketAddr, path: &str) -> Value {
    client::get_json(api, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The one item of `items` from h1 to h2 with `proto` and destination
/// port `dport` (None: any).
#[track_caller]
fn find<'a>(items: &'a [Value], proto: &str, dport: Option<u16>) -> &'a Value {
    items
        .iter()
        .find(|c| {
            c["proto"] == proto
                && c["src"] == H1_V4
                && c["dst"] == H2_V4
                && dport.is_none_or(|p| c["dport"] == p)
        })
        .unwrap_or_else(|| panic!("no {proto} h1 -> h2 ({dport:?}) in {items:#?}"))
}

/// A TCP connection h1 -> h2:`port` that stays open, with data both ways.
fn open_tcp(lab: &xdpgate::lab::Lab, port: u16) -> (TcpStream, TcpStream) {
    let addr = SocketAddr::new(h2(), port);
    let listener = netns::in_netns(&lab.h2(), || TcpListener::bind(addr))
        .expect("netns h2")
        .expect("bind");
    let mut client = netns::in_netns(&lab.h1(), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .expect("netns h1")
    .expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).expect("read");
    server.write_all(b"pong").expect("write back");
    client.read_exact(&mut buf).expect("read back");
    (client, server)
}

/// `xdpgate conntrack ARGS --api API`: stdout, or stderr when it fails.
fn cli(api: SocketAddr, args: &[&str]) -> Result<String, String> {
    let (sub, rest) = match args.first() {
        Some(&"flush") => (vec!["conntrack", "flush"], &args[1..]),
        _ => (vec!["conntrack"], args),
    };
    let api = api.to_string();
    let out = std::process::Command::new(xdpgate_bin())
        .args(&sub)
        .args(["--api", &api])
        .args(rest)
        .output()
        .expect("run xdpgate conntrack");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

#[test]
fn conntrack_lists_filters_pages_and_flushes() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(
        l,
        true,
        &["-v", "--ct-timeout", "icmp=3600", "--ct-timeout", "udp=2"],
    );
    let api = daemon.api;
    // A rule on state makes the forward chain track connections.
    client::post_json(
        api,
        "/api/v1/firewall/apply",
        &json!({"policy": {"forward": "accept", "input": "accept"},
            "rules": [{"chain": "forward", "state": ["invalid"], "action": "drop"}],
            "sets": []}),
    )
    .expect("apply a ruleset that tracks state");

    assert!(ping(&l.h1(), H2_V4, 2), "ping h1 -> h2");
    let got = tcp_transfer(&l.h1(), &l.h2(), h2(), 7301, 64 * 1024).expect("TCP transfer");
    assert_eq!(got.len(), 64 * 1024);
    let (_client, _server) = open_tcp(l, 7302);

    let page = get(api, "/api/v1/conntrack");
    assert_eq!(page["capacity"], dataplane_common::CT_DEFAULT_MAX, "{page}");
    let items = page["items"].as_array().expect("items").clone();
    assert_eq!(page["total"], items.len(), "{page}");

    let icmp = find(&items, "icmp", None);
    assert_eq!(icmp["state"], "ECHO", "{icmp}");
    assert_eq!(icmp["family"], 4);
    assert_eq!(icmp["seen_reply"], true, "{icmp}");
    // --ct-timeout icmp=3600 reached the dataplane.
    let left = icmp["expires_in_s"].as_u64().expect("expires_in_s");
    assert!((3500..=3600).contains(&left), "{icmp}");

    let live = find(&items, "tcp", Some(7302));
    assert_eq!(live["state"], "ESTABLISHED", "{live}");
    assert_eq!(live["seen_reply"], true, "{live}");
    assert_ne!(live["ifindex_orig"], live["ifindex_out"], "{live}");
    assert!(live["sport"].as_u64().expect("sport") > 1024, "{live}");
    let done = find(&items, "tcp", Some(7301));
    assert_eq!(done["seen_reply"], true, "{done}");
    assert_ne!(done["state"], "SYN_SENT", "{done}");

    // Filters narrow the list.
    let only = |q: &str| get(api, &format!("/api/v1/conntrack?{q}"))["items"].clone();
    let icmps = only("proto=icmp");
    assert!(
        icmps
            .as_array()
            .expect("items")
            .iter()
            .all(|c| c["proto"] == "icmp"),
        "{icmps}"
    );
    assert!(!icmps.as_array().expect("items").is_empty());
    let by_port = only("port=7302");
    assert_eq!(by_port.as_array().expect("items").len(), 1, "{by_port}");
    let est = only("state=established&proto=tcp&src=198.18.1.0/24&dst=198.18.2.2");
    find(est.as_array().expect("items"), "tcp", Some(7302));
    assert!(
        only("src=198.18.2.0/24")
            .as_array()
            .expect("items")
            .is_empty()
    );

    // Bad filters get the API's JSON error.
    for q in [
        "proto=bogus",
        "port=70000",
        "state=open",
        "cursor=zz",
        "limit=0",
        "dport=1",
    ] {
        match client::get_json(api, &format!("/api/v1/conntrack?{q}")) {
            Err(client::ClientError::Status { status, body, .. }) => {
                assert_eq!(status, 400, "{q}: {body}");
                let v: Value = serde_json::from_str(&body).expect("JSON error");
                assert_eq!(v["error"]["code"], "bad_request", "{q}: {body}");
            }
            other => panic!("{q}: {other:?}"),
        }
    }

    // Pages of one cover the table once each, in key order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conntrack?limit=1&cursor={c}"),
            None => "/api/v1/conntrack?limit=1".to_owned(),
        };
        let p = get(api, &path);
        paged.extend(p["items"].as_array().expect("items").iter().cloned());
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(paged.len() <= items.len() + 5, "paging does not end");
    }
    let key = |c: &Value| {
        format!(
            "{}{}{}{}{}",
            c["proto"], c["src"], c["sport"], c["dst"], c["dport"]
        )
    };
    let mut a: Vec<String> = paged.iter().map(key).collect();
    let mut b: Vec<String> = items.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "pages differ from the whole list");

    // The CLI over the same API: a table, JSON, a refused filter.
    let table = cli(api, &["--proto", "tcp", "--port", "7302"]).expect("conntrack table");
    let row = table
        .lines()
        .find(|l| l.contains(":7302"))
        .unwrap_or_else(|| panic!("no row for :7302 in\n{table}"));
    assert!(
        row.contains("tcp") && row.contains("ESTABLISHED"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.contains(":7302")).count(),
        1,
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&cli(api, &["--json", "--proto", "icmp"]).expect("conntrack --json"))
            .expect("--json prints JSON");
    let listed = listed.as_array().expect("an array of connections");
    assert!(
        !listed.is_empty() && listed.iter().all(|c| c["state"] == "ECHO"),
        "{listed:?}"
    );
    let refused = cli(api, &["--proto", "bogus"]).expect_err("a bad filter fails");
    assert!(refused.contains("proto"), "{refused}");

    // Flush by filter (through the CLI), then everything.
    let flushed = cli(api, &["flush", "--proto", "icmp"]).expect("conntrack flush");
    let n: u64 = flushed
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flush printed {flushed:?}"));
    assert!(n >= 1 && flushed.contains("flushed"), "{flushed}");
    assert!(only("proto=icmp").as_array().expect("items").is_empty());
    find(
        get(api, "/api/v1/conntrack")["items"]
            .as_array()
            .expect("items"),
        "tcp",
        Some(7302),
    );
    let deleted = client::delete_json(api, "/api/v1/conntrack").expect("flush all");
    assert!(
        deleted["deleted"].as_u64().expect("deleted") >= 2,
        "{deleted}"
    );
    let rest = get(api, "/api/v1/conntrack?proto=tcp");
    assert_eq!(rest["total"], 0, "{rest}");

    // UDP with a 2 s timeout: listed while fresh, then swept (every 5 s).
    let got = udp_burst(&l.h1(), &l.h2(), h2(), 7303, 5, 100).expect("UDP");
    assert!(got > 0);
    let udp = only("proto=udp&port=7303");
    assert_eq!(udp[0]["state"], "UNREPLIED", "{udp}");
    wait_until(Duration::from_secs(15), "the sweeper to expire UDP", || {
        daemon.log().contains("conntrack sweep")
    });
    assert!(only("proto=udp").as_array().expect("items").is_empty());
}
