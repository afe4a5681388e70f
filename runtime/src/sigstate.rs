//! Undoing what our own faults and traps do to the program's signal state.
//!
//! The kernel delivers a fault (`SIGSEGV` on a protected page) or a trap
//! (`SIGTRAP` from the stub's `int3` or a single-step) even when the thread
//! blocks that signal: it unblocks it in the thread and resets the
//! process-wide handler to the default, before the tracer sees the signal
//! (`force_sig_info_to_task`). We suppress the signal, but that change would
//! remain: a thread that blocked SIGSEGV would have it unblocked, and the
//! program's handler (Rust's stack-overflow handler, for one) would be gone.
//!
//! So at the start of a call, if the calling thread blocks SIGSEGV or
//! SIGTRAP, the supervisor saves the handler of each (a `rt_sigaction` run
//! in the tracee from the gadget, stepping with `PTRACE_SYSCALL` so that no
//! trap is raised), and after each fault of that thread blocks the signal
//! again and puts the handler back. Threads that start blocking those
//! signals after the call began are not covered.

use std::io;
use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use crate::ptrace::WaitEvent;
use crate::stub;
use crate::supervisor::Supervisor;

/// Size of the kernel's `struct sigaction` on x86-64 (handler, flags,
/// restorer, mask).
const KSIGACTION: usize = 32;
/// The signals our own mechanism raises.
const FORCED: [i32; 2] = [libc::SIGSEGV, libc::SIGTRAP];

/// A signal's blocked state and handler to restore after our faults.
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    signal: i32,
    action: [u8; KSIGACTION],
}

fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

impl Supervisor {
    /// At the start of a call: what to restore for `tid` after our faults.
    pub(crate) fn save_signal_state(&mut self, tid: pid_t) -> Vec<Saved> {
        let Ok(mask) = self.pt.getsigmask(tid) else {
            return Vec::new();
        };
        let mut saved = Vec::new();
        for signal in FORCED.into_iter().filter(|&s| mask & bit(s) != 0) {
            let scratch = self.stub_base + stub::SCRATCH_OFFSET;
            let args = [signal as u64, 0, scratch, 8, 0, 0];
            if matches!(
                self.inject_quietly(tid, libc::SYS_rt_sigaction as u64, args),
                Ok(0)
            ) {
                let mut action = [0u8; KSIGACTION];
                if self.mem.read_at(&mut action, scratch).ok() == Some(KSIGACTION) {
                    saved.push(Saved { signal, action });
                }
            }
        }
        saved
    }

    /// After one of our faults or traps in `tid`: block again and put back
    /// the handlers saved at the call's start.
    pub(crate) fn restore_signal_state(&mut self, tid: pid_t) {
        let saved: Vec<Saved> = match &self.call {
            Some(c) if c.tid == tid && !c.saved_signals.is_empty() => c.saved_signals.clone(),
            _ => return,
        };
        if let Ok(mask) = self.pt.getsigmask(tid) {
            let want = saved.iter().fold(mask, |m, s| m | bit(s.signal));
            if want != mask {
                let _ = self.pt.setsigmask(tid, want);
            }
        }
        let scratch = self.stub_base + stub::SCRATCH_OFFSET;
        for s in saved {
            if self.mem.write_at(&s.action, scratch).is_ok() {
                let args = [s.signal as u64, scratch, 0, 8, 0, 0];
                let _ = self.inject_quietly(tid, libc::SYS_rt_sigaction as u64, args);
            }
        }
    }

    /// Runs system call `nr` in stopped thread `tid` through the gadget,
    /// regaining control at its exit (`PTRACE_SYSCALL`, no trap raised), and
    /// puts the registers back. Returns the result.
    fn inject_quietly(&mut self, tid: pid_t, nr: u64, args: [u64; 6]) -> io::Result<i64> {
        let saved: user_regs_struct = self.pt.getregs(tid)?;
        let mut r = saved;
        r.rax = nr;
        r.orig_rax = u64::MAX;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) =
            (args[0], args[1], args[2], args[3], args[4], args[5]);
        r.rip = self.stub_base + stub::GADGET_OFFSET;
        self.pt.setregs(tid, &r)?;
        let mut result = Err(io::Error::other("the injected system call did not finish"));
        // Entry stop, then exit stop.
        for _ in 0..2 {
            self.pt.syscall(tid)?;
            loop {
                match crate::ptrace::wait_tid(tid)? {
                    WaitEvent::SyscallStop { .. } => break,
                    WaitEvent::Exited { .. } | WaitEvent::Killed { .. } => {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    // Anything else (a signal) waits: it is delivered later.
                    _ => self.pt.syscall(tid)?,
                }
            }
            result = self.pt.getregs(tid).map(|r| r.rax as i64);
        }
        self.pt.setregs(tid, &saved)?;
        result
    }
}
