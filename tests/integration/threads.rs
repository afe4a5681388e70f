//! Threads started by native code during a traced call (issue 5, item 2): a new
//! thread's accesses to traced buffers are recorded like the calling thread's, with
//! `tid` the new thread's kernel id; a thread still running when the call returns is
//! named in a note, and its later accesses (to memory no longer protected) just run.
//!
//! The fixtures (`traced_ffi_fixtures::os`) store each thread's `gettid()` in untraced
//! memory, so each test knows which thread should have made which access. Between
//! threads the order of accesses is not fixed: the tests compare each thread's own
//! accesses, in order, and the byte sets. Every test runs [`isolated`] (alone, in a
//! child process): a thread the tracer does not follow dies of its first fault on a
//! protected page, and takes the process with it.

use std::ffi::c_int;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::sleep;
use std::time::{Duration, Instant};

use traced_ffi::{Access, Tracer, traced_ffi};
use traced_ffi_fixtures::os as fx;

use crate::check::current_tid;
use crate::os_check::{
    Row, assert_rows, assert_tracer_still_works, c, isolated, kernel, names_tid,
};

/// Bytes `parallel_fill` fills, and how many threads share them (unequal slices:
/// 1000 / 3 is not whole).
const FILL_BYTES: usize = 1000;
const FILL_THREADS: usize = 3;

/// What `parallel_fill(buf, n, k)` leaves in `buf`: slice `i` holds `i + 1`.
fn filled(n: usize, k: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    for i in 0..k {
        v[i * n / k..(i + 1) * n / k].fill(i as u8 + 1);
    }
    v
}

#[traced_ffi]
fn threads_filling_slices_each_record_their_own_writes_with_their_own_tid(t: &mut Tracer) {
    isolated(t, |t| {
        let (n, k) = (FILL_BYTES, FILL_THREADS);
        let mut plain = vec![0u8; n];
        let mut plain_tids = vec![0 as c_int; k];
        // SAFETY: `plain` is valid for writes of n bytes, `plain_tids` of k ints.
        let r = unsafe {
            fx::parallel_fill(plain.as_mut_ptr(), n, k as c_int, plain_tids.as_mut_ptr())
        };
        assert_eq!(r, 0);
        assert_eq!(plain, filled(n, k));

        let mut buf = t.buffer("buf", n);
        let p = buf.as_mut_ptr();
        let mut tids = vec![0 as c_int; k];
        let tp = tids.as_mut_ptr();
        // SAFETY: `buf` is valid for writes of n bytes, `tids` (untraced) of k ints.
        let (r, trace) = t.call(|| unsafe { fx::parallel_fill(p, n, k as c_int, tp) });
        assert_eq!(r, 0, "\n{trace}");
        assert_eq!(&buf[..], &plain[..]);

        let me = current_tid();
        let mut distinct = tids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), k, "worker tids {tids:?}");
        assert!(
            !tids.contains(&me) && !tids.contains(&0),
            "worker tids {tids:?}"
        );

        // Each worker's own accesses, in order: one byte store per byte of its slice.
        for (i, &tid) in tids.iter().enumerate() {
            let mine: Vec<&Access> = trace.accesses().iter().filter(|a| a.tid == tid).collect();
            let want: Vec<Row> = (i * n / k..(i + 1) * n / k)
                .map(|j| Row::write(&buf, j, &[i as u8 + 1], c("os_fill_worker", "mov"), tid))
                .collect();
            assert_rows!(trace, mine, want);
        }
        // Nothing else: every byte written exactly once, by a worker.
        assert_eq!(trace.accesses().len(), n, "\n{trace}");
        assert_eq!(trace.written(&buf).ranges(), &[0..n]);
        assert!(trace.read(&buf).is_empty());
        assert!(trace.out_of_bounds().is_empty());
        assert_tracer_still_works(t);
    });
}

