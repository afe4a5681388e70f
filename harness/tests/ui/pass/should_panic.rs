use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(should_panic)]
fn should_panic(t: &mut Tracer) {
    let _ = t;
    panic!("expected panic");
}

traced_ffi::main!();
