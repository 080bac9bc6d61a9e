//! API bearer tokens: how they look, how they are made and checked, and
//! where they are kept (the `api_token` table).
//!
//! A token reads `xg_<key_id>_<secret>`: 8 random bytes as hex (a
//! non-secret id that finds the row, so checking a token never scans or
//! compares against other tokens' hashes) and 32 random bytes as base64url
//! (the secret). Only the argon2id hash of the secret is stored; the token
//! itself is shown once, when it is made.
use std::collections::HashSet;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;
use sqlx::SqlitePool;

use crate::db::DbError;

/// What every token starts with, so one is recognisable in a config file
/// or a leaked log (and secret scanners can look for it).
pub const PREFIX: &str = "xg_";
const KEY_ID_BYTES: usize = 8;
const KEY_ID_LEN: usize = KEY_ID_BYTES * 2;
const SECRET_BYTES: usize = 32;
/// 32 bytes in unpadded base64: ceil(32 * 4 / 3).
const SECRET_LEN: usize = 43;
/// Longest token name: a label for people, not a payload.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} exists already: revoke it first, or pick another name")]
    Duplicate(String),
    #[error("no live token is named {0:?} (`xdpgate token list` shows them)")]
    NotFound(String),
    #[error(
        "bad token name {0:?}: 1 to {MAX_NAME_LEN} characters, letters, digits, '-', '_', '.' or '@'"
    )]
    BadName(String),
    #[error("the system's random number generator failed: {0}")]
    Random(getrandom::Error),
    #[error("hashing the token failed: {0}")]
    Hash(argon2::password_hash::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for TokenError {
    fn from(e: sqlx::Error) -> Self {
        TokenError::Db(DbError::Query(e))
    }
}

/// The two halves of a well-formed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
}

/// Split `token` into its id and secret; `None` unless it has exactly the
/// shape [`generate`] makes (so junk is refused without a database query).
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    let rest = token.strip_prefix(PREFIX)?;
    if rest.len() != KEY_ID_LEN + 1 + SECRET_LEN || !rest.is_ascii() {
        return None;
    }
    let (key_id, secret) = rest.split_at(KEY_ID_LEN);
    let secret = secret.strip_prefix('_')?;
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    let b64url = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    (key_id.bytes().all(hex) && secret.bytes().all(b64url)).then_some(Parsed { key_id, secret })
}

/// A new token from the operating system's random source.
pub fn generate() -> Result<String, TokenError> {
    let mut key_id = [0u8; KEY_ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut key_id).map_err(TokenError::Random)?;
    getrandom::fill(&mut secret).map_err(TokenError::Random)?;
    let key_id: String = key_id.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{PREFIX}{key_id}_{}",
        URL_SAFE_NO_PAD.encode(secret)
    ))
}

/// The argon2id PHC string (`$argon2id$v=19$...`) of `secret`, with a
/// random salt and the crate's default cost (OWASP's minimum: 19 MiB, two
/// passes), so a stolen database does not give the tokens away.
pub fn hash_secret(secret: &str) -> Result<String, TokenError> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(TokenError::Hash)
}

/// Whether `secret` matches the stored `phc` hash. argon2 recomputes the
/// hash and compares in constant time; a malformed `phc` never matches.
/// Slow by design (tens of milliseconds): callers cache the answer.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(TokenError::BadName(name.to_owned()));
    }
    Ok(())
}

/// A token as `xdpgate token list` shows it: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub key_id: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The row a presented token is checked against.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub api_token_id: i64,
    pub hash: String,
}

