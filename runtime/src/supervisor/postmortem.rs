//! What the supervisor prints when the test process dies during a call, or is
//! about to be killed because it took too long.
//!
//! - A crash signal the program does not handle (`crash.rs`) names its
//!   cause (`si_code`) and is followed by the accesses the call recorded so far.
//! - The death of a call's thread (the process exited, `abort`, a fatal
//!   signal) names the test, the call site and how it died.
//! - [`REPORT_SIGNAL`](crate::protocol::REPORT_SIGNAL) sent to the supervisor process (by the harness's
//!   runner when a test times out) makes it stop every thread of the test
//!   process, print where each one is and the call's accesses so far, kill
//!   the test process and exit with [`REPORTED_EXIT_CODE`]. The handler
//!   (`report.rs`) only sets a flag; the supervisor sees it when `waitid`
//!   returns `EINTR`, so it never polls.

use libc::pid_t;

use super::cause::{describe_end, during};
use super::core::Supervisor;
use super::ptrace::{self, WaitEvent};
use super::report::report;
use crate::decode::syscalls;
use crate::protocol::REPORTED_EXIT_CODE;
use crate::trace::alloc::{describe_allocation, live_after};
use crate::trace::event::Trace;

/// At most this many accesses (the last ones) are listed in a report.
const MAX_ACCESS_ROWS: usize = 16;
/// At most this many allocator calls (the last ones), and as many live
/// blocks, are listed in a report.
const MAX_ALLOC_ROWS: usize = 16;

impl Supervisor {
    /// The call's accesses so far, at most [`MAX_ACCESS_ROWS`] (the last
    /// ones), as the table `Trace` displays, then its allocator calls; marks
    /// them shown.
    pub(super) fn accesses_so_far(&mut self) -> String {
        self.read_back_writes_of(None);
        let allocations = self.allocations_so_far();
        let Some(call) = &mut self.call else {
            return String::new();
        };
        call.accesses_shown = true;
        let total = call.accesses.len();
        let not_kept = call.accesses.bound().map_or(0, |b| b.dropped);
        if total == 0
            && not_kept == 0
            && call.unsupported.is_empty()
            && call.unknown_syscalls.is_empty()
        {
            return format!(
                "\n  no access to a traced region was recorded in this call{allocations}"
            );
        }
        let skip = total.saturating_sub(MAX_ACCESS_ROWS);
        let trace = Trace::new(
            call.regions.clone(),
            call.accesses.tail(skip),
            call.unsupported.clone(),
            Vec::new(),
            call.unknown_syscalls.clone(),
            call.stats.clone(),
        );
        // Fewer when the chunks before the last were streamed (`stream`).
        let rows = trace.access_count();
        let shown = if rows < total {
            format!("the last {rows} of {total} ")
        } else {
            String::new()
        };
        let dropped = match call.accesses.bound() {
            Some(b) if b.dropped > 0 => format!(
                " ({} more not kept: the call keeps the first {} and the out-of-bounds ones)",
                b.dropped, b.keep
            ),
            _ => String::new(),
        };
        format!("\n  {shown}accesses recorded so far in this call{dropped}: {trace}{allocations}")
    }

    /// The call's allocator calls so far (the last [`MAX_ALLOC_ROWS`]) and
    /// the blocks it allocated that are still live, for a report.
    fn allocations_so_far(&self) -> String {
        let recorded = &self.heap.recorded;
        if recorded.is_empty() {
            return String::new();
        }
        let skip = recorded.len().saturating_sub(MAX_ALLOC_ROWS);
        let shown = if skip > 0 {
            format!("the last {MAX_ALLOC_ROWS} of {} ", recorded.len())
        } else {
            String::new()
        };
        let mut text = format!("\n  {shown}allocator calls recorded so far in this call:");
        for a in &recorded[skip..] {
            text.push_str(&format!("\n    {}", describe_allocation(a)));
        }
        let live = live_after(recorded);
        let bytes: u64 = live.values().map(|a| a.size).sum();
        text.push_str(&format!(
            "\n  blocks allocated in this call and not freed: {} ({bytes} bytes)",
            live.len()
        ));
        for a in live.values().take(MAX_ALLOC_ROWS) {
            text.push_str(&format!("\n    {}", describe_allocation(a)));
        }
        text
    }

    /// A thread of the call (or the test process) ended while the call was
    /// active: name the test, the call, how it ended and, unless a crash
    /// report already did, the accesses so far.
    pub(super) fn report_end_during_call(&mut self, event: &WaitEvent) {
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
        let accesses = if call.accesses_shown {
            String::new()
        } else {
            self.accesses_so_far()
        };
        report(format_args!("{head}{accesses}"));
    }

    /// Answers [`REPORT_SIGNAL`](crate::protocol::REPORT_SIGNAL): stops every thread of the test process,
    /// prints where each one is (symbol+offset, the instruction, the system
    /// call it is in), the call and its accesses so far, kills the test
    /// process and exits with [`REPORTED_EXIT_CODE`].
    pub(super) fn report_where_and_kill(&mut self) -> ! {
        let tids: Vec<pid_t> = std::fs::read_dir(format!("/proc/{}/task", self.child))
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut waiting = Vec::new();
        for &tid in &tids {
            if !self.threads.get(&tid).is_some_and(|t| t.held) && self.pt.interrupt(tid).is_ok() {
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
        let code = self.code_at(regs.rip);
        // orig_rax is the system call number while the thread is in one, and
        // -1 otherwise.
        let in_syscall = match i64::try_from(regs.orig_rax) {
            Ok(nr) if nr >= 0 => match syscalls::name(regs.orig_rax) {
                Some(name) => format!(", in system call {name} ({nr})"),
                None => format!(", in system call {nr}"),
            },
            _ => String::new(),
        };
        let callers: String = self
            .callers(&regs)
            .into_iter()
            .map(|ret| format!("\n      called from {}", self.place_of(ret)))
            .collect();
        format!("thread {tid}{role} at {code}{in_syscall}{callers}")
    }
}
