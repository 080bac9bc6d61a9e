//! One error type for every handler, one JSON shape for every error:
//! `{"error": {"code": "...", "message": "..."}}`. Internal errors are logged
//! with an id and never leaked.
use axum::{
    Json,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such resource: {0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Dataplane(_) | Error::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::BadRequest(_) => "bad_request",
            Error::Dataplane(_) | Error::Db(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let message = if status.is_server_error() {
            let id = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            tracing::error!(error_id = id, "{self}");
            format!("internal error (id {id}); see the daemon's log")
        } else {
            self.to_string()
        };
        let body = json!({ "error": { "code": self.code(), "message": message } });
        (status, Json(body)).into_response()
    }
}

pub async fn not_found(uri: Uri) -> Error {
    Error::NotFound(uri.path().to_owned())
}

/// `Query` whose rejection (unknown field, wrong type) is an [`Error`], so
/// bad query strings get the same JSON error shape as everything else.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| Error::BadRequest(e.body_text()))
    }
}
