//! `traced_ffi::main!()`: parse the libtest command line and run the tests
//! with libtest-mimic, each in a process of its own (see `runner.rs` and
//! `isolated.rs`), or all in this process under one supervisor when asked
//! to (`cargo nextest run` already starts one process per test, and
//! [`IN_PROCESS_ENV`]).

use std::sync::Mutex;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::registry::{TESTS, TestDesc};
use crate::runner::{self, Capture};
use crate::test::{PanicText, run_on_named_thread, run_test, start_tracing};
use crate::timeout::{self, Limit};
use crate::tracer::error_chain;

/// Set to `1`, the tests run in this process, under one supervisor, as
/// threads of libtest-mimic (no containment, no timeouts, no capture):
/// for a debugger, say.
pub const IN_PROCESS_ENV: &str = "TRACED_FFI_IN_PROCESS";

/// Set by `cargo nextest run` in the environment of the test binaries it runs.
const NEXTEST_ENV: &str = "NEXTEST";

/// The output of tests that passed, for `--show-output`: (name, output).
static PASSED_OUTPUT: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// How the selected tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each test in a child process of its own (the default).
    ProcessPerTest,
    /// All tests in this process, under one supervisor.
    InProcess,
}

/// In-process under nextest (which runs `--exact NAME` once per test) and
/// when [`IN_PROCESS_ENV`] asks for it; a process per test otherwise.
fn mode(args: &Arguments) -> Mode {
    let asked = std::env::var_os(IN_PROCESS_ENV).is_some_and(|v| v == "1");
    let nextest_single = std::env::var_os(NEXTEST_ENV).is_some() && args.exact;
    if asked || nextest_single {
        Mode::InProcess
    } else {
        Mode::ProcessPerTest
    }
}

/// The harness's entry point, called by `traced_ffi::main!()`.
pub fn main() -> ! {
    // SAFETY: `main!()` calls this first thing in `main`: no other thread exists.
    if let Some(assignment) = unsafe { crate::isolated::take_assignment() } {
        match assignment {
            Ok(assignment) => crate::isolated::run_assigned(assignment),
            Err(e) => {
                eprintln!("traced-ffi: failed to {e}");
                std::process::exit(101);
            }
        }
    }
    let args = Arguments::from_args();
    let mut tests: Vec<&'static TestDesc> = TESTS.iter().collect();
    tests.sort_by_key(|t| t.full_name());
    match mode(&args) {
        Mode::InProcess => run_in_process(&args, &tests),
        Mode::ProcessPerTest => run_process_per_test(&args, &tests),
    }
}

/// All selected tests in this process, under one supervisor.
fn run_in_process(args: &Arguments, tests: &[&'static TestDesc]) -> ! {
    let trials: Vec<Trial> = tests.iter().map(|&t| trial(t)).collect();
    let selected = if args.list {
        0
    } else {
        trials
            .iter()
            .filter(|trial| {
                !args.is_filtered_out(trial)
                    && !args.is_ignored(trial)
                    && (!args.ignored || trial.has_ignored_flag())
            })
            .count()
    };
    if selected > 0 {
        start_tracing();
    } else {
        traced_ffi_runtime::run_untraced("no traced test was selected to run");
    }
    let mut args = args.clone();
    let mut trials = trials;
    if selected == 1 {
        // One test (nextest runs each this way): libtest-mimic's pool would
        // start a worker that finds no work and exits while the test's call
        // runs, and the allocations of its start and exit would be taken for
        // the call's (see the README's limits). So no pool: the test runs on
        // a thread of its own started before any call, as in a runner's child
        // (the process has two threads either way, as glibc sees it).
        args.test_threads = Some(1);
        trials = tests.iter().map(|&t| trial_on_own_thread(t)).collect();
    }
    libtest_mimic::run(&args, trials).exit()
}

/// Each selected test in a child process of its own; this process is not
/// traced.
fn run_process_per_test(args: &Arguments, tests: &[&'static TestDesc]) -> ! {
    let env_timeout = match timeout::from_env() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("traced-ffi: failed to {e}");
            std::process::exit(101);
        }
    };
    let capture = if args.nocapture {
        Capture::Inherited
    } else {
        Capture::Captured
    };
    let show_output = args.show_output;
    let trials: Vec<Trial> = tests
        .iter()
        .map(|&desc| {
            let limit = Limit::choose(desc.timeout, env_timeout);
            Trial::test(desc.full_name(), move || {
                run_one_in_child(desc, limit, capture, show_output)
            })
            .with_ignored_flag(desc.ignore)
        })
        .collect();
    traced_ffi_runtime::run_untraced("the runner process runs no test itself");
    let conclusion = libtest_mimic::run(args, trials);
    print_passed_output();
    conclusion.exit()
}

/// The Trial body in process-per-test mode.
fn run_one_in_child(
    desc: &'static TestDesc,
    limit: Limit,
    capture: Capture,
    show_output: bool,
) -> Result<(), Failed> {
    let outcome = runner::run_in_child(desc, limit, capture).map_err(|e| {
        Failed::from(format!(
            "test `{}`: the runner failed to {}",
            desc.full_name(),
            error_chain(&e)
        ))
    })?;
    match outcome.result {
        Ok(()) => {
            if show_output && !outcome.output.is_empty() {
                PASSED_OUTPUT
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((desc.full_name(), outcome.output));
            }
            Ok(())
        }
        Err(message) if outcome.output.is_empty() => Err(message.into()),
        Err(message) => Err(format!(
            "{}
{message}",
            outcome.output.trim_end_matches('\n')
        )
        .into()),
    }
}

/// `--show-output`: the output of the tests that passed, after the summary
/// (libtest-mimic prints the summary itself).
fn print_passed_output() {
    let passed = std::mem::take(
        &mut *PASSED_OUTPUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    if passed.is_empty() {
        return;
    }
    println!("successes:\n");
    for (name, output) in passed {
        println!(
            "---- {name} output ----\n{}\n",
            output.trim_end_matches('\n')
        );
    }
}

fn trial_on_own_thread(desc: &'static TestDesc) -> Trial {
    Trial::test(desc.full_name(), move || {
        run_on_named_thread(desc, PanicText::InMessage).map_err(Failed::from)
    })
    .with_ignored_flag(desc.ignore)
}

fn trial(desc: &'static TestDesc) -> Trial {
    Trial::test(desc.full_name(), move || {
        run_test(desc, PanicText::InMessage).map_err(Failed::from)
    })
    .with_ignored_flag(desc.ignore)
}
