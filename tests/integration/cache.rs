//! The code cache's corner cases: loops whose second fault sends them into
//! translated code. Each fixture is a small assembly loop (below), traced
//! twice, with the cache and without it (`Tracer::use_code_cache(false)`):
//! the two traces must be the same access for access (kind, region,
//! offset, length, bytes, instruction, thread), and the same as the exact
//! expectation written out here.

use std::ffi::c_void;
use std::ptr;

use traced_ffi::{Access, AccessKind, Region, Trace, Tracer, traced_ffi};

use crate::check::current_tid;
use crate::child::run_self;
use crate::os_check::{Row, assert_rows, c, isolated};

std::arch::global_asm!(
    ".pushsection .text.traced_ffi_cache,\"ax\",@progbits",
    // dst[i] = double(src[i]) for i < n: the loop calls a helper.
    ".globl cache_call_helper_loop",
    ".type cache_call_helper_loop,@function",
    "cache_call_helper_loop:", // (dst, src, n)
    "    xor ecx, ecx",
    "2:  movzx eax, byte ptr [rsi+rcx]",
    "    call cache_double",
    "    mov byte ptr [rdi+rcx], al",
    "    inc rcx",
    "    cmp rcx, rdx",
    "    jne 2b",
    "    ret",
    ".size cache_call_helper_loop, .-cache_call_helper_loop",
    ".type cache_double,@function",
    "cache_double:",
    "    add eax, eax",
    "    ret",
    // dst[i] = f(src[i]) for i < n: the loop calls a helper through a
    // function pointer.
    ".globl cache_indirect_call_loop",
    ".type cache_indirect_call_loop,@function",
    "cache_indirect_call_loop:", // (dst, src, n, f)
    "    mov r9, rcx",
    "    xor r8d, r8d",
    "2:  movzx eax, byte ptr [rsi+r8]",
    "    call r9",
    "    mov byte ptr [rdi+r8], al",
    "    inc r8",
    "    cmp r8, rdx",
    "    jne 2b",
    "    ret",
    ".size cache_indirect_call_loop, .-cache_indirect_call_loop",
    ".globl cache_double",
    // buf[i] = 1 for i < n, then an indirect jump to `tail`, which writes
    // buf[n] = 2 and returns.
    ".globl cache_indirect_exit",
    ".size cache_double, .-cache_double",
    ".type cache_indirect_exit,@function",
    "cache_indirect_exit:", // (buf, n, tail)
    "    xor ecx, ecx",
    "2:  mov byte ptr [rdi+rcx], 1",
    "    inc rcx",
    "    cmp rcx, rsi",
    "    jne 2b",
    "    jmp rdx",
    ".globl cache_indirect_tail",
    ".size cache_indirect_exit, .-cache_indirect_exit",
    ".type cache_indirect_tail,@function",
    "cache_indirect_tail:",
    "    mov byte ptr [rdi+rcx], 2",
    "    ret",
    // `chunks` times: marks[chunks - 1 - k] = 0x5a, then rep movsb of 16
    // bytes (rdi and rsi move on): the translated loop leaves the cache at
    // the rep movsb, which runs on the per-instruction path.
    ".globl cache_rep_in_loop",
    ".size cache_indirect_tail, .-cache_indirect_tail",
    ".type cache_rep_in_loop,@function",
    "cache_rep_in_loop:", // (dst, src, chunks, marks)
    "    mov r8, rdx",
    "    mov r9, rcx",
    "2:  mov byte ptr [r9+r8-1], 0x5a",
    "    mov ecx, 16",
    "    rep movsb",
    "    dec r8",
    "    jnz 2b",
    "    ret",
    // The sum of the unaligned u64 at buf+i for i < n.
    ".globl cache_unaligned_sum",
    ".size cache_rep_in_loop, .-cache_rep_in_loop",
    ".type cache_unaligned_sum,@function",
    "cache_unaligned_sum:", // (buf, n) -> u64
    "    xor eax, eax",
    "    xor ecx, ecx",
    "2:  add rax, qword ptr [rdi+rcx]",
    "    inc rcx",
    "    cmp rcx, rsi",
    "    jne 2b",
    "    ret",
    // Reads the byte at flag until it is not 0; returns the reads made.
    ".globl cache_spin_until_set",
    ".size cache_unaligned_sum, .-cache_unaligned_sum",
    ".type cache_spin_until_set,@function",
    "cache_spin_until_set:", // (flag) -> reads
    "    xor eax, eax",
    "2:  inc rax",
    "    cmp byte ptr [rdi], 0",
    "    je 2b",
    "    ret",
    // The sum of the bytes *ptrs[i] for i < n.
    ".globl cache_deref_sum",
    ".size cache_spin_until_set, .-cache_spin_until_set",
    ".type cache_deref_sum,@function",
    "cache_deref_sum:", // (ptrs, n) -> sum
    "    xor eax, eax",
    "    xor ecx, ecx",
    "2:  mov rdx, qword ptr [rdi+rcx*8]",
    "    movzx edx, byte ptr [rdx]",
    "    add eax, edx",
    "    inc rcx",
    "    cmp rcx, rsi",
    "    jne 2b",
    "    ret",
    ".size cache_deref_sum, .-cache_deref_sum",
    ".popsection",
    // A loop whose stored value the test rewrites between calls: alone in
    // its page, which the test makes writable for the rewrite.
    ".pushsection .text.traced_ffi_cache_smc,\"ax\",@progbits",
    ".p2align 12",
    ".globl cache_smc_fill",
    ".type cache_smc_fill,@function",
    "cache_smc_fill:", // (buf, n)
    "    xor ecx, ecx",
    ".globl cache_smc_store",
    "cache_smc_store:",
    "2:  mov byte ptr [rdi+rcx], 0x11",
    "    inc rcx",
    "    cmp rcx, rsi",
    "    jne 2b",
    "    ret",
    ".size cache_smc_fill, .-cache_smc_fill",
    ".p2align 12",
    ".popsection",
);

