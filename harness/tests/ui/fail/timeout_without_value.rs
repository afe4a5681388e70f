use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(timeout)]
fn bare(t: &mut Tracer) {
    let _ = t;
}

#[traced_ffi(timeout("10s"))]
fn parenthesized(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = (bare, parenthesized);
}
