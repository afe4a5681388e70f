//! Turning what an instruction or the kernel did into the call's events:
//! one `Access` per operand and region, notes, unsupported entries.

use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use super::core::Supervisor;
use super::thread::PendingWrite;
use crate::decode::insn::{After, Decoded, Operand};
use crate::trace::event::{AccessKind, MAX_RECORDED_BYTES, Note, RegionKind, Unsupported};
use crate::trace::store;

/// Who made an access: an instruction, or the kernel in a system call.
pub(super) struct Origin<'a> {
    pub(super) ip: u64,
    pub(super) insn: &'a str,
    pub(super) syscall: Option<&'static str>,
}

impl<'a> Origin<'a> {
    pub(super) fn insn(decoded: &'a Decoded) -> Self {
        Origin {
            ip: decoded.insn.ip(),
            insn: &decoded.text,
            syscall: None,
        }
    }
}

impl Supervisor {
    /// Records a note of an instruction that touched tracked memory at `at`
    /// without a data access.
    pub(super) fn record_note(&mut self, tid: pid_t, decoded: &Decoded, at: u64, text: &str) {
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

    /// Records `kind` access(es) of one operand: one per region it touches.
    /// `read` holds the operand's bytes for a read.
    pub(super) fn record(
        &mut self,
        tid: pid_t,
        origin: &Origin<'_>,
        op: &Operand,
        kind: AccessKind,
        read: Option<&[u8]>,
    ) {
        self.record_with(tid, origin, op, kind, read, false);
    }

    /// Records an access whose bytes are known: read before, or written
    /// after the instruction (from the code cache's log).
    pub(super) fn record_logged(
        &mut self,
        tid: pid_t,
        origin: &Origin<'_>,
        op: &Operand,
        kind: AccessKind,
        bytes: &[u8],
    ) {
        self.record_with(tid, origin, op, kind, Some(bytes), true);
    }

    fn record_with(
        &mut self,
        tid: pid_t,
        origin: &Origin<'_>,
        op: &Operand,
        kind: AccessKind,
        read: Option<&[u8]>,
        written_known: bool,
    ) {
        let Some(call) = &mut self.call else { return };
        let (lo, hi) = (op.addr, op.addr + op.size);
        let origin = store::Origin {
            ip: origin.ip,
            insn: origin.insn,
            syscall: origin.syscall,
        };
        for (index, region) in call.regions.iter().enumerate() {
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
            let mut buf = [0u8; MAX_RECORDED_BYTES];
            let bytes = if kind == AccessKind::Read || written_known {
                let from = (start - lo) as usize;
                match read.and_then(|r| r.get(from..from + shown)) {
                    Some(slice) => Ok(slice),
                    None => {
                        let n = self.mem.read_at(&mut buf[..shown], start).unwrap_or(0);
                        Ok(&buf[..n])
                    }
                }
            } else {
                Err(shown)
            };
            let offset = (start as i128 - region.start as i128) as isize;
            let out_of_bounds = start < region.start || start + len > region.end();
            // An access that breaks a contract declared before the call is
            // kept (even by a bounded call) and gets its callers.
            let breaks = call
                .watches
                .get_mut(index)
                .and_then(Option::as_mut)
                .is_some_and(|w| w.breaks(kind, offset..offset.saturating_add(len as isize)));
            let place = store::Place {
                kind,
                region: Some(index),
                offset,
                len,
                tid,
            };
            // A bounded call keeps no record of this access (only its
            // summary): nothing to read back or give callers.
            let Some(at) = call.accesses.push_kept(place, &origin, bytes, breaks) else {
                continue;
            };
            if bytes.is_err() {
                let thread = self.threads.entry(tid).or_default();
                thread.pending.push(PendingWrite {
                    index: at,
                    addr: start,
                    len: shown,
                });
            }
            // An instruction's access out of the region's bytes, or that
            // breaks a declared contract, gets its callers once the fault's
            // operands are recorded (`on_fault`).
            if origin.syscall.is_none() && (out_of_bounds || breaks) {
                call.flagged.push(at);
            }
        }
    }

    /// Attaches the native caller chain (see `backtrace`) to the accesses
    /// this fault recorded out of bounds or breaking a declared contract
    /// (`Call::flagged`).
    pub(super) fn note_callers_of_flagged(&mut self, regs: &user_regs_struct) {
        if self.call.as_ref().is_none_or(|c| c.flagged.is_empty()) {
            return;
        }
        let callers = self.callers(regs);
        if let Some(call) = &mut self.call {
            for i in std::mem::take(&mut call.flagged) {
                call.accesses.set_callers(i, &callers);
            }
        }
    }

    pub(super) fn record_unsupported(&mut self, tid: pid_t, decoded: &Decoded, reason: String) {
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

    /// Records the accesses an instruction's outcome shows. Its writes are
    /// done: their bytes are read now.
    pub(super) fn record_after(
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
}
