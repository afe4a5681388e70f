//! What a traced call produces: regions, accesses, unsupported instructions
//! and the cost of tracing them, gathered into a [`Trace`].

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::store::{Records, Stored};

pub use super::kind::{AccessKind, MAX_RECORDED_BYTES};
pub use super::region::{Region, RegionId};

/// How a region's memory was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionKind {
    /// A buffer from the guarded arena: its own pages, a guard page after
    /// its last byte, redzone before its first. Every access to its span is
    /// recorded, out-of-bounds ones included.
    Buffer,
    /// Memory the test did not get from the arena. Its pages may hold other
    /// data: accesses to those bytes are executed but not recorded.
    Tracked,
}

/// A region as registered with the supervisor for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDesc {
    /// The region's id.
    pub id: RegionId,
    /// The name the test gave it (`t.buffer("out", 16)` → `out`).
    pub name: String,
    /// Buffer or tracked memory.
    pub kind: RegionKind,
    /// Address of the region's first byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// First byte of the page-aligned span protected during a call.
    pub span_start: u64,
    /// Length of that span (a multiple of the page size).
    pub span_len: u64,
    /// Named fields of the value the region holds (from
    /// `#[derive(traced_ffi::Fields)]`), sorted by offset; empty for plain
    /// bytes.
    pub fields: Vec<Field>,
}

/// A buffer that was dropped and whose span is in quarantine: kept
/// `PROT_NONE` and not reused for a while, so that native code that kept a
/// pointer to it faults, and the fault can name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The buffer's name.
    pub name: String,
    /// Where the buffer was made (`file:line`), if known.
    pub made_at: Option<String>,
    /// Address of its first byte, and its length.
    pub start: u64,
    pub len: u64,
    /// Its whole span (guard pages included).
    pub span_start: u64,
    pub span_len: u64,
}

/// One named field of a region's value: `inner.level` at bytes
/// `offset..offset + len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field's path (`level`, `inner.level`).
    pub name: String,
    /// Offset of its first byte in the value.
    pub offset: usize,
    /// Its size in bytes.
    pub len: usize,
}

/// Bytes of a region's value that a call never wrote: a field (or the part
/// of it left unwritten), or padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritten {
    /// The field's path, or `padding`.
    pub name: String,
    /// The unwritten bytes, as offsets into the value.
    pub bytes: Range<usize>,
    /// True for padding between or after fields.
    pub padding: bool,
}

impl RegionDesc {
    /// One past the region's last byte.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// One past the span's last byte.
    pub fn span_end(&self) -> u64 {
        self.span_start + self.span_len
    }
}

/// One memory access made by native code to a region during a traced call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Read, write, or maybe-write.
    pub kind: AccessKind,
    /// The region the access falls in; `None` if it is out of bounds of
    /// every region (it touched a protected page outside any region's bytes).
    pub region: Option<RegionId>,
    /// Offset of the first byte accessed, relative to the region's first
    /// byte: negative before the start, `>= len` past the end.
    pub offset: isize,
    /// Number of bytes accessed.
    pub len: usize,
    /// The bytes read (their value before the instruction) or written
    /// (after it); at most [`MAX_RECORDED_BYTES`] of them.
    pub bytes: Vec<u8>,
    /// The thread that made the access.
    pub tid: i32,
    /// The instruction's address.
    pub ip: u64,
    /// The instruction, disassembled (Intel syntax); `syscall` for an
    /// access the kernel made.
    pub insn: String,
    /// For an access made by the kernel on behalf of a system call (the
    /// `buf` of `read(fd, buf, n)`), the call's name; `None` for an access
    /// made by an instruction. `ip` is then the `syscall` instruction.
    pub syscall: Option<String>,
    /// For an access out of its region's bounds, or that breaks a contract
    /// declared before the call (`Tracer::expect_during`): the return
    /// addresses of the native callers of the function that made it,
    /// innermost first, as far as frame pointers allow (often only the first
    /// caller, or none, in code built without them). Empty for other
    /// accesses.
    pub callers: Vec<u64>,
}

impl Access {
    /// The accessed byte offsets, relative to the region's first byte.
    pub fn range(&self) -> Range<isize> {
        self.offset..self.offset + self.len as isize
    }
}

