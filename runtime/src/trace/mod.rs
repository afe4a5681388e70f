//! Process-free: what a traced call produced. The supervisor builds the
//! events, the test process reads and prints them.
//!
//! - `event`: `Access`, `Trace` and the rest of the public event types;
//! - `symbols`: instruction addresses to `symbol+offset`, `/proc/PID/maps`.

pub(crate) mod event;
pub(crate) mod symbols;
