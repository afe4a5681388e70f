//! The code cache: hot code runs translated, with the call's pages open,
//! and records its own accesses: one stop per entry into the cache instead
//! of one per access.
//!
//! - An instruction that faults on a protected page for the second time
//!   (in any call) is hot: the region around it is translated
//!   (`translate.rs`) into the thread's cache slot (see `layout`), and the
//!   thread is sent through the slot's open gate (`gate.rs`) into it.
//! - The translated code appends an entry per access (address, site,
//!   `rbp`, bytes read before or written after) to the slot's log; the
//!   supervisor turns entries into `Access`es at the thread's next stop
//!   (`drain_log`), before anything else of that stop is recorded, so the
//!   order of the trace is the order of the program.
//! - Every way out of the region goes through the close gate. With other
//!   threads in the call, they are stopped from the entry to the exit,
//!   which then stops in a trap (the exit trap) so they can be released.
//! - A full log faults on the slot's guard page: the log is drained and the
//!   entry written again. Any other fault inside the cache puts the thread
//!   back at the original instruction with the original registers, the pages
//!   closed: the instruction runs again natively and takes today's path (a
//!   crash is reported there, at its own address).
//! - A signal that stops a thread inside the cache is held: the region is
//!   made to exit at its next backward branch (its budget is set to one) and
//!   to stop at the exit trap, where the signal is delivered, so handlers
//!   run in native code with the pages closed, as they do today.
//! - Translations stay across calls, keyed by their entry address; before a
//!   thread enters one, the original code bytes are compared with the
//!   translated ones and a changed region is translated again.
//!
//! `TRACED_FFI_CACHE=off` turns the cache off (every access takes the
//! per-instruction path); `TRACED_FFI_CACHE_BUDGET=N` sets how many
//! backward branches a region takes before it exits (and lets the other
//! threads run).

pub(super) mod gate;
pub(super) mod state;
pub(super) mod translate;

use std::os::unix::fs::FileExt;

use libc::{c_int, pid_t, user_regs_struct};

use self::state::{CacheSlot, HOT, MAX_GATE_RANGES};
use self::translate::{ENTRY_HEADER, Phase, Place, cell};
use super::core::Supervisor;
use super::ptrace::WaitEvent;
use super::record::Origin;
use super::report::report;
use super::thread::InCache;
use crate::decode::insn::Operand;
use crate::decode::moves;
use crate::layout::{
    CACHE_CODE_OFFSET, CACHE_GATE_SIZE, CACHE_GATES_OFFSET, CACHE_GUARD_OFFSET, CACHE_LOG_OFFSET,
    CACHE_SLOT_SIZE, PAGE_SIZE, cache_slot_base, is_in_cache,
};
use crate::supervisor::ptrace::USER_RIP_OFFSET;
use crate::trace::event::AccessKind;

impl Supervisor {
    fn cache_base(&self, slot: usize) -> u64 {
        cache_slot_base(self.stub_base, slot)
    }

    fn write_cells(&self, slot: usize, first: u64, values: &[u64]) -> bool {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let at = self.cache_base(slot) + first;
        matches!(self.mem.write_at(&bytes, at), Ok(n) if n == bytes.len())
    }

    fn read_cell(&self, slot: usize, off: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        let at = self.cache_base(slot) + off;
        (self.mem.read_at(&mut b, at).ok() == Some(8)).then(|| u64::from_le_bytes(b))
    }

