//! Request body size limits: [`FIREWALL_BODY_LIMIT`] under
//! `/api/v1/firewall` (rulesets with sets of 100k prefixes), [`BODY_LIMIT`]
//! everywhere else. A body announced larger (`Content-Length`) is refused
//! before it is read; one that turns out larger while streaming fails the
//! extractor reading it, which [`super::error::ApiJson`] turns into the same
//! 413. axum's own default limit (2 MB for every extractor) is switched off
//! in [`super::app`], so this is the only one.
use axum::{
    body::Body,
    extract::Request,
    http::header,
    middleware::Next,
    response::{IntoResponse as _, Response},
};

use super::Error;

pub const BODY_LIMIT: usize = 1 << 20;
pub const FIREWALL_BODY_LIMIT: usize = 64 << 20;

/// The limit for a request to `path`.
pub fn limit_for(path: &str) -> usize {
    match path.strip_prefix("/api/v1/firewall") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => FIREWALL_BODY_LIMIT,
        _ => BODY_LIMIT,
    }
}

/// The middleware (`axum::middleware::from_fn`).
pub async fn body_limit(req: Request, next: Next) -> Response {
    let limit = limit_for(req.uri().path());
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Error::PayloadTooLarge { limit }.into_response();
    }
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_paths_get_the_large_limit() {
        for p in [
            "/api/v1/firewall",
            "/api/v1/firewall/apply",
            "/api/v1/firewall/candidate",
        ] {
            assert_eq!(limit_for(p), FIREWALL_BODY_LIMIT, "{p}");
        }
        for p in ["/api/v1/firewallx", "/api/v1/stats", "/healthz", "/"] {
            assert_eq!(limit_for(p), BODY_LIMIT, "{p}");
        }
    }
}
