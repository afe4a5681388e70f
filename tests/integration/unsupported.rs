//! An instruction the tracer cannot account for exactly (`rep stosb`) fails the test
//! loudly, naming the test, the call and the instruction, unless the test opts in
//! with `allow_unsupported(true)`; either way the instruction runs.

use std::panic::{self, AssertUnwindSafe};

use traced_ffi::{Tracer, describe_ip, traced_ffi};

use crate::check::{assert_accesses, current_tid};

std::arch::global_asm!(
    ".pushsection .text.traced_ffi_tests_rep_stosb,\"ax\",@progbits",
    ".globl traced_ffi_tests_rep_stosb",
    ".type traced_ffi_tests_rep_stosb,@function",
    "traced_ffi_tests_rep_stosb:",
    "    mov al, dl",   // +0x0: al = v
    "    mov rcx, rsi", // +0x2: rcx = n
    "    rep stosb",    // +0x5: buf[0..n] = v (DF is clear on entry, SysV ABI)
    "    ret",
    ".size traced_ffi_tests_rep_stosb, .-traced_ffi_tests_rep_stosb",
    ".popsection",
);

unsafe extern "C" {
    /// `rep stosb` with rdi = `buf`, rcx = `n`, al = `v`: writes `buf[0..n] = v`.
    ///
    /// # Safety
    /// `buf` must be valid for writes of `n` bytes.
    pub(crate) fn traced_ffi_tests_rep_stosb(buf: *mut u8, n: usize, v: u8);
}

/// Where the `rep stosb` is, and its encoding (F3 AA).
const REP_STOSB_AT: &str = "traced_ffi_tests_rep_stosb+0x5";
const REP_STOSB_BYTES: [u8; 2] = [0xf3, 0xaa];
/// Bytes written, and their value.
const N: usize = 16;
const V: u8 = 0x3c;

#[traced_ffi(should_panic(
    expected = "test `unsupported::rep_stosb_without_allow_unsupported_fails_the_test`: traced call at"
))]
fn rep_stosb_without_allow_unsupported_fails_the_test(t: &mut Tracer) {
    let mut buf = t.buffer("buf", N);
    // SAFETY: `buf` is valid for writes of N bytes.
    let ((), _trace) = t.call(|| unsafe { traced_ffi_tests_rep_stosb(buf.as_mut_ptr(), N, V) });
}

#[traced_ffi]
fn rep_stosb_failure_names_the_test_the_call_the_instruction_and_the_way_out(t: &mut Tracer) {
    let mut buf = t.buffer("buf", N);
    let p = buf.as_mut_ptr();
    let fill = move || {
        // SAFETY: `p` is `buf`'s first byte; `buf` is valid for writes of N bytes.
        unsafe { traced_ffi_tests_rep_stosb(p, N, V) }
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
        "1 instruction(s) could not be traced exactly".to_owned(),
        "the trace is incomplete".to_owned(),
        "UNSUPPORTED".to_owned(),
        format!("UNSUPPORTED ×{N} at {REP_STOSB_AT} `rep stosb"),
        "[f3 aa]: rep-prefixed string instructions are not supported".to_owned(),
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
fn rep_stosb_with_allow_unsupported_is_listed_as_unsupported_and_still_executes(t: &mut Tracer) {
    let mut untraced = [0u8; N];
    // SAFETY: `untraced` is valid for writes of N bytes.
    unsafe { traced_ffi_tests_rep_stosb(untraced.as_mut_ptr(), N, V) };

    t.allow_unsupported(true);
    let mut buf = t.buffer("buf", N + 1);
    // SAFETY: `buf` is valid for writes of N + 1 >= N bytes.
    let ((), trace) = t.call(|| unsafe { traced_ffi_tests_rep_stosb(buf.as_mut_ptr(), N, V) });

    let [u] = trace.unsupported() else {
        panic!("expected exactly one unsupported instruction\n{trace}");
    };
    assert!(u.insn.contains("rep stosb"), "{u:?}");
    assert_eq!(describe_ip(u.ip), REP_STOSB_AT);
    assert_eq!(u.insn_bytes, REP_STOSB_BYTES);
    assert!(u.reason.contains("rep"), "{u:?}");
    assert_eq!(u.tid, current_tid());
    assert!(u.count >= 1, "{u:?}");
    let stats = trace.stats();
    assert_eq!(
        stats.faults, u.count,
        "every fault was the rep stosb\n{trace}"
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
