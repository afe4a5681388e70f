//! The supervisor: one thread, blocked in `waitid` until a tracee thread
//! stops. It answers doorbells (see `protocol`), handles faults on protected
//! pages during a call (see `fault`), and passes every other signal on.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use libc::{c_int, pid_t};

use crate::decode::Decoded;
use crate::event::{Access, Note, RegionDesc, Stats, Trace, UnknownSyscall, Unsupported};
use crate::protocol::{self, Handshake, Reply, Request};
use crate::ptrace::{self, PTRACE_EVENT_STOP, Ptrace, WaitEvent};

/// `SEGV_ACCERR` (siginfo.h): the mapping forbids the access.
pub(crate) const SEGV_ACCERR: c_int = 2;
/// `SI_TKILL` (siginfo.h): the signal was sent by tkill/tgkill.
const SI_TKILL: c_int = -6;

/// A traced call in progress.
pub(crate) struct Call {
    pub(crate) tid: pid_t,
    pub(crate) test: String,
    pub(crate) call: String,
    pub(crate) regions: Vec<RegionDesc>,
    /// Protected page ranges `(start, end)`, sorted and merged.
    pub(crate) protected: Vec<(u64, u64)>,
    pub(crate) accesses: Vec<Access>,
    pub(crate) unsupported: Vec<Unsupported>,
    pub(crate) notes: Vec<Note>,
    pub(crate) unknown_syscalls: Vec<UnknownSyscall>,
    /// System calls running in a stub, per thread.
    pub(crate) in_kernel: HashMap<pid_t, crate::kernel::InKernel>,
    /// The threads of the call: the calling thread, the threads it created
    /// during the call, and any thread that touched a protected page.
    pub(crate) threads: std::collections::BTreeSet<pid_t>,
    /// Writes whose bytes are read back at the thread's next stop:
    /// `(index into accesses, address, bytes to read)`.
    pub(crate) pending: Vec<(pid_t, usize, u64, usize)>,
    pub(crate) cache: HashMap<u64, Rc<Decoded>>,
    pub(crate) stats: Stats,
    requests_at_start: u64,
}

impl Call {
    /// A call of thread `tid` on `regions`, protecting their spans.
    pub(crate) fn new(
        tid: pid_t,
        test: String,
        call: String,
        regions: Vec<RegionDesc>,
        requests_at_start: u64,
    ) -> Call {
        Call {
            tid,
            test,
            call,
            protected: crate::client::merged_spans(&regions),
            regions,
            accesses: Vec::new(),
            unsupported: Vec::new(),
            notes: Vec::new(),
            unknown_syscalls: Vec::new(),
            in_kernel: HashMap::new(),
            threads: std::collections::BTreeSet::from([tid]),
            pending: Vec::new(),
            cache: HashMap::new(),
            stats: Stats {
                stops: 1,
                ..Stats::default()
            },
            requests_at_start,
        }
    }

    /// True if `[addr, addr+len)` overlaps a protected page.
    pub(crate) fn is_protected(&self, addr: u64, len: u64) -> bool {
        self.protected
            .iter()
            .any(|&(s, e)| addr < e && addr + len.max(1) > s)
    }
}

pub(crate) struct Supervisor {
    pub(crate) child: pid_t,
    sock: UnixStream,
    pub(crate) mem: File,
    pub(crate) stub_base: u64,
    pub(crate) pt: Ptrace,
    pub(crate) call: Option<Call>,
    /// The stub code last written in each slot, to skip identical rewrites.
    pub(crate) last_stub: Vec<Vec<u8>>,
    /// Each thread's stub slot, assigned at its first need and kept.
    pub(crate) slots: HashMap<pid_t, usize>,
    /// Processes forked by the test process (and their threads), traced so
    /// their copies of protected pages can be opened for them.
    pub(crate) foreign: std::collections::HashSet<pid_t>,
    /// Those of them created by vfork: they share our memory until exec.
    pub(crate) vforked: std::collections::HashSet<pid_t>,
    /// Threads stopped with an event the supervisor consumed (while stopping
    /// the others for an exclusive section) and has not handled yet.
    pub(crate) held: std::collections::HashSet<pid_t>,
    /// Futex words in buffers and their shadow words (see `futex.rs`).
    pub(crate) shadows: HashMap<u64, u64>,
    /// Futex calls moved onto a shadow word, until their exit.
    pub(crate) moved: HashMap<pid_t, crate::futex::Moved>,
    /// The call that just ended, if threads it created still run (see
    /// `late.rs`); taken by `watch_late_threads`.
    pub(crate) ended: Option<crate::late::Ended>,
    /// A call whose late threads are being watched.
    pub(crate) watching: Option<crate::late::Watching>,
    /// Blocked-signal masks of the threads that trace (see `sigstate.rs`).
    pub(crate) thread_masks: HashMap<pid_t, u64>,
    /// The process's handlers of SIGSEGV and SIGTRAP, as `struct sigaction`.
    pub(crate) sig_actions: HashMap<i32, [u8; 32]>,
    /// Whether `sig_actions` was read from the process yet.
    pub(crate) sig_actions_known: bool,
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
pub(crate) fn supervise(child: pid_t, mut sock: UnixStream, stub_base: u64) -> ! {
    // The terminal's Ctrl-C and Ctrl-\ go to the whole process group: let the
    // child take them and mirror its death. A reply to a dead child must not
    // kill the supervisor.
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
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
    crate::postmortem::install_report_handler();
    let cpu = pin_to_current_cpu();
    if let Err(e) = protocol::write_frame(&mut sock, &Handshake::Traced { cpu }) {
        report(format_args!("cannot reach the test process: {e}"));
    }
    let sup = Supervisor {
        child,
        sock,
        mem,
        stub_base,
        pt,
        call: None,
        last_stub: vec![Vec::new(); crate::stub::SLOTS],
        slots: HashMap::new(),
        foreign: std::collections::HashSet::new(),
        vforked: std::collections::HashSet::new(),
        held: std::collections::HashSet::new(),
        shadows: HashMap::new(),
        moved: HashMap::new(),
        ended: None,
        watching: None,
        thread_masks: HashMap::new(),
        sig_actions: HashMap::new(),
        sig_actions_known: false,
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

/// Prints a supervisor message on stderr.
pub(crate) fn report(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "traced-ffi supervisor: {msg}");
}

/// Waits for an untraced child and mirrors its exit.
fn wait_untraced(child: pid_t) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-parameter.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if r == -1 {
            std::process::exit(101);
        }
        if libc::WIFEXITED(status) {
            std::process::exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            die_of(libc::WTERMSIG(status));
        }
    }
}

