//! The test process's side of the protocol (see `protocol`): start and end
//! a traced call, and ring the supervisor's doorbell.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::MutexGuard;

use super::error::CallError;
use super::start::{self, State};
use crate::layout::{CLIENT_GADGET_OFFSET, protected_spans};
use crate::protocol::{self, Reply, Request, StartCall};
use crate::trace::declared::Declared;
use crate::trace::event::{RegionDesc, Trace};
use crate::trace::store::Streamed;

/// A `mprotect` to apply: `(start, len, prot)`.
pub type Protection = (u64, u64, i32);

/// A traced call in progress: the pages are protected, the supervisor
/// records faults. End it with [`ActiveCall::end`]; dropping it ends it too
/// (discarding the trace), so a panicking closure leaves no page protected.
#[derive(Debug)]
pub struct ActiveCall {
    guard: Option<MutexGuard<'static, UnixStream>>,
    call: String,
    restore: Vec<Protection>,
    /// The `EndCall` request, encoded before the call started: ending the
    /// call allocates nothing until the supervisor has stopped recording
    /// the allocator's calls.
    end_parts: Vec<Vec<u8>>,
    /// The `StartCall` request, its encoding and the spans protected,
    /// dropped only after the end request is sent, for the same reason.
    start: Option<Kept>,
    affinity: Option<libc::cpu_set_t>,
    /// The allocator breakpoints this side put in place (see
    /// `allocator::set_breakpoints`), removed before the end request.
    breakpoints: u16,
    /// The memfd the supervisor streams the trace to (see `protocol`).
    memfd: Option<&'static File>,
}

/// What `begin_call` made and keeps until the end request is sent.
#[derive(Debug)]
struct Kept {
    _request: Request,
    _parts: Vec<Vec<u8>>,
    _spans: Vec<(u64, u64)>,
}

/// Whether a call may run hot code translated (see the supervisor's code
/// cache), and for how long at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeCache {
    /// Off forces the per-instruction path.
    pub enabled: bool,
    /// Backward branches a translated region takes before it exits and
    /// lets the call's other threads run; 0 for the default (2^18, or
    /// `TRACED_FFI_CACHE_BUDGET`).
    pub budget: u64,
}

impl Default for CodeCache {
    fn default() -> Self {
        CodeCache {
            enabled: true,
            budget: 0,
        }
    }
}

/// What a call records of the allocator's calls.
#[derive(Debug, Clone, Default)]
pub struct AllocTracing {
    /// Record the calls of `malloc`, `free`, ... made during the call, and
    /// refuse frees of buffers and tracked memory.
    pub enabled: bool,
    /// Blocks native code allocated in the test's earlier calls and has not
    /// freed (freeing one is not foreign, even when it is tracked).
    pub native_blocks: Vec<u64>,
}

/// What a call's trace keeps, and the contracts declared before the call.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// Keep only the first this many accesses in full (and every
    /// out-of-bounds one and every one that breaks a declared contract);
    /// `None` keeps every access.
    pub keep_accesses: Option<u64>,
    /// Contracts declared before the call: an access that breaks one gets
    /// its native caller chain (see `trace/declared.rs`).
    pub declared: Vec<Declared>,
}

