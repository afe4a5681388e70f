//! Allocator calls made by native code during a call: recorded in order with the
//! accesses (function, size, block, calling instruction, thread), blocks left listed
//! per call and per test, frees of buffers and tracked memory caught and not executed.

use std::ffi::{CStr, c_void};

use traced_ffi::{
    AccessKind, AllocFn, Allocation, ForeignFree, ForeignKind, Region, Tracer, describe_ip,
    source_location, traced_ffi,
};
use traced_ffi_fixtures::alloc::{self, site_line};

use crate::contracts::panic_message_of;

/// Checks that `a` was called from `function` on the line of `c/alloc.c` marked
/// `marker`.
#[track_caller]
fn assert_site(a: &Allocation, function: &str, marker: &str) {
    assert_site_at(a, function, &format!("c/alloc.c:{}", site_line(marker)));
}

/// Checks that `a` was called from `function` at `line` (`file:line`).
#[track_caller]
fn assert_site_at(a: &Allocation, function: &str, line: &str) {
    let at = describe_ip(a.site);
    assert!(
        at.starts_with(&format!("{function}+0x")),
        "{a:?} is called at {at}, not in {function}"
    );
    let source = source_location(a.site).unwrap_or_default();
    assert!(
        source.contains(line),
        "{a:?} at {at} is on {source}, not {line}"
    );
}

/// True if `a` lies in the same mapping of this process as `b`.
fn in_mapping_of(a: u64, b: u64) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines().any(|line| {
        let range = line.split_whitespace().next().unwrap_or("");
        let Some((lo, hi)) = range.split_once('-') else {
            return false;
        };
        let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) else {
            return false;
        };
        (lo..hi).contains(&a) && (lo..hi).contains(&b)
    })
}

fn this_thread() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[traced_ffi]
fn malloc_and_free_in_one_call_are_recorded_in_order_with_the_accesses(t: &mut Tracer) {
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes; n >= 1.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 24) });
    assert_eq!(r, 0);
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 2, "{trace}");
    let (m, f) = (&allocs[0], &allocs[1]);
    assert_eq!(
        (m.function, m.size, m.align, m.ptr, m.tid),
        (AllocFn::Malloc, 24, 0, 0, this_thread())
    );
    assert_ne!(m.result, 0);
    assert_eq!(
        (f.function, f.size, f.ptr, f.result, f.tid),
        (AllocFn::Free, 0, m.result, 0, this_thread())
    );
    assert_site(m, "alloc_malloc_free", "malloc_free.malloc");
    assert_site(f, "alloc_malloc_free", "malloc_free.free");
    // out[0] is written between the malloc and the free, out[1] after the free.
    let writes: Vec<(AccessKind, isize)> = trace
        .accesses()
        .iter()
        .map(|a| (a.kind, a.offset))
        .collect();
    assert_eq!(writes, [(AccessKind::Write, 0), (AccessKind::Write, 1)]);
    assert_eq!((m.after_accesses, f.after_accesses), (0, 1));
    assert!(m.foreign.is_none() && f.foreign.is_none());
    assert!(trace.unfreed().is_empty(), "{trace}");
    // Entry and return of malloc, entry of free.
    assert_eq!(trace.stats().allocator_stops, 3, "{:?}", trace.stats());
    assert!(t.live_allocations().is_empty());
    assert_eq!(&out[..], &[7, 9]);
}

#[traced_ffi]
fn a_call_without_allocations_records_none_and_stops_nowhere_else(t: &mut Tracer) {
    let mut out = t.buffer("out", 2);
    let ((), trace) = t.call(|| {
        // SAFETY: a plain store into the buffer.
        unsafe { out.as_mut_ptr().write_volatile(1) }
    });
    assert!(trace.allocations().is_empty(), "{trace}");
    assert_eq!(trace.stats().allocator_stops, 0);
    assert_eq!(trace.accesses().len(), 1);
}

#[traced_ffi]
fn strdup_returned_by_one_call_and_freed_by_a_later_one_pairs_across_calls(t: &mut Tracer) {
    let s = t.buffer_from("s", b"hello\0");
    // SAFETY: s is NUL-terminated.
    let (p, trace) = t.call(|| unsafe { alloc::alloc_strdup(s.as_ptr().cast()) });
    assert!(!p.is_null());
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    let m = &allocs[0];
    assert_eq!(
        (m.function, m.size, m.result, m.tid),
        (AllocFn::Malloc, 6, p as u64, this_thread())
    );
    // strdup's own malloc: called inside libc's strdup, after it measured `s`.
    assert!(
        describe_ip(m.site).contains("strdup+0x"),
        "{}",
        describe_ip(m.site)
    );
    assert!(m.after_accesses >= 1, "strlen read `s` first\n{trace}");
    let unfreed = trace.unfreed();
    assert_eq!(unfreed.len(), 1);
    assert_eq!(unfreed[0].result, p as u64);
    let live = t.live_allocations();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].result, live[0].size), (p as u64, 6));
    // SAFETY: strdup returned a NUL-terminated copy.
    assert_eq!(unsafe { CStr::from_ptr(p) }.to_bytes(), b"hello");

    // SAFETY: p came from strdup.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(p.cast()) });
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    assert_eq!(
        (allocs[0].function, allocs[0].ptr),
        (AllocFn::Free, p as u64)
    );
    assert_site(&allocs[0], "alloc_free", "free");
    assert!(allocs[0].foreign.is_none());
    assert!(trace.unfreed().is_empty());
    assert!(
        t.live_allocations().is_empty(),
        "{:?}",
        t.live_allocations()
    );
}

