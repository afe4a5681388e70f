//! The seccomp filter that sends the supervisor exactly the system calls that
//! may touch a buffer, and lets every other one run at full speed.
//!
//! The kernel's own accesses to user memory do not fault on `PROT_NONE`
//! pages: they fail with `EFAULT`. So a system call that points into a
//! protected buffer during a call must run with those pages open, and the
//! trace must record what it read and wrote. Stopping at every system call
//! (`PTRACE_SYSCALL`) costs several microseconds each; instead the test
//! process installs, right after the handshake, a classic-BPF filter that
//! returns `SECCOMP_RET_TRACE` only when one of the arguments the call takes
//! as an address (`decode/syscall_table.rs`: a binary search on the call number
//! picks them) lies in the address range reserved for buffers
//! (`arena::reserve`, aligned to its size so the test is a mask and a
//! compare of the argument's upper half), and `SECCOMP_RET_ALLOW` otherwise.
//! Registers a call does not take, and integer arguments, are never looked
//! at: a stale buffer address there (glibc's `brk` and `close` leave the
//! caller's rsi..r9 as they were) does not stop the call. System calls made from the stub page (the
//! supervisor's own `mprotect`s and the re-issued call) are always allowed.
//! The calls that take their buffers through an `iovec` array or a `msghdr`
//! (`readv`, `writev`, `preadv*`, `pwritev*`, `sendmsg`, `recvmsg`,
//! `sendmmsg`, `recvmmsg`) hide the buffer addresses from the filter; a
//! second filter, which a thread adds at its first traced call (and the
//! threads it creates inherit), stops all of those: threads that never make
//! a traced call do not pay for it.
//!
//! A filter cannot be removed and is inherited by children and across
//! `exec`: a child process gets `ENOSYS` for a system call that passes an
//! address in the reserved range (no tracer is notified for it), which a
//! program that did not get the address from us does not do.

use std::io;

use crate::layout::{RESERVATION_SHIFT, STUB_AREA_SIZE};

/// The upper bits of an instruction address in the stub area (aligned to its
/// size).
const STUB_MASK: u32 = !(STUB_AREA_SIZE as u32 - 1);

/// `AUDIT_ARCH_X86_64` (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;
const OFF_ARGS: u32 = 16;

// Classic BPF opcodes (linux/bpf_common.h): BPF_LD|BPF_W|BPF_ABS,
// BPF_JMP|BPF_JEQ|BPF_K, BPF_ALU|BPF_AND|BPF_K, BPF_RET|BPF_K.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_AND_K: u16 = 0x54;
const BPF_RET_K: u16 = 0x06;
/// BPF_JMP|BPF_JGE|BPF_K.
const BPF_JGE_K: u16 = 0x35;
/// BPF_JMP|BPF_JA: jump forward by `k` (32 bits, unlike the 8-bit
/// offsets of conditional jumps).
const BPF_JA: u16 = 0x05;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter program for buffers in `[reserved, reserved + 2^RESERVATION_SHIFT)`
/// and the stub page at `stub` (page-aligned).
/// The system calls whose buffers are behind an `iovec` array or a
/// `msghdr`: readv, writev, preadv, pwritev, preadv2, pwritev2, sendmsg,
/// recvmsg, recvmmsg, sendmmsg.
pub(crate) const INDIRECT: [u32; 10] = [19, 20, 295, 296, 327, 328, 46, 47, 299, 307];

