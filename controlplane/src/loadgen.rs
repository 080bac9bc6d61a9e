//! `xdpgate loadgen`: a UDP load generator (IPv4 and IPv6) on the sockio
//! I/O layer, and its reflector (`--reflect --listen ADDR`).
//!
//! The generator opens one connected UDP socket per flow (each gets its
//! own ephemeral source port, so ECMP and RSS hash the flows apart), paces
//! packets with a token bucket (or sends as fast as the window allows), and
//! stamps every payload with a sequence number and the send time
//! (CLOCK_MONOTONIC). The reflector sends every datagram back to its source
//! with the same buffer; replies give round-trip latency, loss, duplicates
//! and reordering. The backend is whatever `XDPGATE_IO_BACKEND` selects.
use std::{
    cell::RefCell,
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    rc::Rc,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;
use sockio::{BackendKind, Buf, Errno, Handler, Io, Mode, SockAddr, SockId};

/// Payload header: magic, flow, sequence number, send time (ns), all
/// big-endian. The rest of the payload is padding.
pub const HEADER_LEN: usize = 24;
const MAGIC: [u8; 4] = *b"XGLG";
/// Largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_SIZE: usize = 65_507;
/// Writes a flow may have queued or in flight.
const QUEUE_PER_FLOW: usize = 4096;
/// Packets in flight at most when the rate is unlimited.
const WINDOW: usize = 2048;
/// Packets submitted per loop iteration at most (a late loop does not
/// burst a whole second's worth at once).
const MAX_BURST: u64 = 4096;
/// How long the generator waits for the last replies.
const DRAIN: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Io(#[from] sockio::Error),
    #[error("{what}: {source}")]
    Socket {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--size {size} is out of range: {min}..={max} bytes (the payload carries a {HEADER_LEN}-byte header)"
    )]
    Size { size: usize, min: usize, max: usize },
    #[error("--flows must be at least 1")]
    Flows,
    #[error("--duration must be a positive number of seconds, not {0}")]
    Duration(f64),
    #[error("give a target ADDR:PORT, or --reflect --listen ADDR:PORT")]
    NoTarget,
    #[error("{0}")]
    Runtime(String),
}

fn sock_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadgenError {
    let what = what.into();
    move |source| LoadgenError::Socket { what, source }
}

/// Packets per second, or as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Unlimited,
    Pps(u64),
}

impl FromStr for Rate {
    type Err = String;

    /// `0` or `unlimited`, or a number with an optional k/M suffix (`50k`).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'k' | 'K')) => (&t[..i], 1_000),
            Some((i, 'm' | 'M')) => (&t[..i], 1_000_000),
            _ => (t, 1),
        };
        let n: u64 = num.parse().map_err(|_| {
            format!("{s:?} is not a rate: use packets per second (10000, 50k, 1M) or \"unlimited\"")
        })?;
        Ok(match n * mult {
            0 => Rate::Unlimited,
            pps => Rate::Pps(pps),
        })
    }
}

/// What `xdpgate loadgen` does.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: SocketAddr,
    pub rate: Rate,
    pub size: usize,
    pub flows: u16,
    pub duration: Duration,
    /// The I/O backend; None: as `XDPGATE_IO_BACKEND` says.
    pub backend: Option<BackendKind>,
}

/// CLOCK_MONOTONIC in ns (vDSO, no system call).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Write the header into the first `HEADER_LEN` bytes.
pub fn encode(p: &mut [u8], flow: u32, seq: u64, sent_ns: u64) {
    p[..4].copy_from_slice(&MAGIC);
    p[4..8].copy_from_slice(&flow.to_be_bytes());
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..24].copy_from_slice(&sent_ns.to_be_bytes());
}

