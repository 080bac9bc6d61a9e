//! Owned buffers and the pool they come from.
//!
//! A [`Buf`] is a fixed-capacity byte buffer with a window (`start`, `len`)
//! into it: a receive completion may hand over a buffer whose payload starts
//! after a header the kernel wrote (io_uring's multishot `recvmsg` puts an
//! `io_uring_recvmsg_out`, the address and the control data in front of the
//! payload), and no byte is copied to move it to offset 0.
//!
//! Buffers taken from a [`BufPool`] go back to it when dropped, so handing a
//! buffer to a completion callback and letting the callback drop it is the
//! normal, allocation-free cycle. The pool counts the buffers that are out
//! ([`BufPool::live`]), which is how the tests prove no buffer was lost.
use std::{
    fmt,
    ops::{Deref, DerefMut},
    ptr::NonNull,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

struct PoolInner {
    size: usize,
    max_cached: usize,
    free: Mutex<Vec<Box<[u8]>>>,
    live: AtomicUsize,
    allocated: AtomicU64,
}

impl PoolInner {
    fn put(&self, mem: Box<[u8]>) {
        self.live.fetch_sub(1, Ordering::Relaxed);
        if mem.len() != self.size {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.max_cached {
            free.push(mem);
        }
    }
}

/// A pool of equally sized buffers. Cloning shares the pool.
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<PoolInner>,
}

impl BufPool {
    /// Buffers of `size` bytes; at most `max_cached` idle ones are kept.
    pub fn new(size: usize, max_cached: usize) -> Self {
        Self {
            inner: Arc::new(PoolInner {
                size,
                max_cached,
                free: Mutex::new(Vec::new()),
                live: AtomicUsize::new(0),
                allocated: AtomicU64::new(0),
            }),
        }
    }

    /// An empty buffer (`len() == 0`) of [`BufPool::buf_size`] capacity.
    pub fn get(&self) -> Buf {
        let cached = self
            .inner
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mem = cached.unwrap_or_else(|| {
            self.inner.allocated.fetch_add(1, Ordering::Relaxed);
            vec![0u8; self.inner.size].into_boxed_slice()
        });
        self.inner.live.fetch_add(1, Ordering::Relaxed);
        Buf {
            mem,
            start: 0,
            len: 0,
            pool: Some(self.inner.clone()),
        }
    }

    /// A buffer holding a copy of `data` (which must fit in one buffer).
    ///
    /// # Panics
    /// If `data` is longer than [`BufPool::buf_size`].
    pub fn from_slice(&self, data: &[u8]) -> Buf {
        let mut b = self.get();
        b.extend_from_slice(data);
        b
    }

    pub fn buf_size(&self) -> usize {
        self.inner.size
    }

    /// Buffers taken from the pool and not dropped yet: the ones the
    /// application holds plus the ones the kernel or a queue holds.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Idle buffers ready for reuse.
    pub fn cached(&self) -> usize {
        self.inner
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Buffers ever allocated (the rest were reused).
    pub fn allocated(&self) -> u64 {
        self.inner.allocated.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("buf_size", &self.buf_size())
            .field("live", &self.live())
            .field("cached", &self.cached())
            .finish()
    }
}

/// An owned byte buffer: fixed capacity, a filled window `[start, start+len)`.
pub struct Buf {
    mem: Box<[u8]>,
    start: usize,
    len: usize,
    pool: Option<Arc<PoolInner>>,
}

impl Buf {
    /// A buffer that owns `v` (not pooled); its length is `v.len()`.
    pub fn from_vec(v: Vec<u8>) -> Buf {
        let len = v.len();
        Buf {
            mem: v.into_boxed_slice(),
            start: 0,
            len,
            pool: None,
        }
    }

    /// An empty, zeroed buffer of `capacity` bytes (not pooled).
    pub fn with_capacity(capacity: usize) -> Buf {
        Buf {
            mem: vec![0u8; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
            pool: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes this buffer can hold from its window start.
    pub fn capacity(&self) -> usize {
        self.mem.len() - self.start
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.len]
    }

    /// The unfilled room after the data, to write into before
    /// [`Buf::set_len`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start + self.len..]
    }

    /// Set the filled length. The bytes are whatever the memory holds (it
    /// is always initialised).
    ///
    /// # Panics
    /// If `len` exceeds [`Buf::capacity`].
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.capacity(),
            "Buf::set_len({len}) beyond capacity {}",
            self.capacity()
        );
        self.len = len;
    }

    /// Empty the buffer and give back any head room.
    pub fn clear(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    /// Append `data`.
    ///
    /// # Panics
    /// If it does not fit (buffers have a fixed capacity).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let at = self.start + self.len;
        assert!(
            data.len() <= self.mem.len() - at,
            "Buf::extend_from_slice: {} bytes do not fit in {} free",
            data.len(),
            self.mem.len() - at
        );
        self.mem[at..at + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    /// Whether the buffer returns to a pool when dropped.
    pub fn is_pooled(&self) -> bool {
        self.pool.is_some()
    }

    /// Place the window: used when the kernel wrote a header in front.
    pub(crate) fn set_window(&mut self, start: usize, len: usize) {
        assert!(start + len <= self.mem.len());
        self.start = start;
        self.len = len;
    }

    /// The whole memory, from offset 0 (receive paths that fill from 0).
    pub(crate) fn full_capacity(&self) -> usize {
        self.mem.len()
    }

    /// Give up the memory while the kernel may write into it. A `&mut` or
    /// a move of a `Box` asserts exclusive access, which an in-flight
    /// receive breaks; a raw pointer does not.
    pub(crate) fn into_raw(mut self) -> RawBuf {
        let mem = std::mem::take(&mut self.mem);
        let pool = self.pool.take();
        // `self` now owns an empty box and no pool: its Drop does nothing.
        RawBuf {
            mem: NonNull::from(Box::leak(mem)),
            pool,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.mem));
        }
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.as_slice()[..self.len.min(16)];
        f.debug_struct("Buf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .field("head", &head)
            .finish()
    }
}

/// A buffer's memory while the kernel owns it (see [`Buf::into_raw`]).
/// Dropping it frees the memory (back to its pool), so it must outlive any
/// kernel access: the io_uring backend drains its ring before dropping these.
pub(crate) struct RawBuf {
    mem: NonNull<[u8]>,
    pool: Option<Arc<PoolInner>>,
}

impl RawBuf {
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.mem.as_ptr().cast()
    }

    pub(crate) fn cap(&self) -> usize {
        self.mem.len()
    }

    /// Take the memory back once the kernel is done with it.
    pub(crate) fn into_buf(mut self) -> Buf {
        let pool = self.pool.take();
        // SAFETY: `mem` came from `Box::leak` in `into_raw` and is released
        // exactly once: here or in Drop (which sees a dangling empty slice).
        let mem = unsafe { Box::from_raw(self.mem.as_ptr()) };
        self.mem = NonNull::from(&mut [][..]);
        std::mem::forget(self);
        Buf {
            mem,
            start: 0,
            len: 0,
            pool,
        }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if self.mem.is_empty() {
            return;
        }
        // SAFETY: as in `into_buf`; the owner guarantees the kernel no
        // longer touches the memory.
        let mem = unsafe { Box::from_raw(self.mem.as_ptr()) };
        match self.pool.take() {
            Some(pool) => pool.put(mem),
            None => drop(mem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_buffers_come_back_and_are_counted() {
        let pool = BufPool::new(64, 8);
        let mut a = pool.get();
        a.extend_from_slice(b"hello");
        assert_eq!(&a[..], b"hello");
        assert_eq!(pool.live(), 1);
        drop(a);
        assert_eq!(pool.live(), 0);
        assert_eq!(pool.cached(), 1);
        let b = pool.get();
        assert!(b.is_empty(), "a recycled buffer starts empty");
        assert_eq!(pool.allocated(), 1, "reused, not allocated again");
        let raw = b.into_raw();
        assert_eq!(pool.live(), 1, "a raw buffer is still out");
        let mut b = raw.into_buf();
        b.set_window(10, 3);
        assert_eq!(b.len(), 3);
        assert_eq!(b.capacity(), 54);
        drop(b);
        drop(pool.get().into_raw());
        assert_eq!(pool.live(), 0);
    }

    #[test]
    #[should_panic(expected = "do not fit")]
    fn overfilling_panics() {
        Buf::with_capacity(4).extend_from_slice(b"12345");
    }
}