pub(crate) fn program(
    reserved: u64,
    stub: u64,
    libc_text: Option<(u64, u64)>,
) -> Vec<libc::sock_filter> {
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const TRACE: u32 = libc::SECCOMP_RET_TRACE;
    let hi_mask = !((1u32 << (RESERVATION_SHIFT - 32)) - 1);
    let reserved_hi = (reserved >> 32) as u32 & hi_mask;
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        // Not x86-64: allow (the last instruction).
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 0),
        stmt(BPF_LD_W_ABS, OFF_IP_HI),
        jump(BPF_JEQ_K, (stub >> 32) as u32, 0, 3),
        stmt(BPF_LD_W_ABS, OFF_IP_LO),
        stmt(BPF_AND_K, STUB_MASK),
        // From the stub area: allow.
        jump(BPF_JEQ_K, stub as u32 & STUB_MASK, 0, 0),
    ];
    // From this process's libc, rt_sigaction on SIGSEGV or SIGTRAP: the
    // supervisor follows the handler (see `supervisor/sigstate.rs`).
    let mut action_jumps: Vec<(usize, bool)> = Vec::new();
    let mut action_traces: Vec<usize> = Vec::new();
    if let Some((lo, hi)) = libc_text {
        action_jumps.extend(push_ip_guard(&mut p, lo, hi));
        p.push(stmt(BPF_LD_W_ABS, OFF_NR));
        action_jumps.push((p.len(), false));
        p.push(jump(BPF_JEQ_K, libc::SYS_rt_sigaction as u32, 0, 0));
        p.push(stmt(BPF_LD_W_ABS, OFF_ARGS));
        action_traces.push(p.len());
        p.push(jump(BPF_JEQ_K, libc::SIGSEGV as u32, 0, 0));
        action_traces.push(p.len());
        p.push(jump(BPF_JEQ_K, libc::SIGTRAP as u32, 0, 0));
    }
    // The argument checks (by call number, see `push_address_checks`) are
    // too long for the 8-bit conditional jumps: reach them with a `ja`.
    let to_args = p.len();
    p.push(stmt(BPF_JA, 0));
    let allow_at = p.len();
    p.push(stmt(BPF_RET_K, ALLOW));
    let trace_at = p.len();
    p.push(stmt(BPF_RET_K, TRACE));
    let args_at = p.len();
    p[to_args].k = (args_at - to_args - 1) as u32;
    push_address_checks(&mut p, hi_mask, reserved_hi);
    // Resolve the forward jumps (offsets count from the next instruction).
    let to = |from: usize, target: usize| {
        u8::try_from(target - from - 1).expect("a jump within the filter's first 256 instructions")
    };
    p[1].jf = to(1, allow_at);
    p[6].jt = to(6, allow_at);
    // A failed guard skips to the argument checks.
    for (at, on_true) in action_jumps {
        if on_true {
            p[at].jt = to(at, args_at);
        } else {
            p[at].jf = to(at, args_at);
        }
    }
    for at in action_traces {
        p[at].jt = to(at, trace_at);
    }
    p
}

/// Appends a check that the instruction pointer lies in `[lo, hi)` (within
/// one 4 GiB block: `hi` is clipped to it); returns the jumps to point at the
/// "not in it" target, each `(index, true)` if its true branch leaves.
fn push_ip_guard(p: &mut Vec<libc::sock_filter>, lo: u64, hi: u64) -> Vec<(usize, bool)> {
    let block_end = (lo | 0xffff_ffff) + 1;
    let hi = hi.min(block_end);
    let mut out = Vec::new();
    p.push(stmt(BPF_LD_W_ABS, OFF_IP_HI));
    out.push((p.len(), false));
    p.push(jump(BPF_JEQ_K, (lo >> 32) as u32, 0, 0));
    p.push(stmt(BPF_LD_W_ABS, OFF_IP_LO));
    out.push((p.len(), false));
    p.push(jump(BPF_JGE_K, lo as u32, 0, 0));
    if hi < block_end {
        out.push((p.len(), true));
        p.push(jump(BPF_JGE_K, hi as u32, 0, 0));
    }
    out
}

/// The filter a thread adds at its first traced call: the calls of
/// [`INDIRECT`] stop, wherever their buffers are, and so does every
/// `rt_sigprocmask` with a set (see `supervisor/sigstate.rs`) — when made from this
/// process's libc only: a program the tests start inherits the filter, and
/// with its own libc elsewhere (ASLR) it never matches there, so it cannot
/// get `ENOSYS` for them. Threads that never make a traced call do not pay;
/// threads the calling thread creates inherit it.
pub(crate) fn program_indirect(libc_text: (u64, u64)) -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 0),
    ];
    let guard = push_ip_guard(&mut p, libc_text.0, libc_text.1);
    p.push(stmt(BPF_LD_W_ABS, OFF_NR));
    let nrs_at = p.len();
    for nr in INDIRECT {
        // Buffers behind a pointer: trace.
        p.push(jump(BPF_JEQ_K, nr, 0, 0));
    }
    // rt_sigprocmask with a set: the supervisor follows the thread's mask.
    let mask_at = p.len();
    p.push(jump(BPF_JEQ_K, libc::SYS_rt_sigprocmask as u32, 0, 0));
    p.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8));
    p.push(jump(BPF_JEQ_K, 0, 0, 0));
    p.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 12));
    p.push(jump(BPF_JEQ_K, 0, 0, 0));
    let allow_at = p.len();
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    let trace_at = p.len();
    p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_TRACE));
    let to = |from: usize, target: usize| (target - from - 1) as u8;
    p[1].jf = to(1, allow_at);
    for (at, on_true) in guard {
        if on_true {
            p[at].jt = to(at, allow_at);
        } else {
            p[at].jf = to(at, allow_at);
        }
    }
    for i in 0..INDIRECT.len() {
        let at = nrs_at + i;
        p[at].jt = to(at, trace_at);
    }
    p[mask_at].jf = to(mask_at, allow_at);
    // Set pointer's low half non-zero: trace; zero: look at the high half.
    p[mask_at + 2].jf = to(mask_at + 2, trace_at);
    p[mask_at + 4].jt = to(mask_at + 4, allow_at);
    p[mask_at + 4].jf = to(mask_at + 4, trace_at);
    p
}

