//! Everything the supervisor knows about one thread of the test process.

use libc::{c_int, pid_t, user_regs_struct};

use super::ptrace::WaitEvent;

/// Threads stopped for an exclusive section: each with the event it stopped
/// with instead of our interrupt, if any, to handle afterwards.
pub(super) type Stopped = Vec<(pid_t, Option<WaitEvent>)>;

/// One traced thread: created at the first thing the supervisor needs to
/// remember about it, dropped when it exits.
#[derive(Debug, Default)]
pub(super) struct Thread {
    /// Its stub slot, assigned at its first need and kept until it exits.
    pub(super) slot: Option<usize>,
    /// The stub code last written in its slot, to skip identical rewrites.
    pub(super) last_stub: Vec<u8>,
    /// Stopped with an event the supervisor consumed (while stopping the
    /// others for an exclusive section) and has not handled yet.
    pub(super) held: bool,
    /// Its blocked-signal mask, followed from its first traced call on
    /// (see `sigstate`).
    pub(super) mask: Option<u64>,
    /// A futex call moved onto a shadow word, until its exit (see `futex`).
    pub(super) moved: Option<Moved>,
    /// Writes whose bytes are read back at its next stop.
    pub(super) pending: Vec<PendingWrite>,
    /// A system call running in its stub slot (see `kernel`).
    pub(super) in_kernel: Option<InKernel>,
    /// Allocator calls it is inside of, innermost last, whose return
    /// address the supervisor replaced with the return trap (see
    /// `allocator`). Kept past the end of the call: the thread still returns
    /// through the trap.
    pub(super) alloc_returns: Vec<PendingReturn>,
    /// Set while it may be running translated code (see `cache`).
    pub(super) in_cache: Option<InCache>,
    /// Its cache slot's log may hold entries: drained at its next stop.
    pub(super) log_dirty: bool,
}

/// A recorded allocator call waiting for its result.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingReturn {
    pub(super) function: crate::trace::alloc::AllocFn,
    /// rdi, rsi, rdx at the entry.
    pub(super) args: [u64; 3],
    /// The real return address.
    pub(super) ret: u64,
    /// Whether it is recorded (made by a thread of the call, not from inside
    /// another allocator call).
    pub(super) recorded: bool,
}

/// A write recorded before its instruction ran: its bytes are read at the
/// thread's next stop (nothing else can touch protected bytes in between).
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingWrite {
    /// Index of the access in the call's accesses.
    pub(super) index: usize,
    pub(super) addr: u64,
    /// Bytes to read.
    pub(super) len: usize,
}

/// A futex call moved onto its shadow word: the registers to put back at
/// its exit. (The syscall-entry report comes before the seccomp stop, so
/// after `PTRACE_SYSCALL` from the seccomp stop the next stop is the exit.)
#[derive(Debug, Clone, Copy)]
pub(super) struct Moved {
    pub(super) rdi: u64,
    pub(super) rdx: u64,
}

/// A system call running in the stub.
#[derive(Debug, Clone)]
pub(super) struct InKernel {
    /// The registers at the system call's entry.
    pub(super) entry: user_regs_struct,
    pub(super) nr: u64,
    pub(super) args: [u64; 6],
    /// Whether the effects table knows the call.
    pub(super) known: bool,
    /// Where the stub's final `int3` leaves `rip`.
    pub(super) trap_end: u64,
}

/// The test process's threads as the supervisor sees them come and go: every
/// thread of the process is created after the seize (the launch forks before
/// any thread starts), so the clone events name them all.
///
/// A new thread's first stop (`PTRACE_EVENT_STOP`, before it runs any code)
/// and its parent's clone event reach `waitid` in either order. A thread
/// whose first stop comes first is held there until the clone event names
/// it, so that when it runs, the supervisor knows who created it (whether it
/// is a thread of the call in progress) without looking at `/proc`.
#[derive(Debug, Default)]
pub(super) struct Births {
    /// The test process's live threads: its main thread and every thread a
    /// clone event of one of them named, until it exits.
    pub(super) live: std::collections::HashSet<libc::pid_t>,
    /// Threads (and forked processes) named by a clone or fork event whose
    /// first stop has not come yet.
    pub(super) announced: std::collections::HashSet<libc::pid_t>,
    /// Threads whose first stop came before the event that names them:
    /// stopped, resumed when it comes.
    pub(super) unannounced: std::collections::HashSet<libc::pid_t>,
}

/// A thread inside the code cache, as far as the supervisor knows (see
/// `cache`).
#[derive(Debug, Default)]
pub(super) struct InCache {
    /// The call's other threads, stopped until the exit trap.
    pub(super) stopped: Option<Stopped>,
    /// Signals held until the exit.
    pub(super) deferred: Vec<c_int>,
}