    /// Sends `tid`, stopped by a fault at `regs.rip`, into the cache if
    /// that instruction is hot and its region translates. Returns false
    /// (nothing changed) otherwise.
    pub(super) fn try_enter_cache(&mut self, tid: pid_t, regs: &user_regs_struct) -> bool {
        if !self.cache.enabled || self.is_foreign(tid) {
            return false;
        }
        let ip = regs.rip;
        let Some(ranges) = self
            .call
            .as_ref()
            .filter(|c| c.code_cache)
            .map(|c| c.all_protected())
        else {
            return false;
        };
        if ranges.len() > MAX_GATE_RANGES || self.cache.refused.contains(&ip) {
            return false;
        }
        let seen = self.cache.hot.entry(ip).or_insert(0);
        *seen = seen.saturating_add(1);
        if *seen < HOT {
            return false;
        }
        let Some(slot) = self.slot_of(tid) else {
            return false;
        };
        let Some(entry_at) = self.translation_for(slot, ip) else {
            self.cache.refused.insert(ip);
            return false;
        };
        if !self.write_gates(slot, &ranges) {
            return false;
        }
        let stopped = self.stop_other_threads(tid);
        let trap = u64::from(stopped.is_some());
        // BUDGET, TRAP, EXIT_TARGET, ENTRY_TARGET, RET_LEARN are
        // consecutive cells.
        let budget = match self.call.as_ref().map_or(0, |c| c.cache_budget) {
            0 => self.cache.budget,
            n => n,
        };
        let ret_learn = self.ret_learn(ip);
        let cells = [budget, trap, 0, entry_at, ret_learn];
        let open_gate = self.cache_base(slot) + CACHE_GATES_OFFSET;
        if !self.write_cells(slot, cell::BUDGET, &cells)
            || self.pt.poke_user(tid, USER_RIP_OFFSET, open_gate).is_err()
        {
            if let Some(stopped) = stopped {
                self.release_threads(stopped);
            }
            return false;
        }
        if stopped.is_some() {
            self.cache.holder = Some(tid);
        }
        let thread = self.thread_mut(tid);
        thread.in_cache = Some(InCache {
            stopped,
            deferred: Vec::new(),
        });
        thread.log_dirty = true;
        if let Some(call) = &mut self.call {
            call.stats.cache_entries += 1;
        }
        if self.cache.verbose {
            *self.cache.entries.entry(ip).or_default() += 1;
        }
        self.resume(tid, 0);
        true
    }

    /// When verbose: where threads entered the cache most during the call.
    pub(super) fn report_cache_entries(&mut self) {
        if !self.cache.verbose || self.cache.entries.is_empty() {
            return;
        }
        let mut top: Vec<(u64, u64)> = self.cache.entries.drain().collect();
        top.sort_by_key(|&(ip, n)| (std::cmp::Reverse(n), ip));
        for (ip, n) in top.into_iter().take(5) {
            let at = crate::trace::symbols::symbolize_in(self.child, ip)
                .unwrap_or_else(|| format!("{ip:#x}"));
            report(format_args!("code cache: {n} entries at {at}"));
        }
    }

    /// Counts an entry into the region at `ip` in this call: 1 (returns
    /// learn) from its third entry on, else 0 (see `cell::RET_LEARN`).
    fn ret_learn(&mut self, ip: u64) -> u64 {
        let Some(call) = &mut self.call else { return 0 };
        let n = call.cache_region_entries.entry(ip).or_insert(0);
        *n = n.saturating_add(1);
        u64::from(*n >= 3)
    }

    /// The translated address of the region that starts at `ip` in
    /// `slot`, translating it if needed.
    fn translation_for(&mut self, slot: usize, ip: u64) -> Option<u64> {
        let base = self.cache_base(slot);
        if !self.cache.slots.contains_key(&slot) {
            // A new slot: its log starts empty.
            if !self.write_cells(slot, cell::LOG_PTR, &[base + CACHE_LOG_OFFSET]) {
                return None;
            }
            self.cache.slots.insert(slot, CacheSlot::default());
        }
        let cached = self.cache.slots.get(&slot).and_then(|cs| {
            let t = &cs.regions[*cs.by_entry.get(&ip)?];
            Some((t.entry_at, t.originals.clone()))
        });
        if let Some((entry_at, originals)) = cached {
            let unchanged = originals.iter().all(|(at, bytes)| {
                let mut now = vec![0u8; bytes.len()];
                self.mem.read_at(&mut now, *at).ok() == Some(bytes.len()) && now == *bytes
            });
            if unchanged {
                return Some(entry_at);
            }
            // The code changed: start the slot's cache afresh.
            self.flush_cache_slot(slot);
        }
        self.translate_into(slot, ip)
    }

