//! `xdpgate token`: make, list and revoke API tokens. These work on the
//! database directly, so the daemon need not run; a running daemon sees a
//! new token at once and a revocation within a second.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::DEFAULT_DB;
use crate::token::{self, TokenInfo};

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token and print it (the only time it is shown: only its
    /// hash is stored).
    Create {
        /// A name for the token (who or what uses it), unique among the
        /// live tokens.
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the tokens, live and revoked (never the tokens themselves).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke the live token named NAME.
    Revoke {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Parser, Debug)]
pub struct DbArgs {
    /// The daemon's SQLite database (its `--db`).
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: PathBuf,
}

pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(command))
}

async fn run_async(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, db } => {
            let pool = crate::db::open(&db.db).await?;
            let token = token::create(&pool, &name).await?;
            pool.close().await;
            eprintln!("token {name:?} created; it is shown only now, keep it safe:");
            println!("{token}");
        }
        TokenCommand::List { db, json } => {
            let pool = crate::db::open(&db.db).await?;
            let tokens = token::list(&pool).await?;
            pool.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                print!("{}", render_list(&tokens));
            }
        }
        TokenCommand::Revoke { name, db } => {
            let pool = crate::db::open(&db.db).await?;
            token::revoke(&pool, &name).await?;
            pool.close().await;
            println!("token {name:?} revoked");
        }
    }
    Ok(())
}

/// The tokens as a table.
pub fn render_list(tokens: &[TokenInfo]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:<24} {:<24} REVOKED",
        "NAME", "KEY ID", "CREATED", "LAST USED"
    );
    for t in tokens {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<24} {:<24} {}",
            t.name,
            t.key_id,
            t.created_at,
            t.last_used_at.as_deref().unwrap_or("never"),
            t.revoked_at.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "({} tokens)", tokens.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_unused_and_revoked() {
        let t = |name: &str, used: Option<&str>, revoked: Option<&str>| TokenInfo {
            name: name.into(),
            key_id: "0123456789abcdef".into(),
            created_at: "2025-01-01T00:00:00.000Z".into(),
            last_used_at: used.map(Into::into),
            revoked_at: revoked.map(Into::into),
        };
        let table = render_list(&[
            t("ci", None, None),
            t(
                "old",
                Some("2025-01-02T00:00:00.000Z"),
                Some("2025-01-03T00:00:00.000Z"),
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("ci ") && lines[1].contains("never"),
            "{table}"
        );
        assert!(lines[1].ends_with('-'), "{table}");
        assert!(lines[2].ends_with("2025-01-03T00:00:00.000Z"), "{table}");
        assert_eq!(lines[3], "(2 tokens)");
    }
}
