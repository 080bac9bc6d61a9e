//! Commit-confirm (Junos `commit confirmed`, VyOS `commit-confirm`): a
//! commit applied with `confirm_within` seconds rolls back by itself to the
//! ruleset active before it unless confirmed in time, so a rule that cuts
//! the operator off undoes itself.
//!
//! While one is pending nothing else commits (409): a second commit would
//! make "the ruleset before" ambiguous. The pending state is also in the
//! database, written in the commit's own transaction; the timer is not
//! carried across a restart: a daemon that starts and finds a commit still
//! pending restores the ruleset before it (the safe side), see
//! [`Firewall::restore`].
use std::sync::{Arc, Weak};

use serde::Serialize;
use serde_json::json;
use sqlx::SqlitePool;
use tokio::{task::AbortHandle, time::Instant};

use crate::events::{Severity, emit};

use super::{
    CommitSummary, Firewall, FirewallError,
    rule::Ruleset,
    store::{self, PendingConfirm, StoreError},
};

/// The firewall service as handlers and the expiry timer share it.
pub type SharedFirewall = Arc<tokio::sync::Mutex<Firewall>>;

/// Author of the commits the firewall makes by itself.
pub const ROLLBACK_AUTHOR: &str = "rollback";

/// The longest confirmation window: a day. Longer is a commit that was
/// meant to stay.
pub const MAX_CONFIRM_WITHIN: u32 = 86_400;

/// How long the timer waits before trying a failed rollback again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) struct Pending {
    info: PendingConfirm,
    deadline: Instant,
    timer: Option<AbortHandle>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(t) = &self.timer {
            t.abort();
        }
    }
}

/// A commit waiting for confirmation, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PendingView {
    pub commit: i64,
    /// What a rollback restores; None: the empty ruleset.
    pub previous_commit: Option<i64>,
    pub confirm_within: u32,
    /// UTC, RFC 3339.
    pub deadline: String,
    pub seconds_left: f64,
}

/// How [`Firewall::commit_as`] records a commit.
pub(super) enum Record {
    Plain,
    /// Waiting for confirmation within this many seconds.
    Pending(u32),
    /// Rolls back a pending commit: clears the pending state.
    Resolving,
}

impl Record {
    pub(super) async fn write(
        &self,
        db: &SqlitePool,
        rs: &Ruleset,
        author: &str,
        comment: &str,
    ) -> Result<i64, StoreError> {
        match self {
            Record::Plain => store::record_commit(db, rs, author, comment).await,
            Record::Pending(within) => {
                store::record_commit_pending(db, rs, author, comment, *within)
                    .await
                    .map(|p| p.commit)
            }
            Record::Resolving => store::record_commit_resolving(db, rs, author, comment).await,
        }
    }
}

impl Firewall {
    /// The commit waiting for confirmation, if any.
    pub fn pending(&self) -> Option<PendingView> {
        self.pending.as_ref().map(|p| PendingView {
            commit: p.info.commit,
            previous_commit: p.info.previous_commit,
            confirm_within: p.info.confirm_within,
            deadline: p.info.deadline.clone(),
            seconds_left: p
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64(),
        })
    }

    /// 409 while a commit waits for confirmation.
    pub fn refuse_if_pending(&self) -> Result<(), FirewallError> {
        match &self.pending {
            None => Ok(()),
            Some(p) => Err(FirewallError::ConfirmPending {
                commit: p.info.commit,
                seconds_left: p
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs(),
            }),
        }
    }

    /// Commit `ruleset` as [`Firewall::commit`] does, to be rolled back to
    /// the ruleset active now unless [`Firewall::confirm`] is called within
    /// `within` seconds. `me` is the shared handle this firewall lives in:
    /// the timer takes the lock when it fires.
    pub async fn commit_confirmed(
        &mut self,
        me: &SharedFirewall,
        ruleset: Ruleset,
        author: &str,
        comment: &str,
        within: u32,
    ) -> Result<CommitSummary, FirewallError> {
        if !(1..=MAX_CONFIRM_WITHIN).contains(&within) {
            return Err(FirewallError::ConfirmWithin(within));
        }
        self.refuse_if_pending()?;
        let summary = self
            .commit_as(ruleset, author, comment, Record::Pending(within))
            .await?;
        let deadline = Instant::now() + std::time::Duration::from_secs(u64::from(within));
        let info = match store::pending_confirm(&self.db).await {
            Ok(Some(info)) => info,
            // Recorded in the commit's transaction; only a failing
            // database gets here. The timer still runs on what we know.
            other => {
                if let Err(e) = other {
                    tracing::warn!("reading back the pending confirmation: {e}");
                }
                PendingConfirm {
                    commit: summary.commit,
                    previous_commit: None,
                    confirm_within: within,
                    deadline: String::new(),
                }
            }
        };
        let timer = arm(Arc::downgrade(me), summary.commit, deadline);
        tracing::warn!(
            commit = summary.commit,
            within,
            "firewall commit waits for confirmation; it rolls back unless confirmed"
        );
        emit(
            Severity::Notice,
            "firewall_commit_pending",
            json!({ "commit": summary.commit, "confirm_within": within }),
        );
        self.pending = Some(Pending {
            info,
            deadline,
            timer: Some(timer),
        });
        Ok(summary)
    }

