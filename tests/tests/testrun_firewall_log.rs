//! Tier 2, the firewall drop log: rulesets with `log` flags installed into
//! the maps, frames run through the real XDP program with
//! `BPF_PROG_TEST_RUN`, and the `FW_LOG` ring buffer read back with
//! `firewall_log::LogMaps` (no reader task: the test drains it itself).
//!
//! A drop or reject by a rule with `log = true` writes exactly one record
//! with the packet's fields; a rule without the flag, an accept with it,
//! and the chain policy write none. Sampling 1-in-10 over 1000 packets
//! keeps between 50 and 200; a full ring buffer loses records and counts
//! them. Last, the reader task (`firewall_log::spawn`) end to end: records
//! become `firewall_drop` events in an event log file, rate limited, with a
//! `firewall_log_suppressed` summary.
//!
//! Needs root (namespaces, CAP_BPF).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use dataplane_common::{
    Action, CHAIN_FORWARD, CHAIN_INPUT, FW_DROP, FW_LOG_F_ICMP, FW_LOG_F_PORTS, FW_LOG_F_TCP,
    FW_REJECT, FwLogRecord, Reason, ipv4_mapped,
};
use xdpgate::{
    events::{self, EventLog},
    fib::RouteTarget,
    firewall::rule::Ruleset,
    firewall_log::{self, DropLogLimits, LogMaps},
};
use xdpgate_tests::{
    fibtest::{Router, in_router},
    frames::{Frame, Mac, tcp},
};

const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const R1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const H1_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const H2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
const H1_MAC: Mac = [0x02, 0, 0, 0x04, 0x01, 0x02];
const H2_MAC: Mac = [0x02, 0, 0, 0x04, 0x02, 0x02];
const PORTS: [&str; 2] = ["eth1", "eth2"];

fn with_router<T: Send>(f: impl FnOnce(&mut Router) -> T + Send) -> T {
    in_router(
        |_| {},
        |_| {
            let mut r = Router::new(&PORTS);
            r.connected("198.18.1.0/24", "eth1");
            r.connected("198.18.2.0/24", "eth2");
            r.connected("2001:db8:1::/64", "eth1");
            r.connected("2001:db8:2::/64", "eth2");
            for own in ["198.18.1.1/32", "2001:db8:1::1/128"] {
                r.route(own, RouteTarget::Local);
            }
            r.neigh("eth1", &H1.to_string(), H1_MAC);
            r.neigh("eth2", &H2.to_string(), H2_MAC);
            r.neigh("eth1", &H1_6.to_string(), H1_MAC);
            r.neigh("eth2", &H2_6.to_string(), H2_MAC);
            f(&mut r)
        },
    )
}

/// Compile `rs`, write it into the inactive generation and flip to it.
#[track_caller]
fn install(r: &mut Router, rs: serde_json::Value) {
    let rs: Ruleset = serde_json::from_value(rs).unwrap_or_else(|e| panic!("ruleset: {e}"));
    r.install_ruleset(&rs, &PORTS);
}

#[track_caller]
fn drain(log: &mut LogMaps) -> Vec<FwLogRecord> {
    log.drain()
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("undecodable record: {e}")))
        .collect()
}

/// The id the store would give: ids are what the records carry.
const ID_TCP_LOG: u32 = 11;
const ID_UDP_NOLOG: u32 = 12;
const ID_ICMP_ACCEPT_LOG: u32 = 13;
const ID_REJECT_LOG: u32 = 14;
const ID_INPUT_ICMP6_LOG: u32 = 15;

fn rules() -> serde_json::Value {
    serde_json::json!({
        "policy": {"forward": "drop", "input": "accept"},
        "rules": [
            {"id": ID_TCP_LOG, "chain": "forward", "proto": "tcp", "dport": 23,
             "action": "drop", "log": true},
            {"id": ID_UDP_NOLOG, "chain": "forward", "proto": "udp", "dport": 53,
             "action": "drop"},
            {"id": ID_ICMP_ACCEPT_LOG, "chain": "forward", "proto": "icmp",
             "action": "accept", "log": true},
            {"id": ID_REJECT_LOG, "chain": "forward", "proto": "tcp", "dport": 25,
             "action": "reject", "log": true},
            {"id": ID_INPUT_ICMP6_LOG, "chain": "input", "proto": "icmpv6",
             "icmp": "echo-request", "action": "drop", "log": true},
        ]
    })
}

fn in1(r: &Router) -> Frame {
    Frame::eth(H1_MAC, r.mac("eth1"))
}

