//! Errors at the crate boundary: [`Error`] for calls that fail at once,
//! [`Errno`] for operations that complete with an error, and [`Rejected`]
//! for a submission that was refused (it hands the operation back, so a
//! refused buffer is never lost).
use std::{fmt, io, os::fd::RawFd};

use crate::{api::SockId, select::ENV};

/// An operating-system error number, as a completion reports it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const ECANCELED: Errno = Errno(libc::ECANCELED);
    pub const ECONNREFUSED: Errno = Errno(libc::ECONNREFUSED);
    pub const ECONNRESET: Errno = Errno(libc::ECONNRESET);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);
    pub const ENOBUFS: Errno = Errno(libc::ENOBUFS);
    pub const EPIPE: Errno = Errno(libc::EPIPE);

    /// `errno` of the last failed libc call on this thread.
    pub(crate) fn last() -> Errno {
        Errno(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }

    pub fn raw(self) -> i32 {
        self.0
    }

    pub fn to_io(self) -> io::Error {
        io::Error::from_raw_os_error(self.0)
    }

    /// The symbolic name of the common ones (`ECONNRESET`), for messages.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::EAGAIN => "EAGAIN",
            libc::EBADF => "EBADF",
            libc::ECANCELED => "ECANCELED",
            libc::ECONNREFUSED => "ECONNREFUSED",
            libc::ECONNRESET => "ECONNRESET",
            libc::EINTR => "EINTR",
            libc::EINVAL => "EINVAL",
            libc::EMSGSIZE => "EMSGSIZE",
            libc::ENOBUFS => "ENOBUFS",
            libc::ENOTCONN => "ENOTCONN",
            libc::ENOTSOCK => "ENOTSOCK",
            libc::EPIPE => "EPIPE",
            libc::EHOSTUNREACH => "EHOSTUNREACH",
            libc::ENETUNREACH => "ENETUNREACH",
            libc::EDESTADDRREQ => "EDESTADDRREQ",
            _ => return None,
        })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.to_io()),
            None => write!(f, "errno {} ({})", self.0, self.to_io()),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl std::error::Error for Errno {}

/// Why a call failed at once (as opposed to an operation completing with
/// an [`Errno`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{ENV}={value:?} names no I/O backend; use \"poll\" or \"io_uring\"")]
    UnknownBackend { value: String },
    #[error("io_uring is unavailable: {reason}")]
    UringUnavailable { reason: String },
    #[error("{call} failed: {source}")]
    Sys {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("fd {fd} is not a socket")]
    NotASocket { fd: RawFd },
    #[error("{id} is not registered (never, or already closed)")]
    UnknownSocket { id: SockId },
    #[error("{id} is being closed")]
    Closing { id: SockId },
    #[error("{op} does not fit {id}, registered in {mode} mode")]
    WrongMode {
        id: SockId,
        op: &'static str,
        mode: crate::api::Mode,
    },
    #[error("the write queue of {id} is full ({limit} operations)")]
    QueueFull { id: SockId, limit: usize },
    #[error("a buffer of {len} bytes is larger than one operation can carry")]
    TooLarge { len: usize },
    #[error("run_once was called from inside a completion callback")]
    Reentrant,
}

impl Error {
    pub(crate) fn sys(call: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Sys { call, source }
    }

    pub(crate) fn last(call: &'static str) -> Error {
        Error::Sys {
            call,
            source: io::Error::last_os_error(),
        }
    }
}

/// A submission the loop refused, with the operation handed back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Rejected<T: fmt::Debug> {
    #[source]
    pub error: Error,
    /// What was submitted, untouched.
    pub op: T,
}

impl<T: fmt::Debug> Rejected<T> {
    pub(crate) fn new(error: Error, op: T) -> Self {
        Self { error, op }
    }
}
