//! Traced tests at once: the eight `lane_*` tests run in parallel (libtest-mimic's
//! default thread count), each in its own process with its own supervisor under the
//! default runner, or as threads of one process under one supervisor with
//! `TRACED_FFI_IN_PROCESS=1` or nextest; and one test traces from eight threads of its
//! own, whose traced calls take turns. Each trace holds exactly its own call's accesses,
//! made by its own thread.

use traced_ffi::{Tracer, traced_ffi};

use crate::check::{Expected, assert_accesses, assert_paths, current_tid};
use crate::levels::{O0, O2};

/// Traced calls each lane makes, to overlap with the other lanes.
const ROUNDS: usize = 6;

/// Lane `lane`'s pattern: `fill_bytes` of `8 + lane` bytes, then `fill_u32` of
/// `1 + lane` words, with lane-specific values, alternating levels; every call checked
/// exactly, and the bytes of all rounds together.
fn fill_lane(t: &mut Tracer, lane: u8) {
    let n = 8 + usize::from(lane);
    let words = 1 + usize::from(lane);
    let mut bytes = t.buffer("bytes", n + 1);
    let mut wordbuf = t.buffer("words", 4 * (words + 1));
    for round in 0..ROUNDS {
        let level = if round % 2 == 0 { &O0 } else { &O2 };
        let v = 0x10 * lane + round as u8;
        // SAFETY: `bytes` is valid for writes of n + 1 >= n bytes.
        let ((), trace) = t.call(|| unsafe { (level.fill_bytes)(bytes.as_mut_ptr(), n, v) });
        let expected: Vec<Expected> = (0..n)
            .map(|i| Expected::write(&bytes, i as isize, &[v], level.sites.fill_bytes))
            .collect();
        assert_accesses!(trace, expected);
        assert_eq!(trace.written(&bytes).ranges(), &[0..n]);
        assert!(trace.accesses_to(&wordbuf).is_empty());
        assert_paths!(trace, [(level.sites.fill_bytes, n as u64)]);
        assert_eq!(&bytes[..n], &vec![v; n][..]);
        assert_eq!(bytes[n], 0);

        let w = u32::from_le_bytes([lane, round as u8, 0xc0, 0xde]);
        let p = wordbuf.as_mut_ptr().cast::<u32>();
        // SAFETY: `p` is 4-aligned and valid for writes of words + 1 >= words u32s.
        let ((), trace) = t.call(|| unsafe { (level.fill_u32)(p, words, w) });
        let expected: Vec<Expected> = (0..words)
            .map(|i| {
                Expected::write(
                    &wordbuf,
                    4 * i as isize,
                    &w.to_le_bytes(),
                    level.sites.fill_u32,
                )
            })
            .collect();
        assert_accesses!(trace, expected);
        assert_eq!(trace.written(&wordbuf).ranges(), &[0..4 * words]);
        assert!(trace.accesses_to(&bytes).is_empty());
        assert_paths!(trace, [(level.sites.fill_u32, words as u64)]);
        let want: Vec<u8> = std::iter::repeat_n(w.to_le_bytes(), words)
            .flatten()
            .chain([0; 4])
            .collect();
        assert_eq!(&wordbuf[..], &want[..]);
    }
}

#[traced_ffi]
fn lane_0_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 0);
}

#[traced_ffi]
fn lane_1_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 1);
}

#[traced_ffi]
fn lane_2_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 2);
}

#[traced_ffi]
fn lane_3_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 3);
}

#[traced_ffi]
fn lane_4_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 4);
}

#[traced_ffi]
fn lane_5_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 5);
}

#[traced_ffi]
fn lane_6_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 6);
}

#[traced_ffi]
fn lane_7_traces_only_its_own_accesses(t: &mut Tracer) {
    fill_lane(t, 7);
}

/// Eight threads of one test, each with its own `Tracer`, buffers and calls: every
/// trace is exact and its accesses carry the thread's own id.
#[traced_ffi]
fn eight_threads_each_with_its_own_tracer_get_exact_traces_with_their_own_tid(t: &mut Tracer) {
    const THREADS: u8 = 8;
    let test = t.test_name().to_owned();
    let tids: Vec<i32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|lane| {
                let test = &test;
                scope.spawn(move || {
                    let mut t = Tracer::new(format!("{test}/thread-{lane}"));
                    fill_lane(&mut t, lane);
                    current_tid()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut distinct = tids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), usize::from(THREADS), "tids {tids:?}");
    assert!(!tids.contains(&current_tid()));
}
