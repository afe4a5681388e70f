//! SSE, AVX and AVX2 memory forms from the corpus (`traced_ffi_fixtures::forms`):
//! loads and stores of every width (movd/movq/movss/movsd 4/8, movups/movdqu/movaps 16,
//! movhps/movlps 8, pinsrb/pextrb 1, vmovdqu ymm 32, vinserti128/vextracti128 16,
//! vbroadcastss 4, vpmovzxbd 8), non-temporal stores (movnti, movntdq, vmovntdq ymm),
//! masked moves (vmaskmovps, vpmaskmovd, vpmaskmovq, maskmovdqu) and the AVX2 gather.
//!
//! A plain load or store is one access of the instruction's memory size. A masked
//! move is one access per maximal run of consecutive enabled elements, in ascending
//! address order, with that run's bytes; an all-zero mask makes no access. A gather
//! is one read per enabled element, in element-index order. Masks, indices and the
//! other side of each masked move live in ordinary (untraced) memory.

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::forms::*;

use crate::check::{Want, assert_exact, at, avx2_or_skip, pattern};

pub(crate) type CopyFn = unsafe extern "C" fn(*mut u8, *const u8);

/// `f(dst, src)` between two `len`-byte buffers (so both are `len`-aligned, `len` a
/// power of two): a read of src at `symbol+0x0`, then a write of dst at
/// `symbol+store`, with the same bytes; dst equals an untraced copy.
pub(crate) fn load_then_store(t: &mut Tracer, f: CopyFn, symbol: &str, len: usize, store: u32) {
    let data = pattern(len, len as u8);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", len);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: `len` bytes each, aligned to `len` (a page end minus `len`).
    let ((), trace) = t.call(|| unsafe { f(d, s) });
    assert_eq!(&dst[..], &data[..]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &data, &at(symbol, 0)),
            Want::write(&dst, 0, &data, &at(symbol, store)),
        ]
    );
}

#[traced_ffi]
fn movd_load_and_store_are_4_bytes(t: &mut Tracer) {
    load_then_store(t, form_movd_copy, "form_movd_copy", 4, 4);
}

#[traced_ffi]
fn movq_load_and_store_are_8_bytes(t: &mut Tracer) {
    load_then_store(t, form_movq_copy, "form_movq_copy", 8, 4);
}

#[traced_ffi]
fn movss_load_and_store_are_4_bytes(t: &mut Tracer) {
    load_then_store(t, form_movss_copy, "form_movss_copy", 4, 4);
}

#[traced_ffi]
fn movsd_sse2_load_and_store_are_8_bytes(t: &mut Tracer) {
    load_then_store(t, form_movsd_copy, "form_movsd_copy", 8, 4);
}

#[traced_ffi]
fn movups_load_and_store_are_16_bytes(t: &mut Tracer) {
    load_then_store(t, form_movups_copy, "form_movups_copy", 16, 3);
}

#[traced_ffi]
fn movdqu_load_and_store_are_16_bytes(t: &mut Tracer) {
    load_then_store(t, form_movdqu_copy, "form_movdqu_copy", 16, 4);
}

#[traced_ffi]
fn movaps_aligned_load_and_store_are_16_bytes(t: &mut Tracer) {
    load_then_store(t, form_movaps_copy, "form_movaps_copy", 16, 3);
}

#[traced_ffi]
fn pinsrb_and_pextrb_are_1_byte(t: &mut Tracer) {
    load_then_store(t, form_pinsrb_pextrb, "form_pinsrb_pextrb", 1, 6);
}

#[traced_ffi]
fn vmovdqu_ymm_load_and_store_are_32_bytes(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        load_then_store(t, form_vmovdqu_ymm_copy, "form_vmovdqu_ymm_copy", 32, 4);
    }
}

#[traced_ffi]
fn vinserti128_and_vextracti128_are_16_bytes(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let sym = "form_vinserti128_vextracti128";
        load_then_store(t, form_vinserti128_vextracti128, sym, 16, 6);
    }
}

#[traced_ffi]
fn movhps_and_movlps_loads_and_stores_are_8_bytes_each(t: &mut Tracer) {
    let data = pattern(16, 20);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 16);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 16 bytes each.
    let ((), trace) = t.call(|| unsafe { form_movhps_movlps_swap(d, s) });
    assert_eq!(&dst[..8], &data[8..]);
    assert_eq!(&dst[8..], &data[..8]);
    let at = |off| at("form_movhps_movlps_swap", off);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &data[..8], &at(0x0)),
            Want::read(&src, 8, &data[8..], &at(0x3)),
            Want::write(&dst, 0, &data[8..], &at(0x7)),
            Want::write(&dst, 8, &data[..8], &at(0xa)),
        ]
    );
}

