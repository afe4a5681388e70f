//! `Tracer::keep_accesses(Some(n))`: a call keeps its first `n` accesses in full and
//! every out-of-bounds one after them; the byte sets and the contracts on them stay
//! exact (from per-region summaries of every access), and a contract that needs
//! every access in order fails saying the trace was bounded.

use traced_ffi::{Region, Trace, Tracer, traced_ffi};

use crate::contracts::panic_message_of;
use crate::levels::O2;

/// Bytes copied: 2 accesses each (`copy_bytes` reads `src[i]`, then writes `dst[i]`).
const N: usize = 3000;
/// Accesses kept.
const KEEP: u64 = 100;

/// The outcome of each contract on `src` and `dst` after a copy of `N` bytes: `true`
/// where it holds.
fn contract_outcomes(
    trace: &Trace,
    src: &traced_ffi::Buffer,
    dst: &traced_ffi::Buffer,
) -> Vec<bool> {
    let checks: [&dyn Fn(); 14] = [
        &|| _ = trace.expect(src).reads_exactly(0..N),
        &|| _ = trace.expect(src).reads_exactly(0..N - 1),
        &|| _ = trace.expect(src).writes_nothing(),
        &|| _ = trace.expect(src).reads_nothing(),
        &|| _ = trace.expect(src).reads_each_byte_at_most(1),
        &|| _ = trace.expect(src).reads_each_byte_at_most(0),
        &|| _ = trace.expect(src).stays_in_bounds(),
        &|| _ = trace.expect(dst).writes_exactly(0..N),
        &|| _ = trace.expect(dst).writes_exactly(1..N),
        &|| _ = trace.expect(dst).writes_nothing(),
        &|| _ = trace.expect(dst).reads_nothing(),
        &|| _ = trace.expect(dst).initialises(0..N),
        &|| _ = trace.expect(dst).initialises(0..N + 1),
        &|| trace.expect_no_out_of_bounds(),
    ];
    checks.iter().map(|f| holds(*f)).collect()
}

/// Whether the contract `f` holds (a broken one panics; its message is not printed).
fn holds(f: &dyn Fn()) -> bool {
    let held = std::cell::Cell::new(false);
    let _ = panic_message_of(|| {
        f();
        held.set(true);
        panic!("held");
    });
    held.get()
}

#[traced_ffi]
fn bounded_copy_keeps_the_first_n_accesses_counts_the_rest_and_keeps_byte_sets_exact(
    t: &mut Tracer,
) {
    let data: Vec<u8> = (0..N).map(|i| (i * 7) as u8).collect();
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", N + 8);
    // SAFETY: `src` holds N bytes and `dst` N + 8.
    let ((), full) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), N) });
    t.keep_accesses(Some(KEEP));
    // SAFETY: as above.
    let ((), bounded) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), N) });

    assert_eq!(full.access_count(), 2 * N);
    assert_eq!(full.dropped_accesses(), 0);
    assert_eq!(full.access_bound(), None);
    assert_eq!(bounded.access_bound(), Some(KEEP));
    assert_eq!(bounded.access_count(), KEEP as usize);
    assert_eq!(bounded.dropped_accesses(), 2 * N as u64 - KEEP);
    assert_eq!(bounded.total_accesses(), 2 * N as u64);
    assert_eq!(bounded.accesses(), &full.accesses()[..KEEP as usize]);

    for (region, name) in [(&src, "src"), (&dst, "dst")] {
        assert_eq!(bounded.read(region), full.read(region), "read({name})");
        assert_eq!(
            bounded.written(region),
            full.written(region),
            "written({name})"
        );
        assert_eq!(
            bounded.maybe_written(region),
            full.maybe_written(region),
            "maybe_written({name})"
        );
    }
    assert_eq!(bounded.read(&src).ranges(), &[0..N]);
    assert_eq!(bounded.written(&dst).ranges(), &[0..N]);
    assert!(bounded.out_of_bounds().is_empty());

    let _ = bounded
        .expect(&src)
        .reads_exactly(0..N)
        .writes_nothing()
        .reads_each_byte_at_most(1)
        .stays_in_bounds();
    let _ = bounded
        .expect(&dst)
        .writes_exactly(0..N)
        .reads_nothing()
        .initialises(0..N)
        .stays_in_bounds();
    bounded.expect_no_out_of_bounds();

    let outcomes = contract_outcomes(&full, &src, &dst);
    assert_eq!(contract_outcomes(&bounded, &src, &dst), outcomes);
    assert_eq!(
        outcomes,
        [
            true, false, true, false, true, false, true, true, false, false, true, true, false,
            true
        ]
    );

    let header = bounded.to_string();
    let second = header.lines().nth(1).unwrap_or("");
    assert!(
        second.starts_with(&format!(
            "bounded: {} more access(es) not kept",
            2 * N as u64 - KEEP
        )),
        "{header:.400}"
    );
}

