//! Kernel-sync benchmarks: how fast and at what memory cost the daemon
//! follows the kernel's routing table over rtnetlink into the XDP maps.
//! They print figures, each next to an anchor measured in the same run (the
//! kernel's own time for the same work, or the measurement's own cost);
//! they never fail on speed.
//!
//! ```text
//! scripts/bench sync [load] [latency]
//! cargo bench -p xdpgate-tests --bench sync [-- load|latency]
//! ```
//!
//! - `load`: a full table (1M IPv4 + 200k IPv6 routes, prefix lengths
//!   weighted like an Internet table) installed with `ip -batch` in the lab
//!   router: first with no daemon (the kernel alone), then with the daemon
//!   following the kernel (the event path), then the daemon started on the
//!   full table (the dump path) and the table flushed under it. Times,
//!   routes/s, the daemon's memory and the route maps' kernel memory; at
//!   full size also the read API's cost, single-change latency and the
//!   cost of events that make the daemon walk its table.
//! - `latency`: 10,000 single `ip route replace` changes on a 10k-route
//!   table, each timed from just before it is issued until the daemon's
//!   XDP map holds it (a map lookup from here) and until its API shows it,
//!   against the time the kernel's notification takes to reach a listener
//!   of our own and the cost of each probe itself.
//!
//! Needs root, bpffs and `target/release/xdpgate` (`scripts/bench` builds
//! it). Everything runs in a lab of its own (namespaces, removed on drop);
//! routes point at the lab's hosts and no traffic is sent to them.
use std::{
    collections::HashSet,
    fs::File,
    io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{
    Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use dataplane_common::{MAX_ROUTES_V4, MAX_ROUTES_V6, Route, RouteKeyV4};
use serde_json::Value;
use xdpgate::{
    lab::{H1_V4, H2_V4, H2_V6},
    netns,
};
use xdpgate_tests::benchutil::{cpu_model, is_root, loadavg, read_trim};
use xdpgate_tests::{rng::Rng, support};

const SECTIONS: [&str; 2] = ["load", "latency"];

fn main() {
    // cargo passes `--bench` to harness = false binaries; flags are not ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = args.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        eprintln!(
            "unknown section {bad:?}; sections: {} (none: all)",
            SECTIONS.join(", ")
        );
        std::process::exit(2);
    }
    let wanted = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    print_header(&args);
    if !is_root() {
        println!("skipped: the benchmarks need root (namespaces, BPF)");
        return;
    }
    let bin = xdpgate_release_bin();
    let start = Instant::now();
    if wanted("load") {
        load_section(&bin);
    }
    if wanted("latency") {
        latency_section(&bin);
    }
    println!(
        "\nTotal benchmark time {:.1} s; load average at the end: {}.",
        start.elapsed().as_secs_f64(),
        loadavg()
    );
}

fn print_header(args: &[String]) {
    let (script, cargo) = if args.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(" {}", args.join(" ")),
            format!(" -- {}", args.join(" ")),
        )
    };
    println!("# xdpgate kernel-sync benchmarks\n");
    println!("```text");
    println!(
        "$ scripts/bench sync{script}    # = cargo bench -p xdpgate-tests --bench sync{cargo}"
    );
    println!("```\n");
    println!(
        "Machine: Linux {}, {} CPU(s) ({}); load average at the start: {}; {}.",
        read_trim("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        loadavg(),
        ip_version()
    );
    println!(
        "Other jobs may share these CPUs: compare each figure with its anchor (measured in \
         the same run), not absolute figures across runs."
    );
}

/// `target/release/xdpgate`, next to this benchmark's `deps` directory.
fn xdpgate_release_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("xdpgate"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/bench sync (it builds the release binary first), or \
         cargo build --release -p controlplane --bins",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

fn ip_version() -> String {
    Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "ip: ?".to_owned())
}

/// "1", "10k", "1.2M".
fn si(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{}k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// "1,200,014".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}k/s", n as f64 / d.as_secs_f64().max(1e-9) / 1e3)
}

fn mib(bytes: u64) -> String {
    if bytes < 10 << 10 {
        format!("{bytes} B")
    } else if bytes < 1 << 20 {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

fn opt_mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".to_owned(), mib)
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Nearest-rank percentile (`p` in 0..=100).
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// (busy, total) jiffies of all CPUs so far (/proc/stat).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle, total))
}

/// Wait (at most `within`) until the CPUs are mostly idle over a 250 ms
/// window: namespaces removed before are torn down by the kernel in the
/// background, and a latency run would otherwise measure that. Returns the
/// time waited and the busy share of the last window.
fn settle(within: Duration) -> (Duration, f64) {
    let t = Instant::now();
    loop {
        let a = cpu_jiffies();
        std::thread::sleep(Duration::from_millis(250));
        let busy = match (a, cpu_jiffies()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => 0.0,
        };
        if busy < 0.25 || t.elapsed() > within {
            return (t.elapsed(), busy);
        }
    }
}

/// A `/proc/PID/status` field in bytes (`VmRSS`, `VmHWM`; given in kB).
fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&s, key)
}

/// A machine-wide `/proc/meminfo` field in bytes.
fn meminfo(key: &str) -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// One of the daemon's route tries, from the fdinfo of its map fds.
struct Trie {
    max_entries: u32,
    id: Option<u32>,
    /// The kernel memory charged for it (what `bpftool map show` reports
    /// as `bytes_memlock`).
    memlock: Option<u64>,
}

/// The daemon's LPM tries (BPF_MAP_TYPE_LPM_TRIE = 11,
/// include/uapi/linux/bpf.h). Maps are global, so reading the daemon's own
/// fds cannot pick up another process's tries.
fn tries(pid: u32) -> Vec<Trie> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if field("map_type:") == Some(11)
            && let Some(max) = field("max_entries:")
        {
            out.push(Trie {
                max_entries: max as u32,
                id: field("map_id:").map(|v| v as u32),
                memlock: field("memlock:"),
            });
        }
    }
    out
}

/// `memlock` of ROUTES_V4 and ROUTES_V6 (told apart by capacity).
fn route_maps_memlock(pid: u32) -> (Option<u64>, Option<u64>) {
    let all = tries(pid);
    let of = |max| {
        all.iter()
            .find(|t| t.max_entries == max)
            .and_then(|t| t.memlock)
    };
    (of(MAX_ROUTES_V4), of(MAX_ROUTES_V6))
}

/// Removes a directory on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xdpgate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

const SEED: u64 = 0x7379_6e63_6265_6e63;

/// IPv4 prefix lengths and their weight in per mille, shaped like the
/// Internet table (about 60 % /24, then /22, /23, /21, /20, ...; a few
/// shorter than /16 and a few longer than /24).
const V4_LENGTHS: [(u8, u32); 21] = [
    (8, 1),
    (10, 1),
    (12, 1),
    (14, 1),
    (15, 1),
    (16, 14),
    (17, 8),
    (18, 13),
    (19, 25),
    (20, 45),
    (21, 55),
    (22, 120),
    (23, 100),
    (24, 600),
    (25, 3),
    (26, 3),
    (27, 2),
    (28, 2),
    (29, 2),
    (30, 1),
    (32, 2),
];

/// IPv6: mostly /48, then /32, /44, /56, /40, ... up to /64.
const V6_LENGTHS: [(u8, u32); 13] = [
    (29, 10),
    (32, 80),
    (36, 20),
    (40, 40),
    (42, 10),
    (44, 80),
    (45, 20),
    (46, 20),
    (47, 20),
    (48, 600),
    (52, 10),
    (56, 60),
    (64, 30),
];

