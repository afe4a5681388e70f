//! One fault on a protected page during a call: decode the instruction,
//! record one access per operand that touches a region, then execute the
//! instruction exactly once with its pages open and close them again.
//!
//! Three ways to execute it:
//! - emulation (one stop): plain moves are carried out by the supervisor
//!   through `/proc/PID/mem`; the page never opens (see `emulate`);
//! - the stub (one stop): the instruction runs in the displaced-instruction
//!   stub, which opens and closes the pages itself (see `stub`);
//! - the general path (four stops): `mprotect` injected through the
//!   `syscall; int3` gadget, a single-step of the instruction in place, and
//!   `mprotect` injected again. Used for control flow through memory and for
//!   what the stub cannot relocate.

use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use libc::{c_int, pid_t, user_regs_struct};

use crate::arena::{PAGE_SIZE, page_floor};
use crate::decode::{self, Decoded, Operand};
use crate::emulate::{self, Emulation};
use crate::event::{Access, AccessKind, MAX_RECORDED_BYTES, RegionKind, Unsupported};
use crate::ptrace::{self, USER_RIP_OFFSET, WaitEvent};
use crate::stub;
use crate::supervisor::{Supervisor, report};

/// How a thread waited on by `wait_trap` was set running.
#[derive(Clone, Copy)]
enum Resume {
    Step,
    Continue,
}

/// The pages to open for one instruction: `(start, len)`, merged.
type Ranges = Vec<(u64, u64)>;

impl Supervisor {
    /// Handles a `SEGV_ACCERR` of the call's thread at `addr`, a protected page.
    pub(crate) fn on_fault(&mut self, tid: pid_t, addr: u64) {
        if let Some(call) = &mut self.call {
            call.stats.faults += 1;
        }
        let regs = match self.pt.getregs(tid) {
            Ok(regs) => regs,
            Err(_) => return self.resume(tid, libc::SIGSEGV),
        };
        let decoded = self.decoded_at(regs.rip);
        if let Some(reason) = decoded.unsupported.clone() {
            self.record_unsupported(tid, &decoded, reason);
            let all = self.all_protected();
            return self.execute_by_stepping(tid, &regs, &all);
        }
        let operands = match decoded.operands(&regs) {
            Ok(ops) => ops,
            Err(reason) => {
                self.record_unsupported(tid, &decoded, reason);
                let all = self.all_protected();
                return self.execute_by_stepping(tid, &regs, &all);
            }
        };
        let ranges = self.pages_to_open(&operands);
        let explained = ranges.iter().any(|&(s, len)| addr >= s && addr < s + len);
        if !explained {
            let reason = format!(
                "the fault address {addr:#x} is not covered by the decoded operands {operands:x?}"
            );
            self.record_unsupported(tid, &decoded, reason);
            let all = self.all_protected();
            return self.execute_by_stepping(tid, &regs, &all);
        }
        let pending_before = self.call.as_ref().map_or(0, |c| c.pending.len());
        // The bytes each operand reads, read once: for the record and for an
        // emulated load.
        let mut before: Vec<Option<Vec<u8>>> = Vec::with_capacity(operands.len());
        for op in &operands {
            let read = op
                .kinds
                .contains(&AccessKind::Read)
                .then(|| self.read_operand(op));
            for &kind in op.kinds {
                self.record(tid, &decoded, regs.rip, op, kind, read.as_deref());
            }
            before.push(read);
        }
        if let ([op], [read]) = (operands.as_slice(), before.as_slice())
            && self.execute_emulated(tid, &decoded, op, read.as_deref(), regs, pending_before)
        {
            return;
        }
        let placed = (ranges.len() <= stub::MAX_RANGES)
            .then(|| decoded.bytes_at(stub::insn_addr(self.stub_base, ranges.len())))
            .flatten();
        match placed {
            Some(bytes) => self.execute_in_stub(tid, &decoded, &bytes, &ranges),
            None => self.execute_by_stepping(tid, &regs, &ranges),
        }
    }

    /// The decoded instruction at `ip`, from the call's cache or the tracee.
    fn decoded_at(&mut self, ip: u64) -> Rc<Decoded> {
        if let Some(call) = &mut self.call
            && let Some(d) = call.cache.get(&ip)
        {
            call.stats.decode_cache_hits += 1;
            return Rc::clone(d);
        }
        let mut bytes = [0u8; decode::MAX_INSN_LEN];
        let n = self.mem.read_at(&mut bytes, ip).unwrap_or(0);
        let d = Rc::new(decode::decode(ip, &bytes[..n]));
        if let Some(call) = &mut self.call {
            call.cache.insert(ip, Rc::clone(&d));
        }
        d
    }

    fn all_protected(&self) -> Ranges {
        self.call
            .as_ref()
            .map(|c| c.protected.iter().map(|&(s, e)| (s, e - s)).collect())
            .unwrap_or_default()
    }

