//! The firewall's state in SQLite: the candidate ruleset (what the next
//! commit applies), and the history of commits with the active one marked.
//!
//! The candidate is kept normalized (a row per rule, set and prefix) so it
//! can be edited piecemeal later; each commit keeps a full JSON snapshot of
//! what it applied, so history never depends on replaying edits. Every
//! write is one transaction: a crash leaves the previous candidate and the
//! previous active commit as they were.
use std::collections::{BTreeMap, HashMap, HashSet};

use ipnet::IpNet;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection, SqlitePool, sqlite::SqliteRow};

use super::rule::{
    AddrMatch, AddressSet, Chain, CtState, IcmpMatch, Policies, PortRange, Proto, Rule, Ruleset,
    TcpFlags, Verdict,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("firewall database query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value no longer parses: the database was edited by hand or
    /// written by a newer xdpgate.
    #[error("the firewall database holds an unreadable {what} {value:?}: {reason}")]
    Corrupt {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("commit {id}: {what} is not readable JSON: {source}")]
    Json {
        id: i64,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("rule id {0} does not fit the rule model's 32 bits")]
    IdRange(i64),
}

/// A commit without its snapshot: what history lists show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CommitInfo {
    pub id: i64,
    /// UTC, RFC 3339 with milliseconds.
    pub created_at: String,
    pub author: String,
    pub comment: String,
    pub active: bool,
    /// Rules per chain, disabled ones included.
    pub forward_rules: u32,
    pub input_rules: u32,
    pub sets: u32,
    /// Prefixes over all sets.
    pub prefixes: u64,
    /// What changed against the commit that was active before this one.
    pub diff: Vec<String>,
}

/// Prefix rows per INSERT statement (each binds two of SQLite's 32766
/// variables). Measured with `store_100k_prefix_set_quickly`, release
/// build: one row per statement takes 1.1 s for 100k prefixes, batches of
/// 100 take 95 ms, of 1000 and more 60-90 ms.
const PREFIX_ROWS_PER_INSERT: usize = 1000;

/// The candidate ruleset: rules in (chain, position) order with their ids.
/// Before anything was stored it is the empty ruleset.
pub async fn candidate(pool: &SqlitePool) -> Result<Ruleset, StoreError> {
    let mut conn = pool.acquire().await?;
    read_candidate(&mut conn).await
}