#[traced_ffi]
fn vbroadcastss_reads_4_bytes(t: &mut Tracer) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let src = t.buffer_from("src", &[1, 2, 3, 4]);
    let mut dst = t.buffer("dst", 32);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 4 and 32 bytes; AVX checked.
    let ((), trace) = t.call(|| unsafe { form_vbroadcastss(d, s) });
    let eight: Vec<u8> = [1, 2, 3, 4].repeat(8);
    assert_eq!(&dst[..], &eight[..]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &[1, 2, 3, 4], &at("form_vbroadcastss", 0)),
            Want::write(&dst, 0, &eight, &at("form_vbroadcastss", 5)),
        ]
    );
}

#[traced_ffi]
fn vpmovzxbd_from_memory_reads_8_bytes(t: &mut Tracer) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let data = pattern(8, 21);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 32);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 8 and 32 bytes; AVX2 checked.
    let ((), trace) = t.call(|| unsafe { form_vpmovzxbd(d, s) });
    let wide: Vec<u8> = data
        .iter()
        .flat_map(|&b| u32::from(b).to_le_bytes())
        .collect();
    assert_eq!(&dst[..], &wide[..]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &data, &at("form_vpmovzxbd", 0)),
            Want::write(&dst, 0, &wide, &at("form_vpmovzxbd", 5)),
        ]
    );
}

#[traced_ffi]
fn movnti_is_an_8_byte_write(t: &mut Tracer) {
    let mut dst = t.buffer("dst", 8);
    let d = dst.as_mut_ptr();
    // SAFETY: 8 bytes.
    let ((), trace) = t.call(|| unsafe { form_movnti(d, 0x0807_0605_0403_0201) });
    assert_eq!(&dst[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_exact!(
        trace,
        [Want::write(
            &dst,
            0,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &at("form_movnti", 0)
        )]
    );
}

#[traced_ffi]
fn movntdq_is_a_16_byte_write(t: &mut Tracer) {
    load_then_store(t, form_movntdq, "form_movntdq", 16, 4);
}

#[traced_ffi]
fn vmovntdq_ymm_is_a_32_byte_write(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        load_then_store(t, form_vmovntdq_ymm, "form_vmovntdq_ymm", 32, 4);
    }
}

/// u32 mask elements 1, 2 and 5 enabled: runs at bytes [4, 12) and [20, 24).
const MASK_D: [u32; 8] = [0, 0x8000_0000, u32::MAX, 0x7fff_ffff, 0, 0x8000_0001, 1, 0];
/// u64 mask elements 0, 1 and 3 enabled: runs at bytes [0, 16) and [24, 32).
const MASK_Q: [u64; 4] = [1 << 63, u64::MAX, 1, 1 << 63];

type Masked<M> = unsafe extern "C" fn(*mut u8, *const u8, *const M);

/// A masked load from a traced 32-byte `src`: one read per run (`runs`, byte ranges),
/// then with an all-zero mask no access at all. `dst` and the mask are untraced.
fn masked_load<M: Copy + Default>(
    t: &mut Tracer,
    f: Masked<M>,
    symbol: &str,
    mask: &[M],
    runs: &[std::ops::Range<usize>],
) {
    let data = pattern(32, 22);
    let src = t.buffer_from("src", &data);
    let s = src.as_ptr();
    let mut untraced = [0u8; 32];
    // SAFETY: 32 bytes each.
    unsafe { f(untraced.as_mut_ptr(), data.as_ptr(), mask.as_ptr()) };
    let mut out = [0xeeu8; 32];
    let (o, m) = (out.as_mut_ptr(), mask.as_ptr());
    // SAFETY: as above; `out` and the mask are ordinary memory.
    let ((), trace) = t.call(|| unsafe { f(o, s, m) });
    assert_eq!(out, untraced);
    let want: Vec<Want> = runs
        .iter()
        .map(|r| Want::read(&src, r.start as isize, &data[r.clone()], &at(symbol, 4)))
        .collect();
    assert_exact!(trace, want);

    let zero = vec![M::default(); mask.len()];
    let z = zero.as_ptr();
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(o, s, z) });
    assert_eq!(out, [0; 32], "every element disabled reads as 0");
    assert_exact!(trace, []);
}

/// A masked store to a traced 32-byte `dst`: one write per run, with the bytes after;
/// an all-zero mask writes nothing. `src` and the mask are untraced.
fn masked_store<M: Copy + Default>(
    t: &mut Tracer,
    f: Masked<M>,
    symbol: &str,
    mask: &[M],
    runs: &[std::ops::Range<usize>],
) {
    let data = pattern(32, 23);
    let mut untraced = [0u8; 32];
    // SAFETY: 32 bytes each.
    unsafe { f(untraced.as_mut_ptr(), data.as_ptr(), mask.as_ptr()) };
    let mut dst = t.buffer("dst", 32);
    let (d, s, m) = (dst.as_mut_ptr(), data.as_ptr(), mask.as_ptr());
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(d, s, m) });
    assert_eq!(&dst[..], &untraced[..]);
    let want: Vec<Want> = runs
        .iter()
        .map(|r| Want::write(&dst, r.start as isize, &data[r.clone()], &at(symbol, 8)))
        .collect();
    assert_exact!(trace, want);

    let zero = vec![M::default(); mask.len()];
    let z = zero.as_ptr();
    dst.fill(0);
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(d, s, z) });
    assert_eq!(&dst[..], &[0; 32]);
    assert_exact!(trace, []);
}

