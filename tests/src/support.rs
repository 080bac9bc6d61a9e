//! Lab-test support: unique names, the daemon as a child process that is
//! killed on drop, and small traffic helpers. Tests panic with a reason
//! (`expect`), they do not return errors.
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
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
pub struct Daemon {
    pub child: Child,
    pub api: SocketAddr,
    pub db: PathBuf,
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

    /// Start without waiting (for tests of failing starts).
    pub fn spawn(lab: &Lab, extra: &[&str]) -> Daemon {
        let api = free_port();
        let db = std::env::temp_dir().join(format!("{}.db", lab.prefix));
        let mut cmd = Command::new(xdpgate_bin());
        cmd.arg("run")
            .args(["--netns", &lab.router()])
            .args(["--api", &api.to_string()])
            .arg("--db")
            .arg(&db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !extra.contains(&"--iface") {
            for i in ROUTER_IFACES {
                cmd.args(["--iface", i]);
            }
        }
        let child = cmd.spawn().expect("spawn xdpgate");
        Daemon { child, api, db }
    }

    #[track_caller]
    fn wait_healthy(mut self) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client::get_json(self.api, "/healthz").is_ok() {
                return self;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = read_stderr(&mut self.child);
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
                let err = read_stderr(&mut self.child);
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
        let _ = std::fs::remove_file(&self.db);
        for suffix in ["-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

fn read_stderr(child: &mut Child) -> String {
    use std::io::Read as _;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
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
