//! The rest of the form corpus (`traced_ffi_fixtures::forms`): instructions with two
//! memory operands (`push/pop/call/jmp [m]`), accesses straddling a page boundary or
//! the edge of a tracked range, `fxsave/fxrstor`, `xsave/xrstor`, x87 loads and stores
//! (`fld/fstp` 4/8/10, `fild/fistp`, `fnstcw/fldcw`, `fnstenv`), `movbe`, the bit tests
//! with register and immediate bit offsets, a function running on a buffer as its
//! stack (`push`, `call`, `enter`, `leave`, `ret`, `pop`), the cache-line hints
//! (`clflush/clflushopt/clwb`: a note, no access) and prefetches (nothing at all).
//!
//! Stack traffic to the real (untracked) stack is never recorded: `push [m]` is a read
//! of the buffer, `pop [m]` a write, `call/jmp [m]` a read of the pointer.

use traced_ffi::{Tracer, describe_ip, traced_ffi};
use traced_ffi_fixtures::forms::*;

use crate::check::{Want, assert_exact, at, current_tid, pattern};
use crate::forms_simd::load_then_store;

// ------------------------------------------------------- two memory operands

#[traced_ffi]
fn push_from_memory_is_an_8_byte_read_of_the_buffer(t: &mut Tracer) {
    let data = pattern(8, 40);
    let buf = t.buffer_from("buf", &data);
    let p = buf.as_ptr();
    // SAFETY: 8 bytes.
    let (v, trace) = t.call(|| unsafe { form_push_mem(p) });
    assert_eq!(v.to_le_bytes(), data[..]);
    assert_exact!(trace, [Want::read(&buf, 0, &data, &at("form_push_mem", 0))]);
}

#[traced_ffi]
fn pop_to_memory_is_an_8_byte_write_of_the_buffer(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 8);
    let p = buf.as_mut_ptr();
    let v = 0x0102_0304_0506_0708_u64;
    // SAFETY: 8 bytes.
    let ((), trace) = t.call(|| unsafe { form_pop_mem(p, v) });
    assert_eq!(&buf[..], &v.to_le_bytes());
    assert_exact!(
        trace,
        [Want::write(
            &buf,
            0,
            &v.to_le_bytes(),
            &at("form_pop_mem", 1)
        )]
    );
}

/// The buffer holds `form_ret42`'s address.
fn function_pointer() -> [u8; 8] {
    (form_ret42 as unsafe extern "C" fn() -> u32 as usize as u64).to_le_bytes()
}

#[traced_ffi]
fn call_through_memory_is_an_8_byte_read_of_the_pointer(t: &mut Tracer) {
    let f = function_pointer();
    let buf = t.buffer_from("fnptr", &f);
    let p = buf.as_ptr();
    // SAFETY: the buffer holds a pointer to form_ret42.
    let (v, trace) = t.call(|| unsafe { form_call_mem(p) });
    assert_eq!(v, 42);
    assert_exact!(trace, [Want::read(&buf, 0, &f, &at("form_call_mem", 4))]);
}

#[traced_ffi]
fn jmp_through_memory_is_an_8_byte_read_of_the_pointer(t: &mut Tracer) {
    let f = function_pointer();
    let buf = t.buffer_from("fnptr", &f);
    let p = buf.as_ptr();
    // SAFETY: the buffer holds a pointer to form_ret42.
    let (v, trace) = t.call(|| unsafe { form_jmp_mem(p) });
    assert_eq!(v, 42);
    assert_exact!(trace, [Want::read(&buf, 0, &f, &at("form_jmp_mem", 0))]);
}

// ------------------------------------------------------------- page crossing

#[traced_ffi]
fn mov_8_bytes_across_a_page_boundary_is_one_full_length_read(t: &mut Tracer) {
    let data = pattern(8192, 41);
    let buf = t.buffer_from("buf", &data);
    let p = buf.as_ptr();
    // SAFETY: bytes 4092..4100 of 8192.
    let (v, trace) = t.call(|| unsafe { form_load_u64(p.add(4092)) });
    assert_eq!(v.to_le_bytes(), data[4092..4100]);
    assert_exact!(
        trace,
        [Want::read(
            &buf,
            4092,
            &data[4092..4100],
            &at("form_load_u64", 0)
        )]
    );
}

