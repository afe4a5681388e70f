//! What tracing costs: per traced access, per traced call, at start-up and
//! while idle, and on realistic workloads at realistic sizes (the scaling
//! table). `cargo bench -p traced-ffi-tests --bench tracing`; add `-- scaling`
//! for the scaling table only, or `-- <text>` for the rows whose name has it.
//!
//! Run it as is (the harness pins the calling thread and the supervisor to
//! one CPU during a call, as an ordinary `cargo test` run gets it), and with
//! `taskset -c 0` to see the figure with the whole process pinned by hand.
//!
//! `cargo bench -p traced-ffi-tests --bench tracing -- WORDS` measures only
//! the rows whose text contains WORDS (and skips memcheck): for example
//! `-- "empty traced call"`; `-- "scaling:copy loop"` the scaling rows whose
//! text contains `copy loop`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use traced_ffi::{Trace, Tracer};
use traced_ffi_fixtures::{alloc, o2};

mod baseline;
mod scaling;

/// Repetitions of each measurement; the median is reported.
const RUNS: usize = 7;
/// Accesses in one scalar measurement.
const SCALAR_ACCESSES: usize = 10_000;

std::arch::global_asm!(
    ".pushsection .text.bench_rep,\"ax\",@progbits",
    ".globl bench_rep_movsb",
    "bench_rep_movsb:", // (dst, src, n)
    "    mov rcx, rdx",
    "    rep movsb",
    "    ret",
    ".globl bench_rep_stosb",
    "bench_rep_stosb:", // (dst, v, n)
    "    mov eax, esi",
    "    mov rcx, rdx",
    "    rep stosb",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
    /// `rep movsb`: copies `n` bytes from `src` to `dst`.
    fn bench_rep_movsb(dst: *mut u8, src: *const u8, n: usize);
    /// `rep stosb`: sets `n` bytes of `dst` to `v`.
    fn bench_rep_stosb(dst: *mut u8, v: u8, n: usize);
}

struct Row {
    what: &'static str,
    per: &'static str,
    us: f64,
    requests: f64,
    stops: f64,
    path: String,
}

/// The text a row must contain to be measured: the first argument that is
/// not a flag (`cargo bench` passes `--bench`), if any.
fn filter() -> Option<&'static str> {
    static FILTER: OnceLock<Option<String>> = OnceLock::new();
    FILTER
        .get_or_init(|| std::env::args().skip(1).find(|a| !a.starts_with("--")))
        .as_deref()
}

/// True if row `what` is measured in this run.
fn selected(what: &str) -> bool {
    filter().is_none_or(|f| what.contains(f))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `one` RUNS times; each returns (elapsed, trace, units); reports the
/// median time per unit and the stats of the last run per unit.
fn measure(
    what: &'static str,
    per: &'static str,
    mut one: impl FnMut() -> (Duration, Trace, usize),
) -> Row {
    if !selected(what) {
        return Row {
            what,
            per,
            us: f64::NAN,
            requests: 0.0,
            stops: 0.0,
            path: String::new(),
        };
    }
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let (elapsed, trace, units) = one();
        times.push(elapsed.as_secs_f64() * 1e6 / units as f64);
        last = Some((trace, units));
    }
    let Some((trace, units)) = last else {
        unreachable!("RUNS > 0")
    };
    let s = trace.stats();
    Row {
        what,
        per,
        us: median(times),
        requests: s.ptrace_requests as f64 / units as f64,
        stops: s.stops as f64 / units as f64,
        path: if s.faults == 0 {
            "-".to_owned()
        } else {
            format!(
                "emu {} / stub {} / step {} / cache entries {}",
                s.emulated, s.stub_path, s.step_path, s.cache_entries
            )
        },
    }
}

