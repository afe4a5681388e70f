//! A crash in native code during a traced call (a write to an unmapped address): the
//! supervisor names the test, the call and the instruction, prints the registers, and
//! the test's process dies of the signal; the runner reports that test FAILED with the
//! report and the cause, and the run ends with exit code 101 and its summary. It runs
//! this binary as a child so that the assertions see the whole output.

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::o2;

use crate::child::run_self;

/// Set to `1` in the environment of the child run: only then does
/// [`segfault_child`] crash.
const CRASH_CHILD_ENV: &str = "TRACED_FFI_CRASH_CHILD";
/// The full name of the test that crashes.
const CHILD_TEST: &str = "crash::segfault_child";
/// An address no page is mapped at (the first page is never mapped on Linux).
const UNMAPPED: usize = 16;

fn write_to_unmapped_address() {
    // It runs only in the child process that
    // `segfault_in_a_traced_call_fails_the_test_with_its_name_call_instruction_and_registers` starts for this purpose.
    // SAFETY: deliberately not safe: this crashes the (child) process.
    unsafe { o2::crash_write_to_address(UNMAPPED) }
}

/// Crashes inside a traced call, when run as the child of the test below; otherwise
/// (e.g. `--include-ignored` in a normal run) does nothing.
#[traced_ffi(ignore)]
fn segfault_child(t: &mut Tracer) {
    if std::env::var(CRASH_CHILD_ENV).as_deref() != Ok("1") {
        println!("{CHILD_TEST}: does nothing unless {CRASH_CHILD_ENV}=1 (set by its parent test)");
        return;
    }
    let _guarded = t.buffer("unrelated", 16);
    let ((), _trace) = t.call(write_to_unmapped_address);
    unreachable!("the write to address {UNMAPPED:#x} must have killed this process");
}

/// The `file:line` of the traced call in [`segfault_child`], found in this file's
/// own source so that it follows edits.
fn crash_call_site() -> String {
    let source = include_str!("crash.rs");
    let needle = concat!("t.call(", "write_to_unmapped_address)");
    let line = source
        .lines()
        .position(|l| l.contains(needle) && l.trim_start().starts_with("let"))
        .expect("segfault_child makes the traced call")
        + 1;
    format!("{}:{line}", file!())
}

#[traced_ffi]
fn segfault_in_a_traced_call_fails_the_test_with_its_name_call_instruction_and_registers(
    _t: &mut Tracer,
) {
    let run = run_self(
        &[
            "--exact",
            CHILD_TEST,
            "--include-ignored",
            "--test-threads=1",
        ],
        &[(CRASH_CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert_eq!(
        run.status.code(),
        Some(101),
        "the runner must exit with libtest's failure code\n{dump}"
    );
    let call_site = crash_call_site();
    for expected in [
        format!("test `{CHILD_TEST}`"),
        format!("traced call at {call_site}"),
        "got signal SIGSEGV".to_owned(),
        "SEGV_MAPERR".to_owned(),
        format!("at address {UNMAPPED:#x}"),
        "crash_write_to_address_o2+0x".to_owned(),
        "crash_write_to_address_o2+0x0: mov".to_owned(),
        "rip=".to_owned(),
        "rdi=0x10".to_owned(),
        format!("test `{CHILD_TEST}` (tests/integration/crash.rs:"),
        "its process was killed by SIGSEGV before the test finished".to_owned(),
    ] {
        assert!(
            run.stdout.contains(&expected),
            "the failure message lacks {expected:?}\n{dump}"
        );
    }
    assert!(
        run.stdout
            .contains("test result: FAILED. 0 passed; 1 failed; 0 ignored"),
        "the runner must print the summary, counting the crashed test as failed\n{dump}"
    );
}
