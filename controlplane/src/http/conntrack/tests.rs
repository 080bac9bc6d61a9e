//! The connection table's list and flush through `app(state).oneshot(...)`,
//! on entries written into the loaded (not attached) program's conntrack
//! map as the program would (needs root).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane_common::{
    CT_F_ORIG_IS_LO, CT_F_SEEN_REPLY, CT_ICMP, CT_TCP_ESTABLISHED, CT_UDP_UNREPLIED, CtEntry, CtKey,
};
use serde_json::{Value, json};

use crate::{
    conntrack::now_ns,
    http::{
        AppState,
        testutil::{call, state},
    },
};

fn octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// A live entry whose originator is `src:sport` (the key's low side).
fn put(st: &AppState, proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16, state: u8) {
    let key = CtKey {
        addr_lo: octets(src),
        addr_hi: octets(dst),
        port_lo: sport,
        port_hi: dport,
        proto,
        family: if src.is_ipv4() { 4 } else { 6 },
        _pad: [0; 2],
    };
    let now = now_ns();
    let entry = CtEntry {
        state,
        flags: CT_F_ORIG_IS_LO
            | if state == CT_TCP_ESTABLISHED {
                CT_F_SEEN_REPLY
            } else {
                0
            },
        ifindex_orig: 2,
        ifindex_out: 3,
        created_ns: now,
        last_seen_ns: now,
        ..Default::default()
    };
    let mut dp = st.dataplane.lock().expect("lock");
    dp.firewall_mut()
        .conntrack_mut()
        .insert(key, entry, 0)
        .expect("insert a conntrack entry");
}

/// TCP 198.18.1.2:40000 -> 198.18.2.2:80 (established), UDP
/// 198.18.1.3:5000 -> 198.18.2.2:53 (unreplied), ICMPv6 echo
/// 2001:db8:1::2 -> 2001:db8:2::2 (id 9).
fn three(st: &AppState) {
    let v4 = |d| IpAddr::V4(Ipv4Addr::new(198, 18, 1, d));
    let server = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2));
    put(st, 6, v4(2), 40000, server, 80, CT_TCP_ESTABLISHED);
    put(st, 17, v4(3), 5000, server, 53, CT_UDP_UNREPLIED);
    let a: Ipv6Addr = "2001:db8:1::2".parse().expect("v6");
    let b: Ipv6Addr = "2001:db8:2::2".parse().expect("v6");
    put(st, 58, a.into(), 9, b.into(), 9, CT_ICMP);
}

fn items(page: &Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            (
                c["proto"].as_str().expect("proto").to_owned(),
                c["src"].as_str().expect("src").to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn lists_filters_and_pages_tracked_connections(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, page) = call(&st, "GET", "/api/v1/conntrack", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!((&page["items"], &page["total"]), (&json!([]), &json!(0)));
    assert_eq!(page["capacity"], dataplane_common::CT_DEFAULT_MAX);

    three(&st);
    let (status, page) = call(&st, "GET", "/api/v1/conntrack", None).await;
    assert_eq!((status, &page["total"]), (200, &json!(3)), "{page}");
    let tcp = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["proto"] == "tcp")
        .expect("the TCP connection");
    assert_eq!(
        (&tcp["src"], &tcp["sport"], &tcp["dst"], &tcp["dport"]),
        (
            &json!("198.18.1.2"),
            &json!(40000),
            &json!("198.18.2.2"),
            &json!(80)
        )
    );
    assert_eq!(
        (&tcp["state"], &tcp["seen_reply"]),
        (&json!("ESTABLISHED"), &json!(true))
    );

    for (query, want) in [
        ("proto=udp", vec![("udp", "198.18.1.3")]),
        ("proto=17", vec![("udp", "198.18.1.3")]),
        ("src=2001:db8:1::/48", vec![("icmpv6", "2001:db8:1::2")]),
        ("src=198.18.1.2", vec![("tcp", "198.18.1.2")]),
        ("dst=198.18.2.0/24&port=80", vec![("tcp", "198.18.1.2")]),
        ("state=established", vec![("tcp", "198.18.1.2")]),
        ("port=9", vec![]),
    ] {
        let (status, page) = call(&st, "GET", &format!("/api/v1/conntrack?{query}"), None).await;
        assert_eq!(status, 200, "{query}: {page}");
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(p, s)| (p.to_owned(), s.to_owned()))
            .collect();
        assert_eq!(items(&page), want, "{query}");
        assert_eq!(page["total"], want.len(), "{query}");
    }

    // One at a time, by cursor: every connection once, in key order.
    let mut seen = Vec::new();
    let mut url = "/api/v1/conntrack?limit=1".to_owned();
    loop {
        let (status, page) = call(&st, "GET", &url, None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 3);
        seen.extend(items(&page));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/conntrack?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "no connection twice: {seen:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_queries_are_a_json_400(db: sqlx::SqlitePool) {
    let st = state(db).await;
    three(&st);
    for (query, says) in [
        ("limit=0", "limit must be 1..=1000"),
        ("limit=1001", "limit must be 1..=1000"),
        ("cursor=nonsense", "is not one this API gave"),
        ("src=198.18.1", "is not an address or prefix"),
        ("dst=2001:db8::/129", "is not an address or prefix"),
        ("proto=tcpx", "tcpx"),
        ("state=sleepy", "one of"),
        ("port=65536", "port"),
        ("bogus=1", "bogus"),
    ] {
        let (status, body) = call(&st, "GET", &format!("/api/v1/conntrack?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn flush_deletes_what_the_filter_names_and_a_bad_filter_deletes_nothing(
    db: sqlx::SqlitePool,
) {
    let st = state(db).await;
    three(&st);
    for query in ["proto=bogus", "src=nope", "state=x", "limit=5"] {
        let (status, body) = call(&st, "DELETE", &format!("/api/v1/conntrack?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}");
    }
    let (_, page) = call(&st, "GET", "/api/v1/conntrack", None).await;
    assert_eq!(page["total"], 3, "a refused flush deleted nothing");

    let (status, body) = call(&st, "DELETE", "/api/v1/conntrack?proto=udp", None).await;
    assert_eq!((status, &body), (200, &json!({"deleted": 1})));
    let (_, page) = call(&st, "GET", "/api/v1/conntrack", None).await;
    let mut left: Vec<String> = items(&page).into_iter().map(|(p, _)| p).collect();
    left.sort();
    assert_eq!(left, ["icmpv6", "tcp"]);

    let (status, body) = call(&st, "DELETE", "/api/v1/conntrack", None).await;
    assert_eq!((status, &body), (200, &json!({"deleted": 2})));
    let (_, page) = call(&st, "GET", "/api/v1/conntrack", None).await;
    assert_eq!(page["total"], 0);
    let (status, body) = call(&st, "DELETE", "/api/v1/conntrack", None).await;
    assert_eq!((status, &body), (200, &json!({"deleted": 0})));
}
