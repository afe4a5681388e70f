//! The supervisor's core: its state, its event loop, the requests of the
//! test process (start and end of a call) and the signals it passes on.
//! The other files of `supervisor/` add the handling of faults, system
//! calls, threads and signals as methods on [`Supervisor`]; they depend on
//! this file, not the reverse.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;

use libc::{c_int, pid_t};

use super::cache::state::CodeCache;
use super::call::{Call, Ended, Watching};
use super::cause::{is_crash, is_ignored};
use super::heap::Heap;
use super::ptrace::{self, PTRACE_EVENT_STOP, Ptrace, WaitEvent};
use super::report::{die_of, install_report_handler, report, report_requested, wait_untraced};
use super::thread::{Births, Thread};
use crate::layout::{in_reservation, is_in_stub_code};
use crate::protocol::{self, Handshake, Reply, Request};
use crate::trace::event::{Dropped, MAX_RECORDED_BYTES, Note, Trace};
use crate::trace::store::{Records, Streamed};

/// `SEGV_ACCERR` (siginfo.h): the mapping forbids the access.
pub(super) const SEGV_ACCERR: c_int = 2;
/// `SI_TKILL` (siginfo.h): the signal was sent by tkill/tgkill.
const SI_TKILL: c_int = -6;

/// The supervisor's state. Its fields are private to `supervisor/`; each
/// says which file of it owns it.
pub(super) struct Supervisor {
    /// The test process (its main thread's tid is its pid).
    pub(super) child: pid_t,
    /// The test process's end of the request socket.
    sock: UnixStream,
    /// The test process's memory (`/proc/PID/mem`), which reads and writes
    /// `PROT_NONE` private pages.
    pub(super) mem: File,
    /// The stub area's address (see `layout`), the same in both processes.
    pub(super) stub_base: u64,
    /// The buffer reservation's start, if the launch made one.
    reservation: Option<u64>,
    pub(super) pt: Ptrace,
    /// Every thread the supervisor knows something about (see `thread`).
    pub(super) threads: HashMap<pid_t, Thread>,
    /// The call in progress.
    pub(super) call: Option<Call>,
    /// Processes forked by the test process (and their threads), traced so
    /// their copies of protected pages can be opened for them (`forks`).
    pub(super) foreign: HashSet<pid_t>,
    /// Those of them created by vfork: they share our memory until exec.
    pub(super) vforked: HashSet<pid_t>,
    /// Futex words in buffers and their shadow words (`futex`).
    pub(super) shadows: HashMap<u64, u64>,
    /// The call that just ended, if threads it created still run (`late`);
    /// taken by `watch_late_threads`.
    pub(super) ended: Option<Ended>,
    /// A call whose late threads are being watched (`late`).
    pub(super) watching: Option<Watching>,
    /// The process's handlers of SIGSEGV and SIGTRAP, as `struct sigaction`
    /// (`sigstate`).
    pub(super) sig_actions: HashMap<i32, [u8; 32]>,
    /// Whether `sig_actions` was read from the process yet.
    pub(super) sig_actions_known: bool,
    /// The parts of a request read so far (see `protocol`).
    request_parts: protocol::RequestParts,
    /// Buffers the test dropped, in quarantine as of the last call's start:
    /// a crash report names the one a fault address lies in (`crash`).
    pub(super) dropped: Vec<Dropped>,
    /// The allocator's entry points and breakpoints (`allocator`).
    pub(super) heap: Heap,
    /// Translated code and what it logs (`cache`).
    pub(super) cache: CodeCache,
    /// The test process's threads, from the clone events (`threads`).
    pub(super) births: Births,
    /// The memfd both processes share, where a call's finished chunks of
    /// records go during the call (`stream`); `None` if there is none.
    pub(super) memfd: Option<File>,
}

/// `PTRACE_O_*` options for the seize.
const SEIZE_OPTIONS: c_int = libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACESYSGOOD
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC;

