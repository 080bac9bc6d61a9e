//! Running the loop under tokio: the loop exposes one pollable fd (poll
//! backend: an epoll fd mirroring its poll set; io_uring: an eventfd
//! registered with the ring, IORING_REGISTER_EVENTFD), tokio's [`AsyncFd`]
//! sleeps on it, and the driver drains the loop with zero-timeout
//! iterations whenever it is readable or the application queued work.
//!
//! The loop is not `Send`, so the driver runs in a `tokio::task::LocalSet`
//! (or a current-thread runtime): the control plane spawns it with
//! `spawn_local` and submits through [`Driver::with`].
use std::{
    cell::RefCell,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    time::Duration,
};

use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::Notify,
};

use crate::{api::Io, error::Error};

/// The loop's pollable fd, borrowed (the loop owns it).
struct Pollable(RawFd);

impl AsRawFd for Pollable {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// An [`Io`] driven by tokio. Clones share the loop.
#[derive(Clone)]
pub struct Driver {
    io: Rc<RefCell<Io>>,
    kick: Rc<Notify>,
}

impl Driver {
    pub fn new(io: Io) -> Self {
        Self {
            io: Rc::new(RefCell::new(io)),
            kick: Rc::new(Notify::new()),
        }
    }

    /// Use the loop from a task (submit, register, close), then wake the
    /// driver so the work goes out. Not from inside a completion callback:
    /// callbacks already get `&mut Io`.
    pub fn with<R>(&self, f: impl FnOnce(&mut Io) -> R) -> R {
        let r = f(&mut self.io.borrow_mut());
        self.kick.notify_one();
        r
    }

    /// Run the loop until it fails. Spawn it with `spawn_local`.
    pub async fn run(&self) -> Result<(), Error> {
        let fd = self.io.borrow_mut().pollable_fd()?;
        // SAFETY: the fd belongs to the loop, which `self` keeps alive (and
        // which never closes it) for longer than `afd` lives.
        let afd = unsafe { AsyncFd::register_with_interest(Pollable(fd), Interest::READABLE) }
            .map_err(|e| Error::Sys {
                call: "registering the loop's fd with tokio",
                source: e.into(),
            })?;
        loop {
            // Everything ready now, without blocking. The fd is edge-
            // triggered in tokio's epoll, so stop only when an iteration
            // found nothing.
            while self.io.borrow_mut().run_once(Some(Duration::ZERO))? > 0 {}
            tokio::select! {
                ready = afd.readable() => {
                    let mut guard = ready.map_err(Error::sys("waiting for the loop's fd"))?;
                    // Clear first, then reset the fd and drain: an event
                    // arriving after this sets readiness again.
                    guard.clear_ready();
                    self.io.borrow_mut().pollable_ack();
                }
                _ = self.kick.notified() => {}
            }
        }
    }
}