/// One access of a [`Trace`], borrowed from the trace's compact storage
/// (see [`Trace::iter_accesses`]): the fields of [`Access`], without
/// building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRef<'a> {
    /// Read, write, or maybe-write.
    pub kind: AccessKind,
    /// The region the access falls in (see [`Access::region`]).
    pub region: Option<RegionId>,
    /// Offset of the first byte, relative to the region's first byte.
    pub offset: isize,
    /// Number of bytes accessed.
    pub len: usize,
    /// The bytes read or written (see [`Access::bytes`]).
    pub bytes: &'a [u8],
    /// The thread that made the access.
    pub tid: i32,
    /// The instruction's address.
    pub ip: u64,
    /// The instruction, disassembled.
    pub insn: &'a str,
    /// The system call, for an access the kernel made.
    pub syscall: Option<&'a str>,
    /// The native callers of an out-of-bounds access, or of one that broke a
    /// declared contract (see [`Access::callers`]).
    pub callers: &'a [u64],
    /// True if the access touched bytes outside its region (see
    /// [`Trace::is_out_of_bounds`]).
    pub out_of_bounds: bool,
    /// Index of the region in [`Trace::regions`].
    region_index: Option<usize>,
}

impl AccessRef<'_> {
    /// The accessed byte offsets, relative to the region's first byte.
    pub fn range(&self) -> Range<isize> {
        self.offset..self.offset + self.len as isize
    }

    /// The access as an owned [`Access`].
    pub fn to_access(&self) -> Access {
        Access {
            kind: self.kind,
            region: self.region,
            offset: self.offset,
            len: self.len,
            bytes: self.bytes.to_vec(),
            tid: self.tid,
            ip: self.ip,
            insn: self.insn.to_owned(),
            syscall: self.syscall.map(str::to_owned),
            callers: self.callers.to_vec(),
        }
    }
}

/// True if `offset..offset+len` leaves `desc`'s bytes (or there is no
/// region).
fn outside(desc: Option<&RegionDesc>, offset: isize, len: usize) -> bool {
    match desc {
        None => true,
        Some(desc) => offset < 0 || offset as i128 + len as i128 > desc.len as i128,
    }
}

/// The `Vec<Access>` of [`Trace::accesses`], built at its first use. Not
/// part of a trace's value: clones start without it, equality ignores it,
/// it is never sent.
#[derive(Default)]
struct Materialised(OnceLock<Vec<Access>>);

impl Clone for Materialised {
    fn clone(&self) -> Self {
        Materialised::default()
    }
}

impl PartialEq for Materialised {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Materialised {}

impl fmt::Debug for Materialised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "built"
        } else {
            "not built"
        })
    }
}

/// An instruction that touched a protected page and that the tracer could
/// not account for exactly. Its presence fails the test unless the test
/// opted out: the trace is then known to be incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsupported {
    /// The instruction's address.
    pub ip: u64,
    /// The instruction's bytes (up to 15), as read from the tracee.
    pub insn_bytes: Vec<u8>,
    /// The instruction, disassembled (or `(bad)`).
    pub insn: String,
    /// Why it is not supported.
    pub reason: String,
    /// The thread that executed it.
    pub tid: i32,
    /// How many times this instruction faulted during the call.
    pub count: u64,
}

/// A system call whose arguments pointed into protected pages but whose
/// effect on memory the tracer does not know. It ran with the pages of the
/// regions it pointed into open, so it did not fail with `EFAULT`, but its
/// reads and writes are not in the trace: like [`Unsupported`], it fails the
/// test unless the test opted out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownSyscall {
    /// The system call number (x86-64).
    pub nr: u64,
    /// Its kernel name; `None` only for a number that is not an x86-64
    /// system call (an x32 call, say).
    pub name: Option<String>,
    /// Its six arguments.
    pub args: [u64; 6],
    /// Its result (`-errno` on failure).
    pub result: i64,
    /// The address of the `syscall` instruction.
    pub ip: u64,
    /// The thread that made it.
    pub tid: i32,
}

