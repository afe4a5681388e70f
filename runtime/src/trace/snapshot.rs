//! A rendering of a [`Trace`] for snapshot tests (`insta`): no addresses,
//! no statistics, no offsets inside functions, no thread ids, so the same
//! native code on the same inputs gives the same text on any build or
//! machine.

use std::fmt::Write as _;

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
    /// line per access (kind, where, length, bytes, function), then notes,
    /// unknown system calls and unsupported instructions, without anything
    /// that changes between builds or runs. For `insta::assert_snapshot!`.
    pub fn snapshot(&self) -> String {
        let mut out = String::new();
        let regions: Vec<String> = self
            .regions()
            .iter()
            .map(|r| format!("{} ({} bytes)", r.name, r.len))
            .collect();
        let _ = writeln!(out, "regions: {}", regions.join(", "));
        for a in self.accesses() {
            let bytes: Vec<String> = a.bytes.iter().map(|b| format!("{b:02x}")).collect();
            let by = match &a.syscall {
                Some(name) => format!("{name} (kernel)"),
                None => function_of(a.ip),
            };
            let oob = if self.is_out_of_bounds(a) {
                "  OUT OF BOUNDS"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{} {} {} [{}] {by}{oob}",
                a.kind,
                self.describe_location(a),
                a.len,
                bytes.join(" ")
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
