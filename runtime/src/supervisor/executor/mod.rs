//! The ways a faulting instruction runs exactly once with its pages open
//! (chosen by `fault`):
//!
//! - `emulate`: the supervisor carries out a plain move itself;
//! - `stub`: the displaced-instruction stub, whose code `stub_code` builds;
//! - `step`: single-step between injected `mprotect`s.

pub(super) mod emulate;
pub(super) mod step;
pub(super) mod stub;
pub(super) mod stub_code;
