//! The poll(2) backend: readiness, then non-blocking calls in batches.
//!
//! - Every call passes MSG_DONTWAIT (recv(2), send(2)), so the sockets'
//!   own O_NONBLOCK flag is left as the application set it.
//! - Writes are tried at once when the loop flushes (sockets are usually
//!   writable); only an EAGAIN puts POLLOUT into the poll set, and the
//!   queue continues when poll(2) reports the socket writable. So an
//!   unblocked socket costs no poll(2) round trip per write.
//! - Datagrams go out with sendmmsg(2), up to `send_batch` per call, and
//!   come in with recvmmsg(2), up to `recv_batch` per call. Streams gather
//!   up to `send_batch` queued buffers into one sendmsg(2) iovec.
//! - sendmmsg(2) "returns the number of messages sent" and loses the error
//!   of the first one it could not send (see its BUGS section), so after a
//!   short count the next message is simply tried again, which reports the
//!   error (or EAGAIN) for exactly that message.
//! - MSG_NOSIGNAL on every send: a write to a reset stream must complete
//!   with EPIPE, not kill the process with SIGPIPE (send(2)).
use std::{
    os::fd::{AsRawFd, OwnedFd, RawFd},
    time::Duration,
};

use crate::{
    addr::SockAddr,
    buf::Buf,
    core::{Backend, Core, RecvData, SockType},
    error::{Errno, Error},
    select::BackendKind,
    sys,
};

const NONE: u32 = u32::MAX;
/// Stream reads per readiness event before other sockets get a turn.
const STREAM_READS_PER_EVENT: usize = 16;
/// recvmmsg(2) calls per readiness event before other sockets get a turn.
const DGRAM_ROUNDS_PER_EVENT: usize = 4;

pub(crate) struct PollBackend {
    /// The poll set: only sockets with something to wait for.
    pfds: Vec<libc::pollfd>,
    /// `owner[i]` is the socket slot of `pfds[i]`.
    owner: Vec<u32>,
    /// Socket slot → position in `pfds`, or NONE.
    pos: Vec<u32>,
    /// Socket slot → its writes wait for POLLOUT.
    blocked: Vec<bool>,
    /// An epoll fd mirroring the poll set, made on demand for an outer
    /// event loop (tokio) to sleep on; poll(2) remains what we wait with.
    mirror: Option<OwnedFd>,
    ready: Vec<(u32, i16)>,
    rx: RxScratch,
    tx: TxScratch,
}

/// recvmmsg(2) arguments, reused across calls.
#[derive(Default)]
struct RxScratch {
    bufs: Vec<Option<Buf>>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<libc::sockaddr_storage>,
    control: Vec<u8>,
}

/// sendmmsg(2)/sendmsg(2) arguments, reused across calls.
#[derive(Default)]
struct TxScratch {
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: all-zero is a valid (empty) msghdr.
    unsafe { std::mem::zeroed() }
}

fn errno_of(r: isize) -> Option<Errno> {
    (r < 0).then(Errno::last)
}

impl PollBackend {
    pub fn new() -> Self {
        Self {
            pfds: Vec::new(),
            owner: Vec::new(),
            pos: Vec::new(),
            blocked: Vec::new(),
            mirror: None,
            ready: Vec::new(),
            rx: RxScratch::default(),
            tx: TxScratch::default(),
        }
    }

    fn ensure(&mut self, idx: u32) {
        let need = idx as usize + 1;
        if self.pos.len() < need {
            self.pos.resize(need, NONE);
            self.blocked.resize(need, false);
        }
    }

    fn interest(&self, core: &Core, idx: u32) -> i16 {
        let Some(st) = core.get(idx) else { return 0 };
        if st.closing {
            return 0;
        }
        let mut ev = 0;
        if st.read_enabled {
            ev |= libc::POLLIN;
        }
        if self.blocked[idx as usize] {
            ev |= libc::POLLOUT;
        }
        ev
    }

    /// Bring the poll set (and the epoll mirror) in line with what the
    /// socket waits for.
    fn update(&mut self, core: &mut Core, idx: u32) {
        let want = self.interest(core, idx);
        let p = self.pos[idx as usize];
        let old = if p == NONE {
            0
        } else {
            self.pfds[p as usize].events
        };
        if p == NONE && want != 0 {
            self.pos[idx as usize] = self.pfds.len() as u32;
            self.pfds.push(libc::pollfd {
                fd: core.fd(idx).raw,
                events: want,
                revents: 0,
            });
            self.owner.push(idx);
        } else if p != NONE && want == 0 {
            let p = p as usize;
            self.pfds.swap_remove(p);
            self.owner.swap_remove(p);
            if p < self.owner.len() {
                self.pos[self.owner[p] as usize] = p as u32;
            }
            self.pos[idx as usize] = NONE;
        } else if p != NONE {
            self.pfds[p as usize].events = want;
        }
        if let Some(ep) = &self.mirror {
            sys::epoll_set(
                ep.as_raw_fd(),
                core.fd(idx).raw,
                poll_to_epoll(old),
                poll_to_epoll(want),
                &mut core.stats,
            );
        }
    }

