//! Calls of the allocator (`malloc`, `free`, ...) during a call.
//!
//! The test process sends the addresses of the allocator's entry points
//! with `StartCall` (`tracee/allocator.rs`). The first time, the supervisor
//! copies each entry's first instruction into a trampoline in the stub
//! area's last page (re-encoded there if RIP-relative, followed by a jump
//! to the entry's second instruction). For the call's duration an `int3`
//! sits on each entry's first byte. The test process writes them itself,
//! with plain stores, after the supervisor's `Started` answer (which names
//! the entries that have a trampoline) and takes them out before its
//! `EndCall`: it made its allocator's code mappings writable once
//! (`tracee/allocator.rs`), so a call that allocates nothing pays nothing.
//! Where that is refused, the supervisor writes them through
//! `/proc/PID/mem` (one write per stretch of code holding entries, one for
//! glibc's; about 3 µs each) and puts the bytes back when the call ends;
//! it also puts them back when the calling thread dies during a call.
//!
//! At an entry's trap (rip = entry + 1), for a thread of the call that is
//! not already inside an allocator call:
//!
//! - `free(p)` is recorded and continues in the trampoline: one stop;
//! - `free`/`realloc` of a pointer into a buffer or tracked range (or a
//!   dropped buffer) is recorded as foreign and not executed: the thread
//!   returns to its caller at once (`realloc` returning `NULL`): one stop;
//! - any other entry: the return address on the stack is replaced with the
//!   address of an `int3` in the stub area (the return trap) and the thread
//!   continues in the trampoline; at the return trap the result (rax, or
//!   `*memptr` for `posix_memalign`) is recorded and rip set to the real
//!   return address: two stops.
//!
//! Other threads (and calls an allocator function makes of another, such
//! as `realloc(NULL, n)` calling `malloc`) just continue in the trampoline:
//! one stop, nothing recorded. No byte of the allocator is ever put back
//! while the breakpoints are armed, so other threads never run past one
//! unseen, and a thread that trapped just before the bytes were restored
//! still continues correctly through the trampoline.

use std::os::unix::fs::FileExt;

use libc::{pid_t, user_regs_struct};

use super::core::Supervisor;
use super::heap::Mapping;
use super::heap::{Entry, Span};
use super::report::report;
use super::thread::PendingReturn;
use crate::decode::insn;
use crate::layout::{
    RETURN_TRAP_OFFSET, SHADOW_BYTES, SLOT_SIZE, TRAMPOLINE_OFFSET, TRAMPOLINE_SIZE,
};
use crate::trace::alloc::{AllocFn, Allocation, ForeignFree, ForeignKind, live_after};
use crate::trace::event::{Note, RegionKind};

/// `int3`.
const INT3: u8 = 0xcc;

impl Supervisor {
    /// At the start of a call: prepares the entry points not seen before and
    /// puts their breakpoints in place. An entry that cannot be prepared is
    /// named in a note of the call and its calls are not recorded.
    /// With `by_tracee`, returns the entries (bit `i` for `wanted[i]`) the
    /// test process is to arm itself.
    pub(super) fn arm_allocator(
        &mut self,
        wanted: &[(AllocFn, u64)],
        native_blocks: Vec<u64>,
        by_tracee: bool,
    ) -> u16 {
        self.heap.recorded.clear();
        self.heap.native_blocks = native_blocks;
        self.heap.armed_by_tracee = false;
        if wanted.is_empty() {
            return 0;
        }
        let mut problems = Vec::new();
        for &(function, addr) in wanted {
            if self.heap.entry_at(addr).is_some() {
                continue;
            }
            let entry = match self.prepare_entry(function, addr) {
                Ok(trampoline) => Entry {
                    function,
                    addr,
                    trampoline: Some(trampoline),
                },
                Err(why) => {
                    problems.push(format!("calls of `{function}` are not recorded: {why}"));
                    Entry {
                        function,
                        addr,
                        trampoline: None,
                    }
                }
            };
            self.heap.entries.push(entry);
        }
        // The spans are built (the program's bytes read) at the first call,
        // before any breakpoint: they put the bytes back if the test
        // process cannot.
        let spans = self.build_spans();
        let mut mask = 0;
        if by_tracee && spans.is_ok() {
            for (i, &(_, addr)) in wanted.iter().enumerate().take(16) {
                if self
                    .heap
                    .entry_at(addr)
                    .is_some_and(|e| e.trampoline.is_some())
                {
                    mask |= 1 << i;
                }
            }
            self.heap.armed = true;
            self.heap.armed_by_tracee = true;
        } else {
            match spans.and_then(|()| self.write_spans(true)) {
                Ok(()) => self.heap.armed = true,
                Err(why) => problems.push(format!(
                    "the allocator's calls are not recorded: cannot write its breakpoints: {why}"
                )),
            }
        }
        if let Some(call) = &mut self.call {
            for text in problems {
                call.notes.push(Note {
                    ip: 0,
                    insn: String::new(),
                    region: None,
                    offset: 0,
                    text,
                    tid: call.tid,
                });
            }
        }
        mask
    }

