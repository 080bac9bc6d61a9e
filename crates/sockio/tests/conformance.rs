//! The conformance suite: every test runs once per backend (poll, io_uring,
//! and io_uring with single-shot receives), through `per_backend!`, so the
//! backends are held to the same semantics. Real sockets on loopback.
mod common;

use std::{
    cell::RefCell,
    collections::HashMap,
    io::Read as _,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    os::unix::net::{UnixDatagram, UnixStream},
    rc::Rc,
    sync::Mutex,
    time::Duration,
};

use common::*;
use sockio::{Buf, Errno, Error, Handler, Io, Mode, Msg, SockAddr, SockId, cmsg};

macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod poll {
            $( #[test] fn $name() { super::$name(super::Flavor::Poll) } )*
        }
        mod io_uring {
            $( #[test] fn $name() { super::$name(super::Flavor::Uring) } )*
        }
        mod io_uring_single_shot {
            $( #[test] fn $name() { super::$name(super::Flavor::UringSingleShot) } )*
        }
    };
}

per_backend!(
    udp_echo_is_byte_exact_v4,
    udp_echo_is_byte_exact_v6,
    connected_udp_read_write_and_empty_datagrams,
    tcp_echo_is_byte_exact,
    unix_stream_echo_is_byte_exact,
    stream_writes_complete_in_submission_order,
    datagram_writes_complete_and_arrive_in_order,
    backpressure_queues_writes_until_the_peer_drains,
    datagram_backpressure_keeps_order,
    peer_reset_completes_queued_writes_with_errors,
    closed_sockets_complete_with_errors,
    close_cancels_pending_writes_with_ecanceled,
    dropping_the_loop_with_work_in_flight_frees_every_buffer,
    ten_thousand_sockets_at_once,
    read_disable_holds_data_until_enabled,
    recvmsg_sendmsg_carry_ancillary_data,
    oversized_datagrams_are_reported_not_cut,
    submissions_are_checked,
    tokio_driver_runs_an_echo,
);

/// Echoes every datagram back to its source with the same buffer.
struct UdpEcho;

impl Handler for UdpEcho {
    fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
        let (buf, from) = res.expect("echo server receive");
        io.sendto(id, buf, from).expect("echo server send");
    }
}

/// Echoes a stream; closes on EOF.
struct StreamEcho;

impl Handler for StreamEcho {
    fn read(&mut self, io: &mut Io, id: SockId, res: Result<Buf, Errno>) {
        let buf = res.expect("echo server read");
        if buf.is_empty() {
            io.close(id).expect("close on EOF");
        } else {
            io.write(id, buf).expect("echo server write");
        }
    }
}

