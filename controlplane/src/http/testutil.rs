//! Shared by the handler tests: a state over the database `#[sqlx::test]`
//! made for the test (a file of its own, migrations applied) and a loaded
//! (not attached) XDP object (needs root), and one call helper.
use std::sync::{Arc, Mutex};

use axum::{body::Body, http::Request};
use http_body_util::BodyExt as _;
use serde_json::Value;
use sqlx::SqlitePool;
use tower::ServiceExt as _;

use super::{AppState, app};
use crate::{dataplane::Dataplane, firewall::Firewall, netlink::sync::SyncStatus};

pub async fn state(db: SqlitePool) -> AppState {
    state_on(db, true).await
}

/// [`state`] for a listener on loopback or not (the auth layer's rule).
pub async fn state_on(db: SqlitePool, listener_is_loopback: bool) -> AppState {
    let dataplane = Arc::new(Mutex::new(
        Dataplane::load().expect("load the XDP object (needs root)"),
    ));
    let firewall = Firewall::new(db.clone(), dataplane.clone());
    let outbox = Arc::new(crate::outbox::Outbox::start(64, 64).expect("outbox"));
    let export = crate::flowexport::Exporter::start(&dataplane, Default::default(), outbox)
        .expect("exporter");
    AppState {
        dataplane,
        db,
        sync: tokio::sync::watch::channel(SyncStatus::default()).1,
        firewall: Arc::new(tokio::sync::Mutex::new(firewall)),
        wanted: Default::default(),
        listener_is_loopback,
        export: Some(Arc::new(export)),
        drop_log: None,
    }
}

/// `method path` with an optional JSON body: (status, JSON body).
pub async fn call(st: &AppState, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let resp = app(st.clone())
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}

/// `method path` with `body` sent as is (it need not be JSON) under
/// `content_type`: (status, JSON body).
pub async fn call_raw(
    st: &AppState,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = app(st.clone())
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON body"))
}
