//! Signals during a traced call (issue 5, item 4), with handlers the C code installs:
//! a handler's accesses to traced buffers are recorded like any code's, in the order
//! they happen, named by the handler's symbol; a signal's value arrives intact; a
//! system call that raises a signal still returns its error; a fault that is not the
//! tracer's (the program's own `PROT_NONE` page) reaches the program's own handler; a
//! thread's blocked SIGSEGV stays blocked (and the process's SIGSEGV action
//! unchanged) although the kernel unblocks it (and resets the action) to deliver the
//! tracer's faults; and a timer signal every millisecond loses no access.
//!
//! Every test runs [`isolated`] (alone, in a child process): a signal the tracer
//! mishandles can hang or kill the process. There the test runs on the child's main
//! thread, the only one, so a process-directed signal (`sigqueue` to the process,
//! `SIGALRM`) can only go to the calling thread.

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::os::{self as fx, BlockedReport};

use crate::check::{current_tid, pattern};
use crate::os_check::{Row, assert_rows, assert_tracer_still_works, c, isolated};

#[traced_ffi]
fn raise_sigusr1_runs_a_handler_whose_write_is_recorded_between_the_callers(t: &mut Tracer) {
    isolated(t, |t| {
        let mut plain = [0u8; 3];
        let mut plain_tid: c_int = 0;
        // SAFETY: `plain` is valid for writes of 3 bytes.
        let r = unsafe { fx::raise_usr1(plain.as_mut_ptr(), &mut plain_tid) };
        assert_eq!((r, plain_tid), (0, current_tid()));
        let written = [fx::USR1_BEFORE, fx::USR1_VALUE, fx::USR1_AFTER];
        assert_eq!(plain, written);

        let mut buf = t.buffer("buf", 3);
        let p = buf.as_mut_ptr();
        let mut tid: c_int = 0;
        let tp = &raw mut tid;
        // SAFETY: `buf` is valid for writes of 3 bytes; `tid` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::raise_usr1(p, tp) });
        assert_eq!(r, 0, "\n{trace}");
        let me = current_tid();
        assert_eq!(tid, me, "raise() signals the calling thread");
        assert_eq!(&buf[..], &written);
        assert_rows!(
            trace,
            [
                Row::write(&buf, 0, &[fx::USR1_BEFORE], c("raise_usr1", "mov"), me),
                Row::write(&buf, 1, &[fx::USR1_VALUE], c("os_on_usr1", "mov"), me),
                Row::write(&buf, 2, &[fx::USR1_AFTER], c("raise_usr1", "mov"), me),
            ]
        );
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn sigqueue_of_a_realtime_signal_delivers_its_value_intact_to_a_siginfo_handler(t: &mut Tracer) {
    isolated(t, |t| {
        // All four bytes differ, and the sign bit is set.
        let value = i32::from_le_bytes([0xEF, 0xBE, 0xAD, 0xDE]);
        let mut plain = [0u8; 4];
        let mut plain_tid: c_int = 0;
        // SAFETY: `plain` is valid for writes of 4 bytes.
        let r = unsafe { fx::sigqueue_rt(plain.as_mut_ptr(), value, &mut plain_tid) };
        assert_eq!(r, 0);
        assert_ne!(plain_tid, 0, "the handler did not run");
        assert_eq!(plain, value.to_le_bytes());

        let mut buf = t.buffer("buf", 4);
        let p = buf.as_mut_ptr();
        let mut tid: c_int = 0;
        let tp = &raw mut tid;
        // SAFETY: `buf` is valid for writes of 4 bytes; `tid` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::sigqueue_rt(p, value, tp) });
        assert_eq!(r, 0, "\n{trace}");
        assert_ne!(tid, 0, "the handler did not run\n{trace}");
        assert_eq!(&buf[..], &value.to_le_bytes());
        assert_rows!(
            trace,
            [Row::write(
                &buf,
                0,
                &value.to_le_bytes(),
                c("os_on_rt", "mov"),
                tid
            )]
        );
        assert_tracer_still_works(t);
    });
}

/// A pipe whose read end is already closed: its write end.
fn pipe_without_reader() -> OwnedFd {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is valid for writes of two c_ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[traced_ffi]
fn write_to_a_pipe_without_reader_runs_the_sigpipe_handler_and_fails_with_epipe(t: &mut Tracer) {
    isolated(t, |t| {
        let data = pattern(16, 1);
        let plain_fd = pipe_without_reader();
        let mut plain_flag = [0u8; 1];
        let mut plain_runs: c_int = 0;
        // SAFETY: `data` is valid for reads of 16 bytes, `plain_flag` for writes of 1.
        let r = unsafe {
            fx::write_to_closed_pipe(
                plain_fd.as_raw_fd(),
                data.as_ptr().cast(),
                16,
                plain_flag.as_mut_ptr(),
                &mut plain_runs,
            )
        };
        assert_eq!(
            (r, plain_runs, plain_flag),
            (-(libc::EPIPE as isize), 1, [1])
        );

        let fd = pipe_without_reader();
        let raw = fd.as_raw_fd();
        let buf = t.buffer_from("data", &data);
        let mut flag = t.buffer("flag", 1);
        let (dp, fp) = (buf.as_ptr(), flag.as_mut_ptr());
        let mut runs: c_int = 0;
        let rp = &raw mut runs;
        // SAFETY: `buf` is valid for reads of 16 bytes, `flag` for writes of 1; `runs`
        // is untraced.
        let (r, trace) = t.call(|| unsafe { fx::write_to_closed_pipe(raw, dp.cast(), 16, fp, rp) });
        assert_eq!(r, -(libc::EPIPE as isize), "write's result\n{trace}");
        assert_eq!(runs, 1, "SIGPIPE handler runs\n{trace}");
        assert_eq!(flag[0], 1);
        assert_eq!(&buf[..], &data[..]);
        // The kernel fails the write before it reads any of `data`; the handler's
        // store is the one access.
        assert_rows!(
            trace,
            [Row::write(
                &flag,
                0,
                &[1],
                c("os_on_pipe", "mov"),
                current_tid()
            )]
        );
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn the_programs_own_sigsegv_handler_catches_its_own_fault_and_the_trace_stays_exact(
    t: &mut Tracer,
) {
    let parent = isolated(t, |t| {
        let mut plain = [0u8; 2];
        // SAFETY: `plain` is valid for writes of 2 bytes.
        let caught = unsafe { fx::own_segv_handler(plain.as_mut_ptr()) };
        assert_eq!(caught, 1);
        let written = [fx::OWN_SEGV_BEFORE, fx::OWN_SEGV_AFTER];
        assert_eq!(plain, written);

        let mut buf = t.buffer("buf", 2);
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` is valid for writes of 2 bytes.
        let (caught, trace) = t.call(|| unsafe { fx::own_segv_handler(p) });
        assert_eq!(
            caught, 1,
            "the program's own handler did not catch its fault\n{trace}"
        );
        assert_eq!(&buf[..], &written);
        let me = current_tid();
        assert_rows!(
            trace,
            [
                Row::write(
                    &buf,
                    0,
                    &[fx::OWN_SEGV_BEFORE],
                    c("own_segv_handler", "mov"),
                    me
                ),
                Row::write(
                    &buf,
                    1,
                    &[fx::OWN_SEGV_AFTER],
                    c("own_segv_handler", "mov"),
                    me
                ),
            ]
        );
        assert_tracer_still_works(t);
    });
    if let Some(run) = parent {
        assert!(
            !run.stderr.contains("got signal"),
            "a fault the program handles itself is not a crash to report\n{}",
            run.dump()
        );
    }
}

/// What [`fx::touch_with_segv_blocked`] must report: still blocked, action unchanged,
/// and `buf[1]` read as `seen`.
fn blocked_and_unchanged(seen: u8) -> BlockedReport {
    BlockedReport {
        still_blocked: true,
        same_action: true,
        seen,
    }
}

/// Blocks SIGSEGV in the calling thread until dropped.
struct SegvBlocked(libc::sigset_t);

impl SegvBlocked {
    fn new() -> Self {
        // SAFETY: sigset_t is plain data; the calls only fill and read these sets.
        unsafe {
            let mut segv: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut segv);
            libc::sigaddset(&mut segv, libc::SIGSEGV);
            libc::pthread_sigmask(libc::SIG_BLOCK, &segv, &mut old);
            SegvBlocked(old)
        }
    }
}

impl Drop for SegvBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// The calling thread blocks SIGSEGV before the traced call (the tracer saves the
/// signal's state when the call starts and puts it back after each of its faults).
#[traced_ffi]
fn a_thread_with_sigsegv_blocked_keeps_it_blocked_after_touching_a_traced_buffer(t: &mut Tracer) {
    isolated(t, |t| {
        let _blocked = SegvBlocked::new();
        let original = [0u8, 0x99];
        let mut plain = original;
        // SAFETY: `plain` is valid for reads and writes of 2 bytes.
        let code = unsafe { fx::touch_with_segv_blocked(plain.as_mut_ptr()) };
        assert_eq!(BlockedReport::from_code(code), blocked_and_unchanged(0x99));

        let mut buf = t.buffer_from("buf", &original);
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` is valid for reads and writes of 2 bytes.
        let (code, trace) = t.call(|| unsafe { fx::touch_with_segv_blocked(p) });
        assert_eq!(
            BlockedReport::from_code(code),
            blocked_and_unchanged(0x99),
            "the tracer must undo the kernel's forced unblocking (and reset of the action) \
             of SIGSEGV\n{trace}"
        );
        assert_eq!(&buf[..], &[fx::BLOCKED_VALUE, 0x99]);
        let me = current_tid();
        let at = |m| c("touch_with_segv_blocked", m);
        assert_rows!(
            trace,
            [
                Row::write(&buf, 0, &[fx::BLOCKED_VALUE], at("mov"), me),
                Row::read(&buf, 1, &[0x99], at("movzx"), me),
            ]
        );
        assert_tracer_still_works(t);
    });
}

/// The calling thread blocks SIGSEGV inside the traced call (the fixture's own
/// `pthread_sigmask`), then touches the buffer.
#[traced_ffi]
fn a_thread_blocking_sigsegv_during_the_call_keeps_it_blocked_after_touching_a_buffer(
    t: &mut Tracer,
) {
    isolated(t, |t| {
        let original = [0u8, 0x42];
        let mut buf = t.buffer_from("buf", &original);
        let p = buf.as_mut_ptr();
        // SAFETY: `buf` is valid for reads and writes of 2 bytes.
        let (code, trace) = t.call(|| unsafe { fx::touch_with_segv_blocked(p) });
        assert_eq!(
            BlockedReport::from_code(code),
            blocked_and_unchanged(0x42),
            "\n{trace}"
        );
        assert_eq!(&buf[..], &[fx::BLOCKED_VALUE, 0x42]);
        assert_tracer_still_works(t);
    });
}

/// A thread the C code creates during the call blocks SIGSEGV itself, then touches the
/// buffer: the tracer followed its `pthread_sigmask` and undoes the kernel's forced
/// unblocking and handler reset.
#[traced_ffi]
fn a_new_thread_with_sigsegv_blocked_keeps_it_blocked_after_touching_a_traced_buffer(
    t: &mut Tracer,
) {
    isolated(t, |t| {
        let original = [0u8, 0x77];
        let mut buf = t.buffer_from("buf", &original);
        let p = buf.as_mut_ptr();
        let mut tid: c_int = 0;
        let tp = &raw mut tid;
        // SAFETY: `buf` is valid for reads and writes of 2 bytes; `tid` is untraced.
        let (code, trace) = t.call(|| unsafe { fx::thread_touch_with_segv_blocked(p, tp) });
        assert_eq!(
            BlockedReport::from_code(code),
            blocked_and_unchanged(0x77),
            "\n{trace}"
        );
        assert!(tid != 0 && tid != current_tid(), "worker tid {tid}");
        assert_eq!(&buf[..], &[fx::BLOCKED_VALUE, 0x77]);
        let at = |m| c("touch_with_segv_blocked", m);
        assert_rows!(
            trace,
            [
                Row::write(&buf, 0, &[fx::BLOCKED_VALUE], at("mov"), tid),
                Row::read(&buf, 1, &[0x77], at("movzx"), tid),
            ]
        );
        assert_tracer_still_works(t);
    });
}

#[traced_ffi]
fn sigalrm_every_millisecond_during_a_read_loop_loses_and_repeats_none(t: &mut Tracer) {
    isolated(t, |t| {
        const N: usize = 64;
        // Long enough for alarms to arrive: in the code cache a read costs
        // tens of nanoseconds, on the per-instruction path microseconds.
        let cache_off = std::env::var("TRACED_FFI_CACHE").as_deref() == Ok("off");
        let reads: usize = if cache_off { 10_000 } else { 300_000 };
        let data = pattern(N, 9);
        let want_sum: u32 = (0..reads).map(|i| u32::from(data[i % N])).sum();
        let mut plain_runs: c_int = 0;
        // SAFETY: `data` is valid for reads of N bytes.
        let sum = unsafe { fx::alarm_loop_sum(data.as_ptr(), N, reads, &mut plain_runs) };
        assert_eq!(sum, want_sum);

        let buf = t.buffer_from("buf", &data);
        let p = buf.as_ptr();
        let mut runs: c_int = 0;
        let rp = &raw mut runs;
        // SAFETY: `buf` is valid for reads of N bytes; `runs` is untraced.
        let (sum, trace) = t.call(|| unsafe { fx::alarm_loop_sum(p, N, reads, rp) });
        assert_eq!(sum, want_sum, "the sum of the bytes read");
        assert!(
            runs >= 1,
            "the SIGALRM handler never ran during {reads} traced reads"
        );
        // With the cache, alarms arrive inside translated code: held until
        // the loop leaves it, then delivered.
        assert!(
            cache_off || trace.stats().cache_entries >= 2,
            "{:?}",
            trace.stats()
        );
        let me = current_tid();
        let want: Vec<Row> = (0..reads)
            .map(|i| {
                let j = i % N;
                Row::read(&buf, j, &data[j..=j], c("alarm_loop_sum", "movzx"), me)
            })
            .collect();
        assert_rows!(trace, want);
        println!("SIGALRM handler ran {runs} time(s) during the traced call");
        assert_tracer_still_works(t);
    });
}

/// A stop signal that is not the tracer's (`kill(getpid(), SIGSTOP)`, as Ctrl-Z sends
/// SIGTSTP) during a call is a group-stop: the supervisor leaves the process stopped
/// (`PTRACE_LISTEN`) until a SIGCONT, here from a forked helper 200 ms later; the call
/// then goes on and its trace is exact.
#[traced_ffi]
fn a_stop_signal_during_a_call_stops_the_process_until_sigcont(t: &mut Tracer) {
    isolated(t, |t| {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        // SAFETY: the child only calls async-signal-safe functions and exits.
        let helper = unsafe { libc::fork() };
        if helper == 0 {
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            // SAFETY: async-signal-safe calls in the forked child, then _exit.
            unsafe {
                libc::nanosleep(&pause, std::ptr::null_mut());
                libc::kill(me, libc::SIGCONT);
                libc::_exit(0);
            }
        }
        assert!(helper > 0, "fork failed");
        let mut buf = t.buffer("buf", 2);
        let p = buf.as_mut_ptr();
        let start = std::time::Instant::now();
        let ((), trace) = t.call(|| {
            // SAFETY: `p` points at the 2-byte buffer.
            unsafe {
                std::ptr::write_volatile(p, 1);
                libc::kill(me, libc::SIGSTOP);
                std::ptr::write_volatile(p.add(1), 2);
            }
        });
        let stopped_for = start.elapsed();
        assert!(
            stopped_for >= std::time::Duration::from_millis(150),
            "the process stopped until the SIGCONT ({stopped_for:?})"
        );
        assert_eq!(&buf[..], &[1, 2]);
        let written: Vec<(isize, Vec<u8>)> = trace
            .accesses()
            .iter()
            .map(|a| (a.offset, a.bytes.clone()))
            .collect();
        assert_eq!(written, [(0, vec![1]), (1, vec![2])], "\n{trace}");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let waited = unsafe { libc::waitpid(helper, &mut status, 0) };
        assert_eq!(waited, helper);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_tracer_still_works(t);
    });
}

/// The program ignores SIGTRAP; the tracer's `int3` at the end of a `lock cmpxchg`'s
/// stub makes the kernel reset it to the default: the tracer puts SIG_IGN back.
#[traced_ffi]
fn an_ignored_sigtrap_stays_ignored_after_the_tracers_own_traps(t: &mut Tracer) {
    isolated(t, |t| {
        // SAFETY: setting a standard disposition for SIGTRAP.
        let before = unsafe { libc::signal(libc::SIGTRAP, libc::SIG_IGN) };
        let mut buf = t.buffer_from("word", &7u32.to_le_bytes());
        let p = buf.as_mut_ptr();
        // SAFETY: the buffer holds 4 bytes, 4-aligned.
        let (old, trace) =
            t.call(|| unsafe { traced_ffi_fixtures::forms::form_lock_cmpxchg32(p, 7, 9) });
        assert_eq!(old, 7);
        assert_eq!(&buf[..], &9u32.to_le_bytes());
        assert!(trace.stats().stub_path >= 1, "{:?}", trace.stats());
        // SAFETY: reading the current disposition (and putting back the old one).
        let now = unsafe { libc::signal(libc::SIGTRAP, before) };
        assert_eq!(now, libc::SIG_IGN, "SIGTRAP is still ignored\n{trace}");
        assert_tracer_still_works(t);
    });
}
