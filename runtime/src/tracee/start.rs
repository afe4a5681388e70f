//! The child side of the launch: the test process learns from the
//! supervisor's handshake whether it is traced, installs the seccomp filter,
//! and keeps its tracing state for every later call.

use std::fs::File;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::error::LaunchError;
use crate::protocol::{self, Handshake};

/// How the process came out of [`launch`](crate::launch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    /// This process is traced by a supervisor (its parent).
    Traced,
    /// This process is not traced; traced calls will fail with the reason.
    Untraced(String),
}

/// Whether this process is traced, set once by `launch`.
#[derive(Debug)]
pub(crate) enum State {
    /// Seized by a supervisor; calls are traced.
    Traced(Client),
    /// Not traced, for this reason; traced calls fail with it.
    Untraced(String),
}

static STATE: OnceLock<State> = OnceLock::new();

/// The stub area's address in this process (0 when there is none).
static STUB_BASE: AtomicU64 = AtomicU64::new(0);

fn install(state: State) {
    // A second launch in one process is refused before it gets here.
    let _ = STATE.set(state);
}

/// This process's tracing state; `None` before `launch` or `run_untraced`.
pub(crate) fn state() -> Option<&'static State> {
    STATE.get()
}

/// The stub area's address (0 when there is none: the test process's own
/// `mprotect`s then go straight to the kernel).
pub(crate) fn stub_base() -> u64 {
    STUB_BASE.load(Ordering::Relaxed)
}

/// The connection to the supervisor. Its mutex is the process-wide call
/// lock: traced calls from many threads take turns.
#[derive(Debug)]
pub(crate) struct Client {
    sock: Mutex<UnixStream>,
    /// The CPU the supervisor stays on.
    cpu: Option<usize>,
    /// The memfd the supervisor streams a call's trace to (see `protocol`),
    /// read only while holding the call lock.
    memfd: Option<File>,
}

impl Client {
    /// Takes the call lock: the socket, for one call's requests.
    pub(crate) fn lock(&self) -> MutexGuard<'_, UnixStream> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The CPU the supervisor stays on.
    pub(crate) fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// The memfd the supervisor streams a call's trace to.
    pub(crate) fn memfd(&self) -> Option<&File> {
        self.memfd.as_ref()
    }
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |source| LaunchError::Setup { what, source }
}

/// In the child of the fork: waits for the supervisor's handshake and sets
/// this process up as traced (or untraced, with the reason).
pub(crate) fn start(
    mut sock: UnixStream,
    parent_pid: libc::pid_t,
    reserved: Option<u64>,
    stub_base: u64,
    memfd: Option<File>,
) -> Result<Launched, LaunchError> {
    STUB_BASE.store(stub_base, Ordering::Relaxed);
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent_pid {
        // The supervisor died before PDEATHSIG was armed.
        return Err(setup("arm PR_SET_PDEATHSIG")(io::Error::other(
            "the supervisor exited before the test process was set up",
        )));
    }
    let handshake: Handshake =
        protocol::read_frame(&mut sock).map_err(setup("receive the supervisor's handshake"))?;
    Ok(match handshake {
        Handshake::Traced { cpu } => {
            // The supervisor has seized us with PTRACE_O_TRACESECCOMP: the
            // filter's RET_TRACE now reaches it (without a tracer it would
            // make those system calls fail with ENOSYS).
            if let Some(reserved) = reserved
                && let Err(e) = super::seccomp::install(reserved, stub_base)
            {
                eprintln!(
                    "traced-ffi: cannot install the seccomp filter ({e}); system calls on \
                     buffers during traced calls will fail with EFAULT"
                );
            }
            install(State::Traced(Client {
                sock: Mutex::new(sock),
                cpu,
                memfd,
            }));
            Launched::Traced
        }
        Handshake::Untraced(reason) => {
            install(State::Untraced(reason.clone()));
            Launched::Untraced(reason)
        }
    })
}

/// Marks this process as untraced without forking (e.g. `--list`).
pub(crate) fn untraced(reason: &str) {
    install(State::Untraced(reason.to_owned()));
}
