//! Set CRUD on the candidate (root: the state loads the XDP object).
use serde_json::{Value, json};

use crate::http::testutil::{call, state};

#[sqlx::test(migrations = "../migrations")]
async fn put_creates_then_replaces_and_get_lists_paged(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let body = json!({"prefixes": ["198.18.200.0/24", "2001:db8:bad::/48", "198.18.200.0/24"],
                      "comment": "bad"});
    let (status, v) = call(&st, "PUT", "/api/v1/firewall/sets/blocklist", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v,
        json!({"name": "blocklist", "count": 2, "comment": "bad", "created": true,
               "duplicates_removed": 1})
    );
    let (status, v) = call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/blocklist",
        Some(json!({"prefixes": ["198.18.201.1"]})),
    )
    .await;
    assert_eq!((status, &v["created"]), (200, &json!(false)), "{v}");
    let (status, set) = call(&st, "GET", "/api/v1/firewall/sets/blocklist", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        set,
        json!({"name": "blocklist", "prefixes": ["198.18.201.1/32"]})
    );
    for name in ["b", "c"] {
        let (status, _) = call(
            &st,
            "PUT",
            &format!("/api/v1/firewall/sets/{name}"),
            Some(json!({"prefixes": []})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (_, page) = call(&st, "GET", "/api/v1/firewall/sets?limit=2", None).await;
    assert_eq!(
        page["items"],
        json!([{"name": "blocklist", "count": 1, "comment": ""},
               {"name": "b", "count": 0, "comment": ""}])
    );
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, page) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/sets?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(page["items"][0]["name"], "c");
    assert_eq!(page["next_cursor"], Value::Null);
    // The whole candidate sees the sets.
    let (_, cand) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(cand["sets"].as_array().expect("sets").len(), 3);
    for bad in [
        "/api/v1/firewall/sets?limit=0",
        "/api/v1/firewall/sets?cursor=zz",
    ] {
        let (status, _) = call(&st, "GET", bad, None).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = call(&st, "GET", "/api/v1/firewall/sets/nope", None).await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrations = "../migrations")]
async fn every_bad_prefix_is_named_and_nothing_is_stored(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let body = json!({"prefixes": ["198.18.0.0/15", "198.18.1.5/24", "nonsense", "2001:db8::/32"]});
    let (status, v) = call(&st, "PUT", "/api/v1/firewall/sets/x", Some(body)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["error"]["message"],
        "set @x was refused: 2 of 4 prefixes are not valid"
    );
    let details = v["error"]["details"].as_array().expect("details");
    assert_eq!(details[0]["index"], 1);
    assert!(
        details[0]["message"]
            .as_str()
            .unwrap()
            .contains("host bits")
    );
    assert_eq!(details[1]["prefix"], "nonsense");
    let (status, _) = call(&st, "GET", "/api/v1/firewall/sets/x", None).await;
    assert_eq!(status, 404);
    let (status, v) = call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/bad%20name",
        Some(json!({"prefixes": []})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/x",
        Some(json!({"prefixes": [], "bogus": 1})),
    )
    .await;
    assert_eq!(status, 400);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_100k_prefix_set_goes_in_one_request_and_more_is_refused(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let prefixes: Vec<String> = (0..100_000u32)
        .map(|i| format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff))
        .collect();
    let (status, v) = call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/feed",
        Some(json!({ "prefixes": prefixes })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["count"], 100_000);
    let (_, page) = call(&st, "GET", "/api/v1/firewall/sets", None).await;
    assert_eq!(page["items"][0]["count"], 100_000);
    let mut more = prefixes;
    more.push("198.18.0.0/15".into());
    let (status, v) = call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/feed",
        Some(json!({ "prefixes": more })),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100000")
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_set_in_use_is_not_deleted_and_the_rules_are_named(db: sqlx::SqlitePool) {
    let st = state(db).await;
    call(
        &st,
        "PUT",
        "/api/v1/firewall/sets/web",
        Some(json!({"prefixes": ["198.18.2.10"]})),
    )
    .await;
    let (status, r) = call(
        &st,
        "POST",
        "/api/v1/firewall/rules",
        Some(json!({"chain": "forward", "dst": "@web", "action": "accept"})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let (status, v) = call(&st, "DELETE", "/api/v1/firewall/sets/web", None).await;
    assert_eq!(status, 409, "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("forward #1 (id {})", r["id"])),
        "{message}"
    );
    let (status, _) = call(
        &st,
        "DELETE",
        &format!("/api/v1/firewall/rules/{}", r["id"]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(&st, "DELETE", "/api/v1/firewall/sets/web", None).await;
    assert_eq!((status, &v["deleted"]), (200, &json!("web")), "{v}");
    let (status, _) = call(&st, "DELETE", "/api/v1/firewall/sets/web", None).await;
    assert_eq!(status, 404);
}
