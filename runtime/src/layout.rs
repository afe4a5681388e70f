//! The memory layout both processes agree on. Process-free: constants and
//! pure functions, used by the test process (which maps these areas before
//! the fork) and by the supervisor (which reads and writes them).
//!
//! ```text
//! stub area (STUB_AREA_SIZE, aligned to its size, RWX, mapped before the fork)
//!   slot 0 .. slot THREAD_SLOTS-1   one page per tracing thread:
//!     +0x00 SAVE      6 × 8 bytes: registers the stub saves
//!     +0x40 GADGET    `syscall; int3`: system calls the supervisor injects
//!     +0x48 CLIENT    `syscall; ret`: the test process's own mprotects of buffers
//!     +0x50 SCRATCH   32 bytes: a `struct sigaction`
//!     +0x70 RETURN    slot 0 only: `int3`, the return address the supervisor gives
//!                     a recorded allocator call (see supervisor/allocator.rs)
//!     +0x80 CODE      the per-fault stub code (see supervisor/executor/stub_code.rs)
//!   last page         +0x000 futex shadow words (see supervisor/futex.rs)
//!                     +0x800 trampolines: the allocator entries' displaced first
//!                            instructions, each followed by a jump back
//!   from CACHE_OFFSET: one CACHE_SLOT_SIZE code-cache slot per thread slot
//!     (see supervisor/cache/):
//!     +0x0000 DATA    spill cells, the log pointer, the budget, the exit
//!                     target, the flag that makes exits trap
//!     +0x1000 LOG     the access log the translated code appends to: a
//!                     shared mapping, so the supervisor reads it in place
//!     then    GUARD   one PROT_NONE page: a full log faults there
//!     then    GATES   the code that opens the call's pages and jumps into
//!                     the cache, and the code that closes them on the way out
//!     then    CODE    translated blocks
//!
//! buffer reservation (1 << RESERVATION_SHIFT bytes, aligned to its size, PROT_NONE)
//!   every Buffer's span is carved from it (see tracee/arena.rs), so the
//!   seccomp filter tells a pointer into a buffer by its upper bits
//! ```

use crate::trace::event::RegionDesc;

/// The page size (x86-64 Linux base pages).
pub const PAGE_SIZE: usize = 4096;

