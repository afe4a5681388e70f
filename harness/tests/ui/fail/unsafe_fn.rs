use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
unsafe fn unsafe_test(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = unsafe_test;
}