#[traced_ffi]
fn movdqu_16_bytes_across_a_page_boundary_is_one_full_length_access(t: &mut Tracer) {
    let data = pattern(8192, 42);
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 8192);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: bytes 4088..4104 of both.
    let ((), trace) = t.call(|| unsafe { form_movdqu_copy(d.add(4090), s.add(4088)) });
    assert_eq!(&dst[4090..4106], &data[4088..4104]);
    assert_exact!(
        trace,
        [
            Want::read(&src, 4088, &data[4088..4104], &at("form_movdqu_copy", 0)),
            Want::write(&dst, 4090, &data[4088..4104], &at("form_movdqu_copy", 4)),
        ]
    );
}

/// Two pages of the test's own, page-aligned.
#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

/// A tracked range of 14 bytes, [4084, 4098) of two pages: an 8-byte load at 4092
/// (crossing the page boundary and the range's end) records only the tracked 6
/// bytes; one at 4080 (crossing its start) only the tracked 4.
#[traced_ffi]
fn loads_straddling_a_tracked_range_record_only_the_tracked_bytes(t: &mut Tracer) {
    let mut pages = Box::new(TwoPages([0; 8192]));
    let data = pattern(8192, 43);
    pages.0.copy_from_slice(&data);
    let base = pages.0.as_mut_ptr();
    // SAFETY: 4084 + 14 <= 8192.
    let start = unsafe { base.add(4084) };
    // SAFETY: the test's own page-aligned pages, untracked before they are freed,
    // touched by this thread only, and only by the fixture during the calls.
    let tracked = unsafe { t.track("field", start, 14) };
    // SAFETY: 4092 + 8 and 4080 + 8 are inside `pages`.
    let (end_load, start_load) = unsafe { (base.add(4092), base.add(4080)) };
    // SAFETY: 8 readable bytes.
    let (v, over_end) = t.call(|| unsafe { form_load_u64(end_load) });
    // SAFETY: 8 readable bytes.
    let (w, over_start) = t.call(|| unsafe { form_load_u64(start_load) });
    t.untrack(&tracked);
    assert_eq!(v.to_le_bytes(), data[4092..4100]);
    assert_eq!(w.to_le_bytes(), data[4080..4088]);
    let at = at("form_load_u64", 0);
    assert_exact!(over_end, [Want::read(&tracked, 8, &data[4092..4098], &at)]);
    assert_exact!(
        over_start,
        [Want::read(&tracked, 0, &data[4084..4088], &at)]
    );
}

// --------------------------------------------------------------- state saves

/// The FXSAVE image's x87 control word and MXCSR + MXCSR_MASK (bytes 0..2, 24..32),
/// which a traced and an untraced call on the same thread share.
fn fx_fixed_fields(image: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (image[..2].to_vec(), image[24..32].to_vec())
}

#[repr(C, align(64))]
struct Area<const N: usize>([u8; N]);

/// Bytes of the FXSAVE area the CPU writes in 64-bit mode: 416..464 are reserved and
/// 464..512 free for software (Intel SDM vol. 1, table 10-2).
const FX_USED: usize = 416;

#[traced_ffi]
fn fxsave_writes_its_416_bytes_and_not_the_reserved_tail(t: &mut Tracer) {
    let mut untraced = Area([0u8; 512]);
    // SAFETY: 512 bytes, 64-aligned.
    unsafe { form_fxsave(untraced.0.as_mut_ptr()) };
    // 512 bytes ending at a page end: 512-aligned.
    let mut buf = t.buffer("fxsave", 512);
    let p = buf.as_mut_ptr();
    // SAFETY: as above.
    let ((), trace) = t.call(|| unsafe { form_fxsave(p) });
    assert_eq!(fx_fixed_fields(&buf), fx_fixed_fields(&untraced.0));
    assert!(
        buf[FX_USED..].iter().all(|&b| b == 0),
        "the CPU left the tail alone"
    );
    assert_exact!(
        trace,
        [Want::write(&buf, 0, &buf[..FX_USED], &at("form_fxsave", 0))]
    );
}

