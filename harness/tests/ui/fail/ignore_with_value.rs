use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi(ignore = "slow")]
fn ignore_with_value(t: &mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = ignore_with_value;
}