/// Something the tracer saw during a call that is not a data access but that
/// a reader of the trace should know of: an instruction that touched a
/// tracked page without reading or writing its bytes (`clflush`), for
/// example. Notes do not fail a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The instruction's address (0 for a note about the call as a whole).
    pub ip: u64,
    /// The instruction, disassembled (empty for a note about the call).
    pub insn: String,
    /// The region it touched and where, if any (relative to the region's first byte).
    pub region: Option<RegionId>,
    /// Offset in the region.
    pub offset: isize,
    /// What happened.
    pub text: String,
    /// The thread that executed it.
    pub tid: i32,
}

/// What tracing one call cost, counted by the supervisor. New counters
/// come with new tracing machinery (the code cache's, streaming's), so the
/// struct is `#[non_exhaustive]`: read its fields, do not build it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Page faults on protected pages handled during the call.
    pub faults: u64,
    /// Stops of the calling thread the supervisor handled during the call,
    /// the two doorbells included.
    pub stops: u64,
    /// ptrace requests the supervisor issued during the call.
    pub ptrace_requests: u64,
    /// Faulting instructions (plain moves) carried out by the supervisor
    /// through `/proc/PID/mem`: one stop, the page never opens.
    pub emulated: u64,
    /// Faulting instructions executed by the one-stop displaced-instruction
    /// stub.
    pub stub_path: u64,
    /// Faulting instructions executed by the general path (injected
    /// `mprotect`, single-step, injected `mprotect`: four stops).
    pub step_path: u64,
    /// Instruction decodes served from the per-call cache.
    pub decode_cache_hits: u64,
    /// System calls on protected pages run with their pages open (from the
    /// stub, two stops each).
    pub syscalls: u64,
    /// Times another thread of the call was stopped while one ran an
    /// instruction with protected pages open (multi-threaded calls only).
    pub threads_stopped: u64,
    /// Stops of the call's threads at the allocator's breakpoints (entries
    /// and returns) during the call. Other threads of the process stop there
    /// too while a call runs (one stop per allocator call, not recorded).
    pub allocator_stops: u64,
    /// Times a thread of the call entered the code cache: translated code
    /// that records its own accesses (one stop per entry, none per access).
    pub cache_entries: u64,
    /// Accesses (before filtering by region) that translated code logged.
    pub cache_accesses: u64,
    /// Bytes of the trace (chunks of 32 Ki records, 1 MiB each, and chunks
    /// of their values) the supervisor streamed to the test process during
    /// the call, through a shared memfd, instead of holding them until its
    /// end.
    pub streamed_bytes: u64,
}

/// The ordered accesses of one traced call, with the regions they refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Regions registered for the call.
    pub(crate) regions: Vec<RegionDesc>,
    /// Accesses, in the order they happened, compact (see `store`).
    pub(crate) records: Records,
    /// The accesses as `Access`es, once asked for.
    #[serde(skip)]
    materialised: Materialised,
    /// Instructions the tracer could not account for.
    pub(crate) unsupported: Vec<Unsupported>,
    /// Things seen that are not accesses (see [`Note`]).
    pub(crate) notes: Vec<Note>,
    /// System calls on protected pages whose effect is not known.
    pub(crate) unknown_syscalls: Vec<UnknownSyscall>,
    /// What tracing cost.
    pub(crate) stats: Stats,
    /// Allocator calls made by native code (see [`Trace::allocations`]).
    pub(crate) allocations: Vec<super::alloc::Allocation>,
}

impl Trace {
    /// Assembles a trace (used by the supervisor).
    pub(crate) fn new(
        regions: Vec<RegionDesc>,
        records: Records,
        unsupported: Vec<Unsupported>,
        notes: Vec<Note>,
        unknown_syscalls: Vec<UnknownSyscall>,
        stats: Stats,
    ) -> Self {
        Trace {
            regions,
            records,
            materialised: Materialised::default(),
            unsupported,
            notes,
            unknown_syscalls,
            stats,
            allocations: Vec::new(),
        }
    }

