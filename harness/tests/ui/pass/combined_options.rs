use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignore, should_panic(expected = "boom"), crate = ::traced_ffi,)]
fn combined_options(t: &mut Tracer) -> Result<(), String> {
    let _ = t;
    panic!("boom");
}

traced_ffi::main!();
