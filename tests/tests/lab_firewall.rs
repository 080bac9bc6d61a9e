//! Tier 3 for the firewall: rules committed through the API act on traffic
//! that really crosses the lab router (h1 on eth1 is "inside", h2 on eth2
//! "outside").
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use xdpgate::{
    client,
    lab::{H1_V4, H2_V4, H2_V6, R1_V4},
    netns,
};
use xdpgate_tests::{
    support::*,
    traffic::{nstat, pattern, tcp_transfer, udp_burst},
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("static address")
}

#[track_caller]
fn apply(api: SocketAddr, ruleset: Value) -> Value {
    client::post_json(api, "/api/v1/firewall/apply", &ruleset).expect("commit the ruleset")
}

/// Packets counted by the active rule at `index` of `chain`, and by the
/// chain's policy.
fn hits(api: SocketAddr, chain: &str, index: usize) -> (u64, u64) {
    let active = client::get_json(api, "/api/v1/firewall/active").expect("active ruleset");
    let rules: Vec<&Value> = active["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["chain"] == chain)
        .collect();
    let rule = rules
        .get(index)
        .map(|r| r["packets"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    let policy = active["policy_counters"][chain]["packets"]
        .as_u64()
        .unwrap_or(0);
    (rule, policy)
}

#[test]
fn drop_new_from_outside_accept_established() {
    // Kernel forwarding off: whatever crosses, XDP carried (and filtered).
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    apply(
        daemon.api,
        json!({
            "policy": {"forward": "drop", "input": "accept"},
            "rules": [
                {"chain": "forward", "state": ["established", "related"], "action": "accept",
                 "comment": "replies"},
                {"chain": "forward", "in": "eth1", "state": ["new"], "action": "accept",
                 "comment": "inside may open"},
            ],
        }),
    );
    // From inside: works, both families, byte-exact.
    let data = tcp_transfer(&l.h1(), &l.h2(), ip(H2_V4), 7101, 1 << 20).expect("inside out v4");
    assert!(data == pattern(1 << 20), "v4 bytes differ");
    let data = tcp_transfer(&l.h1(), &l.h2(), ip(H2_V6), 7102, 1 << 16).expect("inside out v6");
    assert!(data == pattern(1 << 16), "v6 bytes differ");
    assert!(ping(&l.h1(), H2_V4, 1), "ping from inside");
    // From outside: the SYN is new and not from eth1: dropped.
    let err = tcp_transfer(&l.h2(), &l.h1(), ip(H1_V4), 7103, 100)
        .expect_err("a connection from outside must not open");
    assert!(err.contains("connect"), "{err}");
    assert!(!ping(&l.h2(), H1_V4, 1), "ping from outside crossed");

    let (replies, policy) = hits(daemon.api, "forward", 0);
    let (opened, _) = hits(daemon.api, "forward", 1);
    assert!(replies > 100, "established rule counted {replies}");
    assert!(opened >= 3, "new-from-inside rule counted {opened}");
    assert!(policy >= 2, "the policy dropped {policy}");
    let s = daemon.stats();
    assert!(counter(&s, "eth2", "reasons", "filtered") >= 2, "{s}");
    // The connections are in the table.
    let ct = client::get_json(daemon.api, "/api/v1/conntrack").ok();
    if let Some(ct) = ct {
        assert!(
            ct["items"].as_array().is_some_and(|a| !a.is_empty()),
            "{ct}"
        );
    }
}

#[test]
fn rejected_tcp_connect_fails_fast_with_rst() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    apply(
        daemon.api,
        json!({
            "rules": [{"chain": "forward", "proto": "tcp", "dport": 9, "action": "reject"}],
        }),
    );
    let t = Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.h1(),
            "nc",
            "-z",
            "-v",
            "-w",
            "5",
            H2_V4,
            "9",
        ])
        .output()
        .expect("run nc");
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "connect succeeded: {text}");
    assert!(text.contains("refused"), "not refused by a RST: {text}");
    // A dropped SYN would hang for the whole -w 5; a RST answers at once.
    assert!(took < Duration::from_secs(4), "took {took:?}: {text}");
    let s = daemon.stats();
    assert!(counter(&s, "eth1", "reasons", "rejected") >= 1, "{s}");
    // Other ports still work.
    assert!(tcp_transfer(&l.h1(), &l.h2(), ip(H2_V4), 7104, 1000).is_ok());
}