unsafe extern "C" {
    fn cache_call_helper_loop(dst: *mut u8, src: *const u8, n: usize);
    fn cache_indirect_call_loop(dst: *mut u8, src: *const u8, n: usize, f: *const c_void);
    fn cache_double();
    fn cache_indirect_exit(buf: *mut u8, n: usize, tail: *const c_void);
    fn cache_indirect_tail();
    fn cache_rep_in_loop(dst: *mut u8, src: *const u8, chunks: usize, marks: *mut u8);
    fn cache_unaligned_sum(buf: *const u8, n: usize) -> u64;
    fn cache_spin_until_set(flag: *const u8) -> u64;
    fn cache_deref_sum(ptrs: *const *const u8, n: usize) -> u32;
    fn cache_smc_fill(buf: *mut u8, n: usize);
    static cache_smc_store: u8;
}

/// False when the environment turns the cache off for the whole run
/// (`TRACED_FFI_CACHE=off`, as CI's second run of the suite does): the
/// traces are then still compared, the cache's own figures are not.
pub(crate) fn cache_on() -> bool {
    std::env::var("TRACED_FFI_CACHE").as_deref() != Ok("off")
}

/// What must be equal between the trace with the cache and without it.
fn essentials(trace: &Trace) -> Vec<(AccessKind, isize, usize, Vec<u8>, String, i32)> {
    trace
        .accesses()
        .iter()
        .map(|a: &Access| {
            (
                a.kind,
                a.offset,
                a.len,
                a.bytes.clone(),
                traced_ffi::describe_ip(a.ip),
                a.tid,
            )
        })
        .collect()
}

/// Runs `call` traced without the cache and with it, checks the traces are
/// the same and that the cache was entered, and returns the cached trace.
fn both_ways(t: &mut Tracer, mut call: impl FnMut(&mut Tracer) -> Trace) -> Trace {
    t.use_code_cache(false);
    let plain = call(t);
    t.use_code_cache(true);
    let cached = call(t);
    assert_eq!(plain.stats().cache_entries, 0, "{plain}");
    assert!(
        !cache_on() || cached.stats().cache_entries >= 1,
        "the cache was not entered\n{cached}"
    );
    assert_eq!(
        essentials(&cached),
        essentials(&plain),
        "the traces with and without the cache differ\nwith:\n{cached}\nwithout:\n{plain}"
    );
    assert!(!cached.is_incomplete(), "{cached}");
    cached
}