fn udp_echo(flavor: Flavor, bind: &str) {
    let mut io = flavor.io();
    let pool = io.pool().clone();
    let server = UdpSocket::bind(bind).expect("bind server");
    let server_addr = server.local_addr().expect("addr");
    let client = UdpSocket::bind(bind).expect("bind client");
    // Bursts of 100 datagrams must not overflow a socket whose reader
    // takes one per iteration (single-shot receives): UDP would drop them.
    for s in [&server, &client] {
        setsockopt_int(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            4 << 20,
        );
    }
    io.register(server, Mode::RecvFromSendTo, UdpEcho)
        .expect("register server");
    let rec = Recorder::new();
    let c = io
        .register(client, Mode::RecvFromSendTo, rec.clone())
        .expect("register client");
    // 300 datagrams of 0..1500 bytes, submitted as a few batches.
    let sent: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let mut p = pattern(i, (i as usize * 37) % 1501);
            if p.len() >= 4 {
                p[..4].copy_from_slice(&i.to_be_bytes());
            }
            p
        })
        .collect();
    for chunk in sent.chunks(100) {
        let batch = chunk
            .iter()
            .map(|p| (pool.from_slice(p), SockAddr::from(server_addr)))
            .collect();
        io.sendto_many(c, batch).expect("sendto_many");
        io.run_once(Some(Duration::ZERO)).expect("run_once");
    }
    run_until(&mut io, "300 echoes", |_| {
        rec.count(|e| matches!(e, Ev::RecvFrom(..))) == 300
    });
    let events = rec.events();
    let got: Vec<Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            Ev::RecvFrom(_, Ok((data, from))) => {
                assert_eq!(from.as_socket(), Some(server_addr), "echo source");
                Some(data.clone())
            }
            Ev::RecvFrom(_, Err(e)) => panic!("receive error {e}"),
            _ => None,
        })
        .collect();
    assert_eq!(got, sent, "echoed payloads differ (content or order)");
    let acks: Vec<(usize, Vec<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            Ev::SendTo(_, r, data, to) => {
                assert_eq!(to.as_socket(), Some(server_addr));
                Some((r.expect("send ok"), data.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 300);
    for ((n, data), want) in acks.iter().zip(&sent) {
        assert_eq!(n, &want.len());
        assert_eq!(data, want, "the send completion returns the same buffer");
    }
    drop(io);
    assert_eq!(pool.live(), 0, "buffers still out after the loop is gone");
}

fn udp_echo_is_byte_exact_v4(flavor: Flavor) {
    udp_echo(flavor, "127.0.0.1:0");
}

fn udp_echo_is_byte_exact_v6(flavor: Flavor) {
    udp_echo(flavor, "[::1]:0");
}

fn connected_udp_read_write_and_empty_datagrams(flavor: Flavor) {
    let mut io = flavor.io();
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    a.connect(b.local_addr().expect("addr")).expect("connect");
    b.connect(a.local_addr().expect("addr")).expect("connect");
    let ra = Recorder::new();
    let rb = Recorder::new();
    let ia = io.register(a, Mode::ReadWrite, ra.clone()).expect("a");
    io.register(b, Mode::ReadWrite, rb.clone()).expect("b");
    let payloads: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), pattern(7, 1400), Vec::new()];
    let bufs = payloads.iter().map(|p| Buf::from_vec(p.clone())).collect();
    io.write_many(ia, bufs).expect("write_many");
    run_until(&mut io, "4 datagrams", |_| {
        rb.count(|e| matches!(e, Ev::Read(..))) == 4
    });
    let got: Vec<Vec<u8>> = rb
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Read(_, r) => Some(r.expect("read ok")),
            _ => None,
        })
        .collect();
    assert_eq!(got, payloads, "an empty datagram is data, not EOF");
    // Reading goes on after empty datagrams.
    io.write(ia, Buf::from_vec(b"after".to_vec()))
        .expect("write");
    run_until(&mut io, "one more datagram", |_| {
        rb.count(|e| matches!(e, Ev::Read(..))) == 5
    });
    let writes = ra.count(|e| matches!(e, Ev::Write(_, Ok(_), _)));
    assert_eq!(writes, 5);
}

/// Stream echo through the loop itself: `ours` writes `total` bytes in
/// chunks and reads the echo; `theirs` is the echo server.
fn stream_echo(
    flavor: Flavor,
    ours: impl Into<std::os::fd::OwnedFd>,
    theirs: impl Into<std::os::fd::OwnedFd>,
) {
    let mut io = flavor.io();
    let pool = io.pool().clone();
    io.register(theirs, Mode::ReadWrite, StreamEcho)
        .expect("register echo");
    type Acks = Rc<RefCell<Vec<(Result<usize, Errno>, usize)>>>;
    let got = Rc::new(RefCell::new(Vec::new()));
    let acks: Acks = Rc::new(RefCell::new(Vec::new()));
    struct Client {
        got: Rc<RefCell<Vec<u8>>>,
        acks: Acks,
    }
    impl Handler for Client {
        fn read(&mut self, _io: &mut Io, _id: SockId, res: Result<Buf, Errno>) {
            self.got
                .borrow_mut()
                .extend_from_slice(&res.expect("client read"));
        }
        fn write(&mut self, _io: &mut Io, _id: SockId, res: Result<usize, Errno>, buf: Buf) {
            self.acks.borrow_mut().push((res, buf.len()));
        }
    }
    let c = io
        .register(
            ours,
            Mode::ReadWrite,
            Client {
                got: got.clone(),
                acks: acks.clone(),
            },
        )
        .expect("register client");
    let total = 4 << 20;
    let data = pattern(42, total);
    let mut off = 0;
    let mut sizes = Vec::new();
    let mut i = 0usize;
    while off < total {
        let n = (1 + (i * 7919) % 9000).min(total - off);
        io.write(c, Buf::from_vec(data[off..off + n].to_vec()))
            .expect("write");
        sizes.push(n);
        off += n;
        i += 1;
        if i.is_multiple_of(64) {
            io.run_once(Some(Duration::ZERO)).expect("run_once");
        }
    }
    run_until(&mut io, "the whole echo", |_| got.borrow().len() >= total);
    assert_eq!(got.borrow().len(), total);
    assert!(*got.borrow() == data, "echoed bytes differ");
    let acks = acks.borrow();
    assert_eq!(acks.len(), sizes.len());
    for ((res, len), want) in acks.iter().zip(&sizes) {
        assert_eq!(*res, Ok(*want), "a write completed short or failed");
        assert_eq!(len, want);
    }
    drop(acks);
    // Closing our end makes the echo side see EOF and close too.
    io.close(c).expect("close");
    run_until(&mut io, "both sides closed", |io| io.is_empty());
    drop(io);
    assert_eq!(pool.live(), 0);
}

