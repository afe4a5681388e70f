//! Guarded memory: each buffer on its own pages, its last byte against a
//! guard page, a guard page before its first page.
//!
//! ```text
//! | guard page | redzone .. buffer bytes | guard page |
//!   PROT_NONE    data pages (RW outside calls)   PROT_NONE
//!              ^ span_start                          ^ span_end
//! ```
//!
//! During a call the whole span is `PROT_NONE`, so every access to it,
//! including one byte before the start or past the end, faults and is
//! recorded with its offset relative to the buffer.

use std::collections::VecDeque;
use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

use super::error::AllocError;
use crate::layout::{PAGE_SIZE, RESERVATION_SIZE, page_ceil};
use crate::trace::event::{Dropped, RegionDesc, RegionId, RegionKind};

/// The address range every buffer of a traced process is carved from:
/// reserved (`PROT_NONE`, no memory committed) before the fork and aligned
/// to its size, so that the seccomp filter can tell an argument that points
/// at a buffer from its upper bits alone (see `seccomp.rs`).
struct Reservation {
    start: u64,
    /// First never-used byte.
    next: u64,
    /// Returned spans `(start, len)`, reused first-fit.
    free: Vec<(u64, u64)>,
    /// Spans of dropped buffers, oldest first: `PROT_NONE` and not reused
    /// until they leave the quarantine (see [`QUARANTINE_BYTES`]).
    quarantine: VecDeque<Dropped>,
    /// Bytes of span in `quarantine`.
    quarantined: u64,
}

/// At most this many bytes of dropped spans stay in quarantine (no memory
/// is committed: they are `PROT_NONE`, `MAP_NORESERVE`); the oldest leave
/// first, as in AddressSanitizer's quarantine (256 MiB by default).
const QUARANTINE_BYTES: u64 = 256 << 20;

static RESERVATION: Mutex<Option<Reservation>> = Mutex::new(None);

fn reservation() -> std::sync::MutexGuard<'static, Option<Reservation>> {
    RESERVATION.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the reservation is placed, tried in order: in the middle of the
/// 47-bit user address space, far below where the kernel puts mappings
/// (top-down from the stack, near 0x7f..) and above programs and their heaps
/// (0x55.., 0x56..). The seccomp filter is inherited across `exec`, and a
/// program that passes an address in the range to a system call gets
/// `ENOSYS`: the range must be one that programs do not get from the kernel.
const RESERVATION_HINTS: [u64; 3] = [0x3f00_0000_0000, 0x2f00_0000_0000, 0x4f00_0000_0000];

/// Reserves the buffer range; returns its start. Done once, before the fork.
pub(crate) fn reserve() -> io::Result<u64> {
    let len = 2 * RESERVATION_SIZE as usize;
    let mut mapped = None;
    for hint in RESERVATION_HINTS {
        if claimed_by_an_inherited_filter(hint) {
            continue;
        }
        // Nothing is committed (MAP_NORESERVE).
        // SAFETY: an anonymous mapping at `hint`; MAP_FIXED_NOREPLACE refuses if taken.
        let p = unsafe {
            libc::mmap(
                hint as *mut libc::c_void,
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_NORESERVE
                    | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED && p as u64 == hint {
            mapped = Some(p);
            break;
        }
        if p != libc::MAP_FAILED {
            // An old kernel took the flag as a hint and put it elsewhere.
            // SAFETY: unmapping the mapping just made, which nothing uses.
            unsafe { libc::munmap(p, len) };
        }
    }
    let Some(p) = mapped else {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no free address range for the buffer reservation",
        ));
    };
    let lo = p as u64;
    let start = lo.next_multiple_of(RESERVATION_SIZE);
    let end = start + RESERVATION_SIZE;
    // SAFETY: both trimmed parts lie inside the mapping just made, which
    // nothing else uses.
    unsafe {
        if start > lo {
            libc::munmap(p, (start - lo) as usize);
        }
        if lo + len as u64 > end {
            libc::munmap(end as *mut libc::c_void, (lo + len as u64 - end) as usize);
        }
    }
    *reservation() = Some(Reservation {
        start,
        next: start,
        free: Vec::new(),
        quarantine: VecDeque::new(),
        quarantined: 0,
    });
    Ok(start)
}

/// True if the buffer range was reserved (and the seccomp filter installed
/// for it).
pub(crate) fn has_reservation() -> bool {
    reservation().is_some()
}

