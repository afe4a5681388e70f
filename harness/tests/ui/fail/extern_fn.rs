use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
extern "C" fn extern_test(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = extern_test;
}
