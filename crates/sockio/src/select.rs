//! Which backend runs: `XDPGATE_IO_BACKEND=poll|io_uring` (default `poll`),
//! as libosmocore picks its osmo_io backend from `LIBOSMO_IO_BACKEND`.
//!
//! An unknown value is an error (a typo must not silently select poll). An
//! io_uring that cannot be set up — `kernel.io_uring_disabled` (see
//! Documentation/admin-guide/sysctl/kernel.rst), a seccomp filter, a kernel
//! without it (ENOSYS) or too old for what the backend needs — makes the
//! loop fall back to poll, with one warning per process.
use std::{
    fmt,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::error::Error;

/// The environment variable that selects the backend.
pub const ENV: &str = "XDPGATE_IO_BACKEND";

/// An I/O backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// poll(2) on non-blocking calls, recvmmsg(2)/sendmmsg(2) batches.
    Poll,
    /// io_uring(7): batched submissions, multishot receives.
    IoUring,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Poll => "poll",
            BackendKind::IoUring => "io_uring",
        }
    }

    /// The backend `XDPGATE_IO_BACKEND` asks for (poll when unset or empty).
    pub fn from_env() -> Result<BackendKind, Error> {
        match std::env::var(ENV) {
            Ok(v) => Self::from_env_value(Some(&v)),
            Err(std::env::VarError::NotPresent) => Self::from_env_value(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(Error::UnknownBackend {
                value: v.to_string_lossy().into_owned(),
            }),
        }
    }

    /// The backend a value of the variable asks for (`None`: unset).
    pub fn from_env_value(value: Option<&str>) -> Result<BackendKind, Error> {
        match value.map(str::trim) {
            None | Some("") => Ok(BackendKind::Poll),
            Some(v) => v.parse(),
        }
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "poll" => Ok(BackendKind::Poll),
            "io_uring" => Ok(BackendKind::IoUring),
            other => Err(Error::UnknownBackend {
                value: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why io_uring_setup failed, in words an operator can act on.
pub(crate) fn explain_setup_error(err: &std::io::Error, disabled_sysctl: Option<&str>) -> String {
    let base = format!("io_uring_setup(2) failed: {err}");
    match (err.raw_os_error(), disabled_sysctl) {
        (Some(libc::EPERM), Some("2")) => {
            format!("{base}; kernel.io_uring_disabled=2 disables it for everyone")
        }
        (Some(libc::EPERM), Some("1")) => format!(
            "{base}; kernel.io_uring_disabled=1 allows it only to CAP_SYS_ADMIN \
             and the kernel.io_uring_group group"
        ),
        (Some(libc::EPERM | libc::EACCES), _) => {
            format!("{base}; probably a seccomp filter or an LSM forbids it")
        }
        (Some(libc::ENOSYS), _) => {
            format!("{base}; the kernel has no io_uring (or a seccomp filter hides it)")
        }
        (Some(libc::ENOMEM), _) => {
            format!("{base}; on kernels before 5.12 rings count against RLIMIT_MEMLOCK")
        }
        _ => base,
    }
}

/// `kernel.io_uring_disabled`, if this kernel has the sysctl (6.6+).
pub(crate) fn disabled_sysctl() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|s| s.trim().to_owned())
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Log the fallback once per process: a daemon that opens many loops must
/// not repeat it for each.
pub(crate) fn warn_fallback(reason: &str) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "{ENV}=io_uring, but io_uring is unavailable ({reason}); \
             falling back to the poll backend"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_strictly() {
        assert_eq!(
            BackendKind::from_env_value(None).expect("unset"),
            BackendKind::Poll
        );
        assert_eq!(
            BackendKind::from_env_value(Some("")).expect("empty"),
            BackendKind::Poll
        );
        assert_eq!(
            BackendKind::from_env_value(Some("io_uring")).expect("uring"),
            BackendKind::IoUring
        );
        for bad in ["uring", "POLL", "epoll", "io-uring"] {
            let e = BackendKind::from_env_value(Some(bad)).expect_err(bad);
            let msg = e.to_string();
            assert!(
                msg.contains(ENV) && msg.contains(bad) && msg.contains("io_uring"),
                "{msg}"
            );
        }
    }

    #[test]
    fn setup_errors_are_explained() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(explain_setup_error(&eperm, Some("2")).contains("io_uring_disabled=2"));
        assert!(explain_setup_error(&eperm, Some("0")).contains("seccomp"));
        let enosys = std::io::Error::from_raw_os_error(libc::ENOSYS);
        assert!(explain_setup_error(&enosys, None).contains("no io_uring"));
    }
}
