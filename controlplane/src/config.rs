//! The daemon's config file (`/etc/xdpgate/config.toml`, or `xdpgate run
//! --config PATH`): one key per flag of `xdpgate run`; flags override it.
//!
//! `xdpgate config check FILE` reports every mistake with its line. TOML's
//! deserializer stops at the first error, so [`check`] first parses the
//! document loosely ([`DeTable::parse_recoverable`] keeps the spans), then
//! deserializes every leaf key on its own (an unknown key or a wrong type in
//! one does not hide the next), and only then validates the values.
use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use crate::{
    cli::{DEFAULT_API, DEFAULT_DB, RunArgs},
    conntrack::CtTimeout,
    daemon::RunConfig,
    dataplane::{AttachMode, LoadOptions},
    dir24::RouteLookup,
    fib::{NeighSpec, RouteSpec},
    flowexport::ExportSettings,
};

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG: &str = "/etc/xdpgate/config.toml";

/// The file as written. Every key is optional; values are checked by
/// [`FileConfig::validate`], which keeps the spans for its messages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub interfaces: Option<Vec<Spanned<String>>>,
    pub xdp_mode: Option<Spanned<String>>,
    pub api: Option<Spanned<String>>,
    pub db: Option<Spanned<PathBuf>>,
    pub netns: Option<Spanned<String>>,
    pub tables: Option<Vec<Spanned<u32>>>,
    pub kernel_sync: Option<bool>,
    pub routes: Option<Vec<Spanned<String>>>,
    pub neighbours: Option<Vec<Spanned<String>>>,
    pub log_level: Option<Spanned<String>>,
    pub fw_bitmaps: Option<Spanned<u32>>,
    pub route_lookup: Option<Spanned<String>>,
    pub tbl8_groups: Option<Spanned<u32>>,
    pub pin_dir: Option<Spanned<PathBuf>>,
    pub tls_cert: Option<Spanned<PathBuf>>,
    pub tls_key: Option<Spanned<PathBuf>>,
    pub keep_attached: Option<bool>,
    pub conntrack: Option<ConntrackSection>,
    pub export: Option<ExportSection>,
    pub events: Option<EventsSection>,
}

/// `[export]`: IPFIX flow export (see [`crate::flowexport::ExportSettings`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    pub collectors: Option<Vec<Spanned<String>>>,
    pub active_timeout: Option<Spanned<u32>>,
    pub idle_timeout: Option<Spanned<u32>>,
    pub observation_domain: Option<Spanned<u32>>,
    pub template_refresh: Option<Spanned<u32>>,
    pub max_message: Option<Spanned<u32>>,
    pub scan_interval_ms: Option<Spanned<u32>>,
    pub drop_log_rate: Option<Spanned<u32>>,
    pub drop_log_burst: Option<Spanned<u32>>,
    pub drop_log_sample: Option<Spanned<u32>>,
}

/// `[events]`: the event log's file and syslog collector.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    pub file: Option<Spanned<PathBuf>>,
    pub syslog: Option<Spanned<String>>,
}

/// `[conntrack]`: the table's capacity and `[conntrack.timeouts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackSection {
    pub max: Option<Spanned<u32>>,
    pub timeouts: Option<BTreeMap<String, Spanned<u32>>>,
}

/// The file's settings, checked. `None` (or empty) where the file is silent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    pub ifaces: Vec<String>,
    pub mode: Option<AttachMode>,
    pub api: Option<SocketAddr>,
    pub db: Option<PathBuf>,
    pub netns: Option<String>,
    pub tables: Vec<u32>,
    pub kernel_sync: Option<bool>,
    pub routes: Option<Vec<RouteSpec>>,
    pub neighbours: Option<Vec<NeighSpec>>,
    pub log_level: Option<String>,
    pub fw_bitmaps: Option<u32>,
    pub conntrack_max: Option<u32>,
    pub route_lookup: Option<RouteLookup>,
    pub tbl8_groups: Option<u32>,
    pub pin_dir: Option<PathBuf>,
    /// `tls_cert` and `tls_key`, both checked to load.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub keep_attached: Option<bool>,
    pub ct_timeouts: Vec<CtTimeout>,
    /// `[export]` over the defaults (None: no section).
    pub export: Option<ExportSettings>,
    pub event_file: Option<PathBuf>,
    pub syslog: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One mistake (or doubt) in the file, at a line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "line {}: {s}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid:\n{}", render(.diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(
        "no interface given: pass --iface IF, or set interfaces = [\"IF\", …] in the config file \
         ({DEFAULT_CONFIG} or --config PATH)"
    )]
    NoInterfaces,
    #[error("{0}")]
    Flags(String),
}

