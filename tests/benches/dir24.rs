//! IPv4 route lookup: DIR-24-8 against the BPF LPM trie. Prints figures,
//! ratios measured in the same run (the two backends interleaved frame by
//! frame in one loaded program, switched through `CONFIG.route_lookup`);
//! never fails on speed.
//!
//! ```text
//! scripts/bench dir24
//! cargo bench -p xdpgate-tests --bench dir24
//! ```
//!
//! - ns per packet (`BPF_PROG_TEST_RUN`, forward path, TTL decrement off)
//!   with 1, 10k, 100k and 1M IPv4 routes, destinations spread over the
//!   table;
//! - time to load the 1M routes into each backend (a program loaded for
//!   the trie alone, and one loaded for DIR-24-8, which writes both);
//! - the update cost of a /8, /16, /24 and /28 change at 1M routes;
//! - kernel memory of each backend's maps (`memlock` in fdinfo).
//!
//! Needs root.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use aya::programs::XdpMode;
use dataplane_common::{Action, DIR24_TBL24_BLOCKS, MAX_ROUTES_V4};
use xdpgate::{
    dataplane::{self, Dataplane, DataplaneError, LoadOptions},
    dir24::RouteLookup,
    fib::{IpNet, NextHopSpec, RouteTarget},
    ifinfo,
    lab::H1_V4,
    netns,
};
use xdpgate_tests::{
    benchutil::{cpu_model, is_root, loadavg, read_trim},
    frames::Frame,
    rng::Rng,
    support,
};

const SEED: u64 = 0x7864_7067_6174_6531;
const SIZES: [usize; 4] = [1, 10_000, 100_000, 1_000_000];

const FRAMES: usize = 256;
const REPEAT: u32 = 10_000;
const ROUNDS: usize = 3;
const GATEWAYS: u8 = 4;
/// Enough for the random table: drawing 1M distinct prefixes exhausts the
/// short lengths, so about half are longer than /24, most in a /24 block
/// of their own.
const TBL8_GROUPS: u32 = 700_000;
const PARK: [&str; 2] = ["xd24p0", "xd24p1"];

fn main() {
    println!("# xdpgate DIR-24-8 benchmark\n");
    println!(
        "```text\n$ scripts/bench dir24    # = cargo bench -p xdpgate-tests --bench dir24\n```\n"
    );
    println!(
        "Machine: Linux {}, {} CPU(s) ({}); load average at the start: {}.",
        read_trim("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        loadavg()
    );
    if !is_root() {
        println!("skipped: the benchmark needs root (namespaces, BPF)");
        return;
    }
    let start = Instant::now();
    let lab = support::lab(false);
    let router = lab.lab.router();
    netns::ip([
        "-n", &router, "link", "add", "name", PARK[0], "type", "veth", "peer", "name", PARK[1],
    ])
    .expect("add the parking veth pair");
    netns::in_netns(&router, in_router).expect("enter the router namespace");
    write_paths();
    println!(
        "\nTotal benchmark time {:.1} s; load average at the end: {}.",
        start.elapsed().as_secs_f64(),
        loadavg()
    );
}

/// A random IPv4 prefix, /8 to /32 (uniform lengths, as the forwarding
/// benchmark), outside ranges the program punts before routing.
fn random_prefix(rng: &mut Rng) -> (u32, u8) {
    loop {
        let len = rng.range(8, 32) as u8;
        let addr = rng.next_u64() as u32;
        let first = addr >> 24;
        if matches!(first, 0 | 127 | 169 | 198) || first >= 224 {
            continue;
        }
        return (addr & (u32::MAX << (32 - u32::from(len))), len);
    }
}

fn net((a, len): (u32, u8)) -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).expect("prefix length")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `memlock` of this process's maps of `map_type` with `max_entries`,
/// newest first (fdinfo; include/uapi/linux/bpf.h: ARRAY = 2, LPM_TRIE = 11).
fn map_memory(map_type: u32, max_entries: u32) -> Vec<u64> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
        };
        if field("map_type:") == Some(map_type.to_string())
            && field("max_entries:") == Some(max_entries.to_string())
            && let Some(m) = field("memlock:").and_then(|v| v.parse().ok())
        {
            found.push(m);
        }
    }
    found
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

struct Setup {
    dp: Dataplane,
    egress: u32,
    gws: Vec<IpAddr>,
}

