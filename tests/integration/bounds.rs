//! The deliberate mistakes: one byte past the end, one byte before the start, one
//! byte short. Out-of-bounds accesses are recorded with their offset relative to the
//! buffer, listed by `out_of_bounds()`, and left out of `read`/`written`.

use traced_ffi::Tracer;

use crate::check::{Expected, assert_accesses, assert_paths, pattern};
use crate::levels::{Level, at_both_levels};

/// Bytes of the buffers below.
const N: usize = 16;

fn fill_one_past_end_writes_offset_n_out_of_bounds(t: &mut Tracer, level: &Level) {
    const V: u8 = 0x5c;
    let mut untraced = vec![0u8; N + 1];
    // SAFETY: `untraced` is valid for writes of N + 1 bytes.
    unsafe { (level.fill_one_past_end)(untraced.as_mut_ptr(), N, V) };

    let mut buf = t.buffer("buf", N);
    // SAFETY: the byte past `buf` is its guard page, which the tracer opens for the one
    // out-of-bounds store (the test is about catching it).
    let ((), trace) = t.call(|| unsafe { (level.fill_one_past_end)(buf.as_mut_ptr(), N, V) });

    let site = level.sites.fill_one_past_end;
    let expected: Vec<Expected> = (0..=N)
        .map(|i| Expected::write(&buf, i as isize, &[V], site))
        .collect();
    assert_accesses!(trace, expected);
    let last = trace.accesses().last().expect("n + 1 accesses");
    assert_eq!(trace.out_of_bounds(), [last]);
    assert_eq!((last.offset, last.len), (N as isize, 1));
    assert_eq!(
        trace.written(&buf).ranges(),
        &[0..N],
        "written() is clipped to the buffer"
    );
    assert!(trace.read(&buf).is_empty());
    assert_paths!(trace, [(site, N as u64 + 1)]);
    assert_eq!(&buf[..], &untraced[..N]);
    assert_eq!(
        untraced[N], V,
        "untraced, the extra byte lands after the buffer"
    );
}

at_both_levels!(fill_one_past_end_writes_offset_n_out_of_bounds =>
    fill_one_past_end_o0_last_write_is_offset_n_and_out_of_bounds,
    fill_one_past_end_o2_last_write_is_offset_n_and_out_of_bounds);

/// A zero-length buffer ends where it starts, against its guard page: `n = 0` still
/// writes `buf[0]`, which is out of bounds, and nothing is in bounds.
fn fill_one_past_end_on_empty_buffer_is_all_out_of_bounds(t: &mut Tracer, level: &Level) {
    const V: u8 = 0x77;
    let mut buf = t.buffer("empty", 0);
    // SAFETY: buf[0] is the guard page after the empty buffer, opened by the tracer for
    // the one store.
    let ((), trace) = t.call(|| unsafe { (level.fill_one_past_end)(buf.as_mut_ptr(), 0, V) });

    assert_accesses!(
        trace,
        [Expected::write(
            &buf,
            0,
            &[V],
            level.sites.fill_one_past_end
        )]
    );
    assert_eq!(trace.out_of_bounds(), [&trace.accesses()[0]]);
    assert!(trace.written(&buf).is_empty());
    assert!(trace.read(&buf).is_empty());
    assert_paths!(trace, [(level.sites.fill_one_past_end, 1)]);
    assert!(buf.is_empty());
}

at_both_levels!(fill_one_past_end_on_empty_buffer_is_all_out_of_bounds =>
    fill_one_past_end_o0_on_an_empty_buffer_writes_only_out_of_bounds,
    fill_one_past_end_o2_on_an_empty_buffer_writes_only_out_of_bounds);

