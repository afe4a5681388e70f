//! glibc's own string and memory functions, in whichever variant glibc picks on this
//! CPU (AVX-512/EVEX on this machine: masked loads and stores, `rep movsb`/`rep stosb`
//! for large sizes): their write sets are exact, their read sets hold the bytes they
//! must read and, beyond those, only bytes of the aligned vectors they load (reported
//! with their true offsets, out of bounds where they fall before the start).
//!
//! The functions are called through `black_box`ed pointers so that the compiler
//! cannot replace them by inline code.

use std::ffi::{c_char, c_int, c_void};
use std::hint::black_box;

use traced_ffi::{AccessKind, Buffer, Trace, Tracer, traced_ffi};

use crate::check::pattern;

type MemcpyFn = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> *mut c_void;
type MemsetFn = unsafe extern "C" fn(*mut c_void, c_int, usize) -> *mut c_void;
type MemcmpFn = unsafe extern "C" fn(*const c_void, *const c_void, usize) -> c_int;
type StrlenFn = unsafe extern "C" fn(*const c_char) -> usize;
type StrcpyFn = unsafe extern "C" fn(*mut c_char, *const c_char) -> *mut c_char;
type StrcmpFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
type MemchrFn = unsafe extern "C" fn(*const c_void, c_int, usize) -> *mut c_void;

/// The vector width glibc's widest variant loads: reads outside the bytes a function
/// must read stay within the 64-byte blocks those bytes lie in.
const BLOCK: isize = 64;

/// Asserts the trace has no unsupported instruction and no write outside `writes`.
fn assert_clean(trace: &Trace) {
    assert!(
        trace.unsupported().is_empty(),
        "glibc's code is fully traced\n{trace}"
    );
}