    /// The protected pages the operands touch, merged into ranges.
    fn pages_to_open(&self, operands: &[Operand]) -> Ranges {
        let Some(call) = &self.call else {
            return Vec::new();
        };
        let mut pages: Vec<u64> = Vec::new();
        for op in operands {
            let first = page_floor(op.addr);
            let last = page_floor(op.addr + op.size.max(1) - 1);
            let mut page = first;
            while page <= last {
                if call.is_protected(page, PAGE_SIZE as u64) {
                    pages.push(page);
                }
                page += PAGE_SIZE as u64;
            }
        }
        pages.sort_unstable();
        pages.dedup();
        let mut ranges: Ranges = Vec::new();
        for page in pages {
            match ranges.last_mut() {
                Some((s, len)) if *s + *len == page => *len += PAGE_SIZE as u64,
                _ => ranges.push((page, PAGE_SIZE as u64)),
            }
        }
        ranges
    }

    /// The bytes an operand covers, as far as they can be read (the
    /// instruction has not run yet: these are the values it reads).
    fn read_operand(&self, op: &Operand) -> Vec<u8> {
        let mut bytes = vec![0u8; op.size as usize];
        let n = self.mem.read_at(&mut bytes, op.addr).unwrap_or(0);
        bytes.truncate(n);
        bytes
    }

    /// Records `kind` access(es) of one operand: one per region it touches.
    /// `read` holds the operand's bytes for a read.
    fn record(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        ip: u64,
        op: &Operand,
        kind: AccessKind,
        read: Option<&[u8]>,
    ) {
        let Some(call) = &mut self.call else { return };
        let (lo, hi) = (op.addr, op.addr + op.size);
        for region in &call.regions {
            let (start, len) = match region.kind {
                // The whole span counts: out-of-bounds bytes are recorded.
                RegionKind::Buffer if lo < region.span_end() && hi > region.span_start => {
                    (lo, op.size)
                }
                // Only the tracked bytes count.
                RegionKind::Tracked if lo < region.end() && hi > region.start => {
                    let s = lo.max(region.start);
                    (s, hi.min(region.end()) - s)
                }
                _ => continue,
            };
            let shown = (len as usize).min(MAX_RECORDED_BYTES);
            let mut bytes = Vec::new();
            if kind == AccessKind::Read {
                let from = (start - lo) as usize;
                if let Some(read) = read {
                    bytes = read[from.min(read.len())..(from + shown).min(read.len())].to_vec();
                }
            } else {
                call.pending.push((call.accesses.len(), start, shown));
            }
            call.accesses.push(Access {
                kind,
                region: Some(region.id),
                offset: (start as i128 - region.start as i128) as isize,
                len: len as usize,
                bytes,
                tid,
                ip,
                insn: decoded.text.clone(),
            });
        }
    }

    fn record_unsupported(&mut self, tid: pid_t, decoded: &Decoded, reason: String) {
        let Some(call) = &mut self.call else { return };
        let ip = decoded.insn.ip();
        if let Some(u) = call
            .unsupported
            .iter_mut()
            .find(|u| u.ip == ip && u.reason == reason)
        {
            u.count += 1;
            return;
        }
        call.unsupported.push(Unsupported {
            ip,
            insn_bytes: decoded.bytes.clone(),
            insn: decoded.text.clone(),
            reason,
            tid,
            count: 1,
        });
    }

