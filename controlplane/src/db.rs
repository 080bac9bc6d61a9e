//! The SQLite database: configuration that must survive restarts (firewall
//! rules, static routes, tokens as those issues land). WAL mode, so a crash
//! mid-write loses at most the transaction in flight.
use std::{path::Path, str::FromStr as _};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("creating the database directory {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database {path}: {source}")]
    Migrate {
        path: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Open (creating if needed) and migrate the database at `path`.
/// `:memory:` gives a private in-memory database (tests).
pub async fn open(path: &Path) -> Result<SqlitePool, DbError> {
    let shown = path.display().to_string();
    let options = if shown == ":memory:" {
        SqliteConnectOptions::from_str("sqlite::memory:").map_err(|source| DbError::Open {
            path: shown.clone(),
            source,
        })?
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
    };
    let pool = SqlitePoolOptions::new()
        // One connection for :memory: (each connection is its own database).
        .max_connections(if shown == ":memory:" { 1 } else { 4 })
        .connect_with(options)
        .await
        .map_err(|source| DbError::Open {
            path: shown.clone(),
            source,
        })?;
    sqlx::migrate!("../migrations")
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            path: shown,
            source,
        })?;
    Ok(pool)
}

/// Record a setting (key/value, with its update time).
pub async fn put_setting(pool: &SqlitePool, key: &str, value: &str) -> Result<(), DbError> {
    sqlx::query(
        "insert into setting (key, value) values (?1, ?2)
         on conflict (key) do update set value = excluded.value, updated_at = current_timestamp",
    )
    .bind(key)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get_setting(pool: &SqlitePool, key: &str) -> Result<Option<String>, DbError> {
    Ok(
        sqlx::query_scalar("select value from setting where key = ?1")
            .bind(key)
            .fetch_optional(pool)
            .await?,
    )
}

/// Cheap liveness probe of the database.
pub async fn ping(pool: &SqlitePool) -> Result<(), DbError> {
    sqlx::query("select 1").execute(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_round_trip_and_update() {
        let pool = open(Path::new(":memory:")).await.expect("open");
        assert_eq!(get_setting(&pool, "k").await.expect("get"), None);
        put_setting(&pool, "k", "1").await.expect("put");
        put_setting(&pool, "k", "2").await.expect("update");
        assert_eq!(
            get_setting(&pool, "k").await.expect("get").as_deref(),
            Some("2")
        );
    }

    #[tokio::test]
    async fn file_database_is_created_in_a_new_directory_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("xdpgate-db-{}", std::process::id()));
        let path = dir.join("sub/x.db");
        let pool = open(&path).await.expect("open");
        put_setting(&pool, "a", "b").await.expect("put");
        pool.close().await;
        let pool = open(&path).await.expect("reopen");
        assert_eq!(
            get_setting(&pool, "a").await.expect("get").as_deref(),
            Some("b")
        );
        pool.close().await;
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[tokio::test]
    async fn unopenable_path_is_a_clear_error() {
        let err = open(Path::new("/proc/xdpgate-cannot-be-here/x.db"))
            .await
            .expect_err("must fail");
        assert!(
            err.to_string().contains("/proc/xdpgate-cannot-be-here"),
            "{err}"
        );
    }
}
