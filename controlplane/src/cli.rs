//! Command-line interface: flags, and the small amount of glue that turns a
//! subcommand into library calls. `anyhow` lives here and in `main` only.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    client, config, daemon,
    dataplane::AttachMode,
    fib::{NeighSpec, RouteSpec},
    lab::{DaemonOptions, Lab, LabOptions},
};

pub mod acl;
pub mod conntrack;
pub mod token;

pub const DEFAULT_API: &str = "127.0.0.1:8080";
pub const DEFAULT_DB: &str = "/var/lib/xdpgate/xdpgate.db";

#[derive(Parser, Debug)]
#[command(name = "xdpgate", version, about = "XDP software router and firewall")]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the XDP program, attach it, serve the API until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Print the dataplane counters of a running daemon.
    Stats(StatsArgs),
    /// Print the routes the XDP maps hold.
    Routes(ViewArgs),
    /// Print the neighbours the XDP maps hold.
    Neighbours(ViewArgs),
    /// Print the interfaces XDP manages.
    Links(ViewArgs),
    /// The namespace lab: the embedded default topology.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// The firewall: check and apply ruleset files, show the active rules.
    Acl {
        #[command(subcommand)]
        command: acl::AclCommand,
    },
    /// The connection table: list tracked connections, or flush them.
    Conntrack(conntrack::ConntrackArgs),
    /// UDP load generator (IPv4/IPv6) and reflector on the sockio I/O layer.
    Loadgen(LoadgenArgs),
    /// API tokens: create (printed once), list, revoke. Works on the
    /// database directly; the daemon need not run.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Detach XDP and remove what `xdpgate run` pinned (it outlives the
    /// daemon by design).
    Detach(DetachArgs),
    /// The config file of `xdpgate run`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a config file: every mistake with its line; exits 1 on errors
    /// (interfaces missing on this host are only warnings).
    Check {
        /// The file, e.g. /etc/xdpgate/config.toml.
        file: PathBuf,
    },
}

