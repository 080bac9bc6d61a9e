//! The firewall drop log: packets dropped or rejected by rules with
//! `log = true`, from the XDP program's `FW_LOG` ring buffer to the event
//! log ([`crate::events`]), sampled and rate limited.
//!
//! Path of a logged packet:
//!
//! 1. The program (dataplane-ebpf `fwlog.rs`) keeps one packet in
//!    `FW_LOG_CONFIG.sample` (random, per packet; 0 or 1 keeps every one)
//!    and writes a [`FwLogRecord`] into the `FW_LOG` ring buffer. A full
//!    buffer loses the record; the program counts it (`FW_LOG_STATS`).
//! 2. The reader task started by [`spawn`] wakes on the ring buffer's fd
//!    (`tokio::io::unix::AsyncFd`), decodes each record and passes it
//!    through a token bucket ([`TokenBucket`]: `rate_per_s` with `burst`).
//! 3. An admitted record becomes one `firewall_drop` or `firewall_reject`
//!    event (severity warning) with the fields `rule_id`, `chain`,
//!    `action`, `in_interface` (the name, or the ifindex when it has none),
//!    `out_interface` (forward chain), `family`, `proto`, `src`, `dst`,
//!    `sport`/`dport` (TCP, UDP), `icmp_type`/`icmp_code` (ICMP, ICMPv6),
//!    `tcp_flags` (TCP) and `len` (frame bytes). See [`event_fields`].
//! 4. Records the bucket refuses are counted; once it has a token again
//!    one `firewall_log_suppressed` event says how many (`suppressed`),
//!    as the kernel's "N callbacks suppressed" (lib/ratelimit.c). It comes
//!    before the next admitted record, or within a second if none comes.
//!
//! Use (the daemon owns the wiring):
//!
//! ```ignore
//! let log = firewall_log::spawn(&mut dataplane, DropLogLimits::default())?; // in a tokio runtime
//! log.set_limits(DropLogLimits { rate_per_s: 5, burst: 20, sample: 10 })?;  // on config reload
//! let s = log.stats(); // for /metrics: records, emitted, suppressed, lost, ...
//! ```
//!
//! [`spawn`] takes the three maps out of the [`Dataplane`], so it works
//! once per loaded object; dropping the [`DropLog`] stops the reader. The
//! default policy's drops are not logged (only rules carry the flag).
//! [`LogMaps`] is the synchronous layer underneath, for tests that read the
//! ring buffer themselves.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData, MapError, PerCpuArray, RingBuf};
use dataplane_common::{
    CHAIN_INPUT, FW_DROP, FW_LOG_F_ICMP, FW_LOG_F_PORTS, FW_LOG_F_TCP, FW_LOG_STAT_LOST,
    FW_LOG_STAT_SAMPLED_OUT, FW_LOG_STAT_WRITTEN, FW_REJECT, FwLogConfig, FwLogRecord,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    dataplane::{Dataplane, DataplaneError},
    events::{self, Severity},
    firewall::rule::Proto,
};

/// Names of the maps in the XDP object.
pub const RING_MAP: &str = "FW_LOG";
pub const CONFIG_MAP: &str = "FW_LOG_CONFIG";
pub const STATS_MAP: &str = "FW_LOG_STATS";

/// Records handled per wake-up before the task yields to the runtime.
const BATCH: usize = 1024;
/// How often a pending suppressed count is looked at when no record comes.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How much of the drop log reaches the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DropLogLimits {
    /// Events per second, sustained; 0: no rate limit.
    pub rate_per_s: u32,
    /// Events allowed at once after a quiet spell (the bucket's size; at
    /// least 1).
    pub burst: u32,
    /// The XDP program logs one packet in `sample` (0 or 1: every one).
    pub sample: u32,
}

impl Default for DropLogLimits {
    /// 10 events a second, bursts of 50, every packet offered.
    fn default() -> Self {
        DropLogLimits {
            rate_per_s: 10,
            burst: 50,
            sample: 1,
        }
    }
}