/// Rounds `n` up to a multiple of the page size.
pub const fn page_ceil(n: usize) -> usize {
    n.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Rounds `n` down to a multiple of the page size.
pub const fn page_floor(n: u64) -> u64 {
    n - n % PAGE_SIZE as u64
}

/// log2 of the size of the address range reserved for buffers (64 GiB).
pub(crate) const RESERVATION_SHIFT: u32 = 36;
/// Size of the address range reserved for buffers.
pub(crate) const RESERVATION_SIZE: u64 = 1 << RESERVATION_SHIFT;

/// True if `addr` lies in the reservation that starts at `start`.
pub(crate) fn in_reservation(start: u64, addr: u64) -> bool {
    addr >= start && addr < start + RESERVATION_SIZE
}

/// One thread's stub: a page with its save area and its code.
pub(crate) const SLOT_SIZE: usize = 4096;
/// Pages in the stub area.
pub(crate) const SLOTS: usize = 16;
/// Slots for threads (threads that can be in a stub at the same time; a
/// thread beyond these gets the single-step path): the last page of the
/// area holds the futex shadow words.
pub(crate) const THREAD_SLOTS: usize = SLOTS - 1;
/// Offset of the futex shadow words.
pub(crate) const SHADOW_OFFSET: u64 = (THREAD_SLOTS * SLOT_SIZE) as u64;
/// Bytes of shadow words (512 futexes); the rest of the page holds the
/// trampolines.
pub(crate) const SHADOW_BYTES: u64 = 0x800;
/// Offset of the allocator trampolines: one [`TRAMPOLINE_SIZE`]-byte slot
/// per allocator entry point, the displaced first instruction and a jump
/// back after it.
pub(crate) const TRAMPOLINE_OFFSET: u64 = SHADOW_OFFSET + SHADOW_BYTES;
/// Size of one trampoline slot: an instruction (at most 15 bytes) and a
/// `jmp [rip+0]; .quad` (14 bytes).
pub(crate) const TRAMPOLINE_SIZE: u64 = 32;
/// Offset (in slot 0) of the `int3` a recorded allocator call returns to.
pub(crate) const RETURN_TRAP_OFFSET: u64 = 0x70;
/// Its byte: `int3`.
pub(crate) const RETURN_TRAP: [u8; 1] = [0xcc];
/// Offset of the first code-cache slot in the stub area.
pub(crate) const CACHE_OFFSET: u64 = 2 << 20;
/// One thread slot's code cache: data page, log, guard page, gates, code.
pub(crate) const CACHE_SLOT_SIZE: u64 = 2 << 20;
/// Offset of the access log in a cache slot.
pub(crate) const CACHE_LOG_OFFSET: u64 = 0x1000;
/// Bytes of access log in a cache slot.
pub(crate) const CACHE_LOG_SIZE: u64 = 512 << 10;
/// Offset of the log's guard page in a cache slot.
pub(crate) const CACHE_GUARD_OFFSET: u64 = CACHE_LOG_OFFSET + CACHE_LOG_SIZE;
/// Offset of the gates (open and close the call's pages) in a cache slot.
pub(crate) const CACHE_GATES_OFFSET: u64 = CACHE_GUARD_OFFSET + PAGE_SIZE as u64;
/// Bytes reserved for each of the two gates.
pub(crate) const CACHE_GATE_SIZE: u64 = 0x2000;
/// Offset of the translated code in a cache slot.
pub(crate) const CACHE_CODE_OFFSET: u64 = CACHE_GATES_OFFSET + 2 * CACHE_GATE_SIZE;
/// Size of the stub area (mapped aligned to its size, so the seccomp filter
/// can tell an instruction address in it by its upper bits): the slots, and
/// a code-cache slot per thread slot.
pub(crate) const STUB_AREA_SIZE: usize =
    (CACHE_OFFSET + CACHE_SLOT_SIZE * THREAD_SLOTS as u64).next_power_of_two() as usize;

/// The base address of the code-cache slot of thread slot `slot`.
pub(crate) fn cache_slot_base(stub_base: u64, slot: usize) -> u64 {
    stub_base + CACHE_OFFSET + CACHE_SLOT_SIZE * slot as u64
}

/// True if `ip` lies in the code-cache part of the stub area at `stub_base`.
pub(crate) fn is_in_cache(stub_base: u64, ip: u64) -> bool {
    ip >= stub_base + CACHE_OFFSET && ip < stub_base + STUB_AREA_SIZE as u64
}
/// Offset of the register save area in a slot (6 slots of 8 bytes).
pub(crate) const SAVE_OFFSET: u64 = 0;
/// Offset of the `syscall; int3` gadget.
pub(crate) const GADGET_OFFSET: u64 = 0x40;
/// The gadget's bytes: `syscall` (0F 05), `int3` (CC).
pub(crate) const GADGET: [u8; 3] = [0x0f, 0x05, 0xcc];
/// Offset of the `syscall; ret` gadget the test process calls for its own
/// `mprotect`s of buffers: the seccomp filter lets system calls made from
/// the stub page through without a stop.
pub(crate) const CLIENT_GADGET_OFFSET: u64 = 0x48;
/// That gadget's bytes: `syscall` (0F 05), `ret` (C3).
pub(crate) const CLIENT_GADGET: [u8; 3] = [0x0f, 0x05, 0xc3];
/// Offset of 32 bytes of scratch memory (a `struct sigaction`).
pub(crate) const SCRATCH_OFFSET: u64 = 0x50;
/// Offset of the per-fault stub code in a slot.
pub(crate) const CODE_OFFSET: u64 = 0x80;

/// The base address of slot `slot` of the stub area at `stub_base`.
pub(crate) fn slot_base(stub_base: u64, slot: usize) -> u64 {
    stub_base + (slot * SLOT_SIZE) as u64
}

/// True if `ip` lies inside the per-fault code of any slot of the stub area
/// at `stub_base`.
pub(crate) fn is_in_stub_code(stub_base: u64, ip: u64) -> bool {
    ip >= stub_base
        && ip < stub_base + (SLOT_SIZE * SLOTS) as u64
        && (ip - stub_base) % SLOT_SIZE as u64 >= CODE_OFFSET
}

/// The spans of all regions (the pages protected during a call), merged
/// into disjoint, sorted `(start, end)` ranges.
pub(crate) fn protected_spans(regions: &[RegionDesc]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = regions
        .iter()
        .map(|r| (r.span_start, r.span_end()))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}