    /// Translates the region that starts at `ip` into `slot` (with what
    /// its indirect branches learned) and makes it the one for `ip`.
    fn translate_into(&mut self, slot: usize, ip: u64) -> Option<u64> {
        let base = self.cache_base(slot);
        let learned = self
            .cache
            .slots
            .get(&slot)
            .and_then(|cs| cs.learned.get(&ip).cloned())
            .unwrap_or_default();
        for attempt in 0..2 {
            let (next_code, first_site) = {
                let cs = self.cache.slots.get(&slot)?;
                (cs.next_code, u32::try_from(cs.sites.len()).ok()?)
            };
            let place = Place {
                at: base + CACHE_CODE_OFFSET + next_code,
                data: base,
                close_gate: base + CACHE_GATES_OFFSET + CACHE_GATE_SIZE,
                first_site,
            };
            let decode = &mut |at| self.decoded_at(at);
            let t = match translate::translate(ip, &place, decode, &learned) {
                Ok(t) => t,
                Err(why) => {
                    if self.cache.verbose {
                        report(format_args!("code cache: not translating {ip:#x}: {why}"));
                    }
                    return None;
                }
            };
            let end = next_code + t.code.len() as u64;
            if CACHE_CODE_OFFSET + end > CACHE_SLOT_SIZE {
                if attempt == 0 {
                    self.flush_cache_slot(slot);
                    continue;
                }
                return None;
            }
            if !matches!(self.mem.write_at(&t.code, t.at), Ok(n) if n == t.code.len()) {
                return None;
            }
            let entry_at = t.entry_at;
            let cs = self.cache.slots.get_mut(&slot)?;
            cs.next_code = end.next_multiple_of(64);
            cs.sites.extend(t.sites.iter().cloned());
            cs.by_entry.insert(ip, cs.regions.len());
            cs.regions.push(t);
            return Some(entry_at);
        }
        None
    }

    /// Forgets every translation of `slot` (its log is empty: it is
    /// drained at every stop).
    fn flush_cache_slot(&mut self, slot: usize) {
        if let Some(cs) = self.cache.slots.get_mut(&slot) {
            cs.regions.clear();
            cs.by_entry.clear();
            cs.sites.clear();
            cs.next_code = 0;
            cs.learned.clear();
        }
    }

    /// Writes the gates of `slot` for `ranges`, unless they are already.
    fn write_gates(&mut self, slot: usize, ranges: &[(u64, u64)]) -> bool {
        let Some(cs) = self.cache.slots.get(&slot) else {
            return false;
        };
        if cs.gates_for.as_deref() == Some(ranges) {
            return true;
        }
        let base = self.cache_base(slot);
        let open_at = base + CACHE_GATES_OFFSET;
        let close_at = open_at + CACHE_GATE_SIZE;
        let (Ok(open), Ok(close)) = (
            gate::open(open_at, base, ranges),
            gate::close(close_at, base, ranges),
        ) else {
            return false;
        };
        if open.code.len() as u64 > CACHE_GATE_SIZE || close.code.len() as u64 > CACHE_GATE_SIZE {
            return false;
        }
        let written =
            |at: u64, code: &[u8]| matches!(self.mem.write_at(code, at), Ok(n) if n == code.len());
        if !written(open_at, &open.code) || !written(close_at, &close.code) {
            return false;
        }
        if let Some(cs) = self.cache.slots.get_mut(&slot) {
            cs.gates_for = Some(ranges.to_vec());
            cs.exit_trap = close.trap_end;
        }
        true
    }