    /// The calling thread died during the call: it cannot take out the
    /// breakpoints it put in place, so the supervisor does. The process may
    /// be dying too (a fatal signal), so a failed write says nothing.
    pub(super) fn allocator_caller_gone(&mut self) {
        if self.heap.armed && self.heap.armed_by_tracee {
            let _ = self.write_spans(false);
        }
    }

    /// Writes the breakpoints (`armed`) or the program's bytes into every
    /// stretch of code holding entries; a failed write undoes the ones made
    /// (never leaving a breakpoint behind).
    fn write_spans(&mut self, armed: bool) -> Result<(), String> {
        let mut written = 0;
        let result = self.heap.spans.iter().try_for_each(|span| {
            written += 1;
            let bytes = if armed { &span.armed } else { &span.original };
            match self.mem.write_at(bytes, span.start) {
                Ok(n) if n == bytes.len() => Ok(()),
                Ok(_) => Err(format!("short write at {:#x}", span.start)),
                Err(err) => Err(format!("{err} at {:#x}", span.start)),
            }
        });
        if result.is_err() && armed {
            for span in &self.heap.spans[..written] {
                let _ = self.mem.write_at(&span.original, span.start);
            }
        }
        result
    }

    /// Groups the entry points into stretches of code written whole, with
    /// their bytes as they are now (unarmed), once per set of entries.
    fn build_spans(&mut self) -> Result<(), String> {
        /// Entries closer than this share a stretch (glibc's are within 8 KiB).
        const SPAN_MAX: u64 = 64 * 1024;
        if self.heap.spans_of == self.heap.entries.len() {
            return Ok(());
        }
        let mut addrs: Vec<u64> = self
            .heap
            .entries
            .iter()
            .filter(|e| e.trampoline.is_some())
            .map(|e| e.addr)
            .collect();
        addrs.sort_unstable();
        let mut spans = Vec::new();
        let mut rest = addrs.as_slice();
        while let Some(&start) = rest.first() {
            let n = rest.iter().take_while(|&&a| a - start < SPAN_MAX).count();
            let (group, after) = rest.split_at(n);
            rest = after;
            let end = group.last().map_or(start, |&a| a) + 1;
            let mut original = vec![0u8; (end - start) as usize];
            match self.mem.read_at(&mut original, start) {
                Ok(n) if n == original.len() => {}
                _ => return Err(format!("cannot read the code at {start:#x}")),
            }
            let mut armed = original.clone();
            for &a in group {
                armed[(a - start) as usize] = INT3;
            }
            spans.push(Span {
                start,
                original,
                armed,
            });
        }
        self.heap.spans = spans;
        self.heap.spans_of = self.heap.entries.len();
        Ok(())
    }