fn render(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The outcome of checking a file: the settings when there is no error, and
/// every diagnostic (errors and warnings) in line order.
#[derive(Debug)]
pub struct Checked {
    pub settings: Option<Settings>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src.get(..offset.min(src.len()))
        .map_or(1, |s| s.matches('\n').count() + 1)
}

/// Every leaf of the document as a document of its own (tables are
/// descended, arrays are not), with the original spans.
fn leaf_docs<'i>(table: &DeTable<'i>) -> Vec<DeTable<'i>> {
    let mut out = Vec::new();
    for (k, v) in table.iter() {
        match v.get_ref() {
            DeValue::Table(t) if !t.is_empty() => {
                for sub in leaf_docs(t) {
                    let mut doc = DeTable::new();
                    doc.insert(k.clone(), Spanned::new(v.span(), DeValue::Table(sub)));
                    out.push(doc);
                }
            }
            _ => {
                let mut doc = DeTable::new();
                doc.insert(k.clone(), v.clone());
                out.push(doc);
            }
        }
    }
    out
}

/// Check `src`; `iface_exists` tells whether this host has an interface
/// (a missing one is only a warning: the file may be meant for another box).
pub fn check(src: &str, iface_exists: &dyn Fn(&str) -> bool) -> Checked {
    let mut diags = Vec::new();
    let (doc, syntax) = DeTable::parse_recoverable(src);
    for e in &syntax {
        diags.push(Diagnostic {
            line: e.span().map_or(1, |s| line_of(src, s.start)),
            severity: Severity::Error,
            message: e.message().trim().to_owned(),
        });
    }
    if !syntax.is_empty() {
        return finish(None, diags);
    }
    let span = doc.span();
    let doc = doc.into_inner();
    for leaf in leaf_docs(&doc) {
        let leaf_span = leaf
            .iter()
            .next()
            .map_or(0..0, |(k, v)| k.span().start..v.span().end);
        if let Err(e) = FileConfig::deserialize(toml::de::Deserializer::from(Spanned::new(
            span.clone(),
            leaf,
        ))) {
            let at = e.span().unwrap_or(leaf_span);
            diags.push(Diagnostic {
                line: line_of(src, at.start),
                severity: Severity::Error,
                message: e.message().trim().to_owned(),
            });
        }
    }
    if !diags.is_empty() {
        return finish(None, diags);
    }
    match FileConfig::deserialize(toml::de::Deserializer::from(Spanned::new(span, doc))) {
        Ok(file) => {
            let settings = file.validate(src, iface_exists, &mut diags);
            finish(Some(settings), diags)
        }
        Err(e) => {
            diags.push(Diagnostic {
                line: e.span().map_or(1, |s| line_of(src, s.start)),
                severity: Severity::Error,
                message: e.message().trim().to_owned(),
            });
            finish(None, diags)
        }
    }
}

fn finish(settings: Option<Settings>, mut diagnostics: Vec<Diagnostic>) -> Checked {
    diagnostics.sort_by_key(|d| d.line);
    diagnostics.dedup();
    let settings = settings.filter(|_| diagnostics.iter().all(|d| d.severity != Severity::Error));
    Checked {
        settings,
        diagnostics,
    }
}

