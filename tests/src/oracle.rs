//! The valgrind oracle's shared half: what `oracle-driver` prints, how a lackey log is
//! read, and how the two sides of one case are compared.
//!
//! `oracle-driver traced <case>` runs a case under the tracer; `oracle-driver plain
//! <case>` runs it untraced, meant to run under `valgrind --tool=lackey
//! --trace-mem=yes`. Both print one record per line (fields separated by one space;
//! addresses in hex without `0x`; a free-text field always comes last):
//!
//! ```text
//! impl <function> <module>+0x<offset>     the glibc function variant this process uses
//! buffer <name> <len> <start> <span_start> <span_end>
//! module <base> <start> <end> <path>      an executable mapping; base = lowest mapping of path
//! marker <begin> <end>                    plain: the two 1-byte loads around the call
//! access <R|W|MW> <buffer> <offset> <len> <ip>   traced: one Access, in order
//! unsupported <ip> <count> <insn> | <reason>     traced: one Unsupported entry
//! result <u64>                            what the call returned, address-free
//! contents <buffer> fnv1a:<hash>         a hash of a buffer's bytes after the call
//! skip <reason>                           the case cannot run here (e.g. no AVX2)
//! ```
//!
//! The plain side's accesses come from the lackey log: `I  addr,size` (an instruction),
//! then ` L addr,size` (load), ` S addr,size` (store), ` M addr,size` (modify: a load
//! and a store of the same bytes by one instruction, which the tracer reports as a read
//! then a write). Only the lines between the begin and end marker loads count, and of
//! those only accesses inside a buffer's span (its guard pages included).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

/// The `GLIBC_TUNABLES` both sides of every case run with, so glibc 2.36 picks the same
/// string-function variants and the same size thresholds natively and under valgrind.
///
/// Valgrind 3.19 emulates no AVX-512 and reports a fixed Haswell-like CPU (AVX2, BMI2,
/// ERMS, MOVBE; no FSRM; its own cache sizes). Natively this machine has AVX-512, so
/// glibc would pick the `evex`/`avx512` variants natively and the `avx2` ones under
/// valgrind. Hence:
/// - `-AVX512F,-AVX512VL`: no AVX-512 variant anywhere (the memmove/memset selectors
///   test AVX512F, the string ones AVX512VL+AVX512BW); both sides then use the
///   `*_avx2` / `*_avx_unaligned_erms` / `*_avx2_movbe` variants.
/// - `Fast_Rep_String,Fast_Unaligned_Load,Fast_Unaligned_Copy,Prefer_PMINUB_for_stringop`:
///   preference bits glibc sets for valgrind's Intel-like CPU but not for this AMD
///   one; set on both so `ld.so --list-diagnostics` shows the same preferences.
/// - the five sizes: glibc derives them from CPUID cache leaves and FSRM, which differ
///   (natively `rep_movsb_threshold` is 2112 because of FSRM, under valgrind 8192).
///   With them pinned, `rep movsb` serves copies of 2048 bytes or more and `rep stosb`
///   fills of 2048 or more, on both sides.
///
/// Checked with `GLIBC_TUNABLES=… /lib64/ld-linux-x86-64.so.2 --list-diagnostics`
/// natively and under `valgrind --tool=none` (identical `preferred.*`, thresholds and
/// cache sizes; only `isa_1` and the raw `level*_cache_size` still differ, and glibc
/// 2.36's string ifuncs read neither); every run also prints the variant it uses
/// (`impl` lines) and the test fails if the two sides disagree.
pub const GLIBC_TUNABLES: &str = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,Fast_Rep_String,\
Fast_Unaligned_Load,Fast_Unaligned_Copy,Prefer_PMINUB_for_stringop\
:glibc.cpu.x86_rep_movsb_threshold=2048\
:glibc.cpu.x86_rep_stosb_threshold=2048\
:glibc.cpu.x86_non_temporal_threshold=1048576\
:glibc.cpu.x86_data_cache_size=32768\
:glibc.cpu.x86_shared_cache_size=8388608";

/// Read, write, or (tracer only) maybe-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A load.
    R,
    /// A store.
    W,
    /// A conditional store (the tracer's `MaybeWrite`).
    MW,
}

impl Kind {
    /// The record spelling: `R`, `W`, `MW`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::R => "R",
            Kind::W => "W",
            Kind::MW => "MW",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "R" => Ok(Kind::R),
            "W" => Ok(Kind::W),
            "MW" => Ok(Kind::MW),
            _ => Err(format!("unknown access kind `{s}` (expected R, W or MW)")),
        }
    }
}

