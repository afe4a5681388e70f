//! The fork. Before it there is one process with one thread; after it the
//! parent becomes the supervisor (`supervisor::supervise`, never returns)
//! and the child goes on to run the tests (`tracee::start`). This is the one
//! file that knows both sides.
//!
//! Before forking it sets up what both processes must share at the same
//! addresses (see `layout`): the stub area and the buffer reservation.

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use crate::layout::{
    CACHE_GUARD_OFFSET, CACHE_LOG_OFFSET, CACHE_LOG_SIZE, CLIENT_GADGET, CLIENT_GADGET_OFFSET,
    GADGET, GADGET_OFFSET, PAGE_SIZE, RETURN_TRAP, RETURN_TRAP_OFFSET, STUB_AREA_SIZE,
    THREAD_SLOTS, cache_slot_base,
};
use crate::supervisor;
pub use crate::tracee::start::Launched;
use crate::tracee::{arena, error::LaunchError, start};

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |source| LaunchError::Setup { what, source }
}

fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Maps the stub area (before the fork, so both processes know it) and
/// writes its two gadgets.
fn map_stub_area() -> io::Result<u64> {
    let size = STUB_AREA_SIZE;
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
    // SAFETY: the mapping is STUB_AREA_SIZE bytes, writable, and the gadget
    // fits at GADGET_OFFSET.
    unsafe {
        std::ptr::copy_nonoverlapping(
            GADGET.as_ptr(),
            p.cast::<u8>().add(GADGET_OFFSET as usize),
            GADGET.len(),
        )
    };
    // SAFETY: as above; the client gadget fits at CLIENT_GADGET_OFFSET,
    // after the first gadget and before the stub code.
    unsafe {
        std::ptr::copy_nonoverlapping(
            CLIENT_GADGET.as_ptr(),
            p.cast::<u8>().add(CLIENT_GADGET_OFFSET as usize),
            CLIENT_GADGET.len(),
        )
    };
    // SAFETY: as above; the return trap fits at RETURN_TRAP_OFFSET, after
    // the scratch bytes and before the stub code.
    unsafe {
        std::ptr::copy_nonoverlapping(
            RETURN_TRAP.as_ptr(),
            p.cast::<u8>().add(RETURN_TRAP_OFFSET as usize),
            RETURN_TRAP.len(),
        )
    };
    for slot in 0..THREAD_SLOTS {
        // The log is shared with the supervisor (mapped before the fork, at
        // the same address in both): it reads a drained log in place
        // instead of through `/proc/PID/mem`. Only translated code writes
        // it, which a forked child of the test process never runs.
        let log = cache_slot_base(p as u64, slot) + CACHE_LOG_OFFSET;
        // SAFETY: MAP_FIXED replaces pages inside the stub area just mapped,
        // which nothing else uses yet.
        let shared = unsafe {
            libc::mmap(
                log as *mut libc::c_void,
                CACHE_LOG_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if shared == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let guard = cache_slot_base(p as u64, slot) + CACHE_GUARD_OFFSET;
        // The translated code of the code cache appends to the log before
        // this page and faults here when the log is full.
        // SAFETY: the guard page lies inside the stub area just mapped, which nothing else uses.
        if unsafe { libc::mprotect(guard as *mut libc::c_void, PAGE_SIZE, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(p as u64)
}

/// The file both processes share for the traces of calls (see
/// `protocol`): a memfd, closed on exec. `None` if the kernel refuses one:
/// traces then travel whole in the reply at the end of each call.
fn trace_memfd() -> Option<File> {
    // SAFETY: a NUL-terminated name and valid flags.
    let fd = unsafe { libc::memfd_create(c"traced-ffi-trace".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Some(unsafe { File::from_raw_fd(fd) })
}

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
    let launched = launch_once();
    if let Err(e) = &launched {
        // Later traced calls say why, not that nothing was started.
        start::untraced(&format!("failed to {}", error_chain(e)));
    }
    launched
}

/// [`launch`], the first time.
fn launch_once() -> Result<Launched, LaunchError> {
    if let Some(reason) = runs_on_translated_code() {
        start::untraced(&reason);
        return Ok(Launched::Untraced(reason));
    }
    let count = thread_count().map_err(setup("count the threads in /proc/self/task"))?;
    if count > 1 {
        return Err(LaunchError::ThreadsRunning { count });
    }
    let stub_base = map_stub_area().map_err(setup("map the stub page"))?;
    // Without the reservation, buffers go anywhere and system calls on them
    // fail with EFAULT during calls, as they would without the filter.
    let reserved = arena::reserve().ok();
    let (parent_end, child_end) =
        UnixStream::pair().map_err(setup("create the supervisor socket"))?;
    // Made before the fork: one file, the same for both. A child the test
    // process forks inherits it (closed at its exec) and never reads it.
    let memfd = trace_memfd();
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
        return start::start(child_end, parent_pid, reserved, stub_base, memfd);
    }
    drop(child_end);
    supervisor::supervise(pid, parent_end, stub_base, reserved, memfd)
}

/// Marks this process as untraced without forking (e.g. `--list`).
pub fn run_untraced(reason: &str) {
    start::untraced(reason);
}

/// `error: cause: cause` on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Tools that run a program on a translation of its code, and a file each
/// maps into the process, found by its name in `/proc/self/maps`.
const CODE_REWRITERS: [(&str, &str); 3] = [
    ("valgrind", "/vgpreload_"),
    ("DynamoRIO", "/libdynamorio"),
    ("Intel Pin", "/pinbin"),
];

/// Why tracing is refused if this process runs under a tool that rewrites
/// its code (valgrind, DynamoRIO, Pin): the faults and registers the
/// supervisor would see belong to the tool's translated code, so a trace
/// would name the tool's instructions (`0x1004819605 movzx r10,...`), not the
/// program's. Debuggers and `strace` do not rewrite code; if they keep the
/// supervisor from attaching, the seize fails with its own message.
fn runs_on_translated_code() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find_map(|path| {
            CODE_REWRITERS
                .iter()
                .find(|(_, marker)| path.contains(marker))
                .map(|(tool, _)| {
                    format!(
                        "this process runs under {tool} ({path} is mapped into it): {tool} runs \
                         a translation of the code, so the supervisor would see the tool's \
                         instructions, not the program's; run the traced tests without {tool} \
                         (untraced tests still run)"
                    )
                })
        })
}
