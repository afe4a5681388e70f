//! The supervisor: the parent of the fork, a single thread blocked in
//! `waitid` until a thread of the test process stops. Nothing here runs in
//! the test process; what both sides share is in `layout`, `protocol`,
//! `decode` and `trace`.
//!
//! - `core`: the [`Supervisor`](core::Supervisor), its event loop, the
//!   requests (start and end of a call) and the signals it passes on;
//! - `thread`: everything known about one traced thread;
//! - `call`: the call in progress, and calls whose late threads are watched;
//! - `fault`: one fault on a protected page: decode, plan, record, execute;
//! - `record`: operands to `Access`es, notes and unsupported entries;
//! - `stream`: the call's finished chunks of records, sent to the test
//!   process through the memfd during the call;
//! - `cache/`: the code cache: hot code translated to record its own
//!   accesses, one stop per entry instead of one per access;
//! - `executor/`: the ways an instruction runs once: emulation, the
//!   displaced-instruction stub, single-step;
//! - `heap`: the allocator's entry points and breakpoints (data);
//! - `allocator`: recording `malloc`/`free`/... calls during a call,
//!   refusing frees of buffers;
//! - `kernel`: system calls on protected pages, re-run from the stub;
//! - `futex`: futex waits and wakes on buffers, moved to shadow words;
//! - `sigstate`: the program's signal mask and handlers, kept through our
//!   faults and traps;
//! - `threads`: stopping a call's other threads while pages are open;
//! - `late`: threads that outlive their call;
//! - `forks`: processes the test process forks;
//! - `backtrace`: a thread's callers, where frame pointers allow;
//! - `crash`: explaining a crash of native code;
//! - `postmortem`: the death of a call's thread, and the timeout report
//!   (where every thread is) the runner asks for;
//! - `cause`: signal names and causes, how a thread ended;
//! - `report`: messages on stderr and the supervisor's exit;
//! - `ptrace`: counted ptrace requests and `waitid`.

mod allocator;
mod backtrace;
mod cache;
mod call;
mod cause;
mod core;
mod crash;
mod executor;
mod fault;
mod forks;
mod futex;
mod heap;
mod kernel;
mod late;
mod postmortem;
mod ptrace;
mod record;
mod report;
mod sigstate;
mod stream;
mod thread;
mod threads;

pub(crate) use core::supervise;
