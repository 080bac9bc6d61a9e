//! The io_uring backend (io_uring(7), the `io-uring` crate).
//!
//! - **Receive**: one multishot receive per socket reading from a shared
//!   provided-buffer ring (`bufring.rs`): IORING_OP_RECV with
//!   IORING_RECV_MULTISHOT for read mode, IORING_OP_RECVMSG multishot
//!   (io_uring_prep_recvmsg_multishot(3): `io_uring_recvmsg_out`, name,
//!   control, payload in one buffer) for recvfrom/recvmsg modes. A
//!   multishot request ends on an error or when the ring runs dry
//!   (ENOBUFS, nothing lost: the data stays in the socket); it is re-armed.
//!   Without them (kernels before 6.0, or `multishot(false)`) each socket
//!   has one single-shot IORING_OP_RECVMSG into its own buffer.
//! - **Send**: datagrams go out in unlinked batches with MSG_DONTWAIT (see
//!   `start_writes` for why, and for the one ordering caveat); a full
//!   socket stops the queue with EAGAIN and an IORING_OP_POLL_ADD for
//!   POLLOUT restarts it, as poll(2) does in the poll backend. Streams
//!   gather up to `send_batch` queued buffers into one IORING_OP_SENDMSG.
//!   One batch or gather is in flight per socket, so a partial send can
//!   never be overtaken. MSG_NOSIGNAL always (no SIGPIPE on a reset stream).
//! - **Batching**: SQEs pile up in the submission queue and go to the
//!   kernel with the wait, in one io_uring_enter(2) per loop iteration.
//! - **Registered resources**: sockets go into a sparse registered-file
//!   table (IORING_REGISTER_FILES_SPARSE) when a slot is free, which saves
//!   a file reference count per request when the process has several
//!   threads (fdget in fs/file.c); the ring fd itself is registered
//!   (IORING_REGISTER_RING_FDS) for the same reason on io_uring_enter.
//!   Registered *buffers* are not used: a copying send(2) of a registered
//!   buffer saves nothing (they pay for O_DIRECT and IORING_OP_SEND_ZC,
//!   and zero-copy send costs an extra notification per packet, a loss for
//!   small datagrams).
//! - **Task work**: IORING_SETUP_DEFER_TASKRUN + SINGLE_ISSUER (6.1) when
//!   available: completions are posted only when we ask (GETEVENTS), in one
//!   batch, with no interrupting IPIs; else COOP_TASKRUN (5.19).
use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    time::Duration,
};

use io_uring::{EnterFlags, IoUring, Probe, cqueue, opcode, squeue, types};

use crate::{
    addr::SockAddr,
    api::Mode,
    buf::RawBuf,
    bufring::{BGID, BufRing},
    core::{Backend, Core, RecvData, SockType, WriteOp},
    error::{Errno, Error},
    select::{self, BackendKind},
    sys,
};

pub(crate) enum UringSetupError {
    /// io_uring cannot be used here (the loop may fall back to poll).
    Unavailable(String),
}

/// user_data of cancel requests: this bit, plus the socket slot.
const TAG_CANCEL: u64 = 1 << 63;
/// Completion flags and constants from include/uapi/linux/io_uring.h.
const IORING_REGISTER_RING_FDS: u32 = 20;

/// Either a plain descriptor or a registered-file index.
#[derive(Clone, Copy, Debug)]
enum Tgt {
    Fd(RawFd),
    Fixed(u32),
}

/// Build an SQE for a `Tgt`: the opcode builders are generic over the
/// io-uring crate's sealed target types, so expand once per kind.
macro_rules! on_target {
    ($t:expr, $f:ident => $e:expr) => {
        match $t {
            Tgt::Fd(fd) => {
                let $f = types::Fd(fd);
                $e
            }
            Tgt::Fixed(i) => {
                let $f = types::Fixed(i);
                $e
            }
        }
    };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OpKind {
    Free,
    RecvMulti,
    RecvOne,
    /// One datagram of a batch.
    Send,
    /// Several stream buffers in one sendmsg.
    Gather,
    /// IORING_OP_POLL_ADD for POLLOUT: a datagram socket was full.
    PollOut,
}

/// One request's state, boxed so the kernel-visible parts (msghdr, name,
/// iovecs) keep their address while the slab grows.
struct Op {
    kind: OpKind,
    idx: u32,
    writes: Vec<WriteOp>,
    iov: Vec<libc::iovec>,
    hdr: libc::msghdr,
    name: libc::sockaddr_storage,
    control: Vec<u8>,
    recv_buf: Option<RawBuf>,
    res: i32,
}

impl Op {
    fn new() -> Box<Op> {
        Box::new(Op {
            kind: OpKind::Free,
            idx: 0,
            writes: Vec::new(),
            iov: Vec::new(),
            // SAFETY: all-zero is a valid msghdr and sockaddr_storage.
            hdr: unsafe { std::mem::zeroed() },
            name: unsafe { std::mem::zeroed() },
            control: Vec::new(),
            recv_buf: None,
            res: 0,
        })
    }
}

/// Per-socket state of this backend.
struct UFd {
    tgt: Tgt,
    fixed_slot: Option<u32>,
    /// The receive request in flight.
    recv_op: Option<u32>,
    /// A cancel for `recv_op` was sent (reading was disabled).
    recv_cancelling: bool,
    /// Receives that completed while reading was disabled.
    held: VecDeque<Result<RecvData, Errno>>,
    /// The send batch (or gather) in flight, in queue order.
    batch: Vec<u32>,
    batch_left: usize,
    /// A datagram came back EAGAIN: the queue waits for POLLOUT.
    blocked: bool,
    /// Link every batch (IOSQE_IO_LINK): AF_UNIX datagram and seqpacket
    /// sockets, whose type promises order even when the peer is slow.
    linked: bool,
    /// Requests in flight for this socket (receive + sends).
    inflight: usize,
    /// A close is waiting for `inflight` to drop to 0.
    closing: bool,
    /// Multishot recvmsg template: only msg_namelen and msg_controllen
    /// matter (io_uring_prep_recvmsg_multishot(3)). Boxed: stable address.
    tmpl: Box<libc::msghdr>,
}

impl UFd {
    fn new(tgt: Tgt, fixed_slot: Option<u32>) -> Self {
        Self {
            tgt,
            fixed_slot,
            recv_op: None,
            recv_cancelling: false,
            held: VecDeque::new(),
            batch: Vec::new(),
            batch_left: 0,
            blocked: false,
            linked: false,
            inflight: 0,
            closing: false,
            // SAFETY: all-zero is a valid msghdr.
            tmpl: Box::new(unsafe { std::mem::zeroed() }),
        }
    }
}

pub(crate) struct UringBackend {
    ring: IoUring,
    /// Index of the registered ring fd, used by io_uring_enter.
    ring_index: Option<u32>,
    defer_taskrun: bool,
    bufs: Option<BufRing>,
    /// IORING_OP_SEND takes a destination address (6.0, with SEND_ZC).
    send_addr: bool,
    fixed_free: Vec<u32>,
    fds: Vec<Option<UFd>>,
    #[expect(
        clippy::vec_box,
        reason = "the kernel holds pointers into each Op; boxes keep them put when the slab grows"
    )]
    ops: Vec<Box<Op>>,
    free_ops: Vec<u32>,
    inflight_total: usize,
    /// CQEs reaped but not processed yet.
    backlog: Vec<(u64, i32, u32)>,
    eventfd: Option<OwnedFd>,
}

