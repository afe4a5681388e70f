//! Several threads in one call: each gets its own stub slot, and while one
//! runs an instruction with protected pages open, the call's other threads
//! are stopped, so that none of them reads or writes those pages unseen.
//!
//! A call's threads are the calling thread, the threads its threads create
//! during the call (clone events), and any thread that faults on a protected
//! page (a new thread's first fault can come before its parent's clone
//! event). With one thread nothing is stopped and the stub returns by itself
//! (one stop per fault); with more, each fault costs an interrupt, a stop and
//! a resume per other thread, and the stub ends in a trap so the supervisor
//! knows when the pages are closed again.

use libc::pid_t;

use super::core::Supervisor;
use super::ptrace::{self, PTRACE_EVENT_STOP, WaitEvent};
use super::report::report;
use super::thread::Stopped;
use crate::layout::{THREAD_SLOTS, slot_base};

impl Supervisor {
    /// The base address of stub slot `slot`.
    pub(super) fn slot_base(&self, slot: usize) -> u64 {
        slot_base(self.stub_base, slot)
    }

    /// `tid`'s stub slot, assigned at its first need and freed when the thread
    /// exits; `None` when every slot is taken (the thread then gets the
    /// single-step path).
    pub(super) fn slot_of(&mut self, tid: pid_t) -> Option<usize> {
        if let Some(s) = self.threads.get(&tid).and_then(|t| t.slot) {
            return Some(s);
        }
        let free =
            (0..THREAD_SLOTS).find(|s| !self.threads.values().any(|t| t.slot == Some(*s)))?;
        let thread = self.thread_mut(tid);
        thread.slot = Some(free);
        // Whatever the slot held belongs to a thread that has exited.
        thread.last_stub.clear();
        Some(free)
    }

    /// A thread created a thread: a thread of the test process (of the call
    /// too, if its creator is one), or of a forked process.
    pub(super) fn on_clone(&mut self, tid: pid_t) {
        if let Ok(new) = self.pt.geteventmsg(tid) {
            let new = new as pid_t;
            if self.births.live.contains(&tid) {
                self.births.live.insert(new);
                if let Some(call) = &mut self.call
                    && call.threads.contains(&tid)
                {
                    call.threads.insert(new);
                }
            } else {
                self.foreign.insert(new);
            }
            self.announce(new);
        }
        self.resume(tid, 0);
    }

    /// A clone or fork event named `new`: resumes it if its first stop came
    /// first.
    pub(super) fn announce(&mut self, new: pid_t) {
        if self.births.unannounced.remove(&new) {
            if let Some(thread) = self.threads.get_mut(&new) {
                thread.held = false;
            }
            self.resume(new, 0);
        } else {
            self.births.announced.insert(new);
        }
    }

    /// A `PTRACE_EVENT_STOP` of `tid` that is not a group-stop: if it is a
    /// new thread's first stop, resumes it, or holds it until the event that
    /// names it comes, and returns true. False for another thread's stray
    /// stop (a `PTRACE_INTERRUPT` whose stop nobody waited for).
    pub(super) fn on_first_stop(&mut self, tid: pid_t) -> bool {
        if self.births.announced.remove(&tid) {
            self.resume(tid, 0);
            return true;
        }
        if self.births.live.contains(&tid) || self.foreign.contains(&tid) {
            return false;
        }
        // Stopped until `announce`: nothing may wait for another stop of it.
        self.births.unannounced.insert(tid);
        self.thread_mut(tid).held = true;
        true
    }

    /// `tid` exited.
    pub(super) fn thread_gone(&mut self, tid: pid_t) {
        self.births.live.remove(&tid);
        self.births.announced.remove(&tid);
        self.births.unannounced.remove(&tid);
    }

    /// Stops every other thread of the call; `None` if there is none.
    pub(super) fn stop_other_threads(&mut self, tid: pid_t) -> Option<Stopped> {
        let others: Vec<pid_t> = self
            .call
            .as_ref()?
            .threads
            .iter()
            .copied()
            .filter(|&t| t != tid && !self.threads.get(&t).is_some_and(|th| th.held))
            .collect();
        if others.is_empty() {
            return None;
        }
        let mut stopped = Stopped::new();
        for other in others {
            if self.pt.interrupt(other).is_err() {
                self.forget_thread(other);
                continue;
            }
            let event = ptrace::wait_tid(other);
            if matches!(
                event,
                Ok(WaitEvent::SignalStop { .. } | WaitEvent::EventStop { .. })
            ) {
                // What its translated code logged comes before this thread's.
                self.drain_log_outside_cache(other);
            }
            match event {
                Ok(WaitEvent::EventStop { event, .. }) if event == PTRACE_EVENT_STOP => {
                    stopped.push((other, None));
                }
                Ok(e @ (WaitEvent::Exited { .. } | WaitEvent::Killed { .. })) => {
                    self.forget_thread(other);
                    // The main loop would have seen it: let it see it now.
                    stopped.push((other, Some(e)));
                }
                Ok(e) => {
                    // Stopped for a reason of its own, which is now consumed:
                    // it stays stopped until `release_threads` handles it.
                    self.thread_mut(other).held = true;
                    stopped.push((other, Some(e)));
                }
                Err(e) => {
                    report(format_args!("cannot stop thread {other}: {e}"));
                    self.forget_thread(other);
                }
            }
        }
        if let Some(call) = &mut self.call {
            call.stats.threads_stopped += stopped.len() as u64;
        }
        Some(stopped)
    }

    /// Resumes the threads `stop_other_threads` stopped; those that had
    /// stopped for a reason of their own have it handled now.
    pub(super) fn release_threads(&mut self, stopped: Stopped) {
        // Resume the interrupted threads first: handling another thread's event
        // may stop them again, and an interrupt only stops a running thread.
        let mut events = Vec::new();
        for (tid, event) in stopped {
            match event {
                None => self.resume(tid, 0),
                Some(e) => events.push((tid, e)),
            }
        }
        for (tid, e) in events {
            if let Some(thread) = self.threads.get_mut(&tid) {
                thread.held = false;
            }
            self.dispatch(e);
        }
    }

    fn forget_thread(&mut self, tid: pid_t) {
        if let Some(call) = &mut self.call {
            call.threads.remove(&tid);
        }
    }
}
