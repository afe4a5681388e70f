//! Futexes living in buffers (a `pthread_mutex_t` in a traced struct).
//!
//! `FUTEX_WAIT` reads the futex word in the kernel, which fails with `EFAULT`
//! on a protected page; running it with the page open would keep the page
//! open for as long as the thread sleeps, and the other threads' accesses
//! to it would go unseen. So waits and wakes on a buffer address are moved,
//! in and out of calls alike, onto a shadow word in the stub area that the
//! supervisor owns:
//!
//! - `FUTEX_WAIT(addr, val)`: the supervisor compares `*addr` with `val`
//!   itself (recorded as the kernel's 4-byte read during a call). If they
//!   differ the call returns `-EAGAIN` without running; otherwise it runs as
//!   `FUTEX_WAIT(shadow, *shadow)`;
//! - `FUTEX_WAKE(addr, n)`: the shadow word is bumped and the call runs as
//!   `FUTEX_WAKE(shadow, n)`, so it returns how many of the shadow waiters
//!   it woke. (Bumping first means a waiter that has not gone to sleep yet
//!   sees the change and returns `-EAGAIN`: a spurious wake-up, which futex
//!   users handle.)
//!
//! The changed argument registers are put back at the system call's exit
//! (`PTRACE_SYSCALL`), since `syscall` preserves them. Other futex
//! operations on buffers (requeue, wake-op, PI) take the general path (run
//! with the pages open, listed as unknown during a call).

use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use super::core::Supervisor;
use super::record::Origin;
use super::report::report;
use super::thread::Moved;
use crate::decode::insn::Operand;
use crate::layout::{SHADOW_BYTES, SHADOW_OFFSET};
use crate::trace::event::AccessKind;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
/// `FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME`.
const FUTEX_FLAGS: u64 = 128 | 256;

impl Supervisor {
    /// The shadow word of futex `addr`, allocated at first use in the
    /// shadow page; `None` when the page is full.
    fn shadow_of(&mut self, addr: u64) -> Option<u64> {
        let next = self.shadows.len() as u64;
        let base = self.stub_base + SHADOW_OFFSET;
        if let Some(&s) = self.shadows.get(&addr) {
            return Some(s);
        }
        if next * 4 >= SHADOW_BYTES {
            return None;
        }
        let s = base + 4 * next;
        self.shadows.insert(addr, s);
        Some(s)
    }

    fn read_u32(&self, addr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        (self.mem.read_at(&mut b, addr).ok() == Some(4)).then(|| u32::from_le_bytes(b))
    }

    /// A seccomp stop on a `futex` call: handles waits and wakes on a buffer
    /// address; returns false for the general path.
    pub(super) fn on_futex(&mut self, tid: pid_t, regs: &user_regs_struct) -> bool {
        let (addr, op) = (regs.rdi, regs.rsi);
        let cmd = op & !FUTEX_FLAGS;
        if !matches!(
            cmd,
            FUTEX_WAIT | FUTEX_WAKE | FUTEX_WAIT_BITSET | FUTEX_WAKE_BITSET
        ) || !self.in_buffer_range(addr)
        {
            return false;
        }
        let Some(shadow) = self.shadow_of(addr) else {
            return false;
        };
        let Some(current) = self.read_u32(addr) else {
            return false;
        };
        let mut r = *regs;
        if matches!(cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET) {
            self.record_futex_read(tid, regs, addr);
            if current != regs.rdx as u32 {
                // The value changed: the kernel would return EAGAIN at once.
                r.orig_rax = u64::MAX;
                r.rax = (-libc::EAGAIN) as u64;
                if self.pt.setregs(tid, &r).is_err() {
                    return false;
                }
                self.resume(tid, 0);
                return true;
            }
            r.rdx = u64::from(self.read_u32(shadow).unwrap_or(0));
        } else {
            let bumped = self.read_u32(shadow).unwrap_or(0).wrapping_add(1);
            if self.mem.write_at(&bumped.to_le_bytes(), shadow).is_err() {
                return false;
            }
        }
        r.rdi = shadow;
        if let Err(e) = self.pt.setregs(tid, &r) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!("cannot move futex call of thread {tid}: {e}"));
            }
            return true;
        }
        self.thread_mut(tid).moved = Some(Moved {
            rdi: regs.rdi,
            rdx: regs.rdx,
        });
        self.ok(tid, |pt| pt.syscall(tid));
        true
    }

    /// A syscall stop of a thread whose futex call was moved: at the exit,
    /// put its argument registers back. Returns false if not ours.
    pub(super) fn on_moved_syscall_stop(&mut self, tid: pid_t) -> bool {
        let Some(m) = self.threads.get_mut(&tid).and_then(|t| t.moved.take()) else {
            return false;
        };
        if let Ok(mut r) = self.pt.getregs(tid) {
            r.rdi = m.rdi;
            r.rdx = m.rdx;
            let _ = self.pt.setregs(tid, &r);
        }
        self.resume(tid, 0);
        true
    }

    /// During a call, the kernel's read of the futex word.
    fn record_futex_read(&mut self, tid: pid_t, regs: &user_regs_struct, addr: u64) {
        if self.call.as_ref().is_none_or(|c| !c.is_protected(addr, 4)) {
            return;
        }
        let origin = Origin {
            ip: regs.rip - 2,
            insn: "syscall",
            syscall: Some("futex"),
        };
        let op = Operand {
            addr,
            size: 4,
            kinds: &[],
        };
        self.record(tid, &origin, &op, AccessKind::Read, None);
    }
}