fn unavailable(e: std::io::Error) -> UringSetupError {
    UringSetupError::Unavailable(select::explain_setup_error(
        &e,
        select::disabled_sysctl().as_deref(),
    ))
}

impl UringBackend {
    pub fn new(core: &mut Core) -> Result<Self, UringSetupError> {
        let cfg = core.cfg.clone();
        let entries = cfg.ring_entries.next_power_of_two();
        let cq = (entries * 8).min(65536);
        // Newest flags first; EINVAL means "this kernel does not know a
        // flag", any other error means io_uring is not usable at all.
        #[derive(Clone, Copy)]
        enum Flags {
            /// DEFER_TASKRUN needs SINGLE_ISSUER (6.1).
            Defer,
            /// COOP_TASKRUN + TASKRUN_FLAG (5.19).
            Coop,
            Plain,
        }
        let attempts: &[Flags] = if cfg.defer_taskrun {
            &[Flags::Defer, Flags::Coop, Flags::Plain]
        } else {
            &[Flags::Coop, Flags::Plain]
        };
        let mut last = None;
        let mut built = None;
        for &f in attempts {
            let mut b = IoUring::builder();
            b.setup_cqsize(cq);
            match f {
                Flags::Defer => {
                    b.setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_submit_all();
                }
                Flags::Coop => {
                    b.setup_coop_taskrun()
                        .setup_taskrun_flag()
                        .setup_submit_all();
                }
                Flags::Plain => {}
            }
            core.stats.syscalls += 1;
            match b.build(entries) {
                Ok(r) => {
                    built = Some((r, matches!(f, Flags::Defer)));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
                Err(e) => return Err(unavailable(e)),
            }
        }
        let Some((ring, defer_taskrun)) = built else {
            return Err(unavailable(last.unwrap_or_else(|| {
                std::io::Error::from_raw_os_error(libc::EINVAL)
            })));
        };
        let p = ring.params();
        if !p.is_feature_ext_arg() || !p.is_feature_nodrop() {
            return Err(UringSetupError::Unavailable(
                "the kernel's io_uring lacks IORING_FEAT_EXT_ARG or NODROP (needs 5.11+)".into(),
            ));
        }
        let mut probe = Probe::new();
        core.stats.syscalls += 1;
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(unavailable)?;
        for (code, name) in [
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::RecvMsg::CODE, "RECVMSG"),
            (opcode::Send::CODE, "SEND"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
        ] {
            if !probe.is_supported(code) {
                return Err(UringSetupError::Unavailable(format!(
                    "the kernel's io_uring has no IORING_OP_{name}"
                )));
            }
        }
        let send_addr = probe.is_supported(opcode::SendZc::CODE);
        let mut me = UringBackend {
            ring,
            ring_index: None,
            defer_taskrun,
            bufs: None,
            send_addr,
            fixed_free: Vec::new(),
            fds: Vec::new(),
            ops: Vec::new(),
            free_ops: Vec::new(),
            inflight_total: 0,
            backlog: Vec::new(),
            eventfd: None,
        };
        me.ring_index = me.register_ring_fd(core);
        let want = cfg
            .fixed_files
            .min(sys::nofile_limit(&mut core.stats) as u32);
        if want > 0 {
            core.stats.syscalls += 1;
            match me.ring.submitter().register_files_sparse(want) {
                Ok(()) => me.fixed_free = (0..want).rev().collect(),
                Err(e) => tracing::debug!("io_uring: no registered-file table ({e})"),
            }
        }
        // Multishot receives came in 6.0 together with IORING_OP_SEND_ZC
        // (the probe cannot see a flag, only opcodes); buffer rings alone
        // (5.19) are not enough.
        if cfg.multishot && send_addr {
            match BufRing::new(
                &me.ring,
                cfg.buf_ring_entries,
                &core.pool,
                &mut core.stats.syscalls,
            ) {
                Ok(b) => me.bufs = Some(b),
                Err(e) => {
                    tracing::debug!("io_uring: no provided-buffer ring ({e}); single-shot receives")
                }
            }
        }
        tracing::debug!(
            "io_uring backend: {} SQ / {} CQ entries, defer_taskrun {}, multishot {}, \
             registered files {}",
            me.ring.params().sq_entries(),
            me.ring.params().cq_entries(),
            me.defer_taskrun,
            me.bufs.is_some(),
            me.fixed_free.len()
        );
        Ok(me)
    }

    /// IORING_REGISTER_RING_FDS (5.18): io_uring_enter then takes an index
    /// instead of an fd. Optional; None if the kernel refuses.
    fn register_ring_fd(&mut self, core: &mut Core) -> Option<u32> {
        #[repr(C)]
        struct RsrcUpdate {
            offset: u32,
            resv: u32,
            data: u64,
        }
        let mut up = RsrcUpdate {
            offset: u32::MAX,
            resv: 0,
            data: self.ring.as_raw_fd() as u64,
        };
        core.stats.syscalls += 1;
        // SAFETY: io_uring_register(2) with one io_uring_rsrc_update.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.ring.as_raw_fd(),
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1,
            )
        };
        (r == 1).then_some(up.offset)
    }

    /// io_uring_enter(2), through the registered ring index when we have one.
    fn enter(
        &mut self,
        core: &mut Core,
        to_submit: u32,
        min_complete: u32,
        mut flags: u32,
        timeout: Option<Duration>,
    ) -> Result<usize, Errno> {
        #[repr(C)]
        struct KernelTimespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        #[repr(C)]
        struct GetEventsArg {
            sigmask: u64,
            sigmask_sz: u32,
            min_wait_usec: u32,
            ts: u64,
        }
        let ts = timeout.map(|d| KernelTimespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        });
        let arg = GetEventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: ts.as_ref().map_or(0, |t| t as *const KernelTimespec as u64),
        };
        let (fd, argp, argsz) = {
            let fd = match self.ring_index {
                Some(i) => {
                    flags |= EnterFlags::REGISTERED_RING.bits();
                    i as i64
                }
                None => self.ring.as_raw_fd() as i64,
            };
            if ts.is_some() {
                flags |= EnterFlags::EXT_ARG.bits();
                (
                    fd,
                    &arg as *const GetEventsArg as usize,
                    std::mem::size_of::<GetEventsArg>(),
                )
            } else {
                (fd, 0usize, 0usize)
            }
        };
        core.stats.syscalls += 1;
        core.stats.enters += 1;
        if flags & EnterFlags::GETEVENTS.bits() != 0 {
            core.stats.waits += 1;
        }
        // SAFETY: io_uring_enter(2) on our ring; `arg` and `ts` outlive it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                fd,
                to_submit,
                min_complete,
                flags,
                argp,
                argsz,
            )
        };
        if r < 0 {
            Err(Errno::last())
        } else {
            core.stats.sqes += r as u64;
            Ok(r as usize)
        }
    }

    fn sq_len(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Hand queued SQEs to the kernel without waiting.
    fn submit_now(&mut self, core: &mut Core) -> Result<(), Error> {
        if let Some(b) = &self.bufs {
            b.commit();
        }
        loop {
            let n = self.sq_len() as u32;
            if n == 0 {
                return Ok(());
            }
            match self.enter(core, n, 0, 0, None) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                // EBUSY/EAGAIN: completions are backed up; reap them (they
                // are processed by the next `wait`) and try again.
                Err(e) if e.0 == libc::EBUSY || e == Errno::EAGAIN => self.reap(core),
                Err(e) => {
                    return Err(Error::Sys {
                        call: "io_uring_enter",
                        source: e.to_io(),
                    });
                }
            }
        }
    }

    /// Copy posted CQEs into the backlog.
    fn reap(&mut self, core: &mut Core) {
        let mut cq = self.ring.completion();
        cq.sync();
        for e in &mut cq {
            self.backlog.push((e.user_data(), e.result(), e.flags()));
        }
        core.stats.cqes += self.backlog.len() as u64;
    }

    /// Queue one SQE, submitting first if the queue is full.
    fn push(&mut self, core: &mut Core, e: &squeue::Entry) {
        loop {
            // SAFETY: every pointer in `e` refers to boxed `Op` memory or
            // buffers kept alive until the request's final CQE.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return;
            }
            if let Err(err) = self.submit_now(core) {
                tracing::error!("io_uring: cannot submit: {err}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Queue a batch in one piece (a link chain cannot span two
    /// io_uring_enter calls: an unterminated chain is cut at the end of a
    /// submission).
    fn push_batch(&mut self, core: &mut Core, es: &[squeue::Entry]) {
        let room = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if room < es.len() && self.submit_now(core).is_err() {
            tracing::error!("io_uring: cannot submit a send batch");
        }
        // SAFETY: as in `push`; the queue has room (batches are capped at
        // the queue size).
        if unsafe { self.ring.submission().push_multiple(es) }.is_err() {
            for e in es {
                self.push(core, e);
            }
        }
    }

    fn alloc_op(&mut self, kind: OpKind, idx: u32) -> u32 {
        let id = match self.free_ops.pop() {
            Some(id) => id,
            None => {
                self.ops.push(Op::new());
                self.ops.len() as u32 - 1
            }
        };
        let op = &mut self.ops[id as usize];
        op.kind = kind;
        op.idx = idx;
        op.res = 0;
        self.inflight_total += 1;
        id
    }

    fn free_op(&mut self, id: u32) {
        let op = &mut self.ops[id as usize];
        op.kind = OpKind::Free;
        op.writes.clear();
        op.iov.clear();
        op.control.clear();
        op.recv_buf = None;
        self.free_ops.push(id);
        self.inflight_total -= 1;
    }

    fn ufd(&mut self, idx: u32) -> &mut UFd {
        self.fds[idx as usize]
            .as_mut()
            .expect("io_uring state of a registered socket")
    }

    /// Arm the socket's receive if reading is on and none is in flight.
    fn arm_recv(&mut self, core: &mut Core, idx: u32) {
        let Some(st) = core.get(idx) else { return };
        if !st.read_enabled || st.closing {
            return;
        }
        let (mode, sock_type) = (st.mode, st.sock_type);
        let u = self.ufd(idx);
        if u.recv_op.is_some() {
            return;
        }
        let tgt = u.tgt;
        let entry = if self.bufs.is_some() {
            let id = self.alloc_op(OpKind::RecvMulti, idx);
            let u = self.ufd(idx);
            let e = if mode == Mode::ReadWrite {
                // MSG_TRUNC on a datagram socket makes the result the real
                // datagram length (recv(2)), so a cut one is detectable.
                let flags = if sock_type == SockType::Dgram {
                    libc::MSG_TRUNC
                } else {
                    0
                };
                on_target!(tgt, t => opcode::RecvMulti::new(t, BGID).flags(flags).build())
            } else {
                let tmpl: *const libc::msghdr = &*u.tmpl;
                on_target!(tgt, t => opcode::RecvMsgMulti::new(t, tmpl, BGID).build())
            };
            u.recv_op = Some(id);
            u.inflight += 1;
            e.user_data(id as u64)
        } else {
            let id = self.alloc_op(OpKind::RecvOne, idx);
            let clen = if mode == Mode::RecvMsgSendMsg {
                core.cfg.max_control
            } else {
                0
            };
            let raw = core.pool.get().into_raw();
            let op = &mut self.ops[id as usize];
            op.iov.clear();
            op.iov.push(libc::iovec {
                iov_base: raw.ptr().cast(),
                iov_len: raw.cap(),
            });
            op.recv_buf = Some(raw);
            op.control.resize(clen, 0);
            // SAFETY: all-zero is a valid msghdr.
            op.hdr = unsafe { std::mem::zeroed() };
            if mode != Mode::ReadWrite {
                op.hdr.msg_name = (&mut op.name as *mut libc::sockaddr_storage).cast();
                op.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            }
            op.hdr.msg_iov = op.iov.as_mut_ptr();
            op.hdr.msg_iovlen = 1;
            if clen > 0 {
                op.hdr.msg_control = op.control.as_mut_ptr().cast();
                op.hdr.msg_controllen = clen as _;
            }
            let hdr: *mut libc::msghdr = &mut op.hdr;
            let flags = if sock_type == SockType::Dgram && mode == Mode::ReadWrite {
                libc::MSG_TRUNC as u32
            } else {
                0
            };
            let u = self.ufd(idx);
            u.recv_op = Some(id);
            u.inflight += 1;
            on_target!(tgt, t => opcode::RecvMsg::new(t, hdr).flags(flags).build())
                .user_data(id as u64)
        };
        self.push(core, &entry);
    }

    /// Start the next send batch (datagrams) or gather (streams) of `idx`.
    ///
    /// One batch or gather is in flight per socket. Datagram sends carry
    /// MSG_DONTWAIT, so a full socket completes the request with EAGAIN
    /// (io_uring arms no internal poll when the request asks not to wait,
    /// REQ_F_NOWAIT in io_uring/net.c) and the queue stops there, as
    /// sendmmsg(2) stops in the poll backend; a POLL_ADD for POLLOUT then
    /// restarts it. Left to io_uring's internal poll, several parked sends
    /// of one socket would be woken in wait-queue order, not queue order.
    ///
    /// Batches are not linked: a linked request is started from task work
    /// after its predecessor completes, and a wait runs only a bounded
    /// amount of task work (io_cqring_wait: IO_LOCAL_TW_DEFAULT_MAX items,
    /// io_uring/io_uring.c). Hardlinked batches cost about one
    /// io_uring_enter per datagram, mostly 0.4-0.9x poll's throughput in
    /// the loopback benchmark when they were tried. Unlinked, all of a
    /// batch is issued in one pass.
    /// The price: when an IP socket runs out of send buffer in the middle
    /// of a batch, a later datagram can find room a transmit completion
    /// freed an instant after an earlier one was refused, and leave first
    /// (UDP never promised order). AF_UNIX datagram and seqpacket sockets,
    /// whose type does promise order, get IOSQE_IO_LINK chains: the chain
    /// is cut at the first EAGAIN and the rest is requeued untouched.
    fn start_writes(&mut self, core: &mut Core, idx: u32) {
        let Some(st) = core.get(idx) else { return };
        let u = self.ufd(idx);
        if st.closing || st.write_q.is_empty() || u.batch_left > 0 || u.blocked {
            return;
        }
        let (tgt, linked) = (u.tgt, u.linked);
        let sq_cap = self.ring.params().sq_entries() as usize;
        let gather = core.cfg.send_batch.min(sq_cap);
        let st = core.fd(idx);
        let mut entries: Vec<squeue::Entry> = Vec::new();
        let mut batch = Vec::new();
        if st.sock_type == SockType::Stream {
            let id = self.alloc_op(OpKind::Gather, idx);
            let op = &mut self.ops[id as usize];
            // A message with control data or an address goes alone.
            while let Some(front) = st.write_q.front() {
                let special = !front.control().is_empty() || front.addr().is_some();
                if op.writes.len() >= gather || (special && !op.writes.is_empty()) {
                    break;
                }
                op.writes
                    .push(st.write_q.pop_front().expect("front exists"));
                if special {
                    break;
                }
            }
            op.iov.clear();
            for w in &op.writes {
                let d = w.remaining();
                op.iov.push(libc::iovec {
                    iov_base: d.as_ptr() as *mut libc::c_void,
                    iov_len: d.len(),
                });
            }
            // SAFETY: all-zero is a valid msghdr.
            op.hdr = unsafe { std::mem::zeroed() };
            op.hdr.msg_iov = op.iov.as_mut_ptr();
            op.hdr.msg_iovlen = op.iov.len();
            let control = op.writes[0].control();
            if !control.is_empty() {
                op.hdr.msg_control = control.as_ptr() as *mut libc::c_void;
                op.hdr.msg_controllen = control.len() as _;
            }
            let hdr: *const libc::msghdr = &op.hdr;
            // A stream send may wait inside io_uring: it is the only one in
            // flight, so it cannot be overtaken.
            entries.push(
                on_target!(tgt, t => opcode::SendMsg::new(t, hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build())
                .user_data(id as u64),
            );
            batch.push(id);
        } else {
            let send_addr = self.send_addr;
            let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
            // Everything queued, up to the submission queue's size: a batch
            // completes inside the enter that submits it, so this sends per
            // iteration what poll's sendmmsg loop sends.
            let n = st.write_q.len().min(sq_cap);
            for i in 0..n {
                let w = core.fd(idx).write_q.pop_front().expect("n <= len");
                let id = self.alloc_op(OpKind::Send, idx);
                let op = &mut self.ops[id as usize];
                op.writes.push(w);
                let w = &op.writes[0];
                let data = w.remaining();
                let plain = w.control().is_empty();
                let mut e = match (w.addr(), plain) {
                    (None, true) => on_target!(tgt, t => opcode::Send::new(
                        t,
                        data.as_ptr(),
                        data.len() as u32
                    )
                    .flags(flags)
                    .build()),
                    (Some(a), true) if send_addr => on_target!(tgt, t => opcode::Send::new(
                        t,
                        data.as_ptr(),
                        data.len() as u32
                    )
                    .dest_addr(a.as_ptr())
                    .dest_addr_len(a.socklen())
                    .flags(flags)
                    .build()),
                    _ => {
                        op.iov.clear();
                        op.iov.push(libc::iovec {
                            iov_base: data.as_ptr() as *mut libc::c_void,
                            iov_len: data.len(),
                        });
                        // SAFETY: all-zero is a valid msghdr.
                        op.hdr = unsafe { std::mem::zeroed() };
                        if let Some(a) = w.addr() {
                            op.hdr.msg_name = a.as_ptr() as *mut libc::c_void;
                            op.hdr.msg_namelen = a.socklen();
                        }
                        op.hdr.msg_iov = op.iov.as_mut_ptr();
                        op.hdr.msg_iovlen = 1;
                        let control = w.control();
                        if !control.is_empty() {
                            op.hdr.msg_control = control.as_ptr() as *mut libc::c_void;
                            op.hdr.msg_controllen = control.len() as _;
                        }
                        let hdr: *const libc::msghdr = &op.hdr;
                        on_target!(tgt, t => opcode::SendMsg::new(t, hdr)
                            .flags(flags as u32)
                            .build())
                    }
                }
                .user_data(id as u64);
                if linked && i + 1 < n {
                    e = e.flags(squeue::Flags::IO_LINK);
                }
                entries.push(e);
                batch.push(id);
            }
        }
        let u = self.ufd(idx);
        u.batch_left = batch.len();
        u.inflight += batch.len();
        u.batch = batch;
        self.push_batch(core, &entries);
    }

    /// Every request of the socket's batch has completed: hand the results
    /// over in queue order.
    fn finalize_batch(&mut self, core: &mut Core, idx: u32) {
        let batch = std::mem::take(&mut self.ufd(idx).batch);
        let closing = core.fd(idx).closing;
        // Writes that did not go out (EAGAIN, a cut link chain, the unsent
        // rest of a partial gather) go back to the front of the queue, in
        // order.
        let mut back: Vec<WriteOp> = Vec::new();
        let mut blocked = false;
        for id in batch {
            let op = &mut self.ops[id as usize];
            let res = op.res;
            let writes = std::mem::take(&mut op.writes);
            let kind = op.kind;
            self.free_op(id);
            match kind {
                OpKind::Send => {
                    for w in writes {
                        if res >= 0 {
                            core.complete_write(idx, w, Ok(res as usize));
                        } else if res == -libc::EAGAIN && !closing {
                            blocked = true;
                            back.push(w);
                        } else if res == -libc::ECANCELED && !closing {
                            back.push(w);
                        } else {
                            core.complete_write(idx, w, Err(Errno(-res)));
                        }
                    }
                }
                OpKind::Gather => {
                    let mut writes = writes.into_iter();
                    if res < 0 {
                        if let Some(first) = writes.next() {
                            core.complete_write(idx, first, Err(Errno(-res)));
                        }
                        if closing {
                            for w in writes {
                                core.complete_write(idx, w, Err(Errno::ECANCELED));
                            }
                        } else {
                            back.extend(writes);
                        }
                        continue;
                    }
                    let mut left = res as usize;
                    for mut w in writes.by_ref() {
                        let rem = w.remaining().len();
                        if rem <= left {
                            left -= rem;
                            let n = w.buf.len();
                            core.complete_write(idx, w, Ok(n));
                        } else {
                            w.offset += left;
                            left = 0;
                            back.push(w);
                        }
                    }
                }
                OpKind::Free | OpKind::RecvMulti | OpKind::RecvOne | OpKind::PollOut => {
                    unreachable!("a send batch holds only sends")
                }
            }
        }
        let q = &mut core.fd(idx).write_q;
        for w in back.into_iter().rev() {
            q.push_front(w);
        }
        if blocked {
            self.ufd(idx).blocked = true;
            self.arm_pollout(core, idx);
        }
    }

    /// Wait for room in a full datagram socket (IORING_OP_POLL_ADD, one
    /// shot, POLLOUT; errors and hang-ups end the wait too).
    fn arm_pollout(&mut self, core: &mut Core, idx: u32) {
        let tgt = self.ufd(idx).tgt;
        let id = self.alloc_op(OpKind::PollOut, idx);
        self.ufd(idx).inflight += 1;
        let e = on_target!(tgt, t => opcode::PollAdd::new(t, libc::POLLOUT as u32).build())
            .user_data(id as u64);
        self.push(core, &e);
    }

    fn on_pollout(&mut self, core: &mut Core, id: u32) {
        let idx = self.ops[id as usize].idx;
        self.free_op(id);
        let u = self.ufd(idx);
        u.inflight -= 1;
        u.blocked = false;
        if u.closing {
            self.maybe_finish_close(core, idx);
        } else {
            self.start_writes(core, idx);
        }
    }

    fn on_send(&mut self, core: &mut Core, id: u32, res: i32) {
        let idx = self.ops[id as usize].idx;
        self.ops[id as usize].res = res;
        let u = self.ufd(idx);
        u.batch_left -= 1;
        u.inflight -= 1;
        if u.batch_left > 0 {
            return;
        }
        self.finalize_batch(core, idx);
        if self.ufd(idx).closing {
            self.maybe_finish_close(core, idx);
        } else {
            self.start_writes(core, idx);
        }
    }

    fn on_recv(&mut self, core: &mut Core, id: u32, res: i32, flags: u32) {
        let (kind, idx) = {
            let op = &self.ops[id as usize];
            (op.kind, op.idx)
        };
        let multishot = kind == OpKind::RecvMulti;
        let more = multishot && cqueue::more(flags);
        let (mode, closing) = {
            let st = core.fd(idx);
            (st.mode, st.closing)
        };
        let result: Option<Result<RecvData, Errno>> = if res >= 0 {
            let buf = if multishot {
                let bid = cqueue::buffer_select(flags);
                bid.and_then(|bid| {
                    let bufs = self.bufs.as_mut().expect("multishot needs the ring");
                    let b = bufs.take(bid);
                    bufs.provide(bid, core.pool.get());
                    b
                })
            } else {
                self.ops[id as usize].recv_buf.take().map(RawBuf::into_buf)
            };
            let mut buf = buf.unwrap_or_else(|| core.pool.get());
            Some(if multishot && mode != Mode::ReadWrite {
                let tmpl = &*self.ufd(idx).tmpl;
                parse_recvmsg_out(buf, res as usize, tmpl)
            } else if multishot {
                let cap = buf.capacity();
                let n = res as usize;
                buf.set_len(n.min(cap));
                let flags = if n > cap { libc::MSG_TRUNC } else { 0 };
                Ok(RecvData {
                    buf,
                    addr: None,
                    control: Vec::new(),
                    flags,
                })
            } else {
                let op = &self.ops[id as usize];
                let n = res as usize;
                let cap = buf.capacity();
                buf.set_len(n.min(cap));
                let mut flags = op.hdr.msg_flags;
                if n > cap {
                    flags |= libc::MSG_TRUNC;
                }
                let addr = (mode != Mode::ReadWrite).then(|| {
                    let len = (op.hdr.msg_namelen as usize)
                        .min(std::mem::size_of::<libc::sockaddr_storage>());
                    // SAFETY: the kernel wrote `len` bytes of address.
                    SockAddr::from_bytes(unsafe {
                        std::slice::from_raw_parts(
                            (&op.name as *const libc::sockaddr_storage).cast::<u8>(),
                            len,
                        )
                    })
                });
                let control = op.control[..op.hdr.msg_controllen.min(op.control.len())].to_vec();
                Ok(RecvData {
                    buf,
                    addr,
                    control,
                    flags,
                })
            })
        } else {
            let e = Errno(-res);
            let u = self.ufd(idx);
            match e {
                // The ring ran dry: nothing was received; re-arm below.
                Errno::ENOBUFS if multishot => None,
                Errno::ECANCELED if u.recv_cancelling || closing => None,
                _ => Some(Err(e)),
            }
        };
        if let Some(r) = result {
            if closing {
                drop(r);
            } else if core.fd(idx).read_enabled {
                core.deliver_recv(idx, r);
            } else {
                self.ufd(idx).held.push_back(r);
            }
        }
        if more {
            return;
        }
        self.free_op(id);
        let u = self.ufd(idx);
        u.recv_op = None;
        u.recv_cancelling = false;
        u.inflight -= 1;
        if u.closing {
            self.maybe_finish_close(core, idx);
        } else if core.fd(idx).read_enabled {
            core.stats.rearms += 1;
            self.arm_recv(core, idx);
        }
    }

    fn maybe_finish_close(&mut self, core: &mut Core, idx: u32) {
        let u = self.ufd(idx);
        if u.inflight > 0 {
            return;
        }
        u.held.clear();
        if let Some(slot) = u.fixed_slot.take() {
            core.stats.syscalls += 1;
            if let Err(e) = self.ring.submitter().register_files_update(slot, &[-1]) {
                tracing::warn!("io_uring: clearing registered file {slot}: {e}");
            } else {
                self.fixed_free.push(slot);
            }
        }
        core.finish_close(idx);
    }

    fn cancel_all_of(&mut self, core: &mut Core, idx: u32) {
        let raw = core.fd(idx).raw;
        let e = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(raw)).all())
            .build()
            .user_data(TAG_CANCEL | idx as u64);
        self.push(core, &e);
    }

    fn process(&mut self, core: &mut Core, ud: u64, res: i32, flags: u32) {
        if ud & TAG_CANCEL != 0 {
            // A close's cancel found nothing while requests are still in
            // flight (they were between states): try again.
            let idx = (ud & 0xffff_ffff) as u32;
            if let Some(Some(u)) = self.fds.get(idx as usize)
                && u.closing
                && u.inflight > 0
                && res == -libc::ENOENT
            {
                self.cancel_all_of(core, idx);
            }
            return;
        }
        let id = ud as u32;
        match self.ops.get(id as usize).map(|o| o.kind) {
            Some(OpKind::RecvMulti | OpKind::RecvOne) => self.on_recv(core, id, res, flags),
            Some(OpKind::Send | OpKind::Gather) => self.on_send(core, id, res),
            Some(OpKind::PollOut) => self.on_pollout(core, id),
            _ => tracing::error!("io_uring: completion for unknown request {ud:#x}"),
        }
    }

    fn process_backlog(&mut self, core: &mut Core) {
        loop {
            self.reap(core);
            if self.backlog.is_empty() {
                // Publish the buffers given back while processing.
                if let Some(b) = &self.bufs {
                    b.commit();
                }
                return;
            }
            for (ud, res, flags) in std::mem::take(&mut self.backlog) {
                self.process(core, ud, res, flags);
            }
        }
    }
}

/// Split a multishot recvmsg buffer (`io_uring_recvmsg_out`, name,
/// control, payload) into address, control data and a payload window —
/// the payload is not copied.
fn parse_recvmsg_out(
    mut buf: crate::buf::Buf,
    used: usize,
    tmpl: &libc::msghdr,
) -> Result<RecvData, Errno> {
    let full = buf.full_capacity();
    buf.set_window(0, used.min(full));
    let (addr, control, start, len, flags) = {
        let Ok(out) = types::RecvMsgOut::parse(buf.as_slice(), tmpl) else {
            return Err(Errno(libc::EPROTO));
        };
        let base = buf.as_slice().as_ptr() as usize;
        let name = out.name_data();
        let addr = (!name.is_empty()).then(|| SockAddr::from_bytes(name));
        let control = out.control_data().to_vec();
        let payload = out.payload_data();
        let mut flags = out.flags() as i32;
        if out.is_payload_truncated() || out.incoming_payload_len() as usize > payload.len() {
            flags |= libc::MSG_TRUNC;
        }
        (
            addr,
            control,
            payload.as_ptr() as usize - base,
            payload.len(),
            flags,
        )
    };
    buf.set_window(start, len);
    Ok(RecvData {
        buf,
        addr,
        control,
        flags,
    })
}

impl Backend for UringBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn describe(&self, cfg: &crate::core::Config) -> String {
        let p = self.ring.params();
        let mut parts = vec![format!("{}/{} SQ/CQ", p.sq_entries(), p.cq_entries())];
        parts.push(
            if self.defer_taskrun {
                "defer_taskrun"
            } else {
                "coop_taskrun"
            }
            .to_owned(),
        );
        parts.push(if self.bufs.is_some() {
            format!("multishot recv, {}-buffer ring", cfg.buf_ring_entries)
        } else {
            "single-shot recv".to_owned()
        });
        let fixed = self.fixed_free.len()
            + self
                .fds
                .iter()
                .flatten()
                .filter(|u| u.fixed_slot.is_some())
                .count();
        if fixed > 0 {
            parts.push(format!("{fixed} registered files"));
        }
        if self.ring_index.is_some() {
            parts.push("registered ring fd".to_owned());
        }
        parts.push(format!("unlinked send batches, gather x{}", cfg.send_batch));
        format!("io_uring ({})", parts.join(", "))
    }

    fn register(&mut self, core: &mut Core, idx: u32) -> Result<(), Error> {
        let (raw, mode, family) = {
            let st = core.fd(idx);
            (st.raw, st.mode, st.family)
        };
        let mut fixed_slot = None;
        if let Some(slot) = self.fixed_free.pop() {
            core.stats.syscalls += 1;
            match self.ring.submitter().register_files_update(slot, &[raw]) {
                Ok(_) => fixed_slot = Some(slot),
                Err(e) => {
                    tracing::debug!("io_uring: registering fd {raw}: {e}");
                    self.fixed_free.push(slot);
                }
            }
        }
        let tgt = fixed_slot.map_or(Tgt::Fd(raw), Tgt::Fixed);
        let mut u = UFd::new(tgt, fixed_slot);
        u.linked = family == libc::AF_UNIX || core.fd(idx).sock_type == SockType::SeqPacket;
        // The name field: a sockaddr_in6 covers both IP families; anything
        // else gets a whole sockaddr_storage.
        u.tmpl.msg_namelen = match family {
            libc::AF_INET | libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>() as u32,
            _ => std::mem::size_of::<libc::sockaddr_storage>() as u32,
        };
        if mode == Mode::RecvMsgSendMsg {
            u.tmpl.msg_controllen = core.cfg.max_control as _;
        }
        if self.fds.len() <= idx as usize {
            self.fds.resize_with(idx as usize + 1, || None);
        }
        self.fds[idx as usize] = Some(u);
        self.arm_recv(core, idx);
        Ok(())
    }

    fn read_changed(&mut self, core: &mut Core, idx: u32) {
        if core.fd(idx).read_enabled {
            // What arrived while disabled comes first, in order.
            while let Some(r) = self.ufd(idx).held.pop_front() {
                core.deliver_recv(idx, r);
                if !core.fd(idx).read_enabled {
                    return;
                }
            }
            // A cancel still on its way re-arms on its completion.
            if !self.ufd(idx).recv_cancelling {
                self.arm_recv(core, idx);
            }
        } else if let Some(op) = self.ufd(idx).recv_op
            && !self.ufd(idx).recv_cancelling
        {
            self.ufd(idx).recv_cancelling = true;
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(op as u64))
                .build()
                .user_data(TAG_CANCEL | idx as u64);
            self.push(core, &e);
        }
    }

    fn close(&mut self, core: &mut Core, idx: u32) {
        let u = self.ufd(idx);
        u.closing = true;
        if u.inflight == 0 {
            self.maybe_finish_close(core, idx);
        } else {
            self.cancel_all_of(core, idx);
        }
    }

    fn flush(&mut self, core: &mut Core) -> Result<(), Error> {
        for idx in core.take_dirty() {
            self.start_writes(core, idx);
        }
        Ok(())
    }

    fn submit(&mut self, core: &mut Core) -> Result<(), Error> {
        self.submit_now(core)
    }

    fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> Result<(), Error> {
        if let Some(b) = &self.bufs {
            b.commit();
        }
        // Completions already posted (or backed up): do not sleep.
        let ready = !self.backlog.is_empty() || !self.ring.completion().is_empty();
        let timeout = if ready { Some(Duration::ZERO) } else { timeout };
        let to_submit = self.sq_len() as u32;
        let getevents = EnterFlags::GETEVENTS.bits();
        let r = match timeout {
            Some(d) if d.is_zero() => {
                // Deferred task work runs only inside an enter with
                // GETEVENTS; otherwise an enter is needed only to submit
                // or when the kernel flagged pending task work.
                // An overflowed completion queue is flushed only by an
                // enter with GETEVENTS as well (IORING_SQ_CQ_OVERFLOW).
                let taskrun = {
                    let sq = self.ring.submission();
                    sq.taskrun() || sq.cq_overflow()
                };
                if to_submit == 0 && !self.defer_taskrun && !taskrun {
                    Ok(0)
                } else {
                    let flags = if self.defer_taskrun || taskrun {
                        getevents
                    } else {
                        0
                    };
                    self.enter(core, to_submit, 0, flags, None)
                }
            }
            Some(d) => self.enter(core, to_submit, 1, getevents, Some(d)),
            None => self.enter(core, to_submit, 1, getevents, None),
        };
        match r {
            Ok(_) => {}
            Err(e) if e == Errno::EINTR || e.0 == libc::ETIME => {}
            Err(e) if e.0 == libc::EBUSY || e == Errno::EAGAIN => {}
            Err(e) => {
                return Err(Error::Sys {
                    call: "io_uring_enter",
                    source: e.to_io(),
                });
            }
        }
        self.process_backlog(core);
        Ok(())
    }

    fn pollable_fd(&mut self, core: &mut Core) -> Result<RawFd, Error> {
        if let Some(fd) = &self.eventfd {
            return Ok(fd.as_raw_fd());
        }
        let fd = sys::eventfd(&mut core.stats)?;
        core.stats.syscalls += 1;
        self.ring
            .submitter()
            .register_eventfd(fd.as_raw_fd())
            .map_err(Error::sys("io_uring_register(IORING_REGISTER_EVENTFD)"))?;
        let raw = fd.as_raw_fd();
        self.eventfd = Some(fd);
        Ok(raw)
    }

    fn pollable_ack(&mut self, core: &mut Core) {
        if let Some(fd) = &self.eventfd {
            sys::eventfd_drain(fd.as_raw_fd(), &mut core.stats);
        }
    }

    fn released(&mut self, idx: u32) {
        if let Some(slot) = self.fds.get_mut(idx as usize) {
            *slot = None;
        }
    }
}

