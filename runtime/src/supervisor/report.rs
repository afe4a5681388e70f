//! The supervisor's messages on stderr, and its exit as the test process's
//! mirror.

use std::io::{self, Write as _};

use libc::c_int;

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