fn load(lookup: RouteLookup) -> Setup {
    let mut dp = Dataplane::load_with(LoadOptions {
        ttl_decrement: false,
        route_lookup: lookup,
        tbl8_groups: TBL8_GROUPS,
        ..LoadOptions::default()
    })
    .expect("load the XDP object");
    let eth1 = ifinfo::read("eth1").expect("eth1");
    let eth2 = ifinfo::read("eth2").expect("eth2");
    let egress = eth2.ifindex;
    let eth1_mac = eth1.mac;
    dp.manage(eth1).expect("manage eth1");
    dp.manage(eth2).expect("manage eth2");
    let mut gws = Vec::new();
    for i in 0..GATEWAYS {
        let gw = IpAddr::V4(Ipv4Addr::new(198, 18, 2, 10 + i));
        // eth1's own MAC: the rewritten frame stays addressed to the
        // router, so the kernel's repeats of one buffer (BPF_PROG_TEST_RUN
        // reuses it) keep taking the forward path instead of other_host.
        let mac = eth1_mac;
        dp.update(|fib| fib.set_neighbour(egress, gw, mac))
            .expect("neighbour");
        gws.push(gw);
    }
    Setup { dp, egress, gws }
}

impl Setup {
    fn target(&self, i: usize) -> RouteTarget {
        RouteTarget::Unicast {
            nexthop: NextHopSpec {
                gateway: Some(self.gws[i % self.gws.len()]),
                ifindex: self.egress,
            },
        }
    }

    fn insert(&mut self, prefixes: &[(u32, u8)], from: usize) -> Duration {
        let t = Instant::now();
        for (i, p) in prefixes.iter().enumerate() {
            let target = self.target(from + i);
            match self.dp.update(|fib| fib.set_route(net(*p), target)) {
                Ok(()) => {}
                // Served by the trie; counted in the stats' lpm_blocks.
                Err(DataplaneError::Dir24(_)) => {}
                Err(e) => panic!("insert route: {e}"),
            }
        }
        t.elapsed()
    }

    /// Median over `n` rounds of adding then deleting `p` (each timed).
    fn update_cost(&mut self, p: (u32, u8), n: usize) -> (f64, f64) {
        let (mut add, mut del) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let target = self.target(0);
            let t = Instant::now();
            self.dp
                .update(|fib| fib.set_route(net(p), target))
                .expect("add");
            add.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            self.dp.update(|fib| fib.del_route(net(p))).expect("del");
            del.push(t.elapsed().as_secs_f64() * 1e6);
        }
        (median(&mut add), median(&mut del))
    }
}

