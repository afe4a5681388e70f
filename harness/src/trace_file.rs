//! Trace files for CI: with `TRACED_FFI_TRACE_DIR=dir` in the environment,
//! every traced call writes `dir/<test>.<n>.json` (the test's `n`th call,
//! from 1), and a failing test's message names its files.
//!
//! The JSON (schema version [`SCHEMA_VERSION`]):
//!
//! ```text
//! { "schema_version": 1, "test": "mod::name", "call_site": "tests/x.rs:12",
//!   "regions": [ { "name": "out", "kind": "Buffer", "len": 16 } ],
//!   "accesses": [ { "kind": "write", "region": "out", "offset": 0, "len": 1,
//!                   "bytes": "ab", "tid": 1234, "symbol": "fill+0x10",
//!                   "source": "fill (c/fill.c:12)", "instruction": "mov [rdi],dl",
//!                   "syscall": null, "out_of_bounds": false } ],
//!   "access_bound": null, "dropped_accesses": 0,
//!   "notes": [..], "unknown_syscalls": [..], "unsupported": [..], "stats": {..},
//!   "allocations": [ { "function": "malloc", "size": 24, "align": 0, "ptr": 0,
//!                      "result": 140737..., "tid": 1234, "symbol": "make+0x7",
//!                      "source": "make (c/make.c:16)", "after_accesses": 0,
//!                      "foreign": null } ] }
//! ```
//!
//! `foreign`, for a refused `free`/`realloc` of memory the allocator does not
//! own: `{ "name": "out", "kind": "buffer", "buffer": true, "offset": 0 }` (`kind`:
//! `buffer`, `tracked`, or `not_a_block` with the reason as `name`).
//!
//! `access_bound` is `n` for a call traced with `Tracer::keep_accesses(Some(n))`:
//! `accesses` then holds the first `n` accesses and every out-of-bounds one
//! after them, and `dropped_accesses` counts the others.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use traced_ffi_runtime::{ForeignFree, ForeignKind, Stats, Trace, describe_ip, source_location};

/// The environment variable naming the directory trace files go to.
pub(crate) const TRACE_DIR_ENV: &str = "TRACED_FFI_TRACE_DIR";

/// Version of the JSON layout; bumped when a field changes meaning or goes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct File<'a> {
    schema_version: u32,
    test: &'a str,
    call_site: &'a str,
    regions: Vec<Region<'a>>,
    accesses: Vec<Access<'a>>,
    access_bound: Option<u64>,
    dropped_accesses: u64,
    notes: Vec<String>,
    unknown_syscalls: Vec<String>,
    unsupported: Vec<String>,
    stats: &'a Stats,
    allocations: Vec<Allocation<'a>>,
}

#[derive(Serialize)]
struct Allocation<'a> {
    function: &'static str,
    size: u64,
    align: u64,
    ptr: u64,
    result: u64,
    tid: i32,
    symbol: String,
    source: Option<String>,
    after_accesses: usize,
    foreign: Option<Foreign<'a>>,
}

#[derive(Serialize)]
struct Foreign<'a> {
    name: &'a str,
    /// `"buffer"`, `"tracked"` or `"not_a_block"`.
    kind: &'static str,
    /// Kept from schema version 1: `kind == "buffer"`.
    buffer: bool,
    offset: i64,
}

impl<'a> From<&'a ForeignFree> for Foreign<'a> {
    fn from(f: &'a ForeignFree) -> Self {
        Foreign {
            name: &f.name,
            kind: match f.kind {
                ForeignKind::Buffer => "buffer",
                ForeignKind::Tracked => "tracked",
                ForeignKind::NotABlock => "not_a_block",
            },
            buffer: f.kind == ForeignKind::Buffer,
            offset: f.offset,
        }
    }
}

#[derive(Serialize)]
struct Region<'a> {
    name: &'a str,
    kind: String,
    len: u64,
}

#[derive(Serialize)]
struct Access<'a> {
    kind: String,
    region: Option<&'a str>,
    offset: isize,
    len: usize,
    /// The bytes, as lowercase hex.
    bytes: String,
    tid: i32,
    symbol: String,
    source: Option<String>,
    instruction: &'a str,
    syscall: Option<&'a str>,
    out_of_bounds: bool,
    /// The native callers of an out-of-bounds access, or of one that broke a
    /// contract declared before the call, innermost first.
    callers: Vec<String>,
}

/// The trace directory, if the environment names one.
pub(crate) fn trace_dir() -> Option<PathBuf> {
    std::env::var_os(TRACE_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// A file name made of the test name: path separators and other
/// characters a file system may refuse become `_`.
fn file_stem(test: &str) -> String {
    test.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the trace of call number `n` of `test` (made at `call_site`)
/// into `dir`; returns the file's path.
pub(crate) fn write(
    dir: &Path,
    test: &str,
    n: usize,
    call_site: &str,
    trace: &Trace,
) -> io::Result<PathBuf> {
    let name = |id| trace.region(&id).map(|r| r.name.as_str());
    let file = File {
        schema_version: SCHEMA_VERSION,
        test,
        call_site,
        regions: trace
            .regions()
            .iter()
            .map(|r| Region {
                name: &r.name,
                kind: format!("{:?}", r.kind),
                len: r.len,
            })
            .collect(),
        accesses: trace
            .iter_accesses()
            .map(|a| Access {
                kind: a.kind.to_string(),
                region: a.region.and_then(name),
                offset: a.offset,
                len: a.len,
                bytes: a.bytes.iter().map(|b| format!("{b:02x}")).collect(),
                tid: a.tid,
                symbol: describe_ip(a.ip),
                source: source_location(a.ip),
                instruction: a.insn,
                syscall: a.syscall,
                out_of_bounds: a.out_of_bounds,
                callers: a.callers.iter().map(|&r| describe_ip(r)).collect(),
            })
            .collect(),
        access_bound: trace.access_bound(),
        dropped_accesses: trace.dropped_accesses(),
        notes: trace.notes().iter().map(|n| n.text.clone()).collect(),
        unknown_syscalls: trace
            .unknown_syscalls()
            .iter()
            .map(|s| format!("{} ({})", s.name.as_deref().unwrap_or("?"), s.nr))
            .collect(),
        unsupported: trace
            .unsupported()
            .iter()
            .map(|u| format!("{} at {}: {}", u.insn, describe_ip(u.ip), u.reason))
            .collect(),
        stats: trace.stats(),
        allocations: trace
            .allocations()
            .iter()
            .map(|a| Allocation {
                function: a.function.name(),
                size: a.size,
                align: a.align,
                ptr: a.ptr,
                result: a.result,
                tid: a.tid,
                symbol: describe_ip(a.site),
                source: source_location(a.site),
                after_accesses: a.after_accesses,
                foreign: a.foreign.as_ref().map(Foreign::from),
            })
            .collect(),
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.{n}.json", file_stem(test)));
    let json = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
    std::fs::write(&path, json)?;
    Ok(path)
}
