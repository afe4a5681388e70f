use traced_ffi::{Tracer, traced_ffi};

#[traced_ffi]
fn shared_reference(t: &Tracer) {
    let _ = t;
}

#[traced_ffi]
fn by_value(t: Tracer) {
    let _ = t;
}

#[traced_ffi]
fn not_a_tracer(t: &mut u8) {
    let _ = t;
}

#[traced_ffi]
fn named_lifetime(t: &'static mut Tracer) {
    let _ = t;
}

fn main() {
    let _ = (shared_reference, by_value, not_a_tracer, named_lifetime);
}
