//! Flow export: IPFIX (RFC 7011) records built from the connection table
//! and sent to collectors through the [`crate::outbox`] (the sockio I/O
//! layer, so `XDPGATE_IO_BACKEND=io_uring` moves them to io_uring).
//!
//! A thread of its own scans the table every `scan_interval_ms` through its
//! own map handles (never holding the dataplane lock), asks the
//! [`flows::Tracker`] which connections are due, encodes their records per
//! collector ([`ipfix::Encoder`]: one sequence number per collector) and
//! hands the messages to the outbox, which never blocks: a slow or absent
//! collector costs dropped messages, counted, never memory or time.
pub mod flows;
pub mod ipfix;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::maps::MapError;
use dataplane_common::{CtCounters, CtKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    dataplane::{Dataplane, DataplaneError, FlowMaps},
    outbox::{Class, Outbox},
};
use flows::{Clock, Timeouts, Tracker};

/// How long one message may wait for room in the outbox's queue.
const SEND_WAIT: Duration = Duration::from_millis(50);

/// At most this many collectors.
pub const MAX_COLLECTORS: usize = 8;

/// What to export where. Export is on when there is a collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// IPFIX collectors, `ADDRESS:PORT` (UDP; 4739 is IPFIX's port).
    #[schema(value_type = Vec<String>, example = json!(["198.18.9.2:4739"]))]
    pub collectors: Vec<SocketAddr>,
    /// Seconds: a long-lived flow gets a record at least this often.
    pub active_timeout: u32,
    /// Seconds without a packet after which a flow gets its last record.
    pub idle_timeout: u32,
    /// The observation domain id in every message header.
    pub observation_domain: u32,
    /// Seconds between template retransmissions (RFC 7011 §8.4: over UDP
    /// templates are resent periodically).
    pub template_refresh: u32,
    /// Largest message, bytes (no IP fragmentation: RFC 7011 §10.3.3).
    pub max_message: u16,
    /// How often the connection table is scanned, milliseconds.
    pub scan_interval_ms: u32,
    /// Firewall drop/reject events (rules with `log`): at most this many
    /// per second per CPU...
    pub drop_log_rate: u32,
    /// ...with bursts of up to this many...
    pub drop_log_burst: u32,
    /// ...of one in this many logged drops (1: every one).
    pub drop_log_sample: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            collectors: Vec::new(),
            active_timeout: 60,
            idle_timeout: 15,
            observation_domain: 1,
            template_refresh: 60,
            max_message: 1400,
            scan_interval_ms: 1000,
            drop_log_rate: 100,
            drop_log_burst: 200,
            drop_log_sample: 1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{field}: {value} is out of range {min}..={max}")]
    Range {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("collectors: at most {MAX_COLLECTORS}, got {0}")]
    TooManyCollectors(usize),
    #[error("collectors: {0} is listed twice")]
    Duplicate(SocketAddr),
    #[error("collectors: {0} has port 0")]
    PortZero(SocketAddr),
}

impl ExportSettings {
    /// Refuse what cannot work, naming the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn range(field: &'static str, v: u64, min: u64, max: u64) -> Result<(), SettingsError> {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(SettingsError::Range {
                    field,
                    value: v,
                    min,
                    max,
                })
            }
        }
        if self.collectors.len() > MAX_COLLECTORS {
            return Err(SettingsError::TooManyCollectors(self.collectors.len()));
        }
        let mut seen = HashSet::new();
        for c in &self.collectors {
            if c.port() == 0 {
                return Err(SettingsError::PortZero(*c));
            }
            if !seen.insert(c) {
                return Err(SettingsError::Duplicate(*c));
            }
        }
        range("active_timeout", self.active_timeout.into(), 1, 86_400)?;
        range("idle_timeout", self.idle_timeout.into(), 1, 86_400)?;
        range("template_refresh", self.template_refresh.into(), 1, 86_400)?;
        range("max_message", self.max_message.into(), 512, 65_000)?;
        range(
            "scan_interval_ms",
            self.scan_interval_ms.into(),
            100,
            60_000,
        )?;
        range("drop_log_rate", self.drop_log_rate.into(), 1, 1_000_000)?;
        range("drop_log_burst", self.drop_log_burst.into(), 1, 1_000_000)?;
        range("drop_log_sample", self.drop_log_sample.into(), 1, 1_000_000)?;
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.collectors.is_empty()
    }

    /// The firewall drop log's sampling and rate limit.
    pub fn drop_log_limits(&self) -> crate::firewall_log::DropLogLimits {
        crate::firewall_log::DropLogLimits {
            rate_per_s: self.drop_log_rate,
            burst: self.drop_log_burst,
            sample: self.drop_log_sample,
        }
    }
}

