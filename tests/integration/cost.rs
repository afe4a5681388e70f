//! What tracing costs, in ptrace stops: one per fault on the emulated and stub paths,
//! four per fault on the single-step path, plus the two doorbells that start and end
//! the call.
//!
//! `Stats::stops` counts every stop the supervisor handles while the call is active,
//! those of other threads included (a thread another test spawns stops at its
//! creation). So the exact counts are checked in a child run of this binary with one
//! test thread, where nothing else runs: the `isolated_*` tests below, ignored in a
//! normal run, do the checking there.

use traced_ffi::{Trace, Tracer, traced_ffi};

use crate::check::{assert_paths, pattern};
use crate::child::run_self;
use crate::levels::{O0, O2};
use crate::unsupported::traced_ffi_tests_maskmovq;

/// Set to `1` in the environment of the child run: only then do the `isolated_*`
/// tests check (elsewhere other threads' stops would make the counts vary).
const COST_CHILD_ENV: &str = "TRACED_FFI_COST_CHILD";
/// The start and the end of a call: one stop each.
const DOORBELLS: u64 = 2;
/// Stops per fault on the single-step path: injected `mprotect` (open), the step,
/// injected `mprotect` (close), plus the fault itself.
const STEP_PATH_STOPS: u64 = 4;
/// Faults per call below.
const N: usize = 20;

fn in_cost_child(test: &str) -> bool {
    let inside = std::env::var(COST_CHILD_ENV).as_deref() == Ok("1");
    if !inside {
        println!("{test}: checks only in the child run of cost::one_stop_per_fault_*");
    }
    inside
}

fn check_stops(trace: &Trace, faults: u64, stops_per_fault: u64, distinct_instructions: u64) {
    let stats = trace.stats();
    assert_eq!(stats.faults, faults, "{stats:?}\n{trace}");
    assert_eq!(
        stats.stops,
        stops_per_fault * faults + DOORBELLS,
        "{stats:?}\n{trace}"
    );
    assert_eq!(
        stats.decode_cache_hits,
        faults - distinct_instructions,
        "one decode per instruction address, then the per-call cache\n{stats:?}\n{trace}"
    );
    assert!(stats.ptrace_requests >= faults, "{stats:?}\n{trace}");
}

#[traced_ffi(ignore)]
fn isolated_emulated_moves_cost_one_stop_per_fault(t: &mut Tracer) {
    if !in_cost_child(t.test_name()) {
        return;
    }
    // These are the costs of the per-instruction paths.
    t.use_code_cache(false);
    for level in [&O0, &O2] {
        let mut buf = t.buffer("buf", N);
        // SAFETY: `buf` is valid for writes of N bytes.
        let ((), trace) = t.call(|| unsafe { (level.fill_bytes)(buf.as_mut_ptr(), N, 0x5a) });
        assert_paths!(trace, [(level.sites.fill_bytes, N as u64)]);
        check_stops(&trace, N as u64, 1, 1);
        assert_eq!(&buf[..], &[0x5a; N]);
    }
}

#[traced_ffi(ignore)]
fn isolated_stub_path_costs_one_stop_per_fault(t: &mut Tracer) {
    if !in_cost_child(t.test_name()) {
        return;
    }
    // These are the costs of the per-instruction paths.
    t.use_code_cache(false);
    let data = pattern(4 * N, 1);
    let buf = t.buffer_from("words", &data);
    let p = buf.as_ptr().cast::<u32>();
    // SAFETY: as below; outside a call the buffer is ordinary memory.
    let untraced = unsafe { (O2.sum_u32)(p, N) };
    // SAFETY: `p` is 4-aligned (page-aligned end, length 4N) and valid for reads of
    // N u32s.
    let (sum, trace) = t.call(|| unsafe { (O2.sum_u32)(p, N) });
    assert_paths!(trace, [(O2.sites.sum_u32, N as u64)]);
    check_stops(&trace, N as u64, 1, 1);
    assert_eq!(sum, untraced);
}

#[traced_ffi(ignore)]
fn isolated_step_path_costs_four_stops_per_fault(t: &mut Tracer) {
    if !in_cost_child(t.test_name()) {
        return;
    }
    // These are the costs of the per-instruction paths.
    t.use_code_cache(false);
    t.allow_unsupported(true);
    let mut buf = t.buffer("buf", N);
    // SAFETY: `buf` is valid for writes of N bytes.
    let ((), trace) = t.call(|| unsafe { traced_ffi_tests_maskmovq(buf.as_mut_ptr(), N, 7) });
    assert_eq!(trace.stats().step_path, N as u64, "{trace}");
    check_stops(&trace, N as u64, STEP_PATH_STOPS, 1);
    assert_eq!(&buf[..], &[7; N]);
}

#[traced_ffi]
fn one_stop_per_fault_on_the_fast_paths_and_four_on_the_step_path(_t: &mut Tracer) {
    let run = run_self(
        &["--include-ignored", "--test-threads=1", "cost::isolated_"],
        &[(COST_CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert!(run.status.success(), "{dump}");
    assert!(run.stdout.contains("3 passed; 0 failed"), "{dump}");
}
