//! Flow export benchmark: IPFIX records per second and CPU per record, poll
//! vs io_uring in the same run, with 100,000 connections in the table.
//! Prints figures; never fails on speed.
//!
//! ```text
//! scripts/bench export
//! cargo bench -p xdpgate-tests --bench export
//! ```
//!
//! The connection table of a loaded (not attached) dataplane is filled
//! with 100k idle UDP connections that carried traffic both ways, so the
//! exporter's first scan finds 200k records due (one per direction). The
//! window runs from the exporter's start until a collector on loopback
//! has every datagram the outbox sent. CPU is the exporter's and the
//! outbox's threads' user+sys (from /proc/self/task), so the collector's
//! own receiving is not counted.
//!
//! The anchor, measured in the same run: one bare scan of the same table
//! (every key, its entry and its per-CPU counters, as the exporter reads
//! them), which is the floor of any exporter working from the maps.
use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::PerCpuValues;
use dataplane_common::{
    CT_F_ORIG_IS_LO, CT_F_SEEN_REPLY, CT_UDP_REPLIED, CtCounters, CtEntry, CtKey,
};
use sockio::BackendKind;
use xdpgate::{
    conntrack::now_ns,
    dataplane::Dataplane,
    flowexport::{ExportSettings, Exporter},
    outbox::Outbox,
};

const FLOWS: u32 = 100_000;

fn key(i: u32) -> CtKey {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    // 198.18.0.0/16 clients to 198.19.0.0/16 servers.
    lo[..4].copy_from_slice(&[198, 18, (i >> 8) as u8, i as u8]);
    hi[..4].copy_from_slice(&[198, 19, (i >> 16) as u8, 1]);
    CtKey {
        addr_lo: lo,
        addr_hi: hi,
        port_lo: 40_000 + (i % 20_000) as u16,
        port_hi: 53,
        proto: 17,
        family: 4,
        _pad: [0; 2],
    }
}

/// 100k idle, replied UDP connections with counters on every CPU.
fn fill(dp: &mut Dataplane) {
    let t = now_ns();
    let ncpu = aya::util::nr_cpus().expect("nr_cpus").max(1);
    let maps = dp.flow_maps().expect("flow maps");
    let mut counters = maps.counters;
    let table = dp.firewall_mut().conntrack_mut();
    for i in 0..FLOWS {
        let k = key(i);
        let entry = CtEntry {
            state: CT_UDP_REPLIED,
            flags: CT_F_ORIG_IS_LO | CT_F_SEEN_REPLY,
            ifindex_orig: 2,
            ifindex_out: 3,
            created_ns: t - 20_000_000_000,
            last_seen_ns: t - 10_000_000_000,
            ..CtEntry::default()
        };
        table.insert(k, entry, 0).expect("insert a connection");
        let per_cpu = vec![
            CtCounters {
                packets: [3, 2],
                bytes: [300, 200],
                ..CtCounters::default()
            };
            ncpu
        ];
        counters
            .insert(
                k,
                PerCpuValues::try_from(per_cpu).expect("per-CPU values"),
                0,
            )
            .expect("insert counters");
    }
}

/// user+sys seconds of this process's threads named `names`.
fn threads_cpu(names: &[&str]) -> f64 {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !names.contains(&comm.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (num(11) + num(12)) / tick;
    }
    total
}

/// A collector on loopback that counts datagrams.
struct Collector {
    addr: SocketAddr,
    datagrams: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn start() -> Collector {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the collector");
        xdpgate_tests::traffic::big_receive_buffer(&sock);
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let datagrams = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (datagrams.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    d.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Collector {
            addr,
            datagrams,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Run {
    records: u64,
    dropped: u64,
    datagrams: u64,
    wall: f64,
    cpu: f64,
}

fn export_once(dp: &Arc<Mutex<Dataplane>>, kind: BackendKind) -> Run {
    let collector = Collector::start();
    let outbox = Arc::new(Outbox::start_on(4096, 4096, Some(kind)).expect("outbox"));
    let settings = ExportSettings {
        collectors: vec![collector.addr],
        idle_timeout: 1,
        scan_interval_ms: 100,
        ..ExportSettings::default()
    };
    let cpu0 = threads_cpu(&["xdpgate-ipfix", "xdpgate-outbox"]);
    let started = Instant::now();
    let exporter = Exporter::start(dp, settings, outbox.clone()).expect("exporter");
    let want = u64::from(FLOWS) * 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = exporter.stats();
    while s.records_queued.load(Ordering::Relaxed) + s.records_dropped.load(Ordering::Relaxed)
        < want
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let ipfix = || {
        outbox
            .stats()
            .class(xdpgate::outbox::Class::Ipfix)
            .snapshot()
    };
    while collector.datagrams.load(Ordering::Relaxed) < ipfix().sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = threads_cpu(&["xdpgate-ipfix", "xdpgate-outbox"]) - cpu0;
    let c = exporter.counters();
    // The flows stay in the table: the next run finds them due again.
    drop(exporter);
    drop(outbox);
    Run {
        records: c.records_queued,
        dropped: c.records_dropped + c.datagrams.dropped,
        datagrams: collector.datagrams.load(Ordering::Relaxed),
        wall,
        cpu,
    }
}

/// The anchor: read every key, entry and per-CPU counter once.
fn bare_scan(dp: &Arc<Mutex<Dataplane>>) -> (f64, u64) {
    let maps = dp.lock().expect("lock").flow_maps().expect("flow maps");
    let t = Instant::now();
    let mut n = 0;
    for k in maps.conntrack.keys().flatten() {
        if maps.conntrack.get(&k, 0).is_ok() && maps.counters.get(&k, 0).is_ok() {
            n += 1;
        }
    }
    (t.elapsed().as_secs_f64(), n)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("export benchmark: needs root (BPF maps); skipped");
        return;
    }
    let mut dp = Dataplane::load().expect("load the XDP object");
    fill(&mut dp);
    let dp = Arc::new(Mutex::new(dp));
    println!("flow export: {FLOWS} idle UDP connections in CONNTRACK/CT_COUNTERS, 2 records each");
    let (scan_s, scanned) = bare_scan(&dp);
    println!(
        "  anchor: bare scan of the table (key, entry, per-CPU counters): {scanned} connections in {:.0} ms ({:.2} µs/connection)",
        scan_s * 1e3,
        scan_s * 1e6 / scanned.max(1) as f64
    );
    let mut results: Vec<(&str, Vec<Run>)> = vec![("poll", Vec::new()), ("io_uring", Vec::new())];
    // Interleaved rounds: the machine is shared and noisy.
    for _ in 0..3 {
        for (name, runs) in results.iter_mut() {
            let kind = if *name == "poll" {
                BackendKind::Poll
            } else {
                BackendKind::IoUring
            };
            runs.push(export_once(&dp, kind));
        }
    }
    for (name, runs) in &results {
        // The median round by wall time.
        let mut sorted: Vec<&Run> = runs.iter().collect();
        sorted.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        let r = sorted[sorted.len() / 2];
        println!(
            "  {name:8}: {} records in {} datagrams, {} dropped, {:.0} ms: {:.0} records/s, CPU {:.2} µs/record (exporter + outbox threads), {:.1}x the bare scan's time",
            r.records,
            r.datagrams,
            r.dropped,
            r.wall * 1e3,
            r.records as f64 / r.wall,
            r.cpu * 1e6 / r.records.max(1) as f64,
            r.wall / scan_s
        );
    }
}