/// A transaction that writes. `BEGIN IMMEDIATE` takes the write lock at
/// once, waiting (the busy timeout) while another connection holds it. A
/// plain (deferred) `BEGIN` that reads first fails instead: in WAL mode a
/// read snapshot older than another connection's commit cannot be upgraded
/// to a write (SQLITE_BUSY_SNAPSHOT, "database is locked"), which made
/// concurrent writes (a static route while a rollback committed) answer
/// 500 (<https://www.sqlite.org/lang_transaction.html#deferred_immediate_and_exclusive_transactions>).
async fn write_tx(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Replace the whole candidate with `rs`, in one transaction, and return
/// it as stored (with ids). A rule keeps its id when that id is in the
/// candidate; a rule without one (id 0, as from a ruleset file) takes the
/// id of an identical candidate rule not otherwise claimed, so re-applying
/// a file keeps the ids (and so the counters' history) of rules that did
/// not change. Every other rule gets a fresh id, never one used before.
pub async fn replace_candidate(pool: &SqlitePool, rs: &Ruleset) -> Result<Ruleset, StoreError> {
    let mut tx = write_tx(pool).await?;
    let stored = write_candidate(&mut tx, rs).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Record `rs` as applied and make it the active commit, in one
/// transaction; the diff is against the commit active until now. Returns
/// the new commit's id.
pub async fn record_commit(
    pool: &SqlitePool,
    rs: &Ruleset,
    author: &str,
    comment: &str,
) -> Result<i64, StoreError> {
    let mut tx = write_tx(pool).await?;
    let id = insert_commit(&mut tx, rs, author, comment).await?;
    tx.commit().await?;
    Ok(id)
}

/// The active commit's id and ruleset; None before the first commit.
pub async fn active(pool: &SqlitePool) -> Result<Option<(i64, Ruleset)>, StoreError> {
    let mut conn = pool.acquire().await?;
    read_active(&mut conn).await
}

/// Commits newest first, at most `limit`, only those older than `before`
/// when given (to page: pass the last id of the previous page).
pub async fn commits(
    pool: &SqlitePool,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<CommitInfo>, StoreError> {
    let rows = sqlx::query(concat!(
        "select ",
        commit_info_columns!(),
        " from firewall_commit
         where firewall_commit_id < ?1 order by firewall_commit_id desc limit ?2"
    ))
    .bind(before.unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(commit_info).collect()
}

/// One commit with its snapshot.
pub async fn commit(
    pool: &SqlitePool,
    id: i64,
) -> Result<Option<(CommitInfo, Ruleset)>, StoreError> {
    let row = sqlx::query(concat!(
        "select ",
        commit_info_columns!(),
        ", ruleset from firewall_commit where firewall_commit_id = ?1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let info = commit_info(&row)?;
    let rs = snapshot(id, row.get("ruleset"))?;
    Ok(Some((info, rs)))
}

/// Column lists as macros: SQL built with `concat!` stays a `&'static str`,
/// which sqlx accepts without an audit wrapper.
macro_rules! commit_info_columns {
    () => {
        "firewall_commit_id, created_at, author, comment, active, \
         forward_rules, input_rules, sets, prefixes, diff"
    };
}
use commit_info_columns;

macro_rules! rule_columns {
    () => {
        "firewall_rule_id, chain, position, enabled, in_iface, out_iface, \
         src, dst, proto, sport, dport, icmp, tcp_flags, state, action, log, comment"
    };
}

fn commit_info(row: &SqliteRow) -> Result<CommitInfo, StoreError> {
    let id: i64 = row.get("firewall_commit_id");
    let diff: String = row.get("diff");
    let count = |col: &str| u32::try_from(row.get::<i64, _>(col)).unwrap_or(u32::MAX);
    Ok(CommitInfo {
        id,
        created_at: row.get("created_at"),
        author: row.get("author"),
        comment: row.get("comment"),
        active: row.get("active"),
        forward_rules: count("forward_rules"),
        input_rules: count("input_rules"),
        sets: count("sets"),
        prefixes: u64::try_from(row.get::<i64, _>("prefixes")).unwrap_or(0),
        diff: serde_json::from_str(&diff).map_err(|source| StoreError::Json {
            id,
            what: "the diff",
            source,
        })?,
    })
}

fn snapshot(id: i64, json: String) -> Result<Ruleset, StoreError> {
    serde_json::from_str(&json).map_err(|source| StoreError::Json {
        id,
        what: "the ruleset snapshot",
        source,
    })
}

async fn read_active(conn: &mut SqliteConnection) -> Result<Option<(i64, Ruleset)>, StoreError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("select firewall_commit_id, ruleset from firewall_commit where active = 1")
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(id, json)| Ok((id, snapshot(id, json)?)))
        .transpose()
}

/// The body of [`record_commit`], on a connection the caller's transaction
/// owns (tests drop that transaction to play a crash).
async fn insert_commit(
    conn: &mut SqliteConnection,
    rs: &Ruleset,
    author: &str,
    comment: &str,
) -> Result<i64, StoreError> {
    let previous = read_active(conn)
        .await?
        .map(|(_, rs)| rs)
        .unwrap_or_default();
    let lines = diff(&previous, rs);
    let ruleset = to_json(rs, "the ruleset snapshot")?;
    let diff_json = to_json(&lines, "the diff")?;
    let count = |c: Chain| rs.rules.iter().filter(|r| r.chain == c).count() as i64;
    let prefixes: usize = rs.sets.iter().map(|s| s.prefixes.len()).sum();
    sqlx::query("update firewall_commit set active = 0 where active = 1")
        .execute(&mut *conn)
        .await?;
    let id: i64 = sqlx::query_scalar(
        "insert into firewall_commit
           (author, comment, ruleset, diff, forward_rules, input_rules, sets, prefixes, active)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)
         returning firewall_commit_id",
    )
    .bind(author)
    .bind(comment)
    .bind(ruleset)
    .bind(diff_json)
    .bind(count(Chain::Forward))
    .bind(count(Chain::Input))
    .bind(rs.sets.len() as i64)
    .bind(prefixes as i64)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

fn to_json<T: Serialize>(v: &T, what: &'static str) -> Result<String, StoreError> {
    // The commit has no id yet; 0 names "the one being written".
    serde_json::to_string(v).map_err(|source| StoreError::Json {
        id: 0,
        what,
        source,
    })
}

// ---- the candidate -------------------------------------------------------

async fn read_candidate(conn: &mut SqliteConnection) -> Result<Ruleset, StoreError> {
    Ok(Ruleset {
        policy: read_policy(conn).await?,
        rules: read_rules(conn).await?,
        sets: read_sets(conn).await?,
    })
}

async fn read_policy(conn: &mut SqliteConnection) -> Result<Policies, StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as("select chain, verdict from firewall_policy")
        .fetch_all(&mut *conn)
        .await?;
    let mut policy = Policies::default();
    for (chain, verdict) in rows {
        let verdict = from_text::<Verdict>("policy verdict", &verdict)?;
        match from_text::<Chain>("policy chain", &chain)? {
            Chain::Forward => policy.forward = verdict,
            Chain::Input => policy.input = verdict,
        }
    }
    Ok(policy)
}

async fn read_rules(conn: &mut SqliteConnection) -> Result<Vec<Rule>, StoreError> {
    // Chains in `Chain::ALL` order, which is also their names' order.
    let rows = sqlx::query(concat!(
        "select ",
        rule_columns!(),
        " from firewall_rule order by chain, position"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(rule_from_row).collect()
}

fn rule_from_row(row: &SqliteRow) -> Result<Rule, StoreError> {
    let id: i64 = row.get("firewall_rule_id");
    let text = |col: &str| row.get::<Option<String>, _>(col);
    let field = |col: &'static str| Field {
        col,
        text: text(col),
    };
    let state = match text("state") {
        None => Default::default(),
        Some(s) => s
            .split(',')
            .map(|v| from_text::<CtState>("state", v))
            .collect::<Result<_, _>>()?,
    };
    Ok(Rule {
        id: u32::try_from(id).map_err(|_| StoreError::IdRange(id))?,
        chain: from_text("chain", &row.get::<String, _>("chain"))?,
        enabled: row.get("enabled"),
        in_iface: text("in_iface"),
        out_iface: text("out_iface"),
        src: field("src").parse(parse_addr)?,
        dst: field("dst").parse(parse_addr)?,
        proto: field("proto").parse(str::parse::<Proto>)?,
        sport: field("sport").parse(str::parse::<PortRange>)?,
        dport: field("dport").parse(str::parse::<PortRange>)?,
        icmp: field("icmp").parse(|s| IcmpMatch::try_from(s.to_owned()))?,
        tcp_flags: field("tcp_flags").parse(str::parse::<TcpFlags>)?,
        state,
        action: from_text("action", &row.get::<String, _>("action"))?,
        log: row.get("log"),
        comment: row.get("comment"),
    })
}

/// An optional text column, parsed with the rule model's own parser.
struct Field {
    col: &'static str,
    text: Option<String>,
}

impl Field {
    fn parse<T>(self, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, StoreError> {
        self.text
            .map(|v| {
                parse(&v).map_err(|reason| StoreError::Corrupt {
                    what: self.col,
                    value: v.clone(),
                    reason,
                })
            })
            .transpose()
    }
}

/// As `AddrMatch::from_str`, but a prefix with host bits is read back as
/// stored: refusing those is validation's job, not the store's, and a
/// stored candidate must always be readable.
fn parse_addr(s: &str) -> Result<AddrMatch, String> {
    s.parse::<AddrMatch>()
        .or_else(|e| s.parse::<IpNet>().map(AddrMatch::Prefix).map_err(|_| e))
}

async fn read_sets(conn: &mut SqliteConnection) -> Result<Vec<AddressSet>, StoreError> {
    let sets: Vec<(i64, String, String)> =
        sqlx::query_as("select firewall_set_id, name, comment from firewall_set order by position")
            .fetch_all(&mut *conn)
            .await?;
    let mut prefixes: HashMap<i64, Vec<IpNet>> = HashMap::new();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "select firewall_set_id, prefix from firewall_set_prefix order by firewall_set_id, position",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (set, prefix) in rows {
        let net = prefix
            .parse()
            .map_err(|e: ipnet::AddrParseError| StoreError::Corrupt {
                what: "set prefix",
                value: prefix.clone(),
                reason: e.to_string(),
            })?;
        prefixes.entry(set).or_default().push(net);
    }
    Ok(sets
        .into_iter()
        .map(|(id, name, comment)| AddressSet {
            name,
            prefixes: prefixes.remove(&id).unwrap_or_default(),
            comment,
        })
        .collect())
}

/// The body of [`replace_candidate`], on a connection the caller's
/// transaction owns. Returns what [`candidate`] would now read, built in
/// memory: reading a large set back costs more than writing it.
async fn write_candidate(conn: &mut SqliteConnection, rs: &Ruleset) -> Result<Ruleset, StoreError> {
    write_policy(conn, &rs.policy).await?;
    let ids = write_rules(conn, &rs.rules).await?;
    write_sets(conn, &rs.sets).await?;
    let mut rules: Vec<Rule> = rs
        .rules
        .iter()
        .zip(ids)
        .map(|(r, id)| Rule { id, ..r.clone() })
        .collect();
    // Stable: the (chain, position) order `read_rules` gives.
    rules.sort_by_key(|r| r.chain);
    Ok(Ruleset {
        policy: rs.policy,
        rules,
        sets: rs.sets.clone(),
    })
}

async fn write_policy(conn: &mut SqliteConnection, policy: &Policies) -> Result<(), StoreError> {
    for chain in Chain::ALL {
        sqlx::query(
            "insert into firewall_policy (chain, verdict) values (?1, ?2)
             on conflict (chain) do update set verdict = excluded.verdict,
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             where verdict != excluded.verdict",
        )
        .bind(chain.name())
        .bind(policy.of(chain).name())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A stored rule's timestamps, carried over when it keeps its id.
struct Stamps {
    created_at: String,
    updated_at: String,
    rule: Rule,
}

/// Returns each rule's id, in `rules` order.
async fn write_rules(conn: &mut SqliteConnection, rules: &[Rule]) -> Result<Vec<u32>, StoreError> {
    let old_rows = sqlx::query(concat!(
        "select ",
        rule_columns!(),
        ", created_at, updated_at from firewall_rule order by chain, position"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut old = Vec::with_capacity(old_rows.len());
    for row in &old_rows {
        old.push(Stamps {
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            rule: rule_from_row(row)?,
        });
    }
    let ids = assign_ids(&old.iter().map(|s| &s.rule).collect::<Vec<_>>(), rules);
    let by_id: HashMap<u32, &Stamps> = old.iter().map(|s| (s.rule.id, s)).collect();
    // Rewriting every row is simpler than shuffling positions under the
    // (chain, position) unique constraint, and a chain holds at most a few
    // thousand rules.
    sqlx::query("delete from firewall_rule")
        .execute(&mut *conn)
        .await?;
    let mut next_position: HashMap<Chain, i64> = HashMap::new();
    let mut stored = Vec::with_capacity(rules.len());
    for (rule, id) in rules.iter().zip(ids) {
        let position = next_position.entry(rule.chain).or_default();
        let kept = id.and_then(|id| by_id.get(&id));
        let unchanged = kept.is_some_and(|s| same_content(&s.rule, rule));
        let id = insert_rule(
            conn,
            rule,
            id,
            *position,
            kept.map(|s| s.created_at.as_str()),
            unchanged
                .then(|| kept.map(|s| s.updated_at.as_str()))
                .flatten(),
        )
        .await?;
        stored.push(u32::try_from(id).map_err(|_| StoreError::IdRange(id))?);
        *position += 1;
    }
    Ok(stored)
}

async fn insert_rule(
    conn: &mut SqliteConnection,
    rule: &Rule,
    id: Option<u32>,
    position: i64,
    created_at: Option<&str>,
    updated_at: Option<&str>,
) -> Result<i64, StoreError> {
    let state = (!rule.state.is_empty())
        .then(|| rule.state.iter().map(to_text).collect::<Vec<_>>().join(","));
    let id = sqlx::query_scalar(
        "insert into firewall_rule (firewall_rule_id, chain, position, enabled, in_iface,
           out_iface, src, dst, proto, sport, dport, icmp, tcp_flags, state, action, comment,
           created_at, updated_at, log)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
           coalesce(?17, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
           coalesce(?18, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), ?19)
         returning firewall_rule_id",
    )
    .bind(id.map(i64::from))
    .bind(rule.chain.name())
    .bind(position)
    .bind(rule.enabled)
    .bind(rule.in_iface.as_deref())
    .bind(rule.out_iface.as_deref())
    .bind(rule.src.as_ref().map(ToString::to_string))
    .bind(rule.dst.as_ref().map(ToString::to_string))
    .bind(rule.proto.map(|p| p.to_string()))
    .bind(rule.sport.map(|p| p.to_string()))
    .bind(rule.dport.map(|p| p.to_string()))
    .bind(rule.icmp.as_ref().map(|m| m.text.clone()))
    .bind(rule.tcp_flags.map(|f| f.to_string()))
    .bind(state)
    .bind(rule.action.name())
    .bind(rule.comment.as_str())
    .bind(created_at)
    .bind(updated_at)
    .bind(rule.log)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// Which stored id each new rule keeps (None: a fresh one). First every
/// explicit id still in the candidate (once: a copied rule with a
/// duplicated id gets a fresh one), then id-less rules take identical
/// unclaimed rules' ids in order.
fn assign_ids(old: &[&Rule], new: &[Rule]) -> Vec<Option<u32>> {
    let existing: HashSet<u32> = old.iter().map(|r| r.id).collect();
    let mut claimed = HashSet::new();
    let mut ids: Vec<Option<u32>> = new
        .iter()
        .map(|r| (r.id != 0 && existing.contains(&r.id) && claimed.insert(r.id)).then_some(r.id))
        .collect();
    for (rule, id) in new.iter().zip(ids.iter_mut()) {
        if rule.id != 0 || id.is_some() {
            continue;
        }
        if let Some(twin) = old
            .iter()
            .find(|o| !claimed.contains(&o.id) && same_content(o, rule))
        {
            claimed.insert(twin.id);
            *id = Some(twin.id);
        }
    }
    ids
}

/// Equal but for the id.
fn same_content(a: &Rule, b: &Rule) -> bool {
    Rule { id: 0, ..a.clone() } == Rule { id: 0, ..b.clone() }
}

async fn write_sets(conn: &mut SqliteConnection, sets: &[AddressSet]) -> Result<(), StoreError> {
    // Prefix rows go with their set (on delete cascade), but say so rather
    // than depend on the foreign_keys pragma.
    sqlx::query("delete from firewall_set_prefix")
        .execute(&mut *conn)
        .await?;
    sqlx::query("delete from firewall_set")
        .execute(&mut *conn)
        .await?;
    for (position, set) in sets.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "insert into firewall_set (name, position, comment) values (?1, ?2, ?3)
             returning firewall_set_id",
        )
        .bind(&set.name)
        .bind(position as i64)
        .bind(&set.comment)
        .fetch_one(&mut *conn)
        .await?;
        insert_prefixes(conn, id, &set.prefixes).await?;
    }
    Ok(())
}

/// Multi-row INSERTs: one statement per row costs a round trip to SQLite's
/// worker thread each, which dominates for large sets.
async fn insert_prefixes(
    conn: &mut SqliteConnection,
    set_id: i64,
    prefixes: &[IpNet],
) -> Result<(), StoreError> {
    for (chunk_index, chunk) in prefixes.chunks(PREFIX_ROWS_PER_INSERT).enumerate() {
        let base = chunk_index * PREFIX_ROWS_PER_INSERT;
        let mut q = QueryBuilder::<Sqlite>::new(
            "insert into firewall_set_prefix (firewall_set_id, position, prefix) ",
        );
        q.push_values(chunk.iter().enumerate(), |mut row, (i, prefix)| {
            // The set id is ours, an integer: a literal saves a bound variable.
            row.push(set_id)
                .push_bind((base + i) as i64)
                .push_bind(prefix.to_string());
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// An enum's text through its serde name, so the database spells values
/// exactly as the API and the ruleset file do.
fn to_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("a unit enum serialises to a string, not {other:?}"),
    }
}

fn from_text<T: DeserializeOwned>(what: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| {
        StoreError::Corrupt {
            what,
            value: s.to_owned(),
            reason: e.to_string(),
        }
    })
}

// ---- diff ----------------------------------------------------------------

/// What a rule matches, nft-like: `in eth1 src 198.18.1.0/24 tcp dport 22`.
/// Empty for a rule that matches everything.
pub fn match_summary(rule: &Rule) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |key: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(if key.is_empty() {
                v
            } else {
                format!("{key} {v}")
            });
        }
    };
    push("in", rule.in_iface.clone());
    push("out", rule.out_iface.clone());
    push("src", rule.src.as_ref().map(ToString::to_string));
    push("dst", rule.dst.as_ref().map(ToString::to_string));
    // A protocol with a name reads as itself ("tcp dport 22"); a bare
    // number needs its key.
    push(
        "",
        rule.proto.map(|p| match p.to_string() {
            n if n.parse::<u8>().is_ok() => format!("proto {n}"),
            name => name,
        }),
    );
    push("sport", rule.sport.map(|p| p.to_string()));
    push("dport", rule.dport.map(|p| p.to_string()));
    push("type", rule.icmp.as_ref().map(|m| m.text.clone()));
    push("flags", rule.tcp_flags.map(|f| f.to_string()));
    push(
        "state",
        (!rule.state.is_empty())
            .then(|| rule.state.iter().map(to_text).collect::<Vec<_>>().join(",")),
    );
    parts.join(" ")
}

/// A rule on one line: `tcp dport 22 drop comment "ssh"` (`log drop` for a
/// logging rule), `(disabled) ` in front when it is.
pub fn rule_line(rule: &Rule) -> String {
    let mut line = String::new();
    if !rule.enabled {
        line.push_str("(disabled) ");
    }
    let matches = match_summary(rule);
    if !matches.is_empty() {
        line.push_str(&matches);
        line.push(' ');
    }
    // nft's order: `log` before the verdict it logs.
    if rule.log {
        line.push_str("log ");
    }
    line.push_str(rule.action.name());
    if !rule.comment.is_empty() {
        // Debug quoting: a comment's newline must not split a diff line.
        line.push_str(&format!(" comment {:?}", rule.comment));
    }
    line
}

/// Above this many cells the rule diff stops looking for the longest
/// common subsequence and lists the differing middle as removed + added
/// (two full 4096-rule chains would otherwise need 16M cells).
const LCS_MAX_CELLS: usize = 4_000_000;

/// What changed from `old` to `new`, one line each: policies (`~ policy
/// forward: accept -> drop`), sets (`+ set @x (3 prefixes)`, `~ set @x: +2
/// -1 prefixes (4 now)`), then rules per chain, numbered by position from 1
/// (`- forward #3: tcp dport 22 drop`, `+ ...`; a rule that kept its id
/// but moved or changed is one `~` line).
pub fn diff(old: &Ruleset, new: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for chain in Chain::ALL {
        let (a, b) = (old.policy.of(chain), new.policy.of(chain));
        if a != b {
            out.push(format!("~ policy {chain}: {a} -> {b}"));
        }
    }
    diff_sets(&old.sets, &new.sets, &mut out);
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for chain in Chain::ALL {
        let a: Vec<&Rule> = old.rules.iter().filter(|r| r.chain == chain).collect();
        let b: Vec<&Rule> = new.rules.iter().filter(|r| r.chain == chain).collect();
        let (gone, new_here) = rule_changes(&a, &b);
        removed.extend(gone.into_iter().map(|i| (chain, i + 1, a[i])));
        added.extend(new_here.into_iter().map(|i| (chain, i + 1, b[i])));
    }
    // A removal and an addition of the same id are one change.
    let added_ids: HashMap<u32, usize> = added
        .iter()
        .enumerate()
        .filter(|(_, (_, _, r))| r.id != 0)
        .map(|(i, (_, _, r))| (r.id, i))
        .collect();
    let mut paired = HashSet::new();
    for (chain, pos, rule) in &removed {
        match added_ids.get(&rule.id).filter(|_| rule.id != 0) {
            Some(&j) => {
                paired.insert(j);
                let (new_chain, new_pos, new_rule) = added[j];
                let place = if (*chain, *pos) == (new_chain, new_pos) {
                    format!("{chain} #{pos}")
                } else if *chain == new_chain {
                    format!("{chain} #{pos} -> #{new_pos}")
                } else {
                    format!("{chain} #{pos} -> {new_chain} #{new_pos}")
                };
                let (was, is) = (rule_line(rule), rule_line(new_rule));
                if was == is {
                    out.push(format!("~ {place}: {is}"));
                } else {
                    out.push(format!("~ {place}: {was} -> {is}"));
                }
            }
            None => out.push(format!("- {chain} #{pos}: {}", rule_line(rule))),
        }
    }
    for (j, (chain, pos, rule)) in added.iter().enumerate() {
        if !paired.contains(&j) {
            out.push(format!("+ {chain} #{pos}: {}", rule_line(rule)));
        }
    }
    out
}

fn diff_sets(old: &[AddressSet], new: &[AddressSet], out: &mut Vec<String>) {
    let old_by_name: BTreeMap<&str, &AddressSet> =
        old.iter().map(|s| (s.name.as_str(), s)).collect();
    let new_by_name: BTreeMap<&str, &AddressSet> =
        new.iter().map(|s| (s.name.as_str(), s)).collect();
    let count = |n: usize| format!("{n} prefix{}", if n == 1 { "" } else { "es" });
    for (name, set) in &old_by_name {
        if !new_by_name.contains_key(name) {
            out.push(format!("- set @{name} ({})", count(set.prefixes.len())));
        }
    }
    for (name, set) in &new_by_name {
        let Some(before) = old_by_name.get(name) else {
            out.push(format!("+ set @{name} ({})", count(set.prefixes.len())));
            continue;
        };
        let was: HashSet<&IpNet> = before.prefixes.iter().collect();
        let is: HashSet<&IpNet> = set.prefixes.iter().collect();
        let plus: Vec<&IpNet> = set.prefixes.iter().filter(|p| !was.contains(p)).collect();
        let minus: Vec<&IpNet> = before.prefixes.iter().filter(|p| !is.contains(p)).collect();
        if !plus.is_empty() || !minus.is_empty() {
            let mut line = format!(
                "~ set @{name}: +{} -{} prefixes ({} now)",
                plus.len(),
                minus.len(),
                set.prefixes.len()
            );
            // A handful of changes are worth naming; thousands are not.
            if plus.len() + minus.len() <= 8 {
                let named: Vec<String> = plus
                    .iter()
                    .map(|p| format!("+{p}"))
                    .chain(minus.iter().map(|p| format!("-{p}")))
                    .collect();
                line.push_str(&format!(": {}", named.join(" ")));
            }
            out.push(line);
        }
        if before.comment != set.comment {
            out.push(format!(
                "~ set @{name} comment: {:?} -> {:?}",
                before.comment, set.comment
            ));
        }
    }
}

/// Indices of `a` not kept and of `b` new, by the longest common
/// subsequence of rule lines (ids ignored: an identical rule with a fresh
/// id is not a change).
fn rule_changes(a: &[&Rule], b: &[&Rule]) -> (Vec<usize>, Vec<usize>) {
    let la: Vec<String> = a.iter().map(|r| rule_line(r)).collect();
    let lb: Vec<String> = b.iter().map(|r| rule_line(r)).collect();
    let head = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    let tail = la[head..]
        .iter()
        .rev()
        .zip(lb[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&la[head..la.len() - tail], &lb[head..lb.len() - tail]);
    let (mut gone, mut new) = (Vec::new(), Vec::new());
    if ma.len() * mb.len() > LCS_MAX_CELLS {
        gone.extend(head..head + ma.len());
        new.extend(head..head + mb.len());
        return (gone, new);
    }
    // lcs[i][j]: LCS length of ma[i..] and mb[j..].
    let w = mb.len() + 1;
    let mut lcs = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            lcs[i * w + j] = if ma[i] == mb[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            i += 1;
            j += 1;
        } else if j < mb.len() && (i == ma.len() || lcs[i * w + j + 1] >= lcs[(i + 1) * w + j]) {
            new.push(head + j);
            j += 1;
        } else {
            gone.push(head + i);
            i += 1;
        }
    }
    (gone, new)
}

#[cfg(test)]
mod tests;

// ---- commit-confirm ------------------------------------------------------

/// A commit applied with `confirm_within` and not confirmed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingConfirm {
    pub commit: i64,
    /// The commit active before it; None: there was none (the empty ruleset).
    pub previous_commit: Option<i64>,
    pub confirm_within: u32,
    /// UTC, RFC 3339 with milliseconds.
    pub deadline: String,
}

/// As [`record_commit`], and mark the new commit as waiting for
/// confirmation within `confirm_within` seconds, in the same transaction:
/// a crash never leaves an unconfirmed commit looking confirmed.
pub async fn record_commit_pending(
    pool: &SqlitePool,
    rs: &Ruleset,
    author: &str,
    comment: &str,
    confirm_within: u32,
) -> Result<PendingConfirm, StoreError> {
    let mut tx = write_tx(pool).await?;
    let previous_commit = read_active(&mut tx).await?.map(|(id, _)| id);
    let commit = insert_commit(&mut tx, rs, author, comment).await?;
    let deadline: String = sqlx::query_scalar(
        "insert into firewall_pending_confirm
           (firewall_pending_confirm_id, firewall_commit_id, previous_commit_id,
            confirm_within, deadline)
         values (1, ?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?4))
         returning deadline",
    )
    .bind(commit)
    .bind(previous_commit)
    .bind(i64::from(confirm_within))
    .bind(format!("+{confirm_within} seconds"))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(PendingConfirm {
        commit,
        previous_commit,
        confirm_within,
        deadline,
    })
}

/// As [`record_commit`], and forget any pending confirmation in the same
/// transaction (the rollback of an unconfirmed commit).
pub async fn record_commit_resolving(
    pool: &SqlitePool,
    rs: &Ruleset,
    author: &str,
    comment: &str,
) -> Result<i64, StoreError> {
    let mut tx = write_tx(pool).await?;
    let id = insert_commit(&mut tx, rs, author, comment).await?;
    sqlx::query("delete from firewall_pending_confirm")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// The commit waiting for confirmation, if any.
pub async fn pending_confirm(pool: &SqlitePool) -> Result<Option<PendingConfirm>, StoreError> {
    let row: Option<(i64, Option<i64>, i64, String)> = sqlx::query_as(
        "select firewall_commit_id, previous_commit_id, confirm_within, deadline
         from firewall_pending_confirm",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(commit, previous_commit, within, deadline)| PendingConfirm {
            commit,
            previous_commit,
            confirm_within: u32::try_from(within).unwrap_or(u32::MAX),
            deadline,
        },
    ))
}

/// Forget the pending confirmation (the operator confirmed). Returns
/// whether there was one.
pub async fn clear_pending_confirm(pool: &SqlitePool) -> Result<bool, StoreError> {
    let done = sqlx::query("delete from firewall_pending_confirm")
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

// ---- piecemeal candidate edits ---------------------------------------------

/// A set of the candidate without its prefixes: what set lists show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SetSummary {
    pub name: String,
    /// How many prefixes.
    pub count: u64,
    pub comment: String,
    /// Place among the sets (a page cursor).
    #[serde(skip)]
    pub position: i64,
}

/// Candidate sets in ruleset order, at most `limit`, only those after the
/// position `after` when given (to page).
pub async fn set_summaries(
    pool: &SqlitePool,
    limit: u32,
    after: Option<i64>,
) -> Result<Vec<SetSummary>, StoreError> {
    let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "select s.name,
           (select count(*) from firewall_set_prefix p
            where p.firewall_set_id = s.firewall_set_id),
           s.comment, s.position
         from firewall_set s where s.position > ?1 order by s.position limit ?2",
    )
    .bind(after.unwrap_or(-1))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, count, comment, position)| SetSummary {
            name,
            count: u64::try_from(count).unwrap_or(0),
            comment,
            position,
        })
        .collect())
}

