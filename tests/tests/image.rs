//! The OCI image: `scripts/image` builds it (FROM scratch: the binary under
//! test, its libraries and the example config), and the daemon run from it
//! by podman inside the lab router's namespace attaches XDP, answers
//! `/healthz`, forwards h1 -> h2 with the kernel's forwarding off, and
//! detaches when the container is stopped (SIGTERM).
//!
//! Skips, saying why, without podman, runc or buildah (scripts/prereqs.sh
//! installs them). Each test keeps its own container storage in a
//! temporary directory, removed at the end.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use xdpgate::{
    client,
    lab::{H2_V4, H2_V6, ROUTER_IFACES},
    netns,
};
use xdpgate_tests::support::*;

/// The API inside the router's namespace (a fresh one: nothing else
/// listens there).
const API: &str = "127.0.0.1:8080";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Container storage of one test, the image built into it and the
/// container run from it. Drop removes the container (`podman rm -f`), the
/// storage (and so the image) and the daemon's pin directory, also while
/// the test panics.
struct Podman {
    dir: PathBuf,
    image: String,
    container: Option<String>,
    pin_dir: Option<PathBuf>,
}

impl Podman {
    fn new(name: &str) -> Podman {
        let dir = std::env::temp_dir().join(format!("xdpgate-image-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("container storage dir");
        Podman {
            dir,
            image: format!("localhost/xdpgate:{name}"),
            container: None,
            pin_dir: None,
        }
    }

    /// `podman` on this test's storage, with the runtime and driver that
    /// work here (../shared/NOTES.md, "Containers").
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(["--runtime", "runc", "--storage-driver", "vfs"])
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"));
        c
    }

    #[track_caller]
    fn podman(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run podman");
        assert!(out.status.success(), "podman {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// scripts/image on `bin`, into this storage; returns its report line.
    #[track_caller]
    fn build(&self, bin: &Path) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image");
        let tag = self.image.rsplit(':').next().expect("tag");
        let out = Command::new(script)
            .args(["--tag", tag])
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg(bin)
            .output()
            .expect("run scripts/image");
        assert!(out.status.success(), "scripts/image: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The container's state and exit code.
    fn state(&self) -> String {
        let name = self.container.as_deref().expect("a container");
        self.podman(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            name,
        ])
    }

    fn logs(&self) -> String {
        let name = self.container.as_deref().expect("a container");
        let out = self
            .cmd()
            .args(["logs", name])
            .output()
            .expect("podman logs");
        text(&out)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(name) = &self.container {
            let _ = self.cmd().args(["rm", "-f", "-t", "0", name]).output();
        }
        if let Some(pins) = &self.pin_dir {
            let _ = std::fs::remove_dir_all(pins);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("removing {}: {e}", self.dir.display());
        }
    }
}

/// HTTP status of `GET path` on the API, from inside namespace `ns`.
fn http_status(ns: &str, path: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-s", "-o", "/dev/null"])
        .args(["-w", "%{http_code}", "--max-time", "2"])
        .arg(format!("http://{API}{path}"))
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn image_runs_the_daemon_in_the_router_namespace() {
    let missing: Vec<&str> = ["podman", "runc", "buildah"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIP: {} not installed (scripts/prereqs.sh installs podman, buildah and runc); \
             image not tested",
            missing.join(", ")
        );
        return;
    }
    // Kernel forwarding off: only XDP can carry h1 -> h2.
    let lab = lab(false);
    let l = &lab.lab;
    let r = l.router();
    let mut pod = Podman::new(&l.prefix);

    let built = pod.build(&xdpgate_bin());
    eprintln!("{built}");
    assert!(built.starts_with(&pod.image), "{built}");

    let pins = PathBuf::from("/sys/fs/bpf/xdpgate/netns").join(&r);
    pod.pin_dir = Some(pins.clone());
    let name = format!("xdpgate-{}", l.prefix);
    let netns_path = format!("ns:{}", netns::path(&r).display());
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--name",
        name.as_str(),
        // The four capabilities the README and the DaemonSet list, and no
        // others: this run proves they are enough. Podman's default seccomp
        // profile refuses bpf(2) map creation even with CAP_BPF.
        "--cap-drop",
        "all",
        "--cap-add",
        "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON,CAP_SYS_RESOURCE",
        "--security-opt",
        "seccomp=unconfined",
        "--network",
        netns_path.as_str(),
        "-v",
        "/sys/fs/bpf:/sys/fs/bpf",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        pod.image.as_str(),
        "run",
        // Flags only: the image's example config sets keep_attached, which
        // would leave the pinned program forwarding after the stop.
        "--config",
        "/dev/null",
        "--api",
        API,
        "--db",
        "/tmp/xdpgate.db",
        "--pin-dir",
        pins.to_str().expect("utf-8 pin path"),
    ]
    .map(str::to_owned)
    .into();
    for i in ROUTER_IFACES {
        args.extend(["--iface".to_owned(), i.to_owned()]);
    }
    // Kernel forwarding is off: the routes and neighbours XDP needs.
    args.extend(l.static_fib_args(true).expect("lab FIB flags"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pod.podman(&args);
    pod.container = Some(name);

    let deadline = Instant::now() + Duration::from_secs(20);
    while http_status(&r, "/healthz") != "200" {
        let state = pod.state();
        assert!(
            state.starts_with("running"),
            "container {state} before answering /healthz:\n{}",
            pod.logs()
        );
        assert!(
            Instant::now() < deadline,
            "no 200 from /healthz within 20 s:\n{}",
            pod.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for dev in ROUTER_IFACES {
        assert!(
            xdp_on(&r, dev).is_some(),
            "{dev} has no XDP program while the container runs:\n{}",
            pod.logs()
        );
    }

    assert!(ping(&l.h1(), H2_V4, 3), "IPv4 ping h1 -> h2 failed");
    assert!(ping(&l.h1(), H2_V6, 3), "IPv6 ping h1 -> h2 failed");
    let api: SocketAddr = API.parse().expect("static");
    let stats = netns::in_netns(&r, || client::get_json(api, "/api/v1/stats"))
        .expect("enter router netns")
        .expect("GET /api/v1/stats");
    assert!(
        counter(&stats, "eth1", "reasons", "forwarded") >= 6,
        "{stats}"
    );

    // `podman stop` sends SIGTERM (the image sets no other StopSignal);
    // without --keep-attached the daemon detaches and exits 0.
    pod.podman(&["stop", "-t", "10", pod.container.as_deref().expect("name")]);
    assert_eq!(pod.state(), "exited 0", "{}", pod.logs());
    for dev in ROUTER_IFACES {
        assert_eq!(
            xdp_on(&r, dev),
            None,
            "{dev} still has XDP after podman stop:\n{}",
            pod.logs()
        );
    }
}
