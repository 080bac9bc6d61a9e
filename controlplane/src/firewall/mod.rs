//! The stateful firewall's control plane.
//!
//! - `rule`: the rule model and its validation.
//! - `compile`: ruleset -> per-field bitmaps (pure), with the linear
//!   reference classifier it is tested against.
//! - `store`: candidate, active ruleset and commit history in SQLite.
//! - `file`: the declarative ruleset file (`xdpgate acl apply`).
//! - `install`: writes a compiled ruleset into the inactive generation of the
//!   maps and flips the generation index.
pub mod compile;
mod confirm;
pub mod file;
pub mod reference;
pub mod rule;
pub mod store;
#[doc(hidden)]
pub mod testgen;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dataplane_common::{FW_CHAINS, FW_MAX_RULES};
use serde::Serialize;
use sqlx::SqlitePool;

pub use self::confirm::{MAX_CONFIRM_WITHIN, PendingView, ROLLBACK_AUTHOR, SharedFirewall};
use self::{
    compile::{CompileError, Compiled},
    rule::{Chain, Problem, Ruleset},
    store::StoreError,
};
use crate::dataplane::{Count, Dataplane, DataplaneError, InstallStats, RcuBarrier};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("writing the ruleset into the dataplane failed: {0}")]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the dataplane lock is poisoned (a thread panicked holding it)")]
    Poisoned,
    #[error("waiting for packets to leave the old ruleset failed: {0}")]
    Barrier(#[source] std::io::Error),
    /// A commit is waiting for confirmation: nothing else may commit.
    #[error(
        "commit #{commit} is waiting for confirmation ({seconds_left} s left): confirm it \
         (POST /api/v1/firewall/confirm) or let it roll back, then commit again"
    )]
    ConfirmPending { commit: i64, seconds_left: u64 },
    #[error("no commit is waiting for confirmation")]
    NothingToConfirm,
    #[error("confirm_within must be 1..={max} seconds, not {0}", max = MAX_CONFIRM_WITHIN)]
    ConfirmWithin(u32),
    #[error("commit #{0} does not exist")]
    UnknownCommit(i64),
}

impl FirewallError {
    /// The ruleset's own problems, when that is what is wrong.
    pub fn problems(&self) -> Option<Vec<Problem>> {
        match self {
            FirewallError::Compile(CompileError::Invalid(p)) => Some(p.clone()),
            FirewallError::Compile(CompileError::UnknownInterface { rule, name }) => {
                Some(vec![Problem {
                    rule: Some(*rule),
                    message: format!("interface {name:?} does not exist"),
                }])
            }
            _ => None,
        }
    }

    /// Whether the operator's input is at fault (400) rather than the box.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            FirewallError::Compile(_) | FirewallError::ConfirmWithin(_)
        )
    }

    /// Whether the request conflicts with the firewall's state (409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            FirewallError::ConfirmPending { .. } | FirewallError::NothingToConfirm
        )
    }

    /// Whether the request names something that does not exist (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FirewallError::UnknownCommit(_))
    }
}

/// The ruleset packets are classified with.
#[derive(Debug, Clone)]
pub struct Active {
    pub commit: i64,
    pub ruleset: Ruleset,
    /// Per chain, per position: the rule's database id.
    positions: [Vec<u32>; 2],
    generation: u32,
}

/// What a commit did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommitSummary {
    pub commit: i64,
    pub generation: u32,
    /// Enabled rules compiled, per chain.
    pub forward_rules: usize,
    pub input_rules: usize,
    pub bitmaps: usize,
    pub prefixes: usize,
    pub compile_ms: f64,
    pub install_ms: f64,
}

/// Packets and bytes per rule (by database id) and per chain policy,
/// accumulated over every commit since the daemon started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleCounters {
    pub rules: HashMap<u32, Count>,
    pub forward_policy: Count,
    pub input_policy: Count,
}

/// The firewall service: the one writer of the firewall maps.
pub struct Firewall {
    db: SqlitePool,
    dataplane: Arc<Mutex<Dataplane>>,
    active: Option<Active>,
    carry: RuleCounters,
    /// Waits until no packet can still be using the generation a flip
    /// left: the next write to it, or the last read of its counters, is
    /// then safe.
    barrier: Arc<RcuBarrier>,
    /// A commit waiting for confirmation (`confirm`).
    pending: Option<confirm::Pending>,
}

