//! Atomic and conditional forms from the corpus (`traced_ffi_fixtures::forms`):
//! `lock cmpxchg` (8/16/32/64-bit), `lock cmpxchg8b`, `lock cmpxchg16b`, `lock xadd`,
//! `xchg`, `lock add/or/and` with a register or an immediate, `cmovcc r, [m]` and
//! `setcc [m]`.
//!
//! A compare-exchange is a read of the old value, then a write of the new one only if
//! it stored (ZF = 1): a failed comparison is the read alone. The other
//! read-modify-write forms are a read then a write. `cmovcc` reads its memory operand
//! whether or not the condition holds; `setcc` writes one byte.

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::forms::*;

use crate::check::{Want, assert_exact, at};

/// 16 bytes, the operand at 8..8+N.
const INIT: [u8; 16] = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
];

#[traced_ffi]
fn lock_cmpxchg8_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT);
    let p = buf.as_mut_ptr();
    // SAFETY: byte 8 of 16.
    let (old, miss) = t.call(|| unsafe { form_lock_cmpxchg8(p.add(8), 0x10, 0xee) });
    assert_eq!((old, &buf[..]), (0x11, &INIT[..]));
    assert_exact!(
        miss,
        [Want::read(&buf, 8, &[0x11], &at("form_lock_cmpxchg8", 2))]
    );
    // SAFETY: as above.
    let (old, hit) = t.call(|| unsafe { form_lock_cmpxchg8(p.add(8), 0x11, 0xee) });
    assert_eq!((old, buf[8]), (0x11, 0xee));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 8, &[0x11], &at("form_lock_cmpxchg8", 2)),
            Want::write(&buf, 8, &[0xee], &at("form_lock_cmpxchg8", 2)),
        ]
    );
}

#[traced_ffi]
fn lock_cmpxchg16_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT);
    let p = buf.as_mut_ptr();
    // SAFETY: bytes 8..10 of 16.
    let (old, miss) = t.call(|| unsafe { form_lock_cmpxchg16(p.add(8), 0x2210, 0xabcd) });
    assert_eq!((old, &buf[..]), (0x2211, &INIT[..]));
    let at = at("form_lock_cmpxchg16", 2);
    assert_exact!(miss, [Want::read(&buf, 8, &[0x11, 0x22], &at)]);
    // SAFETY: as above.
    let (old, hit) = t.call(|| unsafe { form_lock_cmpxchg16(p.add(8), 0x2211, 0xabcd) });
    assert_eq!((old, &buf[8..10]), (0x2211, &[0xcd, 0xab][..]));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 8, &[0x11, 0x22], &at),
            Want::write(&buf, 8, &[0xcd, 0xab], &at),
        ]
    );
}

#[traced_ffi]
fn lock_cmpxchg32_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT);
    let p = buf.as_mut_ptr();
    // SAFETY: bytes 8..12 of 16.
    let (old, miss) = t.call(|| unsafe { form_lock_cmpxchg32(p.add(8), 1, 2) });
    assert_eq!((old, &buf[..]), (0x4433_2211, &INIT[..]));
    let at = at("form_lock_cmpxchg32", 2);
    assert_exact!(miss, [Want::read(&buf, 8, &INIT[8..12], &at)]);
    // SAFETY: as above.
    let (old, hit) = t.call(|| unsafe { form_lock_cmpxchg32(p.add(8), 0x4433_2211, 2) });
    assert_eq!((old, &buf[8..12]), (0x4433_2211, &[2, 0, 0, 0][..]));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 8, &INIT[8..12], &at),
            Want::write(&buf, 8, &[2, 0, 0, 0], &at),
        ]
    );
}

#[traced_ffi]
fn lock_cmpxchg64_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT);
    let p = buf.as_mut_ptr();
    let old_value = 0x8877_6655_4433_2211;
    // SAFETY: bytes 8..16 of 16.
    let (old, miss) = t.call(|| unsafe { form_lock_cmpxchg64(p.add(8), 5, 6) });
    assert_eq!((old, &buf[..]), (old_value, &INIT[..]));
    let at = at("form_lock_cmpxchg64", 3);
    assert_exact!(miss, [Want::read(&buf, 8, &INIT[8..], &at)]);
    // SAFETY: as above.
    let (old, hit) = t.call(|| unsafe { form_lock_cmpxchg64(p.add(8), old_value, 6) });
    assert_eq!((old, &buf[8..]), (old_value, &6u64.to_le_bytes()[..]));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 8, &INIT[8..], &at),
            Want::write(&buf, 8, &6u64.to_le_bytes(), &at),
        ]
    );
}

