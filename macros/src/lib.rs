//! The `#[traced_ffi]` attribute of the traced-ffi test harness.
//!
//! Use it through the `traced-ffi` crate, which re-exports it as
//! `traced_ffi::traced_ffi`: the code it generates refers to
//! `traced_ffi::__private`, whose version this crate is pinned to.
//!
//! The crate only parses and emits: `options` reads the attribute's
//! arguments, `signature` checks the function, `expand` writes the
//! registration.

mod expand;
mod fields;
mod options;
mod signature;

use proc_macro::TokenStream;

/// Registers a function as a traced-ffi test.
///
/// The function takes the tracer and returns nothing, `()` or
/// `Result<(), E>` with `E: Debug` (an `Err` fails the test). It is kept as
/// written and added to the harness's test list, which `traced_ffi::main!()`
/// runs; the test's name is its module path without the crate name, then the
/// function's name, as with `#[test]`.
///
/// ```ignore
/// use traced_ffi::{Tracer, traced_ffi};
///
/// #[traced_ffi]
/// fn fill_writes_every_byte(t: &mut Tracer) {
///     // hand buffers to native code through `t` and check its accesses
/// }
///
/// #[traced_ffi(should_panic(expected = "out of bounds"))]
/// fn overrun_is_caught(t: &mut Tracer) -> Result<(), std::io::Error> {
///     Ok(())
/// }
///
/// traced_ffi::main!();
/// ```
///
/// # Options
///
/// Options are separated by commas, each given at most once:
///
/// - `ignore`: the test runs only with `--ignored` or `--include-ignored`.
/// - `should_panic`: the test passes only if it panics.
/// - `should_panic(expected = "text")`: the test passes only if it panics
///   with a message containing `text`.
/// - `timeout = "10s"`: the test fails if it runs longer (units `ms`, `s`,
///   `m`, `h`); without it, `TRACED_FFI_TIMEOUT` or the default of 300 s
///   applies. Enforced when the harness runs each test in a process of its
///   own (plain `cargo test`), not under `cargo nextest run` (use nextest's
///   `slow-timeout` there).
/// - `crate = path`: the path under which the `traced_ffi` crate is found,
///   for crates that rename or re-export it (default `::traced_ffi`).
///
/// # Errors
///
/// The attribute rejects, pointing at the offending tokens: items other than
/// functions; `async`, `const`, `unsafe` and `extern "ABI"` functions;
/// generic parameters and `where` clauses; a parameter list other than one
/// `pat: &mut Tracer` (any path ending in `Tracer`); variadic functions;
/// other return types; unknown, repeated or malformed options. The function
/// is still emitted, so the only errors are the ones about the attribute.
///
/// The attribute must be on a free function (in a module or a function
/// body), not on a method in an `impl` block.
#[proc_macro_attribute]
pub fn traced_ffi(args: TokenStream, input: TokenStream) -> TokenStream {
    expand::expand(args.into(), input.into()).into()
}

/// Derives `traced_ffi::Fields` for a `#[repr(C)]` struct with named fields:
/// traces and contract messages then name its fields (`cfg.level` instead
/// of `cfg[0x4..0x8]`), and `trace.unwritten_fields(&value)` lists the
/// fields and padding native code never wrote.
///
/// A field whose type derives `Fields` too is flattened (`inner.a`); every
/// field's type must implement `Fields` (integers, floats, `bool`, `char`,
/// pointers, function pointers, arrays and `Option`s of them do).
///
/// ```ignore
/// #[derive(Clone, Copy, Default, traced_ffi::Fields)]
/// #[repr(C)]
/// struct Config { level: u32, flags: u8, window: u64 }
/// ```
///
/// `#[fields(crate = path)]` names the `traced_ffi` crate for crates that
/// rename or re-export it.
#[proc_macro_derive(Fields, attributes(fields))]
pub fn derive_fields(input: TokenStream) -> TokenStream {
    fields::derive(input.into()).into()
}