struct Applied {
    generation: u32,
    positions: [Vec<u32>; 2],
    stats: InstallStats,
    rules: [usize; 2],
    compile: Duration,
    install: Duration,
}

impl Firewall {
    pub fn new(db: SqlitePool, dataplane: Arc<Mutex<Dataplane>>) -> Self {
        let barrier = match dataplane.lock() {
            Ok(dp) => dp.firewall().barrier(),
            Err(poisoned) => poisoned.into_inner().firewall().barrier(),
        };
        Self {
            db,
            dataplane,
            active: None,
            carry: RuleCounters::default(),
            barrier,
            pending: None,
        }
    }

    pub fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    /// Apply the last committed ruleset from the database (daemon start,
    /// before any interface is attached). Returns its commit id.
    /// A commit still waiting for confirmation when the daemon stopped is
    /// not trusted: the ruleset before it is restored, as a new commit.
    pub async fn restore(&mut self) -> Result<Option<i64>, FirewallError> {
        if let Some(commit) = self.restore_unconfirmed().await? {
            return Ok(Some(commit));
        }
        let Some((commit, ruleset)) = store::active(&self.db).await? else {
            return Ok(None);
        };
        let applied = self.apply(&ruleset).await?;
        self.activate(commit, ruleset, applied);
        Ok(Some(commit))
    }

    /// Compile `ruleset`, write it into the inactive generation, flip, and
    /// record it as the active commit. A ruleset that does not compile
    /// leaves the running one untouched; so does a failed install (the
    /// inactive generation is not looked at) and a failed database write
    /// (flipped back). Refused while a commit waits for confirmation.
    pub async fn commit(
        &mut self,
        ruleset: Ruleset,
        author: &str,
        comment: &str,
    ) -> Result<CommitSummary, FirewallError> {
        self.refuse_if_pending()?;
        self.commit_as(ruleset, author, comment, confirm::Record::Plain)
            .await
    }