/// Make a token named `name`, store its hash, and return the token (the
/// only time it is ever seen).
pub async fn create(pool: &SqlitePool, name: &str) -> Result<String, TokenError> {
    check_name(name)?;
    let token = generate()?;
    let parsed = parse(&token).expect("generate makes parseable tokens");
    let secret = parsed.secret.to_owned();
    // Hashing costs tens of milliseconds of CPU: off the async threads.
    let hash = tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .expect("the hashing task panicked")?;
    let inserted = sqlx::query("insert into api_token (name, key_id, hash) values (?1, ?2, ?3)")
        .bind(name)
        .bind(parsed.key_id)
        .bind(hash)
        .execute(pool)
        .await;
    match inserted {
        Ok(_) => Ok(token),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(TokenError::Duplicate(name.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every token, live and revoked, oldest first.
pub async fn list(pool: &SqlitePool) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(sqlx::query_as(
        "select name, key_id, created_at, last_used_at, revoked_at from api_token
         order by api_token_id",
    )
    .fetch_all(pool)
    .await?)
}

/// Revoke the live token named `name`. A daemon using the same database
/// refuses it within a second ([`crate::http`]'s auth layer re-reads the
/// live tokens at most every second).
pub async fn revoke(pool: &SqlitePool, name: &str) -> Result<(), TokenError> {
    let done = sqlx::query(
        "update api_token set revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         where name = ?1 and revoked_at is null",
    )
    .bind(name)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(TokenError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The key ids of every live (unrevoked) token.
pub async fn live_key_ids(pool: &SqlitePool) -> Result<HashSet<String>, DbError> {
    let ids: Vec<String> =
        sqlx::query_scalar("select key_id from api_token where revoked_at is null")
            .fetch_all(pool)
            .await?;
    Ok(ids.into_iter().collect())
}

/// The live token with `key_id`, if there is one.
pub async fn lookup(pool: &SqlitePool, key_id: &str) -> Result<Option<StoredToken>, DbError> {
    Ok(sqlx::query_as(
        "select api_token_id, hash from api_token where key_id = ?1 and revoked_at is null",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?)
}

/// Record that the token was just used.
pub async fn touch(pool: &SqlitePool, api_token_id: i64) -> Result<(), DbError> {
    sqlx::query(
        "update api_token set last_used_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         where api_token_id = ?1",
    )
    .bind(api_token_id)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = generate().expect("token");
        let b = generate().expect("token");
        assert_ne!(a, b);
        assert!(a.starts_with("xg_"), "{a}");
        assert_eq!(a.len(), PREFIX.len() + KEY_ID_LEN + 1 + SECRET_LEN);
        let p = parse(&a).expect("parses");
        assert_eq!(p.key_id.len(), 16);
        assert_eq!(p.secret.len(), 43);
        assert_eq!(format!("xg_{}_{}", p.key_id, p.secret), a);
        assert_ne!(parse(&b).expect("parses").key_id, p.key_id);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let good = generate().expect("token");
        let p = parse(&good).expect("parses");
        let secret = p.secret;
        for bad in [
            String::new(),
            "xg_".into(),
            good[3..].to_owned(),
            format!("XG_{}", &good[3..]),
            format!("{good}x"),
            good[..good.len() - 1].to_owned(),
            format!("xg_{}_{secret}", "0123456789ABCDEF"),
            format!("xg_{}-{secret}", p.key_id),
            format!("xg_{}_{}!", p.key_id, &secret[1..]),
            format!("xg_{}_{}é", p.key_id, &secret[2..]),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_verifies_its_secret_only() {
        let token = generate().expect("token");
        let secret = parse(&token).expect("parses").secret;
        let phc = hash_secret(secret).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(!phc.contains(secret));
        assert!(verify_secret(secret, &phc));
        let other = generate().expect("token");
        assert!(!verify_secret(parse(&other).expect("parses").secret, &phc));
        assert!(!verify_secret(secret, "not a hash"));
        // A fresh salt each time: equal secrets, different hashes.
        assert_ne!(hash_secret(secret).expect("hash"), phc);
    }

    #[tokio::test]
    async fn create_list_revoke() {
        let pool = crate::db::open(Path::new(":memory:")).await.expect("db");
        let token = create(&pool, "ci").await.expect("create");
        let p = parse(&token).expect("parses");
        let stored = lookup(&pool, p.key_id)
            .await
            .expect("lookup")
            .expect("live");
        assert!(verify_secret(p.secret, &stored.hash));
        assert_eq!(
            live_key_ids(&pool).await.expect("live"),
            HashSet::from([p.key_id.to_owned()])
        );

        let err = create(&pool, "ci").await.expect_err("duplicate");
        assert!(matches!(err, TokenError::Duplicate(_)), "{err}");
        assert!(err.to_string().contains("exists already"), "{err}");
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(
                matches!(create(&pool, bad).await, Err(TokenError::BadName(_))),
                "{bad:?}"
            );
        }

        touch(&pool, stored.api_token_id).await.expect("touch");
        let listed = list(&pool).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "ci");
        assert_eq!(listed[0].key_id, p.key_id);
        assert!(listed[0].last_used_at.is_some());
        assert_eq!(listed[0].revoked_at, None);

        revoke(&pool, "ci").await.expect("revoke");
        assert!(lookup(&pool, p.key_id).await.expect("lookup").is_none());
        assert!(live_key_ids(&pool).await.expect("live").is_empty());
        assert!(matches!(
            revoke(&pool, "ci").await,
            Err(TokenError::NotFound(_))
        ));
        assert!(list(&pool).await.expect("list")[0].revoked_at.is_some());

        // The name of a revoked token can be given again.
        let again = create(&pool, "ci").await.expect("reuse the name");
        assert_ne!(again, token);
        assert_eq!(list(&pool).await.expect("list").len(), 2);
    }
}
