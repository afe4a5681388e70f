//! Processes started by native code during a traced call (issue 5, item 3): `fork`,
//! `vfork`, `posix_spawn`, `system`, `popen`. A forked child gets its copy of the
//! traced pages opened, and what it does to them is not recorded (it is another
//! process: the parent's buffer is unchanged); the parent's own accesses are traced
//! as usual, before and after the child.
//!
//! Each fixture (`traced_ffi_fixtures::os`) waits for its child, then reads `buf[0]`:
//! the parent's one access, which shows the call is still traced after the child. Each
//! test then checks that no child is left behind (`waitpid(-1, WNOHANG)`: no child,
//! or none that has exited) and that a traced call still works. Every test runs
//! [`isolated`] (alone, in a child process): there, no other test's child process can
//! be reaped by that `waitpid`, and a fork the tracer mishandles cannot take this
//! test binary with it.

use std::ffi::c_int;

use traced_ffi::{Buffer, Trace, Tracer, traced_ffi};
use traced_ffi_fixtures::os::{self as fx, ChildReport};

use crate::check::{current_tid, pattern};
use crate::os_check::{Row, assert_rows, assert_tracer_still_works, c, isolated};

/// Fails if a child of this process is left over: `waitpid(-1, WNOHANG)` must find no
/// child at all (`ECHILD`) or none that has exited (0).
fn assert_no_child_left() {
    // SAFETY: reap_any only calls waitpid.
    let r = unsafe { fx::reap_any() };
    assert!(
        r == -libc::ECHILD || r == 0,
        "waitpid(-1, WNOHANG) = {r}: a child was left behind"
    );
}

/// The checks every process test makes of its traced call: the parent read `buf[0]`
/// once after the child (and made no other access), no access is by the child, the
/// buffer is unchanged, no child is left.
fn assert_parent_read_first_byte(
    trace: &Trace,
    buf: &Buffer,
    original: &[u8],
    symbol: &str,
    report: ChildReport,
) {
    assert!(
        trace.accesses().iter().all(|a| a.tid != report.pid),
        "an access by the child (pid {})\n{trace}",
        report.pid
    );
    assert_rows!(
        trace,
        [Row::read(
            buf,
            0,
            &original[..1],
            c(symbol, "movzx"),
            current_tid()
        )]
    );
    assert_eq!(report.seen, c_int::from(original[0]));
    assert_eq!(&buf[..], original, "the parent's buffer is unchanged");
    assert_no_child_left();
}

