//! Tier 3: the namespace lab, with traffic really crossing the router and
//! the real `xdpgate` binary attached to it.
use std::time::{Duration, Instant};

use xdpgate::lab::{H2_V4, H2_V6, HOST_IFACE, Lab, LabGuard, LabOptions, ROUTER_IFACES};
use xdpgate_tests::support::*;

#[test]
fn sigterm_detaches_from_every_interface_and_exits_zero() {
    let lab = lab(true);
    let r = lab.lab.router();
    let daemon = Daemon::start(&lab.lab, &[]);
    for dev in ROUTER_IFACES {
        assert!(
            xdp_on(&r, dev).is_some(),
            "{dev} has no XDP program while the daemon runs"
        );
    }
    let (status, stderr) = daemon.signal(SIGTERM);
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    for dev in ROUTER_IFACES {
        assert_eq!(xdp_on(&r, dev), None, "{dev} still has XDP after SIGTERM");
    }
    // The lab's own pass programs on the hosts are not the daemon's to remove.
    assert!(xdp_on(&lab.lab.h1(), HOST_IFACE).is_some());
}

#[test]
fn sigint_detaches_too() {
    let lab = lab(true);
    let daemon = Daemon::start(&lab.lab, &[]);
    let (status, stderr) = daemon.signal(SIGINT);
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    for dev in ROUTER_IFACES {
        assert_eq!(xdp_on(&lab.lab.router(), dev), None);
    }
}

