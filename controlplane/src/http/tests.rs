use axum::{body::Body, http::Request};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use sqlx::SqlitePool;

use super::*;
use crate::http::testutil::{call, state};

async fn get(db: &SqlitePool, path: &str) -> (u16, serde_json::Value) {
    let resp = app(state(db.clone()).await)
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

#[sqlx::test(migrations = "../migrations")]
async fn healthz_reports_db_and_attachments(db: SqlitePool) {
    let (status, body) = get(&db, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["attached_interfaces"], 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn stats_lists_every_reason_and_class_even_when_zero(db: SqlitePool) {
    let (status, body) = get(&db, "/api/v1/stats").await;
    assert_eq!(status, 200);
    let reasons = body["total"]["reasons"].as_object().expect("reasons");
    assert_eq!(reasons.len(), dataplane_common::Reason::COUNT as usize);
    assert_eq!(reasons["malformed"]["packets"], 0);
    let classes = body["total"]["classes"].as_object().expect("classes");
    assert_eq!(classes.len(), dataplane_common::Class::COUNT as usize);
    assert_eq!(body["interfaces"].as_array().expect("interfaces").len(), 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn stats_lists_the_fill_of_every_forwarding_map(db: SqlitePool) {
    let st = state(db).await;
    {
        let mut dp = st.dataplane.lock().expect("lock");
        for p in ["198.18.1.0/24", "198.18.2.0/24", "2001:db8::/32"] {
            let prefix = crate::fib::parse_prefix(p).expect("prefix");
            dp.update(|f| f.set_route(prefix, crate::fib::RouteTarget::Blackhole))
                .expect("route");
        }
    }
    let resp = app(st.clone())
        .oneshot(
            Request::get("/api/v1/stats")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let maps = body["maps"].as_array().expect("maps");
    let names: Vec<&str> = maps
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "routes_v4",
            "routes_v6",
            "nexthops",
            "nh_groups",
            "neighbours",
            "interfaces"
        ]
    );
    let fill = |name: &str| {
        let m = maps.iter().find(|m| m["name"] == name).expect("the map");
        (
            m["entries"].as_u64().expect("entries"),
            m["capacity"].as_u64().expect("capacity"),
        )
    };
    assert_eq!(
        fill("routes_v4"),
        (2, u64::from(dataplane_common::MAX_ROUTES_V4))
    );
    assert_eq!(
        fill("routes_v6"),
        (1, u64::from(dataplane_common::MAX_ROUTES_V6))
    );
    assert_eq!(
        fill("neighbours"),
        (0, u64::from(dataplane_common::MAX_NEIGHBOURS))
    );
    // The document describes the field.
    let doc = serde_json::to_value(super::openapi::document()).expect("document");
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["Stats"]["required"]
            .as_array()
            .expect("required")
            .contains(&"maps".into()),
        "{}",
        schemas["Stats"]
    );
    assert_eq!(
        schemas["Stats"]["properties"]["maps"]["items"]["$ref"],
        "#/components/schemas/MapFill"
    );
    for field in ["name", "entries", "capacity"] {
        assert!(
            schemas["MapFill"]["properties"][field].is_object(),
            "{}",
            schemas["MapFill"]
        );
    }
    // The same numbers as /metrics: both read Dataplane::map_fill.
    let metrics = app(st)
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response")
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let metrics = String::from_utf8(metrics.to_vec()).expect("UTF-8");
    assert!(
        metrics.contains("xdpgate_map_entries{map=\"routes_v4\"} 2"),
        "{metrics}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_path_is_a_json_404(db: SqlitePool) {
    let (status, body) = get(&db, "/api/v1/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/v1/nope")
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn routes_are_paged_by_prefix_cursor_and_bad_input_is_a_json_400(db: SqlitePool) {
    let st = state(db).await;
    {
        let mut dp = st.dataplane.lock().expect("lock");
        for p in [
            "198.18.1.0/24",
            "198.18.2.0/24",
            "198.18.3.0/24",
            "2001:db8::/32",
        ] {
            let prefix = crate::fib::parse_prefix(p).expect("prefix");
            dp.update(|f| f.set_route(prefix, crate::fib::RouteTarget::Blackhole))
                .expect("route");
        }
    }
    let get = |path: String| {
        let app = app(st.clone());
        async move {
            let resp = app
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).expect("JSON"),
            )
        }
    };
    let mut seen = Vec::new();
    let mut url = "/api/v1/routes?limit=3".to_owned();
    loop {
        let (status, page) = get(url.clone()).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total"], 4);
        for r in page["items"].as_array().expect("items") {
            seen.push(r["prefix"].as_str().expect("prefix").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/routes?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "198.18.1.0/24",
            "198.18.2.0/24",
            "198.18.3.0/24",
            "2001:db8::/32"
        ]
    );
    let (status, page) = get("/api/v1/routes?prefix=198.18.0.0/16".into()).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().expect("items").len(), 3);
    for bad in [
        "/api/v1/routes?limit=0",
        "/api/v1/routes?limit=1001",
        "/api/v1/routes?cursor=nonsense",
        "/api/v1/routes?prefix=198.18.1.1/24",
        "/api/v1/routes?bogus=1",
    ] {
        let (status, body) = get(bad.into()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_cursor_past_the_end_is_an_empty_page(db: SqlitePool) {
    // Found by schemathesis: `start + limit` overflowed and the handler
    // panicked (the connection closed without an answer).
    for list in ["neighbours", "links"] {
        let (status, body) = get(
            &db,
            &format!("/api/v1/{list}?cursor={}&limit=1000", usize::MAX),
        )
        .await;
        assert_eq!(status, 200, "{list}: {body}");
        assert_eq!(body["items"], serde_json::json!([]), "{list}");
        assert_eq!(body["next_cursor"], serde_json::Value::Null, "{list}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_path_segment_that_is_not_utf8_is_a_json_400(db: SqlitePool) {
    for path in [
        "/api/v1/firewall/sets/%FF",
        "/api/v1/firewall/rules/%FF",
        "/api/v1/firewall/commits/%C3%28",
        "/api/v1/interfaces/%FF",
    ] {
        let (status, body) = get(&db, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{path}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn links_and_neighbours_are_listed_filtered_and_paged(db: SqlitePool) {
    let st = state(db).await;
    {
        // The loopback device: a real ifindex the devmap takes.
        let mut dp = st.dataplane.lock().expect("lock");
        dp.update(|f| {
            f.set_iface(crate::fib::Iface {
                ifindex: 1,
                name: "lo".into(),
                mac: [0; 6],
                mtu: 65536,
                vlan_id: 0,
                parent_ifindex: 1,
                up: true,
            })
        })
        .expect("iface");
        for (a, m) in [
            ("198.18.7.2", [2, 0, 0, 0, 7, 2]),
            ("198.18.7.1", [2, 0, 0, 0, 7, 1]),
            ("2001:db8:7::1", [2, 0, 0, 0, 7, 3]),
        ] {
            let a: std::net::IpAddr = a.parse().expect("address");
            dp.update(|f| f.set_neighbour(1, a, m)).expect("neighbour");
        }
    }
    let (status, links) = call(&st, "GET", "/api/v1/links", None).await;
    assert_eq!(status, 200, "{links}");
    assert_eq!(links["items"][0]["name"], "lo");
    assert_eq!(links["items"][0]["mtu"], 65536);
    let (_, none) = call(&st, "GET", "/api/v1/links?dev=eth9", None).await;
    assert_eq!(none["items"], serde_json::json!([]));

    let (status, page) = call(&st, "GET", "/api/v1/neighbours?limit=2", None).await;
    assert_eq!(status, 200, "{page}");
    let first: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["address"].as_str().expect("address"))
        .collect();
    assert_eq!(first, ["198.18.7.1", "198.18.7.2"], "sorted by address");
    assert_eq!(page["items"][0]["mac"], "02:00:00:00:07:01");
    assert_eq!(page["items"][0]["dev"], "lo");
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let (_, rest) = call(
        &st,
        "GET",
        &format!("/api/v1/neighbours?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["items"][0]["address"], "2001:db8:7::1");
    assert_eq!(rest["next_cursor"], serde_json::Value::Null);
    let (_, none) = call(&st, "GET", "/api/v1/neighbours?dev=eth9", None).await;
    assert_eq!(none["items"], serde_json::json!([]));

    for bad in [
        "/api/v1/neighbours?limit=0",
        "/api/v1/neighbours?prefix=198.18.0.0/15",
        "/api/v1/neighbours?cursor=x",
        "/api/v1/links?limit=1001",
        "/api/v1/links?prefix=198.18.0.0/15",
        "/api/v1/links?mtu=1500",
    ] {
        let (status, body) = call(&st, "GET", bad, None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn broken_json_bodies_get_the_one_error_shape_and_change_nothing(db: SqlitePool) {
    use crate::http::testutil::call_raw;
    let st = state(db).await;
    let json = Some("application/json");
    for (method, path, content_type, body, want) in [
        (
            "PUT",
            "/api/v1/firewall/candidate",
            json,
            r#"{"rules": ["#,
            400,
        ),
        ("PUT", "/api/v1/firewall/candidate", json, "", 400),
        (
            "POST",
            "/api/v1/firewall/rules",
            json,
            "{chain: forward}",
            400,
        ),
        (
            "POST",
            "/api/v1/routes/static",
            json,
            "not json at all",
            400,
        ),
        ("PUT", "/api/v1/firewall/sets/blocklist", json, "[1, 2", 400),
        (
            "PUT",
            "/api/v1/export",
            json,
            "{\"collectors\": [\"198.18.9.2:4739\"]} trailing",
            400,
        ),
        ("POST", "/api/v1/firewall/apply", json, "\u{feff}{}", 400),
        // No or another content type: a 400 that says which one it wants.
        ("PUT", "/api/v1/firewall/candidate", None, "{}", 400),
        (
            "PUT",
            "/api/v1/firewall/candidate",
            Some("text/plain"),
            "{}",
            400,
        ),
    ] {
        let (status, body) = call_raw(&st, method, path, content_type, body).await;
        assert_eq!(status, want, "{method} {path} {body}");
        let code = body["error"]["code"].as_str().expect("error.code");
        assert!(!code.is_empty(), "{method} {path}: {body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .expect("error.message")
                .is_empty()
        );
    }
    // Nothing was stored by any of them.
    let (_, c) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(c["rules"], serde_json::json!([]));
    let (_, s) = call(&st, "GET", "/api/v1/routes/static", None).await;
    assert_eq!(s["items"], serde_json::json!([]));
    let (_, e) = call(&st, "GET", "/api/v1/export", None).await;
    assert_eq!(e["enabled"], false);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_internal_error_is_a_500_with_an_id_and_nothing_else(db: SqlitePool) {
    let st = state(db).await;
    // The database going away under the daemon.
    st.db.close().await;
    let (status, body) = call(&st, "GET", "/api/v1/firewall/commits", None).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    let message = body["error"]["message"].as_str().expect("message");
    let id = message
        .strip_prefix("internal error (id ")
        .and_then(|m| m.strip_suffix("); see the daemon's log"))
        .unwrap_or_else(|| panic!("{message}"));
    assert!(id.parse::<u64>().is_ok(), "{message}");
    assert_eq!(body["error"]["details"], serde_json::Value::Null);
    // Liveness fails the same way (a probe sees a non-2xx); readiness says
    // why, in words.
    let (status, _) = call(&st, "GET", "/healthz", None).await;
    assert_eq!(status, 500);
    let (status, body) = call(&st, "GET", "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_string().contains("the database does not answer"),
        "{body}"
    );
}
