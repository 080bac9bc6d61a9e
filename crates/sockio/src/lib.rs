//! sockio: completion-style socket I/O for xdpgate's own packets, in the
//! spirit of libosmocore's osmo_io.
//!
//! The application registers a socket with a [`Handler`], hands over owned
//! buffers ([`Buf`]) and is called back when each operation is done, with
//! the result and the buffer. One API, two backends with the same
//! semantics, chosen at run time by `XDPGATE_IO_BACKEND=poll|io_uring`
//! (default poll; see [`select`]):
//!
//! - `poll`: poll(2) readiness, then non-blocking recvmmsg(2)/sendmmsg(2)
//!   and gather sendmsg(2) batches (`poll.rs`);
//! - `io_uring`: multishot receives from a provided-buffer ring, send
//!   batches, one io_uring_enter(2) per loop iteration (`uring.rs`).
//!
//! ```no_run
//! use sockio::{Buf, Errno, Handler, Io, Mode, SockAddr, SockId};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn recvfrom(&mut self, io: &mut Io, id: SockId, res: Result<(Buf, SockAddr), Errno>) {
//!         if let Ok((buf, from)) = res {
//!             let _ = io.sendto(id, buf, from); // the same buffer goes back out
//!         }
//!     }
//! }
//!
//! let mut io = Io::new()?;
//! let sock = std::net::UdpSocket::bind("127.0.0.1:7777")?;
//! io.register(sock, Mode::RecvFromSendTo, Echo)?;
//! loop {
//!     io.run_once(None)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
mod addr;
mod api;
mod buf;
mod bufring;
pub mod cmsg;
mod core;
mod error;
mod poll;
pub mod select;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
mod uring;

pub use crate::{
    addr::SockAddr,
    api::{Builder, Handler, Io, Mode, Msg, SockId},
    buf::{Buf, BufPool},
    core::Stats,
    error::{Errno, Error, Rejected},
    select::{BackendKind, ENV},
};
