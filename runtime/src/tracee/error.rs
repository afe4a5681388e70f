//! Error types, one per operation. Messages read after "failed to".

use std::io;

/// Starting the supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Threads exist already: forking now would leave them behind.
    #[error(
        "start the supervisor: {count} threads are running; `traced_ffi::main!()` must run before any thread is spawned"
    )]
    ThreadsRunning {
        /// Threads found in /proc/self/task.
        count: usize,
    },
    /// `launch` was called twice in one process.
    #[error("start the supervisor: it is already running in this process")]
    AlreadyLaunched,
    /// A system call needed to set up failed.
    #[error("start the supervisor: {what}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A traced call could not be made or completed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// This process is not traced.
    #[error("trace the call: tracing is unavailable: {reason}")]
    Unavailable {
        /// Why (ptrace refused, supervisor not started, ...).
        reason: String,
    },
    /// Talking to the supervisor failed (it may have died).
    #[error("trace the call at {call}: the supervisor did not answer")]
    Io {
        /// The call's location.
        call: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The supervisor refused the call.
    #[error("trace the call at {call}: the supervisor refused it: {reason}")]
    Refused {
        /// The call's location.
        call: String,
        /// Why.
        reason: String,
    },
    /// The supervisor answered something unexpected: a bug in traced-ffi.
    #[error(
        "trace the call at {call}: protocol error (a traced-ffi bug, please report): got {what}"
    )]
    Protocol {
        /// The call's location.
        call: String,
        /// What arrived.
        what: String,
    },
    /// A traced call was started inside another one on the same thread (in
    /// the first call's closure).
    #[error(
        "trace the call at {call}: a traced call is already running on this thread, started \
         at {outer}; make the second call after the first returns"
    )]
    Nested {
        /// The inner call's location.
        call: String,
        /// The location of the call already running.
        outer: String,
    },
    /// Changing the protection of a region's pages failed.
    #[error("trace the call at {call}: mprotect of the pages at {addr:#x} failed")]
    Protect {
        /// The call's location.
        call: String,
        /// First address of the range.
        addr: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Allocating a guarded buffer failed.
#[derive(Debug, thiserror::Error)]
#[error("allocate guarded buffer `{name}` of {len} bytes")]
pub struct AllocError {
    /// The buffer's name.
    pub name: String,
    /// Its requested length.
    pub len: usize,
    /// The OS error.
    #[source]
    pub source: io::Error,
}