    /// Keep the pending commit. Returns what was pending.
    pub async fn confirm(&mut self) -> Result<PendingView, FirewallError> {
        let view = self.pending().ok_or(FirewallError::NothingToConfirm)?;
        store::clear_pending_confirm(&self.db).await?;
        // Dropping it stops the timer.
        self.pending = None;
        tracing::info!(commit = view.commit, "firewall commit confirmed");
        emit(
            Severity::Notice,
            "firewall_confirm",
            json!({ "commit": view.commit }),
        );
        Ok(view)
    }

    /// The timer's work: if `commit` is still pending and its deadline
    /// passed, apply the ruleset before it as a new commit. Returns the
    /// rollback commit, None when there was nothing to do.
    pub async fn expire(&mut self, commit: i64) -> Result<Option<CommitSummary>, FirewallError> {
        let Some(p) = &self.pending else {
            return Ok(None);
        };
        if p.info.commit != commit || p.deadline > Instant::now() {
            return Ok(None);
        }
        let info = p.info.clone();
        let ruleset = self.ruleset_of(info.previous_commit).await?;
        let comment = format!(
            "commit #{} was not confirmed within {} s: back to {}",
            info.commit,
            info.confirm_within,
            describe(info.previous_commit)
        );
        let summary = self
            .commit_as(ruleset, ROLLBACK_AUTHOR, &comment, Record::Resolving)
            .await?;
        // The timer is the caller: taking it out must not abort it.
        if let Some(mut p) = self.pending.take() {
            p.timer = None;
        }
        tracing::warn!(
            commit = summary.commit,
            unconfirmed = info.commit,
            "firewall rolled back: {comment}"
        );
        emit(
            Severity::Warning,
            "firewall_rollback",
            json!({ "commit": summary.commit, "unconfirmed": info.commit, "reason": comment }),
        );
        Ok(Some(summary))
    }

    /// Apply the ruleset of commit `id` as a new commit. The candidate
    /// becomes that ruleset too (as `apply` does), so the next commit does
    /// not quietly undo the rollback.
    pub async fn rollback_to(
        &mut self,
        id: i64,
        author: &str,
    ) -> Result<CommitSummary, FirewallError> {
        self.refuse_if_pending()?;
        let (_, ruleset) = store::commit(&self.db, id)
            .await?
            .ok_or(FirewallError::UnknownCommit(id))?;
        let stored = store::replace_candidate(&self.db, &ruleset).await?;
        self.commit(stored, author, &format!("rollback to #{id}"))
            .await
    }

    /// Daemon start: a commit still pending in the database was never
    /// confirmed, and its timer died with the daemon that armed it. Restore
    /// the ruleset before it, recorded as a rollback commit. Returns that
    /// commit, None when nothing was pending.
    pub(super) async fn restore_unconfirmed(&mut self) -> Result<Option<i64>, FirewallError> {
        let Some(info) = store::pending_confirm(&self.db).await? else {
            return Ok(None);
        };
        let ruleset = self.ruleset_of(info.previous_commit).await?;
        let comment = format!(
            "commit #{} was still waiting for confirmation when the daemon stopped: back to {}",
            info.commit,
            describe(info.previous_commit)
        );
        let summary = self
            .commit_as(ruleset, ROLLBACK_AUTHOR, &comment, Record::Resolving)
            .await?;
        tracing::warn!(
            commit = summary.commit,
            unconfirmed = info.commit,
            "firewall: {comment}"
        );
        emit(
            Severity::Warning,
            "firewall_rollback",
            json!({ "commit": summary.commit, "unconfirmed": info.commit, "reason": comment }),
        );
        Ok(Some(summary.commit))
    }

    /// The ruleset of commit `id`; the empty ruleset for None (or for a
    /// commit that vanished from the history).
    async fn ruleset_of(&self, id: Option<i64>) -> Result<Ruleset, FirewallError> {
        let Some(id) = id else {
            return Ok(Ruleset::default());
        };
        Ok(store::commit(&self.db, id)
            .await?
            .map(|(_, rs)| rs)
            .unwrap_or_default())
    }
}

fn describe(commit: Option<i64>) -> String {
    match commit {
        Some(id) => format!("#{id}"),
        None => "the empty ruleset".to_owned(),
    }
}

/// The expiry timer of pending commit `commit`. It holds the firewall
/// weakly, so a dropped firewall ends it; a rollback that fails (the
/// dataplane refused) is tried again every [`RETRY`].
fn arm(fw: Weak<tokio::sync::Mutex<Firewall>>, commit: i64, deadline: Instant) -> AbortHandle {
    tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        loop {
            let Some(shared) = fw.upgrade() else { return };
            let mut guard = shared.lock().await;
            match guard.expire(commit).await {
                Ok(_) => return,
                Err(e) => tracing::error!(
                    commit,
                    "rolling back an unconfirmed firewall commit failed; retrying: {e}"
                ),
            }
            drop(guard);
            drop(shared);
            tokio::time::sleep(RETRY).await;
        }
    })
    .abort_handle()
}
