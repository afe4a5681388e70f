//! A call with a long region list (issue 11, item 4): the request that registers the
//! regions is far larger than the socket buffer between the test process and the
//! supervisor, and still goes through, in parts, each followed by a doorbell. The
//! trace is exact: only the bytes the native code touched, each in its own buffer.

use traced_ffi::{Buffer, Tracer, traced_ffi};
use traced_ffi_fixtures::o2;

use crate::check::current_tid;
use crate::os_check::{Row, assert_rows, c};

/// The byte the fixture writes.
const VALUE: u8 = 0x77;

/// Writes [`VALUE`] to byte 0 of the buffers at `picked` with `fill_bytes_o2` in one
/// traced call over all of `bufs`, and checks the trace holds exactly those writes, in
/// order, and that the other buffers are untouched
/// (and the written ones past byte 0).
fn write_one_byte_to_some(t: &mut Tracer, bufs: &mut [Buffer], picked: &[usize]) {
    let ptrs: Vec<*mut u8> = picked.iter().map(|&i| bufs[i].as_mut_ptr()).collect();
    let ((), trace) = t.call(|| {
        for &p in &ptrs {
            // SAFETY: `p` is the first byte of a live buffer of at least 1 byte.
            unsafe { o2::fill_bytes(p, 1, VALUE) };
        }
    });
    let tid = current_tid();
    let want: Vec<Row> = picked
        .iter()
        .map(|&i| Row::write(&bufs[i], 0, &[VALUE], c("fill_bytes_o2", "mov"), tid))
        .collect();
    assert_rows!(trace, want);
    assert_eq!(trace.regions().len(), bufs.len());
    for (i, b) in bufs.iter().enumerate() {
        let first = if picked.contains(&i) { VALUE } else { 0 };
        assert!(
            b[0] == first && b[1..].iter().all(|&x| x == 0),
            "buffer {i} `{}`: {:?}",
            b.name(),
            &b[..]
        );
    }
}

#[traced_ffi]
fn a_call_over_ten_thousand_one_byte_buffers_goes_through_and_is_exact(t: &mut Tracer) {
    let mut bufs: Vec<Buffer> = (0..10_000).map(|i| t.buffer(&format!("b{i}"), 1)).collect();
    write_one_byte_to_some(t, &mut bufs, &[0, 1, 4_999, 9_999]);
}

#[traced_ffi]
fn a_call_over_a_thousand_buffers_with_250_byte_names_goes_through_and_is_exact(t: &mut Tracer) {
    let mut bufs: Vec<Buffer> = (0..1_000)
        .map(|i| t.buffer(&format!("{i:04}{}", "n".repeat(246)), 4))
        .collect();
    assert_eq!(bufs[0].name().len(), 250);
    write_one_byte_to_some(t, &mut bufs, &[999, 3, 500]);
}
