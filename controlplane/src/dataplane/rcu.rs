//! Waiting from userspace until every BPF program run that started earlier
//! has finished: an RCU grace period.
//!
//! XDP programs run inside an RCU read-side critical section. The kernel
//! offers no "synchronize_rcu" syscall, but updating an element of a
//! map-of-maps waits for one before returning (kernel/bpf/syscall.c
//! maybe_wait_bpf_programs(): "Wait for any running non-sleepable BPF
//! programs to complete so that userspace, when we return to it, knows that
//! all non-sleepable programs that could be running use the new map
//! value"). So a one-slot `ARRAY_OF_MAPS` that no program uses, updated
//! with the same inner map every time, is a barrier. Unlike a sleep it
//! holds even when the hypervisor stops a vCPU in the middle of a packet.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// A map-of-maps used only to wait for RCU grace periods.
pub struct RcuBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

/// `union bpf_attr` is 144 bytes in current kernels; the kernel checks
/// that bytes past what it knows are zero, so a zeroed, larger buffer is
/// fine.
#[repr(C, align(8))]
struct Attr([u8; 160]);

impl Attr {
    fn zeroed() -> Self {
        Attr([0; 160])
    }

    fn put_u32(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }

    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: the attribute buffer is valid for its size for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// BPF_MAP_CREATE: map_type, key_size, value_size, max_entries,
/// map_flags, inner_map_fd (include/uapi/linux/bpf.h, in that order).
fn create(map_type: u32, value_size: u32, inner: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let mut attr = Attr::zeroed();
    attr.put_u32(0, map_type);
    attr.put_u32(4, 4);
    attr.put_u32(8, value_size);
    attr.put_u32(12, 1);
    if let Some(inner) = inner {
        attr.put_u32(20, inner.as_raw_fd() as u32);
    }
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new file descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl RcuBarrier {
    pub fn new() -> io::Result<Self> {
        let inner = create(BPF_MAP_TYPE_ARRAY, 4, None)?;
        let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, Some(&inner))?;
        Ok(Self { outer, inner })
    }

    /// Return once every BPF program that was running when this was called
    /// has finished.
    pub fn wait(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd() as u32;
        // BPF_MAP_UPDATE_ELEM: map_fd, (pad), key, value, flags.
        let mut attr = Attr::zeroed();
        attr.put_u32(0, self.outer.as_raw_fd() as u32);
        attr.put_u64(8, &key as *const u32 as u64);
        attr.put_u64(16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_waits_and_can_be_reused() {
        // Needs root (CAP_BPF), like every test that loads the program.
        let b = RcuBarrier::new().expect("create the barrier maps");
        let t = std::time::Instant::now();
        for _ in 0..3 {
            b.wait().expect("wait for a grace period");
        }
        // A grace period takes real time (the kernel waits for every CPU to
        // pass a quiescent state); three cannot all be free.
        assert!(t.elapsed() > std::time::Duration::from_micros(100));
    }
}
