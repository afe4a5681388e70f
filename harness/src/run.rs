//! `traced_ffi::main!()`: parse the libtest command line, start the
//! supervisor if a traced test will run, and run the tests with
//! libtest-mimic.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

use libtest_mimic::{Arguments, Failed, Trial};

use crate::Tracer;
use crate::registry::{ShouldPanic, TESTS, TestDesc};

/// The harness's entry point, called by `traced_ffi::main!()`.
pub fn main() -> ! {
    let args = Arguments::from_args();
    let mut tests: Vec<&'static TestDesc> = TESTS.iter().collect();
    tests.sort_by_key(|t| t.full_name());
    let trials: Vec<Trial> = tests.iter().map(|&t| trial(t)).collect();
    let will_run = !args.list
        && trials.iter().any(|trial| {
            !args.is_filtered_out(trial)
                && !args.is_ignored(trial)
                && (!args.ignored || trial.has_ignored_flag())
        });
    if will_run {
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
    } else {
        traced_ffi_runtime::run_untraced("no traced test was selected to run");
    }
    libtest_mimic::run(&args, trials).exit()
}

fn trial(desc: &'static TestDesc) -> Trial {
    Trial::test(desc.full_name(), move || run_test(desc)).with_ignored_flag(desc.ignore)
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

fn run_test(desc: &'static TestDesc) -> Result<(), Failed> {
    let name = desc.full_name();
    let mut tracer = Tracer::new(name.clone());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (desc.run)(&mut tracer)));
    let at = format!("{}:{}", desc.file, desc.line);
    let result = judge(&name, &at, outcome, desc.should_panic);
    match (result, tracer.trace_files()) {
        (Err(failed), files) if !files.is_empty() => {
            let list: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Err(format!("{}\ntrace files: {}", message_of(&failed), list.join(", ")).into())
        }
        (result, _) => result,
    }
}

/// The message a `Failed` carries.
fn message_of(failed: &Failed) -> String {
    failed.message().unwrap_or("(no message)").to_owned()
}

/// The outcome of a test against what it expects.
fn judge(
    name: &str,
    at: &str,
    outcome: std::thread::Result<Result<(), String>>,
    should_panic: ShouldPanic,
) -> Result<(), Failed> {
    match (outcome, should_panic) {
        (Ok(Ok(())), ShouldPanic::No) => Ok(()),
        (Ok(Err(msg)), ShouldPanic::No) => {
            Err(format!("test `{name}` ({at}) failed: {msg}").into())
        }
        (Err(p), ShouldPanic::No) => {
            Err(format!("test `{name}` ({at}) panicked: {}", panic_message(&*p)).into())
        }
        (Ok(_), ShouldPanic::Yes | ShouldPanic::WithMessage(_)) => {
            Err(format!("test `{name}` ({at}) did not panic as expected").into())
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
                )
                .into())
            }
        }
    }
}