#[traced_ffi]
fn a_leaked_block_is_listed_with_its_size_and_site(t: &mut Tracer) {
    // SAFETY: leaks 40 bytes (freed below, outside any call).
    let ((), trace) = t.call(|| unsafe { alloc::alloc_leak_one(40) });
    let allocs = trace.allocations();
    let got: Vec<(AllocFn, u64)> = allocs.iter().map(|a| (a.function, a.size)).collect();
    assert_eq!(
        got,
        [
            (AllocFn::Malloc, 40),
            (AllocFn::Malloc, 80),
            (AllocFn::Free, 0)
        ],
        "{trace}"
    );
    assert_eq!(allocs[2].ptr, allocs[1].result);
    assert_site(&allocs[0], "alloc_leak_one", "leak.kept");
    assert_site(&allocs[1], "alloc_leak_one", "leak.freed");
    assert_site(&allocs[2], "alloc_leak_one", "leak.free");
    let unfreed = trace.unfreed();
    assert_eq!(unfreed.len(), 1);
    assert_eq!((unfreed[0].result, unfreed[0].size), (allocs[0].result, 40));
    assert_site(unfreed[0], "alloc_leak_one", "leak.kept");
    let live = t.live_allocations();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].result, allocs[0].result);
    // SAFETY: the leaked block came from malloc; the tracer never sees this free.
    unsafe { alloc::c_free(allocs[0].result as *mut c_void) };
}

#[traced_ffi]
fn realloc_many_times_chains_each_block_to_the_next(t: &mut Tracer) {
    const TIMES: usize = 10;
    // SAFETY: returns a block the test frees.
    let (p, trace) = t.call(|| unsafe { alloc::alloc_realloc_many(TIMES) });
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), TIMES, "{trace}");
    let mut previous = 0;
    for (i, a) in allocs.iter().enumerate() {
        assert_eq!(
            (a.function, a.size, a.ptr),
            (AllocFn::Realloc, 32 * (i as u64 + 1), previous),
            "call {i}\n{trace}"
        );
        assert_ne!(a.result, 0);
        assert_site(a, "alloc_realloc_many", "realloc_many");
        previous = a.result;
    }
    assert_eq!(previous, p as u64);
    let unfreed = trace.unfreed();
    assert_eq!(unfreed.len(), 1);
    assert_eq!((unfreed[0].result, unfreed[0].size), (p as u64, 320));
    // SAFETY: p came from realloc.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(p) });
    assert_eq!(trace.allocations().len(), 1);
    assert!(t.live_allocations().is_empty());
}

#[traced_ffi]
fn calloc_posix_memalign_and_aligned_alloc_record_size_alignment_and_block(t: &mut Tracer) {
    // SAFETY: returns a block the test frees.
    let (c, trace) = t.call(|| unsafe { alloc::alloc_calloc(3, 20) });
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    assert_eq!(
        (allocs[0].function, allocs[0].size, allocs[0].result),
        (AllocFn::Calloc, 60, c as u64)
    );
    assert_site(&allocs[0], "alloc_calloc", "calloc");

    let mut slot = t.buffer("slot", 8);
    // SAFETY: slot holds a pointer.
    let (r, trace) =
        t.call(|| unsafe { alloc::alloc_posix_memalign(slot.as_mut_ptr().cast(), 64, 100) });
    assert_eq!(r, 0);
    let block = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    let a = &allocs[0];
    assert_eq!(
        (a.function, a.align, a.size, a.result),
        (AllocFn::PosixMemalign, 64, 100, block)
    );
    assert_eq!(block % 64, 0);
    assert_site(a, "alloc_posix_memalign", "posix_memalign");
    // posix_memalign stored the block into `slot` before returning.
    let writes: Vec<(AccessKind, isize, usize)> = trace
        .accesses()
        .iter()
        .map(|a| (a.kind, a.offset, a.len))
        .collect();
    assert_eq!(writes, [(AccessKind::Write, 0, 8)], "{trace}");
    assert_eq!(a.after_accesses, 1);

    // SAFETY: returns a block the test frees.
    let (b, trace) = t.call(|| unsafe { alloc::alloc_aligned_alloc(128, 256) });
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    assert_eq!(
        (
            allocs[0].function,
            allocs[0].align,
            allocs[0].size,
            allocs[0].result
        ),
        (AllocFn::AlignedAlloc, 128, 256, b as u64)
    );
    assert_eq!(b as u64 % 128, 0);
    assert_site(&allocs[0], "alloc_aligned_alloc", "aligned_alloc");
    assert_eq!(t.live_allocations().len(), 3);
    for p in [c, block as *mut c_void, b] {
        // SAFETY: each came from the C allocator.
        unsafe { alloc::c_free(p) };
    }
}

