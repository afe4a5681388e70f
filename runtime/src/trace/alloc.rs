//! Calls of the process's allocator made during a traced call: what was
//! asked for, what came back, from where. The supervisor records them (see
//! `supervisor/allocator.rs`); the test process reads them from the
//! `Trace` (`Trace::allocations`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::region::RegionId;

/// An allocator entry point whose calls are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AllocFn {
    /// `malloc(size)` (also what `strdup`/`strndup` call).
    Malloc,
    /// `calloc(n, size)`: [`Allocation::size`] is `n * size`.
    Calloc,
    /// `realloc(ptr, size)`.
    Realloc,
    /// `reallocarray(ptr, n, size)`: [`Allocation::size`] is `n * size`.
    Reallocarray,
    /// `free(ptr)`.
    Free,
    /// `posix_memalign(&result, align, size)`.
    PosixMemalign,
    /// `aligned_alloc(align, size)`.
    AlignedAlloc,
    /// `memalign(align, size)`.
    Memalign,
    /// `valloc(size)`.
    Valloc,
}

impl AllocFn {
    /// Every entry point, in the order they are looked up. Where two names
    /// are one function (an alias), the first name wins.
    pub const ALL: [AllocFn; 9] = [
        AllocFn::Malloc,
        AllocFn::Calloc,
        AllocFn::Realloc,
        AllocFn::Reallocarray,
        AllocFn::Free,
        AllocFn::PosixMemalign,
        AllocFn::AlignedAlloc,
        AllocFn::Memalign,
        AllocFn::Valloc,
    ];

    /// The C name.
    pub fn name(self) -> &'static str {
        match self {
            AllocFn::Malloc => "malloc",
            AllocFn::Calloc => "calloc",
            AllocFn::Realloc => "realloc",
            AllocFn::Reallocarray => "reallocarray",
            AllocFn::Free => "free",
            AllocFn::PosixMemalign => "posix_memalign",
            AllocFn::AlignedAlloc => "aligned_alloc",
            AllocFn::Memalign => "memalign",
            AllocFn::Valloc => "valloc",
        }
    }

    /// True for the functions that take a block (`free`, `realloc`,
    /// `reallocarray`).
    pub fn takes_block(self) -> bool {
        matches!(
            self,
            AllocFn::Free | AllocFn::Realloc | AllocFn::Reallocarray
        )
    }
}

impl fmt::Display for AllocFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a refused `free`/`realloc` pointed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForeignKind {
    /// A buffer's span (or a dropped buffer's).
    Buffer,
    /// A tracked range that is not a block native code allocated.
    Tracked,
    /// Memory no block of the allocator can lie in (glibc's allocator): a
    /// misaligned pointer, a file's mapping (code, read-only data, a
    /// string literal), the main thread's stack, no mapping at all.
    NotABlock,
}

/// A `free`/`realloc` of memory the allocator does not own: a buffer's or
/// tracked range's bytes (or a dropped buffer's), or an address no block
/// can have. It was not executed: `free` returned at once, `realloc`
/// returned `NULL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignFree {
    /// The region the pointer points into (`None` for a dropped buffer and
    /// for [`ForeignKind::NotABlock`]).
    pub region: Option<RegionId>,
    /// Its name; for [`ForeignKind::NotABlock`], why the address cannot be
    /// a block (`misaligned: ...`, `in the mapping of /usr/lib/...`).
    pub name: String,
    /// What it points into.
    pub kind: ForeignKind,
    /// The pointer's offset from the region's first byte (from the
    /// mapping's first byte for [`ForeignKind::NotABlock`]).
    pub offset: i64,
}

