use std::path::Path;

use axum::{body::Body, http::Request};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;

async fn state() -> AppState {
    let db = crate::db::open(Path::new(":memory:")).await.expect("db");
    let dataplane = Dataplane::load().expect("load the XDP object (needs root)");
    AppState {
        dataplane: Arc::new(Mutex::new(dataplane)),
        db,
        sync: watch::channel(SyncStatus::default()).1,
    }
}

async fn get(path: &str) -> (u16, serde_json::Value) {
    let resp = app(state().await)
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

#[tokio::test]
async fn healthz_reports_db_and_attachments() {
    let (status, body) = get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["attached_interfaces"], 0);
}

#[tokio::test]
async fn stats_lists_every_reason_and_class_even_when_zero() {
    let (status, body) = get("/api/v1/stats").await;
    assert_eq!(status, 200);
    let reasons = body["total"]["reasons"].as_object().expect("reasons");
    assert_eq!(reasons.len(), dataplane_common::Reason::COUNT as usize);
    assert_eq!(reasons["malformed"]["packets"], 0);
    let classes = body["total"]["classes"].as_object().expect("classes");
    assert_eq!(classes.len(), dataplane_common::Class::COUNT as usize);
    assert_eq!(body["interfaces"].as_array().expect("interfaces").len(), 0);
}

#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let (status, body) = get("/api/v1/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/api/v1/nope")
    );
}
