//! What the supervisor prints when the test process dies during a call, or is
//! about to be killed because it took too long.
//!
//! - A crash signal the program does not handle (`report_crash`) names its
//!   cause (`si_code`) and is followed by the accesses the call recorded so far.
//! - The death of a call's thread (the process exited, `abort`, a fatal
//!   signal) names the test, the call site and how it died.
//! - [`REPORT_SIGNAL`] sent to the supervisor process (by the harness's
//!   runner when a test times out) makes it stop every thread of the test
//!   process, print where each one is and the call's accesses so far, kill
//!   the test process and exit with [`REPORTED_EXIT_CODE`]. The handler only
//!   sets a flag; the supervisor sees it when `waitid` returns `EINTR` (the
//!   handler is installed without `SA_RESTART`), so it never polls.

use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, pid_t, siginfo_t};

use crate::event::Trace;
use crate::ptrace::{self, WaitEvent};
use crate::supervisor::{Call, Supervisor, report};

/// The signal that asks a supervisor to report where the test process's
/// threads are, then kill it (see the module documentation).
pub const REPORT_SIGNAL: c_int = libc::SIGUSR1;

/// The supervisor's exit code after a [`REPORT_SIGNAL`] report (the code
/// `timeout(1)` uses for "timed out").
pub const REPORTED_EXIT_CODE: i32 = 124;

/// At most this many accesses (the last ones) are listed in a report.
const MAX_ACCESS_ROWS: usize = 16;

