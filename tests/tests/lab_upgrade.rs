//! Tier 3: restarts and upgrades that never stop forwarding (issue 11).
//!
//! The daemon pins its program, links and maps under bpffs; a killed
//! daemon's program keeps forwarding, and the next daemon (the same build,
//! or one whose map layout differs) fills its own maps and swaps each link
//! over with `BPF_LINK_UPDATE`. Kernel forwarding is off in the router, so
//! every datagram that arrives crossed XDP.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use xdpgate::{
    lab::{H2_V4, ROUTER_IFACES},
    netns,
};
use xdpgate_tests::{support::*, traffic::big_receive_buffer};

/// The second build scripts/test makes: `--features layout-test`, one more
/// field in every connection-table entry.
fn layout_test_bin() -> PathBuf {
    let bin = xdpgate_bin().with_file_name("xdpgate-layout-test");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test builds it (cargo build --bin xdpgate \
         --features controlplane/layout-test, copied to that name)",
        bin.display()
    );
    bin
}

/// A paced stream of numbered datagrams from `src` to `dst_ns`, counted at
/// the receiver.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    received: Arc<AtomicU32>,
    sender: JoinHandle<()>,
    receiver: JoinHandle<Vec<u32>>,
}

impl Stream {
    /// About `pps` datagrams a second (paced in bursts of 10).
    fn start(src: &str, dst_ns: &str, dst: IpAddr, port: u16, pps: u32) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let received = Arc::new(AtomicU32::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let receiver = {
            let (stop, received, ns) = (stop.clone(), received.clone(), dst_ns.to_owned());
            std::thread::spawn(move || {
                netns::in_netns(&ns, || {
                    let s = UdpSocket::bind(SocketAddr::new(dst, port)).expect("bind");
                    big_receive_buffer(&s);
                    s.set_read_timeout(Some(Duration::from_millis(100)))
                        .expect("timeout");
                    ready_tx.send(()).expect("ready");
                    let mut seqs = Vec::new();
                    let mut buf = [0u8; 64];
                    let mut idle = 0;
                    // After stop, drain until 1 s passes without a datagram.
                    while !stop.load(Ordering::Relaxed) || idle < 10 {
                        match s.recv(&mut buf) {
                            Ok(4) => {
                                seqs.push(u32::from_be_bytes(buf[..4].try_into().expect("4")));
                                received.fetch_add(1, Ordering::Relaxed);
                                idle = 0;
                            }
                            Ok(_) => {}
                            Err(_) => idle += 1,
                        }
                    }
                    seqs
                })
                .expect("enter the receiver namespace")
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("receiver ready");
        let sender = {
            let (stop, sent, ns) = (stop.clone(), sent.clone(), src.to_owned());
            std::thread::spawn(move || {
                netns::in_netns(&ns, || {
                    let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                    let gap = Duration::from_micros(10_000_000 / u64::from(pps));
                    let mut seq = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10 {
                            s.send_to(&seq.to_be_bytes(), SocketAddr::new(dst, port))
                                .expect("send");
                            seq += 1;
                            sent.store(seq, Ordering::Relaxed);
                        }
                        std::thread::sleep(gap);
                    }
                })
                .expect("enter the sender namespace")
            })
        };
        Stream {
            stop,
            sent,
            received,
            sender,
            receiver,
        }
    }

    /// Wait until `n` more datagrams have arrived (the stream flows now).
    #[track_caller]
    fn wait_flowing(&self, n: u32, what: &str) {
        let from = self.received.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(10), what, || {
            self.received.load(Ordering::Relaxed) >= from + n
        });
    }

    /// Stop sending; (sent, sequence numbers received).
    fn finish(self) -> (u32, Vec<u32>) {
        self.stop.store(true, Ordering::Relaxed);
        self.sender.join().expect("sender");
        let seqs = self.receiver.join().expect("receiver");
        (self.sent.load(Ordering::Relaxed), seqs)
    }
}

fn prog_ids(router: &str) -> Vec<Option<u64>> {
    ROUTER_IFACES.iter().map(|d| xdp_on(router, d)).collect()
}

#[test]
fn forwarding_goes_on_across_sigkill_restart_and_an_upgrade() {
    let upgrade = layout_test_bin();
    let lab = lab(false);
    let l = &lab.lab;
    let r = l.router();
    let first = Daemon::start_forwarding(l, true, &[]);
    let v1 = prog_ids(&r);
    assert!(v1.iter().all(Option::is_some), "not attached: {v1:?}");

    let stream = Stream::start(&l.h1(), &l.h2(), H2_V4.parse().expect("static"), 7001, 2000);
    stream.wait_flowing(200, "the stream to cross the first daemon");

    // 1. Crash: the pinned program forwards with no daemon at all.
    let (status, _) = first.signal_keep_db(SIGKILL);
    assert!(!status.success());
    assert_eq!(prog_ids(&r), v1, "the program changed with no daemon");
    stream.wait_flowing(400, "the stream to cross with the daemon dead");

    // 2. Restart, same build: adopts, fills its maps, swaps the links.
    let second = Daemon::start_forwarding(l, true, &[]);
    let log = second.log();
    assert!(log.contains("adopting the pinned program"), "{log}");
    assert!(log.contains("BPF_LINK_UPDATE"), "{log}");
    assert!(log.contains("connection table carried over"), "{log}");
    let v2 = prog_ids(&r);
    assert!(v2.iter().all(Option::is_some), "{v2:?}");
    assert_ne!(
        v2, v1,
        "the restarted daemon's program is not the one running"
    );
    stream.wait_flowing(400, "the stream to cross the restarted daemon");

    // 3. Upgrade to a build whose connection-table entries are larger.
    let (status, _) = second.signal_keep_db(SIGKILL);
    assert!(!status.success());
    stream.wait_flowing(200, "the stream to cross with the daemon dead again");
    let third = Daemon::start_forwarding_bin(l, &upgrade, &[]);
    let log = third.log();
    assert!(log.contains("BPF_LINK_UPDATE"), "{log}");
    assert!(
        log.contains("previous connection table not carried over"),
        "the upgrade build should find a different layout:\n{log}"
    );
    let v3 = prog_ids(&r);
    assert!(v3.iter().all(Option::is_some), "{v3:?}");
    assert_ne!(v3, v2, "the upgraded program is not the one running");
    stream.wait_flowing(400, "the stream to cross the upgraded daemon");

    let (sent, mut seqs) = stream.finish();
    seqs.sort_unstable();
    seqs.dedup();
    let lost: Vec<u32> = {
        let got: std::collections::HashSet<u32> = seqs.iter().copied().collect();
        (0..sent).filter(|s| !got.contains(s)).collect()
    };
    eprintln!("sent {sent}, received {} distinct", seqs.len());
    assert!(
        lost.is_empty(),
        "{} of {sent} datagrams lost, first ones: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );

    // A clean stop of the upgraded daemon detaches and unpins everything.
    let (status, log) = third.signal(SIGTERM);
    assert!(status.success(), "{log}");
    assert_eq!(prog_ids(&r), vec![None, None]);
    assert!(
        !xdpgate::dataplane::pin::default_dir(Some(&r))
            .join("links")
            .exists()
    );
}