fn tcp_echo_is_byte_exact(flavor: Flavor) {
    let (a, b) = tcp_pair();
    stream_echo(flavor, a, b);
}

fn unix_stream_echo_is_byte_exact(flavor: Flavor) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    stream_echo(flavor, a, b);
}

fn stream_writes_complete_in_submission_order(flavor: Flavor) {
    let mut io = flavor.io();
    let (a, mut peer) = tcp_pair();
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let mut expect = Vec::new();
    for i in 0..2000u32 {
        let mut p = pattern(i, 1 + (i as usize * 131) % 3000);
        p[0] = (i % 251) as u8;
        expect.push(p.clone());
        io.write(id, Buf::from_vec(p)).expect("write");
        if i % 500 == 0 {
            io.run_once(Some(Duration::ZERO)).expect("run_once");
        }
    }
    let total: usize = expect.iter().map(Vec::len).sum();
    let reader = std::thread::spawn(move || {
        let mut v = vec![0u8; total];
        peer.read_exact(&mut v).expect("peer read");
        v
    });
    run_until(&mut io, "2000 write completions", |_| {
        rec.count(|e| matches!(e, Ev::Write(..))) == 2000
    });
    let got: Vec<Vec<u8>> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Write(_, r, data) => {
                assert_eq!(r, Ok(data.len()));
                Some(data)
            }
            _ => None,
        })
        .collect();
    assert!(got == expect, "completions out of submission order");
    let wire = reader.join().expect("reader");
    assert!(wire == expect.concat(), "bytes on the wire out of order");
}

fn datagram_writes_complete_and_arrive_in_order(flavor: Flavor) {
    let mut io = flavor.io();
    let (a, b) = UnixDatagram::pair().expect("socketpair");
    let ra = Recorder::new();
    let rb = Recorder::new();
    let ia = io.register(a, Mode::ReadWrite, ra.clone()).expect("a");
    io.register(b, Mode::ReadWrite, rb.clone()).expect("b");
    for i in 0..500u32 {
        io.write(ia, Buf::from_vec(i.to_be_bytes().to_vec()))
            .expect("write");
    }
    run_until(&mut io, "500 datagrams", |_| {
        rb.count(|e| matches!(e, Ev::Read(..))) == 500
    });
    let seq = |rec: &Recorder, read: bool| -> Vec<u32> {
        rec.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Read(_, Ok(d)) if read => Some(d),
                Ev::Write(_, Ok(4), d) if !read => Some(d),
                _ => None,
            })
            .map(|d| u32::from_be_bytes(d[..4].try_into().expect("4 bytes")))
            .collect()
    };
    let want: Vec<u32> = (0..500).collect();
    assert_eq!(seq(&ra, false), want, "completion order");
    assert_eq!(seq(&rb, true), want, "arrival order");
}

const CHUNK: usize = 64 << 10;

/// Queue `n` 64 KiB writes tagged in their first 4 bytes.
fn queue_tagged(io: &mut Io, id: SockId, n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = pattern(i, CHUNK);
            p[..4].copy_from_slice(&i.to_be_bytes());
            io.write(id, Buf::from_vec(p.clone())).expect("write");
            p
        })
        .collect()
}

fn write_events(rec: &Recorder) -> Vec<(Result<usize, Errno>, Vec<u8>)> {
    rec.events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Write(_, r, d) => Some((r, d)),
            _ => None,
        })
        .collect()
}