#[traced_ffi]
fn fxrstor_reads_the_416_bytes_of_state(t: &mut Tracer) {
    let mut buf = t.buffer("fxsave", 512);
    // Outside a call the buffer is ordinary memory: save this thread's state into it.
    // SAFETY: 512 bytes, 512-aligned.
    unsafe { form_fxsave(buf.as_mut_ptr()) };
    let image = buf.to_vec();
    let p = buf.as_ptr();
    // SAFETY: a valid image this thread just saved.
    let ((), trace) = t.call(|| unsafe { form_fxrstor(p) });
    assert_eq!(&buf[..], &image[..]);
    assert_exact!(
        trace,
        [Want::read(
            &buf,
            0,
            &image[..FX_USED],
            &at("form_fxrstor", 0)
        )]
    );
}

/// `CPUID(EAX=0xD, ECX=0).EBX`: the XSAVE area size for the components XCR0 enables,
/// and a buffer length for it that is a multiple of 64 (so the buffer, ending at a
/// page end, starts 64-aligned).
fn xsave_size() -> (usize, usize) {
    let size = std::arch::x86_64::__cpuid_count(0xd, 0).ebx as usize;
    (size, size.div_ceil(64) * 64)
}

/// XCR0: the state components the OS enabled.
fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV(0) is allowed in user mode when the OS enabled XSAVE, which
    // `form_xsave` needs anyway.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The `(offset, len)` ranges of the standard-format area that `xsave` with every
/// component requested writes (`header` = 8: XSTATE_BV) or `xrstor` reads (`header` =
/// 64), merged: the legacy x87/SSE state 0..416, the header at 512, then each enabled
/// component at its CPUID offset.
fn xsave_ranges(header: usize) -> Vec<(usize, usize)> {
    let xcr0 = xcr0();
    let mut v = vec![(0, FX_USED), (512, header)];
    for i in 2..63 {
        if xcr0 & (1 << i) != 0 {
            let c = std::arch::x86_64::__cpuid_count(0xd, i);
            v.push((c.ebx as usize, c.eax as usize));
        }
    }
    v.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (off, len) in v {
        match merged.last_mut() {
            Some((o, l)) if *o + *l >= off => *l = (*l).max(off + len - *o),
            _ => merged.push((off, len)),
        }
    }
    merged
}

#[traced_ffi]
fn xsave_all_components_writes_the_legacy_state_the_header_bv_and_each_component(t: &mut Tracer) {
    let (size, len) = xsave_size();
    let mut untraced = Box::new(Area([0u8; 16384]));
    assert!(size <= 16384, "XSAVE size {size}");
    // SAFETY: 64-aligned, zeroed, large enough.
    unsafe { form_xsave(untraced.0.as_mut_ptr()) };
    let mut buf = t.buffer("xsave", len);
    let p = buf.as_mut_ptr();
    // SAFETY: 64-aligned, zeroed (so the header is), `size` <= `len` bytes.
    let ((), trace) = t.call(|| unsafe { form_xsave(p) });
    assert_eq!(fx_fixed_fields(&buf), fx_fixed_fields(&untraced.0));
    assert!(buf[size..].iter().all(|&b| b == 0), "wrote past {size}");
    assert!(
        buf[FX_USED..512]
            .iter()
            .chain(&buf[520..576])
            .all(|&b| b == 0),
        "the CPU left the reserved bytes and the rest of the header alone"
    );
    let ranges = xsave_ranges(8);
    assert_eq!(ranges.last().map(|&(o, l)| o + l), Some(size));
    let want: Vec<Want> = ranges
        .iter()
        .map(|&(o, l)| Want::write(&buf, o as isize, &buf[o..o + l], &at("form_xsave", 0xa)))
        .collect();
    assert_exact!(trace, want);
}

