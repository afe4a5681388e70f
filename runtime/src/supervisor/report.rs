//! The supervisor's messages on stderr, its exit as the test process's
//! mirror, and the flag the runner's report request sets.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use libc::c_int;

use crate::protocol::REPORT_SIGNAL;

/// Set by the [`REPORT_SIGNAL`] handler (see `postmortem`).
static REPORT_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_report_signal(_signal: c_int) {
    REPORT_REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the [`REPORT_SIGNAL`] handler, without `SA_RESTART` so that a
/// `waitid` in progress returns `EINTR`: the supervisor sees the request
/// without polling.
pub(super) fn install_report_handler() {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
    // handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_report_signal as extern "C" fn(c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(REPORT_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            report(format_args!(
                "cannot install the timeout-report handler: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
}

/// True once [`REPORT_SIGNAL`] has arrived.
pub(super) fn report_requested() -> bool {
    REPORT_REQUESTED.load(Ordering::SeqCst)
}

/// Prints a supervisor message on stderr.
pub(super) fn report(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "traced-ffi supervisor: {msg}");
}

/// Waits for an untraced child and mirrors its exit.
pub(super) fn wait_untraced(child: libc::pid_t) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-parameter.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r == -1 {
            std::process::exit(101);
        }
        if libc::WIFEXITED(status) {
            std::process::exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            die_of(libc::WTERMSIG(status));
        }
    }
}

/// Dies of `sig` as the child did, without dumping the supervisor's core.
pub(super) fn die_of(sig: c_int) -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
