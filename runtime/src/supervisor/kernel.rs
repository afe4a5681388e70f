//! System calls on protected pages during a call.
//!
//! The seccomp filter (`tracee/seccomp.rs`) stops a thread at the entry of a system
//! call whose arguments point into the buffer range. If a call is active and
//! the arguments reach protected pages, the supervisor skips the call where
//! it stands and runs it again from the stub instead:
//!
//! ```text
//! save; mprotect(pages, RW)...; restore; syscall; save; mprotect(pages, NONE)...; restore; int3
//! ```
//!
//! (the filter allows system calls made from the stub page). At the `int3`
//! it records what the call read and wrote, from its result (`decode/syscalls.rs`),
//! and puts the thread after the original `syscall` with the registers a
//! system call leaves: the result in rax, rcx and r11 as the `syscall`
//! instruction set them. A call that is interrupted and restarted by the
//! kernel restarts inside the stub, with the pages still open. A call the
//! tracer does not know runs with the protected spans of the regions its
//! arguments point into open, and leaves an `UnknownSyscall` entry.

use std::os::unix::fs::FileExt;

use libc::pid_t;

use super::core::Supervisor;
use super::executor::stub_code::{self, End, MAX_RANGES};
use super::record::Origin;
use super::report::report;
use super::thread::InKernel;
use crate::decode::insn::Operand;
use crate::decode::syscalls;
use crate::layout::CODE_OFFSET;
use crate::trace::event::{RegionKind, UnknownSyscall};

/// Length of the `syscall` instruction.
const SYSCALL_LEN: u64 = 2;

impl Supervisor {
    /// A seccomp stop: `tid` is entering a system call that points into the
    /// buffer range.
    pub(super) fn on_seccomp(&mut self, tid: pid_t) {
        // Not from the stub (its calls are allowed): earlier stores are done,
        // and this call may overwrite them.
        self.read_back_writes_of(Some(tid));
        let regs = match self.pt.getregs(tid) {
            Ok(r) => r,
            Err(_) => return self.resume(tid, 0),
        };
        if self.is_foreign(tid) {
            return self.resume(tid, 0);
        }
        if self.on_signal_syscall(tid, &regs) {
            return;
        }
        if regs.orig_rax == libc::SYS_futex as u64 && self.on_futex(tid, &regs) {
            return;
        }
        if self.call.is_none() {
            // Outside a call the buffers are ordinary memory.
            return self.resume(tid, 0);
        }
        let nr = regs.orig_rax;
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        let mem = &self.mem;
        let read = |addr: u64, buf: &mut [u8]| mem.read_at(buf, addr).unwrap_or(0);
        let reach = syscalls::effects(nr, &args, None, &read);
        let known = reach.is_some();
        let ranges = match reach {
            Some(effects) => {
                let reach: Vec<(u64, u64)> = effects.iter().map(|e| (e.addr, e.len)).collect();
                self.pages_to_open(&reach)
            }
            None => self.spans_pointed_at(&crate::decode::syscall_table::address_values(nr, &args)),
        };
        if ranges.is_empty() {
            // Nothing protected: run it where it stands.
            return self.resume(tid, 0);
        }
        if ranges.len() > MAX_RANGES {
            report(format_args!(
                "system call {nr} of thread {tid} reaches {} separate protected ranges; it runs \
                 with its pages closed",
                ranges.len()
            ));
            return self.resume(tid, 0);
        }
        let Some(slot) = self.slot_of(tid) else {
            report(format_args!(
                "no free stub slot for system call {nr} of thread {tid}: it runs with its pages \
                 closed"
            ));
            return self.resume(tid, 0);
        };
        let base = self.slot_base(slot);
        let syscall = [0x0f, 0x05];
        let code = stub_code::build(base, &syscall, &ranges, End::Trap);
        let trap_end = base + CODE_OFFSET + code.len() as u64;
        // Skip the call here (orig_rax = -1), and enter the stub with rax =
        // the call's number, which the stub's restore gives the `syscall`.
        let mut redirected = regs;
        redirected.orig_rax = u64::MAX;
        redirected.rax = nr;
        if let Err(e) = self.pt.setregs(tid, &redirected) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!(
                    "cannot redirect system call {nr} of {tid}: {e}"
                ));
                self.resume(tid, 0);
            }
            return;
        }
        if !self.enter_stub(tid, slot, code) {
            return;
        }
        if let Some(call) = &mut self.call {
            call.stats.syscalls += 1;
            call.threads.insert(tid);
        }
        self.thread_mut(tid).in_kernel = Some(InKernel {
            entry: regs,
            nr,
            args,
            known,
            trap_end,
        });
        self.resume(tid, 0);
    }

    /// The protected spans of the regions an argument points into: what an
    /// unknown system call gets opened.
    fn spans_pointed_at(&self, args: &[u64; 6]) -> Vec<(u64, u64)> {
        let Some(call) = &self.call else {
            return Vec::new();
        };
        let reach: Vec<(u64, u64)> = args
            .iter()
            .filter_map(|&a| {
                call.regions.iter().find_map(|r| match r.kind {
                    RegionKind::Buffer if a >= r.span_start && a < r.span_end() => {
                        Some((r.span_start, r.span_len))
                    }
                    RegionKind::Tracked if a >= r.start && a < r.end() => Some((r.start, r.len)),
                    _ => None,
                })
            })
            .collect();
        self.pages_to_open(&reach)
    }

    /// If `tid` stopped at the end of a system call run in the stub, records
    /// it, puts the thread after its `syscall` and returns true.
    pub(super) fn finish_syscall(&mut self, tid: pid_t) -> bool {
        let Some(k) = self.threads.get(&tid).and_then(|t| t.in_kernel.clone()) else {
            return false;
        };
        let after = match self.pt.getregs(tid) {
            Ok(r) if r.rip == k.trap_end => r,
            _ => return false,
        };
        if let Some(thread) = self.threads.get_mut(&tid) {
            thread.in_kernel = None;
        }
        let result = after.rax as i64;
        let ip = k.entry.rip - SYSCALL_LEN;
        if k.known {
            self.record_syscall(tid, &k, ip, result);
        } else if let Some(call) = &mut self.call {
            call.unknown_syscalls.push(UnknownSyscall {
                nr: k.nr,
                name: syscalls::name(k.nr).map(str::to_owned),
                args: k.args,
                result,
                ip,
                tid,
            });
        }
        self.restore_signal_state(tid);
        let mut back = k.entry;
        back.rax = after.rax;
        back.orig_rax = after.orig_rax;
        if let Err(e) = self.pt.setregs(tid, &back) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!(
                    "cannot return thread {tid} from its system call: {e}"
                ));
            }
            return true;
        }
        self.resume(tid, 0);
        true
    }

    fn record_syscall(&mut self, tid: pid_t, k: &InKernel, ip: u64, result: i64) {
        let mem = &self.mem;
        let read = |addr: u64, buf: &mut [u8]| mem.read_at(buf, addr).unwrap_or(0);
        let Some(effects) = syscalls::effects(k.nr, &k.args, Some(result), &read) else {
            return;
        };
        let origin = Origin {
            ip,
            insn: "syscall",
            syscall: syscalls::name(k.nr),
        };
        for e in effects {
            let op = Operand {
                addr: e.addr,
                size: e.len,
                kinds: &[],
            };
            self.record(tid, &origin, &op, e.kind, None);
        }
        // The call is over: its writes' bytes are there to read.
        self.read_back_writes_of(Some(tid));
    }
}