/// CPU seconds (user + system) used so far by process `pid`.
fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, workload, ..] = args.as_slice()
        && flag == baseline::NATIVE_FLAG
    {
        baseline::run_native(workload);
        return;
    }
    // Before the supervisor: both fork.
    let floor = baseline::stop_floor();
    let memcheck: Vec<_> = baseline::WORKLOADS
        .iter()
        .filter(|_| filter().is_none())
        .map(|&(name, _, what)| (name, what, baseline::memcheck(name, 3)))
        .collect();

    let t0 = Instant::now();
    traced_ffi::start_supervisor_or_exit();
    let startup = t0.elapsed();
    // SAFETY: getppid has no preconditions.
    let supervisor = unsafe { libc::getppid() };

    let idle_before = cpu_seconds(supervisor);
    std::thread::sleep(Duration::from_secs(1));
    let idle_after = cpu_seconds(supervisor);

    let mut t = Tracer::new("bench");
    // `-- scaling:WORDS`: the scaling rows whose text has WORDS, without
    // memcheck.
    let rows = filter().and_then(|f| f.strip_prefix("scaling:"));
    if filter().is_none_or(|f| f == "scaling") || rows.is_some() {
        let valgrind = rows.is_none()
            && std::process::Command::new("valgrind")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        scaling::table(&mut t, valgrind, 64 << 10, rows.unwrap_or(""));
        if let Some(us) = floor {
            println!("ptrace stop floor (int3 stop + PTRACE_CONT, one CPU): {us:.2} µs per stop");
        }
    }
    if filter().is_some_and(|f| f.starts_with("scaling")) {
        return;
    }
    let mut rows = Vec::new();

    let mut buf = t.buffer("buf", SCALAR_ACCESSES);
    rows.push(measure(
        "store: mov [rdi],dl (fill_bytes_o2)",
        "access",
        || {
            let start = Instant::now();
            // SAFETY: buf holds SCALAR_ACCESSES bytes.
            let ((), trace) =
                t.call(|| unsafe { o2::fill_bytes(buf.as_mut_ptr(), SCALAR_ACCESSES, 1) });
            (start.elapsed(), trace, SCALAR_ACCESSES)
        },
    ));
    rows.push(measure(
        "load: movzx edx,[rdi] (sum_bytes_o2)",
        "access",
        || {
            let start = Instant::now();
            // SAFETY: buf holds SCALAR_ACCESSES bytes.
            let (_, trace) = t.call(|| unsafe { o2::sum_bytes(buf.as_ptr(), SCALAR_ACCESSES) });
            (start.elapsed(), trace, SCALAR_ACCESSES)
        },
    ));
    rows.push(measure(
        "read-modify-write: add [rdi],1 (increment_u32_o2)",
        "instruction",
        || {
            let start = Instant::now();
            // SAFETY: buf holds SCALAR_ACCESSES / 4 u32.
            let ((), trace) = t.call(|| unsafe {
                o2::increment_u32(buf.as_mut_ptr().cast(), SCALAR_ACCESSES / 4)
            });
            (start.elapsed(), trace, SCALAR_ACCESSES / 4)
        },
    ));
    drop(buf);

    const VECTOR_CALLS: usize = 1000;
    let mut dst = t.buffer("dst", 32);
    let a = t.buffer("a", 32);
    let b = t.buffer("b", 32);
    rows.push(measure(
        "SSE: movdqu load + store (copy16_sse_o2)",
        "instruction",
        || {
            let start = Instant::now();
            let ((), trace) = t.call(|| {
                for _ in 0..VECTOR_CALLS {
                    // SAFETY: both buffers hold at least 16 bytes.
                    unsafe { o2::copy16_sse(dst.as_mut_ptr(), a.as_ptr()) };
                }
            });
            (start.elapsed(), trace, 2 * VECTOR_CALLS)
        },
    ));
    if traced_ffi_fixtures::avx2_available() {
        rows.push(measure(
            "AVX2: vmovdqu, vpaddd ymm,[m], vmovdqu (add8_i32_avx2_o2)",
            "instruction",
            || {
                let start = Instant::now();
                let ((), trace) = t.call(|| {
                    for _ in 0..VECTOR_CALLS {
                        // SAFETY: the buffers hold 8 i32 each.
                        unsafe {
                            o2::add8_i32_avx2(
                                dst.as_mut_ptr().cast(),
                                a.as_ptr().cast(),
                                b.as_ptr().cast(),
                            )
                        };
                    }
                });
                (start.elapsed(), trace, 3 * VECTOR_CALLS)
            },
        ));
    }
    for (what, n) in [
        ("rep movsb, 4 KiB (one instruction)", 4usize << 10),
        ("rep movsb, 1 MiB (one instruction)", 1 << 20),
    ] {
        let src = t.buffer("src", n);
        let mut dst = t.buffer("dst", n);
        rows.push(measure(what, "instruction", || {
            let start = Instant::now();
            // SAFETY: both buffers hold n bytes.
            let ((), trace) =
                t.call(|| unsafe { bench_rep_movsb(dst.as_mut_ptr(), src.as_ptr(), n) });
            (start.elapsed(), trace, 1)
        }));
    }
    for (what, n) in [
        ("rep stosb, 4 KiB (one instruction)", 4usize << 10),
        ("rep stosb, 1 MiB (one instruction)", 1 << 20),
    ] {
        let mut dst = t.buffer("dst", n);
        rows.push(measure(what, "instruction", || {
            let start = Instant::now();
            // SAFETY: the buffer holds n bytes.
            let ((), trace) = t.call(|| unsafe { bench_rep_stosb(dst.as_mut_ptr(), 7, n) });
            (start.elapsed(), trace, 1)
        }));
    }
    {
        const N: usize = 1 << 20;
        let src = t.buffer("src", N);
        let mut dst = t.buffer("dst", N);
        let memcpy = std::hint::black_box(libc::memcpy);
        rows.push(measure(
            "glibc memcpy, 1 MiB (this CPU's variant)",
            "call",
            || {
                let start = Instant::now();
                // SAFETY: both buffers hold N bytes and do not overlap.
                let (_, trace) =
                    t.call(|| unsafe { memcpy(dst.as_mut_ptr().cast(), src.as_ptr().cast(), N) });
                (start.elapsed(), trace, 1)
            },
        ));
    }
    {
        // System calls that touch no buffer: the seccomp filter lets them run.
        const N: usize = 10_000;
        // SAFETY: opening /dev/null for writing has no preconditions.
        let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY) };
        let untracked = [7u8; 64];
        let getppid_loop = || {
            for _ in 0..N {
                // SAFETY: getppid has no preconditions.
                std::hint::black_box(unsafe { libc::getppid() });
            }
        };
        let write_loop = || {
            for _ in 0..N {
                // SAFETY: `untracked` holds 64 bytes; devnull is open.
                std::hint::black_box(unsafe {
                    libc::write(devnull, untracked.as_ptr().cast(), 64)
                });
            }
        };
        let iov = [
            libc::iovec {
                iov_base: untracked.as_ptr().cast_mut().cast(),
                iov_len: 32,
            },
            libc::iovec {
                iov_base: untracked[32..].as_ptr().cast_mut().cast(),
                iov_len: 32,
            },
        ];
        let writev_loop = || {
            for _ in 0..N {
                // SAFETY: two iovecs over `untracked`; devnull is open.
                std::hint::black_box(unsafe { libc::writev(devnull, iov.as_ptr(), 2) });
            }
        };
        let _buf = t.buffer("registered", 64);
        for (what, f) in [
            (
                "getppid() inside a traced call, minus untraced",
                &getppid_loop as &dyn Fn(),
            ),
            (
                "write(/dev/null, untracked, 64) inside a traced call, minus untraced",
                &write_loop,
            ),
        ] {
            if !selected(what) {
                continue;
            }
            let untraced = median(
                (0..RUNS)
                    .map(|_| {
                        let start = Instant::now();
                        f();
                        start.elapsed().as_secs_f64() * 1e6 / N as f64
                    })
                    .collect(),
            );
            let mut row = measure(what, "syscall", || {
                let start = Instant::now();
                let ((), trace) = t.call(f);
                (start.elapsed(), trace, N)
            });
            row.us -= untraced;
            rows.push(row);
        }
        // writev stops on a thread that has made a traced call (and on the threads
        // it creates): its absolute cost outside and inside a call.
        let outside = if !selected("writev(") {
            f64::NAN
        } else {
            median(
                (0..RUNS)
                    .map(|_| {
                        let start = Instant::now();
                        writev_loop();
                        start.elapsed().as_secs_f64() * 1e6 / N as f64
                    })
                    .collect(),
            )
        };
        rows.push(Row {
            what: "writev(/dev/null, untracked) outside calls, absolute",
            per: "syscall",
            us: outside,
            requests: 2.0,
            stops: 1.0,
            path: "-".to_owned(),
        });
        let mut inside = measure(
            "writev(/dev/null, untracked) inside a call, absolute",
            "syscall",
            || {
                let start = Instant::now();
                let ((), trace) = t.call(writev_loop);
                (start.elapsed(), trace, N)
            },
        );
        inside.path = "-".to_owned();
        rows.push(inside);
        // pthread_sigmask on a thread that has traced: followed by the supervisor.
        let mask_loop = || {
            for _ in 0..N {
                // SAFETY: an empty set; the old mask is not asked for.
                unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
            }
        };
        let mask_outside = if !selected("pthread_sigmask(") {
            f64::NAN
        } else {
            median(
                (0..RUNS)
                    .map(|_| {
                        let start = Instant::now();
                        mask_loop();
                        start.elapsed().as_secs_f64() * 1e6 / N as f64
                    })
                    .collect(),
            )
        };
        rows.push(Row {
            what: "pthread_sigmask(SIG_BLOCK, empty) outside calls, absolute",
            per: "syscall",
            us: mask_outside,
            requests: 3.0,
            stops: 1.0,
            path: "-".to_owned(),
        });
        let mut mask_inside = measure(
            "pthread_sigmask(SIG_BLOCK, empty) inside a call, absolute",
            "syscall",
            || {
                let start = Instant::now();
                let ((), trace) = t.call(mask_loop);
                (start.elapsed(), trace, N)
            },
        );
        mask_inside.path = "-".to_owned();
        rows.push(mask_inside);
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(devnull) };
    }
    {
        // A traced read of 64 KiB from a file into a buffer: one Access.
        const N: usize = 64 << 10;
        let path = std::env::temp_dir().join(format!("traced-ffi-bench-{}", std::process::id()));
        if std::fs::write(&path, vec![5u8; N]).is_ok()
            && let Ok(file) = std::fs::File::open(&path)
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            let mut buf = t.buffer("buf", N);
            let pread = std::hint::black_box(libc::pread);
            let untraced = {
                let mut plain = vec![0u8; N];
                median(
                    (0..RUNS)
                        .map(|_| {
                            let start = Instant::now();
                            // SAFETY: `plain` holds N bytes.
                            unsafe { pread(fd, plain.as_mut_ptr().cast(), N, 0) };
                            start.elapsed().as_secs_f64() * 1e6
                        })
                        .collect(),
                )
            };
            let mut row = measure(
                "pread(file, buf, 64 KiB): traced call minus untraced pread",
                "call",
                || {
                    let start = Instant::now();
                    // SAFETY: the buffer holds N bytes.
                    let (_, trace) = t.call(|| unsafe { pread(fd, buf.as_mut_ptr().cast(), N, 0) });
                    (start.elapsed(), trace, 1)
                },
            );
            row.us -= untraced;
            rows.push(row);
        }
        let _ = std::fs::remove_file(&path);
    }
    for threads in [1, 4] {
        // Native threads writing a buffer at once: with more than one thread in
        // the call, the others are stopped while one runs with pages open.
        const N: usize = 2000;
        let mut buf = t.buffer("buf", N);
        let what = if threads == 1 {
            "byte stores from 1 native thread (parallel_fill)"
        } else {
            "byte stores from 4 native threads at once (parallel_fill)"
        };
        rows.push(measure(what, "access", || {
            let mut tids = [0i32; 4];
            let start = Instant::now();
            // SAFETY: the buffer holds N bytes, `tids` room for 4 ints.
            let (_, trace) = t.call(|| unsafe {
                traced_ffi_fixtures::os::parallel_fill(
                    buf.as_mut_ptr(),
                    N,
                    threads,
                    tids.as_mut_ptr(),
                )
            });
            (start.elapsed(), trace, N)
        }));
    }
    for threads in [1, 4] {
        // `add dword [m], 1` (the stub path) from several native threads: the others
        // are stopped while one runs with its page open.
        const WORDS: usize = 256;
        const ROUNDS: i32 = 4;
        let mut buf = t.buffer("words", 4 * WORDS);
        let what = if threads == 1 {
            "add [m],1 from 1 native thread (parallel_add)"
        } else {
            "add [m],1 from 4 native threads at once (parallel_add)"
        };
        rows.push(measure(what, "instruction", || {
            let start = Instant::now();
            // SAFETY: the buffer holds WORDS u32s, 4-aligned.
            let (_, trace) = t.call(|| unsafe {
                traced_ffi_fixtures::os::parallel_add(
                    buf.as_mut_ptr().cast(),
                    WORDS,
                    threads,
                    ROUNDS,
                )
            });
            (start.elapsed(), trace, WORDS * ROUNDS as usize)
        }));
    }
    {
        // Allocation tracing on and off, measured in alternation so that both
        // see the same load.
        const EMPTY_CALLS: usize = 2000;
        let on_what = "empty traced call (3 buffers registered)";
        let off_what = "empty traced call, t.trace_allocations(false)";
        let mut times = [Vec::new(), Vec::new()];
        let mut last = [None, None];
        if selected(on_what) || selected(off_what) {
            for _ in 0..RUNS {
                for (i, on) in [true, false].into_iter().enumerate() {
                    t.trace_allocations(on);
                    let start = Instant::now();
                    for _ in 0..EMPTY_CALLS {
                        let ((), trace) = t.call(|| ());
                        last[i] = Some(trace);
                    }
                    times[i].push(start.elapsed().as_secs_f64() * 1e6 / EMPTY_CALLS as f64);
                }
            }
            t.trace_allocations(true);
        }
        for ((what, times), last) in [on_what, off_what].into_iter().zip(times).zip(last) {
            let s = last.unwrap_or_default().stats().clone();
            rows.push(Row {
                what,
                per: "call",
                us: if times.is_empty() {
                    f64::NAN
                } else {
                    median(times)
                },
                requests: s.ptrace_requests as f64,
                stops: s.stops as f64,
                path: "-".to_owned(),
            });
        }
    }
    drop((dst, a, b));
    {
        // malloc + free in C, into a stack array (no buffer access): the
        // allocator's breakpoints alone.
        const PAIRS: usize = 1000;
        for (what, on) in [
            ("malloc(24) + free, recorded (alloc_malloc_free)", true),
            ("same, t.trace_allocations(false)", false),
        ] {
            t.trace_allocations(on);
            rows.push(measure(what, "pair", || {
                let mut local = [0u8; 2];
                let start = Instant::now();
                let ((), trace) = t.call(|| {
                    for _ in 0..PAIRS {
                        // SAFETY: local holds 2 bytes.
                        unsafe { alloc::alloc_malloc_free(local.as_mut_ptr(), 24) };
                    }
                });
                (start.elapsed(), trace, PAIRS)
            }));
        }
        t.trace_allocations(true);
    }

    println!("traced-ffi benchmark (median of {RUNS} runs)");
    println!(
        "{:<58} {:>10} {:>13} {:>11}  path (faults of the last run)",
        "what", "µs", "requests/op", "stops/op"
    );
    for r in rows.iter().filter(|r| selected(r.what) && !r.us.is_nan()) {
        println!(
            "{:<58} {:>7.2}/{:<2} {:>13.2} {:>11.2}  {}",
            r.what,
            r.us,
            &r.per[..2],
            r.requests,
            r.stops,
            r.path
        );
    }
    match floor {
        Some(us) => {
            println!("ptrace stop floor (int3 stop + PTRACE_CONT, one CPU): {us:.2} µs per stop")
        }
        None => println!("ptrace stop floor: not measurable here"),
    }
    println!("valgrind memcheck on the same C work, whole process (median of 3):");
    for (name, what, times) in &memcheck {
        let traced = rows
            .iter()
            .find(|r| {
                r.what.contains(match *name {
                    "fill" => "fill_bytes_o2",
                    "sum" => "sum_bytes_o2",
                    _ => "glibc memcpy",
                })
            })
            .map(|r| match *name {
                "memcpy" => r.us / 1e3,
                _ => r.us * SCALAR_ACCESSES as f64 / 1e3,
            });
        match (times, traced) {
            (Some((vg, native)), Some(traced_ms)) => println!(
                "  {what:<42} memcheck {:>8.1} ms   native process {:>6.1} ms   traced call {traced_ms:>8.1} ms",
                vg.as_secs_f64() * 1e3,
                native.as_secs_f64() * 1e3
            ),
            _ => println!("  {what:<42} memcheck: valgrind not installed or failed"),
        }
    }
    println!(
        "fork + seize + handshake at start-up: {:.2} ms (an untraced harness spends 0)",
        startup.as_secs_f64() * 1e3
    );
    match (idle_before, idle_after) {
        (Some(b), Some(a)) => println!("supervisor CPU while idle for 1 s: {:.3} s", a - b),
        _ => println!("supervisor CPU while idle: not readable"),
    }
}
