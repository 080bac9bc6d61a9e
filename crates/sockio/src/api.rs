//! The application's side: register a socket with a [`Handler`], hand over
//! buffers, run the loop, get called back with the result and the buffer.
//!
//! The model is libosmocore's osmo_io (`osmo_iofd_register`,
//! `osmo_iofd_write_msgb`, `read_cb`/`write_cb`, ...): the mode a socket is
//! registered in fixes which callbacks it gets — `read`/`write`,
//! `recvfrom`/`sendto` or `recvmsg`/`sendmsg` — and reading is on from
//! registration until [`Io::read_disable`].
//!
//! Guarantees, identical in both backends (the conformance tests in
//! `tests/` run each test once per backend):
//! - Writes to one socket complete in submission order, each exactly once,
//!   always with the buffer. A full socket buffer is back-pressure: the
//!   write stays queued and completes when the peer drains. A write that
//!   fails completes with the errno; the ones behind it are still tried.
//!   One exception, io_uring on IP datagram sockets only: when the socket
//!   runs out of send buffer in the middle of a batch, a later datagram can
//!   leave (and complete) before an earlier one that got EAGAIN (see
//!   `start_writes` in `uring.rs`; UDP itself promises no order).
//! - Submissions are batched: nothing reaches the kernel until the loop
//!   runs ([`Io::run_once`] or [`Io::flush`]), so every write submitted in
//!   between goes out in as few system calls as the backend can manage
//!   (sendmmsg(2) / gather sendmsg(2), or one io_uring_enter(2)).
//! - A 0-byte read on a stream is EOF: it is delivered once and reading
//!   stops. A read error on a stream stops reading too; on a datagram
//!   socket it is delivered and reading goes on.
//! - A datagram longer than the receive buffer completes `read`/`recvfrom`
//!   with `EMSGSIZE` (never a silently cut payload); `recvmsg` delivers it
//!   with `MSG_TRUNC` in `flags`. Payloads up to `max_payload` always fit.
//! - [`Io::close`]: every write not yet done completes with `ECANCELED`
//!   (after the ones already finished), the descriptor is closed, then
//!   `closed` is called and the handler dropped.
//! - Callbacks run only inside [`Io::run_once`], never inside a submission
//!   call, so a callback may submit, close or register freely.
use std::{
    cell::RefCell,
    collections::VecDeque,
    fmt,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    rc::Rc,
    time::Duration,
};

use crate::{
    addr::SockAddr,
    buf::{Buf, BufPool},
    cmsg::{self, Cmsg},
    core::{Backend, Config, Core, Event, FdState, SockType, Stats, WriteKind, WriteOp},
    error::{Errno, Error, Rejected},
    poll::PollBackend,
    select::{self, BackendKind},
    sys,
    uring::{UringBackend, UringSetupError},
};

/// A registered socket. Stale ids (after `closed`) are refused, even if the
/// slot was reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SockId {
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

impl SockId {
    pub(crate) fn new(idx: u32, generation: u32) -> Self {
        Self { idx, generation }
    }

    /// A small integer unique among the live sockets of one loop.
    pub fn index(self) -> usize {
        self.idx as usize
    }
}

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket #{}.{}", self.idx, self.generation)
    }
}

impl fmt::Debug for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SockId({}.{})", self.idx, self.generation)
    }
}

/// Which pair of calls a socket uses (osmo_io's `OSMO_IO_FD_MODE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `read` / `write`: streams and connected datagram sockets.
    ReadWrite,
    /// `recvfrom` / `sendto`: datagrams with the peer's address.
    RecvFromSendTo,
    /// `recvmsg` / `sendmsg`: address, ancillary data and flags.
    RecvMsgSendMsg,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::ReadWrite => "read/write",
            Mode::RecvFromSendTo => "recvfrom/sendto",
            Mode::RecvMsgSendMsg => "recvmsg/sendmsg",
        })
    }
}

/// A message for `sendmsg`/`recvmsg` mode.
#[derive(Debug)]
pub struct Msg {
    pub buf: Buf,
    /// Destination (send) or source (receive); `None` on connected sockets.
    pub addr: Option<SockAddr>,
    /// Ancillary data in kernel layout (build with [`cmsg::CmsgBuf`]).
    pub control: Vec<u8>,
    /// `msg_flags` of a receive (MSG_TRUNC, MSG_CTRUNC, ...).
    pub flags: i32,
}

impl Msg {
    pub fn new(buf: Buf) -> Self {
        Self {
            buf,
            addr: None,
            control: Vec::new(),
            flags: 0,
        }
    }