    /// Writes the trampoline of the entry at `addr`; returns its address.
    fn prepare_entry(&mut self, function: AllocFn, addr: u64) -> Result<u64, String> {
        let mut bytes = [0u8; insn::MAX_INSN_LEN];
        let n = self
            .mem
            .read_at(&mut bytes, addr)
            .map_err(|e| format!("cannot read its code at {addr:#x}: {e}"))?;
        if n == 0 {
            return Err(format!("cannot read its code at {addr:#x}"));
        }
        if bytes[0] == INT3 {
            return Err(format!(
                "its first byte at {addr:#x} is already an int3 (a debugger's breakpoint?)"
            ));
        }
        let decoded = insn::decode(addr, &bytes[..n]);
        if decoded.insn.is_invalid() {
            return Err(format!(
                "its first instruction at {addr:#x} does not decode"
            ));
        }
        let index = self.heap.entries.len() as u64;
        if (index + 1) * TRAMPOLINE_SIZE > SLOT_SIZE as u64 - SHADOW_BYTES {
            return Err(format!("no room for the trampoline of `{function}`"));
        }
        let at = self.stub_base + TRAMPOLINE_OFFSET + index * TRAMPOLINE_SIZE;
        let mut code = decoded.bytes_at(at).ok_or_else(|| {
            format!(
                "its first instruction `{}` cannot be displaced (it changes control flow, or \
                 its RIP-relative operand is out of the trampoline's reach)",
                decoded.text
            )
        })?;
        code.extend_from_slice(&[0xff, 0x25, 0, 0, 0, 0]); // jmp [rip+0]
        code.extend_from_slice(&decoded.next_ip().to_le_bytes());
        if code.len() as u64 > TRAMPOLINE_SIZE {
            return Err(format!(
                "its first instruction `{}` does not fit a trampoline",
                decoded.text
            ));
        }
        self.mem
            .write_at(&code, at)
            .map_err(|e| format!("cannot write its trampoline: {e}"))?;
        Ok(at)
    }

    /// At the end of a call (however it ends): puts the allocator's bytes
    /// back and returns the calls recorded.
    pub(super) fn disarm_allocator(&mut self) -> Vec<Allocation> {
        if self.heap.armed {
            self.heap.armed = false;
            if !std::mem::take(&mut self.heap.armed_by_tracee)
                && let Err(why) = self.write_spans(false)
            {
                report(format_args!(
                    "cannot remove the allocator's breakpoints: {why}"
                ));
            }
        }
        self.heap.native_blocks.clear();
        std::mem::take(&mut self.heap.recorded)
    }

    /// A SIGTRAP of `tid`: if it is at an allocator breakpoint or the return
    /// trap, handles it and returns true.
    pub(super) fn on_alloc_trap(&mut self, tid: pid_t) -> bool {
        if self.heap.entries.is_empty() {
            return false;
        }
        let Ok(mut regs) = self.pt.getregs(tid) else {
            return false;
        };
        let at = regs.rip.wrapping_sub(1);
        if at == self.stub_base + RETURN_TRAP_OFFSET {
            return self.on_alloc_return(tid, regs);
        }
        let Some(entry) = self.heap.entry_at(at).cloned() else {
            return false;
        };
        let Some(trampoline) = entry.trampoline else {
            return false;
        };
        let of_call = self.is_call_thread(tid);
        if let Some(call) = &mut self.call
            && of_call
        {
            call.stats.allocator_stops += 1;
        }
        self.restore_signal_state(tid);
        let nested = self
            .threads
            .get(&tid)
            .is_some_and(|t| !t.alloc_returns.is_empty());
        let in_call = self.heap.armed && !nested && of_call;
        let mut slot = [0u8; 8];
        let ret = match self.mem.read_at(&mut slot, regs.rsp) {
            Ok(8) if in_call => Some(u64::from_le_bytes(slot)),
            _ => None,
        };
        let Some(ret) = ret else {
            // Not recorded: continue in the trampoline.
            regs.rip = trampoline;
            self.ok(tid, |pt| pt.setregs(tid, &regs));
            self.resume(tid, 0);
            return true;
        };
        let args = [regs.rdi, regs.rsi, regs.rdx];
        if entry.function.takes_block()
            && let Some(foreign) = self.foreign_block(regs.rdi, entry.addr)
        {
            // Not executed: return to the caller at once.
            let pending = PendingReturn {
                function: entry.function,
                args,
                ret,
                recorded: true,
            };
            self.record_allocation(tid, &pending, 0, Some(foreign));
            regs.rip = ret;
            regs.rsp += 8;
            if entry.function != AllocFn::Free {
                regs.rax = 0;
            }
            self.ok(tid, |pt| pt.setregs(tid, &regs));
            self.resume(tid, 0);
            return true;
        }
        let pending = PendingReturn {
            function: entry.function,
            args,
            ret,
            recorded: true,
        };
        if entry.function == AllocFn::Free {
            self.record_allocation(tid, &pending, 0, None);
        } else {
            let trap = self.stub_base + RETURN_TRAP_OFFSET;
            if self.mem.write_at(&trap.to_le_bytes(), regs.rsp).ok() == Some(8) {
                self.thread_mut(tid).alloc_returns.push(pending);
            } else {
                report(format_args!(
                    "cannot follow `{}` of thread {tid}: its stack at {:#x} cannot be written",
                    entry.function, regs.rsp
                ));
            }
        }
        regs.rip = trampoline;
        self.ok(tid, |pt| pt.setregs(tid, &regs));
        self.resume(tid, 0);
        true
    }