#[traced_ffi]
fn a_loop_calling_a_helper_records_each_read_and_write_as_without_the_cache(t: &mut Tracer) {
    const N: usize = 24;
    let src_data: Vec<u8> = (1..=N as u8).collect();
    let src = t.buffer_from("src", &src_data);
    let mut dst = t.buffer("dst", N);
    let trace = both_ways(t, |t| {
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        // SAFETY: both buffers hold N bytes.
        t.call(|| unsafe { cache_call_helper_loop(d, s, N) }).1
    });
    // The call and the helper's return are translated: the loop stays in
    // the cache.
    assert!(
        !cache_on() || trace.stats().cache_entries == 1,
        "{:?}",
        trace.stats()
    );
    let me = current_tid();
    let want: Vec<Row> = (0..N)
        .flat_map(|i| {
            [
                Row::read(
                    &src,
                    i,
                    &[src_data[i]],
                    c("cache_call_helper_loop", "movzx"),
                    me,
                ),
                Row::write(
                    &dst,
                    i,
                    &[2 * src_data[i]],
                    c("cache_call_helper_loop", "mov"),
                    me,
                ),
            ]
        })
        .collect();
    assert_rows!(trace, want);
}

#[traced_ffi]
fn a_loop_calling_through_a_function_pointer_learns_the_target_and_stays_in_the_cache(
    t: &mut Tracer,
) {
    const N: usize = 200;
    let src_data: Vec<u8> = (0..N).map(|i| (i % 120) as u8).collect();
    let src = t.buffer_from("src", &src_data);
    let mut dst = t.buffer("dst", N);
    let trace = both_ways(t, |t| {
        let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
        let f = cache_double as *const c_void;
        // SAFETY: both buffers hold N bytes; `f` doubles eax.
        t.call(|| unsafe { cache_indirect_call_loop(d, s, N, f) }).1
    });
    // The first entry, and one more after the exit trap that learned the
    // helper: not one per call of it.
    assert!(
        !cache_on() || trace.stats().cache_entries == 2,
        "{:?}",
        trace.stats()
    );
    let me = current_tid();
    let want: Vec<Row> = (0..N)
        .flat_map(|i| {
            let v = src_data[i];
            [
                Row::read(&src, i, &[v], c("cache_indirect_call_loop", "movzx"), me),
                Row::write(&dst, i, &[2 * v], c("cache_indirect_call_loop", "mov"), me),
            ]
        })
        .collect();
    assert_rows!(trace, want);
}

#[traced_ffi]
fn an_indirect_jump_out_of_a_loop_leaves_the_cache_and_its_target_is_traced(t: &mut Tracer) {
    const N: usize = 20;
    let mut buf = t.buffer("buf", N + 1);
    let trace = both_ways(t, |t| {
        let p = buf.as_mut_ptr();
        let tail = cache_indirect_tail as *const c_void;
        // SAFETY: the buffer holds N + 1 bytes; `tail` writes buf[N].
        t.call(|| unsafe { cache_indirect_exit(p, N, tail) }).1
    });
    let me = current_tid();
    let mut want: Vec<Row> = (0..N)
        .map(|i| Row::write(&buf, i, &[1], c("cache_indirect_exit", "mov"), me))
        .collect();
    want.push(Row::write(
        &buf,
        N,
        &[2],
        c("cache_indirect_tail", "mov"),
        me,
    ));
    assert_rows!(trace, want);
}