/// The byte offsets of `buf` read by the call, out-of-bounds ones included.
fn read_offsets(trace: &Trace, buf: &Buffer, kind: AccessKind) -> Vec<isize> {
    let mut v: Vec<isize> = trace
        .accesses_to(buf)
        .iter()
        .filter(|a| a.kind == kind)
        .flat_map(|a| a.range())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Asserts `buf`'s reads cover `needed` and stay within its 64-byte-aligned blocks
/// (addresses, not offsets: glibc aligns the pointer).
fn assert_reads_within_blocks(trace: &Trace, buf: &Buffer, needed: std::ops::Range<isize>) {
    let read = read_offsets(trace, buf, AccessKind::Read);
    for i in needed.clone() {
        assert!(
            read.binary_search(&i).is_ok(),
            "byte {i} of `{}` must be read\n{trace}",
            buf.name()
        );
    }
    let base = buf.as_ptr() as isize;
    let lo = (base + needed.start).div_euclid(BLOCK) * BLOCK - base;
    let hi = (base + needed.end + BLOCK - 1).div_euclid(BLOCK) * BLOCK - base;
    for &i in &read {
        assert!(
            (lo..hi).contains(&i),
            "byte {i} of `{}` was read, outside the 64-byte blocks {lo}..{hi} of the bytes \
             it must read\n{trace}",
            buf.name()
        );
    }
}

fn memcpy_exact(t: &mut Tracer, n: usize) -> Trace {
    let src = t.buffer_from("src", &pattern(n, 3));
    let mut dst = t.buffer("dst", n);
    let f: MemcpyFn = black_box(libc::memcpy);
    let (_, trace) = t.call(|| {
        // SAFETY: both buffers hold n bytes and do not overlap.
        unsafe { f(dst.as_mut_ptr().cast(), src.as_ptr().cast(), n) }
    });
    assert_clean(&trace);
    assert_eq!(trace.written(&dst).ranges(), &[0..n], "\n{trace}");
    assert!(trace.written(&src).is_empty());
    assert!(trace.read(&dst).is_empty(), "\n{trace}");
    assert_reads_within_blocks(&trace, &src, 0..n as isize);
    assert!(trace.out_of_bounds().is_empty(), "\n{trace}");
    assert_eq!(&dst[..], &src[..]);
    trace
}

#[traced_ffi]
fn memcpy_100_bytes_writes_exactly_dst_and_reads_exactly_src(t: &mut Tracer) {
    memcpy_exact(t, 100);
}

#[traced_ffi]
fn memcpy_4k_writes_exactly_dst_and_reads_exactly_src(t: &mut Tracer) {
    memcpy_exact(t, 4096);
}

#[traced_ffi]
fn memcpy_1mib_writes_exactly_dst_in_few_stops(t: &mut Tracer) {
    let trace = memcpy_exact(t, 1 << 20);
    // Above its non-temporal threshold glibc copies with vector loads and
    // non-temporal stores (below it, with `rep movsb`): 32 bytes per access with
    // AVX2, 64 with AVX-512, as the CPU has; so at least 32 bytes per fault, one
    // stop per fault.
    let s = trace.stats();
    let n = 1u64 << 20;
    assert!(s.faults <= 2 * n / 32 + 16, "{s:?}");
    if s.cache_entries == 0 {
        assert_eq!(s.stops, s.faults + 2, "{s:?}");
    } else {
        // The code cache takes the loop: a stop per entry, and one per
        // 512 KiB of access log (the log of 1 MiB of 32-byte moves is under
        // 4 MiB).
        assert!(s.faults <= 32 && s.stops <= s.faults + 2 + 8, "{s:?}");
    }
}

fn memmove_overlapping(t: &mut Tracer, from: usize, to: usize) {
    const N: usize = 300;
    let data = pattern(N + 64, 9);
    let mut buf = t.buffer_from("buf", &data);
    let f: MemcpyFn = black_box(libc::memmove);
    let p = buf.as_mut_ptr();
    let (_, trace) = t.call(|| {
        // SAFETY: both ranges lie inside the N + 64 byte buffer; memmove allows overlap.
        unsafe { f(p.add(to).cast(), p.add(from).cast(), N) }
    });
    assert_clean(&trace);
    let mut expected = data.clone();
    expected.copy_within(from..from + N, to);
    assert_eq!(&buf[..], &expected[..]);
    assert_eq!(trace.written(&buf).ranges(), &[to..to + N], "\n{trace}");
    let from = from as isize;
    assert_reads_within_blocks(&trace, &buf, from..from + N as isize);
}

#[traced_ffi]
fn memmove_forward_overlap_writes_exactly_the_destination(t: &mut Tracer) {
    memmove_overlapping(t, 0, 40);
}

#[traced_ffi]
fn memmove_backward_overlap_writes_exactly_the_destination(t: &mut Tracer) {
    memmove_overlapping(t, 40, 0);
}

fn memset_exact(t: &mut Tracer, n: usize) {
    let mut buf = t.buffer("buf", n + 8);
    let f: MemsetFn = black_box(libc::memset);
    let (_, trace) = t.call(|| {
        // SAFETY: the buffer holds n + 8 >= n bytes.
        unsafe { f(buf.as_mut_ptr().cast(), 0x5a, n) }
    });
    assert_clean(&trace);
    assert_eq!(trace.written(&buf).ranges(), &[0..n], "\n{trace}");
    assert!(trace.read(&buf).is_empty(), "\n{trace}");
    assert!(trace.out_of_bounds().is_empty(), "\n{trace}");
    assert!(buf[..n].iter().all(|&b| b == 0x5a));
    assert!(buf[n..].iter().all(|&b| b == 0));
}

#[traced_ffi]
fn memset_33_bytes_writes_exactly_33(t: &mut Tracer) {
    memset_exact(t, 33);
}

#[traced_ffi]
fn memset_64k_writes_exactly_64k(t: &mut Tracer) {
    memset_exact(t, 64 << 10);
}

#[traced_ffi]
fn memcmp_reads_both_up_to_the_first_difference_and_writes_nothing(t: &mut Tracer) {
    const N: usize = 200;
    let a = t.buffer_from("a", &pattern(N, 1));
    let mut other = pattern(N, 1);
    other[150] ^= 0xff;
    let b = t.buffer_from("b", &other);
    let f: MemcmpFn = black_box(libc::memcmp);
    // SAFETY: both buffers hold N bytes.
    let (r, trace) = t.call(|| unsafe { f(a.as_ptr().cast(), b.as_ptr().cast(), N) });
    assert_clean(&trace);
    assert_ne!(r, 0);
    for buf in [&a, &b] {
        assert!(trace.written(buf).is_empty(), "\n{trace}");
        assert_reads_within_blocks(&trace, buf, 0..151);
    }
}

#[traced_ffi]
fn strlen_reads_the_string_and_its_terminator_within_aligned_vectors(t: &mut Tracer) {
    let mut s = vec![b'x'; 100];
    s.push(0);
    s.extend_from_slice(&[b'y'; 27]);
    let buf = t.buffer_from("s", &s);
    let f: StrlenFn = black_box(libc::strlen);
    // SAFETY: `s` holds a NUL at offset 100.
    let (len, trace) = t.call(|| unsafe { f(buf.as_ptr().cast()) });
    assert_clean(&trace);
    assert_eq!(len, 100);
    assert!(trace.written(&buf).is_empty());
    assert_reads_within_blocks(&trace, &buf, 0..101);
}

#[traced_ffi]
fn strcpy_writes_exactly_the_string_and_its_terminator(t: &mut Tracer) {
    let mut s = vec![b'q'; 77];
    s.push(0);
    let src = t.buffer_from("src", &s);
    let mut dst = t.buffer("dst", 128);
    let f: StrcpyFn = black_box(libc::strcpy);
    let (_, trace) = t.call(|| {
        // SAFETY: `src` is NUL-terminated at 77 and `dst` holds 128 bytes.
        unsafe { f(dst.as_mut_ptr().cast(), src.as_ptr().cast()) }
    });
    assert_clean(&trace);
    assert_eq!(trace.written(&dst).ranges(), &[0..78], "\n{trace}");
    assert!(trace.written(&src).is_empty());
    assert_reads_within_blocks(&trace, &src, 0..78);
    assert_eq!(&dst[..78], &s[..]);
}

#[traced_ffi]
fn strcmp_reads_both_strings_up_to_the_difference(t: &mut Tracer) {
    let a = t.buffer_from("a", b"hello, traced world\0");
    let b = t.buffer_from("b", b"hello, traced wOrld\0");
    let f: StrcmpFn = black_box(libc::strcmp);
    // SAFETY: both are NUL-terminated.
    let (r, trace) = t.call(|| unsafe { f(a.as_ptr().cast(), b.as_ptr().cast()) });
    assert_clean(&trace);
    assert!(r > 0);
    for buf in [&a, &b] {
        assert!(trace.written(buf).is_empty());
        assert_reads_within_blocks(&trace, buf, 0..16);
    }
}

#[traced_ffi]
fn memchr_reads_up_to_the_byte_found(t: &mut Tracer) {
    let mut data = pattern(500, 0x11);
    for b in &mut data {
        if *b == 0xee {
            *b = 0;
        }
    }
    data[321] = 0xee;
    let buf = t.buffer_from("hay", &data);
    let f: MemchrFn = black_box(libc::memchr);
    // SAFETY: the buffer holds 500 bytes.
    let (p, trace) = t.call(|| unsafe { f(buf.as_ptr().cast(), 0xee, 500) });
    assert_clean(&trace);
    assert_eq!(p as usize - buf.as_ptr() as usize, 321);
    assert!(trace.written(&buf).is_empty());
    assert_reads_within_blocks(&trace, &buf, 0..322);
}

extern "C" fn compare_u32(a: *const c_void, b: *const c_void) -> c_int {
    // A plain dereference keeps the load in this function (no call to `ptr::read`).
    // SAFETY: qsort passes two elements of the 4-aligned u32 array it sorts.
    let (a, b) = unsafe { (*a.cast::<u32>(), *b.cast::<u32>()) };
    a.cmp(&b) as c_int
}

#[traced_ffi]
fn qsort_with_a_rust_comparator_reads_and_writes_only_the_array(t: &mut Tracer) {
    const N: usize = 40;
    let values: Vec<u32> = (0..N as u32).map(|i| (i * 7919) % 101).collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = t.buffer_from("array", &bytes);
    let p = buf.as_mut_ptr();
    let ((), trace) = t.call(|| {
        // SAFETY: the buffer holds N u32 and the comparator reads two of them.
        unsafe { libc::qsort(p.cast(), N, 4, Some(compare_u32)) }
    });
    assert_clean(&trace);
    let mut sorted = values.clone();
    sorted.sort_unstable();
    let got: Vec<u32> = buf
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, sorted);
    assert!(trace.out_of_bounds().is_empty(), "\n{trace}");
    assert_eq!(trace.read(&buf).ranges(), &[0..4 * N], "\n{trace}");
    assert!(
        trace
            .written(&buf)
            .ranges()
            .iter()
            .all(|r| r.end <= 4 * N && r.start % 4 == 0),
        "\n{trace}"
    );
    assert!(
        trace
            .accesses()
            .iter()
            .any(|a| traced_ffi::describe_ip(a.ip).contains("compare_u32")),
        "the comparator's reads are recorded at its own address\n{trace}"
    );
}

#[traced_ffi]
fn snprintf_writes_exactly_the_formatted_text_and_its_terminator(t: &mut Tracer) {
    let mut out = t.buffer("out", 64);
    let p = out.as_mut_ptr();
    let (n, trace) = t.call(|| {
        // SAFETY: `out` holds 64 bytes; the format takes one int.
        unsafe { libc::snprintf(p.cast(), 64, c"value=%d!".as_ptr(), 12345 as c_int) }
    });
    assert_clean(&trace);
    assert_eq!(n, 12);
    assert_eq!(&out[..13], b"value=12345!\0");
    assert_eq!(trace.written(&out).ranges(), &[0..13], "\n{trace}");
    assert!(out[13..].iter().all(|&b| b == 0));
}
