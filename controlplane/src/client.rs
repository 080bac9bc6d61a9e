//! A minimal HTTP/1.1 client for the CLI (`xdpgate stats`, `lab status`,
//! `acl apply`): one request, `Connection: close`, JSON both ways. The
//! daemon is local, so this avoids pulling a full HTTP client into the
//! binary.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the xdpgate API at {addr} ({source}); is the daemon running? (`xdpgate lab up` starts it)"
    )]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the xdpgate API at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the API answered {status} for {path}: {}", api_error_text(body))]
    Status {
        status: u16,
        path: String,
        body: String,
    },
    #[error("the API sent a response that is not HTTP/1.1")]
    Malformed,
    #[error("the API sent JSON that does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("XDPGATE_API_CA: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// A byte stream to the API: TCP, or TLS over it.
trait Stream: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Stream for T {}

/// Connect to `addr`; with [`crate::tls::CA_ENV`] set, speak TLS to it,
/// trusting that CA alone (the certificate must name the address).
fn connect(addr: SocketAddr, timeout: Duration) -> Result<Box<dyn Stream>, ClientError> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|source| ClientError::Connect { addr, source })?;
    s.set_read_timeout(Some(timeout))
        .map_err(|source| ClientError::Io { addr, source })?;
    let Some(ca) = std::env::var_os(crate::tls::CA_ENV).filter(|v| !v.is_empty()) else {
        return Ok(Box::new(s));
    };
    use tokio_rustls::rustls::{ClientConnection, StreamOwned, pki_types::ServerName};
    let config = crate::tls::client_config(std::path::Path::new(&ca))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = ClientConnection::new(config, name).map_err(|e| ClientError::Io {
        addr,
        source: std::io::Error::other(e),
    })?;
    Ok(Box::new(StreamOwned::new(conn, s)))
}

/// Reads answer quickly; a write (a firewall commit compiling and
/// installing a large ruleset) may take a while.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// GET `path` from `addr`, expecting 2xx and a JSON body.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Value, ClientError> {
    request(addr, "GET", path, None, READ_TIMEOUT)
}

/// POST a JSON body to `path`, expecting 2xx and a JSON body.
pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, ClientError> {
    request(addr, "POST", path, Some(body), WRITE_TIMEOUT)
}

/// PUT a JSON body to `path`, expecting 2xx and a JSON body.
pub fn put_json(addr: SocketAddr, path: &str, body: &Value) -> Result<Value, ClientError> {
    request(addr, "PUT", path, Some(body), WRITE_TIMEOUT)
}

/// DELETE `path`, expecting 2xx and a JSON body.
pub fn delete_json(addr: SocketAddr, path: &str) -> Result<Value, ClientError> {
    request(addr, "DELETE", path, None, WRITE_TIMEOUT)
}

/// The environment variable holding the API token the CLI sends: needed
/// for writes once a token exists, and for everything when the API is not
/// on loopback (`xdpgate token create` makes one).
pub const TOKEN_ENV: &str = "XDPGATE_TOKEN";

/// The token from [`TOKEN_ENV`], if set to something that can be a header
/// value.
fn token_from_env() -> Option<String> {
    std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mut s = connect(addr, timeout)?;
    let io = |source| ClientError::Io { addr, source };
    let payload = body.map(serde_json::to_vec).transpose()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if let Some(t) = token_from_env() {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(p) = &payload {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            p.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).map_err(io)?;
    if let Some(p) = &payload {
        s.write_all(p).map_err(io)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(ClientError::Malformed)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::Malformed)?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Status {
            status,
            path: path.to_owned(),
            body: body.trim().to_owned(),
        });
    }
    Ok(serde_json::from_str(body)?)
}

/// The API's JSON error (`{"error": {"message", "details"}}`) as text: the
/// message, then one indented line per detail. A body of another shape is
/// shown as it came.
pub fn api_error_text(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let Some(message) = v["error"]["message"].as_str() else {
        return body.to_owned();
    };
    let mut out = message.to_owned();
    for d in v["error"]["details"].as_array().into_iter().flatten() {
        out.push_str("\n  ");
        out.push_str(&detail_text(d));
    }
    out
}

/// A detail is a string, or an object with a `message` and, for a problem
/// of one rule, that rule's index in the ruleset sent (`rule`, from 0).
fn detail_text(d: &Value) -> String {
    match (d.as_str(), d["message"].as_str(), d["rule"].as_u64()) {
        (Some(s), _, _) => s.to_owned(),
        (None, Some(m), Some(i)) => format!("rule {}: {m}", i + 1),
        (None, Some(m), None) => m.to_owned(),
        _ => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_print_message_and_details() {
        let body = r#"{"error": {"code": "bad_request", "message": "the ruleset has 2 problems",
            "details": [{"rule": 2, "message": "sport/dport need proto"}, "interface eth9 does not exist"]}}"#;
        assert_eq!(
            api_error_text(body),
            "the ruleset has 2 problems\n  rule 3: sport/dport need proto\n  interface eth9 does not exist"
        );
        assert_eq!(api_error_text("plain text"), "plain text");
        let e = ClientError::Status {
            status: 404,
            path: "/x".into(),
            body: r#"{"error": {"code": "not_found", "message": "no such resource: /x"}}"#.into(),
        };
        assert_eq!(
            e.to_string(),
            "the API answered 404 for /x: no such resource: /x"
        );
    }

    /// A one-shot server on loopback that answers `status` with `body` and
    /// hands back the request it saw.
    fn serve_once(status: &str, body: &str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            loop {
                let n = s.read(&mut buf).expect("read");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.parse::<usize>().expect("length"));
                    if rest.len() >= len || n == 0 {
                        break;
                    }
                }
            }
            s.write_all(answer.as_bytes()).expect("write");
            String::from_utf8_lossy(&seen).to_string()
        });
        (addr, handle)
    }

    #[test]
    fn post_sends_json_and_reads_json() {
        let (addr, server) = serve_once("201 Created", r#"{"commit": 7}"#);
        let v = post_json(addr, "/api/v1/x", &serde_json::json!({"a": 1})).expect("post");
        assert_eq!(v["commit"], 7);
        let seen = server.join().expect("server");
        assert!(seen.starts_with("POST /api/v1/x HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.contains("Content-Type: application/json\r\n"),
            "{seen}"
        );
        assert!(seen.ends_with(r#"{"a":1}"#), "{seen}");
    }

    #[test]
    fn put_non_2xx_is_a_status_error_with_the_body() {
        let (addr, server) = serve_once(
            "400 Bad Request",
            r#"{"error": {"code": "bad_request", "message": "bad", "details": ["one"]}}"#,
        );
        let err = put_json(addr, "/api/v1/y", &serde_json::json!([])).expect_err("400");
        assert!(
            matches!(err, ClientError::Status { status: 400, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "the API answered 400 for /api/v1/y: bad\n  one"
        );
        assert!(server.join().expect("server").starts_with("PUT "));
    }

    #[test]
    fn delete_sends_no_body_and_reads_json() {
        let (addr, server) = serve_once("200 OK", r#"{"deleted": 3}"#);
        let v = delete_json(addr, "/api/v1/conntrack?proto=tcp").expect("delete");
        assert_eq!(v["deleted"], 3);
        let seen = server.join().expect("server");
        assert!(
            seen.starts_with("DELETE /api/v1/conntrack?proto=tcp HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(!seen.contains("Content-Length"), "{seen}");
    }
}