/// Starts a traced call on the current thread.
///
/// `regions` are registered with the supervisor and their spans set to
/// `PROT_NONE`; `restore` is what [`ActiveCall::end`] applies afterwards.
/// `recording` bounds the accesses the trace keeps in full (see
/// `Tracer::keep_accesses` in the harness) and carries the contracts
/// declared before the call (`Tracer::expect_during`).
///
/// Between the supervisor's answer and the end request, this side of the
/// call allocates nothing (unless a `mprotect` fails), so that the
/// allocator calls recorded are those made inside the closure.
pub fn begin_call(
    test: &str,
    call: &str,
    regions: Vec<RegionDesc>,
    restore: Vec<Protection>,
    alloc: AllocTracing,
    code_cache: CodeCache,
    recording: Recording,
) -> Result<ActiveCall, CallError> {
    let client = match start::state() {
        Some(State::Traced(client)) => client,
        Some(State::Untraced(reason)) => {
            return Err(CallError::Unavailable {
                reason: reason.clone(),
            });
        }
        None => {
            return Err(CallError::Unavailable {
                reason: "the supervisor was never started (is `traced_ffi::main!()` the test binary's main?)"
                    .into(),
            });
        }
    };
    if let Some(outer) = running_call_on_this_thread() {
        // Its closure is calling us: waiting for the call lock would hang.
        return Err(CallError::Nested {
            call: call.to_owned(),
            outer,
        });
    }
    install_indirect_filter_once();
    let mut guard = client.lock();
    // With the lock held: no call is active, no breakpoint is in place.
    let arms_allocator = alloc.enabled && super::allocator::self_arming().is_some();
    let affinity = client.cpu().and_then(pin_to);
    let io_err = |source| CallError::Io {
        call: call.to_owned(),
        source,
    };
    let spans: Vec<(u64, u64)> = protected_spans(&regions);
    let end_parts = protocol::encode_request(&Request::EndCall {
        restore: restore.clone(),
    })
    .map_err(io_err)?;
    let start = StartCall {
        // SAFETY: gettid has no preconditions.
        tid: unsafe { libc::gettid() },
        test: test.to_owned(),
        call: call.to_owned(),
        regions,
        dropped: super::arena::quarantined(),
        allocator: if alloc.enabled {
            super::allocator::entry_points().to_vec()
        } else {
            Vec::new()
        },
        arms_allocator,
        native_blocks: alloc.native_blocks,
        code_cache: code_cache.enabled,
        cache_budget: code_cache.budget,
        keep_accesses: recording.keep_accesses,
        declared: recording.declared,
    };
    let start = Request::StartCall(start);
    let start_parts = protocol::encode_request(&start).map_err(io_err)?;
    let mut active = ActiveCall {
        guard: None,
        call: call.to_owned(),
        restore,
        end_parts,
        start: None,
        affinity,
        breakpoints: 0,
        memfd: client.memfd(),
    };
    // Set before the request: from the supervisor's answer on, nothing here
    // allocates or frees (the request is kept until the end is sent).
    set_running_call_on_this_thread(Some(call.to_owned()));
    let started = protocol::send_parts(&mut *guard, &start_parts, ring)
        .map_err(io_err)
        .and_then(|()| protocol::read_small_frame::<Reply>(&mut *guard).map_err(io_err))
        .and_then(|reply| match reply {
            Reply::Started { arm } => Ok(arm),
            Reply::Refused(reason) => Err(CallError::Refused {
                call: call.to_owned(),
                reason,
            }),
            Reply::Trace { .. } => Err(CallError::Protocol {
                call: call.to_owned(),
                what: "a trace in answer to StartCall".into(),
            }),
        });
    let arm = match started {
        Ok(arm) => arm,
        Err(e) => {
            set_running_call_on_this_thread(None);
            return Err(e);
        }
    };
    active.guard = Some(guard);
    if arms_allocator && arm != 0 {
        super::allocator::set_breakpoints(arm, true);
        active.breakpoints = arm;
    }
    let protected = spans.iter().try_for_each(|&(start, end)| {
        protect(start, end - start, libc::PROT_NONE).map_err(|source| (start, source))
    });
    active.start = Some(Kept {
        _request: start,
        _parts: start_parts,
        _spans: spans,
    });
    protected.map_err(|(addr, source)| CallError::Protect {
        call: call.to_owned(),
        addr,
        source,
    })?;
    Ok(active)
}

impl ActiveCall {
    /// Ends the call: restores the pages and returns the trace.
    pub fn end(mut self) -> Result<Trace, CallError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Trace, CallError> {
        let Some(mut guard) = self.guard.take() else {
            return Err(CallError::Protocol {
                call: self.call.clone(),
                what: "the call was already ended".into(),
            });
        };
        // Nothing here allocates or frees until the end request is sent:
        // the supervisor records the allocator's calls until then.
        let running = take_running_call_on_this_thread();
        super::allocator::set_breakpoints(std::mem::take(&mut self.breakpoints), false);
        let mut first_err: Option<(u64, io::Error)> = None;
        for &(start, len, prot) in &self.restore {
            if let Err(source) = protect(start, len, prot) {
                first_err.get_or_insert((start, source));
            }
        }
        let sent = protocol::send_parts(&mut *guard, &self.end_parts, ring);
        drop(running);
        self.start = None;
        let call = self.call.clone();
        let io_err = |source| CallError::Io {
            call: call.clone(),
            source,
        };
        let memfd = self.memfd;
        let result = sent
            .map_err(io_err)
            .and_then(|()| protocol::read_frame::<Reply>(&mut *guard).map_err(io_err))
            .and_then(|reply| match reply {
                // Read while holding the call lock: the next call's
                // supervisor writes the memfd again.
                Reply::Trace {
                    mut trace,
                    streamed,
                } => match rejoin(&mut trace, &streamed, memfd) {
                    Ok(()) => Ok(Reply::Trace {
                        trace,
                        streamed: Streamed::default(),
                    }),
                    Err(e) => Err(CallError::Protocol {
                        call: call.clone(),
                        what: format!("cannot read the trace's streamed records back: {e}"),
                    }),
                },
                other => Ok(other),
            });
        let first_err = first_err.map(|(addr, source)| CallError::Protect {
            call: self.call.clone(),
            addr,
            source,
        });
        if let Some(set) = self.affinity.take() {
            // SAFETY: `set` is a valid cpu_set_t saved from sched_getaffinity.
            unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
        }
        drop(guard);
        if let Some(err) = first_err {
            return Err(err);
        }
        match result? {
            Reply::Trace { trace, .. } => Ok(*trace),
            other => Err(CallError::Protocol {
                call: self.call.clone(),
                what: format!("{other:?} in answer to EndCall"),
            }),
        }
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        if self.guard.is_some() {
            let _ = self.finish();
        } else if let Some(set) = self.affinity.take() {
            // SAFETY: `set` is a valid cpu_set_t saved from sched_getaffinity.
            unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
        }
    }
}

