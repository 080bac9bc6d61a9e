//! The event log: what the appliance did and what its firewall refused, as
//! JSON lines in a file and, optionally, RFC 5424 syslog over UDP (sent
//! through the [`crate::outbox`], so through the sockio I/O layer).
//!
//! Events are few (commits, resyncs, link changes, sampled and rate-limited
//! firewall drops), so the sink is process-wide like a logger: modules call
//! [`emit`] and an unconfigured sink does nothing.
use std::{
    fs::File,
    io::{LineWriter, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value, json};

use crate::outbox::{Class, Outbox};

/// How bad an event is (RFC 5424 §6.2.1 severities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// Syslog facility local0 (RFC 5424 §6.2.1: 16).
const FACILITY_LOCAL0: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("opening the event log {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("syslog needs the outbox (UDP sending) and it did not start")]
    NoOutbox,
}

/// Counters of the event log (for /metrics).
#[derive(Debug, Default)]
pub struct EventStats {
    pub emitted: AtomicU64,
    pub file_errors: AtomicU64,
}

/// Where events go.
pub struct EventLog {
    file: Option<(PathBuf, Mutex<LineWriter<File>>)>,
    syslog: Option<(SocketAddr, Arc<Outbox>)>,
    hostname: String,
    stats: EventStats,
}

impl EventLog {
    /// Append to `file` (created 0600 if missing) and/or send to `syslog`.
    pub fn open(
        file: Option<&Path>,
        syslog: Option<SocketAddr>,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<EventLog, EventError> {
        let file = match file {
            Some(p) => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)
                    .map_err(|source| EventError::Open {
                        path: p.display().to_string(),
                        source,
                    })?;
                Some((p.to_owned(), Mutex::new(LineWriter::new(f))))
            }
            None => None,
        };
        let syslog = match syslog {
            Some(a) => Some((a, outbox.ok_or(EventError::NoOutbox)?)),
            None => None,
        };
        Ok(EventLog {
            file,
            syslog,
            hostname: hostname(),
            stats: EventStats::default(),
        })
    }

    pub fn stats(&self) -> &EventStats {
        &self.stats
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Write one event: `{"ts", "kind", "severity", ...fields}`.
    pub fn write(&self, severity: Severity, kind: &str, fields: Value) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ts = rfc3339(now.as_secs(), now.subsec_millis());
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(ts));
        obj.insert("kind".into(), json!(kind));
        obj.insert("severity".into(), json!(severity_name(severity)));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let line = Value::Object(obj).to_string();
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        if let Some((_, f)) = &self.file {
            let ok = f
                .lock()
                .map(|mut w| writeln!(w, "{line}").is_ok())
                .unwrap_or(false);
            if !ok {
                self.stats.file_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some((to, outbox)) = &self.syslog {
            let msg = rfc5424(severity, &ts, &self.hostname, kind, &line);
            outbox.send(Class::Syslog, *to, msg.into_bytes());
        }
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Notice => "notice",
        Severity::Info => "info",
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG` (RFC 5424 §6),
/// the JSON line as MSG; MSGID is the event kind (at most 32 printable
/// ASCII characters, §6.2.7).
pub fn rfc5424(severity: Severity, ts: &str, host: &str, kind: &str, msg: &str) -> String {
    let pri = FACILITY_LOCAL0 * 8 + severity as u8;
    let msgid: String = kind
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    format!(
        "<{pri}>1 {ts} {host} xdpgate {} {msgid} - {msg}",
        std::process::id()
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if r == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    // RFC 5424 §6.2.4: NILVALUE when unknown; printable ASCII only.
    let name: String = name.chars().filter(|c| c.is_ascii_graphic()).collect();
    if name.is_empty() { "-".into() } else { name }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time (UTC; days to civil date as
/// in Howard Hinnant's `civil_from_days`).
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

static SINK: RwLock<Option<Arc<EventLog>>> = RwLock::new(None);

/// Make `log` the process's event log (None: events go nowhere).
pub fn install(log: Option<Arc<EventLog>>) {
    if let Ok(mut s) = SINK.write() {
        *s = log;
    }
}

/// The installed event log.
pub fn current() -> Option<Arc<EventLog>> {
    SINK.read().ok().and_then(|s| s.clone())
}

/// Record an event, if an event log is installed.
pub fn emit(severity: Severity, kind: &str, fields: Value) {
    if let Some(log) = current() {
        log.write(severity, kind, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        // date -u -d @1796533200 +%FT%T => 2026-12-06T05:00:00
        assert_eq!(rfc3339(1_796_533_200, 7), "2026-12-06T05:00:00.007Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn syslog_message_shape() {
        let m = rfc5424(
            Severity::Warning,
            "2026-12-06T05:00:00.000Z",
            "edge1",
            "firewall drop",
            "{}",
        );
        let pid = std::process::id();
        // local0.warning = 16 * 8 + 4; the MSGID loses its space.
        assert_eq!(
            m,
            format!("<132>1 2026-12-06T05:00:00.000Z edge1 xdpgate {pid} firewalldrop - {{}}")
        );
    }

    #[test]
    fn events_go_to_the_file_as_json_lines() {
        let dir = std::env::temp_dir().join(format!("xg-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = EventLog::open(Some(&path), None, None).expect("open");
        log.write(Severity::Info, "commit", json!({"id": 7}));
        log.write(Severity::Warning, "drop", json!({"rule": 3}));
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["kind"], "commit");
        assert_eq!(lines[0]["id"], 7);
        assert_eq!(lines[1]["severity"], "warning");
        assert!(lines[1]["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(log.stats().emitted.load(Ordering::Relaxed), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn syslog_without_an_outbox_is_an_error_and_a_bad_path_says_which() {
        let to: SocketAddr = "127.0.0.1:514".parse().expect("static");
        assert!(matches!(
            EventLog::open(None, Some(to), None),
            Err(EventError::NoOutbox)
        ));
        let err = EventLog::open(Some(Path::new("/nonexistent/dir/x")), None, None)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("/nonexistent/dir/x"), "{err}");
    }
}