/// Counters of the drop log since [`spawn`] (the kernel's since the
/// program was loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DropLogStats {
    /// Records read from the ring buffer.
    pub records: u64,
    /// `firewall_drop` / `firewall_reject` events emitted.
    pub emitted: u64,
    /// Records the rate limit kept out of the event log.
    pub suppressed: u64,
    /// `firewall_log_suppressed` summaries emitted.
    pub summaries: u64,
    /// Records of the wrong size (an object from another build?).
    pub malformed: u64,
    /// Kernel side (`FW_LOG_STATS`, summed over CPUs): records written,
    /// records lost because the ring buffer was full, packets of logging
    /// rules left out by sampling.
    pub kernel_written: u64,
    pub kernel_lost: u64,
    pub kernel_sampled_out: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DropLogError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("firewall_log::spawn must be called inside a tokio runtime")]
    NoRuntime,
    #[error("watching the {RING_MAP} ring buffer: {0}")]
    Poll(#[source] std::io::Error),
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> DropLogError {
    move |source| DropLogError::Map { map, source }
}

/// A ring buffer entry that is not one [`FwLogRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a drop log record of {len} bytes, not {expected}")]
pub struct DecodeError {
    pub len: usize,
    pub expected: usize,
}

/// The record in a ring buffer entry (exactly `size_of::<FwLogRecord>()`
/// bytes; the ring buffer gives no alignment guarantee to rely on, so it is
/// copied out).
pub fn decode(bytes: &[u8]) -> Result<FwLogRecord, DecodeError> {
    let expected = std::mem::size_of::<FwLogRecord>();
    if bytes.len() != expected {
        return Err(DecodeError {
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: FwLogRecord is repr(C), integers only, every bit pattern
    // valid, and `bytes` holds exactly its size; read_unaligned copies.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FwLogRecord>()) })
}

/// The drop log's maps, taken out of the loaded object.
pub struct LogMaps {
    pub ring: RingBuf<MapData>,
    config: Array<MapData, FwLogConfig>,
    stats: PerCpuArray<MapData, u64>,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub written: u64,
    pub lost: u64,
    pub sampled_out: u64,
}

impl LogMaps {
    /// Take `FW_LOG`, `FW_LOG_CONFIG` and `FW_LOG_STATS` out of `dataplane`
    /// (once per loaded object).
    pub fn take(dataplane: &mut Dataplane) -> Result<LogMaps, DropLogError> {
        Ok(LogMaps {
            ring: RingBuf::try_from(dataplane.take_map(RING_MAP)?).map_err(map_err(RING_MAP))?,
            config: Array::try_from(dataplane.take_map(CONFIG_MAP)?)
                .map_err(map_err(CONFIG_MAP))?,
            stats: PerCpuArray::try_from(dataplane.take_map(STATS_MAP)?)
                .map_err(map_err(STATS_MAP))?,
        })
    }

    /// Log one packet in `sample` (0 or 1: every one).
    pub fn set_sample(&mut self, sample: u32) -> Result<(), DropLogError> {
        self.config
            .set(0, FwLogConfig { sample }, 0)
            .map_err(map_err(CONFIG_MAP))
    }

    pub fn kernel_stats(&self) -> Result<KernelStats, DropLogError> {
        kernel_stats(&self.stats)
    }

    /// The next record waiting in the ring buffer, if any (no waiting).
    pub fn next_record(&mut self) -> Option<Result<FwLogRecord, DecodeError>> {
        let item = self.ring.next()?;
        Some(decode(&item))
    }

    /// Every record waiting in the ring buffer.
    pub fn drain(&mut self) -> Vec<Result<FwLogRecord, DecodeError>> {
        std::iter::from_fn(|| self.next_record()).collect()
    }
}

fn kernel_stats(stats: &PerCpuArray<MapData, u64>) -> Result<KernelStats, DropLogError> {
    let sum = |index: u32| -> Result<u64, DropLogError> {
        let values = stats.get(&index, 0).map_err(map_err(STATS_MAP))?;
        Ok(values.iter().sum())
    };
    Ok(KernelStats {
        written: sum(FW_LOG_STAT_WRITTEN)?,
        lost: sum(FW_LOG_STAT_LOST)?,
        sampled_out: sum(FW_LOG_STAT_SAMPLED_OUT)?,
    })
}

/// A token bucket: `burst` tokens at most, refilled at `rate_per_s`; one
/// token per event. Tokens are kept in billionths, so refills are exact
/// integer arithmetic on nanoseconds.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: u32,
    /// Capacity and content, in billionths of a token.
    cap: u128,
    tokens: u128,
    last: Instant,
    /// Refused since the last summary.
    suppressed: u64,
}

const NANO: u128 = 1_000_000_000;

/// What [`TokenBucket::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Emit the event.
    pub allowed: bool,
    /// Before it, emit a summary of this many suppressed events.
    pub summary: Option<u64>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Self {
        let cap = u128::from(burst.max(1)) * NANO;
        TokenBucket {
            rate_per_s,
            cap,
            tokens: cap,
            last: now,
            suppressed: 0,
        }
    }

    /// New limits; the tokens held are kept (up to the new size).
    pub fn set_limits(&mut self, rate_per_s: u32, burst: u32, now: Instant) {
        self.refill(now);
        self.rate_per_s = rate_per_s;
        self.cap = u128::from(burst.max(1)) * NANO;
        self.tokens = self.tokens.min(self.cap);
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = now.max(self.last);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u128::from(self.rate_per_s)))
            .min(self.cap);
    }

    /// One event at `now`: allowed if a token is there (always, with rate
    /// 0); a refused event is counted for the next summary, which comes
    /// with the first allowed event after it.
    pub fn take(&mut self, now: Instant) -> Take {
        if self.rate_per_s == 0 {
            return Take {
                allowed: true,
                summary: self.take_suppressed(),
            };
        }
        self.refill(now);
        if self.tokens >= NANO {
            self.tokens -= NANO;
            Take {
                allowed: true,
                summary: self.take_suppressed(),
            }
        } else {
            self.suppressed += 1;
            Take {
                allowed: false,
                summary: None,
            }
        }
    }

    /// The suppressed count, once the bucket holds a token again (the
    /// summary does not spend it); None while it is empty or nothing was
    /// suppressed.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        self.refill(now);
        if self.rate_per_s == 0 || self.tokens >= NANO {
            self.take_suppressed()
        } else {
            None
        }
    }

    fn take_suppressed(&mut self) -> Option<u64> {
        (self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }

    /// Refused since the last summary.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }
}

