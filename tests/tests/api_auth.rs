//! The API off loopback needs a token for everything but the probes. The
//! daemon runs on the lab router but binds its API first, in a namespace
//! of the test's own where 198.18.250.1 sits on `lo`, so the
//! listener is not on loopback and every request comes from inside that
//! namespace. Tokens are made and revoked with the CLI on the daemon's
//! database while it runs.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use xdpgate::{lab::ROUTER_IFACES, netns};
use xdpgate_tests::support::*;

const API: &str = "198.18.250.1:8080";

/// A namespace of this test's, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// The daemon, SIGKILLed on drop; its database and log removed.
struct Daemon {
    child: Child,
    db: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `ns` with 198.18.250.1/32 on its `lo`: an address that is not a
/// loopback address, reachable only inside `ns`.
#[track_caller]
fn api_namespace(name: String) -> Netns {
    let _ = netns::delete(&name);
    netns::add(&name).expect("add the API namespace");
    let ns = Netns(name);
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "198.18.250.1/32", "dev", "lo"],
    ] {
        netns::ip(["-n", ns.0.as_str()].iter().chain(args))
            .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    }
    ns
}

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// One HTTP/1.1 request to [`API`] from inside `ns`.
#[track_caller]
fn request(ns: &str, method: &str, path: &str, token: Option<&str>) -> std::io::Result<Answer> {
    let addr: SocketAddr = API.parse().expect("static");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if method != "GET" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let raw = netns::in_netns(ns, move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(raw)
    })
    .expect("enter the API namespace")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}

/// `xdpgate token ARGS... --db DB`; its stdout.
#[track_caller]
fn token_cli(db: &Path, args: &[&str]) -> String {
    let out = Command::new(xdpgate_bin())
        .arg("token")
        .args(args)
        .arg("--db")
        .arg(db)
        .output()
        .expect("run xdpgate token");
    assert!(
        out.status.success(),
        "xdpgate token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[track_caller]
fn assert_401(a: &Answer) {
    assert_eq!(a.status, 401, "{}\n{}", a.head, a.body);
    assert_eq!(a.body["error"]["code"], "unauthorized", "{}", a.body);
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{}",
        a.head
    );
}

#[test]
fn api_off_loopback_needs_a_token() {
    let lab = lab(false);
    let l = &lab.lab;
    let ns = api_namespace(format!("{}-api", l.prefix));
    let db = std::env::temp_dir().join(format!("{}-auth.db", l.prefix));
    let log = std::env::temp_dir().join(format!("{}-auth.log", l.prefix));
    let mut cmd = Command::new(xdpgate_bin());
    cmd.arg("run")
        .args(["--netns", &l.router()])
        .args(["--api", API])
        .arg("--db")
        .arg(&db)
        .args(l.static_fib_args(true).expect("lab FIB flags"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    for i in ROUTER_IFACES {
        cmd.args(["--iface", i]);
    }
    // A child forked from a thread in `ns` starts in `ns`: the API binds
    // there, then the daemon moves on to the router's namespace.
    let child = netns::in_netns(&ns.0, || cmd.spawn())
        .expect("enter the API namespace")
        .expect("spawn xdpgate");
    let mut daemon = Daemon { child, db, log };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match request(&ns.0, "GET", "/healthz", None) {
            Ok(a) if a.status == 200 => break,
            _ => {}
        }
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            panic!("xdpgate exited with {status}:\n{}", daemon.log());
        }
        assert!(
            Instant::now() < deadline,
            "no /healthz within 30 s:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(daemon.log().contains("not on loopback"), "{}", daemon.log());

    // No token exists: nothing but the probes answers.
    assert_401(&request(&ns.0, "GET", "/api/v1/stats", None).expect("GET stats"));
    assert_401(&request(&ns.0, "DELETE", "/api/v1/conntrack", None).expect("DELETE"));

    let token = token_cli(&daemon.db, &["create", "ci"]).trim().to_owned();
    assert!(token.starts_with("xg_"), "{token}");
    let stats = request(&ns.0, "GET", "/api/v1/stats", Some(&token)).expect("GET stats");
    assert_eq!(stats.status, 200, "{}", stats.body);
    assert!(stats.body["total"].is_object(), "{}", stats.body);
    assert_401(&request(&ns.0, "GET", "/api/v1/stats", None).expect("GET stats"));
    let wrong = format!("{}A", &token[..token.len() - 1]);
    let wrong = if wrong == token {
        format!("{}B", &token[..token.len() - 1])
    } else {
        wrong
    };
    assert_401(&request(&ns.0, "GET", "/api/v1/stats", Some(&wrong)).expect("GET stats"));

    let listed = token_cli(&daemon.db, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&listed).expect("JSON");
    assert_eq!(listed[0]["name"], "ci");
    assert!(listed[0]["revoked_at"].is_null());
    assert!(
        !listed.to_string().contains(&token[20..]),
        "the secret is listed"
    );

    // Revoked by another process: refused within a second or so.
    token_cli(&daemon.db, &["revoke", "ci"]);
    wait_until(Duration::from_secs(5), "the revocation to apply", || {
        request(&ns.0, "GET", "/api/v1/stats", Some(&token)).is_ok_and(|a| a.status == 401)
    });
    assert_eq!(
        request(&ns.0, "GET", "/healthz", None)
            .expect("healthz")
            .status,
        200
    );
}
