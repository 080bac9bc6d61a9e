//! Tier 3 for flow export: the lab router exports IPFIX to a collector on a
//! third host (h3), `dumpcap` captures what arrives there and `tshark`
//! (Wireshark's decoder, not ours) decodes it. A TCP transfer, a UDP stream
//! and a ping cross the router with the kernel's forwarding off, so XDP
//! carried every packet; each appears with its tuple and with the packets
//! and bytes (IP layer) the sending host's own counters (`nstat`) say it
//! sent. Once per I/O backend. Then a collector that cannot be reached:
//! forwarding and the API go on, the send errors are counted, memory
//! stays flat.
use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use xdpgate::{
    client,
    lab::{H1_V4, H2_V4},
    netns,
};
use xdpgate_tests::{
    support::*,
    traffic::{pattern, tcp_transfer, udp_burst},
};

const COLLECTOR_PORT: u16 = 4739;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("static address")
}

/// `dumpcap` on `dev` in `ns`, writing what `filter` (BPF syntax) takes
/// to a file; killed on drop.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    #[track_caller]
    fn start(ns: &str, dev: &str, filter: &str, file: PathBuf) -> Capture {
        let _ = std::fs::remove_file(&file);
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "dumpcap", "-i", dev, "-f", filter])
            .arg("-w")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dumpcap (apt: tshark)");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("Capturing on") => break,
                Ok(_) => {}
                Err(_) => panic!("dumpcap did not start capturing within 20 s"),
            }
        }
        Capture { child, file }
    }

    /// SIGINT (dumpcap then writes the file out) and the file.
    fn stop(mut self) -> PathBuf {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP socket on the collector's address that takes the datagrams (so
/// h3 answers no port-unreachable) and counts them.
struct Sink {
    stop: Arc<AtomicBool>,
    datagrams: Arc<AtomicU64>,
    /// The first datagrams, kept whole.
    kept: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start(ns: &str, addr: SocketAddr) -> Sink {
        let stop = Arc::new(AtomicBool::new(false));
        let datagrams = Arc::new(AtomicU64::new(0));
        let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (ns, s, d, k) = (ns.to_owned(), stop.clone(), datagrams.clone(), kept.clone());
        let thread = std::thread::spawn(move || {
            netns::in_netns(&ns, || {
                let sock = UdpSocket::bind(addr).expect("bind the collector");
                sock.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("timeout");
                ready_tx.send(()).expect("ready");
                let mut buf = [0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        d.fetch_add(1, Ordering::Relaxed);
                        let mut k = k.lock().expect("kept");
                        if k.len() < 100 {
                            k.push(buf[..n].to_vec());
                        }
                    }
                }
            })
            .expect("enter h3");
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("collector socket");
        Sink {
            stop,
            datagrams,
            kept,
            thread: Some(thread),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One decoded IPFIX data record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Tuple {
    src: String,
    dst: String,
    sport: u16,
    dport: u16,
    proto: u8,
}

const FIELDS: [&str; 8] = [
    "cflow.srcaddr",
    "cflow.dstaddr",
    "cflow.srcport",
    "cflow.dstport",
    "cflow.protocol",
    "cflow.packets",
    "cflow.octets",
    // IANA firewallEvent: 2 (flow deleted) at the end, 5 (update) at an
    // active timeout; every exported flow is one the firewall accepted.
    "cflow.firewall_event",
];

/// Every IPv4 data record tshark finds in `file`, packets and bytes summed
/// per tuple (a flow may be reported in several records), and the number
/// of records.
fn decode(file: &Path) -> (HashMap<Tuple, (u64, u64)>, usize, String) {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={COLLECTOR_PORT},cflow")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark (apt: tshark)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flows: HashMap<Tuple, (u64, u64)> = HashMap::new();
    let mut records = 0;
    for line in text.lines() {
        let cols: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split(',').filter(|v| !v.is_empty()).collect())
            .collect();
        if cols.len() != FIELDS.len() || cols[0].is_empty() {
            continue; // a template-only message
        }
        let n = cols[0].len();
        assert!(
            cols.iter().all(|c| c.len() == n),
            "fields do not line up in {line:?}"
        );
        // One record per index across the columns.
        #[allow(clippy::needless_range_loop)]
        for i in 0..n {
            let num = |c: usize| -> u64 {
                cols[c][i]
                    .parse()
                    .unwrap_or_else(|_| panic!("field {} = {:?}", FIELDS[c], cols[c][i]))
            };
            let t = Tuple {
                src: cols[0][i].to_owned(),
                dst: cols[1][i].to_owned(),
                sport: num(2) as u16,
                dport: num(3) as u16,
                proto: num(4) as u8,
            };
            assert!(
                matches!(num(7), 2 | 5),
                "firewall_event {} in {line:?}",
                num(7)
            );
            let e = flows.entry(t).or_default();
            e.0 += num(5);
            e.1 += num(6);
            records += 1;
        }
    }
    (flows, records, text)
}

/// Packets and IP-layer bytes of the frames in `file` that the display
/// filter `filter` takes. Captured on the sender's egress, after software
/// segmentation: one frame is one packet through the router.
fn wire(file: &Path, filter: &str) -> (u64, u64) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", "ip.len"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lens: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("ip.len"))
        .collect();
    (lens.len() as u64, lens.iter().sum())
}

fn export_status(api: SocketAddr) -> Value {
    client::get_json(api, "/api/v1/export").expect("GET /api/v1/export")
}

fn tuple(src: &str, dst: &str, sport: u16, dport: u16, proto: u8) -> Tuple {
    Tuple {
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
        proto,
    }
}

#[track_caller]
fn assert_flow(flows: &HashMap<Tuple, (u64, u64)>, t: &Tuple, packets: u64, bytes: u64) {
    let got = flows
        .get(t)
        .unwrap_or_else(|| panic!("no record of {t:?}; decoded: {flows:#?}"));
    assert_eq!(*got, (packets, bytes), "{t:?}: (packets, bytes)");
}

fn exchange_is_exported(backend: &str) {
    let lab = lab(false);
    let l = &lab.lab;
    let h3 = ExtraHost::add(l);
    let collector = SocketAddr::new(ip(H3_V4), COLLECTOR_PORT);
    let tmp = |what: &str| std::env::temp_dir().join(format!("{}-{what}", l.prefix));
    let capture = Capture::start(
        &h3.ns,
        "eth0",
        &format!("udp port {COLLECTOR_PORT}"),
        tmp("ipfix.pcapng"),
    );
    // What each host put on the wire, counted by Wireshark.
    let traffic = "ip and (tcp port 7201 or udp port 7202 or icmp)";
    let sent_h1 = Capture::start(&l.h1(), "eth0", traffic, tmp("h1.pcapng"));
    let sent_h2 = Capture::start(&l.h2(), "eth0", traffic, tmp("h2.pcapng"));
    let sink = Sink::start(&h3.ns, collector);
    let syslog_at = SocketAddr::new(ip(H3_V4), 5514);
    let syslog = Sink::start(&h3.ns, syslog_at);
    let events = tmp("events.jsonl");
    let _ = std::fs::remove_file(&events);
    let daemon = Daemon::start_forwarding_env(
        l,
        &[
            "--ipfix-collector",
            &collector.to_string(),
            "--ipfix-idle-timeout",
            "1",
            "--ipfix-scan-interval-ms",
            "200",
            "--event-log",
            events.to_str().expect("utf-8 path"),
            "--syslog",
            &syslog_at.to_string(),
        ],
        &[("XDPGATE_IO_BACKEND", backend)],
    );
    let status = export_status(daemon.api);
    assert_eq!(status["enabled"], true, "{status}");
    assert!(
        status["counters"]["io_backend"]
            .as_str()
            .is_some_and(|b| b.starts_with(backend)),
        "{status}"
    );

    let len = 256 << 10;
    let data = tcp_transfer(&l.h1(), &l.h2(), ip(H2_V4), 7201, len).expect("tcp transfer");
    assert!(data == pattern(len), "the TCP bytes differ");
    let got = udp_burst(&l.h1(), &l.h2(), ip(H2_V4), 7202, 500, 300).expect("udp stream");
    assert_eq!(got, 500, "UDP datagrams delivered");
    assert!(ping(&l.h1(), H2_V4, 5), "ping");

    // Every flow is idle after 1 s; wait for its last record.
    wait_until(
        Duration::from_secs(15),
        "the exporter to send the records",
        || {
            export_status(daemon.api)["counters"]["records_queued"]
                .as_u64()
                .unwrap_or(0)
                >= 5
        },
    );
    let status = export_status(daemon.api);
    let (exit, log) = daemon.signal(libc::SIGTERM);
    assert!(exit.success(), "daemon exit: {log}");
    wait_until(Duration::from_secs(5), "datagrams at the collector", || {
        sink.datagrams.load(Ordering::Relaxed)
            >= status["counters"]["datagrams"]["sent"]
                .as_u64()
                .unwrap_or(1)
    });
    std::thread::sleep(Duration::from_millis(300));
    let file = capture.stop();
    let (h1_file, h2_file) = (sent_h1.stop(), sent_h2.stop());
    let (flows, records, text) = decode(&file);
    let (tcp_pkts, tcp_bytes) = wire(&h1_file, &format!("ip.src=={H1_V4} && tcp.dstport==7201"));
    let (tcp_back_pkts, tcp_back_bytes) =
        wire(&h2_file, &format!("ip.src=={H2_V4} && tcp.srcport==7201"));
    let (udp_pkts, udp_bytes) = wire(&h1_file, &format!("ip.src=={H1_V4} && udp.dstport==7202"));
    let (ping_pkts, ping_bytes) = wire(&h1_file, &format!("ip.src=={H1_V4} && icmp.type==8"));
    let (pong_pkts, pong_bytes) = wire(&h2_file, &format!("ip.src=={H2_V4} && icmp.type==0"));
    assert_eq!(
        (ping_pkts, ping_bytes),
        (5, 5 * 84),
        "the wire's echo requests"
    );
    assert!(tcp_pkts > 180, "TCP segments on the wire: {tcp_pkts}");
    eprintln!(
        "{backend}: {records} records in {} datagrams; status {status}",
        sink.datagrams.load(Ordering::Relaxed)
    );

    // The TCP connection: the client's ephemeral port is the one record
    // from h1 to h2:7201.
    let client_port = flows
        .keys()
        .find(|t| t.dst == H2_V4 && t.dport == 7201)
        .unwrap_or_else(|| panic!("no TCP record; tshark said:\n{text}"))
        .sport;
    assert_flow(
        &flows,
        &tuple(H1_V4, H2_V4, client_port, 7201, 6),
        tcp_pkts,
        tcp_bytes,
    );
    assert_flow(
        &flows,
        &tuple(H2_V4, H1_V4, 7201, client_port, 6),
        tcp_back_pkts,
        tcp_back_bytes,
    );
    let udp = flows
        .keys()
        .find(|t| t.dst == H2_V4 && t.dport == 7202)
        .unwrap_or_else(|| panic!("no UDP record; tshark said:\n{text}"))
        .clone();
    assert_eq!((udp.src.as_str(), udp.proto), (H1_V4, 17));
    assert_flow(&flows, &udp, udp_pkts, udp_bytes);
    assert_eq!((udp_pkts, udp_bytes), (500, 500 * (300 + 28)));
    // ICMP echo: no ports.
    assert_flow(&flows, &tuple(H1_V4, H2_V4, 0, 0, 1), ping_pkts, ping_bytes);
    assert_flow(&flows, &tuple(H2_V4, H1_V4, 0, 0, 1), pong_pkts, pong_bytes);
    // Nothing else crossed, so nothing else was reported.
    assert_eq!(flows.len(), 5, "flows: {flows:#?}");
    // The event log has the daemon's start and stop.
    let log = std::fs::read_to_string(&events).expect("event log");
    let kinds: Vec<String> = log
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            v["kind"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(kinds.contains(&"daemon_start".to_owned()), "{log}");
    assert!(kinds.contains(&"daemon_stop".to_owned()), "{log}");
    // The same events as RFC 5424 syslog over UDP: <PRI>1 TS HOST APP PID MSGID.
    let msgs: Vec<String> = syslog
        .kept
        .lock()
        .expect("kept")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let start = msgs
        .iter()
        .find(|m| m.contains(" daemon_start - "))
        .unwrap_or_else(|| panic!("no daemon_start in syslog: {msgs:#?}"));
    // local0 (16) * 8 + notice (5) = 133.
    assert!(start.starts_with("<133>1 20"), "{start}");
    assert!(start.contains(" xdpgate "), "{start}");
    assert_eq!(msgs.len(), kinds.len(), "syslog {msgs:#?} vs file {log}");
    let _ = std::fs::remove_file(&events);
    for f in [file, h1_file, h2_file] {
        let _ = std::fs::remove_file(f);
    }
    drop(h3);
}

#[test]
fn a_tcp_transfer_a_udp_stream_and_a_ping_are_exported_poll() {
    exchange_is_exported("poll");
}

#[test]
fn a_tcp_transfer_a_udp_stream_and_a_ping_are_exported_io_uring() {
    exchange_is_exported("io_uring");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `flows` UDP flows from h1 through the router, for `secs` seconds (one
/// socket per flow: keep it under the descriptor limit, 20,000 here).
fn many_flows(lab: &xdpgate::lab::Lab, flows: u32, secs: u32) {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.h1()])
        .arg(xdpgate_bin())
        .args(["loadgen", &format!("{H2_V4}:9"), "--rate"])
        .arg((flows * 2 / secs).to_string())
        .args([
            "--flows",
            &flows.to_string(),
            "--duration",
            &secs.to_string(),
        ])
        .output()
        .expect("loadgen");
    assert!(
        out.status.success(),
        "loadgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreachable_collector_costs_forwarding_nothing_and_memory_stays_flat() {
    let lab = lab(false);
    let l = &lab.lab;
    // 198.19.255.1 is routed nowhere: every send fails at once.
    netns::ip([
        "-n",
        &l.router(),
        "route",
        "add",
        "unreachable",
        "198.19.255.0/24",
    ])
    .expect("unreachable route");
    let daemon = Daemon::start_forwarding_env(
        l,
        &[
            "--ipfix-collector",
            "198.19.255.1:4739",
            "--ipfix-idle-timeout",
            "1",
            "--ipfix-scan-interval-ms",
            "200",
        ],
        &[],
    );
    let pid = daemon.child.id();
    many_flows(l, 15_000, 2);
    std::thread::sleep(Duration::from_secs(3));
    let first = rss_kib(pid);
    for round in 0..2 {
        many_flows(l, 15_000, 2);
        assert!(ping(&l.h1(), H2_V4, 1), "forwarding in round {round}");
        let t = Instant::now();
        client::get_json(daemon.api, "/healthz").expect("the API answers");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/healthz took {:?}",
            t.elapsed()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let last = rss_kib(pid);
    let c = &export_status(daemon.api)["counters"];
    eprintln!("RSS {first} KiB after 15k flows, {last} KiB after 45k; {c}");
    let records = c["records_queued"].as_u64().unwrap_or(0);
    assert!(records >= 40_000, "records built: {c}");
    let failed = c["datagrams"]["send_errors"].as_u64().unwrap_or(0)
        + c["datagrams"]["dropped"].as_u64().unwrap_or(0);
    assert!(failed > 0, "no send counted as failed: {c}");
    assert_eq!(c["datagrams"]["sent"], 0, "{c}");
    let out = Command::new("curl")
        .args(["-sf", &format!("http://{}/metrics", daemon.api)])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.lines().any(|l| l
            .starts_with("xdpgate_outbox_datagrams_total{class=\"ipfix\",result=\"send_error\"}")
            && !l.ends_with(" 0")),
        "metrics lack the send errors"
    );
    // Three times the flows, not three times the memory: nothing queues
    // up behind a collector that is gone.
    assert!(
        last < first + 32 * 1024,
        "RSS grew from {first} KiB to {last} KiB"
    );
}

/// The event log's lines of `kind`.
fn events_of(file: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn logged_drops_reach_the_event_log_rate_limited() {
    let lab = lab(false);
    let l = &lab.lab;
    let events = std::env::temp_dir().join(format!("{}-drops.jsonl", l.prefix));
    let _ = std::fs::remove_file(&events);
    let daemon = Daemon::start_forwarding_env(
        l,
        &["--event-log", events.to_str().expect("utf-8 path")],
        &[],
    );
    client::post_json(
        daemon.api,
        "/api/v1/firewall/apply",
        &serde_json::json!({
            "rules": [
                {"chain": "forward", "proto": "udp", "dport": 7300, "action": "drop", "log": true},
                {"chain": "forward", "proto": "udp", "dport": 7301, "action": "drop"},
            ],
        }),
    )
    .expect("commit");
    let send = |port: u16, n: u32| {
        netns::in_netns(&l.h1(), || {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..n {
                s.send_to(b"dropped", SocketAddr::new(ip(H2_V4), port))
                    .expect("send");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .expect("h1");
    };
    send(7300, 20);
    send(7301, 20);
    wait_until(Duration::from_secs(10), "20 firewall_drop events", || {
        events_of(&events, "firewall_drop").len() >= 20
    });
    std::thread::sleep(Duration::from_millis(500));
    let drops = events_of(&events, "firewall_drop");
    assert_eq!(drops.len(), 20, "only the logging rule's drops: {drops:#?}");
    let d = &drops[0];
    assert_eq!(d["chain"], "forward", "{d}");
    assert_eq!(d["action"], "drop", "{d}");
    assert_eq!(d["in_interface"], "eth1", "{d}");
    assert_eq!(d["src"], H1_V4, "{d}");
    assert_eq!(d["dst"], H2_V4, "{d}");
    assert_eq!(d["dport"], 7300, "{d}");
    assert_eq!(d["len"], 14 + 28 + 7, "frame length: {d}");
    assert_eq!(d["out_interface"], "eth2", "{d}");
    assert!(d["rule_id"].as_u64().is_some_and(|id| id > 0), "{d}");

    // One event per second, bursts of 2: the rest is summarised.
    client::put_json(
        daemon.api,
        "/api/v1/export",
        &serde_json::json!({"drop_log_rate": 1, "drop_log_burst": 2}),
    )
    .expect("PUT /api/v1/export");
    std::thread::sleep(Duration::from_millis(1500));
    send(7300, 50);
    wait_until(Duration::from_secs(10), "a suppressed summary", || {
        !events_of(&events, "firewall_log_suppressed").is_empty()
    });
    let after = events_of(&events, "firewall_drop").len() - 20;
    assert!(
        (1..=5).contains(&after),
        "{after} drops passed the 1/s limit"
    );
    let held: u64 = events_of(&events, "firewall_log_suppressed")
        .iter()
        .map(|e| e["suppressed"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        held > 0,
        "{:?}",
        events_of(&events, "firewall_log_suppressed")
    );
    let _ = std::fs::remove_file(&events);
}
