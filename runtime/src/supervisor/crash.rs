//! Explaining a crash of native code that the program does not handle:
//! the test and call, the signal and its cause, the instruction and the
//! registers.

use libc::{c_int, pid_t};
use std::os::unix::fs::FileExt;

use super::core::{SEGV_ACCERR, Supervisor};
use super::report::report;
use crate::decode::insn::{MAX_INSN_LEN, decode};
use crate::trace::symbols::symbolize_in;

/// `SEGV_MAPERR` (siginfo.h): no mapping at the address.
const SEGV_MAPERR: c_int = 1;

impl Supervisor {
    /// Explains a crash signal the program does not handle, naming the test
    /// and call if one is active.
    pub(super) fn report_crash(&mut self, tid: pid_t, signal: c_int, fault: Option<(c_int, u64)>) {
        if signal_is_caught(self.child, signal) {
            return;
        }
        let Ok(regs) = self.pt.getregs(tid) else {
            return;
        };
        let mut insn = [0u8; MAX_INSN_LEN];
        let n = self.mem.read_at(&mut insn, regs.rip).unwrap_or(0);
        let text = if n == 0 {
            "(instruction not readable)".to_owned()
        } else {
            decode(regs.rip, &insn[..n]).text
        };
        let place =
            symbolize_in(self.child, regs.rip).unwrap_or_else(|| format!("{:#x}", regs.rip));
        let during = match &self.call {
            Some(c) => format!("test `{}`, traced call at {}", c.test, c.call),
            None => "outside any traced call".to_owned(),
        };
        let what = match fault {
            Some((code, addr)) => format!(
                " ({}) at address {addr:#x}",
                match code {
                    SEGV_MAPERR => "SEGV_MAPERR: nothing is mapped there",
                    SEGV_ACCERR => "SEGV_ACCERR: the page forbids this access",
                    _ => "sent by a process",
                }
            ),
            None => String::new(),
        };
        report(format_args!(
            "{during}: native code in thread {tid} got signal {}{what}\n  at {place}: {text}\n  \
             rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} rsp={:#x}\n  \
             r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x} \
             rip={:#x} eflags={:#x}",
            signal_name(signal),
            regs.rax,
            regs.rbx,
            regs.rcx,
            regs.rdx,
            regs.rsi,
            regs.rdi,
            regs.rbp,
            regs.rsp,
            regs.r8,
            regs.r9,
            regs.r10,
            regs.r11,
            regs.r12,
            regs.r13,
            regs.r14,
            regs.r15,
            regs.rip,
            regs.eflags
        ));
    }
}

/// True if the process has a handler installed for `signal`
/// (`SigCgt` in /proc/PID/status).
fn signal_is_caught(pid: pid_t, signal: c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (signal - 1)) != 0)
}

fn signal_name(signal: c_int) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGFPE => "SIGFPE".into(),
        other => format!("{other}"),
    }
}
