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
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

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

    fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::BadRequest(_) | Error::Invalid { .. } => ErrorCode::BadRequest,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Unprocessable(_) => ErrorCode::Unprocessable,
            Error::Unavailable { .. } => ErrorCode::Unavailable,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::Firewall(e) if e.is_bad_request() => ErrorCode::BadRequest,
            Error::Firewall(e) if e.is_conflict() => ErrorCode::Conflict,
            Error::Firewall(e) if e.is_not_found() => ErrorCode::NotFound,
            Error::Dataplane(_)
            | Error::Db(_)
            | Error::Firewall(_)
            | Error::FirewallStore(_)
            | Error::StaticRoute(_) => ErrorCode::Internal,
        }
    }
}

/// Every error's body: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorInfo {
    pub code: ErrorCode,
    /// For people; internal errors say only where the log has more.
    pub message: String,
    /// Every reason, where there is a list: strings, or objects with a
    /// `message` (a refused ruleset's problems add the `rule` index, a
    /// refused set's prefixes the `index` and `prefix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ErrorDetail>>)]
    pub details: Option<Vec<serde_json::Value>>,
}

/// One of `details`: a reason, or a problem with where it is.
#[derive(ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "only its schema is used (`ErrorInfo::details`)")]
enum ErrorDetail {
    Reason(String),
    Problem {
        message: String,
        /// A ruleset's problem: the rule's index (from 0), `null` for a set
        /// or a chain.
        rule: Option<usize>,
        /// A set's bad prefix: its index in the request, and the text.
        index: Option<usize>,
        prefix: Option<String>,
    },
}

/// What kind of error, for programs (one per HTTP status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    Internal,
    Unavailable,
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
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code(),
                message,
                details,
            },
        };
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

/// `Path` whose rejection (a segment that is not UTF-8 once decoded) is an
/// [`Error`], like [`ApiQuery`]: axum's own is a `text/plain` 400.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
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
