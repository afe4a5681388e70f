use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(crate)]
fn bare_crate(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(crate = "traced_ffi")]
fn crate_string(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = (bare_crate, crate_string);
}