    pub fn to(mut self, addr: impl Into<SockAddr>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    pub fn with_control(mut self, control: impl Into<Vec<u8>>) -> Self {
        self.control = control.into();
        self
    }

    /// The received control messages.
    pub fn cmsgs(&self) -> impl Iterator<Item = Cmsg<'_>> {
        cmsg::parse(&self.control)
    }
}

impl From<cmsg::CmsgBuf> for Vec<u8> {
    fn from(b: cmsg::CmsgBuf) -> Vec<u8> {
        b.into_bytes()
    }
}

/// Completion callbacks. Implement the ones of the socket's [`Mode`]; the
/// defaults drop what they get (the buffer returns to its pool). Every
/// callback gets the loop, so it can submit more work, close sockets or
/// register new ones.
#[expect(unused_variables, reason = "default methods ignore their arguments")]
pub trait Handler {
    /// `ReadWrite` mode: data (empty on a stream: EOF) or an error.
    fn read(&mut self, io: &mut Io, id: SockId, res: Result<Buf, Errno>) {}
    /// `ReadWrite` mode: a write finished; bytes written, and the buffer.
    fn write(&mut self, io: &mut Io, id: SockId, res: Result<usize, Errno>, buf: Buf) {}
    /// `RecvFromSendTo` mode: a datagram and its source, or an error.
    fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {}
    /// `RecvFromSendTo` mode: a datagram was sent (or not), buffer back.
    fn sendto(
        &mut self,
        io: &mut Io,
        id: SockId,
        res: Result<usize, Errno>,
        buf: Buf,
        to: SockAddr,
    ) {
    }
    /// `RecvMsgSendMsg` mode: a message with address, control data, flags.
    fn recvmsg(&mut self, io: &mut Io, id: SockId, res: Result<Msg, Errno>) {}
    /// `RecvMsgSendMsg` mode: a message was sent (or not), message back.
    fn sendmsg(&mut self, io: &mut Io, id: SockId, res: Result<usize, Errno>, msg: Msg) {}
    /// After [`Io::close`]: every pending operation has completed and the
    /// descriptor is closed. The handler is dropped after this.
    fn closed(&mut self, io: &mut Io, id: SockId) {}
}

/// Shared state behind one handler value for many sockets.
impl<H: Handler + ?Sized> Handler for Rc<RefCell<H>> {
    fn read(&mut self, io: &mut Io, id: SockId, res: Result<Buf, Errno>) {
        self.borrow_mut().read(io, id, res)
    }
    fn write(&mut self, io: &mut Io, id: SockId, res: Result<usize, Errno>, buf: Buf) {
        self.borrow_mut().write(io, id, res, buf)
    }
    fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
        self.borrow_mut().recvfrom(io, id, res)
    }
    fn sendto(
        &mut self,
        io: &mut Io,
        id: SockId,
        res: Result<usize, Errno>,
        buf: Buf,
        to: SockAddr,
    ) {
        self.borrow_mut().sendto(io, id, res, buf, to)
    }
    fn recvmsg(&mut self, io: &mut Io, id: SockId, res: Result<Msg, Errno>) {
        self.borrow_mut().recvmsg(io, id, res)
    }
    fn sendmsg(&mut self, io: &mut Io, id: SockId, res: Result<usize, Errno>, msg: Msg) {
        self.borrow_mut().sendmsg(io, id, res, msg)
    }
    fn closed(&mut self, io: &mut Io, id: SockId) {
        self.borrow_mut().closed(io, id)
    }
}

