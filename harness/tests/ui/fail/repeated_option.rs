use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignore, should_panic, ignore)]
fn repeated_option(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = repeated_option;
}