    /// `drain_log`, for a thread that is not inside the cache (at the top
    /// of every stop). A thread that may be inside it can be stopped in
    /// the middle of appending an entry, with the log pointer loaded in a
    /// register: emptying the log under it would have it store the old
    /// pointer back, and the entries drained would come again. Its log is
    /// drained where its stop is handled (`on_cache_stop`): at the exit
    /// trap, at the guard page (the entry restarts from the pointer's
    /// load), or once it is seen outside the cache.
    pub(super) fn drain_log_outside_cache(&mut self, tid: pid_t) {
        if self.threads.get(&tid).is_some_and(|t| t.in_cache.is_none()) {
            self.drain_log(tid);
        }
    }

    /// Records the entries of `tid`'s log, if it may have any, and empties
    /// it.
    pub(super) fn drain_log(&mut self, tid: pid_t) {
        let Some(thread) = self.threads.get_mut(&tid) else {
            return;
        };
        if !thread.log_dirty {
            return;
        }
        thread.log_dirty = thread.in_cache.is_some();
        let Some(slot) = thread.slot else { return };
        let log = self.cache_base(slot) + CACHE_LOG_OFFSET;
        let Some(end) = self.read_cell(slot, cell::LOG_PTR) else {
            return;
        };
        if end <= log || end > log + (CACHE_GUARD_OFFSET - CACHE_LOG_OFFSET) {
            return;
        }
        // The log is a shared mapping of CACHE_LOG_SIZE bytes made before
        // the fork at this address in both processes
        // (`launch::map_stub_area`), never unmapped. Its only writer, `tid`'s
        // translated code, is stopped until this drain is over (a log is
        // drained at a stop), so the bytes do not change while read in place.
        let len = (end - log) as usize;
        // SAFETY: `log..log + len` lies in that mapping (`end` was checked
        // above), which stays mapped and unchanged while `bytes` lives.
        let bytes = unsafe { std::slice::from_raw_parts(log as *const u8, len) };
        if !self.write_cells(slot, cell::LOG_PTR, &[log]) {
            report(format_args!("cannot empty the access log of thread {tid}"));
        }
        self.record_log(tid, slot, bytes);
    }