    /// True if `tid` is a thread of the call: the caller, or a thread its
    /// threads created during the call (a new thread is held at its first
    /// stop until its parent's clone event says whose it is, see
    /// `thread::Births`), or a thread that touched a protected page. Never
    /// another thread of the process (a pool thread of the test harness, a
    /// thread another test started) nor a forked process (which runs the
    /// allocator's breakpoints too).
    fn is_call_thread(&self, tid: pid_t) -> bool {
        self.call.as_ref().is_some_and(|c| c.threads.contains(&tid))
    }

    /// `tid` returned from a recorded allocator call into the return trap.
    fn on_alloc_return(&mut self, tid: pid_t, mut regs: user_regs_struct) -> bool {
        let Some(pending) = self
            .threads
            .get_mut(&tid)
            .and_then(|t| t.alloc_returns.pop())
        else {
            return false;
        };
        if let Some(call) = &mut self.call
            && pending.recorded
        {
            call.stats.allocator_stops += 1;
        }
        self.restore_signal_state(tid);
        let result = if pending.function == AllocFn::PosixMemalign {
            let mut block = [0u8; 8];
            match self.mem.read_at(&mut block, pending.args[0]) {
                Ok(8) if regs.rax == 0 => u64::from_le_bytes(block),
                _ => 0,
            }
        } else {
            regs.rax
        };
        if pending.recorded && self.call.is_some() {
            self.record_allocation(tid, &pending, result, None);
        }
        regs.rip = pending.ret;
        self.ok(tid, |pt| pt.setregs(tid, &regs));
        self.resume(tid, 0);
        true
    }

    /// Adds one allocator call to the call's record.
    fn record_allocation(
        &mut self,
        tid: pid_t,
        p: &PendingReturn,
        result: u64,
        foreign: Option<ForeignFree>,
    ) {
        let site = self.call_site(p.ret);
        let Some(call) = &self.call else { return };
        let [a0, a1, a2] = p.args;
        let (size, align, ptr) = match p.function {
            AllocFn::Malloc => (a0, 0, 0),
            AllocFn::Calloc => (a0.saturating_mul(a1), 0, 0),
            AllocFn::Realloc => (a1, 0, a0),
            AllocFn::Reallocarray => (a1.saturating_mul(a2), 0, a0),
            AllocFn::Free => (0, 0, a0),
            AllocFn::PosixMemalign => (a2, a1, 0),
            AllocFn::AlignedAlloc | AllocFn::Memalign => (a1, a0, 0),
            AllocFn::Valloc => (a0, crate::layout::PAGE_SIZE as u64, 0),
        };
        let after_accesses = call.accesses.len();
        self.heap.recorded.push(Allocation {
            function: p.function,
            size,
            align,
            ptr,
            result,
            site,
            tid,
            after_accesses,
            foreign,
        });
    }

    /// The calling instruction of return address `ret` (`ret` itself when
    /// the bytes before it are not a call).
    fn call_site(&mut self, ret: u64) -> u64 {
        if let Some(&site) = self.heap.sites.get(&ret) {
            return site;
        }
        let mut before = [0u8; 8];
        let site = match self.mem.read_at(&mut before, ret.wrapping_sub(8)) {
            Ok(8) => insn::call_ending_at(ret, &before).unwrap_or(ret),
            _ => ret,
        };
        self.heap.sites.insert(ret, site);
        site
    }

    /// If freeing `p` would free memory the allocator does not own (a
    /// buffer's bytes, a tracked range that is not a block native code
    /// allocated, a dropped buffer, an address no block of glibc's allocator
    /// can have), what it points into. `entry` is the `free`/`realloc`
    /// called.
    fn foreign_block(&mut self, p: u64, entry: u64) -> Option<ForeignFree> {
        let found = self.foreign_region(p);
        if found.is_some() || p == 0 {
            return found;
        }
        self.not_a_block(p, entry)
            .map(|(name, offset)| ForeignFree {
                region: None,
                name,
                kind: ForeignKind::NotABlock,
                offset,
            })
    }