fn in_router() {
    println!("\n## Lookup: BPF_PROG_TEST_RUN ns per packet\n");
    let mut s = load(RouteLookup::Dir24);
    for (dev, prog) in PARK.into_iter().zip([0, 1]) {
        let ifindex = dataplane::ifindex(dev).expect("parking veth");
        let p = if prog == 0 {
            s.dp.main_program().expect("main")
        } else {
            s.dp.floor_program().expect("floor")
        };
        p.attach_to_if_index(ifindex, XdpMode::Driver)
            .expect("attach to the parking veth");
    }
    let eth1 = ifinfo::read("eth1").expect("eth1");
    let h1: Ipv4Addr = H1_V4.parse().expect("static");
    let frame = |dst: Ipv4Addr| {
        Frame::eth([0x02, 0xbe, 0x4c, 0, 1, 2], eth1.mac)
            .ipv4(h1, dst)
            .udp(40000, 9)
            .payload(&[0; 18])
            .build()
    };
    let mut rng = Rng(SEED);
    let mut table: Vec<(u32, u8)> = Vec::new();
    let mut seen = HashSet::new();
    println!(
        "| routes | dir24 ns/pkt | lpm ns/pkt | lpm / dir24 | dir24 vs 1 route | lpm vs 1 route | \
         insert (both backends) | tbl8 groups used | wrong verdicts |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut first: Option<(f64, f64)> = None;
    for size in SIZES {
        let from = table.len();
        while table.len() < size {
            let p = random_prefix(&mut rng);
            if seen.insert(p) {
                table.push(p);
            }
        }
        let new = table[from..].to_vec();
        let insert = s.insert(&new, from);
        let frames: Vec<Vec<u8>> = (0..FRAMES)
            .map(|_| {
                let (a, len) = table[rng.below(table.len() as u64) as usize];
                let host = (rng.next_u64() as u32)
                    .checked_shr(u32::from(len))
                    .unwrap_or(0);
                frame(Ipv4Addr::from(a | host))
            })
            .collect();
        let (mut d, mut l) = (Vec::new(), Vec::new());
        let mut wrong = 0;
        for _ in 0..ROUNDS {
            let (mut ds, mut ls) = (0.0, 0.0);
            for f in &frames {
                for (lookup, sum) in [(RouteLookup::Dir24, &mut ds), (RouteLookup::Lpm, &mut ls)] {
                    s.dp.set_route_lookup(lookup).expect("switch");
                    let prog = s.dp.main_program().expect("main");
                    let out = xdpgate::testrun::run_with(prog, f, REPEAT, Some(eth1.ifindex))
                        .expect("BPF_PROG_TEST_RUN");
                    if out.action != Action::Redirect {
                        wrong += 1;
                        if wrong == 1 {
                            let c =
                                s.dp.counters()
                                    .slot(s.dp.fib().slot(eth1.ifindex).unwrap_or(0));
                            println!(
                                "first wrong verdict: {} ({lookup}); eth1 reasons: {:?}",
                                out.action.name(),
                                c.map(|c| c
                                    .reasons
                                    .into_iter()
                                    .filter(|(_, v)| v.packets > 0)
                                    .collect::<Vec<_>>())
                            );
                        }
                    }
                    *sum += out.duration.as_nanos() as f64;
                }
            }
            d.push(ds / FRAMES as f64);
            l.push(ls / FRAMES as f64);
        }
        let (dn, ln) = (median(&mut d), median(&mut l));
        let (d1, l1) = *first.get_or_insert((dn, ln));
        let usage = s.dp.route_lookup().expect("stats").dir24.expect("dir24");
        println!(
            "| {size} | {dn:.1} | {ln:.1} | {:.2} | {:.2}x | {:.2}x | {:.0} ms | {} | {wrong} |",
            ln / dn,
            dn / d1,
            ln / l1,
            insert.as_secs_f64() * 1e3,
            usage.tbl8_groups_used
        );
    }
    s.dp.set_route_lookup(RouteLookup::Dir24).expect("switch");
    let dir24_mem: u64 = map_memory(2, DIR24_TBL24_BLOCKS)
        .into_iter()
        .chain(map_memory(2, TBL8_GROUPS))
        .sum();
    let trie_mem: Option<u64> = map_memory(11, MAX_ROUTES_V4).into_iter().max();
    println!(
        "\nFrames: UDP, 60 bytes, from h1 to {FRAMES} destinations drawn inside random prefixes \
         of the table; each run {REPEAT} times by the kernel per backend and round, the two \
         backends interleaved frame by frame, {ROUNDS} rounds, medians. Table: random prefixes, \
         uniform lengths /8-/32 (seed {SEED:#x}), via {GATEWAYS} gateways. Each frame repeats, \
         so these are cache-warm figures: the trie's cost grows with its depth, not yet with \
         cache and TLB misses."
    );

    println!("\n## Update cost at 1M routes (µs, median of 20 add/delete pairs)\n");
    let mut lpm = load(RouteLookup::Lpm);
    let t = Instant::now();
    lpm.insert(&table, 0);
    let lpm_load = t.elapsed();
    println!("| change | dir24 + trie: add | delete | trie alone: add | delete |");
    println!("|---|---:|---:|---:|---:|");
    // Prefixes in 198/8, which the random table leaves out (the lab's
    // /15 is inside, but nothing is sent while these are timed): each
    // change writes its whole range.
    for (p, label) in [
        (
            (u32::from(Ipv4Addr::new(198, 0, 0, 0)), 8),
            "/8 (65,536 TBL24 entries)",
        ),
        (
            (u32::from(Ipv4Addr::new(198, 77, 0, 0)), 16),
            "/16 (256 entries)",
        ),
        (
            (u32::from(Ipv4Addr::new(198, 77, 5, 0)), 24),
            "/24 (1 entry)",
        ),
        (
            (u32::from(Ipv4Addr::new(198, 77, 5, 16)), 28),
            "/28 (a new TBL8 group)",
        ),
    ] {
        let present = seen.contains(&p);
        let (da, dd) = s.update_cost(p, 20);
        let (la, ld) = lpm.update_cost(p, 20);
        println!(
            "| {label}{} | {da:.1} | {dd:.1} | {la:.1} | {ld:.1} |",
            if present {
                " (already in the table)"
            } else {
                ""
            }
        );
    }
    // The DIR-24-8 table's load time is the insert column above summed.
    println!("\n## Load and memory at 1M routes\n");
    println!(
        "- load 1M routes, trie alone: {:.2} s ({:.0}k routes/s); DIR-24-8 + trie: the sum of \
         the insert column above",
        lpm_load.as_secs_f64(),
        table.len() as f64 / lpm_load.as_secs_f64() / 1e3
    );
    println!(
        "- kernel memory (fdinfo memlock): LPM trie {}; DIR-24-8 TBL24 + TBL8 ({TBL8_GROUPS} \
         groups) {} (TBL24 alone {})",
        trie_mem.map_or("?".into(), mib),
        mib(dir24_mem),
        mib(map_memory(2, DIR24_TBL24_BLOCKS)
            .into_iter()
            .max()
            .unwrap_or(0))
    );
    let usage = s.dp.route_lookup().expect("stats").dir24.expect("dir24");
    println!("- DIR-24-8 fill: {usage:?}");
}

/// `bpf(2)` with a zeroed 128-byte attribute whose first words are `words`.
fn bpf(cmd: libc::c_long, words: &[u64]) -> libc::c_long {
    let mut attr = [0u64; 16];
    attr[..words.len()].copy_from_slice(words);
    // SAFETY: attr is a valid, zero-padded bpf_attr of its full size.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as libc::c_uint,
        )
    }
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_TYPE_ARRAY: u64 = 2;
const BPF_F_MMAPABLE: u64 = 1 << 10;

