//! String instructions from the form corpus (`traced_ffi_fixtures::forms`): `movs`,
//! `stos`, `lods`, `cmps`, `scas` in byte to qword sizes, with and without
//! `rep`/`repe`/`repne`, forwards (DF = 0) and backwards (DF = 1).
//!
//! The whole instruction is one access per buffer operand, covering every element it
//! consumed: `movs` reads the source range then writes the destination range, `stos`
//! writes, `lods` reads, `cmps` reads the rsi range then the rdi range, `scas` reads the
//! rdi range. `repe`/`repne` ranges stop at the element that ended the scan (included).
//! Backwards, the range starts at the last (lowest) element. A count of 0 touches
//! nothing. A call that runs one rep instruction costs one fault and at most 6 stops
//! (the two doorbells and at most 4 for the instruction).

use traced_ffi::{Trace, Tracer, traced_ffi};
use traced_ffi_fixtures::forms::*;

use crate::check::{Want, assert_exact, at, pattern};

/// One fault for the one rep instruction; at most 2 doorbells + 4 stops.
fn assert_one_rep_instruction(trace: &Trace) {
    let s = trace.stats();
    assert_eq!(
        s.faults, 1,
        "one fault for the whole rep instruction\n{trace}"
    );
    assert!(s.stops <= 6, "stops {} > 6\n{trace}", s.stops);
    assert!(trace.unsupported().is_empty(), "{trace}");
}

/// `rep movsb` of `n` bytes from a fresh buffer to another: one read of the source,
/// one write of the destination, and the destination equals an untraced copy.
fn rep_movsb_n(t: &mut Tracer, n: usize) {
    let data = pattern(n, 1);
    let mut untraced = vec![0u8; n];
    // SAFETY: both hold n bytes.
    unsafe { form_rep_movsb(untraced.as_mut_ptr(), data.as_ptr(), n) };

    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", n);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: both buffers hold n bytes.
    let ((), trace) = t.call(|| unsafe { form_rep_movsb(d, s, n) });
    assert_eq!(&dst[..], &untraced[..]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &data, &at("form_rep_movsb", 3)),
            Want::write(&dst, 0, &untraced, &at("form_rep_movsb", 3)),
        ]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn rep_movsb_1_byte_is_one_read_and_one_write_event(t: &mut Tracer) {
    rep_movsb_n(t, 1);
}

#[traced_ffi]
fn rep_movsb_4095_bytes_is_one_read_and_one_write_event(t: &mut Tracer) {
    rep_movsb_n(t, 4095);
}

#[traced_ffi]
fn rep_movsb_4k_is_one_read_and_one_write_event(t: &mut Tracer) {
    rep_movsb_n(t, 4096);
}

#[traced_ffi]
fn rep_movsb_1mib_is_one_read_and_one_write_event(t: &mut Tracer) {
    rep_movsb_n(t, 1 << 20);
}

#[traced_ffi]
fn rep_movsb_count_0_makes_no_access_and_no_fault(t: &mut Tracer) {
    let src = t.buffer_from("src", &[1, 2, 3, 4]);
    let mut dst = t.buffer("dst", 4);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: n = 0 accesses nothing.
    let ((), trace) = t.call(|| unsafe { form_rep_movsb(d, s, 0) });
    assert_eq!(&dst[..], &[0; 4]);
    assert_exact!(trace, []);
    assert_eq!(trace.stats().faults, 0, "{trace}");
}

