//! Child side of process-per-test (see `runner.rs`): run the one test named
//! by [`RUN_ONE_ENV`] under a supervisor of its own and write the verdict to
//! the descriptor named by [`RESULT_FD_ENV`].

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{FromRawFd, RawFd};

use crate::registry::TESTS;
use crate::runner::{RESULT_FD_ENV, RUN_ONE_ENV, VERDICT_FAILED, VERDICT_OK};
use crate::test::{PanicText, run_on_named_thread, start_tracing};

/// What the runner told this child process.
pub(crate) struct Assignment {
    test: String,
    verdict: File,
}

/// The runner's environment variables are malformed.
#[derive(Debug, thiserror::Error)]
#[error(
    "read {RESULT_FD_ENV}={value:?}: expected the number of an open file descriptor (it is set \
     by the test runner for the test process it starts; do not set {RUN_ONE_ENV} yourself)"
)]
pub(crate) struct AssignmentError {
    value: String,
}

/// The assignment, if this process is a child of the runner. Removes both
/// variables, so that processes the test starts (this binary run again by
/// a test, say) do not take them for their own.
///
/// # Safety
/// No other thread may exist (the environment is changed).
pub(crate) unsafe fn take_assignment() -> Option<Result<Assignment, AssignmentError>> {
    let test = std::env::var(RUN_ONE_ENV).ok()?;
    let fd = std::env::var(RESULT_FD_ENV).unwrap_or_default();
    // SAFETY: the caller guarantees that this process has one thread.
    unsafe {
        std::env::remove_var(RUN_ONE_ENV);
        std::env::remove_var(RESULT_FD_ENV);
    }
    let Ok(raw) = fd.parse::<RawFd>() else {
        return Some(Err(AssignmentError { value: fd }));
    };
    // SAFETY: F_GETFD only checks that the descriptor is open.
    if raw < 3 || unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Some(Err(AssignmentError { value: fd }));
    }
    // Programs the test executes must not inherit it.
    // SAFETY: setting FD_CLOEXEC on a descriptor this process owns.
    unsafe { libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the runner opened this descriptor for us alone, and nothing
    // else in this process owns it.
    let verdict = unsafe { File::from_raw_fd(raw) };
    Some(Ok(Assignment { test, verdict }))
}

/// Makes C's `stdout` line-buffered: it is a pipe to the runner, fully
/// buffered by default, and a crash would lose what `printf` had buffered.
fn line_buffer_c_stdout() {
    unsafe extern "C" {
        /// glibc's `stdout` stream.
        static mut stdout: *mut libc::FILE;
    }
    // SAFETY: `stdout` is glibc's initialised stream; setvbuf before any
    // output, from the only thread, with a null buffer (glibc allocates).
    unsafe {
        libc::setvbuf(stdout, std::ptr::null_mut(), libc::_IOLBF, 0);
    }
}

/// Runs the assigned test and exits; the process's exit status is 0 unless
/// the verdict cannot be written.
pub(crate) fn run_assigned(mut assignment: Assignment) -> ! {
    line_buffer_c_stdout();
    let verdict = match TESTS.iter().find(|t| t.full_name() == assignment.test) {
        None => Err(format!(
            "no test named `{}` in this binary (internal error of the runner)",
            assignment.test
        )),
        Some(desc) => {
            start_tracing();
            run_on_named_thread(desc, PanicText::InOutput)
        }
    };
    let text = match &verdict {
        Ok(()) => format!("{VERDICT_OK}\n"),
        Err(msg) => format!("{VERDICT_FAILED}\n{msg}"),
    };
    let written = assignment
        .verdict
        .write_all(text.as_bytes())
        .and_then(|()| assignment.verdict.flush());
    if let Err(e) = written {
        eprintln!("traced-ffi: cannot send the test's verdict to the runner: {e}");
        std::process::exit(101);
    }
    std::process::exit(0)
}
