//! What the operating-system tests (`threads`, `processes`, `signals`, `callbacks`)
//! share: exact assertions on traces whose accesses are named by function rather than
//! by instruction offset, and running one test alone in a child process.
//!
//! An access is compared field by field: kind, region, offset, length, bytes (the
//! first 64), thread, and who made it: the kernel during a named system call, or an
//! instruction of a named function (`describe_ip` up to its `+0x…`), with its
//! mnemonic where the code is the fixtures' C (whose instructions `fixtures/src/os.rs`
//! lists) and without it for Rust code (whose instructions depend on the profile).
//!
//! A test that could kill or hang the test binary (a thread or a signal the tracer
//! does not handle yet) runs its body through [`isolated`]: the test re-runs itself,
//! alone, in a child process of the test binary, and fails with what the child
//! printed.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use traced_ffi::{Access, AccessKind, Region, RegionId, Trace, Tracer, describe_ip};
use traced_ffi_fixtures::o2;

use crate::check::{current_tid, first_difference, mnemonic, write_rows};
use crate::child::{ChildRun, run};

/// How many of an access's bytes a trace keeps (`MAX_RECORDED_BYTES`).
const SHOWN_BYTES: usize = 64;
/// Set (to the test's full name) in the environment of an [`isolated`] child run.
const ISOLATED_ENV: &str = "TRACED_FFI_OS_ISOLATED";
/// How long an [`isolated`] child may take: its one test takes well under a second
/// when tracing works; a hang should fail the test soon.
const ISOLATED_TIMEOUT: Duration = Duration::from_secs(20);

/// Who made an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum By {
    /// The kernel, during the named system call (the access's `insn` is `syscall`).
    Kernel(String),
    /// An instruction of the named function; its mnemonic if compared.
    Insn {
        symbol: String,
        mnemonic: Option<String>,
    },
}

/// An instruction of the fixtures' C function `symbol`, with mnemonic `mnemonic`.
pub(crate) fn c(symbol: &str, mnemonic: &str) -> By {
    By::Insn {
        symbol: symbol.to_owned(),
        mnemonic: Some(mnemonic.to_owned()),
    }
}

/// An instruction of the Rust function `path` (demangled, without the hash), any
/// mnemonic.
pub(crate) fn rust(path: &str) -> By {
    By::Insn {
        symbol: path.to_owned(),
        mnemonic: None,
    }
}

/// The kernel, during system call `name`.
pub(crate) fn kernel(name: &str) -> By {
    By::Kernel(name.to_owned())
}

/// One access, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    kind: AccessKind,
    region: Option<RegionId>,
    offset: isize,
    len: usize,
    bytes: Vec<u8>,
    by: By,
    tid: i32,
}

/// `describe_ip(ip)` without its `+0x…`: the function's name.
pub(crate) fn symbol_of(ip: u64) -> String {
    let at = describe_ip(ip);
    match at.rsplit_once('+') {
        Some((symbol, _)) => symbol.to_owned(),
        None => at,
    }
}

impl Row {
    /// A read of `bytes` at `offset` of `region` by `by` on thread `tid`.
    pub(crate) fn read(
        region: &impl Region,
        offset: usize,
        bytes: &[u8],
        by: By,
        tid: i32,
    ) -> Self {
        Self::new(AccessKind::Read, region, offset, bytes, by, tid)
    }

    /// A write of `bytes` at `offset` of `region` by `by` on thread `tid`.
    pub(crate) fn write(
        region: &impl Region,
        offset: usize,
        bytes: &[u8],
        by: By,
        tid: i32,
    ) -> Self {
        Self::new(AccessKind::Write, region, offset, bytes, by, tid)
    }

    fn new(
        kind: AccessKind,
        region: &impl Region,
        offset: usize,
        bytes: &[u8],
        by: By,
        tid: i32,
    ) -> Self {
        Row {
            kind,
            region: Some(region.region_id()),
            offset: offset as isize,
            len: bytes.len(),
            bytes: bytes[..bytes.len().min(SHOWN_BYTES)].to_vec(),
            by,
            tid,
        }
    }

    /// `a` as compared with `want`: the mnemonic only where `want` has one.
    /// The row of access `a`; `symbols` remembers each address's function
    /// (long traces have few distinct instructions).
    pub(crate) fn actual(
        a: &Access,
        want: Option<&Row>,
        symbols: &mut std::collections::HashMap<u64, String>,
    ) -> Self {
        let by = match &a.syscall {
            Some(name) if mnemonic(&a.insn) == "syscall" => By::Kernel(name.clone()),
            _ => By::Insn {
                symbol: symbols
                    .entry(a.ip)
                    .or_insert_with(|| symbol_of(a.ip))
                    .clone(),
                mnemonic: match want.map(|w| &w.by) {
                    Some(By::Insn { mnemonic: None, .. }) => None,
                    _ => Some(mnemonic(&a.insn).to_owned()),
                },
            },
        };
        Row {
            kind: a.kind,
            region: a.region,
            offset: a.offset,
            len: a.len,
            bytes: a.bytes.clone(),
            by,
            tid: a.tid,
        }
    }