#[traced_ffi]
fn a_thread_created_in_the_call_has_its_allocation_recorded_with_its_tid(t: &mut Tracer) {
    // SAFETY: returns a block the test frees.
    let (p, trace) = t.call(|| unsafe { alloc::alloc_in_thread(48) });
    assert!(!p.is_null());
    let mine: Vec<&Allocation> = trace
        .allocations()
        .iter()
        .filter(|a| a.result == p as u64)
        .collect();
    assert_eq!(mine.len(), 1, "{trace}");
    assert_eq!((mine[0].function, mine[0].size), (AllocFn::Malloc, 48));
    assert_ne!(mine[0].tid, this_thread());
    assert_site(mine[0], "thread_body", "thread.malloc");
    assert!(trace.unfreed().iter().any(|a| a.result == p as u64));
    // SAFETY: p came from malloc.
    unsafe { alloc::c_free(p) };
}

#[traced_ffi]
fn a_thread_started_during_the_call_by_a_thread_outside_it_is_not_the_calls(t: &mut Tracer) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A thread that exists before the call and is not in it (like libtest's
    // pool worker) starts a thread during the call; that thread allocates.
    let go = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let outsider = {
        let (go, done) = (Arc::clone(&go), Arc::clone(&done));
        std::thread::spawn(move || {
            while !go.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let started = std::thread::spawn(|| {
                // SAFETY: a plain malloc and free.
                unsafe { libc::free(libc::malloc(77)) };
            });
            let _ = started.join();
            done.store(true, Ordering::Release);
        })
    };
    let mut out = t.buffer("out", 2);
    let (p, trace) = t.call(|| {
        go.store(true, Ordering::Release);
        while !done.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        // SAFETY: out holds 2 bytes; the thread alloc_in_thread starts is the call's.
        unsafe {
            alloc::alloc_malloc_free(out.as_mut_ptr(), 24);
            alloc::alloc_in_thread(48)
        }
    });
    let _ = outsider.join();
    let allocs = trace.allocations();
    let mine: Vec<(AllocFn, u64)> = allocs
        .iter()
        .filter(|a| a.tid == this_thread() && describe_ip(a.site).starts_with("alloc_"))
        .map(|a| (a.function, a.size))
        .collect();
    assert_eq!(mine, [(AllocFn::Malloc, 24), (AllocFn::Free, 0)], "{trace}");
    // The call's own thread: its malloc(48), and glibc's bookkeeping of the
    // thread (its TLS block, freed when it exits).
    let made = allocs
        .iter()
        .find(|a| a.result == p as u64)
        .unwrap_or_else(|| panic!("the call's thread's malloc is recorded\n{trace}"));
    assert_eq!((made.function, made.size), (AllocFn::Malloc, 48));
    assert_ne!(made.tid, this_thread());
    assert_site(made, "thread_body", "thread.malloc");
    // Nothing from the thread the outsider started during the call.
    assert!(
        allocs
            .iter()
            .all(|a| (a.tid == this_thread() || a.tid == made.tid) && a.size != 77),
        "{trace}"
    );
    // SAFETY: p came from malloc.
    unsafe { alloc::c_free(p) };
}

#[traced_ffi]
fn the_allocators_code_is_the_programs_own_between_calls(t: &mut Tracer) {
    let entries = [
        libc::malloc as *const () as *const u8,
        libc::free as *const () as *const u8,
        libc::realloc as *const () as *const u8,
        libc::calloc as *const () as *const u8,
    ];
    let first_bytes = || -> Vec<u8> {
        entries
            .iter()
            // SAFETY: reading the first byte of functions of this process.
            .map(|&p| unsafe { p.read_volatile() })
            .collect()
    };
    let before = first_bytes();
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (_, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 8) });
    assert_eq!(trace.allocations().len(), 2, "{trace}");
    let after = first_bytes();
    assert_eq!(before, after);
    assert!(!after.contains(&0xcc), "{after:x?}");
}