#[traced_ffi]
fn xrstor_all_components_reads_the_legacy_state_the_header_and_each_component(t: &mut Tracer) {
    let (size, len) = xsave_size();
    let mut buf = t.buffer("xsave", len);
    // Outside a call the buffer is ordinary memory: save this thread's state into it.
    // SAFETY: 64-aligned, zeroed, `size` <= `len` bytes.
    unsafe { form_xsave(buf.as_mut_ptr()) };
    let image = buf.to_vec();
    let p = buf.as_ptr();
    // SAFETY: a valid image this thread just saved.
    let ((), trace) = t.call(|| unsafe { form_xrstor(p) });
    assert_eq!(&buf[..], &image[..]);
    let want: Vec<Want> = xsave_ranges(64)
        .iter()
        .map(|&(o, l)| Want::read(&buf, o as isize, &image[o..o + l], &at("form_xrstor", 0xa)))
        .collect();
    assert!(size <= len);
    assert_exact!(trace, want);
}

// ----------------------------------------------------------------------- x87

#[traced_ffi]
fn fld_and_fstp_dword_are_4_bytes(t: &mut Tracer) {
    load_then_store(t, form_fld_fstp_f32, "form_fld_fstp_f32", 4, 2);
}

#[traced_ffi]
fn fld_and_fstp_qword_are_8_bytes(t: &mut Tracer) {
    load_then_store(t, form_fld_fstp_f64, "form_fld_fstp_f64", 8, 2);
}

/// 1.5 as an 80-bit extended: 10 bytes each way.
#[traced_ffi]
fn fld_and_fstp_tbyte_are_10_bytes(t: &mut Tracer) {
    let mut x = [0u8; 10];
    x[7] = 0xc0;
    x[8] = 0xff;
    x[9] = 0x3f;
    let src = t.buffer_from("src", &x);
    let mut dst = t.buffer("dst", 10);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 10 bytes each.
    let ((), trace) = t.call(|| unsafe { form_fld_fstp_f80(d, s) });
    assert_eq!(&dst[..], &x);
    assert_exact!(
        trace,
        [
            Want::read(&src, 0, &x, &at("form_fld_fstp_f80", 0)),
            Want::write(&dst, 0, &x, &at("form_fld_fstp_f80", 2)),
        ]
    );
}

#[traced_ffi]
fn fild_word_reads_2_and_fistp_qword_writes_8(t: &mut Tracer) {
    let src = t.buffer_from("src", &(-1234i16).to_le_bytes());
    let mut dst = t.buffer("dst", 8);
    let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
    // SAFETY: 2 and 8 bytes.
    let ((), trace) = t.call(|| unsafe { form_fild16_fistp64(d, s) });
    assert_eq!(&dst[..], &(-1234i64).to_le_bytes());
    assert_exact!(
        trace,
        [
            Want::read(
                &src,
                0,
                &(-1234i16).to_le_bytes(),
                &at("form_fild16_fistp64", 0)
            ),
            Want::write(
                &dst,
                0,
                &(-1234i64).to_le_bytes(),
                &at("form_fild16_fistp64", 2)
            ),
        ]
    );
}

#[traced_ffi]
fn fnstcw_writes_2_and_fldcw_reads_2(t: &mut Tracer) {
    let mut untraced = [0u8; 2];
    // SAFETY: 2 bytes.
    unsafe { form_fnstcw_fldcw(untraced.as_mut_ptr()) };
    let mut buf = t.buffer("cw", 2);
    let p = buf.as_mut_ptr();
    // SAFETY: 2 bytes.
    let ((), trace) = t.call(|| unsafe { form_fnstcw_fldcw(p) });
    assert_eq!(&buf[..], &untraced);
    assert_exact!(
        trace,
        [
            Want::write(&buf, 0, &untraced, &at("form_fnstcw_fldcw", 0)),
            Want::read(&buf, 0, &untraced, &at("form_fnstcw_fldcw", 2)),
        ]
    );
}

