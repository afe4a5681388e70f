use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn two_parameters(t: &mut Tracer, extra: u8) {
    let _ = (t, extra);
}

fn main() {
    let _ = two_parameters;
}