#[test]
fn sigkill_leaves_the_pinned_program_until_detach_all() {
    // The links are pinned under bpffs: a crashed daemon's program goes on
    // forwarding (the next daemon adopts it); `xdpgate detach --all` is how
    // an operator removes it for good.
    let lab = lab(true);
    let r = lab.lab.router();
    let daemon = Daemon::start(&lab.lab, &[]);
    let before: Vec<_> = ROUTER_IFACES.iter().map(|d| xdp_on(&r, d)).collect();
    let (status, _) = daemon.signal(SIGKILL);
    assert!(!status.success());
    let after: Vec<_> = ROUTER_IFACES.iter().map(|d| xdp_on(&r, d)).collect();
    assert!(after.iter().all(Option::is_some), "{after:?}");
    assert_eq!(before, after, "the pinned program changed");
    let out = std::process::Command::new(xdpgate_bin())
        .args(["detach", "--all", "--netns", &r])
        .output()
        .expect("xdpgate detach");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("XDP detached from: eth1, eth2"), "{stdout}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ROUTER_IFACES.iter().any(|d| xdp_on(&r, d).is_some()) {
        assert!(
            Instant::now() < deadline,
            "XDP still attached after detach --all"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = std::process::Command::new(xdpgate_bin())
        .args(["detach", "--all", "--netns", &r])
        .output()
        .expect("xdpgate detach");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing pinned"));
}

#[test]
fn sigterm_with_keep_attached_leaves_it_forwarding_for_the_next_daemon() {
    let lab = lab(false);
    let l = &lab.lab;
    let r = l.router();
    let daemon = Daemon::start_forwarding(l, true, &["--keep-attached"]);
    assert!(ping(&l.h1(), H2_V4, 1), "XDP did not forward");
    let (status, log) = daemon.signal_keep_db(SIGTERM);
    assert!(status.success(), "{log}");
    assert!(log.contains("keeps forwarding"), "{log}");
    // Kernel forwarding is off: only the pinned program can carry this.
    assert!(
        ping(&l.h1(), H2_V4, 3),
        "nothing forwards after the daemon left"
    );
    let next = Daemon::start_forwarding(l, true, &[]);
    assert!(next.log().contains("BPF_LINK_UPDATE"), "{}", next.log());
    assert!(ping(&l.h1(), H2_V4, 1));
    let (status, log) = next.signal(SIGTERM);
    assert!(status.success(), "{log}");
    for dev in ROUTER_IFACES {
        assert_eq!(xdp_on(&r, dev), None, "{dev} still has XDP after SIGTERM");
    }
}

#[test]
fn ping_crosses_as_a_counted_punt_with_kernel_forwarding_on() {
    let lab = lab(true);
    // No kernel sync and no static routes: XDP knows no route at all.
    let daemon = Daemon::start(&lab.lab, &["--no-kernel-sync"]);
    assert!(ping(&lab.lab.h1(), H2_V4, 3), "IPv4 ping h1 -> h2 failed");
    assert!(ping(&lab.lab.h1(), H2_V6, 3), "IPv6 ping h1 -> h2 failed");
    let s = daemon.stats();
    // Requests in on eth1, replies in on eth2. The daemon has no routes, so
    // XDP punts them (no_route) and the kernel forwards both.
    for dev in ROUTER_IFACES {
        assert!(counter(&s, dev, "classes", "ipv4_icmp") >= 3, "{dev}: {s}");
        assert!(counter(&s, dev, "classes", "ipv6_icmp") >= 3, "{dev}: {s}");
        assert!(counter(&s, dev, "reasons", "no_route") >= 6, "{dev}: {s}");
        assert_eq!(counter(&s, dev, "reasons", "malformed"), 0, "{dev}: {s}");
    }
    // Address resolution went to the kernel under its own reasons.
    let arp: u64 = ROUTER_IFACES
        .iter()
        .map(|d| counter(&s, d, "reasons", "arp"))
        .sum();
    let nd: u64 = ROUTER_IFACES
        .iter()
        .map(|d| counter(&s, d, "reasons", "ipv6_nd"))
        .sum();
    assert!(arp > 0 && nd > 0, "arp {arp}, nd {nd}: {s}");
    assert_eq!(s["unregistered"]["actions"]["pass"]["packets"], 0, "{s}");
}

#[test]
fn without_routes_nothing_crosses_with_kernel_forwarding_off() {
    // A daemon with no routes only punts; with the kernel's forwarding off
    // nobody routes, and the punts are still counted.
    let lab = lab(false);
    assert!(!lab.lab.kernel_forwarding().expect("read sysctl"));
    let daemon = Daemon::start(&lab.lab, &["--no-kernel-sync"]);
    assert!(
        !ping(&lab.lab.h1(), H2_V4, 2),
        "ping crossed with forwarding off"
    );
    let s = daemon.stats();
    assert!(counter(&s, "eth1", "reasons", "no_route") >= 2, "{s}");
    assert_eq!(counter(&s, "eth2", "classes", "ipv4_icmp"), 0, "{s}");
}

#[test]
fn lab_up_is_idempotent_and_down_removes_everything() {
    let lab = Lab::new(unique_prefix());
    let opts = LabOptions {
        kernel_forwarding: true,
        daemon: None,
    };
    let guard = LabGuard::up(lab.clone(), &opts).expect("first up");
    let before = xdpgate::lab::links(&lab.router()).expect("links");
    lab.up(&opts).expect("second up");
    assert_eq!(before, xdpgate::lab::links(&lab.router()).expect("links"));
    assert!(
        ping(&lab.h1(), H2_V4, 1),
        "lab does not route after a second up"
    );
    lab.down().expect("down");
    for ns in lab.namespaces() {
        assert!(!ns_exists(&ns), "{ns} survived lab down");
    }
    assert!(!lab.pin_dir().exists(), "pins survived lab down");
    lab.down().expect("down twice is fine");
    drop(guard);
}

#[test]
fn lab_command_starts_the_daemon_and_reports_status() {
    let prefix = unique_prefix();
    let api = free_port().to_string();
    let bin = xdpgate_bin();
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .output()
            .expect("run xdpgate")
    };
    let _guard = LabGuard {
        lab: Lab::new(&prefix),
    };
    let up = run(&["lab", "up", "--prefix", &prefix, "--api", &api]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(ping(&format!("{prefix}-h1"), H2_V4, 2));
    let stats = run(&["stats", "--api", &api]);
    let table = String::from_utf8_lossy(&stats.stdout);
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    assert!(table.contains("ipv4_icmp"), "{table}");
    let status = run(&["lab", "status", "--prefix", &prefix, "--api", &api]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("daemon: running"), "{text}");
    assert!(text.contains("xdp prog"), "{text}");
    // Up again while running: nothing changes, still healthy.
    let again = run(&["lab", "up", "--prefix", &prefix, "--api", &api]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let down = run(&["lab", "down", "--prefix", &prefix]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!ns_exists(&format!("{prefix}-r")));
}

#[test]
fn bad_starts_fail_with_one_clear_sentence() {
    let lab = lab(true);
    let cases: [(&[&str], &str); 3] = [
        (&["--iface", "nope0"], "no interface named \"nope0\""),
        (
            &["--iface", "lo", "--xdp-mode", "native"],
            "try --xdp-mode skb",
        ),
        (&["--iface", "eth1", "--iface", "eth1"], "already attached"),
    ];
    for (args, expected) in cases {
        let (status, stderr) = Daemon::spawn(&lab.lab, args).wait_exit(Duration::from_secs(20));
        assert!(!status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // A failed start leaves nothing attached.
        for dev in ROUTER_IFACES {
            assert_eq!(
                xdp_on(&lab.lab.router(), dev),
                None,
                "{args:?} left XDP on {dev}"
            );
        }
    }
}

#[test]
fn unprivileged_run_says_it_needs_root() {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(xdpgate_bin())
        .args(["run", "--iface", "lo", "--api", &free_port().to_string()])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs root"), "{stderr}");
}
