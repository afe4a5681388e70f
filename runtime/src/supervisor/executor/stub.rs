//! The one-stop executor: the instruction runs in the thread's slot of the
//! displaced-instruction stub (its code: `stub_code.rs`), which opens the
//! pages the instruction touches, runs it, closes them and jumps back. For
//! instructions whose accesses depend on their outcome (`cmpxchg`,
//! `repe cmps`) the stub ends in `int3` and the supervisor looks at the
//! registers (two stops).

use std::io;
use std::os::unix::fs::FileExt;

use libc::{c_int, pid_t, user_regs_struct};

use super::step::Resume;
use super::stub_code::{self, End};
use crate::decode::insn::{After, Decoded};
use crate::layout::CODE_OFFSET;
use crate::supervisor::core::Supervisor;
use crate::supervisor::ptrace::USER_RIP_OFFSET;
use crate::supervisor::report::report;

impl Supervisor {
    /// Writes the stub for this fault (unless it is already there) and points
    /// the thread at it. Returns false, having delivered SIGSEGV, if it cannot.
    pub(in crate::supervisor) fn enter_stub(
        &mut self,
        tid: pid_t,
        slot: usize,
        code: Vec<u8>,
    ) -> bool {
        let base = self.slot_base(slot);
        if self.threads.get(&tid).is_none_or(|t| t.last_stub != code) {
            if let Err(e) = self.mem.write_at(&code, base + CODE_OFFSET) {
                report(format_args!("cannot write the stub into thread {tid}: {e}"));
                self.resume(tid, libc::SIGSEGV);
                return false;
            }
            self.thread_mut(tid).last_stub = code;
        }
        let entry = base + CODE_OFFSET;
        if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, entry) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!(
                    "cannot redirect thread {tid} to the stub: {e}"
                ));
            }
            return false;
        }
        if let Some(call) = &mut self.call {
            call.stats.stub_path += 1;
        }
        true
    }

    /// The one-stop path: write the stub, point rip at it, continue.
    pub(in crate::supervisor) fn execute_in_stub(
        &mut self,
        tid: pid_t,
        slot: usize,
        insn: &[u8],
        ranges: &[(u64, u64)],
        end: End,
    ) {
        let code = stub_code::build(self.slot_base(slot), insn, ranges, end);
        if self.enter_stub(tid, slot, code) {
            self.resume(tid, 0);
        }
    }

    /// The two-stop path for instructions whose accesses depend on their
    /// outcome (`cmpxchg`, `repe cmps`): the stub ends in `int3`, the
    /// supervisor records what the registers say happened and moves the
    /// thread to the next instruction.
    pub(in crate::supervisor) fn execute_in_stub_and_look(
        &mut self,
        tid: pid_t,
        slot: usize,
        decoded: &Decoded,
        insn: &[u8],
        ranges: &[(u64, u64)],
        after: Option<After>,
    ) {
        let base = self.slot_base(slot);
        let code = stub_code::build(base, insn, ranges, End::Trap);
        let trap_end = base + CODE_OFFSET + code.len() as u64;
        if !self.enter_stub(tid, slot, code) {
            return;
        }
        let mut deferred: Vec<c_int> = Vec::new();
        let result = (|| -> io::Result<user_regs_struct> {
            self.pt.cont(tid, 0)?;
            self.wait_trap(tid, Resume::Continue, &mut deferred)?;
            let regs = self.pt.getregs(tid)?;
            if regs.rip != trap_end {
                return Err(io::Error::other(format!(
                    "the stub stopped at {:#x}, not at its end {trap_end:#x} (an mprotect failed)",
                    regs.rip
                )));
            }
            Ok(regs)
        })();
        match result {
            Ok(mut regs) => {
                if let Some(after) = after {
                    self.record_after(tid, decoded, after, &regs);
                }
                self.restore_signal_state(tid);
                self.read_back_writes_of(Some(tid));
                regs.rip = decoded.next_ip();
                if let Err(e) = self.pt.setregs(tid, &regs) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!("cannot advance thread {tid}: {e}"));
                    }
                    return;
                }
                self.resume(tid, deferred.first().copied().unwrap_or(0));
            }
            Err(e) => self.execution_failed(tid, &e, deferred.first().copied()),
        }
    }
}