#[traced_ffi(should_panic(
    expected = "native code freed buffer `out` (offset 0) at alloc_free+0x"
))]
fn free_of_a_buffer_fails_the_test_naming_the_buffer_and_the_site(t: &mut Tracer) {
    let mut out = t.buffer("out", 16);
    // SAFETY: not safe on purpose: frees a buffer; the tracer refuses it.
    let ((), _) = t.call(|| unsafe { alloc::alloc_free(out.as_mut_ptr().cast()) });
}

#[traced_ffi]
fn a_refused_free_is_not_executed_and_the_heap_stays_intact(t: &mut Tracer) {
    t.allow_foreign_free(true);
    let mut out = t.buffer_from("out", &[1, 2, 3, 4, 5, 6, 7, 8]);
    let at = out.as_mut_ptr() as u64 + 4;
    // SAFETY: not safe on purpose: frees the inside of a buffer; refused.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(at as *mut c_void) });
    let refused = trace.foreign_frees();
    assert_eq!(refused.len(), 1, "{trace}");
    assert_eq!((refused[0].function, refused[0].ptr), (AllocFn::Free, at));
    assert_eq!(
        refused[0].foreign,
        Some(ForeignFree {
            region: Some(out.region_id()),
            name: "out".into(),
            kind: ForeignKind::Buffer,
            offset: 4,
        })
    );
    assert_site(refused[0], "alloc_free", "free");
    assert_eq!(&out[..], &[1, 2, 3, 4, 5, 6, 7, 8]);

    // realloc of a buffer: not executed, returns NULL.
    // SAFETY: not safe on purpose; refused.
    let (q, trace) = t.call(|| unsafe { alloc::alloc_realloc(out.as_mut_ptr().cast(), 64) });
    assert!(q.is_null());
    let refused = trace.foreign_frees();
    assert_eq!(refused.len(), 1, "{trace}");
    assert_eq!(
        (refused[0].function, refused[0].size, refused[0].result),
        (AllocFn::Realloc, 64, 0)
    );
    assert!(t.live_allocations().is_empty());

    // The heap works: glibc would have aborted on either call had it run.
    let mut two = t.buffer("two", 2);
    // SAFETY: two holds 2 bytes.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(two.as_mut_ptr(), 4096) });
    assert_eq!(r, 0);
    assert_eq!(trace.allocations().len(), 2);
    let v: Vec<u64> = (0..10_000).collect();
    assert_eq!(v.iter().sum::<u64>(), 49_995_000);
}

#[traced_ffi]
fn a_free_of_tracked_rust_memory_is_refused_but_a_tracked_native_block_may_be_freed(
    t: &mut Tracer,
) {
    t.allow_foreign_free(true);
    let v = vec![5u8; 64];
    // SAFETY: v outlives the calls and only this thread touches it during them.
    let tracked = unsafe { t.track("v", v.as_ptr(), v.len()) };
    // SAFETY: not safe on purpose: frees a Vec's memory; refused.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(v.as_ptr() as *mut c_void) });
    let refused = trace.foreign_frees();
    assert_eq!(refused.len(), 1, "{trace}");
    assert_eq!(
        refused[0].foreign,
        Some(ForeignFree {
            region: Some(tracked.region_id()),
            name: "v".into(),
            kind: ForeignKind::Tracked,
            offset: 0,
        })
    );
    t.untrack(&tracked);
    assert_eq!(v, vec![5u8; 64]);
    drop(v);

    t.allow_foreign_free(false);
    let s = t.buffer_from("s", b"abc\0");
    // SAFETY: s is NUL-terminated.
    let (p, trace) = t.call(|| unsafe { alloc::alloc_strdup(s.as_ptr().cast()) });
    // SAFETY: p holds 4 bytes from strdup, alive until the free below, touched by
    // nothing else meanwhile.
    let dup = unsafe { t.track_allocation("dup", &trace.allocations()[0]) };
    assert_eq!((dup.addr(), dup.len()), (p as u64, 4));
    // SAFETY: p came from strdup.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(p.cast()) });
    assert!(trace.foreign_frees().is_empty(), "{trace}");
    assert_eq!(trace.allocations().len(), 1);
    t.untrack(&dup);
    assert!(t.live_allocations().is_empty());
}

/// A string in the test binary's read-only data: never a heap block (aligned
/// like one, so only where it lies tells).
#[repr(C, align(16))]
struct Literal([u8; 16]);
static LITERAL: Literal = Literal(*b"not from malloc\0");