#[derive(Parser, Debug)]
pub struct RunArgs {
    /// Config file (TOML; one key per flag, flags override it). Default:
    /// /etc/xdpgate/config.toml when it exists.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeat for several). Required here or as
    /// `interfaces` in the config file.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// XDP attach mode: native (in the driver) or skb (generic).
    /// [default: native]
    #[arg(long, value_parser = parse_mode)]
    pub xdp_mode: Option<AttachMode>,
    /// Where the HTTP API listens. [default: 127.0.0.1:8080]
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// SQLite database path. [default: /var/lib/xdpgate/xdpgate.db]
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Enter this network namespace after binding the API listener.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Static route, as `ip route` writes it: "PREFIX via GW dev IF",
    /// "PREFIX dev IF", several "via GW dev IF" for ECMP, or
    /// "blackhole|unreachable|prohibit|local PREFIX". Repeatable.
    #[arg(long = "route", value_name = "ROUTE")]
    pub routes: Vec<RouteSpec>,
    /// Static neighbour: "ADDRESS lladdr MAC dev IF". Repeatable.
    #[arg(long = "neigh", value_name = "NEIGH")]
    pub neighbours: Vec<NeighSpec>,
    /// Do not follow the kernel's routes and neighbours (only --route and
    /// --neigh feed the maps).
    #[arg(long)]
    pub no_kernel_sync: bool,
    /// Routing table whose routes XDP follows (repeatable; in order of
    /// preference). The local table's own addresses are always followed.
    /// [default: 254 (main)]
    #[arg(long = "table", value_name = "ID")]
    pub tables: Vec<u32>,
    /// Netlink receive buffer in bytes (for tests that force overruns).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub netlink_rcvbuf: Option<usize>,
    /// Rule bitmaps the firewall can hold (both generations together);
    /// raise it when a commit says the pool is full. 512 bytes each.
    /// [default: 32768]
    #[arg(long, value_name = "N")]
    pub fw_bitmaps: Option<u32>,
    /// Capacity of the connection-tracking table (an LRU: when full, the
    /// least recently used connection is forgotten). [default: 262144]
    #[arg(long, value_name = "N")]
    pub conntrack_max: Option<u32>,
    /// Idle timeout of a connection state, NAME=SECONDS (repeatable):
    /// syn_sent syn_recv established fin_wait close_wait last_ack
    /// time_wait close udp udp_stream icmp other other_stream. The others
    /// keep nf_conntrack's defaults.
    #[arg(long = "ct-timeout", value_name = "STATE=SECONDS")]
    pub ct_timeouts: Vec<crate::conntrack::CtTimeout>,
    /// IPv4 route lookup: dir24 (DIR-24-8, flat cost at any table size;
    /// the LPM trie is kept beside it) or lpm (the BPF LPM trie alone,
    /// 64 MiB less kernel memory). IPv6 always uses the trie.
    /// [default: dir24]
    #[arg(long, value_name = "dir24|lpm")]
    pub route_lookup: Option<crate::dir24::RouteLookup>,
    /// DIR-24-8 groups for /24 blocks holding longer prefixes (1 KiB
    /// each); a block without one is served by the trie. [default: 8192]
    #[arg(long, value_name = "N")]
    pub tbl8_groups: Option<u32>,
    /// Where the program, its XDP links and its maps are pinned, so
    /// forwarding goes on while the daemon is down. [default:
    /// /sys/fs/bpf/xdpgate, or /sys/fs/bpf/xdpgate/netns/NAME with --netns]
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Start from scratch: detach and remove what a previous daemon pinned
    /// instead of adopting it (forwarding stops until this one attaches).
    #[arg(long)]
    pub fresh: bool,
    /// Serve the API over TLS with this certificate chain (PEM, leaf
    /// first); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// On SIGTERM/SIGINT leave the pinned program forwarding on its last
    /// state (for restarts and upgrades) instead of detaching.
    #[arg(long)]
    pub keep_attached: bool,
    /// Export IPFIX flow records to this collector (UDP ADDRESS:PORT;
    /// repeat for several). Exporting tracks every connection.
    #[arg(long = "ipfix-collector", value_name = "ADDR:PORT")]
    pub ipfix_collectors: Vec<std::net::SocketAddr>,
    /// Seconds between records of a long-lived flow. [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub ipfix_active_timeout: Option<u32>,
    /// Seconds without packets after which a flow gets its last record.
    /// [default: 15]
    #[arg(long, value_name = "SECONDS")]
    pub ipfix_idle_timeout: Option<u32>,
    /// Observation domain id of the messages. [default: 1]
    #[arg(long, value_name = "ID")]
    pub ipfix_domain: Option<u32>,
    /// Seconds between template retransmissions. [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub ipfix_template_refresh: Option<u32>,
    /// Largest IPFIX message in bytes. [default: 1400]
    #[arg(long, value_name = "BYTES")]
    pub ipfix_max_message: Option<u16>,
    /// How often the connection table is scanned. [default: 1000]
    #[arg(long, value_name = "MS")]
    pub ipfix_scan_interval_ms: Option<u32>,
    /// Append events (commits, resyncs, link changes, logged firewall
    /// drops) as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Also send events as RFC 5424 syslog over UDP to this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub syslog: Option<std::net::SocketAddr>,
}

#[derive(Parser, Debug)]
pub struct DetachArgs {
    /// Remove everything pinned: every XDP link (forwarding falls back to
    /// the kernel), the program and its maps.
    #[arg(long, required = true)]
    pub all: bool,
    /// The pin directory. [default: as `xdpgate run`]
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// The namespace the daemon ran in (--netns), for the default pin
    /// directory.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

#[derive(Parser, Debug)]
pub struct StatsArgs {
    /// The daemon's API address.
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also print counters that are zero.
    #[arg(long)]
    pub all: bool,
}

#[derive(Parser, Debug)]
pub struct ViewArgs {
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// Only routes inside this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only entries on this interface.
    #[arg(long)]
    pub dev: Option<String>,
    /// Print the raw JSON items instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Build the lab (idempotent) and start xdpgate in it.
    Up(LabUpArgs),
    /// Remove everything the lab created (also after a crash).
    Down(LabNameArgs),
    /// Show namespaces, links, XDP attach state and counters.
    Status(LabStatusArgs),
}

#[derive(Parser, Debug)]
pub struct LabNameArgs {
    /// Name prefix of the lab's namespaces.
    #[arg(long, default_value = "xg")]
    pub prefix: String,
}

#[derive(Parser, Debug)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub name: LabNameArgs,
    /// Kernel forwarding in the router namespace: on is production (the
    /// kernel carries what XDP punts); off proves only XDP carries traffic.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub kernel_forwarding: OnOff,
    /// Where the daemon's API listens (in this namespace).
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    #[arg(long, default_value = "native", value_parser = parse_mode)]
    pub xdp_mode: AttachMode,
    /// Build the topology only; do not start the daemon.
    #[arg(long)]
    pub no_daemon: bool,
}

#[derive(Parser, Debug)]
pub struct LabStatusArgs {
    #[command(flatten)]
    pub name: LabNameArgs,
    #[arg(long, default_value = DEFAULT_API)]
    pub api: SocketAddr,
    #[arg(long)]
    pub json: bool,
}