/// Whether this host has interface `name` (a VLAN sub-interface counts).
pub fn host_has_iface(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Read and check `path`: the settings, or every error in one
/// [`ConfigError::Invalid`]. Warnings are logged.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let checked = check(&src, &host_has_iface);
    for d in checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
    {
        tracing::warn!("{}:{d}", path.display());
    }
    checked.settings.ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        diagnostics: checked.diagnostics,
    })
}

/// The file `xdpgate run` reads: `--config PATH`, else [`DEFAULT_CONFIG`]
/// when it exists, else none.
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(p) => Some(p.to_owned()),
        None => Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG)),
    }
}

impl FileConfig {
    fn validate(
        self,
        src: &str,
        iface_exists: &dyn Fn(&str) -> bool,
        diags: &mut Vec<Diagnostic>,
    ) -> Settings {
        let mut at = |span: Range<usize>, severity: Severity, message: String| {
            diags.push(Diagnostic {
                line: line_of(src, span.start),
                severity,
                message,
            });
        };
        let mut s = Settings::default();
        for i in self.interfaces.unwrap_or_default() {
            let name = i.get_ref();
            // IFNAMSIZ is 16 with the NUL (include/uapi/linux/if.h).
            if name.is_empty()
                || name.len() > 15
                || name.contains(['/', ':'])
                || name.chars().any(char::is_whitespace)
            {
                at(
                    i.span(),
                    Severity::Error,
                    format!("interfaces: {name:?} is not a valid interface name"),
                );
            } else {
                if !iface_exists(name) {
                    at(
                        i.span(),
                        Severity::Warning,
                        format!("interfaces: {name:?} does not exist on this host"),
                    );
                }
                s.ifaces.push(name.clone());
            }
        }
        if let Some(m) = self.xdp_mode {
            match m.get_ref().parse() {
                Ok(v) => s.mode = Some(v),
                Err(e) => at(m.span(), Severity::Error, format!("xdp_mode: {e}")),
            }
        }
        if let Some(a) = self.api {
            match a.get_ref().parse() {
                Ok(v) => s.api = Some(v),
                Err(_) => at(
                    a.span(),
                    Severity::Error,
                    format!(
                        "api: {:?} is not ADDRESS:PORT (e.g. 127.0.0.1:8080 or [::1]:8080)",
                        a.get_ref()
                    ),
                ),
            }
        }
        if let Some(d) = self.db {
            if d.get_ref().as_os_str().is_empty() {
                at(d.span(), Severity::Error, "db: empty path".into());
            } else {
                s.db = Some(d.into_inner());
            }
        }
        if let Some(d) = self.pin_dir {
            if !d.get_ref().starts_with("/sys/fs/bpf") {
                at(
                    d.span(),
                    Severity::Error,
                    format!(
                        "pin_dir: {:?} is not under /sys/fs/bpf (pins live on bpffs)",
                        d.get_ref()
                    ),
                );
            } else {
                s.pin_dir = Some(d.into_inner());
            }
        }
        match (self.tls_cert, self.tls_key) {
            (None, None) => {}
            (Some(c), None) => at(c.span(), Severity::Error, "tls_cert needs tls_key".into()),
            (None, Some(k)) => at(k.span(), Severity::Error, "tls_key needs tls_cert".into()),
            (Some(c), Some(k)) => {
                let mut ok = true;
                if let Err(e) = crate::tls::certificates(c.get_ref()) {
                    at(c.span(), Severity::Error, format!("tls_cert: {e}"));
                    ok = false;
                }
                if let Err(e) = crate::tls::private_key(k.get_ref()) {
                    at(k.span(), Severity::Error, format!("tls_key: {e}"));
                    ok = false;
                }
                if ok {
                    if let Err(e) = crate::tls::server_config(c.get_ref(), k.get_ref()) {
                        at(k.span(), Severity::Error, format!("tls_key: {e}"));
                    } else {
                        s.tls = Some((c.into_inner(), k.into_inner()));
                    }
                }
            }
        }
        s.keep_attached = self.keep_attached;
        if let Some(n) = self.netns {
            if n.get_ref().is_empty() || n.get_ref().contains('/') {
                at(
                    n.span(),
                    Severity::Error,
                    format!("netns: {:?} is not a namespace name", n.get_ref()),
                );
            } else {
                s.netns = Some(n.into_inner());
            }
        }
        for t in self.tables.unwrap_or_default() {
            // Table 0 is RT_TABLE_UNSPEC (include/uapi/linux/rtnetlink.h).
            if *t.get_ref() == 0 {
                at(
                    t.span(),
                    Severity::Error,
                    "tables: 0 is not a routing table (RT_TABLE_UNSPEC)".into(),
                );
            } else {
                s.tables.push(*t.get_ref());
            }
        }
        s.kernel_sync = self.kernel_sync;
        if let Some(routes) = self.routes {
            let mut ok = Vec::new();
            for r in routes {
                match r.get_ref().parse::<RouteSpec>() {
                    Ok(v) => ok.push(v),
                    Err(e) => at(r.span(), Severity::Error, format!("routes: {e}")),
                }
            }
            s.routes = Some(ok);
        }
        if let Some(neighbours) = self.neighbours {
            let mut ok = Vec::new();
            for n in neighbours {
                match n.get_ref().parse::<NeighSpec>() {
                    Ok(v) => ok.push(v),
                    Err(e) => at(n.span(), Severity::Error, format!("neighbours: {e}")),
                }
            }
            s.neighbours = Some(ok);
        }
        if let Some(l) = self.log_level {
            match tracing_subscriber::EnvFilter::try_new(l.get_ref()) {
                Ok(_) => s.log_level = Some(l.into_inner()),
                Err(e) => at(
                    l.span(),
                    Severity::Error,
                    format!(
                        "log_level: {:?}: {e} (error, warn, info, debug, trace, or RUST_LOG \
                         directives)",
                        l.get_ref()
                    ),
                ),
            }
        }
        let mut positive = |name: &str, v: Option<Spanned<u32>>| {
            let v = v?;
            if *v.get_ref() == 0 {
                at(
                    v.span(),
                    Severity::Error,
                    format!("{name}: must be at least 1"),
                );
                None
            } else {
                Some(*v.get_ref())
            }
        };
        s.fw_bitmaps = positive("fw_bitmaps", self.fw_bitmaps);
        s.tbl8_groups = positive("tbl8_groups", self.tbl8_groups);
        let ct = self.conntrack.unwrap_or_default();
        s.conntrack_max = positive("conntrack.max", ct.max);
        if let Some(r) = self.route_lookup {
            match r.get_ref().parse() {
                Ok(v) => s.route_lookup = Some(v),
                Err(e) => at(r.span(), Severity::Error, format!("route_lookup: {e}")),
            }
        }
        for (name, secs) in ct.timeouts.unwrap_or_default() {
            match format!("{name}={}", secs.get_ref()).parse::<CtTimeout>() {
                Ok(t) => s.ct_timeouts.push(t),
                Err(e) => at(
                    secs.span(),
                    Severity::Error,
                    format!("conntrack.timeouts: {e}"),
                ),
            }
        }
        if let Some(x) = self.export {
            s.export = x.validate(&mut at);
        }
        if let Some(ev) = self.events {
            if let Some(f) = ev.file {
                if f.get_ref().as_os_str().is_empty() {
                    at(f.span(), Severity::Error, "events.file: empty path".into());
                } else {
                    s.event_file = Some(f.into_inner());
                }
            }
            if let Some(a) = ev.syslog {
                match a.get_ref().parse() {
                    Ok(v) => s.syslog = Some(v),
                    Err(_) => at(
                        a.span(),
                        Severity::Error,
                        format!(
                            "events.syslog: {:?} is not ADDRESS:PORT (e.g. 198.18.9.2:514)",
                            a.get_ref()
                        ),
                    ),
                }
            }
        }
        s
    }
}

