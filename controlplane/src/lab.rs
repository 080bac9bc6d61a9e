//! The namespace lab: the appliance's embedded default and the integration
//! tests' topology.
//!
//! ```text
//!  {p}-h1                      {p}-r                        {p}-h2
//!  eth0 198.18.1.2/24  ── eth1 198.18.1.1/24  eth2 198.18.2.1/24 ── eth0 198.18.2.2/24
//!       2001:db8:1::2/64      2001:db8:1::1/64  2001:db8:2::1/64      2001:db8:2::2/64
//! ```
//!
//! xdpgate runs attached to eth1 and eth2 of the router; its API listens in
//! the namespace `lab up` was run from. Every step is idempotent.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    bpffs, client,
    dataplane::{self, AttachMode, PassProgram},
    netns::{self, NetnsError},
};

/// Router-side interfaces, the ones xdpgate manages.
pub const ROUTER_IFACES: [&str; 2] = ["eth1", "eth2"];
/// Host-side interface name in both host namespaces.
pub const HOST_IFACE: &str = "eth0";

pub const H1_V4: &str = "198.18.1.2";
pub const H2_V4: &str = "198.18.2.2";
pub const R1_V4: &str = "198.18.1.1";
pub const R2_V4: &str = "198.18.2.1";
pub const H1_V6: &str = "2001:db8:1::2";
pub const H2_V6: &str = "2001:db8:2::2";
pub const R1_V6: &str = "2001:db8:1::1";
pub const R2_V6: &str = "2001:db8:2::1";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (it creates namespaces and loads BPF)")]
    NotRoot,
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Bpffs(#[from] bpffs::BpffsError),
    #[error(transparent)]
    Pass(#[from] dataplane::PassAttachError),
    #[error(transparent)]
    Dataplane(#[from] dataplane::DataplaneError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon did not become healthy within {secs} s; last lines of {log}:\n{tail}")]
    DaemonStart {
        secs: u64,
        log: String,
        tail: String,
    },
    #[error("lab teardown had errors: {0:?}")]
    Teardown(Vec<String>),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// What `lab up` builds.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Kernel forwarding in the router namespace. On is production: XDP
    /// carries the fast path, the kernel what is punted.
    pub kernel_forwarding: bool,
    /// Start the daemon (the tests start their own).
    pub daemon: Option<DaemonOptions>,
}

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The xdpgate binary to run.
    pub exe: PathBuf,
    /// Where the API listens, in the namespace `lab up` runs in.
    pub api: SocketAddr,
    pub xdp_mode: AttachMode,
}

/// One lab, named by its prefix (`xg` for the default one).
#[derive(Debug, Clone)]
pub struct Lab {
    pub prefix: String,
}

impl Lab {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn h1(&self) -> String {
        format!("{}-h1", self.prefix)
    }
    pub fn h2(&self) -> String {
        format!("{}-h2", self.prefix)
    }
    pub fn router(&self) -> String {
        format!("{}-r", self.prefix)
    }
    pub fn namespaces(&self) -> [String; 3] {
        [self.h1(), self.router(), self.h2()]
    }

    /// Runtime files: pid and log of the lab's daemon.
    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from("/run/xdpgate/lab").join(&self.prefix)
    }
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("xdpgate.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.run_dir().join("xdpgate.log")
    }
    pub fn db_file(&self) -> PathBuf {
        PathBuf::from("/var/lib/xdpgate/lab").join(format!("{}.db", self.prefix))
    }
    /// Pinned links of the host-side pass programs.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from(bpffs::ROOT)
            .join("xdpgate/lab")
            .join(&self.prefix)
    }

    /// Build the topology and (optionally) start the daemon. Idempotent.
    pub fn up(&self, opts: &LabOptions) -> Result<(), LabError> {
        if !bpffs::is_privileged() {
            return Err(LabError::NotRoot);
        }
        bpffs::ensure_mounted()?;
        for ns in self.namespaces() {
            netns::add(&ns)?;
            netns::ip(["-n", &ns, "link", "set", "lo", "up"])?;
            // No duplicate address detection: link-local addresses would stay
            // tentative for a second or more after link-up, and ND from a
            // tentative address fails. Set before the veths exist, so they
            // inherit it.
            netns::sysctl(&ns, "net.ipv6.conf.default.accept_dad", "0")?;
            netns::sysctl(&ns, "net.ipv6.conf.all.accept_dad", "0")?;
        }
        self.wire(&self.h1(), "eth1", R1_V4, H1_V4, R1_V6, H1_V6)?;
        self.wire(&self.h2(), "eth2", R2_V4, H2_V4, R2_V6, H2_V6)?;
        self.set_kernel_forwarding(opts.kernel_forwarding)?;
        self.attach_host_pass_programs()?;
        if let Some(d) = &opts.daemon {
            self.start_daemon(d)?;
        }
        Ok(())
    }

    /// One host <-> router veth with addresses and the host's default routes.
    fn wire(
        &self,
        host: &str,
        r_if: &str,
        r_v4: &str,
        h_v4: &str,
        r_v6: &str,
        h_v6: &str,
    ) -> Result<(), LabError> {
        let r = self.router();
        let present = netns::ip(["-n", &r, "link", "show", r_if]).is_ok();
        if !present {
            netns::ip([
                "link", "add", r_if, "netns", &r, "type", "veth", "peer", "name", HOST_IFACE,
                "netns", host,
            ])?;
        }
        // `replace` and `nodad` keep this idempotent and usable at once
        // (no duplicate address detection delay on IPv6).
        for (ns, dev, addr) in [
            (r.as_str(), r_if, format!("{r_v4}/24")),
            (host, HOST_IFACE, format!("{h_v4}/24")),
        ] {
            netns::ip(["-n", ns, "addr", "replace", &addr, "dev", dev])?;
        }
        for (ns, dev, addr) in [
            (r.as_str(), r_if, format!("{r_v6}/64")),
            (host, HOST_IFACE, format!("{h_v6}/64")),
        ] {
            netns::ip([
                "-n", ns, "-6", "addr", "replace", &addr, "dev", dev, "nodad",
            ])?;
        }
        netns::ip(["-n", &r, "link", "set", r_if, "up"])?;
        netns::ip(["-n", host, "link", "set", HOST_IFACE, "up"])?;
        netns::ip(["-n", host, "route", "replace", "default", "via", r_v4])?;
        netns::ip(["-n", host, "-6", "route", "replace", "default", "via", r_v6])?;
        // CHECKSUM_PARTIAL does not survive an XDP redirect between veths:
        // without this, UDP/TCP arrive with bad checksums while ICMP works.
        netns::exec(host, ["ethtool", "-K", HOST_IFACE, "tx", "off"])?;
        Ok(())
    }

    pub fn set_kernel_forwarding(&self, on: bool) -> Result<(), LabError> {
        let v = if on { "1" } else { "0" };
        let r = self.router();
        netns::sysctl(&r, "net.ipv4.ip_forward", v)?;
        netns::sysctl(&r, "net.ipv6.conf.all.forwarding", v)?;
        Ok(())
    }

    pub fn kernel_forwarding(&self) -> Result<bool, LabError> {
        Ok(netns::read_sysctl(&self.router(), "net.ipv4.ip_forward")? == "1")
    }

    /// A veth delivers frames redirected into it only if its peer runs XDP
    /// (drivers/net/veth.c); the hosts' eth0 get the pass-only program,
    /// pinned so it outlives this process.
    fn attach_host_pass_programs(&self) -> Result<(), LabError> {
        let dir = self.pin_dir();
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let mut pass: Option<PassProgram> = None;
        for host in [self.h1(), self.h2()] {
            if xdp_prog_id(&host, HOST_IFACE)?.is_some() {
                continue;
            }
            let pin = dir.join(format!("{host}-{HOST_IFACE}"));
            let _ = std::fs::remove_file(&pin);
            let prog = match &mut pass {
                Some(p) => p,
                None => pass.insert(PassProgram::load()?),
            };
            let ifindex = netns::in_netns(&host, || dataplane::ifindex(HOST_IFACE))??;
            // Attaching takes the namespace of the ifindex from the calling
            // thread, so attach from inside the host namespace.
            netns::in_netns(&host, || prog.attach_pinned(HOST_IFACE, ifindex, &pin))??;
        }
        Ok(())
    }

    /// MAC of a host's `eth0`.
    pub fn host_mac(&self, host: &str) -> Result<String, LabError> {
        let out = netns::ip(["-n", host, "-j", "link", "show", HOST_IFACE])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["address"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LabError::Io {
                what: format!("reading the MAC of {host}/{HOST_IFACE}"),
                source: std::io::Error::other("no address in `ip -j link` output"),
            })
    }

    /// `--route` / `--neigh` flags that give a daemon the lab's forwarding
    /// state by hand (the default lab learns it from the kernel instead):
    /// connected routes, the router's own addresses as local routes, and (if
    /// `neighbours`) the hosts' neighbour entries.
    pub fn static_fib_args(&self, neighbours: bool) -> Result<Vec<String>, LabError> {
        let mut args = Vec::new();
        let mut flag = |k: &str, v: String| {
            args.push(k.to_owned());
            args.push(v);
        };
        for (dev, net4, net6, r4, r6) in [
            ("eth1", "198.18.1.0/24", "2001:db8:1::/64", R1_V4, R1_V6),
            ("eth2", "198.18.2.0/24", "2001:db8:2::/64", R2_V4, R2_V6),
        ] {
            flag("--route", format!("{net4} dev {dev}"));
            flag("--route", format!("{net6} dev {dev}"));
            flag("--route", format!("local {r4}"));
            flag("--route", format!("local {r6}"));
        }
        if neighbours {
            for (host, dev, v4, v6) in [
                (self.h1(), "eth1", H1_V4, H1_V6),
                (self.h2(), "eth2", H2_V4, H2_V6),
            ] {
                let mac = self.host_mac(&host)?;
                flag("--neigh", format!("{v4} lladdr {mac} dev {dev}"));
                flag("--neigh", format!("{v6} lladdr {mac} dev {dev}"));
            }
        }
        Ok(args)
    }

    fn daemon_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // SAFETY: signal 0 only checks that the process exists.
        (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
    }

    fn start_daemon(&self, d: &DaemonOptions) -> Result<(), LabError> {
        if self.daemon_pid().is_some() && client::get_json(d.api, "/healthz").is_ok() {
            return Ok(());
        }
        self.stop_daemon();
        let run_dir = self.run_dir();
        std::fs::create_dir_all(&run_dir).map_err(io(format!("creating {}", run_dir.display())))?;
        let db = self.db_file();
        if let Some(parent) = db.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let log = self.log_file();
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicating the log fd"))?;
        let mut cmd = Command::new(&d.exe);
        cmd.arg("run")
            .args(["--netns", &self.router()])
            .args(["--api", &d.api.to_string()])
            .args(["--xdp-mode", &d.xdp_mode.to_string()])
            .arg("--db")
            .arg(&db);
        for iface in ROUTER_IFACES {
            cmd.args(["--iface", iface]);
        }
        // Its own session: the daemon outlives the shell that ran `lab up`.
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", d.exe.display())))?;
        std::fs::write(self.pid_file(), child.id().to_string())
            .map_err(io("writing the pid file"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if client::get_json(d.api, "/healthz").is_ok() {
                return Ok(());
            }
            if self.daemon_pid().is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let tail = tail(&log, 20);
        self.stop_daemon();
        Err(LabError::DaemonStart {
            secs: 20,
            log: log.display().to_string(),
            tail,
        })
    }

    /// SIGTERM the daemon, then SIGKILL if it has not exited within 5 s.
    fn stop_daemon(&self) {
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: plain signals to a pid we started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 {
                std::thread::sleep(Duration::from_millis(50));
                // Reap it if it was our child (no-op otherwise).
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
            if unsafe { libc::kill(pid, 0) } == 0 {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Remove everything `up` created; works after a crash too. Keeps going
    /// past errors and reports them all.
    pub fn down(&self) -> Result<(), LabError> {
        self.stop_daemon();
        let mut errors = Vec::new();
        for ns in self.namespaces() {
            if let Err(e) = netns::delete(&ns) {
                errors.push(e.to_string());
            }
        }
        // The router daemon's pins (a killed daemon leaves them, keeping its
        // program and maps alive): after the namespaces, so nothing forwards.
        let daemon_pins = crate::dataplane::pin::default_dir(Some(&self.router()));
        for dir in [self.pin_dir(), daemon_pins, self.run_dir()] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                errors.push(format!("removing {}: {e}", dir.display()));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LabError::Teardown(errors))
        }
    }

    /// What exists right now.
    pub fn status(&self, api: SocketAddr) -> LabStatus {
        let namespaces = self
            .namespaces()
            .into_iter()
            .map(|name| {
                let links = if netns::exists(&name) {
                    links(&name).unwrap_or_default()
                } else {
                    Vec::new()
                };
                NamespaceStatus {
                    exists: netns::exists(&name),
                    name,
                    links,
                }
            })
            .collect();
        let stats = client::get_json(api, "/api/v1/stats").ok();
        LabStatus {
            namespaces,
            kernel_forwarding: self.kernel_forwarding().ok(),
            daemon_pid: self.daemon_pid(),
            api: api.to_string(),
            stats,
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Debug, Serialize)]
pub struct LabStatus {
    pub namespaces: Vec<NamespaceStatus>,
    pub kernel_forwarding: Option<bool>,
    pub daemon_pid: Option<i32>,
    pub api: String,
    pub stats: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct NamespaceStatus {
    pub name: String,
    pub exists: bool,
    pub links: Vec<LinkStatus>,
}

#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub name: String,
    pub state: String,
    pub addresses: Vec<String>,
    /// id of the attached XDP program, if any.
    pub xdp_prog: Option<u64>,
}

/// Links of a namespace, from `ip -j addr show` (lo left out).
pub fn links(ns: &str) -> Result<Vec<LinkStatus>, NetnsError> {
    let out = netns::ip(["-n", ns, "-j", "-d", "addr", "show"])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut links = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        let name = l["ifname"].as_str().unwrap_or_default().to_owned();
        if name == "lo" {
            continue;
        }
        let addresses = l["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or("?"), a["prefixlen"]))
            .collect();
        links.push(LinkStatus {
            name,
            state: l["operstate"].as_str().unwrap_or("?").to_owned(),
            addresses,
            xdp_prog: l["xdp"]["prog"]["id"].as_u64(),
        });
    }
    Ok(links)
}

/// id of the XDP program attached to `dev` in `ns`, if any.
pub fn xdp_prog_id(ns: &str, dev: &str) -> Result<Option<u64>, NetnsError> {
    Ok(links(ns)?
        .into_iter()
        .find(|l| l.name == dev)
        .and_then(|l| l.xdp_prog))
}

/// Tears a lab down on drop, also while a test panics.
pub struct LabGuard {
    pub lab: Lab,
}

impl LabGuard {
    /// Build `lab` (down first, so a crashed earlier run leaves nothing).
    pub fn up(lab: Lab, opts: &LabOptions) -> Result<Self, LabError> {
        let _ = lab.down();
        let guard = Self { lab };
        guard.lab.up(opts)?;
        Ok(guard)
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab {}: {e}", self.lab.prefix);
        }
    }
}