/// The environment's instruction and data pointers vary, so its bytes are compared
/// with what the buffer holds afterwards; its control word with an untraced run.
#[traced_ffi]
fn fnstenv_writes_28_bytes(t: &mut Tracer) {
    let mut untraced = [0u8; 28];
    // SAFETY: 28 bytes.
    unsafe { form_fnstenv(untraced.as_mut_ptr()) };
    let mut buf = t.buffer("env", 28);
    let p = buf.as_mut_ptr();
    // SAFETY: 28 bytes.
    let ((), trace) = t.call(|| unsafe { form_fnstenv(p) });
    assert_eq!(&buf[..2], &untraced[..2]);
    assert_exact!(
        trace,
        [
            Want::write(&buf, 0, &buf, &at("form_fnstenv", 0)),
            Want::read(&buf, 0, &buf[..2], &at("form_fnstenv", 2)),
        ]
    );
}

// --------------------------------------------------------------------- movbe

#[traced_ffi]
fn movbe_16_load_and_store_are_2_bytes(t: &mut Tracer) {
    load_then_store(t, form_movbe16, "form_movbe16", 2, 5);
}

#[traced_ffi]
fn movbe_32_load_and_store_are_4_bytes(t: &mut Tracer) {
    load_then_store(t, form_movbe32, "form_movbe32", 4, 4);
}

#[traced_ffi]
fn movbe_64_load_and_store_are_8_bytes(t: &mut Tracer) {
    load_then_store(t, form_movbe64, "form_movbe64", 8, 5);
}

// ----------------------------------------------------------------- bit tests

/// `bt qword [p], 65` reads the qword at p+8; `bt qword [p+16], -63` the one at
/// p+16-8 = p+8 too (8 * floor(-63 / 64) = -8).
#[traced_ffi]
fn bt_register_offset_reads_the_qword_holding_the_bit(t: &mut Tracer) {
    let mut data = pattern(32, 44);
    data[8] = 0b10;
    let buf = t.buffer_from("bits", &data);
    let p = buf.as_ptr();
    let at = at("form_bt64", 0);
    // SAFETY: bytes 8..16 of 32.
    let (bit, trace) = t.call(|| unsafe { form_bt64(p, 65) });
    assert_eq!(bit, 1);
    assert_exact!(trace, [Want::read(&buf, 8, &data[8..16], &at)]);
    // SAFETY: as above.
    let (bit, trace) = t.call(|| unsafe { form_bt64(p.add(16), -63) });
    assert_eq!(bit, 1);
    assert_exact!(trace, [Want::read(&buf, 8, &data[8..16], &at)]);
}

/// `bts dword [p], 70`: the dword at p+8, bit 6; `bts dword [p+16], -1`: the dword
/// at p+12, bit 31.
#[traced_ffi]
fn bts_register_offset_reads_then_writes_the_dword_holding_the_bit(t: &mut Tracer) {
    let buf0 = [0u8; 32];
    let mut buf = t.buffer_from("bits", &buf0);
    let p = buf.as_mut_ptr();
    let at = at("form_bts32", 0);
    // SAFETY: bytes 8..12 of 32.
    let (old, trace) = t.call(|| unsafe { form_bts32(p, 70) });
    assert_eq!((old, buf[8]), (0, 0x40));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 8, &[0, 0, 0, 0], &at),
            Want::write(&buf, 8, &[0x40, 0, 0, 0], &at)
        ]
    );
    // SAFETY: bytes 12..16 of 32.
    let (old, trace) = t.call(|| unsafe { form_bts32(p.add(16), -1) });
    assert_eq!((old, buf[15]), (0, 0x80));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 12, &[0, 0, 0, 0], &at),
            Want::write(&buf, 12, &[0, 0, 0, 0x80], &at)
        ]
    );
}

