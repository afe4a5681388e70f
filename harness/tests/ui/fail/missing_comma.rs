use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignore should_panic)]
fn missing_comma(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = missing_comma;
}