/// One buffer as laid out by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferInfo {
    /// The case's name for it.
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// Address of its first byte.
    pub start: u64,
    /// First byte of its span (leading guard page).
    pub span_start: u64,
    /// One past the span's last byte (end of the trailing guard page).
    pub span_end: u64,
}

/// One executable mapping of the process, for naming instruction addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Lowest address mapped from the same file (its load base).
    pub base: u64,
    /// First byte of this executable mapping.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// The mapped file.
    pub path: String,
}

/// One buffer access, comparable between the two sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Read, write or maybe-write.
    pub kind: Kind,
    /// The buffer's name.
    pub buffer: String,
    /// Offset of the first byte from the buffer's first byte (negative: before it).
    pub offset: i64,
    /// Bytes accessed.
    pub len: u64,
    /// The instruction, as `module+0xoffset` (the same on both sides when both run the
    /// same code).
    pub site: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<2} {}[{}..{}] {}B at {}",
            self.kind.as_str(),
            self.buffer,
            self.offset,
            self.offset + self.len as i64,
            self.len,
            self.site
        )
    }
}

/// What one side of a case produced.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// glibc function → `module+0xoffset` of the variant used.
    pub impls: BTreeMap<String, String>,
    /// The buffers, in the case's order.
    pub buffers: Vec<BufferInfo>,
    /// Executable mappings.
    pub modules: Vec<Module>,
    /// Plain side: addresses of the begin and end marker bytes.
    pub marker: Option<(u64, u64)>,
    /// Traced side: accesses with raw instruction addresses (site still empty).
    pub accesses: Vec<(Event, u64)>,
    /// Traced side: unsupported instructions, one line each.
    pub unsupported: Vec<String>,
    /// What the call returned.
    pub result: Option<u64>,
    /// Buffer contents after the call, hex.
    pub contents: BTreeMap<String, String>,
    /// Why the case did not run, if it did not.
    pub skip: Option<String>,
}

fn hex(s: &str, what: &str) -> Result<u64, String> {
    u64::from_str_radix(s, 16).map_err(|e| format!("bad hex {what} `{s}`: {e}"))
}

fn dec<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    s.parse().map_err(|e| format!("bad {what} `{s}`: {e}"))
}