#[traced_ffi]
fn a_free_of_an_address_no_allocator_returned_is_refused_and_not_executed(t: &mut Tracer) {
    t.allow_foreign_free(true);
    let at = LITERAL.0.as_ptr() as u64;
    // SAFETY: not safe on purpose: frees a string literal; refused.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(at as *mut c_void) });
    let refused = trace.foreign_frees();
    assert_eq!(refused.len(), 1, "{trace}");
    let f = refused[0].foreign.clone().expect("refused");
    assert_eq!((refused[0].function, refused[0].ptr), (AllocFn::Free, at));
    assert_eq!((f.kind, f.region), (ForeignKind::NotABlock, None));
    let exe = std::env::current_exe().expect("the test binary's path");
    assert_eq!(
        f.name,
        format!("in the mapping of {}", exe.display()),
        "{trace}"
    );
    assert_site(refused[0], "alloc_free", "free");

    // A pointer into a block, not its start: misaligned for glibc.
    // SAFETY: a plain malloc outside any call.
    let block = unsafe { libc::malloc(64) };
    let inside = block as u64 + 8;
    // SAFETY: not safe on purpose: frees the inside of a block; refused.
    let (q, trace) = t.call(|| unsafe { alloc::alloc_realloc(inside as *mut c_void, 128) });
    assert!(q.is_null());
    let refused = trace.foreign_frees();
    assert_eq!(refused.len(), 1, "{trace}");
    assert_eq!(
        (refused[0].function, refused[0].ptr, refused[0].result),
        (AllocFn::Realloc, inside, 0)
    );
    assert_eq!(
        refused[0].foreign,
        Some(ForeignFree {
            region: None,
            name: "misaligned: glibc's blocks are 16-byte aligned".into(),
            kind: ForeignKind::NotABlock,
            offset: 0,
        })
    );
    // The heap is intact: the block itself is freed normally, in a call too.
    // SAFETY: block came from malloc.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(block) });
    assert!(trace.foreign_frees().is_empty(), "{trace}");
    assert_eq!(
        (trace.allocations()[0].function, trace.allocations()[0].ptr),
        (AllocFn::Free, block as u64)
    );
}

#[traced_ffi(should_panic(expected = "which no allocator returned (in the mapping of "))]
fn a_free_of_a_string_literal_fails_the_test(t: &mut Tracer) {
    // SAFETY: not safe on purpose: frees a string literal; refused.
    let ((), _) = t.call(|| unsafe { alloc::alloc_free(LITERAL.0.as_ptr() as *mut c_void) });
}

#[traced_ffi]
fn frees_of_blocks_from_before_the_call_from_rust_and_from_glibc_are_not_foreign(t: &mut Tracer) {
    // Blocks of every origin the heap knows: before the test's first call
    // (small and mmapped), by Rust between calls, and fopen's FILE (glibc).
    // SAFETY: plain mallocs outside any call.
    let small = unsafe { libc::malloc(24) };
    // SAFETY: as above; 1 MiB is above glibc's mmap threshold.
    let large = unsafe { libc::malloc(1 << 20) };
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (_, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 8) });
    assert_eq!(trace.allocations().len(), 2);
    let from_rust = Box::into_raw(Box::new([7u64; 4]));
    for p in [small, large, from_rust.cast()] {
        // SAFETY: each came from malloc (Rust's System allocator is malloc).
        let ((), trace) = t.call(|| unsafe { alloc::alloc_free(p) });
        assert!(trace.foreign_frees().is_empty(), "{trace}");
        assert_eq!(trace.allocations().len(), 1, "{trace}");
    }
    let path = t.buffer_from("path", b"/proc/self/stat\0");
    // SAFETY: path is NUL-terminated.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_fopen_fclose(path.as_ptr().cast()) });
    assert_eq!(r, 0);
    assert!(trace.foreign_frees().is_empty(), "{trace}");
}

#[traced_ffi]
fn blocks_allocated_before_the_first_call_are_never_reported(t: &mut Tracer) {
    // SAFETY: a plain malloc outside any call.
    let early = unsafe { libc::malloc(32) };
    assert!(!early.is_null());
    let kept: Vec<u8> = vec![1; 100];
    // SAFETY: early came from malloc.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(early) });
    let allocs = trace.allocations();
    assert_eq!(allocs.len(), 1, "{trace}");
    assert_eq!(
        (allocs[0].function, allocs[0].ptr),
        (AllocFn::Free, early as u64)
    );
    assert!(allocs[0].foreign.is_none());
    assert!(trace.unfreed().is_empty());
    assert!(t.live_allocations().is_empty());
    assert_eq!(kept.len(), 100);
}

#[traced_ffi]
fn allocation_tracing_can_be_turned_off(t: &mut Tracer) {
    t.trace_allocations(false);
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 8) });
    assert_eq!(r, 0);
    assert!(trace.allocations().is_empty());
    assert_eq!(trace.stats().allocator_stops, 0);
}