/// (flow, sequence number, send time) of a payload, if it is ours.
pub fn decode(p: &[u8]) -> Option<(u32, u64, u64)> {
    if p.len() < HEADER_LEN || p[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(p[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    Some((u32_at(4), u64_at(8), u64_at(16)))
}

/// Latency histogram: exact below 64 ns, then 32 linear sub-buckets per
/// power of two (at most 1/32 ≈ 3 % relative error), as HdrHistogram does
/// with 5 significant bits.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; 64 + 58 * 32],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize; // >= 6
        let sub = ((v >> (e - 5)) & 31) as usize;
        64 + (e - 6) * 32 + sub
    }

    /// The largest value that falls into bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let e = (i - 64) / 32 + 6;
        let sub = ((i - 64) % 32) as u64;
        let lo = (32 + sub) << (e - 5);
        lo + ((1u64 << (e - 5)) - 1)
    }

    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v as u128;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), never above the true maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

/// Latency figures in µs.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &Histogram) -> Option<Latency> {
        let us = |ns: u64| ns as f64 / 1000.0;
        (h.total > 0).then(|| Latency {
            samples: h.total,
            min: us(h.min),
            mean: h.sum as f64 / h.total as f64 / 1000.0,
            p50: us(h.quantile(0.50)),
            p90: us(h.quantile(0.90)),
            p99: us(h.quantile(0.99)),
            max: us(h.max),
        })
    }
}

/// CPU time of this process (getrusage(2), RUSAGE_SELF: all threads,
/// io_uring workers included).
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage into a zeroed local.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) per packet sent or received, µs.
    pub us_per_packet: f64,
}

/// The generator's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub backend: String,
    pub backend_detail: String,
    pub flows: u16,
    pub size: usize,
    /// Requested rate; None: unlimited.
    pub rate_pps: Option<u64>,
    pub duration_s: f64,
    pub sent: u64,
    pub send_errors: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Datagrams that were not ours (bad magic or too short).
    pub invalid: u64,
    pub sent_pps: f64,
    pub received_pps: f64,
    /// Round trip, µs; None when nothing came back.
    pub latency_us: Option<Latency>,
    pub cpu: Cpu,
    pub syscalls: u64,
    pub syscalls_per_packet: f64,
}

#[derive(Default)]
struct ClientState {
    sent: u64,
    send_errors: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    invalid: u64,
    inflight: usize,
    /// One bit per sequence number received.
    seen: Vec<u64>,
    /// Highest sequence number received per flow.
    highest: Vec<Option<u64>>,
    hist: Histogram,
}

impl ClientState {
    fn on_reply(&mut self, data: &[u8]) {
        let now = now_ns();
        let Some((flow, seq, sent_ns)) = decode(data) else {
            self.invalid += 1;
            return;
        };
        let word = (seq / 64) as usize;
        if word >= self.seen.len() {
            // Sequence numbers come from us; a far-off one is not ours.
            if word > self.seen.len() + (1 << 24) {
                self.invalid += 1;
                return;
            }
            self.seen.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        if let Some(h) = self.highest.get_mut(flow as usize) {
            match *h {
                Some(top) if seq < top => self.reordered += 1,
                _ => *h = Some(seq),
            }
        }
        self.hist.record(now.saturating_sub(sent_ns));
    }
}

struct ClientHandler(Rc<RefCell<ClientState>>);

impl Handler for ClientHandler {
    fn read(&mut self, _io: &mut Io, _id: SockId, res: Result<Buf, Errno>) {
        // Errors (an ICMP port unreachable: ECONNREFUSED) just mean this
        // reply did not come; they show up as loss.
        if let Ok(buf) = res {
            self.0.borrow_mut().on_reply(&buf);
        }
    }

