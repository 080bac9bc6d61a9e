//! The API under load, and what that load costs forwarding: `wrk` against
//! `GET /api/v1/stats` and `GET /metrics` of the lab daemon on loopback
//! (requests per second, p99 latency), and the UDP rate h1 -> h2 through
//! the router measured in the same run without and with that load.
//!
//! `cargo bench -p xdpgate-tests --bench api` (or `scripts/bench api`,
//! which installs wrk and builds the release daemon first). Prints a table;
//! never fails on speed.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use xdpgate::{
    lab::{H2_V4, Lab},
    netns,
};
use xdpgate_tests::{
    benchutil::{cpu_model, is_root, loadavg},
    support::{self, Daemon},
    traffic::{big_receive_buffer, pattern},
};

/// How long each wrk run and each forwarding measurement lasts.
const RUN: Duration = Duration::from_secs(5);
/// wrk's threads and open connections.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 16;
/// UDP payload of the forwarding measurement.
const PAYLOAD: usize = 64;
const PATHS: [&str; 2] = ["/api/v1/stats", "/metrics"];

fn main() {
    println!("# API benchmark\n");
    println!(
        "CPU: {}; load average at start: {}.",
        cpu_model(),
        loadavg()
    );
    if !is_root() {
        println!("skipped: the benchmark needs root (namespaces, BPF)");
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("skipped: wrk not found (apt-get install wrk, or run scripts/bench api)");
        return;
    }
    let start = Instant::now();
    // Kernel forwarding off: only XDP carries h1 -> h2, so the rate is XDP's.
    let guard = support::lab(false);
    let lab = &guard.lab;
    let daemon = Daemon::start_forwarding(lab, true, &[]);
    println!(
        "wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{}s --latency against {} (loopback); \
         forwarding: one UDP sender, {PAYLOAD}-byte payloads, h1 -> h2 for {} s.\n",
        RUN.as_secs(),
        daemon.api,
        RUN.as_secs()
    );

    let idle_before = forward_rate(lab, 9000);
    let mut rows = Vec::new();
    for (i, path) in PATHS.iter().enumerate() {
        let alone = wrk(daemon.api, path);
        let port = 9001 + i as u16 * 2;
        let (loaded, pps) = std::thread::scope(|s| {
            let w = s.spawn(|| wrk(daemon.api, path));
            // Let wrk open its connections first.
            std::thread::sleep(Duration::from_millis(300));
            let pps = forward_rate(lab, port);
            (w.join().expect("wrk thread"), pps)
        });
        rows.push((*path, alone, loaded, pps));
    }
    let idle_after = forward_rate(lab, 9010);
    let idle = (idle_before + idle_after) / 2.0;

    println!(
        "| API load | req/s alone | p99 alone | req/s with traffic | p99 with traffic | forwarded pps under load | vs no load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("| none | - | - | - | - | {} | 100 % |", kpps(idle));
    for (path, alone, loaded, pps) in &rows {
        println!(
            "| GET {path} | {:.0} | {} | {:.0} | {} | {} | {:.0} % |",
            alone.rps,
            ms(alone.p99),
            loaded.rps,
            ms(loaded.p99),
            kpps(*pps),
            100.0 * pps / idle
        );
    }
    println!(
        "\nForwarding without API load: {} before, {} after (the anchor; their spread is the noise).",
        kpps(idle_before),
        kpps(idle_after)
    );
    println!(
        "Total benchmark time {:.1} s; load average at the end: {}.",
        start.elapsed().as_secs_f64(),
        loadavg()
    );
}

struct WrkResult {
    rps: f64,
    p99: Duration,
}

/// Run wrk for [`RUN`] against `path` and read requests/s and p99.
fn wrk(api: SocketAddr, path: &str) -> WrkResult {
    let out = Command::new("wrk")
        .args([
            &format!("-t{WRK_THREADS}"),
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{}s", RUN.as_secs()),
            "--latency",
            &format!("http://{api}{path}"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| parse_wrk_duration(v.trim()))
        .unwrap_or_else(|| panic!("no 99% line in wrk's output:\n{text}"));
    if text.contains("Non-2xx") {
        println!("warning: wrk saw non-2xx answers for {path}:\n{text}");
    }
    WrkResult { rps, p99 }
}

/// wrk's `812.00us`, `1.23ms`, `2.01s`.
fn parse_wrk_duration(s: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    num.parse::<f64>()
        .ok()
        .map(|v| Duration::from_secs_f64(v * scale))
}

/// Datagrams per second h2 receives from one unpaced sender in h1 over
/// [`RUN`], through the router.
fn forward_rate(lab: &Lab, port: u16) -> f64 {
    let dst: IpAddr = H2_V4.parse().expect("static");
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h2 = lab.h2();
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || -> u64 {
            netns::in_netns(&h2, || {
                let s = UdpSocket::bind(SocketAddr::new(dst, port)).expect("bind in h2");
                big_receive_buffer(&s);
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut buf = [0u8; 2048];
                let mut got = 0;
                loop {
                    match s.recv(&mut buf) {
                        Ok(_) => got += 1,
                        Err(_) if stop.load(Ordering::Relaxed) => return got,
                        Err(_) => {}
                    }
                }
            })
            .expect("h2 namespace")
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    let started = Instant::now();
    netns::in_netns(&lab.h1(), || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind in h1");
        let p = pattern(PAYLOAD);
        let to = SocketAddr::new(dst, port);
        while started.elapsed() < RUN {
            for _ in 0..256 {
                // A full queue (ENOBUFS) only means "faster than the path".
                let _ = s.send_to(&p, to);
            }
        }
    })
    .expect("h1 namespace");
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let got = receiver.join().expect("receiver thread");
    got as f64 / elapsed.as_secs_f64()
}

fn kpps(pps: f64) -> String {
    format!("{:.0} kpps", pps / 1000.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