#[traced_ffi]
fn bounded_contracts_see_accesses_that_were_not_kept(t: &mut Tracer) {
    let data = vec![5u8; 64];
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", 64);
    t.keep_accesses(Some(0));
    // SAFETY: both buffers hold 64 bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), 64) });
    assert_eq!(trace.access_count(), 0);
    assert_eq!(trace.dropped_accesses(), 128);

    let msg = panic_message_of(|| _ = trace.expect(&dst).writes_nothing());
    assert!(
        msg.contains("contract failed: `dst` writes nothing"),
        "{msg}"
    );
    assert!(msg.contains("written    [0x0..0x40] (64 byte(s))"), "{msg}");
    assert!(msg.contains("0x0000  WWWW"), "{msg}");
    assert!(msg.contains("bounded trace"), "{msg}");
    let msg = panic_message_of(|| _ = trace.expect(&src).reads_nothing());
    assert!(msg.contains("read       [0x0..0x40] (64 byte(s))"), "{msg}");

    // SAFETY: `src` holds 64 bytes; both calls only read them.
    let (_, twice) =
        t.call(|| unsafe { (O2.sum_bytes)(src.as_ptr(), 64) + (O2.sum_bytes)(src.as_ptr(), 64) });
    assert_eq!(twice.dropped_accesses(), 128);
    let _ = twice.expect(&src).reads_each_byte_at_most(2);
    let msg = panic_message_of(|| _ = twice.expect(&src).reads_each_byte_at_most(1));
    assert!(msg.contains("read > n   [0x0..0x40] (64 byte(s))"), "{msg}");
    assert!(msg.contains("2 reads of one byte"), "{msg}");
}

#[traced_ffi]
fn bounded_trace_refuses_reads_only_after_writing_and_says_how_to_lift_the_bound(t: &mut Tracer) {
    let src = t.buffer_from("src", &[1; 32]);
    let mut dst = t.buffer("dst", 32);
    t.keep_accesses(Some(4));
    // SAFETY: both buffers hold 32 bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), 32) });
    let msg = panic_message_of(|| _ = trace.expect(&dst).reads_only_after_writing());
    assert_eq!(
        msg,
        "contract cannot be checked: `dst` reads only bytes it wrote first needs every access \
         in order, and this trace is bounded: it kept the first 4 of 64 accesses (60 dropped). \
         Trace this call with `Tracer::keep_accesses(None)` (the default) to check it."
    );

    // Nothing dropped: the trace is whole and the contract is checked.
    t.keep_accesses(Some(64));
    // SAFETY: as above.
    let ((), whole) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), 32) });
    assert_eq!(whole.dropped_accesses(), 0);
    let _ = whole.expect(&dst).reads_only_after_writing();
}

#[traced_ffi]
fn bounded_trace_keeps_an_out_of_bounds_write_after_the_bound(t: &mut Tracer) {
    const LEN: usize = 64;
    let mut out = t.buffer("out", LEN);
    t.keep_accesses(Some(10));
    // SAFETY: out[LEN] is the buffer's guard, opened by the tracer for the one store.
    let ((), trace) = t.call(|| unsafe { (O2.fill_one_past_end)(out.as_mut_ptr(), LEN, 0x5c) });
    assert_eq!(trace.access_count(), 11);
    assert_eq!(trace.dropped_accesses(), LEN as u64 + 1 - 11);
    let last = trace.accesses().last().expect("the out-of-bounds write");
    assert_eq!(
        (last.offset, last.len, &last.bytes[..]),
        (LEN as isize, 1, &[0x5c][..])
    );
    assert_eq!(trace.out_of_bounds(), [last]);
    assert_eq!(trace.written(&out).ranges(), &[0..LEN]);
    let _ = trace.expect(&out).initialises(0..LEN).reads_nothing();
    let msg = panic_message_of(|| _ = trace.expect(&out).stays_in_bounds());
    assert!(msg.contains("out[0x40..0x41] 1 byte(s) [5c]"), "{msg}");
    let msg = panic_message_of(|| trace.expect_no_out_of_bounds());
    assert!(
        msg.contains("1 byte(s) past the end: out[0x40..0x41]"),
        "{msg}"
    );
    let msg = panic_message_of(|| _ = trace.expect(&out).writes_exactly(0..LEN));
    assert!(msg.contains("written    [0x0..0x40] (64 byte(s))"), "{msg}");
}

#[traced_ffi]
fn bounded_per_instruction_path_fills_the_kept_writes_values_and_skips_the_dropped_ones(
    t: &mut Tracer,
) {
    const LEN: usize = 200;
    let src = t.buffer_from("src", &[0x3c; LEN]);
    let mut dst = t.buffer("dst", LEN);
    t.use_code_cache(false);
    t.keep_accesses(Some(7));
    // SAFETY: both buffers hold LEN bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), LEN) });
    assert_eq!(trace.access_count(), 7);
    assert_eq!(trace.dropped_accesses(), 2 * LEN as u64 - 7);
    for (i, a) in trace.accesses().iter().enumerate() {
        let region = if i % 2 == 0 {
            src.region_id()
        } else {
            dst.region_id()
        };
        assert_eq!(a.region, Some(region), "access {i}");
        assert_eq!((a.offset, a.len), ((i / 2) as isize, 1), "access {i}");
        assert_eq!(
            a.bytes,
            [0x3c],
            "access {i}: a kept write's value is read back"
        );
    }
    assert_eq!(trace.written(&dst).ranges(), &[0..LEN]);
    assert_eq!(trace.read(&src).ranges(), &[0..LEN]);
    assert_eq!(&dst[..], &[0x3c; LEN]);
    let _ = trace
        .expect(&dst)
        .writes_exactly(0..LEN)
        .initialises(0..LEN);
}
