use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignored)]
fn unknown_option(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = unknown_option;
}