#[traced_ffi]
fn lock_cmpxchg8b_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT);
    let p = buf.as_mut_ptr();
    let old_value = 0x8877_6655_4433_2211;
    let new = 0x0123_4567_89ab_cdef_u64;
    // SAFETY: bytes 8..16 of 16.
    let (old, miss) = t.call(|| unsafe { form_lock_cmpxchg8b(p.add(8), 5, new) });
    assert_eq!((old, &buf[..]), (old_value, &INIT[..]));
    let at = at("form_lock_cmpxchg8b", 0x18);
    assert_exact!(miss, [Want::read(&buf, 8, &INIT[8..], &at)]);
    // SAFETY: as above.
    let (old, hit) = t.call(|| unsafe { form_lock_cmpxchg8b(p.add(8), old_value, new) });
    assert_eq!((old, &buf[8..]), (old_value, &new.to_le_bytes()[..]));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 8, &INIT[8..], &at),
            Want::write(&buf, 8, &new.to_le_bytes(), &at),
        ]
    );
}

/// 16-byte aligned: the buffer is 32 bytes ending at a page end, the operand at 16.
#[traced_ffi]
fn lock_cmpxchg16b_reads_then_writes_only_when_it_stores(t: &mut Tracer) {
    let mut init = [0u8; 32];
    init[16..].copy_from_slice(&crate::check::pattern(16, 12));
    let mut buf = t.buffer_from("buf", &init);
    let p = buf.as_mut_ptr();
    let lo = u64::from_le_bytes(init[16..24].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(init[24..32].try_into().expect("8 bytes"));
    let mut old = [0u64; 2];
    let o = old.as_mut_ptr();
    // SAFETY: bytes 16..32, 16-aligned; `old` holds two u64 and is not traced.
    let (stored, miss) = t.call(|| unsafe { form_lock_cmpxchg16b(p.add(16), lo, !hi, 1, 2, o) });
    assert_eq!((stored, old, &buf[..]), (0, [lo, hi], &init[..]));
    let at = at("form_lock_cmpxchg16b", 0xa);
    assert_exact!(miss, [Want::read(&buf, 16, &init[16..], &at)]);
    // SAFETY: as above.
    let (stored, hit) = t.call(|| unsafe { form_lock_cmpxchg16b(p.add(16), lo, hi, 1, 2, o) });
    let mut new = 1u64.to_le_bytes().to_vec();
    new.extend_from_slice(&2u64.to_le_bytes());
    assert_eq!((stored, old, &buf[16..]), (1, [lo, hi], &new[..]));
    assert_exact!(
        hit,
        [
            Want::read(&buf, 16, &init[16..], &at),
            Want::write(&buf, 16, &new, &at),
        ]
    );
}

#[traced_ffi]
fn lock_xadd_reads_the_old_value_and_writes_the_sum(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &40u32.to_le_bytes());
    let p = buf.as_mut_ptr();
    // SAFETY: 4 bytes.
    let (old, trace) = t.call(|| unsafe { form_lock_xadd32(p, 2) });
    assert_eq!((old, &buf[..]), (40, &42u32.to_le_bytes()[..]));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 0, &40u32.to_le_bytes(), &at("form_lock_xadd32", 2)),
            Want::write(&buf, 0, &42u32.to_le_bytes(), &at("form_lock_xadd32", 2)),
        ]
    );
}

