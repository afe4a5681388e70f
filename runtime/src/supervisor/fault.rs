//! One fault on a protected page during a call: decode the instruction,
//! plan its accesses from the registers, record one access per operand that
//! touches a region (`record`), then have it execute exactly once with its
//! pages open and close them again, by the cheapest executor that can:
//!
//! - emulation (one stop): plain moves are carried out by the supervisor
//!   through `/proc/PID/mem`; the page never opens (`executor/emulate.rs`);
//! - the stub (one stop, two for outcome-dependent forms): the instruction
//!   runs in the displaced-instruction stub, which opens and closes the
//!   pages itself (`executor/stub.rs`);
//! - single-step (four stops): `mprotect` injected through the
//!   `syscall; int3` gadget, a single-step of the instruction in place, and
//!   `mprotect` injected again. Used for control flow through memory and for
//!   what the stub cannot place (`executor/step.rs`).

use std::os::unix::fs::FileExt;
use std::rc::Rc;

use libc::{pid_t, user_regs_struct};

use super::call::Ranges;
use super::core::Supervisor;
use super::executor::stub_code::{self, MAX_RANGES};
use super::record::Origin;
use crate::decode::insn::{self, Decoded, Operand};
use crate::trace::event::{AccessKind, MAX_RECORDED_BYTES};

impl Supervisor {
    /// Handles a `SEGV_ACCERR` of the call's thread at `addr`, a protected page.
    pub(super) fn on_fault(&mut self, tid: pid_t, addr: u64) {
        if let Some(call) = &mut self.call {
            call.stats.faults += 1;
        }
        let regs = match self.pt.getregs(tid) {
            Ok(regs) => regs,
            Err(_) => return self.resume(tid, libc::SIGSEGV),
        };
        if self.try_enter_cache(tid, &regs) {
            return;
        }
        let decoded = self.decoded_at(regs.rip);
        if let Some(reason) = decoded.unsupported.clone() {
            return self.unsupported_but_run(tid, &decoded, &regs, reason);
        }
        let xs = if decoded.needs_xstate() {
            match self.pt.getxstate(tid) {
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
        let pending_before = self.threads.get(&tid).map_or(0, |t| t.pending.len());
        // The bytes each operand reads, read once: for the record and for an
        // emulated load.
        let mut before: Vec<Option<Vec<u8>>> = Vec::with_capacity(plan.before.len());
        if let Some(call) = &mut self.call {
            // Only this fault's operands get this fault's callers.
            call.flagged.clear();
        }
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
        self.note_callers_of_flagged(&regs);
        if plan.after.is_none()
            && let ([op], [read]) = (plan.before.as_slice(), before.as_slice())
            && self.execute_emulated(tid, &decoded, op, read.as_deref(), regs, pending_before)
        {
            return;
        }
        if ranges.len() > MAX_RANGES && decoded.special.is_some() {
            // Stepping would run one iteration of a rep string at a time.
            let reason = format!(
                "the instruction reaches {} separate protected page ranges; at most {} can be opened at once",
                ranges.len(),
                MAX_RANGES
            );
            return self.unsupported_but_run(tid, &decoded, &regs, reason);
        }
        let slot = self.slot_of(tid);
        let placed = slot.filter(|_| ranges.len() <= MAX_RANGES).and_then(|s| {
            let at = stub_code::insn_addr(self.slot_base(s), ranges.len());
            decoded.bytes_at(at).map(|b| (s, b))
        });
        // With other threads in the call, they are stopped while the pages
        // are open, so that none of them touches those pages unseen.
        let stopped = self.stop_other_threads(tid);
        match (placed, plan.after) {
            (Some((slot, bytes)), None) if stopped.is_none() => {
                let end = stub_code::End::Jump(decoded.next_ip());
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

    /// The decoded instruction at `ip`, from the call's cache or the tracee.
    pub(super) fn decoded_at(&mut self, ip: u64) -> Rc<Decoded> {
        if let Some(call) = &mut self.call
            && let Some(d) = call.cache.get(&ip)
        {
            call.stats.decode_cache_hits += 1;
            return Rc::clone(d);
        }
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let n = self.mem.read_at(&mut bytes, ip).unwrap_or(0);
        let d = Rc::new(insn::decode(ip, &bytes[..n]));
        if let Some(call) = &mut self.call {
            call.cache.insert(ip, Rc::clone(&d));
        }
        d
    }

    /// Every protected page range of the call.
    pub(super) fn all_protected(&self) -> Ranges {
        self.call
            .as_ref()
            .map(|c| c.all_protected())
            .unwrap_or_default()
    }

    /// The protected pages the address ranges `reach` touch, merged into
    /// ranges.
    pub(super) fn pages_to_open(&self, reach: &[(u64, u64)]) -> Ranges {
        self.call
            .as_ref()
            .map(|c| c.pages_to_open(reach))
            .unwrap_or_default()
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
}