#[traced_ffi]
fn allocation_contracts_hold_on_a_call_that_frees_what_it_allocates(t: &mut Tracer) {
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (_, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 16) });
    trace.expect_frees_everything_it_allocates();
    trace.expect_never_frees_given_memory();
    let message = panic_message_of(|| trace.expect_allocates_nothing());
    let expected = format!(
        "contract failed: allocates nothing\n  1 allocation(s):\n    malloc(16) = {:#x} at \
         alloc_malloc_free+0x",
        trace.allocations()[0].result
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains(&format!("c/alloc.c:{}", site_line("malloc_free.malloc"))),
        "{message}"
    );

    let ((), trace) = t.call(|| ());
    trace.expect_allocates_nothing();
    trace.expect_frees_everything_it_allocates();
    trace.expect_never_frees_given_memory();
}

#[traced_ffi]
fn frees_everything_it_allocates_lists_the_leaked_block_with_size_and_site(t: &mut Tracer) {
    // SAFETY: leaks 40 bytes (freed below).
    let ((), trace) = t.call(|| unsafe { alloc::alloc_leak_one(40) });
    let leaked = trace.unfreed()[0].result;
    let message = panic_message_of(|| trace.expect_frees_everything_it_allocates());
    let expected = format!(
        "contract failed: frees everything it allocates\n  1 block(s), 40 byte(s), allocated and \
         not freed by the end of the call:\n    malloc(40) = {leaked:#x} at alloc_leak_one+0x"
    );
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains(&format!("c/alloc.c:{}", site_line("leak.kept"))),
        "{message}"
    );
    trace.expect_never_frees_given_memory();
    // SAFETY: the leaked block came from malloc.
    unsafe { alloc::c_free(leaked as *mut c_void) };
}

#[traced_ffi]
fn never_frees_given_memory_names_a_free_of_a_block_from_an_earlier_call(t: &mut Tracer) {
    let s = t.buffer_from("s", b"xy\0");
    // SAFETY: s is NUL-terminated.
    let (p, _) = t.call(|| unsafe { alloc::alloc_strdup(s.as_ptr().cast()) });
    // SAFETY: p came from strdup.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(p.cast()) });
    trace.expect_allocates_nothing();
    trace.expect_frees_everything_it_allocates();
    let message = panic_message_of(|| trace.expect_never_frees_given_memory());
    let expected = format!(
        "contract failed: never frees memory it was given\n  1 call(s) released memory not \
         allocated in this call:\n    free({:#x}) at alloc_free+0x",
        p as u64
    );
    assert!(message.starts_with(&expected), "{message}");

    t.allow_foreign_free(true);
    let mut out = t.buffer("out", 8);
    // SAFETY: not safe on purpose: frees a buffer; refused.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_free(out.as_mut_ptr().cast()) });
    let message = panic_message_of(|| trace.expect_never_frees_given_memory());
    assert!(
        message.contains("<- NOT EXECUTED: frees buffer `out` (offset 0)"),
        "{message}"
    );
}

#[traced_ffi]
fn fopen_and_fclose_allocate_and_free_the_file_inside_glibc(t: &mut Tracer) {
    let path = t.buffer_from("path", b"/proc/self/stat\0");
    // SAFETY: path is NUL-terminated.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_fopen_fclose(path.as_ptr().cast()) });
    assert_eq!(r, 0);
    let allocs = trace.allocations();
    assert!(allocs.len() >= 2, "{trace}");
    let (first, last) = (&allocs[0], &allocs[allocs.len() - 1]);
    assert_eq!(first.function, AllocFn::Malloc, "{trace}");
    // Inside libc (its static `__fopen_internal`, which a stripped libc does not
    // name), not in the fixture.
    assert!(
        in_mapping_of(first.site, libc::fopen as *const () as u64),
        "{}",
        describe_ip(first.site)
    );
    assert_eq!(
        (last.function, last.ptr),
        (AllocFn::Free, first.result),
        "{trace}"
    );
    assert!(
        describe_ip(last.site).contains("fclose"),
        "{}",
        describe_ip(last.site)
    );
    // The FILE is allocated before the system call that reads the path.
    assert_eq!(first.after_accesses, 0, "{trace}");
    assert!(trace.unfreed().is_empty(), "{trace}");
    trace.expect_frees_everything_it_allocates();
}

