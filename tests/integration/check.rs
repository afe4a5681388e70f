//! Exact assertions on a [`Trace`]: every access's kind, region, offset, length,
//! bytes, instruction and thread, in order; and what tracing the call cost.
//!
//! The macros are thin: they capture the expression, `file!()` and `line!()` and call
//! one plain function here, which prints on failure a header, the expected and actual
//! accesses as `buf[0x2..0x3]` rows, the whole trace table, and a hint.

use std::fmt::Write as _;

use traced_ffi::{Access, AccessKind, Region, RegionId, Trace, describe_ip};

use crate::levels::{Path, Site};

/// One access a test expects, compared field by field with an [`Access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) kind: AccessKind,
    pub(crate) region: RegionId,
    /// Relative to the region's first byte.
    pub(crate) offset: isize,
    /// The bytes read or written; the access's length is their count.
    pub(crate) bytes: Vec<u8>,
    pub(crate) site: Site,
}

impl Expected {
    /// A read of `bytes` at `offset` of `region`, by the instruction at `site`.
    pub(crate) fn read(region: &impl Region, offset: isize, bytes: &[u8], site: Site) -> Self {
        Self::new(AccessKind::Read, region, offset, bytes, site)
    }

    /// A write of `bytes` at `offset` of `region`, by the instruction at `site`.
    pub(crate) fn write(region: &impl Region, offset: isize, bytes: &[u8], site: Site) -> Self {
        Self::new(AccessKind::Write, region, offset, bytes, site)
    }

    fn new(
        kind: AccessKind,
        region: &impl Region,
        offset: isize,
        bytes: &[u8],
        site: Site,
    ) -> Self {
        Expected {
            kind,
            region: region.region_id(),
            offset,
            bytes: bytes.to_vec(),
            site,
        }
    }
}

/// What is compared of one access: every field of [`Access`], with `ip` as
/// `symbol+offset` and `insn` reduced to its mnemonic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    kind: AccessKind,
    region: Option<RegionId>,
    offset: isize,
    len: usize,
    bytes: Vec<u8>,
    at: String,
    mnemonic: String,
    tid: i32,
}

impl Row {
    fn expected(e: &Expected, tid: i32) -> Self {
        Row {
            kind: e.kind,
            region: Some(e.region),
            offset: e.offset,
            len: e.bytes.len(),
            bytes: e.bytes.clone(),
            at: e.site.at.to_owned(),
            mnemonic: e.site.mnemonic.to_owned(),
            tid,
        }
    }

    fn actual(a: &Access) -> Self {
        Row {
            kind: a.kind,
            region: a.region,
            offset: a.offset,
            len: a.len,
            bytes: a.bytes.clone(),
            at: describe_ip(a.ip),
            mnemonic: mnemonic(&a.insn).to_owned(),
            tid: a.tid,
        }
    }

    /// `write buf[0x0..0x1] 1B = ab @ fill_bytes_o2+0x10 (mov) tid 42`.
    fn describe(&self, trace: &Trace) -> String {
        let at = format!("{} ({})", self.at, self.mnemonic);
        let access = (
            self.kind,
            self.region,
            self.offset,
            self.len,
            &self.bytes[..],
        );
        describe_access(trace, access, &at, self.tid)
    }
}

/// `kind region[start..end] lenB = bytes @ at tid N`, one row of a failure message.
fn describe_access(
    trace: &Trace,
    (kind, region, offset, len, bytes): (AccessKind, Option<RegionId>, isize, usize, &[u8]),
    at: &str,
    tid: i32,
) -> String {
    let name = region
        .and_then(|id| trace.region(&id))
        .map_or("?", |d| d.name.as_str());
    let bytes: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{kind} {name}[{}..{}] {len}B = {} @ {at} tid {tid}",
        signed_hex(offset),
        signed_hex(offset + len as isize),
        bytes.join(" "),
    )
}

