//! Memory contracts stated on a [`Trace`], whose failure message is the
//! explanation: the contract, the expected and actual byte sets, a byte map
//! of the region and the offending accesses only.
//!
//! ```text
//! trace.expect(&out).writes_exactly(0..n).reads_nothing();
//! trace.expect(&input).reads_exactly(0..n).writes_nothing().reads_each_byte_at_most(1);
//! trace.expect(&out).initialises(0..n);        // every byte Rust will treat as initialised
//! trace.expect(&out).writes_only(0..n);         // a subset: bytes may stay unwritten
//! trace.expect(&input).reads_only(0..n);
//! trace.expect(&scratch).reads_only_after_writing();
//! trace.expect_no_out_of_bounds();
//! trace.expect_allocates_nothing();             // or:
//! trace.expect_frees_everything_it_allocates();
//! trace.expect_never_frees_given_memory();
//! ```
//!
//! The same contracts declared before the call (`Tracer::expect_during`)
//! are checked by [`Trace::expect_declared`], and give their offending
//! accesses' native callers (see `declared.rs`).
//!
//! Each check panics (at the caller's line, `#[track_caller]`) when the
//! contract does not hold, and returns the [`Expect`] so checks chain.

use std::fmt::Write as _;
use std::ops::Range;

use super::alloc::{Allocation, describe_allocation};
use super::declared::{Declared, covers};
use super::event::{AccessKind, AccessRef, RangeSet, Region, RegionDesc, Trace};
use super::store::Summary;
use super::symbols::{describe_ip, source_location};

/// Bytes per row of a byte map.
const MAP_ROW: usize = 64;

/// Offending accesses a failure lists (the byte sets and map above them
/// cover all).
const MAX_OFFENDING: usize = 32;

/// Fails the test with the explanation of a broken contract. Contracts are
/// assertions: like `assert!`, a broken one panics at the caller's line
/// (every contract method is `#[track_caller]`), and the message is the
/// whole explanation.
#[track_caller]
fn contract_failed(msg: String) -> ! {
    panic!("{msg}")
}

/// The contracts of one region in one trace; made by [`Trace::expect`].
///
/// Each check panics with an explanation when the contract does not hold
/// (the contract, the expected and actual byte sets, a byte map of the
/// region, the offending accesses) and returns the `Expect` so checks chain:
///
/// ```text
/// // SAFETY: `out` holds 16 bytes.
/// let ((), trace) = t.call(|| unsafe { fill(out.as_mut_ptr(), 16, 0xab) });
/// trace.expect(&out).writes_exactly(0..16).reads_nothing();
/// trace.expect(&input).reads_exactly(0..n).writes_nothing().reads_each_byte_at_most(1);
/// trace.expect_no_out_of_bounds();
/// ```
///
/// A failure reads:
///
/// ```text
/// contract failed: `out` writes exactly [0x0..0x10]
///   region `out`: 16 bytes
///   expected   [0x0..0x10] (16 byte(s))
///   written    [0x0..0x10] (16 byte(s))
///   maybe      (none)
///   byte map of `out` (W written, R read, B both, ? maybe written, . untouched, ! out of bounds):
///     0x0000  WWWWWWWWWWWWWWWW
///     !  1 byte(s) past the end: out[0x10..0x11]
///   offending access(es):
///     write       out[0x10..0x11] 1 byte(s) [ab] at fill_one_past_end_o2+0x10 `mov [rdi+rax],dl`
/// ```
#[must_use = "an expectation checks nothing until one of its contracts is called"]
pub struct Expect<'t> {
    trace: &'t Trace,
    region: RegionDesc,
    /// The region's index in the trace's regions.
    index: usize,
    /// Whether the contracts were declared before the call
    /// (`Tracer::expect_during`), for the message.
    declared: bool,
}

