//! I/O layer benchmarks: the sockio backends head to head, poll vs
//! io_uring in the same run, interleaved round by round (other jobs share
//! this machine's CPUs, so compare the ratios, not absolute figures across
//! runs). They print figures and never fail on speed.
//!
//! ```text
//! scripts/bench io [loopback] [veth]
//! cargo bench -p xdpgate-tests --bench io [-- loopback|veth]
//! ```
//!
//! For each path (loopback, and a veth pair between two lab namespaces:
//! h1 -> the router's eth1, no forwarding) and payload size (64, 512 B):
//!
//! - **echo**: a client keeps 32 datagrams in flight to an echo server
//!   (recvfrom + sendto of the same buffer); round trips per second.
//! - **blast**: a sender keeps up to 2048 writes in flight towards a sink
//!   that only counts; datagrams delivered per second.
//!
//! Each side runs its own loop on its own thread (both on the backend
//! under test). CPU is getrusage(RUSAGE_SELF) user+sys over the measured
//! window: both threads, softirq work the kernel charges to them, and any
//! io_uring worker threads. System calls are counted by the backends
//! themselves (`sockio::Stats::syscalls`: every call site increments it),
//! per side. Needs root for the veth section (namespaces).
use std::{
    cell::RefCell,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sockio::{BackendKind, Buf, Errno, Handler, Io, Mode, SockAddr, SockId};
use xdpgate::{
    lab::{H1_V4, R1_V4},
    netns,
};
use xdpgate_tests::{
    benchutil::{cpu_model, is_root, loadavg, read_trim},
    support,
};

const SECTIONS: [&str; 2] = ["loopback", "veth"];
const SIZES: [usize; 2] = [64, 512];
const BACKENDS: [BackendKind; 2] = [BackendKind::Poll, BackendKind::IoUring];
const ROUNDS: usize = 3;
const WARMUP: Duration = Duration::from_millis(300);
const WINDOW: Duration = Duration::from_millis(1500);
/// Echo: datagrams in flight.
const ECHO_DEPTH: usize = 32;
/// Blast: writes in flight.
const BLAST_DEPTH: usize = 2048;

fn main() {
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
    let start = Instant::now();
    if wanted("loopback") {
        let bind = |_: &str| UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        section("Loopback (127.0.0.1)", &bind, &bind);
        registered_files(&bind);
        task_work(&bind);
    }
    if wanted("veth") {
        if is_root() {
            veth_section();
        } else {
            println!("\nveth: skipped, needs root (namespaces)");
        }
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
    println!("# sockio I/O backends: poll vs io_uring\n");
    println!("```text");
    println!("$ scripts/bench io{script}    # = cargo bench -p xdpgate-tests --bench io{cargo}");
    println!("```\n");
    println!(
        "Machine: Linux {}, {} CPU(s) ({}); load average at the start: {}.",
        read_trim("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        loadavg()
    );
    for k in BACKENDS {
        let io = Io::builder()
            .backend(k)
            .fallback(false)
            .build()
            .expect("backend");
        println!("- {}", io.describe());
    }
    println!(
        "\n{ROUNDS} rounds, backends alternating first; {} ms warm-up, {} ms measured per run; \
         medians. CPU = user+sys of the whole process per packet; syscalls counted by the \
         backends.",
        WARMUP.as_millis(),
        WINDOW.as_millis()
    );
}

fn veth_section() {
    let guard = support::lab(false);
    let lab = &guard.lab;
    let (h1, r) = (lab.h1(), lab.router());
    // Resolve the neighbours once, so no run pays for ARP.
    if !support::ping(&h1, R1_V4, 1) {
        println!("\nveth: skipped, h1 cannot reach the router");
        return;
    }
    let in_h1 = move |_: &str| {
        netns::in_netns(&h1, || UdpSocket::bind(format!("{H1_V4}:0")))
            .expect("netns h1")
            .expect("bind in h1")
    };
    let in_r = move |_: &str| {
        netns::in_netns(&r, || UdpSocket::bind(format!("{R1_V4}:0")))
            .expect("netns r")
            .expect("bind in r")
    };
    section(
        "veth (lab h1 198.18.1.2 -> router eth1 198.18.1.1, one veth crossing each way)",
        &in_h1,
        &in_r,
    );
}

/// Figures of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    /// Datagrams delivered (blast) or round trips (echo) per second.
    pps: f64,
    /// Blast: datagrams the sender got out per second.
    sent_pps: f64,
    /// Process CPU (user+sys) per delivered datagram / round trip, µs.
    cpu_us: f64,
    /// System calls per datagram, sending side and receiving side.
    tx_calls: f64,
    rx_calls: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Test {
    Echo,
    Blast,
}

fn section(
    title: &str,
    client_sock: &dyn Fn(&str) -> UdpSocket,
    server_sock: &dyn Fn(&str) -> UdpSocket,
) {
    println!("\n## {title}\n");
    println!(
        "| test | payload | backend | kpps | CPU µs/pkt | syscalls/pkt tx | syscalls/pkt rx | \
         io_uring/poll: pps | CPU/pkt | syscalls/pkt |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for test in [Test::Echo, Test::Blast] {
        for size in SIZES {
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); BACKENDS.len()];
            for round in 0..ROUNDS {
                for j in 0..BACKENDS.len() {
                    let b = if round % 2 == 0 {
                        j
                    } else {
                        BACKENDS.len() - 1 - j
                    };
                    let client = client_sock("client");
                    let server = server_sock("server");
                    let v = Variant::of(BACKENDS[b]);
                    let run = match test {
                        Test::Echo => echo(v, size, client, server),
                        Test::Blast => blast(v, size, client, server),
                    };
                    runs[b].push(run);
                }
            }
            report(test, size, &runs);
        }
    }
    println!(
        "\nkpps: echo = round trips, blast = datagrams delivered to the sink (sender's own \
         rate in parentheses when it differs by more than 2 %). tx/rx syscalls per datagram \
         sent/received; echo counts both directions on each side."
    );
}

/// io_uring with and without the registered-file table, same run,
/// interleaved: does IORING_REGISTER_FILES pay on this path?
fn registered_files(sock: &dyn Fn(&str) -> UdpSocket) {
    let uring = Variant::of(BackendKind::IoUring);
    uring_a_b(
        "io_uring registered files (loopback, 64 B)",
        "registered files",
        [
            ("yes", uring),
            (
                "no",
                Variant {
                    fixed_files: 0,
                    ..uring
                },
            ),
        ],
        sock,
    );
}

/// DEFER_TASKRUN + SINGLE_ISSUER (the default) against COOP_TASKRUN, same
/// run, interleaved: where completion task work runs (only when the loop
/// waits, or at any transition to user space with a flag to check).
fn task_work(sock: &dyn Fn(&str) -> UdpSocket) {
    let uring = Variant::of(BackendKind::IoUring);
    uring_a_b(
        "io_uring task work: DEFER_TASKRUN vs COOP_TASKRUN (loopback, 64 B)",
        "task work",
        [
            ("DEFER_TASKRUN", uring),
            (
                "COOP_TASKRUN",
                Variant {
                    defer_taskrun: false,
                    ..uring
                },
            ),
        ],
        sock,
    );
}

/// Two io_uring configurations, echo and blast at 64 B, [`ROUNDS`] rounds
/// alternating which goes first; ratios are first/second per round.
fn uring_a_b(
    title: &str,
    column: &str,
    variants: [(&str, Variant); 2],
    sock: &dyn Fn(&str) -> UdpSocket,
) {
    println!("\n### {title}\n");
    println!("| test | {column} | kpps | CPU µs/pkt | first/second: pps | CPU/pkt |");
    println!("|---|---|---:|---:|---:|---:|");
    for test in [Test::Echo, Test::Blast] {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); 2];
        for round in 0..ROUNDS {
            for j in 0..2 {
                let i = if round % 2 == 0 { j } else { 1 - j };
                let (c, srv) = (sock("client"), sock("server"));
                runs[i].push(match test {
                    Test::Echo => echo(variants[i].1, 64, c, srv),
                    Test::Blast => blast(variants[i].1, 64, c, srv),
                });
            }
        }
        let med = |i: usize, f: fn(&Run) -> f64| median(runs[i].iter().map(f).collect());
        let ratio = |f: fn(&Run) -> f64| {
            median(
                runs[0]
                    .iter()
                    .zip(&runs[1])
                    .map(|(a, b)| f(a) / f(b))
                    .collect(),
            )
        };
        for (i, (label, _)) in variants.iter().enumerate() {
            let ratios = if i == 0 {
                format!("{:.2} | {:.2}", ratio(|r| r.pps), ratio(|r| r.cpu_us))
            } else {
                " | ".to_owned()
            };
            println!(
                "| {} | {label} | {:.0} | {:.2} | {ratios} |",
                match test {
                    Test::Echo => "echo",
                    Test::Blast => "blast",
                },
                med(i, |r| r.pps) / 1e3,
                med(i, |r| r.cpu_us)
            );
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn report(test: Test, size: usize, runs: &[Vec<Run>]) {
    let med = |b: usize, f: fn(&Run) -> f64| median(runs[b].iter().map(f).collect());
    // Ratios are medians of per-round ratios.
    let ratio = |f: fn(&Run) -> f64| {
        median(
            runs[1]
                .iter()
                .zip(&runs[0])
                .map(|(u, p)| f(u) / f(p))
                .collect(),
        )
    };
    for (b, kind) in BACKENDS.iter().enumerate() {
        let pps = med(b, |r| r.pps);
        let sent = med(b, |r| r.sent_pps);
        let rate = if test == Test::Blast && (sent - pps).abs() > 0.02 * sent {
            format!("{:.0} ({:.0})", pps / 1e3, sent / 1e3)
        } else {
            format!("{:.0}", pps / 1e3)
        };
        let ratios = if b == 1 {
            format!(
                "{:.2} | {:.2} | {:.2}",
                ratio(|r| r.pps),
                ratio(|r| r.cpu_us),
                ratio(|r| r.tx_calls + r.rx_calls)
            )
        } else {
            " | | ".to_owned()
        };
        println!(
            "| {} | {size} B | {kind} | {rate} | {:.2} | {:.3} | {:.3} | {ratios} |",
            match test {
                Test::Echo => "echo",
                Test::Blast => "blast",
            },
            med(b, |r| r.cpu_us),
            med(b, |r| r.tx_calls),
            med(b, |r| r.rx_calls),
        );
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage into a zeroed local.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

fn big_buffers(s: &UdpSocket) {
    let v: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: an int option on a valid socket.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// A loop configuration under test.
#[derive(Clone, Copy)]
struct Variant {
    kind: BackendKind,
    /// Size of io_uring's registered-file table (0: none).
    fixed_files: u32,
    /// IORING_SETUP_DEFER_TASKRUN (else COOP_TASKRUN).
    defer_taskrun: bool,
}

impl Variant {
    fn of(kind: BackendKind) -> Self {
        Self {
            kind,
            fixed_files: 4096,
            defer_taskrun: true,
        }
    }
}

fn io(v: Variant) -> Io {
    Io::builder()
        .backend(v.kind)
        .fixed_files(v.fixed_files)
        .defer_taskrun(v.defer_taskrun)
        .fallback(false)
        .queue_limit(1 << 16)
        .build()
        .expect("loop")
}

/// Counters a side publishes for the measuring thread.
#[derive(Default)]
struct Side {
    packets: AtomicU64,
    syscalls: AtomicU64,
}

impl Side {
    fn publish(&self, packets: u64, io: &Io) {
        self.packets.store(packets, Ordering::Relaxed);
        self.syscalls.store(io.stats().syscalls, Ordering::Relaxed);
    }
    fn read(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.syscalls.load(Ordering::Relaxed),
        )
    }
}

/// Counter deltas over the measured window.
struct Window {
    /// (packets, syscalls) of the sending/client side.
    tx: (u64, u64),
    /// (packets, syscalls) of the receiving/server side.
    rx: (u64, u64),
    /// Process CPU seconds (user + sys).
    cpu: f64,
    secs: f64,
}

/// Sample both sides and the CPU at the start and the end of the window.
fn measure(tx: &Side, rx: &Side) -> Window {
    std::thread::sleep(WARMUP);
    let (t0, r0, c0, i0) = (tx.read(), rx.read(), cpu_seconds(), Instant::now());
    std::thread::sleep(WINDOW);
    let (t1, r1, c1) = (tx.read(), rx.read(), cpu_seconds());
    Window {
        tx: (t1.0 - t0.0, t1.1 - t0.1),
        rx: (r1.0 - r0.0, r1.1 - r0.1),
        cpu: c1 - c0,
        secs: i0.elapsed().as_secs_f64(),
    }
}

fn per(calls: u64, packets: u64) -> f64 {
    calls as f64 / packets.max(1) as f64
}

/// Echo server: every datagram back to its source, same buffer.
struct EchoServer(Rc<RefCell<u64>>);

impl Handler for EchoServer {
    fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
        if let Ok((buf, from)) = res {
            *self.0.borrow_mut() += 1;
            let _ = io.sendto(id, buf, from);
        }
    }
}

/// Echo client: each reply goes out again at once (same buffer), so
/// `ECHO_DEPTH` datagrams stay in flight.
struct EchoClient(Rc<RefCell<u64>>);

impl Handler for EchoClient {
    fn read(&mut self, io: &mut Io, id: SockId, res: Result<Buf, Errno>) {
        if let Ok(buf) = res {
            *self.0.borrow_mut() += 1;
            let _ = io.write(id, buf);
        }
    }
}

fn echo(kind: Variant, size: usize, client: UdpSocket, server: UdpSocket) -> Run {
    big_buffers(&client);
    big_buffers(&server);
    let to: SocketAddr = server.local_addr().expect("addr");
    client.connect(to).expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let (cs, ss) = (Arc::new(Side::default()), Arc::new(Side::default()));
    let server_thread = {
        let (stop, ss) = (stop.clone(), ss.clone());
        std::thread::spawn(move || {
            let mut io = io(kind);
            let n = Rc::new(RefCell::new(0u64));
            io.register(server, Mode::RecvFromSendTo, EchoServer(n.clone()))
                .expect("register");
            while !stop.load(Ordering::Relaxed) {
                io.run_once(Some(Duration::from_millis(5))).expect("run");
                ss.publish(*n.borrow(), &io);
            }
        })
    };
    let client_thread = {
        let (stop, cs) = (stop.clone(), cs.clone());
        std::thread::spawn(move || {
            let mut io = io(kind);
            let n = Rc::new(RefCell::new(0u64));
            let id = io
                .register(client, Mode::ReadWrite, EchoClient(n.clone()))
                .expect("register");
            let mut primed = false;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // (Re)fill the pipe: at the start, and if losses drained it.
                if !primed
                    || (io.outstanding(id) == 0 && last.elapsed() > Duration::from_millis(50))
                {
                    for _ in 0..ECHO_DEPTH {
                        let mut b = io.buf();
                        b.set_len(size);
                        let _ = io.write(id, b);
                    }
                    primed = true;
                }
                let before = *n.borrow();
                io.run_once(Some(Duration::from_millis(5))).expect("run");
                if *n.borrow() != before {
                    last = Instant::now();
                }
                cs.publish(*n.borrow(), &io);
            }
        })
    };
    let w = measure(&cs, &ss);
    stop.store(true, Ordering::Relaxed);
    client_thread.join().expect("client");
    server_thread.join().expect("server");
    let (trips, served) = (w.tx.0, w.rx.0);
    Run {
        pps: trips as f64 / w.secs,
        sent_pps: trips as f64 / w.secs,
        cpu_us: w.cpu * 1e6 / trips.max(1) as f64,
        tx_calls: per(w.tx.1, trips),
        rx_calls: per(w.rx.1, served),
    }
}

/// Blast sender: counts completed writes.
struct Sender(Rc<RefCell<(u64, usize)>>);

impl Handler for Sender {
    fn write(&mut self, _io: &mut Io, _id: SockId, res: Result<usize, Errno>, _buf: Buf) {
        let mut s = self.0.borrow_mut();
        s.1 -= 1;
        if res.is_ok() {
            s.0 += 1;
        }
    }
}

/// Blast sink: counts datagrams.
struct Sink(Rc<RefCell<u64>>);

impl Handler for Sink {
    fn read(&mut self, _io: &mut Io, _id: SockId, res: Result<Buf, Errno>) {
        if res.is_ok() {
            *self.0.borrow_mut() += 1;
        }
    }
}

fn blast(kind: Variant, size: usize, client: UdpSocket, server: UdpSocket) -> Run {
    big_buffers(&client);
    big_buffers(&server);
    client
        .connect(server.local_addr().expect("addr"))
        .expect("connect");
    server
        .connect(client.local_addr().expect("addr"))
        .expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let (ts, rs) = (Arc::new(Side::default()), Arc::new(Side::default()));
    let sink_thread = {
        let (stop, rs) = (stop.clone(), rs.clone());
        std::thread::spawn(move || {
            let mut io = io(kind);
            let n = Rc::new(RefCell::new(0u64));
            io.register(server, Mode::ReadWrite, Sink(n.clone()))
                .expect("register");
            while !stop.load(Ordering::Relaxed) {
                io.run_once(Some(Duration::from_millis(5))).expect("run");
                rs.publish(*n.borrow(), &io);
            }
        })
    };
    let sender_thread = {
        let (stop, ts) = (stop.clone(), ts.clone());
        std::thread::spawn(move || {
            let mut io = io(kind);
            let st = Rc::new(RefCell::new((0u64, 0usize)));
            let id = io
                .register(client, Mode::ReadWrite, Sender(st.clone()))
                .expect("register");
            while !stop.load(Ordering::Relaxed) {
                let room = BLAST_DEPTH - st.borrow().1;
                for _ in 0..room {
                    let mut b = io.buf();
                    b.set_len(size);
                    if io.write(id, b).is_err() {
                        break;
                    }
                    st.borrow_mut().1 += 1;
                }
                io.run_once(Some(Duration::ZERO)).expect("run");
                ts.publish(st.borrow().0, &io);
            }
        })
    };
    let w = measure(&ts, &rs);
    stop.store(true, Ordering::Relaxed);
    sender_thread.join().expect("sender");
    sink_thread.join().expect("sink");
    let (sent, got) = (w.tx.0, w.rx.0);
    Run {
        pps: got as f64 / w.secs,
        sent_pps: sent as f64 / w.secs,
        cpu_us: w.cpu * 1e6 / got.max(1) as f64,
        tx_calls: per(w.tx.1, sent),
        rx_calls: per(w.rx.1, got),
    }
}