fn backpressure_queues_writes_until_the_peer_drains(flavor: Flavor) {
    let mut io = flavor.io();
    let (a, mut peer) = tcp_pair();
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let sent = queue_tagged(&mut io, id, 256); // 16 MiB
    // The peer does not read: after 30 iterations some writes are done,
    // most are queued, and none failed.
    run_for(&mut io, 30);
    let done = write_events(&rec);
    assert!(
        done.len() < 256,
        "all 16 MiB were accepted with the peer not reading"
    );
    assert!(
        done.iter().all(|(r, _)| r.is_ok()),
        "a full socket produced an error: {:?}",
        done.iter().find(|(r, _)| r.is_err()).map(|(r, _)| r)
    );
    assert_eq!(io.outstanding(id), 256 - done.len());
    // The peer drains: everything completes, in order, byte-exact.
    let reader = std::thread::spawn(move || {
        let mut v = vec![0u8; 256 * CHUNK];
        peer.read_exact(&mut v).expect("peer read");
        v
    });
    run_until(&mut io, "all 256 writes", |_| {
        write_events(&rec).len() == 256
    });
    let all = write_events(&rec);
    for ((r, data), want) in all.iter().zip(&sent) {
        assert_eq!(*r, Ok(CHUNK));
        assert!(data == want, "a buffer came back changed or out of order");
    }
    assert!(reader.join().expect("reader") == sent.concat());
    assert_eq!(io.outstanding(id), 0);
}

fn datagram_backpressure_keeps_order(flavor: Flavor) {
    // A unix datagram peer that does not read: its queue fills
    // (net.unix.max_dgram_qlen), sends get EAGAIN inside the loop, and the
    // rest waits, in order, until the peer reads.
    let mut io = flavor.io();
    let (a, peer) = UnixDatagram::pair().expect("socketpair");
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let n = 5000u32;
    for i in 0..n {
        let mut p = pattern(i, 200);
        p[..4].copy_from_slice(&i.to_be_bytes());
        io.write(id, Buf::from_vec(p)).expect("write");
    }
    run_for(&mut io, 20);
    let done = write_events(&rec);
    assert!(
        (done.len() as u32) < n,
        "the peer took all {n} datagrams without reading"
    );
    assert!(
        done.iter().all(|(r, _)| r.is_ok()),
        "a full peer produced an error"
    );
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(n as usize);
        let mut buf = [0u8; 512];
        for _ in 0..n {
            let len = peer.recv(&mut buf).expect("peer recv");
            got.push(buf[..len].to_vec());
        }
        got
    });
    run_until(&mut io, "every datagram sent", |_| {
        write_events(&rec).len() == n as usize
    });
    let sent: Vec<u32> = write_events(&rec)
        .into_iter()
        .map(|(r, d)| {
            assert_eq!(r, Ok(200));
            u32::from_be_bytes(d[..4].try_into().expect("4"))
        })
        .collect();
    assert_eq!(sent, (0..n).collect::<Vec<_>>(), "completion order");
    let arrived: Vec<u32> = reader
        .join()
        .expect("reader")
        .into_iter()
        .map(|d| u32::from_be_bytes(d[..4].try_into().expect("4")))
        .collect();
    assert_eq!(arrived, (0..n).collect::<Vec<_>>(), "arrival order");
}

fn peer_reset_completes_queued_writes_with_errors(flavor: Flavor) {
    let mut io = flavor.io();
    let (a, peer) = tcp_pair();
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let sent = queue_tagged(&mut io, id, 64);
    run_for(&mut io, 20);
    assert!(
        io.outstanding(id) > 0,
        "nothing is queued: no back-pressure"
    );
    // SO_LINGER {on, 0}: close sends RST (socket(7)).
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a linger struct on a valid socket.
    unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(peer);
    run_until(&mut io, "every write back", |_| {
        write_events(&rec).len() == 64
    });
    let all = write_events(&rec);
    for ((_, data), want) in all.iter().zip(&sent) {
        assert!(data == want, "buffers came back changed or out of order");
    }
    let failed: Vec<Errno> = all.iter().filter_map(|(r, _)| r.err()).collect();
    assert!(!failed.is_empty(), "no write failed after a reset");
    for e in &failed {
        assert!(
            [Errno::ECONNRESET, Errno::EPIPE].contains(e),
            "unexpected error {e}"
        );
    }
    // Once one failed, every later one failed too.
    let first_err = all.iter().position(|(r, _)| r.is_err()).expect("an error");
    assert!(all[first_err..].iter().all(|(r, _)| r.is_err()));
    // The read side reports the reset once and stops: ECONNRESET, or EOF
    // when a write consumed the socket error first (tcp_reset() sets
    // sk_err once; later calls see the shut-down socket).
    run_until(&mut io, "the reset on the read side", |_| {
        rec.count(|e| matches!(e, Ev::Read(..))) > 0
    });
    run_for(&mut io, 5);
    let reads: Vec<Ev> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Read(..)))
        .collect();
    assert!(
        reads == [Ev::Read(id, Err(Errno::ECONNRESET))] || reads == [Ev::Read(id, Ok(Vec::new()))],
        "one read error or EOF, then reading stops: {reads:?}"
    );
    assert_eq!(io.outstanding(id), 0);
}