#[traced_ffi]
fn rep_movsb_inside_a_loop_is_one_read_and_one_write_per_iteration(t: &mut Tracer) {
    const CHUNKS: usize = 8;
    let data: Vec<u8> = (0..16 * CHUNKS).map(|i| (i * 3 + 1) as u8).collect();
    let src = t.buffer_from("src", &data);
    let mut dst = t.buffer("dst", data.len());
    let mut marks = t.buffer("marks", CHUNKS);
    let trace = both_ways(t, |t| {
        let (d, s, m) = (dst.as_mut_ptr(), src.as_ptr(), marks.as_mut_ptr());
        // SAFETY: both buffers hold 16 * CHUNKS bytes, marks CHUNKS.
        t.call(|| unsafe { cache_rep_in_loop(d, s, CHUNKS, m) }).1
    });
    let a = trace.accesses();
    assert_eq!(a.len(), 3 * CHUNKS, "{trace}");
    for (k, triple) in a.chunks(3).enumerate() {
        let mark = &triple[0];
        assert_eq!(
            (mark.kind, mark.region, mark.offset, &mark.bytes[..]),
            (
                AccessKind::Write,
                Some(marks.region_id()),
                (CHUNKS - 1 - k) as isize,
                &[0x5au8][..]
            ),
            "{trace}"
        );
        let pair = &triple[1..];
        let part = &data[16 * k..16 * (k + 1)];
        assert_eq!(
            (
                pair[0].kind,
                pair[0].offset,
                pair[0].len,
                &pair[0].bytes[..]
            ),
            (AccessKind::Read, 16 * k as isize, 16, part),
            "{trace}"
        );
        assert_eq!(
            (
                pair[1].kind,
                pair[1].offset,
                pair[1].len,
                &pair[1].bytes[..]
            ),
            (AccessKind::Write, 16 * k as isize, 16, part),
            "{trace}"
        );
        assert!(pair[0].insn.starts_with("rep movsb"), "{trace}");
    }
    assert_eq!(&dst[..], &data[..]);
}

#[traced_ffi]
fn unaligned_loads_crossing_a_page_boundary_in_a_loop_are_each_one_read(t: &mut Tracer) {
    const START: usize = 4090;
    const N: usize = 16;
    let data: Vec<u8> = (0..8192).map(|i| (i % 251) as u8).collect();
    let buf = t.buffer_from("buf", &data);
    let mut sums = Vec::new();
    let trace = both_ways(t, |t| {
        let p = buf.as_ptr().wrapping_add(START);
        // SAFETY: the buffer holds 8192 bytes; the last load ends at START + N + 7.
        let (sum, trace) = t.call(|| unsafe { cache_unaligned_sum(p, N) });
        sums.push(sum);
        trace
    });
    let want_sum = (0..N).fold(0u64, |s, i| {
        let at = START + i;
        s.wrapping_add(u64::from_le_bytes(
            data[at..at + 8].try_into().expect("8 bytes"),
        ))
    });
    assert_eq!(sums, [want_sum, want_sum]);
    let me = current_tid();
    let want: Vec<Row> = (0..N)
        .map(|i| {
            let at = START + i;
            Row::read(
                &buf,
                at,
                &data[at..at + 8],
                c("cache_unaligned_sum", "add"),
                me,
            )
        })
        .collect();
    assert_rows!(trace, want);
}

