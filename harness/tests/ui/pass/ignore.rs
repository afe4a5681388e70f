use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignore)]
fn ignored(t: &mut Tracer) {
    let _ = t;
    panic!("an ignored test does not run");
}

traced_ffi::main!();