fn tcp_frame(r: &Router, dport: u16, flags: u8) -> Vec<u8> {
    in1(r)
        .ipv4(H1, H2)
        .tcp(40_000, dport, flags)
        .seq(0x0102_0304)
        .build()
}

#[track_caller]
fn run(r: &mut Router, frame: &[u8], want: Action) {
    let out = r.run("eth1", frame);
    assert_eq!(out.action, want, "verdict");
}

#[test]
fn logging_rules_write_one_record_per_drop_or_reject_and_nothing_else() {
    with_router(|r| {
        install(r, rules());
        let mut log = LogMaps::take(&mut r.dp).expect("drop log maps");
        log.set_sample(0).expect("sample");
        assert!(drain(&mut log).is_empty(), "nothing logged yet");
        let (eth1, eth2) = (r.ifindex("eth1"), r.ifindex("eth2"));

        // A logging drop rule: dropped, and exactly one record.
        let frame = tcp_frame(r, 23, tcp::SYN);
        run(r, &frame, Action::Drop);
        let got = drain(&mut log);
        assert_eq!(got.len(), 1, "{got:?}");
        let want = FwLogRecord {
            rule_id: ID_TCP_LOG,
            ifindex_in: eth1,
            ifindex_out: eth2,
            len: frame.len() as u32,
            chain: CHAIN_FORWARD as u8,
            action: FW_DROP as u8,
            family: 4,
            proto: 6,
            src: ipv4_mapped(H1.octets()),
            dst: ipv4_mapped(H2.octets()),
            sport: 40_000,
            dport: 23,
            icmp_type: 0,
            icmp_code: 0,
            tcp_flags: tcp::SYN,
            flags: FW_LOG_F_PORTS | FW_LOG_F_TCP,
            _pad: [0; 4],
        };
        assert_eq!(got[0], want);

        // A drop rule without the flag, an accept with it, the policy: none.
        let udp = in1(r).ipv4(H1, H2).udp(5000, 53).payload(&[7; 16]).build();
        run(r, &udp, Action::Drop);
        let echo = in1(r).ipv4(H1, H2).icmp_echo(1, 1).build();
        run(r, &echo, Action::Redirect);
        let other = in1(r).ipv4(H1, H2).udp(5000, 9999).build();
        run(r, &other, Action::Drop);
        assert_eq!(drain(&mut log), [], "no flag, accept or policy: no record");
        let k = log.kernel_stats().expect("kernel stats");
        assert_eq!((k.written, k.lost, k.sampled_out), (1, 0, 0));

        // A logging reject: the reply goes out (XDP_TX) and the record has
        // the packet as it came in, not the RST.
        let frame = tcp_frame(r, 25, tcp::SYN);
        run(r, &frame, Action::Tx);
        let got = drain(&mut log);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[0],
            FwLogRecord {
                rule_id: ID_REJECT_LOG,
                action: FW_REJECT as u8,
                dport: 25,
                ..want
            }
        );

        // IPv6, input chain, ICMPv6: type and code, no ports.
        let frame = in1(r)
            .ipv6(H1_6, "2001:db8:1::1".parse().expect("v6"))
            .icmpv6(128, 0)
            .payload(&[1; 12])
            .build();
        let before = r.counters();
        run(r, &frame, Action::Drop);
        let moved = r.counters().since(&before);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(moved[0].1, Reason::Filtered);
        let got = drain(&mut log);
        assert_eq!(got.len(), 1, "{got:?}");
        let g = got[0];
        assert_eq!(
            (g.rule_id, g.chain, g.action, g.family, g.proto),
            (ID_INPUT_ICMP6_LOG, CHAIN_INPUT as u8, FW_DROP as u8, 6, 58)
        );
        assert_eq!(
            (IpAddr::from(g.src), IpAddr::from(g.dst)),
            (
                IpAddr::from(H1_6),
                IpAddr::from("2001:db8:1::1".parse::<Ipv6Addr>().expect("v6"))
            )
        );
        assert_eq!(
            (
                g.icmp_type,
                g.icmp_code,
                g.flags,
                g.ifindex_in,
                g.ifindex_out
            ),
            (128, 0, FW_LOG_F_ICMP, eth1, 0)
        );
        // The forward chain's R1 is for the box: the input chain's policy
        // accepts it, unlogged.
        let to_box = in1(r).ipv4(H1, R1).udp(5000, 9).build();
        run(r, &to_box, Action::Pass);
        assert_eq!(drain(&mut log), []);
    });
}

