//! The machinery of traced-ffi: the ptrace supervisor, its wire protocol,
//! the guarded arena, instruction decoding and the access events.
//!
//! This crate knows nothing of tests; the `traced-ffi` crate builds the test
//! harness on it. Linux on x86-64 only.
//!
//! A folder says which process runs its code (see `docs/ARCHITECTURE.md`):
//!
//! - [`launch`](crate::launch): the fork. Before it there is one process;
//!   after it the parent runs `supervisor/`, the child `tracee/`.
//! - `supervisor/`: the parent, a ptrace supervisor (single-threaded,
//!   blocked in `waitid`).
//! - `tracee/`: the test process's side: starting and ending a call, the
//!   guarded arena, the seccomp filters.
//! - process-free, used by both: `layout.rs` (the memory layout both agree
//!   on), `protocol.rs` (the messages between them), `decode/`
//!   (instructions, extended state, system call effects) and `trace/` (the
//!   events, the `Trace`, symbols).

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("traced-ffi-runtime supports Linux on x86-64 only");

mod decode;
mod launch;
mod layout;
mod protocol;
mod supervisor;
mod trace;
mod tracee;

pub use launch::{Launched, launch, run_untraced};
pub use layout::{PAGE_SIZE, page_ceil, page_floor};
pub use protocol::{REPORT_SIGNAL, REPORTED_EXIT_CODE};
pub use trace::alloc::{
    AllocFn, Allocation, ForeignFree, ForeignKind, describe_allocation, live_after,
};
pub use trace::contract::Expect;
pub use trace::declared::Declared;
pub use trace::event::{
    Access, AccessKind, AccessRef, Field, MAX_RECORDED_BYTES, Note, RangeSet, Region, RegionDesc,
    RegionId, RegionKind, Stats, Trace, UnknownSyscall, Unsupported, Unwritten,
};
pub use trace::symbols::{describe_ip, source_location, symbolize};
pub use tracee::arena::{GuardedMapping, page_protection};
pub use tracee::call::{ActiveCall, AllocTracing, CodeCache, Protection, Recording, begin_call};
pub use tracee::error::{AllocError, CallError, LaunchError};
