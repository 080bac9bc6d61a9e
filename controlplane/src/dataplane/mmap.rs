//! `BPF_F_MMAPABLE` arrays written from userspace through `mmap`
//! (kernel/bpf/arraymap.c array_map_mmap): the firewall's bitmap pool and
//! the DIR-24-8 route tables.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::AtomicU32,
};

use aya::{
    Ebpf,
    maps::{Map, MapData},
};

use super::{DataplaneError, map_err, take_map};

/// A `BPF_F_MMAPABLE` array mapped into our address space.
pub(super) struct MmapArray<T> {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes per element: the value size rounded up to 8
    /// (kernel/bpf/arraymap.c array_map_alloc elem_size).
    stride: usize,
    pub(super) entries: u32,
    _map: MapData,
    _t: std::marker::PhantomData<T>,
}

// SAFETY: the mapping is owned by this value; access goes through &mut self.
unsafe impl<T> Send for MmapArray<T> {}

impl<T: Copy> MmapArray<T> {
    pub(super) fn new(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, DataplaneError> {
        let Map::Array(data) = take_map(ebpf, name)? else {
            return Err(DataplaneError::MissingMap(name));
        };
        let info = data.info().map_err(map_err(name))?;
        let entries = info.max_entries();
        let stride = std::mem::size_of::<T>().next_multiple_of(8);
        let page = 4096usize;
        let len = (entries as usize * stride).next_multiple_of(page);
        // SAFETY: mapping a BPF array fd; the kernel checks the flags and
        // the length against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(DataplaneError::Mmap {
                map: name,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).ok_or(DataplaneError::MissingMap(name))?,
            len,
            stride,
            entries,
            _map: data,
            _t: std::marker::PhantomData,
        })
    }

    /// Write `values` at `start..start + values.len()`.
    pub(super) fn write(&mut self, start: u32, values: &[T]) {
        assert!(start as usize + values.len() <= self.entries as usize);
        for (i, v) in values.iter().enumerate() {
            let off = (start as usize + i) * self.stride;
            // SAFETY: in bounds (asserted); the element is `stride >=
            // size_of::<T>()` bytes, 8-aligned in a page-aligned mapping.
            unsafe { std::ptr::write(self.ptr.as_ptr().add(off).cast::<T>(), *v) };
        }
    }

    pub(super) fn read(&self, index: u32) -> T {
        assert!(index < self.entries);
        // SAFETY: as in `write`.
        unsafe {
            std::ptr::read(
                self.ptr
                    .as_ptr()
                    .add(index as usize * self.stride)
                    .cast::<T>(),
            )
        }
    }
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl<T> MmapArray<T> {
    /// The mapping as 32-bit words, for tables of `u32` entries written
    /// while packets read them: one atomic store per entry, never torn, and
    /// ordered by the caller (`Release` to publish what it points to).
    pub(super) fn words(&self) -> &[AtomicU32] {
        let len = self.entries as usize * self.stride / 4;
        // SAFETY: the mapping is page-aligned and at least `entries *
        // stride` bytes long, lives as long as `self`, and is shared with
        // the kernel, which is why it is only ever accessed atomically.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), len) }
    }
}
