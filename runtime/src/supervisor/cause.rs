//! Naming what happened to the test process: signal names, the cause of a
//! delivered signal from its siginfo, how a thread ended, which call was
//! running. Plain functions, used by the crash and post-mortem reports.

use libc::{c_int, pid_t, siginfo_t};

use super::call::Call;
use super::ptrace::WaitEvent;

/// `SIGABRT`-style names for the signals a crash report can name.
pub(super) fn signal_name(signal: c_int) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        other => return format!("signal {other}"),
    };
    name.to_owned()
}

/// True for the signals whose delivery (uncaught) is worth a crash report:
/// the synchronous ones, and any signal the process sent itself (`abort`,
/// `raise`).
pub(super) fn is_crash(signal: c_int, info: &siginfo_t, child: pid_t) -> bool {
    let synchronous = matches!(
        signal,
        libc::SIGSEGV
            | libc::SIGBUS
            | libc::SIGILL
            | libc::SIGFPE
            | libc::SIGABRT
            | libc::SIGPIPE
            | libc::SIGSYS
            | libc::SIGXCPU
            | libc::SIGXFSZ
    );
    let stop_or_harmless = matches!(
        signal,
        libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
            | libc::SIGCONT
            | libc::SIGCHLD
            | libc::SIGURG
            | libc::SIGWINCH
    );
    synchronous || (!stop_or_harmless && sent_by(info) == Some(child))
}

/// True if the process ignores `signal` (`SigIgn` in /proc/PID/status): a
/// traced process still stops for an ignored signal, which then does nothing.
pub(super) fn is_ignored(pid: pid_t, signal: c_int) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (signal - 1)) != 0)
}

/// The sender of a signal sent by `kill`/`tgkill`/`sigqueue`, if it was.
fn sent_by(info: &siginfo_t) -> Option<pid_t> {
    matches!(info.si_code, libc::SI_USER | SI_TKILL | libc::SI_QUEUE)
        // SAFETY: for these codes si_pid is the valid union member.
        .then(|| unsafe { info.si_pid() })
}

/// `SI_TKILL` (siginfo.h): sent by tkill/tgkill (`abort`, `raise`).
const SI_TKILL: c_int = -6;

/// ` (SEGV_MAPERR: nothing is mapped there) at address 0x10`: the cause of a
/// delivered signal from its siginfo, as much as is known.
pub(super) fn describe_cause(signal: c_int, info: &siginfo_t) -> String {
    if signal == libc::SIGPIPE && info.si_code == libc::SI_USER {
        // The kernel sends SIGPIPE for a write with no reader as if by kill().
        return " (a write to a pipe or socket that has no reader)".to_owned();
    }
    if let Some(pid) = sent_by(info) {
        let how = match info.si_code {
            libc::SI_USER => "SI_USER: sent by kill()",
            libc::SI_QUEUE => "SI_QUEUE: sent by sigqueue()",
            _ => "SI_TKILL: sent by tgkill(), e.g. abort() or raise()",
        };
        return format!(" ({how} from process {pid})");
    }
    if info.si_code == libc::SI_KERNEL {
        return " (SI_KERNEL: sent by the kernel)".to_owned();
    }
    // Codes from siginfo.h, per signal.
    let code = match (signal, info.si_code) {
        (libc::SIGSEGV, 1) => "SEGV_MAPERR: nothing is mapped there",
        (libc::SIGSEGV, 2) => "SEGV_ACCERR: the page forbids this access",
        (libc::SIGBUS, 1) => "BUS_ADRALN: misaligned address",
        (libc::SIGBUS, 2) => {
            "BUS_ADRERR: no such physical address, e.g. past the end of a mapped file"
        }
        (libc::SIGBUS, 3) => "BUS_OBJERR: hardware error",
        (libc::SIGILL, 1) => "ILL_ILLOPC: illegal opcode",
        (libc::SIGILL, 2) => "ILL_ILLOPN: illegal operand",
        (libc::SIGILL, 5) => "ILL_PRVOPC: privileged opcode",
        (libc::SIGFPE, 1) => "FPE_INTDIV: integer divide by zero",
        (libc::SIGFPE, 2) => "FPE_INTOVF: integer overflow",
        (libc::SIGFPE, 3) => "FPE_FLTDIV: floating-point divide by zero",
        (libc::SIGPIPE | libc::SIGABRT, _) => return String::new(),
        (_, code) => return format!(" (si_code {code})"),
    };
    if matches!(
        signal,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
    ) {
        // SAFETY: for these signals with a kernel si_code, si_addr is the
        // valid union member.
        let addr = unsafe { info.si_addr() } as u64;
        format!(" ({code}) at address {addr:#x}")
    } else {
        format!(" ({code})")
    }
}

/// How a thread ended, from its wait event.
pub(super) fn describe_end(event: &WaitEvent) -> String {
    match event {
        WaitEvent::Exited { code, .. } => {
            format!("exited with status {code} (exit() or the end of the process) during the call")
        }
        WaitEvent::Killed { signal, .. } => {
            format!("was killed by {} during the call", signal_name(*signal))
        }
        _ => "ended during the call".to_owned(),
    }
}

/// `test `x`, traced call at file:line`, or `outside any traced call`.
pub(super) fn during(call: Option<&Call>) -> String {
    match call {
        Some(c) => format!("test `{}`, traced call at {}", c.test, c.call),
        None => "outside any traced call".to_owned(),
    }
}
