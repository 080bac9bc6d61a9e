//! The declarative ruleset file: TOML that `xdpgate acl check|apply` read
//! and `xdpgate acl export` writes.
//!
//! ```toml
//! [policy]
//! forward = "drop"
//! input = "accept"
//!
//! [sets.blocklist]
//! prefixes = ["198.18.200.0/24", "2001:db8:bad::/48"]
//! comment = "abusers"
//!
//! [[rule]]
//! chain = "forward"
//! src = "@blocklist"
//! action = "drop"
//! log = true        # send what it drops to the event log (sampled)
//! ```
//!
//! A rule's keys are the rule model's serde names (`rule::Rule`). Every
//! problem is reported with its line (and column where one helps), all of
//! them at once: fixing a file one error per run is slow.
use std::{
    borrow::Cow,
    fmt::{self, Write as _},
    ops::Range,
    path::{Path, PathBuf},
};

use dataplane_common::FW_MAX_RULES;
use serde::{Deserialize, de::IntoDeserializer as _};
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::rule::{
    AddressSet, Chain, Policies, Rule, Ruleset, Verdict, parse_prefix, validate_set_name,
};

/// One thing wrong with a ruleset file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileProblem {
    /// From 1.
    pub line: usize,
    /// From 1, in characters; None where the line says enough (a rule's
    /// problem is reported at its `[[rule]]` header).
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "{}:{c}: {}", self.line, self.message),
            None => write!(f, "{}: {}", self.line, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading the ruleset file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in file order. `path` is None for text that
    /// did not come from a file.
    #[error("{}", invalid_message(path.as_deref(), problems))]
    Invalid {
        path: Option<PathBuf>,
        problems: Vec<FileProblem>,
    },
}

impl FileError {
    /// The problems, empty for a read error.
    pub fn problems(&self) -> &[FileProblem] {
        match self {
            FileError::Read { .. } => &[],
            FileError::Invalid { problems, .. } => problems,
        }
    }
}

/// `fw.toml: 2 problems` then one `fw.toml:LINE[:COL]: reason` per line,
/// the form editors and terminals turn into links.
fn invalid_message(path: Option<&Path>, problems: &[FileProblem]) -> String {
    let name = path.map_or_else(|| "ruleset".to_owned(), |p| p.display().to_string());
    let mut out = format!(
        "{name}: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        let _ = write!(out, "\n  {name}:{p}");
    }
    out
}

/// Read and parse the ruleset file at `path`.
pub fn load(path: &Path) -> Result<Ruleset, FileError> {
    load_with_lines(path).map(|(rs, _)| rs)
}

/// As [`load`], with the line of each rule's `[[rule]]` header (to place
/// what the daemon says about rule N in the file).
pub fn load_with_lines(path: &Path) -> Result<(Ruleset, Vec<usize>), FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (rs, spans) = parse_spanned(&text).map_err(|e| match e {
        FileError::Invalid { problems, .. } => FileError::Invalid {
            path: Some(path.to_owned()),
            problems,
        },
        other => other,
    })?;
    let lines = spans
        .iter()
        .map(|s| line_column(&text, s.start).0)
        .collect();
    Ok((rs, lines))
}

/// Parse a ruleset file's text and validate the ruleset
/// (`Ruleset::problems`); rules come out with id 0, in file order.
pub fn parse(text: &str) -> Result<Ruleset, FileError> {
    parse_spanned(text).map(|(rs, _)| rs)
}

/// [`parse`], with where each rule starts.
fn parse_spanned(text: &str) -> Result<(Ruleset, Vec<Range<usize>>), FileError> {
    let mut found = Found::new(text);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    for e in &syntax {
        found.at(e.span().unwrap_or(0..0), true, e.message());
    }
    // Past a syntax error the document's shape is a guess: stop there
    // rather than report problems that are only echoes of it.
    if !syntax.is_empty() {
        return Err(found.into_error());
    }
    let mut rs = Ruleset::default();
    // Where each rule of `rs.rules` starts, to place model problems.
    let mut rule_spans = Vec::new();
    let mut set_spans = Vec::new();
    for (key, value) in doc.get_ref() {
        match key.get_ref().as_ref() {
            "policy" => rs.policy = policy(value, &mut found),
            "sets" => (rs.sets, set_spans) = sets(value, &mut found),
            "rule" => {
                for (rule, span) in rules(value, &mut found) {
                    rs.rules.push(rule);
                    rule_spans.push(span);
                }
            }
            other => found.at(
                key.span(),
                true,
                &format!("unknown key {other:?} (policy, sets or rule)"),
            ),
        }
    }
    for p in rs.problems() {
        let span = match p.rule {
            Some(i) => rule_spans[i].clone(),
            None => whole_ruleset_span(&rs, &p.message, &rule_spans, &set_spans),
        };
        found.at(span, false, &p.message);
    }
    if found.problems.is_empty() {
        Ok((rs, rule_spans))
    } else {
        Err(found.into_error())
    }
}

