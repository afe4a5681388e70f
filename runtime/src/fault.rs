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
use crate::decode::{self, After, Decoded, Operand};
use crate::emulate::{self, Emulation};
use crate::event::{Access, AccessKind, MAX_RECORDED_BYTES, Note, RegionKind, Unsupported};
use crate::ptrace::{self, USER_RIP_OFFSET, WaitEvent};
use crate::stub;
use crate::supervisor::{Supervisor, report};
use crate::xstate::XState;

/// Who made an access: an instruction, or the kernel in a system call.
pub(crate) struct Origin<'a> {
    pub(crate) ip: u64,
    pub(crate) insn: &'a str,
    pub(crate) syscall: Option<&'static str>,
}

impl<'a> Origin<'a> {
    fn insn(decoded: &'a Decoded) -> Self {
        Origin {
            ip: decoded.insn.ip(),
            insn: &decoded.text,
            syscall: None,
        }
    }
}

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
            return self.unsupported_but_run(tid, &decoded, &regs, reason);
        }
        let xs = if decoded.needs_xstate() {
            match XState::read(&mut self.pt, tid) {
                Ok(xs) => Some(xs),
                Err(e) => {
                    let reason = format!("cannot read the vector and opmask registers: {e}");
                    return self.unsupported_but_run(tid, &decoded, &regs, reason);
                }
            }
        } else {
            None
        };
        let plan = match decoded.plan(&regs, xs.as_ref()) {
            Ok(plan) => plan,
            Err(reason) => return self.unsupported_but_run(tid, &decoded, &regs, reason),
        };
        let ranges = self.pages_to_open(&plan.reach);
        let explained = ranges.iter().any(|&(s, len)| addr >= s && addr < s + len);
        if !explained {
            let reason = format!(
                "the fault address {addr:#x} is not covered by the decoded accesses {:x?}",
                plan.reach
            );
            return self.unsupported_but_run(tid, &decoded, &regs, reason);
        }
        for (at, text) in &plan.notes {
            self.record_note(tid, &decoded, *at, text);
        }
        let pending_before = self.call.as_ref().map_or(0, |c| c.pending.len());
        // The bytes each operand reads, read once: for the record and for an
        // emulated load.
        let mut before: Vec<Option<Vec<u8>>> = Vec::with_capacity(plan.before.len());
        for op in &plan.before {
            let read = op
                .kinds
                .contains(&AccessKind::Read)
                .then(|| self.read_operand(op));
            let origin = Origin::insn(&decoded);
            for &kind in op.kinds {
                self.record(tid, &origin, op, kind, read.as_deref());
            }
            before.push(read);
        }
        if plan.after.is_none()
            && let ([op], [read]) = (plan.before.as_slice(), before.as_slice())
            && self.execute_emulated(tid, &decoded, op, read.as_deref(), regs, pending_before)
        {
            return;
        }
        if ranges.len() > stub::MAX_RANGES && decoded.special.is_some() {
            // Stepping would run one iteration of a rep string at a time.
            let reason = format!(
                "the instruction reaches {} separate protected page ranges; at most {} can be opened at once",
                ranges.len(),
                stub::MAX_RANGES
            );
            return self.unsupported_but_run(tid, &decoded, &regs, reason);
        }
        let slot = self.slot_of(tid);
        let placed = slot
            .filter(|_| ranges.len() <= stub::MAX_RANGES)
            .and_then(|s| {
                let at = stub::insn_addr(self.slot_base(s), ranges.len());
                decoded.bytes_at(at).map(|b| (s, b))
            });
        // With other threads in the call, they are stopped while the pages
        // are open, so that none of them touches those pages unseen.
        let stopped = self.stop_other_threads(tid);
        match (placed, plan.after) {
            (Some((slot, bytes)), None) if stopped.is_none() => {
                let end = stub::End::Jump(decoded.next_ip());
                self.execute_in_stub(tid, slot, &bytes, &ranges, end);
            }
            (Some((slot, bytes)), after) => {
                self.execute_in_stub_and_look(tid, slot, &decoded, &bytes, &ranges, after);
            }
            (None, after) => self.execute_by_stepping(tid, &decoded, &regs, &ranges, after),
        }
        if let Some(stopped) = stopped {
            self.release_threads(stopped);
        }
    }

    /// Records `reason` and runs the instruction once with every protected
    /// page open: the program goes on, the trace says it is incomplete.
    fn unsupported_but_run(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        regs: &user_regs_struct,
        reason: String,
    ) {
        self.record_unsupported(tid, decoded, reason);
        let all = self.all_protected();
        let stopped = self.stop_other_threads(tid);
        self.execute_by_stepping(tid, decoded, regs, &all, None);
        if let Some(stopped) = stopped {
            self.release_threads(stopped);
        }
    }

    /// Records a note of an instruction that touched tracked memory at `at`
    /// without a data access.
    fn record_note(&mut self, tid: pid_t, decoded: &Decoded, at: u64, text: &str) {
        let Some(call) = &mut self.call else { return };
        let region = call.regions.iter().find(|r| match r.kind {
            RegionKind::Buffer => at >= r.span_start && at < r.span_end(),
            RegionKind::Tracked => at >= r.start && at < r.end(),
        });
        call.notes.push(Note {
            ip: decoded.insn.ip(),
            insn: decoded.text.clone(),
            region: region.map(|r| r.id),
            offset: region.map_or(0, |r| (at as i128 - r.start as i128) as isize),
            text: text.to_owned(),
            tid,
        });
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

    pub(crate) fn all_protected(&self) -> Ranges {
        self.call
            .as_ref()
            .map(|c| c.protected.iter().map(|&(s, e)| (s, e - s)).collect())
            .unwrap_or_default()
    }

    /// The protected pages the address ranges `reach` touch, merged into
    /// ranges.
    pub(crate) fn pages_to_open(&self, reach: &[(u64, u64)]) -> Ranges {
        let Some(call) = &self.call else {
            return Vec::new();
        };
        let page = PAGE_SIZE as u64;
        let mut ranges: Ranges = Vec::new();
        for &(addr, len) in reach {
            let lo = page_floor(addr);
            let hi = addr.saturating_add(len.max(1)).saturating_add(page - 1) & !(page - 1);
            for &(s, e) in &call.protected {
                let (from, to) = (lo.max(s), hi.min(e));
                if from < to {
                    ranges.push((from, to - from));
                }
            }
        }
        ranges.sort_unstable();
        let mut merged: Ranges = Vec::with_capacity(ranges.len());
        for (start, len) in ranges {
            match merged.last_mut() {
                Some((s, l)) if *s + *l >= start => *l = (*l).max(start + len - *s),
                _ => merged.push((start, len)),
            }
        }
        merged
    }

    /// The bytes an operand covers, as far as they can be read (the
    /// instruction has not run yet: these are the values it reads).
    /// At most the bytes a record shows (and all of a plain move's).
    fn read_operand(&self, op: &Operand) -> Vec<u8> {
        let mut bytes = vec![0u8; (op.size as usize).min(MAX_RECORDED_BYTES)];
        let n = self.mem.read_at(&mut bytes, op.addr).unwrap_or(0);
        bytes.truncate(n);
        bytes
    }

    /// Records `kind` access(es) of one operand: one per region it touches.
    /// `read` holds the operand's bytes for a read.
    pub(crate) fn record(
        &mut self,
        tid: pid_t,
        origin: &Origin<'_>,
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
                match read.and_then(|r| r.get(from..from + shown)) {
                    Some(slice) => bytes = slice.to_vec(),
                    None => {
                        bytes = vec![0u8; shown];
                        let n = self.mem.read_at(&mut bytes, start).unwrap_or(0);
                        bytes.truncate(n);
                    }
                }
            } else {
                call.pending.push((tid, call.accesses.len(), start, shown));
            }
            call.accesses.push(Access {
                kind,
                region: Some(region.id),
                offset: (start as i128 - region.start as i128) as isize,
                len: len as usize,
                bytes,
                tid,
                ip: origin.ip,
                insn: origin.insn.to_owned(),
                syscall: origin.syscall.map(str::to_owned),
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
                    for (_, index, addr, shown) in call.pending.drain(pending_before..) {
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

    /// Writes the stub for this fault (unless it is already there) and points
    /// the thread at it. Returns false, having delivered SIGSEGV, if it cannot.
    pub(crate) fn enter_stub(&mut self, tid: pid_t, slot: usize, code: Vec<u8>) -> bool {
        let base = self.slot_base(slot);
        if self.last_stub.get(slot) != Some(&code) {
            if let Err(e) = self.mem.write_at(&code, base + stub::CODE_OFFSET) {
                report(format_args!("cannot write the stub into thread {tid}: {e}"));
                self.resume(tid, libc::SIGSEGV);
                return false;
            }
            if let Some(last) = self.last_stub.get_mut(slot) {
                *last = code;
            }
        }
        let entry = base + stub::CODE_OFFSET;
        if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, entry) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                report(format_args!(
                    "cannot redirect thread {tid} to the stub: {e}"
                ));
            }
            return false;
        }
        if let Some(call) = &mut self.call {
            call.stats.stub_path += 1;
        }
        true
    }

    /// The one-stop path: write the stub, point rip at it, continue.
    fn execute_in_stub(
        &mut self,
        tid: pid_t,
        slot: usize,
        insn: &[u8],
        ranges: &[(u64, u64)],
        end: stub::End,
    ) {
        let code = stub::build(self.slot_base(slot), insn, ranges, end);
        if self.enter_stub(tid, slot, code) {
            self.resume(tid, 0);
        }
    }

    /// The two-stop path for instructions whose accesses depend on their
    /// outcome (`cmpxchg`, `repe cmps`): the stub ends in `int3`, the
    /// supervisor records what the registers say happened and moves the
    /// thread to the next instruction.
    fn execute_in_stub_and_look(
        &mut self,
        tid: pid_t,
        slot: usize,
        decoded: &Decoded,
        insn: &[u8],
        ranges: &[(u64, u64)],
        after: Option<After>,
    ) {
        let base = self.slot_base(slot);
        let code = stub::build(base, insn, ranges, stub::End::Trap);
        let trap_end = base + stub::CODE_OFFSET + code.len() as u64;
        if !self.enter_stub(tid, slot, code) {
            return;
        }
        let mut deferred: Vec<c_int> = Vec::new();
        let result = (|| -> io::Result<user_regs_struct> {
            self.pt.cont(tid, 0)?;
            self.wait_trap(tid, Resume::Continue, &mut deferred)?;
            let regs = self.pt.getregs(tid)?;
            if regs.rip != trap_end {
                return Err(io::Error::other(format!(
                    "the stub stopped at {:#x}, not at its end {trap_end:#x} (an mprotect failed)",
                    regs.rip
                )));
            }
            Ok(regs)
        })();
        match result {
            Ok(mut regs) => {
                if let Some(after) = after {
                    self.record_after(tid, decoded, after, &regs);
                }
                self.restore_signal_state(tid);
                self.read_back_writes_of(Some(tid));
                regs.rip = decoded.next_ip();
                if let Err(e) = self.pt.setregs(tid, &regs) {
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        report(format_args!("cannot advance thread {tid}: {e}"));
                    }
                    return;
                }
                self.resume(tid, deferred.first().copied().unwrap_or(0));
            }
            Err(e) => self.execution_failed(tid, &e, deferred.first().copied()),
        }
    }

    /// Records the accesses an instruction's outcome shows. Its writes are
    /// done: their bytes are read now.
    fn record_after(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        after: After,
        regs: &user_regs_struct,
    ) {
        let origin = Origin::insn(decoded);
        for op in after.operands(regs) {
            for &kind in op.kinds {
                self.record(tid, &origin, &op, kind, None);
            }
        }
        self.read_back_writes_of(Some(tid));
    }

    /// An execution path failed: say so, and deliver `signal` (the fault the
    /// program took, if any) or SIGSEGV.
    fn execution_failed(&mut self, tid: pid_t, e: &io::Error, signal: Option<c_int>) {
        if e.raw_os_error() == Some(libc::ESRCH) {
            return;
        }
        report(format_args!(
            "executing a faulting instruction of thread {tid} failed: {e}"
        ));
        self.resume(tid, signal.unwrap_or(libc::SIGSEGV));
    }

    /// The general path: inject `mprotect(RW)`, single-step the instruction
    /// in place, inject `mprotect(NONE)`, restore, continue.
    fn execute_by_stepping(
        &mut self,
        tid: pid_t,
        decoded: &Decoded,
        regs: &user_regs_struct,
        ranges: &[(u64, u64)],
        after: Option<After>,
    ) {
        if let Some(call) = &mut self.call {
            call.stats.step_path += 1;
        }
        let mut deferred: Vec<c_int> = Vec::new();
        let result = (|| -> io::Result<user_regs_struct> {
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
            self.pt.setregs(tid, &after)?;
            Ok(after)
        })();
        match result {
            Ok(regs_after) => {
                if let Some(after) = after {
                    self.record_after(tid, decoded, after, &regs_after);
                }
                self.restore_signal_state(tid);
                let signal = deferred.first().copied().unwrap_or(0);
                self.resume(tid, signal);
            }
            Err(e) => {
                let _ = self.pt.setregs(tid, regs);
                self.execution_failed(tid, &e, deferred.first().copied());
            }
        }
    }

    /// Runs `mprotect(range, prot)` in the tracee through the gadget.
    pub(crate) fn inject_mprotect(
        &mut self,
        tid: pid_t,
        base: &user_regs_struct,
        (start, len): (u64, u64),
        prot: c_int,
        deferred: &mut Vec<c_int>,
    ) -> io::Result<()> {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK:
        // a signal interrupted the call; the kernel would restart it, so do
        // we (as gVisor's ptrace platform does).
        const RESTART: [i64; 4] = [-512, -513, -514, -516];
        let mut r = *base;
        r.rdi = start;
        r.rsi = len;
        r.rdx = prot as u64;
        r.orig_rax = u64::MAX;
        for _ in 0..8 {
            r.rax = libc::SYS_mprotect as u64;
            r.rip = self.stub_base + stub::GADGET_OFFSET;
            self.pt.setregs(tid, &r)?;
            self.pt.cont(tid, 0)?;
            self.wait_trap(tid, Resume::Continue, deferred)?;
            let done = self.pt.getregs(tid)?.rax as i64;
            if done == 0 {
                return Ok(());
            }
            if !RESTART.contains(&done) {
                return Err(io::Error::from_raw_os_error(-done as i32));
            }
        }
        Err(io::Error::other("mprotect kept being interrupted"))
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
                // The instruction itself faulted: resuming would repeat it.
                WaitEvent::SignalStop { signal, .. }
                    if matches!(
                        signal,
                        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
                    ) =>
                {
                    deferred.insert(0, signal);
                    return Err(io::Error::other(format!(
                        "it took signal {signal} while running with its pages open"
                    )));
                }
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
