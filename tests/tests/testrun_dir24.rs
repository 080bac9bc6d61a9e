//! DIR-24-8 against the LPM trie, in the XDP program itself: one object
//! holds both (the trie is always written), and `CONFIG.route_lookup`
//! picks which one a packet uses, so the same frame is run through each
//! and the verdicts and output frames must be identical, byte for byte.
//!
//! Random tables with heavy overlap (prefixes of every length /0-/32 in a
//! few /8s, plus some anywhere), every route kind, ECMP included (both
//! backends hash a flow to the same member); batches of random adds,
//! replaces and deletes, 100,000 random destinations after each batch.
//! `TBL8` groups are deliberately too few, so some /24 blocks are served
//! by the trie through DIR-24-8's fallback, which must not show either.
//!
//! `ip route get` comparisons of the DIR-24-8 answers are in
//! `differential.rs` (DIR-24-8 is the default lookup). The 1M-prefix run
//! takes minutes in a debug build, so `scripts/test` skips it in the debug
//! run and runs it in a release build of its own (about 80 s):
//! `cargo test --release -p xdpgate-tests --test testrun_dir24 -- --nocapture a_million`.
//!
//! `XDPGATE_DIR24_SEED=<n>` reproduces a run (the seed is printed). Needs
//! root.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use dataplane_common::{Action, Reason};
use xdpgate::{
    dataplane::{DataplaneError, LoadOptions},
    dir24::{Dir24Error, RouteLookup},
    fib::{IpNet, NextHopSpec, RouteTarget},
};
use xdpgate_tests::{
    fibtest::{Router, in_router},
    frames::{Frame, Mac},
    rng::Rng,
};

const DEFAULT_SEED: u64 = 0x6469_7232_342d_3801;
const GATEWAYS: u8 = 48;
const DESTINATIONS: usize = 100_000;

struct Case {
    routes: usize,
    batches: usize,
    churn: usize,
    tbl8_groups: u32,
    /// The case has too few groups on purpose: the fallback must be hit.
    exhausts_tbl8: bool,
}

fn seed() -> u64 {
    let seed = std::env::var("XDPGATE_DIR24_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("seed {seed} (XDPGATE_DIR24_SEED)");
    seed
}

/// A prefix: mostly inside a few /8s (so they overlap heavily at every
/// length), sometimes anywhere, never inside the lab's 198.18.0.0/15.
fn random_prefix(rng: &mut Rng) -> (u32, u8) {
    loop {
        // Every length, the short ones rarer: setting one rewrites
        // 2^(24 - len) entries (a /0: all 16M), slow in a debug build.
        let len = match rng.range(0, 999) {
            0 => rng.range(0, 7),
            1..=40 => rng.range(8, 16),
            41..=599 => rng.range(17, 24),
            _ => rng.range(25, 32),
        } as u8;
        let a = if rng.percent(80) {
            let first = [10u32, 100, 172, 203][rng.range(0, 3) as usize];
            first << 24 | (rng.next_u64() as u32 & 0x00ff_ffff)
        } else {
            rng.next_u64() as u32
        };
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let net = a & mask;
        let lab = u32::from(Ipv4Addr::new(198, 18, 0, 0));
        // Neither inside the lab's block nor covering it with a route
        // that would take its connected addresses' place.
        if len >= 15 && net & 0xfffe_0000 == lab {
            continue;
        }
        return (net, len);
    }
}

fn target(rng: &mut Rng, gws: &[NextHopSpec]) -> RouteTarget {
    let pick = |rng: &mut Rng| gws[rng.range(0, gws.len() as u64 - 1) as usize];
    match rng.range(0, 99) {
        0..=84 => RouteTarget::Unicast { nexthop: pick(rng) },
        85..=89 => {
            let mut nexthops: Vec<NextHopSpec> = Vec::new();
            while nexthops.len() < 3 {
                let h = pick(rng);
                if !nexthops.contains(&h) {
                    nexthops.push(h);
                }
            }
            RouteTarget::Multipath { nexthops }
        }
        90..=93 => RouteTarget::Blackhole,
        94..=96 => RouteTarget::Unreachable,
        97 => RouteTarget::Local,
        _ => RouteTarget::Kernel,
    }
}

fn net_of((a, len): (u32, u8)) -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).expect("prefix length")
}

