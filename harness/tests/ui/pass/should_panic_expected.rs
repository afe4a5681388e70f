use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(should_panic(expected = "out of bounds"))]
fn should_panic_expected(t: &mut Tracer) {
    let _ = t;
    panic!("index out of bounds: 4 >= 4");
}

traced_ffi::main!();
