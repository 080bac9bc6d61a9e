//! A minimal HTTP/1.1 client for the CLI (`xdpgate stats`, `lab status`):
//! one GET, `Connection: close`, JSON body. The daemon is local, so this
//! avoids pulling a full HTTP client into the binary.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

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
    #[error("the API answered {status} for {path}: {body}")]
    Status {
        status: u16,
        path: String,
        body: String,
    },
    #[error("the API sent a response that is not HTTP/1.1")]
    Malformed,
    #[error("the API sent JSON that does not parse: {0}")]
    Json(#[from] serde_json::Error),
}

/// GET `path` from `addr`, expecting 200 and a JSON body.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value, ClientError> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    let io = |source| ClientError::Io { addr, source };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or(ClientError::Malformed)?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ClientError::Malformed)?;
    if status != 200 {
        return Err(ClientError::Status {
            status,
            path: path.to_owned(),
            body: body.trim().to_owned(),
        });
    }
    Ok(serde_json::from_str(body)?)
}
