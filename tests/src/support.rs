//! Lab-test support: unique names, the daemon as a child process that is
//! killed on drop, and small traffic helpers. Tests panic with a reason
//! (`expect`), they do not return errors.
use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use xdpgate::{
    client,
    lab::{Lab, LabGuard, LabOptions, ROUTER_IFACES},
    netns,
};

/// A lab prefix no other test (or test process) uses: `xt<pid><n>`.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "xt{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The xdpgate binary next to this test executable (`scripts/test` builds
/// it before running the tests).
#[track_caller]
pub fn xdpgate_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin = dir.join("xdpgate");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A loopback port free right now.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// A lab without a daemon, torn down on drop.
#[track_caller]
pub fn lab(kernel_forwarding: bool) -> LabGuard {
    LabGuard::up(
        Lab::new(unique_prefix()),
        &LabOptions {
            kernel_forwarding,
            daemon: None,
        },
    )
    .expect("lab up")
}

/// `xdpgate run` attached to the lab router's interfaces; SIGKILLed on drop.
/// Its stderr (the log) is drained by a thread into `log`, so a chatty
/// daemon can never block on a full pipe.
pub struct Daemon {
    pub child: Child,
    pub api: SocketAddr,
    pub db: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    drain: Option<std::thread::JoinHandle<()>>,
    /// Leave the database behind on drop (a restart test reuses it).
    keep_db: bool,
}

impl Daemon {
    /// Start the daemon on `lab` with extra flags and wait until it answers.
    #[track_caller]
    pub fn start(lab: &Lab, extra: &[&str]) -> Daemon {
        let d = Self::spawn(lab, extra);
        d.wait_healthy()
    }

    /// Start with the lab's static forwarding state: connected and local
    /// routes, and (if `neighbours`) the hosts as neighbours.
    #[track_caller]
    pub fn start_forwarding(lab: &Lab, neighbours: bool, extra: &[&str]) -> Daemon {
        let mut args = lab.static_fib_args(neighbours).expect("lab FIB flags");
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start(lab, &args)
    }

    /// [`Daemon::start_forwarding`] with another build of xdpgate (the
    /// upgrade test's).
    #[track_caller]
    pub fn start_forwarding_bin(lab: &Lab, bin: &Path, extra: &[&str]) -> Daemon {
        let mut args = lab.static_fib_args(true).expect("lab FIB flags");
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_bin(lab, bin, &args).wait_healthy()
    }

    /// [`Daemon::start_forwarding`] with environment variables set for the
    /// daemon alone (XDPGATE_IO_BACKEND, ...).
    #[track_caller]
    pub fn start_forwarding_env(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut args = lab.static_fib_args(true).expect("lab FIB flags");
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_with(lab, &xdpgate_bin(), &args, env).wait_healthy()
    }

    /// Start without waiting (for tests of failing starts).
    pub fn spawn(lab: &Lab, extra: &[&str]) -> Daemon {
        Self::spawn_bin(lab, &xdpgate_bin(), extra)
    }

    fn spawn_bin(lab: &Lab, bin: &Path, extra: &[&str]) -> Daemon {
        Self::spawn_with(lab, bin, extra, &[])
    }

    fn spawn_with(lab: &Lab, bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let api = free_port();
        let db = std::env::temp_dir().join(format!("{}.db", lab.prefix));
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .args(["--netns", &lab.router()])
            .args(["--api", &api.to_string()])
            .arg("--db")
            .arg(&db)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !extra.contains(&"--iface") {
            for i in ROUTER_IFACES {
                cmd.args(["--iface", i]);
            }
        }
        let mut child = cmd.spawn().expect("spawn xdpgate");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let drain = child.stderr.take().map(|err| {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().expect("log lock");
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        });
        Daemon {
            child,
            api,
            db,
            log,
            drain,
            keep_db: false,
        }
    }