    /// The cheapest path: carry a plain move out through `/proc/PID/mem`.
    /// Returns false (having changed nothing) if it cannot.
    fn execute_emulated(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        op: &Operand,
        read: Option<&[u8]>,
        mut regs: user_regs_struct,
        pending_before: usize,
    ) -> bool {
        let Some(emu) = decoded.emulation else {
            return false;
        };
        match emu {
            Emulation::Load { dst, size, extend } => {
                let Some(bytes) = read.filter(|b| b.len() == size) else {
                    return false;
                };
                let value = emulate::loaded_value(bytes, dst, extend);
                if emulate::write_register(&mut regs, dst, value).is_none() {
                    return false;
                }
                regs.rip = decoded.next_ip();
                if let Err(e) = self.pt.setregs(tid, &regs) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!(
                            "cannot set the registers of thread {tid}: {e}"
                        ));
                    }
                    return true;
                }
            }
            Emulation::StoreReg { .. } | Emulation::StoreImm { .. } => {
                let (value, size) = match emu {
                    Emulation::StoreReg { src, size } => match emulate::read_register(&regs, src) {
                        Some(v) => (v, size),
                        None => return false,
                    },
                    Emulation::StoreImm { value, size } => (value, size),
                    Emulation::Load { .. } => return false,
                };
                let bytes = value.to_le_bytes();
                if !matches!(self.mem.write_at(&bytes[..size], op.addr), Ok(n) if n == size) {
                    return false;
                }
                // The written bytes are known: no read-back needed.
                if let Some(call) = &mut self.call {
                    for (index, addr, shown) in call.pending.drain(pending_before..) {
                        let from = (addr - op.addr) as usize;
                        if let Some(a) = call.accesses.get_mut(index) {
                            a.bytes = bytes[from.min(size)..(from + shown).min(size)].to_vec();
                        }
                    }
                }
                if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, decoded.next_ip()) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!("cannot advance thread {tid}: {e}"));
                    }
                    return true;
                }
            }
        }
        if let Some(call) = &mut self.call {
            call.stats.emulated += 1;
        }
        self.resume(tid, 0);
        true
    }

    /// The one-stop path: write the stub, point rip at it, continue.
    fn execute_in_stub(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        insn: &[u8],
        ranges: &[(u64, u64)],
    ) {
        let code = stub::build(self.stub_base, insn, ranges, decoded.next_ip());
        if code != self.last_stub {
            if let Err(e) = self.mem.write_at(&code, self.stub_base + stub::CODE_OFFSET) {
                report(format_args!("cannot write the stub into thread {tid}: {e}"));
                return self.resume(tid, libc::SIGSEGV);
            }
            self.last_stub = code;
        }
        let entry = self.stub_base + stub::CODE_OFFSET;
        if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, entry) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!(
                    "cannot redirect thread {tid} to the stub: {e}"
                ));
            }
            return;
        }
        if let Some(call) = &mut self.call {
            call.stats.stub_path += 1;
        }
        self.resume(tid, 0);
    }

    /// The general path: inject `mprotect(RW)`, single-step the instruction
    /// in place, inject `mprotect(NONE)`, restore, continue.
    fn execute_by_stepping(&mut self, tid: pid_t, regs: &user_regs_struct, ranges: &[(u64, u64)]) {
        if let Some(call) = &mut self.call {
            call.stats.step_path += 1;
        }
        let mut deferred: Vec<c_int> = Vec::new();
        let result = (|| -> io::Result<()> {
            for &r in ranges {
                self.inject_mprotect(
                    tid,
                    regs,
                    r,
                    libc::PROT_READ | libc::PROT_WRITE,
                    &mut deferred,
                )?;
            }
            self.pt.setregs(tid, regs)?;
            self.pt.step(tid, 0)?;
            self.wait_trap(tid, Resume::Step, &mut deferred)?;
            let after = self.pt.getregs(tid)?;
            for &r in ranges {
                self.inject_mprotect(tid, &after, r, libc::PROT_NONE, &mut deferred)?;
            }
            self.pt.setregs(tid, &after)
        })();
        match result {
            Ok(()) => {
                let signal = deferred.first().copied().unwrap_or(0);
                self.resume(tid, signal);
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                report(format_args!(
                    "executing an instruction of thread {tid} by single-step failed: {e}"
                ));
                let _ = self.pt.setregs(tid, regs);
                self.resume(tid, libc::SIGSEGV);
            }
        }
    }

    /// Runs `mprotect(range, prot)` in the tracee through the gadget.
    fn inject_mprotect(
        &mut self,
        tid: pid_t,
        base: &user_regs_struct,
        (start, len): (u64, u64),
        prot: c_int,
        deferred: &mut Vec<c_int>,
    ) -> io::Result<()> {
        let mut r = *base;
        r.rax = libc::SYS_mprotect as u64;
        r.rdi = start;
        r.rsi = len;
        r.rdx = prot as u64;
        r.rip = self.stub_base + stub::GADGET_OFFSET;
        self.pt.setregs(tid, &r)?;
        self.pt.cont(tid, 0)?;
        self.wait_trap(tid, Resume::Continue, deferred)?;
        let done = self.pt.getregs(tid)?;
        if done.rax != 0 {
            return Err(io::Error::from_raw_os_error(-(done.rax as i64) as i32));
        }
        Ok(())
    }

    /// Waits for `tid`'s SIGTRAP (int3 or single-step); other signals that
    /// arrive first are kept for delivery afterwards.
    fn wait_trap(&mut self, tid: pid_t, how: Resume, deferred: &mut Vec<c_int>) -> io::Result<()> {
        let again = |pt: &mut crate::ptrace::Ptrace| match how {
            Resume::Step => pt.step(tid, 0),
            Resume::Continue => pt.cont(tid, 0),
        };
        loop {
            if let Some(call) = &mut self.call {
                call.stats.stops += 1;
            }
            match ptrace::wait_tid(tid)? {
                WaitEvent::SignalStop { signal, .. } if signal == libc::SIGTRAP => return Ok(()),
                WaitEvent::SignalStop { signal, .. } => {
                    deferred.push(signal);
                    again(&mut self.pt)?;
                }
                WaitEvent::Exited { .. } | WaitEvent::Killed { .. } => {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                _ => again(&mut self.pt)?,
            }
        }
    }
}