/// 300 bytes from src[3900..4200] to dst[4000..4300]: both ranges cross the page
/// boundary at 4096 of their 8 KiB buffer; still one read and one write.
#[traced_ffi]
fn rep_movsb_across_a_page_boundary_is_one_read_and_one_write_event(t: &mut Tracer) {
    let data = pattern(8192, 2);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 8192);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 3900 + 300 and 4000 + 300 are within 8192 bytes.
    let ((), trace) = t.call(|| unsafe { form_rep_movsb(d.add(4000), s.add(3900), 300) });
    assert_eq!(&dst[4000..4300], &data[3900..4200]);
    assert!(dst[..4000].iter().chain(&dst[4300..]).all(|&b| b == 0));
    assert_exact!(
        trace,
        [
            Want::read(&src, 3900, &data[3900..4200], &at("form_rep_movsb", 3)),
            Want::write(&dst, 4000, &data[3900..4200], &at("form_rep_movsb", 3)),
        ]
    );
    assert_one_rep_instruction(&trace);
}

/// Source and destination in the same buffer, not overlapping: buf[0..100] to
/// buf[200..300]; a read at 0 and a write at 200 of the one region.
#[traced_ffi]
fn rep_movsb_within_one_buffer_reads_and_writes_the_same_region(t: &mut Tracer) {
    let mut data = pattern(100, 3);
    data.resize(300, 0);
    let mut buf = t.buffer_from("buf", &data);
    let p = buf.as_mut_ptr();
    // SAFETY: 200 + 100 <= 300.
    let ((), trace) = t.call(|| unsafe { form_rep_movsb(p.add(200), p, 100) });
    assert_eq!(&buf[200..300], &data[..100]);
    assert_eq!(&buf[..200], &data[..200]);
    assert_exact!(
        trace,
        [
            Want::read(&buf, 0, &data[..100], &at("form_rep_movsb", 3)),
            Want::write(&buf, 200, &data[..100], &at("form_rep_movsb", 3)),
        ]
    );
    assert_one_rep_instruction(&trace);
}

/// DF = 1, 50 bytes from the last ones at index 99: the ranges are [50, 100).
#[traced_ffi]
fn rep_movsb_backward_ranges_start_at_the_lowest_element(t: &mut Tracer) {
    let data = pattern(128, 4);
    let mut untraced = vec![0u8; 128];
    // SAFETY: bytes 50..100 of both.
    unsafe { form_rep_movsb_backward(untraced.as_mut_ptr().add(99), data.as_ptr().add(99), 50) };

    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 128);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: bytes 50..100 of both buffers.
    let ((), trace) = t.call(|| unsafe { form_rep_movsb_backward(d.add(99), s.add(99), 50) });
    assert_eq!(&dst[..], &untraced[..]);
    let at = at("form_rep_movsb_backward", 4);
    assert_exact!(
        trace,
        [
            Want::read(&src, 50, &data[50..100], &at),
            Want::write(&dst, 50, &data[50..100], &at),
        ]
    );
    assert_one_rep_instruction(&trace);
}

type Movs = unsafe extern "C" fn(*mut u8, *const u8, usize);

/// `count` elements of `size` bytes from src[0..] to dst[0..] of 64-byte buffers.
fn rep_movs_sized(t: &mut Tracer, f: Movs, symbol: &str, size: usize, count: usize) {
    let data = pattern(64, 5);
    let len = size * count;
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 64);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: len <= 64 bytes of each.
    let ((), trace) = t.call(|| unsafe { f(d, s, count) });
    assert_eq!(&dst[..len], &data[..len]);
    assert!(dst[len..].iter().all(|&b| b == 0));
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &data[..len], &at(symbol, 3)),
            Want::write(&dst, 0, &data[..len], &at(symbol, 3)),
        ]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn rep_movsw_7_words_is_one_14_byte_read_and_write(t: &mut Tracer) {
    rep_movs_sized(t, form_rep_movsw, "form_rep_movsw", 2, 7);
}

#[traced_ffi]
fn rep_movsd_5_dwords_is_one_20_byte_read_and_write(t: &mut Tracer) {
    rep_movs_sized(t, form_rep_movsd, "form_rep_movsd", 4, 5);
}

#[traced_ffi]
fn rep_movsq_8_qwords_is_one_64_byte_read_and_write(t: &mut Tracer) {
    rep_movs_sized(t, form_rep_movsq, "form_rep_movsq", 8, 8);
}

