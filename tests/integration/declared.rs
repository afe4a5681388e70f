//! Contracts declared before a call (`t.expect_during(&buf)...`): the
//! supervisor checks each access as it records it, so the accesses that
//! break one carry their native caller chain, even in bounds (a contract
//! stated after the call, on the trace, can give callers only to
//! out-of-bounds accesses: the stack is gone by then). `Tracer::call` then
//! fails with the explanation; `try_call` returns the trace for a look.
//!
//! The fixtures are the `-O0` ones: they keep a frame pointer, so the first
//! caller of each offending access is this file's closure.

use traced_ffi::{Access, AccessKind, Trace, Tracer, describe_ip, traced_ffi};

use crate::contracts::{panic_message_of, redact_offsets};
use crate::levels::O0;

/// The function each access's first caller returns into, or "" for none.
fn first_callers(trace: &Trace) -> Vec<String> {
    trace
        .accesses()
        .iter()
        .map(|a| a.callers.first().map_or(String::new(), |&r| describe_ip(r)))
        .collect()
}

/// `(kind, offset, len, bytes)` of each access.
fn rows(trace: &Trace) -> Vec<(AccessKind, isize, usize, Vec<u8>)> {
    trace
        .accesses()
        .iter()
        .map(|a: &Access| (a.kind, a.offset, a.len, a.bytes.clone()))
        .collect()
}

fn writes(range: std::ops::Range<isize>, v: u8) -> Vec<(AccessKind, isize, usize, Vec<u8>)> {
    range.map(|i| (AccessKind::Write, i, 1, vec![v])).collect()
}