/// Dies of `sig` as the child did, without dumping the supervisor's core.
fn die_of(sig: c_int) -> ! {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

impl Supervisor {
    fn run(mut self) -> ! {
        loop {
            if crate::postmortem::report_requested() {
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
    pub(crate) fn dispatch(&mut self, event: WaitEvent) {
        {
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
                    self.slots.remove(&tid);
                    self.thread_masks.remove(&tid);
                    self.late_thread_exited(tid);
                    if let Some(call) = &mut self.call {
                        call.threads.remove(&tid);
                    }
                    if self.call.as_ref().is_some_and(|c| c.tid == tid) {
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
        }
    }

    /// The test process forked: the child is traced (so that its copy of the
    /// protected pages can be opened for it) but is not part of any call.
    /// A vfork child (`posix_spawn`, `system`) shares our memory until it
    /// execs: it is traced so that its system calls that our filters stop
    /// (glibc's `posix_spawn` child sets its signal mask) are let through,
    /// instead of failing with `ENOSYS` for lack of a tracer.
    fn on_fork(&mut self, tid: pid_t, vfork: bool) {
        if let Ok(child) = self.pt.geteventmsg(tid) {
            self.foreign.insert(child as pid_t);
            if vfork {
                self.vforked.insert(child as pid_t);
            }
        }
        self.resume(tid, 0);
    }

    /// True if `addr` lies in the address range reserved for buffers.
    pub(crate) fn in_buffer_range(&self, addr: u64) -> bool {
        crate::arena::in_reservation(addr)
    }

    /// True if `tid` is not a thread of the test process: a forked child or
    /// one of its threads.
    pub(crate) fn is_foreign(&mut self, tid: pid_t) -> bool {
        if self.foreign.contains(&tid) {
            return true;
        }
        if tid == self.child || self.call.as_ref().is_some_and(|c| c.threads.contains(&tid)) {
            return false;
        }
        let foreign = !std::path::Path::new(&format!("/proc/{}/task/{tid}", self.child)).exists();
        if foreign {
            self.foreign.insert(tid);
        }
        foreign
    }

    /// A forked child touched its copy of a protected page: open all of them
    /// in the child (its accesses are not traced) and let it go on.
    fn open_pages_in_child(&mut self, tid: pid_t) {
        let spans = self.all_protected();
        let result = (|| -> io::Result<()> {
            let regs = self.pt.getregs(tid)?;
            let mut deferred = Vec::new();
            for span in spans {
                self.inject_mprotect(
                    tid,
                    &regs,
                    span,
                    libc::PROT_READ | libc::PROT_WRITE,
                    &mut deferred,
                )?;
            }
            self.pt.setregs(tid, &regs)
        })();
        match result {
            Ok(()) => self.resume(tid, 0),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                report(format_args!(
                    "cannot open the protected pages in forked process {tid}: {e}"
                ));
                self.resume(tid, libc::SIGSEGV);
            }
        }
    }

    /// A thread of the call created a thread: it belongs to the call too.
    fn on_clone(&mut self, tid: pid_t) {
        if let Ok(new) = self.pt.geteventmsg(tid)
            && let Some(call) = &mut self.call
            && call.threads.contains(&tid)
        {
            call.threads.insert(new as pid_t);
        }
        self.resume(tid, 0);
    }

    /// Runs a ptrace operation; a thread that died meanwhile (ESRCH) is not
    /// an error (its exit is reported by waitid), anything else is reported.
    pub(crate) fn ok(&mut self, tid: pid_t, op: impl FnOnce(&mut Ptrace) -> io::Result<()>) {
        if let Err(e) = op(&mut self.pt)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            report(format_args!("ptrace on thread {tid} failed: {e}"));
        }
    }

    pub(crate) fn resume(&mut self, tid: pid_t, signal: c_int) {
        self.ok(tid, |pt| pt.cont(tid, signal));
    }

    fn on_signal(&mut self, tid: pid_t, signal: c_int) {
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
            libc::SIGTRAP if crate::stub::is_in_code(self.stub_base, self.rip(tid)) => {
                report(format_args!(
                    "mprotect inside the stub failed for thread {tid}; delivering SIGSEGV"
                ));
                self.resume(tid, libc::SIGSEGV);
            }
            _ => {
                if let Ok(info) = self.pt.getsiginfo(tid)
                    && crate::postmortem::is_crash(signal, &info, self.child)
                    && !crate::postmortem::is_ignored(self.child, signal)
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
        let request: Request = match protocol::read_frame(&mut self.sock) {
            Ok(r) => r,
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
                    self.begin_call_state(start);
                    Reply::Started
                }
            }
            Request::EndCall { restore } => match self.call.as_ref() {
                Some(c) if c.tid == tid => {
                    let trace = self.end_call_state();
                    self.watch_late_threads(tid, restore);
                    Reply::Trace(trace)
                }
                _ => Reply::Refused("no traced call is active on this thread".into()),
            },
        };
        self.resume(tid, 0);
        if let Err(e) = protocol::write_frame(&mut self.sock, &reply) {
            report(format_args!("cannot answer thread {tid}: {e}"));
        }
    }

    fn begin_call_state(&mut self, start: protocol::StartCall) {
        crate::postmortem::call_started();
        self.note_signal_state(start.tid);
        self.call = Some(Call::new(
            start.tid,
            start.test,
            start.call,
            start.regions,
            self.pt.requests,
        ));
    }

    fn end_call_state(&mut self) -> Trace {
        self.read_back_writes_of(None);
        let Some(mut call) = self.call.take() else {
            return Trace::default();
        };
        let late: std::collections::BTreeSet<pid_t> = call
            .threads
            .iter()
            .copied()
            .filter(|&t| t != call.tid && thread_is_running(self.child, t))
            .collect();
        for &tid in &late {
            call.notes.push(crate::event::Note {
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
            self.ended = Some(crate::late::Ended {
                tid: call.tid,
                test: call.test.clone(),
                call: call.call.clone(),
                regions: call.regions.clone(),
                protected: call.protected.clone(),
                late,
            });
        }
        call.stats.ptrace_requests = self.pt.requests - call.requests_at_start;
        Trace::new(
            call.regions,
            call.accesses,
            call.unsupported,
            call.notes,
            call.unknown_syscalls,
            call.stats,
        )
    }

    /// Reads the bytes of the pending writes of `tid` (of every thread for
    /// `None`): the instruction has run and no other instruction can have
    /// touched those protected bytes since.
    pub(crate) fn read_back_writes_of(&mut self, tid: Option<pid_t>) {
        let Some(call) = &mut self.call else { return };
        if call.pending.is_empty() {
            return;
        }
        let (done, keep): (Vec<_>, Vec<_>) = call
            .pending
            .drain(..)
            .partition(|p| tid.is_none_or(|t| t == p.0));
        call.pending = keep;
        for (_, index, addr, len) in done {
            let mut bytes = vec![0u8; len];
            match self.mem.read_at(&mut bytes, addr) {
                Ok(n) => bytes.truncate(n),
                Err(_) => bytes.clear(),
            }
            if let Some(a) = call.accesses.get_mut(index) {
                a.bytes = bytes;
            }
        }
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

    /// Explains a crash signal the program does not handle, naming the test
    /// and call if one is active.
    pub(crate) fn report_crash(&mut self, tid: pid_t, signal: c_int, info: &libc::siginfo_t) {
        if signal_is_caught(self.child, signal) {
            return;
        }
        let Ok(regs) = self.pt.getregs(tid) else {
            return;
        };
        let mut insn = [0u8; crate::decode::MAX_INSN_LEN];
        let n = self.mem.read_at(&mut insn, regs.rip).unwrap_or(0);
        let text = if n == 0 {
            "(instruction not readable)".to_owned()
        } else {
            crate::decode::decode(regs.rip, &insn[..n]).text
        };
        let place = crate::symbols::symbolize_in(self.child, regs.rip)
            .unwrap_or_else(|| format!("{:#x}", regs.rip));
        let during = crate::postmortem::during(self.call.as_ref());
        let what = crate::postmortem::describe_cause(signal, info);
        let accesses = self.accesses_so_far();
        report(format_args!(
            "{during}: native code in thread {tid} got signal {}{what}\n  at {place}: {text}\n  \
             rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} rsp={:#x}\n  \
             r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x} \
             rip={:#x} eflags={:#x}{accesses}",
            crate::postmortem::signal_name(signal),
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
            regs.eflags,
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
