//! What one access is: its kind, and how many of its bytes a trace keeps.
//! (Both `event`, the public types, and `store`, the compact records, use
//! them.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many bytes of an access's value are kept in
/// [`Access::bytes`](super::event::Access::bytes).
pub const MAX_RECORDED_BYTES: usize = 64;

/// The kind of one memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessKind {
    /// Bytes were loaded.
    Read,
    /// Bytes were stored.
    Write,
    /// Bytes may have been stored: a conditional store whose outcome the
    /// tracer could not observe.
    MaybeWrite,
}

impl fmt::Display for AccessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::MaybeWrite => "maybe-write",
        })
    }
}
