use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
async fn async_test(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    // The function is still emitted: no "cannot find function" error.
    let _ = async_test;
}
