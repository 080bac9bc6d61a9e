//! Firewall benchmarks: `BPF_PROG_TEST_RUN` ns per packet of the forward
//! path with the firewall disabled (empty ruleset), policy only, 64 to
//! 4,096 rules with the packet matching the last one (every bitmap word is
//! ANDed), a 100,000-prefix address set, and an established flow's packet
//! with 10k and 1M other connections tracked; and the commit time of 4,096
//! rules (compile + install + flip). Every ns figure sits next to the
//! disabled baseline measured in the same run, just before it; they never
//! fail on speed.
//!
//! ```text
//! scripts/bench firewall
//! cargo bench -p xdpgate-tests --bench firewall
//! ```
//!
//! Needs root (namespaces, BPF).
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use dataplane_common::{Action, CT_F_ORIG_IS_LO, CT_UDP_REPLIED, CtEntry, CtKey, Reason};
use xdpgate::{
    dataplane::{self, Dataplane, LoadOptions},
    fib::{NextHopSpec, RouteTarget, parse_prefix},
    firewall::{compile::compile, rule::Ruleset},
    ifinfo, testrun,
};
use xdpgate_tests::{
    benchutil::{cpu_model, is_root, loadavg, read_trim},
    fibtest::{in_router, ip_in},
    frames::Frame,
    rng::Rng,
};

const REPEAT: u32 = 20_000;
const ROUNDS: usize = 7;
const PARK: [&str; 2] = ["xfwb0", "xfwb1"];
const H1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const H2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
const H1_MAC: [u8; 6] = [0x02, 0xbe, 0x4c, 0, 1, 2];
const H2_MAC: [u8; 6] = [0x02, 0xbe, 0x4c, 0, 2, 2];

