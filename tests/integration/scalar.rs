//! Byte and word loops that read and write whole buffers: one access per element, in
//! order, with the values; and the read-modify-write of `increment_u32`.

use traced_ffi::Tracer;

use crate::check::{Expected, assert_accesses, assert_paths, pattern};
use crate::levels::{Level, at_both_levels};

/// Bytes of the buffers below: a few more than the fixtures touch.
const LEN: usize = 24;
/// Elements the fixtures are asked to touch.
const N: usize = 20;

fn fill_bytes_writes_each_byte_once_ascending(t: &mut Tracer, level: &Level) {
    const V: u8 = 0xab;
    let mut untraced = vec![0u8; LEN];
    // SAFETY: `untraced` is valid for writes of LEN >= N bytes.
    unsafe { (level.fill_bytes)(untraced.as_mut_ptr(), N, V) };

    let mut buf = t.buffer("buf", LEN);
    // SAFETY: `buf` is valid for writes of LEN >= N bytes.
    let ((), trace) = t.call(|| unsafe { (level.fill_bytes)(buf.as_mut_ptr(), N, V) });

    let site = level.sites.fill_bytes;
    let expected: Vec<Expected> = (0..N)
        .map(|i| Expected::write(&buf, i as isize, &[V], site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.written(&buf).ranges(), &[0..N]);
    assert!(trace.read(&buf).is_empty());
    assert!(trace.maybe_written(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, N as u64)]);
    assert_eq!(&buf[..], &untraced[..]);
    assert_eq!(&buf[..N], &[V; N]);
    assert_eq!(&buf[N..], &[0; LEN - N]);
}

at_both_levels!(fill_bytes_writes_each_byte_once_ascending =>
    fill_bytes_o0_writes_each_byte_once_in_ascending_order,
    fill_bytes_o2_writes_each_byte_once_in_ascending_order);

fn fill_bytes_with_n_zero_accesses_nothing(t: &mut Tracer, level: &Level) {
    let mut buf = t.buffer_from("buf", &[7; 8]);
    // SAFETY: n = 0: nothing is written.
    let ((), trace) = t.call(|| unsafe { (level.fill_bytes)(buf.as_mut_ptr(), 0, 0x11) });
    assert_accesses!(trace, []);
    assert!(trace.written(&buf).is_empty());
    assert!(trace.read(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, []);
    assert_eq!(&buf[..], &[7; 8]);
}

at_both_levels!(fill_bytes_with_n_zero_accesses_nothing =>
    fill_bytes_o0_with_n_zero_accesses_nothing,
    fill_bytes_o2_with_n_zero_accesses_nothing);

fn sum_bytes_reads_each_byte_once_ascending(t: &mut Tracer, level: &Level) {
    let data = pattern(LEN, 3);
    // SAFETY: `data` is valid for reads of LEN >= N bytes.
    let untraced = unsafe { (level.sum_bytes)(data.as_ptr(), N) };

    let buf = t.buffer_from("buf", &data);
    // SAFETY: `buf` is valid for reads of LEN >= N bytes.
    let (sum, trace) = t.call(|| unsafe { (level.sum_bytes)(buf.as_ptr(), N) });

    let site = level.sites.sum_bytes;
    let expected: Vec<Expected> = (0..N)
        .map(|i| Expected::read(&buf, i as isize, &[data[i]], site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&buf).ranges(), &[0..N]);
    assert!(trace.written(&buf).is_empty());
    assert!(trace.maybe_written(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, N as u64)]);
    assert_eq!(sum, untraced);
    assert_eq!(sum, data[..N].iter().map(|&b| u32::from(b)).sum::<u32>());
    assert_eq!(&buf[..], &data[..], "sum_bytes must not change its input");
}

at_both_levels!(sum_bytes_reads_each_byte_once_ascending =>
    sum_bytes_o0_reads_each_byte_once_in_ascending_order,
    sum_bytes_o2_reads_each_byte_once_in_ascending_order);

fn fill_u32_writes_each_word_once_ascending(t: &mut Tracer, level: &Level) {
    const V: u32 = 0x0102_0304;
    const WORDS: usize = 6;
    let mut untraced = [0u32; WORDS + 1];
    // SAFETY: `untraced` is valid for writes of WORDS + 1 >= WORDS u32s.
    unsafe { (level.fill_u32)(untraced.as_mut_ptr(), WORDS, V) };

    // One more word than the fixture writes; the buffer's start is 4-aligned because
    // its end is page-aligned and its length is a multiple of 4.
    let mut buf = t.buffer("words", 4 * (WORDS + 1));
    let p = buf.as_mut_ptr().cast::<u32>();
    // SAFETY: `p` is 4-aligned and valid for writes of WORDS + 1 >= WORDS u32s.
    let ((), trace) = t.call(|| unsafe { (level.fill_u32)(p, WORDS, V) });

    let site = level.sites.fill_u32;
    let expected: Vec<Expected> = (0..WORDS)
        .map(|i| Expected::write(&buf, 4 * i as isize, &V.to_le_bytes(), site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.written(&buf).ranges(), &[0..4 * WORDS]);
    assert!(trace.read(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, WORDS as u64)]);
    let untraced_bytes: Vec<u8> = untraced.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&buf[..], &untraced_bytes[..]);
    assert_eq!(&buf[4 * WORDS..], &[0; 4], "the last word is not written");
}

at_both_levels!(fill_u32_writes_each_word_once_ascending =>
    fill_u32_o0_writes_each_4_byte_word_once_in_ascending_order,
    fill_u32_o2_writes_each_4_byte_word_once_in_ascending_order);

