//! A rendering of a [`Trace`] for snapshot tests (`insta`): no addresses,
//! no statistics, no offsets inside functions, no thread ids, so the same
//! native code on the same inputs gives the same text on any build or
//! machine.

use std::fmt::Write as _;

use std::collections::HashMap;

use super::alloc::{AllocFn, Allocation};
use super::event::Trace;
use super::symbols::describe_ip;

/// The function an instruction address belongs to, without the offset in
/// it; `?` when it has no symbol.
fn function_of(ip: u64) -> String {
    let at = describe_ip(ip);
    match at.rsplit_once("+0x") {
        Some((name, _)) => name.to_owned(),
        None if at.starts_with("0x") => "?".to_owned(),
        None => at,
    }
}

impl Trace {
    /// The trace as stable text: the regions with their lengths, then one
    /// line per access (kind, where, length, bytes, function) and per
    /// allocator call in their order (blocks numbered `#1`, `#2`, ... in the
    /// order this call allocated them; a block from before the call is
    /// `earlier`), the blocks left allocated, then notes, unknown system
    /// calls and unsupported instructions, without anything that changes
    /// between builds or runs. For `insta::assert_snapshot!`.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let regions: Vec<String> = self
            .regions()
            .iter()
            .map(|r| format!("{} ({} bytes)", r.name, r.len))
            .collect();
        let _ = writeln!(out, "regions: {}", regions.join(", "));
        if let Some(keep) = self.access_bound() {
            let _ = writeln!(
                out,
                "bounded: the first {keep} access(es) and the out-of-bounds ones kept, {} not kept",
                self.dropped_accesses()
            );
        }
        let mut blocks = Blocks::default();
        let mut allocs = self.allocations().iter().peekable();
        for (i, a) in self.iter_accesses().enumerate() {
            while let Some(call) = allocs.next_if(|c| c.after_accesses <= i) {
                let _ = writeln!(out, "{}", blocks.line(call));
            }
            let bytes: Vec<String> = a.bytes.iter().map(|b| format!("{b:02x}")).collect();
            let by = match a.syscall {
                Some(name) => format!("{name} (kernel)"),
                None => function_of(a.ip),
            };
            let oob = if a.out_of_bounds {
                "  OUT OF BOUNDS"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{} {} {} [{}] {by}{oob}",
                a.kind,
                self.describe_ref_location(&a),
                a.len,
                bytes.join(" ")
            );
        }
        for call in allocs {
            let _ = writeln!(out, "{}", blocks.line(call));
        }
        let mut unfreed = self.unfreed();
        unfreed.sort_by_key(|a| blocks.numbers.get(&a.result).copied());
        for a in unfreed {
            let _ = writeln!(
                out,
                "left allocated: {} ({} bytes) from {}",
                blocks.name(a.result),
                a.size,
                function_of(a.site)
            );
        }
        for n in self.notes() {
            let _ = writeln!(out, "note: {}", n.text);
        }
        for s in self.unknown_syscalls() {
            let _ = writeln!(
                out,
                "unknown syscall {} ({})",
                s.name.as_deref().unwrap_or("?"),
                s.nr
            );
        }
        for u in self.unsupported() {
            let _ = writeln!(out, "unsupported ×{} `{}`: {}", u.count, u.insn, u.reason);
        }
        out
    }
}

/// Names of the blocks a call allocated, in the order it allocated them.
#[derive(Default)]
struct Blocks {
    numbers: HashMap<u64, usize>,
    next: usize,
}

impl Blocks {
    /// `#n` for a block this call allocated, `earlier` for any other
    /// (allocated before the call), `NULL` for 0.
    fn name(&self, ptr: u64) -> String {
        match self.numbers.get(&ptr) {
            _ if ptr == 0 => "NULL".to_owned(),
            Some(n) => format!("#{n}"),
            None => "earlier".to_owned(),
        }
    }

    /// One allocator call: `alloc malloc(24) = #1 by make`.
    fn line(&mut self, a: &Allocation) -> String {
        let given = match &a.foreign {
            Some(f) => match f.kind {
                super::alloc::ForeignKind::NotABlock => format!("not a block: {}", f.name),
                _ => f.describe(a.ptr),
            },
            None => self.name(a.ptr),
        };
        if let Some(p) = a.released() {
            self.numbers.remove(&p);
        }
        let result = if a.allocated() {
            self.next += 1;
            self.numbers.insert(a.result, self.next);
            format!("#{}", self.next)
        } else {
            "NULL".to_owned()
        };
        let call = match a.function {
            AllocFn::Free => format!("free({given})"),
            AllocFn::Realloc | AllocFn::Reallocarray => {
                format!("{}({given}, {}) = {result}", a.function, a.size)
            }
            AllocFn::PosixMemalign | AllocFn::AlignedAlloc | AllocFn::Memalign => {
                format!("{}(align {}, {}) = {result}", a.function, a.align, a.size)
            }
            _ => format!("{}({}) = {result}", a.function, a.size),
        };
        let refused = if a.foreign.is_some() {
            "  NOT EXECUTED"
        } else {
            ""
        };
        format!("alloc {call} by {}{refused}", function_of(a.site))
    }
}
