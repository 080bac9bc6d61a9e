//! Thin libc wrappers the backends share. Each call counts itself in
//! `Stats::syscalls`.
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::{
    core::{SockType, Stats},
    error::Error,
};

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int option into an int-sized buffer.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// Socket type and address family (socket(7): SO_TYPE, SO_DOMAIN); a
/// non-socket is refused (ENOTSOCK).
pub(crate) fn socket_kind(fd: RawFd, stats: &mut Stats) -> Result<(SockType, i32), Error> {
    stats.syscalls += 2;
    let ty = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTSOCK) {
            Error::NotASocket { fd }
        } else {
            Error::Sys {
                call: "getsockopt(SO_TYPE)",
                source: e,
            }
        }
    })?;
    let family = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)
        .map_err(Error::sys("getsockopt(SO_DOMAIN)"))?;
    let ty = SockType::from_so_type(ty).ok_or_else(|| Error::Sys {
        call: "socket type",
        source: std::io::Error::other(format!("unsupported socket type {ty}")),
    })?;
    Ok((ty, family))
}

/// A non-blocking, close-on-exec eventfd (eventfd(2)).
pub(crate) fn eventfd(stats: &mut Stats) -> Result<OwnedFd, Error> {
    stats.syscalls += 1;
    // SAFETY: plain syscall; the fd is owned on success.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last("eventfd"));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reset an eventfd's counter (a non-blocking read; EAGAIN if already 0).
pub(crate) fn eventfd_drain(fd: RawFd, stats: &mut Stats) {
    let mut v: u64 = 0;
    stats.syscalls += 1;
    // SAFETY: an 8-byte read into a u64, as eventfd(2) requires.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// A close-on-exec epoll instance (epoll_create1(2)).
pub(crate) fn epoll_create(stats: &mut Stats) -> Result<OwnedFd, Error> {
    stats.syscalls += 1;
    // SAFETY: plain syscall.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last("epoll_create1"));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// epoll_ctl(2); `events == 0` removes `fd`. Errors are ignored: the mirror
/// only wakes an outer loop, and poll(2) itself stays authoritative.
pub(crate) fn epoll_set(epfd: RawFd, fd: RawFd, old: u32, events: u32, stats: &mut Stats) {
    let op = match (old, events) {
        (0, 0) => return,
        (0, _) => libc::EPOLL_CTL_ADD,
        (_, 0) => libc::EPOLL_CTL_DEL,
        _ if old == events => return,
        _ => libc::EPOLL_CTL_MOD,
    };
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    stats.syscalls += 1;
    // SAFETY: valid epoll fd and event struct.
    unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) };
}

/// RLIMIT_NOFILE's soft limit (getrlimit(2)).
pub(crate) fn nofile_limit(stats: &mut Stats) -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    stats.syscalls += 1;
    // SAFETY: plain getter into a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } < 0 {
        return 1024;
    }
    rl.rlim_cur
}
