//! Memory contracts on traces (`trace.expect(&buf).writes_exactly(0..n)` and the
//! rest): they hold on correct fixtures, and on the deliberately wrong ones they fail
//! with a message that explains itself (contract, byte sets, byte map, offending
//! accesses), snapshot-tested with `insta` after the instruction offsets are
//! redacted. `trace.snapshot()` itself is snapshot-tested the same way.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use traced_ffi::{Trace, Tracer, traced_ffi};

use crate::levels::O2;

thread_local! {
    /// Set while a test deliberately breaks a contract: the panic is expected and
    /// its message is checked, so the hook does not print it.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// The panic message of `f`, which must panic; other threads' panics print as usual.
pub(crate) fn panic_message_of(f: impl FnOnce()) -> String {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    let payload = match outcome {
        Ok(()) => panic!("the contract held, but it must fail here"),
        Err(payload) => payload,
    };
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        panic!("a panic payload that is not a string")
    }
}

/// Replaces every `+0x…` instruction offset with `+OFF`: they depend on the compiler.
pub(crate) fn redact_offsets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("+0x") {
        out.push_str(&rest[..i]);
        out.push_str("+OFF");
        rest = rest[i + 3..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

fn fill(t: &mut Tracer, n: usize, len: usize, wrong: bool) -> (traced_ffi::Buffer, Trace) {
    let mut out = t.buffer("out", len);
    let f = if wrong {
        O2.fill_one_past_end
    } else {
        O2.fill_bytes
    };
    // SAFETY: `out` holds `len` bytes; the wrong fixture writes out[n], which is the
    // guarded redzone when n == len.
    let ((), trace) = t.call(|| unsafe { f(out.as_mut_ptr(), n, 0xab) });
    (out, trace)
}

#[traced_ffi]
fn correct_fill_keeps_writes_exactly_reads_nothing_initialises_and_stays_in_bounds(t: &mut Tracer) {
    let (out, trace) = fill(t, 16, 64, false);
    let _ = trace
        .expect(&out)
        .writes_exactly(0..16)
        .reads_nothing()
        .initialises(0..16)
        .stays_in_bounds();
    trace.expect_no_out_of_bounds();
}

#[traced_ffi]
fn correct_copy_reads_each_source_byte_once_and_never_writes_it(t: &mut Tracer) {
    let src = t.buffer_from("src", &[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut dst = t.buffer("dst", 8);
    // SAFETY: both buffers hold 8 bytes.
    let ((), trace) = t.call(|| unsafe { (O2.copy_bytes)(dst.as_mut_ptr(), src.as_ptr(), 8) });
    let _ = trace
        .expect(&src)
        .reads_exactly(0..8)
        .writes_nothing()
        .reads_each_byte_at_most(1);
    let _ = trace.expect(&dst).writes_exactly(0..8).reads_nothing();
}

#[traced_ffi]
fn writes_exactly_fails_on_one_byte_past_the_end_with_byte_map_and_the_offending_write(
    t: &mut Tracer,
) {
    let (out, trace) = fill(t, 16, 16, true);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).writes_exactly(0..16);
    });
    insta::assert_snapshot!("writes_exactly_past_the_end", redact_offsets(&msg));
}

#[traced_ffi]
fn no_out_of_bounds_fails_on_a_read_before_the_start(t: &mut Tracer) {
    let input = t.buffer_from("in", &[1, 2, 3]);
    // SAFETY: in[-1] is the buffer's redzone; in[0..3] is readable.
    let (sum, trace) = t.call(|| unsafe { (O2.sum_from_minus_one)(input.as_ptr(), 3) });
    assert_eq!(sum, 6);
    let msg = panic_message_of(|| trace.expect_no_out_of_bounds());
    insta::assert_snapshot!("no_out_of_bounds_read_before_start", redact_offsets(&msg));
}

#[traced_ffi]
fn initialises_fails_on_the_last_byte_never_written_and_names_it(t: &mut Tracer) {
    let mut out = t.buffer("out", 130);
    // SAFETY: `out` holds 130 bytes.
    let ((), trace) = t.call(|| unsafe { (O2.fill_all_but_last)(out.as_mut_ptr(), 130, 7) });
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).initialises(0..130);
    });
    insta::assert_snapshot!("initialises_missing_last_byte", redact_offsets(&msg));
}

#[traced_ffi]
fn reads_only_after_writing_and_writes_nothing_fail_with_the_first_offending_accesses(
    t: &mut Tracer,
) {
    let input = t.buffer_from("in", &[9, 9, 9, 9]);
    // SAFETY: `input` holds 4 bytes.
    let (sum, trace) = t.call(|| unsafe { (O2.sum_bytes)(input.as_ptr(), 4) });
    assert_eq!(sum, 36);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&input).reads_only_after_writing();
    });
    insta::assert_snapshot!("reads_only_after_writing", redact_offsets(&msg));
    let again = panic_message_of(|| {
        let _ = trace.expect(&input).writes_nothing().reads_nothing();
    });
    insta::assert_snapshot!("reads_nothing", redact_offsets(&again));
}

#[traced_ffi]
fn snapshot_of_a_trace_has_no_addresses_offsets_or_stats(t: &mut Tracer) {
    let (_out, trace) = fill(t, 4, 4, true);
    insta::assert_snapshot!("fill_one_past_end_trace", trace.snapshot());
}

/// The 1-based line of `c/sources.c` holding `needle`.
fn sources_line(needle: &str) -> usize {
    let source = include_str!("../../fixtures/c/sources.c");
    source
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("c/sources.c has no line with {needle:?}"))
        + 1
}

