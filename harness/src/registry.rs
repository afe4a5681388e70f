//! The test registry: every `#[traced_ffi]` function adds one [`TestDesc`] to
//! [`TESTS`], a link-time slice (linkme), so nothing runs before `main`.

use std::fmt::Debug;

use crate::Tracer;

/// The link-time slice of every test in the binary.
#[linkme::distributed_slice]
pub static TESTS: [TestDesc];

/// One registered test, as the `#[traced_ffi]` attribute emits it.
#[derive(Debug)]
pub struct TestDesc {
    /// The function's name.
    pub name: &'static str,
    /// `module_path!()` where the function is defined; the crate's own name is
    /// dropped from the test's full name, as libtest does.
    pub module_path: &'static str,
    /// `file!()` of the function.
    pub file: &'static str,
    /// `line!()` of the function.
    pub line: u32,
    /// `#[traced_ffi(ignore)]`.
    pub ignore: bool,
    /// `#[traced_ffi(should_panic)]` / `should_panic(expected = "…")`.
    pub should_panic: ShouldPanic,
    /// `#[traced_ffi(timeout = "10s")]`.
    pub timeout: Option<std::time::Duration>,
    /// Runs the test body.
    pub run: fn(&mut Tracer) -> Result<(), String>,
}

impl TestDesc {
    /// The name libtest would give the test: the module path without the
    /// crate's name, then the function's name (`area::fill_writes`).
    pub fn full_name(&self) -> String {
        match self.module_path.split_once("::") {
            Some((_krate, rest)) => format!("{rest}::{}", self.name),
            None => self.name.to_owned(),
        }
    }
}

/// What a test expects of panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShouldPanic {
    /// The test must not panic.
    No,
    /// The test must panic.
    Yes,
    /// The test must panic with a message containing this text.
    WithMessage(&'static str),
}

/// The return types a test function may have: `()` or `Result<(), E>`.
pub trait IntoTestResult {
    /// Turns the test's return value into pass (`Ok`) or fail with a message.
    fn into_test_result(self) -> Result<(), String>;
}

impl IntoTestResult for () {
    fn into_test_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Debug> IntoTestResult for Result<(), E> {
    fn into_test_result(self) -> Result<(), String> {
        self.map_err(|e| format!("test returned an error: {e:?}"))
    }
}