#[traced_ffi]
fn contracts_declared_before_a_call_that_hold_let_it_return_and_give_no_access_callers(
    t: &mut Tracer,
) {
    let mut dst = t.buffer("dst", 64);
    let src = t.buffer_from("src", &[1, 2, 3, 4, 5, 6, 7, 8]);
    t.expect_during(&dst).writes_only(0..8).reads_nothing();
    t.expect_during(&src).writes_nothing().reads_only(0..8);
    // SAFETY: dst holds 64 bytes and src 8.
    let ((), trace) = t.call(|| unsafe { (O0.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), 8) });
    let mut expected = Vec::new();
    for i in 0..8 {
        expected.push((AccessKind::Read, i, 1, vec![i as u8 + 1]));
        expected.push((AccessKind::Write, i, 1, vec![i as u8 + 1]));
    }
    assert_eq!(rows(&trace), expected, "\n{trace}");
    assert!(
        trace.accesses().iter().all(|a| a.callers.is_empty()),
        "no access broke a contract, so none has callers\n{trace}"
    );
    assert_eq!(&dst[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
}

#[traced_ffi]
fn writes_past_a_declared_writes_only_fail_the_call_and_each_names_its_native_caller(
    t: &mut Tracer,
) {
    let mut out = t.buffer("out", 64);
    t.expect_during(&out).writes_only(0..8);
    let msg = panic_message_of(|| {
        // SAFETY: `out` holds 64 bytes; the fixture writes 12.
        let _ = t.call(|| unsafe { (O0.fill_bytes)(out.as_mut_ptr(), 12, 0x5a) });
    });
    assert!(
        msg.starts_with(
            "contract failed: `out` writes only [0x0..0x8] (declared before the call with \
             `Tracer::expect_during`)\n"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("  outside    [0x8..0xc] (4 byte(s))\n"),
        "{msg}"
    );
    for i in 8..12 {
        assert!(
            msg.contains(&format!(
                "    write       out[{i:#x}..{:#x}] 1 byte(s) [5a] at fill_bytes_o0+",
                i + 1
            )),
            "offending write of byte {i} listed\n{msg}"
        );
    }
    let called_from = msg
        .lines()
        .filter(|l| {
            l.trim_start().starts_with(
                "called from integration::declared::writes_past_a_declared_writes_only_fail",
            )
        })
        .count();
    assert_eq!(
        called_from, 4,
        "each offending write names this test's closure\n{msg}"
    );
    assert!(
        !msg.contains("out[0x7..0x8]"),
        "a write inside 0..8 is not offending\n{msg}"
    );
    // Line numbers in this file change as it is edited.
    let line = redact_lines(&redact_offsets(&msg));
    insta::assert_snapshot!("declared_writes_only", line);
}

/// Replaces each `declared.rs:<line>` with `declared.rs:LINE`.
fn redact_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("declared.rs:") {
        out.push_str(&rest[..i]);
        out.push_str("declared.rs:LINE");
        rest = rest[i + "declared.rs:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[traced_ffi]
fn reads_before_writing_declared_give_each_first_read_its_caller_and_try_call_returns_the_trace(
    t: &mut Tracer,
) {
    let input = t.buffer_from("in", &[9, 9, 9, 9]);
    t.expect_during(&input).reads_only_after_writing();
    // SAFETY: `input` holds 4 bytes.
    let (sum, trace) = t
        .try_call(|| unsafe { (O0.sum_bytes)(input.as_ptr(), 4) })
        .expect("the call is traced");
    assert_eq!(sum, 36);
    assert_eq!(
        rows(&trace),
        (0..4)
            .map(|i| (AccessKind::Read, i, 1, vec![9]))
            .collect::<Vec<_>>(),
        "\n{trace}"
    );
    for (i, caller) in first_callers(&trace).iter().enumerate() {
        assert!(
            caller.starts_with("integration::declared::reads_before_writing_declared"),
            "read {i}: its first caller is this test's closure, got {caller:?}\n{trace}"
        );
    }
    let msg = panic_message_of(|| trace.expect_declared(t.declarations()));
    assert!(
        msg.starts_with(
            "contract failed: `in` reads only bytes it wrote first (declared before the call"
        ),
        "{msg}"
    );
    assert_eq!(
        msg.matches("called from integration::declared::").count(),
        4,
        "{msg}"
    );
}

/// Fills `n` bytes of a fresh 4 KiB buffer with `t`, declaring that only the
/// first 1 KiB may be written; returns the trace (from `try_call`).
fn fill_past_declared_bytes(t: &mut Tracer, n: usize) -> Trace {
    let mut out = t.buffer("out", 4096);
    t.expect_during(&out).writes_only(0..1024);
    // SAFETY: `out` holds 4096 bytes.
    let ((), trace) = t
        .try_call(|| unsafe { (O0.fill_bytes)(out.as_mut_ptr(), n, 7) })
        .expect("the call is traced");
    trace
}

#[traced_ffi]
fn writes_breaking_a_declared_contract_inside_translated_code_get_the_same_callers_as_without_the_cache(
    t: &mut Tracer,
) {
    let cached = fill_past_declared_bytes(t, 4096);
    if crate::cache::cache_on() {
        assert!(
            cached.stats().cache_entries >= 1,
            "the loop ran translated\n{cached}"
        );
    }
    t.use_code_cache(false);
    let stepped = fill_past_declared_bytes(t, 4096);
    assert_eq!(stepped.stats().cache_entries, 0);
    assert_eq!(rows(&cached), writes(0..4096, 7));
    assert_eq!(rows(&stepped), rows(&cached));
    let callers = |trace: &Trace| -> Vec<Vec<u64>> {
        trace.accesses().iter().map(|a| a.callers.clone()).collect()
    };
    assert_eq!(
        callers(&cached),
        callers(&stepped),
        "the same callers either way"
    );
    let first = first_callers(&cached);
    assert!(
        first[..1024].iter().all(String::is_empty),
        "writes inside 0..1024 have no callers"
    );
    assert!(
        first[1024..]
            .iter()
            .all(|c| c.starts_with("integration::declared::fill_past_declared_bytes")),
        "every write past 1 KiB names the closure that made the call: {:?}",
        &first[1024..1030]
    );
}

#[traced_ffi]
fn a_bounded_trace_keeps_every_access_that_breaks_a_declared_contract(t: &mut Tracer) {
    t.keep_accesses(Some(16));
    let trace = fill_past_declared_bytes(t, 2048);
    // The first 16 are kept as the bound says; of the rest, the 1024
    // writes past 1 KiB break the contract and are kept too.
    let mut expected = writes(0..16, 7);
    expected.extend(writes(1024..2048, 7));
    assert_eq!(rows(&trace), expected);
    assert_eq!(trace.dropped_accesses(), 1024 - 16);
    assert!(trace.accesses()[16..].iter().all(|a| !a.callers.is_empty()));
    let msg = panic_message_of(|| trace.expect_declared(t.declarations()));
    assert!(
        msg.contains("  outside    [0x400..0x800] (1024 byte(s))\n"),
        "{msg}"
    );
    assert!(
        msg.contains("    ... and 992 more offending access(es), not listed"),
        "32 offending accesses are listed, then a count\n{msg}"
    );
}

#[traced_ffi]
fn writes_only_and_reads_only_stated_after_the_call_check_the_same_bytes_without_in_bounds_callers(
    t: &mut Tracer,
) {
    let mut out = t.buffer("out", 64);
    let input = t.buffer_from("in", &[1; 8]);
    // SAFETY: `out` holds 64 bytes, `input` 8.
    let ((), trace) = t.call(|| unsafe { (O0.fill_bytes)(out.as_mut_ptr(), 12, 1) });
    let _ = trace.expect(&out).writes_only(0..12).writes_only(0..64);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).writes_only(0..8);
    });
    assert!(
        msg.starts_with("contract failed: `out` writes only [0x0..0x8]\n"),
        "{msg}"
    );
    assert!(
        msg.contains("  outside    [0x8..0xc] (4 byte(s))\n"),
        "{msg}"
    );
    assert!(
        !msg.contains("called from"),
        "in bounds: no callers after the call\n{msg}"
    );
    // SAFETY: as above.
    let (_, trace) = t.call(|| unsafe { (O0.sum_bytes)(input.as_ptr(), 8) });
    let _ = trace.expect(&input).reads_only(0..8);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&input).reads_only(2..8);
    });
    assert!(
        msg.contains("  outside    [0x0..0x2] (2 byte(s))\n"),
        "{msg}"
    );
}
