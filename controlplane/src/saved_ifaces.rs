//! Interfaces attached through the API, kept in SQLite
//! (`migrations/0007_saved_interface.sql`) so that a restart or an upgrade
//! attaches them again in the mode they were given.
//!
//! `--iface` stays the configuration of the interfaces it names: at start
//! they are attached in `--xdp-mode` whatever is saved, and detaching one
//! through the API lasts until the next start. A saved interface that does
//! not exist at start stays wanted, so the kernel sync attaches it when it
//! appears ([`crate::managed::Wanted`]).
use sqlx::SqlitePool;
use tracing::warn;

use crate::{dataplane::AttachMode, db::DbError};

/// Save (or update the mode of) an interface attached through the API.
pub async fn save(db: &SqlitePool, name: &str, mode: AttachMode) -> Result<(), DbError> {
    sqlx::query(
        "insert into saved_interface (name, mode) values (?1, ?2)
         on conflict (name) do update set mode = excluded.mode,
             saved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    )
    .bind(name)
    .bind(mode.to_string())
    .execute(db)
    .await?;
    Ok(())
}

/// Forget an interface detached through the API; false if none was saved.
pub async fn forget(db: &SqlitePool, name: &str) -> Result<bool, DbError> {
    let done = sqlx::query("delete from saved_interface where name = ?1")
        .bind(name)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every saved interface, by name. A row whose mode this version cannot
/// read (a hand-edited database) is skipped with a warning and kept.
pub async fn load(db: &SqlitePool) -> Result<Vec<(String, AttachMode)>, DbError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select name, mode from saved_interface order by name")
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, mode)| match mode.parse() {
            Ok(m) => Some((name, m)),
            Err(e) => {
                warn!(iface = %name, "saved interface skipped: {e}");
                None
            }
        })
        .collect())
}

/// The saved interfaces the command line does not name: the ones to attach
/// at start, after the `--iface` set.
pub fn beyond_command_line(
    saved: Vec<(String, AttachMode)>,
    ifaces: &[String],
) -> Vec<(String, AttachMode)> {
    saved
        .into_iter()
        .filter(|(name, _)| !ifaces.contains(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[sqlx::test(migrations = "../migrations")]
    async fn saved_updated_forgotten_and_refused_when_not_an_interface_name(db: SqlitePool) {
        assert!(load(&db).await.expect("load").is_empty());
        save(&db, "eth3", AttachMode::Skb).await.expect("save");
        save(&db, "eth2", AttachMode::Native).await.expect("save");
        save(&db, "eth3", AttachMode::Native).await.expect("update");
        assert_eq!(
            load(&db).await.expect("load"),
            [
                ("eth2".to_string(), AttachMode::Native),
                ("eth3".to_string(), AttachMode::Native)
            ]
        );
        assert!(forget(&db, "eth2").await.expect("forget"));
        assert!(!forget(&db, "eth2").await.expect("forget again"));
        assert_eq!(
            load(&db).await.expect("load"),
            [("eth3".to_string(), AttachMode::Native)]
        );
        // The schema refuses what no interface can be called.
        let long = "a".repeat(16);
        assert!(save(&db, &long, AttachMode::Skb).await.is_err());
        assert!(save(&db, "", AttachMode::Skb).await.is_err());
        assert_eq!(load(&db).await.expect("load").len(), 1, "nothing lost");
    }

    #[sqlx::test(migrations = "../migrations")]
    async fn an_unreadable_mode_is_skipped_and_kept(db: SqlitePool) {
        // Past the check constraint, as a hand edit could be (the pragma
        // is per connection).
        let mut conn = db.acquire().await.expect("a connection");
        sqlx::query("pragma ignore_check_constraints = on")
            .execute(&mut *conn)
            .await
            .expect("pragma");
        sqlx::query("insert into saved_interface (name, mode) values ('eth9', 'turbo')")
            .execute(&mut *conn)
            .await
            .expect("insert");
        drop(conn);
        save(&db, "eth3", AttachMode::Skb).await.expect("save");
        assert_eq!(
            load(&db).await.expect("load"),
            [("eth3".to_string(), AttachMode::Skb)]
        );
        let n: i64 = sqlx::query_scalar("select count(*) from saved_interface")
            .fetch_one(&db)
            .await
            .expect("count");
        assert_eq!(n, 2, "the unreadable row is kept");
    }

    #[test]
    fn the_command_line_wins_for_the_interfaces_it_names() {
        let saved = vec![
            ("eth1".to_string(), AttachMode::Skb),
            ("eth3".to_string(), AttachMode::Skb),
        ];
        assert_eq!(
            beyond_command_line(saved, &["eth1".to_string(), "eth2".to_string()]),
            [("eth3".to_string(), AttachMode::Skb)]
        );
    }
}
