//! Process-free: what a traced call produced. The supervisor builds the
//! events, the test process reads and prints them.
//!
//! - `alloc`: allocator calls made during a call (`Allocation`);
//! - `event`: `Access`, `Trace` and the rest of the public event types;
//! - `kind`: `AccessKind` and `MAX_RECORDED_BYTES`, which `event` and `store`
//!   share;
//! - `symbols`: instruction addresses to `symbol+offset`, `/proc/PID/maps`;
//! - `contract`: memory contracts whose failure explains itself;
//! - `declared`: contracts declared before a call, watched as it runs;
//! - `snapshot`: a rendering that stays the same across builds;
//! - `store`: how a trace holds its accesses (compact records).

pub(crate) mod alloc;
pub(crate) mod contract;
pub(crate) mod declared;
pub(crate) mod event;
pub(crate) mod kind;
pub(crate) mod mapped;
pub(crate) mod region;
pub(crate) mod snapshot;
pub(crate) mod store;
pub(crate) mod symbols;
