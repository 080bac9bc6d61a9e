//! Tier 3 for flow export: the lab router exports IPFIX to a collector on a
//! third host (h3), `dumpcap` captures what arrives there and `tshark`
//! (Wireshark's decoder, not ours) decodes it. A TCP transfer, a UDP stream
//! and a ping cross the router with the kernel's forwarding off, so XDP
//! carried every packet; each appears with its tuple and with the packets
//! and bytes (IP layer) the sending host's own counters (`nstat`) say it
//! sent, the router interfaces it came in and went out of, the TCP flags
//! the hosts put on the wire and start and end times inside the test's
//! run; an IPv6 UDP stream the same, from the other template. Once per
//! I/O backend. Then a collector that cannot be reached:
//! forwarding and the API go on, the send errors are counted, memory
//! stays flat.
use std::{
    collections::{BTreeSet, HashMap},
    io::{BufRead as _, BufReader},
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use xdpgate::{
    client,
    lab::{H1_V4, H1_V6, H2_V4, H2_V6},
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

/// The address fields of each template. A decode asks for one pair only:
/// with `-E occurrence=a` each column lists a field's values over the
/// whole datagram, so a datagram holding records of both templates would
/// give more ports than addresses and the columns would not line up. The
/// exporter encodes each scan's records on their own, so the IPv6 stream,
/// sent after the IPv4 records went out, arrives in datagrams of its own.
const V4_ADDRS: [&str; 2] = ["cflow.srcaddr", "cflow.dstaddr"];
const V6_ADDRS: [&str; 2] = ["cflow.srcaddrv6", "cflow.dstaddrv6"];

/// The fields after the two addresses, in the columns' order.
const FIELDS: [&str; 11] = [
    "cflow.srcport",
    "cflow.dstport",
    "cflow.protocol",
    "cflow.packets",
    "cflow.octets",
    // IANA firewallEvent: 2 (flow deleted) at the end, 5 (update) at an
    // active timeout; every exported flow is one the firewall accepted.
    "cflow.firewall_event",
    // ingressInterface / egressInterface (IE 10 / 14).
    "cflow.inputint",
    "cflow.outputint",
    // tcpControlBits (IE 6), printed in hex ("0x001b").
    "cflow.tcpflags",
    // flowStart/EndMilliseconds (IE 152 / 153), printed as UTC dates
    // ("Dec  7, 2026 03:38:42.834000000 UTC"): they hold a comma, so the
    // aggregator below is not one.
    "cflow.abstimestart",
    "cflow.abstimeend",
];

/// What the records of one tuple say: counters summed, the rest kept per
/// record.
#[derive(Debug, Default)]
struct Seen {
    packets: u64,
    bytes: u64,
    /// (ingress, egress) ifindex of each record.
    paths: BTreeSet<(u32, u32)>,
    /// tcpControlBits of the records ORed (each is already the OR of the
    /// flags seen in that direction).
    tcp_flags: u16,
    /// (start, end) of each record, Unix milliseconds.
    spans: Vec<(u64, u64)>,
}

/// Every data record of the template whose addresses are `addrs` that
/// tshark finds in `file`, gathered per tuple (a flow may be reported in
/// several records), the number of records, and what tshark printed.
fn decode(file: &Path, addrs: [&str; 2]) -> (HashMap<Tuple, Seen>, usize, String) {
    let names: Vec<&str> = addrs.iter().chain(FIELDS.iter()).copied().collect();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-d", &format!("udp.port=={COLLECTOR_PORT},cflow")])
        .args(["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]);
    for f in &names {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark (apt: tshark)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flows: HashMap<Tuple, Seen> = HashMap::new();
    let mut records = 0;
    for line in text.lines() {
        let cols: Vec<Vec<&str>> = line
            .split('\t')
            .map(|c| c.split(';').filter(|v| !v.is_empty()).collect())
            .collect();
        if cols.len() != names.len() || cols[0].is_empty() {
            continue; // a template-only message, or the other template's
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
                    .unwrap_or_else(|_| panic!("field {} = {:?}", names[c], cols[c][i]))
            };
            let time = |c: usize| -> u64 {
                unix_ms_of(cols[c][i])
                    .unwrap_or_else(|| panic!("field {} = {:?}", names[c], cols[c][i]))
            };
            let flags = cols[10][i]
                .strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("field {} = {:?}", names[10], cols[10][i]));
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
            e.packets += num(5);
            e.bytes += num(6);
            e.paths.insert((num(8) as u32, num(9) as u32));
            e.tcp_flags |= flags;
            e.spans.push((time(11), time(12)));
            records += 1;
        }
    }
    (flows, records, text)
}

/// Unix milliseconds of a date as tshark prints an absolute time in UTC:
/// "Dec  7, 2026 03:38:42.834000000 UTC". None for anything else.
fn unix_ms_of(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let w: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, year, clock, "UTC"] = w[..] else {
        return None;
    };
    let m = MONTHS.iter().position(|&n| n == mon)? as i64 + 1;
    let d: i64 = day.strip_suffix(',')?.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let (hms, frac) = clock.split_once('.')?;
    let mut hms = hms.split(':').map(|v| v.parse::<i64>().ok());
    let (h, min, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let ms: i64 = frac.get(..3)?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms).ok()
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// Packets and IP-layer bytes of the frames in `file` that the display
/// filter `filter` takes. Captured on the sender's egress, after software
/// segmentation: one frame is one packet through the router.
fn wire(file: &Path, filter: &str) -> (u64, u64) {
    let lens: Vec<u64> = wire_field(file, filter, "ip.len")
        .iter()
        .map(|l| l.parse().expect("ip.len"))
        .collect();
    (lens.len() as u64, lens.iter().sum())
}

/// [`wire`] for IPv6: the payload length plus the fixed 40-byte header
/// (the test's packets carry no extension headers).
fn wire_v6(file: &Path, filter: &str) -> (u64, u64) {
    let lens: Vec<u64> = wire_field(file, filter, "ipv6.plen")
        .iter()
        .map(|l| l.parse::<u64>().expect("ipv6.plen") + 40)
        .collect();
    (lens.len() as u64, lens.iter().sum())
}

/// The TCP flags of the frames `filter` takes, ORed: what the exporter's
/// tcpControlBits must be for that direction (it ORs the flags of every
/// packet it counts, and every frame here crossed the router).
fn wire_tcp_flags(file: &Path, filter: &str) -> u16 {
    wire_field(file, filter, "tcp.flags")
        .iter()
        .map(|f| {
            f.strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("tcp.flags = {f:?}"))
        })
        .fold(0, |a, f| a | f)
}

/// `field` of each frame in `file` that the display filter takes.
fn wire_field(file: &Path, filter: &str, field: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", field])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// ifindex of each of the router's interfaces, by name, as the kernel
/// numbers them (not as the daemon reports them).
fn router_ifindexes(router: &str) -> HashMap<String, u32> {
    let out = netns::ip(["-n", router, "-j", "link", "show"]).expect("ip -j link");
    let links: Value = serde_json::from_slice(&out.stdout).expect("ip -j link: JSON");
    links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some((
                l["ifname"].as_str()?.to_owned(),
                l["ifindex"].as_u64()? as u32,
            ))
        })
        .collect()
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
fn assert_flow(flows: &HashMap<Tuple, Seen>, t: &Tuple, packets: u64, bytes: u64) {
    let got = seen(flows, t);
    assert_eq!(
        (got.packets, got.bytes),
        (packets, bytes),
        "{t:?}: (packets, bytes); decoded: {got:?}"
    );
}

#[track_caller]
fn seen<'a>(flows: &'a HashMap<Tuple, Seen>, t: &Tuple) -> &'a Seen {
    flows
        .get(t)
        .unwrap_or_else(|| panic!("no record of {t:?}; decoded: {flows:#?}"))
}

