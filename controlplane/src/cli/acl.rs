//! `xdpgate acl`: check and apply ruleset files, show and export the
//! active ruleset. `check` works offline; the rest talk to the daemon.
use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::{Parser, Subcommand};
use serde_json::Value;

use super::DEFAULT_API;
use crate::{
    client::{self, ClientError},
    firewall::{
        file::{self, FileError, FileProblem},
        rule::{Rule, Ruleset},
        store,
    },
};

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Validate a ruleset file without a daemon: "ok", or every problem
    /// with its line.
    Check {
        /// The ruleset file (TOML).
        file: PathBuf,
    },
    /// Validate a ruleset file, then make it the active ruleset in one
    /// commit. A file with any problem is refused whole; nothing is sent.
    Apply(ApplyArgs),
    /// Print the active ruleset with each rule's counters.
    Show(ShowArgs),
    /// Print the active ruleset as a ruleset file.
    Export(ApiArgs),
}

#[derive(Parser, Debug)]
pub struct ApiArgs {
    /// The daemon's API address.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
}

#[derive(Parser, Debug)]
pub struct ApplyArgs {
    /// The ruleset file (TOML).
    pub file: PathBuf,
    #[command(flatten)]
    pub api: ApiArgs,
    /// Why, recorded with the commit.
    #[arg(long, default_value = "")]
    pub comment: String,
}

#[derive(Parser, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: AclCommand) -> anyhow::Result<()> {
    match command {
        AclCommand::Check { file } => {
            let rs = file::load(&file)?;
            println!("ok: {}", counts(&rs));
        }
        AclCommand::Apply(a) => apply(&a)?,
        AclCommand::Show(a) => {
            let v = client::get_json(a.api.api, "/api/v1/firewall/active")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", render_active(&v));
            }
        }
        AclCommand::Export(a) => print!("{}", file::render(&active_ruleset(a.api)?)),
    }
    Ok(())
}

/// `3 rules, 1 set`.
fn counts(rs: &Ruleset) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{}, {}",
        plural(rs.rules.len(), "rule", "rules"),
        plural(rs.sets.len(), "set", "sets")
    )
}

fn apply(a: &ApplyArgs) -> anyhow::Result<()> {
    // Refused here, the daemon never sees a half-right file.
    let (rs, lines) = file::load_with_lines(&a.file)?;
    let body = serde_json::to_value(&rs)?;
    let path = format!(
        "/api/v1/firewall/apply?author={}&comment={}",
        percent_encode(&author()),
        percent_encode(&a.comment)
    );
    let v = client::post_json(a.api.api, &path, &body)
        .map_err(|e| refused_at_lines(e, &a.file, &lines))?;
    print!("{}", render_commit(&v, &counts(&rs)));
    Ok(())
}

/// A refusal by the daemon whose problems each name a rule (an interface
/// it does not have, say), told at those rules' lines in the file.
fn refused_at_lines(e: ClientError, path: &Path, lines: &[usize]) -> anyhow::Error {
    if let ClientError::Status {
        status: 400, body, ..
    } = &e
        && let Some(problems) = problems_at_lines(body, lines)
    {
        let file = FileError::Invalid {
            path: Some(path.to_owned()),
            problems,
        };
        return anyhow::anyhow!("the daemon refused the ruleset: {file}");
    }
    e.into()
}

/// The API error's `details`, when every one names a rule of the file.
fn problems_at_lines(body: &str, lines: &[usize]) -> Option<Vec<FileProblem>> {
    let v: Value = serde_json::from_str(body).ok()?;
    let details = v["error"]["details"].as_array().filter(|d| !d.is_empty())?;
    details
        .iter()
        .map(|d| {
            let rule = usize::try_from(d["rule"].as_u64()?).ok()?;
            Some(FileProblem {
                line: *lines.get(rule)?,
                column: None,
                message: d["message"].as_str()?.to_owned(),
            })
        })
        .collect()
}

/// Who applies: the user behind sudo if any, else the login name.
fn author() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "cli".to_owned())
}