    fn write(&mut self, _io: &mut Io, _id: SockId, res: Result<usize, Errno>, _buf: Buf) {
        let mut st = self.0.borrow_mut();
        st.inflight -= 1;
        match res {
            Ok(_) => st.sent += 1,
            Err(_) => st.send_errors += 1,
        }
    }
}

/// Ask for a large receive buffer: SO_RCVBUFFORCE as root, else SO_RCVBUF
/// (capped by net.core.rmem_max), so bursts of replies are not dropped in
/// the socket.
fn big_rcvbuf(s: &UdpSocket) {
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: an int option on a valid socket.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

fn builder(size: usize, backend: Option<BackendKind>) -> sockio::Builder {
    let b = Io::builder()
        .max_payload(size.max(2048))
        .queue_limit(QUEUE_PER_FLOW)
        .send_batch(256);
    match backend {
        Some(k) => b.backend(k),
        None => b,
    }
}

/// Run the generator: send for `duration`, wait up to a second for the
/// last replies, report.
pub fn run_client(opts: &Options) -> Result<Report, LoadgenError> {
    if !(HEADER_LEN..=MAX_SIZE).contains(&opts.size) {
        return Err(LoadgenError::Size {
            size: opts.size,
            min: HEADER_LEN,
            max: MAX_SIZE,
        });
    }
    if opts.flows == 0 {
        return Err(LoadgenError::Flows);
    }
    let mut io = builder(opts.size, opts.backend).build()?;
    let state = Rc::new(RefCell::new(ClientState {
        highest: vec![None; opts.flows as usize],
        ..Default::default()
    }));
    let bind: SocketAddr = if opts.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("static address");
    let mut socks = Vec::with_capacity(opts.flows as usize);
    for flow in 0..opts.flows {
        let s = UdpSocket::bind(bind).map_err(sock_err(format!("binding flow {flow}")))?;
        s.connect(opts.target)
            .map_err(sock_err(format!("connecting to {}", opts.target)))?;
        big_rcvbuf(&s);
        socks.push(io.register(s, Mode::ReadWrite, ClientHandler(state.clone()))?);
    }
    let (u0, s0) = cpu_times();
    let calls0 = io.stats().syscalls;
    let start = Instant::now();
    let end = start + opts.duration;
    let mut seq: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = match opts.rate {
            Rate::Pps(r) => {
                let target = ((now - start).as_secs_f64() * r as f64) as u64;
                target.saturating_sub(seq).min(MAX_BURST)
            }
            Rate::Unlimited => {
                let inflight = state.borrow().inflight;
                (WINDOW.saturating_sub(inflight) as u64).min(MAX_BURST)
            }
        };
        if due > 0 {
            let t = now_ns();
            for _ in 0..due {
                let flow = (seq % opts.flows as u64) as usize;
                let mut buf = io.buf();
                buf.set_len(opts.size);
                encode(&mut buf, flow as u32, seq, t);
                match io.write(socks[flow], buf) {
                    Ok(()) => {
                        state.borrow_mut().inflight += 1;
                        seq += 1;
                    }
                    // This flow's queue is full (the kernel is not taking
                    // packets as fast as asked): try again next round.
                    Err(_) => break,
                }
            }
        }
        let wait = match opts.rate {
            Rate::Pps(r) => {
                let next = start + Duration::from_secs_f64((seq + 1) as f64 / r as f64);
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10))
            }
            Rate::Unlimited => Duration::ZERO,
        };
        io.run_once(Some(
            wait.min(end.saturating_duration_since(Instant::now())),
        ))?;
    }
    let send_end = Instant::now();
    let drain_end = send_end + DRAIN;
    loop {
        let (received, sent, inflight) = {
            let st = state.borrow();
            (st.received, st.sent, st.inflight)
        };
        if (inflight == 0 && received >= sent) || Instant::now() >= drain_end {
            break;
        }
        io.run_once(Some(Duration::from_millis(5)))?;
    }
    let (u1, s1) = cpu_times();
    let syscalls = io.stats().syscalls - calls0;
    let secs = (send_end - start).as_secs_f64();
    let st = state.borrow();
    let lost = st.sent.saturating_sub(st.received);
    let packets = (st.sent + st.received).max(1) as f64;
    Ok(Report {
        target: opts.target.to_string(),
        backend: io.backend().to_string(),
        backend_detail: io.describe(),
        flows: opts.flows,
        size: opts.size,
        rate_pps: match opts.rate {
            Rate::Pps(r) => Some(r),
            Rate::Unlimited => None,
        },
        duration_s: secs,
        sent: st.sent,
        send_errors: st.send_errors,
        received: st.received,
        lost,
        loss_pct: if st.sent > 0 {
            lost as f64 * 100.0 / st.sent as f64
        } else {
            0.0
        },
        duplicates: st.duplicates,
        reordered: st.reordered,
        invalid: st.invalid,
        sent_pps: st.sent as f64 / secs,
        received_pps: st.received as f64 / secs,
        latency_us: Latency::of(&st.hist),
        cpu: Cpu {
            user_s: u1 - u0,
            sys_s: s1 - s0,
            us_per_packet: ((u1 - u0) + (s1 - s0)) * 1e6 / packets,
        },
        syscalls,
        syscalls_per_packet: syscalls as f64 / packets,
    })
}