/// Where to point for a problem of no single rule: the set it names, or
/// the first rule past a chain's capacity.
fn whole_ruleset_span(
    rs: &Ruleset,
    message: &str,
    rule_spans: &[Range<usize>],
    set_spans: &[Range<usize>],
) -> Range<usize> {
    if let Some(i) = rs
        .sets
        .iter()
        .position(|s| message.contains(&format!("@{} ", s.name)))
    {
        return set_spans[i].clone();
    }
    for chain in Chain::ALL {
        if message.starts_with(&format!("the {chain} chain")) {
            let past = rs
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.chain == chain && r.enabled)
                .nth(FW_MAX_RULES as usize);
            if let Some((i, _)) = past {
                return rule_spans[i].clone();
            }
        }
    }
    0..0
}

/// Problems as they are found, by byte offset.
struct Found<'t> {
    text: &'t str,
    problems: Vec<(usize, bool, String)>,
}

impl<'t> Found<'t> {
    fn new(text: &'t str) -> Self {
        Found {
            text,
            problems: Vec::new(),
        }
    }

    /// A problem at `span`; `column` says whether its column is worth
    /// showing.
    fn at(&mut self, span: Range<usize>, column: bool, message: &str) {
        self.problems.push((span.start, column, message.to_owned()));
    }

    fn de_error(&mut self, fallback: Range<usize>, e: &toml::de::Error) {
        self.at(e.span().unwrap_or(fallback), true, e.message());
    }

