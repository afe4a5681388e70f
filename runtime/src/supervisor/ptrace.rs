//! Thin, counted wrappers over the ptrace(2) requests and waitid(2) the
//! supervisor uses. Every request goes through [`Ptrace`], which counts it,
//! so the Trace's stats say what each access cost.
//!
//! Signals are raw numbers here (not `nix::sys::signal::Signal`), because
//! real-time signals must pass through unchanged and nix cannot name them.

use std::io;
use std::mem::MaybeUninit;

use libc::{c_int, c_long, c_void, pid_t, siginfo_t, user_regs_struct};

use crate::decode::xstate::{NT_X86_XSTATE, XState};

/// `PTRACE_EVENT_STOP` (ptrace(2)): a group-stop, a new thread's first stop
/// or a `PTRACE_INTERRUPT` stop of a seized tracee.
pub(super) const PTRACE_EVENT_STOP: c_int = 128;

/// Offset of `rip` inside `struct user` (which begins with
/// `user_regs_struct`), for `PTRACE_POKEUSER`.
pub(super) const USER_RIP_OFFSET: usize = std::mem::offset_of!(user_regs_struct, rip);

/// What `waitid` reported for one tracee thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitEvent {
    /// The thread exited with this code (`CLD_EXITED`).
    Exited { tid: pid_t, code: c_int },
    /// The thread was killed by this signal (`CLD_KILLED` / `CLD_DUMPED`).
    Killed { tid: pid_t, signal: c_int },
    /// A signal-delivery-stop: `signal` is about to be delivered.
    SignalStop { tid: pid_t, signal: c_int },
    /// A `PTRACE_EVENT_*` stop (`event` != 0), e.g. clone or group-stop.
    EventStop {
        tid: pid_t,
        signal: c_int,
        event: c_int,
    },
    /// A syscall-stop (`SIGTRAP | 0x80` with `PTRACE_O_TRACESYSGOOD`).
    SyscallStop { tid: pid_t },
    /// Anything else (`CLD_CONTINUED`, job-control stops of untraced children).
    Other,
}

impl WaitEvent {
    /// The thread the event is about, if any.
    pub(super) fn tid(&self) -> Option<pid_t> {
        match *self {
            WaitEvent::Exited { tid, .. }
            | WaitEvent::Killed { tid, .. }
            | WaitEvent::SignalStop { tid, .. }
            | WaitEvent::EventStop { tid, .. }
            | WaitEvent::SyscallStop { tid } => Some(tid),
            WaitEvent::Other => None,
        }
    }
}

/// The ptrace requests a supervisor makes, counted.
#[derive(Debug, Default)]
pub(super) struct Ptrace {
    /// ptrace requests issued since the counter was last taken.
    pub(super) requests: u64,
}

