//! Forking the supervisor: the parent becomes the supervisor, the child
//! goes on to run the tests. Must run before any thread exists.

use std::io;
use std::os::unix::net::UnixStream;

use crate::client::{self, Client, State};
use crate::error::LaunchError;
use crate::protocol::{self, Handshake};
use crate::stub;
use crate::supervisor;

/// How the process came out of [`launch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launched {
    /// This process is traced by a supervisor (its parent).
    Traced,
    /// This process is not traced; traced calls will fail with the reason.
    Untraced(String),
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |source| LaunchError::Setup { what, source }
}

fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Maps the stub page (before the fork, so both processes know it).
fn map_stub_area() -> io::Result<u64> {
    let size = stub::STUB_AREA_SIZE;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing, twice the size so an aligned area fits in it.
    let wide = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * size,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if wide == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let lo = wide as u64;
    let start = lo.next_multiple_of(size as u64);
    // SAFETY: both trimmed parts lie inside the mapping just made, which
    // nothing else uses.
    unsafe {
        if start > lo {
            libc::munmap(wide, (start - lo) as usize);
        }
        let end = start + size as u64;
        if lo + 2 * size as u64 > end {
            libc::munmap(
                end as *mut libc::c_void,
                (lo + 2 * size as u64 - end) as usize,
            );
        }
    }
    let p = start as *mut libc::c_void;
    let gadget = stub::GADGET;
    // SAFETY: the mapping is STUB_AREA_SIZE bytes, writable, and the gadget
    // fits at GADGET_OFFSET.
    unsafe {
        std::ptr::copy_nonoverlapping(
            gadget.as_ptr(),
            p.cast::<u8>().add(stub::GADGET_OFFSET as usize),
            gadget.len(),
        )
    };
    let client_gadget = stub::CLIENT_GADGET;
    // SAFETY: as above; the client gadget fits at CLIENT_GADGET_OFFSET,
    // after the first gadget and before the stub code.
    unsafe {
        std::ptr::copy_nonoverlapping(
            client_gadget.as_ptr(),
            p.cast::<u8>().add(stub::CLIENT_GADGET_OFFSET as usize),
            client_gadget.len(),
        )
    };
    STUB_BASE.store(p as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(p as u64)
}

/// The stub page's address in this process (0 before `launch`).
pub(crate) static STUB_BASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Forks the supervisor and returns in the child (the traced test process).
///
/// The parent never returns: it supervises the child and exits with the
/// child's exit code, or dies of the child's death signal. If ptrace is
/// refused, the child still runs, [`Launched::Untraced`] says why, and
/// traced calls fail with that reason.
pub fn launch() -> Result<Launched, LaunchError> {
    static LAUNCHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if LAUNCHED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(LaunchError::AlreadyLaunched);
    }
    let count = thread_count().map_err(setup("count the threads in /proc/self/task"))?;
    if count > 1 {
        return Err(LaunchError::ThreadsRunning { count });
    }
    let stub_base = map_stub_area().map_err(setup("map the stub page"))?;
    // Without the reservation, buffers go anywhere and system calls on them
    // fail with EFAULT during calls, as they would without the filter.
    let reserved = crate::arena::reserve().ok();
    let (parent_end, child_end) =
        UnixStream::pair().map_err(setup("create the supervisor socket"))?;
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };
    // SAFETY: the process has one thread (checked above), so the child is a
    // complete copy and may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(setup("fork")(io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(parent_end);
        return child_side(child_end, parent_pid, reserved, stub_base);
    }
    drop(child_end);
    supervisor::supervise(pid, parent_end, stub_base)
}

fn child_side(
    mut sock: UnixStream,
    parent_pid: libc::pid_t,
    reserved: Option<u64>,
    stub_base: u64,
) -> Result<Launched, LaunchError> {
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
                && let Err(e) = crate::seccomp::install(reserved, stub_base)
            {
                eprintln!(
                    "traced-ffi: cannot install the seccomp filter ({e}); system calls on \
                     buffers during traced calls will fail with EFAULT"
                );
            }
            client::install(State::Traced(Client::new(sock, cpu)));
            Launched::Traced
        }
        Handshake::Untraced(reason) => {
            client::install(State::Untraced(reason.clone()));
            Launched::Untraced(reason)
        }
    })
}

/// Marks this process as untraced without forking (e.g. `--list`).
pub fn run_untraced(reason: &str) {
    client::install(State::Untraced(reason.to_owned()));
}
