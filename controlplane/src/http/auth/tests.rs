//! The auth and body-limit layers through `app(state).oneshot(...)`,
//! against a loaded (not attached) XDP object: needs root, like the other
//! API tests.
use axum::{Router, body::Body, http::Request};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use tower::ServiceExt as _;

use super::*;
use crate::http::{AppState, app};

async fn state(db: SqlitePool, listener_is_loopback: bool) -> AppState {
    crate::http::testutil::state_on(db, listener_is_loopback).await
}

struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

/// One request through `app`; `body` is sent as JSON.
async fn call(
    app: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, req.body(body).expect("request")).await
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        body,
    }
}

/// A write that succeeds on an empty firewall: store an empty candidate.
fn empty_candidate() -> Value {
    json!({"policy": {"forward": "accept", "input": "accept"}, "rules": [], "sets": []})
}

#[track_caller]
fn assert_401(a: &Answer) {
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "unauthorized", "{}", a.body);
    assert!(a.body["error"]["message"].is_string(), "{}", a.body);
    assert!(
        a.challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{:?}",
        a.challenge
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn loopback_without_tokens_reads_and_writes(db: SqlitePool) {
    let app = app(state(db, true).await);
    assert_eq!(
        call(&app, "GET", "/api/v1/stats", None, None).await.status,
        200
    );
    let put = call(
        &app,
        "PUT",
        "/api/v1/firewall/candidate",
        None,
        Some(empty_candidate()),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    // A wrong token is refused even where none is needed.
    let wrong = crate::token::generate().expect("token");
    assert_401(&call(&app, "GET", "/api/v1/stats", Some(&wrong), None).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn loopback_with_a_token_guards_writes_until_it_is_revoked(db: SqlitePool) {
    let st = state(db, true).await;
    let token = crate::token::create(&st.db, "ci").await.expect("token");
    let app = app(st.clone());
    let put = |t: Option<&str>| {
        let app = app.clone();
        let t = t.map(str::to_owned);
        async move {
            call(
                &app,
                "PUT",
                "/api/v1/firewall/candidate",
                t.as_deref(),
                Some(empty_candidate()),
            )
            .await
        }
    };

    assert_eq!(
        call(&app, "GET", "/api/v1/stats", None, None).await.status,
        200
    );
    let denied = put(None).await;
    assert_401(&denied);
    assert_eq!(
        denied.challenge.as_deref(),
        Some(r#"Bearer realm="xdpgate""#)
    );
    for method in ["POST", "PATCH", "DELETE"] {
        assert_401(&call(&app, method, "/api/v1/conntrack", None, None).await);
    }
    assert_eq!(put(Some(&token)).await.status, 200);

    // Same key id, wrong secret; and junk.
    let p = crate::token::parse(&token).expect("parses");
    let other = crate::token::generate().expect("token");
    let forged = format!(
        "xg_{}_{}",
        p.key_id,
        crate::token::parse(&other).expect("parses").secret
    );
    for bad in [forged.as_str(), other.as_str(), "xg_nonsense", ""] {
        let a = put(Some(bad)).await;
        assert_401(&a);
        assert!(
            a.challenge
                .as_deref()
                .is_some_and(|c| c.contains("invalid_token"))
        );
    }
    let basic = Request::put("/api/v1/firewall/candidate")
        .header("authorization", "Basic eGc6eGc=")
        .body(Body::empty())
        .expect("request");
    assert_401(&send(&app, basic).await);

    // Revoked in the database (as `xdpgate token revoke` does, from
    // another process): a fresh app refuses it at once, a running one
    // within LIVE_REFRESH.
    crate::token::revoke(&st.db, "ci").await.expect("revoke");
    let fresh = crate::http::app(st.clone());
    assert_401(
        &call(
            &fresh,
            "PUT",
            "/api/v1/firewall/candidate",
            Some(&token),
            Some(empty_candidate()),
        )
        .await,
    );
    tokio::time::sleep(LIVE_REFRESH + Duration::from_millis(100)).await;
    assert_401(&put(Some(&token)).await);
    // No live token left: loopback writes are open again.
    assert_eq!(put(None).await.status, 200);
}

#[sqlx::test(migrations = "../migrations")]
async fn elsewhere_every_request_needs_a_token_but_probes(db: SqlitePool) {
    let st = state(db, false).await;
    let app = app(st.clone());
    assert_401(&call(&app, "GET", "/api/v1/stats", None, None).await);
    assert_401(&call(&app, "GET", "/api/v1/nope", None, None).await);
    assert_401(&call(&app, "GET", "/nope", None, None).await);
    // The web UI's files are open (`http::ui`); the API they call is not.
    assert_eq!(call(&app, "GET", "/", None, None).await.status, 200);
    let health = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert_ne!(call(&app, "GET", "/readyz", None, None).await.status, 401);

    let token = crate::token::create(&st.db, "monitoring")
        .await
        .expect("token");
    let stats = call(&app, "GET", "/api/v1/stats", Some(&token), None).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert_401(&call(&app, "GET", "/api/v1/stats", None, None).await);
    assert_eq!(call(&app, "GET", "/healthz", None, None).await.status, 200);
    // A wrong token does not make a probe fail.
    assert_eq!(
        call(&app, "GET", "/healthz", Some("xg_junk"), None)
            .await
            .status,
        200
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn verifications_are_cached_and_use_is_recorded(db: SqlitePool) {
    let st = state(db, false).await;
    let token = crate::token::create(&st.db, "ci").await.expect("token");
    let app = app(st.clone());
    assert_eq!(
        call(&app, "GET", "/api/v1/stats", Some(&token), None)
            .await
            .status,
        200
    );
    // Break the stored hash: the running app trusts its cache, a new one
    // checks the database.
    sqlx::query("update api_token set hash = 'broken'")
        .execute(&st.db)
        .await
        .expect("update");
    let started = std::time::Instant::now();
    assert_eq!(
        call(&app, "GET", "/api/v1/stats", Some(&token), None)
            .await
            .status,
        200
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let fresh = crate::http::app(st.clone());
    assert_401(&call(&fresh, "GET", "/api/v1/stats", Some(&token), None).await);

    let mut used = None;
    for _ in 0..100 {
        used = crate::token::list(&st.db).await.expect("list")[0]
            .last_used_at
            .clone();
        if used.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(used.is_some(), "last_used_at was never written");
}

#[sqlx::test(migrations = "../migrations")]
async fn oversized_bodies_are_a_json_413(db: SqlitePool) {
    let app = app(state(db, true).await);
    let big = |n: usize| vec![b' '; n];
    // Announced too large: refused before reading.
    let req = Request::post("/api/v1/interfaces/eth0/attach")
        .header("content-type", "application/json")
        .header(
            "content-length",
            (crate::http::limit::BODY_LIMIT + 1).to_string(),
        )
        .body(Body::from(big(crate::http::limit::BODY_LIMIT + 1)))
        .expect("request");
    let a = send(&app, req).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "payload_too_large");
    // 2 MiB is fine for a firewall ruleset (this one is not JSON: 400).
    let req = Request::put("/api/v1/firewall/candidate")
        .header("content-type", "application/json")
        .body(Body::from(big(2 << 20)))
        .expect("request");
    assert_eq!(send(&app, req).await.status, 400);
    // Streamed without a length and past the firewall's limit.
    let req = Request::put("/api/v1/firewall/candidate")
        .header("content-type", "application/json")
        .body(Body::from(big(crate::http::limit::FIREWALL_BODY_LIMIT + 1)))
        .expect("request");
    let a = send(&app, req).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "payload_too_large");
}

#[test]
fn authorization_header_forms() {
    let mut h = HeaderMap::new();
    assert!(matches!(presented(&h), Presented::Nothing));
    for (value, want) in [
        ("Bearer xg_abc", Some("xg_abc")),
        ("bearer  xg_abc ", Some("xg_abc")),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("xg_abc", None),
    ] {
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        match (presented(&h), want) {
            (Presented::Bearer(t), Some(w)) => assert_eq!(t, w, "{value}"),
            (Presented::Malformed, None) => {}
            _ => panic!("{value:?} parsed wrongly"),
        }
    }
}

#[test]
fn only_get_head_options_are_reads() {
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert!(is_read(&m), "{m}");
    }
    for m in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::from_bytes(b"PURGE").expect("method"),
    ] {
        assert!(!is_read(&m), "{m}");
    }
}
