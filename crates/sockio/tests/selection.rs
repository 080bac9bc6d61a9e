//! Backend selection: `XDPGATE_IO_BACKEND` parsing, and the fallback to
//! poll when io_uring is unavailable — made unavailable for real, with a
//! seccomp filter on one thread that fails io_uring_setup(2), as a
//! container's seccomp profile would.
use std::{
    io::Write as _,
    sync::{Arc, Mutex},
};

use sockio::{BackendKind, ENV, Error, Io};

/// The environment is process-wide: tests that set it take turns.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn with_env<T>(value: Option<&str>, f: impl FnOnce() -> T) -> T {
    let _g = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: every test of this binary that reads the environment holds
    // ENV_LOCK, so no other thread reads it concurrently.
    unsafe {
        match value {
            Some(v) => std::env::set_var(ENV, v),
            None => std::env::remove_var(ENV),
        }
    }
    let r = f();
    // SAFETY: as above.
    unsafe { std::env::remove_var(ENV) };
    r
}

#[test]
fn the_variable_selects_the_backend() {
    with_env(None, || {
        assert_eq!(Io::new().expect("default").backend(), BackendKind::Poll);
    });
    with_env(Some(""), || {
        assert_eq!(Io::new().expect("empty").backend(), BackendKind::Poll);
    });
    with_env(Some("poll"), || {
        assert_eq!(Io::new().expect("poll").backend(), BackendKind::Poll);
    });
    with_env(Some("io_uring"), || {
        // This kernel has io_uring (the conformance suite needs it too).
        assert_eq!(Io::new().expect("io_uring").backend(), BackendKind::IoUring);
    });
}

#[test]
fn an_unknown_value_is_an_error() {
    for bad in ["uring", "IO_URING", "epoll", "poll,io_uring"] {
        let err = with_env(Some(bad), Io::new).expect_err(bad);
        assert!(
            matches!(&err, Error::UnknownBackend { value } if value == bad.trim()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(ENV) && msg.contains("\"poll\"") && msg.contains("\"io_uring\""),
            "unclear message: {msg}"
        );
    }
    // An explicit backend in the builder does not read the variable.
    let io = with_env(Some("bogus"), || {
        Io::builder().backend(BackendKind::Poll).build()
    });
    assert_eq!(io.expect("explicit").backend(), BackendKind::Poll);
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install a seccomp filter on the calling thread only (no TSYNC) that
/// makes io_uring_setup(2) fail with `errno` (seccomp(2), SECCOMP_RET_ERRNO).
#[cfg(target_arch = "x86_64")]
fn forbid_io_uring_setup(errno: u32) {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data { int nr; u32 arch; ... }: nr at 0, arch at 4.
    let mut prog = [
        f(ld, 0, 0, 4),
        f(jeq, 0, 3, AUDIT_ARCH_X86_64),
        f(ld, 0, 0, 0),
        f(jeq, 0, 1, libc::SYS_io_uring_setup as u32),
        f(ret, 0, 0, SECCOMP_RET_ERRNO | errno),
        f(ret, 0, 0, SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with a valid filter program that lives for the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog
            ),
            0,
            "installing the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn unavailable_io_uring_falls_back_to_poll_with_one_warning() {
    let log = Capture::default();
    let sink = log.clone();
    let (fallback, strict) = with_env(Some("io_uring"), || {
        std::thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                forbid_io_uring_setup(libc::EPERM as u32);
                // Two loops: the warning is logged once, not per loop.
                let a = Io::new().expect("falls back");
                let b = Io::new().expect("falls back again");
                let strict = Io::builder()
                    .backend(BackendKind::IoUring)
                    .fallback(false)
                    .build()
                    .map(|_| ());
                ((a.backend(), b.backend()), strict)
            })
        })
        .join()
        .expect("seccomp thread")
    });
    assert_eq!(fallback, (BackendKind::Poll, BackendKind::Poll));
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "exactly one warning: {text}");
    assert!(
        warnings[0].contains("falling back to the poll backend")
            && warnings[0].contains("io_uring_setup")
            && warnings[0].contains("Operation not permitted"),
        "{}",
        warnings[0]
    );
    // Without fallback the same situation is an error naming the cause.
    let err = strict.expect_err("no fallback");
    assert!(
        matches!(&err, Error::UringUnavailable { reason } if reason.contains("seccomp")),
        "{err}"
    );
    // ENOSYS (a kernel without io_uring) falls back too, and the process
    // still has logged one warning in all.
    let sink = log.clone();
    let backend = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            forbid_io_uring_setup(libc::ENOSYS as u32);
            Io::builder()
                .backend(BackendKind::IoUring)
                .build()
                .expect("falls back")
                .backend()
        })
    })
    .join()
    .expect("thread");
    assert_eq!(backend, BackendKind::Poll);
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    assert_eq!(
        text.lines().filter(|l| l.contains("WARN")).count(),
        1,
        "{text}"
    );
    let _ = std::io::stderr().flush();
}