fn signed_hex(v: isize) -> String {
    if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

/// The mnemonic of an instruction as the trace prints it: its first word, or the
/// first two for a prefixed one (`rep stosb`).
pub(crate) fn mnemonic(insn: &str) -> &str {
    let mut words = insn.split_whitespace();
    match words.next() {
        Some(prefix @ ("rep" | "repe" | "repne" | "lock")) => {
            let len = prefix.len() + 1 + words.next().map_or(0, str::len);
            insn.trim_start().get(..len).unwrap_or(insn)
        }
        Some(word) => word,
        None => "",
    }
}

/// Where `want` and `got` first differ: the shorter length when one is a prefix of
/// the other.
pub(crate) fn first_difference<R: PartialEq>(want: &[R], got: &[R]) -> usize {
    want.iter()
        .zip(got)
        .position(|(w, g)| w != g)
        .unwrap_or(want.len().min(got.len()))
}

/// Appends to a failure message the expected and the actual rows whose index is in
/// `shown`, numbered `#i` in a column `width` wide, with row `mark` marked `>`.
pub(crate) fn write_rows<R>(
    msg: &mut String,
    (want, got): (&[R], &[R]),
    mark: usize,
    (shown, width): (std::ops::Range<usize>, usize),
    describe: impl Fn(&R) -> String,
) {
    for (title, rows) in [("expected", want), ("actual", got)] {
        let _ = writeln!(msg, "{title}:");
        for (i, row) in rows.iter().enumerate().filter(|(i, _)| shown.contains(i)) {
            let m = if i == mark { '>' } else { ' ' };
            let _ = writeln!(msg, " {m}#{i:<width$} {}", describe(row));
        }
    }
}

/// The kernel's id of the calling thread (what [`Access::tid`] holds).
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid(2) has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Fails with the expected and actual accesses unless `trace` holds exactly
/// `expected`, in order, every one made by the calling thread.
pub(crate) fn check_accesses(
    trace: &Trace,
    expected: &[Expected],
    expr: &str,
    file: &str,
    line: u32,
) {
    let tid = current_tid();
    let want: Vec<Row> = expected.iter().map(|e| Row::expected(e, tid)).collect();
    let got: Vec<Row> = trace.accesses().iter().map(Row::actual).collect();
    if want == got {
        return;
    }
    let first_difference = first_difference(&want, &got);
    let mut msg = format!(
        "{file}:{line}: assert_accesses!({expr}) failed: expected {} access(es), got {}; \
         first difference at #{first_difference}\n",
        want.len(),
        got.len()
    );
    let all = 0..usize::MAX;
    let rows = (want.as_slice(), got.as_slice());
    write_rows(&mut msg, rows, first_difference, (all, 3), |r| {
        r.describe(trace)
    });
    let _ = write!(
        msg,
        "trace:\n{trace}hint: sites come from fixtures/DISASM.md; if the compiler or its flags \
         changed, regenerate it and update tests/integration/levels.rs"
    );
    panic!("{msg}");
}

/// Fails unless the call's faults are exactly `executions`: `(site, n)` means the
/// instruction at `site` faulted `n` times, each carried out on the site's one-stop
/// path; nothing took the single-step path and nothing was unsupported.
pub(crate) fn check_paths(
    trace: &Trace,
    executions: &[(Site, u64)],
    expr: &str,
    file: &str,
    line: u32,
) {
    let on = |path: Path| -> u64 {
        executions
            .iter()
            .filter(|(site, _)| site.path == path)
            .map(|(_, n)| n)
            .sum()
    };
    let (emulated, stub) = (on(Path::Emulated), on(Path::Stub));
    let stats = trace.stats();
    if stats.cache_entries > 0 {
        // The code cache took the loop: every fault took a one-stop path
        // or entered the cache, never more faults than without it.
        let got = (
            stats.faults,
            stats.emulated + stats.stub_path + stats.cache_entries,
            stats.step_path,
            trace.unsupported().len(),
        );
        assert!(
            got.0 == got.1 && got.2 == 0 && got.3 == 0 && got.0 <= emulated + stub,
            "{file}:{line}: assert_paths!({expr}) failed with the code cache: (faults, \
             emulated + stub + cache entries, step_path, unsupported) = {got:?}, at most {} \
             faults expected ({executions:?})\ngot {stats:?}\ntrace:\n{trace}",
            emulated + stub
        );
        return;
    }
    let got = (
        stats.faults,
        stats.emulated,
        stats.stub_path,
        stats.step_path,
        trace.unsupported().len(),
    );
    assert_eq!(
        got,
        (emulated + stub, emulated, stub, 0, 0),
        "{file}:{line}: assert_paths!({expr}) failed: (faults, emulated, stub_path, step_path, \
         unsupported) differ; expected {executions:?}\ngot {stats:?}\ntrace:\n{trace}hint: plain \
         moves are emulated, other instructions run in the stub; a fixture must never need \
         the single-step path"
    );
}

/// `assert_accesses!(trace, [Expected, ...])`: the trace holds exactly these accesses,
/// in this order, all made by the calling thread.
macro_rules! assert_accesses {
    ($trace:expr, $expected:expr $(,)?) => {
        $crate::check::check_accesses(
            &$trace,
            &$expected,
            concat!(stringify!($trace), ", ", stringify!($expected)),
            file!(),
            line!(),
        )
    };
}

/// `assert_paths!(trace, [(site, n), ...])`: the instruction at each `site` faulted `n`
/// times and took the site's one-stop path; nothing else faulted.
macro_rules! assert_paths {
    ($trace:expr, $executions:expr $(,)?) => {
        $crate::check::check_paths(
            &$trace,
            &$executions,
            concat!(stringify!($trace), ", ", stringify!($executions)),
            file!(),
            line!(),
        )
    };
}

pub(crate) use {assert_accesses, assert_paths};

/// `len` bytes, none zero, all different from each other for `len <= 255` (7 is
/// coprime with 255, so `7i + seed` runs through every residue).
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| 1 + ((i * 7 + usize::from(seed)) % 255) as u8)
        .collect()
}