#[traced_ffi]
fn vmaskmovps_load_is_one_read_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [4..12, 20..24];
        masked_load(
            t,
            form_vmaskmovps_load,
            "form_vmaskmovps_load",
            &MASK_D,
            &runs,
        );
    }
}

#[traced_ffi]
fn vmaskmovps_store_is_one_write_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [4..12, 20..24];
        masked_store(
            t,
            form_vmaskmovps_store,
            "form_vmaskmovps_store",
            &MASK_D,
            &runs,
        );
    }
}

#[traced_ffi]
fn vpmaskmovd_load_is_one_read_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [4..12, 20..24];
        masked_load(
            t,
            form_vpmaskmovd_load,
            "form_vpmaskmovd_load",
            &MASK_D,
            &runs,
        );
    }
}

#[traced_ffi]
fn vpmaskmovd_store_is_one_write_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [4..12, 20..24];
        masked_store(
            t,
            form_vpmaskmovd_store,
            "form_vpmaskmovd_store",
            &MASK_D,
            &runs,
        );
    }
}

#[traced_ffi]
fn vpmaskmovq_load_is_one_read_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [0..16, 24..32];
        masked_load(
            t,
            form_vpmaskmovq_load,
            "form_vpmaskmovq_load",
            &MASK_Q,
            &runs,
        );
    }
}

#[traced_ffi]
fn vpmaskmovq_store_is_one_write_per_run_of_enabled_elements(t: &mut Tracer) {
    if avx2_or_skip(t.test_name()) {
        let runs = [0..16, 24..32];
        masked_store(
            t,
            form_vpmaskmovq_store,
            "form_vpmaskmovq_store",
            &MASK_Q,
            &runs,
        );
    }
}

/// Bytes 1..4, 9 and 12..16 enabled: three writes.
#[traced_ffi]
fn maskmovdqu_is_one_write_per_run_of_enabled_bytes(t: &mut Tracer) {
    let mask: [u8; 16] = [
        0, 0x80, 0xff, 0x80, 0x7f, 0, 0, 0x01, 0, 0x80, 0, 0, 0x80, 0x80, 0x80, 0x80,
    ];
    let data = pattern(16, 24);
    let mut dst = t.buffer("dst", 16);
    let (d, s, m) = (dst.as_mut_ptr(), data.as_ptr(), mask.as_ptr());
    // SAFETY: 16 bytes each; src and mask are ordinary memory.
    let ((), trace) = t.call(|| unsafe { form_maskmovdqu(d, s, m) });
    let mut untraced = [0u8; 16];
    // SAFETY: as above.
    unsafe { form_maskmovdqu(untraced.as_mut_ptr(), s, m) };
    assert_eq!(&dst[..], &untraced[..]);
    let at = at("form_maskmovdqu", 8);
    assert_exact!(
        trace,
        [
            Want::write(&dst, 1, &data[1..4], &at),
            Want::write(&dst, 9, &data[9..10], &at),
            Want::write(&dst, 12, &data[12..16], &at),
        ]
    );
}

/// Indices [5, 1, 7, 0, 2, 6, 4, 3], elements 0, 1, 2, 4, 6 enabled: reads of the
/// u32s at 20, 4, 28, 8, 16, in that (element) order.
#[traced_ffi]
fn vpgatherdd_is_one_read_per_enabled_element_in_element_order(t: &mut Tracer) {
    if !avx2_or_skip(t.test_name()) {
        return;
    }
    let idx: [i32; 8] = [5, 1, 7, 0, 2, 6, 4, 3];
    let mask: [u32; 8] = [u32::MAX, u32::MAX, u32::MAX, 0, u32::MAX, 0, u32::MAX, 0];
    let data = pattern(32, 25);
    let base = t.buffer_from("base", &data);
    let mut untraced = [0u8; 32];
    // SAFETY: indices 0..8 of 32 bytes; AVX2 checked.
    unsafe {
        form_vpgatherdd(
            untraced.as_mut_ptr(),
            data.as_ptr(),
            idx.as_ptr(),
            mask.as_ptr(),
        )
    };
    let mut out = [0u8; 32];
    let (o, b, i, m) = (out.as_mut_ptr(), base.as_ptr(), idx.as_ptr(), mask.as_ptr());
    // SAFETY: as above; `out`, `idx` and `mask` are ordinary memory.
    let ((), trace) = t.call(|| unsafe { form_vpgatherdd(o, b, i, m) });
    assert_eq!(out, untraced);
    let at = at("form_vpgatherdd", 0xc);
    let want: Vec<Want> = [20usize, 4, 28, 8, 16]
        .iter()
        .map(|&off| Want::read(&base, off as isize, &data[off..off + 4], &at))
        .collect();
    assert_exact!(trace, want);
}
