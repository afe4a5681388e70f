use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
const fn const_test(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = const_test;
}