fn sum_u32_reads_each_word_once_ascending(t: &mut Tracer, level: &Level) {
    let words: [u32; 5] = [u32::MAX, 2, 0x1020_3040, 0, 0xdead_beef];
    // SAFETY: `words` is valid for reads of 5 u32s.
    let untraced = unsafe { (level.sum_u32)(words.as_ptr(), words.len()) };

    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let buf = t.buffer_from("words", &bytes);
    let p = buf.as_ptr().cast::<u32>();
    // SAFETY: `p` is 4-aligned (page-aligned end, length a multiple of 4) and valid
    // for reads of 5 u32s.
    let (sum, trace) = t.call(|| unsafe { (level.sum_u32)(p, words.len()) });

    let site = level.sites.sum_u32;
    let expected: Vec<Expected> = words
        .iter()
        .enumerate()
        .map(|(i, w)| Expected::read(&buf, 4 * i as isize, &w.to_le_bytes(), site))
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&buf).ranges(), &[0..20]);
    assert!(trace.written(&buf).is_empty());
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(site, 5)]);
    assert_eq!(sum, untraced);
    assert_eq!(
        sum,
        words.iter().fold(0u32, |s, w| s.wrapping_add(*w)),
        "the sum wraps"
    );
}

at_both_levels!(sum_u32_reads_each_word_once_ascending =>
    sum_u32_o0_reads_each_4_byte_word_once_in_ascending_order,
    sum_u32_o2_reads_each_4_byte_word_once_in_ascending_order);

fn copy_bytes_alternates_between_source_and_destination(t: &mut Tracer, level: &Level) {
    let data = pattern(LEN, 40);
    let mut untraced = vec![0u8; LEN];
    // SAFETY: `data` is readable and `untraced` writable for LEN >= N bytes.
    unsafe { (level.copy_bytes)(untraced.as_mut_ptr(), data.as_ptr(), N) };

    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", LEN);
    // SAFETY: `src` is readable and `dst` writable for LEN >= N bytes.
    let ((), trace) = t.call(|| unsafe { (level.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), N) });

    let [read, write] = level.sites.copy_bytes;
    let expected: Vec<Expected> = (0..N)
        .flat_map(|i| {
            let (offset, value) = (i as isize, [data[i]]);
            [
                Expected::read(&src, offset, &value, read),
                Expected::write(&dst, offset, &value, write),
            ]
        })
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&src).ranges(), &[0..N]);
    assert!(trace.written(&src).is_empty());
    assert_eq!(trace.written(&dst).ranges(), &[0..N]);
    assert!(trace.read(&dst).is_empty());
    assert_eq!(trace.accesses_to(&src).len(), N);
    assert_eq!(trace.accesses_to(&dst).len(), N);
    assert!(trace.out_of_bounds().is_empty());
    assert_paths!(trace, [(read, N as u64), (write, N as u64)]);
    assert_eq!(&dst[..], &untraced[..]);
    assert_eq!(&dst[..N], &data[..N]);
    assert_eq!(&src[..], &data[..], "copy_bytes must not change its source");
}

at_both_levels!(copy_bytes_alternates_between_source_and_destination =>
    copy_bytes_o0_reads_src_i_then_writes_dst_i_alternating,
    copy_bytes_o2_reads_src_i_then_writes_dst_i_alternating);

/// At `-O0` a load and a store (two faults per word), at `-O2` one `add DWORD PTR
/// [rdi], 0x1` that makes a read then a write (one fault per word): the sites table
/// has the same site twice for `-O2`.
fn increment_u32_reads_old_then_writes_new(t: &mut Tracer, level: &Level) {
    let start: [u32; 4] = [0, 41, u32::MAX, 9];
    const WORDS: usize = 3;
    let mut untraced = start;
    // SAFETY: `untraced` is valid for reads and writes of 4 >= WORDS u32s.
    unsafe { (level.increment_u32)(untraced.as_mut_ptr(), WORDS) };

    let bytes: Vec<u8> = start.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut buf = t.buffer_from("p", &bytes);
    let p = buf.as_mut_ptr().cast::<u32>();
    // SAFETY: `p` is 4-aligned and valid for reads and writes of 4 >= WORDS u32s.
    let ((), trace) = t.call(|| unsafe { (level.increment_u32)(p, WORDS) });

    let [read, write] = level.sites.increment_u32;
    let expected: Vec<Expected> = start[..WORDS]
        .iter()
        .enumerate()
        .flat_map(|(i, old)| {
            let offset = 4 * i as isize;
            [
                Expected::read(&buf, offset, &old.to_le_bytes(), read),
                Expected::write(&buf, offset, &old.wrapping_add(1).to_le_bytes(), write),
            ]
        })
        .collect();
    assert_accesses!(trace, expected);
    assert_eq!(trace.read(&buf).ranges(), &[0..4 * WORDS]);
    assert_eq!(trace.written(&buf).ranges(), &[0..4 * WORDS]);
    assert!(trace.out_of_bounds().is_empty());
    if read == write {
        // -O2: one instruction per word makes both accesses.
        assert_paths!(trace, [(read, WORDS as u64)]);
    } else {
        assert_paths!(trace, [(read, WORDS as u64), (write, WORDS as u64)]);
    }
    let untraced_bytes: Vec<u8> = untraced.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&buf[..], &untraced_bytes[..]);
    assert_eq!(untraced, [1, 42, 0, 9]);
}

at_both_levels!(increment_u32_reads_old_then_writes_new =>
    increment_u32_o0_reads_old_value_then_writes_new_value_with_two_instructions,
    increment_u32_o2_reads_old_value_then_writes_new_value_with_one_add_instruction);
