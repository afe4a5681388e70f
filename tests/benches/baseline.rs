//! What the traced figures are compared with, measured in the same run: the
//! ptrace stop floor (one stop and resume, tracer and tracee on one CPU) and
//! valgrind memcheck running the same C work as a whole process.

use std::process::Command;
use std::time::{Duration, Instant};

use traced_ffi_fixtures::o2;

/// Stops in one floor measurement.
const FLOOR_STOPS: usize = 20_000;

/// The command-line flag that makes the bench binary run one workload
/// natively (for memcheck) and exit.
pub const NATIVE_FLAG: &str = "--native";

/// The workloads a memcheck row runs: name, bytes, what it does.
pub const WORKLOADS: [(&str, usize, &str); 3] = [
    ("fill", 10_000, "fill_bytes_o2, 10 000 one-byte stores"),
    ("sum", 10_000, "sum_bytes_o2, 10 000 one-byte loads"),
    ("memcpy", 1 << 20, "glibc memcpy of 1 MiB"),
];

/// Runs workload `name` natively, once, and returns (the process then exits).
pub fn run_native(name: &str) {
    let Some(&(_, n, _)) = WORKLOADS.iter().find(|w| w.0 == name) else {
        if !crate::scaling::run_native(name) {
            eprintln!("unknown workload {name:?}, or its library is missing");
            std::process::exit(2);
        }
        return;
    };
    let mut dst = vec![0u8; n];
    let src = vec![1u8; n];
    match name {
        // SAFETY: dst holds n bytes.
        "fill" => unsafe { o2::fill_bytes(dst.as_mut_ptr(), n, 1) },
        "sum" => {
            // SAFETY: src holds n bytes.
            std::hint::black_box(unsafe { o2::sum_bytes(src.as_ptr(), n) });
        }
        _ => {
            let memcpy = std::hint::black_box(libc::memcpy);
            // SAFETY: both hold n bytes and do not overlap.
            unsafe { memcpy(dst.as_mut_ptr().cast(), src.as_ptr().cast(), n) };
        }
    }
    std::hint::black_box(&dst);
}

/// Whole-process wall time of `valgrind --tool=memcheck <this binary> --native
/// <workload>` and of the same command without valgrind, medians of `runs`;
/// `None` when valgrind is not installed.
pub fn memcheck(workload: &str, runs: usize) -> Option<(Duration, Duration)> {
    let exe = std::env::current_exe().ok()?;
    let time = |valgrind: bool| -> Option<Duration> {
        let mut times = Vec::new();
        for _ in 0..runs {
            let mut cmd = if valgrind {
                let mut c = Command::new("valgrind");
                c.args(["--tool=memcheck", "-q", "--error-exitcode=0"])
                    .arg(&exe);
                c
            } else {
                Command::new(&exe)
            };
            cmd.args([NATIVE_FLAG, workload]);
            let start = Instant::now();
            let status = cmd.output().ok()?.status;
            if !status.success() {
                return None;
            }
            times.push(start.elapsed());
        }
        times.sort();
        times.get(times.len() / 2).copied()
    };
    Some((time(true)?, time(false)?))
}

/// One ptrace stop and resume, in µs: a forked child executes `int3`
/// [`FLOOR_STOPS`] times under `PTRACE_SEIZE`, both pinned to this CPU.
/// Must run before any thread exists (it forks).
pub fn stop_floor() -> Option<f64> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a valid out-parameter of the size given.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) } != 0 {
        return None;
    }
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE: it came from sched_getcpu.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t of the size given.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) };
    let result = floor_pinned();
    // SAFETY: `old` came from sched_getaffinity.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &old) };
    result
}

fn floor_pinned() -> Option<f64> {
    // SAFETY: the process has one thread (the caller's contract): the child
    // runs only async-signal-safe code (a stop, int3s, _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return None;
    }
    if pid == 0 {
        // SAFETY: stopping ourselves until the parent has seized us.
        unsafe { libc::raise(libc::SIGSTOP) };
        for _ in 0..FLOOR_STOPS {
            // SAFETY: int3 traps to the tracer, which resumes after it.
            unsafe { std::arch::asm!("int3") };
        }
        // SAFETY: leaving the child without running the parent's atexit code.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child's stop.
    unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    // SAFETY: ptrace requests on our own stopped child with valid arguments.
    let seized = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            0,
            libc::PTRACE_O_EXITKILL as libc::c_long,
        )
    } == 0;
    // SAFETY: resuming our own child from its group-stop.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    if !seized {
        // SAFETY: waiting for our own child, which ends at its first int3.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return None;
    }
    let mut stops = 0usize;
    let mut start = None;
    loop {
        // SAFETY: waiting for our own traced child.
        if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
            return None;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break;
        }
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if sig == libc::SIGTRAP && event == 0 {
            stops += 1;
            start.get_or_insert_with(Instant::now);
        }
        // Suppress our traps; let SIGCONT and the stop's events go on.
        let deliver = if sig == libc::SIGTRAP || sig == libc::SIGSTOP || event != 0 {
            0
        } else {
            sig
        };
        // SAFETY: resuming our own stopped child.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, deliver as libc::c_long) };
    }
    let elapsed = start?.elapsed();
    if stops != FLOOR_STOPS {
        eprintln!("stop floor: counted {stops} int3 stops, expected {FLOOR_STOPS}");
        return None;
    }
    Some(elapsed.as_secs_f64() * 1e6 / (stops - 1) as f64)
}