/// A pipe, both ends closed on drop.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn holding(data: &[u8]) -> Self {
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` is valid for writes of two c_ints.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 returned two new descriptors that nothing else owns.
        let pipe = unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        File::from(pipe.write.try_clone().expect("dup"))
            .write_all(data)
            .expect("write to the pipe");
        pipe
    }
}

#[traced_ffi]
fn a_thread_reading_a_pipe_into_a_buffer_is_one_kernel_write_with_its_tid(t: &mut Tracer) {
    isolated(t, |t| {
        let msg = b"read by another thread";
        let pipe = Pipe::holding(msg);
        let mut plain = [0u8; 32];
        let mut plain_tid: c_int = 0;
        let rfd = pipe.read.as_raw_fd();
        // SAFETY: `plain` is valid for writes of 32 bytes.
        let expected =
            unsafe { fx::thread_read(rfd, plain.as_mut_ptr().cast(), 32, &mut plain_tid) };
        assert_eq!(expected, msg.len() as isize);

        let pipe = Pipe::holding(msg);
        let rfd = pipe.read.as_raw_fd();
        let mut buf = t.buffer("buf", 32);
        let p = buf.as_mut_ptr();
        let mut tid: c_int = 0;
        let tp = &raw mut tid;
        // SAFETY: `buf` is valid for writes of 32 bytes; `tid` (untraced) of one int.
        let (r, trace) = t.call(|| unsafe { fx::thread_read(rfd, p.cast(), 32, tp) });
        assert_eq!(r, expected, "\n{trace}");
        assert_eq!(&buf[..], &plain[..]);
        assert!(tid != 0 && tid != current_tid(), "worker tid {tid}");
        assert_rows!(trace, [Row::write(&buf, 0, msg, kernel("read"), tid)]);
        assert_tracer_still_works(t);
    });
}

/// How long the late writer sleeps before it writes, and how long the test waits for
/// it at most.
const LATE_DELAY_MS: c_int = 100;
const LATE_WAIT: Duration = Duration::from_secs(5);

/// Waits until the late writer has written; fails after [`LATE_WAIT`].
fn wait_for_late_writer() {
    let deadline = Instant::now() + LATE_WAIT;
    // SAFETY: late_writer_done only reads a flag.
    while unsafe { fx::late_writer_done() } == 0 {
        assert!(
            Instant::now() < deadline,
            "the late writer did not write within {LATE_WAIT:?}"
        );
        sleep(Duration::from_millis(10));
    }
}

/// The writer sleeps past the end of the call, then writes `buf[0]`: the trace has a
/// note naming it, and its write, after the call, is reported on stderr as a late
/// access (the supervisor keeps watching the call's pages while the thread runs).
#[traced_ffi]
fn a_detached_thread_outliving_the_call_is_noted_and_its_late_write_reported(t: &mut Tracer) {
    let parent = isolated(t, |t| {
        let mut plain = [0u8; 4];
        let mut plain_tid: c_int = 0;
        // SAFETY: `plain` outlives the writer: we wait for it below.
        let r = unsafe { fx::start_late_writer(plain.as_mut_ptr(), LATE_DELAY_MS, &mut plain_tid) };
        assert_eq!(r, 0);
        wait_for_late_writer();
        assert_eq!(plain, [fx::LATE_VALUE, 0, 0, 0]);

        let mut buf = t.buffer("buf", 4);
        let p = buf.as_mut_ptr();
        let mut tid: c_int = 0;
        let tp = &raw mut tid;
        // SAFETY: `buf` outlives the writer (we wait for it below); `tid` is untraced.
        let (r, trace) = t.call(|| unsafe { fx::start_late_writer(p, LATE_DELAY_MS, tp) });
        assert_eq!(r, 0, "\n{trace}");
        assert!(tid != 0 && tid != current_tid(), "writer tid {tid}");
        // The thread sleeps through the rest of the call: no access, one note.
        assert_rows!(trace, []);
        let notes: Vec<&str> = trace.notes().iter().map(|n| n.text.as_str()).collect();
        assert!(
            notes.len() == 1 && notes[0].contains("still running") && names_tid(notes[0], tid),
            "expected one note saying thread {tid} is still running, got {notes:?}\n{trace}"
        );

        wait_for_late_writer();
        assert_eq!(&buf[..], &[fx::LATE_VALUE, 0, 0, 0]);
        eprintln!("late writer tid {tid}");
        assert_tracer_still_works(t);
    });
    if let Some(run) = parent {
        let tid = run
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("late writer tid "))
            .unwrap_or("?")
            .to_owned();
        let late = format!("thread {tid} write buf[0..1] (1 bytes) at os_late_writer+");
        assert!(
            run.stderr.contains("LATE ACCESS") && run.stderr.contains(&late),
            "expected a late access report containing {late:?}\n{}",
            run.dump()
        );
    }
}

/// Four threads each doing `add dword [m], 1` over their own words, ten rounds: every
/// read-modify-write is recorded once (a Read of the old value, a Write of the new one)
/// with its thread's id, and the other threads are stopped while one runs its
/// instruction in the stub (`stats().threads_stopped`).
#[traced_ffi]
fn threads_adding_through_the_stub_record_every_add_once_with_their_tid(t: &mut Tracer) {
    isolated(t, |t| {
        const WORDS: usize = 64;
        const THREADS: c_int = 4;
        const ROUNDS: c_int = 10;
        let mut buf = t.buffer("words", 4 * WORDS);
        let p = buf.as_mut_ptr().cast::<u32>();
        // SAFETY: the buffer holds WORDS u32s and is 4-aligned (it ends at a page end).
        let (rc, trace) = t.call(|| unsafe { fx::parallel_add(p, WORDS, THREADS, ROUNDS) });
        assert_eq!(rc, 0);
        let words: Vec<u32> = buf
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        assert!(words.iter().all(|&w| w == ROUNDS as u32), "{words:?}");
        let me = current_tid();
        for (i, _) in words.iter().enumerate() {
            let mine: Vec<&Access> = trace
                .accesses()
                .iter()
                .filter(|a| a.offset == 4 * i as isize)
                .collect();
            assert_eq!(mine.len(), 2 * ROUNDS as usize, "word {i}\n{trace}");
            for (round, pair) in mine.chunks(2).enumerate() {
                let old = (round as u32).to_le_bytes();
                let new = (round as u32 + 1).to_le_bytes();
                assert_eq!(
                    (
                        pair[0].kind,
                        &pair[0].bytes[..],
                        pair[1].kind,
                        &pair[1].bytes[..]
                    ),
                    (
                        traced_ffi::AccessKind::Read,
                        &old[..],
                        traced_ffi::AccessKind::Write,
                        &new[..]
                    ),
                    "word {i}, round {round}"
                );
                assert!(pair[0].tid != me && pair[0].tid == pair[1].tid);
            }
        }
        assert_eq!(trace.accesses().len(), 2 * WORDS * ROUNDS as usize);
        assert!(trace.stats().threads_stopped > 0, "{:?}", trace.stats());
        assert_tracer_still_works(t);
    });
}

/// Two threads incrementing a counter under a `pthread_mutex_t`, both living in one
/// traced buffer: the mutex works under contention (futex waits and wakes on the
/// traced word), the count is right, and every increment's store is in the trace.
#[traced_ffi]
fn a_contended_mutex_in_a_traced_buffer_works_and_every_increment_is_recorded(t: &mut Tracer) {
    isolated(t, |t| {
        const THREADS: c_int = 2;
        const TIMES: c_int = 300;
        let mut buf = t.buffer("locked", fx::LOCKED_COUNTER_SIZE);
        let p = buf.as_mut_ptr();
        // SAFETY: the buffer holds the struct and is 8-aligned (48 bytes before a
        // page end).
        let (count, trace) = t.call(|| unsafe { fx::contended_count(p, THREADS, TIMES) });
        assert_eq!(count, (THREADS * TIMES) as u32);
        let counter_stores = trace
            .accesses()
            .iter()
            .filter(|a| {
                a.kind == traced_ffi::AccessKind::Write
                    && a.offset == fx::LOCKED_COUNT_OFFSET as isize
                    && a.syscall.is_none()
            })
            .count();
        // The caller's `count = 0`, then one store per increment.
        assert_eq!(
            counter_stores,
            1 + (THREADS * TIMES) as usize,
            "{:?}",
            trace.stats()
        );
        assert_tracer_still_works(t);
    });
}
