//! What a test holds: the [`Tracer`], its guarded [`Buffer`]s and
//! [`Tracked`] ranges.

use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use crate::buffer::{Buffer, BufferInner};
use crate::during::During;
use crate::typed::{Fields, Typed, TypedSlice};
use std::collections::BTreeMap;

use traced_ffi_runtime::{
    AllocError, AllocFn, AllocTracing, Allocation, CallError, CodeCache, Declared, Field,
    GuardedMapping, PAGE_SIZE, Protection, Recording, Region, RegionDesc, RegionId, RegionKind,
    Trace, describe_ip, page_floor, page_protection, source_location,
};

/// Region ids are unique within the process.
static NEXT_REGION: AtomicU32 = AtomicU32::new(1);

fn next_region_id() -> RegionId {
    RegionId(NEXT_REGION.fetch_add(1, Ordering::Relaxed))
}

/// Memory the test did not get from the arena, tracked during calls.
/// Returned by [`Tracer::track`].
#[derive(Debug, Clone)]
pub struct Tracked {
    id: RegionId,
    name: String,
    addr: u64,
    len: usize,
}

impl Tracked {
    /// The name the test gave the range.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the first tracked byte.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

impl Region for Tracked {
    fn region_id(&self) -> RegionId {
        self.id
    }
}

#[derive(Debug)]
enum Entry {
    Buffer(Weak<BufferInner>),
    Tracked {
        desc: RegionDesc,
        restore: Vec<Protection>,
    },
}

/// The handle a `#[traced_ffi]` test receives: makes buffers and runs
/// traced calls.
#[derive(Debug)]
pub struct Tracer {
    test: String,
    entries: Vec<Entry>,
    allow_unsupported: bool,
    /// Whether a free of a buffer (or tracked memory) fails the call.
    allow_foreign_free: bool,
    /// Whether calls record the allocator's calls.
    trace_allocations: bool,
    /// Whether hot loops may run in the code cache, and for how long.
    code_cache: CodeCache,
    /// Accesses a call keeps in full (`None`: all).
    keep_accesses: Option<u64>,
    /// Contracts declared before the calls (`expect_during`), one per
    /// region.
    declared: Vec<Declared>,
    /// Blocks native code allocated in this test's calls and has not freed
    /// (as far as the calls saw), by address.
    live: BTreeMap<u64, Allocation>,
    /// Traced calls made so far.
    calls: usize,
    /// Trace files written for this test (see `TRACED_FFI_TRACE_DIR`).
    trace_files: Vec<std::path::PathBuf>,
}

impl Tracer {
    /// A tracer for the test named `test`.
    pub fn new(test: impl Into<String>) -> Self {
        Tracer {
            test: test.into(),
            entries: Vec::new(),
            allow_unsupported: false,
            allow_foreign_free: false,
            trace_allocations: true,
            code_cache: CodeCache::default(),
            keep_accesses: None,
            declared: Vec::new(),
            live: BTreeMap::new(),
            calls: 0,
            trace_files: Vec::new(),
        }
    }

    /// The trace files this test's calls wrote, when `TRACED_FFI_TRACE_DIR`
    /// names a directory (one JSON file per call; see the README).
    pub fn trace_files(&self) -> &[std::path::PathBuf] {
        &self.trace_files
    }

    /// The name of the test this tracer belongs to.
    pub fn test_name(&self) -> &str {
        &self.test
    }

    /// A zeroed guarded buffer of `len` bytes.
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped (see [`Tracer::try_buffer`]).
    #[track_caller]
    pub fn buffer(&mut self, name: &str, len: usize) -> Buffer {
        match self.try_buffer(name, len) {
            Ok(b) => b,
            Err(e) => panic!("test `{}`: failed to {e}: {}", self.test, e.source),
        }
    }

    /// A zeroed guarded buffer of `len` bytes, or why it cannot be mapped.
    #[track_caller]
    pub fn try_buffer(&mut self, name: &str, len: usize) -> Result<Buffer, AllocError> {
        self.try_buffer_with(name, len, 1, Vec::new())
    }

