//! AVX-512 memory forms from the corpus (`traced_ffi_fixtures::forms`): `vmovdqu64
//! zmm` loads and stores, `vmovntdq zmm`, opmask loads (`{k}` merging, `{k}{z}`
//! zeroing) and stores (`vmovdqu32/8` zmm, `vmovdqu16` ymm), `vpgatherdd zmm{k}`,
//! `vpscatterdd`, `vpcompressd [m]{k}` and `vpexpandd zmm{k}, [m]`.
//!
//! Unmasked: one access of 64 bytes. Opmask moves: one access per maximal run of
//! consecutive enabled elements, in ascending address order; an all-zero mask makes
//! no access. Gathers: one read per enabled element, in element-index order; scatters
//! one write per enabled element, in element-index order. `vpcompressd` is one write,
//! `vpexpandd` one read, of `4 * popcount(k)` bytes at the operand. Every test is
//! skipped, saying so, on a CPU without the AVX-512 subsets it needs.

use std::ops::Range;

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::forms::*;

use crate::check::{Want, assert_exact, at, pattern};
use crate::forms_simd::load_then_store;

/// Whether AVX-512F (and, with `bw_vl`, AVX-512BW and VL) is there; says why not.
fn avx512_or_skip(test: &str, bw_vl: bool) -> bool {
    if !std::arch::is_x86_feature_detected!("avx512f") {
        println!("skipped: {test}: CPU lacks AVX-512F");
        return false;
    }
    if bw_vl
        && !(std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl"))
    {
        println!("skipped: {test}: CPU lacks AVX-512BW/VL");
        return false;
    }
    true
}

/// u32 elements 0-1, 4-7 and 13-15 enabled: byte runs [0, 8), [16, 32), [52, 64).
const K: u16 = 0b1110_0000_1111_0011;
const K_RUNS: [Range<usize>; 3] = [0..8, 16..32, 52..64];

#[traced_ffi]
fn vmovdqu64_zmm_load_and_store_are_64_bytes(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), false) {
        load_then_store(t, form_vmovdqu64_zmm_copy, "form_vmovdqu64_zmm_copy", 64, 6);
    }
}

#[traced_ffi]
fn vmovntdq_zmm_is_a_64_byte_write(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), false) {
        load_then_store(t, form_vmovntdq_zmm, "form_vmovntdq_zmm", 64, 6);
    }
}

type MaskedLoad = unsafe extern "C" fn(*mut u8, *const u8, u16);

/// An opmask load from a traced 64-byte `src` with [`K`] (reads of [`K_RUNS`]), then
/// with k = 0 (no access). `dst` is untraced.
fn opmask_load(t: &mut Tracer, f: MaskedLoad, symbol: &str, offset: u32) {
    let data = pattern(64, 30);
    let src = t.buffer_from("src", &data);
    let mut untraced = [0x11u8; 64];
    // SAFETY: 64 bytes each; AVX-512F checked by the caller.
    unsafe { f(untraced.as_mut_ptr(), data.as_ptr(), K) };
    let mut out = [0x11u8; 64];
    let (o, s) = (out.as_mut_ptr(), src.as_ptr());
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(o, s, K) });
    assert_eq!(out, untraced);
    let want: Vec<Want> = K_RUNS
        .iter()
        .map(|r| {
            Want::read(
                &src,
                r.start as isize,
                &data[r.clone()],
                &at(symbol, offset),
            )
        })
        .collect();
    assert_exact!(trace, want);
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(o, s, 0) });
    assert_exact!(trace, []);
}

#[traced_ffi]
fn vmovdqu32_merging_opmask_load_is_one_read_per_run(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), false) {
        let sym = "form_vmovdqu32_load_merge";
        opmask_load(t, form_vmovdqu32_load_merge, sym, 0xa);
    }
}

#[traced_ffi]
fn vmovdqu32_zeroing_opmask_load_is_one_read_per_run(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), false) {
        let sym = "form_vmovdqu32_load_zero";
        opmask_load(t, form_vmovdqu32_load_zero, sym, 0x4);
    }
}

