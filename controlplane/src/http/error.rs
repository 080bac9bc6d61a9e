//! One error type for every handler, one JSON shape for every error:
//! `{"error": {"code": "...", "message": "...", "details": [...]}}`
//! (`details` only where there is a list of reasons, such as every problem
//! of a refused ruleset). Internal errors are logged with an id and never
//! leaked.
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
    /// Bad input with every reason listed: strings, or objects with a
    /// `message` (and, for a ruleset problem, the `rule` index).
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<serde_json::Value>,
    },
    /// The firewall refused a ruleset (400, with its problems) or failed
    /// (500).
    /// The resource's state forbids the request (attaching an interface
    /// that is attached).
    #[error("{0}")]
    Conflict(String),
    /// Well formed, but the system could not do it (the kernel refused to
    /// attach XDP); the message says why.
    #[error("{0}")]
    Unprocessable(String),
    /// Not ready to serve (`/readyz`), every reason in `details`. A 503
    /// whose message is shown: it is about state, not an internal error.
    #[error("{message}")]
    Unavailable {
        message: String,
        details: Vec<serde_json::Value>,
    },
    /// No token, or not a valid one (`http::auth` adds the challenge).
    #[error("{0}")]
    Unauthorized(String),
    /// The body is larger than the limit for its path (`http::limit`).
    #[error("the request body is larger than this path's limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error(transparent)]
    Firewall(#[from] crate::firewall::FirewallError),
    #[error(transparent)]
    FirewallStore(#[from] crate::firewall::store::StoreError),
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// A static route operation failed inside the box (500); the operator's
    /// mistakes are mapped to 400/404/409/422 by `http::static_routes`.
    #[error(transparent)]
    StaticRoute(#[from] crate::static_routes::StaticRouteError),
}

impl Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) | Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Firewall(e) if e.is_bad_request() => StatusCode::BAD_REQUEST,
            Error::Firewall(e) if e.is_conflict() => StatusCode::CONFLICT,
            Error::Firewall(e) if e.is_not_found() => StatusCode::NOT_FOUND,
            Error::Dataplane(_)
            | Error::Db(_)
            | Error::Firewall(_)
            | Error::FirewallStore(_)
            | Error::StaticRoute(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::BadRequest(_) | Error::Invalid { .. } => "bad_request",
            Error::Conflict(_) => "conflict",
            Error::Unprocessable(_) => "unprocessable",
            Error::Unavailable { .. } => "unavailable",
            Error::Unauthorized(_) => "unauthorized",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Firewall(e) if e.is_bad_request() => "bad_request",
            Error::Firewall(e) if e.is_conflict() => "conflict",
            Error::Firewall(e) if e.is_not_found() => "not_found",
            Error::Dataplane(_)
            | Error::Db(_)
            | Error::Firewall(_)
            | Error::FirewallStore(_)
            | Error::StaticRoute(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let details = self.details();
        let message = if status.is_server_error() && !matches!(self, Error::Unavailable { .. }) {
            let id = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            tracing::error!(error_id = id, "{self}");
            format!("internal error (id {id}); see the daemon's log")
        } else if let (Error::Firewall(_), Some(d)) = (&self, &details) {
            // The problems are in `details`; the message need not repeat them.
            problems_message(d.len())
        } else {
            self.to_string()
        };
        let mut body = json!({ "error": { "code": self.code(), "message": message } });
        if let Some(details) = details {
            body["error"]["details"] = details.into();
        }
        (status, Json(body)).into_response()
    }
}

impl Error {
    /// A ruleset refused for its `problems`, each in `details`.
    pub fn problems(problems: &[crate::firewall::rule::Problem]) -> Error {
        Error::Invalid {
            message: problems_message(problems.len()),
            details: problems.iter().map(|p| json!(p)).collect(),
        }
    }

    fn details(&self) -> Option<Vec<serde_json::Value>> {
        match self {
            Error::Invalid { details, .. } | Error::Unavailable { details, .. } => {
                Some(details.clone())
            }
            Error::Firewall(e) if e.is_bad_request() => {
                e.problems().map(|p| p.iter().map(|p| json!(p)).collect())
            }
            _ => None,
        }
    }
}

fn problems_message(n: usize) -> String {
    format!(
        "the ruleset was refused: {n} problem{}",
        if n == 1 { "" } else { "s" }
    )
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

/// `Json` whose rejection (bad JSON, wrong shape, missing content type) is
/// an [`Error`], like [`ApiQuery`].
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = super::limit::limit_for(req.uri().path());
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(|e| match e.status() {
                // A streamed body that outgrew `http::limit`'s bound.
                StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit },
                _ => Error::BadRequest(e.body_text()),
            })
    }
}
