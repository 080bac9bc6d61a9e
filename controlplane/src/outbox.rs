//! The appliance's own outgoing datagrams (IPFIX to collectors, RFC 5424
//! syslog), sent through the completion-style I/O layer (`sockio`), so
//! `XDPGATE_IO_BACKEND=io_uring` moves them to io_uring.
//!
//! One thread owns the `sockio::Io` loop (it is not `Send`); producers hand
//! datagrams over a bounded channel and never wait: a full channel, a full
//! socket queue or a send error drops the datagram and counts it. Memory is
//! bounded by the channel capacity plus the socket queue limit, whatever a
//! collector does.
use std::{
    cell::RefCell,
    net::{SocketAddr, UdpSocket},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sockio::{Buf, Errno, Handler, Io, Mode, SockAddr, SockId};

/// What a datagram carries: counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Ipfix = 0,
    Syslog = 1,
}

const CLASSES: usize = 2;

/// Counters of one class.
#[derive(Debug, Default)]
pub struct ClassStats {
    /// Datagrams the kernel took.
    pub sent: AtomicU64,
    pub bytes: AtomicU64,
    /// Datagrams dropped before the kernel: the channel or the socket
    /// queue was full (a slow or absent collector), or the loop is gone.
    pub dropped: AtomicU64,
    /// Datagrams whose send completed with an error (ENETUNREACH, ...).
    pub send_errors: AtomicU64,
}

/// A snapshot of [`ClassStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ClassCounts {
    pub sent: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub send_errors: u64,
}