/// An opmask store of an untraced 64-byte `src` to a traced 64-byte `dst` with mask
/// `k`: one write per run in `runs`, then with k = 0 nothing.
fn opmask_store<K: Copy + Default>(
    t: &mut Tracer,
    f: unsafe extern "C" fn(*mut u8, *const u8, K),
    symbol: &str,
    offset: u32,
    k: K,
    runs: &[Range<usize>],
) {
    let data = pattern(64, 31);
    let mut untraced = [0u8; 64];
    // SAFETY: 64 bytes each; the features were checked by the caller.
    unsafe { f(untraced.as_mut_ptr(), data.as_ptr(), k) };
    let mut dst = t.buffer("dst", 64);
    let (d, s) = (dst.as_mut_ptr(), data.as_ptr());
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(d, s, k) });
    assert_eq!(&dst[..], &untraced[..]);
    let want: Vec<Want> = runs
        .iter()
        .map(|r| {
            Want::write(
                &dst,
                r.start as isize,
                &data[r.clone()],
                &at(symbol, offset),
            )
        })
        .collect();
    assert_exact!(trace, want);
    dst.fill(0);
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { f(d, s, K::default()) });
    assert_eq!(&dst[..], &[0; 64]);
    assert_exact!(trace, []);
}

#[traced_ffi]
fn vmovdqu32_opmask_store_is_one_write_per_run(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), false) {
        let sym = "form_vmovdqu32_store_mask";
        opmask_store(t, form_vmovdqu32_store_mask, sym, 0xa, K, &K_RUNS);
    }
}

/// Bytes 0, 8..12 and 60..64 enabled.
#[traced_ffi]
fn vmovdqu8_opmask_store_is_one_write_per_run_of_bytes(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), true) {
        let (sym, k) = ("form_vmovdqu8_store_mask", 0xf000_0000_0000_0f01_u64);
        opmask_store(
            t,
            form_vmovdqu8_store_mask,
            sym,
            0xb,
            k,
            &[0..1, 8..12, 60..64],
        );
    }
}

/// u16 elements 1-2 and 15 of a ymm enabled: bytes [2, 6) and [30, 32).
#[traced_ffi]
fn vmovdqu16_ymm_opmask_store_is_one_write_per_run(t: &mut Tracer) {
    if avx512_or_skip(t.test_name(), true) {
        let (sym, k) = ("form_vmovdqu16_store_mask_ymm", 0b1000_0000_0000_0110_u16);
        opmask_store(
            t,
            form_vmovdqu16_store_mask_ymm,
            sym,
            0xa,
            k,
            &[2..6, 30..32],
        );
    }
}

/// Distinct indices; the enabled elements (of [`K`]) in element order.
const IDX: [i32; 16] = [9, 3, 15, 0, 12, 1, 7, 2, 14, 4, 11, 6, 13, 5, 10, 8];

/// Byte offsets of the enabled elements' u32s, in element-index order.
fn enabled_offsets() -> Vec<usize> {
    (0..16)
        .filter(|i| K >> i & 1 == 1)
        .map(|i| 4 * IDX[i] as usize)
        .collect()
}

#[traced_ffi]
fn vpgatherdd_zmm_is_one_read_per_enabled_element_in_element_order(t: &mut Tracer) {
    if !avx512_or_skip(t.test_name(), false) {
        return;
    }
    let data = pattern(64, 32);
    let base = t.buffer_from("base", &data);
    let mut untraced = [0u8; 64];
    // SAFETY: indices 0..16 of 64 bytes; AVX-512F checked.
    unsafe { form_vpgatherdd_zmm(untraced.as_mut_ptr(), data.as_ptr(), IDX.as_ptr(), K) };
    let mut out = [0u8; 64];
    let (o, b, i) = (out.as_mut_ptr(), base.as_ptr(), IDX.as_ptr());
    // SAFETY: as above; `out` and the indices are ordinary memory.
    let ((), trace) = t.call(|| unsafe { form_vpgatherdd_zmm(o, b, i, K) });
    assert_eq!(out, untraced);
    let at = at("form_vpgatherdd_zmm", 0x10);
    let want: Vec<Want> = enabled_offsets()
        .into_iter()
        .map(|off| Want::read(&base, off as isize, &data[off..off + 4], &at))
        .collect();
    assert_eq!(want.len(), 9);
    assert_exact!(trace, want);
}

