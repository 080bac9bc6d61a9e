//! Network namespaces: create, delete, run commands in them, and run Rust
//! code in them on a thread of its own (`setns(2)` switches only the calling
//! thread, so the caller's namespace is never touched).
use std::{
    ffi::OsStr,
    fs::File,
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Command, Output},
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("could not run {cmd}: {source} (is iproute2 installed?)")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("network namespace {name:?} does not exist ({path}: {source})")]
    Open {
        name: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("entering network namespace {name:?} failed: {source}")]
    Setns {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread running in namespace {0:?} panicked")]
    Panicked(String),
}

/// Where iproute2 keeps named namespaces.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command; a non-zero exit is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd.output().map_err(|source| NetnsError::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd: describe(cmd),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// `ip ARGS...`
pub fn ip<I, S>(args: I) -> Result<Output, NetnsError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(args))
}

/// `ip netns exec NAME ARGS...`
pub fn exec<I, S>(name: &str, args: I) -> Result<Output, NetnsError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(["netns", "exec", name]).args(args))
}

/// Create `name` unless it exists.
pub fn add(name: &str) -> Result<(), NetnsError> {
    if !exists(name) {
        ip(["netns", "add", name])?;
    }
    Ok(())
}

/// Delete `name` if it exists (its interfaces go with it).
pub fn delete(name: &str) -> Result<(), NetnsError> {
    if exists(name) {
        ip(["netns", "del", name])?;
    }
    Ok(())
}

/// Move the calling thread into `name`. Threads it spawns afterwards start
/// there too; the daemon calls this before it builds its runtime.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let p = path(name);
    let file = File::open(&p).map_err(|source| NetnsError::Open {
        name: name.to_owned(),
        path: p.display().to_string(),
        source,
    })?;
    // SAFETY: a valid namespace fd; CLONE_NEWNET only moves this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Setns {
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Run `f` on a fresh thread inside `name` and return its result.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(name)?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::Panicked(name.to_owned()))?
    })
}

/// Write a sysctl of namespace `name` (`/proc/sys/net/...` resolves to the
/// namespace of the thread that opens it).
pub fn sysctl(name: &str, key: &str, value: &str) -> Result<(), NetnsError> {
    let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    in_netns(name, || std::fs::write(&file, value))?.map_err(|e| NetnsError::Command {
        cmd: format!("sysctl {key}={value} in {name}"),
        stderr: e.to_string(),
    })
}

/// Read a sysctl of namespace `name`.
pub fn read_sysctl(name: &str, key: &str) -> Result<String, NetnsError> {
    let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    in_netns(name, || std::fs::read_to_string(&file))?
        .map(|s| s.trim().to_owned())
        .map_err(|e| NetnsError::Command {
            cmd: format!("sysctl {key} in {name}"),
            stderr: e.to_string(),
        })
}
