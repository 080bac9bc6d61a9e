//! No drift: whatever the kernel's routes and neighbours go through, the
//! daemon's view (`/api/v1/routes`, `/api/v1/neighbours`, so the XDP maps)
//! ends up equal to the kernel's. The oracle is the kernel itself
//! (`ip -j route/neigh/link show`), mapped the way the reconciler's
//! `target()` maps a route (controlplane/src/netlink/reconcile.rs).
//!
//! Two churn tests feed 10,000 seeded random changes (routes, neighbours,
//! link flaps) through one `ip -batch`: once into a daemon whose netlink
//! receive buffer is tiny, so it overruns, resubscribes, dumps and
//! reconciles by diff; once with the default buffer, so every change
//! arrives as an event. `XDPGATE_DRIFT_SEED=N` replays a run. Two small
//! tests walk through kernel behaviours the event path must follow: link
//! events the kernel answers without route notifications, and IPv6
//! multipath members added and removed one at a time.
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fs,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Command,
    str::FromStr as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use xdpgate::{
    fib::IpNet,
    lab::{Lab, LabGuard},
    netns,
};
use xdpgate_tests::rng::Rng;
use xdpgate_tests::support::*;
use xdpgate_tests::support::{api_items, route_of};

const IFACES: [&str; 3] = ["eth1", "eth2", "eth3"];
/// Churned route ranges; each test compares only inside these.
const RANGE_V4: &str = "198.18.128.0/17";
const RANGE_V6: &str = "2001:db8:8000::/33";
const GW_V4: [&str; 2] = ["198.18.2.2", "198.18.3.2"];
const GW_V6: [&str; 2] = ["2001:db8:2::2", "2001:db8:3::2"];
/// Churned neighbours: 198.18.{2,3}.{10..=250} on eth2 / eth3.
const NEIGH_HOSTS: std::ops::RangeInclusive<u8> = 10..=250;
/// Neighbour states with a usable MAC (as convert.rs `usable`).
const USABLE: [&str; 6] = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];
/// More members than this and the reconciler leaves a route to the kernel
/// (reconcile.rs uses fib::MAX_ECMP_MEMBERS, = dataplane-common MAX_ECMP).
const MAX_ECMP: usize = 16;

/// One route as the API shows it: type and the set of (gateway, dev).
type RouteView = (String, BTreeSet<(String, String)>);

/// The daemon's view and the kernel's, restricted to the churned ranges.
#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    routes: BTreeMap<IpNet, RouteView>,
    neighbours: BTreeMap<(IpAddr, String), String>,
}

fn net(s: &str) -> IpNet {
    IpNet::from_str(s).expect("static prefix")
}

/// A kernel `dst` ("198.18.130.0/24", a bare host address, "default").
fn parse_dst(dst: &str) -> Option<IpNet> {
    if dst.contains('/') {
        IpNet::from_str(dst).ok().map(|n| n.trunc())
    } else {
        dst.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

fn in_range(p: &IpNet) -> bool {
    [net(RANGE_V4), net(RANGE_V6)].iter().any(|r| r.contains(p))
}

fn churned_neighbour(addr: &IpAddr, dev: &str) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[..2] == [198, 18]
                && ((o[2] == 2 && dev == "eth2") || (o[2] == 3 && dev == "eth3"))
                && NEIGH_HOSTS.contains(&o[3])
        }
        IpAddr::V6(_) => false,
    }
}

#[track_caller]
fn ip_json(args: &[&str]) -> serde_json::Value {
    let out = netns::ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("ip {args:?}: JSON: {e}"))
}

