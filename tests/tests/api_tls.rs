//! The API over TLS (`--tls-cert`, `--tls-key`): a CA and a server
//! certificate for 127.0.0.1 are made with the `openssl` CLI; `curl`
//! (an independent client) must get `/healthz` only when it trusts the
//! CA; plain HTTP on the TLS port gets nothing; the CLI's own client speaks
//! TLS with `XDPGATE_API_CA`; a key that is garbage or belongs to another
//! certificate stops the start with the file named. Needs root (a lab).
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use xdpgate_tests::support::*;

struct Certs {
    dir: PathBuf,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Certs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// ca.pem, server.pem / server.key (for IP 127.0.0.1), other.key.
    fn make(prefix: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("{prefix}-tls"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        let c = Certs { dir };
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&c.dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=xdpgate test CA"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            c.path("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            "other.key",
        ]);
        std::fs::write(c.path("garbage.key"), "not a key\n").expect("garbage");
        c
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// curl's HTTP status for `url` (0: no HTTP answer) and its exit code.
fn curl(url: &str, ca: Option<&Path>) -> (u16, i32) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
    ]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, out.status.code().unwrap_or(-1))
}

#[test]
fn the_api_speaks_tls_with_the_given_certificate_and_only_tls() {
    let lab = lab(false);
    let l = &lab.lab;
    let c = Certs::make(&l.prefix);
    let (cert, key, ca) = (c.path("server.pem"), c.path("server.key"), c.path("ca.pem"));
    let daemon = Daemon::spawn(l, &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let https = format!("https://{}/healthz", daemon.api);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&https, Some(&ca)).0 != 200 {
        assert!(Instant::now() < deadline, "no TLS answer: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.log().contains("the API speaks TLS only"),
        "{}",
        daemon.log()
    );
    // Without the CA, curl refuses the certificate (60: peer verification).
    let (code, exit) = curl(&https, None);
    assert_eq!(
        (code, exit),
        (0, 60),
        "an untrusted certificate was accepted"
    );
    // Plain HTTP on the TLS port gets no HTTP answer at all.
    let (code, _) = curl(&format!("http://{}/healthz", daemon.api), None);
    assert_eq!(code, 0, "plain HTTP was answered");
    // The CLI's own client, trusting the CA.
    let out = Command::new(xdpgate_bin())
        .args(["stats", "--api", &daemon.api.to_string()])
        .env("XDPGATE_API_CA", &ca)
        .output()
        .expect("xdpgate stats");
    assert!(
        out.status.success(),
        "xdpgate stats over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And without it the CLI says it cannot talk to the API.
    let out = Command::new(xdpgate_bin())
        .args(["stats", "--api", &daemon.api.to_string()])
        .output()
        .expect("xdpgate stats");
    assert!(!out.status.success(), "plain HTTP client reached a TLS API");
    // After a handshake failure the listener still serves.
    assert_eq!(curl(&https, Some(&ca)).0, 200);
    let (status, log) = daemon.signal(SIGTERM);
    assert!(status.success(), "clean exit: {log}");
}

#[test]
fn a_bad_key_stops_the_start_and_names_the_file() {
    let lab = lab(false);
    let l = &lab.lab;
    let c = Certs::make(&l.prefix);
    let cert = c.path("server.pem");
    for (key, want) in [
        (c.path("garbage.key"), "no PEM private key"),
        (c.path("other.key"), "do not make a TLS server"),
        (c.path("missing.key"), "No such file"),
    ] {
        let daemon = Daemon::spawn(l, &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
        let (status, log) = daemon.wait_exit(Duration::from_secs(20));
        assert!(!status.success(), "started with {}: {log}", key.display());
        assert!(log.contains(want), "{}: {log}", key.display());
        if want != "do not make a TLS server" {
            assert!(log.contains(s(&key)), "the file is not named: {log}");
        }
    }
    // One without the other is refused by the flags.
    let daemon = Daemon::spawn(l, &["--tls-cert", s(&cert)]);
    let (status, log) = daemon.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{log}");
    assert!(log.contains("--tls-key"), "{log}");
}

#[test]
fn a_self_signed_certificate_as_the_readme_makes_it_works() {
    let lab = lab(false);
    let l = &lab.lab;
    let c = Certs::make(&l.prefix);
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes", "-days", "825", "-keyout", "self.key", "-out", "self.pem",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .current_dir(&c.dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (c.path("self.pem"), c.path("self.key"));
    let daemon = Daemon::spawn(l, &["--tls-cert", s(&cert), "--tls-key", s(&key)]);
    let https = format!("https://{}/healthz", daemon.api);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&https, Some(&cert)).0 != 200 {
        assert!(Instant::now() < deadline, "no TLS answer: {}", daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = Command::new(xdpgate_bin())
        .args(["stats", "--api", &daemon.api.to_string()])
        .env("XDPGATE_API_CA", &cert)
        .output()
        .expect("xdpgate stats");
    assert!(
        out.status.success(),
        "xdpgate stats with a self-signed certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