/// Set a route; a DIR-24-8 "no tbl8 group" is expected (the block falls
/// back to the trie) and counted.
#[track_caller]
fn set(r: &mut Router, p: (u32, u8), t: RouteTarget, fallbacks: &mut usize) {
    match r.try_route(net_of(p), t) {
        Ok(()) => {}
        Err(DataplaneError::Dir24(Dir24Error::Tbl8Full { .. })) => *fallbacks += 1,
        Err(e) => panic!("route {}: {e}", net_of(p)),
    }
}

/// Reason counters of every slot summed, by reason.
fn reasons(r: &Router) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for ((_, reason), c) in r.counters().0 {
        *out.entry(Reason::ALL[reason as usize].name()).or_default() += c.packets;
    }
    out
}

fn diff(
    after: &BTreeMap<&'static str, u64>,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

fn run_case(case: Case) {
    let mut rng = Rng(seed());
    in_router(
        |_| {},
        |_| {
            let mut r = Router::with_options(
                &["eth1", "eth2"],
                LoadOptions {
                    route_lookup: RouteLookup::Dir24,
                    tbl8_groups: case.tbl8_groups,
                    ..LoadOptions::default()
                },
            );
            let mut gws = Vec::new();
            for i in 0..GATEWAYS {
                let gw = format!("198.18.2.{}", 10 + u32::from(i));
                let mac: Mac = [0x02, 0xd2, 0x48, 0, 2, i];
                r.neigh("eth2", &gw, mac);
                gws.push(r.hop(Some(&gw), "eth2"));
            }
            let src_mac: Mac = [0x02, 0xd2, 0x48, 0, 1, 2];
            let eth1_mac = r.mac("eth1");
            let h1 = Ipv4Addr::new(198, 18, 1, 2);
            let mut live: Vec<(u32, u8)> = Vec::new();
            let mut index: BTreeMap<(u32, u8), usize> = BTreeMap::new();
            let mut fallbacks = 0;
            let t = Instant::now();
            while live.len() < case.routes {
                let p = random_prefix(&mut rng);
                let tg = target(&mut rng, &gws);
                if let std::collections::btree_map::Entry::Vacant(e) = index.entry(p) {
                    e.insert(live.len());
                    live.push(p);
                }
                set(&mut r, p, tg, &mut fallbacks);
            }
            println!(
                "{} routes in {:.1} s",
                live.len(),
                t.elapsed().as_secs_f64()
            );
            for batch in 0..=case.batches {
                if batch > 0 {
                    for _ in 0..case.churn {
                        match rng.range(0, 2) {
                            // Delete (covering and covered prefixes alike).
                            0 if !live.is_empty() => {
                                let k = rng.range(0, live.len() as u64 - 1) as usize;
                                let p = live.swap_remove(k);
                                index.remove(&p);
                                if k < live.len() {
                                    index.insert(live[k], k);
                                }
                                r.unroute(&net_of(p).to_string());
                            }
                            // Replace an existing route's target.
                            1 if !live.is_empty() => {
                                let p = live[rng.range(0, live.len() as u64 - 1) as usize];
                                let tg = target(&mut rng, &gws);
                                set(&mut r, p, tg, &mut fallbacks);
                            }
                            _ => {
                                let p = random_prefix(&mut rng);
                                let tg = target(&mut rng, &gws);
                                if let std::collections::btree_map::Entry::Vacant(e) =
                                    index.entry(p)
                                {
                                    e.insert(live.len());
                                    live.push(p);
                                }
                                set(&mut r, p, tg, &mut fallbacks);
                            }
                        }
                    }
                }
                // Destinations: most inside a random live prefix, the rest
                // anywhere.
                let dests: Vec<Ipv4Addr> = (0..DESTINATIONS)
                    .map(|_| {
                        let random = rng.next_u64() as u32;
                        if rng.percent(75) && !live.is_empty() {
                            let (a, len) = live[rng.range(0, live.len() as u64 - 1) as usize];
                            let host = random.checked_shr(u32::from(len)).unwrap_or(0);
                            Ipv4Addr::from(a | host)
                        } else {
                            Ipv4Addr::from(random)
                        }
                    })
                    .collect();
                let mut results = [Vec::new(), Vec::new()];
                let mut counted = [BTreeMap::new(), BTreeMap::new()];
                for (k, lookup) in [RouteLookup::Dir24, RouteLookup::Lpm]
                    .into_iter()
                    .enumerate()
                {
                    r.dp.set_route_lookup(lookup).expect("switch the lookup");
                    let before = reasons(&r);
                    results[k] = dests
                        .iter()
                        .enumerate()
                        .map(|(i, d)| {
                            let frame = Frame::eth(src_mac, eth1_mac)
                                .ipv4(h1, *d)
                                .udp(40000 + (i % 1000) as u16, 9)
                                .payload(&[0; 18])
                                .build();
                            let out = r.run("eth1", &frame);
                            (out.action, out.output)
                        })
                        .collect();
                    counted[k] = diff(&reasons(&r), &before);
                }
                let mut wrong = 0;
                for (i, d) in dests.iter().enumerate() {
                    if results[0][i] != results[1][i] {
                        wrong += 1;
                        if wrong <= 5 {
                            println!(
                                "batch {batch}: {d}: dir24 {} / lpm {} (dir24 tables say {:?})",
                                results[0][i].0.name(),
                                results[1][i].0.name(),
                                r.dp.dir24_lookup(*d)
                            );
                        }
                    }
                }
                let forwarded = results[0]
                    .iter()
                    .filter(|(a, _)| *a == Action::Redirect)
                    .count();
                let stats = r.dp.route_lookup().expect("route lookup stats");
                println!(
                    "batch {batch}: {} routes, {} destinations, {forwarded} forwarded, \
                     dir24 {:?}, {fallbacks} tbl8-full errors so far; reasons {:?}",
                    live.len(),
                    dests.len(),
                    stats.dir24,
                    counted[0]
                );
                assert_eq!(wrong, 0, "batch {batch}: {wrong} destinations differ");
                assert_eq!(
                    counted[0], counted[1],
                    "batch {batch}: reason counters differ"
                );
                if case.routes >= 1000 {
                    assert!(forwarded > dests.len() / 2, "most destinations are routed");
                }
            }
            let usage =
                r.dp.route_lookup()
                    .expect("stats")
                    .dir24
                    .expect("dir24 loaded");
            if case.exhausts_tbl8 {
                assert!(
                    fallbacks > 0 && usage.tbl8_groups_used == usage.tbl8_groups,
                    "the case is meant to exhaust the tbl8 groups: {usage:?}"
                );
            } else {
                assert_eq!(fallbacks, 0, "{usage:?}");
            }
        },
    );
}

#[test]
fn dir24_equals_lpm_for_random_tables_with_churn() {
    run_case(Case {
        routes: 100_000,
        batches: 3,
        churn: 5_000,
        tbl8_groups: 8_192,
        exhausts_tbl8: true,
    });
}

/// The small end of the range: one route, then ten, each with churn that
/// can empty the table (every destination unrouted) and fill it again.
#[test]
fn dir24_equals_lpm_for_tables_of_one_and_ten_prefixes() {
    for routes in [1, 10] {
        run_case(Case {
            routes,
            batches: 4,
            churn: routes.max(2),
            tbl8_groups: 256,
            exhausts_tbl8: false,
        });
    }
}

#[test]
fn dir24_equals_lpm_for_a_million_prefixes() {
    run_case(Case {
        routes: 1_000_000,
        batches: 2,
        churn: 50_000,
        tbl8_groups: 65_536,
        exhausts_tbl8: true,
    });
}
