//! A provided-buffer ring (io_uring_register_buf_ring(3), kernel 5.19+):
//! the buffers multishot receives pick from.
//!
//! The ring is an array of `struct io_uring_buf { u64 addr; u32 len; u16
//! bid; u16 resv; }` shared with the kernel; the producer tail overlays the
//! `resv` field of entry 0 (`struct io_uring_buf_ring` in
//! include/uapi/linux/io_uring.h), so entries are written field by field and
//! entry 0's `resv` is never touched. The kernel consumes from its own head;
//! we publish new entries by storing the tail with release ordering
//! (io_uring_buf_ring_advance in liburing).
//!
//! Buffers are pool buffers. When a completion names buffer `bid`, that
//! buffer is handed to the application as an owned [`Buf`] (no copy) and a
//! fresh pool buffer takes its place under the same `bid`, so the ring
//! stays full as long as the pool can give buffers.
use std::{
    io,
    sync::atomic::{AtomicU16, Ordering},
};

use io_uring::IoUring;

use crate::buf::{Buf, BufPool, RawBuf};

/// Buffer group id of our one ring.
pub(crate) const BGID: u16 = 0;
const ENTRY: usize = 16;

pub(crate) struct BufRing {
    base: *mut u8,
    map_len: usize,
    mask: u16,
    tail: u16,
    slots: Vec<Option<RawBuf>>,
}

impl BufRing {
    /// Map and register a ring of `entries` (a power of two) buffers from
    /// `pool`. Counts its system calls into `syscalls`.
    pub fn new(
        ring: &IoUring,
        entries: u16,
        pool: &BufPool,
        syscalls: &mut u64,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        // SAFETY: sysconf is always safe.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let map_len = (entries as usize * ENTRY).div_ceil(page) * page;
        *syscalls += 1;
        // SAFETY: a fresh anonymous private mapping (page aligned, zeroed).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut br = BufRing {
            base: base.cast(),
            map_len,
            mask: entries - 1,
            tail: 0,
            slots: (0..entries).map(|_| None).collect(),
        };
        *syscalls += 1;
        // SAFETY: the mapping lives as long as `br`, which unregisters it
        // (UringBackend's Drop) before unmapping.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(br.base as u64, entries, BGID, 0)?;
        }
        for bid in 0..entries {
            br.provide(bid, pool.get());
        }
        br.commit();
        Ok(br)
    }

    /// Put `buf` into the ring as buffer `bid` (visible after `commit`).
    pub fn provide(&mut self, bid: u16, buf: Buf) {
        let raw = buf.into_raw();
        let entry = (self.tail & self.mask) as usize * ENTRY;
        // SAFETY: `entry` is inside the mapping; the kernel does not read
        // entries past the published tail, so writing them races nothing.
        unsafe {
            let e = self.base.add(entry);
            e.cast::<u64>().write_volatile(raw.ptr() as u64);
            e.add(8)
                .cast::<u32>()
                .write_volatile(raw.cap().min(u32::MAX as usize) as u32);
            e.add(12).cast::<u16>().write_volatile(bid);
        }
        let old = self.slots[bid as usize].replace(raw);
        debug_assert!(old.is_none(), "buffer id {bid} provided twice");
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish the provided entries to the kernel.
    pub fn commit(&self) {
        // SAFETY: offset 14 of the ring is the u16 tail (see module docs),
        // 2-byte aligned in a page-aligned mapping.
        let tail = unsafe { AtomicU16::from_ptr(self.base.add(14).cast::<u16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The buffer the kernel filled under `bid`, now ours. The caller
    /// provides a replacement.
    pub fn take(&mut self, bid: u16) -> Option<Buf> {
        self.slots
            .get_mut(bid as usize)?
            .take()
            .map(RawBuf::into_buf)
    }

    /// Unmap without freeing buffers the kernel might still write (used
    /// when the ring could not be drained).
    pub fn leak_buffers(&mut self) {
        for s in &mut self.slots {
            if let Some(raw) = s.take() {
                std::mem::forget(raw);
            }
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: our mapping; the owner unregistered the ring first.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}