#[traced_ffi]
fn xchg_with_memory_reads_the_old_value_and_writes_the_new(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &INIT[8..]);
    let p = buf.as_mut_ptr();
    // SAFETY: 8 bytes.
    let (old, trace) = t.call(|| unsafe { form_xchg64(p, 0x0807_0605_0403_0201) });
    assert_eq!(
        (old, &buf[..]),
        (0x8877_6655_4433_2211, &[1, 2, 3, 4, 5, 6, 7, 8][..])
    );
    assert_exact!(
        trace,
        [
            Want::read(&buf, 0, &INIT[8..], &at("form_xchg64", 3)),
            Want::write(&buf, 0, &[1, 2, 3, 4, 5, 6, 7, 8], &at("form_xchg64", 3)),
        ]
    );
}

#[traced_ffi]
fn lock_add_register_reads_then_writes(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &[0xff, 0, 0, 0]);
    let p = buf.as_mut_ptr();
    // SAFETY: 4 bytes.
    let ((), trace) = t.call(|| unsafe { form_lock_add32(p, 1) });
    assert_eq!(&buf[..], &[0, 1, 0, 0]);
    assert_exact!(
        trace,
        [
            Want::read(&buf, 0, &[0xff, 0, 0, 0], &at("form_lock_add32", 0)),
            Want::write(&buf, 0, &[0, 1, 0, 0], &at("form_lock_add32", 0)),
        ]
    );
}

#[traced_ffi]
fn lock_or_immediate_reads_then_writes(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &[0xa0, 1, 2, 3, 4, 5, 6, 7]);
    let p = buf.as_mut_ptr();
    // SAFETY: 8 bytes.
    let ((), trace) = t.call(|| unsafe { form_lock_or64_imm(p) });
    assert_eq!(&buf[..], &[0xf5, 1, 2, 3, 4, 5, 6, 7]);
    assert_exact!(
        trace,
        [
            Want::read(
                &buf,
                0,
                &[0xa0, 1, 2, 3, 4, 5, 6, 7],
                &at("form_lock_or64_imm", 0)
            ),
            Want::write(
                &buf,
                0,
                &[0xf5, 1, 2, 3, 4, 5, 6, 7],
                &at("form_lock_or64_imm", 0)
            ),
        ]
    );
}

#[traced_ffi]
fn lock_and_immediate_16_bit_reads_then_writes(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &[0xff, 0xff]);
    let p = buf.as_mut_ptr();
    // SAFETY: 2 bytes.
    let ((), trace) = t.call(|| unsafe { form_lock_and16_imm(p) });
    assert_eq!(&buf[..], &[0xf0, 0x0f]);
    assert_exact!(
        trace,
        [
            Want::read(&buf, 0, &[0xff, 0xff], &at("form_lock_and16_imm", 0)),
            Want::write(&buf, 0, &[0xf0, 0x0f], &at("form_lock_and16_imm", 0)),
        ]
    );
}

#[traced_ffi]
fn cmovcc_from_memory_reads_whether_or_not_the_condition_holds(t: &mut Tracer) {
    let buf = t.buffer_from("buf", &INIT[8..]);
    let p = buf.as_ptr();
    let at = at("form_cmovnz_load", 6);
    // SAFETY: 8 bytes.
    let (taken, trace) = t.call(|| unsafe { form_cmovnz_load(p, 1, 9) });
    assert_eq!(taken, 0x8877_6655_4433_2211);
    assert_exact!(trace, [Want::read(&buf, 0, &INIT[8..], &at)]);
    // SAFETY: as above.
    let (not_taken, trace) = t.call(|| unsafe { form_cmovnz_load(p, 0, 9) });
    assert_eq!(not_taken, 9);
    assert_exact!(trace, [Want::read(&buf, 0, &INIT[8..], &at)]);
}

#[traced_ffi]
fn setcc_to_memory_is_a_1_byte_write(t: &mut Tracer) {
    let mut buf = t.buffer_from("buf", &[7, 7]);
    let p = buf.as_mut_ptr();
    let at = at("form_setb_store", 3);
    // SAFETY: 1 byte.
    let ((), trace) = t.call(|| unsafe { form_setb_store(p, 1, 2) });
    assert_eq!(&buf[..], &[1, 7]);
    assert_exact!(trace, [Want::write(&buf, 0, &[1], &at)]);
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { form_setb_store(p.add(1), 2, 1) });
    assert_eq!(&buf[..], &[1, 0]);
    assert_exact!(trace, [Want::write(&buf, 1, &[0], &at)]);
}