    /// Push queued writes until the queue is empty or the socket is full.
    fn send(&mut self, core: &mut Core, idx: u32) {
        let blocked = match core.fd(idx).sock_type {
            SockType::Stream => self.send_stream(core, idx),
            SockType::Dgram | SockType::SeqPacket => self.send_dgram(core, idx),
        };
        if blocked != self.blocked[idx as usize] {
            self.blocked[idx as usize] = blocked;
            self.update(core, idx);
        }
    }

    /// Datagrams: sendmmsg(2) over the head of the queue. Returns whether
    /// the socket is full (EAGAIN).
    fn send_dgram(&mut self, core: &mut Core, idx: u32) -> bool {
        loop {
            let batch = core.cfg.send_batch;
            let st = core.fd(idx);
            let n = st.write_q.len().min(batch);
            if n == 0 {
                return false;
            }
            let tx = &mut self.tx;
            tx.iov.clear();
            tx.hdrs.clear();
            for op in st.write_q.iter().take(n) {
                let data = op.remaining();
                tx.iov.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                });
            }
            for (i, op) in st.write_q.iter().take(n).enumerate() {
                let mut h = zeroed_msghdr();
                if let Some(a) = op.addr() {
                    h.msg_name = a.as_ptr() as *mut libc::c_void;
                    h.msg_namelen = a.socklen();
                }
                h.msg_iov = &mut tx.iov[i];
                h.msg_iovlen = 1;
                let control = op.control();
                if !control.is_empty() {
                    h.msg_control = control.as_ptr() as *mut libc::c_void;
                    h.msg_controllen = control.len() as _;
                }
                tx.hdrs.push(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
            let raw = st.raw;
            core.stats.syscalls += 1;
            core.stats.send_calls += 1;
            // SAFETY: every pointer refers to queue entries or scratch
            // vectors that are not touched until the call returns.
            let r = unsafe {
                libc::sendmmsg(
                    raw,
                    tx.hdrs.as_mut_ptr(),
                    n as u32,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if let Some(e) = errno_of(r as isize) {
                match e {
                    Errno::EINTR => continue,
                    Errno::EAGAIN => return true,
                    e => {
                        let op = core.fd(idx).write_q.pop_front().expect("n > 0");
                        core.complete_write(idx, op, Err(e));
                        continue;
                    }
                }
            }
            for i in 0..r as usize {
                let sent = self.tx.hdrs[i].msg_len as usize;
                let op = core.fd(idx).write_q.pop_front().expect("sent <= n");
                core.complete_write(idx, op, Ok(sent));
            }
            // A short count: the next call reports what stopped it.
        }
    }

    /// Streams: gather the head of the queue into one sendmsg(2). Returns
    /// whether the socket is full (EAGAIN or a short write).
    fn send_stream(&mut self, core: &mut Core, idx: u32) -> bool {
        loop {
            let batch = core.cfg.send_batch;
            let st = core.fd(idx);
            let Some(front) = st.write_q.front() else {
                return false;
            };
            if front.remaining().is_empty() {
                let op = st.write_q.pop_front().expect("front exists");
                let n = op.buf.len();
                core.complete_write(idx, op, Ok(n));
                continue;
            }
            // A message with control data goes alone: the kernel attaches
            // it to the first byte (unix(7) SCM_RIGHTS semantics).
            let single = !front.control().is_empty() || front.addr().is_some();
            let tx = &mut self.tx;
            tx.iov.clear();
            let mut total = 0usize;
            for op in st.write_q.iter().take(if single { 1 } else { batch }) {
                if (!op.control().is_empty() || op.addr().is_some()) && !tx.iov.is_empty() {
                    break;
                }
                let data = op.remaining();
                total += data.len();
                tx.iov.push(libc::iovec {
                    iov_base: data.as_ptr() as *mut libc::c_void,
                    iov_len: data.len(),
                });
            }
            let mut h = zeroed_msghdr();
            h.msg_iov = tx.iov.as_mut_ptr();
            h.msg_iovlen = tx.iov.len();
            let control = front.control();
            if !control.is_empty() {
                h.msg_control = control.as_ptr() as *mut libc::c_void;
                h.msg_controllen = control.len() as _;
            }
            let raw = st.raw;
            core.stats.syscalls += 1;
            core.stats.send_calls += 1;
            // SAFETY: the iovecs point into queued buffers not touched
            // until the call returns.
            let r = unsafe { libc::sendmsg(raw, &h, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if let Some(e) = errno_of(r) {
                match e {
                    Errno::EINTR => continue,
                    Errno::EAGAIN => return true,
                    e => {
                        let op = core.fd(idx).write_q.pop_front().expect("front exists");
                        core.complete_write(idx, op, Err(e));
                        continue;
                    }
                }
            }
            let short = (r as usize) < total;
            // Complete every buffer the written bytes cover, in order; the
            // first one not fully covered keeps its progress as `offset`.
            let mut left = r as usize;
            loop {
                let st = core.fd(idx);
                let Some(front) = st.write_q.front_mut() else {
                    break;
                };
                let rem = front.remaining().len();
                if rem > left {
                    front.offset += left;
                    break;
                }
                left -= rem;
                let op = st.write_q.pop_front().expect("front exists");
                let n = op.buf.len();
                core.complete_write(idx, op, Ok(n));
            }
            if short {
                return true;
            }
        }
    }

    fn recv(&mut self, core: &mut Core, idx: u32) {
        match core.fd(idx).sock_type {
            SockType::Stream => self.recv_stream(core, idx),
            SockType::Dgram | SockType::SeqPacket => self.recv_mmsg(core, idx),
        }
    }

    fn recv_stream(&mut self, core: &mut Core, idx: u32) {
        for _ in 0..STREAM_READS_PER_EVENT {
            let st = core.fd(idx);
            if !st.read_enabled || st.closing {
                return;
            }
            let raw = st.raw;
            let mut buf = core.pool.get();
            let room = buf.spare_mut();
            let cap = room.len();
            core.stats.syscalls += 1;
            core.stats.recv_calls += 1;
            // SAFETY: `room` is writable for `cap` bytes.
            let r = unsafe { libc::recv(raw, room.as_mut_ptr().cast(), cap, libc::MSG_DONTWAIT) };
            match errno_of(r) {
                Some(Errno::EAGAIN) => return,
                Some(Errno::EINTR) => continue,
                Some(e) => return core.deliver_recv(idx, Err(e)),
                None => {}
            }
            buf.set_len(r as usize);
            core.deliver_recv(
                idx,
                Ok(RecvData {
                    buf,
                    addr: None,
                    control: Vec::new(),
                    flags: 0,
                }),
            );
            // EOF, or a short read: the socket is drained; poll(2) tells
            // when there is more, which saves the EAGAIN call.
            if (r as usize) < cap {
                return;
            }
        }
    }

    fn recv_mmsg(&mut self, core: &mut Core, idx: u32) {
        let batch = core.cfg.recv_batch;
        let mode = core.fd(idx).mode;
        let want_name = mode != crate::api::Mode::ReadWrite;
        let clen = if mode == crate::api::Mode::RecvMsgSendMsg {
            core.cfg.max_control
        } else {
            0
        };
        for _ in 0..DGRAM_ROUNDS_PER_EVENT {
            let st = core.fd(idx);
            if !st.read_enabled || st.closing {
                return;
            }
            let raw = st.raw;
            let rx = &mut self.rx;
            rx.bufs.resize_with(batch, || None);
            // SAFETY (zeroed): plain C structs.
            rx.names
                .resize_with(batch, || unsafe { std::mem::zeroed() });
            rx.control.resize(batch * clen, 0);
            rx.iov.clear();
            for slot in rx.bufs.iter_mut() {
                let b = slot.get_or_insert_with(|| core.pool.get());
                let room = b.spare_mut();
                rx.iov.push(libc::iovec {
                    iov_base: room.as_mut_ptr().cast(),
                    iov_len: room.len(),
                });
            }
            rx.hdrs.clear();
            for i in 0..batch {
                let mut h = zeroed_msghdr();
                if want_name {
                    h.msg_name = (&mut rx.names[i] as *mut libc::sockaddr_storage).cast();
                    h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                }
                h.msg_iov = &mut rx.iov[i];
                h.msg_iovlen = 1;
                if clen > 0 {
                    h.msg_control = rx.control[i * clen..].as_mut_ptr().cast();
                    h.msg_controllen = clen as _;
                }
                rx.hdrs.push(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
            core.stats.syscalls += 1;
            core.stats.recv_calls += 1;
            // SAFETY: all pointers refer to scratch memory alive for the call.
            let r = unsafe {
                libc::recvmmsg(
                    raw,
                    rx.hdrs.as_mut_ptr(),
                    batch as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            match errno_of(r as isize) {
                Some(Errno::EAGAIN) => return,
                Some(Errno::EINTR) => continue,
                Some(e) => {
                    core.deliver_recv(idx, Err(e));
                    continue;
                }
                None => {}
            }
            let n = r as usize;
            for i in 0..n {
                let h = &self.rx.hdrs[i];
                let mut buf = self.rx.bufs[i].take().expect("filled above");
                buf.set_len((h.msg_len as usize).min(buf.capacity()));
                let addr = want_name.then(|| {
                    let len = (h.msg_hdr.msg_namelen as usize)
                        .min(std::mem::size_of::<libc::sockaddr_storage>());
                    // SAFETY: the kernel wrote `len` bytes of address.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            (&self.rx.names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                            len,
                        )
                    };
                    SockAddr::from_bytes(bytes)
                });
                let control = if clen > 0 {
                    let l = h.msg_hdr.msg_controllen.min(clen);
                    self.rx.control[i * clen..i * clen + l].to_vec()
                } else {
                    Vec::new()
                };
                let flags = h.msg_hdr.msg_flags;
                core.deliver_recv(
                    idx,
                    Ok(RecvData {
                        buf,
                        addr,
                        control,
                        flags,
                    }),
                );
            }
            if n < batch {
                return;
            }
        }
    }
}

fn poll_to_epoll(ev: i16) -> u32 {
    let mut out = 0;
    if ev & libc::POLLIN != 0 {
        out |= libc::EPOLLIN as u32;
    }
    if ev & libc::POLLOUT != 0 {
        out |= libc::EPOLLOUT as u32;
    }
    out
}

impl Backend for PollBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Poll
    }

    fn describe(&self, cfg: &crate::core::Config) -> String {
        format!(
            "poll (ppoll, recvmmsg x{}, sendmmsg x{})",
            cfg.recv_batch, cfg.send_batch
        )
    }

    fn register(&mut self, core: &mut Core, idx: u32) -> Result<(), Error> {
        self.ensure(idx);
        self.blocked[idx as usize] = false;
        self.update(core, idx);
        Ok(())
    }

    fn read_changed(&mut self, core: &mut Core, idx: u32) {
        self.update(core, idx);
    }

    fn close(&mut self, core: &mut Core, idx: u32) {
        // Nothing is ever in flight in the kernel here: out of the poll
        // set (and the mirror) before the descriptor is closed.
        self.blocked[idx as usize] = false;
        self.update(core, idx);
        core.finish_close(idx);
    }

    fn flush(&mut self, core: &mut Core) -> Result<(), Error> {
        for idx in core.take_dirty() {
            let Some(st) = core.get(idx) else { continue };
            if st.closing || self.blocked[idx as usize] {
                continue;
            }
            self.send(core, idx);
        }
        Ok(())
    }

    fn submit(&mut self, _core: &mut Core) -> Result<(), Error> {
        Ok(())
    }

    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> Result<(), Error> {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        core.stats.syscalls += 1;
        core.stats.waits += 1;
        // SAFETY: pfds is a valid array; ppoll(2) with a null sigmask.
        let r = unsafe {
            libc::ppoll(
                self.pfds.as_mut_ptr(),
                self.pfds.len() as libc::nfds_t,
                ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                std::ptr::null(),
            )
        };
        if r < 0 {
            return match Errno::last() {
                Errno::EINTR => Ok(()),
                e => Err(Error::Sys {
                    call: "ppoll",
                    source: e.to_io(),
                }),
            };
        }
        if r == 0 {
            return Ok(());
        }
        self.ready.clear();
        for (i, p) in self.pfds.iter().enumerate() {
            if p.revents != 0 {
                self.ready.push((self.owner[i], p.revents));
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for &(idx, rev) in &ready {
            let Some(st) = core.get(idx) else { continue };
            if st.closing {
                continue;
            }
            let fail = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
            if rev & (libc::POLLOUT | fail) != 0 && self.blocked[idx as usize] {
                self.blocked[idx as usize] = false;
                self.send(core, idx);
            }
            if rev & (libc::POLLIN | fail) != 0 && core.fd(idx).read_enabled {
                self.recv(core, idx);
            }
            self.update(core, idx);
        }
        self.ready = ready;
        Ok(())
    }

    fn pollable_fd(&mut self, core: &mut Core) -> Result<RawFd, Error> {
        if let Some(ep) = &self.mirror {
            return Ok(ep.as_raw_fd());
        }
        let ep = sys::epoll_create(&mut core.stats)?;
        for p in &self.pfds {
            sys::epoll_set(
                ep.as_raw_fd(),
                p.fd,
                0,
                poll_to_epoll(p.events),
                &mut core.stats,
            );
        }
        let raw = ep.as_raw_fd();
        self.mirror = Some(ep);
        Ok(raw)
    }

    fn pollable_ack(&mut self, _core: &mut Core) {}

    fn released(&mut self, _idx: u32) {}
}