/// Set by the [`REPORT_SIGNAL`] handler.
static REPORT_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Set once the current call's accesses were printed in a crash report, so
/// that the report of the thread's death does not print them again.
static ACCESSES_SHOWN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_report_signal(_signal: c_int) {
    REPORT_REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the [`REPORT_SIGNAL`] handler, without `SA_RESTART` so that a
/// `waitid` in progress returns `EINTR`.
pub(crate) fn install_report_handler() {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags); the
    // handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_report_signal as extern "C" fn(c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(REPORT_SIGNAL, &action, std::ptr::null_mut()) != 0 {
            report(format_args!(
                "cannot install the timeout-report handler: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
}

/// True once [`REPORT_SIGNAL`] has arrived.
pub(crate) fn report_requested() -> bool {
    REPORT_REQUESTED.load(Ordering::SeqCst)
}

/// A new call starts: its accesses have not been shown yet.
pub(crate) fn call_started() {
    ACCESSES_SHOWN.store(false, Ordering::Relaxed);
}

/// `SIGABRT`-style names for the signals a crash report can name.
pub(crate) fn signal_name(signal: c_int) -> String {
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
pub(crate) fn is_crash(signal: c_int, info: &siginfo_t, child: pid_t) -> bool {
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
pub(crate) fn is_ignored(pid: pid_t, signal: c_int) -> bool {
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
pub(crate) fn describe_cause(signal: c_int, info: &siginfo_t) -> String {
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
fn describe_end(event: &WaitEvent) -> String {
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
pub(crate) fn during(call: Option<&Call>) -> String {
    match call {
        Some(c) => format!("test `{}`, traced call at {}", c.test, c.call),
        None => "outside any traced call".to_owned(),
    }
}

impl Supervisor {
    /// The call's accesses so far, at most [`MAX_ACCESS_ROWS`] (the last
    /// ones), as the table `Trace` displays; marks them shown.
    pub(crate) fn accesses_so_far(&mut self) -> String {
        self.read_back_writes_of(None);
        let Some(call) = &self.call else {
            return String::new();
        };
        ACCESSES_SHOWN.store(true, Ordering::Relaxed);
        let total = call.accesses.len();
        if total == 0 && call.unsupported.is_empty() && call.unknown_syscalls.is_empty() {
            return "\n  no access to a traced region was recorded in this call".to_owned();
        }
        let skip = total.saturating_sub(MAX_ACCESS_ROWS);
        let trace = Trace::new(
            call.regions.clone(),
            call.accesses[skip..].to_vec(),
            call.unsupported.clone(),
            Vec::new(),
            call.unknown_syscalls.clone(),
            call.stats.clone(),
        );
        let shown = if skip > 0 {
            format!("the last {MAX_ACCESS_ROWS} of {total} ")
        } else {
            String::new()
        };
        format!("\n  {shown}accesses recorded so far in this call: {trace}")
    }

    /// A thread of the call (or the test process) ended while the call was
    /// active: name the test, the call, how it ended and, unless a crash
    /// report already did, the accesses so far.
    pub(crate) fn report_end_during_call(&mut self, event: &WaitEvent) {
        let Some(call) = &self.call else { return };
        let Some(tid) = event.tid() else { return };
        let role = if tid == call.tid {
            "the thread of the traced call"
        } else {
            "a thread of the traced call"
        };
        let head = format!(
            "{}: {role} (tid {tid}) {}",
            during(Some(call)),
            describe_end(event)
        );
        let accesses = if ACCESSES_SHOWN.load(Ordering::Relaxed) {
            String::new()
        } else {
            self.accesses_so_far()
        };
        report(format_args!("{head}{accesses}"));
    }

    /// Answers [`REPORT_SIGNAL`]: stops every thread of the test process,
    /// prints where each one is (symbol+offset, the instruction, the system
    /// call it is in), the call and its accesses so far, kills the test
    /// process and exits with [`REPORTED_EXIT_CODE`].
    pub(crate) fn report_where_and_kill(&mut self) -> ! {
        let tids: Vec<pid_t> = std::fs::read_dir(format!("/proc/{}/task", self.child))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut waiting = Vec::new();
        for &tid in &tids {
            if !self.held.contains(&tid) && self.pt.interrupt(tid).is_ok() {
                waiting.push(tid);
            }
        }
        for &tid in &waiting {
            // The interrupt (or whatever stop came first) stops it; a thread
            // that exits meanwhile reports its exit instead.
            let _ = ptrace::wait_tid(tid);
        }
        let mut lines = vec![format!(
            "the test ran out of time ({}); where its threads are:",
            during(self.call.as_ref())
        )];
        for &tid in &tids {
            lines.push(self.where_is(tid));
        }
        let accesses = self.accesses_so_far();
        report(format_args!("{}{accesses}", lines.join("\n  ")));
        // SAFETY: kill with a valid pid and signal; the test process is our
        // child and not yet reaped, so the pid is still its own.
        unsafe { libc::kill(self.child, libc::SIGKILL) };
        std::process::exit(REPORTED_EXIT_CODE)
    }

    /// `thread 123 (caller of the traced call) at f+0x4: jmp ...`.
    fn where_is(&mut self, tid: pid_t) -> String {
        let role = match &self.call {
            Some(c) if c.tid == tid => " (the thread of the traced call)",
            Some(c) if c.threads.contains(&tid) => " (a thread of the traced call)",
            _ => "",
        };
        let Ok(regs) = self.pt.getregs(tid) else {
            return format!("thread {tid}{role}: not stopped, registers unavailable");
        };
        let mut insn = [0u8; crate::decode::MAX_INSN_LEN];
        let n = std::os::unix::fs::FileExt::read_at(&self.mem, &mut insn, regs.rip).unwrap_or(0);
        let text = if n == 0 {
            "(instruction not readable)".to_owned()
        } else {
            crate::decode::decode(regs.rip, &insn[..n]).text
        };
        let place = crate::symbols::symbolize_in(self.child, regs.rip)
            .unwrap_or_else(|| format!("{:#x}", regs.rip));
        // orig_rax is the system call number while the thread is in one, and
        // -1 otherwise.
        let in_syscall = match i64::try_from(regs.orig_rax) {
            Ok(nr) if nr >= 0 => match crate::syscalls::name(regs.orig_rax) {
                Some(name) => format!(", in system call {name} ({nr})"),
                None => format!(", in system call {nr}"),
            },
            _ => String::new(),
        };
        format!("thread {tid}{role} at {place}: {text}{in_syscall}")
    }
}
