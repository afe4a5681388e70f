//! The machinery of traced-ffi: the ptrace supervisor, its wire protocol,
//! the guarded arena, instruction decoding and the access events.
//!
//! This crate knows nothing of tests; the `traced-ffi` crate builds the test
//! harness on it. Linux on x86-64 only.

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("traced-ffi-runtime supports Linux on x86-64 only");

mod arena;
mod client;
mod decode;
mod emulate;
mod error;
mod event;
mod fault;
mod futex;
mod kernel;
mod late;
mod launch;
mod mapped;
mod postmortem;
mod protocol;
mod ptrace;
mod seccomp;
mod sigstate;
mod stub;
mod supervisor;
mod symbols;
mod syscalls;
mod threads;
mod xstate;

pub use arena::{GuardedMapping, PAGE_SIZE, page_ceil, page_floor, page_protection};
pub use client::{ActiveCall, Protection, begin_call};
pub use error::{AllocError, CallError, LaunchError};
pub use event::{
    Access, AccessKind, MAX_RECORDED_BYTES, Note, RangeSet, Region, RegionDesc, RegionId,
    RegionKind, Stats, Trace, UnknownSyscall, Unsupported,
};
pub use launch::{Launched, launch, run_untraced};
pub use postmortem::{REPORT_SIGNAL, REPORTED_EXIT_CODE};
pub use symbols::{describe_ip, symbolize};