/// The executable mapping of this process's libc (the one holding
/// `writev`), from `/proc/self/maps`.
pub(crate) fn libc_text() -> Option<(u64, u64)> {
    let probe = libc::writev as *const () as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(crate::trace::symbols::parse_maps_line)
        .find(|m| m.start <= probe && probe < m.end && m.perms.get(2) == Some(&b'x'))
        .map(|m| (m.start, m.end))
}

/// Adds the [`program_indirect`] filter to the calling thread.
pub(crate) fn install_indirect() -> io::Result<()> {
    let text = libc_text()
        .ok_or_else(|| io::Error::other("cannot find libc's code in /proc/self/maps"))?;
    load(program_indirect(text))
}

/// Installs the filter in this (single-threaded) process.
pub(crate) fn install(reserved: u64, stub: u64) -> io::Result<()> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    load(program(reserved, stub, libc_text()))
}

/// Adds `prog` to the calling thread's filters (no-new-privs must be set).
fn load(mut prog: Vec<libc::sock_filter>) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which lives until the call returns
    // (the kernel copies the program).
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Appends the checks of the arguments that may hold an address, for the
/// call number at hand (`syscall_table::address_args`): `RET_TRACE` if one
/// of them lies in the reserved range, `RET_ALLOW` otherwise. A binary
/// search over runs of numbers with the same address arguments (about 270
/// runs, 9 levels) leads to one block per distinct set of arguments; a call
/// that takes no address (`brk`, `close`, `getpid`) is allowed at the leaf.
/// Numbers the table does not know (x32 calls included) check all six.
fn push_address_checks(p: &mut Vec<libc::sock_filter>, hi_mask: u32, reserved_hi: u32) {
    let runs = address_arg_runs();
    p.push(stmt(BPF_LD_W_ABS, OFF_NR));
    let mut leaves: Vec<(usize, u8)> = Vec::new();
    push_search(p, &runs, &mut leaves);
    let mut blocks: Vec<(u8, usize)> = Vec::new();
    for &(_, mask) in &runs {
        if mask == 0 || blocks.iter().any(|b| b.0 == mask) {
            continue;
        }
        blocks.push((mask, p.len()));
        let args: Vec<u32> = (0..6).filter(|i| mask & (1 << i) != 0).collect();
        let n = args.len();
        for (i, arg) in args.into_iter().enumerate() {
            p.push(stmt(BPF_LD_W_ABS, OFF_ARGS + 8 * arg + 4));
            p.push(stmt(BPF_AND_K, hi_mask));
            // In the reserved range: trace (past the block's RET_ALLOW).
            let jt = u8::try_from(3 * (n - 1 - i) + 1).unwrap_or(u8::MAX);
            p.push(jump(BPF_JEQ_K, reserved_hi, jt, 0));
        }
        p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
        p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_TRACE));
    }
    for (at, mask) in leaves {
        if let Some(&(_, block)) = blocks.iter().find(|b| b.0 == mask) {
            p[at].k = (block - at - 1) as u32;
        }
    }
}

