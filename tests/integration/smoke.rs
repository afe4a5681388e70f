use traced_ffi::{AccessKind, Tracer, traced_ffi};
use traced_ffi_fixtures::o2;

#[traced_ffi]
fn fill_bytes_o2_writes_each_byte_once_in_order(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 8);
    // SAFETY: buf holds 8 bytes; fill_bytes writes the first 4.
    let ((), trace) = t.call(|| unsafe { o2::fill_bytes(buf.as_mut_ptr(), 4, 0xab) });
    println!("{trace}");
    assert_eq!(trace.written(&buf).ranges(), &[0..4]);
    let a = trace.accesses();
    assert_eq!(a.len(), 4);
    for (i, acc) in a.iter().enumerate() {
        assert_eq!(
            (acc.kind, acc.offset, acc.len, acc.bytes.as_slice()),
            (AccessKind::Write, i as isize, 1, &[0xab][..])
        );
    }
    assert_eq!(&buf[..], &[0xab, 0xab, 0xab, 0xab, 0, 0, 0, 0]);
}