impl Run {
    /// Parses the driver's stdout (either mode).
    pub fn parse(stdout: &str) -> Result<Run, String> {
        let mut run = Run::default();
        for (n, line) in stdout.lines().enumerate() {
            run.parse_line(line)
                .map_err(|e| format!("driver output line {}: {e}: `{line}`", n + 1))?;
        }
        Ok(run)
    }

    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let f: Vec<&str> = rest.split(' ').collect();
        let need = |n: usize| {
            if f.len() >= n {
                Ok(())
            } else {
                Err(format!("`{tag}` needs {n} fields"))
            }
        };
        match tag {
            "impl" => {
                need(2)?;
                self.impls.insert(f[0].to_owned(), f[1].to_owned());
            }
            "buffer" => {
                need(5)?;
                self.buffers.push(BufferInfo {
                    name: f[0].to_owned(),
                    len: dec(f[1], "length")?,
                    start: hex(f[2], "start")?,
                    span_start: hex(f[3], "span start")?,
                    span_end: hex(f[4], "span end")?,
                });
            }
            "module" => {
                need(4)?;
                let path = rest.splitn(4, ' ').nth(3).unwrap_or_default();
                self.modules.push(Module {
                    base: hex(f[0], "base")?,
                    start: hex(f[1], "start")?,
                    end: hex(f[2], "end")?,
                    path: path.to_owned(),
                });
            }
            "marker" => {
                need(2)?;
                self.marker = Some((hex(f[0], "begin")?, hex(f[1], "end")?));
            }
            "access" => {
                need(5)?;
                let event = Event {
                    kind: Kind::parse(f[0])?,
                    buffer: f[1].to_owned(),
                    offset: dec(f[2], "offset")?,
                    len: dec(f[3], "length")?,
                    site: String::new(),
                };
                self.accesses.push((event, hex(f[4], "ip")?));
            }
            "unsupported" => self.unsupported.push(rest.to_owned()),
            "result" => {
                need(1)?;
                self.result = Some(dec(f[0], "result")?);
            }
            "contents" => {
                need(1)?;
                self.contents
                    .insert(f[0].to_owned(), f.get(1).unwrap_or(&"").to_string());
            }
            "skip" => self.skip = Some(rest.to_owned()),
            "" => {}
            _ => return Err(format!("unknown record `{tag}`")),
        }
        Ok(())
    }

    /// `module+0xoffset` for an instruction address, from this run's mappings.
    pub fn site(&self, ip: u64) -> String {
        match self.modules.iter().find(|m| (m.start..m.end).contains(&ip)) {
            Some(m) => {
                let file = m.path.rsplit('/').next().unwrap_or(&m.path);
                format!("{file}+{:#x}", ip - m.base)
            }
            None => format!("?{ip:#x}"),
        }
    }

    /// The traced side's accesses, with sites.
    pub fn traced_events(&self) -> Vec<Event> {
        self.accesses
            .iter()
            .map(|(e, ip)| Event {
                site: self.site(*ip),
                ..e.clone()
            })
            .collect()
    }

    /// The plain side's accesses: the lackey log between the markers, restricted to the
    /// buffers' spans, a modify (`M`) split into a read then a write.
    ///
    /// The log covers the whole process (start-up included: about a million lines), so
    /// the window is cut with glibc's `memmem` first and only it is parsed.
    pub fn lackey_events(&self, log: &str) -> Result<Vec<Event>, String> {
        let (begin, end) = self
            .marker
            .ok_or("the plain driver printed no `marker` line")?;
        let after = |needle: &str, from: usize| {
            find(&log[from..], needle).map(|at| from + at + needle.len())
        };
        let missing = |which: &str| {
            format!(
                "the lackey log lacks the {which} marker load ({begin:x} then {end:x}): was \
                 the driver run under `valgrind --tool=lackey --trace-mem=yes`, and did it \
                 finish?"
            )
        };
        let from = after(&format!("\n L {begin:08x},1\n"), 0).ok_or_else(|| missing("begin"))?;
        let to = after(&format!("\n L {end:08x},1\n"), from).ok_or_else(|| missing("end"))?;
        let mut events = Vec::new();
        let mut ip = 0u64;
        for line in log[from..to].lines() {
            let (tag, operand) = match line.strip_prefix("I  ") {
                Some(rest) => ("I", rest),
                None => match line.get(..3) {
                    Some(t @ (" L " | " S " | " M ")) => (t.trim(), &line[3..]),
                    _ => continue, // valgrind's own `==pid==` messages
                },
            };
            let (addr, size) = operand
                .split_once(',')
                .ok_or_else(|| format!("lackey line without `,`: `{line}`"))?;
            let addr = hex(addr, "lackey address")?;
            let size: u64 = dec(size, "lackey size")?;
            if tag == "I" {
                ip = addr;
                continue;
            }
            if tag == "L" && size == 1 && addr == end {
                break;
            }
            let Some(b) = self
                .buffers
                .iter()
                .find(|b| (b.span_start..b.span_end).contains(&addr))
            else {
                continue;
            };
            let offset = addr as i64 - b.start as i64;
            let kinds: &[Kind] = match tag {
                "L" => &[Kind::R],
                "S" => &[Kind::W],
                _ => &[Kind::R, Kind::W],
            };
            for &kind in kinds {
                events.push(Event {
                    kind,
                    buffer: b.name.clone(),
                    offset,
                    len: size,
                    site: self.site(ip),
                });
            }
        }
        Ok(events)
    }
}

/// Where `needle` first occurs in `haystack` (glibc's `memmem`: fast on a log of tens of
/// megabytes even in a debug build).
fn find(haystack: &str, needle: &str) -> Option<usize> {
    // SAFETY: both pointers are valid for reads of the lengths passed with them.
    let p = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    (!p.is_null()).then(|| p as usize - haystack.as_ptr() as usize)
}

/// Per buffer: the byte offsets read and written (maybe-written counts as written).
pub type ByteSets = BTreeMap<String, (BTreeSet<i64>, BTreeSet<i64>)>;

/// The bytes each buffer had read and written, from a list of events.
pub fn byte_sets(events: &[Event], buffers: &[BufferInfo]) -> ByteSets {
    let mut sets: ByteSets = buffers
        .iter()
        .map(|b| (b.name.clone(), Default::default()))
        .collect();
    for e in events {
        let (read, written) = sets.entry(e.buffer.clone()).or_default();
        let set = if e.kind == Kind::R { read } else { written };
        set.extend(e.offset..e.offset + e.len as i64);
    }
    sets
}

