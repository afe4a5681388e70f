//! Read-modify-write and compare forms the C fixtures do not emit (`inc [m]`,
//! `xchg [m], r`, `cmp [m], imm`): each runs once in the stub and is recorded
//! as a read (with the old value) and, if it stores, a write (with the new one).

use traced_ffi::{AccessKind, Tracer, describe_ip, traced_ffi};

std::arch::global_asm!(
    ".pushsection .text.traced_ffi_tests_rmw_forms,\"ax\",@progbits",
    ".globl traced_ffi_tests_rmw_forms",
    ".type traced_ffi_tests_rmw_forms,@function",
    "traced_ffi_tests_rmw_forms:",
    "    inc dword ptr [rdi]", // p[0] += 1
    "    mov eax, 7",
    "    xchg dword ptr [rdi + 4], eax", // swap p[1] and 7
    "    cmp dword ptr [rdi + 8], 5",    // compare p[2] with 5
    "    ret",                           // eax = old p[1]
    ".size traced_ffi_tests_rmw_forms, .-traced_ffi_tests_rmw_forms",
    ".popsection",
);

unsafe extern "C" {
    /// `inc [p]`, `xchg [p+4], 7`, `cmp [p+8], 5`; returns the old `p[1]`.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of three u32.
    fn traced_ffi_tests_rmw_forms(p: *mut u32) -> u32;
}

#[traced_ffi]
fn inc_xchg_and_cmp_on_memory_are_one_stub_execution_each_with_exact_values(t: &mut Tracer) {
    let mut buf = t.buffer_from("p", &[1, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0]);
    // SAFETY: the buffer holds three u32.
    let (old, trace) = t.call(|| unsafe { traced_ffi_tests_rmw_forms(buf.as_mut_ptr().cast()) });
    assert_eq!(old, 2);
    assert_eq!(&buf[..], &[2, 0, 0, 0, 7, 0, 0, 0, 5, 0, 0, 0]);
    let got: Vec<(AccessKind, isize, usize, Vec<u8>, String)> = trace
        .accesses()
        .iter()
        .map(|a| (a.kind, a.offset, a.len, a.bytes.clone(), describe_ip(a.ip)))
        .collect();
    let at = |off: u32| format!("traced_ffi_tests_rmw_forms+{off:#x}");
    assert_eq!(
        got,
        vec![
            (AccessKind::Read, 0, 4, vec![1, 0, 0, 0], at(0x0)),
            (AccessKind::Write, 0, 4, vec![2, 0, 0, 0], at(0x0)),
            (AccessKind::Read, 4, 4, vec![2, 0, 0, 0], at(0x7)),
            (AccessKind::Write, 4, 4, vec![7, 0, 0, 0], at(0x7)),
            (AccessKind::Read, 8, 4, vec![5, 0, 0, 0], at(0xa)),
        ],
        "\n{trace}"
    );
    let s = trace.stats();
    assert_eq!(
        (s.faults, s.stub_path, s.emulated, s.step_path),
        (3, 3, 0, 0),
        "\n{trace}"
    );
    assert!(trace.unsupported().is_empty());
}
