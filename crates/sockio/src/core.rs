//! What both backends share: the socket table, the write queues, the
//! completion queue, the configuration and the counters, and the
//! [`Backend`] trait they implement.
//!
//! The split of work: the application's calls land here (queue a write,
//! flip reading), the backend moves bytes and reports raw results into
//! [`Core`] (`deliver_recv`, `complete_write`, `finish_close`), and the
//! loop in `api.rs` hands the resulting completions to the callbacks. So
//! the semantics (ordering, EOF, truncation, cancellation) are written
//! once, and a backend only decides *how* to talk to the kernel.
use std::{collections::VecDeque, os::fd::OwnedFd, os::fd::RawFd, time::Duration};

use crate::{
    addr::SockAddr,
    api::{Handler, Mode, Msg, SockId},
    buf::{Buf, BufPool},
    error::{Errno, Error},
    select::BackendKind,
};

/// Tunables; see `Builder` in `api.rs` for what each one means.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub backend: Option<BackendKind>,
    pub fallback: bool,
    pub max_payload: usize,
    pub max_control: usize,
    pub queue_limit: usize,
    pub recv_batch: usize,
    pub send_batch: usize,
    pub ring_entries: u32,
    pub buf_ring_entries: u16,
    pub fixed_files: u32,
    pub multishot: bool,
    pub defer_taskrun: bool,
    pub pool_cache: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backend: None,
            fallback: true,
            max_payload: 2048,
            max_control: 128,
            queue_limit: 1024,
            recv_batch: 32,
            send_batch: 64,
            ring_entries: 1024,
            buf_ring_entries: 4096,
            fixed_files: 4096,
            multishot: true,
            defer_taskrun: true,
            pool_cache: 16384,
        }
    }
}

/// Bytes a multishot `recvmsg` puts in front of the payload besides the
/// control data: `struct io_uring_recvmsg_out` (16) and the largest name
/// (`sockaddr_storage`, 128). Every receive buffer has this much extra
/// room, in both backends, so `max_payload` bytes always fit.
pub(crate) const RECV_HEADROOM: usize = 16 + std::mem::size_of::<libc::sockaddr_storage>();

impl Config {
    pub fn buf_size(&self) -> usize {
        self.max_payload + RECV_HEADROOM + self.max_control
    }
}

/// Counters of what the loop did. `syscalls` counts every system call the
/// backends make (each call site increments it), so figures per packet
/// need no tracing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every system call made by the loop, setup and teardown included.
    pub syscalls: u64,
    /// Calls that may block for events: ppoll(2), or io_uring_enter(2)
    /// with IORING_ENTER_GETEVENTS.
    pub waits: u64,
    /// recv(2)/recvmmsg(2) calls (poll backend).
    pub recv_calls: u64,
    /// sendmsg(2)/sendmmsg(2) calls (poll backend).
    pub send_calls: u64,
    /// io_uring_enter(2) calls (io_uring backend).
    pub enters: u64,
    /// Submission queue entries handed to the kernel (io_uring backend).
    pub sqes: u64,
    /// Completion queue entries reaped (io_uring backend).
    pub cqes: u64,
    /// Multishot receives re-armed after the kernel ended them.
    pub rearms: u64,
    /// Write operations the application submitted.
    pub ops: u64,
    /// Completions delivered to callbacks.
    pub completions: u64,
}

/// What kind of socket: it decides EOF and partial-write handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SockType {
    /// Byte stream: writes may be partial, a 0-byte read is EOF.
    Stream,
    /// Datagrams: all-or-nothing writes, a 0-byte datagram is data.
    Dgram,
    /// Records on a connection: all-or-nothing, 0 bytes is EOF.
    SeqPacket,
}

impl SockType {
    pub fn eof_on_zero(self) -> bool {
        self != SockType::Dgram
    }
}

/// How a queued write reaches the socket.
#[derive(Debug)]
pub(crate) enum WriteKind {
    Write,
    SendTo(SockAddr),
    SendMsg {
        addr: Option<SockAddr>,
        control: Vec<u8>,
        flags: i32,
    },
}

/// One queued write: the application's buffer and how far it got.
#[derive(Debug)]
pub(crate) struct WriteOp {
    pub buf: Buf,
    pub kind: WriteKind,
    /// Bytes already written (streams can take a buffer in parts).
    pub offset: usize,
}

impl WriteOp {
    pub fn remaining(&self) -> &[u8] {
        &self.buf[self.offset..]
    }

    pub fn addr(&self) -> Option<&SockAddr> {
        match &self.kind {
            WriteKind::Write => None,
            WriteKind::SendTo(a) => Some(a),
            WriteKind::SendMsg { addr, .. } => addr.as_ref(),
        }
    }