/// Every record of `t` came in at `ingress` and left at `egress`
/// (ifindexes), and `text` is what tshark said.
#[track_caller]
fn assert_path(flows: &HashMap<Tuple, Seen>, t: &Tuple, ingress: u32, egress: u32, text: &str) {
    let got = &seen(flows, t).paths;
    assert_eq!(
        got.iter().copied().collect::<Vec<_>>(),
        [(ingress, egress)],
        "{t:?}: (inputint, outputint) of its records; tshark said:\n{text}"
    );
}

/// TCP flags as RFC 9293 numbers them.
const FIN: u16 = 0x01;
const SYN: u16 = 0x02;
const ACK: u16 = 0x10;

/// The records of `t` carry tcpControlBits `wire` (the OR of the flags
/// the sender put on the wire), and a connection that opened and closed
/// shows SYN, ACK and FIN whatever else it did.
#[track_caller]
fn assert_tcp_flags(flows: &HashMap<Tuple, Seen>, t: &Tuple, wire: u16, text: &str) {
    let got = seen(flows, t).tcp_flags;
    assert_eq!(
        got & (SYN | ACK | FIN),
        SYN | ACK | FIN,
        "{t:?}: tcpflags {got:#06x} lack SYN, ACK or FIN; tshark said:\n{text}"
    );
    // The dataplane keeps the flags byte only (CWR..FIN): AE is not in it.
    assert_eq!(
        got,
        wire & 0xff,
        "{t:?}: tcpflags {got:#06x}, the wire's {wire:#06x}; tshark said:\n{text}"
    );
}

