//! Threads that outlive their call.
//!
//! A thread created during a call may still run when the call returns, and
//! touch the call's buffers afterwards. When the call ends with such threads,
//! the supervisor protects the call's pages again (through the calling
//! thread, stopped at its doorbell) and keeps watching: a fault there by one
//! of those threads is executed and reported on stderr as a late access,
//! naming the test, the call, the thread, the region and offset and the
//! instruction; a fault by any other thread (the test reading its buffer) is
//! just executed. Watching ends, and the protections the client restored at
//! the end of the call are applied again, when the last late thread exits
//! (at the next stop of a thread of the test process) or when the next call
//! starts.

use libc::{pid_t, user_regs_struct};

use super::call::{Call, Watching};
use super::core::Supervisor;
use super::report::report;
use crate::trace::event::AccessKind;
use crate::trace::symbols::symbolize_in;

impl Supervisor {
    /// At the end of a call (thread `tid` at its doorbell): if threads the
    /// call created still run, protect its pages again and watch them.
    pub(super) fn watch_late_threads(&mut self, tid: pid_t, restore: Vec<(u64, u64, i32)>) {
        let Some(ended) = self.ended.take() else {
            return;
        };
        let spans: Vec<(u64, u64, i32)> = ended
            .protected
            .iter()
            .map(|&(s, e)| (s, e - s, libc::PROT_NONE))
            .collect();
        if let Err(e) = self.apply_protections(tid, &spans) {
            report(format_args!(
                "cannot keep watching the threads of test `{}` that outlive its call at {}: {e}",
                ended.test, ended.call
            ));
            return;
        }
        let mut call = Call::new(ended.tid, ended.test, ended.call, ended.regions, 0);
        call.protected = ended.protected;
        call.threads = ended.late.clone();
        self.watching = Some(Watching {
            call,
            late: ended.late,
            restore,
        });
    }

    /// Runs `mprotect(start, len, prot)` for each entry in stopped thread
    /// `tid`, then puts its registers back.
    fn apply_protections(&mut self, tid: pid_t, list: &[(u64, u64, i32)]) -> std::io::Result<()> {
        let regs: user_regs_struct = self.pt.getregs(tid)?;
        let mut deferred = Vec::new();
        for &(start, len, prot) in list {
            self.inject_mprotect(tid, &regs, (start, len), prot, &mut deferred)?;
        }
        self.pt.setregs(tid, &regs)?;
        if !deferred.is_empty() {
            report(format_args!(
                "signals {deferred:?} of thread {tid} arrived while its pages were re-protected \
                 and were not delivered"
            ));
        }
        Ok(())
    }

    /// True if `addr` is a page of a call whose late threads are watched.
    pub(super) fn is_watched(&self, addr: u64) -> bool {
        self.call.is_none()
            && self
                .watching
                .as_ref()
                .is_some_and(|w| w.call.is_protected(addr, 1))
    }

    /// A fault on a watched page: execute it; report it if a late thread
    /// made it.
    pub(super) fn on_late_fault(&mut self, tid: pid_t, addr: u64) {
        let Some(mut w) = self.watching.take() else {
            return self.resume(tid, libc::SIGSEGV);
        };
        let before = w.call.accesses.len();
        self.call = Some(w.call);
        self.on_fault(tid, addr);
        let Some(mut call) = self.call.take() else {
            return;
        };
        if w.late.contains(&tid) {
            for a in call.accesses.iter_from(before) {
                let name = a
                    .region
                    .and_then(|i| call.regions.get(i))
                    .map_or("?", |r| r.name.as_str());
                let at = symbolize_in(self.child, a.site.ip)
                    .unwrap_or_else(|| format!("{:#x}", a.site.ip));
                let kind = match a.kind {
                    AccessKind::Read => "read",
                    AccessKind::Write => "write",
                    AccessKind::MaybeWrite => "maybe-write",
                };
                report(format_args!(
                    "LATE ACCESS after test `{}`'s traced call at {} returned: thread {tid} {kind} \
                     {name}[{}..{}] ({} bytes) at {at} `{}`",
                    call.test,
                    call.call,
                    a.offset,
                    a.offset + a.len as isize,
                    a.len,
                    a.site.insn
                ));
            }
        }
        // Nothing of this is kept: the trace was returned with the call.
        call.accesses.clear();
        for thread in self.threads.values_mut() {
            thread.pending.clear();
        }
        w.call = call;
        self.watching = Some(w);
    }

    /// A thread exited: it is no longer a late thread.
    pub(super) fn late_thread_exited(&mut self, tid: pid_t) {
        if let Some(w) = &mut self.watching {
            w.late.remove(&tid);
            w.call.threads.remove(&tid);
        }
        if let Some(e) = &mut self.ended {
            e.late.remove(&tid);
        }
    }

    /// At a fault of thread `tid` of the test process: if the watched late
    /// threads have all exited, stop watching (through `tid`) and return
    /// true: the fault was on a page that is open again.
    pub(super) fn finish_watching_if_done(&mut self, tid: pid_t) -> bool {
        if !self.watching.as_ref().is_some_and(|w| w.late.is_empty()) || self.is_foreign(tid) {
            return false;
        }
        self.stop_watching(tid);
        true
    }

    /// Stops watching (a new call starts, or no late thread is left): apply
    /// again what the client restored, through stopped thread `tid`.
    pub(super) fn stop_watching(&mut self, tid: pid_t) {
        let Some(w) = self.watching.take() else {
            return;
        };
        if !w.late.is_empty() {
            report(format_args!(
                "threads {:?} of test `{}` still run, but a new traced call starts: their later \
                 accesses to the buffers of the call at {} are no longer reported",
                w.late, w.call.test, w.call.call
            ));
        }
        if let Err(e) = self.apply_protections(tid, &w.restore) {
            report(format_args!(
                "cannot restore the protections of the call at {}: {e}",
                w.call.call
            ));
        }
    }
}