#[traced_ffi]
fn qsort_on_a_large_array_takes_and_frees_a_temporary_buffer(t: &mut Tracer) {
    const N: usize = 1000;
    let mut v: Vec<i32> = (0..N as i32).rev().collect();
    // SAFETY: v holds N ints.
    let ((), trace) = t.call(|| unsafe { alloc::alloc_qsort_ints(v.as_mut_ptr(), N) });
    assert!(v.windows(2).all(|w| w[0] <= w[1]));
    let allocs = trace.allocations();
    let got: Vec<(AllocFn, u64)> = allocs.iter().map(|a| (a.function, a.size)).collect();
    assert_eq!(
        got,
        [(AllocFn::Malloc, 4 * N as u64), (AllocFn::Free, 0)],
        "{trace}"
    );
    assert_eq!(allocs[1].ptr, allocs[0].result);
    assert!(
        describe_ip(allocs[0].site).contains("qsort"),
        "{}",
        describe_ip(allocs[0].site)
    );
    trace.expect_frees_everything_it_allocates();
    trace.expect_never_frees_given_memory();
}

#[traced_ffi]
fn a_child_forked_during_a_call_runs_malloc_through_the_breakpoints_unrecorded(t: &mut Tracer) {
    let mut out = t.buffer("out", 2);
    // SAFETY: forks; the child only allocates and exits.
    let (status, trace) = t.call(|| unsafe { alloc::alloc_fork_child_mallocs() });
    assert_eq!(status, 7, "the child's malloc and free worked\n{trace}");
    assert!(
        trace.allocations().iter().all(|a| a.tid == this_thread()),
        "the child's calls are not the call's\n{trace}"
    );
    // The parent's heap works after the fork.
    // SAFETY: out holds 2 bytes.
    let (r, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 8) });
    assert_eq!(r, 0);
    assert_eq!(trace.allocations().len(), 2, "{trace}");
}

/// Set to `1` in the environment of the child run of [`trace_file_child`].
const TRACE_FILE_CHILD_ENV: &str = "TRACED_FFI_ALLOC_TRACE_FILE_CHILD";
/// The full name of the child test.
const TRACE_FILE_CHILD: &str = "allocations::trace_file_child";

/// One call that allocates and frees, when run as the child of the test below.
#[traced_ffi(ignore)]
fn trace_file_child(t: &mut Tracer) {
    if std::env::var(TRACE_FILE_CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (_, _) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 24) });
}

