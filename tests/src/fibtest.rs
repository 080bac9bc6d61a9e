//! Forwarding-test support: the loaded program with the lab router's ports
//! managed, FIB shorthands that panic with the reason, one test run as if
//! received on a named port, and every counter slot read at once.
//!
//! Everything here runs on a thread inside the router namespace
//! ([`in_router`]): test runs with an ingress ifindex, the `PORTS` devmap
//! and [`ifinfo::read`] all resolve ifindexes in the calling thread's
//! namespace.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    panic,
    process::{Command, Stdio},
};

use dataplane_common::Reason;
use xdpgate::{
    dataplane::{Count, Dataplane, DataplaneError, LoadOptions},
    fib::{Iface, IpNet, NextHopSpec, RouteTarget, parse_prefix},
    ifinfo, netns,
    testrun::{self, Outcome},
};

use crate::{frames::Mac, support};

/// ifindexes of synthetic interfaces start here, far above anything the
/// kernel hands out in a fresh namespace (it counts up from 1).
pub const SYNTHETIC_IFINDEX: u32 = 100_000;

/// Run `f` on a thread inside `ns`; a panic in `f` is re-raised here with
/// its own message (not as a bare "the thread panicked").
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            netns::enter(ns).expect("enter the router namespace");
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(payload) => panic::resume_unwind(payload),
        }
    })
}

/// Build a lab without kernel forwarding, run `before(router namespace)`
/// from outside it (e.g. `ip -n NS link set eth2 mtu 1280`), then `f`
/// inside the router namespace. The lab is torn down afterwards, also when
/// `f` panics.
#[track_caller]
pub fn in_router<T: Send>(before: impl FnOnce(&str), f: impl FnOnce(&str) -> T + Send) -> T {
    let lab = support::lab(false);
    let ns = lab.lab.router();
    before(&ns);
    in_ns(&ns, || f(&ns))
}

/// `ip -n NS ARGS...`, panicking with ip's stderr on failure.
#[track_caller]
pub fn ip_in(ns: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (is iproute2 installed?)");
    assert!(
        out.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[track_caller]
pub fn prefix(s: &str) -> IpNet {
    parse_prefix(s).unwrap_or_else(|e| panic!("prefix {s:?}: {e}"))
}

#[track_caller]
pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("address {s:?}: {e}"))
}

/// Non-zero reason counters of every slot: (slot, reason index) -> count.
/// Reason is not `Ord`, hence the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub BTreeMap<(u32, u32), Count>);

impl Counters {
    /// What moved from `before` to `self`: (slot, reason, difference).
    pub fn since(&self, before: &Counters) -> Vec<(u32, Reason, Count)> {
        let mut moved = Vec::new();
        for (&(slot, r), &after) in &self.0 {
            let was = before.0.get(&(slot, r)).copied().unwrap_or_default();
            if was != after {
                moved.push((
                    slot,
                    Reason::ALL[r as usize],
                    Count {
                        packets: after.packets - was.packets,
                        bytes: after.bytes - was.bytes,
                    },
                ));
            }
        }
        moved
    }

    /// Packets counted under `reason` in `slot`.
    pub fn packets(&self, slot: u32, reason: Reason) -> u64 {
        self.0.get(&(slot, reason as u32)).map_or(0, |c| c.packets)
    }
}

/// The loaded (not attached) program and the interfaces it manages, by name.
pub struct Router {
    pub dp: Dataplane,
    ifaces: BTreeMap<String, Iface>,
}

impl Router {
    /// Load the program and manage `names`, interfaces of the calling
    /// thread's namespace, as their kernel state says (MAC, MTU, up).
    #[track_caller]
    pub fn new(names: &[&str]) -> Router {
        Self::with_options(names, LoadOptions::default())
    }

    /// [`Router::new`], the object loaded with `opts`.
    #[track_caller]
    pub fn with_options(names: &[&str], opts: LoadOptions) -> Router {
        let dp = Dataplane::load_with(opts).expect("load the XDP object (needs root or CAP_BPF)");
        let mut r = Router {
            dp,
            ifaces: BTreeMap::new(),
        };
        for name in names {
            let iface = ifinfo::read(name).unwrap_or_else(|e| panic!("read {name}: {e}"));
            r.manage(iface);
        }
        r
    }

    /// Manage `iface` as given (the caller may have edited it).
    #[track_caller]
    pub fn manage(&mut self, iface: Iface) -> Iface {
        let name = iface.name.clone();
        self.dp
            .manage(iface.clone())
            .unwrap_or_else(|e| panic!("manage {name}: {e}"));
        self.ifaces.insert(name, iface.clone());
        iface
    }

    /// Manage a VLAN sub-interface `PARENT.VID` that the kernel does not
    /// have: this kernel is built without 802.1Q devices
    /// (CONFIG_VLAN_8021Q), and XDP needs only the Fib's view of one. Its
    /// ifindex is synthetic; frames still leave by the parent's real port.
    #[track_caller]
    pub fn vlan(&mut self, parent: &str, vid: u32, mac: Mac) -> Iface {
        let port = self.iface(parent).clone();
        self.manage(Iface {
            ifindex: SYNTHETIC_IFINDEX + vid,
            name: format!("{parent}.{vid}"),
            mac,
            mtu: port.mtu,
            vlan_id: vid,
            parent_ifindex: port.ifindex,
            up: true,
        })
    }

