//! Helpers shared by the sockio test files: backend flavours, a recording
//! handler, a bounded loop runner and socket options. Tests panic with a
//! reason; they do not return errors.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    cell::RefCell,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    time::{Duration, Instant},
};

use sockio::{BackendKind, Buf, Builder, Errno, Handler, Io, Msg, SockAddr, SockId};

/// The backends (and the io_uring variant without provided-buffer rings)
/// every conformance test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Poll,
    Uring,
    UringSingleShot,
}

impl Flavor {
    /// A builder for this flavour. io_uring never falls back here: a test
    /// meant for io_uring fails if io_uring cannot be set up.
    pub fn builder(self) -> Builder {
        let b = Io::builder().fallback(false).queue_limit(1 << 16);
        match self {
            Flavor::Poll => b.backend(BackendKind::Poll),
            Flavor::Uring => b.backend(BackendKind::IoUring),
            Flavor::UringSingleShot => b.backend(BackendKind::IoUring).multishot(false),
        }
    }

    #[track_caller]
    pub fn io(self) -> Io {
        self.build(self.builder())
    }

    #[track_caller]
    pub fn build(self, b: Builder) -> Io {
        let io = b.build().expect("building the loop");
        let want = match self {
            Flavor::Poll => BackendKind::Poll,
            Flavor::Uring | Flavor::UringSingleShot => BackendKind::IoUring,
        };
        assert_eq!(io.backend(), want, "the loop runs another backend");
        io
    }
}

/// A received message: payload, source, control data, flags.
pub type MsgParts = (Vec<u8>, Option<SockAddr>, Vec<u8>, i32);

/// What a [`Recorder`] saw, with buffer contents copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Read(SockId, Result<Vec<u8>, Errno>),
    Write(SockId, Result<usize, Errno>, Vec<u8>),
    RecvFrom(SockId, Result<(Vec<u8>, SockAddr), Errno>),
    SendTo(SockId, Result<usize, Errno>, Vec<u8>, SockAddr),
    RecvMsg(SockId, Result<MsgParts, Errno>),
    SendMsg(SockId, Result<usize, Errno>, Vec<u8>),
    Closed(SockId),
}

pub type Log = Rc<RefCell<Vec<Ev>>>;

/// Records every completion.
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Log,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<Ev> {
        self.log.borrow().clone()
    }

    pub fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
        self.log.borrow().iter().filter(|e| f(e)).count()
    }
}

impl Handler for Recorder {
    fn read(&mut self, _io: &mut Io, id: SockId, res: Result<Buf, Errno>) {
        self.log
            .borrow_mut()
            .push(Ev::Read(id, res.map(|b| b.to_vec())));
    }
    fn write(&mut self, _io: &mut Io, id: SockId, res: Result<usize, Errno>, buf: Buf) {
        self.log.borrow_mut().push(Ev::Write(id, res, buf.to_vec()));
    }
    fn recvfrom(&mut self, _io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
        self.log
            .borrow_mut()
            .push(Ev::RecvFrom(id, res.map(|(b, a)| (b.to_vec(), a))));
    }
    fn sendto(
        &mut self,
        _io: &mut Io,
        id: SockId,
        res: Result<usize, Errno>,
        buf: Buf,
        to: SockAddr,
    ) {
        self.log
            .borrow_mut()
            .push(Ev::SendTo(id, res, buf.to_vec(), to));
    }
    fn recvmsg(&mut self, _io: &mut Io, id: SockId, res: Result<Msg, Errno>) {
        self.log.borrow_mut().push(Ev::RecvMsg(
            id,
            res.map(|m| (m.buf.to_vec(), m.addr, m.control.clone(), m.flags)),
        ));
    }
    fn sendmsg(&mut self, _io: &mut Io, id: SockId, res: Result<usize, Errno>, msg: Msg) {
        self.log
            .borrow_mut()
            .push(Ev::SendMsg(id, res, msg.buf.to_vec()));
    }
    fn closed(&mut self, _io: &mut Io, id: SockId) {
        self.log.borrow_mut().push(Ev::Closed(id));
    }
}

/// Run the loop until `done` holds; a hang guard, not a timing check.
#[track_caller]
pub fn run_until(io: &mut Io, what: &str, mut done: impl FnMut(&mut Io) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(io) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        io.run_once(Some(Duration::from_millis(10)))
            .expect("run_once");
    }
}

/// Run the loop for `iterations` rounds of at most 10 ms.
pub fn run_for(io: &mut Io, iterations: usize) {
    for _ in 0..iterations {
        io.run_once(Some(Duration::from_millis(10)))
            .expect("run_once");
    }
}

/// Deterministic bytes: byte i of stream `seed` is a function of (seed, i).
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, v: i32) {
    // SAFETY: an int option on a valid socket.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
}

/// Small kernel buffers on both ends, so a few hundred KB fill the path
/// and back-pressure is certain (an explicit SO_RCVBUF also turns off TCP
/// receive autotuning, tcp(7)).
pub fn small_buffers(fd: &impl AsRawFd) {
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 32 << 10);
    setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 32 << 10);
}

/// A connected TCP pair on loopback: (ours, peer), small buffers on both.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    small_buffers(&l);
    let a = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    small_buffers(&a);
    small_buffers(&b);
    (a, b)
}

/// Raise RLIMIT_NOFILE's soft limit to the hard one.
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getter/setter on a local.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    rl.rlim_cur
}
