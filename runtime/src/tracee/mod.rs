//! The test process's side (the child of the fork). Nothing here imports
//! supervisor code; what both sides share is in `layout`, `protocol`,
//! `decode` and `trace`.
//!
//! - `start`: the child side of the launch: the handshake, the seccomp
//!   filter, the process's tracing state;
//! - `call`: starting and ending a traced call (the call lock, the doorbell,
//!   protecting the pages);
//! - `allocator`: the allocator entry points whose calls a call records;
//! - `arena`: guarded memory for buffers, carved from the reservation;
//! - `seccomp`: the filters that stop system calls on buffers;
//! - `error`: the errors the test process sees.

pub(crate) mod allocator;
pub(crate) mod arena;
pub(crate) mod call;
pub(crate) mod error;
pub(crate) mod seccomp;
pub(crate) mod start;