    /// A zeroed guarded buffer of `len` bytes whose first byte is aligned to
    /// `align` (a power of two, at most the page size). Its last byte is
    /// against the guard page when `len` is a multiple of `align`.
    ///
    /// # Panics
    ///
    /// If `align` is not such a power of two, or the memory cannot be mapped.
    #[track_caller]
    pub fn buffer_aligned(&mut self, name: &str, len: usize, align: usize) -> Buffer {
        match self.try_buffer_with(name, len, align, Vec::new()) {
            Ok(b) => b,
            Err(e) => panic!("test `{}`: failed to {e}: {}", self.test, e.source),
        }
    }

    /// A `T` holding `init` on guarded pages, aligned for `T` (its last byte
    /// against the guard page when the size is a multiple of the
    /// alignment). Traces name its fields (see [`Fields`]).
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped.
    #[track_caller]
    pub fn value<T: Fields>(&mut self, name: &str, init: T) -> Typed<T> {
        let buffer = match self.try_buffer_with(name, size_of::<T>(), align_of::<T>(), T::fields())
        {
            Ok(b) => b,
            Err(e) => panic!("test `{}`: failed to {e}: {}", self.test, e.source),
        };
        let mut typed = Typed {
            buffer,
            ty: PhantomData,
        };
        *typed = init;
        typed
    }

    /// `n` zeroed values of `T` on guarded pages, aligned for `T`. Traces
    /// name each element's fields (`name[i].field`) when `T` has fields.
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped.
    #[track_caller]
    pub fn slice<T: Fields>(&mut self, name: &str, n: usize) -> TypedSlice<T> {
        let inner = T::fields();
        let size = size_of::<T>();
        let fields: Vec<Field> = (0..n)
            .flat_map(|i| {
                inner.iter().map(move |f| Field {
                    name: format!("[{i}].{}", f.name),
                    offset: i * size + f.offset,
                    len: f.len,
                })
            })
            .collect();
        let buffer = match self.try_buffer_with(name, n * size, align_of::<T>(), fields) {
            Ok(b) => b,
            Err(e) => panic!("test `{}`: failed to {e}: {}", self.test, e.source),
        };
        TypedSlice {
            buffer,
            len: n,
            ty: PhantomData,
        }
    }

    #[track_caller]
    fn try_buffer_with(
        &mut self,
        name: &str,
        len: usize,
        align: usize,
        fields: Vec<Field>,
    ) -> Result<Buffer, AllocError> {
        let inner = Arc::new(BufferInner {
            id: next_region_id(),
            name: name.to_owned(),
            map: GuardedMapping::with_align(name, len, align)?.made_at({
                let at = Location::caller();
                format!("{}:{}", at.file(), at.line())
            }),
            fields,
        });
        self.entries
            .retain(|e| !matches!(e, Entry::Buffer(w) if w.strong_count() == 0));
        self.entries.push(Entry::Buffer(Arc::downgrade(&inner)));
        Ok(Buffer { inner })
    }

    /// A guarded buffer holding a copy of `data`.
    #[track_caller]
    pub fn buffer_from(&mut self, name: &str, data: &[u8]) -> Buffer {
        let mut b = self.buffer(name, data.len());
        b.copy_from_slice(data);
        b
    }

    /// Tracks `len` bytes at `ptr` that did not come from the arena (a
    /// struct returned by C, a `Vec`). During calls their pages are
    /// protected; accesses to the tracked bytes are recorded, accesses to
    /// other bytes of those pages are executed but not recorded.
    ///
    /// # Safety
    ///
    /// The pages holding `ptr..ptr+len` must stay mapped for the tracer's
    /// life, and no thread other than the one calling [`Tracer::call`] may
    /// touch them (the calling thread's stack included) while a call runs:
    /// they are `PROT_NONE` then.
    pub unsafe fn track(&mut self, name: &str, ptr: *const u8, len: usize) -> Tracked {
        let addr = ptr as u64;
        let span_start = page_floor(addr);
        let span_end = page_floor(addr + len.max(1) as u64 - 1) + PAGE_SIZE as u64;
        let mut restore: Vec<Protection> = Vec::new();
        let mut page = span_start;
        while page < span_end {
            let prot = page_protection(page).unwrap_or(libc::PROT_READ | libc::PROT_WRITE);
            match restore.last_mut() {
                Some((s, l, p)) if *p == prot && *s + *l == page => *l += PAGE_SIZE as u64,
                _ => restore.push((page, PAGE_SIZE as u64, prot)),
            }
            page += PAGE_SIZE as u64;
        }
        let id = next_region_id();
        let desc = RegionDesc {
            id,
            name: name.to_owned(),
            kind: RegionKind::Tracked,
            start: addr,
            len: len as u64,
            span_start,
            span_len: span_end - span_start,
            fields: Vec::new(),
        };
        self.entries.push(Entry::Tracked { desc, restore });
        Tracked {
            id,
            name: name.to_owned(),
            addr,
            len,
        }
    }

