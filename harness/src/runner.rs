//! Runner side of process-per-test: each selected test runs in a child
//! process, this very binary started again with [`RUN_ONE_ENV`] naming the
//! test (see `isolated.rs` for the child side).
//!
//! ```text
//! runner (libtest-mimic, N worker threads)
//!   └─ per test: spawn `<exe> --exact NAME`, env RUN_ONE_ENV=NAME, RESULT_FD_ENV=fd
//!        child = supervisor (launch's parent)      stdout+stderr → one pipe
//!          └─ test process: runs NAME, writes its verdict to the result fd
//! ```
//!
//! The runner blocks in `poll` on three descriptors: the output pipe, the
//! result pipe and a pidfd of the child, with the test's deadline as the
//! timeout. When the deadline passes it sends [`REPORT_SIGNAL`] to the
//! child (the supervisor), which prints where the test's threads are and
//! kills the test process; if the child has not exited [`REPORT_GRACE`]
//! later, it is killed. A verdict on the result pipe is the test's outcome;
//! without one, the child's exit status (a signal, `exit(3)`) is.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use traced_ffi_runtime::{REPORT_SIGNAL, REPORTED_EXIT_CODE};

use crate::registry::TestDesc;
use crate::timeout::Limit;

/// Names the test a child process runs (set by the runner only).
pub(crate) const RUN_ONE_ENV: &str = "TRACED_FFI_RUN_ONE";
/// The file descriptor a child writes its verdict to (set by the runner only).
pub(crate) const RESULT_FD_ENV: &str = "TRACED_FFI_RESULT_FD";
/// The first line of a passing verdict on the result pipe.
pub(crate) const VERDICT_OK: &str = "ok";
/// The first line of a failing verdict; the message follows on the next lines.
pub(crate) const VERDICT_FAILED: &str = "failed";

/// After asking the supervisor for its timeout report, how long it may take
/// before the child is killed without one.
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// After the child exited, how long a process it left behind may keep the
/// output pipes open before the runner stops reading them.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Whether the child's output is captured or goes straight to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Captured, shown for failing tests (and with `--show-output`).
    Captured,
    /// `--nocapture`: the child inherits stdout and stderr.
    Inherited,
}