/// Send `count` UDP datagrams from namespace `ns` to `dst`.
fn udp_send(ns: &str, dst: SocketAddr, count: u32) {
    netns::in_netns(ns, || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..count {
            s.send_to(&i.to_be_bytes(), dst).expect("send");
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
    .expect("enter namespace");
}

#[test]
fn input_chain_drops_a_flood_before_the_kernel_sees_it() {
    // Kernel forwarding on, as in production: the kernel would answer.
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let target: SocketAddr = SocketAddr::new(ip(R1_V4), 9999);
    // Without the rule the kernel sees the datagrams (no listener: NoPorts).
    let before = nstat(&l.router());
    udp_send(&l.h1(), target, 200);
    std::thread::sleep(Duration::from_millis(300));
    let after = nstat(&l.router());
    let seen = after.get("UdpNoPorts").copied().unwrap_or(0)
        - before.get("UdpNoPorts").copied().unwrap_or(0);
    assert!(
        seen >= 150,
        "the kernel saw only {seen} of 200 without a rule"
    );

    apply(
        daemon.api,
        json!({
            "rules": [{"chain": "input", "proto": "udp", "dport": 9999, "action": "drop",
                       "comment": "flood"}],
        }),
    );
    let before = nstat(&l.router());
    udp_send(&l.h1(), target, 5000);
    std::thread::sleep(Duration::from_millis(300));
    let after = nstat(&l.router());
    for key in ["UdpNoPorts", "UdpInDatagrams", "UdpInErrors"] {
        let d = after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0);
        assert_eq!(d, 0, "the kernel counted {d} {key} behind the input chain");
    }
    let (dropped, _) = hits(daemon.api, "input", 0);
    assert!(dropped >= 5000, "the input rule counted {dropped}");
    // The box still answers what the rule does not cover.
    assert!(ping(&l.h1(), R1_V4, 1), "ping to the router");
}

#[test]
fn a_stream_crosses_a_thousand_commits_with_every_verdict_from_one_ruleset() {
    // Two rulesets that disagree about one stream: A accepts it by rule and
    // drops everything else by policy; B drops it by rule and accepts
    // everything else by policy. A packet classified against a mix of the
    // two would land on a policy (or on neither rule): so the policies must
    // count nothing, and rule hits must add up to what was sent.
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let api = daemon.api;
    let a = json!({
        "policy": {"forward": "drop", "input": "accept"},
        "rules": [{"chain": "forward", "proto": "udp", "dport": 6000, "action": "accept"}],
    });
    let b = json!({
        "policy": {"forward": "accept", "input": "accept"},
        "rules": [{"chain": "forward", "proto": "udp", "dport": 6000, "action": "drop"}],
    });
    apply(api, a.clone());
    let stats0 = daemon.stats();
    let dst = SocketAddr::new(ip(H2_V4), 6000);
    let received = Arc::new(AtomicU64::new(0));
    // The sender stops first and the receiver only once the last datagram
    // has landed: a datagram to a closed port would draw an ICMP error
    // back through the chain and blur the count.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_receiver = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // The sender starts once the receiver's socket is bound: an early
    // datagram would draw a port unreachable back through the chain too.
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let receiver = {
        let (received, stop, ns) = (received.clone(), stop_receiver.clone(), l.h2());
        std::thread::spawn(move || {
            netns::in_netns(&ns, || {
                let s = UdpSocket::bind(dst).expect("bind");
                bound_tx.send(()).expect("signal bound");
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if s.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Drain what is still in flight.
                while s.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("netns")
        })
    };
    bound_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver bound");
    let sender = {
        let (sent, stop, ns) = (sent.clone(), stop.clone(), l.h1());
        std::thread::spawn(move || {
            netns::in_netns(&ns, || {
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                while !stop.load(Ordering::Relaxed) {
                    if s.send_to(b"x", dst).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
            .expect("netns")
        })
    };
    for i in 0..1000 {
        apply(api, if i % 2 == 0 { b.clone() } else { a.clone() });
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    std::thread::sleep(Duration::from_millis(500));
    stop_receiver.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver");

    let sent = sent.load(Ordering::Relaxed);
    let received = received.load(Ordering::Relaxed);
    let s = daemon.stats();
    let delta = |name: &str| {
        counter(&s, "eth1", "reasons", name) - counter(&stats0, "eth1", "reasons", name)
    };
    let (forwarded, filtered) = (delta("forwarded"), delta("filtered"));
    let active = client::get_json(api, "/api/v1/firewall/active").expect("active");
    let policy = active["policy_counters"]["forward"]["packets"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "1000 commits: sent {sent}, forwarded {forwarded}, filtered {filtered}, received {received}, policy {policy}"
    );
    assert!(sent > 1000, "the stream was too thin: {sent}");
    assert!(
        forwarded > 0 && filtered > 0,
        "both rulesets must have acted"
    );
    assert_eq!(
        policy, 0,
        "a packet fell through to a policy: a mixed ruleset"
    );
    assert_eq!(
        forwarded + filtered,
        sent,
        "every packet got exactly one verdict"
    );
    assert_eq!(received, forwarded, "what XDP forwarded is what arrived");
}

#[test]
fn a_restarted_daemon_restores_the_ruleset_before_attaching() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let summary = apply(
        daemon.api,
        json!({"rules": [{"chain": "forward", "proto": "icmp", "action": "drop"}]}),
    );
    let commit = summary["commit"].as_i64().expect("commit id");
    assert!(!ping(&l.h1(), H2_V4, 1), "ICMP crossed the rule");
    let (status, _) = daemon.signal_keep_db(libc::SIGTERM);
    assert!(status.success(), "clean exit");

    let daemon = Daemon::start_forwarding(l, true, &[]);
    let log = daemon.log();
    let restored = log
        .find("firewall ruleset restored")
        .unwrap_or_else(|| panic!("restore not logged: {log}"));
    let attached = log
        .find("attached")
        .unwrap_or_else(|| panic!("attach not logged: {log}"));
    assert!(
        restored < attached,
        "attached before the ruleset was in: {log}"
    );
    let active = client::get_json(daemon.api, "/api/v1/firewall/active").expect("active");
    assert_eq!(active["commit"].as_i64(), Some(commit), "{active}");
    assert!(!ping(&l.h1(), H2_V4, 1), "ICMP crossed after the restart");
    assert!(tcp_transfer(&l.h1(), &l.h2(), ip(H2_V4), 7105, 1000).is_ok());
}

/// `xdpgate acl ...` against the daemon's API.
fn acl(api: SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(xdpgate_bin())
        .arg("acl")
        .args(args)
        .args(["--api", &api.to_string()])
        .output()
        .expect("run xdpgate acl")
}

#[test]
fn acl_apply_refuses_a_bad_file_whole_and_keeps_the_running_ruleset() {
    let lab = lab(false);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    let dir = std::env::temp_dir().join(format!("{}-acl", l.prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        r#"
[policy]
forward = "accept"
input = "accept"

[sets.blocked]
prefixes = ["198.18.2.0/24"]

[[rule]]
chain = "forward"
dst = "@blocked"
proto = "udp"
dport = "7000-7999"
action = "drop"
comment = "no UDP 7xxx to h2"
"#,
    )
    .expect("write");
    let out = acl(daemon.api, &["apply", good.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = client::get_json(daemon.api, "/api/v1/firewall/active").expect("active");

    // Two mistakes, on lines 4 and 9: both reported, nothing applied.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nchain = \"forward\"\naction = \"drop\"\nsport = \"2000-1000\"\n\n[[rule]]\nchain = \"forward\"\naction = \"drop\"\nsrc = \"@nosuchset\"\n",
    )
    .expect("write");
    let out = acl(daemon.api, &["apply", bad.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad file was accepted");
    assert!(
        err.contains("bad.toml:4:") && err.contains("reversed"),
        "{err}"
    );
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("nosuchset"), "{err}");
    let after = client::get_json(daemon.api, "/api/v1/firewall/active").expect("active");
    assert_eq!(
        before["commit"], after["commit"],
        "the running ruleset changed"
    );

    // `acl show` lists the rule with its counters.
    let got =
        xdpgate_tests::traffic::udp_burst(&l.h1(), &l.h2(), ip(H2_V4), 7500, 20, 100).expect("udp");
    assert_eq!(got, 0, "UDP 7500 crossed the drop rule");
    let out = acl(daemon.api, &["show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("no UDP 7xxx to h2") && text.contains("20"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Ruleset `tag` ("A" or "B"): drops UDP to `port`, the rule's comment
/// names the ruleset.
fn tagged(tag: &str, port: u16) -> Value {
    json!({"rules": [{"chain": "forward", "proto": "udp", "dport": port, "action": "drop",
                      "comment": tag}]})
}

#[test]
fn sigkill_in_the_middle_of_commits_leaves_one_whole_committed_ruleset() {
    let lab = lab(false);
    let l = &lab.lab;
    let (port_a, port_b) = (7401u16, 7402u16);
    let mut daemon = Daemon::start_forwarding(l, true, &[]);
    for round in 0..5u64 {
        let api = daemon.api;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let committer = {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rs = if i.is_multiple_of(2) {
                        tagged("A", port_a)
                    } else {
                        tagged("B", port_b)
                    };
                    // Fails once the daemon is gone: that is the point.
                    if client::post_json(api, "/api/v1/firewall/apply", &rs).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        };
        // Kill at a different moment each round, commits in flight.
        std::thread::sleep(Duration::from_millis(300 + 173 * round));
        let (status, _) = daemon.signal_keep_db(libc::SIGKILL);
        assert!(!status.success(), "SIGKILL must kill");
        stop.store(true, Ordering::Relaxed);
        committer.join().expect("committer");
        assert!(
            done.load(Ordering::Relaxed) > 0,
            "round {round}: no commit made"
        );

        // The same database, the pinned program adopted.
        daemon = Daemon::start_forwarding(l, true, &[]);
        let active = client::get_json(daemon.api, "/api/v1/firewall/active").expect("active");
        let rules = active["rules"].as_array().expect("rules");
        assert_eq!(
            rules.len(),
            1,
            "round {round}: not one whole ruleset: {active}"
        );
        let tag = rules[0]["comment"].as_str().unwrap_or_default().to_owned();
        assert!(tag == "A" || tag == "B", "round {round}: {active}");
        eprintln!(
            "round {round}: killed after {} commits; restarted on commit {} ({tag})",
            done.load(Ordering::Relaxed),
            active["commit"]
        );
        let history =
            client::get_json(daemon.api, "/api/v1/firewall/commits?limit=1").expect("history");
        assert_eq!(
            history["items"][0]["id"], active["commit"],
            "round {round}: the active ruleset is not the last commit: {history} {active}"
        );
        // Traffic follows it: the dropped port gets nothing, the other all.
        let (dropped, open) = if tag == "A" {
            (port_a, port_b)
        } else {
            (port_b, port_a)
        };
        let through = |port| udp_burst(&l.h1(), &l.h2(), ip(H2_V4), port, 20, 64).expect("udp");
        assert_eq!(
            through(dropped),
            0,
            "round {round}: ruleset {tag} let {dropped} through"
        );
        assert_eq!(
            through(open),
            20,
            "round {round}: ruleset {tag} dropped {open}"
        );
    }
    // The database is sound after five crashes (sqlite3: apt, installed
    // by scripts/prereqs.sh).
    let out = Command::new("sqlite3")
        .arg(&daemon.db)
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("run sqlite3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "{out:?}");
}
