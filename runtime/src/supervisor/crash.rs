//! Explaining a crash of native code that the program does not handle:
//! the test and call, the signal and its cause, the instruction and the
//! registers.

use libc::{c_int, pid_t};
use std::os::unix::fs::FileExt;

use super::cause::{describe_cause, during, signal_name};
use super::core::Supervisor;
use super::report::report;
use crate::decode::insn::{MAX_INSN_LEN, decode};
use crate::trace::symbols::symbolize_in;

impl Supervisor {
    /// Explains a crash signal the program does not handle, naming the test
    /// and call if one is active, the cause from `info`, and the accesses
    /// the call recorded so far.
    pub(super) fn report_crash(&mut self, tid: pid_t, signal: c_int, info: &libc::siginfo_t) {
        if signal_is_caught(self.child, signal) {
            return;
        }
        let Ok(regs) = self.pt.getregs(tid) else {
            return;
        };
        let code = self.code_at(regs.rip);
        let during = during(self.call.as_ref());
        let what = describe_cause(signal, info);
        let accesses = self.accesses_so_far();
        let dropped = self.dropped_buffer_at(signal, info);
        report(format_args!(
            "{during}: native code in thread {tid} got signal {}{what}\n  at {code}\n  \
             rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} rsp={:#x}\n  \
             r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x} \
             rip={:#x} eflags={:#x}{dropped}{accesses}",
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

impl Supervisor {
    /// `symbol+offset` of `ip` in the test process (its address when no
    /// symbol covers it).
    pub(super) fn place_of(&self, ip: u64) -> String {
        symbolize_in(self.child, ip).unwrap_or_else(|| format!("{ip:#x}"))
    }

    /// `f+0x4: mov [rdi],dl`: where `ip` is and the instruction there.
    pub(super) fn code_at(&self, ip: u64) -> String {
        let mut insn = [0u8; MAX_INSN_LEN];
        let n = self.mem.read_at(&mut insn, ip).unwrap_or(0);
        let text = if n == 0 {
            "(instruction not readable)".to_owned()
        } else {
            decode(ip, &insn[..n]).text
        };
        format!("{}: {text}", self.place_of(ip))
    }

    /// For a fault on a page of a dropped buffer (in quarantine), a line
    /// naming it: native code kept a pointer to memory the test freed.
    fn dropped_buffer_at(&self, signal: c_int, info: &libc::siginfo_t) -> String {
        if signal != libc::SIGSEGV || info.si_code <= 0 {
            return String::new();
        }
        // SAFETY: for a kernel-sent SIGSEGV, si_addr is the valid union member.
        let addr = unsafe { info.si_addr() } as u64;
        let Some(d) = self
            .dropped
            .iter()
            .rev()
            .find(|d| addr >= d.span_start && addr < d.span_start + d.span_len)
        else {
            return String::new();
        };
        let offset = addr as i128 - d.start as i128;
        let made = d
            .made_at
            .as_ref()
            .map_or(String::new(), |m| format!(" (made at {m})"));
        format!(
            "\n  the address is {}{offset:#x} in buffer `{}`{made}, {} bytes, which the test \
             dropped before this call: native code kept a pointer to it (use after drop)",
            if offset < 0 { "-" } else { "+" },
            d.name,
            d.len,
            offset = offset.unsigned_abs(),
        )
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