#[traced_ffi]
fn trace_files_list_the_allocations_with_symbol_and_source(_t: &mut Tracer) {
    let dir = std::env::temp_dir().join(format!("traced-ffi-alloc-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_text = dir.display().to_string();
    let run = crate::child::run_self(
        &["--exact", TRACE_FILE_CHILD, "--include-ignored"],
        &[
            (TRACE_FILE_CHILD_ENV, "1"),
            ("TRACED_FFI_TRACE_DIR", &dir_text),
        ],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(0), "{dump}");
    let file = dir.join(format!("{}.1.json", TRACE_FILE_CHILD.replace(':', "_")));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    let _ = std::fs::remove_dir_all(&dir);
    let json: serde_json::Value = serde_json::from_str(&text).expect("the file is JSON");
    let allocs = json["allocations"]
        .as_array()
        .expect("an allocations array");
    assert_eq!(allocs.len(), 2, "{text}");
    assert_eq!(allocs[0]["function"], "malloc");
    assert_eq!(allocs[0]["size"], 24);
    assert_eq!(allocs[0]["after_accesses"], 0);
    assert_eq!(allocs[1]["function"], "free");
    assert_eq!(allocs[1]["ptr"], allocs[0]["result"]);
    assert_eq!(allocs[1]["after_accesses"], 1);
    assert!(allocs[0]["foreign"].is_null());
    let symbol = allocs[0]["symbol"].as_str().unwrap_or_default();
    assert!(symbol.starts_with("alloc_malloc_free+0x"), "{text}");
    let source = allocs[0]["source"].as_str().unwrap_or_default();
    assert!(
        source.contains(&format!("c/alloc.c:{}", site_line("malloc_free.malloc"))),
        "{text}"
    );
}

#[traced_ffi]
fn zlib_deflate_init_and_end_pair_their_allocations_across_calls(t: &mut Tracer) {
    let Some(z) = alloc::zlib() else {
        println!("skipped: the fixtures were built without zlib");
        return;
    };
    // SAFETY: returns a stream the second call ends.
    let (stream, trace) = t.call(|| unsafe { (z.create)(6) });
    assert!(!stream.is_null());
    let made = trace.allocations();
    assert!(made.len() > 1, "{trace}");
    assert!(
        made.iter().all(|a| a.function == AllocFn::Malloc),
        "{trace}"
    );
    // SAFETY: no preconditions.
    let stream_size = unsafe { (z.stream_size)() } as u64;
    assert_eq!((made[0].size, made[0].result), (stream_size, stream as u64));
    let line = |m| format!("c/alloc_zlib.c:{}", alloc::zlib_site_line(m));
    assert_site_at(&made[0], "alloc_zlib_create", &line("zlib.stream"));
    // zlib's own blocks: state, window, prev, head, pending, each from deflateInit2_
    // (through zcalloc, which tail-calls malloc).
    let sizes: Vec<u64> = made[1..].iter().map(|a| a.size).collect();
    assert_eq!(sizes.len(), 5, "{trace}");
    assert!(
        made[1..]
            .iter()
            .all(|a| describe_ip(a.site).starts_with("deflateInit2_+0x")),
        "{trace}"
    );
    assert_eq!(trace.unfreed().len(), made.len());
    assert_eq!(t.live_allocations().len(), made.len());

    // SAFETY: stream came from create.
    let (r, trace) = t.call(|| unsafe { (z.destroy)(stream) });
    assert_eq!(r, 0);
    let freed = trace.allocations();
    assert_eq!(freed.len(), made.len(), "{trace}");
    assert!(freed.iter().all(|a| a.function == AllocFn::Free), "{trace}");
    let mut freed_ptrs: Vec<u64> = freed.iter().map(|a| a.ptr).collect();
    let mut made_blocks: Vec<u64> = made.iter().map(|a| a.result).collect();
    freed_ptrs.sort_unstable();
    made_blocks.sort_unstable();
    assert_eq!(freed_ptrs, made_blocks);
    assert_site_at(
        &freed[freed.len() - 1],
        "alloc_zlib_destroy",
        &line("zlib.free"),
    );
    assert!(
        t.live_allocations().is_empty(),
        "{:?}",
        t.live_allocations()
    );
    trace.expect_allocates_nothing();
}

#[traced_ffi]
fn snapshot_of_a_trace_lists_allocator_calls_in_order_with_numbered_blocks(t: &mut Tracer) {
    let mut out = t.buffer("out", 2);
    // SAFETY: out holds 2 bytes.
    let (_, trace) = t.call(|| unsafe { alloc::alloc_malloc_free(out.as_mut_ptr(), 24) });
    insta::assert_snapshot!("malloc_free_trace", trace.snapshot());
    // SAFETY: leaks 40 bytes (freed below).
    let ((), trace) = t.call(|| unsafe { alloc::alloc_leak_one(40) });
    insta::assert_snapshot!("leak_one_trace", trace.snapshot());
    let leaked = trace.unfreed()[0].result;
    // SAFETY: returns a block the test frees.
    let (p, trace) = t.call(|| unsafe { alloc::alloc_realloc_many(3) });
    insta::assert_snapshot!("realloc_many_trace", trace.snapshot());
    t.allow_foreign_free(true);
    // SAFETY: frees the leaked block (from an earlier call), then is refused
    // the inside of the buffer.
    let ((), trace) = t.call(|| unsafe {
        alloc::alloc_free(leaked as *mut c_void);
        alloc::alloc_free(out.as_mut_ptr().add(1).cast());
        alloc::alloc_free(p);
    });
    insta::assert_snapshot!("free_earlier_and_refused_trace", trace.snapshot());
}

/// Set to `1` in the environment of the child run of [`crash_child`].
const CRASH_CHILD_ENV: &str = "TRACED_FFI_ALLOC_CRASH_CHILD";
/// The full name of the child test.
const CRASH_CHILD: &str = "allocations::crash_child";

/// Allocates, frees, then crashes in a call, when run as the child of the test
/// below.
#[traced_ffi(ignore)]
fn crash_child(t: &mut Tracer) {
    if std::env::var(CRASH_CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let mut out = t.buffer("out", 1);
    // SAFETY: out holds 1 byte; the call crashes the process on purpose.
    let ((), _) = t.call(|| unsafe { alloc::alloc_then_crash(out.as_mut_ptr(), 40) });
}

#[traced_ffi]
fn a_crash_report_lists_the_allocator_calls_so_far_and_the_live_blocks(_t: &mut Tracer) {
    let run = crate::child::run_self(
        &["--exact", CRASH_CHILD, "--include-ignored"],
        &[(CRASH_CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(101), "{dump}");
    let report = run
        .stdout
        .split_once("allocator calls recorded so far in this call:")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no allocator calls in the report\n{dump}"));
    let lines: Vec<&str> = report.lines().skip(1).take(5).map(str::trim).collect();
    let kept = format!("c/alloc.c:{}", site_line("crash.kept"));
    assert!(
        lines[0].starts_with("malloc(40) = 0x")
            && lines[0].contains("at alloc_then_crash+0x")
            && lines[0].contains(&kept),
        "{dump}"
    );
    assert!(lines[1].starts_with("malloc(8) = 0x"), "{dump}");
    assert!(lines[2].starts_with("free(0x"), "{dump}");
    assert_eq!(
        lines[3], "blocks allocated in this call and not freed: 1 (40 bytes)",
        "{dump}"
    );
    assert_eq!(lines[4], lines[0], "{dump}");
}