fn check(ret: c_long) -> io::Result<c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Ptrace {
    fn raw(
        &mut self,
        req: libc::c_uint,
        tid: pid_t,
        addr: usize,
        data: usize,
    ) -> io::Result<c_long> {
        self.requests += 1;
        // SAFETY: callers pass integers, or pointers to live out-parameters of the request's size.
        let ret = unsafe { libc::ptrace(req, tid, addr as *mut c_void, data as *mut c_void) };
        check(ret)
    }

    /// `PTRACE_SEIZE` with the given options.
    pub(super) fn seize(&mut self, tid: pid_t, options: c_int) -> io::Result<()> {
        self.raw(libc::PTRACE_SEIZE, tid, 0, options as usize)
            .map(drop)
    }

    /// `PTRACE_CONT`, delivering `signal` (0: none).
    pub(super) fn cont(&mut self, tid: pid_t, signal: c_int) -> io::Result<()> {
        self.raw(libc::PTRACE_CONT, tid, 0, signal as usize)
            .map(drop)
    }

    /// `PTRACE_SINGLESTEP`, delivering `signal` (0: none).
    pub(super) fn step(&mut self, tid: pid_t, signal: c_int) -> io::Result<()> {
        self.raw(libc::PTRACE_SINGLESTEP, tid, 0, signal as usize)
            .map(drop)
    }

    /// `PTRACE_LISTEN`: leave a group-stopped tracee stopped, but let it be
    /// woken by `SIGCONT` (ptrace(2)).
    pub(super) fn listen(&mut self, tid: pid_t) -> io::Result<()> {
        self.raw(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
    }

    /// `PTRACE_GETREGS`.
    pub(super) fn getregs(&mut self, tid: pid_t) -> io::Result<user_regs_struct> {
        let mut regs = MaybeUninit::<user_regs_struct>::uninit();
        self.raw(libc::PTRACE_GETREGS, tid, 0, regs.as_mut_ptr() as usize)?;
        // SAFETY: PTRACE_GETREGS succeeded, so the kernel filled the whole struct.
        Ok(unsafe { regs.assume_init() })
    }

    /// `PTRACE_SETREGS`.
    pub(super) fn setregs(&mut self, tid: pid_t, regs: &user_regs_struct) -> io::Result<()> {
        self.raw(libc::PTRACE_SETREGS, tid, 0, regs as *const _ as usize)
            .map(drop)
    }

    /// `PTRACE_GETSIGINFO`.
    pub(super) fn getsiginfo(&mut self, tid: pid_t) -> io::Result<siginfo_t> {
        let mut info = MaybeUninit::<siginfo_t>::uninit();
        self.raw(libc::PTRACE_GETSIGINFO, tid, 0, info.as_mut_ptr() as usize)?;
        // SAFETY: PTRACE_GETSIGINFO succeeded, so the kernel filled the struct.
        Ok(unsafe { info.assume_init() })
    }

    /// `PTRACE_GETEVENTMSG`: the new thread's id after a clone event.
    pub(super) fn geteventmsg(&mut self, tid: pid_t) -> io::Result<u64> {
        let mut msg: libc::c_ulong = 0;
        self.raw(libc::PTRACE_GETEVENTMSG, tid, 0, (&raw mut msg) as usize)?;
        Ok(msg)
    }

    /// `PTRACE_SYSCALL`: run to the next system-call entry or exit.
    pub(super) fn syscall(&mut self, tid: pid_t) -> io::Result<()> {
        self.raw(libc::PTRACE_SYSCALL, tid, 0, 0).map(drop)
    }

    /// `PTRACE_GETSIGMASK`: the thread's blocked signals.
    pub(super) fn getsigmask(&mut self, tid: pid_t) -> io::Result<u64> {
        let mut mask: u64 = 0;
        self.raw(libc::PTRACE_GETSIGMASK, tid, 8, (&raw mut mask) as usize)?;
        Ok(mask)
    }

    /// `PTRACE_SETSIGMASK`.
    pub(super) fn setsigmask(&mut self, tid: pid_t, mask: u64) -> io::Result<()> {
        self.raw(libc::PTRACE_SETSIGMASK, tid, 8, (&raw const mask) as usize)
            .map(drop)
    }

    /// `PTRACE_DETACH`, delivering no signal.
    pub(super) fn detach(&mut self, tid: pid_t) -> io::Result<()> {
        self.raw(libc::PTRACE_DETACH, tid, 0, 0).map(drop)
    }

    /// `PTRACE_INTERRUPT`: stop a running tracee (a `PTRACE_EVENT_STOP`).
    pub(super) fn interrupt(&mut self, tid: pid_t) -> io::Result<()> {
        self.raw(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
    }

    /// `tid`'s extended state (`PTRACE_GETREGSET`, `NT_X86_XSTATE`).
    pub(super) fn getxstate(&mut self, tid: pid_t) -> io::Result<XState> {
        let mut area = XState::buffer()?;
        let len = self.getregset(tid, NT_X86_XSTATE, &mut area)?;
        area.truncate(len);
        XState::from_area(area)
    }

    /// `PTRACE_GETREGSET` of register set `kind` into `buf`; returns the
    /// bytes the kernel filled.
    fn getregset(&mut self, tid: pid_t, kind: usize, buf: &mut [u8]) -> io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        self.raw(libc::PTRACE_GETREGSET, tid, kind, (&raw mut iov) as usize)?;
        Ok(iov.iov_len)
    }

    /// `PTRACE_POKEUSER` of one word of `struct user`.
    pub(super) fn poke_user(&mut self, tid: pid_t, offset: usize, value: u64) -> io::Result<()> {
        self.raw(libc::PTRACE_POKEUSER, tid, offset, value as usize)
            .map(drop)
    }
}

/// Blocks until any tracee (or child) changes state: `waitid(P_ALL, …,
/// WEXITED | WSTOPPED | __WALL)`. The supervisor's only blocking point.
pub(super) fn wait_any() -> io::Result<WaitEvent> {
    wait(libc::P_ALL, 0)
}

/// Blocks until thread `tid` changes state.
pub(super) fn wait_tid(tid: pid_t) -> io::Result<WaitEvent> {
    wait(libc::P_PID, tid as libc::id_t)
}

fn wait(idtype: libc::idtype_t, id: libc::id_t) -> io::Result<WaitEvent> {
    loop {
        let mut info = MaybeUninit::<siginfo_t>::zeroed();
        // SAFETY: `info` is a valid out-parameter for waitid; zeroed so that
        // si_pid reads 0 if no child changed state.
        let ret = unsafe {
            libc::waitid(
                idtype,
                id,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WSTOPPED | libc::__WALL,
            )
        };
        if ret == -1 {
            let err = io::Error::last_os_error();
            // Only the supervisor's main wait gives way to a report request
            // (see `postmortem`); waits for one thread finish their step.
            if err.raw_os_error() == Some(libc::EINTR)
                && !(idtype == libc::P_ALL && super::report::report_requested())
            {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid succeeded and filled `info` (it was zeroed before).
        let info = unsafe { info.assume_init() };
        // SAFETY: for SIGCHLD-style siginfo filled by waitid, si_pid and
        // si_status are the valid union members.
        let (tid, status) = unsafe { (info.si_pid(), info.si_status()) };
        return Ok(match info.si_code {
            libc::CLD_EXITED => WaitEvent::Exited { tid, code: status },
            libc::CLD_KILLED | libc::CLD_DUMPED => WaitEvent::Killed {
                tid,
                signal: status,
            },
            libc::CLD_TRAPPED => {
                let signal = status & 0xff;
                let event = status >> 8;
                if signal == (libc::SIGTRAP | 0x80) {
                    WaitEvent::SyscallStop { tid }
                } else if event == 0 {
                    WaitEvent::SignalStop { tid, signal }
                } else {
                    WaitEvent::EventStop { tid, signal, event }
                }
            }
            _ => WaitEvent::Other,
        });
    }
}
