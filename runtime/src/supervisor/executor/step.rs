//! The general executor: `mprotect` injected through the `syscall; int3`
//! gadget, a single-step of the instruction in place, `mprotect` injected
//! again (four stops). Used for control flow through memory and whatever
//! the stub cannot place. The injection and the wait for a trap serve the
//! other paths too.

use std::io;

use libc::{c_int, pid_t, user_regs_struct};

use crate::decode::insn::{After, Decoded};
use crate::layout::GADGET_OFFSET;
use crate::supervisor::core::Supervisor;
use crate::supervisor::ptrace::{self, Ptrace, WaitEvent};
use crate::supervisor::report::report;

/// How a thread waited on by `wait_trap` was set running.
#[derive(Clone, Copy)]
pub(in crate::supervisor) enum Resume {
    Step,
    Continue,
}

impl Supervisor {
    /// An execution path failed: say so, and deliver `signal` (the fault the
    /// program took, if any) or SIGSEGV.
    pub(in crate::supervisor) fn execution_failed(
        &mut self,
        tid: pid_t,
        e: &io::Error,
        signal: Option<c_int>,
    ) {
        if e.raw_os_error() == Some(libc::ESRCH) {
            return;
        }
        report(format_args!(
            "executing a faulting instruction of thread {tid} failed: {e}"
        ));
        self.resume(tid, signal.unwrap_or(libc::SIGSEGV));
    }

    /// The general path: inject `mprotect(RW)`, single-step the instruction
    /// in place, inject `mprotect(NONE)`, restore, continue.
    pub(in crate::supervisor) fn execute_by_stepping(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        regs: &user_regs_struct,
        ranges: &[(u64, u64)],
        after: Option<After>,
    ) {
        if let Some(call) = &mut self.call {
            call.stats.step_path += 1;
        }
        let mut deferred: Vec<c_int> = Vec::new();
        let result = (|| -> io::Result<user_regs_struct> {
            for &r in ranges {
                self.inject_mprotect(
                    tid,
                    regs,
                    r,
                    libc::PROT_READ | libc::PROT_WRITE,
                    &mut deferred,
                )?;
            }
            self.pt.setregs(tid, regs)?;
            self.pt.step(tid, 0)?;
            self.wait_trap(tid, Resume::Step, &mut deferred)?;
            let after = self.pt.getregs(tid)?;
            for &r in ranges {
                self.inject_mprotect(tid, &after, r, libc::PROT_NONE, &mut deferred)?;
            }
            self.pt.setregs(tid, &after)?;
            Ok(after)
        })();
        match result {
            Ok(regs_after) => {
                if let Some(after) = after {
                    self.record_after(tid, decoded, after, &regs_after);
                }
                self.restore_signal_state(tid);
                let signal = deferred.first().copied().unwrap_or(0);
                self.resume(tid, signal);
            }
            Err(e) => {
                let _ = self.pt.setregs(tid, regs);
                self.execution_failed(tid, &e, deferred.first().copied());
            }
        }
    }

    /// Runs `mprotect(range, prot)` in the tracee through the gadget.
    pub(in crate::supervisor) fn inject_mprotect(
        &mut self,
        tid: pid_t,
        base: &user_regs_struct,
        (start, len): (u64, u64),
        prot: c_int,
        deferred: &mut Vec<c_int>,
    ) -> io::Result<()> {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK:
        // a signal interrupted the call; the kernel would restart it, so do
        // we (as gVisor's ptrace platform does).
        const RESTART: [i64; 4] = [-512, -513, -514, -516];
        let mut r = *base;
        r.rdi = start;
        r.rsi = len;
        r.rdx = prot as u64;
        r.orig_rax = u64::MAX;
        for _ in 0..8 {
            r.rax = libc::SYS_mprotect as u64;
            r.rip = self.stub_base + GADGET_OFFSET;
            self.pt.setregs(tid, &r)?;
            self.pt.cont(tid, 0)?;
            self.wait_trap(tid, Resume::Continue, deferred)?;
            let done = self.pt.getregs(tid)?.rax as i64;
            if done == 0 {
                return Ok(());
            }
            if !RESTART.contains(&done) {
                return Err(io::Error::from_raw_os_error(-done as i32));
            }
        }
        Err(io::Error::other("mprotect kept being interrupted"))
    }

    /// Waits for `tid`'s SIGTRAP (int3 or single-step); other signals that
    /// arrive first are kept for delivery afterwards.
    pub(in crate::supervisor) fn wait_trap(
        &mut self,
        tid: pid_t,
        how: Resume,
        deferred: &mut Vec<c_int>,
    ) -> io::Result<()> {
        let again = |pt: &mut Ptrace| match how {
            Resume::Step => pt.step(tid, 0),
            Resume::Continue => pt.cont(tid, 0),
        };
        loop {
            if let Some(call) = &mut self.call {
                call.stats.stops += 1;
            }
            match ptrace::wait_tid(tid)? {
                WaitEvent::SignalStop { signal, .. } if signal == libc::SIGTRAP => return Ok(()),
                // The instruction itself faulted: resuming would repeat it.
                WaitEvent::SignalStop { signal, .. }
                    if matches!(
                        signal,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    ) =>
                {
                    deferred.insert(0, signal);
                    return Err(io::Error::other(format!(
                        "it took signal {signal} while running with its pages open"
                    )));
                }
                WaitEvent::SignalStop { signal, .. } => {
                    deferred.push(signal);
                    again(&mut self.pt)?;
                }
                WaitEvent::Exited { .. } | WaitEvent::Killed { .. } => {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                _ => again(&mut self.pt)?,
            }
        }
    }
}