/// A thread spinning on a flag that another thread of the call sets: while
/// it runs translated code the other thread is stopped, and the budget
/// makes it leave the cache so the other thread can set the flag.
#[traced_ffi]
fn a_loop_spinning_on_a_flag_another_thread_sets_ends_through_the_budget(t: &mut Tracer) {
    isolated(t, |t| {
        let mut flag = t.buffer("flag", 1);
        t.cache_budget(1000);
        let p = flag.as_mut_ptr() as usize;
        let mut setter = 0;
        let (reads, trace) = t.call(|| {
            let handle = std::thread::spawn(move || {
                // Long enough for the spinning thread to enter the cache.
                std::thread::sleep(std::time::Duration::from_millis(2));
                // SAFETY: the flag buffer outlives the call.
                unsafe { ptr::write_volatile(p as *mut u8, 1) };
                current_tid()
            });
            // SAFETY: the flag buffer holds one byte.
            let reads = unsafe { cache_spin_until_set(p as *const u8) };
            setter = handle.join().unwrap_or(0);
            reads
        });
        // It left the cache through its budget, and came back.
        assert!(
            !cache_on() || trace.stats().cache_entries >= 2,
            "{:?}",
            trace.stats()
        );
        let me = current_tid();
        let a = trace.accesses();
        let spins: Vec<&Access> = a.iter().filter(|x| x.tid == me).collect();
        let sets: Vec<&Access> = a.iter().filter(|x| x.tid == setter).collect();
        assert_eq!(
            spins.len() as u64,
            reads,
            "one read per iteration\n{:?}",
            trace.stats()
        );
        assert!(
            spins
                .iter()
                .all(|x| x.kind == AccessKind::Read && x.offset == 0)
        );
        let (last, before) = spins.split_last().expect("at least one read");
        assert_eq!(last.bytes, [1], "the last read sees the flag set");
        assert!(
            before.iter().all(|x| x.bytes == [0]),
            "earlier reads see it clear"
        );
        assert_eq!(sets.len(), 1, "{:?}", trace.stats());
        assert_eq!(
            (sets[0].kind, &sets[0].bytes[..]),
            (AccessKind::Write, &[1u8][..])
        );
        assert_eq!(
            a.len(),
            spins.len() + 1,
            "only the two threads touched the flag"
        );
        // The set comes after every read that saw the flag clear.
        let set_at = a.iter().position(|x| x.tid == setter).unwrap_or(0);
        assert_eq!(set_at, a.len() - 2, "{:?}", trace.stats());
    });
}

/// Two threads running the same loop at once: each has its own translation
/// and log; each thread's writes are its own, in order.
#[traced_ffi]
fn two_threads_in_the_same_translated_loop_record_their_own_accesses_in_order(t: &mut Tracer) {
    isolated(t, |t| {
        const HALF: usize = 3000;
        let src_data: Vec<u8> = (0..2 * HALF).map(|i| (i % 253) as u8).collect();
        let src = t.buffer_from("src", &src_data);
        let mut dst = t.buffer("dst", 2 * HALF);
        let (d, s) = (dst.as_mut_ptr() as usize, src.as_ptr() as usize);
        let (tids, trace) = t.call(|| {
            let run = |k: usize| {
                std::thread::spawn(move || {
                    // SAFETY: each thread copies its own half of the buffers.
                    unsafe {
                        cache_call_helper_loop(
                            (d + k * HALF) as *mut u8,
                            (s + k * HALF) as *const u8,
                            HALF,
                        )
                    };
                    current_tid()
                })
            };
            let (a, b) = (run(0), run(1));
            [a.join().unwrap_or(0), b.join().unwrap_or(0)]
        });
        assert!(
            !cache_on() || trace.stats().cache_entries >= 2,
            "{:?}",
            trace.stats()
        );
        for (k, tid) in tids.iter().enumerate() {
            let own: Vec<Row> = trace
                .accesses()
                .iter()
                .filter(|a| a.tid == *tid)
                .map(|a| Row::actual(a, None, &mut Default::default()))
                .collect();
            let want: Vec<Row> = (k * HALF..(k + 1) * HALF)
                .flat_map(|i| {
                    let v = src_data[i];
                    [
                        Row::read(&src, i, &[v], c("cache_call_helper_loop", "movzx"), *tid),
                        Row::write(
                            &dst,
                            i,
                            &[v.wrapping_mul(2)],
                            c("cache_call_helper_loop", "mov"),
                            *tid,
                        ),
                    ]
                })
                .collect();
            assert!(
                own == want,
                "thread {k} ({tid}): its accesses differ\n{:?}",
                trace.stats()
            );
        }
        assert_eq!(trace.accesses().len(), 4 * HALF);
    });
}