/// The reflector's report.
#[derive(Debug, Clone, Serialize)]
pub struct ReflectReport {
    pub listen: String,
    pub backend: String,
    pub backend_detail: String,
    pub duration_s: f64,
    pub received: u64,
    pub reflected: u64,
    /// Replies the socket refused (send errors or a full queue).
    pub dropped: u64,
    pub receive_errors: u64,
    /// Distinct source addresses (flows) seen, up to 65,536.
    pub sources: usize,
    pub cpu: Cpu,
    pub syscalls: u64,
}

#[derive(Default)]
struct ReflectState {
    received: u64,
    reflected: u64,
    dropped: u64,
    receive_errors: u64,
    sources: HashSet<SockAddr>,
}

struct Reflector(Rc<RefCell<ReflectState>>);

impl Handler for Reflector {
    fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
        let mut st = self.0.borrow_mut();
        match res {
            Ok((buf, from)) => {
                st.received += 1;
                if st.sources.len() < 65_536 {
                    st.sources.insert(from);
                }
                // The same buffer goes back: no copy.
                if io.sendto(id, buf, from).is_err() {
                    st.dropped += 1;
                }
            }
            Err(_) => st.receive_errors += 1,
        }
    }

    fn sendto(
        &mut self,
        _io: &mut Io,
        _id: SockId,
        res: Result<usize, Errno>,
        _buf: Buf,
        _to: SockAddr,
    ) {
        let mut st = self.0.borrow_mut();
        match res {
            Ok(_) => st.reflected += 1,
            Err(_) => st.dropped += 1,
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM end the reflector cleanly (with its report). No
/// SA_RESTART: the wait returns EINTR at once.
fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores an atomic flag.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Reflect on `listen` until SIGINT/SIGTERM or `duration`. `ready` is
/// called once the socket is bound (with its address and the backend).
pub fn run_reflector(
    listen: SocketAddr,
    duration: Option<Duration>,
    backend: Option<BackendKind>,
    ready: impl FnOnce(SocketAddr, &str),
) -> Result<ReflectReport, LoadgenError> {
    install_stop_handlers();
    reflect(listen, duration, backend, &STOP, ready)
}

fn reflect(
    listen: SocketAddr,
    duration: Option<Duration>,
    backend: Option<BackendKind>,
    stop: &AtomicBool,
    ready: impl FnOnce(SocketAddr, &str),
) -> Result<ReflectReport, LoadgenError> {
    let mut io = builder(MAX_SIZE, backend).build()?;
    let sock = UdpSocket::bind(listen).map_err(sock_err(format!("binding {listen}")))?;
    big_rcvbuf(&sock);
    let local = sock
        .local_addr()
        .map_err(sock_err("reading the bound address"))?;
    let state = Rc::new(RefCell::new(ReflectState::default()));
    io.register(sock, Mode::RecvFromSendTo, Reflector(state.clone()))?;
    ready(local, &io.describe());
    let (u0, s0) = cpu_times();
    let calls0 = io.stats().syscalls;
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < d) {
        io.run_once(Some(Duration::from_millis(100)))?;
    }
    // Replies already queued still go out.
    io.flush()?;
    io.run_once(Some(Duration::ZERO))?;
    let (u1, s1) = cpu_times();
    let st = state.borrow();
    Ok(ReflectReport {
        listen: local.to_string(),
        backend: io.backend().to_string(),
        backend_detail: io.describe(),
        duration_s: start.elapsed().as_secs_f64(),
        received: st.received,
        reflected: st.reflected,
        dropped: st.dropped,
        receive_errors: st.receive_errors,
        sources: st.sources.len(),
        cpu: Cpu {
            user_s: u1 - u0,
            sys_s: s1 - s0,
            us_per_packet: ((u1 - u0) + (s1 - s0)) * 1e6 / (st.received.max(1) * 2) as f64,
        },
        syscalls: io.stats().syscalls - calls0,
    })
}

pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let rate = match r.rate_pps {
        Some(p) => format!("{p} pps"),
        None => "unlimited rate".to_owned(),
    };
    let _ = writeln!(
        out,
        "loadgen -> {}: {} flow(s), {} B payloads, {rate}, {:.1} s; backend {}",
        r.target, r.flows, r.size, r.duration_s, r.backend_detail
    );
    let _ = writeln!(
        out,
        "sent      {:>10} packets  {:>12.0} pps  {} send errors",
        r.sent, r.sent_pps, r.send_errors
    );
    let _ = writeln!(
        out,
        "received  {:>10} packets  {:>12.0} pps  lost {} ({:.3} %), {} duplicates, {} reordered, {} invalid",
        r.received, r.received_pps, r.lost, r.loss_pct, r.duplicates, r.reordered, r.invalid
    );
    match &r.latency_us {
        Some(l) => {
            let _ = writeln!(
                out,
                "latency   p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  max {:.1} us  (round trip, {} samples)",
                l.p50, l.p90, l.p99, l.max, l.samples
            );
        }
        None => {
            let _ = writeln!(
                out,
                "latency   none: no packet came back (is a reflector running?)"
            );
        }
    }
    let _ = writeln!(
        out,
        "cost      {:.2} s CPU (user {:.2} + sys {:.2}), {:.2} us/packet, {:.3} syscalls/packet",
        r.cpu.user_s + r.cpu.sys_s,
        r.cpu.user_s,
        r.cpu.sys_s,
        r.cpu.us_per_packet,
        r.syscalls_per_packet
    );
    out
}