    /// Turns log entries into accesses.
    fn record_log(&mut self, tid: pid_t, slot: usize, bytes: &[u8]) {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        // The slot's sites, once per drain rather than once per entry.
        let sites = self
            .cache
            .slots
            .get(&slot)
            .map(|cs| cs.sites.clone())
            .unwrap_or_default();
        // The protected spans, to pass over entries that touch none (the
        // stack, native code's own heap) without building an access.
        let protected = self
            .call
            .as_ref()
            .map(|c| c.protected.clone())
            .unwrap_or_default();
        let mut at = 0usize;
        let mut recorded = 0u64;
        while at < bytes.len() {
            let (Some(addr), Some(id), Some(rbp)) = (word(at), word(at + 8), word(at + 16)) else {
                break;
            };
            let Some(site) = sites.get(id as u32 as usize) else {
                report(format_args!(
                    "the access log of thread {tid} names an unknown site {id}"
                ));
                break;
            };
            let value_at = at + ENTRY_HEADER as usize;
            let shown = (site.size as usize).min(site.value_len() as usize);
            let Some(value) = bytes.get(value_at..value_at + shown) else {
                break;
            };
            let (lo, hi) = (addr, addr.saturating_add(site.size));
            if !protected.iter().any(|&(s, e)| lo < e && hi > s) {
                recorded += 1;
                at = value_at + site.value_len() as usize;
                continue;
            }
            let kinds: &'static [AccessKind] = match site.kind {
                AccessKind::Read => &[AccessKind::Read],
                _ => &[AccessKind::Write],
            };
            let op = Operand {
                addr,
                size: site.size,
                kinds,
            };
            let origin = Origin::insn(&site.decoded);
            self.record_logged(tid, &origin, &op, site.kind, value);
            if self.call.as_ref().is_some_and(|c| !c.flagged.is_empty()) {
                // SAFETY: user_regs_struct is plain old data; all zeroes is
                // a valid value.
                let mut regs: user_regs_struct = unsafe { std::mem::zeroed() };
                regs.rip = site.decoded.insn.ip();
                regs.rbp = rbp;
                regs.rsp = rbp;
                self.note_callers_of_flagged(&regs);
            }
            recorded += 1;
            at = value_at + site.value_len() as usize;
        }
        if let Some(call) = &mut self.call {
            call.stats.cache_accesses += recorded;
        }
    }

    /// Drains the logs of every thread that may have entries.
    pub(super) fn drain_all_logs(&mut self) {
        let dirty: Vec<pid_t> = self
            .threads
            .iter()
            .filter(|(_, t)| t.log_dirty)
            .map(|(&tid, _)| tid)
            .collect();
        for tid in dirty {
            self.drain_log(tid);
        }
    }

    /// A signal stop of a thread that may be inside the cache. Returns
    /// false if it is not (the stop is then handled as usual).
    pub(super) fn on_cache_stop(&mut self, tid: pid_t, signal: c_int) -> bool {
        if self.threads.get(&tid).is_none_or(|t| t.in_cache.is_none()) {
            return false;
        }
        let Ok(regs) = self.pt.getregs(tid) else {
            return false;
        };
        if !is_in_cache(self.stub_base, regs.rip) {
            // It left through the close gate without a stop. A signal held
            // meanwhile (one that came while it was leaving) goes now.
            let held = self
                .threads
                .get_mut(&tid)
                .and_then(|t| t.in_cache.take())
                .map(|c| c.deferred)
                .unwrap_or_default();
            self.drain_log(tid);
            for sig in held {
                // SAFETY: tgkill of a valid signal to a thread of the test
                // process; an error (the thread is gone) changes nothing.
                unsafe { libc::syscall(libc::SYS_tgkill, self.child, tid, sig) };
            }
            return false;
        }
        match signal {
            libc::SIGSEGV => self.cache_fault(tid, regs),
            libc::SIGTRAP => self.cache_trap(tid, &regs),
            _ => {
                // Held until the exit, which comes at the next backward
                // branch and stops.
                if let Some(c) = self.threads.get_mut(&tid).and_then(|t| t.in_cache.as_mut()) {
                    c.deferred.push(signal);
                }
                if let Some(slot) = self.threads.get(&tid).and_then(|t| t.slot) {
                    self.write_cells(slot, cell::BUDGET, &[1, 1]);
                }
                self.resume(tid, 0);
            }
        }
        true
    }

    /// The thread left the cache: its log is drained. Returns what it
    /// held: the threads stopped for it, to release once it runs again (an
    /// interrupt only stops a running thread), and the signals held.
    fn leave_cache(&mut self, tid: pid_t) -> InCache {
        let left = self
            .threads
            .get_mut(&tid)
            .and_then(|t| t.in_cache.take())
            .unwrap_or_default();
        if self.cache.holder == Some(tid) {
            self.cache.holder = None;
        }
        self.drain_log(tid);
        left
    }

    /// Keeps `event` of a thread other than the one holding the others
    /// stopped for the cache, with those stopped threads, until it leaves.
    /// Returns false (the event is handled now) otherwise.
    pub(super) fn hold_while_in_cache(&mut self, event: WaitEvent) -> bool {
        let Some(holder) = self.cache.holder else {
            return false;
        };
        let tid = match event {
            WaitEvent::SignalStop { tid, .. }
            | WaitEvent::EventStop { tid, .. }
            | WaitEvent::SyscallStop { tid } => tid,
            _ => return false,
        };
        if tid == holder {
            return false;
        }
        let Some(stopped) = self
            .threads
            .get_mut(&holder)
            .and_then(|t| t.in_cache.as_mut())
            .and_then(|c| c.stopped.as_mut())
        else {
            self.cache.holder = None;
            return false;
        };
        stopped.push((tid, Some(event)));
        self.thread_mut(tid).held = true;
        true
    }

    /// Resumes `tid` out of the cache with the signals it held (and
    /// `first`, before them), then releases the threads stopped for it.
    fn resume_out_of_cache(&mut self, tid: pid_t, left: InCache, first: Option<c_int>) {
        let held: Vec<c_int> = first.into_iter().chain(left.deferred).collect();
        self.deliver_held(tid, &held);
        if let Some(stopped) = left.stopped {
            self.release_threads(stopped);
        }
    }

    /// A trap inside the cache: the exit trap, or a gate's failed
    /// `mprotect`.
    fn cache_trap(&mut self, tid: pid_t, regs: &user_regs_struct) {
        let slot = self.threads.get(&tid).and_then(|t| t.slot);
        let exit_trap = slot
            .and_then(|s| self.cache.slots.get(&s))
            .map(|cs| cs.exit_trap);
        let target = slot.and_then(|s| self.read_cell(s, cell::EXIT_TARGET));
        let learn = slot.and_then(|s| self.read_cell(s, cell::LEARN_SITE));
        let mut left = self.leave_cache(tid);
        if let (Some(slot), Some(site), Some(target)) = (slot, learn, target)
            && site != 0
            && exit_trap == Some(regs.rip)
        {
            self.write_cells(slot, cell::LEARN_SITE, &[0]);
            if let Some((at, entry)) = self.learn_target(slot, site, target)
                && left.deferred.is_empty()
            {
                match self.reenter_cache(tid, slot, (at, entry), left) {
                    None => return,
                    Some(back) => left = back,
                }
            }
        }
        match (exit_trap, target) {
            (Some(trap), Some(target)) if trap == regs.rip => {
                if let Err(e) = self.pt.poke_user(tid, USER_RIP_OFFSET, target)
                    && e.raw_os_error() != Some(libc::ESRCH)
                {
                    report(format_args!(
                        "cannot move thread {tid} out of the code cache: {e}"
                    ));
                }
                self.resume_out_of_cache(tid, left, None);
            }
            _ => {
                report(format_args!(
                    "mprotect inside the code cache's gate failed for thread {tid} at {:#x}; \
                     delivering SIGSEGV",
                    regs.rip
                ));
                self.resume_out_of_cache(tid, left, Some(libc::SIGSEGV));
            }
        }
    }

    /// An indirect branch (or return) at `site` left its region for
    /// `target`: the region is translated again with that target in it.
    /// Returns the target's translated address, and the region's entry.
    fn learn_target(&mut self, slot: usize, site: u64, target: u64) -> Option<(u64, u64)> {
        let cs = self.cache.slots.get_mut(&slot)?;
        let entry = cs
            .by_entry
            .iter()
            .find(|(_, i)| {
                cs.regions
                    .get(**i)
                    .is_some_and(|t| t.labels.contains_key(&site))
            })
            .map(|(e, _)| *e)?;
        let targets = cs
            .learned
            .entry(entry)
            .or_default()
            .entry(site)
            .or_default();
        if targets.len() >= translate::MAX_LEARNED || targets.contains(&target) {
            return None;
        }
        targets.push(target);
        cs.by_entry.remove(&entry);
        self.translate_into(slot, entry)?;
        let cs = self.cache.slots.get(&slot)?;
        let t = cs.regions.get(*cs.by_entry.get(&entry)?)?;
        t.labels.get(&target).map(|&at| (at, entry))
    }

    /// Sends `tid`, stopped at the exit trap, back into the cache at `at`,
    /// the threads stopped for it still stopped. Gives `left` back if it
    /// cannot.
    fn reenter_cache(
        &mut self,
        tid: pid_t,
        slot: usize,
        (at, entry): (u64, u64),
        left: InCache,
    ) -> Option<InCache> {
        let budget = match self.call.as_ref().map_or(0, |c| c.cache_budget) {
            0 => self.cache.budget,
            n => n,
        };
        let trap = u64::from(left.stopped.is_some());
        let open_gate = self.cache_base(slot) + CACHE_GATES_OFFSET;
        let ret_learn = self.ret_learn(entry);
        if !self.write_cells(slot, cell::BUDGET, &[budget, trap, 0, at, ret_learn])
            || self.pt.poke_user(tid, USER_RIP_OFFSET, open_gate).is_err()
        {
            return Some(left);
        }
        if left.stopped.is_some() {
            self.cache.holder = Some(tid);
        }
        let thread = self.thread_mut(tid);
        thread.in_cache = Some(left);
        thread.log_dirty = true;
        if let Some(call) = &mut self.call {
            call.stats.cache_entries += 1;
        }
        self.resume(tid, 0);
        None
    }

    /// Resumes `tid` with the first held signal; the others are sent again.
    fn deliver_held(&mut self, tid: pid_t, held: &[c_int]) {
        for &sig in held.iter().skip(1) {
            // SAFETY: tgkill with a valid signal number to a thread of the
            // test process; an error (the thread is gone) changes nothing.
            unsafe { libc::syscall(libc::SYS_tgkill, self.child, tid, sig) };
        }
        self.resume(tid, held.first().copied().unwrap_or(0));
    }

    /// A SIGSEGV inside the cache: a full log (the guard page), or a fault
    /// of the program's instruction, which is put back in place to run
    /// again natively.
    fn cache_fault(&mut self, tid: pid_t, regs: user_regs_struct) {
        let Some(slot) = self.threads.get(&tid).and_then(|t| t.slot) else {
            return self.resume(tid, libc::SIGSEGV);
        };
        let addr = self.pt.getsiginfo(tid).map_or(0, |info| {
            // SAFETY: for SIGSEGV, si_addr is the valid union member.
            unsafe { info.si_addr() as u64 }
        });
        let guard = self.cache_base(slot) + CACHE_GUARD_OFFSET;
        let point = self
            .cache
            .slots
            .get(&slot)
            .and_then(|cs| cs.region_at(regs.rip))
            .and_then(|t| t.point_at(regs.rip))
            .cloned();
        let Some(point) = point else {
            report(format_args!(
                "thread {tid} faulted at {:#x} in the code cache's own code (address {addr:#x})",
                regs.rip
            ));
            let left = self.leave_cache(tid);
            return self.resume_out_of_cache(tid, left, Some(libc::SIGSEGV));
        };
        if addr >= guard && addr < guard + PAGE_SIZE as u64 {
            // The log is full: empty it and write the entry again.
            self.drain_log(tid);
            if self
                .pt
                .poke_user(tid, USER_RIP_OFFSET, point.restart)
                .is_ok()
            {
                self.resume(tid, 0);
            }
            return;
        }
        // Back to the original instruction with the program's registers.
        let mut back = regs;
        for &(reg, off) in &point.spilled {
            if let Some(v) = self.read_cell(slot, off) {
                let _ = moves::write_register(&mut back, reg, v);
            }
        }
        back.rip = if point.phase == Phase::After {
            point.next_ip
        } else {
            point.ip
        };
        let ranges = self
            .cache
            .slots
            .get(&slot)
            .and_then(|cs| cs.gates_for.clone())
            .unwrap_or_default();
        let mut held: Vec<c_int> = Vec::new();
        for r in ranges {
            if let Err(e) = self.inject_mprotect(tid, &back, r, libc::PROT_NONE, &mut held) {
                report(format_args!(
                    "cannot close the pages after a fault in the code cache of thread {tid}: {e}"
                ));
                break;
            }
        }
        if let Err(e) = self.pt.setregs(tid, &back)
            && e.raw_os_error() != Some(libc::ESRCH)
        {
            report(format_args!(
                "cannot move thread {tid} out of the code cache: {e}"
            ));
        }
        let mut left = self.leave_cache(tid);
        held.append(&mut left.deferred);
        left.deferred = held;
        // The instruction runs again natively: its fault is handled there.
        self.resume_out_of_cache(tid, left, None);
    }
}