/// `btr word [p+16], -17`: the word at p+12 (2 * floor(-17 / 16) = -4), bit 15;
/// `btr word [p+16], 33`: the word at p+20, bit 1.
#[traced_ffi]
fn btr_register_offset_reads_then_writes_the_word_holding_the_bit(t: &mut Tracer) {
    let mut buf = t.buffer_from("bits", &[0xff; 32]);
    let p = buf.as_mut_ptr();
    let at = at("form_btr16", 0);
    // SAFETY: bytes 12..14 of 32.
    let (old, trace) = t.call(|| unsafe { form_btr16(p.add(16), -17) });
    assert_eq!((old, buf[12], buf[13]), (1, 0xff, 0x7f));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 12, &[0xff, 0xff], &at),
            Want::write(&buf, 12, &[0xff, 0x7f], &at)
        ]
    );
    // SAFETY: bytes 20..22 of 32.
    let (old, trace) = t.call(|| unsafe { form_btr16(p.add(16), 33) });
    assert_eq!((old, buf[20]), (1, 0xfd));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 20, &[0xff, 0xff], &at),
            Want::write(&buf, 20, &[0xfd, 0xff], &at)
        ]
    );
}

/// `btc qword [p], 130`: the qword at p+16, bit 2.
#[traced_ffi]
fn btc_register_offset_reads_then_writes_the_qword_holding_the_bit(t: &mut Tracer) {
    let mut buf = t.buffer("bits", 32);
    let p = buf.as_mut_ptr();
    // SAFETY: bytes 16..24 of 32.
    let (old, trace) = t.call(|| unsafe { form_btc64(p, 130) });
    assert_eq!((old, buf[16]), (0, 4));
    assert_exact!(
        trace,
        [
            Want::read(&buf, 16, &[0; 8], &at("form_btc64", 0)),
            Want::write(&buf, 16, &[4, 0, 0, 0, 0, 0, 0, 0], &at("form_btc64", 0))
        ]
    );
}