    pub fn control(&self) -> &[u8] {
        match &self.kind {
            WriteKind::SendMsg { control, .. } if self.offset == 0 => control,
            _ => &[],
        }
    }
}

/// A finished receive as a backend reports it.
pub(crate) struct RecvData {
    pub buf: Buf,
    pub addr: Option<SockAddr>,
    pub control: Vec<u8>,
    /// `msg_flags`: MSG_TRUNC, MSG_CTRUNC, ...
    pub flags: i32,
}

/// A completion waiting to be handed to its callback.
pub(crate) enum Event {
    Read(Result<Buf, Errno>),
    RecvFrom(Result<(Buf, SockAddr), Errno>),
    RecvMsg(Result<Msg, Errno>),
    Write(Result<usize, Errno>, Buf),
    SendTo(Result<usize, Errno>, Buf, SockAddr),
    SendMsg(Result<usize, Errno>, Msg),
    Closed,
}

pub(crate) struct Completion {
    pub idx: u32,
    pub event: Event,
}

/// One registered socket.
pub(crate) struct FdState {
    pub fd: Option<OwnedFd>,
    pub raw: RawFd,
    pub mode: Mode,
    pub sock_type: SockType,
    pub family: i32,
    pub handler: Option<Box<dyn Handler>>,
    /// The application wants read completions.
    pub read_enabled: bool,
    /// Queued writes not yet handed to the kernel.
    pub write_q: VecDeque<WriteOp>,
    /// Writes submitted and not yet completed (queued + in flight).
    pub outstanding: usize,
    pub closing: bool,
    /// In `Core::dirty` already.
    pub dirty: bool,
}

struct Slot {
    generation: u32,
    state: Option<FdState>,
}

pub(crate) struct Core {
    slots: Vec<Slot>,
    free: Vec<u32>,
    pub done: VecDeque<Completion>,
    /// Sockets with new writes to start.
    pub dirty: Vec<u32>,
    pub pool: BufPool,
    pub cfg: Config,
    pub stats: Stats,
    pub registered: usize,
}

impl Core {
    pub fn new(cfg: Config) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            done: VecDeque::new(),
            dirty: Vec::new(),
            pool: BufPool::new(cfg.buf_size(), cfg.pool_cache),
            cfg,
            stats: Stats::default(),
            registered: 0,
        }
    }

    pub fn insert(&mut self, st: FdState) -> SockId {
        self.registered += 1;
        match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.state = Some(st);
                SockId::new(idx, slot.generation)
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state: Some(st),
                });
                SockId::new(self.slots.len() as u32 - 1, 0)
            }
        }
    }

    /// Free a slot once its `Closed` completion was delivered; the
    /// generation bump makes stale `SockId`s fail.
    pub fn remove(&mut self, idx: u32) {
        let slot = &mut self.slots[idx as usize];
        if slot.state.take().is_some() {
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(idx);
            self.registered -= 1;
        }
    }

    pub fn id_of(&self, idx: u32) -> SockId {
        SockId::new(idx, self.slots[idx as usize].generation)
    }

    /// The live socket `id` names (open or closing).
    pub fn lookup(&mut self, id: SockId) -> Result<&mut FdState, Error> {
        match self.slots.get_mut(id.idx as usize) {
            Some(Slot {
                generation,
                state: Some(st),
            }) if *generation == id.generation => Ok(st),
            _ => Err(Error::UnknownSocket { id }),
        }
    }

    pub fn get(&self, idx: u32) -> Option<&FdState> {
        self.slots.get(idx as usize)?.state.as_ref()
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut FdState> {
        self.slots.get_mut(idx as usize)?.state.as_mut()
    }

    pub fn fd(&mut self, idx: u32) -> &mut FdState {
        self.get_mut(idx).expect("backend used a freed socket slot")
    }

    pub fn mark_dirty(&mut self, idx: u32) {
        let st = self.fd(idx);
        if !st.dirty {
            st.dirty = true;
            self.dirty.push(idx);
        }
    }

    /// Take the dirty list (each socket's flag cleared).
    pub fn take_dirty(&mut self) -> Vec<u32> {
        let list = std::mem::take(&mut self.dirty);
        for &idx in &list {
            if let Some(st) = self.get_mut(idx) {
                st.dirty = false;
            }
        }
        list
    }

    /// A receive finished: turn it into the completion the socket's mode
    /// calls for. EOF (0 bytes on a stream or seqpacket) and errors that
    /// leave nothing more to read stop reading, so a backend never spins
    /// on a dead socket; the application may enable it again.
    pub fn deliver_recv(&mut self, idx: u32, res: Result<RecvData, Errno>) {
        let st = self.fd(idx);
        let mode = st.mode;
        let res = match res {
            Ok(d) => {
                let truncated = d.flags & libc::MSG_TRUNC != 0;
                if d.buf.is_empty() && st.sock_type.eof_on_zero() && !truncated {
                    st.read_enabled = false;
                } else if truncated && mode != Mode::RecvMsgSendMsg {
                    // The datagram did not fit: reporting it as data would
                    // hand over a silently cut payload. recvmsg mode gets
                    // the data and MSG_TRUNC in `flags` instead.
                    self.push(idx, recv_event(mode, Err(Errno::EMSGSIZE)));
                    return;
                }
                Ok(d)
            }
            Err(e) => {
                if st.sock_type != SockType::Dgram || fatal_dgram_error(e) {
                    st.read_enabled = false;
                }
                Err(e)
            }
        };
        self.push(idx, recv_event(mode, res));
    }

    /// A write finished (or failed, or was cancelled): hand the buffer back.
    pub fn complete_write(&mut self, idx: u32, op: WriteOp, res: Result<usize, Errno>) {
        let st = self.fd(idx);
        st.outstanding -= 1;
        let event = match op.kind {
            WriteKind::Write => Event::Write(res, op.buf),
            WriteKind::SendTo(a) => Event::SendTo(res, op.buf, a),
            WriteKind::SendMsg {
                addr,
                control,
                flags,
            } => Event::SendMsg(
                res,
                Msg {
                    buf: op.buf,
                    addr,
                    control,
                    flags,
                },
            ),
        };
        self.push(idx, event);
    }

    /// Nothing is in flight for a closing socket any more: cancel what is
    /// still queued (in order, after everything that was in flight), close
    /// the descriptor, and report `Closed` last.
    pub fn finish_close(&mut self, idx: u32) {
        let st = self.fd(idx);
        let queued: Vec<WriteOp> = st.write_q.drain(..).collect();
        let fd = st.fd.take();
        for op in queued {
            self.complete_write(idx, op, Err(Errno::ECANCELED));
        }
        if fd.is_some() {
            drop(fd);
            self.stats.syscalls += 1;
        }
        self.push(idx, Event::Closed);
    }

    pub fn push(&mut self, idx: u32, event: Event) {
        self.done.push_back(Completion { idx, event });
    }
}

