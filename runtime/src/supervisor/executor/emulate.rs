//! The cheapest executor: a plain move (see `decode::moves`) carried out
//! by the supervisor through `/proc/PID/mem`. One stop; the page never opens,
//! and the written bytes are known without reading them back.

use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use crate::decode::insn::{Decoded, Operand};
use crate::decode::moves::{self, Emulation};
use crate::supervisor::core::Supervisor;
use crate::supervisor::ptrace::USER_RIP_OFFSET;
use crate::supervisor::report::report;

impl Supervisor {
    /// The cheapest path: carry a plain move out through `/proc/PID/mem`.
    /// Returns false (having changed nothing) if it cannot.
    pub(in crate::supervisor) fn execute_emulated(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        op: &Operand,
        read: Option<&[u8]>,
        mut regs: user_regs_struct,
        pending_before: usize,
    ) -> bool {
        let Some(emu) = decoded.emulation else {
            return false;
        };
        match emu {
            Emulation::Load { dst, size, extend } => {
                let Some(bytes) = read.filter(|b| b.len() == size) else {
                    return false;
                };
                let value = moves::loaded_value(bytes, dst, extend);
                if moves::write_register(&mut regs, dst, value).is_none() {
                    return false;
                }
                regs.rip = decoded.next_ip();
                if let Err(e) = self.pt.setregs(tid, &regs) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!(
                            "cannot set the registers of thread {tid}: {e}"
                        ));
                    }
                    return true;
                }
            }
            Emulation::StoreReg { .. } | Emulation::StoreImm { .. } => {
                let (value, size) = match emu {
                    Emulation::StoreReg { src, size } => match moves::read_register(&regs, src) {
                        Some(v) => (v, size),
                        None => return false,
                    },
                    Emulation::StoreImm { value, size } => (value, size),
                    Emulation::Load { .. } => return false,
                };
                let bytes = value.to_le_bytes();
                if !matches!(self.mem.write_at(&bytes[..size], op.addr), Ok(n) if n == size) {
                    return false;
                }
                // The written bytes are known: no read-back needed.
                if let Some(call) = &mut self.call
                    && let Some(thread) = self.threads.get_mut(&tid)
                {
                    for p in thread.pending.drain(pending_before..) {
                        let from = (p.addr - op.addr) as usize;
                        call.accesses
                            .set_bytes(p.index, &bytes[from.min(size)..(from + p.len).min(size)]);
                    }
                }
                if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, decoded.next_ip()) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!("cannot advance thread {tid}: {e}"));
                    }
                    return true;
                }
            }
        }
        if let Some(call) = &mut self.call {
            call.stats.emulated += 1;
        }
        self.resume(tid, 0);
        true
    }
}