    /// Tracks a block native code allocated in an earlier call (from
    /// [`Trace::allocations`](traced_ffi_runtime::Trace::allocations) or
    /// [`Tracer::live_allocations`]): its `size` bytes at its address, so a
    /// later call's accesses to C's own state are recorded. Freeing it in a
    /// later call is not a foreign free while it is one of this test's live
    /// blocks.
    ///
    /// # Safety
    /// As [`Tracer::track`]: the block must stay allocated while tracked
    /// (untrack it before the call that frees it, or in that call's
    /// aftermath before any other call), and no other thread may touch its
    /// pages during a call.
    pub unsafe fn track_allocation(&mut self, name: &str, block: &Allocation) -> Tracked {
        // SAFETY: the caller's promise, as for `track`.
        unsafe { self.track(name, block.result as *const u8, block.size as usize) }
    }

    /// Stops tracking a range returned by [`Tracer::track`].
    pub fn untrack(&mut self, tracked: &Tracked) {
        self.entries
            .retain(|e| !matches!(e, Entry::Tracked { desc, .. } if desc.id == tracked.id));
        self.declared.retain(|d| d.region != tracked.id);
    }

    /// Lets hot code run in the code cache (the default): an instruction
    /// that faults a second time has the loop around it translated into
    /// code that records its own accesses, one stop per entry into the loop
    /// instead of one per access. The trace is the same either way; `false`
    /// forces the per-instruction path for this tracer's calls, as the
    /// environment variable `TRACED_FFI_CACHE=off` does for the process.
    ///
    /// ```no_run
    /// # let mut t = traced_ffi::Tracer::new("doc");
    /// t.use_code_cache(false);
    /// ```
    pub fn use_code_cache(&mut self, on: bool) {
        self.code_cache.enabled = on;
    }

    /// How many backward branches a translated loop takes before it leaves
    /// the code cache (and, in a call with several threads, lets the others
    /// run: they are stopped while one runs translated code). A loop that
    /// waits for another thread of the call needs a budget small enough
    /// that the wait is short; the default (2^18, or the environment's
    /// `TRACED_FFI_CACHE_BUDGET`) suits loops that do work. 0 restores the
    /// default.
    ///
    /// ```no_run
    /// # let mut t = traced_ffi::Tracer::new("doc");
    /// t.cache_budget(1000);
    /// ```
    pub fn cache_budget(&mut self, branches: u64) {
        self.code_cache.budget = branches;
    }

    /// Bounds the memory a call's trace takes: with `Some(n)`, the trace
    /// keeps the first `n` accesses in full (about 33 bytes each), and every
    /// out-of-bounds access after them; of every access it keeps exact
    /// per-region summaries (bytes read, written, maybe written, reads per
    /// byte, accesses per kind: about 17 KiB per 4 KiB of a region
    /// touched). [`Trace::read`](traced_ffi_runtime::Trace::read),
    /// `written`, `maybe_written` and the contracts `writes_exactly`,
    /// `writes_nothing`, `reads_exactly`, `reads_nothing`, `initialises`,
    /// `initialises_every_field`, `stays_in_bounds`,
    /// `reads_each_byte_at_most` and `expect_no_out_of_bounds` stay exact;
    /// `reads_only_after_writing`, which needs every access in order, fails
    /// saying so when accesses were dropped.
    /// [`Trace::dropped_accesses`](traced_ffi_runtime::Trace::dropped_accesses)
    /// counts the accesses not kept. `None` (the default) keeps every
    /// access.
    ///
    /// ```no_run
    /// # let mut t = traced_ffi::Tracer::new("doc");
    /// t.keep_accesses(Some(10_000));
    /// ```
    pub fn keep_accesses(&mut self, n: Option<u64>) {
        self.keep_accesses = n;
    }

