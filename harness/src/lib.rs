//! traced-ffi: a test harness that tells a test exactly which bytes native
//! code read and wrote.
//!
//! A test marked [`#[traced_ffi]`](traced_ffi) hands guarded buffers to C
//! (or C++, or assembly) code and gets back the ordered list of that code's
//! memory accesses to them: offset, size, read or write, the values, the
//! instruction. Nothing in the native code is recompiled or instrumented: a
//! ptrace supervisor, forked before the tests start, catches every access
//! to the buffers' protected pages.
//!
//! ```no_run
//! use traced_ffi::{traced_ffi, Tracer};
//!
//! // Native code: here written in Rust with the C ABI, usually an
//! // `unsafe extern "C" { fn fill(..); }` declaration of a C function.
//! unsafe extern "C" fn fill(buf: *mut u8, n: usize, v: u8) {
//!     for i in 0..n {
//!         // SAFETY: the caller passes n writable bytes.
//!         unsafe { buf.add(i).write_volatile(v) };
//!     }
//! }
//!
//! #[traced_ffi]
//! fn fill_writes_exactly_n(t: &mut Tracer) {
//!     let mut buf = t.buffer("buf", 64);          // zeroed, guarded
//!     // SAFETY: buf holds 64 writable bytes.
//!     let ((), trace) = t.call(|| unsafe { fill(buf.as_mut_ptr(), 16, 0xAB) });
//!     assert_eq!(trace.written(&buf).ranges(), &[0..16]);
//!     assert!(trace.read(&buf).is_empty());
//!     assert!(trace.out_of_bounds().is_empty());
//!     assert_eq!(&buf[..16], &[0xAB; 16]);
//! }
//!
//! traced_ffi::main!();                             // [[test]] harness = false
//! ```
//!
//! The test binary's `main` must be `traced_ffi::main!()` (a `[[test]]`
//! target with `harness = false`); it takes libtest's command line and works
//! under `cargo test` and `cargo nextest run`. Tests must be defined in the
//! test binary itself: registrations in a library crate the binary never
//! references are dropped by the linker.

mod buffer;
mod during;
mod isolated;
mod registry;
mod run;
mod runner;
mod test;
mod timeout;
mod trace_file;
mod tracer;
mod typed;

pub use buffer::Buffer;
pub use during::During;
pub use run::IN_PROCESS_ENV;
pub use timeout::{DEFAULT_TIMEOUT, TIMEOUT_ENV, TimeoutEnvError};
pub use trace_file::SCHEMA_VERSION as TRACE_FILE_SCHEMA_VERSION;
pub use traced_ffi_macros::{Fields, traced_ffi};
pub use traced_ffi_runtime::{
    Access, AccessKind, AccessRef, AllocFn, Allocation, CallError, Declared, Expect, Field,
    ForeignFree, ForeignKind, LaunchError, Launched, Note, RangeSet, Region, RegionDesc, RegionId,
    RegionKind, Stats, Trace, UnknownSyscall, Unsupported, Unwritten, describe_ip, source_location,
    symbolize,
};
pub use tracer::{Tracer, Tracked};
pub use typed::{Fields, Typed, TypedSlice};

/// Forks the supervisor, for programs that do not use [`main!`] (examples,
/// benchmarks). Must be called before any thread is spawned; the parent
/// process never returns from it (it supervises, then exits as the child
/// did). [`Launched::Untraced`] says why calls will fail if ptrace is refused.
pub fn start_supervisor() -> Result<Launched, LaunchError> {
    traced_ffi_runtime::launch()
}

/// [`start_supervisor`], or exit with a message saying why tracing is
/// unavailable: for examples and benchmarks that need tracing to work.
pub fn start_supervisor_or_exit() {
    match start_supervisor() {
        Ok(Launched::Traced) => {}
        Ok(Launched::Untraced(why)) => {
            eprintln!("traced-ffi: tracing is unavailable: {why}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("traced-ffi: failed to {e}");
            std::process::exit(1);
        }
    }
}

/// Defines the test binary's `main`: runs every `#[traced_ffi]` test with
/// the libtest command line (filters, `--exact`, `--list`, `--ignored`,
/// `--include-ignored`, `--test-threads`, `--nocapture`, ...).
#[macro_export]
macro_rules! main {
    () => {
        fn main() {
            $crate::__private::main()
        }
    };
}

/// What the `#[traced_ffi]` attribute and `main!()` expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{IntoTestResult, ShouldPanic, TESTS, TestDesc};
    pub use crate::run::main;
    pub use crate::typed::push_field;
    pub use linkme;
}
