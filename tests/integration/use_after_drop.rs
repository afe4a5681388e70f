//! Use after drop: a dropped `Buffer`'s span stays `PROT_NONE` and is not reused for a
//! while (a quarantine, as AddressSanitizer's), so native code that kept a pointer to
//! it faults; the crash report names the buffer, where it was made and the offset. The
//! crash fails that one test (a process per test), so it runs in a child run.

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::crashes;

use crate::child::run_self;

/// Set to `1` in the environment of the child run: only then does [`kept_child`]
/// write through its stale pointer.
const CHILD_ENV: &str = "TRACED_FFI_USE_AFTER_DROP_CHILD";
/// The full name of the child test.
const CHILD_TEST: &str = "use_after_drop::kept_child";

#[traced_ffi(ignore)]
fn kept_child(t: &mut Tracer) {
    if std::env::var(CHILD_ENV).as_deref() != Ok("1") {
        return;
    }
    let mut kept = t.buffer("kept", 16);
    // SAFETY: keep_pointer only stores the pointer.
    let ((), _) = t.call(|| unsafe { crashes::keep_pointer(kept.as_mut_ptr()) });
    drop(kept);
    let _other = t.buffer("other", 16);
    // SAFETY: deliberately not safe: writes through the pointer to the dropped buffer.
    let ((), _) = t.call(|| unsafe { crashes::write_through_kept_pointer(0x77) });
    unreachable!("the write through the kept pointer must have faulted");
}

/// The `file:line` where [`kept_child`] makes its buffer.
fn made_at() -> String {
    let source = include_str!("use_after_drop.rs");
    let line = source
        .lines()
        .position(|l| l.contains(concat!("t.buffer(", "\"kept\"")))
        .expect("kept_child makes `kept`")
        + 1;
    format!("{}:{line}", file!())
}

#[traced_ffi]
fn use_after_drop_names_the_dropped_buffer_where_it_was_made_and_the_offset(_t: &mut Tracer) {
    let run = run_self(
        &["--exact", CHILD_TEST, "--include-ignored"],
        &[(CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(101), "the child test fails\n{dump}");
    let expected = format!(
        "the address is +0x1 in buffer `kept` (made at {}), 16 bytes, which the test \
         dropped before this call: native code kept a pointer to it (use after drop)",
        made_at()
    );
    assert!(run.stdout.contains(&expected), "{expected}\n{dump}");
    assert!(
        run.stdout.contains("SEGV_ACCERR") && run.stdout.contains("write_through_kept_pointer+0x"),
        "the crash report names the cause and the instruction\n{dump}"
    );
}