    /// Declares contracts on `region` for every later call (while the
    /// region lives): the supervisor checks each access against them as it
    /// records it and keeps the native callers of those that break one, and
    /// each call then checks them on its trace and fails the test, at the
    /// call's line, with the explanation, in which each offending access
    /// says which functions called the code that made it.
    ///
    /// The same contracts stated after the call on the trace
    /// ([`Trace::expect`](traced_ffi_runtime::Trace::expect)) check the same
    /// bytes, but their offending accesses have callers only when they are
    /// out of bounds: the stack is gone once the call has returned.
    ///
    /// ```no_run
    /// # let mut t = traced_ffi::Tracer::new("doc");
    /// let out = t.buffer("out", 64);
    /// t.expect_during(&out).writes_only(0..16).reads_nothing();
    /// ```
    #[must_use = "a declaration is made by the contract methods of what this returns"]
    pub fn expect_during(&mut self, region: &impl Region) -> During<'_> {
        let id = region.region_id();
        let index = match self.declared.iter().position(|d| d.region == id) {
            Some(i) => i,
            None => {
                self.declared.push(Declared::new(id));
                self.declared.len() - 1
            }
        };
        During::new(&mut self.declared[index])
    }

    /// The contracts declared with [`Tracer::expect_during`], one entry per
    /// region, for
    /// [`Trace::expect_declared`](traced_ffi_runtime::Trace::expect_declared)
    /// after a [`Tracer::try_call`].
    pub fn declarations(&self) -> &[Declared] {
        &self.declared
    }

    /// Lets calls whose trace has [`Unsupported`](traced_ffi_runtime::Unsupported)
    /// entries return normally instead of failing the test.
    pub fn allow_unsupported(&mut self, allow: bool) {
        self.allow_unsupported = allow;
    }

    /// Lets calls in which native code freed (or reallocated) a buffer or
    /// tracked memory return normally instead of failing the test. The free
    /// is still not executed, and is listed in
    /// [`Trace::foreign_frees`](traced_ffi_runtime::Trace::foreign_frees).
    pub fn allow_foreign_free(&mut self, allow: bool) {
        self.allow_foreign_free = allow;
    }

    /// Whether calls record the allocator calls native code makes (on by
    /// default). Off, `malloc`/`free` cost nothing extra, frees of buffers
    /// are not caught, and [`Trace::allocations`] is empty.
    pub fn trace_allocations(&mut self, on: bool) {
        self.trace_allocations = on;
    }

    /// The blocks native code allocated in this test's calls and that no
    /// later call freed, in address order: after a `create()`/`destroy()`
    /// pair, empty. Blocks allocated before the test's first call, or by
    /// Rust code outside calls, are never listed (their frees are ignored).
    pub fn live_allocations(&self) -> Vec<Allocation> {
        self.live.values().cloned().collect()
    }

    /// Runs `f` (the native call) with every live buffer and tracked range
    /// protected, and returns its result with the ordered accesses it made.
    ///
    /// # Panics
    ///
    /// If tracing is unavailable or fails (the message names the test, the
    /// call and the cause; a call made inside another call's closure on the
    /// same thread fails at once, naming where that call started), if `f`
    /// panics (after the pages are restored), or
    /// if the trace has unsupported instructions and
    /// [`Tracer::allow_unsupported`] was not set, or if native code freed a
    /// buffer or tracked memory (not executed) and
    /// [`Tracer::allow_foreign_free`] was not set, or if a contract
    /// declared with [`Tracer::expect_during`] is broken.
    ///
    /// The allocator calls made inside `f` are recorded
    /// ([`Trace::allocations`](traced_ffi_runtime::Trace::allocations)):
    /// native code's, and those of any Rust code `f` runs besides the native
    /// call (keep `f` to the call itself).
    #[track_caller]
    pub fn call<R>(&mut self, f: impl FnOnce() -> R) -> (R, Trace) {
        let caller = Location::caller();
        match self.call_at(caller, f) {
            Ok((r, trace)) => {
                if !self.allow_foreign_free
                    && let Some(first) = trace.foreign_frees().first()
                {
                    panic!(
                        "test `{}`: traced call at {}:{}: {}; the `{}` was not executed\n{trace}\n\
                         hint: call `t.allow_foreign_free(true)` if the test means it",
                        self.test,
                        caller.file(),
                        caller.line(),
                        foreign_free_message(first),
                        first.function,
                    );
                }
                if !self.allow_unsupported && trace.is_incomplete() {
                    panic!(
                        "test `{}`: traced call at {}:{}: {} instruction(s) and {} system \
                         call(s) could not be traced exactly, so the trace is incomplete:\n\
                         {trace}\nhint: call `t.allow_unsupported(true)` to accept an \
                         incomplete trace",
                        self.test,
                        caller.file(),
                        caller.line(),
                        trace.unsupported().len(),
                        trace.unknown_syscalls().len()
                    );
                }
                trace.expect_declared(&self.declared);
                (r, trace)
            }
            Err(e) => panic!(
                "test `{}`, traced call at {}:{}: failed to {}",
                self.test,
                caller.file(),
                caller.line(),
                error_chain(&e)
            ),
        }
    }

