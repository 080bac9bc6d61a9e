//! The BPF filesystem at /sys/fs/bpf, where pinned links and maps live.
use std::{ffi::CString, path::Path};

/// `BPF_FS_MAGIC` from include/uapi/linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub const ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error(
        "bpffs is not mounted at {ROOT}; mount it with `mount -t bpf bpf {ROOT}` (scripts/setup does)"
    )]
    NotMounted,
    #[error("mounting bpffs at {ROOT} failed: {0}")]
    Mount(#[source] std::io::Error),
}

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Fail with one clear sentence unless bpffs is mounted.
pub fn require() -> Result<(), BpffsError> {
    if is_bpffs(Path::new(ROOT)) {
        Ok(())
    } else {
        Err(BpffsError::NotMounted)
    }
}

/// Mount bpffs at /sys/fs/bpf unless it already is.
pub fn ensure_mounted() -> Result<(), BpffsError> {
    if is_bpffs(Path::new(ROOT)) {
        return Ok(());
    }
    let src = CString::new("bpf").expect("static");
    let target = CString::new(ROOT).expect("static");
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(BpffsError::Mount(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether this process may load BPF and change links: root, or the
/// capabilities it needs. A cheap early check for a clear error message.
pub fn is_privileged() -> bool {
    // SAFETY: geteuid never fails.
    unsafe { libc::geteuid() == 0 }
}