/// RFC 3986 percent-encoding of a query value (everything but the
/// unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The answer to an apply or commit: `commit 12 is active (3 rules, 1 set)`
/// and the diff against the previous commit.
pub fn render_commit(v: &Value, counts: &str) -> String {
    let mut out = String::new();
    let id = v["commit"]
        .as_i64()
        .or_else(|| v["id"].as_i64())
        .map_or_else(|| "?".to_owned(), |id| id.to_string());
    let _ = write!(out, "commit {id} is active ({counts})");
    if let (Some(c), Some(i)) = (v["compile_ms"].as_f64(), v["install_ms"].as_f64()) {
        let _ = write!(out, ", compiled in {c:.1} ms, installed in {i:.1} ms");
    }
    out.push('\n');
    let diff: Vec<&str> = v["diff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if diff.is_empty() {
        let _ = writeln!(out, "no change against the previous commit");
    }
    for line in diff {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The active ruleset, in full (the `active` view has set sizes only): the
/// active commit's snapshot.
fn active_ruleset(api: SocketAddr) -> anyhow::Result<Ruleset> {
    let v = client::get_json(api, "/api/v1/firewall/active")?;
    let Some(id) = v["commit"].as_i64() else {
        anyhow::bail!("no ruleset has been committed yet; there is nothing to export");
    };
    let c = client::get_json(api, &format!("/api/v1/firewall/commits/{id}"))?;
    // main prints only the outermost message: the cause goes in it.
    serde_json::from_value(c["ruleset"].clone())
        .map_err(|e| anyhow::anyhow!("commit {id}'s ruleset from the API does not parse: {e}"))
}

/// A rule of the `active` view back in the rule model (the view adds its
/// position and counters), for its one-line summary.
fn view_rule(v: &Value) -> Option<Rule> {
    let mut fields = v.as_object()?.clone();
    for extra in ["position", "packets", "bytes"] {
        fields.remove(extra);
    }
    serde_json::from_value(Value::Object(fields)).ok()
}

/// `GET /api/v1/firewall/active` as a table, then each chain's policy with
/// its counters, then the sets.
pub fn render_active(v: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    match v["commit"].as_i64() {
        Some(id) => {
            let _ = writeln!(out, "active commit {id}");
        }
        None => {
            let _ = writeln!(out, "no commit yet: every chain accepts");
        }
    }
    let _ = writeln!(
        out,
        "{:<8} {:>4} {:>6}  {:<44} {:<10} {:>12} {:>14}  COMMENT",
        "CHAIN", "POS", "ID", "MATCH", "ACTION", "PACKETS", "BYTES"
    );
    for r in v["rules"].as_array().into_iter().flatten() {
        let (summary, enabled, log) = match view_rule(r) {
            Some(rule) => (store::match_summary(&rule), rule.enabled, rule.log),
            None => ("?".to_owned(), true, false),
        };
        // nft's order, as in the diff: `log drop`.
        let action = if log {
            format!("log {}", text(&r["action"]))
        } else {
            text(&r["action"])
        };
        let summary = match (enabled, summary.is_empty()) {
            (false, true) => "(disabled)".to_owned(),
            (false, false) => format!("(disabled) {summary}"),
            (true, true) => "any".to_owned(),
            (true, false) => summary,
        };
        let _ = writeln!(
            out,
            "{:<8} {:>4} {:>6}  {:<44} {:<10} {:>12} {:>14}  {}",
            text(&r["chain"]),
            text(&r["position"]),
            text(&r["id"]),
            summary,
            action,
            r["packets"].as_u64().unwrap_or(0),
            r["bytes"].as_u64().unwrap_or(0),
            r["comment"].as_str().unwrap_or("")
        );
    }
    for chain in ["forward", "input"] {
        let c = &v["policy_counters"][chain];
        let _ = writeln!(
            out,
            "policy {chain:<8} {:<10} {:>12} packets {:>14} bytes",
            text(&v["policy"][chain]),
            c["packets"].as_u64().unwrap_or(0),
            c["bytes"].as_u64().unwrap_or(0)
        );
    }
    for s in v["sets"].as_array().into_iter().flatten() {
        let n = s["prefixes"].as_u64().unwrap_or(0);
        let _ = write!(
            out,
            "set @{}: {n} prefix{}",
            text(&s["name"]),
            if n == 1 { "" } else { "es" }
        );
        match s["comment"].as_str().filter(|c| !c.is_empty()) {
            Some(c) => {
                let _ = writeln!(out, " ({c})");
            }
            None => out.push('\n'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_view_renders_rules_policies_and_sets() {
        let v = serde_json::json!({
            "commit": 12,
            "policy": {"forward": "drop", "input": "accept"},
            "policy_counters": {"forward": {"packets": 5, "bytes": 420},
                                "input": {"packets": 0, "bytes": 0}},
            "rules": [
                {"position": 1, "id": 7, "chain": "forward", "enabled": true,
                 "src": "@blocklist", "action": "drop", "log": true, "comment": "bad guys",
                 "packets": 3, "bytes": 180},
                {"position": 2, "id": 9, "chain": "forward", "enabled": true,
                 "proto": "tcp", "dport": "22", "action": "accept",
                 "packets": 10, "bytes": 1000},
                {"position": 1, "id": 4, "chain": "input", "enabled": false,
                 "action": "accept", "packets": 0, "bytes": 0}
            ],
            "sets": [{"name": "blocklist", "prefixes": 2, "comment": "abusers"}]
        });
        let table = render_active(&v);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "active commit 12");
        assert!(lines[1].starts_with("CHAIN"), "{table}");
        assert!(
            lines[2].starts_with("forward     1      7  src @blocklist")
                && lines[2].contains(" log drop ")
                && lines[2].ends_with("  bad guys"),
            "{table}"
        );
        assert!(
            lines[3].contains("tcp dport 22")
                && lines[3].contains("accept")
                && !lines[3].contains("log"),
            "{table}"
        );
        assert!(
            lines[3].contains(" 10 ") && lines[3].contains(" 1000"),
            "{table}"
        );
        assert!(lines[4].contains("(disabled)"), "{table}");
        assert!(
            lines[5].starts_with("policy forward  drop") && lines[5].contains(" 5 packets"),
            "{table}"
        );
        assert!(lines[6].starts_with("policy input    accept"), "{table}");
        assert_eq!(lines[7], "set @blocklist: 2 prefixes (abusers)");
    }

    #[test]
    fn nothing_committed_says_so() {
        let table = render_active(&serde_json::json!({"commit": null, "rules": [], "sets": []}));
        assert!(table.starts_with("no commit yet"), "{table}");
    }

    #[test]
    fn commit_answer_lists_the_diff() {
        let v = serde_json::json!({"commit": 3, "diff": ["+ forward #1: tcp dport 22 drop"],
            "compile_ms": 1.234, "install_ms": 20.0});
        assert_eq!(
            render_commit(&v, "1 rule, 0 sets"),
            "commit 3 is active (1 rule, 0 sets), compiled in 1.2 ms, installed in 20.0 ms\n  \
             + forward #1: tcp dport 22 drop\n"
        );
        assert!(
            render_commit(&serde_json::json!({"commit": 4, "diff": []}), "").contains("no change")
        );
    }

    #[test]
    fn daemon_problems_are_placed_at_the_rules_lines() {
        let body = r#"{"error": {"code": "bad_request", "message": "the ruleset was refused: 1 problem",
            "details": [{"rule": 1, "message": "interface \"eth9\" does not exist"}]}}"#;
        let e = ClientError::Status {
            status: 400,
            path: "/api/v1/firewall/apply".into(),
            body: body.into(),
        };
        let msg = refused_at_lines(e, Path::new("fw.toml"), &[3, 9]).to_string();
        assert_eq!(
            msg,
            "the daemon refused the ruleset: fw.toml: 1 problem\n  \
             fw.toml:9: interface \"eth9\" does not exist"
        );
        // A detail naming no rule (or a rule the file does not have): the
        // API's own words.
        for details in [r#"["pool full"]"#, r#"[{"rule": 5, "message": "x"}]"#] {
            let body = format!(r#"{{"error": {{"message": "m", "details": {details}}}}}"#);
            let e = ClientError::Status {
                status: 400,
                path: "/p".into(),
                body,
            };
            assert!(
                refused_at_lines(e, Path::new("fw.toml"), &[3])
                    .to_string()
                    .starts_with("the API answered 400 for /p: m"),
            );
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("ssh & more/ü"), "ssh%20%26%20more%2F%C3%BC");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn acl_subcommands_parse() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "xdpgate",
            "acl",
            "apply",
            "fw.toml",
            "--api",
            "127.0.0.1:9",
            "--comment",
            "why",
        ])
        .expect("parses");
        let crate::cli::Command::Acl {
            command: AclCommand::Apply(a),
        } = cli.command
        else {
            panic!("not acl apply")
        };
        assert_eq!(a.file, PathBuf::from("fw.toml"));
        assert_eq!(a.api.api.port(), 9);
        assert_eq!(a.comment, "why");
        assert!(crate::cli::Cli::try_parse_from(["xdpgate", "acl", "check"]).is_err());
    }

    #[test]
    fn check_counts_read_naturally() {
        let rs = file::parse(
            "[sets.a]\nprefixes = []\n[[rule]]\nchain = \"input\"\naction = \"drop\"\n",
        )
        .expect("valid");
        assert_eq!(counts(&rs), "1 rule, 1 set");
        assert_eq!(counts(&Ruleset::default()), "0 rules, 0 sets");
    }
}