#[traced_ffi]
fn inlined_helper_stores_name_the_helper_line_and_each_call_site(t: &mut Tracer) {
    let mut out = t.buffer("out", 4);
    // SAFETY: `out` holds 4 bytes.
    let ((), trace) =
        t.call(|| unsafe { traced_ffi_fixtures::sources::put_le32(out.as_mut_ptr(), 0x4433_2211) });
    let _ = trace.expect(&out).writes_exactly(0..4).reads_nothing();
    let store = sources_line("*p = v;");
    let sites: Vec<String> = trace
        .accesses()
        .iter()
        .map(|a| traced_ffi::source_location(a.ip).unwrap_or_default())
        .collect();
    let expected: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "put_byte (c/sources.c:{store}) inlined into put_le32 (c/sources.c:{})",
                sources_line(&format!("call site of byte {i}"))
            )
        })
        .collect();
    assert_eq!(sites, expected, "\n{trace}");
    let table = trace.to_string();
    assert!(
        table.contains(&format!("  @ {}", expected[0])),
        "the table shows each row's source location\n{table}"
    );
}

#[traced_ffi]
fn out_of_bounds_write_lists_its_native_caller_where_frame_pointers_allow(t: &mut Tracer) {
    let mut out = t.buffer("out", 4);
    // SAFETY: `out` holds 4 bytes; the fixture also writes out[4], the guarded redzone.
    let ((), trace) =
        t.call(|| unsafe { (crate::levels::O0.fill_one_past_end)(out.as_mut_ptr(), 4, 1) });
    let oob = trace.out_of_bounds();
    assert_eq!(oob.len(), 1, "\n{trace}");
    // fill_one_past_end_o0 keeps a frame pointer: its caller, this test's closure,
    // is recovered.
    let first = oob[0]
        .callers
        .first()
        .map(|&ret| traced_ffi::describe_ip(ret))
        .unwrap_or_default();
    assert!(
        first.contains("out_of_bounds_write_lists_its_native_caller_where_frame_pointers_allow"),
        "the first caller is this test's closure, got {first:?}\n{trace}"
    );
    assert!(
        trace
            .accesses()
            .iter()
            .filter(|a| !trace.is_out_of_bounds(a))
            .all(|a| a.callers.is_empty()),
        "only out-of-bounds accesses carry callers\n{trace}"
    );
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).stays_in_bounds();
    });
    assert!(
        msg.contains("called from integration::contracts::out_of_bounds_write_lists"),
        "{msg}"
    );
}

#[traced_ffi]
fn reads_exactly_fails_on_a_read_before_the_start(t: &mut Tracer) {
    let input = t.buffer_from("in", &[1, 2, 3]);
    // SAFETY: in[-1] is the buffer's redzone; in[0..3] is readable.
    let (_, trace) = t.call(|| unsafe { (O2.sum_from_minus_one)(input.as_ptr(), 3) });
    let msg = panic_message_of(|| {
        let _ = trace.expect(&input).reads_exactly(0..3);
    });
    insta::assert_snapshot!("reads_exactly_read_before_start", redact_offsets(&msg));
}

#[traced_ffi]
fn reads_each_byte_at_most_once_fails_when_the_input_is_read_twice(t: &mut Tracer) {
    let input = t.buffer_from("in", &[1, 2]);
    // SAFETY: `input` holds 2 bytes; both calls only read them.
    let (_, trace) =
        t.call(|| unsafe { (O2.sum_bytes)(input.as_ptr(), 2) + (O2.sum_bytes)(input.as_ptr(), 2) });
    let _ = trace
        .expect(&input)
        .reads_exactly(0..2)
        .reads_each_byte_at_most(2);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&input).reads_each_byte_at_most(1);
    });
    insta::assert_snapshot!("reads_each_byte_at_most_once", redact_offsets(&msg));
}

#[traced_ffi]
fn writes_nothing_fails_on_an_input_the_code_writes(t: &mut Tracer) {
    let (out, trace) = fill(t, 2, 2, false);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).writes_nothing();
    });
    insta::assert_snapshot!("writes_nothing_written", redact_offsets(&msg));
}

#[traced_ffi]
fn stays_in_bounds_fails_on_a_write_past_the_end(t: &mut Tracer) {
    let (out, trace) = fill(t, 3, 3, true);
    let msg = panic_message_of(|| {
        let _ = trace.expect(&out).stays_in_bounds();
    });
    insta::assert_snapshot!("stays_in_bounds_past_the_end", redact_offsets(&msg));
}

#[traced_ffi]
fn code_without_debug_info_has_no_source_location_and_its_rows_show_symbol_only(t: &mut Tracer) {
    let mut out = t.buffer("out", 8);
    let memset = std::hint::black_box(libc::memset);
    // SAFETY: `out` holds 8 bytes.
    let (_, trace) = t.call(|| unsafe { memset(out.as_mut_ptr().cast(), 7, 8) });
    let _ = trace.expect(&out).writes_exactly(0..8);
    let first = &trace.accesses()[0];
    // Debian's libc has a symbol table but no DWARF (unless libc6-dbg is installed
    // and found through a debug link, which this machine does not have).
    assert_eq!(traced_ffi::source_location(first.ip), None, "\n{trace}");
    assert!(
        !trace.to_string().contains("  @ "),
        "no source column without debug info\n{trace}"
    );
    assert!(
        !first.insn.is_empty(),
        "the instruction is still shown\n{trace}"
    );
}