impl Trace {
    /// The contracts of `region` in this trace.
    ///
    /// # Panics
    /// If `region` was not registered for this call (not a buffer or tracked
    /// range of the `Tracer` that made the call).
    #[track_caller]
    pub fn expect(&self, region: &impl Region) -> Expect<'_> {
        let id = region.region_id();
        match self.region_index(&id) {
            Some(index) => Expect {
                trace: self,
                region: self.regions()[index].clone(),
                index,
                declared: false,
            },
            None => contract_failed(format!(
                "contract on region {id:?}, which is not a region of this call (its regions: {})",
                self.regions()
                    .iter()
                    .map(|r| format!("`{}`", r.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Checks the contracts declared before the call (`Tracer::expect_during`
    /// in the harness, which calls this at the end of each call); those on
    /// regions that are not this call's are skipped. The accesses that break
    /// one carry their native callers (see [`Access::callers`](super::event::Access::callers)).
    ///
    /// # Panics
    /// As the contracts of [`Expect`], at the first broken one; the message
    /// says it was declared before the call.
    #[track_caller]
    pub fn expect_declared(&self, declared: &[Declared]) {
        for d in declared {
            let Some(index) = self.region_index(&d.region) else {
                continue;
            };
            let mut e = Expect {
                trace: self,
                region: self.regions()[index].clone(),
                index,
                declared: true,
            };
            e = match &d.writes {
                Some(w) if w.is_empty() => e.writes_nothing(),
                Some(w) => e.writes_within(w),
                None => e,
            };
            e = match &d.reads {
                Some(r) if r.is_empty() => e.reads_nothing(),
                Some(r) => e.reads_within(r),
                None => e,
            };
            if d.reads_after_writing {
                let _ = e.reads_only_after_writing();
            }
        }
    }

    /// Checks that no access touched bytes outside its region: before a
    /// buffer's first byte, after its last, or outside every region.
    ///
    /// # Panics
    /// With the offending accesses and a byte map of each region they hit.
    #[track_caller]
    pub fn expect_no_out_of_bounds(&self) {
        let oob: Vec<AccessRef<'_>> = self.iter_accesses().filter(|a| a.out_of_bounds).collect();
        if oob.is_empty() {
            return;
        }
        let mut msg = String::from("contract failed: no access out of bounds\n");
        let mut seen = Vec::new();
        for a in &oob {
            if let Some(desc) = a.region.and_then(|id| self.region(&id))
                && !seen.contains(&desc.id)
            {
                seen.push(desc.id);
                byte_map(self, desc, &mut msg);
            }
        }
        offending(self, &oob, &mut msg);
        contract_failed(msg);
    }

    /// Checks that native code allocated no memory during the call (no
    /// `malloc`, `calloc`, `realloc`, ... returned a block; `free` is
    /// allowed).
    ///
    /// # Panics
    /// Listing each allocation with its size and site.
    #[track_caller]
    pub fn expect_allocates_nothing(&self) {
        let made: Vec<&Allocation> = self
            .allocations()
            .iter()
            .filter(|a| a.allocated())
            .collect();
        if made.is_empty() {
            return;
        }
        let mut msg = format!(
            "contract failed: allocates nothing\n  {} allocation(s):\n",
            made.len()
        );
        allocation_lines(&made, &mut msg);
        contract_failed(msg);
    }

    /// Checks that every block native code allocated during the call was
    /// freed by its end (see [`Trace::unfreed`]).
    ///
    /// # Panics
    /// Listing each block left, with its size and site.
    #[track_caller]
    pub fn expect_frees_everything_it_allocates(&self) {
        let left = self.unfreed();
        if left.is_empty() {
            return;
        }
        let bytes: u64 = left.iter().map(|a| a.size).sum();
        let mut msg = format!(
            "contract failed: frees everything it allocates\n  {} block(s), {bytes} byte(s), \
             allocated and not freed by the end of the call:\n",
            left.len()
        );
        allocation_lines(&left, &mut msg);
        contract_failed(msg);
    }

    /// Checks that native code freed (or reallocated) no memory it did not
    /// allocate during this same call: no buffer, no tracked range, no block
    /// it was handed.
    ///
    /// # Panics
    /// Listing each such `free`/`realloc` with its site.
    #[track_caller]
    pub fn expect_never_frees_given_memory(&self) {
        let mut mine = std::collections::BTreeSet::new();
        let mut given: Vec<&Allocation> = Vec::new();
        for a in self.allocations() {
            let released = a.released().or(a.foreign.as_ref().map(|_| a.ptr));
            if let Some(p) = released
                && !mine.remove(&p)
            {
                given.push(a);
            }
            if a.allocated() {
                mine.insert(a.result);
            }
        }
        if given.is_empty() {
            return;
        }
        let mut msg = format!(
            "contract failed: never frees memory it was given\n  {} call(s) released memory \
             not allocated in this call:\n",
            given.len()
        );
        allocation_lines(&given, &mut msg);
        contract_failed(msg);
    }
}

fn allocation_lines(allocations: &[&Allocation], out: &mut String) {
    for a in allocations {
        let _ = writeln!(out, "    {}", describe_allocation(a));
    }
}

impl<'t> Expect<'t> {
    fn accesses(&self) -> impl Iterator<Item = AccessRef<'t>> + 't {
        self.trace.accesses_at(self.index)
    }

    fn len(&self) -> isize {
        self.region.len as isize
    }

    /// The exact summary of every access to the region, in a bounded
    /// trace.
    fn summary(&self) -> Option<&'t Summary> {
        self.trace.summary(self.index)
    }

    /// Whether some access of `kind` to the region (in or out of its
    /// bytes) was made, kept or not.
    fn any_of(&self, kind: AccessKind) -> bool {
        match self.summary() {
            Some(s) => s.count(kind) > 0,
            None => self.accesses().any(|a| a.kind == kind),
        }
    }

    /// Panics with the explanation of a broken contract.
    #[track_caller]
    fn fail(
        &self,
        contract: &str,
        sets: &[(&str, String)],
        offending_accesses: &[AccessRef<'_>],
    ) -> ! {
        let when = if self.declared {
            " (declared before the call with `Tracer::expect_during`)"
        } else {
            ""
        };
        let mut msg = format!(
            "contract failed: `{}` {contract}{when}\n  region `{}`: {} bytes\n",
            self.region.name, self.region.name, self.region.len
        );
        for (label, set) in sets {
            let _ = writeln!(msg, "  {label:<10} {set}");
        }
        byte_map(self.trace, &self.region, &mut msg);
        offending(self.trace, offending_accesses, &mut msg);
        bounded_note(self.trace, &mut msg);
        contract_failed(msg);
    }

    fn written_or_maybe(&self) -> RangeSet {
        let mut set = self.trace.written(&self.region.id);
        for r in self.trace.maybe_written(&self.region.id).ranges() {
            set.insert(r.clone());
        }
        set
    }

    /// Writes are accesses that may store: writes and maybe-writes.
    fn is_store(a: &AccessRef<'_>) -> bool {
        a.kind != AccessKind::Read
    }

    /// The bytes `bytes` of the region were certainly written, and no other
    /// byte was (or may have been) written, in or out of bounds.
    #[track_caller]
    pub fn writes_exactly(self, bytes: Range<usize>) -> Self {
        let expected: RangeSet = std::iter::once(bytes.clone()).collect();
        let certain = self.trace.written(&self.region.id);
        let any = self.written_or_maybe();
        let stray: Vec<AccessRef<'_>> = self
            .accesses()
            .filter(|a| Self::is_store(a) && !within(a.range(), &bytes))
            .collect();
        if certain != expected || any != expected || !stray.is_empty() {
            self.fail(
                &format!("writes exactly {}", fmt_range(&bytes)),
                &[
                    ("expected", fmt_set(&expected)),
                    ("written", fmt_set(&certain)),
                    ("maybe", fmt_set(&self.trace.maybe_written(&self.region.id))),
                ],
                &stray,
            );
        }
        self
    }

    /// No byte of the region (or around it) was written or maybe written.
    #[track_caller]
    pub fn writes_nothing(self) -> Self {
        let stores: Vec<AccessRef<'_>> = self.accesses().filter(|a| Self::is_store(a)).collect();
        if !stores.is_empty()
            || self.any_of(AccessKind::Write)
            || self.any_of(AccessKind::MaybeWrite)
        {
            self.fail(
                "writes nothing",
                &[("written", fmt_set(&self.written_or_maybe()))],
                &stores,
            );
        }
        self
    }

    /// No byte outside `bytes` was written or maybe written (in bounds or
    /// out); the bytes of `bytes` may be left unwritten (see
    /// [`Expect::writes_exactly`] for "all of them").
    #[track_caller]
    pub fn writes_only(self, bytes: Range<usize>) -> Self {
        self.writes_within(&std::iter::once(bytes).collect())
    }

    #[track_caller]
    fn writes_within(self, allowed: &RangeSet) -> Self {
        let written = self.written_or_maybe();
        self.only_within(allowed, "writes", "written", &written, Self::is_store)
    }

    /// No access `counted` touched a byte outside `allowed` (in bounds or
    /// out), and no byte of `touched` (the region's bytes it touched, exact
    /// even in a bounded trace) lies outside it: `<verb> only ...`.
    #[track_caller]
    fn only_within(
        self,
        allowed: &RangeSet,
        verb: &str,
        label: &str,
        touched: &RangeSet,
        counted: fn(&AccessRef<'_>) -> bool,
    ) -> Self {
        let stray: Vec<AccessRef<'_>> = self
            .accesses()
            .filter(|a| counted(a) && !covers(allowed, &a.range()))
            .collect();
        let outside = minus(touched, allowed);
        if !stray.is_empty() || !outside.is_empty() {
            self.fail(
                &format!("{verb} only {}", fmt_ranges(allowed)),
                &[
                    ("allowed", fmt_set(allowed)),
                    (label, fmt_set(touched)),
                    ("outside", fmt_set(&outside)),
                ],
                &stray,
            );
        }
        self
    }

    /// No byte outside `bytes` was read (in bounds or out); the bytes of
    /// `bytes` may be left unread (see [`Expect::reads_exactly`] for "all
    /// of them").
    #[track_caller]
    pub fn reads_only(self, bytes: Range<usize>) -> Self {
        self.reads_within(&std::iter::once(bytes).collect())
    }

    #[track_caller]
    fn reads_within(self, allowed: &RangeSet) -> Self {
        let read = self.trace.read(&self.region.id);
        self.only_within(allowed, "reads", "read", &read, |a| {
            a.kind == AccessKind::Read
        })
    }

    /// The bytes `bytes` were read, and no other byte (in or out of bounds).
    #[track_caller]
    pub fn reads_exactly(self, bytes: Range<usize>) -> Self {
        let expected: RangeSet = std::iter::once(bytes.clone()).collect();
        let read = self.trace.read(&self.region.id);
        let stray: Vec<AccessRef<'_>> = self
            .accesses()
            .filter(|a| a.kind == AccessKind::Read && !within(a.range(), &bytes))
            .collect();
        if read != expected || !stray.is_empty() {
            self.fail(
                &format!("reads exactly {}", fmt_range(&bytes)),
                &[("expected", fmt_set(&expected)), ("read", fmt_set(&read))],
                &stray,
            );
        }
        self
    }

    /// No byte of the region (or around it) was read.
    #[track_caller]
    pub fn reads_nothing(self) -> Self {
        let reads: Vec<AccessRef<'_>> = self
            .accesses()
            .filter(|a| a.kind == AccessKind::Read)
            .collect();
        if !reads.is_empty() || self.any_of(AccessKind::Read) {
            self.fail(
                "reads nothing",
                &[("read", fmt_set(&self.trace.read(&self.region.id)))],
                &reads,
            );
        }
        self
    }

    /// Every byte of `bytes` was certainly written: what Rust will treat as
    /// initialised after the call really was initialised by it.
    #[track_caller]
    pub fn initialises(self, bytes: Range<usize>) -> Self {
        let written = self.trace.written(&self.region.id);
        let missing: RangeSet = bytes
            .clone()
            .filter(|&b| !written.contains(b))
            .map(|b| b..b + 1)
            .collect();
        if !missing.is_empty() {
            self.fail(
                &format!("initialises {}", fmt_range(&bytes)),
                &[
                    ("written", fmt_set(&written)),
                    ("unwritten", fmt_set(&missing)),
                ],
                &[],
            );
        }
        self
    }

    /// Every named field of the region's value (see `#[derive(Fields)]`)
    /// was entirely written: a C out-struct that Rust will read as
    /// initialised. Padding is not required.
    #[track_caller]
    pub fn initialises_every_field(self) -> Self {
        let missing: Vec<String> = self
            .trace
            .unwritten_fields(&self.region.id)
            .into_iter()
            .filter(|u| !u.padding)
            .map(|u| format!("{} {}", u.name, fmt_range(&u.bytes)))
            .collect();
        if !missing.is_empty() {
            self.fail(
                "initialises every field",
                &[("unwritten", missing.join(", "))],
                &[],
            );
        }
        self
    }

    /// No access to this region fell outside its bytes.
    #[track_caller]
    pub fn stays_in_bounds(self) -> Self {
        let len = self.len();
        let oob: Vec<AccessRef<'_>> = self
            .accesses()
            .filter(|a| a.offset < 0 || a.range().end > len)
            .collect();
        if !oob.is_empty() {
            self.fail("stays in bounds", &[], &oob);
        }
        self
    }

    /// No byte of the region was read more than `n` times.
    #[track_caller]
    pub fn reads_each_byte_at_most(self, n: usize) -> Self {
        let len = self.region.len as usize;
        let (over, most) = match self.summary() {
            Some(s) => {
                let mut most = 0;
                let over = RangeSet::from_unsorted(s.read_counts().filter_map(|(b, c)| {
                    most = most.max(c as usize);
                    (c as usize > n).then_some(b..b + 1)
                }));
                (over, most)
            }
            None => {
                let mut counts = vec![0usize; len];
                for a in self.accesses().filter(|a| a.kind == AccessKind::Read) {
                    for off in clip(a.range(), len) {
                        counts[off] += 1;
                    }
                }
                let over: RangeSet =
                    RangeSet::from_unsorted((0..len).filter(|&b| counts[b] > n).map(|b| b..b + 1));
                (over, counts.iter().copied().max().unwrap_or(0))
            }
        };
        if !over.is_empty() {
            let offenders: Vec<AccessRef<'_>> = self
                .accesses()
                .filter(|a| {
                    a.kind == AccessKind::Read && clip(a.range(), len).any(|b| over.contains(b))
                })
                .collect();
            self.fail(
                &format!("reads each byte at most {n} time(s)"),
                &[
                    ("read > n", fmt_set(&over)),
                    ("most", format!("{most} reads of one byte")),
                ],
                &offenders,
            );
        }
        self
    }

    /// Every byte read was written earlier in the call (by the native code):
    /// the code reads only what it wrote first.
    ///
    /// # Panics
    /// Also when the trace is bounded and accesses were dropped
    /// (`Tracer::keep_accesses`): the order of all accesses is needed.
    #[track_caller]
    pub fn reads_only_after_writing(self) -> Self {
        self.needs_every_access("reads only bytes it wrote first");
        let len = self.region.len as usize;
        let mut written = RangeSet::default();
        let mut offenders = Vec::new();
        let mut unwritten = RangeSet::default();
        for a in self.accesses() {
            match a.kind {
                AccessKind::Write => {
                    let r = clip(a.range(), len);
                    written.insert(r.start..r.end);
                }
                AccessKind::MaybeWrite => {}
                AccessKind::Read => {
                    let before = unwritten.byte_count();
                    for b in clip(a.range(), len).filter(|&b| !written.contains(b)) {
                        unwritten.insert(b..b + 1);
                    }
                    if unwritten.byte_count() > before {
                        offenders.push(a);
                    }
                }
            }
        }
        if !offenders.is_empty() {
            self.fail(
                "reads only bytes it wrote first",
                &[("read first", fmt_set(&unwritten))],
                &offenders,
            );
        }
        self
    }
}

impl Expect<'_> {
    /// Fails `contract`, which needs every access in order, on a trace
    /// that dropped some.
    #[track_caller]
    fn needs_every_access(&self, contract: &str) {
        let dropped = self.trace.dropped_accesses();
        if dropped == 0 {
            return;
        }
        contract_failed(format!(
            "contract cannot be checked: `{}` {contract} needs every access in order, and this \
             trace is bounded: it kept the first {} of {} accesses ({dropped} dropped). Trace \
             this call with `Tracer::keep_accesses(None)` (the default) to check it.",
            self.region.name,
            self.trace.access_bound().unwrap_or(0),
            self.trace.total_accesses(),
        ));
    }
}

/// Notes, in a failure's message, that a bounded trace lists only the
/// accesses it kept.
fn bounded_note(trace: &Trace, out: &mut String) {
    let dropped = trace.dropped_accesses();
    if dropped > 0 {
        let _ = writeln!(
            out,
            "  (bounded trace: the byte sets and map are exact, but of {} accesses only the first \
             {} and the out-of-bounds ones are kept; {dropped} are not listed. \
             `Tracer::keep_accesses(None)` keeps all.)",
            trace.total_accesses(),
            trace.access_bound().unwrap_or(0),
        );
    }
}

/// True if every byte of `r` lies in `bytes`.
/// The bytes of `a` that are not in `b`.
fn minus(a: &RangeSet, b: &RangeSet) -> RangeSet {
    let mut out = Vec::new();
    for r in a.ranges() {
        let mut start = r.start;
        for s in b.ranges() {
            if s.end <= start || s.start >= r.end {
                continue;
            }
            if s.start > start {
                out.push(start..s.start);
            }
            start = start.max(s.end);
        }
        if start < r.end {
            out.push(start..r.end);
        }
    }
    RangeSet::from_unsorted(out)
}

fn within(r: Range<isize>, bytes: &Range<usize>) -> bool {
    r.start >= bytes.start as isize && r.end <= bytes.end as isize
}

/// The offsets of `r` inside `0..len`.
fn clip(r: Range<isize>, len: usize) -> Range<usize> {
    let len = len as isize;
    let (s, e) = (r.start.clamp(0, len), r.end.clamp(0, len));
    s as usize..e.max(s) as usize
}

fn fmt_range(r: &Range<usize>) -> String {
    format!("[{:#x}..{:#x}]", r.start, r.end)
}

/// `file:line` from `source` (`function (file:line)`) when `function` is
/// already shown (`site` is `function+0x..`); `source` whole otherwise (an
/// inlined chain, another name).
fn without_function<'s>(source: &'s str, site: &str) -> &'s str {
    let function = site.rsplit_once('+').map_or(site, |(f, _)| f);
    match source
        .strip_prefix(function)
        .and_then(|r| r.strip_prefix(" ("))
        .and_then(|r| r.strip_suffix(')'))
    {
        Some(at) if !source.contains(" inlined into ") => at,
        _ => source,
    }
}

/// `[0x0..0x8], [0xc..0x10]`: the ranges of a set, without the count.
fn fmt_ranges(set: &RangeSet) -> String {
    let ranges: Vec<String> = set.ranges().iter().map(fmt_range).collect();
    ranges.join(", ")
}

fn fmt_set(set: &RangeSet) -> String {
    if set.is_empty() {
        return "(none)".to_owned();
    }
    let parts: Vec<String> = set.ranges().iter().map(fmt_range).collect();
    format!("{} ({} byte(s))", parts.join(" "), set.byte_count())
}

/// Appends the byte map of `desc`: one character per byte, `W` written,
/// `R` read, `B` both, `?` maybe written, `.` untouched; bytes touched
/// before or after the region are listed as `!` with their offsets. Rows
/// of one character repeated are compressed.
fn byte_map(trace: &Trace, desc: &RegionDesc, out: &mut String) {
    let len = desc.len as usize;
    let mut cells = vec![b'.'; len];
    let mut before = RangeSet::default();
    let mut after = RangeSet::default();
    let Some(index) = trace.region_index(&desc.id) else {
        return;
    };
    // A bounded trace: the cells from its exact summary (out-of-bounds
    // accesses, always kept, give the `!` lines below).
    let summary = trace.summary(index);
    if let Some(s) = summary {
        for kind in [AccessKind::Read, AccessKind::Write, AccessKind::MaybeWrite] {
            for r in s.bytes(kind) {
                for cell in cells.get_mut(r.start..r.end.min(len)).unwrap_or_default() {
                    *cell = mark(*cell, kind);
                }
            }
        }
    }
    for a in trace.accesses_at(index) {
        let r = a.range();
        if r.start < 0 {
            let end = r.end.min(0);
            before.insert((-end) as usize..(-r.start) as usize);
        }
        if r.end > len as isize {
            let start = r.start.max(len as isize) as usize;
            after.insert(start - len..r.end as usize - len);
        }
        if summary.is_none() {
            for b in clip(r, len) {
                cells[b] = mark(cells[b], a.kind);
            }
        }
    }
    let _ = writeln!(
        out,
        "  byte map of `{}` (W written, R read, B both, ? maybe written, . untouched, ! out of bounds):",
        desc.name
    );
    for r in before.ranges() {
        let _ = writeln!(
            out,
            "    !  {} byte(s) before the start: {}[-{:#x}..{}]",
            r.end - r.start,
            desc.name,
            r.end,
            if r.start == 0 {
                "0x0".to_owned()
            } else {
                format!("-{:#x}", r.start)
            }
        );
    }
    let rows: Vec<&[u8]> = cells.chunks(MAP_ROW).collect();
    let mut i = 0;
    while i < rows.len() {
        let row = rows[i];
        let uniform = row.iter().all(|&c| c == row[0]) && row.len() == MAP_ROW;
        let mut j = i + 1;
        while uniform && j < rows.len() && rows[j] == row {
            j += 1;
        }
        let text = String::from_utf8_lossy(row);
        if j - i > 1 {
            let _ = writeln!(
                out,
                "    {:#06x}..{:#06x}  {text}  ×{} rows",
                i * MAP_ROW,
                j * MAP_ROW,
                j - i
            );
        } else {
            let _ = writeln!(out, "    {:#06x}  {text}", i * MAP_ROW);
        }
        i = j;
    }
    for r in after.ranges() {
        let _ = writeln!(
            out,
            "    !  {} byte(s) past the end: {}[{:#x}..{:#x}]",
            r.end - r.start,
            desc.name,
            len + r.start,
            len + r.end
        );
    }
}

/// A byte map's cell after an access of `kind`.
fn mark(cell: u8, kind: AccessKind) -> u8 {
    match (cell, kind) {
        (b'.', AccessKind::Read) => b'R',
        (b'.', AccessKind::Write) => b'W',
        (b'.', AccessKind::MaybeWrite) => b'?',
        (b'W' | b'?', AccessKind::Read) | (b'R', AccessKind::Write | AccessKind::MaybeWrite) => {
            b'B'
        }
        (c, _) => c,
    }
}

/// Appends the offending accesses, one row each.
fn offending(trace: &Trace, accesses: &[AccessRef<'_>], out: &mut String) {
    if accesses.is_empty() {
        return;
    }
    let _ = writeln!(out, "  offending access(es):");
    for a in accesses.iter().take(MAX_OFFENDING) {
        let bytes: Vec<String> = a
            .bytes
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(
            out,
            "    {:<11} {} {} byte(s) [{}] at {} `{}`{}",
            a.kind.to_string(),
            trace.describe_ref_location(a),
            a.len,
            bytes.join(" "),
            describe_ip(a.ip),
            a.insn,
            a.syscall
                .map_or(String::new(), |s| format!(" ({s}, by the kernel)"))
        );
        if let Some(source) = source_location(a.ip) {
            let _ = writeln!(out, "                source: {source}");
        }
        for ret in a.callers {
            // The call instruction is just before the return address.
            let caller = describe_ip(*ret);
            let site = source_location(ret - 1).map_or(String::new(), |s| {
                format!(" ({})", without_function(&s, &caller))
            });
            let _ = writeln!(out, "                called from {caller}{site}");
        }
    }
    if accesses.len() > MAX_OFFENDING {
        let _ = writeln!(
            out,
            "    ... and {} more offending access(es), not listed (the byte sets and map above \
             cover them all)",
            accesses.len() - MAX_OFFENDING
        );
    }
}