fn weighted(rng: &mut Rng, table: &[(u8, u32)]) -> u8 {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for (len, w) in table {
        if x < *w {
            return *len;
        }
        x -= w;
    }
    unreachable!("x < total")
}

/// A random IPv4 prefix outside 0/8, 127/8, 169/8, 198/8 (the lab's
/// 198.18.0.0/15 lives there) and 224/3.
fn draw_v4(rng: &mut Rng) -> (u32, u8) {
    let len = weighted(rng, &V4_LENGTHS);
    loop {
        let addr = rng.next_u64() as u32;
        let first = addr >> 24;
        if matches!(first, 0 | 127 | 169 | 198) || first >= 224 {
            continue;
        }
        return (addr & (u32::MAX << (32 - u32::from(len))), len);
    }
}

/// A random IPv6 prefix in 2000::/3 outside 2001::/16 (the lab's
/// 2001:db8::/32 lives there).
fn draw_v6(rng: &mut Rng) -> (u128, u8) {
    let len = weighted(rng, &V6_LENGTHS);
    loop {
        let addr = (rng.wide() & (u128::MAX >> 3)) | (1u128 << 125);
        if (addr >> 112) as u16 == 0x2001 {
            continue;
        }
        return (addr & !(u128::MAX >> len), len);
    }
}

/// `n` distinct prefixes, in drawing order.
fn distinct<A: Copy + Eq + std::hash::Hash>(
    n: usize,
    mut draw: impl FnMut() -> (A, u8),
) -> Vec<(A, u8)> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = draw();
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

fn v4_prefix((addr, len): (u32, u8)) -> String {
    format!("{}/{len}", Ipv4Addr::from(addr))
}

fn v6_prefix((addr, len): (u128, u8)) -> String {
    format!("{}/{len}", Ipv6Addr::from(addr))
}

/// Write `ip -batch` files of [`BATCH_LINES`] lines `route add PREFIX via
/// GW` each, named `{name}-N.batch` in `dir`.
fn write_batches<P: Copy>(
    dir: &Path,
    name: &str,
    prefixes: &[P],
    fmt: impl Fn(P) -> String,
    gw: &str,
) -> Vec<PathBuf> {
    prefixes
        .chunks(BATCH_LINES)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("{name}-{i}.batch"));
            let mut w = BufWriter::new(File::create(&path).expect("create a batch file"));
            for p in chunk {
                writeln!(w, "route add {} via {gw}", fmt(*p)).expect("write a batch file");
            }
            w.flush().expect("write a batch file");
            path
        })
        .collect()
}

/// "/24 60.1 %, /22 12.0 %, ..." for the lengths that hold 2 % or more,
/// the rest summed up.
fn length_mix(lengths: impl Iterator<Item = u8>) -> String {
    let mut counts = [0usize; 129];
    let mut n = 0;
    for l in lengths {
        counts[usize::from(l)] += 1;
        n += 1;
    }
    let mut order: Vec<usize> = (0..counts.len()).filter(|l| counts[*l] > 0).collect();
    order.sort_by_key(|l| std::cmp::Reverse(counts[*l]));
    let mut parts = Vec::new();
    let mut rest = 0;
    for l in order {
        if counts[l] * 50 >= n {
            parts.push(format!("/{l} {:.1} %", 100.0 * counts[l] as f64 / n as f64));
        } else {
            rest += counts[l];
        }
    }
    parts.push(format!(
        "others {:.1} %",
        100.0 * rest as f64 / n.max(1) as f64
    ));
    parts.join(", ")
}

// ---------------------------------------------------------------------------
// The daemon and its API
// ---------------------------------------------------------------------------