#[derive(Parser, Debug)]
pub struct LoadgenArgs {
    /// Where to send: ADDR:PORT, or [ADDR]:PORT for IPv6.
    #[arg(required_unless_present = "reflect", conflicts_with = "reflect")]
    pub target: Option<SocketAddr>,
    /// Packets per second over all flows (10000, 50k, 1M); 0 or
    /// "unlimited": as fast as the socket takes them.
    #[arg(long, default_value = "1000")]
    pub rate: crate::loadgen::Rate,
    /// UDP payload bytes (at least 24: sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Flows: sockets with distinct source ports, so ECMP and RSS spread them.
    #[arg(long, default_value_t = 1)]
    pub flows: u16,
    /// Seconds to send (default 10); with --reflect, to run (default: until
    /// SIGINT or SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Be the reflector: send every datagram back to where it came from.
    #[arg(long, requires = "listen")]
    pub reflect: bool,
    /// Where the reflector listens ([::]:PORT takes IPv4 and IPv6).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

fn parse_mode(s: &str) -> Result<AttachMode, String> {
    s.parse()
}

/// The log level `xdpgate run` takes from its config file, if any (an
/// unreadable or invalid file is reported by `dispatch`, not here).
pub fn config_log_level(cli: &Cli) -> Option<String> {
    let Command::Run(a) = &cli.command else {
        return None;
    };
    let path = config::config_path(a.config.as_deref())?;
    let src = std::fs::read_to_string(path).ok()?;
    config::check(&src, &|_| true).settings?.log_level
}

/// RUST_LOG, else -v/-vv, else `file_level` (the config file's
/// `log_level`), else info.
pub fn init_tracing(verbose: u8, file_level: Option<&str>) {
    let default = match verbose {
        0 => file_level.unwrap_or("info"),
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => {
            let file = match config::config_path(a.config.as_deref()) {
                Some(path) => config::load(&path)?,
                None => config::Settings::default(),
            };
            daemon::run(config::run_config(a, file)?)?
        }
        Command::Stats(a) => stats(&a)?,
        Command::Routes(a) => view(&a, "routes")?,
        Command::Neighbours(a) => view(&a, "neighbours")?,
        Command::Links(a) => view(&a, "links")?,
        Command::Lab { command } => lab(command)?,
        Command::Acl { command } => acl::run(command)?,
        Command::Conntrack(a) => conntrack::run(a)?,
        Command::Loadgen(a) => crate::loadgen::run_cli(a)?,
        Command::Token { command } => token::run(command)?,
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file)?,
        Command::Detach(a) => detach_all(&a)?,
    }
    Ok(())
}

/// `xdpgate detach --all`: remove the pinned links, program and maps. A
/// running daemon keeps its own handles; stop it first.
fn detach_all(a: &DetachArgs) -> anyhow::Result<()> {
    let dir = a
        .pin_dir
        .clone()
        .unwrap_or_else(|| crate::dataplane::pin::default_dir(a.netns.as_deref()));
    let pins = crate::dataplane::pin::PinDir::new(dir);
    let ports = pins.pinned_ports();
    let removed = pins.remove_all()?;
    if removed.is_empty() {
        println!("nothing pinned under {}", pins.root().display());
    } else {
        println!(
            "removed {} pins under {}; XDP detached from: {}",
            removed.len(),
            pins.root().display(),
            if ports.is_empty() {
                "-".to_owned()
            } else {
                ports.join(", ")
            }
        );
    }
    Ok(())
}

fn config_check(file: &std::path::Path) -> anyhow::Result<()> {
    let src = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let checked = config::check(&src, &config::host_has_iface);
    for d in &checked.diagnostics {
        println!("{}:{d}", file.display());
    }
    match checked.errors() {
        0 => {
            println!("{}: OK", file.display());
            Ok(())
        }
        n => anyhow::bail!("{}: {n} error(s)", file.display()),
    }
}

fn stats(a: &StatsArgs) -> anyhow::Result<()> {
    let v = client::get_json(a.api, "/api/v1/stats")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render_stats(&v, a.all));
    }
    Ok(())
}

/// Fetch every page of `/api/v1/<what>` with the filters of `a`.
fn fetch_all(a: &ViewArgs, what: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut query = vec!["limit=1000".to_owned()];
    if let Some(p) = &a.prefix {
        query.push(format!("prefix={p}"));
    }
    if let Some(d) = &a.dev {
        query.push(format!("dev={d}"));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(format!("cursor={c}"));
        }
        let v = client::get_json(a.api, &format!("/api/v1/{what}?{}", q.join("&")))?;
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(items),
        }
    }
}