fn sum_from_minus_one_reads_the_redzone_byte_first(t: &mut Tracer, level: &Level) {
    let data = pattern(N, 9);
    // The untraced run gets a zero before the data, like the buffer's redzone.
    let mut padded = vec![0u8];
    padded.extend_from_slice(&data);
    // SAFETY: padded[1..] is the buffer; padded[0] (its [-1]) through padded[N] are
    // readable.
    let untraced = unsafe { (level.sum_from_minus_one)(padded.as_ptr().add(1), N) };

    let buf = t.buffer_from("buf", &data);
    // SAFETY: buf[-1] is the buffer's redzone, on its own (mapped) pages.
    let (sum, trace) = t.call(|| unsafe { (level.sum_from_minus_one)(buf.as_ptr(), N) });

    let [before, each] = level.sites.sum_from_minus_one;
    let expected: Vec<Expected> = std::iter::once(Expected::read(&buf, -1, &[0], before))
        .chain((0..N).map(|i| Expected::read(&buf, i as isize, &[data[i]], each)))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.out_of_bounds(), [&trace.accesses()[0]]);
    assert_eq!(trace.read(&buf).ranges(), &[0..N], "read() is clipped");
    assert!(trace.written(&buf).is_empty());
    assert_paths!(trace, [(before, 1), (each, N as u64)]);
    assert_eq!(sum, untraced);
    assert_eq!(sum, data.iter().map(|&b| u32::from(b)).sum::<u32>());
}

at_both_levels!(sum_from_minus_one_reads_the_redzone_byte_first =>
    sum_from_minus_one_o0_first_reads_offset_minus_one_whose_redzone_value_is_zero,
    sum_from_minus_one_o2_first_reads_offset_minus_one_whose_redzone_value_is_zero);

/// A buffer of exactly one page starts at a page boundary: its `[-1]` is on the guard
/// page before it, not in a redzone of its own page.
fn sum_from_minus_one_reads_the_guard_page_before_a_page_sized_buffer(
    t: &mut Tracer,
    level: &Level,
) {
    const PAGE: usize = 4096;
    const READ: usize = 4;
    let mut data = vec![0u8; PAGE];
    data[..READ].copy_from_slice(&[1, 2, 3, 4]);
    let buf = t.buffer_from("page", &data);
    // SAFETY: buf[-1] is the guard page before the buffer, which the tracer opens for
    // the one load.
    let (sum, trace) = t.call(|| unsafe { (level.sum_from_minus_one)(buf.as_ptr(), READ) });

    let [before, each] = level.sites.sum_from_minus_one;
    let expected: Vec<Expected> = std::iter::once(Expected::read(&buf, -1, &[0], before))
        .chain((0..READ).map(|i| Expected::read(&buf, i as isize, &[data[i]], each)))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.out_of_bounds(), [&trace.accesses()[0]]);
    assert_eq!(trace.read(&buf).ranges(), &[0..READ]);
    assert_paths!(trace, [(before, 1), (each, READ as u64)]);
    assert_eq!(sum, 10);
}

at_both_levels!(sum_from_minus_one_reads_the_guard_page_before_a_page_sized_buffer =>
    sum_from_minus_one_o0_reads_the_guard_page_before_a_page_sized_buffer,
    sum_from_minus_one_o2_reads_the_guard_page_before_a_page_sized_buffer);

fn fill_all_but_last_leaves_the_last_byte_unwritten(t: &mut Tracer, level: &Level) {
    const V: u8 = 0xee;
    let mut untraced = vec![0u8; N];
    // SAFETY: `untraced` is valid for writes of N bytes.
    unsafe { (level.fill_all_but_last)(untraced.as_mut_ptr(), N, V) };

    let mut buf = t.buffer("buf", N);
    // SAFETY: `buf` is valid for writes of N bytes.
    let ((), trace) = t.call(|| unsafe { (level.fill_all_but_last)(buf.as_mut_ptr(), N, V) });

    let site = level.sites.fill_all_but_last;
    let expected: Vec<Expected> = (0..N - 1)
        .map(|i| Expected::write(&buf, i as isize, &[V], site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.written(&buf).ranges(), &[0..N - 1]);
    assert!(!trace.written(&buf).contains(N - 1));
    assert!(trace.read(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, N as u64 - 1)]);
    assert_eq!(&buf[..], &untraced[..]);
    assert_eq!(buf[N - 1], 0);

    // n = 1 writes nothing at all.
    // SAFETY: `buf` is valid for writes of N >= 1 bytes.
    let ((), trace) = t.call(|| unsafe { (level.fill_all_but_last)(buf.as_mut_ptr(), 1, 0x01) });
    assert_accesses!(trace, []);
    assert!(trace.written(&buf).is_empty());
    assert_paths!(trace, []);
    assert_eq!(&buf[..], &untraced[..]);
}

at_both_levels!(fill_all_but_last_leaves_the_last_byte_unwritten =>
    fill_all_but_last_o0_writes_n_minus_1_of_n_bytes,
    fill_all_but_last_o2_writes_n_minus_1_of_n_bytes);
