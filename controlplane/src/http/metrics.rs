//! `GET /metrics`: the Prometheus text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).
//!
//! Written by hand rather than with `prometheus-client`: every value here
//! is read from the BPF maps, the Fib and the sync status at scrape time,
//! which that crate models as a custom collector anyway; what it would add
//! (escaping, HELP/TYPE lines) is a few lines, kept next to the test that
//! parses the output back.
//!
//! Collection ([`collect`]) and rendering ([`render`]) are separate, so the
//! format is tested on synthetic data without root.
use std::{
    collections::BTreeMap,
    fmt::{Display, Write as _},
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};
use dataplane_common::{Class, Reason};

use super::{AppState, Error};
use crate::{
    dataplane::{Count, Dataplane, SlotCounters},
    firewall::rule::Chain,
    flowexport::ExportCounters,
    netlink::sync::SyncStatus,
    outbox::{Class as OutboxClass, ClassCounts},
};
use std::sync::atomic::Ordering;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a conntrack entry count is reused: counting walks the table
/// one syscall per entry (a quarter of a second at the default capacity)
/// under the dataplane lock, which a scrape every few seconds must not hold
/// most of the time.
const CONNTRACK_COUNT_TTL: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// The Prometheus text exposition (format 0.0.4).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    responses((
        status = 200,
        description = "Every metric",
        body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8",
    )),
)]
async fn metrics(State(state): State<AppState>) -> Result<Response, Error> {
    let snapshot = collect(&state).await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot)).into_response())
}

/// One interface: managed (in the Fib, with counters) or wanted.
#[derive(Debug, Clone)]
pub struct IfaceMetrics {
    pub name: String,
    pub attached: bool,
    pub counters: Option<SlotCounters>,
}