/// A set of offsets as half-open ranges: `[-16..0, 0..5]` prints as `-16..5`.
pub fn ranges(set: &BTreeSet<i64>) -> String {
    let mut out = String::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start + 1;
        while iter.peek() == Some(&end) {
            iter.next();
            end += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{start}..{end}");
    }
    if out.is_empty() {
        out.push_str("(none)");
    }
    format!("[{out}]")
}

/// How much of a case the two sides must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Byte sets per buffer, and the ordered (kind, buffer, offset, len, site)
    /// sequence: the instruction stream is the same on both sides and valgrind splits
    /// none of its accesses (no `rep` string instruction).
    Sequence,
    /// Byte sets per buffer only: valgrind splits some accesses (a `rep` string
    /// instruction becomes one access per iteration), so only the bytes can agree.
    Sets,
}

/// A known, understood difference between the byte sets of the two sides: exactly
/// these bytes of one buffer are read (or written) only by the traced side, or only
/// under lackey. A case with one must be [`Compare::Sets`] and must show exactly this
/// difference (anything else, or none at all, is a failure), so it documents a precise
/// exception without loosening the comparison of anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The buffer's name.
    pub buffer: &'static str,
    /// `"read"` or `"written"`.
    pub what: &'static str,
    /// Byte offsets (half-open) only the tracer reports.
    pub only_traced: (i64, i64),
    /// Byte offsets (half-open ranges) only lackey reports.
    pub only_lackey: &'static [(i64, i64)],
    /// Why the two differ.
    pub why: &'static str,
}

impl Known {
    fn matches(&self, only_traced: &BTreeSet<i64>, only_lackey: &BTreeSet<i64>) -> bool {
        let t: BTreeSet<i64> = (self.only_traced.0..self.only_traced.1).collect();
        let p: BTreeSet<i64> = self.only_lackey.iter().flat_map(|&(a, b)| a..b).collect();
        *only_traced == t && *only_lackey == p
    }
}