/// The `setting` key the API's settings are stored under.
const SETTING_KEY: &str = "export";

/// Store settings set through the API (they win over the config file at
/// the next start).
pub async fn store(pool: &sqlx::SqlitePool, s: &ExportSettings) -> Result<(), crate::db::DbError> {
    let json = serde_json::to_string(s).unwrap_or_default();
    crate::db::put_setting(pool, SETTING_KEY, &json).await
}

/// Settings stored by the API, if any. Stored settings that no longer
/// parse or validate (a downgrade) are reported and ignored.
pub async fn stored(pool: &sqlx::SqlitePool) -> Result<Option<ExportSettings>, crate::db::DbError> {
    let Some(json) = crate::db::get_setting(pool, SETTING_KEY).await? else {
        return Ok(None);
    };
    match serde_json::from_str::<ExportSettings>(&json)
        .map_err(|e| e.to_string())
        .and_then(|s| s.validate().map(|()| s).map_err(|e| e.to_string()))
    {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            tracing::warn!("stored export settings ignored ({e}); using the config file's");
            Ok(None)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("the dataplane lock is poisoned")]
    Poisoned,
    #[error("starting the flow export thread: {0}")]
    Thread(std::io::Error),
}

/// Exporter counters (for /metrics and `GET /api/v1/export`).
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Records handed to the outbox / dropped there (queue full).
    pub records_queued: AtomicU64,
    pub records_dropped: AtomicU64,
    /// Messages handed to the outbox.
    pub messages: AtomicU64,
    pub scans: AtomicU64,
    /// Flows the tracker knows (a gauge).
    pub flows: AtomicU64,
    /// Duration of the last scan, microseconds (a gauge).
    pub last_scan_us: AtomicU64,
    pub scan_errors: AtomicU64,
}

/// A snapshot of the counters, for the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportCounters {
    pub records_queued: u64,
    pub records_dropped: u64,
    pub messages: u64,
    pub scans: u64,
    pub flows: u64,
    pub last_scan_us: u64,
    pub scan_errors: u64,
    /// Datagrams the kernel took, dropped before it, or failed in it.
    pub datagrams: crate::outbox::ClassCounts,
    /// The I/O backend the outbox runs on.
    pub io_backend: String,
}