fn closed_sockets_complete_with_errors(flavor: Flavor) {
    let mut io = flavor.io();
    // A stream we shut down for writing: every write fails with EPIPE.
    let (a, _peer) = tcp_pair();
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let fd = io.raw_fd(id).expect("fd");
    // SAFETY: shutdown(2) on the socket the loop owns; it stays open.
    assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, 0);
    for i in 0..3u8 {
        io.write(id, Buf::from_vec(vec![i; 100])).expect("write");
    }
    run_until(&mut io, "3 failed writes", |_| {
        write_events(&rec).len() == 3
    });
    for (i, (r, data)) in write_events(&rec).into_iter().enumerate() {
        assert_eq!(r, Err(Errno::EPIPE));
        assert_eq!(data, vec![i as u8; 100], "buffer came back intact");
    }
    // A connected UDP socket to a port nobody listens on: the ICMP error
    // comes back as ECONNREFUSED, and every buffer still comes back.
    let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
    u.connect(dead).expect("connect");
    let ru = Recorder::new();
    let uid = io.register(u, Mode::ReadWrite, ru.clone()).expect("reg");
    for i in 0..5u8 {
        io.write(uid, Buf::from_vec(vec![i; 10])).expect("write");
        io.run_once(Some(Duration::from_millis(5))).expect("run");
    }
    run_until(&mut io, "5 write completions", |_| {
        write_events(&ru).len() == 5
    });
    run_for(&mut io, 3);
    let refused = ru.count(|e| {
        matches!(
            e,
            Ev::Write(_, Err(Errno::ECONNREFUSED), _) | Ev::Read(_, Err(Errno::ECONNREFUSED))
        )
    });
    assert!(refused > 0, "no ECONNREFUSED: {:?}", ru.events());
    // Reading on a datagram socket goes on after such an error.
    let fd = io.raw_fd(uid).expect("fd");
    assert!(fd >= 0);
    assert!(io.outstanding(uid) == 0);
}