/// What the daemon must show, computed from the kernel alone.
#[track_caller]
fn kernel_state(router: &str) -> State {
    // Managed links XDP may use: up and running (reconcile.rs link_usable).
    let links = ip_json(&["-n", router, "-j", "link", "show"]);
    let usable_links: BTreeSet<String> = links
        .as_array()
        .expect("links")
        .iter()
        .filter(|l| {
            let name = l["ifname"].as_str().unwrap_or("");
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            let running = matches!(l["operstate"].as_str(), Some("UP" | "UNKNOWN"));
            IFACES.contains(&name) && up && running
        })
        .map(|l| l["ifname"].as_str().expect("ifname").to_owned())
        .collect();

    let mut best: BTreeMap<IpNet, (u64, RouteView)> = BTreeMap::new();
    for family in ["-4", "-6"] {
        let routes = ip_json(&["-n", router, family, "-j", "route", "show", "table", "main"]);
        for r in routes.as_array().expect("routes") {
            let Some(prefix) = r["dst"].as_str().and_then(parse_dst) else {
                continue;
            };
            if !in_range(&prefix) {
                continue;
            }
            let metric = r["metric"].as_u64().unwrap_or(0);
            let view = expected_route(r, &usable_links);
            // The reconciler takes the lowest metric of the table.
            if best.get(&prefix).is_none_or(|(m, _)| metric < *m) {
                best.insert(prefix, (metric, view));
            }
        }
    }
    let routes = best.into_iter().map(|(p, (_, v))| (p, v)).collect();

    let mut neighbours = BTreeMap::new();
    for n in ip_json(&["-n", router, "-j", "neigh", "show"])
        .as_array()
        .expect("neighbours")
    {
        let (Some(addr), Some(dev), Some(mac)) = (
            n["dst"].as_str().and_then(|a| a.parse::<IpAddr>().ok()),
            n["dev"].as_str(),
            n["lladdr"].as_str(),
        ) else {
            continue;
        };
        let usable = n["state"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| USABLE.iter().any(|u| x == u)));
        if usable && churned_neighbour(&addr, dev) {
            neighbours.insert((addr, dev.to_owned()), mac.to_lowercase());
        }
    }
    State { routes, neighbours }
}

/// reconcile.rs `target()` for one route of the kernel's JSON: the type
/// as is, except that a unicast route keeps only next hops on managed,
/// usable links (none left: `kernel`; one: `unicast`; more: `multipath`).
fn expected_route(r: &serde_json::Value, usable_links: &BTreeSet<String>) -> RouteView {
    let kind = r["type"].as_str().unwrap_or("unicast");
    match kind {
        "unicast" => {}
        "blackhole" | "unreachable" | "prohibit" | "local" => {
            return (kind.to_owned(), BTreeSet::new());
        }
        _ => return ("kernel".to_owned(), BTreeSet::new()),
    }
    let hop = |h: &serde_json::Value| {
        (
            h["gateway"].as_str().unwrap_or("-").to_owned(),
            h["dev"].as_str().unwrap_or("").to_owned(),
        )
    };
    let hops: Vec<(String, String)> = match r["nexthops"].as_array() {
        Some(hs) => hs.iter().map(hop).collect(),
        None => vec![hop(r)],
    };
    let usable: BTreeSet<(String, String)> = hops
        .into_iter()
        .filter(|(_, dev)| usable_links.contains(dev))
        .collect();
    match usable.len() {
        0 => ("kernel".to_owned(), BTreeSet::new()),
        1 => ("unicast".to_owned(), usable),
        n if n > MAX_ECMP => ("kernel".to_owned(), BTreeSet::new()),
        _ => ("multipath".to_owned(), usable),
    }
}

