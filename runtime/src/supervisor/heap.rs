//! What the supervisor knows of the test process's allocator: its entry
//! points, their breakpoints and trampolines (see `allocator`). Kept for
//! the supervisor's life: the entry points do not move.

use std::collections::HashMap;

use crate::trace::alloc::{AllocFn, Allocation};

/// One allocator entry point.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) function: AllocFn,
    pub(super) addr: u64,
    /// Where its displaced first instruction runs, followed by a jump back;
    /// `None` if that instruction cannot be displaced (the entry is then
    /// never armed).
    pub(super) trampoline: Option<u64>,
}

/// A stretch of the allocator's code holding one or more entry points,
/// written whole (one `pwrite` per stretch and per arming or disarming).
#[derive(Debug, Clone)]
pub(super) struct Span {
    pub(super) start: u64,
    /// Its bytes as the program has them.
    pub(super) original: Vec<u8>,
    /// The same with `int3` on each entry point's first byte.
    pub(super) armed: Vec<u8>,
}

/// One line of the test process's `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub(super) struct Mapping {
    pub(super) start: u64,
    pub(super) end: u64,
    /// The file, a pseudo-name (`[heap]`, `[stack]`), or empty.
    pub(super) name: String,
}

/// The allocator's breakpoints.
#[derive(Debug, Default)]
pub(super) struct Heap {
    /// Every entry point prepared so far.
    pub(super) entries: Vec<Entry>,
    /// Whether their `int3`s are in place (during a call that records).
    pub(super) armed: bool,
    /// Whether the test process put them in place and takes them out
    /// itself (`StartCall::arms_allocator`); else the supervisor does.
    pub(super) armed_by_tracee: bool,
    /// The code written to arm and disarm them, made for `spans_of` entries.
    pub(super) spans: Vec<Span>,
    pub(super) spans_of: usize,
    /// The calling instruction of each return address seen.
    pub(super) sites: HashMap<u64, u64>,
    /// The calls recorded in the call in progress.
    pub(super) recorded: Vec<Allocation>,
    /// Blocks native code allocated in the test's earlier calls and did not
    /// free (from `StartCall`).
    pub(super) native_blocks: Vec<u64>,
    /// The test process's mappings as last read (`allocator::not_a_block`).
    pub(super) maps: Vec<Mapping>,
}

impl Heap {
    /// The entry point whose breakpoint is at `addr`.
    pub(super) fn entry_at(&self, addr: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.addr == addr)
    }
}
