//! An instruction the tracer cannot account for exactly (`maskmovq`, an MMX
//! byte-masked store) fails the test
//! loudly, naming the test, the call and the instruction, unless the test opts in
//! with `allow_unsupported(true)`; either way the instruction runs.

use std::panic::{self, AssertUnwindSafe};

use traced_ffi::{Tracer, describe_ip, traced_ffi};

use crate::check::{assert_accesses, current_tid};

std::arch::global_asm!(
    ".pushsection .text.traced_ffi_tests_maskmovq,\"ax\",@progbits",
    ".globl traced_ffi_tests_maskmovq",
    ".type traced_ffi_tests_maskmovq,@function",
    "traced_ffi_tests_maskmovq:",
    "    movzx eax, dl",     // +0x0: eax = v
    "    movq mm0, rax",     // +0x3: mm0 byte 0 = v
    "    mov eax, 0x80",     // +0x7
    "    movq mm1, rax",     // +0xc: mask: byte 0 only
    "    test rsi, rsi",     // +0x10
    "    jz 2f",             // +0x13
    "1:  maskmovq mm0, mm1", // +0x15: [rdi] = v
    "    inc rdi",
    "    dec rsi",
    "    jnz 1b",
    "2:  emms",
    "    ret",
    ".size traced_ffi_tests_maskmovq, .-traced_ffi_tests_maskmovq",
    ".popsection",
);

unsafe extern "C" {
    /// One `maskmovq` per byte: writes `buf[0..n] = v`, one fault each.
    ///
    /// # Safety
    /// `buf` must be valid for writes of `n` bytes.
    pub(crate) fn traced_ffi_tests_maskmovq(buf: *mut u8, n: usize, v: u8);
}

/// Where the `maskmovq` is, and its encoding (0F F7 C1).
const MASKMOVQ_AT: &str = "traced_ffi_tests_maskmovq+0x15";
const MASKMOVQ_BYTES: [u8; 3] = [0x0f, 0xf7, 0xc1];
/// Bytes written, and their value.
const N: usize = 16;
const V: u8 = 0x3c;

#[traced_ffi(should_panic(
    expected = "test `unsupported::maskmovq_without_allow_unsupported_fails_the_test`: traced call at"
))]
fn maskmovq_without_allow_unsupported_fails_the_test(t: &mut Tracer) {
    let mut buf = t.buffer("buf", N);
    // SAFETY: `buf` is valid for writes of N bytes.
    let ((), _trace) = t.call(|| unsafe { traced_ffi_tests_maskmovq(buf.as_mut_ptr(), N, V) });
}

#[traced_ffi]
fn maskmovq_failure_names_the_test_the_call_the_instruction_and_the_way_out(t: &mut Tracer) {
    let mut buf = t.buffer("buf", N);
    let p = buf.as_mut_ptr();
    let fill = move || {
        // SAFETY: `p` is `buf`'s first byte; `buf` is valid for writes of N bytes.
        unsafe { traced_ffi_tests_maskmovq(p, N, V) }
    };
    let call_line = line!() + 1;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| t.call(fill)));

    let payload = outcome.expect_err("an unsupported instruction fails the call");
    let message = payload
        .downcast_ref::<String>()
        .expect("the panic message is a String");
    for expected in [
        format!("test `{}`", t.test_name()),
        format!("traced call at {}:{call_line}", file!()),
        "1 instruction(s) and 0 system call(s) could not be traced exactly".to_owned(),
        "the trace is incomplete".to_owned(),
        "UNSUPPORTED".to_owned(),
        format!("UNSUPPORTED ×{N} at {MASKMOVQ_AT} `maskmovq"),
        "[0f f7 c1]: maskmovq (MMX mask) is not supported".to_owned(),
        "t.allow_unsupported(true)".to_owned(),
    ] {
        assert!(
            message.contains(&expected),
            "the failure lacks {expected:?}:\n{message}"
        );
    }
    assert_eq!(&buf[..], &[V; N], "the instruction still ran");
}

#[traced_ffi]
fn maskmovq_with_allow_unsupported_is_listed_as_unsupported_and_still_executes(t: &mut Tracer) {
    let mut untraced = [0u8; N];
    // SAFETY: `untraced` is valid for writes of N bytes.
    unsafe { traced_ffi_tests_maskmovq(untraced.as_mut_ptr(), N, V) };

    t.allow_unsupported(true);
    let mut buf = t.buffer("buf", N + 1);
    // SAFETY: `buf` is valid for writes of N + 1 >= N bytes.
    let ((), trace) = t.call(|| unsafe { traced_ffi_tests_maskmovq(buf.as_mut_ptr(), N, V) });

    let [u] = trace.unsupported() else {
        panic!("expected exactly one unsupported instruction\n{trace}");
    };
    assert!(u.insn.contains("maskmovq"), "{u:?}");
    assert_eq!(describe_ip(u.ip), MASKMOVQ_AT);
    assert_eq!(u.insn_bytes, MASKMOVQ_BYTES);
    assert!(u.reason.contains("maskmovq"), "{u:?}");
    assert_eq!(u.tid, current_tid());
    assert!(u.count >= 1, "{u:?}");
    let stats = trace.stats();
    assert_eq!(
        stats.faults, u.count,
        "every fault was the maskmovq\n{trace}"
    );
    assert_eq!(stats.step_path, u.count, "each was single-stepped\n{trace}");
    assert_eq!(stats.stub_path, 0, "{trace}");
    // The trace is incomplete: the unsupported instruction's writes are not recorded.
    assert_accesses!(trace, []);
    assert!(trace.written(&buf).is_empty());
    assert_eq!(&buf[..N], &untraced[..]);
    assert_eq!(&buf[..N], &[V; N]);
    assert_eq!(buf[N], 0);
}
