//! Flow export settings and counters (`flowexport`).
//!
//! - `GET /export`: the settings in force and the exporter's counters.
//! - `PUT /export`: replace the settings (every field optional, defaults
//!   for the missing ones); validated whole, stored (they outlive a
//!   restart and win over the config file's `[export]`), and used from the
//!   next scan on. An empty `collectors` list turns export off.
use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{
    AppState, Error,
    error::{ApiJson, ErrorBody},
};
use crate::flowexport::{self, ExportCounters, ExportSettings};

pub fn router() -> Router<AppState> {
    Router::new().route("/export", get(show).put(replace))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportState {
    pub settings: ExportSettings,
    /// Export is on (there is a collector).
    pub enabled: bool,
    pub counters: ExportCounters,
}

fn exporter(state: &AppState) -> Result<&flowexport::Exporter, Error> {
    state.export.as_deref().ok_or_else(|| Error::Unavailable {
        message: "flow export is not running in this process".into(),
        details: Vec::new(),
    })
}

fn current(e: &flowexport::Exporter) -> ExportState {
    let settings = e.settings();
    ExportState {
        enabled: settings.enabled(),
        settings,
        counters: e.counters(),
    }
}

/// The export settings in force and the exporter's counters.
#[utoipa::path(
    get,
    path = "/api/v1/export",
    operation_id = "getExport",
    tag = "export",
    responses((status = 200, description = "Settings and counters", body = ExportState)),
)]
async fn show(State(state): State<AppState>) -> Result<Json<ExportState>, Error> {
    Ok(Json(current(exporter(&state)?)))
}

/// Replace the export settings (collectors, timeouts, drop-log sampling).
#[utoipa::path(
    put,
    path = "/api/v1/export",
    operation_id = "putExport",
    tag = "export",
    request_body = ExportSettings,
    responses(
        (status = 200, description = "Stored and in force", body = ExportState),
        (status = 400, description = "Refused; the message names the field", body = ErrorBody),
    ),
)]
async fn replace(
    State(state): State<AppState>,
    ApiJson(settings): ApiJson<ExportSettings>,
) -> Result<Json<ExportState>, Error> {
    let e = exporter(&state)?;
    settings.validate().map_err(|err| Error::Invalid {
        message: format!("the export settings were refused: {err}"),
        details: vec![json!({ "message": err.to_string() })],
    })?;
    if let Some(log) = &state.drop_log {
        // The sampling goes into a BPF map: if that fails nothing changes.
        log.set_limits(settings.drop_log_limits())
            .map_err(|err| Error::Unavailable {
                message: format!("the drop log's sampling could not be set: {err}"),
                details: Vec::new(),
            })?;
    }
    flowexport::store(&state.db, &settings).await?;
    e.set_settings(settings.clone());
    crate::events::emit(
        crate::events::Severity::Notice,
        "export_settings",
        json!({ "collectors": settings.collectors, "active_timeout": settings.active_timeout,
                "idle_timeout": settings.idle_timeout }),
    );
    Ok(Json(current(e)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::http::testutil::{call, state};

    #[sqlx::test(migrations = "../migrations")]
    async fn get_shows_defaults_and_counters(db: sqlx::SqlitePool) {
        let st = state(db).await;
        let (status, body) = call(&st, "GET", "/api/v1/export", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["enabled"], false);
        assert_eq!(body["settings"]["active_timeout"], 60);
        assert_eq!(body["settings"]["idle_timeout"], 15);
        assert_eq!(body["settings"]["collectors"], json!([]));
        assert_eq!(body["counters"]["records_queued"], 0);
        assert!(body["counters"]["io_backend"].is_string(), "{body}");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn put_stores_and_applies(db: sqlx::SqlitePool) {
        let st = state(db).await;
        let put = json!({ "collectors": ["198.18.9.2:4739", "[2001:db8:9::2]:4739"],
                          "idle_timeout": 5, "drop_log_sample": 10 });
        let (status, body) = call(&st, "PUT", "/api/v1/export", Some(put)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["enabled"], true);
        assert_eq!(body["settings"]["idle_timeout"], 5);
        assert_eq!(
            body["settings"]["active_timeout"], 60,
            "missing fields default"
        );
        let (_, body) = call(&st, "GET", "/api/v1/export", None).await;
        assert_eq!(
            body["settings"]["collectors"],
            json!(["198.18.9.2:4739", "[2001:db8:9::2]:4739"])
        );
        let stored = crate::flowexport::stored(&st.db).await.expect("db");
        assert_eq!(stored.expect("stored").drop_log_sample, 10);
        // Off again.
        let (status, body) = call(&st, "PUT", "/api/v1/export", Some(json!({}))).await;
        assert_eq!((status, &body["enabled"]), (200, &json!(false)));
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn bad_settings_are_refused_and_change_nothing(db: sqlx::SqlitePool) {
        let st = state(db).await;
        let good = json!({ "collectors": ["198.18.9.2:4739"] });
        assert_eq!(call(&st, "PUT", "/api/v1/export", Some(good)).await.0, 200);
        for (bad, says) in [
            (
                json!({ "idle_timeout": 0 }),
                "idle_timeout: 0 is out of range",
            ),
            (json!({ "collectors": ["198.18.9.2"] }), "collectors"),
            (json!({ "collectors": ["198.18.9.2:0"] }), "port 0"),
            (json!({ "collector": [] }), "unknown field"),
            (json!({ "active_timeout": "60" }), "active_timeout"),
            (
                json!({ "max_message": 100 }),
                "max_message: 100 is out of range",
            ),
            (
                json!({ "collectors": ["198.18.9.2:1", "198.18.9.2:1"] }),
                "twice",
            ),
        ] {
            let (status, body) = call(&st, "PUT", "/api/v1/export", Some(bad.clone())).await;
            assert_eq!(status, 400, "{bad} -> {body}");
            let msg = body["error"]["message"].as_str().expect("message");
            assert!(msg.contains(says), "{bad}: {msg:?} lacks {says:?}");
        }
        let (_, body) = call(&st, "GET", "/api/v1/export", None).await;
        assert_eq!(body["settings"]["collectors"], json!(["198.18.9.2:4739"]));
        assert_eq!(body["settings"]["idle_timeout"], 15);
    }
}