/// Compares a traced run with a plain run plus its lackey log. `result_differs` names
/// why the call's result is expected to differ under valgrind (then it is not
/// compared); `known` lists the byte-set differences the case is expected to show
/// exactly (see [`Known`]). `Ok` carries a short summary; `Err` a report with both
/// sides and the differences.
pub fn compare(
    traced: &Run,
    plain: &Run,
    lackey_log: &str,
    how: Compare,
    result_differs: Option<&str>,
    known: &[Known],
) -> Result<String, String> {
    if !known.is_empty() && how == Compare::Sequence {
        return Err("a case with known byte-set differences must be Compare::Sets".into());
    }
    let mut seen_known = vec![false; known.len()];
    let mut problems = Vec::new();
    let mut report = String::new();
    if traced.impls != plain.impls {
        problems.push(format!(
            "glibc picked different variants: traced {:?}, under valgrind {:?}; adjust \
             traced_ffi_tests::oracle::GLIBC_TUNABLES until both match \
             (compare `ld.so --list-diagnostics` natively and under valgrind)",
            traced.impls, plain.impls
        ));
    }
    let names = |r: &Run| {
        r.buffers
            .iter()
            .map(|b| (b.name.clone(), b.len))
            .collect::<Vec<_>>()
    };
    if names(traced) != names(plain) {
        problems.push(format!(
            "the buffers differ: traced {:?}, plain {:?}",
            names(traced),
            names(plain)
        ));
    }
    if let Some(why) = result_differs {
        let _ = writeln!(
            report,
            "result not compared ({:?} traced, {:?} under valgrind): {why}",
            traced.result, plain.result
        );
    } else if traced.result != plain.result {
        problems.push(format!(
            "the call returned {:?} traced but {:?} under valgrind",
            traced.result, plain.result
        ));
    }
    if traced.contents != plain.contents {
        problems.push(format!(
            "the buffers' contents after the call differ:\n  traced {:?}\n  plain  {:?}",
            traced.contents, plain.contents
        ));
    }
    if !traced.unsupported.is_empty() {
        problems.push(format!(
            "the trace is incomplete: {} unsupported instruction(s):\n    {}",
            traced.unsupported.len(),
            traced.unsupported.join("\n    ")
        ));
    }
    let t_events = traced.traced_events();
    let p_events = plain.lackey_events(lackey_log)?;
    let t_sets = byte_sets(&t_events, &traced.buffers);
    let p_sets = byte_sets(&p_events, &plain.buffers);
    let _ = writeln!(report, "byte sets (traced | lackey):");
    for (name, (t_read, t_written)) in &t_sets {
        let (p_read, p_written) = p_sets.get(name).cloned().unwrap_or_default();
        for (what, t, p) in [
            ("read", t_read, &p_read),
            ("written", t_written, &p_written),
        ] {
            let mark = if t == p { "  " } else { "!=" };
            let _ = writeln!(
                report,
                "  {mark} {name} {what}: {} | {}",
                ranges(t),
                ranges(p)
            );
            let expected = known
                .iter()
                .position(|k| k.buffer == name.as_str() && k.what == what);
            if let Some(k) = expected {
                seen_known[k] = true;
            }
            if t != p {
                let only_t: BTreeSet<i64> = t.difference(p).copied().collect();
                let only_p: BTreeSet<i64> = p.difference(t).copied().collect();
                if let Some(k) = expected.map(|k| &known[k])
                    && k.matches(&only_t, &only_p)
                {
                    let _ = writeln!(
                        report,
                        "     known difference, {name} {what}: only traced {}, only \
                         lackey {}: {}",
                        ranges(&only_t),
                        ranges(&only_p),
                        k.why
                    );
                    continue;
                }
                problems.push(format!(
                    "{name} {what}: only traced {}, only lackey {}",
                    ranges(&only_t),
                    ranges(&only_p)
                ));
            } else if let Some(k) = expected {
                problems.push(format!(
                    "the known difference in {name} {what} did not occur (both sides \
                     agree): {}",
                    known[k].why
                ));
            }
        }
    }
    for (k, seen) in known.iter().zip(seen_known) {
        if !seen {
            problems.push(format!(
                "a known difference names buffer `{}` ({}), which the case lacks",
                k.buffer, k.what
            ));
        }
    }
    if how == Compare::Sequence && t_events != p_events {
        let first = t_events
            .iter()
            .zip(&p_events)
            .position(|(a, b)| a != b)
            .unwrap_or(t_events.len().min(p_events.len()));
        let mut diff = format!(
            "the access sequences differ ({} traced, {} lackey), first at #{first}:\n",
            t_events.len(),
            p_events.len()
        );
        let from = first.saturating_sub(3);
        for i in from..(first + 4).min(t_events.len().max(p_events.len())) {
            let show = |e: Option<&Event>| e.map_or("(end)".to_owned(), Event::to_string);
            let _ = writeln!(
                diff,
                "  {} #{i}: {:<44} | {}",
                if i == first { ">" } else { " " },
                show(t_events.get(i)),
                show(p_events.get(i))
            );
        }
        problems.push(diff);
    }
    let _ = writeln!(report, "traced accesses ({}):", t_events.len());
    for e in &t_events {
        let _ = writeln!(report, "  {e}");
    }
    let _ = writeln!(report, "lackey accesses ({}):", p_events.len());
    for e in &p_events {
        let _ = writeln!(report, "  {e}");
    }
    if problems.is_empty() {
        Ok(format!(
            "{} accesses agree ({}):\n{report}",
            t_events.len(),
            match how {
                Compare::Sequence => "byte sets and sequence",
                Compare::Sets => "byte sets",
            }
        ))
    } else {
        Err(format!(
            "the tracer and valgrind's lackey disagree:\n- {}\n{report}",
            problems.join("\n- ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Run {
        Run::parse(
            "buffer buf 8 2ff8 1000 4000\n\
             module 400000 401000 402000 /bin/x\n\
             marker 9000 9040\n",
        )
        .expect("valid driver output")
    }

    #[test]
    fn lackey_log_is_cut_at_the_markers_and_modify_splits() {
        let log = "==1== Lackey\n\
                   I  00401000,3\n L 00009040,1\n\
                   I  00401000,3\n L 00002ff8,1\n\
                   I  00401003,3\n L 00009000,1\n\
                   I  00401006,4\n M 00002ff8,4\n S 7ff000,8\n\
                   I  0040100a,2\n L 00002ff0,16\n\
                   I  0040100c,3\n L 00009040,1\n\
                   I  0040100f,3\n S 00002ff8,1\n";
        let events = plain().lackey_events(log).expect("markers present");
        let shown: Vec<String> = events.iter().map(Event::to_string).collect();
        assert_eq!(
            shown,
            [
                "R  buf[0..4] 4B at x+0x1006",
                "W  buf[0..4] 4B at x+0x1006",
                "R  buf[-8..8] 16B at x+0x100a",
            ]
        );
    }

    #[test]
    fn a_log_without_the_end_marker_is_an_error() {
        let err = plain()
            .lackey_events("I  00401003,3\n L 00009000,1\n")
            .expect_err("no end marker");
        assert!(err.contains("lacks the end marker"), "{err}");
    }

    /// A traced run and a plain run (with its log) of the same two accesses.
    fn agreeing_pair() -> (Run, Run, &'static str) {
        let traced = Run::parse(
            "buffer buf 8 a0ff8 9f000 a2000\n\
             module 500000 501000 502000 /bin/x\n\
             access R buf 0 4 501006\n\
             access W buf 0 4 501006\n\
             result 7\n",
        )
        .expect("valid traced output");
        let mut plain = plain();
        plain.result = Some(7);
        let log = "I  00401003,3\n L 00009000,1\n\
                   I  00401006,4\n M 00002ff8,4\n\
                   I  0040100c,3\n L 00009040,1\n";
        (traced, plain, log)
    }

    #[test]
    fn compare_accepts_agreeing_runs_and_rejects_any_difference() {
        let (traced, plain, log) = agreeing_pair();
        compare(&traced, &plain, log, Compare::Sequence, None, &[]).expect("the runs agree");

        // One byte more read by lackey: the byte sets differ.
        let wider = log.replace(" M 00002ff8,4", " M 00002ff8,4\n L 00002ff7,1");
        let err =
            compare(&traced, &plain, &wider, Compare::Sets, None, &[]).expect_err("extra byte");
        assert!(
            err.contains("buf read: only traced [(none)], only lackey [-1..0]"),
            "{err}"
        );

        // Same bytes, other order: only a sequence comparison notices.
        let mut swapped = traced.clone();
        swapped.accesses.swap(0, 1);
        compare(&swapped, &plain, log, Compare::Sets, None, &[]).expect("same byte sets");
        let err = compare(&swapped, &plain, log, Compare::Sequence, None, &[]).expect_err("order");
        assert!(err.contains("first at #0"), "{err}");

        // A different result, unless the case says why it differs.
        let mut other = traced.clone();
        other.result = Some(8);
        assert!(compare(&other, &plain, log, Compare::Sets, None, &[]).is_err());
        compare(&other, &plain, log, Compare::Sets, Some("known"), &[]).expect("result skipped");

        // Unsupported instructions make the trace incomplete.
        let mut incomplete = traced.clone();
        incomplete
            .unsupported
            .push("1 1 rep movsb | not yet".to_owned());
        let err =
            compare(&incomplete, &plain, log, Compare::Sets, None, &[]).expect_err("incomplete");
        assert!(err.contains("the trace is incomplete"), "{err}");

        // Different glibc variants.
        let mut variant = traced.clone();
        variant
            .impls
            .insert("memcpy".into(), "libc.so.6+0x1".into());
        let err = compare(&variant, &plain, log, Compare::Sets, None, &[]).expect_err("variant");
        assert!(err.contains("GLIBC_TUNABLES"), "{err}");
    }

    #[test]
    fn a_known_difference_must_occur_exactly() {
        let (traced, plain, log) = agreeing_pair();
        let wider = log.replace(" M 00002ff8,4", " M 00002ff8,4\n L 00002ff7,1");
        let known = [Known {
            buffer: "buf",
            what: "read",
            only_traced: (0, 0),
            only_lackey: &[(-1, 0)],
            why: "lackey reads one byte more",
        }];
        compare(&traced, &plain, &wider, Compare::Sets, None, &known).expect("known");
        let err = compare(&traced, &plain, log, Compare::Sets, None, &known).expect_err("none");
        assert!(err.contains("did not occur"), "{err}");
        let wider2 = log.replace(" M 00002ff8,4", " M 00002ff8,4\n L 00002ff6,2");
        let err = compare(&traced, &plain, &wider2, Compare::Sets, None, &known)
            .expect_err("another difference");
        assert!(err.contains("only lackey [-2..0]"), "{err}");
        let err = compare(&traced, &plain, &wider, Compare::Sequence, None, &known)
            .expect_err("known needs Sets");
        assert!(err.contains("must be Compare::Sets"), "{err}");
    }

    #[test]
    fn ranges_merge_adjacent_offsets() {
        let set: BTreeSet<i64> = [-2, -1, 0, 1, 5].into_iter().collect();
        assert_eq!(ranges(&set), "[-2..2, 5..6]");
        assert_eq!(ranges(&BTreeSet::new()), "[(none)]");
    }
}