/// Options for [`Io`]; `Io::builder().build()` equals `Io::new()`.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// Use this backend instead of `XDPGATE_IO_BACKEND`.
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.cfg.backend = Some(kind);
        self
    }

    /// Fall back to poll when io_uring is unavailable (default true; false
    /// makes `build` fail instead).
    pub fn fallback(mut self, on: bool) -> Self {
        self.cfg.fallback = on;
        self
    }

    /// Largest datagram payload received whole (default 2048).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.cfg.max_payload = bytes;
        self
    }

    /// Room for received ancillary data in `recvmsg` mode (default 128).
    pub fn max_control(mut self, bytes: usize) -> Self {
        self.cfg.max_control = bytes;
        self
    }

    /// Writes a socket may have queued or in flight (default 1024, as
    /// osmo_io); beyond it a submission is refused with the buffer.
    pub fn queue_limit(mut self, ops: usize) -> Self {
        self.cfg.queue_limit = ops.max(1);
        self
    }

    /// Datagrams per recvmmsg(2) in the poll backend (default 32).
    pub fn recv_batch(mut self, n: usize) -> Self {
        self.cfg.recv_batch = n.clamp(1, 1024);
        self
    }

    /// Datagrams per sendmmsg(2) (poll) and stream buffers per gathered
    /// sendmsg (both backends); default 64. io_uring datagram batches take
    /// everything queued, up to the submission queue's size.
    pub fn send_batch(mut self, n: usize) -> Self {
        self.cfg.send_batch = n.clamp(1, 1024);
        self
    }

    /// io_uring submission queue size (default 1024; the completion queue
    /// is 8 times larger).
    pub fn ring_entries(mut self, n: u32) -> Self {
        self.cfg.ring_entries = n.clamp(8, 32768);
        self
    }

    /// Buffers in the io_uring provided-buffer ring (power of two, default
    /// 4096).
    pub fn buf_ring_entries(mut self, n: u16) -> Self {
        self.cfg.buf_ring_entries = n.clamp(2, 32768).next_power_of_two();
        self
    }

    /// Size of the io_uring registered-file table (default 4096; capped by
    /// RLIMIT_NOFILE). Sockets beyond it use plain descriptors.
    pub fn fixed_files(mut self, n: u32) -> Self {
        self.cfg.fixed_files = n;
        self
    }

    /// Multishot receives with a provided-buffer ring (default on); off
    /// uses one single-shot receive per socket, as kernels before 6.0 must.
    pub fn multishot(mut self, on: bool) -> Self {
        self.cfg.multishot = on;
        self
    }

    /// IORING_SETUP_DEFER_TASKRUN (default on, when the kernel has it).
    pub fn defer_taskrun(mut self, on: bool) -> Self {
        self.cfg.defer_taskrun = on;
        self
    }

    pub fn build(self) -> Result<Io, Error> {
        Io::with_config(self.cfg)
    }
}

/// The event loop: one thread drives it (it is not `Send`).
pub struct Io {
    core: Core,
    backend: Box<dyn Backend>,
    dispatching: bool,
}

impl Io {
    /// A loop with the backend `XDPGATE_IO_BACKEND` names (poll if unset).
    pub fn new() -> Result<Io, Error> {
        Builder::default().build()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    fn with_config(cfg: Config) -> Result<Io, Error> {
        let kind = match cfg.backend {
            Some(k) => k,
            None => BackendKind::from_env()?,
        };
        let mut core = Core::new(cfg);
        let backend: Box<dyn Backend> = match kind {
            BackendKind::Poll => Box::new(PollBackend::new()),
            BackendKind::IoUring => match UringBackend::new(&mut core) {
                Ok(b) => Box::new(b),
                Err(UringSetupError::Unavailable(reason)) if core.cfg.fallback => {
                    select::warn_fallback(&reason);
                    Box::new(PollBackend::new())
                }
                Err(UringSetupError::Unavailable(reason)) => {
                    return Err(Error::UringUnavailable { reason });
                }
            },
        };
        Ok(Io {
            core,
            backend,
            dispatching: false,
        })
    }

    /// The backend that runs (after any fallback).
    pub fn backend(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The backend and the kernel features it uses, in words.
    pub fn describe(&self) -> String {
        self.backend.describe(&self.core.cfg)
    }

    /// Register a socket; reading starts at once. The loop owns the
    /// descriptor from now on and closes it in [`Io::close`] (or when the
    /// loop is dropped).
    pub fn register(
        &mut self,
        sock: impl Into<OwnedFd>,
        mode: Mode,
        handler: impl Handler + 'static,
    ) -> Result<SockId, Error> {
        let fd: OwnedFd = sock.into();
        let raw = fd.as_raw_fd();
        let (sock_type, family) = sys::socket_kind(raw, &mut self.core.stats)?;
        let id = self.core.insert(FdState {
            fd: Some(fd),
            raw,
            mode,
            sock_type,
            family,
            handler: Some(Box::new(handler)),
            read_enabled: true,
            write_q: VecDeque::new(),
            outstanding: 0,
            closing: false,
            dirty: false,
        });
        if let Err(e) = self.backend.register(&mut self.core, id.idx) {
            // Give the descriptor back to the kernel and the slot back.
            self.core.fd(id.idx).fd.take();
            self.core.remove(id.idx);
            self.backend.released(id.idx);
            return Err(e);
        }
        Ok(id)
    }

    /// Start (again) delivering read completions.
    pub fn read_enable(&mut self, id: SockId) -> Result<(), Error> {
        self.set_read(id, true)
    }

    /// Stop delivering read completions; data the kernel already took off
    /// the socket is kept and delivered after `read_enable`.
    pub fn read_disable(&mut self, id: SockId) -> Result<(), Error> {
        self.set_read(id, false)
    }

    fn set_read(&mut self, id: SockId, on: bool) -> Result<(), Error> {
        let st = self.core.lookup(id)?;
        if st.closing {
            return Err(Error::Closing { id });
        }
        if st.read_enabled != on {
            st.read_enabled = on;
            self.backend.read_changed(&mut self.core, id.idx);
        }
        Ok(())
    }

    /// Queue a write (`ReadWrite` mode). The buffer comes back in `write`.
    pub fn write(&mut self, id: SockId, buf: Buf) -> Result<(), Rejected<Buf>> {
        match self.enqueue(id, "write", 1, |m| m == Mode::ReadWrite) {
            Ok(q) => {
                q.push_back(WriteOp {
                    buf,
                    kind: WriteKind::Write,
                    offset: 0,
                });
                Ok(())
            }
            Err(e) => Err(Rejected::new(e, buf)),
        }
    }

    /// Queue a datagram to `to` (`RecvFromSendTo` mode).
    #[expect(
        clippy::result_large_err,
        reason = "a refused datagram comes back by value with its address; refusals are rare"
    )]
    pub fn sendto(
        &mut self,
        id: SockId,
        buf: Buf,
        to: impl Into<SockAddr>,
    ) -> Result<(), Rejected<(Buf, SockAddr)>> {
        let to = to.into();
        match self.enqueue(id, "sendto", 1, |m| m == Mode::RecvFromSendTo) {
            Ok(q) => {
                q.push_back(WriteOp {
                    buf,
                    kind: WriteKind::SendTo(to),
                    offset: 0,
                });
                Ok(())
            }
            Err(e) => Err(Rejected::new(e, (buf, to))),
        }
    }

