use traced_ffi::traced_ffi;

#[traced_ffi]
fn underscore_prefixed(_t: &mut traced_ffi::Tracer) {}

#[traced_ffi]
fn wildcard(_: &mut ::traced_ffi::Tracer) {}

#[traced_ffi]
fn elided_lifetime(t: &'_ mut traced_ffi::Tracer) {
    let _ = t;
}

traced_ffi::main!();