/// DF = 1, 3 qwords, the first at byte 40: the ranges are [24, 48).
#[traced_ffi]
fn rep_movsq_backward_3_qwords_is_one_read_and_write_from_the_lowest(t: &mut Tracer) {
    let data = pattern(64, 6);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 64);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: bytes 24..48 of both.
    let ((), trace) = t.call(|| unsafe { form_rep_movsq_backward(d.add(40), s.add(40), 3) });
    assert_eq!(&dst[24..48], &data[24..48]);
    assert!(dst[..24].iter().chain(&dst[48..]).all(|&b| b == 0));
    let at = at("form_rep_movsq_backward", 4);
    assert_exact!(
        trace,
        [
            Want::read(&src, 24, &data[24..48], &at),
            Want::write(&dst, 24, &data[24..48], &at),
        ]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn movsb_without_rep_is_a_1_byte_read_and_a_1_byte_write(t: &mut Tracer) {
    let src = t.buffer_from("src", &[0x5a, 0x5b]);
    let mut dst = t.buffer("dst", 2);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 1 byte each.
    let ((), trace) = t.call(|| unsafe { form_movsb(d, s) });
    assert_eq!(&dst[..], &[0x5a, 0]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &[0x5a], &at("form_movsb", 0)),
            Want::write(&dst, 0, &[0x5a], &at("form_movsb", 0)),
        ]
    );
}