    /// Every access, in order.
    ///
    /// The trace keeps its accesses compact (about 33 bytes for a one-byte
    /// access); the first call of this method builds the `Access`es (about
    /// 160 bytes each) and keeps them. [`Trace::iter_accesses`],
    /// [`Trace::access_count`] and the contracts do not.
    pub fn accesses(&self) -> &[Access] {
        self.materialised
            .0
            .get_or_init(|| self.iter_accesses().map(|a| a.to_access()).collect())
    }

    /// Every access, in order, borrowed from the trace's compact storage.
    pub fn iter_accesses(&self) -> impl Iterator<Item = AccessRef<'_>> + '_ {
        self.records.iter().map(|s| self.view(s))
    }

    /// The number of accesses the trace holds: every access, or, for a
    /// call bounded by `Tracer::keep_accesses(Some(n))`, the first `n` and
    /// every out-of-bounds access after them (see
    /// [`Trace::dropped_accesses`]).
    pub fn access_count(&self) -> usize {
        self.records.len()
    }

    /// The accesses a bounded call made but did not keep in full (0 for an
    /// unbounded call). They are in [`Trace::read`], [`Trace::written`],
    /// [`Trace::maybe_written`] and the contracts on byte sets, which stay
    /// exact; they are not in [`Trace::accesses`] or the `Display` table.
    pub fn dropped_accesses(&self) -> u64 {
        self.records.bound().map_or(0, |b| b.dropped)
    }

    /// The bound of a call made with `Tracer::keep_accesses(Some(n))`: `n`.
    pub fn access_bound(&self) -> Option<u64> {
        self.records.bound().map(|b| b.keep)
    }

    /// Every access the call made, kept or not.
    pub fn total_accesses(&self) -> u64 {
        self.records.len() as u64 + self.dropped_accesses()
    }

    /// The exact summary of every access to the region at `index`, for a
    /// bounded trace.
    pub(crate) fn summary(&self, index: usize) -> Option<&super::store::Summary> {
        self.records.summary(index)
    }

    /// The bytes of memory the trace holds on the heap for its accesses:
    /// the compact records, the values, the distinct instructions and, once
    /// [`Trace::accesses`] has built them, the `Access`es.
    pub fn heap_bytes(&self) -> usize {
        let built = self.materialised.0.get().map_or(0, |v| {
            v.capacity() * size_of::<Access>()
                + v.iter()
                    .map(|a| {
                        a.bytes.capacity()
                            + a.insn.capacity()
                            + 8 * a.callers.capacity()
                            + a.syscall.as_ref().map_or(0, String::capacity)
                    })
                    .sum::<usize>()
        });
        self.records.heap_bytes() + built
    }

    /// One stored access as an [`AccessRef`].
    pub(crate) fn view<'a>(&'a self, s: Stored<'a>) -> AccessRef<'a> {
        let desc = s.region.and_then(|i| self.regions.get(i));
        AccessRef {
            kind: s.kind,
            region: desc.map(|d| d.id),
            offset: s.offset,
            len: s.len,
            bytes: s.bytes,
            tid: s.tid,
            ip: s.site.ip,
            insn: &s.site.insn,
            syscall: s.site.syscall.as_deref(),
            callers: s.callers,
            out_of_bounds: outside(desc, s.offset, s.len),
            region_index: s.region,
        }
    }

    /// The accesses to the region at `index` of the regions, in order.
    pub(crate) fn accesses_at(&self, index: usize) -> impl Iterator<Item = AccessRef<'_>> + '_ {
        self.iter_accesses()
            .filter(move |a| a.region_index == Some(index))
    }

    /// The index of `region` in the regions.
    pub(crate) fn region_index(&self, region: &impl Region) -> Option<usize> {
        let id = region.region_id();
        self.regions.iter().position(|r| r.id == id)
    }

    /// Every access to `region`, in order (out-of-bounds ones included).
    pub fn accesses_to(&self, region: &impl Region) -> Vec<&Access> {
        let id = region.region_id();
        self.accesses()
            .iter()
            .filter(|a| a.region == Some(id))
            .collect()
    }

    /// Instructions the tracer could not account for. A non-empty list means
    /// the trace is incomplete.
    pub fn unsupported(&self) -> &[Unsupported] {
        &self.unsupported
    }

