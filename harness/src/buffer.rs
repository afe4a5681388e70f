//! A guarded [`Buffer`]: the test's handle on one arena mapping.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use traced_ffi_runtime::{Field, GuardedMapping, Region, RegionId};

#[derive(Debug)]
pub(crate) struct BufferInner {
    pub(crate) id: RegionId,
    pub(crate) name: String,
    pub(crate) map: GuardedMapping,
    /// Named fields of the value it holds (typed buffers).
    pub(crate) fields: Vec<Field>,
}

/// A zeroed buffer on its own pages: its last byte sits against a guard
/// page and the bytes before its first byte are redzone. During a traced
/// call every access to it (out-of-bounds ones included) is recorded;
/// outside calls it is ordinary memory.
///
/// A `Buffer` is an owned value: it does not borrow the [`Tracer`](crate::Tracer).
///
/// ```no_run
/// # fn demo(t: &mut traced_ffi::Tracer) {
/// let mut buf = t.buffer("out", 16);
/// buf[0] = 7;
/// assert_eq!(buf.len(), 16);
/// let p: *mut u8 = buf.as_mut_ptr();
/// # let _ = p; }
/// ```
#[derive(Debug)]
pub struct Buffer {
    pub(crate) inner: Arc<BufferInner>,
}

impl Buffer {
    /// The buffer's first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.inner.map.as_ptr()
    }

    /// The buffer's first byte, for native code to write through.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.inner.map.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    /// The name the test gave the buffer.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl Region for Buffer {
    fn region_id(&self) -> RegionId {
        self.inner.id
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping holds `len` initialised (zeroed, then written)
        // bytes, read-write outside traced calls, alive as long as `inner`.
        unsafe { std::slice::from_raw_parts(self.inner.map.as_ptr(), self.len()) }
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // handed out (the Tracer keeps only a weak handle to the mapping).
        unsafe { std::slice::from_raw_parts_mut(self.inner.map.as_ptr(), self.len()) }
    }
}
