//! A long call's trace is streamed: the supervisor writes each full chunk of
//! records (32 Ki records, 1 MiB) that can no longer change, and the chunks of
//! their values, to a memfd the test process shares during the call, and the
//! test process reads them back at its end. The trace that comes back is exact,
//! access for access, on the code cache's path, the per-instruction path and
//! when a write's bytes are read back after its chunk filled up.

use traced_ffi::{AccessKind, Region, Trace, Tracer, traced_ffi};

use crate::check::current_tid;
use crate::levels::O2;

/// Records per chunk of a trace's store.
const CHUNK: usize = 32 * 1024;
/// Bytes of one chunk of records.
const CHUNK_BYTES: u64 = 32 * CHUNK as u64;

/// Asserts that `trace` is exactly `copy_bytes(dst, src, n)` on `data`: the
/// read of `src[i]` with its value, then the write of `dst[i]` with the same,
/// for each `i` in order, by this thread.
fn assert_exact_copy(trace: &Trace, src: &impl Region, dst: &impl Region, data: &[u8]) {
    assert_eq!(trace.access_count(), 2 * data.len());
    assert_exact_copy_from(trace, src, dst, data, 0, current_tid());
}

/// As [`assert_exact_copy`], for the accesses after the first `skip`, made
/// by thread `tid`.
fn assert_exact_copy_from(
    trace: &Trace,
    src: &impl Region,
    dst: &impl Region,
    data: &[u8],
    skip: usize,
    tid: i32,
) {
    let n = data.len();
    let mut count = 0;
    for (k, a) in trace.iter_accesses().skip(skip).enumerate() {
        let i = k / 2;
        let (kind, region) = if k % 2 == 0 {
            (AccessKind::Read, src.region_id())
        } else {
            (AccessKind::Write, dst.region_id())
        };
        assert!(
            a.kind == kind
                && a.region == Some(region)
                && a.offset == i as isize
                && a.len == 1
                && a.bytes == [data[i]]
                && a.tid == tid
                && !a.out_of_bounds,
            "access {}: {a:?}",
            skip + k
        );
        count += 1;
    }
    assert_eq!(count, 2 * n);
}

/// `n` bytes, none the same as its neighbours.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[traced_ffi]
fn a_long_call_in_the_code_cache_streams_its_chunks_and_its_trace_is_exact(t: &mut Tracer) {
    if !crate::cache::cache_on() {
        // `TRACED_FFI_CACHE=off` (CI's second run): 512 Ki accesses on the
        // per-instruction path take half a minute; the per-instruction path's
        // streaming has its own, smaller test below.
        return;
    }
    // 512 Ki accesses: 16 chunks of records.
    let n = 256 << 10;
    let data = pattern(n);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    // SAFETY: both buffers hold n bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    let streamed = trace.stats().streamed_bytes;
    assert!(
        (8 * CHUNK_BYTES..=16 * CHUNK_BYTES + n as u64).contains(&streamed),
        "{streamed} bytes streamed"
    );
    assert!(trace.stats().cache_entries > 0, "{:?}", trace.stats());
    assert_exact_copy(&trace, &src, &dst, &data);
    assert_eq!(&dst[..], &data[..]);
    // The memfd is emptied for the next call, which streams again from the
    // start of it.
    // SAFETY: as above.
    let ((), again) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    assert_eq!(again.stats().streamed_bytes, streamed);
    assert_exact_copy(&again, &src, &dst, &data);
}

#[traced_ffi]
fn a_long_call_on_the_per_instruction_path_streams_its_chunks_and_its_trace_is_exact(
    t: &mut Tracer,
) {
    // 66 Ki accesses: two full chunks of records and part of a third.
    let n = 33 << 10;
    let data = pattern(n);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    t.use_code_cache(false);
    // SAFETY: both buffers hold n bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    assert_eq!(trace.stats().cache_entries, 0);
    assert!(
        trace.stats().streamed_bytes >= 2 * CHUNK_BYTES,
        "{} bytes streamed",
        trace.stats().streamed_bytes
    );
    assert_exact_copy(&trace, &src, &dst, &data);
}

