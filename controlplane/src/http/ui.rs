//! The web admin UI: static files from `web/`, compiled into the binary so
//! the appliance needs nothing next to it (and no Node.js at any time).
//! The UI is a client of the public API only; these routes are not part of
//! the API (not in `ROUTES` nor the OpenAPI document, listed in
//! `UI_ROUTES`) and are open like `/healthz`: the files hold no secrets, and
//! the sign-in box must load before there is a token.
use axum::{
    Router,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest as _, Sha256};

use super::{AppState, Error};

/// Every file the UI serves: (name under `/ui/`, content type, bytes).
/// `index.html` is also `/`.
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../web/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../web/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/api.js"),
    ),
    (
        "plot.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/plot.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/pages.js"),
    ),
    (
        "firewall.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/firewall.js"),
    ),
];

/// Scripts and styles come from this origin only; the API is same-origin.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{*file}", get(file))
}

/// Whether `path` is one of the UI's (open to GET without a token).
pub fn is_ui_path(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers).unwrap_or_else(IntoResponse::into_response)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers).unwrap_or_else(IntoResponse::into_response)
}

/// The file with its type and an ETag. File names carry no content hash,
/// so the browser revalidates every load (`no-cache`) and gets a 304 while
/// the binary is the same: an upgraded daemon never serves a new
/// `index.html` beside a stale cached `app.js`.
fn serve(name: &str, headers: &HeaderMap) -> Result<Response, Error> {
    let (_, content_type, bytes) = FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| Error::NotFound(format!("/ui/{name}")))?;
    let etag = format!("\"{}\"", hex16(&Sha256::digest(bytes)));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            *bytes,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a header value"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    Ok(resp)
}

/// The first 8 bytes of a digest as 16 hex digits.
fn hex16(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::{UI_ROUTES, app, testutil};

    async fn get(st: &AppState, uri: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(e) = etag {
            req = req.header(header::IF_NONE_MATCH, e);
        }
        app(st.clone())
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn every_file_is_served_with_its_type_and_revalidates(db: sqlx::SqlitePool) {
        let st = testutil::state(db).await;
        let index = get(&st, "/", None).await;
        assert_eq!(index.status(), 200);
        assert_eq!(index.headers()[header::CONTENT_TYPE], FILES[0].1);
        let html = index.into_body().collect().await.expect("body").to_bytes();
        let html = String::from_utf8(html.to_vec()).expect("utf-8");
        for (name, content_type, bytes) in FILES {
            let uri = format!("/ui/{name}");
            let resp = get(&st, &uri, None).await;
            assert_eq!(resp.status(), 200, "{uri}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], *content_type, "{uri}");
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache", "{uri}");
            let etag = resp.headers()[header::ETAG]
                .to_str()
                .expect("ascii")
                .to_owned();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], *bytes, "{uri}");
            let again = get(&st, &uri, Some(&etag)).await;
            assert_eq!(again.status(), 304, "{uri}");
            // Every module is reachable from the page: a file left out of
            // FILES (or one not referenced) fails here.
            let referenced = html.contains(&format!("/ui/{name}"))
                || FILES.iter().any(|(n, _, b)| {
                    n.ends_with(".js") && String::from_utf8_lossy(b).contains(&format!("./{name}"))
                });
            assert!(
                *name == "index.html" || referenced,
                "{name} is not used by the page"
            );
        }
        // Every module a script imports is served.
        for (name, _, bytes) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            for import in String::from_utf8_lossy(bytes).split("from \"./").skip(1) {
                let target = import.split('"').next().expect("a module name");
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == target),
                    "{name} imports ./{target}, which is not served"
                );
            }
        }
        let missing = get(&st, "/ui/nope.js", None).await;
        assert_eq!(missing.status(), 404);
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn the_ui_is_open_without_a_token_on_any_listener(db: sqlx::SqlitePool) {
        let mut st = testutil::state(db).await;
        st.listener_is_loopback = false;
        assert_eq!(get(&st, "/", None).await.status(), 200);
        assert_eq!(get(&st, "/ui/app.js", None).await.status(), 200);
        // The API behind it is not.
        assert_eq!(get(&st, "/api/v1/stats", None).await.status(), 401);
        for (method, path) in UI_ROUTES {
            assert_eq!(*method, "GET");
            assert!(is_ui_path(&path.replace("{*file}", "x")), "{path}");
        }
    }
}