    /// A handle on the log that outlives the guard.
    pub fn log_handle(&self) -> std::sync::Arc<std::sync::Mutex<String>> {
        self.log.clone()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The whole log once the process has exited (waits for the drain).
    fn final_log(&mut self) -> String {
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        self.log()
    }

    #[track_caller]
    fn wait_healthy(mut self) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client::get_json(self.api, "/healthz").is_ok() {
                return self;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = self.final_log();
                panic!("xdpgate exited with {status} before answering:\n{err}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("xdpgate did not answer /healthz within 20 s");
    }

    /// Wait for the process to exit by itself; returns status and stderr.
    #[track_caller]
    pub fn wait_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = self.final_log();
                return (status, err);
            }
            assert!(
                Instant::now() < deadline,
                "xdpgate did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send `sig` and wait for the exit.
    #[track_caller]
    /// [`Daemon::signal`], keeping the database for the next daemon of
    /// the same lab (which opens the same path).
    pub fn signal_keep_db(mut self, sig: i32) -> (ExitStatus, String) {
        self.keep_db = true;
        self.signal(sig)
    }

    pub fn signal(self, sig: i32) -> (ExitStatus, String) {
        // SAFETY: a signal to our own child.
        unsafe { libc_kill(self.child.id() as i32, sig) };
        self.wait_exit(Duration::from_secs(10))
    }

    #[track_caller]
    pub fn stats(&self) -> serde_json::Value {
        client::get_json(self.api, "/api/v1/stats").expect("GET /api/v1/stats")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.keep_db {
            return;
        }
        let _ = std::fs::remove_file(&self.db);
        for suffix in ["-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGTERM: i32 = 15;
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;

/// `ping -c count` from `ns`; true if every echo was answered.
pub fn ping(ns: &str, dst: &str, count: u32) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-q", "-c"])
        .arg(count.to_string())
        .args(["-i", "0.2", "-W", "1", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The XDP program id on `dev` in `ns`, if one is attached.
#[track_caller]
pub fn xdp_on(ns: &str, dev: &str) -> Option<u64> {
    xdpgate::lab::xdp_prog_id(ns, dev).expect("ip link show")
}

/// Packet counter `kind`/`name` (e.g. "reasons"/"arp") of interface `iface`
/// in an `/api/v1/stats` answer.
pub fn counter(stats: &serde_json::Value, iface: &str, kind: &str, name: &str) -> u64 {
    stats["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == iface)
        .and_then(|i| i["counters"][kind][name]["packets"].as_u64())
        .unwrap_or(0)
}

/// Whether namespace `name` exists.
pub fn ns_exists(name: &str) -> bool {
    netns::exists(name)
}

/// A third host `{prefix}-h3` wired to the lab router's `eth3`
/// (198.18.3.1/24 and 2001:db8:3::1/64 on the router, .2 / ::2 on the
/// host), with a default route back through the router. Removed on drop.
/// Frames redirected into its veth are delivered thanks to GRO on the host
/// side (a veth needs XDP or GRO on the peer to take redirected frames).
pub struct ExtraHost {
    pub ns: String,
    router: String,
}

pub const H3_V4: &str = "198.18.3.2";
pub const H3_V6: &str = "2001:db8:3::2";

impl ExtraHost {
    #[track_caller]
    pub fn add(lab: &Lab) -> ExtraHost {
        let ns = format!("{}-h3", lab.prefix);
        let r = lab.router();
        let host = ExtraHost {
            ns: ns.clone(),
            router: r.clone(),
        };
        let _ = netns::delete(&ns);
        netns::add(&ns).expect("add h3");
        for (n, k) in [(&ns, "default"), (&ns, "all")] {
            netns::sysctl(n, &format!("net.ipv6.conf.{k}.accept_dad"), "0").expect("dad");
        }
        let ip = |args: &[&str]| {
            netns::ip(args).unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
        };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "link", "add", "eth3", "netns", &r, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &r, "addr", "add", "198.18.3.1/24", "dev", "eth3"]);
        ip(&[
            "-n",
            &r,
            "-6",
            "addr",
            "add",
            "2001:db8:3::1/64",
            "dev",
            "eth3",
            "nodad",
        ]);
        ip(&["-n", &ns, "addr", "add", "198.18.3.2/24", "dev", "eth0"]);
        ip(&[
            "-n",
            &ns,
            "-6",
            "addr",
            "add",
            "2001:db8:3::2/64",
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", &r, "link", "set", "eth3", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", "198.18.3.1"]);
        ip(&[
            "-n",
            &ns,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:3::1",
        ]);
        netns::exec(&ns, ["ethtool", "-K", "eth0", "tx", "off", "gro", "on"]).expect("ethtool");
        host
    }

    /// Give the host an extra address on its loopback (a service address
    /// the tests route to).
    #[track_caller]
    pub fn add_lo_address(ns: &str, addr: &str) {
        netns::ip(["-n", ns, "addr", "add", addr, "dev", "lo"]).expect("lo address");
    }
}

impl Drop for ExtraHost {
    fn drop(&mut self) {
        let _ = netns::ip(["-n", &self.router, "link", "del", "eth3"]);
        let _ = netns::delete(&self.ns);
    }
}

/// The kernel sync status from `/healthz`.
pub fn sync_status(api: SocketAddr) -> serde_json::Value {
    client::get_json(api, "/healthz").expect("healthz")["kernel_sync"].clone()
}

/// Poll `f` every 50 ms until it returns true or `within` passes.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every item of a paged API list (`limit` 1000, following `next_cursor`).
#[track_caller]
pub fn api_items(api: SocketAddr, path: &str) -> Vec<serde_json::Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
            None => format!("{path}{sep}limit=1000"),
        };
        let page = client::get_json(api, &url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: more than 1000 pages");
}

/// A route item of `/api/v1/routes` as (type, set of (gateway or "-", dev)).
pub fn route_of(r: &serde_json::Value) -> (String, std::collections::BTreeSet<(String, String)>) {
    let hops = r["nexthops"]
        .as_array()
        .expect("nexthops")
        .iter()
        .map(|h| {
            (
                h["gateway"].as_str().unwrap_or("-").to_owned(),
                h["dev"].as_str().expect("dev").to_owned(),
            )
        })
        .collect();
    (r["type"].as_str().expect("type").to_owned(), hops)
}