/// Failing to run a test's child process at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildRunError {
    #[error("find the path of the test binary to start it again")]
    CurrentExe(#[source] io::Error),
    #[error("create a pipe for the test process's {what}")]
    Pipe {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("start the test process `{exe} --exact {test}`")]
    Spawn {
        exe: String,
        test: String,
        #[source]
        source: io::Error,
    },
    #[error("watch the test process (pid {pid}) with pidfd_open (Linux 5.3 or later)")]
    Pidfd {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("wait for the test process (pid {pid})")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// What a child run of one test produced.
#[derive(Debug)]
pub(crate) struct ChildOutcome {
    /// `Ok`, or the failure message (without the output).
    pub(crate) result: Result<(), String>,
    /// Its stdout and stderr, interleaved as written (empty with `--nocapture`).
    pub(crate) output: String,
}

/// How the wait for the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It exited before its deadline.
    InTime,
    /// It ran out of time; the supervisor printed its report and exited.
    TimedOutReported,
    /// It ran out of time and did not answer the report request in time.
    TimedOutKilled,
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe(what: &'static str) -> Result<(OwnedFd, OwnedFd), ChildRunError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ChildRunError::Pipe {
            what,
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs `desc` in a child process and waits for it at most `limit`.
pub(crate) fn run_in_child(
    desc: &TestDesc,
    limit: Limit,
    capture: Capture,
) -> Result<ChildOutcome, ChildRunError> {
    let name = desc.full_name();
    let exe = std::env::current_exe().map_err(ChildRunError::CurrentExe)?;
    let (result_r, result_w) = pipe("verdict")?;
    let mut command = Command::new(&exe);
    command
        .args(["--exact", &name])
        .env(RUN_ONE_ENV, &name)
        .env(RESULT_FD_ENV, result_w.as_raw_fd().to_string())
        .stdin(Stdio::null());
    let mut output_r = None;
    if capture == Capture::Captured {
        let (r, w) = pipe("output")?;
        let w2 = w.try_clone().map_err(|source| ChildRunError::Pipe {
            what: "output",
            source,
        })?;
        command.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
        output_r = Some(r);
    }
    let keep = result_w.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (fcntl, prctl).
    unsafe {
        command.pre_exec(move || {
            // The verdict pipe survives exec in this child only.
            if libc::fcntl(keep, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The child dies with the thread that waits for it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        })
    };
    let child = command.spawn().map_err(|source| ChildRunError::Spawn {
        exe: exe.display().to_string(),
        test: name.clone(),
        source,
    })?;
    // Only the child holds the write ends now: EOF comes when it is done.
    drop(command);
    drop(result_w);
    let watched = watch(child, output_r, result_r, limit.duration)?;
    Ok(judge(desc, limit, watched))
}

/// What [`watch`] collected.
struct Watched {
    status: ExitStatus,
    ending: Ending,
    output: Vec<u8>,
    verdict: Vec<u8>,
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads what is available on `fd` into `into`; false at end of file (or
/// an error other than EINTR/EAGAIN).
fn read_some(fd: &OwnedFd, into: &mut Vec<u8>) -> bool {
    let mut chunk = vec![0u8; READ_CHUNK];
    // SAFETY: `chunk` is valid for writes of its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
    match n {
        n if n > 0 => {
            into.extend_from_slice(&chunk[..n as usize]);
            true
        }
        0 => false,
        _ => matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EINTR | libc::EAGAIN)
        ),
    }
}

/// Blocks in `poll` until the child has exited and its pipes are closed,
/// reading them as they fill; asks for a report and kills the child when
/// its deadline passes (see the module documentation).
fn watch(
    mut child: Child,
    output_r: Option<OwnedFd>,
    result_r: OwnedFd,
    limit: Duration,
) -> Result<Watched, ChildRunError> {
    let pid = child.id();
    // Without pidfd_open (Linux before 5.3, or under valgrind, which does not
    // know the call) the child's exit is seen as the end of its pipes, and
    // the runner then waits for it.
    let pidfd = match pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(source) if source.raw_os_error() == Some(libc::ENOSYS) => None,
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ChildRunError::Pidfd { pid, source });
        }
    };
    let mut output = Vec::new();
    let mut verdict = Vec::new();
    let mut output_r = output_r;
    let mut result_r = Some(result_r);
    let mut status: Option<ExitStatus> = None;
    let mut ending = Ending::InTime;
    let mut deadline = Instant::now() + limit;
    loop {
        if status.is_none() && pidfd.is_none() && output_r.is_none() && result_r.is_none() {
            // The pipes ended: the child has exited or is about to.
            let s = child
                .wait()
                .map_err(|source| ChildRunError::Wait { pid, source })?;
            status = Some(s);
        }
        if status.is_some() && output_r.is_none() && result_r.is_none() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            match (status, ending) {
                (Some(_), _) => break, // a process the test left keeps the pipes open
                (None, Ending::InTime) => {
                    // SAFETY: kill with the pid of our unreaped child.
                    unsafe { libc::kill(pid as libc::pid_t, REPORT_SIGNAL) };
                    ending = Ending::TimedOutReported;
                    deadline = now + REPORT_GRACE;
                    continue;
                }
                (None, _) => {
                    ending = Ending::TimedOutKilled;
                    let _ = child.kill();
                    let s = child
                        .wait()
                        .map_err(|source| ChildRunError::Wait { pid, source })?;
                    status = Some(s);
                    deadline = Instant::now() + OUTPUT_GRACE;
                    continue;
                }
            }
        }
        let mut fds = Vec::with_capacity(3);
        let no_fd = -1;
        fds.push(libc::pollfd {
            fd: match (&pidfd, status) {
                (Some(fd), None) => fd.as_raw_fd(),
                _ => no_fd,
            },
            events: libc::POLLIN,
            revents: 0,
        });
        for fd in [&output_r, &result_r] {
            fds.push(libc::pollfd {
                fd: fd.as_ref().map_or(no_fd, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let wait_ms = deadline
            .saturating_duration_since(now)
            .as_millis()
            .saturating_add(1)
            .min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of its length; negative fds are ignored.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(ChildRunError::Wait { pid, source: e });
        }
        let ready = |i: usize| fds[i].revents != 0;
        if ready(1)
            && let Some(fd) = &output_r
            && !read_some(fd, &mut output)
        {
            output_r = None;
        }
        if ready(2)
            && let Some(fd) = &result_r
            && !read_some(fd, &mut verdict)
        {
            result_r = None;
        }
        if ready(0) && status.is_none() {
            let s = child
                .wait()
                .map_err(|source| ChildRunError::Wait { pid, source })?;
            status = Some(s);
            if ending == Ending::TimedOutReported && s.code() != Some(REPORTED_EXIT_CODE) {
                ending = Ending::TimedOutKilled;
            }
            deadline = Instant::now() + OUTPUT_GRACE;
        }
    }
    let status = match status {
        Some(s) => s,
        None => child
            .wait()
            .map_err(|source| ChildRunError::Wait { pid, source })?,
    };
    Ok(Watched {
        status,
        ending,
        output,
        verdict,
    })
}

/// `killed by SIGSEGV` / `exited with status 3`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
        let core = if status.core_dumped() {
            " (core dumped)"
        } else {
            ""
        };
        format!("was killed by {name}{core}")
    } else {
        match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("ended with wait status {status:?}"),
        }
    }
}

/// Turns what the child did into the test's outcome.
fn judge(desc: &TestDesc, limit: Limit, watched: Watched) -> ChildOutcome {
    let name = desc.full_name();
    let at = format!("{}:{}", desc.file, desc.line);
    let output = String::from_utf8_lossy(&watched.output).into_owned();
    let verdict = String::from_utf8_lossy(&watched.verdict);
    let (head, message) = verdict.split_once('\n').unwrap_or((&verdict, ""));
    let status = describe_status(watched.status);
    let result = match (watched.ending, head) {
        (Ending::TimedOutReported, _) => Err(format!(
            "test `{name}` ({at}) timed out (limit {limit}) and was killed; the \
             supervisor's report above says where its threads were"
        )),
        (Ending::TimedOutKilled, _) => Err(format!(
            "test `{name}` ({at}) timed out (limit {limit}); its process did not answer \
             the request for a report within {REPORT_GRACE:?} and was killed ({status})"
        )),
        (Ending::InTime, VERDICT_OK) if watched.status.success() => Ok(()),
        (Ending::InTime, VERDICT_OK) => Err(format!(
            "test `{name}` ({at}) passed, but then its process {status}"
        )),
        (Ending::InTime, VERDICT_FAILED) => Err(message.to_owned()),
        (Ending::InTime, _) => {
            let report = if output.contains("traced-ffi supervisor:") {
                "; the supervisor's report above names the call and what happened"
            } else {
                ""
            };
            Err(format!(
                "test `{name}` ({at}): its process {status} before the test finished{report}"
            ))
        }
    };
    ChildOutcome { result, output }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_the_signal_or_the_exit_code() {
        assert_eq!(
            describe_status(ExitStatus::from_raw(libc::SIGSEGV)),
            "was killed by SIGSEGV"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }
}