    /// `write buf[0x0..0x1] 1B = 2a by os_on_usr1 (mov) tid 42`.
    fn describe(&self, trace: &Trace) -> String {
        let name = self
            .region
            .and_then(|id| trace.region(&id))
            .map_or("?", |d| d.name.as_str());
        let bytes: Vec<String> = self.bytes.iter().map(|b| format!("{b:02x}")).collect();
        let by = match &self.by {
            By::Kernel(call) => format!("the kernel in {call}"),
            By::Insn {
                symbol,
                mnemonic: Some(m),
            } => format!("{symbol} ({m})"),
            By::Insn {
                symbol,
                mnemonic: None,
            } => symbol.clone(),
        };
        format!(
            "{} {name}[{:#x}..{:#x}] {}B = {} by {by} tid {}",
            self.kind,
            self.offset,
            self.offset + self.len as isize,
            self.len,
            bytes.join(" "),
            self.tid,
        )
    }
}

/// Fails unless `got` (accesses of `trace`) are exactly `want`, in order, and the trace
/// is complete (nothing unsupported, no unknown system call).
pub(crate) fn check_rows(
    trace: &Trace,
    got: &[&Access],
    want: &[Row],
    expr: &str,
    file: &str,
    line: u32,
) {
    let mut symbols = std::collections::HashMap::new();
    let got: Vec<Row> = got
        .iter()
        .enumerate()
        .map(|(i, a)| Row::actual(a, want.get(i), &mut symbols))
        .collect();
    if want == got.as_slice() && !trace.is_incomplete() {
        return;
    }
    let first_difference = first_difference(want, &got);
    let mut msg = format!(
        "{file}:{line}: assert_rows!({expr}) failed: expected {} access(es), got {}; first \
         difference at #{first_difference}; {} unsupported, {} unknown system call(s)\n",
        want.len(),
        got.len(),
        trace.unsupported().len(),
        trace.unknown_syscalls().len(),
    );
    // Long traces (the timer test's 10,000 reads) are shown around the difference.
    let shown = first_difference.saturating_sub(5)..first_difference + 20;
    let rows = (want, got.as_slice());
    write_rows(&mut msg, rows, first_difference, (shown, 5), |r| {
        r.describe(trace)
    });
    if trace.accesses().len() <= 200 {
        let _ = write!(msg, "trace:\n{trace}");
    } else {
        let _ = write!(msg, "({} accesses in the trace)", trace.accesses().len());
    }
    panic!("{msg}");
}

/// `assert_rows!(trace, [Row, ...])`: the trace holds exactly these accesses, in this
/// order, and is complete. `assert_rows!(trace, accesses, [Row, ...])` compares a
/// selection of the trace's accesses (e.g. one thread's).
macro_rules! assert_rows {
    ($trace:expr, $want:expr $(,)?) => {{
        let all: Vec<&traced_ffi::Access> = $trace.accesses().iter().collect();
        $crate::os_check::check_rows(
            &$trace,
            &all,
            &$want,
            concat!(stringify!($trace), ", ", stringify!($want)),
            file!(),
            line!(),
        )
    }};
    ($trace:expr, $got:expr, $want:expr $(,)?) => {
        $crate::os_check::check_rows(
            &$trace,
            &$got,
            &$want,
            concat!(
                stringify!($trace),
                ", ",
                stringify!($got),
                ", ",
                stringify!($want)
            ),
            file!(),
            line!(),
        )
    };
}

pub(crate) use assert_rows;

/// Runs `body` in a child process of the test binary, alone (`--exact`, one test
/// thread, so the test runs on the child's main thread and no other thread of the
/// child exists), and fails unless it passed. In that child, runs `body` itself and
/// returns `None`; in the parent returns the child's run, for further checks of what
/// it printed.
pub(crate) fn isolated(t: &mut Tracer, body: impl FnOnce(&mut Tracer)) -> Option<ChildRun> {
    let name = t.test_name().to_owned();
    if std::env::var(ISOLATED_ENV).as_deref() == Ok(name.as_str()) {
        body(t);
        return None;
    }
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut command = Command::new(exe);
    command
        .args(["--exact", &name, "--test-threads=1", "--nocapture"])
        .env(ISOLATED_ENV, &name);
    let child = run(command, ISOLATED_TIMEOUT);
    assert!(
        child.status.success() && child.stdout.contains("1 passed"),
        "test `{name}` failed when run alone in a child process\n{}",
        child.dump()
    );
    Some(child)
}

/// After whatever the test did: a plain traced call still works and is exact.
pub(crate) fn assert_tracer_still_works(t: &mut Tracer) {
    let mut buf = t.buffer("after", 8);
    let p = buf.as_mut_ptr();
    // SAFETY: `buf` is valid for writes of 8 bytes.
    let ((), trace) = t.call(|| unsafe { o2::fill_bytes(p, 8, 0x5C) });
    let tid = current_tid();
    let want: Vec<Row> = (0..8)
        .map(|i| Row::write(&buf, i, &[0x5C], c("fill_bytes_o2", "mov"), tid))
        .collect();
    assert_rows!(trace, want);
    assert_eq!(&buf[..], &[0x5C; 8]);
}

/// Whether `text` names the thread `tid` (its decimal number, not part of a larger
/// number).
pub(crate) fn names_tid(text: &str, tid: i32) -> bool {
    let tid = tid.to_string();
    text.split(|c: char| !c.is_ascii_digit())
        .any(|word| word == tid)
}