/// Why `TBL24`/`TBL8` are written through `mmap`: the three ways to write
/// the 65,536 `TBL24` entries a /8 rewrites, each on a fresh
/// `BPF_F_MMAPABLE` array of that many u32, timed over 20 rounds (median):
/// plain stores into the mapping, one `BPF_MAP_UPDATE_ELEM` per entry, and
/// one `BPF_MAP_UPDATE_BATCH` (kernel/bpf/syscall.c, generic_map_update_batch: a loop of
/// the same per-element update in the kernel).
fn write_paths() {
    const N: usize = 65_536;
    const ROUNDS: usize = 20;
    // map_type, key_size | value_size << 32, max_entries | map_flags << 32.
    let fd = bpf(
        BPF_MAP_CREATE,
        &[
            BPF_MAP_TYPE_ARRAY | (4 << 32),
            4 | ((N as u64) << 32),
            BPF_F_MMAPABLE,
        ],
    );
    if fd < 0 {
        println!(
            "\n(write paths skipped: BPF_MAP_CREATE failed: {})",
            std::io::Error::last_os_error()
        );
        return;
    }
    let fd = fd as i32;
    let len = N * 4;
    // SAFETY: a shared mapping of the array's value area (arraymap's
    // mmap covers max_entries * value_size, page rounded).
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap the array");
    let slots = base.cast::<std::sync::atomic::AtomicU32>();
    let keys: Vec<u32> = (0..N as u32).collect();
    let mut mmap_us = Vec::new();
    let mut elem_us = Vec::new();
    let mut batch_us = Vec::new();
    for round in 0..ROUNDS as u32 {
        let values: Vec<u32> = vec![round + 1; N];
        let t = Instant::now();
        for (i, v) in values.iter().enumerate() {
            // SAFETY: i < N, inside the mapping; atomic as the program
            // reads the entries concurrently.
            unsafe { &*slots.add(i) }.store(*v, std::sync::atomic::Ordering::Relaxed);
        }
        mmap_us.push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        for (k, v) in keys.iter().zip(&values) {
            let r = bpf(
                BPF_MAP_UPDATE_ELEM,
                &[fd as u64, k as *const u32 as u64, v as *const u32 as u64, 0],
            );
            assert_eq!(r, 0, "BPF_MAP_UPDATE_ELEM");
        }
        elem_us.push(t.elapsed().as_secs_f64() * 1e6);

        let t = Instant::now();
        // in_batch, out_batch, keys, values, count | map_fd << 32, elem_flags, flags.
        let r = bpf(
            BPF_MAP_UPDATE_BATCH,
            &[
                0,
                0,
                keys.as_ptr() as u64,
                values.as_ptr() as u64,
                N as u64 | ((fd as u64) << 32),
                0,
                0,
            ],
        );
        assert_eq!(
            r,
            0,
            "BPF_MAP_UPDATE_BATCH: {}",
            std::io::Error::last_os_error()
        );
        batch_us.push(t.elapsed().as_secs_f64() * 1e6);
        // Every path wrote what it was given.
        assert_eq!(
            unsafe { &*slots.add(N - 1) }.load(std::sync::atomic::Ordering::Relaxed),
            round + 1
        );
    }
    // SAFETY: the mapping made above, unmapped once.
    unsafe {
        libc::munmap(base, len);
        libc::close(fd);
    }
    let (m, e, b) = (
        median(&mut mmap_us),
        median(&mut elem_us),
        median(&mut batch_us),
    );
    println!("\n## Writing 65,536 TBL24 entries (a /8): mmap against bpf(2), median of {ROUNDS}\n");
    println!("| path | µs | ns/entry | × mmap |");
    println!("|---|---:|---:|---:|");
    for (name, us) in [
        ("stores into the BPF_F_MMAPABLE mapping", m),
        ("BPF_MAP_UPDATE_ELEM per entry", e),
        ("one BPF_MAP_UPDATE_BATCH", b),
    ] {
        println!(
            "| {name} | {us:.0} | {:.1} | {:.1} |",
            us * 1e3 / N as f64,
            us / m
        );
    }
}
