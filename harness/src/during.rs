//! Contracts declared before a call: `Tracer::expect_during`.

use std::ops::Range;

use traced_ffi_runtime::Declared;

/// The contracts of one region declared before the calls that follow; made
/// by `Tracer::expect_during`.
///
/// The supervisor checks every access against them as it records it, so an
/// access that breaks one carries its native caller chain
/// ([`Access::callers`](traced_ffi_runtime::Access::callers), as far as
/// frame pointers allow), and each later `Tracer::call` checks them on the
/// call's trace and fails with the explanation of
/// [`Expect`](traced_ffi_runtime::Expect): the contract, the byte sets, a
/// byte map, and the offending accesses with the functions that called the
/// code that made them.
///
/// ```no_run
/// # use traced_ffi::Tracer;
/// # let mut t = Tracer::new("doc");
/// # let out = t.buffer("out", 64);
/// # let input = t.buffer("in", 64);
/// t.expect_during(&out).writes_only(0..16).reads_nothing();
/// t.expect_during(&input).writes_nothing();
/// // Each later `t.call` checks them, and fails with the explanation.
/// ```
pub struct During<'t> {
    declared: &'t mut Declared,
}

impl<'t> During<'t> {
    pub(crate) fn new(declared: &'t mut Declared) -> During<'t> {
        During { declared }
    }

    /// No byte outside `bytes` is written (or maybe written), in bounds or
    /// out. Given several times, the allowed bytes are their union.
    pub fn writes_only(self, bytes: Range<usize>) -> Self {
        self.declared.allow_writes(bytes);
        self
    }

    /// No byte of the region (or around it) is written.
    pub fn writes_nothing(self) -> Self {
        self.declared.allow_writes(0..0);
        self
    }

    /// No byte outside `bytes` is read, in bounds or out. Given several
    /// times, the allowed bytes are their union.
    pub fn reads_only(self, bytes: Range<usize>) -> Self {
        self.declared.allow_reads(bytes);
        self
    }

    /// No byte of the region (or around it) is read.
    pub fn reads_nothing(self) -> Self {
        self.declared.allow_reads(0..0);
        self
    }

    /// Every byte read was written earlier in the same call.
    pub fn reads_only_after_writing(self) -> Self {
        self.declared.reads_after_writing = true;
        self
    }
}