/// Every record of `t` starts no later than it ends, and both lie within
/// `window` (Unix ms) widened by a minute each side: the dataplane's
/// monotonic clock turned into wall time, on a slow machine.
#[track_caller]
fn assert_times(flows: &HashMap<Tuple, Seen>, t: &Tuple, window: (u64, u64), text: &str) {
    const SLACK_MS: u64 = 60_000;
    let (from, to) = (window.0 - SLACK_MS, window.1 + SLACK_MS);
    for &(start, end) in &seen(flows, t).spans {
        assert!(
            from <= start && start <= end && end <= to,
            "{t:?}: record from {start} to {end} (Unix ms), the test ran from {} to {}; \
             tshark said:\n{text}",
            window.0,
            window.1
        );
    }
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
    let traffic = "(ip and (tcp port 7201 or udp port 7202 or icmp)) or (ip6 and udp port 7203)";
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

    let began_ms = unix_ms_now();
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
    // The IPv6 stream once the IPv4 records are out: its record is then
    // encoded in a scan, so a datagram, of its own (see V4_ADDRS).
    let got = udp_burst(&l.h1(), &l.h2(), ip(H2_V6), 7203, 50, 200).expect("udp6 stream");
    assert_eq!(got, 50, "UDP datagrams over IPv6 delivered");
    wait_until(
        Duration::from_secs(15),
        "the exporter to send the IPv6 record",
        || {
            export_status(daemon.api)["counters"]["records_queued"]
                .as_u64()
                .unwrap_or(0)
                >= 6
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
    let ended_ms = unix_ms_now();
    let file = capture.stop();
    let (h1_file, h2_file) = (sent_h1.stop(), sent_h2.stop());
    let (flows, records, text) = decode(&file, V4_ADDRS);
    let (flows6, records6, text6) = decode(&file, V6_ADDRS);
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
        "{backend}: {records} IPv4 and {records6} IPv6 records in {} datagrams; status {status}",
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

    // Where each direction came in and went out: h1 is wired to the
    // router's eth1, h2 to its eth2 (lab::Lab::up).
    let ifindex = router_ifindexes(&l.router());
    let (to_h1, to_h2) = (ifindex["eth1"], ifindex["eth2"]);
    let forward = [
        tuple(H1_V4, H2_V4, client_port, 7201, 6),
        udp.clone(),
        tuple(H1_V4, H2_V4, 0, 0, 1),
    ];
    let back = [
        tuple(H2_V4, H1_V4, 7201, client_port, 6),
        tuple(H2_V4, H1_V4, 0, 0, 1),
    ];
    for t in &forward {
        assert_path(&flows, t, to_h1, to_h2, &text);
    }
    for t in &back {
        assert_path(&flows, t, to_h2, to_h1, &text);
    }
    for t in forward.iter().chain(&back) {
        assert_times(&flows, t, (began_ms, ended_ms), &text);
    }
    // Each direction of the connection ORs what its sender put on the wire.
    let tcp_flags = wire_tcp_flags(&h1_file, &format!("ip.src=={H1_V4} && tcp.dstport==7201"));
    let tcp_back_flags = wire_tcp_flags(&h2_file, &format!("ip.src=={H2_V4} && tcp.srcport==7201"));
    assert_tcp_flags(&flows, &forward[0], tcp_flags, &text);
    assert_tcp_flags(&flows, &back[0], tcp_back_flags, &text);

    // The IPv6 stream, from the IPv6 template's records.
    let udp6 = flows6
        .keys()
        .find(|t| t.dst == H2_V6 && t.dport == 7203)
        .unwrap_or_else(|| panic!("no IPv6 UDP record; tshark said:\n{text6}"))
        .clone();
    assert_eq!((udp6.src.as_str(), udp6.proto), (H1_V6, 17), "{text6}");
    let (udp6_pkts, udp6_bytes) =
        wire_v6(&h1_file, &format!("ipv6.src=={H1_V6} && udp.dstport==7203"));
    assert_eq!((udp6_pkts, udp6_bytes), (50, 50 * (200 + 48)));
    assert_flow(&flows6, &udp6, udp6_pkts, udp6_bytes);
    assert_path(&flows6, &udp6, to_h1, to_h2, &text6);
    assert_times(&flows6, &udp6, (began_ms, ended_ms), &text6);
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
