use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn variadic(t: &mut Tracer, _: ...) {
    let _ = t;
}

fn main() {}