impl ExportSection {
    /// The section over the defaults; every mistake reported at its line.
    fn validate(
        self,
        at: &mut impl FnMut(Range<usize>, Severity, String),
    ) -> Option<ExportSettings> {
        let mut x = ExportSettings::default();
        let mut ok = true;
        let mut spans: Vec<(&'static str, Range<usize>)> = Vec::new();
        for c in self.collectors.unwrap_or_default() {
            match c.get_ref().parse() {
                Ok(a) => {
                    spans.push(("collectors", c.span()));
                    x.collectors.push(a);
                }
                Err(_) => {
                    ok = false;
                    at(
                        c.span(),
                        Severity::Error,
                        format!(
                            "export.collectors: {:?} is not ADDRESS:PORT (e.g. 198.18.9.2:4739)",
                            c.get_ref()
                        ),
                    );
                }
            }
        }
        let mut num = |name: &'static str, v: Option<Spanned<u32>>, field: &mut u32| {
            if let Some(v) = v {
                spans.push((name, v.span()));
                *field = *v.get_ref();
            }
        };
        num("active_timeout", self.active_timeout, &mut x.active_timeout);
        num("idle_timeout", self.idle_timeout, &mut x.idle_timeout);
        num(
            "observation_domain",
            self.observation_domain,
            &mut x.observation_domain,
        );
        num(
            "template_refresh",
            self.template_refresh,
            &mut x.template_refresh,
        );
        num(
            "scan_interval_ms",
            self.scan_interval_ms,
            &mut x.scan_interval_ms,
        );
        num("drop_log_rate", self.drop_log_rate, &mut x.drop_log_rate);
        num("drop_log_burst", self.drop_log_burst, &mut x.drop_log_burst);
        num(
            "drop_log_sample",
            self.drop_log_sample,
            &mut x.drop_log_sample,
        );
        if let Some(m) = self.max_message {
            spans.push(("max_message", m.span()));
            x.max_message = u16::try_from(*m.get_ref()).unwrap_or(u16::MAX);
        }
        if let Err(e) = x.validate() {
            let field = match &e {
                crate::flowexport::SettingsError::Range { field, .. } => field,
                _ => "collectors",
            };
            let span = spans
                .iter()
                .rev()
                .find(|(n, _)| *n == field)
                .map(|(_, s)| s.clone())
                .unwrap_or(0..0);
            at(span, Severity::Error, format!("export.{e}"));
            ok = false;
        }
        ok.then_some(x)
    }
}

