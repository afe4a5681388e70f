use std::fmt;

use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn returns_std_result(t: &mut Tracer) -> Result<(), String> {
    let _ = t;
    Ok(())
}

#[traced_ffi]
fn returns_io_result(t: &mut Tracer) -> std::io::Result<()> {
    let _ = t;
    Ok(())
}

#[derive(Debug)]
struct MyError;

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("my error")
    }
}

type Result<T, E = MyError> = std::result::Result<T, E>;

#[traced_ffi]
fn returns_alias_result(t: &mut Tracer) -> Result<()> {
    let _ = t;
    Ok(())
}

traced_ffi::main!();
