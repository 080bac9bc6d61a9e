//! `xdpgate loadgen` through the lab router: the reflector runs in h2, the
//! generator in h1, xdpgate is attached to the router, and the traffic
//! (IPv4 and IPv6, several flows) must come back with a sane latency
//! report — once per I/O backend. No timing thresholds: a slow machine
//! may see higher latency or some loss, never wrong accounting.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use xdpgate::lab::{H2_V4, H2_V6};
use xdpgate_tests::support::*;

const FLOWS: u64 = 4;

/// `xdpgate loadgen --reflect` in `ns`, killed on drop.
struct Reflector {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Reflector {
    #[track_caller]
    fn start(ns: &str, backend: &str, port: u16) -> Reflector {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(xdpgate_bin())
            .args(["loadgen", "--reflect", "--json", "--listen"])
            .arg(format!("[::]:{port}"))
            .env("XDPGATE_IO_BACKEND", backend)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the reflector");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the reflector did not start within 20 s");
        assert!(
            first.starts_with("reflecting on [::]:") && first.contains(backend),
            "unexpected first line: {first}"
        );
        Reflector { child, stderr: rx }
    }

    /// SIGTERM, then its JSON report.
    #[track_caller]
    fn stop(mut self) -> serde_json::Value {
        // SAFETY: a signal to our own child (the `ip netns exec` process
        // execs xdpgate, so the pid is the reflector's).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read the report");
        let status = self.child.wait().expect("wait");
        let rest: Vec<String> = self.stderr.try_iter().collect();
        assert!(status.success(), "reflector failed: {status} {rest:?}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("reflector JSON ({e}): {out}"))
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn loadgen(ns: &str, backend: &str, target: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(xdpgate_bin())
        .args(["loadgen", target, "--rate", "2000", "--size", "128"])
        .args(["--flows", &FLOWS.to_string(), "--duration", "2", "--json"])
        .env("XDPGATE_IO_BACKEND", backend)
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen {target} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("loadgen JSON ({e}): {stdout}"))
}

#[track_caller]
fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number: {v}"))
}

#[track_caller]
fn assert_sane(r: &serde_json::Value, backend: &str) {
    assert_eq!(r["backend"], backend, "{r}");
    assert_eq!(num(r, "flows") as u64, FLOWS);
    let sent = num(r, "sent") as u64;
    let received = num(r, "received") as u64;
    assert!(sent > 0, "nothing sent: {r}");
    assert!(received > 0, "nothing came back through the router: {r}");
    assert_eq!(num(r, "lost") as u64, sent - received, "{r}");
    assert_eq!(num(r, "send_errors") as u64, 0, "{r}");
    assert_eq!(num(r, "duplicates") as u64, 0, "{r}");
    assert_eq!(num(r, "invalid") as u64, 0, "{r}");
    let l = &r["latency_us"];
    assert_eq!(num(l, "samples") as u64, received, "{r}");
    let (min, p50, p90, p99, max) = (
        num(l, "min"),
        num(l, "p50"),
        num(l, "p90"),
        num(l, "p99"),
        num(l, "max"),
    );
    assert!(
        0.0 < min && min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "latency out of order: {l}"
    );
    // A round trip cannot take longer than the run plus the drain time.
    assert!(max < 10_000_000.0, "latency beyond the run: {l}");
    assert!(num(r, "syscalls") > 0.0 && num(&r["cpu"], "us_per_packet") > 0.0);
}

fn through_the_router(backend: &str) {
    let lab = lab(true);
    let l = &lab.lab;
    let daemon = Daemon::start_forwarding(l, true, &[]);
    // Neighbours resolved on the hosts before the measured traffic.
    assert!(ping(&l.h1(), H2_V4, 1));
    assert!(ping(&l.h1(), H2_V6, 1));
    let reflector = Reflector::start(&l.h2(), backend, 9000);
    let v4 = loadgen(&l.h1(), backend, &format!("{H2_V4}:9000"));
    let v6 = loadgen(&l.h1(), backend, &format!("[{H2_V6}]:9000"));
    eprintln!("{backend} IPv4: {v4}\n{backend} IPv6: {v6}");
    assert_sane(&v4, backend);
    assert_sane(&v6, backend);
    let refl = reflector.stop();
    eprintln!("{backend} reflector: {refl}");
    assert_eq!(refl["backend"], backend);
    assert_eq!(
        num(&refl, "sources") as u64,
        2 * FLOWS,
        "each flow has its own source port: {refl}"
    );
    let back = num(&v4, "received") + num(&v6, "received");
    assert!(num(&refl, "reflected") >= back, "{refl}");
    // The router's XDP program carried the traffic.
    let s = daemon.stats();
    let fwd =
        counter(&s, "eth1", "reasons", "forwarded") + counter(&s, "eth2", "reasons", "forwarded");
    assert!(
        fwd as f64 >= back,
        "XDP forwarded {fwd} frames for {back} round trips: {s}"
    );
}

#[test]
fn loadgen_through_the_router_with_poll() {
    through_the_router("poll");
}

#[test]
fn loadgen_through_the_router_with_io_uring() {
    through_the_router("io_uring");
}