#[track_caller]
fn api_state(api: SocketAddr) -> State {
    let mut routes = BTreeMap::new();
    for range in [RANGE_V4, RANGE_V6] {
        for r in api_items(api, &format!("/api/v1/routes?prefix={range}")) {
            let prefix = net(r["prefix"].as_str().expect("prefix"));
            routes.insert(prefix, route_of(&r));
        }
    }
    let mut neighbours = BTreeMap::new();
    for n in api_items(api, "/api/v1/neighbours") {
        let addr: IpAddr = n["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("address");
        let dev = n["dev"].as_str().expect("dev").to_owned();
        if churned_neighbour(&addr, &dev) {
            neighbours.insert((addr, dev), n["mac"].as_str().expect("mac").to_owned());
        }
    }
    State { routes, neighbours }
}

/// Lines naming every difference (kernel first, then daemon).
fn diff(kernel: &State, daemon: &State) -> Vec<String> {
    let mut out = Vec::new();
    let prefixes: BTreeSet<&IpNet> = kernel.routes.keys().chain(daemon.routes.keys()).collect();
    for p in prefixes {
        let (k, d) = (kernel.routes.get(p), daemon.routes.get(p));
        if k != d {
            out.push(format!("route {p}: kernel {k:?}, daemon {d:?}"));
        }
    }
    let keys: BTreeSet<&(IpAddr, String)> = kernel
        .neighbours
        .keys()
        .chain(daemon.neighbours.keys())
        .collect();
    for key in keys {
        let (k, d) = (kernel.neighbours.get(key), daemon.neighbours.get(key));
        if k != d {
            out.push(format!(
                "neighbour {} dev {}: kernel {k:?}, daemon {d:?}",
                key.0, key.1
            ));
        }
    }
    out
}

/// Wait (bounded) until the daemon's view equals the kernel's; returns the
/// compared state and how long it took, or the differences.
#[track_caller]
fn wait_no_drift(
    router: &str,
    api: SocketAddr,
    within: Duration,
) -> Result<(State, Duration), String> {
    let started = Instant::now();
    loop {
        let kernel = kernel_state(router);
        let daemon = api_state(api);
        let d = diff(&kernel, &daemon);
        if d.is_empty() {
            return Ok((kernel, started.elapsed()));
        }
        if started.elapsed() > within {
            return Err(format!(
                "after {within:?} the daemon still differs from the kernel in {} entries \
                 ({} routes, {} neighbours in the kernel); the first ones:\n{}",
                d.len(),
                kernel.routes.len(),
                kernel.neighbours.len(),
                d.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts in the daemon's log (the `Daemon` guard drains its stderr).
struct LogWatch {
    log: Arc<Mutex<String>>,
}

impl LogWatch {
    fn attach(daemon: &Daemon) -> LogWatch {
        LogWatch {
            log: daemon.log_handle(),
        }
    }

    fn text(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    fn count(&self, what: &str) -> u64 {
        self.text().matches(what).count() as u64
    }

    fn tail(&self) -> String {
        let log = self.text();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn snapshots(api: SocketAddr, log: &LogWatch) -> u64 {
    sync_status(api)["snapshots"]
        .as_u64()
        .unwrap_or_else(|| log.count("kernel state resynchronised"))
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A random route prefix inside `range`, of a length in `min..=max`.
fn random_prefix(rng: &mut Rng, range: &str, min: u8, max: u8) -> IpNet {
    let len = min + rng.below(u64::from(max - min) + 1) as u8;
    match net(range) {
        IpNet::V4(r) => {
            let host_bits =
                u32::from(r.network()) | (rng.next_u64() as u32 & !u32::from(r.netmask()));
            IpNet::new(IpAddr::from(host_bits.to_be_bytes()), len)
        }
        IpNet::V6(r) => {
            let bits = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            let addr = u128::from(r.network()) | (bits & !u128::from(r.netmask()));
            IpNet::new(IpAddr::from(addr.to_be_bytes()), len)
        }
    }
    .expect("valid length")
    .trunc()
}

/// One random route change for a prefix of `pool`.
fn route_change(rng: &mut Rng, pool: &[IpNet], gws: [&str; 2]) -> String {
    let p = rng.pick(pool);
    let gw = rng.pick(&gws);
    match rng.below(100) {
        0..35 => format!("route replace {p} via {gw}"),
        35..50 => format!("route add {p} via {gw}"),
        50..70 => format!("route del {p}"),
        70..82 => format!(
            "route replace {p} nexthop via {} dev eth2 nexthop via {} dev eth3",
            gws[0], gws[1]
        ),
        _ => format!(
            "route replace {} {p}",
            rng.pick(&["blackhole", "unreachable", "prohibit"])
        ),
    }
}

fn neighbour_change(rng: &mut Rng) -> String {
    let n = 2 + rng.below(2);
    let host = NEIGH_HOSTS.start() + rng.below(NEIGH_HOSTS.clone().count() as u64) as u8;
    let (addr, dev) = (format!("198.18.{n}.{host}"), format!("eth{n}"));
    if rng.below(100) < 70 {
        // Locally administered unicast.
        let b = rng.next_u64().to_be_bytes();
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4]
        );
        format!("neigh replace {addr} lladdr {mac} dev {dev} nud permanent")
    } else {
        // `neigh del` of an absent entry makes `ip` exit, -force or not
        // (ipneigh.c); a flush of one address deletes it the same way.
        format!("neigh flush to {addr} dev {dev} nud all")
    }
}

/// `count` random changes as `ip -batch` lines, with `flaps` down/up
/// cycles of eth3 spread over them (IPv6 drops the link's global address
/// on down, so each up puts it back). eth3 ends up.
fn churn(rng: &mut Rng, count: usize, flaps: usize) -> Vec<String> {
    let pool_v4: Vec<IpNet> = (0..400)
        .map(|_| random_prefix(rng, RANGE_V4, 17, 32))
        .collect();
    let pool_v6: Vec<IpNet> = (0..400)
        .map(|_| random_prefix(rng, RANGE_V6, 33, 128))
        .collect();
    let gap = count / (flaps + 1);
    let mut flap_at: VecDeque<usize> = (1..=flaps)
        .map(|i| i * gap + rng.below(gap as u64 / 4) as usize)
        .collect();
    let mut up_at: Option<usize> = None;
    let mut lines = Vec::with_capacity(count + 2);
    while lines.len() < count {
        let i = lines.len();
        if up_at.is_some_and(|u| i >= u) {
            up_at = None;
            lines.push("link set eth3 up".to_owned());
            lines.push("addr replace 2001:db8:3::1/64 dev eth3 nodad".to_owned());
            continue;
        }
        if up_at.is_none() && flap_at.front().is_some_and(|f| i >= *f) {
            flap_at.pop_front();
            up_at = Some(i + 20 + rng.below(180) as usize);
            lines.push("link set eth3 down".to_owned());
            continue;
        }
        lines.push(match rng.below(100) {
            0..34 => route_change(rng, &pool_v4, GW_V4),
            34..64 => route_change(rng, &pool_v6, GW_V6),
            _ => neighbour_change(rng),
        });
    }
    if up_at.is_some() {
        lines.push("link set eth3 up".to_owned());
        lines.push("addr replace 2001:db8:3::1/64 dev eth3 nodad".to_owned());
    }
    lines
}

/// Run `lines` in the router with `ip -batch -force` (a refused command
/// does not stop the rest). Returns how many the kernel refused. A last
/// line sets eth3's alias: proof that `ip` did not give up half way (some
/// failures make it exit despite -force).
#[track_caller]
fn batch(lab: &Lab, lines: &[String]) -> usize {
    let router = lab.router();
    let done = format!("xdpgate-drift-{}", lines.len());
    let file = TempFile(std::env::temp_dir().join(format!("{}-drift.batch", lab.prefix)));
    fs::write(
        &file.0,
        format!("{}\nlink set eth3 alias {done}\n", lines.join("\n")),
    )
    .expect("write batch file");
    let out = Command::new("ip")
        .args(["-n", &router, "-force", "-batch"])
        .arg(&file.0)
        .output()
        .expect("run ip -batch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let alias = ip_json(&["-n", &router, "-j", "link", "show", "eth3"])[0]["ifalias"].clone();
    assert_eq!(
        alias,
        done,
        "ip -batch stopped before the end; its last words: {}",
        stderr.lines().rev().take(4).collect::<Vec<_>>().join(" | ")
    );
    stderr
        .lines()
        .filter(|l| l.starts_with("Command failed"))
        .count()
}

/// The lab with h3 on eth3, kernel forwarding off, xdpgate on all three
/// router interfaces with `extra` flags. Fields drop in order.
struct Setup {
    daemon: Daemon,
    h3: ExtraHost,
    lab: LabGuard,
}

#[track_caller]
fn setup(extra: &[&str]) -> Setup {
    let lab = lab(false);
    let h3 = ExtraHost::add(&lab.lab);
    let mut args = vec!["--iface", "eth1", "--iface", "eth2", "--iface", "eth3"];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&lab.lab, &args);
    Setup { daemon, h3, lab }
}

/// What a churn run did.
struct Churned {
    snapshots: u64,
    log: LogWatch,
}

/// Feed `CHANGES` seeded random changes at once to a lab router whose
/// daemon runs with `extra` flags, wait (20 s at most) until the daemon's
/// view equals the kernel's, print a summary and return it; panic with the
/// differences, the seed and the daemon's log otherwise.
#[track_caller]
fn churn_run(what: &str, extra: &[&str]) -> Churned {
    const CHANGES: usize = 10_000;
    const FLAPS: usize = 6;
    let started = Instant::now();
    let seed = std::env::var("XDPGATE_DRIFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("{what}: seed {seed} (XDPGATE_DRIFT_SEED={seed} replays the run)");
    let mut rng = Rng(seed);
    let lines = churn(&mut rng, CHANGES, FLAPS);

    let s = setup(extra);
    let log = LogWatch::attach(&s.daemon);
    let router = s.lab.lab.router();
    let api = s.daemon.api;
    wait_until(Duration::from_secs(5), "the first snapshot", || {
        snapshots(api, &log) >= 1
    });
    let before = snapshots(api, &log);

    let fed = Instant::now();
    let refused = batch(&s.lab.lab, &lines);
    let feed_time = fed.elapsed();

    let result = wait_no_drift(&router, api, Duration::from_secs(20));
    let taken = snapshots(api, &log);
    let counts = format!(
        "{} changes ({refused} refused by the kernel) fed in {feed_time:?}; snapshots \
         {before} -> {taken} ({} overruns logged, {} changes refused by the dataplane)",
        lines.len(),
        log.count("overrun"),
        log.count("refused a change"),
    );
    let (state, settle) = result.unwrap_or_else(|d| {
        panic!(
            "{what} (seed {seed}): {counts}\n{d}\ndaemon log:\n{}",
            log.tail()
        )
    });
    let v4 = state.routes.keys().filter(|p| p.addr().is_ipv4()).count();
    eprintln!(
        "{what}: {counts}; equal after {settle:?}: {} routes ({v4} IPv4, {} IPv6) and {} \
         neighbours compared; {:?} in all",
        state.routes.len(),
        state.routes.len() - v4,
        state.neighbours.len(),
        started.elapsed()
    );
    // The churn must have left something to compare.
    assert!(
        state.routes.len() > 50,
        "only {} routes",
        state.routes.len()
    );
    assert!(
        state.neighbours.len() > 50,
        "only {} neighbours",
        state.neighbours.len()
    );
    Churned {
        snapshots: taken,
        log,
    }
}

#[test]
fn no_drift_after_10000_random_changes_with_netlink_overruns() {
    const RCVBUF: &str = "4096";
    let c = churn_run("drift with overruns", &["--netlink-rcvbuf", RCVBUF]);
    assert!(
        c.snapshots >= 2,
        "no resync happened: the churn never overran a {RCVBUF}-byte netlink buffer \
         (snapshots {}); daemon log:\n{}",
        c.snapshots,
        c.log.tail()
    );
}

/// The same churn with the default receive buffer, which holds the whole
/// burst: every change reaches the daemon as an event, no resync heals a
/// mistake.
#[test]
fn no_drift_after_10000_random_changes_without_overrun() {
    let c = churn_run("drift from events", &[]);
    assert_eq!(
        c.snapshots,
        1,
        "the default netlink buffer overran: this run did not test the event \
         path alone; daemon log:\n{}",
        c.log.tail()
    );
}

/// Link events the kernel answers without a route notification must still
/// be followed. Carrier loss keeps IPv4 routes through the link (marked
/// linkdown: XDP must leave them to the kernel); an administrative down
/// deletes every IPv4 route whose next hops all use the link and sends no
/// RTM_DELROUTE for them (net/ipv4/fib_frontend.c `fib_disable_ip` ->
/// `fib_flush`), so they must not come back when the link does. IPv6
/// announces its deletions; multipath routes keep their dead members.
#[test]
fn carrier_loss_and_admin_down_of_a_link_leave_no_drift() {
    let s = setup(&[]);
    let lab = &s.lab.lab;
    let (router, api) = (lab.router(), s.daemon.api);
    let single_v4 = net("198.18.200.0/24");
    let lines: Vec<String> = [
        "route replace 198.18.200.0/24 via 198.18.3.2",
        "route replace 198.18.201.0/24 nexthop via 198.18.2.2 dev eth2 \
         nexthop via 198.18.3.2 dev eth3",
        "route replace 2001:db8:8200::/48 via 2001:db8:3::2",
        "route replace 2001:db8:8201::/48 nexthop via 2001:db8:2::2 dev eth2 \
         nexthop via 2001:db8:3::2 dev eth3",
        "neigh replace 198.18.2.10 lladdr 02:00:00:00:02:0a dev eth2 nud permanent",
        "neigh replace 198.18.3.10 lladdr 02:00:00:00:03:0a dev eth3 nud permanent",
    ]
    .map(String::from)
    .into();
    assert_eq!(batch(lab, &lines), 0, "setting up routes and neighbours");
    let step = |what: &str| -> State {
        let (state, took) = wait_no_drift(&router, api, Duration::from_secs(10))
            .unwrap_or_else(|d| panic!("{what}: {d}"));
        eprintln!(
            "{what}: {} routes and {} neighbours equal after {took:?}",
            state.routes.len(),
            state.neighbours.len()
        );
        state
    };
    assert_eq!(step("installed").routes.len(), 4);

    // Carrier loss: the far end goes down, eth3 stays administratively up.
    netns::ip(["-n", &s.h3.ns, "link", "set", "eth0", "down"]).expect("h3 eth0 down");
    let st = step("eth3 without carrier");
    assert_eq!(
        st.routes.get(&single_v4).map(|r| r.0.as_str()),
        Some("kernel"),
        "the kernel keeps {single_v4} (linkdown): the daemon must leave it to the kernel"
    );
    netns::ip(["-n", &s.h3.ns, "link", "set", "eth0", "up"]).expect("h3 eth0 up");
    step("eth3 with carrier again");

    batch(lab, &["link set eth3 down".to_owned()]);
    let st = step("eth3 administratively down");
    assert!(
        !st.routes.contains_key(&single_v4),
        "the kernel was expected to flush {single_v4}"
    );
    batch(
        lab,
        &[
            "link set eth3 up".to_owned(),
            "addr replace 2001:db8:3::1/64 dev eth3 nodad".to_owned(),
        ],
    );
    step("eth3 up again");
}

/// IPv6 multipath routes change one member at a time (`ip -6 route append`,
/// `ip -6 route del PREFIX via GW dev DEV`): the kernel announces only the
/// member added or removed, yet the daemon must end up with the route the
/// kernel holds, and with none once the kernel has none.
#[test]
fn ipv6_multipath_members_added_and_removed_one_by_one_leave_no_drift() {
    let s = setup(&[]);
    let lab = &s.lab.lab;
    let (router, api) = (lab.router(), s.daemon.api);
    let step = |what: &str, lines: &[&str]| {
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        assert_eq!(
            batch(lab, &lines),
            0,
            "{what}: the kernel refused {lines:?}"
        );
        let (state, took) = wait_no_drift(&router, api, Duration::from_secs(10))
            .unwrap_or_else(|d| panic!("{what}: {d}"));
        eprintln!("{what}: {:?} equal after {took:?}", state.routes);
    };
    step(
        "single route",
        &["route add 2001:db8:8300::/48 via 2001:db8:2::2 dev eth2"],
    );
    step(
        "member appended",
        &["route append 2001:db8:8300::/48 via 2001:db8:3::2 dev eth3"],
    );
    step(
        "member removed",
        &["route del 2001:db8:8300::/48 via 2001:db8:3::2 dev eth3"],
    );
    step(
        "multipath again, then one member removed",
        &[
            "route replace 2001:db8:8300::/48 nexthop via 2001:db8:2::2 dev eth2 \
             nexthop via 2001:db8:3::2 dev eth3",
            "route del 2001:db8:8300::/48 via 2001:db8:2::2 dev eth2",
        ],
    );
    step("route deleted", &["route del 2001:db8:8300::/48"]);
}
