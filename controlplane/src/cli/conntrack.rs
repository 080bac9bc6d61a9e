//! `xdpgate conntrack`: list the tracked connections of a running daemon,
//! or flush them (`xdpgate conntrack flush`), with the same filters.
use std::{fmt::Write as _, net::SocketAddr};

use clap::{Parser, Subcommand};
use serde_json::Value;

use super::{DEFAULT_API, acl::percent_encode};
use crate::client;

#[derive(Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConntrackArgs {
    #[command(subcommand)]
    pub command: Option<ConntrackCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Subcommand, Debug)]
pub enum ConntrackCommand {
    /// Forget the connections matching the filters (all without any): their
    /// next packet is `new` to the firewall.
    Flush(FlushArgs),
}

#[derive(Parser, Debug)]
pub struct ListArgs {
    /// The daemon's API address.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// Print the raw JSON items instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Parser, Debug)]
pub struct FlushArgs {
    /// The daemon's API address.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Parser, Debug, Default)]
pub struct FilterArgs {
    /// Only connections from this address or prefix (original direction).
    #[arg(long, value_name = "PREFIX")]
    pub src: Option<String>,
    /// Only connections to this address or prefix (original direction).
    #[arg(long, value_name = "PREFIX")]
    pub dst: Option<String>,
    /// Only this protocol: tcp, udp, icmp, icmpv6 or a number.
    #[arg(long)]
    pub proto: Option<String>,
    /// Only connections with this port on either side.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only connections in this state (ESTABLISHED, SYN_SENT, UNREPLIED,
    /// ECHO...; any case).
    #[arg(long)]
    pub state: Option<String>,
}

impl FilterArgs {
    /// The filters as query parameters (`k=v`, encoded).
    fn query(&self) -> Vec<String> {
        let port = self.port.map(|p| p.to_string());
        [
            ("src", self.src.as_ref()),
            ("dst", self.dst.as_ref()),
            ("proto", self.proto.as_ref()),
            ("port", port.as_ref()),
            ("state", self.state.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", percent_encode(v))))
        .collect()
    }
}

pub fn run(a: ConntrackArgs) -> anyhow::Result<()> {
    match a.command {
        Some(ConntrackCommand::Flush(f)) => {
            let q = f.filter.query();
            let path = if q.is_empty() {
                "/api/v1/conntrack".to_owned()
            } else {
                format!("/api/v1/conntrack?{}", q.join("&"))
            };
            let v = client::delete_json(f.api, &path)?;
            let n = v["deleted"].as_u64().unwrap_or(0);
            println!("{n} connection{} flushed", if n == 1 { "" } else { "s" });
        }
        None => {
            let (items, capacity) = fetch_all(&a.list)?;
            if a.list.json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                print!("{}", render(&items, capacity));
            }
        }
    }
    Ok(())
}

/// Every page of `/api/v1/conntrack` with the filters, and the capacity.
fn fetch_all(a: &ListArgs) -> anyhow::Result<(Vec<Value>, u64)> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = a.filter.query();
        q.push("limit=1000".to_owned());
        if let Some(c) = &cursor {
            q.push(format!("cursor={c}"));
        }
        let v = client::get_json(a.api, &format!("/api/v1/conntrack?{}", q.join("&")))?;
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((items, v["capacity"].as_u64().unwrap_or(0))),
        }
    }
}

/// `addr:port`, `[v6]:port`, or the address alone for ICMP (whose "ports"
/// are the echo identifier, shown in its own column).
fn endpoint(c: &Value, addr: &str, port: &str) -> String {
    let a = c[addr].as_str().unwrap_or("?");
    let icmp = matches!(c["proto"].as_str(), Some("icmp" | "icmpv6"));
    match (icmp, c["family"].as_u64()) {
        (true, _) => a.to_owned(),
        (false, Some(6)) => format!("[{a}]:{}", c[port]),
        (false, _) => format!("{a}:{}", c[port]),
    }
}