/// HTTP/1.1 GETs on one kept-alive connection (the CLI's client opens one
/// per request, which would add a connection set-up to every poll).
struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, conn: None }
    }

    fn connect(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(BufReader::new(s));
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    fn send(&mut self, path: &str) -> std::io::Result<()> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr);
        self.connect()?.get_mut().write_all(request.as_bytes())
    }

    /// Read one response: status line, headers, `Content-Length` body.
    fn receive(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let conn = self.conn.as_mut().ok_or_else(|| bad("not connected"))?;
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no HTTP status line"))?;
        let mut length = None;
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.ok_or_else(|| bad("no Content-Length"))?];
        conn.read_exact(&mut body)?;
        Ok((status, body))
    }

    /// GET `path` as JSON; one reconnect if the kept-alive connection broke.
    fn get(&mut self, path: &str) -> Result<Value, String> {
        let mut last = String::new();
        for _ in 0..2 {
            match self.send(path).and_then(|()| self.receive()) {
                Ok((200, body)) => {
                    return serde_json::from_slice(&body).map_err(|e| format!("GET {path}: {e}"));
                }
                Ok((status, body)) => {
                    return Err(format!(
                        "GET {path}: {status} {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
                Err(e) => {
                    self.conn = None;
                    last = format!("GET {path}: {e}");
                }
            }
        }
        Err(last)
    }

    /// GET `path` from a daemon that may not serve yet (it serves once its
    /// first snapshot is applied): the request waits in the listen queue
    /// and is answered the moment serving starts. Gives up if `child` exits
    /// or `within` passes.
    fn first_answer(
        &mut self,
        path: &str,
        child: &mut Child,
        within: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        let still_starting = |child: &mut Child| match child.try_wait() {
            Ok(None) if Instant::now() < deadline => Ok(()),
            Ok(None) => Err(format!("xdpgate did not serve within {within:?}")),
            Ok(Some(status)) => Err(format!("xdpgate exited with {status} before serving")),
            Err(e) => Err(format!("waiting for xdpgate: {e}")),
        };
        loop {
            still_starting(child)?;
            if self.send(path).is_err() {
                // Not listening yet (the first milliseconds after spawn).
                self.conn = None;
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let conn = self.conn.as_mut().expect("sent on it");
            conn.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            // Wait for the first byte without consuming anything, so a
            // timeout loses no part of the answer.
            let ready = loop {
                match conn.fill_buf() {
                    Ok(b) => break !b.is_empty(),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        still_starting(child)?;
                    }
                    Err(_) => break false,
                }
            };
            if !ready {
                self.conn = None;
                continue;
            }
            conn.get_ref()
                .set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            match self.receive() {
                Ok((200, body)) => return serde_json::from_slice(&body).map_err(|e| e.to_string()),
                _ => self.conn = None,
            }
        }
    }
}

/// `xdpgate run` (the release build) attached to the lab router's eth1 and
/// eth2, following the kernel. SIGTERM (a clean detach) on drop, SIGKILL if
/// it does not exit within 10 s.
struct Daemon {
    child: Child,
    api: SocketAddr,
    db: PathBuf,
    log: PathBuf,
    http: Http,
}

/// A started daemon: how long it took to serve and its first health answer.
struct Started {
    daemon: Daemon,
    spawned: Instant,
    to_serving: Duration,
    health: Value,
}

impl Daemon {
    fn start(bin: &Path, router: &str, dir: &Path, tag: &str) -> Started {
        let api = support::free_port();
        let db = dir.join(format!("{tag}.db"));
        let log = dir.join(format!("{tag}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(["--netns", router, "--iface", "eth1", "--iface", "eth2"])
            .args(["--api", &api.to_string()])
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the daemon log"));
        // Drop covers panics; a bench killed outright (Ctrl-C) runs no
        // destructors, so the daemon is also told to detach and exit when
        // this thread dies.
        // SAFETY: prctl is async-signal-safe and touches no parent state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let t = Instant::now();
        let child = cmd.spawn().expect("spawn xdpgate");
        let mut daemon = Daemon {
            child,
            api,
            db,
            log,
            http: Http::new(api),
        };
        let health = daemon
            .http
            .first_answer("/healthz", &mut daemon.child, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}; the log ends:\n{}", daemon.log_tail()));
        Started {
            spawned: t,
            to_serving: t.elapsed(),
            daemon,
            health,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sync(&mut self) -> Value {
        self.http.get("/healthz").expect("GET /healthz")["kernel_sync"].clone()
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// SIGTERM and wait; returns how long the exit took.
    fn stop(mut self) -> Duration {
        self.terminate()
    }

    fn terminate(&mut self) -> Duration {
        let t = Instant::now();
        if self.child.try_wait().ok().flatten().is_some() {
            return Duration::ZERO;
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = t + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("error: xdpgate did not exit within 10 s of SIGTERM; killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
        t.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.terminate();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One `/healthz` reading.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    routes: u64,
    snapshots: u64,
}

/// Reads `/healthz` every [`POLL_EVERY`] on a thread of its own until
/// dropped, so the figures do not depend on what the main thread waits on.
struct Poller {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const POLL_EVERY: Duration = Duration::from_millis(10);

impl Poller {
    fn start(api: SocketAddr) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut http = Http::new(api);
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(v) = http.get("/healthz") {
                        let s = &v["kernel_sync"];
                        samples.lock().expect("samples").push(Sample {
                            at: Instant::now(),
                            routes: s["routes"].as_u64().unwrap_or(0),
                            snapshots: s["snapshots"].as_u64().unwrap_or(0),
                        });
                    }
                    std::thread::sleep(POLL_EVERY);
                }
            })
        };
        Self {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// When the daemon first reported `done(routes)` after `since`; waits
    /// up to `within`.
    fn wait(
        &self,
        since: Instant,
        within: Duration,
        done: impl Fn(u64) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .samples
                .lock()
                .expect("samples")
                .iter()
                .find(|s| s.at >= since && done(s.routes))
                .map(|s| s.at);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Snapshots the daemon took after `since` (resyncs after overruns).
    fn resyncs(&self, since: Instant) -> u64 {
        let samples = self.samples.lock().expect("samples");
        let seen: Vec<u64> = samples
            .iter()
            .filter(|s| s.at >= since)
            .map(|s| s.snapshots)
            .collect();
        match (seen.iter().min(), seen.iter().max()) {
            (Some(lo), Some(hi)) => hi - lo,
            _ => 0,
        }
    }

    fn last(&self) -> Option<Sample> {
        self.samples.lock().expect("samples").last().copied()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The kernel side
// ---------------------------------------------------------------------------

/// What one `ip` run took.
#[derive(Clone, Copy, Default)]
struct IpRun {
    /// Wall time: the kernel's work plus iproute2's parsing, one netlink
    /// round trip per line, and its exit.
    wall: Duration,
    /// Peak resident memory of the `ip` process.
    max_rss: u64,
}

/// `ip -n NS ARGS...` to completion, bounded.
fn timed_ip(ns: &str, args: &[&str], within: Duration) -> IpRun {
    let t = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped below with wait4, which also gives its peak memory"
    )]
    let mut child = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip");
    let pid = child.id() as libc::pid_t;
    // wait4 rather than Child::try_wait, for the child's peak memory.
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: our own child; valid pointers. Reaping it here leaves
        // nothing for `child` to wait on, which it never does on drop.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break (status, usage);
        }
        assert_eq!(rc, 0, "wait4 ip: {}", std::io::Error::last_os_error());
        if t.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ip {args:?} still running after {within:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall = t.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "ip {args:?} failed (wait status {status}): {}",
        err.trim()
    );
    IpRun {
        wall,
        // ru_maxrss is in KiB on Linux.
        max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}

/// `ip -batch` each file in turn; one run per file.
fn ip_batches(ns: &str, files: &[PathBuf]) -> Vec<IpRun> {
    files
        .iter()
        .map(|f| {
            timed_ip(
                ns,
                &["-batch", f.to_str().expect("UTF-8 path")],
                INSTALL_TIMEOUT,
            )
        })
        .collect()
}

fn wall(runs: &[IpRun]) -> Duration {
    runs.iter().map(|r| r.wall).sum()
}

/// Remove the routes `ip` added (proto boot) from the main table.
fn flush(ns: &str, family: &str) -> Duration {
    timed_ip(
        ns,
        &[family, "route", "flush", "proto", "boot"],
        INSTALL_TIMEOUT,
    )
    .wall
}

/// Machine-wide slab memory: where the kernel keeps its FIB.
fn slab() -> Option<u64> {
    meminfo("Slab")
}

// ---------------------------------------------------------------------------
// Section 1: full-table load
// ---------------------------------------------------------------------------

const V4_ROUTES: usize = 1_000_000;
const V6_ROUTES: usize = 200_000;
/// Lines per `ip -batch` file: iproute2 6.1 keeps about 4 KiB per batch
/// line until it exits (printed below), so one file of a million lines
/// would grow `ip` to gigabytes and make its exit free them.
const BATCH_LINES: usize = 100_000;
/// One `ip -batch` may take this long before it is killed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the daemon may lag behind the kernel before we give up.
const CATCH_UP: Duration = Duration::from_secs(120);
/// Repetitions of each API probe.
const API_PROBES: usize = 5;

/// One family's install, flush or catch-up.
struct Phase {
    label: &'static str,
    routes: usize,
    /// Wall time of `ip`.
    kernel: Duration,
    /// From the start of `ip` until the daemon reported the routes (None:
    /// it did not within [`CATCH_UP`]).
    daemon: Option<Duration>,
    /// Snapshots the daemon took meanwhile (overrun -> dump -> diff).
    resyncs: u64,
}

impl Phase {
    fn row(&self) -> String {
        let (daemon, daemon_rate, lag) = match self.daemon {
            Some(d) => (
                secs(d),
                rate(self.routes, d),
                format!(
                    "{:+.0} ms",
                    (d.as_secs_f64() - self.kernel.as_secs_f64()) * 1e3
                ),
            ),
            None => (
                format!("> {}", secs(self.kernel + CATCH_UP)),
                "-".to_owned(),
                "-".to_owned(),
            ),
        };
        format!(
            "| {} | {} | {} | {} | {daemon} | {daemon_rate} | {lag} | {} |",
            self.label,
            si(self.routes),
            secs(self.kernel),
            rate(self.routes, self.kernel),
            self.resyncs,
        )
    }
}

/// Install (or flush) one family with the daemon following; `done` says
/// when the daemon's route count shows it.
fn followed(
    poller: &Poller,
    label: &'static str,
    routes: usize,
    run: impl FnOnce() -> Duration,
    done: impl Fn(u64) -> bool,
) -> Phase {
    let t = Instant::now();
    let kernel = run();
    let daemon = poller.wait(t, CATCH_UP, done).map(|at| at - t);
    if daemon.is_none() {
        let last = poller.last().map_or(0, |s| s.routes);
        println!("error: {label}: the daemon still reports {last} routes after {CATCH_UP:?}");
    }
    Phase {
        label,
        routes,
        kernel,
        daemon,
        resyncs: poller.resyncs(t),
    }
}

/// Median ms of `n` GETs of `path`.
fn probe(http: &mut Http, path: &str, n: usize) -> f64 {
    let times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            http.get(path).unwrap_or_else(|e| panic!("{e}"));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&times)
}

/// The kernel alone (no daemon): install, dump and flush times.
struct KernelAlone {
    v4: Vec<IpRun>,
    v6: Vec<IpRun>,
    /// Machine-wide slab before and after the install.
    slab: (Option<u64>, Option<u64>),
    dump: (Duration, Duration),
    flush: (Duration, Duration),
}

fn kernel_alone(r: &str, v4_files: &[PathBuf], v6_files: &[PathBuf]) -> KernelAlone {
    let slab0 = slab();
    let v4 = ip_batches(r, v4_files);
    let v6 = ip_batches(r, v6_files);
    let slab1 = slab();
    let dump = (
        timed_ip(r, &["-4", "route", "show"], INSTALL_TIMEOUT).wall,
        timed_ip(r, &["-6", "route", "show"], INSTALL_TIMEOUT).wall,
    );
    let flush = (flush(r, "-4"), flush(r, "-6"));
    KernelAlone {
        v4,
        v6,
        slab: (slab0, slab1),
        dump,
        flush,
    }
}

/// Resident memory now and at its peak, and the route tries' memlock.
struct Memory {
    rss: Option<u64>,
    peak: Option<u64>,
    tries: (Option<u64>, Option<u64>),
}

impl Memory {
    fn of(pid: u32) -> Self {
        Self {
            rss: proc_status(pid, "VmRSS"),
            peak: proc_status(pid, "VmHWM"),
            tries: route_maps_memlock(pid),
        }
    }
}

/// Median ms of the read API's requests at full size.
struct ApiProbe {
    health: f64,
    prefix: f64,
    first_page: f64,
    last_page: f64,
}

/// A daemon started on the empty table follows the install.
struct EventPath {
    start: Duration,
    /// Routes the daemon reports before the install (connected, local).
    base: u64,
    empty: Memory,
    v4: Phase,
    v6: Phase,
    full: Memory,
    sync: Value,
    api: ApiProbe,
    /// Single route replaces with the full table.
    changes: Latencies,
    changes_sync: Value,
    /// [`nexthop_probe`] on the empty and on the full table.
    scan: (Probe, Probe),
    stop: Duration,
}

/// Kernel and daemon time for a burst of events.
struct Probe {
    ip: Duration,
    /// Until the daemon counted every event (None: not within
    /// [`CATCH_UP`]).
    daemon: Option<Duration>,
}

/// Nexthop objects added in one burst by [`nexthop_probe`].
const PROBE_NEXTHOPS: u32 = 200;

/// Add [`PROBE_NEXTHOPS`] nexthop objects (ids from `first_id`, used by no
/// route) in one `ip -batch` and time the daemon until it has counted the
/// events. Each one makes the reconciler look for the routes that use it
/// (netlink/reconcile.rs process_nexthop walks every prefix), so this
/// measures a per-event cost that grows with the table. The objects stay
/// (the lab's namespace removes them).
fn nexthop_probe(d: &mut Daemon, ns: &str, dir: &Path, first_id: u32) -> Probe {
    let file = dir.join(format!("nexthops-{first_id}.batch"));
    let lines: String = (first_id..first_id + PROBE_NEXTHOPS)
        .map(|id| format!("nexthop add id {id} via {H2_V4} dev eth2\n"))
        .collect();
    std::fs::write(&file, lines).expect("write the nexthop batch");
    let events = |d: &mut Daemon| d.sync()["events"].as_u64().expect("events");
    let before = events(d);
    let t = Instant::now();
    let ip = timed_ip(
        ns,
        &["-batch", file.to_str().expect("UTF-8 path")],
        INSTALL_TIMEOUT,
    )
    .wall;
    let deadline = t + CATCH_UP;
    let daemon = loop {
        if events(d) >= before + u64::from(PROBE_NEXTHOPS) {
            break Some(t.elapsed());
        }
        if Instant::now() > deadline {
            println!(
                "error: the daemon did not count {PROBE_NEXTHOPS} nexthop events within {CATCH_UP:?}"
            );
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Probe { ip, daemon }
}

fn event_path(
    bin: &Path,
    r: &str,
    dir: &Path,
    v4_files: &[PathBuf],
    v6_files: &[PathBuf],
    v4: &[(u32, u8)],
) -> EventPath {
    let Started {
        daemon: mut d,
        to_serving: start,
        health,
        ..
    } = Daemon::start(bin, r, dir, "events");
    let base = health["kernel_sync"]["routes"].as_u64().expect("routes");
    let empty = Memory::of(d.pid());
    let scan_empty = nexthop_probe(&mut d, r, dir, 1000);
    let poller = Poller::start(d.api);
    let v4_phase = followed(
        &poller,
        "IPv4",
        V4_ROUTES,
        || wall(&ip_batches(r, v4_files)),
        |n| n >= base + V4_ROUTES as u64,
    );
    let v6_phase = followed(
        &poller,
        "IPv6",
        V6_ROUTES,
        || wall(&ip_batches(r, v6_files)),
        |n| n >= base + (V4_ROUTES + V6_ROUTES) as u64,
    );
    drop(poller);
    let sync = d.sync();
    let full = Memory::of(d.pid());
    let inside = v4_prefix(v4[v4.len() / 2]);
    let api = ApiProbe {
        health: probe(&mut d.http, "/healthz", API_PROBES),
        prefix: probe(
            &mut d.http,
            &format!("/api/v1/routes?prefix={inside}&limit=1"),
            API_PROBES,
        ),
        first_page: probe(&mut d.http, "/api/v1/routes?limit=1000", API_PROBES),
        last_page: probe(
            &mut d.http,
            &format!("/api/v1/routes?limit=1000&cursor={inside}"),
            API_PROBES,
        ),
    };
    let scan_full = nexthop_probe(&mut d, r, dir, 2000);
    let changes = measure_changes(&mut d, r, v4, CHANGES, false, &dir.join("ip-full.log"));
    EventPath {
        start,
        base,
        empty,
        v4: v4_phase,
        v6: v6_phase,
        full,
        sync,
        api,
        changes,
        changes_sync: d.sync(),
        scan: (scan_empty, scan_full),
        stop: d.stop(),
    }
}

/// A daemon started on the full table; the table is then flushed under it.
struct DumpPath {
    /// Spawn until it serves with every route in its maps (None: not
    /// within [`CATCH_UP`]).
    synced: Option<Duration>,
    sync: Value,
    full: Memory,
    flush_v4: Phase,
    flush_v6: Phase,
    flush_sync: Value,
    flushed: Memory,
    stop: Duration,
}

fn dump_path(bin: &Path, r: &str, dir: &Path, base: u64) -> DumpPath {
    let full = base + (V4_ROUTES + V6_ROUTES) as u64;
    let Started {
        daemon: mut d,
        spawned,
        to_serving,
        health,
    } = Daemon::start(bin, r, dir, "dump");
    let mut sync = health["kernel_sync"].clone();
    let synced = if sync["routes"].as_u64() >= Some(full) {
        Some(to_serving)
    } else {
        // Served before the snapshot was applied (it waits at most 30 s).
        let poller = Poller::start(d.api);
        let at = poller.wait(spawned, CATCH_UP, |n| n >= full);
        sync = d.sync();
        at.map(|at| at - spawned)
    };
    let full_memory = Memory::of(d.pid());
    let poller = Poller::start(d.api);
    let flush_v4 = followed(
        &poller,
        "IPv4",
        V4_ROUTES,
        || flush(r, "-4"),
        |n| n <= base + V6_ROUTES as u64,
    );
    let flush_v6 = followed(&poller, "IPv6", V6_ROUTES, || flush(r, "-6"), |n| n <= base);
    drop(poller);
    DumpPath {
        synced,
        sync,
        full: full_memory,
        flush_v4,
        flush_v6,
        flush_sync: d.sync(),
        flushed: Memory::of(d.pid()),
        stop: d.stop(),
    }
}

fn load_section(bin: &Path) {
    println!("\n## Full-table load\n");
    let guard = support::lab(false);
    let r = guard.lab.router();
    let dir = TempDir::new("sync-bench");
    let t = Instant::now();
    let mut rng = Rng(SEED);
    let mut rng4 = Rng(rng.next_u64());
    let mut rng6 = Rng(rng.next_u64());
    let v4 = distinct(V4_ROUTES, || draw_v4(&mut rng4));
    let v6 = distinct(V6_ROUTES, || draw_v6(&mut rng6));
    let v4_files = write_batches(&dir.0, "v4", &v4, v4_prefix, H2_V4);
    let v6_files = write_batches(&dir.0, "v6", &v6, v6_prefix, H2_V6);
    let generated = t.elapsed();

    let kernel = kernel_alone(&r, &v4_files, &v6_files);
    let events = event_path(bin, &r, &dir.0, &v4_files, &v6_files, &v4);
    let dump = dump_path(bin, &r, &dir.0, events.base);

    println!(
        "{} IPv4 routes (lengths: {}) and {} IPv6 routes (lengths: {}), distinct random \
         prefixes (seed {SEED:#x}; IPv4 outside 0/8, 127/8, 169/8, 198/8 and 224/3, IPv6 in \
         2000::/3 outside 2001::/16), via {H2_V4} and {H2_V6} (h2, on the router's eth2), \
         installed into the lab router's main table with `ip -batch` files of {} lines \
         (`route add PREFIX via GW`, one netlink request and ACK per line), run one after \
         the other. Kernel forwarding off; no traffic. Drawing and writing the files took \
         {}. The daemon (release build) is attached natively to eth1 and eth2 and follows \
         the kernel with its default 32 MiB netlink receive buffer; it reports its route \
         count in `/healthz` `kernel_sync.routes`, read every {} ms on a kept-alive \
         connection ({} routes before the install: the lab's connected and local \
         routes).\n",
        si(V4_ROUTES),
        length_mix(v4.iter().map(|p| p.1)),
        si(V6_ROUTES),
        length_mix(v6.iter().map(|p| p.1)),
        si(BATCH_LINES),
        secs(generated),
        POLL_EVERY.as_millis(),
        events.base,
    );
    print_install(&kernel, &events);
    print_memory(&kernel, &events, &dump);
    print_dump(&kernel, &events, &dump);
    print_flush(&kernel, &dump);
    print_api(&events);
    println!(
        "\n### Change latency with the full table\n\nMeasured as in the `latency` section \
         (same method and probes, {} warm-up changes), on the event-path daemon \
         right after the install: single `ip route replace` of random prefixes of the \
         {} IPv4 routes, between {H2_V4} and {ALT_GW}.\n",
        WARMUP_CHANGES,
        si(V4_ROUTES)
    );
    print_latency(&events.changes, CHANGES, &events.changes_sync);
    print_scan(&events);
    for (what, sync) in [
        ("event path", &events.sync),
        ("dump path", &dump.sync),
        ("flush", &dump.flush_sync),
    ] {
        if sync["errors"].as_u64() != Some(0) {
            println!(
                "error: {what}: the daemon counted {} refused changes",
                sync["errors"]
            );
        }
    }
    let alerts = log_alerts(&dir.0);
    if !alerts.is_empty() {
        println!("\nThe daemons logged:\n");
        for line in alerts.iter().take(10) {
            println!("    {line}");
        }
    }
}

fn print_install(kernel: &KernelAlone, events: &EventPath) {
    let total = V4_ROUTES + V6_ROUTES;
    let (k_v4, k_v6) = (wall(&kernel.v4), wall(&kernel.v6));
    let ip_rss = kernel.v4.iter().map(|r| r.max_rss).max().unwrap_or(0);
    let chunk = |r: Option<&IpRun>| r.map_or_else(|| "?".to_owned(), |r| secs(r.wall));
    println!("### Install: the kernel alone, then with the daemon following\n");
    println!(
        "Anchor: the same `ip -batch` files into the same namespace with no daemon \
         running, earlier in this run: IPv4 {} ({}), IPv6 {} ({}), together {} ({}). \
         Per file: the first {} IPv4 routes took {}, the last {} (into a table of {}) \
         {}. The files hold {} lines each because `ip` keeps memory per line until it \
         exits: one file peaked at {} resident ({:.1} KiB per line).\n",
        secs(k_v4),
        rate(V4_ROUTES, k_v4),
        secs(k_v6),
        rate(V6_ROUTES, k_v6),
        secs(k_v4 + k_v6),
        rate(total, k_v4 + k_v6),
        si(BATCH_LINES),
        chunk(kernel.v4.first()),
        si(BATCH_LINES),
        si(V4_ROUTES.saturating_sub(BATCH_LINES)),
        chunk(kernel.v4.last()),
        si(BATCH_LINES),
        mib(ip_rss),
        ip_rss as f64 / 1024.0 / BATCH_LINES as f64,
    );
    println!(
        "| family | routes | `ip -batch` (daemon running) | kernel routes/s | daemon: all \
         routes in its maps | daemon routes/s | daemon behind `ip` | resyncs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", events.v4.row());
    println!("{}", events.v6.row());
    let both = Phase {
        label: "both",
        routes: total,
        kernel: events.v4.kernel + events.v6.kernel,
        daemon: events.v4.daemon.zip(events.v6.daemon).map(|(a, b)| a + b),
        resyncs: events.v4.resyncs + events.v6.resyncs,
    };
    println!("{}", both.row());
    let sync = &events.sync;
    println!(
        "\nTimes run from the start of the first `ip` until `/healthz` first showed every \
         route of the family (the count is updated after the map writes of each event, so \
         it means the maps hold them). A negative lag means the daemon showed the last \
         route before the last `ip` had exited: an `ip` exit frees the memory it kept \
         per line. `ip` with the daemon running vs alone: {:.2}x (the daemon competes for \
         the {} CPUs, and the kernel now builds a multicast copy of each route for it). Netlink \
         during the install: {} snapshot(s) (1 = the start; more = resyncs after an \
         overrun), {} events, {} changes, {} refused.",
        both.kernel.as_secs_f64() / (k_v4 + k_v6).as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sync["snapshots"],
        sync["events"],
        sync["changes"],
        sync["errors"],
    );
    let snapshots = sync["snapshots"].as_u64().unwrap_or(0);
    if snapshots > 1 {
        println!(
            "The daemon's netlink socket overran {} time(s) during the install; each \
             overrun costs a full dump and diff.",
            snapshots - 1
        );
    }
}

/// Growth from `before` to `after` per route, in bytes.
fn per_route(after: Option<u64>, before: Option<u64>, routes: usize) -> String {
    match (after, before) {
        (Some(a), Some(b)) => format!("{:.0} B", a.saturating_sub(b) as f64 / routes as f64),
        _ => "?".to_owned(),
    }
}

fn print_memory(kernel: &KernelAlone, events: &EventPath, dump: &DumpPath) {
    let total = V4_ROUTES + V6_ROUTES;
    let (empty, full) = (&events.empty, &events.full);
    println!("\n### Memory\n");
    println!("| | empty table | {} routes | per route |", si(total));
    println!("|---|---:|---:|---:|");
    println!(
        "| daemon resident (VmRSS), event path | {} | {} (peak {}) | {} |",
        opt_mib(empty.rss),
        opt_mib(full.rss),
        opt_mib(full.peak),
        per_route(full.rss, empty.rss, total)
    );
    println!(
        "| daemon resident (VmRSS), dump path | - | {} (peak {}) | {} |",
        opt_mib(dump.full.rss),
        opt_mib(dump.full.peak),
        per_route(dump.full.rss, empty.rss, total)
    );
    println!(
        "| ROUTES_V4 trie (memlock) | {} | {} | {} |",
        opt_mib(empty.tries.0),
        opt_mib(full.tries.0),
        per_route(full.tries.0, empty.tries.0, V4_ROUTES)
    );
    println!(
        "| ROUTES_V6 trie (memlock) | {} | {} | {} |",
        opt_mib(empty.tries.1),
        opt_mib(full.tries.1),
        per_route(full.tries.1, empty.tries.1, V6_ROUTES)
    );
    println!(
        "| anchor: kernel slab, machine-wide (the kernel's own FIB) | {} | {} | {} |",
        opt_mib(kernel.slab.0),
        opt_mib(kernel.slab.1),
        per_route(kernel.slab.1, kernel.slab.0, total)
    );
    println!(
        "\nAfter the flush (dump-path daemon, table empty again, {} snapshot(s)): VmRSS {}, \
         tries {} + {}. \
         Trie memory is the map's `memlock` in the daemon's fdinfo (what `bpftool map \
         show` prints as `bytes_memlock`). The slab figure is the machine-wide \
         /proc/meminfo `Slab` growth across the daemon-less install, so other work on \
         the machine adds noise to it.",
        dump.flush_sync["snapshots"],
        opt_mib(dump.flushed.rss),
        opt_mib(dump.flushed.tries.0),
        opt_mib(dump.flushed.tries.1),
    );
}

fn print_dump(kernel: &KernelAlone, events: &EventPath, dump: &DumpPath) {
    let total = V4_ROUTES + V6_ROUTES;
    println!("\n### Daemon start on the full table (the dump path)\n");
    println!(
        "Anchors: `ip route show` of the full table (a netlink dump, formatted as text, \
         to /dev/null): IPv4 {}, IPv6 {}; the kernel install above: {}.\n",
        secs(kernel.dump.0),
        secs(kernel.dump.1),
        secs(wall(&kernel.v4) + wall(&kernel.v6))
    );
    println!(
        "| daemon start | routes in the kernel | spawn → serving, all routes in its maps | \
         of which snapshot diff + map writes | routes/s |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| empty table | {} | {} | - | - |",
        events.base,
        secs(events.start)
    );
    let snapshot = dump.sync["last_snapshot_ms"]
        .as_u64()
        .map_or_else(|| "?".to_owned(), |ms| secs(Duration::from_millis(ms)));
    println!(
        "| full table | {} | {} | {snapshot} | {} |",
        thousands(events.base + total as u64),
        dump.synced
            .map_or_else(|| "did not finish".to_owned(), secs),
        dump.synced
            .map_or_else(|| "-".to_owned(), |d| rate(total, d)),
    );
    println!(
        "\nThe daemon serves its API only once the first snapshot is applied (or after \
         30 s), so spawn → first `/healthz` answer covers loading and attaching the XDP \
         program, the netlink dump, the diff and every map write. The snapshot is \
         applied under the dataplane lock in one go. Dump-path snapshots: {}. SIGTERM → \
         exit: {} with the full table (event-path daemon), {} after the flush.",
        dump.sync["snapshots"],
        secs(events.stop),
        secs(dump.stop),
    );
}

fn print_flush(kernel: &KernelAlone, dump: &DumpPath) {
    println!("\n### Flush under the daemon\n");
    println!(
        "Anchor: the same `ip route flush proto boot` with no daemon running: IPv4 {} \
         ({}), IPv6 {} ({}).\n",
        secs(kernel.flush.0),
        rate(V4_ROUTES, kernel.flush.0),
        secs(kernel.flush.1),
        rate(V6_ROUTES, kernel.flush.1)
    );
    println!(
        "| family | routes | `ip route flush` (daemon running) | kernel routes/s | daemon: \
         routes gone from its maps | daemon routes/s | daemon behind `ip` | resyncs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", dump.flush_v4.row());
    println!("{}", dump.flush_v6.row());
    println!(
        "\nNetlink during the flush: {} snapshot(s) in all (1 = the start; each more is a \
         resync after an overrun: a new subscription, a full dump and a diff), {} events.",
        dump.flush_sync["snapshots"], dump.flush_sync["events"]
    );
}

fn print_api(events: &EventPath) {
    let full = events.base + (V4_ROUTES + V6_ROUTES) as u64;
    let api = &events.api;
    println!("\n### The read API at {} routes\n", thousands(full));
    println!("| request | median of {API_PROBES} |");
    println!("|---|---:|");
    println!("| anchor: `GET /healthz` | {:.2} ms |", api.health);
    println!(
        "| `GET /api/v1/routes?prefix=<one /24>&limit=1` | {:.2} ms |",
        api.prefix
    );
    println!(
        "| `GET /api/v1/routes?limit=1000` (first page) | {:.2} ms |",
        api.first_page
    );
    println!(
        "| `GET /api/v1/routes?limit=1000&cursor=<a prefix mid-table>` | {:.2} ms |",
        api.last_page
    );
    println!(
        "\nA routes request is a range scan of the sorted table from its prefix or cursor \
         (O(log n + page)), done under the dataplane lock; paging through all {} routes \
         takes {} requests.",
        thousands(full),
        full.div_ceil(1000)
    );
}

fn print_scan(events: &EventPath) {
    let full = events.base + (V4_ROUTES + V6_ROUTES) as u64;
    println!("\n### Events that walk the whole table\n");
    println!(
        "{PROBE_NEXTHOPS} nexthop objects (`ip nexthop add id N via {H2_V4} dev eth2`, used \
         by no route) in one `ip -batch`, on the event-path daemon before and after the \
         install; the daemon is done when `/healthz` `kernel_sync.events` has grown by \
         {PROBE_NEXTHOPS}. Anchor: the same burst on the empty table, and `ip`'s own time.\n"
    );
    println!("| routes | `ip -batch` | daemon done | daemon per event |");
    println!("|---:|---:|---:|---:|");
    for (routes, p) in [(events.base, &events.scan.0), (full, &events.scan.1)] {
        let (done, each) = match p.daemon {
            Some(d) => (
                secs(d),
                format!(
                    "{:.2} ms",
                    d.as_secs_f64() * 1e3 / f64::from(PROBE_NEXTHOPS)
                ),
            ),
            None => (format!("> {}", secs(CATCH_UP)), "-".to_owned()),
        };
        println!(
            "| {} | {} | {done} | {each} |",
            thousands(routes),
            secs(p.ip)
        );
    }
    println!(
        "\nEvery nexthop event makes the reconciler walk every prefix (netlink/reconcile.rs \
         `process_nexthop` -> `refresh_routes`), and link events do the same \
         (`process_link`, `process_link_gone`), so the cost per event grows with the table \
         and a burst of them holds back every route change queued behind it."
    );
}

/// The daemons' log lines about overruns and refused changes, colour
/// codes removed.
fn log_alerts(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in ["events.log", "dump.log"] {
        let log = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        for line in log.lines() {
            if line.contains("overrun") || line.contains("refused") {
                out.push(format!("{f}: {}", strip_ansi(line)));
            }
        }
    }
    out
}

/// `line` without ANSI escape sequences (the daemon's log is coloured).
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Section 2: change latency
// ---------------------------------------------------------------------------

const LATENCY_ROUTES: usize = 10_000;
const CHANGES: usize = 10_000;
/// Unmeasured changes first (the first move to the second gateway makes
/// the daemon ask the kernel to resolve it, once).
const WARMUP_CHANGES: usize = 50;
const LATENCY_BUDGET: Duration = Duration::from_secs(60);
/// One change may take this long to show before it counts as lost.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// The second gateway: h1, on the router's eth1.
const ALT_GW: &str = H1_V4;
const LATENCY_SEED: u64 = SEED ^ 0x6c61_7465_6e63_7921;

/// A long-lived `ip -batch -` fed one line per change, so that process
/// start-up is not part of any figure. Killed on drop.
struct IpShell {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl IpShell {
    fn spawn(ns: &str, log: &Path) -> Self {
        let mut child = Command::new("ip")
            .args(["-n", ns, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("create the ip log"))
            .spawn()
            .expect("spawn ip -batch -");
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    fn send(&mut self, line: &str) {
        // ChildStdin is unbuffered: one write, one line for ip.
        self.stdin
            .as_mut()
            .expect("stdin")
            .write_all(line.as_bytes())
            .expect("ip -batch - exited (see its error log)");
    }
}

impl Drop for IpShell {
    fn drop(&mut self) {
        // EOF ends the batch; kill if it does not end by itself.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw rtnetlink socket in namespace `ns` subscribed to IPv4 route
/// changes: the anchor, when the kernel's notification reaches a listener
/// (the daemon gets the same multicast).
fn route_listener(ns: &str) -> OwnedFd {
    netns::in_netns(ns, || -> std::io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_nl is valid; fields set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
        // SAFETY: a valid address of the right length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: a valid socket and a timeval option.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    })
    .expect("enter the router namespace")
    .expect("open an rtnetlink listener")
}

/// Whether a datagram holds RTM_NEWROUTE for `prefix` via `gw`
/// (include/uapi/linux/rtnetlink.h: nlmsghdr, rtmsg, rtattrs).
fn announces(buf: &[u8], (addr, len): (u32, u8), gw: Ipv4Addr) -> bool {
    let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
    let mut off = 0;
    while off + 16 <= buf.len() {
        let msg_len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if msg_len < 16 || off + msg_len > buf.len() {
            return false;
        }
        let msg = &buf[off + 16..off + msg_len];
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
        // type, flags (u32): 12 bytes, then the attributes.
        if u16_at(buf, off + 4) == libc::RTM_NEWROUTE
            && msg.len() >= 12
            && i32::from(msg[0]) == libc::AF_INET
            && msg[1] == len
        {
            let (mut dst, mut via) = (None, None);
            let mut a = 12;
            while a + 4 <= msg.len() {
                let (alen, atype) = (usize::from(u16_at(msg, a)), u16_at(msg, a + 2));
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                let v = &msg[a + 4..a + alen];
                if v.len() == 4 {
                    let ip = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
                    match atype {
                        libc::RTA_DST => dst = Some(ip),
                        libc::RTA_GATEWAY => via = Some(ip),
                        _ => {}
                    }
                }
                a += (alen + 3) & !3;
            }
            if dst == Some(Ipv4Addr::from(addr)) && via == Some(gw) {
                return true;
            }
        }
        off += (msg_len + 3) & !3;
    }
    false
}

/// When the listener saw the change, or None within [`CHANGE_TIMEOUT`].
fn wait_announcement(
    fd: &OwnedFd,
    buf: &mut [u8],
    prefix: (u32, u8),
    gw: Ipv4Addr,
) -> Option<Instant> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while Instant::now() < deadline {
        // SAFETY: a valid socket and a buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let at = Instant::now();
        // n < 0: timeout (checked above) or ENOBUFS (we fell behind; the
        // change is then missed and counted as such).
        if n > 0 && announces(&buf[..n as usize], prefix, gw) {
            return Some(at);
        }
    }
    None
}

/// Gateway of the API's first route inside `prefix`, if that route is
/// `prefix` itself.
fn api_gateway(v: &Value, prefix: &str) -> Option<String> {
    let item = &v["items"][0];
    if item["prefix"].as_str() != Some(prefix) {
        return None;
    }
    item["nexthops"][0]["gateway"].as_str().map(str::to_owned)
}

/// Poll the API until `prefix` goes via `gw`; returns when it did and the
/// number of requests, or None within [`CHANGE_TIMEOUT`].
fn poll_until(http: &mut Http, prefix: &str, gw: &str) -> (Option<Instant>, u32) {
    let path = format!("/api/v1/routes?prefix={prefix}&limit=1");
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    let mut polls = 0;
    while Instant::now() < deadline {
        let v = http.get(&path).unwrap_or_else(|e| panic!("{e}"));
        polls += 1;
        if api_gateway(&v, prefix).as_deref() == Some(gw) {
            return (Some(Instant::now()), polls);
        }
    }
    (None, polls)
}

/// The daemon's IPv4 route trie, opened by id: a lookup from here (a few
/// µs) tells when the daemon's map write landed, far finer than an API poll.
fn open_v4_trie(pid: u32) -> LpmTrie<MapData, RouteKeyV4, Route> {
    let id = tries(pid)
        .into_iter()
        .find(|t| t.max_entries == MAX_ROUTES_V4)
        .and_then(|t| t.id)
        .expect("the daemon's ROUTES_V4 map id (fdinfo)");
    let data = MapData::from_id(id).expect("open ROUTES_V4 by id");
    LpmTrie::try_from(Map::LpmTrie(data)).expect("ROUTES_V4 is an LPM trie")
}

/// Look `key` up until its route leaves next hop `old`; returns when, or
/// None within [`CHANGE_TIMEOUT`].
fn poll_map(
    trie: &LpmTrie<MapData, RouteKeyV4, Route>,
    key: &Key<RouteKeyV4>,
    old: u32,
) -> Option<Instant> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    while Instant::now() < deadline {
        if trie.get(key, 0).is_ok_and(|r| r.nh != old) {
            return Some(Instant::now());
        }
    }
    None
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn latency_row(label: &str, v: &[f64]) -> String {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    format!(
        "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        v.len(),
        percentile(v, 50.0),
        percentile(v, 90.0),
        percentile(v, 99.0),
        v.iter().copied().fold(f64::NAN, f64::max),
        mean
    )
}

/// µs per measured change, one list per interval.
#[derive(Default)]
struct Latencies {
    /// Issued -> the listener heard the kernel (t1 - t0).
    notified: Vec<f64>,
    /// Issued -> in the XDP map (tm - t0).
    in_map: Vec<f64>,
    /// Heard -> in the XDP map (tm - t1): the daemon's own latency.
    daemon: Vec<f64>,
    /// Issued -> shown by the API (t2 - t0).
    shown: Vec<f64>,
    /// One lookup of an unchanged route.
    lookup: Vec<f64>,
    /// One API poll of a visible change.
    poll: Vec<f64>,
    measured: usize,
    /// Not in the map / not in the API / not heard within the timeout.
    missed: (usize, usize, usize),
    polls: u64,
    first_poll: usize,
    elapsed: Duration,
}

/// Time `count` single route replaces on `table` (IPv4 prefixes the kernel
/// has via [`H2_V4`]), one at a time, after [`WARMUP_CHANGES`] unmeasured
/// ones; stop early at `budget`. With `api`, also poll the read API until
/// it shows each change (skipped on a full table, where one poll walks
/// every route: see the API table).
fn measure_changes(
    d: &mut Daemon,
    ns: &str,
    table: &[(u32, u8)],
    count: usize,
    api: bool,
    ip_log: &Path,
) -> Latencies {
    let mut rng = Rng(LATENCY_SEED ^ table.len() as u64);
    let listener = route_listener(ns);
    let trie = open_v4_trie(d.pid());
    let mut shell = IpShell::spawn(ns, ip_log);
    let mut buf = vec![0u8; 64 << 10];
    let h2: Ipv4Addr = H2_V4.parse().expect("static");
    let h1: Ipv4Addr = ALT_GW.parse().expect("static");
    // Per route: currently via the alternative gateway?
    let mut alt = vec![false; table.len()];
    let mut l = Latencies::default();
    let started = Instant::now();
    for i in 0..WARMUP_CHANGES + count {
        if started.elapsed() > LATENCY_BUDGET {
            break;
        }
        let j = rng.below(table.len() as u64) as usize;
        alt[j] = !alt[j];
        let (gw, gw_text) = if alt[j] { (h1, ALT_GW) } else { (h2, H2_V4) };
        let prefix = v4_prefix(table[j]);
        let line = format!("route replace {prefix} via {gw_text}\n");
        let key = Key::new(u32::from(table[j].1), table[j].0.to_be_bytes());
        let old = trie.get(&key, 0).expect("the route is in ROUTES_V4").nh;

        let t0 = Instant::now();
        shell.send(&line);
        let heard = wait_announcement(&listener, &mut buf, table[j], gw);
        let in_map = poll_map(&trie, &key, old);
        let (shown, polls) = if api {
            poll_until(&mut d.http, &prefix, gw_text)
        } else {
            (None, 0)
        };
        // The anchors: the same probes once the change is visible.
        let t = Instant::now();
        let _ = trie.get(&key, 0);
        let lookup = t.elapsed();
        let again = api.then(|| {
            let t = Instant::now();
            poll_until(&mut d.http, &prefix, gw_text).0.map(|at| at - t)
        });

        if i < WARMUP_CHANGES {
            continue;
        }
        l.measured += 1;
        l.polls += u64::from(polls);
        l.lookup.push(us(lookup));
        l.poll.extend(again.flatten().map(us));
        if let Some(t1) = heard {
            l.notified.push(us(t1 - t0));
        } else {
            l.missed.2 += 1;
        }
        match in_map {
            Some(tm) => {
                l.in_map.push(us(tm - t0));
                l.daemon
                    .extend(heard.map(|t1| us(tm.saturating_duration_since(t1))));
            }
            None => l.missed.0 += 1,
        }
        match shown {
            Some(t2) => {
                l.shown.push(us(t2 - t0));
                if polls == 1 {
                    l.first_poll += 1;
                }
            }
            None if api => l.missed.1 += 1,
            None => {}
        }
    }
    l.elapsed = started.elapsed();
    drop(shell);
    if let Ok(err) = std::fs::read_to_string(ip_log)
        && !err.trim().is_empty()
    {
        println!("error: ip -batch - said: {}", err.trim());
    }
    l
}

fn latency_section(bin: &Path) {
    println!("\n## Change latency\n");
    let guard = support::lab(false);
    let r = guard.lab.router();
    let dir = TempDir::new("sync-latency");
    let mut rng = Rng(LATENCY_SEED);
    let table = distinct(LATENCY_ROUTES, || draw_v4(&mut rng));
    let files = write_batches(&dir.0, "table", &table, v4_prefix, H2_V4);

    let Started {
        daemon: mut d,
        health,
        ..
    } = Daemon::start(bin, &r, &dir.0, "latency");
    let base = health["kernel_sync"]["routes"].as_u64().expect("routes");
    let install = wall(&ip_batches(&r, &files));
    let poller = Poller::start(d.api);
    let want = base + LATENCY_ROUTES as u64;
    if poller
        .wait(Instant::now() - install, CATCH_UP, |n| n >= want)
        .is_none()
    {
        println!(
            "error: the daemon never showed the {LATENCY_ROUTES}-route table; its log \
             ends:\n{}",
            d.log_tail()
        );
        return;
    }
    drop(poller);
    let (waited, busy) = settle(Duration::from_secs(15));
    let l = measure_changes(&mut d, &r, &table, CHANGES, true, &dir.0.join("ip.log"));
    let sync = d.sync();
    println!(
        "{} random IPv4 prefixes (the load section's length mix, seed {LATENCY_SEED:#x}) \
         via {H2_V4}, installed with `ip -batch` in {}; the daemon (release build) \
         follows the kernel. Then one `ip route replace PREFIX via GW` at a time, for a \
         random prefix of the table, moving it between {H2_V4} (eth2) and {ALT_GW} \
         (eth1), written as one line to a long-lived `ip -n ROUTER -batch -` (no process \
         start per change). For each change: **t0** just before the write; **t1** when \
         the anchor listener (a raw rtnetlink socket of this process in the router \
         namespace, subscribed to RTMGRP_IPV4_ROUTE like the daemon) receives the \
         kernel's RTM_NEWROUTE; **tm** when a lookup of the prefix in the daemon's \
         ROUTES_V4 map (opened here by id, looked up in a loop from t1 on) returns the \
         new next hop; **t2** when `GET /api/v1/routes?prefix=P&limit=1`, repeated on a \
         kept-alive connection from tm on, shows the new gateway. Then the overhead \
         anchors: one more lookup and one more poll, of the now-visible change. {} \
         warm-up changes first, unmeasured. Before the first, {} waiting for the CPUs to \
         settle (a torn-down namespace is freed in the background): {:.0} % busy then.\n",
        si(LATENCY_ROUTES),
        secs(install),
        WARMUP_CHANGES,
        secs(waited),
        busy * 100.0,
    );
    print_latency(&l, CHANGES, &sync);
}

fn print_latency(l: &Latencies, count: usize, sync: &Value) {
    println!("| µs | changes | p50 | p90 | p99 | max | mean |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let rows = [
        ("issued → in the XDP map (tm - t0)", &l.in_map),
        ("issued → shown by the API (t2 - t0)", &l.shown),
        (
            "anchor: issued → kernel notification at a listener (t1 - t0)",
            &l.notified,
        ),
        ("notification → in the XDP map (tm - t1)", &l.daemon),
        ("anchor: one map lookup (probe overhead)", &l.lookup),
        ("anchor: one API poll of a visible change", &l.poll),
    ];
    // Rows without samples (no API polls on a full table) are left out.
    for (label, v) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        println!("{}", latency_row(label, v));
    }
    let api = if l.shown.is_empty() {
        "The read API was not polled here (the map probe is the finer one).".to_owned()
    } else {
        format!(
            "The API figures carry the HTTP round trip: {:.2} requests per change, the \
             first (sent at tm) already showing the change {:.0} % of the time.",
            l.polls as f64 / l.measured.max(1) as f64,
            100.0 * l.first_poll as f64 / l.measured.max(1) as f64,
        )
    };
    println!(
        "\n{} of {count} changes measured in {} (budget {}); not within {} ms: {} in the \
         map, {}{} at the listener. t1 - t0 is the pipe to `ip`, its parsing, the \
         kernel's route replace and the multicast; tm - t1 is the daemon's own work (its \
         wake-up, parsing, reconciling, the map update) less our own wake-up, to a \
         lookup's resolution. {api} Daemon netlink: {} snapshot(s), {} events, {} \
         refused changes.",
        l.measured,
        secs(l.elapsed),
        secs(LATENCY_BUDGET),
        CHANGE_TIMEOUT.as_millis(),
        l.missed.0,
        if l.shown.is_empty() {
            String::new()
        } else {
            format!("{} in the API, ", l.missed.1)
        },
        l.missed.2,
        sync["snapshots"],
        sync["events"],
        sync["errors"],
    );
}