impl ForeignFree {
    /// `buffer `out` (offset 0)`, `tracked range `v` (offset 4)`, or
    /// `0x5555…, which no allocator returned (misaligned: ...)`.
    pub fn describe(&self, ptr: u64) -> String {
        match self.kind {
            ForeignKind::Buffer => format!("buffer `{}` (offset {})", self.name, self.offset),
            ForeignKind::Tracked => {
                format!("tracked range `{}` (offset {})", self.name, self.offset)
            }
            ForeignKind::NotABlock => {
                format!("{ptr:#x}, which no allocator returned ({})", self.name)
            }
        }
    }
}

/// One call of an allocator entry point made during a traced call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Which function.
    pub function: AllocFn,
    /// The bytes asked for (`calloc`/`reallocarray`: the product, saturated);
    /// 0 for `free`.
    pub size: u64,
    /// The alignment asked for (`posix_memalign`, `aligned_alloc`,
    /// `memalign`; the page size for `valloc`), else 0.
    pub align: u64,
    /// The block given (`free`, `realloc`, `reallocarray`), else 0.
    pub ptr: u64,
    /// The block returned (0 for `free`, a failure, or a refused call).
    pub result: u64,
    /// The calling instruction (its return address when the call could not
    /// be decoded). `traced_ffi::describe_ip(site)` names it.
    pub site: u64,
    /// The thread that called.
    pub tid: i32,
    /// How many of the call's accesses were recorded before this call
    /// returned: its place in the order of [`Trace::accesses`].
    pub after_accesses: usize,
    /// Set when the call freed memory the allocator does not own; it was
    /// not executed.
    pub foreign: Option<ForeignFree>,
}

impl Allocation {
    /// True for a call that returned a new block (`realloc` included).
    pub fn allocated(&self) -> bool {
        self.result != 0
    }

    /// The block this call released, if it released one: the pointer given
    /// to `free`, or to a `realloc` that moved or freed it. A refused call
    /// released nothing.
    pub fn released(&self) -> Option<u64> {
        if self.foreign.is_some() || self.ptr == 0 {
            return None;
        }
        match self.function {
            AllocFn::Free => Some(self.ptr),
            // glibc's realloc(p, 0) frees p and returns NULL; a failed
            // realloc(p, n) keeps p.
            AllocFn::Realloc | AllocFn::Reallocarray if self.result != 0 || self.size == 0 => {
                Some(self.ptr)
            }
            _ => None,
        }
    }
}

/// The blocks of `allocations` still live after them, by address, with the
/// call that made each; blocks freed that none of them made are ignored.
pub fn live_after<'a>(
    allocations: impl IntoIterator<Item = &'a Allocation>,
) -> BTreeMap<u64, &'a Allocation> {
    let mut live = BTreeMap::new();
    for a in allocations {
        if let Some(p) = a.released() {
            live.remove(&p);
        }
        if a.allocated() {
            live.insert(a.result, a);
        }
    }
    live
}

/// One line for an allocation: `malloc(16) = 0x5555… at make+0x12 (c/alloc.c:7)`.
pub fn describe_allocation(a: &Allocation) -> String {
    let call = match a.function {
        AllocFn::Free => format!("free({:#x})", a.ptr),
        AllocFn::Realloc | AllocFn::Reallocarray => {
            format!("{}({:#x}, {}) = {:#x}", a.function, a.ptr, a.size, a.result)
        }
        AllocFn::PosixMemalign | AllocFn::AlignedAlloc | AllocFn::Memalign => {
            format!(
                "{}(align {}, {}) = {:#x}",
                a.function, a.align, a.size, a.result
            )
        }
        _ => format!("{}({}) = {:#x}", a.function, a.size, a.result),
    };
    let mut at = super::symbols::describe_ip(a.site);
    if let Some(source) = super::symbols::source_location(a.site) {
        at.push_str(" (");
        at.push_str(&source);
        at.push(')');
    }
    let mut line = format!("{call} at {at}, thread {}", a.tid);
    if let Some(f) = &a.foreign {
        line.push_str(&format!("  <- NOT EXECUTED: frees {}", f.describe(a.ptr)));
    }
    line
}
