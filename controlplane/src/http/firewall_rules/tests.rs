//! Rule CRUD on the candidate (root: the state loads the XDP object).
use serde_json::{Value, json};

use crate::http::testutil::{call, state};

fn comments(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| format!("{}{}", r["position"], r["comment"].as_str().unwrap_or("")))
        .collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn post_appends_or_inserts_and_put_moves_and_delete_removes(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let mut ids = Vec::new();
    for (c, body) in [
        (
            "a",
            json!({"chain": "forward", "action": "accept", "comment": "a"}),
        ),
        (
            "b",
            json!({"chain": "forward", "action": "drop", "comment": "b"}),
        ),
        (
            "i",
            json!({"chain": "input", "action": "drop", "comment": "i"}),
        ),
        (
            "c",
            json!({"chain": "forward", "action": "accept", "comment": "c", "position": 1}),
        ),
    ] {
        let (status, r) = call(&st, "POST", "/api/v1/firewall/rules", Some(body)).await;
        assert_eq!(status, 201, "{c}: {r}");
        assert!(r["id"].as_u64().expect("id") > 0);
        ids.push(r["id"].clone());
    }
    let (_, list) = call(&st, "GET", "/api/v1/firewall/rules", None).await;
    assert_eq!(comments(&list), ["1c", "2a", "3b", "1i"]);
    let (_, list) = call(&st, "GET", "/api/v1/firewall/rules?chain=input", None).await;
    assert_eq!(comments(&list), ["1i"]);

    // PUT keeps the id, replaces the content, moves with a position.
    let (status, r) = call(
        &st,
        "PUT",
        &format!("/api/v1/firewall/rules/{}", ids[0]),
        Some(
            json!({"chain": "forward", "proto": "tcp", "dport": 22, "action": "drop",
                    "comment": "a2", "position": 3}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["id"].clone(), r["position"].clone()),
        (ids[0].clone(), json!(3))
    );
    let (_, list) = call(&st, "GET", "/api/v1/firewall/rules?chain=forward", None).await;
    assert_eq!(comments(&list), ["1c", "2b", "3a2"]);
    // Without a position it stays in place.
    let (_, r) = call(
        &st,
        "PUT",
        &format!("/api/v1/firewall/rules/{}", ids[1]),
        Some(json!({"chain": "forward", "action": "reject", "comment": "b2"})),
    )
    .await;
    assert_eq!(r["position"], 2, "{r}");
    let (status, one) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/rules/{}", ids[1]),
        None,
    )
    .await;
    assert_eq!((status, &one["action"]), (200, &json!("reject")));

    let (status, _) = call(
        &st,
        "DELETE",
        &format!("/api/v1/firewall/rules/{}", ids[3]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = call(&st, "GET", "/api/v1/firewall/rules?chain=forward", None).await;
    assert_eq!(comments(&list), ["1b2", "2a2"]);
    // The edits are the candidate a commit applies.
    let (status, c) = call(&st, "POST", "/api/v1/firewall/commit", Some(json!({}))).await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["forward_rules"], 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_rules_and_unknown_ids_are_refused(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let cases = [
        json!({"chain": "forward", "dport": 22, "action": "drop"}),
        json!({"chain": "forward", "src": "@nope", "action": "drop"}),
        json!({"chain": "forward", "action": "drop", "position": 5}),
        json!({"chain": "forward", "action": "drop", "position": 0}),
        json!({"chain": "sideways", "action": "drop"}),
        json!({"chain": "forward", "action": "drop", "id": 7}),
    ];
    for body in cases {
        let (status, v) = call(&st, "POST", "/api/v1/firewall/rules", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    let (_, v) = call(
        &st,
        "POST",
        "/api/v1/firewall/rules",
        Some(json!({"chain": "forward", "src": "@nope", "action": "drop"})),
    )
    .await;
    assert!(
        v["error"]["details"][0]["message"]
            .as_str()
            .expect("detail")
            .contains("@nope does not exist"),
        "{v}"
    );
    let (_, list) = call(&st, "GET", "/api/v1/firewall/rules", None).await;
    assert_eq!(list["items"], json!([]));
    for (method, path) in [
        ("GET", "/api/v1/firewall/rules/999"),
        ("DELETE", "/api/v1/firewall/rules/999"),
        ("GET", "/api/v1/firewall/rules/x"),
    ] {
        let (status, _) = call(&st, method, path, None).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (status, _) = call(
        &st,
        "PUT",
        "/api/v1/firewall/rules/999",
        Some(json!({"chain": "forward", "action": "drop"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&st, "GET", "/api/v1/firewall/rules?chain=output", None).await;
    assert_eq!(status, 400);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_log_flag_is_stored_returned_and_committed(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, r) = call(
        &st,
        "POST",
        "/api/v1/firewall/rules",
        Some(
            json!({"chain": "forward", "proto": "tcp", "dport": 23, "action": "drop",
                    "log": true}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["log"], true, "{r}");
    let id = r["id"].clone();
    let (_, one) = call(&st, "GET", &format!("/api/v1/firewall/rules/{id}"), None).await;
    assert_eq!(one["log"], true, "{one}");
    // A body without it is a rule that does not log (and the reply leaves
    // the default out).
    let (status, r) = call(
        &st,
        "PUT",
        &format!("/api/v1/firewall/rules/{id}"),
        Some(json!({"chain": "forward", "proto": "tcp", "dport": 23, "action": "drop"})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r.get("log").is_none(), "{r}");
    let (status, r) = call(
        &st,
        "PUT",
        &format!("/api/v1/firewall/rules/{id}"),
        Some(json!({"chain": "forward", "action": "reject", "log": true})),
    )
    .await;
    assert_eq!((status, &r["log"]), (200, &json!(true)), "{r}");
    let (status, v) = call(
        &st,
        "POST",
        "/api/v1/firewall/rules",
        Some(json!({"chain": "forward", "action": "drop", "log": "yes"})),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // The commit's snapshot carries it.
    let (status, c) = call(&st, "POST", "/api/v1/firewall/commit", Some(json!({}))).await;
    assert_eq!(status, 200, "{c}");
    let (_, commit) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/commits/{}", c["commit"]),
        None,
    )
    .await;
    assert_eq!(commit["ruleset"]["rules"][0]["log"], true, "{commit}");
}

#[test]
fn the_openapi_rule_schema_has_log() {
    let doc = serde_json::to_value(crate::http::openapi::document()).expect("document");
    let props = &doc["components"]["schemas"]["Rule"]["properties"];
    assert_eq!(props["log"]["type"], "boolean", "{props}");
}