impl ClassStats {
    pub fn snapshot(&self) -> ClassCounts {
        ClassCounts {
            sent: self.sent.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    classes: [ClassStats; CLASSES],
}

impl Stats {
    pub fn class(&self, c: Class) -> &ClassStats {
        &self.classes[c as usize]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("starting the I/O loop: {0}")]
    Io(#[from] sockio::Error),
    #[error("opening the {family} UDP socket: {source}")]
    Socket {
        family: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the outbox thread: {0}")]
    Thread(std::io::Error),
}

struct Datagram {
    class: Class,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// Handle of the sending thread; dropping it flushes what is queued and
/// stops the thread.
pub struct Outbox {
    tx: Option<SyncSender<Datagram>>,
    stats: Arc<Stats>,
    backend: String,
    thread: Option<JoinHandle<()>>,
}

/// Datagrams handed to the kernel per socket per loop iteration.
const BATCH: usize = 64;

impl Outbox {
    /// Start the thread with a channel of `capacity` datagrams and at most
    /// `queue_limit` datagrams waiting per socket in the loop.
    pub fn start(capacity: usize, queue_limit: usize) -> Result<Outbox, OutboxError> {
        Self::start_on(capacity, queue_limit, None)
    }

    /// [`Outbox::start`] on `backend` (None: the one `XDPGATE_IO_BACKEND`
    /// names); benchmarks compare the backends in one process this way.
    pub fn start_on(
        capacity: usize,
        queue_limit: usize,
        backend: Option<sockio::BackendKind>,
    ) -> Result<Outbox, OutboxError> {
        let (tx, rx) = mpsc::sync_channel::<Datagram>(capacity.max(1));
        let stats = Arc::new(Stats::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("xdpgate-outbox".into())
            .spawn(move || {
                let looped = Looped::new(queue_limit, backend, thread_stats);
                match looped {
                    Ok(mut l) => {
                        let _ = ready_tx.send(Ok(l.io.describe()));
                        l.run(rx);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(OutboxError::Thread)?;
        let backend = match ready_rx.recv() {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(OutboxError::Thread(std::io::Error::other(
                    "the outbox thread died while starting",
                )));
            }
        };
        Ok(Outbox {
            tx: Some(tx),
            stats,
            backend,
            thread: Some(thread),
        })
    }

    /// Queue a datagram; false (and counted as dropped) if it cannot be.
    /// Never blocks.
    pub fn send(&self, class: Class, to: SocketAddr, payload: Vec<u8>) -> bool {
        self.send_within(class, to, payload, Duration::ZERO)
    }

    /// [`Outbox::send`], waiting up to `wait` for room when the queue is
    /// full: for a sender on a thread of its own (the flow exporter) whose
    /// bursts are larger than the queue. Bounded: then it drops.
    pub fn send_within(
        &self,
        class: Class,
        to: SocketAddr,
        payload: Vec<u8>,
        wait: Duration,
    ) -> bool {
        let deadline = Instant::now() + wait;
        let mut d = Datagram { class, to, payload };
        let queued = loop {
            let Some(tx) = &self.tx else { break false };
            match tx.try_send(d) {
                Ok(()) => break true,
                Err(TrySendError::Disconnected(_)) => break false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        break false;
                    }
                    d = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        };
        if !queued {
            self.stats
                .class(class)
                .dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The I/O backend in words (after any io_uring fallback).
    pub fn backend(&self) -> &str {
        &self.backend
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Send completions, counted per class.
struct Completions {
    stats: Arc<Stats>,
    /// The IPv4 and IPv6 sockets (set once both are registered).
    socks: Vec<SockId>,
    /// Class of each datagram in flight, in submission order per socket
    /// (sockio completes a socket's writes in order).
    inflight: [std::collections::VecDeque<Class>; 2],
}

impl Handler for Completions {
    fn sendto(
        &mut self,
        _io: &mut Io,
        id: SockId,
        res: Result<usize, Errno>,
        _buf: Buf,
        _to: SockAddr,
    ) {
        let side = usize::from(self.socks.first() != Some(&id));
        let class = self.inflight[side].pop_front().unwrap_or(Class::Ipfix);
        let s = self.stats.class(class);
        match res {
            Ok(n) => {
                s.sent.fetch_add(1, Ordering::Relaxed);
                s.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e == Errno::ECANCELED => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                s.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The loop side: one unconnected UDP socket per address family.
struct Looped {
    io: Io,
    socks: [SockId; 2],
    completions: Rc<RefCell<Completions>>,
    stats: Arc<Stats>,
}

impl Looped {
    fn new(
        queue_limit: usize,
        backend: Option<sockio::BackendKind>,
        stats: Arc<Stats>,
    ) -> Result<Looped, OutboxError> {
        let mut builder = Io::builder().queue_limit(queue_limit.max(BATCH));
        if let Some(kind) = backend {
            builder = builder.backend(kind);
        }
        let mut io = builder.build()?;
        let completions = Rc::new(RefCell::new(Completions {
            stats: stats.clone(),
            socks: Vec::new(),
            inflight: Default::default(),
        }));
        let v4 = UdpSocket::bind("0.0.0.0:0").map_err(|source| OutboxError::Socket {
            family: "IPv4",
            source,
        })?;
        let v6 = UdpSocket::bind("[::]:0").map_err(|source| OutboxError::Socket {
            family: "IPv6",
            source,
        })?;
        let socks = [
            io.register(v4, Mode::RecvFromSendTo, completions.clone())?,
            io.register(v6, Mode::RecvFromSendTo, completions.clone())?,
        ];
        completions.borrow_mut().socks = socks.to_vec();
        Ok(Looped {
            io,
            socks,
            completions,
            stats,
        })
    }

    fn run(&mut self, rx: mpsc::Receiver<Datagram>) {
        let mut open = true;
        while open || self.outstanding() > 0 {
            let wait = if self.outstanding() > 0 {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(100)
            };
            let mut batch: [Vec<(Datagram, SockAddr)>; 2] = Default::default();
            if open {
                match rx.recv_timeout(wait) {
                    Ok(d) => self.sort(d, &mut batch),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
                while batch.iter().map(Vec::len).sum::<usize>() < BATCH * 2 {
                    match rx.try_recv() {
                        Ok(d) => self.sort(d, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            for (side, b) in batch.into_iter().enumerate() {
                self.submit(side, b);
            }
            if let Err(e) = self.io.run_once(Some(Duration::ZERO)) {
                tracing::warn!("outbox I/O loop: {e}");
            }
        }
    }

    /// Into the IPv4 (0) or IPv6 (1) socket's batch.
    fn sort(&self, d: Datagram, batch: &mut [Vec<(Datagram, SockAddr)>; 2]) {
        let side = usize::from(d.to.is_ipv6());
        let to = SockAddr::from(d.to);
        batch[side].push((d, to));
    }

    fn submit(&mut self, side: usize, batch: Vec<(Datagram, SockAddr)>) {
        if batch.is_empty() {
            return;
        }
        let classes: Vec<Class> = batch.iter().map(|(d, _)| d.class).collect();
        let dgrams: Vec<(Buf, SockAddr)> = batch
            .into_iter()
            .map(|(d, to)| (Buf::from_vec(d.payload), to))
            .collect();
        match self.io.sendto_many(self.socks[side], dgrams) {
            Ok(()) => self.completions.borrow_mut().inflight[side].extend(classes),
            Err(_) => {
                // The socket queue is full: the collector is slower than
                // the exporter. Drop, count, go on.
                for c in classes {
                    self.stats.class(c).dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.socks.iter().map(|s| self.io.outstanding(*s)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn datagrams_arrive_and_are_counted_per_class() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = rx.local_addr().expect("addr");
        let out = Outbox::start(64, 64).expect("outbox");
        assert!(out.send(Class::Ipfix, to, b"one".to_vec()));
        assert!(out.send(Class::Syslog, to, b"two!".to_vec()));
        let mut buf = [0u8; 16];
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = rx.recv(&mut buf).expect("first");
        assert_eq!(&buf[..n], b"one");
        let n = rx.recv(&mut buf).expect("second");
        assert_eq!(&buf[..n], b"two!");
        let s = out.stats().clone();
        wait_for("completions", || {
            s.class(Class::Syslog).snapshot().sent == 1
        });
        assert_eq!(
            s.class(Class::Ipfix).snapshot(),
            ClassCounts {
                sent: 1,
                bytes: 3,
                dropped: 0,
                send_errors: 0
            }
        );
        assert_eq!(s.class(Class::Syslog).snapshot().bytes, 4);
    }

    #[test]
    fn a_full_channel_drops_and_counts_instead_of_blocking() {
        // 1 slot and a thread that is busy or not: sending 10k at once from
        // here never blocks, and every datagram is either sent or dropped.
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = rx.local_addr().expect("addr");
        let out = Outbox::start(1, 64).expect("outbox");
        let started = Instant::now();
        let queued = (0..10_000)
            .filter(|_| out.send(Class::Ipfix, to, vec![0u8; 1000]))
            .count() as u64;
        assert!(started.elapsed() < Duration::from_secs(2), "send blocked");
        let s = out.stats().clone();
        drop(out); // flushes what was queued
        let c = s.class(Class::Ipfix).snapshot();
        assert!(c.dropped > 0, "{c:?}");
        assert_eq!(c.sent + c.dropped + c.send_errors, 10_000, "{c:?}");
        assert!(c.sent <= queued);
    }

    #[test]
    fn every_datagram_is_accounted_for_even_unroutable_ones() {
        // Documentation space: sent (a default route), or ENETUNREACH.
        let out = Outbox::start(64, 64).expect("outbox");
        let to: SocketAddr = "[2001:db8:ffff::1]:4739".parse().expect("static");
        out.send(Class::Ipfix, to, b"x".to_vec());
        let s = out.stats().clone();
        drop(out);
        let c = s.class(Class::Ipfix).snapshot();
        assert_eq!(c.sent + c.send_errors + c.dropped, 1, "{c:?}");
    }
}