#[traced_ffi]
fn vpscatterdd_is_one_write_per_enabled_element_in_element_order(t: &mut Tracer) {
    if !avx512_or_skip(t.test_name(), false) {
        return;
    }
    let data = pattern(64, 33);
    let mut untraced = [0u8; 64];
    // SAFETY: indices 0..16 of 64 bytes; AVX-512F checked.
    unsafe { form_vpscatterdd_zmm(untraced.as_mut_ptr(), data.as_ptr(), IDX.as_ptr(), K) };
    let mut base = t.buffer("base", 64);
    let (b, s, i) = (base.as_mut_ptr(), data.as_ptr(), IDX.as_ptr());
    // SAFETY: as above; the source and the indices are ordinary memory.
    let ((), trace) = t.call(|| unsafe { form_vpscatterdd_zmm(b, s, i, K) });
    assert_eq!(&base[..], &untraced[..]);
    let at = at("form_vpscatterdd_zmm", 0x10);
    let want: Vec<Want> = (0..16)
        .filter(|i| K >> i & 1 == 1)
        .map(|i| {
            let off = 4 * IDX[i] as usize;
            Want::write(&base, off as isize, &data[4 * i..4 * i + 4], &at)
        })
        .collect();
    assert_exact!(trace, want);
}

/// 9 enabled elements: one write of 36 bytes at the operand.
#[traced_ffi]
fn vpcompressd_store_is_one_write_of_the_packed_elements(t: &mut Tracer) {
    if !avx512_or_skip(t.test_name(), false) {
        return;
    }
    let data = pattern(64, 34);
    let mut dst = t.buffer("dst", 64);
    let (d, s) = (dst.as_mut_ptr(), data.as_ptr());
    // SAFETY: 64 bytes each; AVX-512F checked.
    let ((), trace) = t.call(|| unsafe { form_vpcompressd_store(d, s, K) });
    let packed: Vec<u8> = (0..16)
        .filter(|i| K >> i & 1 == 1)
        .flat_map(|i| data[4 * i..4 * i + 4].to_vec())
        .collect();
    assert_eq!(packed.len(), 36);
    assert_eq!(&dst[..36], &packed[..]);
    assert_eq!(&dst[36..], &[0; 28]);
    assert_exact!(
        trace,
        [Want::write(
            &dst,
            0,
            &packed,
            &at("form_vpcompressd_store", 0xa)
        )]
    );
}

/// 9 enabled elements: one read of 36 bytes at the operand.
#[traced_ffi]
fn vpexpandd_load_is_one_read_of_the_packed_elements(t: &mut Tracer) {
    if !avx512_or_skip(t.test_name(), false) {
        return;
    }
    let data = pattern(64, 35);
    let src = t.buffer_from("src", &data);
    let mut untraced = [0u8; 64];
    // SAFETY: 64 bytes each; AVX-512F checked.
    unsafe { form_vpexpandd_load(untraced.as_mut_ptr(), data.as_ptr(), K) };
    let mut out = [0u8; 64];
    let (o, s) = (out.as_mut_ptr(), src.as_ptr());
    // SAFETY: as above; `out` is ordinary memory.
    let ((), trace) = t.call(|| unsafe { form_vpexpandd_load(o, s, K) });
    assert_eq!(out, untraced);
    assert_exact!(
        trace,
        [Want::read(
            &src,
            0,
            &data[..36],
            &at("form_vpexpandd_load", 0x4)
        )]
    );
}