fn main() {
    println!("# xdpgate firewall benchmarks\n");
    println!(
        "```text\n$ scripts/bench firewall    # = cargo bench -p xdpgate-tests --bench firewall\n```\n"
    );
    println!(
        "Machine: Linux {}, {} CPU(s) ({}); load average at the start: {}.",
        read_trim("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        loadavg()
    );
    if !is_root() {
        println!("skipped: the benchmarks need root (namespaces, BPF)");
        return;
    }
    let start = Instant::now();
    in_router(
        |ns| {
            ip_in(
                ns,
                &[
                    "link", "add", PARK[0], "type", "veth", "peer", "name", PARK[1],
                ],
            )
        },
        |_| bench(),
    );
    println!(
        "\nTotal benchmark time {:.1} s; load average at the end: {}.",
        start.elapsed().as_secs_f64(),
        loadavg()
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Bench {
    dp: Dataplane,
    eth1: u32,
    eth2: u32,
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl Bench {
    fn resolve(&self) -> impl Fn(&str) -> Option<u32> + use<> {
        let (eth1, eth2) = (self.eth1, self.eth2);
        move |n| match n {
            "eth1" => Some(eth1),
            "eth2" => Some(eth2),
            _ => None,
        }
    }

    /// Compile, install into the inactive generation, flip: the three
    /// durations and the new generation.
    fn commit(&mut self, rs: &Ruleset) -> (Duration, Duration, Duration, u32) {
        let resolve = self.resolve();
        let fw = self.dp.firewall_mut();
        let generation = 1 - fw.active_generation().expect("generation");
        let t = Instant::now();
        let compiled = compile(
            rs,
            &resolve,
            fw.bitmap_base(generation),
            fw.bitmaps_per_generation(),
        )
        .expect("compile");
        let compile_t = t.elapsed();
        let t = Instant::now();
        fw.install(generation, &compiled).expect("install");
        let install_t = t.elapsed();
        let t = Instant::now();
        fw.flip(generation).expect("flip");
        (compile_t, install_t, t.elapsed(), generation)
    }

    /// Kernel-measured ns per run of `frame` (REPEAT runs), one round.
    fn once(&mut self, frame: &[u8], ingress: u32) -> (f64, Action) {
        let prog = self.dp.main_program().expect("main program");
        let out = testrun::run_with(prog, frame, REPEAT, Some(ingress)).expect("test run");
        (out.duration.as_nanos() as f64, out.action)
    }

    /// Median ns per packet over the rounds of the baseline (empty
    /// ruleset) and of `rs`, alternating: commit one, measure a round,
    /// commit the other...; and the verdict under `rs`.
    fn measure(&mut self, rs: &Ruleset, prime: bool) -> (f64, f64, Action) {
        let empty = Ruleset::default();
        let (mut base, mut with) = (Vec::new(), Vec::new());
        let mut action = Action::Aborted;
        let frame = self.frame.clone();
        for _ in 0..ROUNDS {
            self.commit(&empty);
            base.push(self.once(&frame, self.eth1).0);
            self.commit(rs);
            if prime {
                self.prime_flow();
            }
            let (ns, a) = self.once(&frame, self.eth1);
            with.push(ns);
            action = a;
        }
        (median(base), median(with), action)
    }

    /// Make the benchmark flow established: its packet one way, the
    /// reply back.
    fn prime_flow(&mut self) {
        let prog = self.dp.main_program().expect("main program");
        testrun::run_on(prog, &self.frame, self.eth1).expect("first packet");
        let reply = self.reply.clone();
        let prog = self.dp.main_program().expect("main program");
        testrun::run_on(prog, &reply, self.eth2).expect("reply");
    }
}

fn rules_json(n: usize) -> serde_json::Value {
    // n - 1 rules the packet misses (each on its own port), then the one
    // it matches: the AND runs over every word of the bitmaps.
    let mut rules: Vec<serde_json::Value> = (0..n.saturating_sub(1))
        .map(|i| {
            serde_json::json!({
                "chain": "forward", "proto": "udp", "dport": 10_000 + i,
                "src": format!("10.{}.{}.0/24", i / 256, i % 256), "action": "drop"
            })
        })
        .collect();
    if n > 0 {
        rules.push(serde_json::json!({
            "chain": "forward", "proto": "udp", "dport": 9, "action": "accept"
        }));
    }
    serde_json::json!({ "policy": {"forward": "drop", "input": "accept"}, "rules": rules })
}

fn ruleset(v: serde_json::Value) -> Ruleset {
    serde_json::from_value(v).expect("ruleset")
}

fn bench() {
    let t = Instant::now();
    let mut dp = Dataplane::load_with(LoadOptions {
        ttl_decrement: false,
        conntrack_max: 1 << 21,
        ..LoadOptions::default()
    })
    .expect("load the XDP object");
    let load = t.elapsed();
    // Keep the program in the kernel's XDP dispatcher for the whole run
    // (see benches/forwarding.rs testrun_in_router): attached to an idle
    // veth, down.
    let park = dataplane::ifindex(PARK[0]).expect("parking veth");
    dp.main_program()
        .expect("main program")
        .attach_to_if_index(park, XdpMode::Driver)
        .expect("attach to the parking veth");
    let eth1 = ifinfo::read("eth1").expect("eth1");
    let eth2 = ifinfo::read("eth2").expect("eth2");
    let (i1, i2, mac1, mac2) = (eth1.ifindex, eth2.ifindex, eth1.mac, eth2.mac);
    dp.manage(eth1).expect("manage eth1");
    dp.manage(eth2).expect("manage eth2");
    // The kernel runs the repeats on one buffer, so the frame must stay
    // valid after the program rewrote it (../shared/NOTES.md, Test-run):
    // h2's MAC is the router's eth1 MAC, and the rewritten frame is still
    // addressed to the router when it comes round again on eth1.
    for (net, ifindex, host, mac) in [
        ("198.18.1.0/24", i1, H1, mac2),
        ("198.18.2.0/24", i2, H2, mac1),
    ] {
        let net = parse_prefix(net).expect("prefix");
        // The map operations of both edits.
        dp.update(|fib| {
            let mut ops = fib.set_route(
                net,
                RouteTarget::Unicast {
                    nexthop: NextHopSpec {
                        gateway: None,
                        ifindex,
                    },
                },
            )?;
            ops.extend(fib.set_neighbour(ifindex, host.into(), mac)?);
            Ok(ops)
        })
        .expect("route and neighbour");
    }
    let frame = Frame::eth(H1_MAC, mac1)
        .ipv4(H1, H2)
        .udp(40000, 9)
        .payload(&[0; 18])
        .build();
    let reply = Frame::eth(H2_MAC, mac2)
        .ipv4(H2, H1)
        .udp(9, 40000)
        .payload(&[0; 18])
        .build();
    // The benchmark frame must be forwarded with the firewall off.
    let prog = dp.main_program().expect("main program");
    let out = testrun::run_on(prog, &frame, i1).expect("test run");
    let slot = dp.fib().slot(i1).expect("eth1 slot");
    let counts = dp.counters().slot(slot).expect("counters");
    let reasons: Vec<Reason> = Reason::ALL
        .into_iter()
        .filter(|r| counts.reason(*r).packets != 0)
        .collect();
    assert_eq!(
        out.action,
        Action::Redirect,
        "the benchmark frame is not forwarded: {reasons:?}"
    );
    let mut b = Bench {
        dp,
        eth1: i1,
        eth2: i2,
        frame,
        reply,
    };

    println!(
        "\nObject load: {:.1} ms. Frame: UDP 198.18.1.2:40000 -> 198.18.2.2:9, 60 bytes, in on \
         eth1, forwarded out of eth2 (TTL decrement off). Each row: {ROUNDS} rounds of \
         {REPEAT} kernel repeats, the disabled baseline (empty ruleset) and the row's \
         ruleset alternating, one commit before each round; medians.\n",
        load.as_secs_f64() * 1e3
    );
    println!("| firewall | verdict | ns/pkt | disabled ns/pkt | ratio | extra ns |");
    println!("|---|---|---:|---:|---:|---:|");
    let row = |label: &str, r: (f64, f64, Action)| {
        let (base, with, action) = r;
        println!(
            "| {label} | {action:?} | {with:.1} | {base:.1} | {:.2} | {:.1} |",
            with / base,
            with - base
        );
    };

    let empty = Ruleset::default();
    row("disabled (empty ruleset)", b.measure(&empty, false));
    let policy = |forward: &str| {
        ruleset(serde_json::json!({"policy": {"forward": forward, "input": "accept"}}))
    };
    row(
        "0 rules, policy accept (chain skipped)",
        b.measure(&policy("accept"), false),
    );
    row("0 rules, policy drop", b.measure(&policy("drop"), false));
    for n in [1, 64, 1024, 4096] {
        let rs = ruleset(rules_json(n));
        row(
            &format!("{n} rules, match on the last"),
            b.measure(&rs, false),
        );
    }
    // A 100,000-prefix set on the source side, which the packet misses;
    // then the rule it matches.
    let prefixes: Vec<String> = (0..100_000u32)
        .map(|i| format!("{}/26", Ipv4Addr::from(0x0a00_0000 + i * 64)))
        .collect();
    let big = ruleset(serde_json::json!({
        "policy": {"forward": "drop", "input": "accept"},
        "sets": [{"name": "big", "prefixes": prefixes}],
        "rules": [
            {"chain": "forward", "src": "@big", "action": "drop"},
            {"chain": "forward", "dst": "@big", "action": "drop"},
            {"chain": "forward", "proto": "udp", "dport": 9, "action": "accept"},
        ]
    }));
    row(
        "100k-prefix set (src and dst), match after",
        b.measure(&big, false),
    );

    // Conntrack: an established flow's packet with 10k / 1M other entries.
    let tracked = ruleset(serde_json::json!({
        "policy": {"forward": "drop", "input": "accept"},
        "rules": [
            {"chain": "forward", "state": ["established"], "action": "accept"},
            {"chain": "forward", "proto": "udp", "state": ["new"], "action": "accept"},
        ]
    }));
    let mut filled = 0usize;
    let mut rng = Rng(0xc0_ffee);
    for target in [0usize, 10_000, 1_000_000] {
        let t = Instant::now();
        let ct = b.dp.firewall_mut().conntrack_mut();
        while filled < target {
            let mut key = CtKey {
                addr_lo: [0; 16],
                addr_hi: [0; 16],
                port_lo: rng.next_u64() as u16,
                port_hi: rng.next_u64() as u16,
                proto: 17,
                family: 4,
                _pad: [0; 2],
            };
            // IPv4-mapped, in 10.0.0.0/8: never the benchmark flow.
            for a in [&mut key.addr_lo, &mut key.addr_hi] {
                a[10] = 0xff;
                a[11] = 0xff;
                a[12] = 10;
                a[13..16].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes()[1..]);
            }
            let entry = CtEntry {
                state: CT_UDP_REPLIED,
                flags: CT_F_ORIG_IS_LO,
                ..CtEntry::default()
            };
            ct.insert(key, entry, 0).expect("prefill CONNTRACK");
            filled += 1;
        }
        let fill = t.elapsed();
        let r = b.measure(&tracked, true);
        // The measured packets must have been classified established.
        let fw = b.dp.firewall();
        let table = fw.active_generation().expect("generation") * 2;
        let est = fw.rule_counter(table, 0).expect("counter").packets;
        let label = format!(
            "conntrack, established flow, {} other entries (prefill {:.1} s; {est} packets \
             counted established in the last round)",
            target,
            fill.as_secs_f64()
        );
        row(&label, r);
    }

    // Commit time of 4,096 rules.
    let rs = ruleset(rules_json(4096));
    let mut times = Vec::new();
    for _ in 0..5 {
        b.commit(&empty);
        let t = Instant::now();
        let (c, i, f, _) = b.commit(&rs);
        times.push((t.elapsed(), c, i, f));
    }
    times.sort();
    let (total, c, i, f) = times[times.len() / 2];
    println!(
        "\nCommit of 4,096 forward rules (median of 5, each after an empty commit): \
         {:.1} ms = compile {:.1} ms + install {:.1} ms + flip {:.3} ms.",
        total.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        i.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e3
    );
}