fn view(a: &ViewArgs, what: &str) -> anyhow::Result<()> {
    let items = fetch_all(a, what)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    print!("{}", render_view(what, &items));
    Ok(())
}

/// Routes, neighbours or links as a table.
pub fn render_view(what: &str, items: &[serde_json::Value]) -> String {
    use std::fmt::Write as _;
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match what {
        "routes" => {
            let _ = writeln!(out, "{:<44} {:<12} NEXT HOPS", "PREFIX", "TYPE");
            for r in items {
                let hops: Vec<String> = r["nexthops"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| match h["gateway"].as_str() {
                        Some(g) => format!("via {g} dev {}", s(&h["dev"])),
                        None => format!("dev {}", s(&h["dev"])),
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "{:<44} {:<12} {}",
                    s(&r["prefix"]),
                    s(&r["type"]),
                    hops.join(", ")
                );
            }
        }
        "neighbours" => {
            let _ = writeln!(out, "{:<40} {:<18} DEV", "ADDRESS", "MAC");
            for n in items {
                let _ = writeln!(
                    out,
                    "{:<40} {:<18} {}",
                    s(&n["address"]),
                    s(&n["mac"]),
                    s(&n["dev"])
                );
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:<18} {:>6} {:<5} {:>5} {:>7}",
                "NAME", "IFINDEX", "MAC", "MTU", "UP", "VLAN", "PARENT"
            );
            for l in items {
                let _ = writeln!(
                    out,
                    "{:<12} {:>7} {:<18} {:>6} {:<5} {:>5} {:>7}",
                    s(&l["name"]),
                    s(&l["ifindex"]),
                    s(&l["mac"]),
                    s(&l["mtu"]),
                    s(&l["up"]),
                    s(&l["vlan_id"]),
                    s(&l["parent_ifindex"])
                );
            }
        }
    }
    let _ = writeln!(out, "({} {what})", items.len());
    out
}

/// The `/api/v1/stats` answer as a table: one row per interface and
/// counter, zero rows left out unless `all`.
pub fn render_stats(v: &serde_json::Value, all: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<6} {:<8} {:<7} {:<20} {:>12} {:>14}",
        "INTERFACE", "SLOT", "MODE", "KIND", "NAME", "PACKETS", "BYTES"
    );
    let mut rows = |iface: &str, slot: &str, mode: &str, counters: &serde_json::Value| {
        for kind in ["actions", "reasons", "classes"] {
            for (name, c) in counters[kind].as_object().into_iter().flatten() {
                let packets = c["packets"].as_u64().unwrap_or(0);
                if packets == 0 && !all {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{:<10} {:<6} {:<8} {:<7} {:<20} {:>12} {:>14}",
                    iface,
                    slot,
                    mode,
                    kind.trim_end_matches('s').replace("classe", "class"),
                    name,
                    packets,
                    c["bytes"].as_u64().unwrap_or(0)
                );
            }
        }
    };
    for i in v["interfaces"].as_array().into_iter().flatten() {
        rows(
            i["name"].as_str().unwrap_or("?"),
            &i["slot"].to_string(),
            i["mode"].as_str().unwrap_or("?"),
            &i["counters"],
        );
    }
    rows("(other)", "0", "-", &v["unregistered"]);
    rows("TOTAL", "-", "-", &v["total"]);
    let lookup = &v["route_lookup"];
    if let Some(ipv4) = lookup["ipv4"].as_str() {
        let _ = write!(out, "\nroute lookup: IPv4 {ipv4}, IPv6 lpm");
        let d = &lookup["dir24"];
        if d.is_object() {
            let _ = write!(
                out,
                "; dir24: {} prefixes, tbl8 groups {}/{} used, {} /24 blocks on the trie",
                d["prefixes"], d["tbl8_groups_used"], d["tbl8_groups"], d["lpm_blocks"]
            );
        }
        out.push('\n');
    }
    out
}

