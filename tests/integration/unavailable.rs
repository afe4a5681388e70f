//! When ptrace is refused (here by a seccomp filter, as in some containers),
//! traced calls fail with a message that names the test, the call and the
//! cause, and the other tests still run and report.

use std::os::unix::process::CommandExt;
use std::process::Command;

use traced_ffi::{Tracer, traced_ffi};

/// Set in the environment of the child run whose ptrace is denied.
const CHILD_ENV: &str = "TRACED_FFI_UNAVAILABLE_CHILD";

#[traced_ffi(ignore)]
fn child_traced_call(t: &mut Tracer) {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mut buf = t.buffer("buf", 4);
    let ((), _trace) = t.call(|| buf[0] = 1);
}

#[traced_ffi(ignore)]
fn child_untraced_work(t: &mut Tracer) {
    let mut buf = t.buffer("buf", 4);
    buf[3] = 9;
    assert_eq!(&buf[..], &[0, 0, 0, 9]);
}

/// Installs a seccomp filter that makes ptrace(2) fail with EPERM.
fn deny_ptrace() -> std::io::Result<()> {
    // Classic BPF (linux/filter.h, linux/seccomp.h): load seccomp_data.nr
    // (offset 0); if it is __NR_ptrace return ERRNO(EPERM), else ALLOW.
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_ptrace as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at a valid filter that outlives the call (the
    // kernel copies it).
    if unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const prog,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[traced_ffi]
fn denied_ptrace_fails_traced_calls_by_name_and_other_tests_still_pass(_t: &mut Tracer) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--include-ignored",
        "--test-threads=1",
        "unavailable::child_",
    ])
    .env(CHILD_ENV, "1");
    // SAFETY: the closure only makes async-signal-safe prctl calls.
    unsafe { cmd.pre_exec(deny_ptrace) };
    let out = cmd.output().expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    let context = format!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(101), "{context}");
    assert!(all.contains("1 passed; 1 failed"), "{context}");
    assert!(
        all.contains("test unavailable::child_untraced_work ... ok"),
        "{context}"
    );
    assert!(
        all.contains("test `unavailable::child_traced_call`"),
        "{context}"
    );
    assert!(
        all.contains("tests/integration/unavailable.rs:"),
        "{context}"
    );
    assert!(all.contains("tracing is unavailable"), "{context}");
    assert!(all.contains("PTRACE_SEIZE"), "{context}");
    assert!(all.contains("Operation not permitted"), "{context}");
}
