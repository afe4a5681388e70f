//! Integration tests: real C fixtures, traced by the real supervisor.
//!
//! One binary (`harness = false`, `traced_ffi::main!()`), one module per area. The
//! expected instruction sites of every fixture, at both levels, are in `levels`;
//! `check` has the exact assertions on traces.
#![expect(
    clippy::single_range_in_vec_init,
    reason = "RangeSet::ranges() is compared with slices of ranges, e.g. &[0..16]"
)]

mod check;
mod child;
mod levels;
mod os_check;

mod allocations;
mod bounded;
mod bounds;
mod cache;
mod callbacks;
mod containment;
mod contracts;
mod cost;
mod cpp;
mod crash;
mod declared;
mod display;
mod fields;
mod forms_atomics;
mod forms_avx512;
mod forms_misc;
mod forms_simd;
mod forms_strings;
mod glibc;
mod harness_cli;
mod many_regions;
mod nested_call;
mod oracle;
mod parallel;
mod processes;
mod rmw_forms;
mod scalar;
mod signals;
mod simd;
mod stale_args;
mod state;
mod streaming;
mod structs;
mod syscalls;
mod threads;
mod trace_files;
mod unavailable;
mod under_valgrind;
mod unsupported;
mod use_after_drop;

traced_ffi::main!();