/// `rep stosb` of `n` bytes of 0xc3 into an `n`-byte buffer: one write.
fn rep_stosb_n(t: &mut Tracer, n: usize) {
    let mut buf = t.buffer("buf", n.max(1));
    let p = buf.as_mut_ptr();
    // SAFETY: n bytes.
    let ((), trace) = t.call(|| unsafe { form_rep_stosb(p, n, 0xc3) });
    assert!(buf[..n].iter().all(|&b| b == 0xc3));
    if n == 0 {
        assert_exact!(trace, []);
        assert_eq!(trace.stats().faults, 0, "{trace}");
        assert_eq!(buf[0], 0);
        return;
    }
    assert_exact!(
        trace,
        [Want::write(
            &buf,
            0,
            &vec![0xc3; n],
            &at("form_rep_stosb", 5)
        )]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn rep_stosb_count_0_makes_no_access_and_no_fault(t: &mut Tracer) {
    rep_stosb_n(t, 0);
}

#[traced_ffi]
fn rep_stosb_1_byte_is_one_write_event(t: &mut Tracer) {
    rep_stosb_n(t, 1);
}

#[traced_ffi]
fn rep_stosb_4095_bytes_is_one_write_event(t: &mut Tracer) {
    rep_stosb_n(t, 4095);
}

#[traced_ffi]
fn rep_stosb_4k_is_one_write_event(t: &mut Tracer) {
    rep_stosb_n(t, 4096);
}

#[traced_ffi]
fn rep_stosb_1mib_is_one_write_event(t: &mut Tracer) {
    rep_stosb_n(t, 1 << 20);
}

#[traced_ffi]
fn rep_stosw_stosd_stosq_are_one_write_each_of_count_times_size(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 64);
    let p = buf.as_mut_ptr();
    // SAFETY: 3*2, 5*4 and 6*8 bytes at 0, 8 and 16: all within 64.
    let ((), trace) = t.call(|| unsafe {
        form_rep_stosw(p, 3, 0xa1b2);
        form_rep_stosd(p.add(8), 2, 0x0102_0304);
        form_rep_stosq(p.add(16), 6, 0x1122_3344_5566_7788);
    });
    let words: Vec<u8> = [0xa1b2u16; 3]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let dwords: Vec<u8> = [0x0102_0304u32; 2]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    let qwords: Vec<u8> = [0x1122_3344_5566_7788u64; 6]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    assert_eq!(&buf[..6], &words[..]);
    assert_eq!(&buf[6..8], &[0, 0]);
    assert_eq!(&buf[8..16], &dwords[..]);
    assert_eq!(&buf[16..64], &qwords[..]);
    assert_exact!(
        trace,
        [
            Want::write(&buf, 0, &words, &at("form_rep_stosw", 5)),
            Want::write(&buf, 8, &dwords, &at("form_rep_stosd", 5)),
            Want::write(&buf, 16, &qwords, &at("form_rep_stosq", 6)),
        ]
    );
    assert_eq!(trace.stats().faults, 3, "{trace}");
}

/// DF = 1, 3 dwords from byte 28 down: one write of [20, 32).
#[traced_ffi]
fn rep_stosd_backward_is_one_write_from_the_lowest_element(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 64);
    let p = buf.as_mut_ptr();
    // SAFETY: bytes 20..32.
    let ((), trace) = t.call(|| unsafe { form_rep_stosd_backward(p.add(28), 3, 0xaabb_ccdd) });
    let v: Vec<u8> = [0xaabb_ccddu32; 3]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    assert_eq!(&buf[20..32], &v[..]);
    assert!(buf[..20].iter().chain(&buf[32..]).all(|&b| b == 0));
    assert_exact!(
        trace,
        [Want::write(&buf, 20, &v, &at("form_rep_stosd_backward", 6))]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn stosq_without_rep_is_one_8_byte_write(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 8);
    let p = buf.as_mut_ptr();
    // SAFETY: 8 bytes.
    let ((), trace) = t.call(|| unsafe { form_stosq(p, 0x0807_0605_0403_0201) });
    assert_eq!(&buf[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_exact!(
        trace,
        [Want::write(
            &buf,
            0,
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &at("form_stosq", 3)
        )]
    );
}

#[traced_ffi]
fn rep_lodsb_5000_bytes_is_one_read_event(t: &mut Tracer) {
    let data = pattern(5000, 7);
    let src = t.buffer_from("src", &data);
    let s = src.as_ptr();
    // SAFETY: 5000 bytes.
    let (last, trace) = t.call(|| unsafe { form_rep_lodsb(s, 5000) });
    assert_eq!(last, data[4999]);
    assert_exact!(
        trace,
        [Want::read(&src, 0, &data, &at("form_rep_lodsb", 8))]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn rep_lodsq_3_qwords_is_one_24_byte_read(t: &mut Tracer) {
    let data = pattern(32, 8);
    let src = t.buffer_from("src", &data);
    let s = src.as_ptr();
    // SAFETY: 24 bytes.
    let (last, trace) = t.call(|| unsafe { form_rep_lodsq(s, 3) });
    assert_eq!(last.to_le_bytes(), data[16..24]);
    assert_exact!(
        trace,
        [Want::read(&src, 0, &data[..24], &at("form_rep_lodsq", 8))]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn lodsd_without_rep_is_one_4_byte_read(t: &mut Tracer) {
    let src = t.buffer_from("src", &[9, 8, 7, 6]);
    let s = src.as_ptr();
    // SAFETY: 4 bytes.
    let (v, trace) = t.call(|| unsafe { form_lodsd(s) });
    assert_eq!(v, 0x0607_0809);
    assert_exact!(
        trace,
        [Want::read(&src, 0, &[9, 8, 7, 6], &at("form_lodsd", 3))]
    );
}

/// a = rdi, b = rsi, differing first at byte 5 of 16: 6 bytes consumed; the read of
/// b (rsi) comes first.
#[traced_ffi]
fn repe_cmpsb_reads_the_consumed_bytes_rsi_range_first(t: &mut Tracer) {
    let data = pattern(16, 9);
    let mut other = data.clone();
    other[5] ^= 0xff;
    let a = t.buffer_from("a", &data);
    let b = t.buffer_from("b", &other);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: 16 bytes each.
    let (left, trace) = t.call(|| unsafe { form_repe_cmpsb(pa, pb, 16) });
    // SAFETY: as above, on ordinary memory.
    let untraced = unsafe { form_repe_cmpsb(data.as_ptr(), other.as_ptr(), 16) };
    assert_eq!((left, untraced), (10, 10));
    let at = at("form_repe_cmpsb", 3);
    assert_exact!(
        trace,
        [
            Want::read(&b, 0, &other[..6], &at),
            Want::read(&a, 0, &data[..6], &at)
        ]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn repe_cmpsq_equal_ranges_read_all_32_bytes_of_both(t: &mut Tracer) {
    let data = pattern(32, 10);
    let a = t.buffer_from("a", &data);
    let b = t.buffer_from("b", &data);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: 32 bytes each.
    let (left, trace) = t.call(|| unsafe { form_repe_cmpsq(pa, pb, 4) });
    assert_eq!(left, 0);
    let at = at("form_repe_cmpsq", 3);
    assert_exact!(
        trace,
        [Want::read(&b, 0, &data, &at), Want::read(&a, 0, &data, &at)]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn cmpsw_without_rep_reads_rsi_then_rdi(t: &mut Tracer) {
    let a = t.buffer_from("a", &[1, 2]);
    let b = t.buffer_from("b", &[1, 3]);
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // SAFETY: 2 bytes each.
    let (equal, trace) = t.call(|| unsafe { form_cmpsw(pa, pb) });
    assert_eq!(equal, 0);
    assert_exact!(
        trace,
        [
            Want::read(&b, 0, &[1, 3], &at("form_cmpsw", 2)),
            Want::read(&a, 0, &[1, 2], &at("form_cmpsw", 2)),
        ]
    );
}

/// 0x99 at index 12 of 32: 13 bytes consumed, the match included.
#[traced_ffi]
fn repne_scasb_reads_up_to_and_including_the_match(t: &mut Tracer) {
    let mut data = pattern(32, 11);
    data.iter_mut()
        .filter(|b| **b == 0x99)
        .for_each(|b| *b = 0x98);
    data[12] = 0x99;
    let buf = t.buffer_from("buf", &data);
    let p = buf.as_ptr();
    // SAFETY: 32 bytes.
    let (left, trace) = t.call(|| unsafe { form_repne_scasb(p, 32, 0x99) });
    assert_eq!(left, 19);
    assert_exact!(
        trace,
        [Want::read(&buf, 0, &data[..13], &at("form_repne_scasb", 5))]
    );
    assert_one_rep_instruction(&trace);
}

/// DF = 1 from dword 7 down, equal to 7 until dword 2: 6 dwords consumed (7..=2), one
/// read of [8, 32).
#[traced_ffi]
fn repe_scasd_backward_reads_the_consumed_dwords_from_the_lowest(t: &mut Tracer) {
    let mut data: Vec<u8> = [7u32; 8].iter().flat_map(|w| w.to_le_bytes()).collect();
    data[8..12].copy_from_slice(&8u32.to_le_bytes());
    let buf = t.buffer_from("buf", &data);
    let p = buf.as_ptr();
    // SAFETY: bytes 0..32.
    let (left, trace) = t.call(|| unsafe { form_repe_scasd_backward(p.add(28), 8, 7) });
    assert_eq!(left, 2);
    assert_exact!(
        trace,
        [Want::read(
            &buf,
            8,
            &data[8..32],
            &at("form_repe_scasd_backward", 6)
        )]
    );
    assert_one_rep_instruction(&trace);
}

#[traced_ffi]
fn scasb_without_rep_is_one_1_byte_read(t: &mut Tracer) {
    let buf = t.buffer_from("buf", &[0x42]);
    let p = buf.as_ptr();
    // SAFETY: 1 byte.
    let (equal, trace) = t.call(|| unsafe { form_scasb(p, 0x42) });
    assert_eq!(equal, 1);
    assert_exact!(trace, [Want::read(&buf, 0, &[0x42], &at("form_scasb", 2))]);
}
