//! The firewall API against a loaded (not attached) XDP object: needs root,
//! like the other API tests.
use serde_json::{Value, json};

use crate::http::testutil::{call, state};

fn ruleset() -> Value {
    json!({
        "policy": {"forward": "drop", "input": "accept"},
        "rules": [
            {"chain": "forward", "src": "@blocklist", "action": "drop", "comment": "first"},
            {"chain": "forward", "proto": "tcp", "dport": 22, "action": "accept"},
            {"chain": "input", "proto": "icmp", "icmp": "echo-request", "action": "accept"}
        ],
        "sets": [{"name": "blocklist", "prefixes": ["198.18.200.0/24", "2001:db8:bad::/48"]}]
    })
}

#[sqlx::test(migrations = "../migrations")]
async fn nothing_is_active_before_the_first_commit(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, v) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["commit"], Value::Null);
    assert_eq!(v["policy"]["forward"], "accept");
    assert_eq!(v["rules"], json!([]));
    let (status, v) = call(&st, "GET", "/api/v1/firewall/commits", None).await;
    assert_eq!((status, &v["items"]), (200, &json!([])));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_candidate_with_problems_is_refused_with_every_problem(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let bad = json!({"rules": [
        {"chain": "forward", "dport": 22, "action": "drop"},
        {"chain": "input", "out": "eth2", "action": "drop"},
        {"chain": "forward", "src": "@missing", "action": "drop"}
    ]});
    let (status, v) = call(&st, "PUT", "/api/v1/firewall/candidate", Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    assert_eq!(v["error"]["message"], "the ruleset was refused: 3 problems");
    let details = v["error"]["details"].as_array().expect("details");
    assert_eq!(details.len(), 3, "{v}");
    assert_eq!(details[1]["rule"], 1);
    assert!(
        details[2]["message"]
            .as_str()
            .expect("message")
            .contains("@missing")
    );
    // Nothing was stored.
    let (_, c) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(c["rules"], json!([]));
    // Bad JSON gets the same error shape.
    let (status, v) = call(
        &st,
        "PUT",
        "/api/v1/firewall/candidate",
        Some(json!({"rules": [{"chain": "sideways", "action": "drop"}]})),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("bad_request")),
        "{v}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn candidate_then_commit_and_history(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, stored) = call(&st, "PUT", "/api/v1/firewall/candidate", Some(ruleset())).await;
    assert_eq!(status, 200, "{stored}");
    assert!(stored["rules"][0]["id"].as_u64().expect("id") > 0);
    let (_, again) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(again, stored);

    let body = json!({"comment": "first", "author": "alice"});
    let (status, c1) = call(&st, "POST", "/api/v1/firewall/commit", Some(body)).await;
    assert_eq!(status, 200, "{c1}");
    assert_eq!(
        (c1["forward_rules"].as_u64(), c1["input_rules"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(
        c1["diff"]
            .as_array()
            .expect("diff")
            .contains(&json!("~ policy forward: accept -> drop"))
    );

    let (_, v) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(v["commit"], c1["commit"]);
    assert_eq!(v["rules"][1]["position"], 2);
    assert_eq!(v["rules"][1]["dport"], "22");
    assert_eq!(v["rules"][1]["packets"], 0);
    assert_eq!(v["rules"][2]["position"], 1);
    assert_eq!(
        v["sets"],
        json!([{"name": "blocklist", "prefixes": 2, "comment": ""}])
    );
    assert_eq!(v["policy_counters"]["forward"]["packets"], 0);

    let (_, c2) = call(&st, "POST", "/api/v1/firewall/commit", Some(json!({}))).await;
    assert_eq!(c2["diff"], json!([]));
    let (_, page) = call(&st, "GET", "/api/v1/firewall/commits?limit=1", None).await;
    assert_eq!(page["items"][0]["id"], c2["commit"]);
    assert_eq!(page["items"][0]["author"], "api");
    let next = page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/commits?limit=1&cursor={next}"),
        None,
    )
    .await;
    assert_eq!(page["items"][0]["author"], "alice");
    assert_eq!(page["next_cursor"], Value::Null);
    for bad in ["x", "-1", "0", "99999999999999999999"] {
        let (status, v) = call(
            &st,
            "GET",
            &format!("/api/v1/firewall/commits?cursor={bad}"),
            None,
        )
        .await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}: {v}"
        );
    }

    let (status, one) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/commits/{}", c1["commit"]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["comment"], "first");
    assert_eq!(
        one["ruleset"]["sets"][0]["prefixes"][1],
        "2001:db8:bad::/48"
    );
    for bad in ["/api/v1/firewall/commits/999", "/api/v1/firewall/commits/x"] {
        let (status, _) = call(&st, "GET", bad, None).await;
        assert_eq!(status, 404, "{bad}");
    }
    let (status, _) = call(&st, "GET", "/api/v1/firewall/commits?limit=0", None).await;
    assert_eq!(status, 400);
}

#[sqlx::test(migrations = "../migrations")]
async fn apply_replaces_and_commits_and_refuses_unknown_interfaces(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, c) = call(
        &st,
        "POST",
        "/api/v1/firewall/apply?comment=from%20a%20file&author=bob",
        Some(ruleset()),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    let (_, page) = call(&st, "GET", "/api/v1/firewall/commits", None).await;
    assert_eq!(page["items"][0]["comment"], "from a file");
    assert_eq!(page["items"][0]["author"], "bob");

    // Applying the same file again keeps every rule's id.
    let (_, before) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    call(&st, "POST", "/api/v1/firewall/apply", Some(ruleset())).await;
    let (_, after) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    let ids = |v: &Value| {
        v["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&before), ids(&after));

    let mut bad = ruleset();
    bad["rules"][1]["in"] = json!("nosuch0");
    let (status, v) = call(&st, "POST", "/api/v1/firewall/apply", Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["details"][0]["rule"], 1, "{v}");
    assert!(
        v["error"]["details"][0]["message"]
            .as_str()
            .expect("message")
            .contains("nosuch0")
    );
    let (_, still) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(still["commit"], after["commit"]);
}