    /// System calls on tracked memory whose effect the tracer does not know
    /// (they ran, but their accesses are missing from the trace).
    pub fn unknown_syscalls(&self) -> &[UnknownSyscall] {
        &self.unknown_syscalls
    }

    /// True if the trace is known to miss accesses: an unsupported
    /// instruction or an unknown system call touched tracked memory.
    pub fn is_incomplete(&self) -> bool {
        !self.unsupported.is_empty() || !self.unknown_syscalls.is_empty()
    }

    /// Notes on instructions that touched tracked pages without an access
    /// (`clflush`, for example), in order.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// What tracing this call cost.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The regions registered for the call.
    pub fn regions(&self) -> &[RegionDesc] {
        &self.regions
    }

    /// The description of one region, if it was registered for the call.
    pub fn region(&self, region: &impl Region) -> Option<&RegionDesc> {
        let id = region.region_id();
        self.regions.iter().find(|r| r.id == id)
    }

    fn ranges_of(&self, region: &impl Region, keep: impl Fn(AccessKind) -> bool) -> RangeSet {
        let Some(index) = self.region_index(region) else {
            return RangeSet::default();
        };
        if let Some(summary) = self.summary(index) {
            let runs = [AccessKind::Read, AccessKind::Write, AccessKind::MaybeWrite]
                .into_iter()
                .filter(|&k| keep(k))
                .flat_map(|k| summary.bytes(k));
            return RangeSet::from_unsorted(runs);
        }
        let len = self.regions[index].len as isize;
        RangeSet::from_unsorted(
            self.accesses_at(index)
                .filter(|a| keep(a.kind))
                .filter_map(|a| {
                    let r = a.range();
                    let (start, end) = (r.start.clamp(0, len), r.end.clamp(0, len));
                    (start < end).then_some(start as usize..end as usize)
                }),
        )
    }

    /// The bytes of `region` that were read, as offsets; bytes outside the
    /// region (out of bounds) are not included: see [`Trace::out_of_bounds`].
    pub fn read(&self, region: &impl Region) -> RangeSet {
        self.ranges_of(region, |k| k == AccessKind::Read)
    }

    /// The bytes of `region` that were certainly written.
    pub fn written(&self, region: &impl Region) -> RangeSet {
        self.ranges_of(region, |k| k == AccessKind::Write)
    }

    /// The bytes of `region` that may have been written by conditional stores.
    pub fn maybe_written(&self, region: &impl Region) -> RangeSet {
        self.ranges_of(region, |k| k == AccessKind::MaybeWrite)
    }

    /// Accesses that touched bytes outside their region: redzone before a
    /// buffer, guard bytes after it, or no region at all.
    pub fn out_of_bounds(&self) -> Vec<&Access> {
        // Without any, the `Access`es are not built.
        if !self.iter_accesses().any(|a| a.out_of_bounds) {
            return Vec::new();
        }
        self.accesses()
            .iter()
            .filter(|a| self.is_out_of_bounds(a))
            .collect()
    }

    /// True if `a` touched bytes outside its region (or is in no region).
    pub fn is_out_of_bounds(&self, a: &Access) -> bool {
        outside(a.region.and_then(|id| self.region(&id)), a.offset, a.len)
    }

    /// A short name for where an access went: `buf[0x2..0x4]`, `buf[-1..0]`;
    /// for a region with named fields, `cfg.level` when the access covers
    /// exactly one field, `cfg.level[0x1..0x2]` when it lies inside one.
    pub fn describe_location(&self, a: &Access) -> String {
        self.location(a.region.and_then(|id| self.region(&id)), a.range())
    }

    /// [`Trace::describe_location`] of an [`AccessRef`].
    pub fn describe_ref_location(&self, a: &AccessRef<'_>) -> String {
        self.location(a.region_index.and_then(|i| self.regions.get(i)), a.range())
    }