fn ip(family: u8, addr: [u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    }
}

/// RFC 9293 3.1 control bits, low to high.
const TCP_FLAGS: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];

fn tcp_flag_names(bits: u8) -> String {
    TCP_FLAGS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// An interface by name, or by ifindex when it has none (it went away).
fn interface(ifindex: u32, name: &impl Fn(u32) -> Option<String>) -> Value {
    match name(ifindex) {
        Some(n) => Value::String(n),
        None => json!(ifindex),
    }
}

/// The event kind and fields of `r`; `name` resolves ifindexes.
pub fn event_fields(
    r: &FwLogRecord,
    name: impl Fn(u32) -> Option<String>,
) -> (&'static str, Value) {
    let (kind, action) = match u32::from(r.action) {
        FW_REJECT => ("firewall_reject", "reject"),
        FW_DROP => ("firewall_drop", "drop"),
        _ => ("firewall_drop", "unknown"),
    };
    let chain = if u32::from(r.chain) == CHAIN_INPUT {
        "input"
    } else {
        "forward"
    };
    let mut m = Map::new();
    m.insert("rule_id".into(), json!(r.rule_id));
    m.insert("chain".into(), json!(chain));
    m.insert("action".into(), json!(action));
    m.insert("in_interface".into(), interface(r.ifindex_in, &name));
    if r.ifindex_out != 0 {
        m.insert("out_interface".into(), interface(r.ifindex_out, &name));
    }
    m.insert(
        "family".into(),
        json!(if r.family == 4 { "ipv4" } else { "ipv6" }),
    );
    m.insert("proto".into(), json!(Proto(r.proto).to_string()));
    m.insert("src".into(), json!(ip(r.family, r.src).to_string()));
    m.insert("dst".into(), json!(ip(r.family, r.dst).to_string()));
    if r.flags & FW_LOG_F_PORTS != 0 {
        m.insert("sport".into(), json!(r.sport));
        m.insert("dport".into(), json!(r.dport));
    }
    if r.flags & FW_LOG_F_ICMP != 0 {
        m.insert("icmp_type".into(), json!(r.icmp_type));
        m.insert("icmp_code".into(), json!(r.icmp_code));
    }
    if r.flags & FW_LOG_F_TCP != 0 {
        m.insert("tcp_flags".into(), json!(tcp_flag_names(r.tcp_flags)));
    }
    m.insert("len".into(), json!(r.len));
    (kind, Value::Object(m))
}

/// The name of interface `ifindex` in this thread's network namespace.
fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    emitted: AtomicU64,
    suppressed: AtomicU64,
    summaries: AtomicU64,
    malformed: AtomicU64,
}

/// What the reader task and the handle share.
struct Shared {
    bucket: Mutex<TokenBucket>,
    config: Mutex<Array<MapData, FwLogConfig>>,
    stats: PerCpuArray<MapData, u64>,
    counters: Counters,
}