/// An immediate bit offset is taken mod the operand size: `bt dword [p], 37` reads
/// the dword at p.
#[traced_ffi]
fn bt_immediate_offset_reads_the_dword_at_the_operand(t: &mut Tracer) {
    let buf = t.buffer_from("bits", &[0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let p = buf.as_ptr();
    // SAFETY: bytes 0..4.
    let (bit, trace) = t.call(|| unsafe { form_bt32_imm(p) });
    assert_eq!(bit, 1);
    assert_exact!(
        trace,
        [Want::read(
            &buf,
            0,
            &[0x20, 0, 0, 0],
            &at("form_bt32_imm", 0)
        )]
    );
}

// --------------------------------------------------------------------- stack

/// With rsp at the end of a 64-byte buffer: push (W 56), call (W 48, the return
/// address form_stack_switch+0x16), enter 32, 0 (W 40, the fake rbp), leave (R 40),
/// ret (R 48), pop (R 56).
#[traced_ffi]
fn push_call_enter_leave_ret_pop_on_a_buffer_stack(t: &mut Tracer) {
    let mut stack = t.buffer("stack", 64);
    let top = stack.as_mut_ptr().wrapping_add(64);
    let (v, fake_rbp) = (0x5151_5151_0000_0001_u64, 0xbbbb_0000_1234_5678_u64);
    // SAFETY: the 56 bytes below `top` are the buffer's; no signal reaches this
    // thread while it runs there (faults are handled by the supervisor).
    let (got, trace) = t.call(|| unsafe { form_stack_switch(top, v, fake_rbp) });
    assert_eq!(got, v);
    let f = form_stack_switch as unsafe extern "C" fn(*mut u8, u64, u64) -> u64;
    let ret = (f as usize as u64 + 0x16).to_le_bytes();
    assert_eq!(&stack[56..], &v.to_le_bytes());
    assert_eq!(&stack[48..56], &ret);
    assert_eq!(&stack[40..48], &fake_rbp.to_le_bytes());
    assert_eq!(&stack[..40], &[0; 40]);
    let at = |off| at("form_stack_switch", off);
    assert_exact!(
        trace,
        [
            Want::write(&stack, 56, &v.to_le_bytes(), &at(0x10)),
            Want::write(&stack, 48, &ret, &at(0x11)),
            Want::write(&stack, 40, &fake_rbp.to_le_bytes(), &at(0x22)),
            Want::read(&stack, 40, &fake_rbp.to_le_bytes(), &at(0x26)),
            Want::read(&stack, 48, &ret, &at(0x27)),
            Want::read(&stack, 56, &v.to_le_bytes(), &at(0x16)),
        ]
    );
}

// ---------------------------------------------------------- cache-line hints

type Hint = unsafe extern "C" fn(*const u8);

/// `f(buf + offset)` on a 256-byte (so 64-aligned) buffer: no access, one note naming
/// the instruction and the cache line holding the address (offset rounded down to
/// 64). Checked untraced (`mprotect(PROT_NONE)` + a SIGSEGV handler, on this CPU):
/// clflush, clflushopt and clwb all fault on a PROT_NONE page, so the tracer sees
/// them; on a PROT_READ page none faults.
fn cache_hint(t: &mut Tracer, f: Hint, symbol: &str, mnemonic: &str, offset: usize) {
    let data = pattern(256, 45);
    let buf = t.buffer_from("lines", &data);
    let p = buf.as_ptr();
    // SAFETY: the address is inside the buffer.
    let ((), trace) = t.call(|| unsafe { f(p.add(offset)) });
    assert_eq!(&buf[..], &data[..]);
    assert_exact!(trace, []);
    let [note] = trace.notes() else {
        panic!("expected exactly one note\n{trace}");
    };
    assert!(note.text.contains(mnemonic), "{note:?}\n{trace}");
    assert_eq!(describe_ip(note.ip), at(symbol, 0));
    assert_eq!(note.region, Some(traced_ffi::Region::region_id(&buf)));
    assert_eq!(note.offset, (offset & !63) as isize, "{note:?}");
    assert_eq!(note.tid, current_tid());
}

/// CPUID.(EAX=7, ECX=0):EBX bit `bit` (23 CLFLUSHOPT, 24 CLWB); says when missing.
fn cpuid7_ebx_or_skip(test: &str, bit: u32, name: &str) -> bool {
    let present = std::arch::x86_64::__cpuid_count(7, 0).ebx >> bit & 1 == 1;
    if !present {
        println!("skipped: {test}: CPU lacks {name}");
    }
    present
}

#[traced_ffi]
fn clflush_is_a_note_on_the_line_and_no_access(t: &mut Tracer) {
    cache_hint(t, form_clflush, "form_clflush", "clflush", 64);
}

/// An address inside a line (100): the note names the line's start (64).
#[traced_ffi]
fn clflushopt_is_a_note_on_the_line_and_no_access(t: &mut Tracer) {
    if cpuid7_ebx_or_skip(t.test_name(), 23, "CLFLUSHOPT") {
        cache_hint(t, form_clflushopt, "form_clflushopt", "clflushopt", 100);
    }
}

#[traced_ffi]
fn clwb_is_a_note_on_the_line_and_no_access(t: &mut Tracer) {
    if cpuid7_ebx_or_skip(t.test_name(), 24, "CLWB") {
        cache_hint(t, form_clwb, "form_clwb", "clwb", 128);
    }
}

/// Prefetches never fault, even on a PROT_NONE page (checked untraced, as above): no
/// access, no note, no fault.
#[traced_ffi]
fn prefetches_make_no_access_no_note_and_no_fault(t: &mut Tracer) {
    let buf = t.buffer_from("lines", &pattern(256, 46));
    let p = buf.as_ptr();
    // SAFETY: inside the buffer; prefetches never fault anyway.
    let ((), trace) = t.call(|| unsafe { form_prefetch(p.add(70)) });
    assert_exact!(trace, []);
    assert!(trace.notes().is_empty(), "{trace}");
    assert_eq!(trace.stats().faults, 0, "{trace}");
}
