use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(timeout = "10s")]
fn with_seconds(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = "1500ms", ignore)]
fn with_milliseconds_and_ignore(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout = "2m")]
fn with_minutes(t: &mut Tracer) {
    let _ = t;
}

traced_ffi::main!();