/// The connections as a table, one line each.
pub fn render(items: &[Value], capacity: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<46} {:<46} {:<12} {:<5} {:>8} {:>8} {:>9} {:>7} {:>7} {:>6}",
        "PROTO",
        "SOURCE",
        "DESTINATION",
        "STATE",
        "REPLY",
        "AGE",
        "IDLE",
        "EXPIRES",
        "IN",
        "OUT",
        "RULE"
    );
    for c in items {
        let mut state = c["state"].as_str().unwrap_or("?").to_owned();
        if c["proto"].as_str().is_some_and(|p| p.starts_with("icmp")) {
            let _ = write!(state, " id {}", c["sport"]);
        }
        let _ = writeln!(
            out,
            "{:<7} {:<46} {:<46} {:<12} {:<5} {:>8} {:>8} {:>9} {:>7} {:>7} {:>6}",
            c["proto"].as_str().unwrap_or("?"),
            endpoint(c, "src", "sport"),
            endpoint(c, "dst", "dport"),
            state,
            if c["seen_reply"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            c["age_s"],
            c["idle_s"],
            c["expires_in_s"],
            c["ifindex_orig"],
            c["ifindex_out"],
            c["rule"]
        );
    }
    let _ = writeln!(
        out,
        "({} connection{}, table capacity {capacity})",
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    );
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_become_an_encoded_query() {
        let f = FilterArgs {
            src: Some("198.18.1.0/24".into()),
            proto: Some("tcp".into()),
            port: Some(80),
            ..Default::default()
        };
        assert_eq!(f.query(), ["src=198.18.1.0%2F24", "proto=tcp", "port=80"]);
        assert!(FilterArgs::default().query().is_empty());
    }

    #[test]
    fn table_shows_endpoints_in_the_original_direction() {
        let items = [
            json!({"family": 4, "proto": "tcp", "src": "198.18.1.2", "sport": 40000,
                "dst": "198.18.2.2", "dport": 80, "state": "ESTABLISHED", "seen_reply": true,
                "age_s": 12, "idle_s": 1, "expires_in_s": 431999, "ifindex_orig": 2,
                "ifindex_out": 3, "rule": 0}),
            json!({"family": 6, "proto": "icmpv6", "src": "2001:db8:1::2", "sport": 7,
                "dst": "2001:db8:2::2", "dport": 7, "state": "ECHO", "seen_reply": false,
                "age_s": 1, "idle_s": 1, "expires_in_s": 29, "ifindex_orig": 2,
                "ifindex_out": 3, "rule": 4}),
        ];
        let t = render(&items, 262144);
        assert!(t.contains("198.18.1.2:40000"), "{t}");
        assert!(t.contains("198.18.2.2:80"), "{t}");
        assert!(t.contains("ECHO id 7"), "{t}");
        assert!(!t.contains("[2001:db8:1::2]"), "{t}");
        assert!(
            t.ends_with("(2 connections, table capacity 262144)\n"),
            "{t}"
        );
    }

    #[test]
    fn flush_is_a_subcommand_and_list_takes_filters() {
        use crate::cli::{Cli, Command};
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args)?;
            let Command::Conntrack(a) = cli.command else {
                panic!("not conntrack")
            };
            Ok::<_, clap::Error>(a)
        };
        let a = parse(&["xdpgate", "conntrack", "--json", "--proto", "udp"]).expect("list");
        assert!(a.command.is_none() && a.list.json);
        assert_eq!(a.list.filter.proto.as_deref(), Some("udp"));
        let a = parse(&["xdpgate", "conntrack", "flush", "--port", "53"]).expect("flush");
        let Some(ConntrackCommand::Flush(f)) = a.command else {
            panic!("not flush")
        };
        assert_eq!(f.filter.port, Some(53));
        assert!(parse(&["xdpgate", "conntrack", "--port", "x"]).is_err());
    }
}
