//! C++ code: accesses made inside a namespaced function template carry its
//! demangled name and source line.

use traced_ffi::{AccessKind, Tracer, describe_ip, source_location, traced_ffi};
use traced_ffi_fixtures::cpp;

#[traced_ffi]
fn a_cpp_template_in_a_namespace_is_named_demangled_at_each_access(t: &mut Tracer) {
    let mut out = t.buffer("out", 8);
    // SAFETY: out holds 4 u16s, 2-aligned (its length is a multiple of 2).
    let ((), trace) = t.call(|| unsafe { cpp::cpp_fill_u16(out.as_mut_ptr().cast(), 4, 0xabcd) });
    let got: Vec<(AccessKind, isize, usize, Vec<u8>)> = trace
        .accesses()
        .iter()
        .map(|a| (a.kind, a.offset, a.len, a.bytes.clone()))
        .collect();
    let want: Vec<(AccessKind, isize, usize, Vec<u8>)> = (0..4)
        .map(|i| (AccessKind::Write, 2 * i, 2, vec![0xcd, 0xab]))
        .collect();
    assert_eq!(got, want, "{trace}");
    let line = format!("cpp/sources.cpp:{}", cpp::site_line("cpp.fill_with.store"));
    for a in trace.accesses() {
        // One instruction: the loop's store (see fixtures/DISASM.md).
        assert_eq!(a.insn, "mov [rdi],dx", "{trace}");
        let at = describe_ip(a.ip);
        assert!(
            at.starts_with(
                "void traced::fixture::fill_with<unsigned short>(unsigned short*, unsigned \
                 long, unsigned short)+0x"
            ),
            "{at}\n{trace}"
        );
        let source = source_location(a.ip).unwrap_or_default();
        assert!(source.contains(&line), "{source}\n{trace}");
    }
    assert!(trace.allocations().is_empty(), "{trace}");
    assert_eq!(&out[..], &[0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab, 0xcd, 0xab]);
}