/// Seizes `child` and supervises it until it exits; never returns.
pub(crate) fn supervise(
    child: pid_t,
    mut sock: UnixStream,
    stub_base: u64,
    reservation: Option<u64>,
    memfd: Option<File>,
) -> ! {
    // The terminal's Ctrl-C and Ctrl-\ go to the whole process group: let the
    // child take them and mirror its death. A reply to a dead child must not
    // kill the supervisor, nor a write to the memfd past `RLIMIT_FSIZE` (it
    // fails with EFBIG instead: see `stream`).
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE, libc::SIGXFSZ] {
        // SAFETY: setting a standard disposition.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut pt = Ptrace::default();
    let seized = pt.seize(child, SEIZE_OPTIONS).or_else(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            // Under a tracer that cannot set EXITKILL (rr): retry without it.
            pt.seize(child, SEIZE_OPTIONS & !libc::PTRACE_O_EXITKILL)
        } else {
            Err(e)
        }
    });
    let mem = seized.and_then(|()| {
        File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{child}/mem"))
    });
    let mem = match mem {
        Ok(mem) => mem,
        Err(e) => {
            let reason = format!(
                "ptrace(PTRACE_SEIZE) of the test process failed: {e} (is ptrace allowed here? \
                 check /proc/sys/kernel/yama/ptrace_scope, seccomp profiles, and whether a \
                 debugger or strace is already attached)"
            );
            let _ = protocol::write_frame(&mut sock, &Handshake::Untraced(reason));
            drop(sock);
            wait_untraced(child)
        }
    };
    install_report_handler();
    let cpu = pin_to_current_cpu();
    if let Err(e) = protocol::write_frame(&mut sock, &Handshake::Traced { cpu }) {
        report(format_args!("cannot reach the test process: {e}"));
    }
    let sup = Supervisor {
        child,
        sock,
        mem,
        stub_base,
        reservation,
        pt,
        threads: HashMap::new(),
        call: None,
        foreign: HashSet::new(),
        vforked: HashSet::new(),
        shadows: HashMap::new(),
        ended: None,
        watching: None,
        sig_actions: HashMap::new(),
        sig_actions_known: false,
        dropped: Vec::new(),
        heap: Heap::default(),
        cache: CodeCache::from_env(),
        births: Births {
            live: HashSet::from([child]),
            ..Births::default()
        },
        request_parts: protocol::RequestParts::default(),
        memfd,
    };
    sup.run()
}

/// Pins the supervisor to the CPU it runs on, for good: it sleeps in
/// `waitid` between stops, and calling threads move to this CPU for a call,
/// so every stop is a same-CPU wake-up.
fn pin_to_current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE: it came from sched_getcpu.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of the size given.
    let ok = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } == 0;
    ok.then_some(cpu)
}

/// True unless thread `tid` of process `pid` has exited (a zombie waiting for
/// the tracer, or gone).
fn thread_is_running(pid: pid_t, tid: pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rfind(')')?;
            s.get(after + 2..after + 3)
                .map(|state| !matches!(state, "Z" | "X"))
        })
        .unwrap_or(false)
}