    /// Queue a message (`RecvMsgSendMsg` mode).
    #[expect(
        clippy::result_large_err,
        reason = "a refused message comes back by value; refusals are rare"
    )]
    pub fn sendmsg(&mut self, id: SockId, msg: Msg) -> Result<(), Rejected<Msg>> {
        match self.enqueue(id, "sendmsg", 1, |m| m == Mode::RecvMsgSendMsg) {
            Ok(q) => {
                q.push_back(WriteOp {
                    buf: msg.buf,
                    kind: WriteKind::SendMsg {
                        addr: msg.addr,
                        control: msg.control,
                        flags: msg.flags,
                    },
                    offset: 0,
                });
                Ok(())
            }
            Err(e) => Err(Rejected::new(e, msg)),
        }
    }

    /// Queue many writes at once, all or none (`ReadWrite` mode).
    pub fn write_many(&mut self, id: SockId, bufs: Vec<Buf>) -> Result<(), Rejected<Vec<Buf>>> {
        match self.enqueue(id, "write", bufs.len(), |m| m == Mode::ReadWrite) {
            Ok(q) => {
                q.extend(bufs.into_iter().map(|buf| WriteOp {
                    buf,
                    kind: WriteKind::Write,
                    offset: 0,
                }));
                Ok(())
            }
            Err(e) => Err(Rejected::new(e, bufs)),
        }
    }

    /// Queue many datagrams at once, all or none (`RecvFromSendTo` mode).
    pub fn sendto_many(
        &mut self,
        id: SockId,
        dgrams: Vec<(Buf, SockAddr)>,
    ) -> Result<(), Rejected<Vec<(Buf, SockAddr)>>> {
        match self.enqueue(id, "sendto", dgrams.len(), |m| m == Mode::RecvFromSendTo) {
            Ok(q) => {
                q.extend(dgrams.into_iter().map(|(buf, to)| WriteOp {
                    buf,
                    kind: WriteKind::SendTo(to),
                    offset: 0,
                }));
                Ok(())
            }
            Err(e) => Err(Rejected::new(e, dgrams)),
        }
    }

    /// Check that `n` writes may be queued on `id`, account for them, and
    /// return the queue to push them on.
    fn enqueue(
        &mut self,
        id: SockId,
        op: &'static str,
        n: usize,
        mode_ok: impl Fn(Mode) -> bool,
    ) -> Result<&mut VecDeque<WriteOp>, Error> {
        let limit = self.core.cfg.queue_limit;
        let st = self.core.lookup(id)?;
        if st.closing {
            return Err(Error::Closing { id });
        }
        if !mode_ok(st.mode) {
            return Err(Error::WrongMode {
                id,
                op,
                mode: st.mode,
            });
        }
        if st.outstanding + n > limit {
            return Err(Error::QueueFull { id, limit });
        }
        st.outstanding += n;
        self.core.stats.ops += n as u64;
        self.core.mark_dirty(id.idx);
        Ok(&mut self.core.fd(id.idx).write_q)
    }

    /// Close a socket: pending writes complete with ECANCELED, then
    /// `closed` is called. Completions already produced are delivered
    /// first. Closing a closing socket is a no-op.
    pub fn close(&mut self, id: SockId) -> Result<(), Error> {
        let st = self.core.lookup(id)?;
        if st.closing {
            return Ok(());
        }
        st.closing = true;
        st.read_enabled = false;
        self.backend.close(&mut self.core, id.idx);
        Ok(())
    }

    /// Hand every queued write to the kernel now, without waiting.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.backend.flush(&mut self.core)?;
        self.backend.submit(&mut self.core)
    }

    /// One loop iteration: flush queued writes, wait up to `timeout` for
    /// events (`None`: until one comes; not at all if completions are
    /// already waiting), and call back. Returns how many callbacks ran.
    pub fn run_once(&mut self, timeout: Option<Duration>) -> Result<usize, Error> {
        if self.dispatching {
            return Err(Error::Reentrant);
        }
        self.backend.flush(&mut self.core)?;
        let timeout = if self.core.done.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.backend.wait(&mut self.core, timeout)?;
        Ok(self.dispatch())
    }

    fn dispatch(&mut self) -> usize {
        self.dispatching = true;
        let mut n = 0;
        while let Some(c) = self.core.done.pop_front() {
            let id = self.core.id_of(c.idx);
            let Some(mut h) = self.core.get_mut(c.idx).and_then(|st| st.handler.take()) else {
                continue;
            };
            n += 1;
            let closed = matches!(c.event, Event::Closed);
            match c.event {
                Event::Read(r) => h.read(self, id, r),
                Event::RecvFrom(r) => h.recvfrom(self, id, r),
                Event::RecvMsg(r) => h.recvmsg(self, id, r),
                Event::Write(r, b) => h.write(self, id, r, b),
                Event::SendTo(r, b, a) => h.sendto(self, id, r, b, a),
                Event::SendMsg(r, m) => h.sendmsg(self, id, r, m),
                Event::Closed => h.closed(self, id),
            }
            if closed {
                self.core.remove(c.idx);
                self.backend.released(c.idx);
            } else if let Some(st) = self.core.get_mut(c.idx) {
                st.handler = Some(h);
            }
        }
        self.core.stats.completions += n as u64;
        self.dispatching = false;
        n
    }

    /// An empty buffer from the loop's pool (capacity
    /// `max_payload` + headroom).
    pub fn buf(&self) -> Buf {
        self.core.pool.get()
    }

    pub fn pool(&self) -> &BufPool {
        &self.core.pool
    }

    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// Sockets registered (closing ones included until `closed`).
    pub fn len(&self) -> usize {
        self.core.registered
    }

    pub fn is_empty(&self) -> bool {
        self.core.registered == 0
    }

    /// Writes of `id` submitted and not yet completed.
    pub fn outstanding(&self, id: SockId) -> usize {
        match self.core.get(id.idx) {
            Some(st) if self.core.id_of(id.idx) == id => st.outstanding,
            _ => 0,
        }
    }

    /// The descriptor of `id` (to set options; do not close it).
    pub fn raw_fd(&self, id: SockId) -> Option<RawFd> {
        match self.core.get(id.idx) {
            Some(st) if self.core.id_of(id.idx) == id && st.fd.is_some() => Some(st.raw),
            _ => None,
        }
    }

    /// An fd that becomes readable when the loop has work, for an outer
    /// event loop: poll backend — an epoll fd mirroring the poll set;
    /// io_uring — an eventfd registered with the ring. When it is
    /// readable, call [`Io::pollable_ack`], then `run_once(Some(ZERO))`
    /// until it returns 0.
    pub fn pollable_fd(&mut self) -> Result<RawFd, Error> {
        self.backend.pollable_fd(&mut self.core)
    }

    /// Reset the pollable fd's readiness (before draining the loop).
    pub fn pollable_ack(&mut self) {
        self.backend.pollable_ack(&mut self.core);
    }
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("backend", &self.backend())
            .field("sockets", &self.core.registered)
            .field("stats", &self.core.stats)
            .finish()
    }
}

impl SockType {
    pub(crate) fn from_so_type(t: i32) -> Option<SockType> {
        match t {
            libc::SOCK_STREAM => Some(SockType::Stream),
            libc::SOCK_DGRAM => Some(SockType::Dgram),
            libc::SOCK_SEQPACKET => Some(SockType::SeqPacket),
            _ => None,
        }
    }
}
