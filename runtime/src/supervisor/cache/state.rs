//! The code cache's state (data only, no handling): what `core` and
//! `thread` hold of it. The handling is in `mod.rs`.

use std::collections::{HashMap, HashSet};

use libc::pid_t;

use super::translate::{Site, Translation};

/// Backward branches a region takes before it exits, by default.
const DEFAULT_BUDGET: u64 = 1 << 18;

/// Faults at one instruction before it is translated.
pub(super) const HOT: u32 = 2;
/// At most this many page ranges are opened by a gate.
pub(super) const MAX_GATE_RANGES: usize = 64;
/// The code cache's state in the supervisor.
pub(in crate::supervisor) struct CodeCache {
    pub(in crate::supervisor) enabled: bool,
    pub(in crate::supervisor) budget: u64,
    /// Faults seen per instruction address.
    pub(in crate::supervisor) hot: HashMap<u64, u32>,
    /// Entry addresses that cannot be translated.
    pub(in crate::supervisor) refused: HashSet<u64>,
    /// Per thread slot.
    pub(in crate::supervisor) slots: HashMap<usize, CacheSlot>,
    /// The thread in the cache while the call's other threads are stopped
    /// for it: until it leaves, another thread's event (one consumed while
    /// stopping threads for an earlier fault) waits with them.
    pub(in crate::supervisor) holder: Option<pid_t>,
    /// `TRACED_FFI_CACHE=verbose`: say on stderr what is not translated,
    /// and where threads enter the cache most.
    pub(in crate::supervisor) verbose: bool,
    /// Entries per address, counted when verbose.
    pub(in crate::supervisor) entries: HashMap<u64, u64>,
}

impl CodeCache {
    /// The cache as the environment configures it.
    pub(in crate::supervisor) fn from_env() -> CodeCache {
        let enabled = !matches!(
            std::env::var("TRACED_FFI_CACHE").as_deref(),
            Ok("off" | "0" | "false" | "no")
        );
        let budget = std::env::var("TRACED_FFI_CACHE_BUDGET")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_BUDGET);
        CodeCache {
            enabled,
            budget,
            hot: HashMap::new(),
            refused: HashSet::new(),
            slots: HashMap::new(),
            holder: None,
            verbose: std::env::var("TRACED_FFI_CACHE").as_deref() == Ok("verbose"),
            entries: HashMap::new(),
        }
    }
}

/// One thread slot's translations.
#[derive(Default)]
pub(in crate::supervisor) struct CacheSlot {
    pub(in crate::supervisor) regions: Vec<Translation>,
    pub(in crate::supervisor) by_entry: HashMap<u64, usize>,
    /// Site ids are indices.
    pub(in crate::supervisor) sites: Vec<Site>,
    /// Where the next translation goes, from the code's start.
    pub(in crate::supervisor) next_code: u64,
    /// The ranges the gates are written for.
    pub(in crate::supervisor) gates_for: Option<Vec<(u64, u64)>>,
    /// Where `rip` is at the close gate's exit trap.
    pub(in crate::supervisor) exit_trap: u64,
    /// Per region entry: the targets its indirect branches and returns
    /// were seen to leave it for (see `translate`).
    pub(in crate::supervisor) learned: HashMap<u64, HashMap<u64, Vec<u64>>>,
}

impl CacheSlot {
    pub(in crate::supervisor) fn region_at(&self, ip: u64) -> Option<&Translation> {
        self.regions
            .iter()
            .find(|t| ip >= t.at && ip < t.at + t.code.len() as u64)
    }
}