impl Supervisor {
    fn run(mut self) -> ! {
        loop {
            if report_requested() {
                self.report_where_and_kill();
            }
            let event = match ptrace::wait_any() {
                Ok(event) => event,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    report(format_args!("waitid failed: {e}"));
                    std::process::exit(101);
                }
            };
            self.dispatch(event);
        }
    }

    /// Handles one stop or exit.
    pub(super) fn dispatch(&mut self, event: WaitEvent) {
        {
            if self.hold_while_in_cache(event) {
                return;
            }
            // What the thread's translated code logged comes first (a
            // thread that may be inside the cache is drained where its stop
            // is handled: see `drain_log`).
            match event {
                WaitEvent::Exited { tid, .. } | WaitEvent::Killed { tid, .. }
                    if tid == self.child => {}
                WaitEvent::Other => {}
                _ => {
                    if let Some(tid) = event.tid() {
                        self.drain_log_outside_cache(tid);
                    }
                }
            }
            if let Some(call) = &mut self.call
                && event.tid() == Some(call.tid)
            {
                call.stats.stops += 1;
            }
            match event {
                WaitEvent::Exited { tid, code } if tid == self.child => {
                    self.report_end_during_call(&event);
                    std::process::exit(code)
                }
                WaitEvent::Killed { tid, signal } if tid == self.child => {
                    self.report_end_during_call(&event);
                    die_of(signal)
                }
                WaitEvent::Exited { tid, .. } | WaitEvent::Killed { tid, .. } => {
                    // Its last stores are done: read them before forgetting it.
                    self.read_back_writes_of(Some(tid));
                    self.threads.remove(&tid);
                    self.thread_gone(tid);
                    self.late_thread_exited(tid);
                    if let Some(call) = &mut self.call {
                        call.threads.remove(&tid);
                    }
                    if self.call.as_ref().is_some_and(|c| c.tid == tid) {
                        self.allocator_caller_gone();
                        self.report_end_during_call(&event);
                        self.end_call_state();
                    }
                }
                WaitEvent::SignalStop { tid, signal } => self.on_signal(tid, signal),
                WaitEvent::EventStop { tid, signal, event } => {
                    let is_group_stop = event == PTRACE_EVENT_STOP
                        && matches!(
                            signal,
                            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                        );
                    if is_group_stop {
                        self.ok(tid, |pt| pt.listen(tid));
                    } else if event == PTRACE_EVENT_STOP && self.on_first_stop(tid) {
                        // A new thread: resumed, or held until its parent's
                        // clone event names it.
                    } else if event == libc::PTRACE_EVENT_SECCOMP {
                        self.on_seccomp(tid);
                    } else if event == libc::PTRACE_EVENT_CLONE {
                        self.on_clone(tid);
                    } else if event == libc::PTRACE_EVENT_FORK {
                        self.on_fork(tid, false);
                    } else if event == libc::PTRACE_EVENT_VFORK {
                        self.on_fork(tid, true);
                    } else if event == libc::PTRACE_EVENT_EXEC && self.is_foreign(tid) {
                        // A forked process runs another program: let it go.
                        self.vforked.remove(&tid);
                        self.ok(tid, |pt| pt.detach(tid));
                    } else {
                        self.resume(tid, 0);
                    }
                }
                WaitEvent::SyscallStop { tid } => {
                    if !self.on_moved_syscall_stop(tid) {
                        self.resume(tid, 0);
                    }
                }
                WaitEvent::Other => {}
            }
            // Whatever the stop recorded is read back or drained by now.
            self.stream_finished_chunks();
        }
    }

    /// True if `addr` lies in the address range reserved for buffers.
    pub(super) fn in_buffer_range(&self, addr: u64) -> bool {
        self.reservation
            .is_some_and(|start| in_reservation(start, addr))
    }

    /// Runs a ptrace operation; a thread that died meanwhile (ESRCH) is not
    /// an error (its exit is reported by waitid), anything else is reported.
    pub(super) fn ok(&mut self, tid: pid_t, op: impl FnOnce(&mut Ptrace) -> io::Result<()>) {
        if let Err(e) = op(&mut self.pt)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            report(format_args!("ptrace on thread {tid} failed: {e}"));
        }
    }

    pub(super) fn resume(&mut self, tid: pid_t, signal: c_int) {
        self.ok(tid, |pt| pt.cont(tid, signal));
    }

    fn on_signal(&mut self, tid: pid_t, signal: c_int) {
        if self.on_cache_stop(tid, signal) {
            return;
        }
        // The thread's earlier stub store is done at a stop it makes itself
        // (a fault, a doorbell); an asynchronous signal may stop it inside
        // the stub, before the store: its pending writes wait then.
        match signal {
            libc::SIGSTOP if self.is_doorbell(tid) => {
                self.read_back_writes_of(Some(tid));
                self.on_request(tid);
            }
            libc::SIGSEGV if self.finish_watching_if_done(tid) => self.resume(tid, 0),
            libc::SIGSEGV => {
                self.read_back_writes_of(Some(tid));
                self.on_segv(tid);
            }
            libc::SIGTRAP if self.finish_syscall(tid) => {}
            libc::SIGTRAP if self.on_alloc_trap(tid) => {}
            libc::SIGTRAP if is_in_stub_code(self.stub_base, self.rip(tid)) => {
                report(format_args!(
                    "mprotect inside the stub failed for thread {tid}; delivering SIGSEGV"
                ));
                self.resume(tid, libc::SIGSEGV);
            }
            _ => {
                if let Ok(info) = self.pt.getsiginfo(tid)
                    && is_crash(signal, &info, self.child)
                    && !is_ignored(self.child, signal)
                {
                    self.report_crash(tid, signal, &info);
                }
                self.resume(tid, signal);
            }
        }
    }

    fn rip(&mut self, tid: pid_t) -> u64 {
        self.pt.getregs(tid).map_or(0, |r| r.rip)
    }

    /// A doorbell is a tgkill SIGSTOP from the test process itself, with a
    /// request waiting on the socket. Anything else is the program's SIGSTOP.
    fn is_doorbell(&mut self, tid: pid_t) -> bool {
        let Ok(info) = self.pt.getsiginfo(tid) else {
            return false;
        };
        // SAFETY: for a SI_TKILL siginfo, si_pid is the valid union member.
        if info.si_code != SI_TKILL || unsafe { info.si_pid() } != self.child {
            return false;
        }
        let mut byte = 0u8;
        // SAFETY: peeking one byte into a valid buffer, without blocking.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 1
    }

    fn on_request(&mut self, tid: pid_t) {
        let request: Request = match self.request_parts.read(&mut self.sock) {
            Ok(Some(r)) => r,
            Ok(None) => {
                // More parts follow, each with its doorbell.
                self.resume(tid, 0);
                return;
            }
            Err(e) => {
                report(format_args!("cannot read a request from thread {tid}: {e}"));
                self.resume(tid, 0);
                return;
            }
        };
        let reply = match request {
            Request::StartCall(start) => {
                if let Some(active) = &self.call {
                    Reply::Refused(format!(
                        "a call is already active on thread {} (test `{}`, {})",
                        active.tid, active.test, active.call
                    ))
                } else if start.tid != tid {
                    Reply::Refused(format!(
                        "the request names thread {} but thread {tid} rang",
                        start.tid
                    ))
                } else {
                    self.stop_watching(tid);
                    let arm = self.begin_call_state(start);
                    Reply::Started { arm }
                }
            }
            Request::EndCall { restore } => match self.call.as_ref() {
                Some(c) if c.tid == tid => {
                    let (trace, streamed) = self.end_call_state();
                    self.watch_late_threads(tid, restore);
                    Reply::Trace {
                        trace: Box::new(trace),
                        streamed,
                    }
                }
                _ => Reply::Refused("no traced call is active on this thread".into()),
            },
        };
        self.resume(tid, 0);
        if let Err(e) = protocol::write_frame(&mut self.sock, &reply) {
            report(format_args!("cannot answer thread {tid}: {e}"));
        }
    }

    /// Registers the call; returns the allocator breakpoints the test
    /// process is to put in place (see `Reply::Started`).
    fn begin_call_state(&mut self, start: protocol::StartCall) -> u16 {
        self.note_signal_state(start.tid);
        self.dropped = start.dropped;
        self.call = Some(Call::new(
            start.tid,
            start.test,
            start.call,
            start.regions,
            self.pt.requests,
        ));
        if let Some(call) = &mut self.call {
            call.code_cache = start.code_cache;
            call.cache_budget = start.cache_budget;
            call.streams = self.memfd.is_some();
            if let Some(keep) = start.keep_accesses {
                call.accesses = Records::bounded(keep, call.regions.iter().map(|r| r.len));
            }
            call.watch(start.declared);
        }
        self.arm_allocator(&start.allocator, start.native_blocks, start.arms_allocator)
    }

    /// Ends the call: its trace, without the chunks streamed during the
    /// call, and where those lie in the memfd.
    fn end_call_state(&mut self) -> (Trace, Streamed) {
        // However the call ends, the allocator gets its bytes back.
        self.drain_all_logs();
        self.report_cache_entries();
        let allocations = self.disarm_allocator();
        self.read_back_writes_of(None);
        let Some(mut call) = self.call.take() else {
            return (Trace::default(), Streamed::default());
        };
        let late: BTreeSet<pid_t> = call
            .threads
            .iter()
            .copied()
            .filter(|&t| t != call.tid && thread_is_running(self.child, t))
            .collect();
        for &tid in &late {
            call.notes.push(Note {
                ip: 0,
                insn: String::new(),
                region: None,
                offset: 0,
                text: format!(
                    "thread {tid}, created during the call, is still running: its later \
                     accesses to this call's regions are reported on stderr as late accesses"
                ),
                tid,
            });
        }
        if !late.is_empty() {
            self.ended = Some(Ended {
                tid: call.tid,
                test: call.test.clone(),
                call: call.call.clone(),
                regions: call.regions.clone(),
                protected: call.protected.clone(),
                late,
            });
        }
        call.stats.ptrace_requests = self.pt.requests - call.requests_at_start;
        call.accesses.shrink_to_fit();
        let mut trace = Trace::new(
            call.regions,
            call.accesses,
            call.unsupported,
            call.notes,
            call.unknown_syscalls,
            call.stats,
        );
        trace.set_allocations(allocations);
        (trace, call.streamed)
    }

    /// Reads the bytes of the pending writes of `tid` (of every thread for
    /// `None`): the instruction has run and no other instruction can have
    /// touched those protected bytes since.
    pub(super) fn read_back_writes_of(&mut self, tid: Option<pid_t>) {
        let Some(call) = &mut self.call else { return };
        let mem = &self.mem;
        let mut read_back = |thread: &mut Thread| {
            let mut bytes = [0u8; MAX_RECORDED_BYTES];
            for p in thread.pending.drain(..) {
                let len = p.len.min(MAX_RECORDED_BYTES);
                let n = mem.read_at(&mut bytes[..len], p.addr).unwrap_or(0);
                call.accesses.set_bytes(p.index, &bytes[..n]);
            }
        };
        match tid {
            Some(tid) => {
                if let Some(thread) = self.threads.get_mut(&tid) {
                    read_back(thread);
                }
            }
            None => self.threads.values_mut().for_each(read_back),
        }
    }

    /// What the supervisor knows about `tid`, created empty at first need.
    pub(super) fn thread_mut(&mut self, tid: pid_t) -> &mut Thread {
        self.threads.entry(tid).or_default()
    }

    fn on_segv(&mut self, tid: pid_t) {
        let info = match self.pt.getsiginfo(tid) {
            Ok(info) => info,
            Err(_) => return self.resume(tid, libc::SIGSEGV),
        };
        // SAFETY: for SIGSEGV, si_addr is the valid union member (for a
        // user-sent one it aliases si_pid, and si_code <= 0 rules it out).
        let addr = unsafe { info.si_addr() } as u64;
        let ours = info.si_code == SEGV_ACCERR
            && self.call.as_ref().is_some_and(|c| c.is_protected(addr, 1));
        if !ours && info.si_code == SEGV_ACCERR && self.is_watched(addr) {
            self.on_late_fault(tid, addr);
        } else if ours && self.is_foreign(tid) && !self.vforked.contains(&tid) {
            self.open_pages_in_child(tid);
        } else if ours {
            if let Some(call) = &mut self.call {
                call.threads.insert(tid);
            }
            self.restore_signal_state(tid);
            self.on_fault(tid, addr);
        } else {
            self.report_crash(tid, libc::SIGSEGV, &info);
            self.resume(tid, libc::SIGSEGV);
        }
    }
}