impl Shared {
    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // A panic while holding it leaves a bucket that is still valid.
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn summary(&self, count: u64) {
        self.counters.summaries.fetch_add(1, Ordering::Relaxed);
        events::emit(
            Severity::Warning,
            "firewall_log_suppressed",
            json!({ "suppressed": count }),
        );
    }

    fn handle(&self, bytes: &[u8], now: Instant) {
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        let record = match decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{e}");
                return;
            }
        };
        let take = self.bucket().take(now);
        if let Some(n) = take.summary {
            self.summary(n);
        }
        if !take.allowed {
            self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (kind, fields) = event_fields(&record, ifname);
        self.counters.emitted.fetch_add(1, Ordering::Relaxed);
        events::emit(Severity::Warning, kind, fields);
    }

    fn flush(&self, now: Instant) {
        let pending = self.bucket().flush(now);
        if let Some(n) = pending {
            self.summary(n);
        }
    }
}

/// The running drop log reader (see the module documentation). Dropping
/// it stops the reader task.
pub struct DropLog {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Take the drop log maps out of `dataplane`, write `limits.sample` into
/// `FW_LOG_CONFIG` and start the reader task. Must be called inside a
/// tokio runtime (the ring buffer's fd is registered with its reactor).
pub fn spawn(dataplane: &mut Dataplane, limits: DropLogLimits) -> Result<DropLog, DropLogError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| DropLogError::NoRuntime)?;
    let mut maps = LogMaps::take(dataplane)?;
    maps.set_sample(limits.sample)?;
    let LogMaps {
        ring,
        config,
        stats,
    } = maps;
    let ring = {
        let _enter = runtime.enter();
        // SAFETY: the fd is the ring buffer map's, owned by `ring`, which
        // the AsyncFd owns until it is dropped: it stays open and the same.
        unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| DropLogError::Poll(e.into()))?
    };
    let shared = Arc::new(Shared {
        bucket: Mutex::new(TokenBucket::new(
            limits.rate_per_s,
            limits.burst,
            Instant::now(),
        )),
        config: Mutex::new(config),
        stats,
        counters: Counters::default(),
    });
    let task = runtime.spawn(read(ring, shared.clone()));
    Ok(DropLog { shared, task })
}

/// The reader: drain the ring buffer whenever its fd is readable, and look
/// at a pending suppressed count every [`FLUSH_EVERY`].
async fn read(mut ring: AsyncFd<RingBuf<MapData>>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = ring.readable_mut() => {
                let mut guard = match ready {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!("drop log reader stopped: polling {RING_MAP}: {e}");
                        return;
                    }
                };
                let now = Instant::now();
                let rb = guard.get_inner_mut();
                let mut n = 0;
                while n < BATCH {
                    let Some(item) = rb.next() else { break };
                    shared.handle(&item, now);
                    n += 1;
                }
                if n < BATCH {
                    // Drained: wait for the kernel's next wake-up.
                    guard.clear_ready();
                } else {
                    // More may be waiting: let other tasks run, come back.
                    drop(guard);
                    tokio::task::yield_now().await;
                }
            }
            _ = tick.tick() => shared.flush(Instant::now()),
        }
    }
}

impl DropLog {
    /// New limits: the token bucket's rate and size, and the program's
    /// sampling (written into `FW_LOG_CONFIG`, in effect for the next
    /// packet).
    pub fn set_limits(&self, limits: DropLogLimits) -> Result<(), DropLogError> {
        self.shared
            .bucket()
            .set_limits(limits.rate_per_s, limits.burst, Instant::now());
        self.shared
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(
                0,
                FwLogConfig {
                    sample: limits.sample,
                },
                0,
            )
            .map_err(map_err(CONFIG_MAP))
    }

    /// The counters; the kernel's read now (left at 0 if that fails).
    pub fn stats(&self) -> DropLogStats {
        let c = &self.shared.counters;
        let k = kernel_stats(&self.shared.stats).unwrap_or_else(|e| {
            tracing::debug!("reading {STATS_MAP}: {e}");
            KernelStats::default()
        });
        DropLogStats {
            records: c.records.load(Ordering::Relaxed),
            emitted: c.emitted.load(Ordering::Relaxed),
            suppressed: c.suppressed.load(Ordering::Relaxed),
            summaries: c.summaries.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            kernel_written: k.written,
            kernel_lost: k.lost,
            kernel_sampled_out: k.sampled_out,
        }
    }
}

impl Drop for DropLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