/// Rewrites the immediate of `cache_smc_store` (`mov byte [rdi+rcx], imm8`,
/// whose immediate is its fourth byte).
fn patch_smc_value(value: u8) {
    let at = (&raw const cache_smc_store) as usize + 3;
    let page = at & !4095;
    // It is made writable for the one store, then executable again.
    // SAFETY: the page holds only the fixture's code (its own aligned section).
    unsafe {
        assert_eq!(
            libc::mprotect(
                page as *mut c_void,
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC
            ),
            0
        );
        ptr::write_volatile(at as *mut u8, value);
        assert_eq!(
            libc::mprotect(page as *mut c_void, 4096, libc::PROT_READ | libc::PROT_EXEC),
            0
        );
    }
}

#[traced_ffi]
fn code_rewritten_between_calls_is_translated_again(t: &mut Tracer) {
    isolated(t, |t| {
        const N: usize = 32;
        let mut buf = t.buffer("buf", N);
        for value in [0x11u8, 0x22, 0x33] {
            patch_smc_value(value);
            let p = buf.as_mut_ptr();
            // SAFETY: the buffer holds N bytes.
            let ((), trace) = t.call(|| unsafe { cache_smc_fill(p, N) });
            assert!(
                !cache_on() || trace.stats().cache_entries >= 1,
                "{:?}",
                trace.stats()
            );
            let me = current_tid();
            let want: Vec<Row> = (0..N)
                .map(|i| Row::write(&buf, i, &[value], c("cache_smc_fill", "mov"), me))
                .collect();
            assert_rows!(trace, want);
            assert_eq!(&buf[..], &[value; N]);
        }
        patch_smc_value(0x11);
    });
}

/// Set to `1` in the environment of the child run: only then does
/// [`crash_in_translated_loop_child`] crash.
const CRASH_CHILD_ENV: &str = "TRACED_FFI_CACHE_CRASH_CHILD";
const CRASH_CHILD: &str = "cache::crash_in_translated_loop_child";
/// The pointer the loop dereferences at its sixth iteration: no page there.
const UNMAPPED: usize = 0x10;

#[traced_ffi(ignore)]
fn crash_in_translated_loop_child(t: &mut Tracer) {
    if std::env::var(CRASH_CHILD_ENV).as_deref() != Ok("1") {
        println!("{CRASH_CHILD}: does nothing unless {CRASH_CHILD_ENV}=1 (set by its parent test)");
        return;
    }
    let data = t.buffer_from("data", &[7u8; 8]);
    let mut ptrs: Vec<*const u8> = (0..8).map(|i| data.as_ptr().wrapping_add(i)).collect();
    ptrs[5] = UNMAPPED as *const u8;
    let bytes: Vec<u8> = ptrs
        .iter()
        .flat_map(|p| (*p as usize).to_le_bytes())
        .collect();
    let table = t.buffer_from("ptrs", &bytes);
    let tp = table.as_ptr().cast::<*const u8>();
    // SAFETY: deliberately not safe: the sixth pointer crashes this (child) process.
    let _ = t.call(|| unsafe { cache_deref_sum(tp, 8) });
    unreachable!("the load from {UNMAPPED:#x} must have killed this process");
}

/// A crash inside translated code is reported at the original instruction,
/// with the program's registers, after the accesses made before it.
#[traced_ffi]
fn a_crash_inside_a_translated_loop_is_reported_at_the_original_instruction(_t: &mut Tracer) {
    let run = run_self(
        &[
            "--exact",
            CRASH_CHILD,
            "--include-ignored",
            "--test-threads=1",
        ],
        &[(CRASH_CHILD_ENV, "1")],
    );
    let dump = run.dump();
    assert_eq!(run.status.code(), Some(101), "{dump}");
    for expected in [
        "got signal SIGSEGV".to_owned(),
        "SEGV_MAPERR".to_owned(),
        format!("at address {UNMAPPED:#x}"),
        "cache_deref_sum+0x8: movzx edx,byte ptr [rdx]".to_owned(),
        format!("rdx={UNMAPPED:#x}"),
        "rcx=0x5".to_owned(),
    ] {
        assert!(
            run.stdout.contains(&expected),
            "the report lacks {expected:?}\n{dump}"
        );
    }
}