/// A free span of `len` bytes in the reservation, if there is one.
fn take(len: u64) -> Option<u64> {
    let mut guard = reservation();
    let r = guard.as_mut()?;
    if let Some(i) = r.free.iter().position(|&(_, l)| l >= len) {
        let (s, l) = r.free[i];
        if l == len {
            r.free.swap_remove(i);
        } else {
            r.free[i] = (s + len, l - len);
        }
        return Some(s);
    }
    if r.next + len > r.start + RESERVATION_SIZE {
        return None;
    }
    let s = r.next;
    r.next += len;
    Some(s)
}

/// The buffers dropped recently whose spans are still in quarantine.
pub(crate) fn quarantined() -> Vec<Dropped> {
    reservation()
        .as_ref()
        .map(|r| r.quarantine.iter().cloned().collect())
        .unwrap_or_default()
}

/// Returns a span to the reservation (through the quarantine when `dropped`
/// describes the buffer it held); true if it was part of it.
fn give_back_after(dropped: Option<Dropped>, start: u64, len: u64) -> bool {
    let mut guard = reservation();
    let Some(r) = guard.as_mut() else {
        return false;
    };
    if start < r.start || start + len > r.start + RESERVATION_SIZE {
        return false;
    }
    if let Some(d) = dropped {
        if remap_none(start, len) {
            r.quarantined += len;
            r.quarantine.push_back(d);
        }
        while r.quarantined > QUARANTINE_BYTES
            && let Some(old) = r.quarantine.pop_front()
        {
            r.quarantined -= old.span_len;
            r.free.push((old.span_start, old.span_len));
        }
        return true;
    }
    if remap_none(start, len) {
        r.free.push((start, len));
    }
    true
}

/// Returns a span to the reservation at once; true if it was part of it.
fn give_back(start: u64, len: u64) -> bool {
    give_back_after(None, start, len)
}

/// Maps fresh `PROT_NONE` memory over a span of the reservation (its pages
/// are freed); false if the kernel refused.
fn remap_none(start: u64, len: u64) -> bool {
    // SAFETY: the span is ours (it was taken from the reservation by `new`)
    // and nothing references it any more: it becomes a reserved hole again.
    let p = unsafe {
        libc::mmap(
            start as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p != libc::MAP_FAILED
}

/// One guarded mapping holding one buffer. Unmapped on drop.
#[derive(Debug)]
pub struct GuardedMapping {
    base: NonNull<u8>,
    span_len: usize,
    start: NonNull<u8>,
    len: usize,
    /// The buffer's name and where it was made, for the quarantine.
    name: String,
    made_at: Option<String>,
}

// SAFETY: the mapping is plain memory owned by this value; moving it between
// threads moves that ownership.
unsafe impl Send for GuardedMapping {}
// SAFETY: shared references hand out only raw pointers and the length.
unsafe impl Sync for GuardedMapping {}

impl GuardedMapping {
    /// Maps a zeroed buffer of `len` bytes between two guard pages, its last
    /// byte against the second.
    pub fn new(name: &str, len: usize) -> Result<Self, AllocError> {
        Self::with_align(name, len, 1)
    }

    /// Maps a zeroed buffer of `len` bytes between two guard pages, its
    /// first byte aligned to `align` (a power of two, at most the page
    /// size): its last byte is against the second guard page when `len` is
    /// a multiple of `align`, and at most `align - 1` bytes before it
    /// otherwise.
    pub fn with_align(name: &str, len: usize, align: usize) -> Result<Self, AllocError> {
        let err = |source| AllocError {
            name: name.to_owned(),
            len,
            source,
        };
        if !align.is_power_of_two() || align > PAGE_SIZE {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the alignment {align} is not a power of two of at most {PAGE_SIZE} (the page size)"
                ),
            )));
        }
        let data_len = page_ceil(len.max(1));
        let span_len = data_len + 2 * PAGE_SIZE;
        let (hint, fixed) = match take(span_len as u64) {
            Some(addr) => (addr as *mut libc::c_void, libc::MAP_FIXED),
            None => (std::ptr::null_mut(), 0),
        };
        // Either at an address of the kernel's choosing or over a free span of the
        // reservation, which this process owns and nothing references.
        // SAFETY: an anonymous private mapping over no memory anyone uses (see above).
        let base = unsafe {
            libc::mmap(
                hint,
                span_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(err(io::Error::last_os_error()));
        }
        let base = base.cast::<u8>();
        // SAFETY: base + PAGE_SIZE .. + data_len lies inside the mapping just made.
        let data = unsafe { base.add(PAGE_SIZE) };
        // SAFETY: the data pages lie inside the mapping just made.
        if unsafe { libc::mprotect(data.cast(), data_len, libc::PROT_READ | libc::PROT_WRITE) } != 0
        {
            let e = io::Error::last_os_error();
            if !give_back(base as u64, span_len as u64) {
                // SAFETY: unmapping the mapping made above, which nothing references.
                unsafe { libc::munmap(base.cast(), span_len) };
            }
            return Err(err(e));
        }
        // The highest `align`-aligned start that leaves `len` bytes.
        let offset = (data_len - len) & !(align - 1);
        // SAFETY: data + offset, offset <= data_len - len, is within the data pages.
        let start = unsafe { data.add(offset) };
        Ok(GuardedMapping {
            base: NonNull::new(base).ok_or_else(|| err(io::Error::other("mmap returned null")))?,
            span_len,
            start: NonNull::new(start)
                .ok_or_else(|| err(io::Error::other("mmap returned null")))?,
            len,
            name: name.to_owned(),
            made_at: None,
        })
    }

    /// Records where the buffer was made (`file:line`): a fault on it
    /// after it is dropped names the place.
    pub fn made_at(mut self, site: String) -> Self {
        self.made_at = Some(site);
        self
    }

    /// The buffer's first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region descriptor for the supervisor.
    pub fn region(&self, id: RegionId, name: &str) -> RegionDesc {
        RegionDesc {
            id,
            name: name.to_owned(),
            kind: RegionKind::Buffer,
            start: self.start.as_ptr() as u64,
            len: self.len as u64,
            span_start: self.base.as_ptr() as u64,
            span_len: self.span_len as u64,
            fields: Vec::new(),
        }
    }

    /// What to restore after a call: the data pages read-write (the guard
    /// pages stay `PROT_NONE`).
    pub fn restore(&self) -> (u64, u64, i32) {
        (
            self.base.as_ptr() as u64 + PAGE_SIZE as u64,
            (self.span_len - 2 * PAGE_SIZE) as u64,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    }
}

