//! Commit-confirm, rollback and diff against a loaded XDP object (root).
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::testutil::{call, state};

fn drop_ssh() -> Value {
    json!({"rules": [{"chain": "forward", "proto": "tcp", "dport": 22, "action": "drop"}]})
}

fn accept_all() -> Value {
    json!({"rules": [{"chain": "forward", "action": "accept", "comment": "base"}]})
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unconfirmed_commit_rolls_back_by_itself(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, base) = call(&st, "POST", "/api/v1/firewall/apply", Some(accept_all())).await;
    assert_eq!(status, 200, "{base}");
    let (status, c) = call(
        &st,
        "POST",
        "/api/v1/firewall/apply?confirm_within=1",
        Some(drop_ssh()),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["confirm"]["commit"], c["commit"], "{c}");
    assert_eq!(c["confirm"]["previous_commit"], base["commit"]);
    let (_, p) = call(&st, "GET", "/api/v1/firewall/confirm", None).await;
    assert_eq!(p["pending"], true, "{p}");
    assert!(p["seconds_left"].as_f64().expect("seconds_left") <= 1.0);
    assert!(!p["deadline"].as_str().expect("deadline").is_empty());

    // Nothing else commits meanwhile, and a refused apply leaves the
    // candidate alone.
    for (path, body) in [
        ("/api/v1/firewall/commit", json!({})),
        ("/api/v1/firewall/apply", accept_all()),
    ] {
        let (status, v) = call(&st, "POST", path, Some(body)).await;
        assert_eq!(status, 409, "{path}: {v}");
        assert_eq!(v["error"]["code"], "conflict");
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("message")
                .contains("waiting for confirmation"),
            "{v}"
        );
    }
    let (status, _) = call(
        &st,
        "POST",
        &format!("/api/v1/firewall/rollback/{}", base["commit"]),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (_, cand) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(cand["rules"][0]["dport"], "22");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, p) = call(&st, "GET", "/api/v1/firewall/confirm", None).await;
    assert_eq!(p, json!({"pending": false}));
    let (_, active) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(active["rules"][0]["comment"], "base", "{active}");
    let (_, page) = call(&st, "GET", "/api/v1/firewall/commits?limit=1", None).await;
    let last = &page["items"][0];
    assert_eq!(last["author"], "rollback");
    let comment = last["comment"].as_str().expect("comment");
    assert!(
        comment.contains(&format!("#{} was not confirmed within 1 s", c["commit"])),
        "{comment}"
    );
    assert!(
        comment.contains(&format!("back to #{}", base["commit"])),
        "{comment}"
    );
    assert!(
        crate::firewall::store::pending_confirm(&st.db)
            .await
            .expect("read")
            .is_none()
    );
    // The candidate still holds what was tried, to fix and commit again.
    let (_, cand) = call(&st, "GET", "/api/v1/firewall/candidate", None).await;
    assert_eq!(cand["rules"][0]["dport"], "22");
    // Committing works again.
    let (status, _) = call(&st, "POST", "/api/v1/firewall/commit", Some(json!({}))).await;
    assert_eq!(status, 200);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_confirmed_commit_stays_and_confirm_without_one_is_409(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (status, v) = call(&st, "POST", "/api/v1/firewall/confirm", None).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (409, &json!("conflict")),
        "{v}"
    );
    let (status, _) = call(&st, "PUT", "/api/v1/firewall/candidate", Some(drop_ssh())).await;
    assert_eq!(status, 200);
    let (status, c) = call(
        &st,
        "POST",
        "/api/v1/firewall/commit?confirm_within=1",
        Some(json!({"comment": "try"})),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    // The first commit has nothing before it: the empty ruleset.
    assert_eq!(c["confirm"]["previous_commit"], Value::Null);
    let (status, ok) = call(&st, "POST", "/api/v1/firewall/confirm", None).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["confirmed"], c["commit"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (_, active) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(active["commit"], c["commit"]);
    let (_, page) = call(&st, "GET", "/api/v1/firewall/commits?limit=1", None).await;
    assert_eq!(page["items"][0]["id"], c["commit"]);
}

#[sqlx::test(migrations = "../migrations")]
async fn confirm_within_out_of_range_is_a_400(db: sqlx::SqlitePool) {
    let st = state(db).await;
    for q in ["0", "86401", "x"] {
        let (status, v) = call(
            &st,
            "POST",
            &format!("/api/v1/firewall/apply?confirm_within={q}"),
            Some(drop_ssh()),
        )
        .await;
        assert_eq!(status, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "bad_request");
    }
    let (_, active) = call(&st, "GET", "/api/v1/firewall/active", None).await;
    assert_eq!(active["commit"], Value::Null);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_restart_with_a_commit_pending_restores_the_one_before(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (_, base) = call(&st, "POST", "/api/v1/firewall/apply", Some(accept_all())).await;
    let (_, c) = call(
        &st,
        "POST",
        "/api/v1/firewall/apply?confirm_within=600",
        Some(drop_ssh()),
    )
    .await;
    assert_eq!(c["confirm"]["commit"], c["commit"], "{c}");
    // A new daemon on the same database: the timer died with the old one.
    let mut fw = crate::firewall::Firewall::new(st.db.clone(), st.dataplane.clone());
    let restored = fw.restore().await.expect("restore").expect("a commit");
    assert!(restored > c["commit"].as_i64().expect("id"));
    let active = fw.active().expect("active");
    assert_eq!(active.ruleset.rules[0].comment, "base");
    let (_, one) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/commits/{restored}"),
        None,
    )
    .await;
    assert_eq!(one["author"], "rollback");
    assert!(
        one["comment"]
            .as_str()
            .expect("comment")
            .contains("when the daemon stopped"),
        "{one}"
    );
    assert!(
        one["comment"]
            .as_str()
            .unwrap()
            .contains(&format!("#{}", base["commit"]))
    );
    assert!(fw.pending().is_none());
    assert!(
        crate::firewall::store::pending_confirm(&st.db)
            .await
            .expect("read")
            .is_none()
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn rollback_applies_an_old_commit_and_unknown_ids_are_404(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (_, c1) = call(&st, "POST", "/api/v1/firewall/apply", Some(accept_all())).await;
    let (_, c2) = call(&st, "POST", "/api/v1/firewall/apply", Some(drop_ssh())).await;
    let (status, r) = call(
        &st,
        "POST",
        &format!("/api/v1/firewall/rollback/{}?author=carol", c1["commit"]),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r["commit"].as_i64() > c2["commit"].as_i64());
    assert!(!r["diff"].as_array().expect("diff").is_empty(), "{r}");
    let (_, one) = call(
        &st,
        "GET",
        &format!("/api/v1/firewall/commits/{}", r["commit"]),
        None,
    )
    .await;
    assert_eq!(one["author"], "carol");
    assert_eq!(one["comment"], format!("rollback to #{}", c1["commit"]));
    assert_eq!(one["ruleset"]["rules"][0]["comment"], "base");
    // The candidate follows, so the diff is empty.
    let (status, d) = call(&st, "GET", "/api/v1/firewall/diff", None).await;
    assert_eq!(status, 200);
    assert_eq!(d["lines"], json!([]), "{d}");
    assert_eq!(d["active"], r["commit"]);
    for bad in [
        "/api/v1/firewall/rollback/999",
        "/api/v1/firewall/rollback/x",
    ] {
        let (status, v) = call(&st, "POST", bad, None).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (404, &json!("not_found")),
            "{bad}"
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn diff_compares_the_candidate_with_the_active_ruleset(db: sqlx::SqlitePool) {
    let st = state(db).await;
    let (_, d) = call(&st, "GET", "/api/v1/firewall/diff", None).await;
    assert_eq!(d, json!({"active": null, "lines": []}));
    call(&st, "POST", "/api/v1/firewall/apply", Some(accept_all())).await;
    call(&st, "PUT", "/api/v1/firewall/candidate", Some(drop_ssh())).await;
    let (status, d) = call(&st, "GET", "/api/v1/firewall/diff", None).await;
    assert_eq!(status, 200);
    let lines: Vec<&str> = d["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l.as_str().expect("line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("- forward #1: accept")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("+ forward #1: tcp dport 22 drop")),
        "{lines:?}"
    );
    let (status, _) = call(&st, "GET", "/api/v1/firewall/diff?x=1", None).await;
    assert_eq!(
        status, 200,
        "unknown query keys are ignored by a handler without a query"
    );
}
