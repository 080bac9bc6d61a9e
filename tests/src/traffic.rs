//! Real traffic between lab hosts, from Rust threads that enter the hosts'
//! namespaces: byte-exact TCP transfers and counted UDP bursts. Every
//! operation is bounded in time and stops by itself.
use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use xdpgate::netns;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Deterministic payload: byte i of a transfer is a function of i.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Send `len` bytes over TCP from namespace `src` to `dst` (listening in
/// namespace `dst_ns`) and return what arrived.
pub fn tcp_transfer(
    src: &str,
    dst_ns: &str,
    dst: IpAddr,
    port: u16,
    len: usize,
) -> Result<Vec<u8>, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let dst_ns_owned = dst_ns.to_owned();
    let server = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        netns::in_netns(&dst_ns_owned, || {
            let l =
                TcpListener::bind(SocketAddr::new(dst, port)).map_err(|e| format!("bind: {e}"))?;
            ready_tx.send(()).map_err(|e| e.to_string())?;
            let (mut s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            let mut buf = Vec::with_capacity(len);
            s.read_to_end(&mut buf).map_err(|e| format!("read: {e}"))?;
            Ok(buf)
        })
        .map_err(|e| e.to_string())?
    });
    ready_rx
        .recv_timeout(TIMEOUT)
        .map_err(|_| "server did not start".to_owned())?;
    let data = pattern(len);
    netns::in_netns(src, || -> Result<(), String> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(dst, port), TIMEOUT)
            .map_err(|e| format!("connect {dst}:{port}: {e}"))?;
        s.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.write_all(&data).map_err(|e| format!("write: {e}"))?;
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())??;
    server.join().map_err(|_| "server panicked".to_owned())?
}

/// Send `count` UDP datagrams of `size` bytes from `src` to `dst` and count
/// the intact ones that arrive (payload checked).
pub fn udp_burst(
    src: &str,
    dst_ns: &str,
    dst: IpAddr,
    port: u16,
    count: u32,
    size: usize,
) -> Result<u32, String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let dst_ns_owned = dst_ns.to_owned();
    let payload = pattern(size);
    let expect = payload.clone();
    let server = std::thread::spawn(move || -> Result<u32, String> {
        netns::in_netns(&dst_ns_owned, || {
            let s =
                UdpSocket::bind(SocketAddr::new(dst, port)).map_err(|e| format!("bind: {e}"))?;
            big_receive_buffer(&s);
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .map_err(|e| e.to_string())?;
            ready_tx.send(()).map_err(|e| e.to_string())?;
            let mut got = 0;
            let mut buf = vec![0u8; size + 64];
            while got < count {
                match s.recv(&mut buf) {
                    Ok(n) if n == size && buf[4..n] == expect[4..] => got += 1,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            Ok(got)
        })
        .map_err(|e| e.to_string())?
    });
    ready_rx
        .recv_timeout(TIMEOUT)
        .map_err(|_| "server did not start".to_owned())?;
    netns::in_netns(src, || -> Result<(), String> {
        let bind: SocketAddr = if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .expect("static");
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        let mut p = payload.clone();
        for i in 0..count {
            p[..4].copy_from_slice(&i.to_be_bytes());
            s.send_to(&p, SocketAddr::new(dst, port))
                .map_err(|e| format!("send: {e}"))?;
            // Pace lightly: this checks delivery, not throughput.
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())??;
    server.join().map_err(|_| "server panicked".to_owned())?
}

/// 8 MiB of receive buffer (SO_RCVBUFFORCE, root only): a burst must not
/// be lost in the receiving socket when the test box is busy.
pub fn big_receive_buffer(s: &UdpSocket) {
    use std::os::fd::AsRawFd as _;
    let size: libc::c_int = 8 << 20;
    // SAFETY: a valid socket fd and an int option.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The kernel's own SNMP counters of namespace `ns`, as `nstat` reads them
/// (`nstat -saz`: absolute values, no history file, zeros included).
pub fn nstat(ns: &str) -> std::collections::HashMap<String, u64> {
    let out = netns::exec(ns, ["nstat", "-saz"]).expect("nstat (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.parse().ok()?))
        })
        .collect()
}
