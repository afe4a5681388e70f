use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn plain(t: &mut Tracer) {
    let _ = t;
}

traced_ffi::main!();