impl Drop for UringBackend {
    /// Cancel everything and wait for the last completions before any
    /// buffer the kernel might still write is freed. If the ring cannot be
    /// drained, the buffers are leaked rather than freed under the kernel.
    fn drop(&mut self) {
        let mut core = Core::new(crate::core::Config::default());
        if self.inflight_total > 0 {
            let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(TAG_CANCEL | u32::MAX as u64);
            // SAFETY: the cancel SQE carries no pointers.
            let _ = unsafe { self.ring.submission().push(&e) };
            for _ in 0..1000 {
                if self.inflight_total == 0 {
                    break;
                }
                let n = self.sq_len() as u32;
                let _ = self.enter(
                    &mut core,
                    n,
                    1,
                    EnterFlags::GETEVENTS.bits(),
                    Some(Duration::from_millis(10)),
                );
                self.reap(&mut core);
                for (ud, _res, flags) in std::mem::take(&mut self.backlog) {
                    if ud & TAG_CANCEL != 0 {
                        continue;
                    }
                    let id = ud as u32;
                    let Some(op) = self.ops.get_mut(id as usize) else {
                        continue;
                    };
                    if op.kind == OpKind::RecvMulti {
                        if let Some(bid) = cqueue::buffer_select(flags)
                            && let Some(b) = self.bufs.as_mut()
                        {
                            drop(b.take(bid));
                        }
                        if cqueue::more(flags) {
                            continue;
                        }
                    }
                    if op.kind != OpKind::Free {
                        self.free_op(id);
                    }
                }
            }
        }
        if self.inflight_total > 0 {
            tracing::error!(
                "io_uring: {} requests still in flight at teardown; leaking their buffers",
                self.inflight_total
            );
            for op in std::mem::take(&mut self.ops) {
                std::mem::forget(op);
            }
            if let Some(b) = self.bufs.as_mut() {
                b.leak_buffers();
            }
        } else if self.bufs.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}