#[derive(Debug, Clone)]
pub struct RuleMetrics {
    pub chain: &'static str,
    /// In its chain, from 1 (as `GET /api/v1/firewall/active`).
    pub position: usize,
    pub rule_id: u32,
    pub action: &'static str,
    pub count: Count,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub interfaces: Vec<IfaceMetrics>,
    pub unregistered: SlotCounters,
    pub rules: Vec<RuleMetrics>,
    /// (chain, policy verdict, counters).
    pub policies: Vec<(&'static str, &'static str, Count)>,
    pub firewall_commit: Option<i64>,
    pub firewall_generation: u32,
    pub conntrack_entries: u64,
    pub conntrack_capacity: u32,
    /// (map, entries, capacity).
    pub maps: Vec<(&'static str, u64, u64)>,
    pub sync: SyncStatus,
    /// Flow export and the outbox's classes (absent without an exporter).
    pub export: Option<ExportCounters>,
    pub outbox: Vec<(&'static str, ClassCounts)>,
    /// Event log: (events written, file write errors).
    pub events: Option<(u64, u64)>,
    /// The firewall drop log (absent without its reader).
    pub drop_log: Option<crate::firewall_log::DropLogStats>,
}

/// Read every source: the firewall first (its lock, then the dataplane's,
/// as every firewall operation takes them), then the dataplane on a
/// blocking thread.
async fn collect(state: &AppState) -> Result<Snapshot, Error> {
    let mut snap = Snapshot {
        sync: state.sync.borrow().clone(),
        ..Snapshot::default()
    };
    if let Some(x) = &state.export {
        snap.export = Some(x.counters());
        let stats = x.outbox().stats();
        snap.outbox = vec![
            ("ipfix", stats.class(OutboxClass::Ipfix).snapshot()),
            ("syslog", stats.class(OutboxClass::Syslog).snapshot()),
        ];
    }
    snap.drop_log = state.drop_log.as_ref().map(|d| d.stats());
    if let Some(log) = crate::events::current() {
        let st = log.stats();
        snap.events = Some((
            st.emitted.load(Ordering::Relaxed),
            st.file_errors.load(Ordering::Relaxed),
        ));
    }
    {
        let fw = state.firewall.lock().await;
        let counters = fw.counters()?;
        if let Some(active) = fw.active() {
            snap.firewall_commit = Some(active.commit);
            let mut next_position = [0usize; Chain::ALL.len()];
            for r in &active.ruleset.rules {
                let position = &mut next_position[r.chain.index() as usize];
                *position += 1;
                snap.rules.push(RuleMetrics {
                    chain: r.chain.name(),
                    position: *position,
                    rule_id: r.id,
                    action: r.action.name(),
                    count: counters.rules.get(&r.id).copied().unwrap_or_default(),
                });
            }
            let p = active.ruleset.policy;
            snap.policies = vec![
                ("forward", p.forward.name(), counters.forward_policy),
                ("input", p.input.name(), counters.input_policy),
            ];
        } else {
            // No commit yet: both chains accept.
            snap.policies = vec![
                ("forward", "accept", counters.forward_policy),
                ("input", "accept", counters.input_policy),
            ];
        }
    }
    let dp = state.dataplane.clone();
    let wanted = state.wanted.all();
    tokio::task::spawn_blocking(move || -> Result<Snapshot, Error> {
        let key = std::sync::Arc::as_ptr(&dp) as usize;
        let dp = dp.lock().expect("dataplane lock poisoned");
        collect_dataplane(&dp, key, &wanted, &mut snap)?;
        Ok(snap)
    })
    .await
    .expect("metrics collection panicked")
}

fn collect_dataplane(
    dp: &Dataplane,
    key: usize,
    wanted: &[(String, crate::dataplane::AttachMode)],
    snap: &mut Snapshot,
) -> Result<(), Error> {
    let mut ifaces: BTreeMap<String, IfaceMetrics> = BTreeMap::new();
    for (name, _) in wanted {
        ifaces.insert(
            name.clone(),
            IfaceMetrics {
                name: name.clone(),
                attached: false,
                counters: None,
            },
        );
    }
    for (iface, slot) in dp.fib().ifaces() {
        let counters = dp.counters().slot(slot)?;
        ifaces
            .entry(iface.name.clone())
            .or_insert_with(|| IfaceMetrics {
                name: iface.name.clone(),
                attached: false,
                counters: None,
            })
            .counters = Some(counters);
    }
    for a in dp.attachments() {
        if let Some(i) = ifaces.get_mut(&a.name) {
            i.attached = true;
        }
    }
    snap.interfaces = ifaces.into_values().collect();
    snap.unregistered = dp.counters().slot(0)?;
    snap.firewall_generation = dp.firewall().active_generation()?;
    snap.conntrack_capacity = dp.firewall().conntrack_capacity();
    snap.conntrack_entries = conntrack_entries(dp, key);
    snap.maps = dp
        .map_fill()
        .into_iter()
        .map(|m| (m.name, m.entries, m.capacity))
        .collect();
    Ok(())
}

/// Entries in the connection table, counted at most every
/// [`CONNTRACK_COUNT_TTL`] per dataplane (`key`).
fn conntrack_entries(dp: &Dataplane, key: usize) -> u64 {
    static CACHE: Mutex<Option<(usize, Instant, u64)>> = Mutex::new(None);
    let mut cache = CACHE.lock().expect("conntrack count cache poisoned");
    if let Some((k, at, n)) = *cache
        && k == key
        && at.elapsed() < CONNTRACK_COUNT_TTL
    {
        return n;
    }
    // A key that vanishes mid-walk ends the walk with an error; what was
    // counted so far is the answer (the next scrape counts again).
    let n = dp
        .firewall()
        .conntrack()
        .keys()
        .take_while(Result::is_ok)
        .count() as u64;
    *cache = Some((key, Instant::now(), n));
    n
}

/// Prometheus metric types used here.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// A text exposition being written: one HELP and one TYPE line per family,
/// then its samples.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text: backslash and line feed escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

fn flag(b: bool) -> u8 {
    b.into()
}

/// The exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition { out: String::new() };

    e.family(
        "xdpgate_build_info",
        Kind::Gauge,
        "Always 1; the labels name the running build.",
    );
    e.sample(
        "xdpgate_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    e.family(
        "xdpgate_interface_attached",
        Kind::Gauge,
        "1 if XDP runs on the interface, 0 if it is wanted or managed but not attached.",
    );
    for i in &s.interfaces {
        e.sample(
            "xdpgate_interface_attached",
            &[("iface", &i.name)],
            flag(i.attached),
        );
    }

    for (unit, help) in [
        (
            "packets",
            "Frames XDP handled, by ingress interface and reason.",
        ),
        (
            "bytes",
            "Bytes of the frames XDP handled, by ingress interface and reason.",
        ),
    ] {
        let name = format!("xdpgate_{unit}_total");
        e.family(&name, Kind::Counter, help);
        for i in &s.interfaces {
            let Some(c) = &i.counters else { continue };
            for r in Reason::ALL {
                let n = c.reason(r);
                e.sample(
                    &name,
                    &[
                        ("iface", &i.name),
                        ("reason", r.name()),
                        ("action", r.action().name()),
                    ],
                    if unit == "packets" {
                        n.packets
                    } else {
                        n.bytes
                    },
                );
            }
        }
    }

    for (unit, help) in [
        (
            "packets",
            "Frames from interfaces xdpgate does not manage, by reason.",
        ),
        (
            "bytes",
            "Bytes of frames from interfaces xdpgate does not manage, by reason.",
        ),
    ] {
        let name = format!("xdpgate_unregistered_{unit}_total");
        e.family(&name, Kind::Counter, help);
        for r in Reason::ALL {
            let n = s.unregistered.reason(r);
            e.sample(
                &name,
                &[("reason", r.name()), ("action", r.action().name())],
                if unit == "packets" {
                    n.packets
                } else {
                    n.bytes
                },
            );
        }
    }

    for (unit, help) in [
        (
            "packets",
            "Frames XDP handled, by ingress interface and traffic class.",
        ),
        (
            "bytes",
            "Bytes XDP handled, by ingress interface and traffic class.",
        ),
    ] {
        let name = format!("xdpgate_class_{unit}_total");
        e.family(&name, Kind::Counter, help);
        for i in &s.interfaces {
            let Some(c) = &i.counters else { continue };
            for class in Class::ALL {
                let n = c.class(class);
                e.sample(
                    &name,
                    &[("iface", &i.name), ("class", class.name())],
                    if unit == "packets" {
                        n.packets
                    } else {
                        n.bytes
                    },
                );
            }
        }
    }

    for (unit, help) in [
        (
            "packets",
            "Frames matched by each rule of the active ruleset, since the daemon started.",
        ),
        (
            "bytes",
            "Bytes matched by each rule of the active ruleset, since the daemon started.",
        ),
    ] {
        let name = format!("xdpgate_firewall_rule_{unit}_total");
        e.family(&name, Kind::Counter, help);
        for r in &s.rules {
            let position = r.position.to_string();
            let id = r.rule_id.to_string();
            e.sample(
                &name,
                &[
                    ("chain", r.chain),
                    ("position", &position),
                    ("rule_id", &id),
                    ("action", r.action),
                ],
                if unit == "packets" {
                    r.count.packets
                } else {
                    r.count.bytes
                },
            );
        }
    }

    for (unit, help) in [
        (
            "packets",
            "Frames no rule matched, by chain and its policy.",
        ),
        ("bytes", "Bytes no rule matched, by chain and its policy."),
    ] {
        let name = format!("xdpgate_firewall_policy_{unit}_total");
        e.family(&name, Kind::Counter, help);
        for (chain, action, c) in &s.policies {
            e.sample(
                &name,
                &[("chain", chain), ("action", action)],
                if unit == "packets" {
                    c.packets
                } else {
                    c.bytes
                },
            );
        }
    }

    e.family(
        "xdpgate_firewall_active_commit",
        Kind::Gauge,
        "Id of the committed ruleset packets are classified with (absent before the first commit).",
    );
    if let Some(c) = s.firewall_commit {
        e.sample("xdpgate_firewall_active_commit", &[], c);
    }
    e.family(
        "xdpgate_firewall_generation",
        Kind::Gauge,
        "The firewall table generation packets use now (flips on every commit).",
    );
    e.sample("xdpgate_firewall_generation", &[], s.firewall_generation);

    e.family(
        "xdpgate_conntrack_entries",
        Kind::Gauge,
        "Entries in the connection table, expired ones not yet swept included (counted at most every 5 s).",
    );
    e.sample("xdpgate_conntrack_entries", &[], s.conntrack_entries);
    e.family(
        "xdpgate_conntrack_capacity",
        Kind::Gauge,
        "Capacity of the connection table.",
    );
    e.sample("xdpgate_conntrack_capacity", &[], s.conntrack_capacity);

    e.family(
        "xdpgate_map_entries",
        Kind::Gauge,
        "Entries of a forwarding table, as the control plane wrote them.",
    );
    for (map, n, _) in &s.maps {
        e.sample("xdpgate_map_entries", &[("map", map)], n);
    }
    e.family(
        "xdpgate_map_capacity",
        Kind::Gauge,
        "Capacity of a forwarding table.",
    );
    for (map, _, cap) in &s.maps {
        e.sample("xdpgate_map_capacity", &[("map", map)], cap);
    }

    let sync = &s.sync;
    for (name, help, value) in [
        (
            "xdpgate_kernel_sync_enabled",
            "1 if the daemon follows the kernel's links, routes and neighbours.",
            flag(sync.enabled),
        ),
        (
            "xdpgate_kernel_sync_in_sync",
            "1 once a complete kernel snapshot has been applied.",
            flag(sync.in_sync),
        ),
    ] {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], value);
    }
    for (name, help, value) in [
        (
            "xdpgate_kernel_sync_snapshots_total",
            "Complete kernel dumps applied (the first, then one per overrun).",
            sync.snapshots,
        ),
        (
            "xdpgate_kernel_sync_events_total",
            "Kernel events processed.",
            sync.events,
        ),
        (
            "xdpgate_kernel_sync_changes_total",
            "Changes to the forwarding tables the kernel sync made.",
            sync.changes,
        ),
        (
            "xdpgate_kernel_sync_errors_total",
            "Changes the forwarding tables refused (full tables, ...), each logged.",
            sync.errors,
        ),
    ] {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[], value);
    }
    for (name, help, value) in [
        (
            "xdpgate_kernel_sync_routes",
            "Routes the kernel sync wants in XDP.",
            sync.routes,
        ),
        (
            "xdpgate_kernel_sync_neighbours",
            "Neighbours the kernel sync wants in XDP.",
            sync.neighbours,
        ),
    ] {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], value);
    }
    e.family(
        "xdpgate_kernel_sync_last_snapshot_seconds",
        Kind::Gauge,
        "How long applying the last complete kernel snapshot took.",
    );
    if let Some(ms) = sync.last_snapshot_ms {
        e.sample(
            "xdpgate_kernel_sync_last_snapshot_seconds",
            &[],
            ms as f64 / 1000.0,
        );
    }
    render_export(&mut e, s);
    e.out
}