#[test]
fn sampling_keeps_about_one_in_n_and_a_full_ring_counts_its_losses() {
    with_router(|r| {
        install(r, rules());
        let mut log = LogMaps::take(&mut r.dp).expect("drop log maps");
        let frame = tcp_frame(r, 23, tcp::SYN);

        log.set_sample(10).expect("sample");
        for _ in 0..1000 {
            run(r, &frame, Action::Drop);
        }
        let kept = drain(&mut log).len() as u64;
        let k = log.kernel_stats().expect("kernel stats");
        println!("sample 10: {kept} of 1000 logged");
        assert!((50..=200).contains(&kept), "{kept} of 1000 with sample 10");
        assert_eq!((k.written, k.sampled_out), (kept, 1000 - kept));

        // Sample 1 is every packet again.
        log.set_sample(1).expect("sample");
        for _ in 0..100 {
            run(r, &frame, Action::Drop);
        }
        assert_eq!(drain(&mut log).len(), 100);

        // Nobody reading: the ring fills, the rest is lost and counted,
        // and the verdict never changes.
        let before = log.kernel_stats().expect("kernel stats");
        for _ in 0..6000 {
            run(r, &frame, Action::Drop);
        }
        let after = log.kernel_stats().expect("kernel stats");
        let (written, lost) = (after.written - before.written, after.lost - before.lost);
        println!("ring full: {written} written, {lost} lost");
        assert_eq!(written + lost, 6000);
        assert!(lost > 0 && written > 1000, "{written} written, {lost} lost");
        assert_eq!(drain(&mut log).len() as u64, written);
    });
}

/// The event log file's lines of `kind`.
fn events_of(path: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// Wait (on the runtime, so the reader runs) until `f` holds, for up to 5 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_reader_emits_rate_limited_events_and_a_suppressed_summary() {
    let dir = std::env::temp_dir().join(format!("xdpgate-fwlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&path);
    with_router(|r| {
        install(r, rules());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sink = EventLog::open(Some(&path), None, None).expect("event log");
            events::install(Some(Arc::new(sink)));
            let limits = DropLogLimits {
                rate_per_s: 2,
                burst: 3,
                sample: 1,
            };
            let log = firewall_log::spawn(&mut r.dp, limits).expect("spawn");
            let frame = tcp_frame(r, 23, tcp::SYN);
            for _ in 0..10 {
                run(r, &frame, Action::Drop);
            }
            eventually("10 records read", || log.stats().records == 10).await;
            let s = log.stats();
            assert_eq!((s.emitted, s.suppressed), (3, 7), "{s:?}");
            assert_eq!((s.kernel_written, s.kernel_lost), (10, 0), "{s:?}");
            let drops = events_of(&path, "firewall_drop");
            assert_eq!(drops.len(), 3, "{drops:?}");
            let d = &drops[0];
            assert_eq!(
                (
                    &d["rule_id"],
                    &d["chain"],
                    &d["action"],
                    &d["in_interface"],
                    &d["out_interface"],
                ),
                (
                    &serde_json::json!(ID_TCP_LOG),
                    &serde_json::json!("forward"),
                    &serde_json::json!("drop"),
                    &serde_json::json!("eth1"),
                    &serde_json::json!("eth2"),
                ),
                "{d}"
            );
            assert_eq!(
                (
                    &d["src"],
                    &d["dst"],
                    &d["dport"],
                    &d["tcp_flags"],
                    &d["proto"]
                ),
                (
                    &serde_json::json!("198.18.1.2"),
                    &serde_json::json!("198.18.2.2"),
                    &serde_json::json!(23),
                    &serde_json::json!("syn"),
                    &serde_json::json!("tcp"),
                ),
                "{d}"
            );
            assert_eq!(d["severity"], "warning");
            // Within a second or so a token is back: one summary of 7.
            eventually("the suppressed summary", || {
                !events_of(&path, "firewall_log_suppressed").is_empty()
            })
            .await;
            let summary = events_of(&path, "firewall_log_suppressed");
            assert_eq!(summary.len(), 1, "{summary:?}");
            assert_eq!(summary[0]["suppressed"], 7);

            // New limits take effect at once: sample 1000 keeps (almost)
            // nothing in the program.
            log.set_limits(DropLogLimits {
                sample: 1000,
                ..limits
            })
            .expect("set limits");
            for _ in 0..200 {
                run(r, &frame, Action::Drop);
            }
            let s = log.stats();
            assert!(s.kernel_sampled_out >= 190, "{s:?}");
            events::install(None);
        });
    });
    std::fs::remove_dir_all(dir).expect("cleanup");
}