    fn into_error(mut self) -> FileError {
        // Stable: problems at one place keep the order they were found in.
        self.problems.sort_by_key(|(offset, _, _)| *offset);
        let problems = self
            .problems
            .iter()
            .map(|(offset, column, message)| {
                let (line, col) = line_column(self.text, *offset);
                FileProblem {
                    line,
                    column: column.then_some(col),
                    message: message.clone(),
                }
            })
            .collect();
        FileError::Invalid {
            path: None,
            problems,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// `[policy]`: either chain may be left out and is then `accept`, as in a
/// file with no `[policy]` at all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    forward: Option<Verdict>,
    input: Option<Verdict>,
}

fn policy(value: &Spanned<DeValue<'_>>, found: &mut Found<'_>) -> Policies {
    let default = Policies::default();
    match PolicyDoc::deserialize(value.clone().into_deserializer()) {
        Ok(p) => Policies {
            forward: p.forward.unwrap_or(default.forward),
            input: p.input.unwrap_or(default.input),
        },
        Err(e) => {
            found.de_error(value.span(), &e);
            default
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetDoc {
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    comment: String,
}

/// `[sets.NAME]` tables, in file order, with where each one starts. A set
/// with problems is still returned (with the prefixes that parse), so rules
/// naming it are not also reported as naming a missing set.
fn sets(
    value: &Spanned<DeValue<'_>>,
    found: &mut Found<'_>,
) -> (Vec<AddressSet>, Vec<Range<usize>>) {
    let DeValue::Table(table) = value.get_ref() else {
        found.at(
            value.span(),
            true,
            "sets must be tables: [sets.NAME] with prefixes = [...]",
        );
        return (Vec::new(), Vec::new());
    };
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for (key, body) in entries {
        let name = key.get_ref().to_string();
        if let Err(message) = validate_set_name(&name) {
            found.at(key.span(), true, &message);
        }
        let doc = match SetDoc::deserialize(body.clone().into_deserializer()) {
            Ok(doc) => doc,
            Err(e) => {
                found.de_error(key.span(), &e);
                SetDoc {
                    prefixes: Vec::new(),
                    comment: String::new(),
                }
            }
        };
        let mut prefixes = Vec::with_capacity(doc.prefixes.len());
        for p in &doc.prefixes {
            match parse_prefix(p.get_ref()) {
                Ok(net) => prefixes.push(net),
                Err(message) => found.at(p.span(), true, &format!("set @{name}: {message}")),
            }
        }
        out.push(AddressSet {
            name,
            prefixes,
            comment: doc.comment,
        });
        spans.push(key.span());
    }
    (out, spans)
}

/// `[[rule]]` tables that parse, with where each starts. A table that does
/// not parse is reported field by field and left out.
fn rules(value: &Spanned<DeValue<'_>>, found: &mut Found<'_>) -> Vec<(Rule, Range<usize>)> {
    let DeValue::Array(items) = value.get_ref() else {
        found.at(value.span(), true, "rules are written as [[rule]] tables");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match Rule::deserialize(item.clone().into_deserializer()) {
            Ok(rule) => out.push((rule, item.span())),
            Err(whole) => rule_field_errors(item, &whole, found),
        }
    }
    out
}

/// Serde stops at a rule's first bad field; to report every one, each
/// field is tried again alone in an otherwise minimal valid rule.
fn rule_field_errors(item: &Spanned<DeValue<'_>>, whole: &toml::de::Error, found: &mut Found<'_>) {
    let DeValue::Table(table) = item.get_ref() else {
        found.de_error(item.span(), whole);
        return;
    };
    let before = found.problems.len();
    for required in ["chain", "action"] {
        if !table.contains_key(required) {
            found.at(item.span(), false, &format!("the rule has no {required:?}"));
        }
    }
    for (key, value) in table.iter() {
        let mut probe = DeTable::new();
        for (k, v) in [("chain", "forward"), ("action", "accept")] {
            probe.insert(
                Spanned::new(0..0, Cow::Borrowed(k)),
                Spanned::new(0..0, DeValue::String(Cow::Borrowed(v))),
            );
        }
        probe.insert(key.clone(), value.clone());
        let probe = Spanned::new(item.span(), DeValue::Table(probe));
        if let Err(e) = Rule::deserialize(probe.into_deserializer()) {
            found.de_error(key.span(), &e);
        }
    }
    // Nothing pinned down alone (a combination of fields?): say what serde
    // said about the whole rule.
    if found.problems.len() == before {
        found.de_error(item.span(), whole);
    }
}

/// The ruleset as a file that [`parse`] reads back to the same ruleset
/// (rule ids aside: the file is declarative, ids are the database's).
pub fn render(rs: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[policy]\nforward = {}\ninput = {}",
        quote(rs.policy.forward.name()),
        quote(rs.policy.input.name())
    );
    for set in &rs.sets {
        let _ = writeln!(out, "\n[sets.{}]", key(&set.name));
        if !set.comment.is_empty() {
            let _ = writeln!(out, "comment = {}", quote(&set.comment));
        }
        out.push_str("prefixes = [");
        for p in &set.prefixes {
            let _ = write!(out, "\n    \"{p}\",");
        }
        out.push_str(if set.prefixes.is_empty() {
            "]\n"
        } else {
            "\n]\n"
        });
    }
    for rule in &rs.rules {
        out.push('\n');
        render_rule(&mut out, rule);
    }
    out
}

fn render_rule(out: &mut String, r: &Rule) {
    out.push_str("[[rule]]\n");
    let mut line = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{k} = {v}");
        }
    };
    let text = |s: &str| Some(quote(s));
    // Ports as numbers when single, as the format's own examples write them.
    let port = |p: super::rule::PortRange| {
        if p.lo == p.hi {
            p.lo.to_string()
        } else {
            quote(&p.to_string())
        }
    };
    line("chain", text(r.chain.name()));
    line("in", r.in_iface.as_deref().and_then(text));
    line("out", r.out_iface.as_deref().and_then(text));
    line("src", r.src.as_ref().and_then(|a| text(&a.to_string())));
    line("dst", r.dst.as_ref().and_then(|a| text(&a.to_string())));
    line("proto", r.proto.and_then(|p| text(&p.to_string())));
    line("sport", r.sport.map(port));
    line("dport", r.dport.map(port));
    line("icmp", r.icmp.as_ref().and_then(|m| text(&m.text)));
    line("tcp_flags", r.tcp_flags.and_then(|f| text(&f.to_string())));
    if !r.state.is_empty() {
        let states: Vec<String> = r
            .state
            .iter()
            .map(|s| match serde_json::to_value(s) {
                Ok(serde_json::Value::String(s)) => quote(&s),
                other => unreachable!("a unit enum serialises to a string, not {other:?}"),
            })
            .collect();
        line("state", Some(format!("[{}]", states.join(", "))));
    }
    line("action", text(r.action.name()));
    if r.log {
        line("log", Some("true".into()));
    }
    if !r.enabled {
        line("enabled", Some("false".into()));
    }
    if !r.comment.is_empty() {
        line("comment", text(&r.comment));
    }
}

/// A TOML basic string (escapes included).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A table key: bare when it may be, quoted otherwise (set names may hold
/// dots, which a bare key would read as nesting).
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        s.to_owned()
    } else {
        quote(s)
    }
}

#[cfg(test)]
mod tests;