/// One candidate set with its prefixes.
pub async fn set(pool: &SqlitePool, name: &str) -> Result<Option<AddressSet>, StoreError> {
    let mut conn = pool.acquire().await?;
    let row: Option<(i64, String)> =
        sqlx::query_as("select firewall_set_id, comment from firewall_set where name = ?1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((id, comment)) = row else {
        return Ok(None);
    };
    let rows: Vec<(String,)> = sqlx::query_as(
        "select prefix from firewall_set_prefix where firewall_set_id = ?1 order by position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let prefixes = rows
        .into_iter()
        .map(|(p,)| {
            p.parse()
                .map_err(|e: ipnet::AddrParseError| StoreError::Corrupt {
                    what: "set prefix",
                    value: p.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(AddressSet {
        name: name.to_owned(),
        prefixes,
        comment,
    }))
}

/// Create `set` in the candidate (after the others) or replace its
/// prefixes and comment, in one transaction. Returns whether it was
/// created. The caller validated it.
pub async fn put_set(pool: &SqlitePool, set: &AddressSet) -> Result<bool, StoreError> {
    let mut tx = write_tx(pool).await?;
    let existing: Option<i64> =
        sqlx::query_scalar("select firewall_set_id from firewall_set where name = ?1")
            .bind(&set.name)
            .fetch_optional(&mut *tx)
            .await?;
    let id = match existing {
        Some(id) => {
            sqlx::query(
                "update firewall_set set comment = ?2,
                   updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 where firewall_set_id = ?1",
            )
            .bind(id)
            .bind(&set.comment)
            .execute(&mut *tx)
            .await?;
            sqlx::query("delete from firewall_set_prefix where firewall_set_id = ?1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            id
        }
        None => {
            sqlx::query_scalar(
                "insert into firewall_set (name, position, comment)
                 values (?1, (select coalesce(max(position), -1) + 1 from firewall_set), ?2)
                 returning firewall_set_id",
            )
            .bind(&set.name)
            .bind(&set.comment)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    insert_prefixes(&mut tx, id, &set.prefixes).await?;
    tx.commit().await?;
    Ok(existing.is_none())
}

/// A candidate rule named by an error: id, chain and position from 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub id: u32,
    pub chain: Chain,
    pub position: u32,
}

/// What [`delete_set`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetDelete {
    Deleted,
    NotFound,
    /// Candidate rules still match on `@name`: nothing was deleted.
    InUse(Vec<RuleRef>),
}

/// Delete a candidate set unless a candidate rule refers to it.
pub async fn delete_set(pool: &SqlitePool, name: &str) -> Result<SetDelete, StoreError> {
    let mut tx = write_tx(pool).await?;
    let reference = format!("@{name}");
    let users: Vec<(i64, String, i64)> = sqlx::query_as(
        "select firewall_rule_id, chain, position from firewall_rule
         where src = ?1 or dst = ?1 order by chain, position",
    )
    .bind(&reference)
    .fetch_all(&mut *tx)
    .await?;
    if !users.is_empty() {
        let refs = users
            .into_iter()
            .map(|(id, chain, position)| {
                Ok(RuleRef {
                    id: u32::try_from(id).map_err(|_| StoreError::IdRange(id))?,
                    chain: from_text("chain", &chain)?,
                    position: u32::try_from(position + 1).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        return Ok(SetDelete::InUse(refs));
    }
    let id: Option<i64> =
        sqlx::query_scalar("select firewall_set_id from firewall_set where name = ?1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(id) = id else {
        return Ok(SetDelete::NotFound);
    };
    sqlx::query("delete from firewall_set_prefix where firewall_set_id = ?1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from firewall_set where firewall_set_id = ?1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(SetDelete::Deleted)
}

/// Names of the candidate's sets (to validate rules without reading
/// every prefix).
pub async fn set_names(pool: &SqlitePool) -> Result<Vec<String>, StoreError> {
    Ok(
        sqlx::query_scalar("select name from firewall_set order by position")
            .fetch_all(pool)
            .await?,
    )
}

/// The candidate's policies and rules, without the sets.
pub async fn candidate_rules(pool: &SqlitePool) -> Result<(Policies, Vec<Rule>), StoreError> {
    let mut conn = pool.acquire().await?;
    Ok((read_policy(&mut conn).await?, read_rules(&mut conn).await?))
}

/// Replace the candidate's rules (sets and policies untouched), ids kept
/// as [`replace_candidate`] keeps them. Returns the rules as stored, in
/// (chain, position) order.
pub async fn replace_candidate_rules(
    pool: &SqlitePool,
    rules: &[Rule],
) -> Result<Vec<Rule>, StoreError> {
    let mut tx = write_tx(pool).await?;
    let ids = write_rules(&mut tx, rules).await?;
    tx.commit().await?;
    let mut stored: Vec<Rule> = rules
        .iter()
        .zip(ids)
        .map(|(r, id)| Rule { id, ..r.clone() })
        .collect();
    stored.sort_by_key(|r| r.chain);
    Ok(stored)
}

#[cfg(test)]
mod edit_tests;