    /// Like [`Tracer::call`], but returns tracing errors instead of
    /// panicking, and never fails because of unsupported instructions or
    /// foreign frees (see [`Trace::foreign_frees`](traced_ffi_runtime::Trace::foreign_frees)).
    /// Nor does it check the contracts declared with
    /// [`Tracer::expect_during`] (their broken accesses still carry their
    /// callers): `trace.expect_declared(t.declarations())` does.
    #[track_caller]
    pub fn try_call<R>(&mut self, f: impl FnOnce() -> R) -> Result<(R, Trace), CallError> {
        self.call_at(Location::caller(), f)
    }

    fn call_at<R>(
        &mut self,
        caller: &Location<'_>,
        f: impl FnOnce() -> R,
    ) -> Result<(R, Trace), CallError> {
        let call = format!("{}:{}", caller.file(), caller.line());
        let mut alive: Vec<Arc<BufferInner>> = Vec::new();
        let mut regions = Vec::new();
        let mut restore = Vec::new();
        for entry in &self.entries {
            match entry {
                Entry::Buffer(weak) => {
                    if let Some(inner) = weak.upgrade() {
                        let mut desc = inner.map.region(inner.id, &inner.name);
                        desc.fields.clone_from(&inner.fields);
                        regions.push(desc);
                        restore.push(inner.map.restore());
                        alive.push(inner);
                    }
                }
                Entry::Tracked { desc, restore: r } => {
                    regions.push(desc.clone());
                    restore.extend_from_slice(r);
                }
            }
        }
        let alloc = AllocTracing {
            enabled: self.trace_allocations,
            native_blocks: self.live.keys().copied().collect(),
        };
        let active = traced_ffi_runtime::begin_call(
            &self.test,
            &call,
            regions,
            restore,
            alloc,
            self.code_cache,
            Recording {
                keep_accesses: self.keep_accesses,
                declared: self.declared.clone(),
            },
        )?;
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        let trace = active.end();
        drop(alive);
        match result {
            Ok(r) => {
                let trace = trace?;
                self.calls += 1;
                self.follow_allocations(&trace);
                if let Some(dir) = crate::trace_file::trace_dir() {
                    match crate::trace_file::write(&dir, &self.test, self.calls, &call, &trace) {
                        Ok(path) => self.trace_files.push(path),
                        Err(e) => panic!(
                            "test `{}`, traced call at {call}: cannot write its trace file into \
                             {} (TRACED_FFI_TRACE_DIR): {e}",
                            self.test,
                            dir.display()
                        ),
                    }
                }
                Ok((r, trace))
            }
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

impl Tracer {
    /// Updates the test's live blocks with one call's allocator calls.
    fn follow_allocations(&mut self, trace: &Trace) {
        for a in trace.allocations() {
            if let Some(p) = a.released() {
                self.live.remove(&p);
            }
            if a.allocated() {
                self.live.insert(a.result, a.clone());
            }
        }
    }
}

/// `native code freed buffer `out` (offset 0) at free_it+0x4 (c/alloc.c:9)`.
fn foreign_free_message(a: &Allocation) -> String {
    let verb = match a.function {
        AllocFn::Free => "freed",
        _ => "reallocated",
    };
    let what = a
        .foreign
        .as_ref()
        .map_or_else(|| format!("{:#x}", a.ptr), |f| f.describe(a.ptr));
    let mut site = describe_ip(a.site);
    if let Some(source) = source_location(a.site) {
        site.push_str(&format!(" ({source})"));
    }
    format!("native code {verb} {what} at {site}")
}

/// `error: cause: cause` on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