/// `xdpgate run`'s configuration: the flags over the file over the
/// defaults. A list given by flags (`--iface`, `--table`, `--route`,
/// `--neigh`) replaces the file's list; `--ct-timeout` overrides the file's
/// timeout of the same state only.
pub fn run_config(a: RunArgs, file: Settings) -> Result<RunConfig, ConfigError> {
    let export = export_settings(&a, file.export.clone())?;
    let ifaces = if a.ifaces.is_empty() {
        file.ifaces
    } else {
        a.ifaces
    };
    if ifaces.is_empty() {
        return Err(ConfigError::NoInterfaces);
    }
    let tables = [a.tables, file.tables]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| vec![crate::netlink::RT_TABLE_MAIN]);
    let routes = if a.routes.is_empty() {
        file.routes.unwrap_or_default()
    } else {
        a.routes
    };
    let neighbours = if a.neighbours.is_empty() {
        file.neighbours.unwrap_or_default()
    } else {
        a.neighbours
    };
    let mut timeouts = file.ct_timeouts;
    timeouts.extend(a.ct_timeouts);
    Ok(RunConfig {
        ifaces,
        mode: a.xdp_mode.or(file.mode).unwrap_or(AttachMode::Native),
        api: a
            .api
            .or(file.api)
            .unwrap_or_else(|| DEFAULT_API.parse().expect("DEFAULT_API is an address")),
        db: a.db.or(file.db).unwrap_or_else(|| DEFAULT_DB.into()),
        netns: a.netns.or(file.netns),
        routes,
        neighbours,
        kernel_sync: !a.no_kernel_sync && file.kernel_sync.unwrap_or(true),
        tables,
        netlink_rcvbuf: a.netlink_rcvbuf,
        load: LoadOptions {
            fw_bitmaps: a
                .fw_bitmaps
                .or(file.fw_bitmaps)
                .unwrap_or(dataplane_common::FW_DEFAULT_BITMAPS),
            conntrack_max: a
                .conntrack_max
                .or(file.conntrack_max)
                .unwrap_or(dataplane_common::CT_DEFAULT_MAX),
            route_lookup: a.route_lookup.or(file.route_lookup).unwrap_or_default(),
            tbl8_groups: a
                .tbl8_groups
                .or(file.tbl8_groups)
                .unwrap_or(dataplane_common::DIR24_DEFAULT_TBL8_GROUPS),
            ..Default::default()
        },
        ct_timeouts: crate::conntrack::timeouts_with(&timeouts),
        export,
        event_log: a.event_log.clone().or(file.event_file),
        syslog: a.syslog.or(file.syslog),
        pin_dir: a.pin_dir.clone().or(file.pin_dir),
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            _ => file.tls,
        },
        fresh: a.fresh,
        keep_attached: a.keep_attached || file.keep_attached.unwrap_or(false),
    })
}