    #[track_caller]
    pub fn iface(&self, name: &str) -> &Iface {
        self.ifaces
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not managed in this test"))
    }

    #[track_caller]
    pub fn ifindex(&self, name: &str) -> u32 {
        self.iface(name).ifindex
    }

    /// Compile `rs` with the names of interfaces `ports`, write it into the
    /// inactive generation and flip to it, as a commit does; the generation
    /// now active.
    #[track_caller]
    pub fn install_ruleset(
        &mut self,
        rs: &xdpgate::firewall::rule::Ruleset,
        ports: &[&str],
    ) -> u32 {
        let names: Vec<(String, u32)> = ports
            .iter()
            .map(|n| (n.to_string(), self.ifindex(n)))
            .collect();
        let resolve = |n: &str| names.iter().find(|(m, _)| m == n).map(|(_, i)| *i);
        let fw = self.dp.firewall_mut();
        let generation = 1 - fw.active_generation().expect("active generation");
        let compiled = xdpgate::firewall::compile::compile(
            rs,
            &resolve,
            fw.bitmap_base(generation),
            fw.bitmaps_per_generation(),
        )
        .unwrap_or_else(|e| panic!("compile: {e:?}"));
        fw.install(generation, &compiled).expect("install");
        fw.flip(generation).expect("flip");
        assert_eq!(fw.active_generation().expect("active"), generation);
        generation
    }

    #[track_caller]
    pub fn mac(&self, name: &str) -> Mac {
        self.iface(name).mac
    }

    /// Counter slot of a managed interface.
    #[track_caller]
    pub fn slot(&self, name: &str) -> u32 {
        let ifindex = self.ifindex(name);
        self.dp
            .fib()
            .slot(ifindex)
            .unwrap_or_else(|| panic!("{name} has no counter slot"))
    }

    /// A next hop: `gateway` (None: connected) on `dev`.
    #[track_caller]
    pub fn hop(&self, gateway: Option<&str>, dev: &str) -> NextHopSpec {
        NextHopSpec {
            gateway: gateway.map(addr),
            ifindex: self.ifindex(dev),
        }
    }

    /// Set a route; the Fib's or the map's error, if any.
    pub fn try_route(&mut self, net: IpNet, target: RouteTarget) -> Result<(), DataplaneError> {
        self.dp.update(|fib| fib.set_route(net, target))
    }

    #[track_caller]
    pub fn route(&mut self, net: &str, target: RouteTarget) {
        let p = prefix(net);
        self.try_route(p, target.clone())
            .unwrap_or_else(|e| panic!("route {net} {target}: {e}"));
    }

    /// `NET via GATEWAY dev DEV`.
    #[track_caller]
    pub fn via(&mut self, net: &str, gateway: &str, dev: &str) {
        let nexthop = self.hop(Some(gateway), dev);
        self.route(net, RouteTarget::Unicast { nexthop });
    }

    /// `NET dev DEV`: a connected route.
    #[track_caller]
    pub fn connected(&mut self, net: &str, dev: &str) {
        let nexthop = self.hop(None, dev);
        self.route(net, RouteTarget::Unicast { nexthop });
    }

    /// `NET nexthop via GW1 dev DEV1 nexthop via GW2 dev DEV2 ...`
    #[track_caller]
    pub fn multipath(&mut self, net: &str, hops: &[(&str, &str)]) {
        let nexthops = hops.iter().map(|(g, d)| self.hop(Some(g), d)).collect();
        self.route(net, RouteTarget::Multipath { nexthops });
    }

    #[track_caller]
    pub fn unroute(&mut self, net: &str) {
        let p = prefix(net);
        self.dp
            .update(|fib| fib.del_route(p))
            .unwrap_or_else(|e| panic!("delete route {net}: {e}"));
    }

    /// Neighbour `address` on `dev` is at `mac`.
    #[track_caller]
    pub fn neigh(&mut self, dev: &str, address: &str, mac: Mac) {
        let (ifindex, a) = (self.ifindex(dev), addr(address));
        self.dp
            .update(|fib| fib.set_neighbour(ifindex, a, mac))
            .unwrap_or_else(|e| panic!("neighbour {address} on {dev}: {e}"));
    }

    /// Run `frame` once as if it arrived on port `ingress`.
    #[track_caller]
    pub fn run(&mut self, ingress: &str, frame: &[u8]) -> Outcome {
        let ifindex = self.ifindex(ingress);
        let prog = self.dp.main_program().expect("the main program");
        testrun::run_on(prog, frame, ifindex)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on {ingress}: {e}"))
    }

    /// Reason counters of every managed slot and of slot 0 (frames from
    /// unregistered interfaces), zeros left out.
    #[track_caller]
    pub fn counters(&self) -> Counters {
        let mut slots: Vec<u32> = self.dp.fib().ifaces().map(|(_, s)| s).collect();
        slots.push(0);
        let mut out = Counters::default();
        for slot in slots {
            let c = self.dp.counters().slot(slot).expect("read counters");
            for r in Reason::ALL {
                let n = c.reason(r);
                if n.packets != 0 || n.bytes != 0 {
                    out.0.insert((slot, r as u32), n);
                }
            }
        }
        out
    }
}