fn recv_event(mode: Mode, res: Result<RecvData, Errno>) -> Event {
    match mode {
        Mode::ReadWrite => Event::Read(res.map(|d| d.buf)),
        Mode::RecvFromSendTo => Event::RecvFrom(res.map(|d| {
            let addr = d.addr.unwrap_or_else(SockAddr::empty);
            (d.buf, addr)
        })),
        Mode::RecvMsgSendMsg => Event::RecvMsg(res.map(|d| Msg {
            buf: d.buf,
            addr: d.addr,
            control: d.control,
            flags: d.flags,
        })),
    }
}

/// Errors after which a datagram socket cannot deliver anything again.
/// Others (ECONNREFUSED from an ICMP error, ENOMEM, ...) are reported and
/// reading goes on, as with recv(2) itself.
pub(crate) fn fatal_dgram_error(e: Errno) -> bool {
    matches!(
        e.0,
        libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT | libc::EOPNOTSUPP
    )
}

/// A backend: how to talk to the kernel. Everything else is in `Core`.
pub(crate) trait Backend {
    fn kind(&self) -> BackendKind;
    /// The backend and the kernel features it uses, for logs and reports.
    fn describe(&self, cfg: &Config) -> String;
    /// A socket was added to the table (reading enabled or not).
    fn register(&mut self, core: &mut Core, idx: u32) -> Result<(), Error>;
    /// `read_enabled` changed.
    fn read_changed(&mut self, core: &mut Core, idx: u32);
    /// The socket is closing: stop everything, and call
    /// `Core::finish_close` once nothing is in flight.
    fn close(&mut self, core: &mut Core, idx: u32);
    /// Start the writes of dirty sockets.
    fn flush(&mut self, core: &mut Core) -> Result<(), Error>;
    /// Hand prepared work to the kernel without waiting.
    fn submit(&mut self, core: &mut Core) -> Result<(), Error>;
    /// Wait up to `timeout` (None: forever) for events and turn them into
    /// completions in `core.done`.
    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> Result<(), Error>;
    /// An fd that is readable when `wait` would find something, for an
    /// outer event loop (tokio) to sleep on.
    fn pollable_fd(&mut self, core: &mut Core) -> Result<RawFd, Error>;
    /// The outer loop saw the pollable fd readable (reset it).
    fn pollable_ack(&mut self, core: &mut Core);
    /// The slot was freed.
    fn released(&mut self, idx: u32);
}