/// `[export]` with the `--ipfix-*` flags over it.
fn export_settings(
    a: &RunArgs,
    file: Option<ExportSettings>,
) -> Result<ExportSettings, ConfigError> {
    let mut x = file.unwrap_or_default();
    if !a.ipfix_collectors.is_empty() {
        x.collectors = a.ipfix_collectors.clone();
    }
    let set = |field: &mut u32, v: Option<u32>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut x.active_timeout, a.ipfix_active_timeout);
    set(&mut x.idle_timeout, a.ipfix_idle_timeout);
    set(&mut x.observation_domain, a.ipfix_domain);
    set(&mut x.template_refresh, a.ipfix_template_refresh);
    set(&mut x.scan_interval_ms, a.ipfix_scan_interval_ms);
    if let Some(m) = a.ipfix_max_message {
        x.max_message = m;
    }
    x.validate()
        .map_err(|e| ConfigError::Flags(format!("--ipfix-*: {e}")))?;
    Ok(x)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn everywhere(_: &str) -> bool {
        true
    }

    const GOOD: &str = r#"
interfaces = ["eth1", "eth2"]
xdp_mode = "skb"
api = "0.0.0.0:9090"
db = "/tmp/x.db"
tables = [254, 100]
kernel_sync = false
routes = ["198.18.5.0/24 via 198.18.2.2 dev eth2"]
neighbours = ["198.18.2.2 lladdr 02:00:00:00:00:01 dev eth2"]
log_level = "debug"
fw_bitmaps = 64
route_lookup = "lpm"
tbl8_groups = 128
pin_dir = "/sys/fs/bpf/xdpgate-test"
keep_attached = true