/// Asserts that `trace`, after `skip` other accesses, is exactly
/// `increment_u32(p, n)` on words `old`: the read of `p[i]` with its old value,
/// then the write of `p[i]` with the value plus one, read back after the
/// instruction ran.
fn assert_exact_increment(trace: &Trace, p: &impl Region, old: &[u32], skip: usize) {
    assert_eq!(trace.access_count(), skip + 2 * old.len());
    let mut count = 0;
    for (k, a) in trace.iter_accesses().skip(skip).enumerate() {
        let i = k / 2;
        let (kind, value) = if k % 2 == 0 {
            (AccessKind::Read, old[i])
        } else {
            (AccessKind::Write, old[i] + 1)
        };
        assert!(
            a.kind == kind
                && a.region == Some(p.region_id())
                && a.offset == 4 * i as isize
                && a.len == 4
                && a.bytes == value.to_le_bytes(),
            "access {}: {a:?}",
            skip + k
        );
        count += 1;
    }
    assert_eq!(count, 2 * old.len());
}

#[traced_ffi]
fn a_write_read_back_after_its_chunk_filled_up_is_streamed_with_its_bytes(t: &mut Tracer) {
    // `add DWORD PTR [rdi], 1` runs in the stub: its write's bytes are read
    // back at the thread's next fault. The write of word CHUNK / 2 - 1 is the
    // last record of the first chunk: the chunk is full before its bytes are
    // known, and streams only after.
    let n = CHUNK / 2 + 1024;
    let old: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    let bytes: Vec<u8> = old.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut p = t.buffer_from("p", &bytes);
    let one = t.buffer_from("one", &[5, 0, 0, 0]);
    t.use_code_cache(false);
    // SAFETY: `p` holds n words, 4-aligned (its end is a page boundary).
    let ((), trace) = t.call(|| unsafe { (O2.increment_u32)(p.as_mut_ptr().cast(), n) });
    assert!(trace.stats().stub_path >= n as u64);
    assert!(trace.stats().streamed_bytes >= CHUNK_BYTES);
    assert_exact_increment(&trace, &p, &old, 0);

    // One access first: the write of word CHUNK / 2 - 1 is the first record
    // of the second chunk, pending while the first chunk streams.
    let old: Vec<u32> = old.iter().map(|w| w + 1).collect();
    // SAFETY: `one` holds one word, `p` n words, both 4-aligned.
    let ((), trace) = t.call(|| unsafe {
        (O2.sum_u32)(one.as_ptr().cast(), 1);
        (O2.increment_u32)(p.as_mut_ptr().cast(), n)
    });
    assert!(trace.stats().streamed_bytes >= CHUNK_BYTES);
    let first = trace.iter_accesses().next();
    assert!(
        first.is_some_and(|a| a.region == Some(one.region_id()) && a.bytes == [5, 0, 0, 0]),
        "{first:?}"
    );
    assert_exact_increment(&trace, &p, &old, 1);
}

#[traced_ffi]
fn a_write_pending_on_one_thread_holds_its_chunk_back_while_another_records_more(t: &mut Tracer) {
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    // The calling thread's `add DWORD PTR [rdi], 1` runs in the stub (the
    // call has one thread then); its write's bytes are read back at that
    // thread's next stop, which comes only after another thread, started
    // before the call, has recorded four chunks: the first chunk, which
    // holds the write, must wait for them.
    let n = 64 << 10;
    let data = pattern(n);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    let mut word = t.buffer_from("word", &41u32.to_le_bytes());
    let (d, s, w) = (
        dst.as_mut_ptr() as usize,
        src.as_ptr() as usize,
        word.as_mut_ptr() as usize,
    );
    let (go, done, copier) = (
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicI32::new(0),
    );
    let trace = std::thread::scope(|scope| {
        scope.spawn(|| {
            copier.store(current_tid(), Ordering::Relaxed);
            while !go.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // SAFETY: both buffers hold n bytes.
            unsafe { (O2.copy_bytes)(d as *mut u8, s as *const u8, n) };
            done.store(true, Ordering::Release);
        });
        let ((), trace) = t.call(|| {
            // SAFETY: `word` holds one word, 4-aligned (its end is a page
            // boundary).
            unsafe { (O2.increment_u32)(w as *mut u32, 1) };
            go.store(true, Ordering::Release);
            // No system call that stops: the write stays pending.
            while !done.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
        });
        trace
    });
    assert_eq!(trace.access_count(), 2 + 2 * n);
    let me = current_tid();
    let first: Vec<_> = trace
        .iter_accesses()
        .take(2)
        .map(|a| (a.kind, a.region, a.offset, a.bytes.to_vec(), a.tid))
        .collect();
    let word_id = Some(word.region_id());
    assert_eq!(
        first,
        [
            (
                AccessKind::Read,
                word_id,
                0,
                41u32.to_le_bytes().to_vec(),
                me
            ),
            (
                AccessKind::Write,
                word_id,
                0,
                42u32.to_le_bytes().to_vec(),
                me
            ),
        ]
    );
    let copier = copier.load(Ordering::Relaxed);
    assert_exact_copy_from(&trace, &src, &dst, &data, 2, copier);
}

