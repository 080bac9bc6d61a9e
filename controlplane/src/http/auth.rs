//! Bearer-token authentication, one layer over the whole API.
//!
//! Who must show a token depends on where the API listens:
//! - on a loopback address, only local users reach it: reads are open, and
//!   so are writes until the first token is made (`xdpgate token create`);
//!   from then on a write (any method but GET, HEAD and OPTIONS) needs a
//!   token;
//! - on any other address, every request needs a token.
//!
//! `/healthz` and `/readyz` are always open (probes carry no secrets), and
//! so are reads of the web UI's static files (`http::ui`). A
//! request that shows a token (`Authorization: Bearer xg_...`) is checked
//! even where none is needed: a wrong token is always a 401.
//!
//! Checking a token: its non-secret key id finds the row, argon2 verifies
//! the secret (in constant time). argon2 is slow by design, so a success is
//! cached for [`CACHE_TTL`] under the SHA-256 of the token. The live key
//! ids are re-read from the database at most every [`LIVE_REFRESH`] (and a
//! cache miss reads the row itself), so a token revoked by `xdpgate token
//! revoke`, in another process, is refused within a second.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use sha2::{Digest as _, Sha256};
use sqlx::SqlitePool;
use tokio::sync::Semaphore;

use super::Error;
use crate::{db::DbError, token};

/// Paths open to everyone: liveness and readiness probes.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// How long a verified token is trusted without running argon2 again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How stale the set of live (unrevoked) tokens may be.
pub const LIVE_REFRESH: Duration = Duration::from_secs(1);
/// `last_used_at` is written at most this often per token.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// argon2 verifications running at once: a flood of wrong secrets for a
/// real key id costs at most this many cores.
const MAX_VERIFYING: usize = 2;

/// The layer's state: built once per [`super::app`], shared by its clones.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    db: SqlitePool,
    loopback: bool,
    cache: Mutex<Cache>,
    verifying: Semaphore,
}

#[derive(Default)]
struct Cache {
    /// Key ids of the live tokens, and when they were read.
    live: HashSet<String>,
    live_read_at: Option<Instant>,
    /// SHA-256 of a token that verified, and what it verified as.
    verified: HashMap<[u8; 32], Verified>,
    /// When `last_used_at` was last written, per token row.
    touched: HashMap<i64, Instant>,
}

struct Verified {
    key_id: String,
    api_token_id: i64,
    at: Instant,
}

/// What the `Authorization` header holds.
enum Presented<'a> {
    Nothing,
    Malformed,
    Bearer(&'a str),
}

impl Auth {
    /// `loopback`: the API listens on a loopback address only.
    pub fn new(db: SqlitePool, loopback: bool) -> Auth {
        Auth {
            inner: Arc::new(Inner {
                db,
                loopback,
                cache: Mutex::new(Cache::default()),
                verifying: Semaphore::new(MAX_VERIFYING),
            }),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break halfway.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether any live token exists, re-reading the live set if it is
    /// older than [`LIVE_REFRESH`]; cached verifications of tokens that
    /// are no longer live are dropped.
    async fn any_live(&self) -> Result<bool, DbError> {
        {
            let c = self.cache();
            if c.live_read_at.is_some_and(|t| t.elapsed() < LIVE_REFRESH) {
                return Ok(!c.live.is_empty());
            }
        }
        let live = token::live_key_ids(&self.inner.db).await?;
        let mut c = self.cache();
        c.verified.retain(|_, v| live.contains(&v.key_id));
        c.live = live;
        c.live_read_at = Some(Instant::now());
        Ok(!c.live.is_empty())
    }

    /// Whether `presented` is a live token.
    async fn verify(&self, presented: &str) -> Result<bool, DbError> {
        let Some(parsed) = token::parse(presented) else {
            return Ok(false);
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let hit = {
            let c = self.cache();
            c.verified
                .get(&digest)
                .filter(|v| v.at.elapsed() < CACHE_TTL && c.live.contains(&v.key_id))
                .map(|v| v.api_token_id)
        };
        if let Some(id) = hit {
            self.touch(id);
            return Ok(true);
        }
        // A miss reads the row itself: a token revoked since the live set
        // was read is refused here.
        let Some(stored) = token::lookup(&self.inner.db, parsed.key_id).await? else {
            return Ok(false);
        };
        let ok = {
            let _permit = self
                .inner
                .verifying
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let secret = parsed.secret.to_owned();
            let hash = stored.hash.clone();
            tokio::task::spawn_blocking(move || token::verify_secret(&secret, &hash))
                .await
                .unwrap_or(false)
        };
        if !ok {
            return Ok(false);
        }
        {
            let mut c = self.cache();
            c.verified.retain(|_, v| v.at.elapsed() < CACHE_TTL);
            c.live.insert(parsed.key_id.to_owned());
            c.verified.insert(
                digest,
                Verified {
                    key_id: parsed.key_id.to_owned(),
                    api_token_id: stored.api_token_id,
                    at: Instant::now(),
                },
            );
        }
        self.touch(stored.api_token_id);
        Ok(true)
    }

    /// Write `last_used_at`, at most once per [`TOUCH_EVERY`] per token,
    /// off the request's path.
    fn touch(&self, api_token_id: i64) {
        {
            let mut c = self.cache();
            let now = Instant::now();
            if c.touched
                .get(&api_token_id)
                .is_some_and(|t| now.duration_since(*t) < TOUCH_EVERY)
            {
                return;
            }
            c.touched.insert(api_token_id, now);
        }
        let db = self.inner.db.clone();
        tokio::spawn(async move {
            if let Err(e) = token::touch(&db, api_token_id).await {
                tracing::warn!("recording the use of API token {api_token_id}: {e}");
            }
        });
    }
}

fn presented(headers: &HeaderMap) -> Presented<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Presented::Bearer(token.trim())
        }
        _ => Presented::Malformed,
    }
}

/// Methods that only read.
fn is_read(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::OPTIONS].contains(method)
}

/// 401 in the API's error shape, with the challenge RFC 6750 asks for.
fn unauthorized(message: &str, invalid_token: bool) -> Response {
    let mut resp = Error::Unauthorized(message.to_owned()).into_response();
    let challenge = if invalid_token {
        r#"Bearer realm="xdpgate", error="invalid_token""#
    } else {
        r#"Bearer realm="xdpgate""#
    };
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    resp
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn require(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&req.uri().path())
        || (is_read(req.method()) && super::ui::is_ui_path(req.uri().path()))
    {
        return next.run(req).await;
    }
    let any_live = match auth.any_live().await {
        Ok(any) => any,
        Err(e) => return Error::Db(e).into_response(),
    };
    match presented(req.headers()) {
        Presented::Nothing => {
            if auth.inner.loopback && (is_read(req.method()) || !any_live) {
                next.run(req).await
            } else if auth.inner.loopback {
                unauthorized(
                    "writes need an API token once one exists: send `Authorization: Bearer <token>` (the CLI sends $XDPGATE_TOKEN)",
                    false,
                )
            } else {
                unauthorized(
                    "an API token is required: send `Authorization: Bearer <token>` (the CLI sends $XDPGATE_TOKEN; `xdpgate token create` makes one)",
                    false,
                )
            }
        }
        Presented::Malformed => {
            unauthorized("the Authorization header is not `Bearer <token>`", true)
        }
        Presented::Bearer(t) => match auth.verify(t).await {
            Ok(true) => next.run(req).await,
            Ok(false) => unauthorized("the API token is not valid or was revoked", true),
            Err(e) => Error::Db(e).into_response(),
        },
    }
}

#[cfg(test)]
mod tests;