#[traced_ffi]
fn a_forked_child_writes_its_own_copy_and_none_of_it_is_recorded(t: &mut Tracer) {
    isolated(t, |t| {
        const N: usize = 16;
        let original = pattern(N, 1);
        // The child stores 1..=16 and exits with their sum mod 256.
        let checksum = (1..=N).sum::<usize>() as c_int & 0xff;
        let mut plain = original.clone();
        let mut plain_report = ChildReport::default();
        // SAFETY: `plain` is valid for reads and writes of N bytes.
        let r = unsafe { fx::fork_child_writes(plain.as_mut_ptr(), N, &mut plain_report) };
        assert_eq!(r, 0);
        assert!(libc::WIFEXITED(plain_report.status));
        assert_eq!(libc::WEXITSTATUS(plain_report.status), checksum);
        assert_eq!(plain, original);

        let mut buf = t.buffer_from("buf", &original);
        let p = buf.as_mut_ptr();
        let mut report = ChildReport::default();
        let rp = &raw mut report;
        // SAFETY: `buf` is valid for reads and writes of N bytes; `report` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::fork_child_writes(p, N, rp) });
        assert_eq!(r, 0, "\n{trace}");
        assert!(
            libc::WIFEXITED(report.status),
            "the child did not exit normally: wait status {:#x}\n{trace}",
            report.status
        );
        assert_eq!(libc::WEXITSTATUS(report.status), checksum, "\n{trace}");
        assert_eq!(report.seen, plain_report.seen);
        assert_parent_read_first_byte(&trace, &buf, &original, "fork_child_writes", report);
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn a_vforked_child_that_exits_at_once_leaves_the_trace_to_the_parent(t: &mut Tracer) {
    isolated(t, |t| {
        let original = pattern(4, 2);
        let mut plain_report = ChildReport::default();
        // SAFETY: `original` is valid for reads of 1 byte.
        let r = unsafe { fx::vfork_exit(original.as_ptr(), 7, &mut plain_report) };
        assert_eq!(r, 0);

        let buf = t.buffer_from("buf", &original);
        let p = buf.as_ptr();
        let mut report = ChildReport::default();
        let rp = &raw mut report;
        // SAFETY: `buf` is valid for reads of 1 byte; `report` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::vfork_exit(p, 7, rp) });
        assert_eq!(r, 0, "\n{trace}");
        assert!(
            libc::WIFEXITED(report.status),
            "wait status {:#x}",
            report.status
        );
        assert_eq!(libc::WEXITSTATUS(report.status), 7);
        assert_eq!(report.status, plain_report.status);
        assert_parent_read_first_byte(&trace, &buf, &original, "vfork_exit", report);
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn posix_spawn_of_bin_true_runs_it_and_the_parent_stays_traced(t: &mut Tracer) {
    isolated(t, |t| {
        let original = pattern(4, 3);
        let mut plain_report = ChildReport::default();
        // SAFETY: `original` is valid for reads of 1 byte.
        let r = unsafe { fx::spawn_true(original.as_ptr(), &mut plain_report) };
        assert_eq!(r, 0);

        let buf = t.buffer_from("buf", &original);
        let p = buf.as_ptr();
        let mut report = ChildReport::default();
        let rp = &raw mut report;
        // SAFETY: `buf` is valid for reads of 1 byte; `report` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::spawn_true(p, rp) });
        assert_eq!(r, 0, "posix_spawn failed\n{trace}");
        assert_eq!(report.status, 0, "/bin/true's wait status\n{trace}");
        assert_eq!(report.status, plain_report.status);
        assert_parent_read_first_byte(&trace, &buf, &original, "spawn_true", report);
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn system_exit_3_returns_status_3_and_the_parent_stays_traced(t: &mut Tracer) {
    isolated(t, |t| {
        let original = pattern(4, 4);
        let mut plain_report = ChildReport::default();
        // SAFETY: `original` is valid for reads of 1 byte.
        let r = unsafe { fx::system_exit_3(original.as_ptr(), &mut plain_report) };
        assert_eq!(r, 0);
        assert_eq!(plain_report.status, 3 << 8);

        let buf = t.buffer_from("buf", &original);
        let p = buf.as_ptr();
        let mut report = ChildReport::default();
        let rp = &raw mut report;
        // SAFETY: `buf` is valid for reads of 1 byte; `report` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::system_exit_3(p, rp) });
        assert_eq!(r, 0, "\n{trace}");
        assert_eq!(report.status, 3 << 8, "system's result\n{trace}");
        assert_parent_read_first_byte(&trace, &buf, &original, "system_exit_3", report);
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn popen_echo_hello_then_fread_writes_exactly_hello_through_glibcs_buffer(t: &mut Tracer) {
    isolated(t, |t| {
        const N: usize = 64;
        let mut plain = [0u8; N];
        let mut plain_status: c_int = -1;
        // SAFETY: `plain` is valid for writes of N bytes.
        let got = unsafe { fx::popen_echo_hello(plain.as_mut_ptr(), N, &mut plain_status) };
        assert_eq!((got, plain_status), (6, 0));
        assert_eq!(&plain[..6], b"hello\n");
        assert_no_child_left();

        let mut buf = t.buffer("buf", N);
        let p = buf.as_mut_ptr();
        let mut status: c_int = -1;
        let sp = &raw mut status;
        // SAFETY: `buf` is valid for writes of N bytes; `status` is untraced.
        let (got, trace) = t.call(|| unsafe { fx::popen_echo_hello(p, N, sp) });
        assert_eq!(
            (got, status),
            (6, 0),
            "fread's result, pclose's status\n{trace}"
        );
        assert_eq!(&buf[..], &plain[..]);
        // The pipe is read into glibc's FILE buffer, not ours: the only accesses are
        // fread's copy (its instructions, on this thread), which writes exactly
        // "hello\n" (how many stores it takes is glibc's memcpy's business).
        assert!(!trace.is_incomplete(), "\n{trace}");
        assert_eq!(trace.written(&buf).ranges(), &[0..6], "\n{trace}");
        assert!(trace.read(&buf).is_empty(), "\n{trace}");
        assert!(trace.maybe_written(&buf).is_empty(), "\n{trace}");
        assert!(trace.out_of_bounds().is_empty(), "\n{trace}");
        let me = current_tid();
        for a in trace.accesses() {
            assert!(
                a.syscall.is_none() && a.tid == me,
                "an access by the kernel or another thread: {a:?}\n{trace}"
            );
            let start = a.offset as usize;
            assert_eq!(a.bytes, b"hello\n"[start..start + a.len], "\n{trace}");
        }
        assert_no_child_left();
        assert_tracer_still_works(t);
    });
}
