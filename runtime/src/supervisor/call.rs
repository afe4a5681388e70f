//! The call in progress, and calls whose late threads are watched.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use libc::pid_t;

use crate::decode::insn::Decoded;
use crate::layout::{PAGE_SIZE, page_floor, protected_spans};
use crate::trace::declared::{Declared, Watch};
use crate::trace::event::{Note, RegionDesc, Stats, UnknownSyscall, Unsupported};
use crate::trace::store::{Records, Streamed};

/// Page ranges to open or close: `(start, len)`, merged.
pub(super) type Ranges = Vec<(u64, u64)>;

/// A traced call in progress.
pub(super) struct Call {
    pub(super) tid: pid_t,
    pub(super) test: String,
    pub(super) call: String,
    pub(super) regions: Vec<RegionDesc>,
    /// Protected page ranges `(start, end)`, sorted and merged.
    pub(super) protected: Vec<(u64, u64)>,
    /// The accesses so far, compact (`trace/store.rs`).
    pub(super) accesses: Records,
    pub(super) unsupported: Vec<Unsupported>,
    pub(super) notes: Vec<Note>,
    pub(super) unknown_syscalls: Vec<UnknownSyscall>,
    /// The threads of the call: the calling thread, the threads it created
    /// during the call, and any thread that touched a protected page.
    pub(super) threads: BTreeSet<pid_t>,
    /// Decoded instructions by address, for this call.
    pub(super) cache: HashMap<u64, Rc<Decoded>>,
    pub(super) stats: Stats,
    /// The supervisor's ptrace request count when the call started.
    pub(super) requests_at_start: u64,
    /// Indices of the accesses the current fault (or log entry) recorded
    /// that wait for their caller chain: those out of their region's bytes
    /// and those that break a contract declared before the call (see
    /// `Supervisor::note_callers_of_flagged`).
    pub(super) flagged: Vec<usize>,
    /// The contracts declared before the call, by region index (`None`: no
    /// contract on that region).
    pub(super) watches: Vec<Option<Watch>>,
    /// Whether a report already listed this call's accesses (see
    /// `postmortem`), so that the report of a death does not repeat them.
    pub(super) accesses_shown: bool,
    /// Whether hot code may run in the code cache during this call.
    pub(super) code_cache: bool,
    /// The call's budget of backward branches per entry (0: the default).
    pub(super) cache_budget: u64,
    /// Entries into the code cache per region entry address.
    pub(super) cache_region_entries: HashMap<u64, u32>,
    /// Whether the call's finished chunks of records go to the memfd
    /// (`stream`): the test's call, while the memfd takes them.
    pub(super) streams: bool,
    /// Where the chunks streamed so far lie in the memfd.
    pub(super) streamed: Streamed,
    /// The memfd's bytes written so far in this call.
    pub(super) streamed_end: u64,
}

impl Call {
    /// A call of thread `tid` on `regions`, protecting their spans.
    pub(super) fn new(
        tid: pid_t,
        test: String,
        call: String,
        regions: Vec<RegionDesc>,
        requests_at_start: u64,
    ) -> Call {
        Call {
            tid,
            test,
            call,
            protected: protected_spans(&regions),
            regions,
            accesses: Records::default(),
            unsupported: Vec::new(),
            notes: Vec::new(),
            unknown_syscalls: Vec::new(),
            threads: BTreeSet::from([tid]),
            cache: HashMap::new(),
            stats: Stats {
                stops: 1,
                ..Stats::default()
            },
            requests_at_start,
            flagged: Vec::new(),
            watches: Vec::new(),
            accesses_shown: false,
            code_cache: true,
            cache_budget: 0,
            cache_region_entries: HashMap::new(),
            streams: false,
            streamed: Streamed::default(),
            streamed_end: 0,
        }
    }

    /// Watches the contracts `declared` before the call; those on regions
    /// that are not the call's are dropped (the test process checks only
    /// the call's).
    pub(super) fn watch(&mut self, declared: Vec<Declared>) {
        self.watches = self.regions.iter().map(|_| None).collect();
        for d in declared {
            if let Some(i) = self.regions.iter().position(|r| r.id == d.region) {
                let len = self.regions[i].len as usize;
                self.watches[i] = Some(Watch::new(d, len));
            }
        }
    }

    /// True if `[addr, addr+len)` overlaps a protected page.
    pub(super) fn is_protected(&self, addr: u64, len: u64) -> bool {
        self.protected
            .iter()
            .any(|&(s, e)| addr < e && addr + len.max(1) > s)
    }

    /// Every protected page range.
    pub(super) fn all_protected(&self) -> Ranges {
        self.protected.iter().map(|&(s, e)| (s, e - s)).collect()
    }

    /// The protected pages the address ranges `reach` touch, merged into
    /// ranges.
    pub(super) fn pages_to_open(&self, reach: &[(u64, u64)]) -> Ranges {
        let page = PAGE_SIZE as u64;
        let mut ranges: Ranges = Vec::new();
        for &(addr, len) in reach {
            let lo = page_floor(addr);
            let hi = addr.saturating_add(len.max(1)).saturating_add(page - 1) & !(page - 1);
            for &(s, e) in &self.protected {
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
}

/// The call that just ended, with threads it created still running (see
/// `late`).
#[derive(Debug)]
pub(super) struct Ended {
    pub(super) tid: pid_t,
    pub(super) test: String,
    pub(super) call: String,
    pub(super) regions: Vec<RegionDesc>,
    pub(super) protected: Vec<(u64, u64)>,
    pub(super) late: BTreeSet<pid_t>,
}

/// A call whose late threads are watched (see `late`).
pub(super) struct Watching {
    /// The ended call's regions and protected pages, in the form the fault
    /// path works on.
    pub(super) call: Call,
    pub(super) late: BTreeSet<pid_t>,
    /// What the client restored at the end of the call.
    pub(super) restore: Vec<(u64, u64, i32)>,
}
