//! SSE and AVX loads and stores: one 16- or 32-byte access per instruction, with all
//! of its bytes, including a load folded into `vpaddd` and one that crosses a page.

use traced_ffi::Tracer;

use crate::check::{Expected, assert_accesses, assert_paths, avx2_or_skip, pattern};
use crate::levels::{Level, at_both_levels};

fn copy16_sse_reads_16_then_writes_16(t: &mut Tracer, level: &Level) {
    let data = pattern(16, 21);
    let mut untraced = [0u8; 16];
    // SAFETY: `data` is readable and `untraced` writable for 16 bytes.
    unsafe { (level.copy16_sse)(untraced.as_mut_ptr(), data.as_ptr()) };

    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 16);
    // SAFETY: `src` is readable and `dst` writable for 16 bytes.
    let ((), trace) = t.call(|| unsafe { (level.copy16_sse)(dst.as_mut_ptr(), src.as_ptr()) });

    let [read, write] = level.sites.copy16_sse;
    assert_accesses!(
        trace,
        [
            Expected::read(&src, 0, &data, read),
            Expected::write(&dst, 0, &data, write),
        ]
    );
    assert_eq!(trace.read(&src).ranges(), &[0..16]);
    assert_eq!(trace.written(&dst).ranges(), &[0..16]);
    assert!(trace.written(&src).is_empty() && trace.read(&dst).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read, 1), (write, 1)]);
    assert_eq!(&dst[..], &untraced[..]);
    assert_eq!(&dst[..], &data[..]);
}

at_both_levels!(copy16_sse_reads_16_then_writes_16 =>
    copy16_sse_o0_makes_one_16_byte_read_then_one_16_byte_write,
    copy16_sse_o2_makes_one_16_byte_read_then_one_16_byte_write);

/// A 16-byte load whose bytes lie on two pages of the buffer: one fault, one access.
fn copy16_sse_page_crossing_load_is_one_access(t: &mut Tracer, level: &Level) {
    const PAGE: usize = 4096;
    // The buffer's end is page-aligned, so with PAGE + 24 bytes the page boundary is
    // at offset 24, and a load from offset 16 reads 8 bytes on each side.
    const LEN: usize = PAGE + 24;
    const FROM: usize = 16;
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8 + 1).collect();
    let src = t.buffer_from("src", &data);
    assert_eq!(
        (src.as_ptr() as usize + 24) % PAGE,
        0,
        "boundary at offset 24"
    );
    let mut dst = t.buffer("dst", 16);
    // SAFETY: src[FROM..FROM + 16] is readable and `dst` writable for 16 bytes.
    let ((), trace) =
        t.call(|| unsafe { (level.copy16_sse)(dst.as_mut_ptr(), src.as_ptr().add(FROM)) });

    let [read, write] = level.sites.copy16_sse;
    let bytes = &data[FROM..FROM + 16];
    assert_accesses!(
        trace,
        [
            Expected::read(&src, FROM as isize, bytes, read),
            Expected::write(&dst, 0, bytes, write),
        ]
    );
    assert_eq!(trace.read(&src).ranges(), &[FROM..FROM + 16]);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read, 1), (write, 1)]);
    assert_eq!(&dst[..], bytes);
}

at_both_levels!(copy16_sse_page_crossing_load_is_one_access =>
    copy16_sse_o0_load_crossing_a_page_boundary_is_one_16_byte_access,
    copy16_sse_o2_load_crossing_a_page_boundary_is_one_16_byte_access);

fn copy32_avx_reads_32_then_writes_32(t: &mut Tracer, level: &Level) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let data = pattern(32, 77);
    let mut untraced = [0u8; 32];
    // SAFETY: `data` is readable and `untraced` writable for 32 bytes; AVX2 was checked.
    unsafe { (level.copy32_avx)(untraced.as_mut_ptr(), data.as_ptr()) };

    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 32);
    // SAFETY: `src` is readable and `dst` writable for 32 bytes; AVX2 was checked.
    let ((), trace) = t.call(|| unsafe { (level.copy32_avx)(dst.as_mut_ptr(), src.as_ptr()) });

    let [read, write] = level.sites.copy32_avx;
    assert_accesses!(
        trace,
        [
            Expected::read(&src, 0, &data, read),
            Expected::write(&dst, 0, &data, write),
        ]
    );
    assert_eq!(trace.read(&src).ranges(), &[0..32]);
    assert_eq!(trace.written(&dst).ranges(), &[0..32]);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read, 1), (write, 1)]);
    assert_eq!(&dst[..], &untraced[..]);
    assert_eq!(&dst[..], &data[..]);
}

at_both_levels!(copy32_avx_reads_32_then_writes_32 =>
    copy32_avx_o0_makes_one_32_byte_read_then_one_32_byte_write,
    copy32_avx_o2_makes_one_32_byte_read_then_one_32_byte_write);

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Reads all of `a`, then all of `b` (at `-O2` folded into `vpaddd`), then writes all
/// of `dst`: three 32-byte accesses.
fn add8_i32_avx2_reads_a_and_b_then_writes_dst(t: &mut Tracer, level: &Level) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let a_in = [1, -2, 3, i32::MAX, 5, 6, 7, i32::MIN];
    let b_in = [10, 20, -30, 1, 50, 60, 70, -1];
    let mut untraced = [0i32; 8];
    // SAFETY: a_in and b_in are readable, `untraced` writable, 8 i32s each; AVX2 was
    // checked.
    unsafe { (level.add8_i32_avx2)(untraced.as_mut_ptr(), a_in.as_ptr(), b_in.as_ptr()) };

    let a = t.buffer_from("a", &i32_bytes(&a_in));
    let b = t.buffer_from("b", &i32_bytes(&b_in));
    let mut dst = t.buffer("dst", 32);
    let (pa, pb) = (a.as_ptr().cast::<i32>(), b.as_ptr().cast::<i32>());
    let pd = dst.as_mut_ptr().cast::<i32>();
    // SAFETY: `a`, `b` readable and `dst` writable for 8 i32s, 4-aligned (page-aligned
    // ends, 32-byte lengths); AVX2 was checked.
    let ((), trace) = t.call(|| unsafe { (level.add8_i32_avx2)(pd, pa, pb) });

    let sum: Vec<i32> = a_in
        .iter()
        .zip(&b_in)
        .map(|(x, y)| x.wrapping_add(*y))
        .collect();
    let [read_a, read_b, write] = level.sites.add8_i32_avx2;
    assert_accesses!(
        trace,
        [
            Expected::read(&a, 0, &i32_bytes(&a_in), read_a),
            Expected::read(&b, 0, &i32_bytes(&b_in), read_b),
            Expected::write(&dst, 0, &i32_bytes(&sum), write),
        ]
    );
    assert_eq!(trace.read(&a).ranges(), &[0..32]);
    assert_eq!(trace.read(&b).ranges(), &[0..32]);
    assert_eq!(trace.written(&dst).ranges(), &[0..32]);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read_a, 1), (read_b, 1), (write, 1)]);
    assert_eq!(&dst[..], &i32_bytes(&untraced)[..]);
    assert_eq!(untraced.as_slice(), sum.as_slice());
}

at_both_levels!(add8_i32_avx2_reads_a_and_b_then_writes_dst =>
    add8_i32_avx2_o0_reads_a_32_bytes_then_b_32_bytes_then_writes_dst_32_bytes,
    add8_i32_avx2_o2_reads_a_32_bytes_then_b_32_bytes_in_vpaddd_then_writes_dst_32_bytes);
