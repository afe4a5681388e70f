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
//! So the supervisor keeps, for the threads that trace (and the threads they
//! create), their blocked-signal mask: the per-thread seccomp filter stops
//! every `rt_sigprocmask` that passes a set, and the new mask is computed
//! from the old one (`PTRACE_GETSIGMASK`), `how` and the set. It keeps the
//! process's SIGSEGV and SIGTRAP handlers too: read once at the first call
//! (an `rt_sigaction` run from the gadget, stepping with `PTRACE_SYSCALL` so
//! that no trap is raised), then from every `rt_sigaction` on them (the
//! global filter stops those). After each of our faults or traps in a thread
//! whose mask blocks the signal, it blocks it again and puts the handler back.

use std::io;
use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use super::core::Supervisor;
use super::ptrace::{self, WaitEvent};
use crate::layout::{GADGET_OFFSET, SCRATCH_OFFSET};

/// Size of the kernel's `struct sigaction` on x86-64 (handler, flags,
/// restorer, mask).
const KSIGACTION: usize = 32;
/// The signals our own mechanism raises.
const FORCED: [i32; 2] = [libc::SIGSEGV, libc::SIGTRAP];
/// `rt_sigprocmask`'s `how`.
const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;

fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// The signals that can never be blocked.
const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

impl Supervisor {
    /// At the start of a call: the calling thread's mask, and the first time
    /// the process's handlers of the signals we raise.
    pub(super) fn note_signal_state(&mut self, tid: pid_t) {
        if let Ok(mask) = self.pt.getsigmask(tid) {
            self.thread_mut(tid).mask = Some(mask);
        }
        if self.sig_actions_known {
            return;
        }
        self.sig_actions_known = true;
        for signal in FORCED {
            let scratch = self.stub_base + SCRATCH_OFFSET;
            let args = [signal as u64, 0, scratch, 8, 0, 0];
            if matches!(
                self.inject_quietly(tid, libc::SYS_rt_sigaction as u64, args),
                Ok(0)
            ) {
                let mut action = [0u8; KSIGACTION];
                if self.mem.read_at(&mut action, scratch).ok() == Some(KSIGACTION) {
                    self.sig_actions.insert(signal, action);
                }
            }
        }
    }

    /// A seccomp stop on `rt_sigprocmask` or `rt_sigaction`: follow the
    /// thread's mask or the process's handler. Returns false for other calls.
    pub(super) fn on_signal_syscall(&mut self, tid: pid_t, regs: &user_regs_struct) -> bool {
        let nr = regs.orig_rax;
        if nr == libc::SYS_rt_sigprocmask as u64 {
            let (how, set) = (regs.rdi, regs.rsi);
            let mut b = [0u8; 8];
            if set != 0
                && self.mem.read_at(&mut b, set).ok() == Some(8)
                && let Ok(old) = self.pt.getsigmask(tid)
            {
                let set = u64::from_le_bytes(b);
                let new = match how {
                    SIG_BLOCK => old | set,
                    SIG_UNBLOCK => old & !set,
                    SIG_SETMASK => set,
                    _ => old,
                };
                self.thread_mut(tid).mask = Some(new & !UNBLOCKABLE);
            }
        } else if nr == libc::SYS_rt_sigaction as u64 {
            let (signal, act) = (regs.rdi as i32, regs.rsi);
            let mut action = [0u8; KSIGACTION];
            if act != 0
                && FORCED.contains(&signal)
                && self.mem.read_at(&mut action, act).ok() == Some(KSIGACTION)
            {
                self.sig_actions.insert(signal, action);
            }
        } else {
            return false;
        }
        self.resume(tid, 0);
        true
    }

    /// After one of our faults or traps in `tid`: if its mask blocks the
    /// signal, block it again; if it was blocked or ignored, put back the
    /// process's handler (SIG_IGN included).
    pub(super) fn restore_signal_state(&mut self, tid: pid_t) {
        let blocked = self.threads.get(&tid).and_then(|t| t.mask).unwrap_or(0);
        // The kernel resets the handler if the signal was blocked or ignored.
        let ignored = |s: i32| {
            self.sig_actions
                .get(&s)
                .is_some_and(|a| a[..8] == (libc::SIG_IGN as u64).to_le_bytes())
        };
        let forced: Vec<i32> = FORCED
            .into_iter()
            .filter(|&s| blocked & bit(s) != 0 || ignored(s))
            .collect();
        if forced.is_empty() {
            return;
        }
        if let Ok(mask) = self.pt.getsigmask(tid) {
            let want = mask | (blocked & forced.iter().fold(0, |m, &s| m | bit(s)));
            if want != mask {
                let _ = self.pt.setsigmask(tid, want);
            }
        }
        let scratch = self.stub_base + SCRATCH_OFFSET;
        for signal in forced {
            let Some(action) = self.sig_actions.get(&signal).copied() else {
                continue;
            };
            // SIG_DFL (0): the kernel's reset changed nothing.
            if action[..8] == [0; 8] {
                continue;
            }
            if self.mem.write_at(&action, scratch).is_ok() {
                let args = [signal as u64, scratch, 0, 8, 0, 0];
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
        r.rip = self.stub_base + GADGET_OFFSET;
        self.pt.setregs(tid, &r)?;
        let mut result = Err(io::Error::other("the injected system call did not finish"));
        let mut arrived = Vec::new();
        // Entry stop, then exit stop.
        for _ in 0..2 {
            self.pt.syscall(tid)?;
            loop {
                match ptrace::wait_tid(tid)? {
                    WaitEvent::SyscallStop { .. } => break,
                    WaitEvent::Exited { .. } | WaitEvent::Killed { .. } => {
                        return Err(io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    // A signal waits until the call is done (below).
                    WaitEvent::SignalStop { signal, .. } => {
                        arrived.push(signal);
                        self.pt.syscall(tid)?;
                    }
                    _ => self.pt.syscall(tid)?,
                }
            }
            result = self.pt.getregs(tid).map(|r| r.rax as i64);
        }
        self.pt.setregs(tid, &saved)?;
        for signal in arrived {
            // Sent again to the thread: it is delivered at its next resume.
            // SAFETY: tgkill takes integers; the thread belongs to our child.
            unsafe { libc::syscall(libc::SYS_tgkill, self.child, tid, signal) };
        }
        result
    }
}