impl Drop for GuardedMapping {
    /// Puts the span in quarantine: `PROT_NONE` and not reused for a while.
    fn drop(&mut self) {
        let dropped = Dropped {
            name: std::mem::take(&mut self.name),
            made_at: self.made_at.take(),
            start: self.start.as_ptr() as u64,
            len: self.len as u64,
            span_start: self.base.as_ptr() as u64,
            span_len: self.span_len as u64,
        };
        if give_back_after(
            Some(dropped),
            self.base.as_ptr() as u64,
            self.span_len as u64,
        ) {
            return;
        }
        // SAFETY: the mapping was made by `new` and is unmapped only here.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.span_len) };
    }
}

/// The protection of the page holding `addr` in this process, from
/// `/proc/self/maps` (`PROT_*` bits), or `None` if it is not mapped.
pub fn page_protection(addr: u64) -> Option<i32> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(crate::trace::symbols::parse_maps_line)
        .find_map(|m| {
            let perms = m.perms;
            (m.start <= addr && addr < m.end).then(|| {
                let mut prot = libc::PROT_NONE;
                if perms.first() == Some(&b'r') {
                    prot |= libc::PROT_READ;
                }
                if perms.get(1) == Some(&b'w') {
                    prot |= libc::PROT_WRITE;
                }
                if perms.get(2) == Some(&b'x') {
                    prot |= libc::PROT_EXEC;
                }
                prot
            })
        })
}

/// True if a seccomp filter this process inherited (from a traced test
/// process that started it: a test binary running itself) stops system calls
/// whose address arguments point at `hint`. Nothing traces this process for
/// that filter, so such a call fails with `ENOSYS`; and the buffers here must
/// not lie in that range, or the other process's filter would also stop the
/// system calls our supervisor re-issues from its stub, which it does not
/// know for its own. The probe is `access(hint, F_OK)`: it only reads, and
/// fails with `EFAULT` where nothing is mapped.
fn claimed_by_an_inherited_filter(hint: u64) -> bool {
    // SAFETY: access reads a path at `hint`; the kernel checks the address
    // (EFAULT if unmapped) and never writes.
    let r = unsafe { libc::access(hint as *const libc::c_char, libc::F_OK) };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ends_against_the_guard_page() {
        let m = GuardedMapping::new("b", 10).expect("mmap works");
        let end = m.as_ptr() as u64 + 10;
        assert_eq!(end % PAGE_SIZE as u64, 0);
        let d = m.region(RegionId(1), "b");
        assert_eq!(d.span_end(), end + PAGE_SIZE as u64);
        assert_eq!(d.span_start, end - 2 * PAGE_SIZE as u64);
        assert_eq!(page_protection(end), Some(libc::PROT_NONE));
        assert_eq!(
            page_protection(end - 1),
            Some(libc::PROT_READ | libc::PROT_WRITE)
        );
    }
}
