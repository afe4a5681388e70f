//! The seccomp filter looks only at the arguments a system call takes as addresses
//! (issue 11, item 4): a buffer's address left in other registers (glibc's `brk` and
//! `__close_nocancel` keep whatever the caller had in rsi, rdx, r10, r8, r9) neither
//! stops the call nor makes it an unknown system call. A system call the tracer has no
//! effects for is listed under its kernel name.

use traced_ffi::{Tracer, traced_ffi};
use traced_ffi_fixtures::stale_args as fx;

use crate::check::{Want, assert_exact, at};

/// `sysinfo` on x86-64.
const NR_SYSINFO: u64 = 99;
/// `struct sysinfo` on x86-64.
const SYSINFO_SIZE: usize = 112;
const _: () = assert!(size_of::<libc::sysinfo>() == SYSINFO_SIZE);

#[traced_ffi]
fn getpid_brk_and_close_with_a_buffer_address_in_registers_they_do_not_take_are_not_unknown(
    t: &mut Tracer,
) {
    let mut buf = t.buffer("buf", 16);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is writable for 16 bytes; brk(0) and close(-1) change nothing.
    let (pid, trace) = t.call(|| unsafe { fx::stale_args_syscalls(p) });
    // SAFETY: getpid has no preconditions.
    assert_eq!(pid, i64::from(unsafe { libc::getpid() }), "\n{trace}");
    assert!(
        trace.unknown_syscalls().is_empty(),
        "{:?}\n{trace}",
        trace.unknown_syscalls()
    );
    assert_eq!(
        trace.stats().syscalls,
        0,
        "no system call went through the supervisor\n{trace}"
    );
    assert_exact!(
        trace,
        [Want::write(
            &buf,
            0,
            &[0x5a],
            &at("stale_args_syscalls", 0x30)
        )]
    );
    assert_eq!(buf[0], 0x5a);
    assert!(buf[1..].iter().all(|&b| b == 0));
}

#[traced_ffi]
fn an_unknown_system_call_on_a_buffer_is_listed_by_its_kernel_name(t: &mut Tracer) {
    t.allow_unsupported(true);
    let mut info = t.buffer("info", SYSINFO_SIZE);
    let p = info.as_mut_ptr();
    // SAFETY: `info` is writable for a whole `struct sysinfo`.
    let (r, trace) = t.call(|| unsafe { fx::stale_args_sysinfo(p) });
    assert_eq!(r, 0, "the call ran with the buffer's pages open\n{trace}");
    let unknown = trace.unknown_syscalls();
    assert_eq!(unknown.len(), 1, "{unknown:?}\n{trace}");
    assert_eq!(
        (
            unknown[0].nr,
            unknown[0].name.as_deref(),
            unknown[0].args[0]
        ),
        (NR_SYSINFO, Some("sysinfo"), p as u64),
        "{unknown:?}"
    );
    let shown = trace.to_string();
    assert!(
        shown.contains("UNKNOWN SYSCALL sysinfo (99) at stale_args_sysinfo+0x5 = 0"),
        "{shown}"
    );
    assert!(trace.accesses().is_empty(), "\n{trace}");
}