#[traced_ffi]
fn a_bounded_long_call_keeps_its_first_accesses_and_streams_nothing(t: &mut Tracer) {
    let n = 64 << 10;
    let data = pattern(n);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    t.keep_accesses(Some(100));
    // SAFETY: both buffers hold n bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    assert_eq!(trace.stats().streamed_bytes, 0);
    assert_eq!(trace.access_count(), 100);
    assert_eq!(trace.total_accesses(), 2 * n as u64);
    assert_eq!(trace.written(&dst).ranges(), &[0..n]);
    assert_exact_copy_prefix(&trace, &src, &dst, &data);
}

/// The first accesses of a bounded `copy_bytes` trace, exact.
fn assert_exact_copy_prefix(trace: &Trace, src: &impl Region, dst: &impl Region, data: &[u8]) {
    for (k, a) in trace.iter_accesses().enumerate() {
        let i = k / 2;
        let region = if k % 2 == 0 {
            src.region_id()
        } else {
            dst.region_id()
        };
        assert!(
            a.region == Some(region) && a.offset == i as isize && a.bytes == [data[i]],
            "access {k}: {a:?}"
        );
    }
}

/// The supervisor's `RLIMIT_FSIZE` (soft limit), set to `bytes` (`None`:
/// back to `old`); returns the limits before.
fn set_supervisor_file_size_limit(bytes: Option<u64>, old: libc::rlimit) -> libc::rlimit {
    // SAFETY: getppid has no preconditions; this process's parent is its
    // supervisor.
    let supervisor = unsafe { libc::getppid() };
    let mut before = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the limits into a valid rlimit.
    let got = unsafe {
        libc::prlimit(
            supervisor,
            libc::RLIMIT_FSIZE,
            std::ptr::null(),
            &mut before,
        )
    };
    assert_eq!(got, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = match bytes {
        Some(b) => libc::rlimit {
            rlim_cur: b,
            rlim_max: before.rlim_max,
        },
        None => old,
    };
    // SAFETY: sets the soft limit, at most the hard one, from a valid rlimit.
    let set = unsafe { libc::prlimit(supervisor, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    before
}

#[traced_ffi]
fn a_memfd_that_refuses_a_write_leaves_the_rest_of_the_trace_in_the_reply_exact(t: &mut Tracer) {
    // 16 chunks of records with the code cache; 4 on the per-instruction path
    // (`TRACED_FFI_CACHE=off`), where each access is a stop: still past the
    // limit below.
    let n: usize = if crate::cache::cache_on() {
        256 << 10
    } else {
        64 << 10
    };
    let chunks = (2 * n as u64).div_ceil(CHUNK_BYTES / 32);
    let data = pattern(n);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    // The supervisor's writes to the memfd fail (EFBIG, after a short one)
    // past 2.5 MiB: two chunks of records and one of values fit.
    let cap = 5u64 << 19;
    let unset = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let old = set_supervisor_file_size_limit(Some(cap), unset);
    // SAFETY: both buffers hold n bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    set_supervisor_file_size_limit(None, old);
    let streamed = trace.stats().streamed_bytes;
    assert!(
        (CHUNK_BYTES..=cap).contains(&streamed),
        "{streamed} bytes streamed"
    );
    assert_exact_copy(&trace, &src, &dst, &data);
    // The next call streams again.
    // SAFETY: as above.
    let ((), again) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), n) });
    assert!(
        again.stats().streamed_bytes >= chunks / 2 * CHUNK_BYTES,
        "{} bytes streamed of {chunks} chunks of records",
        again.stats().streamed_bytes
    );
    assert_exact_copy(&again, &src, &dst, &data);
}