fn close_cancels_pending_writes_with_ecanceled(flavor: Flavor) {
    let mut io = flavor.io();
    let pool = io.pool().clone();
    let (a, _peer) = tcp_pair();
    let rec = Recorder::new();
    let id = io.register(a, Mode::ReadWrite, rec.clone()).expect("reg");
    let sent = queue_tagged(&mut io, id, 64);
    run_for(&mut io, 20);
    let pending = io.outstanding(id);
    assert!(pending > 0, "nothing pending: no back-pressure");
    let done_before = write_events(&rec).len();
    io.close(id).expect("close");
    // Closed sockets refuse new work and hand the buffer back.
    let err = io
        .write(id, Buf::from_vec(b"late".to_vec()))
        .expect_err("write after close");
    assert!(matches!(err.error, Error::Closing { .. }), "{err}");
    assert_eq!(&err.op[..], b"late");
    run_until(&mut io, "closed", |_| {
        rec.count(|e| matches!(e, Ev::Closed(_))) == 1
    });
    let events = rec.events();
    assert!(
        matches!(events.last(), Some(Ev::Closed(_))),
        "closed is the last callback"
    );
    let all = write_events(&rec);
    assert_eq!(all.len(), 64, "every buffer came back exactly once");
    for ((_, data), want) in all.iter().zip(&sent) {
        assert!(data == want, "buffers out of order");
    }
    let cancelled = all
        .iter()
        .filter(|(r, _)| *r == Err(Errno::ECANCELED))
        .count();
    assert_eq!(
        cancelled, pending,
        "the writes pending at close completed with ECANCELED"
    );
    assert!(all[..done_before].iter().all(|(r, _)| r.is_ok()));
    // The slot is gone.
    assert!(matches!(
        io.read_enable(id),
        Err(Error::UnknownSocket { .. })
    ));
    // Writes that never reached the kernel are cancelled the same way.
    let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = u.local_addr().expect("addr");
    let ru = Recorder::new();
    let uid = io
        .register(u, Mode::RecvFromSendTo, ru.clone())
        .expect("reg");
    for i in 0..10u8 {
        io.sendto(uid, Buf::from_vec(vec![i]), to).expect("sendto");
    }
    io.close(uid).expect("close");
    run_until(&mut io, "closed", |_| {
        ru.count(|e| matches!(e, Ev::Closed(_))) == 1
    });
    let got: Vec<Vec<u8>> = ru
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::SendTo(_, r, d, _) => {
                assert_eq!(r, Err(Errno::ECANCELED));
                Some(d)
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    drop(io);
    assert_eq!(pool.live(), 0);
}

fn dropping_the_loop_with_work_in_flight_frees_every_buffer(flavor: Flavor) {
    let mut io = flavor.io();
    let pool = io.pool().clone();
    let (a, _peer) = tcp_pair();
    let id = io
        .register(a, Mode::ReadWrite, Recorder::new())
        .expect("reg");
    let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
    io.register(u, Mode::RecvFromSendTo, Recorder::new())
        .expect("reg");
    for _ in 0..64 {
        let mut b = io.buf();
        b.set_len(b.capacity());
        io.write(id, b).expect("write");
    }
    run_for(&mut io, 10);
    assert!(io.outstanding(id) > 0, "nothing in flight");
    assert!(pool.live() > 0);
    // Receives armed, sends parked in the kernel, writes queued: dropping
    // the loop cancels and drains everything before freeing any buffer.
    drop(io);
    assert_eq!(pool.live(), 0, "buffers leaked or still out");
}

/// The 10k-socket test holds 10,001 descriptors; two at once would pass
/// RLIMIT_NOFILE's hard limit here (20,000), so they take turns.
static MANY_SOCKETS: Mutex<()> = Mutex::new(());

fn ten_thousand_sockets_at_once(flavor: Flavor) {
    const N: usize = 10_000;
    let _turn = MANY_SOCKETS.lock().unwrap_or_else(|p| p.into_inner());
    let limit = raise_nofile();
    assert!(limit > N as u64 + 100, "RLIMIT_NOFILE {limit} too low");
    let mut io = flavor.io();
    let rec = Recorder::new();
    let mut ids = Vec::with_capacity(N);
    let mut addrs = Vec::with_capacity(N);
    for _ in 0..N {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        addrs.push(s.local_addr().expect("addr"));
        ids.push(
            io.register(s, Mode::RecvFromSendTo, rec.clone())
                .expect("register"),
        );
    }
    assert_eq!(io.len(), N);
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let sender_addr = sender.local_addr().expect("addr");
    setsockopt_int(
        sender.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        32 << 20,
    );
    for (i, a) in addrs.iter().enumerate() {
        sender.send_to(&(i as u32).to_be_bytes(), a).expect("send");
    }
    run_until(&mut io, "10k datagrams", |_| {
        rec.count(|e| matches!(e, Ev::RecvFrom(..))) == N
    });
    let by_id: HashMap<SockId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for e in rec.events() {
        if let Ev::RecvFrom(id, r) = e {
            let (data, from) = r.expect("receive");
            assert_eq!(from.as_socket(), Some(sender_addr));
            let want = by_id[&id] as u32;
            assert_eq!(
                data,
                want.to_be_bytes(),
                "datagram reached the wrong socket"
            );
        }
    }
    // Every socket answers in one batch of 10k sends.
    for (i, id) in ids.iter().enumerate() {
        io.sendto(
            *id,
            Buf::from_vec((i as u32).to_be_bytes().to_vec()),
            sender_addr,
        )
        .expect("sendto");
    }
    run_until(&mut io, "10k send completions", |_| {
        rec.count(|e| matches!(e, Ev::SendTo(..))) == N
    });
    assert_eq!(rec.count(|e| matches!(e, Ev::SendTo(_, Ok(4), _, _))), N);
    sender
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut seen = vec![false; N];
    let mut buf = [0u8; 16];
    for _ in 0..N {
        let (n, from) = sender.recv_from(&mut buf).expect("answer");
        assert_eq!(n, 4);
        let i = u32::from_be_bytes(buf[..4].try_into().expect("4")) as usize;
        assert_eq!(from, addrs[i], "answer from the wrong socket");
        seen[i] = true;
    }
    assert!(seen.iter().all(|&s| s));
    for id in &ids {
        io.close(*id).expect("close");
    }
    run_until(&mut io, "10k closed", |io| io.is_empty());
}

fn read_disable_holds_data_until_enabled(flavor: Flavor) {
    let mut io = flavor.io();
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = s.local_addr().expect("addr");
    let rec = Recorder::new();
    let id = io
        .register(s, Mode::RecvFromSendTo, rec.clone())
        .expect("reg");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    tx.send_to(b"first", to).expect("send");
    run_until(&mut io, "first datagram", |_| rec.events().len() == 1);
    io.read_disable(id).expect("disable");
    for i in 0..5u8 {
        tx.send_to(&[i; 3], to).expect("send");
    }
    run_for(&mut io, 10);
    assert_eq!(rec.events().len(), 1, "read callbacks while disabled");
    io.read_enable(id).expect("enable");
    run_until(&mut io, "5 held datagrams", |_| rec.events().len() == 6);
    let got: Vec<Vec<u8>> = rec
        .events()
        .into_iter()
        .skip(1)
        .map(|e| match e {
            Ev::RecvFrom(_, Ok((d, _))) => d,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, (0..5u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
}

fn recvmsg_sendmsg_carry_ancillary_data(flavor: Flavor) {
    let mut io = flavor.io();
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = rx.local_addr().expect("addr");
    setsockopt_int(rx.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
    let tx = UdpSocket::bind("0.0.0.0:0").expect("bind");
    let tx_port = tx.local_addr().expect("addr").port();
    let rr = Recorder::new();
    let rt = Recorder::new();
    io.register(rx, Mode::RecvMsgSendMsg, rr.clone())
        .expect("reg rx");
    let tid = io
        .register(tx, Mode::RecvMsgSendMsg, rt.clone())
        .expect("reg tx");
    // IP_PKTINFO on send picks the source address (ip(7)): 127.0.0.2 is
    // as local as 127.0.0.1 on lo.
    let mut c = cmsg::CmsgBuf::new();
    c.ipv4_source("127.0.0.2".parse().expect("static"));
    let msg = Msg::new(Buf::from_vec(b"with pktinfo".to_vec()))
        .to(to)
        .with_control(c);
    io.sendmsg(tid, msg).expect("sendmsg");
    run_until(&mut io, "the message", |_| {
        rr.count(|e| matches!(e, Ev::RecvMsg(..))) == 1
    });
    let Ev::RecvMsg(_, Ok((data, from, control, flags))) = rr.events().remove(0) else {
        panic!("{:?}", rr.events())
    };
    assert_eq!(data, b"with pktinfo");
    assert_eq!(flags & libc::MSG_TRUNC, 0);
    assert_eq!(
        from.and_then(|a| a.as_socket()),
        Some(SocketAddr::from(([127, 0, 0, 2], tx_port))),
        "the control data on send chose the source"
    );
    let info = cmsg::parse(&control)
        .find_map(|c| c.ipv4_pktinfo())
        .expect("IP_PKTINFO on receive");
    assert_eq!(info.1, std::net::Ipv4Addr::LOCALHOST, "destination address");
    assert!(info.0 > 0, "interface index");
    assert_eq!(rt.count(|e| matches!(e, Ev::SendMsg(_, Ok(12), _))), 1);
}

fn oversized_datagrams_are_reported_not_cut(flavor: Flavor) {
    let mut io = flavor.build(flavor.builder().max_payload(512).max_control(64));
    let cap = io.buf().capacity();
    let big = pattern(1, cap + 1000);
    for mode in [Mode::ReadWrite, Mode::RecvFromSendTo, Mode::RecvMsgSendMsg] {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = s.local_addr().expect("addr");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        if mode == Mode::ReadWrite {
            s.connect(tx.local_addr().expect("addr")).expect("connect");
        }
        let rec = Recorder::new();
        io.register(s, mode, rec.clone()).expect("reg");
        tx.send_to(&big, to).expect("send big");
        tx.send_to(b"small", to).expect("send small");
        run_until(&mut io, "2 receives", |_| rec.events().len() == 2);
        let ev = rec.events();
        match mode {
            Mode::ReadWrite => {
                assert_eq!(ev[0], Ev::Read(ev_id(&ev[0]), Err(Errno::EMSGSIZE)));
                assert!(matches!(&ev[1], Ev::Read(_, Ok(d)) if d == b"small"));
            }
            Mode::RecvFromSendTo => {
                assert!(matches!(ev[0], Ev::RecvFrom(_, Err(Errno::EMSGSIZE))));
                assert!(matches!(&ev[1], Ev::RecvFrom(_, Ok((d, _))) if d == b"small"));
            }
            Mode::RecvMsgSendMsg => {
                let Ev::RecvMsg(_, Ok((d, _, _, flags))) = &ev[0] else {
                    panic!("{ev:?}")
                };
                assert_ne!(flags & libc::MSG_TRUNC, 0, "MSG_TRUNC reported");
                assert!(d.len() >= 512 && d[..] == big[..d.len()], "a prefix");
                assert!(matches!(&ev[1], Ev::RecvMsg(_, Ok((d, _, _, _))) if d == b"small"));
            }
        }
    }
}

fn ev_id(e: &Ev) -> SockId {
    match e {
        Ev::Read(id, _) | Ev::RecvFrom(id, _) | Ev::RecvMsg(id, _) => *id,
        other => panic!("{other:?}"),
    }
}

fn submissions_are_checked(flavor: Flavor) {
    let mut io = flavor.build(flavor.builder().queue_limit(3));
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let to = s.local_addr().expect("addr");
    let id = io
        .register(s, Mode::RecvFromSendTo, Recorder::new())
        .expect("reg");
    let e = io
        .write(id, Buf::from_vec(b"x".to_vec()))
        .expect_err("write in sendto mode");
    assert!(matches!(e.error, Error::WrongMode { .. }), "{e}");
    assert_eq!(&e.op[..], b"x");
    let batch: Vec<(Buf, SockAddr)> = (0..4)
        .map(|_| (Buf::from_vec(vec![1]), to.into()))
        .collect();
    let e = io.sendto_many(id, batch).expect_err("over the limit");
    assert!(matches!(e.error, Error::QueueFull { limit: 3, .. }), "{e}");
    assert_eq!(e.op.len(), 4, "all four handed back");
    // A non-socket is refused.
    let file = std::fs::File::open("/proc/self/stat").expect("open");
    assert!(matches!(
        io.register(file, Mode::ReadWrite, Recorder::new()),
        Err(Error::NotASocket { .. })
    ));
    // Running the loop from a callback is refused.
    struct Nested(Rc<RefCell<Option<bool>>>);
    impl Handler for Nested {
        fn recvfrom(&mut self, io: &mut Io, _: SockId, _: Result<(Buf, SockAddr), Errno>) {
            *self.0.borrow_mut() = Some(matches!(io.run_once(None), Err(Error::Reentrant)));
        }
    }
    let flag = Rc::new(RefCell::new(None));
    let n = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let nto = n.local_addr().expect("addr");
    io.register(n, Mode::RecvFromSendTo, Nested(flag.clone()))
        .expect("reg");
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .send_to(b"x", nto)
        .expect("send");
    run_until(&mut io, "the nested call", |_| flag.borrow().is_some());
    assert_eq!(*flag.borrow(), Some(true));
}

fn tokio_driver_runs_an_echo(flavor: Flavor) {
    use sockio::tokio::Driver;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let driver = Driver::new(flavor.io());
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = server.local_addr().expect("addr");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        struct Forward(tokio::sync::mpsc::UnboundedSender<Vec<u8>>);
        impl Handler for Forward {
            fn recvfrom(&mut self, _: &mut Io, _: SockId, r: Result<(Buf, SockAddr), Errno>) {
                let _ = self.0.send(r.expect("receive").0.to_vec());
            }
        }
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let cid = driver.with(|io| {
            io.register(server, Mode::RecvFromSendTo, UdpEcho)
                .expect("reg server");
            io.register(client, Mode::RecvFromSendTo, Forward(tx))
                .expect("reg client")
        });
        let d = driver.clone();
        let task = tokio::task::spawn_local(async move { d.run().await });
        for i in 0..200u32 {
            driver.with(|io| {
                io.sendto(cid, Buf::from_vec(i.to_be_bytes().to_vec()), to)
                    .expect("send")
            });
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("echo within 10 s")
                .expect("channel open");
            assert_eq!(got, i.to_be_bytes(), "echo {i}");
        }
        task.abort();
    });
}
