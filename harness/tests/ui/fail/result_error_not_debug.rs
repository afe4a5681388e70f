use traced_ffi::{Tracer, traced_ffi};

struct NotDebug;

// Accepted by the macro (the return type is a `Result`); the type checker
// then points at the return type.
#[traced_ffi]
fn error_not_debug(t: &mut Tracer) -> Result<(), NotDebug> {
    let _ = t;
    Err(NotDebug)
}

traced_ffi::main!();