pub fn render_reflect(r: &ReflectReport) -> String {
    format!(
        "reflector {}: {} received, {} reflected, {} dropped, {} receive errors, \
         {} sources, {:.1} s, {:.2} s CPU, {} syscalls; backend {}\n",
        r.listen,
        r.received,
        r.reflected,
        r.dropped,
        r.receive_errors,
        r.sources,
        r.duration_s,
        r.cpu.user_s + r.cpu.sys_s,
        r.syscalls,
        r.backend_detail
    )
}

fn seconds(d: Option<f64>) -> Result<Option<Duration>, LoadgenError> {
    match d {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(LoadgenError::Duration(s)),
    }
}

/// `xdpgate loadgen ...`.
pub fn run_cli(a: crate::cli::LoadgenArgs) -> Result<(), LoadgenError> {
    let duration = seconds(a.duration)?;
    if a.reflect {
        let listen = a.listen.ok_or(LoadgenError::NoTarget)?;
        let r = run_reflector(listen, duration, None, |addr, backend| {
            eprintln!("reflecting on {addr} (backend {backend}); SIGINT or SIGTERM ends it");
        })?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&r)
                    .map_err(|e| LoadgenError::Runtime(e.to_string()))?
            );
        } else {
            print!("{}", render_reflect(&r));
        }
        return Ok(());
    }
    let target = a.target.ok_or(LoadgenError::NoTarget)?;
    let r = run_client(&Options {
        target,
        rate: a.rate,
        size: a.size,
        flows: a.flows,
        duration: duration.unwrap_or(Duration::from_secs(10)),
        backend: None,
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| LoadgenError::Runtime(e.to_string()))?
        );
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("0".parse::<Rate>(), Ok(Rate::Unlimited));
        assert_eq!("unlimited".parse::<Rate>(), Ok(Rate::Unlimited));
        assert_eq!("1500".parse::<Rate>(), Ok(Rate::Pps(1500)));
        assert_eq!("50k".parse::<Rate>(), Ok(Rate::Pps(50_000)));
        assert_eq!("2M".parse::<Rate>(), Ok(Rate::Pps(2_000_000)));
        assert!("fast".parse::<Rate>().is_err());
        assert!("-5".parse::<Rate>().is_err());
    }

    #[test]
    fn command_line_is_checked() {
        use clap::Parser as _;

        use crate::cli::{Cli, Command};
        let parse = |args: &[&str]| Cli::try_parse_from(["xdpgate", "loadgen"].iter().chain(args));
        let Command::Loadgen(a) = parse(&["[2001:db8::2]:9000", "--rate", "50k", "--flows", "8"])
            .expect("generator")
            .command
        else {
            panic!("not loadgen")
        };
        assert_eq!(a.rate, Rate::Pps(50_000));
        assert_eq!(a.flows, 8);
        assert!(a.target.is_some_and(|t| t.is_ipv6()));
        assert!(parse(&["--reflect", "--listen", "[::]:9000"]).is_ok());
        assert!(parse(&[]).is_err(), "a target or --reflect is required");
        assert!(parse(&["--reflect"]).is_err(), "--reflect needs --listen");
        assert!(parse(&["1.2.3.4:5", "--reflect", "--listen", "[::]:1"]).is_err());
        assert!(parse(&["1.2.3.4:5", "--rate", "fast"]).is_err());
        assert!(matches!(seconds(Some(0.0)), Err(LoadgenError::Duration(_))));
    }

    #[test]
    fn payload_header_round_trips() {
        let mut p = vec![0u8; 64];
        encode(&mut p, 7, 123_456_789, 42);
        assert_eq!(decode(&p), Some((7, 123_456_789, 42)));
        assert_eq!(decode(&p[..20]), None);
        p[0] = b'x';
        assert_eq!(decode(&p), None);
    }

    #[test]
    fn histogram_quantiles_are_within_three_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 100);
        }
        for (q, exact) in [(0.5, 5_000_000.0), (0.9, 9_000_000.0), (0.99, 9_900_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - exact).abs() / exact < 0.032,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 10_000_000);
        // Every bucket's upper bound maps back to the bucket.
        for i in 0..h.counts.len() {
            assert_eq!(Histogram::index(Histogram::upper(i)), i, "bucket {i}");
        }
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        let opts = Options {
            target: "127.0.0.1:9".parse().expect("static"),
            rate: Rate::Pps(10),
            size: 10,
            flows: 1,
            duration: Duration::from_millis(10),
            backend: Some(BackendKind::Poll),
        };
        let e = run_client(&opts).expect_err("too small");
        assert!(e.to_string().contains("--size 10"), "{e}");
    }

    /// Generator and reflector on loopback, once per backend.
    #[test]
    fn loopback_round_trip_on_both_backends() {
        for backend in [BackendKind::Poll, BackendKind::IoUring] {
            let (tx, rx) = std::sync::mpsc::channel();
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let reflector = std::thread::spawn(move || {
                reflect(
                    "127.0.0.1:0".parse().expect("static"),
                    Some(Duration::from_secs(30)),
                    Some(backend),
                    &stop2,
                    move |addr, _| {
                        let _ = tx.send(addr);
                    },
                )
                .expect("reflector")
            });
            let addr = rx.recv().expect("reflector address");
            let report = run_client(&Options {
                target: addr,
                rate: Rate::Pps(2000),
                size: 100,
                flows: 4,
                duration: Duration::from_millis(500),
                backend: Some(backend),
            })
            .expect("client");
            stop.store(true, Ordering::Relaxed);
            let refl = reflector.join().expect("reflector thread");
            assert_eq!(report.backend, backend.to_string());
            assert_eq!(refl.backend, backend.to_string());
            assert!(report.sent >= 500, "{report:?}");
            assert!(report.received > 0, "{report:?}");
            assert_eq!(report.invalid, 0);
            assert_eq!(report.duplicates, 0);
            let l = report.latency_us.as_ref().expect("latency");
            assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{l:?}");
            assert_eq!(refl.sources, 4, "four flows, four source ports");
            assert!(refl.reflected >= report.received);
            assert!(render(&report).contains("p99"));
        }
    }
}