/// Whether the AVX2 fixtures can run here; prints why a test is skipped if not.
pub(crate) fn avx2_or_skip(test: &str) -> bool {
    let available = traced_ffi_fixtures::avx2_available();
    if !available {
        println!("{test}: skipped: this CPU has no AVX2, which the fixture needs");
    }
    available
}

/// How many of an access's bytes a trace keeps (`MAX_RECORDED_BYTES`).
const SHOWN_BYTES: usize = 64;

/// One access a form test (`forms_*`) expects: its kind, region, offset, full length,
/// the shown bytes (the first [`traced_ffi::Access::bytes`] holds at most 64) and
/// `symbol+0xoff`; the thread is always the calling one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    kind: AccessKind,
    region: Option<RegionId>,
    offset: isize,
    len: usize,
    bytes: Vec<u8>,
    at: String,
    tid: i32,
}

impl Want {
    /// A read of `bytes` (all of the range's values; only the first 64 are compared)
    /// at `offset` of `region`, by the instruction at `at`.
    pub(crate) fn read(region: &impl Region, offset: isize, bytes: &[u8], at: &str) -> Self {
        Self::new(AccessKind::Read, region, offset, bytes, at)
    }

    /// A write of `bytes` at `offset` of `region`, by the instruction at `at`.
    pub(crate) fn write(region: &impl Region, offset: isize, bytes: &[u8], at: &str) -> Self {
        Self::new(AccessKind::Write, region, offset, bytes, at)
    }

    fn new(kind: AccessKind, region: &impl Region, offset: isize, bytes: &[u8], at: &str) -> Self {
        Want {
            kind,
            region: Some(region.region_id()),
            offset,
            len: bytes.len(),
            bytes: bytes[..bytes.len().min(SHOWN_BYTES)].to_vec(),
            at: at.to_owned(),
            tid: current_tid(),
        }
    }

    fn actual(a: &Access) -> Self {
        Want {
            kind: a.kind,
            region: a.region,
            offset: a.offset,
            len: a.len,
            bytes: a.bytes.clone(),
            at: describe_ip(a.ip),
            tid: a.tid,
        }
    }

    /// `read buf[0x0..0x10] 16B = 01 02 … @ form_x+0x3 tid 42`.
    fn describe(&self, trace: &Trace) -> String {
        let access = (
            self.kind,
            self.region,
            self.offset,
            self.len,
            &self.bytes[..],
        );
        describe_access(trace, access, &self.at, self.tid)
    }
}

/// `symbol+0xoff`, as [`describe_ip`] prints an instruction of a `forms` fixture.
pub(crate) fn at(symbol: &str, offset: u32) -> String {
    format!("{symbol}+{offset:#x}")
}

/// Fails unless `trace` holds exactly `want`, in order, and nothing was unsupported.
pub(crate) fn check_exact(trace: &Trace, want: &[Want], expr: &str, file: &str, line: u32) {
    let got: Vec<Want> = trace.accesses().iter().map(Want::actual).collect();
    if want == got.as_slice() && trace.unsupported().is_empty() {
        return;
    }
    let first_difference = first_difference(want, &got);
    let mut msg = format!(
        "{file}:{line}: assert_exact!({expr}) failed: expected {} access(es), got {}; first \
         difference at #{first_difference}; {} unsupported\n",
        want.len(),
        got.len(),
        trace.unsupported().len()
    );
    let all = 0..usize::MAX;
    let rows = (want, got.as_slice());
    write_rows(&mut msg, rows, first_difference, (all, 3), |r| {
        r.describe(trace)
    });
    let _ = write!(
        msg,
        "trace:\n{trace}hint: offsets come from fixtures/DISASM.md (Instruction forms)"
    );
    panic!("{msg}");
}

/// `assert_exact!(trace, [Want, ...])`: the trace holds exactly these accesses, in this
/// order, all by the calling thread, and no unsupported instruction.
macro_rules! assert_exact {
    ($trace:expr, $want:expr $(,)?) => {
        $crate::check::check_exact(
            &$trace,
            &$want,
            concat!(stringify!($trace), ", ", stringify!($want)),
            file!(),
            line!(),
        )
    };
}

pub(crate) use assert_exact;
