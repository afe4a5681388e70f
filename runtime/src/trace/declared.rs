//! Contracts declared before a call (`Tracer::expect_during` in the
//! harness): sent with the call, so that the supervisor knows, as it records
//! each access, whether the access breaks one. Only an access that breaks
//! one gets its native caller chain (the stack is gone once the call has
//! returned, and walking it at every access would cost every access); after
//! the call the test process checks the same contracts on the trace
//! ([`Trace::expect_declared`]) and fails with the explanation, whose
//! offending accesses then say who called the code that made them.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::event::{RangeSet, RegionId};
use super::kind::AccessKind;

/// The contracts declared on one region before a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declared {
    /// The region they are about.
    pub region: RegionId,
    /// The bytes that may be written (or maybe written); `None`: any.
    pub writes: Option<RangeSet>,
    /// The bytes that may be read; `None`: any.
    pub reads: Option<RangeSet>,
    /// Every byte read must have been written earlier in the call.
    pub reads_after_writing: bool,
}

impl Declared {
    /// No contract yet on `region`.
    pub fn new(region: RegionId) -> Declared {
        Declared {
            region,
            writes: None,
            reads: None,
            reads_after_writing: false,
        }
    }

    /// Adds `bytes` to the bytes that may be written (an empty range: none).
    pub fn allow_writes(&mut self, bytes: Range<usize>) {
        self.writes
            .get_or_insert_with(RangeSet::default)
            .insert(bytes);
    }

    /// Adds `bytes` to the bytes that may be read (an empty range: none).
    pub fn allow_reads(&mut self, bytes: Range<usize>) {
        self.reads
            .get_or_insert_with(RangeSet::default)
            .insert(bytes);
    }
}

/// True if every byte of `r` is in `set`.
pub(crate) fn covers(set: &RangeSet, r: &Range<isize>) -> bool {
    if r.start < 0 {
        return false;
    }
    let (start, end) = (r.start as usize, r.end.max(r.start) as usize);
    set.ranges()
        .iter()
        .any(|s| s.start <= start && end <= s.end)
}

/// The supervisor's view of one declared contract during a call: the
/// contract, and for `reads_after_writing` which bytes were written so far
/// and which were read before being written (one bit per byte of the
/// region).
#[derive(Debug)]
pub(crate) struct Watch {
    declared: Declared,
    len: usize,
    written: Vec<u64>,
    read_first: Vec<u64>,
}

impl Watch {
    /// Watches `declared` on a region of `len` bytes.
    pub(crate) fn new(declared: Declared, len: usize) -> Watch {
        let words = if declared.reads_after_writing {
            len.div_ceil(64)
        } else {
            0
        };
        Watch {
            declared,
            len,
            written: vec![0; words],
            read_first: vec![0; words],
        }
    }

    /// Whether an access of `kind` to the region's bytes `range` (relative
    /// to its first byte; out-of-bounds parts allowed) breaks a contract,
    /// taking it into account for the next ones. Accesses must come in the
    /// trace's order.
    pub(crate) fn breaks(&mut self, kind: AccessKind, range: Range<isize>) -> bool {
        let allowed = match kind {
            AccessKind::Read => &self.declared.reads,
            AccessKind::Write | AccessKind::MaybeWrite => &self.declared.writes,
        };
        let mut broken = allowed.as_ref().is_some_and(|set| !covers(set, &range));
        if self.declared.reads_after_writing {
            let start = range.start.clamp(0, self.len as isize) as usize;
            let end = range.end.clamp(0, self.len as isize) as usize;
            match kind {
                // A maybe-write may not have stored: it writes nothing for
                // this contract, as for `Expect::reads_only_after_writing`.
                AccessKind::MaybeWrite => {}
                AccessKind::Write => {
                    for b in start..end {
                        self.written[b / 64] |= 1 << (b % 64);
                    }
                }
                AccessKind::Read => {
                    for b in start..end {
                        let bit = 1u64 << (b % 64);
                        // The first read of an unwritten byte breaks it;
                        // later reads of the same byte add nothing new.
                        if self.written[b / 64] & bit == 0 && self.read_first[b / 64] & bit == 0 {
                            self.read_first[b / 64] |= bit;
                            broken = true;
                        }
                    }
                }
            }
        }
        broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Declared {
        Declared::new(RegionId(1))
    }

    #[test]
    fn a_write_outside_the_allowed_bytes_breaks_writes_only_and_one_inside_does_not() {
        let mut d = declared();
        d.allow_writes(0..8);
        d.allow_writes(12..16);
        let mut w = Watch::new(d, 16);
        assert!(!w.breaks(AccessKind::Write, 0..8));
        assert!(!w.breaks(AccessKind::MaybeWrite, 12..16));
        assert!(
            w.breaks(AccessKind::Write, 7..9),
            "straddles the end of 0..8"
        );
        assert!(w.breaks(AccessKind::Write, -1..0), "before the region");
        assert!(w.breaks(AccessKind::MaybeWrite, 16..17), "past the end");
        assert!(
            !w.breaks(AccessKind::Read, 8..12),
            "reads are not restricted"
        );
    }

    #[test]
    fn writes_nothing_is_an_empty_allowed_set() {
        let mut d = declared();
        d.allow_writes(0..0);
        let mut w = Watch::new(d, 4);
        assert!(w.breaks(AccessKind::Write, 0..1));
        assert!(!w.breaks(AccessKind::Read, 0..4));
    }

    #[test]
    fn reads_after_writing_breaks_on_the_first_read_of_each_unwritten_byte_only() {
        let mut d = declared();
        d.reads_after_writing = true;
        let mut w = Watch::new(d, 130);
        assert!(!w.breaks(AccessKind::Write, 0..64));
        assert!(!w.breaks(AccessKind::Read, 0..64));
        assert!(
            w.breaks(AccessKind::Read, 63..66),
            "bytes 64 and 65 were never written"
        );
        assert!(!w.breaks(AccessKind::Read, 64..66), "already reported");
        assert!(!w.breaks(AccessKind::MaybeWrite, 128..130));
        assert!(
            w.breaks(AccessKind::Read, 129..131),
            "a maybe-write is not a write"
        );
        assert!(
            !w.breaks(AccessKind::Read, 130..131),
            "out of bounds: not this contract's"
        );
    }
}
