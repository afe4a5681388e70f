//! One test, whichever process runs it: start tracing, run the test
//! function with its `Tracer`, and judge the outcome against what the test
//! expects (`should_panic`). Used by the in-process mode (`run.rs`) and by
//! the child process of the process-per-test runner (`isolated.rs`).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use crate::Tracer;
use crate::registry::{ShouldPanic, TestDesc};

/// Starts the supervisor (this process goes on as the traced test process)
/// and says why tracing is unavailable if it is.
pub(crate) fn start_tracing() {
    match traced_ffi_runtime::launch() {
        Ok(traced_ffi_runtime::Launched::Traced) => {}
        Ok(traced_ffi_runtime::Launched::Untraced(reason)) => {
            eprintln!("traced-ffi: tests run untraced; traced calls will fail: {reason}");
        }
        Err(e) => {
            eprintln!("traced-ffi: failed to {e}; traced calls will fail");
            traced_ffi_runtime::run_untraced(&e.to_string());
        }
    }
}

/// Where a failing test's panic message is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicText {
    /// In the failure message (in-process mode, where output is not captured).
    InMessage,
    /// Only in the test's output, where the panic hook printed it (process
    /// per test: the output is part of the failure).
    InOutput,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_owned()
    }
}

pub(crate) fn run_test(desc: &'static TestDesc, panic_text: PanicText) -> Result<(), String> {
    let name = desc.full_name();
    let mut tracer = Tracer::new(name.clone());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (desc.run)(&mut tracer)));
    let at = format!("{}:{}", desc.file, desc.line);
    let result = judge(&name, &at, outcome, desc.should_panic, panic_text);
    match (result, tracer.trace_files()) {
        (Err(message), files) if !files.is_empty() => {
            let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Err(format!("{message}\ntrace files: {}", list.join(", ")))
        }
        (result, _) => result,
    }
}

/// The outcome of a test against what it expects.
fn judge(
    name: &str,
    at: &str,
    outcome: std::thread::Result<Result<(), String>>,
    should_panic: ShouldPanic,
    panic_text: PanicText,
) -> Result<(), String> {
    match (outcome, should_panic) {
        (Ok(Ok(())), ShouldPanic::No) => Ok(()),
        (Ok(Err(msg)), ShouldPanic::No) => Err(format!("test `{name}` ({at}) failed: {msg}")),
        (Err(p), ShouldPanic::No) => Err(match panic_text {
            PanicText::InMessage => {
                format!("test `{name}` ({at}) panicked: {}", panic_message(&*p))
            }
            PanicText::InOutput => format!("test `{name}` ({at}) panicked (see above)"),
        }),
        (Ok(_), ShouldPanic::Yes | ShouldPanic::WithMessage(_)) => {
            Err(format!("test `{name}` ({at}) did not panic as expected"))
        }
        (Err(_), ShouldPanic::Yes) => Ok(()),
        (Err(p), ShouldPanic::WithMessage(expected)) => {
            let msg = panic_message(&*p);
            if msg.contains(expected) {
                Ok(())
            } else {
                Err(format!(
                    "test `{name}` ({at}) panicked, but the message does not contain the expected text\n  \
                     panic message: {msg:?}\n  expected substring: {expected:?}"
                ))
            }
        }
    }
}

/// Runs the test on a thread named after it, as libtest does, so that a
/// panic message says `thread 'area::test_name' panicked`.
pub(crate) fn run_on_named_thread(
    desc: &'static TestDesc,
    panic_text: PanicText,
) -> Result<(), String> {
    let spawned = std::thread::Builder::new()
        .name(desc.full_name())
        .spawn(move || run_test(desc, panic_text));
    match spawned {
        Err(e) => Err(format!("cannot start the test's thread: {e}")),
        Ok(handle) => handle
            .join()
            .unwrap_or_else(|_| Err("the test's thread panicked outside the test".to_owned())),
    }
}