/// The running exporter; dropping it sends every flow's last record
/// (forced end) and stops the thread.
pub struct Exporter {
    settings: Arc<Mutex<ExportSettings>>,
    stats: Arc<ExportStats>,
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Start scanning `dp`'s table with `settings` (validated by the
    /// caller). Turns on tracking of every connection while exporting.
    pub fn start(
        dp: &Arc<Mutex<Dataplane>>,
        settings: ExportSettings,
        outbox: Arc<Outbox>,
    ) -> Result<Exporter, ExportError> {
        let (maps, timeouts) = {
            let mut d = dp.lock().map_err(|_| ExportError::Poisoned)?;
            d.set_track_all(settings.enabled())?;
            (d.flow_maps()?, d.firewall().config()?.ct_timeouts)
        };
        let settings = Arc::new(Mutex::new(settings));
        let stats = Arc::new(ExportStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut run = Run {
            maps,
            ct_timeouts: timeouts,
            tracker: Tracker::default(),
            sessions: HashMap::new(),
            settings: settings.clone(),
            stats: stats.clone(),
            outbox: outbox.clone(),
            dataplane: dp.clone(),
            tracking_all: None,
        };
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdpgate-ipfix".into())
            .spawn(move || run.run(&thread_stop))
            .map_err(ExportError::Thread)?;
        Ok(Exporter {
            settings,
            stats,
            outbox,
            stop,
            thread: Some(thread),
        })
    }

    pub fn settings(&self) -> ExportSettings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Replace the settings (validated by the caller); the next scan uses
    /// them.
    pub fn set_settings(&self, s: ExportSettings) {
        if let Ok(mut cur) = self.settings.lock() {
            *cur = s;
        }
    }

    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// The outbox the records leave through (shared with syslog).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    pub fn counters(&self) -> ExportCounters {
        let s = &self.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ExportCounters {
            records_queued: l(&s.records_queued),
            records_dropped: l(&s.records_dropped),
            messages: l(&s.messages),
            scans: l(&s.scans),
            flows: l(&s.flows),
            last_scan_us: l(&s.last_scan_us),
            scan_errors: l(&s.scan_errors),
            datagrams: self.outbox.stats().class(Class::Ipfix).snapshot(),
            io_backend: self.outbox.backend().to_owned(),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One collector's transport session.
struct Session {
    encoder: ipfix::Encoder,
    domain: u32,
    mtu: u16,
    /// When templates were last sent (None: never).
    templates_at: Option<Instant>,
}

/// The exporter thread's state.
struct Run {
    maps: FlowMaps,
    ct_timeouts: [u32; dataplane_common::CT_TIMEOUTS],
    tracker: Tracker,
    sessions: HashMap<SocketAddr, Session>,
    settings: Arc<Mutex<ExportSettings>>,
    stats: Arc<ExportStats>,
    outbox: Arc<Outbox>,
    dataplane: Arc<Mutex<Dataplane>>,
    /// CFG_F_TRACK_ALL as last set by this thread.
    tracking_all: Option<bool>,
}

impl Run {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let s = self.settings.lock().map(|s| s.clone()).unwrap_or_default();
            let started = Instant::now();
            self.track_all(s.enabled());
            if s.enabled() {
                let records = match self.scan(&s) {
                    Ok(r) => r,
                    Err(e) => {
                        self.stats.scan_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("flow export: scanning the connection table: {e}");
                        Vec::new()
                    }
                };
                self.send(&s, &records);
            } else if !self.tracker.is_empty() {
                // Export turned off: forget, do not report.
                self.tracker = Tracker::default();
                self.sessions.clear();
            }
            self.stats
                .last_scan_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            sleep_until(
                started + Duration::from_millis(s.scan_interval_ms.into()),
                stop,
            );
        }
        let s = self.settings.lock().map(|s| s.clone()).unwrap_or_default();
        if s.enabled() {
            let mut last = Vec::new();
            self.tracker.end_all(&Clock::now(), &mut last);
            self.send(&s, &last);
        }
    }

    fn track_all(&mut self, on: bool) {
        if self.tracking_all == Some(on) {
            return;
        }
        let set = self
            .dataplane
            .lock()
            .map_err(|_| ExportError::Poisoned)
            .and_then(|mut d| d.set_track_all(on).map_err(ExportError::from));
        match set {
            Ok(()) => self.tracking_all = Some(on),
            Err(e) => tracing::warn!("flow export: tracking every connection: {e}"),
        }
    }

    /// One pass over the table: the records now due.
    fn scan(&mut self, s: &ExportSettings) -> Result<Vec<ipfix::FlowRecord>, MapError> {
        let timeouts = Timeouts {
            active_ns: u64::from(s.active_timeout) * 1_000_000_000,
            idle_ns: u64::from(s.idle_timeout) * 1_000_000_000,
        };
        let clock = Clock::now();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for kv in self.maps.conntrack.iter() {
            let (k, e) = match kv {
                Ok(kv) => kv,
                // Deleted between next-key and lookup (sweeper, LRU).
                Err(MapError::KeyNotFound) => continue,
                Err(MapError::SyscallError(ref se))
                    if se.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if crate::conntrack::is_expired(&e, &self.ct_timeouts, clock.mono_ns) {
                // Dead but not swept yet: let it end as missing.
                continue;
            }
            seen.insert(k);
            let counters = if self.tracker.needs_counters(&k, &e) {
                Some(self.counters(&k))
            } else {
                None
            };
            self.tracker
                .observe(&k, &e, counters, &clock, &timeouts, &mut out);
        }
        self.tracker.end_missing(&seen, &clock, &mut out);
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        self.stats
            .flows
            .store(self.tracker.len() as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// The connection's counters summed over CPUs (zero if evicted).
    fn counters(&self, k: &CtKey) -> CtCounters {
        let mut sum = CtCounters::default();
        if let Ok(per_cpu) = self.maps.counters.get(k, 0) {
            for c in per_cpu.iter() {
                for d in 0..2 {
                    sum.packets[d] += c.packets[d];
                    sum.bytes[d] += c.bytes[d];
                    sum.tcp_flags[d] |= c.tcp_flags[d];
                }
            }
        }
        sum
    }

    /// Encode `records` for every collector and queue the messages;
    /// templates go first, again every `template_refresh` seconds.
    fn send(&mut self, s: &ExportSettings, records: &[ipfix::FlowRecord]) {
        self.sessions.retain(|c, _| s.collectors.contains(c));
        let export_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let refresh = Duration::from_secs(s.template_refresh.into());
        for &c in &s.collectors {
            let session = self.sessions.entry(c).or_insert_with(|| Session {
                encoder: ipfix::Encoder::new(s.observation_domain, s.max_message.into()),
                domain: s.observation_domain,
                mtu: s.max_message,
                templates_at: None,
            });
            if session.domain != s.observation_domain || session.mtu != s.max_message {
                *session = Session {
                    encoder: ipfix::Encoder::new(s.observation_domain, s.max_message.into()),
                    domain: s.observation_domain,
                    mtu: s.max_message,
                    templates_at: None,
                };
            }
            let templates = session.templates_at.is_none_or(|t| t.elapsed() >= refresh);
            if records.is_empty() && !templates {
                continue;
            }
            if templates {
                session.templates_at = Some(Instant::now());
            }
            // A burst larger than the outbox's queue (a scan that ends
            // 100k flows) waits for room, on this thread only; once a wait
            // runs out the collector is not keeping up and the rest of the
            // burst is dropped at once (counted, with a gap in the
            // sequence numbers for the collector to see, RFC 7011 §3.1).
            let mut wait = SEND_WAIT;
            for (msg, n) in session.encoder.encode(export_secs, templates, records) {
                self.stats.messages.fetch_add(1, Ordering::Relaxed);
                let counter = if self.outbox.send_within(Class::Ipfix, c, msg, wait) {
                    &self.stats.records_queued
                } else {
                    wait = Duration::ZERO;
                    &self.stats.records_dropped
                };
                counter.fetch_add(n.into(), Ordering::Relaxed);
            }
        }
    }
}

fn sleep_until(t: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= t {
            return;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Template sets (set id 2) in `msg`, an IPFIX message.
    fn template_sets(msg: &[u8]) -> usize {
        let mut i = 16;
        let mut n = 0;
        while i + 4 <= msg.len() {
            let id = u16::from_be_bytes([msg[i], msg[i + 1]]);
            let len = u16::from_be_bytes([msg[i + 2], msg[i + 3]]) as usize;
            n += usize::from(id == 2);
            i += len.max(4);
        }
        n
    }

    /// Every collector gets the templates at once and again after
    /// `template_refresh` (RFC 7011 §8.4), each in its own transport
    /// session (its own sequence numbers), through the real outbox. Loads
    /// the XDP object (needs root) for the connection table it scans.
    #[test]
    fn every_collector_gets_templates_and_again_at_the_refresh() {
        use std::net::UdpSocket;
        let dp = Arc::new(Mutex::new(Dataplane::load().expect("load (needs root)")));
        let sockets: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a collector"))
            .collect();
        for s in &sockets {
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
        }
        let settings = ExportSettings {
            collectors: sockets
                .iter()
                .map(|s| s.local_addr().expect("addr"))
                .collect(),
            template_refresh: 1,
            scan_interval_ms: 100,
            observation_domain: 77,
            ..ExportSettings::default()
        };
        let outbox = Arc::new(Outbox::start(64, 64).expect("outbox"));
        let exporter = Exporter::start(&dp, settings, outbox).expect("exporter");
        // One reader per collector, so each arrival is timed when it lands.
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|s| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    let mut arrivals = Vec::new();
                    while arrivals.len() < 2 {
                        let (n, _) = s.recv_from(&mut buf).expect("a message within 5 s");
                        arrivals.push((Instant::now(), buf[..n].to_vec()));
                    }
                    arrivals
                })
            })
            .collect();
        for reader in readers {
            let arrivals = reader.join().expect("reader");
            for (_, msg) in &arrivals {
                assert_eq!(u16::from_be_bytes([msg[0], msg[1]]), ipfix::VERSION);
                assert_eq!(u32::from_be_bytes(msg[12..16].try_into().unwrap()), 77);
                // No flows: template-only messages, sequence number 0.
                assert_eq!(u32::from_be_bytes(msg[8..12].try_into().unwrap()), 0);
                assert_eq!(template_sets(msg), 1, "{msg:?}");
            }
            let gap = arrivals[1].0 - arrivals[0].0;
            // Not early (the second arrival within the read timeout
            // shows it is not late either).
            assert!(
                gap >= Duration::from_millis(800),
                "templates again after {gap:?}, refresh 1 s"
            );
        }
        drop(exporter);
    }

    #[test]
    fn settings_validation_names_the_field() {
        assert_eq!(ExportSettings::default().validate(), Ok(()));
        let bad = ExportSettings {
            idle_timeout: 0,
            ..Default::default()
        };
        assert_eq!(
            bad.validate().expect_err("refused").to_string(),
            "idle_timeout: 0 is out of range 1..=86400"
        );
        let c: SocketAddr = "198.18.9.2:4739".parse().expect("static");
        let dup = ExportSettings {
            collectors: vec![c, c],
            ..Default::default()
        };
        assert_eq!(dup.validate(), Err(SettingsError::Duplicate(c)));
        let many = ExportSettings {
            collectors: (0..9).map(|i| SocketAddr::new(c.ip(), 4000 + i)).collect(),
            ..Default::default()
        };
        assert_eq!(many.validate(), Err(SettingsError::TooManyCollectors(9)));
        let zero = ExportSettings {
            collectors: vec!["198.18.9.2:0".parse().expect("static")],
            ..Default::default()
        };
        assert!(matches!(zero.validate(), Err(SettingsError::PortZero(_))));
    }

    #[test]
    fn settings_json_rejects_unknown_fields_and_fills_defaults() {
        let s: ExportSettings =
            serde_json::from_str(r#"{"collectors":["[2001:db8::9]:4739"],"idle_timeout":2}"#)
                .expect("parses");
        assert_eq!(s.idle_timeout, 2);
        assert_eq!(s.active_timeout, 60);
        assert_eq!(s.collectors[0].port(), 4739);
        let err = serde_json::from_str::<ExportSettings>(r#"{"colectors":[]}"#)
            .expect_err("typo refused");
        assert!(err.to_string().contains("colectors"), "{err}");
    }
}