    fn location(&self, desc: Option<&RegionDesc>, r: Range<isize>) -> String {
        let name = desc.map_or("?", |d| d.name.as_str());
        if let Some(desc) = desc
            && r.start >= 0
            && let Some(f) = desc
                .fields
                .iter()
                .find(|f| r.start as usize >= f.offset && r.end as usize <= f.offset + f.len)
        {
            let (s, e) = (r.start as usize - f.offset, r.end as usize - f.offset);
            // Array elements join without a dot: `s[1].id`.
            let dot = if f.name.starts_with('[') { "" } else { "." };
            return if s == 0 && e == f.len {
                format!("{name}{dot}{}", f.name)
            } else {
                format!("{name}{dot}{}[{s:#x}..{e:#x}]", f.name)
            };
        }
        format!("{name}[{}..{}]", fmt_offset(r.start), fmt_offset(r.end))
    }

    /// The fields of `region`'s value (see [`RegionDesc::fields`]) and the
    /// padding between and after them that the call never certainly wrote,
    /// in offset order: the bytes Rust must not treat as initialised.
    /// Empty for a region without fields.
    pub fn unwritten_fields(&self, region: &impl Region) -> Vec<Unwritten> {
        let Some(desc) = self.region(region) else {
            return Vec::new();
        };
        if desc.fields.is_empty() {
            return Vec::new();
        }
        let written = self.written(region);
        let len = desc.len as usize;
        let mut parts: Vec<(String, Range<usize>, bool)> = Vec::new();
        let mut at = 0;
        for f in &desc.fields {
            if f.offset > at {
                parts.push(("padding".to_owned(), at..f.offset, true));
            }
            parts.push((f.name.clone(), f.offset..f.offset + f.len, false));
            at = at.max(f.offset + f.len);
        }
        if at < len {
            parts.push(("padding".to_owned(), at..len, true));
        }
        let mut out = Vec::new();
        for (name, bytes, padding) in parts {
            let mut run: Option<Range<usize>> = None;
            for b in bytes {
                if written.contains(b) {
                    if let Some(r) = run.take() {
                        out.push(Unwritten {
                            name: name.clone(),
                            bytes: r,
                            padding,
                        });
                    }
                } else {
                    run = Some(run.map_or(b..b + 1, |r| r.start..b + 1));
                }
            }
            if let Some(r) = run {
                out.push(Unwritten {
                    name,
                    bytes: r,
                    padding,
                });
            }
        }
        out
    }
}

fn fmt_offset(v: isize) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn hex_bytes(bytes: &[u8], len: usize) -> String {
    const SHOWN: usize = 16;
    let mut s: String = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    if len > SHOWN {
        s.push_str(" …");
    }
    s
}

impl fmt::Display for Trace {
    /// A table with one line per access: kind, location, length, bytes,
    /// instruction address (symbol+offset), the instruction and its source
    /// location when the code has debug info (`@ fill (c/fill.c:12)`);
    /// out-of-bounds rows end in `<- OUT OF BOUNDS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 6]> = self
            .iter_accesses()
            .map(|a| {
                [
                    a.kind.to_string(),
                    self.describe_ref_location(&a),
                    a.len.to_string(),
                    hex_bytes(a.bytes, a.len),
                    super::symbols::describe_ip(a.ip),
                    {
                        let mut insn = match a.syscall {
                            Some(name) => format!("{} {name} (by the kernel)", a.insn),
                            None => a.insn.to_owned(),
                        };
                        if let Some(source) = super::symbols::source_location(a.ip) {
                            insn.push_str("  @ ");
                            insn.push_str(&source);
                        }
                        if a.out_of_bounds {
                            format!("{insn}  <- OUT OF BOUNDS")
                        } else {
                            insn
                        }
                    },
                ]
            })
            .collect();
        let header = ["kind", "where", "len", "bytes", "at", "instruction"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 6]| -> fmt::Result {
            let [k, w, l, b, at, insn] = cells;
            writeln!(
                f,
                "  {k:<kw$}  {w:<ww$}  {l:>lw$}  {b:<bw$}  {at:<aw$}  {insn}",
                kw = widths[0],
                ww = widths[1],
                lw = widths[2],
                bw = widths[3],
                aw = widths[4],
            )
        };
        writeln!(
            f,
            "{} access(es), {} fault(s), {} stop(s), {} ptrace request(s)",
            self.access_count(),
            self.stats.faults,
            self.stats.stops,
            self.stats.ptrace_requests
        )?;
        if let Some(keep) = self.access_bound() {
            writeln!(
                f,
                "bounded: {} more access(es) not kept (the first {keep} and every out-of-bounds \
                 access are; byte sets and counts are exact; `keep_accesses(None)` keeps all)",
                self.dropped_accesses()
            )?;
        }
        let regions: Vec<String> = self
            .regions
            .iter()
            .map(|r| format!("`{}` {} bytes", r.name, r.len))
            .collect();
        writeln!(f, "regions: {}", regions.join(", "))?;
        line(f, header)?;
        for row in &rows {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]])?;
        }
        for a in &self.allocations {
            writeln!(f, "  ALLOC {}", super::alloc::describe_allocation(a))?;
        }
        for n in &self.notes {
            if n.insn.is_empty() {
                writeln!(f, "  NOTE: {}", n.text)?;
            } else {
                writeln!(
                    f,
                    "  NOTE at {} `{}`: {}",
                    super::symbols::describe_ip(n.ip),
                    n.insn,
                    n.text
                )?;
            }
        }
        for s in &self.unknown_syscalls {
            writeln!(
                f,
                "  UNKNOWN SYSCALL {} ({}) at {} = {}: ran with its pages open, its accesses are not recorded",
                s.name
                    .as_deref()
                    .unwrap_or("(not an x86-64 system call number)"),
                s.nr,
                super::symbols::describe_ip(s.ip),
                s.result
            )?;
        }
        for u in &self.unsupported {
            writeln!(
                f,
                "  UNSUPPORTED ×{} at {} `{}` [{}]: {}",
                u.count,
                super::symbols::describe_ip(u.ip),
                u.insn,
                hex_bytes(&u.insn_bytes, u.insn_bytes.len()),
                u.reason
            )?;
        }
        Ok(())
    }
}