    /// Why `p` cannot be a block of glibc's allocator, with its offset in
    /// its mapping; `None` if it can be one, or the allocator called (at
    /// `entry`) is not glibc's (another allocator may place blocks
    /// anywhere). glibc's blocks are 16-byte aligned and lie on its heap
    /// (`brk`) or in anonymous mappings: never in a file's mapping, the main
    /// thread's stack, the vDSO, or no mapping. Judged from the test
    /// process's mappings as last read; read again before saying no, so a
    /// mapping made since (a large block's) is never taken for a violation.
    fn not_a_block(&mut self, p: u64, entry: u64) -> Option<(String, i64)> {
        if self.heap.maps.is_empty() {
            self.heap.maps = read_maps(self.child);
        }
        let is_glibc = |maps: &[Mapping]| {
            mapping_at(maps, entry).is_some_and(|m| m.name.rsplit('/').next() == Some("libc.so.6"))
        };
        if !is_glibc(&self.heap.maps) {
            return None;
        }
        if !p.is_multiple_of(16) {
            return Some((
                "misaligned: glibc's blocks are 16-byte aligned".to_owned(),
                0,
            ));
        }
        // Believed when it says "may be a block" (at worst a violation is
        // missed); checked afresh when it says "cannot be".
        cannot_hold_blocks(mapping_at(&self.heap.maps, p))?;
        self.heap.maps = read_maps(self.child);
        if self.heap.maps.is_empty() {
            // Unreadable: say nothing rather than something wrong.
            return None;
        }
        let mapping = mapping_at(&self.heap.maps, p);
        cannot_hold_blocks(mapping).map(|why| (why, mapping.map_or(0, |m| (p - m.start) as i64)))
    }

    /// What `p` points into among the call's regions and the buffers'
    /// reserved range (see `foreign_block`).
    fn foreign_region(&self, p: u64) -> Option<ForeignFree> {
        if p == 0 {
            return None;
        }
        let call = self.call.as_ref()?;
        for r in &call.regions {
            let offset = (i128::from(p) - i128::from(r.start)) as i64;
            match r.kind {
                RegionKind::Buffer if p >= r.span_start && p < r.span_end() => {
                    return Some(ForeignFree {
                        region: Some(r.id),
                        name: r.name.clone(),
                        kind: ForeignKind::Buffer,
                        offset,
                    });
                }
                RegionKind::Tracked if p >= r.start && p < r.end().max(r.start + 1) => {
                    let native = self.heap.native_blocks.contains(&p)
                        || live_after(&self.heap.recorded).contains_key(&p);
                    if !native {
                        return Some(ForeignFree {
                            region: Some(r.id),
                            name: r.name.clone(),
                            kind: ForeignKind::Tracked,
                            offset,
                        });
                    }
                }
                _ => {}
            }
        }
        if self.in_buffer_range(p) {
            let dropped = self
                .dropped
                .iter()
                .find(|d| p >= d.span_start && p < d.span_start + d.span_len);
            return Some(ForeignFree {
                region: None,
                name: dropped.map_or_else(
                    || "(none: the buffers' reserved range)".to_owned(),
                    |d| format!("{} (dropped)", d.name),
                ),
                kind: ForeignKind::Buffer,
                offset: dropped.map_or(0, |d| (i128::from(p) - i128::from(d.start)) as i64),
            });
        }
        None
    }
}

/// The test process's mappings (`/proc/PID/maps`); empty if unreadable.
fn read_maps(pid: pid_t) -> Vec<Mapping> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|text| {
            text.lines()
                .filter_map(crate::trace::symbols::parse_maps_line)
                .map(|m| Mapping {
                    start: m.start,
                    end: m.end,
                    name: m.path.to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The mapping holding `addr`.
fn mapping_at(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    maps.iter().find(|m| m.start <= addr && addr < m.end)
}

/// Why no block of glibc's allocator can lie in `mapping` (`None`: no
/// mapping), or `None` if one can: its heap, anonymous mappings (named or
/// not), huge pages (`/anon_hugepage`, with `glibc.malloc.hugetlb`).
fn cannot_hold_blocks(mapping: Option<&Mapping>) -> Option<String> {
    let Some(m) = mapping else {
        return Some("in no mapping".to_owned());
    };
    let name = m.name.as_str();
    let file = name.starts_with('/') && !name.starts_with("/anon_hugepage");
    let pseudo = matches!(
        name,
        "[stack]" | "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]"
    );
    (file || pseudo).then(|| format!("in the mapping of {name}"))
}