/// Flow export, the outbox and the event log.
fn render_export(e: &mut Exposition, s: &Snapshot) {
    if let Some(x) = &s.export {
        e.family(
            "xdpgate_export_records_total",
            Kind::Counter,
            "IPFIX flow records built, by whether the outbox took them (queued) or was full (dropped).",
        );
        e.sample(
            "xdpgate_export_records_total",
            &[("result", "queued")],
            x.records_queued,
        );
        e.sample(
            "xdpgate_export_records_total",
            &[("result", "dropped")],
            x.records_dropped,
        );
        for (name, kind, help, value) in [
            (
                "xdpgate_export_messages_total",
                Kind::Counter,
                "IPFIX messages handed to the outbox.",
                x.messages,
            ),
            (
                "xdpgate_export_scans_total",
                Kind::Counter,
                "Scans of the connection table by the exporter.",
                x.scans,
            ),
            (
                "xdpgate_export_scan_errors_total",
                Kind::Counter,
                "Exporter scans that failed to read a map (each logged).",
                x.scan_errors,
            ),
            (
                "xdpgate_export_flows",
                Kind::Gauge,
                "Flows the exporter follows.",
                x.flows,
            ),
        ] {
            e.family(name, kind, help);
            e.sample(name, &[], value);
        }
        e.family(
            "xdpgate_export_last_scan_seconds",
            Kind::Gauge,
            "How long the exporter's last scan of the connection table took.",
        );
        e.sample(
            "xdpgate_export_last_scan_seconds",
            &[],
            x.last_scan_us as f64 / 1e6,
        );
    }
    if !s.outbox.is_empty() {
        e.family(
            "xdpgate_outbox_datagrams_total",
            Kind::Counter,
            "UDP datagrams of the appliance's own output (IPFIX, syslog): sent (the kernel took them), dropped (queue full: a slow or absent collector) or send_error.",
        );
        for (class, c) in &s.outbox {
            for (result, n) in [
                ("sent", c.sent),
                ("dropped", c.dropped),
                ("send_error", c.send_errors),
            ] {
                e.sample(
                    "xdpgate_outbox_datagrams_total",
                    &[("class", class), ("result", result)],
                    n,
                );
            }
        }
        e.family(
            "xdpgate_outbox_bytes_total",
            Kind::Counter,
            "Payload bytes of the datagrams the kernel took, by class.",
        );
        for (class, c) in &s.outbox {
            e.sample("xdpgate_outbox_bytes_total", &[("class", class)], c.bytes);
        }
    }
    if let Some(d) = &s.drop_log {
        e.family(
            "xdpgate_firewall_log_packets_total",
            Kind::Counter,
            "Packets of rules with log = true, by what the XDP program did with them: written to the FW_LOG ring, lost (the ring was full) or sampled_out.",
        );
        for (result, n) in [
            ("written", d.kernel_written),
            ("lost", d.kernel_lost),
            ("sampled_out", d.kernel_sampled_out),
        ] {
            e.sample(
                "xdpgate_firewall_log_packets_total",
                &[("result", result)],
                n,
            );
        }
        e.family(
            "xdpgate_firewall_log_records_total",
            Kind::Counter,
            "Records read from the FW_LOG ring, by outcome: emitted as events, suppressed by the rate limit, or malformed.",
        );
        for (result, n) in [
            ("emitted", d.emitted),
            ("suppressed", d.suppressed),
            ("malformed", d.malformed),
        ] {
            e.sample(
                "xdpgate_firewall_log_records_total",
                &[("result", result)],
                n,
            );
        }
    }
    if let Some((emitted, file_errors)) = s.events {
        e.family(
            "xdpgate_events_total",
            Kind::Counter,
            "Events written to the event log.",
        );
        e.sample("xdpgate_events_total", &[], emitted);
        e.family(
            "xdpgate_event_file_errors_total",
            Kind::Counter,
            "Event lines the event log file failed to take.",
        );
        e.sample("xdpgate_event_file_errors_total", &[], file_errors);
    }
}

#[cfg(test)]
mod tests;