[conntrack]
max = 1000
[conntrack.timeouts]
established = 3600
udp = 60
"#;

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["xdpgate", "run"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(a) => a,
            _ => panic!("not run"),
        }
    }

    #[test]
    fn parses_every_key() {
        let c = check(GOOD, &everywhere);
        assert_eq!(c.diagnostics, []);
        let s = c.settings.expect("valid");
        assert_eq!(s.ifaces, ["eth1", "eth2"]);
        assert_eq!(s.mode, Some(AttachMode::Skb));
        assert_eq!(s.api, Some("0.0.0.0:9090".parse().expect("addr")));
        assert_eq!(s.tables, [254, 100]);
        assert_eq!(s.kernel_sync, Some(false));
        assert_eq!(s.routes.as_ref().map(Vec::len), Some(1));
        assert_eq!(s.neighbours.as_ref().map(Vec::len), Some(1));
        assert_eq!(s.log_level.as_deref(), Some("debug"));
        assert_eq!(s.route_lookup, Some(RouteLookup::Lpm));
        assert_eq!(s.conntrack_max, Some(1000));
        assert_eq!(s.pin_dir, Some(PathBuf::from("/sys/fs/bpf/xdpgate-test")));
        assert_eq!(s.keep_attached, Some(true));
        assert_eq!(s.ct_timeouts.len(), 2);
    }

    #[test]
    fn flags_override_the_file() {
        let s = check(GOOD, &everywhere).settings.expect("valid");
        let c = run_config(
            run_args(&[
                "--iface",
                "eth9",
                "--xdp-mode",
                "native",
                "--ct-timeout",
                "udp=5",
                "--fw-bitmaps",
                "32",
            ]),
            s.clone(),
        )
        .expect("merges");
        assert_eq!(c.ifaces, ["eth9"]);
        assert_eq!(c.mode, AttachMode::Native);
        assert_eq!(c.load.fw_bitmaps, 32);
        // Not given as flags: the file's.
        assert_eq!(c.api, "0.0.0.0:9090".parse().expect("addr"));
        assert_eq!(c.db, PathBuf::from("/tmp/x.db"));
        assert!(!c.kernel_sync);
        assert_eq!(c.tables, [254, 100]);
        assert_eq!(c.load.conntrack_max, 1000);
        assert_eq!(c.load.route_lookup, RouteLookup::Lpm);
        assert_eq!(c.load.tbl8_groups, 128);
        assert!(c.keep_attached);
        assert_eq!(c.pins().root(), Path::new("/sys/fs/bpf/xdpgate-test"));
        assert_eq!(
            c.ct_timeouts[usize::from(dataplane_common::CT_UDP_UNREPLIED)],
            5
        );
        assert_eq!(
            c.ct_timeouts[usize::from(dataplane_common::CT_TCP_ESTABLISHED)],
            3600
        );
        // No file: the built-in defaults.
        let d = run_config(run_args(&["--iface", "a"]), Settings::default()).expect("merges");
        assert_eq!(d.mode, AttachMode::Native);
        assert_eq!(d.api, DEFAULT_API.parse().expect("addr"));
        assert_eq!(d.db, PathBuf::from(DEFAULT_DB));
        assert!(d.kernel_sync);
        assert_eq!(d.tables, [crate::netlink::RT_TABLE_MAIN]);
        assert!(!d.keep_attached && !d.fresh);
        assert_eq!(d.pins().root(), Path::new("/sys/fs/bpf/xdpgate"));
    }

    #[test]
    fn interfaces_must_come_from_somewhere() {
        let err = run_config(run_args(&[]), Settings::default()).expect_err("no interfaces");
        assert!(err.to_string().contains("--iface"), "{err}");
        let c = run_config(
            run_args(&[]),
            Settings {
                ifaces: vec!["eth1".into()],
                ..Default::default()
            },
        )
        .expect("file gives them");
        assert_eq!(c.ifaces, ["eth1"]);
    }

    #[test]
    fn names_the_line_of_every_mistake() {
        let src = "\
interfaces = [\"eth1\"]
xdp_mode = \"turbo\"
api = \"localhost\"
bogus = 1
fw_bitmaps = \"many\"
tables = [0]
routes = [\"not a route\"]
log_level = \"info,=[\"
route_lookup = \"hash\"
pin_dir = \"/tmp/pins\"

[conntrack]
max = 0
colour = \"red\"
[conntrack.timeouts]
tcp = 5
";
        let c = check(src, &everywhere);
        assert!(c.settings.is_none());
        let lines: Vec<usize> = c.diagnostics.iter().map(|d| d.line).collect();
        // Structural mistakes first (they stop the typed parse) ...
        assert_eq!(lines, [4, 5, 14], "{:#?}", c.diagnostics);
        assert!(c.diagnostics[0].message.contains("bogus"));
        // ... then, once fixed, every value mistake.
        let fixed: String = src
            .lines()
            .filter(|l| !l.starts_with("bogus") && !l.starts_with("colour"))
            .map(|l| {
                if l.starts_with("fw_bitmaps") {
                    "fw_bitmaps = 8\n".to_owned()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let c = check(&fixed, &everywhere);
        let lines: Vec<usize> = c.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3, 5, 6, 7, 8, 9, 12, 14], "{:#?}", c.diagnostics);
        assert!(c.errors() == 9);
    }

    #[test]
    fn syntax_errors_have_lines_and_missing_interfaces_only_warn() {
        let c = check("interfaces = [\"eth1\"]\napi = \n", &everywhere);
        assert_eq!(c.diagnostics.first().map(|d| d.line), Some(2));
        let c = check("interfaces = [\"nosuch0\"]\n", &|_| false);
        assert_eq!(c.errors(), 0);
        assert_eq!(c.diagnostics.len(), 1);
        assert_eq!(c.diagnostics[0].severity, Severity::Warning);
        assert!(c.settings.is_some());
    }

    #[test]
    fn export_and_events_sections_are_checked_and_flags_win() {
        let src = "\
interfaces = [\"eth1\"]
[export]
collectors = [\"198.18.9.2:4739\", \"[2001:db8::9]:4739\"]
idle_timeout = 5
drop_log_sample = 10
[events]
file = \"/tmp/ev.jsonl\"
syslog = \"198.18.9.2:514\"
";
        let c = check(src, &everywhere);
        assert_eq!(c.errors(), 0, "{:#?}", c.diagnostics);
        let s = c.settings.expect("settings");
        let x = s.export.clone().expect("[export]");
        assert_eq!(x.collectors.len(), 2);
        assert_eq!((x.idle_timeout, x.drop_log_sample), (5, 10));
        assert_eq!(x.active_timeout, 60, "defaults fill the rest");
        assert_eq!(s.syslog, Some("198.18.9.2:514".parse().expect("addr")));
        // Flags over the file.
        let r = run_config(
            run_args(&["--ipfix-idle-timeout", "7", "--syslog", "198.18.9.3:514"]),
            s,
        )
        .expect("run config");
        assert_eq!(r.export.idle_timeout, 7);
        assert_eq!(r.export.collectors.len(), 2);
        assert_eq!(r.syslog, Some("198.18.9.3:514".parse().expect("addr")));
        assert_eq!(r.event_log, Some(PathBuf::from("/tmp/ev.jsonl")));

        // Every mistake on its line.
        let bad = "\
interfaces = [\"eth1\"]
[export]
collectors = [\"not-an-address\"]
idle_timeout = 0
[events]
syslog = \"514\"
";
        let c = check(bad, &everywhere);
        let lines: Vec<usize> = c.diagnostics.iter().map(|d| d.line).collect();
        assert!(c.settings.is_none());
        assert!(
            lines.contains(&3) && lines.contains(&6),
            "{:#?}",
            c.diagnostics
        );
        let c = check("[export]\ncolour = 1\n", &everywhere);
        assert!(
            c.diagnostics
                .iter()
                .any(|d| d.line == 2 && d.message.contains("colour")),
            "{:#?}",
            c.diagnostics
        );
    }

    #[test]
    fn tls_keys_come_in_pairs_and_must_load() {
        let dir = std::env::temp_dir().join(format!("xg-tls-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not PEM\n").expect("write");
        let src = format!("interfaces = [\"eth1\"]\ntls_cert = {junk:?}\n");
        let c = check(&src, &everywhere);
        assert_eq!(c.diagnostics.len(), 1, "{:#?}", c.diagnostics);
        assert_eq!(c.diagnostics[0].line, 2);
        assert!(c.diagnostics[0].message.contains("tls_cert needs tls_key"));
        let src = format!("interfaces = [\"eth1\"]\ntls_cert = {junk:?}\ntls_key = {junk:?}\n");
        let c = check(&src, &everywhere);
        let lines: Vec<usize> = c.diagnostics.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 3], "{:#?}", c.diagnostics);
        assert!(
            c.diagnostics[0].message.contains("no PEM certificate"),
            "{:#?}",
            c.diagnostics
        );
        assert!(
            c.diagnostics[1].message.contains("no PEM private key"),
            "{:#?}",
            c.diagnostics
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let src = include_str!("../../deploy/config.toml");
        let c = check(src, &everywhere);
        assert_eq!(c.errors(), 0, "{:#?}", c.diagnostics);
    }
}