/// A set of byte offsets, kept as sorted, merged, disjoint ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSet {
    ranges: Vec<Range<usize>>,
}

impl RangeSet {
    /// The ranges: sorted, merged (adjacent ranges join), disjoint.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// True if no byte is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of bytes in the set.
    pub fn byte_count(&self) -> usize {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// True if `offset` is in the set.
    pub fn contains(&self, offset: usize) -> bool {
        self.ranges.iter().any(|r| r.contains(&offset))
    }

    /// Adds a range, keeping the set sorted and merged.
    pub fn insert(&mut self, range: Range<usize>) {
        if range.start >= range.end {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for r in self.ranges.drain(..) {
            if r.end < start || r.start > end {
                kept.push(r);
            } else {
                start = start.min(r.start);
                end = end.max(r.end);
            }
        }
        kept.push(start..end);
        kept.sort_by_key(|r| r.start);
        self.ranges = kept;
    }
}

impl RangeSet {
    /// The set of `ranges` in any order: runs of adjacent or overlapping
    /// ranges in a row are joined as they come, the rest sorted and merged
    /// once (not one insertion each).
    pub(crate) fn from_unsorted(ranges: impl IntoIterator<Item = Range<usize>>) -> RangeSet {
        let mut runs: Vec<Range<usize>> = Vec::new();
        for r in ranges {
            if r.start >= r.end {
                continue;
            }
            match runs.last_mut() {
                Some(last) if r.start <= last.end && r.end >= last.start => {
                    last.start = last.start.min(r.start);
                    last.end = last.end.max(r.end);
                }
                _ => runs.push(r),
            }
        }
        runs.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(runs.len());
        for r in runs {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        RangeSet { ranges: merged }
    }
}

impl FromIterator<Range<usize>> for RangeSet {
    fn from_iter<I: IntoIterator<Item = Range<usize>>>(iter: I) -> Self {
        let mut set = RangeSet::default();
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl Trace {
    /// The allocator calls native code made during the call, in order (see
    /// [`Allocation::after_accesses`](super::alloc::Allocation::after_accesses) for their place among the accesses).
    /// Calls an allocator function makes itself (`realloc` calling
    /// `malloc`) are not listed; `strdup`'s `malloc` is.
    pub fn allocations(&self) -> &[super::alloc::Allocation] {
        &self.allocations
    }

    /// The blocks allocated during the call and not freed by its end, in
    /// address order.
    pub fn unfreed(&self) -> Vec<&super::alloc::Allocation> {
        super::alloc::live_after(&self.allocations)
            .into_values()
            .collect()
    }

    /// The `free`/`realloc` calls on memory the allocator does not own
    /// (buffers, tracked ranges): not executed, and a failure of
    /// `Tracer::call` unless the test allows them.
    pub fn foreign_frees(&self) -> Vec<&super::alloc::Allocation> {
        self.allocations
            .iter()
            .filter(|a| a.foreign.is_some())
            .collect()
    }

    /// Sets the allocations (used by the supervisor).
    pub(crate) fn set_allocations(&mut self, allocations: Vec<super::alloc::Allocation>) {
        self.allocations = allocations;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_adjacent_and_overlapping_ranges() {
        let set: RangeSet = [4..6, 0..2, 2..3, 5..9, 12..13].into_iter().collect();
        assert_eq!(set.ranges(), &[0..3, 4..9, 12..13]);
        assert_eq!(set.byte_count(), 9);
        assert!(set.contains(8) && !set.contains(9));
    }

    #[test]
    fn range_set_from_unsorted_ranges_equals_one_insertion_each() {
        let parts = [9..12, 0..1, 1..2, 2..3, 20..21, 5..7, 6..9, 30..30, 19..20];
        let inserted: RangeSet = parts.iter().cloned().collect();
        let merged = RangeSet::from_unsorted(parts);
        assert_eq!(merged, inserted);
        assert_eq!(merged.ranges(), &[0..3, 5..12, 19..21]);
    }

    /// A trace of `n` one-byte writes to `out[0..n]` by one instruction.
    fn trace_of_writes(n: usize) -> Trace {
        use super::super::store::{Origin, Place};
        let region = RegionDesc {
            id: RegionId(7),
            name: "out".to_owned(),
            kind: RegionKind::Buffer,
            start: 0x10_0000,
            len: n as u64,
            span_start: 0x0f_f000,
            span_len: 0x3000,
            fields: Vec::new(),
        };
        let mut records = Records::default();
        let origin = Origin {
            ip: 0x1234,
            insn: "mov [rdi],dl",
            syscall: None,
        };
        for i in 0..n {
            let place = Place {
                kind: AccessKind::Write,
                region: Some(0),
                offset: i as isize,
                len: 1,
                tid: 9,
            };
            let _ = records.push(place, &origin, Ok(&[0xab]));
        }
        Trace::new(
            vec![region],
            records,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Stats::default(),
        )
    }

    #[test]
    fn contracts_byte_sets_and_snapshots_do_not_build_accesses() {
        let trace = trace_of_writes(100);
        let compact = trace.heap_bytes();
        let _ = trace
            .expect(&RegionId(7))
            .writes_exactly(0..100)
            .reads_nothing()
            .stays_in_bounds();
        trace.expect_no_out_of_bounds();
        assert!(trace.out_of_bounds().is_empty());
        assert_eq!(trace.written(&RegionId(7)).byte_count(), 100);
        assert_eq!(trace.written(&RegionId(7)).ranges().len(), 1);
        assert_eq!(trace.access_count(), 100);
        assert_eq!(trace.snapshot().lines().count(), 101);
        assert_eq!(trace.heap_bytes(), compact);
    }

    #[test]
    fn accesses_are_built_once_with_every_field_as_recorded() {
        let trace = trace_of_writes(3);
        let compact = trace.heap_bytes();
        let a = &trace.accesses()[2];
        assert_eq!(
            *a,
            Access {
                kind: AccessKind::Write,
                region: Some(RegionId(7)),
                offset: 2,
                len: 1,
                bytes: vec![0xab],
                tid: 9,
                ip: 0x1234,
                insn: "mov [rdi],dl".to_owned(),
                syscall: None,
                callers: Vec::new(),
            }
        );
        assert!(std::ptr::eq(trace.accesses(), trace.accesses()));
        assert!(trace.heap_bytes() > compact);
        assert_eq!(trace.clone(), trace);
    }

    #[test]
    fn range_set_ignores_empty_ranges() {
        let mut set = RangeSet::default();
        set.insert(3..3);
        assert!(set.is_empty());
    }
}