/// `(first number, address arguments)` for each run of call numbers with
/// the same address arguments, from 0 up; the last run goes on to
/// `u32::MAX`.
fn address_arg_runs() -> Vec<(u32, u8)> {
    let last = crate::decode::syscall_table::TABLE
        .last()
        .map_or(0, |e| u32::from(e.0));
    let mut runs: Vec<(u32, u8)> = Vec::new();
    for nr in 0..=last + 1 {
        let mask = crate::decode::syscall_table::address_args(u64::from(nr));
        if runs.last().is_none_or(|r| r.1 != mask) {
            runs.push((nr, mask));
        }
    }
    runs
}

/// Appends a binary search over `runs` (non-empty, sorted) on the call
/// number in the accumulator. Each leaf is `RET_ALLOW` for a run without
/// address arguments, else a `ja` listed in `leaves` with its run's mask.
fn push_search(p: &mut Vec<libc::sock_filter>, runs: &[(u32, u8)], leaves: &mut Vec<(usize, u8)>) {
    match runs {
        [] => p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW)),
        [(_, 0)] => p.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW)),
        [(_, mask)] => {
            leaves.push((p.len(), *mask));
            p.push(stmt(BPF_JA, 0));
        }
        _ => {
            let mid = runs.len() / 2;
            // nr >= the upper half's first number: the `ja` to the upper
            // half; below it: skip the `ja`, into the lower half.
            p.push(jump(BPF_JGE_K, runs[mid].0, 0, 1));
            let to_upper = p.len();
            p.push(stmt(BPF_JA, 0));
            push_search(p, &runs[..mid], leaves);
            p[to_upper].k = (p.len() - to_upper - 1) as u32;
            push_search(p, &runs[mid..], leaves);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the program uses.
    fn run(p: &[libc::sock_filter], data: &[u32; 16]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = p[pc];
            match i.code {
                BPF_LD_W_ABS => a = data[i.k as usize / 4],
                BPF_AND_K => a &= i.k,
                BPF_JEQ_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                BPF_JGE_K => {
                    pc += usize::from(if a >= i.k { i.jt } else { i.jf });
                }
                BPF_JA => pc += i.k as usize,
                BPF_RET_K => return i.k,
                // Not an opcode the program uses: an impossible result.
                _ => return u32::MAX,
            }
            pc += 1;
        }
    }

    fn data(ip: u64, args: [u64; 6]) -> [u32; 16] {
        let mut d = [0u32; 16];
        d[0] = 1; // write
        d[1] = AUDIT_ARCH_X86_64;
        d[2] = ip as u32;
        d[3] = (ip >> 32) as u32;
        for (i, a) in args.iter().enumerate() {
            d[4 + 2 * i] = *a as u32;
            d[5 + 2 * i] = (*a >> 32) as u32;
        }
        d
    }

    const RESERVED: u64 = 0x7f30_0000_0000;
    const STUB: u64 = 0x7f55_1234_0000;
    /// A libc code range holding the `ip`s the tests use.
    const LIBC: (u64, u64) = (0x7f00_0000_0000, 0x7f00_0020_0000);

    #[test]
    fn rules_on_call_numbers_apply_only_to_calls_from_this_processs_libc() {
        let elsewhere = 0x7f33_0000_1000; // another program's libc, after exec
        let mut d = data(elsewhere, [1, 0x5555_0000_1000, 2, 0, 0, 0]);
        d[0] = 20; // writev
        assert_eq!(run(&program_indirect(LIBC), &d), libc::SECCOMP_RET_ALLOW);
        d[0] = 14; // rt_sigprocmask with a set
        assert_eq!(run(&program_indirect(LIBC), &d), libc::SECCOMP_RET_ALLOW);
        let mut a = data(elsewhere, [11, 0x5555_0000_1000, 0, 8, 0, 0]);
        a[0] = 13; // rt_sigaction(SIGSEGV)
        assert_eq!(
            run(&program(RESERVED, STUB, Some(LIBC)), &a),
            libc::SECCOMP_RET_ALLOW
        );
        let past_end = LIBC.1 + 0x10;
        let mut e = data(past_end, [1, 0x5555_0000_1000, 2, 0, 0, 0]);
        e[0] = 20;
        assert_eq!(run(&program_indirect(LIBC), &e), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn a_pointer_into_the_reserved_range_is_traced_only_in_an_argument_the_call_takes_as_address() {
        let p = program(RESERVED, STUB, Some(LIBC));
        assert!(p.len() <= 4096, "BPF_MAXINSNS: {} instructions", p.len());
        let numbers = crate::decode::syscall_table::TABLE
            .iter()
            .map(|e| u32::from(e.0))
            .chain([400, 470, 0x4000_0000 | 1, u32::MAX]);
        for nr in numbers {
            let mask = crate::decode::syscall_table::address_args(u64::from(nr));
            for arg in 0..6 {
                let mut args = [3, 0x5555_0000_1000, 64, 0, 0, 0];
                args[arg] = RESERVED + 0xf_ffff_fff0;
                let mut d = data(0x7f00_0000_1000, args);
                d[0] = nr;
                if nr == libc::SYS_rt_sigaction as u32 {
                    // Traced for SIGSEGV/SIGTRAP whatever the arguments.
                    d[4] = libc::SIGUSR1 as u32;
                }
                let want = if mask & (1 << arg) != 0 {
                    libc::SECCOMP_RET_TRACE
                } else {
                    libc::SECCOMP_RET_ALLOW
                };
                assert_eq!(run(&p, &d), want, "system call {nr}, argument {arg}");
            }
        }
    }

    #[test]
    fn brk_close_and_getpid_are_never_stopped_whatever_their_registers_hold() {
        let p = program(RESERVED, STUB, Some(LIBC));
        let stale = RESERVED + 0x1000;
        for nr in [12, 3, 39] {
            let mut d = data(0x7f00_0000_1000, [stale; 6]);
            d[0] = nr;
            assert_eq!(run(&p, &d), libc::SECCOMP_RET_ALLOW, "system call {nr}");
        }
    }

    #[test]
    fn iovec_calls_are_traced_by_the_per_thread_filter_whatever_their_arguments() {
        let p = program_indirect(LIBC);
        assert_eq!(
            run(
                &p,
                &data(0x7f00_0000_1000, [1, 0x5555_0000_1000, 64, 0, 0, 0])
            ),
            libc::SECCOMP_RET_ALLOW,
            "write of untracked memory"
        );
        assert_eq!(
            run(&p, &{
                let mut d = data(STUB + 0x80, [1, 0x5555_0000_1000, 2, 0, 0, 0]);
                d[0] = 20;
                d
            }),
            libc::SECCOMP_RET_ALLOW,
            "writev from the stub"
        );
        let mut d = data(0x7f00_0000_1000, [1, 0x5555_0000_1000, 2, 0, 0, 0]);
        for nr in INDIRECT {
            d[0] = nr;
            assert_eq!(run(&p, &d), libc::SECCOMP_RET_TRACE);
        }
    }

    #[test]
    fn sigaction_on_sigsegv_or_sigtrap_is_traced_and_sigprocmask_with_a_set_per_thread() {
        let p = program(RESERVED, STUB, Some(LIBC));
        let mut d = data(0x7f00_0000_1000, [11, 0x5555_0000_1000, 0, 8, 0, 0]);
        d[0] = 13;
        assert_eq!(run(&p, &d), libc::SECCOMP_RET_TRACE);
        d[4] = 10; // SIGUSR1
        assert_eq!(run(&p, &d), libc::SECCOMP_RET_ALLOW);
        let t = program_indirect(LIBC);
        let mut m = data(0x7f00_0000_1000, [0, 0x5555_0000_1000, 0, 8, 0, 0]);
        m[0] = 14;
        assert_eq!(run(&t, &m), libc::SECCOMP_RET_TRACE);
        m[6] = 0;
        assert_eq!(run(&t, &m), libc::SECCOMP_RET_TRACE, "high half of the set");
        m[7] = 0;
        assert_eq!(run(&t, &m), libc::SECCOMP_RET_ALLOW, "no set: a query");
    }

    #[test]
    fn other_arguments_and_calls_from_the_stub_page_are_allowed() {
        let p = program(RESERVED, STUB, Some(LIBC));
        let untracked = [3, RESERVED - 1, RESERVED + (1 << 36), 0, u64::MAX, 7];
        assert_eq!(
            run(&p, &data(0x7f00_0000_1000, untracked)),
            libc::SECCOMP_RET_ALLOW
        );
        let tracked = [3, RESERVED + 64, 64, 0, 0, 0];
        assert_eq!(
            run(&p, &data(STUB + 0xf123, tracked)),
            libc::SECCOMP_RET_ALLOW
        );
    }
}
