//! Under valgrind the test process runs on valgrind's translation of its code, so a
//! trace would show valgrind's instructions (issue 11, item 4). Tracing is refused
//! with a message that says so; untraced tests still run and pass. The test binary
//! runs itself under `valgrind --tool=none --trace-children=yes` (each test runs in a
//! child of the runner, which valgrind must follow); without valgrind the test prints
//! `skipped` and passes.

use std::process::Command;
use std::time::Duration;

use traced_ffi::{Tracer, traced_ffi};

use crate::child::run;
use crate::oracle::valgrind;

/// Set in the environment of the child run under valgrind.
const CHILD_ENV: &str = "TRACED_FFI_VALGRIND_CHILD";
/// Selects both child tests.
const CHILD_FILTER: &str = "under_valgrind::child_";
/// valgrind starts the test binary in about a second here; generous.
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(120);
/// What every refusal says.
const REFUSAL: &str = "this process runs under valgrind (";

#[traced_ffi(ignore)]
fn child_traced_call(t: &mut Tracer) {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mut buf = t.buffer("buf", 4);
    let ((), _trace) = t.call(|| buf[0] = 1);
}

#[traced_ffi(ignore)]
fn child_untraced_work(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 4);
    buf[3] = 9;
    assert_eq!(&buf[..], &[0, 0, 0, 9]);
}

#[traced_ffi]
fn under_valgrind_tracing_is_refused_with_a_message_and_untraced_tests_still_pass(_t: &mut Tracer) {
    let Some(valgrind) = valgrind() else {
        println!("skipped: valgrind not installed (apt-get install valgrind)");
        return;
    };
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut command = Command::new(valgrind);
    command
        // Each test runs in a child process of the runner: valgrind must
        // follow them, or they run natively (and are traced correctly).
        .args(["--tool=none", "-q", "--trace-children=yes"])
        .arg(exe)
        .args([CHILD_FILTER, "--include-ignored", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    let child = run(command, VALGRIND_TIMEOUT);
    let dump = child.dump();
    assert_eq!(
        child.status.code(),
        Some(101),
        "one child test fails\n{dump}"
    );
    let everything = format!("{}{}", child.stdout, child.stderr);
    assert!(
        everything.contains(&format!(
            "traced-ffi: tests run untraced; traced calls will fail: {REFUSAL}"
        )) && everything.contains(
            "vgpreload_core-amd64-linux.so is mapped into it): valgrind runs a translation of \
             the code"
        ),
        "the refusal is printed at the start of the test process\n{dump}"
    );
    let failure = format!(
        "test `{CHILD_FILTER}traced_call`, traced call at {}:",
        file!()
    );
    assert!(
        child.stdout.contains(&failure)
            && child.stdout.contains(&format!(
                "failed to trace the call: tracing is unavailable: {REFUSAL}"
            )),
        "the traced call fails with the refusal\n{dump}"
    );
    for (test, outcome) in [("untraced_work", "ok"), ("traced_call", "FAILED")] {
        let line = child
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("test {CHILD_FILTER}{test} ")));
        assert!(
            line.is_some_and(|l| l.trim_end().ends_with(outcome)),
            "{test}: {line:?}\n{dump}"
        );
    }
    assert!(
        child
            .stdout
            .contains("test result: FAILED. 1 passed; 1 failed;"),
        "{dump}"
    );
}