    /// [`Firewall::commit`]'s body; `record` says how the database
    /// records it (plain, waiting for confirmation, or resolving one).
    async fn commit_as(
        &mut self,
        ruleset: Ruleset,
        author: &str,
        comment: &str,
        record: confirm::Record,
    ) -> Result<CommitSummary, FirewallError> {
        let previous = self.active.as_ref().map(|a| a.generation);
        let applied = self.apply(&ruleset).await?;
        let commit = match record.write(&self.db, &ruleset, author, comment).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(generation) = previous {
                    self.flip(generation)?;
                }
                return Err(e.into());
            }
        };
        let summary = CommitSummary {
            commit,
            generation: applied.generation,
            forward_rules: applied.rules[0],
            input_rules: applied.rules[1],
            bitmaps: applied.stats.bitmaps,
            prefixes: applied.stats.prefixes,
            compile_ms: applied.compile.as_secs_f64() * 1e3,
            install_ms: applied.install.as_secs_f64() * 1e3,
        };
        tracing::info!(
            commit,
            generation = applied.generation,
            forward_rules = applied.rules[0],
            input_rules = applied.rules[1],
            bitmaps = applied.stats.bitmaps,
            "firewall ruleset committed by {author}"
        );
        crate::events::emit(
            crate::events::Severity::Notice,
            "firewall_commit",
            serde_json::json!({
                "commit": commit,
                "author": author,
                "comment": comment,
                "generation": applied.generation,
                "forward_rules": applied.rules[0],
                "input_rules": applied.rules[1],
            }),
        );
        self.activate(commit, ruleset, applied);
        Ok(summary)
    }

    fn activate(&mut self, commit: i64, ruleset: Ruleset, applied: Applied) {
        self.active = Some(Active {
            commit,
            ruleset,
            positions: applied.positions,
            generation: applied.generation,
        });
    }

    /// Wait for an RCU grace period after a flip: every packet that read
    /// the old generation index has left the program. Without this a
    /// packet stalled mid-run (a descheduled vCPU) could read a generation
    /// that the next commit is rewriting.
    async fn wait_for_packets(&self) -> Result<(), FirewallError> {
        let barrier = self.barrier.clone();
        tokio::task::spawn_blocking(move || barrier.wait())
            .await
            .map_err(|_| FirewallError::Poisoned)?
            .map_err(FirewallError::Barrier)
    }

    /// Compile, install into the inactive generation, flip; then fold the
    /// old generation's counters into the carried totals.
    async fn apply(&mut self, ruleset: &Ruleset) -> Result<Applied, FirewallError> {
        let t = Instant::now();
        let (target, compiled) = {
            let dp = self.dataplane.lock().map_err(|_| FirewallError::Poisoned)?;
            let fw = dp.firewall();
            let target = 1 - fw.active_generation()?;
            let resolve = |name: &str| crate::dataplane::ifindex(name).ok();
            let compiled = compile::compile(
                ruleset,
                &resolve,
                fw.bitmap_base(target),
                fw.bitmaps_per_generation(),
            )?;
            (target, compiled)
        };
        let compile_time = t.elapsed();
        let t = Instant::now();
        let stats = {
            let mut dp = self.dataplane.lock().map_err(|_| FirewallError::Poisoned)?;
            let stats = dp.firewall_mut().install(target, &compiled)?;
            dp.firewall_mut().flip(target)?;
            stats
        };
        let install_time = t.elapsed();
        // Packets that read the old index finish before its counters are
        // read for the last time and before the next commit rewrites it.
        self.wait_for_packets().await?;
        self.harvest()?;
        Ok(Applied {
            generation: target,
            positions: positions(&compiled),
            stats,
            rules: [
                compiled.chains[0].rules.len(),
                compiled.chains[1].rules.len(),
            ],
            compile: compile_time,
            install: install_time,
        })
    }

    fn flip(&mut self, generation: u32) -> Result<(), FirewallError> {
        let mut dp = self.dataplane.lock().map_err(|_| FirewallError::Poisoned)?;
        dp.firewall_mut().flip(generation)?;
        Ok(())
    }

    /// Add the counters of the generation that just stopped being active
    /// to the carried totals (they are zeroed when it is next written).
    fn harvest(&mut self) -> Result<(), FirewallError> {
        let Some(old) = &self.active else {
            return Ok(());
        };
        let dp = self.dataplane.lock().map_err(|_| FirewallError::Poisoned)?;
        let fw = dp.firewall();
        for chain in Chain::ALL {
            let table = old.generation * FW_CHAINS + chain.index();
            for (position, id) in old.positions[chain.index() as usize].iter().enumerate() {
                let c = fw.rule_counter(table, position as u32)?;
                add(self.carry.rules.entry(*id).or_default(), c);
            }
            let policy = fw.rule_counter(table, FW_MAX_RULES)?;
            add(policy_of(&mut self.carry, chain), policy);
        }
        Ok(())
    }

    /// Counters of the active ruleset's rules and policies, including what
    /// they counted under earlier commits.
    pub fn counters(&self) -> Result<RuleCounters, FirewallError> {
        let mut out = self.carry.clone();
        let Some(active) = &self.active else {
            return Ok(out);
        };
        let dp = self.dataplane.lock().map_err(|_| FirewallError::Poisoned)?;
        let fw = dp.firewall();
        for chain in Chain::ALL {
            let table = active.generation * FW_CHAINS + chain.index();
            for (position, id) in active.positions[chain.index() as usize].iter().enumerate() {
                add(
                    out.rules.entry(*id).or_default(),
                    fw.rule_counter(table, position as u32)?,
                );
            }
            add(
                policy_of(&mut out, chain),
                fw.rule_counter(table, FW_MAX_RULES)?,
            );
        }
        Ok(out)
    }
}

fn positions(compiled: &Compiled) -> [Vec<u32>; 2] {
    [
        compiled.chains[0].rules.iter().map(|r| r.id).collect(),
        compiled.chains[1].rules.iter().map(|r| r.id).collect(),
    ]
}

fn policy_of(c: &mut RuleCounters, chain: Chain) -> &mut Count {
    match chain {
        Chain::Forward => &mut c.forward_policy,
        Chain::Input => &mut c.input_policy,
    }
}

fn add(acc: &mut Count, c: Count) {
    acc.packets += c.packets;
    acc.bytes += c.bytes;
}
