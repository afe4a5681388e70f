//! Integration tests of traced-ffi live in `integration/`; this library holds what the
//! test binaries and the `oracle-driver` binary share.

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod oracle;
