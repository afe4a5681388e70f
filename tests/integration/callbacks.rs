//! Native code calling back into Rust during a traced call (issue 5, item 5): the
//! callback's accesses are recorded like the C code's, interleaved in the order they
//! happen, and named by the callback's Rust path: the tracer demangles legacy Rust
//! symbols (`_ZN…E`) to `a::b::c`, dropping the `h<hash>` part, so `describe_ip`
//! shows `integration::callbacks::double_in_place+0x…`.
//!
//! The callbacks dereference their pointers directly (`*p`): at any optimisation
//! level that is one load or store in the callback itself, where `read_volatile`
//! would, unoptimised, be a call to `core::ptr::read_volatile`. Their mnemonics are
//! not compared (they depend on the profile); the C side's are.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use traced_ffi::{Access, Tracer, traced_ffi};
use traced_ffi_fixtures::os as fx;

use crate::check::current_tid;
use crate::os_check::{Row, assert_rows, c, rust, symbol_of};

/// Doubles `*p` (wrapping): one read and one write of `*p`.
///
/// # Safety
/// `p` must be valid for reads and writes of one byte.
unsafe extern "C" fn double_in_place(p: *mut u8) {
    // SAFETY: the caller passes a valid, writable byte.
    unsafe {
        let v = *p;
        *p = v.wrapping_mul(2);
    }
}

#[traced_ffi]
fn c_apply_calling_a_rust_callback_records_both_sides_in_order_named_by_rust_path(t: &mut Tracer) {
    const N: usize = 8;
    let original: Vec<u8> = (0..N as u8).map(|i| 3 + 5 * i).collect();
    let doubled: Vec<u8> = original.iter().map(|v| v.wrapping_mul(2)).collect();
    let mut plain = original.clone();
    // SAFETY: `plain` is valid for reads and writes of N bytes; the callback touches
    // only the byte it is given.
    let plain_sum = unsafe { fx::apply(plain.as_mut_ptr(), N, double_in_place) };
    assert_eq!(plain, doubled);

    let mut buf = t.buffer_from("buf", &original);
    let p = buf.as_mut_ptr();
    // SAFETY: as above.
    let (sum, trace) = t.call(|| unsafe { fx::apply(p, N, double_in_place) });
    assert_eq!(sum, plain_sum, "\n{trace}");
    assert_eq!(&buf[..], &doubled[..]);

    let callback = rust(concat!(module_path!(), "::double_in_place"));
    let me = current_tid();
    let want: Vec<Row> = (0..N)
        .flat_map(|i| {
            [
                Row::read(&buf, i, &original[i..=i], callback.clone(), me),
                Row::write(&buf, i, &doubled[i..=i], callback.clone(), me),
                Row::read(&buf, i, &doubled[i..=i], c("apply", "movzx"), me),
            ]
        })
        .collect();
    assert_rows!(trace, want);
}

/// Where the array being sorted starts, for [`compare_u32`]'s log.
static SORT_BASE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each call of [`compare_u32`]: (offset of `a`, `*a`, offset of `b`, `*b`), the
    /// offsets in bytes from [`SORT_BASE`].
    static COMPARISONS: RefCell<Vec<(isize, u32, isize, u32)>> = const { RefCell::new(Vec::new()) };
}

/// `qsort`'s comparator for `u32`s: reads `*a`, then `*b` (one 4-byte read each), and
/// logs both, with their offsets, in [`COMPARISONS`] (untraced memory).
///
/// # Safety
/// `a` and `b` must point to readable, aligned `u32`s.
unsafe extern "C" fn compare_u32(a: *const c_void, b: *const c_void) -> c_int {
    let (a, b) = (a.cast::<u32>(), b.cast::<u32>());
    // SAFETY: qsort passes pointers to two elements of the array.
    let (x, y) = unsafe { (*a, *b) };
    let base = SORT_BASE.load(Ordering::Relaxed);
    let offset = |p: *const u32| (p as usize).wrapping_sub(base) as isize;
    COMPARISONS.with(|log| log.borrow_mut().push((offset(a), x, offset(b), y)));
    x.cmp(&y) as c_int
}

/// Sorts `words` in place with the fixture's `qsort` and [`compare_u32`]; returns the
/// comparator's log. `words` may be traced: `sort` runs in `f`.
fn sorted_with_log<R>(base: *mut u32, f: impl FnOnce() -> R) -> (R, Vec<(isize, u32, isize, u32)>) {
    SORT_BASE.store(base as usize, Ordering::Relaxed);
    COMPARISONS.with(|log| log.borrow_mut().clear());
    let r = f();
    (r, COMPARISONS.with(|log| log.take()))
}

#[traced_ffi]
fn c_qsort_with_a_rust_comparator_sorts_and_records_its_reads_at_the_comparator(t: &mut Tracer) {
    const WORDS: [u32; 16] = [
        907,
        14,
        3_000_000,
        5,
        77,
        1 << 31,
        14_000,
        2,
        650,
        31,
        99_999,
        8,
        4242,
        123,
        7,
        51,
    ];
    let n = WORDS.len();
    let mut plain = WORDS;
    let base = plain.as_mut_ptr();
    let ((), plain_log) = sorted_with_log(base, || {
        // SAFETY: `plain` holds n u32s; the comparator reads only what it is given.
        unsafe { fx::sort_u32(base, n, compare_u32) }
    });
    let mut want_sorted = WORDS;
    want_sorted.sort_unstable();
    assert_eq!(plain, want_sorted);
    assert!(!plain_log.is_empty());

    let bytes: Vec<u8> = WORDS.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut buf = t.buffer_from("words", &bytes);
    let p = buf.as_mut_ptr().cast::<u32>();
    let (((), trace), log) = sorted_with_log(p, || {
        // SAFETY: `buf` holds n u32s, 4-aligned (it ends on a page boundary and its
        // length is a multiple of 4).
        t.call(|| unsafe { fx::sort_u32(p, n, compare_u32) })
    });
    let sorted: Vec<u8> = want_sorted.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&buf[..], &sorted[..], "\n{trace}");
    assert_eq!(
        log.len(),
        plain_log.len(),
        "the same comparisons as untraced"
    );

    // glibc 2.36's qsort (a merge sort) compares elements of the array itself, never
    // of its temporary copy.
    let len = 4 * n as isize;
    for &(a, _, b, _) in &log {
        assert!(
            (0..len).contains(&a) && (0..len).contains(&b),
            "the comparator got a pointer outside the array: offsets {a}, {b}"
        );
    }
    let comparator = concat!(module_path!(), "::compare_u32");
    let me = current_tid();
    let want: Vec<Row> = log
        .iter()
        .flat_map(|&(a, x, b, y)| {
            [
                Row::read(&buf, a as usize, &x.to_le_bytes(), rust(comparator), me),
                Row::read(&buf, b as usize, &y.to_le_bytes(), rust(comparator), me),
            ]
        })
        .collect();
    let at_comparator: Vec<&Access> = trace
        .accesses()
        .iter()
        .filter(|a| symbol_of(a.ip) == comparator)
        .collect();
    assert_rows!(trace, at_comparator, want);
    // glibc's own moves of the elements: on this thread, by instructions.
    for a in trace.accesses() {
        assert!(
            a.tid == me && a.syscall.is_none(),
            "an access by another thread or the kernel: {a:?}\n{trace}"
        );
    }
}