fn lab(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up(a) => {
            let lab = Lab::new(&a.name.prefix);
            let exe = std::env::current_exe().context("locating the xdpgate binary")?;
            let opts = LabOptions {
                kernel_forwarding: a.kernel_forwarding == OnOff::On,
                daemon: (!a.no_daemon).then_some(DaemonOptions {
                    exe,
                    api: a.api,
                    xdp_mode: a.xdp_mode,
                }),
            };
            lab.up(&opts)?;
            println!(
                "lab {} is up: {} — {} — {} (kernel forwarding {})",
                lab.prefix,
                lab.h1(),
                lab.router(),
                lab.h2(),
                if opts.kernel_forwarding { "on" } else { "off" }
            );
            if !a.no_daemon {
                println!(
                    "xdpgate is attached to eth1 and eth2 in {}; API and UI on http://{}",
                    lab.router(),
                    a.api
                );
                println!("log: {}", lab.log_file().display());
                println!(
                    "try: ip netns exec {} ping -c 3 {}  then  xdpgate stats",
                    lab.h1(),
                    crate::lab::H2_V4
                );
            }
        }
        LabCommand::Down(a) => {
            Lab::new(&a.prefix).down()?;
            println!("lab {} is down", a.prefix);
        }
        LabCommand::Status(a) => {
            let status = Lab::new(&a.name.prefix).status(a.api);
            if a.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render_lab_status(&status));
            }
        }
    }
    Ok(())
}

fn render_lab_status(s: &crate::lab::LabStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for ns in &s.namespaces {
        let _ = writeln!(
            out,
            "namespace {:<12} {}",
            ns.name,
            if ns.exists { "present" } else { "absent" }
        );
        for l in &ns.links {
            let xdp = l
                .xdp_prog
                .map(|id| format!("xdp prog {id}"))
                .unwrap_or_else(|| "no xdp".into());
            let _ = writeln!(
                out,
                "  {:<6} {:<8} {:<14} {}",
                l.name,
                l.state,
                xdp,
                l.addresses.join(" ")
            );
        }
    }
    let _ = writeln!(
        out,
        "kernel forwarding in router: {}",
        match s.kernel_forwarding {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        }
    );
    match s.daemon_pid {
        Some(pid) => {
            let _ = writeln!(out, "daemon: running, pid {pid}, API http://{}", s.api);
        }
        None => {
            let _ = writeln!(out, "daemon: not running");
        }
    }
    match &s.stats {
        Some(v) => out.push_str(&render_stats(v, false)),
        None => {
            let _ = writeln!(out, "counters: API not reachable at {}", s.api);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_requires_an_interface_and_rejects_bad_modes() {
        // Interfaces may come from the config file: clap accepts none, and
        // `config::run_config` refuses them (tested there).
        assert!(Cli::try_parse_from(["xdpgate", "run"]).is_ok());
        let err = Cli::try_parse_from(["xdpgate", "run", "--iface", "a", "--xdp-mode", "turbo"])
            .expect_err("bad mode");
        assert!(err.to_string().contains("expected native or skb"), "{err}");
        let ok = Cli::try_parse_from(["xdpgate", "run", "--iface", "a", "--iface", "b"])
            .expect("parses");
        let Command::Run(a) = ok.command else {
            panic!("not run")
        };
        assert_eq!(a.ifaces, ["a", "b"]);
        assert_eq!(a.xdp_mode, None);
    }

    #[test]
    fn run_takes_ct_timeouts_and_refuses_unknown_states() {
        let ok = Cli::try_parse_from([
            "xdpgate",
            "run",
            "--iface",
            "a",
            "--ct-timeout",
            "established=3600",
            "--ct-timeout",
            "udp=60",
        ])
        .expect("parses");
        let Command::Run(a) = ok.command else {
            panic!("not run")
        };
        let t = crate::conntrack::timeouts_with(&a.ct_timeouts);
        assert_eq!(t[usize::from(dataplane_common::CT_TCP_ESTABLISHED)], 3600);
        assert_eq!(t[usize::from(dataplane_common::CT_UDP_UNREPLIED)], 60);
        let err = Cli::try_parse_from(["xdpgate", "run", "--iface", "a", "--ct-timeout", "tcp=5"])
            .expect_err("unknown state");
        assert!(
            err.to_string().contains("unknown connection state \"tcp\""),
            "{err}"
        );
    }

    #[test]
    fn stats_table_hides_zero_rows_unless_asked() {
        let v = serde_json::json!({
            "interfaces": [{"name": "eth1", "slot": 1, "mode": "native", "counters": {
                "actions": {"pass": {"packets": 3, "bytes": 300}, "drop": {"packets": 0, "bytes": 0}},
                "reasons": {"arp": {"packets": 3, "bytes": 300}},
                "classes": {}}}],
            "unregistered": {"actions": {}, "reasons": {}, "classes": {}},
            "total": {"actions": {"pass": {"packets": 3, "bytes": 300}}, "reasons": {}, "classes": {}}
        });
        let table = render_stats(&v, false);
        assert!(table.contains("eth1"), "{table}");
        assert!(table.contains("arp"), "{table}");
        assert!(!table.contains("drop"), "{table}");
        assert!(render_stats(&v, true).contains("drop"));
    }
}