/// Adds the per-thread seccomp filter for iovec-style system calls at this
/// thread's first traced call (see `seccomp.rs`).
fn install_indirect_filter_once() {
    thread_local! {
        static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    let stub = start::stub_base();
    if stub != 0
        && super::arena::has_reservation()
        && let Err(e) = super::seccomp::install_indirect()
    {
        eprintln!(
            "traced-ffi: cannot add the seccomp filter for readv/writev-style calls ({e}); \
             those calls on buffers will fail with EFAULT during traced calls"
        );
    }
}

pub(crate) fn protect(start: u64, len: u64, prot: i32) -> io::Result<()> {
    let stub = start::stub_base();
    if stub == 0 {
        // SAFETY: the ranges come from regions the test registered: arena
        // mappings it owns, or memory the caller of `track` vouched for.
        let ret = unsafe { libc::mprotect(start as *mut libc::c_void, len as usize, prot) };
        return if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
    }
    let gadget = stub + CLIENT_GADGET_OFFSET;
    let ret: i64;
    // The gadget is `syscall; ret` in the stub page mapped by `launch`; it runs
    // mprotect on ranges from regions the test registered (as above) and returns
    // here. `syscall` clobbers rcx and r11; the call uses the stack (no `nostack`).
    // SAFETY: see above: a syscall on our own ranges through our own gadget.
    unsafe {
        std::arch::asm!(
            "call {gadget}",
            gadget = in(reg) gadget,
            inlateout("rax") libc::SYS_mprotect => ret,
            in("rdi") start,
            in("rsi") len,
            in("rdx") prot as i64,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-ret as i32))
    }
}

/// Rings the supervisor's doorbell: a SIGSTOP to this very thread. It cannot
/// be blocked; the supervisor checks that it came from us (`SI_TKILL`, our
/// pid) and that a request is waiting.
fn ring() -> io::Result<()> {
    // SAFETY: getpid/gettid have no preconditions; tgkill to our own thread
    // with SIGSTOP is caught by the supervisor before delivery.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::gettid(),
            libc::SIGSTOP,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling thread to `cpu`, the supervisor's, returning the
/// previous mask. Each stop and resume is then a same-CPU wake-up
/// (`LIMITS.md`: ~7 µs, not ~47 µs across CPUs).
fn pin_to(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a valid out-parameter of the size given.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) } != 0 {
        return None;
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE: sched_getcpu or the caller's CPU number.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } != 0 {
        return None;
    }
    Some(old)
}

thread_local! {
    /// The location (`file:line`) of the traced call running on this thread.
    static RUNNING_CALL: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// The location of the traced call running on this thread, if any.
fn running_call_on_this_thread() -> Option<String> {
    RUNNING_CALL.with(|r| r.borrow().clone())
}

fn set_running_call_on_this_thread(call: Option<String>) {
    RUNNING_CALL.with(|r| *r.borrow_mut() = call);
}

/// Clears the running call, handing its location to the caller (to drop
/// when freeing is harmless).
fn take_running_call_on_this_thread() -> Option<String> {
    RUNNING_CALL.with(|r| r.borrow_mut().take())
}

/// Reads the chunks of `trace`'s records the supervisor streamed to the
/// memfd during the call back into the trace, straight into its chunks,
/// then empties the memfd for the next call. Each range read is released
/// at once (a hole punched), so the records are not held twice meanwhile.
fn rejoin(trace: &mut Trace, streamed: &Streamed, memfd: Option<&File>) -> io::Result<()> {
    if streamed.is_empty() {
        return Ok(());
    }
    let Some(memfd) = memfd else {
        return Err(io::Error::other(
            "the supervisor streamed records but this process has no memfd",
        ));
    };
    let read = trace.records.rejoin(streamed, |at, buf| {
        memfd.read_exact_at(buf, at)?;
        let (Ok(off), Ok(len)) = (i64::try_from(at), i64::try_from(buf.len())) else {
            return Ok(());
        };
        // Refused (an old kernel), the bytes stay until the truncation.
        // SAFETY: fallocate on a descriptor this process owns; the hole
        // changes only the file's contents, which were just read.
        unsafe {
            libc::fallocate(
                memfd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        Ok(())
    });
    let emptied = memfd.set_len(0);
    read.and(emptied)
}
